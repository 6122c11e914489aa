//! Does a live object already hold everything the operator would apply? If so the apply is
//! skipped, which is what makes an unchanged VoiceAgent cost no writes.
//!
//! "Holds" means: every field the operator sets is present with an equal value. Fields the
//! apiserver defaults or other controllers add are ignored; a field the operator stopped setting
//! is caught by the content-hash annotation the apply step adds to every object, which changes
//! whenever the desired object does.

use serde_json::Value;

/// Map keys whose values are resource quantities, which the apiserver rewrites to canonical
/// form (`0.5` becomes `500m`, `1024Mi` becomes `1Gi`).
const QUANTITY_MAPS: [&str; 2] = ["requests", "limits"];
/// Keys whose value is itself a quantity.
const QUANTITY_KEYS: [&str; 2] = ["averageValue", "sizeLimit"];

/// What the value being compared is, as far as comparison cares.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Plain,
    /// A map whose values are quantities.
    QuantityMap,
    Quantity,
}

/// Whether every field of `desired` is present in `live` with an equal value.
pub fn is_subset(desired: &Value, live: &Value) -> bool {
    subset(desired, live, Kind::Plain)
}

fn subset(desired: &Value, live: &Value, kind: Kind) -> bool {
    match (desired, live) {
        (Value::Object(d), Value::Object(l)) => d.iter().all(|(key, dv)| {
            let child = if kind == Kind::QuantityMap {
                Kind::Quantity
            } else if QUANTITY_MAPS.contains(&key.as_str()) {
                Kind::QuantityMap
            } else if QUANTITY_KEYS.contains(&key.as_str()) {
                Kind::Quantity
            } else {
                Kind::Plain
            };
            match l.get(key) {
                None => is_empty(dv),
                Some(lv) => subset(dv, lv, child),
            }
        }),
        (Value::Array(d), Value::Array(l)) => match (named(d), named(l)) {
            // Lists of named items (containers, env, ports, volumes, owner references) are
            // matched by name: other controllers may add items, and order is not ours alone.
            (Some(d), Some(l)) => d.iter().all(|(name, dv)| {
                l.iter()
                    .find(|(n, _)| n == name)
                    .is_some_and(|(_, lv)| subset(dv, lv, Kind::Plain))
            }),
            _ => d.len() == l.len() && d.iter().zip(l).all(|(dv, lv)| subset(dv, lv, kind)),
        },
        (d, Value::Null) => is_empty(d),
        (Value::String(d), Value::String(l)) => d == l || (kind == Kind::Quantity && quantities_equal(d, l)),
        (Value::Number(d), Value::Number(l)) => d.as_f64() == l.as_f64(),
        (d, l) => d == l,
    }
}

/// Values Go's `omitempty` drops, so their absence in the live object is no difference.
fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.values().all(is_empty),
    }
}

/// `(name, item)` pairs when every item is an object with a string `name`.
fn named(items: &[Value]) -> Option<Vec<(&str, &Value)>> {
    if items.is_empty() {
        return None;
    }
    items
        .iter()
        .map(|v| v.get("name").and_then(Value::as_str).map(|n| (n, v)))
        .collect()
}

fn quantities_equal(a: &str, b: &str) -> bool {
    match (parse_quantity(a), parse_quantity(b)) {
        (Some(a), Some(b)) => (a - b).abs() <= f64::EPSILON * a.abs().max(b.abs()).max(1.0),
        _ => false,
    }
}

/// A Kubernetes quantity as a number: `250m`, `1.5`, `2Gi`, `1e3`, `128M`.
fn parse_quantity(s: &str) -> Option<f64> {
    if let Ok(plain) = s.parse::<f64>() {
        return Some(plain);
    }
    let split = s.find(|c: char| c.is_ascii_alphabetic())?;
    let (number, suffix) = s.split_at(split);
    let number: f64 = number.parse().ok()?;
    let factor = match suffix {
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024.0,
        "Mi" => 1024.0 * 1024.0,
        "Gi" => 1024.0 * 1024.0 * 1024.0,
        "Ti" => 1024.0_f64.powi(4),
        "Pi" => 1024.0_f64.powi(5),
        "Ei" => 1024.0_f64.powi(6),
        _ => return None,
    };
    Some(number * factor)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn fields_added_by_the_apiserver_are_no_difference() {
        let desired = json!({"spec": {"ports": [{"name": "ws", "port": 8080}]}});
        let live = json!({"spec": {"clusterIP": "10.0.0.1", "ports": [{"name": "ws", "port": 8080, "protocol": "TCP"}]}, "status": {}});
        assert!(is_subset(&desired, &live));
    }

    #[test]
    fn a_changed_value_is_a_difference() {
        let desired = json!({"data": {"config.yaml": "a: 2"}});
        let live = json!({"data": {"config.yaml": "a: 1"}});
        assert!(!is_subset(&desired, &live));
    }

    #[test]
    fn a_missing_field_is_a_difference_unless_empty() {
        assert!(!is_subset(&json!({"a": {"b": 1}}), &json!({})));
        assert!(is_subset(&json!({"a": [], "b": {}, "c": false, "d": null}), &json!({})));
    }

    #[test]
    fn named_lists_match_by_name_and_tolerate_extra_items() {
        let desired = json!({"containers": [{"name": "agent", "image": "a:1"}]});
        let live = json!({"containers": [{"name": "sidecar", "image": "s"}, {"name": "agent", "image": "a:1", "imagePullPolicy": "IfNotPresent"}]});
        assert!(is_subset(&desired, &live));
        let changed = json!({"containers": [{"name": "agent", "image": "a:2"}]});
        assert!(!is_subset(&changed, &live));
    }

    #[test]
    fn unnamed_lists_must_match_position_and_length() {
        assert!(is_subset(&json!({"drop": ["ALL"]}), &json!({"drop": ["ALL"]})));
        assert!(!is_subset(&json!({"drop": ["ALL"]}), &json!({"drop": ["ALL", "X"]})));
        assert!(!is_subset(&json!({"args": ["a", "b"]}), &json!({"args": ["b", "a"]})));
    }

    #[test]
    fn quantities_compare_by_value() {
        let desired =
            json!({"resources": {"requests": {"cpu": "0.5", "memory": "1024Mi"}, "limits": {"memory": "1Gi"}}});
        let live = json!({"resources": {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"memory": "1Gi"}}});
        assert!(is_subset(&desired, &live));
        let more = json!({"resources": {"requests": {"cpu": "600m"}}});
        assert!(!is_subset(&more, &live));
    }

    #[test]
    fn only_quantity_fields_compare_by_value() {
        // "1000" and "1k" are the same quantity but different annotation values.
        assert!(!is_subset(
            &json!({"annotations": {"a": "1000"}}),
            &json!({"annotations": {"a": "1k"}})
        ));
        assert!(is_subset(
            &json!({"averageValue": "1000"}),
            &json!({"averageValue": "1k"})
        ));
    }

    #[test]
    fn numbers_compare_by_value() {
        assert!(is_subset(&json!({"n": 1}), &json!({"n": 1.0})));
    }

    #[test]
    fn parses_quantities() {
        assert_eq!(parse_quantity("250m"), Some(0.25));
        assert_eq!(parse_quantity("2Gi"), Some(2.0 * 1024.0 * 1024.0 * 1024.0));
        assert_eq!(parse_quantity("1e3"), Some(1000.0));
        assert_eq!(parse_quantity("128M"), Some(128e6));
        assert_eq!(parse_quantity("12x"), None);
    }
}
