//! The CRD's CEL rules, evaluated client-side against the generated schema (schema defaults
//! applied first, as the apiserver does). The e2e suite sends the same kinds of objects to a
//! real apiserver.

use kube::core::cel::Validator;
use serde_json::{Value, json};

fn schema() -> Value {
    let crd = serde_json::to_value(voice_operator::api::crd()).expect("json");
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone()
}

fn object(name: &str, spec_yaml: &str) -> Value {
    let spec: Value = serde_saphyr::from_str(spec_yaml).expect("spec yaml");
    json!({
        "apiVersion": "voiceagent.dev/v1alpha1",
        "kind": "VoiceAgent",
        "metadata": {"name": name, "namespace": "voice"},
        "spec": spec,
    })
}

/// Messages of the rules `spec_yaml` breaks.
fn violations(name: &str, spec_yaml: &str) -> Vec<String> {
    match Validator::new().validate(&schema(), &object(name, spec_yaml), None) {
        Ok(()) => Vec::new(),
        Err(errors) => errors.iter().map(|e| e.message.clone()).collect(),
    }
}

#[track_caller]
fn refused(spec_yaml: &str, message: &str) {
    let found = violations("support", spec_yaml);
    assert!(
        found.iter().any(|m| m == message),
        "expected {message:?} for\n{spec_yaml}\ngot {found:?}"
    );
}

#[track_caller]
fn accepted(spec_yaml: &str) {
    let found = violations("support", spec_yaml);
    assert!(found.is_empty(), "unexpected {found:?} for\n{spec_yaml}");
}

#[test]
fn an_empty_spec_is_valid() {
    accepted("{}");
}

#[test]
fn the_examples_style_specs_are_valid() {
    accepted(
        r#"
model:
  provider: NovaSonic
  novaSonic: {region: us-east-1, voice: tiffany, endpointingSensitivity: HIGH, temperature: 0.5}
prompt: {systemFrom: {secretKeyRef: {name: prompts, key: support}}}
scaling: {minReplicas: 2, maxReplicas: 10, targetSessionsPerReplica: 50}
expose:
  ingress: {className: nginx, host: voice.example.com, tls: {secretName: voice-tls}}
  gateway: {parentRefs: [{name: public}], hostnames: [voice.example.com], timeouts: {request: 0s, backendRequest: 1h}}
"#,
    );
}

#[test]
fn name_must_be_a_dns_label() {
    let found = violations("Support_Line", "{}");
    assert!(
        found.iter().any(|m| m.starts_with("metadata.name must be a DNS label")),
        "{found:?}"
    );
}

#[test]
fn replicas_and_scaling_are_exclusive() {
    refused(
        "replicas: 2\nscaling: {maxReplicas: 4}",
        "set either replicas or scaling, not both",
    );
    accepted("replicas: 2");
    accepted("scaling: {maxReplicas: 4}");
}

#[test]
fn scaling_bounds_are_ordered() {
    refused(
        "scaling: {minReplicas: 5, maxReplicas: 2}",
        "scaling.minReplicas must not exceed scaling.maxReplicas",
    );
}

#[test]
fn scaling_target_fits_in_a_replica() {
    refused(
        "session: {maxSessionsPerReplica: 10}\nscaling: {maxReplicas: 3, targetSessionsPerReplica: 20}",
        "scaling.targetSessionsPerReplica must not exceed session.maxSessionsPerReplica",
    );
}

#[test]
fn prompt_is_inline_xor_referenced() {
    refused(
        "prompt: {system: hi, systemFrom: {configMapKeyRef: {name: p, key: k}}}",
        "set exactly one of prompt.system and prompt.systemFrom",
    );
    refused("prompt: {}", "set exactly one of prompt.system and prompt.systemFrom");
    refused(
        "prompt: {systemFrom: {configMapKeyRef: {name: p, key: k}, secretKeyRef: {name: s, key: k}}}",
        "set exactly one of configMapKeyRef and secretKeyRef",
    );
}

#[test]
fn provider_blocks_match_the_provider() {
    refused(
        "model: {provider: Simulated, novaSonic: {}}",
        "model.novaSonic is only used when model.provider is NovaSonic",
    );
    refused(
        "model: {provider: NovaSonic, simulated: {}}",
        "model.simulated is only used when model.provider is Simulated",
    );
}

#[test]
fn nova_2_only_options_need_nova_2() {
    refused(
        "model: {provider: NovaSonic, novaSonic: {modelId: amazon.nova-sonic-v1:0, endpointingSensitivity: LOW}}",
        "endpointingSensitivity is supported from Nova 2 Sonic on, not by Nova Sonic v1",
    );
    accepted(
        "model: {provider: NovaSonic, novaSonic: {modelId: us.amazon.nova-2-sonic-v1:0, endpointingSensitivity: LOW}}",
    );
    accepted("model: {provider: NovaSonic, novaSonic: {modelId: amazon.nova-2-5-sonic, endpointingSensitivity: LOW}}");
}

/// The CRD's rules and the agent's own validation accept the same model ids, and agree on which
/// generation takes endpointing settings.
#[test]
fn the_crd_and_the_agent_agree_on_model_ids() {
    let ids = [
        "amazon.nova-sonic-v1:0",
        "us.amazon.nova-sonic-v1:0",
        "amazon.nova-2-sonic-v1:0",
        "eu.amazon.nova-2-sonic-v1:0",
        "amazon.nova-2-sonic",
        "amazon.nova-2-5-sonic",
        "global.amazon.nova-2-5-sonic",
        "us-gov.amazon.nova-2-5-sonic-v1:0",
        "amazon.nova-3-sonic-v2",
        "arn:aws:bedrock:us-east-1::foundation-model/amazon.nova-2-sonic-v1:0",
        "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.amazon.nova-2-5-sonic",
        "anthropic.claude-3-haiku",
        "amazon.nova-lite-v1:0",
        "amazon.nova-2-lite-v1:0",
        "amazon.nova-sonicx",
        "amazon.nova-2--sonic",
        "amazon.nova-2-5-1-sonic",
        "US.amazon.nova-2-sonic-v1:0",
        "amazon.nova-2-sonic-v1:",
        "arn:aws:bedrock:us-east-1:1:application-inference-profile/abc",
    ];
    for id in ids {
        let agent = voice_config::nova_generation(id);
        let plain = violations(
            "support",
            &format!("model: {{provider: NovaSonic, novaSonic: {{modelId: {id:?}}}}}"),
        );
        assert_eq!(
            plain.is_empty(),
            agent.is_ok(),
            "{id}: CRD says {plain:?}, agent says {agent:?}"
        );
        if let Ok(generation) = agent {
            let tuned = violations(
                "support",
                &format!("model: {{provider: NovaSonic, novaSonic: {{modelId: {id:?}, endpointingSensitivity: LOW}}}}"),
            );
            assert_eq!(tuned.is_empty(), generation.endpointing, "{id}: {tuned:?}");
        }
    }
}

#[test]
fn nova_model_ids_and_sample_rates() {
    refused(
        "model: {provider: NovaSonic, novaSonic: {modelId: anthropic.claude-v2}}",
        "modelId must name a Nova Sonic model: amazon.nova-2-5-sonic, amazon.nova-2-sonic-v1:0 or amazon.nova-sonic-v1:0, optionally with an inference-profile prefix such as us., eu. or global.",
    );
    refused(
        "model: {provider: NovaSonic, novaSonic: {outputSampleRate: 44100}}",
        "outputSampleRate must be 8000, 16000 or 24000",
    );
    refused(
        "model: {provider: NovaSonic, novaSonic: {renewAfter: 9m}}",
        "renewAfter must be between 10s and 7m55s (Nova ends streams after about 8 minutes)",
    );
}

#[test]
fn durations_are_bounded() {
    refused("session: {maxDuration: 500ms}", "maxDuration must be at least 1s");
    refused("session: {idleTimeout: 0s}", "idleTimeout must be at least 1s");
    refused("session: {drainTimeout: 7h}", "drainTimeout must be at most 6h");
    refused("model: {simulated: {thinkTime: 11s}}", "thinkTime must be at most 10s");
    accepted("session: {maxDuration: 2h30m, idleTimeout: 45s, drainTimeout: 0s}");
}

#[test]
fn expose_needs_a_way_in() {
    refused("expose: {}", "expose needs ingress, gateway, or both");
}

#[test]
fn route_timeouts_are_ordered() {
    refused(
        "expose: {gateway: {parentRefs: [{name: g}], timeouts: {request: 10s, backendRequest: 1m}}}",
        "timeouts.backendRequest must not exceed timeouts.request",
    );
    accepted("expose: {gateway: {parentRefs: [{name: g}], timeouts: {request: 0s, backendRequest: 1m}}}");
}

#[test]
fn resumption_with_redis_needs_its_connection_and_a_key() {
    refused(
        "session: {resume: {store: Redis}}",
        "session.resume.store Redis needs redis and encryptionKeySecretRef (conversations are stored encrypted)",
    );
    refused(
        "session: {resume: {store: Redis, redis: {url: \"redis://r:6379\"}}}",
        "session.resume.store Redis needs redis and encryptionKeySecretRef (conversations are stored encrypted)",
    );
    refused(
        "session: {resume: {redis: {url: \"redis://r:6379\"}}}",
        "session.resume.redis is only used with store: Redis",
    );
    refused(
        "session: {resume: {window: 48h}}",
        "session.resume.window must be between 1s and 24h",
    );
    accepted(
        "session: {resume: {store: Redis, redis: {url: \"rediss://r:6380/0\", passwordSecretRef: {name: r, key: p}}, encryptionKeySecretRef: {name: k, key: k}}}",
    );
    accepted("session: {resume: {enabled: false}}");
}

#[test]
fn keda_mode_needs_prometheus_and_only_it_uses_it() {
    refused(
        "scaling: {maxReplicas: 4, mode: Keda}",
        "scaling.prometheus is required with mode Keda",
    );
    refused(
        "scaling: {maxReplicas: 4, prometheus: {serverAddress: 'http://p:9090'}}",
        "scaling.prometheus is only used with mode Keda",
    );
    accepted("scaling: {maxReplicas: 4, mode: Keda, prometheus: {serverAddress: 'http://p:9090'}}");
}

#[test]
fn gateway_and_tool_servers_are_exclusive() {
    refused(
        "gateway: {url: 'https://a.example.com/mcp'}\ntoolServers: [{name: b, url: 'https://b.example.com/mcp'}]",
        "set either gateway (one server) or toolServers (a list), not both",
    );
    accepted("gateway: {url: 'https://a.example.com/mcp'}");
    accepted(
        "toolServers: [{name: crm, url: 'https://a.example.com/mcp', auth: {type: Bearer, tokenSecretRef: {name: crm, key: token}}}, {name: aws, url: 'https://b.example.com/mcp', auth: {type: SigV4}}]",
    );
    refused(
        "toolServers: [{name: crm, url: 'https://a.example.com/mcp', auth: {type: Bearer}}]",
        "auth.tokenSecretRef is required with type Bearer and only used with it",
    );
}

const TWILIO: &str = "twilio: {authTokenSecretRef: {name: twilio, key: auth-token}}";

#[test]
fn telephony_with_a_tls_ingress_is_valid() {
    accepted(&format!(
        r#"
expose: {{ingress: {{host: voice.example.com, tls: {{secretName: voice-tls}}}}}}
telephony:
  greeting: Greet the caller.
  fallbackNumber: "+15550100"
  {TWILIO}
  telnyx: {{publicKeySecretRef: {{name: telnyx, key: pk}}, streamSecretRef: {{name: telnyx, key: ss}}}}
  vonage: {{signatureSecretRef: {{name: vonage, key: s}}, sampleRate: 8000}}
"#
    ));
    accepted(&format!(
        "expose: {{gateway: {{parentRefs: [{{name: public}}], hostnames: [voice.example.com]}}}}\ntelephony: {{{TWILIO}}}"
    ));
    accepted(&format!(
        "telephony: {{publicUrl: 'https://edge.example.com:8443', {TWILIO}}}"
    ));
}

#[test]
fn telephony_needs_a_carrier() {
    refused(
        "telephony: {publicUrl: 'https://voice.example.com'}",
        "telephony needs at least one carrier: twilio, telnyx or vonage",
    );
}

#[test]
fn telephony_needs_an_address_carriers_can_reach() {
    let message = "telephony needs an address carriers can reach: set expose.ingress, expose.gateway with hostnames, or telephony.publicUrl";
    refused(&format!("telephony: {{{TWILIO}}}"), message);
    refused(
        &format!("expose: {{gateway: {{parentRefs: [{{name: public}}]}}}}\ntelephony: {{{TWILIO}}}"),
        message,
    );
}

#[test]
fn telephony_needs_tls() {
    let message = "telephony needs TLS: carriers connect only to https:// webhooks and wss:// streams; set expose.ingress.tls (or expose.gateway.tls), or telephony.publicUrl";
    refused(
        &format!("expose: {{ingress: {{host: voice.example.com}}}}\ntelephony: {{{TWILIO}}}"),
        message,
    );
    refused(
        &format!(
            "expose: {{gateway: {{parentRefs: [{{name: public}}], hostnames: [voice.example.com], tls: false}}}}\ntelephony: {{{TWILIO}}}"
        ),
        message,
    );
}

#[test]
fn telephony_values_are_bounded() {
    refused(
        &format!("telephony: {{publicUrl: 'https://a.example.com', signatureTolerance: 5s, {TWILIO}}}"),
        "telephony.signatureTolerance must be between 10s and 1h",
    );
    refused(
        "telephony: {publicUrl: 'https://a.example.com', vonage: {signatureSecretRef: {name: v, key: s}, sampleRate: 44100}}",
        "telephony.vonage.sampleRate must be 8000 or 16000",
    );
    refused(
        "telephony: {publicUrl: 'https://a.example.com', fallbackNumber: '+15550100', vonage: {signatureSecretRef: {name: v, key: s}}}",
        "telephony.fallbackNumber is only used with twilio or telnyx (Vonage has no step after the stream)",
    );
}
