//! `sluice-backfill`: the backfill engine. Parsing, logging and exit codes live in `cli`; the
//! work is done by the `sluice_backfill` library.

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
