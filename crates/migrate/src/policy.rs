//! What a start-up does about migrations that are not applied.

use crate::Error;

/// The start-up policy the migration guides describe: apply pending migrations (small
/// deployments), or refuse to start while anything is pending (migrations run as a separate
/// Job, or by `sluice up` in a pipeline).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Policy {
    /// Apply what is pending, under the runner's lock, then start.
    Apply,
    /// Change nothing; refuse to start while anything is pending.
    Check,
}

impl Policy {
    /// [`Policy::Apply`] when `auto_migrate`, else [`Policy::Check`].
    pub fn from_flag(auto_migrate: bool) -> Self {
        if auto_migrate {
            Self::Apply
        } else {
            Self::Check
        }
    }

    /// Reads the environment variable `name` (`AUTO_MIGRATE`, say): `true`, `1`, `yes` or `on`
    /// apply; `false`, `0`, `no`, `off`, empty or unset check. Anything else is an error
    /// rather than a guess, so `AUTO_MIGRATE=ture` does not quietly mean "no".
    ///
    /// ```
    /// # use sluice_migrate::Policy;
    /// assert_eq!(Policy::from_env("SLUICE_DOCTEST_UNSET").unwrap(), Policy::Check);
    /// ```
    pub fn from_env(name: &str) -> Result<Self, Error> {
        flag_from_env(name).map(Self::from_flag)
    }

    #[cfg(test)]
    fn parse(name: &str, value: &str) -> Result<Self, Error> {
        parse_flag(name, value).map(Self::from_flag)
    }
}

/// Reads a yes-or-no environment variable as [`Policy::from_env`] does (`ALLOW_NEWER`, say):
/// unset or empty is `false`, and a value that is neither is an error, not a guess.
///
/// ```
/// assert!(!sluice_migrate::flag_from_env("SLUICE_DOCTEST_UNSET").unwrap());
/// ```
pub fn flag_from_env(name: &str) -> Result<bool, Error> {
    match std::env::var(name) {
        Ok(value) => parse_flag(name, &value),
        Err(std::env::VarError::NotPresent) => Ok(false),
        Err(std::env::VarError::NotUnicode(_)) => Err(not_yes_or_no(name, "(not UTF-8)")),
    }
}

fn parse_flag(name: &str, value: &str) -> Result<bool, Error> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" | "" => Ok(false),
        _ => Err(not_yes_or_no(name, value)),
    }
}

fn not_yes_or_no(name: &str, value: &str) -> Error {
    Error::Setting {
        name: name.to_owned(),
        value: value.to_owned(),
        expected: "is not a yes or no: set it to true or false (unset means false)".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_yes_and_no_and_refuses_the_rest() {
        for yes in ["true", "TRUE", "1", "yes", "on", " true "] {
            assert_eq!(
                Policy::parse("AUTO_MIGRATE", yes).unwrap(),
                Policy::Apply,
                "{yes}"
            );
        }
        for no in ["false", "0", "no", "off", "", "False"] {
            assert_eq!(
                Policy::parse("AUTO_MIGRATE", no).unwrap(),
                Policy::Check,
                "{no}"
            );
        }
        let error = Policy::parse("AUTO_MIGRATE", "ture")
            .unwrap_err()
            .to_string();
        assert!(error.contains("AUTO_MIGRATE=\"ture\""), "{error}");
        assert!(error.contains("true or false"), "{error}");
    }
}
