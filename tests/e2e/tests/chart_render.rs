//! The Helm chart as rendered: lint, the values schema refusing bad values, the CRD equal to
//! the generated one, RBAC and Deployment shaped by the values. Rendering uses the local
//! cluster's `helm` (tests/cluster), hence `#[ignore]`, except the CRD copy check.
//!
//! `cargo test -p voice-e2e --test chart_render -- --include-ignored`

mod chart_support;

use chart_support::{EVERY_OPTION, helm_template, object, of_kind, render_documents, strings};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use serde_json::Value;
use voice_e2e::TestCluster;
use voice_e2e::command::{COMMAND_TIMEOUT, run, run_ok};
use voice_e2e::workspace;

const CRD_COPY: &str = "charts/voice-operator/files/crds/voiceagents.voiceagent.dev.yaml";

#[test]
fn chart_crd_copy_matches_the_generated_crd() {
    let copy = std::fs::read_to_string(workspace::root().join(CRD_COPY)).expect("the chart's CRD copy exists");
    let generated = voice_operator::api::crd_yaml().expect("renders");
    assert!(
        copy == generated,
        "{CRD_COPY} is out of date with the VoiceAgent types; regenerate it with\n  make crd"
    );
}

#[tokio::test]
#[ignore = "needs helm from the local cluster (tests/cluster)"]
async fn lints_with_defaults_and_with_every_option() {
    let cluster = TestCluster::shared().await;
    for args in [&[][..], EVERY_OPTION] {
        let mut helm = cluster.helm();
        helm.args(["lint", "--strict"]).arg(workspace::chart()).args(args);
        let out = run_ok(&mut helm).await.expect("helm lint passes");
        assert!(out.contains("0 chart(s) failed"), "{out}");
    }
}

#[tokio::test]
#[ignore = "needs helm from the local cluster (tests/cluster)"]
async fn schema_rejects_wrong_types_unknown_keys_and_out_of_range_values() {
    let cluster = TestCluster::shared().await;
    // (value, what the error must name)
    let cases = [
        ("replicaCount=two", "replicaCount"),
        ("crds.keep=yes", "keep"),
        ("logFormat=xml", "logFormat"),
        ("replicasCount=2", "replicasCount"),
        ("crds.kep=false", "kep"),
        ("monitoring.rules.modelErrorCallRatio=2", "modelErrorCallRatio"),
        ("watchNamespaces={a,b}", "watchNamespaces"),
        ("image.pullPolicy=Sometimes", "pullPolicy"),
        ("resync=ten", "resync"),
    ];
    for (value, named) in cases {
        let out = run(
            &mut helm_template(cluster, "schema", "schema", &["--set", value]),
            COMMAND_TIMEOUT,
        )
        .await
        .expect("helm runs");
        assert!(!out.success, "--set {value} was accepted");
        assert!(
            out.stderr
                .contains("values don't meet the specifications of the schema"),
            "--set {value} refused for another reason: {}",
            out.stderr
        );
        assert!(
            out.stderr.contains(named),
            "the error for --set {value} does not name {named}: {}",
            out.stderr
        );
    }
    // Unknown keys are reported as such.
    let out = run(
        &mut helm_template(cluster, "schema", "schema", &["--set", "replicasCount=2"]),
        COMMAND_TIMEOUT,
    )
    .await
    .expect("helm runs");
    assert!(out.stderr.contains("additional properties"), "{}", out.stderr);
    // The same keys with good values pass.
    for value in [
        "replicaCount=2",
        "crds.keep=false",
        "logFormat=text",
        "watchNamespaces={a}",
        "resync=1m30s",
    ] {
        render_documents(cluster, "schema", &["--set", value])
            .await
            .unwrap_or_else(|e| panic!("--set {value} refused: {e:#}"));
    }
}

#[tokio::test]
#[ignore = "needs helm from the local cluster (tests/cluster)"]
async fn crd_is_the_generated_crd_kept_on_uninstall_when_asked() {
    let cluster = TestCluster::shared().await;
    let generated = voice_operator::api::crd();

    let docs = render_documents(cluster, "crd", &[]).await.expect("renders");
    let crd = object(&docs, "CustomResourceDefinition", "voiceagents.voiceagent.dev").expect("CRD rendered");
    let rendered: CustomResourceDefinition = serde_json::from_value(crd.clone()).expect("a CRD");
    assert_eq!(rendered.metadata.name, generated.metadata.name);
    assert!(
        rendered.spec == generated.spec,
        "the chart's CRD spec differs from `voice-operator crd`; run `make crd`"
    );
    // Whatever metadata the generator sets survives in the chart.
    for (key, value) in generated.metadata.labels.iter().flatten() {
        assert_eq!(rendered.metadata.labels.as_ref().and_then(|l| l.get(key)), Some(value));
    }
    for (key, value) in generated.metadata.annotations.iter().flatten() {
        assert_eq!(
            rendered.metadata.annotations.as_ref().and_then(|a| a.get(key)),
            Some(value)
        );
    }
    assert_eq!(
        crd["metadata"]["annotations"]["helm.sh/resource-policy"], "keep",
        "crds.keep defaults to true"
    );

    let docs = render_documents(cluster, "crd", &["--set", "crds.keep=false"])
        .await
        .expect("renders");
    let crd = object(&docs, "CustomResourceDefinition", "voiceagents.voiceagent.dev").expect("CRD rendered");
    assert!(
        crd["metadata"]["annotations"]["helm.sh/resource-policy"].is_null(),
        "{crd}"
    );

    let docs = render_documents(cluster, "crd", &["--set", "crds.enabled=false"])
        .await
        .expect("renders");
    assert!(of_kind(&docs, "CustomResourceDefinition").is_empty());
}

#[tokio::test]
#[ignore = "needs helm from the local cluster (tests/cluster)"]
async fn watching_one_namespace_binds_the_role_there_and_passes_the_flag() {
    let cluster = TestCluster::shared().await;

    let docs = render_documents(cluster, "ops", EVERY_OPTION).await.expect("renders");
    let bindings = of_kind(&docs, "ClusterRoleBinding");
    assert!(
        bindings.iter().any(|b| b["roleRef"]["name"] == "ops-voice-operator"),
        "cluster-wide by default"
    );
    assert!(
        of_kind(&docs, "RoleBinding")
            .iter()
            .all(|b| b["roleRef"]["kind"] == "Role")
    );
    let args = strings(
        &object(&docs, "Deployment", "ops-voice-operator").expect("Deployment rendered")["spec"]["template"]["spec"]["containers"]
            [0]["args"],
    );
    assert!(!args.iter().any(|a| a.starts_with("--namespace")), "{args:?}");
    let monitor = object(&docs, "PodMonitor", "ops-voice-operator-agents").expect("PodMonitor rendered");
    assert_eq!(monitor["spec"]["namespaceSelector"]["any"], true);

    let mut scoped = EVERY_OPTION.to_vec();
    scoped.extend(["--set", "watchNamespaces={team-a}"]);
    let docs = render_documents(cluster, "ops", &scoped).await.expect("renders");
    let binding = of_kind(&docs, "RoleBinding")
        .into_iter()
        .find(|b| b["roleRef"]["name"] == "ops-voice-operator")
        .expect("a RoleBinding of the operator's ClusterRole");
    assert_eq!(binding["metadata"]["namespace"], "team-a");
    assert_eq!(binding["subjects"][0]["namespace"], "ops");
    assert!(
        !of_kind(&docs, "ClusterRoleBinding")
            .iter()
            .any(|b| b["roleRef"]["name"] == "ops-voice-operator"),
        "no cluster-wide binding of the main role"
    );
    let args = strings(
        &object(&docs, "Deployment", "ops-voice-operator").expect("Deployment rendered")["spec"]["template"]["spec"]["containers"]
            [0]["args"],
    );
    assert!(args.contains(&"--namespace=team-a".to_owned()), "{args:?}");
    let monitor = object(&docs, "PodMonitor", "ops-voice-operator-agents").expect("PodMonitor rendered");
    assert_eq!(
        monitor["spec"]["namespaceSelector"]["matchNames"],
        serde_json::json!(["team-a"])
    );
}

#[tokio::test]
#[ignore = "needs helm from the local cluster (tests/cluster)"]
async fn rbac_grants_only_what_the_operator_uses() {
    let cluster = TestCluster::shared().await;
    let docs = render_documents(cluster, "ops", &[]).await.expect("renders");
    let role = object(&docs, "ClusterRole", "ops-voice-operator").expect("ClusterRole rendered");
    let rules = role["rules"].as_array().expect("rules");
    let verbs_on = |group: &str, resource: &str| -> Vec<String> {
        rules
            .iter()
            .filter(|r| strings(&r["apiGroups"]).contains(&group.to_owned()))
            .filter(|r| strings(&r["resources"]).contains(&resource.to_owned()))
            .flat_map(|r| strings(&r["verbs"]))
            .collect()
    };
    for rule in rules {
        for field in ["apiGroups", "resources", "verbs"] {
            assert!(!strings(&rule[field]).contains(&"*".to_owned()), "wildcard in {rule}");
        }
        assert!(
            !strings(&rule["verbs"]).contains(&"update".to_owned())
                || strings(&rule["resources"]) == ["voiceagents/finalizers"],
            "{rule}"
        );
    }
    assert_eq!(
        verbs_on("", "secrets"),
        ["get", "list", "watch"],
        "Secrets are read-only"
    );
    assert_eq!(
        verbs_on("voiceagent.dev", "voiceagents"),
        ["get", "list", "watch"],
        "the spec is never written"
    );
    assert_eq!(verbs_on("voiceagent.dev", "voiceagents/status"), ["get", "patch"]);
    assert!(!verbs_on("", "configmaps").contains(&"delete".to_owned()));
    assert_eq!(
        verbs_on("networking.k8s.io", "networkpolicies"),
        ["get", "list", "watch", "create", "patch", "delete"]
    );
    assert!(verbs_on("", "pods").is_empty());

    let lease = object(&docs, "Role", "ops-voice-operator-leader-election").expect("Role rendered");
    let renew = lease["rules"]
        .as_array()
        .expect("rules")
        .iter()
        .find(|r| strings(&r["verbs"]).contains(&"patch".to_owned()))
        .expect("a rule to renew the Lease");
    assert_eq!(
        strings(&renew["resourceNames"]),
        ["voice-operator"],
        "only the operator's own Lease"
    );

    let without = render_documents(
        cluster,
        "ops",
        &[
            "--set",
            "rbac.gatewayAPI=false,rbac.readIngressClasses=false,rbac.keda=false",
        ],
    )
    .await
    .expect("renders");
    let role = object(&without, "ClusterRole", "ops-voice-operator").expect("ClusterRole rendered");
    for resource in ["httproutes", "backendtrafficpolicies", "gateways", "scaledobjects"] {
        assert!(!role.to_string().contains(resource), "{resource} without its switch");
    }
    assert!(of_kind(&without, "ClusterRole").len() == 1, "no IngressClass reader");
}

#[tokio::test]
#[ignore = "needs helm from the local cluster (tests/cluster)"]
async fn deployment_is_restricted_and_follows_the_values() {
    let cluster = TestCluster::shared().await;
    let docs = render_documents(cluster, "ops", &[]).await.expect("renders");
    let deployment = object(&docs, "Deployment", "ops-voice-operator").expect("Deployment rendered");
    let pod = &deployment["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    let version = chart_app_version();
    assert_eq!(
        container["image"],
        format!("ghcr.io/voiceagent-dev/voice-operator:{version}")
    );
    assert_eq!(pod["securityContext"]["runAsUser"], 65532);
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(pod["securityContext"]["seccompProfile"]["type"], "RuntimeDefault");
    assert_eq!(container["securityContext"]["allowPrivilegeEscalation"], false);
    assert_eq!(container["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(
        container["securityContext"]["capabilities"]["drop"],
        serde_json::json!(["ALL"])
    );
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert!(container["resources"]["limits"]["memory"].is_string());
    let args = strings(&container["args"]);
    for expected in [
        "--admin-addr=0.0.0.0:8081",
        "--log-format=json",
        "--leader-election=true",
        "--lease-name=voice-operator",
    ] {
        assert!(args.contains(&expected.to_owned()), "{expected} missing from {args:?}");
    }
    let service = object(&docs, "Service", "ops-voice-operator-metrics").expect("Service rendered");
    assert_eq!(service["spec"]["ports"][0]["port"], 8081);

    let docs = render_documents(
        cluster,
        "ops",
        &[
            "--set",
            "image.tag=dev,logFormat=text,metrics.port=9090,agentImage=registry.example/agent:1",
            "--set",
            "leaderElection.enabled=false",
        ],
    )
    .await
    .expect("renders");
    let deployment = object(&docs, "Deployment", "ops-voice-operator").expect("Deployment rendered");
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["image"], "ghcr.io/voiceagent-dev/voice-operator:dev");
    let args = strings(&container["args"]);
    for expected in [
        "--log-format=text",
        "--admin-addr=0.0.0.0:9090",
        "--agent-image=registry.example/agent:1",
        "--leader-election=false",
    ] {
        assert!(args.contains(&expected.to_owned()), "{expected} missing from {args:?}");
    }
    assert!(
        of_kind(&docs, "Role").is_empty(),
        "no Lease role without leader election"
    );
    let out = run(
        &mut helm_template(
            cluster,
            "ops",
            "ops",
            &["--set", "replicaCount=2,leaderElection.enabled=false"],
        ),
        COMMAND_TIMEOUT,
    )
    .await
    .expect("helm runs");
    assert!(
        !out.success && out.stderr.contains("needs leaderElection.enabled"),
        "several replicas without a Lease must be refused: {}",
        out.stderr
    );

    let digest = format!("sha256:{}", "a".repeat(64));
    let docs = render_documents(cluster, "ops", &["--set", &format!("image.digest={digest}")])
        .await
        .expect("renders");
    let deployment = object(&docs, "Deployment", "ops-voice-operator").expect("Deployment rendered");
    assert_eq!(
        deployment["spec"]["template"]["spec"]["containers"][0]["image"],
        format!("ghcr.io/voiceagent-dev/voice-operator@{digest}")
    );
}

fn chart_app_version() -> String {
    let text = std::fs::read_to_string(workspace::chart().join("Chart.yaml")).expect("Chart.yaml");
    let chart: Value = serde_saphyr::from_str(&text).expect("Chart.yaml parses");
    chart["appVersion"].as_str().expect("appVersion").to_owned()
}
