//! A typed prompt to `POST /invocations` (`{"prompt": "..."}`), answered as Server-Sent Events:
//! AgentCore's HTTP contract (`InvokeAgentRuntime`) served by the same model, tools, auth,
//! limits and metrics as a voice session. It *is* a session: the session task runs over an
//! in-memory socket whose only input is the prompt, and the reply's events become SSE events.
//!
//! Events: `start` {session_id, model}; `delta` {text} as the reply is generated; `audio`
//! {audio, format, sample_rate} when the request asks for `"audio": true`; `tool_use` and
//! `tool_result`; then `done` {text, stop_reason, usage} or `error` {code, message}.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::extract::ws::Message;
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::channel::mpsc;
use futures::{FutureExt, Sink, SinkExt, Stream, StreamExt};
use serde_json::{Value, json};

use super::admission::{self, Admitted};
use super::http::error_response;
use super::ws::session_id;
use super::{Agent, Continuity};
use crate::audio::base64;
use crate::model::{Role, TokenUsage};
use crate::protocol::strands::MAX_TEXT_INPUT_BYTES;
use crate::protocol::{ClientMessage, Codec, Decode, DecodeError, Encode, Frame, SessionEvent, StopReason};
use crate::session::run_session;

/// The protocol label of these sessions in logs, traces and metrics.
pub const PROTOCOL: &str = "invocation";

/// Frames from the handler to the session: the prompt, then the close. Nothing else is sent.
const INPUT_QUEUE: usize = 2;
/// Frames from the session to the SSE body. The writer blocks when the client reads slowly,
/// as it does on a socket; 64 frames absorb a model's burst of reply audio, as the model's own
/// output queue does.
const OUTPUT_QUEUE: usize = 64;
/// After the reply ends, how long to wait for the model's usage report (Nova sends it with the
/// reply's end or just after).
const USAGE_GRACE: std::time::Duration = std::time::Duration::from_millis(500);

/// One prompt invocation, admitted: streams the reply as SSE.
pub async fn prompt(
    agent: Arc<Agent>,
    peer: SocketAddr,
    headers: &HeaderMap,
    raw_query: Option<&str>,
    query: &HashMap<String, String>,
    prompt: String,
    audio: bool,
) -> Response {
    let prompt = prompt.trim().to_owned();
    if prompt.is_empty() {
        return error_response(StatusCode::BAD_REQUEST, "invalid_request", "\"prompt\" is empty");
    }
    if prompt.len() > MAX_TEXT_INPUT_BYTES {
        return error_response(
            StatusCode::BAD_REQUEST,
            "text_too_long",
            format!(
                "\"prompt\" is {} bytes; the limit is {MAX_TEXT_INPUT_BYTES}",
                prompt.len()
            ),
        );
    }
    let Admitted {
        caller,
        mut settings,
        guard,
    } = match admission::admit_invocation(&agent, peer, headers, raw_query, query).await {
        Ok(admitted) => admitted,
        Err(refusal) => return refusal.into_response(),
    };
    // The caller speaks first here: a greeting would answer before the prompt.
    settings.greeting = None;
    // A prompt is one turn: nothing to resume.
    let mut ctx = agent.session_context(
        session_id(headers),
        &caller,
        PROTOCOL,
        settings,
        headers,
        Continuity::OneShot,
    );
    ctx.place = Some(guard);
    let (mut to_session, session_input) = mpsc::channel(INPUT_QUEUE);
    let (session_output, from_session) = mpsc::channel(OUTPUT_QUEUE);
    let socket = MemorySocket {
        input: session_input,
        output: session_output,
        closed: false,
    };
    let codec = Codec {
        decoder: Box::new(PromptDecoder),
        encoder: Box::new(SseEncoder {
            audio,
            sample_rate: agent.config.output_sample_rate(),
        }),
    };
    agent.tasks.spawn(run_session(socket, codec, ctx).map(drop));
    if to_session.send(Message::Text(prompt.into())).await.is_err() {
        return error_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the session ended at once",
        );
    }
    let reply = Reply {
        from_session,
        to_session,
        text: String::new(),
        usage: TokenUsage::default(),
        finished: false,
    };
    Sse::new(futures::stream::unfold(reply, Reply::next))
        .keep_alive(KeepAlive::default())
        .into_response()
}

/// The reply in progress: reads the session's frames until the reply is done.
struct Reply {
    from_session: mpsc::Receiver<Message>,
    to_session: mpsc::Sender<Message>,
    /// The reply's final text so far.
    text: String,
    usage: TokenUsage,
    finished: bool,
}

impl Reply {
    async fn next(mut self) -> Option<(Result<Event, Infallible>, Self)> {
        if self.finished {
            return None;
        }
        loop {
            let Some(message) = self.from_session.next().await else {
                // The session ended without a word (it cannot: it always says why).
                self.finished = true;
                let error = error_event("internal", "the session ended before the reply");
                return Some((Ok(error), self));
            };
            let Message::Text(text) = message else { continue };
            let Ok(mut frame) = serde_json::from_str::<Value>(text.as_str()) else {
                continue;
            };
            let kind = frame["event"].as_str().unwrap_or_default().to_owned();
            let data = frame["data"].take();
            match kind.as_str() {
                "final_text" => {
                    if let Some(text) = data["text"].as_str() {
                        if !self.text.is_empty() {
                            self.text.push(' ');
                        }
                        self.text.push_str(text);
                    }
                }
                "usage" => self.usage += usage_of(&data),
                "response_complete" => {
                    if data["stop_reason"] == StopReason::ToolUse.as_str() {
                        continue;
                    }
                    // The model reports the reply's usage around its end, sometimes just after:
                    // wait a moment for it, then take whatever else is already queued.
                    let grace = tokio::time::Instant::now() + USAGE_GRACE;
                    let mut counted = false;
                    loop {
                        let next = if counted {
                            self.from_session.try_recv().ok()
                        } else {
                            tokio::time::timeout_at(grace, self.from_session.next())
                                .await
                                .ok()
                                .flatten()
                        };
                        let Some(message) = next else { break };
                        if let Message::Text(text) = message
                            && let Ok(frame) = serde_json::from_str::<Value>(text.as_str())
                            && frame["event"] == "usage"
                        {
                            self.usage += usage_of(&frame["data"]);
                            counted = true;
                        }
                    }
                    self.finished = true;
                    // The reply is complete: the session ends the clean way.
                    let _ = self.to_session.try_send(Message::Close(None));
                    let done = json!({
                        "text": self.text,
                        "stop_reason": data["stop_reason"],
                        "usage": {
                            "input_tokens": self.usage.input(),
                            "output_tokens": self.usage.output(),
                            "total_tokens": self.usage.input() + self.usage.output(),
                        },
                    });
                    return Some((Ok(event("done", &done)), self));
                }
                "closing" => {
                    self.finished = true;
                    let reason = data["reason"].as_str().unwrap_or("internal");
                    let error = error_event(reason, "the session ended before the reply was complete");
                    return Some((Ok(error), self));
                }
                "error" => {
                    // Fatal errors are followed by `closing`; others (a refused input) end the
                    // invocation too, since its one input was refused.
                    self.finished = true;
                    let _ = self.to_session.try_send(Message::Close(None));
                    return Some((Ok(event("error", &data)), self));
                }
                "" => {}
                other => return Some((Ok(event(other, &data)), self)),
            }
        }
    }
}

/// The counts of a `usage` frame (written by [`SseEncoder`]).
fn usage_of(data: &Value) -> TokenUsage {
    let count = |key: &str| u32::try_from(data[key].as_u64().unwrap_or(0)).unwrap_or(u32::MAX);
    TokenUsage {
        input_speech: count("input_speech"),
        input_text: count("input_text"),
        output_speech: count("output_speech"),
        output_text: count("output_text"),
    }
}

fn event(kind: &str, data: &Value) -> Event {
    Event::default().event(kind).data(data.to_string())
}

fn error_event(code: &str, message: &str) -> Event {
    event("error", &json!({"code": code, "message": message}))
}

/// The session's socket: frames from the handler in, frames to the SSE body out.
struct MemorySocket {
    input: mpsc::Receiver<Message>,
    output: mpsc::Sender<Message>,
    /// Whether the end of the input was reported as a close frame.
    closed: bool,
}

impl Stream for MemorySocket {
    type Item = Result<Message, axum::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        match self.input.poll_next_unpin(cx) {
            Poll::Ready(None) if !self.closed => {
                // The handler is gone (the reply is done, or the HTTP client left): to the
                // session that is a clean close, answered at once, with nothing to linger for.
                self.closed = true;
                Poll::Ready(Some(Ok(Message::Close(None))))
            }
            other => other.map(|message| message.map(Ok)),
        }
    }
}

impl Sink<Message> for MemorySocket {
    type Error = axum::Error;

    fn poll_ready(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.output.poll_ready_unpin(cx).map_err(axum::Error::new)
    }

    fn start_send(mut self: Pin<&mut Self>, item: Message) -> Result<(), Self::Error> {
        self.output.start_send_unpin(item).map_err(axum::Error::new)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.output.poll_flush_unpin(cx).map_err(axum::Error::new)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.output.poll_close_unpin(cx).map_err(axum::Error::new)
    }
}

/// The only input is the prompt, already checked.
struct PromptDecoder;

impl Decode for PromptDecoder {
    fn decode(&mut self, frame: Frame<'_>) -> Result<ClientMessage, DecodeError> {
        match frame {
            Frame::Text(text) => Ok(ClientMessage::Text(text.to_owned())),
            Frame::Binary(_) => Err(DecodeError::fatal("an invocation takes no audio")),
        }
    }
}

/// Session events as `{"event": name, "data": {...}}` for [`Reply`].
struct SseEncoder {
    audio: bool,
    sample_rate: u32,
}

impl Encode for SseEncoder {
    fn event(&mut self, event: SessionEvent, frames: &mut Vec<Message>) {
        let (kind, data) = match event {
            SessionEvent::Started { session_id, model, .. } => {
                ("start", json!({"session_id": session_id, "model": model}))
            }
            SessionEvent::Transcript {
                role: Role::Assistant,
                text,
                is_final,
            } => {
                if is_final {
                    ("final_text", json!({ "text": text }))
                } else {
                    ("delta", json!({ "text": text }))
                }
            }
            SessionEvent::ToolUse { id, name, input } => ("tool_use", json!({"id": id, "name": name, "input": input})),
            SessionEvent::ToolResult { id, name, is_error, .. } => (
                "tool_result",
                json!({"id": id, "name": name, "status": if is_error { "error" } else { "success" }}),
            ),
            SessionEvent::ResponseComplete { stop_reason, .. } => {
                ("response_complete", json!({ "stop_reason": stop_reason }))
            }
            SessionEvent::Usage(usage) => (
                "usage",
                json!({
                    "input_speech": usage.input_speech,
                    "input_text": usage.input_text,
                    "output_speech": usage.output_speech,
                    "output_text": usage.output_text,
                }),
            ),
            SessionEvent::Closing { reason, .. } => ("closing", json!({ "reason": reason.as_str() })),
            SessionEvent::Error { code, message } => ("error", json!({"code": code, "message": message})),
            SessionEvent::Transcript { .. }
            | SessionEvent::ResponseStart { .. }
            | SessionEvent::Interrupted
            | SessionEvent::RestartWarning { .. }
            | SessionEvent::Restarted { .. } => return,
        };
        frames.push(Message::Text(json!({"event": kind, "data": data}).to_string().into()));
    }

    fn audio(&mut self, pcm: Bytes, frames: &mut Vec<Message>) {
        if self.audio {
            let data = json!({"audio": base64::encode(&pcm), "format": "pcm", "sample_rate": self.sample_rate});
            frames.push(Message::Text(
                json!({"event": "audio", "data": data}).to_string().into(),
            ));
        }
    }
}
