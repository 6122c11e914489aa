//! The apiserver refuses invalid VoiceAgents at admission, with the messages documented in
//! docs/crd-reference.md; the examples pass a server-side dry run. No operator runs here:
//! this is the CRD's schema and CEL rules in a real apiserver.
//!
//! `cargo test -p voice-e2e --test operator_admission -- --ignored`

mod operator_support;

use operator_support::{EXAMPLES, OperatorEnv};
use voice_e2e::command::try_pipe;
use voice_e2e::workspace;

/// A VoiceAgent manifest with `spec` (YAML, indented by two spaces).
fn manifest(name: &str, spec: &str) -> String {
    let spec: String = spec.lines().map(|l| format!("  {l}\n")).collect();
    format!("apiVersion: voiceagent.dev/v1alpha1\nkind: VoiceAgent\nmetadata:\n  name: {name}\nspec:\n{spec}")
}

#[tokio::test]
#[ignore = "needs the local cluster (tests/cluster/up)"]
async fn invalid_specs_are_refused_with_clear_messages() {
    let env = OperatorEnv::new("op-admission").await.expect("test namespace");
    let cases: &[(&str, &str, &str)] = &[
        (
            "a",
            "replicas: 2\nscaling: {maxReplicas: 4}",
            "set either replicas or scaling, not both",
        ),
        (
            "a",
            "scaling: {minReplicas: 5, maxReplicas: 2}",
            "scaling.minReplicas must not exceed scaling.maxReplicas",
        ),
        (
            "a",
            "session: {maxSessionsPerReplica: 10}\nscaling: {maxReplicas: 3, targetSessionsPerReplica: 20}",
            "scaling.targetSessionsPerReplica must not exceed session.maxSessionsPerReplica",
        ),
        (
            "a",
            "prompt: {system: hi, systemFrom: {configMapKeyRef: {name: p, key: k}}}",
            "set exactly one of prompt.system and prompt.systemFrom",
        ),
        (
            "a",
            "prompt: {systemFrom: {configMapKeyRef: {name: p, key: k}, secretKeyRef: {name: s, key: k}}}",
            "set exactly one of configMapKeyRef and secretKeyRef",
        ),
        (
            "a",
            "model: {provider: Simulated, novaSonic: {}}",
            "model.novaSonic is only used when model.provider is NovaSonic",
        ),
        (
            "a",
            "model: {provider: NovaSonic, novaSonic: {modelId: amazon.nova-sonic-v1:0, endpointingSensitivity: LOW}}",
            "endpointingSensitivity is supported from Nova 2 Sonic on, not by Nova Sonic v1",
        ),
        (
            "a",
            "model: {provider: NovaSonic, novaSonic: {modelId: anthropic.claude-v2}}",
            "modelId must name a Nova Sonic model",
        ),
        (
            "a",
            "session: {resume: {store: Redis}}",
            "session.resume.store Redis needs redis and encryptionKeySecretRef",
        ),
        (
            "a",
            "sessionSettings: {variables: [{name: customer_name}, {name: customer_name}]}",
            "spec.sessionSettings.variables[1]: Duplicate value",
        ),
        (
            "a",
            "model: {provider: NovaSonic, novaSonic: {outputSampleRate: 44100}}",
            "outputSampleRate must be 8000, 16000 or 24000",
        ),
        (
            "a",
            "model: {provider: NovaSonic, novaSonic: {renewAfter: 9m}}",
            "renewAfter must be between 10s and 7m55s",
        ),
        (
            "a",
            "model: {provider: NovaSonic, novaSonic: {temperature: 1.5}}",
            "spec.model.novaSonic.temperature: Invalid value",
        ),
        (
            "a",
            "model: {provider: OpenAI}",
            r#"spec.model.provider: Unsupported value: "OpenAI""#,
        ),
        ("a", "session: {drainTimeout: 5 minutes}", "spec.session.drainTimeout"),
        ("a", "session: {drainTimeout: 7h}", "drainTimeout must be at most 6h"),
        ("a", "session: {idleTimeout: 0s}", "idleTimeout must be at least 1s"),
        ("a", "replicas: -1", "spec.replicas: Invalid value: -1"),
        ("a", "expose: {}", "expose needs ingress, gateway, or both"),
        (
            "a",
            "expose: {ingress: {host: Voice.Example.com}}",
            "spec.expose.ingress.host",
        ),
        (
            "a",
            "expose: {gateway: {parentRefs: []}}",
            "spec.expose.gateway.parentRefs",
        ),
        (
            "a",
            "expose: {gateway: {parentRefs: [{name: g}], timeouts: {request: 10s, backendRequest: 1m}}}",
            "timeouts.backendRequest must not exceed timeouts.request",
        ),
        (
            "a",
            "auth: {mode: Token}",
            "auth.tokenSecretRef is required with mode Token",
        ),
        (
            "a",
            "auth: {tokenSecretRef: {name: t, key: k}}",
            "auth.tokenSecretRef is required with mode Token and only used with it",
        ),
        ("a", "auth: {mode: Jwt}", "auth.jwt is required with mode Jwt"),
        (
            "a",
            "auth: {mode: Jwt, jwt: {issuer: i, audiences: [], jwksUrl: 'https://i.example.com/jwks'}}",
            "spec.auth.jwt.audiences",
        ),
        (
            "a",
            "auth: {mode: Jwt, jwt: {issuer: i, audiences: [a], jwksUrl: 'https://i.example.com/jwks', algorithms: [HS256]}}",
            r#"Unsupported value: "HS256""#,
        ),
        (
            "a",
            "auth: {mode: Jwt, jwt: {issuer: i, audiences: [a], jwksUrl: 'file:///etc/jwks'}}",
            "spec.auth.jwt.jwksUrl",
        ),
        (
            "a",
            "auth: {maxSessionsPerSubject: 0}",
            "spec.auth.maxSessionsPerSubject",
        ),
        ("a", "gateway: {url: 'ftp://tools.example.com'}", "spec.gateway.url"),
        (
            "a",
            "gateway: {url: 'https://tools.example.com/mcp', auth: {type: Bearer}}",
            "auth.tokenSecretRef is required with type Bearer",
        ),
        (
            "a",
            "gateway: {url: 'https://tools.example.com/mcp', auth: {service: bedrock-agentcore}}",
            "auth.region and auth.service are only used with type SigV4",
        ),
        (
            "a",
            "toolServers: [{name: crm, url: 'https://tools.example.com/mcp', auth: {type: Bearer}}]",
            "spec.toolServers[0].auth",
        ),
        (
            "a",
            "gateway: {url: 'https://a.example.com/mcp'}\ntoolServers: [{name: b, url: 'https://b.example.com/mcp'}]",
            "set either gateway (one server) or toolServers (a list), not both",
        ),
        (
            "a",
            "toolServers: [{name: b, url: 'https://a.example.com/mcp'}, {name: b, url: 'https://b.example.com/mcp'}]",
            "Duplicate value",
        ),
        (
            "a",
            "toolServers: [{name: Bad_Name, url: 'https://a.example.com/mcp'}]",
            "spec.toolServers[0].name",
        ),
        (
            "a",
            "gateway: {url: 'https://tools.example.com/mcp', callTimeout: 10m}",
            "callTimeout must be between 100ms and 5m",
        ),
        (
            "a",
            "gateway: {url: 'https://tools.example.com/mcp', maxConcurrentCalls: 0}",
            "spec.gateway.maxConcurrentCalls",
        ),
        ("a", "limits: {maxAudioRate: 0.5}", "spec.limits.maxAudioRate"),
        (
            "a",
            "limits: {audioBurst: 2m}",
            "audioBurst must be between 100ms and 60s",
        ),
        (
            "a",
            "limits: {firstMessageTimeout: 10ms}",
            "firstMessageTimeout must be at least 100ms",
        ),
        ("a", "limits: {maxJsonDepth: 1}", "spec.limits.maxJsonDepth"),
        (
            "a",
            "networkPolicy: {ingressFrom: [{ipBlock: {}}]}",
            "spec.networkPolicy.ingressFrom[0].ipBlock.cidr",
        ),
        (
            "a",
            "expose: {ingress: {host: a.example.com, tls: {}}}\ntelephony: {}",
            "telephony needs at least one carrier: twilio, telnyx or vonage",
        ),
        (
            "a",
            "telephony: {twilio: {authTokenSecretRef: {name: t, key: k}}}",
            "telephony needs an address carriers can reach: set expose.ingress, expose.gateway with hostnames, or telephony.publicUrl",
        ),
        (
            "a",
            "expose: {ingress: {host: a.example.com}}\ntelephony: {twilio: {authTokenSecretRef: {name: t, key: k}}}",
            "telephony needs TLS: carriers connect only to https:// webhooks and wss:// streams",
        ),
        (
            "a",
            "telephony: {publicUrl: 'http://a.example.com', twilio: {authTokenSecretRef: {name: t, key: k}}}",
            "spec.telephony.publicUrl",
        ),
        (
            "a",
            "telephony: {publicUrl: 'https://a.example.com', fallbackNumber: '555-0100', twilio: {authTokenSecretRef: {name: t, key: k}}}",
            "spec.telephony.fallbackNumber",
        ),
        (
            "a",
            "telephony: {publicUrl: 'https://a.example.com', fallbackNumber: '+15550100', vonage: {signatureSecretRef: {name: v, key: k}}}",
            "telephony.fallbackNumber is only used with twilio or telnyx",
        ),
        (
            "a",
            "telephony: {publicUrl: 'https://a.example.com', vonage: {signatureSecretRef: {name: v, key: k}, sampleRate: 44100}}",
            "telephony.vonage.sampleRate must be 8000 or 16000",
        ),
        (
            "a",
            "telephony: {publicUrl: 'https://a.example.com', signatureTolerance: 2h, twilio: {authTokenSecretRef: {name: t, key: k}}}",
            "telephony.signatureTolerance must be between 10s and 1h",
        ),
        (
            "a",
            "telephony: {publicUrl: 'https://a.example.com', telnyx: {publicKeySecretRef: {name: t, key: k}}}",
            "spec.telephony.telnyx.streamSecretRef: Required value",
        ),
        ("support.line", "{}", "metadata.name must be a DNS label"),
    ];
    let mut failures = Vec::new();
    for (name, spec, message) in cases {
        let out = try_pipe(env.ns.kubectl().args(["apply", "-f", "-"]), &manifest(name, spec))
            .await
            .expect("kubectl runs");
        let (ok, stderr) = (out.success, out.stderr);
        if ok || !stderr.contains(message) {
            failures.push(format!(
                "spec {spec:?}: expected refusal with {message:?}, got {}: {stderr}",
                if ok { "acceptance" } else { "refusal" }
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    let stored = env.agents().list(&Default::default()).await.expect("list");
    assert!(stored.items.is_empty(), "nothing invalid was stored");
}

#[tokio::test]
#[ignore = "needs the local cluster (tests/cluster/up)"]
async fn the_examples_pass_a_server_side_dry_run() {
    let env = OperatorEnv::new("op-dry-run").await.expect("test namespace");
    for example in EXAMPLES {
        let path = workspace::root().join(example);
        let out = env
            .ns
            .kubectl_ok(["apply", "--dry-run=server", "-f", &path.to_string_lossy()])
            .await
            .unwrap_or_else(|e| panic!("{example}: {e:#}"));
        assert!(out.contains("voiceagent.voiceagent.dev"), "{example}: {out}");
    }
}
