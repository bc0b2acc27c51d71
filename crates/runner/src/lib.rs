//! The schema runner: loads migration files, compares them with the history recorded in the
//! database, and applies or reverts them one transaction at a time, under an advisory lock and
//! lock-timeout guards. Emits progress as events; never prints.

pub mod apply;
pub mod backup;
#[cfg(feature = "lint")]
pub mod baseline;
pub mod catalog;
pub mod directive;
pub mod drift;
pub mod dryrun;
pub mod error;
pub mod event;
pub mod flyway;
pub mod guard;
pub mod history;
pub mod import;
pub mod index;
pub mod layout;
#[cfg(feature = "lint")]
pub mod lint;
pub mod migrator;
pub mod plan;
pub mod reach;
pub mod repeatable;
pub mod roundtrip;
pub mod rules;
pub mod scaffold;
pub mod schema_dump;
pub mod scratch;
pub mod script;
pub mod sections;
pub mod since;
pub mod source;
pub mod startup;
pub(crate) mod steps;
pub mod trace;
pub mod verify;
