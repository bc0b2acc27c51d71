//! One SQL file: its text, checksum, directives and statements.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use sha2::{Digest, Sha256};
use sluice_common::ident::{Ident, QualifiedName};
use squawk_syntax::ast::{self, AstNode};

use crate::directive::{self, Directives};

/// A SQL file as loaded: parsed once, then only read.
#[derive(Debug, Clone)]
pub struct Script {
    pub path: PathBuf,
    pub sql: String,
    /// SHA-256 of the text with line endings normalised, in hex.
    pub checksum: String,
    pub directives: Directives,
    /// The statements and how they run, found on first use: parsing is the costly part of
    /// loading, and files that are already applied never need it.
    analysis: OnceLock<Result<Analysis, ScriptError>>,
}

/// A file's statements and how they run.
#[derive(Debug, Clone)]
struct Analysis {
    statements: Vec<Statement>,
    mode: RunMode,
    /// Tables the file creates, for lint's view of a run ([`Script::created_tables`]).
    created: Vec<String>,
}

/// How a file runs: as its own tool ran it, and atomically with its history row wherever
/// that is possible.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RunMode {
    /// In one transaction of sluice's, together with its history row.
    Transaction,
    /// The file is one `BEGIN ... COMMIT` block (after any `SET` lines), as golang-migrate
    /// and Atlas files often are: its statements run in one transaction of sluice's, with its
    /// history row, which is what the block meant.
    OwnTransaction,
    /// `-- sluice:no-transaction` (or diesel's `run_in_transaction = false`): statement by
    /// statement, outside a transaction, resumable.
    NoTransaction,
    /// The file manages its transactions itself (several blocks, or statements outside its
    /// block, such as a `CREATE INDEX CONCURRENTLY`): statement by statement as its tool ran
    /// it, each block one unit, resumable.
    OwnTransactions,
    /// The file is one statement that cannot run inside a transaction (`CREATE INDEX
    /// CONCURRENTLY`, `VACUUM`, ...), as golang-migrate directories hold them without a
    /// directive: it runs on its own, as its tool ran it.
    Alone,
}

impl RunMode {
    /// Whether the whole file runs in one transaction with its history row.
    pub fn is_atomic(self) -> bool {
        matches!(self, Self::Transaction | Self::OwnTransaction)
    }

    /// For `status`, `--dry-run` and logs.
    pub fn describe(self) -> &'static str {
        match self {
            Self::Transaction => "one transaction",
            Self::OwnTransaction => "one transaction (its own BEGIN ... COMMIT)",
            Self::NoTransaction => "no transaction, statement by statement",
            Self::OwnTransactions => {
                "statement by statement, its own BEGIN ... COMMIT blocks each as one unit"
            }
            Self::Alone => "no transaction: its one statement cannot run inside one",
        }
    }
}

/// One statement of a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    pub sql: String,
    /// 1-based line of the statement's first character in the file.
    pub line: usize,
    /// Set for `CREATE INDEX CONCURRENTLY`: a failed build leaves an INVALID index behind that
    /// must be dropped before the statement runs again.
    pub concurrent_index: Option<ConcurrentIndex>,
    /// PostgreSQL refuses it inside a transaction block (`CREATE INDEX CONCURRENTLY`, `VACUUM`).
    pub outside_only: bool,
    /// What it does to the session's transaction.
    pub control: Control,
}

/// The index a `CREATE INDEX CONCURRENTLY` builds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConcurrentIndex {
    pub name: Ident,
    /// The table's schema when the statement names one; otherwise the search path decides.
    pub schema: Option<Ident>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScriptError {
    #[error("{}: {error}", path.display())]
    Directive {
        path: PathBuf,
        error: directive::DirectiveError,
    },
    #[error(
        "{}: line {line}: {message}; a no-transaction file is run statement by statement, so \
         it must parse cleanly",
        path.display()
    )]
    Unsplittable {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("{}:{line}:{column}: {message}; nothing was run", path.display())]
    Syntax {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
}

impl Script {
    /// Reads a file's text: directives and checksum. Statements are split on first use
    /// ([`Script::analyse`]).
    pub fn parse(path: &Path, text: &str) -> Result<Self, ScriptError> {
        let sql = text.strip_prefix('\u{feff}').unwrap_or(text).to_owned();
        let directives = directive::parse(&sql).map_err(|error| ScriptError::Directive {
            path: path.to_path_buf(),
            error,
        })?;
        Ok(Self {
            path: path.to_path_buf(),
            checksum: checksum(&sql),
            directives,
            analysis: OnceLock::new(),
            sql,
        })
    }

    /// The same file run statement by statement outside a transaction, as Flyway runs a file
    /// that holds a statement PostgreSQL refuses inside one (`CREATE INDEX CONCURRENTLY`).
    pub fn outside_a_transaction(mut self) -> Self {
        self.directives.no_transaction = true;
        self.analysis = OnceLock::new();
        self
    }

    /// Splits the file into statements and checks them (every file must parse). Cached.
    pub fn analyse(&self) -> Result<(), ScriptError> {
        self.analysis().as_ref().map(drop).map_err(Clone::clone)
    }

    /// The statements to run, once the file parsed (an own `BEGIN`/`COMMIT` around the whole
    /// file is not among them: sluice's transaction takes its place).
    pub fn statements(&self) -> Option<&[Statement]> {
        self.analysis()
            .as_ref()
            .ok()
            .map(|a| a.statements.as_slice())
    }

    /// Tables the file creates (`schema.table`, quoted); none when it does not parse.
    pub fn created_tables(&self) -> &[String] {
        self.analysis()
            .as_ref()
            .map_or(&[], |a| a.created.as_slice())
    }

    /// How the file runs ([`RunMode`]); for a file that does not parse, what its directives
    /// say.
    pub fn mode(&self) -> RunMode {
        match self.analysis() {
            Ok(analysis) => analysis.mode,
            Err(_) if self.directives.no_transaction => RunMode::NoTransaction,
            Err(_) => RunMode::Transaction,
        }
    }

    /// [`Script::mode`] without keeping the file's statements when they were not split yet:
    /// for listing 10,000 pending files (`status --json`) in the memory the table takes.
    pub fn mode_of_listing(&self) -> RunMode {
        if self.analysis.get().is_some() {
            return self.mode();
        }
        match split(&self.sql) {
            Ok(parsed) => infer_mode(self.directives.no_transaction, parsed).mode,
            Err(_) if self.directives.no_transaction => RunMode::NoTransaction,
            Err(_) => RunMode::Transaction,
        }
    }

    /// Every file is parsed offline, whatever its mode, so that `validate`, `lint` and `up`
    /// find a syntax error (or a psql-only construct) before anything runs.
    fn analysis(&self) -> &Result<Analysis, ScriptError> {
        self.analysis.get_or_init(|| {
            let parsed = split(&self.sql).map_err(|error| {
                let (line, column) = line_and_column(&self.sql, error.offset);
                if self.directives.no_transaction && !error.unsupported {
                    ScriptError::Unsplittable {
                        path: self.path.clone(),
                        line,
                        message: error.message,
                    }
                } else {
                    ScriptError::Syntax {
                        path: self.path.clone(),
                        line,
                        column,
                        message: error.message,
                    }
                }
            })?;
            Ok(infer_mode(self.directives.no_transaction, parsed))
        })
    }

    /// Whether the file holds no statement at all (empty, or only comments): applying it
    /// records a migration that did nothing, which is worth a warning.
    pub fn is_empty(&self) -> bool {
        self.statements().is_some_and(<[Statement]>::is_empty)
    }

    /// The 1-based line of byte `offset` in the file.
    pub fn line_of(&self, offset: usize) -> usize {
        line_at(&self.sql, offset)
    }
}

/// SHA-256 of the text with CRLF and lone CR normalised to LF and any BOM dropped, so a
/// checkout with other line endings is not "edited".
pub fn checksum(text: &str) -> String {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let normalised = text.replace("\r\n", "\n").replace('\r', "\n");
    let digest = Sha256::digest(normalised.as_bytes());
    sluice_common::display::hex(&digest)
}

/// Checksum of the first `count` statements: lets a no-transaction migration that stopped
/// part-way resume after its not-yet-run statements were fixed, while refusing a change to any
/// statement that already ran.
pub fn prefix_checksum(statements: &[Statement], count: usize) -> String {
    let joined: Vec<&str> = statements
        .iter()
        .take(count)
        .map(|s| s.sql.as_str())
        .collect();
    checksum(&joined.join("\n;\n"))
}

struct Parsed {
    statement: Statement,
    /// The table a `CREATE TABLE` creates (`schema.table`, quoted).
    creates: Option<String>,
}

/// What a statement does to the session's transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    None,
    /// `SET ...` (session settings; harmless before a file's own `BEGIN`).
    Set,
    Begin,
    Commit,
    /// `ROLLBACK`, `PREPARE TRANSACTION`: ends a transaction some other way.
    Other,
}

/// How a file runs, from its directives and its statements' transaction control.
fn infer_mode(no_transaction: bool, parsed: Vec<Parsed>) -> Analysis {
    let controls: Vec<usize> = parsed
        .iter()
        .enumerate()
        .filter(|(_, p)| !matches!(p.statement.control, Control::None | Control::Set))
        .map(|(i, _)| i)
        .collect();
    let mode = match controls.as_slice() {
        _ if no_transaction => RunMode::NoTransaction,
        [] if parsed.len() == 1 && parsed[0].statement.outside_only => RunMode::Alone,
        [] => RunMode::Transaction,
        [begin, commit]
            if parsed[*begin].statement.control == Control::Begin
                && parsed[*commit].statement.control == Control::Commit
                && *commit == parsed.len() - 1
                && parsed[..*begin]
                    .iter()
                    .all(|p| p.statement.control == Control::Set) =>
        {
            RunMode::OwnTransaction
        }
        _ => RunMode::OwnTransactions,
    };
    let created = parsed.iter().filter_map(|p| p.creates.clone()).collect();
    let statements = parsed
        .into_iter()
        .filter(|p| {
            mode != RunMode::OwnTransaction
                || matches!(p.statement.control, Control::None | Control::Set)
        })
        .map(|p| p.statement)
        .collect();
    Analysis {
        statements,
        mode,
        created,
    }
}

/// Why a file cannot be split: where, and what to do.
struct SplitError {
    offset: usize,
    message: String,
    /// Not a syntax error but something only psql understands, or bytes PostgreSQL refuses.
    unsupported: bool,
}

/// Splits SQL into statements with squawk's PostgreSQL parser (dollar quotes, comments and
/// string literals are understood; never a split on `;`). Linear in the file's size: lines
/// are counted once, walking forward with the statements.
fn split(sql: &str) -> Result<Vec<Parsed>, SplitError> {
    if let Some(offset) = sql.find('\0') {
        return Err(SplitError {
            offset,
            message: "the file contains a NUL byte, which PostgreSQL cannot take (is it a \
                      binary or UTF-16 file?)"
                .to_owned(),
            unsupported: true,
        });
    }
    let parse = squawk_syntax::SourceFile::parse(sql);
    if let Some(error) = parse.errors().first() {
        let offset = usize::from(error.range().start());
        // Inline COPY data reads as garbage to the parser: name the COPY instead.
        if let Some(copy) = parse.tree().stmts().find(copies_from_stdin) {
            return Err(copy_from_stdin(usize::from(
                copy.syntax().text_range().start(),
            )));
        }
        return Err(explain_parse_error(sql, offset, error.message()));
    }
    let mut lines = LineCounter::new(sql);
    let mut parsed = Vec::new();
    for stmt in parse.tree().stmts() {
        let range = stmt.syntax().text_range();
        let start = usize::from(range.start());
        let text = sql[start..usize::from(range.end())].trim();
        if text.is_empty() || text == ";" {
            continue;
        }
        if copies_from_stdin(&stmt) {
            return Err(copy_from_stdin(start));
        }
        parsed.push(Parsed {
            creates: match &stmt {
                ast::Stmt::CreateTable(create) => create
                    .table_name()
                    .and_then(|name| qualified_table(&name.syntax().text().to_string())),
                _ => None,
            },
            statement: Statement {
                sql: text.to_owned(),
                line: lines.line_at(start),
                concurrent_index: concurrent_index(&stmt),
                outside_only: outside_only(&stmt),
                control: control(&stmt),
            },
        });
    }
    Ok(parsed)
}

/// A parse error in words a person can act on: the offending line, and for a psql
/// meta-command (`\i file`, `\set`), that it is psql's, not SQL.
fn explain_parse_error(sql: &str, offset: usize, message: &str) -> SplitError {
    let line_start = sql[..offset].rfind('\n').map_or(0, |at| at + 1);
    let line_end = sql[offset..].find('\n').map_or(sql.len(), |at| offset + at);
    let line_text = sql[line_start..line_end].trim();
    // The parser reports at the start of the statement it could not read; a backslash
    // command may begin on a later line of it.
    let mut statement_lines = Vec::new();
    for line in sql[line_start..].lines() {
        statement_lines.push(line);
        if line.trim_end().ends_with(';') {
            break;
        }
    }
    let meta = statement_lines
        .into_iter()
        .find(|line| line.trim_start().starts_with('\\'));
    if let Some(meta) = meta {
        let at = line_start + sql[line_start..].find(meta).unwrap_or(0);
        return SplitError {
            offset: at,
            message: format!(
                "`{}` is a psql meta-command, not SQL: sluice sends the file to the server, \
                 which does not know it (inline the SQL it stands for)",
                meta.trim()
            ),
            unsupported: true,
        };
    }
    SplitError {
        offset,
        message: format!("syntax error ({message}) in `{}`", excerpt(line_text)),
        unsupported: false,
    }
}

fn excerpt(text: &str) -> String {
    match text.char_indices().nth(80) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

/// `accounts`, `public.accounts`, `ONLY "Acc"` → the quoted `schema.table`, so that tables are
/// compared however a file writes them.
pub fn qualified_table(text: &str) -> Option<String> {
    let text = text
        .trim()
        .trim_start_matches("ONLY")
        .trim()
        .trim_end_matches('*')
        .trim();
    let public = Ident::new("public").ok()?;
    QualifiedName::parse(text, &public)
        .ok()
        .map(|name| name.to_string())
}

fn control(stmt: &ast::Stmt) -> Control {
    match stmt {
        ast::Stmt::Begin(_) => Control::Begin,
        ast::Stmt::Commit(_) => Control::Commit,
        // A savepoint works inside the transaction; it does not end it.
        ast::Stmt::Rollback(rollback) if rolls_back_to_savepoint(rollback) => Control::None,
        ast::Stmt::Rollback(_) | ast::Stmt::PrepareTransaction(_) => Control::Other,
        ast::Stmt::Set(_) => Control::Set,
        _ => Control::None,
    }
}

/// `ROLLBACK TO [SAVEPOINT] name`: undoes part of the transaction, which goes on.
pub fn rolls_back_to_savepoint(rollback: &ast::Rollback) -> bool {
    rollback
        .syntax()
        .descendants_with_tokens()
        .filter_map(|e| e.into_token())
        .any(|t| t.kind() == squawk_syntax::SyntaxKind::TO_KW)
}

/// Statements PostgreSQL refuses inside a transaction block.
fn outside_only(stmt: &ast::Stmt) -> bool {
    let concurrently = || {
        stmt.syntax()
            .text()
            .to_string()
            .to_ascii_uppercase()
            .split_whitespace()
            .any(|w| w == "CONCURRENTLY")
    };
    match stmt {
        ast::Stmt::Vacuum(_)
        | ast::Stmt::CreateDatabase(_)
        | ast::Stmt::DropDatabase(_)
        | ast::Stmt::AlterSystem(_)
        | ast::Stmt::CreateTablespace(_)
        | ast::Stmt::DropTablespace(_) => true,
        ast::Stmt::CreateIndex(_)
        | ast::Stmt::DropIndex(_)
        | ast::Stmt::Reindex(_)
        | ast::Stmt::AlterTable(_) => concurrently(),
        _ => false,
    }
}

fn copy_from_stdin(offset: usize) -> SplitError {
    SplitError {
        offset,
        message: "`COPY ... FROM STDIN` needs psql to send the data, and sluice sends SQL \
                  only: load the rows with INSERT ... VALUES, or COPY from a file the server \
                  can read"
            .to_owned(),
        unsupported: true,
    }
}

fn copies_from_stdin(stmt: &ast::Stmt) -> bool {
    let ast::Stmt::Copy(copy) = stmt else {
        return false;
    };
    let words: Vec<String> = copy
        .syntax()
        .text()
        .to_string()
        .split_whitespace()
        .map(str::to_ascii_lowercase)
        .collect();
    words
        .windows(2)
        .any(|w| w[0] == "from" && w[1].trim_end_matches(';') == "stdin")
}

/// 1-based line numbers of increasing byte offsets, counting each newline once.
struct LineCounter<'a> {
    text: &'a str,
    offset: usize,
    line: usize,
}

impl<'a> LineCounter<'a> {
    fn new(text: &'a str) -> Self {
        Self {
            text,
            offset: 0,
            line: 1,
        }
    }

    fn line_at(&mut self, offset: usize) -> usize {
        let end = offset.min(self.text.len()).max(self.offset);
        self.line += self.text.as_bytes()[self.offset..end]
            .iter()
            .filter(|b| **b == b'\n')
            .count();
        self.offset = end;
        self.line
    }
}

/// 1-based line and column (in characters) of byte `offset`.
fn line_and_column(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let line_start = text[..offset].rfind('\n').map_or(0, |at| at + 1);
    (
        line_at(text, offset),
        text[line_start..offset].chars().count() + 1,
    )
}

fn concurrent_index(stmt: &ast::Stmt) -> Option<ConcurrentIndex> {
    let ast::Stmt::CreateIndex(create) = stmt else {
        return None;
    };
    create.concurrently_token()?;
    let name = Ident::parse(&create.index()?.syntax().text().to_string()).ok()?;
    let table = create.table_relation_name()?.syntax().text().to_string();
    let placeholder = Ident::new("_").ok()?;
    let schema = QualifiedName::parse(table.trim_start_matches("ONLY ").trim(), &placeholder)
        .ok()
        .map(|q| q.schema)
        .filter(|s| *s != placeholder);
    Some(ConcurrentIndex { name, schema })
}

fn line_at(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Script, ScriptError> {
        let script = Script::parse(Path::new("migrations/0001_x.sql"), text)?;
        script.analyse()?;
        Ok(script)
    }

    #[test]
    fn checksums_ignore_line_endings_and_bom() {
        let unix = checksum("CREATE TABLE t (id int);\nSELECT 1;\n");
        assert_eq!(unix, checksum("CREATE TABLE t (id int);\r\nSELECT 1;\r\n"));
        assert_eq!(
            unix,
            checksum("\u{feff}CREATE TABLE t (id int);\nSELECT 1;\n")
        );
        assert_ne!(unix, checksum("CREATE TABLE t (id bigint);\nSELECT 1;\n"));
        assert_eq!(unix.len(), 64);
    }

    #[test]
    fn splits_statements_with_a_real_parser() {
        let script = parse(
            "-- header; with a semicolon\nCREATE TABLE t (a text DEFAULT ';');\n\
             CREATE FUNCTION f() RETURNS int AS $$ SELECT 1; $$ LANGUAGE sql;\n\nSELECT 'x;y';\n",
        )
        .unwrap();
        let statements = script.statements().unwrap();
        let lines: Vec<usize> = statements.iter().map(|s| s.line).collect();
        assert_eq!(lines, vec![2, 3, 5]);
        assert_eq!(
            statements[1].sql,
            "CREATE FUNCTION f() RETURNS int AS $$ SELECT 1; $$ LANGUAGE sql;"
        );
    }

    #[test]
    fn recognises_concurrent_index_builds() {
        let script = parse(
            "-- sluice:no-transaction\nCREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS \"Idx\" ON app.t (a);\n\
             CREATE INDEX CONCURRENTLY plain ON t (b);\nCREATE INDEX not_concurrent ON t (c);\n",
        )
        .unwrap();
        let statements = script.statements().unwrap();
        let first = statements[0].concurrent_index.clone().unwrap();
        assert_eq!(first.name.as_str(), "Idx");
        assert_eq!(first.schema.unwrap().as_str(), "app");
        let second = statements[1].concurrent_index.clone().unwrap();
        assert_eq!(second.name.as_str(), "plain");
        assert_eq!(second.schema, None);
        assert_eq!(statements[2].concurrent_index, None);
    }

    #[test]
    fn a_file_that_is_one_block_runs_as_one_transaction_without_its_begin_and_commit() {
        let script = parse(
            "-- golang-migrate style\nSET statement_timeout = 0;\nBEGIN;\nCREATE TABLE t (id int);\nINSERT INTO t VALUES (1);\nCOMMIT;\n",
        )
        .unwrap();
        assert_eq!(script.mode(), RunMode::OwnTransaction);
        let sql: Vec<&str> = script
            .statements()
            .unwrap()
            .iter()
            .map(|s| s.sql.as_str())
            .collect();
        assert_eq!(
            sql,
            [
                "SET statement_timeout = 0;",
                "CREATE TABLE t (id int);",
                "INSERT INTO t VALUES (1);"
            ]
        );
        let start = parse("START TRANSACTION;\nCREATE TABLE t (id int);\nEND;\n").unwrap();
        assert_eq!(start.mode(), RunMode::OwnTransaction);
    }

    #[test]
    fn a_file_that_manages_several_transactions_runs_statement_by_statement() {
        for sql in [
            "BEGIN;\nCREATE TABLE a (id int);\nCOMMIT;\nBEGIN;\nCREATE TABLE b (id int);\nCOMMIT;\n",
            "BEGIN;\nCREATE TABLE a (id int);\nCOMMIT;\nCREATE INDEX CONCURRENTLY i ON a (id);\n",
            "CREATE TABLE a (id int);\nBEGIN;\nCREATE TABLE b (id int);\nCOMMIT;\n",
            "BEGIN;\nCREATE TABLE a (id int);\nROLLBACK;\n",
        ] {
            let script = parse(sql).unwrap();
            assert_eq!(script.mode(), RunMode::OwnTransactions, "{sql}");
            assert!(!script.mode().is_atomic());
            // Every statement runs, its own BEGIN and COMMIT included.
            assert_eq!(
                script.statements().unwrap().len(),
                sql.matches(';').count(),
                "{sql}"
            );
        }
        let plain = parse("CREATE TABLE a (id int);\n").unwrap();
        assert_eq!(plain.mode(), RunMode::Transaction);
        for alone in [
            "CREATE INDEX CONCURRENTLY i ON a (id);\n",
            "DROP INDEX CONCURRENTLY IF EXISTS i;\n",
            "REINDEX INDEX CONCURRENTLY i;\n",
            "VACUUM a;\n",
        ] {
            assert_eq!(parse(alone).unwrap().mode(), RunMode::Alone, "{alone}");
        }
        // With company, a concurrent build cannot leave the file's transaction (lint says so).
        let two =
            parse("CREATE TABLE a (id int);\nCREATE INDEX CONCURRENTLY i ON a (id);\n").unwrap();
        assert_eq!(two.mode(), RunMode::Transaction);
        let directive = parse("-- sluice:no-transaction\nBEGIN;\nSELECT 1;\nCOMMIT;\n").unwrap();
        assert_eq!(directive.mode(), RunMode::NoTransaction);
    }

    #[test]
    fn savepoints_keep_a_file_one_transaction() {
        let script = parse(
            "CREATE TABLE a (id int);\nSAVEPOINT s1;\nCREATE TABLE b (id int);\n\
             ROLLBACK TO SAVEPOINT s1;\nROLLBACK TO s1;\nRELEASE s1;\n",
        )
        .unwrap();
        assert_eq!(script.mode(), RunMode::Transaction);
        assert_eq!(script.statements().unwrap().len(), 6);
    }

    #[test]
    fn an_unparsable_no_transaction_file_is_an_error() {
        let err =
            parse("-- sluice:no-transaction\nCREATE INDEX CONCURRENTLY i ON t (a);\nselec oops;\n")
                .unwrap_err();
        assert!(
            matches!(err, ScriptError::Unsplittable { line: 3, .. }),
            "{err}"
        );
    }

    #[test]
    fn an_unparsable_transactional_file_is_an_error_with_line_and_column() {
        let err = parse("CREATE TABLE t (id int);\n  CREATE TABLEE u (id int);\n").unwrap_err();
        assert!(
            matches!(
                err,
                ScriptError::Syntax {
                    line: 2,
                    column: 3,
                    ..
                }
            ),
            "{err}"
        );
        let text = err.to_string();
        assert!(
            text.starts_with("migrations/0001_x.sql:2:3: syntax error"),
            "{text}"
        );
        assert!(text.contains("CREATE TABLEE u"), "{text}");
    }

    #[test]
    fn psql_only_constructs_and_nul_bytes_are_errors_that_say_so() {
        let meta = parse("CREATE TABLE a (id int);\n\\i other.sql\n").unwrap_err();
        assert!(
            matches!(meta, ScriptError::Syntax { line: 2, .. }),
            "{meta}"
        );
        assert!(meta.to_string().contains("psql meta-command"), "{meta}");
        let copy = parse("COPY t (a) FROM STDIN;\n1\n2\n\\.\n").unwrap_err();
        assert!(copy.to_string().contains("COPY ... FROM STDIN"), "{copy}");
        let bare_copy = parse("CREATE TABLE t (a int);\nCOPY t FROM stdin;\n").unwrap_err();
        assert!(
            matches!(bare_copy, ScriptError::Syntax { line: 2, .. }),
            "{bare_copy}"
        );
        let nul = parse("CREATE TABLE a (id int);\0\n").unwrap_err();
        assert!(nul.to_string().contains("NUL byte"), "{nul}");
        let nul_no_tx = parse("-- sluice:no-transaction\nSELECT 1;\0\n").unwrap_err();
        assert!(nul_no_tx.to_string().contains("NUL byte"), "{nul_no_tx}");
    }

    #[test]
    fn splitting_is_linear_in_the_file_size() {
        // 20,000 one-line INSERTs: quadratic line counting took seconds here.
        let sql: String = (0..20_000)
            .map(|i| format!("INSERT INTO t VALUES ({i}, 'x');\n"))
            .collect();
        let script = parse(&format!("CREATE TABLE t (a int, b text);\n{sql}")).unwrap();
        let statements = script.statements().unwrap();
        assert_eq!(statements.len(), 20_001);
        assert_eq!(statements[20_000].line, 20_001);
    }

    #[test]
    fn directive_errors_name_the_file() {
        let err = parse("-- sluice:bogus\n").unwrap_err();
        assert!(
            err.to_string().starts_with("migrations/0001_x.sql: line 1"),
            "{err}"
        );
    }
}
