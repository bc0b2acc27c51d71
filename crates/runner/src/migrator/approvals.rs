//! `sluice approve` and the approval gate of `up` in an environment with `require_approval`.

use sluice_common::shutdown::Shutdown;

use super::{Migrator, Report, Work, ids};
use crate::approval::{self, Approval, Unapproved};
use crate::error::RunnerError;
use crate::event::Event;
use crate::plan::{self, State};
use crate::source::{self, Migration};

impl Migrator {
    /// Records an approval of each migration `names` names, as its file is now, with
    /// `reason`. Only pending migrations of this directory may be approved; one name that is
    /// not (unknown, applied, edited) approves nothing.
    pub async fn approve(
        &self,
        names: &[String],
        reason: &str,
        shutdown: &Shutdown,
        events: &mut dyn FnMut(Event),
    ) -> Result<Vec<String>, RunnerError> {
        if reason.trim().is_empty() {
            return Err(RunnerError::Approve {
                problems: vec![
                    "--reason is empty: say what was reviewed and why it may run".into(),
                ],
            });
        }
        self.with_lock(shutdown, events, async |lock, _| {
            let recorded = self.prepare(lock).await?;
            let entries = plan::status(
                &self.files,
                &recorded.applied,
                &recorded.partial,
                self.layout.order(),
            );
            let mut chosen: Vec<&Migration> = Vec::new();
            let mut problems = Vec::new();
            for name in names {
                match self.approvable(name, &entries) {
                    Ok(migration) if !chosen.iter().any(|m| m.version == migration.version) => {
                        chosen.push(migration);
                    }
                    Ok(_) => {}
                    Err(problem) => problems.push(problem),
                }
            }
            if !problems.is_empty() {
                return Err(RunnerError::Approve { problems });
            }
            self.history
                .record_approvals(lock.connection(), &chosen, reason, &self.settings.who)
                .await
                .map_err(RunnerError::query("recording the approvals"))?;
            Ok(chosen.iter().map(|m| m.id()).collect())
        })
        .await
    }

    /// The migration `name` names, if it may be approved; else why not.
    fn approvable<'a>(
        &'a self,
        name: &str,
        entries: &[plan::Entry<'a>],
    ) -> Result<&'a Migration, String> {
        let version = source::version_named(&self.files, self.layout, name)
            .ok_or_else(|| format!("{name:?} is not a migration version or name"))?;
        let entry = entries
            .iter()
            .find(|e| e.version == version)
            .ok_or_else(|| format!("{name}: no migration file has that version"))?;
        match (&entry.state, entry.file) {
            (State::Pending | State::Partial { .. }, Some(file)) => Ok(file),
            (State::Applied, _) => Err(format!(
                "{}: already applied; an approval is for a migration about to run",
                entry.id()
            )),
            (state, _) => Err(format!(
                "{}: {}; only a pending migration can be approved",
                entry.id(),
                state.label()
            )),
        }
    }

    /// `work` cut to what may run here: without `require_approval`, all of it; with it, the
    /// approved migrations before the first that is not (and no repeatable migration while
    /// any versioned one waits), and every one that is not.
    pub(super) fn approved<'w>(
        &self,
        approvals: &[Approval],
        mut work: Vec<Work<'w>>,
    ) -> (Vec<Work<'w>>, Vec<Unapproved>) {
        if self.settings.require_approval.is_none() {
            return (work, Vec::new());
        }
        let pending: Vec<&Migration> = work
            .iter()
            .filter(|w| matches!(w, Work::Apply(_)))
            .map(Work::migration)
            .collect();
        let (runnable, unapproved) = approval::gate(&pending, approvals);
        if !unapproved.is_empty() {
            work.truncate(runnable);
        }
        (work, unapproved)
    }

    /// The error that ends an `up` that stopped short of unapproved migrations.
    pub(super) fn unapproved_error(
        &self,
        unapproved: Vec<Unapproved>,
        report: &Report,
    ) -> Option<RunnerError> {
        let environment = self.settings.require_approval.clone()?;
        (!unapproved.is_empty()).then(|| RunnerError::Unapproved {
            environment,
            unapproved,
            done: ids(report),
        })
    }
}
