//! The chart's Grafana dashboard and PrometheusRule alerts: the dashboard parses and shows
//! what operators need; every PromQL expression parses with Prometheus' own parser
//! (tests/tools/promql-check); every metric name they use is served by the real binaries'
//! `/metrics` (the agent on loopback, the operator against the local control plane).
//!
//! `cargo test -p voice-e2e --test chart_observability -- --ignored`

mod chart_support;

use std::collections::{BTreeMap, BTreeSet};

use chart_support::{object, render_documents};
use serde_json::Value;
use voice_e2e::TestCluster;
use voice_e2e::command::pipe;
use voice_e2e::crds::install_voiceagent_crd;
use voice_e2e::metrics::series_names;
use voice_e2e::process::{Process, free_addr};
use voice_e2e::wait::{WAIT, eventually};
use voice_e2e::workspace::{self, tool};

const ENABLE: &[&str] = &[
    "--set",
    "monitoring.dashboard.enabled=true,monitoring.rules.enabled=true",
];

#[tokio::test]
#[ignore = "needs the local cluster (tests/cluster) and Go for the PromQL parser"]
async fn dashboard_and_alerts_parse_and_use_only_metrics_the_binaries_serve() {
    let cluster = TestCluster::shared().await;
    let docs = render_documents(cluster, "obs", ENABLE).await.expect("renders");

    let config_map = object(&docs, "ConfigMap", "obs-voice-operator-dashboard").expect("dashboard ConfigMap");
    assert_eq!(
        config_map["metadata"]["labels"]["grafana_dashboard"], "1",
        "discoverable by Grafana's dashboard sidecar"
    );
    let json = config_map["data"]["voice-agents.json"]
        .as_str()
        .expect("dashboard JSON in the ConfigMap");
    let dashboard: Value = serde_json::from_str(json).expect("the dashboard is JSON");
    let mut expressions = dashboard_expressions(&dashboard);

    let rules = object(&docs, "PrometheusRule", "obs-voice-operator").expect("PrometheusRule");
    let alerts = rule_expressions(rules);
    for wanted in [
        "VoiceAgentTimeToFirstAudioHigh",
        "VoiceAgentCallsEndedByModelErrors",
        "VoiceAgentCallsRefusedForCapacity",
        "VoiceOperatorReconcileFailures",
    ] {
        assert!(
            alerts.contains_key(wanted),
            "alert {wanted} missing: {:?}",
            alerts.keys()
        );
    }
    for (alert, rule) in &alerts {
        for field in ["summary", "description", "runbook_url"] {
            assert!(rule["annotations"][field].is_string(), "{alert} has no {field}");
        }
        assert!(rule["labels"]["severity"].is_string(), "{alert} has no severity");
    }
    expressions.extend(alerts.values().map(|r| r["expr"].as_str().expect("expr").to_owned()));

    // Parse every expression with Prometheus' parser; collect the metric names they select.
    let checker = tool("promql-check").await.expect("promql-check builds");
    let input = serde_json::to_string(&expressions).expect("JSON");
    let mut cmd = tokio::process::Command::new(&checker);
    let out = pipe(&mut cmd, &input).await.expect("promql-check runs");
    let results: Vec<Value> = serde_json::from_str(&out).expect("promql-check prints JSON");
    assert_eq!(results.len(), expressions.len());
    let mut used = BTreeSet::new();
    for result in &results {
        assert!(
            result["error"].is_null(),
            "PromQL does not parse: {}\n{}",
            result["error"],
            result["expr"].as_str().unwrap_or_default()
        );
        used.extend(chart_support::strings(&result["metrics"]));
    }

    // What the real binaries serve.
    let served = served_metric_names(cluster).await;
    let missing: Vec<&String> = used.iter().filter(|name| !served.contains(*name)).collect();
    assert!(
        missing.is_empty(),
        "metrics used by the dashboard or alerts but not served: {missing:?}"
    );
    for family in [
        "voice_agent_sessions_active",
        "voice_agent_time_to_first_audio_seconds_bucket",
        "voice_agent_model_stream_renewals_total",
        "voice_agent_model_errors_total",
        "voice_agent_tool_call_duration_seconds_bucket",
        "voice_agent_handshake_rejections_total",
        "voice_operator_reconcile_failures_total",
        "voice_operator_reconcile_duration_seconds_bucket",
    ] {
        assert!(used.contains(family), "{family} is neither charted nor alerted on");
    }
}

/// Every query of the dashboard (panel targets and variable queries), with Grafana's
/// variables replaced by what Grafana would send, so Prometheus' parser sees real PromQL.
fn dashboard_expressions(dashboard: &Value) -> Vec<String> {
    assert!(dashboard["uid"].is_string() && dashboard["title"].is_string());
    let mut ids = BTreeSet::new();
    let mut titles = Vec::new();
    let mut expressions = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        assert!(
            ids.insert(panel["id"].as_u64().expect("panel id")),
            "duplicate panel id in {panel}"
        );
        let grid = &panel["gridPos"];
        let (x, w) = (grid["x"].as_u64().expect("x"), grid["w"].as_u64().expect("w"));
        assert!(x + w <= 24, "panel {} is wider than the grid", panel["title"]);
        if panel["type"] == "row" {
            continue;
        }
        titles.push(panel["title"].as_str().expect("title").to_owned());
        assert_eq!(
            panel["datasource"]["uid"], "${datasource}",
            "panel {} ignores the data source variable",
            panel["title"]
        );
        let targets = panel["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "panel {} has no query", panel["title"]);
        for target in targets {
            expressions.push(grafana_to_promql(target["expr"].as_str().expect("expr")));
        }
    }
    for wanted in [
        "Active sessions",
        "Time to first audio",
        "Model stream renewals",
        "Model errors by kind",
        "Tool call latency p95",
        "Reconciles",
    ] {
        assert!(titles.iter().any(|t| t == wanted), "no panel {wanted:?} in {titles:?}");
    }
    let variables = dashboard["templating"]["list"].as_array().expect("variables");
    let names: Vec<&str> = variables.iter().filter_map(|v| v["name"].as_str()).collect();
    assert_eq!(names, ["datasource", "namespace", "voiceagent"]);
    for variable in variables.iter().filter(|v| v["type"] == "query") {
        let query = variable["definition"].as_str().expect("definition");
        // label_values(<selector>, <label>): the selector is PromQL.
        let inner = query
            .strip_prefix("label_values(")
            .and_then(|q| q.rsplit_once(','))
            .map(|(selector, _)| selector)
            .unwrap_or_else(|| panic!("unexpected variable query {query}"));
        expressions.push(grafana_to_promql(inner));
    }
    expressions
}

fn grafana_to_promql(expr: &str) -> String {
    expr.replace("$__rate_interval", "5m")
        .replace("$__interval", "1m")
        .replace("${namespace}", ".*")
        .replace("$namespace", ".*")
        .replace("${voiceagent}", ".*")
        .replace("$voiceagent", ".*")
}

fn rule_expressions(rule: &Value) -> BTreeMap<String, Value> {
    let mut alerts = BTreeMap::new();
    for group in rule["spec"]["groups"].as_array().expect("groups") {
        for rule in group["rules"].as_array().expect("rules") {
            let name = rule["alert"].as_str().expect("alerting rules only").to_owned();
            assert!(
                alerts.insert(name.clone(), rule.clone()).is_none(),
                "alert {name} twice"
            );
        }
    }
    alerts
}

/// The metric names served by a running agent (simulated model, no configuration) and a
/// running operator (against the local control plane).
///
/// The operator creates a labelled series at its first event, so the operator is made to
/// meet each kind: it runs under the chart's own rules minus writing Deployments (so applying
/// a VoiceAgent's Deployment fails: `reconcile_failures`), is given a VoiceAgent whose prompt
/// Secret is missing (`rejections`), and writes that VoiceAgent's status and the other
/// VoiceAgent's ConfigMap (`writes`).
async fn served_metric_names(cluster: &'static TestCluster) -> BTreeSet<String> {
    let agent_bin = workspace::agent_binary().await.expect("the agent builds");
    let operator_bin = workspace::operator_binary().await.expect("the operator builds");

    let addr = free_addr().expect("a free port");
    let mut cmd = tokio::process::Command::new(agent_bin);
    cmd.arg("--listen")
        .arg(addr.to_string())
        .env_remove("VOICE_AGENT_CONFIG");
    let agent = Process::start(cmd, "voice-agent-metrics", addr, "/readyz")
        .await
        .expect("agent starts");
    let (status, body) = agent.get("/metrics").await.expect("agent /metrics");
    assert_eq!(status, 200);
    let mut names = series_names(&body);
    assert!(names.contains("voice_agent_sessions_active"), "{body}");

    install_voiceagent_crd(cluster).await.expect("VoiceAgent CRD");
    let ns = cluster.namespace("chart-metrics").await;
    let identity = operator_without_deployment_writes(cluster, &ns).await;
    let addr = free_addr().expect("a free port");
    let mut cmd = tokio::process::Command::new(operator_bin);
    cmd.arg(format!("--kubeconfig={}", identity.path().display()))
        .arg(format!("--namespace={}", ns.name()))
        .arg(format!("--admin-addr={addr}"))
        .arg("--leader-election=false")
        .env_remove("KUBECONFIG");
    let operator = Process::start(cmd, "voice-operator-metrics", addr, "/readyz")
        .await
        .expect("operator starts");
    apply(&ns, SMOKE_AGENT).await;
    apply(&ns, AGENT_WITH_MISSING_SECRET).await;
    let wanted = [
        "voice_operator_reconcile_failures_total",
        "voice_operator_rejections_total",
        "voice_operator_writes_total",
        "voice_operator_leader",
        "voice_operator_reconcile_duration_seconds_bucket",
    ];
    let operator_names = eventually("every operator metric family", WAIT, || async {
        let (_, body) = operator.get("/metrics").await?;
        let names = series_names(&body);
        Ok(wanted.iter().all(|w| names.contains(*w)).then_some(names))
    })
    .await
    .map_err(|e| anyhow::anyhow!("{e:#}\n{}", operator.log_tail(30)))
    .expect("the operator exposes every family");
    names.extend(operator_names);
    names
}

const SMOKE_AGENT: &str = r#"
apiVersion: voiceagent.dev/v1alpha1
kind: VoiceAgent
metadata: {name: smoke}
spec:
  model: {provider: Simulated}
  prompt: {system: Say hello.}
"#;

const AGENT_WITH_MISSING_SECRET: &str = r#"
apiVersion: voiceagent.dev/v1alpha1
kind: VoiceAgent
metadata: {name: missing-prompt}
spec:
  model: {provider: Simulated}
  prompt:
    systemFrom:
      secretKeyRef: {name: no-such-secret, key: prompt}
"#;

/// A ServiceAccount in `ns` with the chart's ClusterRole rules, except that Deployments can
/// only be read.
async fn operator_without_deployment_writes(
    cluster: &'static TestCluster,
    ns: &voice_e2e::TestNamespace,
) -> voice_e2e::ServiceAccountKubeconfig {
    let docs = render_documents(cluster, ns.name(), &[]).await.expect("renders");
    let role = object(&docs, "ClusterRole", &format!("{}-voice-operator", ns.name())).expect("ClusterRole");
    let mut rules = role["rules"].clone();
    for rule in rules.as_array_mut().expect("rules") {
        if chart_support::strings(&rule["resources"]) == ["deployments"] {
            rule["verbs"] = serde_json::json!(["get", "list", "watch"]);
        }
    }
    let account = "limited-operator";
    let objects = serde_json::json!({
        "apiVersion": "v1",
        "kind": "List",
        "items": [
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "Role",
                "metadata": {"name": account, "namespace": ns.name()},
                "rules": rules,
            },
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "RoleBinding",
                "metadata": {"name": account, "namespace": ns.name()},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": account},
                "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": ns.name()}],
            },
        ],
    });
    let identity = ns.service_account_kubeconfig(account).await.expect("account");
    apply(ns, &objects.to_string()).await;
    identity
}

async fn apply(ns: &voice_e2e::TestNamespace, yaml: &str) {
    pipe(ns.kubectl().args(["apply", "-f", "-"]), yaml)
        .await
        .expect("kubectl apply");
}
