//! `sluice trace`: what each pending migration would lock and rewrite, found by running it on a
//! scratch database, and what that means on the real one, sized from its catalog.
//!
//! This module holds the data and the pure judgments (what a lock mode blocks, how long it is
//! held, whether it is too much for the table's size); `observe` runs the statements and
//! records locks and rewrites, `sizes` reads the real database's statistics and measures the
//! scratch server's scan and rewrite rates.

mod observe;
mod sizes;

use std::collections::BTreeMap;

pub use observe::{TraceError, run};
pub use sizes::{Rates, TableSize};

/// The lint-rule name a file approves to let a blocking lock on a large table through.
pub const RULE: &str = "blocking-lock-on-large-table";

/// Default of `--max-rows`: a blocking lock held while a table this large (by the real
/// database's estimate) is scanned or rewritten stops the trace.
pub const DEFAULT_MAX_ROWS: i64 = 1_000_000;

/// What a lock mode keeps other sessions from doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Blocks {
    /// Only schema changes and maintenance that need a stronger lock.
    SchemaChanges,
    /// Writes (INSERT, UPDATE, DELETE); reads proceed.
    Writes,
    /// Reads and writes.
    ReadsAndWrites,
}

impl Blocks {
    /// What the mode blocks, in words, and the category.
    pub fn of(mode: &str) -> (Self, &'static str) {
        match mode {
            "AccessShareLock" => (
                Self::SchemaChanges,
                "only ACCESS EXCLUSIVE requests (DROP, a rewriting ALTER TABLE); reads and writes proceed",
            ),
            "RowShareLock" => (
                Self::SchemaChanges,
                "EXCLUSIVE and ACCESS EXCLUSIVE requests; reads and writes proceed",
            ),
            "RowExclusiveLock" => (
                Self::SchemaChanges,
                "SHARE and stronger requests (CREATE INDEX, table rewrites); reads and writes proceed",
            ),
            "ShareUpdateExclusiveLock" => (
                Self::SchemaChanges,
                "VACUUM, ANALYZE, CREATE INDEX CONCURRENTLY and other schema changes; reads and writes proceed",
            ),
            "ShareLock" => (
                Self::Writes,
                "writes (INSERT, UPDATE, DELETE); reads proceed",
            ),
            "ShareRowExclusiveLock" => (
                Self::Writes,
                "writes (INSERT, UPDATE, DELETE) and other schema changes; reads proceed",
            ),
            "ExclusiveLock" => (
                Self::Writes,
                "writes and SELECT ... FOR UPDATE/SHARE; plain reads proceed",
            ),
            "AccessExclusiveLock" => (Self::ReadsAndWrites, "everything: reads and writes"),
            _ => (Self::SchemaChanges, "(an unknown lock mode)"),
        }
    }

    /// PostgreSQL's order of the table lock modes, weakest first (each conflicts with at least
    /// what the one before does).
    pub fn strength(mode: &str) -> usize {
        const ORDER: [&str; 8] = [
            "AccessShareLock",
            "RowShareLock",
            "RowExclusiveLock",
            "ShareUpdateExclusiveLock",
            "ShareLock",
            "ShareRowExclusiveLock",
            "ExclusiveLock",
            "AccessExclusiveLock",
        ];
        ORDER.iter().position(|m| *m == mode).unwrap_or(0)
    }

    /// Whether the application notices: its reads or writes wait.
    pub fn hurts(self) -> bool {
        self != Self::SchemaChanges
    }
}

/// How long a lock is held.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Held {
    /// Until the statement ends (it runs outside a transaction).
    Statement,
    /// Until the migration's transaction commits.
    Transaction,
}

/// One lock a statement took.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Lock {
    /// `schema.table`, as PostgreSQL names it.
    pub relation: String,
    /// `pg_locks.mode`, e.g. `AccessExclusiveLock`.
    pub mode: String,
    pub blocks: Blocks,
    pub held: Held,
}

/// The long part of a statement, when it has one.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case", tag = "kind", content = "relation")]
pub enum Work {
    /// The table's file was replaced: every row rewritten (seen in `pg_class.relfilenode`).
    Rewrite(String),
    /// Every row read: a validation, a NOT NULL check (from the statement's kind).
    Scan(String),
    /// An index built: every row read and sorted.
    IndexBuild(String),
}

impl Work {
    pub fn relation(&self) -> &str {
        match self {
            Self::Rewrite(r) | Self::Scan(r) | Self::IndexBuild(r) => r,
        }
    }
}

/// What one statement did on the scratch database.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Observed {
    pub line: usize,
    pub sql: String,
    /// Locks the statement took (in a transaction: those it added to what was held).
    pub locks: Vec<Lock>,
    pub work: Vec<Work>,
    /// The statement ran outside a transaction and its locks were watched from another
    /// session; a statement that ends at once may hold them too briefly to be seen.
    pub watched: bool,
}

/// One statement's verdict on the real database.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Judged {
    #[serde(flatten)]
    pub observed: Observed,
    /// Sizes of the relations it locks or works on, in the real database (absent: created by
    /// the migrations, so empty there).
    pub sizes: BTreeMap<String, TableSize>,
    /// Seconds its long part would take on the real tables (an estimate).
    pub estimate_seconds: Option<f64>,
    /// Blocking locks held while a table larger than `--max-rows` is scanned or rewritten.
    pub too_long: Vec<Lock>,
    /// The file approves it (`-- sluice:approve blocking-lock-on-large-table`).
    pub approved: bool,
}

impl Judged {
    /// Whether it stops the trace (exit 8).
    pub fn blocks_the_trace(&self) -> bool {
        !self.too_long.is_empty() && !self.approved
    }
}

/// One migration's trace.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Traced {
    pub id: String,
    pub file: String,
    /// How sluice runs it ([`crate::script::RunMode::describe`]).
    pub runs: &'static str,
    pub statements: Vec<Judged>,
}

/// The whole trace.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Trace {
    pub migrations: Vec<Traced>,
    pub max_rows: i64,
    pub rates: Rates,
    /// Where the scratch database was, in words.
    pub scratch: String,
}

impl Trace {
    pub fn blocked(&self) -> bool {
        self.migrations
            .iter()
            .flat_map(|m| &m.statements)
            .any(Judged::blocks_the_trace)
    }
}

/// Judges a migration's statements against the real sizes: a lock that blocks reads or writes
/// is too long when, while it is held, a table over `max_rows` rows is scanned or rewritten
/// (by the statement itself or, in a transaction, by any later statement of it). Pure.
pub fn judge(
    observed: Vec<Observed>,
    sizes: &BTreeMap<String, TableSize>,
    rates: &Rates,
    max_rows: i64,
    approved: bool,
) -> Vec<Judged> {
    let large = |relation: &str| sizes.get(relation).is_some_and(|s| s.rows > max_rows);
    // Only work on tables the real database has: a new table is empty there.
    let estimate = |work: &[Work]| -> Option<f64> {
        let seconds: Vec<f64> = work
            .iter()
            .filter_map(|w| sizes.get(w.relation()).map(|s| rates.seconds(w, s.bytes)))
            .collect();
        (!seconds.is_empty()).then(|| seconds.iter().sum())
    };
    // Long work still to come in the transaction, from each statement on.
    let long_from: Vec<bool> = {
        let mut later = false;
        let mut flags: Vec<bool> = observed
            .iter()
            .rev()
            .map(|o| {
                later = later || o.work.iter().any(|w| large(w.relation()));
                later
            })
            .collect();
        flags.reverse();
        flags
    };
    observed
        .into_iter()
        .enumerate()
        .map(|(i, o)| {
            let own_long = o.work.iter().any(|w| large(w.relation()));
            let too_long = o
                .locks
                .iter()
                .filter(|l| l.blocks.hurts() && sizes.contains_key(&l.relation))
                .filter(|l| match l.held {
                    Held::Statement => own_long,
                    Held::Transaction => long_from[i],
                })
                .cloned()
                .collect();
            let relations: BTreeMap<String, TableSize> = o
                .locks
                .iter()
                .map(|l| l.relation.as_str())
                .chain(o.work.iter().map(Work::relation))
                .filter_map(|r| sizes.get(r).map(|s| (r.to_owned(), s.clone())))
                .collect();
            Judged {
                estimate_seconds: estimate(&o.work),
                sizes: relations,
                too_long,
                approved,
                observed: o,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lock(relation: &str, mode: &str, held: Held) -> Lock {
        Lock {
            relation: relation.into(),
            mode: mode.into(),
            blocks: Blocks::of(mode).0,
            held,
        }
    }

    fn observed(locks: Vec<Lock>, work: Vec<Work>) -> Observed {
        Observed {
            line: 1,
            sql: "ALTER TABLE ...".into(),
            locks,
            work,
            watched: false,
        }
    }

    fn sizes() -> BTreeMap<String, TableSize> {
        BTreeMap::from([
            (
                "public.big".to_owned(),
                TableSize {
                    rows: 5_000_000,
                    bytes: 1 << 30,
                },
            ),
            (
                "public.small".to_owned(),
                TableSize {
                    rows: 10,
                    bytes: 8192,
                },
            ),
        ])
    }

    const RATES: Rates = Rates {
        scan_bytes_per_second: 100.0 * 1024.0 * 1024.0,
        rewrite_bytes_per_second: 50.0 * 1024.0 * 1024.0,
    };

    #[test]
    fn modes_are_ordered_by_strength() {
        assert!(Blocks::strength("AccessExclusiveLock") > Blocks::strength("ShareLock"));
        assert!(Blocks::strength("ShareLock") > Blocks::strength("ShareUpdateExclusiveLock"));
    }

    #[test]
    fn modes_say_what_they_block() {
        assert_eq!(Blocks::of("AccessExclusiveLock").0, Blocks::ReadsAndWrites);
        assert_eq!(Blocks::of("ShareLock").0, Blocks::Writes);
        assert_eq!(Blocks::of("ShareRowExclusiveLock").0, Blocks::Writes);
        assert!(!Blocks::of("ShareUpdateExclusiveLock").0.hurts());
        assert!(!Blocks::of("RowExclusiveLock").0.hurts());
    }

    #[test]
    fn a_rewrite_of_a_large_table_under_its_lock_is_too_long() {
        let judged = judge(
            vec![observed(
                vec![lock("public.big", "AccessExclusiveLock", Held::Transaction)],
                vec![Work::Rewrite("public.big".into())],
            )],
            &sizes(),
            &RATES,
            1_000_000,
            false,
        );
        assert_eq!(judged[0].too_long.len(), 1);
        assert!(judged[0].blocks_the_trace());
        // 1 GiB at 50 MiB/s.
        assert_eq!(judged[0].estimate_seconds, Some(20.48));
        let approved = judge(
            judged.into_iter().map(|j| j.observed).collect(),
            &sizes(),
            &RATES,
            1_000_000,
            true,
        );
        assert!(!approved[0].blocks_the_trace());
    }

    #[test]
    fn a_brief_lock_a_small_table_or_a_new_table_is_reported_not_blocking() {
        let judged = judge(
            vec![
                observed(
                    vec![lock("public.big", "AccessExclusiveLock", Held::Transaction)],
                    vec![],
                ),
                observed(
                    vec![lock(
                        "public.small",
                        "AccessExclusiveLock",
                        Held::Transaction,
                    )],
                    vec![Work::Rewrite("public.small".into())],
                ),
                observed(
                    vec![lock(
                        "public.fresh",
                        "AccessExclusiveLock",
                        Held::Transaction,
                    )],
                    vec![Work::Rewrite("public.fresh".into())],
                ),
            ],
            &sizes(),
            &RATES,
            1_000_000,
            false,
        );
        assert!(judged.iter().all(|j| !j.blocks_the_trace()), "{judged:#?}");
        assert_eq!(judged[0].estimate_seconds, None, "no long part");
        assert_eq!(
            judged[2].estimate_seconds, None,
            "a new table is empty in the real database"
        );
    }

    #[test]
    fn a_lock_held_to_the_end_of_a_transaction_spans_a_later_scan() {
        let judged = judge(
            vec![
                observed(
                    vec![lock(
                        "public.small",
                        "AccessExclusiveLock",
                        Held::Transaction,
                    )],
                    vec![],
                ),
                observed(
                    vec![lock(
                        "public.big",
                        "ShareUpdateExclusiveLock",
                        Held::Transaction,
                    )],
                    vec![Work::Scan("public.big".into())],
                ),
            ],
            &sizes(),
            &RATES,
            1_000_000,
            false,
        );
        assert!(
            judged[0].blocks_the_trace(),
            "small is locked while big is scanned"
        );
        assert!(
            !judged[1].blocks_the_trace(),
            "SHARE UPDATE EXCLUSIVE blocks neither reads nor writes"
        );
        // Outside a transaction, the lock ends with its statement.
        let alone = judge(
            vec![
                observed(
                    vec![lock("public.small", "AccessExclusiveLock", Held::Statement)],
                    vec![],
                ),
                observed(vec![], vec![Work::Scan("public.big".into())]),
            ],
            &sizes(),
            &RATES,
            1_000_000,
            false,
        );
        assert!(!alone[0].blocks_the_trace());
    }
}
