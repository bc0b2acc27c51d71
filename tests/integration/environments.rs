//! Environments and the release workflow (issue 30): `[environments.<name>]` in `sluice.toml`
//! chosen with `--env` / `SLUICE_ENV`, their rules, and what an application may do in them.

use sluice_common::exit;
use sluice_tests::{Project, Run, TestDb};

/// A project's `sluice.toml`: staging reads its own URL from the file, production from
/// `PROD_DATABASE_URL` and guards its runs.
fn write_config(project: &Project, staging_url: &str) {
    std::fs::write(
        project.path().join("sluice.toml"),
        format!(
            r#"
[runner]
lock_wait = "1m"

[backfill]
pace = "auto"

[environments.staging]
database_url = "{staging_url}"

[environments.production]
database_url_env = "PROD_DATABASE_URL"
require_backup = true
forbid_skip_lint = true
auto_apply = false

[environments.production.runner]
lock_timeout = "750ms"

[environments.production.backfill]
max_rows_per_second = 5000
"#
        ),
    )
    .unwrap();
}

fn migrations(project: &Project) {
    project.write("1_items.sql", "CREATE TABLE items (id bigint PRIMARY KEY);");
}

async fn applied(db: &TestDb) -> i64 {
    let exists = db
        .scalar("SELECT count(*) FROM pg_tables WHERE schemaname = 'sluice' AND tablename = 'migrations'")
        .await;
    if exists == 0 {
        return 0;
    }
    db.scalar("SELECT count(*) FROM sluice.migrations").await
}

fn line_of<'a>(text: &'a str, name: &str) -> &'a str {
    text.lines()
        .find(|line| line.split_whitespace().next() == Some(name))
        .unwrap_or_else(|| panic!("no {name} line in:\n{text}"))
}

#[tokio::test]
async fn an_environment_picks_its_url_and_settings_and_config_says_where_from() {
    let project = Project::new().await;
    let staging = TestDb::new().await;
    write_config(&project, &staging.url);
    migrations(&project);

    // Production: the URL comes from its own variable, never DATABASE_URL.
    let config = Run(project
        .sluice()
        .env("PROD_DATABASE_URL", &project.db.url)
        .args(["--env", "production", "config"])
        .output()
        .unwrap());
    config.expect_code(exit::OK);
    let text = config.stdout();
    assert!(
        text.contains("environment: production (from command line)")
            && text.contains("require_backup = true"),
        "{text}"
    );
    assert!(
        line_of(&text, "lock_timeout").contains("750ms")
            && line_of(&text, "lock_timeout").contains("(config file [environments.production])"),
        "{text}"
    );
    assert!(
        line_of(&text, "lock_wait").contains("(config file)"),
        "{text}"
    );
    assert!(
        line_of(&text, "database_url").contains("(environment)"),
        "{text}"
    );
    assert!(!text.contains("throwaway-pw"), "password shown: {text}");
    let backfill = Run(project
        .backfill()
        .args(["config"])
        .env("SLUICE_ENV", "production")
        .output()
        .unwrap());
    backfill.expect_code(exit::OK);
    let text = backfill.stdout();
    assert!(
        line_of(&text, "max_rows_per_second").contains("5000")
            && line_of(&text, "max_rows_per_second")
                .contains("(config file [environments.production])")
            && line_of(&text, "pace").contains("(config file)"),
        "{text}"
    );

    // DATABASE_URL is set (the project's), PROD_DATABASE_URL is not: no URL, and it says which.
    let unset = project.run(&["--env", "production", "status"]);
    unset.expect_code(exit::USAGE);
    assert!(
        unset.stderr().contains("set PROD_DATABASE_URL"),
        "{}",
        unset.stderr()
    );

    // Staging applies to its own database, not DATABASE_URL's.
    let up = Run(project
        .sluice()
        .env("SLUICE_ENV", "staging")
        .arg("up")
        .output()
        .unwrap());
    up.expect_code(exit::OK);
    assert_eq!(applied(&staging).await, 1);
    assert_eq!(applied(&project.db).await, 0);

    // An environment the file does not define, or a key it does not know: exit 3.
    let unknown = project.run(&["--env", "prod", "status"]);
    unknown.expect_code(exit::INVALID_INPUT);
    assert!(
        unknown.stderr().contains("no environment \"prod\"")
            && unknown.stderr().contains("production, staging"),
        "{}",
        unknown.stderr()
    );
    std::fs::write(
        project.path().join("sluice.toml"),
        "[environments.production]\nrequire_backups = true\n",
    )
    .unwrap();
    let typo = project.run(&["--env", "production", "status"]);
    typo.expect_code(exit::INVALID_INPUT);
    assert!(
        typo.stderr().contains("require_backups"),
        "{}",
        typo.stderr()
    );
}

#[tokio::test]
async fn production_refuses_a_run_without_a_backup_or_with_lint_skipped() {
    let project = Project::new().await;
    write_config(&project, "postgres://unused@127.0.0.1:1/unused");
    migrations(&project);
    let production = |args: &[&str]| {
        Run(project
            .sluice()
            .env("PROD_DATABASE_URL", &project.db.url)
            .arg("--env")
            .arg("production")
            .args(args)
            .output()
            .unwrap())
    };
    let no_backup = production(&["up"]);
    no_backup.expect_code(exit::INVALID_INPUT);
    assert!(
        no_backup
            .stderr()
            .contains("environment production requires a backup")
            && no_backup.stderr().contains("--backup DIR"),
        "{}",
        no_backup.stderr()
    );
    let skip = production(&["up", "--skip-lint"]);
    skip.expect_code(exit::INVALID_INPUT);
    assert!(
        skip.stderr().contains("forbids --skip-lint"),
        "{}",
        skip.stderr()
    );
    production(&["down", "--to", "0"]).expect_code(exit::INVALID_INPUT);
    assert_eq!(applied(&project.db).await, 0, "nothing was applied");
    // A dry run changes nothing, so it needs no backup.
    production(&["up", "--dry-run"]).expect_code(exit::OK);
    assert_eq!(applied(&project.db).await, 0);
}

/// `sluice approve` records an approval of each migration's exact checksum; where approvals
/// are required, `up` applies the approved ones before the first that is not and names the
/// rest (exit 8); an edit voids an approval; applied and unknown versions are never approved.
#[tokio::test]
async fn up_applies_only_migrations_approved_as_their_files_are_now() {
    let project = Project::new().await;
    std::fs::write(
        project.path().join("sluice.toml"),
        "[environments.production]\nrequire_approval = true\n",
    )
    .unwrap();
    project.write("1_a.sql", "CREATE TABLE a (id int);");
    project.write("2_b.sql", "CREATE TABLE b (id int);");
    project.write("3_c.sql", "CREATE TABLE c (id int);");
    let production = |args: &[&str]| {
        let mut all = vec!["--env", "production"];
        all.extend_from_slice(args);
        project.run(&all)
    };

    let none = production(&["up"]);
    none.expect_code(exit::BLOCKED);
    assert!(
        none.stderr()
            .contains("3 migration(s) not approved in environment production")
            && none.stderr().contains("1_a: not approved")
            && none
                .stderr()
                .contains("sluice approve --env production 1 2 3 --reason"),
        "{}",
        none.stderr()
    );
    assert_eq!(applied(&project.db).await, 0);

    project
        .run(&[
            "approve",
            "1",
            "2",
            "--reason",
            "reviewed in PR 42",
            "--actor",
            "alice",
        ])
        .expect_code(exit::OK);
    let status = project.run(&["status"]);
    assert!(
        status.stdout().contains("approved by alice at ")
            && status.stdout().contains(": reviewed in PR 42"),
        "{}",
        status.stdout()
    );

    // Edited after its approval: void.
    project.write("2_b.sql", "CREATE TABLE b (id bigint);");
    let status = project.run(&["status", "--json"]);
    let doc: serde_json::Value = serde_json::from_str(&status.stdout()).unwrap();
    let states: Vec<&str> = doc["migrations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["approval"]["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["approved", "void", "none"], "{doc}");

    let partly = production(&["up"]);
    partly.expect_code(exit::BLOCKED);
    assert!(
        partly.stdout().contains("applied 1_a")
            && partly
                .stderr()
                .contains("2_b: its approval is void, the file changed since it was approved")
            && partly.stderr().contains("3_c: not approved"),
        "stdout:\n{}\nstderr:\n{}",
        partly.stdout(),
        partly.stderr()
    );
    assert_eq!(applied(&project.db).await, 1);

    // Never for an applied or unknown version, and then nothing at all is approved.
    let refused = project.run(&["approve", "1", "2", "99", "--reason", "oops"]);
    refused.expect_code(exit::INVALID_INPUT);
    assert!(
        refused.stderr().contains("nothing was approved")
            && refused.stderr().contains("1_a: already applied")
            && refused
                .stderr()
                .contains("99: no migration file has that version"),
        "{}",
        refused.stderr()
    );
    let approvals = || {
        project
            .db
            .scalar("SELECT count(*) FROM sluice.audit WHERE action = 'approve'")
    };
    assert_eq!(approvals().await, 2);

    project
        .run(&["approve", "2", "3_c", "--reason", "re-reviewed"])
        .expect_code(exit::OK);
    assert_eq!(approvals().await, 4);
    production(&["up"]).expect_code(exit::OK);
    assert_eq!(applied(&project.db).await, 3);
}
