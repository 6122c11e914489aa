//! Admission and accounting of live sessions: the capacity limit, the active count that drain
//! waits on, and the AgentCore `/ping` status derived from it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
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
    /// Live sessions per authenticated caller.
    subjects: Mutex<HashMap<String, u32>>,
    state: watch::Sender<SessionsState>,
    gauge: Gauge,
}

/// Held for as long as a session lives, from the accepted handshake to the end of its task.
pub struct SessionGuard {
    sessions: Arc<Sessions>,
    subject: Option<String>,
    _permit: OwnedSemaphorePermit,
}

/// Why a session was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Full {
    /// The process holds its maximum number of sessions.
    Capacity,
    /// This caller holds its maximum number of sessions.
    Subject,
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
            subjects: Mutex::new(HashMap::new()),
            state,
            gauge,
        })
    }

    /// Admits a session if there is capacity (in the process, and for this caller).
    pub fn try_admit(self: &Arc<Self>, subject: Option<&str>, per_subject: Option<u32>) -> Result<SessionGuard, Full> {
        let permit = self.permits.clone().try_acquire_owned().map_err(|_| Full::Capacity)?;
        if let Some(subject) = subject {
            let mut subjects = self.subjects.lock().unwrap_or_else(|p| p.into_inner());
            let count = subjects.entry(subject.to_owned()).or_default();
            if per_subject.is_some_and(|max| *count >= max) {
                if *count == 0 {
                    subjects.remove(subject);
                }
                return Err(Full::Subject);
            }
            *count += 1;
        }
        self.change(1);
        Ok(SessionGuard {
            sessions: self.clone(),
            subject: subject.map(str::to_owned),
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
        if let Some(subject) = &self.subject {
            let mut subjects = self.sessions.subjects.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(count) = subjects.get_mut(subject) {
                *count -= 1;
                if *count == 0 {
                    subjects.remove(subject);
                }
            }
        }
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
        let a = sessions.try_admit(None, None).expect("first");
        let _b = sessions.try_admit(None, None).expect("second");
        assert!(sessions.try_admit(None, None).is_err());
        drop(a);
        assert!(sessions.try_admit(None, None).is_ok());
    }

    #[test]
    fn status_follows_the_first_and_last_session() {
        let sessions = Sessions::new(4, Gauge::default());
        assert_eq!(sessions.state().status, PingStatus::Healthy);
        let a = sessions.try_admit(None, None).expect("admit");
        let busy = sessions.state();
        assert_eq!(busy.status, PingStatus::HealthyBusy);
        let b = sessions.try_admit(None, None).expect("admit");
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

    #[test]
    fn callers_are_limited_separately() {
        let sessions = Sessions::new(10, Gauge::default());
        let a1 = sessions.try_admit(Some("alice"), Some(2)).expect("first");
        let _a2 = sessions.try_admit(Some("alice"), Some(2)).expect("second");
        assert_eq!(sessions.try_admit(Some("alice"), Some(2)).err(), Some(Full::Subject));
        assert!(
            sessions.try_admit(Some("bob"), Some(2)).is_ok(),
            "other callers are not affected"
        );
        drop(a1);
        assert!(
            sessions.try_admit(Some("alice"), Some(2)).is_ok(),
            "released when a session ends"
        );
    }

    #[tokio::test]
    async fn idle_resolves_when_the_last_session_ends() {
        let sessions = Sessions::new(1, Gauge::default());
        let guard = sessions.try_admit(None, None).expect("admit");
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
