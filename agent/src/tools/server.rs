//! One tool server over time: connect, list its tools, and keep the list current. A server that
//! cannot be reached is retried with a growing delay; its state is sent to the loader, which
//! composes every server's tools into the [`super::Toolbox`] sessions use.

use std::sync::Arc;
use std::time::Duration;

use rmcp::model::Tool;
use tokio::sync::mpsc;
use tracing::{info, warn};
use voice_config::ToolServerConfig;

use super::auth::Authenticator;
use super::mcp::McpClient;
use super::{ToolError, names};

/// How often a reachable server's tool list is read again, to pick up added or removed tools.
pub(super) const REFRESH: Duration = Duration::from_secs(300);
/// Retry delays while a server cannot be reached: from one second, doubling, up to 30.
const RETRY_FIRST: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(30);
/// Longest one attempt (connect, initialize, list) may take: a server that accepts connections
/// but never answers must not keep the agent waiting for its first tool list.
pub(super) const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);

/// A server whose tools are listed: the connection calls go through, and what it offers.
pub(super) struct Connected {
    pub client: McpClient,
    /// The tools the allow-list lets through, as the server names them.
    pub tools: Vec<Tool>,
}

/// What the loader hears about one server.
pub(super) struct Update {
    /// The server's position in the configuration.
    pub index: usize,
    pub state: Result<Arc<Connected>, ToolError>,
}

/// Lists the server's tools, retrying until it answers, then refreshes them every
/// [`REFRESH`]. Returns when the loader stops listening.
pub(super) async fn watch(index: usize, config: ToolServerConfig, updates: mpsc::Sender<Update>) {
    let mut retry = RETRY_FIRST;
    loop {
        let state = match tokio::time::timeout(ATTEMPT_TIMEOUT, connect(&config)).await {
            Ok(result) => result,
            Err(_) => Err(ToolError::Timeout(ATTEMPT_TIMEOUT)),
        };
        let wait = match &state {
            Ok(_) => {
                retry = RETRY_FIRST;
                REFRESH
            }
            Err(error) => {
                warn!(server = %config.name, %error, retry_in = %humantime::format_duration(retry), "cannot load tools from the tool server");
                let wait = retry;
                retry = (retry * 2).min(RETRY_MAX);
                wait
            }
        };
        if updates.send(Update { index, state }).await.is_err() {
            return;
        }
        tokio::time::sleep(wait).await;
    }
}

async fn connect(config: &ToolServerConfig) -> Result<Arc<Connected>, ToolError> {
    let auth = Arc::new(Authenticator::new(&config.auth).await?);
    let client = McpClient::connect(&config.url, auth).await?;
    let listed = client.list_tools().await?;
    for wanted in &config.allowed_tools {
        if !listed
            .iter()
            .any(|t| names::allowed(std::slice::from_ref(wanted), &t.name))
        {
            warn!(server = %config.name, tool = %wanted, "allowed tool not offered by the tool server");
        }
    }
    let listed_count = listed.len();
    let tools: Vec<Tool> = listed
        .into_iter()
        .filter(|t| names::allowed(&config.allowed_tools, &t.name))
        .collect();
    info!(
        server = %config.name,
        url = %config.url,
        listed = listed_count,
        allowed = tools.len(),
        "tools listed by the tool server"
    );
    Ok(Arc::new(Connected { client, tools }))
}
