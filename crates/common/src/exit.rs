//! Exit codes shared by `sluice` and `sluice-backfill`, documented in the README.
//!
//! Scripts, CI and Kubernetes act on these numbers, so they never change meaning once released.

/// Everything asked for was done (or there was nothing to do).
pub const OK: u8 = 0;
/// An unexpected failure: a migration or batch failed for a reason that is not retryable.
pub const FAILED: u8 = 1;
/// The command line was wrong (clap's own code for usage errors).
pub const USAGE: u8 = 2;
/// A file sluice reads is invalid: `sluice.toml`, a migration file, a job spec.
pub const INVALID_INPUT: u8 = 3;
/// PostgreSQL could not be reached or refused the login.
pub const DATABASE_UNAVAILABLE: u8 = 4;
/// Another runner holds sluice's lock and did not release it within `--lock-wait`.
pub const LOCK_HELD: u8 = 5;
/// Recorded history and the files disagree: an applied migration was edited or removed, or a
/// new one is older than the newest applied one.
pub const HISTORY_DRIFT: u8 = 6;
/// `sluice check`: migrations are pending; `sluice-backfill status --wait`: the job did not end
/// within `--timeout`.
pub const PENDING: u8 = 7;
/// A safety gate stopped the run: a backfill the migration requires is not complete, or lint
/// found an unapproved dangerous change.
pub const BLOCKED: u8 = 8;
/// `sluice drift`: the live schema differs from the one the migrations produce.
pub const SCHEMA_DRIFT: u8 = 9;
/// Stopped by a signal after recording progress; running the same command again resumes. 75 is
/// `EX_TEMPFAIL` from sysexits.h: "try again later". (A backfill that reaches its run window's
/// end or its time limit stopped as planned: that is [`OK`].)
pub const INTERRUPTED: u8 = 75;

/// Every code with its name and meaning: the `--help` footers and the README's table (a test
/// keeps the README equal to this list).
pub const ALL: &[(u8, &str, &str)] = &[
    (
        OK,
        "ok",
        "done, or nothing to do; also a backfill stopped by its run window or time limit (resumable)",
    ),
    (
        FAILED,
        "failed",
        "a migration or batch failed; the message says which and why",
    ),
    (
        USAGE,
        "usage",
        "the command line or an environment variable is wrong, or no database URL was given",
    ),
    (
        INVALID_INPUT,
        "invalid-input",
        "sluice.toml, a migration file, a job spec or the database URL is invalid, or a guard the job asks for cannot work",
    ),
    (
        DATABASE_UNAVAILABLE,
        "database-unavailable",
        "PostgreSQL unreachable for longer than connect_wait, or login refused",
    ),
    (
        LOCK_HELD,
        "lock-held",
        "another runner holds the lock, or took it while this run's connection was lost",
    ),
    (
        HISTORY_DRIFT,
        "history-drift",
        "applied migrations edited, missing, or a new one out of order",
    ),
    (
        PENDING,
        "pending",
        "sluice check (and `check --startup`, and an application's start-up check): migrations are pending; status --wait: the job did not end within --timeout",
    ),
    (
        BLOCKED,
        "blocked",
        "a backfill gate or a lint finding stopped the run, `sluice trace` found a blocking lock held while a large table is scanned or rewritten, or the backfill job was cancelled",
    ),
    (
        SCHEMA_DRIFT,
        "schema-drift",
        "sluice drift: the live schema differs from the one the migrations produce",
    ),
    (
        INTERRUPTED,
        "interrupted",
        "stopped by a signal after recording progress; run again to resume",
    ),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_distinct() {
        let mut codes: Vec<u8> = ALL.iter().map(|(code, _, _)| *code).collect();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), ALL.len());
    }
}
