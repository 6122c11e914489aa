//! Conversation state at rest: AES-256-GCM with a random nonce per write, the store key as
//! associated data (a blob copied under another key does not decrypt), and a format byte so
//! that state from another version is refused, never misread.

use std::path::Path;

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use base64::Engine as _;

/// First byte of an encrypted blob: this format, version 1.
const SEALED_V1: u8 = 0xA1;
/// First byte of a plain blob (the in-process store without a key).
const PLAIN_V1: u8 = 0x01;

/// Seals and opens stored state; without a key, blobs are only framed.
pub struct Cipher {
    key: Option<LessSafeKey>,
    random: SystemRandom,
}

impl Cipher {
    pub fn plain() -> Self {
        Self {
            key: None,
            random: SystemRandom::new(),
        }
    }

    /// The key from a file: 32 bytes raw, or as 64 hex digits, or as base64 (what
    /// `openssl rand -base64 32` prints).
    pub fn from_key_file(path: &Path) -> Result<Self, String> {
        let bytes = std::fs::read(path)
            .map_err(|e| format!("cannot read the resume encryption key {}: {e}", path.display()))?;
        let key = parse_key(&bytes).ok_or_else(|| {
            format!(
                "the resume encryption key {} must hold 32 bytes (raw, 64 hex digits or base64)",
                path.display()
            )
        })?;
        let unbound = UnboundKey::new(&AES_256_GCM, &key).map_err(|_| "invalid AES-256 key".to_owned())?;
        Ok(Self {
            key: Some(LessSafeKey::new(unbound)),
            random: SystemRandom::new(),
        })
    }

    pub fn encrypts(&self) -> bool {
        self.key.is_some()
    }

    /// `plaintext` sealed for `key_name` (the store key it is written under).
    pub fn seal(&self, key_name: &str, plaintext: &[u8]) -> Result<Vec<u8>, String> {
        let Some(key) = &self.key else {
            let mut blob = Vec::with_capacity(1 + plaintext.len());
            blob.push(PLAIN_V1);
            blob.extend_from_slice(plaintext);
            return Ok(blob);
        };
        let mut nonce = [0u8; NONCE_LEN];
        self.random
            .fill(&mut nonce)
            .map_err(|_| "no randomness for a nonce".to_owned())?;
        let mut sealed = plaintext.to_vec();
        key.seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(key_name.as_bytes()),
            &mut sealed,
        )
        .map_err(|_| "encryption failed".to_owned())?;
        let mut blob = Vec::with_capacity(1 + NONCE_LEN + sealed.len());
        blob.push(SEALED_V1);
        blob.extend_from_slice(&nonce);
        blob.extend_from_slice(&sealed);
        Ok(blob)
    }

    /// The plaintext of a blob read under `key_name`, or why it cannot be read (another format,
    /// another key, tampering).
    pub fn open(&self, key_name: &str, blob: &[u8]) -> Result<Vec<u8>, &'static str> {
        match (blob.split_first(), &self.key) {
            (Some((&SEALED_V1, rest)), Some(key)) => {
                if rest.len() < NONCE_LEN {
                    return Err("truncated");
                }
                let (nonce, sealed) = rest.split_at(NONCE_LEN);
                let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| "truncated")?;
                let mut buffer = sealed.to_vec();
                let plain = key
                    .open_in_place(nonce, Aad::from(key_name.as_bytes()), &mut buffer)
                    .map_err(|_| "does not decrypt with this key")?;
                Ok(plain.to_vec())
            }
            (Some((&SEALED_V1, _)), None) => Err("encrypted, and no key is configured"),
            (Some((&PLAIN_V1, rest)), None) => Ok(rest.to_vec()),
            (Some((&PLAIN_V1, _)), Some(_)) => Err("not encrypted, and a key is configured"),
            _ => Err("an unknown format"),
        }
    }
}

fn parse_key(bytes: &[u8]) -> Option<[u8; 32]> {
    if let Ok(raw) = <[u8; 32]>::try_from(bytes) {
        return Some(raw);
    }
    let text = std::str::from_utf8(bytes).ok()?.trim();
    let decoded = if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
        (0..32)
            .map(|i| u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok())
            .collect::<Option<Vec<u8>>>()?
    } else {
        base64::engine::general_purpose::STANDARD.decode(text).ok()?
    };
    <[u8; 32]>::try_from(decoded.as_slice()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keyed(key: &str) -> Cipher {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("key");
        std::fs::write(&path, key).expect("write");
        Cipher::from_key_file(&path).expect("key")
    }

    #[test]
    fn sealed_state_opens_only_with_the_same_key_and_name() {
        let cipher = keyed(&"ab".repeat(32));
        let blob = cipher.seal("k1", b"the caller said hello").expect("seal");
        assert!(!blob.windows(5).any(|w| w == b"hello"), "no plaintext at rest");
        assert_eq!(cipher.open("k1", &blob).expect("open"), b"the caller said hello");
        assert!(cipher.open("k2", &blob).is_err(), "bound to its key name");
        let other = keyed("MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=");
        assert!(other.open("k1", &blob).is_err(), "another key");
        let mut tampered = blob.clone();
        if let Some(last) = tampered.last_mut() {
            *last ^= 1;
        }
        assert!(cipher.open("k1", &tampered).is_err(), "tampered");
        assert!(Cipher::plain().open("k1", &blob).is_err(), "a keyless reader");
        assert!(cipher.open("k1", b"").is_err() && cipher.open("k1", &[0xA1, 1, 2]).is_err());
    }

    #[test]
    fn keys_are_read_raw_hex_or_base64_and_bad_ones_refused() {
        assert!(parse_key(&[7u8; 32]).is_some());
        assert!(parse_key("0f".repeat(32).as_bytes()).is_some());
        assert!(parse_key(b"MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=\n").is_some());
        assert!(parse_key(b"too short").is_none());
        assert!(parse_key(&[7u8; 31]).is_none());
    }
}
