//! The Helm chart on the local control plane: everything it renders passes a server-side dry
//! run; `helm install` gives an operator that, run under the chart's ServiceAccount with the
//! chart's arguments, reconciles a VoiceAgent to Ready with RBAC enforced; `helm upgrade` with
//! changed values rolls the Deployment; `helm uninstall` keeps the CRD and the VoiceAgents.
//!
//! `cargo test -p voice-e2e --test chart_install -- --ignored`

mod chart_support;

use chart_support::{EVERY_OPTION, render};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use kube::Api;
use kube::api::ListParams;
use serde_json::Value;
use voice_e2e::command::{COMMAND_TIMEOUT, run, run_ok};
use voice_e2e::crds::{install_monitoring_crds, wait_established};
use voice_e2e::process::{Process, free_addr};
use voice_e2e::voiceagent::wait_ready;
use voice_e2e::wait::{WAIT, eventually};
use voice_e2e::{TestCluster, TestNamespace, workspace};

const CRD: &str = "voiceagents.voiceagent.dev";

#[tokio::test]
#[ignore = "needs the local cluster (tests/cluster)"]
async fn every_rendered_document_passes_a_server_dry_run() {
    let cluster = TestCluster::shared().await;
    install_monitoring_crds(cluster).await.expect("monitoring CRDs");
    let ns = cluster.namespace("chart-dry-run").await;
    let mut everything = EVERY_OPTION.to_vec();
    everything.extend(["--set", "networkPolicy.apiServer.cidrs={10.0.0.1/32}"]);
    let watch_one = format!("watchNamespaces={{{}}}", ns.name());
    let mut scoped = everything.to_vec();
    scoped.extend(["--set", &watch_one]);
    for args in [&everything[..], &scoped[..]] {
        let yaml = render(cluster, ns.name(), args).await.expect("renders");
        let kinds: Vec<String> = chart_support::documents(&yaml)
            .expect("parses")
            .iter()
            .map(|d| d["kind"].as_str().unwrap_or_default().to_owned())
            .collect();
        let file = std::env::temp_dir().join(format!("voice-e2e-{}-chart.yaml", ns.name()));
        std::fs::write(&file, &yaml).expect("write");
        // Server-side apply: the CRD is too large for the last-applied annotation of a
        // client-side apply.
        let out = run_ok(
            cluster
                .kubectl()
                .args([
                    "apply",
                    "--server-side",
                    "--force-conflicts",
                    "--field-manager=chart-dry-run",
                    "--dry-run=server",
                    "-f",
                ])
                .arg(&file),
        )
        .await;
        let _ = std::fs::remove_file(&file);
        let out = out.expect("the apiserver accepts every rendered document");
        let applied = out.lines().filter(|l| l.contains("(server dry run)")).count();
        assert_eq!(
            applied,
            kinds.len(),
            "one dry-run result per document ({kinds:?}):\n{out}"
        );
    }
}

#[tokio::test]
#[ignore = "needs the local cluster (tests/cluster)"]
async fn install_reconcile_upgrade_and_uninstall_keeping_the_crd() {
    let cluster = TestCluster::shared().await;
    let ns = cluster.namespace("chart-install").await;
    let release = ns.name().to_owned();
    let fullname = format!("{release}-voice-operator");
    adopt_existing_crd(cluster, &release)
        .await
        .expect("CRD ready for the release");

    // Install, scoped to this namespace (other suites' namespaces stay out of reach).
    let watch = format!("watchNamespaces={{{release}}}");
    helm_ok(
        cluster,
        &[
            "install",
            &release,
            chart_dir(),
            "-n",
            &release,
            "--set",
            &watch,
            "--wait",
            "--timeout",
            "90s",
        ],
    )
    .await
    .expect("helm install");
    let crd = kubectl_json(cluster, &["get", "crd", CRD])
        .await
        .expect("CRD installed");
    assert_eq!(crd["metadata"]["annotations"]["helm.sh/resource-policy"], "keep");
    assert_eq!(
        crd["metadata"]["annotations"]["meta.helm.sh/release-name"],
        release.as_str()
    );
    wait_established(cluster, &[format!("crd/{CRD}")])
        .await
        .expect("CRD established");

    let account = format!("system:serviceaccount:{release}:{fullname}");
    assert_rbac(cluster, &account, &release).await;

    // The operator under the chart's identity, with the Deployment's own arguments.
    let identity = ns
        .service_account_kubeconfig(&fullname)
        .await
        .expect("token for the chart's account");
    let deployments: Api<Deployment> = ns.api();
    let deployment = deployments.get(&fullname).await.expect("the chart's Deployment");
    let operator = start_operator(&deployment, &identity, &release, "first")
        .await
        .expect("operator starts");

    ns.kubectl_ok(["apply", "-f", &workspace_path("examples/simulated-smoke.yaml")])
        .await
        .expect("example applied");
    wait_ready(&ns.api(), "voice-smoke", WAIT)
        .await
        .map_err(|e| anyhow::anyhow!("{e:#}\n{}", operator.log_tail(40)))
        .expect("Ready");
    let lease = kubectl_json(cluster, &["get", "lease", "voice-operator", "-n", &release])
        .await
        .expect("Lease");
    assert_eq!(
        lease["spec"]["holderIdentity"], "chart-e2e-first",
        "the operator leads through the chart's Role"
    );
    assert_eq!(operator.stop().await.expect("stops").code(), Some(0));

    // Upgrade with changed values: the Deployment rolls to a new ReplicaSet.
    let before = deployments.get(&fullname).await.expect("the Deployment");
    let old_hash = current_template_hash(&ns, &before).await.expect("current ReplicaSet");
    helm_ok(
        cluster,
        &[
            "upgrade",
            &release,
            chart_dir(),
            "-n",
            &release,
            "--reuse-values",
            "--set",
            "logFormat=text,resources.requests.cpu=100m",
            "--wait",
            "--timeout",
            "90s",
        ],
    )
    .await
    .expect("helm upgrade");
    run_ok(
        ns.kubectl()
            .args(["rollout", "status", &format!("deployment/{fullname}"), "--timeout=90s"]),
    )
    .await
    .expect("rollout completes");
    let after = deployments.get(&fullname).await.expect("the Deployment");
    assert!(
        after.metadata.generation > before.metadata.generation,
        "the pod template changed"
    );
    let new_hash = current_template_hash(&ns, &after).await.expect("current ReplicaSet");
    assert_ne!(old_hash, new_hash, "a new ReplicaSet");
    let replica_sets: Api<ReplicaSet> = ns.api();
    for rs in replica_sets.list(&ListParams::default()).await.expect("ReplicaSets") {
        let hash = rs
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get("pod-template-hash"))
            .cloned();
        if hash.as_deref() == Some(old_hash.as_str()) {
            assert_eq!(
                rs.spec.and_then(|s| s.replicas),
                Some(0),
                "the old ReplicaSet is scaled down"
            );
        }
    }
    let args = container_args(&after);
    assert!(args.contains(&"--log-format=text".to_owned()), "{args:?}");

    // The upgraded arguments still run and reconcile a change.
    let operator = start_operator(&after, &identity, &release, "second")
        .await
        .expect("operator restarts");
    ns.kubectl_ok([
        "patch",
        "voiceagent",
        "voice-smoke",
        "--type=merge",
        "-p",
        r#"{"spec":{"prompt":{"system":"Answer in one word."}}}"#,
    ])
    .await
    .expect("spec changed");
    wait_ready(&ns.api(), "voice-smoke", WAIT)
        .await
        .map_err(|e| anyhow::anyhow!("{e:#}\n{}", operator.log_tail(40)))
        .expect("Ready again");
    assert_eq!(operator.stop().await.expect("stops").code(), Some(0));

    // Uninstall: the chart's objects go, the CRD and the VoiceAgents stay.
    helm_ok(
        cluster,
        &["uninstall", &release, "-n", &release, "--wait", "--timeout", "90s"],
    )
    .await
    .expect("helm uninstall");
    kubectl_json(cluster, &["get", "crd", CRD])
        .await
        .expect("the CRD is kept");
    ns.kubectl_ok(["get", "voiceagent", "voice-smoke"])
        .await
        .expect("the VoiceAgent is kept");
    for (kind, name) in [
        ("clusterrole", fullname.as_str()),
        ("deployment", fullname.as_str()),
        ("serviceaccount", fullname.as_str()),
    ] {
        let out = ns
            .kubectl_ok(["get", kind, name, "--ignore-not-found"])
            .await
            .expect("kubectl get");
        assert!(out.trim().is_empty(), "{kind} {name} survived the uninstall: {out}");
    }
}

/// Checks what the chart's ServiceAccount may do, as the apiserver decides it. (HTTPRoutes are
/// left to the rendering suite: `can-i` answers no for kinds the cluster does not serve.)
async fn assert_rbac(cluster: &TestCluster, account: &str, ns: &str) {
    let allowed = [
        vec!["list", "voiceagents.voiceagent.dev"],
        vec!["watch", "voiceagents.voiceagent.dev"],
        vec!["patch", "voiceagents.voiceagent.dev", "--subresource=status"],
        vec!["get", "secrets"],
        vec!["watch", "configmaps"],
        vec!["patch", "configmaps"],
        vec!["create", "deployments.apps"],
        vec!["delete", "networkpolicies.networking.k8s.io"],
        vec!["create", "networkpolicies.networking.k8s.io"],
        vec!["delete", "ingresses.networking.k8s.io"],
        vec!["delete", "horizontalpodautoscalers.autoscaling"],
        vec!["delete", "poddisruptionbudgets.policy"],
        vec!["create", "events.events.k8s.io"],
        vec!["create", "leases.coordination.k8s.io"],
        vec!["patch", "leases.coordination.k8s.io/voice-operator"],
    ];
    let denied = [
        vec!["update", "voiceagents.voiceagent.dev"],
        vec!["delete", "voiceagents.voiceagent.dev"],
        vec!["create", "secrets"],
        vec!["patch", "secrets"],
        vec!["delete", "configmaps"],
        vec!["delete", "deployments.apps"],
        vec!["create", "pods"],
        vec!["patch", "leases.coordination.k8s.io/someone-else"],
    ];
    for (args, expected) in allowed
        .iter()
        .map(|a| (a, true))
        .chain(denied.iter().map(|a| (a, false)))
    {
        assert_eq!(
            can_i(cluster, account, ns, args).await,
            expected,
            "can {account} {args:?} in {ns}"
        );
    }
    // Outside the watched namespace: nothing.
    for args in [vec!["list", "voiceagents.voiceagent.dev"], vec!["get", "secrets"]] {
        assert!(!can_i(cluster, account, "default", &args).await, "{args:?} in default");
    }
}

async fn can_i(cluster: &TestCluster, account: &str, ns: &str, args: &[&str]) -> bool {
    let mut kubectl = cluster.kubectl();
    kubectl.args(["auth", "can-i", "-n", ns, "--as", account]).args(args);
    let out = run(&mut kubectl, COMMAND_TIMEOUT)
        .await
        .expect("kubectl auth can-i runs");
    match out.stdout.trim() {
        "yes" => true,
        "no" => false,
        other => panic!("kubectl auth can-i {args:?} said {other:?}: {}", out.stderr),
    }
}

/// Runs the operator binary as `identity` with the container arguments of `deployment` (the
/// admin address moved to a free loopback port) and the environment its pod would have.
async fn start_operator(
    deployment: &Deployment,
    identity: &voice_e2e::ServiceAccountKubeconfig,
    ns: &str,
    name: &str,
) -> anyhow::Result<Process> {
    let operator = workspace::operator_binary().await?;
    let addr = free_addr()?;
    let mut cmd = tokio::process::Command::new(operator);
    for arg in container_args(deployment) {
        if !arg.starts_with("--admin-addr=") {
            cmd.arg(arg);
        }
    }
    cmd.arg(format!("--admin-addr={addr}"))
        .arg(format!("--kubeconfig={}", identity.path().display()))
        .env_remove("KUBECONFIG")
        // What the Deployment's downward API gives the pod.
        .env("POD_NAMESPACE", ns)
        .env("POD_NAME", format!("chart-e2e-{name}"));
    Process::start(cmd, &format!("voice-operator-{ns}-{name}"), addr, "/readyz").await
}

fn container_args(deployment: &Deployment) -> Vec<String> {
    deployment
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .and_then(|p| p.containers.first())
        .and_then(|c| c.args.clone())
        .unwrap_or_default()
}

/// The `pod-template-hash` of the ReplicaSet that carries the Deployment's current template.
async fn current_template_hash(ns: &TestNamespace, deployment: &Deployment) -> anyhow::Result<String> {
    let revision = deployment
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get("deployment.kubernetes.io/revision"))
        .cloned();
    let replica_sets: Api<ReplicaSet> = ns.api();
    eventually("the Deployment's current ReplicaSet", WAIT, || async {
        let current = deployments_revision(ns, deployment).await?.or(revision.clone());
        Ok(replica_sets
            .list(&ListParams::default())
            .await?
            .items
            .into_iter()
            .find(|rs| {
                rs.metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get("deployment.kubernetes.io/revision"))
                    == current.as_ref()
            })
            .and_then(|rs| rs.metadata.labels.and_then(|l| l.get("pod-template-hash").cloned())))
    })
    .await
}

async fn deployments_revision(ns: &TestNamespace, deployment: &Deployment) -> anyhow::Result<Option<String>> {
    let name = deployment.metadata.name.clone().unwrap_or_default();
    let live = ns.api::<Deployment>().get(&name).await?;
    Ok(live
        .metadata
        .annotations
        .and_then(|a| a.get("deployment.kubernetes.io/revision").cloned()))
}

/// When the CRD already exists (installed with kubectl by another suite, or kept by an earlier
/// release), marks it as belonging to `release` so that `helm install` adopts it instead of
/// refusing: what docs/operations.md tells users to do.
async fn adopt_existing_crd(cluster: &TestCluster, release: &str) -> anyhow::Result<()> {
    let out = run_ok(
        cluster
            .kubectl()
            .args(["get", "crd", CRD, "--ignore-not-found", "-o", "name"]),
    )
    .await?;
    if out.trim().is_empty() {
        return Ok(());
    }
    run_ok(
        cluster
            .kubectl()
            .args(["label", "--overwrite", "crd", CRD, "app.kubernetes.io/managed-by=Helm"]),
    )
    .await?;
    run_ok(cluster.kubectl().args([
        "annotate",
        "--overwrite",
        "crd",
        CRD,
        &format!("meta.helm.sh/release-name={release}"),
        &format!("meta.helm.sh/release-namespace={release}"),
    ]))
    .await?;
    Ok(())
}

async fn helm_ok(cluster: &TestCluster, args: &[&str]) -> anyhow::Result<String> {
    run_ok(cluster.helm().args(args)).await
}

async fn kubectl_json(cluster: &TestCluster, args: &[&str]) -> anyhow::Result<Value> {
    let out = run_ok(cluster.kubectl().args(args).args(["-o", "json"])).await?;
    Ok(serde_json::from_str(&out)?)
}

fn chart_dir() -> &'static str {
    static DIR: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DIR.get_or_init(|| workspace::chart().to_string_lossy().into_owned())
}

fn workspace_path(path: &str) -> String {
    workspace::root().join(path).to_string_lossy().into_owned()
}
