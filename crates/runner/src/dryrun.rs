//! `--dry-run`: the exact SQL and session settings a run would send, without sending it.

use crate::apply::{RESET_ROLE, session_reset_sql};
use crate::event::Direction;
use crate::guard::{Timeouts, set_timeouts_sql};
use crate::history::History;
use crate::script::Script;
use crate::source::Migration;

/// The statements `up` (or `down`) would run for one migration, in order.
pub fn render(
    migration: &Migration,
    script: &Script,
    direction: Direction,
    timeouts: Timeouts,
    history: &History,
    resume_at: usize,
) -> String {
    let record = match direction {
        Direction::Up => format!(
            "INSERT INTO {} (version, name, checksum, ...) VALUES ({}, '{}', '{}', ...); -- and an audit row in {}",
            history.migrations_table(),
            migration.version,
            migration.name.replace('\'', "''"),
            migration.up.checksum,
            history.audit_table()
        ),
        Direction::Down => format!(
            "DELETE FROM {} WHERE version = {}; -- and an audit row in {}",
            history.migrations_table(),
            migration.version,
            history.audit_table()
        ),
        Direction::Repeat => format!(
            "INSERT INTO {} (description, checksum, ...) VALUES ('{}', '{}', ...) ON CONFLICT (description) DO UPDATE ...; -- and an audit row in {}",
            history.repeatables_table(),
            migration.name.replace('\'', "''"),
            migration.up.checksum,
            history.audit_table()
        ),
    };
    let progress = if direction == Direction::Up {
        "progress recorded (on the lock's connection) after each statement outside a BEGIN \
         ... COMMIT block of the file, and after each such block"
    } else {
        "history written (on the lock's connection) after the last statement"
    };
    let statements: Vec<String> = match script.statements() {
        Some(statements) => statements
            .iter()
            .skip(resume_at)
            .map(|s| s.sql.clone())
            .collect(),
        None => vec![script.sql.trim().to_owned()],
    };
    let mut out = Vec::new();
    if !script.mode().is_atomic() {
        out.push(format!(
            "-- {} ({}): {}; {progress}",
            migration.id(),
            script.path.display(),
            script.mode().describe()
        ));
        out.push(format!("{};", session_reset_sql()));
        if resume_at > 0 {
            out.push(format!(
                "-- resuming after statement {resume_at}, which already ran"
            ));
        }
        out.push(format!("{};", set_timeouts_sql(timeouts, false)));
        out.extend(statements);
        out.push(format!("{record} -- on the lock's connection"));
    } else {
        out.push(format!(
            "-- {} ({}): {}",
            migration.id(),
            script.path.display(),
            script.mode().describe()
        ));
        out.push(format!("{};", session_reset_sql()));
        out.push("BEGIN;".to_owned());
        out.push(format!("{};", set_timeouts_sql(timeouts, true)));
        out.extend(statements);
        out.push(format!("{RESET_ROLE};"));
        out.push(record);
        out.push("COMMIT;".to_owned());
    }
    out.join("\n")
}
