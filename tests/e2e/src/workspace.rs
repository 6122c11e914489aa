//! The workspace under test: its root and chart, and the executables the suites run — the
//! agent and the operator, built once per test process with `cargo build` (a no-op when up to
//! date) unless `$VOICE_AGENT_BIN` / `$VOICE_OPERATOR_BIN` name them, and the test tools of
//! `tests/tools`.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{anyhow, bail};
use serde_json::Value;
use tokio::process::Command;
use tokio::sync::OnceCell;

use crate::command::run;

/// Longest a first build of a workspace binary or a test tool may take (a cold build of the
/// whole dependency tree takes minutes on two cores).
pub const BUILD_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// The workspace root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The Helm chart of the operator.
pub fn chart() -> PathBuf {
    root().join("charts/voice-operator")
}

static AGENT: OnceCell<PathBuf> = OnceCell::const_new();
static OPERATOR: OnceCell<PathBuf> = OnceCell::const_new();
static FAKE_BEDROCK: OnceCell<PathBuf> = OnceCell::const_new();

/// The `voice-agent` executable: `$VOICE_AGENT_BIN`, or built once per test process.
pub async fn agent_binary() -> anyhow::Result<PathBuf> {
    binary(&AGENT, "VOICE_AGENT_BIN", "voice-agent").await
}

/// The `voice-operator` executable: `$VOICE_OPERATOR_BIN`, or built once per test process.
pub async fn operator_binary() -> anyhow::Result<PathBuf> {
    binary(&OPERATOR, "VOICE_OPERATOR_BIN", "voice-operator").await
}

/// The `fake-bedrock` executable (the Bedrock-wire fake): `$FAKE_BEDROCK_BIN`, or built once per
/// test process.
pub async fn fake_bedrock_binary() -> anyhow::Result<PathBuf> {
    binary(&FAKE_BEDROCK, "FAKE_BEDROCK_BIN", "fake-bedrock").await
}

async fn binary(built: &'static OnceCell<PathBuf>, variable: &str, package: &str) -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os(variable) {
        return Ok(PathBuf::from(path));
    }
    built.get_or_try_init(|| build(package)).await.cloned()
}

/// `cargo build -p <package> --bin <package>`: cargo releases its build lock before running
/// tests, so this does not deadlock.
async fn build(package: &str) -> anyhow::Result<PathBuf> {
    let mut cmd = Command::new(env!("CARGO"));
    cmd.args([
        "build",
        "-p",
        package,
        "--bin",
        package,
        "--message-format=json-render-diagnostics",
    ])
    .current_dir(root());
    let out = run(&mut cmd, BUILD_TIMEOUT).await?;
    if !out.success {
        bail!("cargo build -p {package} failed:\n{}", out.stderr);
    }
    executable(&out.stdout, package)
}

/// The executable that cargo's compiler-artifact message names for the binary target `name`,
/// wherever the target directory is.
fn executable(messages: &str, name: &str) -> anyhow::Result<PathBuf> {
    messages
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == name)
        .find_map(|m| m["executable"].as_str().map(PathBuf::from))
        .ok_or_else(|| anyhow!("cargo build named no executable {name}"))
}

static TRAEFIK: OnceCell<PathBuf> = OnceCell::const_new();

/// The Traefik executable the proxy suites run: `$VOICE_E2E_TRAEFIK_BIN`, or built once into the
/// cache by `tests/cluster/build-traefik` (its messages go to the test's stderr).
pub async fn traefik_binary() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os("VOICE_E2E_TRAEFIK_BIN") {
        return Ok(PathBuf::from(path));
    }
    TRAEFIK
        .get_or_try_init(|| async {
            let mut cmd = Command::new(root().join("tests/cluster/build-traefik"));
            cmd.arg("--print-path").stderr(Stdio::inherit());
            let out = run(&mut cmd, BUILD_TIMEOUT).await?;
            if !out.success {
                bail!("tests/cluster/build-traefik failed (its messages are above)");
            }
            Ok(PathBuf::from(out.stdout.trim()))
        })
        .await
        .cloned()
}

/// A test tool from `tests/tools/build` (built into the cache on first use; its build messages
/// go to the test's stderr).
pub async fn tool(name: &str) -> anyhow::Result<PathBuf> {
    let mut cmd = Command::new(root().join("tests/tools/build"));
    cmd.arg(name).stderr(Stdio::inherit());
    let out = run(&mut cmd, BUILD_TIMEOUT).await?;
    if !out.success {
        bail!("tests/tools/build {name} failed (its messages are above)");
    }
    Ok(PathBuf::from(out.stdout.trim()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_executable_among_cargo_messages() {
        let messages = r#"{"reason":"compiler-artifact","target":{"name":"kube"},"executable":null}
not json
{"reason":"compiler-artifact","target":{"name":"voice-operator"},"executable":"/t/debug/voice-operator"}
{"reason":"build-finished","success":true}"#;
        assert_eq!(
            executable(messages, "voice-operator").expect("found"),
            PathBuf::from("/t/debug/voice-operator")
        );
        assert!(executable(messages, "voice-agent").is_err());
    }
}
