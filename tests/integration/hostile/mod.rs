//! Hostile and careless inputs (issue "never lie, never leak"): no password in any output, no
//! success reported for work not done, the README's exit code for every bad input.

mod backfill;
mod runner;
mod scratch;
mod secrets;
