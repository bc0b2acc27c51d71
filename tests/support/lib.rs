//! Support for sluice's integration tests.
//!
//! - [`server`]: the PostgreSQL server the tests use: `DATABASE_URL` when it is set, otherwise a
//!   throwaway cluster started from the installed binaries and removed when the tests end.
//! - [`TestDb`]: a fresh database per test, so tests run in parallel.
//! - [`Project`]: a scratch project directory with its own database, and the CLI run in it.
//! - [`catalog`]: catalog snapshots for comparing schemas.
//! - [`activity`]: what other sessions are doing, to act at the moment a statement runs.
//! - [`bin`]: the paths of the `sluice` and `sluice-backfill` binaries, built and current.

pub mod activity;
pub mod bin;
pub mod catalog;
mod project;
mod testdb;

pub use project::{Project, Run};
pub use sluice_throwaway::{
    PoolMode, Pooler, PrivateServer, Server, StopMode, prefer_durable_server,
};
pub use testdb::TestDb;

/// The server the tests use (see [`sluice_throwaway::server`]).
pub fn server() -> &'static Server {
    sluice_throwaway::server("sluice tests")
}

/// A hand-written backfill of [`TestDb::bench_table`] for the benchmarks to compare with: one
/// `UPDATE` per `batch`-key range, each committed on its own (psql's autocommit), written to
/// `path`.
pub fn write_loop_script(path: &std::path::Path, rows: i64, batch: i64) {
    let script: String = (0..rows)
        .step_by(usize::try_from(batch).expect("a positive batch"))
        .map(|start| {
            format!(
                "UPDATE t SET b = md5(a::text) WHERE id > {start} AND id <= {};\n",
                start + batch
            )
        })
        .collect();
    std::fs::write(path, script).expect("write the loop script");
}
