//! The faults production has, against a server of the test's own: restarts (fast and
//! immediate, as `pg_ctl restart -m` does them) while a backfill runs, and a runner started
//! while the server is down.

use std::time::{Duration, Instant};

use sluice_common::exit;
use sluice_tests::activity::{self, Doing};
use sluice_tests::{PrivateServer, Project, StopMode};

fn private_server() -> PrivateServer {
    PrivateServer::start().unwrap_or_else(|e| panic!("cannot start a private server: {e}"))
}

/// Batches `job` committed, or 0 (also while the server is away).
async fn batches(project: &Project, job: &str) -> i64 {
    let Ok(mut conn) = <sqlx::PgConnection as sqlx::Connection>::connect(&project.db.url).await
    else {
        return 0;
    };
    project.batches(&mut conn, job).await
}

async fn wait_for(project: &Project, job: &str, at_least: i64) {
    let started = Instant::now();
    while batches(project, job).await < at_least {
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "job {job} never reached {at_least} batches"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_backfill_keeps_going_through_three_restarts_and_updates_each_row_once() {
    let mut server = private_server();
    let project = Project::on(&server.admin_url()).await;
    project
        .db
        .exec(
            "CREATE TABLE t (id bigint PRIMARY KEY, n int NOT NULL DEFAULT 0);
             INSERT INTO t (id) SELECT g FROM generate_series(1, 40000) g;
             ANALYZE t;",
        )
        .await;
    project.job(
        "bump",
        "name = \"bump\"\ntable = \"t\"\nkey = [\"id\"]\nset = \"n = n + 1\"\n\
         batch_size = 200\nmin_batch_size = 200\nmax_batch_size = 200\npause = \"15ms\"\n",
    );
    let worker = project.spawn_backfill(&["run", "bump", "--workers", "2"]);
    let mut at = 0;
    for mode in [StopMode::Fast, StopMode::Immediate, StopMode::Fast] {
        at += 25;
        wait_for(&project, "bump", at).await;
        server.restart(mode).unwrap();
    }
    let output = worker.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert_eq!(
        project
            .db
            .scalar("SELECT count(*) FROM t WHERE n <> 1")
            .await,
        0,
        "every row updated exactly once"
    );
    let state: String = {
        let mut conn = project.db.connect().await;
        sqlx::query_scalar("SELECT state FROM sluice.backfill_jobs WHERE name = 'bump'")
            .fetch_one(&mut conn)
            .await
            .unwrap()
    };
    assert_eq!(state, "completed");
}

#[tokio::test]
async fn a_throttle_query_that_says_wait_holds_the_job_through_a_restart() {
    let mut server = private_server();
    let project = Project::on(&server.admin_url()).await;
    project
        .db
        .exec(
            "CREATE TABLE t (id bigint PRIMARY KEY, n int NOT NULL DEFAULT 0);
             INSERT INTO t (id) SELECT g FROM generate_series(1, 2000) g;
             CREATE TABLE hold (on_hold boolean NOT NULL);
             INSERT INTO hold VALUES (true);",
        )
        .await;
    project.job(
        "held",
        "name = \"held\"\ntable = \"t\"\nkey = [\"id\"]\nset = \"n = n + 1\"\n\
         throttle_query = \"SELECT on_hold FROM hold\"\nload_check_interval = \"100ms\"\n",
    );
    let worker = project.spawn_backfill(&["run", "held"]);
    // Registered (the job's row exists), held before its first batch.
    let started = Instant::now();
    while project.db.scalar("SELECT count(*) FROM pg_tables WHERE schemaname = 'sluice' AND tablename = 'backfill_jobs'",
    )
    .await
        == 0
    {
        assert!(started.elapsed() < Duration::from_secs(60));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(batches(&project, "held").await, 0);
    server.restart(StopMode::Immediate).unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        project
            .db
            .scalar("SELECT count(*) FROM t WHERE n <> 0")
            .await,
        0,
        "the job ran while its throttle_query said wait"
    );
    project.db.exec("UPDATE hold SET on_hold = false").await;
    let output = worker.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert_eq!(
        project
            .db
            .scalar("SELECT count(*) FROM t WHERE n <> 1")
            .await,
        0
    );
}

#[tokio::test]
async fn sluice_up_started_while_the_server_is_down_waits_for_it() {
    let mut server = private_server();
    let project = Project::on(&server.admin_url()).await;
    project.write("0001_t.sql", "CREATE TABLE t (id bigint PRIMARY KEY);\n");
    server.stop(StopMode::Fast);
    let up = project
        .sluice()
        .env("SLUICE_CONNECT_WAIT", "60s")
        .arg("up")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    server.start_again().unwrap();
    let output = up.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(i32::from(exit::OK)), "{stderr}");
    assert!(stderr.contains("retrying"), "{stderr}");
    assert_eq!(
        project
            .db
            .scalar("SELECT count(*) FROM sluice.migrations")
            .await,
        1
    );
}

async fn running(project: &Project, statement: &str) -> i64 {
    activity::sessions(&project.db.url, &format!("{statement}%"), Doing::Running).await
}

async fn wait_until_running(project: &Project, statement: &str) {
    activity::wait_for(&project.db.url, &format!("{statement}%"), Doing::Running).await;
}

/// A restart frees the runner's advisory lock with every session: the runner takes it again
/// on a new connection before its next statement, and a second runner started meanwhile
/// never runs the same statement at the same time (issue "Do no harm", point 7).
#[tokio::test]
async fn one_runner_at_a_time_holds_through_a_restart() {
    // Durable: an immediate stop must not lose what was committed.
    let mut server = PrivateServer::start_durable().unwrap();
    let project = Project::on(&server.admin_url()).await;
    project.db.exec("CREATE TABLE ran (at timestamptz)").await;
    project.write(
        "0001_slow.sql",
        "-- sluice:no-transaction\nSELECT pg_sleep(6);\nINSERT INTO ran VALUES (now());\n",
    );
    let spawn = || project.spawn_sluice(&["up", "--lock-wait", "0s"]);
    let first = spawn();
    wait_until_running(&project, "SELECT pg_sleep(6)").await;
    server.restart(StopMode::Immediate).unwrap();
    let second = spawn();
    let mut most = 0;
    let watching = Instant::now();
    while watching.elapsed() < Duration::from_secs(20) {
        most = most.max(running(&project, "SELECT pg_sleep(6)").await);
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let outputs = [
        first.wait_with_output().unwrap(),
        second.wait_with_output().unwrap(),
    ];
    let text: Vec<String> = outputs
        .iter()
        .map(|o| String::from_utf8_lossy(&o.stderr).into_owned())
        .collect();
    assert!(most <= 1, "two runners ran the statement at once: {text:?}");
    let codes: Vec<Option<i32>> = outputs.iter().map(|o| o.status.code()).collect();
    assert!(
        codes.contains(&Some(0)),
        "neither runner finished the migration: {codes:?} {text:?}"
    );
    for (code, err) in codes.iter().zip(&text) {
        assert!(
            *code == Some(0) || *code == Some(i32::from(exit::LOCK_HELD)),
            "{code:?}: {err}"
        );
    }
    assert_eq!(project.db.scalar("SELECT count(*) FROM ran").await, 1);
    project.run(&["status"]).expect_code(exit::OK);
    assert_eq!(
        project
            .db
            .scalar("SELECT count(*) FROM sluice.migrations WHERE version = 1")
            .await,
        1
    );
}

/// A no-transaction migration rides out an immediate restart during CREATE INDEX
/// CONCURRENTLY as a transactional one does: the build runs again and its progress is
/// recorded on a new lock connection (point 8).
#[tokio::test]
async fn a_concurrent_index_build_rides_out_an_immediate_restart() {
    // Durable: an immediate stop must not lose what was committed.
    let mut server = PrivateServer::start_durable().unwrap();
    let project = Project::on(&server.admin_url()).await;
    project
        .db
        .exec(
            "CREATE TABLE big (id bigint PRIMARY KEY, v text);
             INSERT INTO big SELECT g, md5(g::text) FROM generate_series(1, 300000) g;",
        )
        .await;
    project.write(
        "0001_index.sql",
        "-- sluice:no-transaction\nCREATE INDEX CONCURRENTLY big_v ON big (v);\n\
         CREATE INDEX CONCURRENTLY big_v2 ON big (v, id);\n",
    );
    let runner = project.spawn_sluice(&["up"]);
    wait_until_running(&project, "CREATE INDEX CONCURRENTLY").await;
    server.restart(StopMode::Immediate).unwrap();
    let output = runner.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert_eq!(
        project
            .db
            .scalar(
                "SELECT count(*) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid \
                 WHERE c.relname IN ('big_v', 'big_v2') AND i.indisvalid"
            )
            .await,
        2
    );
}

/// A database away for longer than `connect_wait`: the run exits within that wait (plus a
/// short last try), not twice it, and says it could not record the failure (issue "Do no
/// harm", point 9).
#[tokio::test]
async fn a_backfill_whose_database_stays_away_exits_within_its_connect_wait() {
    let mut server = private_server();
    let project = Project::on(&server.admin_url()).await;
    project
        .db
        .exec(
            "CREATE TABLE t (id bigint PRIMARY KEY, n int NOT NULL DEFAULT 0);
             INSERT INTO t (id) SELECT g FROM generate_series(1, 20000) g;",
        )
        .await;
    project.job(
        "bump",
        "name = \"bump\"\ntable = \"t\"\nkey = [\"id\"]\nset = \"n = n + 1\"\n\
         batch_size = 100\nmin_batch_size = 100\nmax_batch_size = 100\npause = \"50ms\"\n",
    );
    let worker = project.spawn_backfill(&["run", "bump", "--connect-wait", "8s"]);
    wait_for(&project, "bump", 3).await;
    server.stop(StopMode::Fast);
    let stopped = Instant::now();
    let output = worker.wait_with_output().unwrap();
    let took = stopped.elapsed();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        output.status.code(),
        Some(i32::from(exit::DATABASE_UNAVAILABLE)),
        "{stderr}"
    );
    // Twice the wait (16 s) is the failure case; 8 s, a 2 s last try and a loaded machine's
    // slack stay well under it.
    assert!(took < Duration::from_secs(14), "took {took:?}: {stderr}");
    assert!(stderr.contains("could not be recorded"), "{stderr}");
}

/// A URL that lands on a standby when sluice needs to write says so and waits for a primary
/// within `connect_wait`: exit 4 naming the standby, or, when the standby is promoted in time,
/// the run goes on there. Reading commands work on a standby (issue "Where production runs",
/// point 4).
#[tokio::test]
async fn a_standby_is_named_and_waited_out() {
    let primary = private_server();
    let project = Project::on(&primary.admin_url()).await;
    project.write(
        "0001_t.sql",
        "CREATE TABLE t (id bigint PRIMARY KEY, n int NOT NULL DEFAULT 0);\n",
    );
    project.run(&["up"]).expect_code(exit::OK);
    project
        .db
        .exec("INSERT INTO t (id) SELECT generate_series(1, 500); CHECKPOINT;")
        .await;
    let standby = primary.start_standby().unwrap();
    let standby_url = standby.url_from(&project.db.url, &primary);
    let on_standby = |args: &[&str]| {
        sluice_tests::Run(
            project
                .sluice()
                .env("DATABASE_URL", &standby_url)
                .args(args)
                .output()
                .unwrap(),
        )
    };
    on_standby(&["status"]).expect_code(exit::OK);
    project.write("0002_u.sql", "CREATE TABLE u (id int);\n");
    let refused = on_standby(&["--connect-wait", "2s", "up"]);
    refused.expect_code(exit::DATABASE_UNAVAILABLE);
    assert!(
        refused
            .stderr()
            .contains("is a standby (read-only); waiting for a primary"),
        "{}",
        refused.stderr()
    );
    project.job(
        "bump",
        "name = \"bump\"\ntable = \"t\"\nkey = [\"id\"]\nset = \"n = n + 1\"\n",
    );
    let backfill = sluice_tests::Run(
        project
            .backfill()
            .env("DATABASE_URL", &standby_url)
            .args(["--connect-wait", "2s", "run", "bump"])
            .output()
            .unwrap(),
    );
    backfill.expect_code(exit::DATABASE_UNAVAILABLE);
    assert!(
        backfill.stderr().contains("is a standby"),
        "{}",
        backfill.stderr()
    );
    // Promoted while `up` waits for a primary: the run goes on, on the new primary.
    let waiting = project
        .sluice()
        .env("DATABASE_URL", &standby_url)
        .args(["--connect-wait", "60s", "up"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut admin = <sqlx::PgConnection as sqlx::Connection>::connect(&standby.admin_url())
        .await
        .unwrap();
    sqlx::query("SELECT pg_promote()")
        .execute(&mut admin)
        .await
        .unwrap();
    let output = waiting.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("is a standby"), "{stderr}");
    let applied: i64 = sqlx::query_scalar("SELECT count(*) FROM sluice.migrations")
        .fetch_one(
            &mut <sqlx::PgConnection as sqlx::Connection>::connect(&standby_url)
                .await
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(applied, 2);
}
