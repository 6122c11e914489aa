//! Static bearer tokens from a file, one per line, re-read when the file changes.

use std::path::PathBuf;
use std::sync::RwLock;
use std::time::{Duration, Instant, SystemTime};

use tracing::{info, warn};

/// The file's metadata is looked at no more often than this (a Secret rotation shows up within
/// about a second; a handshake flood does not turn into a stat flood).
const RECHECK_INTERVAL: Duration = Duration::from_secs(1);

pub struct TokenStore {
    path: PathBuf,
    state: RwLock<State>,
}

struct State {
    tokens: Vec<Vec<u8>>,
    stamp: Option<(SystemTime, u64)>,
    checked: Option<Instant>,
}

impl TokenStore {
    pub fn new(path: PathBuf) -> Self {
        let store = Self {
            path,
            state: RwLock::new(State {
                tokens: Vec::new(),
                stamp: None,
                checked: None,
            }),
        };
        store.refresh();
        store
    }

    /// Who the token belongs to (`token-<line>`), if it is accepted. Compares in constant time
    /// against every token, so timing reveals neither the token nor which one matched.
    pub fn verify(&self, presented: &str) -> Option<String> {
        self.refresh();
        let state = self.state.read().unwrap_or_else(|p| p.into_inner());
        let mut matched = None;
        for (index, token) in state.tokens.iter().enumerate() {
            if constant_time_eq(token, presented.as_bytes()) {
                matched = Some(index);
            }
        }
        matched.map(|index| format!("token-{}", index + 1))
    }

    pub fn len(&self) -> usize {
        self.state.read().unwrap_or_else(|p| p.into_inner()).tokens.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn refresh(&self) {
        {
            let state = self.state.read().unwrap_or_else(|p| p.into_inner());
            if state.checked.is_some_and(|at| at.elapsed() < RECHECK_INTERVAL) {
                return;
            }
        }
        let mut state = self.state.write().unwrap_or_else(|p| p.into_inner());
        state.checked = Some(Instant::now());
        let stamp = std::fs::metadata(&self.path)
            .ok()
            .and_then(|m| Some((m.modified().ok()?, m.len())));
        if stamp.is_some() && stamp == state.stamp {
            return;
        }
        match std::fs::read_to_string(&self.path) {
            Ok(text) => {
                state.tokens = text
                    .lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty() && !l.starts_with('#'))
                    .map(|l| l.as_bytes().to_vec())
                    .collect();
                state.stamp = stamp;
                info!(path = %self.path.display(), tokens = state.tokens.len(), "access tokens loaded");
            }
            Err(error) => {
                // Keep the tokens we had: a file briefly missing during a Secret update must not
                // lock everyone out.
                warn!(path = %self.path.display(), %error, "cannot read the access token file");
            }
        }
    }
}

/// Equality whose running time depends only on the lengths, not on where the bytes differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut difference = a.len() ^ b.len();
    for i in 0..a.len().max(b.len()) {
        difference |= usize::from(a.get(i).copied().unwrap_or(0) ^ b.get(i).copied().unwrap_or(0));
    }
    difference == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_time_equality_is_equality() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
        assert!(!constant_time_eq(b"", b"a"));
        assert!(constant_time_eq(b"", b""));
    }

    #[test]
    fn accepts_listed_tokens_and_reloads_the_file() {
        let dir = std::env::temp_dir().join(format!("va-tokens-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("tokens");
        std::fs::write(&path, "# callers\nalpha\n\nbeta\n").expect("write");
        let store = TokenStore::new(path.clone());
        assert_eq!(store.verify("alpha").as_deref(), Some("token-1"));
        assert_eq!(store.verify("beta").as_deref(), Some("token-2"));
        assert_eq!(store.verify("gamma"), None);
        assert_eq!(store.verify(""), None);
        std::thread::sleep(RECHECK_INTERVAL + Duration::from_millis(50));
        std::fs::write(&path, "gamma-rotated\n").expect("rotate");
        std::thread::sleep(RECHECK_INTERVAL + Duration::from_millis(50));
        assert_eq!(store.verify("alpha"), None, "the old token is gone after rotation");
        assert_eq!(store.verify("gamma-rotated").as_deref(), Some("token-1"));
        let _ = std::fs::remove_dir_all(dir);
    }
}
