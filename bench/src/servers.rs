//! The processes under test: the agent, the Python peer relay, the Strands and Pipecat peers,
//! the Bedrock-wire fake and a bare echo server, each started pinned to its CPUs and killed when
//! dropped.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::Value;

/// How long a server may take to say where it listens.
const START_LIMIT: Duration = Duration::from_secs(30);
/// Output lines kept per server, for error messages.
const KEPT_LINES: usize = 40;

/// Where the programs are, and which CPUs they get.
#[derive(Debug, Clone)]
pub struct Programs {
    pub agent: PathBuf,
    /// The Bedrock-wire fake (`fake-bedrock`, a development tool of this workspace).
    pub fake_bedrock: PathBuf,
    pub python: PathBuf,
    pub relay_script: PathBuf,
    /// Python 3.12 with bench/python/requirements-strands.txt, for the Strands peer.
    pub strands_python: Option<PathBuf>,
    /// Python 3.12 with bench/python/requirements-pipecat.txt, for the Pipecat peer.
    pub pipecat_python: Option<PathBuf>,
    /// Where the peers' scripts are (`strands_server.py`, `pipecat_server.py`).
    pub peer_scripts: PathBuf,
    /// This benchmark's own binary (its `echo` subcommand is the floor server).
    pub bench: PathBuf,
    /// CPU list for servers under test (`taskset -c`), or none to leave them unpinned.
    pub server_cpus: Option<String>,
    /// CPU list of the load generator, shared by helpers such as the Bedrock fake.
    pub generator_cpus: Option<String>,
    /// Scratch directory for configs and certificates.
    pub scratch: PathBuf,
}

/// A running server. Killed (SIGKILL) on drop: the benchmark has already closed its sessions.
pub struct Server {
    child: Child,
    /// What the server printed when ready (its address, or the fake's endpoint line).
    pub ready: String,
    logs: Arc<Mutex<VecDeque<String>>>,
}

impl Server {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn addr(&self) -> anyhow::Result<SocketAddr> {
        self.ready
            .parse()
            .with_context(|| format!("not an address: {}", self.ready))
    }

    pub fn ws_url(&self) -> anyhow::Result<String> {
        Ok(format!("ws://{}/ws", self.addr()?))
    }

    /// The last lines the server printed.
    pub fn recent_logs(&self) -> Vec<String> {
        self.logs
            .lock()
            .map(|l| l.iter().cloned().collect())
            .unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the agent with a YAML config and a fixed number of runtime worker threads.
pub fn agent(
    programs: &Programs,
    name: &str,
    config: &str,
    workers: usize,
    env: &[(&str, &str)],
) -> anyhow::Result<Server> {
    let path = programs.scratch.join(format!("{name}.yaml"));
    std::fs::write(&path, config).with_context(|| format!("write {}", path.display()))?;
    let mut command = pinned(programs, &programs.agent);
    command
        .arg("--config")
        .arg(&path)
        .args(["--log-format", "json"])
        // tokio reads this when it builds the agent's runtime.
        .env("TOKIO_WORKER_THREADS", workers.to_string())
        .envs(env.iter().copied());
    start(command, |line| {
        let v: Value = serde_json::from_str(line).ok()?;
        (v["message"] == "voice agent listening").then(|| v["address"].as_str().map(str::to_owned))?
    })
}

/// Starts the Python relay (`bench/python/relay.py`).
pub fn python_relay(programs: &Programs, uvloop: bool) -> anyhow::Result<Server> {
    let mut command = pinned(programs, &programs.python);
    command.arg(&programs.relay_script).args(["--listen", "127.0.0.1:0"]);
    if uvloop {
        command.arg("--uvloop");
    }
    start(command, listening_line)
}

/// Starts the floor: a bare WebSocket echo with no session logic.
pub fn echo(programs: &Programs) -> anyhow::Result<Server> {
    let mut command = pinned(programs, &programs.bench);
    command.args(["echo", "--listen", "127.0.0.1:0"]);
    start(command, listening_line)
}

/// Starts a Nova Sonic peer (`bench/python/strands_server.py` or `pipecat_server.py` under
/// `python`) that talks to the Bedrock fake at `endpoint`, trusting `ca_file`.
pub fn nova_peer(
    programs: &Programs,
    python: &Path,
    script: &str,
    endpoint: &str,
    ca_file: &Path,
) -> anyhow::Result<Server> {
    let mut command = pinned(programs, python);
    command
        .arg(programs.peer_scripts.join(script))
        .args(["--listen", "127.0.0.1:0", "--endpoint", endpoint])
        // The Python AWS SDK's TLS (awscrt) trusts this file as well as the system's CAs.
        .env("SSL_CERT_FILE", ca_file)
        .envs(NOVA_CREDENTIALS.iter().copied());
    start(command, listening_line)
}

/// What every Nova Sonic client of the fake signs with; the fake checks the signature's shape.
pub const NOVA_CREDENTIALS: [(&str, &str); 3] = [
    ("AWS_ACCESS_KEY_ID", "bench"),
    ("AWS_SECRET_ACCESS_KEY", "bench"),
    ("AWS_EC2_METADATA_DISABLED", "true"),
];

/// Starts the Bedrock-wire fake on the generator's CPUs, with `args` added to its command line;
/// returns it, its endpoint and the CA file clients must trust.
pub fn fake_bedrock(programs: &Programs, args: &[&str]) -> anyhow::Result<(Server, String, PathBuf)> {
    // A new file each time: the fake announces itself once the file exists, so a leftover
    // from the previous fake could be read before the new certificate is written.
    static STARTS: AtomicUsize = AtomicUsize::new(0);
    let n = STARTS.fetch_add(1, Ordering::Relaxed);
    let ca_file = programs.scratch.join(format!("fake-bedrock-ca-{n}.pem"));
    let mut command = match &programs.generator_cpus {
        Some(cpus) => {
            let mut c = Command::new("taskset");
            c.args(["-c", cpus]).arg(&programs.fake_bedrock);
            c
        }
        None => Command::new(&programs.fake_bedrock),
    };
    command
        .args(["--listen", "127.0.0.1:0", "--ca-file"])
        .arg(&ca_file)
        .args(["--log", "warn"])
        .args(args)
        .env("TOKIO_WORKER_THREADS", "1");
    let server = start(command, |line| {
        let v: Value = serde_json::from_str(line).ok()?;
        v["endpoint"].as_str().map(str::to_owned)
    })?;
    let endpoint = server.ready.clone();
    Ok((server, endpoint, ca_file))
}

fn listening_line(line: &str) -> Option<String> {
    let v: Value = serde_json::from_str(line).ok()?;
    v["listening"].as_str().map(str::to_owned)
}

fn pinned(programs: &Programs, program: &Path) -> Command {
    match &programs.server_cpus {
        Some(cpus) => {
            let mut command = Command::new("taskset");
            command.args(["-c", cpus]).arg(program);
            command
        }
        None => Command::new(program),
    }
}

/// Spawns `command` and waits until a line of its output satisfies `ready`.
fn start(mut command: Command, ready: fn(&str) -> Option<String>) -> anyhow::Result<Server> {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("start {command:?}"))?;
    let logs = Arc::new(Mutex::new(VecDeque::new()));
    let (ready_tx, ready_rx) = mpsc::channel();
    if let Some(stdout) = child.stdout.take() {
        watch_output(stdout, ready, ready_tx.clone(), logs.clone());
    }
    if let Some(stderr) = child.stderr.take() {
        watch_output(stderr, ready, ready_tx, logs.clone());
    }
    match ready_rx.recv_timeout(START_LIMIT) {
        Ok(ready) => Ok(Server { child, ready, logs }),
        Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            let recent: Vec<String> = logs.lock().map(|l| l.iter().cloned().collect()).unwrap_or_default();
            bail!("{command:?} did not become ready; last output:\n{}", recent.join("\n"))
        }
    }
}

/// Reads a child's output on a thread until it closes, so the pipe never fills up.
fn watch_output<R: Read + Send + 'static>(
    output: R,
    ready: fn(&str) -> Option<String>,
    ready_tx: mpsc::Sender<String>,
    logs: Arc<Mutex<VecDeque<String>>>,
) {
    std::thread::spawn(move || {
        for line in BufReader::new(output).lines().map_while(Result::ok) {
            if let Some(value) = ready(&line) {
                let _ = ready_tx.send(value);
            }
            if let Ok(mut logs) = logs.lock() {
                if logs.len() == KEPT_LINES {
                    logs.pop_front();
                }
                logs.push_back(line);
            }
        }
    });
}
