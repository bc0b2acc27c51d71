//! Lint: a corpus of good and bad files, each bad one for a named rule; `up` refuses an
//! unapproved dangerous change and applies it once approved; `--skip-lint` is audited.

use std::path::{Path, PathBuf};

use sluice_common::exit;
use sluice_tests::Project;

fn corpus(kind: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("lint")
        .join(kind);
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
}

fn blocking_rules(doc: &serde_json::Value) -> Vec<String> {
    doc["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["severity"] == "block" && f["approved"].is_null())
        .map(|f| f["rule"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn every_bad_file_is_blocked_by_its_rule_and_good_files_pass() {
    let project = Project::new().await;
    let bad = corpus("bad");
    assert!(bad.len() >= 15, "the corpus shrank: {bad:?}");
    for file in bad {
        let rule = file.file_stem().unwrap().to_str().unwrap().to_owned();
        let run = project.run(&["lint", file.to_str().unwrap(), "--format", "json"]);
        run.expect_code(exit::BLOCKED);
        let doc: serde_json::Value = serde_json::from_str(&run.stdout()).unwrap();
        assert!(
            blocking_rules(&doc).contains(&rule),
            "{}: expected {rule}, got {doc}",
            file.display()
        );
    }
    for file in corpus("good") {
        let run = project.run(&["lint", file.to_str().unwrap(), "--format", "json"]);
        run.expect_code(exit::OK);
        let doc: serde_json::Value = serde_json::from_str(&run.stdout()).unwrap();
        assert!(blocking_rules(&doc).is_empty(), "{}: {doc}", file.display());
    }
}

#[tokio::test]
async fn human_and_github_formats_name_file_line_column_and_rule() {
    let project = Project::new().await;
    let path = project.write(
        "0001_drop.sql",
        "CREATE TABLE t (id bigint, x int);\nALTER TABLE t DROP COLUMN x;\n",
    );
    let human = project.run(&["lint"]);
    human.expect_code(exit::BLOCKED);
    let shown = path
        .strip_prefix(project.path())
        .unwrap()
        .display()
        .to_string();
    assert!(
        human
            .stdout()
            .contains(&format!("{shown}:2:15 ban-drop-column:")),
        "{}",
        human.stdout()
    );
    let github = project.run(&["lint", "--format", "github"]);
    assert!(
        github.stdout().contains(&format!(
            "::error file={shown},line=2,col=15,title=ban-drop-column::"
        )),
        "{}",
        github.stdout()
    );
}

#[tokio::test]
async fn up_refuses_an_unapproved_drop_column_and_applies_it_once_approved() {
    let project = Project::new().await;
    project.write(
        "0001_t.sql",
        "CREATE TABLE t (id bigint PRIMARY KEY, legacy int);\n",
    );
    project.run(&["up"]).expect_code(exit::OK);
    let drop = project.write(
        "0002_drop_legacy.sql",
        "ALTER TABLE t DROP COLUMN legacy;\n",
    );

    let refused = project.run(&["up"]);
    refused.expect_code(exit::BLOCKED);
    assert!(
        refused
            .stderr()
            .contains("0002_drop_legacy.sql:1:15 ban-drop-column"),
        "{}",
        refused.stderr()
    );
    assert!(
        refused
            .stderr()
            .contains("-- sluice:approve <rule> reason:"),
        "{}",
        refused.stderr()
    );
    let mut conn = project.db.connect().await;
    let still_there: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM information_schema.columns WHERE table_name = 't' AND column_name = 'legacy')")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert!(still_there);

    std::fs::write(
        &drop,
        "-- sluice:approve ban-drop-column reason:\nALTER TABLE t DROP COLUMN legacy;\n",
    )
    .unwrap();
    let no_reason = project.run(&["up"]);
    no_reason.expect_code(exit::INVALID_INPUT);
    assert!(
        no_reason.stderr().contains("needs a reason"),
        "{}",
        no_reason.stderr()
    );

    std::fs::write(&drop, "-- sluice:approve ban-drop-column reason: unused since v42\nALTER TABLE t DROP COLUMN legacy;\n").unwrap();
    project.run(&["up"]).expect_code(exit::OK);
    let gone: bool = sqlx::query_scalar("SELECT NOT EXISTS (SELECT 1 FROM information_schema.columns WHERE table_name = 't' AND column_name = 'legacy')")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert!(gone);
}

#[tokio::test]
async fn skip_lint_applies_loudly_and_is_audited_with_the_actor() {
    let project = Project::new().await;
    project.write(
        "0001_t.sql",
        "CREATE TABLE t (id bigint PRIMARY KEY);\nTRUNCATE t;\n",
    );
    let run = project.run(&["up", "--skip-lint", "--actor", "oncall-alice"]);
    run.expect_code(exit::OK);
    assert!(run.stderr().contains("--skip-lint"), "{}", run.stderr());
    let mut conn = project.db.connect().await;
    let (detail, actor): (String, Option<String>) =
        sqlx::query_as("SELECT detail, actor FROM sluice.audit WHERE action = 'skip-lint'")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert!(detail.contains("ban-truncate"), "{detail}");
    assert_eq!(actor.as_deref(), Some("oncall-alice"));
}

fn git(dir: &Path, args: &[&str]) {
    let status = std::process::Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["-c", "user.email=ci@example.invalid", "-c", "user.name=ci"])
        .args(args)
        .status()
        .unwrap();
    assert!(status.success(), "git {args:?}");
}

#[tokio::test]
async fn validate_since_catches_merged_migrations_that_changed() {
    let project = Project::new().await;
    git(project.path(), &["init", "-q"]);
    project.write("0001_a.sql", "CREATE TABLE a (id bigint);\n");
    project.write("0002_b.sql", "CREATE TABLE b (id bigint);\n");
    project.write("0003_c.sql", "CREATE TABLE c (id bigint);\n");
    git(project.path(), &["add", "."]);
    git(project.path(), &["commit", "-q", "-m", "merged"]);
    project
        .run(&["validate", "--since", "HEAD"])
        .expect_code(exit::OK);

    // A newer file is fine.
    project.write("0004_d.sql", "CREATE TABLE d (id bigint);\n");
    project
        .run(&["validate", "--since", "HEAD"])
        .expect_code(exit::OK);

    project.write("0001_a.sql", "CREATE TABLE a (id bigint, x int);\n");
    std::fs::rename(
        project.migrations().join("0002_b.sql"),
        project.migrations().join("0002_bee.sql"),
    )
    .unwrap();
    std::fs::remove_file(project.migrations().join("0003_c.sql")).unwrap();
    project.write("0000_early.sql", "CREATE TABLE e (id bigint);\n");
    let run = project.run(&["validate", "--since", "HEAD"]);
    run.expect_code(exit::HISTORY_DRIFT);
    let err = run.stderr();
    assert!(
        err.contains("0001_a.sql: edited after it was merged"),
        "{err}"
    );
    assert!(
        err.contains("0002_bee.sql: renamed from 0002_b.sql"),
        "{err}"
    );
    assert!(
        err.contains("0003_c.sql: deleted after it was merged"),
        "{err}"
    );
    assert!(
        err.contains("0000_early.sql: new, but its version is not newer than 0003_c.sql"),
        "{err}"
    );
    assert!(!err.contains("0004_d.sql"), "{err}");

    let bad_ref = project.run(&["validate", "--since", "no-such-branch"]);
    bad_ref.expect_code(exit::USAGE);
    assert!(
        bad_ref
            .stderr()
            .contains("`no-such-branch` is not a commit"),
        "{}",
        bad_ref.stderr()
    );
}

#[tokio::test]
async fn validate_since_reads_diesel_directories() {
    let project = Project::new().await;
    git(project.path(), &["init", "-q"]);
    project.write(
        "2024-01-01-000000_a/up.sql",
        "CREATE TABLE a (id bigint);\n",
    );
    project.write("2024-01-01-000000_a/down.sql", "DROP TABLE a;\n");
    git(project.path(), &["add", "."]);
    git(project.path(), &["commit", "-q", "-m", "merged"]);
    project.write(
        "2024-02-01-000000_b/up.sql",
        "CREATE TABLE b (id bigint);\n",
    );
    project
        .run(&["validate", "--since", "HEAD"])
        .expect_code(exit::OK);

    project.write("2024-01-01-000000_a/down.sql", "DROP TABLE IF EXISTS a;\n");
    let run = project.run(&["validate", "--since", "HEAD"]);
    run.expect_code(exit::HISTORY_DRIFT);
    assert!(
        run.stderr()
            .contains("2024-01-01-000000_a/down.sql: edited after it was merged"),
        "{}",
        run.stderr()
    );
    assert!(!run.stderr().contains("2024-02-01"), "{}", run.stderr());
}

/// The README's rule table, as the rules that run render it.
fn rule_table() -> String {
    let mut table = String::from("| rule | default | why | instead |\n|---|---|---|---|\n");
    for rule in sluice_runner::lint::RULES {
        let default = match rule.severity {
            sluice_runner::lint::Severity::Block => "blocks",
            sluice_runner::lint::Severity::Warn => "warns",
        };
        table.push_str(&format!(
            "| `{}` | {default} | {} | {} |\n",
            rule.name, rule.why, rule.instead
        ));
    }
    table
}

#[test]
fn the_readme_rule_table_is_the_table_of_the_rules_that_run() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))
        .expect("README.md");
    let expected = rule_table();
    assert!(
        readme.contains(&expected),
        "README.md's lint rule table differs from the rules that run; replace it with:\n{expected}"
    );
}

#[tokio::test]
async fn a_table_created_earlier_in_the_same_run_may_be_constrained_and_indexed() {
    let project = Project::new().await;
    project.write("0001_u.sql", "CREATE TABLE u (id bigint PRIMARY KEY);\n");
    project.write(
        "0002_t.sql",
        "CREATE TABLE t (id bigint PRIMARY KEY, u_id bigint, a bigint);\n",
    );
    project.write(
        "0003_constrain.sql",
        "ALTER TABLE t ADD CONSTRAINT t_u FOREIGN KEY (u_id) REFERENCES u (id);\n\
         CREATE INDEX t_a ON t (a);\n\
         ALTER TABLE t ADD CONSTRAINT t_a_positive CHECK (a > 0);\n",
    );
    // Linted alone, the third file is dangerous: squawk cannot know t is new.
    project.run(&["lint"]).expect_code(exit::BLOCKED);
    // Applied together on a fresh database, t is empty when it is constrained.
    project.run(&["up"]).expect_code(exit::OK);
    // Once applied, t may hold rows: the same change to it is held to the rules again.
    project.write(
        "0004_more.sql",
        "ALTER TABLE t ADD CONSTRAINT t_a_small CHECK (a < 1000000);\n",
    );
    let later = project.run(&["up"]);
    later.expect_code(exit::BLOCKED);
    assert!(
        later.stderr().contains("constraint-missing-not-valid"),
        "{}",
        later.stderr()
    );
}

#[tokio::test]
async fn a_baseline_accepts_an_adopted_history_and_holds_new_files_to_the_rules() {
    let project = Project::new().await;
    project.write(
        "0001_t.sql",
        "CREATE TABLE t (id bigint PRIMARY KEY, old text, a bigint);\n",
    );
    project.write("0002_drop.sql", "ALTER TABLE t DROP COLUMN old;\n");
    project.write("0003_index.sql", "CREATE INDEX t_a ON t (a);\n");
    project.run(&["lint"]).expect_code(exit::BLOCKED);
    let written = project.run(&["lint", "--write-baseline"]);
    written.expect_code(exit::OK);
    assert!(
        written.stdout().contains("2 file(s)"),
        "{}",
        written.stdout()
    );
    assert!(
        project
            .migrations()
            .join("sluice-lint-baseline.toml")
            .is_file()
    );
    project.run(&["lint"]).expect_code(exit::OK);
    project.run(&["up"]).expect_code(exit::OK);

    // A new file is held to the rules.
    project.write("0004_drop_again.sql", "ALTER TABLE t DROP COLUMN a;\n");
    let new = project.run(&["up"]);
    new.expect_code(exit::BLOCKED);
    assert!(
        new.stderr().contains("0004_drop_again.sql"),
        "{}",
        new.stderr()
    );
    assert!(!new.stderr().contains("0002_drop.sql"), "{}", new.stderr());
    // An edited baseline file is linted again.
    std::fs::remove_file(project.migrations().join("0004_drop_again.sql")).unwrap();
    project.write("0003_index.sql", "CREATE INDEX t_a ON t (a, id);\n");
    let edited = project.run(&["lint"]);
    edited.expect_code(exit::BLOCKED);
    assert!(
        edited.stdout().contains("0003_index.sql"),
        "{}",
        edited.stdout()
    );
}
