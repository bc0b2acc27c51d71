//! A migrations directory compiled into the binary.

use std::path::Path;

use sluice_runner::layout::Choice;
use sluice_runner::source::{self, Loaded, SourceError, SourceFile};

/// A migrations directory compiled into the binary by [`embed_migrations!`](crate::embed_migrations):
/// every file sluice reads there (`*.sql`, and diesel's `<version>_<name>/up.sql`, `down.sql`
/// and `metadata.toml`), with its text.
///
/// Nothing is read from disk at run time. The files are taken apart by the code the `sluice`
/// CLI uses on a directory, so both find the same versions, names and checksums, and agree on
/// history.
#[derive(Debug, Clone, Copy)]
pub struct Embedded {
    root: &'static str,
    files: &'static [EmbeddedFile],
}

/// One embedded file.
#[derive(Debug, Clone, Copy)]
pub struct EmbeddedFile {
    /// Relative to the migrations directory, `/` between parts: `0001_users.sql`,
    /// `2024-01-31-120000_users/up.sql`.
    pub path: &'static str,
    pub text: &'static str,
}

impl Embedded {
    /// Used by [`embed_migrations!`](crate::embed_migrations); not meant to be called by hand.
    #[doc(hidden)]
    pub const fn __from_macro(root: &'static str, files: &'static [EmbeddedFile]) -> Self {
        Self { root, files }
    }

    /// The directory as given to the macro (relative to the embedding crate), which names the
    /// files in messages.
    pub fn root(&self) -> &'static str {
        self.root
    }

    /// The embedded files, sorted by path.
    pub fn files(&self) -> &'static [EmbeddedFile] {
        self.files
    }

    pub(crate) fn load(&self) -> Result<Loaded, SourceError> {
        let files: Vec<SourceFile<'static>> = self
            .files
            .iter()
            .map(|f| SourceFile {
                path: f.path,
                text: f.text,
            })
            .collect();
        source::load_files(Path::new(self.root), &files, Choice::Auto)
    }
}
