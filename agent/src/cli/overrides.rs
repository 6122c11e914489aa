//! Which config fields the command line set, so that a validation error about one of them also
//! names the flag and the environment variable to fix.

use clap::Args as _;

use super::ServeArgs;
use voice_config::ConfigError;

/// A flag's value together with its clap id (the field name), so errors can name the flag.
macro_rules! flag {
    ($args:ident . $name:ident) => {
        ($args.$name.clone(), stringify!($name))
    };
}
pub(super) use flag;

/// The config fields that flags (or their environment variables) set, by clap id, so that a
/// validation error can also say which flag or variable to fix.
#[derive(Default)]
pub(super) struct Overrides(Vec<(&'static str, &'static str)>);

impl Overrides {
    /// Sets `target` when the flag has a value.
    pub(super) fn set<T>(&mut self, target: &mut T, field: &'static str, (value, arg): (Option<T>, &'static str)) {
        if let Some(value) = value {
            *target = value;
            self.record(field, arg);
        }
    }

    /// Sets an optional field when the flag has a value.
    pub(super) fn set_some<T>(
        &mut self,
        target: &mut Option<T>,
        field: &'static str,
        (value, arg): (Option<T>, &'static str),
    ) {
        self.set(target, field, (value.map(Some), arg));
    }

    /// Replaces a list when the flag has entries.
    pub(super) fn set_list(
        &mut self,
        target: &mut Vec<String>,
        field: &'static str,
        (value, arg): (Vec<String>, &'static str),
    ) {
        self.set(target, field, ((!value.is_empty()).then_some(value), arg));
    }

    pub(super) fn record(&mut self, field: &'static str, arg: &'static str) {
        self.0.push((field, arg));
    }

    pub(super) fn first(&self) -> Option<&'static str> {
        self.0.first().map(|(_, arg)| *arg)
    }

    /// Adds the flag and variable to a validation error about a field a flag set.
    pub(super) fn explain(&self, error: ConfigError) -> ConfigError {
        match error {
            ConfigError::Invalid { field, message } => {
                let culprit = self.0.iter().rev().find(|(set, _)| {
                    field == *set || field.strip_prefix(set).is_some_and(|rest| rest.starts_with('.'))
                });
                let message = match culprit {
                    Some((_, arg)) => format!("{message} (set by {})", describe_flag(arg)),
                    None => message,
                };
                ConfigError::Invalid { field, message }
            }
            other => other,
        }
    }
}

/// `--flag or VOICE_AGENT_…` for an argument of [`ServeArgs`], from clap's own definition.
pub(super) fn describe_flag(id: &str) -> String {
    let command = ServeArgs::augment_args(clap::Command::new("voice-agent"));
    let Some(arg) = command.get_arguments().find(|a| a.get_id().as_str() == id) else {
        return id.to_owned();
    };
    let flag = arg.get_long().map_or_else(|| id.to_owned(), |long| format!("--{long}"));
    match arg.get_env() {
        Some(variable) => format!("{flag} or {}", variable.to_string_lossy()),
        None => flag,
    }
}
