//! The Gateway API HTTPRoute, when `expose.gateway` is set, and the implementation's own policy
//! objects where its WebSocket limits live outside the route.

mod profiles;

use super::metadata;
use crate::gateway_api::{
    BackendRef, BackendTrafficPolicy, BackendTrafficPolicySpec, HTTPPathMatch, HTTPRoute, HTTPRouteMatch,
    HTTPRouteRule, HTTPRouteSpec, ParentReference, PolicyHttpTimeout, PolicyTargetReference, PolicyTimeout,
};
use crate::reconcile::agent_config::AGENT_PORT;
use crate::reconcile::validate::ValidatedAgent;

/// One rule: the WebSocket path prefix (and the enabled carriers' prefixes) to the Service's `ws` port (whose `appProtocol`
/// tells the Gateway it is a WebSocket backend), with the requested timeouts or, without them,
/// the implementation's.
pub fn build_httproute(agent: &ValidatedAgent) -> Option<HTTPRoute> {
    let route = agent.route.as_ref()?;
    let spec = HTTPRouteSpec {
        parent_refs: route
            .parent_refs
            .iter()
            .map(|p| ParentReference {
                name: p.name.clone(),
                namespace: p.namespace.clone(),
                section_name: p.section_name.clone(),
            })
            .collect(),
        hostnames: route.hostnames.clone(),
        rules: vec![HTTPRouteRule {
            matches: route
                .paths
                .iter()
                .map(|value| HTTPRouteMatch {
                    path: Some(HTTPPathMatch {
                        type_: "PathPrefix".into(),
                        value: value.clone(),
                    }),
                })
                .collect(),
            backend_refs: vec![BackendRef {
                name: agent.name.clone(),
                port: i32::from(AGENT_PORT),
            }],
            timeouts: profiles::route_timeouts(route),
        }],
    };
    let mut object = HTTPRoute::new(&agent.name, spec);
    object.metadata = metadata(agent, agent.name.clone());
    Some(object)
}

/// Envoy Gateway's `BackendTrafficPolicy` for the route, when Envoy's stream idle timeout would
/// end a silent session before the agent does (the route cannot say it).
pub fn build_backend_traffic_policy(agent: &ValidatedAgent) -> Option<BackendTrafficPolicy> {
    let route = agent.route.as_ref()?;
    let stream_idle_timeout = profiles::envoy_stream_idle_timeout(route)?;
    let spec = BackendTrafficPolicySpec {
        target_refs: vec![PolicyTargetReference {
            group: "gateway.networking.k8s.io".into(),
            kind: "HTTPRoute".into(),
            name: agent.name.clone(),
        }],
        timeout: Some(PolicyTimeout {
            http: Some(PolicyHttpTimeout {
                stream_idle_timeout: Some(stream_idle_timeout),
            }),
        }),
    };
    let mut object = BackendTrafficPolicy::new(&agent.name, spec);
    object.metadata = metadata(agent, agent.name.clone());
    Some(object)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{spec, validated};
    use crate::reconcile::build::golden::assert_golden;

    #[test]
    fn none_without_expose_gateway() {
        assert_eq!(build_httproute(&validated(Default::default())), None);
    }

    #[test]
    fn route_with_timeouts() {
        let agent = validated(spec(
            r#"
expose:
  gateway:
    parentRefs:
    - {name: public, namespace: gateways, sectionName: https}
    hostnames: [voice.example.com]
    timeouts: {request: 0s}
"#,
        ));
        assert_golden("httproute", &build_httproute(&agent).expect("a route"));
        assert_eq!(agent.url, "wss://voice.example.com/ws");
    }

    #[test]
    fn carrier_paths_match_beside_the_websocket_path() {
        let agent = validated(spec(
            r#"
expose: {gateway: {parentRefs: [{name: public}], hostnames: [voice.example.com]}}
telephony: {telnyx: {publicKeySecretRef: {name: telnyx, key: pk}, streamSecretRef: {name: telnyx, key: ss}}}
"#,
        ));
        let json = serde_json::to_value(build_httproute(&agent)).expect("json");
        let values: Vec<&str> = json["spec"]["rules"][0]["matches"]
            .as_array()
            .expect("matches")
            .iter()
            .filter_map(|m| m["path"]["value"].as_str())
            .collect();
        assert_eq!(values, ["/ws", "/telnyx"]);
        assert_eq!(
            agent.webhooks.and_then(|w| w.telnyx).map(|t| t.voice_url).as_deref(),
            Some("https://voice.example.com/telnyx/voice")
        );
    }

    fn route_for(implementation: &str, extra: &str) -> ValidatedAgent {
        validated(spec(&format!(
            "session: {{maxDuration: 30m{extra}}}\nexpose: {{gateway: {{parentRefs: [{{name: public}}], implementation: {implementation}}}}}"
        )))
    }

    fn timeouts_of(agent: &ValidatedAgent) -> serde_json::Value {
        let json = serde_json::to_value(build_httproute(agent)).expect("json");
        json["spec"]["rules"][0]["timeouts"].clone()
    }

    #[test]
    fn no_timeouts_where_the_implementation_is_unknown() {
        let agent = validated(spec("expose: {gateway: {parentRefs: [{name: public}]}}"));
        let json = serde_json::to_value(build_httproute(&agent)).expect("json");
        assert!(json["spec"]["rules"][0].get("timeouts").is_none());
    }

    #[test]
    fn envoy_based_and_istio_routes_outlast_the_longest_session() {
        for implementation in ["EnvoyGateway", "Istio", "Kgateway", "Cilium"] {
            let agent = route_for(implementation, "");
            assert_eq!(
                timeouts_of(&agent),
                serde_json::json!({"request": "1860s"}),
                "{implementation}"
            );
        }
    }

    #[test]
    fn no_route_timeouts_where_the_implementation_ignores_or_refuses_them() {
        for implementation in ["Traefik", "NginxGatewayFabric", "Generic"] {
            let agent = route_for(implementation, "");
            assert_eq!(timeouts_of(&agent), serde_json::Value::Null, "{implementation}");
        }
    }

    #[test]
    fn the_users_timeouts_win() {
        let agent = validated(spec(
            "expose: {gateway: {parentRefs: [{name: public}], implementation: EnvoyGateway, timeouts: {request: 0s}}}",
        ));
        assert_eq!(timeouts_of(&agent), serde_json::json!({"request": "0s"}));
    }

    #[test]
    fn envoy_gateway_policy_only_when_the_idle_timeout_outlasts_envoys() {
        assert_eq!(
            build_backend_traffic_policy(&route_for("EnvoyGateway", ", idleTimeout: 4m")),
            None
        );
        assert_eq!(
            build_backend_traffic_policy(&route_for("Istio", ", idleTimeout: 10m")),
            None
        );
        let agent = route_for("EnvoyGateway", ", idleTimeout: 10m");
        assert_golden(
            "backendtrafficpolicy",
            &build_backend_traffic_policy(&agent).expect("a policy"),
        );
    }
}
