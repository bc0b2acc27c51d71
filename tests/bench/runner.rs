//! Benchmark: `sluice up` on 500 small migrations against `psql --single-transaction` on the
//! same files, plus a no-op re-run and `status`.
//!
//! Run with `cargo bench -p sluice-tests --bench runner` (uses `DATABASE_URL`, or starts a
//! throwaway server with PostgreSQL's default durability). Prints medians of several rounds.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use sluice_tests::{TestDb, bin};

const MIGRATIONS: usize = 500;
const ROUNDS: usize = 5;
const NOOP_ROUNDS: usize = 15;

fn write_migrations(dir: &Path) -> Vec<std::path::PathBuf> {
    std::fs::create_dir_all(dir).unwrap();
    (1..=MIGRATIONS)
        .map(|n| {
            let path = dir.join(format!("{n:04}_table_{n}.sql"));
            std::fs::write(
                &path,
                format!(
                    "CREATE TABLE t_{n} (id bigint PRIMARY KEY, name text NOT NULL);\n\
                     ALTER TABLE t_{n} ADD COLUMN created_at timestamptz NOT NULL DEFAULT now();\n\
                     CREATE INDEX t_{n}_name ON t_{n} (name);\n"
                ),
            )
            .unwrap();
            path
        })
        .collect()
}

fn timed(command: &mut Command) -> Duration {
    let started = Instant::now();
    let output = command.output().expect("run the command");
    let elapsed = started.elapsed();
    assert!(
        output.status.success(),
        "{command:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    elapsed
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[tokio::main]
async fn main() {
    sluice_tests::prefer_durable_server();
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("migrations");
    let files = write_migrations(&dir);
    let sluice = bin::sluice();

    let mut psql_times = Vec::new();
    let mut sluice_times = Vec::new();
    let mut noop_times = Vec::new();
    let mut status_times = Vec::new();
    for _ in 0..ROUNDS {
        let db = TestDb::new().await;
        let mut psql = Command::new("psql");
        psql.args([
            "--quiet",
            "--no-psqlrc",
            "--single-transaction",
            "-v",
            "ON_ERROR_STOP=1",
            "-d",
            &db.url,
        ]);
        for file in &files {
            psql.arg("-f").arg(file);
        }
        psql_times.push(timed(&mut psql));

        let db = TestDb::new().await;
        let run = |args: &[&str]| {
            let mut command = Command::new(&sluice);
            command
                .args(args)
                .arg("-q")
                .env("DATABASE_URL", &db.url)
                .env("SLUICE_MIGRATIONS", &dir);
            command
        };
        sluice_times.push(timed(&mut run(&["up"])));
        for _ in 0..NOOP_ROUNDS / ROUNDS {
            noop_times.push(timed(&mut run(&["up"])));
            status_times.push(timed(&mut run(&["status"])));
        }
    }
    let (psql, sluice_up) = (median(psql_times), median(sluice_times));
    println!(
        "runner benchmark: {MIGRATIONS} migrations (3 DDL statements each), medians of {ROUNDS} rounds"
    );
    println!("  psql --single-transaction   {:>9.1} ms", ms(psql));
    println!(
        "  sluice up                   {:>9.1} ms   {:.2}x psql  (a transaction, timeouts, history and audit row per migration)",
        ms(sluice_up),
        sluice_up.as_secs_f64() / psql.as_secs_f64()
    );
    println!(
        "  sluice up (nothing to do)   {:>9.1} ms",
        ms(median(noop_times))
    );
    println!(
        "  sluice status               {:>9.1} ms",
        ms(median(status_times))
    );
}
