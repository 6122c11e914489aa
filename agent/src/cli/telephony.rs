//! Flags for phone calls: the public URL and each carrier's secret files (a carrier is on when
//! its secret file is given).

use std::path::PathBuf;

use clap::Args;
use voice_config::{AgentConfig, TelephonyConfig, TelnyxConfig, TwilioConfig, VonageConfig};

use super::overrides::{Overrides, flag};

#[derive(Debug, Clone, Args)]
pub struct TelephonyArgs {
    /// The agent's public base URL as carriers reach it (https://voice.example.com) [config: telephony.publicUrl].
    #[arg(long, env = "VOICE_AGENT_TELEPHONY_PUBLIC_URL")]
    pub telephony_public_url: Option<String>,
    /// How old a carrier's signed request may be (e.g. 5m) [config: telephony.signatureTolerance].
    #[arg(long, env = "VOICE_AGENT_TELEPHONY_SIGNATURE_TOLERANCE", value_parser = humantime::parse_duration)]
    pub telephony_signature_tolerance: Option<std::time::Duration>,
    /// Number (E.164) Twilio and Telnyx calls are transferred to when the agent ends them [config: telephony.fallbackNumber].
    #[arg(long, env = "VOICE_AGENT_TELEPHONY_FALLBACK_NUMBER")]
    pub telephony_fallback_number: Option<String>,
    /// Instruction the model answers when a call starts, in place of the prompt's greeting [config: telephony.greeting].
    #[arg(long, env = "VOICE_AGENT_TELEPHONY_GREETING")]
    pub telephony_greeting: Option<String>,
    /// File with the Twilio account's Auth Token; enables Twilio [config: telephony.twilio.authTokenFile].
    #[arg(long, env = "VOICE_AGENT_TWILIO_AUTH_TOKEN_FILE")]
    pub twilio_auth_token_file: Option<PathBuf>,
    /// File with the Telnyx account's public key (base64); enables Telnyx with --telnyx-stream-secret-file [config: telephony.telnyx.publicKeyFile].
    #[arg(
        long,
        env = "VOICE_AGENT_TELNYX_PUBLIC_KEY_FILE",
        requires = "telnyx_stream_secret_file"
    )]
    pub telnyx_public_key_file: Option<PathBuf>,
    /// File with a secret that signs Telnyx stream URLs [config: telephony.telnyx.streamSecretFile].
    #[arg(
        long,
        env = "VOICE_AGENT_TELNYX_STREAM_SECRET_FILE",
        requires = "telnyx_public_key_file"
    )]
    pub telnyx_stream_secret_file: Option<PathBuf>,
    /// File with the Vonage account's signature secret; enables Vonage [config: telephony.vonage.signatureSecretFile].
    #[arg(long, env = "VOICE_AGENT_VONAGE_SIGNATURE_SECRET_FILE")]
    pub vonage_signature_secret_file: Option<PathBuf>,
}

impl TelephonyArgs {
    pub(super) fn apply(&self, config: &mut AgentConfig, overrides: &mut Overrides) {
        let any = self.telephony_public_url.is_some()
            || self.telephony_signature_tolerance.is_some()
            || self.telephony_fallback_number.is_some()
            || self.telephony_greeting.is_some()
            || self.twilio_auth_token_file.is_some()
            || self.telnyx_public_key_file.is_some()
            || self.vonage_signature_secret_file.is_some();
        if !any {
            return;
        }
        let telephony = config.telephony.get_or_insert_with(|| TelephonyConfig {
            signature_tolerance: std::time::Duration::from_secs(300),
            ..TelephonyConfig::default()
        });
        overrides.set_some(
            &mut telephony.public_url,
            "telephony.publicUrl",
            flag!(self.telephony_public_url),
        );
        overrides.set(
            &mut telephony.signature_tolerance,
            "telephony.signatureTolerance",
            flag!(self.telephony_signature_tolerance),
        );
        overrides.set_some(
            &mut telephony.fallback_number,
            "telephony.fallbackNumber",
            flag!(self.telephony_fallback_number),
        );
        overrides.set_some(
            &mut telephony.greeting,
            "telephony.greeting",
            flag!(self.telephony_greeting),
        );
        if let Some(file) = &self.twilio_auth_token_file {
            telephony.twilio = Some(TwilioConfig {
                auth_token_file: file.clone(),
            });
            overrides.record("telephony.twilio", "twilio_auth_token_file");
        }
        if let (Some(key), Some(secret)) = (&self.telnyx_public_key_file, &self.telnyx_stream_secret_file) {
            telephony.telnyx = Some(TelnyxConfig {
                public_key_file: key.clone(),
                stream_secret_file: secret.clone(),
            });
            overrides.record("telephony.telnyx", "telnyx_public_key_file");
        }
        if let Some(file) = &self.vonage_signature_secret_file {
            let sample_rate = telephony.vonage.as_ref().map_or(16_000, |v| v.sample_rate);
            telephony.vonage = Some(VonageConfig {
                signature_secret_file: file.clone(),
                sample_rate,
            });
            overrides.record("telephony.vonage", "vonage_signature_secret_file");
        }
    }
}
