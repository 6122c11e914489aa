//! The Deployment running the agent pods.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment};
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMapVolumeSource, Container, ContainerPort, EmptyDirVolumeSource, EnvVar, EnvVarSource,
    HTTPGetAction, KeyToPath, Lifecycle, LifecycleHandler, ObjectFieldSelector, PodSecurityContext, PodSpec,
    PodTemplateSpec, Probe, SeccompProfile, SecretVolumeSource, SecurityContext, SleepAction, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{PORT_NAME, configmap_name, labels, metadata, selector_labels};
use crate::reconcile::agent_config::{AGENT_PORT, CONFIG_DIR, CONFIG_FILE};
use crate::reconcile::mounts::MountedFile;
use crate::reconcile::references::SourceKind;
use crate::reconcile::validate::{Replicas, ValidatedAgent};

/// Name of the agent container.
pub const CONTAINER: &str = "agent";
/// Pod-template annotation with the digest of the configuration and every referenced value:
/// when any of them changes, the template changes and the pods roll.
pub const CHECKSUM_ANNOTATION: &str = "voiceagent.dev/config-checksum";
/// The non-root user and group the agent runs as (the `nonroot` user of distroless images).
const AGENT_UID: i64 = 65532;
/// File modes of mounted files: readable by owner and group (the pod's fsGroup), and for
/// ConfigMaps by everyone, since they hold nothing secret.
const CONFIGMAP_FILE_MODE: i32 = 0o444;
const SECRET_FILE_MODE: i32 = 0o440;
const KEPT_REVISIONS: i32 = 5;

/// A Deployment that rolls one surge pod at a time without ever going below the wanted count,
/// and whose pods drain live sessions before they stop.
pub fn build_deployment(agent: &ValidatedAgent) -> Deployment {
    let replicas = match &agent.replicas {
        Replicas::Fixed(n) => Some(*n),
        // The HPA owns the count; leaving the field out of the apply leaves it alone.
        Replicas::Autoscaled(_) => None,
    };
    let mut pod_labels = agent.pod.labels.clone();
    pod_labels.extend(labels(&agent.name));
    let mut annotations = agent.pod.annotations.clone();
    annotations.insert(CHECKSUM_ANNOTATION.into(), agent.checksum.clone());

    Deployment {
        metadata: metadata(agent, agent.name.clone()),
        spec: Some(DeploymentSpec {
            replicas,
            revision_history_limit: Some(KEPT_REVISIONS),
            selector: LabelSelector {
                match_labels: Some(selector_labels(&agent.name)),
                ..LabelSelector::default()
            },
            strategy: Some(DeploymentStrategy {
                type_: Some("RollingUpdate".into()),
                rolling_update: Some(RollingUpdateDeployment {
                    max_unavailable: Some(IntOrString::Int(0)),
                    max_surge: Some(IntOrString::String("25%".into())),
                }),
            }),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(pod_labels),
                    annotations: Some(annotations),
                    ..ObjectMeta::default()
                }),
                spec: Some(pod_spec(agent)),
            },
            ..DeploymentSpec::default()
        }),
        ..Deployment::default()
    }
}

fn pod_spec(agent: &ValidatedAgent) -> PodSpec {
    let pod = &agent.pod;
    PodSpec {
        service_account_name: agent.service_account_name.clone(),
        automount_service_account_token: Some(pod.automount_service_account_token.unwrap_or(false)),
        // Service environment variables are noise to the agent and grow with the namespace.
        enable_service_links: Some(false),
        termination_grace_period_seconds: Some(agent.shutdown.grace_period_secs),
        security_context: Some(PodSecurityContext {
            run_as_non_root: Some(true),
            run_as_user: Some(AGENT_UID),
            run_as_group: Some(AGENT_UID),
            fs_group: Some(AGENT_UID),
            seccomp_profile: Some(SeccompProfile {
                type_: "RuntimeDefault".into(),
                ..SeccompProfile::default()
            }),
            ..PodSecurityContext::default()
        }),
        node_selector: Some(pod.node_selector.clone()).filter(|m: &BTreeMap<_, _>| !m.is_empty()),
        tolerations: Some(pod.tolerations.clone()).filter(|v| !v.is_empty()),
        affinity: pod.affinity.clone(),
        topology_spread_constraints: Some(pod.topology_spread_constraints.clone()).filter(|v| !v.is_empty()),
        priority_class_name: pod.priority_class_name.clone(),
        image_pull_secrets: Some(pod.image_pull_secrets.clone()).filter(|v| !v.is_empty()),
        containers: vec![container(agent)],
        volumes: Some(volumes(agent)),
        ..PodSpec::default()
    }
}

fn container(agent: &ValidatedAgent) -> Container {
    let probe = |path: &str, period: i32, failures: i32| Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::String(PORT_NAME.into()),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period),
        timeout_seconds: Some(2),
        failure_threshold: Some(failures),
        ..Probe::default()
    };
    let mut mounts = vec![
        VolumeMount {
            name: "config".into(),
            mount_path: CONFIG_DIR.into(),
            read_only: Some(true),
            ..VolumeMount::default()
        },
        VolumeMount {
            name: "tmp".into(),
            mount_path: "/tmp".into(),
            ..VolumeMount::default()
        },
    ];
    mounts.extend(agent.files.iter().map(|f| VolumeMount {
        name: f.volume.clone(),
        mount_path: f.dir.clone(),
        read_only: Some(true),
        ..VolumeMount::default()
    }));
    Container {
        name: CONTAINER.into(),
        image: Some(agent.image.clone()),
        image_pull_policy: agent.image_pull_policy.map(|p| p.as_str().to_owned()),
        args: Some(vec!["--config".into(), format!("{CONFIG_DIR}/{CONFIG_FILE}")]),
        ports: Some(vec![ContainerPort {
            name: Some(PORT_NAME.into()),
            container_port: i32::from(AGENT_PORT),
            protocol: Some("TCP".into()),
            ..ContainerPort::default()
        }]),
        env: Some(env(agent)),
        env_from: Some(agent.pod.env_from.clone()).filter(|v| !v.is_empty()),
        resources: Some(agent.resources.clone()),
        // Readiness fails at once when the agent starts draining, taking it out of the
        // Service while its live sessions continue.
        readiness_probe: Some(probe("/readyz", 5, 2)),
        liveness_probe: Some(probe("/healthz", 10, 3)),
        lifecycle: Some(Lifecycle {
            // Keep serving while endpoint removal reaches every proxy, then SIGTERM starts the
            // drain. `sleep` needs no shell in the image.
            pre_stop: Some(LifecycleHandler {
                sleep: Some(SleepAction {
                    seconds: agent.shutdown.pre_stop_secs,
                }),
                ..LifecycleHandler::default()
            }),
            ..Lifecycle::default()
        }),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            run_as_non_root: Some(true),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".into()]),
                ..Capabilities::default()
            }),
            ..SecurityContext::default()
        }),
        volume_mounts: Some(mounts),
        ..Container::default()
    }
}

/// Where the pod runs, from the downward API (the agent labels its traces with it), then the
/// user's variables, which come later and so win over ours.
fn env(agent: &ValidatedAgent) -> Vec<EnvVar> {
    let field = |name: &str, path: &str| EnvVar {
        name: name.into(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: path.into(),
                ..ObjectFieldSelector::default()
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    };
    let mut env = vec![
        field("POD_NAMESPACE", "metadata.namespace"),
        field("POD_NAME", "metadata.name"),
    ];
    env.extend(agent.pod.env.iter().cloned());
    env
}

fn volumes(agent: &ValidatedAgent) -> Vec<Volume> {
    let mut volumes = vec![
        Volume {
            name: "config".into(),
            config_map: Some(ConfigMapVolumeSource {
                name: configmap_name(&agent.name),
                default_mode: Some(CONFIGMAP_FILE_MODE),
                ..ConfigMapVolumeSource::default()
            }),
            ..Volume::default()
        },
        Volume {
            name: "tmp".into(),
            empty_dir: Some(EmptyDirVolumeSource::default()),
            ..Volume::default()
        },
    ];
    volumes.extend(agent.files.iter().map(file_volume));
    volumes
}

fn file_volume(file: &MountedFile) -> Volume {
    let items = Some(vec![KeyToPath {
        key: file.key.clone(),
        path: file.file.into(),
        ..KeyToPath::default()
    }]);
    match file.kind {
        SourceKind::ConfigMap => Volume {
            name: file.volume.clone(),
            config_map: Some(ConfigMapVolumeSource {
                name: file.source.clone(),
                items,
                default_mode: Some(CONFIGMAP_FILE_MODE),
                ..ConfigMapVolumeSource::default()
            }),
            ..Volume::default()
        },
        SourceKind::Secret => Volume {
            name: file.volume.clone(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(file.source.clone()),
                items,
                default_mode: Some(SECRET_FILE_MODE),
                ..SecretVolumeSource::default()
            }),
            ..Volume::default()
        },
    }
}

#[cfg(test)]
mod tests;
