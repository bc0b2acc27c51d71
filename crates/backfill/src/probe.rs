//! The probe that feeds the pace controller ([`crate::pace`]) and the WAL budget.
//!
//! Every [`SAMPLE_EVERY`] one statement on a connection of its own: `txid_current()` (so that
//! the statement's transaction writes a commit record and waits for it to be flushed, like an
//! application's commit) together with the number of other sessions at work. Its round trip is
//! the pace controller's measure of how the server treats others. Once a second, with a
//! `max_wal_per_second`, it also reads the server's WAL position and the job's rows, to turn
//! the budget in bytes into rows per second.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use sluice_common::db::ConnectSettings;
use sqlx::{AssertSqlSafe, Connection, PgConnection};
use tokio::sync::{mpsc, watch};

use crate::event::Event;
use crate::pace::{Controller, Pace, PaceMode, PaceState, SAMPLE_EVERY, Sample};
use crate::state::Jobs;

/// Other sessions at work: client sessions running a statement, or inside a transaction that
/// moved in the last second (a session left idle in a transaction is not a workload); none of
/// sluice's own.
macro_rules! others_at_work {
    () => {
        "FROM pg_stat_activity
         WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()
           AND application_name NOT LIKE 'sluice%'
           AND (state = 'active' OR (state LIKE 'idle in transaction%' AND state_change > now() - interval '1 second'))"
    };
}

/// The probe: `txid_current()` makes its transaction write a commit record and wait for its
/// flush, as an application's commit does; one round trip with the count of others.
const PROBE: &str = concat!("SELECT txid_current(), count(*) ", others_at_work!());

/// The probe while the job is alone: only the count of others. Its latency is not used then,
/// and a commit (a WAL flush) 20 times a second would slow the job's own commits.
const LOOK: &str = concat!("SELECT 0::int8, count(*) ", others_at_work!());

/// How often the pace is written to the job's row for `status`.
const RECORD_EVERY: Duration = Duration::from_secs(5);
/// How often a lost connection is tried again.
const RECONNECT_EVERY: Duration = Duration::from_secs(1);
/// How often the WAL position is read for the budget.
const WAL_EVERY: Duration = Duration::from_secs(1);
/// WAL bytes a row is assumed to cost until measured: a row's new version and index entries,
/// with room for the full-page images that follow a checkpoint.
const ASSUMED_WAL_PER_ROW: f64 = 2048.0;

/// What the probe shares with the workers of its process.
#[derive(Debug)]
pub struct PaceLink {
    pub pace: watch::Receiver<Pace>,
    /// Rows per second the WAL budget allows the job (every process together); `None`: no budget.
    pub wal_rate: watch::Receiver<Option<u32>>,
    /// Batches in flight in this process: a quiet window's samples count only at zero.
    pub in_flight: AtomicUsize,
}

/// The probe's ends of the link.
#[derive(Debug)]
pub struct ProbeEnds {
    pub pace: watch::Sender<Pace>,
    pub wal_rate: watch::Sender<Option<u32>>,
}

/// A link whose pace starts as `mode` does, and the probe's ends.
pub fn link(mode: PaceMode) -> (PaceLink, ProbeEnds) {
    let (pace_tx, pace_rx) = watch::channel(Controller::new(mode).pace());
    let (wal_tx, wal_rx) = watch::channel(None);
    (
        PaceLink {
            pace: pace_rx,
            wal_rate: wal_rx,
            in_flight: AtomicUsize::new(0),
        },
        ProbeEnds {
            pace: pace_tx,
            wal_rate: wal_tx,
        },
    )
}

/// What the probe needs to know of its job.
#[derive(Debug, Clone)]
pub struct ProbeSettings {
    pub connect: ConnectSettings,
    pub job: String,
    pub jobs: Jobs,
    pub mode: PaceMode,
    /// `max_wal_per_second`, bytes.
    pub wal_budget: Option<u64>,
    pub min_rows_per_second: u32,
}

/// Probes until `stop` is set, publishing the pace (and the WAL budget's rate) to `ends` and
/// reporting changes of the pace as events.
pub async fn run(
    settings: &ProbeSettings,
    link: &PaceLink,
    ends: &ProbeEnds,
    events: mpsc::UnboundedSender<Event>,
    mut stop: watch::Receiver<bool>,
) {
    if settings.mode == PaceMode::Max && settings.wal_budget.is_none() {
        return;
    }
    let mut controller = Controller::new(settings.mode);
    let mut conn: Option<PgConnection> = None;
    let mut wal = WalMeter::new(settings.wal_budget, settings.min_rows_per_second);
    let mut reported = Reported::default();
    let mut reconnect_at = Instant::now();
    let mut tick = tokio::time::interval(SAMPLE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        if conn.is_none() && Instant::now() >= reconnect_at {
            conn = connect_once(&settings.connect).await;
            // A server that refuses is asked again in a second, not at every tick.
            reconnect_at = Instant::now() + RECONNECT_EVERY;
        }
        let Some(c) = conn.as_mut() else {
            controller.no_reading(Instant::now());
            continue;
        };
        let read = read_once(c, settings, &mut controller, &mut wal, link).await;
        if read.is_err() {
            // Read again on a fresh connection at the next tick; the load monitor says when
            // the server cannot be read and holds the workers meanwhile.
            conn = None;
            controller.no_reading(Instant::now());
        }
        let pace = controller.pace();
        ends.pace.send_if_modified(|old| {
            let changed = *old != pace;
            *old = pace;
            changed
        });
        ends.wal_rate.send_if_modified(|old| {
            let changed = *old != wal.rate;
            *old = wal.rate;
            changed
        });
        if reported.due(&pace) {
            let _ = events.send(Event::Pace(pace));
            if let Some(c) = conn.as_mut() {
                let _ = settings.jobs.record_pace(c, &settings.job, &pace).await;
            }
        }
    }
}

async fn read_once(
    conn: &mut PgConnection,
    settings: &ProbeSettings,
    controller: &mut Controller,
    wal: &mut WalMeter,
    link: &PaceLink,
) -> Result<(), sqlx::Error> {
    let mut tx = conn.begin_with(BEGIN_PROBE).await?;
    read_in(&mut tx, settings, controller, wal, link).await?;
    tx.commit().await
}

async fn read_in(
    conn: &mut PgConnection,
    settings: &ProbeSettings,
    controller: &mut Controller,
    wal: &mut WalMeter,
    link: &PaceLink,
) -> Result<(), sqlx::Error> {
    if settings.mode == PaceMode::Auto {
        // A quiet sample is one taken while the workers wait and no batch of theirs runs.
        let quiet = link.pace.borrow().holds() && link.in_flight.load(Ordering::SeqCst) == 0;
        let started = Instant::now();
        let alone = matches!(
            link.pace.borrow().state,
            PaceState::Alone | PaceState::Starting
        );
        let query = if alone { LOOK } else { PROBE };
        let (_, others): (i64, i64) = sqlx::query_as(query).fetch_one(&mut *conn).await?;
        let latency = started.elapsed();
        let quiet = quiet && link.in_flight.load(Ordering::SeqCst) == 0;
        controller.observe(Sample {
            at: Instant::now(),
            latency,
            others: u32::try_from(others).unwrap_or(u32::MAX),
            quiet,
        });
    }
    if wal.due() {
        let (position, rows): (f64, Option<i64>) = sqlx::query_as(AssertSqlSafe(format!(
            "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::float8,
                    (SELECT sum(rows_updated)::bigint FROM {} WHERE job = $1)",
            settings.jobs.ranges().table()
        )))
        .bind(&settings.job)
        .fetch_one(&mut *conn)
        .await?;
        wal.read(position, rows.unwrap_or(0));
    }
    Ok(())
}

async fn connect_once(connect: &ConnectSettings) -> Option<PgConnection> {
    let once = ConnectSettings {
        attempts: 1,
        connect_timeout: connect.connect_timeout.min(Duration::from_secs(2)),
        ..connect.clone()
    };
    crate::session::connect(&once).await.ok()
}

/// The probe stands for an application's short transaction: a lock or a slow server must not
/// hold it for long. Set for each transaction (a session setting would stay on a pooled
/// server connection).
const BEGIN_PROBE: &str =
    "BEGIN; SET LOCAL statement_timeout = '5s'; SET LOCAL lock_timeout = '1s'";

/// When the pace is worth reporting: its state changed (but for the routine quiet windows
/// while sharing), or its duty moved by a fifth, or [`RECORD_EVERY`] passed.
#[derive(Debug, Default)]
struct Reported {
    last: Option<(Pace, Instant)>,
}

impl Reported {
    fn due(&mut self, pace: &Pace) -> bool {
        let due = match &self.last {
            None => true,
            Some((last, at)) => {
                // A quiet window every 10 s while sharing is routine; the first one is not.
                (last.state != pace.state
                    && !(pace.state == PaceState::Measuring && last.state == PaceState::Sharing))
                    || duty_moved(last.duty, pace.duty)
                    || at.elapsed() >= RECORD_EVERY
            }
        };
        if due {
            self.last = Some((*pace, Instant::now()));
        }
        due
    }
}

fn duty_moved(before: Option<f64>, now: Option<f64>) -> bool {
    match (before, now) {
        (Some(b), Some(n)) => (n / b - 1.0).abs() >= 0.2,
        (b, n) => b.is_some() != n.is_some(),
    }
}

/// Turns `max_wal_per_second` into rows per second: the server's WAL growth per row the job
/// updated, measured each second. WAL that others write meanwhile counts against the job, so
/// the server's WAL rate stays under the budget while the job runs.
#[derive(Debug)]
struct WalMeter {
    budget: Option<u64>,
    floor: u32,
    last: Option<(f64, i64, Instant)>,
    bytes_per_row: f64,
    rate: Option<u32>,
}

impl WalMeter {
    fn new(budget: Option<u64>, floor: u32) -> Self {
        let mut meter = Self {
            budget,
            floor,
            last: None,
            bytes_per_row: ASSUMED_WAL_PER_ROW,
            rate: None,
        };
        meter.rate = meter.rows_per_second();
        meter
    }

    fn due(&self) -> bool {
        self.budget.is_some() && self.last.is_none_or(|(_, _, at)| at.elapsed() >= WAL_EVERY)
    }

    fn read(&mut self, position: f64, rows: i64) {
        if let Some((before, rows_before, _)) = self.last
            && rows > rows_before
        {
            #[expect(clippy::cast_precision_loss, reason = "an estimate")]
            let per_row = (position - before).max(0.0) / (rows - rows_before) as f64;
            // Half the last reading, half the history: steady, yet quick to follow a change.
            self.bytes_per_row = (self.bytes_per_row + per_row.max(1.0)) / 2.0;
        }
        self.last = Some((position, rows, Instant::now()));
        self.rate = self.rows_per_second();
    }

    fn rows_per_second(&self) -> Option<u32> {
        let budget = self.budget?;
        #[expect(clippy::cast_precision_loss, reason = "an estimate")]
        let rows = budget as f64 / self.bytes_per_row;
        #[expect(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            reason = "clamped to u32 first"
        )]
        let rows = rows.clamp(f64::from(self.floor.max(1)), f64::from(u32::MAX)) as u32;
        Some(rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wal_budget_becomes_rows_by_measured_bytes_per_row() {
        let mut meter = WalMeter::new(Some(8_000_000), 100);
        assert_eq!(meter.rate, Some(3906), "2 KiB a row until measured");
        meter.read(1_000_000.0, 0);
        meter.read(3_000_000.0, 10_000);
        // (2048 + 200) / 2 bytes a row.
        assert_eq!(meter.rate, Some(7117));
        meter.read(4_000_000.0, 10_000);
        assert_eq!(meter.rate, Some(7117), "no rows: nothing learnt");
    }

    #[test]
    fn a_budget_others_use_up_leaves_the_job_its_floor() {
        let mut meter = WalMeter::new(Some(1_000_000), 100);
        meter.read(0.0, 0);
        meter.read(1e12, 1);
        assert_eq!(meter.rate, Some(100));
        assert_eq!(WalMeter::new(None, 100).rate, None);
    }

    #[test]
    fn the_pace_is_reported_on_changes_not_every_sample() {
        let mut reported = Reported::default();
        let sharing = Pace {
            state: PaceState::Sharing,
            duty: Some(0.1),
            ..Pace::UNLIMITED
        };
        assert!(reported.due(&sharing));
        assert!(!reported.due(&Pace {
            duty: Some(0.11),
            ..sharing
        }));
        assert!(reported.due(&Pace {
            duty: Some(0.2),
            ..sharing
        }));
        assert!(!reported.due(&Pace {
            state: PaceState::Measuring,
            duty: Some(0.2),
            ..sharing
        }));
        assert!(!reported.due(&Pace {
            duty: Some(0.2),
            ..sharing
        }));
        assert!(reported.due(&Pace {
            state: PaceState::Alone,
            duty: None,
            ..sharing
        }));
    }
}
