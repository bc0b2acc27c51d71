//! Job specs (`jobs/<name>.toml`): parsed and validated once, into a [`Job`] the engine trusts.
//!
//! Names (`table`, `key`) are identifiers and are validated and quoted; `set` and `where` are
//! SQL written by the job's author, like a migration, and PostgreSQL checks them when the job
//! is planned.

use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};
use sluice_common::config::{DurationKind, check_duration, parse_bytes};
use sluice_common::ident::{Ident, IdentError, QualifiedName};
use sluice_common::input;
use sluice_common::redact::SecretUrl;

use crate::fragment;
use crate::pace::PaceMode;
use sluice_common::jobspec::ActionKind;

pub use sluice_common::jobspec::{JobFile, defaults};

/// Which load signals to watch, and how often (see `crate::load`).
#[derive(Debug, Clone)]
pub struct LoadSettings {
    pub check_interval: Duration,
    /// How long a signal keeps workers waiting after it was last seen.
    pub cooldown: Duration,
    pub blocked_sessions: bool,
    pub lock_queue: bool,
    /// Replication lag above this throttles; `None`: not watched.
    pub max_replication_lag: Option<Duration>,
    /// Replicas to ask for their replay lag (besides `pg_stat_replication` on the primary).
    pub replica_urls: Vec<SecretUrl>,
    /// Returns true while the backfill should wait.
    pub throttle_query: Option<String>,
    /// WAL archiving this far behind (bytes) holds the job; watched when `archive_mode` is on.
    pub max_archive_lag: u64,
}

impl Default for LoadSettings {
    fn default() -> Self {
        Self {
            check_interval: Duration::from_millis(500),
            cooldown: Duration::from_secs(1),
            blocked_sessions: true,
            lock_queue: true,
            max_replication_lag: None,
            replica_urls: Vec::new(),
            throttle_query: None,
            max_archive_lag: defaults::MAX_ARCHIVE_LAG,
        }
    }
}

/// How the key space is shared between workers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parallel {
    pub ranges: u32,
    pub lease: Duration,
}

/// How batches are sized and paced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pacing {
    pub batch_size: u32,
    pub min_batch_size: u32,
    pub max_batch_size: u32,
    pub target_batch_time: Duration,
    /// 0: unlimited.
    pub max_rows_per_second: u32,
    pub pause: Duration,
    /// Whether the job paces itself by the server's load (see [`crate::pace`]).
    pub mode: PaceMode,
    /// Ceiling on the server's WAL bytes a second while the job runs.
    pub max_wal_per_second: Option<u64>,
}

/// Per-batch guards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchGuards {
    pub lock_timeout: Duration,
    pub statement_timeout: Duration,
    pub max_retries: u32,
}

/// What each batch does with the rows of its key range that match `where`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// `UPDATE ... SET <set>`.
    Update { set: String },
    /// `DELETE`; `where` is required.
    Delete,
    /// `INSERT INTO <into> ... SELECT` from the job's table.
    Copy(CopySpec),
}

impl Action {
    /// The spec's word for it.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Update { .. } => "update",
            Self::Delete => "delete",
            Self::Copy(_) => "copy",
        }
    }

    /// What a batch does to a row, for progress and status: "updated", "deleted", "copied".
    pub fn past_tense(&self) -> &'static str {
        past_tense_of(self.name())
    }
}

/// "updated", "deleted", "copied": the past tense of an action as the jobs table records it.
pub fn past_tense_of(action: &str) -> &'static str {
    match action {
        "delete" => "deleted",
        "copy" => "copied",
        _ => "updated",
    }
}

/// A copy job's target, as the spec gives it (the catalog fills in defaults).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopySpec {
    pub into: QualifiedName,
    /// Target columns; `None`: the source's columns the target also has.
    pub columns: Option<Vec<Ident>>,
    /// A source expression for each column; `None`: the columns' own names.
    pub values: Option<Vec<String>>,
    pub on_conflict: OnConflict,
}

pub use sluice_common::jobspec::OnConflict;

/// A validated job.
#[derive(Debug, Clone)]
pub struct Job {
    pub name: String,
    pub table: QualifiedName,
    pub key: Vec<Ident>,
    pub action: Action,
    pub where_: Option<String>,
    pub pacing: Pacing,
    pub guards: BatchGuards,
    pub parallel: Parallel,
    /// Load signals (replica URLs come from the command line, never from the spec).
    pub load: LoadSettings,
    /// Checksum of what decides which rows change and how (table, key, set, where); pacing
    /// and guards may change between runs.
    pub spec_checksum: String,
    /// The spec file, for messages and the resume command.
    pub path: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error(transparent)]
    Read(input::InputError),
    #[error("invalid job spec {}: {message}; nothing was recorded or run", path.display())]
    Invalid { path: PathBuf, message: String },
}

/// Values flags may override.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub batch_size: Option<u32>,
    pub min_batch_size: Option<u32>,
    pub max_batch_size: Option<u32>,
    pub target_batch_time: Option<Duration>,
    pub max_rows_per_second: Option<u32>,
    pub pause: Option<Duration>,
    pub pace: Option<PaceMode>,
    pub max_wal_per_second: Option<u64>,
    pub lock_timeout: Option<Duration>,
    pub statement_timeout: Option<Duration>,
    pub max_retries: Option<u32>,
    pub ranges: Option<u32>,
    pub lease: Option<Duration>,
    pub max_replication_lag: Option<Duration>,
    pub throttle_query: Option<String>,
}

impl Job {
    /// Reads and validates a spec file; `overrides` (from flags) win over the file.
    pub fn load(path: &Path, overrides: &Overrides) -> Result<Self, JobError> {
        let text =
            input::read_text(path, "job spec", input::MAX_SPEC_BYTES).map_err(JobError::Read)?;
        let invalid = |message: String| JobError::Invalid {
            path: path.to_path_buf(),
            message,
        };
        let file: JobFile =
            toml::from_str(&text).map_err(|e| invalid(e.to_string().trim_end().to_owned()))?;
        let mut job = Self::from_file(file, overrides).map_err(invalid)?;
        job.path = Some(path.to_path_buf());
        Ok(job)
    }

    /// Validates a parsed spec.
    pub fn from_file(file: JobFile, overrides: &Overrides) -> Result<Self, String> {
        validate_name(&file.name)?;
        let public = Ident::new("public").expect("valid");
        let table = QualifiedName::parse(&file.table, &public).map_err(|e| field("table", &e))?;
        let key = parse_key(&file.key)?;
        refuse_protected("table", &table)?;
        let where_ = match &file.where_ {
            Some(w) => {
                let w = non_empty("where", w)?;
                fragment::condition(&w)?;
                Some(w)
            }
            None => None,
        };
        let action = action(&file, where_.is_some())?;
        if let Action::Update { set } = &action {
            refuse_key_assignments(set, &key)?;
        }
        if let Action::Copy(copy) = &action {
            refuse_protected("into", &copy.into)?;
        }
        if let Action::Copy(copy) = &action
            && copy.into == table
        {
            return Err(format!(
                "`into` = {:?} is the job's own table; a copy goes into another table",
                file.into.as_deref().unwrap_or_default()
            ));
        }
        let pacing = pacing(&file, overrides)?;
        let guards = BatchGuards {
            lock_timeout: pg_timeout(
                "lock_timeout",
                overrides.lock_timeout.or(file.lock_timeout),
                defaults::LOCK_TIMEOUT,
            )?,
            statement_timeout: pg_timeout(
                "statement_timeout",
                overrides.statement_timeout.or(file.statement_timeout),
                defaults::STATEMENT_TIMEOUT,
            )?,
            max_retries: at_most(
                "max_retries",
                overrides
                    .max_retries
                    .or(file.max_retries)
                    .unwrap_or(defaults::MAX_RETRIES),
                MAX_RETRIES_LIMIT,
            )?,
        };
        let parallel = Parallel {
            ranges: overrides.ranges.or(file.ranges).unwrap_or(defaults::RANGES),
            lease: positive("lease", overrides.lease.or(file.lease), defaults::LEASE)?,
        };
        if parallel.ranges == 0 {
            return Err("`ranges` must be at least 1".into());
        }
        at_most("ranges", parallel.ranges, MAX_RANGES)?;
        let load = load_settings(&file, overrides)?;
        let spec_checksum = spec_checksum(&table, &key, &action, where_.as_deref());
        Ok(Self {
            name: file.name,
            table,
            key,
            action,
            where_,
            pacing,
            guards,
            parallel,
            load,
            spec_checksum,
            path: None,
        })
    }

    /// Refuses a job whose table (or copy target) is in `schema`, where sluice keeps its own
    /// tables (`--schema`): the fixed names are refused when the spec loads.
    pub fn refuse_schema(&self, schema: &Ident) -> Result<(), JobError> {
        let mut tables = vec![("table", &self.table)];
        if let Action::Copy(copy) = &self.action {
            tables.push(("into", &copy.into));
        }
        match tables.into_iter().find(|(_, t)| &t.schema == schema) {
            Some((key, table)) => Err(JobError::Invalid {
                path: self.path.clone().unwrap_or_default(),
                message: format!(
                    "`{key}` = {table} is in schema {schema}, where sluice keeps its own tables \
                     (--schema): a backfill job never changes those"
                ),
            }),
            None => Ok(()),
        }
    }

    /// `"id"` or `"tenant_id", "id"`: the key columns, quoted, in order.
    pub fn key_list(&self) -> String {
        self.key
            .iter()
            .map(Ident::quoted)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

fn load_settings(file: &JobFile, overrides: &Overrides) -> Result<LoadSettings, String> {
    let check_interval = positive(
        "load_check_interval",
        file.load_check_interval,
        defaults::LOAD_CHECK_INTERVAL,
    )?;
    if check_interval < MIN_LOAD_CHECK_INTERVAL {
        return Err(format!(
            "`load_check_interval` = {} is below {}: the checks would cost the database more \
             than the job",
            humantime::format_duration(check_interval),
            humantime::format_duration(MIN_LOAD_CHECK_INTERVAL)
        ));
    }
    let throttle_query = match overrides
        .throttle_query
        .as_ref()
        .or(file.throttle_query.as_ref())
    {
        Some(query) => Some(non_empty("throttle_query", query)?),
        None => None,
    };
    Ok(LoadSettings {
        check_interval,
        cooldown: (check_interval * 2).max(Duration::from_secs(1)),
        blocked_sessions: file.throttle_on_blocked_sessions.unwrap_or(true),
        lock_queue: file.throttle_on_lock_queue.unwrap_or(true),
        max_replication_lag: overrides
            .max_replication_lag
            .or(file.max_replication_lag)
            .map(|lag| bounded("max_replication_lag", lag, DurationKind::Positive))
            .transpose()?,
        replica_urls: Vec::new(),
        throttle_query,
        max_archive_lag: size("max_archive_lag", file.max_archive_lag.as_deref())?
            .unwrap_or(defaults::MAX_ARCHIVE_LAG),
    })
}

/// A size key (`"8MB"`), checked.
fn size(name: &str, value: Option<&str>) -> Result<Option<u64>, String> {
    value
        .map(|text| parse_bytes(text).map_err(|e| format!("`{name}`: {e}")))
        .transpose()
}

fn field(name: &str, error: &IdentError) -> String {
    format!("`{name}`: {error}")
}

fn validate_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`name` = {name:?}: use lower-case letters, digits, `_` and `-`, starting with a letter (at most 63)"
        ))
    }
}

fn parse_key(columns: &[String]) -> Result<Vec<Ident>, String> {
    if columns.is_empty() {
        return Err("`key` must name at least one column, e.g. key = [\"id\"]".into());
    }
    column_list("key", columns)
}

/// The columns of list `name`, each a valid identifier, none twice.
fn column_list(name: &str, columns: &[String]) -> Result<Vec<Ident>, String> {
    let parsed: Vec<Ident> = columns
        .iter()
        .map(|c| Ident::parse(c).map_err(|e| field(name, &e)))
        .collect::<Result<_, _>>()?;
    for (i, column) in parsed.iter().enumerate() {
        if parsed[..i].contains(column) {
            return Err(format!("`{name}` names column {column} twice"));
        }
    }
    Ok(parsed)
}

/// Schemas no job may change: sluice's own tables (its history, its jobs: a job there could
/// open gates or make the next `up` run everything again) and PostgreSQL's catalogs. A
/// `--schema` other than `sluice` is refused when the job starts ([`crate::engine`]).
const PROTECTED_SCHEMAS: &[&str] = &["sluice", "pg_catalog", "information_schema", "pg_toast"];

fn refuse_protected(key: &str, table: &QualifiedName) -> Result<(), String> {
    let schema = table.schema.as_str();
    if PROTECTED_SCHEMAS.contains(&schema) || schema.starts_with("pg_temp") {
        return Err(format!(
            "`{key}` = {table} is in schema {}, which holds sluice's own tables or \
             PostgreSQL's catalogs: a backfill job never changes those",
            table.schema
        ));
    }
    Ok(())
}

/// A `set` that assigns a key column moves rows between ranges (and past the cursor): some
/// would be updated twice, others never.
fn refuse_key_assignments(set: &str, key: &[Ident]) -> Result<(), String> {
    let assigned = fragment::assignments(set)?;
    match key
        .iter()
        .find(|k| assigned.iter().any(|a| a == k.as_str()))
    {
        Some(column) => Err(format!(
            "`set` assigns key column {column}: rows would move between batches and some be \
             updated twice; a backfill never changes its key (copy into a new table with the \
             new key instead: action = \"copy\")"
        )),
        None => Ok(()),
    }
}

fn non_empty(name: &str, sql: &str) -> Result<String, String> {
    let trimmed = sql.trim().trim_end_matches(';').trim();
    if trimmed.is_empty() {
        return Err(format!("`{name}` is empty"));
    }
    Ok(trimmed.to_owned())
}

/// Most key ranges: each is a row, a lease and a claim; past this the bookkeeping outweighs
/// the work (a million ranges ran 80 times slower).
pub const MAX_RANGES: u32 = 4096;
/// Most retries of a failing batch.
pub const MAX_RETRIES_LIMIT: u32 = 1000;
/// Shortest `load_check_interval`.
pub const MIN_LOAD_CHECK_INTERVAL: Duration = Duration::from_millis(10);

fn at_most(name: &str, value: u32, limit: u32) -> Result<u32, String> {
    if value > limit {
        return Err(format!("`{name}` = {value} is more than {limit}"));
    }
    Ok(value)
}

fn positive(name: &str, value: Option<Duration>, default: Duration) -> Result<Duration, String> {
    bounded(name, value.unwrap_or(default), DurationKind::Positive)
}

/// `lock_timeout` and `statement_timeout`: what PostgreSQL accepts, checked here so that a
/// spec PostgreSQL would refuse never starts (and never registers) a job.
fn pg_timeout(name: &str, value: Option<Duration>, default: Duration) -> Result<Duration, String> {
    bounded(name, value.unwrap_or(default), DurationKind::PgTimeout)
}

fn bounded(name: &str, value: Duration, kind: DurationKind) -> Result<Duration, String> {
    check_duration(value, kind).map_err(|e| format!("`{name}` {e}"))
}

fn pacing(file: &JobFile, overrides: &Overrides) -> Result<Pacing, String> {
    let pacing = Pacing {
        batch_size: overrides
            .batch_size
            .or(file.batch_size)
            .unwrap_or(defaults::BATCH_SIZE),
        min_batch_size: overrides
            .min_batch_size
            .or(file.min_batch_size)
            .unwrap_or(defaults::MIN_BATCH_SIZE),
        max_batch_size: overrides
            .max_batch_size
            .or(file.max_batch_size)
            .unwrap_or(defaults::MAX_BATCH_SIZE),
        target_batch_time: positive(
            "target_batch_time",
            overrides.target_batch_time.or(file.target_batch_time),
            defaults::TARGET_BATCH_TIME,
        )?,
        max_rows_per_second: overrides
            .max_rows_per_second
            .or(file.max_rows_per_second)
            .unwrap_or(defaults::MAX_ROWS_PER_SECOND),
        pause: bounded(
            "pause",
            overrides.pause.or(file.pause).unwrap_or(defaults::PAUSE),
            DurationKind::Any,
        )?,
        mode: overrides.pace.or(file.pace).unwrap_or_default(),
        max_wal_per_second: match overrides.max_wal_per_second {
            Some(bytes) => Some(bytes),
            None => size("max_wal_per_second", file.max_wal_per_second.as_deref())?,
        },
    };
    let (min, size, max) = (
        pacing.min_batch_size,
        pacing.batch_size,
        pacing.max_batch_size,
    );
    if min == 0 || !(min <= size && size <= max) {
        return Err(format!(
            "batch sizes must satisfy 1 <= min_batch_size ({min}) <= batch_size ({size}) <= max_batch_size ({max})"
        ));
    }
    Ok(pacing)
}

/// The action of a spec, with only the keys that fit it.
fn action(file: &JobFile, has_where: bool) -> Result<Action, String> {
    let given = |present: bool, key: &str| present.then(|| key.to_owned());
    let copy_keys = [
        given(file.into.is_some(), "into"),
        given(file.columns.is_some(), "columns"),
        given(file.values.is_some(), "values"),
        given(file.on_conflict.is_some(), "on_conflict"),
    ];
    let refuse = |action: &str, keys: Vec<String>| -> Result<(), String> {
        match keys.as_slice() {
            [] => Ok(()),
            keys => Err(format!(
                "`{}` {} not apply to action = \"{action}\"; remove {} (or choose another action)",
                keys.join("`, `"),
                if keys.len() == 1 { "does" } else { "do" },
                if keys.len() == 1 { "it" } else { "them" }
            )),
        }
    };
    match file.action.unwrap_or_default() {
        ActionKind::Update => {
            refuse("update", copy_keys.into_iter().flatten().collect())?;
            let set = file.set.as_deref().ok_or(
                "`set` is required for action = \"update\": the SET list each batch applies, \
                 e.g. set = \"email_normalized = lower(email)\"",
            )?;
            let set = non_empty("set", set)?;
            fragment::assignments(&set)?;
            Ok(Action::Update { set })
        }
        ActionKind::Delete => {
            refuse(
                "delete",
                std::iter::once(given(file.set.is_some(), "set"))
                    .chain(copy_keys)
                    .flatten()
                    .collect(),
            )?;
            if !has_where {
                return Err(
                    "`where` is required for action = \"delete\": it says which rows go \
                     (e.g. where = \"created_at < now() - interval '90 days'\"); a job that \
                     empties a table is TRUNCATE, or where = \"true\" if you really mean it"
                        .into(),
                );
            }
            Ok(Action::Delete)
        }
        ActionKind::Copy => {
            refuse(
                "copy",
                given(file.set.is_some(), "set").into_iter().collect(),
            )?;
            copy_spec(file).map(Action::Copy)
        }
    }
}

fn copy_spec(file: &JobFile) -> Result<CopySpec, String> {
    let public = Ident::new("public").expect("valid");
    let into = file.into.as_deref().ok_or(
        "`into` is required for action = \"copy\": the table rows are copied into, e.g. \
         into = \"public.accounts_new\"",
    )?;
    let into = QualifiedName::parse(into, &public).map_err(|e| field("into", &e))?;
    let columns = match &file.columns {
        Some(columns) if columns.is_empty() => return Err("`columns` is empty".into()),
        Some(columns) => Some(column_list("columns", columns)?),
        None => None,
    };
    let values = match (&file.values, &columns) {
        (None, _) => None,
        (Some(_), None) => {
            return Err("`values` needs `columns`: the target column each value goes to".into());
        }
        (Some(values), Some(columns)) if values.len() != columns.len() => {
            return Err(format!(
                "`values` has {} expression(s) for {} column(s); give one per column",
                values.len(),
                columns.len()
            ));
        }
        (Some(values), Some(_)) => Some(
            values
                .iter()
                .map(|v| {
                    let v = non_empty("values", v)?;
                    fragment::expression("values", &v).map(|()| v)
                })
                .collect::<Result<_, _>>()?,
        ),
    };
    let on_conflict = file.on_conflict.unwrap_or_default();
    Ok(CopySpec {
        into,
        columns,
        values,
        on_conflict,
    })
}

/// What decides which rows change and how. An update job's parts are those it always had, so
/// that jobs registered before other actions existed keep their checksum.
fn spec_checksum(
    table: &QualifiedName,
    key: &[Ident],
    action: &Action,
    where_: Option<&str>,
) -> String {
    let what = match action {
        Action::Update { set } => set.clone(),
        Action::Delete => "\0delete".to_owned(),
        Action::Copy(copy) => format!("\0copy {copy:?}"),
    };
    let mut hasher = Sha256::new();
    for part in [
        table.to_string(),
        format!("{key:?}"),
        what,
        where_.unwrap_or("").to_owned(),
    ] {
        hasher.update(part.as_bytes());
        hasher.update([0]);
    }
    sluice_common::display::hex(&hasher.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC: &str = r#"
name = "accounts_email_normalized"
table = "public.accounts"
key = ["id"]
set = "email_normalized = lower(email)"
where = "email_normalized IS NULL"
batch_size = 1000
min_batch_size = 100
max_batch_size = 50000
target_batch_time = "200ms"
max_rows_per_second = 0
pause = "0ms"
lock_timeout = "500ms"
statement_timeout = "10s"
max_retries = 10
"#;

    fn parse(text: &str) -> Result<Job, String> {
        let file: JobFile = toml::from_str(text).map_err(|e| e.to_string())?;
        Job::from_file(file, &Overrides::default())
    }

    #[test]
    fn reads_the_documented_example() {
        let job = parse(SPEC).unwrap();
        assert_eq!(job.table.to_string(), "\"public\".\"accounts\"");
        assert_eq!(job.key_list(), "\"id\"");
        assert_eq!(job.where_.as_deref(), Some("email_normalized IS NULL"));
        assert_eq!(job.pacing.target_batch_time, Duration::from_millis(200));
        assert_eq!(job.guards.lock_timeout, Duration::from_millis(500));
    }

    #[test]
    fn optional_keys_have_defaults() {
        let job =
            parse("name = \"j\"\ntable = \"t\"\nkey = [\"a\", \"b\"]\nset = \"x = 1\"\n").unwrap();
        assert_eq!(job.table.to_string(), "\"public\".\"t\"");
        assert_eq!(job.pacing.batch_size, defaults::BATCH_SIZE);
        assert_eq!(job.guards.max_retries, defaults::MAX_RETRIES);
        assert!(job.where_.is_none());
    }

    #[test]
    fn flags_override_the_file() {
        let file: JobFile = toml::from_str(SPEC).unwrap();
        let overrides = Overrides {
            batch_size: Some(200),
            lock_timeout: Some(Duration::from_secs(2)),
            ..Overrides::default()
        };
        let job = Job::from_file(file, &overrides).unwrap();
        assert_eq!(job.pacing.batch_size, 200);
        assert_eq!(job.guards.lock_timeout, Duration::from_secs(2));
    }

    #[test]
    fn unknown_keys_are_errors() {
        let err = parse(&format!("{SPEC}\nbatchsize = 5\n")).unwrap_err();
        assert!(err.contains("batchsize"), "{err}");
    }

    #[test]
    fn injection_shaped_names_are_refused() {
        for (field, value) in [
            ("table", "accounts; DROP TABLE users"),
            ("table", "public.accounts--"),
        ] {
            let text = SPEC.replace("\"public.accounts\"", &format!("{value:?}"));
            let err = parse(&text).unwrap_err();
            assert!(err.contains(&format!("`{field}`")), "{err}");
        }
        let text = SPEC.replace("[\"id\"]", "[\"id) OR 1=1 --\"]");
        assert!(parse(&text).unwrap_err().contains("`key`"));
    }

    #[test]
    fn quoted_odd_names_are_kept_and_quoted() {
        let text = SPEC
            .replace("\"public.accounts\"", r#"'"Odd Schema"."Acc""ounts"'"#)
            .replace("[\"id\"]", r#"['"Id"']"#);
        let job = parse(&text).unwrap();
        assert_eq!(job.table.to_string(), r#""Odd Schema"."Acc""ounts""#);
        assert_eq!(job.key_list(), r#""Id""#);
    }

    #[test]
    fn pace_and_wal_budget_are_read_and_checked() {
        let job = parse(SPEC).unwrap();
        assert_eq!(job.pacing.mode, PaceMode::Auto);
        assert_eq!(job.pacing.max_wal_per_second, None);
        assert_eq!(job.load.max_archive_lag, defaults::MAX_ARCHIVE_LAG);
        let job = parse(&format!(
            "{SPEC}pace = \"max\"\nmax_wal_per_second = \"8MB\"\nmax_archive_lag = \"256MB\"\n"
        ))
        .unwrap();
        assert_eq!(job.pacing.mode, PaceMode::Max);
        assert_eq!(job.pacing.max_wal_per_second, Some(8 << 20));
        assert_eq!(job.load.max_archive_lag, 256 << 20);
        let err = parse(&format!("{SPEC}pace = \"fast\"\n")).unwrap_err();
        assert!(err.contains("`pace`"), "{err}");
        let err = parse(&format!("{SPEC}max_wal_per_second = \"8 MBs\"\n")).unwrap_err();
        assert!(err.contains("`max_wal_per_second`"), "{err}");
    }

    #[test]
    fn batch_sizes_must_be_ordered() {
        let err =
            parse(&SPEC.replace("min_batch_size = 100", "min_batch_size = 5000")).unwrap_err();
        assert!(
            err.contains("min_batch_size (5000) <= batch_size (1000)"),
            "{err}"
        );
    }

    #[test]
    fn zero_timeouts_empty_set_and_bad_names_are_refused() {
        assert!(parse(&SPEC.replace("lock_timeout = \"500ms\"", "lock_timeout = \"0s\"")).is_err());
        assert!(parse(&SPEC.replace("\"email_normalized = lower(email)\"", "\" ; \"")).is_err());
        assert!(parse(&SPEC.replace("accounts_email_normalized", "Bad Name")).is_err());
        assert!(parse(&SPEC.replace("[\"id\"]", "[]")).is_err());
        assert!(parse(&SPEC.replace("[\"id\"]", "[\"id\", \"ID\"]")).is_err());
    }

    #[test]
    fn the_checksum_covers_what_changes_rows_only() {
        let base = parse(SPEC).unwrap().spec_checksum;
        let paced = parse(&SPEC.replace("batch_size = 1000", "batch_size = 2000"))
            .unwrap()
            .spec_checksum;
        assert_eq!(base, paced);
        let other = parse(&SPEC.replace("lower(email)", "upper(email)"))
            .unwrap()
            .spec_checksum;
        assert_ne!(base, other);
    }

    const BASE: &str = "name = \"j\"\ntable = \"events\"\nkey = [\"id\"]\n";

    #[test]
    fn update_stays_the_default_and_keeps_its_checksum() {
        let job = parse(SPEC).unwrap();
        assert_eq!(job.action.name(), "update");
        let explicit =
            parse(&SPEC.replace("key = [\"id\"]", "action = \"update\"\nkey = [\"id\"]")).unwrap();
        assert_eq!(job.spec_checksum, explicit.spec_checksum);
        // The checksum of an update job is what it was before actions existed (computed by
        // the code of that time for this spec).
        assert_eq!(
            job.spec_checksum,
            "d339051d60e67ad69ee7675435f9f907f2e6dafabcc2c6f9dd760c9f2e7351ee"
        );
    }

    #[test]
    fn a_delete_needs_where_and_takes_no_set() {
        let job = parse(&format!(
            "{BASE}action = \"delete\"\nwhere = \"at < now() - interval '90 days'\"\n"
        ))
        .unwrap();
        assert_eq!(job.action, Action::Delete);
        let error = parse(&format!("{BASE}action = \"delete\"\n")).unwrap_err();
        assert!(
            error.contains("`where` is required for action = \"delete\""),
            "{error}"
        );
        let error = parse(&format!(
            "{BASE}action = \"delete\"\nwhere = \"true\"\nset = \"x = 1\"\n"
        ))
        .unwrap_err();
        assert!(
            error.contains("`set` does not apply to action = \"delete\""),
            "{error}"
        );
    }

    #[test]
    fn a_copy_needs_into_and_matching_values() {
        let job = parse(&format!(
            "{BASE}action = \"copy\"\ninto = \"archive.events\"\ncolumns = [\"id\", \"body\"]\nvalues = [\"id\", \"upper(body)\"]\non_conflict = \"update\"\n"
        ))
        .unwrap();
        let Action::Copy(copy) = &job.action else {
            panic!("{:?}", job.action)
        };
        assert_eq!(copy.into.to_string(), "\"archive\".\"events\"");
        assert_eq!(copy.on_conflict, OnConflict::Update);
        assert_eq!(copy.values.as_deref().unwrap()[1], "upper(body)");
        for (extra, expected) in [
            ("", "`into` is required"),
            (
                "into = \"t2\"\nset = \"x = 1\"\n",
                "`set` does not apply to action = \"copy\"",
            ),
            (
                "into = \"t2\"\nvalues = [\"a\"]\n",
                "`values` needs `columns`",
            ),
            (
                "into = \"t2\"\ncolumns = [\"a\", \"b\"]\nvalues = [\"a\"]\n",
                "1 expression(s) for 2 column(s)",
            ),
            (
                "into = \"t2\"\non_conflict = \"replace\"\n",
                "`on_conflict` = \"replace\"",
            ),
            ("into = \"t2; DROP TABLE x\"\n", "`into`"),
            (
                "into = \"t2\"\ncolumns = [\"a\", \"a\"]\n",
                "names column \"a\" twice",
            ),
        ] {
            let error = parse(&format!("{BASE}action = \"copy\"\n{extra}")).unwrap_err();
            assert!(error.contains(expected), "{extra}: {error}");
        }
    }

    #[test]
    fn keys_of_another_action_and_unknown_actions_are_refused() {
        let error = parse(&format!(
            "{BASE}set = \"x = 1\"\ninto = \"t2\"\non_conflict = \"skip\"\n"
        ))
        .unwrap_err();
        assert!(
            error.contains("`into`, `on_conflict` do not apply to action = \"update\""),
            "{error}"
        );
        let error = parse(&format!("{BASE}action = \"merge\"\nset = \"x = 1\"\n")).unwrap_err();
        assert!(error.contains("`action` = \"merge\""), "{error}");
        let error = parse(BASE).unwrap_err();
        assert!(
            error.contains("`set` is required for action = \"update\""),
            "{error}"
        );
    }
}
