//! A job run to completion and the same job interrupted at several points and resumed reach
//! identical tables.

use std::time::Duration;

use sluice_backfill::engine::{self, EngineSettings, Outcome, RunOptions};
use sluice_backfill::event::Event;
use sluice_backfill::job::{Job, JobFile, Overrides};
use sluice_common::db::ConnectSettings;
use sluice_common::ident::Ident;
use sluice_common::redact::SecretUrl;
use sluice_common::shutdown::Shutdown;
use sluice_tests::TestDb;

use super::{fingerprint, items};

const ROWS: i64 = 100_000;

fn job() -> Job {
    let file: JobFile = toml::from_str(&super::job_toml(
        "fill_b",
        "batch_size = 2000\nmin_batch_size = 500\nmax_batch_size = 4000\n",
    ))
    .unwrap();
    Job::from_file(file, &Overrides::default()).unwrap()
}

fn settings(db: &TestDb) -> EngineSettings {
    EngineSettings {
        connect: ConnectSettings::new(SecretUrl::new(db.url.clone()), "sluice-backfill"),
        schema: Ident::new("sluice").unwrap(),
        who: sluice_backfill::audit::Who::default(),
    }
}

/// Runs the job, asking it to stop after `stop_after` batches (never when `None`).
async fn run(db: &TestDb, stop_after: Option<usize>) -> Outcome {
    let shutdown = Shutdown::new();
    let mut batches = 0;
    let trigger = shutdown.clone();
    let mut events = |event: Event| {
        if let Event::Batch(_) = event {
            batches += 1;
            if Some(batches) == stop_after {
                trigger.trigger();
            }
        }
    };
    engine::run(
        &settings(db),
        &job(),
        &RunOptions::default(),
        &shutdown,
        &mut events,
    )
    .await
    .expect("the job runs")
}

#[tokio::test]
async fn interrupted_and_resumed_equals_run_to_completion() {
    let straight = TestDb::new().await;
    let interrupted = TestDb::new().await;
    items(&straight, ROWS).await;
    items(&interrupted, ROWS).await;

    let outcome = run(&straight, None).await;
    assert!(
        matches!(outcome, Outcome::Completed { rows_updated, .. } if rows_updated == 100_000),
        "{outcome:?}"
    );

    let mut stops = 0;
    let mut committed = 0;
    for stop_after in [1, 3, 2, 7, 5] {
        match run(&interrupted, Some(stop_after)).await {
            Outcome::Interrupted => {
                let mut conn = interrupted.connect().await;
                let batches: i64 =
                    sqlx::query_scalar("SELECT sum(batches)::bigint FROM sluice.backfill_ranges")
                        .fetch_one(&mut conn)
                        .await
                        .unwrap();
                assert!(batches > committed, "each run's batches are recorded");
                committed = batches;
                stops += 1;
            }
            other => panic!("expected an interruption, got {other:?}"),
        }
    }
    assert_eq!(stops, 5);
    let last = run(&interrupted, None).await;
    assert!(matches!(last, Outcome::Completed { .. }), "{last:?}");

    let mut a = straight.connect().await;
    let mut b = interrupted.connect().await;
    let (n_min, n_max, missing): (i32, i32, i64) =
        sqlx::query_as("SELECT min(n), max(n), count(*) FILTER (WHERE b IS NULL) FROM items")
            .fetch_one(&mut b)
            .await
            .unwrap();
    assert_eq!((n_min, n_max, missing), (1, 1, 0), "every row exactly once");
    assert_eq!(
        fingerprint(&mut a, "items").await,
        fingerprint(&mut b, "items").await
    );

    let state: (String, i64, i64) =
        sqlx::query_as("SELECT j.state, sum(r.rows_updated)::bigint, sum(r.rows_scanned)::bigint \
             FROM sluice.backfill_jobs j JOIN sluice.backfill_ranges r ON r.job = j.name GROUP BY j.state")
            .fetch_one(&mut b)
            .await
            .unwrap();
    assert_eq!(state, ("completed".to_owned(), 100_000, 100_000));
    // Running a completed job again does nothing.
    assert_eq!(run(&interrupted, None).await, Outcome::AlreadyCompleted);
    let _ = Duration::ZERO;
}

#[tokio::test]
async fn rows_inserted_after_the_start_are_left_to_the_dual_write_trigger() {
    let db = TestDb::new().await;
    items(&db, 5_000).await;
    let first = run(&db, Some(1)).await;
    assert!(matches!(first, Outcome::Interrupted));
    // New rows above the captured upper bound: the job still ends, without them.
    db.exec("INSERT INTO items (id, a) SELECT g, 1 FROM generate_series(5001, 6000) g")
        .await;
    let done = run(&db, None).await;
    assert!(
        matches!(
            done,
            Outcome::Completed {
                rows_updated: 5_000,
                ..
            }
        ),
        "{done:?}"
    );
    let mut conn = db.connect().await;
    let untouched: i64 = sqlx::query_scalar("SELECT count(*) FROM items WHERE b IS NULL")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(untouched, 1_000);
}
