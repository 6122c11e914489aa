//! The Service in front of the agent pods.

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{metadata, selector_labels};
use crate::reconcile::agent_config::AGENT_PORT;
use crate::reconcile::validate::ValidatedAgent;

/// Name of the WebSocket port, on the container and on the Service.
pub const PORT_NAME: &str = "ws";
/// Tells Gateway API implementations (and others that read it) that the port speaks WebSocket.
const APP_PROTOCOL: &str = "kubernetes.io/ws";

/// A ClusterIP Service with the single `ws` port.
pub fn build_service(agent: &ValidatedAgent) -> Service {
    Service {
        metadata: metadata(agent, agent.name.clone()),
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".into()),
            selector: Some(selector_labels(&agent.name)),
            ports: Some(vec![ServicePort {
                name: Some(PORT_NAME.into()),
                port: i32::from(AGENT_PORT),
                target_port: Some(IntOrString::String(PORT_NAME.into())),
                protocol: Some("TCP".into()),
                app_protocol: Some(APP_PROTOCOL.into()),
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::validated;
    use crate::reconcile::build::golden::assert_golden;

    #[test]
    fn one_websocket_port() {
        assert_golden("service", &build_service(&validated(Default::default())));
    }
}
