//! Rate limiting and pauses between batches. Time spent here is "throttled", reported apart
//! from working time.

use std::num::NonZeroU32;
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
        }
    }
}

/// The rate limiter of one worker.
#[derive(Debug)]
pub struct Throttle {
    limiter: Option<DefaultDirectRateLimiter>,
    burst: u32,
    pause: Duration,
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
            limiter,
            pause: pacing.pause,
        }
    }

    /// Waits until `rows` may be written; returns how long and why.
    pub async fn before_batch(&self, rows: u32) -> Option<(Reason, Duration)> {
        let limiter = self.limiter.as_ref()?;
        let rows = NonZeroU32::new(rows.clamp(1, self.burst))?;
        let started = Instant::now();
        // `rows` never exceeds the burst, so this cannot fail.
        let _ = limiter.until_n_ready(rows).await;
        let waited = started.elapsed();
        (waited >= Duration::from_millis(1)).then_some((Reason::RateLimit, waited))
    }

    /// The pause after a batch.
    pub fn pause(&self) -> Option<Duration> {
        (!self.pause.is_zero()).then_some(self.pause)
    }
}
