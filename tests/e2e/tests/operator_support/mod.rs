//! Shared by the operator suites (`operator_*.rs`): a namespace with the operator's RBAC as the
//! Helm chart renders it, the operator binary running as a real process under that identity
//! ([`Operator`]), and a count of its writes taken from the apiserver.
//!
//! The binary is built by the first test of each test process (`cargo build -p voice-operator`,
//! a no-op when up to date), or taken from `$VOICE_OPERATOR_BIN`.

#![allow(dead_code)] // each suite uses a different subset

pub mod mcp;
mod operator;

use std::path::PathBuf;
use std::process::Stdio;

use anyhow::Context as _;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::Api;
use tokio::sync::OnceCell;
use voice_e2e::cluster::{ServiceAccountKubeconfig, TestCluster, TestNamespace};
use voice_e2e::command::{pipe, run_ok};
use voice_e2e::wait::WAIT;
use voice_e2e::writes::WriteCounter;
use voice_e2e::{crds, voiceagent, workspace};
use voice_operator::api::VoiceAgent;

pub use operator::Operator;

/// The chart's templates of the operator's identity and its permissions.
const RBAC_TEMPLATES: [&str; 4] = [
    "templates/serviceaccount.yaml",
    "templates/clusterrole.yaml",
    "templates/bindings.yaml",
    "templates/leader-election.yaml",
];
/// The example manifests users start from (paths relative to the workspace).
pub const EXAMPLES: [&str; 11] = [
    "examples/simulated-smoke.yaml",
    "examples/ingress-nginx.yaml",
    "examples/aws-alb.yaml",
    "examples/gateway-api.yaml",
    "examples/gateway-api-istio.yaml",
    "examples/gateway-api-traefik.yaml",
    "examples/gateway-api-nginx-gateway-fabric.yaml",
    "examples/gateway-api-kgateway.yaml",
    "examples/gateway-api-cilium.yaml",
    "examples/secured.yaml",
    "examples/tool-servers.yaml",
];
/// Name of the operator's ServiceAccount in each test namespace.
pub const OPERATOR_ACCOUNT: &str = "voice-operator";

static CRDS: OnceCell<()> = OnceCell::const_new();

/// A test namespace prepared for the operator.
pub struct OperatorEnv {
    pub ns: TestNamespace,
    pub account: ServiceAccountKubeconfig,
    writes: WriteCounter,
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
            .arg(workspace::chart())
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
        let writes = WriteCounter::new(&format!("e2e-writes-{name}"), &name, OPERATOR_ACCOUNT);
        let cleanup = ClusterScoped {
            rendered: rendered.clone(),
            flow_schema: writes.flow_schema().to_owned(),
            cluster,
        };
        run_ok(cluster.kubectl().arg("apply").arg("-f").arg(&rendered))
            .await
            .context("applying the chart's RBAC")?;
        pipe(cluster.kubectl().args(["apply", "-f", "-"]), &writes.manifest())
            .await
            .context("applying the write-counting FlowSchema")?;
        let account = ns.service_account_kubeconfig(OPERATOR_ACCOUNT).await?;
        Ok(Self {
            ns,
            account,
            writes,
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
        let path = workspace::root().join(path).to_string_lossy().into_owned();
        self.ns.kubectl_ok(["apply", "-f", &path]).await
    }

    /// `kubectl apply -n <ns> -f -` with `yaml`.
    pub async fn apply_yaml(&self, yaml: &str) -> anyhow::Result<String> {
        pipe(self.ns.kubectl().args(["apply", "-f", "-"]), yaml).await
    }

    /// The writes the operator's identity made to anything but its Lease, as counted by the
    /// apiserver (API Priority and Fairness dispatches the requests through this test's
    /// FlowSchema, which matches only them).
    pub async fn operator_writes(&self) -> anyhow::Result<u64> {
        let metrics = run_ok(self.ns.cluster().kubectl().args(["get", "--raw", "/metrics"])).await?;
        Ok(self.writes.writes(&metrics))
    }

    pub fn agents(&self) -> Api<VoiceAgent> {
        self.ns.api()
    }

    /// Waits until `name` is `Ready=True` for its current generation.
    pub async fn wait_ready(&self, name: &str) -> anyhow::Result<VoiceAgent> {
        voiceagent::wait_ready(&self.agents(), name, WAIT).await
    }

    /// Waits until condition `type_` of `name` has `status` and `reason`.
    pub async fn wait_condition(
        &self,
        name: &str,
        type_: &str,
        status: &str,
        reason: &str,
    ) -> anyhow::Result<Condition> {
        voiceagent::wait_condition(&self.agents(), name, type_, status, reason, WAIT).await
    }
}

/// The VoiceAgent CRD and the Gateway API HTTPRoute CRD (idempotent; shared by every test of
/// the cluster).
async fn install_crds(cluster: &'static TestCluster) -> anyhow::Result<()> {
    crds::install_voiceagent_crd(cluster).await?;
    crds::install_httproute_crd(cluster).await
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
