//! Resumption on another replica after a drain, as a rollout does it: conversations on the
//! production path (the NovaSonic provider through the AWS SDK, against the Bedrock-wire fake)
//! run on agent A, each with one exchange behind it; A is sent SIGTERM, waits its drain
//! timeout, and closes every session with 1012 and its resume token; every caller reconnects
//! at once to agent B with the token, and asks a question. Both agents keep conversations in
//! the same Redis (a `redis-server` on loopback, started here), encrypted, as two pods of a
//! Deployment do. Measured per conversation, from the moment the caller read the close: until
//! B's `bidi_connection_start` says `resumed` (the store read, the model stream reopened with
//! the history) and until the first reply audio arrives from B.

use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::time::{Instant, timeout};
use tokio_tungstenite::tungstenite::Message;

use voice_e2e::conversation::{self, Socket};

use crate::load::{self, Percentiles};
use crate::servers::{self, Programs, Server};

/// The drain timeout of agent A: how long it lets live sessions go on before closing them.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(1);
/// Time allowed for one step of a conversation (handshake, an answer, the drain close).
const STEP_TIMEOUT: Duration = Duration::from_secs(30);
/// The Bedrock fake's pause before it speaks, as a model's own latency: part of the time to
/// the first reply audio that is not the handover's.
const FAKE_THINK_TIME: Duration = Duration::from_millis(250);
/// How long `redis-server` may take to accept connections.
const REDIS_START: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ResumeResult {
    pub conversations: usize,
    /// Conversations B resumed (its `bidi_connection_start` said so) and answered.
    pub resumed: usize,
    /// The first few reasons a conversation was not resumed and answered.
    pub failures: Vec<String>,
    /// Agent A's drain timeout (ms): the close comes this long after SIGTERM.
    pub drain_timeout_ms: u64,
    /// The fake model's pause before replying (ms), included in the time to first audio.
    #[serde(default)]
    pub model_think_ms: u64,
    /// From the caller reading the 1012 close to B's `bidi_connection_start` with `resumed`.
    pub close_to_resumed: Percentiles,
    /// From the caller reading the 1012 close to the first reply audio from B.
    pub close_to_first_audio: Percentiles,
    /// `redis-server --version`.
    pub redis: String,
}

/// What one conversation went through.
struct Handover {
    to_resumed: Duration,
    to_first_audio: Duration,
}

/// `redis-server` on a loopback port of its own, without persistence; killed on drop.
struct Redis {
    child: Child,
    port: u16,
}

impl Redis {
    async fn start() -> anyhow::Result<Self> {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .args(["--save", "", "--appendonly", "no", "--protected-mode", "yes"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| anyhow::anyhow!("redis-server (Debian package redis-server) did not start: {e}"))?;
        let redis = Self { child, port };
        let started = Instant::now();
        while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
            anyhow::ensure!(started.elapsed() < REDIS_START, "redis-server did not listen on {port}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(redis)
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn redis_version() -> String {
    Command::new("redis-server")
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|v| {
            v.split_whitespace()
                .find_map(|w| w.strip_prefix("v=").map(str::to_owned))
        })
        .unwrap_or_default()
}

/// Both agents' configuration: NovaSonic against the fake, conversations kept in `redis_port`'s
/// Redis, encrypted with the key in `key_file`.
fn agent_config(endpoint: &str, ca_file: &Path, redis_port: u16, key_file: &Path, max_sessions: usize) -> String {
    format!(
        "name: bench-resume\nlisten: 127.0.0.1:0\n\
         model: {{provider: NovaSonic, region: us-east-1, endpointUrl: \"{endpoint}\", caBundleFile: \"{}\"}}\n\
         session:\n  maxSessions: {max_sessions}\n  drainTimeout: {}ms\n  \
         resume: {{store: Redis, redis: {{url: \"redis://127.0.0.1:{redis_port}/0\"}}, encryptionKeyFile: \"{}\"}}\n\
         limits: {{handshakesPerMinute: 0}}\n\
         prompt: {{system: \"You are the benchmark agent.\"}}\n",
        ca_file.display(),
        DRAIN_TIMEOUT.as_millis(),
        key_file.display(),
    )
}

/// Runs `conversations` handovers from one agent to another.
pub async fn run(programs: &Programs, conversations: usize) -> anyhow::Result<ResumeResult> {
    let redis = Redis::start().await?;
    let key_file = programs.scratch.join("resume-key.hex");
    std::fs::write(&key_file, "5f".repeat(32))?;
    let think = format!("{}ms", FAKE_THINK_TIME.as_millis());
    let (_fake, endpoint, ca_file) = servers::fake_bedrock(programs, &["--think-time", &think])?;
    let config = agent_config(&endpoint, &ca_file, redis.port, &key_file, conversations + 16);
    let first = servers::agent(programs, "agent-resume-a", &config, 1, &servers::NOVA_CREDENTIALS)?;
    let second = servers::agent(programs, "agent-resume-b", &config, 1, &servers::NOVA_CREDENTIALS)?;
    let (from, to) = (first.addr()?, second.addr()?);

    // Every conversation starts on A and has one exchange behind it before the drain.
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel::<()>(conversations.max(1));
    let (drained_tx, drained_rx) = tokio::sync::watch::channel(false);
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..conversations {
        let (ready, drained) = (ready_tx.clone(), drained_rx.clone());
        tasks.spawn(async move { handover(n, from, to, ready, drained).await });
    }
    drop(ready_tx);
    let mut ready = 0;
    while ready < conversations {
        match timeout(STEP_TIMEOUT * 2, ready_rx.recv()).await {
            Ok(Some(())) => ready += 1,
            // A conversation that failed before the drain dropped its sender.
            Ok(None) | Err(_) => break,
        }
    }
    terminate(&first)?;
    let _ = drained_tx.send(true);

    let mut to_resumed = load::histogram();
    let mut to_first_audio = load::histogram();
    let mut failures = Vec::new();
    let mut resumed = 0;
    while let Some(joined) = tasks.join_next().await {
        match joined.map_err(|e| e.to_string()).and_then(|r| r) {
            Ok(done) => {
                resumed += 1;
                load::record(&mut to_resumed, done.to_resumed.as_micros() as u64);
                load::record(&mut to_first_audio, done.to_first_audio.as_micros() as u64);
            }
            Err(why) if failures.len() < 5 => failures.push(why),
            Err(_) => {}
        }
    }
    drop(second);
    Ok(ResumeResult {
        conversations,
        resumed,
        failures,
        drain_timeout_ms: DRAIN_TIMEOUT.as_millis() as u64,
        model_think_ms: FAKE_THINK_TIME.as_millis() as u64,
        close_to_resumed: Percentiles::of(&to_resumed),
        close_to_first_audio: Percentiles::of(&to_first_audio),
        redis: redis_version(),
    })
}

/// SIGTERM, as the kubelet sends it when a pod is deleted.
fn terminate(agent: &Server) -> anyhow::Result<()> {
    let status = Command::new("kill")
        .args(["-TERM", &agent.pid().to_string()])
        .status()?;
    anyhow::ensure!(status.success(), "kill -TERM {} failed", agent.pid());
    Ok(())
}

/// One conversation: on `from` until its drain close, then resumed on `to`.
async fn handover(
    n: usize,
    from: SocketAddr,
    to: SocketAddr,
    ready: tokio::sync::mpsc::Sender<()>,
    mut drained: tokio::sync::watch::Receiver<bool>,
) -> Result<Handover, String> {
    let mut ws = open(&format!("ws://{from}/ws?audio_output=binary"), "handshake with A").await?;
    let start = event(&mut ws, "bidi_connection_start").await?;
    let token = start["resume_token"]
        .as_str()
        .ok_or("no resume token in bidi_connection_start")?
        .to_owned();
    ask(&mut ws, &format!("My name is Caller {n}. Please remember it.")).await?;
    event(&mut ws, "bidi_response_complete").await?;
    let _ = ready.send(()).await;
    let _ = drained.wait_for(|d| *d).await;

    // The drain close: 1012, after A's drain timeout.
    let closed = timeout(STEP_TIMEOUT, async {
        while let Some(message) = ws.next().await {
            match message {
                Ok(Message::Close(frame)) => return Ok(frame.map(|f| u16::from(f.code))),
                Ok(_) => {}
                Err(e) => return Err(format!("A's connection broke instead of closing: {e}")),
            }
        }
        Err("A's connection ended without a close frame".to_owned())
    })
    .await
    .map_err(|_| "no drain close from A".to_owned())??;
    let closed_at = Instant::now();
    if closed != Some(1012) {
        return Err(format!("A closed with {closed:?}, not 1012"));
    }

    let mut ws = open(
        &format!("ws://{to}/ws?audio_output=binary&resume={token}"),
        "resuming handshake with B",
    )
    .await?;
    let start = event(&mut ws, "bidi_connection_start").await?;
    if start["resumed"] != json!(true) {
        return Err("B started a new conversation instead of resuming".to_owned());
    }
    let to_resumed = closed_at.elapsed();
    ask(&mut ws, "What is my name?").await?;
    timeout(STEP_TIMEOUT, async {
        while let Some(message) = ws.next().await {
            match message {
                Ok(Message::Binary(_)) => return Ok(()),
                Ok(Message::Close(frame)) => return Err(format!("B closed before answering: {frame:?}")),
                Ok(_) => {}
                Err(e) => return Err(format!("B's connection broke: {e}")),
            }
        }
        Err("B's connection ended before answering".to_owned())
    })
    .await
    .map_err(|_| "no reply audio from B".to_owned())??;
    let to_first_audio = closed_at.elapsed();
    let _ = ws.close(None).await;
    Ok(Handover {
        to_resumed,
        to_first_audio,
    })
}

/// A WebSocket handshake within [`STEP_TIMEOUT`]; `what` names it in errors.
async fn open(url: &str, what: &str) -> Result<Socket, String> {
    let (ws, _) = timeout(STEP_TIMEOUT, tokio_tungstenite::connect_async(url))
        .await
        .map_err(|_| format!("{what} timed out"))?
        .map_err(|e| format!("{what}: {e}"))?;
    Ok(ws)
}

async fn ask(ws: &mut Socket, text: &str) -> Result<(), String> {
    let input = json!({"type": "bidi_text_input", "text": text, "role": "user"});
    ws.send(Message::text(input.to_string()))
        .await
        .map_err(|e| format!("send: {e}"))
}

/// The next event of type `kind`, skipping audio and other events.
async fn event(ws: &mut Socket, kind: &str) -> Result<Value, String> {
    conversation::until(ws, kind, STEP_TIMEOUT)
        .await
        .map_err(|ended| format!("waiting for {kind}: {ended}"))
}
