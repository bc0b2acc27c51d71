//! Loading a migrations directory: file names, pairing of up and down files, versions.
//!
//! The layout is sqlx's, so sqlx users can point sluice at their directory:
//! `<version>_<name>.sql` (irreversible) or `<version>_<name>.up.sql` + `.down.sql`, where
//! `<version>` is a number (a UTC timestamp `YYYYMMDDHHMMSS`, a zero-padded or an unpadded
//! sequence) and `<name>` any text. golang-migrate's `N_name.up.sql` is the same layout; its up
//! and down files pair by version alone. diesel's directories, `<version>_<name>/up.sql`
//! (+ `down.sql`, `metadata.toml`), are read too; their versions may carry dashes
//! (`2024-01-31-120000`), which, as in diesel, are not part of the number.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use sluice_common::input;

use crate::flyway;
use crate::layout::{self, Choice, Form, Layout};
use crate::repeatable::{self, Repeatable};
use crate::script::{Script, ScriptError};
use crate::sections;

/// A migration version: the number its file name starts with.
pub type Version = i64;

/// One migration: an up script and, when reversible, a down script.
#[derive(Debug, Clone)]
pub struct Migration {
    pub version: Version,
    /// The version as written in the file name (`0001`, `20260101120000`).
    pub version_text: String,
    pub name: String,
    pub up: Script,
    pub down: Option<Script>,
    /// How it was written: which layout it belongs to.
    pub form: Form,
}

/// A directory's migrations, in the order its layout's tool runs them.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub layout: Layout,
    pub migrations: Vec<Migration>,
    /// Flyway's repeatable migrations (`R__`), in the order they are applied.
    pub repeatables: Vec<Repeatable>,
}

impl Migration {
    /// `0001_create_users`: how messages name a migration.
    pub fn id(&self) -> String {
        format!("{}_{}", self.version_text, self.name)
    }
}

/// The version a user means by `text` (`up --to`, `down --to`, `baseline`, `repair`): a
/// file's version as written (`0002`, `1.1`, `2024-01-31-120000`) or its whole id
/// (`0002_add_email`); else the number it stands for in `layout` (Flyway's `1.10`, diesel's
/// dashes left out). `None` when it is no version at all.
pub fn version_named(files: &[Migration], layout: Layout, text: &str) -> Option<Version> {
    if let Some(file) = files
        .iter()
        .find(|m| m.version_text == text || m.id() == text)
    {
        return Some(file.version);
    }
    if layout == Layout::Flyway {
        let text = text.strip_prefix('V').unwrap_or(text);
        return flyway::version_key(text).ok();
    }
    // diesel's versions carry dashes (2024-01-31-120000) that are not part of the number.
    let digits: String = text
        .split('_')
        .next()
        .unwrap_or(text)
        .chars()
        .filter(|c| *c != '-')
        .collect();
    digits.parse().ok()
}

/// Everything wrong with a directory, one problem per line, each naming its file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", problems.join("\n"))]
pub struct SourceError {
    pub problems: Vec<String>,
}

/// Which half of a migration a file is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// `<version>_<name>.sql`: an up migration with no down.
    Plain,
    Up,
    Down,
}

/// A migration file name, taken apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileName {
    pub version: Version,
    pub version_text: String,
    pub name: String,
    pub direction: Direction,
    /// Flat, or Flyway's `V`/`U` files.
    pub form: Form,
}

const EXPECTED_NAME: &str = "expected <version>_<name>.sql, <version>_<name>.up.sql or \
     <version>_<name>.down.sql, where <version> is a UTC timestamp (20260101120000) or a \
     zero-padded number (0001)";

/// Parses a file name. `Ok(None)` for files that are not SQL (a README), which are skipped.
pub fn parse_file_name(file_name: &str) -> Result<Option<FileName>, String> {
    let Some(stem) = file_name.strip_suffix(".sql") else {
        return Ok(None);
    };
    if let Some(flyway) = parse_flyway_name(file_name)? {
        return Ok(Some(flyway));
    }
    let (stem, direction) = if let Some(s) = stem.strip_suffix(".up") {
        (s, Direction::Up)
    } else if let Some(s) = stem.strip_suffix(".down") {
        (s, Direction::Down)
    } else {
        (stem, Direction::Plain)
    };
    let (version_text, name) = stem
        .split_once('_')
        .ok_or_else(|| format!("{file_name}: {EXPECTED_NAME}"))?;
    if version_text.is_empty() || !version_text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "{file_name}: the version `{version_text}` is not a number; {EXPECTED_NAME}"
        ));
    }
    let version = version_text
        .parse::<Version>()
        .map_err(|_| format!("{file_name}: the version `{version_text}` is too large"))?;
    // sqlx takes any description after the version: dots, brackets, dashes, capitals.
    if name.is_empty() {
        return Err(format!("{file_name}: {EXPECTED_NAME}"));
    }
    Ok(Some(FileName {
        version,
        version_text: version_text.to_owned(),
        name: name.to_owned(),
        direction,
        form: Form::Flat,
    }))
}

/// Flyway's callbacks: SQL files named after the event they run at, not migrations.
const FLYWAY_CALLBACKS: &[&str] = &[
    "beforeMigrate",
    "beforeEachMigrate",
    "beforeEachMigrateStatement",
    "afterEachMigrateStatement",
    "afterEachMigrateStatementError",
    "afterEachMigrate",
    "afterEachMigrateError",
    "afterMigrate",
    "afterMigrateApplied",
    "afterVersioned",
    "afterMigrateError",
    "beforeClean",
    "afterClean",
    "beforeValidate",
    "afterValidate",
    "beforeBaseline",
    "afterBaseline",
    "beforeRepair",
    "afterRepair",
    "beforeInfo",
    "afterInfo",
    "beforeUndo",
    "afterUndo",
    "beforeConnect",
    "afterConnect",
];

/// A Flyway file name: `V<version>__<description>.sql` (up), `U<version>__...` (its down).
/// Callbacks are refused by name: sluice does not run them, and skipping them silently would
/// leave the schema short of what Flyway gives. Repeatable migrations (`R__`) are not
/// versioned files ([`repeatable_file`]): `Ok(None)` here.
fn parse_flyway_name(file_name: &str) -> Result<Option<FileName>, String> {
    let stem = file_name.strip_suffix(".sql").unwrap_or(file_name);
    let event = stem.split_once("__").map_or(stem, |(event, _)| event);
    if FLYWAY_CALLBACKS.contains(&event) {
        return Err(format!(
            "{file_name}: a Flyway callback (run at `{event}`), which sluice does not run; move \
             what it does into a migration, or out of the directory"
        ));
    }
    let (version, description, direction) = match flyway::parse_name(file_name) {
        None | Some(flyway::Name::Repeatable { .. }) => return Ok(None),
        Some(flyway::Name::Versioned {
            version,
            description,
        }) => (version, description, Direction::Up),
        Some(flyway::Name::Undo {
            version,
            description,
        }) => (version, description, Direction::Down),
    };
    let key = flyway::version_key(version).map_err(|problem| format!("{file_name}: {problem}"))?;
    Ok(Some(FileName {
        version: key,
        version_text: version.to_owned(),
        name: description.to_owned(),
        direction,
        form: Form::Flyway,
    }))
}

const EXPECTED_DIRECTORY: &str = "expected a diesel migration directory \
     <version>_<name>/ holding up.sql (and down.sql), where <version> is digits, dashes allowed \
     (2024-01-31-120000)";

/// A file of a migrations directory as sluice reads it, from disk or embedded into a binary at
/// compile time: its path relative to the directory (`/` between parts) and its text.
#[derive(Debug, Clone, Copy)]
pub struct SourceFile<'a> {
    pub path: &'a str,
    pub text: &'a str,
}

/// The files of a diesel migration directory that sluice reads.
pub const DIESEL_FILES: [&str; 3] = ["up.sql", "down.sql", "metadata.toml"];

/// Whether sluice reads the file at `relative` (`/`-separated) in a migrations directory:
/// `*.sql` at the top, and diesel's files one directory down. Hidden entries are skipped.
pub fn is_read(relative: &str) -> bool {
    let parts: Vec<&str> = relative.split('/').collect();
    if parts.iter().any(|p| p.starts_with('.') || p.is_empty()) {
        return false;
    }
    match parts.as_slice() {
        [file] => file.ends_with(".sql"),
        [_, file] => DIESEL_FILES.contains(file),
        _ => false,
    }
}

/// A file taken apart and read, with what decides how it runs.
#[derive(Debug)]
struct Found {
    name: FileName,
    path: PathBuf,
    text: String,
    /// diesel's `metadata.toml` beside an `up.sql`: its path and text.
    metadata: Option<(PathBuf, String)>,
    /// Flat, or one of diesel's directories.
    form: Form,
}

/// A diesel migration directory, `<version>_<name>/up.sql` and optionally `down.sql`, from its
/// files (by name). Directories that hold no SQL at all (a `k8s/` folder) are skipped.
fn parse_directory(
    root: &Path,
    dir_name: &str,
    mut files: BTreeMap<&str, &str>,
) -> Result<Vec<Found>, String> {
    let Some(up) = files.remove("up.sql") else {
        return if files.contains_key("down.sql") {
            Err(format!(
                "{dir_name}/down.sql: a down file without its up file; expected up.sql beside it"
            ))
        } else {
            Ok(Vec::new())
        };
    };
    let (version, version_text, name) = parse_directory_name(dir_name)?;
    let dir = root.join(dir_name);
    let named = |direction, file: &str, text: &str| Found {
        name: FileName {
            version,
            version_text: version_text.to_owned(),
            name: name.to_owned(),
            direction,
            form: Form::Diesel,
        },
        path: dir.join(file),
        text: text.to_owned(),
        metadata: None,
        form: Form::Diesel,
    };
    let mut up = named(Direction::Up, "up.sql", up);
    up.metadata = files
        .get("metadata.toml")
        .map(|text| (dir.join("metadata.toml"), (*text).to_owned()));
    let mut found = vec![up];
    if let Some(down) = files.get("down.sql") {
        found.push(named(Direction::Down, "down.sql", down));
    }
    Ok(found)
}

/// A diesel directory's name: its version (dashes dropped), the version as written, and the
/// name.
pub fn parse_directory_name(dir_name: &str) -> Result<(Version, &str, &str), String> {
    let (version_text, name) = dir_name
        .split_once('_')
        .filter(|(v, n)| !n.is_empty() && v.bytes().any(|b| b.is_ascii_digit()))
        .or_else(|| dashed_without_underscore(dir_name))
        .ok_or_else(|| format!("{dir_name}/: {EXPECTED_DIRECTORY}"))?;
    let digits: String = version_text.chars().filter(|c| *c != '-').collect();
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "{dir_name}/: the version `{version_text}` is not a number; {EXPECTED_DIRECTORY}"
        ));
    }
    let version = digits
        .parse::<Version>()
        .map_err(|_| format!("{dir_name}/: the version `{version_text}` is too large"))?;
    Ok((version, version_text, name))
}

/// `2023-05-23-1715-update-assignment`: a diesel directory whose name follows its dashed
/// version after a dash, not a `_` (diesel reads such names too): the digits-and-dashes prefix
/// is the version, the rest the name.
fn dashed_without_underscore(dir_name: &str) -> Option<(&str, &str)> {
    let end = dir_name
        .find(|c: char| !c.is_ascii_digit() && c != '-')
        .filter(|end| *end > 0)?;
    let version = dir_name[..end].trim_end_matches('-');
    let name = &dir_name[end..];
    (version.contains('-') && version.bytes().filter(u8::is_ascii_digit).count() >= 8)
        .then_some((version, name))
}

/// diesel marks a migration that must run outside a transaction with `run_in_transaction =
/// false` in its directory's `metadata.toml`: for sluice that is the same as a
/// `-- sluice:no-transaction` directive, so the file runs as diesel ran it, unedited.
fn diesel_runs_outside_a_transaction(metadata: Option<&(PathBuf, String)>) -> Result<bool, String> {
    let Some((path, text)) = metadata else {
        return Ok(false);
    };
    let metadata: toml::Table = text
        .parse()
        .map_err(|e| format!("{}: not valid TOML: {e}", path.display()))?;
    Ok(metadata.get("run_in_transaction") == Some(&toml::Value::Boolean(false)))
}

/// Loads every migration in `dir` and checks every statement of every file: `validate`.
pub fn load_checked(dir: &Path, choice: Choice) -> Result<Loaded, SourceError> {
    let loaded = load(dir, choice)?;
    analyse(
        loaded
            .migrations
            .iter()
            .flat_map(|m| std::iter::once(&m.up).chain(&m.down))
            .chain(loaded.repeatables.iter().map(Repeatable::script)),
    )?;
    Ok(loaded)
}

/// Splits and checks the statements of `scripts`, reporting every problem at once.
pub fn analyse<'a>(scripts: impl IntoIterator<Item = &'a Script>) -> Result<(), SourceError> {
    let scripts: Vec<&Script> = scripts.into_iter().collect();
    let problems: Vec<String> = in_parallel(&scripts, |script| script.analyse().err())
        .into_iter()
        .flatten()
        .map(|e| e.to_string())
        .collect();
    if problems.is_empty() {
        Ok(())
    } else {
        Err(SourceError { problems })
    }
}

/// Loads every migration in `dir`, in the order of its layout (detected, or as `choice`
/// forces): names, pairs, directives and checksums. Statements are split later, only for files
/// about to run ([`analyse`]).
pub fn load(dir: &Path, choice: Choice) -> Result<Loaded, SourceError> {
    let (files, mut problems) = read_dir(dir)?;
    let files: Vec<SourceFile<'_>> = files
        .iter()
        .map(|(path, text)| SourceFile { path, text })
        .collect();
    let (migrations, repeatables) = assemble(dir, &files, &mut problems);
    finish(migrations, repeatables, problems, choice)
}

/// Loads migrations from files that were read elsewhere, e.g. embedded into a binary at
/// compile time: the same names, pairs, directives and checksums as [`load`] finds in a
/// directory holding these files. `root` names the directory in messages and paths.
pub fn load_files(
    root: &Path,
    files: &[SourceFile<'_>],
    choice: Choice,
) -> Result<Loaded, SourceError> {
    let files: Vec<SourceFile<'_>> = files.iter().copied().filter(|f| is_read(f.path)).collect();
    let mut problems = Vec::new();
    let (migrations, repeatables) = assemble(root, &files, &mut problems);
    finish(migrations, repeatables, problems, choice)
}

fn finish(
    mut migrations: Vec<Migration>,
    mut repeatables: Vec<Repeatable>,
    problems: Vec<String>,
    choice: Choice,
) -> Result<Loaded, SourceError> {
    if !problems.is_empty() {
        return Err(SourceError { problems });
    }
    // A repeatable file is Flyway's: beside another tool's files it makes the directory mixed.
    let every_file = migrations
        .iter()
        .chain(repeatables.iter().map(Repeatable::as_migration));
    let layout = layout::detect(every_file, choice)?;
    layout::sort(&mut migrations, layout.order());
    repeatable::sort(&mut repeatables);
    Ok(Loaded {
        layout,
        migrations,
        repeatables,
    })
}

/// Files read from disk: relative path and text.
type ReadFiles = Vec<(String, String)>;

/// The files of `dir` that sluice reads ([`is_read`]), by relative path, with the problems of
/// those that cannot be read.
fn read_dir(dir: &Path) -> Result<(ReadFiles, Vec<String>), SourceError> {
    let entries = std::fs::read_dir(dir).map_err(|e| SourceError {
        problems: vec![format!(
            "cannot read the migrations directory {}: {e}; create it (sluice new <name>) or \
             point --migrations at yours",
            dir.display()
        )],
    })?;
    let mut candidates = Vec::new();
    for entry in entries.flatten() {
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        // The directory entry's own type costs no system call; only a link is followed.
        let kind = entry.file_type().ok();
        let link = kind.is_some_and(|k| k.is_symlink());
        if kind.is_some_and(|k| k.is_dir()) || (link && entry.path().is_dir()) {
            // Whether a file inside is a link is known once it is read.
            candidates.extend(DIESEL_FILES.iter().map(|f| (format!("{name}/{f}"), None)));
        } else {
            candidates.push((name, Some(link)));
        }
    }
    let candidates: Vec<(String, Option<bool>)> =
        candidates.into_iter().filter(|(r, _)| is_read(r)).collect();
    let root = std::sync::OnceLock::new();
    let read =
        |(relative, link): &(String, Option<bool>)| read_candidate(dir, &root, relative, *link);
    let (mut files, mut problems) = (Vec::new(), Vec::new());
    for outcome in in_parallel(&candidates, read) {
        match outcome {
            Ok(Some(file)) => files.push(file),
            Ok(None) => {}
            Err(problem) => problems.push(problem),
        }
    }
    Ok((files, problems))
}

/// Reads one file of the directory: its name and text, nothing when it is a diesel file that
/// is not there, or the problem with it.
fn read_candidate(
    dir: &Path,
    root: &std::sync::OnceLock<Option<PathBuf>>,
    relative: &str,
    link: Option<bool>,
) -> Result<Option<(String, String)>, String> {
    let path = dir.join(relative);
    match input::read_text(&path, "migration", input::MAX_SQL_BYTES) {
        // A diesel directory without a down.sql or metadata.toml.
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e.to_string()),
        Ok(text) => {
            let link = link.unwrap_or_else(|| {
                std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_symlink())
                    || std::fs::symlink_metadata(path.parent().unwrap_or(dir))
                        .is_ok_and(|m| m.is_symlink())
            });
            let root = root.get_or_init(|| dir.canonicalize().ok());
            match link
                .then(|| foreign_non_sql(root.as_deref(), &path, &text))
                .flatten()
            {
                Some(problem) => Err(problem),
                None => Ok(Some((relative.to_owned(), text))),
            }
        }
    }
}

/// `work` on every item, in order, spread over the machine's cores when there are enough items
/// to be worth a thread: reading and parsing 20,000 files is what a large history costs.
pub(crate) fn in_parallel<T: Sync, R: Send>(items: &[T], work: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let threads = std::thread::available_parallelism()
        .map_or(1, usize::from)
        .min(8);
    if threads < 2 || items.len() < 256 {
        return items.iter().map(work).collect();
    }
    let chunk = items.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let handles: Vec<_> = items
            .chunks(chunk)
            .map(|part| scope.spawn(|| part.iter().map(&work).collect::<Vec<R>>()))
            .collect();
        handles
            .into_iter()
            .flat_map(|handle| {
                handle
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect()
    })
}

/// A symlink named like a migration that leads out of the directory to something that is not
/// SQL (a shared directory gone wrong, `/etc/shadow`): refused without quoting it, where a
/// syntax error would show its first line.
fn foreign_non_sql(dir: Option<&Path>, path: &Path, text: &str) -> Option<String> {
    let target = path.canonicalize().ok()?;
    let inside = dir.is_some_and(|dir| target.starts_with(dir));
    if inside || squawk_syntax::SourceFile::parse(text).errors().is_empty() {
        return None;
    }
    Some(format!(
        "{} is a symlink to {}, outside the migrations directory, which does not parse as SQL: \
         it is not a migration (nothing of it is shown); fix or remove the link",
        path.display(),
        target.display()
    ))
}

/// Takes every file's name apart, pairs up and down files by version and parses them; the
/// repeatable ones on their own.
fn assemble(
    root: &Path,
    files: &[SourceFile<'_>],
    problems: &mut Vec<String>,
) -> (Vec<Migration>, Vec<Repeatable>) {
    let mut top: Vec<&SourceFile<'_>> = Vec::new();
    let mut dirs: BTreeMap<&str, BTreeMap<&str, &str>> = BTreeMap::new();
    for file in files {
        match file.path.split_once('/') {
            Some((dir, name)) => {
                dirs.entry(dir).or_default().insert(name, file.text);
            }
            None => top.push(file),
        }
    }
    top.sort_by_key(|f| f.path);
    let mut found: Vec<Found> = Vec::new();
    for (dir, files) in dirs {
        match parse_directory(root, dir, files) {
            Ok(files) => found.extend(files),
            Err(problem) => problems.push(format!("{}: {}", root.display(), problem)),
        }
    }
    let mut repeatables = Vec::new();
    for file in top {
        if let Some(flyway::Name::Repeatable { description }) = flyway::parse_name(file.path) {
            let path = root.join(file.path);
            repeatables.extend(repeatable_file(&path, description, file.text, problems));
            continue;
        }
        match parse_file_name(file.path) {
            Ok(Some(name)) => found.push(Found {
                form: name.form,
                name,
                path: root.join(file.path),
                text: file.text.to_owned(),
                metadata: None,
            }),
            Ok(None) => {}
            Err(problem) => problems.push(format!("{}: {}", root.display(), problem)),
        }
    }
    found.sort_by(|a, b| a.path.cmp(&b.path));
    (pair_and_build(found, problems), repeatables)
}

/// A repeatable migration `R__<description>.sql`, read as Flyway runs it.
fn repeatable_file(
    path: &Path,
    description: &str,
    text: &str,
    problems: &mut Vec<String>,
) -> Option<Repeatable> {
    let script = Script::parse(path, text)
        .map_err(|e: ScriptError| problems.push(e.to_string()))
        .ok()?;
    let script = as_flyway_runs(script, problems)?;
    Some(Repeatable::new(description, script, flyway::checksum(text)))
}

/// Pairs up and down files by version and parses them.
fn pair_and_build(files: Vec<Found>, problems: &mut Vec<String>) -> Vec<Migration> {
    let mut by_version: BTreeMap<Version, Vec<Found>> = BTreeMap::new();
    for file in files {
        by_version.entry(file.name.version).or_default().push(file);
    }
    by_version
        .into_values()
        .filter_map(|group| match pair(group) {
            Ok((up, down)) => build(up, down, problems),
            Err(problem) => {
                problems.push(problem);
                None
            }
        })
        .collect()
}

/// One up file and at most one down file with the same name.
fn pair(group: Vec<Found>) -> Result<(Found, Option<Found>), String> {
    let (downs, ups): (Vec<Found>, Vec<Found>) = group
        .into_iter()
        .partition(|f| f.name.direction == Direction::Down);
    let show = |files: &[Found]| {
        files
            .iter()
            .map(|f| f.path.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    if ups.len() > 1 {
        return Err(format!(
            "{}: several migrations have version {}; versions must be unique",
            show(&ups),
            ups[0].name.version_text
        ));
    }
    if downs.len() > 1 {
        return Err(format!(
            "{}: more than one down file for one version",
            show(&downs)
        ));
    }
    let down = downs.into_iter().next();
    let Some(up) = ups.into_iter().next() else {
        let down = down.expect("a group is never empty");
        return Err(format!(
            "{}: a down file without its up file; expected the matching .up.sql beside it",
            down.path.display()
        ));
    };
    if let Some(down) = &down {
        if up.name.direction == Direction::Plain {
            return Err(format!(
                "{}: a down file for {}, which is not an .up.sql file; rename it to {}.up.sql",
                down.path.display(),
                up.path.display(),
                up.path
                    .file_stem()
                    .and_then(|s| s.to_str())
                    .unwrap_or_default()
            ));
        }
        // golang-migrate pairs by version alone (`64_add_flags.up.sql` with
        // `64_drop_flags.down.sql`); the migration is named after its up file.
        if down.name.name != up.name.name {
            tracing::debug!(
                up = %up.path.display(),
                down = %down.path.display(),
                "paired by version: the down file's name differs from the up file's"
            );
        }
    }
    Ok((up, down))
}

fn build(up: Found, down: Option<Found>, problems: &mut Vec<String>) -> Option<Migration> {
    if up.name.direction == Direction::Plain
        && let Some(built) = build_sections(&up, down.as_ref(), problems)
    {
        return built;
    }
    let mut up_script = parse_script(&up, problems)?;
    let mut down_script = match &down {
        Some(found) => Some(parse_script(found, problems)?),
        None => None,
    };
    if up.form == Form::Flyway {
        up_script = as_flyway_runs(up_script, problems)?;
        down_script = match down_script {
            Some(script) => Some(as_flyway_runs(script, problems)?),
            None => None,
        };
    }
    match diesel_runs_outside_a_transaction(up.metadata.as_ref()) {
        Ok(true) => {
            up_script.directives.no_transaction = true;
            if let Some(down) = &mut down_script {
                down.directives.no_transaction = true;
            }
        }
        Ok(false) => {}
        Err(problem) => {
            problems.push(problem);
            return None;
        }
    }
    Some(Migration {
        version: up.name.version,
        version_text: up.name.version_text,
        name: up.name.name,
        up: up_script,
        down: down_script,
        form: up.form,
    })
}

/// A Flyway file as Flyway runs it: refused when it holds a `${placeholder}` (Flyway replaces
/// them from its configuration, sluice does not), and run statement by statement outside a
/// transaction when it holds a statement PostgreSQL refuses inside one, as Flyway does.
fn as_flyway_runs(script: Script, problems: &mut Vec<String>) -> Option<Script> {
    if let Some((line, placeholder)) = flyway::placeholder(&script.sql) {
        problems.push(format!(
            "{}:{line}: the Flyway placeholder {placeholder}, which sluice does not replace; \
             write its value in the file (nothing was run)",
            script.path.display()
        ));
        return None;
    }
    let outside = script
        .statements()
        .is_some_and(|s| s.len() > 1 && s.iter().any(|statement| statement.outside_only));
    Some(if outside {
        script.outside_a_transaction()
    } else {
        script
    })
}

/// A file with another tool's up and down sections ([`sections`]): its up section is the
/// migration, its down section the revert. `None` when the file has no markers; `Some(None)`
/// when it cannot be used (the problem is recorded).
fn build_sections(
    up: &Found,
    down: Option<&Found>,
    problems: &mut Vec<String>,
) -> Option<Option<Migration>> {
    let split = match sections::split(&up.text) {
        Ok(split) => split?,
        Err(e) => {
            problems.push(format!(
                "{}:{}: {}; the file was not run",
                up.path.display(),
                e.line,
                e.message
            ));
            return Some(None);
        }
    };
    if let Some(down) = down {
        problems.push(format!(
            "{}: a down file for {}, which holds its own {} down section: keep one of them",
            down.path.display(),
            up.path.display(),
            split.tool
        ));
        return Some(None);
    }
    let script = |text: &str, no_transaction: bool, problems: &mut Vec<String>| {
        let mut script = Script::parse(&up.path, text)
            .map_err(|e: ScriptError| problems.push(e.to_string()))
            .ok()?;
        script.directives.no_transaction |= no_transaction;
        Some(script)
    };
    let up_script = script(&split.up, split.up_no_transaction, problems);
    let down_script = match &split.down {
        Some(text) => Some(script(text, split.down_no_transaction, problems)),
        None => None,
    };
    let form = Form::Sections(Layout::of_tool(split.tool).expect("sections name a known tool"));
    Some(match (up_script, down_script) {
        (Some(up_script), None) => Some(migration(up, up_script, None, form)),
        (Some(up_script), Some(Some(down_script))) => {
            Some(migration(up, up_script, Some(down_script), form))
        }
        _ => None,
    })
}

/// The scripts of one file named on its own (`sluice lint FILE`): its up and down sections
/// when it holds another tool's markers, else the whole file.
pub fn file_scripts(path: &Path, text: &str) -> Result<Vec<Script>, String> {
    let parse = |text: &str, no_transaction: bool| {
        Script::parse(path, text)
            .map(|mut script| {
                script.directives.no_transaction |= no_transaction;
                script
            })
            .map_err(|e| e.to_string())
    };
    match sections::split(text) {
        Ok(None) => Ok(vec![parse(text, false)?]),
        Ok(Some(split)) => {
            let mut scripts = vec![parse(&split.up, split.up_no_transaction)?];
            if let Some(down) = &split.down {
                scripts.push(parse(down, split.down_no_transaction)?);
            }
            Ok(scripts)
        }
        Err(e) => Err(format!(
            "{}:{}: {}; the file was not run",
            path.display(),
            e.line,
            e.message
        )),
    }
}

fn migration(found: &Found, up: Script, down: Option<Script>, form: Form) -> Migration {
    Migration {
        version: found.name.version,
        version_text: found.name.version_text.clone(),
        name: found.name.name.clone(),
        up,
        down,
        form,
    }
}

fn parse_script(found: &Found, problems: &mut Vec<String>) -> Option<Script> {
    Script::parse(&found.path, &found.text)
        .map_err(|e: ScriptError| problems.push(e.to_string()))
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::Layout;

    #[test]
    fn parses_the_three_layouts() {
        let plain = parse_file_name("20260101120000_create_users.sql")
            .unwrap()
            .unwrap();
        assert_eq!(plain.version, 20_260_101_120_000);
        assert_eq!(plain.name, "create_users");
        assert_eq!(plain.direction, Direction::Plain);
        let up = parse_file_name("0002_add_email.up.sql").unwrap().unwrap();
        assert_eq!(
            (up.version, up.version_text.as_str(), up.direction),
            (2, "0002", Direction::Up)
        );
        let down = parse_file_name("0002_add_email.down.sql").unwrap().unwrap();
        assert_eq!(down.direction, Direction::Down);
    }

    #[test]
    fn skips_files_that_are_not_sql() {
        assert_eq!(parse_file_name("README.md").unwrap(), None);
    }

    #[test]
    fn sqlx_descriptions_may_hold_any_text() {
        for (file, name) in [
            (
                "20260422113000_[2.0.0]_signing_key.up.sql",
                "[2.0.0]_signing_key",
            ),
            ("0001_a.b.sql", "a.b"),
            ("20260101000000_Add-Users.sql", "Add-Users"),
        ] {
            assert_eq!(parse_file_name(file).unwrap().unwrap().name, name, "{file}");
        }
    }

    #[test]
    fn refuses_malformed_names_saying_what_was_expected() {
        for bad in [
            "create_users.sql",
            "v1_x.sql",
            "0001.sql",
            "0001_.sql",
            "99999999999999999999_x.sql",
        ] {
            let err = parse_file_name(bad).unwrap_err();
            assert!(err.starts_with(bad), "{err}");
        }
        assert!(
            parse_file_name("create_users.sql")
                .unwrap_err()
                .contains("expected <version>_<name>.sql")
        );
    }

    fn dir_with(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in files {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        dir
    }

    #[test]
    fn loads_sorted_by_version_with_downs_paired() {
        let dir = dir_with(&[
            ("0010_b.up.sql", "SELECT 2;"),
            ("0010_b.down.sql", "SELECT -2;"),
            ("0002_a.sql", "SELECT 1;"),
            ("README.md", "not a migration"),
        ]);
        let migrations = load(dir.path(), Choice::Auto).unwrap().migrations;
        let ids: Vec<String> = migrations.iter().map(Migration::id).collect();
        assert_eq!(ids, vec!["0002_a", "0010_b"]);
        assert!(migrations[0].down.is_none());
        assert_eq!(migrations[1].down.as_ref().unwrap().sql, "SELECT -2;");
        assert!(load_checked(dir.path(), Choice::Auto).is_ok());
    }

    #[test]
    fn reports_duplicates_orphans_and_mismatches_naming_files() {
        let dir = dir_with(&[
            ("0001_a.sql", "SELECT 1;"),
            ("0001_b.sql", "SELECT 1;"),
            ("0002_c.down.sql", "SELECT 1;"),
            ("0003_d.up.sql", "SELECT 1;"),
            ("0003_e.down.sql", "SELECT 1;"),
            ("0003_e.up.sql", "SELECT 1;"),
            ("0004_f.sql", "SELECT 1;"),
            ("0004_f.down.sql", "SELECT 1;"),
            ("bad.sql", "SELECT 1;"),
        ]);
        let err = load(dir.path(), Choice::Auto).unwrap_err();
        let text = err.to_string();
        assert_eq!(err.problems.len(), 5, "{text}");
        assert!(
            text.contains("0001_a.sql") && text.contains("versions must be unique"),
            "{text}"
        );
        assert!(
            text.contains("0002_c.down.sql: a down file without its up file"),
            "{text}"
        );
        assert!(
            text.contains("0003_d.up.sql") && text.contains("0003_e.up.sql"),
            "two up files of one version are named: {text}"
        );
        assert!(text.contains("0004_f.down.sql: a down file for"), "{text}");
        assert!(text.contains("bad.sql: expected"), "{text}");
    }

    #[test]
    fn diesel_names_with_a_dash_after_the_version_are_read() {
        assert_eq!(
            parse_directory_name("2023-05-23-1715-update-assignment").unwrap(),
            (202305231715, "2023-05-23-1715", "update-assignment")
        );
        assert_eq!(
            parse_directory_name("2024-01-31-120000_create_users").unwrap(),
            (20240131120000, "2024-01-31-120000", "create_users")
        );
        assert!(parse_directory_name("k8s").is_err());
        assert!(parse_directory_name("12-x").is_err());
    }

    #[test]
    fn golang_migrate_pairs_up_and_down_by_version_in_numeric_order() {
        let dir = dir_with(&[
            ("1_init.up.sql", "SELECT 1;"),
            ("2_x.up.sql", "SELECT 2;"),
            ("10_y.up.sql", "SELECT 10;"),
            ("64_add_flags.up.sql", "SELECT 64;"),
            ("64_drop_flags.down.sql", "SELECT -64;"),
        ]);
        let migrations = load(dir.path(), Choice::Auto).unwrap().migrations;
        let versions: Vec<i64> = migrations.iter().map(|m| m.version).collect();
        assert_eq!(versions, [1, 2, 10, 64]);
        let flags = &migrations[3];
        assert_eq!(flags.id(), "64_add_flags");
        assert_eq!(flags.down.as_ref().unwrap().sql, "SELECT -64;");
    }

    fn diesel_dir(root: &Path, name: &str, files: &[(&str, &str)]) {
        std::fs::create_dir(root.join(name)).unwrap();
        for (file, text) in files {
            std::fs::write(root.join(name).join(file), text).unwrap();
        }
    }

    #[test]
    fn reads_diesel_directories_with_dashed_versions() {
        let dir = tempfile::tempdir().unwrap();
        diesel_dir(
            dir.path(),
            "00000000000000_diesel_initial_setup",
            &[("up.sql", "SELECT 0;"), ("down.sql", "SELECT -0;")],
        );
        diesel_dir(
            dir.path(),
            "2024-01-31-120000_create_users",
            &[("up.sql", "SELECT 1;"), ("down.sql", "SELECT -1;")],
        );
        diesel_dir(dir.path(), "k8s", &[("job.yaml", "kind: Job")]);
        diesel_dir(
            dir.path(),
            "2024-02-01-1200-twelve-digits",
            &[("up.sql", "SELECT 2;")],
        );
        let loaded = load(dir.path(), Choice::Auto).unwrap();
        assert_eq!(loaded.layout, Layout::Diesel);
        let migrations = loaded.migrations;
        let ids: Vec<String> = migrations.iter().map(Migration::id).collect();
        assert_eq!(
            ids,
            vec![
                "00000000000000_diesel_initial_setup",
                "2024-01-31-120000_create_users",
                "2024-02-01-1200_twelve-digits"
            ]
        );
        assert_eq!(migrations[1].version, 20_240_131_120_000);
        assert_eq!(migrations[1].down.as_ref().unwrap().sql, "SELECT -1;");
        // A flat file beside diesel's directories makes a mixed directory: refused, named.
        std::fs::write(dir.path().join("20240301000000_flat.sql"), "SELECT 3;").unwrap();
        let mixed = load(dir.path(), Choice::Auto).unwrap_err().to_string();
        assert!(mixed.contains("20240301000000_flat.sql"), "{mixed}");
    }

    #[test]
    fn diesel_directories_that_cannot_be_read_say_why() {
        let dir = tempfile::tempdir().unwrap();
        diesel_dir(dir.path(), "2024-01-x_bad", &[("up.sql", "SELECT 1;")]);
        diesel_dir(dir.path(), "0002_orphan", &[("down.sql", "SELECT 1;")]);
        diesel_dir(
            dir.path(),
            "0003_concurrent",
            &[
                ("up.sql", "CREATE INDEX CONCURRENTLY i ON t (a);"),
                ("metadata.toml", "run_in_transaction = false\n"),
            ],
        );
        let text = load(dir.path(), Choice::Auto).unwrap_err().to_string();
        assert!(text.contains("2024-01-x_bad/: the version"), "{text}");
        assert!(
            text.contains("0002_orphan/down.sql: a down file without"),
            "{text}"
        );
        // diesel's run_in_transaction = false is read as it is: no edit needed.
        assert!(!text.contains("0003_concurrent"), "{text}");
        std::fs::remove_dir_all(dir.path().join("2024-01-x_bad")).unwrap();
        std::fs::remove_dir_all(dir.path().join("0002_orphan")).unwrap();
        let migrations = load_checked(dir.path(), Choice::Auto).unwrap().migrations;
        assert!(migrations[0].up.directives.no_transaction);
    }

    #[test]
    fn reads_top_level_sql_and_diesel_files_only() {
        for read in ["0001_a.sql", "2024-01-31_x/up.sql", "0002_b/metadata.toml"] {
            assert!(is_read(read), "{read}");
        }
        for skipped in [
            "README.md",
            ".0001_hidden.sql",
            ".git/up.sql",
            "k8s/job.yaml",
            "a/b/up.sql",
            "0001_a/notes.sql",
        ] {
            assert!(!is_read(skipped), "{skipped}");
        }
    }

    #[test]
    fn files_read_elsewhere_load_as_the_directory_does() {
        let summary = |ms: &[Migration]| -> Vec<(String, String, bool, Option<String>, PathBuf)> {
            ms.iter()
                .map(|m| {
                    (
                        m.id(),
                        m.up.checksum.clone(),
                        m.up.directives.no_transaction,
                        m.down.as_ref().map(|d| d.checksum.clone()),
                        m.up.path.clone(),
                    )
                })
                .collect()
        };
        let flat = [
            ("0001_a.up.sql", "CREATE TABLE a (id int);\r\n"),
            ("0001_a.down.sql", "DROP TABLE a;"),
            (
                "0003_c.sql",
                "-- sluice:no-transaction\nCREATE INDEX CONCURRENTLY i ON a (id);",
            ),
            ("notes.txt", "not read"),
        ];
        let dir = dir_with(&flat);
        let from_disk = load(dir.path(), Choice::Auto).unwrap().migrations;
        let files = flat.map(|(path, text)| SourceFile { path, text });
        let embedded = load_files(dir.path(), &files, Choice::Auto)
            .unwrap()
            .migrations;
        assert_eq!(summary(&embedded), summary(&from_disk));
        assert_eq!(embedded.len(), 2);
        assert!(embedded[1].up.directives.no_transaction);

        let dir = tempfile::tempdir().unwrap();
        let diesel = [
            ("up.sql", "SELECT 1;"),
            ("metadata.toml", "run_in_transaction = false\n"),
        ];
        diesel_dir(dir.path(), "2024-01-31-120000_d", &diesel);
        let from_disk = load(dir.path(), Choice::Auto).unwrap().migrations;
        let paths = diesel.map(|(file, _)| format!("2024-01-31-120000_d/{file}"));
        let files: Vec<SourceFile<'_>> = paths
            .iter()
            .zip(diesel)
            .map(|(path, (_, text))| SourceFile { path, text })
            .collect();
        let embedded = load_files(dir.path(), &files, Choice::Auto)
            .unwrap()
            .migrations;
        assert_eq!(summary(&embedded), summary(&from_disk));
        assert_eq!(embedded.len(), 1);
        assert!(
            embedded[0].up.directives.no_transaction,
            "diesel metadata read"
        );
        // Embedded files that mix layouts are refused as a directory that does.
        let mut mixed = files.clone();
        mixed.push(SourceFile {
            path: "0003_c.sql",
            text: "SELECT 3;",
        });
        let text = load_files(dir.path(), &mixed, Choice::Auto)
            .unwrap_err()
            .to_string();
        assert!(
            text.contains("0003_c.sql") && text.contains("mixes layouts"),
            "{text}"
        );
        let bad = [SourceFile {
            path: "0001_x.down.sql",
            text: "SELECT 1;",
        }];
        let text = load_files(Path::new("migrations"), &bad, Choice::Auto)
            .unwrap_err()
            .to_string();
        assert!(
            text.contains("migrations/0001_x.down.sql: a down file without"),
            "{text}"
        );
    }

    #[test]
    fn a_missing_directory_says_what_to_do() {
        let err = load(Path::new("/nonexistent/migrations"), Choice::Auto).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/migrations"));
        assert!(err.to_string().contains("sluice new"));
    }

    #[test]
    fn a_version_is_named_as_written_or_as_its_layout_numbers_it() {
        let files = |names: &[&str]| -> Loaded {
            let sources: Vec<SourceFile<'_>> = names
                .iter()
                .map(|path| SourceFile {
                    path,
                    text: "SELECT 1;",
                })
                .collect();
            load_files(Path::new("m"), &sources, Choice::Auto).expect("loads")
        };
        let flyway = files(&["V1__a.sql", "V1.1__b.sql", "V1.10__c.sql", "R__views.sql"]);
        let named =
            |loaded: &Loaded, text: &str| version_named(&loaded.migrations, loaded.layout, text);
        assert_eq!(flyway.repeatables.len(), 1);
        assert_eq!(named(&flyway, "1.10"), Some(flyway.migrations[2].version));
        assert_eq!(named(&flyway, "V1.1"), Some(flyway.migrations[1].version));
        assert_eq!(named(&flyway, "1.1_b"), Some(flyway.migrations[1].version));
        assert_ne!(named(&flyway, "1.1"), named(&flyway, "11"));
        let flat = files(&["0002_add_email.sql"]);
        assert_eq!(named(&flat, "2"), Some(2));
        assert_eq!(named(&flat, "0002_add_email"), Some(2));
        assert_eq!(named(&flat, "two"), None);
    }
}
