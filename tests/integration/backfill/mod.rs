//! `sluice-backfill` against a real server: exactly-once under interruption and crashes,
//! guards, keys, hostile names, operator commands.

mod actions;
mod crash;
mod guards;
mod keys;
mod operations;
mod pace;
mod parallel;
mod reset;
mod resume;

use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use sluice_tests::{Project, TestDb};
use sqlx::{PgConnection, PgPool};

/// `items (id bigint primary key, a int, b text, n int)` with `rows` rows, `b` NULL.
async fn items(db: &TestDb, rows: i64) {
    db.exec(&format!(
        "CREATE TABLE items (id bigint PRIMARY KEY, a int NOT NULL, b text, n int NOT NULL DEFAULT 0);
         INSERT INTO items (id, a) SELECT g, g % 1000 FROM generate_series(1, {rows}) g;
         ANALYZE items;"
    ))
    .await;
}

/// A fingerprint of a table's whole content, in key order.
async fn fingerprint(conn: &mut PgConnection, table: &str) -> String {
    sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT md5(string_agg(t::text, '|' ORDER BY t::text)) FROM {table} t"
    )))
    .fetch_one(conn)
    .await
    .unwrap()
}

fn job_toml(name: &str, extra: &str) -> String {
    format!(
        "name = \"{name}\"\ntable = \"public.items\"\nkey = [\"id\"]\nset = \"b = md5(a::text), n = n + 1\"\n\
         where = \"b IS NULL\"\n{extra}"
    )
}

/// Runs `sluice-backfill run <job>` again and again, SIGKILLing each run, until `kills` runs
/// were killed mid-run (or a run finished first). Returns the kills mid-run and at start-up.
///
/// Kills are timed from the victim's first committed batch, not from its start: a loaded
/// machine can take longer than any fixed delay to start a process, and a kill that always
/// lands before the first batch proves nothing. Every fifth run is killed at a random moment
/// of its start-up instead (registration, splitting, claiming).
pub(crate) async fn kill_repeatedly(
    project: &Project,
    job: &str,
    kills: usize,
    seed: u64,
) -> (usize, usize) {
    let mut conn = project.db.connect().await;
    let (mut mid_run, mut at_startup) = (0, 0);
    let mut rng = fastrand::Rng::with_seed(seed);
    let started = Instant::now();
    while mid_run < kills {
        assert!(
            started.elapsed() < Duration::from_secs(240),
            "took too long; {mid_run} kills so far"
        );
        let before = project.batches(&mut conn, job).await;
        let mut child = project
            .backfill()
            .args(["-q", "run", job])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let during_startup = rng.u8(0..5) == 0;
        if during_startup {
            tokio::time::sleep(Duration::from_millis(rng.u64(0..150))).await;
        } else {
            while project.batches(&mut conn, job).await == before
                && child.try_wait().unwrap().is_none()
            {
                assert!(started.elapsed() < Duration::from_secs(240), "no progress");
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            tokio::time::sleep(Duration::from_millis(rng.u64(0..150))).await;
        }
        if child.try_wait().unwrap().is_some() {
            break; // finished before the kill: too few rows left
        }
        child.kill().unwrap();
        child.wait().unwrap();
        if during_startup {
            at_startup += 1;
        } else {
            mid_run += 1;
        }
    }
    (mid_run, at_startup)
}

/// What an application does to a table while a test runs, each statement committed on its
/// own: `insert` binds a new key above `keys`; the others bind an existing key below it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Workload {
    pub insert: &'static str,
    pub update: &'static str,
    /// Changes a row's key.
    pub rekey: Option<&'static str>,
    pub delete: &'static str,
    pub keys: i64,
}

/// The application, writing until stopped; returns how many writes it made and its errors.
#[derive(Debug)]
pub(crate) struct Writers {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<(u64, Vec<String>)>,
}

impl Writers {
    pub(crate) fn start(pool: PgPool, workload: Workload) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn(write(pool, workload, Arc::clone(&stop)));
        Self { stop, task }
    }

    pub(crate) async fn stop(self) -> (u64, Vec<String>) {
        self.stop.store(true, Ordering::SeqCst);
        self.task.await.unwrap()
    }
}

async fn write(pool: PgPool, workload: Workload, stop: Arc<AtomicBool>) -> (u64, Vec<String>) {
    let mut rng = fastrand::Rng::with_seed(3);
    let (mut writes, mut errors) = (0u64, Vec::new());
    let mut next_key = workload.keys * 10;
    while !stop.load(Ordering::SeqCst) {
        let (sql, key) = match rng.u8(0..10) {
            0..=2 => {
                next_key += 1;
                (workload.insert, next_key)
            }
            3..=6 => (workload.update, rng.i64(1..workload.keys)),
            7 if workload.rekey.is_some() => {
                (workload.rekey.expect("checked"), rng.i64(1..workload.keys))
            }
            _ => (workload.delete, rng.i64(1..workload.keys)),
        };
        match sqlx::query(sql).bind(key).execute(&pool).await {
            Ok(_) => writes += 1,
            Err(error) => errors.push(error.to_string()),
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    (writes, errors)
}
