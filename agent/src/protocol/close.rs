//! Why sessions end, and how each ending looks on the wire.

/// WebSocket close codes used by the agent (RFC 6455 §7.4.1 and the IANA registry).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CloseCode;

impl CloseCode {
    pub const NORMAL: u16 = 1000;
    pub const PROTOCOL_ERROR: u16 = 1002;
    pub const UNSUPPORTED_DATA: u16 = 1003;
    pub const INVALID_PAYLOAD: u16 = 1007;
    pub const POLICY_VIOLATION: u16 = 1008;
    pub const MESSAGE_TOO_BIG: u16 = 1009;
    pub const INTERNAL_ERROR: u16 = 1011;
    pub const SERVICE_RESTART: u16 = 1012;
}

/// Every way a session can end. One value decides the close code, the `reason` of the
/// `bidi_connection_close` event, and the `reason` label of the sessions-ended metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EndReason {
    /// The client sent a close frame.
    ClientClosed,
    /// The connection dropped without a close frame.
    ClientGone,
    /// No client input for longer than the idle timeout.
    IdleTimeout,
    /// The session reached its maximum duration.
    MaxDuration,
    /// The agent is shutting down and the drain timeout elapsed.
    Draining,
    /// The conversation was resumed on another connection (the client reconnected with this
    /// session's token while the agent still held this one).
    ResumedElsewhere,
    /// A frame that is not valid JSON, base64 or PCM.
    InvalidPayload,
    /// A message larger than the configured maximum.
    MessageTooBig,
    /// A limit on client behaviour was broken: no first message in time, audio much faster
    /// than real time.
    PolicyViolation,
    /// A WebSocket protocol violation.
    ProtocolError,
    /// The client does not read what the agent sends.
    SlowConsumer,
    /// The model stream failed and could not be recovered.
    ModelError,
    /// A bug or resource failure inside the agent.
    Internal,
}

impl EndReason {
    pub const ALL: [EndReason; 13] = [
        Self::ClientClosed,
        Self::ClientGone,
        Self::IdleTimeout,
        Self::MaxDuration,
        Self::Draining,
        Self::ResumedElsewhere,
        Self::InvalidPayload,
        Self::MessageTooBig,
        Self::PolicyViolation,
        Self::ProtocolError,
        Self::SlowConsumer,
        Self::ModelError,
        Self::Internal,
    ];

    /// The close code sent to the client (`None` when the socket is already gone).
    pub fn close_code(self) -> Option<u16> {
        match self {
            Self::ClientClosed | Self::IdleTimeout | Self::MaxDuration | Self::ResumedElsewhere => {
                Some(CloseCode::NORMAL)
            }
            Self::ClientGone | Self::SlowConsumer => None,
            Self::Draining => Some(CloseCode::SERVICE_RESTART),
            Self::InvalidPayload => Some(CloseCode::INVALID_PAYLOAD),
            Self::MessageTooBig => Some(CloseCode::MESSAGE_TOO_BIG),
            Self::PolicyViolation => Some(CloseCode::POLICY_VIOLATION),
            Self::ProtocolError => Some(CloseCode::PROTOCOL_ERROR),
            Self::ModelError | Self::Internal => Some(CloseCode::INTERNAL_ERROR),
        }
    }

    /// Stable snake_case name: the `bidi_connection_close` reason and the metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ClientClosed => "client_disconnect",
            Self::ClientGone => "connection_lost",
            Self::IdleTimeout => "idle_timeout",
            Self::MaxDuration => "max_duration",
            Self::Draining => "draining",
            Self::ResumedElsewhere => "resumed_elsewhere",
            Self::InvalidPayload => "invalid_payload",
            Self::MessageTooBig => "message_too_big",
            Self::PolicyViolation => "policy_violation",
            Self::ProtocolError => "protocol_error",
            Self::SlowConsumer => "slow_consumer",
            Self::ModelError => "model_error",
            Self::Internal => "internal_error",
        }
    }

    /// Whether the client should be told with a `bidi_connection_close` event before the close
    /// frame (only possible while the socket is writable and the client is still there).
    pub fn announce(self) -> bool {
        !matches!(self, Self::ClientClosed | Self::ClientGone | Self::SlowConsumer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drain_closes_with_service_restart() {
        assert_eq!(EndReason::Draining.close_code(), Some(1012));
        assert_eq!(EndReason::Draining.as_str(), "draining");
    }

    #[test]
    fn bad_input_maps_to_rfc_codes() {
        assert_eq!(EndReason::InvalidPayload.close_code(), Some(1007));
        assert_eq!(EndReason::MessageTooBig.close_code(), Some(1009));
        assert_eq!(EndReason::ProtocolError.close_code(), Some(1002));
        assert_eq!(EndReason::ModelError.close_code(), Some(1011));
    }

    #[test]
    fn a_conversation_resumed_elsewhere_closes_normally_so_the_old_client_does_not_resume_it() {
        assert_eq!(EndReason::ResumedElsewhere.close_code(), Some(1000));
        assert_eq!(EndReason::ResumedElsewhere.as_str(), "resumed_elsewhere");
        assert!(EndReason::ResumedElsewhere.announce());
    }

    #[test]
    fn lost_connections_get_no_close_frame() {
        assert_eq!(EndReason::ClientGone.close_code(), None);
        assert!(!EndReason::ClientGone.announce());
        assert!(EndReason::IdleTimeout.announce());
    }
}
