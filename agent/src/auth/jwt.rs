//! JSON Web Tokens from an OIDC issuer, checked against the issuer's published keys (JWKS):
//! signature with an allowed asymmetric algorithm, issuer, audience (or Cognito's
//! `client_id`), expiry and not-before with a small leeway.

use std::collections::HashMap;
use std::str::FromStr;
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header};
use serde::Deserialize;
use tokio::sync::{Mutex, RwLock};
use tracing::{debug, info, warn};

use voice_config::JwtConfig;

/// Keys are fetched again after this long, so keys the issuer withdrew stop working.
const KEYS_MAX_AGE: Duration = Duration::from_secs(600);
/// A token naming an unknown key triggers a refetch, at most this often (a flood of tokens
/// with made-up key ids must not become a flood of JWKS requests).
const UNKNOWN_KEY_REFETCH: Duration = Duration::from_secs(30);
/// How long fetching the JWKS may take.
const JWKS_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum JwtError {
    #[error("malformed token: {0}")]
    Malformed(String),
    #[error("algorithm {0:?} is not allowed")]
    Algorithm(Algorithm),
    #[error("no key {0:?} in the issuer's key set")]
    UnknownKey(String),
    #[error("cannot fetch the issuer's keys: {0}")]
    Jwks(String),
    #[error("invalid token: {0}")]
    Invalid(String),
    #[error("the token is not for this audience")]
    Audience,
}

#[derive(Deserialize)]
struct Claims {
    sub: String,
    #[serde(default)]
    aud: Option<serde_json::Value>,
    #[serde(default)]
    client_id: Option<String>,
    /// Every other claim: per-session settings may be taken from them.
    #[serde(flatten)]
    other: serde_json::Map<String, serde_json::Value>,
}

/// A valid token's subject and claims.
#[derive(Debug)]
pub struct Verified {
    pub subject: String,
    /// Every claim of the token, `sub` included.
    pub claims: serde_json::Map<String, serde_json::Value>,
}

struct Keys {
    by_id: HashMap<String, DecodingKey>,
    /// Keys without a `kid`, tried when a token names none.
    anonymous: Vec<DecodingKey>,
    fetched: Option<Instant>,
}

pub struct JwtVerifier {
    config: JwtConfig,
    algorithms: Vec<Algorithm>,
    http: reqwest::Client,
    keys: RwLock<Keys>,
    fetching: Mutex<()>,
}

impl JwtVerifier {
    pub fn new(config: JwtConfig) -> Result<Self, String> {
        let algorithms = config
            .algorithms
            .iter()
            .map(|a| Algorithm::from_str(a).map_err(|_| format!("unknown JWT algorithm {a:?}")))
            .collect::<Result<Vec<_>, _>>()?;
        let mut http = reqwest::Client::builder().timeout(JWKS_TIMEOUT);
        if let Some(path) = &config.ca_file {
            let pem =
                std::fs::read(path).map_err(|e| format!("cannot read auth.jwt.caFile {}: {e}", path.display()))?;
            let certificates = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| format!("auth.jwt.caFile {} holds no usable certificate: {e}", path.display()))?;
            if certificates.is_empty() {
                return Err(format!("auth.jwt.caFile {} holds no certificate", path.display()));
            }
            for certificate in certificates {
                http = http.add_root_certificate(certificate);
            }
        }
        let http = http.build().map_err(|e| e.to_string())?;
        Ok(Self {
            config,
            algorithms,
            http,
            keys: RwLock::new(Keys {
                by_id: HashMap::new(),
                anonymous: Vec::new(),
                fetched: None,
            }),
            fetching: Mutex::new(()),
        })
    }

    /// The token's subject and claims, if the token is valid.
    pub async fn verify(&self, token: &str) -> Result<Verified, JwtError> {
        let header = decode_header(token).map_err(|e| JwtError::Malformed(e.to_string()))?;
        if !self.algorithms.contains(&header.alg) {
            return Err(JwtError::Algorithm(header.alg));
        }
        let key = self.key(header.kid.as_deref()).await?;
        let mut validation = Validation::new(header.alg);
        validation.algorithms = self.algorithms.clone();
        validation.set_issuer(&[self.config.issuer.as_str()]);
        validation.set_required_spec_claims(&["exp", "iss", "sub"]);
        validation.validate_nbf = true;
        validation.validate_aud = false; // checked below, to also accept Cognito's client_id
        validation.leeway = self.config.leeway.as_secs();
        let claims = decode::<Claims>(token, &key, &validation)
            .map_err(|e| JwtError::Invalid(e.to_string()))?
            .claims;
        let audiences: Vec<&str> = match &claims.aud {
            Some(serde_json::Value::String(aud)) => vec![aud.as_str()],
            Some(serde_json::Value::Array(list)) => list.iter().filter_map(|a| a.as_str()).collect(),
            _ => claims.client_id.as_deref().into_iter().collect(),
        };
        if !audiences
            .iter()
            .any(|a| self.config.audiences.iter().any(|wanted| wanted == a))
        {
            return Err(JwtError::Audience);
        }
        let mut all = claims.other;
        all.insert("sub".into(), serde_json::Value::String(claims.sub.clone()));
        if let Some(aud) = claims.aud {
            all.insert("aud".into(), aud);
        }
        if let Some(client_id) = claims.client_id {
            all.insert("client_id".into(), serde_json::Value::String(client_id));
        }
        Ok(Verified {
            subject: claims.sub,
            claims: all,
        })
    }

    async fn key(&self, kid: Option<&str>) -> Result<DecodingKey, JwtError> {
        let stale = self
            .keys
            .read()
            .await
            .fetched
            .is_none_or(|at| at.elapsed() > KEYS_MAX_AGE);
        if stale {
            self.fetch(Duration::ZERO).await?;
        }
        if let Some(key) = self.lookup(kid).await {
            return Ok(key);
        }
        // Maybe the issuer rotated its keys since the last fetch.
        self.fetch(UNKNOWN_KEY_REFETCH).await?;
        self.lookup(kid)
            .await
            .ok_or_else(|| JwtError::UnknownKey(kid.unwrap_or_default().to_owned()))
    }

    async fn lookup(&self, kid: Option<&str>) -> Option<DecodingKey> {
        let keys = self.keys.read().await;
        match kid {
            Some(kid) => keys.by_id.get(kid).cloned(),
            None => keys.anonymous.first().cloned(),
        }
    }

    /// Fetches the JWKS unless it was fetched within `min_interval`.
    async fn fetch(&self, min_interval: Duration) -> Result<(), JwtError> {
        let _one_at_a_time = self.fetching.lock().await;
        if let Some(at) = self.keys.read().await.fetched
            && at.elapsed() < min_interval.max(Duration::from_millis(1))
        {
            return Ok(());
        }
        let set: JwkSet = async {
            self.http
                .get(&self.config.jwks_url)
                .send()
                .await?
                .error_for_status()?
                .json()
                .await
        }
        .await
        .map_err(|e: reqwest::Error| {
            warn!(url = %self.config.jwks_url, error = %e, "cannot fetch the JWKS");
            JwtError::Jwks(e.to_string())
        })?;
        let mut by_id = HashMap::new();
        let mut anonymous = Vec::new();
        for jwk in &set.keys {
            match DecodingKey::from_jwk(jwk) {
                Ok(key) => match &jwk.common.key_id {
                    Some(kid) => {
                        by_id.insert(kid.clone(), key);
                    }
                    None => anonymous.push(key),
                },
                Err(error) => debug!(%error, "JWKS key skipped"),
            }
        }
        info!(url = %self.config.jwks_url, keys = by_id.len() + anonymous.len(), "JWKS loaded");
        *self.keys.write().await = Keys {
            by_id,
            anonymous,
            fetched: Some(Instant::now()),
        };
        Ok(())
    }
}
