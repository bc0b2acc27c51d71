//! `[backfill]` defaults for every job (and an environment's): over each spec, under the
//! command line's flags.

use sluice_common::cli::ConfigRow;
use sluice_common::config::{BackfillFile, ConfigError, Origin, parse_bytes};

use crate::job::Overrides;

/// `flags` with what they leave unset taken from the file.
pub fn apply(mut flags: Overrides, file: &BackfillFile) -> Result<Overrides, ConfigError> {
    flags.pace = flags.pace.or(file.pace);
    flags.max_rows_per_second = flags.max_rows_per_second.or(file.max_rows_per_second);
    flags.max_replication_lag = flags.max_replication_lag.or(file.max_replication_lag);
    flags.pause = flags.pause.or(file.pause);
    flags.lock_timeout = flags.lock_timeout.or(file.lock_timeout);
    flags.statement_timeout = flags.statement_timeout.or(file.statement_timeout);
    flags.max_retries = flags.max_retries.or(file.max_retries);
    if flags.max_wal_per_second.is_none()
        && let Some(text) = &file.max_wal_per_second
    {
        let bytes = parse_bytes(text).map_err(|message| ConfigError::Value {
            setting: "max_wal_per_second",
            origin: Origin::File,
            message,
        })?;
        flags.max_wal_per_second = Some(bytes);
    }
    Ok(flags)
}

/// The file's defaults that are set, as `config` rows.
pub fn rows(file: &BackfillFile) -> Vec<ConfigRow> {
    let duration = |d: &std::time::Duration| humantime::format_duration(*d).to_string();
    [
        ("pace", file.pace.map(|p| p.as_str().to_owned())),
        (
            "max_rows_per_second",
            file.max_rows_per_second.map(|n| n.to_string()),
        ),
        ("max_wal_per_second", file.max_wal_per_second.clone()),
        (
            "max_replication_lag",
            file.max_replication_lag.as_ref().map(duration),
        ),
        ("pause", file.pause.as_ref().map(duration)),
        (
            "backfill.lock_timeout",
            file.lock_timeout.as_ref().map(duration),
        ),
        (
            "backfill.statement_timeout",
            file.statement_timeout.as_ref().map(duration),
        ),
        (
            "backfill.max_retries",
            file.max_retries.map(|n| n.to_string()),
        ),
    ]
    .into_iter()
    .filter_map(|(name, value)| value.map(|v| (name, v, Origin::File)))
    .collect()
}
