//! A backfill job spec as written in `jobs/<name>.toml`, and the defaults of its optional keys:
//! data only. The engine (`sluice-backfill`) validates it into a job; the runner's scaffolding
//! writes one by serialising it, so both read and write the same format.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Defaults of the optional keys, documented in the README.
pub mod defaults {
    use std::time::Duration;

    pub const BATCH_SIZE: u32 = 1000;
    pub const MIN_BATCH_SIZE: u32 = 100;
    pub const MAX_BATCH_SIZE: u32 = 50_000;
    pub const TARGET_BATCH_TIME: Duration = Duration::from_millis(200);
    pub const MAX_ROWS_PER_SECOND: u32 = 0;
    pub const PAUSE: Duration = Duration::ZERO;
    pub const LOCK_TIMEOUT: Duration = Duration::from_millis(500);
    pub const STATEMENT_TIMEOUT: Duration = Duration::from_secs(10);
    pub const MAX_RETRIES: u32 = 10;
    /// Key ranges a job is split into at its first start.
    pub const RANGES: u32 = 16;
    pub const LEASE: Duration = Duration::from_secs(30);
    pub const LOAD_CHECK_INTERVAL: Duration = Duration::from_millis(500);
    pub const PACE: &str = "auto";
    /// WAL archiving this far behind holds the job (bytes).
    pub const MAX_ARCHIVE_LAG: u64 = 1 << 30;
}

/// The file as written. Unknown keys are errors.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct JobFile {
    pub name: String,
    /// What each batch does: `"update"` (default), `"delete"` or `"copy"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    pub table: String,
    pub key: Vec<String>,
    /// `update`: the `SET` list.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub set: Option<String>,
    #[serde(default, rename = "where", skip_serializing_if = "Option::is_none")]
    pub where_: Option<String>,
    /// `copy`: the table rows are copied into (`schema.table`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub into: Option<String>,
    /// `copy`: the target's columns (default: the source's columns the target also has).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub columns: Option<Vec<String>>,
    /// `copy`: a source expression for each of `columns` (default: the same names).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub values: Option<Vec<String>>,
    /// `copy`: what a key already in the target does: `"skip"` (default) or `"update"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_conflict: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub batch_size: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_batch_size: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_batch_size: Option<u32>,
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    pub target_batch_time: Option<Duration>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_rows_per_second: Option<u32>,
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    pub pause: Option<Duration>,
    /// `"auto"` (default: take what the server can spare) or `"max"` (no pacing of its own).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pace: Option<String>,
    /// Ceiling on the server's WAL rate while the job runs, e.g. `"8MB"` (a second).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_wal_per_second: Option<String>,
    /// Wait while WAL archiving is this far behind (default `"1GB"`; watched when
    /// `archive_mode` is on).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_archive_lag: Option<String>,
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    pub lock_timeout: Option<Duration>,
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    pub statement_timeout: Option<Duration>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_retries: Option<u32>,
    /// Key ranges the job is split into at its first start (for parallel workers).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ranges: Option<u32>,
    /// A worker silent this long loses its range to another.
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    pub lease: Option<Duration>,
    /// Wait while sessions queue on locks the backfill holds (default true).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub throttle_on_blocked_sessions: Option<bool>,
    /// Wait while a lock request (a DDL) is queued on the table (default true).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub throttle_on_lock_queue: Option<bool>,
    /// Wait while replication lags more than this.
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_replication_lag: Option<Duration>,
    /// Wait while this query returns true.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub throttle_query: Option<String>,
    /// How often load signals are checked.
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    pub load_check_interval: Option<Duration>,
}
