//! The ConfigMap and Secret keys the agent reads as files, in one table. Each entry says where
//! the spec names the key, where the file is mounted, and whether the agent re-reads it while
//! running. The table drives the references the dereference step reads and the watch mapper
//! follows ([`super::references`]), the pod's volumes and mounts
//! ([`super::build::build_deployment`]), the file paths in the rendered agent configuration
//! ([`super::agent_config`]) and the rollout checksum (re-read files stay out of it).
//!
//! A new mounted value is one entry here (and the field that points the agent at it). The
//! bearer tokens of `toolServers`, one per server, are the one list: each gets a volume and
//! directory named after its server ([`tool_server_token_path`]).

use std::path::PathBuf;

use super::references::SourceKind;
use crate::api::{
    AuthMode, KeyRef, ModelProvider, RedisSpec, ResumeStoreKind, ToolGatewayAuthType, ToolGatewaySpec, VoiceAgentSpec,
};

/// One file the agent may read from a ConfigMap or Secret key.
#[derive(Debug)]
pub struct Mount {
    /// Name of the pod volume.
    pub volume: &'static str,
    /// Directory the volume is mounted at. Each mounted source gets its own directory: a mount
    /// inside another ConfigMap volume would be at the mercy of the kubelet's updates.
    pub dir: &'static str,
    /// The file's name in `dir`.
    pub file: &'static str,
    /// Whether the agent re-reads the file while running (token files): changing the value
    /// must not roll the pods, so it stays out of the pod template's checksum.
    pub reread: bool,
    /// The key the spec mounts here, when the agent uses one.
    source: fn(&VoiceAgentSpec) -> Option<(SourceKind, &KeyRef)>,
}

/// The system prompt of `prompt.systemFrom`.
pub static PROMPT: Mount = Mount {
    volume: "prompt",
    dir: "/etc/voice-agent/prompt",
    file: "system.txt",
    reread: false,
    source: |spec| {
        let from = spec.prompt.as_ref()?.system_from.as_ref()?;
        match (&from.config_map_key_ref, &from.secret_key_ref) {
            (Some(r), _) => Some((SourceKind::ConfigMap, r)),
            (None, Some(r)) => Some((SourceKind::Secret, r)),
            (None, None) => None,
        }
    },
};

/// The CA bundle Nova Sonic's endpoint is verified with.
pub static MODEL_CA: Mount = Mount {
    volume: "ca-bundle",
    dir: "/etc/voice-agent/ca",
    file: "ca.pem",
    reread: false,
    source: |spec| {
        let nova = spec.model.nova_sonic.as_ref()?;
        let r = nova
            .ca_bundle
            .as_ref()
            .filter(|_| spec.model.provider == ModelProvider::NovaSonic)?;
        Some((SourceKind::ConfigMap, r))
    },
};

/// The access tokens callers present (auth mode Token).
pub static CALLER_TOKENS: Mount = Mount {
    volume: "auth-tokens",
    dir: "/etc/voice-agent/auth",
    file: "tokens",
    reread: true,
    source: |spec| {
        let auth = spec.auth.as_ref().filter(|a| a.mode == AuthMode::Token)?;
        Some((SourceKind::Secret, auth.token_secret_ref.as_ref()?))
    },
};

/// The CA bundle a JWT issuer's JWKS endpoint is verified with (auth mode Jwt).
pub static JWKS_CA: Mount = Mount {
    volume: "jwks-ca",
    dir: "/etc/voice-agent/jwks-ca",
    file: "ca.pem",
    reread: false,
    source: |spec| {
        let auth = spec.auth.as_ref().filter(|a| a.mode == AuthMode::Jwt)?;
        Some((SourceKind::ConfigMap, auth.jwt.as_ref()?.ca_bundle.as_ref()?))
    },
};

/// The bearer token the agent sends to its tool gateway (`gateway`, the one-server shorthand).
pub static GATEWAY_TOKEN: Mount = Mount {
    volume: "gateway-token",
    dir: "/etc/voice-agent/gateway",
    file: "token",
    reread: true,
    source: |spec| {
        let gateway = spec
            .gateway
            .as_ref()
            .filter(|g| g.auth.type_ == ToolGatewayAuthType::Bearer)?;
        Some((SourceKind::Secret, gateway.auth.token_secret_ref.as_ref()?))
    },
};

/// Where the servers of `toolServers` have their token directories, one per server.
pub const TOOL_SERVER_TOKENS_DIR: &str = "/etc/voice-agent/tool-servers";
/// Volume names of the tool server tokens: this prefix and the server's name.
const TOOL_SERVER_VOLUME_PREFIX: &str = "tool-server-";
/// The token file in each tool server's directory.
const TOOL_SERVER_TOKEN_FILE: &str = "token";

/// The Secret key a tool server's bearer token comes from, if it uses one.
pub fn bearer_token(server: &ToolGatewaySpec) -> Option<&KeyRef> {
    (server.auth.type_ == ToolGatewayAuthType::Bearer)
        .then_some(server.auth.token_secret_ref.as_ref())
        .flatten()
}

/// The file the agent reads the bearer token of tool server `server` from (set in its
/// configuration exactly when the server uses one).
pub fn tool_server_token_path(spec: &VoiceAgentSpec, server: &str) -> Option<PathBuf> {
    let entry = spec.tool_servers.iter().find(|s| s.name == server)?;
    bearer_token(&entry.server)?;
    Some(
        PathBuf::from(TOOL_SERVER_TOKENS_DIR)
            .join(server)
            .join(TOOL_SERVER_TOKEN_FILE),
    )
}

fn resume_redis(spec: &VoiceAgentSpec) -> Option<&RedisSpec> {
    let resume = spec.session.resume.as_ref()?;
    (resume.store == Some(ResumeStoreKind::Redis))
        .then_some(resume.redis.as_ref())
        .flatten()
}

/// The key stored conversations are encrypted with (session.resume).
pub static RESUME_KEY: Mount = Mount {
    volume: "resume-key",
    dir: "/etc/voice-agent/resume-key",
    file: "key",
    reread: false,
    source: |spec| {
        let resume = spec.session.resume.as_ref()?;
        Some((SourceKind::Secret, resume.encryption_key_secret_ref.as_ref()?))
    },
};

/// The CA bundle Redis's certificate is verified with.
pub static REDIS_CA: Mount = Mount {
    volume: "redis-ca",
    dir: "/etc/voice-agent/redis-ca",
    file: "ca.pem",
    reread: false,
    source: |spec| Some((SourceKind::ConfigMap, resume_redis(spec)?.ca_bundle.as_ref()?)),
};

/// The Redis ACL user name.
pub static REDIS_USERNAME: Mount = Mount {
    volume: "redis-username",
    dir: "/etc/voice-agent/redis-username",
    file: "username",
    reread: false,
    source: |spec| Some((SourceKind::Secret, resume_redis(spec)?.username_secret_ref.as_ref()?)),
};

/// The Redis password.
pub static REDIS_PASSWORD: Mount = Mount {
    volume: "redis-password",
    dir: "/etc/voice-agent/redis-password",
    file: "password",
    reread: false,
    source: |spec| Some((SourceKind::Secret, resume_redis(spec)?.password_secret_ref.as_ref()?)),
};

/// Twilio's Auth Token (telephony.twilio).
pub static TWILIO_AUTH_TOKEN: Mount = Mount {
    volume: "twilio-auth-token",
    dir: "/etc/voice-agent/twilio",
    file: "auth-token",
    reread: true,
    source: |spec| {
        let twilio = spec.telephony.as_ref()?.twilio.as_ref()?;
        Some((SourceKind::Secret, &twilio.auth_token_secret_ref))
    },
};

/// Telnyx's public key (telephony.telnyx).
pub static TELNYX_PUBLIC_KEY: Mount = Mount {
    volume: "telnyx-public-key",
    dir: "/etc/voice-agent/telnyx-public-key",
    file: "public-key",
    reread: true,
    source: |spec| {
        let telnyx = spec.telephony.as_ref()?.telnyx.as_ref()?;
        Some((SourceKind::Secret, &telnyx.public_key_secret_ref))
    },
};

/// The secret the agent signs Telnyx stream URLs with (telephony.telnyx).
pub static TELNYX_STREAM_SECRET: Mount = Mount {
    volume: "telnyx-stream-secret",
    dir: "/etc/voice-agent/telnyx-stream-secret",
    file: "stream-secret",
    reread: true,
    source: |spec| {
        let telnyx = spec.telephony.as_ref()?.telnyx.as_ref()?;
        Some((SourceKind::Secret, &telnyx.stream_secret_ref))
    },
};

/// Vonage's signature secret (telephony.vonage).
pub static VONAGE_SIGNATURE_SECRET: Mount = Mount {
    volume: "vonage-signature-secret",
    dir: "/etc/voice-agent/vonage",
    file: "signature-secret",
    reread: true,
    source: |spec| {
        let vonage = spec.telephony.as_ref()?.vonage.as_ref()?;
        Some((SourceKind::Secret, &vonage.signature_secret_ref))
    },
};

/// Every mounted file, in the order of the pod's volumes.
pub static MOUNTS: [&Mount; 13] = [
    &PROMPT,
    &MODEL_CA,
    &CALLER_TOKENS,
    &JWKS_CA,
    &GATEWAY_TOKEN,
    &RESUME_KEY,
    &REDIS_CA,
    &REDIS_USERNAME,
    &REDIS_PASSWORD,
    &TWILIO_AUTH_TOKEN,
    &TELNYX_PUBLIC_KEY,
    &TELNYX_STREAM_SECRET,
    &VONAGE_SIGNATURE_SECRET,
];

impl Mount {
    /// The ConfigMap or Secret key the spec mounts here, if the agent uses one.
    pub fn source<'a>(&self, spec: &'a VoiceAgentSpec) -> Option<(SourceKind, &'a KeyRef)> {
        (self.source)(spec)
    }

    /// Where the agent finds the file when it is mounted.
    pub fn path(&self) -> PathBuf {
        PathBuf::from(self.dir).join(self.file)
    }

    /// The file's path for the agent's configuration: set exactly when the spec mounts it.
    pub fn path_in(&self, spec: &VoiceAgentSpec) -> Option<PathBuf> {
        self.source(spec).map(|_| self.path())
    }
}

/// A file the spec mounts: which key of which object becomes which file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MountedFile {
    /// Name of the pod volume.
    pub volume: String,
    /// Directory the volume is mounted at.
    pub dir: String,
    /// The file's name in `dir`.
    pub file: &'static str,
    /// Whether the agent re-reads the file while running (see [`Mount::reread`]).
    pub reread: bool,
    pub kind: SourceKind,
    pub source: String,
    pub key: String,
}

impl MountedFile {
    /// Where the agent finds the file.
    pub fn path(&self) -> PathBuf {
        PathBuf::from(&self.dir).join(self.file)
    }
}

impl PartialEq for Mount {
    fn eq(&self, other: &Self) -> bool {
        // Entries are statics: one entry, one address.
        std::ptr::eq(self, other)
    }
}

impl Eq for Mount {}

/// Every file the spec mounts: the table's entries in order, then each tool server's token.
pub fn mounted_files(spec: &VoiceAgentSpec) -> Vec<MountedFile> {
    let table = MOUNTS.iter().filter_map(|&mount| {
        let (kind, r) = mount.source(spec)?;
        Some(MountedFile {
            volume: mount.volume.into(),
            dir: mount.dir.into(),
            file: mount.file,
            reread: mount.reread,
            kind,
            source: r.name.clone(),
            key: r.key.clone(),
        })
    });
    let tool_servers = spec.tool_servers.iter().filter_map(|server| {
        let r = bearer_token(&server.server)?;
        Some(MountedFile {
            volume: format!("{TOOL_SERVER_VOLUME_PREFIX}{}", server.name),
            dir: format!("{TOOL_SERVER_TOKENS_DIR}/{}", server.name),
            file: TOOL_SERVER_TOKEN_FILE,
            // Tokens are re-read on every request: a rotation rolls no pods.
            reread: true,
            kind: SourceKind::Secret,
            source: r.name.clone(),
            key: r.key.clone(),
        })
    });
    table.chain(tool_servers).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::spec;

    #[test]
    fn every_entry_has_its_own_volume_and_directory() {
        for (i, a) in MOUNTS.iter().enumerate() {
            for b in &MOUNTS[i + 1..] {
                assert_ne!(a.volume, b.volume);
                assert_ne!(a.dir, b.dir);
            }
        }
    }

    #[test]
    fn only_token_and_carrier_secret_files_are_reread() {
        let reread: Vec<&str> = MOUNTS.iter().filter(|m| m.reread).map(|m| m.volume).collect();
        assert_eq!(
            reread,
            [
                "auth-tokens",
                "gateway-token",
                "twilio-auth-token",
                "telnyx-public-key",
                "telnyx-stream-secret",
                "vonage-signature-secret"
            ]
        );
    }

    #[test]
    fn a_key_the_agent_does_not_use_is_not_mounted() {
        // A token Secret named outside Token mode, a CA bundle for another provider.
        let unused = spec(
            r#"
auth: {mode: None, tokenSecretRef: {name: callers, key: tokens}}
gateway: {url: "https://g.example.com/mcp", auth: {type: SigV4, tokenSecretRef: {name: gw, key: t}}}
"#,
        );
        assert_eq!(mounted_files(&unused), []);
        assert_eq!(CALLER_TOKENS.path_in(&unused), None);
    }

    #[test]
    fn each_tool_server_token_gets_its_own_volume_and_directory() {
        let s = spec(
            r#"
toolServers:
  - {name: crm, url: "https://crm.example.com/mcp", auth: {type: Bearer, tokenSecretRef: {name: crm-token, key: token}}}
  - {name: aws, url: "https://gw.example.com/mcp", auth: {type: SigV4}}
  - {name: erp, url: "https://erp.example.com/mcp", auth: {type: Bearer, tokenSecretRef: {name: erp, key: t}}}
"#,
        );
        let files: Vec<_> = mounted_files(&s)
            .into_iter()
            .map(|f| {
                (
                    f.volume.clone(),
                    f.path().display().to_string(),
                    f.source,
                    f.key,
                    f.reread,
                )
            })
            .collect();
        assert_eq!(
            files,
            [
                (
                    "tool-server-crm".to_owned(),
                    "/etc/voice-agent/tool-servers/crm/token".to_owned(),
                    "crm-token".to_owned(),
                    "token".to_owned(),
                    true
                ),
                (
                    "tool-server-erp".to_owned(),
                    "/etc/voice-agent/tool-servers/erp/token".to_owned(),
                    "erp".to_owned(),
                    "t".to_owned(),
                    true
                ),
            ]
        );
        assert_eq!(
            tool_server_token_path(&s, "crm").as_deref(),
            Some(std::path::Path::new("/etc/voice-agent/tool-servers/crm/token"))
        );
        assert_eq!(tool_server_token_path(&s, "aws"), None);
        // No table entry's volume or directory can clash with a server's.
        assert!(MOUNTS.iter().all(|m| !m.volume.starts_with(TOOL_SERVER_VOLUME_PREFIX)
            && !m.dir.starts_with(TOOL_SERVER_TOKENS_DIR)));
    }

    #[test]
    fn the_path_is_set_exactly_when_the_file_is_mounted() {
        let s = spec("prompt: {systemFrom: {configMapKeyRef: {name: prompts, key: p}}}");
        assert_eq!(
            PROMPT.path_in(&s).as_deref(),
            Some(std::path::Path::new("/etc/voice-agent/prompt/system.txt"))
        );
        let files = mounted_files(&s);
        assert_eq!(files.len(), 1);
        assert_eq!(files[0].volume, PROMPT.volume);
        assert_eq!(files[0].path(), PROMPT.path());
        assert_eq!(
            (files[0].kind, files[0].source.as_str()),
            (SourceKind::ConfigMap, "prompts")
        );
    }
}
