//! Handshake security on the real binary: tokens, JWTs, origins, rate limits, per-caller
//! limits, TLS, and secrets kept out of logs.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

/// Tries a handshake with extra headers; the HTTP status and headers of the answer.
async fn handshake(agent: &AgentProcess, query: &str, headers: &[(&str, &str)]) -> (u16, Option<String>, String) {
    let mut request = agent.ws_url(query).into_client_request().expect("request");
    for (name, value) in headers {
        let name = tokio_tungstenite::tungstenite::http::HeaderName::from_bytes(name.as_bytes()).expect("header name");
        request
            .headers_mut()
            .append(name, HeaderValue::from_str(value).expect("header value"));
    }
    match tokio_tungstenite::connect_async(request).await {
        Ok((ws, response)) => {
            let protocol = response
                .headers()
                .get("sec-websocket-protocol")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            drop(ws);
            (101, protocol, String::new())
        }
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            let body = response
                .body()
                .as_ref()
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .unwrap_or_default();
            let extra = response
                .headers()
                .get("retry-after")
                .or_else(|| response.headers().get("www-authenticate"))
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            (response.status().as_u16(), extra, body)
        }
        Err(other) => panic!("handshake failed: {other}"),
    }
}

fn subprotocols(token: &str) -> String {
    format!(
        "base64UrlBearerAuthorization.{}, base64UrlBearerAuthorization",
        URL_SAFE_NO_PAD.encode(token)
    )
}

fn assert_clean_logs(agent: &AgentProcess, secrets: &[&str]) {
    let logs = agent.logs().join("\n");
    for secret in secrets {
        assert!(!logs.contains(secret), "a secret appeared in the logs: {secret}");
    }
}

#[tokio::test]
async fn token_mode_admits_only_listed_tokens_by_header_or_subprotocol() {
    let dir = tempfile::tempdir().expect("dir");
    let tokens = dir.path().join("tokens");
    std::fs::write(&tokens, "# callers\ns3cr3t-alpha\ns3cr3t-beta\n").expect("tokens");
    let agent = AgentProcess::start(&["--auth-mode", "token", "--auth-token-file", &tokens.to_string_lossy()]);

    let missing = handshake(&agent, "", &[]).await;
    assert_eq!((missing.0, missing.1.as_deref()), (401, Some("Bearer")));
    let wrong = handshake(&agent, "", &[("authorization", "Bearer s3cr3t-gamma")]).await;
    assert_eq!(wrong.0, 401);
    assert_eq!(wrong.2, missing.2, "refusals give no hint of what failed");
    let not_bearer = handshake(&agent, "", &[("authorization", "Basic czNjcjN0LWFscGhh")]).await;
    assert_eq!(not_bearer.0, 401);

    assert_eq!(
        handshake(&agent, "", &[("authorization", "Bearer s3cr3t-alpha")])
            .await
            .0,
        101
    );
    let browser = handshake(&agent, "", &[("sec-websocket-protocol", &subprotocols("s3cr3t-beta"))]).await;
    assert_eq!(browser.0, 101);
    assert_eq!(
        browser.1.as_deref(),
        Some("base64UrlBearerAuthorization"),
        "the handshake picks the marker protocol"
    );
    let bad_browser = handshake(&agent, "", &[("sec-websocket-protocol", &subprotocols("nope"))]).await;
    assert_eq!(bad_browser.0, 401);

    assert_eq!(
        handshake(&agent, "?token=s3cr3t-alpha", &[]).await.0,
        401,
        "query tokens are off by default"
    );
    wait_metric(
        &agent,
        "voice_agent_handshake_rejections_total{reason=\"unauthenticated\"}",
        5.0,
    )
    .await;
    assert_clean_logs(&agent, &["s3cr3t-alpha", "s3cr3t-beta", "s3cr3t-gamma"]);
}

#[tokio::test]
async fn query_tokens_work_only_when_enabled() {
    let dir = tempfile::tempdir().expect("dir");
    let tokens = dir.path().join("tokens");
    std::fs::write(&tokens, "query-token-1\n").expect("tokens");
    let agent = AgentProcess::start(&[
        "--auth-mode",
        "token",
        "--auth-token-file",
        &tokens.to_string_lossy(),
        "--allow-query-token",
    ]);
    assert_eq!(handshake(&agent, "?token=query-token-1", &[]).await.0, 101);
    assert_eq!(handshake(&agent, "?token=query-token-2", &[]).await.0, 401);
}

#[tokio::test]
async fn rotated_tokens_take_effect_without_a_restart() {
    let dir = tempfile::tempdir().expect("dir");
    let tokens = dir.path().join("tokens");
    std::fs::write(&tokens, "old-token\n").expect("tokens");
    let agent = AgentProcess::start(&["--auth-mode", "token", "--auth-token-file", &tokens.to_string_lossy()]);
    assert_eq!(
        handshake(&agent, "", &[("authorization", "Bearer old-token")]).await.0,
        101
    );
    // Kubernetes replaces Secret files by swapping a symlink; a rename has the same effect.
    let staged = dir.path().join("tokens.new");
    std::fs::write(&staged, "new-token\n").expect("staged");
    std::fs::rename(&staged, &tokens).expect("swap");
    tokio::time::sleep(Duration::from_millis(1300)).await;
    assert_eq!(
        handshake(&agent, "", &[("authorization", "Bearer old-token")]).await.0,
        401
    );
    assert_eq!(
        handshake(&agent, "", &[("authorization", "Bearer new-token")]).await.0,
        101
    );
}

#[tokio::test]
async fn each_caller_has_its_own_session_limit() {
    let dir = tempfile::tempdir().expect("dir");
    let tokens = dir.path().join("tokens");
    std::fs::write(&tokens, "caller-one\ncaller-two\n").expect("tokens");
    let agent = AgentProcess::start(&[
        "--auth-mode",
        "token",
        "--auth-token-file",
        &tokens.to_string_lossy(),
        "--max-sessions-per-subject",
        "1",
    ]);
    let mut request = agent.ws_url("").into_client_request().expect("request");
    request
        .headers_mut()
        .insert("authorization", HeaderValue::from_static("Bearer caller-one"));
    let (held, _) = tokio_tungstenite::connect_async(request).await.expect("first session");
    let second = handshake(&agent, "", &[("authorization", "Bearer caller-one")]).await;
    assert_eq!(second.0, 429);
    assert_eq!(
        handshake(&agent, "", &[("authorization", "Bearer caller-two")]).await.0,
        101
    );
    drop(held);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while handshake(&agent, "", &[("authorization", "Bearer caller-one")]).await.0 != 101 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the caller's slot was not released"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn origins_outside_the_allow_list_are_refused() {
    let agent = AgentProcess::start(&["--allowed-origins", "https://app.example.com,*.example.org"]);
    assert_eq!(
        handshake(&agent, "", &[("origin", "https://app.example.com")]).await.0,
        101
    );
    assert_eq!(
        handshake(&agent, "", &[("origin", "https://shop.example.org")]).await.0,
        101
    );
    assert_eq!(
        handshake(&agent, "", &[("origin", "https://evil.example.net")]).await.0,
        403
    );
    assert_eq!(
        handshake(&agent, "", &[("origin", "https://example.org.evil.net")])
            .await
            .0,
        403
    );
    assert_eq!(
        handshake(&agent, "", &[]).await.0,
        101,
        "non-browser clients send no Origin"
    );
}

#[tokio::test]
async fn handshakes_are_rate_limited_per_client() {
    let agent = AgentProcess::start(&["--handshakes-per-minute", "3"]);
    for _ in 0..3 {
        assert_eq!(handshake(&agent, "", &[]).await.0, 101);
    }
    let limited = handshake(&agent, "", &[]).await;
    assert_eq!(limited.0, 429);
    assert!(
        limited
            .1
            .and_then(|s| s.parse::<u64>().ok())
            .is_some_and(|s| (1..=60).contains(&s)),
        "Retry-After"
    );
    // A spoofed X-Forwarded-For from an untrusted peer changes nothing.
    assert_eq!(
        handshake(&agent, "", &[("x-forwarded-for", "198.51.100.77")]).await.0,
        429
    );
}

#[tokio::test]
async fn forwarded_clients_are_told_apart_behind_trusted_proxies() {
    let agent = AgentProcess::start(&["--handshakes-per-minute", "2", "--trusted-proxies", "127.0.0.1/32"]);
    let first = [("x-forwarded-for", "198.51.100.1")];
    assert_eq!(handshake(&agent, "", &first).await.0, 101);
    assert_eq!(handshake(&agent, "", &first).await.0, 101);
    assert_eq!(handshake(&agent, "", &first).await.0, 429);
    assert_eq!(
        handshake(&agent, "", &[("x-forwarded-for", "198.51.100.2")]).await.0,
        101
    );
}

/// A JWKS endpoint on loopback, counting how often it is fetched.
struct Jwks {
    url: String,
    fetches: Arc<AtomicUsize>,
    /// What the issuer publishes; replace it to rotate keys.
    body: Arc<std::sync::Mutex<String>>,
}

async fn serve_jwks(body: String) -> Jwks {
    serve_jwks_with(body, None).await
}

/// Serves the JWKS over HTTPS with `certified` as the server certificate.
async fn serve_jwks_tls(body: String, certified: &rcgen::CertifiedKey<rcgen::KeyPair>) -> Jwks {
    let key = rustls::pki_types::PrivateKeyDer::try_from(certified.signing_key.serialize_der()).expect("key");
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(vec![certified.cert.der().clone()], key)
        .expect("server config");
    serve_jwks_with(body, Some(tokio_rustls::TlsAcceptor::from(Arc::new(config)))).await
}

async fn serve_jwks_with(body: String, tls: Option<tokio_rustls::TlsAcceptor>) -> Jwks {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let url = match tls {
        Some(_) => format!("https://localhost:{port}/jwks.json"),
        None => format!("http://127.0.0.1:{port}/jwks.json"),
    };
    let fetches = Arc::new(AtomicUsize::new(0));
    let body = Arc::new(std::sync::Mutex::new(body));
    let (counter, published) = (fetches.clone(), body.clone());
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let response = |body: String| {
                format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{}",
                    body.len(),
                    body
                )
            };
            let mut request = [0u8; 2048];
            match &tls {
                None => {
                    let mut tcp = tcp;
                    counter.fetch_add(1, Ordering::SeqCst);
                    let _ = tcp.read(&mut request).await;
                    let body = published.lock().expect("body").clone();
                    let _ = tcp.write_all(response(body).as_bytes()).await;
                }
                // A client that does not trust the certificate never gets this far.
                Some(acceptor) => {
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        continue;
                    };
                    counter.fetch_add(1, Ordering::SeqCst);
                    let _ = tls.read(&mut request).await;
                    let body = published.lock().expect("body").clone();
                    let _ = tls.write_all(response(body).as_bytes()).await;
                    let _ = tls.shutdown().await;
                }
            }
        }
    });
    Jwks { url, fetches, body }
}

/// An agent in JWT mode trusting the JWKS at `url` (ES256).
fn jwt_agent(dir: &std::path::Path, url: &str) -> AgentProcess {
    jwt_agent_with(dir, url, "")
}

/// The same, with `extra` lines in the `auth.jwt` section.
fn jwt_agent_with(dir: &std::path::Path, url: &str, extra: &str) -> AgentProcess {
    let config = dir.join("agent.yaml");
    std::fs::write(
        &config,
        format!(
            "auth:\n  mode: Jwt\n  jwt:\n    issuer: https://issuer.test/pool\n    audiences: [voice-app]\n    jwksUrl: {url}\n    algorithms: [ES256]\n{extra}"
        ),
    )
    .expect("config");
    AgentProcess::start(&["--config", &config.to_string_lossy()])
}

struct Signer {
    key: jsonwebtoken::EncodingKey,
    jwk: Value,
    public: Vec<u8>,
}

fn es256_signer(kid: &str) -> Signer {
    let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key pair");
    let public = pair.public_key_raw().to_vec();
    let jwk = json!({
        "kty": "EC", "crv": "P-256", "kid": kid, "alg": "ES256", "use": "sig",
        "x": URL_SAFE_NO_PAD.encode(&public[1..33]),
        "y": URL_SAFE_NO_PAD.encode(&public[33..65]),
    });
    let key = jsonwebtoken::EncodingKey::from_ec_der(&pair.serialize_der());
    Signer { key, jwk, public }
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_secs()
}

fn sign(signer: &Signer, kid: &str, claims: Value) -> String {
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    header.kid = Some(kid.to_owned());
    jsonwebtoken::encode(&header, &claims, &signer.key).expect("sign")
}

fn claims(overrides: Value) -> Value {
    let mut claims = json!({
        "iss": "https://issuer.test/pool",
        "aud": "voice-app",
        "sub": "user-42",
        "exp": now() + 600,
        "iat": now(),
    });
    if let (Some(map), Value::Object(extra)) = (claims.as_object_mut(), overrides) {
        for (k, v) in extra {
            if v.is_null() {
                map.remove(&k);
            } else {
                map.insert(k, v);
            }
        }
    }
    claims
}

#[tokio::test]
async fn jwt_mode_checks_signature_issuer_audience_and_time() {
    let signer = es256_signer("key-1");
    let jwks = serve_jwks(json!({ "keys": [signer.jwk] }).to_string()).await;
    let dir = tempfile::tempdir().expect("dir");
    let agent = jwt_agent(dir.path(), &jwks.url);
    let bearer = |token: &str| format!("Bearer {token}");

    let valid = sign(&signer, "key-1", claims(json!({})));
    assert_eq!(
        handshake(&agent, "", &[("authorization", &bearer(&valid))]).await.0,
        101,
        "valid token"
    );
    let browser = handshake(&agent, "", &[("sec-websocket-protocol", &subprotocols(&valid))]).await;
    assert_eq!(browser.0, 101, "valid token through the browser subprotocol");
    let cognito_access = sign(&signer, "key-1", claims(json!({"aud": null, "client_id": "voice-app"})));
    assert_eq!(
        handshake(&agent, "", &[("authorization", &bearer(&cognito_access))])
            .await
            .0,
        101,
        "client_id"
    );

    let refused = [
        ("expired", sign(&signer, "key-1", claims(json!({"exp": now() - 120})))),
        (
            "not yet valid",
            sign(&signer, "key-1", claims(json!({"nbf": now() + 300}))),
        ),
        (
            "wrong audience",
            sign(&signer, "key-1", claims(json!({"aud": "someone-else"}))),
        ),
        (
            "wrong issuer",
            sign(&signer, "key-1", claims(json!({"iss": "https://evil.test"}))),
        ),
        ("no subject", sign(&signer, "key-1", claims(json!({"sub": null})))),
        ("unknown key id", sign(&signer, "key-9", claims(json!({})))),
        (
            "signed by another key",
            sign(&es256_signer("key-1"), "key-1", claims(json!({}))),
        ),
        ("alg none", {
            let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#);
            let body = URL_SAFE_NO_PAD.encode(claims(json!({})).to_string());
            format!("{header}.{body}.")
        }),
        ("HMAC with the public key", {
            let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
            header.kid = Some("key-1".into());
            let key = jsonwebtoken::EncodingKey::from_secret(&signer.public);
            jsonwebtoken::encode(&header, &claims(json!({})), &key).expect("sign")
        }),
        ("garbage", "not.a.jwt".to_owned()),
    ];
    for (case, token) in &refused {
        assert_eq!(
            handshake(&agent, "", &[("authorization", &bearer(token))]).await.0,
            401,
            "{case}"
        );
    }
    // Unknown key ids make the agent look at the JWKS again, but not on every attempt.
    assert!(
        jwks.fetches.load(Ordering::SeqCst) <= 2,
        "JWKS fetched {} times",
        jwks.fetches.load(Ordering::SeqCst)
    );

    // The subject is recorded on the session; tokens never reach the logs.
    let mut request = agent.ws_url("").into_client_request().expect("request");
    request
        .headers_mut()
        .insert("authorization", HeaderValue::from_str(&bearer(&valid)).expect("header"));
    let (mut ws, _) = tokio_tungstenite::connect_async(request).await.expect("session");
    use futures::StreamExt;
    let _ = tokio::time::timeout(Duration::from_secs(5), ws.next()).await;
    let logs = agent.logs().join("\n");
    assert!(logs.contains("user-42"), "subject not recorded");
    let mut secrets: Vec<&str> = refused
        .iter()
        .map(|(_, t)| t.as_str())
        .filter(|t| t.len() > 20)
        .collect();
    secrets.push(&valid);
    secrets.push(&cognito_access);
    assert_clean_logs(&agent, &secrets);
}

/// Issuers rotate signing keys by publishing the new key, then signing with it: a token naming
/// a key the agent has not seen makes it fetch the JWKS again (at most every 30 seconds), and
/// the key set it fetched replaces the old one.
#[tokio::test]
async fn a_rotated_signing_key_is_picked_up_from_the_jwks() {
    let (old, new) = (es256_signer("key-1"), es256_signer("key-2"));
    let jwks = serve_jwks(json!({ "keys": [old.jwk] }).to_string()).await;
    let dir = tempfile::tempdir().expect("dir");
    let agent = jwt_agent(dir.path(), &jwks.url);
    let status = async |signer: &Signer, kid: &str| {
        let bearer = format!("Bearer {}", sign(signer, kid, claims(json!({}))));
        handshake(&agent, "", &[("authorization", &bearer)]).await.0
    };
    assert_eq!(status(&old, "key-1").await, 101);
    // Not published yet: refused, and the refetch it causes (if any) finds nothing new.
    assert_eq!(status(&new, "key-2").await, 401);

    *jwks.body.lock().expect("body") = json!({ "keys": [new.jwk] }).to_string();
    let fetched = jwks.fetches.load(Ordering::SeqCst);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(45);
    while status(&new, "key-2").await != 101 {
        assert!(tokio::time::Instant::now() < deadline, "the new key was never accepted");
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let refetches = jwks.fetches.load(Ordering::SeqCst) - fetched;
    assert!(
        refetches <= 2,
        "{refetches} JWKS fetches while waiting: the refetch is not rate limited"
    );
    // The retired key went with the old key set.
    assert_eq!(status(&old, "key-1").await, 401);
}

/// An issuer inside the cluster often has a certificate from a private CA: the agent trusts it
/// with `caFile`, and without it refuses the tokens (it cannot fetch the keys).
#[tokio::test]
async fn a_jwks_behind_a_private_ca_is_trusted_with_ca_file() {
    let signer = es256_signer("key-1");
    let issuer_cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).expect("cert");
    let jwks = serve_jwks_tls(json!({ "keys": [signer.jwk] }).to_string(), &issuer_cert).await;
    let dir = tempfile::tempdir().expect("dir");
    let ca_file = dir.path().join("issuer-ca.pem");
    std::fs::write(&ca_file, issuer_cert.cert.pem()).expect("ca");
    let bearer = format!("Bearer {}", sign(&signer, "key-1", claims(json!({}))));

    let trusting = jwt_agent_with(dir.path(), &jwks.url, &format!("    caFile: {}\n", ca_file.display()));
    assert_eq!(handshake(&trusting, "", &[("authorization", &bearer)]).await.0, 101);
    assert_eq!(jwks.fetches.load(Ordering::SeqCst), 1);

    let other = tempfile::tempdir().expect("dir");
    let untrusting = jwt_agent(other.path(), &jwks.url);
    assert_eq!(handshake(&untrusting, "", &[("authorization", &bearer)]).await.0, 401);
    assert_eq!(
        jwks.fetches.load(Ordering::SeqCst),
        1,
        "the untrusted fetch got past TLS"
    );
}

/// A self-signed certificate for `localhost`, written as `tls.crt` and `tls.key` in `dir`.
fn write_certificate(dir: &std::path::Path) -> rcgen::CertifiedKey<rcgen::KeyPair> {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".into()]).expect("cert");
    // Written to a temporary name and renamed, as a Secret volume update swaps files whole.
    for (name, pem) in [
        ("tls.crt", certified.cert.pem()),
        ("tls.key", certified.signing_key.serialize_pem()),
    ] {
        let partial = dir.join(format!(".{name}.new"));
        std::fs::write(&partial, pem).expect("write");
        std::fs::rename(&partial, dir.join(name)).expect("rename");
    }
    certified
}

/// Opens a session over `wss://` to the agent, trusting only `root`.
async fn connect_tls(
    agent: &AgentProcess,
    root: &rustls::pki_types::CertificateDer<'static>,
) -> Result<Client, tokio_tungstenite::tungstenite::Error> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(root.clone()).expect("root");
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let url = format!("wss://localhost:{}/ws", agent.addr.port());
    let connector = tokio_tungstenite::Connector::Rustls(Arc::new(config));
    let (ws, _) = tokio_tungstenite::connect_async_tls_with_config(url, None, false, Some(connector)).await?;
    let mut client = Client::from_stream(ws, Encoding::Json);
    client
        .until_event("bidi_connection_start", Duration::from_secs(10))
        .await;
    Ok(client)
}

fn tls_agent(dir: &std::path::Path) -> AgentProcess {
    AgentProcess::start(&[
        "--tls-cert-file",
        &dir.join("tls.crt").to_string_lossy(),
        "--tls-key-file",
        &dir.join("tls.key").to_string_lossy(),
    ])
}

#[tokio::test]
async fn the_agent_can_serve_tls_itself() {
    let dir = tempfile::tempdir().expect("dir");
    let certified = write_certificate(dir.path());
    let agent = tls_agent(dir.path());

    let mut client = connect_tls(&agent, certified.cert.der()).await.expect("wss handshake");
    client.send_text("over tls").await;
    client.until_event("bidi_response_start", Duration::from_secs(10)).await;

    // Plain WebSocket on the TLS port gets nowhere.
    assert!(tokio_tungstenite::connect_async(agent.ws_url("")).await.is_err());
    assert_clean_logs(&agent, &[&certified.signing_key.serialize_pem()]);
}

/// cert-manager renews certificates in place: new handshakes get the new certificate without a
/// restart, and sessions opened under the old one carry on.
#[tokio::test]
async fn a_renewed_certificate_is_served_without_a_restart() {
    let dir = tempfile::tempdir().expect("dir");
    let old = write_certificate(dir.path());
    let agent = tls_agent(dir.path());
    let mut live = connect_tls(&agent, old.cert.der()).await.expect("wss handshake");
    live.send_text("before the renewal").await;
    live.until_event("bidi_response_complete", Duration::from_secs(10))
        .await;

    let new = write_certificate(dir.path());
    // The agent looks for changed files every 10 seconds.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut renewed = loop {
        if let Ok(client) = connect_tls(&agent, new.cert.der()).await {
            break client;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the new certificate was never served"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert!(
        connect_tls(&agent, old.cert.der()).await.is_err(),
        "the old certificate is still served"
    );
    assert!(agent.logs().iter().any(|l| l.contains("TLS certificate reloaded")));

    renewed.send_text("after the renewal").await;
    renewed
        .until_event("bidi_response_start", Duration::from_secs(10))
        .await;
    live.send_text("still here").await;
    live.until_event("bidi_response_start", Duration::from_secs(10)).await;
    assert_clean_logs(
        &agent,
        &[&old.signing_key.serialize_pem(), &new.signing_key.serialize_pem()],
    );
}

#[tokio::test]
async fn jwt_claims_fill_session_settings_that_callers_cannot_override() {
    let signer = es256_signer("key-1");
    let jwks = serve_jwks(json!({ "keys": [signer.jwk] }).to_string()).await;
    let dir = tempfile::tempdir().expect("dir");
    let agent = jwt_agent_with(
        dir.path(),
        &jwks.url,
        "prompt:\n  system: \"Help {{customer_name}}.\"\nsessionSettings:\n  variables:\n    - {name: customer_name, fromClaim: given_name}\n  metadata: {fromClaims: [tenant]}\n",
    );
    wait_ready(&agent).await;
    let token = sign(&signer, "key-1", claims(json!({"given_name": "Ana", "tenant": "acme"})));
    let bearer = format!("Bearer {token}");

    let mut request = agent.ws_url("").into_client_request().expect("request");
    request
        .headers_mut()
        .insert("authorization", HeaderValue::from_str(&bearer).expect("header"));
    let (ws, _) = tokio_tungstenite::connect_async(request).await.expect("handshake");
    let mut client = Client::from_stream(ws, Encoding::Json);
    let start = client
        .until_event("bidi_connection_start", Duration::from_secs(10))
        .await;
    assert_eq!(
        events(&start)[0]["settings"],
        json!({"variables": {"customer_name": "Ana"}, "metadata": {"tenant": "acme"}})
    );
    client.close().await;

    // What the token says is not the caller's to change.
    let (status, _, body) = handshake(&agent, "?var.customer_name=Mallory", &[("authorization", &bearer)]).await;
    assert_eq!(status, 400);
    assert!(
        body.contains("var.customer_name is taken from the caller's token"),
        "{body}"
    );
    assert_clean_logs(&agent, &[&token, "Mallory"]);
}
