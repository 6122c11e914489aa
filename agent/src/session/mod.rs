//! One voice session: a synchronous state machine ([`machine`]) that decides everything, and the
//! async task that moves frames between the client socket (through the session's wire
//! protocol), the machine and the model stream ([`task`]).

mod machine;
mod resume;
pub mod settings;
mod task;
mod tool_calls;

pub use machine::{Action, Observation, Session, SessionLimits, SocketEnding};
pub use resume::ResumeContext;
pub use settings::SessionSettings;
pub use task::{SessionContext, run_session};
