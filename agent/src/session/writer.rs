//! The socket's send half, driven by the session's own task: a bounded queue of [`Outbound`]
//! messages, encoded with the session's protocol and written in order. Audio from before an
//! interruption is dropped when its turn to be written comes, and a write the client does not
//! take within [`WRITE_TIMEOUT`] ends the session.
//!
//! It used to be a task of its own behind a channel. Written from the session's task, a reply
//! frame goes to the socket in the same wake-up that brought it from the model, and a session
//! holds one task and one channel less (a tokio channel keeps two blocks of 32 slots).

use std::future::poll_fn;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message};
use futures::Sink;
use tokio::time::{Instant, Sleep, sleep_until};
use tracing::warn;

use crate::fifo::Fifo;
use crate::metrics::Metrics;
use crate::protocol::{Encode, MAX_FRAME_BYTES, Outbound};

/// Messages queued for the socket. 64 frames of 32 ms is two seconds of reply audio: a client
/// that falls further behind is too slow to hold a conversation, and newer audio is dropped
/// (and counted) instead of queued.
pub const OUTBOUND_QUEUE: usize = 64;
/// A single socket write that takes longer than this means the client stopped reading.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// How the writer stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriterEnd {
    /// It sent the close frame.
    Finished,
    /// The socket failed.
    Gone,
    /// A write did not complete in time.
    Stalled,
}

/// The frame being written and how far it got.
enum Write {
    /// Waiting for the sink to take it.
    Ready(Message),
    /// Handed to the sink; waiting for the flush.
    Flush,
}

pub struct Writer<W> {
    sink: W,
    encoder: Box<dyn Encode>,
    metrics: Arc<Metrics>,
    /// One message inline: a socket that keeps up never needs more.
    queue: Fifo<Outbound>,
    /// Encoded frames of the message being written, not handed to the sink yet, last first
    /// (most messages encode to one; the vector is reused).
    frames: Vec<Message>,
    current: Option<Write>,
    /// Whether the frame being written is the close frame: the last one, and its failure is
    /// not the client's loss.
    closing: bool,
    /// Audio queued in an earlier epoch (before an interruption) is not sent.
    epoch: u64,
    /// Set when a write first has to wait, for the write timeout; kept for the next wait.
    stall: Option<Pin<Box<Sleep>>>,
    /// Whether the write in progress is waiting, with the timer armed for it.
    stalled: bool,
    end: Option<WriterEnd>,
}

impl<W> Writer<W>
where
    W: Sink<Message, Error = axum::Error> + Unpin,
{
    pub fn new(sink: W, encoder: Box<dyn Encode>, metrics: Arc<Metrics>) -> Self {
        Self {
            sink,
            encoder,
            metrics,
            queue: Fifo::new(),
            frames: Vec::with_capacity(1),
            current: None,
            closing: false,
            epoch: 0,
            stall: None,
            stalled: false,
            end: None,
        }
    }

    /// Audio of epochs before `epoch` is dropped instead of sent from now on.
    pub fn set_epoch(&mut self, epoch: u64) {
        self.epoch = epoch;
    }

    /// Whether [`run`](Self::run) has something to do: write, or report how the writer ended.
    pub fn wants_polling(&self) -> bool {
        self.end.is_some() || self.has_work()
    }

    /// Whether something is left to write (and the writer can still write it).
    fn has_work(&self) -> bool {
        self.end.is_none() && (self.current.is_some() || !self.frames.is_empty() || !self.queue.is_empty())
    }

    /// Queues a message. Audio never waits: if the client is this far behind, the frame is
    /// dropped (and counted). Events and the close frame wait for room; the write timeout
    /// bounds the wait. After the writer ended, messages are dropped.
    ///
    /// A plain function returning a future, not an `async fn`: the session's loop holds this
    /// future at one of its await points, and an `async fn` would keep the message twice.
    pub fn send(&mut self, outbound: Outbound) -> impl Future<Output = ()> + '_ {
        let mut waiting = self.offer(outbound);
        poll_fn(move |cx| {
            let Some(outbound) = waiting.take() else {
                return Poll::Ready(());
            };
            if self.queue.len() >= OUTBOUND_QUEUE
                && self.poll_write(cx).is_pending()
                && self.queue.len() >= OUTBOUND_QUEUE
            {
                waiting = Some(outbound);
                return Poll::Pending;
            }
            // Room now, or the writer ended (and the message is dropped).
            if self.end.is_none() {
                self.queue.push_back(outbound);
            }
            Poll::Ready(())
        })
    }

    /// Queues `outbound` if it need not wait; gives it back if it must wait for room.
    fn offer(&mut self, outbound: Outbound) -> Option<Outbound> {
        if self.end.is_some() || self.closing {
            return None;
        }
        if self.queue.len() < OUTBOUND_QUEUE {
            self.queue.push_back(outbound);
            return None;
        }
        if matches!(outbound, Outbound::Audio { .. }) {
            self.metrics.audio.dropped_out.inc();
            return None;
        }
        Some(outbound)
    }

    /// Writes until the queue is empty or the socket cannot take more now; completes only when
    /// the writer has ended (with how), so it can wait in a `select!` while
    /// [`wants_polling`](Self::wants_polling).
    pub async fn run(&mut self) -> WriterEnd {
        poll_fn(|cx| self.poll_write(cx)).await
    }

    /// Writes everything queued (the close frame last), until done or ended.
    pub async fn finish(&mut self) {
        poll_fn(|cx| {
            if !self.has_work() {
                return Poll::Ready(());
            }
            match self.poll_write(cx) {
                Poll::Ready(_) => Poll::Ready(()),
                Poll::Pending if !self.has_work() => Poll::Ready(()),
                Poll::Pending => Poll::Pending,
            }
        })
        .await;
    }

    fn poll_write(&mut self, cx: &mut Context<'_>) -> Poll<WriterEnd> {
        loop {
            if let Some(end) = self.end {
                return Poll::Ready(end);
            }
            let Some(write) = self.current.take() else {
                if !self.next_frame() {
                    // Nothing left to write; the caller only waits here while there is work.
                    return Poll::Pending;
                }
                continue;
            };
            let step = match write {
                Write::Ready(message) => match Pin::new(&mut self.sink).poll_ready(cx) {
                    Poll::Ready(Ok(())) => match Pin::new(&mut self.sink).start_send(message) {
                        Ok(()) => {
                            self.current = Some(Write::Flush);
                            continue;
                        }
                        Err(_) => Poll::Ready(Err(())),
                    },
                    Poll::Ready(Err(_)) => Poll::Ready(Err(())),
                    Poll::Pending => {
                        self.current = Some(Write::Ready(message));
                        Poll::Pending
                    }
                },
                Write::Flush => match Pin::new(&mut self.sink).poll_flush(cx) {
                    Poll::Ready(Ok(())) => Poll::Ready(Ok(())),
                    Poll::Ready(Err(_)) => Poll::Ready(Err(())),
                    Poll::Pending => {
                        self.current = Some(Write::Flush);
                        Poll::Pending
                    }
                },
            };
            match step {
                Poll::Ready(result) => {
                    self.stalled = false;
                    if self.closing {
                        self.end = Some(WriterEnd::Finished);
                    } else if result.is_err() {
                        self.end = Some(WriterEnd::Gone);
                    }
                }
                Poll::Pending => {
                    ready!(self.poll_stall(cx));
                    self.end = Some(if self.closing {
                        WriterEnd::Finished
                    } else {
                        WriterEnd::Stalled
                    });
                }
            }
        }
    }

    /// The write in progress has to wait: ready once it has waited for [`WRITE_TIMEOUT`].
    fn poll_stall(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let armed = std::mem::replace(&mut self.stalled, true);
        let due = || Instant::now() + WRITE_TIMEOUT;
        let stall = self.stall.get_or_insert_with(|| Box::pin(sleep_until(due())));
        if !armed {
            // A new wait: the timeout counts from now (the timer is kept from an earlier one).
            stall.as_mut().reset(due());
        }
        stall.as_mut().poll(cx)
    }

    /// Makes the next frame current: encodes queued messages until one gives a frame to send.
    /// False when there is nothing left.
    fn next_frame(&mut self) -> bool {
        loop {
            if let Some(message) = self.frames.pop() {
                let size = match &message {
                    Message::Text(text) => text.len(),
                    Message::Binary(data) => data.len(),
                    _ => 0,
                };
                if size > MAX_FRAME_BYTES {
                    // Every path is bounded below this; a frame above it would get the
                    // connection closed by AgentCore, which is worse than losing the one event.
                    warn!(
                        size,
                        limit = MAX_FRAME_BYTES,
                        "an outbound frame over the size limit was dropped"
                    );
                    continue;
                }
                self.current = Some(Write::Ready(message));
                return true;
            }
            let Some(outbound) = self.queue.pop_front() else {
                return false;
            };
            match outbound {
                Outbound::Audio { epoch, pcm } => {
                    if epoch < self.epoch {
                        self.metrics.audio.dropped_out.inc();
                        continue;
                    }
                    self.metrics.audio.sent.inc();
                    self.encoder.audio(pcm, &mut self.frames);
                }
                Outbound::Event(event) => self.encoder.event(*event, &mut self.frames),
                Outbound::Close { code, reason } => {
                    // The last frame: whatever is queued after it is not sent.
                    self.queue.clear();
                    self.closing = true;
                    self.current = Some(Write::Ready(Message::Close(Some(CloseFrame {
                        code,
                        reason: reason.into(),
                    }))));
                    return true;
                }
            }
            // Written from the back.
            self.frames.reverse();
        }
    }
}
