//! One voice session: a synchronous state machine ([`machine`]) that decides everything, and the
//! async task that moves frames between the client socket (through the session's wire
//! protocol), the machine and the model stream ([`task`]), writing to the socket through its
//! [`writer`].

mod machine;
mod resume;
pub mod settings;
mod task;
mod tool_calls;
mod writer;

pub use machine::{Action, Observation, Session, SessionLimits, SocketEnding};
pub use resume::ResumeContext;
pub use settings::SessionSettings;
pub use task::{SessionContext, run_session};
