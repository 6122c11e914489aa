//! The operator's telemetry on the local control plane: right after start its `/metrics` shows
//! every known series at zero; with `OTEL_EXPORTER_OTLP_ENDPOINT` set it exports one trace per
//! reconcile (a `reconcile` span with the VoiceAgent, the outcome and the requeue, and a child
//! span per pipeline step and per applied child) to an OTLP/HTTP receiver in this test, its log
//! lines carry the trace id, and no span says anything about the Secret it read.
//!
//! `cargo test -p voice-e2e --test operator_traces -- --ignored`

mod operator_support;
#[path = "../../support/otlp.rs"]
mod otlp;
use opentelemetry_proto::tonic::trace::v1::Span;
use operator_support::OperatorEnv;
use otlp::{attribute, hex, otlp_receiver, text};
use voice_operator::api::ACCEPTED;

const SECRET_VALUE: &str = "s3cr3t-prompt-never-in-a-span";
const AGENT: &str = "helpdesk";
const POD_NAME: &str = "voice-operator-e2e-traced";
/// The traced operator's resync: what an accepted reconcile's `requeue_after_s` must say.
const RESYNC_SECS: u64 = 600;

fn agent_yaml() -> String {
    format!(
        r#"apiVersion: voiceagent.dev/v1alpha1
kind: VoiceAgent
metadata: {{name: {AGENT}}}
spec:
  prompt: {{systemFrom: {{secretKeyRef: {{name: prompts, key: {AGENT}}}}}}}
  replicas: 1
  expose: {{ingress: {{className: nginx, host: helpdesk.example.com}}}}
"#
    )
}

fn secret_yaml() -> String {
    format!("apiVersion: v1\nkind: Secret\nmetadata: {{name: prompts}}\nstringData: {{{AGENT}: {SECRET_VALUE:?}}}\n")
}

#[tokio::test]
#[ignore = "needs the local cluster (tests/cluster/up)"]
async fn a_reconcile_is_one_trace_and_metrics_start_at_zero() {
    let env = OperatorEnv::new("op-traces").await.expect("test namespace");

    // 1. The suites' operator, without traces, before any VoiceAgent exists.
    let plain = env.start_operator(&[]).await.expect("operator starts");
    let (status, metrics) = plain.get("/metrics").await.expect("metrics");
    assert_eq!(status, 200);
    for series in [
        "voice_operator_reconciles_total 0",
        r#"voice_operator_reconcile_failures_total{reason="forbidden"} 0"#,
        r#"voice_operator_reconcile_failures_total{reason="transport"} 0"#,
        r#"voice_operator_rejections_total{reason="ReferenceNotFound"} 0"#,
        r#"voice_operator_rejections_total{reason="InvalidSpec"} 0"#,
        r#"voice_operator_writes_total{kind="Deployment",verb="apply"} 0"#,
        r#"voice_operator_writes_total{kind="Ingress",verb="delete"} 0"#,
        r#"voice_operator_writes_total{kind="VoiceAgent/status",verb="apply"} 0"#,
        r#"voice_operator_writes_total{kind="Event",verb="create"} 0"#,
    ] {
        assert!(
            metrics.contains(series),
            "{series} missing right after start:\n{metrics}"
        );
    }
    assert!(plain.stop().await.expect("stops").success());

    // 2. Traced: a rejected reconcile (the Secret is missing), then accepted ones.
    let (endpoint, received) = otlp_receiver().await;
    let resync = format!("{RESYNC_SECS}s");
    let operator = env
        .start_operator_with_env(
            &[("--resync", &resync)],
            &[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
                ("OTEL_BSP_SCHEDULE_DELAY", "200"),
                ("POD_NAMESPACE", env.name()),
                ("POD_NAME", POD_NAME),
            ],
        )
        .await
        .expect("traced operator starts");
    env.apply_yaml(&agent_yaml()).await.expect("apply");
    env.wait_condition(AGENT, ACCEPTED, "False", "ReferenceNotFound")
        .await
        .unwrap_or_else(|e| panic!("{e:#}\n{}", operator.log_tail(40)));
    env.apply_yaml(&secret_yaml()).await.expect("secret");
    env.wait_ready(AGENT)
        .await
        .unwrap_or_else(|e| panic!("{e:#}\n{}", operator.log_tail(40)));
    // The log goes with the operator's value once it has stopped: keep it for the checks below.
    let logs = std::fs::read_to_string(&operator.log).expect("log");
    let tail = operator.log_tail(40);
    let status = operator.stop().await.expect("stops");
    assert!(status.success(), "{status}\n{tail}");

    let received = received.lock().expect("store");
    let spans = &received.spans;
    let names = || spans.iter().map(|s| s.name.as_str()).collect::<Vec<_>>();
    for (key, value) in [
        ("service.name", "voice-operator"),
        ("k8s.namespace.name", env.name()),
        ("k8s.pod.name", POD_NAME),
    ] {
        assert_eq!(
            received.resource.get(key).map(String::as_str),
            Some(value),
            "resource {key}"
        );
    }
    let children = |parent: &Span| {
        spans
            .iter()
            .filter(|s| s.parent_span_id == parent.span_id)
            .collect::<Vec<_>>()
    };
    let child = |parent: &Span, name: &str| {
        let found = children(parent).into_iter().find(|s| s.name == name);
        found.unwrap_or_else(|| panic!("no {name} span under {}; spans: {:?}", parent.name, names()))
    };
    let reconciles = spans
        .iter()
        .filter(|s| s.name == "reconcile" && attribute(s, "voiceagent.name").as_deref() == Some(AGENT))
        .collect::<Vec<_>>();
    for reconcile in &reconciles {
        assert_eq!(
            attribute(reconcile, "voiceagent.namespace").as_deref(),
            Some(env.name())
        );
    }

    // The Secret is missing: rejected, waiting for a change rather than a timer.
    let rejected = reconciles
        .iter()
        .find(|s| attribute(s, "outcome").as_deref() == Some("rejected"))
        .unwrap_or_else(|| panic!("no rejected reconcile; spans: {:?}", names()));
    assert_eq!(attribute(rejected, "reason").as_deref(), Some("ReferenceNotFound"));
    assert_eq!(attribute(rejected, "requeue_after_s"), None);
    let validate = child(rejected, "validate");
    assert_eq!(attribute(validate, "accepted").as_deref(), Some("false"));
    assert_eq!(attribute(validate, "reason").as_deref(), Some("ReferenceNotFound"));

    // The Secret exists: the reconcile that creates the children, every step a child span of
    // it, every child kind a span inside `apply`, all in one trace.
    let creating = reconciles
        .iter()
        .find(|r| {
            attribute(r, "outcome").as_deref() == Some("accepted")
                && children(r)
                    .iter()
                    .any(|s| s.name == "apply" && attribute(s, "changes").is_some_and(|n| n != "0"))
        })
        .unwrap_or_else(|| panic!("no accepted reconcile that applied children; spans: {:?}", names()));
    assert_eq!(
        attribute(creating, "requeue_after_s").as_deref(),
        Some(RESYNC_SECS.to_string().as_str())
    );
    assert_eq!(attribute(creating, "error.kind"), None);
    for step in ["dereference", "validate", "build", "apply", "status"] {
        assert_eq!(
            child(creating, step).trace_id,
            creating.trace_id,
            "{step} in another trace"
        );
    }
    assert_eq!(
        attribute(child(creating, "validate"), "accepted").as_deref(),
        Some("true")
    );
    assert_eq!(attribute(child(creating, "status"), "written").as_deref(), Some("true"));
    let apply = child(creating, "apply");
    for kind in ["ConfigMap", "Service", "Deployment"] {
        let applied = child(apply, &format!("apply {kind}"));
        assert_eq!(attribute(applied, "kind").as_deref(), Some(kind));
        assert_eq!(applied.trace_id, creating.trace_id);
    }
    let ingress = child(apply, "optional Ingress");
    assert_eq!(attribute(ingress, "wanted").as_deref(), Some("true"));
    assert_eq!(child(ingress, "apply Ingress").trace_id, creating.trace_id);
    assert_eq!(
        attribute(child(apply, "optional HorizontalPodAutoscaler"), "wanted").as_deref(),
        Some("false")
    );

    // Nothing about the Secret's content, anywhere.
    for span in spans.iter() {
        let events = span.events.iter().flat_map(|e| &e.attributes);
        for kv in span.attributes.iter().chain(events) {
            assert!(
                !text(kv).contains(SECRET_VALUE),
                "the Secret's value in {}.{}",
                span.name,
                kv.key
            );
        }
    }
    assert!(!logs.contains(SECRET_VALUE), "the Secret's value in the log");
    let trace_id = hex(&creating.trace_id);
    assert!(
        logs.lines().any(|l| l.contains(&trace_id) && l.contains("applied")),
        "no log line of the reconcile carries its trace id {trace_id}\n{tail}"
    );
}
