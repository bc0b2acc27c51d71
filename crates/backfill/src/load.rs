//! Load-aware throttling: a monitor polls the database for signs that the backfill hurts
//! others, and workers wait before their next batch while a signal is up.
//!
//! Signals, each configurable: application sessions waiting on locks the backfill holds
//! (`pg_blocking_pids`); a lock request (a DDL) queued on the target table; replication lag
//! (from `pg_stat_replication` on the primary, or from replica URLs); a user `throttle_query`
//! that returns true. A signal stays up for `cooldown` after it was last seen, so what queued
//! behind a batch drains before the next one.

use std::time::{Duration, Instant};

use sluice_common::db::{self, ConnectSettings};
use sluice_common::redact::SecretUrl;
use sqlx::{Connection, PgConnection, Row};
use tokio::sync::watch;

use crate::throttle::Reason;

pub use crate::job::LoadSettings;

/// A signal that is up.
#[derive(Debug, Clone, PartialEq)]
pub struct Signal {
    pub reason: Reason,
    /// What was seen, for logs and status: `2 session(s) wait on the backfill: app (pid 7)`.
    pub detail: String,
}

/// The application_name of a job's worker sessions, so the monitor (of any process running
/// the job) can tell them from the sessions they might block.
pub fn worker_application_name(job: &str) -> String {
    let mut name = format!("sluice-backfill {job}");
    // PostgreSQL keeps the first 63 bytes.
    while name.len() > 63 {
        name.pop();
    }
    name
}

/// Polls the signals until `stop` is dropped or set, publishing the current one.
pub async fn monitor(
    connect: &ConnectSettings,
    settings: &LoadSettings,
    job: &str,
    table: &str,
    signal: &watch::Sender<Option<Signal>>,
    mut stop: watch::Receiver<bool>,
) {
    let mut conn = crate::session::connect(connect).await.ok();
    let mut replicas: Vec<Replica> = settings
        .replica_urls
        .iter()
        .map(|url| Replica::new(url.clone()))
        .collect();
    let mut last: Option<(Signal, Instant)> = None;
    let mut blind = Blind::default();
    let workers = worker_application_name(job);
    loop {
        let checked = match conn.as_mut() {
            Some(c) => check(c, settings, &workers, table, &mut replicas).await,
            None => match reconnect(connect).await {
                Ok(fresh) => {
                    check(conn.insert(fresh), settings, &workers, table, &mut replicas).await
                }
                Err(problem) => Err(problem),
            },
        };
        let seen = match checked {
            Ok(seen) => {
                blind.ended(job);
                seen
            }
            Err(problem) => {
                // A dead connection is replaced at the next check; until the signals can be
                // read, the workers hold (fail safe), never run unwatched.
                if let Some(c) = conn.as_mut()
                    && sqlx::query("SELECT 1").execute(&mut *c).await.is_err()
                {
                    conn = None;
                }
                blind.seen(job, &problem);
                Some(Signal {
                    reason: Reason::SignalsUnread,
                    detail: format!("the load signals cannot be read: {problem}"),
                })
            }
        };
        let now = Instant::now();
        if let Some(seen) = seen {
            last = Some((seen, now));
        }
        let current = last
            .as_ref()
            .filter(|(_, at)| {
                now.duration_since(*at) < settings.cooldown.max(settings.check_interval)
            })
            .map(|(s, _)| s.clone());
        signal.send_if_modified(|old| {
            let changed = *old != current;
            old.clone_from(&current);
            changed
        });
        tokio::select! {
            () = tokio::time::sleep(settings.check_interval) => {}
            _ = stop.changed() => return,
        }
    }
}

/// A connection for the monitor, tried once: the next check tries again, so the monitor keeps
/// its interval while the server is away.
async fn reconnect(connect: &ConnectSettings) -> Result<PgConnection, String> {
    let once = ConnectSettings {
        attempts: 1,
        connect_timeout: connect.connect_timeout.min(Duration::from_secs(2)),
        ..connect.clone()
    };
    crate::session::connect(&once)
        .await
        .map_err(|e| format!("cannot connect ({e})"))
}

/// When the monitor could not read its signals: said when it starts and every 30 s while it
/// lasts, and when it ends, rather than once per check.
#[derive(Debug, Default)]
struct Blind {
    since: Option<Instant>,
    said: Option<Instant>,
}

impl Blind {
    fn seen(&mut self, job: &str, problem: &str) {
        let now = Instant::now();
        self.since.get_or_insert(now);
        if self
            .said
            .is_none_or(|at| now.duration_since(at) >= Duration::from_secs(30))
        {
            tracing::warn!(
                job = %job,
                "the load signals cannot be read: {problem}; the workers wait until they can"
            );
            self.said = Some(now);
        }
    }

    fn ended(&mut self, job: &str) {
        if let Some(since) = self.since.take() {
            tracing::info!(
                job = %job,
                "the load signals are read again after {:.1}s; the workers go on",
                since.elapsed().as_secs_f64()
            );
        }
        self.said = None;
    }
}

/// The first signal that is up, in order of urgency.
async fn check(
    conn: &mut PgConnection,
    settings: &LoadSettings,
    workers: &str,
    table: &str,
    replicas: &mut [Replica],
) -> Result<Option<Signal>, String> {
    let explain = |e: sqlx::Error| db::explain(&e);
    if settings.blocked_sessions
        && let Some(signal) = blocked_sessions(conn, workers).await.map_err(explain)?
    {
        return Ok(Some(signal));
    }
    if settings.lock_queue
        && let Some(signal) = lock_queue(conn, table, workers).await.map_err(explain)?
    {
        return Ok(Some(signal));
    }
    if let Some(max) = settings.max_replication_lag
        && let Some(signal) = replication_lag(conn, replicas, max)
            .await
            .map_err(explain)?
    {
        return Ok(Some(signal));
    }
    if let Some(signal) = archive_lag(conn, settings.max_archive_lag)
        .await
        .map_err(explain)?
    {
        return Ok(Some(signal));
    }
    if let Some(query) = &settings.throttle_query {
        // Read-only at every evaluation, not only the first: the query is the operator's,
        // and a function it calls may write when it can.
        let up = try_throttle_query(conn, query)
            .await
            .map_err(|problem| format!("the throttle_query failed: {problem}"))?;
        if up == Some(true) {
            return Ok(Some(Signal {
                reason: Reason::ThrottleQuery,
                detail: "throttle_query returned true".into(),
            }));
        }
    }
    Ok(None)
}

/// Runs `query` once, read-only, so that a broken throttle_query stops the run at its start
/// instead of leaving the backfill unthrottled with a warning per check; its answer now.
pub async fn try_throttle_query(
    conn: &mut PgConnection,
    query: &str,
) -> Result<Option<bool>, ThrottleProblem> {
    let mut tx = conn
        .begin_with("BEGIN READ ONLY")
        .await
        .map_err(ThrottleProblem::Query)?;
    let rows = db::first_rows(&mut tx, query, 2).await;
    let _ = tx.rollback().await;
    let answer = |problem: String| Err(ThrottleProblem::Answer(problem));
    match rows.map_err(ThrottleProblem::Query)?.as_slice() {
        [row] if row.len() == 1 => match row.try_get::<Option<bool>, _>(0) {
            Ok(up) => Ok(up),
            Err(_) => answer("its column is not a boolean".to_owned()),
        },
        [row] => answer(format!("it returned {} columns", row.len())),
        [] => answer("it returned no rows".to_owned()),
        _ => answer("it returned more than one row".to_owned()),
    }
}

/// Why a throttle_query gave no answer.
#[derive(Debug)]
pub enum ThrottleProblem {
    /// The server refused or lost it: the query's own fault (a syntax error, a missing
    /// table) or the database's (a restart), as [`sluice_common::retry::classify`] tells.
    Query(sqlx::Error),
    /// It ran, and its answer is not one row with one boolean.
    Answer(String),
}

impl std::fmt::Display for ThrottleProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Query(error) => f.write_str(&db::explain(error)),
            Self::Answer(problem) => f.write_str(problem),
        }
    }
}

async fn blocked_sessions(
    conn: &mut PgConnection,
    workers: &str,
) -> Result<Option<Signal>, sqlx::Error> {
    let (count, who): (i64, Option<String>) = sqlx::query_as(
        "SELECT count(*), string_agg(coalesce(nullif(w.application_name, ''), 'session') || ' (pid ' || w.pid || ')', ', ')
         FROM pg_stat_activity w
         WHERE w.wait_event_type = 'Lock' AND w.application_name <> $1
           AND EXISTS (SELECT FROM pg_stat_activity b
                       WHERE b.pid = ANY (pg_blocking_pids(w.pid)) AND b.application_name = $1)",
    )
    .bind(workers)
    .fetch_one(conn)
    .await?;
    Ok((count > 0).then(|| Signal {
        reason: Reason::BlockedSessions,
        detail: format!(
            "{count} session(s) wait on locks the backfill holds: {}",
            who.unwrap_or_default()
        ),
    }))
}

async fn lock_queue(
    conn: &mut PgConnection,
    table: &str,
    workers: &str,
) -> Result<Option<Signal>, sqlx::Error> {
    let (count, modes): (i64, Option<String>) = sqlx::query_as(
        "SELECT count(*), string_agg(DISTINCT l.mode, ', ')
         FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
         WHERE l.locktype = 'relation' AND l.relation = to_regclass($1) AND NOT l.granted
           AND a.application_name <> $2",
    )
    .bind(table)
    .bind(workers)
    .fetch_one(conn)
    .await?;
    Ok((count > 0).then(|| Signal {
        reason: Reason::LockQueue,
        detail: format!(
            "{count} lock request(s) queued on {table} ({})",
            modes.unwrap_or_default()
        ),
    }))
}

async fn replication_lag(
    conn: &mut PgConnection,
    replicas: &mut [Replica],
    max: Duration,
) -> Result<Option<Signal>, sqlx::Error> {
    let primary: Option<f64> = sqlx::query_scalar(
        "SELECT max(extract(epoch FROM greatest(write_lag, flush_lag, replay_lag)))::float8 FROM pg_stat_replication",
    )
    .fetch_one(&mut *conn)
    .await?;
    let mut worst = (
        "the primary's pg_stat_replication".to_owned(),
        primary.unwrap_or(0.0),
    );
    for replica in replicas {
        if let Some(lag) = replica.lag().await
            && lag > worst.1
        {
            worst = (format!("replica {}", replica.url.redacted()), lag);
        }
    }
    Ok((worst.1 > max.as_secs_f64()).then(|| Signal {
        reason: Reason::ReplicationLag,
        detail: if worst.1.is_finite() {
            format!(
                "replication lag {:.1}s on {} (limit {:.1}s)",
                worst.1,
                worst.0,
                max.as_secs_f64()
            )
        } else {
            format!(
                "{} is behind and has replayed no transaction since it started, so its lag \
                 cannot be timed; waiting until it catches up (limit {:.1}s)",
                worst.0,
                max.as_secs_f64()
            )
        },
    }))
}

/// WAL archiving's backlog in bytes, when `archive_mode` is on (readable by any role): the
/// segments from the oldest one not archived to the current one. That is the one after the
/// last archived, or, while archiving fails (its last failure is newer than its last success,
/// or nothing was ever archived), the one it keeps failing on.
const ARCHIVE_BACKLOG: &str = "
    WITH a AS (
        SELECT CASE WHEN last_failed_wal IS NOT NULL
                         AND (last_archived_time IS NULL OR last_failed_time > last_archived_time)
                    THEN last_failed_wal END AS stuck,
               last_archived_wal AS archived,
               pg_walfile_name(pg_current_wal_lsn()) AS cur,
               pg_size_bytes(current_setting('wal_segment_size')) AS seg
        FROM pg_stat_archiver
        WHERE current_setting('archive_mode') <> 'off' AND NOT pg_is_in_recovery()),
    n AS (
        SELECT seg,
               CASE WHEN length(stuck) >= 24 THEN ('x' || substr(stuck, 9, 8))::bit(32)::bigint * (4294967296 / seg)
                        + ('x' || substr(stuck, 17, 8))::bit(32)::bigint - 1
                    WHEN length(archived) >= 24 THEN ('x' || substr(archived, 9, 8))::bit(32)::bigint * (4294967296 / seg)
                        + ('x' || substr(archived, 17, 8))::bit(32)::bigint END AS done,
               ('x' || substr(cur, 9, 8))::bit(32)::bigint * (4294967296 / seg)
                   + ('x' || substr(cur, 17, 8))::bit(32)::bigint AS now
        FROM a)
    SELECT (now - done) * seg FROM n WHERE done IS NOT NULL";

async fn archive_lag(conn: &mut PgConnection, max: u64) -> Result<Option<Signal>, sqlx::Error> {
    let backlog: Option<i64> = sqlx::query_scalar(ARCHIVE_BACKLOG)
        .fetch_optional(conn)
        .await?
        .flatten();
    let backlog = backlog.and_then(|b| u64::try_from(b).ok()).unwrap_or(0);
    Ok((backlog > max).then(|| Signal {
        reason: Reason::ArchiveLag,
        detail: format!(
            "WAL archiving is {} MiB behind (limit {} MiB)",
            backlog >> 20,
            max >> 20
        ),
    }))
}

/// A replica's replay lag in seconds (0 when it has replayed all it received, or is not a
/// replica at all). `None` when it is behind but has replayed no transaction since it started:
/// there is no replay time to measure from, and it is not caught up either.
pub async fn read_replica_lag(conn: &mut PgConnection) -> Result<Option<f64>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT CASE WHEN NOT pg_is_in_recovery() OR pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0
                ELSE extract(epoch FROM now() - pg_last_xact_replay_timestamp()) END::float8",
    )
    .fetch_one(conn)
    .await
}

/// How long a replica that did not answer is left alone before the next try.
const REPLICA_RETRY: Duration = Duration::from_secs(30);

/// A replica whose replay lag is watched. One that cannot be reached is skipped, said once,
/// and tried again after [`REPLICA_RETRY`]: the monitor must not spend its checks waiting on
/// it while the other signals go unread.
struct Replica {
    url: SecretUrl,
    conn: Option<PgConnection>,
    retry_at: Option<Instant>,
}

impl Replica {
    fn new(url: SecretUrl) -> Self {
        Self {
            url,
            conn: None,
            retry_at: None,
        }
    }

    /// Its replay lag in seconds; `None` when it cannot be read now.
    async fn lag(&mut self) -> Option<f64> {
        if self.conn.is_none() {
            if self.retry_at.is_some_and(|at| Instant::now() < at) {
                return None;
            }
            let settings = ConnectSettings {
                attempts: 1,
                connect_timeout: Duration::from_secs(2),
                ..ConnectSettings::new(self.url.clone(), "sluice-backfill lag")
            };
            match crate::session::connect(&settings).await {
                Ok(conn) => {
                    if self.retry_at.take().is_some() {
                        tracing::info!(
                            "replica {} answers again; its lag is watched",
                            self.url.redacted()
                        );
                    }
                    self.conn = Some(conn);
                }
                Err(error) => {
                    self.unreachable(&error.to_string());
                    return None;
                }
            }
        }
        let conn = self.conn.as_mut()?;
        match read_replica_lag(conn).await {
            // Behind with nothing replayed to time it by: as far behind as can be, so the
            // job waits until it has caught up.
            Ok(lag) => Some(lag.unwrap_or(f64::INFINITY)),
            Err(error) => {
                self.conn = None;
                self.unreachable(&db::explain(&error));
                None
            }
        }
    }

    fn unreachable(&mut self, why: &str) {
        if self.retry_at.is_none() {
            tracing::warn!(
                "replica {}: its lag cannot be read ({why}); it is not watched until it answers, \
                 tried again every {}s",
                self.url.redacted(),
                REPLICA_RETRY.as_secs()
            );
        }
        self.retry_at = Some(Instant::now() + REPLICA_RETRY);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worker_sessions_are_named_within_postgres_limit() {
        assert_eq!(worker_application_name("fill"), "sluice-backfill fill");
        assert_eq!(worker_application_name(&"x".repeat(100)).len(), 63);
    }
}
