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
async fn transaction_control_in_a_file_is_refused_at_load() {
    let project = Project::new().await;
    project.write("0001_a.sql", "BEGIN;\nCREATE TABLE a (id int);\nCOMMIT;\n");
    let run = project.run(&["up"]);
    run.expect_code(exit::INVALID_INPUT);
    assert!(
        run.stderr()
            .contains("0001_a.sql: line 1: `BEGIN;` controls the transaction"),
        "{}",
        run.stderr()
    );
}
