//! Settings and where they come from.
//!
//! One precedence everywhere: **flag > environment variable > `sluice.toml` > default**.
//! clap resolves the first two (each flag names its variable in `--help`); this module reads
//! the file and applies the rest, remembering each value's [`Origin`] so that `sluice config`
//! can say why a value is what it is.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::ident::{Ident, IdentError};
use crate::redact::SecretUrl;

/// The file read from the working directory when `--config` is not given.
pub const FILE_NAME: &str = "sluice.toml";
/// Schema holding sluice's own tables.
pub const DEFAULT_SCHEMA: &str = "sluice";
/// How long one connection attempt may take.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Connection attempts before giving up on a server that refuses or is starting up: no
/// count by default, [`DEFAULT_CONNECT_WAIT`] bounds the wait instead.
pub const DEFAULT_CONNECT_ATTEMPTS: u32 = u32::MAX;
/// How long to keep trying a server that refuses connections, is starting up, in recovery or
/// full, before giving up: long enough for a crash recovery or a managed database's
/// failover (30-60 s).
pub const DEFAULT_CONNECT_WAIT: Duration = Duration::from_secs(60);

/// The longest `lock_timeout` or `statement_timeout` PostgreSQL takes: `INT_MAX`
/// milliseconds, about 24.8 days.
pub const MAX_PG_TIMEOUT: Duration = Duration::from_millis(i32::MAX as u64);
/// The longest duration any setting takes: longer is no limit at all, and overflows clocks.
pub const MAX_DURATION: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// What a duration setting may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DurationKind {
    /// Anything up to [`MAX_DURATION`], zero included.
    Any,
    /// Greater than zero (zero would disable what it bounds).
    Positive,
    /// A PostgreSQL timeout: greater than zero (zero disables it) and at most
    /// [`MAX_PG_TIMEOUT`].
    PgTimeout,
}

/// Longest actor: a name or a CI job's reference, not a document.
pub const MAX_ACTOR_CHARS: usize = 256;

/// An actor (`--actor`, `sluice-migrate`'s `.actor()`) is stored in the audit trail exactly as
/// given (shown with control characters escaped), so it must be there to store: not empty,
/// not over [`MAX_ACTOR_CHARS`], no NUL (which PostgreSQL cannot store).
pub fn check_actor(text: &str) -> Result<(), String> {
    if text.trim().is_empty() {
        return Err("the actor is empty: name who is running this, or leave it out".into());
    }
    if text.chars().count() > MAX_ACTOR_CHARS {
        return Err(format!(
            "the actor is longer than {MAX_ACTOR_CHARS} characters: name who is running this"
        ));
    }
    if text.contains('\0') {
        return Err("the actor contains a NUL character, which PostgreSQL cannot store".into());
    }
    Ok(())
}

/// Checks a duration against what its setting allows; the message says the bound.
pub fn check_duration(value: Duration, kind: DurationKind) -> Result<Duration, String> {
    let max = match kind {
        DurationKind::PgTimeout => MAX_PG_TIMEOUT,
        DurationKind::Any | DurationKind::Positive => MAX_DURATION,
    };
    if value.is_zero() && kind != DurationKind::Any {
        return Err("must be greater than zero (0 would disable the guard)".to_owned());
    }
    if value > max {
        let what = match kind {
            DurationKind::PgTimeout => "PostgreSQL's limit for a timeout",
            _ => "the longest duration sluice takes",
        };
        return Err(format!(
            "{} is more than {what} ({})",
            humantime::format_duration(value),
            humantime::format_duration(max)
        ));
    }
    Ok(value)
}

fn parse_checked(text: &str, kind: DurationKind) -> Result<Duration, String> {
    let value = humantime::parse_duration(text)
        .map_err(|e| format!("{e}; expected e.g. 500ms, 5s, 10m, 1h 30m"))?;
    check_duration(value, kind)
}

/// A duration flag (clap `value_parser`): up to [`MAX_DURATION`].
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    parse_checked(text, DurationKind::Any)
}

/// A duration flag that must be greater than zero.
pub fn parse_positive_duration(text: &str) -> Result<Duration, String> {
    parse_checked(text, DurationKind::Positive)
}

/// A `lock_timeout`/`statement_timeout` flag.
pub fn parse_pg_timeout(text: &str) -> Result<Duration, String> {
    parse_checked(text, DurationKind::PgTimeout)
}

/// A size as PostgreSQL writes one (`8MB`, `512kB`, `1GB`, 1024-based; `MiB` and `GiB` too;
/// a bare number is bytes), e.g. `max_wal_per_second`.
pub fn parse_bytes(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let unit_bytes: u64 = match unit.trim() {
        "" | "B" => 1,
        "kB" | "KB" | "KiB" => 1 << 10,
        "MB" | "MiB" => 1 << 20,
        "GB" | "GiB" => 1 << 30,
        "TB" | "TiB" => 1 << 40,
        other => {
            return Err(format!(
                "unknown unit {other:?} in {text:?}; expected e.g. 512kB, 8MB, 1GB"
            ));
        }
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a size; expected e.g. 512kB, 8MB, 1GB"))?;
    #[expect(clippy::cast_precision_loss, reason = "units are powers of two")]
    let bytes = value * unit_bytes as f64;
    if !(1.0..=9.0e15).contains(&bytes) {
        return Err(format!("{text:?} is out of range (1 byte to 8PB)"));
    }
    #[expect(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "checked to be within range above"
    )]
    Ok(bytes.round() as u64)
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(transparent)]
    Read(crate::input::InputError),
    #[error("invalid config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid {setting} (from {origin}): {message}")]
    Value {
        setting: &'static str,
        origin: Origin,
        message: String,
    },
    #[error("invalid {setting} (from {origin}): {error}")]
    Ident {
        setting: &'static str,
        origin: Origin,
        error: IdentError,
    },
    #[error(
        "no environment {name:?} (from {origin}) in {}: {}",
        path.as_ref().map_or_else(|| "(no config file)".to_owned(), |p| p.display().to_string()),
        if known.is_empty() {
            "it defines none; add [environments.<name>] to sluice.toml".to_owned()
        } else {
            format!("it defines {}", known.join(", "))
        }
    )]
    UnknownEnvironment {
        name: String,
        origin: Origin,
        path: Option<PathBuf>,
        known: Vec<String>,
    },
    #[error("{0}")]
    Environment(String),
}

impl ConfigError {
    /// A bad value on the command line (or in its environment variable) is a usage error, as
    /// clap's own are; a bad file is invalid input.
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Ident {
                origin: Origin::Flag | Origin::Env,
                ..
            }
            | Self::Value {
                origin: Origin::Flag | Origin::Env,
                ..
            } => crate::exit::USAGE,
            Self::Ident { .. }
            | Self::Value { .. }
            | Self::Read { .. }
            | Self::Parse { .. }
            | Self::UnknownEnvironment { .. }
            | Self::Environment(_) => crate::exit::INVALID_INPUT,
        }
    }
}

/// Where a setting's value came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Origin {
    Flag,
    Env,
    File,
    Default,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Flag => "command line",
            Self::Env => "environment",
            Self::File => "config file",
            Self::Default => "default",
        })
    }
}

/// A value and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting<T> {
    pub value: T,
    pub origin: Origin,
}

/// Applies the precedence: `cli` (a flag or its environment variable, as clap resolved it),
/// then the file, then the default.
pub fn layered<T>(cli: Option<(T, Origin)>, file: Option<T>, default: T) -> Setting<T> {
    layered_opt(cli, file).unwrap_or(Setting {
        value: default,
        origin: Origin::Default,
    })
}

/// [`layered`] for settings without a default.
pub fn layered_opt<T>(cli: Option<(T, Origin)>, file: Option<T>) -> Option<Setting<T>> {
    match (cli, file) {
        (Some((value, origin)), _) => Some(Setting { value, origin }),
        (None, Some(value)) => Some(Setting {
            value,
            origin: Origin::File,
        }),
        (None, None) => None,
    }
}

/// Output format of log lines on stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line, for Kubernetes Jobs and log shippers.
    Json,
}

/// The contents of `sluice.toml`. Every key is optional; unknown keys are errors.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Prefer `DATABASE_URL` for anything with a password in it.
    pub database_url: Option<String>,
    pub schema: Option<String>,
    #[serde(default, with = "humantime_serde")]
    pub connect_timeout: Option<Duration>,
    pub connect_attempts: Option<u32>,
    #[serde(default, with = "humantime_serde")]
    pub connect_wait: Option<Duration>,
    pub log_format: Option<LogFormat>,
    #[serde(default)]
    pub runner: RunnerFile,
    #[serde(default)]
    pub backfill: BackfillFile,
    /// `[environments.<name>]`, chosen with `--env` / `SLUICE_ENV`.
    #[serde(default)]
    pub environments: crate::environment::Environments,
}

/// `[runner]` in `sluice.toml`: settings of `sluice`.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunnerFile {
    /// A URL that reaches PostgreSQL directly, used by `sluice` instead of `database_url`
    /// (e.g. when that names a transaction pooler). Prefer `SLUICE_DIRECT_URL` for a password.
    pub direct_url: Option<String>,
    pub migrations: Option<PathBuf>,
    /// How the migrations directory is read: `auto` or a tool's name.
    pub layout: Option<String>,
    #[serde(default, with = "humantime_serde")]
    pub lock_timeout: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub max_lock_timeout: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub statement_timeout: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub lock_wait: Option<Duration>,
    pub max_retries: Option<u32>,
    pub actor: Option<String>,
    /// The PostgreSQL version migrations target, for lint rules that depend on it.
    pub pg_version: Option<String>,
    /// Where `up`/`down` write a backup before changing anything (as `--backup`).
    pub backup: Option<PathBuf>,
}

/// `[backfill]` in `sluice.toml`: settings of `sluice-backfill`.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackfillFile {
    pub jobs: Option<PathBuf>,
    /// Defaults for every job, over its spec and under the command line's flags (an
    /// environment's limits: production gentler than staging).
    pub pace: Option<crate::jobspec::PaceMode>,
    pub max_rows_per_second: Option<u32>,
    /// A size as PostgreSQL writes one, e.g. `8MB`.
    pub max_wal_per_second: Option<String>,
    #[serde(default, with = "humantime_serde")]
    pub max_replication_lag: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub pause: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub lock_timeout: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub statement_timeout: Option<Duration>,
    pub max_retries: Option<u32>,
}

impl FileConfig {
    /// Reads `explicit` (which must exist) or, without it, `./sluice.toml` if there is one.
    pub fn load(explicit: Option<&Path>) -> Result<(Self, Option<PathBuf>), ConfigError> {
        let path = match explicit {
            Some(path) => path.to_path_buf(),
            None if Path::new(FILE_NAME).is_file() => PathBuf::from(FILE_NAME),
            None => return Ok((Self::default(), None)),
        };
        let text = crate::input::read_text(&path, "config file", crate::input::MAX_SPEC_BYTES)
            .map_err(ConfigError::Read)?;
        let config = Self::parse(&text, &path)?;
        Ok((config, Some(path)))
    }

    /// Parses the text of a config file; `path` is only for messages.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        toml::from_str(text).map_err(|error| ConfigError::Parse {
            path: path.to_path_buf(),
            message: error.to_string().trim_end().to_owned(),
        })
    }
}

/// What the command line (flags, or their environment variables) said about shared settings.
#[derive(Debug, Default, Clone)]
pub struct CommonOverrides {
    pub database_url: Option<(String, Origin)>,
    /// Where an unset URL should have come from, when not `DATABASE_URL`.
    pub url_variable: Option<String>,
    pub schema: Option<(String, Origin)>,
    pub connect_timeout: Option<(Duration, Origin)>,
    pub connect_wait: Option<(Duration, Origin)>,
    pub log_format: Option<(LogFormat, Origin)>,
}

/// Settings both programs use, resolved.
#[derive(Debug, Clone)]
pub struct CommonConfig {
    pub database_url: Option<Setting<SecretUrl>>,
    /// The variable the URL is read from (`DATABASE_URL`, or an environment's), for messages.
    pub url_variable: String,
    pub schema: Setting<Ident>,
    pub connect_timeout: Setting<Duration>,
    pub connect_attempts: Setting<u32>,
    pub connect_wait: Setting<Duration>,
    pub log_format: Setting<LogFormat>,
}

impl CommonConfig {
    pub fn resolve(cli: CommonOverrides, file: &FileConfig) -> Result<Self, ConfigError> {
        let schema = layered(cli.schema, file.schema.clone(), DEFAULT_SCHEMA.to_owned());
        let schema_ident = Ident::parse(&schema.value).map_err(|error| ConfigError::Ident {
            setting: "schema",
            origin: schema.origin,
            error,
        })?;
        let reserved = schema_ident.as_str().starts_with("pg_")
            || schema_ident.as_str() == "information_schema";
        if reserved {
            return Err(ConfigError::Value {
                setting: "schema",
                origin: schema.origin,
                message: format!(
                    "{} belongs to PostgreSQL (pg_* and information_schema are its catalogs): \
                     sluice keeps its tables in a schema of its own (default sluice)",
                    schema_ident
                ),
            });
        }
        Ok(Self {
            url_variable: cli
                .url_variable
                .clone()
                .unwrap_or_else(|| "DATABASE_URL".to_owned()),
            // An empty value (`DATABASE_URL=` in a manifest) is no value: it falls through to
            // the file, then to "no database URL".
            database_url: layered_opt(
                cli.database_url.filter(|(url, _)| !url.trim().is_empty()),
                file.database_url
                    .clone()
                    .filter(|url| !url.trim().is_empty()),
            )
            .map(|s| Setting {
                value: SecretUrl::new(s.value),
                origin: s.origin,
            }),
            schema: Setting {
                value: schema_ident,
                origin: schema.origin,
            },
            connect_timeout: checked(
                "connect_timeout",
                layered(
                    cli.connect_timeout,
                    file.connect_timeout,
                    DEFAULT_CONNECT_TIMEOUT,
                ),
                DurationKind::Positive,
            )?,
            connect_attempts: layered(None, file.connect_attempts, DEFAULT_CONNECT_ATTEMPTS),
            connect_wait: checked(
                "connect_wait",
                layered(cli.connect_wait, file.connect_wait, DEFAULT_CONNECT_WAIT),
                DurationKind::Any,
            )?,
            log_format: layered(cli.log_format, file.log_format, LogFormat::default()),
        })
    }
}

/// A resolved duration setting, checked: an error names the setting and where it came from.
pub fn checked(
    setting: &'static str,
    value: Setting<Duration>,
    kind: DurationKind,
) -> Result<Setting<Duration>, ConfigError> {
    check_duration(value.value, kind)
        .map(|_| value.clone())
        .map_err(|message| ConfigError::Value {
            setting,
            origin: value.origin,
            message,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_as_postgres_writes_them() {
        assert_eq!(parse_bytes("8MB"), Ok(8 << 20));
        assert_eq!(parse_bytes("512kB"), Ok(512 << 10));
        assert_eq!(parse_bytes("1.5GiB"), Ok(3 << 29));
        assert_eq!(parse_bytes("4096"), Ok(4096));
        assert!(
            parse_bytes("8 furlongs")
                .unwrap_err()
                .contains("unknown unit")
        );
        assert!(parse_bytes("MB").unwrap_err().contains("not a size"));
        assert!(parse_bytes("0MB").unwrap_err().contains("out of range"));
    }

    #[test]
    fn durations_are_bounded_by_what_they_set() {
        assert!(
            parse_pg_timeout("100d")
                .unwrap_err()
                .contains("PostgreSQL's limit")
        );
        assert!(
            parse_pg_timeout("0s")
                .unwrap_err()
                .contains("greater than zero")
        );
        assert_eq!(
            parse_pg_timeout("24d").unwrap(),
            Duration::from_secs(24 * 86_400)
        );
        assert!(
            parse_duration("99999999999h")
                .unwrap_err()
                .contains("longest")
        );
        assert_eq!(parse_duration("0s").unwrap(), Duration::ZERO);
        assert!(parse_positive_duration("0s").is_err());
        let config = FileConfig::parse("connect_timeout = \"0s\"\n", Path::new("s.toml")).unwrap();
        let err = CommonConfig::resolve(CommonOverrides::default(), &config).unwrap_err();
        assert_eq!(err.exit_code(), crate::exit::INVALID_INPUT);
        assert!(err.to_string().contains("connect_timeout"), "{err}");
    }

    fn file(text: &str) -> FileConfig {
        FileConfig::parse(text, Path::new("sluice.toml")).unwrap()
    }

    #[test]
    fn flag_or_env_beats_file_beats_default() {
        let from_file = file("schema = \"from_file\"\nconnect_timeout = \"3s\"\n");
        let cli = CommonOverrides {
            schema: Some(("from_env".into(), Origin::Env)),
            ..CommonOverrides::default()
        };
        let config = CommonConfig::resolve(cli, &from_file).unwrap();
        assert_eq!(config.schema.value.as_str(), "from_env");
        assert_eq!(config.schema.origin, Origin::Env);
        assert_eq!(config.connect_timeout.value, Duration::from_secs(3));
        assert_eq!(config.connect_timeout.origin, Origin::File);
        assert_eq!(config.connect_attempts.value, DEFAULT_CONNECT_ATTEMPTS);
        assert_eq!(config.connect_attempts.origin, Origin::Default);
        assert!(config.database_url.is_none());
    }

    #[test]
    fn flag_beats_file_for_database_url() {
        let from_file = file("database_url = \"postgres://file/db\"\n");
        let cli = CommonOverrides {
            database_url: Some(("postgres://flag/db".into(), Origin::Flag)),
            ..CommonOverrides::default()
        };
        let url = CommonConfig::resolve(cli, &from_file)
            .unwrap()
            .database_url
            .unwrap();
        assert_eq!(url.value.expose(), "postgres://flag/db");
        assert_eq!(url.origin, Origin::Flag);
    }

    #[test]
    fn layered_falls_through_in_order() {
        assert_eq!(layered(Some((1, Origin::Flag)), Some(2), 3).value, 1);
        assert_eq!(layered(None, Some(2), 3).origin, Origin::File);
        assert_eq!(layered::<i32>(None, None, 3).origin, Origin::Default);
    }

    #[test]
    fn unknown_keys_are_errors_naming_key_and_file() {
        let err = FileConfig::parse(
            "schema = \"x\"\nshcema = \"y\"\n",
            Path::new("conf/sluice.toml"),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("conf/sluice.toml"), "{err}");
        assert!(err.contains("shcema"), "{err}");
        let nested = FileConfig::parse("[runner]\nlock_timout = \"1s\"\n", Path::new("s.toml"))
            .unwrap_err()
            .to_string();
        assert!(nested.contains("lock_timout"), "{nested}");
    }

    #[test]
    fn durations_use_humantime() {
        let config = file("[runner]\nlock_timeout = \"500ms\"\nlock_wait = \"5m\"\n");
        assert_eq!(config.runner.lock_timeout, Some(Duration::from_millis(500)));
        assert_eq!(config.runner.lock_wait, Some(Duration::from_secs(300)));
        let bad = FileConfig::parse("connect_timeout = \"soon\"\n", Path::new("s.toml"));
        assert!(bad.is_err());
    }

    #[test]
    fn a_catalog_schema_is_refused() {
        for name in ["pg_catalog", "information_schema", "pg_toast"] {
            let cli = CommonOverrides {
                schema: Some((name.into(), Origin::Flag)),
                ..Default::default()
            };
            let err = CommonConfig::resolve(cli, &FileConfig::default()).unwrap_err();
            assert!(err.to_string().contains("belongs to PostgreSQL"), "{err}");
            assert_eq!(err.exit_code(), crate::exit::USAGE);
        }
    }

    #[test]
    fn a_hostile_schema_name_is_refused() {
        let cli = CommonOverrides {
            schema: Some(("sluice; drop table x".into(), Origin::Flag)),
            ..CommonOverrides::default()
        };
        let err = CommonConfig::resolve(cli, &FileConfig::default()).unwrap_err();
        assert!(err.to_string().contains("schema"), "{err}");
    }

    #[test]
    fn a_missing_explicit_file_is_an_error() {
        let err = FileConfig::load(Some(Path::new("/nonexistent/sluice.toml"))).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/sluice.toml"));
    }
}
