//! Operator commands: plan, status, pause/resume/cancel, signals, spec changes, verification.

use std::process::Stdio;
use std::time::{Duration, Instant};

use sluice_common::exit;
use sluice_tests::Project;

use super::items;

#[tokio::test]
async fn plan_shows_bounds_sql_and_explain_and_changes_nothing() {
    let project = Project::new().await;
    items(&project.db, 1_000).await;
    project.job("fill_b", &super::job_toml("fill_b", "batch_size = 100\n"));
    let run = project.run_backfill(&["plan", "fill_b"]);
    run.expect_code(exit::OK);
    let out = run.stdout();
    assert!(out.contains("key bounds:     (1) to (1000)"), "{out}");
    assert!(out.contains("about 10 batch(es) of 100"), "{out}");
    assert!(
        out.contains(
            r#"UPDATE "public"."items" SET b = md5(a::text), n = n + 1 WHERE EXISTS (SELECT FROM sluice_lease) AND ("id") > ('<cursor 1>'::bigint)"#
        ),
        "{out}"
    );
    assert!(out.contains("Index Cond"), "{out}");
    let dry = project.run_backfill(&["run", "fill_b", "--dry-run"]);
    dry.expect_code(exit::OK);
    let mut conn = project.db.connect().await;
    let schema: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = 'sluice')")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert!(!schema, "plan created sluice's tables");
    let touched: i64 = sqlx::query_scalar("SELECT count(*) FROM items WHERE b IS NOT NULL")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(touched, 0);
}

fn slow_job(project: &Project) {
    project.job(
        "fill_b",
        &super::job_toml(
            "fill_b",
            "batch_size = 50\nmin_batch_size = 50\nmax_batch_size = 50\npause = \"20ms\"\n",
        ),
    );
}

#[tokio::test]
async fn pause_is_noticed_within_a_batch_and_resume_continues() {
    let project = Project::new().await;
    items(&project.db, 5_000).await;
    slow_job(&project);
    let worker = project.spawn_backfill(&["run", "fill_b"]);
    project.wait_for_batches("fill_b", 3).await;
    project
        .run_backfill(&["pause", "fill_b"])
        .expect_code(exit::OK);
    let paused_at = Instant::now();
    let output = worker.wait_with_output().unwrap();
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(paused_at.elapsed() < Duration::from_secs(5));
    assert!(String::from_utf8_lossy(&output.stdout).contains("is paused"));

    let status = project.run_backfill(&["status", "--json"]);
    let doc: serde_json::Value = serde_json::from_str(&status.stdout()).unwrap();
    assert_eq!(doc["jobs"][0]["state"], "paused");
    let done_when_paused = doc["jobs"][0]["rows_scanned"].as_i64().unwrap();
    assert!(done_when_paused > 0 && done_when_paused < 5_000);

    // A paused job does not run until resumed.
    let still = project.run_backfill(&["run", "fill_b"]);
    still.expect_code(exit::OK);
    assert!(still.stdout().contains("is paused"), "{}", still.stdout());
    project
        .run_backfill(&["resume", "fill_b"])
        .expect_code(exit::OK);
    project
        .run_backfill(&[
            "run",
            "fill_b",
            "--pause",
            "0ms",
            "--batch-size",
            "1000",
            "--max-batch-size",
            "5000",
        ])
        .expect_code(exit::OK);
    let mut conn = project.db.connect().await;
    let over: i64 = sqlx::query_scalar("SELECT count(*) FROM items WHERE n <> 1")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(over, 0);
}

#[tokio::test]
async fn cancel_stops_the_worker_and_the_job_for_good() {
    let project = Project::new().await;
    items(&project.db, 5_000).await;
    slow_job(&project);
    let worker = project.spawn_backfill(&["run", "fill_b"]);
    project.wait_for_batches("fill_b", 2).await;
    project
        .run_backfill(&["cancel", "fill_b"])
        .expect_code(exit::OK);
    let output = worker.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(0));
    let again = project.run_backfill(&["run", "fill_b"]);
    again.expect_code(exit::BLOCKED);
    assert!(
        again.stderr().contains("was cancelled"),
        "{}",
        again.stderr()
    );
}

#[tokio::test]
async fn sigterm_finishes_the_batch_and_exits_resumable() {
    let project = Project::new().await;
    items(&project.db, 5_000).await;
    slow_job(&project);
    let worker = project.spawn_backfill(&["run", "fill_b"]);
    project.wait_for_batches("fill_b", 3).await;
    std::process::Command::new("kill")
        .args(["-TERM", &worker.id().to_string()])
        .status()
        .unwrap();
    let output = worker.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        output.status.code(),
        Some(i32::from(exit::INTERRUPTED)),
        "{stderr}"
    );
    assert!(
        stderr.contains("Resume with: sluice-backfill run jobs/fill_b.toml"),
        "{stderr}"
    );
    let status = project.run_backfill(&["status", "fill_b", "--json"]);
    let doc: serde_json::Value = serde_json::from_str(&status.stdout()).unwrap();
    assert_eq!(doc["jobs"][0]["state"], "stopped");
    project
        .run_backfill(&[
            "run",
            "fill_b",
            "--pause",
            "0ms",
            "--max-batch-size",
            "5000",
        ])
        .expect_code(exit::OK);
    let mut conn = project.db.connect().await;
    let over: i64 = sqlx::query_scalar("SELECT count(*) FROM items WHERE n <> 1")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(over, 0);
}

#[tokio::test]
async fn a_changed_spec_is_refused_unless_accepted() {
    let project = Project::new().await;
    items(&project.db, 2_000).await;
    slow_job(&project);
    let worker = project
        .backfill()
        .args(["run", "fill_b"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    project.wait_for_batches("fill_b", 2).await;
    project
        .run_backfill(&["pause", "fill_b"])
        .expect_code(exit::OK);
    let _ = worker.wait_with_output();
    project
        .run_backfill(&["resume", "fill_b"])
        .expect_code(exit::OK);
    project.job(
        "fill_b",
        &super::job_toml("fill_b", "").replace("md5(a::text)", "a::text"),
    );
    let run = project.run_backfill(&["run", "fill_b"]);
    run.expect_code(exit::INVALID_INPUT);
    assert!(
        run.stderr().contains("--accept-spec-change"),
        "{}",
        run.stderr()
    );
    project
        .run_backfill(&["run", "fill_b", "--accept-spec-change"])
        .expect_code(exit::OK);
}

#[tokio::test]
async fn verification_reports_rows_that_still_need_work() {
    let project = Project::new().await;
    items(&project.db, 1_000).await;
    project
        .db
        .exec("UPDATE items SET a = 0 WHERE id % 100 = 0")
        .await;
    // `set` leaves b NULL where a = 0: those rows still match `where` afterwards.
    project.job(
        "partial",
        "name = \"partial\"\ntable = \"items\"\nkey = [\"id\"]\nset = \"b = nullif(a, 0)::text\"\nwhere = \"b IS NULL\"\n",
    );
    let run = project.run_backfill(&["run", "partial"]);
    run.expect_code(exit::FAILED);
    assert!(
        run.stderr()
            .contains("10 row(s) in its key range still match `where` (the first at key (100))"),
        "{}",
        run.stderr()
    );
    assert!(run.stderr().contains("--rescan"), "{}", run.stderr());
    project.db.exec("UPDATE items SET a = 1 WHERE a = 0").await;
    project
        .run_backfill(&["run", "partial", "--rescan"])
        .expect_code(exit::OK);
}

#[tokio::test]
async fn a_broken_throttle_query_is_refused_before_any_batch() {
    let project = Project::new().await;
    items(&project.db, 500).await;
    for (query, problem) in [
        (
            "SELEC 1",
            "syntax error at or near \"SELEC\" (SQLSTATE 42601)",
        ),
        ("SELECT 1", "its column is not a boolean"),
        (
            "SELECT true FROM generate_series(1, 3)",
            "it returned more than one row",
        ),
    ] {
        project.job(
            "fill_b",
            &super::job_toml("fill_b", &format!("throttle_query = \"{query}\"\n")),
        );
        let run = project.run_backfill(&["run", "fill_b"]);
        run.expect_code(exit::INVALID_INPUT);
        assert!(
            run.stderr().contains(&format!(
                "the throttle_query of job fill_b does not work: {problem}"
            )) && run.stderr().contains("fix it in jobs/fill_b.toml"),
            "{}",
            run.stderr()
        );
        // PostgreSQL's own source line is not shown as if it were a line of the query.
        assert!(!run.stderr().contains(" at line "), "{}", run.stderr());
        let plan = project.run_backfill(&["plan", "fill_b"]);
        plan.expect_code(exit::OK);
        assert!(
            plan.stdout().contains(&format!(
                "throttle_query: does not work, a run would stop at its start: {problem}"
            )),
            "{}",
            plan.stdout()
        );
    }
    let mut conn = project.db.connect().await;
    let done: i64 = sqlx::query_scalar("SELECT count(*) FROM items WHERE b IS NOT NULL")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(done, 0, "nothing was updated");

    project.job(
        "fill_b",
        &super::job_toml("fill_b", "throttle_query = \"SELECT false\"\n"),
    );
    let plan = project.run_backfill(&["plan", "fill_b"]);
    assert!(
        plan.stdout().contains("throttle_query: returns false now"),
        "{}",
        plan.stdout()
    );
    project
        .run_backfill(&["run", "fill_b"])
        .expect_code(exit::OK);
}
