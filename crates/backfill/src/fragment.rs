//! The SQL a job spec supplies (`set`, `where`, a copy's `values`), checked with PostgreSQL's
//! grammar (squawk's parser) before it goes into a batch statement.
//!
//! A fragment is pasted into statements that also carry the batch's range and lease
//! conditions, so it must be exactly the one thing its key names: a trailing `-- comment`
//! would swallow the range (every batch then updates the whole table), and `v = 'x') OR
//! (true` would escape its parentheses. So each fragment is parsed in a statement of its own
//! and refused unless the part it names spans it whole; and what goes into the batch SQL is
//! the fragment with its comments taken out ([`inline`]), so nothing in it can reach past it.

use squawk_syntax::ast::{self, AstNode};
use squawk_syntax::{SyntaxKind, SyntaxNode};

/// Checks a `set` list: one or more assignments, nothing else. Returns the assigned columns
/// (as PostgreSQL folds them: unquoted names lower-cased), for checks against the key.
pub fn assignments(set: &str) -> Result<Vec<String>, String> {
    const PREFIX: &str = "UPDATE sluice_fragment SET ";
    let stmt = one_statement("set", PREFIX, set)?;
    let ast::Stmt::Update(update) = stmt else {
        return Err(not_whole(
            "set",
            "a list of assignments (column = expression, ...)",
        ));
    };
    let clause = update
        .set_clause()
        .ok_or_else(|| not_whole("set", "a list of assignments (column = expression, ...)"))?;
    spans_the_rest("set", PREFIX, set, clause.syntax(), "a list of assignments")?;
    Ok(clause
        .syntax()
        .descendants()
        .filter_map(ast::ColumnTarget::cast)
        .filter_map(|target| column_name(&target.syntax().text().to_string()))
        .collect())
}

/// Checks a `where` condition: one boolean expression, nothing else.
pub fn condition(where_: &str) -> Result<(), String> {
    const PREFIX: &str = "SELECT WHERE ";
    let stmt = one_statement("where", PREFIX, where_)?;
    let expr = match stmt {
        ast::Stmt::Select(select) => select.where_clause().and_then(|w| w.expr()),
        _ => None,
    }
    .ok_or_else(|| not_whole("where", "one condition"))?;
    spans_the_rest("where", PREFIX, where_, expr.syntax(), "one condition")
}

/// Checks one of a copy's `values`: one expression, nothing else.
pub fn expression(key: &str, value: &str) -> Result<(), String> {
    const PREFIX: &str = "SELECT ";
    let stmt = one_statement(key, PREFIX, value)?;
    let targets: Vec<ast::Target> = match stmt {
        ast::Stmt::Select(select) if select.from_clause().is_none() => select
            .select_clause()
            .and_then(|c| c.target_list())
            .map(|l| l.targets().collect())
            .unwrap_or_default(),
        _ => Vec::new(),
    };
    let expr = match targets.as_slice() {
        [target] if target.as_name().is_none() => target.expr(),
        _ => None,
    }
    .ok_or_else(|| not_whole(key, "one expression"))?;
    spans_the_rest(key, PREFIX, value, expr.syntax(), "one expression")
}

/// The fragment as it goes into batch SQL: comments replaced by a space, so that nothing in
/// it can comment out what follows. Only for fragments that passed their check.
pub fn inline(fragment: &str) -> String {
    let parse = squawk_syntax::SourceFile::parse(&format!("SELECT {fragment}"));
    let offset = "SELECT ".len();
    let mut out = String::with_capacity(fragment.len());
    for token in parse
        .tree()
        .syntax()
        .descendants_with_tokens()
        .filter_map(|e| e.into_token())
    {
        if usize::from(token.text_range().start()) < offset {
            continue;
        }
        match token.kind() {
            SyntaxKind::COMMENT => out.push(' '),
            _ => out.push_str(token.text()),
        }
    }
    out.trim().to_owned()
}

/// Parses `prefix + fragment` and returns its one statement.
fn one_statement(key: &str, prefix: &str, fragment: &str) -> Result<ast::Stmt, String> {
    if fragment.trim().is_empty() {
        return Err(format!("`{key}` is empty"));
    }
    let text = format!("{prefix}{fragment}");
    let parse = squawk_syntax::SourceFile::parse(&text);
    if let Some(error) = parse.errors().first() {
        let at = usize::from(error.range().start()).saturating_sub(prefix.len());
        return Err(format!(
            "`{key}` is not valid SQL at character {} ({}): {}",
            at + 1,
            error.message(),
            excerpt(fragment)
        ));
    }
    let mut stmts = parse.tree().stmts();
    match (stmts.next(), stmts.next()) {
        (Some(stmt), None) => Ok(stmt),
        _ => Err(not_whole(key, "one piece of a statement, with no `;`")),
    }
}

/// Refuses a fragment that goes on past the part of the statement it must be (`WHERE x;
/// DELETE ...`, `WHERE x ORDER BY ...`, `SET a = 1 WHERE true`).
fn spans_the_rest(
    key: &str,
    prefix: &str,
    fragment: &str,
    part: &SyntaxNode,
    what: &str,
) -> Result<(), String> {
    let end = usize::from(part.text_range().end());
    let rest = &format!("{prefix}{fragment}")[end..];
    if meaningful(rest) {
        return Err(format!(
            "`{key}` must be {what} and nothing else, but it goes on: {}",
            excerpt(rest.trim())
        ));
    }
    Ok(())
}

/// Whether text holds anything but whitespace and comments.
fn meaningful(text: &str) -> bool {
    squawk_syntax::SourceFile::parse(&format!("SELECT 1 {text}"))
        .tree()
        .syntax()
        .descendants_with_tokens()
        .filter_map(|e| e.into_token())
        .filter(|t| !t.kind().is_trivia())
        .count()
        > 2
}

fn not_whole(key: &str, what: &str) -> String {
    format!("`{key}` must be {what}")
}

/// `"Email"` → `Email`, `email.x` / `email[1]` → `email`, `Email` → `email`.
fn column_name(target: &str) -> Option<String> {
    let target = target.trim();
    if let Some(quoted) = target.strip_prefix('"') {
        return quoted.split('"').next().map(str::to_owned);
    }
    let name = target.split(['.', '[', ' ']).next()?;
    (!name.is_empty()).then(|| name.to_ascii_lowercase())
}

fn excerpt(text: &str) -> String {
    let one_line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match one_line.char_indices().nth(60) {
        Some((cut, _)) => format!("`{}…`", &one_line[..cut]),
        None => format!("`{one_line}`"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assignments_name_their_columns() {
        assert_eq!(assignments("n = n + 1").unwrap(), ["n"]);
        assert_eq!(
            assignments("\"Email\" = lower(email), total = DEFAULT, (a, b) = (1, 2)").unwrap(),
            ["Email", "total", "a", "b"]
        );
        assert_eq!(assignments("n = n + 1 -- bump").unwrap(), ["n"]);
        assert_eq!(assignments("ID = ID + 1, n = 2").unwrap(), ["id", "n"]);
    }

    #[test]
    fn a_set_that_is_more_than_assignments_is_refused() {
        for set in [
            "n = 1 WHERE true",
            "n = 1; DELETE FROM t",
            "n = 1 RETURNING *",
            "n = 1 FROM other",
            "n = (1",
            "n = 1)",
            "",
            "/* only a comment */",
        ] {
            assert!(assignments(set).is_err(), "accepted: {set}");
        }
    }

    #[test]
    fn a_where_that_escapes_its_parentheses_is_refused() {
        for where_ in [
            "v = 'zzz') OR (true",
            "true; DROP TABLE t",
            "true ORDER BY 1",
            "true UNION SELECT 1",
            "true LIMIT 1",
            "true GROUP BY 1",
            "(true",
            "",
        ] {
            let error = condition(where_).unwrap_err();
            assert!(error.starts_with("`where`"), "{where_}: {error}");
        }
        for where_ in [
            "email_normalized IS NULL",
            "v = 'zzz' -- a comment",
            "id IN (SELECT id FROM other WHERE x) AND created_at < now() - interval '1 day'",
            "a = 1 /* block */ OR b = 2",
        ] {
            condition(where_).unwrap_or_else(|e| panic!("{where_}: {e}"));
        }
    }

    #[test]
    fn values_are_one_expression_each() {
        expression("values", "lower(email)").unwrap();
        expression("values", "coalesce(a, 'x') || '-- not a comment'").unwrap();
        for value in [
            "1, 2",
            "1 AS x",
            "a FROM t",
            "1; DELETE FROM t",
            "1 -- c\n)",
        ] {
            assert!(expression("values", value).is_err(), "accepted: {value}");
        }
    }

    #[test]
    fn inlined_fragments_carry_no_comment() {
        assert_eq!(inline("n = n + 1 -- bump"), "n = n + 1");
        assert_eq!(inline("a = 1 /* x */ OR b = '--'"), "a = 1   OR b = '--'");
        assert_eq!(inline("lower(email)"), "lower(email)");
    }
}
