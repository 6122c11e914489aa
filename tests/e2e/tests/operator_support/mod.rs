//! Shared by the operator suites (`operator_*.rs`): a namespace with the operator's RBAC as the
//! Helm chart renders it, the operator binary running as a real process under that identity, a
//! count of its writes taken from the apiserver, and polling helpers.
//!
//! The binary is built by the first test of each test process (`cargo build -p voice-operator`,
//! a no-op when up to date), or taken from `$VOICE_OPERATOR_BIN`.

#![allow(dead_code)] // each suite uses a different subset

pub mod process;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::Api;
use tokio::sync::OnceCell;
use voice_e2e::cluster::{ServiceAccountKubeconfig, TestCluster, TestNamespace, run_ok};
use voice_operator::api::VoiceAgent;

pub use process::Operator;

/// Longest wait for anything the operator and the cluster do together.
pub const WAIT: Duration = Duration::from_secs(90);
/// Gateway API release whose HTTPRoute CRD the suites install.
const GATEWAY_API: &str = "sigs.k8s.io/gateway-api@v1.6.3";
/// The chart's templates of the operator's identity and its permissions.
const RBAC_TEMPLATES: [&str; 4] = [
    "templates/serviceaccount.yaml",
    "templates/clusterrole.yaml",
    "templates/bindings.yaml",
    "templates/leader-election.yaml",
];
/// Name of the operator's ServiceAccount in each test namespace.
pub const OPERATOR_ACCOUNT: &str = "voice-operator";

static CRDS: OnceCell<()> = OnceCell::const_new();

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A test namespace prepared for the operator.
pub struct OperatorEnv {
    pub ns: TestNamespace,
    pub account: ServiceAccountKubeconfig,
    /// Cluster-scoped objects made for this test, deleted on drop.
    cleanup: ClusterScoped,
    started: std::sync::atomic::AtomicUsize,
}

impl OperatorEnv {
    /// A namespace with the CRDs installed, the chart's RBAC for an operator that watches only
    /// this namespace, and a FlowSchema that counts the operator's writes.
    pub async fn new(prefix: &str) -> anyhow::Result<Self> {
        let cluster = TestCluster::shared().await;
        CRDS.get_or_try_init(|| install_crds(cluster)).await?;
        let ns = cluster.try_namespace(prefix).await?;
        let name = ns.name().to_owned();

        let rendered = std::env::temp_dir().join(format!("voice-e2e-{name}-rbac.yaml"));
        let mut helm = cluster.helm();
        helm.arg("template")
            .arg(&name)
            .arg(workspace().join("charts/voice-operator"))
            .args(["--namespace", &name])
            .args(["--set", &format!("watchNamespaces={{{name}}}")])
            .args(["--set", &format!("serviceAccount.name={OPERATOR_ACCOUNT}")]);
        // Only the identity and its roles: the CRD is installed once for all suites, and the
        // chart's Deployment would be a second operator.
        for template in RBAC_TEMPLATES {
            helm.args(["--show-only", template]);
        }
        let yaml = run_ok(&mut helm).await.context("rendering the chart's RBAC")?;
        std::fs::write(&rendered, yaml)?;
        let flow_schema = format!("e2e-writes-{name}");
        let cleanup = ClusterScoped {
            rendered: rendered.clone(),
            flow_schema: flow_schema.clone(),
            cluster,
        };
        run_ok(cluster.kubectl().arg("apply").arg("-f").arg(&rendered))
            .await
            .context("applying the chart's RBAC")?;
        let flow = flow_schema_yaml(&flow_schema, &name);
        apply_stdin(cluster, &flow).await?;
        let account = ns.service_account_kubeconfig(OPERATOR_ACCOUNT).await?;
        Ok(Self {
            ns,
            account,
            cleanup,
            started: Default::default(),
        })
    }

    pub fn name(&self) -> &str {
        self.ns.name()
    }

    /// Starts the operator with the suites' defaults plus `extra` flags.
    pub async fn start_operator(&self, extra: &[(&str, &str)]) -> anyhow::Result<Operator> {
        self.start_operator_with_env(extra, &[]).await
    }

    /// The same, with `variables` added to the operator's environment.
    pub async fn start_operator_with_env(
        &self,
        extra: &[(&str, &str)],
        variables: &[(&str, &str)],
    ) -> anyhow::Result<Operator> {
        let n = self.started.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Operator::start(self, n, extra, variables).await
    }

    /// `kubectl apply -n <ns> -f <path>` (path relative to the workspace).
    pub async fn apply_file(&self, path: &str) -> anyhow::Result<String> {
        let path = workspace().join(path).to_string_lossy().into_owned();
        self.ns.kubectl_ok(["apply", "-f", &path]).await
    }

    /// `kubectl apply -n <ns> -f -` with `yaml`.
    pub async fn apply_yaml(&self, yaml: &str) -> anyhow::Result<String> {
        let mut cmd = self.ns.kubectl();
        cmd.args(["apply", "-f", "-"]);
        pipe(cmd, yaml).await
    }

    /// The writes the operator's identity made to anything but its Lease, as counted by the
    /// apiserver (API Priority and Fairness dispatches the requests through this test's
    /// FlowSchema, which matches only them).
    pub async fn operator_writes(&self) -> anyhow::Result<u64> {
        let text = run_ok(self.ns.cluster().kubectl().args(["get", "--raw", "/metrics"])).await?;
        let needle = format!(
            "apiserver_flowcontrol_dispatched_requests_total{{flow_schema=\"{}\",",
            self.cleanup.flow_schema
        );
        Ok(text
            .lines()
            .filter(|l| l.starts_with(&needle))
            .filter_map(|l| l.rsplit(' ').next())
            .filter_map(|v| v.parse::<f64>().ok())
            .map(|v| v as u64)
            .sum())
    }

    pub fn agents(&self) -> Api<VoiceAgent> {
        self.ns.api()
    }

    /// Waits until `name` is `Ready=True` for its current generation.
    pub async fn wait_ready(&self, name: &str) -> anyhow::Result<VoiceAgent> {
        let agents = self.agents();
        eventually(&format!("VoiceAgent {name} Ready=True"), WAIT, || async {
            let Some(agent) = agents.get_opt(name).await? else {
                return Ok(None);
            };
            let current = agent.status.as_ref().and_then(|s| s.observed_generation) == agent.metadata.generation;
            let ready = condition(&agent, "Ready").is_some_and(|c| c.status == "True");
            Ok((current && ready).then_some(agent))
        })
        .await
    }

    /// Waits until condition `type_` of `name` has `status` and `reason`.
    pub async fn wait_condition(
        &self,
        name: &str,
        type_: &str,
        status: &str,
        reason: &str,
    ) -> anyhow::Result<Condition> {
        let agents = self.agents();
        eventually(
            &format!("VoiceAgent {name} {type_}={status} ({reason})"),
            WAIT,
            || async {
                let Some(agent) = agents.get_opt(name).await? else {
                    return Ok(None);
                };
                Ok(condition(&agent, type_)
                    .filter(|c| c.status == status && c.reason == reason)
                    .filter(|c| c.observed_generation == agent.metadata.generation)
                    .cloned())
            },
        )
        .await
    }
}

/// The condition of type `type_`.
pub fn condition<'a>(agent: &'a VoiceAgent, type_: &str) -> Option<&'a Condition> {
    agent.status.as_ref().and_then(|s| s.condition(type_))
}

/// Polls `f` every 250 ms until it yields a value, for at most `timeout`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut f: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<Option<T>>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    let mut last_error = None;
    loop {
        match f().await {
            Ok(Some(value)) => return Ok(value),
            Ok(None) => {}
            Err(err) => last_error = Some(err),
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(match last_error {
                Some(err) => anyhow!("timed out after {timeout:?} waiting for {what}; last error: {err:#}"),
                None => anyhow!("timed out after {timeout:?} waiting for {what}"),
            });
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Installs the VoiceAgent CRD and the Gateway API HTTPRoute CRD (idempotent; shared by
/// every test of the cluster).
async fn install_crds(cluster: &'static TestCluster) -> anyhow::Result<()> {
    let ours = workspace().join("crds/voiceagents.voiceagent.dev.yaml");
    let httproutes = gateway_api_crd(cluster).await?;
    for crd in [ours, httproutes] {
        run_ok(
            cluster
                .kubectl()
                .args(["apply", "--server-side", "--force-conflicts", "-f"])
                .arg(&crd),
        )
        .await
        .with_context(|| format!("installing {}", crd.display()))?;
    }
    run_ok(cluster.kubectl().args([
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        "crd/voiceagents.voiceagent.dev",
        "crd/httproutes.gateway.networking.k8s.io",
    ]))
    .await?;
    Ok(())
}

/// The standard HTTPRoute CRD of the pinned Gateway API release, from the Go module cache
/// (downloaded through the Go module proxy the first time, like the cluster's own modules).
async fn gateway_api_crd(cluster: &TestCluster) -> anyhow::Result<PathBuf> {
    let go = |args: &[&str]| {
        let mut cmd = tokio::process::Command::new("go");
        cmd.args(args)
            .env("PATH", go_path(cluster))
            .env("GOFLAGS", "-mod=mod")
            .current_dir(std::env::temp_dir())
            .stdin(Stdio::null())
            .kill_on_drop(true);
        cmd
    };
    let out = run_ok(&mut go(&["mod", "download", "-json", GATEWAY_API]))
        .await
        .context("fetching the Gateway API module (needs Go, like tests/cluster)")?;
    let info: serde_json::Value = serde_json::from_str(&out)?;
    let dir = info["Dir"]
        .as_str()
        .ok_or_else(|| anyhow!("go mod download printed no Dir: {out}"))?;
    let crd = Path::new(dir).join("config/crd/standard/gateway.networking.k8s.io_httproutes.yaml");
    if !crd.is_file() {
        bail!("{} is missing", crd.display());
    }
    Ok(crd)
}

fn go_path(cluster: &TestCluster) -> std::ffi::OsString {
    let mut path = cluster.path_env();
    path.push(":/usr/local/go/bin");
    path
}

fn flow_schema_yaml(name: &str, namespace: &str) -> String {
    format!(
        r#"apiVersion: flowcontrol.apiserver.k8s.io/v1
kind: FlowSchema
metadata:
  name: {name}
  labels: {{voice-agents.dev/e2e: "true"}}
spec:
  priorityLevelConfiguration: {{name: workload-low}}
  matchingPrecedence: 500
  distinguisherMethod: {{type: ByUser}}
  rules:
  - subjects:
    - kind: ServiceAccount
      serviceAccount: {{name: {OPERATOR_ACCOUNT}, namespace: {namespace}}}
    resourceRules:
    # Every write except to the leader Lease (coordination.k8s.io), whose renewals are the
    # election's heartbeat.
    - verbs: [create, update, patch, delete, deletecollection]
      apiGroups: ["", apps, networking.k8s.io, autoscaling, policy, voiceagent.dev, gateway.networking.k8s.io, events.k8s.io]
      resources: ["*"]
      namespaces: ["*"]
      clusterScope: true
"#
    )
}

async fn apply_stdin(cluster: &TestCluster, yaml: &str) -> anyhow::Result<String> {
    let mut cmd = cluster.kubectl();
    cmd.args(["apply", "-f", "-"]);
    pipe(cmd, yaml).await
}

/// Runs `cmd` with `input` on stdin; fails with its stderr unless it exits 0.
pub async fn pipe(mut cmd: tokio::process::Command, input: &str) -> anyhow::Result<String> {
    use tokio::io::AsyncWriteExt as _;
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let mut stdin = child.stdin.take().ok_or_else(|| anyhow!("no stdin"))?;
    stdin.write_all(input.as_bytes()).await?;
    drop(stdin);
    let out = child.wait_with_output().await?;
    if !out.status.success() {
        bail!("{:?} failed: {}", cmd.as_std(), String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Like [`pipe`], but returns (success, stderr) instead of failing.
pub async fn try_pipe(mut cmd: tokio::process::Command, input: &str) -> anyhow::Result<(bool, String)> {
    use tokio::io::AsyncWriteExt as _;
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let mut stdin = child.stdin.take().ok_or_else(|| anyhow!("no stdin"))?;
    stdin.write_all(input.as_bytes()).await?;
    drop(stdin);
    let out = child.wait_with_output().await?;
    Ok((out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned()))
}

/// Deletes the test's cluster-scoped objects (the chart's ClusterRoles and bindings, the
/// FlowSchema) when the test ends; namespaced ones go with the namespace.
struct ClusterScoped {
    rendered: PathBuf,
    flow_schema: String,
    cluster: &'static TestCluster,
}

impl Drop for ClusterScoped {
    fn drop(&mut self) {
        let kubectl = self
            .cluster
            .bin_dir()
            .map(|d| d.join("kubectl"))
            .unwrap_or_else(|| PathBuf::from("kubectl"));
        let run = |args: &[&std::ffi::OsStr]| {
            let _ = std::process::Command::new(&kubectl)
                .env("KUBECONFIG", self.cluster.kubeconfig_path())
                .args(args)
                .args(["--ignore-not-found", "--wait=false", "--request-timeout=20s"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        };
        run(&["delete".as_ref(), "-f".as_ref(), self.rendered.as_os_str()]);
        run(&["delete".as_ref(), "flowschema".as_ref(), self.flow_schema.as_ref()]);
        let _ = std::fs::remove_file(&self.rendered);
    }
}
