//! Backfill answers that must never claim what did not happen.

use sluice_common::exit;
use sluice_tests::Project;

/// `name` on `table` (key `id`), slow enough to be caught mid-run.
fn slow_job(project: &Project, name: &str, table: &str, extra: &str) {
    project.job(
        name,
        &format!(
            "name = \"{name}\"\ntable = \"{table}\"\nkey = [\"id\"]\nset = \"n = n + 1\"\n\
             batch_size = 50\nmin_batch_size = 50\nmax_batch_size = 50\npause = \"20ms\"\n{extra}"
        ),
    );
}

/// `t (id bigint PRIMARY KEY, n int)` with `rows` rows, `n` 0.
async fn table_t(project: &Project, rows: i64) {
    project
        .db
        .exec(&format!(
            "CREATE TABLE t (id bigint PRIMARY KEY, n int NOT NULL DEFAULT 0);
             INSERT INTO t (id) SELECT g FROM generate_series(1, {rows}) g;"
        ))
        .await;
}

/// Rows of `t` not updated exactly once.
async fn not_once(project: &Project) -> i64 {
    project
        .db
        .scalar("SELECT count(*) FROM t WHERE n <> 1")
        .await
}

#[tokio::test]
async fn a_job_cannot_move_to_another_table_or_key_under_its_name() {
    let project = Project::new().await;
    project
        .db
        .exec(
            "CREATE TABLE t (id bigint PRIMARY KEY, k bigint NOT NULL UNIQUE, n int NOT NULL DEFAULT 0);
             CREATE TABLE t2 (id bigint PRIMARY KEY, n int NOT NULL DEFAULT 0);
             INSERT INTO t (id, k) SELECT g, g FROM generate_series(1, 500) g;
             INSERT INTO t2 (id) SELECT g FROM generate_series(1, 500) g;",
        )
        .await;
    project.job(
        "same",
        "name = \"same\"\ntable = \"t\"\nkey = [\"id\"]\nset = \"n = n + 1\"\n",
    );
    project.run_backfill(&["run", "same"]).expect_code(exit::OK);

    project.job(
        "same",
        "name = \"same\"\ntable = \"t2\"\nkey = [\"id\"]\nset = \"n = n + 1\"\n",
    );
    let moved = project.run_backfill(&["run", "same", "--accept-spec-change"]);
    moved.expect_code(exit::INVALID_INPUT);
    assert!(
        moved.stderr().contains("never change"),
        "{}",
        moved.stderr()
    );
    assert!(!moved.stdout().contains("completed"), "{}", moved.stdout());
    assert_eq!(
        project
            .db
            .scalar("SELECT count(*) FROM t2 WHERE n <> 0")
            .await,
        0
    );

    project.job(
        "same",
        "name = \"same\"\ntable = \"t\"\nkey = [\"k\"]\nset = \"n = n + 1\"\n",
    );
    let rekeyed = project.run_backfill(&["run", "same", "--accept-spec-change"]);
    rekeyed.expect_code(exit::INVALID_INPUT);
    assert!(rekeyed.stderr().contains("key k"), "{}", rekeyed.stderr());
    assert_eq!(not_once(&project).await, 0);
}

#[tokio::test]
async fn rows_whose_key_became_null_mid_run_fail_verification() {
    let project = Project::new().await;
    project
        .db
        .exec(
            "CREATE TABLE t (id bigint NOT NULL, n int NOT NULL DEFAULT 0);
             CREATE UNIQUE INDEX t_id ON t (id);
             INSERT INTO t (id) SELECT g FROM generate_series(1, 2000) g;",
        )
        .await;
    slow_job(&project, "nulls", "t", "where = \"n = 0\"\n");
    let worker = project.spawn_backfill(&["run", "nulls"]);
    project.wait_for_batches("nulls", 2).await;
    project
        .db
        .exec(
            "ALTER TABLE t ALTER COLUMN id DROP NOT NULL;
             INSERT INTO t (id) SELECT NULL FROM generate_series(1, 7);",
        )
        .await;
    let output = worker.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        output.status.code(),
        Some(i32::from(exit::FAILED)),
        "{stdout}{stderr}"
    );
    assert!(stderr.contains("7 row(s)"), "{stderr}");
    assert!(stderr.contains("NULL key"), "{stderr}");
    assert!(!stdout.contains("verified"), "{stdout}");
    let status = project.run_backfill(&["status", "nulls", "--json"]);
    let doc: serde_json::Value = serde_json::from_str(&status.stdout()).unwrap();
    assert_eq!(doc["jobs"][0]["state"], "failed");
}

#[tokio::test]
async fn set_or_where_errors_are_found_before_anything_is_recorded() {
    let project = Project::new().await;
    table_t(&project, 300).await;
    for (set, where_) in [
        ("nope = 1", "true"),
        ("n = n +", "true"),
        ("n = n + 1", "no_such_column > 0"),
        ("n = n + 1; DROP TABLE t", "true"),
    ] {
        project.job(
            "typo",
            &format!(
                "name = \"typo\"\ntable = \"t\"\nkey = [\"id\"]\nset = \"{set}\"\nwhere = \"{where_}\"\n"
            ),
        );
        let run = project.run_backfill(&["run", "typo"]);
        run.expect_code(exit::INVALID_INPUT);
        assert!(
            run.stderr().contains("nothing was recorded"),
            "{}",
            run.stderr()
        );
    }
    assert_eq!(
        project
            .db
            .scalar("SELECT count(*) FROM sluice.backfill_jobs WHERE name = 'typo'")
            .await,
        0
    );
    assert_eq!(
        project
            .db
            .scalar("SELECT count(*) FROM t WHERE n <> 0")
            .await,
        0
    );
    // Fixed, the job runs without --accept-spec-change: nothing was done the old way.
    project.job(
        "typo",
        "name = \"typo\"\ntable = \"t\"\nkey = [\"id\"]\nset = \"n = n + 1\"\n",
    );
    let fixed = project.run_backfill(&["run", "typo"]);
    fixed.expect_code(exit::OK);
    assert!(
        !fixed.stderr().contains("accept-spec-change"),
        "{}",
        fixed.stderr()
    );
    assert_eq!(not_once(&project).await, 0);
}

#[tokio::test]
async fn resume_of_a_cancelled_job_is_refused_and_pause_gives_up_leases() {
    let project = Project::new().await;
    table_t(&project, 5000).await;
    slow_job(&project, "slow", "t", "");
    let worker = project.spawn_backfill(&["run", "slow", "--workers", "2"]);
    project.wait_for_batches("slow", 3).await;
    project
        .run_backfill(&["pause", "slow"])
        .expect_code(exit::OK);
    let output = worker.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(0));
    let status = project.run_backfill(&["status", "slow", "--json"]);
    let doc: serde_json::Value = serde_json::from_str(&status.stdout()).unwrap();
    assert_eq!(doc["jobs"][0]["state"], "paused");
    assert_eq!(doc["jobs"][0]["leases"], serde_json::json!([]), "{doc}");
    let text = project.run_backfill(&["status", "slow"]).stdout();
    assert!(!text.contains("lease"), "{text}");

    project
        .run_backfill(&["cancel", "slow"])
        .expect_code(exit::OK);
    let resume = project.run_backfill(&["resume", "slow"]);
    resume.expect_code(exit::BLOCKED);
    assert!(!resume.stdout().contains("resumed"), "{}", resume.stdout());
    assert!(
        resume.stderr().contains("was cancelled"),
        "{}",
        resume.stderr()
    );
    project
        .run_backfill(&["run", "slow"])
        .expect_code(exit::BLOCKED);
}

#[tokio::test]
async fn the_throttle_query_is_read_only_at_every_evaluation() {
    let project = Project::new().await;
    project
        .db
        .exec(
            "CREATE TABLE t (id bigint PRIMARY KEY, n int NOT NULL DEFAULT 0);
             INSERT INTO t (id) SELECT g FROM generate_series(1, 3000) g;
             CREATE TABLE wrote (at timestamptz);
             CREATE FUNCTION sneaky() RETURNS boolean LANGUAGE plpgsql AS $$
             BEGIN
               IF current_setting('transaction_read_only') = 'off' THEN
                 INSERT INTO wrote VALUES (now());
               END IF;
               RETURN false;
             END $$;",
        )
        .await;
    slow_job(
        &project,
        "watched",
        "t",
        "throttle_query = \"SELECT sneaky()\"\nload_check_interval = \"20ms\"\n",
    );
    project
        .run_backfill(&["run", "watched"])
        .expect_code(exit::OK);
    assert_eq!(project.db.scalar("SELECT count(*) FROM wrote").await, 0);
    assert_eq!(not_once(&project).await, 0);
}

#[tokio::test]
async fn a_pause_on_a_ranges_last_batch_leaves_no_lease_behind() {
    let project = Project::new().await;
    table_t(&project, 100).await;
    project.job(
        "two",
        "name = \"two\"\ntable = \"t\"\nkey = [\"id\"]\nset = \"n = n + 1\"\nranges = 1\n\
         batch_size = 50\nmin_batch_size = 50\nmax_batch_size = 50\npause = \"1s\"\n",
    );
    let worker = project.spawn_backfill(&["run", "two"]);
    project.wait_for_batches("two", 1).await;
    // The request is read with the next batch, which is the range's last.
    project
        .run_backfill(&["pause", "two"])
        .expect_code(exit::OK);
    let output = worker.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(0));
    let status = project.run_backfill(&["status", "two", "--json"]);
    let doc: serde_json::Value = serde_json::from_str(&status.stdout()).unwrap();
    assert_eq!(doc["jobs"][0]["state"], "paused", "{doc}");
    assert_eq!(doc["jobs"][0]["leases"], serde_json::json!([]), "{doc}");
    // Resumed, the job verifies the range its last worker did not, and completes.
    project
        .run_backfill(&["resume", "two"])
        .expect_code(exit::OK);
    project.run_backfill(&["run", "two"]).expect_code(exit::OK);
    assert_eq!(not_once(&project).await, 0);
}

#[tokio::test]
async fn more_workers_than_the_server_has_room_for_start_fewer_and_finish() {
    let project = Project::new().await;
    table_t(&project, 3000).await;
    slow_job(&project, "many", "t", "ranges = 64\n");
    let run = project.run_backfill(&["run", "many", "--workers", "256"]);
    run.expect_code(exit::OK);
    assert!(
        run.stderr()
            .contains("256 workers asked for, but the server has"),
        "{}",
        run.stderr()
    );
    assert!(
        !run.stderr().contains("too many clients"),
        "{}",
        run.stderr()
    );
    assert_eq!(not_once(&project).await, 0);
}

/// A job's `set`, `where` and `values` are SQL pasted into each batch: a fragment that is not
/// exactly what its key names is refused before anything runs, and a comment cannot swallow
/// the batch's range (issue "Do no harm", point 3).
#[tokio::test]
async fn a_trailing_comment_in_set_stays_inside_its_batch() {
    let project = Project::new().await;
    table_t(&project, 1000).await;
    project.job(
        "bump",
        "name = \"bump\"\ntable = \"t\"\nkey = [\"id\"]\nset = \"n = n + 1 -- bump\"\n\
         where = \"n = 0 -- only fresh rows\"\n\
         batch_size = 100\nmin_batch_size = 100\nmax_batch_size = 100\n",
    );
    let plan = project.run_backfill(&["plan", "bump"]);
    plan.expect_code(exit::OK);
    assert!(!plan.stdout().contains("-- bump"), "{}", plan.stdout());
    let run = project.run_backfill(&["run", "bump"]);
    run.expect_code(exit::OK);
    assert!(
        run.stdout().contains("1000 row(s) updated"),
        "{}",
        run.stdout()
    );
    assert_eq!(
        not_once(&project).await,
        0,
        "rows updated more or less than once"
    );
}

#[tokio::test]
async fn fragments_that_escape_their_place_are_refused_before_anything_runs() {
    let project = Project::new().await;
    table_t(&project, 200).await;
    project
        .db
        .exec("CREATE TABLE t_copy (id bigint PRIMARY KEY, n int)")
        .await;
    for (name, spec, says) in [
        (
            "escape",
            "set = \"n = n + 1\"\nwhere = \"n = 5) OR (true\"\n",
            "`where` is not valid SQL",
        ),
        (
            "stacked",
            "set = \"n = n + 1\"\nwhere = \"true; DELETE FROM t\"\n",
            "`where`",
        ),
        (
            "ordered",
            "set = \"n = n + 1\"\nwhere = \"true ORDER BY 1\"\n",
            "`where` must be one condition",
        ),
        (
            "wider",
            "set = \"n = 1 WHERE true\"\n",
            "`set` must be a list of assignments",
        ),
        (
            "rekey",
            "set = \"id = id + 1, n = n + 1\"\n",
            "`set` assigns key column \"id\"",
        ),
        (
            "rekey_quoted",
            "set = \"\\\"id\\\" = 7\"\n",
            "`set` assigns key column \"id\"",
        ),
        (
            "values",
            "action = \"copy\"\ninto = \"t_copy\"\ncolumns = [\"id\", \"n\"]\nvalues = [\"id\", \"n -- x\\n) SELECT 1\"]\n",
            "`values`",
        ),
    ] {
        project.job(
            name,
            &format!("name = \"{name}\"\ntable = \"t\"\nkey = [\"id\"]\n{spec}"),
        );
        for command in ["plan", "run"] {
            let run = project.run_backfill(&[command, name]);
            run.expect_code(exit::INVALID_INPUT);
            assert!(
                run.stderr().contains(says),
                "{name} {command}: {}",
                run.stderr()
            );
        }
    }
    assert_eq!(
        project
            .db
            .scalar("SELECT count(*) FROM t WHERE n <> 0")
            .await,
        0
    );
    assert_eq!(project.db.scalar("SELECT count(*) FROM t_copy").await, 0);
    assert_eq!(
        project
            .db
            .scalar("SELECT count(*) FROM pg_tables WHERE schemaname = 'sluice' AND tablename = 'backfill_jobs'")
            .await,
        0,
        "a refused job registered"
    );
}

/// A job on sluice's own tables could empty the history or open other jobs' gates; one on the
/// catalogs is never meant (point 5).
#[tokio::test]
async fn jobs_on_sluices_own_tables_and_the_catalogs_are_refused() {
    let project = Project::new().await;
    project.write(
        "0001_t.sql",
        "CREATE TABLE t (id bigint PRIMARY KEY, n int NOT NULL DEFAULT 0);\n",
    );
    project.run(&["up"]).expect_code(exit::OK);
    for (name, table) in [
        ("history", "sluice.migrations"),
        ("catalog", "pg_catalog.pg_class"),
        ("info", "information_schema.tables"),
    ] {
        project.job(
            name,
            &format!(
                "name = \"{name}\"\ntable = \"{table}\"\nkey = [\"version\"]\naction = \"delete\"\nwhere = \"true\"\n"
            ),
        );
        let run = project.run_backfill(&["run", name]);
        run.expect_code(exit::INVALID_INPUT);
        assert!(
            run.stderr().contains("never changes those"),
            "{}",
            run.stderr()
        );
    }
    // Copying into sluice's tables is refused the same way.
    project.job(
        "into_history",
        "name = \"into_history\"\ntable = \"t\"\nkey = [\"id\"]\naction = \"copy\"\ninto = \"sluice.migrations\"\n",
    );
    project
        .run_backfill(&["run", "into_history"])
        .expect_code(exit::INVALID_INPUT);
    // A schema of sluice's own under another name (--schema) too.
    project
        .db
        .exec("CREATE SCHEMA ops; CREATE TABLE ops.ledger (id bigint PRIMARY KEY, n int)")
        .await;
    project.job(
        "ops",
        "name = \"ops\"\ntable = \"ops.ledger\"\nkey = [\"id\"]\nset = \"n = 1\"\n",
    );
    let run = project.run_backfill(&["--schema", "ops", "run", "ops"]);
    run.expect_code(exit::INVALID_INPUT);
    assert!(run.stderr().contains("--schema"), "{}", run.stderr());
    assert_eq!(
        project
            .db
            .scalar("SELECT count(*) FROM sluice.migrations")
            .await,
        1,
        "the history lost rows"
    );
}

/// Row-level security that applies to the job's role: the job saw 100 of 2,000 rows and
/// called itself completed and verified, opening the gate. Refused at start (issue "Do no
/// harm", point 6).
#[tokio::test]
async fn a_job_that_row_level_security_would_blind_is_refused() {
    let project = Project::new().await;
    let role = format!("rls_{}", std::process::id());
    project
        .db
        .exec(&format!(
            "CREATE TABLE t (id bigint PRIMARY KEY, n int NOT NULL DEFAULT 0, tenant int NOT NULL);
             INSERT INTO t (id, tenant) SELECT g, g % 20 FROM generate_series(1, 2000) g;
             ALTER TABLE t ENABLE ROW LEVEL SECURITY;
             ALTER TABLE t FORCE ROW LEVEL SECURITY;
             CREATE POLICY one_tenant ON t USING (tenant = 1);
             DROP ROLE IF EXISTS {role};
             CREATE ROLE {role} LOGIN PASSWORD 'rls-pw';
             GRANT ALL ON SCHEMA public TO {role};
             GRANT CREATE ON DATABASE \"{db}\" TO {role};
             ALTER TABLE t OWNER TO {role};",
            db = project.db.name
        ))
        .await;
    project.job(
        "bump",
        "name = \"bump\"\ntable = \"t\"\nkey = [\"id\"]\nset = \"n = n + 1\"\nwhere = \"n = 0\"\n",
    );
    let mut url = url::Url::parse(&project.db.url).unwrap();
    url.set_username(&role).unwrap();
    url.set_password(Some("rls-pw")).unwrap();
    let run = sluice_tests::Run(
        project
            .backfill()
            .env("DATABASE_URL", url.as_str())
            .args(["run", "bump"])
            .output()
            .unwrap(),
    );
    run.expect_code(exit::INVALID_INPUT);
    assert!(
        run.stderr().contains("row-level security"),
        "{}",
        run.stderr()
    );
    assert!(!run.stdout().contains("verified"), "{}", run.stdout());
    assert_eq!(
        project
            .db
            .scalar("SELECT count(*) FROM t WHERE n <> 0")
            .await,
        0
    );
    // Without FORCE the owner is exempt: the job sees and changes every row.
    project
        .db
        .exec("ALTER TABLE t NO FORCE ROW LEVEL SECURITY")
        .await;
    let run = sluice_tests::Run(
        project
            .backfill()
            .env("DATABASE_URL", url.as_str())
            .args(["run", "bump"])
            .output()
            .unwrap(),
    );
    run.expect_code(exit::OK);
    assert_eq!(
        project
            .db
            .scalar("SELECT count(*) FROM t WHERE n <> 1")
            .await,
        0
    );
    project
        .db
        .exec(&format!(
            "ALTER TABLE t OWNER TO CURRENT_USER; DROP SCHEMA IF EXISTS sluice CASCADE; \
             REVOKE ALL ON SCHEMA public FROM {role}; REVOKE ALL ON DATABASE \"{db}\" FROM {role}; \
             DROP ROLE {role}",
            db = project.db.name
        ))
        .await;
}
