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
    },
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
        error: String,
    },
    /// The cursor passed the upper bound; rows still matching `where` were counted.
    Verified { remaining: u64 },
}

/// One committed batch.
#[derive(Debug, Clone)]
pub struct BatchDone {
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
