//! `voice-bench`: the benchmarks behind BENCHMARKS.md. `all` runs every section and writes the
//! report; `load` runs one load point against a server you started; `echo` is the floor server.

mod churn;
mod compare;
mod echo;
mod floor;
mod frame;
mod host;
mod load;
mod machine;
mod operator;
mod peers;
mod phone;
mod procfs;
mod ramp;
mod report;
mod resume;
mod servers;
mod suite;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "voice-bench", about = "Benchmarks for voice-agent and voice-operator")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the benchmark suite and write the report (BENCHMARKS.md).
    All(Box<AllArgs>),
    /// Run one load point against a server you started; prints the result as JSON.
    Load(LoadArgs),
    /// Compare agent builds at a fixed load (interleaved runs) and print a Markdown table.
    Compare(CompareArgs),
    /// Write the report again from the JSON of a run (`all --json`), without measuring.
    Report(ReportArgs),
    /// Serve the floor: a bare WebSocket echo with no session logic.
    Echo {
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: SocketAddr,
    },
}

#[derive(clap::Args)]
struct AllArgs {
    /// The short profile CI runs: a few sessions per relay, no searches, no operator.
    #[arg(long)]
    smoke: bool,
    /// The voice-agent binary to measure (build it with --release for real numbers).
    #[arg(long, env = "VOICE_BENCH_AGENT")]
    agent_bin: PathBuf,
    /// The Bedrock-wire fake for the Nova Sonic section [default: `fake-bedrock` next to the
    /// agent binary, where `cargo build -p fake-bedrock` puts it].
    #[arg(long, env = "VOICE_BENCH_FAKE_BEDROCK")]
    fake_bedrock_bin: Option<PathBuf>,
    /// The Python interpreter with bench/python/requirements.txt installed.
    #[arg(long, env = "VOICE_BENCH_PYTHON", default_value = "python3")]
    python: PathBuf,
    #[arg(long, default_value = "bench/python/relay.py")]
    relay_script: PathBuf,
    /// Python 3.12 with bench/python/requirements-strands.txt installed, for the Strands peer
    /// (without it the peer is skipped).
    #[arg(long, env = "VOICE_BENCH_STRANDS_PYTHON")]
    strands_python: Option<PathBuf>,
    /// Python 3.12 with bench/python/requirements-pipecat.txt installed, for the Pipecat peer
    /// (without it the peer is skipped).
    #[arg(long, env = "VOICE_BENCH_PIPECAT_PYTHON")]
    pipecat_python: Option<PathBuf>,
    /// Where strands_server.py and pipecat_server.py are.
    #[arg(long, default_value = "bench/python")]
    peer_scripts: PathBuf,
    /// The voice-operator binary, for the operator section.
    #[arg(long, env = "VOICE_BENCH_OPERATOR")]
    operator_bin: Option<PathBuf>,
    /// Where to write the report.
    #[arg(long, default_value = "BENCHMARKS.md")]
    out: PathBuf,
    /// Also write every measurement as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Hand-written record of tuning changes, included in the report.
    #[arg(long, default_value = "bench/tuning.md")]
    tuning: PathBuf,
    /// CPUs for the servers under test (`taskset -c` list); empty to leave them unpinned.
    #[arg(long, default_value = "0")]
    server_cpus: String,
    /// CPUs for this process (the load generator) and the Bedrock fake; empty for no pinning.
    #[arg(long, default_value = "1")]
    generator_cpus: String,
    /// Run only these sections (comma-separated).
    #[arg(long, value_enum, value_delimiter = ',')]
    only: Vec<suite::Section>,
    /// The command shown in the report as the way to reproduce it.
    #[arg(long, default_value = "make bench")]
    command_line: String,
    /// Longest wait for a quiet machine before each section [default: the profile's, 5 minutes
    /// in full runs]; `0s` measures at once and never repeats a noisy point (numbers from a busy
    /// machine are then only indicative).
    #[arg(long, value_parser = humantime_duration)]
    quiet_wait: Option<Duration>,
}

#[derive(clap::Args)]
struct ReportArgs {
    /// The measurements, as `all --json` wrote them.
    #[arg(long)]
    json: PathBuf,
    #[arg(long, default_value = "BENCHMARKS.md")]
    out: PathBuf,
    #[arg(long, default_value = "bench/tuning.md")]
    tuning: PathBuf,
    #[arg(long, default_value = "make bench")]
    command_line: String,
}

#[derive(clap::Args)]
struct CompareArgs {
    /// Agent binaries to compare (two or more).
    #[arg(long = "agent-bin", required = true, num_args = 1..)]
    agents: Vec<PathBuf>,
    #[arg(long, default_value_t = 800)]
    sessions: usize,
    #[arg(long, default_value_t = 1000)]
    idle_sessions: usize,
    /// Runs per build and encoding; the table shows medians.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Also run the floor (the bare echo) in the rotation, and give each build's CPU per
    /// session-second and memory per active session as multiples of the floor's.
    #[arg(long)]
    floor: bool,
    /// Longest wait for a quiet machine before each point; `0s` measures at once (on a shared
    /// machine, where the alternation is what keeps the comparison fair).
    #[arg(long, default_value = "5m", value_parser = humantime_duration)]
    quiet_wait: Duration,
    #[arg(long, default_value = "0")]
    server_cpus: String,
    #[arg(long, default_value = "1")]
    generator_cpus: String,
}

#[derive(clap::Args)]
struct LoadArgs {
    /// The server's WebSocket URL without query, e.g. ws://127.0.0.1:8080/ws.
    #[arg(long)]
    url: String,
    #[arg(long, default_value_t = 100)]
    sessions: usize,
    #[arg(long, value_enum, default_value = "binary")]
    encoding: frame::Encoding,
    /// The event schema to ask the server for (voice-agent's `?protocol=`).
    #[arg(long, value_enum, default_value = "strands-1.40")]
    protocol: frame::Protocol,
    #[arg(long, value_enum, default_value = "loopback")]
    workload: load::Workload,
    #[arg(long, default_value = "2s", value_parser = humantime_duration)]
    warmup: Duration,
    #[arg(long, default_value = "8s", value_parser = humantime_duration)]
    measure: Duration,
    /// The server's process id, for its CPU and memory.
    #[arg(long)]
    pid: Option<u32>,
}

fn humantime_duration(s: &str) -> Result<Duration, String> {
    let (number, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = number.parse().map_err(|_| format!("not a duration: {s}"))?;
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "s" | "" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n * 60)),
        _ => Err(format!("not a duration: {s} (use ms, s or m)")),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::All(args) => all(*args),
        Command::Load(args) => runtime().and_then(|rt| rt.block_on(load_once(args))),
        Command::Compare(args) => compare(args),
        Command::Report(args) => rewrite_report(&args),
        Command::Echo { listen } => runtime().and_then(|rt| rt.block_on(echo::serve(listen))),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("voice-bench: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// One thread: the generator and the echo server each own one pinned core.
fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("build the async runtime")
}

async fn load_once(args: LoadArgs) -> anyhow::Result<()> {
    let spec = load::PointSpec {
        url: args.url,
        sessions: args.sessions,
        encoding: args.encoding,
        protocol: args.protocol,
        workload: args.workload,
        warmup: args.warmup,
        measure: args.measure,
    };
    let result = load::run_point(&spec, args.pid, None).await;
    println!("{}", serde_json::to_string_pretty(&result)?);
    Ok(())
}

fn all(args: AllArgs) -> anyhow::Result<()> {
    let cpus = |s: &str| (!s.trim().is_empty()).then(|| s.trim().to_owned());
    let generator_cpus = cpus(&args.generator_cpus);
    if let Some(cpus) = &generator_cpus {
        pin_self(cpus)?;
    }
    let scratch = std::env::temp_dir().join(format!("voice-bench-{}", std::process::id()));
    std::fs::create_dir_all(&scratch).with_context(|| format!("create {}", scratch.display()))?;
    let programs = servers::Programs {
        agent: args.agent_bin.clone(),
        fake_bedrock: args
            .fake_bedrock_bin
            .clone()
            .unwrap_or_else(|| args.agent_bin.with_file_name("fake-bedrock")),
        python: args.python.clone(),
        relay_script: args.relay_script.clone(),
        strands_python: args.strands_python.clone(),
        pipecat_python: args.pipecat_python.clone(),
        peer_scripts: args.peer_scripts.clone(),
        bench: std::env::current_exe().context("find this binary")?,
        server_cpus: cpus(&args.server_cpus),
        generator_cpus,
        scratch: scratch.clone(),
    };
    let mut profile = if args.smoke {
        suite::Profile::smoke()
    } else {
        suite::Profile::full()
    };
    if let Some(wait) = args.quiet_wait {
        profile.quiet_wait = wait;
    }
    let sections = if args.only.is_empty() {
        vec![
            suite::Section::Relay,
            suite::Section::Memory,
            suite::Section::Floor,
            suite::Section::Sdk,
            suite::Section::Peers,
            suite::Section::Operator,
            suite::Section::Churn,
            suite::Section::Phone,
        ]
    } else {
        args.only.clone()
    };
    let suite = suite::Suite {
        host: host::Host::new(profile.host_probe_sessions),
        profile,
        programs,
        sections,
        operator: operator::Setup {
            operator_bin: args.operator_bin.clone(),
            scratch: scratch.clone(),
        },
    };
    // On SIGINT or SIGTERM the suite is dropped, and with it every server it started.
    let result = runtime()?.block_on(async {
        tokio::select! {
            result = suite.run() => result,
            signal = interrupted() => Err(anyhow::anyhow!("stopped by {signal}")),
        }
    });
    let _ = std::fs::remove_dir_all(&scratch);
    let result = result?;

    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&result)?)
            .with_context(|| format!("write {}", path.display()))?;
    }
    let tuning = std::fs::read_to_string(&args.tuning).ok();
    let markdown = report::render(&result, &args.command_line, tuning.as_deref());
    std::fs::write(&args.out, markdown).with_context(|| format!("write {}", args.out.display()))?;
    eprintln!(
        "voice-bench: wrote {} after {:.0} s",
        args.out.display(),
        result.seconds
    );
    if args.smoke {
        smoke_checks(&result)?;
    }
    Ok(())
}

fn rewrite_report(args: &ReportArgs) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&args.json).with_context(|| format!("read {}", args.json.display()))?;
    let result: suite::SuiteResult = serde_json::from_str(&text).context("parse the measurements")?;
    let tuning = std::fs::read_to_string(&args.tuning).ok();
    let markdown = report::render(&result, &args.command_line, tuning.as_deref());
    std::fs::write(&args.out, markdown).with_context(|| format!("write {}", args.out.display()))
}

fn compare(args: CompareArgs) -> anyhow::Result<()> {
    let cpus = |s: &str| (!s.trim().is_empty()).then(|| s.trim().to_owned());
    let generator_cpus = cpus(&args.generator_cpus);
    if let Some(cpus) = &generator_cpus {
        pin_self(cpus)?;
    }
    let scratch = std::env::temp_dir().join(format!("voice-bench-{}", std::process::id()));
    std::fs::create_dir_all(&scratch)?;
    let comparison = compare::Comparison {
        programs: servers::Programs {
            agent: PathBuf::new(),
            fake_bedrock: PathBuf::new(),
            python: PathBuf::from("python3"),
            relay_script: PathBuf::new(),
            strands_python: None,
            pipecat_python: None,
            peer_scripts: PathBuf::new(),
            bench: std::env::current_exe()?,
            server_cpus: cpus(&args.server_cpus),
            generator_cpus,
            scratch: scratch.clone(),
        },
        binaries: args.agents,
        sessions: args.sessions,
        idle_sessions: args.idle_sessions,
        runs: args.runs,
        floor: args.floor,
        quiet_wait: args.quiet_wait,
    };
    let table = runtime()?.block_on(compare::run(&comparison));
    let _ = std::fs::remove_dir_all(&scratch);
    println!("{}", table?);
    Ok(())
}

async fn interrupted() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    match (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) {
        (Ok(mut int), Ok(mut term)) => tokio::select! {
            _ = int.recv() => "SIGINT",
            _ = term.recv() => "SIGTERM",
        },
        _ => std::future::pending().await,
    }
}

/// Moves this process (all its threads) to `cpus`, before the runtime starts.
fn pin_self(cpus: &str) -> anyhow::Result<()> {
    let status = std::process::Command::new("taskset")
        .args(["-a", "-p", "-c", cpus, &std::process::id().to_string()])
        .stdout(std::process::Stdio::null())
        .status()
        .context("run taskset")?;
    anyhow::ensure!(status.success(), "taskset could not pin the generator to CPUs {cpus}");
    Ok(())
}

/// The smoke proves the tooling works end to end, not that the machine is fast: every relay
/// connected its sessions and echoed audio, the host probe measured the floor, and the
/// production path produced reply audio.
fn smoke_checks(result: &suite::SuiteResult) -> anyhow::Result<()> {
    anyhow::ensure!(
        result.host.probes.iter().any(|p| p.cpu_us_per_session_second > 0.0),
        "the host probe measured nothing: {:?}",
        result.host
    );
    for relay in &result.relays {
        for point in &relay.confirmation {
            anyhow::ensure!(
                point.connected == point.sessions && point.frames_echoed > 0,
                "{} ({}): {} of {} sessions connected, {} frames echoed; errors: {:?}",
                relay.relay.label(),
                relay.encoding.as_str(),
                point.connected,
                point.sessions,
                point.frames_echoed,
                point.errors
            );
        }
    }
    for memory in &result.memory {
        anyhow::ensure!(
            memory.idle.connected == memory.idle.sessions,
            "{}: idle sessions did not all connect: {:?}",
            memory.relay.label(),
            memory.idle.errors
        );
    }
    if let Some(cost) = &result.floor_cost {
        for row in &cost.rows {
            for point in row.agent.iter().chain(&row.echo) {
                anyhow::ensure!(
                    point.connected == point.sessions && point.frames_echoed > 0,
                    "against the floor ({}): {} of {} sessions connected, {} frames echoed; errors: {:?}",
                    row.encoding.as_str(),
                    point.connected,
                    point.sessions,
                    point.frames_echoed,
                    point.errors
                );
            }
        }
    }
    if let Some(churn) = &result.churn {
        anyhow::ensure!(churn.passed(), "churn: {}", churn.problems.join("; "));
    }
    if let Some(phone) = &result.phone {
        for point in &phone.points {
            anyhow::ensure!(
                point.connected == point.calls && point.frames_out_per_second > 0.0 && point.marks_per_second > 0.0,
                "phone: {} of {} calls connected, {:.0} agent frames/s, {:.0} marks/s; failures: {:?}",
                point.connected,
                point.calls,
                point.frames_out_per_second,
                point.marks_per_second,
                point.failures
            );
        }
    }
    if let Some(skipped) = &result.resume_skipped {
        anyhow::bail!("resumption: not measured: {skipped}");
    }
    if let Some(resume) = &result.resume {
        anyhow::ensure!(
            resume.resumed == resume.conversations && resume.close_to_first_audio.count > 0,
            "resumption: {} of {} conversations resumed and answered: {:?}",
            resume.resumed,
            resume.conversations,
            resume.failures
        );
    }
    if let Some(peers) = &result.peers {
        for run in &peers.runs {
            let Some(ramp) = &run.ramp else {
                anyhow::bail!(
                    "{}: not measured: {}",
                    run.peer.name(),
                    run.skipped.as_deref().unwrap_or("?")
                );
            };
            for (point, _) in &ramp.points {
                anyhow::ensure!(
                    point.connected == point.sessions
                        && point.replies.audio_chunks > 0
                        && point.reply_latency.count > 0,
                    "{} over Nova Sonic: {} of {} sessions connected, {} reply chunks, {} reply latencies; errors: {:?}",
                    run.peer.name(),
                    point.connected,
                    point.sessions,
                    point.replies.audio_chunks,
                    point.reply_latency.count,
                    point.errors
                );
            }
        }
    }
    if let Some(sdk) = &result.sdk {
        for (point, _) in &sdk.points {
            anyhow::ensure!(
                point.connected == point.sessions && point.replies.audio_chunks > 0,
                "NovaSonic path: {} of {} sessions connected, {} reply chunks; errors: {:?}",
                point.connected,
                point.sessions,
                point.replies.audio_chunks,
                point.errors
            );
        }
    }
    Ok(())
}
