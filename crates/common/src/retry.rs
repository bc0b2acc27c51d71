//! Which failures are worth retrying, and how long to wait before the next attempt.
//!
//! Retrying is only safe for failures that leave nothing behind: the transaction rolled back
//! and the same work can simply run again. Everything else is permanent.

use std::time::Duration;

/// SQLSTATE codes sluice acts on.
pub mod sqlstate {
    /// `lock_not_available`: our `lock_timeout` fired (or `NOWAIT`).
    pub const LOCK_NOT_AVAILABLE: &str = "55P03";
    /// `query_canceled`: a statement timeout, or a cancel by someone else.
    pub const QUERY_CANCELED: &str = "57014";
    pub const SERIALIZATION_FAILURE: &str = "40001";
    pub const DEADLOCK_DETECTED: &str = "40P01";
    /// `admin_shutdown`, `crash_shutdown`, `cannot_connect_now`: the server is going away or
    /// still starting.
    pub const ADMIN_SHUTDOWN: &str = "57P01";
    pub const CRASH_SHUTDOWN: &str = "57P02";
    pub const CANNOT_CONNECT_NOW: &str = "57P03";
    pub const TOO_MANY_CONNECTIONS: &str = "53300";
    pub const INVALID_PASSWORD: &str = "28P01";
    pub const INVALID_AUTHORIZATION: &str = "28000";
    pub const INVALID_CATALOG_NAME: &str = "3D000";
}

/// Why a failure may be retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transient {
    /// Our `lock_timeout` fired: someone else held a conflicting lock.
    LockTimeout,
    /// Our `statement_timeout` fired.
    StatementTimeout,
    SerializationFailure,
    Deadlock,
    /// The connection dropped or the server is restarting.
    ConnectionLost,
}

impl Transient {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::LockTimeout => "lock timeout",
            Self::StatementTimeout => "statement timeout",
            Self::SerializationFailure => "serialization failure",
            Self::Deadlock => "deadlock",
            Self::ConnectionLost => "connection lost",
        }
    }
}

/// Classifies a driver error: `Some` when running the same work again may succeed.
pub fn classify(error: &sqlx::Error) -> Option<Transient> {
    match error {
        sqlx::Error::Database(db) => {
            classify_sqlstate(db.code().as_deref().unwrap_or_default(), db.message())
        }
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed => {
            Some(Transient::ConnectionLost)
        }
        sqlx::Error::Protocol(message) if message.contains("closed") => {
            Some(Transient::ConnectionLost)
        }
        _ => None,
    }
}

/// Classifies a server error by SQLSTATE and message.
///
/// `57014` is retried only when our own statement timeout caused it: a cancel sent by an
/// operator (`pg_cancel_backend`) means "stop", not "try again".
pub fn classify_sqlstate(code: &str, message: &str) -> Option<Transient> {
    match code {
        sqlstate::LOCK_NOT_AVAILABLE => Some(Transient::LockTimeout),
        sqlstate::QUERY_CANCELED if message.contains("statement timeout") => {
            Some(Transient::StatementTimeout)
        }
        sqlstate::QUERY_CANCELED if message.contains("lock timeout") => {
            Some(Transient::LockTimeout)
        }
        sqlstate::SERIALIZATION_FAILURE => Some(Transient::SerializationFailure),
        sqlstate::DEADLOCK_DETECTED => Some(Transient::Deadlock),
        sqlstate::ADMIN_SHUTDOWN | sqlstate::CRASH_SHUTDOWN | sqlstate::CANNOT_CONNECT_NOW => {
            Some(Transient::ConnectionLost)
        }
        _ => None,
    }
}

/// The SQLSTATE of a server error, for messages.
pub fn sqlstate_of(error: &sqlx::Error) -> Option<String> {
    match error {
        sqlx::Error::Database(db) => db.code().map(|c| c.into_owned()),
        _ => None,
    }
}

/// Exponential backoff with "equal jitter": half of each delay is fixed, half random, so
/// retries from many workers spread out but never collapse to zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Delay before the first retry (before jitter).
    pub initial: Duration,
    /// No delay is longer than this.
    pub max: Duration,
}

/// Default first retry delay.
pub const DEFAULT_INITIAL_BACKOFF: Duration = Duration::from_millis(200);
/// Default longest retry delay.
pub const DEFAULT_MAX_BACKOFF: Duration = Duration::from_secs(30);

impl Default for Backoff {
    fn default() -> Self {
        Self {
            initial: DEFAULT_INITIAL_BACKOFF,
            max: DEFAULT_MAX_BACKOFF,
        }
    }
}

impl Backoff {
    /// The delay before retry number `attempt` (0 for the first retry), given a random
    /// `unit` in `[0, 1)`. Pure, so it can be tested.
    pub fn delay_for(&self, attempt: u32, unit: f64) -> Duration {
        let ceiling = self.ceiling(attempt);
        let half = ceiling / 2;
        half + half.mul_f64(unit.clamp(0.0, 1.0))
    }

    /// The delay before retry number `attempt`, with fresh jitter.
    pub fn delay(&self, attempt: u32) -> Duration {
        self.delay_for(attempt, fastrand::f64())
    }

    /// `initial * 2^attempt`, capped at `max`.
    fn ceiling(&self, attempt: u32) -> Duration {
        let factor = 1u32.checked_shl(attempt.min(31)).unwrap_or(u32::MAX);
        self.initial.saturating_mul(factor).min(self.max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_and_statement_timeouts_are_transient() {
        assert_eq!(
            classify_sqlstate("55P03", "canceling statement due to lock timeout"),
            Some(Transient::LockTimeout)
        );
        assert_eq!(
            classify_sqlstate("57014", "canceling statement due to statement timeout"),
            Some(Transient::StatementTimeout)
        );
    }

    #[test]
    fn a_cancel_by_an_operator_is_permanent() {
        assert_eq!(
            classify_sqlstate("57014", "canceling statement due to user request"),
            None
        );
    }

    #[test]
    fn serialization_deadlock_and_shutdown_are_transient() {
        assert_eq!(
            classify_sqlstate("40001", ""),
            Some(Transient::SerializationFailure)
        );
        assert_eq!(classify_sqlstate("40P01", ""), Some(Transient::Deadlock));
        assert_eq!(
            classify_sqlstate("57P01", ""),
            Some(Transient::ConnectionLost)
        );
    }

    #[test]
    fn other_errors_are_permanent() {
        for code in ["42P01", "23505", "42601", "22012", "28P01", "3D000"] {
            assert_eq!(classify_sqlstate(code, "whatever"), None, "{code}");
        }
    }

    #[test]
    fn io_errors_are_connection_loss() {
        let io = sqlx::Error::Io(std::io::Error::from(std::io::ErrorKind::ConnectionReset));
        assert_eq!(classify(&io), Some(Transient::ConnectionLost));
        assert_eq!(classify(&sqlx::Error::RowNotFound), None);
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        let backoff = Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(1),
        };
        // With the random part at its maximum the delay is the full ceiling.
        assert_eq!(backoff.delay_for(0, 1.0), Duration::from_millis(100));
        assert_eq!(backoff.delay_for(1, 1.0), Duration::from_millis(200));
        assert_eq!(backoff.delay_for(3, 1.0), Duration::from_millis(800));
        assert_eq!(backoff.delay_for(4, 1.0), Duration::from_secs(1));
        assert_eq!(backoff.delay_for(1000, 1.0), Duration::from_secs(1));
    }

    #[test]
    fn jitter_keeps_at_least_half_the_delay() {
        let backoff = Backoff::default();
        assert_eq!(backoff.delay_for(2, 0.0), DEFAULT_INITIAL_BACKOFF * 2);
        for attempt in 0..40 {
            let delay = backoff.delay(attempt);
            let ceiling = backoff.ceiling(attempt);
            assert!(
                delay >= ceiling / 2 && delay <= ceiling,
                "{attempt}: {delay:?}"
            );
        }
    }
}
