//! Who may open a session: client rate limits, the browser origin allow-list, and handshake
//! authentication (static tokens or JWTs), all decided before the WebSocket upgrade.
//!
//! Token transports: `Authorization: Bearer <token>`; for browsers, which cannot set headers on
//! WebSockets, the subprotocol pair `base64UrlBearerAuthorization.<base64url(token)>` +
//! `base64UrlBearerAuthorization` (AgentCore's convention); the `token` query parameter only
//! when explicitly enabled. Refusals never say which check failed.

mod client;
mod jwt;
mod origin;
mod token;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::HeaderMap;
use tracing::debug;

use client::{ClientAddress, HandshakeLimiter};
use jwt::JwtVerifier;
use origin::OriginPolicy;
use token::TokenStore;
use voice_config::{AuthConfig, AuthMode, LimitsConfig};

/// The subprotocol a browser client offers (alone, and prefixed to its token).
pub const BEARER_SUBPROTOCOL: &str = "base64UrlBearerAuthorization";
/// Longest token accepted, encoded (AgentCore's limit for subprotocol tokens is 4096).
const MAX_TOKEN_LEN: usize = 8192;

/// An admitted caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// Who, when authentication is on: the JWT subject or `token-<n>`.
    pub subject: Option<String>,
    /// The handshake must answer with [`BEARER_SUBPROTOCOL`].
    pub via_subprotocol: bool,
    pub address: IpAddr,
    /// The claims of the caller's JWT (empty for other kinds of authentication).
    pub claims: serde_json::Map<String, serde_json::Value>,
}

/// Why a handshake is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    RateLimited { retry_after: Duration },
    Origin,
    Unauthenticated,
}

enum Verifier {
    None,
    Token(TokenStore),
    Jwt(Box<JwtVerifier>),
}

pub struct Gatekeeper {
    verifier: Verifier,
    allow_query_token: bool,
    origins: OriginPolicy,
    addresses: ClientAddress,
    limiter: Option<HandshakeLimiter>,
}

impl Gatekeeper {
    pub fn new(auth: &AuthConfig, limits: &LimitsConfig) -> Result<Arc<Self>, String> {
        let verifier = match auth.mode {
            AuthMode::None => Verifier::None,
            AuthMode::Token => {
                let path = auth
                    .token_file
                    .clone()
                    .ok_or("token authentication needs auth.tokenFile")?;
                let store = TokenStore::new(path);
                if store.is_empty() {
                    tracing::warn!(
                        "token authentication is on but no token is configured yet: every session is refused"
                    );
                }
                Verifier::Token(store)
            }
            AuthMode::Jwt => {
                let jwt = auth.jwt.clone().ok_or("JWT authentication needs auth.jwt")?;
                Verifier::Jwt(Box::new(JwtVerifier::new(jwt)?))
            }
        };
        Ok(Arc::new(Self {
            verifier,
            allow_query_token: auth.allow_query_token,
            origins: OriginPolicy::new(&auth.allowed_origins),
            addresses: ClientAddress::new(&limits.trusted_proxies),
            limiter: HandshakeLimiter::new(limits.handshakes_per_minute),
        }))
    }

    /// Decides whether a handshake may proceed.
    pub async fn admit(&self, peer: IpAddr, headers: &HeaderMap, query: Option<&str>) -> Result<Caller, Refusal> {
        let address = self.addresses.of(peer, headers);
        if let Some(limiter) = &self.limiter {
            limiter
                .check(address)
                .map_err(|retry_after| Refusal::RateLimited { retry_after })?;
        }
        let origin = headers
            .get(http::header::ORIGIN)
            .map(|v| v.to_str().unwrap_or("\u{fffd}"));
        if !self.origins.allows(origin) {
            debug!(origin = origin.unwrap_or_default(), "origin refused");
            return Err(Refusal::Origin);
        }
        let credentials = credentials(headers, query, self.allow_query_token);
        let mut claims = serde_json::Map::new();
        let subject = match &self.verifier {
            Verifier::None => None,
            Verifier::Token(store) => {
                let token = credentials.as_ref().ok_or(Refusal::Unauthenticated)?;
                Some(store.verify(&token.token).ok_or(Refusal::Unauthenticated)?)
            }
            Verifier::Jwt(verifier) => {
                let token = credentials.as_ref().ok_or(Refusal::Unauthenticated)?;
                match verifier.verify(&token.token).await {
                    Ok(verified) => {
                        claims = verified.claims;
                        Some(verified.subject)
                    }
                    Err(error) => {
                        // Logged for the operator (never the token itself), not told to the caller.
                        debug!(%error, "token refused");
                        return Err(Refusal::Unauthenticated);
                    }
                }
            }
        };
        Ok(Caller {
            subject,
            via_subprotocol: credentials.is_some_and(|c| c.via_subprotocol),
            address,
            claims,
        })
    }

    /// Decides whether a carrier's request may proceed: the rate limit only. Carriers prove who
    /// they are with their own signatures (checked by the telephony front door), never with the
    /// agent's tokens, and send no `Origin`.
    pub fn admit_carrier(&self, peer: IpAddr, headers: &HeaderMap) -> Result<Caller, Refusal> {
        let address = self.addresses.of(peer, headers);
        if let Some(limiter) = &self.limiter {
            limiter
                .check(address)
                .map_err(|retry_after| Refusal::RateLimited { retry_after })?;
        }
        Ok(Caller {
            subject: None,
            via_subprotocol: false,
            address,
            claims: serde_json::Map::new(),
        })
    }

    /// Whether `peer` is one of `limits.trustedProxies` (whose `X-Forwarded-*` headers count).
    pub fn is_trusted_proxy(&self, peer: IpAddr) -> bool {
        self.addresses.is_trusted(peer)
    }

    /// Periodic housekeeping: forget idle clients of the rate limiter.
    pub fn tidy(&self) {
        if let Some(limiter) = &self.limiter {
            limiter.forget_idle();
        }
    }
}

struct Credentials {
    token: String,
    via_subprotocol: bool,
}

/// Finds the bearer token in the places a client may put it.
fn credentials(headers: &HeaderMap, query: Option<&str>, allow_query: bool) -> Option<Credentials> {
    if let Some(value) = headers.get(http::header::AUTHORIZATION).and_then(|v| v.to_str().ok())
        && let Some((scheme, token)) = value.trim().split_once(' ')
        && scheme.eq_ignore_ascii_case("bearer")
        && !token.trim().is_empty()
        && token.len() <= MAX_TOKEN_LEN
    {
        return Some(Credentials {
            token: token.trim().to_owned(),
            via_subprotocol: false,
        });
    }
    let offered: Vec<&str> = headers
        .get_all(http::header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    if offered.contains(&BEARER_SUBPROTOCOL)
        && let Some(encoded) = offered
            .iter()
            .find_map(|p| p.strip_prefix(BEARER_SUBPROTOCOL).and_then(|r| r.strip_prefix('.')))
        && encoded.len() <= MAX_TOKEN_LEN
        && let Ok(bytes) = URL_SAFE_NO_PAD.decode(encoded.trim_end_matches('='))
        && let Ok(token) = String::from_utf8(bytes)
    {
        return Some(Credentials {
            token,
            via_subprotocol: true,
        });
    }
    if allow_query
        && let Some(token) = query
            .into_iter()
            .flat_map(|q| q.split('&'))
            .find_map(|pair| pair.strip_prefix("token="))
        && !token.is_empty()
        && token.len() <= MAX_TOKEN_LEN
    {
        let token = percent_decode(token);
        return Some(Credentials {
            token,
            via_subprotocol: false,
        });
    }
    None
}

fn percent_decode(value: &str) -> String {
    fn hex(b: u8) -> Option<u8> {
        (b as char).to_digit(16).map(|d| d as u8)
    }
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                match (
                    bytes.get(i + 1).copied().and_then(hex),
                    bytes.get(i + 2).copied().and_then(hex),
                ) {
                    (Some(high), Some(low)) => {
                        out.push(high * 16 + low);
                        i += 3;
                        continue;
                    }
                    _ => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, v.parse().expect("header"));
        }
        h
    }

    #[test]
    fn reads_bearer_headers() {
        let c = credentials(&headers(&[("authorization", "Bearer abc.def")]), None, false).expect("token");
        assert_eq!(c.token, "abc.def");
        assert!(!c.via_subprotocol);
        assert!(credentials(&headers(&[("authorization", "Basic abc")]), None, false).is_none());
    }

    #[test]
    fn reads_the_browser_subprotocol_pair() {
        let encoded = URL_SAFE_NO_PAD.encode("secret-token");
        let offered = format!("{BEARER_SUBPROTOCOL}.{encoded}, {BEARER_SUBPROTOCOL}");
        let c = credentials(&headers(&[("sec-websocket-protocol", &offered)]), None, false).expect("token");
        assert_eq!(c.token, "secret-token");
        assert!(c.via_subprotocol);
        // Without the bare marker protocol the pair is incomplete.
        let alone = format!("{BEARER_SUBPROTOCOL}.{encoded}");
        assert!(credentials(&headers(&[("sec-websocket-protocol", &alone)]), None, false).is_none());
    }

    #[test]
    fn query_tokens_only_when_enabled() {
        assert!(credentials(&HeaderMap::new(), Some("token=abc"), false).is_none());
        let c = credentials(&HeaderMap::new(), Some("audio_output=binary&token=a%2Bb"), true).expect("token");
        assert_eq!(c.token, "a+b");
    }
}
