//! What reaches a terminal, a log or an audit trail: text that came from the database (a
//! unique violation's detail quotes the row), the command line (`--actor`) or a file can hold
//! control characters. An escape sequence clears the screen or retitles the window; a newline
//! forges a status line. Such characters are shown escaped (`\u{1b}`), never sent raw.

use std::borrow::Cow;

/// `text` with every control character but newline and tab escaped: for whole lines of
/// output, whose own line breaks are the program's.
pub fn escape_controls(text: &str) -> Cow<'_, str> {
    escape(text, |c| c.is_control() && c != '\n' && c != '\t')
}

/// `text` with every control character escaped, line breaks included: for a value placed
/// inside a line (an actor, a server message), which must not start a line of its own.
pub fn one_line(text: &str) -> Cow<'_, str> {
    escape(text, char::is_control)
}

fn escape(text: &str, escaped: impl Fn(char) -> bool) -> Cow<'_, str> {
    if !text.chars().any(&escaped) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\n' if escaped(c) => out.push_str("\\n"),
            '\r' if escaped(c) => out.push_str("\\r"),
            '\t' if escaped(c) => out.push_str("\\t"),
            c if escaped(c) => out.push_str(&format!("\\u{{{:x}}}", u32::from(c))),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// `bytes` in lower-case hexadecimal (checksums).
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut text = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        text.push(char::from(DIGITS[usize::from(byte >> 4)]));
        text.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_controls_are_shown_not_sent() {
        assert_eq!(
            escape_controls("a\x1b[2Jb\x07\nnext\tline\r"),
            "a\\u{1b}[2Jb\\u{7}\nnext\tline\\r"
        );
        assert_eq!(
            one_line("ops\napplied 9999_fake"),
            "ops\\napplied 9999_fake"
        );
        assert_eq!(one_line("\u{9b}31m"), "\\u{9b}31m");
        assert!(matches!(escape_controls("plain text"), Cow::Borrowed(_)));
    }

    #[test]
    fn hex_is_two_lower_case_digits_a_byte() {
        assert_eq!(hex(&[0x00, 0x0f, 0xa5, 0xff]), "000fa5ff");
    }
}
