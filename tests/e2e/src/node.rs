//! The real node of the local cluster ([`TestCluster::real_node`]): the images it runs, built
//! here by `tests/cluster/images` and imported into its containerd, and what the suites check
//! on the machine itself (pod network isolation, container processes).

use std::path::PathBuf;
use std::process::Stdio;

use anyhow::{Context as _, anyhow, bail};
use k8s_openapi::api::core::v1::{Pod, Toleration};
use tokio::process::Command;
use tokio::sync::OnceCell;

use crate::cluster::{REAL_NODE_LABEL, REAL_NODE_TAINT};
use crate::command::run;
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

/// Builds the agent and operator images (release builds, then the images, both cached) and
/// imports them into the real node's containerd, once per test process. Start the real-node
/// cluster first ([`crate::TestCluster::real_node`]).
pub async fn images() -> anyhow::Result<&'static Images> {
    IMAGES
        .get_or_try_init(|| async {
            let mut cmd = Command::new(workspace::root().join("tests/cluster/images"));
            cmd.args(["--import", "agent", "operator"])
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
