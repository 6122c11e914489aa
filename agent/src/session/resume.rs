//! A session's side of resumption: it keeps the conversation (what was said, tool outcomes,
//! the settings) and saves it as it goes, after each turn and tool result, so that a drop, a
//! drain or even a crashed process loses at most the turn in progress.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::model::Role;
use crate::protocol::ResumeOffer;
use crate::resume::{ConversationKey, ConversationState, Hold, ResumeToken, Resumption};

/// Longest text of one tool result kept in the conversation (bytes).
const MAX_TOOL_RESULT_TEXT: usize = 2048;

/// What a session is handed to be resumable.
pub struct ResumeContext {
    /// This session's token (a new one for every session, resumed or not).
    pub token: ResumeToken,
    /// The conversation so far: empty for a new one.
    pub state: ConversationState,
    pub resumed: bool,
    /// How long the state of a live session is kept: as long as the session may last, and
    /// the window after that.
    pub live_ttl: Duration,
    /// The session's hold on its token on this replica, until its last save (and the service
    /// that keeps conversations).
    pub hold: Hold,
}

/// Keeps one session's conversation and saves it in the background, latest state first.
pub(super) struct Keeper {
    /// The session's hold on the conversation: the service, and the key it is saved under.
    hold: Hold,
    /// Until it is offered to the client (once, when the session starts): saves go by the key.
    token: Option<ResumeToken>,
    state: ConversationState,
    resumed: bool,
    live_ttl: Duration,
    /// The background saver, started by the first save: until then there is nothing to save,
    /// and a session without a finished turn holds no saver task.
    saver: Option<Saver>,
}

struct Saver {
    latest: watch::Sender<Option<ConversationState>>,
    task: JoinHandle<bool>,
}

impl Keeper {
    /// Boxed: a session holds it for its whole length, and inline it would size every
    /// session's future, with resumption or without.
    pub fn start(context: Box<ResumeContext>) -> Box<Self> {
        let context = *context;
        Box::new(Self {
            hold: context.hold,
            token: Some(context.token),
            state: context.state,
            resumed: context.resumed,
            live_ttl: context.live_ttl,
            saver: None,
        })
    }

    /// What the client is told about resuming this conversation, once: the offer takes the
    /// token (the session's machine keeps it for the close).
    pub fn offer(&mut self) -> Option<ResumeOffer> {
        let service = self.hold.service();
        Some(ResumeOffer {
            token: self.token.take()?.into_string(),
            window_s: service.window().as_secs(),
            resumed: self.resumed,
            anywhere: service.shared(),
        })
    }

    /// Whether the conversation was resumed on another connection while this session held it:
    /// the session ends, and its last save hands the conversation over.
    pub fn superseded(&self) -> bool {
        self.hold.superseded()
    }

    /// A final transcript.
    pub fn said(&mut self, role: Role, text: &str) {
        self.state.push(role, text, self.hold.service().max_bytes());
    }

    /// A finished tool call; a resumed conversation learns its outcome as a user message.
    pub fn tool_finished(&mut self, name: &str, is_error: bool, content: &str) {
        let mut text: String = content.chars().take(MAX_TOOL_RESULT_TEXT).collect();
        if text.len() < content.len() {
            text.push_str(" …");
        }
        let status = if is_error { "failed" } else { "returned" };
        self.state.push(
            Role::User,
            &format!("(The {name} tool {status}: {text})"),
            self.hold.service().max_bytes(),
        );
        self.save();
    }

    /// Saves the conversation as it is now, in the background.
    pub fn save(&mut self) {
        let saver = self.saver.get_or_insert_with(|| {
            let (latest, updates) = watch::channel(None);
            let task = tokio::spawn(save_loop(
                self.hold.service().clone(),
                self.hold.key(),
                self.live_ttl,
                updates,
            ));
            Saver { latest, task }
        });
        saver.latest.send_replace(Some(self.state.clone()));
    }

    /// The session is over: saves the conversation for the resume window, after any save in
    /// flight, within the store's timeout. Boxed: it runs once, at the end, and inline its
    /// state (a store round trip) would be part of the session's future all along.
    pub fn finish(self: Box<Self>) -> BoxFuture<'static, ()> {
        Box::pin(self.save_for_window())
    }

    async fn save_for_window(self) {
        let Self { hold, state, saver, .. } = self;
        let created = match saver {
            Some(Saver { latest, task }) => {
                drop(latest);
                task.await.unwrap_or(false)
            }
            None => false,
        };
        // Written over the live state only: if the conversation was resumed elsewhere in the
        // meantime, its key is gone and stays gone (a token works once).
        let service = hold.service();
        service.save(hold.key(), state, service.window(), created).await;
        // Only now may a resumption waiting on this replica take the conversation.
        drop(hold);
    }
}

/// Saves each new state, skipping any superseded while a save was running. Returns whether
/// the conversation has been written at least once.
async fn save_loop(
    service: Arc<Resumption>,
    key: ConversationKey,
    ttl: Duration,
    mut updates: watch::Receiver<Option<ConversationState>>,
) -> bool {
    let mut created = false;
    while updates.changed().await.is_ok() {
        let Some(state) = updates.borrow_and_update().clone() else {
            continue;
        };
        let written = service.save(key, state, ttl, created).await;
        if created && !written {
            // The key is gone: the conversation was resumed on another connection.
            return true;
        }
        created |= written;
    }
    created
}
