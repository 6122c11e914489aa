//! The bounded queues of a [`ModelStream`](super::ModelStream): session to model, model to
//! session. The same contract as tokio's bounded `mpsc` (and its error types): `try_send`
//! refuses when full, `send` waits for room, `recv` ends once every sender is gone and the
//! queue is drained, and every operation spends the task's cooperative budget.
//!
//! Why not tokio's: its channel stores messages in blocks of 32 slots and keeps two of them per
//! channel in steady use, besides a header of about half a kilobyte, whatever the bound: about
//! 3 KiB per queue, 6 KiB per session, while a session at real time holds one message at a
//! time. This one holds what is queued behind one uncontended lock: one message inline, and
//! storage for a backlog (up to the bound) only while there is one ([`Fifo`]).

use std::future::poll_fn;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

pub use tokio::sync::mpsc::error::{SendError, TryRecvError, TrySendError};
use tokio::task::coop;

use crate::fifo::Fifo;

/// A bounded queue of `capacity` messages (at least one).
pub fn channel<T>(capacity: usize) -> (Sender<T>, Receiver<T>) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            items: Fifo::new(),
            capacity: capacity.max(1),
            senders: 1,
            receiver: true,
            receiver_waker: None,
            sender_wakers: Vec::new(),
        }),
    });
    (Sender { shared: shared.clone() }, Receiver { shared })
}

struct Shared<T> {
    state: Mutex<State<T>>,
}

struct State<T> {
    items: Fifo<T>,
    capacity: usize,
    /// Live senders; at zero, the receiver sees the end once the queue is drained.
    senders: usize,
    /// Whether the receiver is alive; once it is gone, sends fail.
    receiver: bool,
    receiver_waker: Option<Waker>,
    /// Senders waiting for room.
    sender_wakers: Vec<Waker>,
}

impl<T> Shared<T> {
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // A panic while holding the lock cannot leave the state half-changed (every change is
        // one push, pop or flag), so a poisoned lock is still consistent.
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Stores `waker` in `slot` unless it already holds one that wakes the same task.
fn register(slot: &mut Option<Waker>, waker: &Waker) {
    match slot {
        Some(current) if current.will_wake(waker) => {}
        _ => *slot = Some(waker.clone()),
    }
}

pub struct Sender<T> {
    shared: Arc<Shared<T>>,
}

impl<T> Sender<T> {
    /// Queues `value` if there is room now.
    pub fn try_send(&self, value: T) -> Result<(), TrySendError<T>> {
        let mut state = self.shared.lock();
        if !state.receiver {
            return Err(TrySendError::Closed(value));
        }
        if state.items.len() >= state.capacity {
            return Err(TrySendError::Full(value));
        }
        state.items.push_back(value);
        let waker = state.receiver_waker.take();
        drop(state);
        if let Some(waker) = waker {
            waker.wake();
        }
        Ok(())
    }

    /// Queues `value`, waiting for room; fails if the receiver is gone.
    pub async fn send(&self, value: T) -> Result<(), SendError<T>> {
        let mut value = Some(value);
        poll_fn(|cx| self.poll_send(cx, &mut value)).await
    }

    fn poll_send(&self, cx: &mut Context<'_>, value: &mut Option<T>) -> Poll<Result<(), SendError<T>>> {
        let coop = std::task::ready!(coop::poll_proceed(cx));
        let mut state = self.shared.lock();
        let Some(item) = value.take() else {
            // Polled again after completing: nothing left to send.
            return Poll::Ready(Ok(()));
        };
        if !state.receiver {
            coop.made_progress();
            return Poll::Ready(Err(SendError(item)));
        }
        if state.items.len() >= state.capacity {
            *value = Some(item);
            if !state.sender_wakers.iter().any(|w| w.will_wake(cx.waker())) {
                state.sender_wakers.push(cx.waker().clone());
            }
            return Poll::Pending;
        }
        state.items.push_back(item);
        let waker = state.receiver_waker.take();
        drop(state);
        coop.made_progress();
        if let Some(waker) = waker {
            waker.wake();
        }
        Poll::Ready(Ok(()))
    }
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Self {
        self.shared.lock().senders += 1;
        Self {
            shared: self.shared.clone(),
        }
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        state.senders -= 1;
        let waker = if state.senders == 0 {
            state.receiver_waker.take()
        } else {
            None
        };
        drop(state);
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

pub struct Receiver<T> {
    shared: Arc<Shared<T>>,
}

impl<T> Receiver<T> {
    /// The next message; `None` once every sender is gone and nothing is left. Cancel-safe: a
    /// message is taken only when it is returned.
    pub async fn recv(&mut self) -> Option<T> {
        poll_fn(|cx| self.poll_recv(cx)).await
    }

    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<T>> {
        let coop = std::task::ready!(coop::poll_proceed(cx));
        let mut state = self.shared.lock();
        match self.take(&mut state) {
            Ok(item) => {
                coop.made_progress();
                Poll::Ready(Some(item))
            }
            Err(TryRecvError::Disconnected) => {
                coop.made_progress();
                Poll::Ready(None)
            }
            Err(TryRecvError::Empty) => {
                register(&mut state.receiver_waker, cx.waker());
                Poll::Pending
            }
        }
    }

    /// The next message if one is queued.
    pub fn try_recv(&mut self) -> Result<T, TryRecvError> {
        let mut state = self.shared.lock();
        self.take(&mut state)
    }

    fn take(&self, state: &mut MutexGuard<'_, State<T>>) -> Result<T, TryRecvError> {
        let Some(item) = state.items.pop_front() else {
            return Err(if state.senders == 0 {
                TryRecvError::Disconnected
            } else {
                TryRecvError::Empty
            });
        };
        // Room again: waiting senders try once more (there is one in practice).
        for waker in state.sender_wakers.drain(..) {
            waker.wake();
        }
        Ok(item)
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        state.receiver = false;
        let items = std::mem::take(&mut state.items);
        let wakers = std::mem::take(&mut state.sender_wakers);
        drop(state);
        // Outside the lock: dropping a message or waking a task may run arbitrary code.
        drop(items);
        for waker in wakers {
            waker.wake();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::time::timeout;

    use super::*;

    #[tokio::test]
    async fn delivers_in_order_and_refuses_beyond_the_bound() {
        let (tx, mut rx) = channel(2);
        tx.try_send(1).expect("room");
        tx.send(2).await.expect("room");
        assert!(matches!(tx.try_send(3), Err(TrySendError::Full(3))));
        assert_eq!(rx.recv().await, Some(1));
        tx.try_send(3).expect("room again");
        assert_eq!(rx.try_recv(), Ok(2));
        assert_eq!(rx.recv().await, Some(3));
        assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
    }

    #[tokio::test]
    async fn send_waits_for_room() {
        let (tx, mut rx) = channel(1);
        tx.send(1).await.expect("room");
        let sender = tokio::spawn(async move { tx.send(2).await });
        tokio::task::yield_now().await;
        assert!(!sender.is_finished(), "waits while full");
        assert_eq!(rx.recv().await, Some(1));
        timeout(Duration::from_secs(5), sender)
            .await
            .expect("woken when there is room")
            .expect("task")
            .expect("sent");
        assert_eq!(rx.recv().await, Some(2));
    }

    #[tokio::test]
    async fn recv_waits_and_ends_after_the_last_sender() {
        let (tx, mut rx) = channel(4);
        let second = tx.clone();
        let receiver = tokio::spawn(async move {
            let mut got = Vec::new();
            while let Some(v) = rx.recv().await {
                got.push(v);
            }
            got
        });
        tokio::task::yield_now().await;
        tx.send(1).await.expect("sent");
        drop(tx);
        second.send(2).await.expect("sent");
        drop(second);
        let got = timeout(Duration::from_secs(5), receiver)
            .await
            .expect("ends")
            .expect("task");
        assert_eq!(got, [1, 2]);
    }

    #[tokio::test]
    async fn queued_messages_are_delivered_after_the_senders_left() {
        let (tx, mut rx) = channel(4);
        tx.try_send("a").expect("room");
        drop(tx);
        assert_eq!(rx.try_recv(), Ok("a"));
        assert_eq!(rx.try_recv(), Err(TryRecvError::Disconnected));
        assert_eq!(rx.recv().await, None);
    }

    #[tokio::test]
    async fn sends_fail_once_the_receiver_is_gone() {
        let (tx, rx) = channel(1);
        tx.try_send(1).expect("room");
        let waiting = {
            let tx = tx.clone();
            tokio::spawn(async move { tx.send(2).await })
        };
        tokio::task::yield_now().await;
        drop(rx);
        let result = timeout(Duration::from_secs(5), waiting)
            .await
            .expect("woken by the receiver leaving")
            .expect("task");
        assert_eq!(result, Err(SendError(2)));
        assert!(matches!(tx.try_send(3), Err(TrySendError::Closed(3))));
    }

    #[tokio::test]
    async fn a_drained_queue_gives_back_its_burst_storage() {
        let (tx, mut rx) = channel(64);
        for i in 0..64 {
            tx.try_send(i).expect("room");
        }
        while rx.try_recv().is_ok() {}
        assert_eq!(rx.shared.lock().items.backlog_capacity(), 0);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_busy_receiver_still_yields_to_other_tasks() {
        // A queue that is never empty must not let its receiver monopolize the thread.
        let (tx, mut rx) = channel(8);
        let other = tokio::spawn(async {});
        for _ in 0..10_000 {
            let _ = tx.try_send(());
            let _ = rx.recv().await;
            if other.is_finished() {
                return;
            }
        }
        panic!("the other task never ran");
    }
}
