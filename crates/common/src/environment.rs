//! Environments: `[environments.<name>]` in `sluice.toml`, chosen with `--env` / `SLUICE_ENV`.
//!
//! One file describes every database a project migrates (preview, staging, production). An
//! environment says where its URL comes from, what a run there must do first (a backup, an
//! approval), what it may not do (skip lint, let an application apply), and overrides any
//! setting of the file's top level, `[runner]` and `[backfill]`. Chosen, it is laid over the
//! file before anything else reads it, so every command sees one effective file; the names
//! it set are kept so that `config` can say a value came from the environment.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::config::{BackfillFile, ConfigError, FileConfig, LogFormat, Origin, RunnerFile};

/// `[environments.<name>]`: the top level's keys, `[runner]` and `[backfill]`, and the
/// environment's own rules. Unknown keys are errors, as everywhere in the file.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnvironmentFile {
    /// The variable holding this environment's database URL (`PROD_DATABASE_URL`). When set,
    /// `DATABASE_URL` and the top level's `database_url` are not read in this environment.
    pub database_url_env: Option<String>,
    pub database_url: Option<String>,
    pub schema: Option<String>,
    #[serde(default, with = "humantime_serde")]
    pub connect_timeout: Option<Duration>,
    pub connect_attempts: Option<u32>,
    #[serde(default, with = "humantime_serde")]
    pub connect_wait: Option<Duration>,
    pub log_format: Option<LogFormat>,
    /// `up`/`down` refuse to run without `--backup` (or `[runner] backup`).
    pub require_backup: Option<bool>,
    /// `up` applies only migrations approved (`sluice approve`) with their exact checksum.
    pub require_approval: Option<bool>,
    /// `--skip-lint` is refused.
    pub forbid_skip_lint: Option<bool>,
    /// Whether an application's start-up (`AUTO_MIGRATE`, `Migrator::startup`) may apply
    /// migrations here [default: true].
    pub auto_apply: Option<bool>,
    #[serde(default)]
    pub runner: RunnerFile,
    #[serde(default)]
    pub backfill: BackfillFile,
}

/// The rules of the chosen environment (all off when none is chosen).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rules {
    pub require_backup: bool,
    pub require_approval: bool,
    pub forbid_skip_lint: bool,
    pub auto_apply: bool,
}

impl Default for Rules {
    fn default() -> Self {
        Self {
            require_backup: false,
            require_approval: false,
            forbid_skip_lint: false,
            auto_apply: true,
        }
    }
}

/// The environment a command runs in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chosen {
    pub name: String,
    /// `--env` or `SLUICE_ENV`.
    pub origin: Origin,
    pub rules: Rules,
    /// Where this environment reads its database URL from, if not `DATABASE_URL`.
    pub database_url_env: Option<String>,
    /// The settings the environment set, by the name `config` shows them under.
    pub overridden: Vec<&'static str>,
}

impl Chosen {
    /// The origin `config` shows for `setting`: the environment, when it set it.
    pub fn origin_of(&self, setting: &str, origin: Origin) -> String {
        if origin == Origin::File && self.overridden.contains(&setting) {
            format!("config file [environments.{}]", self.name)
        } else {
            origin.to_string()
        }
    }
}

/// Sets `base.$field` from `over.$field` when that is set, noting the name.
macro_rules! overlay {
    ($noted:ident, $base:expr, $over:expr, $($field:ident),+ $(,)?) => {
        $(
            if let Some(value) = $over.$field.take() {
                $base.$field = Some(value);
                $noted.push(stringify!($field));
            }
        )+
    };
}

impl FileConfig {
    /// The file as environment `name` sees it, and the environment's rules. An environment
    /// the file does not define is an error naming those it does.
    pub fn for_environment(
        mut self,
        name: &str,
        origin: Origin,
        path: Option<&std::path::Path>,
    ) -> Result<(Self, Chosen), ConfigError> {
        let Some(mut env) = self.environments.remove(name) else {
            return Err(ConfigError::UnknownEnvironment {
                name: name.to_owned(),
                origin,
                path: path.map(std::path::Path::to_path_buf),
                known: self.environments.keys().cloned().collect(),
            });
        };
        let mut noted = Vec::new();
        if env.database_url_env.is_some() {
            // Never the top level's URL (a developer's database) in a named environment.
            self.database_url = None;
        }
        overlay!(
            noted,
            self,
            env,
            database_url,
            schema,
            connect_timeout,
            connect_attempts,
            connect_wait,
            log_format
        );
        overlay!(
            noted,
            self.runner,
            env.runner,
            direct_url,
            migrations,
            layout,
            lock_timeout,
            max_lock_timeout,
            statement_timeout,
            lock_wait,
            max_retries,
            actor,
            pg_version,
            backup
        );
        overlay!(
            noted,
            self.backfill,
            env.backfill,
            jobs,
            pace,
            max_rows_per_second,
            max_wal_per_second,
            max_replication_lag,
            pause
        );
        // Shown apart from the runner's keys of the same name.
        if let Some(value) = env.backfill.lock_timeout.take() {
            self.backfill.lock_timeout = Some(value);
            noted.push("backfill.lock_timeout");
        }
        if let Some(value) = env.backfill.statement_timeout.take() {
            self.backfill.statement_timeout = Some(value);
            noted.push("backfill.statement_timeout");
        }
        if let Some(value) = env.backfill.max_retries.take() {
            self.backfill.max_retries = Some(value);
            noted.push("backfill.max_retries");
        }
        let defaults = Rules::default();
        let rules = Rules {
            require_backup: env.require_backup.unwrap_or(defaults.require_backup),
            require_approval: env.require_approval.unwrap_or(defaults.require_approval),
            forbid_skip_lint: env.forbid_skip_lint.unwrap_or(defaults.forbid_skip_lint),
            auto_apply: env.auto_apply.unwrap_or(defaults.auto_apply),
        };
        let chosen = Chosen {
            name: name.to_owned(),
            origin,
            rules,
            database_url_env: env.database_url_env,
            overridden: noted,
        };
        Ok((self, chosen))
    }
}

/// The environments a file defines, by name.
pub type Environments = BTreeMap<String, EnvironmentFile>;

/// `--backup` given where the environment requires one, or the reason it is refused.
pub fn check_backup(chosen: Option<&Chosen>, backup: Option<&PathBuf>) -> Result<(), String> {
    match chosen {
        Some(env) if env.rules.require_backup && backup.is_none() => Err(format!(
            "environment {} requires a backup before anything is applied or reverted \
             (require_backup = true): pass --backup DIR (SLUICE_BACKUP_DIR, or backup under \
             [environments.{}.runner]); nothing was run",
            env.name, env.name
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn file(text: &str) -> FileConfig {
        FileConfig::parse(text, Path::new("sluice.toml")).unwrap()
    }

    const FILE: &str = r#"
database_url = "postgres://dev@localhost/app"
connect_wait = "10s"

[runner]
lock_timeout = "2s"
lock_wait = "1m"

[environments.staging]
database_url = "postgres://app@staging/app"

[environments.production]
database_url_env = "PROD_DATABASE_URL"
require_backup = true
require_approval = true
forbid_skip_lint = true
auto_apply = false
connect_wait = "2m"

[environments.production.runner]
lock_timeout = "500ms"
"#;

    #[test]
    fn an_environment_overrides_what_it_sets_and_keeps_the_rest() {
        let (merged, chosen) = file(FILE)
            .for_environment("production", Origin::Flag, None)
            .unwrap();
        assert_eq!(merged.connect_wait, Some(Duration::from_secs(120)));
        assert_eq!(merged.runner.lock_timeout, Some(Duration::from_millis(500)));
        assert_eq!(merged.runner.lock_wait, Some(Duration::from_secs(60)));
        assert_eq!(merged.database_url, None, "never the developer's URL");
        assert_eq!(
            chosen.database_url_env.as_deref(),
            Some("PROD_DATABASE_URL")
        );
        assert!(chosen.rules.require_backup && chosen.rules.require_approval);
        assert!(chosen.rules.forbid_skip_lint && !chosen.rules.auto_apply);
        assert_eq!(chosen.overridden, ["connect_wait", "lock_timeout"]);
        assert_eq!(
            chosen.origin_of("lock_timeout", Origin::File),
            "config file [environments.production]"
        );
        assert_eq!(chosen.origin_of("lock_wait", Origin::File), "config file");
        assert_eq!(
            chosen.origin_of("lock_timeout", Origin::Flag),
            "command line"
        );

        let (staging, chosen) = file(FILE)
            .for_environment("staging", Origin::Env, None)
            .unwrap();
        assert_eq!(
            staging.database_url.as_deref(),
            Some("postgres://app@staging/app")
        );
        assert_eq!(chosen.rules, Rules::default());
    }

    #[test]
    fn an_unknown_environment_names_the_ones_defined() {
        let error = file(FILE)
            .for_environment("prod", Origin::Flag, Some(Path::new("sluice.toml")))
            .unwrap_err();
        assert_eq!(error.exit_code(), crate::exit::INVALID_INPUT);
        let message = error.to_string();
        assert!(
            message.contains("no environment \"prod\"") && message.contains("production, staging"),
            "{message}"
        );
    }

    #[test]
    fn an_unknown_key_in_an_environment_is_refused() {
        let error = FileConfig::parse(
            "[environments.production]\nrequire_backups = true\n",
            Path::new("sluice.toml"),
        )
        .unwrap_err()
        .to_string();
        assert!(error.contains("require_backups"), "{error}");
    }

    #[test]
    fn a_required_backup_is_asked_for() {
        let (_, chosen) = file(FILE)
            .for_environment("production", Origin::Flag, None)
            .unwrap();
        let error = check_backup(Some(&chosen), None).unwrap_err();
        assert!(error.contains("requires a backup"), "{error}");
        assert!(check_backup(Some(&chosen), Some(&PathBuf::from("/b"))).is_ok());
        assert!(check_backup(None, None).is_ok());
    }
}
