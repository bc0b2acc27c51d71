//! The engine's errors, each with its exit code.

use sluice_common::db::DbError;
use sluice_common::exit;

use sluice_common::db::query_exit_code;
use sluice_common::retry::classify;

use crate::catalog::CatalogError;
use crate::job::JobError;

/// Why a replica's lag cannot be read.
#[derive(Debug)]
pub enum ReplicaProblem {
    Connect(DbError),
    Query(sqlx::Error),
}

impl ReplicaProblem {
    fn exit_code(&self) -> u8 {
        match self {
            Self::Connect(error) => error.exit_code(),
            // A lost replica is the database's; a refused query (no permission) is the
            // operator's to fix.
            Self::Query(error) if classify(error).is_some() => exit::DATABASE_UNAVAILABLE,
            Self::Query(_) => exit::INVALID_INPUT,
        }
    }
}

impl std::fmt::Display for ReplicaProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Connect(error) => write!(f, "{error}"),
            Self::Query(error) => f.write_str(&sluice_common::db::explain(error)),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BackfillError {
    #[error(transparent)]
    Job(#[from] JobError),
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error(
        "the spec of job {job} changed since it started (set or where), and the job \
         is not finished; rows already done were done the old way. Run with --accept-spec-change \
         if that is what you want"
    )]
    SpecChanged { job: String },
    #[error(
        "job {job} was cancelled; it will not run again as it is. Start it over with \
         `sluice-backfill reset {job}` then `sluice-backfill run`"
    )]
    Cancelled { job: String },
    #[error(
        "job {job} failed after {attempts} attempt(s) of a batch after key {cursor}: {error}; \
         its progress is saved, run `sluice-backfill run {spec}` to resume"
    )]
    BatchFailed {
        job: String,
        attempts: u32,
        cursor: String,
        error: String,
        spec: String,
    },
    #[error(
        "job {job} passed its last key, but {remaining} row(s) in its key range {what} (the \
         first at key {first_key}): {cause}. Fix that, then run `sluice-backfill run {spec} \
         --rescan` for another pass"
    )]
    Unverified {
        job: String,
        remaining: u64,
        /// What is wrong with them, by action: "still match `where`", "are not in ...".
        what: String,
        first_key: String,
        /// The likely causes, by action.
        cause: &'static str,
        spec: String,
    },
    #[error(
        "job {job} passed its last key, but {rows} row(s) of {table} that it would change have \
         a NULL key, so no batch ever held them: a key column lost its NOT NULL while the job \
         ran. Give those rows keys (and restore NOT NULL), then run `sluice-backfill run {spec} \
         --rescan`; the job is not complete"
    )]
    NullKeys {
        job: String,
        rows: u64,
        table: String,
        spec: String,
    },
    #[error(
        "the throttle_query of job {job} does not work: {problem}. It must return one row with \
         one boolean (true: the backfill waits); fix it in {spec}"
    )]
    ThrottleQuery {
        job: String,
        problem: String,
        spec: String,
    },
    #[error(
        "the batch statement of job {job} is not valid on its table: {problem}. Fix `set` or \
         `where` in {spec}; nothing was recorded"
    )]
    Statement {
        job: String,
        problem: String,
        spec: String,
    },
    #[error(
        "row-level security applies to role {role} on table {table}: job {job} would see, \
         change and verify only the rows its policies show, and report the job done while the \
         others were never touched; run the job as the table's owner (without FORCE ROW LEVEL \
         SECURITY) or as a role with BYPASSRLS (ALTER ROLE {role} BYPASSRLS); nothing was \
         recorded"
    )]
    RowSecurity {
        job: String,
        table: String,
        role: String,
    },
    #[error(
        "job {job} must watch the replication lag of replica {url}, but cannot read it: \
         {problem}. Fix or remove --replica-url (SLUICE_REPLICA_URLS); the run did not start"
    )]
    Replica {
        job: String,
        url: String,
        problem: Box<ReplicaProblem>,
    },
    #[error(
        "job {job} was started on table {was}; its spec now names table {now}. A job's table \
         and key never change under its name (its progress and verification belong to the \
         first); give the new work its own job name (`name` in {spec})"
    )]
    IdentityChanged {
        job: String,
        was: String,
        now: String,
        spec: String,
    },
    #[error(
        "job {job} has a worker on one of its ranges; pause or cancel it first (and let the \
         worker stop), then reset: nothing was changed"
    )]
    Busy { job: String },
    #[error("no job named {0}; `sluice-backfill status` lists the jobs")]
    UnknownJob(String),
    /// The database's words, explained once in the message (sqlx's own text, which would
    /// repeat them with a line of PostgreSQL's C source, is not a cause to print again).
    #[error("{what} failed: {}", sluice_common::db::explain(.error))]
    Query { what: String, error: sqlx::Error },
}

impl BackfillError {
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Catalog(CatalogError::Query { error, .. }) => query_exit_code(error),
            Self::Job(_)
            | Self::Catalog(_)
            | Self::SpecChanged { .. }
            | Self::ThrottleQuery { .. }
            | Self::Statement { .. }
            | Self::RowSecurity { .. }
            | Self::IdentityChanged { .. } => exit::INVALID_INPUT,
            Self::Replica { problem, .. } => problem.exit_code(),
            Self::Db(e) => e.exit_code(),
            Self::Cancelled { .. } => exit::BLOCKED,
            Self::Busy { .. } => exit::LOCK_HELD,
            Self::UnknownJob(_) => exit::USAGE,
            Self::BatchFailed { .. } | Self::Unverified { .. } | Self::NullKeys { .. } => {
                exit::FAILED
            }
            Self::Query { error, .. } => query_exit_code(error),
        }
    }

    /// Whether the database went away (a restart, a failover, a lost connection) or a lock
    /// or a timeout got in the way: what passes by itself, so the step is worth another try.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Query { error, .. } | Self::Catalog(CatalogError::Query { error, .. }) => {
                classify(error).is_some()
            }
            _ => false,
        }
    }

    pub(crate) fn query(what: impl Into<String>) -> impl FnOnce(sqlx::Error) -> Self {
        let what = what.into();
        move |error| Self::Query { what, error }
    }
}
