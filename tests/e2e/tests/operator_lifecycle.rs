//! A VoiceAgent's life: missing references, prompt changes that roll the pods, children that
//! come and go with the spec, and garbage collection on delete.
//!
//! `cargo test -p voice-e2e --test operator_lifecycle -- --ignored`

mod operator_support;

use std::collections::BTreeSet;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret, Service};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::api::networking::v1::Ingress;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, ListParams};
use operator_support::OperatorEnv;
use voice_e2e::wait::{WAIT, eventually};
use voice_operator::api::ACCEPTED;

const SECRET_VALUE: &str = "s3cr3t-prompt-you-must-not-log";

fn agent(prompt_source: &str, extra: &str) -> String {
    format!(
        r#"apiVersion: voiceagent.dev/v1alpha1
kind: VoiceAgent
metadata: {{name: helpdesk}}
spec:
  prompt: {prompt_source}
  session: {{drainTimeout: 20s}}
{extra}"#
    )
}

fn secret(value: &str) -> String {
    format!("apiVersion: v1\nkind: Secret\nmetadata: {{name: prompts}}\nstringData: {{helpdesk: {value:?}}}\n")
}

/// Pod-template hashes of the agent's ReplicaSets that have pods wanted.
async fn active_revisions(replicasets: &Api<ReplicaSet>) -> anyhow::Result<BTreeSet<String>> {
    let list = replicasets
        .list(&ListParams::default().labels("app.kubernetes.io/instance=helpdesk"))
        .await?;
    Ok(list
        .items
        .into_iter()
        .filter(|rs| rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0) > 0)
        .filter_map(|rs| rs.metadata.labels?.get("pod-template-hash").cloned())
        .collect())
}

/// Waits until one revision runs every replica (a rollout, if any, is over).
async fn wait_rolled_out(env: &OperatorEnv) -> BTreeSet<String> {
    let deployments: Api<Deployment> = env.ns.api();
    let replicasets: Api<ReplicaSet> = env.ns.api();
    eventually("the rollout to finish", WAIT, || async {
        let d = deployments.get("helpdesk").await?;
        let wanted = d.spec.as_ref().and_then(|s| s.replicas);
        let status = d.status.clone().unwrap_or_default();
        let done = status.observed_generation == d.metadata.generation
            && status.updated_replicas == wanted
            && status.ready_replicas == wanted
            && status.replicas == wanted;
        let revisions = active_revisions(&replicasets).await?;
        Ok((done && revisions.len() == 1).then_some(revisions))
    })
    .await
    .expect("rolled out")
}

#[tokio::test]
#[ignore = "needs the local cluster (tests/cluster/up)"]
async fn references_rollouts_pruning_and_garbage_collection() {
    let env = OperatorEnv::new("op-lifecycle").await.expect("test namespace");
    let operator = env.start_operator(&[]).await.expect("operator starts");
    let deployments: Api<Deployment> = env.ns.api();
    let replicasets: Api<ReplicaSet> = env.ns.api();
    let secret_source = "{systemFrom: {secretKeyRef: {name: prompts, key: helpdesk}}}";
    let exposed = "  replicas: 2\n  expose: {ingress: {className: nginx, host: helpdesk.example.com}}\n";

    // 1. The Secret does not exist yet: not accepted, and no pod that could not start.
    env.apply_yaml(&agent(secret_source, exposed)).await.expect("apply");
    let accepted = env
        .wait_condition("helpdesk", ACCEPTED, "False", "ReferenceNotFound")
        .await
        .unwrap_or_else(|e| panic!("{e:#}\n{}", operator.log_tail(40)));
    assert_eq!(accepted.message, r#"Secret "prompts" not found"#);
    assert!(
        deployments.get_opt("helpdesk").await.expect("get").is_none(),
        "no Deployment before the Secret exists"
    );

    // 2. It appears: the operator notices by itself (it watches Secrets) and converges.
    env.apply_yaml(&secret(SECRET_VALUE)).await.expect("secret");
    env.wait_ready("helpdesk").await.expect("ready once the Secret exists");
    let first = wait_rolled_out(&env).await;

    // 3. A new prompt in the Secret rolls the pods.
    env.apply_yaml(&secret("Be brief.")).await.expect("secret update");
    let second = eventually("a rollout after the Secret changed", WAIT, || async {
        let now = active_revisions(&replicasets).await?;
        Ok((now.len() == 1 && now != first).then_some(now))
    })
    .await
    .unwrap_or_else(|e| panic!("{e:#}\n{}", operator.log_tail(40)));
    env.wait_ready("helpdesk").await.expect("ready after the rollout");

    // 4. An inline prompt: the ConfigMap changes and the pods roll again.
    env.apply_yaml(&agent("{system: You answer IT questions.}", exposed))
        .await
        .expect("inline prompt");
    eventually("a rollout after the inline prompt changed", WAIT, || async {
        let now = active_revisions(&replicasets).await?;
        Ok((now.len() == 1 && now != second).then_some(()))
    })
    .await
    .expect("rollout");
    let config = env
        .ns
        .api::<ConfigMap>()
        .get("helpdesk-config")
        .await
        .expect("ConfigMap");
    assert!(config.data.expect("data")["config.yaml"].contains("You answer IT questions."));
    env.wait_ready("helpdesk").await.expect("ready");

    // 5. Back to the Secret, then the Secret goes away: Accepted=False, the running pods stay,
    //    nothing new is rolled out; restoring it recovers.
    env.apply_yaml(&agent(secret_source, exposed))
        .await
        .expect("secret prompt again");
    env.wait_ready("helpdesk").await.expect("ready");
    let before = wait_rolled_out(&env).await;
    env.ns
        .kubectl_ok(["delete", "secret", "prompts"])
        .await
        .expect("delete secret");
    env.wait_condition("helpdesk", ACCEPTED, "False", "ReferenceNotFound")
        .await
        .expect("not accepted");
    let deployment = deployments.get("helpdesk").await.expect("the last Deployment stays");
    assert_eq!(deployment.status.and_then(|s| s.ready_replicas), Some(2));
    assert_eq!(
        active_revisions(&replicasets).await.expect("revisions"),
        before,
        "no rollout without the Secret"
    );
    env.apply_yaml(&secret("Be brief.")).await.expect("restore");
    env.wait_condition("helpdesk", ACCEPTED, "True", "Accepted")
        .await
        .expect("accepted again");
    env.wait_ready("helpdesk").await.expect("ready again");

    // 6. Children follow the spec: dropping expose and going to one replica deletes the
    //    Ingress and the PDB; autoscaling adds an HPA.
    let ingresses: Api<Ingress> = env.ns.api();
    let pdbs: Api<PodDisruptionBudget> = env.ns.api();
    let hpas: Api<HorizontalPodAutoscaler> = env.ns.api();
    assert!(ingresses.get_opt("helpdesk").await.expect("get").is_some());
    assert!(pdbs.get_opt("helpdesk").await.expect("get").is_some());
    env.apply_yaml(&agent(secret_source, "  replicas: 1\n"))
        .await
        .expect("shrink");
    eventually("Ingress and PDB deleted", WAIT, || async {
        let gone = ingresses.get_opt("helpdesk").await?.is_none() && pdbs.get_opt("helpdesk").await?.is_none();
        Ok(gone.then_some(()))
    })
    .await
    .expect("pruned");
    env.apply_yaml(&agent(secret_source, "  scaling: {minReplicas: 1, maxReplicas: 3}\n"))
        .await
        .expect("autoscale");
    eventually("HPA and PDB created", WAIT, || async {
        let there = hpas.get_opt("helpdesk").await?.is_some() && pdbs.get_opt("helpdesk").await?.is_some();
        Ok(there.then_some(()))
    })
    .await
    .expect("hpa");
    env.wait_ready("helpdesk").await.expect("ready autoscaled");

    // Transitions were reported as Events; the Secret's value never left the Secret.
    let events: Api<Event> = env.ns.api();
    let reasons: Vec<String> = events
        .list(&ListParams::default())
        .await
        .expect("events")
        .items
        .into_iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.kind.as_deref()) == Some("VoiceAgent"))
        .filter_map(|e| e.reason)
        .collect();
    for reason in ["ReferenceNotFound", "Accepted", "Available", "ChildrenApplied"] {
        assert!(reasons.iter().any(|r| r == reason), "no {reason} Event in {reasons:?}");
    }
    let everything = format!(
        "{}\n{}\n{}",
        env.ns
            .kubectl_ok(["get", "voiceagents,events,configmaps,deployments", "-o", "yaml"])
            .await
            .expect("dump"),
        std::fs::read_to_string(&operator.log).expect("log"),
        operator.get("/metrics").await.expect("metrics").1,
    );
    assert!(!everything.contains(SECRET_VALUE), "the Secret's value leaked");

    // 7. Deleting the VoiceAgent deletes every child.
    env.ns
        .kubectl_ok(["delete", "voiceagent", "helpdesk", "--wait=true", "--timeout=60s"])
        .await
        .expect("delete");
    let selector = ListParams::default().labels("app.kubernetes.io/instance=helpdesk");
    eventually("every child garbage-collected", WAIT, || async {
        let left = [
            env.ns.api::<ConfigMap>().list(&selector).await?.items.len(),
            deployments.list(&selector).await?.items.len(),
            replicasets.list(&selector).await?.items.len(),
            env.ns.api::<Pod>().list(&selector).await?.items.len(),
            env.ns.api::<Service>().list(&selector).await?.items.len(),
            ingresses.list(&selector).await?.items.len(),
            hpas.list(&selector).await?.items.len(),
            pdbs.list(&selector).await?.items.len(),
        ];
        Ok((left.iter().sum::<usize>() == 0).then_some(()))
    })
    .await
    .expect("garbage collected");
    // The Secret is the user's: it stays.
    assert!(env.ns.api::<Secret>().get_opt("prompts").await.expect("get").is_some());
    assert!(operator.stop().await.expect("stops").success());
}

/// A spec the schema accepts but the agent refuses is reported with the agent's field-named
/// message and then left alone until it changes: no retries, no writes.
#[tokio::test]
#[ignore = "needs the local cluster (tests/cluster/up)"]
async fn an_invalid_spec_waits_for_a_change() {
    let env = OperatorEnv::new("op-invalid").await.expect("test namespace");
    let operator = env.start_operator(&[]).await.expect("operator starts");
    let blank_voice = r#"apiVersion: voiceagent.dev/v1alpha1
kind: VoiceAgent
metadata: {name: mumble}
spec:
  model: {provider: NovaSonic, novaSonic: {voice: "   "}}
"#;
    env.apply_yaml(blank_voice).await.expect("the schema lets it in");
    let accepted = env
        .wait_condition("mumble", ACCEPTED, "False", "InvalidSpec")
        .await
        .unwrap_or_else(|e| panic!("{e:#}\n{}", operator.log_tail(40)));
    assert_eq!(
        accepted.message,
        "agent configuration: invalid configuration: model.voice: must not be empty"
    );
    assert!(
        env.ns
            .api::<Deployment>()
            .get_opt("mumble")
            .await
            .expect("get")
            .is_none()
    );

    // Well past the resync interval (3 s): the rejected object is not reconciled again.
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let reconciles = operator
        .metric("voice_operator_reconciles_total")
        .await
        .expect("metrics");
    let writes = env.operator_writes().await.expect("writes");
    tokio::time::sleep(std::time::Duration::from_secs(8)).await;
    assert_eq!(
        operator
            .metric("voice_operator_reconciles_total")
            .await
            .expect("metrics"),
        reconciles,
        "a rejected spec was reconciled again without a change"
    );
    assert_eq!(env.operator_writes().await.expect("writes"), writes);
    assert_eq!(
        operator
            .metric("voice_operator_reconcile_failures_total")
            .await
            .expect("metrics"),
        0.0
    );

    // A fix is picked up at once.
    env.apply_yaml(&blank_voice.replace(r#""   ""#, "amy"))
        .await
        .expect("fix");
    env.wait_ready("mumble").await.expect("ready after the fix");
    assert!(operator.stop().await.expect("stops").success());
}

/// The tools each tool server offers, as the operator lists them itself: per server in
/// `status.discoveredTools`, a server that cannot be reached as `ToolServersReachable=False`
/// (the agent stays Ready), asked again at its refresh or retry interval rather than at every
/// reconcile, and with no status write while nothing changes.
#[tokio::test]
#[ignore = "needs the local cluster (tests/cluster/up)"]
async fn tool_servers_are_listed_in_status_and_an_unreachable_one_is_a_condition() {
    use operator_support::mcp::McpServer;
    use voice_operator::api::{DiscoveredTools, TOOL_SERVERS_REACHABLE};

    let main = McpServer::start("gateway").await.expect("MCP server");
    let crm = McpServer::start("crm").await.expect("second MCP server");
    let env = OperatorEnv::new("op-tools").await.expect("test namespace");
    let operator = env.start_operator(&[]).await.expect("operator starts");
    const TOKEN: &str = "crm-token-you-must-not-log";
    env.apply_yaml(&format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: crm}}\nstringData: {{token: {TOKEN}}}\n"
    ))
    .await
    .expect("secret");
    let manifest = |third: &str| {
        format!(
            r#"apiVersion: voiceagent.dev/v1alpha1
kind: VoiceAgent
metadata: {{name: desk}}
spec:
  toolServers:
    - name: main
      url: {}
      allowedTools: [get_weather, lookup___slow_lookup]
    - name: crm
      url: {}
      auth: {{type: Bearer, tokenSecretRef: {{name: crm, key: token}}}}
    - name: third
      url: {third}
"#,
            main.url, crm.url
        )
    };
    // Nothing listens on port 9 of loopback.
    env.apply_yaml(&manifest("http://127.0.0.1:9/mcp"))
        .await
        .expect("apply");
    env.wait_ready("desk")
        .await
        .unwrap_or_else(|e| panic!("{e:#}\n{}", operator.log_tail(40)));
    let unreachable = env
        .wait_condition("desk", TOOL_SERVERS_REACHABLE, "False", "Unreachable")
        .await
        .unwrap_or_else(|e| panic!("{e:#}\n{}", operator.log_tail(40)));
    assert_eq!(
        unreachable.message,
        "tool server \"third\" unreachable: cannot connect and open an MCP session; agents offer the other servers' tools meanwhile"
    );
    let owned = |names: &[&str]| names.iter().map(|t| (*t).to_owned()).collect();
    let tools = |server: &str, tools: &[&str], model: &[&str]| DiscoveredTools {
        server: server.into(),
        tools: owned(tools),
        model_names: owned(model),
    };
    let status = env.agents().get("desk").await.expect("get").status.unwrap_or_default();
    // The model's names, as the agent gives them: gateway names shortened, and `get_weather`,
    // which both servers offer, prefixed with each server's name.
    assert_eq!(
        status.discovered_tools,
        [
            tools(
                "main",
                &["weather___get_weather", "lookup___slow_lookup"],
                &["main___get_weather", "slow_lookup"]
            ),
            tools(
                "crm",
                &["crm___lookup_customer", "get_weather"],
                &["lookup_customer", "crm___get_weather"]
            ),
        ]
    );
    // The bearer token came from the Secret, and was never logged.
    let crm_requests = crm.requests().await.expect("requests");
    assert!(!crm_requests.is_empty());
    assert!(
        crm_requests
            .iter()
            .all(|r| r["authorization"] == format!("Bearer {TOKEN}")),
        "{crm_requests:?}"
    );
    assert!(!operator.log_tail(1000).contains(TOKEN), "the token was logged");
    let deployment = env.ns.api::<Deployment>().get("desk").await.expect("deployment");
    let pod = deployment.spec.and_then(|s| s.template.spec).expect("pod spec");
    assert!(
        pod.volumes
            .iter()
            .flatten()
            .any(|v| v.name == "tool-server-crm"
                && v.secret.as_ref().and_then(|s| s.secret_name.as_deref()) == Some("crm")),
        "the token Secret is mounted"
    );

    // Reconciles keep coming (resync 3 s), but listings are reused: no new tools/list to the
    // reachable servers, and no write while the unreachable one is retried.
    let lists = |requests: Vec<serde_json::Value>| requests.iter().filter(|r| r["rpc"] == "tools/list").count();
    let listed_before = lists(main.requests().await.expect("requests"));
    let writes = env.operator_writes().await.expect("writes");
    let reconciles = operator
        .metric("voice_operator_reconciles_total")
        .await
        .expect("metrics");
    tokio::time::sleep(std::time::Duration::from_secs(12)).await;
    assert!(
        operator
            .metric("voice_operator_reconciles_total")
            .await
            .expect("metrics")
            >= reconciles + 3.0,
        "the operator stopped reconciling"
    );
    assert_eq!(
        lists(main.requests().await.expect("requests")),
        listed_before,
        "listed at every reconcile"
    );
    assert_eq!(
        env.operator_writes().await.expect("writes"),
        writes,
        "writes in steady state"
    );

    // The third server answers (a new URL is asked at once): the condition clears.
    let third = McpServer::start("crm").await.expect("third MCP server");
    env.apply_yaml(&manifest(&third.url)).await.expect("apply");
    env.wait_condition("desk", TOOL_SERVERS_REACHABLE, "True", "Reachable")
        .await
        .unwrap_or_else(|e| panic!("{e:#}\n{}", operator.log_tail(40)));
    let status = env.agents().get("desk").await.expect("get").status.unwrap_or_default();
    assert_eq!(
        status.discovered_tools.last(),
        Some(&tools(
            "third",
            &["crm___lookup_customer", "get_weather"],
            // crm offers both names too now: each gets its server's prefix.
            &["third___lookup_customer", "third___get_weather"]
        ))
    );
    assert!(operator.stop().await.expect("stops").success());
}

const TWILIO_TOKEN: &str = "twilio-auth-token-never-logged";

/// Phone calls: carrier Secrets are references like any other (Accepted=False while absent),
/// mounted and re-read (rotating one rolls nothing), the carriers' paths are exposed, and the
/// status lists the webhook URLs to enter in each carrier's console, without further writes.
#[tokio::test]
#[ignore = "needs the local cluster (tests/cluster/up)"]
async fn telephony_secrets_paths_and_webhook_urls() {
    let env = OperatorEnv::new("op-phones").await.expect("test namespace");
    let operator = env
        .start_operator(&[("--resync", "2s")])
        .await
        .expect("operator starts");
    let phones = r#"apiVersion: voiceagent.dev/v1alpha1
kind: VoiceAgent
metadata: {name: phones}
spec:
  prompt: {system: You answer the phone.}
  expose: {ingress: {className: nginx, host: phones.example.com, tls: {secretName: phones-tls}}}
  telephony:
    greeting: Greet the caller.
    fallbackNumber: "+15550100"
    twilio: {authTokenSecretRef: {name: twilio, key: auth-token}}
    telnyx:
      publicKeySecretRef: {name: telnyx, key: public-key}
      streamSecretRef: {name: telnyx, key: stream-secret}
"#;
    let twilio_secret = |token: &str| {
        format!("apiVersion: v1\nkind: Secret\nmetadata: {{name: twilio}}\nstringData: {{auth-token: {token:?}}}\n")
    };
    let telnyx_secret = "apiVersion: v1\nkind: Secret\nmetadata: {name: telnyx}\nstringData: {public-key: cHVibGlj, stream-secret: a-stream-secret-of-at-least-32-bytes}\n";

    // 1. No Secrets yet: not accepted, both named once, no workload and no webhook URLs.
    env.apply_yaml(phones).await.expect("apply");
    let accepted = env
        .wait_condition("phones", ACCEPTED, "False", "ReferenceNotFound")
        .await
        .unwrap_or_else(|e| panic!("{e:#}\n{}", operator.log_tail(40)));
    assert_eq!(
        accepted.message,
        r#"Secret "telnyx" not found; Secret "twilio" not found"#
    );
    let deployments: Api<Deployment> = env.ns.api();
    assert!(deployments.get_opt("phones").await.expect("get").is_none());
    let agent = env.agents().get("phones").await.expect("get");
    assert_eq!(agent.status.and_then(|s| s.telephony), None);

    // 2. They appear: Ready, with the webhook URLs, the carrier paths and the mounted files.
    env.apply_yaml(&twilio_secret(TWILIO_TOKEN))
        .await
        .expect("twilio secret");
    env.apply_yaml(telnyx_secret).await.expect("telnyx secret");
    env.wait_ready("phones")
        .await
        .unwrap_or_else(|e| panic!("{e:#}\n{}", operator.log_tail(40)));
    let status = env.agents().get("phones").await.expect("get").status.expect("status");
    let telephony = serde_json::to_value(status.telephony).expect("json");
    assert_eq!(
        telephony,
        serde_json::json!({
            "twilio": {"voiceUrl": "https://phones.example.com/twilio/voice"},
            "telnyx": {"voiceUrl": "https://phones.example.com/telnyx/voice"}
        })
    );
    let ingress = env.ns.api::<Ingress>().get("phones").await.expect("Ingress");
    let paths: Vec<String> = ingress
        .spec
        .and_then(|s| s.rules)
        .into_iter()
        .flatten()
        .flat_map(|r| r.http.map(|h| h.paths).unwrap_or_default())
        .filter_map(|p| p.path)
        .collect();
    assert_eq!(paths, ["/ws", "/twilio", "/telnyx"]);
    let config = env.ns.api::<ConfigMap>().get("phones-config").await.expect("ConfigMap");
    let config = config.data.expect("data")["config.yaml"].clone();
    for expected in [
        "publicUrl: https://phones.example.com",
        "authTokenFile: /etc/voice-agent/twilio/auth-token",
        "streamSecretFile: /etc/voice-agent/telnyx-stream-secret/stream-secret",
        "greeting: Greet the caller.",
    ] {
        assert!(config.contains(expected), "{expected:?} not in\n{config}");
    }
    let deployment = deployments.get("phones").await.expect("Deployment");
    let pod = deployment.spec.clone().and_then(|s| s.template.spec).expect("pod spec");
    let secret_volumes: Vec<(String, String)> = pod
        .volumes
        .unwrap_or_default()
        .into_iter()
        .filter_map(|v| Some((v.name, v.secret?.secret_name?)))
        .collect();
    for (volume, secret) in [
        ("twilio-auth-token", "twilio"),
        ("telnyx-public-key", "telnyx"),
        ("telnyx-stream-secret", "telnyx"),
    ] {
        assert!(
            secret_volumes.contains(&(volume.to_owned(), secret.to_owned())),
            "{volume} from {secret} not in {secret_volumes:?}"
        );
    }
    // Whole-directory mounts (no subPath), so the kubelet's updates reach the agent.
    let mounts = pod.containers[0].volume_mounts.clone().unwrap_or_default();
    assert!(
        mounts
            .iter()
            .filter(|m| m.name.starts_with("twilio") || m.name.starts_with("telnyx"))
            .all(|m| m.sub_path.is_none()),
        "{mounts:?}"
    );

    // 3. Steady state writes nothing; rotating the Auth Token rolls nothing either.
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    let generation = deployments.get("phones").await.expect("get").metadata.generation;
    let writes = env.operator_writes().await.expect("writes");
    tokio::time::sleep(std::time::Duration::from_secs(8)).await;
    assert_eq!(
        env.operator_writes().await.expect("writes"),
        writes,
        "the operator wrote in steady state\n{}",
        operator.log_tail(40)
    );
    env.apply_yaml(&twilio_secret("a-rotated-auth-token"))
        .await
        .expect("rotate");
    tokio::time::sleep(std::time::Duration::from_secs(6)).await;
    assert_eq!(
        deployments.get("phones").await.expect("get").metadata.generation,
        generation,
        "rotating a carrier secret changed the Deployment"
    );

    // 4. A Secret removed: Accepted=False again, the URLs the carriers were given stay.
    env.ns
        .kubectl_ok(["delete", "secret", "telnyx"])
        .await
        .expect("delete secret");
    let accepted = env
        .wait_condition("phones", ACCEPTED, "False", "ReferenceNotFound")
        .await
        .expect("not accepted");
    assert_eq!(accepted.message, r#"Secret "telnyx" not found"#);
    let kept = env
        .agents()
        .get("phones")
        .await
        .expect("get")
        .status
        .and_then(|s| s.telephony);
    assert_eq!(serde_json::to_value(kept).expect("json"), telephony);

    let everything = format!(
        "{}\n{}",
        env.ns
            .kubectl_ok(["get", "voiceagents,events,configmaps,deployments", "-o", "yaml"])
            .await
            .expect("dump"),
        std::fs::read_to_string(&operator.log).expect("log"),
    );
    assert!(!everything.contains(TWILIO_TOKEN), "the Auth Token leaked");
    assert!(!everything.contains("a-stream-secret"), "the stream secret leaked");
    assert!(operator.stop().await.expect("stops").success());
}
