//! `sluice-backfill`: the backfill engine. Parsing, logging and exit codes live in the
//! library's `cli`; the work is done by the rest of it.

fn main() -> std::process::ExitCode {
    sluice_backfill::cli::main()
}
