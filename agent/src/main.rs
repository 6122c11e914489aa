use std::process::ExitCode;

use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};
use voice_agent::cli::{Cli, Command, ServeArgs};
use voice_agent::server::Agent;
use voice_telemetry as telemetry;

fn main() -> ExitCode {
    // One TLS provider for every client in the process (Bedrock, JWKS, MCP, Redis): aws-lc-rs,
    // the one they are all built with. Libraries that ask for the default get it.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let cli = Cli::parse_or_exit();
    match cli.command {
        Some(Command::Config(args)) => print_config(&args),
        Some(Command::Serve(args)) => serve(args),
        Some(Command::Talk(args)) => voice_agent::talk::main(args),
        Some(Command::Call(args)) => voice_agent::call::main(args),
        None => serve(cli.serve),
    }
}

fn print_config(args: &ServeArgs) -> ExitCode {
    match args.load_config() {
        Ok(config) => {
            print!("{}", config.to_yaml());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("voice-agent: {e}");
            ExitCode::from(2)
        }
    }
}

fn serve(args: ServeArgs) -> ExitCode {
    let config = match args.load_config() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("voice-agent: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("voice-agent: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Inside the runtime's context: a gRPC trace exporter needs it.
    let telemetry = {
        let _context = runtime.enter();
        telemetry::init(
            args.log_format,
            &args.log,
            "voice-agent",
            resource_attributes(&config.name),
        )
    };
    let telemetry = match telemetry {
        Ok(telemetry) => telemetry,
        Err(e) => {
            eprintln!("voice-agent: {e}");
            return ExitCode::from(2);
        }
    };
    let result = runtime.block_on(run(config));
    telemetry.shutdown();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

/// What traces say about this process: the agent's name, and where it runs in Kubernetes
/// (the operator passes the namespace and pod name through the downward API).
fn resource_attributes(name: &str) -> Vec<opentelemetry::KeyValue> {
    let mut attributes = vec![opentelemetry::KeyValue::new("voiceagent.name", name.to_owned())];
    attributes.extend(telemetry::pod_attributes());
    attributes
}

async fn run(config: voice_config::ValidConfig) -> anyhow::Result<()> {
    let listen = config.listen;
    let agent = Agent::new(config).await?;
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {listen}: {e}"))?;
    let local = listener.local_addr()?;
    info!(address = %local, name = agent.name(), model = agent.model_id(), "voice agent listening");

    let shutdown = CancellationToken::new();
    let signals = watch_signals(shutdown.clone(), agent.clone())?;
    agent.serve(listener, shutdown).await?;
    signals.abort();
    info!("stopped");
    Ok(())
}

/// First SIGTERM/SIGINT starts the drain; a second one closes live sessions at once.
fn watch_signals(
    shutdown: CancellationToken,
    agent: std::sync::Arc<Agent>,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(tokio::spawn(async move {
        let mut received = 0;
        loop {
            let name = tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = int.recv() => "SIGINT",
            };
            received += 1;
            if received == 1 {
                info!(signal = name, "shutdown requested");
                shutdown.cancel();
            } else {
                warn!(signal = name, "second signal: closing live sessions now");
                agent.close_sessions_now();
            }
        }
    }))
}
