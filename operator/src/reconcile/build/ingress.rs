//! The Ingress, when `expose.ingress` is set.

mod profiles;

use k8s_openapi::api::networking::v1::{
    HTTPIngressPath, HTTPIngressRuleValue, Ingress, IngressBackend, IngressRule, IngressServiceBackend, IngressSpec,
    IngressTLS, ServiceBackendPort,
};

pub use profiles::controller_annotations;

use super::{PORT_NAME, metadata};
use crate::reconcile::validate::ValidatedAgent;

/// One host, the WebSocket path (and the carriers' paths) to the `ws` port, TLS when asked for, and the controller's WebSocket
/// annotations overlaid by the user's.
pub fn build_ingress(agent: &ValidatedAgent) -> Option<Ingress> {
    let ingress = agent.ingress.as_ref()?;
    let mut annotations = controller_annotations(ingress);
    annotations.extend(ingress.annotations.clone());
    let mut meta = metadata(agent, agent.name.clone());
    meta.annotations = Some(annotations).filter(|a| !a.is_empty());
    Some(Ingress {
        metadata: meta,
        spec: Some(IngressSpec {
            ingress_class_name: ingress.class_name.clone(),
            tls: ingress.tls.as_ref().map(|tls| {
                vec![IngressTLS {
                    hosts: Some(vec![ingress.host.clone()]),
                    secret_name: tls.secret_name.clone(),
                }]
            }),
            rules: Some(vec![IngressRule {
                host: Some(ingress.host.clone()),
                http: Some(HTTPIngressRuleValue {
                    paths: ingress
                        .paths
                        .iter()
                        .map(|path| HTTPIngressPath {
                            path: Some(path.clone()),
                            path_type: "Prefix".into(),
                            backend: IngressBackend {
                                service: Some(IngressServiceBackend {
                                    name: agent.name.clone(),
                                    port: Some(ServiceBackendPort {
                                        name: Some(PORT_NAME.into()),
                                        number: None,
                                    }),
                                }),
                                resource: None,
                            },
                        })
                        .collect(),
                }),
            }]),
            ..IngressSpec::default()
        }),
        ..Ingress::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{spec, validated};
    use crate::reconcile::build::golden::assert_golden;

    fn ingress_for(controller: &str) -> Ingress {
        let agent = validated(spec(&format!(
            r#"
session: {{maxDuration: 30m, drainTimeout: 2m}}
expose:
  ingress:
    className: public
    controller: {controller}
    host: voice.example.com
    tls: {{secretName: voice-example-com}}
"#
        )));
        build_ingress(&agent).expect("an Ingress")
    }

    #[test]
    fn none_without_expose_ingress() {
        assert_eq!(build_ingress(&validated(Default::default())), None);
    }

    #[test]
    fn ingress_nginx_profile() {
        assert_golden("ingress_nginx", &ingress_for("IngressNginx"));
    }

    #[test]
    fn aws_load_balancer_profile() {
        assert_golden("ingress_aws_load_balancer", &ingress_for("AwsLoadBalancer"));
    }

    #[test]
    fn haproxy_profile() {
        assert_golden("ingress_haproxy", &ingress_for("HAProxy"));
    }

    #[test]
    fn contour_profile() {
        assert_golden("ingress_contour", &ingress_for("Contour"));
    }

    #[test]
    fn traefik_profile() {
        assert_golden("ingress_traefik", &ingress_for("Traefik"));
    }

    #[test]
    fn generic_profile_without_tls() {
        let agent = validated(spec("expose: {ingress: {host: voice.internal, path: /agents/support}}"));
        assert_golden("ingress_generic", &build_ingress(&agent).expect("an Ingress"));
    }

    #[test]
    fn user_annotations_win() {
        let agent = validated(spec(
            r#"
expose:
  ingress:
    controller: IngressNginx
    host: voice.example.com
    annotations:
      nginx.ingress.kubernetes.io/proxy-read-timeout: "7200"
      cert-manager.io/cluster-issuer: letsencrypt
"#,
        ));
        let ingress = build_ingress(&agent).expect("an Ingress");
        let annotations = ingress.metadata.annotations.expect("annotations");
        assert_eq!(annotations["nginx.ingress.kubernetes.io/proxy-read-timeout"], "7200");
        assert_eq!(annotations["nginx.ingress.kubernetes.io/proxy-send-timeout"], "3660");
        assert_eq!(annotations["cert-manager.io/cluster-issuer"], "letsencrypt");
    }

    #[test]
    fn carrier_paths_are_exposed_beside_the_websocket_path() {
        let agent = validated(spec(
            r#"
expose: {ingress: {host: voice.example.com, tls: {secretName: voice-tls}}}
telephony:
  twilio: {authTokenSecretRef: {name: twilio, key: auth-token}}
  vonage: {signatureSecretRef: {name: vonage, key: secret}}
"#,
        ));
        assert_golden("ingress_telephony", &build_ingress(&agent).expect("an Ingress"));
        // Contour upgrades only the routes it is told are WebSockets: the carriers' streams too.
        let contour = validated(spec(
            r#"
expose: {ingress: {host: voice.example.com, controller: Contour, tls: {}}}
telephony: {twilio: {authTokenSecretRef: {name: twilio, key: auth-token}}}
"#,
        ));
        let annotations = build_ingress(&contour)
            .and_then(|i| i.metadata.annotations)
            .expect("annotations");
        assert_eq!(annotations["projectcontour.io/websocket-routes"], "/ws,/twilio");
    }

    #[test]
    fn alb_timers_respect_aws_limits() {
        let agent = validated(spec(
            "session: {maxDuration: 5h, drainTimeout: 5h}\nexpose: {ingress: {host: a.example.com, controller: AwsLoadBalancer}}",
        ));
        let annotations = build_ingress(&agent)
            .and_then(|i| i.metadata.annotations)
            .expect("annotations");
        assert_eq!(
            annotations["alb.ingress.kubernetes.io/load-balancer-attributes"],
            "idle_timeout.timeout_seconds=4000"
        );
        assert_eq!(
            annotations["alb.ingress.kubernetes.io/target-group-attributes"],
            "deregistration_delay.timeout_seconds=3600"
        );
    }

    #[test]
    fn alb_deregistration_ends_before_the_grace_period() {
        let agent = validated(spec(
            "session: {drainTimeout: 2m}\nexpose: {ingress: {host: a.example.com, controller: AwsLoadBalancer}}",
        ));
        let annotations = build_ingress(&agent)
            .and_then(|i| i.metadata.annotations)
            .expect("annotations");
        let delay: i64 = annotations["alb.ingress.kubernetes.io/target-group-attributes"]
            .trim_start_matches("deregistration_delay.timeout_seconds=")
            .parse()
            .expect("a number");
        assert!(delay < agent.shutdown.grace_period_secs);
        assert_eq!(delay, 15 + 120);
    }
}
