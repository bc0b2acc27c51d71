//! Reading the files people point sluice at (config, job specs, migrations, lint and check
//! files, schema files), with the checks a careless path needs: `--config /dev/zero` must not
//! grow until memory runs out, a FIFO must not block forever, a dangling symlink must not
//! silently drop a migration, and a file that is not text must not be quoted back.

use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Largest config file or job spec: far above any real one.
pub const MAX_SPEC_BYTES: u64 = 1024 * 1024;
/// Largest SQL file (a migration, a lint or check file, a schema file).
pub const MAX_SQL_BYTES: u64 = 64 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("cannot read the {what} {}: {error}", path.display())]
    Io {
        path: PathBuf,
        what: &'static str,
        error: std::io::Error,
    },
    #[error(
        "cannot read the {what} {}: it is a symlink to {}, which does not exist; fix or \
         remove the link",
        path.display(),
        target.display()
    )]
    Dangling {
        path: PathBuf,
        what: &'static str,
        target: PathBuf,
    },
    #[error(
        "cannot read the {what} {}: it is not a regular file (it is {kind}); name a file",
        path.display()
    )]
    NotRegular {
        path: PathBuf,
        what: &'static str,
        kind: &'static str,
    },
    #[error(
        "cannot read the {what} {}: it is over {limit} bytes, the most sluice reads for one; \
         is it the right file?",
        path.display()
    )]
    TooLarge {
        path: PathBuf,
        what: &'static str,
        limit: u64,
    },
    #[error(
        "cannot read the {what} {}: it is not UTF-8 text (nothing of it is shown)",
        path.display()
    )]
    NotText { path: PathBuf, what: &'static str },
}

impl InputError {
    /// Whether the path simply does not exist (callers that look for optional files skip it).
    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::Io { error, .. } if error.kind() == std::io::ErrorKind::NotFound)
    }
}

/// Reads `path` as UTF-8 text of at most `limit` bytes; `what` names what it should be
/// ("migration", "job spec") for the messages.
pub fn read_text(path: &Path, what: &'static str, limit: u64) -> Result<String, InputError> {
    let io = |error| InputError::Io {
        path: path.to_path_buf(),
        what,
        error,
    };
    // Opened without blocking, so that a FIFO cannot hang the run, and then asked what it
    // is: one path lookup per file (a directory of 10,000 migrations reads 20,000 files).
    let file = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
    {
        Ok(file) => file,
        Err(e)
            if e.kind() == std::io::ErrorKind::NotFound
                && std::fs::symlink_metadata(path).is_ok_and(|l| l.file_type().is_symlink()) =>
        {
            return Err(InputError::Dangling {
                path: path.to_path_buf(),
                what,
                target: std::fs::read_link(path).unwrap_or_default(),
            });
        }
        // A socket cannot be opened at all: say what it is.
        Err(e) => match std::fs::metadata(path) {
            Ok(metadata) if !metadata.is_file() => {
                return Err(InputError::NotRegular {
                    path: path.to_path_buf(),
                    what,
                    kind: kind_of(&metadata.file_type()),
                });
            }
            _ => return Err(io(e)),
        },
    };
    let metadata = file.metadata().map_err(io)?;
    if !metadata.is_file() {
        return Err(InputError::NotRegular {
            path: path.to_path_buf(),
            what,
            kind: kind_of(&metadata.file_type()),
        });
    }
    let too_large = || InputError::TooLarge {
        path: path.to_path_buf(),
        what,
        limit,
    };
    if metadata.len() > limit {
        return Err(too_large());
    }
    let mut bytes = Vec::with_capacity(usize::try_from(metadata.len()).unwrap_or(0));
    file
        // The file may grow after the size was read.
        .take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(io)?;
    if u64::try_from(bytes.len()).unwrap_or(u64::MAX) > limit {
        return Err(too_large());
    }
    String::from_utf8(bytes).map_err(|_| InputError::NotText {
        path: path.to_path_buf(),
        what,
    })
}

fn kind_of(file_type: &std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if file_type.is_dir() {
        "a directory"
    } else if file_type.is_fifo() {
        "a named pipe"
    } else if file_type.is_char_device() || file_type.is_block_device() {
        "a device"
    } else if file_type.is_socket() {
        "a socket"
    } else {
        "not a regular file"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_pipes_links_and_large_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let zero = read_text(Path::new("/dev/zero"), "config file", MAX_SPEC_BYTES);
        assert!(
            matches!(
                zero,
                Err(InputError::NotRegular {
                    kind: "a device",
                    ..
                })
            ),
            "{zero:?}"
        );
        let dangling = dir.path().join("0002_gone.sql");
        std::os::unix::fs::symlink(dir.path().join("nowhere.sql"), &dangling).unwrap();
        let error = read_text(&dangling, "migration", MAX_SQL_BYTES).unwrap_err();
        assert!(error.to_string().contains("does not exist"), "{error}");
        let big = dir.path().join("big.toml");
        std::fs::write(&big, vec![b'a'; 2048]).unwrap();
        assert!(matches!(
            read_text(&big, "job spec", 1024),
            Err(InputError::TooLarge { .. })
        ));
        let binary = dir.path().join("bin.sql");
        std::fs::write(&binary, [0xff, 0xfe, b's', b'e', b'c', b'r', b'e', b't']).unwrap();
        let error = read_text(&binary, "migration", MAX_SQL_BYTES).unwrap_err();
        assert!(!error.to_string().contains("secret"), "{error}");
        let fine = dir.path().join("ok.sql");
        std::fs::write(&fine, "SELECT 1;").unwrap();
        assert_eq!(
            read_text(&fine, "migration", MAX_SQL_BYTES).unwrap(),
            "SELECT 1;"
        );
        assert!(
            read_text(&dir.path().join("absent"), "x", 10)
                .unwrap_err()
                .is_not_found()
        );
    }
}
