//! Several tool servers behind one agent: two real, independent MCP servers (the official
//! Python SDK over streamable HTTP, each with its own tools), real WebSocket sessions calling
//! tools of both, names that collide across servers, and a server that is down.

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::*;
use tokio::time::Instant;

const LIMIT: Duration = Duration::from_secs(30);

async fn agent_with(yaml: &str) -> (AgentProcess, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("agent.yaml");
    std::fs::write(&path, yaml).expect("write config");
    let agent = AgentProcess::start(&["--config", &path.to_string_lossy()]);
    wait_ready(&agent).await;
    (agent, dir)
}

/// Sends a text turn and reads until `replies` responses completed; returns the tool results.
async fn tool_results(client: &mut Client, text: &str, replies: usize) -> Vec<Value> {
    client.send_text(text).await;
    let mut received = Vec::new();
    let deadline = Instant::now() + LIMIT;
    while events(&received)
        .iter()
        .filter(|v| v["type"] == "bidi_response_complete")
        .count()
        < replies
    {
        let left = deadline.saturating_duration_since(Instant::now());
        received.extend(client.until_event("bidi_response_complete", left).await);
    }
    events(&received)
        .into_iter()
        .filter(|v| v["type"] == "tool_result")
        .map(|v| v["tool_result"].clone())
        .collect()
}

fn text_of(result: &Value) -> &str {
    result["content"][0]["text"].as_str().unwrap_or_default()
}

async fn status(agent: &AgentProcess) -> Value {
    reqwest::Client::new()
        .post(agent.url("/invocations"))
        .body(r#"{"command":"status"}"#)
        .send()
        .await
        .expect("status")
        .json()
        .await
        .expect("json")
}

#[tokio::test]
async fn a_session_calls_tools_of_two_servers_each_on_its_own_server() {
    let main = McpServer::start(false);
    let crm = McpServer::start_with(true, "crm");
    let yaml = format!(
        "toolServers:\n  - name: main\n    url: {}\n    allowedTools: [get_weather, slow_lookup]\n  - name: crm\n    url: {}\n",
        main.url, crm.url
    );
    let (agent, _dir) = agent_with(&yaml).await;

    // Both offer `get_weather`: each is prefixed with its server's name; the rest keep theirs.
    let status = status(&agent).await;
    assert_eq!(
        status["tools"],
        json!([
            "main___get_weather",
            "slow_lookup",
            "lookup_customer",
            "crm___get_weather"
        ])
    );
    assert_eq!(
        status["tool_servers"],
        json!([
            {"name": "main", "reachable": true, "tools": ["main___get_weather", "slow_lookup"]},
            {"name": "crm", "reachable": true, "tools": ["lookup_customer", "crm___get_weather"]},
        ])
    );

    let mut client = Client::connect(&agent.ws_url(""), Encoding::Json).await;
    let results = tool_results(
        &mut client,
        r#"tool:lookup_customer {"customer_id": "c-42"} tool:main___get_weather {"city": "Paris"}"#,
        2,
    )
    .await;
    assert_eq!(results.len(), 2, "{results:?}");
    assert!(results.iter().all(|r| r["status"] == "success"), "{results:?}");
    assert!(
        results.iter().any(|r| text_of(r).contains("Ada Lovelace")),
        "{results:?}"
    );
    assert!(results.iter().any(|r| text_of(r).contains("\"sky\"")), "{results:?}");
    let results = tool_results(&mut client, r#"tool:crm___get_weather {"city": "Oslo"}"#, 1).await;
    let answer: Value = serde_json::from_str(text_of(&results[0])).expect("JSON result");
    assert_eq!(answer["source"], "crm", "{results:?}");

    // Every call reached the server that offers the tool, by the name that server gave it.
    let main_calls: Vec<Value> = main.calls().await.iter().map(|c| c["tool"].clone()).collect();
    let crm_calls: Vec<Value> = crm.calls().await.iter().map(|c| c["tool"].clone()).collect();
    assert_eq!(main_calls, [json!("get_weather")]);
    assert_eq!(crm_calls.len(), 2);
    assert!(crm_calls.contains(&json!("lookup_customer")) && crm_calls.contains(&json!("crm_get_weather")));
    for server in ["main", "crm"] {
        assert_eq!(
            metric(&agent, &format!("voice_agent_tool_server_up{{server=\"{server}\"}}")).await,
            1.0
        );
    }
    assert_eq!(
        metric(&agent, "voice_agent_tool_server_tools{server=\"crm\"}").await,
        2.0
    );
}

#[tokio::test]
async fn a_server_that_is_down_takes_only_its_own_tools_away() {
    let main = McpServer::start(false);
    // Nothing listens on port 9 of loopback.
    let yaml = format!(
        "toolServers:\n  - name: down\n    url: http://127.0.0.1:9/mcp\n  - name: main\n    url: {}\n",
        main.url
    );
    let (agent, _dir) = agent_with(&yaml).await;

    let (code, body) = get(&agent.url("/readyz")).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body, "ready; tool servers unreachable: down\n");
    assert_eq!(metric(&agent, "voice_agent_tool_server_up{server=\"down\"}").await, 0.0);
    assert_eq!(metric(&agent, "voice_agent_tool_server_up{server=\"main\"}").await, 1.0);
    let status = status(&agent).await;
    assert_eq!(
        status["tool_servers"][0],
        json!({"name": "down", "reachable": false, "tools": []})
    );

    // Sessions start and the reachable server's tools work.
    let mut client = Client::connect(&agent.ws_url(""), Encoding::Json).await;
    let results = tool_results(&mut client, r#"tool:get_weather {"city": "Rome"}"#, 1).await;
    assert_eq!(results[0]["status"], "success", "{results:?}");

    // The server that is down is retried with a growing delay, not hammered and not dropped.
    let logs = || {
        agent
            .logs()
            .iter()
            .filter(|l| l.contains("cannot load tools from the tool server") && l.contains("down"))
            .count()
    };
    let deadline = Instant::now() + LIMIT;
    while logs() < 3 {
        assert!(Instant::now() < deadline, "no retries: {}", agent.logs().join("\n"));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(logs() < 10, "retried without backing off: {} attempts", logs());
}

#[tokio::test]
async fn a_server_that_comes_back_brings_its_tools_back() {
    let crm = McpServer::start_with(false, "crm");
    // Reserve a port, then free it: the server "main" is down until something listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let proxy_url = format!("http://127.0.0.1:{port}/mcp");
    let yaml = format!(
        "toolServers:\n  - name: main\n    url: {proxy_url}\n  - name: crm\n    url: {}\n",
        crm.url
    );
    let (agent, _dir) = agent_with(&yaml).await;
    assert_eq!(status(&agent).await["tools"], json!(["lookup_customer", "get_weather"]));

    // A relay to a real server appears on the reserved port.
    let main = McpServer::start(false);
    let target = main
        .url
        .trim_start_matches("http://")
        .trim_end_matches("/mcp")
        .to_owned();
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .expect("rebind");
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            let target = target.clone();
            tokio::spawn(async move {
                if let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    });
    let deadline = Instant::now() + LIMIT;
    loop {
        let tools = status(&agent).await["tools"].clone();
        // `get_weather` now collides, and both sides are renamed.
        if tools
            .as_array()
            .is_some_and(|t| t.contains(&json!("main___get_weather")))
        {
            assert!(
                tools
                    .as_array()
                    .is_some_and(|t| t.contains(&json!("crm___get_weather"))),
                "{tools}"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the server's tools did not come back: {tools}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(get(&agent.url("/readyz")).await.1, "ready\n");
    let mut client = Client::connect(&agent.ws_url(""), Encoding::Json).await;
    let results = tool_results(&mut client, r#"tool:main___get_weather {"city": "Lima"}"#, 1).await;
    assert_eq!(results[0]["status"], "success", "{results:?}");
}

#[tokio::test]
async fn each_server_has_its_own_call_timeout() {
    let fast = McpServer::start(false);
    let patient = McpServer::start(false);
    let yaml = format!(
        "toolServers:\n  - name: fast\n    url: {}\n    callTimeout: 1s\n    allowedTools: [slow_lookup]\n  - name: patient\n    url: {}\n    callTimeout: 10s\n    allowedTools: [slow_lookup]\n",
        fast.url, patient.url
    );
    let (agent, _dir) = agent_with(&yaml).await;
    assert_eq!(
        status(&agent).await["tools"],
        json!(["fast___slow_lookup", "patient___slow_lookup"])
    );
    let mut client = Client::connect(&agent.ws_url(""), Encoding::Json).await;
    let results = tool_results(
        &mut client,
        r#"tool:fast___slow_lookup {"query": "a", "seconds": 2.5} tool:patient___slow_lookup {"query": "b", "seconds": 2.5}"#,
        2,
    )
    .await;
    let by_name = |name: &str| {
        results
            .iter()
            .find(|r| r["name"] == name)
            .unwrap_or_else(|| panic!("no result for {name}: {results:?}"))
    };
    assert_eq!(by_name("fast___slow_lookup")["status"], "error");
    assert!(
        text_of(by_name("fast___slow_lookup")).contains("did not answer within 1s"),
        "{results:?}"
    );
    assert_eq!(by_name("patient___slow_lookup")["status"], "success", "{results:?}");
    assert!(
        text_of(by_name("patient___slow_lookup")).contains("found 'b'"),
        "{results:?}"
    );
}

#[tokio::test]
async fn each_server_limits_a_sessions_concurrent_calls_on_its_own() {
    let one = McpServer::start(false);
    let two = McpServer::start(false);
    let yaml = format!(
        "toolServers:\n  - name: one\n    url: {}\n    maxConcurrentCalls: 1\n  - name: two\n    url: {}\n    maxConcurrentCalls: 4\n",
        one.url, two.url
    );
    let (agent, _dir) = agent_with(&yaml).await;
    let mut client = Client::connect(&agent.ws_url(""), Encoding::Json).await;
    let text = r#"tool:one___slow_lookup {"query": "a", "seconds": 1.5} tool:one___slow_lookup {"query": "b", "seconds": 1.5} tool:two___slow_lookup {"query": "c", "seconds": 1.5} tool:two___slow_lookup {"query": "d", "seconds": 1.5}"#;
    let results = tool_results(&mut client, text, 4).await;
    assert!(results.iter().all(|r| r["status"] == "success"), "{results:?}");
    let overlap = |calls: &[Value]| {
        calls[0]["start"].as_f64() < calls[1]["end"].as_f64() && calls[1]["start"].as_f64() < calls[0]["end"].as_f64()
    };
    let (one_calls, two_calls) = (one.calls().await, two.calls().await);
    assert_eq!((one_calls.len(), two_calls.len()), (2, 2));
    assert!(!overlap(&one_calls), "server one ran two calls at once: {one_calls:?}");
    assert!(
        overlap(&two_calls),
        "server two ran its calls one after the other: {two_calls:?}"
    );
}
