//! Where conversation state waits for its caller: in this process, or in Redis/Valkey. Each
//! key is written with a time to live and taken exactly once (read and deleted atomically), so
//! a resume token works once.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::time::Instant;
use voice_config::RedisConfig;

/// Total bytes the in-process store holds; the entries closest to expiry go first when a new
/// one would not fit. 128 MiB is two thousand conversations at the default 64 KiB bound.
const MEMORY_STORE_BYTES: usize = 128 * 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    #[error("the store did not answer in time")]
    Timeout,
    #[error("the store is unavailable: {0}")]
    Unavailable(String),
}

/// Keeps blobs for a while and hands each out once.
pub trait Store: Send + Sync {
    /// Writes `value` under `key` for `ttl`; with `replace_only`, only if the key still exists
    /// (so a conversation resumed elsewhere, whose key was taken, is not written back). Whether
    /// it was written.
    fn put<'a>(
        &'a self,
        key: &'a str,
        value: Vec<u8>,
        ttl: Duration,
        replace_only: bool,
    ) -> BoxFuture<'a, Result<bool, StoreError>>;
    /// The value under `key`, removed in the same step; `None` when there is none (never
    /// written, taken already, or expired).
    fn take<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Vec<u8>>, StoreError>>;
    /// Whether other replicas see what this one writes.
    fn shared(&self) -> bool;
}

/// State kept in this process.
#[derive(Default)]
pub struct MemoryStore {
    entries: Mutex<Entries>,
}

/// The entries, and the same keys ordered by expiry, so that expired entries and, when the
/// store is full, those closest to expiry are found without a scan: every step is O(log n)
/// however many conversations wait (a pod ending a hundred sessions a second holds twelve
/// thousand at the default two-minute window).
#[derive(Default)]
struct Entries {
    map: HashMap<String, (Vec<u8>, Instant)>,
    by_expiry: BTreeSet<(Instant, String)>,
    bytes: usize,
}

impl Entries {
    fn remove(&mut self, key: &str) -> Option<(Vec<u8>, Instant)> {
        let removed = self.map.remove(key)?;
        self.by_expiry.remove(&(removed.1, key.to_owned()));
        self.bytes -= removed.0.len();
        Some(removed)
    }

    fn insert(&mut self, key: &str, value: Vec<u8>, until: Instant) {
        self.bytes += value.len();
        self.by_expiry.insert((until, key.to_owned()));
        self.map.insert(key.to_owned(), (value, until));
    }

    /// Removes the entry closest to expiry (expired or not); false when there is none.
    fn remove_first(&mut self) -> bool {
        let Some((_, key)) = self.by_expiry.first().cloned() else {
            return false;
        };
        self.remove(&key);
        true
    }

    /// Removes every entry expired at `now`.
    fn expire(&mut self, now: Instant) {
        while self.by_expiry.first().is_some_and(|(until, _)| *until <= now) {
            self.remove_first();
        }
    }
}

impl MemoryStore {
    fn entries(&self) -> std::sync::MutexGuard<'_, Entries> {
        // Nothing panics while holding the lock; the data stays consistent regardless.
        self.entries.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Store for MemoryStore {
    fn put<'a>(
        &'a self,
        key: &'a str,
        value: Vec<u8>,
        ttl: Duration,
        replace_only: bool,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        let now = Instant::now();
        let mut entries = self.entries();
        let existed = entries.remove(key).is_some_and(|(_, until)| until > now);
        if replace_only && !existed {
            return Box::pin(std::future::ready(Ok(false)));
        }
        entries.expire(now);
        while entries.bytes + value.len() > MEMORY_STORE_BYTES && entries.remove_first() {}
        entries.insert(key, value, now + ttl);
        Box::pin(std::future::ready(Ok(true)))
    }

    fn take<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Vec<u8>>, StoreError>> {
        let now = Instant::now();
        let mut entries = self.entries();
        let taken = entries
            .remove(key)
            .filter(|(_, until)| *until > now)
            .map(|(value, _)| value);
        entries.expire(now);
        Box::pin(std::future::ready(Ok(taken)))
    }

    fn shared(&self) -> bool {
        false
    }
}

/// State kept in Redis or Valkey. The connection is made on first use and remade after
/// failures, so the agent starts, and calls go on, while Redis is down.
pub struct RedisStore {
    client: redis::Client,
    manager: tokio::sync::Mutex<Option<redis::aio::ConnectionManager>>,
    timeout: Duration,
}

impl RedisStore {
    pub fn new(config: &RedisConfig) -> Result<Self, String> {
        use redis::IntoConnectionInfo as _;
        let read = |path: &std::path::Path, what: &str| {
            std::fs::read_to_string(path)
                .map(|s| s.trim().to_owned())
                .map_err(|e| format!("cannot read the Redis {what} file {}: {e}", path.display()))
        };
        let mut info = config
            .url
            .as_str()
            .into_connection_info()
            .map_err(|e| format!("session.resume.redis.url: {e}"))?;
        let mut settings = info.redis_settings().clone();
        if let Some(path) = &config.username_file {
            settings = settings.set_username(read(path, "username")?);
        }
        if let Some(path) = &config.password_file {
            settings = settings.set_password(read(path, "password")?);
        }
        info = info.set_redis_settings(settings);
        let client = match &config.ca_file {
            Some(path) => {
                let root_cert = std::fs::read(path)
                    .map_err(|e| format!("cannot read the Redis CA file {}: {e}", path.display()))?;
                redis::Client::build_with_tls(
                    info,
                    redis::TlsCertificates {
                        client_tls: None,
                        root_cert: Some(root_cert),
                    },
                )
            }
            None => redis::Client::open(info),
        }
        .map_err(|e| format!("session.resume.redis: {e}"))?;
        Ok(Self {
            client,
            manager: tokio::sync::Mutex::new(None),
            timeout: config.timeout,
        })
    }

    /// The connection, made now if there is none.
    async fn connection(&self) -> Result<redis::aio::ConnectionManager, StoreError> {
        let mut manager = self.manager.lock().await;
        if let Some(manager) = manager.as_ref() {
            return Ok(manager.clone());
        }
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(self.timeout))
            .set_number_of_retries(1);
        let made = tokio::time::timeout(self.timeout, self.client.get_connection_manager_with_config(config))
            .await
            .map_err(|_| StoreError::Timeout)?
            .map_err(|e| StoreError::Unavailable(e.to_string()))?;
        *manager = Some(made.clone());
        Ok(made)
    }

    async fn run<T: redis::FromRedisValue>(&self, command: redis::Cmd) -> Result<T, StoreError> {
        let attempt = async {
            let mut connection = self.connection().await?;
            command
                .query_async::<T>(&mut connection)
                .await
                .map_err(|e| StoreError::Unavailable(e.to_string()))
        };
        tokio::time::timeout(self.timeout, attempt)
            .await
            .map_err(|_| StoreError::Timeout)?
    }
}

impl Store for RedisStore {
    fn put<'a>(
        &'a self,
        key: &'a str,
        value: Vec<u8>,
        ttl: Duration,
        replace_only: bool,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        let mut command = redis::cmd("SET");
        command
            .arg(key)
            .arg(value)
            .arg("PX")
            .arg(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1));
        if replace_only {
            command.arg("XX");
        }
        // `OK` when written, nil when XX found no key.
        Box::pin(async move { Ok(self.run::<Option<String>>(command).await?.is_some()) })
    }

    fn take<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Vec<u8>>, StoreError>> {
        let mut command = redis::cmd("GETDEL");
        command.arg(key);
        Box::pin(async move { self.run::<Option<Vec<u8>>>(command).await })
    }

    fn shared(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn memory_entries_are_taken_once_and_expire() {
        let store = MemoryStore::default();
        assert!(
            !store
                .put("a", b"zero".to_vec(), Duration::from_secs(60), true)
                .await
                .expect("put"),
            "replace_only needs an entry"
        );
        store
            .put("a", b"one".to_vec(), Duration::from_secs(60), false)
            .await
            .expect("put");
        assert_eq!(store.take("a").await.expect("take"), Some(b"one".to_vec()));
        assert_eq!(store.take("a").await.expect("take"), None, "once");
        store
            .put("b", b"two".to_vec(), Duration::from_millis(1), false)
            .await
            .expect("put");
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert_eq!(store.take("b").await.expect("take"), None, "expired");
        assert_eq!(store.entries().bytes, 0);
    }

    #[tokio::test]
    async fn expired_entries_are_let_go_of_without_being_asked_for() {
        let store = MemoryStore::default();
        for n in 0..1000 {
            store
                .put(&format!("gone-{n}"), vec![0; 100], Duration::from_millis(20), false)
                .await
                .expect("put");
        }
        store
            .put("kept", b"kept".to_vec(), Duration::from_secs(60), false)
            .await
            .expect("put");
        tokio::time::sleep(Duration::from_millis(50)).await;
        // Any later step lets go of what expired: the next conversation's save here.
        store
            .put("next", b"next".to_vec(), Duration::from_secs(60), false)
            .await
            .expect("put");
        let entries = store.entries();
        assert_eq!(entries.map.len(), 2);
        assert_eq!(entries.by_expiry.len(), 2);
        assert_eq!(entries.bytes, 8);
    }

    #[tokio::test]
    async fn a_full_store_lets_go_of_the_entries_closest_to_expiry() {
        let store = MemoryStore::default();
        let big = MEMORY_STORE_BYTES / 4;
        for (key, ttl) in [("late", 400), ("soon", 100), ("middle", 200), ("later", 300)] {
            store
                .put(key, vec![0; big], Duration::from_secs(ttl), false)
                .await
                .expect("put");
        }
        store
            .put("new", vec![0; 16], Duration::from_secs(500), false)
            .await
            .expect("put");
        assert_eq!(store.take("soon").await.expect("take"), None, "evicted first");
        for key in ["middle", "later", "late", "new"] {
            assert!(store.take(key).await.expect("take").is_some(), "{key} kept");
        }
        assert_eq!(store.entries().bytes, 0);
    }

    #[tokio::test]
    async fn a_rewritten_entry_keeps_one_expiry() {
        let store = MemoryStore::default();
        for ttl in [10, 20, 30] {
            store
                .put("a", vec![1; 10], Duration::from_secs(ttl), false)
                .await
                .expect("put");
        }
        let entries = store.entries();
        assert_eq!((entries.map.len(), entries.by_expiry.len(), entries.bytes), (1, 1, 10));
    }
}
