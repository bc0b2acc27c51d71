//! Keys as the engine carries them: one text per key column, as PostgreSQL prints it, bound
//! back as text and cast by the statements themselves.

use sqlx::Row;
use sqlx::postgres::PgRow;

/// A single integer key from its text; `None` for anything else, which arithmetic stepping
/// then leaves to the index (never a made-up key).
pub(crate) fn integer_key(key: &[String]) -> Option<i64> {
    match key {
        [single] => single.parse().ok(),
        _ => None,
    }
}

type Query<'q> = sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>;

pub(crate) fn bind_all<'q>(query: Query<'q>, values: &[String]) -> Query<'q> {
    values.iter().fold(query, |q, v| q.bind(v.clone()))
}

pub(crate) fn texts(row: &PgRow) -> Result<Vec<String>, sqlx::Error> {
    (0..row.len())
        .map(|i| row.try_get::<String, _>(i))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::integer_key;

    #[test]
    fn only_a_single_integer_key_is_a_number() {
        let key = |parts: &[&str]| parts.iter().map(|p| (*p).to_owned()).collect::<Vec<_>>();
        assert_eq!(integer_key(&key(&["-42"])), Some(-42));
        assert_eq!(integer_key(&key(&["9223372036854775807"])), Some(i64::MAX));
        // Not 0: nothing.
        assert_eq!(integer_key(&key(&["abc"])), None);
        assert_eq!(integer_key(&key(&["1", "2"])), None);
        assert_eq!(integer_key(&key(&[])), None);
    }
}
