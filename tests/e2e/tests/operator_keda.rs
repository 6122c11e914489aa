//! Autoscaling without a hand-built metrics adapter: `scaling.mode: Keda` renders a KEDA
//! `ScaledObject`, validated by the apiserver against KEDA's own CRD (from its Go module). The
//! operator notices KEDA's CRD installed while it runs (API discovery, no restart): the
//! VoiceAgent waits as `KEDAUnavailable`, then is accepted with its ScaledObject.
//!
//! The only suite that touches KEDA's CRD, which it removes first so that the "not yet
//! installed" state is real even on a cluster where it ran before.
//!
//! `cargo test -p voice-e2e --test operator_keda -- --ignored`

mod operator_support;

use std::time::Duration;

use operator_support::OperatorEnv;
use serde_json::Value;
use voice_e2e::wait::eventually;
use voice_e2e::{TestCluster, crds};

const AGENT: &str = "scaled";

#[tokio::test]
#[ignore = "needs the local cluster (tests/cluster/up)"]
async fn keda_mode_waits_for_keda_then_renders_a_scaled_object_the_crd_accepts() {
    let cluster = TestCluster::shared().await;
    crds::remove_keda_crd(cluster).await.expect("no KEDA CRD");
    let env = OperatorEnv::new("op-keda").await.expect("test namespace");
    let operator = env
        .start_operator(&[("--api-discovery-interval", "2s")])
        .await
        .expect("operator starts");
    env.apply_yaml(&format!(
        r#"apiVersion: voiceagent.dev/v1alpha1
kind: VoiceAgent
metadata: {{name: {AGENT}}}
spec:
  model: {{provider: Simulated}}
  session: {{maxSessionsPerReplica: 20}}
  scaling:
    minReplicas: 1
    maxReplicas: 5
    mode: Keda
    prometheus: {{serverAddress: "http://prometheus.monitoring.svc:9090"}}
"#
    ))
    .await
    .expect("VoiceAgent");
    let waiting = env
        .wait_condition(AGENT, "Accepted", "False", "KEDAUnavailable")
        .await
        .unwrap_or_else(|e| panic!("{e:#}\n{}", operator.log_tail(40)));
    assert!(waiting.message.contains("KEDA"), "{}", waiting.message);

    // Installed while the operator runs: no restart.
    crds::install_keda_crd(cluster).await.expect("KEDA CRD");
    env.wait_condition(AGENT, "Accepted", "True", "Accepted")
        .await
        .unwrap_or_else(|e| panic!("{e:#}\n{}", operator.log_tail(60)));
    let object = eventually("the ScaledObject", Duration::from_secs(60), || async {
        let out = env
            .ns
            .kubectl_ok(["get", "scaledobject", AGENT, "-o", "json", "--ignore-not-found"])
            .await?;
        Ok((!out.trim().is_empty()).then_some(out))
    })
    .await
    .unwrap_or_else(|e| panic!("{e:#}\n{}", operator.log_tail(60)));
    let object: Value = serde_json::from_str(&object).expect("json");
    let spec = &object["spec"];
    // Every field the operator set survived the CRD's structural schema (nothing pruned).
    assert_eq!(spec["scaleTargetRef"]["name"], AGENT);
    assert_eq!(spec["minReplicaCount"], 1);
    assert_eq!(spec["maxReplicaCount"], 5);
    let trigger = &spec["triggers"][0];
    assert_eq!(trigger["type"], "prometheus");
    assert_eq!(trigger["metricType"], "AverageValue");
    assert_eq!(trigger["metadata"]["threshold"], "14", "70% of 20 sessions per replica");
    let query = trigger["metadata"]["query"].as_str().expect("query");
    assert!(
        query.starts_with("sum(voice_agent_sessions_active{") && query.contains(env.name()),
        "{query}"
    );
    let scale_down = &spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]["scaleDown"];
    assert_eq!(scale_down["policies"][0]["value"], 1);
    // KEDA drives the replicas: the operator made no HPA of its own.
    let hpa = env
        .ns
        .kubectl_ok(["get", "hpa", AGENT, "--ignore-not-found", "-o", "name"])
        .await
        .expect("kubectl");
    assert!(hpa.trim().is_empty(), "unexpected HPA: {hpa}");

    // The same spec passes a strict server-side dry run: an unknown field would be an error.
    let copy = serde_json::json!({
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": {"name": "scaled-dry-run"},
        "spec": spec,
    });
    let out = voice_e2e::command::pipe(
        env.ns.kubectl().args([
            "create",
            "--dry-run=server",
            "--validate=strict",
            "-o",
            "name",
            "-f",
            "-",
        ]),
        &copy.to_string(),
    )
    .await
    .expect("KEDA's schema accepts the ScaledObject");
    assert!(out.contains("scaled-dry-run"), "{out}");
}
