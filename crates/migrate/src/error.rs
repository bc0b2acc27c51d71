//! The errors of an embedded run, typed so that an application can tell "not yet migrated"
//! from "cannot reach the database" from "a migration failed".

use sluice_common::lock::LockError;
use sluice_runner::error::RunnerError;
use sluice_runner::plan::PlanError;

/// Boxed so that the engine's own error types stay out of this crate's API.
type Source = Box<dyn std::error::Error + Send + Sync>;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The embedded files are not valid migrations (a bad name, a down file without its up
    /// file, a directive that cannot be read), one problem per line.
    #[error("invalid embedded migrations:\n{}", problems.join("\n"))]
    Invalid { problems: Vec<String> },

    /// A setting of the application's is not valid (an `AUTO_MIGRATE` value).
    #[error("{name}={value:?} {expected}")]
    Setting {
        name: String,
        value: String,
        /// What would be valid.
        expected: String,
    },

    /// The configuration given to [`Migrator::environment`](crate::Migrator::environment)
    /// cannot be read, or does not define that environment.
    #[error(transparent)]
    Config(sluice_common::config::ConfigError),

    /// The schema given to [`Migrator::schema`](crate::Migrator::schema) is not a valid name.
    #[error("invalid schema name for sluice's tables: {0}")]
    Schema(String),

    /// Migrations this build needs are not applied: the application must not start yet.
    #[error(
        "the database is behind this build: {} migration(s) not applied: {}{}; {}",
        pending.len(),
        pending.join(", "),
        if waiting_for_backfill.is_empty() {
            String::new()
        } else {
            format!(" (ordered after {}, which waits for its backfill)", waiting_for_backfill.join(", "))
        },
        hint
    )]
    Pending {
        /// Migrations that are not applied, by id (`20260101120000_create_users`).
        pending: Vec<String>,
        /// Migrations waiting for their backfill that some of `pending` are ordered after.
        waiting_for_backfill: Vec<String>,
        /// What to run next.
        hint: String,
    },

    /// History and files disagree: an applied migration was edited, or its file is gone, or a
    /// new one is older than the newest applied. Never started on, never applied over.
    #[error("history and the embedded migrations disagree:\n{message}")]
    Drift {
        /// Applied migrations whose embedded file has another checksum, by id.
        edited: Vec<String>,
        /// Applied migrations with no embedded file.
        missing: Vec<String>,
        /// Embedded migrations older than the newest applied one.
        out_of_order: Vec<String>,
        message: String,
    },

    /// Another runner held the migration lock for longer than
    /// [`Migrator::lock_wait`](crate::Migrator::lock_wait).
    #[error("{0}")]
    Locked(Source),

    /// The database could not be reached, or refused the login.
    #[error("{0}")]
    Database(Source),

    /// A migration failed (it was rolled back, or, run without a transaction, stopped at a
    /// recorded statement that the next run resumes from). `applied` lists the migrations this
    /// run finished before it.
    #[error("{error}")]
    Failed {
        applied: Vec<String>,
        /// What stopped it: the engine's error, whose message is this one's.
        error: Source,
    },
}

impl Error {
    /// The `sluice` CLI's exit code for this error (README, "Exit codes"), for an application
    /// that exits on it: 7 pending, 6 history drift, 4 database unavailable, 5 lock held,
    /// 3 invalid migrations, 2 a bad setting, 1 a failed migration.
    pub fn exit_code(&self) -> u8 {
        use sluice_common::exit;
        match self {
            Self::Invalid { .. } => exit::INVALID_INPUT,
            Self::Setting { .. } | Self::Schema(_) => exit::USAGE,
            Self::Config(error) => error.exit_code(),
            Self::Pending { .. } => exit::PENDING,
            Self::Drift { .. } => exit::HISTORY_DRIFT,
            Self::Locked(_) => exit::LOCK_HELD,
            // A malformed URL is bad input (3), as in the CLI: retrying cannot fix it.
            Self::Database(e) => e.downcast_ref::<sluice_common::db::DbError>().map_or(
                exit::DATABASE_UNAVAILABLE,
                sluice_common::db::DbError::exit_code,
            ),
            Self::Failed { .. } => exit::FAILED,
        }
    }

    pub(crate) fn from_runner(error: RunnerError) -> Self {
        let applied: Vec<String> = error.done().iter().map(|d| d.id.clone()).collect();
        match error {
            RunnerError::Source(source) => Self::Invalid {
                problems: source.problems,
            },
            RunnerError::Db(db) => Self::Database(Box::new(db)),
            RunnerError::Lock(lock) if matches!(*lock, LockError::Held { .. }) => {
                Self::Locked(lock)
            }
            RunnerError::Plan(plan) => Self::from_plan(plan),
            other => Self::Failed {
                applied,
                error: Box::new(other),
            },
        }
    }

    /// History drift is reported from a fresh status ([`Status::drift_error`]), with ids;
    /// this is for what remains.
    fn from_plan(plan: PlanError) -> Self {
        Self::Failed {
            applied: Vec::new(),
            error: Box::new(plan),
        }
    }

    /// Whether the engine refused because history and files disagree.
    pub(crate) fn is_drift(error: &RunnerError) -> bool {
        matches!(
            error,
            RunnerError::Plan(
                PlanError::Edited(_) | PlanError::Missing(_) | PlanError::OutOfOrder(_)
            )
        )
    }
}
