//! `backfill_jobs`: one row per job, the only table the engine writes besides the target.
//!
//! The cursor and counters advance in the same statement as the batch they describe
//! ([`crate::sql::JobSql::batch`]), so a crash at any instant leaves them exactly matching the
//! committed work. Control requests
//! (pause, cancel) are written here by other processes and read back by the worker with each
//! batch.

use chrono::{DateTime, Utc};
use sluice_common::ident::Ident;
use sluice_common::lock::lock_key;
use sqlx::{AssertSqlSafe, Connection, PgConnection};

/// Job states, as stored.
pub mod states {
    /// A worker is (or was, if it died) working on the job.
    pub const RUNNING: &str = "running";
    /// Stopped by a signal or limit; `run` resumes it.
    pub const STOPPED: &str = "stopped";
    pub const PAUSED: &str = "paused";
    pub const CANCELLED: &str = "cancelled";
    /// Stopped by an error (stored in `last_error`); `run` resumes it.
    pub const FAILED: &str = "failed";
    pub const COMPLETED: &str = "completed";
}

/// Requests to a running worker.
pub mod control {
    pub const RUN: &str = "run";
    pub const PAUSE: &str = "pause";
    pub const CANCEL: &str = "cancel";
}

/// A job's row.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow, serde::Serialize)]
pub struct JobRow {
    pub name: String,
    pub table_name: String,
    pub key_columns: Vec<String>,
    pub spec_checksum: String,
    pub spec_path: Option<String>,
    pub state: String,
    pub control: String,
    pub upper_bound: Option<Vec<String>>,
    pub cursor: Option<Vec<String>>,
    pub rows_updated: i64,
    pub rows_scanned: i64,
    pub batches: i64,
    pub retries: i64,
    pub batch_size: i32,
    pub estimated_rows: i64,
    pub work_seconds: f64,
    pub throttled_seconds: f64,
    pub last_error: Option<String>,
    pub verified_remaining: Option<i64>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

/// The jobs table of one schema, with its SQL prepared once.
#[derive(Debug, Clone)]
pub struct Jobs {
    schema: Ident,
    table: String,
}

const COLUMNS: &str = "name, table_name, key_columns, spec_checksum, spec_path, state, control, upper_bound, \
     cursor, rows_updated, rows_scanned, batches, retries, batch_size, estimated_rows, work_seconds, \
     throttled_seconds, last_error, verified_remaining, created_at, updated_at, finished_at";

impl Jobs {
    pub fn new(schema: Ident) -> Self {
        Self {
            table: format!("{}.\"backfill_jobs\"", schema.quoted()),
            schema,
        }
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    pub async fn exists(&self, conn: &mut PgConnection) -> Result<bool, sqlx::Error> {
        sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
            .bind(&self.table)
            .fetch_one(conn)
            .await
    }

    /// Creates the schema and table if missing; concurrent workers serialise on a
    /// transaction-level advisory lock so that only one creates them.
    pub async fn ensure(&self, conn: &mut PgConnection) -> Result<(), sqlx::Error> {
        if self.exists(conn).await? {
            return Ok(());
        }
        let mut tx = conn.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(lock_key(&format!("sluice:schema:{}", self.schema.as_str())))
            .execute(&mut *tx)
            .await?;
        sqlx::raw_sql(AssertSqlSafe(format!(
            "CREATE SCHEMA IF NOT EXISTS {schema};
             CREATE TABLE IF NOT EXISTS {table} (
                 name text PRIMARY KEY,
                 table_name text NOT NULL,
                 key_columns text[] NOT NULL,
                 spec_checksum text NOT NULL,
                 spec_path text,
                 state text NOT NULL,
                 control text NOT NULL DEFAULT 'run',
                 upper_bound text[],
                 cursor text[],
                 rows_updated bigint NOT NULL DEFAULT 0,
                 rows_scanned bigint NOT NULL DEFAULT 0,
                 batches bigint NOT NULL DEFAULT 0,
                 retries bigint NOT NULL DEFAULT 0,
                 batch_size integer NOT NULL,
                 estimated_rows bigint NOT NULL DEFAULT 0,
                 work_seconds double precision NOT NULL DEFAULT 0,
                 throttled_seconds double precision NOT NULL DEFAULT 0,
                 last_error text,
                 verified_remaining bigint,
                 created_at timestamptz NOT NULL DEFAULT now(),
                 updated_at timestamptz NOT NULL DEFAULT now(),
                 finished_at timestamptz
             );",
            schema = self.schema.quoted(),
            table = self.table
        )))
        .execute(&mut *tx)
        .await?;
        tx.commit().await
    }

    pub async fn load(
        &self,
        conn: &mut PgConnection,
        name: &str,
    ) -> Result<Option<JobRow>, sqlx::Error> {
        sqlx::query_as(AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM {} WHERE name = $1",
            self.table
        )))
        .bind(name)
        .fetch_optional(conn)
        .await
    }

    pub async fn list(&self, conn: &mut PgConnection) -> Result<Vec<JobRow>, sqlx::Error> {
        sqlx::query_as(AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM {} ORDER BY name",
            self.table
        )))
        .fetch_all(conn)
        .await
    }

    /// Records a new job with the key bounds captured at its first start.
    #[expect(clippy::too_many_arguments, reason = "one column each")]
    pub async fn register(
        &self,
        conn: &mut PgConnection,
        name: &str,
        table_name: &str,
        key_columns: &[String],
        spec_checksum: &str,
        spec_path: Option<&str>,
        upper_bound: Option<&[String]>,
        batch_size: u32,
        estimated_rows: i64,
    ) -> Result<JobRow, sqlx::Error> {
        sqlx::query_as(AssertSqlSafe(format!(
            "INSERT INTO {} (name, table_name, key_columns, spec_checksum, spec_path, state, upper_bound, batch_size, estimated_rows)
             VALUES ($1, $2, $3, $4, $5, 'running', $6, $7, $8) RETURNING {COLUMNS}",
            self.table
        )))
        .bind(name)
        .bind(table_name)
        .bind(key_columns)
        .bind(spec_checksum)
        .bind(spec_path)
        .bind(upper_bound)
        .bind(i32::try_from(batch_size).unwrap_or(i32::MAX))
        .bind(estimated_rows)
        .fetch_one(conn)
        .await
    }

    /// Sets the state (and error), e.g. `running` at start or `failed` with the error.
    pub async fn set_state(
        &self,
        conn: &mut PgConnection,
        name: &str,
        state: &str,
        last_error: Option<&str>,
    ) -> Result<(), sqlx::Error> {
        let finished = state == states::COMPLETED || state == states::CANCELLED;
        sqlx::query(AssertSqlSafe(format!(
            "UPDATE {} SET state = $2, last_error = $3, updated_at = now(),
                 finished_at = CASE WHEN $4 THEN now() ELSE NULL END
             WHERE name = $1",
            self.table
        )))
        .bind(name)
        .bind(state)
        .bind(last_error)
        .bind(finished)
        .execute(conn)
        .await?;
        Ok(())
    }

    /// Counts a retry, outside the batch transaction (which rolled back).
    pub async fn count_retry(
        &self,
        conn: &mut PgConnection,
        name: &str,
        error: &str,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(AssertSqlSafe(format!(
            "UPDATE {} SET retries = retries + 1, last_error = $2, updated_at = now() WHERE name = $1",
            self.table
        )))
        .bind(name)
        .bind(error)
        .execute(conn)
        .await?;
        Ok(())
    }

    /// Records a verification result.
    pub async fn verified(
        &self,
        conn: &mut PgConnection,
        name: &str,
        remaining: i64,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(AssertSqlSafe(format!(
            "UPDATE {} SET verified_remaining = $2, updated_at = now() WHERE name = $1",
            self.table
        )))
        .bind(name)
        .bind(remaining)
        .execute(conn)
        .await?;
        Ok(())
    }

    /// Accepts a changed spec for an unfinished job.
    pub async fn accept_spec(
        &self,
        conn: &mut PgConnection,
        name: &str,
        checksum: &str,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(AssertSqlSafe(format!(
            "UPDATE {} SET spec_checksum = $2, updated_at = now() WHERE name = $1",
            self.table
        )))
        .bind(name)
        .bind(checksum)
        .execute(conn)
        .await?;
        Ok(())
    }

    /// Starts another pass over the whole key range (after a failed verification).
    pub async fn rescan(&self, conn: &mut PgConnection, name: &str) -> Result<(), sqlx::Error> {
        sqlx::query(AssertSqlSafe(format!(
            "UPDATE {} SET cursor = NULL, verified_remaining = NULL, updated_at = now() WHERE name = $1",
            self.table
        )))
        .bind(name)
        .execute(conn)
        .await?;
        Ok(())
    }

    /// Records a control request; returns false when there is no such job. `resume` also
    /// moves a paused job back to a state `run` accepts.
    pub async fn request(
        &self,
        conn: &mut PgConnection,
        name: &str,
        request: &str,
    ) -> Result<bool, sqlx::Error> {
        let updated = sqlx::query(AssertSqlSafe(format!(
            "UPDATE {} SET control = $2, updated_at = now(),
                 state = CASE WHEN $2 = 'run' AND state = 'paused' THEN 'stopped'
                              WHEN $2 = 'cancel' AND state <> 'running' AND state <> 'completed' THEN 'cancelled'
                              ELSE state END,
                 finished_at = CASE WHEN $2 = 'cancel' AND state <> 'running' AND state <> 'completed' THEN now()
                                    ELSE finished_at END
             WHERE name = $1",
            self.table
        )))
        .bind(name)
        .bind(request)
        .execute(conn)
        .await?;
        Ok(updated.rows_affected() == 1)
    }
}
