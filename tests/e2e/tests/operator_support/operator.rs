//! The operator binary as a child process, with its admin endpoints.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::process::{Child, Command};
use tokio::sync::OnceCell;

use super::{OperatorEnv, eventually, workspace};

/// How long a stopping operator may take before the test calls it hung.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// A running `voice-operator`.
pub struct Operator {
    child: Child,
    pub log: PathBuf,
    pub admin: SocketAddr,
    pub identity: String,
}

impl Operator {
    /// Starts the binary as the test's operator account, watching only the test namespace,
    /// and waits for `/readyz`. `overrides` replace or add flags (`("--resync", "1s")`);
    /// `variables` are added to its environment.
    pub(super) async fn start(
        env: &OperatorEnv,
        n: usize,
        overrides: &[(&str, &str)],
        variables: &[(&str, &str)],
    ) -> anyhow::Result<Self> {
        let binary = binary().await?;
        let admin = SocketAddr::from(([127, 0, 0, 1], free_port()?));
        let identity = format!("e2e-operator-{n}");
        let log = std::env::temp_dir().join(format!("voice-operator-{}-{n}.log", env.name()));
        let file = std::fs::File::create(&log)?;

        let kubeconfig = env.account.path().to_string_lossy().into_owned();
        let admin_addr = admin.to_string();
        let mut flags: BTreeMap<&str, &str> = [
            ("--kubeconfig", kubeconfig.as_str()),
            ("--namespace", env.name()),
            ("--lease-namespace", env.name()),
            ("--admin-addr", admin_addr.as_str()),
            ("--identity", identity.as_str()),
            // Short enough that steady-state checks see many resyncs.
            ("--resync", "3s"),
            // Short enough that a successor of a killed operator leads soon.
            ("--lease-duration", "8s"),
            ("--log", "info,voice_operator=debug"),
        ]
        .into();
        flags.extend(overrides.iter().copied());

        let mut cmd = Command::new(&binary);
        for (flag, value) in &flags {
            cmd.arg(format!("{flag}={value}"));
        }
        let child = cmd
            .env_remove("KUBECONFIG")
            .envs(variables.iter().copied())
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        eprintln!(
            "voice-e2e: started {identity} in namespace {}; log {}",
            env.name(),
            log.display()
        );
        let operator = Self {
            child,
            log,
            admin,
            identity,
        };
        eventually("operator /readyz", Duration::from_secs(30), || async {
            Ok(operator
                .get("/readyz")
                .await
                .ok()
                .filter(|(status, _)| *status == 200)
                .map(|_| ()))
        })
        .await
        .map_err(|e| anyhow!("{e:#}\n{}", operator.log_tail(40)))?;
        Ok(operator)
    }

    /// The process id.
    pub fn pid(&self) -> anyhow::Result<u32> {
        self.child.id().ok_or_else(|| anyhow!("the operator has exited"))
    }

    /// SIGTERM, then waits for the exit.
    pub async fn stop(mut self) -> anyhow::Result<ExitStatus> {
        let pid = self.pid()?.to_string();
        let status = Command::new("kill").args(["-TERM", &pid]).status().await?;
        if !status.success() {
            bail!("kill -TERM {pid} failed");
        }
        tokio::time::timeout(STOP_TIMEOUT, self.child.wait())
            .await
            .map_err(|_| {
                anyhow!(
                    "the operator did not stop within {STOP_TIMEOUT:?}\n{}",
                    self.log_tail(40)
                )
            })?
            .map_err(Into::into)
    }

    /// SIGKILL: a crash.
    pub async fn kill(mut self) -> anyhow::Result<()> {
        self.child.kill().await?;
        Ok(())
    }

    /// `GET path` on the admin port: (status, body).
    pub async fn get(&self, path: &str) -> anyhow::Result<(u16, String)> {
        let request = async {
            let mut stream = tokio::net::TcpStream::connect(self.admin).await?;
            stream
                .write_all(format!("GET {path} HTTP/1.0\r\nHost: {}\r\n\r\n", self.admin).as_bytes())
                .await?;
            let mut response = Vec::new();
            stream.read_to_end(&mut response).await?;
            anyhow::Ok(String::from_utf8_lossy(&response).into_owned())
        };
        let text = tokio::time::timeout(Duration::from_secs(5), request)
            .await
            .map_err(|_| anyhow!("GET {path} timed out"))??;
        let status = text
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| anyhow!("no HTTP status in {text:?}"))?;
        let body = text
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_owned())
            .unwrap_or_default();
        Ok((status, body))
    }

    /// The value of an unlabelled metric, or the sum over a labelled family.
    pub async fn metric(&self, name: &str) -> anyhow::Result<f64> {
        let (_, body) = self.get("/metrics").await?;
        Ok(body
            .lines()
            .filter(|l| {
                l.strip_prefix(name)
                    .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum())
    }

    /// The last `n` lines of the operator's log.
    pub fn log_tail(&self, n: usize) -> String {
        log_tail(&self.log, n)
    }
}

impl Drop for Operator {
    /// The log is kept when the test fails (its path is printed at start), removed otherwise.
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_file(&self.log);
        }
    }
}

pub fn log_tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let tail = lines[lines.len().saturating_sub(n)..].join("\n");
    format!("--- last lines of {}:\n{tail}", path.display())
}

/// Longest a `cargo build` of the operator may take (a cold build of the whole dependency
/// tree takes minutes on two cores).
const BUILD_TIMEOUT: Duration = Duration::from_secs(30 * 60);

static BINARY: OnceCell<PathBuf> = OnceCell::const_new();

/// The operator binary: `$VOICE_OPERATOR_BIN`, or built once per test process with
/// `cargo build -p voice-operator` (a no-op when it is up to date; cargo releases its build
/// lock before running tests, so this does not deadlock).
async fn binary() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os("VOICE_OPERATOR_BIN") {
        return Ok(PathBuf::from(path));
    }
    BINARY.get_or_try_init(build).await.cloned()
}

async fn build() -> anyhow::Result<PathBuf> {
    let mut cmd = Command::new(env!("CARGO"));
    cmd.args([
        "build",
        "-p",
        "voice-operator",
        "--bin",
        "voice-operator",
        "--message-format=json-render-diagnostics",
    ])
    .current_dir(workspace())
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .kill_on_drop(true);
    let out = tokio::time::timeout(BUILD_TIMEOUT, cmd.output())
        .await
        .map_err(|_| anyhow!("cargo build -p voice-operator took longer than {BUILD_TIMEOUT:?}"))??;
    if !out.status.success() {
        bail!(
            "cargo build -p voice-operator failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // The compiler-artifact message of the binary names the executable, wherever the target
    // directory is.
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == "voice-operator")
        .find_map(|m| m["executable"].as_str().map(PathBuf::from))
        .ok_or_else(|| anyhow!("cargo build -p voice-operator named no executable"))
}

fn free_port() -> anyhow::Result<u16> {
    // The kernel picks a free port; the tiny window before the operator binds it is harmless
    // on loopback in a test.
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}
