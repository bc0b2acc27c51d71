//! Lock-timeout guards: a migration blocked by another session retries instead of making
//! application queries queue behind it.

use std::process::Stdio;
use std::time::{Duration, Instant};

use sluice_common::exit;
use sluice_tests::Project;
use sqlx::Executor;

use super::recorded_versions;

/// How long the blocking session keeps its transaction open.
const HOLD: Duration = Duration::from_secs(3);
/// The migration's lock_timeout ceiling in this test.
const MAX_LOCK_TIMEOUT: Duration = Duration::from_millis(400);

#[tokio::test]
async fn a_blocked_alter_table_retries_without_stalling_application_queries() {
    let project = Project::new().await;
    project.db.exec("CREATE TABLE orders (id bigserial PRIMARY KEY, total int); INSERT INTO orders (total) SELECT g FROM generate_series(1, 100) g").await;
    project.write(
        "0001_add_note.sql",
        "ALTER TABLE orders ADD COLUMN note text;\n",
    );

    // A long transaction that has read the table: ALTER TABLE cannot get its lock until it ends.
    let mut holder = project.db.connect().await;
    holder
        .execute("SET application_name = 'long-report'")
        .await
        .unwrap();
    holder
        .execute("BEGIN; SELECT count(*) FROM orders")
        .await
        .unwrap();
    let holder_pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&mut holder)
        .await
        .unwrap();

    let runner = project
        .sluice()
        .args([
            "up",
            "--lock-timeout",
            "200ms",
            "--max-lock-timeout",
            "400ms",
            "--max-retries",
            "30",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();

    // The application keeps querying the table and measures every query.
    let app_url = project.db.url.clone();
    let app = tokio::spawn(async move {
        use sqlx::Connection;
        let mut app = sqlx::PgConnection::connect(&app_url).await.unwrap();
        let mut slowest = Duration::ZERO;
        let started = Instant::now();
        while started.elapsed() < HOLD + Duration::from_secs(1) {
            let query_started = Instant::now();
            sqlx::query("SELECT count(*) FROM orders")
                .execute(&mut app)
                .await
                .unwrap();
            slowest = slowest.max(query_started.elapsed());
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        slowest
    });

    tokio::time::sleep(HOLD).await;
    holder.execute("COMMIT").await.unwrap();
    let slowest_app_query = app.await.unwrap();
    let output = runner.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);

    assert_eq!(output.status.code(), Some(i32::from(exit::OK)), "{stderr}");
    assert!(
        stderr.contains("lock timeout"),
        "no retry was logged: {stderr}"
    );
    assert!(
        stderr.contains(&format!("pid {holder_pid} (long-report)")),
        "the blocker was not named: {stderr}"
    );
    // Without the guard the application would have waited about HOLD (3 s) behind the
    // ALTER TABLE; with it, at most the lock_timeout ceiling (generous margin for a busy CI).
    assert!(
        slowest_app_query < MAX_LOCK_TIMEOUT + Duration::from_millis(600),
        "an application query waited {slowest_app_query:?} behind the migration"
    );
    let mut conn = project.db.connect().await;
    assert_eq!(recorded_versions(&mut conn).await, vec![1]);
    let has_note: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM information_schema.columns WHERE table_name = 'orders' AND column_name = 'note')",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert!(has_note);
}

#[tokio::test]
async fn retries_are_bounded_and_the_failure_is_clear() {
    let project = Project::new().await;
    project.db.exec("CREATE TABLE t (id int)").await;
    project.write("0001_alter.sql", "ALTER TABLE t ADD COLUMN x int;\n");
    let mut holder = project.db.connect().await;
    holder
        .execute("BEGIN; LOCK TABLE t IN ACCESS SHARE MODE")
        .await
        .unwrap();
    let run = project.run(&[
        "up",
        "--lock-timeout",
        "50ms",
        "--max-lock-timeout",
        "50ms",
        "--max-retries",
        "2",
    ]);
    run.expect_code(exit::FAILED);
    let err = run.stderr();
    assert!(err.contains("SQLSTATE 55P03"), "{err}");
    assert!(err.contains("after 3 attempts"), "{err}");
    assert!(err.contains("0001_alter.sql at line 1"), "{err}");
    holder.execute("ROLLBACK").await.unwrap();
}

#[tokio::test]
async fn a_file_directive_overrides_the_run_timeouts() {
    let project = Project::new().await;
    project.write(
        "0001_slow.sql",
        "-- sluice:statement-timeout 100ms\nSELECT pg_sleep(2);\n",
    );
    let run = project.run(&["up", "--statement-timeout", "1h", "--max-retries", "0"]);
    run.expect_code(exit::FAILED);
    assert!(run.stderr().contains("SQLSTATE 57014"), "{}", run.stderr());
    assert!(
        run.stderr().contains("statement timeout"),
        "{}",
        run.stderr()
    );
}

/// Waits until a statement containing `text` runs in the project's database.
async fn wait_for_statement(project: &Project, text: &str) {
    let started = Instant::now();
    let sql = format!(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
         AND state = 'active' AND query LIKE '%{text}%' AND pid <> pg_backend_pid()"
    );
    while project.db.scalar(&sql).await == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{text} never ran"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn sigterm_during_a_long_statement_cancels_it_and_exits_75_within_seconds() {
    let project = Project::new().await;
    project.write(
        "0001_slow.sql",
        "CREATE TABLE t (id bigint);\nSELECT pg_sleep(60);\n",
    );
    let runner = project
        .sluice()
        .arg("up")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_statement(&project, "pg_sleep(60)").await;
    let signalled = Instant::now();
    #[expect(unsafe_code, reason = "kill(2) has no safe wrapper in std")]
    // SAFETY: kill has no memory-safety preconditions; the pid is our own child's.
    unsafe {
        libc::kill(i32::try_from(runner.id()).unwrap(), libc::SIGTERM);
    }
    let output = runner.wait_with_output().unwrap();
    // A safety bound far from the failure case (the statement would run 60 s).
    assert!(signalled.elapsed() < Duration::from_secs(5));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        output.status.code(),
        Some(i32::from(exit::INTERRUPTED)),
        "{stderr}"
    );
    assert!(stderr.contains("cancelled and rolled back"), "{stderr}");
    assert_eq!(
        project
            .db
            .scalar("SELECT count(*) FROM pg_class WHERE relname = 't'")
            .await,
        0,
        "the migration rolled back"
    );
    assert_eq!(
        project
            .db
            .scalar("SELECT count(*) FROM sluice.audit WHERE action = 'interrupt'")
            .await,
        1
    );
}

#[tokio::test]
async fn max_runtime_stops_a_long_migration_the_same_way() {
    let project = Project::new().await;
    project.write("0001_slow.sql", "SELECT pg_sleep(60);\n");
    let started = Instant::now();
    let run = project.run(&["up", "--max-runtime", "1s"]);
    run.expect_code(exit::INTERRUPTED);
    assert!(started.elapsed() < Duration::from_secs(20));
    assert!(
        run.stderr().contains("--max-runtime 1s reached"),
        "{}",
        run.stderr()
    );
}
