//! Resumable sessions: how long a dropped conversation can be picked up again, and where its
//! state is kept (in the process, or in Redis/Valkey so that any replica can resume it).

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::ConfigError;

/// `session.resume`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ResumeConfig {
    /// Whether sessions offer a resume token at all.
    #[serde(default = "default_enabled")]
    pub enabled: bool,
    /// How long after a session ends it can be resumed.
    #[serde(default = "default_window", with = "humantime_serde")]
    pub window: Duration,
    /// Where conversation state is kept.
    #[serde(default)]
    pub store: ResumeStore,
    /// Redis (or Valkey) for the `Redis` store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redis: Option<RedisConfig>,
    /// File holding the 32-byte AES-256-GCM key that encrypts stored state (raw, hex or
    /// base64). Required with Redis: conversations are personal data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption_key_file: Option<PathBuf>,
    /// Largest stored state of one conversation (bytes); the oldest turns are dropped first.
    #[serde(default = "default_max_state_bytes")]
    pub max_state_bytes: usize,
}

impl Default for ResumeConfig {
    fn default() -> Self {
        Self {
            enabled: default_enabled(),
            window: default_window(),
            store: ResumeStore::default(),
            redis: None,
            encryption_key_file: None,
            max_state_bytes: default_max_state_bytes(),
        }
    }
}

/// Where conversation state is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
pub enum ResumeStore {
    /// In this process: a conversation resumes on the same replica (network blips, reloads).
    #[default]
    Memory,
    /// In Redis or Valkey: a conversation resumes on any replica, and survives a crash.
    Redis,
}

/// How to reach Redis or Valkey.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RedisConfig {
    /// `redis://host:6379/0` or `rediss://host:6380/0` (TLS). Credentials do not go here.
    pub url: String,
    /// Extra PEM CA certificates to trust for `rediss://`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// File holding the ACL user name (Redis 6+), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username_file: Option<PathBuf>,
    /// File holding the password (AUTH), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_file: Option<PathBuf>,
    /// Prefix of every key the agent writes.
    #[serde(default = "default_key_prefix")]
    pub key_prefix: String,
    /// Longest a store operation may take; a slower one is dropped (and counted), never waited
    /// for by a call.
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
}

fn default_enabled() -> bool {
    true
}
fn default_window() -> Duration {
    Duration::from_secs(120)
}
fn default_max_state_bytes() -> usize {
    64 * 1024
}
pub fn default_key_prefix() -> String {
    "voice-agent:resume:".into()
}
pub fn default_timeout() -> Duration {
    Duration::from_millis(500)
}

impl ResumeConfig {
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |field, message: &str| {
            Err(ConfigError::Invalid {
                field,
                message: message.to_owned(),
            })
        };
        if self.window < Duration::from_secs(1) || self.window > Duration::from_secs(24 * 3600) {
            return invalid("session.resume.window", "must be between 1s and 24h");
        }
        if !(4096..=4 * 1024 * 1024).contains(&self.max_state_bytes) {
            return invalid("session.resume.maxStateBytes", "must be between 4096 and 4194304");
        }
        match (self.store, &self.redis) {
            (ResumeStore::Redis, None) => {
                return invalid("session.resume.redis", "is required with store: Redis");
            }
            (ResumeStore::Memory, Some(_)) => {
                return invalid("session.resume.redis", "is only used with store: Redis");
            }
            _ => {}
        }
        if let Some(redis) = &self.redis {
            if !(redis.url.starts_with("redis://") || redis.url.starts_with("rediss://")) {
                return invalid("session.resume.redis.url", "must start with redis:// or rediss://");
            }
            if redis.url.split_once("://").is_some_and(|(_, rest)| rest.contains('@')) {
                return invalid(
                    "session.resume.redis.url",
                    "must not hold credentials; use usernameFile and passwordFile",
                );
            }
            if redis.timeout < Duration::from_millis(10) || redis.timeout > Duration::from_secs(10) {
                return invalid("session.resume.redis.timeout", "must be between 10ms and 10s");
            }
            if self.encryption_key_file.is_none() {
                return invalid(
                    "session.resume.encryptionKeyFile",
                    "is required with store: Redis (conversations are stored encrypted)",
                );
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn redis(url: &str) -> RedisConfig {
        RedisConfig {
            url: url.into(),
            ca_file: None,
            username_file: None,
            password_file: None,
            key_prefix: default_key_prefix(),
            timeout: default_timeout(),
        }
    }

    #[test]
    fn the_default_resumes_in_memory_for_two_minutes() {
        let config = ResumeConfig::default();
        config.validate().expect("valid");
        assert!(config.enabled);
        assert_eq!(config.store, ResumeStore::Memory);
        assert_eq!(config.window, Duration::from_secs(120));
    }

    #[test]
    fn redis_needs_its_settings_an_encryption_key_and_no_credentials_in_the_url() {
        let cases = [
            (
                ResumeConfig {
                    store: ResumeStore::Redis,
                    ..ResumeConfig::default()
                },
                "session.resume.redis",
            ),
            (
                ResumeConfig {
                    store: ResumeStore::Redis,
                    redis: Some(redis("redis://127.0.0.1:6379")),
                    ..ResumeConfig::default()
                },
                "session.resume.encryptionKeyFile",
            ),
            (
                ResumeConfig {
                    store: ResumeStore::Redis,
                    redis: Some(redis("redis://user:secret@127.0.0.1:6379")),
                    encryption_key_file: Some("/k".into()),
                    ..ResumeConfig::default()
                },
                "session.resume.redis.url",
            ),
            (
                ResumeConfig {
                    store: ResumeStore::Redis,
                    redis: Some(redis("http://127.0.0.1")),
                    encryption_key_file: Some("/k".into()),
                    ..ResumeConfig::default()
                },
                "session.resume.redis.url",
            ),
        ];
        for (config, field) in cases {
            let message = config.validate().expect_err(field).to_string();
            assert!(message.contains(field), "{message}");
            assert!(!message.contains("secret"), "{message}");
        }
        let good = ResumeConfig {
            store: ResumeStore::Redis,
            redis: Some(redis("rediss://cache.example:6380/0")),
            encryption_key_file: Some("/k".into()),
            ..ResumeConfig::default()
        };
        good.validate().expect("valid");
    }
}
