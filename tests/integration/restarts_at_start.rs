//! A restart at the very start of a run: while a backfill creates its tables, checks its
//! statement, tries its throttle_query or reads its key bounds, and while `sluice up` reads
//! its history. Each step is held by a lock of the test's own until the server restarts, so
//! the restart lands where the test says; the run must carry on and exit 0.

use sluice_common::exit;
use sluice_tests::activity::{self, Doing};
use sluice_tests::{PrivateServer, Project, StopMode};
use sqlx::PgConnection;

async fn wait_until_waiting(project: &Project, pattern: &str) {
    activity::wait_for(&project.db.url, pattern, Doing::WaitingOnLock).await;
}

/// Runs SQL on a session the test keeps (its locks held until the restart ends it).
async fn hold(project: &Project, sql: &str) -> PgConnection {
    let mut conn = project.db.connect().await;
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
        .execute(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    conn
}

/// The throttle_query takes this advisory lock, so the test can hold a run at it.
const THROTTLE_LOCK: i64 = 4242;

fn spec(name: &str) -> String {
    format!(
        "name = \"{name}\"\ntable = \"{name}\"\nkey = [\"id\"]\nset = \"n = n + 1\"\n\
         batch_size = 500\nlock_timeout = \"60s\"\n\
         throttle_query = \"SELECT false FROM pg_advisory_xact_lock({THROTTLE_LOCK})\"\n"
    )
}

/// Waits for the run and checks it finished its job: exit 0, each row updated once.
async fn finished(project: &Project, name: &str, run: std::process::Child, step: &str) {
    let output = run.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        output.status.code(),
        Some(i32::from(exit::OK)),
        "a restart while {step}: {stderr}"
    );
    assert_eq!(
        project
            .db
            .scalar(&format!("SELECT count(*) FROM {name} WHERE n <> 1"))
            .await,
        0,
        "a restart while {step}: every row updated exactly once"
    );
    assert!(
        stderr.contains("starting again"),
        "a restart while {step} was ridden out by starting again: {stderr}"
    );
}

#[tokio::test]
async fn a_restart_at_each_step_of_a_backfills_start_is_ridden_out() {
    let mut server = PrivateServer::start().unwrap();
    let project = Project::on(&server.admin_url()).await;
    for name in ["tables", "statement", "throttle", "bounds"] {
        project
            .db
            .exec(&format!(
                "CREATE TABLE {name} (id bigint PRIMARY KEY, n int NOT NULL DEFAULT 0);
                 INSERT INTO {name} (id) SELECT g FROM generate_series(1, 3000) g;
                 ANALYZE {name};"
            ))
            .await;
        project.job(name, &spec(name));
    }

    // Creating sluice's tables: they are created under an advisory lock the test holds.
    let schema_lock = sluice_common::lock::lock_key("sluice:schema:sluice");
    let holder = hold(&project, &format!("SELECT pg_advisory_lock({schema_lock})")).await;
    let run = project.spawn_backfill(&["run", "tables"]);
    wait_until_waiting(&project, "%pg_advisory_xact_lock%").await;
    server.restart(StopMode::Fast).unwrap();
    drop(holder);
    finished(&project, "tables", run, "creating sluice's tables").await;

    // Checking the batch statement: EXPLAIN waits for the table's lock.
    let holder = hold(
        &project,
        "BEGIN; LOCK TABLE statement IN ACCESS EXCLUSIVE MODE",
    )
    .await;
    let run = project.spawn_backfill(&["run", "statement"]);
    wait_until_waiting(&project, "EXPLAIN%").await;
    server.restart(StopMode::Fast).unwrap();
    drop(holder);
    finished(&project, "statement", run, "checking the batch statement").await;

    // Trying the throttle_query.
    let holder = hold(
        &project,
        &format!("SELECT pg_advisory_lock({THROTTLE_LOCK})"),
    )
    .await;
    let run = project.spawn_backfill(&["run", "throttle"]);
    wait_until_waiting(&project, "%pg_advisory_xact_lock(4242)%").await;
    server.restart(StopMode::Fast).unwrap();
    drop(holder);
    finished(&project, "throttle", run, "trying the throttle_query").await;

    // Reading the key bounds and sampling keys to split the job: held at the throttle_query
    // until the table is locked, then let go on to wait for the table.
    let mut throttle = hold(
        &project,
        &format!("SELECT pg_advisory_lock({THROTTLE_LOCK})"),
    )
    .await;
    let run = project.spawn_backfill(&["run", "bounds"]);
    wait_until_waiting(&project, "%pg_advisory_xact_lock(4242)%").await;
    let table = hold(
        &project,
        "BEGIN; LOCK TABLE bounds IN ACCESS EXCLUSIVE MODE",
    )
    .await;
    sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(THROTTLE_LOCK)
        .execute(&mut throttle)
        .await
        .unwrap();
    wait_until_waiting(&project, "%bounds%").await;
    server.restart(StopMode::Fast).unwrap();
    drop((throttle, table));
    finished(&project, "bounds", run, "reading the key bounds").await;
}

/// `sluice up` waiting to read its history when the server restarts: it takes its lock
/// again on a new connection, reads, and applies what is pending, once.
#[tokio::test]
async fn sluice_up_rides_out_a_restart_while_reading_its_history() {
    let mut server = PrivateServer::start().unwrap();
    let project = Project::on(&server.admin_url()).await;
    project.write("0001_a.sql", "CREATE TABLE a (id int);\n");
    project.run(&["up"]).expect_code(exit::OK);
    project.write("0002_b.sql", "CREATE TABLE b (id int);\n");
    let holder = hold(
        &project,
        "BEGIN; LOCK TABLE sluice.migrations IN ACCESS EXCLUSIVE MODE",
    )
    .await;
    let run = project.spawn_sluice(&["up"]);
    wait_until_waiting(&project, "%\"sluice\".\"migrations\"%").await;
    server.restart(StopMode::Fast).unwrap();
    drop(holder);
    let output = run.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(i32::from(exit::OK)), "{stderr}");
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("applied 0002_b"),
        "{stderr}"
    );
    assert_eq!(
        project
            .db
            .scalar("SELECT count(*) FROM sluice.migrations")
            .await,
        2
    );
}
