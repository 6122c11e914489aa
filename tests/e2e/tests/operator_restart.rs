//! The operator is stopped mid-way, by a crash and by SIGTERM; a new process takes the Lease
//! over and converges on what changed meanwhile.
//!
//! `cargo test -p voice-e2e --test operator_restart -- --ignored`

mod operator_support;

use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::networking::v1::Ingress;
use kube::api::Api;
use operator_support::OperatorEnv;
use voice_e2e::wait::{WAIT, eventually};

const LEASE_DURATION: &str = "8s";

fn agent(replicas: i32, host: &str) -> String {
    format!(
        r#"apiVersion: voiceagent.dev/v1alpha1
kind: VoiceAgent
metadata: {{name: relay}}
spec:
  replicas: {replicas}
  prompt: {{system: You relay messages.}}
  expose: {{ingress: {{className: nginx, host: {host}}}}}
"#
    )
}

async fn holder(leases: &Api<Lease>) -> Option<String> {
    leases
        .get_opt("voice-operator")
        .await
        .ok()
        .flatten()
        .and_then(|l| l.spec)
        .and_then(|s| s.holder_identity)
}

#[tokio::test]
#[ignore = "needs the local cluster (tests/cluster/up)"]
async fn a_new_operator_takes_over_and_converges() {
    let env = OperatorEnv::new("op-restart").await.expect("test namespace");
    let leases: Api<Lease> = env.ns.api();
    let deployments: Api<Deployment> = env.ns.api();
    let ingresses: Api<Ingress> = env.ns.api();

    // A crash in the middle of the first reconcile.
    let first = env
        .start_operator(&[("--lease-duration", LEASE_DURATION)])
        .await
        .expect("first operator");
    eventually("the first operator leads", WAIT, || async {
        Ok((first.metric("voice_operator_leader").await? == 1.0).then_some(()))
    })
    .await
    .expect("leads");
    env.apply_yaml(&agent(2, "relay.example.com")).await.expect("apply");
    first.kill().await.expect("SIGKILL");

    // While no operator runs, the spec changes.
    env.apply_yaml(&agent(3, "relay2.example.com")).await.expect("change");

    // The successor waits for the crashed leader's Lease to expire, then converges.
    let second = env
        .start_operator(&[("--lease-duration", LEASE_DURATION)])
        .await
        .expect("second operator");
    let relay = env
        .wait_ready("relay")
        .await
        .unwrap_or_else(|e| panic!("{e:#}\n{}", second.log_tail(40)));
    assert_eq!(relay.status.as_ref().and_then(|s| s.ready_replicas), Some(3));
    assert_eq!(holder(&leases).await.as_deref(), Some(second.identity.as_str()));
    let deployment = deployments.get("relay").await.expect("Deployment");
    assert_eq!(deployment.spec.and_then(|s| s.replicas), Some(3));
    let ingress = ingresses.get("relay").await.expect("Ingress");
    let host = ingress.spec.and_then(|s| s.rules).and_then(|r| r[0].host.clone());
    assert_eq!(host.as_deref(), Some("relay2.example.com"));

    // A clean stop: exit 0 and the Lease released, so the next one leads at once rather than
    // after the Lease would have expired.
    let code = second.stop().await.expect("SIGTERM");
    assert!(code.success(), "exit status {code}");
    env.apply_yaml(&agent(1, "relay2.example.com"))
        .await
        .expect("scale down");
    let started = Instant::now();
    let third = env
        .start_operator(&[("--lease-duration", "60s")])
        .await
        .expect("third operator");
    eventually("the third operator leads", WAIT, || async {
        Ok((third.metric("voice_operator_leader").await? == 1.0).then_some(()))
    })
    .await
    .expect("leads");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "took {:?}: the Lease was not released",
        started.elapsed()
    );
    eventually("the change made while stopped is applied", WAIT, || async {
        let d = deployments.get("relay").await?;
        Ok((d.spec.and_then(|s| s.replicas) == Some(1)).then_some(()))
    })
    .await
    .unwrap_or_else(|e| panic!("{e:#}\n{}", third.log_tail(40)));
    env.wait_ready("relay").await.expect("ready");

    // The scale subresource: `kubectl scale` on the VoiceAgent reaches the Deployment.
    env.ns
        .kubectl_ok(["scale", "voiceagent/relay", "--replicas=2"])
        .await
        .expect("kubectl scale");
    eventually("scaled through the VoiceAgent", WAIT, || async {
        let agent = env.agents().get("relay").await?;
        Ok((agent.status.and_then(|s| s.ready_replicas) == Some(2)).then_some(()))
    })
    .await
    .expect("two replicas");
    assert!(third.stop().await.expect("stops").success());
}
