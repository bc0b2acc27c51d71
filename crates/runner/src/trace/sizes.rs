//! The real database's table sizes, from its catalog statistics alone, and the scratch
//! server's measured scan and rewrite rates that turn sizes into estimates.

use std::collections::BTreeMap;
use std::time::Instant;

use sqlx::{Connection, PgConnection};

use super::Work;

/// A table's size in the real database, as its statistics have it (`reltuples`, `relpages`:
/// as fresh as the last VACUUM or ANALYZE).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TableSize {
    pub rows: i64,
    pub bytes: i64,
}

/// Bytes a second the scratch server scans and rewrites, measured on a table it writes for
/// the purpose: what turns a table's size into an estimate.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Rates {
    pub scan_bytes_per_second: f64,
    pub rewrite_bytes_per_second: f64,
}

impl Rates {
    /// Seconds `work` takes on a table of `bytes` (an index build reads and sorts: twice a scan).
    pub fn seconds(&self, work: &Work, bytes: i64) -> f64 {
        #[expect(clippy::cast_precision_loss, reason = "an estimate")]
        let bytes = bytes.max(0) as f64;
        match work {
            Work::Rewrite(_) => bytes / self.rewrite_bytes_per_second,
            Work::Scan(_) => bytes / self.scan_bytes_per_second,
            Work::IndexBuild(_) => 2.0 * bytes / self.scan_bytes_per_second,
        }
    }
}

/// The sizes of `relations` (`schema.table`) in the real database; those it does not have
/// (created by the traced migrations) are left out. Catalog reads only, in a read-only
/// transaction: no table is opened, so no lock is taken on any.
pub async fn real_sizes(
    conn: &mut PgConnection,
    relations: &[String],
) -> Result<BTreeMap<String, TableSize>, sqlx::Error> {
    let mut tx = conn.begin().await?;
    sqlx::raw_sql("SET TRANSACTION READ ONLY; SET LOCAL lock_timeout = '1s'")
        .execute(&mut *tx)
        .await?;
    let rows: Vec<(String, i64, i64)> = sqlx::query_as(
        "SELECT n.nspname || '.' || c.relname, greatest(c.reltuples, 0)::int8,
                c.relpages::int8 * current_setting('block_size')::int8
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname || '.' || c.relname = ANY($1)",
    )
    .bind(relations)
    .fetch_all(&mut *tx)
    .await?;
    tx.rollback().await?;
    Ok(rows
        .into_iter()
        .map(|(name, rows, bytes)| (name, TableSize { rows, bytes }))
        .collect())
}

/// Measures the scratch server: writes a table of about 16 MB, times a full scan of it and a
/// rewrite, and drops it.
pub async fn measure(conn: &mut PgConnection) -> Result<Rates, sqlx::Error> {
    sqlx::raw_sql(
        "CREATE TABLE sluice_trace_rate AS
             SELECT g::int AS id, md5(g::text) || md5((g * 7)::text) AS pad
             FROM generate_series(1, 150000) g",
    )
    .execute(&mut *conn)
    .await?;
    let bytes: i64 = sqlx::query_scalar("SELECT pg_table_size('sluice_trace_rate')")
        .fetch_one(&mut *conn)
        .await?;
    let started = Instant::now();
    sqlx::raw_sql("SELECT count(*) FROM sluice_trace_rate WHERE pad <> ''")
        .execute(&mut *conn)
        .await?;
    let scan = started.elapsed().as_secs_f64().max(1e-3);
    let started = Instant::now();
    sqlx::raw_sql("ALTER TABLE sluice_trace_rate ALTER COLUMN id TYPE bigint")
        .execute(&mut *conn)
        .await?;
    let rewrite = started.elapsed().as_secs_f64().max(1e-3);
    sqlx::raw_sql("DROP TABLE sluice_trace_rate")
        .execute(&mut *conn)
        .await?;
    #[expect(clippy::cast_precision_loss, reason = "a rate")]
    let bytes = bytes as f64;
    Ok(Rates {
        scan_bytes_per_second: bytes / scan,
        rewrite_bytes_per_second: bytes / rewrite,
    })
}
