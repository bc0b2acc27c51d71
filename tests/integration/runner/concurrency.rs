//! One runner at a time: concurrent runners, a held lock, interruption.

use std::process::Stdio;
use std::time::{Duration, Instant};

use sluice_common::exit;
use sluice_common::lock::lock_key;
use sluice_tests::Project;
use sqlx::Executor;

use super::{advisory_locks, recorded_versions};

#[tokio::test]
async fn eight_runners_at_once_apply_each_migration_exactly_once() {
    let project = Project::new().await;
    for v in 1..=5 {
        project.write(
            &format!("000{v}_t{v}.sql"),
            &format!("CREATE TABLE t{v} (id int);\nSELECT pg_sleep(0.05);\n"),
        );
    }
    let children: Vec<_> = (0..8)
        .map(|_| {
            project
                .sluice()
                .arg("up")
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let outputs: Vec<_> = children
        .into_iter()
        .map(|c| c.wait_with_output().unwrap())
        .collect();
    let mut applied_lines = 0;
    for output in &outputs {
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(0), "a runner failed: {stderr}");
        applied_lines += String::from_utf8_lossy(&output.stdout)
            .matches("applied 000")
            .count();
    }
    assert_eq!(
        applied_lines, 5,
        "each migration is applied by exactly one runner"
    );
    let mut conn = project.db.connect().await;
    assert_eq!(recorded_versions(&mut conn).await, vec![1, 2, 3, 4, 5]);
    let applies: i64 =
        sqlx::query_scalar("SELECT count(*) FROM sluice.audit WHERE action = 'apply'")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert_eq!(applies, 5);
    assert_eq!(
        advisory_locks(&project).await,
        0,
        "a runner left its lock behind"
    );
}

async fn hold_runner_lock(project: &Project) -> sqlx::PgConnection {
    let mut holder = project.db.connect().await;
    holder
        .execute("SET application_name = 'deploy-42'")
        .await
        .unwrap();
    sqlx::query("SELECT pg_advisory_lock($1)")
        .bind(lock_key("sluice:runner:sluice"))
        .execute(&mut holder)
        .await
        .unwrap();
    holder
}

#[tokio::test]
async fn a_held_lock_times_out_naming_its_holder() {
    let project = Project::new().await;
    project.write("0001_a.sql", "CREATE TABLE a (id int);");
    let mut holder = hold_runner_lock(&project).await;
    let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&mut holder)
        .await
        .unwrap();

    let run = project.run(&["up", "--lock-wait", "1s"]);
    run.expect_code(exit::LOCK_HELD);
    let err = run.stderr();
    assert!(err.contains(&format!("pid {pid}")), "{err}");
    assert!(err.contains("deploy-42"), "{err}");
    assert!(err.contains("connected since"), "{err}");
    assert!(err.contains("--lock-wait"), "{err}");
    drop(holder);
}

#[tokio::test]
async fn a_runner_waits_for_the_lock_and_then_applies() {
    let project = Project::new().await;
    project.write("0001_a.sql", "CREATE TABLE a (id int);");
    let holder = hold_runner_lock(&project).await;
    let child = project
        .sluice()
        .args(["up", "--lock-wait", "30s"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Release the lock only once the runner says it is waiting for it: a fixed delay can be
    // shorter than a loaded machine takes to start the runner.
    let mut child = child;
    let (waiting_tx, waiting_rx) = std::sync::mpsc::channel();
    let reader = std::io::BufReader::new(child.stderr.take().unwrap());
    let stderr = std::thread::spawn(move || {
        let mut seen = String::new();
        for line in std::io::BufRead::lines(reader).map_while(Result::ok) {
            if line.contains("another runner holds the migration lock") {
                let _ = waiting_tx.send(());
            }
            seen.push_str(&line);
            seen.push('\n');
        }
        seen
    });
    let waited = waiting_rx.recv_timeout(Duration::from_secs(30));
    drop(holder);
    let status = child.wait().unwrap();
    let stderr = stderr.join().unwrap();
    assert!(waited.is_ok(), "the runner never said it waits: {stderr}");
    assert_eq!(status.code(), Some(0), "{stderr}");
    let mut conn = project.db.connect().await;
    assert_eq!(recorded_versions(&mut conn).await, vec![1]);
}

#[tokio::test]
async fn sigterm_while_waiting_exits_as_interrupted_and_releases_everything() {
    let project = Project::new().await;
    // Block the migration on a table lock, so the runner sits in retries.
    project.db.exec("CREATE TABLE a_blocker (id int)").await;
    project.write("0001_a.sql", "ALTER TABLE a_blocker ADD COLUMN x int;");
    let mut holder = project.db.connect().await;
    holder
        .execute("BEGIN; LOCK TABLE a_blocker IN ACCESS SHARE MODE")
        .await
        .unwrap();

    let child = project
        .sluice()
        .args(["up", "--lock-timeout", "100ms"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until it has retried at least once.
    let started = Instant::now();
    let mut conn = project.db.connect().await;
    loop {
        let retried: bool =
            sqlx::query_scalar("SELECT to_regclass('sluice.migrations') IS NOT NULL")
                .fetch_one(&mut conn)
                .await
                .unwrap();
        if retried && started.elapsed() > Duration::from_millis(800) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the runner never started"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let pid = i32::try_from(child.id()).unwrap();
    std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        output.status.code(),
        Some(i32::from(exit::INTERRUPTED)),
        "{stderr}"
    );
    assert!(stderr.contains("run the same command again"), "{stderr}");
    holder.execute("ROLLBACK").await.unwrap();
    assert_eq!(advisory_locks(&project).await, 0);
    assert!(recorded_versions(&mut conn).await.is_empty());
    // And the next run completes.
    project.run(&["up"]).expect_code(exit::OK);
}
