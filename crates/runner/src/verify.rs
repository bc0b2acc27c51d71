//! Post-apply verification: SQL checks that must return true after `up` (`--verify SQL`,
//! `--verify-file FILE`). Each runs read-only under statement_timeout; its result goes to the
//! output and the audit table, and a check that is not true fails the run.

use std::path::Path;
use std::time::{Duration, Instant};

use sqlx::{AssertSqlSafe, Connection, PgConnection, Row};

/// One check: a query returning one row with one boolean.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// How output and audit name it: the file's path, or the SQL itself.
    pub name: String,
    pub sql: String,
}

#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error("{error}; nothing was applied")]
    Read {
        path: String,
        error: sluice_common::input::InputError,
    },
    #[error(
        "the check {name} is empty; a check is a query returning one boolean, e.g. SELECT NOT EXISTS (...)"
    )]
    Empty { name: String },
}

impl Check {
    pub fn from_sql(sql: &str) -> Result<Self, CheckError> {
        let name = sql.split_whitespace().collect::<Vec<_>>().join(" ");
        Self::new(name, sql)
    }

    pub fn from_file(path: &Path) -> Result<Self, CheckError> {
        let name = path.display().to_string();
        let sql = sluice_common::input::read_text(
            path,
            "check file",
            sluice_common::input::MAX_SQL_BYTES,
        )
        .map_err(|error| CheckError::Read {
            path: name.clone(),
            error,
        })?;
        Self::new(name, &sql)
    }

    fn new(name: String, sql: &str) -> Result<Self, CheckError> {
        // One statement goes over the extended protocol: a trailing `;` is not a second one.
        let sql = sql.trim().trim_end_matches(';').trim().to_owned();
        if sql.is_empty() {
            return Err(CheckError::Empty { name });
        }
        Ok(Self { name, sql })
    }
}

/// What a check returned.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Outcome {
    pub name: String,
    pub passed: bool,
    /// Why it did not pass: `returned false`, or the error.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
    pub duration_ms: u64,
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.problem {
            None => write!(f, "check passed: {} ({} ms)", self.name, self.duration_ms),
            Some(problem) => write!(f, "check failed: {}: {problem}", self.name),
        }
    }
}

/// Runs `check` in a read-only transaction that is rolled back, so a check can change nothing.
pub async fn run(conn: &mut PgConnection, check: &Check, statement_timeout: Duration) -> Outcome {
    let started = Instant::now();
    let result = evaluate(conn, check, statement_timeout).await;
    let duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    Outcome {
        name: check.name.clone(),
        passed: result.is_ok(),
        problem: result.err(),
        duration_ms,
    }
}

async fn evaluate(
    conn: &mut PgConnection,
    check: &Check,
    statement_timeout: Duration,
) -> Result<(), String> {
    let begin = format!(
        "BEGIN READ ONLY; SET LOCAL statement_timeout = {}",
        statement_timeout.as_millis()
    );
    let mut transaction = conn
        .begin_with(AssertSqlSafe(begin))
        .await
        .map_err(|e| sluice_common::db::explain(&e))?;
    let rows = sluice_common::db::first_rows(&mut transaction, &check.sql, 2).await;
    let _ = transaction.rollback().await;
    judge(rows.map_err(|e| sluice_common::db::explain(&e))?)
}

fn judge(rows: Vec<sqlx::postgres::PgRow>) -> Result<(), String> {
    let [row] = rows.as_slice() else {
        let count = if rows.is_empty() {
            "no rows"
        } else {
            "more than one row"
        };
        return Err(format!("returned {count}; a check returns exactly one"));
    };
    match row.try_get::<Option<bool>, _>(0) {
        Ok(Some(true)) => Ok(()),
        Ok(Some(false)) => Err("returned false".into()),
        Ok(None) => Err("returned NULL".into()),
        Err(e) => Err(format!("its first column must be a boolean: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_check_is_named_by_its_sql_on_one_line_and_loses_its_semicolon() {
        let check = Check::from_sql("SELECT NOT EXISTS (\n  SELECT 1 FROM a\n);\n").unwrap();
        assert_eq!(check.name, "SELECT NOT EXISTS ( SELECT 1 FROM a );");
        assert_eq!(check.sql, "SELECT NOT EXISTS (\n  SELECT 1 FROM a\n)");
    }

    #[test]
    fn empty_and_unreadable_checks_are_refused_by_name() {
        assert!(matches!(
            Check::from_sql(" ;\n"),
            Err(CheckError::Empty { .. })
        ));
        let err = Check::from_file(Path::new("/nonexistent/check.sql")).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/check.sql"), "{err}");
        assert!(err.to_string().contains("nothing was applied"), "{err}");
    }
}
