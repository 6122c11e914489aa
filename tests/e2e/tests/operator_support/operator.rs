//! The operator binary as the suites run it: a [`Process`] under the test's operator account,
//! watching only the test namespace, with short resync and lease periods.

use std::collections::BTreeMap;
use std::ops::Deref;
use std::process::ExitStatus;

use tokio::process::Command;
use voice_e2e::process::{Process, free_addr};
use voice_e2e::workspace;

use super::OperatorEnv;

/// A running `voice-operator`; [`Process`] gives its admin endpoint, metrics and log.
pub struct Operator {
    process: Process,
    /// Its leader-election identity.
    pub identity: String,
}

impl Operator {
    /// Starts the binary as the test's operator account, watching only the test namespace,
    /// and waits for `/readyz`. `overrides` replace or add flags (`("--resync", "1s")`);
    /// `variables` are added to its environment.
    pub(super) async fn start(
        env: &OperatorEnv,
        n: usize,
        overrides: &[(&str, &str)],
        variables: &[(&str, &str)],
    ) -> anyhow::Result<Self> {
        let binary = workspace::operator_binary().await?;
        let admin = free_addr()?;
        let identity = format!("e2e-operator-{n}");

        let kubeconfig = env.account.path().to_string_lossy().into_owned();
        let admin_addr = admin.to_string();
        let mut flags: BTreeMap<&str, &str> = [
            ("--kubeconfig", kubeconfig.as_str()),
            ("--namespace", env.name()),
            ("--lease-namespace", env.name()),
            ("--admin-addr", admin_addr.as_str()),
            ("--identity", identity.as_str()),
            // Short enough that steady-state checks see many resyncs.
            ("--resync", "3s"),
            // Short enough that a successor of a killed operator leads soon.
            ("--lease-duration", "8s"),
            ("--log", "info,voice_operator=debug"),
        ]
        .into();
        flags.extend(overrides.iter().copied());

        let mut cmd = Command::new(&binary);
        for (flag, value) in &flags {
            cmd.arg(format!("{flag}={value}"));
        }
        cmd.env_remove("KUBECONFIG").envs(variables.iter().copied());
        let name = format!("voice-operator-{}-{identity}", env.name());
        let process = Process::start(cmd, &name, admin, "/readyz").await?;
        Ok(Self { process, identity })
    }

    /// SIGTERM, then waits for the exit.
    pub async fn stop(self) -> anyhow::Result<ExitStatus> {
        self.process.stop().await
    }

    /// SIGKILL: a crash.
    pub async fn kill(self) -> anyhow::Result<()> {
        self.process.kill().await
    }
}

impl Deref for Operator {
    type Target = Process;

    fn deref(&self) -> &Process {
        &self.process
    }
}
