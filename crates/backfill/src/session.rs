//! The backfill's connections to the server: through transaction poolers, with the job's
//! guards in every transaction, and riding out what passes by itself (a lock held elsewhere,
//! a restarting server, a lost connection) for bookkeeping queries.

use std::time::Duration;

use sluice_common::db::{self, ConnectSettings, DbError, Pooling};
use sluice_common::retry::{Transient, classify};
use sqlx::{AssertSqlSafe, Connection, PgConnection};

use crate::context::{Context, EngineSettings};
use crate::error::BackfillError;
use crate::job::Job;
use crate::load;

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
