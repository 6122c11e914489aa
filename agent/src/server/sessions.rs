//! Admission and accounting of live sessions: the capacity limit, the active count that drain
//! waits on, and the AgentCore `/ping` status derived from it.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};

/// AgentCore health status: busy while any session is live, so the runtime does not reap it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum PingStatus {
    Healthy,
    HealthyBusy,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionsState {
    pub active: usize,
    pub status: PingStatus,
    /// Unix seconds of the last status change (not of the last session change).
    pub status_since: u64,
}

pub struct Sessions {
    permits: Arc<Semaphore>,
    max: usize,
    state: watch::Sender<SessionsState>,
    gauge: Gauge,
}

/// Held for as long as a session lives, from the accepted handshake to the end of its task.
pub struct SessionGuard {
    sessions: Arc<Sessions>,
    _permit: OwnedSemaphorePermit,
}

impl Sessions {
    pub fn new(max: usize, gauge: Gauge) -> Arc<Self> {
        let (state, _) = watch::channel(SessionsState {
            active: 0,
            status: PingStatus::Healthy,
            status_since: unix_now(),
        });
        Arc::new(Self {
            permits: Arc::new(Semaphore::new(max)),
            max,
            state,
            gauge,
        })
    }

    /// Admits a session if there is capacity.
    pub fn try_admit(self: &Arc<Self>) -> Option<SessionGuard> {
        let permit = self.permits.clone().try_acquire_owned().ok()?;
        self.change(1);
        Some(SessionGuard {
            sessions: self.clone(),
            _permit: permit,
        })
    }

    pub fn state(&self) -> SessionsState {
        *self.state.borrow()
    }

    pub fn max(&self) -> usize {
        self.max
    }

    /// Resolves when no session is live.
    pub async fn idle(&self) {
        let mut rx = self.state.subscribe();
        let _ = rx.wait_for(|s| s.active == 0).await;
    }

    fn change(&self, delta: isize) {
        self.state.send_modify(|s| {
            s.active = s.active.saturating_add_signed(delta);
            let status = if s.active > 0 {
                PingStatus::HealthyBusy
            } else {
                PingStatus::Healthy
            };
            if status != s.status {
                s.status = status;
                s.status_since = unix_now();
            }
        });
        self.gauge.inc_by(delta as i64);
    }
}

impl Drop for SessionGuard {
    fn drop(&mut self) {
        self.sessions.change(-1);
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capacity_is_enforced_and_released() {
        let sessions = Sessions::new(2, Gauge::default());
        let a = sessions.try_admit().expect("first");
        let _b = sessions.try_admit().expect("second");
        assert!(sessions.try_admit().is_none());
        drop(a);
        assert!(sessions.try_admit().is_some());
    }

    #[test]
    fn status_follows_the_first_and_last_session() {
        let sessions = Sessions::new(4, Gauge::default());
        assert_eq!(sessions.state().status, PingStatus::Healthy);
        let a = sessions.try_admit().expect("admit");
        let busy = sessions.state();
        assert_eq!(busy.status, PingStatus::HealthyBusy);
        let b = sessions.try_admit().expect("admit");
        assert_eq!(
            sessions.state().status_since,
            busy.status_since,
            "no change while still busy"
        );
        drop(a);
        assert_eq!(sessions.state().status, PingStatus::HealthyBusy);
        drop(b);
        assert_eq!(sessions.state().status, PingStatus::Healthy);
        assert_eq!(sessions.state().active, 0);
    }

    #[tokio::test]
    async fn idle_resolves_when_the_last_session_ends() {
        let sessions = Sessions::new(1, Gauge::default());
        let guard = sessions.try_admit().expect("admit");
        let waiter = {
            let sessions = sessions.clone();
            tokio::spawn(async move { sessions.idle().await })
        };
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        drop(guard);
        waiter.await.expect("idle resolved");
    }
}
