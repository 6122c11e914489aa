//! The bad-input suite: hostile and broken clients against the real binary. Every case has its
//! documented outcome (docs/security.md), a healthy session runs alongside the whole time and
//! must never be disturbed, and the process must never panic.

mod support;

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::json;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};

const LIMIT: Duration = Duration::from_secs(15);

/// What a case must lead to.
#[derive(Debug)]
enum Outcome {
    /// The session closes with this code and `bidi_connection_close` reason.
    Closed(u16, &'static str),
    /// The client gets a `bidi_error` with this code and the session goes on.
    Error(&'static str),
    /// Nothing bad happens: the session still answers a text turn.
    Continues,
}

/// A raw WebSocket frame from a client: masked unless told otherwise.
fn raw_frame(opcode: u8, payload: &[u8], masked: bool, fin: bool) -> Vec<u8> {
    let mut frame = vec![if fin { 0x80 } else { 0 } | opcode];
    let mask_bit = if masked { 0x80 } else { 0 };
    match payload.len() {
        n if n < 126 => frame.push(mask_bit | n as u8),
        n if n < 65536 => {
            frame.push(mask_bit | 126);
            frame.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            frame.push(mask_bit | 127);
            frame.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    if masked {
        let key = [0x12, 0x34, 0x56, 0x78];
        frame.extend_from_slice(&key);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    } else {
        frame.extend_from_slice(payload);
    }
    frame
}

/// Opens a WebSocket by hand, for frames no well-behaved client library will send.
async fn raw_socket(agent: &AgentProcess) -> TcpStream {
    let mut tcp = TcpStream::connect(agent.addr).await.expect("connect");
    let request = format!(
        "GET /ws HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        agent.addr
    );
    tcp.write_all(request.as_bytes()).await.expect("handshake");
    let mut response = Vec::new();
    let mut byte = [0u8; 1];
    while !response.ends_with(b"\r\n\r\n") {
        tcp.read_exact(&mut byte).await.expect("handshake response");
        response.push(byte[0]);
    }
    assert!(
        response.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&response)
    );
    tcp
}

/// Reads server frames until a close frame; returns its code (None if the connection drops).
async fn raw_close_code(tcp: &mut TcpStream) -> Option<u16> {
    let deadline = Instant::now() + LIMIT;
    loop {
        let mut head = [0u8; 2];
        timeout(
            deadline.saturating_duration_since(Instant::now()),
            tcp.read_exact(&mut head),
        )
        .await
        .ok()?
        .ok()?;
        let mut len = u64::from(head[1] & 0x7f);
        if len == 126 {
            let mut ext = [0u8; 2];
            tcp.read_exact(&mut ext).await.ok()?;
            len = u64::from(u16::from_be_bytes(ext));
        } else if len == 127 {
            let mut ext = [0u8; 8];
            tcp.read_exact(&mut ext).await.ok()?;
            len = u64::from_be_bytes(ext);
        }
        let mut payload = vec![0u8; len as usize];
        tcp.read_exact(&mut payload).await.ok()?;
        if head[0] & 0x0f == 0x8 {
            return (payload.len() >= 2).then(|| u16::from_be_bytes([payload[0], payload[1]]));
        }
    }
}

/// True if the server closed the TCP connection (read returns 0 or an error) within the limit.
async fn dropped(tcp: &mut TcpStream) -> bool {
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + LIMIT;
    loop {
        match timeout(deadline.saturating_duration_since(Instant::now()), tcp.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
            Err(_) => return false,
        }
    }
}

fn audio_json(pcm: &[u8], extra: serde_json::Value) -> Message {
    let mut event = json!({"type": "bidi_audio_input", "audio": BASE64.encode(pcm)});
    if let (Some(map), serde_json::Value::Object(extra)) = (event.as_object_mut(), extra) {
        map.extend(extra);
    }
    Message::Text(event.to_string().into())
}

fn text_frame(bytes: Vec<u8>) -> Message {
    Message::Frame(Frame::message(bytes, OpCode::Data(Data::Text), true))
}

async fn expect(agent: &AgentProcess, name: &str, messages: Vec<Message>, outcome: &Outcome) {
    let mut client = Client::connect(&agent.ws_url(""), Encoding::Json).await;
    client.until_event("bidi_connection_start", LIMIT).await;
    for message in messages {
        if client.closed.is_some() {
            break;
        }
        // The server may close while we are still sending a flood: that is the point.
        let _ = client.try_send_raw(message).await;
    }
    match outcome {
        Outcome::Closed(code, reason) => {
            let (items, frame) = client.until_closed(LIMIT).await;
            assert_eq!(
                frame.as_ref().map(|f| f.0),
                Some(*code),
                "{name}: close frame {frame:?}"
            );
            let close = events(&items)
                .into_iter()
                .find(|v| v["type"] == "bidi_connection_close")
                .cloned();
            assert_eq!(close.map(|v| v["reason"].clone()), Some(json!(reason)), "{name}");
        }
        Outcome::Error(code) => {
            let items = client.until_event("bidi_error", LIMIT).await;
            let error = events(&items).last().copied().cloned().unwrap_or_default();
            assert_eq!(error["code"], *code, "{name}: {error}");
            answers(&mut client, name).await;
        }
        Outcome::Continues => answers(&mut client, name).await,
    }
}

/// The session still takes a turn: the model hears the message (its transcript comes back).
async fn answers(client: &mut Client, name: &str) {
    client.send_text("are you still there").await;
    let items = client.until_event("bidi_response_start", LIMIT).await;
    assert!(
        events(&items)
            .iter()
            .any(|v| v["role"] == "user" && v["text"] == "are you still there"),
        "{name}: the session stopped answering"
    );
}

/// A healthy session that keeps talking while the suite runs. Returns the completed turns.
fn neighbour(agent: &AgentProcess, stop: tokio_util::sync::CancellationToken) -> tokio::task::JoinHandle<u32> {
    let url = agent.ws_url("");
    tokio::spawn(async move {
        let mut client = Client::connect(&url, Encoding::Json).await;
        client.until_event("bidi_connection_start", LIMIT).await;
        let mut turns = 0;
        while !stop.is_cancelled() {
            client.send_text(&format!("turn {turns}")).await;
            let items = client.until_event("bidi_response_complete", LIMIT).await;
            assert!(
                events(&items).iter().any(|v| v["text"] == format!("turn {turns}")),
                "neighbour lost turn {turns}"
            );
            turns += 1;
        }
        turns
    })
}

#[tokio::test]
async fn hostile_clients_get_their_documented_outcome_and_never_disturb_others() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("agent.yaml");
    std::fs::write(
        &config,
        "model:\n  provider: Simulated\n  thinkTime: 50ms\n\
         websocket:\n  maxMessageBytes: 65536\n\
         limits:\n  handshakesPerMinute: 0\n  handshakeTimeout: 1s\n  firstMessageTimeout: 2s\n  audioBurst: 1s\n  maxJsonBytes: 60000\n  maxJsonDepth: 8\n",
    )
    .expect("config");
    let agent = AgentProcess::start(&["--config", &config.to_string_lossy()]);
    let stop = tokio_util::sync::CancellationToken::new();
    let healthy = neighbour(&agent, stop.clone());

    let second_of_audio = vec![1u8; 32_000];
    let valid_audio = |extra| audio_json(&[0, 0, 0, 0], extra);
    let cases: Vec<(&str, Vec<Message>, Outcome)> = vec![
        (
            "malformed_json",
            vec![Message::Text("{\"type\": ".into())],
            Outcome::Closed(1007, "invalid_payload"),
        ),
        (
            "truncated_json",
            vec![Message::Text("{\"type\":\"bidi_text_input\",\"text\":\"hi".into())],
            Outcome::Closed(1007, "invalid_payload"),
        ),
        (
            "not_json_at_all",
            vec![Message::Text("hello there".into())],
            Outcome::Closed(1007, "invalid_payload"),
        ),
        (
            "json_array_instead_of_object",
            vec![Message::Text("[1,2,3]".into())],
            Outcome::Error("invalid_event"),
        ),
        (
            "json_scalar",
            vec![Message::Text("42".into())],
            Outcome::Error("invalid_event"),
        ),
        (
            "event_without_type",
            vec![Message::Text(json!({"text": "hi"}).to_string().into())],
            Outcome::Error("invalid_event"),
        ),
        (
            "type_is_a_number",
            vec![Message::Text(json!({"type": 5}).to_string().into())],
            Outcome::Error("invalid_event"),
        ),
        (
            "unknown_event_type",
            vec![Message::Text(json!({"type": "bidi_teleport"}).to_string().into())],
            Outcome::Error("unknown_event"),
        ),
        (
            "audio_is_a_number",
            vec![Message::Text(
                json!({"type": "bidi_audio_input", "audio": 7}).to_string().into(),
            )],
            Outcome::Error("invalid_event"),
        ),
        (
            "sample_rate_is_a_string",
            vec![valid_audio(json!({"sample_rate": "fast"}))],
            Outcome::Error("invalid_event"),
        ),
        (
            "text_missing",
            vec![Message::Text(json!({"type": "bidi_text_input"}).to_string().into())],
            Outcome::Error("invalid_event"),
        ),
        (
            "text_blank",
            vec![Message::Text(
                json!({"type": "bidi_text_input", "text": "   "}).to_string().into(),
            )],
            Outcome::Error("invalid_event"),
        ),
        (
            "text_too_long",
            vec![Message::Text(
                json!({"type": "bidi_text_input", "text": "x".repeat(5000)})
                    .to_string()
                    .into(),
            )],
            Outcome::Error("text_too_long"),
        ),
        (
            "text_role_not_user",
            vec![Message::Text(
                json!({"type": "bidi_text_input", "text": "hi", "role": "system"})
                    .to_string()
                    .into(),
            )],
            Outcome::Error("invalid_event"),
        ),
        (
            "invalid_base64",
            vec![Message::Text(
                json!({"type": "bidi_audio_input", "audio": "***"}).to_string().into(),
            )],
            Outcome::Closed(1007, "invalid_payload"),
        ),
        (
            "odd_length_pcm_in_json",
            vec![audio_json(&[1, 2, 3], json!({}))],
            Outcome::Closed(1007, "invalid_payload"),
        ),
        (
            "odd_length_pcm_binary",
            vec![Message::Binary(vec![1u8, 2, 3].into())],
            Outcome::Closed(1007, "invalid_payload"),
        ),
        (
            "wrong_sample_rate",
            vec![valid_audio(json!({"sample_rate": 44100}))],
            Outcome::Error("unsupported_sample_rate"),
        ),
        (
            "stereo_audio",
            vec![valid_audio(json!({"channels": 2}))],
            Outcome::Error("unsupported_channels"),
        ),
        (
            "compressed_audio_format",
            vec![valid_audio(json!({"format": "opus"}))],
            Outcome::Error("unsupported_audio_format"),
        ),
        (
            "oversize_binary_frame",
            vec![Message::Binary(vec![0u8; 70_000].into())],
            Outcome::Closed(1009, "message_too_big"),
        ),
        (
            "oversize_json_frame",
            vec![Message::Text(
                json!({"type": "bidi_text_input", "text": "y".repeat(61_000)})
                    .to_string()
                    .into(),
            )],
            Outcome::Closed(1009, "message_too_big"),
        ),
        (
            "deeply_nested_json",
            vec![Message::Text(format!("{}{}", "[".repeat(50), "]".repeat(50)).into())],
            Outcome::Closed(1007, "invalid_payload"),
        ),
        (
            "invalid_utf8_text_frame",
            vec![text_frame(vec![0xc3, 0x28, 0xa0])],
            Outcome::Closed(1007, "invalid_payload"),
        ),
        (
            "binary_garbage_is_just_noise",
            vec![Message::Binary(
                (0..4096u32).map(|i| (i * 7919 % 251) as u8).collect::<Vec<u8>>().into(),
            )],
            Outcome::Continues,
        ),
        (
            "audio_flood_faster_than_real_time",
            (0..8)
                .map(|_| Message::Binary(second_of_audio.clone().into()))
                .collect(),
            Outcome::Closed(1008, "policy_violation"),
        ),
        (
            "event_flood",
            (0..2000)
                .map(|_| Message::Text(json!({"type": "bidi_nothing"}).to_string().into()))
                .collect(),
            Outcome::Continues,
        ),
        (
            "ping_flood",
            (0..500).map(|_| Message::Ping(vec![1u8; 16].into())).collect(),
            Outcome::Continues,
        ),
        ("no_first_message", vec![], Outcome::Closed(1008, "policy_violation")),
    ];
    let websocket_cases = cases.len();
    for (name, messages, outcome) in &cases {
        expect(&agent, name, messages.clone(), outcome).await;
    }

    // Cases below the WebSocket layer, on raw sockets.
    let mut raw_cases = 0;
    {
        raw_cases += 1; // unmasked_client_frame: clients must mask (RFC 6455 5.1)
        let mut tcp = raw_socket(&agent).await;
        tcp.write_all(&raw_frame(0x1, b"{\"type\":\"x\"}", false, true))
            .await
            .expect("write");
        assert_eq!(raw_close_code(&mut tcp).await, Some(1002), "unmasked_client_frame");
    }
    {
        raw_cases += 1; // reserved_opcode
        let mut tcp = raw_socket(&agent).await;
        tcp.write_all(&raw_frame(0x3, b"??", true, true)).await.expect("write");
        assert_eq!(raw_close_code(&mut tcp).await, Some(1002), "reserved_opcode");
    }
    {
        raw_cases += 1; // continuation_without_start
        let mut tcp = raw_socket(&agent).await;
        tcp.write_all(&raw_frame(0x0, b"tail", true, true))
            .await
            .expect("write");
        assert_eq!(raw_close_code(&mut tcp).await, Some(1002), "continuation_without_start");
    }
    {
        raw_cases += 1; // fragmented_control_frame
        let mut tcp = raw_socket(&agent).await;
        tcp.write_all(&raw_frame(0x9, b"ping", true, false))
            .await
            .expect("write");
        assert_eq!(raw_close_code(&mut tcp).await, Some(1002), "fragmented_control_frame");
    }
    {
        raw_cases += 1; // slow_handshake: headers never finish (slowloris)
        let mut tcp = TcpStream::connect(agent.addr).await.expect("connect");
        tcp.write_all(b"GET /ws HTTP/1.1\r\nHost: x\r\n").await.expect("write");
        let started = Instant::now();
        assert!(dropped(&mut tcp).await, "slow_handshake: connection kept open");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "slow_handshake: dropped only after {:?}",
            started.elapsed()
        );
    }
    {
        raw_cases += 1; // garbage_instead_of_http
        let mut tcp = TcpStream::connect(agent.addr).await.expect("connect");
        tcp.write_all(b"\x16\x03\x01garbage garbage\r\n\r\n")
            .await
            .expect("write");
        assert!(dropped(&mut tcp).await, "garbage_instead_of_http");
    }
    {
        raw_cases += 1; // connect_and_vanish: TCP reset mid-session
        let tcp = raw_socket(&agent).await;
        let socket = socket2::SockRef::from(&tcp);
        socket.set_linger(Some(Duration::ZERO)).expect("linger");
        drop(tcp);
    }
    {
        raw_cases += 1; // close_with_invalid_code
        let mut tcp = raw_socket(&agent).await;
        tcp.write_all(&raw_frame(0x8, &[0x03, 0xe7], true, true))
            .await
            .expect("write"); // 999
        assert!(
            matches!(raw_close_code(&mut tcp).await, Some(1002) | None),
            "close_with_invalid_code"
        );
    }
    {
        raw_cases += 1; // plain_http_on_the_websocket_path
        let (status, _) = get(&agent.url("/ws")).await;
        assert!(
            (400..500).contains(&status),
            "plain_http_on_the_websocket_path: {status}"
        );
    }
    {
        raw_cases += 1; // unknown_audio_output_mode
        let refused = tokio_tungstenite::connect_async(agent.ws_url("?audio_output=flac")).await;
        assert!(matches!(refused, Err(tokio_tungstenite::tungstenite::Error::Http(r)) if r.status() == 400));
    }
    assert!(websocket_cases + raw_cases >= 30, "the suite shrank");

    stop.cancel();
    let turns = timeout(LIMIT, healthy)
        .await
        .expect("neighbour finished")
        .expect("neighbour ok");
    assert!(turns >= 1, "the healthy session completed no turn");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let logs = agent.logs().join("\n");
    assert!(!logs.contains("panicked"), "the agent panicked:\n{logs}");
    assert!(get(&agent.url("/healthz")).await.0 == 200, "the agent is still alive");
}
