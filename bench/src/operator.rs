//! The operator on the local control plane (`tests/cluster/up`): how long N VoiceAgents take to
//! become Ready, against the floor of server-side-applying the same children with kubectl; the
//! operator's memory at N; and its writes during a quiet minute (the goal is none).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::time::{Instant, sleep};
use voice_e2e::process::{Process, free_addr};
use voice_e2e::wait::{eventually, eventually_every};
use voice_e2e::writes::WriteCounter;

use crate::procfs;

/// The benchmark's own cluster, so it never disturbs one a developer is using.
const CLUSTER_NAME: &str = "voice-bench";
/// Fake nodes: each offers 64 CPUs and agent pods request 250m, so a node holds 256 agents;
/// the largest point needs room for 500 agents plus the floor's 500 copies.
const CLUSTER_NODES: &str = "5";
/// Longest wait for N VoiceAgents (or the floor's Deployments) to become ready.
const CONVERGE_LIMIT: Duration = Duration::from_secs(600);
/// How often convergence is checked: each check lists up to 500 objects with kubectl, which
/// should not weigh on the apiserver it measures.
const POLL: Duration = Duration::from_millis(500);
/// The quiet period in which the operator's writes are counted.
const QUIET: Duration = Duration::from_secs(60);
/// Resync period during the run: the quiet minute then holds two full resyncs of every agent,
/// so "no writes" means unchanged agents are re-checked without writing, not merely left alone.
const RESYNC: &str = "30s";
const ACCOUNT: &str = "voice-operator";

pub struct Setup {
    pub operator_bin: Option<PathBuf>,
    pub scratch: PathBuf,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OperatorResult {
    pub points: Vec<OperatorPoint>,
    pub quiet: Option<QuietMinute>,
    pub server_version: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OperatorPoint {
    pub agents: usize,
    /// From `kubectl apply` of the VoiceAgents to all of them Ready for their generation.
    pub operator_seconds: f64,
    /// Children the operator created.
    pub children: usize,
    /// From `kubectl apply --server-side` of those children to every Deployment available.
    pub floor_seconds: Option<f64>,
    pub operator_rss_kib: u64,
    pub operator_peak_rss_kib: u64,
    /// CPU the operator used while converging.
    pub operator_cpu_seconds: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct QuietMinute {
    pub agents: usize,
    pub seconds: f64,
    pub writes: u64,
    pub reconciles: Option<f64>,
}

/// The cluster's environment, and `tests/cluster/down` when dropped.
struct Cluster {
    kubeconfig: String,
    path: String,
}

impl Cluster {
    fn up() -> anyhow::Result<Self> {
        let out = Command::new("tests/cluster/up")
            .env("VOICE_AGENTS_CLUSTER_NAME", CLUSTER_NAME)
            .env("VOICE_AGENTS_CLUSTER_NODES", CLUSTER_NODES)
            .stdin(Stdio::null())
            .stderr(Stdio::inherit())
            .output()
            .context("run tests/cluster/up")?;
        if !out.status.success() {
            bail!("tests/cluster/up failed");
        }
        let text = String::from_utf8_lossy(&out.stdout);
        let value = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(&format!("export {name}=")))
                .map(|v| v.trim_matches('\'').to_owned())
        };
        match (value("KUBECONFIG"), value("PATH")) {
            (Some(kubeconfig), Some(path)) => Ok(Self { kubeconfig, path }),
            _ => bail!("tests/cluster/up printed no KUBECONFIG/PATH: {text}"),
        }
    }

    fn kubectl(&self) -> Command {
        let mut command = Command::new("kubectl");
        command
            .env("KUBECONFIG", &self.kubeconfig)
            .env("PATH", &self.path)
            .stdin(Stdio::null());
        command
    }

    fn run(&self, args: &[&str]) -> anyhow::Result<String> {
        let out = self.kubectl().args(args).output().context("run kubectl")?;
        if !out.status.success() {
            bail!(
                "kubectl {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn apply_file(&self, namespace: &str, file: &Path) -> anyhow::Result<()> {
        let file = file.to_string_lossy();
        self.run(&[
            "apply",
            "--server-side",
            "--force-conflicts",
            "--field-manager=voice-bench",
            "-n",
            namespace,
            "-f",
            &file,
        ])
        .map(|_| ())
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new("tests/cluster/down")
            .env("VOICE_AGENTS_CLUSTER_NAME", CLUSTER_NAME)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

pub async fn run(setup: &Setup, counts: &[usize]) -> anyhow::Result<OperatorResult> {
    let binary = setup
        .operator_bin
        .clone()
        .context("no --operator-bin given (make bench builds and passes it)")?;
    anyhow::ensure!(binary.is_file(), "{} does not exist", binary.display());
    let cluster = Cluster::up()?;
    cluster.run(&[
        "apply",
        "--server-side",
        "--force-conflicts",
        "-f",
        "crds/voiceagents.voiceagent.dev.yaml",
    ])?;
    // Polled, not `kubectl wait`, which fails on a CRD whose conditions are still null (see
    // `voice_e2e::crds::wait_established`).
    eventually(
        "the VoiceAgent CRD to be established",
        Duration::from_secs(60),
        || async {
            let established = cluster.run(&[
                "get",
                "crd/voiceagents.voiceagent.dev",
                "-o",
                r#"jsonpath={.status.conditions[?(@.type=="Established")].status}"#,
            ])?;
            Ok((established.trim() == "True").then_some(()))
        },
    )
    .await?;
    let version: Value = serde_json::from_str(&cluster.run(&["version", "-o", "json"])?)?;
    let mut result = OperatorResult {
        points: Vec::new(),
        quiet: None,
        server_version: version["serverVersion"]["gitVersion"]
            .as_str()
            .unwrap_or("?")
            .to_owned(),
    };
    for (i, &n) in counts.iter().enumerate() {
        let last = i + 1 == counts.len();
        let (point, quiet) = measure(&cluster, setup, &binary, n, last).await?;
        eprintln!(
            "voice-bench:   operator n={n}: ready in {:.1} s (floor {:?} s), RSS {} KiB",
            point.operator_seconds, point.floor_seconds, point.operator_rss_kib
        );
        result.points.push(point);
        if quiet.is_some() {
            result.quiet = quiet;
        }
    }
    Ok(result)
}

async fn measure(
    cluster: &Cluster,
    setup: &Setup,
    binary: &Path,
    n: usize,
    with_quiet_minute: bool,
) -> anyhow::Result<(OperatorPoint, Option<QuietMinute>)> {
    let namespace = format!("bench-operator-{n}");
    let writes = WriteCounter::new(&format!("voice-bench-writes-{n}"), &namespace, ACCOUNT);
    prepare_namespace(cluster, &namespace, &writes)?;
    let kubeconfig = account_kubeconfig(cluster, &namespace, &setup.scratch)?;
    let operator = start_operator(binary, &kubeconfig, &namespace).await?;
    let pid = operator.pid()?;

    let agents = setup.scratch.join(format!("agents-{n}.yaml"));
    std::fs::write(&agents, agents_yaml(n))?;
    let cpu_before = procfs::sample(pid);
    let started = Instant::now();
    cluster.apply_file(&namespace, &agents)?;
    eventually_every("VoiceAgents Ready", CONVERGE_LIMIT, POLL, || async {
        let list: Value =
            serde_json::from_str(&cluster.run(&["get", "voiceagents", "-n", &namespace, "-o", "json"])?)?;
        Ok((count_ready_agents(&list) >= n).then_some(()))
    })
    .await?;
    let operator_seconds = started.elapsed().as_secs_f64();
    let after = procfs::sample(pid);
    let ticks = procfs::ticks_per_second() as f64;
    let operator_cpu_seconds = match (cpu_before, after) {
        (Some(a), Some(b)) => b.cpu_ticks.saturating_sub(a.cpu_ticks) as f64 / ticks,
        _ => 0.0,
    };

    // The floor: the same children, applied by kubectl into a namespace no operator watches.
    let children: Value = serde_json::from_str(&cluster.run(&[
        "get",
        "configmaps,services,deployments,horizontalpodautoscalers,poddisruptionbudgets,ingresses",
        "-n",
        &namespace,
        "-l",
        "app.kubernetes.io/managed-by=voice-operator",
        "-o",
        "json",
    ])?)?;
    let (floor_list, child_count) = floor_objects(&children);
    let floor_namespace = format!("bench-floor-{n}");
    cluster.run(&["create", "namespace", &floor_namespace])?;
    let floor_file = setup.scratch.join(format!("floor-{n}.json"));
    std::fs::write(&floor_file, serde_json::to_string(&floor_list)?)?;
    let floor_started = Instant::now();
    let deployments = floor_list["items"]
        .as_array()
        .map_or(0, |items| items.iter().filter(|o| o["kind"] == "Deployment").count());
    let floor = async {
        cluster.apply_file(&floor_namespace, &floor_file)?;
        eventually_every("floor Deployments available", CONVERGE_LIMIT, POLL, || async {
            let list: Value =
                serde_json::from_str(&cluster.run(&["get", "deployments", "-n", &floor_namespace, "-o", "json"])?)?;
            Ok((count_available(&list) >= deployments).then_some(()))
        })
        .await
    };
    // Without a floor the operator's numbers still stand; say why on the console.
    let floor_seconds = match floor.await {
        Ok(()) => Some(floor_started.elapsed().as_secs_f64()),
        Err(error) => {
            eprintln!("voice-bench: floor for {n} agents: {error:#}");
            None
        }
    };

    let quiet = if with_quiet_minute {
        Some(quiet_minute(cluster, &operator, &writes, n).await?)
    } else {
        None
    };
    let memory = procfs::sample(pid);
    // SIGKILL and reaped before the next point; one that already exited is as good.
    let _ = operator.kill().await;
    for ns in [&namespace, &floor_namespace] {
        let _ = cluster.run(&["delete", "namespace", ns, "--wait=false"]);
    }
    let _ = cluster.run(&["delete", "flowschema", writes.flow_schema(), "--ignore-not-found"]);
    Ok((
        OperatorPoint {
            agents: n,
            operator_seconds,
            children: child_count,
            floor_seconds,
            operator_rss_kib: after.map_or(0, |s| s.rss_kib),
            operator_peak_rss_kib: memory.map_or(0, |s| s.peak_rss_kib),
            operator_cpu_seconds,
        },
        quiet,
    ))
}

async fn quiet_minute(
    cluster: &Cluster,
    operator: &Process,
    counter: &WriteCounter,
    n: usize,
) -> anyhow::Result<QuietMinute> {
    // Let the last status updates and the Deployments' own status churn settle first.
    sleep(Duration::from_secs(10)).await;
    let writes_before = writes(cluster, counter)?;
    let reconciles_before = operator.metric("voice_operator_reconciles_total").await.ok();
    let started = Instant::now();
    sleep(QUIET).await;
    let writes_after = writes(cluster, counter)?;
    let reconciles_after = operator.metric("voice_operator_reconciles_total").await.ok();
    Ok(QuietMinute {
        agents: n,
        seconds: started.elapsed().as_secs_f64(),
        writes: writes_after.saturating_sub(writes_before),
        reconciles: reconciles_after.zip(reconciles_before).map(|(a, b)| a - b),
    })
}

/// Namespace, the operator's RBAC as the Helm chart renders it for a one-namespace operator,
/// and a FlowSchema through which the apiserver counts that account's writes (every kind but
/// its leader Lease).
fn prepare_namespace(cluster: &Cluster, namespace: &str, writes: &WriteCounter) -> anyhow::Result<()> {
    cluster.run(&["create", "namespace", namespace])?;
    let mut helm = Command::new("helm");
    helm.env("KUBECONFIG", &cluster.kubeconfig)
        .env("PATH", &cluster.path)
        .stdin(Stdio::null())
        .args(["template", namespace, "charts/voice-operator", "--namespace", namespace])
        .args(["--set", &format!("watchNamespaces={{{namespace}}}")])
        .args(["--set", &format!("serviceAccount.name={ACCOUNT}")]);
    let rendered = helm.output().context("run helm template")?;
    if !rendered.status.success() {
        bail!("helm template: {}", String::from_utf8_lossy(&rendered.stderr).trim());
    }
    let flow = writes.manifest();
    let file = std::env::temp_dir().join(format!("voice-bench-{namespace}.yaml"));
    std::fs::write(
        &file,
        format!("{}\n---\n{flow}", String::from_utf8_lossy(&rendered.stdout)),
    )?;
    let result = cluster.run(&["apply", "-n", namespace, "-f", &file.to_string_lossy()]);
    let _ = std::fs::remove_file(&file);
    result.map(|_| ())
}

/// A kubeconfig that authenticates as the operator's ServiceAccount.
fn account_kubeconfig(cluster: &Cluster, namespace: &str, scratch: &Path) -> anyhow::Result<PathBuf> {
    let token = cluster.run(&["create", "token", ACCOUNT, "-n", namespace, "--duration=2h"])?;
    let admin: Value = serde_json::from_str(&cluster.run(&["config", "view", "--raw", "--minify", "-o", "json"])?)?;
    let server = &admin["clusters"][0]["cluster"]["server"];
    let ca = &admin["clusters"][0]["cluster"]["certificate-authority-data"];
    let config = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "bench", "cluster": {"server": server, "certificate-authority-data": ca}}],
        "users": [{"name": ACCOUNT, "user": {"token": token.trim()}}],
        "contexts": [{"name": "bench", "context": {"cluster": "bench", "user": ACCOUNT, "namespace": namespace}}],
        "current-context": "bench",
    });
    let path = scratch.join(format!("operator-{namespace}.kubeconfig"));
    std::fs::write(&path, serde_json::to_string_pretty(&config)?)?;
    Ok(path)
}

/// The operator as its own ServiceAccount, watching `namespace`, ready once its admin port's
/// `/readyz` answers 200.
async fn start_operator(binary: &Path, kubeconfig: &Path, namespace: &str) -> anyhow::Result<Process> {
    let admin = free_addr()?;
    let mut cmd = tokio::process::Command::new(binary);
    cmd.arg(format!("--kubeconfig={}", kubeconfig.display()))
        .arg(format!("--namespace={namespace}"))
        .arg(format!("--lease-namespace={namespace}"))
        .arg(format!("--admin-addr={admin}"))
        .arg(format!("--resync={RESYNC}"))
        .arg("--log=warn")
        .env_remove("KUBECONFIG");
    Process::start(cmd, &format!("voice-operator-{namespace}"), admin, "/readyz").await
}

/// N small VoiceAgents with the built-in simulated model.
fn agents_yaml(n: usize) -> String {
    let mut yaml = String::new();
    for i in 0..n {
        let _ = write!(
            yaml,
            "---\napiVersion: voiceagent.dev/v1alpha1\nkind: VoiceAgent\nmetadata:\n  name: agent-{i:04}\n\
             spec:\n  model:\n    provider: Simulated\n  prompt:\n    system: You are benchmark agent {i}.\n  replicas: 1\n"
        );
    }
    yaml
}

fn count_ready_agents(list: &Value) -> usize {
    let Some(items) = list["items"].as_array() else {
        return 0;
    };
    items
        .iter()
        .filter(|agent| {
            let generation = &agent["metadata"]["generation"];
            let status = &agent["status"];
            status["observedGeneration"] == *generation
                && status["conditions"]
                    .as_array()
                    .is_some_and(|cs| cs.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"))
        })
        .count()
}

fn count_available(list: &Value) -> usize {
    let Some(items) = list["items"].as_array() else {
        return 0;
    };
    items
        .iter()
        .filter(|d| {
            d["status"]["conditions"]
                .as_array()
                .is_some_and(|cs| cs.iter().any(|c| c["type"] == "Available" && c["status"] == "True"))
        })
        .count()
}

/// The operator's children as a List kubectl can apply elsewhere: server-set fields, owner
/// references and status removed. Returns the list and how many children the operator made.
fn floor_objects(children: &Value) -> (Value, usize) {
    let items: Vec<Value> = children["items"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .map(|item| {
                    let mut object = item.clone();
                    if let Some(map) = object.as_object_mut() {
                        map.remove("status");
                    }
                    if let Some(meta) = object["metadata"].as_object_mut() {
                        for field in [
                            "namespace",
                            "uid",
                            "resourceVersion",
                            "creationTimestamp",
                            "generation",
                            "managedFields",
                            "ownerReferences",
                        ] {
                            meta.remove(field);
                        }
                        if let Some(annotations) = meta.get_mut("annotations").and_then(Value::as_object_mut) {
                            annotations.remove("deployment.kubernetes.io/revision");
                        }
                    }
                    if object["kind"] == "Service"
                        && let Some(spec) = object["spec"].as_object_mut()
                    {
                        for field in ["clusterIP", "clusterIPs"] {
                            spec.remove(field);
                        }
                    }
                    object
                })
                .collect()
        })
        .unwrap_or_default();
    let count = items.len();
    (json!({"apiVersion": "v1", "kind": "List", "items": items}), count)
}

/// Writes by the operator's identity so far, as the apiserver counts them for the FlowSchema.
fn writes(cluster: &Cluster, counter: &WriteCounter) -> anyhow::Result<u64> {
    Ok(counter.writes(&cluster.run(&["get", "--raw", "/metrics"])?))
}

/// The operator section of BENCHMARKS.md.
pub fn render(out: &mut String, result: Option<&OperatorResult>, skipped: Option<&str>) {
    if result.is_none() && skipped.is_none() {
        return;
    }
    let _ = writeln!(out, "## Operator\n");
    let Some(result) = result else {
        let _ = writeln!(out, "Not measured in this run: {}\n", skipped.unwrap_or("skipped"));
        return;
    };
    let _ = writeln!(
        out,
        "On the local control plane (Kubernetes {}, etcd, kwok fake nodes; `tests/cluster/up`). The \
         operator runs as its own ServiceAccount, watching one namespace, with `--resync {RESYNC}`. \
         *Ready* is the time from `kubectl apply --server-side` of N VoiceAgents (Simulated model, one \
         replica) until every one reports `Ready=True` for its generation. The *floor* is the time to \
         server-side-apply the children the operator rendered (exported from the cluster, owner \
         references and server-set fields removed) with kubectl into an unwatched namespace until \
         every Deployment is available: what the control plane alone needs for the same objects.\n",
        result.server_version
    );
    let _ = writeln!(
        out,
        "| VoiceAgents | children | Ready after | floor (kubectl SSA of the children) | operator ÷ floor | operator CPU | operator RSS | peak RSS |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|");
    for p in &result.points {
        let _ = writeln!(
            out,
            "| {} | {} | {:.1} s | {} | {} | {:.1} s | {:.1} MiB | {:.1} MiB |",
            p.agents,
            p.children,
            p.operator_seconds,
            p.floor_seconds.map_or("–".into(), |f| format!("{f:.1} s")),
            p.floor_seconds
                .filter(|f| *f > 0.0)
                .map_or("–".into(), |f| format!("{:.2}×", p.operator_seconds / f)),
            p.operator_cpu_seconds,
            p.operator_rss_kib as f64 / 1024.0,
            p.operator_peak_rss_kib as f64 / 1024.0
        );
    }
    if let Some(q) = &result.quiet {
        let _ = writeln!(
            out,
            "\nSteady state: with {} converged VoiceAgents, the operator made **{} write requests** in \
             {:.0} s ({}), counted by the apiserver for the operator's identity (every kind except its \
             leader-election Lease, whose renewals are the election's heartbeat).\n",
            q.agents,
            q.writes,
            q.seconds,
            q.reconciles.map_or("reconcile count unavailable".into(), |r| format!(
                "{r:.0} reconciles in that time"
            ))
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floor_objects_lose_server_fields_and_owners() {
        let children = json!({"items": [
            {"kind": "Service", "metadata": {"name": "a", "uid": "u", "ownerReferences": [{}], "labels": {"x": "y"}},
             "spec": {"clusterIP": "10.0.0.1", "ports": []}, "status": {}},
            {"kind": "Deployment", "metadata": {"name": "a", "annotations": {"deployment.kubernetes.io/revision": "1", "k": "v"}}}
        ]});
        let (list, count) = floor_objects(&children);
        assert_eq!(count, 2);
        assert_eq!(list["items"][0]["metadata"], json!({"name": "a", "labels": {"x": "y"}}));
        assert_eq!(list["items"][0]["spec"], json!({"ports": []}));
        assert!(list["items"][0].get("status").is_none());
        assert_eq!(list["items"][1]["metadata"]["annotations"], json!({"k": "v"}));
    }

    #[test]
    fn counts_only_agents_ready_for_their_generation() {
        let list = json!({"items": [
            {"metadata": {"generation": 2}, "status": {"observedGeneration": 2, "conditions": [{"type": "Ready", "status": "True"}]}},
            {"metadata": {"generation": 3}, "status": {"observedGeneration": 2, "conditions": [{"type": "Ready", "status": "True"}]}},
            {"metadata": {"generation": 1}, "status": {"observedGeneration": 1, "conditions": [{"type": "Ready", "status": "False"}]}}
        ]});
        assert_eq!(count_ready_agents(&list), 1);
    }

    #[test]
    fn renders_agents() {
        let yaml = agents_yaml(2);
        assert_eq!(yaml.matches("kind: VoiceAgent").count(), 2);
        assert!(yaml.contains("name: agent-0001"));
    }
}
