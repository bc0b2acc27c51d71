//! Telling a pooler in transaction pooling mode (PgBouncer's `pool_mode = transaction`, and the
//! poolers built like it) from a server session, before sluice keeps anything in its session.
//!
//! Such a pooler hands each transaction of a client to whichever server connection is free, so
//! a session advisory lock taken through it stays on a server connection other clients then
//! use, and is released (or not) from another. Nothing in the startup exchange says a pooler is
//! there; what gives it away is the server session itself: on a direct connection, or through
//! a pooler in session mode, one client keeps one backend for its life, and two clients never
//! share one. Through a transaction pooler either fails: a pooler that reuses the last server
//! connection freed (PgBouncer's default) gives a second client the first one's backend, and one
//! that rotates (`server_round_robin`) gives the same client another backend next time.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection, PgConnection, Row};

use crate::db::{ConnectSettings, explain};

/// Whether `first` (just opened with `options`) goes through a transaction pooler: its backend
/// over three statements, and a second client's between them. `Err` names why the check could
/// not be made (the second connection failed), which may pass by itself.
///
/// A target is checked once by this process.
pub(crate) async fn transaction_pooled(
    first: &mut PgConnection,
    options: &PgConnectOptions,
    settings: &ConnectSettings,
) -> Result<bool, String> {
    let key = format!(
        "{}:{}:{:?}:{:?}:{}",
        options.get_host(),
        options.get_port(),
        options.get_socket(),
        options.get_database(),
        options.get_username()
    );
    let known = checked_targets()
        .lock()
        .ok()
        .and_then(|seen| seen.get(&key).copied());
    if let Some(pooled) = known {
        return Ok(pooled);
    }
    let mut second = tokio::time::timeout(settings.connect_timeout, options.connect())
        .await
        .map_err(|_| {
            "a second connection, to check for a transaction pooler, had no answer in time"
                .to_owned()
        })?
        .map_err(|e| {
            format!(
                "a second connection, to check for a transaction pooler, failed: {}",
                explain(&e)
            )
        })?;
    let seen = backends(first, &mut second).await;
    let _ = second.close().await;
    let pooled = shared_or_moved(&seen.map_err(|e| explain(&e))?);
    if let Ok(mut seen) = checked_targets().lock() {
        seen.insert(key, pooled);
    }
    Ok(pooled)
}

/// The backend of the first client, twice, the second client's, then the first's again.
async fn backends(
    first: &mut PgConnection,
    second: &mut PgConnection,
) -> Result<[i32; 4], sqlx::Error> {
    Ok([
        backend(first).await?,
        backend(first).await?,
        backend(second).await?,
        backend(first).await?,
    ])
}

/// Each statement on its own (autocommit) as a simple query: no statement is left behind.
async fn backend(conn: &mut PgConnection) -> Result<i32, sqlx::Error> {
    sqlx::raw_sql("SELECT pg_backend_pid()")
        .fetch_one(conn)
        .await?
        .try_get(0)
}

/// A session's backend never changes, and two sessions never share one.
fn shared_or_moved([first, again, other, last]: &[i32; 4]) -> bool {
    first != again || first != last || first == other
}

fn checked_targets() -> &'static Mutex<HashMap<String, bool>> {
    static CHECKED: OnceLock<Mutex<HashMap<String, bool>>> = OnceLock::new();
    CHECKED.get_or_init(Mutex::default)
}

#[cfg(test)]
mod tests {
    use super::shared_or_moved;

    #[test]
    fn one_backend_per_session_is_a_session() {
        assert!(!shared_or_moved(&[10, 10, 11, 10]));
    }

    #[test]
    fn a_backend_shared_or_changed_is_a_transaction_pooler() {
        // PgBouncer's default: the second client gets the server connection freed last.
        assert!(shared_or_moved(&[10, 10, 10, 10]));
        // server_round_robin: the same client gets the next one.
        assert!(shared_or_moved(&[10, 11, 12, 10]));
        assert!(shared_or_moved(&[10, 10, 11, 11]));
    }
}
