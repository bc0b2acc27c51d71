//! Lock-timeout guards: the session settings every migration runs under, how they grow on
//! retry, and who blocked us when a lock timed out.

use std::time::Duration;

use sluice_common::retry::Backoff;
use sqlx::PgConnection;

use crate::directive::Directives;

/// Default `lock_timeout`: the longest an application query can queue behind a migration's
/// lock request.
pub const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_millis(500);
/// Default ceiling for the escalating `lock_timeout` on retries.
pub const DEFAULT_MAX_LOCK_TIMEOUT: Duration = Duration::from_secs(5);
/// Default `statement_timeout` for each statement of a migration.
pub const DEFAULT_STATEMENT_TIMEOUT: Duration = Duration::from_secs(15 * 60);
/// Default retries of a migration (or no-transaction statement) after a transient failure.
pub const DEFAULT_MAX_RETRIES: u32 = 10;

/// The guards of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Guards {
    pub lock_timeout: Duration,
    pub max_lock_timeout: Duration,
    pub statement_timeout: Duration,
    pub max_retries: u32,
    pub backoff: Backoff,
}

impl Default for Guards {
    fn default() -> Self {
        Self {
            lock_timeout: DEFAULT_LOCK_TIMEOUT,
            max_lock_timeout: DEFAULT_MAX_LOCK_TIMEOUT,
            statement_timeout: DEFAULT_STATEMENT_TIMEOUT,
            max_retries: DEFAULT_MAX_RETRIES,
            backoff: Backoff {
                initial: Duration::from_millis(500),
                max: Duration::from_secs(30),
            },
        }
    }
}

/// The settings of one attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    pub lock_timeout: Duration,
    pub statement_timeout: Duration,
}

impl Guards {
    /// The timeouts of attempt `attempt` (0 first) of a file: its directives override the
    /// run's settings, and `lock_timeout` doubles on each retry up to the ceiling (or the
    /// file's own value, if that is higher).
    pub fn timeouts(&self, directives: &Directives, attempt: u32) -> Timeouts {
        let base = directives.lock_timeout.unwrap_or(self.lock_timeout);
        let ceiling = self.max_lock_timeout.max(base);
        let factor = 1u32.checked_shl(attempt.min(16)).unwrap_or(u32::MAX);
        Timeouts {
            lock_timeout: base.saturating_mul(factor).min(ceiling),
            statement_timeout: directives
                .statement_timeout
                .unwrap_or(self.statement_timeout),
        }
    }
}

/// `'1500ms'`: a duration as a PostgreSQL setting value.
pub fn setting_value(duration: Duration) -> String {
    format!("'{}ms'", duration.as_millis().max(1))
}

/// `SET [LOCAL] lock_timeout = …; SET [LOCAL] statement_timeout = …`.
pub fn set_timeouts_sql(timeouts: Timeouts, local: bool) -> String {
    let scope = if local { "LOCAL " } else { "" };
    format!(
        "SET {scope}lock_timeout = {}; SET {scope}statement_timeout = {}",
        setting_value(timeouts.lock_timeout),
        setting_value(timeouts.statement_timeout)
    )
}

/// A session that held a lock our migration waited for.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow, serde::Serialize)]
pub struct Blocker {
    pub pid: i32,
    pub application_name: String,
    pub state: Option<String>,
    /// Seconds since the blocker's transaction began.
    pub transaction_age_s: Option<f64>,
    pub query_start: Option<String>,
    pub query: Option<String>,
}

impl std::fmt::Display for Blocker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "pid {}", self.pid)?;
        if !self.application_name.is_empty() {
            write!(f, " ({})", self.application_name)?;
        }
        if let Some(state) = &self.state {
            write!(f, " {state}")?;
        }
        if let Some(age) = self.transaction_age_s {
            write!(f, ", in a transaction for {age:.1}s")?;
        }
        if let Some(start) = &self.query_start {
            write!(f, ", query started {start}")?;
        }
        if let Some(query) = &self.query {
            write!(f, ": {query}")?;
        }
        Ok(())
    }
}

/// Sessions that `pid` is waiting for right now.
pub async fn blockers_of(conn: &mut PgConnection, pid: i32) -> Result<Vec<Blocker>, sqlx::Error> {
    sqlx::query_as(
        "SELECT a.pid, coalesce(a.application_name, '') AS application_name, a.state, \
                extract(epoch FROM clock_timestamp() - a.xact_start)::float8 AS transaction_age_s, \
                to_char(a.query_start AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS \"UTC\"') AS query_start, \
                left(regexp_replace(a.query, '\\s+', ' ', 'g'), 200) AS query \
         FROM pg_stat_activity a WHERE a.pid = ANY (pg_blocking_pids($1)) ORDER BY a.pid",
    )
    .bind(pid)
    .fetch_all(conn)
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_timeout_doubles_up_to_the_ceiling() {
        let guards = Guards {
            lock_timeout: Duration::from_millis(500),
            max_lock_timeout: Duration::from_secs(3),
            ..Guards::default()
        };
        let none = Directives::default();
        let lock = |attempt| guards.timeouts(&none, attempt).lock_timeout;
        assert_eq!(lock(0), Duration::from_millis(500));
        assert_eq!(lock(1), Duration::from_secs(1));
        assert_eq!(lock(2), Duration::from_secs(2));
        assert_eq!(lock(3), Duration::from_secs(3));
        assert_eq!(lock(60), Duration::from_secs(3));
    }

    #[test]
    fn directives_override_the_run() {
        let guards = Guards::default();
        let directives = Directives {
            lock_timeout: Some(Duration::from_secs(10)),
            statement_timeout: Some(Duration::from_secs(7200)),
            ..Directives::default()
        };
        let first = guards.timeouts(&directives, 0);
        assert_eq!(first.lock_timeout, Duration::from_secs(10));
        assert_eq!(first.statement_timeout, Duration::from_secs(7200));
        // A file asking for more than the ceiling keeps its own value on retries.
        assert_eq!(
            guards.timeouts(&directives, 3).lock_timeout,
            Duration::from_secs(10)
        );
    }

    #[test]
    fn renders_settings() {
        let timeouts = Timeouts {
            lock_timeout: Duration::from_millis(500),
            statement_timeout: Duration::from_secs(60),
        };
        assert_eq!(
            set_timeouts_sql(timeouts, true),
            "SET LOCAL lock_timeout = '500ms'; SET LOCAL statement_timeout = '60000ms'"
        );
        assert_eq!(setting_value(Duration::ZERO), "'1ms'");
    }
}
