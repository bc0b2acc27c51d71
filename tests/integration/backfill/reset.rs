//! Starting over (`reset`) and the audit of every backfill action.

use sluice_common::exit;
use sluice_tests::Project;

use super::items;

/// `fill_b` in batches of 50 with `pause_ms` between them: slow enough to be caught running.
fn slow_fill_b(project: &Project, pause_ms: u32) {
    project.job(
        "fill_b",
        &super::job_toml(
            "fill_b",
            &format!(
                "batch_size = 50\nmin_batch_size = 50\nmax_batch_size = 50\npause = \"{pause_ms}ms\"\n"
            ),
        ),
    );
}

#[tokio::test]
async fn a_cancelled_job_is_reset_run_again_and_opens_its_gate_and_every_action_is_audited() {
    let project = Project::new().await;
    items(&project.db, 3_000).await;
    slow_fill_b(&project, 20);
    project.write(
        "0001_contract.sql",
        "-- sluice:requires-backfill fill_b\nALTER TABLE items ADD CONSTRAINT b_set CHECK (b IS NOT NULL) NOT VALID;\n",
    );
    let actor = |command: &mut std::process::Command| {
        command.env("SLUICE_ACTOR", "oncall-ana");
    };
    let mut run = project.backfill();
    actor(&mut run);
    let worker = run
        .args(["run", "fill_b"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    project.wait_for_batches("fill_b", 2).await;
    let mut cancel = project.backfill();
    actor(&mut cancel);
    assert_eq!(
        cancel.args(["cancel", "fill_b"]).status().unwrap().code(),
        Some(0)
    );
    assert_eq!(worker.wait_with_output().unwrap().status.code(), Some(0));

    let blocked = project.run(&["up"]);
    blocked.expect_code(exit::BLOCKED);
    assert!(
        blocked.stderr().contains("sluice-backfill reset fill_b"),
        "{}",
        blocked.stderr()
    );

    let mut reset = project.backfill();
    actor(&mut reset);
    let reset = reset.args(["reset", "fill_b"]).output().unwrap();
    assert_eq!(
        reset.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&reset.stderr)
    );
    let mut again = project.backfill();
    actor(&mut again);
    assert_eq!(
        again
            .args(["run", "fill_b", "--pause", "0ms"])
            .status()
            .unwrap()
            .code(),
        Some(0)
    );
    assert_eq!(
        project
            .db
            .scalar("SELECT count(*) FROM items WHERE b IS NULL")
            .await,
        0
    );
    project.run(&["up"]).expect_code(exit::OK);

    let actions: Vec<(String, String)> = {
        let mut conn = project.db.connect().await;
        sqlx::query_as(
            "SELECT action, coalesce(actor, '') FROM sluice.backfill_audit WHERE job = 'fill_b' ORDER BY id",
        )
        .fetch_all(&mut conn)
        .await
        .unwrap()
    };
    let names: Vec<&str> = actions.iter().map(|(a, _)| a.as_str()).collect();
    assert_eq!(
        names,
        [
            "run-start",
            "cancel",
            "run-end",
            "reset",
            "run-start",
            "run-end"
        ],
        "{actions:?}"
    );
    assert!(
        actions.iter().all(|(_, actor)| actor == "oncall-ana"),
        "{actions:?}"
    );
    let status = project.run_backfill(&["status", "fill_b"]);
    assert!(
        status.stdout().contains("recent actions:"),
        "{}",
        status.stdout()
    );
    assert!(
        status.stdout().contains("reset by oncall-ana"),
        "{}",
        status.stdout()
    );
    // The audit is append-only.
    let mut conn = project.db.connect().await;
    assert!(
        sqlx::query("DELETE FROM sluice.backfill_audit")
            .execute(&mut conn)
            .await
            .is_err()
    );
}

#[tokio::test]
async fn reset_is_refused_while_a_worker_holds_a_range() {
    let project = Project::new().await;
    items(&project.db, 5_000).await;
    slow_fill_b(&project, 20);
    let worker = project.spawn_backfill(&["run", "fill_b"]);
    project.wait_for_batches("fill_b", 2).await;
    let refused = project.run_backfill(&["reset", "fill_b"]);
    refused.expect_code(exit::LOCK_HELD);
    assert!(
        refused.stderr().contains("pause or cancel it first"),
        "{}",
        refused.stderr()
    );
    project
        .run_backfill(&["cancel", "fill_b"])
        .expect_code(exit::OK);
    let _ = worker.wait_with_output();
    project
        .run_backfill(&["reset", "fill_b"])
        .expect_code(exit::OK);
    project
        .run_backfill(&["reset", "nope"])
        .expect_code(exit::USAGE);
}

#[tokio::test]
async fn status_wait_returns_0_on_completion_and_8_on_cancel() {
    let project = Project::new().await;
    items(&project.db, 2_000).await;
    slow_fill_b(&project, 10);
    // Waiting before the job exists, then through its run, to its completion.
    let waiter = project.spawn_backfill(&["status", "fill_b", "--wait", "--timeout", "2m"]);
    let worker = project.spawn_backfill(&["run", "fill_b"]);
    let waited = waiter.wait_with_output().unwrap();
    let said = String::from_utf8_lossy(&waited.stderr);
    assert_eq!(waited.status.code(), Some(i32::from(exit::OK)), "{said}");
    assert!(said.contains("completed and verified"), "{said}");
    assert_eq!(worker.wait_with_output().unwrap().status.code(), Some(0));

    // Cancelled: non-zero, with the reason.
    project
        .run_backfill(&["reset", "fill_b"])
        .expect_code(exit::OK);
    project.db.exec("UPDATE items SET b = NULL").await;
    slow_fill_b(&project, 50);
    let worker = project.spawn_backfill(&["run", "fill_b"]);
    project.wait_for_batches("fill_b", 2).await;
    let waiter = project.spawn_backfill(&["status", "fill_b", "--wait"]);
    project
        .run_backfill(&["cancel", "fill_b"])
        .expect_code(exit::OK);
    let waited = waiter.wait_with_output().unwrap();
    let said = String::from_utf8_lossy(&waited.stderr);
    assert_eq!(
        waited.status.code(),
        Some(i32::from(exit::BLOCKED)),
        "{said}"
    );
    assert!(said.contains("was cancelled"), "{said}");
    let _ = worker.wait_with_output();

    // A timeout that passes first: 7, and the job goes on.
    let timed_out = project.run_backfill(&["status", "nope", "--wait", "--timeout", "1s"]);
    timed_out.expect_code(exit::PENDING);
}

#[tokio::test]
async fn pause_resume_and_spec_choices_are_audited_with_the_actor() {
    let project = Project::new().await;
    items(&project.db, 3_000).await;
    slow_fill_b(&project, 20);
    let as_actor = |args: &[&str]| {
        let mut command = project.backfill();
        command.env("SLUICE_ACTOR", "ci-pipeline-7").args(args);
        command
    };
    let worker = as_actor(&["run", "fill_b"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    project.wait_for_batches("fill_b", 2).await;
    assert_eq!(
        as_actor(&["pause", "fill_b"]).status().unwrap().code(),
        Some(0)
    );
    assert_eq!(worker.wait_with_output().unwrap().status.code(), Some(0));
    assert_eq!(
        as_actor(&["resume", "fill_b"]).status().unwrap().code(),
        Some(0)
    );
    let rescan = as_actor(&["run", "fill_b", "--pause", "0ms", "--rescan"])
        .output()
        .unwrap();
    assert_eq!(
        rescan.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&rescan.stderr)
    );
    let rows: Vec<(String, String, String)> = {
        let mut conn = project.db.connect().await;
        sqlx::query_as(
            "SELECT action, coalesce(detail, ''), coalesce(actor, '') FROM sluice.backfill_audit \
             WHERE job = 'fill_b' ORDER BY id",
        )
        .fetch_all(&mut conn)
        .await
        .unwrap()
    };
    let actions: Vec<&str> = rows.iter().map(|(a, ..)| a.as_str()).collect();
    assert_eq!(
        actions,
        [
            "run-start",
            "pause",
            "run-end",
            "resume",
            "run-start",
            "run-end"
        ],
        "{rows:?}"
    );
    assert!(rows[4].1.contains("--rescan"), "{rows:?}");
    assert!(
        rows.iter().all(|(.., actor)| actor == "ci-pipeline-7"),
        "{rows:?}"
    );
}

#[tokio::test]
async fn operator_commands_work_on_tables_an_older_version_created() {
    let project = Project::new().await;
    items(&project.db, 500).await;
    project.job("fill_b", &super::job_toml("fill_b", ""));
    project
        .run_backfill(&["run", "fill_b"])
        .expect_code(exit::OK);
    // What an older sluice-backfill left: no audit table, no rate_next column.
    project
        .db
        .exec(
            "DROP TABLE sluice.backfill_audit; \
             ALTER TABLE sluice.backfill_jobs DROP COLUMN rate_next;",
        )
        .await;
    project
        .run_backfill(&["status", "fill_b"])
        .expect_code(exit::OK);
    project
        .run_backfill(&["reset", "fill_b"])
        .expect_code(exit::OK);
    assert_eq!(
        project
            .db
            .scalar("SELECT count(*) FROM sluice.backfill_audit WHERE action = 'reset'")
            .await,
        1
    );
    project
        .run_backfill(&["run", "fill_b"])
        .expect_code(exit::OK);
}
