//! Exactly once under crashes: the engine killed with SIGKILL at random moments and resumed
//! each time, with a non-idempotent `set`.

use sluice_common::exit;
use sluice_tests::Project;

use super::kill_repeatedly;

const ROWS: i64 = 50_000;
const KILLS: usize = 20;

#[tokio::test]
async fn sigkill_at_random_moments_never_loses_or_repeats_a_batch() {
    let project = Project::new().await;
    project
        .db
        .exec(&format!(
            "CREATE TABLE counters (id bigint PRIMARY KEY, n int NOT NULL);
             INSERT INTO counters SELECT g, g FROM generate_series(1, {ROWS}) g;"
        ))
        .await;
    // No `where`: only the committed cursor stops a row from being incremented twice. A short
    // lease, so that a victim's range is taken over soon rather than after 30 s.
    project.job(
        "bump",
        "name = \"bump\"\ntable = \"counters\"\nkey = [\"id\"]\nset = \"n = n + 1\"\n\
         batch_size = 100\nmin_batch_size = 100\nmax_batch_size = 100\npause = \"5ms\"\n\
         lease = \"2s\"\n",
    );

    let (kills, startup_kills) = kill_repeatedly(&project, "bump", KILLS, 7).await;
    assert!(
        kills >= KILLS,
        "only {kills} kills mid-run (and {startup_kills} at start-up) before the job finished; \
         make it slower"
    );
    let mut conn = project.db.connect().await;

    // The job was left "running" by a dead worker; `status` says so, and `run` resumes it.
    let status = project.run_backfill(&["status", "bump"]);
    status.expect_code(exit::OK);
    let last = project.run_backfill(&["run", "bump"]);
    last.expect_code(exit::OK);
    assert!(last.stdout().contains("completed"), "{}", last.stdout());

    let wrong: i64 = sqlx::query_scalar("SELECT count(*) FROM counters WHERE n <> id + 1")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(
        wrong, 0,
        "rows incremented zero times or twice after {kills} kills"
    );
    let (updated, scanned): (i64, i64) = sqlx::query_as(
        "SELECT sum(rows_updated)::bigint, sum(rows_scanned)::bigint FROM sluice.backfill_ranges WHERE job = 'bump'",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!((updated, scanned), (ROWS, ROWS));
}
