//! What the engine reports while it works. The CLI renders these (progress bar, log lines,
//! summary); tests collect them.

use std::time::Duration;

use crate::throttle::Reason;

#[derive(Debug, Clone)]
pub enum Event {
    /// The job starts or resumes.
    Started {
        job: String,
        resumed: bool,
        /// Rows scanned by earlier runs.
        rows_scanned: u64,
        rows_updated: u64,
        /// The planner's estimate of the table's rows, 0 when unknown.
        estimated_rows: u64,
        batch_size: u32,
        /// Workers in this process.
        workers: usize,
        /// Key ranges of the job, and how many were done before this run.
        ranges: i64,
        ranges_done: i64,
        /// When the run stops by itself (window, max runtime, until).
        deadline: Option<crate::window::Deadline>,
    },
    /// A worker claimed a key range (taking it over when `previous_owner` is set).
    Claimed {
        worker: usize,
        range: i32,
        previous_owner: Option<String>,
    },
    /// A load signal is up; the worker waits before its next batch.
    LoadSignal { reason: Reason, detail: String },
    /// A batch committed, with its progress.
    Batch(BatchDone),
    /// The worker waited before the next batch.
    Throttled { reason: Reason, waited: Duration },
    /// A batch failed transiently, rolled back, and will be retried smaller.
    Retrying {
        attempt: u32,
        max_retries: u32,
        delay: Duration,
        next_batch_size: u32,
        /// The failure was the batch's lock_timeout.
        lock_timeout: bool,
        error: String,
    },
    /// The job's totals as committed by every process running it, read now and then.
    JobTotals {
        rows_scanned: u64,
        rows_updated: u64,
    },
    /// The pace changed (see [`crate::pace`]): alone, sharing (at which duty, why), measuring.
    Pace(crate::pace::Pace),
    /// Every range is done; rows still matching `where` were counted.
    Verified { remaining: u64 },
}

/// One committed batch.
#[derive(Debug, Clone)]
pub struct BatchDone {
    pub worker: usize,
    pub range: i32,
    pub rows_updated: u64,
    pub rows_scanned: u64,
    pub batch_size: u32,
    pub duration: Duration,
    /// The last key of the batch.
    pub cursor: Vec<String>,
    pub next_batch_size: u32,
    /// Totals for the job so far, this run and earlier ones.
    pub total_scanned: u64,
    pub total_updated: u64,
}
