//! A binary under test (the agent, the operator) running as a local child process: its output
//! in a log file, started once its readiness endpoint answers 200, stopped with SIGTERM like a
//! pod, and killed if the test lets go of it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use tokio::process::{Child, Command};

use crate::{http, metrics, wait};

/// Longest a process may take to become ready.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest a stopping process may take before the test calls it hung.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// Log lines shown when a process fails to start or stop.
const TAIL_LINES: usize = 40;

/// A running child process with an HTTP endpoint.
pub struct Process {
    child: Child,
    /// Its stdout and stderr. Kept when the test fails (the path is printed at start), removed
    /// otherwise.
    pub log: PathBuf,
    /// Where its HTTP endpoint listens.
    pub addr: SocketAddr,
}

impl Process {
    /// Starts `cmd` (output to a log file named after `name`) and waits until `GET ready_path`
    /// on `addr` answers 200.
    pub async fn start(mut cmd: Command, name: &str, addr: SocketAddr, ready_path: &str) -> anyhow::Result<Self> {
        let log = std::env::temp_dir().join(format!("voice-e2e-{name}-{}.log", uuid::Uuid::new_v4().simple()));
        let file = std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {name} ({:?})", cmd.as_std().get_program()))?;
        eprintln!("voice-e2e: started {name}; log {}", log.display());
        let process = Self { child, log, addr };
        wait::eventually(&format!("{name} {ready_path}"), START_TIMEOUT, || async {
            let (status, _) = process.get(ready_path).await?;
            Ok((status == 200).then_some(()))
        })
        .await
        .map_err(|e| anyhow!("{e:#}\n{}", process.log_tail(TAIL_LINES)))?;
        Ok(process)
    }

    /// The process id.
    pub fn pid(&self) -> anyhow::Result<u32> {
        self.child.id().ok_or_else(|| anyhow!("the process has exited"))
    }

    /// SIGTERM, then its exit status (within [`STOP_TIMEOUT`]).
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
                    "the process did not stop within {STOP_TIMEOUT:?}\n{}",
                    self.log_tail(TAIL_LINES)
                )
            })?
            .map_err(Into::into)
    }

    /// SIGKILL: a crash.
    pub async fn kill(mut self) -> anyhow::Result<()> {
        self.child.kill().await?;
        Ok(())
    }

    /// `GET path` on its endpoint: (status, body).
    pub async fn get(&self, path: &str) -> anyhow::Result<(u16, String)> {
        http::get(self.addr, path).await
    }

    /// The value of an unlabelled metric on its `/metrics`, or the sum over a labelled family
    /// (0 while the family has no sample).
    pub async fn metric(&self, family: &str) -> anyhow::Result<f64> {
        let (_, body) = self.get("/metrics").await?;
        Ok(metrics::family_sum(&body, family).unwrap_or(0.0))
    }

    /// The last `n` lines of its log.
    pub fn log_tail(&self, n: usize) -> String {
        log_tail(&self.log, n)
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

/// The last `n` lines of the log at `path`, under a header naming it.
pub fn log_tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let tail = lines[lines.len().saturating_sub(n)..].join("\n");
    format!("--- last lines of {}:\n{tail}", path.display())
}

/// A free loopback address for a child to listen on (the kernel picks the port; the window
/// before the child binds it is harmless on loopback in a test).
pub fn free_addr() -> anyhow::Result<SocketAddr> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?)
}
