//! The schema runner: loads migration files, compares them with the history recorded in the
//! database, and applies or reverts them one transaction at a time, under an advisory lock and
//! lock-timeout guards. Emits progress as events; never prints.
//!
//! What an application embeds (through `sluice-migrate`) is public: [`migrator::Migrator`]
//! and its settings, the [`event`]s it emits, its [`error`]s, the files it loads ([`source`],
//! [`layout`], [`repeatable`]), their [`plan`] against the [`history`], the start-up check
//! ([`startup`]), and the lint rule table and linter ([`rules`], [`lint`], the accepted findings
//! of a [`baseline`]). Everything else serves the
//! `sluice` program, whose command line is [`cli`] (the `cli` feature).

mod apply;
pub mod approval;
mod backup;
#[cfg(feature = "lint")]
pub mod baseline;
pub mod catalog;
mod directive;
#[cfg(feature = "cli")]
mod drift;
mod dryrun;
pub mod error;
pub mod event;
pub mod flyway;
pub mod guard;
pub mod history;
mod import;
mod index;
pub mod layout;
#[cfg(feature = "lint")]
pub mod lint;
pub mod migrator;
pub mod plan;
#[cfg(feature = "cli")]
mod reach;
pub mod repeatable;
#[cfg(feature = "cli")]
mod roundtrip;
pub mod rules;
#[cfg(feature = "cli")]
mod scaffold;
mod schema_dump;
#[cfg(feature = "cli")]
mod scratch;
mod script;
mod sections;
#[cfg(feature = "cli")]
mod since;
pub mod source;
pub mod startup;
mod steps;
#[cfg(feature = "cli")]
mod trace;
mod verify;

#[cfg(feature = "cli")]
pub mod cli;
