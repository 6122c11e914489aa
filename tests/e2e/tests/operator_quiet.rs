//! Steady state costs no writes: with every example converged, the operator keeps reconciling
//! (resync every 2 s, plus the status updates of Deployments and HPAs) without a single write,
//! counted by the apiserver for the operator's identity over more than 30 s.
//!
//! `cargo test -p voice-e2e --test operator_quiet -- --ignored`

mod operator_support;

use std::time::Duration;

use operator_support::OperatorEnv;
use voice_e2e::wait::{WAIT, eventually};

/// The quiet period the issue asks for is at least 30 s.
const QUIET: Duration = Duration::from_secs(35);

#[tokio::test]
#[ignore = "needs the local cluster (tests/cluster/up)"]
async fn an_unchanged_world_costs_no_writes() {
    let env = OperatorEnv::new("op-quiet").await.expect("test namespace");
    let operator = env
        .start_operator(&[("--resync", "2s")])
        .await
        .expect("operator starts");
    for example in [
        "examples/simulated-smoke.yaml",
        "examples/ingress-nginx.yaml",
        "examples/aws-alb.yaml",
        "examples/gateway-api.yaml",
    ] {
        env.apply_file(example).await.expect(example);
    }
    for name in ["voice-smoke", "support", "concierge", "lobby"] {
        env.wait_ready(name)
            .await
            .unwrap_or_else(|e| panic!("{e:#}\n{}", operator.log_tail(40)));
    }
    // The autoscaled examples settle at minReplicas (the HPA's doing, then ours in status).
    for (name, replicas) in [("voice-smoke", 1), ("support", 2), ("concierge", 2), ("lobby", 2)] {
        eventually(&format!("{name} at {replicas} ready replicas"), WAIT, || async {
            let agent = env.agents().get(name).await?;
            let status = agent.status.unwrap_or_default();
            let settled = status.ready_replicas == Some(replicas) && status.replicas == Some(replicas);
            Ok(settled.then_some(()))
        })
        .await
        .unwrap_or_else(|e| panic!("{e:#}\n{}", operator.log_tail(40)));
    }
    tokio::time::sleep(Duration::from_secs(5)).await;

    let writes_before = env.operator_writes().await.expect("apiserver metrics");
    assert!(
        writes_before > 0,
        "the apiserver counted none of the operator's convergence writes: the measurement is broken"
    );
    let reconciles_before = operator
        .metric("voice_operator_reconciles_total")
        .await
        .expect("operator metrics");
    tokio::time::sleep(QUIET).await;
    let writes_after = env.operator_writes().await.expect("apiserver metrics");
    let reconciles_after = operator
        .metric("voice_operator_reconciles_total")
        .await
        .expect("operator metrics");

    let reconciles = reconciles_after - reconciles_before;
    eprintln!(
        "voice-e2e: quiet period of {QUIET:?}: {reconciles} reconciles, {} writes (apiserver count)",
        writes_after - writes_before
    );
    assert!(
        reconciles >= 4.0 * 10.0,
        "expected the four agents to be resynced many times, saw {reconciles} reconciles"
    );
    assert_eq!(
        writes_after,
        writes_before,
        "the operator wrote during the quiet period\n{}",
        operator.log_tail(60)
    );
    assert!(operator.stop().await.expect("stops").success());
}
