//! Every way `voice-agent talk` can fail, each printed as one line.

use std::path::PathBuf;
use std::time::Duration;

/// Why a talk run failed. The message is what the user sees after `voice-agent talk: `.
#[derive(Debug, thiserror::Error)]
pub enum TalkError {
    /// The input file cannot be used.
    #[error("{}: {message}", path.display())]
    Input { path: PathBuf, message: String },
    /// The `--url` is not a WebSocket URL.
    #[error("invalid --url {url:?}: {reason}")]
    Url { url: String, reason: String },
    /// The `--token` cannot be sent.
    #[error("invalid --token: {0}")]
    Token(&'static str),
    /// No AWS credentials to sign an AgentCore URL with, or the signing failed.
    #[error("cannot sign the AgentCore request: {0}")]
    Credentials(String),
    /// No TCP or TLS connection could be made.
    #[error("cannot connect to {url}: {reason}")]
    Unreachable { url: String, reason: String },
    /// The agent (or something in front of it) answered the handshake with an HTTP error.
    #[error("{url} refused the connection: HTTP {status}{detail}")]
    Refused { url: String, status: u16, detail: String },
    /// The agent closed the session before the reply was complete.
    #[error("the agent closed the session before replying: {code}{detail}")]
    Closed { code: u16, detail: String },
    /// The connection broke without a close frame.
    #[error("the connection to the agent was lost: {0}")]
    Lost(String),
    /// Nothing came back in time.
    #[error("no {what} within {}", humantime::format_duration(*timeout))]
    Timeout { what: &'static str, timeout: Duration },
    /// The agent ended the reply with `stop_reason: "error"`.
    #[error("the reply ended with an error{0}")]
    ReplyFailed(String),
    /// The reply could not be saved.
    #[error("cannot write {}: {message}", path.display())]
    Output { path: PathBuf, message: String },
}

impl TalkError {
    /// 2 for problems with what the user asked for (like clap's usage errors), 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Input { .. } | Self::Url { .. } | Self::Token(_) => 2,
            _ => 1,
        }
    }
}
