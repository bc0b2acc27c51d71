//! `sluice trace`: the locks and rewrites of pending migrations, seen on a scratch database and
//! sized against the real one, which the trace never changes or locks.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::Value;
use sluice_common::exit;
use sluice_tests::{Project, catalog};
use sqlx::Connection;

/// A real database with `big` (50,000 rows, analysed) applied, and four pending migrations.
async fn project() -> Project {
    let project = Project::new().await;
    project.write(
        "0001_big.sql",
        "CREATE TABLE big (id bigint PRIMARY KEY, a int NOT NULL, b int);",
    );
    project.run(&["up"]).expect_code(exit::OK);
    project
        .db
        .exec("INSERT INTO big SELECT g, g, g FROM generate_series(1, 50000) g; ANALYZE big;")
        .await;
    project.write(
        "0002_type.sql",
        "ALTER TABLE big ALTER COLUMN a TYPE bigint;",
    );
    project.write("0003_add.sql", "ALTER TABLE big ADD COLUMN c int;");
    project.write(
        "0004_index.sql",
        "-- sluice:no-transaction\nCREATE INDEX CONCURRENTLY big_b ON big (b);\n",
    );
    project.write(
        "0005_check.sql",
        "-- sluice:no-transaction\n\
         ALTER TABLE big ADD CONSTRAINT b_positive CHECK (b > 0) NOT VALID;\n\
         ALTER TABLE big VALIDATE CONSTRAINT b_positive;\n",
    );
    project
}

/// The locks of a traced statement, as (relation, mode, blocks, held).
fn locks(statement: &Value) -> Vec<(String, String, String, String)> {
    statement["locks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            let text = |k: &str| l[k].as_str().unwrap().to_owned();
            (text("relation"), text("mode"), text("blocks"), text("held"))
        })
        .collect()
}

fn work(statement: &Value) -> Vec<(String, String)> {
    statement["work"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| {
            (
                w["kind"].as_str().unwrap().to_owned(),
                w["relation"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn lock(mode: &str, blocks: &str, held: &str) -> (String, String, String, String) {
    ("public.big".into(), mode.into(), blocks.into(), held.into())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trace_reports_real_modes_rewrites_and_sizes_and_leaves_the_real_database_alone() {
    let project = project().await;
    // NOT NULL as sluice's contracts set it (a validated CHECK proves it: no scan), and plainly.
    project.write(
        "0006_proven.sql",
        "-- sluice:no-transaction\n\
         ALTER TABLE big ADD CONSTRAINT b_not_null CHECK (b IS NOT NULL) NOT VALID;\n\
         ALTER TABLE big VALIDATE CONSTRAINT b_not_null;\n\
         ALTER TABLE big ALTER COLUMN b SET NOT NULL;\n",
    );
    project.write(
        "0007_plain.sql",
        "ALTER TABLE big ALTER COLUMN c SET NOT NULL;",
    );
    let mut conn = project.db.connect().await;
    let schema_before = catalog::snapshot(&mut conn, "public").await;

    // Watch the real database while the trace runs: no lock on any of its tables.
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (stop, url) = (Arc::clone(&stop), project.db.url.clone());
        tokio::spawn(async move {
            let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
            let mut seen: Vec<String> = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                // sluice's sessions only (autovacuum works on `big` too), and outside sluice's
                // own schema (with no files named, the trace reads its history, as `status`).
                let locks: Vec<String> = sqlx::query_scalar(
                    "SELECT l.mode || ' on ' || c.relname FROM pg_locks l
                     JOIN pg_class c ON c.oid = l.relation
                     JOIN pg_stat_activity a ON a.pid = l.pid
                     WHERE l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
                       AND a.application_name LIKE 'sluice%'
                       AND c.relnamespace NOT IN ('pg_catalog'::regnamespace, 'sluice'::regnamespace)",
                )
                .fetch_all(&mut conn)
                .await
                .unwrap();
                seen.extend(locks);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            conn.close().await.unwrap();
            seen
        })
    };
    let child = project
        .sluice()
        .args(["trace", "--json", "--max-rows", "10000"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let traced = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    stop.store(true, Ordering::SeqCst);
    let locks_on_real = watcher.await.unwrap();
    let run = sluice_tests::Run(traced);
    run.expect_code(exit::BLOCKED);
    let doc: Value = serde_json::from_str(&run.stdout()).unwrap();
    let migrations = doc["migrations"].as_array().unwrap();
    let ids: Vec<&str> = migrations
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [
            "0002_type",
            "0003_add",
            "0004_index",
            "0005_check",
            "0006_proven",
            "0007_plain"
        ]
    );

    let retype = &migrations[0]["statements"][0];
    assert_eq!(
        locks(retype),
        [lock(
            "AccessExclusiveLock",
            "reads-and-writes",
            "transaction"
        )]
    );
    assert_eq!(work(retype), [("rewrite".into(), "public.big".into())]);
    assert_eq!(
        retype["sizes"]["public.big"]["rows"], 50000,
        "the real table's estimate"
    );
    assert!(retype["estimate_seconds"].as_f64().unwrap() > 0.0);
    assert_eq!(retype["too_long"].as_array().unwrap().len(), 1);

    let add = &migrations[1]["statements"][0];
    assert_eq!(
        locks(add),
        [lock(
            "AccessExclusiveLock",
            "reads-and-writes",
            "transaction"
        )]
    );
    assert!(work(add).is_empty(), "no rewrite: brief");
    assert!(add["too_long"].as_array().unwrap().is_empty());

    let index = &migrations[2]["statements"][0];
    assert_eq!(index["watched"], true);
    assert_eq!(
        locks(index),
        [lock(
            "ShareUpdateExclusiveLock",
            "schema-changes",
            "statement"
        )],
        "writes are not blocked"
    );
    assert_eq!(work(index), [("index-build".into(), "public.big".into())]);

    let not_valid = &migrations[3]["statements"][0];
    let validate = &migrations[3]["statements"][1];
    assert_eq!(
        locks(not_valid),
        [lock("AccessExclusiveLock", "reads-and-writes", "statement")]
    );
    assert!(work(not_valid).is_empty());
    assert_eq!(
        locks(validate),
        [lock(
            "ShareUpdateExclusiveLock",
            "schema-changes",
            "statement"
        )]
    );
    assert_eq!(work(validate), [("scan".into(), "public.big".into())]);
    assert!(validate["too_long"].as_array().unwrap().is_empty());

    let proven = &migrations[4]["statements"][2];
    assert_eq!(
        locks(proven),
        [lock("AccessExclusiveLock", "reads-and-writes", "statement")]
    );
    assert!(
        work(proven).is_empty(),
        "the validated CHECK spares the scan"
    );
    let plain = &migrations[5]["statements"][0];
    assert_eq!(work(plain), [("scan".into(), "public.big".into())]);
    assert_eq!(plain["too_long"].as_array().unwrap().len(), 1, "{plain}");

    // The real database: same schema, same history, no lock taken, no session or scratch
    // database left behind.
    assert!(locks_on_real.is_empty(), "{locks_on_real:?}");
    assert_eq!(catalog::snapshot(&mut conn, "public").await, schema_before);
    assert_eq!(
        project
            .db
            .scalar("SELECT count(*) FROM sluice.migrations")
            .await,
        1
    );
    let (sessions, scratch): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND application_name LIKE 'sluice%'),
                (SELECT count(*) FROM pg_database WHERE datname LIKE $1)",
    )
    .bind(format!("sluice\\_trace\\_{pid}\\_%"))
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(sessions, 0, "a session of the trace is still there");
    assert_eq!(scratch, 0, "the scratch database was not dropped");
}

#[tokio::test]
async fn the_human_and_github_formats_say_it_and_an_approval_lets_it_through() {
    let project = project().await;
    let human = project.run(&["trace", "--max-rows", "10000", "migrations/0002_type.sql"]);
    human.expect_code(exit::BLOCKED);
    let text = human.stdout();
    assert!(
        text.contains(
            "ACCESS EXCLUSIVE on public.big until the migration's transaction commits: blocks everything: reads and writes"
        ),
        "{text}"
    );
    assert!(text.contains("rewrites public.big (50000 rows"), "{text}");
    assert!(text.contains("(an estimate)"), "{text}");
    assert!(!text.contains("0003_add"), "only the named file is traced");

    let github = project.run(&["trace", "--format", "github", "--max-rows", "10000"]);
    github.expect_code(exit::BLOCKED);
    assert!(
        github
            .stdout()
            .contains("::error file=migrations/0002_type.sql,line=1,title=blocking-lock-on-large-table::ACCESS EXCLUSIVE"),
        "{}",
        github.stdout()
    );

    // Above the threshold, or approved, the same trace passes.
    project.run(&["trace"]).expect_code(exit::OK);
    project.write(
        "0002_type.sql",
        "-- sluice:approve blocking-lock-on-large-table reason: runs in the Sunday window\n\
         -- sluice:approve changing-column-type reason: runs in the Sunday window\n\
         ALTER TABLE big ALTER COLUMN a TYPE bigint;",
    );
    let approved = project.run(&["trace", "--max-rows", "10000"]);
    approved.expect_code(exit::OK);
    assert!(
        approved
            .stdout()
            .contains("approved: ACCESS EXCLUSIVE on public.big")
    );

    // With up --dry-run, after the SQL that would run.
    let dry = project.run(&["up", "--dry-run", "--trace", "--max-rows", "10000"]);
    dry.expect_code(exit::OK);
    assert!(
        dry.stdout()
            .contains("ALTER TABLE big ALTER COLUMN a TYPE bigint")
    );
    assert!(
        dry.stdout().contains("4 migration(s) traced"),
        "{}",
        dry.stdout()
    );
    assert_eq!(
        project
            .db
            .scalar("SELECT count(*) FROM sluice.migrations")
            .await,
        1
    );
}
