//! Command line: every flag also reads an environment variable, defaults live here.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};

pub use crate::telemetry::LogFormat;

/// Agent image used when a VoiceAgent names none: the agent release matching this operator.
pub const DEFAULT_AGENT_IMAGE: &str = concat!("ghcr.io/voiceagent-dev/voice-agent:", env!("CARGO_PKG_VERSION"));

/// Kubernetes operator for VoiceAgents. Without a subcommand it runs the controller against the
/// current kubeconfig context, or the in-cluster configuration inside a pod.
#[derive(Debug, Parser)]
#[command(name = "voice-operator", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print the VoiceAgent CustomResourceDefinition as YAML.
    Crd,
}

/// Settings of the controller.
#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    /// Kubeconfig to use instead of $KUBECONFIG, ~/.kube/config or the in-cluster
    /// configuration.
    #[arg(long, env = "VOICE_OPERATOR_KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,

    /// Watch VoiceAgents in this namespace only (the RBAC then needs only a Role there).
    /// Default: every namespace.
    #[arg(long, env = "VOICE_OPERATOR_NAMESPACE")]
    pub namespace: Option<String>,

    /// Agent image for VoiceAgents that do not name one.
    #[arg(long, env = "VOICE_OPERATOR_AGENT_IMAGE", default_value = DEFAULT_AGENT_IMAGE)]
    pub agent_image: String,

    /// Address of the admin server (/metrics, /healthz, /readyz).
    #[arg(long, env = "VOICE_OPERATOR_ADMIN_ADDR", default_value = "0.0.0.0:8081")]
    pub admin_addr: SocketAddr,

    /// How often an unchanged VoiceAgent is checked again for drift of its children.
    #[arg(long, env = "VOICE_OPERATOR_RESYNC", default_value = "10m", value_parser = humantime::parse_duration)]
    pub resync: Duration,

    /// How often the operator asks the apiserver which optional APIs it serves (Gateway API,
    /// Envoy Gateway policies), so CRDs installed or removed later take effect without a
    /// restart. One discovery read per interval; no writes.
    #[arg(long, env = "VOICE_OPERATOR_API_DISCOVERY_INTERVAL", default_value = "30s", value_parser = humantime::parse_duration)]
    pub api_discovery_interval: Duration,

    /// Run the controller only while holding the leader Lease, so several replicas can run.
    #[arg(long, env = "VOICE_OPERATOR_LEADER_ELECTION", default_value_t = true, action = clap::ArgAction::Set)]
    pub leader_election: bool,

    /// Name of the leader Lease.
    #[arg(long, env = "VOICE_OPERATOR_LEASE_NAME", default_value = "voice-operator")]
    pub lease_name: String,

    /// Namespace of the leader Lease. Default: $POD_NAMESPACE, else the kubeconfig's
    /// namespace.
    #[arg(long, env = "VOICE_OPERATOR_LEASE_NAMESPACE")]
    pub lease_namespace: Option<String>,

    /// How long a Lease holder stays leader without renewing; a crashed leader is replaced
    /// after at most this long.
    #[arg(long, env = "VOICE_OPERATOR_LEASE_DURATION", default_value = "15s", value_parser = humantime::parse_duration)]
    pub lease_duration: Duration,

    /// Identity in the Lease and in Events. Default: $POD_NAME, else host name and process id.
    #[arg(long, env = "VOICE_OPERATOR_IDENTITY")]
    pub identity: Option<String>,

    /// Log format.
    #[arg(long, env = "VOICE_OPERATOR_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Log filter, in `RUST_LOG` syntax.
    #[arg(long, env = "VOICE_OPERATOR_LOG", default_value = "info")]
    pub log: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_subcommand_runs_the_controller_with_defaults() {
        let cli = Cli::try_parse_from(["voice-operator"]).expect("parses");
        assert!(cli.command.is_none());
        assert!(cli.run.leader_election);
        assert_eq!(cli.run.resync, Duration::from_secs(600));
        assert_eq!(cli.run.agent_image, DEFAULT_AGENT_IMAGE);
    }

    #[test]
    fn crd_subcommand_and_flags() {
        let cli = Cli::try_parse_from(["voice-operator", "crd"]).expect("parses");
        assert!(matches!(cli.command, Some(Command::Crd)));
        let cli = Cli::try_parse_from([
            "voice-operator",
            "--leader-election=false",
            "--namespace",
            "voice",
            "--log-format",
            "json",
            "--lease-duration",
            "5s",
        ])
        .expect("parses");
        assert!(!cli.run.leader_election);
        assert_eq!(cli.run.namespace.as_deref(), Some("voice"));
        assert_eq!(cli.run.log_format, LogFormat::Json);
        assert_eq!(cli.run.lease_duration, Duration::from_secs(5));
    }
}
