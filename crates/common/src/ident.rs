//! Schema, table and column names taken from files or flags.
//!
//! This is the one place that turns a name into SQL text. A name is validated when it is read
//! and always written double-quoted, so a hostile name can at worst name a missing object.

use std::fmt;

/// PostgreSQL truncates identifiers longer than `NAMEDATALEN - 1` bytes; we refuse them
/// instead, because a silently truncated name can address a different object.
pub const MAX_IDENT_BYTES: usize = 63;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentError {
    #[error("empty identifier")]
    Empty,
    #[error("identifier \"{0}\" is longer than {MAX_IDENT_BYTES} bytes")]
    TooLong(String),
    #[error("identifier contains a NUL byte")]
    Nul,
    #[error(
        "invalid name `{0}`: an unquoted name may contain only letters, digits, `_` and `$` and \
         must not start with a digit; write it in double quotes if that really is its name"
    )]
    Unquoted(String),
    #[error("invalid name `{0}`: a double-quoted name is not closed")]
    Unterminated(String),
    #[error("invalid name `{0}`: expected `name` or `schema.name`")]
    Shape(String),
}

/// One validated identifier, stored as the name PostgreSQL sees (already case-folded).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ident(String);

impl Ident {
    /// An identifier from its exact name (as stored in the catalog), without SQL syntax.
    pub fn new(name: impl Into<String>) -> Result<Self, IdentError> {
        let name = name.into();
        if name.is_empty() {
            return Err(IdentError::Empty);
        }
        if name.contains('\0') {
            return Err(IdentError::Nul);
        }
        if name.len() > MAX_IDENT_BYTES {
            return Err(IdentError::TooLong(name));
        }
        Ok(Self(name))
    }

    /// An identifier written as in SQL: `accounts` (folded to lower case, as PostgreSQL
    /// does) or `"Accounts"` (kept exactly).
    pub fn parse(text: &str) -> Result<Self, IdentError> {
        let (ident, rest) = parse_one(text.trim())?;
        if !rest.is_empty() {
            return Err(IdentError::Shape(text.to_owned()));
        }
        Ok(ident)
    }

    /// The exact name.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The name as a double-quoted SQL identifier.
    pub fn quoted(&self) -> String {
        quote_ident(&self.0)
    }
}

impl fmt::Display for Ident {
    /// Displays the quoted form, so formatting an `Ident` into SQL is always safe.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.quoted())
    }
}

/// `schema.name`, as written in a job spec or on a command line.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct QualifiedName {
    pub schema: Ident,
    pub name: Ident,
}

impl QualifiedName {
    /// Parses `schema.table`; a bare `table` is in `default_schema`.
    pub fn parse(text: &str, default_schema: &Ident) -> Result<Self, IdentError> {
        let trimmed = text.trim();
        let (first, rest) = parse_one(trimmed)?;
        if rest.is_empty() {
            return Ok(Self {
                schema: default_schema.clone(),
                name: first,
            });
        }
        let Some(after_dot) = rest.strip_prefix('.') else {
            return Err(IdentError::Shape(text.to_owned()));
        };
        let (second, rest) = parse_one(after_dot)?;
        if !rest.is_empty() {
            return Err(IdentError::Shape(text.to_owned()));
        }
        Ok(Self {
            schema: first,
            name: second,
        })
    }
}

impl fmt::Display for QualifiedName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.schema, self.name)
    }
}

/// Double-quotes a name, doubling embedded quotes. Prefer [`Ident`], which also validates.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Single-quotes a string literal, doubling embedded quotes; a value with a backslash becomes
/// an escape string (`E'a\\b'`), as PostgreSQL's own `quote_literal` does, so that it reads
/// the same whatever `standard_conforming_strings` the session has (a `RESET ALL` returns it to
/// the server's setting).
pub fn quote_literal(value: &str) -> String {
    let quoted = value.replace('\'', "''");
    if value.contains('\\') {
        format!("E'{}'", quoted.replace('\\', "\\\\"))
    } else {
        format!("'{quoted}'")
    }
}

/// Reads one identifier from the start of `text`; returns it and the rest.
fn parse_one(text: &str) -> Result<(Ident, &str), IdentError> {
    if let Some(body) = text.strip_prefix('"') {
        return parse_quoted(text, body);
    }
    let end = text.find(['.']).unwrap_or(text.len());
    let word = &text[..end];
    if !is_plain_word(word) {
        return Err(if word.is_empty() {
            IdentError::Empty
        } else {
            IdentError::Unquoted(text.to_owned())
        });
    }
    Ok((Ident::new(word.to_ascii_lowercase())?, &text[end..]))
}

fn parse_quoted<'a>(original: &str, body: &'a str) -> Result<(Ident, &'a str), IdentError> {
    let mut name = String::new();
    let mut chars = body.char_indices();
    while let Some((i, c)) = chars.next() {
        if c != '"' {
            name.push(c);
            continue;
        }
        if body[i + 1..].starts_with('"') {
            name.push('"');
            chars.next();
            continue;
        }
        return Ok((Ident::new(name)?, &body[i + 1..]));
    }
    Err(IdentError::Unterminated(original.to_owned()))
}

fn is_plain_word(word: &str) -> bool {
    let mut chars = word.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn public() -> Ident {
        Ident::new("public").unwrap()
    }

    #[test]
    fn quotes_plain_names() {
        assert_eq!(Ident::new("accounts").unwrap().quoted(), "\"accounts\"");
    }

    #[test]
    fn doubles_embedded_quotes() {
        let hostile = Ident::new("x\"; DROP TABLE users; --").unwrap();
        assert_eq!(hostile.quoted(), "\"x\"\"; DROP TABLE users; --\"");
    }

    #[test]
    fn unquoted_names_fold_to_lower_case() {
        assert_eq!(Ident::parse("Accounts").unwrap().as_str(), "accounts");
        assert_eq!(Ident::parse("\"Accounts\"").unwrap().as_str(), "Accounts");
    }

    #[test]
    fn refuses_injection_shaped_unquoted_names() {
        for hostile in [
            "accounts; DROP TABLE users",
            "accounts--",
            "a b",
            "1abc",
            "x'y",
            "accounts)",
        ] {
            assert!(
                matches!(Ident::parse(hostile), Err(IdentError::Unquoted(_))),
                "{hostile} was accepted"
            );
        }
    }

    #[test]
    fn quoted_hostile_names_are_kept_as_names() {
        let ident = Ident::parse("\"a\"\"; DROP TABLE t; --\"").unwrap();
        assert_eq!(ident.as_str(), "a\"; DROP TABLE t; --");
        assert_eq!(ident.to_string(), "\"a\"\"; DROP TABLE t; --\"");
    }

    #[test]
    fn refuses_empty_nul_overlong_and_unterminated() {
        assert_eq!(Ident::new(""), Err(IdentError::Empty));
        assert_eq!(Ident::new("a\0b"), Err(IdentError::Nul));
        assert!(matches!(
            Ident::new("x".repeat(64)),
            Err(IdentError::TooLong(_))
        ));
        assert!(Ident::new("x".repeat(63)).is_ok());
        assert!(matches!(
            Ident::parse("\"open"),
            Err(IdentError::Unterminated(_))
        ));
        assert_eq!(Ident::parse("\"\""), Err(IdentError::Empty));
    }

    #[test]
    fn qualified_names() {
        let q = QualifiedName::parse("public.accounts", &public()).unwrap();
        assert_eq!(q.to_string(), "\"public\".\"accounts\"");
        let bare = QualifiedName::parse("accounts", &public()).unwrap();
        assert_eq!(bare, q);
        let quoted = QualifiedName::parse("\"My.Schema\".\"T\"", &public()).unwrap();
        assert_eq!(quoted.schema.as_str(), "My.Schema");
        assert_eq!(quoted.name.as_str(), "T");
    }

    #[test]
    fn refuses_malformed_qualified_names() {
        for bad in ["a.b.c", "a.", ".a", "a..b", "\"a\"x", "a.b;drop"] {
            assert!(
                QualifiedName::parse(bad, &public()).is_err(),
                "{bad} was accepted"
            );
        }
    }

    #[test]
    fn quotes_literals() {
        assert_eq!(quote_literal("it's"), "'it''s'");
        assert_eq!(quote_literal(r"C:\it's"), r"E'C:\\it''s'");
    }
}
