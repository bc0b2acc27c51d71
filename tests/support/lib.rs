//! Support for sluice's integration tests.
//!
//! - [`server`]: the PostgreSQL server the tests use: `DATABASE_URL` when it is set, otherwise a
//!   throwaway cluster started from the installed binaries and removed when the tests end.
//! - [`TestDb`]: a fresh database per test, so tests run in parallel.
//! - [`bin`]: the paths of the `sluice` and `sluice-backfill` binaries, built and current.

pub mod bin;
mod cluster;
mod testdb;

pub use cluster::{Server, server};
pub use testdb::TestDb;
