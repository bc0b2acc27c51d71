// The doctests and unit tests embed ./migrations: rebuild when a file is added or removed.
fn main() {
    println!("cargo::rerun-if-changed=migrations");
}
