//! Catalog snapshots for comparing schemas: the runner's own, as `roundtrip` uses it.

use sqlx::PgConnection;

/// Tables, columns, indexes, constraints, triggers and functions of every user schema but
/// sluice's, one sorted line each. `_schema` names the schema the test cares about (the
/// test databases have no other).
pub async fn snapshot(conn: &mut PgConnection, _schema: &str) -> Vec<String> {
    sluice_runner::catalog::snapshot(conn, &["sluice"])
        .await
        .expect("catalog snapshot")
}
