//! Opening the session: the URL, the handshake with an optional bearer token, TLS for `wss://`,
//! and a clear error for every way the handshake can fail.

use std::sync::Arc;

use serde_json::Value;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::handshake::client::Response;
use tokio_tungstenite::tungstenite::http::{HeaderName, HeaderValue, Uri, header};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{Connector, MaybeTlsStream, WebSocketStream, connect_async_tls_with_config};

use super::TalkError;

pub type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Reply frames are 32 ms of audio or a small JSON event; anything near this is not the agent.
const MAX_MESSAGE_BYTES: usize = 1024 * 1024;

/// The session URL for what the user typed: `ws://` and `wss://` as given, `http(s)://` (the
/// page's address) mapped to `ws(s)://`, a bare `host:port` taken as `ws://`, `/ws` added when
/// there is no path, and `audio_output=binary` asked for unless the URL chooses.
pub fn session_url(raw: &str) -> Result<String, TalkError> {
    let bad = |reason: String| TalkError::Url {
        url: raw.to_owned(),
        reason,
    };
    let with_scheme = if raw.contains("://") {
        raw.to_owned()
    } else {
        format!("ws://{raw}")
    };
    let uri: Uri = with_scheme.parse().map_err(|e| bad(format!("{e}")))?;
    let scheme = match uri.scheme_str() {
        Some("ws" | "http") => "ws",
        Some("wss" | "https") => "wss",
        other => {
            return Err(bad(format!(
                "unsupported scheme {:?}; use ws://, wss://, http:// or https://",
                other.unwrap_or("")
            )));
        }
    };
    let authority = uri.authority().ok_or_else(|| bad("no host".to_owned()))?;
    let path = match uri.path() {
        "" | "/" => "/ws",
        path => path,
    };
    let query = match uri.query().filter(|q| !q.is_empty()) {
        Some(q) if q.split('&').any(|pair| pair.starts_with("audio_output=")) => q.to_owned(),
        Some(q) => format!("{q}&audio_output=binary"),
        None => "audio_output=binary".to_owned(),
    };
    Ok(format!("{scheme}://{authority}{path}?{query}"))
}

/// Where and how to open the session.
#[derive(Debug, Clone)]
pub struct Target {
    /// The URL to connect to (for AgentCore with SigV4: presigned).
    pub url: String,
    /// The URL as messages show it: a presigned URL without its query, which holds credentials.
    pub shown: String,
    /// Sent as `Authorization: Bearer <token>`.
    pub token: Option<String>,
    /// More handshake headers (AgentCore's session id).
    pub headers: Vec<(&'static str, String)>,
    /// The URL carries a SigV4 signature (it decides what a 403 means).
    pub presigned: bool,
}

impl Target {
    /// The same target with one more query parameter (a plain URL; a presigned one would no
    /// longer match its signature).
    pub fn with_query(&self, name: &str, value: &str) -> Self {
        let separator = if self.url.contains('?') { '&' } else { '?' };
        let encoded: String =
            percent_encoding::utf8_percent_encode(value, percent_encoding::NON_ALPHANUMERIC).collect();
        Self {
            url: format!("{}{separator}{name}={encoded}", self.url),
            ..self.clone()
        }
    }

    /// A plain URL, shown as it is.
    pub fn plain(url: String, token: Option<String>) -> Self {
        Self {
            shown: url.clone(),
            url,
            token,
            headers: Vec::new(),
            presigned: false,
        }
    }
}

/// Opens the WebSocket.
pub async fn connect(target: &Target) -> Result<Socket, TalkError> {
    let url = target.url.as_str();
    let mut request = url.into_client_request().map_err(|e| TalkError::Url {
        url: target.shown.clone(),
        reason: e.to_string(),
    })?;
    let headers = request.headers_mut();
    if let Some(token) = &target.token {
        let mut value = HeaderValue::from_str(&format!("Bearer {token}"))
            .map_err(|_| TalkError::Token("it contains characters not allowed in an HTTP header"))?;
        value.set_sensitive(true);
        headers.insert(header::AUTHORIZATION, value);
    }
    for (name, value) in &target.headers {
        let invalid = || TalkError::Url {
            url: target.shown.clone(),
            reason: format!("{name}: {value:?} cannot be sent as a header"),
        };
        let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| invalid())?;
        headers.insert(name, HeaderValue::from_str(value).map_err(|_| invalid())?);
    }
    headers.insert(
        header::USER_AGENT,
        HeaderValue::from_static(concat!("voice-agent-talk/", env!("CARGO_PKG_VERSION"))),
    );
    let connector = if url.starts_with("wss://") {
        Some(Connector::Rustls(tls_config(&target.shown)?))
    } else {
        None
    };
    let config = WebSocketConfig::default()
        .max_message_size(Some(MAX_MESSAGE_BYTES))
        .max_frame_size(Some(MAX_MESSAGE_BYTES));
    match connect_async_tls_with_config(request, Some(config), true, connector).await {
        Ok((socket, _)) => Ok(socket),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => Err(refusal(target, &response)),
        Err(e) => {
            let mut reason = e.to_string();
            if reason.contains("certificate") {
                reason.push_str(" (for a private CA, point SSL_CERT_FILE at its certificate)");
            } else if reason.contains("InvalidContentType") {
                reason.push_str(" (no TLS on that port: try ws://)");
            }
            Err(TalkError::Unreachable {
                url: target.shown.clone(),
                reason,
            })
        }
    }
}

/// TLS with the system's trusted CAs (`SSL_CERT_FILE` / `SSL_CERT_DIR` override them, for
/// private CAs).
fn tls_config(url: &str) -> Result<Arc<rustls::ClientConfig>, TalkError> {
    let unreachable = |reason: String| TalkError::Unreachable {
        url: url.to_owned(),
        reason,
    };
    let mut roots = rustls::RootCertStore::empty();
    let found = rustls_native_certs::load_native_certs();
    let (added, _) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        return Err(unreachable(
            "no trusted CA certificates found (install ca-certificates or set SSL_CERT_FILE)".to_owned(),
        ));
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| unreachable(format!("TLS setup: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    // WebSocket upgrades are HTTP/1.1; some load balancers would pick HTTP/2 if it were offered.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// One line saying what the HTTP refusal means.
fn refusal(target: &Target, response: &Response) -> TalkError {
    let sent_token = target.token.is_some();
    let status = response.status();
    let mut detail = status
        .canonical_reason()
        .map(|reason| format!(" {reason}"))
        .unwrap_or_default();
    let body: Option<Value> = response
        .body()
        .as_deref()
        .and_then(|body| serde_json::from_slice(body).ok());
    if let Some(error) = body.as_ref().and_then(|b| b.get("error")) {
        let code = error.get("code").and_then(Value::as_str).unwrap_or("error");
        let message = error.get("message").and_then(Value::as_str).unwrap_or("");
        detail.push_str(&format!(" ({code}: {message})"));
    }
    match status.as_u16() {
        401 if sent_token => detail.push_str(": the token was refused"),
        401 => detail.push_str(": the agent requires a token (--token)"),
        403 if target.presigned => detail.push_str(
            ": the signature was refused, or these AWS credentials may not call \
             bedrock-agentcore:InvokeAgentRuntimeWithWebSocketStream on this runtime",
        ),
        403 => detail.push_str(": not allowed (token or origin refused)"),
        _ => {}
    }
    if let Some(retry) = response
        .headers()
        .get(header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
    {
        detail.push_str(&format!("; retry after {retry} s"));
    }
    TalkError::Refused {
        url: target.shown.clone(),
        status: status.as_u16(),
        detail,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_urls_accept_what_people_paste() {
        for (typed, expected) in [
            ("ws://localhost:8080/ws", "ws://localhost:8080/ws?audio_output=binary"),
            (
                "wss://agent.example.com",
                "wss://agent.example.com/ws?audio_output=binary",
            ),
            (
                "https://agent.example.com/",
                "wss://agent.example.com/ws?audio_output=binary",
            ),
            ("http://10.0.0.1:8080", "ws://10.0.0.1:8080/ws?audio_output=binary"),
            ("localhost:8080", "ws://localhost:8080/ws?audio_output=binary"),
            (
                "wss://h/team/agent/ws?x=1",
                "wss://h/team/agent/ws?x=1&audio_output=binary",
            ),
            ("ws://h/ws?audio_output=json", "ws://h/ws?audio_output=json"),
        ] {
            assert_eq!(session_url(typed).expect(typed), expected, "{typed}");
        }
    }

    #[test]
    fn session_urls_refuse_other_schemes() {
        let error = session_url("ftp://host/ws").expect_err("ftp").to_string();
        assert!(error.contains("unsupported scheme"), "{error}");
        assert_eq!(session_url("ws://").expect_err("no host").exit_code(), 2);
    }

    fn response(status: u16, body: &str, retry_after: Option<&str>) -> Response {
        let mut builder = tokio_tungstenite::tungstenite::http::Response::builder().status(status);
        if let Some(retry) = retry_after {
            builder = builder.header(header::RETRY_AFTER, retry);
        }
        builder.body(Some(body.as_bytes().to_vec())).expect("response")
    }

    #[test]
    fn refusals_say_status_reason_and_what_to_do() {
        let busy = response(
            503,
            r#"{"error":{"code":"capacity","message":"this agent is at its session limit"}}"#,
            Some("5"),
        );
        let anonymous = Target::plain("ws://a/ws".to_owned(), None);
        let with_token = Target::plain("ws://a/ws".to_owned(), Some("t".to_owned()));
        assert_eq!(
            refusal(&anonymous, &busy).to_string(),
            "ws://a/ws refused the connection: HTTP 503 Service Unavailable \
             (capacity: this agent is at its session limit); retry after 5 s"
        );
        let denied = refusal(&with_token, &response(401, "", None)).to_string();
        assert!(
            denied.ends_with("HTTP 401 Unauthorized: the token was refused"),
            "{denied}"
        );
        let missing = refusal(&anonymous, &response(401, "", None)).to_string();
        assert!(missing.contains("requires a token"), "{missing}");
        let signed = Target {
            presigned: true,
            shown: "wss://bedrock-agentcore.us-east-1.amazonaws.com/runtimes/r/ws".to_owned(),
            ..anonymous
        };
        let forbidden = refusal(&signed, &response(403, "", None)).to_string();
        assert!(
            forbidden.starts_with("wss://bedrock-agentcore.us-east-1.amazonaws.com/runtimes/r/ws refused"),
            "{forbidden}"
        );
        assert!(
            forbidden.contains("InvokeAgentRuntimeWithWebSocketStream"),
            "{forbidden}"
        );
    }
}
