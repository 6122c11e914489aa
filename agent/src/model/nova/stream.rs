//! One Bedrock `InvokeModelWithBidirectionalStream` call: opening it without deadlocking,
//! sending JSON events, receiving output chunks, and sorting failures into what the driver
//! does about them.

use std::time::Duration;

use aws_sdk_bedrockruntime::error::SdkError;
use aws_sdk_bedrockruntime::operation::invoke_model_with_bidirectional_stream::InvokeModelWithBidirectionalStreamError as OpenError;
use aws_sdk_bedrockruntime::primitives::Blob;
use aws_sdk_bedrockruntime::types::error::{
    InvokeModelWithBidirectionalStreamInputError as InputError,
    InvokeModelWithBidirectionalStreamOutputError as OutputError,
};
use aws_sdk_bedrockruntime::types::{
    BidirectionalInputPayloadPart, InvokeModelWithBidirectionalStreamInput as Input,
    InvokeModelWithBidirectionalStreamOutput as Output,
};
use futures::StreamExt;
use tokio::sync::mpsc;

use super::connections::Lease;
use crate::model::ModelErrorKind;

/// Events queued for the SDK to write. 32 frames of 32 ms is one second of audio: if Bedrock
/// does not take input that fast the connection is in trouble, and audio is dropped (counted)
/// rather than queued.
const BEDROCK_INPUT_QUEUE: usize = 32;
/// How long opening a stream may take (connection, TLS, signing, response headers).
const OPEN_TIMEOUT: Duration = Duration::from_secs(15);

/// What to do about a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recovery {
    /// The stream reached a limit (age, silence, input gap): open a new one with the history.
    Renew,
    /// A transient service or network problem: retry with backoff, a bounded number of times.
    Retry,
    /// Configuration, permissions or a request the model refuses: retrying will not help.
    Fatal,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind}: {message}")]
pub struct StreamError {
    pub recovery: Recovery,
    /// What went wrong: the metric label, and the client's error code.
    pub kind: ModelErrorKind,
    pub message: String,
}

impl StreamError {
    pub fn new(recovery: Recovery, kind: ModelErrorKind, message: impl Into<String>) -> Self {
        Self {
            recovery,
            kind,
            message: message.into(),
        }
    }

    /// The `bidi_error` code clients see.
    pub fn client_code(&self) -> &'static str {
        self.kind.client_code()
    }
}

/// An open stream.
pub struct BedrockStream {
    input: mpsc::Sender<Input>,
    output: aws_sdk_bedrockruntime::primitives::event_stream::EventReceiver<Output, OutputError>,
    /// The stream's place on its connection, held until the stream is dropped.
    _lease: Lease,
}

impl BedrockStream {
    /// Opens a stream and sends `init` (session start, prompt, history) as its first events.
    ///
    /// The SDK call is spawned before the first events are queued: Bedrock answers only once it
    /// has read input, so awaiting the call first would wait forever.
    pub async fn open(lease: Lease, model_id: &str, init: Vec<String>) -> Result<Self, StreamError> {
        let (input, mut queue) = mpsc::channel::<Input>(BEDROCK_INPUT_QUEUE);
        let body = futures::stream::poll_fn(move |cx| queue.poll_recv(cx)).map(Ok::<Input, InputError>);
        let request = lease
            .client()
            .invoke_model_with_bidirectional_stream()
            .model_id(model_id)
            .body(body.into());
        let mut call = tokio::spawn(request.send());
        let opening = async {
            for event in init {
                if input.send(chunk(event)).await.is_err() {
                    break;
                }
            }
            (&mut call).await
        };
        let response = match tokio::time::timeout(OPEN_TIMEOUT, opening).await {
            Ok(Ok(Ok(response))) => response,
            Ok(Ok(Err(error))) => return Err(classify_open(error)),
            Ok(Err(join)) => {
                return Err(StreamError::new(
                    Recovery::Retry,
                    ModelErrorKind::Internal,
                    join.to_string(),
                ));
            }
            Err(_) => {
                call.abort();
                return Err(StreamError::new(
                    Recovery::Retry,
                    ModelErrorKind::Transport,
                    format!("no response from Bedrock within {}s", OPEN_TIMEOUT.as_secs()),
                ));
            }
        };
        Ok(Self {
            input,
            output: response.body,
            _lease: lease,
        })
    }

    /// Queues an event, waiting for room.
    pub async fn send(&self, event: String) -> Result<(), StreamError> {
        self.input.send(chunk(event)).await.map_err(|_| {
            StreamError::new(
                Recovery::Retry,
                ModelErrorKind::Transport,
                "the Bedrock input stream is closed",
            )
        })
    }

    /// Queues several events as one group: nothing else is interleaved as long as the caller
    /// is the only sender (it is: one driver task owns each stream).
    pub async fn send_all(&self, events: Vec<String>) -> Result<(), StreamError> {
        for event in events {
            self.send(event).await?;
        }
        Ok(())
    }

    /// The next output chunk's JSON bytes; `None` when Bedrock ended the stream.
    pub async fn recv(&mut self) -> Result<Option<Vec<u8>>, StreamError> {
        loop {
            match self.output.recv().await {
                Ok(Some(Output::Chunk(part))) => {
                    if let Some(bytes) = part.bytes {
                        return Ok(Some(bytes.into_inner()));
                    }
                }
                // A kind of event this SDK version does not know: skip it.
                Ok(Some(_)) => {}
                Ok(None) => return Ok(None),
                Err(error) => return Err(classify_stream(error)),
            }
        }
    }

    /// Sends the close events, ends the input (Bedrock sees the end of the request body) and
    /// waits for the output to finish, so the service frees the session promptly; all within
    /// `wait`. The events wait for room in the queue: dropping them would leave Bedrock without
    /// its sessionEnd.
    pub async fn finish(self, close_events: Vec<String>, wait: Duration) {
        // The lease is held until the output has finished: the stream occupies its place until then.
        let Self {
            input,
            mut output,
            _lease,
        } = self;
        let _ = tokio::time::timeout(wait, async move {
            for event in close_events {
                if input.send(chunk(event)).await.is_err() {
                    break;
                }
            }
            drop(input);
            while let Ok(Some(_)) = output.recv().await {}
        })
        .await;
    }
}

fn chunk(event: String) -> Input {
    Input::Chunk(
        BidirectionalInputPayloadPart::builder()
            .bytes(Blob::new(event.into_bytes()))
            .build(),
    )
}

fn classify_open(error: SdkError<OpenError, aws_sdk_bedrockruntime::config::http::HttpResponse>) -> StreamError {
    use aws_sdk_bedrockruntime::error::ProvideErrorMetadata;
    let message = error.message().map(str::to_owned);
    let text = message.clone().unwrap_or_else(|| describe(&error));
    match error {
        SdkError::ServiceError(service) => match service.into_err() {
            OpenError::AccessDeniedException(_) => {
                StreamError::new(Recovery::Fatal, ModelErrorKind::AccessDenied, text)
            }
            OpenError::ResourceNotFoundException(_) => {
                StreamError::new(Recovery::Fatal, ModelErrorKind::NotFound, text)
            }
            OpenError::ValidationException(_) => classify_validation(text),
            OpenError::ThrottlingException(_) => StreamError::new(Recovery::Retry, ModelErrorKind::Throttled, text),
            OpenError::ServiceQuotaExceededException(_) => {
                StreamError::new(Recovery::Retry, ModelErrorKind::QuotaExceeded, text)
            }
            OpenError::ServiceUnavailableException(_) | OpenError::ModelNotReadyException(_) => {
                StreamError::new(Recovery::Retry, ModelErrorKind::Unavailable, text)
            }
            OpenError::ModelTimeoutException(_) => {
                StreamError::new(Recovery::Renew, ModelErrorKind::ModelTimeout, text)
            }
            _ => StreamError::new(Recovery::Retry, ModelErrorKind::Internal, text),
        },
        SdkError::ConstructionFailure(_) => StreamError::new(
            Recovery::Fatal,
            ModelErrorKind::Credentials,
            format!("could not sign the request (are AWS credentials available?): {text}"),
        ),
        _ => StreamError::new(Recovery::Retry, ModelErrorKind::Transport, text),
    }
}

fn classify_stream(error: SdkError<OutputError, aws_smithy_types::event_stream::RawMessage>) -> StreamError {
    use aws_sdk_bedrockruntime::error::ProvideErrorMetadata;
    let text = error.message().map(str::to_owned).unwrap_or_else(|| describe(&error));
    match error {
        SdkError::ServiceError(service) => match service.into_err() {
            OutputError::ModelTimeoutException(_) => {
                StreamError::new(Recovery::Renew, ModelErrorKind::ModelTimeout, text)
            }
            OutputError::ValidationException(_) => classify_validation(text),
            OutputError::ThrottlingException(_) => StreamError::new(Recovery::Retry, ModelErrorKind::Throttled, text),
            OutputError::ServiceUnavailableException(_) => {
                StreamError::new(Recovery::Retry, ModelErrorKind::Unavailable, text)
            }
            _ => StreamError::new(Recovery::Retry, ModelErrorKind::Internal, text),
        },
        _ => StreamError::new(Recovery::Retry, ModelErrorKind::Transport, text),
    }
}

/// Validation errors are mostly real rejections, but two of them are limits that a fresh
/// stream resolves: the user was silent too long (code 531), or input stopped arriving.
fn classify_validation(text: String) -> StreamError {
    if text.contains("InternalErrorCode=531") {
        StreamError::new(Recovery::Renew, ModelErrorKind::SilenceTimeout, text)
    } else if text.contains("Timed out waiting for input events") {
        StreamError::new(Recovery::Renew, ModelErrorKind::InputTimeout, text)
    } else {
        StreamError::new(Recovery::Fatal, ModelErrorKind::Validation, text)
    }
}

fn describe(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(inner) = source {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        source = inner.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_limits_renew_and_other_validation_errors_are_fatal() {
        assert_eq!(
            classify_validation("Nova: InternalErrorCode=531 silence".into()).kind,
            ModelErrorKind::SilenceTimeout
        );
        assert_eq!(
            classify_validation("Timed out waiting for input events".into()).recovery,
            Recovery::Renew
        );
        let fatal = classify_validation("Invalid voiceId".into());
        assert_eq!(fatal.recovery, Recovery::Fatal);
        assert_eq!(fatal.client_code(), "model_rejected_request");
    }
}
