// tests/integration/embedded.rs embeds tests/embedded/*: rebuild when a file is added or removed.
fn main() {
    println!("cargo::rerun-if-changed=embedded");
}
