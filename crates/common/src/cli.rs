//! The command-line edge both binaries share: global flags, the signal handler, exit codes.
//!
//! Only the binaries use this module (feature `cli`); engines take plain settings and a
//! [`Shutdown`] handle instead.

use std::path::PathBuf;
use std::time::Duration;

use clap::ArgMatches;
use clap::parser::ValueSource;

use crate::config::{CommonConfig, CommonOverrides, ConfigError, FileConfig, LogFormat, Origin};
use crate::environment::Chosen;
use crate::exit;
use crate::shutdown::Shutdown;

/// Flags every command of both programs accepts. Each can also be set by the environment
/// variable it names, or in `sluice.toml`; a flag wins over the variable, which wins over the
/// file.
#[derive(Debug, Clone, clap::Args)]
pub struct GlobalArgs {
    /// PostgreSQL URL, e.g. postgres://app@db:5432/prod?sslmode=require; several hosts with
    /// target_session_attrs (postgres://app@a:5432,b:5432/prod?target_session_attrs=read-write)
    /// or libpq's key/value form are read as libpq reads them. Prefer the environment variable:
    /// a flag is visible in the process list.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true, global = true)]
    pub database_url: Option<String>,

    /// The environment to run in: [environments.NAME] in sluice.toml, laid over the rest of
    /// the file (its database URL variable, rules and settings).
    #[arg(long = "env", env = "SLUICE_ENV", value_name = "NAME", global = true)]
    pub environment: Option<String>,

    /// Config file [default: ./sluice.toml when it exists].
    #[arg(long, env = "SLUICE_CONFIG", value_name = "FILE", global = true)]
    pub config: Option<PathBuf>,

    /// Schema for sluice's own tables [default: sluice].
    #[arg(long, env = "SLUICE_SCHEMA", value_name = "NAME", global = true)]
    pub schema: Option<String>,

    /// Longest wait for one connection attempt, e.g. 10s [default: 10s].
    #[arg(long, env = "SLUICE_CONNECT_TIMEOUT", value_name = "DURATION",
          value_parser = crate::config::parse_positive_duration, global = true)]
    pub connect_timeout: Option<Duration>,

    /// How long to keep trying a server that refuses connections, restarts, is in recovery
    /// or full, before giving up (connecting, and reconnecting mid-run), e.g. 2m
    /// [default: 60s].
    #[arg(long, env = "SLUICE_CONNECT_WAIT", value_name = "DURATION",
          value_parser = crate::config::parse_duration, global = true)]
    pub connect_wait: Option<Duration>,

    /// Log lines on stderr as text (for people) or json (for Jobs and log shippers)
    /// [default: text].
    #[arg(long, env = "SLUICE_LOG_FORMAT", value_enum, global = true)]
    pub log_format: Option<LogFormat>,

    /// More log detail (-v debug, -vv trace). RUST_LOG, when set, overrides -v and -q.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,

    /// Less log detail (-q warnings only, -qq errors only).
    #[arg(short, long, action = clap::ArgAction::Count, global = true, conflicts_with = "verbose")]
    pub quiet: u8,
}

impl GlobalArgs {
    /// The shared settings given on the command line or in the environment, with their origin.
    pub fn overrides(&self, matches: &ArgMatches) -> CommonOverrides {
        CommonOverrides {
            database_url: with_origin(self.database_url.clone(), matches, "database_url"),
            url_variable: None,
            schema: with_origin(self.schema.clone(), matches, "schema"),
            connect_timeout: with_origin(self.connect_timeout, matches, "connect_timeout"),
            connect_wait: with_origin(self.connect_wait, matches, "connect_wait"),
            log_format: with_origin(self.log_format, matches, "log_format"),
        }
    }

    /// Log verbosity: negative is quieter, positive louder.
    pub fn verbosity(&self) -> i8 {
        i8::try_from(self.verbose).unwrap_or(i8::MAX) - i8::try_from(self.quiet).unwrap_or(i8::MAX)
    }
}

/// Pairs a value clap produced with where clap found it.
pub fn with_origin<T>(value: Option<T>, matches: &ArgMatches, id: &str) -> Option<(T, Origin)> {
    value.map(|v| (v, origin_of(matches, id)))
}

/// Where clap found argument `id`, looking in the deepest subcommand first (global flags may
/// be written after the subcommand).
pub fn origin_of(matches: &ArgMatches, id: &str) -> Origin {
    let mut chain = vec![matches];
    let mut current = matches;
    while let Some((_, sub)) = current.subcommand() {
        chain.push(sub);
        current = sub;
    }
    let source = chain
        .iter()
        .rev()
        .find_map(|m| m.try_get_raw(id).ok().flatten().and(m.value_source(id)));
    match source {
        Some(ValueSource::EnvVariable) => Origin::Env,
        Some(ValueSource::DefaultValue) => Origin::Default,
        _ => Origin::Flag,
    }
}

/// Wires SIGINT and SIGTERM (Kubernetes' eviction signal) to `shutdown`. The first signal asks
/// the engine to stop at the next safe point; a second one exits at once with the
/// "interrupted" code, which is still safe because uncommitted work rolls back.
pub fn install_signal_handler(
    shutdown: Shutdown,
    program: &'static str,
) -> Result<(), ctrlc::Error> {
    ctrlc::set_handler(move || {
        if shutdown.stops_at_once() {
            crate::errln!("{program}: interrupt received; stopping");
            std::process::exit(i32::from(exit::INTERRUPTED));
        }
        let count = shutdown.trigger();
        if shutdown.second_signal_deferred() {
            if count == 1 {
                crate::errln!(
                    "{program}: interrupt received; ending the statement in flight and dropping \
                     the scratch database"
                );
            } else {
                crate::errln!("{program}: still dropping the scratch database; exiting when done");
            }
        } else if count == 1 {
            crate::errln!(
                "{program}: interrupt received; stopping at the next safe point \
                 (interrupt again to stop at once; uncommitted work rolls back)"
            );
        } else {
            crate::errln!("{program}: second interrupt; exiting now");
            std::process::exit(i32::from(exit::INTERRUPTED));
        }
    })
}

/// `--actor` as a clap value parser ([`crate::config::check_actor`]).
pub fn parse_actor(text: &str) -> Result<String, String> {
    crate::config::check_actor(text).map(|()| text.to_owned())
}

/// The footer of `--help` listing the exit codes.
pub fn exit_codes_help() -> String {
    let mut text = String::from("Exit codes:\n");
    for (code, name, meaning) in exit::ALL {
        text.push_str(&format!("  {code:>3}  {name:<21} {meaning}\n"));
    }
    text
}

/// What every command starts from: the config file read, shared settings resolved, logging
/// installed, and the shutdown handle wired to signals.
#[derive(Debug)]
pub struct Startup {
    /// The file as the chosen environment sees it.
    pub file: FileConfig,
    pub file_path: Option<PathBuf>,
    /// The environment chosen with `--env` / `SLUICE_ENV`, if any.
    pub environment: Option<Chosen>,
    pub common: CommonConfig,
    pub shutdown: Shutdown,
}

/// Reads configuration and installs logging and the signal handler.
pub fn start(
    global: &GlobalArgs,
    matches: &ArgMatches,
    program: &'static str,
) -> Result<Startup, ConfigError> {
    let loaded = FileConfig::load(global.config.as_deref());
    // Log even when the file is bad, so the error below is printed the usual way.
    let (file, file_path) = match loaded {
        Ok(loaded) => loaded,
        Err(error) => {
            crate::telemetry::init(global.log_format.unwrap_or_default(), global.verbosity());
            return Err(error);
        }
    };
    // Before anything can print: every password the process was given is masked in all output.
    for url in [global.database_url.as_deref(), file.database_url.as_deref()]
        .into_iter()
        .flatten()
    {
        crate::redact::register_secrets(url);
    }
    for env in file.environments.values() {
        for url in [
            env.database_url.as_deref(),
            env.runner.direct_url.as_deref(),
        ]
        .into_iter()
        .flatten()
        {
            crate::redact::register_secrets(url);
        }
    }
    let (file, environment) = match &global.environment {
        Some(name) => {
            let origin = origin_of(matches, "environment");
            let (file, chosen) = file
                .for_environment(name, origin, file_path.as_deref())
                .inspect_err(|_| {
                    crate::telemetry::init(
                        global.log_format.unwrap_or_default(),
                        global.verbosity(),
                    );
                })?;
            (file, Some(chosen))
        }
        None => (file, None),
    };
    let mut overrides = global.overrides(matches);
    if let Some(env) = &environment {
        environment_url(env, &mut overrides);
    }
    let common = CommonConfig::resolve(overrides, &file)?;
    crate::telemetry::init(common.log_format.value, global.verbosity());
    if let Some(env) = &environment {
        tracing::debug!(environment = %env.name, "running in environment {}", env.name);
    }
    let shutdown = Shutdown::new();
    if let Err(error) = install_signal_handler(shutdown.clone(), program) {
        tracing::warn!("cannot install the signal handler: {error}; Ctrl-C will stop at once");
    }
    Ok(Startup {
        file,
        file_path,
        environment,
        common,
        shutdown,
    })
}

/// An environment that names its database (`database_url`, or `database_url_env`'s
/// variable) is not overridden by `DATABASE_URL`, which may name another environment's
/// database in the same shell: only `--database-url` wins over it.
fn environment_url(env: &Chosen, overrides: &mut CommonOverrides) {
    let from_flag = overrides.database_url.as_ref().map(|(_, o)| *o) == Some(Origin::Flag);
    if from_flag {
        return;
    }
    if let Some(variable) = &env.database_url_env {
        overrides.database_url = std::env::var(variable)
            .ok()
            .filter(|url| !url.trim().is_empty())
            .map(|url| {
                crate::redact::register_secrets(&url);
                (url, Origin::Env)
            });
        overrides.url_variable = Some(variable.clone());
    } else if env.overridden.contains(&"database_url") {
        overrides.database_url = None;
    }
}

/// One row of `config` output: name, value (passwords masked), origin.
pub type ConfigRow = (&'static str, String, Origin);

/// The shared settings as `config` rows.
pub fn common_config_rows(common: &CommonConfig) -> Vec<ConfigRow> {
    let url = match &common.database_url {
        Some(setting) => (setting.value.redacted(), setting.origin),
        None => (
            format!("(not set: {})", common.url_variable),
            Origin::Default,
        ),
    };
    vec![
        ("database_url", url.0, url.1),
        (
            "schema",
            common.schema.value.as_str().to_owned(),
            common.schema.origin,
        ),
        (
            "connect_timeout",
            humantime::format_duration(common.connect_timeout.value).to_string(),
            common.connect_timeout.origin,
        ),
        (
            "connect_wait",
            humantime::format_duration(common.connect_wait.value).to_string(),
            common.connect_wait.origin,
        ),
        (
            "connect_attempts",
            match common.connect_attempts.value {
                u32::MAX => "unlimited (connect_wait bounds them)".to_owned(),
                n => n.to_string(),
            },
            common.connect_attempts.origin,
        ),
        (
            "log_format",
            format!("{:?}", common.log_format.value).to_lowercase(),
            common.log_format.origin,
        ),
    ]
}

/// Renders `config` rows as aligned text: the file, the environment and its rules, then each
/// setting with where it came from (the environment's section when it set it).
pub fn render_config_rows(startup: &Startup, rows: &[ConfigRow]) -> String {
    let mut out = format!(
        "config file: {}\n",
        startup
            .file_path
            .as_ref()
            .map_or_else(|| "(none)".to_owned(), |p| p.display().to_string())
    );
    if let Some(env) = &startup.environment {
        let rules = &env.rules;
        out.push_str(&format!(
            "environment: {} (from {})\n  require_backup = {}, require_approval = {}, \
             forbid_skip_lint = {}, auto_apply = {}\n",
            env.name,
            env.origin,
            rules.require_backup,
            rules.require_approval,
            rules.forbid_skip_lint,
            rules.auto_apply
        ));
    }
    for (name, value, origin) in rows {
        let origin = match &startup.environment {
            Some(env) => env.origin_of(name, *origin),
            None => origin.to_string(),
        };
        out.push_str(&format!("{name:<20} {value:<40} ({origin})\n"));
    }
    out
}

/// The command line of `C` as `--help`, the completions and the manual page show it: ending
/// with the exit codes.
fn definition<C: clap::CommandFactory>() -> clap::Command {
    C::command().after_long_help(exit_codes_help())
}

/// The shells `completions` writes for.
pub use clap_complete::Shell;

/// What `completions` and `man` print, generated from the same definition the program parses
/// with, so that they never disagree with `--help`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Generated {
    /// A completion script for `shell`: `source <(sluice completions bash)`.
    Completions(Shell),
    /// The manual page (roff): `sluice man > /usr/local/share/man/man1/sluice.1`.
    Man,
}

impl Generated {
    /// Writes it to stdout (a closed pipe is not an error).
    pub fn print<C: clap::CommandFactory>(self) -> std::io::Result<()> {
        let mut command = definition::<C>();
        let name = command.get_name().to_owned();
        // Into memory first: the generator panics on a write error.
        let mut text = Vec::new();
        match self {
            Self::Completions(shell) => {
                clap_complete::generate(shell, &mut command, name, &mut text)
            }
            Self::Man => clap_mangen::Man::new(command).render(&mut text)?,
        }
        match std::io::Write::write_all(&mut std::io::stdout().lock(), &text) {
            Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
            other => other,
        }
    }
}

/// Both programs' `main`: parses the command line of `C` (its `--help` ending with the exit
/// codes), runs `run` on it and turns the outcome into the process's exit code.
pub fn main<C, E>(
    program: &str,
    run: impl AsyncFnOnce(C, &ArgMatches) -> Result<u8, E>,
    exit_code_of: impl Fn(&E) -> u8,
) -> std::process::ExitCode
where
    C: clap::CommandFactory + clap::FromArgMatches,
    E: std::error::Error + 'static,
{
    let matches = definition::<C>().get_matches();
    let cli = match C::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(error) => error.exit(),
    };
    run_to_exit(program, run(cli, &matches), exit_code_of)
}

/// Runs a command's future to completion on a single-threaded runtime and turns its outcome
/// into the process's exit code, printing an error (its whole chain, on one line) to stderr.
pub fn run_to_exit<E>(
    program: &str,
    work: impl Future<Output = Result<u8, E>>,
    exit_code_of: impl Fn(&E) -> u8,
) -> std::process::ExitCode
where
    E: std::error::Error + 'static,
{
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            crate::errln!("{program}: error: cannot start the async runtime: {error}");
            return std::process::ExitCode::from(exit::FAILED);
        }
    };
    match runtime.block_on(work) {
        Ok(code) => std::process::ExitCode::from(code),
        Err(error) => {
            crate::errln!("{program}: error: {}", error_chain(&error));
            std::process::ExitCode::from(exit_code_of(&error))
        }
    }
}

/// An error and its causes on one line, each after a colon. sluice's errors state each fact
/// once: a message states its own, and a cause it does not quote is its `source()`; one that
/// quotes its cause (the database's words, explained) does not also return it as a source.
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(current) = cause {
        text.push_str(": ");
        text.push_str(&current.to_string());
        cause = current.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("cannot read job spec jobs/x.toml")]
    struct Read(#[source] std::io::Error);

    #[derive(Debug, thiserror::Error)]
    #[error("starting the run")]
    struct Start(#[source] Read);

    fn not_found() -> std::io::Error {
        std::io::Error::new(std::io::ErrorKind::NotFound, "no such file (os error 2)")
    }

    #[test]
    fn each_cause_is_printed_once_after_its_effect() {
        let text = error_chain(&Start(Read(not_found())));
        assert_eq!(
            text,
            "starting the run: cannot read job spec jobs/x.toml: no such file (os error 2)"
        );
    }

    #[test]
    fn a_message_that_quotes_its_cause_is_printed_whole_and_once() {
        let read = crate::input::InputError::Io {
            path: "jobs/x.toml".into(),
            what: "job spec",
            error: not_found(),
        };
        let text = error_chain(&ConfigError::Read(read));
        assert_eq!(
            text,
            "cannot read the job spec jobs/x.toml: no such file (os error 2)"
        );
    }
}
