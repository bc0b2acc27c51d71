//! The runner's Prometheus metrics (`--metrics-file`): migration durations, retries and
//! failures, written once at the end of `up` or `down` for node_exporter's textfile collector.

use std::path::PathBuf;

use metrics::{counter, gauge, histogram};
use sluice_common::metrics::Exporter;
use sluice_runner::error::RunnerError;
use sluice_runner::event::{Direction, Event};

#[derive(Debug)]
pub struct RunMetrics {
    exporter: Option<Exporter>,
}

impl RunMetrics {
    pub fn start(file: Option<PathBuf>) -> anyhow::Result<Self> {
        Ok(Self {
            exporter: Exporter::install(None, file)?,
        })
    }

    pub fn event(&self, event: &Event) {
        if self.exporter.is_none() {
            return;
        }
        match event {
            Event::Finished {
                id,
                direction,
                duration,
            } => {
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
    }
}
