//! Benchmark: what a backfill costs an application. pgbench (TPC-B, scale 20, 4 clients, as
//! shipped with the PostgreSQL server packages) runs against the throwaway server alone, then
//! next to a 1,000,000-row `sluice-backfill` job, then alone again; for each pacing, the
//! application's TPS and p50/p99 latency during the job against the mean of the runs before
//! and after, and the job's rows per second. Then, on the idle server, the default job against
//! a hand-written psql loop of 10k-key-range UPDATEs.
//!
//! Run with `cargo bench -p sluice-tests --bench pacing` (uses `DATABASE_URL`, or starts a
//! throwaway server with PostgreSQL's default durability). Takes about six minutes.

use std::fmt::Write as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use sluice_tests::{TestDb, bin};

const ROWS: i64 = 1_000_000;
const CLIENTS: &str = "4";
/// pgbench alone, before and after each job.
const ALONE: Duration = Duration::from_secs(15);
/// The longest a job runs next to pgbench (it is stopped then, its rows counted).
const LONGEST_JOB: Duration = Duration::from_secs(60);

/// pgbench's figures over a time window.
#[derive(Debug, Clone, Copy)]
struct Load {
    tps: f64,
    p50_ms: f64,
    p99_ms: f64,
}

/// A pgbench run in the background, logging every transaction to `dir`.
struct Pgbench {
    child: Child,
    dir: tempfile::TempDir,
}

impl Pgbench {
    fn start(url: &str, seconds: u64) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let child = Command::new("pgbench")
            .args([
                "-n",
                "-c",
                CLIENTS,
                "-j",
                "2",
                "-T",
                &seconds.to_string(),
                "-l",
            ])
            .arg(format!("--log-prefix={}", dir.path().join("pb").display()))
            .arg(url)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("pgbench (from the PostgreSQL server packages) on PATH");
        Self { child, dir }
    }

    /// Waits for the run to end and reads its transactions that ended within [from, to].
    #[expect(
        clippy::cast_precision_loss,
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "percentiles of a report"
    )]
    fn finish(mut self, from: f64, to: f64) -> Load {
        let status = self.child.wait().unwrap();
        assert!(status.success(), "pgbench failed");
        let mut latencies = Vec::new();
        for entry in std::fs::read_dir(self.dir.path()).unwrap() {
            let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
            for line in text.lines() {
                // client transaction latency_us script epoch_s epoch_us
                let f: Vec<&str> = line.split_whitespace().collect();
                let (Some(latency), Some(s), Some(us)) = (f.get(2), f.get(4), f.get(5)) else {
                    continue;
                };
                let at = s.parse::<f64>().unwrap() + us.parse::<f64>().unwrap() / 1e6;
                if (from..=to).contains(&at) {
                    latencies.push(latency.parse::<f64>().unwrap() / 1000.0);
                }
            }
        }
        latencies.sort_by(f64::total_cmp);
        let at =
            |q: f64| latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)];
        Load {
            tps: latencies.len() as f64 / (to - from),
            p50_ms: at(0.5),
            p99_ms: at(0.99),
        }
    }
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// pgbench alone for [`ALONE`].
fn alone(url: &str) -> Load {
    let run = Pgbench::start(url, ALONE.as_secs());
    let from = now() + 1.0;
    std::thread::sleep(ALONE);
    run.finish(from, now() - 0.5)
}

async fn fresh_table(db: &TestDb) {
    db.exec("DROP SCHEMA IF EXISTS sluice CASCADE; DROP TABLE IF EXISTS t")
        .await;
    db.bench_table(ROWS).await;
}

fn spec(dir: &Path, extra: &str) -> std::path::PathBuf {
    let path = dir.join("fill.toml");
    std::fs::write(
        &path,
        format!(
            "name = \"fill\"\ntable = \"t\"\nkey = [\"id\"]\nset = \"b = md5(a::text)\"\n{extra}"
        ),
    )
    .unwrap();
    path
}

/// Runs the job until it completes or `longest` passes (then SIGTERM); its wall time and the
/// rows it filled.
async fn job(db: &TestDb, spec: &Path, longest: Duration) -> (Duration, i64) {
    let started = Instant::now();
    let mut child = Command::new(bin::sluice_backfill())
        .args(["run", "--log-format", "json"])
        .arg(spec)
        .env("DATABASE_URL", &db.url)
        .stdout(Stdio::null())
        .stderr(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(std::env::temp_dir().join("sluice-pacing-bench.log"))
                .unwrap(),
        )
        .spawn()
        .unwrap();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() >= longest {
            #[expect(unsafe_code, reason = "SIGTERM, as Kubernetes stops a pod")]
            // SAFETY: kill(2) on our own child's pid.
            unsafe {
                libc::kill(libc::pid_t::try_from(child.id()).unwrap(), libc::SIGTERM);
            }
            child.wait().unwrap();
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let elapsed = started.elapsed();
    let filled = db
        .scalar("SELECT count(*) FROM t WHERE b IS NOT NULL")
        .await;
    (elapsed, filled)
}

#[expect(clippy::cast_precision_loss, reason = "rates for a report")]
fn per_second(rows: i64, d: Duration) -> f64 {
    rows as f64 / d.as_secs_f64()
}

#[tokio::main]
async fn main() {
    sluice_tests::prefer_durable_server();
    // Builds the binaries now, not in the first measured window.
    let _ = bin::sluice_backfill();
    let bench = TestDb::new().await;
    let init = Command::new("pgbench")
        .args(["-i", "-q", "-s", "20"])
        .arg(&bench.url)
        .output()
        .expect("pgbench (from the PostgreSQL server packages) on PATH");
    assert!(init.status.success(), "pgbench -i failed");
    let db = TestDb::new().await;
    let work = tempfile::tempdir().unwrap();
    eprintln!(
        "the jobs' logs go to {}",
        std::env::temp_dir()
            .join("sluice-pacing-bench.log")
            .display()
    );

    let mut report = String::new();
    let scenarios = [
        ("default (pace = \"auto\")", ""),
        (
            "max_rows_per_second = 25000",
            "max_rows_per_second = 25000\n",
        ),
        ("pace = \"max\"", "pace = \"max\"\n"),
    ];
    // `cargo bench --bench pacing -- max` runs the scenarios whose label holds "max".
    let only: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    for (label, extra) in scenarios {
        if !only.is_empty() && !only.iter().any(|o| label.contains(o.as_str())) {
            continue;
        }
        eprintln!("{label}...");
        fresh_table(&db).await;
        let before = alone(&bench.url);
        let load = Pgbench::start(&bench.url, LONGEST_JOB.as_secs() + 5);
        std::thread::sleep(Duration::from_secs(2));
        let from = now();
        let checkpoints = "SELECT checkpoints_timed + checkpoints_req FROM pg_stat_bgwriter";
        let checkpoints_before = db.scalar(checkpoints).await;
        let (took, rows) = job(&db, &spec(work.path(), extra), LONGEST_JOB).await;
        let checkpoints = db.scalar(checkpoints).await - checkpoints_before;
        let during = load.finish(from, now());
        let after = alone(&bench.url);
        let base = Load {
            tps: (before.tps + after.tps) / 2.0,
            p50_ms: (before.p50_ms + after.p50_ms) / 2.0,
            p99_ms: (before.p99_ms + after.p99_ms) / 2.0,
        };
        let _ = writeln!(
            report,
            "  {label:<30} TPS {:>6.0} ({:.2}x)  p50 {:.2} ms ({:.2}x)  p99 {:.2} ms ({:.2}x)  job {:>7.0} rows/s ({rows} rows in {:.1}s)",
            during.tps,
            during.tps / base.tps,
            during.p50_ms,
            during.p50_ms / base.p50_ms,
            during.p99_ms,
            during.p99_ms / base.p99_ms,
            per_second(rows, took),
            took.as_secs_f64()
        );
        let _ = writeln!(
            report,
            "  {:<30} baseline TPS {:.0} (before {:.0}, after {:.0}), p50 {:.2} ms, p99 {:.2} ms; {checkpoints} checkpoint(s) during the job",
            "", base.tps, before.tps, after.tps, base.p50_ms, base.p99_ms
        );
    }

    eprintln!("idle server...");
    let mut idle = String::new();
    let loop_file = work.path().join("loop.sql");
    sluice_tests::write_loop_script(&loop_file, ROWS, 10_000);
    let (mut ours, mut looped) = (0.0_f64, 0.0_f64);
    for _ in 0..2 {
        fresh_table(&db).await;
        let (took, rows) = job(&db, &spec(work.path(), ""), Duration::from_secs(600)).await;
        ours = ours.max(per_second(rows, took));
        fresh_table(&db).await;
        let started = Instant::now();
        let psql = db.psql().arg("-f").arg(&loop_file).output().unwrap();
        assert!(psql.status.success(), "psql loop failed");
        looped = looped.max(per_second(ROWS, started.elapsed()));
    }
    let _ = writeln!(
        idle,
        "  idle server (best of 2): default job {ours:.0} rows/s, psql loop of 10k-key ranges {looped:.0} rows/s ({:.2}x)",
        ours / looped
    );

    println!(
        "pacing benchmark: {ROWS}-row job (b = md5(a::text)) next to pgbench -c {CLIENTS} (scale 20); \
         ratios against the mean of pgbench alone before and after"
    );
    print!("{report}{idle}");
}
