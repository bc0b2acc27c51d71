//! One worker: claims a range, takes batches through it, verifies it, claims the next; until
//! no range is left, a limit or signal stops it, or the job is paused or cancelled.
//!
//! Each batch is one transaction: `SET LOCAL` guards, lock the range's row and check the lease,
//! `UPDATE` the rows in (cursor, end] that match `where`, and advance the range's row,
//! committed together. A crash at any instant therefore loses no committed batch and repeats
//! none, and a worker whose lease was taken over changes nothing.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use sluice_common::retry::{Backoff, Transient, classify};
use sqlx::{AssertSqlSafe, PgConnection, Row};
use tokio::sync::mpsc::UnboundedSender;

use crate::context::Context;
use crate::error::BackfillError;
use crate::event::{BatchDone, Event};
use crate::keytext::{bind_all, integer_key, texts};
use crate::lifecycle::{Control, JobState, WorkerEnd};
use crate::ranges::{Claim, RangeLease};
use crate::session::{begin_guarded, guarded_connection, ride_out};
use crate::sizing;
use crate::sql::{LeaseOf, Progress};
use crate::stepping::IntegerSpan;
use crate::throttle::Reason;

mod waits;

/// Backoff between retries of a failed batch.
const RETRY_BACKOFF: Backoff = Backoff {
    initial: Duration::from_millis(100),
    max: Duration::from_secs(10),
};

enum RangeEnd {
    Done,
    LeaseLost,
    Stop(WorkerEnd),
}

/// How batch ends are found in a range (see [`crate::stepping`]).
#[derive(Debug, Clone, Copy)]
enum Stepping {
    Offset,
    Span(IntegerSpan),
}

/// A claimed range being worked on.
struct Range {
    claim: Claim,
    cursor: Option<Vec<String>>,
    stepping: Stepping,
}

/// One committed batch, as the database saw it.
struct Committed {
    rows_updated: u64,
    rows_scanned: u64,
    cursor: Vec<String>,
    last: bool,
    control: String,
}

pub(crate) struct Worker<'c, 'a> {
    ctx: &'c Context<'a>,
    number: usize,
    owner: String,
    conn: PgConnection,
    size: u32,
    throttled: Duration,
    /// When the lease was last extended (each commit extends it).
    renewed: Instant,
    events: UnboundedSender<Event>,
    held: waits::Held,
}

/// Runs worker `number` until it has nothing left to do or is stopped; its leases are given
/// up on every path.
pub(crate) async fn run(
    ctx: &Context<'_>,
    number: usize,
    events: UnboundedSender<Event>,
) -> Result<WorkerEnd, BackfillError> {
    let conn = match guarded_connection(ctx.settings, ctx.job).await {
        Ok(conn) => conn,
        // One worker fewer is no reason to stop the others (the server filled up since the
        // workers were counted).
        Err(error) if number > 0 => {
            tracing::warn!(
                job = %ctx.job.name,
                worker = number,
                "worker {number} cannot connect ({error}); the other workers go on"
            );
            return Ok(WorkerEnd::NoWork);
        }
        Err(error) => return Err(error),
    };
    let mut worker = Worker {
        ctx,
        number,
        owner: format!("{}/w{number}", ctx.process),
        conn,
        size: ctx.initial_batch_size,
        throttled: Duration::ZERO,
        renewed: Instant::now(),
        events,
        held: waits::Held::default(),
    };
    let end = worker.work().await;
    worker.record_held(true).await;
    if end.is_err() {
        ctx.stop.store(true, Ordering::Relaxed);
    }
    let _ = ctx
        .jobs
        .ranges()
        .release(&mut worker.conn, &ctx.job.name, &worker.owner)
        .await;
    end
}

impl Worker<'_, '_> {
    async fn work(&mut self) -> Result<WorkerEnd, BackfillError> {
        loop {
            if let Some(end) = self.should_stop() {
                return Ok(end);
            }
            let (ctx, owner) = (self.ctx, self.owner.clone());
            let claim = self
                .keep("claiming a key range", async |conn| {
                    ctx.jobs
                        .ranges()
                        .claim(conn, &ctx.job.name, &owner, ctx.lease)
                        .await
                })
                .await?;
            let claim = match claim {
                Some(claim) => claim,
                None => match self.steal().await? {
                    Some(claim) => claim,
                    None if self.wait_for_others().await? => return Ok(WorkerEnd::NoWork),
                    None => continue,
                },
            };
            if let Some(previous) = &claim.previous_owner {
                tracing::warn!(
                    job = %self.ctx.job.name,
                    range = claim.range_no,
                    previous_owner = %previous,
                    "took over range {} from {previous}, whose lease expired; continuing from its last committed key",
                    claim.range_no
                );
            }
            self.send(Event::Claimed {
                worker: self.number,
                range: claim.range_no,
                previous_owner: claim.previous_owner.clone(),
            });
            self.renewed = Instant::now();
            match self.range(claim).await? {
                RangeEnd::Done | RangeEnd::LeaseLost => {}
                RangeEnd::Stop(end) => return Ok(end),
            }
        }
    }

    /// No range is free: splits the busiest range another worker holds and takes its upper
    /// half, so that the job's tail is not left to one worker. Single integer or uuid keys
    /// only (see [`crate::keyspace`]).
    async fn steal(&mut self) -> Result<Option<Claim>, BackfillError> {
        let Some(space) = self.ctx.key_space else {
            return Ok(None);
        };
        // Worth a split only when the half taken is several batches long.
        let min_rows = f64::from(self.ctx.job.pacing.max_batch_size) * 4.0;
        let (ctx, owner) = (self.ctx, self.owner.clone());
        let stolen = self
            .keep("splitting a busy key range", async |conn| {
                ctx.jobs
                    .ranges()
                    .steal(conn, &ctx.job.name, &owner, ctx.lease, &space, min_rows)
                    .await
            })
            .await?;
        Ok(stolen.map(|stolen| {
            tracing::info!(
                job = %self.ctx.job.name,
                range = stolen.claim.range_no,
                split_from = stolen.from_range,
                "split range {} of {} at key {}: its keys above it are range {}, taken by this worker",
                stolen.from_range,
                stolen.from_owner,
                stolen.claim.lower.as_deref().unwrap_or_default().join(", "),
                stolen.claim.range_no
            );
            stolen.claim
        }))
    }

    /// No range is free: true when all are done, else waits (for a lease to expire or a
    /// range to finish) and returns false.
    async fn wait_for_others(&mut self) -> Result<bool, BackfillError> {
        let ctx = self.ctx;
        let summary = self
            .keep("reading the job's ranges", async |conn| {
                ctx.jobs.ranges().summary(conn, &ctx.job.name).await
            })
            .await?;
        if summary.ranges_done >= summary.ranges {
            return Ok(true);
        }
        let wait = summary
            .next_expiry_seconds
            .map_or(Duration::from_secs(1), |s| {
                Duration::from_secs_f64(s.max(0.05))
            })
            .min(Duration::from_secs(1));
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = self.ctx.shutdown.requested() => {}
        }
        Ok(false)
    }

    fn should_stop(&self) -> Option<WorkerEnd> {
        if self.ctx.shutdown.is_requested() {
            Some(WorkerEnd::Interrupted)
        } else if self.ctx.stop.load(Ordering::Relaxed) {
            Some(WorkerEnd::Stopped)
        } else if self
            .ctx
            .deadline
            .as_ref()
            .is_some_and(|d| chrono::Utc::now() >= d.at)
        {
            Some(WorkerEnd::Deadline)
        } else {
            None
        }
    }

    fn send(&self, event: Event) {
        let _ = self.events.send(event);
    }

    fn lease<'r>(&'r self, range: &'r Range) -> LeaseOf<'r> {
        LeaseOf {
            job: &self.ctx.job.name,
            range_no: range.claim.range_no,
            owner: &self.owner,
            upper: &range.claim.upper,
            cursor: range.claim.cursor.as_deref(),
        }
    }

    fn stepping_for(&self, claim: &Claim) -> Stepping {
        let (Some(min), [upper]) = (self.ctx.integer_min, claim.upper.as_slice()) else {
            return Stepping::Offset;
        };
        let Ok(upper) = upper.parse::<i64>() else {
            return Stepping::Offset;
        };
        let min = match claim.lower.as_deref().map(integer_key) {
            None => min,
            Some(Some(lower)) => lower.saturating_add(1),
            Some(None) => return Stepping::Offset,
        };
        Stepping::Span(IntegerSpan::with_density(min, upper, self.ctx.keys_per_row))
    }

    /// After a batch that changed nothing: the range as it is now when it is still this
    /// worker's but another worker split it (its upper bound moved); `None` when the lease
    /// was lost.
    async fn reload(&mut self, range: &Range) -> Result<Option<Range>, BackfillError> {
        let (ctx, owner, range_no) = (self.ctx, self.owner.clone(), range.claim.range_no);
        let now = self
            .keep("reading a split key range", async |conn| {
                ctx.jobs
                    .ranges()
                    .reload(conn, &ctx.job.name, range_no, &owner)
                    .await
            })
            .await?;
        // Still this worker's, but split by another (its upper bound moved), or a batch whose
        // commit answer was lost did commit (its cursor moved): go on from the range as it is.
        Ok(now
            .filter(|claim| claim.upper != range.claim.upper || claim.cursor != range.claim.cursor)
            .map(|claim| {
                tracing::debug!(
                    job = %self.ctx.job.name,
                    range = claim.range_no,
                    "range {} was split by another worker; it now ends at key ({})",
                    claim.range_no,
                    claim.upper.join(", ")
                );
                Range {
                    stepping: self.stepping_for(&claim),
                    cursor: claim.resume_after(),
                    claim,
                }
            }))
    }

    async fn range(&mut self, claim: Claim) -> Result<RangeEnd, BackfillError> {
        let mut range = Range {
            stepping: self.stepping_for(&claim),
            cursor: claim.resume_after(),
            claim,
        };
        let mut failures = 0;
        loop {
            if let Some(end) = self.should_stop() {
                return Ok(RangeEnd::Stop(end));
            }
            if self.before_batch(&range).await? == RangeLease::Lost {
                return Ok(RangeEnd::LeaseLost);
            }
            // A stop that came during the wait (a deadline, a signal, another worker's
            // failure) ends the range before its next batch, not after it.
            if let Some(end) = self.should_stop() {
                return Ok(RangeEnd::Stop(end));
            }
            let started = Instant::now();
            self.ctx.pace.in_flight.fetch_add(1, Ordering::SeqCst);
            let batch = self.batch(&range).await;
            self.ctx.pace.in_flight.fetch_sub(1, Ordering::SeqCst);
            match batch {
                Ok(Some(done)) => {
                    failures = 0;
                    let took = started.elapsed();
                    if let Some(end) = self.committed(&mut range, done, took).await? {
                        return Ok(end);
                    }
                    if self.rest(&range, took).await? == RangeLease::Lost {
                        return Ok(RangeEnd::LeaseLost);
                    }
                }
                Ok(None) => {
                    if let Some(split) = self.reload(&range).await? {
                        range = split;
                        continue;
                    }
                    tracing::warn!(
                        job = %self.ctx.job.name,
                        range = range.claim.range_no,
                        "the lease of range {} was taken over by another worker; its batch changed nothing",
                        range.claim.range_no
                    );
                    return Ok(RangeEnd::LeaseLost);
                }
                Err(error) => {
                    failures += 1;
                    self.after_failure(error, failures, &range).await?;
                }
            }
        }
    }

    /// After a committed batch: sizing, events, control requests, and the range's end.
    async fn committed(
        &mut self,
        range: &mut Range,
        done: Committed,
        took: Duration,
    ) -> Result<Option<RangeEnd>, BackfillError> {
        self.renewed = Instant::now();
        let batch_size = self.size;
        self.resize(took, !done.last);
        if let (Stepping::Span(span), None) = (&mut range.stepping, &self.ctx.job.where_) {
            let before = range.cursor.as_deref().map(integer_key);
            // A density sample needs both ends as numbers; without them there is none.
            if let (None | Some(Some(_)), Some(after)) = (before, integer_key(&done.cursor)) {
                span.observe(before.flatten(), after, done.rows_updated);
            }
        }
        range.cursor = Some(done.cursor.clone());
        range.claim.cursor = Some(done.cursor.clone());
        self.send(Event::Batch(BatchDone {
            worker: self.number,
            range: range.claim.range_no,
            rows_updated: done.rows_updated,
            rows_scanned: done.rows_scanned,
            batch_size,
            duration: took,
            cursor: done.cursor,
            next_batch_size: self.size,
            total_scanned: 0,
            total_updated: 0,
        }));
        match done.control.parse::<Control>() {
            Ok(Control::Pause) => return Ok(Some(RangeEnd::Stop(WorkerEnd::Paused))),
            Ok(Control::Cancel) => return Ok(Some(RangeEnd::Stop(WorkerEnd::Cancelled))),
            Ok(Control::Run) | Err(_) => {}
        }
        if done.last {
            self.verify(range).await?;
            return Ok(Some(RangeEnd::Done));
        }
        if let Some(pause) = self.ctx.throttle.pause() {
            self.sleep(Reason::Pause, pause).await;
        }
        Ok(None)
    }

    /// Extends the lease when a third of it has passed.
    async fn keep_lease(&mut self, range: &Range) -> Result<RangeLease, BackfillError> {
        if self.renewed.elapsed() < self.ctx.lease / 3 {
            return Ok(RangeLease::Kept);
        }
        let (ctx, owner, range_no) = (self.ctx, self.owner.clone(), range.claim.range_no);
        let lease = self
            .keep("renewing a range lease", async |conn| {
                ctx.jobs
                    .ranges()
                    .renew(conn, &ctx.job.name, range_no, &owner, ctx.lease)
                    .await
            })
            .await?;
        self.renewed = Instant::now();
        Ok(lease)
    }

    /// One batch: its UPDATE and the range's progress commit in one transaction, sent in two
    /// round trips. `None` when the lease was lost (nothing changed).
    async fn batch(&mut self, range: &Range) -> Result<Option<Committed>, sqlx::Error> {
        // Keys read from the table (offset stepping) are read in the batch's transaction, under
        // its guards; a span is worked out here, and its batch begins with its UPDATE.
        let begun = matches!(range.stepping, Stepping::Offset);
        if begun {
            sqlx::raw_sql(AssertSqlSafe(begin_guarded(self.ctx.job)))
                .execute(&mut self.conn)
                .await?;
        }
        let (end, last, scanned) = match self.extent(range).await {
            Ok(extent) => extent,
            Err(error) => {
                if begun {
                    let _ = sqlx::raw_sql("ROLLBACK").execute(&mut self.conn).await;
                }
                return Err(error);
            }
        };
        let result = self.transact(range, &end, last, scanned, begun).await;
        if result.is_err() {
            // Leave no aborted transaction on the connection (a batch whose statement was
            // refused before its BEGIN ran left none, and a ROLLBACK would only warn).
            sluice_common::db::end_failed_transaction(&mut self.conn).await;
        }
        let Some((rows_updated, control)) = result? else {
            return Ok(None);
        };
        self.throttled = Duration::ZERO;
        Ok(Some(Committed {
            rows_updated,
            rows_scanned: scanned.unwrap_or(rows_updated),
            cursor: end,
            last,
            control,
        }))
    }

    /// The batch's last key, whether it is the range's last batch, and the keys it scans
    /// when the count of updated rows does not say it.
    async fn extent(
        &mut self,
        range: &Range,
    ) -> Result<(Vec<String>, bool, Option<u64>), sqlx::Error> {
        let cursor = range.cursor.as_deref();
        // Arithmetic from the cursor when it is a number; a cursor that is not one (it always
        // is, for an integer key) is left to the index, never read as 0.
        let span = match (&range.stepping, cursor.map(integer_key)) {
            (Stepping::Span(span), None | Some(Some(_))) => {
                Some((span, cursor.and_then(integer_key)))
            }
            _ => None,
        };
        let (end, last) = match span {
            Some((span, from)) => {
                let (end, last) = span.end(from, self.size);
                (vec![end.to_string()], last)
            }
            None => self.end_key(cursor, &range.claim.upper).await?,
        };
        let scanned = match span {
            Some(_) if self.ctx.job.where_.is_none() => None,
            Some((span, from)) => integer_key(&end).map(|to| span.rows_between(from, to)),
            None if last => Some(self.count_range(cursor, &end).await?),
            None => Some(u64::from(self.size)),
        };
        Ok((end, last, scanned))
    }

    /// The batch's UPDATE, then its progress and COMMIT; `begun` when its transaction is open.
    async fn transact(
        &mut self,
        range: &Range,
        end: &[String],
        last: bool,
        scanned: Option<u64>,
        begun: bool,
    ) -> Result<Option<(u64, String)>, sqlx::Error> {
        let lease = self.lease(range);
        let batch = self.ctx.sql.batch_with(lease, range.cursor.as_deref(), end);
        let update = if begun {
            batch
        } else {
            format!("{}; {batch}", begin_guarded(self.ctx.job))
        };
        let rows_updated = sqlx::raw_sql(AssertSqlSafe(update))
            .execute(&mut self.conn)
            .await?
            .rows_affected();
        let progress = self.ctx.sql.progress_and_commit(Progress {
            lease: self.lease(range),
            cursor: end,
            rows_updated,
            rows_scanned: scanned.unwrap_or(rows_updated),
            last,
            lease_for: self.ctx.lease,
            throttled_seconds: self.throttled.as_secs_f64(),
        });
        // fetch_all, not fetch_one: the COMMIT's own outcome must be read too.
        let rows = sqlx::raw_sql(AssertSqlSafe(progress))
            .fetch_all(&mut self.conn)
            .await?;
        match rows.first() {
            Some(row) => Ok(Some((rows_updated, row.try_get::<String, _>(0)?))),
            None => Ok(None),
        }
    }

    /// The key `batch_size` rows past the cursor (or the range's upper bound), and whether it
    /// is the range's last batch.
    async fn end_key(
        &mut self,
        cursor: Option<&[String]>,
        upper: &[String],
    ) -> Result<(Vec<String>, bool), sqlx::Error> {
        let offset = i64::from(self.size.saturating_sub(1));
        let sql = self.ctx.sql;
        let query = match cursor {
            None => sqlx::query(AssertSqlSafe(sql.end_key.clone())),
            Some(cursor) => bind_all(sqlx::query(AssertSqlSafe(sql.end_key_from.clone())), cursor),
        };
        Ok(
            match bind_all(query, upper)
                .bind(offset)
                .fetch_optional(&mut self.conn)
                .await?
            {
                Some(row) => {
                    let end = texts(&row)?;
                    let last = end.as_slice() == upper;
                    (end, last)
                }
                None => (upper.to_vec(), true),
            },
        )
    }

    /// Keys in (cursor, end]: the size of a short last batch.
    async fn count_range(
        &mut self,
        cursor: Option<&[String]>,
        end: &[String],
    ) -> Result<u64, sqlx::Error> {
        let sql = self.ctx.sql;
        let text = if cursor.is_some() {
            &sql.count_range_from
        } else {
            &sql.count_range
        };
        let values = cursor.unwrap_or_default().iter().chain(end);
        let query = values.fold(
            sqlx::query_scalar::<_, i64>(AssertSqlSafe(text.clone())),
            |q, v| q.bind(v.clone()),
        );
        Ok(u64::try_from(query.fetch_one(&mut self.conn).await?).unwrap_or(0))
    }

    /// The range is done: counts its rows still matching `where` and records the result.
    async fn verify(&mut self, range: &Range) -> Result<(), BackfillError> {
        let ctx = self.ctx;
        let remaining = self
            .keep("verifying a range", async |conn| {
                crate::verify::count_remaining(
                    conn,
                    ctx.sql,
                    ctx.job,
                    range.claim.lower.clone(),
                    &range.claim.upper,
                )
                .await
            })
            .await?;
        if remaining > 0 {
            tracing::warn!(
                job = %self.ctx.job.name,
                range = range.claim.range_no,
                remaining,
                "range {} is done but {remaining} row(s) in it still match `where`",
                range.claim.range_no
            );
        }
        let remaining = i64::try_from(remaining).unwrap_or(i64::MAX);
        let range_no = range.claim.range_no;
        self.keep("recording a range's verification", async |conn| {
            ctx.jobs
                .ranges()
                .verified(conn, &ctx.job.name, range_no, remaining)
                .await
        })
        .await
    }

    async fn after_failure(
        &mut self,
        error: sqlx::Error,
        failures: u32,
        range: &Range,
    ) -> Result<(), BackfillError> {
        let text = sluice_common::db::explain(&error);
        let transient = classify(&error);
        let job = self.ctx.job;
        if transient.is_none() || failures > job.guards.max_retries {
            let _ = self
                .ctx
                .jobs
                .set_state(&mut self.conn, &job.name, JobState::Failed, Some(&text))
                .await;
            return Err(BackfillError::BatchFailed {
                job: job.name.clone(),
                attempts: failures,
                cursor: range
                    .cursor
                    .as_ref()
                    .map_or_else(|| "(start)".to_owned(), |c| c.join(", ")),
                error: text,
                spec: self.ctx.spec_path(),
            });
        }
        if transient == Some(Transient::ConnectionLost) {
            self.conn = guarded_connection(self.ctx.settings, job).await?;
        }
        let _ = self
            .ctx
            .jobs
            .count_retry(&mut self.conn, &job.name, &text)
            .await;
        self.size = sizing::shrink(&job.pacing, self.size);
        let delay = RETRY_BACKOFF.delay(failures - 1);
        tracing::warn!(
            job = %job.name,
            attempt = failures,
            max_retries = job.guards.max_retries,
            next_batch_size = self.size,
            retry_in_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
            "batch rolled back ({}): {text}; retrying smaller",
            transient.map_or("error", Transient::as_str)
        );
        self.send(Event::Retrying {
            attempt: failures,
            max_retries: job.guards.max_retries,
            delay,
            next_batch_size: self.size,
            lock_timeout: transient == Some(Transient::LockTimeout),
            error: text,
        });
        self.sleep(Reason::Backoff, delay).await;
        Ok(())
    }

    /// Runs one of the worker's bookkeeping queries (claim, renew, split, verify) through
    /// [`ride_out`].
    async fn keep<T>(
        &mut self,
        what: &str,
        op: impl AsyncFnMut(&mut PgConnection) -> Result<T, sqlx::Error>,
    ) -> Result<T, BackfillError> {
        ride_out(&mut self.conn, self.ctx, what, op).await
    }
}
