use super::*;
use crate::fixtures::{spec, try_validated, validated};
use crate::reconcile::build::golden::assert_golden;
use crate::reconcile::dereference::{Dereferenced, Resolved};
use crate::reconcile::references::references;

fn json(d: &Deployment) -> serde_json::Value {
    serde_json::to_value(d).expect("json")
}

#[test]
fn simulated_defaults() {
    assert_golden(
        "deployment_simulated",
        &build_deployment(&validated(Default::default())),
    );
}

const NOVA: &str = r#"
model:
  provider: NovaSonic
  novaSonic:
    region: us-east-1
    caBundle: {name: corporate-ca, key: ca.pem}
prompt:
  systemFrom:
    secretKeyRef: {name: prompts, key: support}
session:
  drainTimeout: 10m
replicas: 3
image: registry.example.com/voice-agent:1.2.3
imagePullPolicy: IfNotPresent
serviceAccountName: voice-agent-bedrock
resources:
  requests: {cpu: "1", memory: 1Gi}
  limits: {memory: 2Gi}
pod:
  labels: {team: support}
  annotations: {prometheus.io/scrape: "true"}
  nodeSelector: {kubernetes.io/arch: arm64}
  tolerations: [{key: dedicated, operator: Equal, value: voice, effect: NoSchedule}]
  priorityClassName: voice-critical
  imagePullSecrets: [{name: registry}]
  env: [{name: AWS_STS_REGIONAL_ENDPOINTS, value: regional}]
"#;

/// Everything the NovaSonic spec refers to, present.
fn resolved(spec: &crate::api::VoiceAgentSpec, digest: &str) -> Dereferenced {
    Dereferenced {
        references: references(spec)
            .into_iter()
            .map(|reference| Resolved {
                reference,
                object_found: true,
                digest: Some(digest.into()),
            })
            .collect(),
        ingress_class_controller: None,
        gateway_class_controller: None,
    }
}

#[test]
fn nova_sonic_with_files_identity_and_pod_overrides() {
    let spec = spec(NOVA);
    let agent = try_validated(spec.clone(), &resolved(&spec, "aaaa")).expect("valid");
    assert_golden("deployment_nova_sonic", &build_deployment(&agent));
}

#[test]
fn a_changed_secret_value_changes_the_pod_template() {
    let spec = spec(NOVA);
    let before = try_validated(spec.clone(), &resolved(&spec, "aaaa")).expect("valid");
    let after = try_validated(spec.clone(), &resolved(&spec, "bbbb")).expect("valid");
    let (before, after) = (build_deployment(&before), build_deployment(&after));
    assert_ne!(json(&before)["spec"]["template"], json(&after)["spec"]["template"]);
    // Only the checksum moves: nothing else in the pods changes.
    let strip = |mut v: serde_json::Value| {
        v["spec"]["template"]["metadata"]["annotations"][CHECKSUM_ANNOTATION] = "".into();
        v
    };
    assert_eq!(strip(json(&before)), strip(json(&after)));
}

#[test]
fn a_changed_prompt_changes_the_pod_template() {
    let a = build_deployment(&validated(spec("prompt: {system: Be brief.}")));
    let b = build_deployment(&validated(spec("prompt: {system: Be thorough.}")));
    assert_ne!(json(&a)["spec"]["template"], json(&b)["spec"]["template"]);
}

#[test]
fn autoscaled_agents_leave_replicas_to_the_hpa() {
    let d = build_deployment(&validated(spec("scaling: {minReplicas: 2, maxReplicas: 5}")));
    assert!(json(&d)["spec"].get("replicas").is_none());
}

#[test]
fn grace_period_covers_pre_stop_and_drain() {
    let d = json(&build_deployment(&validated(spec("session: {drainTimeout: 90s}"))));
    let pod = &d["spec"]["template"]["spec"];
    assert_eq!(pod["terminationGracePeriodSeconds"], 5 + 90 + 10);
    assert_eq!(pod["containers"][0]["lifecycle"]["preStop"]["sleep"]["seconds"], 5);
}

#[test]
fn behind_an_aws_load_balancer_the_pre_stop_pause_is_longer() {
    let d = json(&build_deployment(&validated(spec(
        "session: {drainTimeout: 1m}\nexpose: {ingress: {host: a.example.com, controller: AwsLoadBalancer}}",
    ))));
    let pod = &d["spec"]["template"]["spec"];
    assert_eq!(pod["terminationGracePeriodSeconds"], 15 + 60 + 10);
    assert_eq!(pod["containers"][0]["lifecycle"]["preStop"]["sleep"]["seconds"], 15);
}

#[test]
fn operator_labels_win_over_pod_labels() {
    let d = json(&build_deployment(&validated(spec(
        "pod: {labels: {app.kubernetes.io/instance: hijack, team: a}}",
    ))));
    let labels = &d["spec"]["template"]["metadata"]["labels"];
    assert_eq!(labels["app.kubernetes.io/instance"], "support");
    assert_eq!(labels["team"], "a");
}

#[test]
fn a_token_is_mounted_only_when_asked_for() {
    let d = json(&build_deployment(&validated(Default::default())));
    assert_eq!(d["spec"]["template"]["spec"]["automountServiceAccountToken"], false);
    let d = json(&build_deployment(&validated(spec(
        "pod: {automountServiceAccountToken: true}",
    ))));
    assert_eq!(d["spec"]["template"]["spec"]["automountServiceAccountToken"], true);
}
