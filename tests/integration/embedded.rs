//! Migrations inside an application: `sluice-migrate` with its migrations compiled in, and the
//! example application that embeds the repository's `migrations/`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use sluice_common::exit;
use sluice_migrate::{Database, Embedded, Error, Migrator, Policy};
use sluice_tests::{Project, Run, TestDb, bin};
use sqlx::postgres::PgPoolOptions;

static GATED: Embedded = sluice_migrate::embed_migrations!("embedded/gated");
static BEHIND: Embedded = sluice_migrate::embed_migrations!("embedded/behind");
static FLYWAY: Embedded = sluice_migrate::embed_migrations!("embedded/flyway");

fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The example application, started in `cwd` (a directory without `migrations/`) with a clean
/// environment plus `env`.
fn example_app(cwd: &Path, url: &str, env: &[(&str, &str)]) -> Command {
    let mut command = Command::new(bin::example_app());
    command
        .current_dir(cwd)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("DATABASE_URL", url)
        .envs(env.iter().copied());
    command
}

/// Runs `command` to completion.
fn run(command: &mut Command) -> Run {
    Run(command.output().expect("run"))
}

async fn exists(db: &TestDb, relation: &str) -> bool {
    db.scalar(&format!(
        "SELECT (to_regclass('{relation}') IS NOT NULL)::int::bigint"
    ))
    .await
        == 1
}

#[tokio::test]
async fn the_example_applies_at_start_up_and_the_cli_agrees() {
    let db = TestDb::new().await;
    let nowhere = tempfile::tempdir().unwrap();
    let output = run(&mut example_app(
        nowhere.path(),
        &db.url,
        &[("AUTO_MIGRATE", "true")],
    ));
    output.expect_code(exit::OK);
    let stdout = output.stdout();
    assert_eq!(stdout.lines().count(), 1, "one line: {stdout}");
    assert!(stdout.contains("applied 2 migration(s) now"), "{stdout}");
    // The contract waits for its backfill without stopping the start, and says so.
    assert!(
        stdout.contains("accounts_email_normalized_contract waits: backfill job accounts_email_normalized has not run yet"),
        "{stdout}"
    );
    assert!(exists(&db, "public.accounts").await);

    let status = run(Command::new(bin::sluice())
        .current_dir(repository())
        .env("DATABASE_URL", &db.url)
        .args(["status", "--json"]));
    status.expect_code(exit::OK);
    let doc: serde_json::Value = serde_json::from_str(&status.stdout()).unwrap();
    let rows = doc["migrations"].as_array().unwrap();
    assert_eq!(rows.len(), 3, "{doc}");
    for row in &rows[..2] {
        assert_eq!(row["state"], "applied", "{doc}");
        assert_eq!(row["checksum"]["applied"], row["checksum"]["file"], "{doc}");
        assert!(
            row["applied_by"]["program"]
                .as_str()
                .unwrap()
                .starts_with("sluice-migrate")
        );
    }
    assert_eq!(rows[2]["state"], "pending", "{doc}");

    // Started again: nothing to apply, same line otherwise.
    let again = run(&mut example_app(
        nowhere.path(),
        &db.url,
        &[("AUTO_MIGRATE", "true")],
    ));
    again.expect_code(exit::OK);
    assert!(again.stdout().contains("applied 0 migration(s) now"));
}

#[tokio::test]
async fn the_example_refuses_to_start_while_anything_is_pending_and_changes_nothing() {
    let db = TestDb::new().await;
    let nowhere = tempfile::tempdir().unwrap();
    for env in [vec![], vec![("AUTO_MIGRATE", "false")]] {
        let output = run(&mut example_app(nowhere.path(), &db.url, &env));
        output.expect_code(exit::PENDING);
        let stderr = output.stderr();
        assert!(
            stderr.contains("2 migration(s) not applied: 20261101090000_create_accounts, 20261102090000_accounts_email_normalized_expand"),
            "{stderr}"
        );
        assert!(output.stdout().is_empty());
    }
    let careless = run(&mut example_app(
        nowhere.path(),
        &db.url,
        &[("AUTO_MIGRATE", "ture")],
    ));
    careless.expect_code(exit::USAGE);
    assert!(
        careless
            .stderr()
            .contains("AUTO_MIGRATE=\"ture\" is not a yes or no")
    );
    // Nothing was created: not the application's tables, not even sluice's.
    assert!(!exists(&db, "public.accounts").await);
    assert!(!exists(&db, "sluice.migrations").await);
}

#[tokio::test]
async fn eight_instances_starting_at_once_all_start_and_apply_each_migration_once() {
    let db = TestDb::new().await;
    let nowhere = tempfile::tempdir().unwrap();
    let children: Vec<_> = (0..8)
        .map(|_| {
            example_app(nowhere.path(), &db.url, &[("AUTO_MIGRATE", "true")])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut applied_now = 0;
    for child in children {
        let output = Run(child.wait_with_output().unwrap());
        output.expect_code(exit::OK);
        let stdout = output.stdout();
        let count: usize = stdout
            .split("applied ")
            .nth(1)
            .and_then(|rest| rest.split(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no count in {stdout}"));
        applied_now += count;
    }
    assert_eq!(
        applied_now, 2,
        "each migration applied by exactly one instance"
    );
    assert_eq!(db.scalar("SELECT count(*) FROM sluice.migrations").await, 2);
}

/// A pool the way an application builds one; sluice must not take connections from it.
fn lazy_pool(db: &TestDb) -> sqlx::PgPool {
    let options = Database::from_url(&db.url).unwrap();
    PgPoolOptions::new()
        .max_connections(2)
        .connect_lazy_with(options.connect_options().clone())
}

#[tokio::test]
async fn a_closed_gate_defers_its_contract_and_what_follows_it_stops_the_start() {
    let project = Project::new().await;
    let pool = lazy_pool(&project.db);

    let gated = Migrator::new(&GATED).unwrap();
    let report = gated.startup(&pool, Policy::Apply).await.unwrap();
    assert_eq!(report.applied.len(), 1);
    assert_eq!(report.status.deferred.len(), 1);
    let waiting = &report.status.deferred[0];
    assert_eq!(waiting.migration.id, "0002_notes_body_len_contract");
    assert_eq!(waiting.waiting_for[0].job, "notes_body_len");
    assert_eq!(waiting.waiting_for[0].state, None, "never ran");
    assert!(report.status.may_start() && !report.status.is_current());
    assert_eq!(pool.size(), 0, "sluice opened connections of its own");
    gated
        .check(&pool)
        .await
        .expect("a deferred contract does not stop a start");

    // A build with a migration ordered after the contract may not start, auto-migrate or not.
    let behind = Migrator::new(&BEHIND).unwrap();
    for policy in [Policy::Apply, Policy::Check] {
        match behind.startup(&pool, policy).await {
            Err(Error::Pending {
                pending,
                waiting_for_backfill,
                ..
            }) => {
                assert_eq!(pending, ["0003_notes_tags"]);
                assert_eq!(waiting_for_backfill, ["0002_notes_body_len_contract"]);
            }
            other => panic!("expected Pending, got {other:?}"),
        }
    }

    project.job(
        "notes_body_len",
        "name = \"notes_body_len\"\ntable = \"public.notes\"\nkey = [\"id\"]\n\
         set = \"body_len = length(body)\"\nwhere = \"body_len IS NULL\"\nbatch_size = 100\n",
    );
    project
        .run_backfill(&["run", "notes_body_len"])
        .expect_code(exit::OK);
    let report = behind.startup(&pool, Policy::Apply).await.unwrap();
    let ids: Vec<&str> = report.applied.iter().map(|(m, _)| m.id.as_str()).collect();
    assert_eq!(ids, ["0002_notes_body_len_contract", "0003_notes_tags"]);
    assert!(report.status.is_current(), "{}", report.status);
    assert_eq!(
        project
            .db
            .scalar("SELECT count(*) FROM notes WHERE body_len IS NULL")
            .await,
        0
    );
}

#[tokio::test]
async fn edited_and_missing_migrations_stop_a_start_naming_them() {
    let project = Project::new().await;
    // Another build applied an edited 0001 and a migration this build does not have.
    project.write(
        "0001_create_notes.sql",
        "CREATE TABLE notes (id bigint PRIMARY KEY, body text NOT NULL, body_len integer);",
    );
    project.write("0009_other_build.sql", "CREATE TABLE other (id int);");
    project.run(&["up"]).expect_code(exit::OK);

    let pool = lazy_pool(&project.db);
    let migrator = Migrator::new(&GATED).unwrap();
    for result in [
        migrator.check(&pool).await.map(|_| ()),
        migrator.run(&pool).await.map(|_| ()),
        migrator.startup(&pool, Policy::Apply).await.map(|_| ()),
    ] {
        let error = result.unwrap_err();
        assert_eq!(error.exit_code(), exit::HISTORY_DRIFT);
        let message = error.to_string();
        match error {
            Error::Drift {
                edited, missing, ..
            } => {
                assert_eq!(edited, ["0001_create_notes"], "{message}");
                // History keeps the version as a number: without the file, no zero padding.
                assert_eq!(missing, ["9_other_build"], "{message}");
            }
            other => panic!("expected Drift, got {other:?}"),
        }
        assert!(
            message.contains("0001_create_notes was applied with checksum"),
            "{message}"
        );
    }
    assert!(!exists(&project.db, "public.notes_tags").await);
}

#[tokio::test]
async fn a_held_lock_and_an_unreachable_database_are_typed_and_keep_the_password_out() {
    let db = TestDb::new().await;
    let pool = lazy_pool(&db);
    let mut holder = db.connect().await;
    let key = sluice_common::lock::lock_key("sluice:runner:sluice");
    sqlx::query("SELECT pg_advisory_lock($1)")
        .bind(key)
        .execute(&mut holder)
        .await
        .unwrap();
    let migrator = Migrator::new(&GATED)
        .unwrap()
        .lock_wait(Duration::from_millis(300));
    let error = migrator.run(&pool).await.unwrap_err();
    assert!(matches!(error, Error::Locked(_)), "{error:?}");
    assert_eq!(error.exit_code(), exit::LOCK_HELD);
    assert!(
        !exists(&db, "public.notes").await,
        "nothing ran without the lock"
    );

    let unreachable = Database::from_url("postgres://app:s3cret%2Fpw@127.0.0.1:1/app").unwrap();
    let shown = format!("{unreachable:?}");
    assert!(
        shown.contains("127.0.0.1:1") && !shown.contains("s3cret"),
        "{shown}"
    );
    let error = migrator
        .clone()
        .connect_wait(Duration::from_millis(500))
        .status(unreachable)
        .await
        .unwrap_err();
    assert!(matches!(error, Error::Database(_)), "{error:?}");
    assert_eq!(error.exit_code(), exit::DATABASE_UNAVAILABLE);
    let shown = format!("{error} {error:?}");
    assert!(shown.contains("127.0.0.1:1"), "{shown}");
    assert!(!shown.contains("s3cret"), "{shown}");

    let malformed = Database::from_url("postgres://app:pa@ss@db/app").unwrap_err();
    assert!(
        !format!("{malformed} {malformed:?}").contains("pa@ss"),
        "{malformed}"
    );
}

#[tokio::test]
async fn sluice_check_startup_judges_as_an_application_start_up_does() {
    let project = Project::new().await;
    for file in GATED.files() {
        project.write(file.path, file.text);
    }
    project.run(&["up"]).expect_code(exit::BLOCKED);
    project.run(&["check"]).expect_code(exit::PENDING);
    let ready = project.run(&["check", "--startup"]);
    ready.expect_code(exit::OK);
    assert!(
        ready
            .stdout()
            .contains("ready to start: 1 migration(s) applied, 1 waiting for a backfill"),
        "{}",
        ready.stdout()
    );
    assert!(
        ready
            .stdout()
            .contains("backfill job notes_body_len has not run yet")
    );

    project.write(
        "0003_notes_tags.sql",
        "ALTER TABLE notes ADD COLUMN tags text[];",
    );
    let behind = project.run(&["check", "--startup"]);
    behind.expect_code(exit::PENDING);
    assert!(
        behind
            .stdout()
            .contains("0003_notes_tags: pending behind a migration that waits for its backfill"),
        "{}",
        behind.stdout()
    );
}

/// An application embedding a Flyway directory: a start-up check counts a repeatable migration
/// changed since it was applied as pending, and a run applies it again.
#[tokio::test]
async fn an_embedded_repeatable_migration_changed_since_it_was_applied_is_pending() {
    let project = Project::new().await;
    // Another build applied the same table and an older text of the view.
    project.write(
        "V1__notes.sql",
        include_str!("../embedded/flyway/V1__notes.sql"),
    );
    project.write(
        "R__note_lengths.sql",
        "CREATE OR REPLACE VIEW note_lengths AS SELECT id FROM notes;\n",
    );
    project.run(&["up"]).expect_code(exit::OK);

    let pool = lazy_pool(&project.db);
    let migrator = Migrator::new(&FLYWAY).unwrap();
    let error = migrator.check(&pool).await.unwrap_err();
    assert_eq!(error.exit_code(), exit::PENDING, "{error}");
    match &error {
        Error::Pending { pending, .. } => assert_eq!(pending, &["R__note_lengths"]),
        other => panic!("expected Pending, got {other:?}"),
    }
    let report = migrator.run(&pool).await.unwrap();
    let applied: Vec<&str> = report
        .applied
        .iter()
        .map(|(id, _)| id.id.as_str())
        .collect();
    assert_eq!(applied, ["R__note_lengths"]);
    migrator.check(&pool).await.unwrap();
    assert_eq!(
        project
            .db
            .scalar(
                "SELECT count(*) FROM information_schema.columns WHERE table_name = 'note_lengths'"
            )
            .await,
        2,
        "the view as this build has it"
    );
}

/// Rolling an application back after a newer build's expand migration: the older example
/// build refuses by default, starts with `ALLOW_NEWER_MIGRATIONS`, and refuses again when a
/// migration it does not know sits between ones it does. `sluice check --startup` agrees.
#[tokio::test]
async fn an_older_build_starts_on_a_newer_builds_history_only_when_allowed() {
    let project = Project::new().await;
    // The newer build: the repository's migrations and job, and one more expand migration.
    for entry in std::fs::read_dir(repository().join("migrations")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_owned();
        project.write(&name, &std::fs::read_to_string(&path).unwrap());
    }
    project.job(
        "accounts_email_normalized",
        &std::fs::read_to_string(repository().join("jobs/accounts_email_normalized.toml")).unwrap(),
    );
    project.write(
        "20261201090000_accounts_nickname_expand.sql",
        "ALTER TABLE accounts ADD COLUMN nickname text;",
    );
    project.run(&["up"]).expect_code(exit::BLOCKED);
    Run(project
        .backfill()
        .args(["run", "accounts_email_normalized"])
        .output()
        .unwrap())
    .expect_code(exit::OK);
    project.run(&["up"]).expect_code(exit::OK);
    let applied = || project.db.scalar("SELECT count(*) FROM sluice.migrations");
    assert_eq!(applied().await, 4);

    // The older build: the example application, which embeds the first three only.
    let nowhere = tempfile::tempdir().unwrap();
    let start = |env: &[(&str, &str)]| run(&mut example_app(nowhere.path(), &project.db.url, env));
    let strict = start(&[("AUTO_MIGRATE", "true")]);
    strict.expect_code(exit::HISTORY_DRIFT);
    let stderr = strict.stderr();
    assert!(
        stderr.contains("20261201090000_accounts_nickname_expand is applied but not embedded")
            && stderr.contains("Migrator::allow_newer lets it start"),
        "{stderr}"
    );
    for policy in ["true", "false"] {
        let allowed = start(&[("AUTO_MIGRATE", policy), ("ALLOW_NEWER_MIGRATIONS", "true")]);
        allowed.expect_code(exit::OK);
        assert!(
            allowed.stdout().contains("3 migration(s) applied")
                && allowed
                    .stdout()
                    .contains("1 applied by a newer build (allowed)"),
            "{}",
            allowed.stdout()
        );
    }
    assert_eq!(applied().await, 4, "the older build applied nothing");
    let careless = start(&[("ALLOW_NEWER_MIGRATIONS", "sure")]);
    careless.expect_code(exit::USAGE);
    assert!(careless.stderr().contains("ALLOW_NEWER_MIGRATIONS"));

    // The same judgement from the command line, with the older build's files.
    let check = |extra: &[&str]| {
        let mut command = Command::new(bin::sluice());
        command
            .current_dir(repository())
            .env("DATABASE_URL", &project.db.url)
            .args(["check", "--startup"])
            .args(extra);
        run(&mut command)
    };
    let refused = check(&[]);
    refused.expect_code(exit::HISTORY_DRIFT);
    assert!(
        refused.stderr().contains("--allow-newer lets it"),
        "{}",
        refused.stderr()
    );
    let ready = check(&["--allow-newer"]);
    ready.expect_code(exit::OK);
    assert!(
        ready
            .stdout()
            .contains("20261201090000_accounts_nickname_expand: applied by a newer build (allowed")
            && ready
                .stdout()
                .contains("ready to start: 3 migration(s) applied, 1 newer than this directory"),
        "{}",
        ready.stdout()
    );

    // A migration the older build does not know, ordered between ones it does: never allowed.
    project.write(
        "20261101100000_accounts_between.sql",
        "ALTER TABLE accounts ADD COLUMN between_builds int;",
    );
    project
        .run(&["up", "--allow-out-of-order"])
        .expect_code(exit::OK);
    let between = start(&[("ALLOW_NEWER_MIGRATIONS", "true")]);
    between.expect_code(exit::HISTORY_DRIFT);
    assert!(
        between
            .stderr()
            .contains("20261101100000_accounts_between is applied but not embedded")
            && !between.stderr().contains("allow_newer lets it"),
        "{}",
        between.stderr()
    );
    check(&["--allow-newer"]).expect_code(exit::HISTORY_DRIFT);
}

/// An application run as an environment of `sluice.toml`: where `auto_apply = false`,
/// `AUTO_MIGRATE=true` checks instead of applying and says why; elsewhere it applies, with the
/// environment's settings.
#[tokio::test]
async fn an_application_in_an_environment_applies_only_where_it_may() {
    let db = TestDb::new().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("sluice.toml"),
        "[environments.production]\nauto_apply = false\n\n\
         [environments.preview]\nschema = \"preview_sluice\"\n",
    )
    .unwrap();
    let start = |env: &str| {
        run(&mut example_app(
            dir.path(),
            &db.url,
            &[("AUTO_MIGRATE", "true"), ("SLUICE_ENV", env)],
        ))
    };
    let production = start("production");
    production.expect_code(exit::PENDING);
    assert!(
        production
            .stderr()
            .contains("environment production does not let an application apply migrations (auto_apply = false)"),
        "{}",
        production.stderr()
    );
    assert!(!exists(&db, "public.accounts").await, "nothing applied");

    let preview = start("preview");
    preview.expect_code(exit::OK);
    assert!(
        preview.stdout().contains("applied 2 migration(s) now"),
        "{}",
        preview.stdout()
    );
    assert!(
        exists(&db, "preview_sluice.migrations").await,
        "the environment's schema"
    );

    let unknown = start("staging");
    unknown.expect_code(exit::INVALID_INPUT);
    assert!(
        unknown.stderr().contains("no environment \"staging\""),
        "{}",
        unknown.stderr()
    );
}
