//! Flyway's repeatable migrations, `R__<description>.sql`: applied after every versioned
//! migration, in description order, and applied again whenever the file changes (a view, a
//! function, a grant written so that running it twice is harmless). They have no version and
//! no down; their history is a table of its own, one row per description
//! ([`crate::history::AppliedRepeatable`]).

use chrono::{DateTime, Utc};

use crate::history::AppliedRepeatable;
use crate::layout::Form;
use crate::script::Script;
use crate::source::Migration;

/// One repeatable migration file.
#[derive(Debug, Clone)]
pub struct Repeatable {
    /// The file as the apply path runs it: version 0 (never written to the versioned
    /// history) and no down.
    migration: Migration,
    /// The checksum Flyway records for this file ([`crate::flyway::checksum`]).
    flyway_checksum: i32,
}

impl Repeatable {
    pub fn new(description: &str, script: Script, flyway_checksum: i32) -> Self {
        Self {
            migration: Migration {
                version: 0,
                // So that `id()` is Flyway's own name for it: `R__views`.
                version_text: "R_".to_owned(),
                name: description.to_owned(),
                up: script,
                down: None,
                form: Form::Flyway,
            },
            flyway_checksum,
        }
    }

    /// `views` of `R__views.sql`: what Flyway and sluice key its history by.
    pub fn description(&self) -> &str {
        &self.migration.name
    }

    /// `R__views`: how messages name it.
    pub fn id(&self) -> String {
        self.migration.id()
    }

    pub fn script(&self) -> &Script {
        &self.migration.up
    }

    pub fn flyway_checksum(&self) -> i32 {
        self.flyway_checksum
    }

    /// The file as the apply path, the linter and the dry run take it.
    pub fn as_migration(&self) -> &Migration {
        &self.migration
    }
}

/// Where a repeatable migration stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Never applied: the next `up` applies it.
    New,
    /// Applied, and the file changed since: the next `up` applies it again.
    Changed { applied_at: Option<DateTime<Utc>> },
    /// Applied as the file is now.
    Current { applied_at: Option<DateTime<Utc>> },
    /// Applied, and its file is gone (nothing to do; shown so nobody wonders).
    FileMissing { applied_at: Option<DateTime<Utc>> },
}

impl State {
    /// Whether the next `up` applies it.
    pub fn is_pending(self) -> bool {
        matches!(self, Self::New | Self::Changed { .. })
    }
}

/// One line of the repeatable migrations' status.
#[derive(Debug, Clone)]
pub struct Line<'a> {
    pub description: &'a str,
    pub file: Option<&'a Repeatable>,
    pub state: State,
}

/// Files against history: every file in description order, then the recorded descriptions
/// whose file is gone.
pub fn status<'a>(files: &'a [Repeatable], applied: &'a [AppliedRepeatable]) -> Vec<Line<'a>> {
    let recorded = |description: &str| applied.iter().find(|a| a.description == description);
    let mut lines: Vec<Line<'a>> = files
        .iter()
        .map(|file| {
            let state = match recorded(file.description()) {
                None => State::New,
                Some(row) if row.checksum == file.script().checksum => State::Current {
                    applied_at: row.applied_at,
                },
                Some(row) => State::Changed {
                    applied_at: row.applied_at,
                },
            };
            Line {
                description: file.description(),
                file: Some(file),
                state,
            }
        })
        .collect();
    lines.extend(
        applied
            .iter()
            .filter(|row| !files.iter().any(|f| f.description() == row.description))
            .map(|row| Line {
                description: &row.description,
                file: None,
                state: State::FileMissing {
                    applied_at: row.applied_at,
                },
            }),
    );
    lines
}

/// The files the next `up` applies, in the order it applies them.
pub fn pending<'a>(files: &'a [Repeatable], applied: &[AppliedRepeatable]) -> Vec<&'a Repeatable> {
    files
        .iter()
        .filter(|file| {
            !applied.iter().any(|row| {
                row.description == file.description() && row.checksum == file.script().checksum
            })
        })
        .collect()
}

/// Sorts files as Flyway applies them: by description.
pub fn sort(files: &mut [Repeatable]) {
    files.sort_by(|a, b| a.description().cmp(b.description()));
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn file(description: &str, sql: &str) -> Repeatable {
        let path = format!("R__{description}.sql");
        let script = Script::parse(Path::new(&path), sql).expect("valid SQL");
        Repeatable::new(description, script, crate::flyway::checksum(sql))
    }

    fn applied(file: &Repeatable) -> AppliedRepeatable {
        AppliedRepeatable {
            description: file.description().to_owned(),
            checksum: file.script().checksum.clone(),
            ..AppliedRepeatable::default()
        }
    }

    #[test]
    fn new_and_changed_files_are_pending_in_description_order() {
        let mut files = vec![
            file("views", "CREATE OR REPLACE VIEW v AS SELECT 1;"),
            file("grants", "GRANT SELECT ON v TO PUBLIC;"),
            file("functions", "SELECT 1;"),
        ];
        sort(&mut files);
        let mut history = vec![applied(&files[0]), applied(&files[2])];
        // `views` was applied as an older text.
        history[1].checksum = "older".to_owned();
        let pending: Vec<String> = pending(&files, &history).iter().map(|r| r.id()).collect();
        assert_eq!(pending, ["R__grants", "R__views"]);
        let states: Vec<State> = status(&files, &history).iter().map(|l| l.state).collect();
        assert_eq!(
            states,
            [
                State::Current { applied_at: None },
                State::New,
                State::Changed { applied_at: None }
            ]
        );
    }

    #[test]
    fn a_recorded_file_that_is_gone_is_shown_and_never_pending() {
        let gone = file("old_views", "SELECT 1;");
        let history = vec![applied(&gone)];
        let lines = status(&[], &history);
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0].description, "old_views");
        assert!(matches!(lines[0].state, State::FileMissing { .. }));
        assert!(pending(&[], &history).is_empty());
    }
}
