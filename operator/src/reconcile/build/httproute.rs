//! The Gateway API HTTPRoute, when `expose.gateway` is set.

use super::metadata;
use crate::gateway_api::{
    BackendRef, HTTPPathMatch, HTTPRoute, HTTPRouteMatch, HTTPRouteRule, HTTPRouteSpec, HTTPRouteTimeouts,
    ParentReference,
};
use crate::reconcile::agent_config::AGENT_PORT;
use crate::reconcile::validate::ValidatedAgent;

/// One rule: the WebSocket path prefix to the Service's `ws` port (whose `appProtocol`
/// tells the Gateway it is a WebSocket backend), with the requested timeouts.
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
            matches: vec![HTTPRouteMatch {
                path: Some(HTTPPathMatch {
                    type_: "PathPrefix".into(),
                    value: route.path.clone(),
                }),
            }],
            backend_refs: vec![BackendRef {
                name: agent.name.clone(),
                port: i32::from(AGENT_PORT),
            }],
            timeouts: route.timeouts.as_ref().map(|t| HTTPRouteTimeouts {
                request: t.request.map(|d| d.to_string()),
                backend_request: t.backend_request.map(|d| d.to_string()),
            }),
        }],
    };
    let mut object = HTTPRoute::new(&agent.name, spec);
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
    fn no_timeouts_unless_requested() {
        let agent = validated(spec("expose: {gateway: {parentRefs: [{name: public}]}}"));
        let json = serde_json::to_value(build_httproute(&agent)).expect("json");
        assert!(json["spec"]["rules"][0].get("timeouts").is_none());
    }
}
