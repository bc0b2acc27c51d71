//! `sluice`, the schema runner, run as a user runs it against a real server.

mod adoption;
mod apply;
mod concurrency;
mod drift;
mod guards;
mod layouts;
mod no_transaction;
mod post_apply;
mod sections;
mod tools;
mod trace;

use sluice_tests::Project;
use sqlx::PgConnection;

/// Versions recorded in sluice's history table.
async fn recorded_versions(conn: &mut PgConnection) -> Vec<i64> {
    sqlx::query_scalar("SELECT version FROM sluice.migrations ORDER BY version")
        .fetch_all(conn)
        .await
        .unwrap()
}

/// Advisory locks held in the project's database.
async fn advisory_locks(project: &Project) -> i64 {
    let mut conn = project.db.connect().await;
    sqlx::query_scalar(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' \
         AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap()
}

async fn table_exists(conn: &mut PgConnection, name: &str) -> bool {
    sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
        .bind(name)
        .fetch_one(conn)
        .await
        .unwrap()
}
