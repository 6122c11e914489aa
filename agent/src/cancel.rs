//! Cancellation for loops that select on it in every iteration.
//!
//! Polling a `CancellationToken::cancelled()` future takes the lock of the token's `Notify`, and
//! asking the token `is_cancelled()` takes the lock of its tree node: a session's loop would do
//! one or the other in every wake-up, two or more per audio frame, in every session, on a lock
//! all sessions share (bench/tuning.md, changes 12 and 15). The cancellation future needs polling
//! only twice: once to register a waker, and once after that waker was woken.

use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Wake, Waker};

use tokio_util::sync::WaitForCancellationFuture;

/// A token's cancellation, watched from one task: the cancellation future is polled with a
/// waker of its own, which notes that it was woken and wakes the task; the future is polled
/// again only then. In between, a poll is a load of that note (the session's own, uncontended).
///
/// The task's waker taken at the first poll must stay the one to wake: use it from one task
/// only, as a loop inside that task does (a task's waker is the same for its whole life).
pub(crate) struct CancelWatch<'p, 't> {
    cancelled: Pin<&'p mut WaitForCancellationFuture<'t>>,
    /// Made at the first poll.
    waker: Option<Arc<NotingWaker>>,
    /// The token was cancelled: the watch stays fired.
    fired: bool,
}

/// Wakes the task, noting that it did.
struct NotingWaker {
    woken: AtomicBool,
    task: Waker,
}

impl Wake for NotingWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        self.task.wake_by_ref();
    }
}

impl<'p, 't> CancelWatch<'p, 't> {
    /// `cancelled` is the token's `cancelled()`, pinned by the caller.
    pub(crate) fn new(cancelled: Pin<&'p mut WaitForCancellationFuture<'t>>) -> Self {
        Self {
            cancelled,
            waker: None,
            fired: false,
        }
    }

    /// Resolves once the token is cancelled.
    pub(crate) fn fired(&mut self) -> impl Future<Output = ()> + '_ {
        poll_fn(|cx| self.poll_fired(cx))
    }

    fn poll_fired(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.fired {
            return Poll::Ready(());
        }
        let waker = match &self.waker {
            // Read first (a plain load), cleared only when set: a wake-up during the poll
            // below is noted for the next one.
            Some(waker) if waker.woken.load(Ordering::Acquire) => {
                waker.woken.store(false, Ordering::Relaxed);
                waker.clone()
            }
            Some(_) => return Poll::Pending,
            None => self
                .waker
                .insert(Arc::new(NotingWaker {
                    woken: AtomicBool::new(false),
                    task: cx.waker().clone(),
                }))
                .clone(),
        };
        let waker = Waker::from(waker);
        let poll = self.cancelled.as_mut().poll(&mut Context::from_waker(&waker));
        self.fired = poll.is_ready();
        poll
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio_util::sync::CancellationToken;

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
        let mut watch = CancelWatch::new(cancelled);
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
        let mut watch = CancelWatch::new(cancelled);
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
        let mut watch = CancelWatch::new(cancelled);
        for _ in 0..2 {
            assert!(
                tokio::time::timeout(Duration::from_millis(20), watch.fired())
                    .await
                    .is_err()
            );
        }
    }
}
