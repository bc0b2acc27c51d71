//! What the runner reports while it works. The CLI renders these; tests collect them.

use std::time::Duration;

use sluice_common::lock::LockHolder;

use crate::guard::Blocker;
use crate::source::Version;

/// One migration finished by a run: in its report, and in the error of a run that stopped
/// after it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Done {
    pub id: String,
    /// `None` for a repeatable migration (Flyway's `R__`), which has no version.
    pub version: Option<Version>,
    pub duration_ms: u64,
}

#[derive(Debug, Clone)]
pub enum Event {
    /// Another runner holds the lock; we wait up to `--lock-wait`.
    LockWaiting {
        holder: Option<LockHolder>,
    },
    LockAcquired,
    /// A migration (or its revert) begins.
    Started {
        id: String,
        direction: Direction,
        no_transaction: bool,
        statements: usize,
        resume_at: usize,
    },
    /// A transient failure; the migration (or, without a transaction, the statement) will run
    /// again after `delay` with `next_lock_timeout`.
    Retrying {
        id: String,
        attempt: u32,
        max_retries: u32,
        delay: Duration,
        next_lock_timeout: Duration,
        reason: String,
        blockers: Vec<Blocker>,
    },
    /// An INVALID index left by an earlier failed `CREATE INDEX CONCURRENTLY` was dropped
    /// before building it again.
    InvalidIndexDropped {
        id: String,
        index: String,
    },
    /// One statement of a no-transaction migration finished and was recorded.
    StatementDone {
        id: String,
        number: usize,
        total: usize,
        duration: Duration,
    },
    /// A migration was applied or reverted and recorded.
    Finished {
        id: String,
        direction: Direction,
        duration: Duration,
    },
    /// A post-apply verification check ran (and was audited).
    Checked(crate::verify::Outcome),
    /// `--dump-schema` wrote the schema file.
    SchemaDumped {
        path: std::path::PathBuf,
        bytes: u64,
    },
    /// Dry run: the exact SQL and settings that would run for one migration.
    Planned {
        id: String,
        direction: Direction,
        sql: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Up,
    Down,
    /// A repeatable migration applied (again): recorded by description, never by version.
    Repeat,
}
