//! What an application start-up makes of history: a pure decision over `status` entries and the
//! closed backfill gates, shared by the embedding library (`sluice-migrate`) and
//! `sluice check --startup`.
//!
//! An older build rolled back after a newer one applied its migrations finds history it does
//! not know. By default that is drift and the start is refused; with [`Newer::Allow`] the
//! migrations newer than every one this build knows are tolerated: an expand migration keeps
//! the old code working by design (that is what expand/contract is for). An unknown migration
//! ordered between known ones is never tolerated: this build's history is then not a prefix of
//! the database's.
//!
//! A contract migration whose backfill gate is closed does not stop a start-up: the running
//! application is exactly what the gate protects, and the migration runs on a later start (or
//! `sluice up`) once the backfill is complete. Anything else not applied does stop it, and so
//! does history that disagrees with the files.

use std::collections::BTreeMap;

use sluice_common::backfill_gate::ClosedGate;

use crate::plan::{Entry, State};
use crate::source::Version;

/// What a start-up makes of applied migrations newer than every one this build knows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Newer {
    /// History this build does not know is drift: refuse to start (the default).
    #[default]
    Refuse,
    /// Start anyway: the database was migrated by a newer build (an application rollback).
    Allow,
}

/// The migrations of a start-up, sorted into what it may and may not start with.
#[derive(Debug, Default)]
pub struct StartupView<'e, 'a> {
    /// Applied, file unchanged.
    pub applied: Vec<&'e Entry<'a>>,
    /// Applied by a newer build, unknown to this one, and newer than all it knows: tolerated
    /// with [`Newer::Allow`].
    pub newer: Vec<&'e Entry<'a>>,
    /// History and files disagree (edited, missing, out of order): never start.
    pub drift: Vec<&'e Entry<'a>>,
    /// Not applied (or stopped part-way) and free to run now.
    pub pending: Vec<&'e Entry<'a>>,
    /// Waiting for a backfill job: the application may start without them.
    pub deferred: Vec<&'e Entry<'a>>,
    /// Free to run, but after a deferred migration, so not before its backfill completes.
    pub behind_gate: Vec<&'e Entry<'a>>,
}

impl StartupView<'_, '_> {
    /// Whether an application may start on this database as it is.
    pub fn may_start(&self) -> bool {
        self.drift.is_empty() && self.pending.is_empty() && self.behind_gate.is_empty()
    }
}

/// Sorts `entries` (in the layout's order) given the closed gates of the migrations not
/// applied and what to make of newer unknown ones.
pub fn view<'e, 'a>(
    entries: &'e [Entry<'a>],
    blocked: &BTreeMap<Version, Vec<ClosedGate>>,
    newer: Newer,
) -> StartupView<'e, 'a> {
    let mut view = StartupView::default();
    let mut gated = false;
    // Entries past the last one with a file are the newer build's alone.
    let known = entries
        .iter()
        .rposition(|e| e.state != State::Missing)
        .map_or(0, |last| last + 1);
    for (index, entry) in entries.iter().enumerate() {
        match entry.state {
            State::Applied => view.applied.push(entry),
            State::Missing if index >= known && newer == Newer::Allow => view.newer.push(entry),
            State::Edited { .. } | State::Missing | State::OutOfOrder => view.drift.push(entry),
            State::Pending | State::Partial { .. } => {
                if blocked.contains_key(&entry.version) {
                    gated = true;
                    view.deferred.push(entry);
                } else if gated {
                    view.behind_gate.push(entry);
                } else {
                    view.pending.push(entry);
                }
            }
        }
    }
    view
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(version: Version, state: State) -> Entry<'static> {
        Entry {
            version,
            name: format!("m{version}"),
            state,
            file: None,
            applied: None,
            partial: None,
            shown_version: version.to_string(),
        }
    }

    fn gate(job: &str) -> Vec<ClosedGate> {
        vec![ClosedGate {
            job: job.to_owned(),
            status: None,
        }]
    }

    fn versions(entries: &[&Entry<'_>]) -> Vec<Version> {
        entries.iter().map(|e| e.version).collect()
    }

    #[test]
    fn a_closed_gate_defers_its_migration_without_stopping_the_start() {
        let entries = [
            entry(1, State::Applied),
            entry(2, State::Applied),
            entry(3, State::Pending),
        ];
        let blocked = BTreeMap::from([(3, gate("fill"))]);
        let view = view(&entries, &blocked, Newer::Refuse);
        assert_eq!(versions(&view.applied), [1, 2]);
        assert_eq!(versions(&view.deferred), [3]);
        assert!(view.may_start());
    }

    #[test]
    fn what_could_run_stops_the_start_before_and_after_a_gate() {
        let entries = [
            entry(1, State::Pending),
            entry(2, State::Pending),
            entry(3, State::Pending),
            entry(4, State::Partial { done: 1, total: 2 }),
        ];
        let blocked = BTreeMap::from([(2, gate("a")), (3, gate("b"))]);
        let view = view(&entries, &blocked, Newer::Refuse);
        assert_eq!(versions(&view.pending), [1]);
        assert_eq!(versions(&view.deferred), [2, 3]);
        assert_eq!(versions(&view.behind_gate), [4]);
        assert!(!view.may_start());
        let only_gated = [entry(1, State::Applied), entry(2, State::Pending)];
        let blocked = BTreeMap::from([(2, gate("a"))]);
        assert!(super::view(&only_gated, &blocked, Newer::Refuse).may_start());
    }

    #[test]
    fn drift_never_starts() {
        let entries = [
            entry(
                1,
                State::Edited {
                    recorded: "a".into(),
                    current: "b".into(),
                },
            ),
            entry(2, State::Missing),
        ];
        let view = view(&entries, &BTreeMap::new(), Newer::Refuse);
        assert_eq!(versions(&view.drift), [1, 2]);
        assert!(!view.may_start());
        assert!(
            super::view(&[entry(1, State::Applied)], &BTreeMap::new(), Newer::Refuse).may_start()
        );
    }

    #[test]
    fn an_older_build_starts_on_newer_history_only_when_allowed() {
        let entries = [
            entry(1, State::Applied),
            entry(2, State::Applied),
            entry(3, State::Missing),
            entry(4, State::Missing),
        ];
        let strict = view(&entries, &BTreeMap::new(), Newer::Refuse);
        assert_eq!(versions(&strict.drift), [3, 4]);
        assert!(!strict.may_start());
        let allowed = view(&entries, &BTreeMap::new(), Newer::Allow);
        assert_eq!(versions(&allowed.newer), [3, 4]);
        assert_eq!(versions(&allowed.applied), [1, 2]);
        assert!(allowed.may_start());
    }

    #[test]
    fn an_unknown_migration_between_known_ones_is_never_allowed() {
        let entries = [
            entry(1, State::Applied),
            entry(2, State::Missing),
            entry(3, State::Applied),
            entry(4, State::Missing),
        ];
        let view = view(&entries, &BTreeMap::new(), Newer::Allow);
        assert_eq!(versions(&view.drift), [2]);
        assert_eq!(versions(&view.newer), [4]);
        assert!(!view.may_start());
        // A known migration not applied below newer history is out of order, allowed or not.
        let behind = [entry(1, State::OutOfOrder), entry(2, State::Missing)];
        let view = super::view(&behind, &BTreeMap::new(), Newer::Allow);
        assert_eq!(versions(&view.drift), [1]);
        assert!(!view.may_start());
    }
}
