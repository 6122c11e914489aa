//! `spec.auth`, `spec.gateway`, `spec.limits` and `spec.networkPolicy` through the real
//! apiserver and operator: token Secrets are required, mounted where the rendered configuration
//! points and kept out of the rollout checksum (rotation rolls nothing); the NetworkPolicy comes
//! and goes with the spec; and the real agent, started with the configuration and token file
//! exactly as the operator renders them, admits only the Secret's tokens, picking up a rotation
//! without a restart.
//!
//! `cargo test -p voice-e2e --test operator_security -- --ignored`

mod operator_support;

use std::net::SocketAddr;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{Api, Patch, PatchParams};
use operator_support::OperatorEnv;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use voice_e2e::process::{Process, free_addr};
use voice_e2e::wait::{WAIT, eventually};
use voice_e2e::workspace;

const AGENT: &str = "secured";
const CHECKSUM: &str = "voiceagent.dev/config-checksum";
/// Observed when a reconcile ends, so a higher count means one finished.
const RECONCILES: &str = "voice_operator_reconcile_duration_seconds_count";

const MANIFEST: &str = r#"
apiVersion: voiceagent.dev/v1alpha1
kind: VoiceAgent
metadata:
  name: secured
spec:
  prompt:
    systemFrom:
      configMapKeyRef: {name: secured-prompt, key: system.txt}
  auth:
    mode: Token
    tokenSecretRef: {name: secured-callers, key: tokens}
    allowedOrigins: [https://app.example.com]
    maxSessionsPerSubject: 3
  gateway:
    url: http://tools.tools.svc:8000/mcp
    auth:
      type: Bearer
      tokenSecretRef: {name: secured-gateway, key: token}
    allowedTools: [lookup_order]
  limits:
    handshakesPerMinute: 30
    trustedProxies: [10.0.0.0/8]
  networkPolicy:
    ingressFrom:
      - namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: ingress-nginx}}
"#;

fn secret(name: &str, key: &str, value: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: {name}\nstringData:\n  {key}: |\n    {}\n",
        value.replace('\n', "\n    ")
    )
}

/// The agent configuration the operator rendered into the VoiceAgent's ConfigMap.
async fn rendered_config(configmaps: &Api<ConfigMap>) -> String {
    let config = configmaps.get("secured-config").await.expect("ConfigMap");
    config
        .data
        .unwrap_or_default()
        .remove("config.yaml")
        .expect("config.yaml")
}

fn checksum(deployment: &Deployment) -> Option<String> {
    deployment
        .spec
        .as_ref()?
        .template
        .metadata
        .as_ref()?
        .annotations
        .as_ref()?
        .get(CHECKSUM)
        .cloned()
}

#[tokio::test]
#[ignore = "needs the local cluster (tests/cluster/up)"]
async fn token_secrets_are_required_mounted_and_rotated_without_a_rollout() {
    let env = OperatorEnv::new("op-security").await.expect("test namespace");
    let operator = env.start_operator(&[]).await.expect("operator starts");
    let deployments: Api<Deployment> = env.ns.api();
    let configmaps: Api<ConfigMap> = env.ns.api();
    let policies: Api<NetworkPolicy> = env.ns.api();
    let secrets: Api<Secret> = env.ns.api();

    env.apply_yaml(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: secured-prompt}\ndata: {system.txt: Be brief.}\n",
    )
    .await
    .expect("prompt");
    env.apply_yaml(MANIFEST).await.expect("VoiceAgent");

    // Without its token Secrets the agent is not accepted and no pods are made.
    let condition = env
        .wait_condition(AGENT, "Accepted", "False", "ReferenceNotFound")
        .await
        .unwrap_or_else(|e| panic!("{e:#}\n{}", operator.log_tail(40)));
    assert!(
        condition.message.contains(r#"Secret "secured-callers" not found"#)
            && condition.message.contains(r#"Secret "secured-gateway" not found"#),
        "{}",
        condition.message
    );
    assert!(deployments.get_opt(AGENT).await.expect("read").is_none());

    env.apply_yaml(&secret("secured-callers", "tokens", "# callers\nalpha-token-1111"))
        .await
        .expect("callers Secret");
    env.apply_yaml(&secret("secured-gateway", "token", "gateway-token-2222"))
        .await
        .expect("gateway Secret");
    env.wait_ready(AGENT)
        .await
        .unwrap_or_else(|e| panic!("{e:#}\n{}", operator.log_tail(40)));

    // The configuration points at the mounted files; the files come from the Secrets.
    let yaml = rendered_config(&configmaps).await;
    for expected in [
        "tokenFile: /etc/voice-agent/auth/tokens",
        "tokenFile: /etc/voice-agent/gateway/token",
        "https://app.example.com",
        "maxSessionsPerSubject: 3",
        "handshakesPerMinute: 30",
        "10.0.0.0/8",
        "lookup_order",
    ] {
        assert!(yaml.contains(expected), "{expected:?} missing from\n{yaml}");
    }
    assert!(
        !yaml.contains("alpha-token") && !yaml.contains("gateway-token"),
        "{yaml}"
    );
    let deployment = deployments.get(AGENT).await.expect("Deployment");
    let pod = deployment
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .expect("pod spec");
    let volumes = pod.volumes.as_deref().unwrap_or_default();
    let secret_of = |volume: &str| {
        volumes
            .iter()
            .find(|v| v.name == volume)
            .and_then(|v| v.secret.as_ref())
            .and_then(|s| s.secret_name.clone())
    };
    assert_eq!(secret_of("auth-tokens").as_deref(), Some("secured-callers"));
    assert_eq!(secret_of("gateway-token").as_deref(), Some("secured-gateway"));
    let mounts = pod.containers[0].volume_mounts.as_deref().unwrap_or_default();
    assert!(
        mounts
            .iter()
            .any(|m| m.name == "auth-tokens" && m.mount_path == "/etc/voice-agent/auth")
    );
    let env_names: Vec<&str> = pod.containers[0]
        .env
        .as_deref()
        .unwrap_or_default()
        .iter()
        .map(|e| e.name.as_str())
        .collect();
    assert_eq!(env_names, ["POD_NAMESPACE", "POD_NAME"]);

    // Only the ingress controller's namespace reaches the agent's port.
    let policy = policies.get(AGENT).await.expect("NetworkPolicy");
    let spec = policy.spec.expect("spec");
    let rules = spec.ingress.unwrap_or_default();
    assert_eq!(rules.len(), 1);
    assert_eq!(rules[0].from.as_ref().map(Vec::len), Some(1));
    assert_eq!(spec.policy_types, Some(vec!["Ingress".to_owned()]));

    // Rotating a token reconciles (the Secret is watched) but rolls nothing; changing the
    // prompt, which the agent reads only at start, rolls the pods.
    let before = checksum(&deployment).expect("checksum");
    let generation = deployment.metadata.generation;
    let reconciled = operator.metric(RECONCILES).await.expect("metrics");
    env.apply_yaml(&secret(
        "secured-callers",
        "tokens",
        "alpha-token-1111\nbravo-token-3333",
    ))
    .await
    .expect("rotation");
    eventually("a reconcile after the rotation", WAIT, || async {
        Ok((operator.metric(RECONCILES).await? > reconciled).then_some(()))
    })
    .await
    .expect("the Secret change is noticed");
    let rotated = deployments.get(AGENT).await.expect("Deployment");
    assert_eq!(
        checksum(&rotated).as_deref(),
        Some(before.as_str()),
        "token rotation must not roll the pods"
    );
    assert_eq!(rotated.metadata.generation, generation);
    env.apply_yaml(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: secured-prompt}\ndata: {system.txt: Be thorough.}\n",
    )
    .await
    .expect("prompt change");
    eventually("the pods to roll after the prompt change", WAIT, || async {
        let d = deployments.get(AGENT).await?;
        Ok(checksum(&d).filter(|c| *c != before).map(|_| ()))
    })
    .await
    .expect("rolled");

    // The real agent, with the rendered configuration and the Secret's tokens as the pods
    // would see them.
    let dir = tempdir();
    let tokens = secrets.get("secured-callers").await.expect("Secret");
    let tokens = tokens.data.unwrap_or_default().remove("tokens").expect("tokens key").0;
    let yaml = rendered_config(&configmaps).await;
    let local = yaml.replace("/etc/voice-agent/", &format!("{}/", dir.display()));
    // Neither the prompt nor the tool gateway exists here: the agent runs without tools.
    let local = without_gateway(&local);
    std::fs::create_dir_all(dir.join("auth")).expect("dir");
    std::fs::create_dir_all(dir.join("prompt")).expect("dir");
    std::fs::write(dir.join("auth/tokens"), &tokens).expect("tokens");
    std::fs::write(dir.join("prompt/system.txt"), "Be brief.").expect("prompt");
    std::fs::write(dir.join("config.yaml"), &local).expect("config");
    let agent_bin = workspace::agent_binary().await.expect("the agent builds");
    let addr = free_addr().expect("port");
    let mut cmd = tokio::process::Command::new(agent_bin);
    cmd.arg("--config")
        .arg(dir.join("config.yaml"))
        .args(["--listen", &addr.to_string()]);
    let agent = Process::start(cmd, "secured-agent", addr, "/readyz")
        .await
        .expect("agent starts");

    assert_eq!(handshake(addr, None, None).await, 401, "no token");
    assert_eq!(
        handshake(addr, Some("charlie-token-4444"), None).await,
        401,
        "unknown token"
    );
    assert_eq!(
        handshake(addr, Some("bravo-token-3333"), None).await,
        101,
        "listed token"
    );
    assert_eq!(
        handshake(addr, Some("alpha-token-1111"), Some("https://evil.example.net")).await,
        403,
        "foreign origin"
    );
    // The kubelet swaps the mounted file when the Secret changes; the agent follows.
    std::fs::write(dir.join("auth/tokens"), "charlie-token-4444\n").expect("rotate");
    eventually("the rotated token to be accepted", Duration::from_secs(10), || async {
        Ok((handshake(addr, Some("charlie-token-4444"), None).await == 101).then_some(()))
    })
    .await
    .expect("rotation picked up");
    assert_eq!(
        handshake(addr, Some("alpha-token-1111"), None).await,
        401,
        "removed token"
    );
    let log = std::fs::read_to_string(&agent.log).unwrap_or_default();
    assert!(
        !log.contains("token-1111") && !log.contains("token-3333") && !log.contains("token-4444"),
        "token values in the agent's log:\n{log}"
    );
    agent.stop().await.expect("agent stops");

    // Dropping networkPolicy from the spec removes the operator's NetworkPolicy.
    env.agents()
        .patch(
            AGENT,
            &PatchParams::default(),
            &Patch::Json::<()>(
                serde_json::from_value(serde_json::json!([
                    {"op": "remove", "path": "/spec/networkPolicy"}
                ]))
                .expect("patch"),
            ),
        )
        .await
        .expect("patch");
    eventually("the NetworkPolicy to go", WAIT, || async {
        Ok(policies.get_opt(AGENT).await?.is_none().then_some(()))
    })
    .await
    .expect("deleted");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The rendered configuration without its `gateway:` section (a top-level mapping).
fn without_gateway(yaml: &str) -> String {
    let mut out = String::new();
    let mut skipping = false;
    for line in yaml.lines() {
        if !line.starts_with(' ') {
            skipping = line.starts_with("gateway:");
        }
        if !skipping {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

fn tempdir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("voice-e2e-secured-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// The status code of a WebSocket handshake on `/ws`, with a bearer token and an origin.
async fn handshake(addr: SocketAddr, token: Option<&str>, origin: Option<&str>) -> u16 {
    let mut request = format!(
        "GET /ws HTTP/1.1\r\nHost: {addr}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    );
    if let Some(token) = token {
        request.push_str(&format!("Authorization: Bearer {token}\r\n"));
    }
    if let Some(origin) = origin {
        request.push_str(&format!("Origin: {origin}\r\n"));
    }
    request.push_str("\r\n");
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await?;
        stream.write_all(request.as_bytes()).await?;
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n") && head.len() < 256 {
            if stream.read(&mut byte).await? == 0 {
                break;
            }
            head.push(byte[0]);
        }
        anyhow::Ok(String::from_utf8_lossy(&head).into_owned())
    };
    let line = tokio::time::timeout(Duration::from_secs(5), exchange)
        .await
        .expect("handshake answered in time")
        .expect("handshake");
    line.split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP status line: {line:?}"))
}
