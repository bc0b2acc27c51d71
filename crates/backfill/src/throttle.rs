//! Rate limiting and pauses between batches. Time spent here is "throttled", reported apart
//! from working time.

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

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

/// The rate limiter of one process's workers, and their pause between batches.
///
/// `max_rows_per_second` is the job's limit, whatever the number of processes running it:
/// with `n` processes holding ranges, each batch here costs `n` times its rows, so each
/// process writes a `1/n` share.
#[derive(Debug)]
pub struct Throttle {
    limiter: Option<DefaultDirectRateLimiter>,
    rate: u32,
    burst: u32,
    pause: Duration,
    processes: AtomicU32,
}

impl Throttle {
    pub fn new(pacing: &Pacing) -> Self {
        let limiter = NonZeroU32::new(pacing.max_rows_per_second).map(|rate| {
            // A burst of at least one whole batch, so any batch can pass the limiter.
            let burst = NonZeroU32::new(pacing.max_batch_size.max(rate.get())).unwrap_or(rate);
            RateLimiter::direct(Quota::per_second(rate).allow_burst(burst))
        });
        Self {
            burst: pacing.max_batch_size.max(pacing.max_rows_per_second),
            rate: pacing.max_rows_per_second,
            limiter,
            pause: pacing.pause,
            processes: AtomicU32::new(1),
        }
    }

    /// Whether a rate limit applies (and so is worth sharing between processes).
    pub fn is_limited(&self) -> bool {
        self.limiter.is_some()
    }

    /// Records how many processes (this one included) share the rate now; returns this
    /// process's rows per second when that changed.
    pub fn share(&self, processes: u32) -> Option<u32> {
        let processes = processes.max(1);
        let before = self.processes.swap(processes, Ordering::Relaxed);
        (before != processes && self.is_limited()).then(|| self.rate.div_ceil(processes))
    }

    /// Waits until `rows` may be written; returns how long and why.
    pub async fn before_batch(&self, rows: u32) -> Option<(Reason, Duration)> {
        let limiter = self.limiter.as_ref()?;
        let started = Instant::now();
        let processes = self.processes.load(Ordering::Relaxed);
        let mut cells = u64::from(rows.max(1)) * u64::from(processes);
        while cells > 0 {
            let chunk = u32::try_from(cells.min(u64::from(self.burst))).unwrap_or(self.burst);
            cells -= u64::from(chunk);
            // A chunk never exceeds the burst, so this cannot fail.
            if let Some(chunk) = NonZeroU32::new(chunk) {
                let _ = limiter.until_n_ready(chunk).await;
            }
        }
        let waited = started.elapsed();
        (waited >= Duration::from_millis(1)).then_some((Reason::RateLimit, waited))
    }

    /// The pause after a batch.
    pub fn pause(&self) -> Option<Duration> {
        (!self.pause.is_zero()).then_some(self.pause)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limited(rate: u32) -> Throttle {
        Throttle::new(&Pacing {
            batch_size: 50,
            min_batch_size: 50,
            max_batch_size: 100,
            target_batch_time: Duration::from_millis(200),
            max_rows_per_second: rate,
            pause: Duration::ZERO,
        })
    }

    #[test]
    fn a_share_is_reported_only_when_it_changes_and_a_limit_applies() {
        let throttle = limited(1000);
        assert_eq!(throttle.share(1), None);
        assert_eq!(throttle.share(3), Some(334));
        assert_eq!(throttle.share(3), None);
        assert_eq!(throttle.share(0), Some(1000));
        assert_eq!(limited(0).share(2), None);
    }

    #[tokio::test]
    async fn a_batch_costs_its_rows_times_the_processes_sharing_the_rate() {
        // 100 rows/s with a burst of 100: a first batch of 50 passes at once alone, but not
        // when four processes share the rate (200 cells: the burst, then 100 more).
        let throttle = limited(100);
        assert_eq!(throttle.before_batch(50).await, None);
        let throttle = limited(100);
        throttle.share(4);
        let waited = throttle.before_batch(50).await;
        assert!(
            matches!(waited, Some((Reason::RateLimit, w)) if w >= Duration::from_millis(500)),
            "{waited:?}"
        );
    }
}
