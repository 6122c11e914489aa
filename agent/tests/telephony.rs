//! Phone calls through the real agent over real sockets, driven by emulators of each carrier's
//! side (`carriers/`, written from the carriers' documentation), against the Simulated model:
//! signed and forged webhooks, the call-setup documents, greeting first, spoken turns answered in
//! the carrier's format and 20 ms frames, barge-in producing `clear`, DTMF reaching the model,
//! hang-up, and requests that must never open a session.

mod carriers;
mod support;

use std::time::Duration;

use carriers::{Inbox, rms, telnyx, to_8khz, twilio, ulaw_decode, vonage};
use serde_json::Value;
use support::{AWS_ENV, AgentProcess, FakeBedrock, metric, silence, speech, wait_metric};
use tokio_tungstenite::tungstenite::Message;

const TWILIO_TOKEN: &str = "twilio-auth-token-0123456789abcdef";
const VONAGE_SECRET: &str = "vonage-signature-secret-0123456789";
const TELNYX_STREAM_SECRET: &str = "telnyx-stream-secret-0123456789abcdef";
const REPLY_LIMIT: Duration = Duration::from_secs(20);

/// An agent answering all three carriers, its secrets in files like mounted Secrets.
struct PhoneAgent {
    agent: AgentProcess,
    telnyx_key: telnyx::SigningKey,
    dir: tempfile::TempDir,
}

impl PhoneAgent {
    fn start(extra_config: &str) -> Self {
        Self::start_with(extra_config, "")
    }

    /// With `telephony` lines (indented two spaces) added to the telephony section.
    fn start_with(extra_config: &str, telephony: &str) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let telnyx_key = telnyx::SigningKey::generate();
        let write = |name: &str, content: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, format!("{content}\n")).expect("write secret");
            path.display().to_string()
        };
        let config = format!(
            "{extra_config}\ntelephony:\n{telephony}  twilio:\n    authTokenFile: {}\n  telnyx:\n    publicKeyFile: {}\n    streamSecretFile: {}\n  vonage:\n    signatureSecretFile: {}\n",
            write("twilio", TWILIO_TOKEN),
            write("telnyx.pub", &telnyx_key.public_base64()),
            write("telnyx-stream", TELNYX_STREAM_SECRET),
            write("vonage", VONAGE_SECRET),
        );
        let config_path = write("agent.yaml", &config);
        let agent = AgentProcess::start_with_env(&["--config", &config_path], AWS_ENV);
        Self { agent, telnyx_key, dir }
    }
}

fn greeting() -> &'static str {
    "prompt:\n  greeting: Greet the caller and ask how you can help."
}

fn caller_turn() -> Vec<i16> {
    to_8khz(
        &[
            silence(200),
            speech("Hello, I would like to check my order please."),
            silence(200),
        ]
        .concat(),
    )
}

fn quiet(ms: usize) -> Vec<i16> {
    vec![0; ms * 8]
}

/// The μ-law media the agent sent to Twilio among `frames`, each checked to be one 20 ms frame.
fn twilio_media(frames: &[(tokio::time::Instant, Message)], stream_sid: &str) -> Vec<i16> {
    let mut samples = Vec::new();
    for (_, message) in frames {
        if let Some(payload) = twilio::json_of(message).and_then(|e| twilio::media_payload(&e, stream_sid)) {
            assert_eq!(payload.len(), 160, "20 ms of μ-law at 8 kHz per media message");
            samples.extend(payload.iter().map(|b| ulaw_decode(*b)));
        }
    }
    samples
}

fn is_event(message: &Message, kind: &str) -> bool {
    twilio::json_of(message).is_some_and(|e| e["event"] == kind)
}

/// The mark a reply ends with (named after the response), not a playback mark (`<reply>:<ms>`)
/// sent along the way.
fn is_reply_end(message: &Message) -> bool {
    twilio::json_of(message)
        .is_some_and(|e| e["event"] == "mark" && e["mark"]["name"].as_str().is_some_and(|name| !name.contains(':')))
}

/// The playback marks among `frames`: (name, milliseconds of the reply sent before it).
fn playback_marks(frames: &[(tokio::time::Instant, Message)]) -> Vec<(String, u64)> {
    frames
        .iter()
        .filter_map(|(_, m)| twilio::json_of(m))
        .filter(|e| e["event"] == "mark")
        .filter_map(|e| {
            let name = e["mark"]["name"].as_str()?.to_owned();
            let ms = name.split_once(':')?.1.parse().ok()?;
            Some((name, ms))
        })
        .collect()
}

/// Sets a call up as Twilio does: the signed voice webhook, its TwiML, the signed stream.
async fn twilio_call(phone: &PhoneAgent, call_sid: &str) -> (twilio::Stream, Inbox, Vec<(String, String)>) {
    let (status, twiml) = twilio::voice_webhook(&phone.agent.url("/twilio/voice"), TWILIO_TOKEN, call_sid).await;
    assert_eq!(status, 200, "{twiml}");
    let (stream_tag, parameters) = carriers::connect_stream(&twiml);
    let url = carriers::xml_attribute(&stream_tag, "url").expect("Stream url");
    assert_eq!(
        url,
        format!("ws://{}/twilio", phone.agent.addr),
        "no query: Twilio forbids one"
    );
    let (mut stream, inbox) = twilio::Stream::open(&url, TWILIO_TOKEN).await.expect("stream accepted");
    stream.connected().await;
    stream.start(call_sid, &parameters).await;
    (stream, inbox, parameters)
}

#[tokio::test]
async fn twilio_call_hears_the_greeting_first_then_an_answer_and_hangs_up() {
    let phone = PhoneAgent::start(greeting());
    let (mut stream, mut inbox, parameters) = twilio_call(&phone, "CA0001").await;
    let names: Vec<&str> = parameters.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(names, ["call_id", "caller", "callee", "stream_token"]);
    assert_eq!(parameters[1].1, "+15550100001");

    // The caller says nothing: the agent speaks first, then marks the end of its greeting.
    let hold = quiet(2_500);
    let (_, greeting) = tokio::join!(stream.speak(&hold), inbox.until(REPLY_LIMIT, is_reply_end));
    let greeting_audio = twilio_media(&greeting, &stream.stream_sid);
    assert!(
        greeting_audio.len() >= 8_000,
        "at least a second of greeting, got {} samples",
        greeting_audio.len()
    );
    assert!(
        rms(&greeting_audio) > 300.0,
        "the greeting is audible: {}",
        rms(&greeting_audio)
    );
    let mark = twilio::json_of(&greeting.last().expect("mark").1).expect("JSON");
    let mark_name = mark["mark"]["name"].as_str().expect("mark name").to_owned();
    stream.mark_played(&mark_name).await;

    // A spoken turn is answered in μ-law, 20 ms per message.
    let turn = [caller_turn(), quiet(5_000)].concat();
    let (_, reply) = tokio::join!(stream.speak(&turn), inbox.until(REPLY_LIMIT, is_reply_end));
    let reply_audio = twilio_media(&reply, &stream.stream_sid);
    assert!(
        reply_audio.len() >= 8_000,
        "a spoken answer, got {} samples",
        reply_audio.len()
    );
    assert!(rms(&reply_audio) > 300.0);

    // Hang-up: Twilio's stop ends the session as a caller's disconnect.
    stream.stop("CA0001").await;
    inbox.closed(Duration::from_secs(5)).await;
    wait_metric(
        &phone.agent,
        "voice_agent_sessions_ended_total{reason=\"client_disconnect\"}",
        1.0,
    )
    .await;
    assert_eq!(
        metric(&phone.agent, "voice_agent_phone_calls_total{carrier=\"twilio\"}").await,
        1.0
    );
    wait_metric(
        &phone.agent,
        "voice_agent_phone_calls_ended_total{carrier=\"twilio\",reason=\"client_disconnect\"}",
        1.0,
    )
    .await;
    // The call id names the session in logs; the secret and the caller's number never appear.
    let logs = phone.agent.logs().join("\n");
    assert!(logs.contains("CA0001"), "the call id is on the session's log lines");
    assert!(
        !logs.contains(TWILIO_TOKEN) && !logs.contains("5550100001"),
        "secrets or numbers logged"
    );
}

#[tokio::test]
async fn the_phone_greeting_makes_the_agent_speak_first_on_calls_only() {
    // No prompt.greeting: only phone calls are greeted.
    let phone = PhoneAgent::start_with("", "  greeting: Greet the caller and ask how you can help.\n");
    let (mut stream, mut inbox, _) = twilio_call(&phone, "CA0010").await;
    let hold = quiet(2_500);
    let (_, greeting) = tokio::join!(stream.speak(&hold), inbox.until(REPLY_LIMIT, is_reply_end));
    assert!(
        twilio_media(&greeting, &stream.stream_sid).len() >= 8_000,
        "the agent spoke first"
    );
    // A browser session of the same agent waits for its caller.
    let mut client = support::Client::connect(&phone.agent.ws_url(""), support::Encoding::Json).await;
    let mut seen = Vec::new();
    while let Ok(Some(item)) = tokio::time::timeout(Duration::from_millis(2_500), client.next()).await {
        seen.push(item);
    }
    assert!(
        support::audio_bytes(&seen).is_empty(),
        "no greeting on /ws: {:?}",
        support::event_types(&seen)
    );
    assert!(support::event_types(&seen).iter().any(|t| t == "bidi_connection_start"));
}

#[tokio::test]
async fn speaking_over_the_reply_makes_the_agent_send_clear() {
    let phone = PhoneAgent::start("");
    let (mut stream, mut inbox, _) = twilio_call(&phone, "CA0002").await;
    stream.speak(&[caller_turn(), quiet(600)].concat()).await;
    let mut received = Vec::new();
    for _ in 0..100 {
        stream.speak(&quiet(100)).await;
        received.extend(inbox.drain(Duration::ZERO).await);
        if !twilio_media(&received, &stream.stream_sid).is_empty() {
            break;
        }
    }
    assert!(
        !twilio_media(&received, &stream.stream_sid).is_empty(),
        "the reply started"
    );
    let barge_in = [
        to_8khz(&speech("No wait, stop, that is not what I asked.")),
        quiet(1_500),
    ]
    .concat();
    let (_, after) = tokio::join!(
        stream.speak(&barge_in),
        inbox.until(REPLY_LIMIT, |m| is_event(m, "clear"))
    );
    let clear = twilio::json_of(&after.last().expect("clear").1).expect("JSON");
    assert_eq!(
        clear,
        serde_json::json!({"event": "clear", "streamSid": stream.stream_sid})
    );
    wait_metric(&phone.agent, "voice_agent_interruptions_total", 1.0).await;
}

#[tokio::test]
async fn a_key_press_reaches_the_model_and_is_answered() {
    let phone = PhoneAgent::start("");
    let (mut stream, mut inbox, _) = twilio_call(&phone, "CA0003").await;
    let hold = quiet(1_500);
    let (_, quiet_frames) = tokio::join!(stream.speak(&hold), inbox.drain(Duration::from_millis(1_500)));
    assert!(
        twilio_media(&quiet_frames, &stream.stream_sid).is_empty(),
        "silence is not answered"
    );
    stream.dtmf("4").await;
    let hold = quiet(4_000);
    let (_, reply) = tokio::join!(stream.speak(&hold), inbox.until(REPLY_LIMIT, is_reply_end));
    assert!(
        !twilio_media(&reply, &stream.stream_sid).is_empty(),
        "the key press got an answer"
    );
    assert_eq!(
        metric(&phone.agent, "voice_agent_dtmf_presses_total{carrier=\"twilio\"}").await,
        1.0
    );
}

#[tokio::test]
async fn forged_twilio_requests_are_refused_and_never_open_a_session() {
    let phone = PhoneAgent::start("");
    let webhook = phone.agent.url("/twilio/voice");
    let (status, body) = twilio::voice_webhook(&webhook, "not-the-auth-token", "CA0004").await;
    assert_eq!(status, 403, "{body}");
    assert!(!body.contains("<Stream"), "no stream URL for a forger");
    let unsigned = reqwest::Client::new()
        .post(&webhook)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(carriers::form(&[("CallSid", "CA0004")]))
        .send()
        .await
        .expect("POST");
    assert_eq!(unsigned.status().as_u16(), 403);

    let stream_url = format!("ws://{}/twilio", phone.agent.addr);
    assert_eq!(
        twilio::Stream::open(&stream_url, "not-the-auth-token").await.err(),
        Some(403)
    );
    assert_eq!(
        carriers::connect(&stream_url, &[]).await.err(),
        Some(403),
        "unsigned upgrade"
    );

    // A genuine upgrade replaying another call's parameters: the call token does not match.
    let (status, twiml) = twilio::voice_webhook(&webhook, TWILIO_TOKEN, "CA0005").await;
    assert_eq!(status, 200);
    let (_, parameters) = carriers::connect_stream(&twiml);
    let (mut stream, mut inbox) = twilio::Stream::open(&stream_url, TWILIO_TOKEN).await.expect("upgrade");
    stream.connected().await;
    stream.start("CA9999", &parameters).await;
    assert_eq!(inbox.closed(Duration::from_secs(5)).await, Some(1008));

    // Media before the start is not a call either.
    let (mut stream, mut inbox) = twilio::Stream::open(&stream_url, TWILIO_TOKEN).await.expect("upgrade");
    stream.speak(&quiet(20)).await;
    assert_eq!(inbox.closed(Duration::from_secs(5)).await, Some(1008));

    assert_eq!(metric(&phone.agent, "voice_agent_sessions_started_total").await, 0.0);
    let rejected = |stage: &str, reason: &str| {
        format!("voice_agent_telephony_rejections_total{{carrier=\"twilio\",stage=\"{stage}\",reason=\"{reason}\"}}")
    };
    assert_eq!(metric(&phone.agent, &rejected("webhook", "bad_signature")).await, 1.0);
    assert_eq!(metric(&phone.agent, &rejected("webhook", "unsigned")).await, 1.0);
    assert_eq!(metric(&phone.agent, &rejected("stream", "bad_signature")).await, 1.0);
    assert_eq!(metric(&phone.agent, &rejected("stream", "unsigned")).await, 1.0);
    assert_eq!(metric(&phone.agent, &rejected("start", "bad_signature")).await, 1.0);
    assert_eq!(metric(&phone.agent, &rejected("start", "bad_start")).await, 1.0);
    assert_eq!(
        metric(
            &phone.agent,
            "voice_agent_handshake_rejections_total{reason=\"carrier_signature\"}"
        )
        .await,
        2.0
    );
}

#[tokio::test]
async fn a_recorded_twilio_stream_replayed_after_its_token_expires_is_refused() {
    let phone = PhoneAgent::start_with("", "  signatureTolerance: 10s\n");
    let (status, twiml) = twilio::voice_webhook(&phone.agent.url("/twilio/voice"), TWILIO_TOKEN, "CA0006").await;
    assert_eq!(status, 200);
    let (_, parameters) = carriers::connect_stream(&twiml);
    let stream_url = format!("ws://{}/twilio", phone.agent.addr);
    tokio::time::sleep(Duration::from_secs(12)).await;
    let (mut stream, mut inbox) = twilio::Stream::open(&stream_url, TWILIO_TOKEN).await.expect("upgrade");
    stream.connected().await;
    stream.start("CA0006", &parameters).await;
    assert_eq!(inbox.closed(Duration::from_secs(5)).await, Some(1008));
    assert_eq!(metric(&phone.agent, "voice_agent_sessions_started_total").await, 0.0);
    assert_eq!(
        metric(
            &phone.agent,
            "voice_agent_telephony_rejections_total{carrier=\"twilio\",stage=\"start\",reason=\"stale\"}"
        )
        .await,
        1.0
    );
}

#[tokio::test]
async fn telnyx_call_from_a_signed_webhook_to_an_answer_in_pcmu() {
    let phone = PhoneAgent::start("");
    let webhook = phone.agent.url("/telnyx/voice");
    let (status, _) = telnyx::voice_webhook(&webhook, &phone.telnyx_key, 0, true).await;
    assert_eq!(status, 403, "signed by another key");
    let (status, _) = telnyx::voice_webhook(&webhook, &phone.telnyx_key, 600, false).await;
    assert_eq!(status, 403, "ten minutes old");
    let (status, texml) = telnyx::voice_webhook(&webhook, &phone.telnyx_key, 0, false).await;
    assert_eq!(status, 200, "{texml}");
    let (stream_tag, parameters) = carriers::connect_stream(&texml);
    assert!(parameters.is_empty());
    assert_eq!(
        carriers::xml_attribute(&stream_tag, "bidirectionalMode").as_deref(),
        Some("rtp")
    );
    assert_eq!(
        carriers::xml_attribute(&stream_tag, "bidirectionalCodec").as_deref(),
        Some("PCMU")
    );
    let url = carriers::xml_attribute(&stream_tag, "url").expect("url");
    assert!(url.starts_with(&format!("ws://{}/telnyx?", phone.agent.addr)), "{url}");
    assert!(url.contains("caller=%2B15550100001") && url.contains("sig="), "{url}");

    let altered = url.replace("caller=%2B15550100001", "caller=%2B15550100009");
    assert_eq!(telnyx::Stream::open(&altered).await.err(), Some(403));
    let unsigned = url.split('?').next().expect("path").to_owned();
    assert_eq!(telnyx::Stream::open(&unsigned).await.err(), Some(403));

    let (mut stream, mut inbox) = telnyx::Stream::open(&url).await.expect("stream accepted");
    stream.start("PCMU").await;
    let turn = [caller_turn(), quiet(5_000)].concat();
    let (_, reply) = tokio::join!(stream.speak(&turn), inbox.until(REPLY_LIMIT, is_reply_end));
    let mut samples = Vec::new();
    for (_, message) in &reply {
        if let Some(payload) = telnyx::media_payload(message) {
            assert_eq!(payload.len(), 160, "20 ms of PCMU");
            samples.extend(payload.iter().map(|b| ulaw_decode(*b)));
        }
    }
    assert!(
        samples.len() >= 8_000 && rms(&samples) > 300.0,
        "{} samples",
        samples.len()
    );
    stream.stop().await;
    inbox.closed(Duration::from_secs(5)).await;
    wait_metric(&phone.agent, "voice_agent_phone_calls_total{carrier=\"telnyx\"}", 1.0).await;
}

#[tokio::test]
async fn vonage_call_in_16_khz_linear_pcm() {
    let phone = PhoneAgent::start("");
    let answer = phone.agent.url("/vonage/answer");
    assert_eq!(vonage::answer_webhook(&answer, "wrong-secret", 0).await.0, 403);
    assert_eq!(
        vonage::answer_webhook(&answer, VONAGE_SECRET, 3_600).await.0,
        403,
        "an hour old"
    );
    let (status, body) = vonage::answer_webhook(&answer, VONAGE_SECRET, 0).await;
    assert_eq!(status, 200, "{body}");
    let ncco: Value = serde_json::from_str(&body).expect("NCCO JSON");
    let actions = ncco.as_array().expect("an NCCO is an array of actions");
    assert_eq!(actions.len(), 1);
    assert_eq!(actions[0]["action"], "connect");
    let endpoint = &actions[0]["endpoint"][0];
    assert_eq!(endpoint["type"], "websocket");
    assert_eq!(endpoint["content-type"], "audio/l16;rate=16000");
    let uri = endpoint["uri"].as_str().expect("uri");
    assert!(uri.starts_with(&format!("ws://{}/vonage?", phone.agent.addr)), "{uri}");

    let (mut stream, mut inbox) = vonage::Stream::open(uri).await.expect("stream accepted");
    stream.connected("audio/l16;rate=16000").await;
    let turn = [
        silence(200),
        speech("Hello, I would like to check my order please."),
        silence(5_000),
    ]
    .concat();
    let (_, first) = tokio::join!(
        stream.speak(&turn),
        inbox.until(REPLY_LIMIT, |m| matches!(m, Message::Binary(_)))
    );
    let mut frames: Vec<Message> = first.into_iter().map(|(_, m)| m).collect();
    frames.extend(
        inbox
            .drain(Duration::from_millis(1_500))
            .await
            .into_iter()
            .map(|(_, m)| m),
    );
    let audio: Vec<i16> = frames
        .iter()
        .filter_map(|m| match m {
            Message::Binary(bytes) => {
                assert_eq!(bytes.len(), 640, "20 ms of 16-bit PCM at 16 kHz");
                Some(
                    bytes
                        .chunks_exact(2)
                        .map(|s| i16::from_le_bytes([s[0], s[1]]))
                        .collect::<Vec<_>>(),
                )
            }
            _ => None,
        })
        .flatten()
        .collect();
    assert!(audio.len() >= 16_000 && rms(&audio) > 300.0, "{} samples", audio.len());
    assert_eq!(
        metric(
            &phone.agent,
            "voice_agent_telephony_rejections_total{carrier=\"vonage\",stage=\"webhook\",reason=\"stale\"}"
        )
        .await,
        1.0
    );
}

#[tokio::test]
async fn carriers_not_configured_are_refused() {
    let agent = AgentProcess::start(&[]);
    let response = reqwest::Client::new()
        .post(agent.url("/twilio/voice"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(carriers::form(&[("CallSid", "CA1")]))
        .send()
        .await
        .expect("POST");
    assert_eq!(response.status().as_u16(), 404);
    let url = format!("ws://{}/vonage", agent.addr);
    assert_eq!(carriers::connect(&url, &[]).await.err(), Some(404));
    assert_eq!(metric(&agent, "voice_agent_sessions_started_total").await, 0.0);
}

#[tokio::test]
async fn a_twilio_call_through_nova_sonic_on_the_bedrock_fake() {
    let fake = FakeBedrock::start(&[]);
    let model = format!(
        "model:\n  provider: NovaSonic\n  region: us-west-2\n  endpointUrl: {}\n  caBundleFile: {}\n{}",
        fake.endpoint,
        fake.ca_file,
        greeting()
    );
    let phone = PhoneAgent::start(&model);
    let (mut stream, mut inbox, _) = twilio_call(&phone, "CA0007").await;
    let hold = quiet(2_500);
    let (_, greeting) = tokio::join!(stream.speak(&hold), inbox.until(REPLY_LIMIT, is_reply_end));
    assert!(
        twilio_media(&greeting, &stream.stream_sid).len() >= 8_000,
        "Nova's greeting"
    );
    let turn = [caller_turn(), quiet(5_000)].concat();
    let (_, reply) = tokio::join!(stream.speak(&turn), inbox.until(REPLY_LIMIT, is_reply_end));
    let audio = twilio_media(&reply, &stream.stream_sid);
    assert!(
        audio.len() >= 8_000 && rms(&audio) > 300.0,
        "Nova's answer: {} samples",
        audio.len()
    );
    stream.stop("CA0007").await;
    inbox.closed(Duration::from_secs(5)).await;
    wait_metric(
        &phone.agent,
        "voice_agent_sessions_ended_total{reason=\"client_disconnect\"}",
        1.0,
    )
    .await;
}

#[tokio::test]
async fn a_malformed_carrier_frame_closes_only_its_own_call() {
    let phone = PhoneAgent::start("");
    let (mut healthy, mut healthy_inbox, _) = twilio_call(&phone, "CA0008").await;
    let (mut broken, mut broken_inbox, _) = twilio_call(&phone, "CA0009").await;
    broken.speak(&quiet(200)).await;
    carriers::send_text(
        &mut broken.sink,
        "{\"event\":\"media\",\"media\":{\"payload\":\"%%%\"}}".into(),
    )
    .await;
    assert_eq!(broken_inbox.closed(Duration::from_secs(5)).await, Some(1007));
    let (mut second_start, mut second_inbox, _) = twilio_call(&phone, "CA0010").await;
    second_start.start("CA0010", &[]).await;
    assert_eq!(
        second_inbox.closed(Duration::from_secs(5)).await,
        Some(1007),
        "a second start"
    );

    let turn = [caller_turn(), quiet(5_000)].concat();
    let (_, reply) = tokio::join!(healthy.speak(&turn), healthy_inbox.until(REPLY_LIMIT, is_reply_end));
    assert!(
        !twilio_media(&reply, &healthy.stream_sid).is_empty(),
        "the other call goes on"
    );
    wait_metric(
        &phone.agent,
        "voice_agent_sessions_ended_total{reason=\"invalid_payload\"}",
        2.0,
    )
    .await;
}

#[tokio::test]
async fn settings_in_the_webhook_url_go_through_the_allow_list() {
    let phone = PhoneAgent::start("");
    let webhook = format!("{}?voice=amy", phone.agent.url("/twilio/voice"));
    let (status, twiml) = twilio::voice_webhook(&webhook, TWILIO_TOKEN, "CA0011").await;
    assert_eq!(status, 200, "{twiml}");
    let (stream_tag, parameters) = carriers::connect_stream(&twiml);
    assert!(
        parameters.contains(&("voice".to_owned(), "amy".to_owned())),
        "{parameters:?}"
    );
    let url = carriers::xml_attribute(&stream_tag, "url").expect("url");
    let (mut stream, mut inbox) = twilio::Stream::open(&url, TWILIO_TOKEN).await.expect("upgrade");
    stream.connected().await;
    stream.start("CA0011", &parameters).await;
    // This agent lets callers choose no voice: the call is refused before any model stream.
    assert_eq!(inbox.closed(Duration::from_secs(5)).await, Some(1008));
    assert_eq!(metric(&phone.agent, "voice_agent_sessions_started_total").await, 0.0);
    assert_eq!(
        metric(
            &phone.agent,
            "voice_agent_telephony_rejections_total{carrier=\"twilio\",stage=\"start\",reason=\"settings\"}"
        )
        .await,
        1.0
    );
}

/// Barge-in on a slow line: the caller had heard only the first 600 ms of a reply when they
/// spoke over it (the carrier echoed only the marks up to there). The agent clears the
/// carrier's buffer, and the conversation history the next Nova stream is given holds only the
/// words the caller heard, not what Nova had generated.
#[tokio::test]
async fn after_a_barge_in_the_history_holds_only_what_the_caller_heard() {
    const HEARD_MS: u64 = 600;
    let fake = FakeBedrock::start(&[]);
    let model = format!(
        "model:\n  provider: NovaSonic\n  region: us-west-2\n  endpointUrl: {}\n  caBundleFile: {}\n  renewAfter: 10s\n",
        fake.endpoint, fake.ca_file,
    );
    let phone = PhoneAgent::start(&model);
    let (mut stream, mut inbox, _) = twilio_call(&phone, "CA0009").await;
    stream.speak(&[caller_turn(), quiet(400)].concat()).await;

    // The reply plays; the line echoes marks only up to HEARD_MS.
    let mut received = Vec::new();
    let mut acked = std::collections::HashSet::new();
    for _ in 0..200 {
        stream.speak(&quiet(100)).await;
        received.extend(inbox.drain(Duration::ZERO).await);
        for (name, ms) in playback_marks(&received) {
            if ms <= HEARD_MS && acked.insert(name.clone()) {
                stream.mark_played(&name).await;
            }
        }
        if twilio_media(&received, &stream.stream_sid).len() >= 8 * 2_500 {
            break;
        }
    }
    let sent = twilio_media(&received, &stream.stream_sid).len();
    assert!(
        sent >= 8 * 2_500,
        "2.5 s of the reply sent before the barge-in, got {sent} samples"
    );
    assert!(!acked.is_empty(), "playback marks during the reply");

    let barge_in = [to_8khz(&speech("No wait, what are your opening hours?")), quiet(1_000)].concat();
    let (_, after) = tokio::join!(
        stream.speak(&barge_in),
        inbox.until(REPLY_LIMIT, |m| is_event(m, "clear"))
    );
    assert!(
        after.iter().any(|(_, m)| is_event(m, "clear")),
        "barge-in clears the line"
    );
    // Twilio echoes the marks still pending after a clear: they were not heard.
    for (name, _) in playback_marks(&[received, after].concat()) {
        if acked.insert(name.clone()) {
            stream.mark_played(&name).await;
        }
    }

    // The conversation goes on until the stream is renewed at a quiet moment (renewAfter), and
    // the new stream has its history: the fake has read it all once the live audio flows.
    let mut streams = Vec::new();
    for _ in 0..60 {
        stream.speak(&quiet(500)).await;
        inbox.drain(Duration::ZERO).await;
        streams = fake.streams().await;
        if streams.get(1).is_some_and(|s| s["audio_bytes"].as_u64() > Some(0)) {
            break;
        }
    }
    assert!(streams.len() >= 2, "the stream was renewed: {streams:?}");
    let history: Vec<(String, String)> = streams[1]["history"]
        .as_array()
        .expect("history")
        .iter()
        .map(|m| {
            (
                m["role"].as_str().unwrap_or_default().to_owned(),
                m["text"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    let users: Vec<usize> = history
        .iter()
        .enumerate()
        .filter(|(_, (role, _))| role == "USER")
        .map(|(i, _)| i)
        .collect();
    assert!(users.len() >= 2, "both caller turns replayed: {history:?}");
    // What the interrupted reply left between the caller's two turns: at most the couple of
    // words that fit in 600 ms, where Nova had generated well over 2.5 s of speech.
    let interrupted: Vec<&str> = history[users[0] + 1..users[1]]
        .iter()
        .flat_map(|(_, text)| text.split_whitespace())
        .collect();
    assert!(
        interrupted.len() <= 3,
        "the history keeps only what was heard, got {interrupted:?} in {history:?}"
    );
    stream.stop("CA0009").await;
}

/// Runs `voice-agent call` (the phone simulator) against `phone` and returns (exit code,
/// stdout, stderr).
async fn simulate_call(phone: &PhoneAgent, args: &[&str]) -> (Option<i32>, String, String) {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_voice-agent"))
        .arg("call")
        .arg("--url")
        .arg(phone.agent.url(""))
        .args(args)
        .env_remove("VOICE_AGENT_URL")
        .output()
        .await
        .expect("run voice-agent call");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn write_wav_16k(path: &std::path::Path, pcm: &[u8]) {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 16_000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut writer = hound::WavWriter::create(path, spec).expect("create WAV");
    for s in pcm.chunks_exact(2) {
        writer.write_sample(i16::from_le_bytes([s[0], s[1]])).expect("sample");
    }
    writer.finalize().expect("finalize WAV");
}

#[tokio::test]
async fn the_phone_simulator_calls_through_twilio_and_vonage_and_saves_what_it_heard() {
    let phone = PhoneAgent::start("");
    let input = phone.dir.path().join("caller.wav");
    write_wav_16k(
        &input,
        &[
            silence(200),
            speech("Hello, I would like to check my order please."),
            silence(300),
        ]
        .concat(),
    );
    for (carrier, secret_flag, secret_file, rate) in [
        ("twilio", "--twilio-auth-token-file", "twilio", 8_000),
        ("vonage", "--vonage-signature-secret-file", "vonage", 16_000),
    ] {
        let heard = phone.dir.path().join(format!("{carrier}-heard.wav"));
        let secret = phone.dir.path().join(secret_file);
        let (code, stdout, stderr) = simulate_call(
            &phone,
            &[
                "--carrier",
                carrier,
                secret_flag,
                secret.to_str().expect("path"),
                "--input",
                input.to_str().expect("path"),
                "--dtmf",
                "4",
                "--output",
                heard.to_str().expect("path"),
                "--timeout",
                "20s",
            ],
        )
        .await;
        assert_eq!(code, Some(0), "{carrier}: {stdout}\n{stderr}");
        for expected in [
            "webhook answered",
            "caller speaks",
            "caller presses 4",
            "agent speaks",
            "time to first audio",
        ] {
            assert!(stdout.contains(expected), "{carrier}: no {expected:?} in\n{stdout}");
        }
        let reader = hound::WavReader::open(&heard).expect("the caller's side saved");
        assert_eq!(reader.spec().sample_rate, rate);
        let samples: Vec<i16> = reader.into_samples::<i16>().map(|s| s.expect("sample")).collect();
        assert!(
            samples.len() >= rate as usize && rms(&samples) > 300.0,
            "{carrier}: {} samples heard",
            samples.len()
        );
        wait_metric(
            &phone.agent,
            &format!("voice_agent_dtmf_presses_total{{carrier=\"{carrier}\"}}"),
            1.0,
        )
        .await;
    }
    assert!(
        metric(&phone.agent, "voice_agent_phone_calls_total{carrier=\"twilio\"}").await >= 1.0
            && metric(&phone.agent, "voice_agent_phone_calls_total{carrier=\"vonage\"}").await >= 1.0
    );

    // A wrong Auth Token is refused like a forged Twilio request, and the simulator says so.
    let wrong = phone.dir.path().join("wrong-token");
    std::fs::write(&wrong, "not-the-auth-token").expect("write");
    let (code, _, stderr) = simulate_call(
        &phone,
        &[
            "--twilio-auth-token-file",
            wrong.to_str().expect("path"),
            "--timeout",
            "5s",
        ],
    )
    .await;
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("HTTP 403"), "{stderr}");
    let (code, _, stderr) = simulate_call(&phone, &["--carrier", "vonage"]).await;
    assert_eq!(code, Some(2), "a missing secret is a usage error: {stderr}");
}
