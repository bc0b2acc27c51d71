//! The programs under test, built from the current sources.
//!
//! Cargo only exposes `CARGO_BIN_EXE_*` to a package's own integration tests, and these tests
//! live in a separate crate; so the first call builds the binaries with the cargo that runs
//! the tests (a no-op when they are current) and returns their paths in the target directory.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

static BUILT: OnceLock<PathBuf> = OnceLock::new();

/// Path of the `sluice` binary.
pub fn sluice() -> PathBuf {
    dir().join("sluice")
}

/// Path of the example application that embeds the repository's migrations.
pub fn example_app() -> PathBuf {
    dir().join("sluice-example-app")
}

/// Path of the `sluice-backfill` binary.
pub fn sluice_backfill() -> PathBuf {
    dir().join("sluice-backfill")
}

fn dir() -> &'static PathBuf {
    BUILT.get_or_init(|| {
        let exe = std::env::current_exe().expect("the test binary knows its path");
        // target/<profile>/deps/<test> → target/<profile>
        let profile_dir = exe
            .parent()
            .and_then(|deps| deps.parent())
            .expect("the test binary lives in target/<profile>/deps")
            .to_path_buf();
        build_binaries(&profile_dir);
        profile_dir
    })
}

fn build_binaries(profile_dir: &std::path::Path) {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command.args([
        "build",
        "--quiet",
        "--bins",
        "--package",
        "sluice-runner",
        "--package",
        "sluice-backfill",
        "--package",
        "sluice-example-app",
    ]);
    // Cargo sets these for the test process; inherited, they would change the fingerprint of
    // build scripts that watch them (ring's watches CARGO_MANIFEST_DIR), and every `cargo test`
    // would then rebuild half the dependency tree.
    for (name, _) in std::env::vars_os() {
        let name_str = name.to_string_lossy();
        if name_str.starts_with("CARGO_PKG_")
            || name_str.starts_with("CARGO_MANIFEST_")
            || name_str.starts_with("CARGO_BIN_EXE_")
            || [
                "CARGO_CRATE_NAME",
                "CARGO_PRIMARY_PACKAGE",
                "CARGO_TARGET_TMPDIR",
            ]
            .contains(&name_str.as_ref())
        {
            command.env_remove(&name);
        }
    }
    if profile_dir.file_name().is_some_and(|n| n == "release") {
        command.arg("--release");
    }
    let status = command
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .expect("cannot run cargo to build the binaries under test");
    assert!(
        status.success(),
        "building sluice, sluice-backfill and sluice-example-app failed"
    );
}
