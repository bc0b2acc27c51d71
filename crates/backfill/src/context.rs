//! What the workers of one run share: the run's settings, its job and the signals they
//! follow. Below the engine and its workers, so that neither imports the other; connections
//! are [`crate::session`]'s, keys as text [`crate::keytext`]'s.

use std::sync::atomic::AtomicBool;
use std::time::Duration;

use sluice_common::db::ConnectSettings;
use sluice_common::ident::Ident;
use sluice_common::shutdown::Shutdown;
use tokio::sync::watch;

use crate::job::{Job, LoadSettings};
use crate::keyspace::KeySpace;
use crate::load::Signal;
use crate::probe::PaceLink;
use crate::sql::JobSql;
use crate::state::Jobs;
use crate::throttle::Throttle;
use crate::window::Deadline;

/// Where and as whom to run.
#[derive(Debug, Clone)]
pub struct EngineSettings {
    pub connect: ConnectSettings,
    /// Schema of sluice's own tables.
    pub schema: Ident,
    /// Who acts, for the audit table.
    pub who: crate::audit::Who,
}

/// What the workers of one run share.
pub(crate) struct Context<'a> {
    pub settings: &'a EngineSettings,
    pub jobs: &'a Jobs,
    pub job: &'a Job,
    pub sql: &'a JobSql,
    pub shutdown: &'a Shutdown,
    pub lease: Duration,
    pub load_settings: LoadSettings,
    /// One rate limiter for the process's workers.
    pub throttle: Throttle,
    pub deadline: Option<Deadline>,
    /// The smallest key, for a single integer key stepped arithmetically.
    pub integer_min: Option<i64>,
    /// Keys per row of the whole key space, for stepping one range of it.
    pub keys_per_row: f64,
    /// How to halve a busy range for an idle worker; `None`: ranges are not split.
    pub key_space: Option<KeySpace>,
    pub initial_batch_size: u32,
    pub load: watch::Receiver<Option<Signal>>,
    /// The pace and WAL budget the probe publishes, and the batches in flight it watches.
    pub pace: &'a PaceLink,
    /// Workers in this process (each rests for its share of the pace's duty).
    pub workers: usize,
    /// Set when a worker failed, so that the others stop too.
    pub stop: AtomicBool,
    /// `<host>/<pid>`: owners of leases are `<host>/<pid>/w<n>`.
    pub process: String,
}

impl Context<'_> {
    pub fn spec_path(&self) -> String {
        spec_path(self.job)
    }
}

/// Where the job's spec is, for messages that say what to edit or run.
pub(crate) fn spec_path(job: &Job) -> String {
    job.path.as_ref().map_or_else(
        || format!("jobs/{}.toml", job.name),
        |p| p.display().to_string(),
    )
}
