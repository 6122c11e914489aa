//! The phone calls section of BENCHMARKS.md: Twilio calls per core on the μ-law path.

use std::fmt::Write as _;

use super::mib;
use crate::suite::SuiteResult;

pub fn render(out: &mut String, result: &SuiteResult) {
    let Some(phone) = &result.phone else { return };
    let _ = writeln!(out, "## Phone calls: Twilio Media Streams, μ-law\n");
    let _ = writeln!(
        out,
        "Calls placed as Twilio places them (the signed voice webhook, then the signed media stream \
with its TwiML's parameters) against the agent (one worker thread, Simulated model in loopback \
mode, as in the relay section). Each call sends 20 ms of μ-law every 20 ms and reads everything \
back, echoing the agent's playback marks at once. Every call pays the phone path both ways (JSON \
and base64, G.711, resampling 8 ↔ 16 kHz, the session, 20 ms framing, marks) and none of a \
model's work; loopback replies with the session's 16 kHz input played at 8 kHz, twice the audio \
of a real reply, so these figures are a conservative bound. Calls per core = calls ÷ the agent's \
share of one core; memory per call = anonymous resident memory (RssAnon) above the idle agent ÷ calls.\n"
    );
    let _ = writeln!(
        out,
        "| calls | connected | agent CPU | calls per core | agent RSS (idle → loaded) | memory per call | frames in / out per s | marks per s |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|");
    for p in &phone.points {
        let _ = writeln!(
            out,
            "| {} | {} | {:.1}% | {} | {} → {} | {} | {:.0} / {:.0} | {:.0} |",
            p.calls,
            p.connected,
            p.agent.cpu_percent,
            p.calls_per_core().map_or("–".into(), |c| format!("{c:.0}")),
            mib(Some(p.baseline_rss_kib)),
            mib(Some(p.agent.rss_kib)),
            p.kib_per_call().map_or("–".into(), |k| format!("{k:.0} KiB")),
            p.frames_in_per_second,
            p.frames_out_per_second,
            p.marks_per_second,
        );
    }
    for failure in phone.points.iter().flat_map(|p| &p.failures) {
        let _ = writeln!(out, "- {failure}");
    }
    out.push('\n');
}
