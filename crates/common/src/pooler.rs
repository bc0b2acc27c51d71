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

/// What this process found out about the target of `options` already, if anything: a target
/// is checked once by a process.
pub(crate) fn known(options: &PgConnectOptions) -> Option<bool> {
    checked_targets()
        .lock()
        .ok()
        .and_then(|seen| seen.get(&key(options)).copied())
}

/// The second client of the check, opened while the first one is (both cost the server a new
/// backend, which is most of what a short command waits for). `Err` says why it could not be.
pub(crate) async fn open_second(
    options: &PgConnectOptions,
    settings: &ConnectSettings,
) -> Result<PgConnection, String> {
    tokio::time::timeout(settings.connect_timeout, options.connect())
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
        })
}

/// Whether `first` (just opened with `options`) goes through a transaction pooler: the backends
/// of its statements and of `second`'s between them ([`PROBES`]). `Err` names why the check could
/// not be made (the second connection failed), which may pass by itself.
pub(crate) async fn transaction_pooled(
    first: &mut PgConnection,
    options: &PgConnectOptions,
    second: Result<PgConnection, String>,
) -> Result<bool, String> {
    let mut second = second?;
    let seen = backends(first, &mut second).await;
    let _ = second.close().await;
    let pooled = shared_or_moved(&seen.map_err(|e| explain(&e))?);
    if let Ok(mut seen) = checked_targets().lock() {
        seen.insert(key(options), pooled);
    }
    Ok(pooled)
}

fn key(options: &PgConnectOptions) -> String {
    format!(
        "{}:{}:{:?}:{:?}:{}",
        options.get_host(),
        options.get_port(),
        options.get_socket(),
        options.get_database(),
        options.get_username()
    )
}

/// Which client runs each probe: the first twice, then the two in turn. Under contention from
/// other clients a transaction pooler may happen to hand one probe the same backend again; over
/// eight it gives itself away unless the pool's timing repeats exactly each time.
const PROBES: [Client; 8] = [
    Client::First,
    Client::First,
    Client::Second,
    Client::First,
    Client::Second,
    Client::First,
    Client::Second,
    Client::First,
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Client {
    First,
    Second,
}

/// The backend each probe of [`PROBES`] ran on.
async fn backends(
    first: &mut PgConnection,
    second: &mut PgConnection,
) -> Result<Vec<(Client, i32)>, sqlx::Error> {
    let mut seen = Vec::with_capacity(PROBES.len());
    for client in PROBES {
        let conn = match client {
            Client::First => &mut *first,
            Client::Second => &mut *second,
        };
        seen.push((client, backend(conn).await?));
    }
    Ok(seen)
}

/// Each statement on its own (autocommit) as a simple query: no statement is left behind.
async fn backend(conn: &mut PgConnection) -> Result<i32, sqlx::Error> {
    sqlx::raw_sql("SELECT pg_backend_pid()")
        .fetch_one(conn)
        .await?
        .try_get(0)
}

/// A session's backend never changes, and two sessions never share one.
fn shared_or_moved(seen: &[(Client, i32)]) -> bool {
    let of = |client: Client| {
        seen.iter()
            .filter(move |(c, _)| *c == client)
            .map(|(_, pid)| *pid)
    };
    let one = |client: Client| {
        let mut pids = of(client);
        let first = pids.next();
        first.filter(|pid| pids.all(|other| other == *pid))
    };
    match (one(Client::First), one(Client::Second)) {
        (Some(first), Some(second)) => first == second,
        _ => true,
    }
}

fn checked_targets() -> &'static Mutex<HashMap<String, bool>> {
    static CHECKED: OnceLock<Mutex<HashMap<String, bool>>> = OnceLock::new();
    CHECKED.get_or_init(Mutex::default)
}

#[cfg(test)]
mod tests {
    use super::{Client, PROBES, shared_or_moved};

    fn seen(first: &[i32], second: &[i32]) -> Vec<(Client, i32)> {
        let (mut a, mut b) = (first.iter(), second.iter());
        PROBES
            .iter()
            .map(|client| {
                let pid = match client {
                    Client::First => a.next(),
                    Client::Second => b.next(),
                };
                (*client, *pid.expect("a pid per probe"))
            })
            .collect()
    }

    #[test]
    fn one_backend_per_session_is_a_session() {
        assert!(!shared_or_moved(&seen(&[10; 5], &[11; 3])));
    }

    #[test]
    fn a_backend_shared_or_changed_is_a_transaction_pooler() {
        // PgBouncer's default: the second client gets the server connection freed last.
        assert!(shared_or_moved(&seen(&[10; 5], &[10; 3])));
        // server_round_robin: the same client gets the next one.
        assert!(shared_or_moved(&seen(&[10, 11, 12, 10, 11], &[12, 10, 11])));
        // Contention moved the first client once, late.
        assert!(shared_or_moved(&seen(&[10, 10, 10, 10, 12], &[11; 3])));
        // The second client moved.
        assert!(shared_or_moved(&seen(&[10; 5], &[11, 12, 11])));
    }
}
