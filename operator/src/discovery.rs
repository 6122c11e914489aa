//! Which optional APIs the cluster serves, asked again while the operator runs: installing the
//! Gateway API (or Envoy Gateway, or KEDA) after the operator must not need a restart. Discovery is a
//! read of three API groups per interval; the controller is restarted, with watches for the new
//! kinds, only when the answer changes.

use std::time::Duration;

use kube::Client;

/// The answer of one discovery.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ServedApis {
    /// `gateway.networking.k8s.io/v1` HTTPRoutes.
    pub gateway_api: bool,
    /// `gateway.envoyproxy.io/v1alpha1` BackendTrafficPolicies.
    pub envoy_gateway_policies: bool,
    /// `keda.sh/v1alpha1` ScaledObjects.
    pub keda: bool,
}

/// Asks the apiserver. `None` when it could not answer (then the caller keeps what it knew).
pub async fn served_apis(client: &Client) -> Option<ServedApis> {
    Some(ServedApis {
        gateway_api: serves(client, "gateway.networking.k8s.io/v1", "httproutes").await?,
        envoy_gateway_policies: serves(client, "gateway.envoyproxy.io/v1alpha1", "backendtrafficpolicies").await?,
        keda: serves(client, "keda.sh/v1alpha1", "scaledobjects").await?,
    })
}

/// Returns once the served APIs differ from `known`, with the new answer.
pub async fn changed(client: &Client, known: ServedApis, interval: Duration) -> ServedApis {
    loop {
        tokio::time::sleep(interval).await;
        match served_apis(client).await {
            Some(now) if now != known => return now,
            _ => {}
        }
    }
}

/// Whether `group_version` has the resource `plural`; `None` on an error other than "no such
/// group".
async fn serves(client: &Client, group_version: &str, plural: &str) -> Option<bool> {
    match client.list_api_group_resources(group_version).await {
        Ok(list) => Some(list.resources.iter().any(|r| r.name == plural)),
        Err(kube::Error::Api(status)) if status.code == 404 => Some(false),
        Err(err) => {
            tracing::warn!(error = %err, %group_version, "API discovery failed");
            None
        }
    }
}
