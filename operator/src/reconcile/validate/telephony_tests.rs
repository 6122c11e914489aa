//! `spec.telephony`: the rendered agent configuration, the mounted carrier secrets, the exposed
//! paths and webhook URLs, and the rules checked again after admission.

use std::path::Path;

use super::*;
use crate::fixtures::{spec, try_validated, validated};
use crate::reconcile::dereference::Resolved;
use crate::reconcile::references::{SourceKind, references};

const PHONES: &str = r#"
prompt: {system: "You answer the phone.", greeting: "Say hello."}
expose: {ingress: {host: voice.example.com, tls: {secretName: voice-tls}}}
telephony:
  greeting: Greet the caller and ask how you can help.
  fallbackNumber: "+15550100"
  signatureTolerance: 2m
  twilio: {authTokenSecretRef: {name: twilio, key: auth-token}}
  telnyx:
    publicKeySecretRef: {name: telnyx, key: public-key}
    streamSecretRef: {name: telnyx, key: stream-secret}
  vonage: {signatureSecretRef: {name: vonage, key: signature-secret}, sampleRate: 8000}
"#;

fn resolved_with(spec: &VoiceAgentSpec, digest: impl Fn(&str) -> Option<&'static str>) -> Dereferenced {
    Dereferenced {
        references: references(spec)
            .into_iter()
            .map(|reference| {
                let found = digest(&reference.name);
                Resolved {
                    object_found: found.is_some(),
                    digest: found.map(str::to_owned),
                    reference,
                }
            })
            .collect(),
        ..Dereferenced::default()
    }
}

#[test]
fn renders_every_carrier_with_its_mounted_secret_files() {
    let agent = validated(spec(PHONES));
    let telephony = agent.config.telephony.as_ref().expect("telephony");
    assert_eq!(telephony.public_url.as_deref(), Some("https://voice.example.com"));
    assert_eq!(telephony.signature_tolerance, std::time::Duration::from_secs(120));
    assert_eq!(telephony.fallback_number.as_deref(), Some("+15550100"));
    assert_eq!(
        telephony.greeting.as_deref(),
        Some("Greet the caller and ask how you can help.")
    );
    let twilio = telephony.twilio.as_ref().expect("twilio");
    assert_eq!(twilio.auth_token_file, Path::new("/etc/voice-agent/twilio/auth-token"));
    let telnyx = telephony.telnyx.as_ref().expect("telnyx");
    assert_eq!(
        telnyx.public_key_file,
        Path::new("/etc/voice-agent/telnyx-public-key/public-key")
    );
    assert_eq!(
        telnyx.stream_secret_file,
        Path::new("/etc/voice-agent/telnyx-stream-secret/stream-secret")
    );
    let vonage = telephony.vonage.as_ref().expect("vonage");
    assert_eq!(vonage.sample_rate, 8000);
    // Every path the configuration names is a mounted file, from the named Secret key.
    let files: Vec<(String, &str, &str)> = agent
        .files
        .iter()
        .map(|f| {
            (
                Path::new(&f.dir).join(f.file).display().to_string(),
                f.source.as_str(),
                f.key.as_str(),
            )
        })
        .collect();
    for (path, source, key) in [
        (&twilio.auth_token_file, "twilio", "auth-token"),
        (&telnyx.public_key_file, "telnyx", "public-key"),
        (&telnyx.stream_secret_file, "telnyx", "stream-secret"),
        (&vonage.signature_secret_file, "vonage", "signature-secret"),
    ] {
        assert!(
            files.contains(&(path.display().to_string(), source, key)),
            "{path:?} not mounted from {source}/{key}: {files:?}"
        );
    }
    assert!(agent.files.iter().all(|f| f.kind == SourceKind::Secret && f.reread));
    // The agent accepts the file the ConfigMap carries and reads it back unchanged.
    let back = voice_config::AgentConfig::from_yaml(&agent.config_yaml).expect("parses");
    assert_eq!(back, agent.config);
    back.validate().expect("the agent accepts it");
}

#[test]
fn webhook_urls_and_paths_follow_the_exposure() {
    let agent = validated(spec(PHONES));
    let ingress = agent.ingress.as_ref().expect("an Ingress");
    assert_eq!(ingress.paths, ["/ws", "/twilio", "/telnyx", "/vonage"]);
    let webhooks = agent.webhooks.expect("webhooks");
    assert_eq!(
        serde_json::to_value(&webhooks).expect("json"),
        serde_json::json!({
            "twilio": {"voiceUrl": "https://voice.example.com/twilio/voice"},
            "telnyx": {"voiceUrl": "https://voice.example.com/telnyx/voice"},
            "vonage": {
                "answerUrl": "https://voice.example.com/vonage/answer",
                "eventUrl": "https://voice.example.com/vonage/events"
            }
        })
    );
    // A route's first host name, or the public URL given, when there is no Ingress.
    let routed = validated(spec(
        r#"
expose: {gateway: {parentRefs: [{name: public}], hostnames: [phones.example.com, other.example.com]}}
telephony: {twilio: {authTokenSecretRef: {name: twilio, key: t}}}
"#,
    ));
    assert_eq!(
        routed.webhooks.and_then(|w| w.twilio).map(|t| t.voice_url).as_deref(),
        Some("https://phones.example.com/twilio/voice")
    );
    let given = validated(spec(
        r#"
telephony:
  publicUrl: https://edge.example.com:8443
  vonage: {signatureSecretRef: {name: vonage, key: s}}
"#,
    ));
    assert_eq!(
        given.webhooks.and_then(|w| w.vonage).map(|v| v.answer_url).as_deref(),
        Some("https://edge.example.com:8443/vonage/answer")
    );
    assert_eq!(
        given.config.telephony.and_then(|t| t.public_url).as_deref(),
        Some("https://edge.example.com:8443")
    );
    // Without telephony nothing changes.
    let plain = validated(spec("expose: {ingress: {host: voice.example.com}}"));
    assert_eq!(
        plain.ingress.as_ref().map(|i| i.paths.clone()),
        Some(vec!["/ws".to_owned()])
    );
    assert!(plain.webhooks.is_none());
    assert!(!plain.config_yaml.contains("telephony"), "{}", plain.config_yaml);
}

#[test]
fn a_missing_carrier_secret_is_named_without_its_value() {
    let spec = spec(PHONES);
    let dereferenced = resolved_with(&spec, |name| (name != "telnyx").then_some("d"));
    let r = try_validated(spec, &dereferenced).expect_err("rejected");
    assert_eq!(r.reason, RejectReason::ReferenceNotFound);
    assert_eq!(r.message, r#"Secret "telnyx" not found"#);
}

#[test]
fn rotating_a_carrier_secret_does_not_roll_the_pods() {
    let spec = spec(PHONES);
    let checksum = |twilio: &'static str| {
        let dereferenced = resolved_with(&spec, |name| Some(if name == "twilio" { twilio } else { "d" }));
        try_validated(spec.clone(), &dereferenced).expect("valid").checksum
    };
    assert_eq!(checksum("token-1"), checksum("token-2"));
}

#[test]
fn telephony_rules_are_enforced_again() {
    for (yaml, message) in [
        (
            "expose: {ingress: {host: a.example.com, tls: {}}}\ntelephony: {}",
            "telephony needs at least one carrier: twilio, telnyx or vonage",
        ),
        (
            "telephony: {twilio: {authTokenSecretRef: {name: t, key: t}}}",
            "telephony needs an address carriers can reach",
        ),
        (
            "expose: {ingress: {host: a.example.com}}\ntelephony: {twilio: {authTokenSecretRef: {name: t, key: t}}}",
            "telephony needs TLS",
        ),
        (
            "expose: {gateway: {parentRefs: [{name: p}]}}\ntelephony: {twilio: {authTokenSecretRef: {name: t, key: t}}}",
            "telephony needs an address carriers can reach",
        ),
        (
            "telephony: {publicUrl: 'https://a.example.com', fallbackNumber: '+15550100', vonage: {signatureSecretRef: {name: v, key: v}}}",
            "telephony.fallbackNumber is only used with twilio or telnyx",
        ),
    ] {
        let r = try_validated(spec(yaml), &Dereferenced::default()).expect_err(yaml);
        assert_eq!(r.reason, RejectReason::InvalidSpec, "{yaml}");
        assert!(r.message.starts_with(message), "{yaml}: {}", r.message);
    }
}

#[test]
fn a_phone_greeting_needs_a_model_that_takes_text() {
    let r = try_validated(
        spec(
            r#"
model: {provider: NovaSonic, novaSonic: {modelId: amazon.nova-sonic-v1:0}}
telephony: {publicUrl: 'https://a.example.com', greeting: Hello., twilio: {authTokenSecretRef: {name: t, key: t}}}
"#,
        ),
        &Dereferenced::default(),
    )
    .expect_err("Nova Sonic v1 takes no text");
    assert!(r.message.contains("telephony.greeting"), "{}", r.message);
}
