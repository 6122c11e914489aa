//! Running the command-line tools the suites drive (`kubectl`, `helm`, `go`, `cargo`, the test
//! tools): bounded in time, output captured, and a failure that says what the tool printed.

use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use tokio::io::AsyncWriteExt as _;
use tokio::process::Command;

/// Longest a `kubectl` or `helm` command may take (`helm install --wait` included).
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(150);

/// What a finished command printed.
#[derive(Debug)]
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

/// Runs `cmd` within [`COMMAND_TIMEOUT`]; fails with its output unless it exits 0, returns
/// its stdout otherwise.
pub async fn run_ok(cmd: &mut Command) -> anyhow::Result<String> {
    let shown = format!("{:?}", cmd.as_std());
    let out = run(cmd, COMMAND_TIMEOUT).await?;
    if !out.success {
        bail!("{shown} failed:\n{}{}", out.stdout, out.stderr);
    }
    Ok(out.stdout)
}

/// Runs `cmd` with `input` on its stdin, within [`COMMAND_TIMEOUT`], whatever its exit status.
pub async fn try_pipe(cmd: &mut Command, input: &str) -> anyhow::Result<Output> {
    let shown = format!("{:?}", cmd.as_std());
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("cannot run {shown}"))?;
    let mut stdin = child.stdin.take().ok_or_else(|| anyhow!("{shown} has no stdin"))?;
    let exchange = async {
        stdin.write_all(input.as_bytes()).await?;
        drop(stdin);
        anyhow::Ok(child.wait_with_output().await?)
    };
    let out = tokio::time::timeout(COMMAND_TIMEOUT, exchange)
        .await
        .map_err(|_| anyhow!("{shown} did not finish within {COMMAND_TIMEOUT:?}"))??;
    Ok(Output {
        success: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

/// [`try_pipe`], failing with its stderr unless it exits 0; returns its stdout otherwise.
pub async fn pipe(cmd: &mut Command, input: &str) -> anyhow::Result<String> {
    let shown = format!("{:?}", cmd.as_std());
    let out = try_pipe(cmd, input).await?;
    if !out.success {
        bail!("{shown} failed: {}", out.stderr);
    }
    Ok(out.stdout)
}
