//! The CRD as the apiserver gets it: the derived schema, tidied for `kubectl explain`.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;
use serde_json::Value;

use super::VoiceAgent;

/// The VoiceAgent CRD. Compared with the derived one, descriptions are re-flowed (doc
/// comments break lines at 100 columns; `kubectl explain` wraps text itself) and optional
/// fields are not `nullable`: a `null` sent for them is pruned, meaning "unset", instead of
/// being stored.
pub fn crd() -> CustomResourceDefinition {
    let crd = VoiceAgent::crd();
    let Ok(mut json) = serde_json::to_value(&crd) else {
        return crd;
    };
    tidy(&mut json);
    serde_json::from_value(json).unwrap_or(crd)
}

fn tidy(value: &mut Value) {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(d)) = map.get_mut("description") {
                *d = reflow(d);
            }
            if map.remove("nullable").is_some()
                && let Some(Value::Array(values)) = map.get_mut("enum")
            {
                values.retain(|v| !v.is_null());
            }
            map.values_mut().for_each(tidy);
        }
        Value::Array(items) => items.iter_mut().for_each(tidy),
        _ => {}
    }
}

/// Joins the lines of each paragraph; paragraphs stay apart.
fn reflow(text: &str) -> String {
    text.split("\n\n")
        .map(|p| p.lines().map(str::trim).collect::<Vec<_>>().join(" "))
        .collect::<Vec<_>>()
        .join("\n\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reflows_paragraphs() {
        assert_eq!(reflow("one\ntwo\n\nthree"), "one two\n\nthree");
    }

    #[test]
    fn optional_enums_accept_only_their_values() {
        let json = serde_json::to_string(&crd()).expect("json");
        assert!(!json.contains("\"nullable\""));
        assert!(!json.contains("null]"), "an enum still lists null");
    }
}
