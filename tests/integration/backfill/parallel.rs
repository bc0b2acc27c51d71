//! Operations at scale: several worker processes on one job, a worker killed mid-range, run
//! limits, and load-aware throttling.

use std::process::Stdio;
use std::time::{Duration, Instant};

use sluice_common::exit;
use sluice_tests::Project;

const ROWS: i64 = 40_000;

/// `counters (id, n = id)` and a job adding 1 to every row: a row updated twice or never
/// shows as `n <> id + 1`.
async fn counters(project: &Project, extra: &str) {
    project
        .db
        .exec(&format!(
            "CREATE TABLE counters (id bigint PRIMARY KEY, n bigint NOT NULL);
             INSERT INTO counters SELECT g, g FROM generate_series(1, {ROWS}) g;
             ANALYZE counters;"
        ))
        .await;
    project.job(
        "bump",
        &format!(
            "name = \"bump\"\ntable = \"counters\"\nkey = [\"id\"]\nset = \"n = n + 1\"\n\
             batch_size = 200\nmin_batch_size = 200\nmax_batch_size = 200\n{extra}"
        ),
    );
}

async fn wrong_rows(project: &Project) -> i64 {
    let mut conn = project.db.connect().await;
    sqlx::query_scalar("SELECT count(*) FROM counters WHERE n <> id + 1")
        .fetch_one(&mut conn)
        .await
        .unwrap()
}

async fn job_state(project: &Project) -> (String, i64, i64) {
    let mut conn = project.db.connect().await;
    sqlx::query_as(
        "SELECT j.state, count(r.*) FILTER (WHERE r.state = 'done'), count(r.*)
         FROM sluice.backfill_jobs j JOIN sluice.backfill_ranges r ON r.job = j.name
         WHERE j.name = 'bump' GROUP BY j.state",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap()
}

#[tokio::test]
async fn four_worker_processes_update_every_row_exactly_once() {
    let project = Project::new().await;
    counters(&project, "pause = \"2ms\"\n").await;
    let workers: Vec<_> = (0..4)
        .map(|_| project.spawn_backfill(&["run", "bump", "--workers", "2"]))
        .collect();
    for worker in workers {
        let output = worker.wait_with_output().unwrap();
        assert_eq!(
            output.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    assert_eq!(wrong_rows(&project).await, 0, "every row exactly once");
    let (state, done, ranges) = job_state(&project).await;
    assert_eq!((state.as_str(), done), ("completed", ranges));
    assert!(ranges > 4, "the key space was split: {ranges} range(s)");
    let mut conn = project.db.connect().await;
    let updated: i64 = sqlx::query_scalar(
        "SELECT sum(rows_updated)::bigint FROM sluice.backfill_ranges WHERE job = 'bump'",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(updated, ROWS, "the ranges' counts add up to the table");
}

#[tokio::test]
async fn a_killed_worker_loses_its_range_to_another_after_its_lease() {
    let project = Project::new().await;
    // Slow batches, so the victim is surely mid-range when it dies; a short lease.
    counters(&project, "pause = \"20ms\"\nlease = \"2s\"\nranges = 4\n").await;
    let mut victim = project
        .backfill()
        .args(["-q", "run", "bump"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    project.wait_for_batches("bump", 5).await;
    victim.kill().unwrap();
    victim.wait().unwrap();
    let mut conn = project.db.connect().await;
    let (held, cursor_set): (String, bool) = sqlx::query_as(
        "SELECT owner, cursor IS NOT NULL FROM sluice.backfill_ranges
         WHERE job = 'bump' AND owner IS NOT NULL AND state = 'pending'",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert!(cursor_set, "the victim died mid-range, its range half done");

    let survivor = project.run_backfill(&["run", "bump"]);
    survivor.expect_code(exit::OK);
    assert!(
        survivor
            .stderr()
            .contains(&format!("from {held}, whose lease expired")),
        "the takeover is logged: {}",
        survivor.stderr()
    );
    assert!(
        survivor.stdout().contains("completed"),
        "{}",
        survivor.stdout()
    );
    assert_eq!(wrong_rows(&project).await, 0, "still exactly once");
}

#[tokio::test]
async fn a_run_limit_stops_cleanly_and_a_later_run_completes() {
    let project = Project::new().await;
    counters(&project, "pause = \"20ms\"\n").await;
    let stopped = project.run_backfill(&["run", "bump", "--max-runtime", "1500ms"]);
    stopped.expect_code(exit::OK);
    assert!(
        stopped
            .stdout()
            .contains("stopped because --max-runtime 1s 500ms reached")
            && stopped.stdout().contains("resumable"),
        "{}",
        stopped.stdout()
    );
    let (state, done, ranges) = job_state(&project).await;
    assert_eq!(state, "stopped");
    assert!(done < ranges, "the limit came mid-job");
    let mut conn = project.db.connect().await;
    let half: i64 = sqlx::query_scalar("SELECT count(*) FROM counters WHERE n = id + 1")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert!(half > 0 && half < ROWS, "{half} rows done before the limit");

    // A window that is closed now: nothing is done, and that is not an error.
    let now = chrono::Utc::now();
    let window = format!(
        "{}-{}",
        (now + chrono::Duration::hours(2)).format("%H:%M"),
        (now + chrono::Duration::hours(3)).format("%H:%M")
    );
    let closed = project.run_backfill(&["run", "bump", "--window", &window]);
    closed.expect_code(exit::OK);
    assert!(
        closed.stdout().contains("outside the run window"),
        "{}",
        closed.stdout()
    );

    let rest = project.run_backfill(&["run", "bump"]);
    rest.expect_code(exit::OK);
    // The summary counts the job's rows, the earlier run's included.
    assert!(
        rest.stdout().contains(&format!(
            "completed and verified: {ROWS} row(s) updated, {ROWS} scanned"
        )),
        "{}",
        rest.stdout()
    );
    assert_eq!(wrong_rows(&project).await, 0);
}

#[tokio::test]
async fn a_session_blocked_behind_a_batch_makes_the_backfill_throttle() {
    let project = Project::new().await;
    // Each batch holds its row locks for about a second.
    counters(&project, "").await;
    // pg_sleep per row: each 100-row batch holds its row locks for about a second.
    project.job(
        "bump",
        "name = \"bump\"\ntable = \"counters\"\nkey = [\"id\"]\n\
         set = \"n = n + 1 + length(pg_sleep(0.01)::text)\"\n\
         batch_size = 100\nmin_batch_size = 100\nmax_batch_size = 100\nload_check_interval = \"100ms\"\n\
         max_replication_lag = \"1h\"\npace = \"max\"\n",
    );
    // pace = "max": on the shared test server the pace would rest ten seconds after each of
    // these one-second batches (they cannot shrink), longer than this test watches; the
    // signal under test is blocked_sessions (the pace has tests of its own, backfill::pace).
    let metrics = project.path().join("bump.prom");
    // A watched replica (here the server itself, which answers lag 0) does not keep the
    // monitor from the other signals. (One that cannot be reached at the start stops the run:
    // hostile::secrets.)
    let worker = project.spawn_backfill(&[
        "run",
        "bump",
        "--max-runtime",
        "30s",
        "--metrics-file",
        metrics.to_str().unwrap(),
        "--replica-url",
        &project.db.url,
    ]);
    let mut conn = project.db.connect().await;
    let mut app = project.db.connect().await;
    let started = Instant::now();
    let mut last_cursor: Option<i64> = None;
    let throttled = loop {
        assert!(
            started.elapsed() < Duration::from_secs(25),
            "no throttle recorded"
        );
        let seconds: Option<f64> = sqlx::query_scalar(
            "SELECT (throttled_by ->> 'blocked_sessions')::float8 FROM sluice.backfill_jobs WHERE name = 'bump'",
        )
        .fetch_optional(&mut conn)
        .await
        .ok()
        .flatten()
        .flatten();
        if let Some(seconds) = seconds {
            break seconds;
        }
        // When a batch has just begun (its range's cursor moved), an application session
        // updates the first row of that batch, which the batch has locked already: it waits
        // on the backfill until the batch commits.
        let cursor: Option<i64> = sqlx::query_scalar(
            "SELECT cursor[1]::bigint FROM sluice.backfill_ranges WHERE job = 'bump' AND owner IS NOT NULL AND cursor IS NOT NULL",
        )
        .fetch_optional(&mut conn)
        .await
        .ok()
        .flatten()
        .flatten();
        if cursor.is_some() && cursor != last_cursor {
            last_cursor = cursor;
            tokio::time::sleep(Duration::from_millis(150)).await;
            sqlx::query("UPDATE counters SET n = n WHERE id = $1")
                .bind(cursor.unwrap_or_default() + 1)
                .execute(&mut app)
                .await
                .unwrap();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(throttled > 0.0);
    let status = project.run_backfill(&["status", "bump"]);
    assert!(
        status.stdout().contains("held back by: blocked_sessions")
            && status.stdout().contains("wait on locks the backfill holds"),
        "{}",
        status.stdout()
    );
    project
        .run_backfill(&["pause", "bump"])
        .expect_code(exit::OK);
    let output = worker.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(0));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("its lag cannot be read"), "{stderr}");
    let text = std::fs::read_to_string(&metrics).unwrap();
    assert!(
        text.contains(
            "sluice_backfill_throttled_seconds_total{job=\"bump\",reason=\"blocked_sessions\"}"
        ),
        "{text}"
    );
    assert!(
        text.contains("sluice_backfill_batch_duration_seconds_bucket"),
        "{text}"
    );
}

#[tokio::test]
async fn max_rows_per_second_is_shared_by_the_processes_running_the_job() {
    let project = Project::new().await;
    // 4,000 rows/s for the job, one budget in the database: 40,000 rows take 10 s (less at
    // most one batch of half a second); if each process had the whole rate, 5 s.
    counters(&project, "max_rows_per_second = 4000\n").await;
    let started = Instant::now();
    let workers: Vec<_> = (0..2)
        .map(|_| project.spawn_backfill(&["run", "bump"]))
        .collect();
    let mut stderr = String::new();
    for worker in workers {
        let output = worker.wait_with_output().unwrap();
        stderr.push_str(&String::from_utf8_lossy(&output.stderr));
        assert_eq!(output.status.code(), Some(0), "{stderr}");
    }
    let elapsed = started.elapsed();
    assert!(
        stderr.contains("max_rows_per_second 4000 is the job's limit"),
        "the job-wide limit is logged: {stderr}"
    );
    // A lower bound only: a slow machine makes the run longer, never shorter.
    assert!(
        elapsed >= Duration::from_secs(9),
        "40,000 rows at 4,000 rows/s for the job took only {elapsed:?}"
    );
    assert_eq!(wrong_rows(&project).await, 0, "every row exactly once");
}

#[tokio::test]
async fn a_never_analysed_table_is_split_at_the_quantiles_of_all_its_keys() {
    let project = Project::new().await;
    // No statistics: the whole table is the sample, and the server picks the split keys.
    project
        .db
        .exec(
            "CREATE TABLE counters (id bigint PRIMARY KEY, n bigint NOT NULL) WITH (autovacuum_enabled = off);
             INSERT INTO counters SELECT g, g FROM generate_series(1, 10000) g;",
        )
        .await;
    project.job(
        "bump",
        "name = \"bump\"\ntable = \"counters\"\nkey = [\"id\"]\nset = \"n = n + 1\"\nranges = 4\n",
    );
    project.run_backfill(&["run", "bump"]).expect_code(exit::OK);
    let mut conn = project.db.connect().await;
    let uppers: Vec<String> = sqlx::query_scalar(
        "SELECT upper[1] FROM sluice.backfill_ranges WHERE job = 'bump' ORDER BY range_no",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    assert_eq!(uppers, ["2500", "5000", "7500", "10000"]);
    let wrong: i64 = sqlx::query_scalar("SELECT count(*) FROM counters WHERE n <> id + 1")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(wrong, 0);
}

#[tokio::test]
async fn an_idle_worker_splits_a_busy_range_and_every_row_is_updated_once() {
    let project = Project::new().await;
    // One range for two workers: the second has nothing to claim, so it splits the first's
    // range and takes its upper half; then they keep halving what is left. Batches are slow
    // enough (about 2 s in all) that the job outlasts an idle worker's 1 s poll: its first look
    // may come before the first worker's claim has committed.
    counters(&project, "ranges = 1\npause = \"10ms\"\n").await;
    let run = project.run_backfill(&["run", "bump", "--workers", "2"]);
    run.expect_code(exit::OK);
    assert!(
        run.stderr().contains("split range 0 of "),
        "{}",
        run.stderr()
    );
    assert_eq!(wrong_rows(&project).await, 0, "every row exactly once");
    let (state, done, ranges) = job_state(&project).await;
    assert_eq!((state.as_str(), done), ("completed", ranges));
    assert!(ranges > 1, "the range was split: {ranges} range(s)");
    let mut conn = project.db.connect().await;
    let (updated, worked): (i64, i64) = sqlx::query_as(
        "SELECT sum(rows_updated)::bigint, count(*) FILTER (WHERE rows_updated > 0)
         FROM sluice.backfill_ranges WHERE job = 'bump'",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(updated, ROWS, "the ranges' counts add up to the table");
    assert!(worked > 1, "more than one range did work");
}

#[tokio::test]
async fn uuid_keyed_ranges_are_split_too() {
    let project = Project::new().await;
    project
        .db
        .exec(
            "CREATE TABLE tokens (id uuid PRIMARY KEY DEFAULT gen_random_uuid(), n int NOT NULL DEFAULT 0);
             INSERT INTO tokens SELECT FROM generate_series(1, 20000);
             ANALYZE tokens;",
        )
        .await;
    project.job(
        "touch",
        "name = \"touch\"\ntable = \"tokens\"\nkey = [\"id\"]\nset = \"n = n + 1\"\n\
         batch_size = 100\nmin_batch_size = 100\nmax_batch_size = 100\npause = \"10ms\"\nranges = 1\n",
    );
    let run = project.run_backfill(&["run", "touch", "--workers", "2"]);
    run.expect_code(exit::OK);
    assert!(
        run.stderr().contains("split range 0 of "),
        "{}",
        run.stderr()
    );
    let mut conn = project.db.connect().await;
    let (wrong, ranges): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM tokens WHERE n <> 1),
                (SELECT count(*) FROM sluice.backfill_ranges WHERE job = 'touch' AND state = 'done')",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(wrong, 0, "every row exactly once");
    assert!(ranges > 1, "the range was split: {ranges} range(s)");
}

#[tokio::test]
async fn max_rows_per_second_holds_over_a_job_whose_processes_are_killed_and_restarted() {
    let project = Project::new().await;
    counters(&project, "max_rows_per_second = 5000\nlease = \"2s\"\n").await;
    let mut conn = project.db.connect().await;
    let started = Instant::now();
    let mut runs = 0;
    loop {
        let done: Option<String> =
            sqlx::query_scalar("SELECT state FROM sluice.backfill_jobs WHERE name = 'bump'")
                .fetch_optional(&mut conn)
                .await
                .unwrap_or(None);
        if done.as_deref() == Some("completed") {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the job never completed"
        );
        // One or two processes at a time, each killed after 0.1-0.6 s: every new process
        // would burst its own first second if the limit were per process.
        let mut victims: Vec<_> = (0..1 + runs % 2)
            .map(|_| project.spawn_backfill(&["run", "bump"]))
            .collect();
        tokio::time::sleep(Duration::from_millis(100 + fastrand::u64(..500))).await;
        for victim in &mut victims {
            let _ = victim.kill();
            let _ = victim.wait();
        }
        runs += 1;
        if runs > 40 {
            // Let the last one finish.
            project.run_backfill(&["run", "bump"]).expect_code(exit::OK);
        }
    }
    let elapsed = started.elapsed();
    // 40,000 rows at 5,000 rows/s: 8 s at the least (less one batch of half a second).
    assert!(
        elapsed >= Duration::from_millis(7_500),
        "40,000 rows at 5,000 rows/s took only {elapsed:?} over {runs} killed runs"
    );
    assert_eq!(wrong_rows(&project).await, 0, "every row exactly once");
}
