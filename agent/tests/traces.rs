//! OpenTelemetry traces from a real conversation, received by an OTLP/HTTP endpoint in the
//! test: the caller's trace is continued, and the span tree has the session, its turns, a tool
//! call and one span per model stream (including a forced renewal).

#[path = "../../tests/support/otlp.rs"]
mod otlp;
mod support;

use std::time::Duration;

use otlp::{attribute, hex, otlp_receiver, text};
use support::*;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

const LIMIT: Duration = Duration::from_secs(30);
const CALLER_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";

#[tokio::test]
async fn a_conversation_is_one_trace_continuing_the_callers() {
    let (endpoint, received) = otlp_receiver().await;
    let mcp = McpServer::start(false);
    let fake = FakeBedrock::start(&["--max-stream-age", "12s"]);
    let dir = tempfile::tempdir().expect("dir");
    let config = fake.agent_config(dir.path(), "");
    let mut yaml = std::fs::read_to_string(&config).expect("config");
    yaml.push_str(&format!("name: front-desk\ngateway:\n  url: {}\n", mcp.url));
    std::fs::write(&config, yaml).expect("config");
    let mut env = AWS_ENV.to_vec();
    env.extend([
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
        ("OTEL_BSP_SCHEDULE_DELAY", "200"),
        ("POD_NAMESPACE", "voice-prod"),
    ]);
    let mut agent = AgentProcess::start_with_env(&["--config", &config], &env);
    wait_ready(&agent).await;

    let mut request = agent.ws_url("").into_client_request().expect("request");
    let traceparent = format!("00-{CALLER_TRACE}-{CALLER_SPAN}-01");
    request
        .headers_mut()
        .insert("traceparent", HeaderValue::from_str(&traceparent).expect("header"));
    let (ws, _) = tokio_tungstenite::connect_async(request).await.expect("connect");
    let mut client = Client::from_stream(ws, Encoding::Json);
    client.until_event("bidi_connection_start", LIMIT).await;
    client.send_text(r#"tool:get_weather {"city": "Oslo"}"#).await;
    client.until_event("bidi_response_complete", LIMIT).await;
    // Keep the session going past the model stream's time limit, then take another turn.
    client.until_event("bidi_connection_restart", LIMIT).await;
    client.send_text("and tomorrow").await;
    client.until_event("bidi_response_complete", LIMIT).await;
    client.close().await;

    agent.signal("TERM");
    assert_eq!(agent.wait_exit(LIMIT).await, Some(0));
    let received = received.lock().expect("store");
    let spans = &received.spans;
    let named = |name: &str| spans.iter().filter(|s| s.name == name).collect::<Vec<_>>();

    assert_eq!(
        received.resource.get("service.name").map(String::as_str),
        Some("voice-agent")
    );
    assert_eq!(
        received.resource.get("voiceagent.name").map(String::as_str),
        Some("front-desk")
    );
    assert_eq!(
        received.resource.get("k8s.namespace.name").map(String::as_str),
        Some("voice-prod")
    );

    let sessions = named("voice session");
    assert_eq!(
        sessions.len(),
        1,
        "spans: {:?}",
        spans.iter().map(|s| &s.name).collect::<Vec<_>>()
    );
    let session = sessions[0];
    assert_eq!(hex(&session.trace_id), CALLER_TRACE, "the caller's trace is continued");
    assert_eq!(hex(&session.parent_span_id), CALLER_SPAN);
    assert_eq!(attribute(session, "close_reason").as_deref(), Some("client_disconnect"));
    assert_eq!(attribute(session, "model").as_deref(), Some("amazon.nova-2-5-sonic"));
    // OpenTelemetry's GenAI conventions, recorded only when traces are exported; the token
    // totals once, at the end.
    assert_eq!(
        attribute(session, "gen_ai.request.model").as_deref(),
        Some("amazon.nova-2-5-sonic")
    );
    assert_eq!(attribute(session, "gen_ai.operation.name").as_deref(), Some("chat"));
    assert!(
        attribute(session, "gen_ai.usage.output_tokens").is_some_and(|n| n.parse::<u64>().is_ok_and(|n| n > 0)),
        "{:?}",
        session.attributes
    );

    let children = |name: &str| {
        named(name)
            .into_iter()
            .filter(|s| s.parent_span_id == session.span_id)
            .collect::<Vec<_>>()
    };
    let turns = children("turn");
    assert!(turns.len() >= 2, "a span per turn: {}", turns.len());
    assert!(turns.iter().all(|t| attribute(t, "time_to_first_audio_ms").is_some()));
    let tools = children("tool get_weather");
    assert_eq!(tools.len(), 1);
    assert_eq!(attribute(tools[0], "outcome").as_deref(), Some("success"));
    let streams = children("model stream");
    assert!(streams.len() >= 2, "a span per model stream: {}", streams.len());
    let mut streams = streams;
    streams.sort_by_key(|s| s.start_time_unix_nano);
    assert_eq!(attribute(streams[0], "reason").as_deref(), Some("start"));
    assert_eq!(attribute(streams[0], "end").as_deref(), Some("model_timeout"));
    assert_eq!(attribute(streams[1], "reason").as_deref(), Some("model_timeout"));

    assert!(
        spans.iter().all(|s| hex(&s.trace_id) == CALLER_TRACE),
        "everything is one trace"
    );
    for span in spans.iter() {
        for kv in &span.attributes {
            assert!(
                text(kv).len() < 512,
                "{}.{} is suspiciously large (audio?)",
                span.name,
                kv.key
            );
            assert!(
                !text(kv).contains("voice-test-secret-key"),
                "a secret in {}.{}",
                span.name,
                kv.key
            );
        }
    }
    let logs = agent.logs().join("\n");
    assert!(logs.contains(CALLER_TRACE), "logs carry the trace id");
}

#[tokio::test]
async fn a_resumed_conversation_links_to_the_session_it_continues() {
    let (endpoint, received) = otlp_receiver().await;
    let env = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
        ("OTEL_BSP_SCHEDULE_DELAY", "200"),
    ];
    let mut agent = AgentProcess::start_with_env(&[], &env);
    let mut first = Client::connect(&agent.ws_url(""), Encoding::Json).await;
    let start = first.until_event("bidi_connection_start", LIMIT).await;
    let token = events(&start)[0]["resume_token"].as_str().expect("token").to_owned();
    first.send_text("hello").await;
    first.until_event("bidi_response_complete", LIMIT).await;
    first.close().await;
    let mut second = Client::connect(&agent.ws_url(&format!("?resume={token}")), Encoding::Json).await;
    second.until_event("bidi_connection_start", LIMIT).await;
    second.close().await;
    agent.signal("TERM");
    assert_eq!(agent.wait_exit(LIMIT).await, Some(0));

    let received = received.lock().expect("store");
    let sessions: Vec<_> = received.spans.iter().filter(|s| s.name == "voice session").collect();
    assert_eq!(sessions.len(), 2);
    let (original, resumed) = if attribute(sessions[0], "resumed").as_deref() == Some("true") {
        (sessions[1], sessions[0])
    } else {
        (sessions[0], sessions[1])
    };
    assert_eq!(attribute(resumed, "resumed").as_deref(), Some("true"));
    assert_eq!(
        attribute(original, "conversation"),
        attribute(resumed, "conversation"),
        "one conversation across both sessions"
    );
    assert!(
        resumed
            .links
            .iter()
            .any(|l| hex(&l.span_id) == hex(&original.span_id) && hex(&l.trace_id) == hex(&original.trace_id)),
        "the resumed session links to the original: {:?}",
        resumed.links
    );
}
