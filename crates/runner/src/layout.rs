//! Which tool's directory sluice is reading, and the order that tool gives its migrations.
//!
//! A directory is read as one layout: sqlx's and golang-migrate's flat files (sluice's own),
//! diesel's `<version>_<name>/up.sql` directories, or the single files with up and down
//! sections of dbmate, goose and sql-migrate. The layout is detected from the files, shown by
//! `status` and `validate`, and can be forced (`layout` in sluice.toml, `--layout`): then a file
//! of another layout is refused rather than read the other tool's way. A directory that mixes
//! layouts is refused with the files named: which tool's rules apply would be a guess.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use crate::source::{Migration, SourceError, Version};

/// How one migration was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    /// `<version>_<name>.sql` or `.up.sql` (+ `.down.sql`) at the top of the directory.
    Flat,
    /// diesel's `<version>_<name>/up.sql`.
    Diesel,
    /// One file with another tool's up and down markers.
    Sections(Layout),
    /// Flyway's `V<version>__<description>.sql` (and `U...` undo files).
    Flyway,
}

/// A directory layout sluice reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Layout {
    /// sqlx's and golang-migrate's `<version>_<name>[.up|.down].sql`, sluice's own.
    Flat,
    Diesel,
    Dbmate,
    Goose,
    SqlMigrate,
    Flyway,
}

/// How versions are ordered.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Order {
    /// As numbers: 2 < 10 (sqlx, golang-migrate, dbmate's and goose's timestamps).
    #[default]
    Numeric,
    /// As text, the way diesel compares its versions (dashes removed): `202305231715` after
    /// `20230522120000`, where numbers would put it first.
    Text,
    /// Flyway's versions part by part, which their keys do as numbers ([`crate::flyway`]).
    Flyway,
}

impl Order {
    pub fn cmp(self, a: Version, b: Version) -> Ordering {
        match self {
            Self::Numeric | Self::Flyway => a.cmp(&b),
            // Versions are digits without their leading zeros; diesel's `00000000000000` initial
            // setup is 0, which sorts first either way.
            Self::Text => a.to_string().cmp(&b.to_string()),
        }
    }

    /// A version as messages show one whose file is gone: Flyway's as written (`1.1`).
    pub fn show(self, version: Version) -> String {
        match self {
            Self::Flyway => crate::flyway::show_key(version),
            Self::Numeric | Self::Text => version.to_string(),
        }
    }
}

const NAMES: [(&str, Layout); 7] = [
    ("sqlx", Layout::Flat),
    ("golang-migrate", Layout::Flat),
    ("diesel", Layout::Diesel),
    ("dbmate", Layout::Dbmate),
    ("goose", Layout::Goose),
    ("sql-migrate", Layout::SqlMigrate),
    ("flyway", Layout::Flyway),
];

impl Layout {
    /// The tool whose markers a sections file holds (`sections::Sections::tool`).
    pub fn of_tool(tool: &str) -> Option<Self> {
        NAMES
            .iter()
            .find(|(name, _)| *name == tool)
            .map(|(_, l)| *l)
    }

    pub fn order(self) -> Order {
        match self {
            Self::Diesel => Order::Text,
            Self::Flyway => Order::Flyway,
            _ => Order::Numeric,
        }
    }

    /// How `status` and `validate` name it: "an sqlx / golang-migrate directory".
    pub fn describe(self) -> &'static str {
        match self {
            Self::Flat => "an sqlx / golang-migrate directory (<version>_<name>[.up|.down].sql)",
            Self::Diesel => "a diesel directory (<version>_<name>/up.sql, versions in text order)",
            Self::Dbmate => "a dbmate directory (-- migrate:up / -- migrate:down sections)",
            Self::Goose => "a goose directory (-- +goose Up / Down sections)",
            Self::SqlMigrate => "a sql-migrate directory (-- +migrate Up / Down sections)",
            Self::Flyway => {
                "a Flyway directory (V<version>__<description>.sql, U<version>__ undo files, \
                 versions compared part by part)"
            }
        }
    }

    fn short(self) -> &'static str {
        match self {
            Self::Flat => "sqlx / golang-migrate",
            Self::Diesel => "diesel",
            Self::Dbmate => "dbmate",
            Self::Goose => "goose",
            Self::SqlMigrate => "sql-migrate",
            Self::Flyway => "Flyway",
        }
    }
}

impl fmt::Display for Layout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.short())
    }
}

/// `layout = "..."`: a tool's name, or `auto`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Choice {
    #[default]
    Auto,
    Forced(Layout),
}

impl FromStr for Choice {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text == "auto" {
            return Ok(Self::Auto);
        }
        Layout::of_tool(text).map(Self::Forced).ok_or_else(|| {
            let names: Vec<&str> = NAMES.iter().map(|(name, _)| *name).collect();
            format!(
                "`{text}` is not a layout sluice reads; expected auto, {}",
                names.join(", ")
            )
        })
    }
}

impl Form {
    fn layout(self) -> Option<Layout> {
        match self {
            // A flat file without markers is valid in every layout but diesel's: dbmate and
            // goose also read a file whose markers are all it has, and sluice reads one without.
            Self::Flat => None,
            Self::Diesel => Some(Layout::Diesel),
            Self::Sections(layout) => Some(layout),
            Self::Flyway => Some(Layout::Flyway),
        }
    }
}

/// The layout of `migrations`: the one their forms agree on (flat files alone: sqlx /
/// golang-migrate), or what `choice` forces. Mixed layouts are refused with the files named.
pub fn detect<'m>(
    migrations: impl IntoIterator<Item = &'m Migration>,
    choice: Choice,
) -> Result<Layout, SourceError> {
    let mut by_layout: BTreeMap<Layout, Vec<&Migration>> = BTreeMap::new();
    let mut flat: Vec<&Migration> = Vec::new();
    for migration in migrations {
        match migration.form.layout() {
            Some(layout) => by_layout.entry(layout).or_default().push(migration),
            None => flat.push(migration),
        }
    }
    // Flat files are read in every layout but diesel's and Flyway's, whose tools ignore them.
    let strict = [Layout::Diesel, Layout::Flyway]
        .iter()
        .any(|l| by_layout.contains_key(l) || choice == Choice::Forced(*l));
    if strict && !flat.is_empty() {
        by_layout.insert(Layout::Flat, flat);
    }
    match choice {
        Choice::Auto => match by_layout.len() {
            0 => Ok(Layout::Flat),
            1 => Ok(*by_layout.keys().next().expect("one layout")),
            _ => Err(mixed(&by_layout, None)),
        },
        Choice::Forced(layout) => {
            by_layout.remove(&layout);
            if by_layout.is_empty() {
                Ok(layout)
            } else {
                Err(mixed(&by_layout, Some(layout)))
            }
        }
    }
}

/// The refusal of a mixed directory, listing each layout's files.
fn mixed(groups: &BTreeMap<Layout, Vec<&Migration>>, chosen: Option<Layout>) -> SourceError {
    let mut problems: Vec<String> = groups
        .iter()
        .map(|(layout, files)| {
            let mut paths: Vec<String> = files
                .iter()
                .map(|m| m.up.path.display().to_string())
                .collect();
            paths.sort();
            format!("{layout} files: {}", paths.join(", "))
        })
        .collect();
    problems.push(match chosen {
        Some(layout) => format!(
            "the directory is read as {} (layout = \"{}\"), so these files, written for \
             another tool, were not read its way and nothing was run; convert or move them",
            layout.describe(),
            tool_name(layout)
        ),
        None => "the migrations directory mixes layouts, so which tool's rules apply would be \
                 a guess and nothing was run; keep one tool's files per directory, or set \
                 layout = \"<tool>\" in sluice.toml to say which"
            .to_owned(),
    });
    SourceError { problems }
}

/// The name `layout = "..."` takes for `layout`.
fn tool_name(layout: Layout) -> &'static str {
    NAMES
        .iter()
        .find(|(_, l)| *l == layout)
        .map_or("auto", |(name, _)| name)
}

/// Sorts `migrations` the way their layout's tool runs them.
pub fn sort(migrations: &mut [Migration], order: Order) {
    migrations.sort_by(|a, b| order.cmp(a.version, b.version));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diesel_orders_versions_as_text() {
        let diesel = [20_230_522_120_000, 202_305_231_715, 0, 20_230_524_000_000];
        let mut sorted = diesel.to_vec();
        sorted.sort_by(|a, b| Order::Text.cmp(*a, *b));
        assert_eq!(
            sorted,
            [0, 20_230_522_120_000, 202_305_231_715, 20_230_524_000_000]
        );
        sorted.sort_by(|a, b| Order::Numeric.cmp(*a, *b));
        assert_eq!(
            sorted,
            [0, 202_305_231_715, 20_230_522_120_000, 20_230_524_000_000]
        );
    }

    fn layout_of(files: &[(&str, &str)], choice: Choice) -> Result<Layout, String> {
        let files: Vec<crate::source::SourceFile<'_>> = files
            .iter()
            .map(|(path, text)| crate::source::SourceFile { path, text })
            .collect();
        crate::source::load_files(std::path::Path::new("m"), &files, choice)
            .map(|loaded| loaded.layout)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn detects_one_layout_and_refuses_mixes() {
        let goose = ("2_b.sql", "-- +goose Up\nSELECT 2;\n-- +goose Down\n");
        let dbmate = ("3_c.sql", "-- migrate:up\nSELECT 3;\n");
        let flat = ("1_a.sql", "SELECT 1;");
        let diesel = ("2024-01-01-000000_d/up.sql", "SELECT 4;");
        assert_eq!(layout_of(&[flat], Choice::Auto), Ok(Layout::Flat));
        assert_eq!(layout_of(&[flat, goose], Choice::Auto), Ok(Layout::Goose));
        assert_eq!(layout_of(&[diesel], Choice::Auto), Ok(Layout::Diesel));
        let mixed = layout_of(&[goose, dbmate], Choice::Auto).unwrap_err();
        assert!(
            mixed.contains("dbmate files: m/3_c.sql") && mixed.contains("goose files: m/2_b.sql"),
            "{mixed}"
        );
        let mixed = layout_of(&[flat, diesel], Choice::Auto).unwrap_err();
        assert!(
            mixed.contains("sqlx / golang-migrate files: m/1_a.sql"),
            "{mixed}"
        );
        let forced = layout_of(&[flat, goose], Choice::Forced(Layout::Flat)).unwrap_err();
        assert!(
            forced.contains("goose files: m/2_b.sql") && !forced.contains("1_a.sql"),
            "{forced}"
        );
        assert_eq!(
            layout_of(&[flat, goose], Choice::Forced(Layout::Goose)),
            Ok(Layout::Goose)
        );
        let forced = layout_of(&[flat], Choice::Forced(Layout::Diesel)).unwrap_err();
        assert!(forced.contains("1_a.sql"), "{forced}");
    }

    #[test]
    fn choices_name_tools() {
        assert_eq!("auto".parse::<Choice>(), Ok(Choice::Auto));
        assert_eq!(
            "golang-migrate".parse::<Choice>(),
            Ok(Choice::Forced(Layout::Flat))
        );
        assert_eq!("goose".parse::<Choice>(), Ok(Choice::Forced(Layout::Goose)));
        assert_eq!(
            "flyway".parse::<Choice>(),
            Ok(Choice::Forced(Layout::Flyway))
        );
        let wrong = "liquibase".parse::<Choice>().unwrap_err();
        assert!(wrong.contains("expected auto, sqlx"), "{wrong}");
        assert!(wrong.contains("flyway"), "{wrong}");
    }
}
