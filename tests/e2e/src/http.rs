//! A bare HTTP/1.0 `GET` to a process under test on loopback (health, readiness and metrics
//! endpoints): no client library, so a malformed answer is seen as it is.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::anyhow;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// Longest a whole request may take, connecting included.
pub const TIMEOUT: Duration = Duration::from_secs(5);

/// `GET path` on `addr` over HTTP/1.0, within [`TIMEOUT`]: the status code and the body.
pub async fn get(addr: SocketAddr, path: &str) -> anyhow::Result<(u16, String)> {
    let request = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await?;
        stream
            .write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
            .await?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await?;
        anyhow::Ok(String::from_utf8_lossy(&response).into_owned())
    };
    let text = tokio::time::timeout(TIMEOUT, request)
        .await
        .map_err(|_| anyhow!("GET {path} on {addr} timed out"))??;
    parse_response(&text)
}

/// The status code and body of an HTTP/1.x response; a response without a body has an empty
/// one.
fn parse_response(text: &str) -> anyhow::Result<(u16, String)> {
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| anyhow!("no HTTP status in {text:?}"))?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_status_and_body() {
        let (status, body) =
            parse_response("HTTP/1.0 200 OK\r\ncontent-type: text/plain\r\n\r\nready\n").expect("parses");
        assert_eq!(status, 200);
        assert_eq!(body, "ready\n");
    }

    #[test]
    fn a_response_without_a_body_has_an_empty_one() {
        assert_eq!(
            parse_response("HTTP/1.1 503 Service Unavailable\r\n").expect("parses"),
            (503, String::new())
        );
    }

    #[test]
    fn refuses_what_is_not_an_http_response() {
        for text in ["", "garbage", "HTTP/1.0 OK\r\n\r\n"] {
            assert!(parse_response(text).is_err(), "{text:?}");
        }
    }
}
