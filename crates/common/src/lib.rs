//! What both sluice programs share: configuration and its precedence, PostgreSQL connections,
//! password redaction, identifier quoting, retry classification and backoff, the shutdown
//! handle, and the named exit codes.
//!
//! The command-line edge (clap arguments, the signal handler, the tracing subscriber) lives
//! behind the `cli` feature so that engine code cannot reach for it.

pub mod backfill_gate;
pub mod config;
pub mod db;
pub mod display;
pub mod environment;
pub mod exit;
pub mod hosts;
pub mod ident;
pub mod input;
pub mod jobspec;
pub mod lock;
#[cfg(feature = "cli")]
pub mod metrics;
mod pooler;
pub mod redact;
pub mod retry;
pub mod scratch;
pub mod shutdown;

#[cfg(feature = "cli")]
pub mod cli;
#[cfg(feature = "cli")]
pub mod output;
#[cfg(feature = "cli")]
pub mod telemetry;
