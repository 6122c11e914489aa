//! Credentials for gateway requests: a bearer token read from a file or the environment, or an
//! AWS SigV4 signature. Secrets stay in memory only for the request; they never reach logs or
//! errors.

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use http::{HeaderName, HeaderValue};

use voice_config::GatewayAuth;

/// Credentials are refreshed this long before they expire.
const CREDENTIAL_REFRESH_MARGIN: Duration = Duration::from_secs(300);

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("cannot read the gateway token file {0}")]
    TokenFile(PathBuf),
    #[error("the gateway token environment variable {0} is not set")]
    TokenEnv(String),
    #[error("no AWS credentials for signing gateway requests: {0}")]
    Credentials(String),
    #[error("no AWS region for signing gateway requests: set gateway.auth.region or AWS_REGION")]
    Region,
    #[error("cannot sign the gateway request: {0}")]
    Signing(String),
}

pub enum Authenticator {
    None,
    Bearer(TokenSource),
    SigV4(Signer),
}

pub enum TokenSource {
    File(PathBuf),
    Env(String),
}

pub struct Signer {
    credentials: SharedCredentialsProvider,
    cached: Mutex<Option<Credentials>>,
    region: String,
    service: String,
}

impl Authenticator {
    pub async fn new(auth: &GatewayAuth) -> Result<Self, AuthError> {
        Ok(match auth {
            GatewayAuth::None => Self::None,
            GatewayAuth::Bearer {
                token_file: Some(path), ..
            } => Self::Bearer(TokenSource::File(path.clone())),
            GatewayAuth::Bearer {
                token_env: Some(var), ..
            } => Self::Bearer(TokenSource::Env(var.clone())),
            GatewayAuth::Bearer { .. } => return Err(AuthError::TokenEnv(String::new())),
            GatewayAuth::SigV4 { region, service } => {
                let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
                if let Some(region) = region {
                    loader = loader.region(aws_config::Region::new(region.clone()));
                }
                let sdk = loader.load().await;
                let region = sdk.region().map(ToString::to_string).ok_or(AuthError::Region)?;
                let credentials = sdk
                    .credentials_provider()
                    .ok_or_else(|| AuthError::Credentials("no credential provider is configured".into()))?;
                Self::SigV4(Signer {
                    credentials,
                    cached: Mutex::new(None),
                    region,
                    service: service.clone(),
                })
            }
        })
    }

    /// The headers that authenticate one request: a bearer token (rmcp adds the header), and
    /// extra headers such as the SigV4 `Authorization` and `X-Amz-Date`.
    pub async fn headers(
        &self,
        method: &str,
        uri: &str,
        body: &[u8],
    ) -> Result<(Option<String>, Vec<(HeaderName, HeaderValue)>), AuthError> {
        match self {
            Self::None => Ok((None, Vec::new())),
            Self::Bearer(source) => Ok((Some(source.token()?), Vec::new())),
            Self::SigV4(signer) => Ok((None, signer.sign(method, uri, body).await?)),
        }
    }
}

impl TokenSource {
    /// Reads the token every time: files are tiny, and a rotated Secret takes effect at once.
    fn token(&self) -> Result<String, AuthError> {
        let token = match self {
            Self::File(path) => std::fs::read_to_string(path).map_err(|_| AuthError::TokenFile(path.clone()))?,
            Self::Env(var) => std::env::var(var).map_err(|_| AuthError::TokenEnv(var.clone()))?,
        };
        Ok(token.trim().to_owned())
    }
}

impl Signer {
    async fn credentials(&self) -> Result<Credentials, AuthError> {
        let fresh = |c: &Credentials| {
            c.expiry()
                .is_none_or(|expiry| expiry > SystemTime::now() + CREDENTIAL_REFRESH_MARGIN)
        };
        if let Some(cached) = self.cached.lock().unwrap_or_else(|p| p.into_inner()).as_ref()
            && fresh(cached)
        {
            return Ok(cached.clone());
        }
        let credentials = self
            .credentials
            .provide_credentials()
            .await
            .map_err(|e| AuthError::Credentials(e.to_string()))?;
        *self.cached.lock().unwrap_or_else(|p| p.into_inner()) = Some(credentials.clone());
        Ok(credentials)
    }

    async fn sign(&self, method: &str, uri: &str, body: &[u8]) -> Result<Vec<(HeaderName, HeaderValue)>, AuthError> {
        let identity = self.credentials().await?.into();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.region)
            .name(&self.service)
            .time(SystemTime::now())
            .settings(SigningSettings::default())
            .build()
            .map_err(|e| AuthError::Signing(e.to_string()))?
            .into();
        let request = SignableRequest::new(method, uri, std::iter::empty(), SignableBody::Bytes(body))
            .map_err(|e| AuthError::Signing(e.to_string()))?;
        let (instructions, _) = sign(request, &params)
            .map_err(|e| AuthError::Signing(e.to_string()))?
            .into_parts();
        instructions
            .headers()
            .map(|(name, value)| {
                Ok((
                    HeaderName::try_from(name).map_err(|e| AuthError::Signing(e.to_string()))?,
                    HeaderValue::try_from(value).map_err(|e| AuthError::Signing(e.to_string()))?,
                ))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn sigv4_headers_name_the_region_and_service() {
        let signer = Signer {
            credentials: SharedCredentialsProvider::new(Credentials::new("AKIDTEST", "secret", None, None, "test")),
            cached: Mutex::new(None),
            region: "eu-west-1".into(),
            service: "bedrock-agentcore".into(),
        };
        let headers = signer
            .sign("POST", "https://gw.example.com/mcp", b"{}")
            .await
            .expect("signs");
        let auth = headers
            .iter()
            .find(|(n, _)| n == "authorization")
            .and_then(|(_, v)| v.to_str().ok())
            .expect("authorization header");
        assert!(auth.starts_with("AWS4-HMAC-SHA256 Credential=AKIDTEST/"), "{auth}");
        assert!(auth.contains("/eu-west-1/bedrock-agentcore/aws4_request"), "{auth}");
        assert!(headers.iter().any(|(n, _)| n == "x-amz-date"));
    }

    #[test]
    fn tokens_are_reread_from_their_file() {
        let dir = std::env::temp_dir().join(format!("va-token-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("token");
        std::fs::write(&path, "first\n").expect("write");
        let source = TokenSource::File(path.clone());
        assert_eq!(source.token().expect("token"), "first");
        std::fs::write(&path, "second").expect("write");
        assert_eq!(source.token().expect("token"), "second");
        let missing = TokenSource::File(dir.join("missing"));
        assert!(matches!(missing.token(), Err(AuthError::TokenFile(_))));
        let _ = std::fs::remove_dir_all(dir);
    }
}
