//! `backfill_ranges`: a job's key space split into ranges that workers claim.
//!
//! A worker claims a pending range with `FOR UPDATE SKIP LOCKED` and a lease (owner, expiry).
//! Each batch locks its range's row, checks that the lease is still its own, and advances the
//! range's cursor in the batch's transaction ([`crate::sql::JobSql`]). A worker that dies loses
//! its lease when it expires, and the next claim continues the range from its last committed
//! key. Safety comes from the row lock (a batch and a takeover never overlap); leases only
//! decide when a silent worker is presumed dead.

use std::time::Duration;

use sluice_common::ident::Ident;
use sluice_common::lock::lock_key;
use sqlx::{AssertSqlSafe, Connection, PgConnection};

use crate::keyspace::KeySpace;

/// Whether a worker still owns its range after renewing its lease (or waiting): another
/// worker takes a range whose lease ran out, and the first then leaves it without another
/// batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeLease {
    Kept,
    Lost,
}

/// A range a worker holds the lease of.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Claim {
    pub range_no: i32,
    /// Exclusive; `None` from the smallest key.
    pub lower: Option<Vec<String>>,
    /// Inclusive.
    pub upper: Vec<String>,
    /// The last key done; `None` when nothing is done yet.
    pub cursor: Option<Vec<String>>,
    /// Whose expired lease this claim took over.
    pub previous_owner: Option<String>,
}

impl Claim {
    /// Where the next batch starts (exclusive).
    pub fn resume_after(&self) -> Option<Vec<String>> {
        self.cursor.clone().or_else(|| self.lower.clone())
    }
}

/// A range another worker is busy with.
#[derive(sqlx::FromRow)]
struct Busy {
    range_no: i32,
    owner: String,
    upper: Vec<String>,
    /// The last key done, or the range's lower bound.
    done_to: Option<Vec<String>>,
}

/// The upper half of a busy worker's range, now a range of its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stolen {
    pub claim: Claim,
    /// The range it was split from, and that range's owner.
    pub from_range: i32,
    pub from_owner: String,
}

/// A live lease, for status.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow, serde::Serialize)]
pub struct Lease {
    pub range_no: i32,
    pub owner: String,
    pub lease_seconds_left: f64,
}

/// The ranges of one job, summed up.
#[derive(Debug, Clone, Default, PartialEq, sqlx::FromRow, serde::Serialize)]
pub struct Summary {
    pub ranges: i64,
    pub ranges_done: i64,
    /// Ranges whose rows were checked after they were done and still match `where`.
    pub rows_unverified: i64,
    /// Pending ranges nobody holds a live lease on.
    pub ranges_free: i64,
    /// Seconds until the earliest live lease on a pending range expires.
    pub next_expiry_seconds: Option<f64>,
}

/// The ranges table of one schema.
#[derive(Debug, Clone)]
pub struct Ranges {
    table: String,
}

impl Ranges {
    pub fn new(schema: &Ident) -> Self {
        Self {
            table: format!("{}.\"backfill_ranges\"", schema.quoted()),
        }
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    /// The table's DDL (run by [`crate::state::Jobs::ensure`]).
    pub fn ddl(&self, jobs_table: &str) -> String {
        format!(
            "CREATE TABLE IF NOT EXISTS {t} (
                 job text NOT NULL REFERENCES {jobs_table} (name) ON DELETE CASCADE,
                 range_no integer NOT NULL,
                 lower text[],
                 upper text[] NOT NULL,
                 cursor text[],
                 state text NOT NULL DEFAULT 'pending',
                 owner text,
                 lease_until timestamptz,
                 claims integer NOT NULL DEFAULT 0,
                 rows_updated bigint NOT NULL DEFAULT 0,
                 rows_scanned bigint NOT NULL DEFAULT 0,
                 batches bigint NOT NULL DEFAULT 0,
                 work_seconds double precision NOT NULL DEFAULT 0,
                 throttled_seconds double precision NOT NULL DEFAULT 0,
                 verified_remaining bigint,
                 updated_at timestamptz NOT NULL DEFAULT now(),
                 PRIMARY KEY (job, range_no)
             );",
            t = self.table
        )
    }

    /// Inserts the ranges of `job`: (first, s1], (s1, s2], ..., (sk, upper], where `first`
    /// is `None` (from the smallest key) for a new job.
    pub async fn create(
        &self,
        conn: &mut PgConnection,
        job: &str,
        first: Option<&[String]>,
        splits: &[Vec<String>],
        upper: &[String],
    ) -> Result<(), sqlx::Error> {
        let lowers = std::iter::once(first).chain(splits.iter().map(Vec::as_slice).map(Some));
        let uppers = splits
            .iter()
            .map(Vec::as_slice)
            .chain(std::iter::once(upper));
        for (range_no, (lower, upper)) in lowers.zip(uppers).enumerate() {
            sqlx::query(AssertSqlSafe(format!(
                "INSERT INTO {} (job, range_no, lower, upper) VALUES ($1, $2, $3, $4)",
                self.table
            )))
            .bind(job)
            .bind(i32::try_from(range_no).unwrap_or(i32::MAX))
            .bind(lower)
            .bind(upper)
            .execute(&mut *conn)
            .await?;
        }
        Ok(())
    }

    pub async fn count(&self, conn: &mut PgConnection, job: &str) -> Result<i64, sqlx::Error> {
        sqlx::query_scalar(AssertSqlSafe(format!(
            "SELECT count(*) FROM {} WHERE job = $1",
            self.table
        )))
        .bind(job)
        .fetch_one(conn)
        .await
    }

    /// Claims the first pending range nobody holds a live lease on, skipping rows another
    /// worker is claiming or batching right now.
    pub async fn claim(
        &self,
        conn: &mut PgConnection,
        job: &str,
        owner: &str,
        lease: Duration,
    ) -> Result<Option<Claim>, sqlx::Error> {
        sqlx::query_as(AssertSqlSafe(format!(
            "WITH free AS (
                 SELECT job, range_no, owner FROM {t}
                 WHERE job = $1 AND state = 'pending' AND (owner IS NULL OR lease_until < now())
                 ORDER BY range_no LIMIT 1 FOR UPDATE SKIP LOCKED
             )
             UPDATE {t} r SET owner = $2, lease_until = now() + $3 * interval '1 millisecond',
                 claims = claims + 1, updated_at = now()
             FROM free WHERE r.job = free.job AND r.range_no = free.range_no
             RETURNING r.range_no, r.lower, r.upper, r.cursor, free.owner AS previous_owner",
            t = self.table
        )))
        .bind(job)
        .bind(owner)
        .bind(millis(lease))
        .fetch_optional(conn)
        .await
    }

    /// Extends a lease; `Lost` when it is no longer `owner`'s.
    pub async fn renew(
        &self,
        conn: &mut PgConnection,
        job: &str,
        range_no: i32,
        owner: &str,
        lease: Duration,
    ) -> Result<RangeLease, sqlx::Error> {
        let renewed = sqlx::query(AssertSqlSafe(format!(
            "UPDATE {} SET lease_until = now() + $4 * interval '1 millisecond'
             WHERE job = $1 AND range_no = $2 AND owner = $3",
            self.table
        )))
        .bind(job)
        .bind(range_no)
        .bind(owner)
        .bind(millis(lease))
        .execute(conn)
        .await?;
        Ok(if renewed.rows_affected() == 1 {
            RangeLease::Kept
        } else {
            RangeLease::Lost
        })
    }

    /// Gives up `owner`'s leases so that the next worker need not wait for them to expire;
    /// a done range's too (a worker that paused right after its range's last batch).
    pub async fn release(
        &self,
        conn: &mut PgConnection,
        job: &str,
        owner: &str,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(AssertSqlSafe(format!(
            "UPDATE {} SET owner = NULL, lease_until = NULL, updated_at = now()
             WHERE job = $1 AND owner = $2",
            self.table
        )))
        .bind(job)
        .bind(owner)
        .execute(conn)
        .await?;
        Ok(())
    }

    /// Records a done range's verification.
    pub async fn verified(
        &self,
        conn: &mut PgConnection,
        job: &str,
        range_no: i32,
        remaining: i64,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(AssertSqlSafe(format!(
            "UPDATE {} SET verified_remaining = $3, owner = NULL, lease_until = NULL, updated_at = now()
             WHERE job = $1 AND range_no = $2",
            self.table
        )))
        .bind(job)
        .bind(range_no)
        .bind(remaining)
        .execute(conn)
        .await?;
        Ok(())
    }

    /// Done ranges not verified yet (their worker died between the last batch and the check).
    pub async fn unverified(
        &self,
        conn: &mut PgConnection,
        job: &str,
    ) -> Result<Vec<Claim>, sqlx::Error> {
        sqlx::query_as(AssertSqlSafe(format!(
            "SELECT range_no, lower, upper, cursor, NULL::text AS previous_owner FROM {}
             WHERE job = $1 AND state = 'done' AND verified_remaining IS NULL ORDER BY range_no",
            self.table
        )))
        .bind(job)
        .fetch_all(conn)
        .await
    }

    pub async fn summary(
        &self,
        conn: &mut PgConnection,
        job: &str,
    ) -> Result<Summary, sqlx::Error> {
        sqlx::query_as(AssertSqlSafe(format!(
            "SELECT count(*) AS ranges,
                    count(*) FILTER (WHERE state = 'done') AS ranges_done,
                    coalesce(sum(verified_remaining), 0)::bigint AS rows_unverified,
                    count(*) FILTER (WHERE state = 'pending' AND (owner IS NULL OR lease_until < now())) AS ranges_free,
                    extract(epoch FROM min(lease_until - now()) FILTER (
                        WHERE state = 'pending' AND lease_until >= now()))::float8 AS next_expiry_seconds
             FROM {} WHERE job = $1",
            self.table
        )))
        .bind(job)
        .fetch_one(conn)
        .await
    }

    /// Live leases of a job, for status.
    pub async fn leases(
        &self,
        conn: &mut PgConnection,
        job: &str,
    ) -> Result<Vec<Lease>, sqlx::Error> {
        sqlx::query_as(AssertSqlSafe(format!(
            "SELECT range_no, owner, extract(epoch FROM lease_until - now())::float8 AS lease_seconds_left
             FROM {} WHERE job = $1 AND state = 'pending' AND owner IS NOT NULL AND lease_until >= now()
             ORDER BY range_no",
            self.table
        )))
        .bind(job)
        .fetch_all(conn)
        .await
    }

    /// Splits the busiest range another worker holds, so that an idle worker need not wait
    /// for it: `(done, mid]` stays with its owner, `(mid, upper]` becomes a new range leased
    /// to `thief`. `None` when no such range has `min_rows` rows left (by `space`'s
    /// estimate).
    ///
    /// The owner's batches check the range's upper bound under the row lock, so one planned
    /// before the split changes nothing, and the owner reloads its range
    /// ([`Ranges::reload`]).
    pub async fn steal(
        &self,
        conn: &mut PgConnection,
        job: &str,
        thief: &str,
        lease: Duration,
        space: &KeySpace,
        min_rows: f64,
    ) -> Result<Option<Stolen>, sqlx::Error> {
        let mut tx = conn.begin().await?;
        // Splits of one job, and its first split into ranges, one at a time.
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(lock_key(&format!("sluice:backfill-split:{job}")))
            .execute(&mut *tx)
            .await?;
        let busy = format!(
            "SELECT range_no, owner, upper, coalesce(cursor, lower) AS done_to FROM {}
             WHERE job = $1 AND state = 'pending' AND owner <> $2 AND lease_until >= now()",
            self.table
        );
        let candidates: Vec<Busy> = sqlx::query_as(AssertSqlSafe(busy.clone()))
            .bind(job)
            .bind(thief)
            .fetch_all(&mut *tx)
            .await?;
        let Some(busiest) = busiest(&candidates, space) else {
            return Ok(None);
        };
        // Locked, and read again: the owner's batch in flight commits first.
        let locked: Option<Busy> = sqlx::query_as(AssertSqlSafe(format!(
            "{busy} AND range_no = $3 FOR UPDATE"
        )))
        .bind(job)
        .bind(thief)
        .bind(busiest)
        .fetch_optional(&mut *tx)
        .await?;
        let Some((range, split)) = locked.and_then(|range| {
            let split = space.split(range.done_to.as_deref(), &range.upper)?;
            Some((range, split))
        }) else {
            return Ok(None);
        };
        if split.rows_left < min_rows {
            return Ok(None);
        }
        let mid = vec![split.mid];
        sqlx::query(AssertSqlSafe(format!(
            "UPDATE {} SET upper = $3, updated_at = now() WHERE job = $1 AND range_no = $2",
            self.table
        )))
        .bind(job)
        .bind(range.range_no)
        .bind(&mid)
        .execute(&mut *tx)
        .await?;
        let new_range: i32 = sqlx::query_scalar(AssertSqlSafe(format!(
            "INSERT INTO {t} (job, range_no, lower, upper, owner, lease_until, claims)
             SELECT $1, max(range_no) + 1, $2, $3, $4, now() + $5 * interval '1 millisecond', 1
             FROM {t} WHERE job = $1
             RETURNING range_no",
            t = self.table
        )))
        .bind(job)
        .bind(&mid)
        .bind(&range.upper)
        .bind(thief)
        .bind(millis(lease))
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Some(Stolen {
            claim: Claim {
                range_no: new_range,
                lower: Some(mid),
                upper: range.upper,
                cursor: None,
                previous_owner: None,
            },
            from_range: range.range_no,
            from_owner: range.owner,
        }))
    }

    /// `owner`'s range as committed, while the lease is still theirs: its upper bound moves
    /// when another worker splits it.
    pub async fn reload(
        &self,
        conn: &mut PgConnection,
        job: &str,
        range_no: i32,
        owner: &str,
    ) -> Result<Option<Claim>, sqlx::Error> {
        sqlx::query_as(AssertSqlSafe(format!(
            "SELECT range_no, lower, upper, cursor, NULL::text AS previous_owner FROM {}
             WHERE job = $1 AND range_no = $2 AND owner = $3 AND state = 'pending'",
            self.table
        )))
        .bind(job)
        .bind(range_no)
        .bind(owner)
        .fetch_optional(conn)
        .await
    }
}

/// The range with the most rows left, by `space`'s estimate.
fn busiest(ranges: &[Busy], space: &KeySpace) -> Option<i32> {
    ranges
        .iter()
        .filter_map(|r| {
            let split = space.split(r.done_to.as_deref(), &r.upper)?;
            Some((r.range_no, split.rows_left))
        })
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(range_no, _)| range_no)
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}
