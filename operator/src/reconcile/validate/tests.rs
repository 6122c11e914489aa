use super::*;
use crate::fixtures::{self, spec, try_validated, validated};
use crate::reconcile::dereference::Resolved;
use crate::reconcile::references::{Reference, SourceKind, references};

fn rejected(yaml: &str) -> Rejection {
    try_validated(spec(yaml), &Dereferenced::default()).expect_err("rejected")
}

fn resolved(spec: &VoiceAgentSpec, outcome: impl Fn(&Reference) -> (bool, Option<&'static str>)) -> Dereferenced {
    Dereferenced {
        references: references(spec)
            .into_iter()
            .map(|reference| {
                let (object_found, digest) = outcome(&reference);
                Resolved {
                    reference,
                    object_found,
                    digest: digest.map(str::to_owned),
                }
            })
            .collect(),
        ingress_class_controller: None,
        gateway_class_controller: None,
    }
}

#[test]
fn defaults_give_one_simulated_replica_inside_the_cluster() {
    let agent = validated(VoiceAgentSpec::default());
    assert_eq!(agent.replicas, Replicas::Fixed(1));
    assert_eq!(agent.image, fixtures::IMAGE);
    assert_eq!(agent.url, "ws://support.voice.svc:8080/ws");
    assert_eq!(
        agent.shutdown,
        Shutdown {
            pre_stop_secs: 5,
            serving_secs: 305,
            grace_period_secs: 315
        }
    );
    assert_eq!(agent.resources, default_resources());
    assert!(agent.files.is_empty());
}

#[test]
fn the_url_follows_the_exposure() {
    let tls = validated(spec("expose: {ingress: {host: voice.example.com, tls: {}}}"));
    assert_eq!(tls.url, "wss://voice.example.com/ws");
    let plain = validated(spec("expose: {ingress: {host: voice.example.com, path: /v}}"));
    assert_eq!(plain.url, "ws://voice.example.com/v");
    let route = validated(spec(
        "expose: {gateway: {parentRefs: [{name: g}], hostnames: [a.example.com], tls: false}}",
    ));
    assert_eq!(route.url, "ws://a.example.com/ws");
}

#[test]
fn the_ingress_controller_comes_from_the_class() {
    let spec = spec("expose: {ingress: {className: public, host: a.example.com}}");
    let found = Dereferenced {
        ingress_class_controller: Some("k8s.io/ingress-nginx".into()),
        ..Dereferenced::default()
    };
    let agent = try_validated(spec.clone(), &found).expect("valid");
    assert_eq!(
        agent.ingress.map(|i| i.controller),
        Some(IngressController::IngressNginx)
    );
    let agent = try_validated(spec, &Dereferenced::default()).expect("valid");
    assert_eq!(agent.ingress.map(|i| i.controller), Some(IngressController::Generic));
}

#[test]
fn cel_rules_are_enforced_again_for_objects_that_slipped_past_admission() {
    for (yaml, message) in [
        (
            "replicas: 2\nscaling: {maxReplicas: 3}",
            "set either replicas or scaling, not both",
        ),
        (
            "scaling: {minReplicas: 4, maxReplicas: 3}",
            "scaling.minReplicas must not exceed scaling.maxReplicas",
        ),
        ("prompt: {}", "set exactly one of prompt.system and prompt.systemFrom"),
        ("expose: {}", "expose needs ingress, gateway, or both"),
        (
            "model: {provider: Simulated, novaSonic: {}}",
            "model.novaSonic is only used when model.provider is NovaSonic",
        ),
    ] {
        let r = rejected(yaml);
        assert_eq!(r.reason, RejectReason::InvalidSpec, "{yaml}");
        assert_eq!(r.message, message, "{yaml}");
    }
}

#[test]
fn the_agents_own_validation_names_the_field() {
    let r = rejected("model: {provider: NovaSonic, novaSonic: {temperature: 1.5}}");
    assert_eq!(r.reason, RejectReason::InvalidSpec);
    assert_eq!(
        r.message,
        "agent configuration: invalid configuration: model.temperature: must be between 0 and 1"
    );
    let r = rejected(
        "model: {provider: NovaSonic, novaSonic: {modelId: amazon.nova-sonic-v1:0, endpointingSensitivity: HIGH}}",
    );
    assert!(r.message.contains("model.endpointingSensitivity"), "{}", r.message);
}

#[test]
fn bad_names_are_refused() {
    let mut agent = fixtures::agent(VoiceAgentSpec::default());
    agent.metadata.name = Some("Support".into());
    let r = validate(&agent, &Dereferenced::default(), &fixtures::settings()).expect_err("refused");
    assert!(r.message.starts_with("metadata.name must be a DNS label"));
}

#[test]
fn missing_references_are_named_without_values() {
    let spec = spec(
        r#"
prompt: {systemFrom: {secretKeyRef: {name: prompts, key: support}}}
pod:
  envFrom: [{configMapRef: {name: proxy}}]
  env:
  - {name: OPTIONAL, valueFrom: {secretKeyRef: {name: extra, key: k, optional: true}}}
"#,
    );
    let dereferenced = resolved(&spec, |r| match r.name.as_str() {
        "prompts" => (true, None), // the Secret exists, the key does not
        _ => (false, None),
    });
    let r = try_validated(spec, &dereferenced).expect_err("rejected");
    assert_eq!(r.reason, RejectReason::ReferenceNotFound);
    assert_eq!(
        r.message,
        r#"ConfigMap "proxy" not found; Secret "prompts" has no key "support""#
    );
}

#[test]
fn optional_references_may_be_missing() {
    let spec = spec("pod: {env: [{name: T, valueFrom: {secretKeyRef: {name: extra, key: k, optional: true}}}]}");
    let dereferenced = resolved(&spec, |_| (false, None));
    try_validated(spec, &dereferenced).expect("accepted");
}

#[test]
fn spec_errors_come_before_reference_errors() {
    let spec = spec("replicas: 1\nscaling: {maxReplicas: 2}\nprompt: {systemFrom: {secretKeyRef: {name: p, key: k}}}");
    let dereferenced = resolved(&spec, |_| (false, None));
    let r = try_validated(spec, &dereferenced).expect_err("rejected");
    assert_eq!(r.reason, RejectReason::InvalidSpec);
}

#[test]
fn gateway_exposure_needs_the_gateway_api() {
    let agent = fixtures::agent(spec("expose: {gateway: {parentRefs: [{name: g}]}}"));
    let settings = Settings {
        gateway_api: false,
        ..fixtures::settings()
    };
    let r = validate(&agent, &Dereferenced::default(), &settings).expect_err("rejected");
    assert_eq!(r.reason, RejectReason::GatewayApiUnavailable);
}

#[test]
fn gateway_implementation_is_detected_unless_named() {
    let detected = |yaml: &str, controller: Option<&str>| {
        let dereferenced = Dereferenced {
            gateway_class_controller: controller.map(str::to_owned),
            ..Dereferenced::default()
        };
        let agent = try_validated(spec(yaml), &dereferenced).expect("valid");
        agent.route.expect("a route").implementation
    };
    let plain = "expose: {gateway: {parentRefs: [{name: g}]}}";
    assert_eq!(
        detected(plain, Some("gateway.envoyproxy.io/gatewayclass-controller")),
        GatewayImplementation::EnvoyGateway
    );
    assert_eq!(detected(plain, None), GatewayImplementation::Generic);
    let named = "expose: {gateway: {parentRefs: [{name: g}], implementation: Istio}}";
    assert_eq!(
        detected(named, Some("traefik.io/gateway-controller")),
        GatewayImplementation::Istio
    );
}

#[test]
fn the_checksum_covers_config_and_referenced_values_only() {
    let base = spec("prompt: {systemFrom: {configMapKeyRef: {name: p, key: k}}}");
    let found = |digest: &'static str| resolved(&base, move |_| (true, Some(digest)));
    let a = try_validated(base.clone(), &found("one")).expect("valid");
    let b = try_validated(base.clone(), &found("two")).expect("valid");
    let a_again = try_validated(base.clone(), &found("one")).expect("valid");
    assert_ne!(a.checksum, b.checksum);
    assert_eq!(a.checksum, a_again.checksum);
    let mut scaled = base.clone();
    scaled.replicas = Some(4);
    let scaled = try_validated(scaled, &found("one")).expect("valid");
    assert_eq!(a.checksum, scaled.checksum, "scaling must not roll the pods");
}

#[test]
fn autoscaling_defaults_to_seventy_percent_of_capacity() {
    let agent = validated(spec("session: {maxSessionsPerReplica: 40}\nscaling: {maxReplicas: 6}"));
    let Replicas::Autoscaled(a) = agent.replicas else {
        panic!("not autoscaled");
    };
    assert_eq!((a.min, a.max, a.target_sessions), (1, 6, 28));
    assert_eq!(a.metric, "voice_agent_sessions_active");
    assert_eq!(a.scale_down_window_secs, 300);
}

#[test]
fn mounted_files_for_prompt_and_ca_bundle() {
    let spec = spec(
        r#"
model: {provider: NovaSonic, novaSonic: {caBundle: {name: ca, key: ca.pem}}}
prompt: {systemFrom: {secretKeyRef: {name: prompts, key: support}}}
"#,
    );
    let agent = try_validated(spec.clone(), &resolved(&spec, |_| (true, Some("d")))).expect("valid");
    let volumes: Vec<(&str, SourceKind, &str)> = agent
        .files
        .iter()
        .map(|f| (f.volume.as_str(), f.kind, f.source.as_str()))
        .collect();
    assert_eq!(
        volumes,
        [
            ("prompt", SourceKind::Secret, "prompts"),
            ("ca-bundle", SourceKind::ConfigMap, "ca")
        ]
    );
}

#[test]
fn a_jwt_issuers_ca_bundle_is_mounted_only_in_jwt_mode() {
    let jwt = r#"
auth:
  mode: Jwt
  jwt:
    issuer: https://keycloak.auth.svc/realms/voice
    audiences: [voice]
    jwksUrl: https://keycloak.auth.svc/realms/voice/protocol/openid-connect/certs
    caBundle: {name: issuer-ca, key: ca.crt}
"#;
    let spec = spec(jwt);
    let agent = try_validated(spec.clone(), &resolved(&spec, |_| (true, Some("d")))).expect("valid");
    let files: Vec<(&str, &str, &str, &str)> = agent
        .files
        .iter()
        .map(|f| (f.volume.as_str(), f.source.as_str(), f.key.as_str(), f.dir.as_str()))
        .collect();
    assert_eq!(files, [("jwks-ca", "issuer-ca", "ca.crt", "/etc/voice-agent/jwks-ca")]);
    let jwt_config = agent.config.auth.jwt.as_ref().expect("jwt");
    assert_eq!(
        jwt_config.ca_file.as_deref(),
        Some(std::path::Path::new("/etc/voice-agent/jwks-ca/ca.pem"))
    );
}

const SECURED: &str = r#"
auth:
  mode: Token
  tokenSecretRef: {name: callers, key: tokens}
  allowedOrigins: [https://app.example.com]
gateway:
  url: https://tools.example.com/mcp
  auth: {type: Bearer, tokenSecretRef: {name: gateway, key: token}}
prompt: {systemFrom: {secretKeyRef: {name: prompts, key: support}}}
"#;

#[test]
fn token_secrets_are_mounted_where_the_configuration_points() {
    let spec = spec(SECURED);
    let agent = try_validated(spec.clone(), &resolved(&spec, |_| (true, Some("d")))).expect("valid");
    let files: Vec<(&str, &str, String)> = agent
        .files
        .iter()
        .map(|f| (f.volume.as_str(), f.source.as_str(), f.path().display().to_string()))
        .collect();
    assert_eq!(
        files,
        [
            ("prompt", "prompts", "/etc/voice-agent/prompt/system.txt".to_owned()),
            ("auth-tokens", "callers", "/etc/voice-agent/auth/tokens".to_owned()),
            ("gateway-token", "gateway", "/etc/voice-agent/gateway/token".to_owned()),
        ]
    );
    assert_eq!(
        agent.config.auth.token_file.as_deref(),
        Some(std::path::Path::new("/etc/voice-agent/auth/tokens"))
    );
    let gateway = agent.config.gateway.as_ref().expect("a gateway");
    assert_eq!(
        gateway.auth,
        voice_config::GatewayAuth::Bearer {
            token_file: Some("/etc/voice-agent/gateway/token".into()),
            token_env: None
        }
    );
    // The rendered file is what the ConfigMap carries, and the agent reads it back.
    let back = voice_config::AgentConfig::from_yaml(&agent.config_yaml).expect("parses");
    assert_eq!(back, agent.config);
}

#[test]
fn rotating_a_token_does_not_change_the_checksum_but_a_prompt_change_does() {
    let spec = spec(SECURED);
    let with = |tokens: &'static str, prompt: &'static str| {
        let dereferenced = resolved(&spec, |r| {
            (
                true,
                Some(if r.kind == SourceKind::Secret && r.name == "prompts" {
                    prompt
                } else {
                    tokens
                }),
            )
        });
        try_validated(spec.clone(), &dereferenced).expect("valid").checksum
    };
    assert_eq!(
        with("tokens-1", "p1"),
        with("tokens-2", "p1"),
        "token rotation must not roll the pods"
    );
    assert_ne!(with("tokens-1", "p1"), with("tokens-1", "p2"));
}

#[test]
fn a_missing_token_secret_is_named_like_any_reference() {
    let spec = spec(SECURED);
    let r = try_validated(
        spec.clone(),
        &resolved(&spec, |r| {
            if r.name == "callers" {
                (false, None)
            } else {
                (true, Some("d"))
            }
        }),
    )
    .expect_err("rejected");
    assert_eq!(r.reason, RejectReason::ReferenceNotFound);
    assert_eq!(r.message, r#"Secret "callers" not found"#);
}

#[test]
fn auth_and_gateway_rules_are_enforced_again() {
    for (yaml, message) in [
        ("auth: {mode: Token}", "auth.tokenSecretRef is required with mode Token"),
        (
            "auth: {mode: None, tokenSecretRef: {name: a, key: b}}",
            "auth.tokenSecretRef is required with mode Token and only used with it",
        ),
        ("auth: {mode: Jwt}", "auth.jwt is required with mode Jwt"),
        (
            "gateway: {url: 'https://g.example.com/mcp', auth: {type: Bearer}}",
            "gateway.auth.tokenSecretRef is required with type Bearer",
        ),
        (
            "gateway: {url: 'https://g.example.com/mcp', auth: {type: None, region: us-east-1}}",
            "gateway.auth.region and gateway.auth.service are only used with type SigV4",
        ),
    ] {
        let r = rejected(yaml);
        assert_eq!(r.reason, RejectReason::InvalidSpec, "{yaml}");
        assert!(r.message.contains(message), "{yaml}: {}", r.message);
    }
    // What only the agent's own validation knows is reported with its field name.
    let r = rejected("limits: {trustedProxies: [not-an-address]}");
    assert!(r.message.contains("limits.trustedProxies"), "{}", r.message);
}

const TWO_TOOL_SERVERS: &str = r#"
toolServers:
  - name: crm
    url: https://crm.example.com/mcp
    auth: {type: Bearer, tokenSecretRef: {name: crm-token, key: token}}
    allowedTools: [lookup_customer]
    callTimeout: 5s
  - name: aws
    url: https://gw.gateway.bedrock-agentcore.us-east-1.amazonaws.com/mcp
    auth: {type: SigV4, region: us-east-1}
    maxConcurrentCalls: 8
"#;

#[test]
fn tool_servers_are_rendered_each_with_its_token_file() {
    let spec = spec(TWO_TOOL_SERVERS);
    let agent = try_validated(spec.clone(), &resolved(&spec, |_| (true, Some("d")))).expect("valid");
    let servers = &agent.config.tool_servers;
    assert_eq!(agent.config.gateway, None);
    assert_eq!(servers.len(), 2);
    assert_eq!((servers[0].name.as_str(), servers[1].name.as_str()), ("crm", "aws"));
    assert_eq!(
        servers[0].auth,
        voice_config::GatewayAuth::Bearer {
            token_file: Some("/etc/voice-agent/tool-servers/crm/token".into()),
            token_env: None
        }
    );
    assert_eq!(servers[0].allowed_tools, ["lookup_customer"]);
    assert_eq!(servers[0].call_timeout, std::time::Duration::from_secs(5));
    assert_eq!(
        servers[1].auth,
        voice_config::GatewayAuth::SigV4 {
            region: Some("us-east-1".into()),
            service: voice_config::DEFAULT_SIGV4_SERVICE.into()
        }
    );
    assert_eq!(servers[1].max_concurrent_calls, 8);
    let files: Vec<(&str, &str, String)> = agent
        .files
        .iter()
        .map(|f| (f.volume.as_str(), f.source.as_str(), f.path().display().to_string()))
        .collect();
    assert_eq!(
        files,
        [(
            "tool-server-crm",
            "crm-token",
            "/etc/voice-agent/tool-servers/crm/token".to_owned()
        )]
    );
    let back = voice_config::AgentConfig::from_yaml(&agent.config_yaml).expect("parses");
    assert_eq!(back, agent.config);
    back.validate().expect("the agent accepts it");
}

#[test]
fn a_missing_tool_server_token_secret_is_named_like_any_reference() {
    let spec = spec(TWO_TOOL_SERVERS);
    let r = try_validated(
        spec.clone(),
        &resolved(&spec, |r| {
            if r.name == "crm-token" {
                (false, None)
            } else {
                (true, Some("d"))
            }
        }),
    )
    .expect_err("rejected");
    assert_eq!(r.reason, RejectReason::ReferenceNotFound);
    assert_eq!(r.message, r#"Secret "crm-token" not found"#);
}

#[test]
fn rotating_a_tool_server_token_does_not_roll_the_pods() {
    let spec = spec(TWO_TOOL_SERVERS);
    let with = |digest: &'static str| {
        try_validated(spec.clone(), &resolved(&spec, |_| (true, Some(digest))))
            .expect("valid")
            .checksum
    };
    assert_eq!(with("token-1"), with("token-2"));
}

#[test]
fn tool_server_rules_are_enforced_again() {
    let both =
        "gateway: {url: 'https://a.example.com/mcp'}\ntoolServers: [{name: b, url: 'https://b.example.com/mcp'}]";
    let r = rejected(both);
    assert_eq!(r.reason, RejectReason::InvalidSpec);
    assert!(r.message.contains("not both"), "{}", r.message);
    let r = rejected("toolServers: [{name: crm, url: 'https://a.example.com/mcp', auth: {type: Bearer}}]");
    assert_eq!(
        r.message,
        "toolServers[crm].auth.tokenSecretRef is required with type Bearer and only used with it"
    );
    // Unique names are the apiserver's (a list keyed by name) and the agent's rule.
    let r = rejected(
        "toolServers: [{name: a, url: 'https://a.example.com/mcp'}, {name: a, url: 'https://b.example.com/mcp'}]",
    );
    assert!(r.message.contains("toolServers.name"), "{}", r.message);
}
