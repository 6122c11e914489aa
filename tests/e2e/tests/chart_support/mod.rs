//! Shared by the chart suites (`chart_*.rs`): rendering the chart with the cluster's `helm` and
//! reading the rendered documents.

#![allow(dead_code)] // each suite uses a different subset

use anyhow::{Context as _, anyhow};
use serde_json::Value;
use tokio::process::Command;
use voice_e2e::TestCluster;
use voice_e2e::command::run_ok;
use voice_e2e::workspace;

/// Every optional object of the chart switched on.
pub const EVERY_OPTION: &[&str] = &[
    "--set",
    "monitoring.operator.serviceMonitor.enabled=true,monitoring.operator.podMonitor.enabled=true",
    "--set",
    "monitoring.agents.serviceMonitor.enabled=true,monitoring.agents.podMonitor.enabled=true",
    "--set",
    "monitoring.dashboard.enabled=true,monitoring.rules.enabled=true",
    "--set",
    "networkPolicy.enabled=true,podDisruptionBudget.enabled=true,replicaCount=2",
];

/// `helm template <release> <chart> --namespace <namespace>` plus `args`.
pub fn helm_template(cluster: &TestCluster, release: &str, namespace: &str, args: &[&str]) -> Command {
    let mut helm = cluster.helm();
    helm.arg("template")
        .arg(release)
        .arg(workspace::chart())
        .args(["--namespace", namespace])
        .args(args);
    helm
}

/// The chart rendered with `args`, as YAML.
pub async fn render(cluster: &TestCluster, namespace: &str, args: &[&str]) -> anyhow::Result<String> {
    run_ok(&mut helm_template(cluster, namespace, namespace, args))
        .await
        .context("rendering the chart")
}

/// The chart rendered with `args`, one JSON value per document.
pub async fn render_documents(cluster: &TestCluster, namespace: &str, args: &[&str]) -> anyhow::Result<Vec<Value>> {
    documents(&render(cluster, namespace, args).await?)
}

/// Every non-empty document of a multi-document YAML stream.
pub fn documents(yaml: &str) -> anyhow::Result<Vec<Value>> {
    let docs: Vec<Value> = serde_saphyr::from_multiple(yaml).context("rendered YAML does not parse")?;
    Ok(docs.into_iter().filter(|d| !d.is_null()).collect())
}

/// The documents of `kind`.
pub fn of_kind<'a>(docs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    docs.iter().filter(|d| d["kind"] == kind).collect()
}

/// The one document of `kind` named `name`.
pub fn object<'a>(docs: &'a [Value], kind: &str, name: &str) -> anyhow::Result<&'a Value> {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .ok_or_else(|| anyhow!("no {kind} {name} among the rendered documents"))
}

/// The string items of a JSON array (empty when it is not one).
pub fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
        .unwrap_or_default()
}
