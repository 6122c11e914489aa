//! The built-in `Simulated` model: a credible stand-in for a speech-to-speech model that needs
//! no cloud account. It detects turns by energy, answers with speech-like audio paced in real
//! time, streams SPECULATIVE and FINAL transcripts, reports usage and can be interrupted.

mod conversation;
mod script;
mod voice;

pub use conversation::{Conversation, Mode, SimulatorConfig};
pub use voice::Utterance;

use tokio::time::{Instant, sleep_until};

use super::{
    ConnectFuture, MODEL_INPUT_QUEUE, MODEL_OUTPUT_QUEUE, ModelInput, ModelOutput, ModelProvider, ModelStream,
    SessionSetup, queue,
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
        let (input_tx, input_rx) = queue::channel(MODEL_INPUT_QUEUE);
        let (output_tx, output_rx) = queue::channel(MODEL_OUTPUT_QUEUE);
        let config = SimulatorConfig {
            output_sample_rate: setup.output_sample_rate,
            ..self.config
        };
        let mut conversation = Conversation::new(config);
        if let Some(greeting) = &setup.settings.greeting {
            conversation.greet(greeting, Instant::now());
        }
        // Run by the session's task: the simulator has nothing to finish after the session.
        Box::pin(std::future::ready(Ok(ModelStream {
            input: input_tx,
            output: output_rx,
            driver: Some(Box::pin(drive(conversation, input_rx, output_tx))),
        })))
    }
}

/// Runs one simulated conversation until the session drops its input sender. A function
/// returning an `async move` block rather than an `async fn`, whose future would keep a second
/// copy of its arguments (the conversation) for the session's whole length.
#[expect(
    clippy::manual_async_fn,
    reason = "an `async fn` keeps a second copy of its arguments"
)]
fn drive(
    mut conversation: Conversation,
    mut input: queue::Receiver<ModelInput>,
    output: queue::Sender<ModelOutput>,
) -> impl Future<Output = ()> + Send + 'static {
    async move {
        loop {
            let wakeup = conversation.next_wakeup();
            tokio::select! {
                message = input.recv() => match message {
                    Some(ModelInput::Audio(pcm)) => conversation.on_audio(&pcm, Instant::now()),
                    Some(ModelInput::Text(text)) => conversation.on_text(&text, Instant::now()),
                    Some(ModelInput::ToolResult(result)) => {
                        conversation.on_tool_result(&result.id, &result.content, result.is_error, Instant::now());
                    }
                    // The simulator keeps no history to replay: its transcript of an interrupted
                    // reply already stops where its own audio did.
                    Some(ModelInput::ReplyHeard(_)) => {}
                    None => return,
                },
                () = sleep_until(wakeup.unwrap_or_else(Instant::now)), if wakeup.is_some() => {}
            }
            conversation.poll(Instant::now());
            for event in conversation.drain() {
                if output.send(event).await.is_err() {
                    return;
                }
            }
        }
    }
}
