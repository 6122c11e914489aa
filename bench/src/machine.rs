//! The machine a run measured, and waiting for it to be quiet: other processes (a compiler, a
//! test suite) on a 2-core machine would otherwise show up as the server's latency.

use std::process::Command;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::{Instant, sleep};

use crate::procfs;
use crate::servers::Programs;

/// CPU used by all processes (percent of one core) at or under which the machine counts as
/// quiet, read while the benchmark itself is idle. The load average is recorded but not used
/// for this: it lags by minutes and still counts the build that ran just before.
const QUIET_BUSY_PERCENT: f64 = 25.0;
/// A failed point measured while others used more than this on average, or more than the
/// peak figure in any quarter second, is run again.
pub const NOISY_OTHERS_PERCENT: f64 = 20.0;
pub const NOISY_OTHERS_PEAK_PERCENT: f64 = 50.0;
/// How long each quietness reading lasts, and the pause between readings.
const QUIET_SAMPLE: Duration = Duration::from_secs(3);
const QUIET_RETRY: Duration = Duration::from_secs(15);

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Machine {
    pub cpu_model: String,
    pub cores: usize,
    pub memory_gib: f64,
    pub kernel: String,
    pub rustc: String,
    pub python: String,
    pub python_packages: String,
    /// The Nova Sonic peers' interpreters and packages: (stack, versions).
    #[serde(default)]
    pub peers: Vec<(String, String)>,
    pub commit: String,
    pub date: String,
    pub load: Load,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Load {
    /// `/proc/loadavg`: 1, 5 and 15 minute load averages.
    pub loadavg: String,
}

impl Load {
    pub fn now() -> Self {
        Self {
            loadavg: std::fs::read_to_string("/proc/loadavg")
                .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
                .unwrap_or_default(),
        }
    }
}

pub async fn describe(programs: &Programs) -> Machine {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let memory_kib: f64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    let python_packages = run(
        &programs.python,
        &[
            "-c",
            "import importlib.metadata as m; print(' '.join(f'{p}=={m.version(p)}' for p in ('websockets', 'uvloop')))",
        ],
    );
    let mut peers = Vec::new();
    for (peer, python, packages) in [
        (
            "Strands",
            &programs.strands_python,
            "'strands-agents', 'aws_sdk_bedrock_runtime', 'awscrt', 'websockets'",
        ),
        (
            "Pipecat",
            &programs.pipecat_python,
            "'pipecat-ai', 'aws_sdk_bedrock_runtime', 'awscrt', 'fastapi', 'uvicorn'",
        ),
    ] {
        let Some(python) = python else { continue };
        let script = format!(
            "import importlib.metadata as m, platform; \
             print('Python ' + platform.python_version() + ', ' + ' '.join(f'{{p}}=={{m.version(p)}}' for p in ({packages})))"
        );
        peers.push((peer.to_owned(), run(python, &["-c", &script])));
    }
    Machine {
        peers,
        cpu_model: cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned())
            .unwrap_or_default(),
        // Every core of the machine, not just those this process is pinned to.
        cores: cpuinfo.lines().filter(|l| l.starts_with("processor")).count(),
        memory_gib: memory_kib / 1024.0 / 1024.0,
        kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim()
            .to_owned(),
        rustc: run("rustc", &["--version"]),
        python: run(&programs.python, &["--version"]),
        python_packages,
        commit: commit(),
        date: run("date", &["-u", "+%Y-%m-%d %H:%M UTC"]),
        load: Load::now(),
    }
}

fn commit() -> String {
    let hash = run("git", &["rev-parse", "--short", "HEAD"]);
    let dirty = Command::new("git")
        .args(["status", "--porcelain", "--untracked-files=no"])
        .output()
        .map(|o| !o.stdout.is_empty())
        .unwrap_or(false);
    if dirty {
        format!("{hash} (with local changes)")
    } else {
        hash
    }
}

fn run(program: impl AsRef<std::ffi::OsStr>, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .ok()
        .map(|o| {
            let text = if o.stdout.is_empty() { o.stderr } else { o.stdout };
            String::from_utf8_lossy(&text).trim().to_owned()
        })
        .unwrap_or_default()
}

/// CPU used by every process on the machine over a short reading (percent of one core).
async fn busy_percent() -> f64 {
    let ticks = procfs::ticks_per_second() as f64;
    let start = procfs::machine_busy_ticks();
    let began = Instant::now();
    sleep(QUIET_SAMPLE).await;
    match (start, procfs::machine_busy_ticks()) {
        (Some(a), Some(b)) => 100.0 * b.saturating_sub(a) as f64 / ticks / began.elapsed().as_secs_f64(),
        _ => 0.0,
    }
}

/// Waits until the machine is quiet, at most `limit`. Returns a note for the report when it
/// had to wait or gave up.
pub async fn wait_for_quiet(limit: Duration) -> Option<String> {
    if limit.is_zero() {
        return None;
    }
    let started = Instant::now();
    let mut waited = false;
    loop {
        let busy = busy_percent().await;
        let load = Load::now();
        if busy <= QUIET_BUSY_PERCENT {
            return waited.then(|| {
                format!(
                    "waited {:.0} s for other processes to finish (then {busy:.0}% of a core busy, load {})",
                    started.elapsed().as_secs_f64(),
                    load.loadavg
                )
            });
        }
        if started.elapsed() >= limit {
            return Some(format!(
                "the machine was still busy after {:.0} s ({busy:.0}% of a core used by other processes, load {}): measured anyway",
                limit.as_secs_f64(),
                load.loadavg
            ));
        }
        eprintln!(
            "voice-bench: machine busy ({busy:.0}% of a core, load {}), waiting",
            load.loadavg
        );
        waited = true;
        sleep(QUIET_RETRY).await;
    }
}
