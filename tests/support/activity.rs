//! What other sessions of a test's database are doing, from `pg_stat_activity`: for tests that
//! act (a restart, a kill) at the moment a statement runs.

use std::time::{Duration, Instant};

use sqlx::{Connection, PgConnection};

/// Which sessions count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Doing {
    /// Running the statement.
    Running,
    /// Running it and waiting for a lock.
    WaitingOnLock,
}

/// Sessions (other than the asking one) whose query is `LIKE pattern` and that are `doing`
/// it; 0 while the server is away.
pub async fn sessions(url: &str, pattern: &str, doing: Doing) -> i64 {
    let Ok(mut conn) = PgConnection::connect(url).await else {
        return 0;
    };
    sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_activity \
         WHERE query LIKE $1 AND pid <> pg_backend_pid() \
           AND ($2 = false OR wait_event_type = 'Lock')",
    )
    .bind(pattern)
    .bind(doing == Doing::WaitingOnLock)
    .fetch_one(&mut conn)
    .await
    .unwrap_or(0)
}

/// Waits until a session is `doing` a statement `LIKE pattern`; fails the test after a minute.
pub async fn wait_for(url: &str, pattern: &str, doing: Doing) {
    let started = Instant::now();
    while sessions(url, pattern, doing).await == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no session was ever {doing:?} {pattern}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
