//! The resumption section of BENCHMARKS.md: conversations handed over from a draining agent to
//! another through Redis, and how long the callers waited.

use std::fmt::Write as _;

use crate::load::Percentiles;
use crate::suite::SuiteResult;

pub fn render(out: &mut String, result: &SuiteResult) {
    if let Some(skipped) = &result.resume_skipped {
        let _ = writeln!(
            out,
            "## Resumption on another replica after a drain\n\nNot measured: {skipped}\n"
        );
    }
    let Some(resume) = &result.resume else { return };
    let _ = writeln!(out, "## Resumption on another replica after a drain\n");
    let _ = writeln!(
        out,
        "What a rollout does to live calls, on the production path: {} conversations (the NovaSonic \
provider through the AWS SDK, against the Bedrock-wire fake), each with one exchange behind it, run \
on agent A; A gets SIGTERM, lets them go on for its drain timeout ({} ms), then closes each with \
1012 and its resume token; every caller reconnects at once to agent B with `resume=<token>` and \
asks a question. Both agents keep conversations in the same Redis ({}, on loopback), encrypted \
(AES-256-GCM), as two pods of a Deployment do. Measured per conversation from the moment the \
caller read the close: until B's `bidi_connection_start` says `resumed` (the state read from \
Redis and decrypted, a new Bedrock stream opened with the history replayed), and until the first \
reply audio from B (the question answered from the resumed conversation). Both agents have one \
worker thread on the same core; the fake and the callers share the other.\n",
        resume.conversations,
        resume.drain_timeout_ms,
        if resume.redis.is_empty() {
            "redis-server".to_owned()
        } else {
            format!("redis-server {}", resume.redis)
        },
    );
    let _ = writeln!(out, "| from the close to | p50 | p90 | p99 | max |");
    let _ = writeln!(out, "|---|---|---|---|---|");
    let row = |out: &mut String, label: &str, p: &Percentiles| {
        let ms = |us: u64| format!("{:.1} ms", us as f64 / 1000.0);
        let _ = writeln!(
            out,
            "| {label} | {} | {} | {} | {} |",
            ms(p.p50_us),
            ms(p.p90_us),
            ms(p.p99_us),
            ms(p.max_us)
        );
    };
    row(out, "B resumed the conversation", &resume.close_to_resumed);
    row(out, "the first reply audio from B", &resume.close_to_first_audio);
    let _ = writeln!(
        out,
        "\n{} of {} conversations were resumed on B and answered. The fake, like a model, pauses \
{} ms before it speaks: that much of the time to the first reply audio is the model's, the rest \
the handover's and the agent's.",
        resume.resumed, resume.conversations, resume.model_think_ms
    );
    for failure in &resume.failures {
        let _ = writeln!(out, "- {failure}");
    }
    out.push('\n');
}
