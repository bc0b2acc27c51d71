//! Splitting a job's key space into ranges for parallel workers. Pure: the split keys are
//! chosen from a sorted sample of keys (`TABLESAMPLE SYSTEM`), so ranges hold about as many
//! rows each whatever the key type or how skewed its values are.

/// Default number of ranges: more than workers, so a fast worker takes more of them.
pub const DEFAULT_RANGES: u32 = 16;

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

/// Up to `ranges - 1` split keys taken at even quantiles of `sample` (sorted by key, all at
/// most the job's upper bound, which is never a split key). Fewer when the sample is small.
pub fn split_keys(sample: &[Vec<String>], upper: &[String], ranges: u32) -> Vec<Vec<String>> {
    let candidates: Vec<&Vec<String>> = sample.iter().filter(|k| k.as_slice() != upper).collect();
    let ranges = usize::try_from(ranges.max(1)).unwrap_or(1);
    let splits = (ranges - 1).min(candidates.len());
    let mut keys: Vec<Vec<String>> = (1..=splits)
        .map(|i| candidates[i * candidates.len() / (splits + 1)].clone())
        .collect();
    keys.dedup();
    keys
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(values: std::ops::RangeInclusive<u32>) -> Vec<Vec<String>> {
        values.map(|v| vec![format!("{v:05}")]).collect()
    }

    #[test]
    fn splits_at_even_quantiles() {
        let sample = keys(1..=100);
        let upper = vec!["99999".to_owned()];
        let splits = split_keys(&sample, &upper, 4);
        assert_eq!(
            splits,
            vec![
                vec!["00026".to_owned()],
                vec!["00051".to_owned()],
                vec!["00076".to_owned()]
            ]
        );
    }

    #[test]
    fn a_small_sample_gives_fewer_ranges_and_never_splits_at_the_upper_bound() {
        let sample = keys(1..=3);
        let upper = vec!["00003".to_owned()];
        let splits = split_keys(&sample, &upper, 16);
        assert_eq!(
            splits,
            vec![vec!["00001".to_owned()], vec!["00002".to_owned()]]
        );
        assert!(split_keys(&[], &upper, 16).is_empty());
        assert!(split_keys(&sample, &upper, 1).is_empty());
    }

    #[test]
    fn the_sampling_rate_follows_the_estimate() {
        assert!((sample_percent(1_000_000_000, 0, 16) - 0.00032).abs() < 1e-9);
        assert_eq!(sample_percent(1_000, 0, 16), 100.0);
        assert_eq!(sample_percent(0, 1024, 16), 100.0);
        assert_eq!(sample_percent(-1, 10 * WHOLE_SAMPLE_BYTES, 16), 1.0);
    }
}
