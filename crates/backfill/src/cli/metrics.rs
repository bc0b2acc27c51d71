//! The backfill's Prometheus metrics, from the engine's events.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::engine::Outcome;
use crate::event::Event;
use metrics::{counter, gauge, histogram};
use sluice_common::metrics::Exporter;

/// How often the metrics file is rewritten during a run.
const FILE_EVERY: Duration = Duration::from_secs(5);

#[derive(Debug)]
pub struct Metrics {
    exporter: Option<Exporter>,
    job: String,
    written: Mutex<Instant>,
}

impl Metrics {
    pub fn start(
        job: &str,
        addr: Option<SocketAddr>,
        file: Option<PathBuf>,
    ) -> Result<Self, sluice_common::metrics::MetricsError> {
        Ok(Self {
            exporter: Exporter::install(addr, file)?,
            job: job.to_owned(),
            written: Mutex::new(Instant::now()),
        })
    }

    pub fn event(&self, event: &Event) {
        if self.exporter.is_none() {
            return;
        }
        let job = self.job.clone();
        match event {
            Event::Batch(batch) => {
                counter!("sluice_backfill_rows_updated_total", "job" => job.clone())
                    .increment(batch.rows_updated);
                counter!("sluice_backfill_rows_scanned_total", "job" => job.clone())
                    .increment(batch.rows_scanned);
                counter!("sluice_backfill_batches_total", "job" => job.clone()).increment(1);
                histogram!("sluice_backfill_batch_duration_seconds", "job" => job.clone())
                    .record(batch.duration.as_secs_f64());
                gauge!("sluice_backfill_batch_size", "job" => job)
                    .set(f64::from(batch.next_batch_size));
            }
            Event::Throttled { reason, waited } => {
                // A float counter: a gauge that only grows (metrics' counters are integers).
                gauge!("sluice_backfill_throttled_seconds_total", "job" => job.clone(), "reason" => reason.as_str())
                    .increment(waited.as_secs_f64());
                gauge!("sluice_backfill_throttling", "job" => job, "reason" => reason.as_str())
                    .set(0.0);
            }
            Event::LoadSignal { reason, .. } => {
                gauge!("sluice_backfill_throttling", "job" => job, "reason" => reason.as_str())
                    .set(1.0);
            }
            Event::Retrying { lock_timeout, .. } => {
                counter!("sluice_backfill_retries_total", "job" => job.clone()).increment(1);
                if *lock_timeout {
                    counter!("sluice_backfill_lock_timeouts_total", "job" => job).increment(1);
                }
            }
            Event::Claimed {
                previous_owner: Some(_),
                ..
            } => counter!("sluice_backfill_range_takeovers_total", "job" => job).increment(1),
            Event::Started { workers, .. } => {
                #[expect(clippy::cast_precision_loss, reason = "a worker count is small")]
                gauge!("sluice_backfill_workers", "job" => job).set(*workers as f64);
            }
            Event::JobTotals {
                rows_scanned,
                rows_updated,
            } => {
                // Every process's committed rows: the job's progress on one dashboard panel.
                #[expect(clippy::cast_precision_loss, reason = "a gauge is a float")]
                gauge!("sluice_backfill_job_rows_scanned", "job" => job.clone())
                    .set(*rows_scanned as f64);
                #[expect(clippy::cast_precision_loss, reason = "a gauge is a float")]
                gauge!("sluice_backfill_job_rows_updated", "job" => job).set(*rows_updated as f64);
            }
            Event::Pace(pace) => {
                gauge!("sluice_backfill_pace_duty_ratio", "job" => job.clone())
                    .set(pace.duty.unwrap_or(1.0));
                gauge!("sluice_backfill_pace_impact_ratio", "job" => job.clone())
                    .set(pace.impact.unwrap_or(0.0));
                gauge!("sluice_backfill_pace_other_sessions", "job" => job)
                    .set(f64::from(pace.others));
            }
            Event::Claimed { .. } | Event::Verified { .. } => {}
        }
        self.maybe_write();
    }

    /// The run's end: whether the job completed, and a last write of the file.
    pub fn finish(&self, outcome: Option<&Outcome>) {
        let Some(exporter) = &self.exporter else {
            return;
        };
        let completed = matches!(
            outcome,
            Some(Outcome::Completed { .. } | Outcome::AlreadyCompleted)
        );
        gauge!("sluice_backfill_completed", "job" => self.job.clone()).set(if completed {
            1.0
        } else {
            0.0
        });
        gauge!("sluice_backfill_workers", "job" => self.job.clone()).set(0.0);
        exporter.write_file();
    }

    fn maybe_write(&self) {
        let Some(exporter) = &self.exporter else {
            return;
        };
        let Ok(mut written) = self.written.lock() else {
            return;
        };
        if written.elapsed() >= FILE_EVERY {
            *written = Instant::now();
            exporter.write_file();
        }
    }
}
