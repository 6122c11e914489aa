//! The tools each tool server of a VoiceAgent offers, for `status.discoveredTools` and the
//! `ToolServersReachable` condition. The operator asks the servers itself, as kagent's
//! controller does: an MCP session (`initialize`, `tools/list`) over streamable HTTP, with the
//! server's bearer token read from its Secret at that moment. Servers with SigV4 authentication
//! are not asked: signing needs the agent's AWS identity, which the operator does not have.
//!
//! Asking is rate-limited per server, not per reconcile: a listing is reused for [`REFRESH`]
//! (or, after a failure, until a retry delay that doubles from [`RETRY_FIRST`] up to
//! [`RETRY_MAX`]), and asked again at once only when the server's settings or token change.
//! What is remembered is the listing and a digest of the settings, never a token.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::Client;
use kube::api::Api;
use rmcp::ServiceExt;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use sha2::{Digest, Sha256};
use tokio::time::Instant;

use crate::api::{ToolGatewayAuthType, ToolGatewaySpec};
use crate::reconcile::dereference::hex;
use crate::reconcile::mounts::bearer_token;

/// How long a server's tool list is reused before it is asked again.
pub const REFRESH: Duration = Duration::from_secs(300);
/// Delay before asking a server that failed again: doubles per failure in a row, up to the max.
pub const RETRY_FIRST: Duration = Duration::from_secs(10);
pub const RETRY_MAX: Duration = Duration::from_secs(300);
/// Longest one listing (connect, initialize, list) may take: the reconcile waits for it.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest answer accepted from a server: a tool list, not a data transfer.
const MAX_RESPONSE_BYTES: usize = 4 * 1024 * 1024;

/// One server to ask, as the spec describes it.
#[derive(Clone, Copy, Debug)]
pub struct ServerToList<'a> {
    pub name: &'a str,
    pub spec: &'a ToolGatewaySpec,
    /// Digest of its bearer token (from the dereference step), so a new token is tried at once.
    pub token_digest: Option<&'a str>,
}

/// What the operator knows of one server's tools.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Listing {
    /// The tools it listed, after its `allowedTools`, as it names them.
    Tools(Vec<String>),
    /// It could not be asked or did not answer; why, in words fit for a status (no URL, no
    /// token, no server-supplied text).
    Unreachable(&'static str),
    /// Not asked: SigV4 authentication, which only the agent can perform.
    NotListed,
}

struct Entry {
    fingerprint: String,
    listing: Listing,
    /// When the server is asked again.
    due: Instant,
    failures: u32,
}

/// Listings by (namespace, VoiceAgent, server).
#[derive(Default)]
pub struct ToolDiscovery {
    entries: Mutex<HashMap<(String, String, String), Entry>>,
}

impl ToolDiscovery {
    /// The listing of each server of the VoiceAgent `namespace/agent`, in order, asking (all at
    /// once) those that are due. Servers no longer in the spec are forgotten.
    pub async fn list(
        &self,
        client: &Client,
        namespace: &str,
        agent: &str,
        servers: &[ServerToList<'_>],
    ) -> Vec<(String, Listing)> {
        let now = Instant::now();
        let key = |server: &str| (namespace.to_owned(), agent.to_owned(), server.to_owned());
        let due: Vec<(&ServerToList<'_>, String)> = {
            let Ok(mut entries) = self.entries.lock() else {
                return Vec::new();
            };
            entries.retain(|(ns, a, s), _| ns != namespace || a != agent || servers.iter().any(|t| t.name == s));
            servers
                .iter()
                .map(|s| (s, fingerprint(s)))
                .filter(|(s, fingerprint)| {
                    entries
                        .get(&key(s.name))
                        .is_none_or(|e| e.fingerprint != *fingerprint || e.due <= now)
                })
                .collect()
        };
        let asked = futures::future::join_all(due.into_iter().map(|(server, fingerprint)| async move {
            let listing = list_one(client, namespace, server).await;
            (server.name, fingerprint, listing)
        }))
        .await;
        let Ok(mut entries) = self.entries.lock() else {
            return Vec::new();
        };
        for (name, fingerprint, listing) in asked {
            let failures = match &listing {
                Listing::Unreachable(_) => entries
                    .get(&key(name))
                    .filter(|e| e.fingerprint == fingerprint)
                    .map_or(1, |e| e.failures.saturating_add(1)),
                _ => 0,
            };
            let wait = if failures == 0 { REFRESH } else { retry_delay(failures) };
            if let Listing::Unreachable(reason) = &listing {
                tracing::info!(voiceagent = %agent, %namespace, server = %name, reason, retry_in = ?wait, "tool server unreachable");
            }
            entries.insert(
                key(name),
                Entry {
                    fingerprint,
                    listing,
                    due: Instant::now() + wait,
                    failures,
                },
            );
        }
        servers
            .iter()
            .filter_map(|s| Some((s.name.to_owned(), entries.get(&key(s.name))?.listing.clone())))
            .collect()
    }

    /// How long until a server of `namespace/agent` is due to be asked again.
    pub fn next_due(&self, namespace: &str, agent: &str) -> Option<Duration> {
        let entries = self.entries.lock().ok()?;
        let now = Instant::now();
        entries
            .iter()
            .filter(|((ns, a, _), _)| ns == namespace && a == agent)
            .map(|(_, e)| e.due.saturating_duration_since(now))
            .min()
    }

    /// Forgets a VoiceAgent's servers (it was deleted, or names none any more).
    pub fn forget(&self, namespace: &str, agent: &str) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.retain(|(ns, a, _), _| ns != namespace || a != agent);
        }
    }
}

/// Delay before the next try after `failures` failures in a row.
fn retry_delay(failures: u32) -> Duration {
    RETRY_FIRST
        .saturating_mul(2u32.saturating_pow(failures.saturating_sub(1).min(16)))
        .min(RETRY_MAX)
}

/// Everything that, when it changes, makes the last listing stale.
fn fingerprint(server: &ServerToList<'_>) -> String {
    let mut hasher = Sha256::new();
    hasher.update(serde_json::to_vec(server.spec).unwrap_or_default());
    hasher.update(server.token_digest.unwrap_or("-").as_bytes());
    hex(&hasher.finalize())
}

async fn list_one(client: &Client, namespace: &str, server: &ServerToList<'_>) -> Listing {
    if server.spec.auth.type_ == ToolGatewayAuthType::SigV4 {
        return Listing::NotListed;
    }
    let token = match bearer_token(server.spec) {
        None => None,
        Some(r) => match read_token(client, namespace, &r.name, &r.key).await {
            Some(token) => Some(token),
            None => return Listing::Unreachable("its bearer token cannot be read"),
        },
    };
    match tokio::time::timeout(ATTEMPT_TIMEOUT, ask(&server.spec.url, token)).await {
        Ok(Ok(mut tools)) => {
            tools.retain(|t| voice_config::tool_allowed(&server.spec.allowed_tools, t));
            Listing::Tools(tools)
        }
        Ok(Err(reason)) => Listing::Unreachable(reason),
        Err(_) => Listing::Unreachable("no answer within 10s"),
    }
}

/// The token in `key` of Secret `name`, trimmed as the agent trims it.
async fn read_token(client: &Client, namespace: &str, name: &str, key: &str) -> Option<String> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let secret = secrets.get_opt(name).await.ok()??;
    let value = secret.data?.remove(key)?;
    String::from_utf8(value.0).ok().map(|t| t.trim().to_owned())
}

/// Opens an MCP session, lists every tool, closes the session. Errors are reduced to a fixed
/// phrase: the underlying messages may carry the URL (which may hold a key) or server text.
async fn ask(url: &str, token: Option<String>) -> Result<Vec<String>, &'static str> {
    let http = reqwest::Client::builder()
        .connect_timeout(ATTEMPT_TIMEOUT)
        .build()
        .map_err(|_| "cannot build an HTTP client")?;
    let mut config = StreamableHttpClientTransportConfig::with_uri(url);
    config.max_json_response_size = MAX_RESPONSE_BYTES;
    config.max_sse_event_size = MAX_RESPONSE_BYTES;
    if let Some(token) = token {
        config = config.auth_header(token);
    }
    let transport = StreamableHttpClientTransport::with_client(http, config);
    let service = ().serve(transport).await.map_err(|e| {
        let text = e.to_string();
        if text.contains("401") || text.contains("403") || text.to_ascii_lowercase().contains("unauthorized") {
            "it refused the credentials"
        } else {
            "cannot connect and open an MCP session"
        }
    })?;
    let tools = service.list_all_tools().await.map_err(|_| "tools/list failed");
    let _ = service.cancel().await;
    Ok(tools?.into_iter().map(|t| t.name.into_owned()).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_up_to_the_refresh_interval() {
        assert_eq!(retry_delay(1), Duration::from_secs(10));
        assert_eq!(retry_delay(2), Duration::from_secs(20));
        assert_eq!(retry_delay(5), Duration::from_secs(160));
        assert_eq!(retry_delay(6), RETRY_MAX);
        assert_eq!(retry_delay(u32::MAX), RETRY_MAX);
    }

    #[test]
    fn a_new_token_or_setting_makes_the_listing_stale() {
        let spec: ToolGatewaySpec =
            serde_json::from_value(serde_json::json!({"url": "https://a.example.com/mcp"})).expect("spec");
        let server = |digest| ServerToList {
            name: "a",
            spec: &spec,
            token_digest: digest,
        };
        assert_eq!(fingerprint(&server(Some("d1"))), fingerprint(&server(Some("d1"))));
        assert_ne!(fingerprint(&server(Some("d1"))), fingerprint(&server(Some("d2"))));
        let mut other = spec.clone();
        other.allowed_tools = vec!["x".into()];
        let changed = ServerToList {
            spec: &other,
            ..server(Some("d1"))
        };
        assert_ne!(fingerprint(&changed), fingerprint(&server(Some("d1"))));
    }
}
