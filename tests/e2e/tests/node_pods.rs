//! Real pods on the real node (kubelet + containerd, `TestCluster::real_node`), from the images
//! `tests/cluster/images` builds here: `helm install` runs the operator as a pod from its image
//! with the chart's ServiceAccount, RBAC, leader election and metrics; VoiceAgents become Ready
//! because the agents' `/readyz` answered; conversations reach pods by their IPs and through a
//! Service (kube-proxy); a rotated token Secret reaches running pods through the kubelet's
//! volume update without a restart; a rollout drops no call; a SIGKILLed agent is restarted by
//! the kubelet; a missing Secret keeps `Accepted=False` with no pod; the NovaSonic provider in a
//! pod reaches the Bedrock fake through the mounted CA bundle. Every namespace enforces the
//! `restricted` Pod Security Standard, so the apiserver itself refuses any pod that breaks it.
//!
//! `cargo test -p voice-e2e --test node_pods -- --ignored` (needs root: see
//! tests/cluster/README.md, "The real node").

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Pod, Secret, Service};
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams};
use serde_json::json;
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::Command;
use voice_e2e::cluster::REAL_NODE_HOST_IP;
use voice_e2e::command::{COMMAND_TIMEOUT, pipe, run_ok};
use voice_e2e::conversation::{self, Ended};
use voice_e2e::node;
use voice_e2e::voiceagent::wait_condition;
use voice_e2e::wait::eventually;
use voice_e2e::{TestNamespace, http, workspace};
use voice_operator::api::{ACCEPTED, VoiceAgent};

const TURN: Duration = Duration::from_secs(20);
const NODE_NAME: &str = "va-node-0";
/// Callers opening new conversations through the Service during the rollout, each one after
/// the other (a conversation takes a few seconds: the simulated reply is spoken in real time).
const CALLERS: usize = 4;
/// The agent's port and the operator's admin port.
const AGENT_PORT: u16 = 8080;
const OPERATOR_ADMIN_PORT: u16 = 8081;

fn restarts(pod: &Pod) -> i32 {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .map(|cs| cs.iter().map(|c| c.restart_count).sum())
        .unwrap_or(0)
}

/// A VoiceAgent on the real node: the Simulated model, bearer tokens from Secret `tokens`,
/// small requests (a 2-core node holds the pods of every test at once), and `extra` lines
/// (indented for `spec`).
fn voice_agent(name: &str, replicas: u32, extra: &str) -> String {
    format!(
        r#"apiVersion: voiceagent.dev/v1alpha1
kind: VoiceAgent
metadata: {{name: {name}}}
spec:
  replicas: {replicas}
  imagePullPolicy: Never
  prompt: {{system: "You are the real-node test agent."}}
  auth: {{mode: Token, tokenSecretRef: {{name: tokens, key: tokens}}}}
  resources: {{requests: {{cpu: 50m, memory: 64Mi}}, limits: {{memory: 256Mi}}}}
  pod: {pod}
{extra}"#,
        pod = node::voice_agent_pod_yaml()
    )
}

async fn apply(ns: &TestNamespace, yaml: &str) {
    pipe(ns.kubectl().args(["apply", "-f", "-"]), yaml)
        .await
        .expect("kubectl apply");
}

/// A name part no other test or run uses.
fn unique() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

async fn put_tokens(ns: &TestNamespace, tokens: &str) {
    let secrets: Api<Secret> = ns.api();
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": "tokens"},
        "stringData": {"tokens": tokens},
    }))
    .expect("secret");
    secrets
        .patch(
            "tokens",
            &PatchParams::apply("node-e2e").force(),
            &Patch::Apply(&secret),
        )
        .await
        .expect("apply the token Secret");
}

/// One conversation with a typed turn, to `addr` with `token`.
async fn converse(addr: SocketAddr, token: &str) -> Result<(), String> {
    let mut ws = conversation::connect(addr, Some(token))
        .await
        .map_err(|e| format!("handshake with {addr}: {e}"))?;
    conversation::turn(&mut ws, "Hello from the node suite", TURN)
        .await
        .map_err(|e| format!("turn with {addr}: {e}"))?;
    let _ = ws.close(None).await;
    Ok(())
}

/// The handshake status `token` gets from `addr`.
async fn handshake(addr: SocketAddr, token: &str) -> u16 {
    let result = conversation::connect(addr, Some(token)).await;
    conversation::handshake_status(&result).unwrap_or_else(|e| panic!("{addr}: {e}"))
}

#[tokio::test]
#[ignore = "needs the local cluster with the real node (root; tests/cluster/README.md)"]
async fn the_chart_runs_the_operator_from_its_image_with_its_rbac_leader_election_and_metrics() {
    let (cluster, images) = node::platform().await;
    let client = cluster.client().await.expect("client");
    let pods: Api<Pod> = Api::namespaced(client.clone(), node::OPERATOR_NAMESPACE);
    let operator = eventually("the operator pod Ready", node::POD_WAIT, || async {
        let list = pods
            .list(&ListParams::default().labels(&format!(
                "app.kubernetes.io/name=voice-operator,app.kubernetes.io/instance={}",
                node::RELEASE
            )))
            .await?;
        Ok(list.items.into_iter().find(node::is_ready))
    })
    .await
    .expect("operator pod");
    let spec = operator.spec.as_ref().expect("pod spec");
    assert_eq!(spec.node_name.as_deref(), Some(NODE_NAME));
    assert_eq!(spec.service_account_name.as_deref(), Some(node::RELEASE));
    let container = &spec.containers[0];
    assert_eq!(container.image.as_deref(), Some(images.operator.reference.as_str()));
    // The restricted profile, as rendered (and enforced by the namespace's label).
    let security = container.security_context.as_ref().expect("security context");
    assert_eq!(security.read_only_root_filesystem, Some(true));
    assert_eq!(security.allow_privilege_escalation, Some(false));
    assert_eq!(
        security.capabilities.as_ref().and_then(|c| c.drop.clone()),
        Some(vec!["ALL".to_owned()])
    );
    let name = operator.metadata.name.clone().expect("pod name");

    // Leader election: the pod holds the chart's Lease.
    let leases: Api<Lease> = Api::namespaced(client, node::OPERATOR_NAMESPACE);
    eventually("the operator pod holds the Lease", node::POD_WAIT, || async {
        let lease = leases.get_opt("voice-operator").await?;
        let holder = lease.and_then(|l| l.spec).and_then(|s| s.holder_identity);
        Ok(holder.filter(|h| h.starts_with(&name)).map(|_| ()))
    })
    .await
    .expect("Lease held");

    // Metrics, from the pod itself on the admin port.
    let admin = SocketAddr::new(node::pod_ip(&operator), OPERATOR_ADMIN_PORT);
    let (status, body) = http::get(admin, "/metrics").await.expect("GET /metrics");
    assert_eq!(status, 200);
    assert!(
        body.contains("voice_operator_reconciliations_total") || body.contains("voice_operator_"),
        "operator metrics: {body}"
    );
    assert_eq!(restarts(&operator), 0, "the operator pod never restarted");

    // The agent's own pods are confined to the harness's network (no default route).
    node::check_isolation().await.expect("pods confined");
}

#[tokio::test]
#[ignore = "needs the local cluster with the real node (root; tests/cluster/README.md)"]
async fn real_pods_serve_conversations_and_pick_up_a_rotated_token_without_a_restart() {
    let (cluster, images) = node::platform().await;
    let ns = node::restricted_namespace(cluster, "node-agents").await;
    put_tokens(&ns, "token-a\n").await;
    apply(&ns, &voice_agent("pair", 2, "  session: {drainTimeout: 5s}\n")).await;
    let pods = node::ready_pods(&ns, "pair", 2).await;
    for pod in &pods {
        let spec = pod.spec.as_ref().expect("pod spec");
        assert_eq!(spec.node_name.as_deref(), Some(NODE_NAME));
        assert_eq!(
            spec.containers[0].image.as_deref(),
            Some(images.agent.reference.as_str())
        );
    }

    // Each pod by its IP: the mounted token Secret decides who gets in.
    for pod in &pods {
        let addr = SocketAddr::new(node::pod_ip(pod), AGENT_PORT);
        converse(addr, "token-a").await.expect("conversation with a pod");
        assert_eq!(handshake(addr, "token-b").await, 401, "an unknown token is refused");
    }
    // Through the Service (kube-proxy's rules on the node).
    let services: Api<Service> = ns.api();
    let service = services.get("pair").await.expect("Service");
    let cluster_ip: IpAddr = service
        .spec
        .and_then(|s| s.cluster_ip)
        .and_then(|ip| ip.parse().ok())
        .expect("ClusterIP");
    converse(SocketAddr::new(cluster_ip, AGENT_PORT), "token-a")
        .await
        .expect("conversation through the Service");

    // Rotation: the kubelet updates the mounted Secret; the agents re-read it.
    put_tokens(&ns, "token-b\n").await;
    for pod in &pods {
        let addr = SocketAddr::new(node::pod_ip(pod), AGENT_PORT);
        eventually(
            "the rotated token reaches the pod",
            Duration::from_secs(120),
            || async {
                Ok((handshake(addr, "token-b").await == 101 && handshake(addr, "token-a").await == 401).then_some(()))
            },
        )
        .await
        .expect("rotation");
        converse(addr, "token-b")
            .await
            .expect("conversation with the new token");
    }
    let after = node::agent_pods(&ns, "pair").await;
    let names = |pods: &[Pod]| -> Vec<Option<String>> {
        let mut names: Vec<_> = pods.iter().map(|p| p.metadata.name.clone()).collect();
        names.sort();
        names
    };
    assert_eq!(names(&after), names(&pods), "no pod was replaced");
    assert!(after.iter().all(|p| restarts(p) == 0), "no container restarted");

    let report = node::check_isolation().await.expect("pods confined");
    assert!(
        report.contains("checked") && !report.contains("checked 0 "),
        "the check saw the pods: {report}"
    );
}

#[tokio::test]
#[ignore = "needs the local cluster with the real node (root; tests/cluster/README.md)"]
async fn a_rollout_drops_no_call() {
    let (cluster, _) = node::platform().await;
    let ns = node::restricted_namespace(cluster, "node-rollout").await;
    put_tokens(&ns, "token\n").await;
    let agent = |revision: &str| {
        voice_agent("rolling", 2, "  session: {drainTimeout: 8s, maxDuration: 10m}\n").replace(
            "pod: {nodeSelector",
            &format!("pod: {{annotations: {{revision: \"{revision}\"}}, nodeSelector"),
        )
    };
    apply(&ns, &agent("1")).await;
    let old = node::ready_pods(&ns, "rolling", 2).await;
    let services: Api<Service> = ns.api();
    let cluster_ip: IpAddr = services
        .get("rolling")
        .await
        .expect("Service")
        .spec
        .and_then(|s| s.cluster_ip)
        .and_then(|ip| ip.parse().ok())
        .expect("ClusterIP");
    let service = SocketAddr::new(cluster_ip, AGENT_PORT);

    // Live conversations on the old pods: a turn every second until the agent closes them.
    let mut live = Vec::new();
    for pod in &old {
        for _ in 0..2 {
            let addr = SocketAddr::new(node::pod_ip(pod), AGENT_PORT);
            let mut ws = conversation::connect(addr, Some("token"))
                .await
                .expect("live handshake");
            conversation::turn(&mut ws, "first", TURN).await.expect("first turn");
            live.push(tokio::spawn(async move {
                let mut turns = 1u32;
                loop {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    match conversation::turn(&mut ws, "still here", TURN).await {
                        Ok(()) => turns += 1,
                        Err(ended) => return (turns, ended),
                    }
                }
            }));
        }
    }

    // New callers through the Service all along (a few at a time, each a whole conversation):
    // every handshake must succeed.
    let stop = Arc::new(tokio::sync::watch::channel(false).0);
    let attempts = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(tokio::sync::Mutex::new(Vec::<String>::new()));
    let mut callers = Vec::new();
    for _ in 0..CALLERS {
        let (mut stopped, attempts, failures) = (stop.subscribe(), attempts.clone(), failures.clone());
        callers.push(tokio::spawn(async move {
            while !*stopped.borrow() {
                attempts.fetch_add(1, Ordering::Relaxed);
                match conversation::connect(service, Some("token")).await {
                    Ok(mut ws) => {
                        // A caller that landed on a pod just before it drained may get the drain
                        // close; anything else is a failure.
                        match conversation::turn(&mut ws, "new caller", TURN).await {
                            Ok(()) | Err(Ended::Closed(Some((1012, _)))) => {}
                            Err(e) => failures.lock().await.push(format!("turn: {e}")),
                        }
                        let _ = ws.close(None).await;
                    }
                    Err(e) => failures.lock().await.push(format!("handshake: {e}")),
                }
                let _ = tokio::time::timeout(Duration::from_millis(200), stopped.changed()).await;
            }
        }));
    }

    let started = Instant::now();
    apply(&ns, &agent("2")).await;
    let old_names: Vec<String> = old.iter().filter_map(|p| p.metadata.name.clone()).collect();
    let deployments: Api<Deployment> = ns.api();
    let rolled_out = eventually(
        "the rollout completes and the old pods are gone",
        node::POD_WAIT,
        || async {
            let deployment = deployments.get("rolling").await?;
            let status = deployment.status.unwrap_or_default();
            let generation_seen = status.observed_generation == deployment.metadata.generation;
            let rolled = generation_seen
                && status.updated_replicas == Some(2)
                && status.available_replicas == Some(2)
                && status.replicas == Some(2);
            let pods = node::agent_pods(&ns, "rolling").await;
            let old_left = pods
                .iter()
                .any(|p| p.metadata.name.as_ref().is_some_and(|n| old_names.contains(n)));
            Ok((rolled && !old_left).then_some(()))
        },
    )
    .await;
    node::or_describe(rolled_out, &ns, "rolling").await;
    let rollout = started.elapsed();
    let _ = stop.send(true);
    for caller in callers {
        caller.await.expect("callers task");
    }

    let mut outcomes = Vec::new();
    for task in live {
        outcomes.push(
            tokio::time::timeout(Duration::from_secs(60), task)
                .await
                .expect("live call ended")
                .expect("join"),
        );
    }
    eprintln!(
        "rollout of 2 replicas with 4 live calls: {rollout:?} from the spec change until the old pods were gone; \
         {} new callers meanwhile; live calls: {outcomes:?}",
        attempts.load(Ordering::Relaxed)
    );
    let failures = failures.lock().await;
    assert!(
        failures.is_empty(),
        "new callers failed during the rollout: {failures:?}"
    );
    assert!(
        attempts.load(Ordering::Relaxed) > 10,
        "callers kept coming during the rollout"
    );
    for (turns, outcome) in &outcomes {
        match outcome {
            Ended::Closed(Some((1012, _))) => assert!(*turns >= 2, "the call was served until the drain close"),
            other => panic!("a live call on an old pod ended ({other}) instead of with the drain close (1012)"),
        }
    }
}

#[tokio::test]
#[ignore = "needs the local cluster with the real node (root; tests/cluster/README.md)"]
async fn a_killed_agent_is_restarted_and_a_missing_secret_starts_no_pod() {
    let (cluster, _) = node::platform().await;
    let ns = node::restricted_namespace(cluster, "node-crash").await;
    put_tokens(&ns, "token\n").await;
    apply(&ns, &voice_agent("crashing", 1, "")).await;
    let pod = node::ready_pods(&ns, "crashing", 1).await.remove(0);
    let pids = node::container_pids(&pod, "agent").expect("container processes");
    assert!(!pids.is_empty(), "found the agent's processes");
    for pid in &pids {
        run_ok(Command::new("kill").args(["-KILL", &pid.to_string()]))
            .await
            .expect("kill");
    }
    let name = pod.metadata.name.clone().expect("name");
    let pods: Api<Pod> = ns.api();
    let restarted = eventually("the kubelet restarts the agent", node::POD_WAIT, || async {
        let pod = pods.get(&name).await?;
        Ok((restarts(&pod) >= 1 && node::is_ready(&pod)).then_some(pod))
    })
    .await;
    let restarted = node::or_describe(restarted, &ns, "crashing").await;
    let last = restarted
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|cs| cs.first())
        .and_then(|c| c.last_state.as_ref())
        .and_then(|s| s.terminated.as_ref())
        .map(|t| t.exit_code);
    assert_eq!(last, Some(137), "the previous run ended by SIGKILL");
    converse(SocketAddr::new(node::pod_ip(&restarted), AGENT_PORT), "token")
        .await
        .expect("conversation after the restart");

    // A VoiceAgent whose token Secret does not exist: refused, and nothing runs.
    apply(
        &ns,
        &voice_agent("unkeyed", 1, "").replace("tokenSecretRef: {name: tokens", "tokenSecretRef: {name: absent"),
    )
    .await;
    let agents: Api<VoiceAgent> = ns.api();
    wait_condition(
        &agents,
        "unkeyed",
        ACCEPTED,
        "False",
        "ReferenceNotFound",
        node::POD_WAIT,
    )
    .await
    .expect("Accepted=False");
    tokio::time::sleep(Duration::from_secs(5)).await;
    let deployments: Api<Deployment> = ns.api();
    assert!(
        deployments.get_opt("unkeyed").await.expect("get").is_none(),
        "no Deployment"
    );
    assert!(node::agent_pods(&ns, "unkeyed").await.is_empty(), "no pod");
}

/// The Bedrock fake, listening on the node's bridge address so pods reach it.
struct Fake {
    child: tokio::process::Child,
    endpoint: String,
    ca_pem: String,
    /// Holds the CA file; removed with the fake.
    dir: std::path::PathBuf,
}

impl Fake {
    async fn start() -> Fake {
        let binary = workspace::fake_bedrock_binary().await.expect("fake-bedrock builds");
        let dir = std::env::temp_dir().join(format!("voice-e2e-node-fake-{}", unique()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let ca_file = dir.join("ca.pem");
        let mut child = Command::new(binary)
            .args(["--listen", &format!("{REAL_NODE_HOST_IP}:0"), "--ca-file"])
            .arg(&ca_file)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("fake-bedrock starts");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        tokio::time::timeout(COMMAND_TIMEOUT, BufReader::new(stdout).read_line(&mut line))
            .await
            .expect("the fake announces itself in time")
            .expect("read");
        let announced: serde_json::Value = serde_json::from_str(&line).expect("announcement");
        let endpoint = announced["endpoint"].as_str().expect("endpoint").to_owned();
        let ca_pem = std::fs::read_to_string(&ca_file).expect("CA file");
        Fake {
            child,
            endpoint,
            ca_pem,
            dir,
        }
    }

    /// The streams the fake has seen (its control endpoint).
    async fn streams(&self) -> Vec<serde_json::Value> {
        let url = format!("{}/_fake/streams", self.endpoint);
        let out = Command::new("curl")
            .args(["-fsS", "--max-time", "10", "-k", &url])
            .output()
            .await
            .expect("curl");
        serde_json::from_slice(&out.stdout).unwrap_or_default()
    }
}

impl Drop for Fake {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[tokio::test]
#[ignore = "needs the local cluster with the real node (root; tests/cluster/README.md)"]
async fn nova_sonic_in_a_pod_reaches_the_bedrock_fake_through_the_mounted_ca_bundle() {
    let (cluster, _) = node::platform().await;
    let ns = node::restricted_namespace(cluster, "node-nova").await;
    put_tokens(&ns, "token\n").await;
    let fake = Fake::start().await;
    let ca: BTreeMap<String, String> = [("ca.pem".to_owned(), fake.ca_pem.clone())].into();
    let configmap = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "fake-ca"}, "data": ca});
    apply(&ns, &configmap.to_string()).await;
    let spec = voice_agent("nova", 1, "")
        .replace(
            "  imagePullPolicy: Never\n",
            &format!(
                "  imagePullPolicy: Never\n  model:\n    provider: NovaSonic\n    novaSonic:\n      region: us-east-1\n      endpointUrl: {}\n      caBundle: {{name: fake-ca, key: ca.pem}}\n",
                fake.endpoint
            ),
        )
        .replace(
            "pod: {nodeSelector",
            "pod: {env: [{name: AWS_ACCESS_KEY_ID, value: AKIDEXAMPLE}, {name: AWS_SECRET_ACCESS_KEY, value: not-a-real-secret}], nodeSelector",
        );
    apply(&ns, &spec).await;
    let pod = node::ready_pods(&ns, "nova", 1).await.remove(0);
    let conversation = converse(SocketAddr::new(node::pod_ip(&pod), AGENT_PORT), "token").await;
    node::or_describe(conversation, &ns, "nova").await;
    let streams = fake.streams().await;
    assert!(
        !streams.is_empty(),
        "the fake saw the pod's Bedrock stream (over TLS, verified with the mounted CA)"
    );
}

/// The `FROM ... AS <stage>` stage of the Dockerfile: its USER, EXPOSE, ENTRYPOINT and the
/// destinations of its COPY lines.
#[derive(Debug, Default)]
struct Stage {
    user: String,
    expose: Vec<String>,
    entrypoint: Vec<String>,
    copies: Vec<String>,
}

fn dockerfile_stage(dockerfile: &str, stage: &str) -> Stage {
    let mut current = None::<Stage>;
    for line in dockerfile.lines().map(str::trim) {
        if line.starts_with("FROM ") {
            if current.is_some() {
                break;
            }
            if line.to_ascii_lowercase().ends_with(&format!(" as {stage}")) {
                current = Some(Stage::default());
            }
            continue;
        }
        let Some(stage) = current.as_mut() else { continue };
        if let Some(user) = line.strip_prefix("USER ") {
            stage.user = user.trim().to_owned();
        } else if let Some(ports) = line.strip_prefix("EXPOSE ") {
            stage.expose = ports.split_whitespace().map(|p| format!("{p}/tcp")).collect();
        } else if let Some(entry) = line.strip_prefix("ENTRYPOINT ") {
            stage.entrypoint = serde_json::from_str(entry).expect("ENTRYPOINT in exec form");
        } else if line.starts_with("COPY ") {
            stage
                .copies
                .push(line.split_whitespace().last().unwrap_or_default().to_owned());
        }
    }
    current.unwrap_or_else(|| panic!("the Dockerfile has no stage {stage}"))
}

/// An image archive unpacked: its configuration and its root filesystem.
struct Unpacked {
    config: serde_json::Value,
    rootfs: std::path::PathBuf,
}

async fn unpack(archive: &std::path::Path) -> Unpacked {
    let dir = std::env::temp_dir().join(format!("voice-e2e-image-{}", unique()));
    let rootfs = dir.join("rootfs");
    std::fs::create_dir_all(&rootfs).expect("temp dir");
    run_ok(Command::new("tar").arg("-xf").arg(archive).arg("-C").arg(&dir))
        .await
        .expect("unpack the archive");
    let blob = |digest: &str| dir.join("blobs/sha256").join(digest.trim_start_matches("sha256:"));
    let read_json = |path: std::path::PathBuf| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(&path).expect("blob")).expect("JSON blob")
    };
    let index = read_json(dir.join("index.json"));
    let manifest = read_json(blob(index["manifests"][0]["digest"].as_str().expect("manifest digest")));
    let config = read_json(blob(manifest["config"]["digest"].as_str().expect("config digest")));
    for layer in manifest["layers"].as_array().expect("layers") {
        let digest = layer["digest"].as_str().expect("layer digest");
        run_ok(Command::new("tar").arg("-xf").arg(blob(digest)).arg("-C").arg(&rootfs))
            .await
            .expect("unpack a layer");
    }
    Unpacked { config, rootfs }
}

#[tokio::test]
#[ignore = "needs the local cluster with the real node (root; tests/cluster/README.md)"]
async fn the_images_built_here_match_the_dockerfile() {
    let (_, images) = node::platform().await;
    let dockerfile = std::fs::read_to_string(workspace::root().join("Dockerfile")).expect("Dockerfile");
    for (stage, image) in [("agent", &images.agent), ("operator", &images.operator)] {
        let expected = dockerfile_stage(&dockerfile, stage);
        let unpacked = unpack(&image.archive).await;
        let config = &unpacked.config["config"];
        assert_eq!(config["User"], expected.user.as_str(), "{stage}: user");
        let exposed: Vec<String> = config["ExposedPorts"]
            .as_object()
            .map(|ports| ports.keys().cloned().collect())
            .unwrap_or_default();
        assert_eq!(exposed, expected.expose, "{stage}: exposed ports");
        let entrypoint: Vec<String> = serde_json::from_value(config["Entrypoint"].clone()).expect("entrypoint");
        assert_eq!(entrypoint, expected.entrypoint, "{stage}: entrypoint");
        assert!(config["Cmd"].is_null(), "{stage}: no CMD, as ENTRYPOINT leaves it");
        // distroless cc's environment: the CA bundle for every TLS client.
        assert!(
            config["Env"].as_array().is_some_and(|env| env
                .iter()
                .any(|e| e == "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt")),
            "{stage}: SSL_CERT_FILE"
        );
        let root = &unpacked.rootfs;
        for path in &expected.copies {
            let file = root.join(path.trim_start_matches('/'));
            let meta = std::fs::metadata(&file).unwrap_or_else(|_| panic!("{stage}: {path} is in the image"));
            assert!(
                std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o111 != 0,
                "{stage}: {path} is executable"
            );
        }
        // distroless cc-debian12:nonroot's layout: the CA bundle, the nonroot user and its home,
        // glibc and libgcc for the binaries, no shell.
        let bundle = std::fs::read_to_string(root.join("etc/ssl/certs/ca-certificates.crt")).expect("CA bundle");
        assert!(
            bundle.matches("BEGIN CERTIFICATE").count() > 100,
            "{stage}: the Mozilla CA set"
        );
        let passwd = std::fs::read_to_string(root.join("etc/passwd")).expect("/etc/passwd");
        assert!(
            passwd.lines().any(|l| l.starts_with("nonroot:x:65532:65532:")),
            "{stage}: nonroot user"
        );
        assert!(root.join("home/nonroot").is_dir(), "{stage}: nonroot's home");
        assert!(
            !root.join("bin/sh").exists() && !root.join("usr/bin/sh").exists(),
            "{stage}: no shell"
        );
        let binary = root.join(expected.copies[0].trim_start_matches('/'));
        let needed = run_ok(Command::new("objdump").arg("-p").arg(&binary))
            .await
            .expect("objdump");
        let libraries: Vec<&str> = needed
            .lines()
            .filter_map(|l| l.trim().strip_prefix("NEEDED"))
            .map(str::trim)
            .collect();
        assert!(!libraries.is_empty(), "{stage}: a dynamically linked binary");
        for library in libraries {
            assert!(
                ["lib/x86_64-linux-gnu", "usr/lib/x86_64-linux-gnu"]
                    .iter()
                    .any(|dir| root.join(dir).join(library).exists()),
                "{stage}: {library}, which the binary needs, is in the image"
            );
        }
        assert!(
            root.join("lib64/ld-linux-x86-64.so.2").exists(),
            "{stage}: the dynamic loader"
        );
        let _ = std::fs::remove_dir_all(root.parent().unwrap_or(root));
    }
}
