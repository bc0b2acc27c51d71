//! `sluice-backfill` against a real server: exactly-once under interruption and crashes,
//! guards, keys, hostile names, operator commands.

mod crash;
mod guards;
mod keys;
mod operations;
mod pace;
mod parallel;
mod reset;
mod resume;

use sluice_tests::TestDb;
use sqlx::PgConnection;

/// `items (id bigint primary key, a int, b text, n int)` with `rows` rows, `b` NULL.
async fn items(db: &TestDb, rows: i64) {
    db.exec(&format!(
        "CREATE TABLE items (id bigint PRIMARY KEY, a int NOT NULL, b text, n int NOT NULL DEFAULT 0);
         INSERT INTO items (id, a) SELECT g, g % 1000 FROM generate_series(1, {rows}) g;
         ANALYZE items;"
    ))
    .await;
}

/// A fingerprint of a table's whole content, in key order.
async fn fingerprint(conn: &mut PgConnection, table: &str) -> String {
    sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT md5(string_agg(t::text, '|' ORDER BY t::text)) FROM {table} t"
    )))
    .fetch_one(conn)
    .await
    .unwrap()
}

fn job_toml(name: &str, extra: &str) -> String {
    format!(
        "name = \"{name}\"\ntable = \"public.items\"\nkey = [\"id\"]\nset = \"b = md5(a::text), n = n + 1\"\n\
         where = \"b IS NULL\"\n{extra}"
    )
}
