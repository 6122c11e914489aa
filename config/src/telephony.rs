//! Phone calls: the carriers whose media streams the agent answers (Twilio Media Streams, Telnyx
//! media streaming, the Vonage Voice API WebSocket), the secrets that prove a request comes from
//! them, and the public address the carriers reach the agent at.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::ConfigError;

/// Phone calls through carriers' media streams. Absent: the carrier paths refuse every request.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TelephonyConfig {
    /// The agent's public base URL as carriers reach it (`https://voice.example.com`): call-setup
    /// documents point the media stream at its `wss://` form, and signatures are checked over it.
    /// Without it, the URL is taken from the request's `Host` (and `X-Forwarded-Proto`/`-Host`
    /// from `limits.trustedProxies` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_url: Option<String>,
    /// How old a signed request may be (Telnyx's timestamp, Vonage's `iat`, a stream token).
    #[serde(default = "default_signature_tolerance", with = "humantime_serde")]
    pub signature_tolerance: Duration,
    /// A phone number (E.164, `+15550100`) Twilio and Telnyx calls are transferred to when the
    /// agent ends the call's stream itself (maximum duration, drain, model failure): the
    /// call-setup document dials it after the stream. Without it such calls hang up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback_number: Option<String>,
    /// The instruction the model answers when a call starts (it speaks first), in place of
    /// `prompt.greeting` for phone calls. A `greeting` setting in the webhook URL, where the
    /// allow-list takes one, replaces both.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub greeting: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub twilio: Option<TwilioConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub telnyx: Option<TelnyxConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vonage: Option<VonageConfig>,
}

/// Twilio: `POST /twilio/voice` answers with TwiML `<Connect><Stream>` to `/twilio`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TwilioConfig {
    /// A file holding the account's Auth Token, which signs every request (`X-Twilio-Signature`).
    /// Re-read when it changes.
    pub auth_token_file: PathBuf,
}

/// Telnyx: `POST /telnyx/voice` answers with TeXML `<Connect><Stream>` to `/telnyx`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TelnyxConfig {
    /// A file holding the account's public key (base64, from the Mission Control portal), which
    /// verifies webhook signatures (`telnyx-signature-ed25519`).
    pub public_key_file: PathBuf,
    /// A file holding a secret of your choice (at least 32 bytes) that signs the stream URLs the
    /// agent hands out: Telnyx does not sign its WebSocket requests.
    pub stream_secret_file: PathBuf,
}

/// Vonage: the answer URL `/vonage/answer` returns an NCCO `connect` to `/vonage`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VonageConfig {
    /// A file holding the account's signature secret, which signs webhooks (an HS256 JWT in
    /// `Authorization`) and the stream URLs the agent hands out.
    pub signature_secret_file: PathBuf,
    /// Sample rate of the call's linear PCM (8000 or 16000).
    #[serde(default = "default_vonage_rate")]
    pub sample_rate: u32,
}

fn default_signature_tolerance() -> Duration {
    Duration::from_secs(300)
}

fn default_vonage_rate() -> u32 {
    16_000
}

impl TelephonyConfig {
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |field, message: String| Err(ConfigError::Invalid { field, message });
        if let Some(url) = &self.public_url {
            let rest = url.strip_prefix("https://").or_else(|| url.strip_prefix("http://"));
            match rest {
                None => {
                    return invalid(
                        "telephony.publicUrl",
                        "must start with https:// (or http:// for tests)".into(),
                    );
                }
                Some(host) if host.is_empty() || host.contains(['?', '#']) => {
                    return invalid(
                        "telephony.publicUrl",
                        "must be a base URL: scheme, host and optional path".into(),
                    );
                }
                Some(_) => {}
            }
        }
        if let Some(number) = &self.fallback_number {
            let digits = number.strip_prefix('+').unwrap_or_default();
            if !(7..=15).contains(&digits.len()) || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return invalid(
                    "telephony.fallbackNumber",
                    "must be an E.164 number such as +15550100".into(),
                );
            }
        }
        if let Some(greeting) = &self.greeting
            && (greeting.trim().is_empty() || greeting.chars().count() > crate::MAX_SETTING_LENGTH)
        {
            return invalid(
                "telephony.greeting",
                format!("must not be empty and at most {} characters", crate::MAX_SETTING_LENGTH),
            );
        }
        if self.signature_tolerance < Duration::from_secs(10) || self.signature_tolerance > Duration::from_secs(3600) {
            return invalid("telephony.signatureTolerance", "must be between 10s and 1h".into());
        }
        if let Some(vonage) = &self.vonage
            && !matches!(vonage.sample_rate, 8_000 | 16_000)
        {
            return invalid("telephony.vonage.sampleRate", "must be 8000 or 16000".into());
        }
        if self.twilio.is_none() && self.telnyx.is_none() && self.vonage.is_none() {
            return invalid(
                "telephony",
                "enable at least one carrier (twilio, telnyx, vonage)".into(),
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn twilio() -> TelephonyConfig {
        TelephonyConfig {
            signature_tolerance: default_signature_tolerance(),
            twilio: Some(TwilioConfig {
                auth_token_file: "/run/twilio".into(),
            }),
            ..TelephonyConfig::default()
        }
    }

    #[test]
    fn a_carrier_with_its_secret_is_valid() {
        assert!(twilio().validate().is_ok());
    }

    #[test]
    fn refuses_a_section_without_carriers_and_odd_values() {
        let none = TelephonyConfig {
            signature_tolerance: default_signature_tolerance(),
            ..TelephonyConfig::default()
        };
        assert!(none.validate().is_err());
        let mut bad_url = twilio();
        bad_url.public_url = Some("wss://voice.example.com".into());
        assert!(
            bad_url
                .validate()
                .expect_err("a wss URL")
                .to_string()
                .contains("publicUrl")
        );
        let mut bad_rate = twilio();
        bad_rate.vonage = Some(VonageConfig {
            signature_secret_file: "/run/v".into(),
            sample_rate: 44_100,
        });
        assert!(
            bad_rate
                .validate()
                .expect_err("44.1 kHz")
                .to_string()
                .contains("sampleRate")
        );
        let mut bad_number = twilio();
        bad_number.fallback_number = Some("555-0100".into());
        assert!(
            bad_number
                .validate()
                .expect_err("not E.164")
                .to_string()
                .contains("fallbackNumber")
        );
    }

    #[test]
    fn reads_the_documented_yaml() {
        let yaml = "publicUrl: https://voice.example.com\ntwilio:\n  authTokenFile: /run/t\nvonage:\n  signatureSecretFile: /run/v\n";
        let config: TelephonyConfig = serde_saphyr::from_str(yaml).expect("parses");
        assert_eq!(config.signature_tolerance, Duration::from_secs(300));
        assert_eq!(config.vonage.expect("vonage").sample_rate, 16_000);
        assert!(config.telnyx.is_none());
    }
}
