//! The test support itself: a database per test, isolated from the others.

use sluice_tests::{TestDb, server};
use sqlx::Row;

#[tokio::test]
async fn each_test_gets_an_empty_database_of_its_own() {
    let (a, b) = tokio::join!(TestDb::new(), TestDb::new());
    assert_ne!(a.name, b.name);
    a.exec("CREATE TABLE shared_name (id int); INSERT INTO shared_name VALUES (1), (2)")
        .await;
    b.exec("CREATE TABLE shared_name (id int)").await;
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM shared_name")
        .fetch_one(&mut b.connect().await)
        .await
        .unwrap();
    assert_eq!(rows, 0, "database b sees rows written to database a");
}

#[tokio::test]
async fn a_dropped_test_database_is_removed_from_the_server() {
    let name = {
        let db = TestDb::new().await;
        db.name.clone()
    };
    let mut admin = sqlx::PgConnection::connect(&server().admin_url)
        .await
        .unwrap();
    let left = sqlx::query("SELECT 1 FROM pg_database WHERE datname = $1")
        .bind(&name)
        .fetch_optional(&mut admin)
        .await
        .unwrap();
    assert!(left.is_none(), "{name} still exists");
}

#[tokio::test]
async fn the_server_is_postgresql_we_can_administer() {
    let db = TestDb::new().await;
    let row = sqlx::query("SELECT current_setting('server_version_num')::int AS v, rolsuper FROM pg_roles WHERE rolname = current_user")
        .fetch_one(&mut db.connect().await)
        .await
        .unwrap();
    assert!(
        row.get::<i32, _>("v") >= 130_000,
        "PostgreSQL 13 or newer is needed"
    );
    let _: bool = row.get("rolsuper");
}

use sqlx::Connection;
