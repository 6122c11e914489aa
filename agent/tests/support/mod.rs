//! Test harness: runs the real `voice-agent` binary on 127.0.0.1 and talks to it over real
//! sockets.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use futures::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, connect_async};
use voice_agent::model::simulated::Utterance;

/// A running agent process. Killed on drop.
pub struct AgentProcess {
    child: Child,
    pub addr: SocketAddr,
    logs: Arc<Mutex<Vec<String>>>,
}

impl AgentProcess {
    /// Starts the agent with extra flags and waits until it listens.
    pub fn start(args: &[&str]) -> Self {
        Self::start_with_env(args, &[])
    }

    /// Starts the agent with extra flags and environment variables.
    pub fn start_with_env(args: &[&str], env: &[(&str, &str)]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_voice-agent"))
            .args([
                "--listen",
                "127.0.0.1:0",
                "--log-format",
                "json",
                "--log",
                "voice_agent=debug,info",
            ])
            .args(args)
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn voice-agent");
        let stderr = child.stderr.take().expect("stderr");
        let logs = Arc::new(Mutex::new(Vec::new()));
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        {
            let logs = logs.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    if let Ok(v) = serde_json::from_str::<Value>(&line)
                        && v["message"] == "voice agent listening"
                        && let Some(addr) = v["address"].as_str().and_then(|a| a.parse::<SocketAddr>().ok())
                    {
                        let _ = addr_tx.send(addr);
                    }
                    logs.lock().expect("logs").push(line);
                }
            });
        }
        let addr = match addr_rx.recv_timeout(Duration::from_secs(20)) {
            Ok(addr) => addr,
            Err(_) => {
                let _ = child.kill();
                panic!("agent did not start; logs: {:#?}", logs.lock().expect("logs"));
            }
        };
        Self { child, addr, logs }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn ws_url(&self, query: &str) -> String {
        format!("ws://{}/ws{}", self.addr, query)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn logs(&self) -> Vec<String> {
        self.logs.lock().expect("logs").clone()
    }

    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success());
    }

    /// Waits for the process to exit and returns its exit code.
    pub async fn wait_exit(&mut self, limit: Duration) -> Option<i32> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status.code();
            }
            if Instant::now() > deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// 16 kHz PCM16LE speech-like audio for `text`, from the same voice the simulator speaks with.
pub fn speech(text: &str) -> Vec<u8> {
    let voice = Utterance::from_text(text, 16_000);
    let mut pcm = Vec::new();
    voice.render(0, voice.len(), &mut pcm);
    pcm
}

pub fn silence(ms: usize) -> Vec<u8> {
    vec![0; ms * 32]
}

/// 32 ms at 16 kHz, PCM16.
pub const FRAME_BYTES: usize = 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Json,
    Binary,
}

/// One received item: a JSON event, or a binary audio frame.
#[derive(Debug, Clone)]
pub enum Received {
    Event(Value),
    Audio(Vec<u8>),
    Closed(Option<(u16, String)>),
}

pub struct Client {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    pub encoding: Encoding,
    pub closed: Option<(u16, String)>,
}

impl Client {
    pub async fn connect(url: &str, encoding: Encoding) -> Self {
        let (ws, _) = connect_async(url).await.expect("websocket connect");
        Self {
            ws,
            encoding,
            closed: None,
        }
    }

    pub fn from_stream(ws: WebSocketStream<MaybeTlsStream<TcpStream>>, encoding: Encoding) -> Self {
        Self {
            ws,
            encoding,
            closed: None,
        }
    }

    pub async fn send_raw(&mut self, message: Message) {
        self.ws.send(message).await.expect("send");
    }

    /// Sends, tolerating a connection the server already closed.
    pub async fn try_send_raw(&mut self, message: Message) -> bool {
        self.ws.send(message).await.is_ok()
    }

    pub async fn send_json(&mut self, value: Value) {
        self.send_raw(Message::Text(value.to_string().into())).await;
    }

    pub async fn send_text(&mut self, text: &str) {
        self.send_json(serde_json::json!({"type": "bidi_text_input", "text": text, "role": "user"}))
            .await;
    }

    pub async fn send_audio(&mut self, pcm: &[u8]) {
        match self.encoding {
            Encoding::Binary => self.send_raw(Message::Binary(pcm.to_vec().into())).await,
            Encoding::Json => {
                self.send_json(serde_json::json!({
                    "type": "bidi_audio_input",
                    "audio": BASE64.encode(pcm),
                    "format": "pcm",
                    "sample_rate": 16000,
                    "channels": 1
                }))
                .await
            }
        }
    }

    /// Streams audio in 32 ms frames at real-time pace, collecting what arrives meanwhile.
    pub async fn stream_audio(&mut self, pcm: &[u8], received: &mut Vec<Received>) {
        let start = Instant::now();
        for (i, frame) in pcm.chunks(FRAME_BYTES).enumerate() {
            self.send_audio(frame).await;
            let due = start + Duration::from_millis(32 * (i as u64 + 1));
            while let Ok(Some(item)) = timeout(due.saturating_duration_since(Instant::now()), self.next()).await {
                received.push(item);
            }
        }
    }

    /// The next event or audio frame; `None` after the connection is closed.
    pub async fn next(&mut self) -> Option<Received> {
        if self.closed.is_some() {
            return None;
        }
        loop {
            match self.ws.next().await {
                Some(Ok(Message::Text(text))) => {
                    return Some(Received::Event(
                        serde_json::from_str(text.as_str()).expect("server sends JSON"),
                    ));
                }
                Some(Ok(Message::Binary(data))) => return Some(Received::Audio(data.to_vec())),
                Some(Ok(Message::Close(frame))) => {
                    let frame = frame.map(|CloseFrame { code, reason }| (u16::from(code), reason.to_string()));
                    self.closed = Some(frame.clone().unwrap_or((1005, String::new())));
                    return Some(Received::Closed(frame));
                }
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => {
                    self.closed = Some((1006, String::new()));
                    return Some(Received::Closed(None));
                }
            }
        }
    }

    /// Reads until an event of `kind` arrives, returning everything read (that event last).
    pub async fn until_event(&mut self, kind: &str, limit: Duration) -> Vec<Received> {
        let mut seen = Vec::new();
        let deadline = Instant::now() + limit;
        loop {
            let item = timeout(deadline.saturating_duration_since(Instant::now()), self.next())
                .await
                .unwrap_or_else(|_| panic!("no {kind} within {limit:?}; got {}", describe(&seen)));
            let Some(item) = item else {
                panic!("connection closed before {kind}; got {}", describe(&seen));
            };
            let done = matches!(&item, Received::Event(v) if v["type"] == kind);
            let closed = matches!(item, Received::Closed(_));
            seen.push(item);
            if done {
                return seen;
            }
            if closed {
                panic!("connection closed before {kind}; got {}", describe(&seen));
            }
        }
    }

    /// Reads until the server closes, returning everything read and the close frame.
    pub async fn until_closed(&mut self, limit: Duration) -> (Vec<Received>, Option<(u16, String)>) {
        let mut seen = Vec::new();
        let deadline = Instant::now() + limit;
        loop {
            match timeout(deadline.saturating_duration_since(Instant::now()), self.next()).await {
                Err(_) => panic!("not closed within {limit:?}; got {}", describe(&seen)),
                Ok(None) => return (seen, self.closed.clone()),
                Ok(Some(Received::Closed(frame))) => return (seen, frame),
                Ok(Some(item)) => seen.push(item),
            }
        }
    }

    pub async fn close(mut self) {
        let _ = self.ws.close(None).await;
        while let Some(Ok(_)) = self.ws.next().await {}
    }
}

pub fn events(items: &[Received]) -> Vec<&Value> {
    items
        .iter()
        .filter_map(|i| match i {
            Received::Event(v) => Some(v),
            _ => None,
        })
        .collect()
}

pub fn event_types(items: &[Received]) -> Vec<String> {
    events(items)
        .iter()
        .map(|v| v["type"].as_str().unwrap_or("?").to_owned())
        .collect()
}

/// Reply audio bytes received, whether as binary frames or as `bidi_audio_stream` events.
pub fn audio_bytes(items: &[Received]) -> Vec<u8> {
    let mut pcm = Vec::new();
    for item in items {
        match item {
            Received::Audio(data) => pcm.extend_from_slice(data),
            Received::Event(v) if v["type"] == "bidi_audio_stream" => {
                let audio = v["audio"].as_str().expect("audio field");
                pcm.extend(BASE64.decode(audio).expect("base64 audio"));
            }
            _ => {}
        }
    }
    pcm
}

pub fn rms(pcm: &[u8]) -> f64 {
    let samples: Vec<f64> = pcm
        .chunks_exact(2)
        .map(|b| f64::from(i16::from_le_bytes([b[0], b[1]])))
        .collect();
    (samples.iter().map(|s| s * s).sum::<f64>() / samples.len().max(1) as f64).sqrt()
}

fn describe(items: &[Received]) -> String {
    let mut out: Vec<String> = Vec::new();
    for item in items {
        let name = match item {
            Received::Event(v) => v["type"].as_str().unwrap_or("?").to_owned(),
            Received::Audio(_) => "<audio>".to_owned(),
            Received::Closed(frame) => format!("<closed {frame:?}>"),
        };
        if out.last() != Some(&name) {
            out.push(name);
        }
    }
    out.join(", ")
}

pub async fn get(url: &str) -> (u16, String) {
    let response = reqwest::get(url).await.expect("GET");
    (response.status().as_u16(), response.text().await.expect("body"))
}

pub async fn get_json(url: &str) -> Value {
    let (status, body) = get(url).await;
    assert_eq!(status, 200, "{url}: {body}");
    serde_json::from_str(&body).expect("JSON body")
}

/// The value of a Prometheus sample such as `voice_agent_sessions_active` or
/// `voice_agent_sessions_ended_total{reason="idle_timeout"}`; 0 when absent.
pub async fn metric(agent: &AgentProcess, sample: &str) -> f64 {
    let (_, text) = get(&agent.url("/metrics")).await;
    text.lines()
        .find_map(|line| line.strip_prefix(sample).and_then(|rest| rest.strip_prefix(' ')))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

/// Waits (up to five seconds) until a Prometheus sample reaches `expected`.
pub async fn wait_metric(agent: &AgentProcess, sample: &str, expected: f64) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let value = metric(agent, sample).await;
        if value == expected {
            return;
        }
        assert!(Instant::now() < deadline, "{sample} is {value}, expected {expected}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The Bedrock-wire fake (the workspace's `fake-bedrock` tool), killed on drop.
pub struct FakeBedrock {
    child: Child,
    pub endpoint: String,
    pub ca_file: String,
    _dir: tempfile::TempDir,
}

impl FakeBedrock {
    pub fn start(args: &[&str]) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let ca_file = dir.path().join("fake-bedrock.pem");
        let mut child = Command::new(fake_bedrock_bin())
            .args(["--listen", "127.0.0.1:0", "--ca-file"])
            .arg(&ca_file)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn fake-bedrock");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("fake announces itself");
        let announced: Value = serde_json::from_str(&line).unwrap_or_else(|_| panic!("fake said {line:?}"));
        Self {
            child,
            endpoint: announced["endpoint"].as_str().expect("endpoint").to_owned(),
            ca_file: announced["ca_file"].as_str().expect("ca_file").to_owned(),
            _dir: dir,
        }
    }

    fn control(&self, path: &str) -> String {
        format!("{}{}", self.endpoint, path)
    }

    fn client() -> reqwest::Client {
        reqwest::Client::builder()
            .danger_accept_invalid_certs(true)
            .build()
            .expect("http client")
    }

    /// What every stream received so far.
    pub async fn streams(&self) -> Vec<Value> {
        let response = Self::client()
            .get(self.control("/_fake/streams"))
            .send()
            .await
            .expect("GET streams");
        response.json::<Vec<Value>>().await.expect("streams JSON")
    }

    pub async fn inject(&self, fault: Value) {
        let response = Self::client()
            .post(self.control("/_fake/faults"))
            .json(&fault)
            .send()
            .await
            .expect("POST fault");
        assert!(response.status().is_success());
    }

    /// Writes an agent config using the NovaSonic provider against this fake.
    pub fn agent_config(&self, dir: &std::path::Path, extra_model: &str) -> String {
        let path = dir.join("agent.yaml");
        let yaml = format!(
            "model:\n  provider: NovaSonic\n  region: us-west-2\n  endpointUrl: {}\n  caBundleFile: {}\n{extra_model}\
             prompt:\n  system: You are the test agent.\n",
            self.endpoint, self.ca_file
        );
        std::fs::write(&path, yaml).expect("write config");
        path.to_string_lossy().into_owned()
    }
}

/// The `fake-bedrock` executable: `$FAKE_BEDROCK_BIN`, else built once per test process with
/// `cargo build -p fake-bedrock` (a no-op when it is up to date). It is another package's
/// binary, which cargo does not build for this package's tests.
fn fake_bedrock_bin() -> std::path::PathBuf {
    static BIN: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(bin) = std::env::var_os("FAKE_BEDROCK_BIN") {
            return bin.into();
        }
        let out = Command::new(env!("CARGO"))
            .args([
                "build",
                "-p",
                "fake-bedrock",
                "--bin",
                "fake-bedrock",
                "--message-format=json",
            ])
            .stderr(Stdio::inherit())
            .output()
            .expect("run cargo build");
        assert!(out.status.success(), "cargo build -p fake-bedrock failed");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .filter(|message| message["target"]["name"] == "fake-bedrock")
            .find_map(|message| message["executable"].as_str().map(std::path::PathBuf::from))
            .expect("cargo build named the fake-bedrock executable")
    })
    .clone()
}

impl Drop for FakeBedrock {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Static test credentials for the agent process (the fake checks the signature's presence,
/// region and service, not its value).
pub const AWS_ENV: &[(&str, &str)] = &[
    ("AWS_ACCESS_KEY_ID", "AKIDVOICETEST"),
    ("AWS_SECRET_ACCESS_KEY", "voice-test-secret-key"),
    ("AWS_EC2_METADATA_DISABLED", "true"),
];

/// The independent MCP server (official Python SDK) from `tests/mcp/tool_server.py`.
pub struct McpServer {
    child: Child,
    pub url: String,
}

/// The secret the MCP test server checks SigV4 signatures with (matches [`AWS_ENV`]).
pub const SIGV4_SECRET: &str = "voice-test-secret-key";

impl McpServer {
    pub fn start(json_response: bool) -> Self {
        Self::start_with(json_response, "gateway")
    }

    /// The server with another set of tools (`tests/mcp/tool_server.py --toolset`).
    pub fn start_with(json_response: bool, toolset: &str) -> Self {
        let python = std::env::var("VOICE_AGENTS_TEST_PYTHON").unwrap_or_else(|_| {
            panic!("VOICE_AGENTS_TEST_PYTHON is not set: run the tests with `make test` (or `make test-deps` and export it)")
        });
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/mcp/tool_server.py");
        let mut command = Command::new(python);
        command
            .arg(script)
            .args(["--sigv4-secret", SIGV4_SECRET, "--toolset", toolset]);
        if json_response {
            command.arg("--json-response");
        }
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the MCP server");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("MCP server announces itself");
        let announced: Value = serde_json::from_str(&line).unwrap_or_else(|_| panic!("MCP server said {line:?}"));
        Self {
            child,
            url: announced["url"].as_str().expect("url").to_owned(),
        }
    }

    async fn get(&self, path: &str) -> Vec<Value> {
        let base = self.url.trim_end_matches("/mcp");
        reqwest::get(format!("{base}{path}"))
            .await
            .expect("GET")
            .json()
            .await
            .expect("JSON")
    }

    /// Every MCP request the server received.
    pub async fn requests(&self) -> Vec<Value> {
        self.get("/_test/requests").await
    }

    /// Every tool call the server ran, with start and end times.
    pub async fn calls(&self) -> Vec<Value> {
        self.get("/_test/calls").await
    }
}

impl Drop for McpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until the agent is ready (tools loaded, when a gateway is configured).
pub async fn wait_ready(agent: &AgentProcess) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if get(&agent.url("/readyz")).await.0 == 200 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "agent not ready: {:?}",
            get(&agent.url("/readyz")).await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A real `redis-server` on loopback, for the resumption tests: its own process, data only in
/// memory, stopped when dropped. With `tls`, it serves TLS only, with a self-signed
/// certificate for 127.0.0.1 (`ca_file` trusts it).
pub struct RedisServer {
    child: Option<Child>,
    pub port: u16,
    pub password: String,
    pub ca_file: Option<String>,
    dir: tempfile::TempDir,
    tls: bool,
}

impl RedisServer {
    pub fn start(tls: bool) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut server = Self {
            child: None,
            port: free_port(),
            password: format!("pw-{}", uuid::Uuid::new_v4().simple()),
            ca_file: None,
            dir,
            tls,
        };
        if tls {
            let certified = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
                .expect("certificate");
            let cert = server.dir.path().join("redis.crt");
            let key = server.dir.path().join("redis.key");
            std::fs::write(&cert, certified.cert.pem()).expect("write cert");
            std::fs::write(&key, certified.signing_key.serialize_pem()).expect("write key");
            server.ca_file = Some(cert.to_string_lossy().into_owned());
        }
        server.run();
        server
    }

    fn run(&mut self) {
        let port = self.port.to_string();
        let mut command = Command::new("redis-server");
        command.args([
            "--save",
            "",
            "--appendonly",
            "no",
            "--bind",
            "127.0.0.1",
            "--requirepass",
            &self.password,
        ]);
        if self.tls {
            let cert = self.dir.path().join("redis.crt");
            let key = self.dir.path().join("redis.key");
            command
                .args(["--port", "0", "--tls-port", &port, "--tls-auth-clients", "no"])
                .arg("--tls-cert-file")
                .arg(&cert)
                .arg("--tls-key-file")
                .arg(&key)
                .arg("--tls-ca-cert-file")
                .arg(&cert);
        } else {
            command.args(["--port", &port]);
        }
        let child = command
            .current_dir(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn redis-server (apt install redis-server)");
        self.child = Some(child);
        // Ready once it answers.
        for _ in 0..100 {
            if self.cli(&["PING"]).trim() == "PONG" {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("redis-server did not start on port {port}");
    }

    /// Kills the server (data is lost, as in a crash).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port.
    pub fn restart(&mut self) {
        self.stop();
        self.run();
    }

    /// `redis-cli` against this server; its output.
    pub fn cli(&self, args: &[&str]) -> String {
        let mut command = Command::new("redis-cli");
        command.args([
            "-h",
            "127.0.0.1",
            "-p",
            &self.port.to_string(),
            "--no-auth-warning",
            "-a",
            &self.password,
        ]);
        if let Some(ca) = &self.ca_file {
            command.args(["--tls", "--cacert", ca]);
        }
        let out = command.args(args).output().expect("run redis-cli");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Agent config lines: the Redis store, with the password and an encryption key in files
    /// under `dir`.
    pub fn agent_yaml(&self, dir: &std::path::Path, window: &str) -> String {
        let password = dir.join("redis-password");
        std::fs::write(&password, &self.password).expect("write password");
        let key = dir.join("resume-key");
        std::fs::write(&key, "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=\n").expect("write key");
        let (scheme, ca) = match &self.ca_file {
            Some(ca) => ("rediss", format!(", caFile: {ca}")),
            None => ("redis", String::new()),
        };
        format!(
            "session:\n  resume:\n    store: Redis\n    window: {window}\n    encryptionKeyFile: {}\n    \
             redis: {{url: \"{scheme}://127.0.0.1:{}/0\", passwordFile: {}, keyPrefix: \"test:resume:\"{ca}}}\n",
            key.display(),
            self.port,
            password.display()
        )
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A TCP port free on loopback right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// The status and JSON error body of a handshake the agent refuses (panics if it is accepted).
pub async fn refused(url: &str) -> (u16, Value) {
    match tokio_tungstenite::connect_async(url).await {
        Ok(_) => panic!("{url} was accepted"),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            let body = response.body().as_deref().unwrap_or_default();
            (
                response.status().as_u16(),
                serde_json::from_slice(body).expect("a JSON error body"),
            )
        }
        Err(other) => panic!("handshake failed: {other}"),
    }
}
