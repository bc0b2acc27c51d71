//! Keeping passwords out of logs and error messages.
//!
//! Every place that shows a database URL, or the text of an error that may quote one, goes
//! through this module first.

use std::fmt;

/// What a password is replaced with.
pub const MASK: &str = "***";

/// A database URL with its password masked: `postgres://app:***@db:5432/prod`.
///
/// Handles URLs (`postgres://user:pass@host/db?password=...`) and libpq key/value strings
/// (`host=db password=secret`). Text that is neither is returned as it is.
pub fn redact_url(url: &str) -> String {
    let masked_userinfo = mask_userinfo(url);
    mask_password_params(&masked_userinfo)
}

/// Removes every occurrence of the password found in `url` from `text`, percent-encoded or not.
///
/// For error messages produced by other libraries, which may quote what they were given.
pub fn scrub(text: &str, url: &str) -> String {
    let mut out = redact_url(text);
    for secret in secrets_in(url) {
        if secret.len() >= 3 {
            out = out.replace(&secret, MASK);
        }
    }
    out
}

/// A URL that prints redacted; the original is still there for connecting.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretUrl(String);

impl SecretUrl {
    pub fn new(url: impl Into<String>) -> Self {
        Self(url.into())
    }

    /// The real URL, password included. Only for handing to the driver.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn redacted(&self) -> String {
        redact_url(&self.0)
    }
}

impl fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretUrl({:?})", self.redacted())
    }
}

impl fmt::Display for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

/// `scheme://user:password@host` → `scheme://user:***@host`, for every URL in the text.
fn mask_userinfo(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(scheme_end) = rest.find("://") {
        let authority_start = scheme_end + 3;
        out.push_str(&rest[..authority_start]);
        rest = &rest[authority_start..];
        let authority_end = rest
            .find(|c: char| c == '/' || c == '?' || c == '#' || c.is_whitespace())
            .unwrap_or(rest.len());
        let authority = &rest[..authority_end];
        match (authority.rfind('@'), authority.find(':')) {
            (Some(at), Some(colon)) if colon < at => {
                out.push_str(&authority[..=colon]);
                out.push_str(MASK);
                out.push_str(&authority[at..]);
            }
            _ => out.push_str(authority),
        }
        rest = &rest[authority_end..];
    }
    out.push_str(rest);
    out
}

/// `password=secret` (a URL query parameter or a libpq key/value pair) → `password=***`.
fn mask_password_params(text: &str) -> String {
    const KEY: &str = "password=";
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = find_ascii_case_insensitive(rest, KEY) {
        let starts_key = pos == 0
            || matches!(
                rest.as_bytes()[pos - 1],
                b'?' | b'&' | b' ' | b'\t' | b'\n' | b';'
            );
        let value_start = pos + KEY.len();
        out.push_str(&rest[..value_start]);
        rest = &rest[value_start..];
        if !starts_key {
            continue;
        }
        let value_end = password_value_end(rest);
        out.push_str(MASK);
        rest = &rest[value_end..];
    }
    out.push_str(rest);
    out
}

/// Where a `password=` value ends: at `&` or white space, or after a quoted libpq value.
fn password_value_end(value: &str) -> usize {
    if let Some(quoted) = value.strip_prefix('\'') {
        let mut escaped = false;
        for (i, c) in quoted.char_indices() {
            match c {
                '\\' if !escaped => escaped = true,
                '\'' if !escaped => return i + 2,
                _ => escaped = false,
            }
        }
        return value.len();
    }
    value
        .find(|c: char| c == '&' || c == '#' || c.is_whitespace())
        .unwrap_or(value.len())
}

fn find_ascii_case_insensitive(haystack: &str, needle: &str) -> Option<usize> {
    haystack
        .as_bytes()
        .windows(needle.len())
        .position(|w| w.eq_ignore_ascii_case(needle.as_bytes()))
}

/// The password of a URL in every spelling an error message might quote it.
fn secrets_in(url: &str) -> Vec<String> {
    let Ok(parsed) = url::Url::parse(url) else {
        return Vec::new();
    };
    let mut secrets = Vec::new();
    if let Some(raw) = parsed.password() {
        secrets.push(raw.to_owned());
        if let Ok(decoded) = percent_decode(raw) {
            secrets.push(decoded);
        }
    }
    for (key, value) in parsed.query_pairs() {
        if key.eq_ignore_ascii_case("password") {
            secrets.push(value.into_owned());
        }
    }
    // Longest first, so a password that contains another is masked whole.
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    secrets
}

fn percent_decode(s: &str) -> Result<String, std::string::FromUtf8Error> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_password_in_url() {
        assert_eq!(
            redact_url("postgres://app:s3cret@db.internal:5432/prod"),
            "postgres://app:***@db.internal:5432/prod"
        );
    }

    #[test]
    fn leaves_url_without_password_alone() {
        let url = "postgres://app@db/prod?sslmode=require";
        assert_eq!(redact_url(url), url);
        assert_eq!(redact_url("postgres://db/prod"), "postgres://db/prod");
    }

    #[test]
    fn masks_password_containing_at_and_colon() {
        let redacted = redact_url("postgresql://app:p%40ss:w@rd@db/prod");
        assert_eq!(redacted, "postgresql://app:***@db/prod");
    }

    #[test]
    fn masks_password_query_parameter() {
        assert_eq!(
            redact_url("postgres://db/prod?user=app&password=hunter2&sslmode=require"),
            "postgres://db/prod?user=app&password=***&sslmode=require"
        );
    }

    #[test]
    fn masks_libpq_key_value_password() {
        assert_eq!(
            redact_url("host=db user=app password=hunter2 dbname=prod"),
            "host=db user=app password=*** dbname=prod"
        );
        assert_eq!(
            redact_url("host=db password='with space' dbname=prod"),
            "host=db password=*** dbname=prod"
        );
    }

    #[test]
    fn does_not_touch_words_that_merely_end_in_password() {
        assert_eq!(redact_url("old_password=1"), "old_password=1");
    }

    #[test]
    fn masks_urls_inside_longer_text() {
        assert_eq!(
            redact_url("cannot connect to postgres://u:pw@h/db: refused"),
            "cannot connect to postgres://u:***@h/db: refused"
        );
    }

    #[test]
    fn scrub_removes_decoded_password_quoted_by_other_libraries() {
        let url = "postgres://app:p%40ssword@db/prod";
        let text = "password authentication failed: got p@ssword for app";
        let scrubbed = scrub(text, url);
        assert!(!scrubbed.contains("p@ssword"), "{scrubbed}");
        assert!(scrubbed.contains("***"));
    }

    #[test]
    fn secret_url_never_prints_its_password() {
        let url = SecretUrl::new("postgres://app:topsecret@db/prod");
        assert!(!format!("{url}").contains("topsecret"));
        assert!(!format!("{url:?}").contains("topsecret"));
        assert!(url.expose().contains("topsecret"));
    }
}
