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
    /// Resting between batches while other sessions work (`pace = "auto"`).
    Pace,
    /// A quiet window: the workers wait while the probe measures the server without them.
    Measuring,
    /// `max_wal_per_second`.
    WalBudget,
    /// WAL archiving is more than `max_archive_lag` behind.
    ArchiveLag,
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
            Self::Pace => "pace",
            Self::Measuring => "measuring",
            Self::WalBudget => "wal_budget",
            Self::ArchiveLag => "archive_lag",
        }
    }
}

/// How much of a second's rows one batch may hold under a limit: a tenth, so that a limit is
/// met by an even flow of small batches, never by one burst a second.
const BATCH_SHARE_OF_A_SECOND: u32 = 10;

/// The pacing every batch of a process's workers follows: the job's `max_rows_per_second`
/// and WAL budget (one budget kept in the database, `state::Jobs::reserve_rows`) and
/// the pause between batches.
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

    /// The job's rows per second, when it has a limit: the lower of `max_rows_per_second`
    /// and the rows the WAL budget allows now (`wal_rate`), with the reason that binds.
    pub fn rate(&self, wal_rate: Option<u32>) -> Option<(u32, Reason)> {
        let rows = (self.rate > 0).then_some((self.rate, Reason::RateLimit));
        let wal = wal_rate.map(|rate| (rate.max(1), Reason::WalBudget));
        match (rows, wal) {
            (Some(r), Some(w)) => Some(if w.0 < r.0 { w } else { r }),
            (r, w) => r.or(w),
        }
    }

    /// The most rows one batch may hold under a rate: a tenth of a second's worth.
    pub fn batch_cap(rate: u32) -> u32 {
        (rate / BATCH_SHARE_OF_A_SECOND).max(1)
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
            mode: crate::pace::PaceMode::Auto,
            max_wal_per_second: None,
        }
    }

    #[test]
    fn a_limit_caps_batches_at_a_tenth_of_a_second_of_rows() {
        assert_eq!(Throttle::batch_cap(50_000), 5_000);
        assert_eq!(Throttle::batch_cap(1), 1);
    }

    #[test]
    fn the_lower_of_the_row_limit_and_the_wal_budget_binds() {
        assert_eq!(Throttle::new(&pacing(0)).rate(None), None);
        let limited = Throttle::new(&pacing(50_000));
        assert_eq!(limited.rate(None), Some((50_000, Reason::RateLimit)));
        assert_eq!(
            limited.rate(Some(20_000)),
            Some((20_000, Reason::WalBudget))
        );
        assert_eq!(
            limited.rate(Some(90_000)),
            Some((50_000, Reason::RateLimit))
        );
        assert_eq!(
            Throttle::new(&pacing(0)).rate(Some(0)),
            Some((1, Reason::WalBudget))
        );
    }
}
