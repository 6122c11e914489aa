//! `voice-agent talk` against an agent on Amazon Bedrock AgentCore Runtime, offline: a stand-in
//! for AgentCore's WebSocket front end checks the handshake as AgentCore would (the SigV4
//! presigned URL, or the bearer token and session header), then forwards the connection to a
//! real agent's `/ws`, as AgentCore forwards it to the container.

mod support;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::{Output, Stdio};
use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SignatureLocation, SigningSettings, sign};
use aws_sigv4::sign::v4;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::Command;
use tokio::sync::mpsc;
use tokio::time::timeout;

const RUN_LIMIT: Duration = Duration::from_secs(60);
const ARN: &str = "arn:aws:bedrock-agentcore:us-east-1:123456789012:runtime/voice_agent-AbCdEf1234";
const ENCODED_ARN: &str = "arn%3Aaws%3Abedrock-agentcore%3Aus-east-1%3A123456789012%3Aruntime%2Fvoice_agent-AbCdEf1234";
const ACCESS_KEY: &str = "AKIDTALKTEST";
const SECRET_KEY: &str = "talk-test-secret-key/do+not+print";
const SESSION_TOKEN: &str = "talk-test-session-token-do-not-print";
/// Longest request head the front end reads.
const MAX_HEAD_BYTES: usize = 16 * 1024;

/// One handshake as the front end received it.
#[derive(Debug)]
struct Handshake {
    path: String,
    query: Vec<(String, String)>,
    /// Lower-case names.
    headers: HashMap<String, String>,
    /// `Some(true)` when the presigned URL verified with the front end's secret.
    signature_valid: Option<bool>,
}

impl Handshake {
    fn param(&self, name: &str) -> Option<&str> {
        self.query.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

/// The stand-in for AgentCore's front end. Presigned handshakes are verified with `secret` and
/// refused with 403 when the signature does not match; accepted ones go to the agent's `/ws`
/// with the caller's query string.
async fn agentcore_front(agent: SocketAddr, secret: &'static str) -> (SocketAddr, mpsc::Receiver<Handshake>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (seen, handshakes) = mpsc::channel(4);
    tokio::spawn(async move {
        while let Ok((mut outside, _)) = listener.accept().await {
            let seen = seen.clone();
            tokio::spawn(async move {
                let Some((head, rest)) = read_head(&mut outside).await else {
                    return;
                };
                let mut handshake = parse(&head);
                if handshake.param("X-Amz-Signature").is_some() {
                    handshake.signature_valid = Some(verify(&handshake, secret));
                }
                let refused = handshake.signature_valid == Some(false);
                let query: Vec<String> = handshake.query.iter().map(|(n, v)| format!("{n}={v}")).collect();
                let _ = seen.send(handshake).await;
                if refused {
                    let _ = outside
                        .write_all(b"HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                        .await;
                    return;
                }
                // AgentCore hands the upgrade to the container's /ws.
                let first_line_end = head.find("\r\n").unwrap_or(head.len());
                let forwarded = format!("GET /ws?{} HTTP/1.1{}", query.join("&"), &head[first_line_end..]);
                let Ok(mut inside) = TcpStream::connect(agent).await else {
                    return;
                };
                if inside.write_all(forwarded.as_bytes()).await.is_err() || inside.write_all(&rest).await.is_err() {
                    return;
                }
                let _ = tokio::io::copy_bidirectional(&mut outside, &mut inside).await;
            });
        }
    });
    (addr, handshakes)
}

/// Reads up to the end of the request head; returns it and any bytes read past it.
async fn read_head(stream: &mut TcpStream) -> Option<(String, Vec<u8>)> {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 || buffer.len() > MAX_HEAD_BYTES {
            return None;
        }
        buffer.extend_from_slice(&chunk[..n]);
        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            let rest = buffer.split_off(end + 4);
            return Some((String::from_utf8(buffer).ok()?, rest));
        }
    }
}

fn parse(head: &str) -> Handshake {
    let mut lines = head.split("\r\n");
    let target = lines.next().and_then(|l| l.split(' ').nth(1)).unwrap_or_default();
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let query = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (n, v) = p.split_once('=').unwrap_or((p, ""));
            (n.to_owned(), v.to_owned())
        })
        .collect();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_lowercase(), v.trim().to_owned()))
        .collect();
    Handshake {
        path: path.to_owned(),
        query,
        headers,
        signature_valid: None,
    }
}

/// Verifies a presigned handshake the way the service does: sign the request without its
/// signature parameters, at the time it names, with the key the front end knows.
fn verify(handshake: &Handshake, secret: &str) -> bool {
    let Some(date) = handshake.param("X-Amz-Date") else {
        return false;
    };
    let Some(at) = parse_amz_date(date) else {
        return false;
    };
    let unsigned: Vec<String> = handshake
        .query
        .iter()
        .filter(|(n, _)| !n.starts_with("X-Amz-"))
        .map(|(n, v)| format!("{n}={v}"))
        .collect();
    let host = handshake.headers.get("host").cloned().unwrap_or_default();
    let url = format!("http://{host}{}?{}", handshake.path, unsigned.join("&"));
    let token = handshake
        .param("X-Amz-Security-Token")
        .map(|t| percent_encoding::percent_decode_str(t).decode_utf8_lossy().into_owned());
    let identity = Credentials::new(ACCESS_KEY, secret, token, None, "front").into();
    let mut settings = SigningSettings::default();
    settings.signature_location = SignatureLocation::QueryParams;
    settings.expires_in = Some(Duration::from_secs(300));
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region("us-east-1")
        .name("bedrock-agentcore")
        .time(at)
        .settings(settings)
        .build()
        .expect("signing params")
        .into();
    let request = SignableRequest::new(
        "GET",
        &url,
        [("host", host.as_str())].into_iter(),
        SignableBody::Bytes(&[]),
    )
    .expect("signable");
    let (instructions, _) = sign(request, &params).expect("sign").into_parts();
    let expected = instructions
        .params()
        .iter()
        .find(|(n, _)| *n == "X-Amz-Signature")
        .map(|(_, v)| v.to_string());
    expected.as_deref() == handshake.param("X-Amz-Signature")
}

/// `20261206T120000Z` → that instant.
fn parse_amz_date(date: &str) -> Option<SystemTime> {
    let n = |range: std::ops::Range<usize>| date.get(range)?.parse::<i64>().ok();
    let (year, month, day) = (n(0..4)?, n(4..6)?, n(6..8)?);
    let (hour, minute, second) = (n(9..11)?, n(11..13)?, n(13..15)?);
    // Days from 1970-01-01 to the date (civil calendar, Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let seconds = days * 86_400 + hour * 3600 + minute * 60 + second;
    Some(SystemTime::UNIX_EPOCH + Duration::from_secs(u64::try_from(seconds).ok()?))
}

/// `voice-agent talk` with AWS configuration from nothing but the given variables: no profile
/// files, no instance metadata.
fn talk_command(args: &[&str], front: SocketAddr, home: &std::path::Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_voice-agent"));
    command.arg("talk").args(args);
    for (name, _) in std::env::vars() {
        if name.starts_with("AWS_") || name.starts_with("VOICE_AGENT_") {
            command.env_remove(name);
        }
    }
    command
        .env("HOME", home)
        .env("AWS_CONFIG_FILE", home.join("config"))
        .env("AWS_SHARED_CREDENTIALS_FILE", home.join("credentials"))
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_ENDPOINT_URL_BEDROCK_AGENTCORE", format!("http://{front}"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    command
}

async fn run(mut command: Command) -> Output {
    timeout(RUN_LIMIT, command.output())
        .await
        .expect("talk finishes")
        .expect("talk output")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn with_credentials(command: &mut Command) {
    command
        .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
        .env("AWS_SESSION_TOKEN", SESSION_TOKEN);
}

#[tokio::test]
async fn talks_to_an_agentcore_runtime_through_a_presigned_url() {
    let agent = AgentProcess::start(&[]);
    let (front, mut handshakes) = agentcore_front(agent.addr, SECRET_KEY).await;
    let home = tempfile::tempdir().expect("home");
    let mut command = talk_command(
        &[
            "--agentcore-runtime-arn",
            ARN,
            "--agentcore-qualifier",
            "DEFAULT",
            "--text",
            "Are you there?",
        ],
        front,
        home.path(),
    );
    with_credentials(&mut command);
    let output = run(command).await;
    let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
    assert!(output.status.success(), "{stdout}{stderr}");
    assert!(
        stdout.contains("] assistant: You wrote: Are you there? This is a simulated reply."),
        "{stdout}"
    );

    let handshake = handshakes.recv().await.expect("a handshake");
    assert_eq!(handshake.path, format!("/runtimes/{ENCODED_ARN}/ws"));
    assert_eq!(handshake.signature_valid, Some(true), "{handshake:?}");
    assert_eq!(handshake.param("qualifier"), Some("DEFAULT"));
    assert_eq!(handshake.param("audio_output"), Some("binary"));
    assert_eq!(handshake.param("X-Amz-Algorithm"), Some("AWS4-HMAC-SHA256"));
    assert_eq!(handshake.param("X-Amz-Expires"), Some("300"));
    assert_eq!(handshake.param("X-Amz-SignedHeaders"), Some("host"));
    assert_eq!(handshake.param("X-Amz-Security-Token"), Some(SESSION_TOKEN));
    let credential = handshake.param("X-Amz-Credential").expect("credential");
    assert!(credential.starts_with(&format!("{ACCESS_KEY}%2F")), "{credential}");
    assert!(
        credential.ends_with("%2Fus-east-1%2Fbedrock-agentcore%2Faws4_request"),
        "{credential}"
    );
    let signed_at = parse_amz_date(handshake.param("X-Amz-Date").expect("date")).expect("a date");
    let age = SystemTime::now().duration_since(signed_at).unwrap_or_default();
    assert!(age < Duration::from_secs(120), "signed {age:?} ago");
    assert!(!handshake.headers.contains_key("authorization"), "{handshake:?}");

    // The session id is the one talk printed, and it is a valid AgentCore session id.
    let session = handshake
        .param("X-Amzn-Bedrock-AgentCore-Runtime-Session-Id")
        .expect("session id");
    assert!((33..=256).contains(&session.len()), "{session}");
    assert!(
        stdout.contains(&format!(
            "AgentCore runtime session {session} in us-east-1 (SigV4-presigned URL)"
        )),
        "{stdout}"
    );
    for secret in [SECRET_KEY, SESSION_TOKEN] {
        assert!(!stdout.contains(secret) && !stderr.contains(secret), "{stdout}{stderr}");
    }
}

#[tokio::test]
async fn a_refused_signature_is_reported_without_the_signed_query() {
    let agent = AgentProcess::start(&[]);
    // The front end knows another secret for this key: every signature is wrong.
    let (front, mut handshakes) = agentcore_front(agent.addr, "another-secret").await;
    let home = tempfile::tempdir().expect("home");
    let mut command = talk_command(&["--agentcore-runtime-arn", ARN, "--text", "hello"], front, home.path());
    with_credentials(&mut command);
    let output = run(command).await;
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    let line = stderr.lines().last().unwrap_or_default();
    assert_eq!(
        line,
        format!(
            "voice-agent talk: ws://{front}/runtimes/{ENCODED_ARN}/ws refused the connection: HTTP 403 Forbidden: \
             the signature was refused, or these AWS credentials may not call \
             bedrock-agentcore:InvokeAgentRuntimeWithWebSocketStream on this runtime"
        )
    );
    let handshake = handshakes.recv().await.expect("a handshake");
    assert_eq!(handshake.signature_valid, Some(false));
    assert!(!stderr.contains("X-Amz-"), "{stderr}");
}

#[tokio::test]
async fn a_runtime_with_a_jwt_authorizer_gets_the_bearer_token_and_the_session_header() {
    let agent = AgentProcess::start(&[]);
    let (front, mut handshakes) = agentcore_front(agent.addr, SECRET_KEY).await;
    let home = tempfile::tempdir().expect("home");
    let session = "voice-agent-talk-test-session-0000000001";
    let mut command = talk_command(
        &[
            "--agentcore-runtime-arn",
            ARN,
            "--agentcore-session-id",
            session,
            "--text",
            "hello",
        ],
        front,
        home.path(),
    );
    // No AWS credentials at all: a token needs none.
    command.env("VOICE_AGENT_TOKEN", "eyJ.jwt-for-agentcore.sig");
    let output = run(command).await;
    let stdout = text(&output.stdout);
    assert!(output.status.success(), "{stdout}{}", text(&output.stderr));
    assert!(
        stdout.contains(&format!(
            "AgentCore runtime session {session} in us-east-1 (bearer token)"
        )),
        "{stdout}"
    );
    let handshake = handshakes.recv().await.expect("a handshake");
    assert_eq!(handshake.path, format!("/runtimes/{ENCODED_ARN}/ws"));
    assert_eq!(
        handshake.headers.get("authorization").map(String::as_str),
        Some("Bearer eyJ.jwt-for-agentcore.sig")
    );
    assert_eq!(
        handshake
            .headers
            .get("x-amzn-bedrock-agentcore-runtime-session-id")
            .map(String::as_str),
        Some(session)
    );
    assert_eq!(handshake.signature_valid, None, "no signature: {handshake:?}");
}

#[tokio::test]
async fn without_aws_credentials_signing_fails_in_one_line() {
    let home = tempfile::tempdir().expect("home");
    // Nothing listens here: talk must fail before connecting.
    let nowhere: SocketAddr = "127.0.0.1:9".parse().expect("addr");
    let command = talk_command(
        &["--agentcore-runtime-arn", ARN, "--text", "hello"],
        nowhere,
        home.path(),
    );
    let output = run(command).await;
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    let last = stderr.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("voice-agent talk: cannot sign the AgentCore request: "),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");

    let bad_arn = run(talk_command(
        &[
            "--agentcore-runtime-arn",
            "arn:aws:bedrock:us-east-1:1:model/x",
            "--text",
            "hello",
        ],
        nowhere,
        home.path(),
    ))
    .await;
    assert_eq!(bad_arn.status.code(), Some(2), "{}", text(&bad_arn.stderr));
    assert!(text(&bad_arn.stderr).contains("not an AgentCore runtime ARN"));
}
