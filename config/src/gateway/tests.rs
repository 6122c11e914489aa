use super::*;
use crate::AgentConfig;

fn parse(yaml: &str) -> AgentConfig {
    AgentConfig::from_yaml(yaml).expect("parses")
}

fn refusal(yaml: &str) -> String {
    parse(yaml).validate().expect_err("invalid").to_string()
}

#[test]
fn the_gateway_shorthand_is_one_server_named_gateway() {
    let config = parse("gateway:\n  url: https://gw.example.com/mcp\n  callTimeout: 3s\n");
    config.validate().expect("valid");
    let servers: Vec<_> = config.tool_servers().collect();
    assert_eq!(servers.len(), 1);
    assert_eq!(servers[0].name, "gateway");
    assert_eq!(servers[0].call_timeout, Duration::from_secs(3));
    // The name is implied, not written back: files of earlier versions stay as they were.
    assert!(!config.to_yaml().contains("name: gateway"), "{}", config.to_yaml());
    assert_eq!(parse(&config.to_yaml()), config);
}

#[test]
fn a_list_of_servers_each_with_its_own_settings() {
    let config = parse(
        r#"
toolServers:
  - name: crm
    url: https://crm.example.com/mcp
    auth: {type: Bearer, tokenFile: /etc/voice-agent/tool-servers/crm/token}
    allowedTools: [lookup_customer]
    callTimeout: 5s
    maxConcurrentCalls: 2
  - name: aws-gateway
    url: https://gw.gateway.bedrock-agentcore.us-east-1.amazonaws.com/mcp
    auth: {type: SigV4, region: us-east-1}
"#,
    );
    config.validate().expect("valid");
    let servers: Vec<_> = config.tool_servers().collect();
    assert_eq!(
        servers.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
        ["crm", "aws-gateway"]
    );
    assert_eq!(servers[0].allowed_tools, ["lookup_customer"]);
    assert_eq!(servers[0].max_concurrent_calls, 2);
    assert_eq!(servers[1].call_timeout, Duration::from_secs(10), "the default");
    assert_eq!(
        servers[1].auth,
        GatewayAuth::SigV4 {
            region: Some("us-east-1".into()),
            service: DEFAULT_SIGV4_SERVICE.into()
        }
    );
    assert_eq!(parse(&config.to_yaml()), config, "round trip");
}

#[test]
fn gateway_and_tool_servers_together_are_refused() {
    let message = refusal(
        "gateway:\n  url: https://a.example.com/mcp\ntoolServers:\n  - name: b\n    url: https://b.example.com/mcp\n",
    );
    assert!(message.contains("toolServers"), "{message}");
    assert!(message.contains("not both"), "{message}");
}

#[test]
fn server_names_must_be_unique() {
    let message = refusal(
        "toolServers:\n  - {name: crm, url: 'https://a.example.com/mcp'}\n  - {name: crm, url: 'https://b.example.com/mcp'}\n",
    );
    assert!(message.contains("toolServers.name"), "{message}");
    assert!(message.contains("\"crm\" names two servers"), "{message}");
}

#[test]
fn server_names_must_fit_tool_names_and_volume_names() {
    for bad in ["CRM", "1crm", "crm_tools", "crm-", "", &"a".repeat(33)] {
        let yaml = format!("toolServers:\n  - {{name: {bad:?}, url: 'https://a.example.com/mcp'}}\n");
        let message = refusal(&yaml);
        assert!(message.contains("toolServers.name"), "{bad:?}: {message}");
    }
    for good in ["crm", "aws-gateway-2", &"a".repeat(32)] {
        let yaml = format!("toolServers:\n  - {{name: {good:?}, url: 'https://a.example.com/mcp'}}\n");
        parse(&yaml).validate().expect(good);
    }
}

#[test]
fn errors_in_a_list_entry_name_the_field_and_the_server() {
    let message = refusal(
        "toolServers:\n  - {name: ok, url: 'https://a.example.com/mcp'}\n  - {name: slow, url: 'https://b.example.com/mcp', callTimeout: 10m}\n",
    );
    assert!(message.contains("toolServers.callTimeout"), "{message}");
    assert!(message.contains("server \"slow\""), "{message}");
    let message = refusal("toolServers:\n  - {name: crm, url: 'ftp://a.example.com/mcp'}\n");
    assert!(message.contains("toolServers.url"), "{message}");
}

#[test]
fn a_token_in_a_servers_token_variable_is_refused_without_echoing_it() {
    let message = refusal(
        "toolServers:\n  - name: crm\n    url: https://a.example.com/mcp\n    auth: {type: Bearer, tokenEnv: eyJhbGciOi.secret-part}\n",
    );
    assert!(message.contains("toolServers.auth.tokenEnv"), "{message}");
    assert!(!message.contains("secret-part"), "{message}");
}

#[test]
fn more_servers_than_the_limit_are_refused() {
    let mut yaml = String::from("toolServers:\n");
    for i in 0..=MAX_TOOL_SERVERS {
        yaml.push_str(&format!("  - {{name: s{i}, url: 'https://a.example.com/mcp'}}\n"));
    }
    assert!(refusal(&yaml).contains("at most 16 servers"));
}

#[test]
fn the_gateway_shorthand_keeps_its_field_names_in_errors() {
    let message = refusal("gateway:\n  url: https://a.example.com/mcp\n  maxConcurrentCalls: 0\n");
    assert!(message.contains("gateway.maxConcurrentCalls"), "{message}");
    assert!(!message.contains("server \""), "{message}");
}

#[test]
fn keeps_full_names_when_short_ones_collide() {
    let names = model_tool_names(&["crm___lookup", "erp___lookup", "weather___forecast"]);
    assert_eq!(names, vec!["crm___lookup", "erp___lookup", "forecast"]);
}

#[test]
fn names_two_servers_share_are_prefixed_with_the_server() {
    let resolved = resolve_tool_names(&[
        ("crm", vec!["lookup", "crm_only"]),
        ("erp", vec!["billing___lookup", "erp_only"]),
    ]);
    assert_eq!(
        resolved,
        vec![
            vec![Some("crm___lookup".to_owned()), Some("crm_only".to_owned())],
            vec![Some("erp___lookup".to_owned()), Some("erp_only".to_owned())],
        ]
    );
}

#[test]
fn a_name_already_taken_by_an_earlier_server_is_left_out() {
    // Server a offers `x` and, confusingly, `b___x`; server b offers `x`. The shared `x`
    // becomes `a___x` and `b___x`, and a's own `b___x` came first.
    let resolved = resolve_tool_names(&[("a", vec!["x", "b___x"]), ("b", vec!["x"])]);
    assert_eq!(
        resolved,
        vec![vec![Some("a___x".to_owned()), Some("b___x".to_owned())], vec![None]]
    );
}

#[test]
fn one_server_keeps_todays_names() {
    let names = ["crm___lookup", "erp___lookup", "weather___forecast"];
    let resolved = resolve_tool_names(&[("gateway", names.to_vec())]);
    assert_eq!(
        resolved[0],
        model_tool_names(&names).into_iter().map(Some).collect::<Vec<_>>()
    );
}

#[test]
fn strips_gateway_target_prefixes() {
    assert_eq!(short_tool_name("weather___get_forecast"), "get_forecast");
    assert_eq!(short_tool_name("plain_tool"), "plain_tool");
    assert_eq!(short_tool_name("a___b___c"), "c");
}
