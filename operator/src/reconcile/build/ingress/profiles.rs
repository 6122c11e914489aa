//! WebSocket settings per ingress controller. Every proxy hop has its own idle timer, and most
//! defaults (60 s for ingress-nginx and ALB, 15 s route timeout for Envoy-based Contour) are
//! far shorter than a call. The rule here: every proxy timer is at least the longest session
//! plus a margin, so the agent, which knows about idle callers and drains, ends sessions, not
//! a proxy.

use std::collections::BTreeMap;

use crate::api::IngressController;
use crate::reconcile::validate::ValidatedIngress;

/// ALB idle timeout ceiling (seconds) the AWS API accepts.
const ALB_MAX_IDLE_SECS: u64 = 4000;
/// ALB target-group deregistration delay ceiling (seconds).
const ALB_MAX_DEREGISTRATION_SECS: i64 = 3600;
/// The agent's readiness endpoint: 503 while draining, so the ALB stops new sessions early.
const READINESS_PATH: &str = "/readyz";

/// Annotations for the controller that serves the Ingress.
pub fn controller_annotations(ingress: &ValidatedIngress) -> BTreeMap<String, String> {
    let timeout = ingress.proxy_timeout_secs;
    let pairs: Vec<(&str, String)> = match ingress.controller {
        IngressController::IngressNginx => vec![
            // Both are "time between two reads/writes", not total lifetime.
            ("nginx.ingress.kubernetes.io/proxy-read-timeout", timeout.to_string()),
            ("nginx.ingress.kubernetes.io/proxy-send-timeout", timeout.to_string()),
        ],
        IngressController::AwsLoadBalancer => {
            let mut pairs = vec![
                // IP targets: the ALB talks to pods directly, so draining pods are deregistered
                // one by one (and pod readiness gates work).
                ("alb.ingress.kubernetes.io/target-type", "ip".to_owned()),
                ("alb.ingress.kubernetes.io/healthcheck-path", READINESS_PATH.to_owned()),
                ("alb.ingress.kubernetes.io/success-codes", "200".to_owned()),
                (
                    "alb.ingress.kubernetes.io/load-balancer-attributes",
                    format!("idle_timeout.timeout_seconds={}", timeout.min(ALB_MAX_IDLE_SECS)),
                ),
                // Below the pods' grace period: the ALB lets go of a draining pod's connections
                // only after the pod stops serving them, and before the kubelet kills it.
                (
                    "alb.ingress.kubernetes.io/target-group-attributes",
                    format!(
                        "deregistration_delay.timeout_seconds={}",
                        ingress.serving_secs.min(ALB_MAX_DEREGISTRATION_SECS)
                    ),
                ),
            ];
            if ingress.tls.is_some() {
                pairs.push((
                    "alb.ingress.kubernetes.io/listen-ports",
                    r#"[{"HTTPS":443}]"#.to_owned(),
                ));
            }
            pairs
        }
        // Both HAProxy controllers: haproxytech's (`haproxy.org`, which older releases read
        // only from its ConfigMap, default 1h) and HAProxy Ingress (`haproxy-ingress.github.io`).
        IngressController::HAProxy => vec![
            ("haproxy.org/timeout-tunnel", format!("{timeout}s")),
            ("haproxy-ingress.github.io/timeout-tunnel", format!("{timeout}s")),
        ],
        IngressController::Contour => vec![
            ("projectcontour.io/websocket-routes", ingress.paths.join(",")),
            ("projectcontour.io/response-timeout", format!("{timeout}s")),
        ],
        // Traefik proxies WebSockets with no per-route setting (its entry point timeouts are
        // static configuration, set where Traefik is installed). An Ingress's `tls` only loads
        // the certificate there: without this the router serves plain HTTP only, unless the
        // entry point itself terminates TLS.
        IngressController::Traefik => match ingress.tls {
            Some(_) => vec![("traefik.ingress.kubernetes.io/router.tls", "true".to_owned())],
            None => vec![],
        },
        IngressController::Generic => vec![],
    };
    pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}
