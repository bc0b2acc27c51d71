//! Command-line interface of `sluice`.

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use sluice_common::cli::{GlobalArgs, common_config_rows, common_exit_code, render_config_rows};
use sluice_common::exit;

const PROGRAM: &str = "sluice-backfill";

/// sluice-backfill: fill or rewrite table data in throttled, resumable batches.
///
/// Jobs are TOML specs in ./jobs. Each batch commits together with its progress, so a crash,
/// Ctrl-C or pod eviction loses nothing and repeats nothing.
#[derive(Debug, Parser)]
#[command(name = PROGRAM, version, propagate_version = true)]
struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Start a job, or resume it where it stopped.
    Run,
    /// Show key bounds, estimated rows and batches, the batch SQL and its plan; changes nothing.
    Plan,
    /// Show jobs: state, cursor, rows done, rate, ETA, last error.
    Status,
    /// Ask running workers of a job to pause after their current batch.
    Pause,
    /// Let a paused job continue.
    Resume,
    /// Stop a job for good; its committed batches stay.
    Cancel,
    /// Show the effective settings and where each comes from.
    Config,
}

pub fn main() -> ExitCode {
    let matches = Cli::command()
        .after_long_help(sluice_common::cli::exit_codes_help())
        .get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(error) => error.exit(),
    };
    match run(cli, &matches) {
        Ok(code) => ExitCode::from(code),
        Err(error) => {
            eprintln!("{PROGRAM}: error: {error:#}");
            ExitCode::from(exit_code_of(&error))
        }
    }
}

fn run(cli: Cli, matches: &clap::ArgMatches) -> anyhow::Result<u8> {
    let startup = sluice_common::cli::start(&cli.global, matches, PROGRAM)?;
    match cli.command {
        Command::Config => {
            let rows = common_config_rows(&startup.common);
            print!(
                "{}",
                render_config_rows(startup.file_path.as_deref(), &rows)
            );
            Ok(exit::OK)
        }
        other => anyhow::bail!("`{PROGRAM} {other:?}` is not implemented yet"),
    }
}

fn exit_code_of(error: &anyhow::Error) -> u8 {
    error
        .chain()
        .find_map(common_exit_code)
        .unwrap_or(exit::FAILED)
}
