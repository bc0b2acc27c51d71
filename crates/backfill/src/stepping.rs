//! How a batch's last key is found.
//!
//! In general the engine asks the index for the key `batch_size` rows past the cursor (an
//! index-only scan of the batch's keys). For a single integer key it can do what a hand-written
//! loop does instead: step through the key space by a span worth `batch_size` rows at the
//! table's key density, which costs no scan at all. Both walk contiguous ranges
//! (cursor, end], so exactly-once does not depend on the choice.

/// Key types stepped arithmetically.
const INTEGER_TYPES: &[&str] = &["smallint", "integer", "bigint"];

pub fn is_integer_type(type_name: &str) -> bool {
    INTEGER_TYPES.contains(&type_name)
}

/// Stepping through an integer key space.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct IntegerSpan {
    /// The smallest key when the run started.
    pub min: i64,
    /// The job's upper bound.
    pub upper: i64,
    /// Keys per row: 1.0 for a dense key, more where keys have gaps.
    pub keys_per_row: f64,
}

impl IntegerSpan {
    /// Starts from the key bounds and the planner's row estimate (0 when unknown).
    pub fn new(min: i64, upper: i64, estimated_rows: i64) -> Self {
        let keys = (i128::from(upper) - i128::from(min) + 1).max(1);
        #[expect(clippy::cast_precision_loss, reason = "a density needs no exactness")]
        let density = if estimated_rows > 0 {
            keys as f64 / estimated_rows as f64
        } else {
            1.0
        };
        Self {
            min,
            upper,
            keys_per_row: density.max(1.0),
        }
    }

    /// Starts from a known density (keys per row, at least 1), e.g. the whole table's for one
    /// of its ranges.
    pub fn with_density(min: i64, upper: i64, keys_per_row: f64) -> Self {
        Self {
            min,
            upper,
            keys_per_row: keys_per_row.max(1.0),
        }
    }

    /// The key span worth `rows` rows (at least one key).
    pub fn span(&self, rows: u32) -> i128 {
        let span = (f64::from(rows) * self.keys_per_row).ceil();
        // Saturating float-to-int cast: i128 holds any u32 times any i64 density.
        #[expect(
            clippy::cast_possible_truncation,
            reason = "saturating by design, bounded below"
        )]
        let span = span as i128;
        span.max(1)
    }

    /// The end of the batch after `cursor` (`None`: from the start) and whether it is the last.
    pub fn end(&self, cursor: Option<i64>, rows: u32) -> (i64, bool) {
        let end = (self.start(cursor) + self.span(rows)).min(i128::from(self.upper));
        // Bounded above by `upper` and below by `cursor` (or `min`), both i64.
        let end = i64::try_from(end).unwrap_or(self.upper);
        (end, end >= self.upper)
    }

    /// The key before the range: the cursor, or one before the smallest key.
    fn start(&self, cursor: Option<i64>) -> i128 {
        cursor.map_or(i128::from(self.min) - 1, i128::from)
    }

    /// Learns the key density from a batch that updated every row of its range (no `where`).
    pub fn observe(&mut self, cursor: Option<i64>, end: i64, rows: u64) {
        if rows == 0 {
            return;
        }
        #[expect(clippy::cast_precision_loss, reason = "a density needs no exactness")]
        let seen = ((i128::from(end) - self.start(cursor)) as f64 / rows as f64).max(1.0);
        self.keys_per_row = (self.keys_per_row + seen) / 2.0;
    }

    /// Estimated rows in (cursor, end], for progress when `where` hides the count.
    pub fn rows_between(&self, cursor: Option<i64>, end: i64) -> u64 {
        #[expect(clippy::cast_precision_loss, reason = "an estimate")]
        let rows = ((i128::from(end) - self.start(cursor)) as f64 / self.keys_per_row).round();
        #[expect(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            reason = "non-negative estimate"
        )]
        let rows = rows.max(0.0) as u64;
        rows
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dense_keys_step_by_the_batch_size() {
        let span = IntegerSpan::new(1, 1000, 1000);
        assert_eq!(span.end(None, 100), (100, false));
        assert_eq!(span.end(Some(100), 100), (200, false));
        assert_eq!(span.end(Some(950), 100), (1000, true));
    }

    #[test]
    fn sparse_keys_step_by_the_density() {
        let span = IntegerSpan::new(1, 10_000, 1000);
        assert!((span.keys_per_row - 10.0).abs() < 1e-9);
        assert_eq!(span.end(None, 100), (1000, false));
    }

    #[test]
    fn the_density_is_learned_from_full_batches() {
        let mut span = IntegerSpan::new(1, 10_000, 10_000);
        span.observe(None, 100, 10);
        assert!(
            (span.keys_per_row - 5.5).abs() < 1e-9,
            "{}",
            span.keys_per_row
        );
        span.observe(Some(100), 200, 0);
        assert!((span.keys_per_row - 5.5).abs() < 1e-9);
    }

    #[test]
    fn extreme_keys_do_not_overflow() {
        let span = IntegerSpan::new(i64::MIN, i64::MAX, 10);
        let (end, last) = span.end(None, u32::MAX);
        assert!(last && end == i64::MAX);
        let small = IntegerSpan::new(i64::MIN, i64::MIN + 5, 6);
        assert_eq!(small.end(None, 3), (i64::MIN + 2, false));
        assert_eq!(small.end(Some(i64::MIN + 2), 10), (i64::MIN + 5, true));
    }

    #[test]
    fn rows_between_estimates_from_the_density() {
        let span = IntegerSpan::new(1, 10_000, 1000);
        assert_eq!(span.rows_between(Some(0), 1000), 100);
    }

    #[test]
    fn only_integer_types_step_arithmetically() {
        assert!(is_integer_type("bigint"));
        assert!(!is_integer_type("uuid"));
        assert!(!is_integer_type("numeric"));
    }
}
