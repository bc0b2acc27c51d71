//! Databases of their own beside the configured one: for `roundtrip` and `drift` (a scratch
//! database), the demo, and the tests (one per test). Created and dropped on the same server,
//! with names that are always quoted.

use sqlx::{AssertSqlSafe, PgConnection};

use crate::ident::quote_ident;

/// A name for a new database, unique on this machine for `purpose`:
/// `sluice_<purpose>_<pid>_<random>`.
pub fn unique_name(purpose: &str) -> String {
    format!(
        "sluice_{purpose}_{}_{:04x}",
        std::process::id(),
        fastrand::u16(..)
    )
}

/// Creates database `name` (the role needs `CREATEDB`).
pub async fn create_database(admin: &mut PgConnection, name: &str) -> Result<(), sqlx::Error> {
    sqlx::raw_sql(AssertSqlSafe(format!(
        "CREATE DATABASE {}",
        quote_ident(name)
    )))
    .execute(admin)
    .await
    .map(drop)
}

/// Drops database `name` if it exists, disconnecting its sessions.
pub async fn drop_database(admin: &mut PgConnection, name: &str) -> Result<(), sqlx::Error> {
    sqlx::raw_sql(AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {} WITH (FORCE)",
        quote_ident(name)
    )))
    .execute(admin)
    .await
    .map(drop)
}

/// `url` with its database replaced by `database`; an error says why the URL cannot be used.
pub fn url_with_database(url: &str, database: &str) -> Result<String, String> {
    let mut url = url::Url::parse(url).map_err(|e| format!("not a URL-form database URL: {e}"))?;
    url.set_path(&format!("/{database}"));
    Ok(url.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_keeps_everything_but_its_database() {
        assert_eq!(
            url_with_database("postgres://u:p@h:5433/prod?sslmode=require", "scratch").unwrap(),
            "postgres://u:p@h:5433/scratch?sslmode=require"
        );
        assert!(url_with_database("host=h dbname=prod", "x").is_err());
        assert!(unique_name("drift").starts_with("sluice_drift_"));
    }
}
