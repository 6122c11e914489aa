//! Shared by the chart suites (`chart_*.rs`): rendering the chart with the cluster's `helm`,
//! reading the rendered documents, the workspace binaries and test tools, child processes with
//! HTTP endpoints, and bounded polling.

#![allow(dead_code)] // each suite uses a different subset

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use serde_json::Value;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::process::{Child, Command};
use tokio::sync::OnceCell;
use voice_e2e::TestCluster;

/// Longest wait for anything the cluster does (rollouts, conditions).
pub const WAIT: Duration = Duration::from_secs(90);
/// Longest a helm or kubectl command may take.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(150);
/// Longest a first build of a workspace binary or a test tool may take (minutes on 2 cores).
const BUILD_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// The Prometheus Operator release whose monitoring.coreos.com CRDs the suites install.
const PROMETHEUS_OPERATOR: &str = "github.com/prometheus-operator/prometheus-operator@v0.85.0";
/// The CRDs of the kinds the chart renders.
const MONITORING_CRDS: [&str; 3] = ["servicemonitors", "podmonitors", "prometheusrules"];

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The chart under test.
pub fn chart() -> PathBuf {
    workspace().join("charts/voice-operator")
}

/// What a finished command printed.
pub struct Output {
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `cmd` to completion within `timeout`, whatever its exit status.
pub async fn run(cmd: &mut Command, timeout: Duration) -> anyhow::Result<Output> {
    let shown = format!("{:?}", cmd.as_std());
    let out = tokio::time::timeout(timeout, cmd.stdin(Stdio::null()).kill_on_drop(true).output())
        .await
        .map_err(|_| anyhow!("{shown} did not finish within {timeout:?}"))?
        .with_context(|| format!("cannot run {shown}"))?;
    Ok(Output {
        success: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

/// Runs `cmd` within [`COMMAND_TIMEOUT`]; fails with its output unless it exits 0.
pub async fn run_ok(cmd: &mut Command) -> anyhow::Result<String> {
    let shown = format!("{:?}", cmd.as_std());
    let out = run(cmd, COMMAND_TIMEOUT).await?;
    if !out.success {
        bail!("{shown} failed:\n{}{}", out.stdout, out.stderr);
    }
    Ok(out.stdout)
}

/// `helm template <release> <chart> --namespace <namespace>` plus `args`.
pub fn helm_template(cluster: &TestCluster, release: &str, namespace: &str, args: &[&str]) -> Command {
    let mut helm = cluster.helm();
    helm.arg("template")
        .arg(release)
        .arg(chart())
        .args(["--namespace", namespace])
        .args(args);
    helm
}

/// The chart rendered with `args`, as YAML.
pub async fn render(cluster: &TestCluster, namespace: &str, args: &[&str]) -> anyhow::Result<String> {
    run_ok(&mut helm_template(cluster, namespace, namespace, args))
        .await
        .context("rendering the chart")
}

/// The chart rendered with `args`, one JSON value per document.
pub async fn render_documents(cluster: &TestCluster, namespace: &str, args: &[&str]) -> anyhow::Result<Vec<Value>> {
    documents(&render(cluster, namespace, args).await?)
}

/// Every non-empty document of a multi-document YAML stream.
pub fn documents(yaml: &str) -> anyhow::Result<Vec<Value>> {
    let docs: Vec<Value> = serde_saphyr::from_multiple(yaml).context("rendered YAML does not parse")?;
    Ok(docs.into_iter().filter(|d| !d.is_null()).collect())
}

/// The documents of `kind`.
pub fn of_kind<'a>(docs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    docs.iter().filter(|d| d["kind"] == kind).collect()
}

/// The one document of `kind` named `name`.
pub fn object<'a>(docs: &'a [Value], kind: &str, name: &str) -> anyhow::Result<&'a Value> {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .ok_or_else(|| anyhow!("no {kind} {name} among the rendered documents"))
}

/// The string items of a JSON array (empty when it is not one).
pub fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
        .unwrap_or_default()
}

/// Installs the Prometheus Operator's ServiceMonitor, PodMonitor and PrometheusRule CRDs
/// (idempotent) from the pinned release's Go module, downloaded through the Go module proxy
/// the first time, like the cluster's own modules.
pub async fn install_monitoring_crds(cluster: &TestCluster) -> anyhow::Result<()> {
    let mut go = Command::new(go_binary());
    go.args(["mod", "download", "-json", PROMETHEUS_OPERATOR])
        .env("GOFLAGS", "-mod=mod")
        .current_dir(std::env::temp_dir());
    let out = run(&mut go, BUILD_TIMEOUT).await?;
    if !out.success {
        bail!(
            "go mod download {PROMETHEUS_OPERATOR} failed:\n{}{}",
            out.stdout,
            out.stderr
        );
    }
    let info: Value = serde_json::from_str(&out.stdout)?;
    let dir = info["Dir"]
        .as_str()
        .ok_or_else(|| anyhow!("go mod download printed no Dir: {}", out.stdout))?;
    let mut names = Vec::new();
    for plural in MONITORING_CRDS {
        let file = Path::new(dir).join(format!(
            "example/prometheus-operator-crd/monitoring.coreos.com_{plural}.yaml"
        ));
        run_ok(
            cluster
                .kubectl()
                .args(["apply", "--server-side", "--force-conflicts", "-f"])
                .arg(&file),
        )
        .await
        .with_context(|| format!("installing {}", file.display()))?;
        names.push(format!("crd/{plural}.monitoring.coreos.com"));
    }
    run_ok(
        cluster
            .kubectl()
            .args(["wait", "--for=condition=Established", "--timeout=60s"])
            .args(&names),
    )
    .await?;
    Ok(())
}

/// Installs the VoiceAgent CRD from crds/ (idempotent; the operator refuses to start without
/// it).
pub async fn ensure_voiceagent_crd(cluster: &TestCluster) -> anyhow::Result<()> {
    let crd = workspace().join("crds/voiceagents.voiceagent.dev.yaml");
    run_ok(
        cluster
            .kubectl()
            .args(["apply", "--server-side", "--force-conflicts", "-f"])
            .arg(&crd),
    )
    .await?;
    run_ok(cluster.kubectl().args([
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        "crd/voiceagents.voiceagent.dev",
    ]))
    .await?;
    Ok(())
}

fn go_binary() -> PathBuf {
    std::env::var_os("GO").map(PathBuf::from).unwrap_or_else(|| {
        let fallback = Path::new("/usr/local/go/bin/go");
        if fallback.is_file() && which("go").is_none() {
            fallback.to_path_buf()
        } else {
            PathBuf::from("go")
        }
    })
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// A test tool from `tests/tools/build` (built into the cache on first use).
pub async fn tool(name: &str) -> anyhow::Result<PathBuf> {
    let mut cmd = Command::new(workspace().join("tests/tools/build"));
    cmd.arg(name).stderr(Stdio::inherit());
    let out = run(&mut cmd, BUILD_TIMEOUT).await?;
    if !out.success {
        bail!("tests/tools/build {name} failed (its messages are above)");
    }
    Ok(PathBuf::from(out.stdout.trim()))
}

static BINARIES: OnceCell<(PathBuf, PathBuf)> = OnceCell::const_new();

/// The `voice-agent` and `voice-operator` executables, built once per test process with
/// `cargo build` (a no-op when up to date), or `$VOICE_AGENT_BIN` / `$VOICE_OPERATOR_BIN`.
pub async fn binaries() -> anyhow::Result<&'static (PathBuf, PathBuf)> {
    BINARIES
        .get_or_try_init(|| async {
            let from_env = (
                std::env::var_os("VOICE_AGENT_BIN").map(PathBuf::from),
                std::env::var_os("VOICE_OPERATOR_BIN").map(PathBuf::from),
            );
            if let (Some(agent), Some(operator)) = from_env {
                return Ok((agent, operator));
            }
            let mut cmd = Command::new(env!("CARGO"));
            cmd.args([
                "build",
                "-p",
                "voice-agent",
                "--bin",
                "voice-agent",
                "-p",
                "voice-operator",
                "--bin",
                "voice-operator",
                "--message-format=json-render-diagnostics",
            ])
            .current_dir(workspace());
            let out = run(&mut cmd, BUILD_TIMEOUT).await?;
            if !out.success {
                bail!("cargo build of voice-agent and voice-operator failed:\n{}", out.stderr);
            }
            let executable = |name: &str| {
                out.stdout
                    .lines()
                    .filter_map(|line| serde_json::from_str::<Value>(line).ok())
                    .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == name)
                    .find_map(|m| m["executable"].as_str().map(PathBuf::from))
                    .ok_or_else(|| anyhow!("cargo build named no executable {name}"))
            };
            Ok((executable("voice-agent")?, executable("voice-operator")?))
        })
        .await
}

/// A child process whose output goes to a log file; killed when dropped.
pub struct Process {
    child: Child,
    pub log: PathBuf,
    pub addr: SocketAddr,
}

impl Process {
    /// Starts `cmd` (output to a log file named after `name`) and waits until `GET ready_path`
    /// on `addr` answers 200.
    pub async fn start(mut cmd: Command, name: &str, addr: SocketAddr, ready_path: &str) -> anyhow::Result<Self> {
        let log = std::env::temp_dir().join(format!("voice-e2e-{name}-{}.log", uuid::Uuid::new_v4().simple()));
        let file = std::fs::File::create(&log)?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {name}"))?;
        eprintln!("voice-e2e: started {name}; log {}", log.display());
        let process = Self { child, log, addr };
        eventually(&format!("{name} {ready_path}"), Duration::from_secs(30), || async {
            Ok(http_get(process.addr, ready_path)
                .await
                .ok()
                .filter(|(status, _)| *status == 200)
                .map(|_| ()))
        })
        .await
        .map_err(|e| anyhow!("{e:#}\n{}", process.log_tail(40)))?;
        Ok(process)
    }

    /// SIGTERM, then the exit status (bounded).
    pub async fn stop(mut self) -> anyhow::Result<std::process::ExitStatus> {
        let pid = self.child.id().ok_or_else(|| anyhow!("the process has exited"))?;
        let status = Command::new("kill").args(["-TERM", &pid.to_string()]).status().await?;
        if !status.success() {
            bail!("kill -TERM {pid} failed");
        }
        let timeout = Duration::from_secs(30);
        tokio::time::timeout(timeout, self.child.wait())
            .await
            .map_err(|_| anyhow!("the process did not stop within {timeout:?}\n{}", self.log_tail(40)))?
            .map_err(Into::into)
    }

    pub async fn get(&self, path: &str) -> anyhow::Result<(u16, String)> {
        http_get(self.addr, path).await
    }

    pub fn log_tail(&self, n: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let tail = lines[lines.len().saturating_sub(n)..].join("\n");
        format!("--- last lines of {}:\n{tail}", self.log.display())
    }
}

impl Drop for Process {
    /// The log is kept when the test fails (its path is printed at start).
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_file(&self.log);
        }
    }
}

/// `GET path` over HTTP/1.0: (status, body), within 5 seconds.
pub async fn http_get(addr: SocketAddr, path: &str) -> anyhow::Result<(u16, String)> {
    let request = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await?;
        stream
            .write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
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

/// A free loopback address (the kernel picks the port; the window before the child binds it
/// is harmless on loopback in a test).
pub fn free_addr() -> anyhow::Result<SocketAddr> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?)
}

/// Every series name a Prometheus text exposition can be queried by: sample names, plus the
/// names each `# TYPE` line implies (`_total` for counters, `_bucket`/`_sum`/`_count` for
/// histograms), so families without samples yet count too.
pub fn exposed_metric_names(exposition: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in exposition.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split_whitespace();
            let (Some(name), Some(kind)) = (parts.next(), parts.next()) else {
                continue;
            };
            let suffixes: &[&str] = match kind {
                "counter" => &["_total"],
                "histogram" => &["_bucket", "_sum", "_count"],
                "summary" => &["", "_sum", "_count"],
                _ => &[""],
            };
            for suffix in suffixes {
                names.insert(format!("{name}{suffix}"));
            }
        } else if !line.starts_with('#') && !line.trim().is_empty() {
            let end = line.find(['{', ' ']).unwrap_or(line.len());
            names.insert(line[..end].to_owned());
        }
    }
    names
}

/// Polls `f` every 250 ms until it yields a value, for at most `timeout`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut f: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<Option<T>>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    let mut last_error = None;
    loop {
        match f().await {
            Ok(Some(value)) => return Ok(value),
            Ok(None) => {}
            Err(err) => last_error = Some(err),
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(match last_error {
                Some(err) => anyhow!("timed out after {timeout:?} waiting for {what}; last error: {err:#}"),
                None => anyhow!("timed out after {timeout:?} waiting for {what}"),
            });
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
