//! Splitting a job's key space into ranges for parallel workers. The split keys are keys at
//! even quantiles of a sample of keys (`TABLESAMPLE SYSTEM`), picked by the server
//! ([`crate::sql::JobSql::split_keys`]), so ranges hold about as many rows each whatever the
//! key type or how skewed its values are; this module sizes the sample.

/// Keys wanted in the sample per range: enough for even ranges, few enough to read quickly.
const SAMPLE_PER_RANGE: f64 = 200.0;

/// Tables up to this size are sampled whole when the planner has no row estimate.
const WHOLE_SAMPLE_BYTES: i64 = 256 * 1024 * 1024;

/// The `TABLESAMPLE SYSTEM` percentage for `ranges` ranges of a table with `estimated_rows`
/// (0 when never analysed) of `bytes` on disk.
pub fn sample_percent(estimated_rows: i64, bytes: i64, ranges: u32) -> f64 {
    if estimated_rows <= 0 {
        return if bytes <= WHOLE_SAMPLE_BYTES {
            100.0
        } else {
            1.0
        };
    }
    #[expect(
        clippy::cast_precision_loss,
        reason = "a sampling rate needs no exactness"
    )]
    let percent = SAMPLE_PER_RANGE * f64::from(ranges) * 100.0 / estimated_rows as f64;
    percent.clamp(0.000_1, 100.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sampling_rate_follows_the_estimate() {
        assert!((sample_percent(1_000_000_000, 0, 16) - 0.00032).abs() < 1e-9);
        assert_eq!(sample_percent(1_000, 0, 16), 100.0);
        assert_eq!(sample_percent(0, 1024, 16), 100.0);
        assert_eq!(sample_percent(-1, 10 * WHOLE_SAMPLE_BYTES, 16), 1.0);
    }
}
