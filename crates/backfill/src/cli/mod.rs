//! Command-line interface of `sluice-backfill`: parses arguments, resolves settings, runs one
//! command of the engine, renders its events and maps the result to an exit code.

// Output goes through sluice_common::{outln, out, errln}, which survive a closed pipe.
#![deny(clippy::print_stdout, clippy::print_stderr)]

mod defaults;
mod error;
mod metrics;
mod render;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use crate::audit::Who;
use crate::engine::{self, EngineSettings, Outcome, RunOptions};
use crate::error::BackfillError;
use crate::job::{Job, Overrides};
use crate::lifecycle::Request;
use crate::pace::PaceMode;
use crate::{ops, plan, window};
use clap::{Parser, Subcommand};
use sluice_common::cli::{ConfigRow, Generated};
use sluice_common::cli::{
    GlobalArgs, Startup, common_config_rows, render_config_rows, with_origin,
};
use sluice_common::config::{Origin, layered, parse_bytes, parse_duration, parse_pg_timeout};
use sluice_common::db::ConnectSettings;
use sluice_common::exit;
use sluice_common::redact::{SecretUrl, register_secrets, split_url_list};
use sluice_common::{errln, out, outln};

use self::error::CliError;

const PROGRAM: &str = "sluice-backfill";
/// Default directory of job specs.
const DEFAULT_JOBS_DIR: &str = "jobs";

/// sluice-backfill: fill or rewrite table data in throttled, resumable batches.
///
/// Jobs are TOML specs in ./jobs. Each batch commits together with its progress, so a crash,
/// Ctrl-C or pod eviction loses nothing and repeats nothing; `run` again to resume.
#[derive(Debug, Parser)]
#[command(name = PROGRAM, version, propagate_version = true)]
struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    /// Directory of job specs, for jobs given by name [default: ./jobs].
    #[arg(long, env = "SLUICE_JOBS", value_name = "DIR", global = true)]
    jobs: Option<PathBuf>,
    /// Who is running this (a person or CI job), recorded in the audit table with each action.
    #[arg(long, env = "SLUICE_ACTOR", value_name = "NAME", global = true, value_parser = sluice_common::cli::parse_actor)]
    actor: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Start a job, or resume it where it stopped.
    Run {
        /// The job spec: a path, or a name in the jobs directory.
        job: String,
        /// Show the plan instead, as `plan` does; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Continue an unfinished job although its table, key, set or where changed.
        #[arg(long)]
        accept_spec_change: bool,
        /// Go over the whole key range again (after a failed verification).
        #[arg(long)]
        rescan: bool,
        #[command(flatten)]
        overrides: OverrideArgs,
        #[command(flatten)]
        run: RunArgs,
    },
    /// Show key bounds, estimated rows and batches, the batch SQL and its plan; changes nothing.
    Plan {
        /// The job spec: a path, or a name in the jobs directory.
        job: String,
        /// Print one JSON document on stdout.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        overrides: OverrideArgs,
    },
    /// Show jobs: state, cursor, rows done, rate, ETA, last error.
    Status {
        /// One job; all when omitted.
        name: Option<String>,
        /// Print one JSON document on stdout.
        #[arg(long)]
        json: bool,
        /// Wait for the job to end: exit 0 once it is completed and verified, 1 when it
        /// failed, 8 when it was cancelled, 7 when --timeout passes first; a progress line
        /// meanwhile. For pipelines whose contract step needs the backfill done.
        #[arg(long, requires = "name")]
        wait: bool,
        /// With --wait: the longest wait, e.g. 2h [default: no limit].
        #[arg(long, requires = "wait", value_name = "DURATION", value_parser = parse_duration)]
        timeout: Option<Duration>,
    },
    /// Ask the job's worker to pause after its current batch.
    Pause { name: String },
    /// Let a paused job continue (its next `run` picks it up).
    Resume { name: String },
    /// Stop a job for good after its current batch; committed batches stay.
    Cancel { name: String },
    /// Forget a job's progress and ranges so that its next `run` starts from the beginning
    /// (after a cancel, or to run it again); refused while a worker holds one of its ranges.
    Reset { name: String },
    /// Show the effective settings and where each comes from (`run`'s flags and variables
    /// included).
    Config {
        #[command(flatten)]
        run: RunArgs,
    },
    /// Print a completion script for a shell: `source <(sluice-backfill completions bash)`, or write it
    /// where the shell looks (the image installs bash, zsh and fish ones).
    Completions {
        #[arg(value_enum)]
        shell: sluice_common::cli::Shell,
    },
    /// Print the manual page (roff): `sluice man > /usr/local/share/man/man1/sluice-backfill.1`.
    Man,
}

/// Flags of `run` besides the spec's: workers, limits, replicas, metrics.
#[derive(Debug, Clone, Default, clap::Args)]
struct RunArgs {
    /// Workers in this process, each claiming key ranges (run more processes or pods for
    /// more; they share the job through the database).
    #[arg(long, env = "SLUICE_WORKERS", value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=256))]
    workers: u16,
    /// Run only inside this daily window, e.g. 01:00-05:00 (in --time-zone): stop at its end
    /// after the current batch, exit 0, resumable; outside it, do nothing and exit 0.
    #[arg(long, env = "SLUICE_WINDOW", value_name = "HH:MM-HH:MM")]
    window: Option<window::Window>,
    /// Time zone of --window and of --until HH:MM, e.g. Europe/Berlin [default: UTC].
    #[arg(long, env = "SLUICE_TIME_ZONE", value_name = "ZONE")]
    time_zone: Option<chrono_tz::Tz>,
    /// Stop after this long (after the current batch), exit 0, resumable; e.g. 45m.
    #[arg(long, env = "SLUICE_MAX_RUNTIME", value_name = "DURATION", value_parser = parse_duration)]
    max_runtime: Option<Duration>,
    /// Stop at this time: RFC 3339 (2026-11-22T05:00:00Z) or HH:MM in --time-zone.
    #[arg(long, env = "SLUICE_UNTIL", value_name = "TIME")]
    until: Option<String>,
    /// A replica whose replay lag counts against max_replication_lag (repeatable; in the
    /// variable, separate URLs with commas or spaces; the password stays out of logs).
    #[arg(long = "replica-url", env = "SLUICE_REPLICA_URLS", value_name = "URL")]
    replica_urls: Vec<String>,
    /// Serve Prometheus metrics on this address, e.g. 0.0.0.0:9187.
    #[arg(long, env = "SLUICE_METRICS_ADDR", value_name = "ADDR")]
    metrics_addr: Option<std::net::SocketAddr>,
    /// Write Prometheus metrics to this file (node_exporter's textfile collector) as the run
    /// goes and at its end.
    #[arg(long, env = "SLUICE_METRICS_FILE", value_name = "FILE")]
    metrics_file: Option<PathBuf>,
}

impl RunArgs {
    /// `config` rows for `run`'s settings, with where each came from.
    fn config_rows(&self, matches: &clap::ArgMatches) -> Vec<ConfigRow> {
        let shown = |id: &'static str, value: Option<String>| {
            let (value, origin) = with_origin(value, matches, id)
                .unwrap_or_else(|| ("(not set)".to_owned(), Origin::Default));
            (id, value, origin)
        };
        let replicas = self.replica_urls();
        vec![
            (
                "workers",
                self.workers.to_string(),
                sluice_common::cli::origin_of(matches, "workers"),
            ),
            shown("window", self.window.as_ref().map(ToString::to_string)),
            shown("time_zone", self.time_zone.map(|z| z.to_string())),
            shown(
                "max_runtime",
                self.max_runtime
                    .map(|d| humantime::format_duration(d).to_string()),
            ),
            shown("until", self.until.clone()),
            shown(
                "replica_urls",
                (!replicas.is_empty()).then(|| {
                    replicas
                        .iter()
                        .map(|u| SecretUrl::new(u.clone()).redacted())
                        .collect::<Vec<_>>()
                        .join(", ")
                }),
            ),
            shown("metrics_addr", self.metrics_addr.map(|a| a.to_string())),
            shown(
                "metrics_file",
                self.metrics_file.as_ref().map(|p| p.display().to_string()),
            ),
        ]
    }

    /// Every replica URL, `SLUICE_REPLICA_URLS` split where a new URL starts (a comma in a
    /// password stays in its URL).
    fn replica_urls(&self) -> Vec<String> {
        self.replica_urls
            .iter()
            .flat_map(|list| split_url_list(list))
            .collect()
    }

    fn limits(&self) -> Result<window::Limits, CliError> {
        let tz = self.time_zone.unwrap_or(chrono_tz::UTC);
        let until = self
            .until
            .as_deref()
            .map(|text| window::parse_until(text, tz, chrono::Utc::now()))
            .transpose()
            .map_err(|e| CliError::Usage(format!("--until {e}")))?;
        Ok(window::Limits {
            window: self.window,
            time_zone: self.time_zone,
            max_runtime: self.max_runtime,
            until,
        })
    }
}

/// Flags that override a job spec's pacing and guards.
#[derive(Debug, Clone, Default, clap::Args)]
struct OverrideArgs {
    /// Initial rows per batch.
    #[arg(long, value_name = "N")]
    batch_size: Option<u32>,
    /// Smallest batch adaptive sizing may choose.
    #[arg(long, value_name = "N")]
    min_batch_size: Option<u32>,
    /// Largest batch adaptive sizing may choose.
    #[arg(long, value_name = "N")]
    max_batch_size: Option<u32>,
    /// Batch duration adaptive sizing aims at, e.g. 200ms.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    target_batch_time: Option<Duration>,
    /// Rate limit of the job in rows per second, shared by every process running it; 0 for none.
    #[arg(long, value_name = "N")]
    max_rows_per_second: Option<u32>,
    /// Sleep between batches, e.g. 50ms.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pause: Option<Duration>,
    /// auto: take what the server can spare, backing off while others work (the default);
    /// max: no pacing of its own (a maintenance window).
    #[arg(long, value_name = "MODE", value_parser = PaceMode::parse)]
    pace: Option<PaceMode>,
    /// Ceiling on the server's WAL rate while the job runs, in bytes a second, e.g. 8MB.
    #[arg(long, value_name = "SIZE", value_parser = parse_bytes)]
    max_wal_per_second: Option<u64>,
    /// lock_timeout of each batch.
    #[arg(long, value_name = "DURATION", value_parser = parse_pg_timeout)]
    lock_timeout: Option<Duration>,
    /// statement_timeout of each batch.
    #[arg(long, value_name = "DURATION", value_parser = parse_pg_timeout)]
    statement_timeout: Option<Duration>,
    /// Retries of a failing batch before the job fails (at most 1000).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(0..=i64::from(crate::job::MAX_RETRIES_LIMIT)))]
    max_retries: Option<u32>,
    /// Key ranges to split the job into at its first start (1 to 4096).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=i64::from(crate::job::MAX_RANGES)))]
    ranges: Option<u32>,
    /// A worker silent this long loses its range to another, e.g. 30s.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    lease: Option<Duration>,
    /// Wait while replication lags more than this, e.g. 10s.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    max_replication_lag: Option<Duration>,
    /// Wait while this query returns true.
    #[arg(long, value_name = "SQL")]
    throttle_query: Option<String>,
}

impl From<OverrideArgs> for Overrides {
    fn from(a: OverrideArgs) -> Self {
        Self {
            batch_size: a.batch_size,
            min_batch_size: a.min_batch_size,
            max_batch_size: a.max_batch_size,
            target_batch_time: a.target_batch_time,
            max_rows_per_second: a.max_rows_per_second,
            pause: a.pause,
            pace: a.pace,
            max_wal_per_second: a.max_wal_per_second,
            lock_timeout: a.lock_timeout,
            statement_timeout: a.statement_timeout,
            max_retries: a.max_retries,
            ranges: a.ranges,
            lease: a.lease,
            max_replication_lag: a.max_replication_lag,
            throttle_query: a.throttle_query,
        }
    }
}

pub fn main() -> ExitCode {
    sluice_common::cli::main::<Cli, _>(PROGRAM, run, exit_code_of)
}

async fn run(cli: Cli, matches: &clap::ArgMatches) -> Result<u8, CliError> {
    // Read nothing, connect nowhere: printed from the definition of the command line.
    let generated = match cli.command {
        Command::Completions { shell } => Some(Generated::Completions(shell)),
        Command::Man => Some(Generated::Man),
        _ => None,
    };
    if let Some(generated) = generated {
        generated.print::<Cli>().map_err(CliError::Output)?;
        return Ok(exit::OK);
    }
    if let Command::Run { run, .. } = &cli.command {
        run.replica_urls()
            .iter()
            .for_each(|url| register_secrets(url));
    }
    let startup = sluice_common::cli::start(&cli.global, matches, PROGRAM)?;
    let jobs_dir = layered(
        with_origin(cli.jobs.clone(), matches, "jobs"),
        startup.file.backfill.jobs.clone(),
        PathBuf::from(DEFAULT_JOBS_DIR),
    );
    if let Command::Config { run } = &cli.command {
        let mut rows = common_config_rows(&startup.common);
        rows.push((
            "jobs",
            jobs_dir.value.display().to_string(),
            jobs_dir.origin,
        ));
        rows.extend(run.config_rows(matches));
        rows.extend(defaults::rows(&startup.file.backfill));
        out!("{}", render_config_rows(&startup, &rows));
        return Ok(exit::OK);
    }
    let settings = EngineSettings {
        connect: ConnectSettings::from_config(&startup.common, PROGRAM)?,
        schema: startup.common.schema.value.clone(),
        who: Who {
            program: format!("{PROGRAM} {}", env!("CARGO_PKG_VERSION")),
            actor: cli.actor.clone(),
        },
    };
    let load = |spec: &str, overrides: OverrideArgs| -> Result<Job, CliError> {
        let overrides = defaults::apply(overrides.into(), &startup.file.backfill)?;
        Ok(Job::load(&spec_path(&jobs_dir.value, spec), &overrides)?)
    };
    match cli.command {
        Command::Run {
            job,
            dry_run: true,
            overrides,
            ..
        }
        | Command::Plan {
            job,
            overrides,
            json: false,
        } => {
            let job = load(&job, overrides)?;
            render::plan(&plan::plan(&settings, &job).await?, false);
            Ok(exit::OK)
        }
        Command::Plan {
            job,
            overrides,
            json: true,
        } => {
            let job = load(&job, overrides)?;
            render::plan(&plan::plan(&settings, &job).await?, true);
            Ok(exit::OK)
        }
        Command::Run {
            job,
            accept_spec_change,
            rescan,
            overrides,
            run,
            ..
        } => {
            let job = load(&job, overrides)?;
            let options = RunOptions {
                accept_spec_change,
                rescan,
                workers: usize::from(run.workers),
                limits: run.limits()?,
                replica_urls: run.replica_urls().into_iter().map(SecretUrl::new).collect(),
            };
            let metrics =
                metrics::Metrics::start(&job.name, run.metrics_addr, run.metrics_file.clone())?;
            run_job(&settings, &job, &options, &startup, &metrics).await
        }
        Command::Status {
            name: Some(name),
            wait: true,
            timeout,
            ..
        } => wait_for(&settings, &name, timeout, &startup.shutdown).await,
        Command::Status { name, json, .. } => {
            render::status(&ops::status(&settings, name.as_deref()).await?, json);
            Ok(exit::OK)
        }
        Command::Pause { name } => request(&settings, &name, Request::Pause).await,
        Command::Resume { name } => request(&settings, &name, Request::Resume).await,
        Command::Cancel { name } => request(&settings, &name, Request::Cancel).await,
        Command::Reset { name } => {
            let says = ops::reset(&settings, &name).await?;
            outln!("job {name}: {says}");
            Ok(exit::OK)
        }
        Command::Config { .. } | Command::Completions { .. } | Command::Man => {
            unreachable!("handled above")
        }
    }
}

async fn run_job(
    settings: &EngineSettings,
    job: &Job,
    options: &RunOptions,
    startup: &Startup,
    metrics: &metrics::Metrics,
) -> Result<u8, CliError> {
    let mut renderer = render::Progress::new(job);
    let outcome = engine::run(settings, job, options, &startup.shutdown, &mut |e| {
        metrics.event(&e);
        renderer.event(&e);
    })
    .await;
    metrics.finish(outcome.as_ref().ok());
    renderer.finish(job, outcome.as_ref().ok());
    Ok(match outcome? {
        Outcome::Interrupted => exit::INTERRUPTED,
        Outcome::Completed { .. }
        | Outcome::AlreadyCompleted
        | Outcome::Paused
        | Outcome::Cancelled
        | Outcome::LimitReached { .. }
        | Outcome::OutsideWindow { .. } => exit::OK,
    })
}

/// How often `status --wait` looks.
const WAIT_POLL: Duration = Duration::from_secs(2);

/// `status NAME --wait`: polls the job until it ends (or `timeout`, or a signal), with a line
/// each time its progress or state changes.
async fn wait_for(
    settings: &EngineSettings,
    name: &str,
    timeout: Option<Duration>,
    shutdown: &sluice_common::shutdown::Shutdown,
) -> Result<u8, CliError> {
    let started = std::time::Instant::now();
    let mut said = String::new();
    loop {
        let status = match ops::status(settings, Some(name)).await {
            Ok(mut statuses) => statuses.pop(),
            Err(BackfillError::UnknownJob(_)) => None,
            Err(error) => return Err(error.into()),
        };
        let (line, code) = match &status {
            None => (format!("job {name} has not started yet"), None),
            Some(status) => render::wait_line(status),
        };
        if line != said {
            errln!("{line}");
            said = line;
        }
        if let Some(code) = code {
            return Ok(code);
        }
        if timeout.is_some_and(|t| started.elapsed() >= t) {
            errln!("job {name} did not end within the --timeout; it goes on");
            return Ok(exit::PENDING);
        }
        tokio::select! {
            () = tokio::time::sleep(WAIT_POLL) => {}
            () = shutdown.requested() => return Ok(exit::INTERRUPTED),
        }
    }
}

async fn request(settings: &EngineSettings, name: &str, request: Request) -> Result<u8, CliError> {
    let says = ops::request(settings, name, request).await?;
    outln!("job {name}: {says}");
    Ok(exit::OK)
}

/// A path as given, or `<jobs dir>/<name>.toml` for a bare name.
fn spec_path(jobs_dir: &Path, spec: &str) -> PathBuf {
    let given = PathBuf::from(spec);
    if given.extension().is_some() || given.components().count() > 1 {
        given
    } else {
        jobs_dir.join(format!("{spec}.toml"))
    }
}

fn exit_code_of(error: &CliError) -> u8 {
    error.exit_code()
}
