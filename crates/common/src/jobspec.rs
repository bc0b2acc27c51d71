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

/// A spec's closed choices: each reads from its TOML string with the message the operator
/// needs (the key, the value given, the values allowed) and writes back as that string.
macro_rules! choice {
    ($(#[$doc:meta])* $name:ident, $key:literal, $expected:literal, { $($variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "&'static str")]
        pub enum $name {
            #[default]
            $($variant),+
        }

        impl $name {
            /// Reads the value as the spec and the command line write it.
            pub fn parse(text: &str) -> Result<Self, String> {
                match text {
                    $($text => Ok(Self::$variant),)+
                    other => Err(format!(concat!("`", $key, "` = {:?}: expected ", $expected), other)),
                }
            }

            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $text),+
                }
            }
        }

        impl TryFrom<String> for $name {
            type Error = String;

            fn try_from(text: String) -> Result<Self, String> {
                Self::parse(&text)
            }
        }

        impl From<$name> for &'static str {
            fn from(value: $name) -> Self {
                value.as_str()
            }
        }
    };
}

choice!(
    /// What each batch does (`action`).
    ActionKind, "action", "\"update\" (the default), \"delete\" or \"copy\"",
    { Update = "update", Delete = "delete", Copy = "copy" }
);

choice!(
    /// What a copy does with a row whose key the target already has (`on_conflict`): keep
    /// the target's row (a mirroring trigger already wrote it, newer than the copy), or
    /// overwrite it with the source's values.
    OnConflict, "on_conflict", "\"skip\" (the default: keep the target's row) or \"update\"",
    { Skip = "skip", Update = "update" }
);

choice!(
    /// How a job is paced (`pace`): watch the server and take what it can spare, or no
    /// pacing of its own (a maintenance window), only the limits and signals that are set.
    PaceMode, "pace", "\"auto\" (the default: take what the server can spare) or \"max\"",
    { Auto = "auto", Max = "max" }
);

/// The file as written. Unknown keys are errors.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct JobFile {
    pub name: String,
    /// What each batch does: `"update"` (default), `"delete"` or `"copy"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<ActionKind>,
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
    pub on_conflict: Option<OnConflict>,
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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pace: Option<PaceMode>,
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
