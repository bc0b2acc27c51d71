//! The lint baseline of an adopted history: the findings in files that were applied before the
//! project used sluice, accepted once and committed next to the migrations
//! (`sluice-lint-baseline.toml`), so that a fresh database (CI, a new environment) applies the
//! old files unedited while every new file is held to the rules. A listed file is accepted only
//! while its checksum is the one recorded: an edit is linted again.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::lint::Finding;
use crate::script::Script;

/// The baseline file's name, in the migrations directory.
pub const FILE_NAME: &str = "sluice-lint-baseline.toml";

const HEADER: &str = "# Lint findings accepted when this project adopted sluice: the files below were applied\n\
# before it. A file is accepted only while its checksum is the one recorded here; new files,\n\
# and any edit of a listed one, are linted as usual. Written by `sluice lint --write-baseline`.\n\n";

/// The accepted findings, by file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Baseline {
    #[serde(default, rename = "file")]
    pub files: Vec<Accepted>,
}

/// One file's accepted rules.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Accepted {
    /// The path relative to the migrations directory.
    pub name: String,
    pub checksum: String,
    pub rules: Vec<String>,
}

impl Baseline {
    /// The baseline in `dir`, or none when there is no file; an unreadable one is an error.
    pub fn load(dir: &Path) -> Result<Self, String> {
        let path = dir.join(FILE_NAME);
        match std::fs::read_to_string(&path) {
            Ok(text) => toml::from_str(&text).map_err(|e| {
                format!(
                    "{}: not a lint baseline: {}",
                    path.display(),
                    e.to_string().trim_end()
                )
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(format!("cannot read {}: {e}", path.display())),
        }
    }

    /// The baseline that accepts every blocking finding in `findings` (each file's current
    /// checksum is taken from `scripts`).
    pub fn of(dir: &Path, scripts: &[Script], findings: &[Finding]) -> Self {
        let mut by_file: BTreeMap<PathBuf, Vec<String>> = BTreeMap::new();
        for finding in findings.iter().filter(|f| f.blocks()) {
            let rules = by_file.entry(finding.path.clone()).or_default();
            if !rules.contains(&finding.rule) {
                rules.push(finding.rule.clone());
            }
        }
        let files = by_file
            .into_iter()
            .filter_map(|(path, rules)| {
                let script = scripts.iter().find(|s| s.path == path)?;
                Some(Accepted {
                    name: relative(dir, &path),
                    checksum: script.checksum.clone(),
                    rules,
                })
            })
            .collect();
        Self { files }
    }

    /// Writes the baseline into `dir`.
    pub fn write(&self, dir: &Path) -> Result<PathBuf, String> {
        let path = dir.join(FILE_NAME);
        let text = toml::to_string(self).map_err(|e| e.to_string())?;
        std::fs::write(&path, format!("{HEADER}{text}"))
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        Ok(path)
    }

    /// Marks the findings of `script` that the baseline accepts (same file, same checksum,
    /// listed rule).
    pub fn pass(&self, dir: &Path, script: &Script, findings: &mut [Finding]) {
        let name = relative(dir, &script.path);
        let Some(accepted) = self
            .files
            .iter()
            .find(|a| a.name == name && a.checksum == script.checksum)
        else {
            return;
        };
        for finding in findings.iter_mut().filter(|f| f.approved.is_none()) {
            if accepted.rules.contains(&finding.rule) {
                finding.approved = Some(format!("accepted by {FILE_NAME}"));
            }
        }
    }
}

fn relative(dir: &Path, path: &Path) -> String {
    path.strip_prefix(dir)
        .unwrap_or(path)
        .to_string_lossy()
        .replace('\\', "/")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lint::{LintSettings, lint};

    #[test]
    fn a_baseline_accepts_its_files_while_they_are_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        let old = Script::parse(
            &dir.path().join("0001_old.sql"),
            "ALTER TABLE t DROP COLUMN c;\n",
        )
        .unwrap();
        let findings = lint(&old, &LintSettings::default());
        assert!(findings.iter().any(Finding::blocks));
        let baseline = Baseline::of(dir.path(), std::slice::from_ref(&old), &findings);
        baseline.write(dir.path()).unwrap();
        let loaded = Baseline::load(dir.path()).unwrap();
        assert_eq!(loaded, baseline);
        assert_eq!(loaded.files[0].name, "0001_old.sql");

        let mut again = lint(&old, &LintSettings::default());
        loaded.pass(dir.path(), &old, &mut again);
        assert!(!again.iter().any(Finding::blocks));

        // The same change in a new file, or an edit of the old one, is linted as usual.
        let new = Script::parse(
            &dir.path().join("0002_new.sql"),
            "ALTER TABLE t DROP COLUMN c;\n",
        )
        .unwrap();
        let mut fresh = lint(&new, &LintSettings::default());
        loaded.pass(dir.path(), &new, &mut fresh);
        assert!(fresh.iter().any(Finding::blocks));
        let edited = Script::parse(
            &dir.path().join("0001_old.sql"),
            "ALTER TABLE t DROP COLUMN d;\n",
        )
        .unwrap();
        let mut changed = lint(&edited, &LintSettings::default());
        loaded.pass(dir.path(), &edited, &mut changed);
        assert!(changed.iter().any(Finding::blocks));
    }

    #[test]
    fn no_file_is_an_empty_baseline_and_a_bad_one_says_so() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(Baseline::load(dir.path()).unwrap(), Baseline::default());
        std::fs::write(dir.path().join(FILE_NAME), "[[file]]\nname = 1\n").unwrap();
        assert!(Baseline::load(dir.path()).unwrap_err().contains(FILE_NAME));
    }
}
