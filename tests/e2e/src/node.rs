//! The real node of the local cluster ([`TestCluster::real_node`]): the images it runs, built
//! here by `tests/cluster/images` and imported into its containerd, and what the suites check
//! on the machine itself (pod network isolation, container processes).

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use k8s_openapi::api::core::v1::{Pod, Toleration};
use kube::Api;
use kube::api::ListParams;
use serde_json::json;
use tokio::process::Command;
use tokio::sync::OnceCell;
use voice_operator::api::VoiceAgent;

use crate::cluster::{REAL_NODE_LABEL, REAL_NODE_TAINT, TestCluster, TestNamespace};
use crate::command::{run, run_ok};
use crate::voiceagent::wait_ready;
use crate::wait::eventually;
use crate::workspace::{self, BUILD_TIMEOUT};

/// An image built by `tests/cluster/images`: its reference and its OCI archive.
#[derive(Debug, Clone)]
pub struct Image {
    pub reference: String,
    pub archive: PathBuf,
}

/// The agent and operator images, as the real node's containerd holds them.
#[derive(Debug, Clone)]
pub struct Images {
    pub agent: Image,
    pub operator: Image,
}

static IMAGES: OnceCell<Images> = OnceCell::const_new();

/// The cargo profile of the images' binaries unless `$VOICE_AGENTS_IMAGE_PROFILE` names one:
/// the debug binaries every other suite runs, built already, where the shipped release build
/// (thin LTO) would add about 20 minutes to a cold CI run. The image recipe is the same; set
/// `VOICE_AGENTS_IMAGE_PROFILE=release` to run the suites on the shipped binaries.
pub const IMAGE_PROFILE: &str = "dev";

/// Builds the agent and operator images (the binaries, then the images, both cached) and
/// imports them into the real node's containerd, once per test process. Start the real-node
/// cluster first ([`crate::TestCluster::real_node`]).
pub async fn images() -> anyhow::Result<&'static Images> {
    IMAGES
        .get_or_try_init(|| async {
            let profile = std::env::var("VOICE_AGENTS_IMAGE_PROFILE").unwrap_or_else(|_| IMAGE_PROFILE.to_owned());
            let mut cmd = Command::new(workspace::root().join("tests/cluster/images"));
            cmd.args(["--import", "--profile", &profile, "agent", "operator"])
                .env("VOICE_AGENTS_CLUSTER_REAL_NODE", "1")
                .stderr(Stdio::inherit());
            let out = run(&mut cmd, BUILD_TIMEOUT).await?;
            if !out.success {
                bail!("tests/cluster/images failed (its messages are above)");
            }
            let image = |name: &str| -> anyhow::Result<Image> {
                let line = out
                    .stdout
                    .lines()
                    .find_map(|l| l.strip_prefix(&format!("{name}=")))
                    .ok_or_else(|| anyhow!("tests/cluster/images printed no {name} image:\n{}", out.stdout))?;
                let (reference, archive) = line
                    .split_once(' ')
                    .ok_or_else(|| anyhow!("unexpected line from tests/cluster/images: {line}"))?;
                Ok(Image {
                    reference: reference.to_owned(),
                    archive: PathBuf::from(archive),
                })
            };
            Ok(Images {
                agent: image("agent")?,
                operator: image("operator")?,
            })
        })
        .await
}

/// The operator's Helm release and namespace on the real node, shared by the suites there.
pub const RELEASE: &str = "voice-operator";
pub const OPERATOR_NAMESPACE: &str = "voice-system";
/// Starting pods on a real node (image unpack, probes) on a busy 2-core machine.
pub const POD_WAIT: Duration = Duration::from_secs(240);

/// The images, imported, once the chart has installed the operator from them.
static OPERATOR: OnceCell<&'static Images> = OnceCell::const_new();

/// The real-node cluster with the images imported and the operator installed by its chart,
/// once per test process.
pub async fn platform() -> (&'static TestCluster, &'static Images) {
    let cluster = TestCluster::real_node().await;
    let images = OPERATOR
        .get_or_try_init(|| async {
            let images = images().await?;
            install_operator(cluster, images).await?;
            anyhow::Ok(images)
        })
        .await
        .unwrap_or_else(|e| panic!("installing the operator on the real node: {e:#}"));
    (cluster, images)
}

/// A namespace that enforces the `restricted` Pod Security Standard.
pub async fn restricted_namespace(cluster: &'static TestCluster, prefix: &str) -> TestNamespace {
    let ns = cluster.namespace(prefix).await;
    label_restricted(cluster, ns.name()).await;
    ns
}

async fn label_restricted(cluster: &TestCluster, namespace: &str) {
    run_ok(cluster.kubectl().args([
        "label",
        "--overwrite",
        "namespace",
        namespace,
        "pod-security.kubernetes.io/enforce=restricted",
        "pod-security.kubernetes.io/enforce-version=latest",
    ]))
    .await
    .expect("label the namespace restricted");
}

/// `helm upgrade --install` of the chart with the locally built images, on the real node.
async fn install_operator(cluster: &'static TestCluster, images: &Images) -> anyhow::Result<()> {
    let (repository, tag) = images
        .operator
        .reference
        .rsplit_once(':')
        .ok_or_else(|| anyhow::anyhow!("image reference without a tag: {}", images.operator.reference))?;
    let values = json!({
        "image": {"repository": repository, "tag": tag, "pullPolicy": "Never"},
        "agentImage": images.agent.reference,
        "logFormat": "text",
        "nodeSelector": {REAL_NODE_LABEL.0: REAL_NODE_LABEL.1},
        "tolerations": [toleration()],
    });
    let file = std::env::temp_dir().join(format!("voice-e2e-node-values-{}.json", std::process::id()));
    std::fs::write(&file, values.to_string())?;
    let _ = cluster
        .kubectl()
        .args(["create", "namespace", OPERATOR_NAMESPACE])
        .output()
        .await;
    label_restricted(cluster, OPERATOR_NAMESPACE).await;
    let out = run(
        cluster
            .helm()
            .args(["upgrade", "--install", RELEASE])
            .arg(workspace::chart())
            .args(["--namespace", OPERATOR_NAMESPACE, "--wait", "--timeout", "5m", "-f"])
            .arg(&file),
        Duration::from_secs(330),
    )
    .await?;
    let _ = std::fs::remove_file(&file);
    anyhow::ensure!(out.success, "helm install failed:\n{}{}", out.stdout, out.stderr);
    Ok(())
}

/// The pods of VoiceAgent `name`.
pub async fn agent_pods(ns: &TestNamespace, name: &str) -> Vec<Pod> {
    let pods: Api<Pod> = ns.api();
    pods.list(&ListParams::default().labels(&format!(
        "app.kubernetes.io/name=voice-agent,app.kubernetes.io/instance={name}"
    )))
    .await
    .expect("list pods")
    .items
}

pub fn pod_ip(pod: &Pod) -> IpAddr {
    pod.status
        .as_ref()
        .and_then(|s| s.pod_ip.as_deref())
        .and_then(|ip| ip.parse().ok())
        .unwrap_or_else(|| panic!("pod {:?} has no IP", pod.metadata.name))
}

pub fn is_ready(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_none()
        && pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Waits for `name` to be Ready with `replicas` Ready pods on the real node; returns them.
pub async fn ready_pods(ns: &TestNamespace, name: &str, replicas: usize) -> Vec<Pod> {
    let agents: Api<VoiceAgent> = ns.api();
    or_describe(wait_ready(&agents, name, POD_WAIT).await, ns, name).await;
    eventually(&format!("{replicas} Ready pods of {name}"), POD_WAIT, || async {
        let pods: Vec<Pod> = agent_pods(ns, name).await.into_iter().filter(is_ready).collect();
        Ok((pods.len() == replicas).then_some(pods))
    })
    .await
    .unwrap_or_else(|e| panic!("{e:#}"))
}

/// `result`'s value, or a panic with the error and `kubectl describe` of `name`'s pods.
pub async fn or_describe<T, E: std::fmt::Display>(result: Result<T, E>, ns: &TestNamespace, name: &str) -> T {
    match result {
        Ok(value) => value,
        Err(e) => panic!("{e:#}\n{}", describe(ns, name).await),
    }
}

/// `kubectl describe` of a VoiceAgent's pods, for failure messages.
pub async fn describe(ns: &TestNamespace, name: &str) -> String {
    let out = ns
        .kubectl()
        .args(["describe", "pods", "-l", &format!("app.kubernetes.io/instance={name}")])
        .output()
        .await;
    out.map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

/// The toleration of the real node's taint.
pub fn toleration() -> Toleration {
    Toleration {
        key: Some(REAL_NODE_TAINT.to_owned()),
        operator: Some("Exists".to_owned()),
        effect: Some("NoSchedule".to_owned()),
        ..Toleration::default()
    }
}

/// `spec.pod` of a VoiceAgent whose pods run on the real node, as YAML flow mappings.
pub fn voice_agent_pod_yaml() -> String {
    format!(
        "{{nodeSelector: {{{key}: {value}}}, tolerations: [{{key: {REAL_NODE_TAINT}, operator: Exists, effect: NoSchedule}}]}}",
        key = REAL_NODE_LABEL.0,
        value = REAL_NODE_LABEL.1
    )
}

/// Runs the harness's isolation check: every pod network namespace of the node routes only to
/// the pod and Service ranges, and the forwarding rules that drop anything else are in place.
/// Returns its report.
pub async fn check_isolation() -> anyhow::Result<String> {
    let mut cmd = Command::new(workspace::root().join("tests/cluster/check-node"));
    cmd.env("VOICE_AGENTS_CLUSTER_REAL_NODE", "1");
    let out = run(&mut cmd, std::time::Duration::from_secs(60)).await?;
    if !out.success {
        bail!("the real node's isolation check failed:\n{}{}", out.stdout, out.stderr);
    }
    Ok(out.stdout)
}

/// The host pids of the processes of container `container` of `pod` (found by the pod's UID and
/// the container's id in their cgroup paths).
pub fn container_pids(pod: &Pod, container: &str) -> anyhow::Result<Vec<u32>> {
    let uid = pod
        .metadata
        .uid
        .as_deref()
        .ok_or_else(|| anyhow!("the pod has no UID"))?;
    let id = pod
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.name == container))
        .and_then(|c| c.container_id.as_deref())
        .and_then(|id| id.rsplit_once("://").map(|(_, id)| id.to_owned()))
        .ok_or_else(|| anyhow!("container {container} has no id yet"))?;
    // The kubelet's cgroupfs driver: .../kubepods/<qos>/pod<uid>/<container id>.
    let cgroup_part = format!("pod{uid}/{id}");
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").context("reading /proc")? {
        let Ok(entry) = entry else { continue };
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        if let Ok(cgroups) = std::fs::read_to_string(entry.path().join("cgroup"))
            && cgroups.lines().any(|l| l.contains(&cgroup_part))
        {
            pids.push(pid);
        }
    }
    Ok(pids)
}
