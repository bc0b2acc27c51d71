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
    /// The statements, split on first use: parsing is the costly part of loading, and files
    /// that are already applied never need it.
    analysis: OnceLock<Result<Option<Vec<Statement>>, ScriptError>>,
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
    #[error("{}: {source}", path.display())]
    Directive {
        path: PathBuf,
        #[source]
        source: directive::DirectiveError,
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
    #[error(
        "{}: line {line}: `{statement}` controls the transaction itself; sluice runs each \
         migration in a transaction of its own, so remove it (or mark the file \
         `-- sluice:no-transaction` and run each statement on its own)",
        path.display()
    )]
    TransactionControl {
        path: PathBuf,
        line: usize,
        statement: String,
    },
}

impl Script {
    /// Reads a file's text: directives and checksum. Statements are split on first use
    /// ([`Script::analyse`]).
    pub fn parse(path: &Path, text: &str) -> Result<Self, ScriptError> {
        let sql = text.strip_prefix('\u{feff}').unwrap_or(text).to_owned();
        let directives = directive::parse(&sql).map_err(|source| ScriptError::Directive {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(Self {
            path: path.to_path_buf(),
            checksum: checksum(&sql),
            directives,
            analysis: OnceLock::new(),
            sql,
        })
    }

    /// Splits the file into statements and checks them: a no-transaction file must parse
    /// cleanly, and a transactional one must not control the transaction itself. Cached.
    pub fn analyse(&self) -> Result<(), ScriptError> {
        self.analysis().as_ref().map(drop).map_err(Clone::clone)
    }

    /// The statements, when the parser could split the file (always, for a no-transaction
    /// file that passed [`Script::analyse`]); `None` means "send the file as a whole".
    pub fn statements(&self) -> Option<&[Statement]> {
        self.analysis().as_ref().ok().and_then(|s| s.as_deref())
    }

    fn analysis(&self) -> &Result<Option<Vec<Statement>>, ScriptError> {
        self.analysis.get_or_init(|| {
            let split = split(&self.sql);
            if self.directives.no_transaction {
                if let Err((line, message)) = &split {
                    return Err(ScriptError::Unsplittable {
                        path: self.path.clone(),
                        line: *line,
                        message: message.clone(),
                    });
                }
            } else if let Ok(parsed) = &split {
                refuse_transaction_control(&self.path, parsed)?;
            }
            Ok(split
                .ok()
                .map(|s| s.into_iter().map(|p| p.statement).collect()))
        })
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
    digest.iter().map(|b| format!("{b:02x}")).collect()
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
    is_transaction_control: bool,
}

/// Splits SQL into statements with squawk's PostgreSQL parser (dollar quotes, comments and
/// string literals are understood; never a split on `;`). Errors give a line and a message.
fn split(sql: &str) -> Result<Vec<Parsed>, (usize, String)> {
    let parse = squawk_syntax::SourceFile::parse(sql);
    if let Some(error) = parse.errors().first() {
        let offset = usize::from(error.range().start());
        return Err((line_at(sql, offset), error.message().to_owned()));
    }
    Ok(parse
        .tree()
        .stmts()
        .filter_map(|stmt| {
            let range = stmt.syntax().text_range();
            let start = usize::from(range.start());
            let text = sql[start..usize::from(range.end())].trim();
            if text.is_empty() || text == ";" {
                return None;
            }
            Some(Parsed {
                is_transaction_control: matches!(
                    stmt,
                    ast::Stmt::Begin(_) | ast::Stmt::Commit(_) | ast::Stmt::Rollback(_)
                ),
                statement: Statement {
                    sql: text.to_owned(),
                    line: line_at(sql, start),
                    concurrent_index: concurrent_index(&stmt),
                },
            })
        })
        .collect())
}

fn refuse_transaction_control(path: &Path, statements: &[Parsed]) -> Result<(), ScriptError> {
    match statements.iter().find(|p| p.is_transaction_control) {
        Some(p) => Err(ScriptError::TransactionControl {
            path: path.to_path_buf(),
            line: p.statement.line,
            statement: p.statement.sql.clone(),
        }),
        None => Ok(()),
    }
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
    fn refuses_transaction_control_in_transactional_files() {
        let err = parse("BEGIN;\nCREATE TABLE t (id int);\nCOMMIT;\n").unwrap_err();
        assert!(
            matches!(err, ScriptError::TransactionControl { line: 1, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("migrations/0001_x.sql"));
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
    fn an_unparsable_transactional_file_is_left_to_postgresql() {
        let script =
            parse("CREATE TABLE t (id int);\nsome syntax squawk does not know;\n").unwrap();
        assert!(script.statements().is_none());
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
