//! Golden files: the full expected JSON of each built object lives in `golden/<name>.json`.
//! A mismatch fails with both documents; `VOICE_OPERATOR_UPDATE_GOLDEN=1 cargo test` rewrites
//! the files, to be reviewed in the diff like any other change.

use std::path::PathBuf;

use serde::Serialize;

const UPDATE_ENV: &str = "VOICE_OPERATOR_UPDATE_GOLDEN";

fn path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("src/reconcile/build/golden")
        .join(format!("{name}.json"))
}

/// Compares `value` with `golden/<name>.json`.
#[track_caller]
pub fn assert_golden(name: &str, value: &impl Serialize) {
    let actual = serde_json::to_value(value).expect("serializes");
    let file = path(name);
    if std::env::var_os(UPDATE_ENV).is_some() {
        let text = serde_json::to_string_pretty(&actual).expect("pretty") + "\n";
        std::fs::write(&file, text).expect("writes golden file");
        return;
    }
    let text = std::fs::read_to_string(&file).unwrap_or_else(|e| {
        panic!(
            "cannot read {}: {e}; run with {UPDATE_ENV}=1 to create it",
            file.display()
        )
    });
    let expected: serde_json::Value = serde_json::from_str(&text).expect("golden file is JSON");
    if actual != expected {
        panic!(
            "{name} differs from {}\n--- expected\n{}\n--- actual\n{}\n(rerun with {UPDATE_ENV}=1 to accept)",
            file.display(),
            serde_json::to_string_pretty(&expected).unwrap_or_default(),
            serde_json::to_string_pretty(&actual).unwrap_or_default(),
        );
    }
}
