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

use crate::audit::Audit;
use crate::ranges::Ranges;

pub use sluice_common::backfill_gate::{Control, JobState};

/// A job's row.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow, serde::Serialize)]
pub struct JobRow {
    pub name: String,
    /// What its batches do: `update`, `delete` or `copy`.
    pub action: String,
    pub table_name: String,
    pub key_columns: Vec<String>,
    pub spec_checksum: String,
    pub spec_path: Option<String>,
    #[sqlx(try_from = "String")]
    pub state: JobState,
    #[sqlx(try_from = "String")]
    pub control: Control,
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
    /// Key ranges of the job, and how many are done.
    pub ranges: i64,
    pub ranges_done: i64,
    /// Seconds throttled by each load signal (blocked_sessions, lock_queue, replication_lag,
    /// throttle_query).
    pub throttled_by: serde_json::Value,
    /// The last time a load signal throttled the job, and why.
    pub last_throttle: Option<String>,
    /// The pace a process running the job reported last ([`crate::pace::Pace`]), and when.
    pub pace: Option<serde_json::Value>,
    pub pace_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

/// The jobs table of one schema, with its SQL prepared once.
#[derive(Debug, Clone)]
pub struct Jobs {
    schema: Ident,
    table: String,
    ranges: Ranges,
    audit: Audit,
    /// `SELECT <a JobRow> FROM` the job joined with its ranges' totals.
    select: String,
}

impl Jobs {
    pub fn new(schema: Ident) -> Self {
        let table = format!("{}.\"backfill_jobs\"", schema.quoted());
        let ranges = Ranges::new(&schema);
        // Batches write their counts to their range's row only (workers never contend on the
        // job's row); a job's totals are its own (from before ranges existed) plus its ranges'.
        let select = format!(
            "SELECT j.name, j.action, j.table_name, j.key_columns, j.spec_checksum, j.spec_path, j.state, j.control,
                    j.upper_bound, j.cursor,
                    j.rows_updated + coalesce(r.rows_updated, 0) AS rows_updated,
                    j.rows_scanned + coalesce(r.rows_scanned, 0) AS rows_scanned,
                    j.batches + coalesce(r.batches, 0) AS batches,
                    j.retries, j.batch_size, j.estimated_rows,
                    j.work_seconds + coalesce(r.work_seconds, 0) AS work_seconds,
                    j.throttled_seconds + coalesce(r.throttled_seconds, 0) AS throttled_seconds,
                    j.last_error,
                    CASE WHEN r.ranges > 0 AND r.unverified = 0 THEN r.remaining ELSE j.verified_remaining END
                        AS verified_remaining,
                    coalesce(r.ranges, 0) AS ranges, coalesce(r.ranges_done, 0) AS ranges_done,
                    j.throttled_by, j.last_throttle, j.pace, j.pace_at, j.created_at, j.updated_at, j.finished_at
             FROM {table} j LEFT JOIN LATERAL (
                 SELECT sum(rows_updated)::bigint AS rows_updated, sum(rows_scanned)::bigint AS rows_scanned,
                        sum(batches)::bigint AS batches, sum(work_seconds) AS work_seconds,
                        sum(throttled_seconds) AS throttled_seconds, count(*) AS ranges,
                        count(*) FILTER (WHERE state = 'done') AS ranges_done,
                        count(*) FILTER (WHERE verified_remaining IS NULL) AS unverified,
                        sum(verified_remaining)::bigint AS remaining
                 FROM {} WHERE job = j.name
             ) r ON true",
            ranges.table()
        );
        Self {
            table,
            ranges,
            select,
            audit: Audit::new(&schema),
            schema,
        }
    }

    pub fn ranges(&self) -> &Ranges {
        &self.ranges
    }

    /// The ranges of job `$1` a worker holds a live lease on: a worker is at work on it.
    fn live_lease(&self) -> String {
        format!(
            "SELECT FROM {} WHERE job = $1 AND state = 'pending' AND owner IS NOT NULL \
             AND lease_until > now()",
            self.ranges.table()
        )
    }

    pub fn audit(&self) -> &Audit {
        &self.audit
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    /// Whether the tables exist in their current shape (the ranges table is the newest part;
    /// a database last touched by an older sluice gets it at the next `run`).
    pub async fn exists(&self, conn: &mut PgConnection) -> Result<bool, sqlx::Error> {
        sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
            .bind(self.ranges.table())
            .fetch_one(conn)
            .await
    }

    /// Whether the tables are as this version uses them (the newest parts: `action`, the
    /// audit table).
    async fn is_current(&self, conn: &mut PgConnection) -> Result<bool, sqlx::Error> {
        sqlx::query_scalar(
            "SELECT to_regclass($1) IS NOT NULL AND to_regclass($3) IS NOT NULL AND EXISTS (
                 SELECT FROM pg_attribute WHERE attrelid = to_regclass($2) AND attname = 'action')",
        )
        .bind(self.ranges.table())
        .bind(&self.table)
        .bind(self.audit.table())
        .fetch_one(conn)
        .await
    }

    /// Creates the schema and tables if missing (and adds what later versions added);
    /// concurrent workers serialise on a transaction-level advisory lock so that only one
    /// creates them.
    pub async fn ensure(&self, conn: &mut PgConnection) -> Result<(), sqlx::Error> {
        if self.is_current(conn).await? {
            return Ok(());
        }
        let mut tx = conn.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(lock_key(&format!("sluice:schema:{}", self.schema.as_str())))
            .execute(&mut *tx)
            .await?;
        // CREATE SCHEMA IF NOT EXISTS needs CREATE on the database even when the schema is
        // there: a DBA may create it for a role that has no such right (least privilege).
        let schema_exists: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT FROM pg_namespace WHERE nspname = $1)")
                .bind(self.schema.as_str())
                .fetch_one(&mut *tx)
                .await?;
        let create_schema = if schema_exists {
            String::new()
        } else {
            format!("CREATE SCHEMA IF NOT EXISTS {};", self.schema.quoted())
        };
        sqlx::raw_sql(AssertSqlSafe(format!(
            "{create_schema}
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
             );
             ALTER TABLE {table} ADD COLUMN IF NOT EXISTS throttled_by jsonb NOT NULL DEFAULT '{{}}';
             ALTER TABLE {table} ADD COLUMN IF NOT EXISTS last_throttle text;
             ALTER TABLE {table} ADD COLUMN IF NOT EXISTS rate_next timestamptz;
             ALTER TABLE {table} ADD COLUMN IF NOT EXISTS pace jsonb;
             ALTER TABLE {table} ADD COLUMN IF NOT EXISTS pace_at timestamptz;
             ALTER TABLE {table} ADD COLUMN IF NOT EXISTS action text NOT NULL DEFAULT 'update';
             {ranges}
             {audit}",
            table = self.table,
            ranges = self.ranges.ddl(&self.table),
            audit = self.audit.ddl()
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
        sqlx::query_as(AssertSqlSafe(format!("{} WHERE j.name = $1", self.select)))
            .bind(name)
            .fetch_optional(conn)
            .await
    }

    pub async fn list(&self, conn: &mut PgConnection) -> Result<Vec<JobRow>, sqlx::Error> {
        sqlx::query_as(AssertSqlSafe(format!("{} ORDER BY j.name", self.select)))
            .fetch_all(conn)
            .await
    }

    /// Records a new job with the key bounds captured at its first start; false when another
    /// worker registered it first (its transaction is waited for).
    pub async fn register(
        &self,
        conn: &mut PgConnection,
        job: &NewJob<'_>,
    ) -> Result<bool, sqlx::Error> {
        let inserted = sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO {} (name, table_name, key_columns, spec_checksum, spec_path, state, upper_bound, batch_size, estimated_rows, action)
             VALUES ($1, $2, $3, $4, $5, 'running', $6, $7, $8, $9) ON CONFLICT (name) DO NOTHING",
            self.table
        )))
        .bind(job.name)
        .bind(job.table_name)
        .bind(job.key_columns)
        .bind(job.spec_checksum)
        .bind(job.spec_path)
        .bind(job.upper_bound)
        .bind(i32::try_from(job.batch_size).unwrap_or(i32::MAX))
        .bind(job.estimated_rows)
        .bind(job.action)
        .execute(conn)
        .await?;
        Ok(inserted.rows_affected() == 1)
    }

    /// Marks the job completed when every range is done and verified with nothing left;
    /// true when it is completed (by this call or an earlier one).
    pub async fn complete_if_done(
        &self,
        conn: &mut PgConnection,
        name: &str,
    ) -> Result<bool, sqlx::Error> {
        sqlx::query(AssertSqlSafe(format!(
            "UPDATE {j} SET state = 'completed', finished_at = now(), updated_at = now(), last_error = NULL,
                 verified_remaining = 0
             WHERE name = $1 AND state <> 'completed' AND NOT EXISTS (
                 SELECT FROM {r} WHERE job = $1 AND (state <> 'done' OR verified_remaining IS DISTINCT FROM 0))",
            j = self.table,
            r = self.ranges.table()
        )))
        .bind(name)
        .execute(&mut *conn)
        .await?;
        let state: Option<String> = sqlx::query_scalar(AssertSqlSafe(format!(
            "SELECT state FROM {} WHERE name = $1",
            self.table
        )))
        .bind(name)
        .fetch_optional(conn)
        .await?;
        Ok(state.as_deref() == Some(JobState::Completed.as_str()))
    }

    /// Sets the state of a running job unless another worker still holds a live lease on one
    /// of its ranges (a worker leaving early must not mark a job others work on as stopped).
    pub async fn set_state_if_idle(
        &self,
        conn: &mut PgConnection,
        name: &str,
        state: JobState,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(AssertSqlSafe(format!(
            "UPDATE {j} SET state = $2, updated_at = now(),
                 finished_at = CASE WHEN $2 = 'cancelled' THEN now() ELSE finished_at END
             WHERE name = $1 AND state = 'running' AND NOT EXISTS ({live})",
            j = self.table,
            live = self.live_lease()
        )))
        .bind(name)
        .bind(state.as_str())
        .execute(conn)
        .await?;
        Ok(())
    }

    /// Records why a run failed; the job becomes `failed` unless another worker still holds
    /// a live lease (it goes on, and the error stays visible in status).
    pub async fn fail_if_idle(
        &self,
        conn: &mut PgConnection,
        name: &str,
        error: &str,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(AssertSqlSafe(format!(
            "UPDATE {j} SET last_error = $2, updated_at = now(),
                 state = CASE WHEN state = 'running' AND NOT EXISTS ({live}) THEN 'failed'
                              ELSE state END
             WHERE name = $1",
            j = self.table,
            live = self.live_lease()
        )))
        .bind(name)
        .bind(error)
        .execute(conn)
        .await?;
        Ok(())
    }

    /// Reserves `rows` of the job's `rate` rows per second and returns how long to wait before
    /// writing them. The limiter is the job's row (a "theoretical arrival time", `rate_next`),
    /// so every process and worker of the job draws on one budget: processes that come and go,
    /// restart or start at once never exceed it, not even in their first second.
    pub async fn reserve_rows(
        &self,
        conn: &mut PgConnection,
        name: &str,
        rows: u32,
        rate: u32,
    ) -> Result<std::time::Duration, sqlx::Error> {
        let seconds = f64::from(rows.max(1)) / f64::from(rate.max(1));
        let wait: f64 = sqlx::query_scalar(AssertSqlSafe(format!(
            "WITH now AS (SELECT clock_timestamp() AS t)
             UPDATE {} j SET rate_next = greatest(j.rate_next, now.t) + make_interval(secs => $2)
             FROM now WHERE j.name = $1
             RETURNING greatest(0, extract(epoch FROM j.rate_next - now.t) - $2)::float8",
            self.table
        )))
        .bind(name)
        .bind(seconds)
        .fetch_optional(conn)
        .await?
        .unwrap_or(0.0);
        Ok(std::time::Duration::from_secs_f64(wait.clamp(0.0, 3600.0)))
    }

    /// Adds seconds held back by each reason (`pace`, `rate_limit`, ...) to the job's
    /// `throttled_by`.
    pub async fn add_held(
        &self,
        conn: &mut PgConnection,
        name: &str,
        seconds: &std::collections::BTreeMap<&'static str, f64>,
    ) -> Result<(), sqlx::Error> {
        let added = serde_json::to_value(seconds).unwrap_or_default();
        sqlx::query(AssertSqlSafe(format!(
            "UPDATE {} SET throttled_by = coalesce((
                 SELECT jsonb_object_agg(k, coalesce((throttled_by ->> k)::float8, 0) + coalesce(($2 ->> k)::float8, 0))
                 FROM jsonb_object_keys(throttled_by || $2) AS k), '{{}}')
             WHERE name = $1",
            self.table
        )))
        .bind(name)
        .bind(added)
        .execute(conn)
        .await
        .map(|_| ())
    }

    /// Records the pace a process follows now, for `status`.
    pub async fn record_pace(
        &self,
        conn: &mut PgConnection,
        name: &str,
        pace: &crate::pace::Pace,
    ) -> Result<(), sqlx::Error> {
        let mut value = serde_json::to_value(pace).unwrap_or_default();
        if let Some(object) = value.as_object_mut() {
            object.insert("describe".to_owned(), pace.describe().into());
        }
        sqlx::query(AssertSqlSafe(format!(
            "UPDATE {} SET pace = $2, pace_at = now() WHERE name = $1",
            self.table
        )))
        .bind(name)
        .bind(value)
        .execute(conn)
        .await
        .map(|_| ())
    }

    /// Records that a load signal holds the job now (its time is added when the wait ends), so
    /// `status` says why a job that has not committed a batch for a while is waiting.
    pub async fn record_throttle_start(
        &self,
        conn: &mut PgConnection,
        name: &str,
        reason: &str,
        detail: &str,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(AssertSqlSafe(format!(
            "UPDATE {} SET last_throttle = to_char(now(), 'YYYY-MM-DD HH24:MI:SSOF') || ' ' || $2 || ': ' || $3,
                 updated_at = now()
             WHERE name = $1",
            self.table
        )))
        .bind(name)
        .bind(reason)
        .bind(detail)
        .execute(conn)
        .await
        .map(|_| ())
    }

    /// Records time a load signal throttled the job.
    pub async fn record_throttle(
        &self,
        conn: &mut PgConnection,
        name: &str,
        reason: &str,
        seconds: f64,
        detail: &str,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(AssertSqlSafe(format!(
            "UPDATE {} SET throttled_by = throttled_by || jsonb_build_object($2::text,
                     coalesce((throttled_by ->> $2)::float8, 0) + $3),
                 last_throttle = to_char(now(), 'YYYY-MM-DD HH24:MI:SSOF') || ' ' || $2 || ': ' || $4,
                 updated_at = now()
             WHERE name = $1",
            self.table
        )))
        .bind(name)
        .bind(reason)
        .bind(seconds)
        .bind(detail)
        .execute(conn)
        .await?;
        Ok(())
    }

    /// Sets the state (and error), e.g. `running` at start or `failed` with the error.
    pub async fn set_state(
        &self,
        conn: &mut PgConnection,
        name: &str,
        state: JobState,
        last_error: Option<&str>,
    ) -> Result<(), sqlx::Error> {
        let finished = matches!(state, JobState::Completed | JobState::Cancelled);
        sqlx::query(AssertSqlSafe(format!(
            "UPDATE {} SET state = $2, last_error = $3, updated_at = now(),
                 finished_at = CASE WHEN $4 THEN now() ELSE NULL END
             WHERE name = $1",
            self.table
        )))
        .bind(name)
        .bind(state.as_str())
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

    /// Starts another pass over the whole key range (after a failed verification): the ranges
    /// go, their counts stay in the job's totals, and the next start splits the key space again.
    pub async fn rescan(&self, conn: &mut PgConnection, name: &str) -> Result<(), sqlx::Error> {
        sqlx::query(AssertSqlSafe(format!(
            "WITH gone AS (DELETE FROM {r} WHERE job = $1
                 RETURNING rows_updated, rows_scanned, batches, work_seconds, throttled_seconds)
             UPDATE {j} SET cursor = NULL, verified_remaining = NULL, updated_at = now(),
                 rows_updated = rows_updated + coalesce((SELECT sum(rows_updated) FROM gone), 0),
                 rows_scanned = rows_scanned + coalesce((SELECT sum(rows_scanned) FROM gone), 0),
                 batches = batches + coalesce((SELECT sum(batches) FROM gone), 0),
                 work_seconds = work_seconds + coalesce((SELECT sum(work_seconds) FROM gone), 0),
                 throttled_seconds = throttled_seconds + coalesce((SELECT sum(throttled_seconds) FROM gone), 0)
             WHERE name = $1",
            r = self.ranges.table(),
            j = self.table
        )))
        .bind(name)
        .execute(conn)
        .await?;
        Ok(())
    }

    /// The job's state and pending request, its row locked until the transaction on `conn`
    /// ends; `None` when there is no such job.
    pub async fn lock_control(
        &self,
        conn: &mut PgConnection,
        name: &str,
    ) -> Result<Option<(JobState, Control)>, sqlx::Error> {
        let row: Option<(String, String)> = sqlx::query_as(AssertSqlSafe(format!(
            "SELECT state, control FROM {} WHERE name = $1 FOR UPDATE",
            self.table
        )))
        .bind(name)
        .fetch_optional(conn)
        .await?;
        row.map(|(state, control)| Ok((state.parse()?, control.parse()?)))
            .transpose()
            .map_err(|e: String| sqlx::Error::Decode(e.into()))
    }

    /// Forgets the job (its row, and its ranges with it) so that the next `run` starts from
    /// the beginning; false while a worker is at work on it (a live lease, or a running job
    /// whose ranges moved within a lease's length). Call in a
    /// transaction that locked the job's row ([`Jobs::lock_control`]).
    pub async fn forget(&self, conn: &mut PgConnection, name: &str) -> Result<bool, sqlx::Error> {
        // A worker between two ranges holds no lease for a moment: a running job whose ranges
        // moved within a lease's length counts as worked on too.
        let busy: bool = sqlx::query_scalar(AssertSqlSafe(format!(
            "SELECT EXISTS ({live}) OR EXISTS (
                 SELECT FROM {j} j JOIN {r} r ON r.job = j.name
                 WHERE j.name = $1 AND j.state = 'running'
                   AND r.updated_at > now() - make_interval(secs => $2))",
            live = self.live_lease(),
            j = self.table,
            r = self.ranges.table()
        )))
        .bind(name)
        .bind(crate::job::defaults::LEASE.as_secs_f64())
        .fetch_one(&mut *conn)
        .await?;
        if busy {
            return Ok(false);
        }
        sqlx::query(AssertSqlSafe(format!(
            "DELETE FROM {} WHERE name = $1",
            self.table
        )))
        .bind(name)
        .execute(conn)
        .await?;
        Ok(true)
    }

    /// Records an operator's request (see [`crate::lifecycle::decide`]): the control value,
    /// and the state when no worker is there to move it.
    pub async fn record_request(
        &self,
        conn: &mut PgConnection,
        name: &str,
        control: Control,
        state: Option<JobState>,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(AssertSqlSafe(format!(
            "UPDATE {} SET control = $2, state = coalesce($3, state), updated_at = now(),
                 finished_at = CASE WHEN $3 = 'cancelled' THEN now() ELSE finished_at END
             WHERE name = $1",
            self.table
        )))
        .bind(name)
        .bind(control.as_str())
        .bind(state.map(JobState::as_str))
        .execute(conn)
        .await?;
        Ok(())
    }
}

/// A job's row as its first run registers it: what it is, where its keys end, and how big
/// it looks.
#[derive(Debug, Clone, Copy)]
pub struct NewJob<'a> {
    pub name: &'a str,
    /// `update`, `delete` or `copy`.
    pub action: &'a str,
    pub table_name: &'a str,
    pub key_columns: &'a [String],
    pub spec_checksum: &'a str,
    pub spec_path: Option<&'a str>,
    /// The greatest key when it started; `None` for an empty table.
    pub upper_bound: Option<&'a [String]>,
    pub batch_size: u32,
    pub estimated_rows: i64,
}
