//! `embed_migrations!`, re-exported by `sluice-migrate`: reads a migrations directory at compile
//! time and expands to a `sluice_migrate::Embedded` holding every file sluice reads in it.
//!
//! Each file is embedded with `include_str!`, so editing one rebuilds the crate that embeds it.
//! Adding or removing a file is not seen by the compiler on its own: the crate's `build.rs`
//! prints `cargo::rerun-if-changed=<dir>` for that (the documentation of `sluice-migrate` shows
//! it). The files are taken apart and checked by `sluice-migrate` itself, with the code the
//! `sluice` CLI uses, so that both find the same migrations and checksums.

use std::path::{Path, PathBuf};

use proc_macro::TokenStream;
use quote::quote;
use syn::LitStr;

/// The files of a diesel migration directory that sluice reads (as `sluice_runner::source`).
const DIESEL_FILES: [&str; 3] = ["up.sql", "down.sql", "metadata.toml"];

/// Embeds the migrations directory `path` (relative to the crate's `Cargo.toml`; `"migrations"`
/// when omitted) into the binary. See `sluice_migrate::embed_migrations!`.
#[proc_macro]
pub fn embed_migrations(input: TokenStream) -> TokenStream {
    let path = if input.is_empty() {
        LitStr::new("migrations", proc_macro2::Span::call_site())
    } else {
        match syn::parse::<LitStr>(input) {
            Ok(path) => path,
            Err(error) => return error.to_compile_error().into(),
        }
    };
    match expand(&path.value()) {
        Ok(tokens) => tokens.into(),
        Err(message) => syn::Error::new(path.span(), message)
            .to_compile_error()
            .into(),
    }
}

fn expand(relative: &str) -> Result<proc_macro2::TokenStream, String> {
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR")
        .map_err(|_| "CARGO_MANIFEST_DIR is not set: build with cargo".to_owned())?;
    let dir = Path::new(&manifest_dir).join(relative);
    let files = read(&dir).map_err(|e| format!("{e} (the path is relative to {manifest_dir})"))?;
    if files.is_empty() {
        return Err(format!(
            "no migration files in {} (the path is relative to {manifest_dir}); expected \
             <version>_<name>.sql files, or diesel's <version>_<name>/up.sql",
            dir.display()
        ));
    }
    let entries = files.iter().map(|(name, absolute)| {
        let absolute = absolute.to_str().expect("checked in read");
        quote! {
            ::sluice_migrate::EmbeddedFile {
                path: #name,
                text: ::core::include_str!(#absolute),
            }
        }
    });
    Ok(quote! {
        ::sluice_migrate::Embedded::__from_macro(#relative, &[#(#entries),*])
    })
}

/// The files sluice reads in `dir`, as (relative `/`-separated path, absolute path), sorted:
/// `*.sql` at the top and diesel's files one directory down; hidden entries are skipped.
fn read(dir: &Path) -> Result<Vec<(String, PathBuf)>, String> {
    let entries = std::fs::read_dir(dir).map_err(|e| {
        format!(
            "cannot read the migrations directory {}: {e}",
            dir.display()
        )
    })?;
    let mut files = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry
            .file_name()
            .into_string()
            .map_err(|name| format!("{}: the name is not UTF-8", Path::new(&name).display()))?;
        if name.starts_with('.') {
            continue;
        }
        if path.is_dir() {
            for file in DIESEL_FILES {
                if path.join(file).is_file() {
                    files.push((format!("{name}/{file}"), path.join(file)));
                }
            }
        } else if name.ends_with(".sql") {
            files.push((name, path));
        }
    }
    files.sort();
    for (_, path) in &files {
        // include_str! needs UTF-8 text and a UTF-8 path; say which file is neither.
        std::fs::read_to_string(path)
            .map_err(|e| format!("{}: cannot be embedded: {e}", path.display()))?;
        if path.to_str().is_none() {
            return Err(format!("{}: the path is not UTF-8", path.display()));
        }
    }
    Ok(files)
}
