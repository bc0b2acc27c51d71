//! `repeatables`: the newest application of each of Flyway's repeatable migrations, keyed by
//! description. Each application is also an `apply` row of the audit table, named `R__...`
//! and without a version.

use chrono::{DateTime, Utc};
use sqlx::{AssertSqlSafe, PgConnection};

use super::{History, Record};

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

    /// Whether the table exists: a schema sluice created before it had repeatable migrations
    /// lacks it until the next locked run.
    pub(super) async fn repeatables_exist(
        &self,
        conn: &mut PgConnection,
    ) -> Result<bool, sqlx::Error> {
        sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
            .bind(&self.repeatables)
            .fetch_one(conn)
            .await
    }

    /// Every recorded repeatable migration, by description (none when the table does not
    /// exist yet: `status` and dry runs create nothing).
    pub async fn repeatables(
        &self,
        conn: &mut PgConnection,
    ) -> Result<Vec<AppliedRepeatable>, sqlx::Error> {
        if !self.repeatables_exist(conn).await? {
            return Ok(Vec::new());
        }
        sqlx::query_as(AssertSqlSafe(format!(
            "SELECT description, checksum, applied_at, duration_ms, applied_by_role, \
                    applied_by_program, actor \
             FROM {} ORDER BY description",
            self.repeatables
        )))
        .fetch_all(conn)
        .await
    }

    /// Records an application of a repeatable migration (`record.name` is its description)
    /// and its audit row. Run it in the migration's transaction so that both commit together.
    pub async fn record_repeatable(
        &self,
        conn: &mut PgConnection,
        record: Record<'_>,
    ) -> Result<(), sqlx::Error> {
        let row = Row {
            action: "apply",
            applied_at: None,
            program: record.who.program.clone(),
            detail: None,
        };
        self.upsert_repeatable(conn, record, row).await
    }

    /// Records a repeatable migration another tool applied at `applied_at`, as `import` does.
    pub async fn record_imported_repeatable(
        &self,
        conn: &mut PgConnection,
        record: Record<'_>,
        applied_at: Option<DateTime<Utc>>,
        tool: &str,
    ) -> Result<(), sqlx::Error> {
        let row = Row {
            action: "import",
            applied_at,
            program: format!("{tool} (imported)"),
            detail: Some(format!("imported from {tool}'s history")),
        };
        self.upsert_repeatable(conn, record, row).await
    }

    async fn upsert_repeatable(
        &self,
        conn: &mut PgConnection,
        record: Record<'_>,
        row: Row,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(AssertSqlSafe(format!(
            "WITH applied AS (
                 INSERT INTO {r} (description, checksum, applied_at, duration_ms, applied_by_program, actor)
                 VALUES ($1, $2, coalesce($3, now()), $4, $5, $6)
                 ON CONFLICT (description) DO UPDATE SET
                     checksum = excluded.checksum, applied_at = excluded.applied_at,
                     duration_ms = excluded.duration_ms, applied_by_role = current_user,
                     applied_by_host = host(inet_client_addr()),
                     applied_by_program = excluded.applied_by_program, actor = excluded.actor
             )
             INSERT INTO {a} (action, name, checksum, duration_ms, detail, program, actor)
             VALUES ($7, 'R__' || $1, $2, $4, $8, $9, $6)",
            r = self.repeatables,
            a = self.audit
        )))
        .bind(record.name)
        .bind(record.checksum)
        .bind(row.applied_at)
        .bind(record.duration_ms)
        .bind(&row.program)
        .bind(&record.who.actor)
        .bind(row.action)
        .bind(&row.detail)
        .bind(&record.who.program)
        .execute(conn)
        .await?;
        Ok(())
    }
}

/// How a row of `repeatables` and its audit row came to be.
struct Row {
    action: &'static str,
    applied_at: Option<DateTime<Utc>>,
    program: String,
    detail: Option<String>,
}
