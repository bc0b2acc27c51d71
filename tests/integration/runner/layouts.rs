//! Which tool's directory sluice reads: detected and shown, forced with `--layout` or
//! `layout = "..."`, mixed directories refused, and diesel's versions in diesel's order.

use sluice_common::exit;
use sluice_tests::Project;

/// Versions in the order they were applied (the audit's), then those still recorded.
async fn applied_in_order(project: &Project) -> Vec<i64> {
    let mut conn = project.db.connect().await;
    sqlx::query_scalar("SELECT version FROM sluice.audit WHERE action = 'apply' ORDER BY id")
        .fetch_all(&mut conn)
        .await
        .unwrap()
}

async fn recorded(project: &Project) -> Vec<i64> {
    let mut conn = project.db.connect().await;
    super::recorded_versions(&mut conn).await
}

/// A real diesel project mixes 12- and 14-digit versions: diesel compares them as text, so
/// `2023-05-23-1715` runs after `2023-05-22-120000`, where numbers would run it first (and its
/// table would go into a schema that does not exist yet).
#[tokio::test]
async fn diesel_versions_of_mixed_widths_run_in_diesel_order() {
    let project = Project::new().await;
    for (dir, up, down) in [
        (
            "00000000000000_diesel_initial_setup",
            "CREATE FUNCTION diesel_manage_updated_at(_tbl regclass) RETURNS void AS $$\n\
             BEGIN\n  RETURN;\nEND;\n$$ LANGUAGE plpgsql;\n",
            "DROP FUNCTION IF EXISTS diesel_manage_updated_at(_tbl regclass);\n",
        ),
        (
            "2023-05-22-120000_create_app",
            "CREATE SCHEMA app;\n",
            "DROP SCHEMA app;\n",
        ),
        (
            "2023-05-23-1715-update-assignment",
            "CREATE TABLE app.assignment (id bigint PRIMARY KEY);\n",
            "DROP TABLE app.assignment;\n",
        ),
        (
            "2023-05-24-090000_add_note",
            "ALTER TABLE app.assignment ADD COLUMN note text;\n",
            "ALTER TABLE app.assignment DROP COLUMN note;\n",
        ),
    ] {
        project.write(&format!("{dir}/up.sql"), up);
        project.write(&format!("{dir}/down.sql"), down);
    }
    let validate = project.run(&["validate"]);
    validate.expect_code(exit::OK);
    assert!(
        validate.stdout().contains("(00000000000000_diesel_initial_setup to 2023-05-24-090000_add_note), read as a diesel directory"),
        "{}",
        validate.stdout()
    );
    project
        .run(&["up", "--to", "2023-05-23-1715", "--skip-lint"])
        .expect_code(exit::OK);
    assert_eq!(
        applied_in_order(&project).await,
        [0, 20_230_522_120_000, 202_305_231_715]
    );
    project.run(&["up", "--skip-lint"]).expect_code(exit::OK);
    assert_eq!(
        applied_in_order(&project).await,
        [0, 20_230_522_120_000, 202_305_231_715, 20_230_524_090_000]
    );
    let status = project.run(&["status", "--json"]);
    let doc: serde_json::Value = serde_json::from_str(&status.stdout()).unwrap();
    assert_eq!(doc["layout"], "diesel", "{doc}");
    let order: Vec<&str> = doc["migrations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        order,
        [
            "diesel_initial_setup",
            "create_app",
            "update-assignment",
            "add_note"
        ]
    );
    assert!(
        doc["migrations"]
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["state"] == "applied"),
        "{doc}"
    );
    // Everything newer than 2023-05-22-120000, in diesel's order: the 12-digit one included.
    project
        .run(&["down", "--to", "2023-05-22-120000", "--skip-lint"])
        .expect_code(exit::OK);
    // recorded_versions sorts numerically.
    assert_eq!(recorded(&project).await, [0, 20_230_522_120_000]);
    assert_eq!(
        project
            .db
            .scalar("SELECT count(*) FROM pg_namespace WHERE nspname = 'app'")
            .await,
        1
    );
    assert_eq!(
        project
            .db
            .scalar("SELECT count(*) FROM pg_class WHERE relname = 'assignment'")
            .await,
        0
    );
}

#[tokio::test]
async fn a_directory_that_mixes_layouts_is_refused_with_its_files_named() {
    let project = Project::new().await;
    project.write(
        "20240101000000_a.sql",
        "-- migrate:up\nCREATE TABLE a (id int);\n-- migrate:down\nDROP TABLE a;\n",
    );
    project.write(
        "20240102000000_b.sql",
        "-- +goose Up\nCREATE TABLE b (id int);\n-- +goose Down\nDROP TABLE b;\n",
    );
    for command in [&["validate"][..], &["up"], &["status"]] {
        let run = project.run(command);
        run.expect_code(exit::INVALID_INPUT);
        let stderr = run.stderr();
        assert!(
            stderr.contains("dbmate files: ") && stderr.contains("20240101000000_a.sql"),
            "{command:?}: {stderr}"
        );
        assert!(
            stderr.contains("goose files: ") && stderr.contains("20240102000000_b.sql"),
            "{command:?}: {stderr}"
        );
        assert!(stderr.contains("mixes layouts"), "{command:?}: {stderr}");
    }
    assert_eq!(
        project
            .db
            .scalar("SELECT count(*) FROM pg_class WHERE relname IN ('a', 'b')")
            .await,
        0,
        "nothing may run from a mixed directory"
    );
    // Saying which tool's directory it is does not make the other tool's file readable.
    let forced = project.run(&["--layout", "dbmate", "validate"]);
    forced.expect_code(exit::INVALID_INPUT);
    assert!(
        forced.stderr().contains("goose files: ")
            && forced.stderr().contains("read as a dbmate directory"),
        "{}",
        forced.stderr()
    );
}

#[tokio::test]
async fn diesel_directories_beside_flat_files_are_refused() {
    let project = Project::new().await;
    project.write("2024-01-31-120000_a/up.sql", "CREATE TABLE a (id int);\n");
    project.write("0002_b.sql", "CREATE TABLE b (id int);\n");
    let run = project.run(&["up"]);
    run.expect_code(exit::INVALID_INPUT);
    assert!(
        run.stderr().contains("sqlx / golang-migrate files: ")
            && run.stderr().contains("0002_b.sql"),
        "{}",
        run.stderr()
    );
    assert_eq!(
        project
            .db
            .scalar("SELECT count(*) FROM pg_class WHERE relname IN ('a', 'b')")
            .await,
        0
    );
}

#[tokio::test]
async fn a_forced_layout_is_shown_checked_and_named_when_wrong() {
    let project = Project::new().await;
    project.write("0001_a.sql", "CREATE TABLE a (id int);\n");
    project.write(
        "0002_b.sql",
        "-- +goose Up\nCREATE TABLE b (id int);\n-- +goose Down\nDROP TABLE b;\n",
    );
    // Flat files without markers are read in a goose directory (goose's own files are all
    // sectioned; sluice's new files need none).
    let status = project.run(&["status"]);
    status.expect_code(exit::OK);
    assert!(
        status.stdout().contains("read as a goose directory"),
        "{}",
        status.stdout()
    );
    let forced = project.run(&["validate", "--layout", "sqlx"]);
    forced.expect_code(exit::INVALID_INPUT);
    assert!(
        forced.stderr().contains("goose files: ") && forced.stderr().contains("0002_b.sql"),
        "{}",
        forced.stderr()
    );
    std::fs::write(
        project.path().join("sluice.toml"),
        "[runner]\nlayout = \"liquibase\"\n",
    )
    .unwrap();
    let wrong = project.run(&["validate"]);
    wrong.expect_code(exit::INVALID_INPUT);
    assert!(
        wrong.stderr().contains("layout") && wrong.stderr().contains("expected auto, sqlx"),
        "{}",
        wrong.stderr()
    );
    let flag = project.run(&["validate", "--layout", "liquibase"]);
    flag.expect_code(exit::USAGE);
    let config = project.run(&["config", "--layout", "goose"]);
    config.expect_code(exit::OK);
    assert!(
        config
            .stdout()
            .lines()
            .any(|l| l.starts_with("layout") && l.contains("goose")),
        "{}",
        config.stdout()
    );
}
