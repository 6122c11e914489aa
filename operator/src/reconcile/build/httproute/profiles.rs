//! WebSocket settings per Gateway API implementation, by the same rule as the Ingress profiles:
//! every proxy timer is at least the agent's own limit plus a margin, so the agent, which knows
//! about idle callers and drains, ends sessions, not a proxy. Route timeouts are rendered only
//! where the implementation honours them and would otherwise bound an upgraded connection;
//! elsewhere a field the implementation does not support could get the route refused.

use crate::api::GatewayImplementation;
use crate::gateway_api::HTTPRouteTimeouts;
use crate::reconcile::validate::ValidatedRoute;

/// Envoy's default stream idle timeout (the HTTP connection manager's `stream_idle_timeout`),
/// which Envoy Gateway keeps unless a policy changes it: a WebSocket with no data either way for
/// this long is reset.
pub const ENVOY_STREAM_IDLE_SECS: u64 = 300;

/// The route's `timeouts`: the user's when set, else the implementation's.
pub fn route_timeouts(route: &ValidatedRoute) -> Option<HTTPRouteTimeouts> {
    if let Some(t) = &route.timeouts {
        return Some(HTTPRouteTimeouts {
            request: t.request.map(|d| d.to_string()),
            backend_request: t.backend_request.map(|d| d.to_string()),
        });
    }
    match route.implementation {
        // Envoy-based implementations map `request` to the Envoy route timeout (15 s by default
        // on Envoy Gateway); Istio to the route's timeout. The longest session plus a margin
        // lets the agent end the call.
        GatewayImplementation::EnvoyGateway
        | GatewayImplementation::Istio
        | GatewayImplementation::Kgateway
        | GatewayImplementation::Cilium => Some(HTTPRouteTimeouts {
            request: Some(format!("{}s", route.proxy_timeout_secs)),
            backend_request: None,
        }),
        // Neither supports route timeouts (Traefik lists no timeout feature; NGINX Gateway
        // Fabric's limit is nginx's `proxy_read_timeout`); their limits are set where they are
        // installed.
        GatewayImplementation::NginxGatewayFabric | GatewayImplementation::Traefik | GatewayImplementation::Generic => {
            None
        }
    }
}

/// Envoy Gateway's stream idle timeout for the route, when Envoy's default would end a silent
/// session before the agent's own idle timeout does.
pub fn envoy_stream_idle_timeout(route: &ValidatedRoute) -> Option<String> {
    (route.implementation == GatewayImplementation::EnvoyGateway && route.proxy_idle_secs > ENVOY_STREAM_IDLE_SECS)
        .then(|| format!("{}s", route.proxy_idle_secs))
}
