//! The start of a run, from the first connection to the audit row that says it started:
//! sluice's tables, the table and its key, the checks of the spec, the job's row and ranges.
//! A database that goes away on the way (a restart, a failover) sends it back to the top,
//! like the rest of a run rides it out: every step is safe to repeat, as a second `run` is.

use std::time::Instant;

use sluice_common::shutdown::Shutdown;
use sqlx::{AssertSqlSafe, Connection, PgConnection};

use super::start::{key_of, start};
use super::{RunOptions, process_name};
use crate::catalog::{self, Target};
use crate::context::{EngineSettings, spec_path};
use crate::error::BackfillError;
use crate::job::Job;
use crate::lifecycle::Control;
use crate::preflight;
use crate::session::guarded_connection;
use crate::sql::JobSql;
use crate::state::{JobRow, Jobs};
use crate::stepping::is_integer_type;

/// What the start found.
pub(super) enum Begin {
    AlreadyCompleted,
    Paused,
    Ready(Box<Begun>),
}

/// A run ready for its workers, on the connection it started on.
pub(super) struct Begun {
    pub conn: PgConnection,
    pub target: Target,
    pub sql: JobSql,
    pub row: JobRow,
    pub integer_min: Option<i64>,
    pub workers: usize,
}

/// Backoff between tries of the start.
const BACKOFF: sluice_common::retry::Backoff = sluice_common::retry::Backoff {
    initial: std::time::Duration::from_millis(200),
    max: std::time::Duration::from_secs(5),
};

/// [`begin`], again from the top while what failed passes by itself, for as long as the
/// connection settings wait for a server (`connect_wait`), or until a shutdown request.
pub(super) async fn begin_riding_out(
    settings: &EngineSettings,
    jobs: &Jobs,
    job: &Job,
    options: &RunOptions,
    shutdown: &Shutdown,
) -> Result<Begin, BackfillError> {
    let started = Instant::now();
    let mut attempt = 0;
    loop {
        let error = match begin(settings, jobs, job, options).await {
            Ok(begun) => return Ok(begun),
            Err(error) => error,
        };
        let out_of_time = started.elapsed() >= settings.connect.wait;
        if !error.is_transient() || out_of_time || shutdown.is_requested() {
            return Err(error);
        }
        let delay = BACKOFF.delay(attempt);
        tracing::warn!(
            job = %job.name,
            "starting the run failed: {error}; starting again in {}ms",
            delay.as_millis()
        );
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = shutdown.requested() => return Err(error),
        }
        attempt += 1;
    }
}

/// Connects, checks the table, key and spec, and loads or registers the job.
async fn begin(
    settings: &EngineSettings,
    jobs: &Jobs,
    job: &Job,
    options: &RunOptions,
) -> Result<Begin, BackfillError> {
    let mut conn = guarded_connection(settings, job).await?;
    jobs.ensure(&mut conn)
        .await
        .map_err(BackfillError::query(format!("creating {}", jobs.table())))?;
    let target = catalog::inspect(&mut conn, job).await?;
    let sql = JobSql::new(job, &target, jobs.table(), jobs.ranges().table());
    preflight::check_statement(&mut conn, job, &sql, &spec_path(job)).await?;
    preflight::check_row_security(&mut conn, job, &target).await?;
    preflight::check_throttle_query(&mut conn, job, &spec_path(job)).await?;
    preflight::check_replicas(&settings.connect, job, &options.replica_urls).await?;
    let Some(row) = start(&mut conn, jobs, job, &target, &sql, options).await? else {
        return Ok(Begin::AlreadyCompleted);
    };
    if row.control == Control::Pause {
        return Ok(Begin::Paused);
    }
    let integer_min =
        integer_min(&mut conn, job, &target, &sql, row.upper_bound.as_deref()).await?;
    let workers = workers_with_room(&mut conn, job, options.workers.max(1)).await;
    let started = format!(
        "{workers} worker(s) on {}, {} of {} range(s) done before{}{}",
        process_name(),
        row.ranges_done,
        row.ranges,
        if options.accept_spec_change {
            ", --accept-spec-change"
        } else {
            ""
        },
        if options.rescan { ", --rescan" } else { "" },
    );
    jobs.audit()
        .record(&mut conn, &job.name, "run-start", &started, &settings.who)
        .await
        .map_err(BackfillError::query("auditing the run's start"))?;
    Ok(Begin::Ready(Box::new(Begun {
        conn,
        target,
        sql,
        row,
        integer_min,
        workers,
    })))
}

/// The smallest key of a single integer key, for arithmetic stepping (`None` otherwise).
async fn integer_min(
    conn: &mut PgConnection,
    job: &Job,
    target: &Target,
    sql: &JobSql,
    upper: Option<&[String]>,
) -> Result<Option<i64>, BackfillError> {
    let integer = target.key.len() == 1 && is_integer_type(&target.key[0].type_name);
    if !integer || upper.is_none() {
        return Ok(None);
    }
    // Guarded here too: through a transaction pooler the session has no guards, and the
    // table's lock may be held.
    let mut tx = conn
        .begin_with(AssertSqlSafe(crate::session::begin_guarded(job)))
        .await
        .map_err(BackfillError::query("reading the smallest key"))?;
    let min = key_of(
        sqlx::query(AssertSqlSafe(sql.min_key.clone()))
            .fetch_optional(&mut *tx)
            .await,
        "reading the smallest key",
    )?;
    tx.commit()
        .await
        .map_err(BackfillError::query("reading the smallest key"))?;
    Ok(min
        .as_deref()
        .and_then(|m| m.first())
        .and_then(|m| m.parse().ok()))
}

/// How many of the `asked` workers to start: each needs a connection of its own, and the
/// application needs its connections more than the backfill does, so a process takes at
/// most half of the server's free connection slots (and always one worker).
async fn workers_with_room(conn: &mut PgConnection, job: &Job, asked: usize) -> usize {
    let free: Result<i64, sqlx::Error> = sqlx::query_scalar(
        "SELECT current_setting('max_connections')::int
                - current_setting('superuser_reserved_connections')::int
                - coalesce(nullif(current_setting('reserved_connections', true), '')::int, 0)
                - (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend')",
    )
    .fetch_one(conn)
    .await;
    let Ok(free) = free else {
        return asked;
    };
    // The load monitor's and the probe's connections come first.
    let room = usize::try_from((free - 2) / 2).unwrap_or(0).max(1);
    if asked > room {
        tracing::warn!(
            job = %job.name,
            asked,
            starting = room,
            free_connection_slots = free,
            "{asked} workers asked for, but the server has {free} free connection slot(s): \
             starting {room} (at most half of them, so the application keeps its connections)"
        );
    }
    asked.min(room)
}
