//! Simulated application traffic: writers that insert and update accounts the whole time,
//! first through the old shape (no email_normalized), then, after the "deploy", through the
//! new one. Every statement is timed and every error kept.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sqlx::{Connection, PgConnection};
use tokio::task::JoinHandle;

/// Which application version the writers behave as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Shape {
    /// Knows nothing of email_normalized (the trigger fills it).
    Old = 0,
    /// Writes email_normalized itself (the contract step drops the trigger).
    New = 1,
}

/// What the writers did.
#[derive(Debug, Clone, Default)]
pub struct TrafficReport {
    pub inserts: u64,
    pub updates: u64,
    pub errors: Vec<String>,
    /// The longest any single statement took.
    pub slowest: Duration,
}

/// Running writers.
#[derive(Debug)]
pub struct Traffic {
    stop: Arc<AtomicBool>,
    shape: Arc<AtomicU8>,
    inserts: Arc<AtomicU64>,
    updates: Arc<AtomicU64>,
    writers: Vec<JoinHandle<(Duration, Vec<String>)>>,
}

impl Traffic {
    /// Starts `count` writers against `url`, updating ids in `1..=max_id`.
    pub async fn start(url: &str, count: usize, max_id: i64) -> Result<Self, sqlx::Error> {
        let stop = Arc::new(AtomicBool::new(false));
        let shape = Arc::new(AtomicU8::new(Shape::Old as u8));
        let inserts = Arc::new(AtomicU64::new(0));
        let updates = Arc::new(AtomicU64::new(0));
        let mut writers = Vec::with_capacity(count);
        for seed in 0..count {
            let conn = PgConnection::connect(url).await?;
            let writer = Writer {
                conn,
                rng: fastrand::Rng::with_seed(seed as u64 + 1),
                max_id,
                stop: Arc::clone(&stop),
                shape: Arc::clone(&shape),
                inserts: Arc::clone(&inserts),
                updates: Arc::clone(&updates),
            };
            writers.push(tokio::spawn(writer.run()));
        }
        Ok(Self {
            stop,
            shape,
            inserts,
            updates,
            writers,
        })
    }

    /// Switches the writers to another application version.
    pub fn deploy(&self, shape: Shape) {
        self.shape.store(shape as u8, Ordering::SeqCst);
    }

    /// Stops the writers and collects what they saw.
    pub async fn stop(self) -> TrafficReport {
        self.stop.store(true, Ordering::SeqCst);
        let mut report = TrafficReport::default();
        for writer in self.writers {
            match writer.await {
                Ok((slowest, errors)) => {
                    report.slowest = report.slowest.max(slowest);
                    report.errors.extend(errors);
                }
                Err(e) => report.errors.push(format!("a writer task failed: {e}")),
            }
        }
        report.inserts = self.inserts.load(Ordering::SeqCst);
        report.updates = self.updates.load(Ordering::SeqCst);
        report
    }
}

struct Writer {
    conn: PgConnection,
    rng: fastrand::Rng,
    max_id: i64,
    stop: Arc<AtomicBool>,
    shape: Arc<AtomicU8>,
    inserts: Arc<AtomicU64>,
    updates: Arc<AtomicU64>,
}

impl Writer {
    async fn run(mut self) -> (Duration, Vec<String>) {
        let mut slowest = Duration::ZERO;
        let mut errors = Vec::new();
        while !self.stop.load(Ordering::SeqCst) {
            let new_shape = self.shape.load(Ordering::SeqCst) == Shape::New as u8;
            let insert = self.rng.bool();
            let email = format!(
                "Writer{}.{}@Example.com",
                self.rng.u32(..),
                self.rng.u32(..)
            );
            let started = Instant::now();
            let result = if insert {
                self.insert(&email, new_shape).await
            } else {
                self.update(&email, new_shape).await
            };
            slowest = slowest.max(started.elapsed());
            match result {
                Ok(()) if insert => _ = self.inserts.fetch_add(1, Ordering::SeqCst),
                Ok(()) => _ = self.updates.fetch_add(1, Ordering::SeqCst),
                Err(e) if errors.len() < 20 => errors.push(e.to_string()),
                Err(_) => {}
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let _ = self.conn.close().await;
        (slowest, errors)
    }

    async fn insert(&mut self, email: &str, new_shape: bool) -> Result<(), sqlx::Error> {
        let sql = if new_shape {
            "INSERT INTO accounts (email, email_normalized, display_name) VALUES ($1, lower($1), 'writer')"
        } else {
            "INSERT INTO accounts (email, display_name) VALUES ($1, 'writer')"
        };
        sqlx::query(sql)
            .bind(email)
            .execute(&mut self.conn)
            .await
            .map(drop)
    }

    async fn update(&mut self, email: &str, new_shape: bool) -> Result<(), sqlx::Error> {
        let id = self.rng.i64(1..=self.max_id);
        let sql = if new_shape {
            "UPDATE accounts SET email = $1, email_normalized = lower($1), updated_at = now() WHERE id = $2"
        } else {
            "UPDATE accounts SET email = $1, updated_at = now() WHERE id = $2"
        };
        sqlx::query(sql)
            .bind(email)
            .bind(id)
            .execute(&mut self.conn)
            .await
            .map(drop)
    }
}
