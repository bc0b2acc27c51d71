//! sluice's integration tests: one binary, a module per area, every test against a real
//! PostgreSQL server (see `support/`).

mod backfill;
mod cli;
mod connect;
mod embedded;
mod environments;
mod expand_contract;
mod failover;
mod faults;
mod harness;
mod hostile;
mod lint;
mod manifests;
mod poolers;
mod replicas;
mod restarts_at_start;
mod retry;
mod runner;
