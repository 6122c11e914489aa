//! Keeps the agent's [`Toolbox`] current: one task per tool server lists its tools (and retries
//! it while it is down), and every change is composed into a new toolbox for the sessions that
//! start from then on. The first toolbox is published once every server has answered or failed
//! its first attempt, so sessions never start with tools missing only because they were still
//! loading, and a server that is down does not hold the others back.

use std::sync::Arc;

use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use voice_config::{MAX_TOOL_SERVERS, ToolServerConfig};

use super::server::{self, Connected, Update};
use super::{ServerEntry, Toolbox};
use crate::metrics::{Metrics, ToolServerLabels};

/// Server updates waiting for the loader. Each server task sends one update and then sleeps
/// for at least a second, so one slot per server never makes a task wait long.
const UPDATES_CAPACITY: usize = MAX_TOOL_SERVERS;

/// Loads the tools of `servers` and publishes each new [`Toolbox`] on `tools` until the
/// receivers are gone (or the future is dropped, which stops the server tasks too).
pub async fn load(servers: Vec<ToolServerConfig>, metrics: Arc<Metrics>, tools: watch::Sender<Option<Arc<Toolbox>>>) {
    if servers.is_empty() {
        return;
    }
    let (updates_tx, mut updates) = mpsc::channel(UPDATES_CAPACITY);
    // Dropped with this future: the server tasks end with it.
    let mut tasks = JoinSet::new();
    for (index, config) in servers.iter().cloned().enumerate() {
        tasks.spawn(server::watch(index, config, updates_tx.clone()));
    }
    drop(updates_tx);
    let gauges: Vec<(Gauge, Gauge)> = servers
        .iter()
        .map(|s| {
            let labels = ToolServerLabels { server: s.name.clone() };
            (
                metrics.tool_server_up.get_or_create(&labels).clone(),
                metrics.tool_server_tools.get_or_create(&labels).clone(),
            )
        })
        .collect();
    // `None` until the server's first attempt ended; then its last state.
    let mut states: Vec<Option<Option<Arc<Connected>>>> = vec![None; servers.len()];
    while let Some(Update { index, state }) = updates.recv().await {
        let Some(slot) = states.get_mut(index) else { continue };
        *slot = Some(state.ok());
        if states.iter().any(Option::is_none) {
            continue;
        }
        let entries = servers
            .iter()
            .zip(&states)
            .map(|(config, state)| ServerEntry {
                name: config.name.clone(),
                connected: state.clone().flatten(),
                call_timeout: config.call_timeout,
                max_concurrent_calls: config.max_concurrent_calls as usize,
            })
            .collect();
        let toolbox = Toolbox::compose(entries, metrics.clone());
        for (report, (up, offered)) in toolbox.servers().iter().zip(&gauges) {
            up.set(i64::from(report.reachable));
            offered.set(i64::try_from(report.tools.len()).unwrap_or(i64::MAX));
        }
        if tools.send(Some(Arc::new(toolbox))).is_err() {
            return;
        }
    }
}
