//! One voice session: a synchronous state machine ([`machine`]) and the async task that moves
//! frames between the client socket, the machine and the model stream ([`task`]).

mod machine;
mod task;
mod tool_calls;

pub use machine::{Action, Observation, Outbound, Session, SessionLimits};
pub use task::{SessionContext, run_session};
