//! The backfill engine: keyed-range batch jobs (update, delete, copy into another table)
//! described in job specs, each batch committed
//! together with its progress row so that an interrupted job resumes exactly where it stopped.
//!
//! What an application that runs jobs in-process needs is public: a [`job`] read from its spec,
//! the [`engine`] that runs it and the [`event`]s it emits (with the [`pace`], [`throttle`]
//! reasons and [`lifecycle`] states they carry), its [`error`]s, what a job would do
//! ([`plan`]), the operations on a running job ([`ops`]: status, pause, resume, cancel, reset),
//! the hours it may run in ([`window`]) and who is acting ([`audit`]). Everything else serves
//! those; the `sluice-backfill` program's command line is [`cli`] (the `cli` feature).

pub mod audit;
mod catalog;
mod context;
mod copy_target;
pub mod engine;
pub mod error;
pub mod event;
mod fragment;
pub mod job;
mod keyspace;
mod keytext;
pub mod lifecycle;
mod load;
pub mod ops;
pub mod pace;
pub mod plan;
mod preflight;
mod probe;
mod ranges;
mod session;
mod sizing;
mod split;
mod sql;
mod state;
mod stepping;
pub mod throttle;
mod verify;
pub mod window;
mod worker;

#[cfg(feature = "cli")]
pub mod cli;
