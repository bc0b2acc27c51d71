//! No-transaction migrations: statement by statement, progress recorded, resumed at the
//! statement that did not finish; concurrent index builds recovered after a kill.

use std::process::Stdio;
use std::time::{Duration, Instant};

use sluice_common::exit;
use sluice_tests::Project;
use sqlx::Executor;

use super::recorded_versions;

async fn index_state(conn: &mut sqlx::PgConnection, name: &str) -> Option<bool> {
    sqlx::query_scalar("SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE c.relname = $1")
        .bind(name)
        .fetch_optional(conn)
        .await
        .unwrap()
}

#[tokio::test]
async fn create_index_concurrently_runs_outside_a_transaction() {
    let project = Project::new().await;
    project.write("0001_t.sql", "CREATE TABLE t (a int, b int);\nINSERT INTO t SELECT g, g FROM generate_series(1, 1000) g;\n");
    project.write(
        "0002_idx.sql",
        "-- sluice:no-transaction\nCREATE INDEX CONCURRENTLY t_a ON t (a);\nCREATE INDEX CONCURRENTLY t_b ON t (b);\n",
    );
    let run = project.run(&["up"]);
    run.expect_code(exit::OK);
    assert!(
        run.stderr().contains("0002_idx: statement 2/2 done"),
        "{}",
        run.stderr()
    );
    let mut conn = project.db.connect().await;
    assert_eq!(index_state(&mut conn, "t_a").await, Some(true));
    assert_eq!(index_state(&mut conn, "t_b").await, Some(true));
    let progress: i64 = sqlx::query_scalar("SELECT count(*) FROM sluice.migration_progress")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(progress, 0, "a finished migration leaves no progress row");
}

#[tokio::test]
async fn a_failed_statement_resumes_there_after_the_fix() {
    let project = Project::new().await;
    project.write("0001_t.sql", "CREATE TABLE t (a int);\n");
    let path = project.write(
        "0002_steps.sql",
        "-- sluice:no-transaction\nCREATE INDEX CONCURRENTLY t_a ON t (a);\nCREATE INDEX CONCURRENTLY t_b ON t (b);\n",
    );
    let run = project.run(&["up"]);
    run.expect_code(exit::FAILED);
    let err = run.stderr();
    assert!(err.contains("0002_steps.sql at line 3"), "{err}");
    assert!(err.contains("SQLSTATE 42703"), "{err}");
    assert!(
        err.contains("statements 1 to 1 ran and are recorded"),
        "{err}"
    );

    let status = project.run(&["status", "--json"]);
    let doc: serde_json::Value = serde_json::from_str(&status.stdout()).unwrap();
    assert_eq!(doc["migrations"][1]["state"], "partial");
    assert_eq!(doc["migrations"][1]["progress"]["statements_done"], 1);
    assert!(
        doc["migrations"][1]["progress"]["last_error"]
            .as_str()
            .unwrap()
            .contains("column \"b\"")
    );

    // Fix the statement that failed; the one that ran is unchanged, so the run resumes at 2
    // (t_a would fail with "already exists" if it ran again).
    project.db.exec("ALTER TABLE t ADD COLUMN b int").await;
    std::fs::write(
        &path,
        "-- sluice:no-transaction\nCREATE INDEX CONCURRENTLY t_a ON t (a);\nCREATE INDEX CONCURRENTLY t_b ON t (a, b);\n",
    )
    .unwrap();
    let resumed = project.run(&["up"]);
    resumed.expect_code(exit::OK);
    let mut conn = project.db.connect().await;
    assert_eq!(recorded_versions(&mut conn).await, vec![1, 2]);
    assert_eq!(index_state(&mut conn, "t_b").await, Some(true));
}

#[tokio::test]
async fn a_runner_killed_during_create_index_concurrently_recovers_on_the_next_run() {
    let project = Project::new().await;
    project.write("0001_t.sql", "CREATE TABLE t (a int, b int);\nINSERT INTO t SELECT g, g FROM generate_series(1, 1000) g;\n");
    project.write(
        "0002_idx.sql",
        "-- sluice:no-transaction\n-- sluice:lock-timeout 60s\n\
         CREATE TABLE IF NOT EXISTS marker (id int);\nCREATE INDEX CONCURRENTLY t_b ON t (b);\n",
    );
    project.run(&["up", "--to", "1"]).expect_code(exit::OK);

    // An open writing transaction: the concurrent index build must wait for it to end.
    let mut writer = project.db.connect().await;
    writer
        .execute("BEGIN; INSERT INTO t VALUES (0, 0)")
        .await
        .unwrap();
    let mut conn = project.db.connect().await;
    let mut runner = project
        .sluice()
        .arg("up")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while !build_is_waiting(&mut conn).await {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the build never started waiting"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(index_state(&mut conn, "t_b").await, Some(false));
    runner.kill().unwrap();
    runner.wait().unwrap();

    // The killed runner's server session gives up once it notices its client is gone
    // (client_connection_check_interval), even while it waits for the writer.
    while sluice_sessions(&mut conn).await > 0 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the orphaned build never stopped"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    writer.execute("ROLLBACK").await.unwrap();
    assert_eq!(
        index_state(&mut conn, "t_b").await,
        Some(false),
        "the killed build leaves an INVALID index"
    );
    let status = project.run(&["status"]);
    assert!(
        status.stdout().contains("partial 1/2"),
        "{}",
        status.stdout()
    );

    let rerun = project.run(&["up"]);
    rerun.expect_code(exit::OK);
    assert!(
        rerun.stderr().contains("dropped INVALID index public.t_b"),
        "{}",
        rerun.stderr()
    );
    assert_eq!(index_state(&mut conn, "t_b").await, Some(true));
    assert_eq!(recorded_versions(&mut conn).await, vec![1, 2]);
}

async fn build_is_waiting(conn: &mut sqlx::PgConnection) -> bool {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE application_name = 'sluice' \
         AND query LIKE 'CREATE INDEX CONCURRENTLY%' AND wait_event_type = 'Lock')",
    )
    .fetch_one(conn)
    .await
    .unwrap()
}

async fn sluice_sessions(conn: &mut sqlx::PgConnection) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'sluice' AND datname = current_database()")
        .fetch_one(conn)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_blocked_drop_of_an_invalid_index_names_its_blocker() {
    let project = Project::new().await;
    project
        .db
        .exec("CREATE TABLE t (id bigint PRIMARY KEY, a int); INSERT INTO t VALUES (1, 1), (2, 1);")
        .await;
    // A failed unique build leaves an INVALID index behind.
    let mut conn = project.db.connect().await;
    assert!(
        sqlx::raw_sql("CREATE UNIQUE INDEX CONCURRENTLY t_a ON t (a)")
            .execute(&mut conn)
            .await
            .is_err()
    );
    project.db.exec("DELETE FROM t WHERE id = 2").await;
    project.write(
        "0001_idx.sql",
        "-- sluice:no-transaction\n-- sluice:lock-timeout 200ms\nCREATE UNIQUE INDEX CONCURRENTLY t_a ON t (a);\n",
    );
    // A reader in an open transaction: the drop must wait for it.
    let mut holder = project.db.connect().await;
    sqlx::raw_sql("BEGIN; SELECT * FROM t;")
        .execute(&mut holder)
        .await
        .unwrap();
    let run = project.run(&["up", "--max-retries", "1"]);
    sqlx::raw_sql("ROLLBACK")
        .execute(&mut holder)
        .await
        .unwrap();
    run.expect_code(exit::FAILED);
    let err = run.stderr();
    assert!(
        err.contains("DROP INDEX CONCURRENTLY of the INVALID index"),
        "{err}"
    );
    assert!(err.contains("blocked_by=[\"pid "), "{err}");
    // Once the reader is gone, the rerun drops it and builds it again.
    project.run(&["up"]).expect_code(exit::OK);
    assert_eq!(index_state(&mut conn, "t_a").await, Some(true));
}
