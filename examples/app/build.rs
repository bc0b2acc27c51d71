// The binary embeds the repository's migrations/: rebuild when a file is added or removed
// (edits are seen without this).
fn main() {
    println!("cargo::rerun-if-changed=../../migrations");
}
