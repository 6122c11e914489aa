//! Traefik as the cluster's Gateway API and Ingress proxy: a real proxy between the suites'
//! WebSocket clients and the agents, configured from the local apiserver by its
//! `kubernetesGateway` and `kubernetesIngress` providers, like in a cluster.
//!
//! Two HTTPS entry points on loopback carry the same routes: `calls`, set up as
//! docs/gateway-api.md tells Traefik installers (`respondingTimeouts.readTimeout: 0`), and
//! `defaults`, with Traefik's defaults (a 60 s read deadline), to show what that setting is for.
//! Traefik runs on the real node's host and sends each request to a Ready pod of the
//! route's Service, by the pod IP its EndpointSlices list (Traefik's default), as it does in
//! a cluster.

use std::net::SocketAddr;
use std::path::Path;

use tokio::process::Command;

use crate::process::{Process, free_addr};
use crate::workspace;

/// The IngressClass `controller` Traefik serves.
pub const INGRESS_CONTROLLER: &str = "traefik.io/ingress-controller";
/// The GatewayClass `controllerName` Traefik serves.
pub const GATEWAY_CONTROLLER: &str = "traefik.io/gateway-controller";

/// A running Traefik.
pub struct Traefik {
    pub process: Process,
    /// The entry point with the read deadline lifted, as documented.
    pub calls: SocketAddr,
    /// The entry point with Traefik's default timeouts.
    pub defaults: SocketAddr,
}

impl Traefik {
    /// Starts Traefik watching `namespace` through `kubeconfig`, and waits for its `/ping`.
    pub async fn start(kubeconfig: &Path, namespace: &str, ingress_class: &str) -> anyhow::Result<Self> {
        let binary = workspace::traefik_binary().await?;
        let (calls, defaults, admin) = (free_addr()?, free_addr()?, free_addr()?);
        let mut cmd = Command::new(binary);
        cmd.env("KUBECONFIG", kubeconfig).args([
            "--global.checkNewVersion=false".to_owned(),
            "--global.sendAnonymousUsage=false".to_owned(),
            "--log.level=DEBUG".to_owned(),
            "--accesslog=true".to_owned(),
            format!("--entryPoints.calls.address={calls}"),
            "--entryPoints.calls.transport.respondingTimeouts.readTimeout=0s".to_owned(),
            format!("--entryPoints.defaults.address={defaults}"),
            format!("--entryPoints.traefik.address={admin}"),
            "--ping=true".to_owned(),
            "--providers.kubernetesGateway=true".to_owned(),
            format!("--providers.kubernetesGateway.namespaces={namespace}"),
            "--providers.kubernetesIngress=true".to_owned(),
            format!("--providers.kubernetesIngress.namespaces={namespace}"),
            format!("--providers.kubernetesIngress.ingressClass={ingress_class}"),
        ]);
        let process = Process::start(cmd, &format!("traefik-{namespace}"), admin, "/ping").await?;
        Ok(Self {
            process,
            calls,
            defaults,
        })
    }
}
