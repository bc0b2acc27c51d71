//! `sluice-backfill`: the backfill engine. Parsing, logging and exit codes live in `cli`; the
//! work is done by the `sluice_backfill` library.

// Output goes through sluice_common::{outln, out, errln}, which survive a closed pipe.
#![deny(clippy::print_stdout, clippy::print_stderr)]

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
