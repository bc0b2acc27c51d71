//! The run loop: one worker taking batches through a job's key range.
//!
//! Each batch is one transaction: `SET LOCAL` guards, find the batch's last key, `UPDATE` the
//! rows in (cursor, last] that match `where`, and advance the job's row, committed together.
//! A crash at any instant therefore loses no committed batch and repeats none.

use std::time::{Duration, Instant};

use sluice_common::db::{self, ConnectSettings};
use sluice_common::ident::Ident;
use sluice_common::lock::{AdvisoryLock, DEFAULT_POLL_INTERVAL, LockRequest, lock_key};
use sluice_common::retry::{Backoff, Transient, classify};
use sluice_common::shutdown::Shutdown;
use sqlx::postgres::PgRow;
use sqlx::{AssertSqlSafe, PgConnection, Row};

use crate::catalog::{self, Target};
use crate::error::BackfillError;
use crate::event::{BatchDone, Event};
use crate::job::Job;
use crate::sizing;
use crate::sql::{JobSql, Progress};
use crate::state::{JobRow, Jobs, control, states};
use crate::stepping::{IntegerSpan, is_integer_type};
use crate::throttle::{Reason, Throttle};

/// Where and as whom to run.
#[derive(Debug, Clone)]
pub struct EngineSettings {
    pub connect: ConnectSettings,
    /// Schema of sluice's own tables.
    pub schema: Ident,
}

/// Choices of one `run`.
#[derive(Debug, Clone, Copy, Default)]
pub struct RunOptions {
    /// Continue an unfinished job whose table, key, set or where changed.
    pub accept_spec_change: bool,
    /// Start another pass over the whole key range.
    pub rescan: bool,
}

/// How a run ended, when it did not fail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Completed {
        rows_updated: u64,
        batches: u64,
    },
    AlreadyCompleted,
    Paused,
    Cancelled,
    /// Stopped by a signal after its last batch committed.
    Interrupted {
        cursor: Option<Vec<String>>,
    },
}

/// Backoff between retries of a failed batch.
const RETRY_BACKOFF: Backoff = Backoff {
    initial: Duration::from_millis(100),
    max: Duration::from_secs(10),
};

/// Runs (or resumes) `job` until it completes, pauses, is cancelled or interrupted.
pub async fn run(
    settings: &EngineSettings,
    job: &Job,
    options: RunOptions,
    shutdown: &Shutdown,
    events: &mut dyn FnMut(Event),
) -> Result<Outcome, BackfillError> {
    let jobs = Jobs::new(settings.schema.clone());
    let mut lock_conn = db::connect(&settings.connect).await?;
    jobs.ensure(&mut lock_conn)
        .await
        .map_err(BackfillError::query(format!("creating {}", jobs.table())))?;
    let request = LockRequest {
        name: format!("the worker lock of job {}", job.name),
        key: lock_key(&format!(
            "sluice:backfill:{}:{}",
            settings.schema.as_str(),
            job.name
        )),
        wait: Duration::ZERO,
        poll: DEFAULT_POLL_INTERVAL,
    };
    let lock = AdvisoryLock::acquire(lock_conn, &request, shutdown, |_| {})
        .await
        .map_err(|e| BackfillError::AlreadyRunning {
            job: job.name.clone(),
            source: Box::new(e),
        })?;
    let result = run_locked(settings, &jobs, job, options, shutdown, events).await;
    if let Err(error) = lock.release().await {
        tracing::warn!("{error}; the lock was freed by closing its connection");
    }
    result
}

async fn run_locked(
    settings: &EngineSettings,
    jobs: &Jobs,
    job: &Job,
    options: RunOptions,
    shutdown: &Shutdown,
    events: &mut dyn FnMut(Event),
) -> Result<Outcome, BackfillError> {
    let mut conn = guarded_connection(settings, job).await?;
    let target = catalog::inspect(&mut conn, job).await?;
    let sql = JobSql::new(job, &target, jobs.table());
    let Some(row) = start(&mut conn, jobs, job, &target, &sql, options).await? else {
        return Ok(Outcome::AlreadyCompleted);
    };
    if row.control == control::PAUSE {
        return Ok(Outcome::Paused);
    }
    let stepping = stepping(&mut conn, &target, &sql, row.upper_bound.as_deref()).await?;
    let mut worker = Worker {
        stepping,
        conn,
        settings,
        jobs,
        job,
        sql: &sql,
        throttle: Throttle::new(&job.pacing),
        cursor: row.cursor.clone(),
        upper: row.upper_bound.clone(),
        size: u32::try_from(row.batch_size)
            .unwrap_or(job.pacing.batch_size)
            .clamp(job.pacing.min_batch_size, job.pacing.max_batch_size),
        total_scanned: u64::try_from(row.rows_scanned).unwrap_or(0),
        total_updated: u64::try_from(row.rows_updated).unwrap_or(0),
        batches: u64::try_from(row.batches).unwrap_or(0),
        throttled: Duration::ZERO,
    };
    events(Event::Started {
        job: job.name.clone(),
        resumed: row.batches > 0,
        rows_scanned: worker.total_scanned,
        rows_updated: worker.total_updated,
        estimated_rows: u64::try_from(row.estimated_rows.max(target.estimated_rows)).unwrap_or(0),
        batch_size: worker.size,
    });
    worker.work(shutdown, events).await
}

/// Loads the job's row, or registers the job with its key bounds; refuses a changed spec or a
/// cancelled job. `None` when it is already complete.
async fn start(
    conn: &mut PgConnection,
    jobs: &Jobs,
    job: &Job,
    target: &Target,
    sql: &JobSql,
    options: RunOptions,
) -> Result<Option<JobRow>, BackfillError> {
    let loaded = jobs
        .load(conn, &job.name)
        .await
        .map_err(BackfillError::query(format!("reading job {}", job.name)))?;
    let Some(row) = loaded else {
        let upper = key_of(
            sqlx::query(AssertSqlSafe(sql.max_key.clone()))
                .fetch_optional(&mut *conn)
                .await,
            "capturing the key bounds",
        )?;
        let keys: Vec<String> = job.key.iter().map(|k| k.as_str().to_owned()).collect();
        let row = jobs
            .register(
                conn,
                &job.name,
                &job.table.to_string(),
                &keys,
                &job.spec_checksum,
                job.path
                    .as_ref()
                    .map(|p| p.display().to_string())
                    .as_deref(),
                upper.as_deref(),
                job.pacing.batch_size,
                target.estimated_rows,
            )
            .await
            .map_err(BackfillError::query(format!(
                "registering job {}",
                job.name
            )))?;
        return Ok(Some(row));
    };
    if row.state == states::CANCELLED || row.control == control::CANCEL {
        return Err(BackfillError::Cancelled {
            job: job.name.clone(),
        });
    }
    if row.state == states::COMPLETED && !options.rescan {
        return Ok(None);
    }
    if row.spec_checksum != job.spec_checksum {
        if !options.accept_spec_change && row.state != states::COMPLETED {
            return Err(BackfillError::SpecChanged {
                job: job.name.clone(),
            });
        }
        jobs.accept_spec(conn, &job.name, &job.spec_checksum)
            .await
            .map_err(BackfillError::query("recording the new spec"))?;
    }
    if options.rescan {
        jobs.rescan(conn, &job.name)
            .await
            .map_err(BackfillError::query("starting another pass"))?;
    }
    if row.control != control::PAUSE {
        jobs.set_state(conn, &job.name, states::RUNNING, None)
            .await
            .map_err(BackfillError::query("marking the job running"))?;
    }
    let reloaded = jobs
        .load(conn, &job.name)
        .await
        .map_err(BackfillError::query("reading the job"))?;
    Ok(reloaded)
}

/// The state of one running worker.
struct Worker<'a> {
    stepping: Stepping,
    conn: PgConnection,
    settings: &'a EngineSettings,
    jobs: &'a Jobs,
    job: &'a Job,
    sql: &'a JobSql,
    throttle: Throttle,
    cursor: Option<Vec<String>>,
    /// Captured at the first start; `None` for a table that was empty then.
    upper: Option<Vec<String>>,
    size: u32,
    total_scanned: u64,
    total_updated: u64,
    batches: u64,
    /// Throttled time not yet recorded with a batch.
    throttled: Duration,
}

/// The worker's connection, with the job's guards also set for the session, so that its
/// other queries (key bounds, verification) are guarded too; batches set them again locally.
/// String literals must be standard for the batch statements' quoting.
async fn guarded_connection(
    settings: &EngineSettings,
    job: &Job,
) -> Result<PgConnection, BackfillError> {
    let mut conn = db::connect(&settings.connect).await?;
    sqlx::raw_sql(AssertSqlSafe(format!(
        "SET standard_conforming_strings = on; SET lock_timeout = '{}ms'; SET statement_timeout = '{}ms'",
        job.guards.lock_timeout.as_millis().max(1),
        job.guards.statement_timeout.as_millis().max(1)
    )))
    .execute(&mut conn)
    .await
    .map_err(BackfillError::query("setting the batch guards"))?;
    Ok(conn)
}

/// How batch ends are found (see [`crate::stepping`]).
#[derive(Debug, Clone, Copy)]
enum Stepping {
    /// Ask the index for the key `batch_size` rows on.
    Offset,
    /// Step through a single integer key's space.
    Span(IntegerSpan),
}

/// Chooses the stepping for a job: arithmetic for one integer key, the index otherwise.
async fn stepping(
    conn: &mut PgConnection,
    target: &Target,
    sql: &JobSql,
    upper: Option<&[String]>,
) -> Result<Stepping, BackfillError> {
    let integer = target.key.len() == 1 && is_integer_type(&target.key[0].type_name);
    let Some([upper]) = upper.filter(|_| integer) else {
        return Ok(Stepping::Offset);
    };
    let min = key_of(
        sqlx::query(AssertSqlSafe(sql.min_key.clone()))
            .fetch_optional(&mut *conn)
            .await,
        "reading the smallest key",
    )?;
    Ok(match (min.as_deref(), upper.parse::<i64>()) {
        (Some([min]), Ok(upper)) => match min.parse::<i64>() {
            Ok(min) => Stepping::Span(IntegerSpan::new(min, upper, target.estimated_rows)),
            Err(_) => Stepping::Offset,
        },
        _ => Stepping::Offset,
    })
}

/// A single integer key from its text (keys of integer columns always parse).
fn parse_integer(key: &[String]) -> i64 {
    key.first().and_then(|k| k.parse().ok()).unwrap_or_default()
}

/// One committed batch, as the database saw it.
struct Committed {
    rows_updated: u64,
    rows_scanned: u64,
    cursor: Vec<String>,
    last: bool,
    control: String,
}

impl Worker<'_> {
    async fn work(
        &mut self,
        shutdown: &Shutdown,
        events: &mut dyn FnMut(Event),
    ) -> Result<Outcome, BackfillError> {
        let Some(upper) = self.upper.clone() else {
            return self.finish(events).await;
        };
        if self.cursor.as_ref() == Some(&upper) {
            return self.finish(events).await;
        }
        let mut failures = 0;
        loop {
            if shutdown.is_requested() {
                return self
                    .stop(states::STOPPED, None)
                    .await
                    .map(|()| Outcome::Interrupted {
                        cursor: self.cursor.clone(),
                    });
            }
            self.wait(Reason::RateLimit, shutdown, events).await;
            let started = Instant::now();
            match self.batch(&upper).await {
                Ok(done) => {
                    failures = 0;
                    let took = started.elapsed();
                    let full = !done.last;
                    let batch_size = self.size;
                    self.size = sizing::next_size(&self.job.pacing, self.size, took, full);
                    let before = self.integer_cursor();
                    if let (Stepping::Span(span), None) = (&mut self.stepping, &self.job.where_) {
                        span.observe(before, parse_integer(&done.cursor), done.rows_updated);
                    }
                    self.record(done.rows_updated, done.rows_scanned);
                    self.cursor = Some(done.cursor.clone());
                    events(Event::Batch(BatchDone {
                        rows_updated: done.rows_updated,
                        rows_scanned: done.rows_scanned,
                        batch_size,
                        duration: took,
                        cursor: done.cursor,
                        next_batch_size: self.size,
                        total_scanned: self.total_scanned,
                        total_updated: self.total_updated,
                    }));
                    match done.control.as_str() {
                        control::PAUSE => {
                            return self
                                .stop(states::PAUSED, None)
                                .await
                                .map(|()| Outcome::Paused);
                        }
                        control::CANCEL => {
                            return self
                                .stop(states::CANCELLED, None)
                                .await
                                .map(|()| Outcome::Cancelled);
                        }
                        _ => {}
                    }
                    if done.last {
                        return self.finish(events).await;
                    }
                    self.wait(Reason::Pause, shutdown, events).await;
                }
                Err(error) => {
                    failures += 1;
                    self.after_failure(error, failures, shutdown, events)
                        .await?;
                }
            }
        }
    }

    /// The cursor of a single integer key.
    fn integer_cursor(&self) -> Option<i64> {
        self.cursor.as_deref().map(parse_integer)
    }

    fn record(&mut self, updated: u64, scanned: u64) {
        self.total_updated += updated;
        self.total_scanned += scanned;
        self.batches += 1;
    }

    /// One batch: its UPDATE and the job's progress commit in one transaction, sent in two
    /// round trips (`BEGIN`, guards and UPDATE; then progress and `COMMIT`).
    async fn batch(&mut self, upper: &[String]) -> Result<Committed, sqlx::Error> {
        let integer_cursor = self.integer_cursor();
        let (end, last) = match &self.stepping {
            Stepping::Span(span) => {
                let (end, last) = span.end(integer_cursor, self.size);
                (vec![end.to_string()], last)
            }
            Stepping::Offset => self.end_key(upper).await?,
        };
        // Keys scanned, when the count of updated rows does not say it.
        let scanned: Option<u64> = match &self.stepping {
            Stepping::Span(_) if self.job.where_.is_none() => None,
            Stepping::Span(span) => Some(span.rows_between(integer_cursor, parse_integer(&end))),
            Stepping::Offset if last => {
                Some(count_range(self.sql, self.cursor.as_deref(), &mut self.conn, &end).await?)
            }
            Stepping::Offset => Some(u64::from(self.size)),
        };
        let result = self.transact(&end, scanned).await;
        if result.is_err() {
            // Leave no transaction open on the connection, whatever failed.
            let _ = sqlx::raw_sql("ROLLBACK").execute(&mut self.conn).await;
        }
        let (rows_updated, control) = result?;
        self.throttled = Duration::ZERO;
        Ok(Committed {
            rows_updated,
            rows_scanned: scanned.unwrap_or(rows_updated),
            cursor: end,
            last,
            control,
        })
    }

    async fn transact(
        &mut self,
        end: &[String],
        scanned: Option<u64>,
    ) -> Result<(u64, String), sqlx::Error> {
        let guards = self.job.guards;
        let update = format!(
            "BEGIN; SET LOCAL lock_timeout = '{}ms'; SET LOCAL statement_timeout = '{}ms'; {}",
            guards.lock_timeout.as_millis().max(1),
            guards.statement_timeout.as_millis().max(1),
            self.sql.update_with(self.cursor.as_deref(), end)
        );
        let rows_updated = sqlx::raw_sql(AssertSqlSafe(update))
            .execute(&mut self.conn)
            .await?
            .rows_affected();
        let progress = self.sql.progress_and_commit(Progress {
            job: &self.job.name,
            cursor: end,
            rows_updated,
            rows_scanned: scanned.unwrap_or(rows_updated),
            batch_size: self.size,
            throttled_seconds: self.throttled.as_secs_f64(),
        });
        // fetch_all, not fetch_one: the COMMIT's own outcome must be read too.
        let rows = sqlx::raw_sql(AssertSqlSafe(progress))
            .fetch_all(&mut self.conn)
            .await?;
        let control = match rows.first() {
            Some(row) => row.try_get::<String, _>(0)?,
            None => return Err(sqlx::Error::RowNotFound),
        };
        Ok((rows_updated, control))
    }

    /// The key `batch_size` rows past the cursor (or the upper bound), and whether it is the
    /// last batch. Outside the batch's statement: the range (cursor, end] is exact whenever it
    /// was found.
    async fn end_key(&mut self, upper: &[String]) -> Result<(Vec<String>, bool), sqlx::Error> {
        let offset = i64::from(self.size.saturating_sub(1));
        let query = match &self.cursor {
            None => sqlx::query(AssertSqlSafe(self.sql.end_key.clone())),
            Some(cursor) => bind_all(
                sqlx::query(AssertSqlSafe(self.sql.end_key_from.clone())),
                cursor,
            ),
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

    async fn after_failure(
        &mut self,
        error: sqlx::Error,
        failures: u32,
        shutdown: &Shutdown,
        events: &mut dyn FnMut(Event),
    ) -> Result<(), BackfillError> {
        let text = error.to_string();
        let transient = classify(&error);
        if transient.is_none() || failures > self.job.guards.max_retries {
            let _ = self
                .jobs
                .set_state(&mut self.conn, &self.job.name, states::FAILED, Some(&text))
                .await;
            return Err(BackfillError::BatchFailed {
                job: self.job.name.clone(),
                attempts: failures,
                cursor: self
                    .cursor
                    .as_ref()
                    .map_or_else(|| "(start)".to_owned(), |c| c.join(", ")),
                error: text,
                spec: self.spec_path(),
            });
        }
        if transient == Some(Transient::ConnectionLost) {
            self.conn = guarded_connection(self.settings, self.job).await?;
        }
        let _ = self
            .jobs
            .count_retry(&mut self.conn, &self.job.name, &text)
            .await;
        self.size = sizing::shrink(&self.job.pacing, self.size);
        let delay = RETRY_BACKOFF.delay(failures - 1);
        tracing::warn!(
            job = %self.job.name,
            attempt = failures,
            max_retries = self.job.guards.max_retries,
            next_batch_size = self.size,
            retry_in_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
            "batch rolled back ({}): {text}; retrying smaller",
            transient.map_or("error", Transient::as_str)
        );
        events(Event::Retrying {
            attempt: failures,
            max_retries: self.job.guards.max_retries,
            delay,
            next_batch_size: self.size,
            error: text,
        });
        self.sleep(Reason::Backoff, delay, shutdown, events).await;
        Ok(())
    }

    /// Waits for the rate limiter (before a batch) or the pause (after one).
    async fn wait(&mut self, reason: Reason, shutdown: &Shutdown, events: &mut dyn FnMut(Event)) {
        match reason {
            Reason::RateLimit => {
                let waited = tokio::select! {
                    waited = self.throttle.before_batch(self.size) => waited,
                    () = shutdown.requested() => None,
                };
                if let Some((reason, waited)) = waited {
                    self.throttled += waited;
                    events(Event::Throttled { reason, waited });
                }
            }
            Reason::Pause | Reason::Backoff => {
                if let Some(pause) = self.throttle.pause() {
                    self.sleep(reason, pause, shutdown, events).await;
                }
            }
        }
    }

    async fn sleep(
        &mut self,
        reason: Reason,
        delay: Duration,
        shutdown: &Shutdown,
        events: &mut dyn FnMut(Event),
    ) {
        let started = Instant::now();
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = shutdown.requested() => {}
        }
        let waited = started.elapsed();
        self.throttled += waited;
        events(Event::Throttled { reason, waited });
    }

    /// The cursor passed the upper bound: verify, then complete.
    async fn finish(&mut self, events: &mut dyn FnMut(Event)) -> Result<Outcome, BackfillError> {
        let remaining = self
            .verify()
            .await
            .map_err(BackfillError::query("verifying the job"))?;
        if let Some((count, first_key)) = remaining {
            let _ = self
                .jobs
                .verified(
                    &mut self.conn,
                    &self.job.name,
                    i64::try_from(count).unwrap_or(i64::MAX),
                )
                .await;
            events(Event::Verified { remaining: count });
            let error = BackfillError::Unverified {
                job: self.job.name.clone(),
                remaining: count,
                first_key,
                spec: self.spec_path(),
            };
            let _ = self
                .jobs
                .set_state(
                    &mut self.conn,
                    &self.job.name,
                    states::FAILED,
                    Some(&error.to_string()),
                )
                .await;
            return Err(error);
        }
        let _ = self.jobs.verified(&mut self.conn, &self.job.name, 0).await;
        events(Event::Verified { remaining: 0 });
        self.stop(states::COMPLETED, None).await?;
        Ok(Outcome::Completed {
            rows_updated: self.total_updated,
            batches: self.batches,
        })
    }

    /// Counts rows in the job's range still matching `where`, in bounded chunks so that no
    /// single query runs long. `None` when there are none (or no `where` to check).
    async fn verify(&mut self) -> Result<Option<(u64, String)>, sqlx::Error> {
        let (Some(upper), Some(count_first), Some(count_from)) = (
            self.upper.clone(),
            self.sql.count_remaining.clone(),
            self.sql.count_remaining_from.clone(),
        ) else {
            return Ok(None);
        };
        let chunk = i64::from(self.job.pacing.max_batch_size)
            .saturating_mul(10)
            .max(1);
        let mut lower: Option<Vec<String>> = None;
        let mut total = 0u64;
        let mut first: Option<String> = None;
        loop {
            let end_query = match &lower {
                None => sqlx::query(AssertSqlSafe(self.sql.end_key.clone())),
                Some(l) => bind_all(sqlx::query(AssertSqlSafe(self.sql.end_key_from.clone())), l),
            };
            let end = match bind_all(end_query, &upper)
                .bind(chunk - 1)
                .fetch_optional(&mut self.conn)
                .await?
            {
                Some(row) => texts(&row)?,
                None => upper.clone(),
            };
            let count_query = match &lower {
                None => sqlx::query_scalar::<_, i64>(AssertSqlSafe(count_first.clone())),
                Some(l) => l.iter().fold(
                    sqlx::query_scalar::<_, i64>(AssertSqlSafe(count_from.clone())),
                    |q, v| q.bind(v.clone()),
                ),
            };
            let count = end
                .iter()
                .fold(count_query, |q, v| q.bind(v.clone()))
                .fetch_one(&mut self.conn)
                .await?;
            if count > 0 && first.is_none() {
                first = Some(self.first_remaining(lower.as_deref(), &end).await?);
            }
            total += u64::try_from(count).unwrap_or(0);
            if end == upper {
                break;
            }
            lower = Some(end);
        }
        Ok(first.map(|key| (total, key)))
    }

    async fn first_remaining(
        &mut self,
        lower: Option<&[String]>,
        end: &[String],
    ) -> Result<String, sqlx::Error> {
        let query = match lower {
            None => sqlx::query(AssertSqlSafe(
                self.sql.first_remaining.clone().unwrap_or_default(),
            )),
            Some(l) => bind_all(
                sqlx::query(AssertSqlSafe(
                    self.sql.first_remaining_from.clone().unwrap_or_default(),
                )),
                l,
            ),
        };
        let row = bind_all(query, end).fetch_optional(&mut self.conn).await?;
        Ok(match row {
            Some(row) => format!("({})", texts(&row)?.join(", ")),
            None => "(unknown)".to_owned(),
        })
    }

    async fn stop(&mut self, state: &str, error: Option<&str>) -> Result<(), BackfillError> {
        self.jobs
            .set_state(&mut self.conn, &self.job.name, state, error)
            .await
            .map_err(BackfillError::query(format!(
                "marking job {} {state}",
                self.job.name
            )))
    }

    fn spec_path(&self) -> String {
        self.job.path.as_ref().map_or_else(
            || format!("jobs/{}.toml", self.job.name),
            |p| p.display().to_string(),
        )
    }
}

/// Keys in (cursor, end]: the size of a short last batch.
async fn count_range(
    sql: &JobSql,
    cursor: Option<&[String]>,
    conn: &mut PgConnection,
    end: &[String],
) -> Result<u64, sqlx::Error> {
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
    Ok(u64::try_from(query.fetch_one(conn).await?).unwrap_or(0))
}

type Query<'q> = sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>;

fn bind_all<'q>(query: Query<'q>, values: &[String]) -> Query<'q> {
    values.iter().fold(query, |q, v| q.bind(v.clone()))
}

fn texts(row: &PgRow) -> Result<Vec<String>, sqlx::Error> {
    (0..row.len())
        .map(|i| row.try_get::<String, _>(i))
        .collect()
}

fn key_of(
    result: Result<Option<PgRow>, sqlx::Error>,
    what: &str,
) -> Result<Option<Vec<String>>, BackfillError> {
    let row = result.map_err(BackfillError::query(what))?;
    row.map(|r| texts(&r))
        .transpose()
        .map_err(BackfillError::query(what))
}
