//! Flyway's file names and versions.
//!
//! Flyway names a versioned migration `V<version>__<description>.sql`, its undo
//! `U<version>__<description>.sql` and a repeatable one `R__<description>.sql`. A version is
//! parts separated by `.` or `_`, compared numerically part by part (2 < 2.1 < 3 < 10,
//! 1.2 < 1.10; `1.01` is `1.1`, and `1.0` is `1`).
//!
//! sluice's history keys a migration by a number ([`Version`]), so a Flyway version becomes a
//! key that sorts as Flyway sorts: each part is written as its count of digits (one hex digit,
//! 1 to 15) followed by its digits (one hex digit each), the parts one after another, then
//! padded with zeros to 15 hex digits. A count of 0 ends the parts, so `1` sorts before
//! `1.0.1` before `1.1`; a part with more digits is larger. The key holds up to 15 hex digits in all:
//! `20240131120000` (1 + 14) or seven one-digit parts. A longer version is refused by name.

use crate::source::Version;

/// What a Flyway file name says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Name<'a> {
    /// `V<version>__<description>.sql`.
    Versioned {
        version: &'a str,
        description: &'a str,
    },
    /// `U<version>__<description>.sql`: the undo of that version.
    Undo {
        version: &'a str,
        description: &'a str,
    },
    /// `R__<description>.sql`.
    Repeatable { description: &'a str },
}

/// A Flyway file name taken apart; `None` when `file_name` is not one (`V` or `U`, a
/// version's digits, `__`, or `R__`, then a description and `.sql`).
pub fn parse_name(file_name: &str) -> Option<Name<'_>> {
    let stem = file_name.strip_suffix(".sql")?;
    if let Some(description) = stem.strip_prefix("R__") {
        return (!description.is_empty()).then_some(Name::Repeatable { description });
    }
    let (kind, rest) = stem.split_at_checked(1)?;
    let (version, description) = rest.split_once("__")?;
    let digits_and_separators = !version.is_empty()
        && version.starts_with(|c: char| c.is_ascii_digit())
        && version
            .bytes()
            .all(|b| b.is_ascii_digit() || b == b'.' || b == b'_');
    if !digits_and_separators || description.is_empty() {
        return None;
    }
    match kind {
        "V" => Some(Name::Versioned {
            version,
            description,
        }),
        "U" => Some(Name::Undo {
            version,
            description,
        }),
        _ => None,
    }
}

/// Hex digits a key holds: 60 bits, so every key is a positive `i64`.
const KEY_DIGITS: usize = 15;

/// The history key of a Flyway version (`1.1`, `2_0_1`, `20240131120000`). Trailing zero
/// parts do not count, as in Flyway (`1.0` is `1`).
pub fn version_key(version: &str) -> Result<Version, String> {
    let mut parts: Vec<&str> = version.split(['.', '_']).collect();
    if parts
        .iter()
        .any(|part| part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(format!(
            "the Flyway version `{version}` is not numbers separated by `.` or `_`"
        ));
    }
    let numbers: Vec<&str> = parts
        .drain(..)
        .map(|part| match part.trim_start_matches('0') {
            "" => "0",
            significant => significant,
        })
        .collect();
    let kept = numbers
        .iter()
        .rposition(|n| *n != "0")
        .map_or(1, |last| last + 1);
    let mut digits: Vec<u8> = Vec::with_capacity(KEY_DIGITS);
    for significant in &numbers[..kept] {
        digits.push(u8::try_from(significant.len()).unwrap_or(u8::MAX));
        digits.extend(significant.bytes().map(|b| b - b'0'));
        if significant.len() > 15 || digits.len() > KEY_DIGITS {
            return Err(format!(
                "the Flyway version `{version}` is too long for sluice's history (at most 15 \
                 digits and parts in all, each part counting one more: `20240131120000` or \
                 `1.2.3.4.5.6.7` fit)"
            ));
        }
    }
    digits.resize(KEY_DIGITS, 0);
    Ok(digits
        .iter()
        .fold(0, |key, &digit| (key << 4) | Version::from(digit)))
}

/// The version a key stands for, written with dots (`1.1`): how messages name a history row
/// whose file is gone.
pub fn show_key(key: Version) -> String {
    let digits: Vec<u8> = (0..KEY_DIGITS)
        .rev()
        .map(|i| u8::try_from((key >> (4 * i)) & 0xf).unwrap_or(0))
        .collect();
    let mut parts = Vec::new();
    let mut at = 0;
    while at < digits.len() && digits[at] != 0 {
        let len = usize::from(digits[at]);
        let end = (at + 1 + len).min(digits.len());
        parts.push(
            digits[at + 1..end]
                .iter()
                .map(|d| char::from(b'0' + d))
                .collect::<String>(),
        );
        at = end;
    }
    parts.join(".")
}

/// A `${name}` placeholder, which Flyway replaces before running a file and sluice does not:
/// its line and text.
pub fn placeholder(sql: &str) -> Option<(usize, &str)> {
    sql.lines().enumerate().find_map(|(i, line)| {
        let start = line.find("${")?;
        let end = line[start..].find('}')? + start + 1;
        Some((i + 1, &line[start..end]))
    })
}

/// The checksum Flyway records for a file's text: CRC32 of its lines' UTF-8 bytes with the
/// line ends left out (so LF and CRLF files agree) and a leading byte-order mark dropped, as a
/// signed 32-bit number (Java's `int`).
pub fn checksum(text: &str) -> i32 {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut crc = crc32fast::Hasher::new();
    for line in text.split(['\n', '\r']) {
        crc.update(line.as_bytes());
    }
    i32::from_ne_bytes(crc.finalize().to_ne_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksums_are_flyways_crc32_of_the_lines_without_their_ends() {
        // CRC32("abc") = 0x352441c2, whatever ends the lines.
        assert_eq!(checksum("abc"), 0x3524_41c2);
        assert_eq!(checksum("a\nb\r\nc\n"), 0x3524_41c2);
        assert_eq!(checksum("\u{feff}a\rbc"), 0x3524_41c2);
        // CRC32("123456789") = 0xcbf43926, past i32::MAX: negative, as Java stores it.
        assert_eq!(checksum("1234\n56789"), -0x340b_c6da);
        assert_eq!(checksum(""), 0);
    }

    #[test]
    fn names_are_taken_apart_as_flyway_reads_them() {
        assert_eq!(
            parse_name("V1.1__add_users.sql"),
            Some(Name::Versioned {
                version: "1.1",
                description: "add_users"
            })
        );
        assert_eq!(
            parse_name("U1_2__drop it.sql"),
            Some(Name::Undo {
                version: "1_2",
                description: "drop it"
            })
        );
        assert_eq!(
            parse_name("R__views.sql"),
            Some(Name::Repeatable {
                description: "views"
            })
        );
        for not_flyway in [
            "V1__.sql",
            "V__x.sql",
            "Vx__y.sql",
            "V1_add.sql",
            "1_add.sql",
            "R__.sql",
            "V1__x.txt",
            "B1__baseline.sql",
        ] {
            assert_eq!(parse_name(not_flyway), None, "{not_flyway}");
        }
    }

    #[test]
    fn keys_sort_as_flyway_sorts_versions() {
        let ordered = [
            "1",
            "1.0.1",
            "1.1",
            "1.2",
            "1.10",
            "2",
            "2.1",
            "3",
            "10",
            "10.0.1",
            "2024",
            "20240131120000",
        ];
        let keys: Vec<Version> = ordered.iter().map(|v| version_key(v).unwrap()).collect();
        for pair in keys.windows(2) {
            assert!(pair[0] < pair[1], "{keys:?}");
        }
        assert!(keys.iter().all(|k| *k > 0));
        // `.` and `_` separate alike; leading zeros do not count.
        assert_eq!(version_key("1_2").unwrap(), version_key("1.2").unwrap());
        assert_eq!(version_key("1.02").unwrap(), version_key("1.2").unwrap());
        assert_eq!(version_key("1.0.0").unwrap(), version_key("1").unwrap());
    }

    #[test]
    fn a_key_shows_its_version() {
        for version in ["1", "1.10", "2.0.1", "20240131120000", "1.2.3.4.5.6.7"] {
            assert_eq!(show_key(version_key(version).unwrap()), version);
        }
    }

    #[test]
    fn versions_sluice_cannot_key_are_refused_by_name() {
        let too_long = version_key("20240131120000.1").unwrap_err();
        assert!(
            too_long.contains("`20240131120000.1` is too long"),
            "{too_long}"
        );
        assert!(version_key("1..2").unwrap_err().contains("not numbers"));
        assert!(version_key("1.2.3.4.5.6.7.8").is_err());
    }

    #[test]
    fn placeholders_are_found_with_their_line() {
        assert_eq!(
            placeholder("CREATE TABLE t ();\nGRANT SELECT ON t TO ${reader};"),
            Some((2, "${reader}"))
        );
        assert_eq!(placeholder("SELECT '$1', $$x$$;"), None);
    }
}
