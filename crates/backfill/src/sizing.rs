//! Adaptive batch size: grow or shrink, within bounds, to keep each batch near its target time.

use std::time::Duration;

use crate::job::Pacing;

/// Largest change from one batch to the next, either way.
const MAX_STEP: f64 = 2.0;

/// The next batch size after a batch of `size` rows took `took`. Short final batches
/// (`full == false`) say nothing about speed and leave the size alone.
pub fn next_size(pacing: &Pacing, size: u32, took: Duration, full: bool) -> u32 {
    next_size_for(pacing, pacing.target_batch_time, size, took, full)
}

/// As [`next_size`], aiming at `target` instead of the job's `target_batch_time`.
pub fn next_size_for(
    pacing: &Pacing,
    target: Duration,
    size: u32,
    took: Duration,
    full: bool,
) -> u32 {
    if !full || took.is_zero() {
        return size;
    }
    let ratio = (target.as_secs_f64() / took.as_secs_f64()).clamp(1.0 / MAX_STEP, MAX_STEP);
    clamp(pacing, f64::from(size) * ratio)
}

/// The size whose batch would take `target`, judged by a batch of `size` rows that took
/// `took`, in one step: for a pace that asks for much shorter batches now.
pub fn fit(pacing: &Pacing, size: u32, took: Duration, target: Duration) -> u32 {
    if took.is_zero() {
        return size;
    }
    clamp(
        pacing,
        f64::from(size) * target.as_secs_f64() / took.as_secs_f64(),
    )
}

/// The size after a failed attempt: half, but not below the minimum.
pub fn shrink(pacing: &Pacing, size: u32) -> u32 {
    clamp(pacing, f64::from(size) / 2.0)
}

fn clamp(pacing: &Pacing, size: f64) -> u32 {
    let bounded = size.round().clamp(
        f64::from(pacing.min_batch_size),
        f64::from(pacing.max_batch_size),
    );
    // Bounded by two u32 values above, so the conversion is exact.
    format!("{bounded:.0}")
        .parse()
        .unwrap_or(pacing.min_batch_size)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pacing() -> Pacing {
        Pacing {
            batch_size: 1000,
            min_batch_size: 100,
            max_batch_size: 5000,
            target_batch_time: Duration::from_millis(200),
            max_rows_per_second: 0,
            pause: Duration::ZERO,
            mode: crate::pace::PaceMode::Auto,
            max_wal_per_second: None,
        }
    }

    #[test]
    fn fast_batches_grow_slow_batches_shrink() {
        assert_eq!(
            next_size(&pacing(), 1000, Duration::from_millis(100), true),
            2000
        );
        assert_eq!(
            next_size(&pacing(), 1000, Duration::from_millis(400), true),
            500
        );
        assert_eq!(
            next_size(&pacing(), 1000, Duration::from_millis(200), true),
            1000
        );
        assert_eq!(
            next_size(&pacing(), 1000, Duration::from_millis(160), true),
            1250
        );
    }

    #[test]
    fn steps_are_at_most_double_or_half() {
        assert_eq!(
            next_size(&pacing(), 1000, Duration::from_millis(1), true),
            2000
        );
        assert_eq!(
            next_size(&pacing(), 1000, Duration::from_secs(60), true),
            500
        );
    }

    #[test]
    fn sizes_stay_within_bounds() {
        assert_eq!(
            next_size(&pacing(), 4000, Duration::from_millis(10), true),
            5000
        );
        assert_eq!(next_size(&pacing(), 150, Duration::from_secs(5), true), 100);
        assert_eq!(shrink(&pacing(), 150), 100);
        assert_eq!(shrink(&pacing(), 1000), 500);
    }

    #[test]
    fn a_much_shorter_target_is_reached_in_one_step() {
        let ms = Duration::from_millis;
        assert_eq!(fit(&pacing(), 4000, ms(200), ms(10)), 200);
        assert_eq!(
            fit(&pacing(), 4000, ms(200), ms(1)),
            100,
            "not below the minimum"
        );
        assert_eq!(next_size_for(&pacing(), ms(10), 4000, ms(200), true), 2000);
    }

    #[test]
    fn a_short_final_batch_changes_nothing() {
        assert_eq!(
            next_size(&pacing(), 1000, Duration::from_millis(1), false),
            1000
        );
    }
}
