//! The `NovaSonic` provider: Amazon Nova Sonic through Bedrock's bidirectional stream, with
//! transparent stream renewal (see [`driver`]).

mod driver;
mod history;
pub mod mapping;
mod stream;
pub mod wire;

use std::sync::Arc;

use aws_config::{BehaviorVersion, Region};
use aws_sdk_bedrockruntime::Client;
use aws_sdk_bedrockruntime::config::retry::RetryConfig;
use aws_smithy_http_client::tls::{self, TlsContext, TrustStore, rustls_provider::CryptoMode};
use tokio::sync::mpsc;

use super::{ConnectFuture, MODEL_INPUT_QUEUE, MODEL_OUTPUT_QUEUE, ModelProvider, ModelStream, SessionSetup};
use crate::config::{ConfigError, NovaSonicConfig};
use crate::metrics::Metrics;
use driver::Driver;

/// What every session of the provider shares.
struct NovaShared {
    client: Client,
    config: NovaSonicConfig,
    region: Option<String>,
    metrics: Arc<Metrics>,
}

pub struct NovaSonicProvider {
    shared: Arc<NovaShared>,
}

impl NovaSonicProvider {
    /// Builds the Bedrock client: credentials and region from the default AWS chain (env,
    /// profile, IRSA web identity, EKS Pod Identity), unless the config names a region.
    pub async fn new(config: NovaSonicConfig, metrics: Arc<Metrics>) -> Result<Self, ConfigError> {
        let mut loader = aws_config::defaults(BehaviorVersion::latest());
        if let Some(region) = &config.region {
            loader = loader.region(Region::new(region.clone()));
        }
        if let Some(path) = &config.ca_bundle_file {
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
            let http = aws_smithy_http_client::Builder::new()
                .tls_provider(tls::Provider::Rustls(CryptoMode::AwsLc))
                .tls_context(context)
                .build_https();
            loader = loader.http_client(http);
        }
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
        Ok(Self {
            shared: Arc::new(NovaShared {
                client: Client::from_conf(builder.build()),
                config,
                region,
                metrics,
            }),
        })
    }
}

impl ModelProvider for NovaSonicProvider {
    fn model_id(&self) -> &str {
        &self.shared.config.model_id
    }

    fn connect(&self, setup: SessionSetup) -> ConnectFuture {
        let shared = self.shared.clone();
        Box::pin(async move {
            let (input_tx, input_rx) = mpsc::channel(MODEL_INPUT_QUEUE);
            let (output_tx, output_rx) = mpsc::channel(MODEL_OUTPUT_QUEUE);
            Driver::start(shared, setup, input_rx, output_tx).await?;
            Ok(ModelStream {
                input: input_tx,
                output: output_rx,
            })
        })
    }
}
