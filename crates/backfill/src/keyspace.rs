//! Arithmetic on a job's key space, for splitting a busy range in two: where its middle is and
//! about how many rows are left in it. Pure. Only single keys whose values can be computed
//! with: integers, and uuids (PostgreSQL orders them as 128-bit big-endian numbers).

/// A single-column key space that can be halved by arithmetic.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum KeySpace {
    /// Integers from `first`, `keys_per_row` keys apart on average.
    Integer { first: i64, keys_per_row: f64 },
    /// Uuids spread evenly over all 2^128 values (random uuids), `rows` of them.
    Uuid { rows: f64 },
}

/// The middle of what is left of a range.
#[derive(Debug, Clone, PartialEq)]
pub struct Split {
    /// The key to split at: `(done, mid]` and `(mid, upper]`.
    pub mid: String,
    /// Rows estimated in `(done, upper]`.
    pub rows_left: f64,
}

impl KeySpace {
    /// The middle of `(done_to, upper]`, where `done_to` is the last key done (`None`:
    /// nothing, the range starts at the first key). `None` when fewer than two keys are left
    /// (no middle) or a key does not parse.
    pub fn split(&self, done_to: Option<&[String]>, upper: &[String]) -> Option<Split> {
        match *self {
            Self::Integer {
                first,
                keys_per_row,
            } => {
                let upper = i128::from(single(upper)?.parse::<i64>().ok()?);
                let from = match done_to {
                    Some(key) => i128::from(single(key)?.parse::<i64>().ok()?),
                    None => i128::from(first) - 1,
                };
                let left = upper - from;
                (left >= 2).then(|| Split {
                    mid: (from + left / 2).to_string(),
                    rows_left: as_f64(left) / keys_per_row.max(1.0),
                })
            }
            Self::Uuid { rows } => {
                let upper = parse_uuid(single(upper)?)?;
                let from = match done_to {
                    Some(key) => parse_uuid(single(key)?)?,
                    None => 0,
                };
                let left = upper.checked_sub(from)?;
                (left >= 2).then(|| Split {
                    mid: format_uuid(from + left / 2),
                    rows_left: as_f64_u(left) / 2f64.powi(128) * rows,
                })
            }
        }
    }
}

fn single(key: &[String]) -> Option<&str> {
    match key {
        [one] => Some(one),
        _ => None,
    }
}

#[expect(clippy::cast_precision_loss, reason = "an estimate of rows")]
fn as_f64(n: i128) -> f64 {
    n as f64
}

#[expect(clippy::cast_precision_loss, reason = "an estimate of rows")]
fn as_f64_u(n: u128) -> f64 {
    n as f64
}

/// A uuid's text (any case, with or without hyphens) as the number PostgreSQL orders by.
fn parse_uuid(text: &str) -> Option<u128> {
    let hex: String = text.chars().filter(|c| *c != '-').collect();
    (hex.len() == 32)
        .then(|| u128::from_str_radix(&hex, 16).ok())
        .flatten()
}

fn format_uuid(n: u128) -> String {
    let hex = format!("{n:032x}");
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(k: &str) -> Vec<String> {
        vec![k.to_owned()]
    }

    #[test]
    fn integers_split_in_the_middle_of_what_is_left() {
        let space = KeySpace::Integer {
            first: 1,
            keys_per_row: 2.0,
        };
        let split = space.split(Some(&key("100")), &key("200")).unwrap();
        assert_eq!(split.mid, "150");
        assert!((split.rows_left - 50.0).abs() < 1e-9);
        // Nothing done yet: from the first key.
        assert_eq!(space.split(None, &key("100")).unwrap().mid, "50");
        let wide = KeySpace::Integer {
            first: i64::MIN,
            keys_per_row: 1.0,
        };
        assert_eq!(
            wide.split(
                Some(&key(&i64::MIN.to_string())),
                &key(&i64::MAX.to_string())
            )
            .unwrap()
            .mid,
            "-1"
        );
    }

    #[test]
    fn fewer_than_two_keys_or_odd_keys_have_no_middle() {
        let space = KeySpace::Integer {
            first: 1,
            keys_per_row: 1.0,
        };
        assert_eq!(space.split(Some(&key("199")), &key("200")), None);
        assert_eq!(
            space.split(Some(&key("198")), &key("200")).unwrap().mid,
            "199"
        );
        assert_eq!(space.split(Some(&key("x")), &key("200")), None);
        assert_eq!(
            space.split(Some(&["1".to_owned(), "2".to_owned()]), &key("200")),
            None
        );
    }

    #[test]
    fn uuids_split_as_postgresql_orders_them() {
        let space = KeySpace::Uuid { rows: 1000.0 };
        let split = space
            .split(None, &key("ffffffff-ffff-ffff-ffff-ffffffffffff"))
            .unwrap();
        assert_eq!(split.mid, "7fffffff-ffff-ffff-ffff-ffffffffffff");
        assert!((split.rows_left - 1000.0).abs() < 1e-6);
        let split = space
            .split(
                Some(&key("00000000-0000-0000-0000-000000000010")),
                &key("00000000000000000000000000000030"),
            )
            .unwrap();
        assert_eq!(split.mid, "00000000-0000-0000-0000-000000000020");
        assert_eq!(
            space.split(
                Some(&key("not-a-uuid")),
                &key("ffffffff-ffff-ffff-ffff-ffffffffffff")
            ),
            None
        );
        // A cursor past the upper bound (never stored, but not a panic either).
        assert_eq!(
            space.split(
                Some(&key("ffffffff-ffff-ffff-ffff-ffffffffffff")),
                &key("00000000-0000-0000-0000-000000000001")
            ),
            None
        );
    }
}
