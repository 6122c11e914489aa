//! Reaching an agent hosted on Amazon Bedrock AgentCore Runtime. Its WebSocket endpoint is
//! `wss://bedrock-agentcore.<region>.amazonaws.com/runtimes/<URL-encoded runtime ARN>/ws`, and
//! AgentCore authenticates the handshake before the container sees it: with SigV4 (here a
//! presigned URL, signed with credentials from the default AWS chain) or, on runtimes with a
//! JWT authorizer, an OAuth bearer token. Every connection names its runtime session; AgentCore
//! starts one microVM per session.

use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_credential_types::provider::ProvideCredentials;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SignatureLocation, SigningSettings, sign};
use aws_sigv4::sign::v4;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use tokio_tungstenite::tungstenite::http::Uri;

use super::TalkError;
use super::connect::Target;

/// The SigV4 service name of AgentCore's data plane.
const SERVICE: &str = "bedrock-agentcore";
/// Names the runtime session: a query parameter in presigned URLs, a header otherwise.
pub const SESSION_ID: &str = "X-Amzn-Bedrock-AgentCore-Runtime-Session-Id";
/// AgentCore's session ids are 33 to 256 characters.
const SESSION_ID_LEN: std::ops::RangeInclusive<usize> = 33..=256;
/// How long a presigned URL stays valid: AgentCore accepts at most five minutes. Only the
/// handshake must happen within it; the session then lasts as long as AgentCore allows.
pub const PRESIGNED_URL_EXPIRY: Duration = Duration::from_secs(300);

/// RFC 3986 unreserved characters stay; everything else is percent-encoded, as SigV4 expects.
const UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');

/// An AgentCore runtime endpoint to connect to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Runtime {
    /// `ws(s)://…/runtimes/<ARN>/ws?…`, without the session id and signature.
    pub url: String,
    /// The region to sign for.
    pub region: String,
}

/// The endpoint of the runtime `arn` (`arn:aws:bedrock-agentcore:<region>:<account>:runtime/<id>`),
/// optionally at one of its endpoints (`qualifier`, AgentCore's default endpoint otherwise) and
/// on another host (`endpoint`, like the AWS SDKs' `AWS_ENDPOINT_URL_BEDROCK_AGENTCORE`).
pub fn runtime_for_arn(arn: &str, qualifier: Option<&str>, endpoint: Option<&str>) -> Result<Runtime, TalkError> {
    let bad = |reason: &str| TalkError::Url {
        url: arn.to_owned(),
        reason: reason.to_owned(),
    };
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    let [prefix, partition, service, region, account, resource] = parts[..] else {
        return Err(bad(
            "not an AgentCore runtime ARN (arn:aws:bedrock-agentcore:<region>:<account>:runtime/<id>)",
        ));
    };
    let runtime_id = resource.strip_prefix("runtime/").unwrap_or_default();
    if prefix != "arn"
        || !partition.starts_with("aws")
        || service != SERVICE
        || region.is_empty()
        || account.is_empty()
        || runtime_id.is_empty()
    {
        return Err(bad(
            "not an AgentCore runtime ARN (arn:aws:bedrock-agentcore:<region>:<account>:runtime/<id>)",
        ));
    }
    let base = match endpoint {
        Some(endpoint) => {
            let endpoint = endpoint.trim_end_matches('/');
            if let Some(rest) = endpoint.strip_prefix("https://") {
                format!("wss://{rest}")
            } else if let Some(rest) = endpoint.strip_prefix("http://") {
                format!("ws://{rest}")
            } else {
                return Err(TalkError::Url {
                    url: endpoint.to_owned(),
                    reason: "the AgentCore endpoint must be an http:// or https:// URL".to_owned(),
                });
            }
        }
        None => {
            let domain = if partition == "aws-cn" {
                "amazonaws.com.cn"
            } else {
                "amazonaws.com"
            };
            format!("wss://{SERVICE}.{region}.{domain}")
        }
    };
    let mut url = format!("{base}/runtimes/{}/ws", encode(arn));
    if let Some(qualifier) = qualifier {
        url.push_str(&format!("?qualifier={}", encode(qualifier)));
    }
    Ok(Runtime {
        url,
        region: region.to_owned(),
    })
}

/// The region of a URL on AgentCore's own endpoint (`bedrock-agentcore.<region>.amazonaws.com`,
/// path `/runtimes/…`), or `None` for any other URL.
pub fn region_of(url: &str) -> Option<String> {
    let uri: Uri = url.parse().ok()?;
    let host = uri.host()?;
    let rest = host.strip_prefix("bedrock-agentcore.")?;
    let region = rest
        .strip_suffix(".amazonaws.com")
        .or_else(|| rest.strip_suffix(".amazonaws.com.cn"))?;
    (!region.is_empty() && !region.contains('.') && uri.path().starts_with("/runtimes/")).then(|| region.to_owned())
}

/// A new runtime session id, or the caller's after checking its length.
pub fn session_id(given: Option<&str>) -> Result<String, TalkError> {
    match given {
        Some(id) if SESSION_ID_LEN.contains(&id.len()) && id.bytes().all(|b| b.is_ascii_graphic()) => Ok(id.to_owned()),
        Some(id) => Err(TalkError::Url {
            url: id.to_owned(),
            reason: "an AgentCore session id is 33 to 256 printable characters".to_owned(),
        }),
        None => Ok(uuid::Uuid::new_v4().to_string()),
    }
}

/// `url` with the session id added as a query parameter.
pub fn with_session(url: &str, session_id: &str) -> String {
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}{SESSION_ID}={}", encode(session_id))
}

/// How to reach the runtime at `url`: with a bearer token (for runtimes with a JWT authorizer)
/// the session id goes in a header; without one the URL is presigned with the default AWS
/// credentials, the session id among its signed parameters.
pub async fn target(url: String, region: &str, session_id: &str, token: Option<String>) -> Result<Target, TalkError> {
    let shown = url.split('?').next().unwrap_or_default().to_owned();
    if token.is_some() {
        return Ok(Target {
            url,
            shown,
            token,
            headers: vec![(SESSION_ID, session_id.to_owned())],
            presigned: false,
        });
    }
    let credentials = default_credentials(region).await?;
    let url = presign(&with_session(&url, session_id), region, &credentials, SystemTime::now())?;
    Ok(Target {
        url,
        shown,
        token: None,
        headers: Vec::new(),
        presigned: true,
    })
}

/// Credentials from the default AWS chain (environment, profile, SSO, container and instance
/// roles), as every AWS SDK finds them.
pub async fn default_credentials(region: &str) -> Result<Credentials, TalkError> {
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(region.to_owned()))
        .load()
        .await;
    let provider = config
        .credentials_provider()
        .ok_or_else(|| TalkError::Credentials("no AWS credential provider is configured".to_owned()))?;
    provider
        .provide_credentials()
        .await
        .map_err(|e| TalkError::Credentials(error_chain(&e)))
}

/// Presigns `url` (a `ws://` or `wss://` URL with every query parameter already in place) for
/// a GET with SigV4 in the query string: `X-Amz-Algorithm`, `X-Amz-Credential`, `X-Amz-Date`,
/// `X-Amz-Expires`, `X-Amz-SignedHeaders` (only `host`), `X-Amz-Security-Token` for temporary
/// credentials, and `X-Amz-Signature` last, as botocore's `SigV4QueryAuth` writes them.
pub fn presign(url: &str, region: &str, credentials: &Credentials, at: SystemTime) -> Result<String, TalkError> {
    let signing = |e: &dyn std::fmt::Display| TalkError::Credentials(format!("cannot sign the URL: {e}"));
    // SigV4 signs the HTTP request that carries the upgrade.
    let https = if let Some(rest) = url.strip_prefix("wss://") {
        format!("https://{rest}")
    } else if let Some(rest) = url.strip_prefix("ws://") {
        format!("http://{rest}")
    } else {
        return Err(TalkError::Url {
            url: url.to_owned(),
            reason: "not a WebSocket URL".to_owned(),
        });
    };
    let authority = https
        .parse::<Uri>()
        .ok()
        .and_then(|uri| uri.authority().map(|a| a.as_str().to_owned()))
        .ok_or_else(|| TalkError::Url {
            url: url.to_owned(),
            reason: "no host".to_owned(),
        })?;
    let identity = credentials.clone().into();
    let mut settings = SigningSettings::default();
    settings.signature_location = SignatureLocation::QueryParams;
    settings.expires_in = Some(PRESIGNED_URL_EXPIRY);
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name(SERVICE)
        .time(at)
        .settings(settings)
        .build()
        .map_err(|e| signing(&e))?
        .into();
    let headers = [("host", authority.as_str())];
    let request =
        SignableRequest::new("GET", &https, headers.into_iter(), SignableBody::Bytes(&[])).map_err(|e| signing(&e))?;
    let (instructions, _signature) = sign(request, &params).map_err(|e| signing(&e))?.into_parts();
    let mut signed = url.to_owned();
    let mut separator = if signed.contains('?') { '&' } else { '?' };
    // The signature goes last; the other parameters keep the signer's order.
    let (signature, others): (Vec<_>, Vec<_>) = instructions
        .params()
        .iter()
        .partition(|(name, _)| *name == "X-Amz-Signature");
    for (name, value) in others.into_iter().chain(signature) {
        signed.push(separator);
        signed.push_str(name);
        signed.push('=');
        signed.push_str(&encode(value));
        separator = '&';
    }
    Ok(signed)
}

fn encode(value: &str) -> String {
    utf8_percent_encode(value, UNRESERVED).to_string()
}

/// An error and its sources on one line (the SDK's top-level messages are terse, and the
/// credential chain lists what it tried on several lines).
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = cause.source();
    }
    message
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    const ARN: &str = "arn:aws:bedrock-agentcore:us-east-1:123456789012:runtime/voice_agent-AbCdEf1234";
    const SESSION: &str = "0f8e1c2a-3b4d-4e5f-8a9b-0c1d2e3f4a5b";
    const ENCODED_ARN: &str =
        "arn%3Aaws%3Abedrock-agentcore%3Aus-east-1%3A123456789012%3Aruntime%2Fvoice_agent-AbCdEf1234";

    fn test_credentials(session_token: Option<&str>) -> Credentials {
        Credentials::new(
            "AKIDEXAMPLE",
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            session_token.map(str::to_owned),
            None,
            "test",
        )
    }

    /// 2026-12-06T12:00:00Z.
    fn signing_time() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_796_558_400)
    }

    #[test]
    fn the_runtime_url_encodes_the_arn_and_names_the_region() {
        let runtime = runtime_for_arn(ARN, Some("DEFAULT"), None).expect("runtime");
        assert_eq!(
            runtime.url,
            format!("wss://bedrock-agentcore.us-east-1.amazonaws.com/runtimes/{ENCODED_ARN}/ws?qualifier=DEFAULT")
        );
        assert_eq!(runtime.region, "us-east-1");
        assert_eq!(region_of(&runtime.url).as_deref(), Some("us-east-1"));

        let local = runtime_for_arn(ARN, None, Some("http://127.0.0.1:9000/")).expect("runtime");
        assert_eq!(local.url, format!("ws://127.0.0.1:9000/runtimes/{ENCODED_ARN}/ws"));
        let china = runtime_for_arn(
            "arn:aws-cn:bedrock-agentcore:cn-north-1:123456789012:runtime/a-1",
            None,
            None,
        )
        .expect("runtime");
        assert!(
            china
                .url
                .starts_with("wss://bedrock-agentcore.cn-north-1.amazonaws.com.cn/"),
            "{}",
            china.url
        );
    }

    #[test]
    fn other_arns_and_urls_are_not_agentcore_runtimes() {
        for arn in [
            "runtime/x",
            "arn:aws:bedrock:us-east-1:123456789012:runtime/x",
            "arn:aws:bedrock-agentcore:us-east-1:123456789012:gateway/x",
            "arn:aws:bedrock-agentcore::123456789012:runtime/x",
        ] {
            assert!(runtime_for_arn(arn, None, None).is_err(), "{arn}");
        }
        assert_eq!(region_of("wss://voice.example.com/ws"), None);
        assert_eq!(region_of("wss://bedrock-agentcore.us-east-1.amazonaws.com/ping"), None);
        assert_eq!(
            region_of("wss://bedrock-agentcore.eu-west-1.amazonaws.com/runtimes/x/ws").as_deref(),
            Some("eu-west-1")
        );
    }

    #[test]
    fn session_ids_are_generated_or_checked() {
        let generated = session_id(None).expect("generated");
        assert!(SESSION_ID_LEN.contains(&generated.len()), "{generated}");
        assert_ne!(generated, session_id(None).expect("another"));
        assert_eq!(session_id(Some(SESSION)).expect("given"), SESSION);
        assert!(session_id(Some("too-short")).is_err());
        assert!(session_id(Some(&"x".repeat(257))).is_err());
    }

    /// The expected URLs were computed by botocore 1.44.5's `SigV4QueryAuth` (what the AgentCore
    /// Python SDK's `generate_presigned_url` uses) from the same URL, credentials and time.
    #[test]
    fn presigned_urls_match_botocore() {
        let runtime = runtime_for_arn(ARN, Some("DEFAULT"), None).expect("runtime");
        let url = with_session(&runtime.url, SESSION);
        let prefix = format!(
            "wss://bedrock-agentcore.us-east-1.amazonaws.com/runtimes/{ENCODED_ARN}/ws?qualifier=DEFAULT\
             &X-Amzn-Bedrock-AgentCore-Runtime-Session-Id={SESSION}&X-Amz-Algorithm=AWS4-HMAC-SHA256\
             &X-Amz-Credential=AKIDEXAMPLE%2F20261206%2Fus-east-1%2Fbedrock-agentcore%2Faws4_request\
             &X-Amz-Date=20261206T120000Z&X-Amz-Expires=300&X-Amz-SignedHeaders=host"
        );

        let permanent = presign(&url, "us-east-1", &test_credentials(None), signing_time()).expect("presigned");
        assert_eq!(
            permanent,
            format!("{prefix}&X-Amz-Signature=3b9be00565c782b797b2ca5adaeb6e47a32a16ddbce385d5dbf51f0328f20e17")
        );

        let temporary = presign(
            &url,
            "us-east-1",
            &test_credentials(Some("FwoGZXIvYXdzEXAMPLESESSIONTOKEN")),
            signing_time(),
        )
        .expect("presigned");
        assert_eq!(
            temporary,
            format!(
                "{prefix}&X-Amz-Security-Token=FwoGZXIvYXdzEXAMPLESESSIONTOKEN\
                 &X-Amz-Signature=ef548c053d75826a8980f1e3ae411e2c8cc9838dcd4f10be964e567dbf3e96d0"
            )
        );
    }

    #[test]
    fn the_signature_covers_every_query_parameter() {
        let url = with_session(&runtime_for_arn(ARN, None, None).expect("runtime").url, SESSION);
        let credentials = test_credentials(None);
        let signature = |url: &str| {
            let signed = presign(url, "us-east-1", &credentials, signing_time()).expect("presigned");
            signed.rsplit_once("X-Amz-Signature=").expect("signature").1.to_owned()
        };
        let base = signature(&url);
        assert_eq!(base.len(), 64);
        assert_ne!(base, signature(&format!("{url}&audio_output=binary")));
        assert_ne!(
            base,
            signature(&with_session(&url, "another-session-id-0123456789abcdef"))
        );
        let later = presign(&url, "us-east-1", &credentials, signing_time() + Duration::from_secs(1)).expect("later");
        assert!(!later.ends_with(&base));
        assert!(later.contains("X-Amz-Date=20261206T120001Z"));
    }
}
