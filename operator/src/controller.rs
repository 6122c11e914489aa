//! The controller: what is watched, and the driver that runs the reconcile pipeline for one
//! VoiceAgent. Which steps touch the API: dereference (reads), apply (compares with the watch
//! caches; reads only what the cache cannot vouch for, and writes only what differs), status
//! (writes only when it changed); validate and build are pure.
//!
//! Tracing: every reconcile is a `reconcile` span (the VoiceAgent's name and namespace, the
//! outcome, the requeue, the error kind of a failure; never spec contents or Secret data) with a
//! child span per step, and per child kind inside `apply`. Log lines inside carry its
//! `trace_id`. The span is a child of kube-runtime's `reconciling object` span (the object and
//! why it was queued), so one trace covers one reconcile.

mod watches;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::Api;
use kube::core::error_boundary::{DeserializeGuard, InvalidObject};
use kube::runtime::controller::{Action, Config as ControllerConfig, Controller};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use tracing::field::Empty;
use tracing::{Instrument as _, Span};

use crate::api::{ConditionStatus, VoiceAgent, VoiceAgentStatus};
use crate::error::{Error, Result};
use crate::metrics::{FailureLabels, Metrics, RejectionLabels};
use crate::reconcile::apply::{self, Applied, ChangeKind, Target};
use crate::reconcile::build::selector_string;
use crate::reconcile::children::{ChildCaches, Children};
use crate::reconcile::dereference::Dereferenced;
use crate::reconcile::mounts::bearer_token;
use crate::reconcile::references::SourceKind;
use crate::reconcile::status::{self, Observation};
use crate::reconcile::{RejectReason, Rejection, Settings, dereference, events, validate};
use crate::telemetry::{self, step, step_span};
use crate::tool_discovery::{Listing, ServerToList, ToolDiscovery};

/// Retry after children that belong to someone else: their deletion is not watched.
const CONFLICT_RETRY: Duration = Duration::from_secs(30);
/// Back-off after a failed reconcile: doubles per consecutive failure, up to the maximum.
const MIN_ERROR_RETRY: Duration = Duration::from_secs(1);
const MAX_ERROR_RETRY: Duration = Duration::from_secs(300);
/// Reconciles running at once, across VoiceAgents (one object is never reconciled twice at
/// once). Each is a few short API calls; this bounds the burst on the apiserver at start.
const CONCURRENCY: u16 = 8;

/// Where the operator looks for VoiceAgents.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scope {
    Cluster,
    Namespace(String),
}

impl Scope {
    pub(crate) fn api<K>(&self, client: &Client) -> Api<K>
    where
        K: kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>,
    {
        match self {
            Scope::Cluster => Api::all(client.clone()),
            Scope::Namespace(ns) => Api::namespaced(client.clone(), ns),
        }
    }
}

/// What every reconcile shares.
pub struct Context {
    pub client: Client,
    pub settings: Settings,
    pub metrics: Arc<Metrics>,
    pub recorder: Recorder,
    /// How often an unchanged VoiceAgent is looked at again (reads of its references only,
    /// unless something drifted).
    pub resync: Duration,
    /// Consecutive failures per VoiceAgent uid, for the back-off.
    failures: Mutex<HashMap<String, u32>>,
    /// Generation of each undecodable VoiceAgent (by uid) already reported in its status.
    reported_undecodable: Mutex<HashMap<String, Option<i64>>>,
    /// The tools each VoiceAgent's tool servers offered, asked at most once per refresh.
    tools: ToolDiscovery,
}

impl Context {
    pub fn new(
        client: Client,
        settings: Settings,
        metrics: Arc<Metrics>,
        reporter: Reporter,
        resync: Duration,
    ) -> Self {
        Self {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            settings,
            metrics,
            resync,
            failures: Mutex::default(),
            reported_undecodable: Mutex::default(),
            tools: ToolDiscovery::default(),
        }
    }

    /// Failures of the VoiceAgent with `uid` in a row, up to now.
    fn consecutive_failures(&self, uid: &str) -> u32 {
        self.failures
            .lock()
            .map(|f| f.get(uid).copied().unwrap_or(0))
            .unwrap_or(0)
    }
}

/// Runs the controller until `shutdown` completes, then waits for running reconciles.
pub async fn run(ctx: Arc<Context>, scope: Scope, shutdown: impl Future<Output = ()> + Send + Sync + 'static) {
    let client = ctx.client.clone();
    let agents: Api<DeserializeGuard<VoiceAgent>> = scope.api(&client);
    // Status changes (our own writes included) trigger a reconcile too; it is read-only when
    // nothing changed.
    let controller = Controller::new(agents, watcher::Config::default().any_semantic())
        .with_config(ControllerConfig::default().concurrency(CONCURRENCY));
    let (controller, caches) = watches::add(controller, &client, &scope, &ctx.settings);
    let caches = Arc::new(caches);
    let reconcile = move |guard, ctx| {
        let caches = caches.clone();
        async move { reconcile(guard, ctx, &caches).await }
    };
    controller
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            match result {
                Ok((object, _)) => tracing::debug!(%object, "reconciled"),
                Err(err) => tracing::debug!(error = %err, "reconcile ended with an error"),
            }
        })
        .await;
}

async fn reconcile(
    guard: Arc<DeserializeGuard<VoiceAgent>>,
    ctx: Arc<Context>,
    caches: &ChildCaches,
) -> Result<Action> {
    let _timer = ctx.metrics.reconcile_started();
    let (name, namespace) = match &guard.0 {
        Ok(a) => (a.name_any(), a.namespace().unwrap_or_default()),
        Err(e) => (
            e.metadata.name.clone().unwrap_or_default(),
            e.metadata.namespace.clone().unwrap_or_default(),
        ),
    };
    let span = tracing::info_span!(
        "reconcile",
        voiceagent.name = %name,
        voiceagent.namespace = %namespace,
        trace_id = Empty,
        outcome = Empty,
        reason = Empty,
        requeue_after_s = Empty,
        error.kind = Empty,
        otel.status_code = Empty,
    );
    telemetry::record_trace_id(&span);
    let result = async {
        match &guard.0 {
            Ok(agent) => reconcile_agent(agent, &ctx, caches).await,
            Err(invalid) => report_undecodable(invalid, &ctx).await,
        }
    }
    .instrument(span.clone())
    .await;
    let uid = uid_of(&guard);
    match &result {
        Ok(_) => {
            if let Some(uid) = uid
                && let Ok(mut failures) = ctx.failures.lock()
            {
                failures.remove(&uid);
            }
        }
        Err(err) => {
            // The error policy decides the retry after this span ends; it counts this failure.
            let attempts = uid.map_or(0, |uid| ctx.consecutive_failures(&uid)).saturating_add(1);
            span.record("outcome", "failed");
            span.record("error.kind", err.metric_label());
            span.record("otel.status_code", "error");
            span.record("requeue_after_s", retry_delay(attempts).as_secs());
        }
    }
    result
}

fn error_policy(guard: Arc<DeserializeGuard<VoiceAgent>>, err: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics
        .failures
        .get_or_create(&FailureLabels {
            reason: err.metric_label(),
        })
        .inc();
    let attempts = uid_of(&guard)
        .and_then(|uid| {
            let mut failures = ctx.failures.lock().ok()?;
            let n = failures.entry(uid).or_default();
            *n = n.saturating_add(1);
            Some(*n)
        })
        .unwrap_or(1);
    let delay = retry_delay(attempts);
    let name = match &guard.0 {
        Ok(a) => a.name_any(),
        Err(e) => e.metadata.name.clone().unwrap_or_default(),
    };
    // Runs in kube-runtime's span of the reconcile, in the same trace as the `reconcile` span.
    let trace_id = voice_telemetry::trace_id(&Span::current()).map(tracing::field::display);
    tracing::warn!(voiceagent = %name, error = %err, retry_in = ?delay, trace_id, "reconcile failed");
    Action::requeue(delay)
}

/// Back-off before retrying after the `attempts`-th consecutive failure.
fn retry_delay(attempts: u32) -> Duration {
    MIN_ERROR_RETRY
        .saturating_mul(2u32.saturating_pow(attempts.saturating_sub(1).min(16)))
        .min(MAX_ERROR_RETRY)
}

fn uid_of(guard: &DeserializeGuard<VoiceAgent>) -> Option<String> {
    match &guard.0 {
        Ok(a) => a.uid(),
        Err(e) => e.metadata.uid.clone(),
    }
}

/// The pipeline for one decodable VoiceAgent.
async fn reconcile_agent(agent: &VoiceAgent, ctx: &Context, caches: &ChildCaches) -> Result<Action> {
    let name = agent.name_any();
    let namespace = agent.namespace().ok_or(Error::NotNamespaced)?;
    if agent.metadata.deletion_timestamp.is_some() {
        ctx.tools.forget(&namespace, &name);
        // Owner references make the garbage collector delete every child.
        return Ok(outcome("deleting", None));
    }
    let uid = agent.uid().unwrap_or_default();
    tracing::debug!(voiceagent = %name, %namespace, "reconciling");

    let dereferenced = step(step_span!("dereference"), dereference::dereference(&ctx.client, agent)).await?;
    let validation = {
        let span = step_span!("validate", accepted = Empty, reason = Empty);
        let validation = span.in_scope(|| validate::validate(agent, &dereferenced, &ctx.settings));
        span.record("accepted", validation.is_ok());
        if let Err(rejection) = &validation {
            span.record("reason", rejection.reason.as_str());
            Span::current().record("reason", rejection.reason.as_str());
        }
        validation
    };
    let target = Target {
        namespace: &namespace,
        name: &name,
        owner_uid: &uid,
    };
    let (applied, verdict) = match validation {
        Ok(validated) => {
            let children = step_span!("build").in_scope(|| Children::build(&validated));
            let span = step_span!("apply", changes = Empty, conflicts = Empty);
            let applied = step(
                span.clone(),
                apply::apply(&ctx.client, caches, target, children, &ctx.settings),
            )
            .await?;
            span.record("changes", applied.changes.len());
            span.record("conflicts", applied.conflicts.len());
            drop(span);
            (applied, Ok((validated.url, validated.webhooks)))
        }
        Err(rejection) => {
            ctx.metrics
                .rejections
                .get_or_create(&RejectionLabels {
                    reason: rejection.reason.as_str(),
                })
                .inc();
            tracing::info!(voiceagent = %name, reason = rejection.reason.as_str(), message = %rejection.message, "not accepted");
            // Nothing is applied; the last accepted workload (if any) keeps running.
            let read = apply::read_owned::<Deployment>(&ctx.client, caches, &target, &name);
            let deployment = step(step_span!("read Deployment"), read).await?;
            (Applied::with_live(deployment), Err(rejection))
        }
    };
    for change in &applied.changes {
        let verb = match change.kind {
            ChangeKind::Created | ChangeKind::Updated => "apply",
            ChangeKind::Deleted => "delete",
        };
        ctx.metrics.record_write(&change.object_kind, verb);
    }
    // Reported before the status write, which may fail: the changes are made either way.
    if let Some(event) = events::changes_event(&applied.changes) {
        publish(ctx, agent, event).await;
    }

    // A rejected spec's servers are not asked: the status keeps what it showed.
    let listings = match &verdict {
        Ok(_) => Some(list_tools(ctx, agent, &namespace, &name, &dereferenced).await),
        Err(_) => None,
    };
    let observation = Observation {
        generation: agent.metadata.generation,
        accepted: verdict.as_ref().map(|_| ()),
        deployment: applied.live::<Deployment>(),
        conflicts: &applied.conflicts,
        url: verdict.as_ref().ok().map(|(url, _)| url.clone()),
        webhooks: verdict.as_ref().ok().map(|(_, webhooks)| webhooks.clone()),
        selector: selector_string(&name),
        tool_servers: listings.as_deref(),
    };
    let previous = agent.status.as_ref();
    let next = status::desired_status(previous, &observation, &now());
    let api: Api<VoiceAgent> = Api::namespaced(ctx.client.clone(), &namespace);
    let span = step_span!("status", written = Empty);
    let written = step(span.clone(), status::write_status(&api, &name, previous, &next)).await?;
    span.record("written", written);
    drop(span);
    if written {
        tracing::info!(voiceagent = %name, ready = ?next.ready_replicas, replicas = ?next.replicas, "status updated");
        ctx.metrics.record_write("VoiceAgent/status", "apply");
        for transition in status::transitions(previous, &next) {
            publish(ctx, agent, events::transition_event(&transition)).await;
        }
    }

    Ok(match verdict {
        // A rejected spec waits for a change of itself or of what it references (both
        // watched), never for a timer.
        Err(_) => outcome("rejected", None),
        Ok(_) if !applied.conflicts.is_empty() => outcome("conflict", Some(CONFLICT_RETRY)),
        // Back when the next tool listing is due, if that comes before the resync.
        Ok(_) => {
            let tools_due = ctx.tools.next_due(&namespace, &name).unwrap_or(ctx.resync);
            outcome("accepted", Some(ctx.resync.min(tools_due.max(MIN_TOOLS_REQUEUE))))
        }
    })
}

/// Shortest wait before the next look for a tool listing that is due (a due listing is taken
/// by this reconcile; the floor keeps clock skew between the two from spinning).
const MIN_TOOLS_REQUEUE: Duration = Duration::from_secs(1);

/// The listing of each tool server of the spec (`gateway` is the server named `gateway`).
async fn list_tools(
    ctx: &Context,
    agent: &VoiceAgent,
    namespace: &str,
    name: &str,
    dereferenced: &Dereferenced,
) -> Vec<(String, Listing)> {
    let spec = &agent.spec;
    let named = spec
        .gateway
        .iter()
        .map(|g| (voice_config::GATEWAY_SERVER_NAME, g))
        .chain(spec.tool_servers.iter().map(|s| (s.name.as_str(), &s.server)));
    let servers: Vec<ServerToList<'_>> = named
        .map(|(server_name, server)| ServerToList {
            name: server_name,
            spec: server,
            token_digest: bearer_token(server).and_then(|r| {
                dereferenced
                    .references
                    .iter()
                    .find(|d| {
                        d.reference.kind == SourceKind::Secret
                            && d.reference.name == r.name
                            && d.reference.key.as_deref() == Some(r.key.as_str())
                    })
                    .and_then(|d| d.digest.as_deref())
            }),
        })
        .collect();
    if servers.is_empty() {
        ctx.tools.forget(namespace, name);
        return Vec::new();
    }
    let span = step_span!("list tools", servers = servers.len());
    ctx.tools
        .list(&ctx.client, namespace, name, &servers)
        .instrument(span)
        .await
}

/// How the reconcile ended, recorded on its span (the current one): `outcome`, and the delay
/// before the next look when there is one (otherwise it waits for a change).
fn outcome(label: &'static str, requeue: Option<Duration>) -> Action {
    let span = Span::current();
    span.record("outcome", label);
    match requeue {
        Some(after) => {
            span.record("requeue_after_s", after.as_secs());
            Action::requeue(after)
        }
        None => Action::await_change(),
    }
}

#[tracing::instrument(name = "event", skip_all, fields(reason = %event.reason))]
async fn publish(ctx: &Context, agent: &VoiceAgent, event: kube::runtime::events::Event) {
    if events::publish(&ctx.recorder, agent, event).await {
        ctx.metrics.record_write("Event", "create");
    }
}

/// A stored VoiceAgent the current types cannot decode (e.g. written before a schema change):
/// say so in its status once per generation, and wait for it to be fixed.
async fn report_undecodable(invalid: &InvalidObject, ctx: &Context) -> Result<Action> {
    let meta = &invalid.metadata;
    let (Some(name), Some(namespace), Some(uid)) = (&meta.name, &meta.namespace, &meta.uid) else {
        return Ok(outcome("undecodable", None));
    };
    let already = ctx
        .reported_undecodable
        .lock()
        .map(|r| r.get(uid) == Some(&meta.generation))
        .unwrap_or(false);
    if already {
        return Ok(outcome("undecodable", None));
    }
    tracing::warn!(voiceagent = %name, %namespace, error = %invalid.error, "cannot decode VoiceAgent");
    let rejection = Rejection {
        reason: RejectReason::Undecodable,
        message: format!("cannot decode the spec: {}", invalid.error),
    };
    let observation = Observation {
        generation: meta.generation,
        accepted: Err(&rejection),
        deployment: None,
        conflicts: &[],
        url: None,
        webhooks: None,
        selector: selector_string(name),
        tool_servers: None,
    };
    let mut next: VoiceAgentStatus = status::desired_status(None, &observation, &now());
    // Nothing was read about the workload: leave counts out rather than claim zero.
    next.replicas = None;
    next.ready_replicas = None;
    let api: Api<VoiceAgent> = Api::namespaced(ctx.client.clone(), namespace);
    step(
        step_span!("status", written = true),
        status::write_status_unchecked(&api, name, &next),
    )
    .await?;
    ctx.metrics.record_write("VoiceAgent/status", "apply");
    let reference = k8s_openapi::api::core::v1::ObjectReference {
        api_version: Some(crate::api::api_version()),
        kind: Some("VoiceAgent".into()),
        name: Some(name.clone()),
        namespace: Some(namespace.clone()),
        uid: Some(uid.clone()),
        ..Default::default()
    };
    let transition = status::Transition {
        type_: crate::api::ACCEPTED.into(),
        status: ConditionStatus::False.as_str().into(),
        reason: rejection.reason.as_str().into(),
        message: rejection.message.clone(),
    };
    events::publish_about(&ctx.recorder, &reference, meta, events::transition_event(&transition)).await;
    if let Ok(mut reported) = ctx.reported_undecodable.lock() {
        reported.insert(uid.clone(), meta.generation);
    }
    Ok(outcome("undecodable", None))
}

fn now() -> Time {
    Time(k8s_openapi::jiff::Timestamp::now())
}
