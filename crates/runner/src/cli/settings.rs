//! The runner's own flags and their resolution: flag > environment > `[runner]` in
//! `sluice.toml` > default.

use super::error::CliError;
use std::path::PathBuf;
use std::time::Duration;

use crate::backup::BackupSettings;
use crate::guard::{
    DEFAULT_LOCK_TIMEOUT, DEFAULT_MAX_LOCK_TIMEOUT, DEFAULT_MAX_RETRIES, DEFAULT_STATEMENT_TIMEOUT,
    Guards,
};
use crate::history::Who;
use crate::layout::Choice;
use crate::lint::{DEFAULT_PG_VERSION, LintSettings};
use crate::migrator::{DEFAULT_LOCK_WAIT, PostApply, RunnerSettings};
use crate::plan::Allow;
use crate::schema_dump::DumpSettings;
use crate::verify::{Check, CheckError};
use clap::ArgMatches;
use sluice_common::cli::{ConfigRow, Startup, common_config_rows, with_origin};
use sluice_common::config::{
    DurationKind, Origin, Setting, checked, layered, layered_opt, parse_duration, parse_pg_timeout,
};
use sluice_common::db::{ConnectSettings, DbError};
use sluice_common::redact::SecretUrl;

/// Default migrations directory.
pub const DEFAULT_MIGRATIONS_DIR: &str = "migrations";

/// Flags of `sluice` besides the shared ones. All can follow the subcommand.
#[derive(Debug, Clone, clap::Args)]
pub struct RunnerArgs {
    /// A URL that reaches PostgreSQL directly, used by sluice instead of --database-url, e.g.
    /// when DATABASE_URL names a pooler in transaction pooling mode (which the runner refuses:
    /// its session lock must stay on one server session). sluice-backfill ignores it: it
    /// works through such a pooler.
    #[arg(long, env = "SLUICE_DIRECT_URL", hide_env_values = true, global = true)]
    pub direct_url: Option<String>,

    /// Directory of migration files [default: ./migrations].
    #[arg(long, env = "SLUICE_MIGRATIONS", value_name = "DIR", global = true)]
    pub migrations: Option<PathBuf>,

    /// Which tool's directory layout to read the migrations as: auto (detect), sqlx,
    /// golang-migrate, diesel, dbmate, goose or sql-migrate [default: auto]. Forced, a file of
    /// another layout is refused.
    #[arg(long, env = "SLUICE_LAYOUT", value_name = "LAYOUT", global = true)]
    pub layout: Option<String>,

    /// lock_timeout of each migration: the longest application queries can queue behind it
    /// [default: 500ms]. A file's `-- sluice:lock-timeout` wins.
    #[arg(long, env = "SLUICE_LOCK_TIMEOUT", value_name = "DURATION", value_parser = parse_pg_timeout, global = true)]
    pub lock_timeout: Option<Duration>,

    /// Ceiling of lock_timeout, which doubles on each retry [default: 5s].
    #[arg(long, env = "SLUICE_MAX_LOCK_TIMEOUT", value_name = "DURATION", value_parser = parse_pg_timeout, global = true)]
    pub max_lock_timeout: Option<Duration>,

    /// statement_timeout of each statement [default: 15m]. A file's
    /// `-- sluice:statement-timeout` wins.
    #[arg(long, env = "SLUICE_STATEMENT_TIMEOUT", value_name = "DURATION", value_parser = parse_pg_timeout, global = true)]
    pub statement_timeout: Option<Duration>,

    /// Retries of a migration after a lock timeout, deadlock, serialization failure or lost
    /// connection [default: 10].
    #[arg(long, env = "SLUICE_MAX_RETRIES", value_name = "N", global = true)]
    pub max_retries: Option<u32>,

    /// How long to wait for another runner's lock before giving up [default: 5m]; 0 tries once.
    #[arg(long, env = "SLUICE_LOCK_WAIT", value_name = "DURATION", value_parser = parse_duration, global = true)]
    pub lock_wait: Option<Duration>,

    /// Do not refuse to run when applied migrations' files are missing.
    #[arg(long, global = true)]
    pub allow_missing: bool,

    /// Apply new files older than the newest applied migration instead of refusing.
    #[arg(long, global = true)]
    pub allow_out_of_order: bool,

    /// Apply migrations despite unapproved dangerous changes found by lint. Loud, and
    /// recorded in the audit table with the actor.
    #[arg(long, global = true)]
    pub skip_lint: bool,

    /// The PostgreSQL version migrations target, for lint rules that depend on it [default: 15].
    #[arg(long, env = "SLUICE_PG_VERSION", value_name = "VERSION", global = true)]
    pub pg_version: Option<String>,

    /// `up`/`down`: take a pg_dump -Fc into DIR (checked with pg_restore --list) before
    /// applying or reverting anything; if it fails, nothing is applied or reverted.
    #[arg(long, env = "SLUICE_BACKUP_DIR", value_name = "DIR", global = true)]
    pub backup: Option<PathBuf>,

    /// Write Prometheus metrics to this file for node_exporter's textfile collector: `up` and
    /// `down` (durations, retries, failures, and the migration running now, written as it
    /// starts), `check` (pending migrations, history drift), `drift` (schema drift).
    #[arg(long, env = "SLUICE_METRICS_FILE", value_name = "FILE", global = true)]
    pub metrics_file: Option<PathBuf>,

    /// Who is running this (a person or CI job), recorded in history and audit.
    #[arg(long, env = "SLUICE_ACTOR", value_name = "NAME", global = true, value_parser = sluice_common::cli::parse_actor)]
    pub actor: Option<String>,

    /// `up`/`down`: stop after this long, e.g. 45m: the statement in flight is cancelled and
    /// rolls back, the run exits 75, and the same command continues later.
    #[arg(long, env = "SLUICE_MAX_RUNTIME", value_name = "DURATION", value_parser = parse_duration, global = true)]
    pub max_runtime: Option<Duration>,
}

/// `up`'s flags for what runs after the last migration.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct PostApplyArgs {
    /// After applying, check that this query returns true (one row, one boolean), e.g.
    /// "SELECT NOT EXISTS (SELECT 1 FROM users WHERE email IS NULL)". Repeatable; each
    /// result is printed and audited, and a check that is not true fails the run (exit 1).
    #[arg(long = "verify", value_name = "SQL")]
    pub verify: Vec<String>,

    /// Like --verify, with the query in a file. Repeatable.
    #[arg(long = "verify-file", value_name = "FILE")]
    pub verify_files: Vec<PathBuf>,

    /// After applying, write the schema (pg_dump --schema-only, without sluice's own tables)
    /// to FILE [default: schema.sql], for review and `sluice drift --schema-file`.
    #[arg(long, value_name = "FILE", num_args = 0..=1, default_missing_value = "schema.sql")]
    pub dump_schema: Option<PathBuf>,
}

impl PostApplyArgs {
    /// Reads the check files now, so a missing one stops the run before anything is applied.
    pub fn resolve(&self) -> Result<PostApply, CheckError> {
        let mut checks = self
            .verify
            .iter()
            .map(|sql| Check::from_sql(sql))
            .collect::<Result<Vec<_>, _>>()?;
        for path in &self.verify_files {
            checks.push(Check::from_file(path)?);
        }
        Ok(PostApply {
            checks,
            dump_schema: self.dump_schema.clone().map(|path| DumpSettings {
                path,
                pg_dump: pg_dump(),
            }),
        })
    }
}

/// `pg_dump`, or `SLUICE_PG_DUMP`.
fn pg_dump() -> PathBuf {
    std::env::var_os("SLUICE_PG_DUMP").map_or_else(|| "pg_dump".into(), PathBuf::from)
}

/// The runner's settings with their origins.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// The URL the runner connects with when set, instead of the shared database URL.
    direct_url: Option<Setting<SecretUrl>>,
    pub migrations_dir: PathBuf,
    migrations_origin: Origin,
    /// How the migrations directory is read.
    pub layout: Choice,
    layout_shown: (String, Origin),
    lock_timeout: Setting<Duration>,
    max_lock_timeout: Setting<Duration>,
    statement_timeout: Setting<Duration>,
    max_retries: Setting<u32>,
    lock_wait: Setting<Duration>,
    actor: Option<Setting<String>>,
    allow: Allow,
    pub lint: LintSettings,
    skip_lint: bool,
    backup: Option<PathBuf>,
    /// For `config`: where these came from.
    shown: Vec<(&'static str, Option<(String, Origin)>)>,
}

/// Most retries of a failing migration: past it, a lock that never comes is waited for
/// forever.
pub const MAX_RETRIES_LIMIT: u32 = 1000;

/// Settings that are valid alone but not together, or beyond any sensible use.
fn check_bounds(resolved: &Resolved) -> Result<(), sluice_common::config::ConfigError> {
    let value = |setting, origin, message| sluice_common::config::ConfigError::Value {
        setting,
        origin,
        message,
    };
    if resolved.max_lock_timeout.value < resolved.lock_timeout.value {
        return Err(value(
            "max_lock_timeout",
            resolved.max_lock_timeout.origin,
            format!(
                "{} is below lock_timeout ({}): retries raise lock_timeout up to \
                 max_lock_timeout, so it must be at least lock_timeout",
                humantime::format_duration(resolved.max_lock_timeout.value),
                humantime::format_duration(resolved.lock_timeout.value)
            ),
        ));
    }
    if resolved.max_retries.value > MAX_RETRIES_LIMIT {
        return Err(value(
            "max_retries",
            resolved.max_retries.origin,
            format!(
                "{} is more than {MAX_RETRIES_LIMIT}: a lock that never comes would be waited \
                 for forever",
                resolved.max_retries.value
            ),
        ));
    }
    Ok(())
}

pub fn resolve(
    args: &RunnerArgs,
    matches: &ArgMatches,
    startup: &Startup,
) -> Result<Resolved, CliError> {
    let file = &startup.file.runner;
    let direct_url = direct_url(args, matches, startup);
    let backup = layered_opt(
        with_origin(args.backup.clone(), matches, "backup"),
        file.backup.clone(),
    );
    if let Some(env) = &startup.environment
        && env.rules.forbid_skip_lint
        && args.skip_lint
    {
        return Err(sluice_common::config::ConfigError::Environment(format!(
            "environment {} forbids --skip-lint (forbid_skip_lint = true): fix the finding, or \
             approve it in the migration file with its reason (see `sluice lint`); nothing \
             was run",
            env.name
        ))
        .into());
    }
    let pg_version = layered(
        with_origin(args.pg_version.clone(), matches, "pg_version"),
        file.pg_version.clone(),
        DEFAULT_PG_VERSION.to_owned(),
    );
    let migrations = layered(
        with_origin(args.migrations.clone(), matches, "migrations"),
        file.migrations.clone(),
        PathBuf::from(DEFAULT_MIGRATIONS_DIR),
    );
    let layout = layered(
        with_origin(args.layout.clone(), matches, "layout"),
        file.layout.clone(),
        "auto".to_owned(),
    );
    let layout_choice = layout.value.parse::<Choice>().map_err(|message| {
        sluice_common::config::ConfigError::Value {
            setting: "layout",
            origin: layout.origin,
            message,
        }
    })?;
    let nonzero = |name: &'static str, setting: Setting<Duration>| {
        checked(name, setting, DurationKind::PgTimeout)
    };
    let resolved = Resolved {
        direct_url,
        migrations_dir: migrations.value,
        migrations_origin: migrations.origin,
        layout: layout_choice,
        layout_shown: (layout.value, layout.origin),
        lock_timeout: nonzero(
            "lock_timeout",
            layered(
                with_origin(args.lock_timeout, matches, "lock_timeout"),
                file.lock_timeout,
                DEFAULT_LOCK_TIMEOUT,
            ),
        )?,
        max_lock_timeout: nonzero(
            "max_lock_timeout",
            layered(
                with_origin(args.max_lock_timeout, matches, "max_lock_timeout"),
                file.max_lock_timeout,
                DEFAULT_MAX_LOCK_TIMEOUT,
            ),
        )?,
        statement_timeout: nonzero(
            "statement_timeout",
            layered(
                with_origin(args.statement_timeout, matches, "statement_timeout"),
                file.statement_timeout,
                DEFAULT_STATEMENT_TIMEOUT,
            ),
        )?,
        max_retries: layered(
            with_origin(args.max_retries, matches, "max_retries"),
            file.max_retries,
            DEFAULT_MAX_RETRIES,
        ),
        lock_wait: checked(
            "lock_wait",
            layered(
                with_origin(args.lock_wait, matches, "lock_wait"),
                file.lock_wait,
                DEFAULT_LOCK_WAIT,
            ),
            DurationKind::Any,
        )?,
        actor: layered_opt(
            with_origin(args.actor.clone(), matches, "actor"),
            file.actor.clone(),
        )
        .map(
            |actor| match sluice_common::cli::parse_actor(&actor.value) {
                Ok(_) => Ok(actor),
                Err(message) => Err(sluice_common::config::ConfigError::Value {
                    setting: "actor",
                    origin: actor.origin,
                    message,
                }),
            },
        )
        .transpose()?,
        allow: Allow {
            missing: args.allow_missing,
            out_of_order: args.allow_out_of_order,
        },
        lint: LintSettings {
            pg_version: pg_version.value.clone(),
        },
        skip_lint: args.skip_lint,
        backup: backup.as_ref().map(|b| b.value.clone()),
        shown: vec![
            ("pg_version", Some((pg_version.value, pg_version.origin))),
            (
                "backup",
                backup.map(|b| (b.value.display().to_string(), b.origin)),
            ),
            (
                "metrics_file",
                with_origin(
                    args.metrics_file.as_ref().map(|p| p.display().to_string()),
                    matches,
                    "metrics_file",
                ),
            ),
            (
                "max_runtime",
                with_origin(
                    args.max_runtime
                        .map(|d| humantime::format_duration(d).to_string()),
                    matches,
                    "max_runtime",
                ),
            ),
        ],
    };
    check_bounds(&resolved)?;
    Ok(resolved)
}

impl Resolved {
    /// Engine settings; needs a database URL.
    pub fn into_runner(self, startup: &Startup) -> Result<RunnerSettings, DbError> {
        let mut common = startup.common.clone();
        if let Some(direct) = self.direct_url {
            common.database_url = Some(direct);
        }
        let connect = ConnectSettings::from_config(&common, "sluice")?;
        Ok(RunnerSettings {
            connect,
            schema: startup.common.schema.value.clone(),
            migrations_dir: self.migrations_dir,
            layout: self.layout,
            guards: Guards {
                lock_timeout: self.lock_timeout.value,
                max_lock_timeout: self.max_lock_timeout.value,
                statement_timeout: self.statement_timeout.value,
                max_retries: self.max_retries.value,
                ..Guards::default()
            },
            lock_wait: self.lock_wait.value,
            allow: self.allow,
            lint: self.lint,
            skip_lint: self.skip_lint,
            lint_gate: true,
            backup: self.backup.map(|dir| BackupSettings {
                dir,
                pg_dump: pg_dump(),
                pg_restore: std::env::var_os("SLUICE_PG_RESTORE")
                    .map_or_else(|| "pg_restore".into(), PathBuf::from),
            }),
            post_apply: PostApply::default(),
            require_approval: startup
                .environment
                .as_ref()
                .filter(|env| env.rules.require_approval)
                .map(|env| env.name.clone()),
            who: Who {
                program: format!("sluice {}", env!("CARGO_PKG_VERSION")),
                actor: self.actor.map(|a| a.value),
            },
        })
    }
}

/// `--direct-url` > `SLUICE_DIRECT_URL` > `[runner] direct_url`; an empty value is none. Its
/// password is masked in all output from here on.
fn direct_url(
    args: &RunnerArgs,
    matches: &ArgMatches,
    startup: &Startup,
) -> Option<Setting<SecretUrl>> {
    let given = [
        args.direct_url.as_deref(),
        startup.file.runner.direct_url.as_deref(),
    ];
    for url in given.into_iter().flatten() {
        sluice_common::redact::register_secrets(url);
    }
    layered_opt(
        with_origin(args.direct_url.clone(), matches, "direct_url")
            .filter(|(url, _)| !url.trim().is_empty()),
        startup
            .file
            .runner
            .direct_url
            .clone()
            .filter(|url| !url.trim().is_empty()),
    )
    .map(|url| Setting {
        value: SecretUrl::new(url.value),
        origin: url.origin,
    })
}

/// Rows for `sluice config`.
pub fn config_rows(startup: &Startup, resolved: &Resolved) -> Vec<ConfigRow> {
    let duration =
        |s: &Setting<Duration>| (humantime::format_duration(s.value).to_string(), s.origin);
    let mut rows = common_config_rows(&startup.common);
    rows.push(match &resolved.direct_url {
        Some(url) => ("direct_url", url.value.redacted(), url.origin),
        None => (
            "direct_url",
            "(not set: sluice uses database_url)".to_owned(),
            Origin::Default,
        ),
    });
    rows.push((
        "migrations",
        resolved.migrations_dir.display().to_string(),
        resolved.migrations_origin,
    ));
    rows.push((
        "layout",
        resolved.layout_shown.0.clone(),
        resolved.layout_shown.1,
    ));
    for (name, setting) in [
        ("lock_timeout", &resolved.lock_timeout),
        ("max_lock_timeout", &resolved.max_lock_timeout),
        ("statement_timeout", &resolved.statement_timeout),
        ("lock_wait", &resolved.lock_wait),
    ] {
        let (value, origin) = duration(setting);
        rows.push((name, value, origin));
    }
    rows.push((
        "max_retries",
        resolved.max_retries.value.to_string(),
        resolved.max_retries.origin,
    ));
    let (actor, origin) = resolved
        .actor
        .as_ref()
        .map_or(("(not set)".to_owned(), Origin::Default), |a| {
            (a.value.clone(), a.origin)
        });
    rows.push(("actor", actor, origin));
    for (name, shown) in &resolved.shown {
        let (value, origin) = shown
            .clone()
            .unwrap_or_else(|| ("(not set)".to_owned(), Origin::Default));
        rows.push((name, value, origin));
    }
    rows
}
