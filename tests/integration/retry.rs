//! Retry classification of real server errors: our own timeouts are transient, an operator's
//! cancel is not.

use std::time::Duration;

use sluice_common::retry::{Transient, classify};
use sluice_tests::TestDb;
use sqlx::{Connection, Executor};

#[tokio::test]
async fn a_lock_timeout_is_transient() {
    let db = TestDb::new().await;
    db.exec("CREATE TABLE t (id int)").await;
    let mut holder = db.connect().await;
    holder
        .execute("BEGIN; LOCK TABLE t IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();

    let mut waiter = db.connect().await;
    waiter.execute("SET lock_timeout = '100ms'").await.unwrap();
    let err = waiter.execute("SELECT * FROM t").await.unwrap_err();
    assert_eq!(classify(&err), Some(Transient::LockTimeout), "{err}");
    holder.execute("ROLLBACK").await.unwrap();
}

#[tokio::test]
async fn a_statement_timeout_is_transient() {
    let db = TestDb::new().await;
    let mut conn = db.connect().await;
    conn.execute("SET statement_timeout = '50ms'")
        .await
        .unwrap();
    let err = conn.execute("SELECT pg_sleep(5)").await.unwrap_err();
    assert_eq!(classify(&err), Some(Transient::StatementTimeout), "{err}");
}

#[tokio::test]
async fn a_cancel_by_an_operator_is_permanent() {
    let db = TestDb::new().await;
    let mut victim = db.connect().await;
    let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&mut victim)
        .await
        .unwrap();
    let url = db.url.clone();
    let canceller = tokio::spawn(async move {
        let mut admin = sqlx::PgConnection::connect(&url).await.unwrap();
        // Cancel only once the victim is really inside pg_sleep.
        for _ in 0..200 {
            let sleeping: bool = sqlx::query_scalar(
                "SELECT count(*) > 0 FROM pg_stat_activity WHERE pid = $1 AND query LIKE 'SELECT pg_sleep%' AND state = 'active'",
            )
            .bind(pid)
            .fetch_one(&mut admin)
            .await
            .unwrap();
            if sleeping {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        sqlx::query("SELECT pg_cancel_backend($1)")
            .bind(pid)
            .execute(&mut admin)
            .await
            .unwrap();
    });
    let err = victim.execute("SELECT pg_sleep(30)").await.unwrap_err();
    canceller.await.unwrap();
    assert_eq!(classify(&err), None, "{err}");
}

#[tokio::test]
async fn a_unique_violation_is_permanent() {
    let db = TestDb::new().await;
    db.exec("CREATE TABLE u (id int PRIMARY KEY); INSERT INTO u VALUES (1)")
        .await;
    let err = db
        .connect()
        .await
        .execute("INSERT INTO u VALUES (1)")
        .await
        .unwrap_err();
    assert_eq!(classify(&err), None);
}
