//! Resumable conversations. Every session is offered a resume token; a client that reconnects
//! within the window with it gets the same conversation back (history, settings), on this
//! replica or, with a shared store, on any other. Tokens are 256 random bits, single use (each
//! resumption offers a new one), expire with the window, are bound to the caller that earned
//! them, and are stored only as a hash. The state itself is encrypted at rest.
//!
//! A resumption that reaches the replica still holding the session it continues (the old
//! connection not yet noticed as gone, or its last save still under way) takes over from that
//! session: the old one is ended and its conversation saved, with everything said to its end,
//! before the new one takes it. Without that, the reconnect would race the old session's save
//! and could find nothing to resume, or an older state.

mod cipher;
mod store;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::digest::{SHA256, digest};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use voice_config::{ResumeConfig, ResumeStore};

pub use cipher::Cipher;
pub use store::{MemoryStore, RedisStore, Store, StoreError};

use crate::metrics::Metrics;
use crate::model::Role;
use crate::session::SessionSettings;

/// The stored state's format. A state of another version is refused, never guessed at.
pub const STATE_VERSION: u32 = 1;

/// Beyond the store's time for two saves, how long a resumption waits for the session it takes
/// over from to notice and end (it does so at its next wake-up, well within this).
const HANDOVER_NOTICE: Duration = Duration::from_secs(1);

/// A resume token: 32 random bytes, base64url. Its `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct ResumeToken(String);

impl ResumeToken {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }

    /// How the store and this replica know the conversation: the token's hash, so that neither
    /// holds a usable token, and a saving session need not keep the token itself.
    pub fn key(&self) -> ConversationKey {
        ConversationKey::of(&self.0)
    }
}

impl std::fmt::Debug for ResumeToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ResumeToken(…)")
    }
}

/// One message of the conversation, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredMessage {
    pub role: StoredRole,
    pub text: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StoredRole {
    User,
    Assistant,
}

impl From<Role> for StoredRole {
    fn from(role: Role) -> Self {
        match role {
            Role::User => Self::User,
            Role::Assistant => Self::Assistant,
        }
    }
}

impl From<StoredRole> for Role {
    fn from(role: StoredRole) -> Self {
        match role {
            StoredRole::User => Self::User,
            StoredRole::Assistant => Self::Assistant,
        }
    }
}

/// What a conversation needs to go on elsewhere.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConversationState {
    pub version: u32,
    /// The first session of the conversation (kept across resumptions).
    pub conversation_id: String,
    /// Who may resume it: the subject that held it (none without authentication).
    pub subject: Option<String>,
    /// Shared with the session's setup: a live session keeps one copy.
    pub settings: Arc<SessionSettings>,
    pub history: Vec<StoredMessage>,
    /// The trace of the session that saved it, for a span link (`trace_id-span_id`, hex).
    pub trace: Option<String>,
    /// When it was saved (Unix seconds).
    pub saved_at: u64,
}

impl ConversationState {
    pub fn new(conversation_id: String, subject: Option<String>, settings: Arc<SessionSettings>) -> Self {
        Self {
            version: STATE_VERSION,
            conversation_id,
            subject,
            settings,
            history: Vec::new(),
            trace: None,
            saved_at: 0,
        }
    }

    /// Adds a message, dropping the oldest ones while the history is over `max_bytes`.
    pub fn push(&mut self, role: Role, text: &str, max_bytes: usize) {
        let text = text.trim();
        if text.is_empty() {
            return;
        }
        self.history.push(StoredMessage {
            role: role.into(),
            text: text.to_owned(),
        });
        let mut total: usize = self.history.iter().map(|m| m.text.len() + 32).sum();
        while total > max_bytes && self.history.len() > 1 {
            total -= self.history[0].text.len() + 32;
            self.history.remove(0);
        }
    }
}

/// Why a resumption is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResumeRefusal {
    /// No such conversation: never offered, already resumed, or past its window.
    Expired,
    /// The token belongs to another caller.
    Foreign,
    /// The stored state cannot be read (another key, another format, damaged).
    Corrupt,
    /// The store cannot be reached now.
    Unavailable,
}

impl ResumeRefusal {
    pub const ALL: [ResumeRefusal; 4] = [Self::Expired, Self::Foreign, Self::Corrupt, Self::Unavailable];

    /// The `outcome` label of `voice_agent_resumptions_total`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Expired => "expired",
            Self::Foreign => "foreign",
            Self::Corrupt => "corrupt",
            Self::Unavailable => "unavailable",
        }
    }

    pub fn message(self) -> &'static str {
        match self {
            Self::Expired => {
                "this conversation cannot be resumed: the token was used already or has expired; start a new session"
            }
            Self::Foreign => "this conversation belongs to another caller",
            Self::Corrupt => "this conversation's stored state cannot be read; start a new session",
            Self::Unavailable => "resumption is not available right now; start a new session or retry shortly",
        }
    }
}

/// How a conversation is known to the store and to this replica: the SHA-256 of its token
/// (see [`ResumeToken::key`]).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConversationKey([u8; 32]);

impl ConversationKey {
    fn of(token: &str) -> Self {
        let mut hash = [0u8; 32];
        hash.copy_from_slice(digest(&SHA256, token.as_bytes()).as_ref());
        Self(hash)
    }
}

/// A live session of this replica, as a resumption of its conversation sees it.
struct Holder {
    subject: Option<String>,
    /// The session's own stop signal (a child of the drain's): cancelled to end it.
    stop: CancellationToken,
    superseded: AtomicBool,
    /// Set once the session has saved its conversation for the last time (or is gone), and
    /// `release` notified. Not a token of its own: this is kept for every live session.
    released: AtomicBool,
    release: Notify,
}

/// A session's hold on its token on this replica, from its start until its last save. Dropping
/// it lets a waiting resumption go on.
pub struct Hold {
    service: Arc<Resumption>,
    key: ConversationKey,
    holder: Arc<Holder>,
}

impl Hold {
    pub fn service(&self) -> &Arc<Resumption> {
        &self.service
    }

    pub fn key(&self) -> ConversationKey {
        self.key
    }

    /// Whether a resumption of this conversation on another connection ended the session.
    pub fn superseded(&self) -> bool {
        self.holder.superseded.load(Ordering::Acquire)
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        let mut held = self.service.held.lock().unwrap_or_else(PoisonError::into_inner);
        if held.get(&self.key).is_some_and(|h| Arc::ptr_eq(h, &self.holder)) {
            held.remove(&self.key);
        }
        drop(held);
        self.holder.released.store(true, Ordering::Release);
        self.holder.release.notify_waiters();
    }
}

/// The agent's resumption service.
pub struct Resumption {
    store: Box<dyn Store>,
    /// The sessions of this replica that hold a token, by its hash.
    held: Mutex<HashMap<ConversationKey, Arc<Holder>>>,
    cipher: Cipher,
    window: Duration,
    max_bytes: usize,
    /// How long a resumption waits for the session it takes over from: that session's save in
    /// flight and its last one (each bounded by the store's timeout), and the moment it takes
    /// to notice. Past this the resumption goes on with what the store has.
    handover_wait: Duration,
    prefix: String,
    random: SystemRandom,
    metrics: Arc<Metrics>,
}

impl Resumption {
    /// The service the configuration asks for (`None` when resumption is off).
    pub fn new(config: &ResumeConfig, metrics: Arc<Metrics>) -> Result<Option<Arc<Self>>, String> {
        if !config.enabled {
            return Ok(None);
        }
        let cipher = match &config.encryption_key_file {
            Some(path) => Cipher::from_key_file(path)?,
            None => Cipher::plain(),
        };
        let (store, prefix, save_limit): (Box<dyn Store>, String, Duration) = match (config.store, &config.redis) {
            (ResumeStore::Redis, Some(redis)) => (
                Box::new(RedisStore::new(redis)?),
                redis.key_prefix.clone(),
                redis.timeout,
            ),
            (ResumeStore::Redis, None) => return Err("session.resume.redis is required with store: Redis".into()),
            (ResumeStore::Memory, _) => (Box::new(MemoryStore::default()), String::new(), Duration::ZERO),
        };
        Ok(Some(Arc::new(Self {
            store,
            held: Mutex::default(),
            cipher,
            window: config.window,
            max_bytes: config.max_state_bytes,
            handover_wait: save_limit * 2 + HANDOVER_NOTICE,
            prefix,
            random: SystemRandom::new(),
            metrics,
        })))
    }

    pub fn window(&self) -> Duration {
        self.window
    }

    pub fn max_bytes(&self) -> usize {
        self.max_bytes
    }

    /// Whether a conversation can be resumed on other replicas (and after a crash).
    pub fn shared(&self) -> bool {
        self.store.shared()
    }

    /// A new token.
    pub fn token(&self) -> ResumeToken {
        let mut bytes = [0u8; 32];
        if self.random.fill(&mut bytes).is_err() {
            // The system's randomness failed: a token from a fresh UUID's randomness instead
            // (122 random bits) is still unguessable.
            bytes[..16].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
            bytes[16..].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
        }
        ResumeToken(URL_SAFE_NO_PAD.encode(bytes))
    }

    /// A session holds `token` on this replica until the hold is dropped, after its last save;
    /// `stop` ends the session (a resumption elsewhere cancels it).
    pub fn hold(self: &Arc<Self>, token: &ResumeToken, subject: Option<String>, stop: CancellationToken) -> Hold {
        let key = token.key();
        let holder = Arc::new(Holder {
            subject,
            stop,
            superseded: AtomicBool::new(false),
            released: AtomicBool::new(false),
            release: Notify::new(),
        });
        self.held
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(key, holder.clone());
        Hold {
            service: self.clone(),
            key,
            holder,
        }
    }

    /// If a session of this replica still holds the conversation, for the same caller: ends it
    /// and waits for its last save.
    async fn take_over(&self, key: ConversationKey, subject: Option<&str>) {
        let holder = self
            .held
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&key)
            .cloned();
        // A token presented by another caller ends nothing: the store refuses it.
        let Some(holder) = holder.filter(|h| h.subject.as_deref() == subject) else {
            return;
        };
        // Listening before the session can end: its release is not missed.
        let released = holder.release.notified();
        tokio::pin!(released);
        released.as_mut().enable();
        holder.superseded.store(true, Ordering::Release);
        holder.stop.cancel();
        if !holder.released.load(Ordering::Acquire) && tokio::time::timeout(self.handover_wait, released).await.is_err()
        {
            tracing::warn!("the session being resumed did not save its conversation in time");
        }
    }

    /// The store's key for a conversation: the store never holds a usable token.
    fn store_key(&self, key: ConversationKey) -> String {
        let mut text = self.prefix.clone();
        for byte in key.0 {
            text.push_str(&format!("{byte:02x}"));
        }
        text
    }

    /// Saves the state of a conversation under `key` for `ttl`; with `replace_only`, only
    /// over an earlier save (a conversation resumed elsewhere is not written back). A store
    /// that is down or slow costs the write, never the call: the failure is counted. Whether
    /// the state was written.
    pub async fn save(
        &self,
        key: ConversationKey,
        mut state: ConversationState,
        ttl: Duration,
        replace_only: bool,
    ) -> bool {
        let started = Instant::now();
        state.saved_at = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let key = self.store_key(key);
        let result = match serde_json::to_vec(&state) {
            Ok(plain) => match self.cipher.seal(&key, &plain) {
                Ok(blob) => self.store.put(&key, blob, ttl, replace_only).await,
                Err(error) => Err(StoreError::Unavailable(error)),
            },
            Err(error) => Err(StoreError::Unavailable(error.to_string())),
        };
        self.metrics
            .observe_resume_store("save", started.elapsed(), result.is_ok());
        match result {
            Ok(written) => written,
            Err(error) => {
                tracing::warn!(%error, "conversation state not saved");
                false
            }
        }
    }

    /// Takes the conversation a token stands for, for `subject`, after the session holding it
    /// on this replica (if any) has ended and saved it. The token is spent whatever the outcome.
    pub async fn take(&self, token: &str, subject: Option<&str>) -> Result<ConversationState, ResumeRefusal> {
        // A token is 43 base64url characters; anything else was never offered.
        if token.len() != 43
            || !token
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(self.refused(ResumeRefusal::Expired));
        }
        let key = ConversationKey::of(token);
        self.take_over(key, subject).await;
        let started = Instant::now();
        let key = self.store_key(key);
        let taken = self.store.take(&key).await;
        self.metrics
            .observe_resume_store("take", started.elapsed(), taken.is_ok());
        let blob = match taken {
            Ok(Some(blob)) => blob,
            Ok(None) => return Err(self.refused(ResumeRefusal::Expired)),
            Err(error) => {
                tracing::warn!(%error, "resumption store unavailable");
                return Err(self.refused(ResumeRefusal::Unavailable));
            }
        };
        let state = match self.cipher.open(&key, &blob) {
            Ok(plain) => serde_json::from_slice::<ConversationState>(&plain)
                .ok()
                .filter(|s| s.version == STATE_VERSION),
            Err(why) => {
                tracing::warn!(why, "stored conversation state refused");
                None
            }
        };
        let Some(state) = state else {
            return Err(self.refused(ResumeRefusal::Corrupt));
        };
        if state.subject.as_deref() != subject {
            return Err(self.refused(ResumeRefusal::Foreign));
        }
        self.metrics.count_resumption("resumed");
        Ok(state)
    }

    fn refused(&self, refusal: ResumeRefusal) -> ResumeRefusal {
        self.metrics.count_resumption(refusal.as_str());
        refusal
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service() -> Arc<Resumption> {
        let metrics = Arc::new(Metrics::register(&mut prometheus_client::registry::Registry::default()));
        Resumption::new(&ResumeConfig::default(), metrics)
            .expect("the default configuration")
            .expect("resumption is on by default")
    }

    /// A live session of `subject` holding a new conversation: its token, its stop signal, its hold.
    fn held(service: &Arc<Resumption>, subject: Option<&str>) -> (ResumeToken, CancellationToken, Hold) {
        let token = service.token();
        let stop = CancellationToken::new();
        let hold = service.hold(&token, subject.map(str::to_owned), stop.clone());
        (token, stop, hold)
    }

    fn state(text: &str) -> ConversationState {
        let mut state = ConversationState::new("first".into(), Some("alice".into()), Arc::default());
        state.push(Role::User, text, 4096);
        state
    }

    #[tokio::test]
    async fn a_resumption_takes_over_from_the_session_holding_the_conversation_after_its_last_save() {
        let service = service();
        let (token, stop, hold) = held(&service, Some("alice"));
        // The session has said something but saved nothing yet.
        let taking = tokio::spawn({
            let service = service.clone();
            let token = token.as_str().to_owned();
            async move { service.take(&token, Some("alice")).await }
        });
        tokio::time::timeout(Duration::from_secs(5), stop.cancelled())
            .await
            .expect("the holding session is told to stop");
        assert!(hold.superseded());
        assert!(!taking.is_finished(), "the resumption waits for the last save");
        assert!(
            service
                .save(token.key(), state("my order is 4711"), service.window(), false)
                .await
        );
        drop(hold);
        let taken = taking.await.expect("the take").expect("the conversation");
        assert_eq!(taken.history[0].text, "my order is 4711");
        assert!(service.held.lock().expect("the lock").is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_session_that_does_not_let_go_delays_a_resumption_only_so_long() {
        let service = service();
        let (token, stop, _stuck) = held(&service, Some("alice"));
        assert!(
            service
                .save(token.key(), state("earlier"), service.window(), false)
                .await
        );
        let started = Instant::now();
        let taken = service.take(token.as_str(), Some("alice")).await;
        assert!(stop.is_cancelled());
        assert_eq!(started.elapsed(), HANDOVER_NOTICE, "the in-process store saves at once");
        assert_eq!(taken.expect("what the store has").history[0].text, "earlier");
    }

    #[tokio::test]
    async fn a_token_of_another_caller_ends_nothing() {
        let service = service();
        let (token, stop, hold) = held(&service, Some("alice"));
        assert!(service.save(token.key(), state("hello"), service.window(), false).await);
        let refused = service.take(token.as_str(), Some("mallory")).await;
        assert_eq!(refused.err(), Some(ResumeRefusal::Foreign));
        assert!(!stop.is_cancelled(), "the live session goes on");
        assert!(!hold.superseded());
    }

    #[tokio::test]
    async fn without_a_session_holding_it_the_store_answers_at_once() {
        let service = service();
        let (token, _, hold) = held(&service, None);
        assert!(service.save(token.key(), state("hello"), service.window(), false).await);
        drop(hold);
        let taken = tokio::time::timeout(Duration::from_millis(500), service.take(token.as_str(), Some("alice")))
            .await
            .expect("no wait");
        assert_eq!(taken.map(|s| s.conversation_id), Ok("first".to_owned()));
    }
}
