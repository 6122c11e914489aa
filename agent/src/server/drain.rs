//! Shutdown state shared by the probes, the handshake and every session.

use tokio_util::sync::CancellationToken;

#[derive(Debug, Default)]
pub struct Drain {
    /// Cancelled when shutdown starts: not ready, no new sessions.
    draining: CancellationToken,
    /// Cancelled when live sessions must close now (drain timeout, or a second signal).
    closing: CancellationToken,
}

impl Drain {
    pub fn begin(&self) {
        self.draining.cancel();
    }

    pub fn is_draining(&self) -> bool {
        self.draining.is_cancelled()
    }

    /// Closes every live session with `draining` / 1012.
    pub fn close_all(&self) {
        self.draining.cancel();
        self.closing.cancel();
    }

    /// A token sessions watch to learn they must close.
    pub fn closing_token(&self) -> CancellationToken {
        self.closing.clone()
    }

    pub async fn closing(&self) {
        self.closing.cancelled().await;
    }
}
