//! The runner's Prometheus metrics (`--metrics-file`), for node_exporter's textfile collector:
//! migration durations, retries and failures at the end of `up` or `down`; the migration
//! running now (written when it starts, so "running for more than 5 minutes" can alert);
//! pending migrations (`check`) and schema drift (`drift`).

use super::error::CliError;
use std::path::PathBuf;

use crate::error::RunnerError;
use crate::event::{Direction, Event};
use crate::plan::{Entry, State};
use metrics::{counter, gauge, histogram};
use sluice_common::metrics::Exporter;

#[derive(Debug)]
pub struct RunMetrics {
    exporter: Option<Exporter>,
}

impl RunMetrics {
    pub fn start(file: Option<PathBuf>) -> Result<Self, CliError> {
        Ok(Self {
            exporter: Exporter::install(None, file)?,
        })
    }

    pub fn event(&self, event: &Event) {
        if self.exporter.is_none() {
            return;
        }
        match event {
            Event::Started { id, .. } => {
                #[expect(clippy::cast_precision_loss, reason = "seconds since 1970 fit a float")]
                gauge!("sluice_migration_running_since_timestamp_seconds", "migration" => id.clone())
                    .set(chrono::Utc::now().timestamp() as f64);
                self.write();
            }
            Event::Finished {
                id,
                direction,
                duration,
            } => {
                gauge!("sluice_migration_running_since_timestamp_seconds", "migration" => id.clone())
                    .set(0.0);
                let direction = direction_label(*direction);
                histogram!("sluice_migration_duration_seconds", "migration" => id.clone(), "direction" => direction)
                    .record(duration.as_secs_f64());
                counter!("sluice_migrations_total", "direction" => direction).increment(1);
            }
            Event::Retrying { id, .. } => {
                counter!("sluice_migration_retries_total", "migration" => id.clone()).increment(1);
            }
            _ => {}
        }
    }

    /// `check`: what is pending, and what of history drifted (edited, missing, out of
    /// order).
    pub fn check(&self, entries: &[Entry<'_>]) {
        let count = |wanted: fn(&State) -> bool| {
            #[expect(clippy::cast_precision_loss, reason = "a migration count is small")]
            let n = entries.iter().filter(|e| wanted(&e.state)).count() as f64;
            n
        };
        gauge!("sluice_migrations_pending").set(count(|s| {
            matches!(s, State::Pending | State::Partial { .. })
        }));
        gauge!("sluice_migrations_history_drift").set(count(|s| {
            matches!(s, State::Edited { .. } | State::Missing | State::OutOfOrder)
        }));
        self.write();
    }

    /// `drift`: whether the live schema differs, and by how many lines.
    pub fn drift(&self, differences: usize) {
        gauge!("sluice_schema_drift").set(if differences > 0 { 1.0 } else { 0.0 });
        #[expect(clippy::cast_precision_loss, reason = "a difference count is small")]
        gauge!("sluice_schema_drift_differences").set(differences as f64);
        self.write();
    }

    fn write(&self) {
        if let Some(exporter) = &self.exporter {
            exporter.write_file();
        }
    }

    /// Records the run's outcome and writes the file.
    pub fn finish(&self, command: &'static str, error: Option<&RunnerError>) {
        let Some(exporter) = &self.exporter else {
            return;
        };
        if let Some(error) = error {
            counter!("sluice_migration_failures_total", "command" => command, "exit_code" => error.exit_code().to_string())
                .increment(1);
        }
        gauge!("sluice_runner_last_run_success", "command" => command).set(if error.is_none() {
            1.0
        } else {
            0.0
        });
        #[expect(clippy::cast_precision_loss, reason = "seconds since 1970 fit a float")]
        gauge!("sluice_runner_last_run_timestamp_seconds", "command" => command)
            .set(chrono::Utc::now().timestamp() as f64);
        exporter.write_file();
    }
}

fn direction_label(direction: Direction) -> &'static str {
    match direction {
        Direction::Up => "up",
        Direction::Down => "down",
        Direction::Repeat => "repeat",
    }
}
