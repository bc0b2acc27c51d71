//! History and files that disagree: edited, missing and out-of-order migrations.

use sluice_common::exit;
use sluice_tests::Project;

use super::recorded_versions;

#[tokio::test]
async fn an_edited_applied_migration_is_refused_with_both_checksums() {
    let project = Project::new().await;
    let path = project.write("0001_a.sql", "CREATE TABLE a (id int);");
    project.write("0002_b.sql", "CREATE TABLE b (id int);");
    project.run(&["up", "--to", "1"]).expect_code(exit::OK);
    std::fs::write(&path, "CREATE TABLE a (id bigint);").unwrap();

    let run = project.run(&["up"]);
    run.expect_code(exit::HISTORY_DRIFT);
    let err = run.stderr();
    assert!(
        err.contains("migration 0001_a was applied but its file"),
        "{err}"
    );
    assert!(err.contains("0001_a.sql has changed"), "{err}");
    assert_eq!(err.matches("checksum").count(), 2, "{err}");
    let mut conn = project.db.connect().await;
    assert_eq!(
        recorded_versions(&mut conn).await,
        vec![1],
        "nothing else may be applied"
    );
    project.run(&["check"]).expect_code(exit::HISTORY_DRIFT);
    // Even the flags that accept other drift do not accept an edit.
    project
        .run(&["up", "--allow-missing", "--allow-out-of-order"])
        .expect_code(exit::HISTORY_DRIFT);
}

#[tokio::test]
async fn a_missing_applied_migration_is_refused_unless_allowed() {
    let project = Project::new().await;
    let path = project.write("0001_a.sql", "CREATE TABLE a (id int);");
    project.run(&["up"]).expect_code(exit::OK);
    std::fs::remove_file(path).unwrap();
    project.write("0002_b.sql", "CREATE TABLE b (id int);");

    let run = project.run(&["up"]);
    run.expect_code(exit::HISTORY_DRIFT);
    assert!(
        run.stderr()
            .contains("migration 1_a was applied but its file is missing"),
        "{}",
        run.stderr()
    );
    assert!(run.stderr().contains("--allow-missing"), "{}", run.stderr());
    project
        .run(&["up", "--allow-missing"])
        .expect_code(exit::OK);
    let mut conn = project.db.connect().await;
    assert_eq!(recorded_versions(&mut conn).await, vec![1, 2]);
}

#[tokio::test]
async fn an_out_of_order_file_is_refused_unless_allowed() {
    let project = Project::new().await;
    project.write("0002_b.sql", "CREATE TABLE b (id int);");
    project.run(&["up"]).expect_code(exit::OK);
    project.write("0001_a.sql", "CREATE TABLE a (id int);");

    let run = project.run(&["up"]);
    run.expect_code(exit::HISTORY_DRIFT);
    assert!(
        run.stderr()
            .contains("0001_a is not applied but is older than the newest applied migration"),
        "{}",
        run.stderr()
    );
    project.run(&["check"]).expect_code(exit::HISTORY_DRIFT);
    project
        .run(&["up", "--allow-out-of-order"])
        .expect_code(exit::OK);
    let mut conn = project.db.connect().await;
    assert_eq!(recorded_versions(&mut conn).await, vec![1, 2]);
}

#[tokio::test]
async fn a_file_with_its_own_transaction_runs_as_its_tool_ran_it() {
    let project = Project::new().await;
    // golang-migrate style: SET lines, then one block: one transaction of sluice's.
    project.write(
        "0001_a.sql",
        "SET lock_timeout = '5s';\nBEGIN;\nCREATE TABLE a (id bigint PRIMARY KEY);\nINSERT INTO a VALUES (1);\nCOMMIT;\n",
    );
    // Two blocks and a concurrent index outside them: statement by statement, blocks as units.
    project.write(
        "0002_b.sql",
        "BEGIN;\nCREATE TABLE b (id bigint PRIMARY KEY, a bigint);\nCOMMIT;\n\
         CREATE INDEX CONCURRENTLY IF NOT EXISTS b_a ON b (a);\n\
         BEGIN;\nINSERT INTO b VALUES (1, 1);\nINSERT INTO nope VALUES (1);\nCOMMIT;\n",
    );
    let status = project.run(&["status", "--json"]);
    let doc: serde_json::Value = serde_json::from_str(&status.stdout()).unwrap();
    assert_eq!(
        doc["migrations"][0]["runs"],
        "one transaction (its own BEGIN ... COMMIT)"
    );
    assert!(
        doc["migrations"][1]["runs"]
            .as_str()
            .unwrap()
            .starts_with("statement by statement"),
        "{doc}"
    );
    let run = project.run(&["up"]);
    run.expect_code(exit::FAILED);
    let err = run.stderr();
    assert!(
        err.contains("statements 1 to 4 ran and are recorded (of 8)"),
        "{err}"
    );
    assert!(err.contains("rolled back"), "{err}");
    let mut conn = project.db.connect().await;
    assert_eq!(recorded_versions(&mut conn).await, vec![1]);
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM b")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(rows, 0, "the failed block's insert was rolled back");
    let valid: bool =
        sqlx::query_scalar("SELECT indisvalid FROM pg_index WHERE indexrelid = 'b_a'::regclass")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert!(valid, "the index built outside the blocks stays");
    // Fixed, the run resumes at the failed block's BEGIN.
    std::fs::write(
        project.migrations().join("0002_b.sql"),
        "BEGIN;\nCREATE TABLE b (id bigint PRIMARY KEY, a bigint);\nCOMMIT;\n\
         CREATE INDEX CONCURRENTLY IF NOT EXISTS b_a ON b (a);\n\
         BEGIN;\nINSERT INTO b VALUES (1, 1);\nINSERT INTO b VALUES (2, 2);\nCOMMIT;\n",
    )
    .unwrap();
    project.run(&["up"]).expect_code(exit::OK);
    assert_eq!(recorded_versions(&mut conn).await, vec![1, 2]);
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM b")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(rows, 2);
}

#[tokio::test]
async fn repair_accepts_an_edited_migration_with_an_audited_reason() {
    let project = Project::new().await;
    let path = project.write("0001_a.sql", "CREATE TABLE a (id int);\n");
    project.run(&["up"]).expect_code(exit::OK);
    std::fs::write(
        &path,
        "-- the table all services read\nCREATE TABLE a (id int);\n",
    )
    .unwrap();
    project.run(&["check"]).expect_code(exit::HISTORY_DRIFT);

    let missing_reason = project.run(&["repair", "--accept-checksum", "0001", "--reason", " "]);
    missing_reason.expect_code(exit::USAGE);
    let run = project.run(&[
        "repair",
        "--accept-checksum",
        "0001",
        "--reason",
        "comment only",
        "--actor",
        "bob",
    ]);
    run.expect_code(exit::OK);
    assert!(
        run.stdout()
            .contains("accepted the edited file of migration 0001"),
        "{}",
        run.stdout()
    );
    project.run(&["check"]).expect_code(exit::OK);
    let mut conn = project.db.connect().await;
    let (detail, actor): (String, Option<String>) =
        sqlx::query_as("SELECT detail, actor FROM sluice.audit WHERE action = 'repair'")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert!(detail.contains("comment only"), "{detail}");
    assert_eq!(actor.as_deref(), Some("bob"));

    project.write("0002_b.sql", "CREATE TABLE b (id int);\n");
    let not_applied = project.run(&["repair", "--accept-checksum", "0002", "--reason", "x"]);
    not_applied.expect_code(exit::USAGE);
    assert!(
        not_applied.stderr().contains("0002_b is not applied"),
        "{}",
        not_applied.stderr()
    );
}

#[tokio::test]
async fn baseline_adopts_an_existing_schema_and_up_applies_only_newer_files() {
    let project = Project::new().await;
    // The schema already exists, made by hand or by another tool.
    project
        .db
        .exec("CREATE TABLE a (id int); CREATE TABLE b (id int);")
        .await;
    project.write("0001_a.sql", "CREATE TABLE a (id int);\n");
    project.write("0002_b.sql", "CREATE TABLE b (id int);\n");
    project.write("0003_c.sql", "CREATE TABLE c (id int);\n");
    let run = project.run(&["baseline", "--version", "0002"]);
    run.expect_code(exit::OK);
    assert!(
        run.stdout().contains("2 migration(s) recorded"),
        "{}",
        run.stdout()
    );
    let up = project.run(&["up"]);
    up.expect_code(exit::OK);
    assert!(
        up.stdout().contains("applied 0003_c") && !up.stdout().contains("applied 0001_a"),
        "{}",
        up.stdout()
    );
    let mut conn = project.db.connect().await;
    assert_eq!(recorded_versions(&mut conn).await, vec![1, 2, 3]);
    let baselined: i64 =
        sqlx::query_scalar("SELECT count(*) FROM sluice.audit WHERE action = 'baseline'")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert_eq!(baselined, 2);
    project
        .run(&["baseline", "--version", "0009"])
        .expect_code(exit::USAGE);
}

#[tokio::test]
async fn drift_shows_a_column_added_by_hand() {
    let project = Project::new().await;
    project.write("0001_a.sql", "CREATE TABLE a (id bigint PRIMARY KEY, name text NOT NULL);\nCREATE INDEX a_name ON a (name);\n");
    project.write("0002_b.sql", "CREATE TABLE b (id bigint PRIMARY KEY);\n");
    project.run(&["up"]).expect_code(exit::OK);
    let clean = project.run(&["drift"]);
    clean.expect_code(exit::OK);
    assert!(clean.stdout().contains("no drift"), "{}", clean.stdout());

    project
        .db
        .exec("ALTER TABLE a ADD COLUMN hotfix int DEFAULT 0; DROP INDEX a_name;")
        .await;
    let drifted = project.run(&["drift", "--json"]);
    drifted.expect_code(exit::SCHEMA_DRIFT);
    let doc: serde_json::Value = serde_json::from_str(
        drifted
            .stdout()
            .lines()
            .find(|l| l.starts_with('{'))
            .unwrap(),
    )
    .unwrap();
    let lines: Vec<&str> = doc["differences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap())
        .collect();
    assert!(
        lines.contains(&"+ column public.a.hotfix integer null default 0"),
        "{lines:?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("- index CREATE INDEX a_name")),
        "{lines:?}"
    );
    let mut conn = project.db.connect().await;
    let scratch_left: i64 =
        sqlx::query_scalar("SELECT count(*) FROM pg_database WHERE datname LIKE 'sluice_drift_%'")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert_eq!(scratch_left, 0);
}

#[tokio::test]
async fn a_schema_file_that_does_not_load_is_invalid_input() {
    let project = Project::new().await;
    project.write("0001_a.sql", "CREATE TABLE a (id bigint PRIMARY KEY);\n");
    project.run(&["up"]).expect_code(exit::OK);
    std::fs::write(
        project.path().join("schema.sql"),
        "CREATE TABLEE broken (;\n",
    )
    .unwrap();
    let run = project.run(&["drift", "--schema-file", "schema.sql"]);
    run.expect_code(exit::INVALID_INPUT);
    assert!(
        run.stderr()
            .contains("does not load into a scratch database"),
        "{}",
        run.stderr()
    );
    assert!(run.stderr().contains("--dump-schema"), "{}", run.stderr());
    let missing = project.run(&["drift", "--schema-file", "nope.sql"]);
    missing.expect_code(exit::INVALID_INPUT);
    assert!(
        missing.stderr().contains("nope.sql"),
        "{}",
        missing.stderr()
    );
}
