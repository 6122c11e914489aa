//! Kubernetes Events for what changed: condition transitions and child writes. Only changes
//! produce Events, so a quiet VoiceAgent produces none. Notes name objects, never values.

use kube::runtime::events::{Event, EventType, Recorder};
use kube::{Resource, api::ObjectMeta};

use super::apply::{Change, ChangeKind};
use super::status::Transition;
use crate::api::VoiceAgent;

/// Reasons of a `False` condition that are part of normal operation.
const PROGRESS_REASONS: [&str; 2] = ["Progressing", "ScaledToZero"];

/// Event for one condition transition.
pub fn transition_event(t: &Transition) -> Event {
    // Waiting for pods is news, not trouble.
    let fine = t.status == "True" || PROGRESS_REASONS.contains(&t.reason.as_str());
    Event {
        type_: if fine { EventType::Normal } else { EventType::Warning },
        reason: t.reason.clone(),
        note: Some(truncate(&format!("{} is {}: {}", t.type_, t.status, t.message))),
        action: format!("Set{}", t.type_),
        secondary: None,
    }
}

/// One Event summing up the children written by a reconcile, if any.
pub fn changes_event(changes: &[Change]) -> Option<Event> {
    if changes.is_empty() {
        return None;
    }
    let described: Vec<String> = changes
        .iter()
        .map(|c| {
            let verb = match c.kind {
                ChangeKind::Created => "created",
                ChangeKind::Updated => "updated",
                ChangeKind::Deleted => "deleted",
            };
            format!("{verb} {} {}", c.object_kind, c.name)
        })
        .collect();
    Some(Event {
        type_: EventType::Normal,
        reason: "ChildrenApplied".into(),
        note: Some(truncate(&described.join(", "))),
        action: "Apply".into(),
        secondary: None,
    })
}

/// Publishes `event` about the VoiceAgent; a failure is logged, not returned: Events are a
/// courtesy, and must not fail or repeat a reconcile.
pub async fn publish(recorder: &Recorder, agent: &VoiceAgent, event: Event) -> bool {
    publish_about(recorder, &agent.object_ref(&()), &agent.metadata, event).await
}

/// The same, for an object known only by its metadata.
pub async fn publish_about(
    recorder: &Recorder,
    reference: &k8s_openapi::api::core::v1::ObjectReference,
    meta: &ObjectMeta,
    event: Event,
) -> bool {
    match recorder.publish(&event, reference).await {
        Ok(()) => true,
        Err(err) => {
            tracing::warn!(
                name = meta.name.as_deref().unwrap_or_default(),
                reason = %event.reason,
                error = %err,
                "cannot publish Event"
            );
            false
        }
    }
}

/// Event notes are limited to 1 KiB.
fn truncate(note: &str) -> String {
    const LIMIT: usize = 1024;
    if note.len() <= LIMIT {
        return note.to_owned();
    }
    let mut end = LIMIT - 3;
    while !note.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &note[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transitions_to_false_are_warnings() {
        let e = transition_event(&Transition {
            type_: "Accepted".into(),
            status: "False".into(),
            reason: "ReferenceNotFound".into(),
            message: r#"Secret "prompts" not found"#.into(),
        });
        assert_eq!(e.type_, EventType::Warning);
        assert_eq!(e.reason, "ReferenceNotFound");
        assert_eq!(
            e.note.as_deref(),
            Some(r#"Accepted is False: Secret "prompts" not found"#)
        );
    }

    #[test]
    fn changes_are_summed_up_in_one_event() {
        assert!(changes_event(&[]).is_none());
        let e = changes_event(&[
            Change {
                kind: ChangeKind::Created,
                object_kind: "Deployment".into(),
                name: "support".into(),
            },
            Change {
                kind: ChangeKind::Deleted,
                object_kind: "Ingress".into(),
                name: "support".into(),
            },
        ])
        .expect("an event");
        assert_eq!(
            e.note.as_deref(),
            Some("created Deployment support, deleted Ingress support")
        );
    }

    #[test]
    fn long_notes_are_cut() {
        let cut = truncate(&"é".repeat(1000));
        assert!(cut.len() <= 1024 && cut.ends_with("..."), "{}", cut.len());
    }
}
