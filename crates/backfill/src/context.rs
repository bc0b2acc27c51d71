//! What the workers of one run share, and the helpers every batch and bookkeeping query
//! uses: the run's settings and job, a worker's guarded connection, and riding out what
//! passes by itself (lock timeouts, a restarting server). Below the engine and its workers,
//! so that neither imports the other.

use std::sync::atomic::AtomicBool;
use std::time::Duration;

use sluice_common::db::{self, ConnectSettings, DbError, Pooling};
use sluice_common::ident::Ident;
use sluice_common::retry::{Transient, classify};
use sluice_common::shutdown::Shutdown;
use sqlx::postgres::PgRow;
use sqlx::{AssertSqlSafe, Connection, PgConnection, Row};
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

/// A connection of the backfill's: it works through a pooler in transaction pooling mode
/// ([`Pooling::Transaction`]), so nothing it leaves in a session may matter.
pub(crate) async fn connect(settings: &ConnectSettings) -> Result<PgConnection, DbError> {
    db::connect(&through_poolers(settings)).await
}

fn through_poolers(settings: &ConnectSettings) -> ConnectSettings {
    ConnectSettings {
        pooling: Pooling::Transaction,
        ..settings.clone()
    }
}

/// A worker's connection, to a primary: standard strings for the batch statements' quoting,
/// and the job's application_name, by which the load monitor tells the backfill's sessions
/// from others. Both are parameters the server reports to the client, which a transaction
/// pooler keeps per client and sets again on whichever server connection it hands the client
/// (PgBouncer's tracked parameters). The job's guards are set for the session only on a
/// direct connection (through a transaction pooler they would reach other clients'
/// transactions); every transaction sets them locally as well ([`ride_out`], the batches).
pub(crate) async fn guarded_connection(
    settings: &EngineSettings,
    job: &Job,
) -> Result<PgConnection, BackfillError> {
    let db::Connected {
        mut connection,
        pooled,
    } = db::connect_primary_routed(&through_poolers(&settings.connect)).await?;
    let session_guards = if pooled {
        tracing::debug!(job = %job.name, "a transaction pooler is in between: guards are set in each transaction only");
        String::new()
    } else {
        format!(
            "SET lock_timeout = '{}ms'; SET statement_timeout = '{}ms'; ",
            job.guards.lock_timeout.as_millis().max(1),
            job.guards.statement_timeout.as_millis().max(1),
        )
    };
    sqlx::raw_sql(AssertSqlSafe(format!(
        "{session_guards}SET standard_conforming_strings = on; SET application_name = {}",
        sluice_common::ident::quote_literal(&load::worker_application_name(&job.name))
    )))
    .execute(&mut connection)
    .await
    .map_err(BackfillError::query("setting up the worker's session"))?;
    Ok(connection)
}

/// `BEGIN` with the job's guards for this transaction only: a session setting would stay on
/// a pooled server connection and reach the next client's transactions.
pub(crate) fn begin_guarded(job: &Job) -> String {
    format!(
        "BEGIN; SET LOCAL lock_timeout = '{}ms'; SET LOCAL statement_timeout = '{}ms'",
        job.guards.lock_timeout.as_millis().max(1),
        job.guards.statement_timeout.as_millis().max(1),
    )
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
        let error = match guarded(conn, ctx.job, &mut op).await {
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

/// `op` in a transaction of its own under the job's guards, committed when it succeeds and
/// rolled back when it fails (an `op` that begins a transaction gets a savepoint).
async fn guarded<T>(
    conn: &mut PgConnection,
    job: &Job,
    op: &mut impl AsyncFnMut(&mut PgConnection) -> Result<T, sqlx::Error>,
) -> Result<T, sqlx::Error> {
    let mut tx = conn.begin_with(AssertSqlSafe(begin_guarded(job))).await?;
    let value = op(&mut tx).await?;
    tx.commit().await?;
    Ok(value)
}

/// Backoff between tries of a bookkeeping query.
const RIDE_OUT_BACKOFF: sluice_common::retry::Backoff = sluice_common::retry::Backoff {
    initial: Duration::from_millis(100),
    max: Duration::from_secs(5),
};

/// A single integer key from its text; `None` for anything else, which arithmetic stepping
/// then leaves to the index (never a made-up key).
pub(crate) fn integer_key(key: &[String]) -> Option<i64> {
    match key {
        [single] => single.parse().ok(),
        _ => None,
    }
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

#[cfg(test)]
mod tests {
    use super::integer_key;

    #[test]
    fn only_a_single_integer_key_is_a_number() {
        let key = |parts: &[&str]| parts.iter().map(|p| (*p).to_owned()).collect::<Vec<_>>();
        assert_eq!(integer_key(&key(&["-42"])), Some(-42));
        assert_eq!(integer_key(&key(&["9223372036854775807"])), Some(i64::MAX));
        // Not 0: nothing.
        assert_eq!(integer_key(&key(&["abc"])), None);
        assert_eq!(integer_key(&key(&["1", "2"])), None);
        assert_eq!(integer_key(&key(&[])), None);
    }
}
