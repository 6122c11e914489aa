//! Reading the Prometheus text exposition a process serves on `/metrics`.

use std::collections::BTreeSet;

/// The sum of the samples of `family` (an unlabelled metric, or every series of a labelled
/// one), or `None` when the exposition has no sample of it.
pub fn family_sum(exposition: &str, family: &str) -> Option<f64> {
    exposition
        .lines()
        .filter(|l| {
            l.strip_prefix(family)
                .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .fold(None, |sum, v| Some(sum.unwrap_or(0.0) + v))
}

/// Every series name an exposition can be queried by: sample names, plus the names each
/// `# TYPE` line implies (`_total` for counters, `_bucket`/`_sum`/`_count` for histograms), so
/// families without samples yet count too.
pub fn series_names(exposition: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in exposition.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split_whitespace();
            let (Some(name), Some(kind)) = (parts.next(), parts.next()) else {
                continue;
            };
            let suffixes: &[&str] = match kind {
                "counter" => &["_total"],
                "histogram" => &["_bucket", "_sum", "_count"],
                "summary" => &["", "_sum", "_count"],
                _ => &[""],
            };
            for suffix in suffixes {
                names.insert(format!("{name}{suffix}"));
            }
        } else if !line.starts_with('#') && !line.trim().is_empty() {
            let end = line.find(['{', ' ']).unwrap_or(line.len());
            names.insert(line[..end].to_owned());
        }
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXPOSITION: &str = "\
# TYPE voice_operator_reconciles_total counter
voice_operator_reconciles_total 7
# TYPE voice_operator_writes_total counter
voice_operator_writes_total{kind=\"Deployment\",verb=\"apply\"} 2
voice_operator_writes_total{kind=\"Service\",verb=\"apply\"} 3
voice_operator_writes_total_other 100
# TYPE voice_operator_reconcile_duration_seconds histogram
";

    #[test]
    fn sums_a_family_and_nothing_that_only_shares_its_prefix() {
        assert_eq!(family_sum(EXPOSITION, "voice_operator_reconciles_total"), Some(7.0));
        assert_eq!(family_sum(EXPOSITION, "voice_operator_writes_total"), Some(5.0));
        assert_eq!(family_sum(EXPOSITION, "voice_operator_leader"), None);
    }

    #[test]
    fn names_include_families_without_samples() {
        let names = series_names(EXPOSITION);
        assert!(names.contains("voice_operator_writes_total"));
        assert!(names.contains("voice_operator_reconcile_duration_seconds_bucket"));
        assert!(names.contains("voice_operator_reconcile_duration_seconds_count"));
    }
}
