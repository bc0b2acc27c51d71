//! Rate limiting and pauses between batches. Time spent here is "throttled", reported apart
//! from working time.

use std::time::Duration;

use crate::job::Pacing;

/// Why a worker waited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// `max_rows_per_second`.
    RateLimit,
    /// `pause` between batches.
    Pause,
    /// Backoff after a failed batch.
    Backoff,
    /// Sessions wait on locks the backfill holds.
    BlockedSessions,
    /// A lock request (a DDL) is queued on the target table.
    LockQueue,
    /// Replication lag above `max_replication_lag`.
    ReplicationLag,
    /// `throttle_query` returned true.
    ThrottleQuery,
    /// The load signals cannot be read (the monitor lost its connection, or a signal's query
    /// fails): the workers wait rather than run blind.
    SignalsUnread,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RateLimit => "rate_limit",
            Self::Pause => "pause",
            Self::Backoff => "backoff",
            Self::BlockedSessions => "blocked_sessions",
            Self::LockQueue => "lock_queue",
            Self::ReplicationLag => "replication_lag",
            Self::ThrottleQuery => "throttle_query",
            Self::SignalsUnread => "signals_unread",
        }
    }
}

/// The pacing every batch of a process's workers follows: the job's `max_rows_per_second`
/// (a budget kept in the database, [`crate::state::Jobs::reserve_rows`]) and the pause
/// between batches.
#[derive(Debug)]
pub struct Throttle {
    rate: u32,
    pause: Duration,
}

impl Throttle {
    pub fn new(pacing: &Pacing) -> Self {
        Self {
            rate: pacing.max_rows_per_second,
            pause: pacing.pause,
        }
    }

    /// The job's rows per second, when it has a limit.
    pub fn rate(&self) -> Option<u32> {
        (self.rate > 0).then_some(self.rate)
    }

    /// The most rows one batch may hold under the limit: half a second's worth, so that a
    /// limit is met by an even flow of small batches, never by one burst a second.
    pub fn batch_cap(&self) -> Option<u32> {
        self.rate().map(|rate| (rate / 2).max(1))
    }

    /// The pause after a batch.
    pub fn pause(&self) -> Option<Duration> {
        (!self.pause.is_zero()).then_some(self.pause)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pacing(rate: u32) -> Pacing {
        Pacing {
            batch_size: 50,
            min_batch_size: 50,
            max_batch_size: 100,
            target_batch_time: Duration::from_millis(200),
            max_rows_per_second: rate,
            pause: Duration::ZERO,
        }
    }

    #[test]
    fn a_limit_caps_batches_at_half_a_second_of_rows() {
        assert_eq!(Throttle::new(&pacing(0)).batch_cap(), None);
        assert_eq!(Throttle::new(&pacing(50_000)).batch_cap(), Some(25_000));
        assert_eq!(Throttle::new(&pacing(1)).batch_cap(), Some(1));
        assert_eq!(Throttle::new(&pacing(0)).rate(), None);
    }
}
