//! A session holding a row lock in the key range: batches time out and retry smaller, never
//! blocking that session longer than the batch lock_timeout; the job completes afterwards.

use std::time::{Duration, Instant};

use sluice_common::exit;
use sluice_tests::Project;
use sqlx::Executor;

use super::items;

const LOCK_TIMEOUT: Duration = Duration::from_millis(300);

#[tokio::test]
async fn a_row_lock_makes_batches_retry_without_blocking_its_holder() {
    let project = Project::new().await;
    items(&project.db, 20_000).await;
    project.job(
        "fill_b",
        &super::job_toml("fill_b", "batch_size = 2000\nmin_batch_size = 200\nmax_batch_size = 2000\nlock_timeout = \"300ms\"\nmax_retries = 50\n"),
    );
    // The holder locks a row in the middle of the range.
    let mut holder = project.db.connect().await;
    holder
        .execute("BEGIN; SELECT * FROM items WHERE id = 10000 FOR UPDATE")
        .await
        .unwrap();

    let worker = project.spawn_backfill(&["run", "fill_b"]);

    // Wait until the worker has reached the locked row at least once.
    let mut watcher = project.db.connect().await;
    let started = Instant::now();
    loop {
        let retries: i64 = sqlx::query_scalar(
            "SELECT coalesce((SELECT retries FROM sluice.backfill_jobs WHERE name = 'fill_b'), 0)",
        )
        .fetch_one(&mut watcher)
        .await
        .unwrap_or(0);
        if retries > 0 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the worker never hit the lock"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The holder now touches rows the worker's batch may hold (just before the locked one)
    // over and over: each wait is bounded by the worker's lock_timeout.
    let mut slowest = Duration::ZERO;
    let probe_started = Instant::now();
    while probe_started.elapsed() < Duration::from_secs(2) {
        let t = Instant::now();
        holder
            .execute("UPDATE items SET a = a WHERE id BETWEEN 9990 AND 9999")
            .await
            .unwrap();
        slowest = slowest.max(t.elapsed());
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    holder.execute("ROLLBACK").await.unwrap();
    let output = worker.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(i32::from(exit::OK)), "{stderr}");
    assert!(stderr.contains("lock timeout"), "{stderr}");
    assert!(
        slowest < LOCK_TIMEOUT + Duration::from_millis(700),
        "the lock holder waited {slowest:?} behind a batch"
    );
    let mut conn = project.db.connect().await;
    let (missing, over): (i64, i64) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE b IS NULL), count(*) FILTER (WHERE n <> 1) FROM items",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!((missing, over), (0, 0));
}

#[tokio::test]
async fn a_batch_that_keeps_failing_fails_the_job_resumably() {
    let project = Project::new().await;
    items(&project.db, 1_000).await;
    project.job(
        "fill_b",
        &super::job_toml(
            "fill_b",
            "batch_size = 100\nmin_batch_size = 100\nlock_timeout = \"50ms\"\nmax_retries = 2\n",
        ),
    );
    let mut holder = project.db.connect().await;
    holder
        .execute("BEGIN; LOCK TABLE items IN EXCLUSIVE MODE")
        .await
        .unwrap();
    let run = project.run_backfill(&["run", "fill_b"]);
    run.expect_code(exit::FAILED);
    assert!(
        run.stderr().contains("failed after 3 attempt(s)"),
        "{}",
        run.stderr()
    );
    assert!(
        run.stderr()
            .contains("sluice-backfill run jobs/fill_b.toml"),
        "{}",
        run.stderr()
    );
    let status = project.run_backfill(&["status", "fill_b", "--json"]);
    let doc: serde_json::Value = serde_json::from_str(&status.stdout()).unwrap();
    assert_eq!(doc["jobs"][0]["state"], "failed");
    assert!(
        doc["jobs"][0]["last_error"]
            .as_str()
            .unwrap()
            .contains("lock timeout")
    );
    holder.execute("ROLLBACK").await.unwrap();
    project
        .run_backfill(&["run", "fill_b"])
        .expect_code(exit::OK);
}
