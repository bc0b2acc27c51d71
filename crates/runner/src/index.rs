//! INVALID indexes left by a failed `CREATE INDEX CONCURRENTLY`.
//!
//! When a concurrent build fails or its session dies, PostgreSQL keeps the half-built index,
//! marked INVALID. Building it again under the same name then fails ("already exists") or,
//! with `IF NOT EXISTS`, silently keeps the useless index. So before each concurrent build,
//! an INVALID index of that name is dropped.

use sqlx::{AssertSqlSafe, PgConnection};

use crate::script::ConcurrentIndex;

/// Drops the INVALID index `spec` names, if there is one; returns its qualified name.
pub async fn drop_invalid_index(
    conn: &mut PgConnection,
    spec: &ConcurrentIndex,
) -> Result<Option<String>, sqlx::Error> {
    let found: Option<String> = sqlx::query_scalar(
        "SELECT format('%I.%I', n.nspname, c.relname) \
         FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid \
         JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE NOT i.indisvalid AND c.relname = $1 \
           AND (CASE WHEN $2::text IS NULL THEN pg_table_is_visible(c.oid) ELSE n.nspname = $2 END) \
         LIMIT 1",
    )
    .bind(spec.name.as_str())
    .bind(spec.schema.as_ref().map(|s| s.as_str()))
    .fetch_optional(&mut *conn)
    .await?;
    let Some(qualified) = found else {
        return Ok(None);
    };
    // `format('%I.%I')` above quoted both parts.
    sqlx::raw_sql(AssertSqlSafe(format!(
        "DROP INDEX CONCURRENTLY IF EXISTS {qualified}"
    )))
    .execute(conn)
    .await?;
    Ok(Some(qualified))
}
