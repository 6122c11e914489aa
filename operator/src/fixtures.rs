//! Test fixtures: a VoiceAgent as the apiserver would hand it over, and its validated form.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::api::{VoiceAgent, VoiceAgentSpec};
use crate::reconcile::dereference::Dereferenced;
use crate::reconcile::validate::{ValidatedAgent, validate};
use crate::reconcile::{Rejection, Settings};

pub const NAME: &str = "support";
pub const NAMESPACE: &str = "voice";
pub const UID: &str = "0b9d2c4e-5f61-4a7b-8c9d-0e1f2a3b4c5d";
pub const IMAGE: &str = "ghcr.io/voiceagent-dev/voice-agent:0.1.0";

/// The operator settings tests run with.
pub fn settings() -> Settings {
    Settings {
        agent_image: IMAGE.into(),
        gateway_api: true,
        envoy_gateway_policies: true,
        keda: true,
    }
}

/// A stored VoiceAgent `voice/support` with this spec.
pub fn agent(spec: VoiceAgentSpec) -> VoiceAgent {
    let mut agent = VoiceAgent::new(NAME, spec);
    agent.metadata = ObjectMeta {
        name: Some(NAME.into()),
        namespace: Some(NAMESPACE.into()),
        uid: Some(UID.into()),
        generation: Some(3),
        ..ObjectMeta::default()
    };
    agent
}

/// Validates a spec whose references (if any) are all resolved as given.
pub fn try_validated(spec: VoiceAgentSpec, dereferenced: &Dereferenced) -> Result<ValidatedAgent, Rejection> {
    validate(&agent(spec), dereferenced, &settings())
}

/// Validates a spec that refers to nothing outside itself.
pub fn validated(spec: VoiceAgentSpec) -> ValidatedAgent {
    try_validated(spec, &Dereferenced::default()).expect("valid spec")
}

/// Parses a spec from YAML, as `kubectl apply` would send it.
pub fn spec(yaml: &str) -> VoiceAgentSpec {
    serde_saphyr::from_str(yaml).expect("spec parses")
}
