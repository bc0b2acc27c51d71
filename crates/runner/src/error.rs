//! The runner's errors, each with its exit code and the progress made before it.

use sluice_common::db::DbError;
use sluice_common::exit;
use sluice_common::lock::LockError;

use crate::apply::ApplyError;
use crate::event::Done;
use crate::plan::PlanError;
use crate::source::SourceError;

#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    #[error("invalid migrations:\n{0}")]
    Source(SourceError),
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Lock(Box<LockError>),
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error("{error}")]
    Apply {
        error: ApplyError,
        /// Migrations finished in this run before the failure.
        done: Vec<Done>,
    },
    #[error("migration {migration} is blocked: {}", reasons.join("; "))]
    Blocked {
        migration: String,
        reasons: Vec<String>,
        done: Vec<Done>,
    },
    #[error(
        "{} migration(s) not approved in environment {environment} (require_approval = true):\n{}\n\
         approve each as its file is now: sluice approve --env {environment} {} --reason \"...\"",
        unapproved.len(),
        unapproved.iter().map(|u| format!("  {u}")).collect::<Vec<_>>().join("\n"),
        unapproved.iter().map(|u| u.version_shown.as_str()).collect::<Vec<_>>().join(" ")
    )]
    Unapproved {
        environment: String,
        unapproved: Vec<crate::approval::Unapproved>,
        done: Vec<Done>,
    },
    #[error("nothing was approved:\n{}", problems.iter().map(|p| format!("  {p}")).collect::<Vec<_>>().join("\n"))]
    Approve { problems: Vec<String> },
    #[cfg(feature = "lint")]
    #[error(
        "{} unapproved dangerous change(s):\n{}\napprove each in its file with `-- sluice:approve <rule> reason: <why it is safe here>`, \
         or run with --skip-lint (recorded in the audit table)",
        findings.len(),
        findings.iter().map(|f| format!("  {f}{}", f.help.as_deref().map(|h| format!("\n    help: {h}")).unwrap_or_default())).collect::<Vec<_>>().join("\n")
    )]
    Lint { findings: Vec<crate::lint::Finding> },
    #[error(transparent)]
    Backup(#[from] crate::backup::BackupError),
    #[error(transparent)]
    Import(#[from] crate::import::ImportError),
    #[error(transparent)]
    Check(#[from] crate::verify::CheckError),
    #[error(
        "{} verification check(s) failed after up; the migrations stay applied (see `sluice status`). \
         Investigate, then fix forward with a new migration or revert with `sluice down`:\n{}",
        failed.len(),
        failed.iter().map(|o| format!("  {o}")).collect::<Vec<_>>().join("\n")
    )]
    Verification {
        failed: Vec<crate::verify::Outcome>,
        done: Vec<Done>,
    },
    #[error("{error}")]
    Dump {
        error: crate::schema_dump::DumpError,
        done: Vec<Done>,
    },
    #[error("migration {id} is not applied, so there is no recorded checksum to repair")]
    NotApplied { id: String },
    #[error("interrupted before migration {next}; run the same command again to continue")]
    Interrupted { next: String, done: Vec<Done> },
    #[error("{what} failed: {}", sluice_common::db::explain(.error))]
    Query { what: String, error: sqlx::Error },
}

impl From<LockError> for RunnerError {
    fn from(error: LockError) -> Self {
        Self::Lock(Box::new(error))
    }
}

// By hand, not `#[from]`: the message quotes the problems, so they are not also a source.
impl From<SourceError> for RunnerError {
    fn from(error: SourceError) -> Self {
        Self::Source(error)
    }
}

impl RunnerError {
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Source(_) => exit::INVALID_INPUT,
            Self::Db(e) => e.exit_code(),
            Self::Lock(lock) => match **lock {
                LockError::Interrupted { .. } => exit::INTERRUPTED,
                LockError::Held { .. } | LockError::Lost { .. } => exit::LOCK_HELD,
                LockError::Query { ref error, .. } => sluice_common::db::query_exit_code(error),
            },
            Self::Query { error, .. } => sluice_common::db::query_exit_code(error),
            Self::NotApplied { .. } => exit::USAGE,
            Self::Backup(_) => exit::FAILED,
            // A failed read of the other tool's table is not a disagreement of histories.
            Self::Import(crate::import::ImportError::Query { error, .. }) => {
                sluice_common::db::query_exit_code(error)
            }
            Self::Import(_) => exit::HISTORY_DRIFT,
            Self::Check(_) => exit::INVALID_INPUT,
            Self::Verification { .. } | Self::Dump { .. } => exit::FAILED,
            Self::Plan(e) => e.exit_code(),
            Self::Apply {
                error: ApplyError::Interrupted { .. },
                ..
            }
            | Self::Interrupted { .. } => exit::INTERRUPTED,
            Self::Apply {
                error: ApplyError::Lock(_),
                ..
            } => exit::LOCK_HELD,
            Self::Apply { .. } => exit::FAILED,
            Self::Blocked { .. } | Self::Unapproved { .. } => exit::BLOCKED,
            Self::Approve { .. } => exit::INVALID_INPUT,
            #[cfg(feature = "lint")]
            Self::Lint { .. } => exit::BLOCKED,
        }
    }

    /// Migrations this run completed before stopping.
    pub fn done(&self) -> &[Done] {
        match self {
            Self::Apply { done, .. }
            | Self::Interrupted { done, .. }
            | Self::Blocked { done, .. }
            | Self::Unapproved { done, .. }
            | Self::Verification { done, .. }
            | Self::Dump { done, .. } => done,
            _ => &[],
        }
    }

    pub(crate) fn query(what: impl Into<String>) -> impl FnOnce(sqlx::Error) -> Self {
        let what = what.into();
        move |error| Self::Query { what, error }
    }
}
