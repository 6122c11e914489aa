//! Smoke tests of the local test cluster through the `voice_e2e::cluster`
//! helper: the same guarantees as `tests/cluster/smoke`, seen from Rust.
//!
//! They need the cluster binaries (built on first use, minutes) and are
//! therefore ignored by default:
//! `cargo test -p voice-e2e --test cluster_smoke -- --ignored`.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec, ReplicaSet};
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, Pod, PodSpec, PodTemplateSpec, Service, ServicePort, ServiceSpec,
};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::conditions;
use kube::runtime::wait::await_condition;
use kube::{CustomResource, CustomResourceExt};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use voice_e2e::cluster::{TestCluster, TestNamespace};
use voice_e2e::command::run_ok;
use voice_e2e::wait::eventually;

fn labels(app: &str) -> BTreeMap<String, String> {
    [("app".to_owned(), app.to_owned())].into()
}

/// A Deployment whose image is never pulled: kwok runs no containers.
fn deployment(app: &str, replicas: i32) -> Deployment {
    Deployment {
        metadata: ObjectMeta {
            name: Some(app.to_owned()),
            ..ObjectMeta::default()
        },
        spec: Some(DeploymentSpec {
            replicas: Some(replicas),
            selector: LabelSelector {
                match_labels: Some(labels(app)),
                ..LabelSelector::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels(app)),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    containers: vec![Container {
                        name: "main".to_owned(),
                        image: Some("registry.invalid/voice-agents/never-pulled:1".to_owned()),
                        ports: Some(vec![ContainerPort {
                            container_port: 8080,
                            ..ContainerPort::default()
                        }]),
                        ..Container::default()
                    }],
                    ..PodSpec::default()
                }),
            },
            ..DeploymentSpec::default()
        }),
        ..Deployment::default()
    }
}

async fn deploy_and_wait_available(ns: &TestNamespace, app: &str, replicas: i32) {
    let deployments: Api<Deployment> = ns.api();
    deployments
        .create(&PostParams::default(), &deployment(app, replicas))
        .await
        .expect("create deployment");
    let available = await_condition(deployments, app, |d: Option<&Deployment>| {
        d.and_then(|d| d.status.as_ref())
            .is_some_and(|s| s.available_replicas == Some(replicas))
    });
    tokio::time::timeout(Duration::from_secs(90), available)
        .await
        .expect("deployment did not become available within 90s")
        .expect("watching the deployment");
}

fn pod_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

#[tokio::test]
#[ignore = "needs the local cluster (tests/cluster/up)"]
async fn deployment_runs_ready_pods_on_kwok_nodes() {
    let ns = TestCluster::shared().await.namespace("smoke-deploy").await;
    deploy_and_wait_available(&ns, "web", 2).await;

    let pods: Api<Pod> = ns.api();
    let list = pods
        .list(&ListParams::default().labels("app=web"))
        .await
        .expect("list pods");
    assert_eq!(list.items.len(), 2);
    for pod in &list.items {
        let status = pod.status.as_ref().expect("pod status");
        assert_eq!(status.phase.as_deref(), Some("Running"));
        assert!(pod_ready(pod), "pod not Ready: {status:?}");
        assert!(status.pod_ip.is_some(), "pod has no IP");
        let node = pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.as_deref())
            .expect("scheduled");
        assert!(node.starts_with("kwok-node-"), "scheduled on {node}");
    }
}

#[tokio::test]
#[ignore = "needs the local cluster (tests/cluster/up)"]
async fn service_gets_endpoint_slices() {
    let ns = TestCluster::shared().await.namespace("smoke-service").await;
    deploy_and_wait_available(&ns, "api", 2).await;
    let service = Service {
        metadata: ObjectMeta {
            name: Some("api".to_owned()),
            ..ObjectMeta::default()
        },
        spec: Some(ServiceSpec {
            selector: Some(labels("api")),
            ports: Some(vec![ServicePort {
                port: 80,
                target_port: Some(IntOrString::Int(8080)),
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    };
    ns.api::<Service>()
        .create(&PostParams::default(), &service)
        .await
        .expect("create service");

    let slices: Api<EndpointSlice> = ns.api();
    let by_service = ListParams::default().labels("kubernetes.io/service-name=api");
    eventually("two ready endpoints", Duration::from_secs(60), || async {
        let list = slices.list(&by_service).await?;
        let ready = list
            .items
            .iter()
            .flat_map(|s| s.endpoints.iter().flatten())
            .filter(|e| e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(false))
            .count();
        Ok((ready == 2).then_some(()))
    })
    .await
    .expect("endpoints");
}

#[tokio::test]
#[ignore = "needs the local cluster (tests/cluster/up)"]
async fn deleting_a_deployment_collects_replicasets_and_pods() {
    let ns = TestCluster::shared().await.namespace("smoke-gc").await;
    deploy_and_wait_available(&ns, "gc", 2).await;
    let by_app = ListParams::default().labels("app=gc");
    let replicasets: Api<ReplicaSet> = ns.api();
    let pods: Api<Pod> = ns.api();
    assert!(!replicasets.list(&by_app).await.expect("list").items.is_empty());

    ns.api::<Deployment>()
        .delete("gc", &DeleteParams::background())
        .await
        .expect("delete deployment");
    eventually(
        "ReplicaSets and Pods to be collected",
        Duration::from_secs(60),
        || async {
            let rs = replicasets.list(&by_app).await?.items.len();
            let po = pods.list(&by_app).await?.items.len();
            Ok((rs == 0 && po == 0).then_some(()))
        },
    )
    .await
    .expect("garbage collected");
}

/// A custom resource only these tests use.
#[derive(CustomResource, Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[kube(
    group = "e2e-smoke.voice-agents.dev",
    version = "v1",
    kind = "Gadget",
    namespaced,
    status = "GadgetStatus"
)]
pub struct GadgetSpec {
    size: u32,
    #[serde(default)]
    tags: Vec<String>,
}

#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
pub struct GadgetStatus {
    phase: String,
}

#[tokio::test]
#[ignore = "needs the local cluster (tests/cluster/up)"]
async fn crd_is_served_and_custom_resources_round_trip() {
    let ns = TestCluster::shared().await.namespace("smoke-crd").await;
    let client = ns.client();
    // CRDs are cluster-wide: applied (idempotently) and left in place, since
    // another test process may be using it at the same time.
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd = Gadget::crd();
    let name = crd.metadata.name.clone().expect("crd name");
    crds.patch(&name, &PatchParams::apply("voice-e2e").force(), &Patch::Apply(&crd))
        .await
        .expect("apply crd");
    tokio::time::timeout(
        Duration::from_secs(30),
        await_condition(crds, &name, conditions::is_crd_established()),
    )
    .await
    .expect("crd not established within 30s")
    .expect("watch crd");

    let gadgets: Api<Gadget> = ns.api();
    let spec = GadgetSpec {
        size: 3,
        tags: vec!["blue".to_owned()],
    };
    // Discovery of a new CRD can lag a moment behind Established.
    let created = eventually("the Gadget to be created", Duration::from_secs(30), || async {
        let gadget = Gadget::new("one", spec.clone());
        Ok(Some(gadgets.create(&PostParams::default(), &gadget).await?))
    })
    .await
    .expect("create gadget");
    assert_eq!(created.spec, spec);
    let status = serde_json::json!({ "status": { "phase": "Ready" } });
    gadgets
        .patch_status("one", &PatchParams::default(), &Patch::Merge(&status))
        .await
        .expect("patch status");
    let read = gadgets.get("one").await.expect("get gadget");
    assert_eq!(read.spec, spec);
    assert_eq!(
        read.status,
        Some(GadgetStatus {
            phase: "Ready".to_owned()
        })
    );
    // kubectl sees it too.
    let out = ns
        .kubectl_ok(["get", "gadgets", "one", "-o", "jsonpath={.spec.size}"])
        .await
        .expect("kubectl get gadget");
    assert_eq!(out, "3");
}

#[tokio::test]
#[ignore = "needs the local cluster (tests/cluster/up)"]
async fn service_account_without_rights_is_forbidden() {
    let ns = TestCluster::shared().await.namespace("smoke-rbac").await;
    let sa = ns
        .service_account_kubeconfig("nobody")
        .await
        .expect("service account kubeconfig");
    let as_sa: Api<Pod> = Api::namespaced(sa.client().await.expect("sa client"), ns.name());

    match as_sa.list(&ListParams::default()).await {
        Err(kube::Error::Api(status)) => {
            assert_eq!(status.code, 403, "{status:?}");
            assert!(status.message.contains(&sa.username()), "{}", status.message);
        }
        other => panic!("expected 403 Forbidden, got {other:?}"),
    }
    let out = sa
        .kubectl()
        .args(["get", "pods", "--namespace", ns.name()])
        .output()
        .await
        .expect("run kubectl");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Forbidden"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Granting a Role makes the same call work: the 403 came from RBAC.
    let role = Role {
        metadata: ObjectMeta {
            name: Some("pod-reader".to_owned()),
            ..ObjectMeta::default()
        },
        rules: Some(vec![PolicyRule {
            api_groups: Some(vec![String::new()]),
            resources: Some(vec!["pods".to_owned()]),
            verbs: vec!["get".to_owned(), "list".to_owned()],
            ..PolicyRule::default()
        }]),
    };
    ns.api::<Role>()
        .create(&PostParams::default(), &role)
        .await
        .expect("create role");
    let binding = RoleBinding {
        metadata: ObjectMeta {
            name: Some("nobody-reads-pods".to_owned()),
            ..ObjectMeta::default()
        },
        role_ref: RoleRef {
            api_group: Some("rbac.authorization.k8s.io".to_owned()),
            kind: "Role".to_owned(),
            name: "pod-reader".to_owned(),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".to_owned(),
            name: "nobody".to_owned(),
            namespace: Some(ns.name().to_owned()),
            ..Subject::default()
        }]),
    };
    ns.api::<RoleBinding>()
        .create(&PostParams::default(), &binding)
        .await
        .expect("create rolebinding");
    eventually("the RoleBinding to take effect", Duration::from_secs(30), || async {
        Ok(as_sa.list(&ListParams::default()).await.is_ok().then_some(()))
    })
    .await
    .expect("allowed");
}

#[tokio::test]
#[ignore = "needs the local cluster (tests/cluster/up)"]
async fn helm_and_kubectl_come_with_the_cluster() {
    let cluster = TestCluster::shared().await;
    let helm = run_ok(cluster.helm().args(["version", "--template", "{{.Version}}"]))
        .await
        .expect("helm version");
    assert!(helm.starts_with("v3."), "helm {helm}");
    let version = run_ok(cluster.kubectl().args(["version", "-o", "json"]))
        .await
        .expect("kubectl version");
    let version: serde_json::Value = serde_json::from_str(&version).expect("json");
    let client = version["clientVersion"]["gitVersion"].as_str();
    let server = version["serverVersion"]["gitVersion"].as_str();
    assert!(server.is_some_and(|v| v.starts_with("v1.36.")), "{version}");
    assert_eq!(client, server, "kubectl should match the server");
}
