//! `spec.telephony`: phone calls through carriers' media streams (Twilio, Telnyx, Vonage), and
//! `status.telephony`: the webhook URLs to enter in each carrier's console.

use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Duration, KeyRef};

/// The agent's paths of each carrier: the media stream and, under it, the call-setup webhooks.
/// Each is exposed as a path prefix, so `/twilio` also routes `/twilio/voice`.
pub const TWILIO_PATH: &str = "/twilio";
pub const TELNYX_PATH: &str = "/telnyx";
pub const VONAGE_PATH: &str = "/vonage";

/// Phone calls. Each carrier present is enabled; its credentials come from Secret keys mounted
/// into the pods and re-read by the agent, so rotating a Secret applies to the next call
/// without a restart.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[x_kube(
    validation = Rule::new("has(self.twilio) || has(self.telnyx) || has(self.vonage)")
        .message("telephony needs at least one carrier: twilio, telnyx or vonage")
        .reason(Reason::FieldValueRequired),
    validation = Rule::new("!has(self.fallbackNumber) || has(self.twilio) || has(self.telnyx)")
        .message("telephony.fallbackNumber is only used with twilio or telnyx (Vonage has no step after the stream)")
        .reason(Reason::FieldValueForbidden)
)]
#[serde(rename_all = "camelCase")]
pub struct TelephonySpec {
    /// The public base URL carriers reach the agent at (`https://voice.example.com`), exactly
    /// as entered in the carriers' consoles: signatures are checked over it. Defaults to the
    /// exposed host (`expose.ingress.host`, else the first of `expose.gateway.hostnames`) with
    /// `https://`. Set it when carriers reach the agent some other way.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 9, max = 253),
        regex(pattern = r"^https://[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*(:[0-9]{1,5})?$")
    )]
    pub public_url: Option<String>,

    /// How old a signed request may be (Telnyx's timestamp, Vonage's `iat`, the stream URLs
    /// and call tokens the agent hands out), between 10s and 1h.
    #[serde(default = "default_signature_tolerance")]
    #[x_kube(
        validation = Rule::new("duration(self) >= duration('10s') && duration(self) <= duration('1h')")
            .message("telephony.signatureTolerance must be between 10s and 1h")
    )]
    pub signature_tolerance: Duration,

    /// An E.164 number (`+15550100`) Twilio and Telnyx calls are transferred to when the agent
    /// ends the call itself (maximum duration, drain, model failure). Without it such calls
    /// hang up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^\+[0-9]{7,15}$"))]
    pub fallback_number: Option<String>,

    /// An instruction the model answers as soon as a call starts, so it speaks first (e.g.
    /// "Greet the caller and ask how you can help"). Replaces `prompt.greeting` for phone
    /// calls; a `greeting` setting in the webhook URL replaces both. Needs a model that takes
    /// text (Nova 2 Sonic or the Simulated model).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 2000))]
    pub greeting: Option<String>,

    /// Twilio Media Streams: webhook `POST /twilio/voice`, stream `/twilio`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub twilio: Option<TwilioSpec>,

    /// Telnyx media streaming through a TeXML application: webhook `POST /telnyx/voice`,
    /// stream `/telnyx`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub telnyx: Option<TelnyxSpec>,

    /// Vonage Voice API WebSocket: answer URL `GET /vonage/answer`, event URL
    /// `/vonage/events`, stream `/vonage`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vonage: Option<VonageSpec>,
}

/// Twilio's credentials.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TwilioSpec {
    /// The Secret key holding the account's Auth Token, which signs every webhook and stream
    /// (`X-Twilio-Signature`).
    pub auth_token_secret_ref: KeyRef,
}

/// Telnyx's credentials.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TelnyxSpec {
    /// The Secret key holding the account's public key (base64, from Mission Control), which
    /// verifies webhook signatures (`telnyx-signature-ed25519`).
    pub public_key_secret_ref: KeyRef,
    /// The Secret key holding a random secret of your own (at least 32 bytes, the same for
    /// every replica) that signs the stream URLs the agent hands out: Telnyx does not sign its
    /// WebSocket requests.
    pub stream_secret_ref: KeyRef,
}

/// Vonage's credentials and audio.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct VonageSpec {
    /// The Secret key holding the account's signature secret, which signs webhooks (an HS256
    /// JWT) and the stream URLs the agent hands out.
    pub signature_secret_ref: KeyRef,
    /// Sample rate of the call's linear PCM: 16000 (default) or 8000.
    #[serde(default = "default_vonage_rate")]
    #[x_kube(
        validation = Rule::new("self == 8000 || self == 16000")
            .message("telephony.vonage.sampleRate must be 8000 or 16000")
    )]
    pub sample_rate: i32,
}

/// The webhook URLs to enter in each enabled carrier's console.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct TelephonyStatus {
    /// Twilio: the phone number's (or TwiML App's) "A call comes in" webhook, HTTP POST.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub twilio: Option<VoiceWebhook>,
    /// Telnyx: the TeXML application's voice URL, POST.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub telnyx: Option<VoiceWebhook>,
    /// Vonage: the Voice application's answer URL (GET) and event URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vonage: Option<VonageWebhooks>,
}

/// A carrier's call-setup webhook.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct VoiceWebhook {
    /// `https://<host>/<carrier>/voice`.
    pub voice_url: String,
}

/// Vonage's two webhooks.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct VonageWebhooks {
    /// `https://<host>/vonage/answer`, HTTP GET.
    pub answer_url: String,
    /// `https://<host>/vonage/events`.
    pub event_url: String,
}

impl TelephonySpec {
    /// The agent's path prefixes of the enabled carriers.
    pub fn paths(&self) -> Vec<&'static str> {
        [
            (self.twilio.is_some(), TWILIO_PATH),
            (self.telnyx.is_some(), TELNYX_PATH),
            (self.vonage.is_some(), VONAGE_PATH),
        ]
        .into_iter()
        .filter_map(|(on, path)| on.then_some(path))
        .collect()
    }

    /// The webhook URLs of the enabled carriers under `base` (`https://host`).
    pub fn webhooks(&self, base: &str) -> TelephonyStatus {
        let voice = |path: &str| VoiceWebhook {
            voice_url: format!("{base}{path}/voice"),
        };
        TelephonyStatus {
            twilio: self.twilio.as_ref().map(|_| voice(TWILIO_PATH)),
            telnyx: self.telnyx.as_ref().map(|_| voice(TELNYX_PATH)),
            vonage: self.vonage.as_ref().map(|_| VonageWebhooks {
                answer_url: format!("{base}{VONAGE_PATH}/answer"),
                event_url: format!("{base}{VONAGE_PATH}/events"),
            }),
        }
    }
}

fn default_signature_tolerance() -> Duration {
    Duration::from_secs(300)
}

fn default_vonage_rate() -> i32 {
    16_000
}
