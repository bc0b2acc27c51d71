//! Header directives: `-- sluice:<name> [value]` comment lines before the first statement.
//!
//! Parsed once when a file is loaded. An unknown `sluice:` directive, a bad value, or a
//! directive below the first statement is an error naming the file and line, because a
//! misspelt `no-transaction` would otherwise run a `CREATE INDEX CONCURRENTLY` inside a
//! transaction and fail in production instead of in review.

use std::time::Duration;

/// What a migration file's header asks for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Directives {
    /// Run each statement on its own, outside a transaction (`CREATE INDEX CONCURRENTLY`).
    pub no_transaction: bool,
    /// Overrides the run's `lock_timeout` for this file.
    pub lock_timeout: Option<Duration>,
    /// Overrides the run's `statement_timeout` for this file.
    pub statement_timeout: Option<Duration>,
    /// Backfill jobs that must be complete and verified before this migration runs (the
    /// contract step of expand → backfill → contract).
    pub requires_backfill: Vec<String>,
    /// Lint rules this file may break, each with the reason given.
    pub approvals: Vec<Approval>,
}

/// `-- sluice:approve <rule> reason: <text>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Approval {
    pub rule: String,
    pub reason: String,
    pub line: usize,
}

/// The directives sluice knows, for messages.
pub const KNOWN: &[&str] = &[
    "requires-backfill <job name>",
    "approve <lint rule> reason: <why it is safe here>",
    "no-transaction",
    "lock-timeout <duration>",
    "statement-timeout <duration>",
];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct DirectiveError {
    pub line: usize,
    pub message: String,
}

/// Parses the directives of a file's text.
pub fn parse(text: &str) -> Result<Directives, DirectiveError> {
    let mut directives = Directives::default();
    let mut in_header = true;
    for (index, raw) in text.lines().enumerate() {
        let line = index + 1;
        let trimmed = raw.trim();
        let comment = trimmed.strip_prefix("--").map(str::trim);
        if in_header && !trimmed.is_empty() && comment.is_none() {
            in_header = false;
        }
        let Some(comment) = comment else { continue };
        if let Some(body) = comment.strip_prefix("sluice:") {
            if !in_header {
                return Err(DirectiveError {
                    line,
                    message: format!(
                        "directive `sluice:{}` must come before the first statement",
                        body.trim()
                    ),
                });
            }
            apply(&mut directives, body.trim(), line)?;
        } else if in_header && comment == "no-transaction" {
            // sqlx's spelling, so sqlx migration directories work unchanged.
            directives.no_transaction = true;
        }
    }
    Ok(directives)
}

fn apply(directives: &mut Directives, body: &str, line: usize) -> Result<(), DirectiveError> {
    let (name, value) = match body.split_once(char::is_whitespace) {
        Some((name, value)) => (name, value.trim()),
        None => (body, ""),
    };
    let error = |message: String| DirectiveError { line, message };
    match name {
        "no-transaction" if value.is_empty() => directives.no_transaction = true,
        "no-transaction" => return Err(error("`sluice:no-transaction` takes no value".into())),
        "lock-timeout" => directives.lock_timeout = Some(duration(name, value).map_err(error)?),
        "requires-backfill" => directives
            .requires_backfill
            .push(job_name(value).map_err(error)?),
        "approve" => directives
            .approvals
            .push(approval(value, line).map_err(error)?),
        "statement-timeout" => {
            directives.statement_timeout = Some(duration(name, value).map_err(error)?);
        }
        _ => {
            return Err(error(format!(
                "unknown directive `sluice:{name}`; known directives: {}",
                KNOWN
                    .iter()
                    .map(|k| format!("sluice:{k}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
    }
    Ok(())
}

/// `<rule> reason: <text>`: a known rule and a reason that says something.
fn approval(value: &str, line: usize) -> Result<Approval, String> {
    let (rule, rest) = value.split_once(char::is_whitespace).unwrap_or((value, ""));
    if rule.is_empty() {
        return Err("`sluice:approve` needs a lint rule and a reason: `-- sluice:approve ban-drop-column reason: unused since v42`".into());
    }
    if !crate::rules::is_known_rule(rule) {
        return Err(format!(
            "`sluice:approve {rule}`: unknown lint rule; `sluice lint --rules` lists them"
        ));
    }
    let reason = rest
        .trim()
        .strip_prefix("reason:")
        .map(str::trim)
        .unwrap_or_default();
    if reason.is_empty() {
        return Err(format!(
            "`sluice:approve {rule}` needs a reason: `-- sluice:approve {rule} reason: <why it is safe here>`"
        ));
    }
    Ok(Approval {
        rule: rule.to_owned(),
        reason: reason.to_owned(),
        line,
    })
}

/// A backfill job name, as `sluice-backfill` accepts them.
fn job_name(value: &str) -> Result<String, String> {
    let ok = !value.is_empty()
        && value.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && value
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
    if ok {
        Ok(value.to_owned())
    } else {
        Err(format!(
            "`sluice:requires-backfill` needs a job name (lower-case letters, digits, _ and -), got `{value}`"
        ))
    }
}

fn duration(name: &str, value: &str) -> Result<Duration, String> {
    if value.is_empty() {
        return Err(format!(
            "`sluice:{name}` needs a duration, e.g. `-- sluice:{name} 5s`"
        ));
    }
    // Zero means "no timeout" to PostgreSQL: the opposite of a guard.
    sluice_common::config::parse_pg_timeout(value)
        .map_err(|e| format!("`sluice:{name} {value}`: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_header_directives() {
        let d = parse(
            "-- add an index\n-- sluice:no-transaction\n-- sluice:lock-timeout 2s\n\
             -- sluice:statement-timeout 1h\n\nCREATE INDEX CONCURRENTLY i ON t (a);\n",
        )
        .unwrap();
        assert!(d.no_transaction);
        assert_eq!(d.lock_timeout, Some(Duration::from_secs(2)));
        assert_eq!(d.statement_timeout, Some(Duration::from_secs(3600)));
    }

    #[test]
    fn reads_approvals_with_reasons() {
        let d = parse("-- sluice:approve ban-drop-column reason: unused since v42\nALTER TABLE t DROP COLUMN x;").unwrap();
        assert_eq!(
            d.approvals,
            vec![Approval {
                rule: "ban-drop-column".into(),
                reason: "unused since v42".into(),
                line: 1
            }]
        );
    }

    #[test]
    fn an_approval_without_a_reason_or_for_an_unknown_rule_is_an_error() {
        let no_reason = parse("-- sluice:approve ban-drop-column\n").unwrap_err();
        assert!(
            no_reason.message.contains("needs a reason"),
            "{}",
            no_reason.message
        );
        let empty_reason = parse("-- sluice:approve ban-drop-column reason:   \n").unwrap_err();
        assert!(empty_reason.message.contains("needs a reason"));
        let unknown = parse("-- sluice:approve ban-everything reason: yes\n").unwrap_err();
        assert!(
            unknown.message.contains("unknown lint rule"),
            "{}",
            unknown.message
        );
    }

    #[test]
    fn reads_backfill_gates() {
        let d = parse("-- sluice:requires-backfill accounts_email\n-- sluice:requires-backfill other-job\nALTER TABLE t DROP COLUMN x;").unwrap();
        assert_eq!(d.requires_backfill, vec!["accounts_email", "other-job"]);
        assert!(parse("-- sluice:requires-backfill\n").is_err());
        assert!(parse("-- sluice:requires-backfill Bad Name\n").is_err());
    }

    #[test]
    fn accepts_sqlx_no_transaction() {
        assert!(
            parse("-- no-transaction\nCREATE INDEX CONCURRENTLY i ON t (a);")
                .unwrap()
                .no_transaction
        );
    }

    #[test]
    fn files_without_directives_use_defaults() {
        assert_eq!(
            parse("CREATE TABLE t (id int);").unwrap(),
            Directives::default()
        );
    }

    #[test]
    fn unknown_directives_are_errors_naming_the_line() {
        let err = parse("-- ok\n-- sluice:no-transacton\nSELECT 1;").unwrap_err();
        assert_eq!(err.line, 2);
        assert!(
            err.message.contains("sluice:no-transacton"),
            "{}",
            err.message
        );
        assert!(
            err.message.contains("sluice:no-transaction"),
            "{}",
            err.message
        );
    }

    #[test]
    fn bad_durations_are_errors() {
        assert!(parse("-- sluice:lock-timeout soon\n").is_err());
        assert!(parse("-- sluice:lock-timeout\n").is_err());
        assert!(parse("-- sluice:statement-timeout 0s\n").is_err());
    }

    #[test]
    fn directives_below_the_first_statement_are_errors() {
        let err = parse("CREATE TABLE t (id int);\n-- sluice:no-transaction\n").unwrap_err();
        assert_eq!(err.line, 2);
    }

    #[test]
    fn sqlx_spelling_below_statements_is_an_ordinary_comment() {
        assert!(
            !parse("SELECT 1;\n-- no-transaction\n")
                .unwrap()
                .no_transaction
        );
    }
}
