//! `repeatables`: the newest application of each of Flyway's repeatable migrations, keyed by
//! description. Each application is also an `apply` row of the audit table, named `R__...`
//! and without a version.

use chrono::{DateTime, Utc};
use sqlx::{AssertSqlSafe, PgConnection};

use sluice_common::ident::quote_literal;

use super::{History, Record, optional_literal};

/// A row of `repeatables`.
#[derive(Debug, Clone, Default, PartialEq, Eq, sqlx::FromRow)]
pub struct AppliedRepeatable {
    pub description: String,
    /// sluice's checksum of the file as it was applied.
    pub checksum: String,
    pub applied_at: Option<DateTime<Utc>>,
    pub duration_ms: i64,
    pub applied_by_role: String,
    pub applied_by_program: Option<String>,
    pub actor: Option<String>,
}

impl History {
    pub(super) fn repeatables_ddl(&self) -> String {
        format!(
            "CREATE TABLE IF NOT EXISTS {} (
    description text PRIMARY KEY,
    checksum text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now(),
    duration_ms bigint NOT NULL,
    applied_by_role text NOT NULL DEFAULT current_user,
    applied_by_host text DEFAULT host(inet_client_addr()),
    applied_by_program text,
    actor text
);",
            self.repeatables
        )
    }

    /// The qualified name of the table, for messages and dry runs.
    pub fn repeatables_table(&self) -> &str {
        &self.repeatables
    }

    /// Records a repeatable migration another tool applied at `applied_at`, as `import` does.
    pub async fn record_imported_repeatable(
        &self,
        conn: &mut PgConnection,
        record: Record<'_>,
        applied_at: Option<DateTime<Utc>>,
        tool: &str,
    ) -> Result<(), sqlx::Error> {
        let row = RepeatableRow {
            action: "import",
            applied_at,
            program: format!("{tool} (imported)"),
            detail: Some(format!("imported from {tool}'s history")),
        };
        let took = format!("WITH took AS (SELECT {}::bigint AS ms)", record.duration_ms);
        let sql = self.repeatable_sql(&took, &record, &row);
        sqlx::raw_sql(AssertSqlSafe(sql))
            .execute(conn)
            .await
            .map(drop)
    }

    /// The upsert of a repeatable migration's row and its audit row, after the `took` CTE
    /// that says how long it ran.
    pub(super) fn repeatable_sql(
        &self,
        took: &str,
        record: &Record<'_>,
        row: &RepeatableRow,
    ) -> String {
        let applied_at = row.applied_at.map_or_else(
            || "now()".to_owned(),
            |at| format!("{}::timestamptz", quote_literal(&at.to_rfc3339())),
        );
        format!(
            "{took}, applied AS (
                 INSERT INTO {r} (description, checksum, applied_at, duration_ms, applied_by_program, actor)
                 SELECT {description}, {checksum}, {applied_at}, ms, {program}, {actor} FROM took
                 ON CONFLICT (description) DO UPDATE SET
                     checksum = excluded.checksum, applied_at = excluded.applied_at,
                     duration_ms = excluded.duration_ms, applied_by_role = current_user,
                     applied_by_host = host(inet_client_addr()),
                     applied_by_program = excluded.applied_by_program, actor = excluded.actor
             )
             INSERT INTO {a} (action, name, checksum, duration_ms, detail, program, actor)
             SELECT {action}, {name}, {checksum}, ms, {detail}, {who}, {actor} FROM took",
            r = self.repeatables,
            a = self.audit,
            description = quote_literal(record.name),
            checksum = quote_literal(record.checksum),
            program = quote_literal(&row.program),
            actor = optional_literal(record.who.actor.as_deref()),
            action = quote_literal(row.action),
            name = quote_literal(&format!("R__{}", record.name)),
            detail = optional_literal(row.detail.as_deref()),
            who = quote_literal(&record.who.program),
        )
    }
}

/// How a row of `repeatables` and its audit row came to be.
pub(super) struct RepeatableRow {
    action: &'static str,
    applied_at: Option<DateTime<Utc>>,
    program: String,
    detail: Option<String>,
}

impl RepeatableRow {
    /// Applied by this run, now.
    pub(super) fn applied(record: &Record<'_>) -> Self {
        Self {
            action: "apply",
            applied_at: None,
            program: record.who.program.clone(),
            detail: None,
        }
    }
}
