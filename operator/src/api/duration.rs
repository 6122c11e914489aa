//! `Duration`: a span of time written the way Kubernetes writes them (`30s`, `5m`, `1h30m`,
//! `250ms`), so CEL's `duration()` understands the same strings the operator does.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;
use std::time;

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize, Serializer, de};

/// What the schema accepts: one or more `<number><unit>` groups, no sign. Every string it
/// matches is a Go duration, so CEL rules may call `duration(self)` without a runtime error.
pub const DURATION_PATTERN: &str = r"^([0-9]+(\.[0-9]+)?(ns|us|ms|s|m|h))+$";

/// Longest duration string accepted; bounds the cost the apiserver estimates for CEL rules.
pub const DURATION_MAX_LENGTH: u32 = 32;

/// A non-negative duration in Go `time.ParseDuration` syntax.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Duration(time::Duration);

impl Duration {
    pub const fn from_secs(secs: u64) -> Self {
        Self(time::Duration::from_secs(secs))
    }

    pub const fn from_millis(millis: u64) -> Self {
        Self(time::Duration::from_millis(millis))
    }

    pub const fn as_std(self) -> time::Duration {
        self.0
    }

    /// Whole seconds, rounded up (a timeout of 1.2 s must not become 1 s).
    pub fn as_secs_ceil(self) -> u64 {
        let whole = self.0.as_secs();
        if self.0.subsec_nanos() > 0 { whole + 1 } else { whole }
    }
}

impl From<time::Duration> for Duration {
    fn from(d: time::Duration) -> Self {
        Self(d)
    }
}

impl From<Duration> for time::Duration {
    fn from(d: Duration) -> Self {
        d.0
    }
}

/// Why a duration string was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid duration {input:?}: {reason} (examples: 30s, 5m, 1h30m, 250ms)")]
pub struct ParseDurationError {
    input: String,
    reason: String,
}

impl FromStr for Duration {
    type Err = ParseDurationError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let refuse = |reason: &str| ParseDurationError {
            input: s.to_owned(),
            reason: reason.to_owned(),
        };
        if s.is_empty() {
            return Err(refuse("empty"));
        }
        if s.starts_with('-') {
            return Err(refuse("negative"));
        }
        let parsed: kube::core::Duration = s.parse().map_err(|e| refuse(&format!("{e}")))?;
        Ok(Self(parsed.into()))
    }
}

impl fmt::Display for Duration {
    /// The shortest exact form in the largest unit that divides it: `5m`, `90s`, `1h`, `250ms`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let nanos = self.0.as_nanos();
        const UNITS: [(u128, &str); 6] = [
            (3_600_000_000_000, "h"),
            (60_000_000_000, "m"),
            (1_000_000_000, "s"),
            (1_000_000, "ms"),
            (1_000, "us"),
            (1, "ns"),
        ];
        if nanos == 0 {
            return f.write_str("0s");
        }
        for (size, unit) in UNITS {
            if nanos.is_multiple_of(size) {
                return write!(f, "{}{unit}", nanos / size);
            }
        }
        write!(f, "{nanos}ns")
    }
}

impl fmt::Debug for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = Cow::<str>::deserialize(deserializer)?;
        text.parse().map_err(de::Error::custom)
    }
}

impl JsonSchema for Duration {
    fn schema_name() -> Cow<'static, str> {
        "Duration".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "pattern": DURATION_PATTERN,
            "maxLength": DURATION_MAX_LENGTH,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_go_durations() {
        for (text, secs) in [("30s", 30.0), ("5m", 300.0), ("1h30m", 5400.0), ("1.5s", 1.5)] {
            let d: Duration = text.parse().expect(text);
            assert_eq!(d.as_std().as_secs_f64(), secs, "{text}");
        }
        assert_eq!(
            "250ms".parse::<Duration>().expect("ms").as_std(),
            time::Duration::from_millis(250)
        );
    }

    #[test]
    fn refuses_what_the_schema_refuses() {
        for text in ["", "-5s", "5", "5 minutes", "1d"] {
            assert!(text.parse::<Duration>().is_err(), "{text:?} accepted");
        }
    }

    #[test]
    fn prints_the_shortest_exact_form() {
        assert_eq!(Duration::from_secs(300).to_string(), "5m");
        assert_eq!(Duration::from_secs(3600).to_string(), "1h");
        assert_eq!(Duration::from_secs(90).to_string(), "90s");
        assert_eq!(Duration::from_millis(250).to_string(), "250ms");
        assert_eq!(Duration::from_millis(1500).to_string(), "1500ms");
        assert_eq!(Duration::default().to_string(), "0s");
    }

    #[test]
    fn rounds_seconds_up() {
        assert_eq!(Duration::from_millis(1200).as_secs_ceil(), 2);
        assert_eq!(Duration::from_secs(7).as_secs_ceil(), 7);
    }

    #[test]
    fn every_printed_form_matches_the_schema_pattern() {
        // The pattern is a plain regular expression; a tiny matcher keeps the test dependency-free:
        // the printed form is always digits followed by one unit.
        for d in [
            Duration::from_secs(300),
            Duration::from_millis(250),
            Duration::default(),
        ] {
            let text = d.to_string();
            let digits = text.trim_end_matches(char::is_alphabetic);
            let unit = &text[digits.len()..];
            assert!(digits.chars().all(|c| c.is_ascii_digit()), "{text}");
            assert!(["ns", "us", "ms", "s", "m", "h"].contains(&unit), "{text}");
        }
    }
}
