//! The tool calls of one session: each runs on its own task, concurrently with the
//! conversation and with each other, within the session's concurrency limit and the call
//! timeout. Whatever happens, a result comes back for the model.

use std::sync::Arc;
use std::time::Instant;

use serde_json::Value;
use tokio::task::JoinSet;
use tracing::{Instrument, debug, warn};

use super::settings::SessionSettings;
use crate::tools::{CallSlots, Outcome, ToolOutcome, Toolbox};

/// Calls one session may have pending (running or waiting for a slot). A model asking for
/// more at once is told so immediately instead of queueing without bound.
const MAX_PENDING_CALLS: usize = 32;

pub struct Finished {
    pub id: String,
    pub name: String,
    pub outcome: ToolOutcome,
}

pub struct ToolCalls {
    toolbox: Option<Arc<Toolbox>>,
    /// The caller's metadata, sent with every call as MCP request `_meta`.
    meta: Option<Arc<serde_json::Map<String, Value>>>,
    /// The session's share of each tool server's calls.
    slots: Option<Arc<CallSlots>>,
    /// Made at the first call: most sessions make none, and a set allocates when made.
    running: Option<JoinSet<Finished>>,
}

impl ToolCalls {
    pub fn new(toolbox: Option<Arc<Toolbox>>, settings: &SessionSettings) -> Self {
        let meta = (!settings.metadata.is_empty()).then(|| {
            Arc::new(
                settings
                    .metadata
                    .iter()
                    .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                    .collect(),
            )
        });
        Self {
            slots: toolbox.as_ref().map(|t| Arc::new(t.call_slots())),
            toolbox,
            meta,
            running: None,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.running.as_ref().is_none_or(JoinSet::is_empty)
    }

    pub fn start(&mut self, id: String, name: String, input: Value) {
        debug!(tool = %name, id = %id, "tool call requested");
        let (Some(toolbox), Some(slots)) = (self.toolbox.clone(), self.slots.clone()) else {
            let outcome = ToolOutcome::failure(Outcome::Unknown, "no tools are configured for this agent");
            self.running().spawn(async move { Finished { id, name, outcome } });
            return;
        };
        if self.running.as_ref().map_or(0, JoinSet::len) >= MAX_PENDING_CALLS {
            toolbox.record(&name, Outcome::Rejected, Default::default());
            let outcome = ToolOutcome::failure(Outcome::Rejected, "too many tool calls are already in progress");
            self.running().spawn(async move { Finished { id, name, outcome } });
            return;
        }
        let meta = self.meta.clone();
        let span = tracing::info_span!(
            "tool_call",
            otel.name = %format!("tool {name}"),
            tool = %name,
            outcome = tracing::field::Empty,
        );
        let task_span = span.clone();
        self.running().spawn(
            async move {
                let started = Instant::now();
                // Waiting for a slot counts against the call's time budget.
                let slot = tokio::time::timeout(toolbox.call_timeout(&name), slots.acquire(&toolbox, &name)).await;
                let outcome = match slot {
                    Ok(_slot) => toolbox.call(&name, input, meta.as_deref()).await,
                    _ => {
                        toolbox.record(&name, Outcome::Timeout, started.elapsed());
                        ToolOutcome::failure(
                            Outcome::Timeout,
                            format!("the tool {name} could not start: too many calls were already running"),
                        )
                    }
                };
                span.record("outcome", outcome.outcome.as_str());
                Finished { id, name, outcome }
            }
            .instrument(task_span),
        );
    }

    fn running(&mut self) -> &mut JoinSet<Finished> {
        self.running.get_or_insert_with(JoinSet::new)
    }

    /// The next finished call (`None` at once when none is running).
    pub async fn next(&mut self) -> Option<Finished> {
        loop {
            match self.running.as_mut()?.join_next().await? {
                Ok(finished) => return Some(finished),
                Err(error) => warn!(%error, "a tool call task failed"),
            }
        }
    }
}
