//! The schema runner: loads migration files, compares them with the history recorded in the
//! database, and applies or reverts them one transaction at a time, under an advisory lock and
//! lock-timeout guards. Emits progress as events; never prints.
