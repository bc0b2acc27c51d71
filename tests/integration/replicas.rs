//! The replication-lag guard against a real streaming standby (`pg_basebackup -R`) whose replay
//! is paused (`pg_wal_replay_pause()`): the job is held while the standby falls behind, seen
//! from the primary's `pg_stat_replication` and through `--replica-url`, also while the primary
//! is otherwise idle, and finishes exactly once when replay resumes (issue "Where production
//! runs", point 5).

use std::time::{Duration, Instant};

use sluice_common::exit;
use sluice_tests::{PrivateServer, Project};
use sqlx::{Connection, PgConnection};

const ROWS: i64 = 40_000;

/// A primary with a job's table, and its standby with every row replayed.
async fn primary_and_standby() -> (PrivateServer, PrivateServer, Project) {
    let (primary, standby, project) = primary_and_fresh_standby().await;
    // A transaction replayed on the standby gives it a last replay time to measure from.
    project.db.exec("CREATE TABLE replayed (id int)").await;
    let standby_url = standby_url(&project, &primary, &standby);
    let started = Instant::now();
    loop {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the standby never replayed"
        );
        if let Ok(mut conn) = PgConnection::connect(&standby_url).await
            && sqlx::query_scalar::<_, bool>("SELECT to_regclass('replayed') IS NOT NULL")
                .fetch_one(&mut conn)
                .await
                .unwrap_or(false)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    (primary, standby, project)
}

/// A primary with a job's table, and a standby that has replayed no transaction since it
/// started.
async fn primary_and_fresh_standby() -> (PrivateServer, PrivateServer, Project) {
    let primary =
        PrivateServer::start().unwrap_or_else(|e| panic!("cannot start a private server: {e}"));
    let project = Project::on(&primary.admin_url()).await;
    project
        .db
        .exec(&format!(
            "CREATE TABLE t (id bigint PRIMARY KEY, n int NOT NULL DEFAULT 0);
             INSERT INTO t (id) SELECT generate_series(1, {ROWS}); CHECKPOINT;"
        ))
        .await;
    // pg_sleep per row: about 50 ms a batch, so the job runs for 20 s, long enough for the
    // standby to fall behind while it does.
    project.job(
        "bump",
        "name = \"bump\"\ntable = \"t\"\nkey = [\"id\"]\n\
         set = \"n = n + 1 + length(pg_sleep(0.0005)::text)\"\n\
         batch_size = 100\nmin_batch_size = 100\nmax_batch_size = 100\n\
         load_check_interval = \"100ms\"\nmax_replication_lag = \"1s\"\npace = \"max\"\n",
    );
    let standby = primary
        .start_standby()
        .unwrap_or_else(|e| panic!("cannot start a standby: {e}"));
    (primary, standby, project)
}

/// The project's database on the standby.
fn standby_url(project: &Project, primary: &PrivateServer, standby: &PrivateServer) -> String {
    standby.url_from(&project.db.url, primary)
}

async fn on_standby(standby: &PrivateServer, sql: &str) {
    let mut conn = PgConnection::connect(&standby.admin_url()).await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()))
        .execute(&mut conn)
        .await
        .unwrap();
}

/// The job makes no progress while the standby stays behind (the primary otherwise idle):
/// unheld, it would commit a batch every 50 ms.
async fn held_by_replication_lag(project: &Project, worker: &mut std::process::Child) {
    let mut conn = project.db.connect().await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let before = project.batches(&mut conn, "bump").await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = project.batches(&mut conn, "bump").await;
    if before != after || after * 100 >= ROWS || worker.try_wait().unwrap().is_some() {
        let _ = worker.kill();
        let mut stderr = String::new();
        std::io::Read::read_to_string(worker.stderr.as_mut().unwrap(), &mut stderr).unwrap();
        panic!("batches {before} then {after}: not held while the standby lagged:\n{stderr}");
    }
    // While held, before any time is added up, `status` says why.
    let status = project.run_backfill(&["status", "bump"]);
    assert!(
        status.stdout().contains("last throttle: ")
            && status.stdout().contains(" replication_lag: "),
        "{}",
        status.stdout()
    );
}

async fn finishes_exactly_once(project: &Project, worker: std::process::Child) -> String {
    let output = worker.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(i32::from(exit::OK)), "{stderr}");
    assert_eq!(
        project
            .db
            .scalar("SELECT count(*) FROM t WHERE n = 1")
            .await,
        ROWS,
        "every row exactly once"
    );
    stderr
}

#[tokio::test]
async fn a_standby_whose_replay_is_paused_holds_the_job_from_pg_stat_replication() {
    let (_primary, standby, project) = primary_and_standby().await;
    on_standby(&standby, "SELECT pg_wal_replay_pause()").await;
    let mut worker = project.spawn_backfill(&["run", "bump", "--max-runtime", "120s"]);
    held_by_replication_lag(&project, &mut worker).await;
    on_standby(&standby, "SELECT pg_wal_replay_resume()").await;
    let stderr = finishes_exactly_once(&project, worker).await;
    assert!(
        stderr.contains("throttled: replication lag")
            && stderr.contains("on the primary's pg_stat_replication"),
        "{stderr}"
    );
}

#[tokio::test]
async fn a_replica_url_whose_replay_is_paused_holds_the_job_while_the_primary_idles() {
    let (primary, standby, project) = primary_and_standby().await;
    let replica = standby_url(&project, &primary, &standby);
    on_standby(&standby, "SELECT pg_wal_replay_pause()").await;
    let mut worker = project.spawn_backfill(&[
        "run",
        "bump",
        "--max-runtime",
        "120s",
        "--replica-url",
        &replica,
    ]);
    held_by_replication_lag(&project, &mut worker).await;
    on_standby(&standby, "SELECT pg_wal_replay_resume()").await;
    let stderr = finishes_exactly_once(&project, worker).await;
    // The standby's own replay clock, read through --replica-url, named with its password
    // masked.
    assert!(
        stderr.contains("throttled: replication lag") && stderr.contains("on replica postgres://"),
        "{stderr}"
    );
    assert!(!stderr.contains("its lag cannot be read"), "{stderr}");
}

/// A standby that has replayed nothing since it started has no replay time to measure its lag
/// by: behind, it was read as lag 0 and let the job run; now it holds the job until it catches
/// up.
#[tokio::test]
async fn a_replica_behind_with_nothing_replayed_yet_holds_the_job() {
    let (primary, standby, project) = primary_and_fresh_standby().await;
    let replica = standby_url(&project, &primary, &standby);
    on_standby(&standby, "SELECT pg_wal_replay_pause()").await;
    // WAL the standby receives and does not replay.
    project.db.exec("CREATE TABLE unreplayed (id int)").await;
    let mut worker = project.spawn_backfill(&[
        "run",
        "bump",
        "--max-runtime",
        "120s",
        "--replica-url",
        &replica,
    ]);
    held_by_replication_lag(&project, &mut worker).await;
    on_standby(&standby, "SELECT pg_wal_replay_resume()").await;
    let stderr = finishes_exactly_once(&project, worker).await;
    assert!(
        stderr.contains("has replayed no transaction since it started"),
        "{stderr}"
    );
}
