//! The lint rules sluice reports, with why each matters, what to do instead and whether it
//! blocks: data only, so that directive parsing (approvals name a rule) and the linter both
//! read it without importing each other.

/// Lint settings.
#[derive(Debug, Clone)]
pub struct LintSettings {
    /// The PostgreSQL version the migrations target (some rules depend on it).
    pub pg_version: String,
}

impl Default for LintSettings {
    fn default() -> Self {
        Self {
            pg_version: DEFAULT_PG_VERSION.to_owned(),
        }
    }
}

/// Target PostgreSQL version when none is given.
pub const DEFAULT_PG_VERSION: &str = "15";

/// What a finding does to a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// `sluice up` refuses the file unless it approves the rule.
    Block,
    /// Reported, never blocks.
    Warn,
}

/// One documented rule: its name, why it matters, what to do instead, and sluice's default.
#[derive(Debug, Clone, Copy)]
pub struct RuleDoc {
    pub name: &'static str,
    pub why: &'static str,
    pub instead: &'static str,
    pub severity: Severity,
}

/// sluice's rule policy: every rule it reports, in the README's order.
pub const RULES: &[RuleDoc] = &[
    doc(
        "ban-drop-column",
        "old application versions still read the column; the drop also takes an ACCESS EXCLUSIVE lock",
        "stop using the column in the application first, then drop it in a contract migration with an approval",
        Severity::Block,
    ),
    doc(
        "ban-drop-table",
        "data is gone for good, and running application versions may still use the table",
        "rename or archive first; drop in a later, approved contract migration",
        Severity::Block,
    ),
    doc(
        "ban-drop-database",
        "drops everything",
        "never from a migration",
        Severity::Block,
    ),
    doc(
        "ban-writes-to-sluice-schema",
        "sluice's history, audit trail and backfill jobs decide what runs: a migration that deletes history rows makes the next `up` run them again, one that disables the audit trigger hides what was done",
        "leave sluice's tables to sluice (`sluice repair`, `sluice down`, `sluice-backfill reset`)",
        Severity::Block,
    ),
    doc(
        "ban-truncate",
        "deletes every row and takes an ACCESS EXCLUSIVE lock",
        "a backfill job with action = \"delete\" (in batches, resumable), or approve it for a table nobody uses",
        Severity::Block,
    ),
    doc(
        "ban-truncate-cascade",
        "also truncates every table that references this one",
        "truncate the tables you mean, each explicitly",
        Severity::Block,
    ),
    doc(
        "ban-update-without-where",
        "rewrites the whole table in one transaction: long locks, bloat, replication lag",
        "a backfill job (jobs/*.toml) in batches",
        Severity::Block,
    ),
    doc(
        "ban-delete-without-where",
        "deletes the whole table in one transaction",
        "a backfill job with action = \"delete\" and a `where`, or TRUNCATE with an approval",
        Severity::Block,
    ),
    doc(
        "blocking-lock-on-large-table",
        "`sluice trace` saw a lock that blocks reads or writes held while a table over --max-rows rows is scanned or rewritten",
        "the expand/contract patterns (a new column or table, NOT VALID then VALIDATE, CREATE INDEX CONCURRENTLY); approve it for a maintenance window",
        Severity::Block,
    ),
    doc(
        "changing-column-type",
        "most type changes rewrite the table under an ACCESS EXCLUSIVE lock",
        "sluice new --pattern change-type",
        Severity::Block,
    ),
    doc(
        "adding-not-nullable-field",
        "SET NOT NULL scans the whole table under an ACCESS EXCLUSIVE lock",
        "ADD CONSTRAINT ... CHECK (col IS NOT NULL) NOT VALID; VALIDATE CONSTRAINT; then SET NOT NULL",
        Severity::Block,
    ),
    doc(
        "adding-required-field",
        "a NOT NULL column without a default fails on a table with rows (and breaks old application inserts)",
        "add it nullable (or with a default), backfill, then constrain",
        Severity::Block,
    ),
    doc(
        "adding-field-with-default",
        "a volatile default rewrites the table",
        "add the column without the default, backfill, then set the default",
        Severity::Block,
    ),
    doc(
        "adding-foreign-key-constraint",
        "validating the foreign key locks both tables while it scans",
        "ADD CONSTRAINT ... NOT VALID, then VALIDATE CONSTRAINT in another migration",
        Severity::Block,
    ),
    doc(
        "constraint-missing-not-valid",
        "adding a CHECK or foreign key scans the table under lock",
        "ADD CONSTRAINT ... NOT VALID, then VALIDATE CONSTRAINT",
        Severity::Block,
    ),
    doc(
        "disallowed-unique-constraint",
        "ADD UNIQUE builds its index under an ACCESS EXCLUSIVE lock",
        "CREATE UNIQUE INDEX CONCURRENTLY, then ADD CONSTRAINT ... USING INDEX",
        Severity::Block,
    ),
    doc(
        "adding-serial-primary-key-field",
        "adding a primary key builds its index under lock",
        "CREATE UNIQUE INDEX CONCURRENTLY, then ADD PRIMARY KEY USING INDEX",
        Severity::Block,
    ),
    doc(
        "require-concurrent-index-creation",
        "CREATE INDEX blocks writes to an existing table while it builds",
        "CREATE INDEX CONCURRENTLY in a `-- sluice:no-transaction` file",
        Severity::Block,
    ),
    doc(
        "require-concurrent-index-deletion",
        "DROP INDEX blocks the table",
        "DROP INDEX CONCURRENTLY in a `-- sluice:no-transaction` file",
        Severity::Block,
    ),
    doc(
        "require-concurrent-reindex",
        "REINDEX blocks writes",
        "REINDEX ... CONCURRENTLY in a `-- sluice:no-transaction` file",
        Severity::Block,
    ),
    doc(
        "require-concurrent-partition-detach",
        "DETACH PARTITION takes an ACCESS EXCLUSIVE lock on the parent",
        "DETACH PARTITION ... CONCURRENTLY in a `-- sluice:no-transaction` file",
        Severity::Block,
    ),
    doc(
        "renaming-column",
        "running application versions still use the old name",
        "sluice new --pattern rename-column",
        Severity::Block,
    ),
    doc(
        "renaming-table",
        "running application versions still use the old name",
        "a view with the old name during the transition, or a copy",
        Severity::Block,
    ),
    doc(
        "renaming-object",
        "running application versions still use the old name",
        "keep the old name until no application version uses it",
        Severity::Block,
    ),
    doc(
        "ban-concurrent-index-creation-in-transaction",
        "CONCURRENTLY cannot run in a transaction; the migration would fail",
        "mark the file `-- sluice:no-transaction`",
        Severity::Block,
    ),
    doc(
        "transaction-nesting",
        "sluice already wraps each migration in a transaction",
        "remove BEGIN/COMMIT",
        Severity::Block,
    ),
    doc(
        "ban-uncommitted-transaction",
        "an open transaction at the end of the file",
        "remove BEGIN/COMMIT",
        Severity::Block,
    ),
    doc(
        "ban-drop-not-null",
        "old application versions may rely on the column never being NULL",
        "make sure every reader handles NULL first",
        Severity::Warn,
    ),
    doc(
        "ban-char-field",
        "char(n) pads and surprises",
        "text (with a CHECK on its length if needed)",
        Severity::Warn,
    ),
    doc(
        "prefer-bigint-over-int",
        "int keys run out",
        "bigint",
        Severity::Warn,
    ),
    doc(
        "prefer-bigint-over-smallint",
        "smallint runs out",
        "bigint",
        Severity::Warn,
    ),
    doc(
        "prefer-identity",
        "serial has ownership and permission quirks",
        "GENERATED ... AS IDENTITY",
        Severity::Warn,
    ),
    doc(
        "prefer-text-field",
        "varchar(n) changes need a rewrite",
        "text with a CHECK",
        Severity::Warn,
    ),
    doc(
        "prefer-timestamp-tz",
        "timestamp without time zone loses the offset",
        "timestamptz",
        Severity::Warn,
    ),
    doc(
        "prefer-robust-stmts",
        "a no-transaction statement that is re-run after a crash fails without IF [NOT] EXISTS",
        "IF NOT EXISTS / IF EXISTS",
        Severity::Warn,
    ),
    doc(
        "ban-create-domain-with-constraint",
        "domain constraints are checked on every table that uses the domain",
        "CHECK constraints on the tables",
        Severity::Warn,
    ),
    doc(
        "ban-alter-domain-with-add-constraint",
        "validates every column of the domain under lock",
        "CHECK constraints on the tables",
        Severity::Warn,
    ),
    doc(
        "ban-duplicate-column-assignments",
        "the statement fails",
        "assign each column once",
        Severity::Block,
    ),
    doc(
        "identifier-too-long",
        "PostgreSQL truncates names over 63 bytes",
        "a shorter name",
        Severity::Warn,
    ),
    doc(
        "require-enum-value-ordering",
        "enum values without BEFORE/AFTER go last",
        "ADD VALUE ... BEFORE/AFTER",
        Severity::Warn,
    ),
    doc(
        "unused-ignore",
        "a `-- squawk-ignore` comment that ignores nothing hides nothing, and misleads readers",
        "remove it, or approve the rule with `-- sluice:approve`",
        Severity::Warn,
    ),
    doc(
        "prefer-repack",
        "VACUUM FULL and CLUSTER lock the table for their whole run",
        "pg_repack",
        Severity::Warn,
    ),
    doc(
        "ban-drop-view",
        "running application versions may still use the view",
        "drop it in an approved contract migration",
        Severity::Warn,
    ),
    doc(
        "ban-drop-function",
        "running application versions may still call it",
        "drop it in an approved contract migration",
        Severity::Warn,
    ),
    doc(
        "ban-drop-type",
        "columns may still use the type",
        "drop it in an approved contract migration",
        Severity::Warn,
    ),
    doc(
        "ban-drop-default",
        "old application inserts may rely on it",
        "remove it after no application version relies on it",
        Severity::Warn,
    ),
    doc(
        "ban-drop-schema",
        "drops everything in it",
        "drop it in an approved migration",
        Severity::Block,
    ),
    doc(
        "ban-drop-sequence",
        "running inserts may still use it",
        "drop it in an approved contract migration",
        Severity::Warn,
    ),
    doc(
        "ban-drop-domain",
        "columns may still use it",
        "drop it in an approved contract migration",
        Severity::Warn,
    ),
    doc(
        "ban-drop-constraint",
        "running application versions may rely on it",
        "review",
        Severity::Warn,
    ),
    doc(
        "ban-drop-generated-expression",
        "readers may rely on the generated value",
        "review",
        Severity::Warn,
    ),
    doc(
        "ban-set-schema",
        "running application versions use the old schema",
        "expand → contract",
        Severity::Warn,
    ),
    doc(
        "ban-alter-identity",
        "changes how new keys are made",
        "review",
        Severity::Warn,
    ),
    doc(
        "ban-drop-extension",
        "drops everything that depends on it",
        "review",
        Severity::Warn,
    ),
];

const fn doc(
    name: &'static str,
    why: &'static str,
    instead: &'static str,
    severity: Severity,
) -> RuleDoc {
    RuleDoc {
        name,
        why,
        instead,
        severity,
    }
}

/// Whether `name` is a rule sluice knows (for `-- sluice:approve`).
pub fn is_known_rule(name: &str) -> bool {
    RULES.iter().any(|r| r.name == name)
}
