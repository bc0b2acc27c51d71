//! The backfill engine: keyed-range batch jobs (update, delete, copy into another table)
//! described in job specs, each batch committed
//! together with its progress row so that an interrupted job resumes exactly where it stopped.

pub mod audit;
pub mod catalog;
mod context;
pub mod copy_target;
pub mod engine;
pub mod error;
pub mod event;
pub mod fragment;
pub mod job;
pub mod keyspace;
mod keytext;
pub mod lifecycle;
pub mod load;
pub mod ops;
pub mod pace;
pub mod plan;
pub mod preflight;
pub mod probe;
pub mod ranges;
mod session;
pub mod sizing;
pub mod split;
pub mod sql;
pub mod state;
pub mod stepping;
pub mod throttle;
mod verify;
pub mod window;
mod worker;
