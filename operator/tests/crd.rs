//! The committed CRD is exactly what the code generates.

use std::path::PathBuf;

#[test]
fn committed_crd_matches_the_code() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../crds/voiceagents.voiceagent.dev.yaml");
    let committed = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let generated = voice_operator::api::crd_yaml().expect("renders");
    assert!(
        committed == generated,
        "{} is out of date; regenerate it with\n  cargo run -p voice-operator -- crd > crds/voiceagents.voiceagent.dev.yaml",
        path.display()
    );
}

#[test]
fn the_crd_is_what_the_issue_asks_for() {
    let crd = voice_operator::api::crd();
    let json = serde_json::to_value(&crd).expect("json");
    assert_eq!(json["metadata"]["name"], "voiceagents.voiceagent.dev");
    assert_eq!(json["spec"]["scope"], "Namespaced");
    assert_eq!(json["spec"]["names"]["shortNames"][0], "va");
    let version = &json["spec"]["versions"][0];
    assert_eq!(version["name"], "v1alpha1");
    assert!(version["subresources"]["status"].is_object());
    assert_eq!(version["subresources"]["scale"]["specReplicasPath"], ".spec.replicas");
    let columns: Vec<&str> = version["additionalPrinterColumns"]
        .as_array()
        .expect("columns")
        .iter()
        .filter(|c| c.get("priority").is_none())
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert_eq!(columns, ["Ready", "URL", "Replicas", "Age"]);
}

/// `kubectl explain` is only useful if every field says what it is.
#[test]
fn every_spec_field_is_documented() {
    let crd = voice_operator::api::crd();
    let json = serde_json::to_value(&crd).expect("json");
    let schema = &json["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
    let mut undocumented = Vec::new();
    walk(&schema["properties"]["spec"], "spec", &mut undocumented);
    walk(&schema["properties"]["status"], "status", &mut undocumented);
    assert!(
        undocumented.is_empty(),
        "fields without a description: {undocumented:#?}"
    );
}

fn walk(schema: &serde_json::Value, path: &str, out: &mut Vec<String>) {
    if schema
        .get("description")
        .and_then(|d| d.as_str())
        .is_none_or(str::is_empty)
    {
        out.push(path.to_owned());
    }
    // Embedded Kubernetes types (tolerations, affinity, resources...) document themselves;
    // only descend into our own objects.
    if path.starts_with("spec.pod.") || path == "spec.resources" || path.starts_with("status.conditions") {
        return;
    }
    if let Some(props) = schema.get("properties").and_then(|p| p.as_object()) {
        for (name, child) in props {
            walk(child, &format!("{path}.{name}"), out);
        }
    }
    if let Some(props) = schema
        .get("items")
        .and_then(|items| items.get("properties"))
        .and_then(|p| p.as_object())
    {
        for (name, child) in props {
            walk(child, &format!("{path}[].{name}"), out);
        }
    }
}
