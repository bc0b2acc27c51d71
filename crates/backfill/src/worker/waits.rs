//! A worker's waits between batches: the job's rate and WAL budget, load signals, the pace's
//! rests and quiet windows, pauses and backoff. Each is throttled time by its reason, shown
//! live and added to the job's row (`status`) every few seconds.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::{Range, Worker};
use crate::error::BackfillError;
use crate::event::Event;
use crate::load::Signal;
use crate::pace::{self, PaceState};
use crate::ranges::RangeLease;
use crate::sizing;
use crate::throttle::{Reason, Throttle};

/// How often a worker adds its waits to the job's row.
const RECORD_HELD_EVERY: Duration = Duration::from_secs(5);
/// The longest rest after one batch (a slow batch at the smallest duty).
const LONGEST_REST: Duration = Duration::from_secs(10);

/// Time held back by each reason, not yet added to the job's row.
#[derive(Debug)]
pub(super) struct Held {
    pending: BTreeMap<&'static str, f64>,
    recorded: Instant,
}

impl Default for Held {
    fn default() -> Self {
        Self {
            pending: BTreeMap::new(),
            recorded: Instant::now(),
        }
    }
}

impl Worker<'_, '_> {
    /// Waits for the job's rate budget, any load signal and a quiet window, keeping the lease
    /// alive meanwhile (or saying it was lost).
    pub(super) async fn before_batch(
        &mut self,
        range: &Range,
    ) -> Result<RangeLease, BackfillError> {
        if self.wait_for_rate(range).await? == RangeLease::Lost {
            return Ok(RangeLease::Lost);
        }
        let mut load = self.ctx.load.clone();
        // One signal after another: each wait is told and counted under its own reason.
        loop {
            let signal = load.borrow_and_update().clone();
            let Some(signal) = signal else { break };
            if self.should_stop().is_some() {
                break;
            }
            self.wait_out(signal, &mut load, range).await?;
        }
        if self.wait_for_quiet_window(range).await? == RangeLease::Lost {
            return Ok(RangeLease::Lost);
        }
        self.record_held(false).await;
        self.keep_lease(range).await
    }

    /// After a batch that took `took`: the size of the next one, as the pace (a short batch
    /// while sharing the server) and the job's rate allow.
    pub(super) fn resize(&mut self, took: Duration, full: bool) {
        let pace = *self.ctx.pace.pace.borrow();
        let pacing = &self.ctx.job.pacing;
        self.size = match pace.batch_time {
            // Sharing: batches as short as the pace asks, at once (not by halves).
            Some(target) if target < pacing.target_batch_time && took > target * 4 && full => {
                sizing::fit(pacing, self.size, took, target)
            }
            Some(target) => sizing::next_size_for(
                pacing,
                target.min(pacing.target_batch_time),
                self.size,
                took,
                full,
            ),
            None => sizing::next_size(pacing, self.size, took, full),
        };
        if let Some((rate, _)) = self.rate() {
            self.size = self.size.min(Throttle::batch_cap(rate));
        }
    }

    /// While sharing the server: rests after a batch that took `took`, so that the process's
    /// workers are at work the pace's duty of the time.
    pub(super) async fn rest(
        &mut self,
        range: &Range,
        took: Duration,
    ) -> Result<RangeLease, BackfillError> {
        let pace = *self.ctx.pace.pace.borrow();
        match pace.duty {
            Some(duty) if duty < 1.0 && pace.state != PaceState::Starting => {
                let rest = pace::rest_after(took, duty, self.ctx.workers).min(LONGEST_REST);
                self.wait(Reason::Pace, rest, range).await
            }
            _ => Ok(RangeLease::Kept),
        }
    }

    /// The job's rate now: `max_rows_per_second` or the WAL budget's rows, the lower.
    fn rate(&self) -> Option<(u32, Reason)> {
        let wal = *self.ctx.pace.wal_rate.borrow();
        self.ctx.throttle.rate(wal)
    }

    /// Under a rate: caps the batch at a tenth of a second of it and waits for its rows in
    /// the job's budget (shared, through the database, by every process).
    async fn wait_for_rate(&mut self, range: &Range) -> Result<RangeLease, BackfillError> {
        let Some((rate, reason)) = self.rate() else {
            return Ok(RangeLease::Kept);
        };
        self.size = self.size.min(Throttle::batch_cap(rate));
        let (ctx, rows) = (self.ctx, self.size);
        let wait = self
            .keep("reserving rows of the rate limit", async |conn| {
                ctx.jobs.reserve_rows(conn, &ctx.job.name, rows, rate).await
            })
            .await?;
        self.wait(reason, wait, range).await
    }

    /// While the pace holds the workers (a quiet window), waits.
    async fn wait_for_quiet_window(&mut self, range: &Range) -> Result<RangeLease, BackfillError> {
        let mut pace = self.ctx.pace.pace.clone();
        if !pace.borrow_and_update().holds() {
            return Ok(RangeLease::Kept);
        }
        let started = Instant::now();
        while pace.borrow_and_update().holds() && self.should_stop().is_none() {
            tokio::select! {
                _ = pace.changed() => {}
                () = tokio::time::sleep(self.recheck()) => {}
                () = self.ctx.shutdown.requested() => {}
            }
            if self.keep_lease(range).await? == RangeLease::Lost {
                return Ok(RangeLease::Lost);
            }
        }
        self.held(Reason::Measuring, started.elapsed());
        Ok(RangeLease::Kept)
    }

    /// Waits `duration` for `reason`, renewing the lease through a long wait and ending early
    /// on a stop or when the lease was lost.
    async fn wait(
        &mut self,
        reason: Reason,
        duration: Duration,
        range: &Range,
    ) -> Result<RangeLease, BackfillError> {
        if duration.is_zero() {
            return Ok(RangeLease::Kept);
        }
        let started = Instant::now();
        let mut lease = RangeLease::Kept;
        while started.elapsed() < duration && self.should_stop().is_none() {
            let left = duration.saturating_sub(started.elapsed());
            tokio::select! {
                () = tokio::time::sleep(left.min(self.ctx.lease / 3)) => {}
                () = self.ctx.shutdown.requested() => {}
            }
            lease = self.keep_lease(range).await?;
            if lease == RangeLease::Lost {
                break;
            }
        }
        self.held(reason, started.elapsed());
        Ok(lease)
    }

    /// Waits while a load signal is up; the time is throttled time by that reason.
    async fn wait_out(
        &mut self,
        signal: Signal,
        load: &mut watch::Receiver<Option<Signal>>,
        range: &Range,
    ) -> Result<(), BackfillError> {
        let started = Instant::now();
        if signal.reason == Reason::SignalsUnread {
            // The monitor says so itself when it cannot read them; a first reading is routine.
            tracing::debug!(job = %self.ctx.job.name, reason = signal.reason.as_str(), "throttled: {}", signal.detail);
        } else {
            tracing::warn!(job = %self.ctx.job.name, reason = signal.reason.as_str(), "throttled: {}", signal.detail);
        }
        self.send(Event::LoadSignal {
            reason: signal.reason,
            detail: signal.detail.clone(),
        });
        // Best effort, as the record at the end: the wait goes on whether or not it is written.
        let _ = self
            .ctx
            .jobs
            .record_throttle_start(
                &mut self.conn,
                &self.ctx.job.name,
                signal.reason.as_str(),
                &signal.detail,
            )
            .await;
        if signal.reason == Reason::BlockedSessions {
            // Shorter batches hold their row locks for less time.
            self.size = sizing::shrink(&self.ctx.job.pacing, self.size);
        }
        let same = |now: &Option<Signal>| now.as_ref().is_some_and(|s| s.reason == signal.reason);
        while same(&load.borrow()) && self.should_stop().is_none() {
            tokio::select! {
                _ = load.changed() => {}
                () = tokio::time::sleep(self.recheck()) => {}
                () = self.ctx.shutdown.requested() => {}
            }
            if self.keep_lease(range).await? == RangeLease::Lost {
                break;
            }
        }
        let waited = started.elapsed();
        self.throttled += waited;
        self.send(Event::Throttled {
            reason: signal.reason,
            waited,
        });
        let _ = self
            .ctx
            .jobs
            .record_throttle(
                &mut self.conn,
                &self.ctx.job.name,
                signal.reason.as_str(),
                waited.as_secs_f64(),
                &signal.detail,
            )
            .await;
        Ok(())
    }

    /// How often a wait on a signal looks again at its lease and its deadline: a steady
    /// signal sends no change to wake on, and a run limit must end the wait in time.
    fn recheck(&self) -> Duration {
        (self.ctx.lease / 3).min(Duration::from_secs(1))
    }

    /// A wait that needs no lease (a pause, a backoff before a retry).
    pub(super) async fn sleep(&mut self, reason: Reason, delay: Duration) {
        let started = Instant::now();
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = self.ctx.shutdown.requested() => {}
        }
        self.held(reason, started.elapsed());
    }

    /// Counts a wait: throttled time of the next batch, an event, and the job's row later.
    fn held(&mut self, reason: Reason, waited: Duration) {
        if waited < Duration::from_micros(100) {
            return;
        }
        self.throttled += waited;
        *self.held.pending.entry(reason.as_str()).or_default() += waited.as_secs_f64();
        self.send(Event::Throttled { reason, waited });
    }

    /// Adds the waits of the last few seconds to the job's row (best effort: they are
    /// figures for people, not progress).
    pub(super) async fn record_held(&mut self, now: bool) {
        let due = now || self.held.recorded.elapsed() >= RECORD_HELD_EVERY;
        if self.held.pending.is_empty() || !due {
            return;
        }
        let pending = std::mem::take(&mut self.held.pending);
        self.held.recorded = Instant::now();
        let _ = self
            .ctx
            .jobs
            .add_held(&mut self.conn, &self.ctx.job.name, &pending)
            .await;
    }
}
