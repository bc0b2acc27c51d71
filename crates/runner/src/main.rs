//! `sluice`: the schema runner. Parsing, logging and exit codes live in `cli`; the work is
//! done by the `sluice_runner` library.

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
