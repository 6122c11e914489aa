use k8s_openapi::api::apps::v1::{DeploymentCondition, DeploymentSpec, DeploymentStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::jiff::Timestamp;

use super::*;
use crate::reconcile::RejectReason;

fn at(secs: i64) -> Time {
    Time(Timestamp::from_second(secs).expect("valid time"))
}

fn deployment(wanted: i32, ready: i32, updated: i32, available: bool) -> Deployment {
    Deployment {
        metadata: ObjectMeta {
            generation: Some(2),
            ..ObjectMeta::default()
        },
        spec: Some(DeploymentSpec {
            replicas: Some(wanted),
            ..DeploymentSpec::default()
        }),
        status: Some(DeploymentStatus {
            observed_generation: Some(2),
            replicas: Some(wanted.max(updated)),
            ready_replicas: Some(ready),
            updated_replicas: Some(updated),
            conditions: Some(vec![DeploymentCondition {
                type_: "Available".into(),
                status: if available { "True" } else { "False" }.into(),
                ..DeploymentCondition::default()
            }]),
            ..DeploymentStatus::default()
        }),
    }
}

fn observation<'a>(accepted: Result<(), &'a Rejection>, deployment: Option<&'a Deployment>) -> Observation<'a> {
    Observation {
        generation: Some(4),
        accepted,
        deployment,
        conflicts: &[],
        url: Some("wss://voice.example.com/ws".into()),
        webhooks: Some(None),
        selector: "app.kubernetes.io/instance=support,app.kubernetes.io/name=voice-agent".into(),
        tool_servers: Some(&[]),
    }
}

fn condition<'a>(status: &'a VoiceAgentStatus, type_: &str) -> &'a Condition {
    status.condition(type_).expect("condition present")
}

#[test]
fn available_deployment_is_ready() {
    let d = deployment(2, 2, 2, true);
    let status = desired_status(None, &observation(Ok(()), Some(&d)), &at(100));
    assert_eq!(status.observed_generation, Some(4));
    assert_eq!(condition(&status, ACCEPTED).status, "True");
    let ready = condition(&status, READY);
    assert_eq!((ready.status.as_str(), ready.reason.as_str()), ("True", "Available"));
    assert_eq!(ready.message, "2/2 replicas ready");
    assert_eq!(ready.observed_generation, Some(4));
    assert_eq!(status.ready_replicas, Some(2));
    assert_eq!(status.url.as_deref(), Some("wss://voice.example.com/ws"));
}

#[test]
fn a_rollout_keeps_an_available_agent_ready() {
    let d = deployment(2, 2, 1, true);
    let status = desired_status(None, &observation(Ok(()), Some(&d)), &at(100));
    let ready = condition(&status, READY);
    assert_eq!(ready.status, "True");
    assert!(ready.message.contains("rolling out (1/2 updated)"), "{}", ready.message);
}

#[test]
fn waiting_pods_are_progressing() {
    let d = deployment(1, 0, 1, false);
    let status = desired_status(None, &observation(Ok(()), Some(&d)), &at(100));
    let ready = condition(&status, READY);
    assert_eq!((ready.status.as_str(), ready.reason.as_str()), ("False", "Progressing"));
    let status = desired_status(None, &observation(Ok(()), None), &at(100));
    assert_eq!(condition(&status, READY).reason, "Progressing");
}

#[test]
fn zero_replicas_is_not_ready() {
    let d = deployment(0, 0, 0, true);
    let status = desired_status(None, &observation(Ok(()), Some(&d)), &at(100));
    assert_eq!(condition(&status, READY).reason, "ScaledToZero");
}

#[test]
fn a_rejection_names_its_reason_and_keeps_the_last_url() {
    let rejection = Rejection {
        reason: RejectReason::ReferenceNotFound,
        message: r#"Secret "prompts" not found"#.into(),
    };
    let d = deployment(1, 1, 1, true);
    let previous = desired_status(None, &observation(Ok(()), Some(&d)), &at(100));
    let mut obs = observation(Err(&rejection), Some(&d));
    obs.url = None;
    let status = desired_status(Some(&previous), &obs, &at(200));
    let accepted = condition(&status, ACCEPTED);
    assert_eq!(
        (accepted.status.as_str(), accepted.reason.as_str()),
        ("False", "ReferenceNotFound")
    );
    assert_eq!(accepted.message, r#"Secret "prompts" not found"#);
    let ready = condition(&status, READY);
    assert_eq!((ready.status.as_str(), ready.reason.as_str()), ("False", "NotAccepted"));
    assert_eq!(status.url.as_deref(), Some("wss://voice.example.com/ws"));
    // The last workload keeps running and is still counted.
    assert_eq!(status.ready_replicas, Some(1));
}

#[test]
fn conflicts_are_not_ready() {
    let d = deployment(1, 1, 1, true);
    let conflicts = vec![r#"Service "support" exists and is not owned by this VoiceAgent"#.to_owned()];
    let mut obs = observation(Ok(()), Some(&d));
    obs.conflicts = &conflicts;
    let status = desired_status(None, &obs, &at(100));
    let ready = condition(&status, READY);
    assert_eq!(ready.reason, "Conflict");
    assert_eq!(ready.message, conflicts[0]);
}

#[test]
fn transition_times_move_only_when_the_status_flips() {
    let d = deployment(1, 1, 1, true);
    let first = desired_status(None, &observation(Ok(()), Some(&d)), &at(100));
    let again = desired_status(Some(&first), &observation(Ok(()), Some(&d)), &at(200));
    assert_eq!(again, first, "an unchanged world gives the same status");
    assert!(transitions(Some(&first), &again).is_empty());

    let down = deployment(1, 0, 1, false);
    let later = desired_status(Some(&first), &observation(Ok(()), Some(&down)), &at(300));
    assert_eq!(condition(&later, READY).last_transition_time, at(300));
    assert_eq!(condition(&later, ACCEPTED).last_transition_time, at(100));
    let changed = transitions(Some(&first), &later);
    assert_eq!(changed.len(), 1);
    assert_eq!(
        (
            changed[0].type_.as_str(),
            changed[0].status.as_str(),
            changed[0].reason.as_str()
        ),
        ("Ready", "False", "Progressing")
    );
}

#[test]
fn the_first_status_reports_every_condition() {
    let status = desired_status(None, &observation(Ok(()), None), &at(1));
    let changed: Vec<_> = transitions(None, &status).into_iter().map(|t| t.type_).collect();
    assert_eq!(changed, ["Accepted", "Ready"]);
}

fn listings() -> Vec<(String, Listing)> {
    vec![
        (
            "crm".into(),
            Listing::Tools(vec!["lookup_customer".into(), "get_weather".into()]),
        ),
        (
            "erp".into(),
            Listing::Unreachable("cannot connect and open an MCP session"),
        ),
        ("aws".into(), Listing::NotListed),
    ]
}

#[test]
fn discovered_tools_are_listed_per_server_and_an_unreachable_one_is_a_condition() {
    let d = deployment(1, 1, 1, true);
    let listings = listings();
    let mut obs = observation(Ok(()), Some(&d));
    obs.tool_servers = Some(&listings);
    let status = desired_status(None, &obs, &at(100));
    assert_eq!(
        status.discovered_tools,
        [DiscoveredTools {
            server: "crm".into(),
            tools: vec!["lookup_customer".into(), "get_weather".into()],
            model_names: Vec::new(),
        }]
    );
    let reachable = condition(&status, TOOL_SERVERS_REACHABLE);
    assert_eq!(
        (reachable.status.as_str(), reachable.reason.as_str()),
        ("False", "Unreachable")
    );
    assert_eq!(
        reachable.message,
        "tool server \"erp\" unreachable: cannot connect and open an MCP session; agents offer the other \
         servers' tools meanwhile; SigV4 servers are not listed by the operator: aws"
    );
    assert_eq!(
        condition(&status, READY).status,
        "True",
        "a server that is down does not make the agent unready"
    );

    // The same listings again: the same status, so nothing is written.
    let again = desired_status(Some(&status), &obs, &at(200));
    assert_eq!(again, status);

    // The server answers: the condition flips, and its tools appear.
    let mut recovered = listings.clone();
    recovered[1].1 = Listing::Tools(vec!["invoice".into()]);
    obs.tool_servers = Some(&recovered);
    let status = desired_status(Some(&status), &obs, &at(300));
    let reachable = condition(&status, TOOL_SERVERS_REACHABLE);
    assert_eq!(
        (reachable.status.as_str(), reachable.reason.as_str()),
        ("True", "Reachable")
    );
    assert_eq!(reachable.last_transition_time, at(300));
    assert_eq!(
        status
            .discovered_tools
            .iter()
            .map(|d| d.server.as_str())
            .collect::<Vec<_>>(),
        ["crm", "erp"]
    );
}

#[test]
fn discovered_tools_show_the_names_the_model_gets() {
    let d = deployment(1, 1, 1, true);
    let listings = vec![
        (
            "crm".to_owned(),
            Listing::Tools(vec!["customers___lookup".into(), "crm_only".into()]),
        ),
        (
            "erp".to_owned(),
            Listing::Tools(vec!["lookup".into(), "invoice".into()]),
        ),
        ("down".to_owned(), Listing::Unreachable("cannot connect")),
    ];
    let mut obs = observation(Ok(()), Some(&d));
    obs.tool_servers = Some(&listings);
    let status = desired_status(None, &obs, &at(100));
    let shown: Vec<(&str, Vec<&str>)> = status
        .discovered_tools
        .iter()
        .map(|d| (d.server.as_str(), d.model_names.iter().map(String::as_str).collect()))
        .collect();
    // crm's gateway name is shortened to `lookup`, which erp offers too: both get their
    // server's prefix; names that are the model's already show no second list.
    assert_eq!(
        shown,
        [
            ("crm", vec!["crm___lookup", "crm_only"]),
            ("erp", vec!["erp___lookup", "invoice"]),
        ]
    );
}

#[test]
fn without_tool_servers_there_is_no_tool_condition() {
    let d = deployment(1, 1, 1, true);
    let status = desired_status(None, &observation(Ok(()), Some(&d)), &at(100));
    assert!(status.condition(TOOL_SERVERS_REACHABLE).is_none());
    assert!(status.discovered_tools.is_empty());
}

#[test]
fn a_rejected_spec_keeps_the_tools_it_showed() {
    let d = deployment(1, 1, 1, true);
    let listings = listings();
    let mut obs = observation(Ok(()), Some(&d));
    obs.tool_servers = Some(&listings);
    let previous = desired_status(None, &obs, &at(100));
    let rejection = Rejection {
        reason: RejectReason::ReferenceNotFound,
        message: r#"Secret "crm-token" not found"#.into(),
    };
    let mut rejected = observation(Err(&rejection), Some(&d));
    rejected.tool_servers = None;
    let status = desired_status(Some(&previous), &rejected, &at(200));
    assert_eq!(status.discovered_tools, previous.discovered_tools);
    assert_eq!(
        status.condition(TOOL_SERVERS_REACHABLE),
        previous.condition(TOOL_SERVERS_REACHABLE)
    );
}

#[test]
fn webhook_urls_follow_the_accepted_spec_and_survive_a_rejection() {
    let webhooks = crate::fixtures::validated(crate::fixtures::spec(
        r#"
expose: {ingress: {host: voice.example.com, tls: {}}}
telephony: {twilio: {authTokenSecretRef: {name: twilio, key: token}}}
"#,
    ))
    .webhooks;
    let accepted = Observation {
        webhooks: Some(webhooks.clone()),
        ..observation(Ok(()), None)
    };
    let shown = desired_status(None, &accepted, &at(100));
    assert_eq!(
        shown
            .telephony
            .as_ref()
            .and_then(|t| t.twilio.as_ref())
            .map(|t| t.voice_url.as_str()),
        Some("https://voice.example.com/twilio/voice")
    );
    assert_eq!(shown.telephony.as_ref().and_then(|t| t.vonage.as_ref()), None);
    let rejection = Rejection {
        reason: RejectReason::ReferenceNotFound,
        message: "Secret \"twilio\" not found".into(),
    };
    let rejected = Observation {
        webhooks: None,
        ..observation(Err(&rejection), None)
    };
    assert_eq!(desired_status(Some(&shown), &rejected, &at(200)).telephony, webhooks);
    // Telephony removed from an accepted spec: the URLs go.
    assert_eq!(
        desired_status(Some(&shown), &observation(Ok(()), None), &at(300)).telephony,
        None
    );
}
