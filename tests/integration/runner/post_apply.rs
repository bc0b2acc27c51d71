//! What `up` does after its migrations: verification checks and the schema file, and
//! `drift --schema-file` against that file.

use sluice_common::exit;
use sluice_tests::Project;

use super::recorded_versions;

async fn audited_checks(project: &Project) -> Vec<String> {
    let mut conn = project.db.connect().await;
    sqlx::query_scalar("SELECT detail FROM sluice.audit WHERE action = 'verify' ORDER BY id")
        .fetch_all(&mut conn)
        .await
        .unwrap()
}

#[tokio::test]
async fn verification_checks_are_printed_audited_and_fail_the_run_when_not_true() {
    let project = Project::new().await;
    project.write("0001_a.sql", "CREATE TABLE a (id int);\n");
    let file = project.path().join("no_null_ids.sql");
    std::fs::write(
        &file,
        "SELECT NOT EXISTS (SELECT 1 FROM a WHERE id IS NULL);\n",
    )
    .unwrap();

    let passed = project.run(&[
        "up",
        "--verify",
        "SELECT count(*) = 0 FROM a",
        "--verify-file",
        "no_null_ids.sql",
    ]);
    passed.expect_code(exit::OK);
    assert!(
        passed
            .stdout()
            .contains("check passed: SELECT count(*) = 0 FROM a")
            && passed.stdout().contains("check passed: no_null_ids.sql"),
        "{}",
        passed.stdout()
    );
    assert_eq!(audited_checks(&project).await.len(), 2);

    project.write("0002_null.sql", "INSERT INTO a VALUES (1), (NULL);\n");
    let failed = project.run(&["up", "--verify-file", "no_null_ids.sql"]);
    failed.expect_code(exit::FAILED);
    let stderr = failed.stderr();
    assert!(
        stderr.contains("1 verification check(s) failed after up; the migrations stay applied")
            && stderr.contains("check failed: no_null_ids.sql: returned false"),
        "{stderr}"
    );
    assert!(
        stderr.contains("applied before stopping: 0002_null"),
        "{stderr}"
    );
    let mut conn = project.db.connect().await;
    assert_eq!(recorded_versions(&mut conn).await, vec![1, 2]);
    let audit = audited_checks(&project).await;
    assert_eq!(
        audit.last().map(String::as_str),
        Some("check failed: no_null_ids.sql: returned false")
    );
}

#[tokio::test]
async fn a_check_cannot_change_data_and_a_missing_check_file_applies_nothing() {
    let project = Project::new().await;
    project.write(
        "0001_a.sql",
        "CREATE TABLE a (id int); INSERT INTO a VALUES (1);\n",
    );
    let missing = project.run(&["up", "--verify-file", "nowhere.sql"]);
    missing.expect_code(exit::INVALID_INPUT);
    assert!(
        missing
            .stderr()
            .contains("cannot read the check file nowhere.sql"),
        "{}",
        missing.stderr()
    );
    let mut conn = project.db.connect().await;
    let created: bool = sqlx::query_scalar("SELECT to_regclass('public.a') IS NOT NULL")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert!(
        !created,
        "nothing may be applied when a check file is missing"
    );

    let writing = project.run(&["up", "--json", "--verify", "DELETE FROM a RETURNING true"]);
    writing.expect_code(exit::FAILED);
    let doc: serde_json::Value = serde_json::from_str(writing.stdout().trim()).unwrap();
    assert_eq!(doc["checks"][0]["passed"], false);
    assert!(
        doc["checks"][0]["problem"]
            .as_str()
            .unwrap()
            .contains("read-only transaction"),
        "{doc}"
    );
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM a")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(rows, 1, "the check's DELETE must not have happened");

    let shapes = project.run(&[
        "up",
        "--verify",
        "SELECT 1",
        "--verify",
        "SELECT true FROM generate_series(1, 1000000)",
    ]);
    shapes.expect_code(exit::FAILED);
    assert!(
        shapes
            .stderr()
            .contains("SELECT 1: its first column must be a boolean")
            && shapes
                .stderr()
                .contains("returned more than one row; a check returns exactly one"),
        "{}",
        shapes.stderr()
    );
}

#[tokio::test]
async fn dump_schema_writes_a_stable_file_that_drift_compares_with() {
    let project = Project::new().await;
    project.write(
        "0001_a.sql",
        "CREATE TABLE a (id bigint PRIMARY KEY, name text NOT NULL DEFAULT '');\n\
         CREATE INDEX a_name ON a (name);\n",
    );
    project.run(&["up", "--dump-schema"]).expect_code(exit::OK);
    let path = project.path().join("schema.sql");
    let first = std::fs::read_to_string(&path).unwrap();
    assert!(first.contains("CREATE TABLE public.a ("), "{first}");
    assert!(first.contains("CREATE INDEX a_name"), "{first}");
    assert!(
        !first.contains("sluice.") && !first.contains("\\restrict") && !first.contains("Dumped"),
        "sluice's tables and per-run noise stay out:\n{first}"
    );
    project.run(&["up", "--dump-schema"]).expect_code(exit::OK);
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        first,
        "an unchanged schema gives an unchanged file"
    );

    project
        .run(&["drift", "--schema-file", "schema.sql"])
        .expect_code(exit::OK);
    project.db.exec("ALTER TABLE a ADD COLUMN hotfix int").await;
    let drifted = project.run(&["drift", "--json", "--schema-file", "schema.sql"]);
    drifted.expect_code(exit::SCHEMA_DRIFT);
    let line = drifted
        .stdout()
        .lines()
        .find(|l| l.starts_with('{'))
        .unwrap()
        .to_owned();
    let doc: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(doc["against"], "schema.sql");
    assert_eq!(
        doc["differences"],
        serde_json::json!(["+ column public.a.hotfix integer null default -"])
    );

    let missing = project.run(&["drift", "--schema-file", "nowhere.sql"]);
    assert!(
        missing
            .stderr()
            .contains("cannot read the schema file nowhere.sql")
            && missing.stderr().contains("sluice up --dump-schema"),
        "{}",
        missing.stderr()
    );
}

#[tokio::test]
async fn a_failing_schema_dump_reports_the_applied_migrations() {
    let project = Project::new().await;
    project.write("0001_a.sql", "CREATE TABLE a (id bigint);\n");
    let run = project
        .sluice()
        .env("SLUICE_PG_DUMP", "false")
        .args(["up", "--dump-schema", "db/schema.sql"])
        .output()
        .unwrap();
    assert_eq!(run.status.code(), Some(i32::from(exit::FAILED)));
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        stderr.contains(
            "the migrations were applied, but false failed, so db/schema.sql was not updated"
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains("applied before stopping: 0001_a"),
        "{stderr}"
    );
    assert!(!project.path().join("db/schema.sql").exists());
}

#[tokio::test]
async fn a_metrics_file_reports_durations_and_failures() {
    let project = Project::new().await;
    project.write("0001_a.sql", "CREATE TABLE a (id bigint);\n");
    project
        .run(&["up", "--metrics-file", "up.prom"])
        .expect_code(exit::OK);
    let text = std::fs::read_to_string(project.path().join("up.prom")).unwrap();
    assert!(
        text.contains(
            "sluice_migration_duration_seconds_bucket{migration=\"0001_a\",direction=\"up\""
        ) && text.contains("sluice_runner_last_run_success{command=\"up\"} 1"),
        "{text}"
    );
    project.write("0002_broken.sql", "ALTER TABLE missing ADD COLUMN x int;\n");
    project
        .run(&["up", "--metrics-file", "up.prom"])
        .expect_code(exit::FAILED);
    let text = std::fs::read_to_string(project.path().join("up.prom")).unwrap();
    assert!(
        text.contains("sluice_migration_failures_total{command=\"up\",exit_code=\"1\"} 1")
            && text.contains("sluice_runner_last_run_success{command=\"up\"} 0"),
        "{text}"
    );
}

#[tokio::test]
async fn check_drift_and_a_running_migration_write_their_metrics() {
    let project = Project::new().await;
    project.write("0001_a.sql", "CREATE TABLE a (id bigint PRIMARY KEY);\n");
    project.write("0002_b.sql", "CREATE TABLE b (id bigint PRIMARY KEY);\n");
    let file = project.path().join("sluice.prom");
    let path = file.to_str().unwrap();
    project
        .run(&["check", "--metrics-file", path])
        .expect_code(exit::PENDING);
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.contains("sluice_migrations_pending 2"), "{text}");
    assert!(text.contains("sluice_migrations_history_drift 0"), "{text}");

    // While a migration runs, the file names it and when it started.
    project.write("0003_slow.sql", "SELECT pg_sleep(3);\n");
    let mut up = project.sluice();
    let runner = up
        .args(["up", "--metrics-file", path])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    loop {
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        if text
            .contains("sluice_migration_running_since_timestamp_seconds{migration=\"0003_slow\"} 1")
        {
            break;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(30),
            "{text}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(runner.wait_with_output().unwrap().status.code(), Some(0));
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(
        text.contains(
            "sluice_migration_running_since_timestamp_seconds{migration=\"0003_slow\"} 0"
        ),
        "{text}"
    );

    project.db.exec("ALTER TABLE a ADD COLUMN hotfix int").await;
    let drift_file = project.path().join("drift.prom");
    project
        .run(&["drift", "--metrics-file", drift_file.to_str().unwrap()])
        .expect_code(exit::SCHEMA_DRIFT);
    let text = std::fs::read_to_string(&drift_file).unwrap();
    assert!(text.contains("sluice_schema_drift 1"), "{text}");
}
