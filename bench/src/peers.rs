//! The same conversations on Nova Sonic through the stacks users run: voice-agent (its NovaSonic
//! provider through `aws-sdk-bedrockruntime`), a Strands `BidiAgent` per connection (the
//! prototype stack) and Pipecat's Nova Sonic service, each alone on the server core, against
//! the same Bedrock fake, under the same load and pass rule as the SDK section.
//!
//! Every stack speaks the Strands 1.62 schema to the generator with JSON audio (the agent with
//! `?protocol=strands-1.62`, the peers as their scripts serialize it), and the fake answers at
//! once (no think time), so the reply latency the generator measures is the server's round
//! trip to the model and back plus the fake's own fixed work.

use serde::{Deserialize, Serialize};

use crate::frame::{Encoding, Protocol};
use crate::load::{self, PointResult, PointSpec, Workload};
use crate::ramp::{self, Ramp, Verdict};
use crate::servers;
use crate::suite::{self, Suite};

/// The fake replies as soon as it detects the end of a turn, and stamps each reply's first audio
/// with its send time (the one-way latency downstream of the fake).
const FAKE_ARGS: [&str; 3] = ["--think-time", "0s", "--stamp-replies"];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Peer {
    Agent,
    Strands,
    Pipecat,
}

impl Peer {
    pub const ALL: [Peer; 3] = [Peer::Agent, Peer::Strands, Peer::Pipecat];

    pub fn label(self) -> &'static str {
        match self {
            Self::Agent => "voice-agent (Rust, 1 worker thread)",
            Self::Strands => "Strands `BidiAgent` behind `websockets` (asyncio)",
            Self::Pipecat => "Pipecat Nova Sonic service behind its FastAPI WebSocket transport (asyncio)",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Agent => "voice-agent",
            Self::Strands => "Strands",
            Self::Pipecat => "Pipecat",
        }
    }
}

/// One stack's capacity search (or single smoke point).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PeerRun {
    pub peer: Peer,
    pub ramp: Option<Ramp>,
    /// Why the stack was not measured.
    pub skipped: Option<String>,
}

/// voice-agent and one peer at the same number of conversations: the peer's capacity.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EqualLoad {
    pub peer: Peer,
    pub sessions: usize,
    pub agent: PointResult,
    pub other: PointResult,
    /// voice-agent's point was measured for the comparison (the full profile), not taken from its
    /// search (the smoke).
    #[serde(default)]
    pub fresh: bool,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PeersResult {
    pub runs: Vec<PeerRun>,
    pub equal_load: Vec<EqualLoad>,
}

impl PeersResult {
    pub fn run(&self, peer: Peer) -> Option<&PeerRun> {
        self.runs.iter().find(|r| r.peer == peer)
    }

    pub fn capacity(&self, peer: Peer) -> Option<usize> {
        self.run(peer)?.ramp.as_ref()?.capacity
    }
}

/// The passing point of a stack's search at `n` conversations.
fn passing_point(run: &PeerRun, n: usize) -> Option<PointResult> {
    let ramp = run.ramp.as_ref()?;
    ramp.points
        .iter()
        .find(|(p, v)| p.sessions == n && v.passed())
        .map(|(p, _)| p.clone())
}

impl Suite {
    /// The section: each stack's capacity, then voice-agent at each peer's.
    pub(crate) async fn peers(&self, notes: &mut Vec<String>) -> PeersResult {
        let mut result = PeersResult::default();
        for peer in Peer::ALL {
            if let Some(reason) = self.peer_unavailable(peer) {
                eprintln!("voice-bench: {}: skipped: {reason}", peer.name());
                result.runs.push(PeerRun {
                    peer,
                    ramp: None,
                    skipped: Some(reason),
                });
                continue;
            }
            self.quiet(notes).await;
            let ramp = match self.profile.peer_search {
                Some((agent, python)) => {
                    let bounds = if peer == Peer::Agent { agent } else { python };
                    ramp::search(bounds, |n| self.peer_judged(peer, n)).await
                }
                None => {
                    let n = self.profile.peer_sessions;
                    let (point, verdict) = self.peer_judged(peer, n).await;
                    Ramp {
                        capacity: verdict.passed().then_some(n),
                        points: vec![(point, verdict)],
                        first_failure: None,
                        open_ended: true,
                    }
                }
            };
            eprintln!("voice-bench: {}: capacity {:?}", peer.name(), ramp.capacity);
            result.runs.push(PeerRun {
                peer,
                ramp: Some(ramp),
                skipped: None,
            });
        }
        for peer in [Peer::Strands, Peer::Pipecat] {
            // The peer's point is the passing one its capacity comes from; voice-agent runs at
            // the same count (far below its own capacity) in a fresh run, or, in the smoke, its
            // single point has the same count already.
            let Some(n) = result.capacity(peer) else { continue };
            let Some(other) = result.run(peer).and_then(|r| passing_point(r, n)) else {
                continue;
            };
            let agent = match self.profile.peer_search {
                Some(_) => {
                    self.quiet(notes).await;
                    Some(self.peer_judged(Peer::Agent, n).await.0)
                }
                None => result
                    .run(Peer::Agent)
                    .and_then(|r| r.ramp.as_ref())
                    .and_then(|ramp| ramp.points.iter().find(|(pt, _)| pt.sessions == n))
                    .map(|(pt, _)| pt.clone()),
            };
            if let Some(agent) = agent {
                result.equal_load.push(EqualLoad {
                    peer,
                    sessions: n,
                    agent,
                    other,
                    fresh: self.profile.peer_search.is_some(),
                });
            }
        }
        result
    }

    fn peer_unavailable(&self, peer: Peer) -> Option<String> {
        let python = match peer {
            Peer::Agent => return None,
            Peer::Strands => &self.programs.strands_python,
            Peer::Pipecat => &self.programs.pipecat_python,
        };
        match python {
            None => Some(format!("no Python for it (--{}-python)", peer.name().to_lowercase())),
            Some(path) if !path.exists() => Some(format!("{} does not exist", path.display())),
            Some(_) => None,
        }
    }

    async fn peer_judged(&self, peer: Peer, sessions: usize) -> (PointResult, Verdict) {
        self.judged_conversation(peer.name(), sessions, || self.peer_point(peer, sessions))
            .await
    }

    /// One conversation point: the stack on the server's CPUs, the fake next to the generator.
    async fn peer_point(&self, peer: Peer, sessions: usize) -> anyhow::Result<PointResult> {
        let programs = &self.programs;
        let (fake, endpoint, ca_file) = servers::fake_bedrock(programs, &FAKE_ARGS)?;
        let peer_python = |python: &Option<std::path::PathBuf>| {
            python
                .clone()
                .ok_or_else(|| anyhow::anyhow!("no Python for {}", peer.name()))
        };
        let server = match peer {
            Peer::Agent => servers::agent(
                programs,
                "agent-peers",
                &suite::nova_agent_config(&endpoint, &ca_file, sessions),
                1,
                &servers::NOVA_CREDENTIALS,
            )?,
            Peer::Strands => servers::nova_peer(
                programs,
                &peer_python(&programs.strands_python)?,
                "strands_server.py",
                &endpoint,
                &ca_file,
            )?,
            Peer::Pipecat => servers::nova_peer(
                programs,
                &peer_python(&programs.pipecat_python)?,
                "pipecat_server.py",
                &endpoint,
                &ca_file,
            )?,
        };
        let spec = PointSpec {
            url: server.ws_url()?,
            sessions,
            encoding: Encoding::Json,
            protocol: Protocol::Strands162,
            workload: Workload::Conversation,
            warmup: self.profile.warmup,
            measure: self.profile.sdk_measure,
        };
        let point = load::run_point(&spec, Some(server.pid()), Some(fake.pid())).await;
        if point.connect_failures > 0 || point.ended_early > 0 {
            let logs = server.recent_logs();
            let tail = &logs[logs.len().saturating_sub(8)..];
            eprintln!(
                "voice-bench: {} sessions failed; the server's last lines:\n{}",
                peer.name(),
                tail.join("\n")
            );
        }
        Ok(point)
    }
}
