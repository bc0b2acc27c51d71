//! Runner answers that must match what the database holds.

use sluice_common::exit;
use sluice_tests::{Project, Run};

#[tokio::test]
async fn a_failing_block_in_a_no_transaction_file_claims_nothing_it_rolled_back() {
    let project = Project::new().await;
    let path = project.write(
        "0001_block.sql",
        "-- sluice:no-transaction\nBEGIN;\nCREATE TABLE x (id int);\nINSERT INTO nope VALUES (1);\nCOMMIT;\n",
    );
    let run = project.run(&["up"]);
    run.expect_code(exit::FAILED);
    let err = run.stderr();
    assert!(!err.contains("ran and are recorded"), "{err}");
    assert!(
        err.contains("none of its 4 statements is recorded as run"),
        "{err}"
    );
    assert!(err.contains("rolled back"), "{err}");
    assert_eq!(
        project
            .db
            .scalar("SELECT count(*) FROM pg_class WHERE relname = 'x'")
            .await,
        0
    );
    assert_eq!(
        project
            .db
            .scalar("SELECT statements_done::bigint FROM sluice.migration_progress")
            .await,
        0
    );
    assert_eq!(
        project
            .db
            .scalar("SELECT count(*) FROM sluice.audit WHERE action = 'fail-apply'")
            .await,
        1,
        "the failure's audit row was lost"
    );
    // Fixed, the block runs whole, once.
    std::fs::write(
        &path,
        "-- sluice:no-transaction\nBEGIN;\nCREATE TABLE x (id int);\nINSERT INTO x VALUES (1);\nCOMMIT;\n",
    )
    .unwrap();
    project.run(&["up"]).expect_code(exit::OK);
    assert_eq!(project.db.scalar("SELECT count(*) FROM x").await, 1);
}

#[tokio::test]
async fn a_no_transaction_file_that_never_commits_its_block_is_not_applied() {
    let project = Project::new().await;
    project.write(
        "0001_open.sql",
        "-- sluice:no-transaction\nBEGIN;\nCREATE TABLE x (id int);\n",
    );
    // Lint sees it first; past lint, the runner refuses to record it.
    project.run(&["up"]).expect_code(exit::BLOCKED);
    let run = project.run(&["up", "--skip-lint"]);
    run.expect_code(exit::FAILED);
    assert!(run.stderr().contains("never commits"), "{}", run.stderr());
    assert_eq!(
        project
            .db
            .scalar("SELECT count(*) FROM pg_class WHERE relname = 'x'")
            .await,
        0
    );
    assert_eq!(
        project
            .db
            .scalar("SELECT count(*) FROM sluice.migrations")
            .await,
        0
    );
}

#[tokio::test]
async fn each_migration_starts_from_a_clean_session() {
    let project = Project::new().await;
    let role = format!("lowpriv_{}", &project.db.name);
    project.write(
        "0001_schema.sql",
        &format!("CREATE SCHEMA other;\nCREATE ROLE \"{role}\" NOLOGIN;\n"),
    );
    project.write(
        "0002_path.sql",
        "-- sluice:no-transaction\nSET search_path TO other;\nSELECT 1;\n",
    );
    project.write("0003_leak.sql", "CREATE TABLE leak (id int);\n");
    project.write(
        "0004_role.sql",
        &format!("-- sluice:no-transaction\nSET ROLE \"{role}\";\nSELECT 1;\n"),
    );
    project.write("0005_after.sql", "CREATE TABLE after_role (id int);\n");
    project.write(
        "0006_tx_role.sql",
        &format!("SET ROLE \"{role}\";\nSELECT 1;\n"),
    );
    project.write("0007_last.sql", "CREATE TABLE last_one (id int);\n");
    let run = project.run(&["up"]);
    let _ = project
        .db
        .exec(&format!(
            "DROP OWNED BY \"{role}\"; DROP ROLE IF EXISTS \"{role}\""
        ))
        .await;
    run.expect_code(exit::OK);
    assert_eq!(
        project
            .db
            .scalar(
                "SELECT count(*) FROM pg_tables WHERE tablename = 'leak' AND schemaname = 'public'"
            )
            .await,
        1,
        "SET search_path of one migration leaked into the next"
    );
    assert_eq!(
        project
            .db
            .scalar(
                "SELECT count(*) FROM pg_tables WHERE tablename IN ('after_role', 'last_one') \
             AND tableowner = current_user"
            )
            .await,
        2
    );
    project.run(&["up"]).expect_code(exit::OK);
    assert_eq!(
        project
            .db
            .scalar("SELECT count(*) FROM sluice.migrations")
            .await,
        7
    );
}

#[tokio::test]
async fn validate_and_lint_find_what_postgresql_would_refuse_before_anything_runs() {
    let project = Project::new().await;
    project.write("0001_ok.sql", "CREATE TABLE ok (id bigint);\n");
    project.write(
        "0002_typo.sql",
        "CREATE TABLE a (id bigint);\n  CREATE TABLEE b (id bigint);\n",
    );
    project.write(
        "0003_psql.sql",
        "CREATE TABLE c (id bigint);\n\\i other.sql\n",
    );
    project.write(
        "0004_copy.sql",
        "CREATE TABLE d (id bigint);\nCOPY d (id) FROM STDIN;\n1\n2\n\\.\n",
    );
    project.write("0005_nul.sql", "CREATE TABLE e (id bigint);\0\n");
    for args in [&["validate"][..], &["lint"][..], &["up"][..]] {
        let run = project.run(args);
        run.expect_code(exit::INVALID_INPUT);
        let err = run.stderr();
        assert!(
            err.contains("0002_typo.sql:2:3: syntax error"),
            "{args:?}: {err}"
        );
        assert!(err.contains("0003_psql.sql:2:1"), "{args:?}: {err}");
        assert!(err.contains("psql meta-command"), "{args:?}: {err}");
        assert!(err.contains("COPY ... FROM STDIN"), "{args:?}: {err}");
        assert!(err.contains("NUL byte"), "{args:?}: {err}");
    }
    assert_eq!(
        project
            .db
            .scalar("SELECT count(*) FROM pg_class WHERE relname = 'ok'")
            .await,
        0,
        "up applied the migrations before the bad ones"
    );
}

#[tokio::test]
async fn a_statement_that_hits_its_own_statement_timeout_fails_at_once_with_advice() {
    let project = Project::new().await;
    project.write(
        "0001_slow.sql",
        "-- sluice:statement-timeout 300ms\nSELECT pg_sleep(2);\n",
    );
    let started = std::time::Instant::now();
    let run = project.run(&["up"]);
    run.expect_code(exit::FAILED);
    // Safety bound far from the failure case (10 retries took over 2 minutes).
    assert!(started.elapsed() < std::time::Duration::from_secs(20));
    let err = run.stderr();
    assert!(err.contains("statement timeout"), "{err}");
    assert!(err.contains("sluice:statement-timeout"), "{err}");
    assert!(!err.contains("after 2 attempts"), "{err}");
}

#[tokio::test]
async fn down_backup_is_taken_and_every_backup_file_is_its_own() {
    let project = Project::new().await;
    project.write("0001_t.up.sql", "CREATE TABLE t (id bigint);\n");
    project.write("0001_t.down.sql", "DROP TABLE t;\n");
    let backups = project.path().join("backups");
    let dir = backups.to_str().unwrap();
    project.run(&["up", "--backup", dir]).expect_code(exit::OK);
    let down = project.run(&["down", "--backup", dir, "--skip-lint"]);
    down.expect_code(exit::OK);
    let files: Vec<_> = std::fs::read_dir(&backups).unwrap().flatten().collect();
    assert_eq!(files.len(), 2, "one backup per run: {files:?}");
    assert_eq!(
        project
            .db
            .scalar("SELECT count(*) FROM sluice.audit WHERE action = 'backup'")
            .await,
        2
    );
}

#[tokio::test]
async fn durations_out_of_postgresql_range_are_refused_before_anything_runs() {
    let project = Project::new().await;
    project.write("0001_t.sql", "CREATE TABLE t (id bigint);\n");
    std::fs::write(
        project.path().join("sluice.toml"),
        "[runner]\nstatement_timeout = \"100d\"\n",
    )
    .unwrap();
    let file = project.run(&["up"]);
    file.expect_code(exit::INVALID_INPUT);
    assert!(
        file.stderr().contains("statement_timeout"),
        "{}",
        file.stderr()
    );
    std::fs::remove_file(project.path().join("sluice.toml")).unwrap();
    project
        .run(&["up", "--lock-wait", "99999999999h"])
        .expect_code(exit::USAGE);
    project
        .run(&["status", "--connect-timeout", "0s"])
        .expect_code(exit::USAGE);
    project.write(
        "0002_d.sql",
        "-- sluice:statement-timeout 100d\nSELECT 1;\n",
    );
    let directive = project.run(&["up"]);
    directive.expect_code(exit::INVALID_INPUT);
    assert!(
        directive.stderr().contains("PostgreSQL's limit"),
        "{}",
        directive.stderr()
    );
    assert_eq!(
        project
            .db
            .scalar("SELECT count(*) FROM pg_class WHERE relname = 't'")
            .await,
        0
    );
}

#[tokio::test]
async fn json_lists_done_migrations_the_same_way_on_failure_and_success() {
    let project = Project::new().await;
    project.write("0001_a.sql", "CREATE TABLE a (id bigint);\n");
    project.write("0002_b.sql", "INSERT INTO nope VALUES (1);\n");
    let failed = project.run(&["up", "--json"]);
    failed.expect_code(exit::FAILED);
    let doc: serde_json::Value = serde_json::from_str(&failed.stdout()).unwrap();
    assert_eq!(doc["migrations"][0]["id"], "0001_a", "{doc}");
    assert_eq!(doc["migrations"][0]["version"], 1, "{doc}");
    let invalid = Run(project
        .sluice()
        .env("DATABASE_URL", "")
        .args(["up", "--json"])
        .output()
        .unwrap());
    invalid.expect_code(exit::USAGE);
    let doc: serde_json::Value = serde_json::from_str(&invalid.stdout()).unwrap();
    assert_eq!(doc["ok"], false, "{doc}");
}

#[tokio::test]
async fn empty_and_comment_only_migrations_are_warned_about() {
    let project = Project::new().await;
    project.write("0001_empty.sql", "-- nothing here yet\n\n");
    let validate = project.run(&["validate"]);
    validate.expect_code(exit::OK);
    assert!(
        validate.stderr().contains("holds no statement"),
        "{}",
        validate.stderr()
    );
    let up = project.run(&["up"]);
    up.expect_code(exit::OK);
    assert!(
        up.stderr().contains("holds no statement"),
        "{}",
        up.stderr()
    );
}

#[tokio::test]
async fn new_after_the_largest_version_refuses_instead_of_wrapping() {
    let project = Project::new().await;
    project.write(&format!("{}_last.sql", i64::MAX), "SELECT 1;\n");
    let run = project.run(&["new", "next_one"]);
    run.expect_code(exit::INVALID_INPUT);
    assert!(
        run.stderr().contains("no version comes after it"),
        "{}",
        run.stderr()
    );
    let names: Vec<String> = std::fs::read_dir(project.migrations())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 1, "{names:?}");
}

#[tokio::test]
async fn a_role_without_create_on_the_database_uses_the_schema_a_dba_made_for_it() {
    let project = Project::new().await;
    let role = format!("least_{}", &project.db.name);
    project
        .db
        .exec(&format!(
            "CREATE ROLE \"{role}\" LOGIN PASSWORD 'least-pw';
             REVOKE CREATE ON DATABASE \"{db}\" FROM PUBLIC;
             CREATE SCHEMA sluice AUTHORIZATION \"{role}\";
             CREATE SCHEMA app AUTHORIZATION \"{role}\";",
            db = project.db.name
        ))
        .await;
    let mut url = url::Url::parse(&project.db.url).unwrap();
    url.set_username(&role).unwrap();
    url.set_password(Some("least-pw")).unwrap();
    project.write(
        "0001_t.sql",
        "CREATE TABLE app.t (id bigint PRIMARY KEY, n int NOT NULL DEFAULT 0);\n\
         INSERT INTO app.t (id) SELECT g FROM generate_series(1, 500) g;\n",
    );
    project.job(
        "bump",
        "name = \"bump\"\ntable = \"app.t\"\nkey = [\"id\"]\nset = \"n = n + 1\"\n",
    );
    let up = Run(project
        .sluice()
        .env("DATABASE_URL", url.as_str())
        .arg("up")
        .output()
        .unwrap());
    let backfill = Run(project
        .backfill()
        .env("DATABASE_URL", url.as_str())
        .args(["run", "bump"])
        .output()
        .unwrap());
    let _ = project
        .db
        .exec(&format!(
            "DROP OWNED BY \"{role}\"; DROP ROLE IF EXISTS \"{role}\""
        ))
        .await;
    up.expect_code(exit::OK);
    assert!(!up.stderr().contains("WARN"), "{}", up.stderr());
    backfill.expect_code(exit::OK);
}

#[tokio::test]
async fn one_signal_stops_validate_of_a_huge_file() {
    let project = Project::new().await;
    let sql: String = (0..120_000)
        .map(|i| format!("INSERT INTO t VALUES ({i}, 'some value {i}');\n"))
        .collect();
    project.write(
        "0001_big.sql",
        &format!("CREATE TABLE t (a bigint, b text);\n{sql}"),
    );
    let mut validate = project
        .sluice()
        .arg("validate")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    #[expect(unsafe_code, reason = "kill(2) has no safe wrapper in std")]
    // SAFETY: kill has no memory-safety preconditions; the pid is our own child's.
    unsafe {
        libc::kill(i32::try_from(validate.id()).unwrap(), libc::SIGINT);
    }
    let status = validate.wait().unwrap();
    // Without the signal it exits 0 once the file is parsed.
    assert_eq!(status.code(), Some(i32::from(exit::INTERRUPTED)));
}

#[tokio::test]
async fn an_invalid_schema_flag_is_a_usage_error_and_in_the_file_invalid_input() {
    let project = Project::new().await;
    project
        .run(&["status", "--schema", "bad schema; drop"])
        .expect_code(exit::USAGE);
    std::fs::write(
        project.path().join("sluice.toml"),
        "schema = \"bad schema; drop\"\n",
    )
    .unwrap();
    project.run(&["status"]).expect_code(exit::INVALID_INPUT);
}

/// Savepoints are not transaction control: the file stays one transaction, lint does not
/// call them nesting (issue "Do no harm", point 10).
#[tokio::test]
async fn a_file_with_savepoints_runs_as_one_transaction() {
    let project = Project::new().await;
    project.write(
        "0001_savepoints.sql",
        "CREATE TABLE kept (id int);\nSAVEPOINT s1;\nCREATE TABLE undone (id int);\n\
         ROLLBACK TO SAVEPOINT s1;\nRELEASE SAVEPOINT s1;\n",
    );
    let lint = project.run(&["lint"]);
    assert!(
        !lint.stdout().contains("transaction-nesting")
            && !lint.stderr().contains("transaction-nesting"),
        "{}{}",
        lint.stdout(),
        lint.stderr()
    );
    project.run(&["up"]).expect_code(exit::OK);
    assert_eq!(
        project
            .db
            .scalar("SELECT count(*) FROM pg_tables WHERE tablename IN ('kept', 'undone')")
            .await,
        1
    );
    assert_eq!(
        project
            .db
            .scalar("SELECT count(*) FROM sluice.migrations WHERE NOT no_transaction")
            .await,
        1,
        "not recorded as one transaction"
    );
}

/// Each migration starts without the prepared statements of the one before (point 11).
#[tokio::test]
async fn prepared_statements_do_not_leak_between_migrations() {
    let project = Project::new().await;
    for n in 1..=2 {
        project.write(
            &format!("000{n}_prepare.sql"),
            &format!("PREPARE p AS SELECT {n};\nEXECUTE p;\nCREATE TABLE t{n} (id int);\n"),
        );
    }
    project.write("0003_more.sql", "CREATE TABLE t3 (id int);\n");
    project.run(&["up"]).expect_code(exit::OK);
    assert_eq!(
        project
            .db
            .scalar("SELECT count(*) FROM sluice.migrations")
            .await,
        3
    );
}

/// A migration that deletes sluice's history or disables its audit trigger is refused by
/// lint (point 21).
#[tokio::test]
async fn a_migration_that_writes_sluices_own_tables_is_refused() {
    let project = Project::new().await;
    project.write("0001_t.sql", "CREATE TABLE t (id int);\n");
    project.run(&["up"]).expect_code(exit::OK);
    project.write(
        "0002_forget.sql",
        "DELETE FROM sluice.migrations WHERE version = 1;\n",
    );
    let run = project.run(&["up"]);
    run.expect_code(exit::BLOCKED);
    assert!(
        run.stderr().contains("ban-writes-to-sluice-schema"),
        "{}",
        run.stderr()
    );
    assert_eq!(
        project
            .db
            .scalar("SELECT count(*) FROM sluice.migrations")
            .await,
        1
    );
}

/// Input files are checked before they are read: a dangling symlink is an error, not a
/// migration silently left out; a link out of the directory to something that is not SQL is
/// refused without quoting it; devices, pipes and oversized files are refused at once (issue
/// "Do no harm", points 12 and 13).
#[tokio::test]
async fn careless_paths_are_refused_and_nothing_of_them_is_shown() {
    let project = Project::new().await;
    project.write("0001_t.sql", "CREATE TABLE t (id int);\n");
    std::os::unix::fs::symlink(
        project.path().join("shared/0002_gone.sql"),
        project.migrations().join("0002_gone.sql"),
    )
    .unwrap();
    let validate = project.run(&["validate"]);
    validate.expect_code(exit::INVALID_INPUT);
    assert!(
        validate.stderr().contains("0002_gone.sql: it is a symlink"),
        "{}",
        validate.stderr()
    );
    project.run(&["up"]).expect_code(exit::INVALID_INPUT);
    assert_eq!(
        project
            .db
            .scalar("SELECT count(*) FROM pg_tables WHERE tablename = 't'")
            .await,
        0,
        "up ran with a migration missing"
    );
    std::fs::remove_file(project.migrations().join("0002_gone.sql")).unwrap();

    let secret = project.path().join("credentials");
    std::fs::write(&secret, "root:hunter2-secret:19000:0:99999:7:::\n").unwrap();
    std::os::unix::fs::symlink(&secret, project.migrations().join("0002_creds.sql")).unwrap();
    let validate = project.run(&["validate"]);
    validate.expect_code(exit::INVALID_INPUT);
    let err = validate.stderr();
    assert!(err.contains("it is not a migration"), "{err}");
    assert!(!err.contains("hunter2"), "{err}");
    std::fs::remove_file(project.migrations().join("0002_creds.sql")).unwrap();

    let fifo = project.path().join("pipe.toml");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    for args in [
        &["--config", "/dev/zero", "status"][..],
        &["--config", fifo.to_str().unwrap(), "status"],
        &["lint", "/dev/zero"],
        &["up", "--verify-file", fifo.to_str().unwrap()],
    ] {
        let started = std::time::Instant::now();
        let run = project.run(args);
        run.expect_code(exit::INVALID_INPUT);
        assert!(
            run.stderr().contains("not a regular file"),
            "{args:?}: {}",
            run.stderr()
        );
        // A safety bound far from the failure case (a pipe blocks forever).
        assert!(started.elapsed() < std::time::Duration::from_secs(20));
    }
    std::fs::create_dir_all(project.path().join("jobs")).unwrap();
    std::os::unix::fs::symlink("/dev/zero", project.path().join("jobs/zero.toml")).unwrap();
    let job = project.run_backfill(&["run", "zero"]);
    job.expect_code(exit::INVALID_INPUT);
    assert!(
        job.stderr().contains("not a regular file"),
        "{}",
        job.stderr()
    );
}

/// What the operator typed and what the table holds reaches the terminal escaped and the
/// audit trail as given (issue "Do no harm", point 18).
#[tokio::test]
async fn actors_and_data_reach_the_terminal_escaped_and_the_audit_as_given() {
    let project = Project::new().await;
    project.write(
        "0001_t.sql",
        "CREATE TABLE t (email text UNIQUE);\nINSERT INTO t VALUES (E'a\\x1b[2J\\nb');\n",
    );
    let actor = "ops\u{1b}]0;pwned\u{7}\napplied 9999_fake";
    project.run(&["--actor", actor, "up"]).expect_code(exit::OK);
    let stored: String = {
        let mut conn = project.db.connect().await;
        sqlx::query_scalar("SELECT actor FROM sluice.migrations")
            .fetch_one(&mut conn)
            .await
            .unwrap()
    };
    assert_eq!(stored, actor, "the audit lost who ran it");
    let status = project.run(&["status"]);
    let out = status.stdout();
    assert!(!out.contains('\u{1b}') && !out.contains('\u{7}'), "{out:?}");
    assert!(
        !out.lines().any(|l| l.starts_with("applied 9999_fake")),
        "{out}"
    );
    assert!(out.contains("\\u{1b}"), "{out}");
    // A unique violation's detail quotes the row.
    project.write("0002_dup.sql", "INSERT INTO t VALUES (E'a\\x1b[2J\\nb');\n");
    let failed = project.run(&["up"]);
    failed.expect_code(exit::FAILED);
    let err = failed.stderr();
    assert!(err.contains("already exists"), "{err}");
    assert!(!err.contains('\u{1b}'), "{err:?}");
    for too_much in ["", &"x".repeat(60_000)] {
        project
            .run(&["--actor", too_much, "status"])
            .expect_code(exit::USAGE);
    }
}

/// Values outside sensible ranges are refused: exit 2 on the command line, 3 in a file; and
/// exit codes agree with the README (points 19 and 20).
#[tokio::test]
async fn out_of_range_settings_and_bad_arguments_get_the_readme_codes() {
    let project = Project::new().await;
    project.write(
        "0001_t.sql",
        "CREATE TABLE t (id bigint PRIMARY KEY, n int NOT NULL DEFAULT 0);\n",
    );
    for (args, code) in [
        (
            &["--lock-timeout", "5s", "--max-lock-timeout", "1s", "status"][..],
            exit::USAGE,
        ),
        (&["--max-retries", "4294967295", "status"], exit::USAGE),
        (&["--schema", "pg_catalog", "status"], exit::USAGE),
        (
            &["up", "--metrics-file", "/nonexistent-dir/x.prom"],
            exit::INVALID_INPUT,
        ),
        (&["trace", "typo.sql"], exit::INVALID_INPUT),
    ] {
        let run = project.run(args);
        run.expect_code(code);
    }
    std::fs::write(
        project.path().join("sluice.toml"),
        "[runner]\nmax_retries = 4294967295\n",
    )
    .unwrap();
    project.run(&["status"]).expect_code(exit::INVALID_INPUT);
    std::fs::remove_file(project.path().join("sluice.toml")).unwrap();
    project.run(&["up"]).expect_code(exit::OK);
    project.write("0002_broken.sql", "ALTER TABLE t ADD COLUMN;\n");
    let trace = project.run(&["trace"]);
    trace.expect_code(exit::INVALID_INPUT);
    assert!(
        trace.stderr().contains("0002_broken.sql"),
        "{}",
        trace.stderr()
    );
    std::fs::remove_file(project.migrations().join("0002_broken.sql")).unwrap();

    let spec = "name = \"j\"\ntable = \"t\"\nkey = [\"id\"]\nset = \"n = 1\"\n";
    for extra in [
        "ranges = 1000000\n",
        "load_check_interval = \"1ns\"\n",
        "max_retries = 4294967295\n",
    ] {
        project.job("j", &format!("{spec}{extra}"));
        let run = project.run_backfill(&["run", "j"]);
        run.expect_code(exit::INVALID_INPUT);
    }
    project.job("j", spec);
    for flags in [
        &["--ranges", "1000000"][..],
        &["--max-retries", "4294967295"],
    ] {
        let mut args = vec!["run", "j"];
        args.extend_from_slice(flags);
        project.run_backfill(&args).expect_code(exit::USAGE);
    }
    // A statement PostgreSQL refuses is the spec's fault, for `plan` as for `run`.
    project.job(
        "typo",
        "name = \"typo\"\ntable = \"t\"\nkey = [\"id\"]\nset = \"n = nosuchfn(n)\"\n",
    );
    for command in ["plan", "run"] {
        project
            .run_backfill(&[command, "typo"])
            .expect_code(exit::INVALID_INPUT);
    }
    // The application's malformed URL is bad input, as in the CLI (4 would be retried forever).
    let app = Run(std::process::Command::new(sluice_tests::bin::example_app())
        .current_dir(project.path())
        .env_clear()
        .env("DATABASE_URL", "postgres//app:pw@db/x")
        .output()
        .unwrap());
    app.expect_code(exit::INVALID_INPUT);
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = busy.local_addr().unwrap().to_string();
    let run = project.run_backfill(&["run", "j", "--metrics-addr", &addr]);
    run.expect_code(exit::INVALID_INPUT);
    assert!(run.stderr().contains("--metrics-addr"), "{}", run.stderr());
}
