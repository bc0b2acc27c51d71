//! `backfill_audit`: append-only (a trigger refuses UPDATE and DELETE), one row per operator
//! action on a job — a run's start and end, pause, resume, cancel, reset — with who did it:
//! the database role and client address, the program and the `--actor` (`SLUICE_ACTOR`).
//! Rows are written in the transaction of the action they record, where there is one.

use sluice_common::ident::{Ident, quote_literal};
use sqlx::{AssertSqlSafe, PgConnection};

/// Who acts: the program and the person or pipeline that ran it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Who {
    /// `sluice-backfill 0.1.0`.
    pub program: String,
    pub actor: Option<String>,
}

/// One recorded action.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow, serde::Serialize)]
pub struct Action {
    pub at: chrono::DateTime<chrono::Utc>,
    pub action: String,
    pub detail: Option<String>,
    pub role: String,
    pub client_addr: Option<String>,
    pub program: Option<String>,
    pub actor: Option<String>,
}

/// The audit table of one schema.
#[derive(Debug, Clone)]
pub struct Audit {
    schema: Ident,
    table: String,
}

impl Audit {
    pub fn new(schema: &Ident) -> Self {
        Self {
            schema: schema.clone(),
            table: format!("{}.\"backfill_audit\"", schema.quoted()),
        }
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    /// The table and its append-only trigger (run by `state::Jobs::ensure`).
    pub fn ddl(&self) -> String {
        let schema = self.schema.quoted();
        format!(
            "CREATE TABLE IF NOT EXISTS {t} (
                 id bigserial PRIMARY KEY,
                 at timestamptz NOT NULL DEFAULT clock_timestamp(),
                 action text NOT NULL,
                 job text NOT NULL,
                 detail text,
                 role text NOT NULL DEFAULT current_user,
                 client_addr text DEFAULT host(inet_client_addr()),
                 program text,
                 actor text
             );
             CREATE OR REPLACE FUNCTION {schema}.backfill_audit_is_append_only() RETURNS trigger
                 LANGUAGE plpgsql AS $sluice$
             BEGIN
                 RAISE EXCEPTION 'the sluice backfill audit table is append-only';
             END
             $sluice$;
             DO $sluice$
             BEGIN
                 IF NOT EXISTS (SELECT 1 FROM pg_trigger WHERE tgname = 'backfill_audit_is_append_only'
                                AND tgrelid = {literal}::regclass) THEN
                     CREATE TRIGGER backfill_audit_is_append_only BEFORE UPDATE OR DELETE ON {t}
                         FOR EACH ROW EXECUTE FUNCTION {schema}.backfill_audit_is_append_only();
                 END IF;
             END
             $sluice$;",
            t = self.table,
            literal = quote_literal(&self.table),
        )
    }

    /// Appends one action on `job`.
    pub async fn record(
        &self,
        conn: &mut PgConnection,
        job: &str,
        action: &str,
        detail: &str,
        who: &Who,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO {} (action, job, detail, program, actor) VALUES ($1, $2, $3, $4, $5)",
            self.table
        )))
        .bind(action)
        .bind(job)
        .bind(detail)
        .bind(&who.program)
        .bind(&who.actor)
        .execute(conn)
        .await
        .map(drop)
    }

    /// The newest `limit` actions on `job`, newest first.
    pub async fn recent(
        &self,
        conn: &mut PgConnection,
        job: &str,
        limit: i64,
    ) -> Result<Vec<Action>, sqlx::Error> {
        sqlx::query_as(AssertSqlSafe(format!(
            "SELECT at, action, detail, role, client_addr, program, actor FROM {}
             WHERE job = $1 ORDER BY id DESC LIMIT $2",
            self.table
        )))
        .bind(job)
        .bind(limit)
        .fetch_all(conn)
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_is_named_and_quoted_in_its_schema() {
        let audit = Audit::new(&Ident::parse("\"Ops\"").unwrap());
        assert_eq!(audit.table(), "\"Ops\".\"backfill_audit\"");
        let ddl = audit.ddl();
        assert!(
            ddl.contains("CREATE TABLE IF NOT EXISTS \"Ops\".\"backfill_audit\""),
            "{ddl}"
        );
        assert!(
            ddl.contains("'\"Ops\".\"backfill_audit\"'::regclass"),
            "{ddl}"
        );
    }
}
