//! Leader election on a `coordination.k8s.io` Lease: only the holder runs the controller, so
//! replicas of the operator never write concurrently. On shutdown the Lease is released at once,
//! so a successor need not wait for it to expire.

use std::time::Duration;

use kube::Client;
use kube_lease_manager::{LeaseManagerBuilder, LeaseManagerError};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The Lease is renewed this long before it would expire.
const RENEW_MARGIN: Duration = Duration::from_secs(5);

/// A running election: whether this process leads, as it changes.
pub struct Election {
    is_leader: watch::Receiver<bool>,
    task: JoinHandle<Result<kube_lease_manager::LeaseManager, LeaseManagerError>>,
}

/// Starts competing for the Lease `namespace/name` as `identity`.
pub async fn start(
    client: Client,
    namespace: &str,
    name: &str,
    identity: &str,
    duration: Duration,
) -> Result<Election, LeaseManagerError> {
    let duration_secs = duration.as_secs().max(RENEW_MARGIN.as_secs() + 1);
    let manager = LeaseManagerBuilder::new(client, name)
        .with_namespace(namespace)
        .with_identity(identity)
        .with_duration(duration_secs)
        .with_grace(RENEW_MARGIN.as_secs())
        .build()
        .await?;
    let (is_leader, task) = manager.watch().await;
    Ok(Election { is_leader, task })
}

impl Election {
    /// Waits until this process leads. Returns false if the election ended first.
    pub async fn acquired(&mut self) -> bool {
        self.is_leader.wait_for(|leads| *leads).await.is_ok()
    }

    /// Completes when leadership is lost (or the election ends).
    pub fn lost(&self) -> impl Future<Output = ()> + Send + Sync + 'static {
        let mut rx = self.is_leader.clone();
        async move {
            let _ = rx.wait_for(|leads| !*leads).await;
        }
    }

    /// Whether this process leads right now.
    pub fn leads(&self) -> bool {
        *self.is_leader.borrow()
    }

    /// Gives the Lease up and waits until it is released.
    pub async fn release(self) {
        drop(self.is_leader);
        match self.task.await {
            Ok(Ok(_)) => tracing::info!("leader Lease released"),
            Ok(Err(err)) => tracing::warn!(error = %err, "cannot release the leader Lease"),
            Err(err) => tracing::warn!(error = %err, "leader election task failed"),
        }
    }
}
