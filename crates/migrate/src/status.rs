//! Where the database stands against the embedded migrations, as an application sees it.

use std::collections::BTreeMap;
use std::fmt;

use sluice_common::backfill_gate::ClosedGate;
use sluice_runner::plan::{Entry, State};
use sluice_runner::source::Version;
use sluice_runner::startup::{self, Newer};

use crate::Error;

/// One migration, as messages name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationId {
    /// 0 for a repeatable migration (Flyway's `R__<description>.sql`), which has no version.
    pub version: i64,
    /// `<version>_<name>` as in the file name: `20260101120000_create_users`.
    pub id: String,
}

impl fmt::Display for MigrationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.id)
    }
}

/// A contract migration waiting for its backfill job: it does not stop a start-up, and runs on
/// a later start (or `sluice up`) once the job is complete and verified.
#[derive(Debug, Clone, PartialEq)]
pub struct Deferred {
    pub migration: MigrationId,
    pub waiting_for: Vec<Backfill>,
}

/// A backfill job a migration waits for, and how far it is.
#[derive(Debug, Clone, PartialEq)]
pub struct Backfill {
    pub job: String,
    /// The job's state (`running`, `paused`, `failed`, ...); `None` when it never ran.
    pub state: Option<String>,
    pub rows_scanned: i64,
    /// The table's estimated row count when the job was registered.
    pub estimated_rows: i64,
    /// One sentence: the progress and what to run next.
    pub message: String,
}

impl From<&ClosedGate> for Backfill {
    fn from(gate: &ClosedGate) -> Self {
        Self {
            job: gate.job.clone(),
            state: gate.status.as_ref().map(|s| s.state.to_string()),
            rows_scanned: gate.status.as_ref().map_or(0, |s| s.rows_scanned),
            estimated_rows: gate.status.as_ref().map_or(0, |s| s.estimated_rows),
            message: gate.to_string(),
        }
    }
}

/// History against the embedded migrations.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Status {
    /// Applied, and the embedded file is the one applied.
    pub applied: Vec<MigrationId>,
    /// Not applied, free to run now (or, run without a transaction, stopped part-way).
    pub pending: Vec<MigrationId>,
    /// Waiting for their backfill jobs: an application may start without them.
    pub deferred: Vec<Deferred>,
    /// Free to run, but ordered after a deferred migration, so not before its backfill
    /// completes: an application may not start without them.
    pub behind_backfill: Vec<MigrationId>,
    /// Applied, but the embedded file differs: `(migration, applied checksum, embedded checksum)`.
    pub edited: Vec<(MigrationId, String, String)>,
    /// Applied, but not embedded in this build.
    pub missing: Vec<MigrationId>,
    /// Applied by a newer build, not embedded in this one, and newer than every embedded
    /// migration: tolerated by [`Migrator::allow_newer`](crate::Migrator::allow_newer)
    /// (otherwise they are [`missing`](Self::missing)).
    pub newer: Vec<MigrationId>,
    /// Embedded, not applied, and older than the newest applied migration.
    pub out_of_order: Vec<MigrationId>,
}

impl Status {
    pub(crate) fn of(
        entries: &[Entry<'_>],
        blocked: &BTreeMap<Version, Vec<ClosedGate>>,
        newer: Newer,
    ) -> Self {
        let view = startup::view(entries, blocked, newer);
        let ids = |entries: &[&Entry<'_>]| entries.iter().map(|e| id(e)).collect::<Vec<_>>();
        let mut status = Self {
            applied: ids(&view.applied),
            newer: ids(&view.newer),
            pending: ids(&view.pending),
            behind_backfill: ids(&view.behind_gate),
            deferred: view
                .deferred
                .iter()
                .map(|e| Deferred {
                    migration: id(e),
                    waiting_for: blocked[&e.version].iter().map(Backfill::from).collect(),
                })
                .collect(),
            ..Self::default()
        };
        for entry in &view.drift {
            match &entry.state {
                State::Edited { recorded, current } => {
                    status
                        .edited
                        .push((id(entry), recorded.clone(), current.clone()));
                }
                State::Missing => status.missing.push(id(entry)),
                _ => status.out_of_order.push(id(entry)),
            }
        }
        status
    }

    /// Nothing to apply and nothing wrong: every embedded migration is applied.
    pub fn is_current(&self) -> bool {
        self.pending.is_empty()
            && self.deferred.is_empty()
            && self.behind_backfill.is_empty()
            && !self.has_drift()
    }

    /// Whether an application may start: nothing is pending but migrations waiting for their
    /// backfill, and history agrees with the files.
    pub fn may_start(&self) -> bool {
        self.pending.is_empty() && self.behind_backfill.is_empty() && !self.has_drift()
    }

    /// Whether every disagreement is a migration newer than all embedded ones.
    fn only_newer_missing(&self) -> bool {
        let newest_embedded = self
            .applied
            .iter()
            .chain(&self.pending)
            .chain(&self.behind_backfill)
            .chain(self.deferred.iter().map(|d| &d.migration))
            .map(|m| m.version)
            .max();
        self.edited.is_empty()
            && self.out_of_order.is_empty()
            && !self.missing.is_empty()
            && self
                .missing
                .iter()
                .all(|m| newest_embedded.is_none_or(|newest| m.version > newest))
    }

    fn has_drift(&self) -> bool {
        !(self.edited.is_empty() && self.missing.is_empty() && self.out_of_order.is_empty())
    }

    /// The error a start-up refuses with, if it must; `hint` says what to run.
    pub(crate) fn refusal(&self, hint: &str) -> Option<Error> {
        if self.has_drift() {
            return Some(self.drift_error());
        }
        if self.may_start() {
            return None;
        }
        let pending: Vec<String> = self
            .pending
            .iter()
            .chain(&self.behind_backfill)
            .map(ToString::to_string)
            .collect();
        let waiting_for_backfill = if self.behind_backfill.is_empty() {
            Vec::new()
        } else {
            self.deferred
                .iter()
                .map(|d| d.migration.to_string())
                .collect()
        };
        Some(Error::Pending {
            pending,
            waiting_for_backfill,
            hint: hint.to_owned(),
        })
    }

    pub(crate) fn drift_error(&self) -> Error {
        let mut lines = Vec::new();
        for (migration, recorded, current) in &self.edited {
            lines.push(format!(
                "  {migration} was applied with checksum {recorded}, but the embedded file has {current}"
            ));
        }
        for migration in &self.missing {
            lines.push(format!(
                "  {migration} is applied but not embedded in this build"
            ));
        }
        if self.only_newer_missing() {
            lines.push(
                "if this is an older build starting on a database a newer build migrated (an \
                 application rollback after an expand migration), Migrator::allow_newer lets \
                 it start"
                    .to_owned(),
            );
        }
        for migration in &self.out_of_order {
            lines.push(format!(
                "  {migration} is not applied and older than the newest applied migration"
            ));
        }
        lines.push(
            "an applied migration must not change or disappear: build with the files as they \
             were applied and put changes in new migrations; `sluice status` shows the history"
                .to_owned(),
        );
        Error::Drift {
            edited: self.edited.iter().map(|(m, ..)| m.to_string()).collect(),
            missing: self.missing.iter().map(ToString::to_string).collect(),
            out_of_order: self.out_of_order.iter().map(ToString::to_string).collect(),
            message: lines.join("\n"),
        }
    }
}

/// One line: where the database stands.
impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} migration(s) applied", self.applied.len())?;
        if let Some(last) = self.applied.last() {
            write!(f, " (latest {last})")?;
        }
        let not_applied = self.pending.len() + self.behind_backfill.len();
        if not_applied > 0 {
            write!(f, ", {not_applied} pending")?;
        }
        for deferred in &self.deferred {
            let jobs: Vec<&str> = deferred
                .waiting_for
                .iter()
                .map(|b| b.message.as_str())
                .collect();
            write!(f, "; {} waits: {}", deferred.migration, jobs.join("; "))?;
        }
        if !self.newer.is_empty() {
            write!(
                f,
                "; {} applied by a newer build (allowed)",
                self.newer.len()
            )?;
        }
        if self.has_drift() {
            write!(
                f,
                "; history disagrees with the files ({} edited, {} missing, {} out of order)",
                self.edited.len(),
                self.missing.len(),
                self.out_of_order.len()
            )?;
        }
        Ok(())
    }
}

fn id(entry: &Entry<'_>) -> MigrationId {
    MigrationId {
        version: entry.version,
        id: entry.id(),
    }
}
