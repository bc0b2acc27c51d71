//! Expand → dual-write → backfill → contract: the runner's gate, the scaffolding, and the
//! worked example under concurrent writers.

use std::path::PathBuf;
use std::time::Duration;

use sluice_backfill::job::Overrides;
use sluice_common::exit;
use sluice_common::shutdown::Shutdown;
use sluice_demo::{Options, Step};
use sluice_tests::{Project, TestDb};

#[tokio::test]
async fn the_worked_example_loses_nothing_under_concurrent_writers() {
    let db = TestDb::new().await;
    let options = Options {
        rows: 30_000,
        writers: 2,
        project: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".."),
        overrides: Overrides {
            batch_size: Some(500),
            max_batch_size: Some(2_000),
            target_batch_time: Some(Duration::from_millis(50)),
            ..Overrides::default()
        },
    };
    let mut steps = Vec::new();
    let report = sluice_demo::run(&db.url, &options, &Shutdown::never(), &mut |step| {
        if let Step::Say(line) = step {
            steps.push(line);
        }
    })
    .await
    .expect("the example runs");
    let summary = report.render();
    assert!(report.gate_held, "{summary}");
    assert!(
        report
            .gate_message
            .contains("backfill job accounts_email_normalized has not run yet"),
        "{summary}"
    );
    assert!(
        report.traffic.inserts > 0 && report.traffic.updates > 0,
        "no traffic: {summary}"
    );
    assert!(report.traffic.errors.is_empty(), "{summary}");
    assert!(report.traffic.slowest <= report.lock_timeout, "{summary}");
    assert_eq!(report.wrong_rows, 0, "{summary}");
    assert_eq!(report.null_rows, 0, "{summary}");
    assert!(
        report.not_null_enforced && report.trigger_dropped,
        "{summary}"
    );
    assert_eq!(
        report.rows_after,
        30_000 + i64::try_from(report.traffic.inserts).unwrap(),
        "{summary}"
    );
    assert!(report.ok(), "{summary}");
    assert!(
        steps
            .iter()
            .any(|s| s.contains("applied 20261103090000_accounts_email_normalized_contract")),
        "{steps:?}"
    );
}

#[tokio::test]
async fn up_stops_at_the_gated_migration_until_the_backfill_is_verified() {
    let project = Project::new().await;
    project.db.exec("CREATE TABLE accounts (id bigserial PRIMARY KEY, email text NOT NULL); INSERT INTO accounts (email) SELECT 'U' || g || '@X.com' FROM generate_series(1, 2000) g;").await;
    let new = project.run(&[
        "new",
        "accounts_email_lower",
        "--pattern",
        "add-column",
        "--table",
        "accounts",
        "--column",
        "email_lower",
        "--type",
        "text",
        "--expression",
        "lower(email)",
    ]);
    new.expect_code(exit::OK);

    let blocked = project.run(&["up"]);
    blocked.expect_code(exit::BLOCKED);
    let err = blocked.stderr();
    assert!(
        err.contains("_accounts_email_lower_contract is blocked"),
        "{err}"
    );
    assert!(err.contains("backfill job accounts_email_lower has not run yet; run it: sluice-backfill run accounts_email_lower"), "{err}");
    assert!(
        blocked.stdout().contains("_accounts_email_lower_expand"),
        "the expand step was not applied: {}",
        blocked.stdout()
    );
    let status = project.run(&["status", "--json"]);
    let doc: serde_json::Value = serde_json::from_str(&status.stdout()).unwrap();
    let contract = &doc["migrations"][1];
    assert_eq!(contract["state"], "pending");
    assert!(
        contract["blocked_by"][0]
            .as_str()
            .unwrap()
            .contains("accounts_email_lower"),
        "{doc}"
    );
    assert!(project.run(&["status"]).stdout().contains("blocked"));
    project.run(&["check"]).expect_code(exit::PENDING);

    // Rows written now get the value from the trigger.
    project
        .db
        .exec("INSERT INTO accounts (email) VALUES ('New@X.com')")
        .await;

    project
        .run_backfill(&["run", "accounts_email_lower"])
        .expect_code(exit::OK);

    let done = project.run(&["up"]);
    done.expect_code(exit::OK);
    assert!(
        done.stdout().contains("_accounts_email_lower_contract"),
        "{}",
        done.stdout()
    );
    let mut conn = project.db.connect().await;
    let (wrong, not_null): (i64, bool) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM accounts WHERE email_lower IS DISTINCT FROM lower(email)), \
                (SELECT attnotnull FROM pg_attribute WHERE attrelid = 'accounts'::regclass AND attname = 'email_lower')",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!((wrong, not_null), (0, true));
    project.run(&["check"]).expect_code(exit::OK);
}

#[tokio::test]
async fn a_paused_job_keeps_the_gate_closed_with_its_progress() {
    let project = Project::new().await;
    project.db.exec("CREATE TABLE accounts (id bigserial PRIMARY KEY, email text NOT NULL); INSERT INTO accounts (email) SELECT 'U' || g FROM generate_series(1, 10000) g;").await;
    project
        .run(&[
            "new",
            "lower_email",
            "--pattern",
            "add-column",
            "--table",
            "accounts",
            "--column",
            "email_lower",
            "--type",
            "text",
            "--expression",
            "lower(email)",
        ])
        .expect_code(exit::OK);
    project.run(&["up"]).expect_code(exit::BLOCKED);
    let worker = project
        .backfill()
        .args([
            "run",
            "lower_email",
            "--batch-size",
            "100",
            "--min-batch-size",
            "100",
            "--max-batch-size",
            "100",
            "--pause",
            "20ms",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Pause once some batches are in.
    project.wait_for_batches("lower_email", 2).await;
    project
        .run_backfill(&["pause", "lower_email"])
        .expect_code(exit::OK);
    let _ = worker.wait_with_output();
    let blocked = project.run(&["up"]);
    blocked.expect_code(exit::BLOCKED);
    assert!(
        blocked
            .stderr()
            .contains("backfill job lower_email is paused at"),
        "{}",
        blocked.stderr()
    );
    assert!(
        blocked.stderr().contains("rows scanned"),
        "{}",
        blocked.stderr()
    );
}

#[tokio::test]
async fn a_scaffolded_rename_keeps_both_columns_in_sync_and_drops_the_old_one() {
    let project = Project::new().await;
    project.db.exec("CREATE TABLE people (id int PRIMARY KEY, surname text NOT NULL); INSERT INTO people SELECT g, 'n' || g FROM generate_series(1, 1000) g;").await;
    project
        .run(&[
            "new",
            "people_family_name",
            "--pattern",
            "rename-column",
            "--table",
            "people",
            "--column",
            "surname",
            "--to",
            "family_name",
            "--type",
            "text",
        ])
        .expect_code(exit::OK);
    project.run(&["up"]).expect_code(exit::BLOCKED);
    // The old application writes the old name, the new one the new name: both stay equal.
    project
        .db
        .exec("INSERT INTO people (id, surname) VALUES (1001, 'old-app')")
        .await;
    project
        .db
        .exec("INSERT INTO people (id, surname, family_name) VALUES (1002, 'new-app', 'new-app')")
        .await;
    project
        .db
        .exec("UPDATE people SET family_name = 'renamed' WHERE id = 5")
        .await;
    project
        .db
        .exec("UPDATE people SET surname = 'changed' WHERE id = 6")
        .await;
    project
        .run_backfill(&["run", "people_family_name"])
        .expect_code(exit::OK);
    let mut conn = project.db.connect().await;
    let unequal: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM people WHERE family_name IS DISTINCT FROM surname",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(unequal, 0);
    project.run(&["up"]).expect_code(exit::OK);
    let names: Vec<String> =
        sqlx::query_scalar("SELECT family_name FROM people WHERE id IN (5, 6, 1001) ORDER BY id")
            .fetch_all(&mut conn)
            .await
            .unwrap();
    assert_eq!(names, vec!["renamed", "changed", "old-app"]);
    let old_column: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM information_schema.columns WHERE table_name = 'people' AND column_name = 'surname')")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert!(!old_column, "the old column is still there");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_scaffolded_table_copy_under_writers_ends_equal_and_swapped() {
    use crate::backfill::{Workload, Writers, kill_repeatedly};

    const ROWS: i64 = 20_000;
    let project = Project::new().await;
    project
        .db
        .exec(&format!(
            "CREATE TABLE accounts (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                                    email text NOT NULL, visits int NOT NULL DEFAULT 0);
             INSERT INTO accounts (email) SELECT 'u' || g FROM generate_series(1, {ROWS}) g;"
        ))
        .await;
    project
        .run(&[
            "new",
            "accounts_copy",
            "--pattern",
            "copy-table",
            "--table",
            "accounts",
            "--to",
            "accounts_new",
        ])
        .expect_code(exit::OK);
    // Slow enough to be killed mid-run.
    let spec = project.path().join("jobs/accounts_copy.toml");
    let text = std::fs::read_to_string(&spec).unwrap();
    std::fs::write(
        &spec,
        text.replace("batch_size = 1000", "batch_size = 100")
            .replace("max_batch_size = 50000", "max_batch_size = 100")
            .replace("pause = \"0s\"", "pause = \"5ms\"")
            + "lease = \"2s\"\npace = \"max\"\n",
    )
    .unwrap();
    // The expand step applies; the contract waits for the copy.
    let expand = project.run(&["up"]);
    expand.expect_code(exit::BLOCKED);
    assert!(
        expand
            .stderr()
            .contains("backfill job accounts_copy has not run yet"),
        "{}",
        expand.stderr()
    );

    let pool = project.db.pool().await;
    let workload = Workload {
        insert: "INSERT INTO accounts (email) VALUES ('w' || $1::text)",
        update: "UPDATE accounts SET visits = visits + 1 WHERE id = $1",
        rekey: None,
        delete: "DELETE FROM accounts WHERE id = $1",
        keys: ROWS,
    };
    let writers = Writers::start(pool.clone(), workload);
    let (kills, _) = kill_repeatedly(&project, "accounts_copy", 3, 17).await;
    assert!(kills >= 3, "only {kills} kills before the copy finished");
    let copy = project.run_backfill(&["run", "accounts_copy"]);
    let (writes, errors) = writers.stop().await;
    copy.expect_code(exit::OK);
    assert!(errors.is_empty(), "the application saw errors: {errors:?}");
    assert!(writes > 100, "the writers barely ran: {writes}");
    let (missing, extra): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM (SELECT * FROM accounts EXCEPT ALL SELECT * FROM accounts_new) a),
                (SELECT count(*) FROM (SELECT * FROM accounts_new EXCEPT ALL SELECT * FROM accounts) b)",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!((missing, extra), (0, 0), "the new table equals the old one");

    // The contract swaps the tables under traffic.
    let writers = Writers::start(pool.clone(), workload);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let contract = project.run(&["up"]);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (_, errors) = writers.stop().await;
    contract.expect_code(exit::OK);
    assert!(
        errors.is_empty(),
        "the swap broke the application: {errors:?}"
    );
    let mut conn = project.db.connect().await;
    let (retired, mirror): (bool, bool) = sqlx::query_as(
        "SELECT to_regclass('accounts_retired') IS NOT NULL,
                EXISTS (SELECT FROM pg_trigger WHERE tgname = 'accounts_copy_mirror')",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert!(
        retired && !mirror,
        "the old table is retired and the mirror gone"
    );
    // The application's table is the new one now, and its identity continues after the copy.
    let (id, in_new, in_retired): (i64, bool, bool) = sqlx::query_as(
        "WITH added AS (INSERT INTO accounts (email) VALUES ('after') RETURNING id)
         SELECT id, true, EXISTS (SELECT FROM accounts_retired r WHERE r.id = added.id) FROM added",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    let before: i64 = sqlx::query_scalar("SELECT max(id) FROM accounts_retired")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert!(
        in_new && !in_retired && id > before,
        "new id {id}, old max {before}"
    );
}
