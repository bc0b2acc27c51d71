//! A failover on a libpq multi-host URL (issue "Where production runs", points 2 and 3): a
//! primary with a synchronous streaming standby, both named in the URL with
//! `target_session_attrs=read-write`, as Patroni and pg_auto_failover setups document. The
//! primary stops while a two-worker backfill runs and the standby is promoted: the backfill
//! carries on in the same run, and a `sluice up` started during the switch waits for the new
//! primary.

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use sluice_common::exit;
use sluice_tests::{PrivateServer, Project, Run, StopMode};
use sqlx::{Connection, PgConnection};

const ROWS: i64 = 40_000;

#[tokio::test]
async fn a_backfill_on_a_multi_host_url_rides_out_a_failover_exactly_once() {
    let mut primary = PrivateServer::start_durable()
        .unwrap_or_else(|e| panic!("cannot start a private server: {e}"));
    let project = Project::on(&primary.admin_url()).await;
    project
        .db
        .exec(&format!(
            "CREATE TABLE t (id bigint PRIMARY KEY, n int NOT NULL DEFAULT 0);
             INSERT INTO t (id) SELECT generate_series(1, {ROWS}); CHECKPOINT;"
        ))
        .await;
    let standby = primary
        .start_standby()
        .unwrap_or_else(|e| panic!("cannot start a standby: {e}"));
    make_synchronous(&primary).await;
    let multi = multi_host_url(&project, &primary, &standby);
    project.job(
        "bump",
        "name = \"bump\"\ntable = \"t\"\nkey = [\"id\"]\n\
         set = \"n = n + 1 + length(pg_sleep(0.0003)::text)\"\n\
         batch_size = 200\nmin_batch_size = 200\nmax_batch_size = 200\npace = \"max\"\n",
    );
    project.write("1_after.sql", "CREATE TABLE after_failover (id int);");

    let job = spawn(
        &project,
        &multi,
        &["--connect-wait", "120s", "run", "bump", "--workers", "2"],
        true,
    );
    project.wait_for_batches("bump", 20).await;

    primary.stop(StopMode::Fast);
    let up = spawn(&project, &multi, &["--connect-wait", "120s", "up"], false);
    tokio::time::sleep(Duration::from_secs(3)).await;
    promote(&standby).await;

    let up = Run(up.wait_with_output().expect("sluice up"));
    up.expect_code(exit::OK);
    assert!(
        up.stderr().contains("target_session_attrs=read-write"),
        "up waited, naming why: {}",
        up.stderr()
    );
    let run = Run(job.wait_with_output().expect("the backfill"));
    run.expect_code(exit::OK);
    assert!(
        run.stdout().contains("completed and verified"),
        "{}",
        run.stdout()
    );
    let stderr = run.stderr();
    assert!(
        stderr.contains(&format!("connected to {}", standby.address())),
        "the backfill logged the host it chose after the failover: {stderr}"
    );
    assert!(!stderr.contains("throwaway-pw"), "password shown: {stderr}");

    let mut new_primary = PgConnection::connect(&standby.url_from(&project.db.url, &primary))
        .await
        .unwrap();
    let counts: Vec<(i32, i64)> = sqlx::query_as("SELECT n, count(*) FROM t GROUP BY n ORDER BY n")
        .fetch_all(&mut new_primary)
        .await
        .unwrap();
    assert_eq!(counts, vec![(1, ROWS)], "every row exactly once");
    let applied: i64 = sqlx::query_scalar("SELECT count(*) FROM sluice.migrations")
        .fetch_one(&mut new_primary)
        .await
        .unwrap();
    assert_eq!(applied, 1, "up applied its migration on the new primary");
}

/// `sluice-backfill` (or `sluice`) with the multi-host URL.
fn spawn(project: &Project, url: &str, args: &[&str], backfill: bool) -> Child {
    let mut command = if backfill {
        project.backfill()
    } else {
        project.sluice()
    };
    command
        .env("DATABASE_URL", url)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn")
}

/// Commits on the primary wait for the standby, so nothing committed is lost when it stops.
async fn make_synchronous(primary: &PrivateServer) {
    let mut admin = PgConnection::connect(&primary.admin_url()).await.unwrap();
    for statement in [
        "ALTER SYSTEM SET synchronous_standby_names = '*'",
        "ALTER SYSTEM SET synchronous_commit = 'on'",
        "SELECT pg_reload_conf()",
    ] {
        sqlx::raw_sql(statement).execute(&mut admin).await.unwrap();
    }
    let started = Instant::now();
    loop {
        let sync: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_replication WHERE sync_state = 'sync'",
        )
        .fetch_one(&mut admin)
        .await
        .unwrap();
        if sync == 1 {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the standby never became synchronous"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn promote(standby: &PrivateServer) {
    let mut admin = PgConnection::connect(&standby.admin_url()).await.unwrap();
    let promoted: bool = sqlx::query_scalar("SELECT pg_promote()")
        .fetch_one(&mut admin)
        .await
        .unwrap();
    assert!(promoted, "the standby was promoted");
}

/// The project's database on both servers, the primary first.
fn multi_host_url(project: &Project, primary: &PrivateServer, standby: &PrivateServer) -> String {
    let both = format!("{},{}", primary.address(), standby.address());
    let url = project.db.url.replacen(&primary.address(), &both, 1);
    format!("{url}?target_session_attrs=read-write")
}
