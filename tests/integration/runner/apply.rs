//! Applying, re-running, reverting, dry runs, status and failures.

use sluice_common::exit;
use sluice_tests::{Project, catalog};

use super::{advisory_locks, recorded_versions, table_exists};

fn write_three(project: &Project) {
    project.write(
        "0001_create_accounts.up.sql",
        "CREATE TABLE accounts (id bigserial PRIMARY KEY, email text NOT NULL);\n\
         CREATE INDEX accounts_email ON accounts (email);\n",
    );
    project.write("0001_create_accounts.down.sql", "DROP TABLE accounts;\n");
    project.write(
        "0002_add_status.up.sql",
        "-- sluice:approve constraint-missing-not-valid reason: accounts is created empty in 0001\n\
         ALTER TABLE accounts ADD COLUMN status text NOT NULL DEFAULT 'active';\n\
         ALTER TABLE accounts ADD CONSTRAINT status_known CHECK (status IN ('active', 'closed'));\n",
    );
    project.write(
        "0002_add_status.down.sql",
        "ALTER TABLE accounts DROP COLUMN status;\n",
    );
    project.write(
        "0003_audit_trigger.up.sql",
        "CREATE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql AS $$\n\
         BEGIN NEW.email := lower(NEW.email); RETURN NEW; END; $$;\n\
         CREATE TRIGGER accounts_touch BEFORE INSERT ON accounts FOR EACH ROW EXECUTE FUNCTION touch();\n",
    );
    project.write(
        "0003_audit_trigger.down.sql",
        "DROP TRIGGER accounts_touch ON accounts;\nDROP FUNCTION touch();\n",
    );
}

#[tokio::test]
async fn applies_everything_then_a_rerun_does_nothing() {
    let project = Project::new().await;
    write_three(&project);
    let first = project.run(&["up"]);
    first.expect_code(exit::OK);
    assert!(
        first.stdout().contains("applied 0001_create_accounts"),
        "{}",
        first.stdout()
    );
    assert!(
        first.stdout().contains("applied 3 migration(s)"),
        "{}",
        first.stdout()
    );

    let mut conn = project.db.connect().await;
    assert_eq!(recorded_versions(&mut conn).await, vec![1, 2, 3]);
    let before = catalog::snapshot(&mut conn, "public").await;

    let again = project.run(&["up"]);
    again.expect_code(exit::OK);
    assert!(
        again.stdout().contains("nothing to do"),
        "{}",
        again.stdout()
    );
    assert_eq!(catalog::snapshot(&mut conn, "public").await, before);
    let audit_rows: i64 =
        sqlx::query_scalar("SELECT count(*) FROM sluice.audit WHERE action = 'apply'")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert_eq!(audit_rows, 3);
    assert_eq!(advisory_locks(&project).await, 0);
}

#[tokio::test]
async fn down_then_up_returns_to_the_same_schema() {
    let project = Project::new().await;
    write_three(&project);
    let mut conn = project.db.connect().await;
    let empty = catalog::snapshot(&mut conn, "public").await;

    project.run(&["up", "--to", "0001"]).expect_code(exit::OK);
    let after_first = catalog::snapshot(&mut conn, "public").await;
    project.run(&["up"]).expect_code(exit::OK);
    let full = catalog::snapshot(&mut conn, "public").await;
    assert!(full.iter().any(|l| l.contains("trigger")), "{full:?}");

    let down = project.run(&["down", "--steps", "2"]);
    down.expect_code(exit::OK);
    assert!(
        down.stdout().contains("reverted 0003_audit_trigger"),
        "{}",
        down.stdout()
    );
    assert_eq!(catalog::snapshot(&mut conn, "public").await, after_first);
    assert_eq!(recorded_versions(&mut conn).await, vec![1]);

    project.run(&["up"]).expect_code(exit::OK);
    assert_eq!(catalog::snapshot(&mut conn, "public").await, full);

    project.run(&["down", "--to", "0"]).expect_code(exit::OK);
    assert_eq!(catalog::snapshot(&mut conn, "public").await, empty);
    assert!(recorded_versions(&mut conn).await.is_empty());
    let reverts: i64 =
        sqlx::query_scalar("SELECT count(*) FROM sluice.audit WHERE action = 'revert'")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert_eq!(reverts, 5);
}

#[tokio::test]
async fn down_refuses_an_irreversible_migration_before_changing_anything() {
    let project = Project::new().await;
    project.write("0001_a.up.sql", "CREATE TABLE a (id int);");
    project.write("0001_a.down.sql", "DROP TABLE a;");
    project.write("0002_b.sql", "CREATE TABLE b (id int);");
    project.run(&["up"]).expect_code(exit::OK);
    let run = project.run(&["down", "--steps", "2"]);
    run.expect_code(exit::INVALID_INPUT);
    assert!(
        run.stderr().contains("0002_b has no down file"),
        "{}",
        run.stderr()
    );
    let mut conn = project.db.connect().await;
    assert!(table_exists(&mut conn, "a").await && table_exists(&mut conn, "b").await);
}

#[tokio::test]
async fn a_dry_run_prints_the_sql_and_changes_nothing() {
    let project = Project::new().await;
    write_three(&project);
    let run = project.run(&["up", "--dry-run", "--lock-timeout", "750ms"]);
    run.expect_code(exit::OK);
    let out = run.stdout();
    assert!(
        out.contains(
            "BEGIN;\nSET LOCAL lock_timeout = '750ms'; SET LOCAL statement_timeout = '900000ms';"
        ),
        "{out}"
    );
    assert!(out.contains("CREATE TABLE accounts"), "{out}");
    assert!(out.contains("nothing was changed"), "{out}");
    let mut conn = project.db.connect().await;
    let schema: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = 'sluice')")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert!(!schema, "a dry run created sluice's schema");
    assert!(!table_exists(&mut conn, "accounts").await);
}

#[tokio::test]
async fn a_failing_migration_rolls_back_and_names_file_statement_and_sqlstate() {
    let project = Project::new().await;
    project.write("0001_ok.sql", "CREATE TABLE ok (id int);");
    project.write(
        "0002_broken.sql",
        "CREATE TABLE half (id int);\n\nALTER TABLE no_such_table ADD COLUMN x int;\n",
    );
    project.write("0003_later.sql", "CREATE TABLE later (id int);");
    let run = project.run(&["up"]);
    run.expect_code(exit::FAILED);
    let err = run.stderr();
    assert!(err.contains("0002_broken.sql at line 3"), "{err}");
    assert!(
        err.contains("ALTER TABLE no_such_table ADD COLUMN x int"),
        "{err}"
    );
    assert!(err.contains("SQLSTATE 42P01"), "{err}");
    assert!(err.contains("applied before stopping: 0001_ok"), "{err}");

    let mut conn = project.db.connect().await;
    assert_eq!(recorded_versions(&mut conn).await, vec![1]);
    assert!(
        !table_exists(&mut conn, "half").await,
        "the failed migration was not rolled back"
    );
    assert!(!table_exists(&mut conn, "later").await);
    assert_eq!(advisory_locks(&project).await, 0);
    let failure: String =
        sqlx::query_scalar("SELECT detail FROM sluice.audit WHERE action = 'fail-apply'")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert!(failure.contains("42P01"), "{failure}");
}

#[tokio::test]
async fn a_file_sent_in_one_message_still_names_the_failing_line_and_times_itself() {
    let project = Project::new().await;
    // The last line is a comment without a newline: the history row sent after the file in
    // the same message must not be swallowed by it.
    project.write(
        "0001_slow.sql",
        "CREATE TABLE t (id int);\nSELECT pg_sleep(0.3); -- wait a moment",
    );
    project.write(
        "0002_broken.sql",
        "CREATE TABLE half (id int);\nSELECT id,\n       missing_column\nFROM t;\n",
    );
    let run = project.run(&["up"]);
    run.expect_code(exit::FAILED);
    let err = run.stderr();
    // The server points at the column on line 3; the statement starts on line 2.
    assert!(err.contains("0002_broken.sql at line 3"), "{err}");
    assert!(err.contains("SELECT id, missing_column FROM t"), "{err}");
    assert!(err.contains("SQLSTATE 42703"), "{err}");

    let mut conn = project.db.connect().await;
    assert_eq!(recorded_versions(&mut conn).await, vec![1]);
    assert!(!table_exists(&mut conn, "half").await);
    let (recorded, audited): (i64, i64) = sqlx::query_as(
        "SELECT m.duration_ms, a.duration_ms FROM sluice.migrations m \
         JOIN sluice.audit a ON a.version = m.version AND a.action = 'apply' WHERE m.version = 1",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert!(
        recorded >= 300,
        "the file slept 0.3 s, recorded {recorded} ms"
    );
    assert_eq!(recorded, audited);
}

#[tokio::test]
async fn status_reports_each_state_and_who_applied() {
    let project = Project::new().await;
    project.write("0001_a.sql", "CREATE TABLE a (id int);");
    project.write("0002_b.sql", "CREATE TABLE b (id int);");
    project
        .run(&["up", "--to", "0001", "--actor", "ci-job-42"])
        .expect_code(exit::OK);
    let run = project.run(&["status", "--json"]);
    run.expect_code(exit::OK);
    let doc: serde_json::Value = serde_json::from_str(&run.stdout()).unwrap();
    let rows = doc["migrations"].as_array().unwrap();
    assert_eq!(rows[0]["state"], "applied");
    assert_eq!(rows[0]["applied_by"]["actor"], "ci-job-42");
    assert!(
        rows[0]["applied_by"]["program"]
            .as_str()
            .unwrap()
            .starts_with("sluice ")
    );
    assert!(rows[0]["applied_at"].is_string());
    assert_eq!(rows[1]["state"], "pending");
    assert_eq!(doc["summary"]["pending"], 1);

    let human = project.run(&["status"]);
    assert!(human.stdout().contains("ci-job-42"), "{}", human.stdout());
    project.run(&["check"]).expect_code(exit::PENDING);
    project.run(&["up"]).expect_code(exit::OK);
    project.run(&["check"]).expect_code(exit::OK);
}

#[tokio::test]
async fn up_json_has_a_documented_shape() {
    let project = Project::new().await;
    project.write("0001_a.sql", "CREATE TABLE a (id int);");
    let run = project.run(&["up", "--json"]);
    run.expect_code(exit::OK);
    let doc: serde_json::Value = serde_json::from_str(&run.stdout()).unwrap();
    assert_eq!(doc["command"], "up");
    assert_eq!(doc["ok"], true);
    assert_eq!(doc["migrations"][0]["id"], "0001_a");
    assert!(doc["migrations"][0]["duration_ms"].is_u64());
    assert!(doc["error"].is_null());
}

#[tokio::test]
async fn a_crlf_checkout_is_not_an_edit() {
    let project = Project::new().await;
    let path = project.write(
        "0001_a.sql",
        "CREATE TABLE a (id int);\nCREATE TABLE b (id int);\n",
    );
    project.run(&["up"]).expect_code(exit::OK);
    std::fs::write(
        &path,
        "CREATE TABLE a (id int);\r\nCREATE TABLE b (id int);\r\n",
    )
    .unwrap();
    project.run(&["check"]).expect_code(exit::OK);
}

#[tokio::test]
async fn sluice_new_creates_named_files_and_refuses_bad_names() {
    let project = Project::new().await;
    let run = project.run(&["new", "add_email", "--reversible"]);
    run.expect_code(exit::OK);
    let names: Vec<String> = std::fs::read_dir(project.migrations())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
    assert!(
        names
            .iter()
            .any(|n| n.len() == "20261121000000_add_email.up.sql".len()
                && n.ends_with("_add_email.up.sql"))
    );
    assert!(names.iter().any(|n| n.ends_with("_add_email.down.sql")));
    project.run(&["validate"]).expect_code(exit::OK);
    let bad = project.run(&["new", "Add-Email"]);
    bad.expect_code(exit::USAGE);
    assert!(bad.stderr().contains("snake_case"), "{}", bad.stderr());
}

#[tokio::test]
async fn validate_reports_every_bad_file_without_a_database() {
    let project = Project::new().await;
    project.write("0001_a.sql", "SELECT 1;");
    project.write("0001_b.sql", "SELECT 1;");
    project.write("0002_c.down.sql", "SELECT 1;");
    project.write("0003_d.sql", "-- sluice:no-transacton\nSELECT 1;");
    let run = project
        .sluice()
        .env("DATABASE_URL", "postgres://nobody@127.0.0.1:1/none")
        .arg("validate")
        .output()
        .unwrap();
    assert_eq!(run.status.code(), Some(i32::from(exit::INVALID_INPUT)));
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(err.contains("versions must be unique"), "{err}");
    assert!(
        err.contains("0002_c.down.sql: a down file without its up file"),
        "{err}"
    );
    assert!(
        err.contains("0003_d.sql: line 1: unknown directive `sluice:no-transacton`"),
        "{err}"
    );
}

#[tokio::test]
async fn roundtrip_passes_a_sound_set_and_names_a_down_that_leaves_a_column() {
    let project = Project::new().await;
    write_three(&project);
    let sound = project.run(&["roundtrip"]);
    sound.expect_code(exit::OK);
    assert!(
        sound.stdout().contains("ok        0002_add_status"),
        "{}",
        sound.stdout()
    );
    assert!(
        sound.stdout().contains("3 migration(s) checked, 0 failed"),
        "{}",
        sound.stdout()
    );

    // A down that forgets a column.
    project.write("0004_add_notes.up.sql", "ALTER TABLE accounts ADD COLUMN notes text;\nALTER TABLE accounts ADD COLUMN tags text[];\n");
    project.write(
        "0004_add_notes.down.sql",
        "ALTER TABLE accounts DROP COLUMN notes;\n",
    );
    let leaky = project.run(&["roundtrip"]);
    leaky.expect_code(exit::FAILED);
    let out = leaky.stdout();
    assert!(
        out.contains("FAILED    0004_add_notes: down does not restore the schema"),
        "{out}"
    );
    assert!(
        out.contains("+ column public.accounts.tags text[] null default -"),
        "{out}"
    );
    assert!(
        out.contains("dropped"),
        "the scratch database was not dropped: {out}"
    );

    // Nothing of it touched the project's own database.
    let mut conn = project.db.connect().await;
    assert!(!table_exists(&mut conn, "accounts").await);
    let scratch_left: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_database WHERE datname LIKE 'sluice_roundtrip_%'",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(scratch_left, 0);
}

#[tokio::test]
async fn up_backup_takes_a_checked_dump_before_applying() {
    let project = Project::new().await;
    project.write("0001_a.sql", "CREATE TABLE a (id bigint PRIMARY KEY);\n");
    project.run(&["up"]).expect_code(exit::OK);
    project.db.exec("INSERT INTO a VALUES (1), (2)").await;
    project.write("0002_b.sql", "CREATE TABLE b (id bigint PRIMARY KEY);\n");
    let dir = project.path().join("backups");
    let run = project.run(&[
        "up",
        "--backup",
        dir.to_str().unwrap(),
        "--actor",
        "deploy-7",
    ]);
    run.expect_code(exit::OK);
    let dumps: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(dumps.len(), 1, "{dumps:?}");
    let listed = std::process::Command::new("pg_restore")
        .arg("--list")
        .arg(&dumps[0])
        .output()
        .unwrap();
    assert!(listed.status.success());
    assert!(
        String::from_utf8_lossy(&listed.stdout).contains("TABLE DATA public a"),
        "the dump lacks table a's data"
    );
    let mut conn = project.db.connect().await;
    let (detail, actor): (String, Option<String>) =
        sqlx::query_as("SELECT detail, actor FROM sluice.audit WHERE action = 'backup'")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert!(
        detail.contains(&dumps[0].display().to_string()) && detail.contains("bytes="),
        "{detail}"
    );
    assert_eq!(actor.as_deref(), Some("deploy-7"));
    assert_eq!(recorded_versions(&mut conn).await, vec![1, 2]);
}

#[tokio::test]
async fn a_failing_backup_applies_nothing() {
    let project = Project::new().await;
    project.write("0001_a.sql", "CREATE TABLE a (id bigint PRIMARY KEY);\n");
    let run = project
        .sluice()
        .env("SLUICE_PG_DUMP", "false")
        .args(["up", "--backup", "backups"])
        .output()
        .unwrap();
    assert_eq!(run.status.code(), Some(i32::from(exit::FAILED)));
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        stderr.contains("false failed, so nothing was applied"),
        "{stderr}"
    );
    let mut conn = project.db.connect().await;
    assert!(!table_exists(&mut conn, "a").await);
    assert!(recorded_versions(&mut conn).await.is_empty());
}
