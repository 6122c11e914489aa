//! How each carrier signs its requests, and how the agent signs the stream URLs it hands out.
//! Pure functions over bytes and times, so every case is tested without a socket.
//!
//! - Twilio: `X-Twilio-Signature` = base64(HMAC-SHA1(auth token, URL + each POST parameter's
//!   name and value, sorted by name)).
//! - Telnyx: `telnyx-signature-ed25519` = base64(Ed25519 signature of `"{telnyx-timestamp}|{body}"`)
//!   under the account's public key, and the timestamp recent.
//! - Vonage: `Authorization: Bearer <JWT>`, HS256 with the signature secret, its `iat` recent and
//!   its `payload_hash` the SHA-256 of the body.
//! - Stream tokens (ours): `exp` and `sig` query parameters, `sig` = base64url(HMAC-SHA256(secret,
//!   path + the other parameters, sorted)), so a stream URL cannot be altered, forged or used
//!   after it expires.

use std::time::Duration;

use aws_lc_rs::{digest, hmac, signature};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};

/// Why a signed request is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureError {
    /// No signature where the carrier always sends one.
    Missing,
    /// A signature that does not verify (wrong secret, altered request, garbage).
    Invalid,
    /// A valid signature on a request too old (or too far in the future): a replay.
    Stale,
}

impl SignatureError {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Missing => "unsigned",
            Self::Invalid => "bad_signature",
            Self::Stale => "stale",
        }
    }
}

/// Twilio's signature of a request to `url` with these POST parameters.
#[cfg(test)]
pub fn twilio_signature(auth_token: &str, url: &str, params: &[(String, String)]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, auth_token.as_bytes());
    STANDARD.encode(hmac::sign(&key, twilio_message(url, params).as_bytes()).as_ref())
}

fn twilio_message(url: &str, params: &[(String, String)]) -> String {
    let mut sorted: Vec<&(String, String)> = params.iter().collect();
    sorted.sort();
    let mut message = url.to_owned();
    for (name, value) in sorted {
        message.push_str(name);
        message.push_str(value);
    }
    message
}

/// Checks `X-Twilio-Signature` against any of the URLs the request may have been signed for.
pub fn verify_twilio(
    auth_token: &str,
    urls: &[String],
    params: &[(String, String)],
    header: Option<&str>,
) -> Result<(), SignatureError> {
    let header = header.ok_or(SignatureError::Missing)?;
    let given = STANDARD.decode(header.trim()).map_err(|_| SignatureError::Invalid)?;
    let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, auth_token.as_bytes());
    let verified = urls
        .iter()
        .any(|url| hmac::verify(&key, twilio_message(url, params).as_bytes(), &given).is_ok());
    if verified { Ok(()) } else { Err(SignatureError::Invalid) }
}

/// Checks Telnyx's Ed25519 signature of `timestamp|body` and the timestamp's age.
pub fn verify_telnyx(
    public_key: &str,
    signature_header: Option<&str>,
    timestamp_header: Option<&str>,
    body: &[u8],
    now: u64,
    tolerance: Duration,
) -> Result<(), SignatureError> {
    let (Some(given), Some(timestamp)) = (signature_header, timestamp_header) else {
        return Err(SignatureError::Missing);
    };
    let key = STANDARD
        .decode(public_key.trim())
        .map_err(|_| SignatureError::Invalid)?;
    let given = STANDARD.decode(given.trim()).map_err(|_| SignatureError::Invalid)?;
    let mut message = Vec::with_capacity(timestamp.len() + 1 + body.len());
    message.extend_from_slice(timestamp.trim().as_bytes());
    message.push(b'|');
    message.extend_from_slice(body);
    signature::UnparsedPublicKey::new(&signature::ED25519, &key)
        .verify(&message, &given)
        .map_err(|_| SignatureError::Invalid)?;
    let timestamp: u64 = timestamp.trim().parse().map_err(|_| SignatureError::Invalid)?;
    fresh(timestamp, now, tolerance)
}

#[derive(serde::Deserialize)]
struct VonageClaims {
    iat: u64,
    payload_hash: Option<String>,
}

/// Checks Vonage's signed JWT (`Authorization: Bearer …`): HS256 with the signature secret, a
/// recent `iat`, and `payload_hash` matching the body when there is one.
pub fn verify_vonage(
    secret: &str,
    authorization: Option<&str>,
    body: &[u8],
    now: u64,
    tolerance: Duration,
) -> Result<(), SignatureError> {
    let token = authorization
        .and_then(|v| {
            v.trim()
                .strip_prefix("Bearer ")
                .or_else(|| v.trim().strip_prefix("bearer "))
        })
        .ok_or(SignatureError::Missing)?;
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
    validation.set_required_spec_claims::<&str>(&[]);
    validation.validate_exp = false;
    let claims = jsonwebtoken::decode::<VonageClaims>(
        token.trim(),
        &jsonwebtoken::DecodingKey::from_secret(secret.trim().as_bytes()),
        &validation,
    )
    .map_err(|_| SignatureError::Invalid)?
    .claims;
    match (&claims.payload_hash, body.is_empty()) {
        (Some(hash), _) if !hash.eq_ignore_ascii_case(&sha256_hex(body)) => return Err(SignatureError::Invalid),
        (None, false) => return Err(SignatureError::Invalid),
        _ => {}
    }
    fresh(claims.iat, now, tolerance)
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    digest::digest(&digest::SHA256, bytes)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn fresh(at: u64, now: u64, tolerance: Duration) -> Result<(), SignatureError> {
    if at.abs_diff(now) > tolerance.as_secs() {
        Err(SignatureError::Stale)
    } else {
        Ok(())
    }
}

/// The query string of a stream URL for `path` carrying `params`, signed and valid until
/// `expires` (Unix seconds).
pub fn sign_stream(secret: &str, path: &str, params: &[(String, String)], expires: u64) -> String {
    let mut pairs: Vec<(String, String)> = params.to_vec();
    pairs.push(("exp".into(), expires.to_string()));
    let sig = stream_mac(secret, path, &pairs);
    pairs.push(("sig".into(), sig));
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

/// Checks a stream URL's signed query (`raw_query`) for `path`.
pub fn verify_stream(
    secret: &str,
    path: &str,
    raw_query: Option<&str>,
    now: u64,
    tolerance: Duration,
) -> Result<(), SignatureError> {
    let mut pairs: Vec<(String, String)> = form_urlencoded::parse(raw_query.unwrap_or_default().as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let Some(index) = pairs.iter().position(|(k, _)| k == "sig") else {
        return Err(SignatureError::Missing);
    };
    let (_, given) = pairs.remove(index);
    if pairs.iter().any(|(k, _)| k == "sig") {
        return Err(SignatureError::Invalid);
    }
    let given = URL_SAFE_NO_PAD.decode(given).map_err(|_| SignatureError::Invalid)?;
    let key = stream_key(secret);
    hmac::verify(&key, stream_message(path, &pairs).as_bytes(), &given).map_err(|_| SignatureError::Invalid)?;
    let expires: u64 = pairs
        .iter()
        .find(|(k, _)| k == "exp")
        .and_then(|(_, v)| v.parse().ok())
        .ok_or(SignatureError::Invalid)?;
    // Valid until it expires, and never for longer than two tolerances (a URL minted with a
    // far-away expiry by a leaked secret of the past is not honoured forever).
    if now > expires || expires > now + 2 * tolerance.as_secs() {
        return Err(SignatureError::Stale);
    }
    Ok(())
}

/// A token binding a call id to an expiry, for carriers whose stream parameters arrive after
/// the upgrade (Twilio's `customParameters`): `"{expires}.{base64url mac}"`.
pub fn call_token(secret: &str, call_id: &str, expires: u64) -> String {
    let pairs = [("call_id".to_owned(), call_id.to_owned())];
    let mac = stream_mac(secret, &format!("call-token:{expires}"), &pairs);
    format!("{expires}.{mac}")
}

/// Checks a [`call_token`] for `call_id`.
pub fn verify_call_token(
    secret: &str,
    call_id: &str,
    token: Option<&str>,
    now: u64,
    tolerance: Duration,
) -> Result<(), SignatureError> {
    let token = token.ok_or(SignatureError::Missing)?;
    let (expires, _) = token.split_once('.').ok_or(SignatureError::Invalid)?;
    let expires: u64 = expires.parse().map_err(|_| SignatureError::Invalid)?;
    let expected = call_token(secret, call_id, expires);
    if !subtle_eq(expected.as_bytes(), token.as_bytes()) {
        return Err(SignatureError::Invalid);
    }
    if now > expires || expires > now + 2 * tolerance.as_secs() {
        return Err(SignatureError::Stale);
    }
    Ok(())
}

fn subtle_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && aws_lc_rs::constant_time::verify_slices_are_equal(a, b).is_ok()
}

fn stream_key(secret: &str) -> hmac::Key {
    hmac::Key::new(hmac::HMAC_SHA256, secret.trim().as_bytes())
}

fn stream_message(path: &str, pairs: &[(String, String)]) -> String {
    let mut sorted: Vec<&(String, String)> = pairs.iter().collect();
    sorted.sort();
    let query = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(sorted)
        .finish();
    format!("voice-agent stream\n{path}\n{query}")
}

fn stream_mac(secret: &str, path: &str, pairs: &[(String, String)]) -> String {
    URL_SAFE_NO_PAD.encode(hmac::sign(&stream_key(secret), stream_message(path, pairs).as_bytes()).as_ref())
}

#[cfg(test)]
mod tests {
    use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};

    use super::*;

    const TOLERANCE: Duration = Duration::from_secs(300);

    fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
        items.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn twilio_signature_matches_twilios_published_example() {
        // The example of Twilio's "Webhooks security" page.
        let params = pairs(&[
            ("CallSid", "CA1234567890ABCDE"),
            ("Caller", "+12349013030"),
            ("Digits", "1234"),
            ("From", "+12349013030"),
            ("To", "+18005551212"),
        ]);
        let url = "https://mycompany.com/myapp.php?foo=1&bar=2";
        assert_eq!(twilio_signature("12345", url, &params), "0/KCTR6DLpKmkAf8muzZqo1nDgQ=");
        let good = twilio_signature("12345", url, &params);
        assert_eq!(verify_twilio("12345", &[url.into()], &params, Some(&good)), Ok(()));
        assert_eq!(
            verify_twilio("wrong", &[url.into()], &params, Some(&good)),
            Err(SignatureError::Invalid)
        );
        let mut altered = params.clone();
        altered[1].1 = "+19999999999".into();
        assert_eq!(
            verify_twilio("12345", &[url.into()], &altered, Some(&good)),
            Err(SignatureError::Invalid)
        );
        assert_eq!(
            verify_twilio("12345", &[url.into()], &params, None),
            Err(SignatureError::Missing)
        );
    }

    #[test]
    fn telnyx_signatures_verify_and_expire() {
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).expect("key");
        let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).expect("pair");
        let public = STANDARD.encode(pair.public_key().as_ref());
        let body = br#"{"data":{"event_type":"call.initiated"}}"#;
        let sign = |ts: &str, body: &[u8]| {
            let mut message = ts.as_bytes().to_vec();
            message.push(b'|');
            message.extend_from_slice(body);
            STANDARD.encode(pair.sign(&message).as_ref())
        };
        let now = 1_800_000_000;
        let good = sign("1800000000", body);
        assert_eq!(
            verify_telnyx(&public, Some(&good), Some("1800000000"), body, now, TOLERANCE),
            Ok(())
        );
        assert_eq!(
            verify_telnyx(&public, Some(&good), Some("1800000000"), b"{}", now, TOLERANCE),
            Err(SignatureError::Invalid)
        );
        let old = sign("1799999000", body);
        assert_eq!(
            verify_telnyx(&public, Some(&old), Some("1799999000"), body, now, TOLERANCE),
            Err(SignatureError::Stale)
        );
        assert_eq!(
            verify_telnyx(&public, Some(&good), Some("1800000001"), body, now, TOLERANCE),
            Err(SignatureError::Invalid),
            "the timestamp is signed too"
        );
        assert_eq!(
            verify_telnyx(&public, None, Some("1800000000"), body, now, TOLERANCE),
            Err(SignatureError::Missing)
        );
    }

    fn vonage_jwt(secret: &str, iat: u64, body: &[u8]) -> String {
        let claims = serde_json::json!({"iat": iat, "jti": "j1", "iss": "Vonage", "payload_hash": sha256_hex(body), "api_key": "k", "application_id": "a"});
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
        )
        .expect("JWT")
    }

    #[test]
    fn vonage_jwts_verify_bind_the_body_and_expire() {
        let now = 1_800_000_000;
        let body = br#"{"status":"answered"}"#;
        let bearer = format!("Bearer {}", vonage_jwt("s3cret", now, body));
        assert_eq!(verify_vonage("s3cret", Some(&bearer), body, now, TOLERANCE), Ok(()));
        assert_eq!(
            verify_vonage("other", Some(&bearer), body, now, TOLERANCE),
            Err(SignatureError::Invalid)
        );
        assert_eq!(
            verify_vonage("s3cret", Some(&bearer), b"{}", now, TOLERANCE),
            Err(SignatureError::Invalid)
        );
        let old = format!("Bearer {}", vonage_jwt("s3cret", now - 3_600, body));
        assert_eq!(
            verify_vonage("s3cret", Some(&old), body, now, TOLERANCE),
            Err(SignatureError::Stale)
        );
        assert_eq!(
            verify_vonage("s3cret", None, body, now, TOLERANCE),
            Err(SignatureError::Missing)
        );
    }

    #[test]
    fn stream_urls_cannot_be_altered_or_reused_late() {
        let now = 1_800_000_000;
        let query = sign_stream(
            "k",
            "/telnyx",
            &pairs(&[("caller", "+1 555"), ("call_id", "v3:x")]),
            now + 60,
        );
        assert_eq!(verify_stream("k", "/telnyx", Some(&query), now, TOLERANCE), Ok(()));
        assert_eq!(
            verify_stream("k", "/vonage", Some(&query), now, TOLERANCE),
            Err(SignatureError::Invalid)
        );
        let altered = query.replace("555", "556");
        assert_eq!(
            verify_stream("k", "/telnyx", Some(&altered), now, TOLERANCE),
            Err(SignatureError::Invalid)
        );
        let added = format!("{query}&voice=amy");
        assert_eq!(
            verify_stream("k", "/telnyx", Some(&added), now, TOLERANCE),
            Err(SignatureError::Invalid)
        );
        assert_eq!(
            verify_stream("k", "/telnyx", Some(&query), now + 61, TOLERANCE),
            Err(SignatureError::Stale)
        );
        assert_eq!(
            verify_stream("k", "/telnyx", None, now, TOLERANCE),
            Err(SignatureError::Missing)
        );
    }

    #[test]
    fn call_tokens_bind_the_call() {
        let now = 1_800_000_000;
        let token = call_token("k", "CA1", now + 60);
        assert_eq!(verify_call_token("k", "CA1", Some(&token), now, TOLERANCE), Ok(()));
        assert_eq!(
            verify_call_token("k", "CA2", Some(&token), now, TOLERANCE),
            Err(SignatureError::Invalid)
        );
        assert_eq!(
            verify_call_token("k", "CA1", Some(&token), now + 120, TOLERANCE),
            Err(SignatureError::Stale)
        );
    }
}
