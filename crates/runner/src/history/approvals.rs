//! Approvals in the audit table: `approve` rows, one per migration and checksum approved,
//! append-only like every audit row (a new approval of an edited file is a new row; the old
//! one stays as the record of what was approved then).

use chrono::{DateTime, Utc};
use sluice_common::ident::quote_literal;
use sqlx::postgres::PgRow;
use sqlx::{AssertSqlSafe, PgConnection, Row};

use super::{Action, History, Who};
use crate::approval::Approval;
use crate::source::Migration;

impl History {
    /// The query reading every approval, oldest first (one of [`History::read`]'s).
    pub(super) fn approvals_sql(&self) -> String {
        format!(
            "SELECT version, checksum, at, coalesce(actor, role), coalesce(detail, '') \
             FROM {} WHERE action = {} AND version IS NOT NULL ORDER BY id",
            self.audit,
            quote_literal(Action::Approve.as_str())
        )
    }

    /// Records an approval of each of `migrations` as its file is now, in one statement: all
    /// or none.
    pub async fn record_approvals(
        &self,
        conn: &mut PgConnection,
        migrations: &[&Migration],
        reason: &str,
        who: &Who,
    ) -> Result<(), sqlx::Error> {
        let versions: Vec<i64> = migrations.iter().map(|m| m.version).collect();
        let names: Vec<String> = migrations.iter().map(|m| m.name.clone()).collect();
        let checksums: Vec<String> = migrations.iter().map(|m| m.up.checksum.clone()).collect();
        sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO {} (action, version, name, checksum, detail, program, actor) \
             SELECT $1, v, n, c, $5, $6, $7 FROM unnest($2::bigint[], $3::text[], $4::text[]) \
             WITH ORDINALITY AS t(v, n, c, i) ORDER BY i",
            self.audit
        )))
        .bind(Action::Approve.as_str())
        .bind(versions)
        .bind(names)
        .bind(checksums)
        .bind(reason)
        .bind(&who.program)
        .bind(&who.actor)
        .execute(conn)
        .await?;
        Ok(())
    }
}

/// The rows of [`History::approvals_sql`].
pub(super) fn decode(rows: Option<&Vec<PgRow>>) -> Result<Vec<Approval>, sqlx::Error> {
    rows.into_iter()
        .flatten()
        .map(|row| {
            Ok(Approval {
                version: row.try_get(0)?,
                checksum: row.try_get(1)?,
                at: row.try_get::<DateTime<Utc>, _>(2)?,
                by: row.try_get(3)?,
                reason: row.try_get(4)?,
            })
        })
        .collect()
}
