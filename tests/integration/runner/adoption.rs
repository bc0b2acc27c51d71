//! Adopting sluice on a database another tool migrated: `baseline`'s sibling `import`, for
//! sqlx, golang-migrate and diesel histories and file layouts.

use sluice_common::exit;
use sluice_tests::Project;

use super::recorded_versions;

async fn sqlx_history(project: &Project, files: &[(&str, i64, &str)]) {
    project
        .db
        .exec(
            "CREATE TABLE _sqlx_migrations (version bigint PRIMARY KEY, description text NOT NULL, \
             installed_on timestamptz NOT NULL DEFAULT now(), success boolean NOT NULL, checksum bytea NOT NULL, \
             execution_time bigint NOT NULL)",
        )
        .await;
    let mut conn = project.db.connect().await;
    for (name, version, sql) in files {
        project.write(name, sql);
        project.db.exec(sql).await;
        sqlx::query("INSERT INTO _sqlx_migrations VALUES ($1, $2, now() - interval '1 day', true, sha384(convert_to($3, 'UTF8')), 2500000)")
            .bind(version)
            .bind(*name)
            .bind(*sql)
            .execute(&mut conn)
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn import_from_sqlx_then_up_applies_only_the_new_files() {
    let project = Project::new().await;
    sqlx_history(
        &project,
        &[
            ("0001_a.sql", 1, "CREATE TABLE a (id bigint);\n"),
            ("0002_b.sql", 2, "CREATE TABLE b (id bigint);\n"),
        ],
    )
    .await;
    project.write("0003_c.sql", "CREATE TABLE c (id bigint);\n");
    let run = project.run(&["import", "--from", "sqlx"]);
    run.expect_code(exit::OK);
    assert!(
        run.stdout()
            .contains("imported 2 migration(s) from sqlx's history"),
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
    let program: String =
        sqlx::query_scalar("SELECT applied_by_program FROM sluice.migrations WHERE version = 1")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert_eq!(program, "sqlx (imported)");
    // Importing again changes nothing.
    project
        .run(&["import", "--from", "sqlx"])
        .expect_code(exit::OK);
    assert_eq!(recorded_versions(&mut conn).await, vec![1, 2, 3]);
}

#[tokio::test]
async fn import_refuses_a_file_edited_since_sqlx_applied_it() {
    let project = Project::new().await;
    sqlx_history(
        &project,
        &[("0001_a.sql", 1, "CREATE TABLE a (id bigint);\n")],
    )
    .await;
    project.write("0001_a.sql", "CREATE TABLE a (id bigint, x int);\n");
    let run = project.run(&["import", "--from", "sqlx"]);
    run.expect_code(exit::HISTORY_DRIFT);
    assert!(
        run.stderr()
            .contains("0001_a.sql: edited since sqlx applied it"),
        "{}",
        run.stderr()
    );
}

/// golang-migrate keeps one row and reads it with LIMIT 1: with two rows, the physical order
/// decided what was imported (rows 1, 2: only 1, and the next `up` ran 2 again). Now nothing
/// is guessed (issue "Do no harm", point 14).
#[tokio::test]
async fn a_golang_migrate_history_of_several_rows_is_not_guessed_at() {
    let project = Project::new().await;
    for (name, sql) in [
        ("1_a.up.sql", "CREATE TABLE a (id bigint);\n"),
        ("2_b.up.sql", "CREATE TABLE b (id bigint);\n"),
    ] {
        project.write(name, sql);
        project.db.exec(sql).await;
    }
    project.db.exec("CREATE TABLE schema_migrations (version bigint NOT NULL PRIMARY KEY, dirty boolean NOT NULL); INSERT INTO schema_migrations VALUES (1, false); INSERT INTO schema_migrations VALUES (2, false);").await;
    let import = project.run(&["import", "--from", "golang-migrate"]);
    import.expect_code(exit::HISTORY_DRIFT);
    assert!(
        import.stderr().contains("holds 2 rows (versions 1, 2)"),
        "{}",
        import.stderr()
    );
    // Nothing was recorded: both migrations are still pending.
    let check = project.run(&["status", "--json"]);
    let doc: serde_json::Value = serde_json::from_str(&check.stdout()).unwrap();
    assert_eq!(doc["summary"]["applied"], 0, "{doc}");
    assert_eq!(doc["summary"]["pending"], 2, "{doc}");
    project
        .db
        .exec("DELETE FROM schema_migrations WHERE version = 1")
        .await;
    project
        .run(&["import", "--from", "golang-migrate"])
        .expect_code(exit::OK);
    project.run(&["up"]).expect_code(exit::OK);
    let mut conn = project.db.connect().await;
    assert_eq!(recorded_versions(&mut conn).await, vec![1, 2]);
}

#[tokio::test]
async fn import_from_golang_migrate_takes_everything_up_to_its_version() {
    let project = Project::new().await;
    for (name, sql) in [
        ("1_a.up.sql", "CREATE TABLE a (id bigint);\n"),
        ("2_b.up.sql", "CREATE TABLE b (id bigint);\n"),
    ] {
        project.write(name, sql);
        project.db.exec(sql).await;
    }
    project.write("1_a.down.sql", "DROP TABLE a;\n");
    project.write("3_c.up.sql", "CREATE TABLE c (id bigint);\n");
    project.db.exec("CREATE TABLE schema_migrations (version bigint NOT NULL PRIMARY KEY, dirty boolean NOT NULL); INSERT INTO schema_migrations VALUES (2, false);").await;
    project
        .run(&["import", "--from", "golang-migrate"])
        .expect_code(exit::OK);
    project.run(&["up"]).expect_code(exit::OK);
    let mut conn = project.db.connect().await;
    assert_eq!(recorded_versions(&mut conn).await, vec![1, 2, 3]);
    project
        .db
        .exec("UPDATE schema_migrations SET dirty = true")
        .await;
    let dirty = project.run(&["import", "--from", "golang-migrate"]);
    dirty.expect_code(exit::HISTORY_DRIFT);
    assert!(
        dirty.stderr().contains("as failed or dirty"),
        "{}",
        dirty.stderr()
    );
}

#[tokio::test]
async fn import_from_diesel_reads_its_directories_and_dashed_versions() {
    let project = Project::new().await;
    let applied = [
        (
            "00000000000000_diesel_initial_setup",
            "CREATE TABLE setup (id bigint);\n",
        ),
        (
            "2024-01-31-120000_create_a",
            "CREATE TABLE a (id bigint);\n",
        ),
    ];
    project
        .db
        .exec(
            "CREATE TABLE __diesel_schema_migrations (version VARCHAR(50) PRIMARY KEY NOT NULL, \
             run_on TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP)",
        )
        .await;
    for (dir, sql) in applied {
        project.write(&format!("{dir}/up.sql"), sql);
        project.write(&format!("{dir}/down.sql"), "SELECT 1;\n");
        project.db.exec(sql).await;
        let version: String = dir.split('_').next().unwrap().replace('-', "");
        project
            .db
            .exec(&format!(
                "INSERT INTO __diesel_schema_migrations (version, run_on) VALUES ('{version}', '2024-02-01 10:00:00')"
            ))
            .await;
    }
    project.write(
        "2024-02-15-090000_create_b/up.sql",
        "CREATE TABLE b (id bigint);\n",
    );

    let import = project.run(&["import", "--from", "diesel"]);
    import.expect_code(exit::OK);
    assert!(
        import
            .stdout()
            .contains("imported 2024-01-31-120000_create_a")
            && import
                .stdout()
                .contains("imported 2 migration(s) from diesel's history"),
        "{}",
        import.stdout()
    );
    let up = project.run(&["up"]);
    up.expect_code(exit::OK);
    assert!(
        up.stdout().contains("applied 2024-02-15-090000_create_b")
            && !up.stdout().contains("create_a"),
        "{}",
        up.stdout()
    );
    let mut conn = project.db.connect().await;
    assert_eq!(
        recorded_versions(&mut conn).await,
        vec![0, 20_240_131_120_000, 20_240_215_090_000]
    );
    let (program, day): (String, String) = sqlx::query_as(
        "SELECT applied_by_program, to_char(applied_at, 'YYYY-MM-DD') FROM sluice.migrations \
         WHERE version = 20240131120000",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(
        (program.as_str(), day.as_str()),
        ("diesel (imported)", "2024-02-01")
    );
    // `--to` takes diesel's dashed spelling; a directory without down.sql says what to add.
    let irreversible = project.run(&["down", "--to", "2024-01-31-120000"]);
    irreversible.expect_code(exit::INVALID_INPUT);
    assert!(
        irreversible.stderr().contains(
            "has no down file (add down.sql beside migrations/2024-02-15-090000_create_b/up.sql)"
        ),
        "{}",
        irreversible.stderr()
    );
    project.write("2024-02-15-090000_create_b/down.sql", "DROP TABLE b;\n");
    project
        .run(&["down", "--to", "2024-01-31-120000"])
        .expect_code(exit::OK);
    assert_eq!(
        recorded_versions(&mut conn).await,
        vec![0, 20_240_131_120_000]
    );
}

#[tokio::test]
async fn import_from_diesel_names_a_version_without_a_directory() {
    let project = Project::new().await;
    project.write("2024-01-31-120000_create_a/up.sql", "SELECT 1;\n");
    project
        .db
        .exec(
            "CREATE TABLE __diesel_schema_migrations (version VARCHAR(50) PRIMARY KEY NOT NULL, \
             run_on TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP); \
             INSERT INTO __diesel_schema_migrations (version) VALUES ('20240131120000'), ('20240205000000')",
        )
        .await;
    let run = project.run(&["import", "--from", "diesel"]);
    run.expect_code(exit::HISTORY_DRIFT);
    assert!(
        run.stderr().contains(
            "diesel applied migration 20240205000000, but there is no file with that version"
        ),
        "{}",
        run.stderr()
    );
    let mut conn = project.db.connect().await;
    assert!(
        recorded_versions(&mut conn).await.is_empty(),
        "a failed import records nothing"
    );
}

#[tokio::test]
async fn real_directory_names_apply_unedited_and_revert() {
    let project = Project::new().await;
    // sqlx: any description; an up without a down inside a reversible directory.
    project.write(
        "20260422113000_[2.0.0]_signing_key.up.sql",
        "CREATE TABLE signing_key (id bigint PRIMARY KEY);\n",
    );
    project.write(
        "20260422113000_[2.0.0]_signing_key.down.sql",
        "DROP TABLE signing_key;\n",
    );
    project.write(
        "20260423090000_Add.Users-v2.up.sql",
        "CREATE TABLE users (id bigint PRIMARY KEY);\n",
    );
    // golang-migrate: unpadded versions in numeric order, up and down paired by version.
    project.write(
        "20260424000000_flags.up.sql",
        "ALTER TABLE users ADD COLUMN flags bigint;\n",
    );
    project.write(
        "20260424000000_drop_flags.down.sql",
        "ALTER TABLE users DROP COLUMN flags;\n",
    );
    project.run(&["up"]).expect_code(exit::OK);
    let mut conn = project.db.connect().await;
    assert_eq!(
        recorded_versions(&mut conn).await,
        vec![20260422113000, 20260423090000, 20260424000000]
    );
    let down = project.run(&["down", "--skip-lint"]);
    down.expect_code(exit::OK);
    let flags: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM information_schema.columns WHERE table_name = 'users' AND column_name = 'flags'",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(flags, 0, "the down file paired by version ran");
}

#[tokio::test]
async fn unpadded_versions_run_in_numeric_order() {
    let project = Project::new().await;
    project.write("1_a.up.sql", "CREATE TABLE a (id bigint PRIMARY KEY);\n");
    project.write("2_b.up.sql", "CREATE TABLE b (id bigint PRIMARY KEY);\n");
    project.write("10_c.up.sql", "ALTER TABLE b ADD COLUMN c bigint;\n");
    project.run(&["up"]).expect_code(exit::OK);
    let mut conn = project.db.connect().await;
    assert_eq!(recorded_versions(&mut conn).await, vec![1, 2, 10]);
}

#[tokio::test]
async fn diesel_run_in_transaction_false_needs_no_edit() {
    let project = Project::new().await;
    project.write(
        "2024-01-31-120000_create_t/up.sql",
        "CREATE TABLE t (id bigint PRIMARY KEY, a bigint);\n",
    );
    project.write(
        "2024-02-01-120000_index_t/up.sql",
        "CREATE INDEX CONCURRENTLY t_a ON t (a);\n",
    );
    std::fs::write(
        project
            .migrations()
            .join("2024-02-01-120000_index_t/metadata.toml"),
        "run_in_transaction = false\n",
    )
    .unwrap();
    let run = project.run(&["up"]);
    run.expect_code(exit::OK);
    let mut conn = project.db.connect().await;
    let valid: bool =
        sqlx::query_scalar("SELECT indisvalid FROM pg_index WHERE indexrelid = 't_a'::regclass")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert!(valid);
}

#[tokio::test]
async fn import_then_up_applies_only_what_is_new_in_real_directory_patterns() {
    // golang-migrate: names that differ between up and down, its own BEGIN/COMMIT, a lone
    // concurrent build.
    let project = Project::new().await;
    let applied = [
        (
            "1_users.up.sql",
            "BEGIN;\nCREATE TABLE users (id bigint PRIMARY KEY, name text);\nCOMMIT;\n",
        ),
        (
            "2_index.up.sql",
            "CREATE INDEX CONCURRENTLY users_name ON users (name);\n",
        ),
    ];
    for (name, sql) in applied {
        project.write(name, sql);
        project.db.exec(sql).await;
    }
    project.write("1_drop_users.down.sql", "DROP TABLE users;\n");
    project.write(
        "3_flags.up.sql",
        "BEGIN;\nALTER TABLE users ADD COLUMN flags bigint;\nCOMMIT;\n",
    );
    project
        .db
        .exec("CREATE TABLE schema_migrations (version bigint NOT NULL PRIMARY KEY, dirty boolean NOT NULL); INSERT INTO schema_migrations VALUES (2, false);")
        .await;
    project
        .run(&["import", "--from", "golang-migrate"])
        .expect_code(exit::OK);
    // Applied again, 1 or 2 would fail ("already exists"): only 3 runs.
    project.run(&["up"]).expect_code(exit::OK);
    let mut conn = project.db.connect().await;
    assert_eq!(recorded_versions(&mut conn).await, vec![1, 2, 3]);

    // diesel: a directory named with a dash after its version, recorded by diesel.
    let project = Project::new().await;
    project.write(
        "2023-05-23-1715-create-posts/up.sql",
        "CREATE TABLE posts (id bigint PRIMARY KEY);\n",
    );
    project
        .db
        .exec(
            "CREATE TABLE posts (id bigint PRIMARY KEY);
             CREATE TABLE __diesel_schema_migrations (version VARCHAR(50) PRIMARY KEY NOT NULL, \
             run_on TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP);
             INSERT INTO __diesel_schema_migrations (version) VALUES ('202305231715createposts');",
        )
        .await;
    project.write(
        "2023-06-01-000000_add_title/up.sql",
        "ALTER TABLE posts ADD COLUMN title text;\n",
    );
    project
        .run(&["import", "--from", "diesel"])
        .expect_code(exit::OK);
    project.run(&["up"]).expect_code(exit::OK);
    let mut conn = project.db.connect().await;
    assert_eq!(
        recorded_versions(&mut conn).await,
        vec![202305231715, 20230601000000]
    );
}

/// Rows of another tool's table: import reads it and never changes it.
async fn rows_of(project: &Project, table: &str) -> i64 {
    project
        .db
        .scalar(&format!("SELECT count(*) FROM {table}"))
        .await
}

#[tokio::test]
async fn import_from_dbmate_reads_its_text_versions_then_up_runs_only_the_rest() {
    let project = Project::new().await;
    let applied = [
        (
            "20240301090000_create_accounts.sql",
            "CREATE TABLE accounts (id bigint PRIMARY KEY);\n",
        ),
        (
            "20240302090000_add_email.sql",
            "ALTER TABLE accounts ADD COLUMN email text;\n",
        ),
    ];
    for (name, up) in applied {
        project.write(
            name,
            &format!("-- written by hand\n-- migrate:up\n{up}\n-- migrate:down\n"),
        );
        project.db.exec(up).await;
    }
    project.write(
        "20240303090000_index.sql",
        "-- migrate:up transaction:false\nCREATE INDEX CONCURRENTLY accounts_email ON accounts (email);\n\
         -- migrate:down\nDROP INDEX accounts_email;\n",
    );
    project
        .db
        .exec(
            "CREATE TABLE schema_migrations (version varchar(128) PRIMARY KEY);
             INSERT INTO schema_migrations VALUES ('20240301090000'), ('20240302090000');",
        )
        .await;
    // dbmate's table is not golang-migrate's, and golang-migrate's is not dbmate's.
    let wrong = project.run(&["import", "--from", "golang-migrate"]);
    wrong.expect_code(exit::HISTORY_DRIFT);
    assert!(
        wrong.stderr().contains("is dbmate's") && wrong.stderr().contains("--from dbmate"),
        "{}",
        wrong.stderr()
    );
    let import = project.run(&["import", "--from", "dbmate"]);
    import.expect_code(exit::OK);
    assert!(
        import
            .stdout()
            .contains("imported 2 migration(s) from dbmate's history"),
        "{}",
        import.stdout()
    );
    project.run(&["up"]).expect_code(exit::OK);
    let mut conn = project.db.connect().await;
    assert_eq!(
        recorded_versions(&mut conn).await,
        [20_240_301_090_000, 20_240_302_090_000, 20_240_303_090_000]
    );
    assert_eq!(rows_of(&project, "schema_migrations").await, 2);
    let program: String = sqlx::query_scalar(
        "SELECT applied_by_program FROM sluice.migrations WHERE version = 20240301090000",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(program, "dbmate (imported)");

    let other = Project::new().await;
    other
        .db
        .exec("CREATE TABLE schema_migrations (version bigint PRIMARY KEY, dirty boolean NOT NULL)")
        .await;
    let wrong = other.run(&["import", "--from", "dbmate"]);
    wrong.expect_code(exit::HISTORY_DRIFT);
    assert!(
        wrong.stderr().contains("is golang-migrate's"),
        "{}",
        wrong.stderr()
    );
}

#[tokio::test]
async fn import_from_goose_takes_the_newest_row_of_each_version() {
    let project = Project::new().await;
    for (name, up, down) in [
        (
            "00001_widgets.sql",
            "CREATE TABLE widgets (id bigint PRIMARY KEY);\n",
            "DROP TABLE widgets;\n",
        ),
        (
            "00002_gadgets.sql",
            "CREATE TABLE gadgets (id bigint PRIMARY KEY);\n",
            "DROP TABLE gadgets;\n",
        ),
        (
            // The project's own migration alters goose's table: it keeps working.
            "00003_note_on_goose_table.sql",
            "ALTER TABLE goose_db_version ADD COLUMN note text;\n",
            "ALTER TABLE goose_db_version DROP COLUMN note;\n",
        ),
    ] {
        project.write(name, &format!("-- +goose Up\n{up}\n-- +goose Down\n{down}"));
    }
    // goose applied 1 and 2, then rolled 2 back (an older goose appends is_applied = false).
    project
        .db
        .exec(
            "CREATE TABLE goose_db_version (id serial PRIMARY KEY, version_id bigint NOT NULL, \
             is_applied boolean NOT NULL, tstamp timestamp DEFAULT now());
             INSERT INTO goose_db_version (version_id, is_applied) VALUES (0, true), (1, true), (2, true), (2, false);
             CREATE TABLE widgets (id bigint PRIMARY KEY);",
        )
        .await;
    let import = project.run(&["import", "--from", "goose"]);
    import.expect_code(exit::OK);
    assert!(
        import.stdout().contains("imported 00001_widgets")
            && import
                .stdout()
                .contains("imported 1 migration(s) from goose's history"),
        "{}",
        import.stdout()
    );
    project.run(&["up", "--skip-lint"]).expect_code(exit::OK);
    let mut conn = project.db.connect().await;
    assert_eq!(recorded_versions(&mut conn).await, [1, 2, 3]);
    assert_eq!(rows_of(&project, "goose_db_version").await, 4);
    assert_eq!(
        project
            .db
            .scalar("SELECT count(*) FROM pg_attribute WHERE attrelid = 'goose_db_version'::regclass AND attname = 'note'")
            .await,
        1
    );
    // A version goose applied whose file is gone is named.
    project
        .db
        .exec("INSERT INTO goose_db_version (version_id, is_applied) VALUES (7, true)")
        .await;
    let missing = project.run(&["import", "--from", "goose"]);
    missing.expect_code(exit::HISTORY_DRIFT);
    assert!(
        missing
            .stderr()
            .contains("goose applied migration 7, but there is no file with that version"),
        "{}",
        missing.stderr()
    );
}

#[tokio::test]
async fn import_from_sql_migrate_matches_files_by_name() {
    let project = Project::new().await;
    for (name, up) in [
        (
            "1_initial.sql",
            "CREATE TABLE people (id int PRIMARY KEY);\n",
        ),
        ("2_names.sql", "ALTER TABLE people ADD COLUMN name text;\n"),
    ] {
        project.write(name, &format!("-- +migrate Up\n{up}-- +migrate Down\n"));
    }
    project
        .db
        .exec(
            "CREATE TABLE gorp_migrations (id text NOT NULL PRIMARY KEY, applied_at timestamptz);
             INSERT INTO gorp_migrations VALUES ('1_initial.sql', '2024-05-01 10:00:00+00');
             CREATE TABLE people (id int PRIMARY KEY);",
        )
        .await;
    project
        .run(&["import", "--from", "sql-migrate"])
        .expect_code(exit::OK);
    project.run(&["up"]).expect_code(exit::OK);
    let mut conn = project.db.connect().await;
    assert_eq!(recorded_versions(&mut conn).await, [1, 2]);
    let applied_at: String = sqlx::query_scalar(
        "SELECT to_char(applied_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI') FROM sluice.migrations WHERE version = 1",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(applied_at, "2024-05-01 10:00");
    assert_eq!(rows_of(&project, "gorp_migrations").await, 1);
}

/// Flyway's own history table, as Flyway 9 and 10 create it.
const FLYWAY_HISTORY: &str = "CREATE TABLE flyway_schema_history (
    installed_rank integer PRIMARY KEY, version varchar(50), description varchar(200) NOT NULL,
    type varchar(20) NOT NULL, script varchar(1000) NOT NULL, checksum integer,
    installed_by varchar(100) NOT NULL, installed_on timestamp NOT NULL DEFAULT now(),
    execution_time integer NOT NULL, success boolean NOT NULL)";

#[tokio::test]
async fn import_from_flyway_reads_successful_rows_and_its_baseline() {
    let project = Project::new().await;
    for (name, sql) in [
        (
            "V1__users.sql",
            "CREATE TABLE users (id bigint PRIMARY KEY);\n",
        ),
        (
            "V1.1__orders.sql",
            "CREATE TABLE orders (id bigint PRIMARY KEY);\n",
        ),
        (
            "V1.2__undone.sql",
            "CREATE TABLE undone (id bigint PRIMARY KEY);\n",
        ),
        (
            "V2__items.sql",
            "CREATE TABLE items (id bigint PRIMARY KEY);\n",
        ),
    ] {
        project.write(name, sql);
    }
    // Flyway baselined at 1, ran 1.1 and 1.2, then undid 1.2.
    project
        .db
        .exec(&format!(
            "{FLYWAY_HISTORY};
             INSERT INTO flyway_schema_history VALUES
               (1, '1', '<< Flyway Baseline >>', 'BASELINE', '<< Flyway Baseline >>', NULL, 'app', now(), 0, true),
               (2, '1.1', 'orders', 'SQL', 'V1.1__orders.sql', 12, 'app', now(), 41, true),
               (3, '1.2', 'undone', 'SQL', 'V1.2__undone.sql', 13, 'app', now(), 5, true),
               (4, '1.2', 'undone', 'UNDO_SQL', 'U1.2__undone.sql', 14, 'app', now(), 3, true);
             CREATE TABLE users (id bigint PRIMARY KEY); CREATE TABLE orders (id bigint PRIMARY KEY);"
        ))
        .await;
    let import = project.run(&["import", "--from", "flyway"]);
    import.expect_code(exit::OK);
    let out = import.stdout();
    assert!(
        out.contains("imported 1_users") && out.contains("imported 1.1_orders"),
        "{out}"
    );
    assert!(out.contains("imported 2 migration(s)"), "{out}");
    project.run(&["up", "--skip-lint"]).expect_code(exit::OK);
    let status = project.run(&["status"]);
    status.expect_code(exit::OK);
    assert_eq!(rows_of(&project, "sluice.migrations").await, 4);
    assert_eq!(
        rows_of(&project, "flyway_schema_history").await,
        4,
        "Flyway's table only read"
    );
    assert_eq!(
        project
            .db
            .scalar("SELECT count(*) FROM pg_class WHERE relname IN ('undone', 'items')")
            .await,
        2,
        "up ran what Flyway had not left applied"
    );
}

#[tokio::test]
async fn import_from_flyway_refuses_a_failed_migration_and_a_missing_file() {
    let project = Project::new().await;
    project.write(
        "V1__users.sql",
        "CREATE TABLE users (id bigint PRIMARY KEY);\n",
    );
    project
        .db
        .exec(&format!(
            "{FLYWAY_HISTORY};
             INSERT INTO flyway_schema_history VALUES
               (1, '1', 'users', 'SQL', 'V1__users.sql', 1, 'app', now(), 4, true),
               (2, '1.5', 'broken', 'SQL', 'V1.5__broken.sql', 2, 'app', now(), 4, false);"
        ))
        .await;
    let failed = project.run(&["import", "--from", "flyway"]);
    failed.expect_code(exit::HISTORY_DRIFT);
    assert!(
        failed
            .stderr()
            .contains("migration 1.5 (V1.5__broken.sql) as failed")
            && failed.stderr().contains("flyway repair"),
        "{}",
        failed.stderr()
    );
    project
        .db
        .exec(
            "DELETE FROM flyway_schema_history WHERE NOT success;
               INSERT INTO flyway_schema_history VALUES
                 (3, '3', 'gone', 'SQL', 'V3__gone.sql', 3, 'app', now(), 4, true)",
        )
        .await;
    let missing = project.run(&["import", "--from", "flyway"]);
    missing.expect_code(exit::HISTORY_DRIFT);
    assert!(
        missing.stderr().contains("3 (V3__gone.sql)")
            && missing.stderr().contains("nothing was imported"),
        "{}",
        missing.stderr()
    );
    assert_eq!(
        rows_of(&project, "sluice.migrations").await,
        0,
        "nothing imported"
    );
}

/// Flyway's repeatable migrations: the newest successful run of each is imported when it
/// ran the file as it is now (Flyway's CRC32 of its lines); a file changed since is left for
/// the next `up`, as Flyway's next `migrate` would apply it.
#[tokio::test]
async fn import_from_flyway_takes_repeatables_flyway_applied_as_they_are_now() {
    let project = Project::new().await;
    let views = "CREATE OR REPLACE VIEW user_ids AS SELECT id FROM users;\r\n";
    let counts = "CREATE OR REPLACE FUNCTION user_count() RETURNS bigint LANGUAGE sql AS $$ SELECT count(*) FROM users $$;\n";
    project.write(
        "V1__users.sql",
        "CREATE TABLE users (id bigint PRIMARY KEY);\n",
    );
    project.write("R__views.sql", views);
    project.write("R__counts.sql", counts);
    let crc = sluice_runner::flyway::checksum;
    // views: applied twice, the newest run as the file is now (CRLF and all); counts: applied
    // as an older text.
    project
        .db
        .exec(&format!(
            "{FLYWAY_HISTORY};
             INSERT INTO flyway_schema_history VALUES
               (1, '1', 'users', 'SQL', 'V1__users.sql', 1, 'app', now(), 4, true),
               (2, NULL, 'views', 'SQL', 'R__views.sql', 99, 'app', now(), 2, true),
               (3, NULL, 'counts', 'SQL', 'R__counts.sql', {}, 'app', now(), 2, true),
               (4, NULL, 'views', 'SQL', 'R__views.sql', {}, 'app', now(), 3, true);
             CREATE TABLE users (id bigint PRIMARY KEY);
             CREATE VIEW user_ids AS SELECT id FROM users;",
            crc("SELECT 1;"),
            crc(views)
        ))
        .await;
    let import = project.run(&["import", "--from", "flyway"]);
    import.expect_code(exit::OK);
    let out = import.stdout();
    assert!(
        out.contains("imported 1_users") && out.contains("imported R__views"),
        "{out}"
    );
    assert!(!out.contains("R__counts"), "{out}");
    assert!(
        import
            .stderr()
            .contains("R__counts changed since Flyway applied it"),
        "{}",
        import.stderr()
    );
    let up = project.run(&["up", "--skip-lint"]);
    up.expect_code(exit::OK);
    assert!(
        up.stdout().contains("applied R__counts") && !up.stdout().contains("R__views"),
        "{}",
        up.stdout()
    );
    assert_eq!(
        project
            .db
            .scalar(
                "SELECT count(*) FROM sluice.audit WHERE action = 'import' AND name = 'R__views'"
            )
            .await,
        1
    );
    project.run(&["check"]).expect_code(exit::OK);
}
