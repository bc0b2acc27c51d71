//! `--dry-run`: the exact SQL and session settings a run would send, without sending it,
//! printed from the same [`steps::plan`] that `apply` executes.

use crate::event::Direction;
use crate::guard::Timeouts;
use crate::history::History;
use crate::script::Script;
use crate::source::Migration;
use crate::steps::{self, Step};

/// The statements `up` (or `down`) would run for one migration, in order.
pub fn render(
    migration: &Migration,
    script: &Script,
    direction: Direction,
    timeouts: Timeouts,
    history: &History,
    resume_at: usize,
) -> String {
    let atomic = script.mode().is_atomic();
    let mut header = format!(
        "-- {} ({}): {}",
        migration.id(),
        script.path.display(),
        script.mode().describe()
    );
    if !atomic {
        header.push_str(if direction == Direction::Up {
            "; progress recorded (on the lock's connection) after each statement outside a \
             BEGIN ... COMMIT block of the file, and after each such block"
        } else {
            "; history written (on the lock's connection) after the last statement"
        });
    }
    let plan = match steps::plan(script, direction, resume_at, timeouts) {
        Ok(plan) => plan,
        Err(error) => return format!("{header}\n-- it cannot run: {error}"),
    };
    let mut out = vec![header];
    for step in &plan {
        match step {
            Step::Reset if resume_at > 0 => out.extend([
                format!("{};", steps::session_reset_sql()),
                format!("-- resuming after statement {resume_at}, which already ran"),
            ]),
            Step::Begin(timeouts) => {
                out.push("BEGIN;".to_owned());
                out.push(format!(
                    "{};",
                    crate::guard::set_timeouts_sql(*timeouts, true)
                ));
            }
            Step::Run { statement, .. } => out.push(statement.sql.clone()),
            Step::DropInvalidIndex(index) => out.push(format!(
                "-- if an earlier failed build of the next statement left an INVALID index {}, \
                 it is dropped first (DROP INDEX CONCURRENTLY)",
                index.name.quoted()
            )),
            // The header says when progress is recorded.
            Step::Progress { .. } => {}
            Step::Record(direction) => {
                let on_lock = if atomic {
                    ""
                } else {
                    " -- on the lock's connection"
                };
                out.push(format!(
                    "{}{on_lock}",
                    record(migration, *direction, history)
                ));
            }
            other => out.extend(other.fixed_sql().map(|sql| format!("{sql};"))),
        }
    }
    out.join("\n")
}

/// What the history row says, in short: its full SQL carries every value inline.
fn record(migration: &Migration, direction: Direction, history: &History) -> String {
    let name = migration.name.replace('\'', "''");
    let checksum = &migration.up.checksum;
    let audit = history.audit_table();
    match direction {
        Direction::Up => format!(
            "INSERT INTO {} (version, name, checksum, ...) VALUES ({}, '{name}', '{checksum}', ...); \
             -- and an audit row in {audit}",
            history.migrations_table(),
            migration.version,
        ),
        Direction::Down => format!(
            "DELETE FROM {} WHERE version = {}; -- and an audit row in {audit}",
            history.migrations_table(),
            migration.version,
        ),
        Direction::Repeat => format!(
            "INSERT INTO {} (description, checksum, ...) VALUES ('{name}', '{checksum}', ...) \
             ON CONFLICT (description) DO UPDATE ...; -- and an audit row in {audit}",
            history.repeatables_table(),
        ),
    }
}

#[cfg(test)]
mod golden {
    //! The dry run of each way a file runs, compared with `src/golden/*.sql`. Run with
    //! `SLUICE_BLESS=1` to write the files after a deliberate change, and read the diff.
    use std::path::{Path, PathBuf};
    use std::time::Duration;

    use sluice_common::ident::Ident;

    use super::render;
    use crate::event::Direction;
    use crate::guard::Timeouts;
    use crate::history::History;
    use crate::layout::Form;
    use crate::repeatable::Repeatable;
    use crate::script::Script;
    use crate::source::Migration;

    fn script(name: &str, text: &str) -> Script {
        let script = Script::parse(Path::new(name), text).unwrap();
        script.analyse().unwrap();
        script
    }

    fn migration(up: &str, down: Option<&str>) -> Migration {
        Migration {
            version: 7,
            version_text: "0007".to_owned(),
            name: "o'brien".to_owned(),
            up: script("0007_o'brien.up.sql", up),
            down: down.map(|d| script("0007_o'brien.down.sql", d)),
            form: Form::Flat,
        }
    }

    fn check(name: &str, actual: &str) {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("src/golden/{name}.sql"));
        if std::env::var_os("SLUICE_BLESS").is_some() {
            std::fs::write(&path, actual).unwrap();
        }
        let expected = std::fs::read_to_string(&path).unwrap_or_default();
        assert_eq!(
            actual,
            expected,
            "the dry run of {name} changed; see {}",
            path.display()
        );
    }

    fn rendered(migration: &Migration, direction: Direction, resume_at: usize) -> String {
        let script = match direction {
            Direction::Down => migration.down.as_ref().unwrap(),
            Direction::Up | Direction::Repeat => &migration.up,
        };
        let timeouts = Timeouts {
            lock_timeout: Duration::from_millis(750),
            statement_timeout: Duration::from_secs(900),
        };
        let history = History::new(Ident::new("sluice").unwrap());
        render(migration, script, direction, timeouts, &history, resume_at)
    }

    #[test]
    fn a_transactional_file_and_its_revert() {
        let m = migration(
            "CREATE TABLE t (id int); -- the table\nCREATE INDEX t_id ON t (id);\n",
            Some("DROP TABLE t;\n"),
        );
        check("transaction", &rendered(&m, Direction::Up, 0));
        check("revert", &rendered(&m, Direction::Down, 0));
    }

    #[test]
    fn a_file_that_is_its_own_block() {
        let m = migration(
            "SET search_path = app;\nBEGIN;\nCREATE TABLE t (id int);\nCOMMIT;\n",
            None,
        );
        check("own_transaction", &rendered(&m, Direction::Up, 0));
    }

    #[test]
    fn a_no_transaction_file_resumed() {
        let m = migration(
            "-- sluice:no-transaction\nCREATE INDEX CONCURRENTLY t_a ON t (a);\n\
             CREATE INDEX CONCURRENTLY t_b ON t (b);\nANALYZE t;\n",
            None,
        );
        check("no_transaction", &rendered(&m, Direction::Up, 0));
        check("no_transaction_resumed", &rendered(&m, Direction::Up, 1));
    }

    #[test]
    fn a_file_with_its_own_blocks() {
        let m = migration(
            "BEGIN;\nCREATE TABLE t (id int);\nCOMMIT;\nCREATE INDEX CONCURRENTLY t_id ON t (id);\n",
            None,
        );
        check("own_transactions", &rendered(&m, Direction::Up, 0));
    }

    #[test]
    fn a_repeatable_file() {
        let repeatable = Repeatable::new(
            "views",
            script("R__views.sql", "CREATE OR REPLACE VIEW v AS SELECT 1;\n"),
            0,
        );
        check(
            "repeatable",
            &rendered(repeatable.as_migration(), Direction::Repeat, 0),
        );
    }
}
