//! `sluice-demo`: the README's main command. Runs the worked example end to end against a
//! throwaway PostgreSQL (or `DATABASE_URL`) and prints the proof that nothing was lost.

use sluice_common::scratch;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use indicatif::{ProgressBar, ProgressStyle};
use sluice_backfill::event::Event;
use sluice_backfill::job::Overrides;
use sluice_common::exit;
use sluice_common::shutdown::Shutdown;
use sluice_demo::{Options, Step};
use sqlx::{Connection, PgConnection};

/// Runs expand → dual-write → backfill → contract on a realistic accounts table under live
/// application traffic, and proves that nothing was lost.
///
/// Without DATABASE_URL it starts a throwaway PostgreSQL from the installed server binaries
/// and removes it afterwards. With DATABASE_URL it creates (and afterwards drops) a database
/// of its own on that server.
#[derive(Debug, Parser)]
#[command(name = "sluice-demo", version)]
struct Cli {
    /// Accounts to seed before the change.
    #[arg(long, default_value_t = 200_000)]
    rows: i64,
    /// Concurrent application writers.
    #[arg(long, default_value_t = 2)]
    writers: usize,
    /// Keep the demo database afterwards (on DATABASE_URL's server).
    #[arg(long)]
    keep: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    sluice_common::telemetry::init(sluice_common::config::LogFormat::Text, -1);
    let shutdown = Shutdown::new();
    let _ = sluice_common::cli::install_signal_handler(shutdown.clone(), "sluice-demo");
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("sluice-demo: error: cannot start the async runtime: {error}");
            return ExitCode::from(exit::FAILED);
        }
    };
    let code = runtime.block_on(demo(&cli, &shutdown));
    drop(runtime);
    sluice_throwaway::stop();
    ExitCode::from(code)
}

async fn demo(cli: &Cli, shutdown: &Shutdown) -> u8 {
    if std::env::var_os("DATABASE_URL").is_none() {
        println!("starting a throwaway PostgreSQL server (set DATABASE_URL to use your own)...");
    }
    let server = sluice_throwaway::server("sluice-demo");
    let name = format!("sluice_demo_{}", std::process::id());
    let url = match create_database(&server.admin_url, &name).await {
        Ok(url) => url,
        Err(error) => {
            eprintln!("sluice-demo: error: cannot create database {name}: {error}");
            return exit::DATABASE_UNAVAILABLE;
        }
    };
    println!("database {name} created\n");
    let options = Options {
        rows: cli.rows,
        writers: cli.writers,
        project: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.."),
        overrides: Overrides::default(),
    };
    let mut bar = Bar::default();
    let result = sluice_demo::run(&url, &options, shutdown, &mut |step| bar.show(step)).await;
    bar.done();
    if !cli.keep || server.throwaway {
        let _ = drop_database(&server.admin_url, &name).await;
    }
    match result {
        Ok(report) => {
            print!("{}", report.render());
            if report.ok() {
                println!("\nall checks passed");
                exit::OK
            } else {
                println!("\nsome checks FAILED");
                exit::FAILED
            }
        }
        Err(error) => {
            eprintln!("sluice-demo: error: {error}");
            exit::FAILED
        }
    }
}

/// The backfill's progress bar, and the steps as lines.
#[derive(Debug, Default)]
struct Bar {
    bar: Option<ProgressBar>,
}

impl Bar {
    fn show(&mut self, step: Step) {
        match step {
            Step::Say(line) => match &self.bar {
                Some(bar) => bar.println(line),
                None => println!("{line}"),
            },
            Step::Backfill(Event::Started { estimated_rows, .. })
                if std::io::stderr().is_terminal() =>
            {
                let bar = ProgressBar::new(estimated_rows);
                bar.set_style(
                    ProgressStyle::with_template(
                        "   [{bar:40}] {human_pos}/{human_len} rows  {per_sec}  ETA {eta}  {msg}",
                    )
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> "),
                );
                self.bar = Some(bar);
            }
            Step::Backfill(Event::Batch(batch)) => match &self.bar {
                Some(bar) => {
                    bar.set_length(bar.length().unwrap_or(0).max(batch.total_scanned));
                    bar.set_position(batch.total_scanned);
                    bar.set_message(format!("batch {}", batch.next_batch_size));
                }
                None if batch.total_scanned % 50_000 < u64::from(batch.batch_size) => {
                    println!(
                        "   {} rows scanned, {} updated",
                        batch.total_scanned, batch.total_updated
                    );
                }
                None => {}
            },
            Step::Backfill(Event::Verified { remaining }) => {
                self.done();
                println!("   backfill complete; verification: {remaining} row(s) still need work");
            }
            Step::Backfill(_) => {}
        }
    }

    fn done(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

async fn create_database(admin_url: &str, name: &str) -> Result<String, sqlx::Error> {
    let mut admin = PgConnection::connect(admin_url).await?;
    scratch::drop_database(&mut admin, name).await?;
    scratch::create_database(&mut admin, name).await?;
    let _ = admin.close().await;
    scratch::url_with_database(admin_url, name).map_err(|e| sqlx::Error::Configuration(e.into()))
}

async fn drop_database(admin_url: &str, name: &str) -> Result<(), sqlx::Error> {
    let mut admin = PgConnection::connect(admin_url).await?;
    scratch::drop_database(&mut admin, name).await?;
    admin.close().await
}
