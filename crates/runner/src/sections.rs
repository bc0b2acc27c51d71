//! Files that hold both directions, as dbmate, goose and sql-migrate write them: an up section
//! and a down section behind marker comments. Run whole, `up` would run the down section too
//! (a dbmate file's `DROP VIEW ...; DELETE FROM users` after its `CREATE VIEW`), so such a
//! file is split here, and a marker sluice does not know refuses the file: never run.
//!
//! | tool | markers |
//! |---|---|
//! | dbmate | `-- migrate:up [transaction:false]`, `-- migrate:down [transaction:false]` |
//! | goose | `-- +goose Up`, `-- +goose Down`, `-- +goose StatementBegin`/`StatementEnd`, `-- +goose NO TRANSACTION` |
//! | sql-migrate | `-- +migrate Up [notransaction]`, `-- +migrate Down [notransaction]`, `-- +migrate StatementBegin`/`StatementEnd` |
//!
//! Each section keeps the file's line numbers (the other lines are blanked), so errors point
//! into the file as written. `StatementBegin`/`StatementEnd` need nothing more: sluice splits
//! statements with a PostgreSQL parser, which reads dollar quotes and semicolons inside them.

/// A file's two sections.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sections {
    /// Which tool's markers: "dbmate", "goose" or "sql-migrate".
    pub tool: &'static str,
    /// The up section, other lines blank.
    pub up: String,
    /// The down section, other lines blank; `None` without a down marker. An empty one is a
    /// valid no-op, as dbmate has it.
    pub down: Option<String>,
    pub up_no_transaction: bool,
    pub down_no_transaction: bool,
}

/// Why a file's markers cannot be followed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SectionError {
    /// 1-based line of the marker (or statement) at fault.
    pub line: usize,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    Up,
    Down,
}

/// One marker line, read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Marker {
    Section {
        direction: Direction,
        no_transaction: bool,
    },
    StatementBegin,
    StatementEnd,
    NoTransaction,
}

/// Splits `text` when it holds section markers; `Ok(None)` when it holds none.
pub fn split(text: &str) -> Result<Option<Sections>, SectionError> {
    let lines: Vec<&str> = text.lines().collect();
    let mut tool: Option<&'static str> = None;
    let mut up: Option<(usize, bool)> = None;
    let mut down: Option<(usize, bool)> = None;
    let mut no_transaction = false;
    let mut open_statement: Option<usize> = None;
    for (index, line) in lines.iter().enumerate() {
        let number = index + 1;
        let Some((this_tool, marker)) = read_marker(line, number)? else {
            continue;
        };
        if let Some(tool) = tool.filter(|t| *t != this_tool) {
            return Err(error(
                number,
                format!(
                    "a {this_tool} marker in a file that uses {tool}'s: one tool's markers per file"
                ),
            ));
        }
        tool = Some(this_tool);
        match marker {
            Marker::Section {
                direction,
                no_transaction,
            } => {
                let slot = match direction {
                    Direction::Up => &mut up,
                    Direction::Down => &mut down,
                };
                if slot.is_some() {
                    return Err(error(
                        number,
                        "a second marker for the same section".to_owned(),
                    ));
                }
                *slot = Some((index, no_transaction));
            }
            Marker::StatementBegin if open_statement.is_some() => {
                return Err(error(
                    number,
                    "StatementBegin inside another StatementBegin".to_owned(),
                ));
            }
            Marker::StatementBegin => open_statement = Some(number),
            Marker::StatementEnd if open_statement.take().is_none() => {
                return Err(error(
                    number,
                    "StatementEnd without a StatementBegin".to_owned(),
                ));
            }
            Marker::StatementEnd => {}
            Marker::NoTransaction => no_transaction = true,
        }
    }
    let Some(tool) = tool else {
        return Ok(None);
    };
    if let Some(line) = open_statement {
        return Err(error(
            line,
            "StatementBegin without a StatementEnd".to_owned(),
        ));
    }
    let Some((up_at, up_no_tx)) = up else {
        return Err(error(
            down.map_or(1, |(at, _)| at + 1),
            format!("{tool} markers but no up marker: which part is the migration?"),
        ));
    };
    let (up_end, down_range) = match down {
        Some((down_at, _)) if down_at > up_at => (down_at, Some((down_at, lines.len()))),
        Some((down_at, _)) => (lines.len(), Some((down_at, up_at))),
        None => (lines.len(), None),
    };
    let first_section = down_range.map_or(up_at, |(start, _)| start.min(up_at));
    if let Some(line) = statement_before(&lines[..first_section]) {
        return Err(error(
            line,
            format!("a statement before the first {tool} marker belongs to no section"),
        ));
    }
    Ok(Some(Sections {
        tool,
        up: keep(&lines, up_at + 1, up_end),
        down: down_range.map(|(start, end)| keep(&lines, start + 1, end)),
        up_no_transaction: up_no_tx || no_transaction,
        down_no_transaction: down.is_some_and(|(_, no_tx)| no_tx) || no_transaction,
    }))
}

/// Reads a marker line: `-- migrate:...` (dbmate), `-- +goose ...`, `-- +migrate ...`
/// (sql-migrate). Any other comment is not a marker; a marker of a known tool that is not
/// understood is an error.
fn read_marker(line: &str, number: usize) -> Result<Option<(&'static str, Marker)>, SectionError> {
    let Some(comment) = line.trim_start().strip_prefix("--") else {
        return Ok(None);
    };
    let comment = comment.trim();
    let (tool, rest) = if let Some(rest) = comment.strip_prefix("migrate:") {
        ("dbmate", rest)
    } else if let Some(rest) = comment.strip_prefix("+goose") {
        ("goose", rest)
    } else if let Some(rest) = comment.strip_prefix("+migrate") {
        ("sql-migrate", rest)
    } else {
        return Ok(None);
    };
    let words: Vec<&str> = rest.split_whitespace().collect();
    let unknown = || {
        error(
            number,
            format!(
                "`{}` is a {tool} marker sluice does not understand, so the file is not run \
                 (README \"Files with up and down sections\")",
                line.trim()
            ),
        )
    };
    let marker = match (tool, words.as_slice()) {
        ("dbmate", [direction, options @ ..]) => {
            let direction = match *direction {
                "up" => Direction::Up,
                "down" => Direction::Down,
                _ => return Err(unknown()),
            };
            let mut no_transaction = false;
            for option in options {
                match *option {
                    "transaction:false" => no_transaction = true,
                    "transaction:true" => no_transaction = false,
                    _ => return Err(unknown()),
                }
            }
            Marker::Section {
                direction,
                no_transaction,
            }
        }
        ("goose", ["Up"]) => section(Direction::Up, false),
        ("goose", ["Down"]) => section(Direction::Down, false),
        ("goose", ["NO", "TRANSACTION"]) => Marker::NoTransaction,
        ("sql-migrate", ["Up"]) => section(Direction::Up, false),
        ("sql-migrate", ["Down"]) => section(Direction::Down, false),
        ("sql-migrate", ["Up", "notransaction"]) => section(Direction::Up, true),
        ("sql-migrate", ["Down", "notransaction"]) => section(Direction::Down, true),
        ("goose" | "sql-migrate", ["StatementBegin"]) => Marker::StatementBegin,
        ("goose" | "sql-migrate", ["StatementEnd"]) => Marker::StatementEnd,
        _ => return Err(unknown()),
    };
    Ok(Some((tool, marker)))
}

fn section(direction: Direction, no_transaction: bool) -> Marker {
    Marker::Section {
        direction,
        no_transaction,
    }
}

/// Lines `start..end` of the file, every other line blank, without trailing blank lines: so
/// errors keep the file's line numbers, and an edit of the other section leaves this one's
/// checksum alone.
fn keep(lines: &[&str], start: usize, end: usize) -> String {
    let mut out = String::new();
    for (index, line) in lines.iter().enumerate() {
        if (start..end).contains(&index) {
            out.push_str(line);
        }
        out.push('\n');
    }
    let kept = out.trim_end().len();
    out.truncate(kept);
    if !out.is_empty() {
        out.push('\n');
    }
    out
}

/// The 1-based line of the first statement in `lines`, if any (comments do not count).
fn statement_before(lines: &[&str]) -> Option<usize> {
    let text = lines.join("\n");
    let parse = squawk_syntax::SourceFile::parse(&text);
    use squawk_syntax::ast::AstNode;
    parse.tree().stmts().next().map(|stmt| {
        let offset = usize::from(stmt.syntax().text_range().start());
        text[..offset].matches('\n').count() + 1
    })
}

fn error(line: usize, message: String) -> SectionError {
    SectionError { line, message }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_without_markers_is_left_alone() {
        assert_eq!(
            split("CREATE TABLE t (id int);\n-- a comment\n").unwrap(),
            None
        );
        assert_eq!(split("-- migrations are fun\nSELECT 1;\n").unwrap(), None);
    }

    #[test]
    fn dbmate_sections_keep_their_lines() {
        let text = "-- a note first\n-- migrate:up\nCREATE VIEW v AS SELECT id FROM users;\n\n\
                    -- migrate:down\nDROP VIEW v;\nDELETE FROM users WHERE id > 0;\n";
        let sections = split(text).unwrap().unwrap();
        assert_eq!(sections.tool, "dbmate");
        assert_eq!(sections.up, "\n\nCREATE VIEW v AS SELECT id FROM users;\n");
        assert!(!sections.up.contains("DELETE"));
        let down = sections.down.unwrap();
        assert_eq!(down.lines().nth(5), Some("DROP VIEW v;"));
        assert!(!down.contains("CREATE VIEW"));
        assert!(!sections.up_no_transaction);
    }

    #[test]
    fn an_empty_down_is_a_no_op_and_options_are_read() {
        let sections = split(
            "-- migrate:up transaction:false\nCREATE INDEX CONCURRENTLY i ON t (a);\n-- migrate:down\n",
        )
        .unwrap()
        .unwrap();
        assert!(sections.up_no_transaction);
        assert!(!sections.down_no_transaction);
        assert_eq!(sections.down.as_deref(), Some(""));
    }

    #[test]
    fn goose_and_sql_migrate_markers() {
        let goose = split(
            "-- +goose NO TRANSACTION\n-- +goose Up\n-- +goose StatementBegin\nCREATE FUNCTION f() RETURNS int AS $$ BEGIN RETURN 1; END $$ LANGUAGE plpgsql;\n-- +goose StatementEnd\n-- +goose Down\nDROP FUNCTION f();\n",
        )
        .unwrap()
        .unwrap();
        assert_eq!(goose.tool, "goose");
        assert!(goose.up_no_transaction && goose.down_no_transaction);
        assert!(goose.up.contains("CREATE FUNCTION") && !goose.up.contains("DROP FUNCTION"));
        let sql_migrate =
            split("-- +migrate Up notransaction\nSELECT 1;\n-- +migrate Down\nSELECT 2;\n")
                .unwrap()
                .unwrap();
        assert_eq!(sql_migrate.tool, "sql-migrate");
        assert!(sql_migrate.up_no_transaction && !sql_migrate.down_no_transaction);
    }

    #[test]
    fn markers_that_cannot_be_followed_refuse_the_file() {
        for (text, line, says) in [
            (
                "-- +goose Up\nSELECT 1;\n-- +goose ENVSUB ON\n",
                3,
                "does not understand",
            ),
            (
                "-- migrate:up\nSELECT 1;\n-- migrate:sideways\n",
                3,
                "does not understand",
            ),
            (
                "-- migrate:up\nSELECT 1;\n-- migrate:up\n",
                3,
                "second marker",
            ),
            ("-- migrate:down\nDROP TABLE t;\n", 1, "no up marker"),
            (
                "DELETE FROM t;\n-- migrate:up\nSELECT 1;\n",
                1,
                "belongs to no section",
            ),
            (
                "-- +goose Up\nSELECT 1;\n-- +migrate Down\n",
                3,
                "one tool's markers",
            ),
            (
                "-- +goose Up\n-- +goose StatementBegin\nSELECT 1;\n",
                2,
                "without a StatementEnd",
            ),
        ] {
            let error = split(text).unwrap_err();
            assert_eq!(error.line, line, "{text}: {error:?}");
            assert!(error.message.contains(says), "{text}: {error:?}");
        }
    }
}
