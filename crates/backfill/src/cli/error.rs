//! Every way a `sluice-backfill` command fails, each with its exit code. A new kind of failure
//! needs a variant here before `?` compiles, and a variant needs its code before `exit_code`
//! does: nothing falls through to exit 1 by accident.

use crate::error::BackfillError;
use crate::job::JobError;
use sluice_common::config::ConfigError;
use sluice_common::db::DbError;
use sluice_common::exit;
use sluice_common::metrics::MetricsError;

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Backfill(#[from] BackfillError),
    #[error(transparent)]
    Job(#[from] JobError),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Metrics(#[from] MetricsError),
    /// A flag whose value is wrong.
    #[error("{0}")]
    Usage(String),
    /// What the program prints (`completions`, `man`) could not be written.
    #[error("cannot write the output: {0}")]
    Output(std::io::Error),
}

impl CliError {
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Backfill(e) => e.exit_code(),
            Self::Job(_) => exit::INVALID_INPUT,
            Self::Config(e) => e.exit_code(),
            Self::Db(e) => e.exit_code(),
            Self::Metrics(e) => e.exit_code(),
            Self::Usage(_) => exit::USAGE,
            Self::Output(_) => exit::FAILED,
        }
    }
}
