//! The built-in `Simulated` model: a credible stand-in for a speech-to-speech model that needs
//! no cloud account. It detects turns by energy, answers with speech-like audio paced in real
//! time, streams SPECULATIVE and FINAL transcripts, reports usage and can be interrupted.

mod conversation;
mod script;
mod voice;

pub use conversation::{Conversation, Mode, SimulatorConfig};
pub use voice::Utterance;

use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::time::{Instant, Sleep, sleep_until};

use super::queue::TrySendError;
use super::{
    ConnectFuture, InlineModel, MODEL_OUTPUT_QUEUE, ModelInput, ModelOutput, ModelProvider, ModelStream, SessionSetup,
};

pub struct SimulatedProvider {
    config: SimulatorConfig,
    model_id: String,
}

impl SimulatedProvider {
    pub fn new(config: SimulatorConfig) -> Self {
        let model_id = match config.mode {
            Mode::Conversation => "simulated",
            Mode::Loopback => "simulated-loopback",
        };
        Self {
            config,
            model_id: model_id.to_owned(),
        }
    }
}

impl ModelProvider for SimulatedProvider {
    fn model_id(&self) -> &str {
        &self.model_id
    }

    fn connect(&self, setup: SessionSetup) -> ConnectFuture {
        let config = SimulatorConfig {
            output_sample_rate: setup.output_sample_rate,
            ..self.config
        };
        let mut conversation = Conversation::new(config);
        if let Some(greeting) = &setup.settings.greeting {
            conversation.greet(greeting, Instant::now());
        }
        // Called by the session's task: the simulator has nothing to finish after the session.
        let simulation = Simulation {
            conversation,
            timer: None,
        };
        Box::pin(std::future::ready(Ok(ModelStream::Inline(Box::new(simulation)))))
    }
}

/// Rounds of due work one poll does before it yields. Each round either produces output or
/// moves the conversation's next wake-up past the present, so a round more than one is rare.
const DUE_ROUNDS: usize = 4;

/// One simulated conversation, run by the session that holds it.
struct Simulation {
    conversation: Conversation,
    /// Wakes the session when the conversation has work of its own due (a reply's next chunk);
    /// made the first time there is, and kept.
    timer: Option<Pin<Box<Sleep>>>,
}

impl InlineModel for Simulation {
    fn try_send(&mut self, input: ModelInput) -> Result<(), TrySendError<ModelInput>> {
        // The same bound as a queued model's: a session that does not take the replies cannot
        // keep handing input over.
        if self.conversation.outputs_waiting() >= MODEL_OUTPUT_QUEUE {
            return Err(TrySendError::Full(input));
        }
        let now = Instant::now();
        match input {
            ModelInput::Audio(pcm) => self.conversation.on_audio(&pcm, now),
            ModelInput::Text(text) => self.conversation.on_text(&text, now),
            ModelInput::ToolResult(result) => {
                self.conversation
                    .on_tool_result(&result.id, &result.content, result.is_error, now);
            }
            // The simulator keeps no history to replay: its transcript of an interrupted reply
            // already stops where its own audio did.
            ModelInput::ReplyHeard(_) => {}
        }
        Ok(())
    }

    fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<ModelOutput>> {
        for _ in 0..DUE_ROUNDS {
            if let Some(output) = self.conversation.next_output() {
                return Poll::Ready(Some(output));
            }
            let Some(due) = self.conversation.next_wakeup() else {
                return Poll::Pending;
            };
            let now = Instant::now();
            if due <= now {
                self.conversation.poll(now);
                continue;
            }
            let timer = self.timer.get_or_insert_with(|| Box::pin(sleep_until(due)));
            if timer.deadline() != due {
                timer.as_mut().reset(due);
            }
            if timer.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
        }
        // Still due after as many rounds: the session's task is polled again after the other
        // tasks had their turn, rather than this one spinning.
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::Wake;
    use std::time::Duration;

    use bytes::Bytes;

    use super::*;

    /// Counts the wake-ups it is given.
    #[derive(Default)]
    struct Counting(AtomicUsize);

    impl Wake for Counting {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn simulation(mode: Mode) -> Simulation {
        Simulation {
            conversation: Conversation::new(SimulatorConfig {
                mode,
                think_time: Duration::from_millis(20),
                output_sample_rate: 16_000,
            }),
            timer: None,
        }
    }

    #[tokio::test]
    async fn loopback_answers_a_frame_at_once_and_wakes_no_one() {
        let mut model = simulation(Mode::Loopback);
        let counting = Arc::new(Counting::default());
        let waker = std::task::Waker::from(counting.clone());
        let mut cx = Context::from_waker(&waker);
        assert!(model.poll_recv(&mut cx).is_pending());
        let frame = Bytes::from(vec![1u8; 1024]);
        model.try_send(ModelInput::Audio(frame.clone())).expect("taken");
        assert_eq!(model.poll_recv(&mut cx), Poll::Ready(Some(ModelOutput::Audio(frame))));
        assert!(model.poll_recv(&mut cx).is_pending());
        assert_eq!(
            counting.0.load(Ordering::Relaxed),
            0,
            "no wake-up for input handed over directly"
        );
    }

    #[tokio::test]
    async fn a_reply_comes_on_the_models_own_time() {
        let mut model = ModelStream::Inline(Box::new(simulation(Mode::Conversation)));
        model.try_send(ModelInput::Text("hello there".into())).expect("taken");
        let mut audio = 0;
        let complete = tokio::time::timeout(Duration::from_secs(30), async {
            while let Some(output) = model.recv().await {
                match output {
                    ModelOutput::Audio(_) => audio += 1,
                    ModelOutput::ResponseComplete { .. } => return true,
                    _ => {}
                }
            }
            false
        })
        .await
        .expect("the reply finished: its timer woke the task");
        assert!(complete);
        assert!(audio > 1, "the reply was spoken in chunks, paced by the model's timer");
    }

    #[tokio::test]
    async fn a_session_that_takes_no_replies_is_refused_input() {
        let mut model = simulation(Mode::Loopback);
        let frame = Bytes::from(vec![1u8; 64]);
        for _ in 0..MODEL_OUTPUT_QUEUE {
            model.try_send(ModelInput::Audio(frame.clone())).expect("room");
        }
        assert!(matches!(
            model.try_send(ModelInput::Audio(frame)),
            Err(TrySendError::Full(ModelInput::Audio(_)))
        ));
    }
}
