//! The run of a job: register it (key bounds, and the key space split into ranges), start
//! the workers of this process (`worker`), pass their events on, and complete the job
//! when every range is done and verified.
//!
//! Any number of processes may run the same job at once: PostgreSQL coordinates them through
//! the ranges table (claims with `FOR UPDATE SKIP LOCKED`, leases), so no scheduler is needed.

use std::sync::atomic::AtomicBool;

use chrono::{DateTime, Utc};
use sluice_common::shutdown::Shutdown;
use sqlx::PgConnection;
use tokio::sync::{mpsc, watch};

use crate::catalog::Target;
pub use crate::context::EngineSettings;
use crate::context::{Context, spec_path};
use crate::error::BackfillError;
use crate::event::Event;
use crate::job::Job;
use crate::job::LoadSettings;
use crate::keyspace::KeySpace;
use crate::keytext::{bind_all, integer_key, texts};
use crate::lifecycle::WorkerEnd;
use crate::load::{self, Signal};
use crate::pace::PaceMode;
use crate::probe;
use crate::session::{guarded_connection, ride_out};
use crate::state::Jobs;
use crate::throttle::Throttle;
use crate::window::Limits;
use crate::worker;

mod begin;
mod finish;
mod pulse;
mod start;

use begin::{Begin, Begun, begin_riding_out};
use finish::finish;
use pulse::{Totals, pulse};

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
    job.refuse_schema(&settings.schema)?;
    let jobs = Jobs::new(settings.schema.clone());
    let Begun {
        mut conn,
        target,
        sql,
        row,
        integer_min,
        workers,
    } = match begin_riding_out(settings, &jobs, job, options, shutdown).await? {
        Begin::AlreadyCompleted => return Ok(Outcome::AlreadyCompleted),
        Begin::Paused => return Ok(Outcome::Paused),
        Begin::Ready(begun) => *begun,
    };
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
    // Until the monitor's first reading, the workers wait: a throttle_query that says "wait"
    // must hold the very first batch too.
    let (signal_tx, signal_rx) = watch::channel(Some(Signal {
        reason: crate::throttle::Reason::SignalsUnread,
        detail: "the load signals are being read for the first time".to_owned(),
    }));
    let (pace_link, probe_ends) = probe::link(job.pacing.mode);
    let keys_per_row = keys_per_row(
        integer_min,
        row.upper_bound.as_deref(),
        target.estimated_rows,
    );
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
        keys_per_row,
        key_space: key_space(
            &target,
            integer_min,
            keys_per_row,
            row.estimated_rows.max(target.estimated_rows),
        ),
        initial_batch_size: u32::try_from(row.batch_size)
            .unwrap_or(job.pacing.batch_size)
            .clamp(job.pacing.min_batch_size, job.pacing.max_batch_size),
        load: signal_rx,
        pace: &pace_link,
        workers,
        stop: AtomicBool::new(false),
        process: format!("{}/{}", host_name(), std::process::id()),
    };
    let before = Totals {
        scanned: u64::try_from(row.rows_scanned).unwrap_or(0),
        updated: u64::try_from(row.rows_updated).unwrap_or(0),
    };
    let ends = run_workers(
        &mut conn,
        &ctx,
        &target,
        before,
        Signals {
            load: &signal_tx,
            probe: &probe_ends,
        },
        events,
    )
    .await;
    // The pulse's readings can race with a batch's own event and count it twice; the run's
    // last word on the job's totals is the database's.
    if let Ok(Some(row)) = jobs.load(&mut conn, &job.name).await {
        events(Event::JobTotals {
            rows_scanned: u64::try_from(row.rows_scanned).unwrap_or(0),
            rows_updated: u64::try_from(row.rows_updated).unwrap_or(0),
        });
    }
    let outcome = finish(&mut conn, &ctx, ends, events).await;
    let ended = match &outcome {
        Ok(outcome) => format!("{outcome:?}"),
        Err(error) => format!("failed: {error}"),
    };
    // Best effort: the run's own end is already on the job's row.
    let _ = jobs
        .audit()
        .record(&mut conn, &job.name, "run-end", &ended, &settings.who)
        .await;
    outcome
}

/// This process, as the audit table names it.
fn process_name() -> String {
    format!("{}/{}", host_name(), std::process::id())
}

/// Where the load monitor and the probe publish what the workers follow.
struct Signals<'s> {
    load: &'s watch::Sender<Option<Signal>>,
    probe: &'s probe::ProbeEnds,
}

/// Runs the workers, the load monitor, the pace's probe and the job's pulse (on `conn`),
/// forwarding events with the job's totals: those at the start (`before`), the pulse's
/// readings of every process's committed work, and this process's batches in between.
async fn run_workers(
    conn: &mut PgConnection,
    ctx: &Context<'_>,
    target: &Target,
    before: Totals,
    signals: Signals<'_>,
    events: &mut dyn FnMut(Event),
) -> Vec<Result<WorkerEnd, BackfillError>> {
    say_limits(ctx);
    let (tx, mut rx) = mpsc::unbounded_channel();
    let (stop_tx, stop_rx) = watch::channel(false);
    let all =
        futures_util::future::join_all((0..ctx.workers).map(|n| worker::run(ctx, n, tx.clone())));
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
        signals.load,
        stop_rx.clone(),
    );
    let probe_settings = probe::ProbeSettings {
        connect: ctx.settings.connect.clone(),
        job: ctx.job.name.clone(),
        jobs: ctx.jobs.clone(),
        mode: ctx.job.pacing.mode,
        wal_budget: ctx.job.pacing.max_wal_per_second,
        min_rows_per_second: ctx.job.pacing.min_batch_size,
    };
    let probe = probe::run(
        &probe_settings,
        ctx.pace,
        signals.probe,
        tx.clone(),
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
    let (ends, (), (), (), ()) = tokio::join!(workers_then_stop, monitor, probe, pulse, forward);
    ends
}

/// Says at the start which limits pace the job, and how.
fn say_limits(ctx: &Context<'_>) {
    let pacing = &ctx.job.pacing;
    if pacing.max_rows_per_second > 0 {
        tracing::info!(
            job = %ctx.job.name,
            max_rows_per_second = pacing.max_rows_per_second,
            "max_rows_per_second {} is the job's limit: every process and worker running \
             it draws on one budget kept in the database",
            pacing.max_rows_per_second
        );
    }
    if let Some(bytes) = pacing.max_wal_per_second {
        tracing::info!(
            job = %ctx.job.name,
            max_wal_per_second = bytes,
            "max_wal_per_second {bytes} bytes: the server's WAL rate is kept under it while the \
             job runs (measured from the server's WAL position, per row the job updates)"
        );
    }
    match pacing.mode {
        PaceMode::Auto => tracing::info!(
            job = %ctx.job.name,
            pace = "auto",
            "pace auto: full speed while no other session works; while others do, the job \
             rests between short batches, keeping its impact on a probe's commit latency under \
             {:.2}x",
            crate::pace::TARGET_IMPACT
        ),
        PaceMode::Max => tracing::info!(
            job = %ctx.job.name,
            pace = "max",
            "pace max: no pacing of its own; only the limits and load signals that are set"
        ),
    }
}

/// How ranges of this key can be halved (single integer or uuid keys); `None` otherwise,
/// and for uuids when the table's size is unknown (never analysed).
fn key_space(
    target: &Target,
    integer_min: Option<i64>,
    keys_per_row: f64,
    rows: i64,
) -> Option<KeySpace> {
    if let Some(first) = integer_min {
        return Some(KeySpace::Integer {
            first,
            keys_per_row,
        });
    }
    let uuid = matches!(target.key.as_slice(), [key] if key.type_name == "uuid");
    #[expect(clippy::cast_precision_loss, reason = "an estimate of rows")]
    let rows = rows as f64;
    (uuid && rows > 0.0).then_some(KeySpace::Uuid { rows })
}

/// Keys per row of an integer key space from the planner's estimate (1 when unknown).
fn keys_per_row(min: Option<i64>, upper: Option<&[String]>, estimated_rows: i64) -> f64 {
    let upper = upper.and_then(integer_key);
    match (min, upper) {
        (Some(min), Some(upper)) if estimated_rows > 0 => {
            crate::stepping::IntegerSpan::new(min, upper, estimated_rows).keys_per_row
        }
        _ => 1.0,
    }
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
