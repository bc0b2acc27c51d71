//! Keeping passwords out of logs and error messages.
//!
//! Two layers, so that no single mistake prints a secret:
//! - [`redact_url`] and [`scrub`] mask passwords in the text they are given. They do not rely
//!   on the URL being well formed: a password holding `/`, `#` or `?`, a URL with a missing or
//!   mistyped scheme, or a libpq `key=value` string are all masked.
//! - [`register_secrets`] remembers every password the process was given; the binaries'
//!   output macros and log writer pass every line through [`scrub_registered`], so a message
//!   that quotes a password by some path nobody foresaw still prints `***`.

use std::borrow::Cow;
use std::fmt;
use std::sync::RwLock;

/// What a password is replaced with.
pub const MASK: &str = "***";

/// Shorter secrets are masked only where they stand alone (not inside a longer word), so
/// that a two-letter password does not garble every message.
const MIN_FREE_SECRET: usize = 3;

/// A database URL with its password masked: `postgres://app:***@db:5432/prod`.
///
/// Handles URLs (`postgres://user:pass@host/db?password=...`), URLs whose password holds
/// characters that should have been percent-encoded, URLs without a scheme
/// (`user:pass@host/db`), and libpq key/value strings (`host=db password=secret`).
pub fn redact_url(text: &str) -> String {
    mask_password_params(&mask_userinfo(text))
}

/// Masks every password found in `url` in `text`, percent-encoded or not, then every URL
/// password in `text` itself.
///
/// For error messages produced by other libraries, which may quote what they were given.
pub fn scrub(text: &str, url: &str) -> String {
    let mut out = redact_url(text);
    for secret in secrets_in(url) {
        out = mask_secret(&out, &secret).into_owned();
    }
    out
}

/// Passwords registered by [`register_secrets`], longest first.
static REGISTERED: RwLock<Vec<String>> = RwLock::new(Vec::new());

/// Remembers the passwords in `url` (a database or replica URL the process was given, even
/// one that does not parse) so that [`scrub_registered`] masks them in any output.
pub fn register_secrets(url: &str) {
    let found = secrets_in(url);
    if found.is_empty() {
        return;
    }
    let mut registered = REGISTERED.write().unwrap_or_else(|e| e.into_inner());
    for secret in found {
        if !registered.contains(&secret) {
            registered.push(secret);
        }
    }
    registered.sort_by_key(|s| std::cmp::Reverse(s.len()));
}

/// `text` with every URL password and every registered password masked. Cheap when there is
/// nothing to mask, so every line of output can pass through it.
pub fn scrub_registered(text: &str) -> Cow<'_, str> {
    let mut out = Cow::Borrowed(text);
    // "password=" also finds "sslpassword=".
    if text.contains('@') || find_ascii_case_insensitive(text, "password=").is_some() {
        out = Cow::Owned(redact_url(text));
    }
    let registered = REGISTERED.read().unwrap_or_else(|e| e.into_inner());
    for secret in registered.iter() {
        if let Cow::Owned(masked) = mask_secret(&out, secret) {
            out = Cow::Owned(masked);
        }
    }
    out
}

/// Splits a list of URLs (`SLUICE_REPLICA_URLS`) at the commas or white space that start a new
/// URL (`scheme://` follows), so that a comma inside a password does not cut the URL in two
/// (and print both halves as "URLs").
pub fn split_url_list(list: &str) -> Vec<String> {
    let is_separator = |c: char| c == ',' || c.is_whitespace();
    let mut urls = Vec::new();
    let mut start = 0;
    for (i, c) in list.char_indices() {
        if i < start || !is_separator(c) {
            continue;
        }
        let next = list[i..].trim_start_matches(is_separator);
        if next.is_empty() || starts_with_scheme(next) {
            urls.push(&list[start..i]);
            start = list.len() - next.len();
        }
    }
    urls.push(&list[start..]);
    urls.into_iter()
        .map(|url| url.trim_matches(is_separator))
        .filter(|url| !url.is_empty())
        .map(str::to_owned)
        .collect()
}

fn starts_with_scheme(text: &str) -> bool {
    text.find("://").is_some_and(|end| {
        end > 0
            && text[..end]
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
    })
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

    /// The URL with its password masked, reading the whole value as one URL: a password with
    /// `/`, `#`, `?`, `@` or white space in it is masked whole.
    pub fn redacted(&self) -> String {
        mask_password_params(&mask_whole_userinfo(&self.0))
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

/// Where a URL's `user:password@` part starts: after `scheme://`, after a mistyped `scheme//`,
/// or at the start of a URL written without a scheme.
fn userinfo_start(url: &str) -> usize {
    url.find("://")
        .map(|at| at + 3)
        .or_else(|| url.find("//").map(|at| at + 2))
        .unwrap_or(0)
}

/// The byte range of the password in `url` read as one URL: from the first `:` after the
/// userinfo start to the last `@`. The last `@`, because libpq and people both put unencoded
/// `@`, `/` and `#` in passwords; masking too much is harmless, too little is a leak.
fn password_range(url: &str) -> Option<std::ops::Range<usize>> {
    let start = userinfo_start(url);
    let at = start + url[start..].rfind('@')?;
    let colon = start + url[start..at].find(':')?;
    Some(colon + 1..at)
}

/// A character in the `user:password@` part of `url` that a URL must percent-encode (`/`, `?`,
/// `#`, `@`), which drivers then read as the end of the host; for an error that says so
/// instead of blaming a "port number".
pub fn unencoded_in_userinfo(url: &str) -> Option<char> {
    let start = userinfo_start(url);
    let at = start + url[start..].rfind('@')?;
    url[start..at]
        .chars()
        .find(|c| matches!(c, '/' | '?' | '#' | '@'))
}

fn mask_whole_userinfo(url: &str) -> String {
    match password_range(url) {
        Some(range) => format!("{}{MASK}{}", &url[..range.start], &url[range.end..]),
        None => url.to_owned(),
    }
}

/// `user:password@host` → `user:***@host` for every URL-like word of a free text (an error
/// message that quotes a URL). Words end at white space and quotes.
fn mask_userinfo(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while !rest.is_empty() {
        let word_end = rest.find(is_word_break).unwrap_or(rest.len());
        let word = &rest[..word_end];
        let lead = word.len() - word.trim_start_matches(['(', '[', '<', '{']).len();
        match password_range(&word[lead..]) {
            Some(range) => {
                out.push_str(&word[..lead + range.start]);
                out.push_str(MASK);
                out.push_str(&word[lead + range.end..]);
            }
            None => out.push_str(word),
        }
        let break_len = rest[word_end..].chars().next().map_or(0, char::len_utf8);
        out.push_str(&rest[word_end..word_end + break_len]);
        rest = &rest[word_end + break_len..];
    }
    out
}

fn is_word_break(c: char) -> bool {
    c.is_whitespace() || matches!(c, '"' | '\'' | '`')
}

/// Parameters whose values are secrets: the password, and the passphrase of an encrypted
/// client key.
const SECRET_KEYS: [&str; 2] = ["password=", "sslpassword="];

/// `password=secret` (a URL query parameter or a libpq key/value pair) → `password=***`.
fn mask_password_params(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some((value_start, value_end)) = next_password_value(rest) {
        out.push_str(&rest[..value_start]);
        out.push_str(MASK);
        rest = &rest[value_end..];
    }
    out.push_str(rest);
    out
}

/// The byte range of the first secret value (`password=`, `sslpassword=`) in `text` that
/// starts a key (not `old_password=`).
fn next_password_value(text: &str) -> Option<(usize, usize)> {
    SECRET_KEYS
        .iter()
        .filter_map(|key| next_value_of(text, key))
        .min_by_key(|(start, _)| *start)
}

fn next_value_of(text: &str, key: &str) -> Option<(usize, usize)> {
    let mut offset = 0;
    while let Some(pos) = find_ascii_case_insensitive(&text[offset..], key) {
        let pos = offset + pos;
        let starts_key = pos == 0
            || matches!(
                text.as_bytes()[pos - 1],
                b'?' | b'&' | b' ' | b'\t' | b'\n' | b';' | b','
            );
        let value_start = pos + key.len();
        if starts_key {
            return Some((
                value_start,
                value_start + password_value_end(&text[value_start..]),
            ));
        }
        offset = value_start;
    }
    None
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

/// The passwords of `url` in every spelling a message might quote them, longest first. Read
/// from the text itself, so a URL that does not parse still gives up its password.
fn secrets_in(url: &str) -> Vec<String> {
    let mut secrets = Vec::new();
    let mut add = |raw: &str| {
        let raw = raw.trim_matches('\'');
        for secret in [raw.to_owned(), percent_decode(raw)] {
            if !secret.is_empty() && !secrets.contains(&secret) {
                secrets.push(secret);
            }
        }
    };
    if let Some(range) = password_range(url) {
        add(&url[range]);
    }
    if let Ok(parsed) = url::Url::parse(url)
        && let Some(password) = parsed.password()
    {
        add(password);
    }
    let mut rest = url;
    while let Some((start, end)) = next_password_value(rest) {
        add(&rest[start..end]);
        rest = &rest[end..];
    }
    // Longest first, so a password that contains another is masked whole.
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    secrets
}

/// `text` with `secret` masked; a short secret only where it is not part of a longer word.
fn mask_secret<'a>(text: &'a str, secret: &str) -> Cow<'a, str> {
    if secret.is_empty() || !text.contains(secret) {
        return Cow::Borrowed(text);
    }
    if secret.len() >= MIN_FREE_SECRET {
        return Cow::Owned(text.replace(secret, MASK));
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = rest.find(secret) {
        let end = pos + secret.len();
        let before = rest[..pos].chars().next_back();
        let after = rest[end..].chars().next();
        let alone =
            !before.is_some_and(char::is_alphanumeric) && !after.is_some_and(char::is_alphanumeric);
        out.push_str(&rest[..pos]);
        out.push_str(if alone { MASK } else { secret });
        rest = &rest[end..];
    }
    out.push_str(rest);
    Cow::Owned(out)
}

fn percent_decode(s: &str) -> String {
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
    String::from_utf8_lossy(&out).into_owned()
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
    fn masks_the_client_key_passphrase() {
        let url = "postgres://app@db/prod?sslmode=verify-full&sslpassword=k3y-pass&x=1";
        assert_eq!(
            redact_url(url),
            "postgres://app@db/prod?sslmode=verify-full&sslpassword=***&x=1"
        );
        assert!(secrets_in(url).contains(&"k3y-pass".to_owned()));
        assert_eq!(
            redact_url("host=db sslpassword=abc"),
            "host=db sslpassword=***"
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

    /// Every shape the hostile-input review printed in clear, through every masking path.
    const HOSTILE: &[(&str, &str)] = &[
        ("postgres://u:Pw/Leak@h/x", "Pw/Leak"),
        ("postgres://u:Pw#Leak@h/x", "Pw#Leak"),
        ("postgres://u:Pw?Leak@h/x", "Pw?Leak"),
        ("postgres://u:p@ss@h/x", "p@ss"),
        ("postgres//u:LeakPw@h/db", "LeakPw"),
        ("u:LeakPw@h/db", "LeakPw"),
        ("postgresql:/u:LeakPw@h/db", "LeakPw"),
        ("postgres://u:with space@h/db", "with space"),
        ("host=h user=u password=LeakPw dbname=x", "LeakPw"),
        ("postgres://h/db?user=u&password=LeakPw", "LeakPw"),
    ];

    #[test]
    fn hostile_urls_never_print_their_password() {
        for (url, secret) in HOSTILE {
            let redacted = SecretUrl::new(*url).redacted();
            assert!(!redacted.contains(secret), "{url} -> {redacted}");
            assert!(redacted.contains(MASK), "{url} -> {redacted}");
            let message = format!("invalid database URL {url}: invalid port number");
            let scrubbed = scrub(&message, url);
            assert!(!scrubbed.contains(secret), "{url} -> {scrubbed}");
        }
    }

    #[test]
    fn free_text_urls_are_masked_without_parsing() {
        for (url, secret) in HOSTILE.iter().filter(|(_, s)| !s.contains(' ')) {
            let text = format!("WARN replica {url}: connection refused");
            assert!(!redact_url(&text).contains(secret), "{}", redact_url(&text));
        }
    }

    #[test]
    fn a_server_message_quoting_part_of_the_url_is_scrubbed() {
        let url = "u:pw123@h/db";
        let message = "database \"pw123@h/db\" does not exist";
        assert!(
            !scrub(message, url).contains("pw123"),
            "{}",
            scrub(message, url)
        );
    }

    #[test]
    fn short_secrets_are_masked_only_where_they_stand_alone() {
        let url = "postgres://u:pw@h/db";
        assert_eq!(scrub("got pw here", url), "got *** here");
        assert_eq!(scrub("the password pwned", url), "the password pwned");
    }

    #[test]
    fn registered_secrets_are_masked_in_any_text() {
        register_secrets("postgres://u:Registered%2FSecret@h/db");
        let text = "oops: Registered/Secret and Registered%2FSecret";
        let scrubbed = scrub_registered(text);
        assert!(!scrubbed.contains("Registered"), "{scrubbed}");
        assert!(matches!(scrub_registered("nothing here"), Cow::Borrowed(_)));
    }

    #[test]
    fn url_lists_split_only_where_a_new_url_starts() {
        assert_eq!(
            split_url_list("postgres://u:a,b@r1/db,postgres://u:c d@r2/db"),
            ["postgres://u:a,b@r1/db", "postgres://u:c d@r2/db"]
        );
        assert_eq!(
            split_url_list(" postgres://r1/db , postgresql://r2/db "),
            ["postgres://r1/db", "postgresql://r2/db"]
        );
        assert!(split_url_list(" , ").is_empty());
    }
}
