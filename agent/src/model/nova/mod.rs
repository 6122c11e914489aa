//! The `NovaSonic` provider: Amazon Nova Sonic through Bedrock's bidirectional stream, with
//! transparent stream renewal (see [`driver`]). Every session's task is tracked, so shutting
//! the provider down waits until each Bedrock stream it opened is closed.

mod connections;
mod driver;
mod history;
pub mod mapping;
mod stream;
pub mod wire;

use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use tracing::{debug, warn};

use aws_config::{BehaviorVersion, Region};
use aws_sdk_bedrockruntime::config::retry::RetryConfig;
use aws_smithy_http_client::tls::{self, TlsContext, TrustStore, rustls_provider::CryptoMode};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{
    CloseFuture, ConnectFuture, MODEL_INPUT_QUEUE, MODEL_OUTPUT_QUEUE, ModelError, ModelProvider, ModelStream,
    SessionSetup, queue,
};
use crate::metrics::Metrics;
use connections::Connections;
use driver::Driver;
use voice_config::{ConfigError, NovaSonicConfig};

/// What every session of the provider shares.
struct NovaShared {
    connections: Connections,
    config: NovaSonicConfig,
    region: Option<String>,
    metrics: Arc<Metrics>,
    /// Every session's driver task and every stream still closing.
    tracker: TaskTracker,
    /// Cancelled when the provider closes: drivers then close their streams at once.
    closing: CancellationToken,
}

pub struct NovaSonicProvider {
    shared: Arc<NovaShared>,
    /// Why sessions cannot be served, while the credentials do not resolve.
    credentials: Arc<RwLock<Option<String>>>,
}

impl NovaSonicProvider {
    /// Builds the Bedrock client: credentials and region from the default AWS chain (env,
    /// profile, IRSA web identity, EKS Pod Identity), unless the config names a region.
    pub async fn new(config: NovaSonicConfig, metrics: Arc<Metrics>) -> Result<Self, ConfigError> {
        let mut loader = aws_config::defaults(BehaviorVersion::latest());
        if let Some(region) = &config.region {
            loader = loader.region(Region::new(region.clone()));
        }
        let tls_context = match &config.ca_bundle_file {
            Some(path) => {
                let pem = std::fs::read(path).map_err(|source| ConfigError::Read {
                    path: path.clone(),
                    source,
                })?;
                let context = TlsContext::builder()
                    .with_trust_store(TrustStore::default().with_pem_certificate(pem))
                    .build()
                    .map_err(|e| ConfigError::Invalid {
                        field: "model.caBundleFile",
                        message: e.to_string(),
                    })?;
                // The credential providers (STS for IRSA, for one) reach AWS through the
                // same private network path.
                let http = aws_smithy_http_client::Builder::new()
                    .tls_provider(tls::Provider::Rustls(CryptoMode::AwsLc))
                    .tls_context(context.clone())
                    .build_https();
                loader = loader.http_client(http);
                Some(context)
            }
            None => None,
        };
        let sdk = loader.load().await;
        let region = sdk.region().map(|r| r.to_string());
        if region.is_none() {
            return Err(ConfigError::Invalid {
                field: "model.region",
                message: "no AWS region: set model.region or AWS_REGION".into(),
            });
        }
        // A consumed input stream cannot be replayed, so the SDK must not retry this call on
        // its own; the driver decides what to retry.
        let mut builder = aws_sdk_bedrockruntime::config::Builder::from(&sdk).retry_config(RetryConfig::disabled());
        if let Some(url) = &config.endpoint_url {
            builder = builder.endpoint_url(url);
        }
        let credentials = Arc::new(RwLock::new(Some("AWS credentials not resolved yet".to_owned())));
        if let Some(provider) = sdk.credentials_provider() {
            tokio::spawn(watch_credentials(provider, Arc::downgrade(&credentials)));
        } else {
            *credentials.write().unwrap_or_else(|p| p.into_inner()) =
                Some("no AWS credential provider is configured".to_owned());
        }
        Ok(Self {
            shared: Arc::new(NovaShared {
                connections: Connections::new(builder.build(), tls_context, config.streams_per_connection),
                config,
                region,
                metrics,
                tracker: TaskTracker::new(),
                closing: CancellationToken::new(),
            }),
            credentials,
        })
    }
}

/// How long closing the provider waits for its streams. A stream's close sequence takes at
/// most a couple of seconds; one still being opened may take longer, and is not worth holding
/// the process for.
const CLOSE_DEADLINE: Duration = Duration::from_secs(10);

/// How often credentials are checked while they cannot be resolved, and once they can.
const CREDENTIALS_RETRY: Duration = Duration::from_secs(10);
const CREDENTIALS_RECHECK: Duration = Duration::from_secs(300);
/// How long resolving credentials (IRSA, Pod Identity, profile) may take.
const CREDENTIALS_TIMEOUT: Duration = Duration::from_secs(10);

/// Keeps checking that the default chain yields credentials, so a pod without a working IAM
/// identity reports not-ready instead of failing every call.
async fn watch_credentials(provider: SharedCredentialsProvider, problem: Weak<RwLock<Option<String>>>) {
    loop {
        let result = tokio::time::timeout(CREDENTIALS_TIMEOUT, provider.provide_credentials()).await;
        let found = match result {
            Ok(Ok(_)) => None,
            Ok(Err(error)) => Some(format!("no AWS credentials: {error}")),
            Err(_) => Some("no AWS credentials: resolving them timed out".to_owned()),
        };
        let Some(problem) = problem.upgrade() else {
            return;
        };
        let ok = found.is_none();
        match &found {
            Some(message) => warn!(%message, "model not available"),
            None => debug!("AWS credentials resolved"),
        }
        *problem.write().unwrap_or_else(|p| p.into_inner()) = found;
        drop(problem);
        tokio::time::sleep(if ok { CREDENTIALS_RECHECK } else { CREDENTIALS_RETRY }).await;
    }
}

impl ModelProvider for NovaSonicProvider {
    fn model_id(&self) -> &str {
        &self.shared.config.model_id
    }

    fn unavailable(&self) -> Option<String> {
        self.credentials.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn connect(&self, setup: SessionSetup) -> ConnectFuture {
        let shared = self.shared.clone();
        Box::pin(async move {
            if shared.closing.is_cancelled() {
                return Err(ModelError::Unavailable("the agent is shutting down".into()));
            }
            let (input_tx, input_rx) = queue::channel(MODEL_INPUT_QUEUE);
            let (output_tx, output_rx) = queue::channel(MODEL_OUTPUT_QUEUE);
            Driver::start(shared, setup, input_rx, output_tx).await?;
            // The driver keeps its own task (see `ModelStream::Queued`).
            Ok(ModelStream::Queued {
                input: input_tx,
                output: output_rx,
            })
        })
    }

    fn close(&self) -> CloseFuture<'_> {
        let tracker = &self.shared.tracker;
        Box::pin(async move {
            self.shared.closing.cancel();
            tracker.close();
            if tokio::time::timeout(CLOSE_DEADLINE, tracker.wait()).await.is_err() {
                warn!(
                    tasks = tracker.len(),
                    "model streams still open after the close deadline"
                );
            } else {
                debug!("every model stream is closed");
            }
        })
    }
}
