//! Each example manifest, applied with kubectl, becomes `Ready=True` with the children it
//! should have, the operator running as a process under the chart's RBAC.
//!
//! `cargo test -p voice-e2e --test operator_examples -- --ignored`

mod operator_support;

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{ConfigMap, PodSpec, Service};
use k8s_openapi::api::networking::v1::{Ingress, IngressClass, NetworkPolicy};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, DeleteParams, PostParams};
use operator_support::{EXAMPLES, OperatorEnv};
use voice_e2e::wait::{WAIT, eventually};
use voice_operator::gateway_api::HTTPRoute;

fn annotations(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> BTreeMap<String, String> {
    meta.annotations.clone().unwrap_or_default()
}

/// The pod template of the Deployment `name`.
async fn pod_spec(deployments: &Api<Deployment>, name: &str) -> PodSpec {
    let deployment = deployments.get(name).await.expect("Deployment");
    deployment.spec.expect("spec").template.spec.expect("pod")
}

#[tokio::test]
#[ignore = "needs the local cluster (tests/cluster/up)"]
async fn every_example_becomes_ready_with_its_children() {
    let env = OperatorEnv::new("op-examples").await.expect("test namespace");
    let operator = env.start_operator(&[]).await.expect("operator starts");
    for example in EXAMPLES {
        env.apply_file(example).await.expect(example);
    }
    let ns = env.name().to_owned();
    let deployments: Api<Deployment> = env.ns.api();
    let services: Api<Service> = env.ns.api();
    let configmaps: Api<ConfigMap> = env.ns.api();
    let ingresses: Api<Ingress> = env.ns.api();
    let hpas: Api<HorizontalPodAutoscaler> = env.ns.api();
    let pdbs: Api<PodDisruptionBudget> = env.ns.api();
    let routes: Api<HTTPRoute> = env.ns.api();

    // Simulated smoke test: in-cluster only.
    let smoke = env
        .wait_ready("voice-smoke")
        .await
        .unwrap_or_else(|e| panic!("{e:#}\n{}", operator.log_tail(40)));
    let status = smoke.status.expect("status");
    assert_eq!(
        status.url.as_deref(),
        Some(format!("ws://voice-smoke.{ns}.svc:8080/ws").as_str())
    );
    assert_eq!(status.ready_replicas, Some(1));
    let config = configmaps.get("voice-smoke-config").await.expect("ConfigMap");
    let yaml = &config.data.expect("data")["config.yaml"];
    assert!(yaml.contains("provider: Simulated"), "{yaml}");
    assert!(yaml.contains("You are a friendly test agent"), "{yaml}");
    let service = services.get("voice-smoke").await.expect("Service");
    let port = &service.spec.expect("spec").ports.expect("ports")[0];
    assert_eq!(port.name.as_deref(), Some("ws"));
    assert_eq!(port.app_protocol.as_deref(), Some("kubernetes.io/ws"));
    for absent in [
        ingresses.get_opt("voice-smoke").await.expect("get").is_some(),
        hpas.get_opt("voice-smoke").await.expect("get").is_some(),
        pdbs.get_opt("voice-smoke").await.expect("get").is_some(),
    ] {
        assert!(!absent, "voice-smoke has children it should not have");
    }

    // ingress-nginx: Nova Sonic, prompt from a ConfigMap, autoscaled, TLS.
    let support = env.wait_ready("support").await.expect("support ready");
    assert_eq!(
        support.status.and_then(|s| s.url).as_deref(),
        Some("wss://voice.example.com/ws")
    );
    let ingress = ingresses.get("support").await.expect("Ingress");
    let a = annotations(&ingress.metadata);
    assert_eq!(a["nginx.ingress.kubernetes.io/proxy-read-timeout"], "1860");
    assert_eq!(a["nginx.ingress.kubernetes.io/proxy-send-timeout"], "1860");
    assert_eq!(a["cert-manager.io/cluster-issuer"], "letsencrypt");
    let spec = ingress.spec.expect("spec");
    assert_eq!(spec.ingress_class_name.as_deref(), Some("nginx"));
    assert_eq!(
        spec.tls.expect("tls")[0].secret_name.as_deref(),
        Some("voice-example-com-tls")
    );
    let hpa = hpas.get("support").await.expect("HPA");
    assert_eq!(hpa.spec.min_replicas, Some(2));
    assert_eq!(hpa.spec.max_replicas, 10);
    assert!(pdbs.get_opt("support").await.expect("get").is_some(), "PDB");
    let pod = pod_spec(&deployments, "support").await;
    assert_eq!(pod.service_account_name.as_deref(), Some("support-agent"));
    assert_eq!(pod.automount_service_account_token, Some(false));
    let volumes = pod.volumes.expect("volumes");
    assert!(
        volumes
            .iter()
            .any(|v| v.config_map.as_ref().is_some_and(|c| c.name == "support-prompts"))
    );
    // The HPA keeps at least minReplicas running.
    eventually("support scaled to minReplicas", WAIT, || async {
        let agent = env.agents().get("support").await?;
        Ok(agent.status.and_then(|s| s.ready_replicas).filter(|n| *n >= 2))
    })
    .await
    .expect("two replicas");

    // AWS Load Balancer Controller.
    env.wait_ready("concierge").await.expect("concierge ready");
    let ingress = ingresses.get("concierge").await.expect("Ingress");
    let a = annotations(&ingress.metadata);
    assert_eq!(a["alb.ingress.kubernetes.io/target-type"], "ip");
    assert_eq!(a["alb.ingress.kubernetes.io/healthcheck-path"], "/readyz");
    assert_eq!(
        a["alb.ingress.kubernetes.io/load-balancer-attributes"],
        "idle_timeout.timeout_seconds=1260"
    );
    assert_eq!(
        a["alb.ingress.kubernetes.io/target-group-attributes"],
        "deregistration_delay.timeout_seconds=195"
    );
    assert_eq!(a["alb.ingress.kubernetes.io/scheme"], "internet-facing");
    let pod = pod_spec(&deployments, "concierge").await;
    assert_eq!(
        pod.termination_grace_period_seconds,
        Some(205),
        "grace period covers pre-stop and drain"
    );

    // Gateway API.
    let lobby = env.wait_ready("lobby").await.expect("lobby ready");
    assert_eq!(
        lobby.status.and_then(|s| s.url).as_deref(),
        Some("wss://lobby.example.com/ws")
    );
    let route = routes.get("lobby").await.expect("HTTPRoute");
    let rule = &route.spec.rules[0];
    assert_eq!(rule.backend_refs[0].name, "lobby");
    // Named Envoy Gateway: the route outlasts the longest session (30 m + 60 s).
    assert_eq!(rule.timeouts.as_ref().and_then(|t| t.request.as_deref()), Some("1860s"));
    assert_eq!(route.spec.parent_refs[0].namespace.as_deref(), Some("gateway-system"));
    assert!(ingresses.get_opt("lobby").await.expect("get").is_none());
    assert!(
        pdbs.get_opt("lobby").await.expect("get").is_some(),
        "two replicas get a PDB"
    );

    // Istio and Traefik examples, with no Gateway to read here: implementation Generic, so a
    // route without timeouts (which an unknown implementation might refuse). NGINX Gateway
    // Fabric, named, does not implement route timeouts either.
    for name in ["reception", "helpdesk", "switchboard"] {
        env.wait_ready(name).await.expect("ready");
        let route = routes.get(name).await.expect("HTTPRoute");
        assert_eq!(route.spec.rules[0].timeouts, None, "{name}");
    }
    // kgateway and Cilium, named: their Envoy applies the route timeout, maxDuration + 60 s.
    for (name, request) in [("frontdesk", "3660s"), ("atrium", "3660s")] {
        env.wait_ready(name).await.expect("ready");
        let route = routes.get(name).await.expect("HTTPRoute");
        let timeouts = route.spec.rules[0].timeouts.as_ref();
        assert_eq!(timeouts.and_then(|t| t.request.as_deref()), Some(request), "{name}");
    }

    // Locked down: JWT callers, SigV4 tools, limits, and a NetworkPolicy.
    env.wait_ready("orders").await.expect("orders ready");
    let config = configmaps.get("orders-config").await.expect("ConfigMap");
    let yaml = &config.data.expect("data")["config.yaml"];
    for expected in ["mode: Jwt", "type: SigV4", "trustedProxies:", "https://app.example.com"] {
        assert!(yaml.contains(expected), "{expected:?} missing from\n{yaml}");
    }
    let policies: Api<NetworkPolicy> = env.ns.api();
    let policy = policies.get("orders").await.expect("NetworkPolicy");
    let from = policy
        .spec
        .and_then(|s| s.ingress)
        .and_then(|rules| rules.into_iter().next())
        .and_then(|rule| rule.from)
        .unwrap_or_default();
    assert_eq!(from.len(), 2, "ingress controller and Prometheus");
    assert!(
        policies.get_opt("support").await.expect("get").is_none(),
        "no policy unless asked for"
    );

    assert_eq!(operator.get("/healthz").await.expect("healthz").0, 200);
    let failures = operator
        .metric("voice_operator_reconcile_failures_total")
        .await
        .expect("metrics");
    assert_eq!(failures, 0.0, "no reconcile failed\n{}", operator.log_tail(40));
    let code = operator.stop().await.expect("stops");
    assert!(code.success(), "clean exit on SIGTERM: {code}");
}

/// With no `controller` in the spec, the WebSocket settings follow the IngressClass's
/// controller, whatever the class is called.
#[tokio::test]
#[ignore = "needs the local cluster (tests/cluster/up)"]
async fn ingress_settings_follow_the_ingress_class_controller() {
    let env = OperatorEnv::new("op-ingressclass").await.expect("test namespace");
    let classes: Api<IngressClass> = Api::all(env.ns.client());
    let class_name = format!("{}-edge", env.name());
    let class: IngressClass = serde_json::from_value(serde_json::json!({
        "metadata": {"name": class_name, "labels": {"voice-agents.dev/e2e": "true"}},
        "spec": {"controller": "haproxy-ingress.github.io/controller"},
    }))
    .expect("IngressClass");
    classes
        .create(&PostParams::default(), &class)
        .await
        .expect("create IngressClass");
    let operator = env.start_operator(&[]).await.expect("operator starts");
    env.apply_yaml(&format!(
        r#"apiVersion: voiceagent.dev/v1alpha1
kind: VoiceAgent
metadata: {{name: edge}}
spec:
  session: {{maxDuration: 10m}}
  expose: {{ingress: {{className: {class_name}, host: edge.example.com}}}}
"#
    ))
    .await
    .expect("apply");
    env.wait_ready("edge")
        .await
        .unwrap_or_else(|e| panic!("{e:#}\n{}", operator.log_tail(40)));
    let ingress = env.ns.api::<Ingress>().get("edge").await.expect("Ingress");
    let a = annotations(&ingress.metadata);
    assert_eq!(
        a.get("haproxy-ingress.github.io/timeout-tunnel").map(String::as_str),
        Some("660s")
    );
    classes
        .delete(&class_name, &DeleteParams::default())
        .await
        .expect("delete IngressClass");
}
