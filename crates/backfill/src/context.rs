//! What the workers of one run share, and the helpers every batch and bookkeeping query
//! uses: the run's settings and job, a worker's guarded connection, and riding out what
//! passes by itself (lock timeouts, a restarting server). Below the engine and its workers,
//! so that neither imports the other.

use std::sync::atomic::AtomicBool;
use std::time::Duration;

use sluice_common::db::{self, ConnectSettings};
use sluice_common::ident::Ident;
use sluice_common::retry::{Transient, classify};
use sluice_common::shutdown::Shutdown;
use sqlx::postgres::PgRow;
use sqlx::{AssertSqlSafe, PgConnection, Row};
use tokio::sync::watch;

use crate::error::BackfillError;
use crate::job::{Job, LoadSettings};
use crate::keyspace::KeySpace;
use crate::load::{self, Signal};
use crate::probe::PaceLink;
use crate::sql::JobSql;
use crate::state::Jobs;
use crate::throttle::Throttle;
use crate::window::Deadline;

/// Where and as whom to run.
#[derive(Debug, Clone)]
pub struct EngineSettings {
    pub connect: ConnectSettings,
    /// Schema of sluice's own tables.
    pub schema: Ident,
    /// Who acts, for the audit table.
    pub who: crate::audit::Who,
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
    /// How to halve a busy range for an idle worker; `None`: ranges are not split.
    pub key_space: Option<KeySpace>,
    pub initial_batch_size: u32,
    pub load: watch::Receiver<Option<Signal>>,
    /// The pace and WAL budget the probe publishes, and the batches in flight it watches.
    pub pace: &'a PaceLink,
    /// Workers in this process (each rests for its share of the pace's duty).
    pub workers: usize,
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
pub(crate) fn spec_path(job: &Job) -> String {
    job.path.as_ref().map_or_else(
        || format!("jobs/{}.toml", job.name),
        |p| p.display().to_string(),
    )
}

/// A worker's connection: the job's guards for the session (batches set them again
/// locally), standard strings for the batch statements' quoting, and the job's
/// application_name, by which the load monitor tells the backfill's sessions from others.
pub(crate) async fn guarded_connection(
    settings: &EngineSettings,
    job: &Job,
) -> Result<PgConnection, BackfillError> {
    let mut conn = db::connect_primary(&settings.connect).await?;
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

/// Runs `op` (a bookkeeping query: claim, renew, verify, the job's state) on `conn`, riding
/// out what passes by itself: a lock held elsewhere, a restarting server, a lost connection
/// (reconnected with the job's guards), for up to the connect wait. Anything else, or a
/// longer outage, is an error naming `what`.
pub(crate) async fn ride_out<T>(
    conn: &mut PgConnection,
    ctx: &Context<'_>,
    what: &str,
    mut op: impl AsyncFnMut(&mut PgConnection) -> Result<T, sqlx::Error>,
) -> Result<T, BackfillError> {
    let started = std::time::Instant::now();
    let mut attempt = 0;
    loop {
        let error = match op(conn).await {
            Ok(value) => return Ok(value),
            Err(error) => error,
        };
        let give_up = started.elapsed() >= ctx.settings.connect.wait;
        let Some(kind) = classify(&error).filter(|_| !give_up) else {
            return Err(BackfillError::Query {
                what: what.to_owned(),
                error,
            });
        };
        let delay = RIDE_OUT_BACKOFF.delay(attempt);
        tracing::warn!(
            job = %ctx.job.name,
            "{what} failed ({}): {}; retrying in {}ms",
            kind.as_str(),
            db::explain(&error),
            delay.as_millis()
        );
        tokio::time::sleep(delay).await;
        if kind == Transient::ConnectionLost {
            *conn = guarded_connection(ctx.settings, ctx.job).await?;
        }
        attempt += 1;
    }
}

/// Backoff between tries of a bookkeeping query.
const RIDE_OUT_BACKOFF: sluice_common::retry::Backoff = sluice_common::retry::Backoff {
    initial: Duration::from_millis(100),
    max: Duration::from_secs(5),
};

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
