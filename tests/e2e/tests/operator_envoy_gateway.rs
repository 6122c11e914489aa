//! Envoy Gateway's policy object against Envoy Gateway's own CRD: for an agent whose callers may
//! stay silent longer than Envoy's 5-minute stream idle timeout, the operator renders a
//! `BackendTrafficPolicy` next to the HTTPRoute (examples/gateway-api.yaml). The apiserver keeps
//! every field (a field the CRD does not know would be pruned, and the operator would rewrite
//! it forever), and the converged agent costs no writes.
//!
//! `cargo test -p voice-e2e --test operator_envoy_gateway -- --ignored`

mod operator_support;

use std::time::Duration;

use operator_support::OperatorEnv;
use serde_json::Value;
use voice_e2e::wait::eventually;
use voice_e2e::{TestCluster, crds};

#[tokio::test]
#[ignore = "needs the local cluster (tests/cluster/up)"]
async fn envoy_gateway_routes_get_a_stream_idle_timeout_the_crd_keeps() {
    let cluster = TestCluster::shared().await;
    crds::install_envoy_gateway_policy_crd(cluster)
        .await
        .expect("Envoy Gateway CRD");
    let env = OperatorEnv::new("op-envoy").await.expect("test namespace");
    let operator = env
        .start_operator(&[("--api-discovery-interval", "2s"), ("--resync", "1s")])
        .await
        .expect("operator starts");
    env.apply_file("examples/gateway-api.yaml").await.expect("example");
    env.wait_ready("lobby")
        .await
        .unwrap_or_else(|e| panic!("{e:#}\n{}", operator.log_tail(40)));
    let policy = eventually("the BackendTrafficPolicy", Duration::from_secs(60), || async {
        let out = env
            .ns
            .kubectl_ok([
                "get",
                "backendtrafficpolicy",
                "lobby",
                "-o",
                "json",
                "--ignore-not-found",
            ])
            .await?;
        Ok((!out.trim().is_empty()).then_some(out))
    })
    .await
    .unwrap_or_else(|e| panic!("{e:#}\n{}", operator.log_tail(60)));
    let policy: Value = serde_json::from_str(&policy).expect("json");
    // idleTimeout 10m + 60 s, targeting the route.
    assert_eq!(policy["spec"]["timeout"]["http"]["streamIdleTimeout"], "660s");
    assert_eq!(policy["spec"]["targetRefs"][0]["kind"], "HTTPRoute");
    assert_eq!(policy["spec"]["targetRefs"][0]["name"], "lobby");

    // Converged: resyncs every second write nothing.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let before = env.operator_writes().await.expect("apiserver metrics");
    tokio::time::sleep(Duration::from_secs(10)).await;
    let after = env.operator_writes().await.expect("apiserver metrics");
    assert_eq!(after, before, "writes in steady state\n{}", operator.log_tail(40));
}
