//! Every way a `sluice` command fails, each with its exit code. A new kind of failure needs a
//! variant here before `?` compiles, and a variant needs its code before `exit_code` does:
//! nothing falls through to exit 1 by accident.

use crate::drift::DriftError;
use crate::error::RunnerError;
use crate::scratch::ScratchError;
use crate::since::SinceError;
use crate::trace::TraceError;
use crate::verify::CheckError;
use sluice_common::config::ConfigError;
use sluice_common::db::DbError;
use sluice_common::exit;
use sluice_common::metrics::MetricsError;

use super::new::NewError;

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Runner(#[from] RunnerError),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Metrics(#[from] MetricsError),
    #[error(transparent)]
    New(#[from] NewError),
    #[error(transparent)]
    Since(#[from] SinceError),
    #[error(transparent)]
    Drift(#[from] DriftError),
    #[error(transparent)]
    Scratch(#[from] ScratchError),
    #[error(transparent)]
    Trace(#[from] TraceError),
    #[error(transparent)]
    Check(#[from] CheckError),
    /// A file sluice was asked to write (`lint --write-baseline`) could not be written.
    #[error("{0}")]
    Write(String),
    /// Writing JSON output failed.
    #[error("writing the JSON output failed")]
    Json(#[from] serde_json::Error),
}

impl CliError {
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Runner(e) => e.exit_code(),
            Self::Config(e) => e.exit_code(),
            Self::Db(e) => e.exit_code(),
            Self::Metrics(e) => e.exit_code(),
            Self::New(e) => e.exit_code(),
            Self::Since(_) => exit::USAGE,
            Self::Drift(e) => e.exit_code(),
            Self::Scratch(e) => e.exit_code(),
            Self::Trace(e) => e.exit_code(),
            Self::Check(_) => exit::INVALID_INPUT,
            Self::Write(_) | Self::Json(_) => exit::FAILED,
        }
    }
}
