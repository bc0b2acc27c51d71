//! Lint: dangerous operations found with squawk's PostgreSQL parser and rule set, plus
//! sluice's own AST rules for what squawk does not cover (TRUNCATE, UPDATE or DELETE without
//! WHERE). Each rule either blocks (`sluice up` refuses the file unless it approves the rule
//! with a reason) or only warns. Pure: scripts in, findings out.

use std::path::PathBuf;

use squawk_linter::{Linter, Rule, Version};
use squawk_syntax::ast::{self, AstNode};

pub use crate::rules::{DEFAULT_PG_VERSION, LintSettings, RULES, RuleDoc, Severity, is_known_rule};
use crate::script::{RunMode, Script, rolls_back_to_savepoint};

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
    /// The table the finding's statement alters or indexes (`schema.table`, quoted), if any.
    #[serde(skip)]
    pub table: Option<String>,
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

/// squawk rules sluice does not report: sluice sets lock_timeout and statement_timeout on
/// every statement itself.
const NOT_REPORTED: &[Rule] = &[
    Rule::RequireTimeoutSettings,
    Rule::RequireLockTimeout,
    Rule::RequireStatementTimeout,
];

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
    // A file that writes its own BEGIN/COMMIT is linted as written: squawk follows its blocks.
    let mode = script.mode();
    linter.settings.assume_in_transaction = mode == RunMode::Transaction;
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
    // squawk takes `ROLLBACK TO SAVEPOINT` for the end of a transaction; it is not one.
    let savepoint_rollbacks: Vec<usize> = parse
        .tree()
        .stmts()
        .filter(|stmt| matches!(stmt, ast::Stmt::Rollback(r) if rolls_back_to_savepoint(r)))
        .map(|stmt| usize::from(stmt.syntax().text_range().start()))
        .collect();
    found.retain(|(offset, rule, ..)| {
        rule != "transaction-nesting" || !savepoint_rollbacks.contains(offset)
    });
    found.extend(own_rules(&parse.tree(), mode.is_atomic()));
    found.sort_by_key(|(offset, ..)| *offset);
    let tree = parse.tree();
    found
        .into_iter()
        .map(|(offset, rule, message, help)| {
            let (line, column) = line_column(&script.sql, offset);
            Finding {
                table: table_at(&tree, offset),
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

/// Rules about locking or scanning a table that holds rows: on a table created earlier in the
/// same run (so still empty), what they warn about costs nothing.
const EMPTY_TABLE_SAFE: &[&str] = &[
    "adding-field-with-default",
    "adding-foreign-key-constraint",
    "adding-not-nullable-field",
    "adding-required-field",
    "adding-serial-primary-key-field",
    "changing-column-type",
    "constraint-missing-not-valid",
    "disallowed-unique-constraint",
    "require-concurrent-index-creation",
];

/// Tables a script creates (`schema.table`, quoted), for [`pass_new_tables`].
pub fn created_tables(script: &Script) -> Vec<String> {
    script.created_tables().to_vec()
}

/// Marks as passed the findings about locking or scanning a table that an earlier migration
/// of the same run created (`created`: table → that migration's id). squawk sees one file at a
/// time, so it cannot know that table is empty.
pub fn pass_new_tables(
    findings: &mut [Finding],
    created: &std::collections::HashMap<String, String>,
) {
    for finding in findings.iter_mut().filter(|f| f.approved.is_none()) {
        let Some(by) = finding.table.as_ref().and_then(|t| created.get(t)) else {
            continue;
        };
        if EMPTY_TABLE_SAFE.contains(&finding.rule.as_str()) {
            finding.approved = Some(format!(
                "{} is created by {by} earlier in this run, so it is empty",
                finding.table.as_deref().unwrap_or_default()
            ));
        }
    }
}

/// The table the statement at `offset` alters or indexes.
fn table_at(file: &ast::SourceFile, offset: usize) -> Option<String> {
    let stmt = file.stmts().find(|s| {
        let range = s.syntax().text_range();
        usize::from(range.start()) <= offset && offset <= usize::from(range.end())
    })?;
    let text = match stmt {
        ast::Stmt::AlterTable(alter) => alter.table_relation_name()?.syntax().text().to_string(),
        ast::Stmt::CreateIndex(create) => create.table_relation_name()?.syntax().text().to_string(),
        _ => return None,
    };
    qualified(&text)
}

fn qualified(text: &str) -> Option<String> {
    crate::script::qualified_table(text)
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
                _ if writes_sluice_schema(&stmt) => (
                    "ban-writes-to-sluice-schema",
                    "the statement changes sluice's own tables (its history, audit trail or backfill jobs)",
                    "leave them to sluice: `sluice repair`, `sluice down`, `sluice-backfill reset`; never from a migration",
                ),
                ast::Stmt::Truncate(_) => ("ban-truncate", "TRUNCATE deletes every row under an ACCESS EXCLUSIVE lock", "delete in batches with a backfill job (jobs/<name>.toml with action = \"delete\" and a `where`), or approve it"),
                ast::Stmt::Update(u) if u.where_clause_or_current_of().is_none() => (
                    "ban-update-without-where",
                    "UPDATE without WHERE rewrites the whole table in one transaction",
                    "use a backfill job (jobs/*.toml), which updates in batches",
                ),
                ast::Stmt::Delete(d) if d.where_clause_or_current_of().is_none() => (
                    "ban-delete-without-where",
                    "DELETE without WHERE deletes the whole table in one transaction",
                    "delete in batches with a backfill job (jobs/<name>.toml with action = \"delete\" and a `where`), or approve it",
                ),
                _ => return None,
            };
            let offset = usize::from(stmt.syntax().text_range().start());
            Some((offset, rule.to_owned(), message.to_owned(), Some(help.to_owned())))
        })
        .collect()
}

/// Statements that write, alter or drop something in schema `sluice`: a migration that
/// deletes the history makes the next `up` run everything again, and one that disables the
/// audit trigger hides what was done. Only the schema's default name: a file does not know
/// the `--schema` it will run under.
fn writes_sluice_schema(stmt: &ast::Stmt) -> bool {
    use ast::Stmt as S;
    let writes = matches!(
        stmt,
        S::Insert(_)
            | S::Update(_)
            | S::Delete(_)
            | S::Merge(_)
            | S::Truncate(_)
            | S::AlterTable(_)
            | S::DropTable(_)
            | S::DropSchema(_)
            | S::AlterSchema(_)
            | S::CreateTrigger(_)
            | S::DropTrigger(_)
            | S::AlterTrigger(_)
            | S::CreateRule(_)
            | S::Copy(_)
            | S::Grant(_)
            | S::Revoke(_)
            | S::CreatePolicy(_)
            | S::AlterPolicy(_)
            | S::DropPolicy(_)
    );
    writes && names_sluice_schema(stmt.syntax())
}

/// Whether a name in the statement is qualified with schema `sluice` (or is the schema).
fn names_sluice_schema(node: &squawk_syntax::SyntaxNode) -> bool {
    let tokens: Vec<String> = node
        .descendants_with_tokens()
        .filter_map(|e| e.into_token())
        .filter(|t| !t.kind().is_trivia())
        .map(|t| t.text().trim_matches('"').to_owned())
        .collect();
    tokens.windows(2).any(|w| w[0] == "sluice" && w[1] == ".")
        || matches!(
            node.kind(),
            squawk_syntax::SyntaxKind::DROP_SCHEMA | squawk_syntax::SyntaxKind::ALTER_SCHEMA
        ) && tokens.iter().any(|t| t == "sluice")
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
        "ban-writes-to-sluice-schema",
        // Reported by `sluice trace`, which sees locks and sizes; approved with the same directive.
        "blocking-lock-on-large-table",
    ];

    #[test]
    fn tables_are_named_the_same_however_they_are_written() {
        assert_eq!(qualified("t").as_deref(), Some("\"public\".\"t\""));
        assert_eq!(qualified("public.T").as_deref(), Some("\"public\".\"t\""));
        assert_eq!(
            qualified("ONLY app.\"Acc\"").as_deref(),
            Some("\"app\".\"Acc\"")
        );
        let created = created_tables(
            &Script::parse(Path::new("m.sql"), "CREATE TABLE App.T (id int);").unwrap(),
        );
        assert_eq!(created, ["\"app\".\"t\""]);
    }

    #[test]
    fn only_scan_and_lock_findings_on_a_new_table_pass() {
        let script = Script::parse(
            Path::new("m.sql"),
            "ALTER TABLE t ADD CONSTRAINT c CHECK (a > 0);\nALTER TABLE t DROP COLUMN b;\nALTER TABLE other ADD CONSTRAINT d CHECK (a > 0);\n",
        )
        .unwrap();
        let mut findings = lint(&script, &LintSettings::default());
        let created =
            std::collections::HashMap::from([("\"public\".\"t\"".to_owned(), "0001_t".to_owned())]);
        pass_new_tables(&mut findings, &created);
        let blocking: Vec<&str> = findings
            .iter()
            .filter(|f| f.blocks())
            .map(|f| f.rule.as_str())
            .collect();
        assert!(blocking.contains(&"ban-drop-column"), "{blocking:?}");
        assert_eq!(
            blocking
                .iter()
                .filter(|r| **r == "constraint-missing-not-valid")
                .count(),
            1,
            "only the other table's constraint still blocks: {blocking:?}"
        );
    }

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
    fn writes_to_sluices_own_schema_are_found() {
        let banned = "ban-writes-to-sluice-schema".to_owned();
        for sql in [
            "DELETE FROM sluice.migrations WHERE version > 3;",
            "ALTER TABLE sluice.audit DISABLE TRIGGER ALL;",
            "UPDATE \"sluice\".backfill_jobs SET state = 'completed' WHERE name = 'x';",
            "DROP TRIGGER audit_guard ON sluice.audit;",
            "TRUNCATE sluice.audit;",
            "DROP SCHEMA sluice CASCADE;",
            "INSERT INTO sluice.migrations (version) VALUES (9);",
        ] {
            assert!(rules(sql).contains(&banned), "not found: {sql}");
        }
        for sql in [
            "SELECT * FROM sluice.migrations;",
            "UPDATE accounts SET note = 'sluice.migrations' WHERE id = 1;",
            "ALTER TABLE accounts ADD COLUMN sluice int;",
        ] {
            assert!(!rules(sql).contains(&banned), "found: {sql}");
        }
    }

    #[test]
    fn a_savepoint_rollback_is_not_the_end_of_a_transaction() {
        let found = rules(
            "CREATE TABLE a (id int);\nSAVEPOINT s1;\nCREATE TABLE b (id int);\n\
             ROLLBACK TO SAVEPOINT s1;\nRELEASE SAVEPOINT s1;\n",
        );
        assert!(
            !found.contains(&"transaction-nesting".to_owned()),
            "{found:?}"
        );
        assert!(rules("ROLLBACK;").contains(&"transaction-nesting".to_owned()));
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
