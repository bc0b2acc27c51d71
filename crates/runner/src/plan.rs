//! Pure decisions: what state each migration is in, what `up` applies and what `down`
//! reverts. No I/O here, so every case is unit-tested below.

use std::collections::BTreeMap;

use crate::history::{Applied, Partial};
use crate::layout::Order;
use crate::script::prefix_checksum;
use crate::source::{Migration, Version};

/// Where one migration stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    Applied,
    Pending,
    /// Applied, but the file changed since.
    Edited {
        recorded: String,
        current: String,
    },
    /// Applied, but the file is gone.
    Missing,
    /// Not applied, but older than the newest applied migration.
    OutOfOrder,
    /// A no-transaction migration stopped part-way: `done` of `total` statements ran.
    Partial {
        done: i32,
        total: i32,
    },
}

impl State {
    pub fn label(&self) -> &'static str {
        match self {
            Self::Applied => "applied",
            Self::Pending => "pending",
            Self::Edited { .. } => "edited",
            Self::Missing => "missing",
            Self::OutOfOrder => "out-of-order",
            Self::Partial { .. } => "partial",
        }
    }
}

/// One row of `status`.
#[derive(Debug, Clone)]
pub struct Entry<'a> {
    pub version: Version,
    pub name: String,
    pub state: State,
    pub file: Option<&'a Migration>,
    pub applied: Option<&'a Applied>,
    pub partial: Option<&'a Partial>,
    /// How the layout writes the version (Flyway's `1.1` for its key).
    pub shown_version: String,
}

impl Entry<'_> {
    pub fn id(&self) -> String {
        match self.file {
            Some(file) => file.id(),
            None => format!("{}_{}", self.shown_version, self.name),
        }
    }
}

/// Compares files with history, in version order (as the directory's layout orders versions).
pub fn status<'a>(
    files: &'a [Migration],
    applied: &'a [Applied],
    partial: &'a [Partial],
    order: Order,
) -> Vec<Entry<'a>> {
    let newest_applied = applied
        .iter()
        .map(|a| a.version)
        .max_by(|a, b| order.cmp(*a, *b));
    let files_by_version: BTreeMap<Version, &Migration> =
        files.iter().map(|m| (m.version, m)).collect();
    let applied_by_version: BTreeMap<Version, &Applied> =
        applied.iter().map(|a| (a.version, a)).collect();
    let partial_by_version: BTreeMap<Version, &Partial> =
        partial.iter().map(|p| (p.version, p)).collect();
    let mut versions: Vec<Version> = files_by_version
        .keys()
        .chain(applied_by_version.keys())
        .chain(partial_by_version.keys())
        .copied()
        .collect();
    versions.sort_unstable_by(|a, b| order.cmp(*a, *b));
    versions.dedup();
    versions
        .into_iter()
        .map(|version| {
            let file = files_by_version.get(&version).copied();
            let applied = applied_by_version.get(&version).copied();
            let partial = partial_by_version.get(&version).copied();
            let older = |n: Version| order.cmp(version, n).is_lt();
            let state = state_of(file, applied, partial, newest_applied.is_some_and(older));
            let name = file
                .map(|f| f.name.clone())
                .or_else(|| applied.map(|a| a.name.clone()))
                .or_else(|| partial.map(|p| p.name.clone()))
                .unwrap_or_default();
            Entry {
                version,
                name,
                state,
                file,
                applied,
                partial,
                shown_version: order.show(version),
            }
        })
        .collect()
}

fn state_of(
    file: Option<&Migration>,
    applied: Option<&Applied>,
    partial: Option<&Partial>,
    older_than_newest_applied: bool,
) -> State {
    match (file, applied, partial) {
        (Some(file), Some(applied), _) if applied.checksum != file.up.checksum => State::Edited {
            recorded: applied.checksum.clone(),
            current: file.up.checksum.clone(),
        },
        (Some(_), Some(_), _) => State::Applied,
        (None, Some(_), _) => State::Missing,
        (_, None, Some(partial)) => State::Partial {
            done: partial.statements_done,
            total: partial.statements_total,
        },
        (Some(_), None, None) if older_than_newest_applied => State::OutOfOrder,
        (Some(_), None, None) => State::Pending,
        (None, None, None) => unreachable!("a version comes from a file, history or progress"),
    }
}

/// Lets a run proceed despite history problems an operator has decided to accept.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Allow {
    /// Applied migrations whose files are gone are not an error.
    pub missing: bool,
    /// New files older than the newest applied migration are applied anyway.
    pub out_of_order: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error(
        "{}\nan applied migration must not change: revert the file to what was applied, \
         and put the change in a new migration",
        lines(.0)
    )]
    Edited(Vec<String>),
    #[error("{}\nrestore the files, or pass --allow-missing if they were removed on purpose", lines(.0))]
    Missing(Vec<String>),
    #[error(
        "{}\nrename them to a version newer than the newest applied one, or pass \
         --allow-out-of-order to apply them anyway",
        lines(.0)
    )]
    OutOfOrder(Vec<String>),
    #[error("no migration file has version {0}")]
    UnknownTarget(String),
    #[error("migration {id} has no down file ({hint}); nothing was reverted")]
    Irreversible { id: String, hint: String },
    #[error(
        "migration {id} stopped part-way ({done} of {total} statements) and cannot be reverted; \
         finish it with `sluice up` first"
    )]
    PartialRevert { id: String, done: i32, total: i32 },
}

fn lines(items: &[String]) -> String {
    items.join("\n")
}

impl PlanError {
    pub fn exit_code(&self) -> u8 {
        use sluice_common::exit;
        match self {
            Self::Edited(_) | Self::Missing(_) | Self::OutOfOrder(_) => exit::HISTORY_DRIFT,
            Self::UnknownTarget(_) => exit::USAGE,
            Self::Irreversible { .. } | Self::PartialRevert { .. } => exit::INVALID_INPUT,
        }
    }
}

/// One migration to apply; `resume_at` skips statements a no-transaction migration already ran.
#[derive(Debug, Clone, Copy)]
pub struct UpStep<'a> {
    pub migration: &'a Migration,
    pub resume_at: usize,
}

/// What `up` applies: pending migrations up to `target`, in version order. Refuses when
/// history and files disagree.
pub fn plan_up<'a>(
    entries: &[Entry<'a>],
    target: Option<Version>,
    allow: Allow,
) -> Result<Vec<UpStep<'a>>, PlanError> {
    check_history(entries, allow)?;
    // Entries are in the layout's order: up to the target is up to its position.
    let end = match target {
        None => entries.len(),
        Some(target) => {
            entries
                .iter()
                .position(|e| e.version == target && e.file.is_some())
                .ok_or_else(|| PlanError::UnknownTarget(target.to_string()))?
                + 1
        }
    };
    Ok(entries[..end]
        .iter()
        .filter_map(|e| {
            let resume_at = match e.state {
                State::Pending | State::OutOfOrder => 0,
                State::Partial { done, .. } => usize::try_from(done).unwrap_or(0),
                _ => return None,
            };
            Some(UpStep {
                migration: e.file?,
                resume_at,
            })
        })
        .collect())
}

/// Refuses edited files always, missing and out-of-order files unless allowed.
pub fn check_history(entries: &[Entry<'_>], allow: Allow) -> Result<(), PlanError> {
    let edited: Vec<String> = entries
        .iter()
        .filter_map(|e| match &e.state {
            State::Edited { recorded, current } => Some(format!(
                "migration {} was applied but its file {} has changed (applied checksum {recorded}, file checksum {current})",
                e.id(),
                e.file.map(|f| f.up.path.display().to_string()).unwrap_or_default(),
            )),
            State::Partial { .. } => edited_partial(e),
            _ => None,
        })
        .collect();
    if !edited.is_empty() {
        return Err(PlanError::Edited(edited));
    }
    let missing = ids_in_state(
        entries,
        |s| matches!(s, State::Missing),
        "was applied but its file is missing",
    );
    if !missing.is_empty() && !allow.missing {
        return Err(PlanError::Missing(missing));
    }
    let late = ids_in_state(
        entries,
        |s| matches!(s, State::OutOfOrder),
        "is not applied but is older than the newest applied migration",
    );
    if !late.is_empty() && !allow.out_of_order {
        return Err(PlanError::OutOfOrder(late));
    }
    Ok(())
}

/// A part-applied migration whose file changed, or vanished, cannot be resumed safely.
fn edited_partial(entry: &Entry<'_>) -> Option<String> {
    let partial = entry.partial?;
    match entry.file {
        Some(file) if file.up.checksum == partial.checksum => None,
        Some(file) if ran_unchanged(file, partial) => None,
        Some(file) => Some(format!(
            "migration {} stopped part-way, and statements of its file {} that already ran have \
             changed since (file checksum then {}, now {})",
            entry.id(),
            file.up.path.display(),
            partial.checksum,
            file.up.checksum
        )),
        None => Some(format!(
            "migration {} stopped part-way, and its file is missing",
            entry.id()
        )),
    }
}

/// Whether the statements a part-applied migration already ran are still the same.
fn ran_unchanged(file: &Migration, partial: &Partial) -> bool {
    let done = usize::try_from(partial.statements_done).unwrap_or(usize::MAX);
    // Nothing of it ran (its first block rolled back): any edit is a fix, not a change.
    if done == 0 {
        return true;
    }
    file.up.statements().is_some_and(|statements| {
        statements.len() >= done && prefix_checksum(statements, done) == partial.done_checksum
    })
}

fn ids_in_state(entries: &[Entry<'_>], wanted: impl Fn(&State) -> bool, what: &str) -> Vec<String> {
    entries
        .iter()
        .filter(|e| wanted(&e.state))
        .map(|e| format!("migration {} {what}", e.id()))
        .collect()
}

/// How far `down` goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DownTarget {
    /// The newest `n` applied migrations.
    Steps(usize),
    /// Every applied migration newer than this version.
    To(Version),
}

/// What `down` reverts, newest first. Refuses before anything runs when one of them has no
/// down file.
pub fn plan_down<'a>(
    entries: &[Entry<'a>],
    target: DownTarget,
    allow: Allow,
    order: Order,
) -> Result<Vec<&'a Migration>, PlanError> {
    check_history(
        entries,
        Allow {
            missing: allow.missing,
            out_of_order: true,
        },
    )?;
    let partial = entries.iter().rev().find_map(|e| match e.state {
        State::Partial { done, total } => Some((e.id(), done, total)),
        _ => None,
    });
    if let Some((id, done, total)) = partial {
        return Err(PlanError::PartialRevert { id, done, total });
    }
    // Everything recorded as applied, whether or not its file is still there: a revert must
    // never skip over a migration it cannot undo.
    let applied = entries
        .iter()
        .rev()
        .filter(|e| matches!(e.state, State::Applied | State::Missing));
    let chosen: Vec<&Entry<'a>> = match target {
        DownTarget::Steps(n) => applied.take(n).collect(),
        DownTarget::To(version) => applied
            .take_while(|e| order.cmp(e.version, version).is_gt())
            .collect(),
    };
    chosen.into_iter().map(reversible).collect()
}

fn reversible<'a>(entry: &Entry<'a>) -> Result<&'a Migration, PlanError> {
    let Some(file) = entry.file else {
        return Err(PlanError::Irreversible {
            id: entry.id(),
            hint: "its file is missing".to_owned(),
        });
    };
    match file.down {
        Some(_) => Ok(file),
        None => Err(PlanError::Irreversible {
            id: file.id(),
            hint: if file.up.path.ends_with("up.sql") {
                format!("add down.sql beside {}", file.up.path.display())
            } else {
                format!(
                    "{} is not an .up.sql with a matching .down.sql",
                    file.up.path.display()
                )
            },
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::script::Script;
    use std::path::Path;

    fn migration(version: Version, sql: &str, down: Option<&str>) -> Migration {
        let path = format!("migrations/{version:04}_m{version}.sql");
        Migration {
            version,
            version_text: format!("{version:04}"),
            name: format!("m{version}"),
            up: Script::parse(Path::new(&path), sql).unwrap(),
            down: down.map(|d| Script::parse(Path::new("down.sql"), d).unwrap()),
            form: crate::layout::Form::Flat,
        }
    }

    fn applied(m: &Migration) -> Applied {
        Applied {
            version: m.version,
            name: m.name.clone(),
            checksum: m.up.checksum.clone(),
            ..Applied::default()
        }
    }

    fn states(entries: &[Entry<'_>]) -> Vec<(Version, &'static str)> {
        entries
            .iter()
            .map(|e| (e.version, e.state.label()))
            .collect()
    }

    #[test]
    fn a_fresh_database_has_everything_pending() {
        let files = vec![
            migration(1, "SELECT 1;", None),
            migration(2, "SELECT 2;", None),
        ];
        let entries = status(&files, &[], &[], Order::Numeric);
        assert_eq!(states(&entries), vec![(1, "pending"), (2, "pending")]);
        let plan = plan_up(&entries, None, Allow::default()).unwrap();
        assert_eq!(
            plan.iter().map(|s| s.migration.version).collect::<Vec<_>>(),
            vec![1, 2]
        );
    }

    #[test]
    fn applied_migrations_are_skipped() {
        let files = vec![
            migration(1, "SELECT 1;", None),
            migration(2, "SELECT 2;", None),
        ];
        let history = vec![applied(&files[0])];
        let entries = status(&files, &history, &[], Order::Numeric);
        assert_eq!(states(&entries), vec![(1, "applied"), (2, "pending")]);
        assert_eq!(plan_up(&entries, None, Allow::default()).unwrap().len(), 1);
    }

    #[test]
    fn up_stops_at_the_target() {
        let files: Vec<_> = (1..=3).map(|v| migration(v, "SELECT 1;", None)).collect();
        let entries = status(&files, &[], &[], Order::Numeric);
        let plan = plan_up(&entries, Some(2), Allow::default()).unwrap();
        assert_eq!(plan.len(), 2);
        assert_eq!(
            plan_up(&entries, Some(7), Allow::default()).unwrap_err(),
            PlanError::UnknownTarget("7".into())
        );
    }

    #[test]
    fn an_edited_migration_is_always_refused() {
        let files = vec![migration(1, "SELECT 1;", None)];
        let mut history = vec![applied(&files[0])];
        history[0].checksum = "0ld".into();
        let entries = status(&files, &history, &[], Order::Numeric);
        assert_eq!(states(&entries), vec![(1, "edited")]);
        let err = plan_up(
            &entries,
            None,
            Allow {
                missing: true,
                out_of_order: true,
            },
        )
        .unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("0001_m1")
                && text.contains("0ld")
                && text.contains(&files[0].up.checksum),
            "{text}"
        );
        assert!(text.contains("migrations/0001_m1.sql"), "{text}");
        assert_eq!(err.exit_code(), sluice_common::exit::HISTORY_DRIFT);
    }

    #[test]
    fn a_missing_file_is_refused_unless_allowed() {
        let gone = migration(1, "SELECT 1;", None);
        let files = vec![migration(2, "SELECT 2;", None)];
        let history = vec![applied(&gone)];
        let entries = status(&files, &history, &[], Order::Numeric);
        assert_eq!(states(&entries), vec![(1, "missing"), (2, "pending")]);
        assert!(matches!(
            plan_up(&entries, None, Allow::default()),
            Err(PlanError::Missing(_))
        ));
        let allowed = plan_up(
            &entries,
            None,
            Allow {
                missing: true,
                ..Allow::default()
            },
        )
        .unwrap();
        assert_eq!(allowed.len(), 1);
    }

    #[test]
    fn an_older_new_file_is_refused_unless_allowed() {
        let files = vec![
            migration(1, "SELECT 1;", None),
            migration(2, "SELECT 2;", None),
        ];
        let history = vec![applied(&files[1])];
        let entries = status(&files, &history, &[], Order::Numeric);
        assert_eq!(states(&entries), vec![(1, "out-of-order"), (2, "applied")]);
        let err = plan_up(&entries, None, Allow::default()).unwrap_err();
        assert!(matches!(err, PlanError::OutOfOrder(_)), "{err}");
        let allowed = plan_up(
            &entries,
            None,
            Allow {
                out_of_order: true,
                ..Allow::default()
            },
        )
        .unwrap();
        assert_eq!(allowed[0].migration.version, 1);
    }

    #[test]
    fn a_partial_migration_resumes_where_it_stopped() {
        let files = vec![migration(
            1,
            "-- sluice:no-transaction\nSELECT 1;\nSELECT 2;\n",
            None,
        )];
        let partial = vec![Partial {
            version: 1,
            name: "m1".into(),
            checksum: files[0].up.checksum.clone(),
            statements_done: 1,
            statements_total: 2,
            done_checksum: String::new(),
            last_error: None,
        }];
        let entries = status(&files, &[], &partial, Order::Numeric);
        assert_eq!(states(&entries), vec![(1, "partial")]);
        let plan = plan_up(&entries, None, Allow::default()).unwrap();
        assert_eq!(plan[0].resume_at, 1);
    }

    fn partial_after_first_statement_of(sql: &str) -> Partial {
        let original = migration(1, sql, None);
        let statements = original.up.statements().unwrap();
        Partial {
            version: 1,
            name: "m1".into(),
            checksum: original.up.checksum.clone(),
            statements_done: 1,
            statements_total: 2,
            done_checksum: prefix_checksum(statements, 1),
            last_error: Some("syntax error".into()),
        }
    }

    #[test]
    fn a_partial_migration_whose_ran_statements_changed_is_refused() {
        let partial = vec![partial_after_first_statement_of(
            "-- sluice:no-transaction\nSELECT 1;\nSELECT * FROM missing_table;\n",
        )];
        let files = vec![migration(
            1,
            "-- sluice:no-transaction\nSELECT 10;\nSELECT 2;\n",
            None,
        )];
        let entries = status(&files, &[], &partial, Order::Numeric);
        let err = plan_up(&entries, None, Allow::default()).unwrap_err();
        assert!(matches!(err, PlanError::Edited(_)), "{err}");
    }

    #[test]
    fn a_partial_migration_may_fix_statements_that_did_not_run() {
        let partial = vec![partial_after_first_statement_of(
            "-- sluice:no-transaction\nSELECT 1;\nSELECT * FROM missing_table;\n",
        )];
        let files = vec![migration(
            1,
            "-- sluice:no-transaction\nSELECT 1;\nSELECT 2;\n",
            None,
        )];
        let entries = status(&files, &[], &partial, Order::Numeric);
        let plan = plan_up(&entries, None, Allow::default()).unwrap();
        assert_eq!(plan[0].resume_at, 1);
    }

    #[test]
    fn a_partial_migration_with_nothing_run_may_change_anywhere() {
        let mut partial = partial_after_first_statement_of(
            "-- sluice:no-transaction\nSELECT 1;\nSELECT * FROM missing_table;\n",
        );
        partial.statements_done = 0;
        partial.done_checksum = String::new();
        let files = vec![migration(
            1,
            "-- sluice:no-transaction\nSELECT 10;\nSELECT 2;\n",
            None,
        )];
        let partial = [partial];
        let entries = status(&files, &[], &partial, Order::Numeric);
        let plan = plan_up(&entries, None, Allow::default()).unwrap();
        assert_eq!(plan[0].resume_at, 0);
    }

    #[test]
    fn down_reverts_newest_first() {
        let files: Vec<_> = (1..=3)
            .map(|v| migration(v, "SELECT 1;", Some("SELECT -1;")))
            .collect();
        let history: Vec<_> = files.iter().map(applied).collect();
        let entries = status(&files, &history, &[], Order::Numeric);
        let versions = |plan: Vec<&Migration>| plan.iter().map(|m| m.version).collect::<Vec<_>>();
        assert_eq!(
            versions(
                plan_down(
                    &entries,
                    DownTarget::Steps(1),
                    Allow::default(),
                    Order::Numeric
                )
                .unwrap()
            ),
            vec![3]
        );
        assert_eq!(
            versions(
                plan_down(
                    &entries,
                    DownTarget::Steps(9),
                    Allow::default(),
                    Order::Numeric
                )
                .unwrap()
            ),
            vec![3, 2, 1]
        );
        assert_eq!(
            versions(
                plan_down(
                    &entries,
                    DownTarget::To(1),
                    Allow::default(),
                    Order::Numeric
                )
                .unwrap()
            ),
            vec![3, 2]
        );
        assert_eq!(
            versions(
                plan_down(
                    &entries,
                    DownTarget::To(3),
                    Allow::default(),
                    Order::Numeric
                )
                .unwrap()
            ),
            Vec::<Version>::new()
        );
    }

    #[test]
    fn down_refuses_up_front_when_a_migration_has_no_down_file() {
        let files = vec![
            migration(1, "SELECT 1;", Some("SELECT -1;")),
            migration(2, "SELECT 2;", None),
        ];
        let history: Vec<_> = files.iter().map(applied).collect();
        let entries = status(&files, &history, &[], Order::Numeric);
        let err = plan_down(
            &entries,
            DownTarget::Steps(2),
            Allow::default(),
            Order::Numeric,
        )
        .unwrap_err();
        assert!(
            matches!(err, PlanError::Irreversible { ref id, .. } if id == "0002_m2"),
            "{err}"
        );
    }

    #[test]
    fn down_never_skips_over_an_applied_migration_whose_file_is_missing() {
        let gone = migration(2, "SELECT 2;", Some("SELECT -2;"));
        let files = vec![migration(1, "SELECT 1;", Some("SELECT -1;"))];
        let history = vec![applied(&files[0]), applied(&gone)];
        let entries = status(&files, &history, &[], Order::Numeric);
        let allow = Allow {
            missing: true,
            ..Allow::default()
        };
        let err = plan_down(&entries, DownTarget::Steps(1), allow, Order::Numeric).unwrap_err();
        assert!(
            err.to_string()
                .contains("migration 2_m2 has no down file (its file is missing)"),
            "{err}"
        );
    }
}
