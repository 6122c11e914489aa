//! Cancellation for loops that select on it in every iteration.
//!
//! Polling a `CancellationToken::cancelled()` future takes the lock of the token's `Notify`, and
//! a session's loop polls it in every wake-up, two or more per audio frame, in every session
//! (bench/tuning.md, change 12). Once that future has registered its task's waker, a cancel
//! wakes the task through it; until the token's flag says it fired, there is nothing to learn
//! from polling it again.

use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio_util::sync::{CancellationToken, WaitForCancellationFuture};

/// A token's cancellation, watched from one task: the future is polled once to register the
/// task's waker, and after that only once the token is cancelled (an atomic load otherwise).
///
/// The waker registered at the first poll must stay the one to wake: use it from one task
/// only, as a loop inside that task does (a task's waker is the same for its whole life).
pub(crate) struct CancelWatch<'p, 't> {
    token: &'t CancellationToken,
    cancelled: Pin<&'p mut WaitForCancellationFuture<'t>>,
    registered: bool,
}

impl<'p, 't> CancelWatch<'p, 't> {
    /// `cancelled` is `token.cancelled()`, pinned by the caller.
    pub(crate) fn new(token: &'t CancellationToken, cancelled: Pin<&'p mut WaitForCancellationFuture<'t>>) -> Self {
        Self {
            token,
            cancelled,
            registered: false,
        }
    }

    /// Resolves once the token is cancelled.
    pub(crate) fn fired(&mut self) -> impl Future<Output = ()> + '_ {
        poll_fn(|cx| self.poll_fired(cx))
    }

    fn poll_fired(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.registered && !self.token.is_cancelled() {
            return Poll::Pending;
        }
        self.registered = true;
        self.cancelled.as_mut().poll(cx)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// A cancel while the loop waits in a select wakes it, and the watch fires.
    #[tokio::test]
    async fn a_cancel_wakes_a_loop_waiting_on_other_branches() {
        let token = CancellationToken::new();
        let cancel = token.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            cancel.cancel();
        });
        let cancelled = token.cancelled();
        tokio::pin!(cancelled);
        let mut watch = CancelWatch::new(&token, cancelled);
        let mut ticks = 0;
        let fired = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                tokio::select! {
                    biased;
                    () = watch.fired() => return,
                    () = tokio::time::sleep(Duration::from_millis(5)) => ticks += 1,
                }
            }
        })
        .await;
        assert!(fired.is_ok(), "the cancel never reached the loop");
        assert!(ticks > 0, "the loop went round before the cancel");
    }

    /// Cancelled before the first poll: fires at once, and stays fired.
    #[tokio::test]
    async fn an_earlier_cancel_fires_at_the_first_poll_and_after() {
        let token = CancellationToken::new();
        token.cancel();
        let cancelled = token.cancelled();
        tokio::pin!(cancelled);
        let mut watch = CancelWatch::new(&token, cancelled);
        for _ in 0..2 {
            tokio::time::timeout(Duration::from_secs(5), watch.fired())
                .await
                .expect("fired");
        }
    }

    /// Not cancelled: stays pending, polled or not.
    #[tokio::test]
    async fn without_a_cancel_it_stays_pending() {
        let token = CancellationToken::new();
        let cancelled = token.cancelled();
        tokio::pin!(cancelled);
        let mut watch = CancelWatch::new(&token, cancelled);
        for _ in 0..2 {
            assert!(
                tokio::time::timeout(Duration::from_millis(20), watch.fired())
                    .await
                    .is_err()
            );
        }
    }
}
