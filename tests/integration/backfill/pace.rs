//! The default pace against a server of the test's own (other tests' sessions would count as
//! an application): alone it runs unpaced; next to sessions at work it measures and shares;
//! `pace = "max"` does neither; a WAL budget holds the job back.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use sluice_tests::{PrivateServer, Project};

fn private_server() -> PrivateServer {
    PrivateServer::start().unwrap_or_else(|e| panic!("cannot start a private server: {e}"))
}

async fn project_with_rows(server: &PrivateServer, rows: i64) -> Project {
    let project = Project::on(&server.admin_url()).await;
    project
        .db
        .exec(&format!(
            "CREATE TABLE t (id bigint PRIMARY KEY, a int NOT NULL, b text);
             INSERT INTO t (id, a) SELECT g, g FROM generate_series(1, {rows}) g;
             ANALYZE t;
             CREATE TABLE app (id int PRIMARY KEY, n bigint NOT NULL);
             INSERT INTO app SELECT g, 0 FROM generate_series(1, 8) g;"
        ))
        .await;
    project
}

/// Three sessions committing short transactions until `stop`, as an application would.
fn application(url: &str, stop: &Arc<AtomicBool>) -> Vec<tokio::task::JoinHandle<u64>> {
    (0..3)
        .map(|n| {
            let (url, stop) = (url.to_owned(), Arc::clone(stop));
            tokio::spawn(async move {
                let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&url)
                    .await
                    .unwrap();
                let mut done = 0;
                // A few milliseconds of work a statement: a session the probe finds at work.
                while !stop.load(Ordering::Relaxed) {
                    sqlx::query(
                        "UPDATE app SET n = n + 1 + length(pg_sleep(0.003)::text) * 0 WHERE id = $1",
                    )
                    .bind(n + 1)
                    .execute(&mut conn)
                    .await
                    .unwrap();
                    done += 1;
                }
                done
            })
        })
        .collect()
}

/// Runs `sluice-backfill <args>` while the application works; the application must have
/// made progress meanwhile.
async fn run_next_to_application(project: &Project, args: &[&str]) -> sluice_tests::Run {
    let stop = Arc::new(AtomicBool::new(false));
    let app = application(&project.db.url, &stop);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let run = project.run_backfill(args);
    stop.store(true, Ordering::Relaxed);
    for task in app {
        assert!(task.await.unwrap() > 0, "the application made no progress");
    }
    run
}

/// Every row filled.
async fn assert_filled(project: &Project) {
    let left = project
        .db
        .scalar("SELECT count(*) FROM t WHERE b IS NULL")
        .await;
    assert_eq!(left, 0);
}

fn spec(extra: &str) -> String {
    format!("name = \"fill\"\ntable = \"t\"\nkey = [\"id\"]\nset = \"b = md5(a::text)\"\n{extra}")
}

/// The job's seconds held back by each reason (`status --json`).
async fn held_back(project: &Project) -> serde_json::Map<String, serde_json::Value> {
    let status = project.run_backfill(&["status", "fill", "--json"]);
    let json: serde_json::Value = serde_json::from_str(&status.stdout()).unwrap();
    json["jobs"][0]["throttled_by"]
        .as_object()
        .unwrap_or_else(|| panic!("no throttled_by in {json}"))
        .clone()
}

#[tokio::test]
async fn alone_on_the_server_a_job_runs_unpaced() {
    let server = private_server();
    let project = project_with_rows(&server, 50_000).await;
    project.job("fill", &spec(""));
    let run = project.run_backfill(&["run", "fill"]);
    assert_eq!(run.code(), Some(0), "{}", run.stderr());
    assert!(
        run.stderr()
            .contains("pace: alone on the server: full speed"),
        "{}",
        run.stderr()
    );
    assert!(!run.stderr().contains("pace: sharing"), "{}", run.stderr());
    let held = held_back(&project).await;
    assert!(held.get("pace").is_none(), "{held:?}");
    assert!(held.get("measuring").is_none(), "{held:?}");
    assert_filled(&project).await;
}

// The application's tasks run on other threads while this one waits for the run.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn next_to_an_application_a_job_measures_and_shares_then_completes() {
    let server = private_server();
    let project = project_with_rows(&server, 60_000).await;
    project.job("fill", &spec(""));
    let run = run_next_to_application(&project, &["run", "fill", "--log-format", "json"]).await;
    let stderr = run.stderr();
    assert_eq!(run.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("pace: measuring the server without the job"),
        "{stderr}"
    );
    assert!(stderr.contains("pace: sharing with"), "{stderr}");
    assert!(stderr.contains("\"pace\":\"sharing"), "{stderr}");
    let held = held_back(&project).await;
    let seconds = |reason: &str| held.get(reason).and_then(serde_json::Value::as_f64);
    assert!(seconds("pace").unwrap_or(0.0) > 0.0, "{held:?}");
    assert!(seconds("measuring").unwrap_or(0.0) > 0.0, "{held:?}");
    let status = project.run_backfill(&["status", "fill", "--json"]);
    let json: serde_json::Value = serde_json::from_str(&status.stdout()).unwrap();
    let pace = &json["jobs"][0]["pace"];
    assert!(pace["describe"].as_str().is_some(), "{pace}");
    assert_filled(&project).await;
}

// The application's tasks run on other threads while this one waits for the run.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pace_max_does_not_pace_next_to_an_application() {
    let server = private_server();
    let project = project_with_rows(&server, 30_000).await;
    project.job("fill", &spec("pace = \"max\"\n"));
    let run = run_next_to_application(&project, &["run", "fill"]).await;
    assert_eq!(run.code(), Some(0), "{}", run.stderr());
    assert!(
        run.stderr().contains("pace max: no pacing"),
        "{}",
        run.stderr()
    );
    let held = held_back(&project).await;
    assert!(held.get("pace").is_none(), "{held:?}");
    assert!(held.get("measuring").is_none(), "{held:?}");
}

#[tokio::test]
async fn a_wal_budget_holds_the_job_back() {
    let server = private_server();
    let project = project_with_rows(&server, 40_000).await;
    project.job(
        "fill",
        &spec("pace = \"max\"\nmax_wal_per_second = \"1MB\"\n"),
    );
    let before: i64 = project
        .db
        .scalar("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint")
        .await;
    let started = Instant::now();
    let run = project.run_backfill(&["run", "fill"]);
    let took = started.elapsed();
    assert_eq!(run.code(), Some(0), "{}", run.stderr());
    let wal: i64 = project
        .db
        .scalar("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint")
        .await
        - before;
    // Unlimited, this job writes its WAL in well under a second. The budget spreads it out:
    // at 1 MiB/s (with the first second's guess and the last batches' slack, at most twice
    // that).
    #[expect(clippy::cast_precision_loss, reason = "bytes of WAL, for a ratio")]
    let budget_seconds = wal as f64 / f64::from(1 << 20);
    assert!(
        took.as_secs_f64() >= budget_seconds / 2.0,
        "{wal} bytes of WAL in {took:?}"
    );
    let held = held_back(&project).await;
    let seconds = held.get("wal_budget").and_then(serde_json::Value::as_f64);
    assert!(seconds.unwrap_or(0.0) > 0.0, "{held:?}");
}

#[tokio::test]
async fn an_unknown_pace_is_refused_naming_the_key() {
    let server = private_server();
    let project = project_with_rows(&server, 10).await;
    project.job("fill", &spec("pace = \"fast\"\n"));
    let run = project.run_backfill(&["run", "fill"]);
    assert_eq!(run.code(), Some(3), "{}", run.stderr());
    assert!(run.stderr().contains("`pace`"), "{}", run.stderr());
    let flag = project.run_backfill(&["run", "fill", "--pace", "fast"]);
    assert_eq!(flag.code(), Some(2), "{}", flag.stderr());
}

#[tokio::test]
async fn a_never_analysed_table_has_a_row_estimate_from_the_start() {
    let project = Project::new().await;
    project
        .db
        .exec(
            "CREATE TABLE t (id bigint PRIMARY KEY, a int NOT NULL, b text)
                 WITH (autovacuum_enabled = false);
             INSERT INTO t (id, a) SELECT g, g FROM generate_series(1, 30000) g;",
        )
        .await;
    assert_eq!(
        project
            .db
            .scalar("SELECT reltuples::bigint FROM pg_class WHERE oid = 't'::regclass")
            .await,
        -1,
        "the table must be one the planner knows nothing of"
    );
    project.job("fill", &spec(""));
    let run = project.run_backfill(&["run", "fill", "--log-format", "json"]);
    assert_eq!(run.code(), Some(0), "{}", run.stderr());
    let started = run
        .stderr()
        .lines()
        .find(|l| l.contains("\"starting job fill\""))
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .unwrap_or_else(|| panic!("{}", run.stderr()));
    let estimated = started["estimated_rows"].as_i64().unwrap();
    assert!((27_000..=33_000).contains(&estimated), "{started}");
}

#[tokio::test]
async fn a_job_waits_while_wal_archiving_falls_behind() {
    let mut server = private_server();
    let admin = server.admin_url();
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&admin)
        .await
        .unwrap();
    // An archive that refuses every segment: the backlog only grows.
    for setting in [
        "ALTER SYSTEM SET archive_mode = on",
        "ALTER SYSTEM SET archive_command = 'false'",
    ] {
        sqlx::raw_sql(setting).execute(&mut conn).await.unwrap();
    }
    drop(conn);
    server.restart(sluice_tests::StopMode::Fast).unwrap();
    let project = project_with_rows(&server, 20_000).await;
    // Two segments switched and not archived (the archiver retries each for a while).
    for _ in 0..2 {
        project
            .db
            .exec("CREATE TABLE IF NOT EXISTS w (n int); INSERT INTO w VALUES (1)")
            .await;
        project.db.exec("SELECT pg_switch_wal()").await;
    }
    let started = Instant::now();
    while project
        .db
        .scalar("SELECT failed_count FROM pg_stat_archiver")
        .await
        == 0
    {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the archiver never failed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    project.job(
        "fill",
        &spec("max_archive_lag = \"1MB\"\nload_check_interval = \"100ms\"\n"),
    );
    let run = project.run_backfill(&["run", "fill", "--max-runtime", "3s"]);
    assert_eq!(run.code(), Some(0), "{}", run.stderr());
    assert!(
        run.stderr().contains("WAL archiving is") && run.stderr().contains("behind (limit 1 MiB)"),
        "{}",
        run.stderr()
    );
    assert_eq!(
        project
            .db
            .scalar("SELECT count(*) FROM t WHERE b IS NOT NULL")
            .await,
        0,
        "no batch ran while archiving was behind"
    );
}
