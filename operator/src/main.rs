//! `voice-operator`: prints the CRD (`crd`), or runs the controller.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context as _, anyhow, bail};
use clap::Parser;
use kube::api::{Api, ListParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::events::Reporter;
use kube::{Client, Config};
use tokio_util::sync::CancellationToken;

use voice_operator::api::{self, VoiceAgent};
use voice_operator::cli::{Cli, Command, RunArgs};
use voice_operator::controller::{self, Context, Scope};
use voice_operator::discovery::{self, ServedApis};
use voice_operator::metrics::Metrics;
use voice_operator::reconcile::Settings;
use voice_operator::{admin, leader, telemetry};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Crd) => {
            print!("{}", api::crd_yaml().context("rendering the CRD")?);
            Ok(())
        }
        None => {
            let telemetry = telemetry::init(cli.run.log_format, &cli.run.log)
                .map_err(|e| anyhow!(e))
                .context("setting up logs and traces")?;
            let result = run(cli.run).await;
            // Exporting the last spans blocks until the collector answers (or times out).
            if let Err(err) = tokio::task::spawn_blocking(move || telemetry.shutdown()).await {
                tracing::warn!(error = %err, "flushing traces failed");
            }
            result
        }
    }
}

async fn run(args: RunArgs) -> anyhow::Result<()> {
    let shutdown = CancellationToken::new();
    tokio::spawn(cancel_on_signal(shutdown.clone()));

    let config = match &args.kubeconfig {
        Some(path) => {
            let kubeconfig =
                Kubeconfig::read_from(path).with_context(|| format!("reading kubeconfig {}", path.display()))?;
            Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await?
        }
        None => Config::infer().await.context("no kubeconfig and not in a cluster")?,
    };
    let default_namespace = config.default_namespace.clone();
    let client = Client::try_from(config).context("building the Kubernetes client")?;
    let scope = match &args.namespace {
        Some(ns) => Scope::Namespace(ns.clone()),
        None => Scope::Cluster,
    };

    let metrics = Arc::new(Metrics::new());
    let ready = Arc::new(AtomicBool::new(false));
    let admin_state = admin::AdminState {
        metrics: metrics.clone(),
        ready: ready.clone(),
    };
    let listener = admin::bind(args.admin_addr)
        .await
        .with_context(|| format!("binding the admin address {}", args.admin_addr))?;
    let admin = tokio::spawn(admin::serve(listener, admin_state, shutdown.clone().cancelled_owned()));

    check_crd(&client, &scope).await?;
    let apis = discovery::served_apis(&client).await.unwrap_or_default();
    tracing::info!(?apis, ?scope, "startup checks passed");
    ready.store(true, Ordering::Release);

    let identity = args.identity.clone().unwrap_or_else(default_identity);
    let controller = ControllerSetup {
        client: client.clone(),
        scope,
        agent_image: args.agent_image.clone(),
        reporter: Reporter {
            controller: "voice-operator".into(),
            instance: Some(identity.clone()),
        },
        metrics: metrics.clone(),
        resync: args.resync,
        discovery_interval: args.api_discovery_interval,
        apis,
    };

    let result = if args.leader_election {
        let namespace = args
            .lease_namespace
            .clone()
            .or_else(|| std::env::var("POD_NAMESPACE").ok())
            .unwrap_or(default_namespace);
        lead(controller, &args, &namespace, &identity, &metrics, &shutdown).await
    } else {
        metrics.leader.set(1);
        controller.run(shutdown.child_token()).await;
        Ok(())
    };
    metrics.leader.set(0);
    shutdown.cancel();
    match admin.await {
        Ok(Ok(())) => {}
        Ok(Err(err)) => tracing::warn!(error = %err, "admin server failed"),
        Err(err) => tracing::warn!(error = %err, "admin server task failed"),
    }
    tracing::info!("stopped");
    result
}

/// What the controller is built from; it is rebuilt when the served APIs change.
struct ControllerSetup {
    client: Client,
    scope: Scope,
    agent_image: String,
    reporter: Reporter,
    metrics: Arc<Metrics>,
    resync: std::time::Duration,
    discovery_interval: std::time::Duration,
    /// What the apiserver served at the last discovery.
    apis: ServedApis,
}

impl ControllerSetup {
    /// Runs the controller until `stop` is cancelled. When the cluster starts or stops serving
    /// an optional API (its CRDs were installed or removed), the running controller finishes its
    /// reconciles and a new one starts with the matching watches and settings.
    async fn run(mut self, stop: CancellationToken) {
        loop {
            let settings = Settings {
                agent_image: self.agent_image.clone(),
                gateway_api: self.apis.gateway_api,
                envoy_gateway_policies: self.apis.envoy_gateway_policies,
                keda: self.apis.keda,
            };
            let ctx = Arc::new(Context::new(
                self.client.clone(),
                settings,
                self.metrics.clone(),
                self.reporter.clone(),
                self.resync,
            ));
            let generation = stop.child_token();
            let client = self.client.clone();
            let (known, interval, on_change) = (self.apis, self.discovery_interval, generation.clone());
            let discovery = tokio::spawn(async move {
                let now = discovery::changed(&client, known, interval).await;
                on_change.cancel();
                now
            });
            controller::run(ctx, self.scope.clone(), generation.cancelled_owned()).await;
            if stop.is_cancelled() {
                discovery.abort();
                return;
            }
            match discovery.await {
                Ok(apis) => {
                    tracing::info!(?apis, previous = ?self.apis, "served APIs changed; restarting the controller");
                    self.apis = apis;
                }
                Err(err) => {
                    tracing::warn!(error = %err, "API discovery task failed; restarting the controller");
                }
            }
        }
    }
}

/// Runs the controller while holding the Lease.
async fn lead(
    controller: ControllerSetup,
    args: &RunArgs,
    namespace: &str,
    identity: &str,
    metrics: &Metrics,
    shutdown: &CancellationToken,
) -> anyhow::Result<()> {
    let mut election = leader::start(
        controller.client.clone(),
        namespace,
        &args.lease_name,
        identity,
        args.lease_duration,
    )
    .await
    .with_context(|| format!("starting leader election on Lease {namespace}/{}", args.lease_name))?;
    tracing::info!(lease = %args.lease_name, %namespace, %identity, "waiting to lead");
    tokio::select! {
        acquired = election.acquired() => {
            if !acquired {
                bail!("leader election ended before this process could lead");
            }
        }
        () = shutdown.cancelled() => {
            election.release().await;
            return Ok(());
        }
    }
    metrics.leader.set(1);
    tracing::info!("leading: starting the controller");

    // The controller stops on shutdown or when the Lease is lost, whichever comes first.
    let stop = shutdown.child_token();
    let lost = election.lost();
    let on_loss = stop.clone();
    let watcher = tokio::spawn(async move {
        lost.await;
        on_loss.cancel();
    });
    controller.run(stop.clone()).await;
    watcher.abort();
    let lost_lease = !election.leads() && !shutdown.is_cancelled();
    election.release().await;
    if lost_lease {
        bail!("lost the leader Lease; exiting so a restart competes again");
    }
    Ok(())
}

async fn check_crd(client: &Client, scope: &Scope) -> anyhow::Result<()> {
    let agents: Api<VoiceAgent> = match scope {
        Scope::Cluster => Api::all(client.clone()),
        Scope::Namespace(ns) => Api::namespaced(client.clone(), ns),
    };
    agents
        .list(&ListParams::default().limit(1))
        .await
        .context("cannot list VoiceAgents: is the CRD installed (`voice-operator crd | kubectl apply -f -`) and may this identity list them?")?;
    Ok(())
}

fn default_identity() -> String {
    if let Ok(pod) = std::env::var("POD_NAME") {
        return pod;
    }
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "voice-operator".into());
    format!("{host}-{}", std::process::id())
}

async fn cancel_on_signal(token: CancellationToken) {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(err) => {
                tracing::warn!(error = %err, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    let signal = tokio::select! {
        _ = tokio::signal::ctrl_c() => "SIGINT",
        () = terminate => "SIGTERM",
    };
    // Cancel first: nothing, not even logging, may stand between a signal and the shutdown.
    token.cancel();
    tracing::info!(signal, "shutting down");
}
