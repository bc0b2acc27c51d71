//! PostgreSQL advisory locks on a dedicated connection.
//!
//! A session-level advisory lock belongs to its connection, so the lock lives on a connection
//! of its own that nothing else borrows: closing it (on release, on error, or when the process
//! dies) always frees the lock. Waiting polls `pg_try_advisory_lock` up to a bound, and giving
//! up names the session that holds the lock.

use std::fmt;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use sqlx::{AssertSqlSafe, Connection, PgConnection, Row};

use crate::shutdown::Shutdown;

/// How often a waiting runner tries the lock again.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_millis(250);

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "{name} is held by another session{holder} and was not released within {waited}; \
         wait for that run to finish, raise --lock-wait, or, if that session is stuck, end it \
         with SELECT pg_terminate_backend(pid)"
    )]
    Held {
        name: String,
        holder: HolderText,
        waited: String,
    },
    #[error("interrupted while waiting for {name}")]
    Interrupted { name: String },
    #[error(
        "{name} went with its connection (the database restarted, or the session was ended) \
         and another session{holder} took it meanwhile; this run stopped before running \
         another statement: see `sluice status`, and run the same command again once that run \
         has finished"
    )]
    Lost { name: String, holder: HolderText },
    #[error("advisory lock query for {name} failed: {}", crate::db::explain(.error))]
    Query { name: String, error: sqlx::Error },
}

/// The session holding a lock, as `pg_stat_activity` shows it.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct LockHolder {
    pub pid: i32,
    pub application_name: String,
    pub client_addr: Option<String>,
    pub backend_start: Option<String>,
    pub state: Option<String>,
}

impl fmt::Display for LockHolder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "pid {}", self.pid)?;
        if !self.application_name.is_empty() {
            write!(f, ", application_name \"{}\"", self.application_name)?;
        }
        write!(
            f,
            ", client {}",
            self.client_addr.as_deref().unwrap_or("local socket")
        )?;
        if let Some(since) = &self.backend_start {
            write!(f, ", connected since {since}")?;
        }
        if let Some(state) = &self.state {
            write!(f, ", {state}")?;
        }
        Ok(())
    }
}

/// " (pid …)" or "" when the holder could not be seen (another database user without
/// `pg_read_all_stats`, or it let go in between).
#[derive(Debug)]
pub struct HolderText(pub Option<LockHolder>);

impl fmt::Display for HolderText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Some(holder) => write!(f, " ({holder})"),
            None => Ok(()),
        }
    }
}

/// A stable 64-bit advisory lock key for a name, e.g. `"sluice:migrations:sluice"`.
pub fn lock_key(name: &str) -> i64 {
    let digest = Sha256::digest(name.as_bytes());
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&digest[..8]);
    i64::from_be_bytes(bytes)
}

/// How to wait for a lock.
#[derive(Debug, Clone)]
pub struct LockRequest {
    /// For messages: "the migration lock of schema sluice".
    pub name: String,
    pub key: i64,
    /// Longest total wait; zero means try once.
    pub wait: Duration,
    pub poll: Duration,
}

/// A held advisory lock and the connection that holds it.
#[derive(Debug)]
pub struct AdvisoryLock {
    connection: PgConnection,
    name: String,
    key: i64,
}

impl AdvisoryLock {
    /// Takes the lock on `connection`, polling until `request.wait` has passed. `on_wait` is
    /// called once, with the holder, when the first try fails.
    pub async fn acquire(
        mut connection: PgConnection,
        request: &LockRequest,
        shutdown: &Shutdown,
        mut on_wait: impl FnMut(Option<&LockHolder>),
    ) -> Result<Self, LockError> {
        let started = Instant::now();
        let mut reported = false;
        loop {
            if try_lock(&mut connection, request).await? {
                return Ok(Self {
                    connection,
                    name: request.name.clone(),
                    key: request.key,
                });
            }
            let holder = holder(&mut connection, request.key).await.ok().flatten();
            if started.elapsed() >= request.wait {
                return Err(LockError::Held {
                    name: request.name.clone(),
                    holder: HolderText(holder),
                    waited: humantime::format_duration(request.wait).to_string(),
                });
            }
            if !reported {
                on_wait(holder.as_ref());
                reported = true;
            }
            tokio::select! {
                () = tokio::time::sleep(request.poll) => {}
                () = shutdown.requested() => {
                    return Err(LockError::Interrupted { name: request.name.clone() });
                }
            }
        }
    }

    /// Whether the lock is still held on its connection: false when the connection is gone
    /// (a database restart frees every session's locks) or the lock was released.
    pub async fn is_held(&mut self) -> bool {
        sqlx::query_scalar(
            "SELECT EXISTS (SELECT FROM pg_locks WHERE locktype = 'advisory' \
             AND pid = pg_backend_pid() AND granted AND objsubid = 1 \
             AND classid = (($1::bigint >> 32) & 4294967295)::oid \
             AND objid = ($1::bigint & 4294967295)::oid)",
        )
        .bind(self.key)
        .fetch_one(&mut self.connection)
        .await
        .unwrap_or(false)
    }

    /// Takes the lock again on `connection` (a fresh one, after the old one was lost), at
    /// once or not at all: if another session took it meanwhile, this run must not go on.
    pub async fn retake(&mut self, mut connection: PgConnection) -> Result<(), LockError> {
        let request = LockRequest {
            name: self.name.clone(),
            key: self.key,
            wait: Duration::ZERO,
            poll: DEFAULT_POLL_INTERVAL,
        };
        if try_lock(&mut connection, &request).await? {
            let old = std::mem::replace(&mut self.connection, connection);
            // The old connection is gone or lock-less: close it without waiting on it.
            drop(old);
            return Ok(());
        }
        let holder = holder(&mut connection, self.key).await.ok().flatten();
        let _ = connection.close().await;
        Err(LockError::Lost {
            name: self.name.clone(),
            holder: HolderText(holder),
        })
    }

    /// The connection holding the lock, for short side queries (it must stay open).
    pub fn connection(&mut self) -> &mut PgConnection {
        &mut self.connection
    }

    /// Releases the lock and closes its connection. If unlocking fails the connection is
    /// closed anyway, which frees the lock on the server.
    pub async fn release(mut self) -> Result<(), LockError> {
        // Simple queries, the key inline (a number): one round trip, where a prepared
        // statement used once costs two.
        let unlocked = sqlx::raw_sql(AssertSqlSafe(format!(
            "SELECT pg_advisory_unlock({})",
            self.key
        )))
        .execute(&mut self.connection)
        .await;
        let _ = self.connection.close().await;
        match unlocked {
            Ok(_) => Ok(()),
            Err(error) => Err(LockError::Query {
                name: self.name,
                error,
            }),
        }
    }
}

async fn try_lock(connection: &mut PgConnection, request: &LockRequest) -> Result<bool, LockError> {
    sqlx::raw_sql(AssertSqlSafe(format!(
        "SELECT pg_try_advisory_lock({})",
        request.key
    )))
    .fetch_one(connection)
    .await
    .and_then(|row| row.try_get(0))
    .map_err(|error| LockError::Query {
        name: request.name.clone(),
        error,
    })
}

/// The session holding advisory lock `key` in this database, if visible.
pub async fn holder(
    connection: &mut PgConnection,
    key: i64,
) -> Result<Option<LockHolder>, sqlx::Error> {
    // A bigint advisory key is stored as classid = high 32 bits, objid = low 32 bits,
    // objsubid = 1.
    sqlx::query_as(
        "SELECT a.pid, coalesce(a.application_name, '') AS application_name, \
                host(a.client_addr) AS client_addr, \
                to_char(a.backend_start AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS \"UTC\"') AS backend_start, \
                a.state \
         FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid \
         WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 \
           AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) \
           AND l.classid = (($1::bigint >> 32) & 4294967295)::oid \
           AND l.objid = ($1::bigint & 4294967295)::oid \
         LIMIT 1",
    )
    .bind(key)
    .fetch_optional(connection)
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_stable_and_distinct() {
        assert_eq!(lock_key("sluice:a"), lock_key("sluice:a"));
        assert_ne!(lock_key("sluice:a"), lock_key("sluice:b"));
    }

    #[test]
    fn holder_text_names_pid_application_and_client() {
        let holder = LockHolder {
            pid: 42,
            application_name: "sluice".into(),
            client_addr: Some("10.0.0.5".into()),
            backend_start: Some("2026-11-21 10:00:00 UTC".into()),
            state: Some("idle".into()),
        };
        let text = HolderText(Some(holder)).to_string();
        assert_eq!(
            text,
            " (pid 42, application_name \"sluice\", client 10.0.0.5, connected since 2026-11-21 10:00:00 UTC, idle)"
        );
        assert_eq!(HolderText(None).to_string(), "");
    }
}
