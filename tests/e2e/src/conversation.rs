//! A caller of the agent's `/ws` endpoint in the Strands event schema: connect (with a bearer
//! token, through any address), take typed turns, and see how the session ended.

use std::net::SocketAddr;
use std::time::Duration;

use futures::{SinkExt as _, StreamExt as _};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// An open session.
pub type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Opens `ws://<addr>/ws`, with `Authorization: Bearer <token>` when given.
pub async fn connect(addr: SocketAddr, token: Option<&str>) -> Result<Socket, tungstenite::Error> {
    let mut request = format!("ws://{addr}/ws").into_client_request()?;
    if let Some(token) = token {
        let value = format!("Bearer {token}")
            .parse()
            .map_err(|_| tungstenite::Error::Url(tungstenite::error::UrlError::NoHostName))?;
        request.headers_mut().insert("Authorization", value);
    }
    let (ws, _) = tokio_tungstenite::connect_async(request).await?;
    Ok(ws)
}

/// The HTTP status of a handshake: 101 when accepted, the refusal's status otherwise.
///
/// # Errors
/// The handshake failed without an HTTP answer (refused connection, reset, ...).
pub fn handshake_status(result: &Result<Socket, tungstenite::Error>) -> Result<u16, String> {
    match result {
        Ok(_) => Ok(101),
        Err(tungstenite::Error::Http(response)) => Ok(response.status().as_u16()),
        Err(err) => Err(format!("handshake failed without an HTTP answer: {err}")),
    }
}

/// How a wait for an event ended when it did not find it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ended {
    /// The agent closed the session with this close frame (code, reason).
    Closed(Option<(u16, String)>),
    /// The connection broke without a close frame (reset, EOF).
    Broken(String),
    /// Nothing arrived in time.
    TimedOut,
}

impl std::fmt::Display for Ended {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Ended::Closed(Some((code, reason))) => write!(f, "closed with {code} {reason:?}"),
            Ended::Closed(None) => f.write_str("closed without a code"),
            Ended::Broken(why) => write!(f, "connection broken: {why}"),
            Ended::TimedOut => f.write_str("timed out"),
        }
    }
}

/// The next JSON event of type `kind`, skipping others.
///
/// # Errors
/// How the session ended (or that `within` passed) before such an event arrived.
pub async fn until(ws: &mut Socket, kind: &str, within: Duration) -> Result<serde_json::Value, Ended> {
    let wait = async {
        while let Some(message) = ws.next().await {
            match message {
                Ok(Message::Text(text)) => {
                    let Ok(event) = serde_json::from_str::<serde_json::Value>(&text) else {
                        return Err(Ended::Broken(format!("not JSON: {text}")));
                    };
                    if event["type"] == kind {
                        return Ok(event);
                    }
                }
                Ok(Message::Close(frame)) => {
                    return Err(Ended::Closed(frame.map(|f| (u16::from(f.code), f.reason.to_string()))));
                }
                Ok(_) => {}
                Err(err) => return Err(Ended::Broken(err.to_string())),
            }
        }
        Err(Ended::Broken("the stream ended without a close frame".to_owned()))
    };
    tokio::time::timeout(within, wait).await.unwrap_or(Err(Ended::TimedOut))
}

/// One typed turn: sends `text` and waits for the complete response.
///
/// # Errors
/// How the session ended before the response completed.
pub async fn turn(ws: &mut Socket, text: &str, within: Duration) -> Result<(), Ended> {
    let input = serde_json::json!({"type": "bidi_text_input", "text": text, "role": "user"});
    ws.send(Message::text(input.to_string()))
        .await
        .map_err(|e| Ended::Broken(format!("send failed: {e}")))?;
    until(ws, "bidi_response_complete", within).await.map(|_| ())
}

/// The close code the agent sends next, skipping events; `None` when the connection ended
/// without a close frame or nothing came within `within`.
pub async fn close_code(ws: &mut Socket, within: Duration) -> Option<CloseCode> {
    let wait = async {
        while let Some(Ok(message)) = ws.next().await {
            if let Message::Close(frame) = message {
                return frame.map(|f| f.code);
            }
        }
        None
    };
    tokio::time::timeout(within, wait).await.ok().flatten()
}
