//! The run of a job: register it (key bounds, and the key space split into ranges), start
//! the workers of this process ([`crate::worker`]), pass their events on, and complete the job
//! when every range is done and verified.
//!
//! Any number of processes may run the same job at once: PostgreSQL coordinates them through
//! the ranges table (claims with `FOR UPDATE SKIP LOCKED`, leases), so no scheduler is needed.

use std::sync::atomic::AtomicBool;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sluice_common::db::{self, ConnectSettings};
use sluice_common::ident::Ident;
use sluice_common::lock::lock_key;
use sluice_common::shutdown::Shutdown;
use sqlx::postgres::PgRow;
use sqlx::{AssertSqlSafe, Connection, PgConnection, Row};
use tokio::sync::{mpsc, watch};

use crate::catalog::{self, Target};
use crate::error::BackfillError;
use crate::event::Event;
use crate::job::Job;
use crate::load::{self, LoadSettings, Signal};
use crate::split;
use crate::sql::JobSql;
use crate::state::{JobRow, Jobs, control, states};
use crate::stepping::is_integer_type;
use crate::throttle::Throttle;
use crate::window::{Deadline, Limits};
use crate::worker::{self, WorkerEnd};

/// Where and as whom to run.
#[derive(Debug, Clone)]
pub struct EngineSettings {
    pub connect: ConnectSettings,
    /// Schema of sluice's own tables.
    pub schema: Ident,
}

/// Choices of one `run`.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Continue an unfinished job whose table, key, set or where changed.
    pub accept_spec_change: bool,
    /// Start another pass over the whole key range.
    pub rescan: bool,
    /// Workers in this process.
    pub workers: usize,
    pub limits: Limits,
    /// Replicas whose replay lag counts against the job's `max_replication_lag`.
    pub replica_urls: Vec<sluice_common::redact::SecretUrl>,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            accept_spec_change: false,
            rescan: false,
            workers: 1,
            limits: Limits::default(),
            replica_urls: Vec::new(),
        }
    }
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
    /// Stopped by a signal after the last batches committed.
    Interrupted,
    /// Stopped at its deadline (window, max runtime, until); the next run continues.
    LimitReached {
        reason: String,
    },
    /// Started outside its run window: nothing was done.
    OutsideWindow {
        opens_at: DateTime<Utc>,
        window: String,
    },
}

/// What the workers of one run share.
pub(crate) struct Context<'a> {
    pub settings: &'a EngineSettings,
    pub jobs: &'a Jobs,
    pub job: &'a Job,
    pub sql: &'a JobSql,
    pub shutdown: &'a Shutdown,
    pub lease: Duration,
    pub load_settings: LoadSettings,
    /// One rate limiter for the process's workers.
    pub throttle: Throttle,
    pub deadline: Option<Deadline>,
    /// The smallest key, for a single integer key stepped arithmetically.
    pub integer_min: Option<i64>,
    /// Keys per row of the whole key space, for stepping one range of it.
    pub keys_per_row: f64,
    pub initial_batch_size: u32,
    pub load: watch::Receiver<Option<Signal>>,
    /// Set when a worker failed, so that the others stop too.
    pub stop: AtomicBool,
    /// `<host>/<pid>`: owners of leases are `<host>/<pid>/w<n>`.
    pub process: String,
}

impl Context<'_> {
    pub fn spec_path(&self) -> String {
        spec_path(self.job)
    }
}

/// Where the job's spec is, for messages that say what to edit or run.
fn spec_path(job: &Job) -> String {
    job.path.as_ref().map_or_else(
        || format!("jobs/{}.toml", job.name),
        |p| p.display().to_string(),
    )
}

/// Runs (or resumes, or joins) `job` until it completes, pauses, is cancelled, interrupted or
/// reaches its deadline.
pub async fn run(
    settings: &EngineSettings,
    job: &Job,
    options: &RunOptions,
    shutdown: &Shutdown,
    events: &mut dyn FnMut(Event),
) -> Result<Outcome, BackfillError> {
    let deadline = match options.limits.deadline(Utc::now()) {
        Ok(deadline) => deadline,
        Err(closed) => {
            return Ok(Outcome::OutsideWindow {
                opens_at: closed.opens_at,
                window: closed.window,
            });
        }
    };
    let jobs = Jobs::new(settings.schema.clone());
    let mut conn = guarded_connection(settings, job).await?;
    jobs.ensure(&mut conn)
        .await
        .map_err(BackfillError::query(format!("creating {}", jobs.table())))?;
    let target = catalog::inspect(&mut conn, job).await?;
    if let Some(query) = &job.load.throttle_query {
        load::try_throttle_query(&mut conn, query)
            .await
            .map_err(|problem| BackfillError::ThrottleQuery {
                job: job.name.clone(),
                problem,
                spec: spec_path(job),
            })?;
    }
    let sql = JobSql::new(job, &target, jobs.table(), jobs.ranges().table());
    let Some(row) = start(&mut conn, &jobs, job, &target, &sql, options).await? else {
        return Ok(Outcome::AlreadyCompleted);
    };
    if row.control == control::PAUSE {
        return Ok(Outcome::Paused);
    }
    let integer_min = integer_min(&mut conn, &target, &sql, row.upper_bound.as_deref()).await?;
    let workers = options.workers.max(1);
    events(Event::Started {
        job: job.name.clone(),
        resumed: row.batches > 0,
        rows_scanned: u64::try_from(row.rows_scanned).unwrap_or(0),
        rows_updated: u64::try_from(row.rows_updated).unwrap_or(0),
        estimated_rows: u64::try_from(row.estimated_rows.max(target.estimated_rows)).unwrap_or(0),
        batch_size: job.pacing.batch_size,
        workers,
        ranges: row.ranges,
        ranges_done: row.ranges_done,
        deadline: deadline.clone(),
    });
    let (signal_tx, signal_rx) = watch::channel(None);
    let ctx = Context {
        settings,
        jobs: &jobs,
        job,
        sql: &sql,
        shutdown,
        lease: job.parallel.lease,
        load_settings: LoadSettings {
            replica_urls: options.replica_urls.clone(),
            ..job.load.clone()
        },
        throttle: Throttle::new(&job.pacing),
        deadline,
        integer_min,
        keys_per_row: keys_per_row(
            integer_min,
            row.upper_bound.as_deref(),
            target.estimated_rows,
        ),
        initial_batch_size: u32::try_from(row.batch_size)
            .unwrap_or(job.pacing.batch_size)
            .clamp(job.pacing.min_batch_size, job.pacing.max_batch_size),
        load: signal_rx,
        stop: AtomicBool::new(false),
        process: format!("{}/{}", host_name(), std::process::id()),
    };
    let before = Totals {
        scanned: u64::try_from(row.rows_scanned).unwrap_or(0),
        updated: u64::try_from(row.rows_updated).unwrap_or(0),
    };
    let ends = run_workers(
        &mut conn, &ctx, &target, workers, before, &signal_tx, events,
    )
    .await;
    finish(&mut conn, &ctx, ends, events).await
}

/// Runs the workers, the load monitor and the job's pulse (on `conn`), forwarding events
/// with the job's totals: those at the start (`before`), the pulse's readings of every
/// process's committed work, and this process's batches in between.
async fn run_workers(
    conn: &mut PgConnection,
    ctx: &Context<'_>,
    target: &Target,
    workers: usize,
    before: Totals,
    signal: &watch::Sender<Option<Signal>>,
    events: &mut dyn FnMut(Event),
) -> Vec<Result<WorkerEnd, BackfillError>> {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let (stop_tx, stop_rx) = watch::channel(false);
    let all = futures_util::future::join_all((0..workers).map(|n| worker::run(ctx, n, tx.clone())));
    let workers_then_stop = async {
        let ends = all.await;
        let _ = stop_tx.send(true);
        ends
    };
    let table = target.table.to_string();
    let monitor = load::monitor(
        &ctx.settings.connect,
        &ctx.load_settings,
        &ctx.job.name,
        &table,
        signal,
        stop_rx.clone(),
    );
    let pulse = pulse(conn, ctx, tx, stop_rx);
    let forward = async {
        let mut totals = before;
        while let Some(mut event) = rx.recv().await {
            match &mut event {
                Event::Batch(batch) => {
                    totals.scanned += batch.rows_scanned;
                    totals.updated += batch.rows_updated;
                    batch.total_scanned = totals.scanned;
                    batch.total_updated = totals.updated;
                }
                Event::JobTotals {
                    rows_scanned,
                    rows_updated,
                } => {
                    totals = Totals {
                        scanned: *rows_scanned,
                        updated: *rows_updated,
                    };
                }
                _ => {}
            }
            events(event);
        }
    };
    let (ends, (), (), ()) = tokio::join!(workers_then_stop, monitor, pulse, forward);
    ends
}

/// Rows of a job scanned and updated, by every process and run.
#[derive(Debug, Clone, Copy, Default)]
struct Totals {
    scanned: u64,
    updated: u64,
}

/// Every `load_check_interval` until `stop`: reads the job's totals (every process's
/// committed batches) for progress and ETA, and keeps this process's share of the job's
/// `max_rows_per_second` in step with the number of processes holding its ranges.
async fn pulse(
    conn: &mut PgConnection,
    ctx: &Context<'_>,
    events: mpsc::UnboundedSender<Event>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            () = tokio::time::sleep(ctx.load_settings.check_interval) => {}
            _ = stop.changed() => return,
        }
        match ctx.jobs.load(conn, &ctx.job.name).await {
            Ok(Some(row)) => {
                let _ = events.send(Event::JobTotals {
                    rows_scanned: u64::try_from(row.rows_scanned).unwrap_or(0),
                    rows_updated: u64::try_from(row.rows_updated).unwrap_or(0),
                });
            }
            Ok(None) => {}
            Err(error) => tracing::warn!(
                "reading job {}'s progress: {}; progress shows this process's batches only",
                ctx.job.name,
                db::explain(&error)
            ),
        }
        if ctx.throttle.is_limited() {
            share_rate(conn, ctx).await;
        }
    }
}

/// Takes this process's share of the job's `max_rows_per_second`: the limit is the job's,
/// not each pod's.
async fn share_rate(conn: &mut PgConnection, ctx: &Context<'_>) {
    let job = &ctx.job.name;
    match ctx
        .jobs
        .ranges()
        .other_processes(conn, job, &ctx.process)
        .await
    {
        Ok(others) => {
            let processes = u32::try_from(others).unwrap_or(u32::MAX).saturating_add(1);
            if let Some(rate) = ctx.throttle.share(processes) {
                tracing::info!(
                    job = %job,
                    processes,
                    "max_rows_per_second {} shared by {processes} process(es) running job {job}: this one writes up to {rate} rows/s",
                    ctx.job.pacing.max_rows_per_second
                );
            }
        }
        Err(error) => tracing::warn!(
            "reading which processes share job {job}'s max_rows_per_second: {}; keeping the last share",
            db::explain(&error)
        ),
    }
}

/// Turns the workers' ends into the run's outcome, recording the job's state.
async fn finish(
    conn: &mut PgConnection,
    ctx: &Context<'_>,
    ends: Vec<Result<WorkerEnd, BackfillError>>,
    events: &mut dyn FnMut(Event),
) -> Result<Outcome, BackfillError> {
    let finished = ends.into_iter().collect::<Result<Vec<WorkerEnd>, _>>()?;
    let (jobs, name) = (ctx.jobs, &ctx.job.name);
    let has = |end: WorkerEnd| finished.contains(&end);
    let marking = |state: &str| BackfillError::query(format!("marking job {name} {state}"));
    if has(WorkerEnd::Cancelled) {
        jobs.set_state(conn, name, states::CANCELLED, None)
            .await
            .map_err(marking(states::CANCELLED))?;
        return Ok(Outcome::Cancelled);
    }
    if has(WorkerEnd::Paused) {
        jobs.set_state(conn, name, states::PAUSED, None)
            .await
            .map_err(marking(states::PAUSED))?;
        return Ok(Outcome::Paused);
    }
    if has(WorkerEnd::Interrupted) || has(WorkerEnd::Deadline) || has(WorkerEnd::Stopped) {
        jobs.set_state_if_idle(conn, name, states::STOPPED)
            .await
            .map_err(marking(states::STOPPED))?;
        return Ok(match &ctx.deadline {
            Some(deadline) if has(WorkerEnd::Deadline) => Outcome::LimitReached {
                reason: deadline.reason.clone(),
            },
            _ => Outcome::Interrupted,
        });
    }
    complete(conn, ctx, events).await
}

/// Every range is done: verifies any range whose worker died before verifying it, then
/// completes the job, or fails it when rows still match `where`.
async fn complete(
    conn: &mut PgConnection,
    ctx: &Context<'_>,
    events: &mut dyn FnMut(Event),
) -> Result<Outcome, BackfillError> {
    let (jobs, job) = (ctx.jobs, ctx.job);
    let unverified = jobs
        .ranges()
        .unverified(conn, &job.name)
        .await
        .map_err(BackfillError::query("reading unverified ranges"))?;
    for range in unverified {
        let remaining = count_remaining(conn, ctx.sql, job, range.lower.clone(), &range.upper)
            .await
            .map_err(BackfillError::query("verifying a range"))?;
        jobs.ranges()
            .verified(
                conn,
                &job.name,
                range.range_no,
                i64::try_from(remaining).unwrap_or(i64::MAX),
            )
            .await
            .map_err(BackfillError::query("recording a range's verification"))?;
    }
    let summary = jobs
        .ranges()
        .summary(conn, &job.name)
        .await
        .map_err(BackfillError::query("reading the job's ranges"))?;
    let remaining = u64::try_from(summary.rows_unverified).unwrap_or(0);
    events(Event::Verified { remaining });
    if remaining > 0 {
        let upper = jobs
            .load(conn, &job.name)
            .await
            .ok()
            .flatten()
            .and_then(|r| r.upper_bound)
            .unwrap_or_default();
        let first_key = first_remaining(conn, ctx.sql, &upper)
            .await
            .unwrap_or_else(|_| "(unknown)".into());
        let error = BackfillError::Unverified {
            job: job.name.clone(),
            remaining,
            first_key,
            spec: ctx.spec_path(),
        };
        let _ = jobs
            .set_state(conn, &job.name, states::FAILED, Some(&error.to_string()))
            .await;
        return Err(error);
    }
    if !jobs
        .complete_if_done(conn, &job.name)
        .await
        .map_err(BackfillError::query("completing the job"))?
    {
        return Ok(Outcome::Interrupted);
    }
    let row = jobs
        .load(conn, &job.name)
        .await
        .map_err(BackfillError::query("reading the job"))?;
    Ok(Outcome::Completed {
        rows_updated: row
            .as_ref()
            .map_or(0, |r| u64::try_from(r.rows_updated).unwrap_or(0)),
        batches: row
            .as_ref()
            .map_or(0, |r| u64::try_from(r.batches).unwrap_or(0)),
    })
}

/// Loads the job's row, or registers the job with its key bounds and ranges; refuses a
/// changed spec or a cancelled job. `None` when it is already complete.
async fn start(
    conn: &mut PgConnection,
    jobs: &Jobs,
    job: &Job,
    target: &Target,
    sql: &JobSql,
    options: &RunOptions,
) -> Result<Option<JobRow>, BackfillError> {
    let loaded = jobs
        .load(conn, &job.name)
        .await
        .map_err(BackfillError::query(format!("reading job {}", job.name)))?;
    let Some(row) = loaded else {
        register(conn, jobs, job, target, sql).await?;
        return jobs
            .load(conn, &job.name)
            .await
            .map_err(BackfillError::query("reading the job"));
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
    if let Some(upper) = &row.upper_bound {
        // A job started by an older sluice, or rescanned, has no ranges yet.
        let lower = if options.rescan {
            None
        } else {
            row.cursor.clone()
        };
        split_once(
            conn,
            jobs,
            &job.name,
            sql,
            target,
            upper,
            lower,
            job.parallel.ranges,
        )
        .await?;
    }
    if row.control != control::PAUSE {
        jobs.set_state(conn, &job.name, states::RUNNING, None)
            .await
            .map_err(BackfillError::query("marking the job running"))?;
    }
    jobs.load(conn, &job.name)
        .await
        .map_err(BackfillError::query("reading the job"))
}

/// Registers a new job with its key bounds and ranges in one transaction; when several
/// processes start it at once, one registers and the others wait for it and join.
async fn register(
    conn: &mut PgConnection,
    jobs: &Jobs,
    job: &Job,
    target: &Target,
    sql: &JobSql,
) -> Result<(), BackfillError> {
    let what = format!("registering job {}", job.name);
    let mut tx = conn
        .begin()
        .await
        .map_err(BackfillError::query(what.clone()))?;
    let upper = key_of(
        sqlx::query(AssertSqlSafe(sql.max_key.clone()))
            .fetch_optional(&mut *tx)
            .await,
        "capturing the key bounds",
    )?;
    let keys: Vec<String> = job.key.iter().map(|k| k.as_str().to_owned()).collect();
    let spec_path = job.path.as_ref().map(|p| p.display().to_string());
    let registered = jobs
        .register(
            &mut tx,
            &job.name,
            &job.table.to_string(),
            &keys,
            &job.spec_checksum,
            spec_path.as_deref(),
            upper.as_deref(),
            job.pacing.batch_size,
            target.estimated_rows,
        )
        .await
        .map_err(BackfillError::query(what.clone()))?;
    if registered && let Some(upper) = &upper {
        let splits = split_keys(&mut tx, sql, target, upper, job.parallel.ranges).await?;
        jobs.ranges()
            .create(&mut tx, &job.name, None, &splits, upper)
            .await
            .map_err(BackfillError::query(what.clone()))?;
    }
    tx.commit().await.map_err(BackfillError::query(what))
}

/// Creates the ranges of a job that has none (one process does, under a lock).
#[expect(clippy::too_many_arguments, reason = "the job's parts, each needed")]
async fn split_once(
    conn: &mut PgConnection,
    jobs: &Jobs,
    name: &str,
    sql: &JobSql,
    target: &Target,
    upper: &[String],
    lower: Option<Vec<String>>,
    ranges: u32,
) -> Result<(), BackfillError> {
    let what = format!("splitting job {name} into ranges");
    let mut tx = conn
        .begin()
        .await
        .map_err(BackfillError::query(what.clone()))?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(lock_key(&format!("sluice:backfill-split:{name}")))
        .execute(&mut *tx)
        .await
        .map_err(BackfillError::query(what.clone()))?;
    let count = jobs
        .ranges()
        .count(&mut tx, name)
        .await
        .map_err(BackfillError::query(what.clone()))?;
    if count == 0 {
        // Resuming a job from before ranges: one range from where it stopped.
        let splits = match &lower {
            None => split_keys(&mut tx, sql, target, upper, ranges).await?,
            Some(_) => Vec::new(),
        };
        jobs.ranges()
            .create(&mut tx, name, lower.as_deref(), &splits, upper)
            .await
            .map_err(BackfillError::query(what.clone()))?;
    }
    tx.commit().await.map_err(BackfillError::query(what))
}

/// Split keys from a sample of the table's keys.
async fn split_keys(
    conn: &mut PgConnection,
    sql: &JobSql,
    target: &Target,
    upper: &[String],
    ranges: u32,
) -> Result<Vec<Vec<String>>, BackfillError> {
    if ranges <= 1 {
        return Ok(Vec::new());
    }
    let bytes: i64 = sqlx::query_scalar("SELECT coalesce(pg_relation_size(to_regclass($1)), 0)")
        .bind(target.table.to_string())
        .fetch_one(&mut *conn)
        .await
        .map_err(BackfillError::query("measuring the table"))?;
    #[expect(
        clippy::cast_possible_truncation,
        reason = "a percentage fits a float4"
    )]
    let percent = split::sample_percent(target.estimated_rows, bytes, ranges) as f32;
    let rows = bind_all(
        sqlx::query(AssertSqlSafe(sql.split_keys.clone())).bind(percent),
        upper,
    )
    .bind(i64::from(ranges))
    .fetch_all(&mut *conn)
    .await
    .map_err(BackfillError::query("sampling keys to split the job"))?;
    rows.iter()
        .map(texts)
        .collect::<Result<Vec<_>, _>>()
        .map_err(BackfillError::query("sampling keys to split the job"))
}

/// The smallest key of a single integer key, for arithmetic stepping (`None` otherwise).
async fn integer_min(
    conn: &mut PgConnection,
    target: &Target,
    sql: &JobSql,
    upper: Option<&[String]>,
) -> Result<Option<i64>, BackfillError> {
    let integer = target.key.len() == 1 && is_integer_type(&target.key[0].type_name);
    if !integer || upper.is_none() {
        return Ok(None);
    }
    let min = key_of(
        sqlx::query(AssertSqlSafe(sql.min_key.clone()))
            .fetch_optional(&mut *conn)
            .await,
        "reading the smallest key",
    )?;
    Ok(min
        .as_deref()
        .and_then(|m| m.first())
        .and_then(|m| m.parse().ok()))
}

/// Keys per row of an integer key space from the planner's estimate (1 when unknown).
fn keys_per_row(min: Option<i64>, upper: Option<&[String]>, estimated_rows: i64) -> f64 {
    let upper = upper.map(parse_integer);
    match (min, upper) {
        (Some(min), Some(upper)) if estimated_rows > 0 => {
            crate::stepping::IntegerSpan::new(min, upper, estimated_rows).keys_per_row
        }
        _ => 1.0,
    }
}

/// A worker's connection: the job's guards for the session (batches set them again
/// locally), standard strings for the batch statements' quoting, and the job's
/// application_name, by which the load monitor tells the backfill's sessions from others.
pub(crate) async fn guarded_connection(
    settings: &EngineSettings,
    job: &Job,
) -> Result<PgConnection, BackfillError> {
    let mut conn = db::connect(&settings.connect).await?;
    sqlx::raw_sql(AssertSqlSafe(format!(
        "SET standard_conforming_strings = on; SET lock_timeout = '{}ms'; SET statement_timeout = '{}ms'; SET application_name = {}",
        job.guards.lock_timeout.as_millis().max(1),
        job.guards.statement_timeout.as_millis().max(1),
        sluice_common::ident::quote_literal(&load::worker_application_name(&job.name))
    )))
    .execute(&mut conn)
    .await
    .map_err(BackfillError::query("setting the batch guards"))?;
    Ok(conn)
}

/// Rows in (lower, upper] still matching `where`, counted in bounded chunks so that no
/// single query runs long. 0 without a `where`.
pub(crate) async fn count_remaining(
    conn: &mut PgConnection,
    sql: &JobSql,
    job: &Job,
    mut lower: Option<Vec<String>>,
    upper: &[String],
) -> Result<u64, sqlx::Error> {
    let (Some(count_first), Some(count_from)) = (&sql.count_remaining, &sql.count_remaining_from)
    else {
        return Ok(0);
    };
    let chunk = i64::from(job.pacing.max_batch_size)
        .saturating_mul(10)
        .max(1);
    let mut total = 0u64;
    loop {
        let end_query = match &lower {
            None => sqlx::query(AssertSqlSafe(sql.end_key.clone())),
            Some(l) => bind_all(sqlx::query(AssertSqlSafe(sql.end_key_from.clone())), l),
        };
        let end = match bind_all(end_query, upper)
            .bind(chunk - 1)
            .fetch_optional(&mut *conn)
            .await?
        {
            Some(row) => texts(&row)?,
            None => upper.to_vec(),
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
            .fetch_one(&mut *conn)
            .await?;
        total += u64::try_from(count).unwrap_or(0);
        if end.as_slice() == upper {
            return Ok(total);
        }
        lower = Some(end);
    }
}

/// The first key up to `upper` still matching `where`, for the verification error.
async fn first_remaining(
    conn: &mut PgConnection,
    sql: &JobSql,
    upper: &[String],
) -> Result<String, sqlx::Error> {
    let Some(text) = &sql.first_remaining else {
        return Ok("(unknown)".to_owned());
    };
    let row = bind_all(sqlx::query(AssertSqlSafe(text.clone())), upper)
        .fetch_optional(conn)
        .await?;
    Ok(match row {
        Some(row) => format!("({})", texts(&row)?.join(", ")),
        None => "(unknown)".to_owned(),
    })
}

/// This machine's name (the pod's name on Kubernetes), for lease owners.
fn host_name() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}

/// A single integer key from its text (keys of integer columns always parse).
pub(crate) fn parse_integer(key: &[String]) -> i64 {
    key.first().and_then(|k| k.parse().ok()).unwrap_or_default()
}

type Query<'q> = sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>;

pub(crate) fn bind_all<'q>(query: Query<'q>, values: &[String]) -> Query<'q> {
    values.iter().fold(query, |q, v| q.bind(v.clone()))
}

pub(crate) fn texts(row: &PgRow) -> Result<Vec<String>, sqlx::Error> {
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
