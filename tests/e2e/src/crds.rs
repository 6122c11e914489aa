//! The CustomResourceDefinitions the suites install into the cluster, idempotently (CRDs are
//! cluster-wide and outlive the test namespaces): the VoiceAgent CRD from `crds/`, and the
//! third-party kinds the operator and the chart render — the Gateway API's HTTPRoute and the
//! Prometheus Operator's monitoring kinds — from their pinned releases' Go modules, downloaded
//! through the Go module proxy the first time, like the cluster's own modules.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use serde_json::Value;
use tokio::process::Command;

use crate::cluster::TestCluster;
use crate::command::{run, run_ok};
use crate::wait::eventually;
use crate::workspace::{self, BUILD_TIMEOUT};

/// Gateway API release whose HTTPRoute CRD is installed.
const GATEWAY_API: &str = "sigs.k8s.io/gateway-api@v1.6.3";
/// Envoy Gateway release whose BackendTrafficPolicy CRD is installed (route-scoped
/// `timeout.http.streamIdleTimeout` needs v1.8 or later).
const ENVOY_GATEWAY: &str = "github.com/envoyproxy/gateway@v1.9.1";
/// KEDA release whose ScaledObject CRD is installed (v2.21 needs Go 1.27 to download).
const KEDA: &str = "github.com/kedacore/keda/v2@v2.20.2";
/// Prometheus Operator release whose monitoring.coreos.com CRDs are installed.
const PROMETHEUS_OPERATOR: &str = "github.com/prometheus-operator/prometheus-operator@v0.85.0";
/// The monitoring kinds the chart renders.
const MONITORING_CRDS: [&str; 3] = ["servicemonitors", "podmonitors", "prometheusrules"];

/// The VoiceAgent CRD as committed in `crds/` (the operator refuses to start without it).
pub async fn install_voiceagent_crd(cluster: &TestCluster) -> anyhow::Result<()> {
    let crd = workspace::root().join("crds/voiceagents.voiceagent.dev.yaml");
    install(cluster, &[crd], &["crd/voiceagents.voiceagent.dev".to_owned()]).await
}

/// The standard HTTPRoute CRD of the pinned Gateway API release.
pub async fn install_httproute_crd(cluster: &TestCluster) -> anyhow::Result<()> {
    let dir = go_module(cluster, GATEWAY_API).await?;
    let crd = dir.join("config/crd/standard/gateway.networking.k8s.io_httproutes.yaml");
    install(
        cluster,
        &[crd],
        &["crd/httproutes.gateway.networking.k8s.io".to_owned()],
    )
    .await
}

/// The Gateway API's standard-channel CRDs a Gateway API implementation (Traefik) watches:
/// GatewayClass, Gateway, the routes, ReferenceGrant, BackendTLSPolicy, ListenerSet.
pub async fn install_gateway_api_crds(cluster: &TestCluster) -> anyhow::Result<()> {
    const PLURALS: [&str; 9] = [
        "gatewayclasses",
        "gateways",
        "httproutes",
        "grpcroutes",
        "referencegrants",
        "backendtlspolicies",
        "listenersets",
        "tcproutes",
        "tlsroutes",
    ];
    let dir = go_module(cluster, GATEWAY_API).await?;
    let files = PLURALS.map(|plural| dir.join(format!("config/crd/standard/gateway.networking.k8s.io_{plural}.yaml")));
    let names = PLURALS.map(|plural| format!("crd/{plural}.gateway.networking.k8s.io"));
    install(cluster, &files, &names).await
}

/// Envoy Gateway's BackendTrafficPolicy CRD of the pinned release.
pub async fn install_envoy_gateway_policy_crd(cluster: &TestCluster) -> anyhow::Result<()> {
    let dir = go_module(cluster, ENVOY_GATEWAY).await?;
    let crd =
        dir.join("charts/gateway-helm/charts/crds/crds/generated/gateway.envoyproxy.io_backendtrafficpolicies.yaml");
    install(
        cluster,
        &[crd],
        &["crd/backendtrafficpolicies.gateway.envoyproxy.io".to_owned()],
    )
    .await
}

/// KEDA's ScaledObject CRD of the pinned release.
pub async fn install_keda_crd(cluster: &TestCluster) -> anyhow::Result<()> {
    let dir = go_module(cluster, KEDA).await?;
    let crd = dir.join("config/crd/bases/keda.sh_scaledobjects.yaml");
    install(cluster, &[crd], &[KEDA_CRD.to_owned()]).await
}

/// Removes KEDA's ScaledObject CRD (and every ScaledObject) and waits until it is gone.
pub async fn remove_keda_crd(cluster: &TestCluster) -> anyhow::Result<()> {
    run_ok(
        cluster
            .kubectl()
            .args(["delete", "--ignore-not-found", "--wait=true", "--timeout=60s", KEDA_CRD]),
    )
    .await?;
    Ok(())
}

const KEDA_CRD: &str = "crd/scaledobjects.keda.sh";

/// The ServiceMonitor, PodMonitor and PrometheusRule CRDs of the pinned Prometheus Operator
/// release.
pub async fn install_monitoring_crds(cluster: &TestCluster) -> anyhow::Result<()> {
    let dir = go_module(cluster, PROMETHEUS_OPERATOR).await?;
    let files = MONITORING_CRDS.map(|plural| {
        dir.join(format!(
            "example/prometheus-operator-crd/monitoring.coreos.com_{plural}.yaml"
        ))
    });
    let names = MONITORING_CRDS.map(|plural| format!("crd/{plural}.monitoring.coreos.com"));
    install(cluster, &files, &names).await
}

/// Applies `files` server-side (a CRD is too large for a client-side apply's annotation) and
/// waits until the CRDs `names` are established.
async fn install(cluster: &TestCluster, files: &[PathBuf], names: &[String]) -> anyhow::Result<()> {
    for file in files {
        if !file.is_file() {
            bail!("{} is missing", file.display());
        }
        run_ok(
            cluster
                .kubectl()
                .args(["apply", "--server-side", "--force-conflicts", "-f"])
                .arg(file),
        )
        .await
        .with_context(|| format!("installing {}", file.display()))?;
    }
    wait_established(cluster, names).await
}

/// Waits until the CRDs `names` (`crd/<name>`) are established. Not `kubectl wait`: right
/// after an apply the apiserver may still show the CRD with `status.conditions: null`, which
/// `kubectl wait --for=condition=...` reports as an error instead of waiting on (seen on a
/// loaded machine).
pub async fn wait_established(cluster: &TestCluster, names: &[String]) -> anyhow::Result<()> {
    eventually("the CRDs to be established", ESTABLISHED_WAIT, || async {
        let out = run_ok(cluster.kubectl().arg("get").args(names).args(["-o", "json"])).await?;
        let list: Value = serde_json::from_str(&out).context("kubectl get -o json")?;
        // One name gives the object itself, several a List of them.
        let items = match list["items"].as_array() {
            Some(items) => items.clone(),
            None => vec![list],
        };
        let established = items.len() == names.len()
            && items.iter().all(|crd| {
                crd["status"]["conditions"].as_array().is_some_and(|conditions| {
                    conditions
                        .iter()
                        .any(|c| c["type"] == "Established" && c["status"] == "True")
                })
            });
        Ok(established.then_some(()))
    })
    .await
}

/// A CRD is established within a second or two; a minute covers a loaded machine.
const ESTABLISHED_WAIT: Duration = Duration::from_secs(60);

/// The directory of `module` (`path@version`) in the Go module cache.
async fn go_module(cluster: &TestCluster, module: &str) -> anyhow::Result<PathBuf> {
    let mut go = Command::new(std::env::var_os("GO").unwrap_or_else(|| "go".into()));
    go.args(["mod", "download", "-json", module])
        .env("PATH", go_path(cluster))
        .env("GOFLAGS", "-mod=mod")
        .current_dir(std::env::temp_dir());
    let out = run(&mut go, BUILD_TIMEOUT)
        .await
        .context("fetching a Go module (needs Go, like tests/cluster)")?;
    if !out.success {
        bail!("go mod download {module} failed:\n{}{}", out.stdout, out.stderr);
    }
    let info: Value = serde_json::from_str(&out.stdout)
        .with_context(|| format!("go mod download {module} printed no JSON: {}", out.stdout))?;
    let dir = info["Dir"]
        .as_str()
        .ok_or_else(|| anyhow!("go mod download {module} printed no Dir: {}", out.stdout))?;
    Ok(Path::new(dir).to_path_buf())
}

/// The cluster's `PATH`, then where the Go toolchain installs by default.
fn go_path(cluster: &TestCluster) -> OsString {
    let mut path = cluster.path_env();
    path.push(":/usr/local/go/bin");
    path
}
