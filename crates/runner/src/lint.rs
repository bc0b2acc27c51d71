//! Lint: dangerous operations found with squawk's PostgreSQL parser and rule set, plus
//! sluice's own AST rules for what squawk does not cover (TRUNCATE, UPDATE or DELETE without
//! WHERE). Each rule either blocks (`sluice up` refuses the file unless it approves the rule
//! with a reason) or only warns. Pure: scripts in, findings out.

use std::path::PathBuf;

use squawk_linter::{Linter, Rule, Version};
use squawk_syntax::ast::{self, AstNode};

use crate::script::Script;

/// What a finding does to a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// `sluice up` refuses the file unless it approves the rule.
    Block,
    /// Reported, never blocks.
    Warn,
}

/// One finding in one file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Finding {
    pub path: PathBuf,
    pub line: usize,
    pub column: usize,
    pub rule: String,
    pub message: String,
    pub help: Option<String>,
    pub severity: Severity,
    /// The reason given by the file's `-- sluice:approve <rule> reason: …`, if any.
    pub approved: Option<String>,
}

impl Finding {
    /// Blocks a run: blocking and not approved.
    pub fn blocks(&self) -> bool {
        self.severity == Severity::Block && self.approved.is_none()
    }
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{}:{} {}: {}",
            self.path.display(),
            self.line,
            self.column,
            self.rule,
            self.message
        )
    }
}

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
        "ban-truncate",
        "deletes every row and takes an ACCESS EXCLUSIVE lock",
        "delete in batches with a backfill job, or approve it for a table nobody uses",
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
        "a batched job, or TRUNCATE with an approval",
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

/// squawk rules sluice does not report: sluice sets lock_timeout and statement_timeout on
/// every statement itself.
const NOT_REPORTED: &[Rule] = &[
    Rule::RequireTimeoutSettings,
    Rule::RequireLockTimeout,
    Rule::RequireStatementTimeout,
];

/// Whether `name` is a rule sluice knows (for `-- sluice:approve`).
pub fn is_known_rule(name: &str) -> bool {
    RULES.iter().any(|r| r.name == name)
}

fn policy(name: &str) -> Severity {
    RULES
        .iter()
        .find(|r| r.name == name)
        .map_or(Severity::Warn, |r| r.severity)
}

/// Lints one script, marking findings its approvals cover.
pub fn lint(script: &Script, settings: &LintSettings) -> Vec<Finding> {
    let parse = squawk_syntax::SourceFile::parse(&script.sql);
    let mut linter = Linter::with_rules(&[], NOT_REPORTED);
    linter.settings.assume_in_transaction = !script.directives.no_transaction;
    if let Ok(version) = settings.pg_version.parse::<Version>() {
        linter.settings.pg_version = version;
    }
    let mut found: Vec<(usize, String, String, Option<String>)> = linter
        .lint(&parse, &script.sql)
        .into_iter()
        .map(|v| {
            (
                usize::from(v.text_range.start()),
                v.code.to_string(),
                v.message,
                v.help,
            )
        })
        .collect();
    found.extend(own_rules(&parse.tree(), !script.directives.no_transaction));
    found.sort_by_key(|(offset, ..)| *offset);
    found
        .into_iter()
        .map(|(offset, rule, message, help)| {
            let (line, column) = line_column(&script.sql, offset);
            Finding {
                path: script.path.clone(),
                line,
                column,
                approved: script
                    .directives
                    .approvals
                    .iter()
                    .find(|a| a.rule == rule)
                    .map(|a| a.reason.clone()),
                severity: policy(&rule),
                rule,
                message,
                help,
            }
        })
        .collect()
}

/// sluice's own rules, on the same syntax tree.
fn own_rules(
    file: &ast::SourceFile,
    in_transaction: bool,
) -> Vec<(usize, String, String, Option<String>)> {
    // squawk reports a concurrent build in a transaction only in files of several statements
    // (a lone statement may run outside one elsewhere); in sluice a transactional file always
    // runs in a transaction.
    let single = file.stmts().count() == 1;
    file.stmts()
        .filter_map(|stmt| {
            let (rule, message, help) = match &stmt {
                ast::Stmt::CreateIndex(c) if in_transaction && single && c.concurrently_token().is_some() => (
                    "ban-concurrent-index-creation-in-transaction",
                    "CREATE INDEX CONCURRENTLY cannot run inside a transaction, and sluice runs this file in one",
                    "add `-- sluice:no-transaction` at the top of the file",
                ),
                ast::Stmt::Truncate(_) => ("ban-truncate", "TRUNCATE deletes every row under an ACCESS EXCLUSIVE lock", "delete in batches with a backfill job, or approve it"),
                ast::Stmt::Update(u) if u.where_clause_or_current_of().is_none() => (
                    "ban-update-without-where",
                    "UPDATE without WHERE rewrites the whole table in one transaction",
                    "use a backfill job (jobs/*.toml), which updates in batches",
                ),
                ast::Stmt::Delete(d) if d.where_clause_or_current_of().is_none() => (
                    "ban-delete-without-where",
                    "DELETE without WHERE deletes the whole table in one transaction",
                    "delete in batches, or approve it",
                ),
                _ => return None,
            };
            let offset = usize::from(stmt.syntax().text_range().start());
            Some((offset, rule.to_owned(), message.to_owned(), Some(help.to_owned())))
        })
        .collect()
}

fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// sluice's own AST rules.
    const OWN: &[&str] = &[
        "ban-concurrent-index-creation-in-transaction",
        "ban-truncate",
        "ban-update-without-where",
        "ban-delete-without-where",
    ];

    #[test]
    fn the_rule_table_names_exactly_the_rules_that_run() {
        for rule in RULES {
            assert!(
                OWN.contains(&rule.name)
                    || enum_iterator::all::<Rule>().any(|r| r.to_string() == rule.name),
                "the table documents `{}`, which no linter reports",
                rule.name
            );
        }
        let undocumented: Vec<String> = enum_iterator::all::<Rule>()
            .filter(|r| !r.is_opt_in() && !NOT_REPORTED.contains(r))
            .map(|r| r.to_string())
            .filter(|name| !is_known_rule(name))
            .collect();
        assert!(
            undocumented.is_empty(),
            "rules that run but are not in the table: {undocumented:?}"
        );
    }
    use std::path::Path;

    fn findings(sql: &str) -> Vec<Finding> {
        let script = Script::parse(Path::new("m.sql"), sql).unwrap();
        lint(&script, &LintSettings::default())
    }

    fn rules(sql: &str) -> Vec<String> {
        findings(sql).into_iter().map(|f| f.rule).collect()
    }

    #[test]
    fn finds_squawk_rules_with_positions() {
        let found = findings("CREATE TABLE t (id bigint);\nALTER TABLE t DROP COLUMN id;\n");
        let drop = found.iter().find(|f| f.rule == "ban-drop-column").unwrap();
        assert_eq!((drop.line, drop.column), (2, 15));
        assert!(drop.blocks());
    }

    #[test]
    fn finds_sluice_rules() {
        assert!(rules("TRUNCATE t;").contains(&"ban-truncate".to_owned()));
        assert!(rules("UPDATE t SET a = 1;").contains(&"ban-update-without-where".to_owned()));
        assert!(rules("DELETE FROM t;").contains(&"ban-delete-without-where".to_owned()));
        assert!(
            !rules("UPDATE t SET a = 1 WHERE id = 2;")
                .contains(&"ban-update-without-where".to_owned())
        );
    }

    #[test]
    fn timeouts_are_not_reported_because_sluice_sets_them() {
        let found = rules("CREATE INDEX CONCURRENTLY i ON t (a);");
        assert!(
            !found
                .iter()
                .any(|r| r.starts_with("require-") && r.ends_with("timeout")),
            "{found:?}"
        );
    }

    #[test]
    fn the_not_valid_then_validate_pattern_passes() {
        let found = rules(
            "-- sluice:no-transaction\nALTER TABLE t ADD CONSTRAINT c CHECK (x IS NOT NULL) NOT VALID;\n\
             ALTER TABLE t VALIDATE CONSTRAINT c;\nALTER TABLE t ALTER COLUMN x SET NOT NULL;\n",
        );
        assert!(
            !found.contains(&"adding-not-nullable-field".to_owned()),
            "{found:?}"
        );
        assert!(
            rules("ALTER TABLE t ALTER COLUMN x SET NOT NULL;")
                .contains(&"adding-not-nullable-field".to_owned())
        );
    }

    #[test]
    fn an_approval_with_a_reason_lifts_the_block() {
        let found = findings(
            "-- sluice:approve ban-drop-column reason: unused since v42\nALTER TABLE t DROP COLUMN x;\n",
        );
        let drop = found.iter().find(|f| f.rule == "ban-drop-column").unwrap();
        assert_eq!(drop.approved.as_deref(), Some("unused since v42"));
        assert!(!drop.blocks());
    }

    #[test]
    fn every_documented_rule_is_unique() {
        let mut names: Vec<&str> = RULES.iter().map(|r| r.name).collect();
        names.sort_unstable();
        let before = names.len();
        names.dedup();
        assert_eq!(before, names.len());
    }
}
