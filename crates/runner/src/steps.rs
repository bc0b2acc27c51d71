//! How one file runs, step by step: the one place that says it. `apply` executes these steps
//! (a transactional file's all in one message), `--dry-run` prints them and `trace` replays
//! the statements among them, so the three cannot drift apart.

use crate::event::Direction;
use crate::guard::{Timeouts, set_timeouts_sql};
use crate::script::{ConcurrentIndex, Script, ScriptError, Statement};

/// One thing the runner does for a file, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step<'s> {
    /// A clean session: what an earlier file set (role, settings, temporary tables, cursors,
    /// listens, prepared statements) ends here.
    Reset,
    /// `BEGIN` and the guards as `SET LOCAL`: the file and its history row in one transaction.
    Begin(Timeouts),
    /// The guards for the session, before a statement that runs outside sluice's transaction
    /// (the file may have changed them).
    Guards(Timeouts),
    /// Before a `CREATE INDEX CONCURRENTLY`: the INVALID index an earlier failed build of it
    /// left is dropped, so that it builds again.
    DropInvalidIndex(&'s ConcurrentIndex),
    /// Statement `index` (0-based) of the file.
    Run {
        index: usize,
        statement: &'s Statement,
    },
    /// After statement `done` (1-based) of a file outside a transaction, once the session is
    /// outside the file's own blocks: how far it got, on the lock's connection.
    Progress {
        done: usize,
        total: usize,
    },
    /// Back to the runner's own role, whatever role the file switched to.
    ResetRole,
    /// The history row and its audit row: inside the transaction when there is one, else on
    /// the lock's connection after the last statement.
    Record(Direction),
    Commit,
}

/// The steps of `script` run in `direction`, from statement `resume_at` (0-based; a
/// no-transaction file resumes where it stopped), under `timeouts`.
pub fn plan(
    script: &Script,
    direction: Direction,
    resume_at: usize,
    timeouts: Timeouts,
) -> Result<Vec<Step<'_>>, ScriptError> {
    script.analyse()?;
    Ok(of(script, direction, resume_at, timeouts))
}

/// [`plan`] of a file already analysed.
pub fn of(
    script: &Script,
    direction: Direction,
    resume_at: usize,
    timeouts: Timeouts,
) -> Vec<Step<'_>> {
    let statements = script.statements().unwrap_or_default();
    let mut steps = vec![Step::Reset];
    if script.mode().is_atomic() {
        steps.push(Step::Begin(timeouts));
        steps.extend(
            statements
                .iter()
                .enumerate()
                .map(|(index, statement)| Step::Run { index, statement }),
        );
        steps.extend([Step::ResetRole, Step::Record(direction), Step::Commit]);
    } else {
        for index in resume_at..statements.len() {
            steps.extend(statement_steps(statements, index, direction, timeouts));
        }
        steps.push(Step::Record(direction));
    }
    steps
}

/// The steps of statement `index` of a file that runs outside a transaction.
pub fn statement_steps<'s>(
    statements: &'s [Statement],
    index: usize,
    direction: Direction,
    timeouts: Timeouts,
) -> Vec<Step<'s>> {
    let statement = &statements[index];
    let mut steps = vec![Step::Guards(timeouts)];
    steps.extend(
        statement
            .concurrent_index
            .as_ref()
            .map(Step::DropInvalidIndex),
    );
    steps.push(Step::Run { index, statement });
    // Only an applied file resumes; a down file or a repeatable one runs again from the start.
    if direction == Direction::Up {
        steps.push(Step::Progress {
            done: index + 1,
            total: statements.len(),
        });
    }
    steps
}

impl Step<'_> {
    /// What the runner sends for this step, when that does not depend on the database (the
    /// history row and an INVALID index's drop do).
    pub fn fixed_sql(&self) -> Option<String> {
        match self {
            Self::Reset => Some(session_reset_sql()),
            Self::Begin(timeouts) => Some(format!("BEGIN; {}", set_timeouts_sql(*timeouts, true))),
            Self::Guards(timeouts) => Some(set_timeouts_sql(*timeouts, false)),
            Self::Run { statement, .. } => Some(statement.sql.clone()),
            Self::ResetRole => Some(RESET_ROLE.to_owned()),
            Self::Commit => Some("COMMIT".to_owned()),
            Self::DropInvalidIndex(_) | Self::Progress { .. } | Self::Record(_) => None,
        }
    }

    /// How many statements [`Step::fixed_sql`] holds: each one completes on its own, which is
    /// how a failure in a message of many steps is traced to its step.
    pub fn commands(&self) -> usize {
        match self {
            Self::Reset => SESSION_RESET.len() + 1,
            Self::Begin(_) => 3,
            Self::Guards(_) | Self::ResetRole => 2,
            Self::Run { .. } | Self::Record(_) | Self::Commit => 1,
            Self::DropInvalidIndex(_) | Self::Progress { .. } => 0,
        }
    }
}

/// Back to the role the runner logged in as (allowed for any role: it names itself).
pub const RESET_ROLE: &str = "RESET SESSION AUTHORIZATION; RESET ROLE";

/// What a clean session takes: the role, settings, temporary tables, cursors, listens and
/// prepared statements of an earlier file all go.
const SESSION_RESET: [&str; 7] = [
    "RESET SESSION AUTHORIZATION",
    "RESET ROLE",
    "RESET ALL",
    "DISCARD TEMP",
    "CLOSE ALL",
    "UNLISTEN *",
    "DEALLOCATE ALL",
];

/// PostgreSQL 14+: notice within a second when the runner is gone (killed during a long
/// CREATE INDEX CONCURRENTLY), instead of building on for the dead client. `RESET ALL` clears
/// it, so it comes with every reset.
pub const CONNECTION_CHECK: &str = "SELECT CASE WHEN current_setting('server_version_num')::int >= 140000 \
     THEN set_config('client_connection_check_interval', '1000', false) END";

/// The clean session every file starts from.
pub fn session_reset_sql() -> String {
    format!("{}; {CONNECTION_CHECK}", SESSION_RESET.join("; "))
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::Duration;

    use super::*;

    const TIMEOUTS: Timeouts = Timeouts {
        lock_timeout: Duration::from_secs(1),
        statement_timeout: Duration::from_secs(60),
    };

    fn kinds(text: &str, direction: Direction, resume_at: usize) -> Vec<String> {
        let script = Script::parse(Path::new("f.sql"), text).unwrap();
        plan(&script, direction, resume_at, TIMEOUTS)
            .unwrap()
            .iter()
            .map(|step| match step {
                Step::Run { index, .. } => format!("Run {index}"),
                Step::Progress { done, .. } => format!("Progress {done}"),
                other => format!("{other:?}")
                    .split(['(', ' '])
                    .next()
                    .unwrap()
                    .to_owned(),
            })
            .collect()
    }

    #[test]
    fn a_transactional_file_is_one_transaction_with_its_history_row() {
        assert_eq!(
            kinds(
                "CREATE TABLE a (id int);\nCREATE TABLE b (id int);",
                Direction::Up,
                0
            ),
            [
                "Reset",
                "Begin",
                "Run 0",
                "Run 1",
                "ResetRole",
                "Record",
                "Commit"
            ]
        );
    }

    #[test]
    fn a_no_transaction_file_records_progress_after_each_statement_and_resumes() {
        let file = "-- sluice:no-transaction\nCREATE INDEX CONCURRENTLY i ON t (a);\nANALYZE t;";
        assert_eq!(
            kinds(file, Direction::Up, 0),
            [
                "Reset",
                "Guards",
                "DropInvalidIndex",
                "Run 0",
                "Progress 1",
                "Guards",
                "Run 1",
                "Progress 2",
                "Record"
            ]
        );
        assert_eq!(
            kinds(file, Direction::Up, 1),
            ["Reset", "Guards", "Run 1", "Progress 2", "Record"]
        );
        assert_eq!(
            kinds(file, Direction::Down, 0),
            [
                "Reset",
                "Guards",
                "DropInvalidIndex",
                "Run 0",
                "Guards",
                "Run 1",
                "Record"
            ]
        );
    }

    #[test]
    fn a_file_that_does_not_parse_has_no_plan() {
        let script = Script::parse(Path::new("f.sql"), "CREATE TABLE (;").unwrap();
        assert!(plan(&script, Direction::Up, 0, TIMEOUTS).is_err());
    }
}
