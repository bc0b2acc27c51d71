//! Files with an up and a down section (dbmate, goose, sql-migrate): `up` runs the up section
//! only, `down` the down section, and markers sluice does not understand refuse the file
//! (issue "Every directory people have", point 1).

use sluice_common::exit;
use sluice_tests::Project;

async fn users(project: &Project) -> i64 {
    project.db.scalar("SELECT count(*) FROM users").await
}

#[tokio::test]
async fn a_dbmate_file_runs_its_up_section_on_up_and_its_down_section_on_down() {
    let project = Project::new().await;
    project
        .db
        .exec("CREATE TABLE users (id bigint PRIMARY KEY); INSERT INTO users SELECT generate_series(1, 50);")
        .await;
    project.write(
        "20240101120000_view.sql",
        "-- Adds a view of users.\n-- migrate:up\nCREATE VIEW v AS SELECT id FROM users;\n\n\
         -- migrate:down\nDROP VIEW v;\nDELETE FROM users WHERE id > 0;\n",
    );
    project.write(
        "20240102120000_index.sql",
        "-- migrate:up transaction:false\nCREATE INDEX CONCURRENTLY IF NOT EXISTS users_id_desc ON users (id DESC);\n\
         -- migrate:down\n",
    );
    project.run(&["validate"]).expect_code(exit::OK);
    project.run(&["up"]).expect_code(exit::OK);
    assert_eq!(users(&project).await, 50, "the down section ran on up");
    assert_eq!(
        project
            .db
            .scalar("SELECT count(*) FROM pg_views WHERE viewname = 'v'")
            .await,
        1
    );
    let status = project.run(&["status", "--json"]);
    let doc: serde_json::Value = serde_json::from_str(&status.stdout()).unwrap();
    assert_eq!(
        project
            .db
            .scalar("SELECT count(*) FROM sluice.migrations WHERE version = 20240102120000 AND no_transaction")
            .await,
        1,
        "transaction:false was not honoured"
    );
    assert_eq!(doc["migrations"][0]["reversible"], true, "{doc}");
    // The empty down section reverts nothing and is valid; the next runs the file's down.
    project.run(&["down"]).expect_code(exit::OK);
    assert_eq!(users(&project).await, 50);
    project.run(&["down"]).expect_code(exit::OK);
    assert_eq!(
        users(&project).await,
        0,
        "the down section did not run on down"
    );
    assert_eq!(
        project
            .db
            .scalar("SELECT count(*) FROM pg_views WHERE viewname = 'v'")
            .await,
        0
    );
}

#[tokio::test]
async fn a_goose_file_with_statement_blocks_and_no_transaction() {
    let project = Project::new().await;
    project.write(
        "00001_widgets.sql",
        "-- +goose Up\nCREATE TABLE widgets (id bigint PRIMARY KEY, n int);\n\
         -- +goose StatementBegin\nCREATE FUNCTION bump() RETURNS trigger AS $$\nBEGIN\n  NEW.n := coalesce(NEW.n, 0) + 1;\n  RETURN NEW;\nEND;\n$$ LANGUAGE plpgsql;\n-- +goose StatementEnd\n\
         -- +goose Down\nDROP FUNCTION bump();\nDROP TABLE widgets;\n",
    );
    project.write(
        "00002_index.sql",
        "-- +goose NO TRANSACTION\n-- +goose Up\nCREATE INDEX CONCURRENTLY widgets_n ON widgets (n);\n\
         -- +goose Down\nDROP INDEX CONCURRENTLY widgets_n;\n",
    );
    // sql-migrate's markers, in a directory of their own: one tool's files per directory.
    let sql_migrate = Project::new().await;
    sql_migrate.write(
        "00003_more.sql",
        "-- +migrate Up\nCREATE TABLE gadgets (id int);\n-- +migrate Down\nDROP TABLE gadgets;\n",
    );
    sql_migrate.run(&["up"]).expect_code(exit::OK);
    assert_eq!(
        sql_migrate
            .db
            .scalar("SELECT count(*) FROM pg_tables WHERE tablename = 'gadgets'")
            .await,
        1,
        "gadgets was not created (or was dropped by its down section)"
    );
    sql_migrate.run(&["down"]).expect_code(exit::OK);
    assert_eq!(
        sql_migrate
            .db
            .scalar("SELECT count(*) FROM pg_tables WHERE tablename = 'gadgets'")
            .await,
        0
    );
    project.run(&["up"]).expect_code(exit::OK);
    for table in ["widgets"] {
        assert_eq!(
            project
                .db
                .scalar(&format!(
                    "SELECT count(*) FROM pg_tables WHERE tablename = '{table}'"
                ))
                .await,
            1,
            "{table} was not created (or was dropped by its down section)"
        );
    }
    assert_eq!(
        project
            .db
            .scalar("SELECT count(*) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE c.relname = 'widgets_n' AND i.indisvalid")
            .await,
        1
    );
    project.run(&["down", "--steps", "2"]).expect_code(exit::OK);
    assert_eq!(
        project
            .db
            .scalar("SELECT count(*) FROM pg_tables WHERE tablename IN ('widgets', 'gadgets')")
            .await,
        0
    );
}

#[tokio::test]
async fn markers_sluice_does_not_understand_refuse_the_file() {
    let project = Project::new().await;
    project
        .db
        .exec("CREATE TABLE keep (id int); INSERT INTO keep VALUES (1);")
        .await;
    project.write(
        "00001_env.sql",
        "-- +goose Up\n-- +goose ENVSUB ON\nDELETE FROM keep;\n-- +goose Down\nSELECT 1;\n",
    );
    for command in ["validate", "up", "lint"] {
        let run = project.run(&[command]);
        run.expect_code(exit::INVALID_INPUT);
        assert!(
            run.stderr().contains("00001_env.sql:2")
                && run.stderr().contains("does not understand"),
            "{command}: {}",
            run.stderr()
        );
    }
    assert_eq!(project.db.scalar("SELECT count(*) FROM keep").await, 1);
}
