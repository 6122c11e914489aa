//! `fake-bedrock`: serves the Bedrock-wire fake until SIGTERM or SIGINT.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use fake_bedrock::Limits;
use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;
use tracing::error;
use voice_telemetry::LogFormat;

/// A local imitation of Amazon Bedrock's Nova Sonic bidirectional stream, for development and
/// tests: it speaks the real wire protocol (HTTP/2, event stream framing, SigV4 envelopes) and
/// answers with the agent's conversation simulator. Prints the endpoint (and CA file) as JSON.
#[derive(Debug, Parser)]
#[command(name = "fake-bedrock", version)]
struct Args {
    /// Address to listen on.
    #[arg(long, env = "FAKE_BEDROCK_LISTEN", default_value = "127.0.0.1:8443")]
    listen: SocketAddr,
    /// Serve plain HTTP (HTTP/1.1 and h2c) instead of TLS with HTTP/2.
    #[arg(long)]
    plain_http: bool,
    /// Where to write the self-signed certificate clients must trust (TLS mode).
    #[arg(long)]
    ca_file: Option<PathBuf>,
    /// Streams end with modelTimeoutException at this age, as Bedrock's do after about 8 minutes.
    #[arg(long, default_value = "8m", value_parser = humantime::parse_duration)]
    max_stream_age: Duration,
    /// Streams with no input event for this long end with "Timed out waiting for input events".
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    input_timeout: Duration,
    /// Streams without speech for this long end with the silence error (InternalErrorCode=531).
    #[arg(long, default_value = "175s", value_parser = humantime::parse_duration)]
    silence_timeout: Duration,
    /// The simulated model's pause before replying.
    #[arg(long, default_value = "250ms", value_parser = humantime::parse_duration)]
    think_time: Duration,
    /// Streams one HTTP/2 connection may carry at once, as the server advertises it (hyper's
    /// default; what Bedrock advertises is not published).
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u32).range(1..))]
    max_concurrent_streams: u32,
    /// How long a stream takes to end its response after the client ends its input.
    #[arg(long, default_value = "0s", value_parser = humantime::parse_duration)]
    close_delay: Duration,
    /// Stamp the first audio chunk of every reply with the time it is sent (its first 16 bytes:
    /// `FAKESTMP` and nanoseconds since the Unix epoch, u64 LE), so a client can measure the
    /// latency the agent adds between the fake's first reply byte and its own. For benchmarks:
    /// the stamp replaces 8 samples of the reply.
    #[arg(long)]
    stamp_replies: bool,
    /// Log format.
    #[arg(long, value_enum, default_value = "text")]
    log_format: LogFormat,
    /// Log filter.
    #[arg(long, default_value = "info")]
    log: String,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Err(e) = voice_telemetry::init(args.log_format, &args.log, "fake-bedrock", Vec::new()) {
        eprintln!("fake-bedrock: {e}");
        return ExitCode::from(2);
    }
    let limits = Limits {
        max_age: args.max_stream_age,
        input_timeout: args.input_timeout,
        silence_timeout: args.silence_timeout,
        think_time: args.think_time,
        max_concurrent_streams: args.max_concurrent_streams,
        close_delay: args.close_delay,
        stamp_replies: args.stamp_replies,
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("fake-bedrock: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        let shutdown = CancellationToken::new();
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        let stop = shutdown.clone();
        tokio::spawn(async move {
            tokio::select! { _ = term.recv() => {}, _ = int.recv() => {} }
            stop.cancel();
        });
        fake_bedrock::run(args.listen, !args.plain_http, args.ca_file, limits, shutdown).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}
