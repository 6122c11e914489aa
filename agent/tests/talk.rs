//! `voice-agent talk` against the real agent over real sockets: what it prints, the reply WAV it
//! writes, and its one-line failures with a non-zero exit.

mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::sync::Arc;
use std::time::Duration;

use support::*;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::Command;
use tokio::time::timeout;
use voice_agent::model::simulated::Utterance;

/// Upper bound for one talk run in these tests (each is a few seconds).
const RUN_LIMIT: Duration = Duration::from_secs(60);
const QUESTION: &str = "Hello there, what are your opening hours on Sunday?";

fn talk_command(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_voice-agent"));
    command
        .arg("talk")
        .args(args)
        .env_remove("VOICE_AGENT_TOKEN")
        .env_remove("VOICE_AGENT_URL")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    command
}

async fn talk(args: &[&str]) -> Output {
    let child = talk_command(args).spawn().expect("spawn voice-agent talk");
    timeout(RUN_LIMIT, child.wait_with_output())
        .await
        .expect("talk finishes")
        .expect("talk output")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Asserts a failed run: the exit code, and one line on stderr containing `expected`.
fn assert_fails(output: &Output, code: i32, expected: &str) -> String {
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(code), "stderr: {stderr}");
    let last = stderr.lines().last().unwrap_or_default().to_owned();
    assert!(last.starts_with("voice-agent talk: "), "{stderr}");
    assert!(last.contains(expected), "expected {expected:?} in {last:?}");
    last
}

fn write_wav(path: &Path, rate: u32, channels: u16, bits: u16, samples: &[i32]) {
    let spec = hound::WavSpec {
        channels,
        sample_rate: rate,
        bits_per_sample: bits,
        sample_format: hound::SampleFormat::Int,
    };
    let mut writer = hound::WavWriter::create(path, spec).expect("create wav");
    for &s in samples {
        writer.write_sample(s).expect("sample");
    }
    writer.finalize().expect("finalize wav");
}

/// A spoken question at `rate` (speech-like audio the simulated model measures), with a short
/// pause before and after, as 16-bit mono.
fn question_samples(rate: u32) -> Vec<i32> {
    let voice = Utterance::from_text(QUESTION, rate);
    let mut pcm = Vec::new();
    voice.render(0, voice.len(), &mut pcm);
    let pause = vec![0i32; rate as usize / 5];
    let speech = pcm.chunks_exact(2).map(|b| i32::from(i16::from_le_bytes([b[0], b[1]])));
    pause
        .iter()
        .copied()
        .chain(speech)
        .chain(pause.iter().copied())
        .collect()
}

fn question_wav(dir: &Path) -> PathBuf {
    let path = dir.join("question.wav");
    write_wav(&path, 16_000, 1, 16, &question_samples(16_000));
    path
}

/// "(2.4 seconds of speech)" → 2.4: the simulated model's measure of what it heard.
fn heard_seconds(stdout: &str) -> f64 {
    let line = stdout
        .lines()
        .find(|l| l.contains("] user: ("))
        .unwrap_or_else(|| panic!("no user transcript in {stdout}"));
    let start = line.find("] user: (").expect("marker") + "] user: (".len();
    line[start..]
        .split(' ')
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no duration in {line}"))
}

fn number_after(stdout: &str, prefix: &str) -> f64 {
    let line = stdout
        .lines()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no {prefix:?} line in {stdout}"));
    line[prefix.len()..]
        .split(' ')
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no number in {line}"))
}

#[tokio::test]
async fn says_a_wav_in_real_time_and_saves_the_spoken_reply() {
    let agent = AgentProcess::start(&[]);
    let dir = tempfile::tempdir().expect("temp dir");
    let input = question_wav(dir.path());
    let reply = dir.path().join("reply.wav");
    let url = agent.ws_url("");
    let output = talk(&[
        "--url",
        &url,
        "--input",
        input.to_str().expect("path"),
        "--output",
        reply.to_str().expect("path"),
    ])
    .await;
    let stdout = text(&output.stdout);
    assert!(
        output.status.success(),
        "stdout: {stdout}\nstderr: {}",
        text(&output.stderr)
    );

    assert!(stdout.starts_with("connected: session "), "{stdout}");
    assert!(stdout.contains("model simulated, reply audio at 24000 Hz"), "{stdout}");
    let transcripts: Vec<&str> = stdout.lines().filter(|l| l.starts_with('[')).collect();
    assert!(transcripts[0].contains("] user: ("), "{stdout}");
    assert!(
        transcripts
            .iter()
            .any(|l| l.contains("] assistant: Hello! This is the simulated voice agent.")),
        "{stdout}"
    );
    // Printed as they arrived: the user's turn well before the end of the reply.
    let stamp = |line: &str| -> f64 {
        line[1..]
            .split(" s]")
            .next()
            .and_then(|s| s.trim().parse().ok())
            .expect("stamp")
    };
    let last = transcripts.last().expect("reply line");
    assert!(stamp(last) - stamp(transcripts[0]) > 1.0, "{stdout}");

    // Real time: the agent waits for 600 ms of silence before it answers.
    let first_audio = number_after(&stdout, "time to first audio: ");
    assert!((600.0..5_000.0).contains(&first_audio), "{stdout}");
    let turn = number_after(&stdout, "turn latency: ");
    assert!(
        turn * 1000.0 > first_audio + 1000.0,
        "the reply lasts seconds: {stdout}"
    );

    let mut wav = hound::WavReader::open(&reply).expect("reply is a WAV file");
    let spec = wav.spec();
    assert_eq!((spec.sample_rate, spec.channels, spec.bits_per_sample), (24_000, 1, 16));
    let samples: Vec<i16> = wav.samples::<i16>().map(|s| s.expect("sample")).collect();
    assert!(
        samples.len() >= 24_000,
        "at least a second of reply, got {} samples",
        samples.len()
    );
    let pcm: Vec<u8> = samples.iter().flat_map(|s| s.to_le_bytes()).collect();
    assert!(rms(&pcm) > 500.0, "the reply is audible");
    assert!(stdout.contains(&format!("saved to {}", reply.display())), "{stdout}");
}

#[tokio::test]
async fn other_rates_and_channels_are_converted_and_heard_the_same() {
    let agent = AgentProcess::start(&[]);
    let dir = tempfile::tempdir().expect("temp dir");
    let url = agent.ws_url("");
    let native = question_wav(dir.path());
    let stereo = dir.path().join("stereo-44k.wav");
    let samples: Vec<i32> = question_samples(44_100)
        .into_iter()
        .flat_map(|s| [s * 256, s * 256]) // 24-bit, both channels
        .collect();
    write_wav(&stereo, 44_100, 2, 24, &samples);

    let mut heard = Vec::new();
    for input in [&native, &stereo] {
        let output = talk(&["--url", &url, "--input", input.to_str().expect("path"), "--fast"]).await;
        let stdout = text(&output.stdout);
        assert!(output.status.success(), "{stdout}{}", text(&output.stderr));
        heard.push(heard_seconds(&stdout));
        if input == &stereo {
            assert!(
                stdout.contains("converted from 44100 Hz, 2 channel(s), 24-bit PCM to 16 kHz mono 16-bit"),
                "{stdout}"
            );
        }
    }
    assert!(heard[0] > 1.0, "{heard:?}");
    assert!(
        (heard[0] - heard[1]).abs() <= 0.1,
        "same speech after conversion: {heard:?}"
    );
}

#[tokio::test]
async fn a_typed_message_gets_a_spoken_reply() {
    let agent = AgentProcess::start(&[]);
    let url = agent.ws_url("").replace("ws://", "http://").replace("/ws", "");
    let output = talk(&["--url", &url, "--text", "What is the weather like?"]).await;
    let stdout = text(&output.stdout);
    assert!(output.status.success(), "{stdout}{}", text(&output.stderr));
    assert!(stdout.contains("] user: What is the weather like?"), "{stdout}");
    assert!(
        stdout.contains("] assistant: You wrote: What is the weather like? This is a simulated reply."),
        "{stdout}"
    );
    assert!(stdout.contains("time to first audio: "), "{stdout}");
    assert!(stdout.contains("(message sent to first reply audio)"), "{stdout}");
}

#[tokio::test]
async fn an_unreachable_agent_is_one_line_and_exit_1() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr").port()
    };
    let url = format!("ws://127.0.0.1:{port}/ws");
    let output = talk(&["--url", &url, "--text", "hello"]).await;
    let line = assert_fails(&output, 1, "cannot connect to ws://127.0.0.1:");
    assert!(line.contains("Connection refused"), "{line}");
    assert_eq!(text(&output.stderr).lines().count(), 1);
}

#[tokio::test]
async fn an_agent_at_capacity_is_reported_with_status_and_retry_delay() {
    let agent = AgentProcess::start(&["--max-sessions", "1"]);
    let mut holder = Client::connect(&agent.ws_url(""), Encoding::Json).await;
    holder
        .until_event("bidi_connection_start", Duration::from_secs(10))
        .await;

    let output = talk(&["--url", &agent.ws_url(""), "--text", "hello"]).await;
    assert_fails(
        &output,
        1,
        "refused the connection: HTTP 503 Service Unavailable (capacity: this agent is at its session limit; \
         retry shortly); retry after 5 s",
    );
    holder.close().await;
}

/// Answers one handshake with 401, handing back the request it got.
async fn refuse_one_handshake(listener: TcpListener) -> String {
    let (stream, _) = listener.accept().await.expect("accept");
    let mut reader = BufReader::new(stream);
    let mut request = String::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).await.expect("read") == 0 || line == "\r\n" {
            break;
        }
        request.push_str(&line);
    }
    let body = r#"{"error":{"code":"unauthorized","message":"invalid token"}}"#;
    let response = format!(
        "HTTP/1.1 401 Unauthorized\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    reader.get_mut().write_all(response.as_bytes()).await.expect("write");
    request
}

#[tokio::test]
async fn the_token_is_sent_as_a_bearer_header_and_a_401_names_it() {
    // A stand-in for the agent's handshake authentication: it records the request and says 401.
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("ws://{}/ws", listener.local_addr().expect("addr"));
    let server = tokio::spawn(refuse_one_handshake(listener));
    let mut command = talk_command(&["--url", &url, "--text", "hello"]);
    command.env("VOICE_AGENT_TOKEN", "s3cret-tok");
    let output = timeout(RUN_LIMIT, command.output())
        .await
        .expect("finishes")
        .expect("output");
    assert_fails(
        &output,
        1,
        "refused the connection: HTTP 401 Unauthorized (unauthorized: invalid token): the token was refused",
    );
    let request = server.await.expect("server").to_lowercase();
    assert!(request.contains("authorization: bearer s3cret-tok\r\n"), "{request}");
    assert!(request.starts_with("get /ws?audio_output=binary http/1.1"), "{request}");
}

#[tokio::test]
async fn a_session_closed_by_the_agent_reports_the_close_code() {
    let mut agent = AgentProcess::start(&["--drain-timeout", "1s"]);
    let dir = tempfile::tempdir().expect("temp dir");
    // Ten seconds of silence: no turn ends before the agent shuts down.
    let input = dir.path().join("long.wav");
    write_wav(&input, 16_000, 1, 16, &vec![0; 160_000]);
    let mut child = talk_command(&["--url", &agent.ws_url(""), "--input", input.to_str().expect("path")])
        .spawn()
        .expect("spawn talk");
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
    let mut first = String::new();
    timeout(RUN_LIMIT, stdout.read_line(&mut first))
        .await
        .expect("talk connects")
        .expect("read");
    assert!(first.starts_with("connected: session "), "{first}");

    agent.signal("TERM");
    let status = timeout(RUN_LIMIT, child.wait())
        .await
        .expect("talk ends")
        .expect("status");
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut stderr)
        .await
        .expect("stderr");
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(
            "the agent closed the session before replying: 1012 server is restarting, please reconnect (draining)"
        ),
        "{stderr}"
    );
    assert!(agent.wait_exit(Duration::from_secs(10)).await.is_some());
}

#[tokio::test]
async fn no_reply_within_the_timeout_fails() {
    let agent = AgentProcess::start(&[]);
    let dir = tempfile::tempdir().expect("temp dir");
    let input = dir.path().join("silence.wav");
    write_wav(&input, 16_000, 1, 16, &vec![0; 8_000]);
    let output = talk(&[
        "--url",
        &agent.ws_url(""),
        "--input",
        input.to_str().expect("path"),
        "--timeout",
        "2s",
    ])
    .await;
    let stderr = text(&output.stderr);
    assert!(stderr.contains("sounds silent"), "{stderr}");
    assert_fails(&output, 1, "no complete reply after the input within 2s");
}

#[tokio::test]
async fn input_that_is_not_a_wav_file_is_refused_before_connecting() {
    let dir = tempfile::tempdir().expect("temp dir");
    let input = dir.path().join("question.mp3");
    std::fs::write(&input, b"ID3\x04 not really audio").expect("write");
    // Nothing listens here: the input is checked first.
    let output = talk(&["--url", "ws://127.0.0.1:9/ws", "--input", input.to_str().expect("path")]).await;
    assert_fails(&output, 2, "question.mp3: not a WAV file this client can read");
    let missing = talk(&["--url", "ws://127.0.0.1:9/ws", "--input", "/nonexistent/q.wav"]).await;
    assert_fails(&missing, 2, "/nonexistent/q.wav: No such file or directory");
}

/// A TLS-terminating proxy in front of the agent, like an ingress: wss:// outside, ws:// inside.
async fn tls_ingress(agent: SocketAddr, ca_file: &Path) -> SocketAddr {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("certificate");
    std::fs::write(ca_file, certified.cert.pem()).expect("write CA");
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(certified.signing_key.serialize_der().into());
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("protocols")
        .with_no_client_auth()
        .with_single_cert(vec![certified.cert.der().clone()], key)
        .expect("server config");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut outside) = acceptor.accept(stream).await else {
                    return;
                };
                let Ok(mut inside) = TcpStream::connect(agent).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut outside, &mut inside).await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn talks_through_a_tls_ingress_with_a_private_ca() {
    let agent = AgentProcess::start(&[]);
    let dir = tempfile::tempdir().expect("temp dir");
    let ca_file = dir.path().join("ca.pem");
    let ingress = tls_ingress(agent.addr, &ca_file).await;
    let url = format!("wss://localhost:{}/ws", ingress.port());

    let mut command = talk_command(&["--url", &url, "--text", "Are you there?"]);
    command.env("SSL_CERT_FILE", &ca_file);
    let output = timeout(RUN_LIMIT, command.output())
        .await
        .expect("finishes")
        .expect("output");
    let stdout = text(&output.stdout);
    assert!(output.status.success(), "{stdout}{}", text(&output.stderr));
    assert!(
        stdout.contains("] assistant: You wrote: Are you there? This is a simulated reply."),
        "{stdout}"
    );

    // Without the private CA the certificate is not trusted, and talk says so.
    let mut untrusted = talk_command(&["--url", &url, "--text", "Are you there?"]);
    untrusted.env_remove("SSL_CERT_FILE");
    let output = timeout(RUN_LIMIT, untrusted.output())
        .await
        .expect("finishes")
        .expect("output");
    let line = assert_fails(&output, 1, "cannot connect to wss://localhost:");
    assert!(line.contains("point SSL_CERT_FILE at its certificate"), "{line}");
}

#[tokio::test]
async fn against_an_agent_with_token_auth_only_the_right_token_talks() {
    let dir = tempfile::tempdir().expect("dir");
    let tokens = dir.path().join("tokens");
    std::fs::write(&tokens, "right-token\n").expect("tokens");
    let agent = AgentProcess::start(&["--auth-mode", "token", "--auth-token-file", &tokens.to_string_lossy()]);
    let url = agent.ws_url("");

    let missing = talk(&["--url", &url, "--text", "hello"]).await;
    assert_fails(&missing, 1, "HTTP 401");
    assert!(
        text(&missing.stderr).contains("requires a token"),
        "{}",
        text(&missing.stderr)
    );

    let wrong = talk(&["--url", &url, "--token", "wrong-token", "--text", "hello"]).await;
    assert_fails(&wrong, 1, "the token was refused");

    let right = talk(&["--url", &url, "--token", "right-token", "--text", "hello"]).await;
    let stdout = text(&right.stdout);
    assert!(right.status.success(), "{stdout}{}", text(&right.stderr));
    assert!(stdout.contains("] assistant: You wrote: hello."), "{stdout}");
}

/// A TCP relay in front of the agent whose first connection is cut `after` it opened (a
/// network drop: no close frame); later connections pass through.
async fn dropping_relay(agent: SocketAddr, after: Duration) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind relay");
    let addr = listener.local_addr().expect("relay address");
    tokio::spawn(async move {
        let mut first = true;
        while let Ok((mut client, _)) = listener.accept().await {
            let Ok(mut upstream) = TcpStream::connect(agent).await else {
                return;
            };
            let cut = std::mem::replace(&mut first, false);
            tokio::spawn(async move {
                let relay = tokio::io::copy_bidirectional(&mut client, &mut upstream);
                if cut {
                    let _ = timeout(after, relay).await;
                    // Dropping both sockets resets the connection on both sides.
                } else {
                    let _ = relay.await;
                }
            });
        }
    });
    addr
}

#[tokio::test]
async fn a_dropped_connection_is_resumed_and_the_reply_still_arrives() {
    // The reply takes a while, so the drop comes before it.
    let dir = tempfile::tempdir().expect("dir");
    let config = dir.path().join("agent.yaml");
    std::fs::write(&config, "model: {provider: Simulated, thinkTime: 3s}\n").expect("config");
    let agent = AgentProcess::start(&["--config", &config.to_string_lossy()]);
    let relay = dropping_relay(agent.addr, Duration::from_millis(1500)).await;
    let output = talk(&[
        "--url",
        &format!("ws://{relay}/ws"),
        "--text",
        QUESTION,
        "--timeout",
        "20s",
    ])
    .await;
    let stdout = text(&output.stdout);
    assert!(
        output.status.success(),
        "stdout: {stdout}\nstderr: {}",
        text(&output.stderr)
    );
    assert!(stdout.contains("connection lost"), "{stdout}");
    assert!(stdout.contains("the conversation resumed"), "{stdout}");
    assert!(stdout.contains("opening hours"), "the reply to the question: {stdout}");
    wait_metric(&agent, "voice_agent_resumptions_total{outcome=\"resumed\"}", 1.0).await;
}
