//! A scratch project for CLI tests: a migrations directory and a database of its own, and
//! `sluice` run against them the way a user runs it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::{TestDb, bin};

/// A temporary project directory with its own database.
#[derive(Debug)]
pub struct Project {
    pub dir: tempfile::TempDir,
    pub db: TestDb,
}

impl Project {
    pub async fn new() -> Self {
        Self::with_db(TestDb::new().await)
    }

    /// A project whose database is on the server of `admin_url` (a test's private server).
    pub async fn on(admin_url: &str) -> Self {
        Self::with_db(TestDb::on(admin_url).await)
    }

    fn with_db(db: TestDb) -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory");
        std::fs::create_dir(dir.path().join("migrations")).expect("migrations directory");
        Self { dir, db }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn migrations(&self) -> PathBuf {
        self.path().join("migrations")
    }

    /// Writes `migrations/<file_name>`.
    pub fn write(&self, file_name: &str, sql: &str) -> PathBuf {
        let path = self.migrations().join(file_name);
        // diesel's layout puts each migration in a directory of its own.
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("create the migration's directory");
        }
        std::fs::write(&path, sql).expect("write a migration");
        path
    }

    /// `sluice <args>` in the project directory against its database, with a clean
    /// environment.
    pub fn sluice(&self) -> Command {
        self.command(bin::sluice())
    }

    fn command(&self, program: PathBuf) -> Command {
        let mut command = Command::new(program);
        command
            .current_dir(self.path())
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("DATABASE_URL", &self.db.url);
        command
    }

    /// `sluice-backfill <args>` in the project directory against its database.
    pub fn backfill(&self) -> Command {
        self.command(bin::sluice_backfill())
    }

    /// Starts `sluice <args>` in the background, its output captured for `wait_with_output`.
    pub fn spawn_sluice(&self, args: &[&str]) -> std::process::Child {
        self.sluice()
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("start sluice")
    }

    /// Starts `sluice-backfill <args>` in the background, its output captured for
    /// `wait_with_output`.
    pub fn spawn_backfill(&self, args: &[&str]) -> std::process::Child {
        self.backfill()
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("start sluice-backfill")
    }

    /// Runs `sluice-backfill <args>` to completion.
    pub fn run_backfill(&self, args: &[&str]) -> Run {
        Run(self
            .backfill()
            .args(args)
            .output()
            .expect("run sluice-backfill"))
    }

    /// Writes `jobs/<name>.toml`.
    pub fn job(&self, name: &str, toml: &str) -> PathBuf {
        let dir = self.path().join("jobs");
        std::fs::create_dir_all(&dir).expect("jobs directory");
        let path = dir.join(format!("{name}.toml"));
        std::fs::write(&path, toml).expect("write a job spec");
        path
    }

    /// Runs `sluice <args>` to completion.
    pub fn run(&self, args: &[&str]) -> Run {
        Run(self.sluice().args(args).output().expect("run sluice"))
    }

    /// Batches `job` has committed so far, every worker's; 0 before its first run.
    pub async fn batches(&self, conn: &mut sqlx::PgConnection, job: &str) -> i64 {
        sqlx::query_scalar(
            "SELECT coalesce(sum(batches), 0)::bigint FROM sluice.backfill_ranges WHERE job = $1",
        )
        .bind(job)
        .fetch_one(conn)
        .await
        .unwrap_or(0)
    }

    /// Waits until `job` has committed `at_least` batches, however long a loaded machine
    /// takes to start its worker; fails the test after a minute.
    pub async fn wait_for_batches(&self, job: &str, at_least: i64) {
        let mut conn = self.db.connect().await;
        let started = std::time::Instant::now();
        while self.batches(&mut conn, job).await < at_least {
            assert!(
                started.elapsed() < std::time::Duration::from_secs(60),
                "job {job} never committed {at_least} batch(es)"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
}

/// The outcome of one command.
#[derive(Debug)]
pub struct Run(pub Output);

impl Run {
    pub fn code(&self) -> Option<i32> {
        self.0.status.code()
    }

    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.0.stdout).into_owned()
    }

    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.0.stderr).into_owned()
    }

    /// Panics with both streams unless the exit code is `code`.
    pub fn expect_code(&self, code: u8) -> &Self {
        assert_eq!(
            self.code(),
            Some(i32::from(code)),
            "expected exit {code}\nstdout:\n{}\nstderr:\n{}",
            self.stdout(),
            self.stderr()
        );
        assert_each_cause_once(&self.stderr());
        self
    }
}

/// Every error line states each of its clauses once: a message that quotes its cause does not
/// also return it as a source, which the chain would print again.
pub fn assert_each_cause_once(stderr: &str) {
    for line in stderr.lines().filter(|l| l.contains(": error: ")) {
        let clauses: Vec<&str> = line
            .split(": ")
            .map(str::trim)
            .filter(|c| c.len() >= 12)
            .collect();
        for (i, clause) in clauses.iter().enumerate() {
            assert!(
                !clauses[i + 1..].contains(clause),
                "`{clause}` is said twice in: {line}"
            );
        }
    }
}
