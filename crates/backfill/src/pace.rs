//! Pace: how much of the server a job takes when nobody set a rate — what the server can spare.
//!
//! The controller is fed by a probe (`probe`): 20 times a second a tiny committed
//! transaction of sluice's own (so CPU, WAL and fsync contention all show in its latency),
//! read together with the number of other sessions at work.
//!
//! - **Alone** (no other session was seen at work in the last seconds): full speed.
//! - **Sharing** (others are at work): the job's workers rest between batches so that they are
//!   at work only a fraction of the time, the *duty*, and each batch lasts about as long as four
//!   of the server's own short commits, so nobody waits behind a long one. The duty is found by
//!   measuring: every [`QUIET_EVERY`] (and 4 s after a reading over the target, in case the
//!   server got busier by itself) the workers stop for a moment (a *quiet window*) so that
//!   the probe sees the server without the job. The *impact* is the probe's mean latency while
//!   the job works divided by its mean latency in the quiet windows. Every two seconds the duty
//!   is multiplied by (target / impact)^1.5, between half and one and a half (doubling at first
//!   while the impact is under the target, as TCP's slow start does, until two readings in a
//!   row are over it), so the job settles where
//!   its impact is at the target and follows the load as it changes.
//!
//! Pure: time and samples come in, the pace to follow comes out, so every transition has a
//! unit test.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

pub use sluice_common::jobspec::PaceMode;

/// How often the probe runs.
pub const SAMPLE_EVERY: Duration = Duration::from_millis(50);
/// How often the duty is reconsidered.
const DECIDE_EVERY: Duration = Duration::from_secs(2);
/// How often, while sharing, the workers stop so the probe sees the server without them.
pub const QUIET_EVERY: Duration = Duration::from_secs(10);
/// How soon a quiet window comes back after a reading over the target.
const QUIET_AGAIN: Duration = Duration::from_secs(4);
/// Probes a quiet window takes (with no batch in flight) before the workers go on.
const QUIET_SAMPLES: usize = 10;
/// A quiet window ends after this even if it has fewer samples (a batch that will not end).
const QUIET_LONGEST: Duration = Duration::from_millis(1500);
/// Quiet windows whose samples make the reference.
const QUIET_KEPT: usize = 5;
/// Others count as at work when seen in this many samples of the last [`PRESENCE_WINDOW`].
const PRESENCE_HITS: usize = 2;
const PRESENCE_WINDOW: Duration = Duration::from_secs(5);
/// Samples read at the start before deciding whether the job is alone.
const FIRST_LOOK: usize = 3;
/// The duty a job starts sharing with, and its bounds.
const START_DUTY: f64 = 1.0 / 8.0;
const MIN_DUTY: f64 = 1.0 / 64.0;
/// While others work, the job's workers are at work at most half the time: the probe sees
/// waits (locks, WAL flushes, a long run queue), not the CPU time the job takes from others,
/// and this bounds that share whatever the probe reads.
const MAX_SHARED_DUTY: f64 = 0.5;
/// The impact the controller keeps the job under.
pub const TARGET_IMPACT: f64 = 1.15;
/// Work samples needed for a decision.
const MIN_WORK_SAMPLES: usize = 30;
/// How strongly a reading moves the duty (see [`Controller::decide`]).
const GAIN: f64 = 1.5;
/// A sample counts at most this many times the quiet mean: one checkpoint's stall must not
/// decide a second alone.
const CLIP: f64 = 5.0;

/// One reading of the probe.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    pub at: Instant,
    /// The probe's round trip, commit included.
    pub latency: Duration,
    /// Other sessions at work (active or in a transaction), sluice's own not counted.
    pub others: u32,
    /// Taken while the workers were held and no batch was in flight.
    pub quiet: bool,
}

/// What the job is doing about the server, for the workers and for people.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PaceState {
    /// Looking at the server before the first batches.
    Starting,
    /// Nobody else at work: full speed.
    Alone,
    /// Others at work: resting between batches.
    Sharing,
    /// A quiet window: the workers wait while the probe measures the server without them.
    Measuring,
    /// `pace = "max"`.
    Max,
}

impl PaceState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Starting => "starting",
            Self::Alone => "alone",
            Self::Sharing => "sharing",
            Self::Measuring => "measuring",
            Self::Max => "max",
        }
    }
}

/// The pace the workers follow now.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Pace {
    pub state: PaceState,
    /// The fraction of time the process's workers may be at work; `None`: no limit.
    pub duty: Option<f64>,
    /// How long a batch should last while sharing (`None`: the job's `target_batch_time`).
    #[serde(skip)]
    pub batch_time: Option<Duration>,
    /// The last measured impact (probe latency with the job / without it).
    pub impact: Option<f64>,
    /// Mean probe latency in the quiet windows, in ms.
    pub quiet_ms: Option<f64>,
    /// Other sessions at work in the last sample.
    pub others: u32,
}

impl Pace {
    pub const UNLIMITED: Self = Self {
        state: PaceState::Max,
        duty: None,
        batch_time: None,
        impact: None,
        quiet_ms: None,
        others: 0,
    };

    /// Whether the workers wait for a quiet window or the first look.
    pub fn holds(&self) -> bool {
        self.state == PaceState::Measuring
    }

    /// A few words for a progress bar: `sharing 6.1% (1.12x)`.
    pub fn short(&self) -> String {
        match (self.state, self.duty, self.impact) {
            (PaceState::Sharing, Some(duty), Some(impact)) => {
                format!("sharing {:.1}% ({impact:.2}x)", duty * 100.0)
            }
            (PaceState::Sharing, Some(duty), None) => format!("sharing {:.1}%", duty * 100.0),
            (state, _, _) => state.as_str().to_owned(),
        }
    }

    /// One line for people: `sharing with 4 session(s): duty 6%, impact 1.12x (target 1.15x)`.
    pub fn describe(&self) -> String {
        match self.state {
            PaceState::Starting => "looking at the server's load".to_owned(),
            PaceState::Alone => "alone on the server: full speed".to_owned(),
            PaceState::Max => "pace = \"max\": no pacing of its own".to_owned(),
            PaceState::Measuring => format!(
                "measuring the server without the job ({} other session(s) at work)",
                self.others
            ),
            PaceState::Sharing => format!(
                "sharing with {} other session(s): at work {:.1}% of the time, impact {} \
                 (target {TARGET_IMPACT:.2}x)",
                self.others,
                self.duty.unwrap_or(1.0) * 100.0,
                self.impact
                    .map_or_else(|| "not measured yet".to_owned(), |i| format!("{i:.2}x"))
            ),
        }
    }
}

/// The controller (see the module's documentation).
#[derive(Debug)]
pub struct Controller {
    mode: PaceMode,
    state: PaceState,
    duty: f64,
    slow_start: bool,
    /// The last reading was over the target.
    over_before: bool,
    seen: usize,
    /// When samples showed others at work, for the last [`PRESENCE_WINDOW`].
    hits: VecDeque<Instant>,
    quiet_started: Option<Instant>,
    quiet_samples: Vec<Sample>,
    /// The samples of the last quiet windows.
    quiet_windows: VecDeque<Vec<Sample>>,
    last_quiet: Option<Instant>,
    work: Vec<Sample>,
    last_decision: Option<Instant>,
    impact: Option<f64>,
    others: u32,
}

impl Controller {
    pub fn new(mode: PaceMode) -> Self {
        Self {
            mode,
            state: match mode {
                PaceMode::Auto => PaceState::Starting,
                PaceMode::Max => PaceState::Max,
            },
            duty: START_DUTY,
            slow_start: true,
            over_before: false,
            seen: 0,
            hits: VecDeque::new(),
            quiet_started: None,
            quiet_samples: Vec::new(),
            quiet_windows: VecDeque::new(),
            last_quiet: None,
            work: Vec::new(),
            last_decision: None,
            impact: None,
            others: 0,
        }
    }

    /// The pace now.
    pub fn pace(&self) -> Pace {
        let quiet_ms = self.quiet_mean().map(|q| q.as_secs_f64() * 1000.0);
        match self.state {
            // The first look takes three probes (150 ms) on an idle server, and one on a busy
            // one: too short to hold anything back for.
            PaceState::Max | PaceState::Alone | PaceState::Starting => Pace {
                state: self.state,
                quiet_ms,
                others: self.others,
                ..Pace::UNLIMITED
            },
            PaceState::Sharing | PaceState::Measuring => Pace {
                state: self.state,
                duty: Some(self.duty),
                batch_time: Some(self.batch_time()),
                impact: self.impact,
                quiet_ms,
                others: self.others,
            },
        }
    }

    /// Takes one probe reading and moves on: starts or ends a quiet window, decides the duty.
    pub fn observe(&mut self, sample: Sample) {
        if self.mode == PaceMode::Max {
            return;
        }
        self.seen += 1;
        self.others = sample.others;
        self.note_presence(sample);
        let present = self.others_present();
        match self.state {
            PaceState::Starting if self.seen >= FIRST_LOOK || present => {
                self.state = if present {
                    PaceState::Measuring
                } else {
                    PaceState::Alone
                };
                if present {
                    self.quiet_started = Some(sample.at);
                }
            }
            PaceState::Starting => {}
            PaceState::Alone if present => {
                // Others came: measure the server without the job before sharing it.
                self.start_quiet(sample.at);
            }
            PaceState::Alone => {}
            PaceState::Measuring => self.measure(sample, present),
            PaceState::Sharing if !present => {
                self.state = PaceState::Alone;
                self.work.clear();
            }
            PaceState::Sharing => self.share(sample),
            PaceState::Max => {}
        }
    }

    /// The probe could not be read: a quiet window does not outlast its longest.
    pub fn no_reading(&mut self, at: Instant) {
        if self.state == PaceState::Measuring
            && self
                .quiet_started
                .is_some_and(|started| at.duration_since(started) >= QUIET_LONGEST)
        {
            self.quiet_samples.clear();
            self.measure_end(at, true);
        }
    }

    fn note_presence(&mut self, sample: Sample) {
        if sample.others > 0 {
            self.hits.push_back(sample.at);
        }
        while self
            .hits
            .front()
            .is_some_and(|at| sample.at.duration_since(*at) > PRESENCE_WINDOW)
        {
            self.hits.pop_front();
        }
    }

    fn others_present(&self) -> bool {
        self.hits.len() >= PRESENCE_HITS || (self.seen <= FIRST_LOOK && !self.hits.is_empty())
    }

    fn start_quiet(&mut self, at: Instant) {
        self.state = PaceState::Measuring;
        self.quiet_started = Some(at);
        self.quiet_samples.clear();
    }

    fn measure(&mut self, sample: Sample, present: bool) {
        if sample.quiet {
            self.quiet_samples.push(sample);
        }
        let started = self.quiet_started.unwrap_or(sample.at);
        let long = sample.at.duration_since(started) >= QUIET_LONGEST;
        if self.quiet_samples.len() < QUIET_SAMPLES && !long {
            return;
        }
        self.measure_end(sample.at, present);
    }

    fn measure_end(&mut self, at: Instant, present: bool) {
        if !self.quiet_samples.is_empty() {
            self.quiet_windows
                .push_back(std::mem::take(&mut self.quiet_samples));
            while self.quiet_windows.len() > QUIET_KEPT {
                self.quiet_windows.pop_front();
            }
        }
        self.last_quiet = Some(at);
        self.quiet_started = None;
        self.work.clear();
        self.last_decision = Some(at);
        self.state = if present {
            PaceState::Sharing
        } else {
            PaceState::Alone
        };
    }

    fn share(&mut self, sample: Sample) {
        self.work.push(sample);
        let decided = self.last_decision.unwrap_or(sample.at);
        if sample.at.duration_since(decided) >= DECIDE_EVERY && self.work.len() >= MIN_WORK_SAMPLES
        {
            self.decide();
            self.last_decision = Some(sample.at);
        }
        // A reading over the target may mean the server got busier by itself (an autovacuum,
        // a report): look again without the job soon, rather than blame the job on an old
        // reference.
        let every = if self.over_before {
            QUIET_AGAIN
        } else {
            QUIET_EVERY
        };
        let quiet_due = self
            .last_quiet
            .is_none_or(|at| sample.at.duration_since(at) >= every);
        if quiet_due || self.quiet_windows.is_empty() {
            self.start_quiet(sample.at);
        }
    }

    /// Sets the duty from the impact of the work samples since the last decision.
    ///
    /// In slow start the duty doubles while the impact stays under the target. After that it
    /// moves by `(target / impact)^GAIN`: a reading above the target lowers it, one below
    /// raises it, in proportion. The probe's latency is noisy; a step symmetric in the
    /// logarithm lets readings scattered around the target cancel out, where fixed cuts and
    /// fixed raises would walk the duty down to nothing on noise alone.
    fn decide(&mut self) {
        let work = std::mem::take(&mut self.work);
        let Some(impact) = self.impact_of(&work) else {
            return;
        };
        self.impact = Some(impact);
        let over = impact > TARGET_IMPACT;
        // One reading over the target may be noise; slow start ends at the second in a row.
        if over && self.over_before {
            self.slow_start = false;
        }
        self.over_before = over;
        let step = if self.slow_start && !over {
            2.0
        } else {
            (TARGET_IMPACT / impact).powf(GAIN).clamp(0.5, 1.5)
        };
        self.duty = (self.duty * step).clamp(MIN_DUTY, MAX_SHARED_DUTY);
    }

    /// How much slower the probe is while the job works than in the quiet windows (each
    /// sample clipped, so that one checkpoint's stall does not decide alone).
    fn impact_of(&self, work: &[Sample]) -> Option<f64> {
        let quiet = self.quiet_mean()?;
        let ceiling = quiet.mul_f64(CLIP);
        let work = mean(work.iter().map(|s| s.latency.min(ceiling)));
        Some(work.as_secs_f64() / quiet.as_secs_f64().max(1e-6))
    }

    fn quiet_mean(&self) -> Option<Duration> {
        let all: Vec<Duration> = self
            .quiet_windows
            .iter()
            .flatten()
            .map(|s| s.latency)
            .collect();
        (!all.is_empty()).then(|| mean(all.into_iter()))
    }

    /// How long a batch should last while sharing: four of the server's quiet probe commits,
    /// at least 2 ms, at most 50 ms.
    fn batch_time(&self) -> Duration {
        self.quiet_mean()
            .map_or(Duration::from_millis(4), |q| q * 4)
            .clamp(Duration::from_millis(2), Duration::from_millis(50))
    }
}

fn mean(values: impl Iterator<Item = Duration>) -> Duration {
    let (sum, n) = values.fold((Duration::ZERO, 0u32), |(s, n), v| (s + v, n + 1));
    if n == 0 { Duration::ZERO } else { sum / n }
}

/// How long a worker rests after a batch that took `took`, so that the process's `workers`
/// are at work `duty` of the time between them.
pub fn rest_after(took: Duration, duty: f64, workers: usize) -> Duration {
    #[expect(clippy::cast_precision_loss, reason = "a handful of workers")]
    let per_worker = (duty / workers.max(1) as f64).clamp(MIN_DUTY / 64.0, 1.0);
    took.mul_f64(1.0 / per_worker - 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Clock {
        start: Instant,
        now: Duration,
    }

    impl Clock {
        fn new() -> Self {
            Self {
                start: Instant::now(),
                now: Duration::ZERO,
            }
        }

        fn sample(&mut self, latency_ms: u64, others: u32, quiet: bool) -> Sample {
            self.now += SAMPLE_EVERY;
            Sample {
                at: self.start + self.now,
                latency: Duration::from_millis(latency_ms),
                others,
                quiet,
            }
        }
    }

    fn feed(c: &mut Controller, clock: &mut Clock, n: usize, latency_ms: u64, others: u32) {
        for _ in 0..n {
            let quiet = c.pace().holds();
            c.observe(clock.sample(latency_ms, others, quiet));
        }
    }

    /// Feeds samples whose latency depends on whether the job works (a quiet window or not).
    fn run(c: &mut Controller, clock: &mut Clock, n: usize, work_ms: u64, quiet_ms: u64) {
        for _ in 0..n {
            let quiet = c.pace().holds();
            let latency = if quiet { quiet_ms } else { work_ms };
            c.observe(clock.sample(latency, 4, quiet));
        }
    }

    #[test]
    fn alone_on_the_server_the_job_runs_at_full_speed() {
        let (mut c, mut clock) = (Controller::new(PaceMode::Auto), Clock::new());
        assert_eq!(c.pace().state, PaceState::Starting);
        feed(&mut c, &mut clock, FIRST_LOOK, 1, 0);
        assert_eq!(c.pace().state, PaceState::Alone);
        assert_eq!(c.pace().duty, None);
        // One stray query is not a workload.
        feed(&mut c, &mut clock, 1, 1, 1);
        feed(&mut c, &mut clock, 100, 1, 0);
        assert_eq!(c.pace().state, PaceState::Alone);
    }

    #[test]
    fn others_at_work_start_a_quiet_window_then_sharing() {
        let (mut c, mut clock) = (Controller::new(PaceMode::Auto), Clock::new());
        feed(&mut c, &mut clock, 1, 1, 3);
        assert!(c.pace().holds(), "{:?}", c.pace());
        feed(&mut c, &mut clock, QUIET_SAMPLES, 1, 3);
        let pace = c.pace();
        assert_eq!(pace.state, PaceState::Sharing);
        assert_eq!(pace.duty, Some(START_DUTY));
        assert_eq!(pace.batch_time, Some(Duration::from_millis(4)));
    }

    /// Samples between two decisions.
    fn decision() -> usize {
        usize::try_from(DECIDE_EVERY.as_millis() / SAMPLE_EVERY.as_millis()).unwrap()
    }

    #[test]
    fn low_impact_doubles_the_duty_in_slow_start() {
        let (mut c, mut clock) = (Controller::new(PaceMode::Auto), Clock::new());
        run(&mut c, &mut clock, 1 + QUIET_SAMPLES + decision(), 1, 1);
        assert_eq!(c.pace().duty, Some(START_DUTY * 2.0));
        assert_eq!(c.pace().impact, Some(1.0));
        run(&mut c, &mut clock, decision(), 1, 1);
        assert_eq!(c.pace().duty, Some(START_DUTY * 4.0));
    }

    /// Feeds samples (1 ms in quiet windows, `work_us` otherwise) until the duty moves.
    fn until_the_duty_moves(c: &mut Controller, clock: &mut Clock, work_us: u64) -> f64 {
        let before = c.pace().duty;
        for _ in 0..10_000 {
            let quiet = c.pace().holds();
            let latency = Duration::from_micros(if quiet { 1000 } else { work_us });
            c.observe(Sample {
                latency,
                ..clock.sample(1, 4, quiet)
            });
            if c.pace().duty != before && c.pace().state == PaceState::Sharing {
                return c.pace().duty.unwrap();
            }
        }
        panic!("the duty never moved from {before:?}");
    }

    #[test]
    fn high_impact_cuts_the_duty_then_readings_move_it_in_proportion() {
        let (mut c, mut clock) = (Controller::new(PaceMode::Auto), Clock::new());
        let step = (TARGET_IMPACT / 1.5).powf(GAIN);
        assert_eq!(until_the_duty_moves(&mut c, &mut clock, 1500), START_DUTY);
        let first = until_the_duty_moves(&mut c, &mut clock, 1500);
        let impact = c.pace().impact.unwrap();
        assert!((impact - 1.5).abs() < 1e-9, "{impact}");
        assert!((first - START_DUTY * step).abs() < 1e-12, "{first}");
        // One reading over the target may be noise: still in slow start, a good one doubles.
        let doubled = until_the_duty_moves(&mut c, &mut clock, 1000);
        assert!((doubled - first * 2.0).abs() < 1e-12, "{doubled}");
        // Two in a row end slow start.
        until_the_duty_moves(&mut c, &mut clock, 1500);
        let cut = until_the_duty_moves(&mut c, &mut clock, 1500);
        assert!((cut - doubled * step * step).abs() < 1e-12, "{cut}");
        // Slow start is over: a reading under the target raises the duty in proportion.
        let raised = until_the_duty_moves(&mut c, &mut clock, 1000);
        assert!(
            (raised - cut * TARGET_IMPACT.powf(GAIN)).abs() < 1e-12,
            "{raised}"
        );
        // A far worse reading cuts by half at most, and never below the smallest duty.
        let worse = until_the_duty_moves(&mut c, &mut clock, 9000);
        assert!(
            (worse - (raised * 0.5).max(MIN_DUTY)).abs() < 1e-12,
            "{worse}"
        );
        for _ in 0..5 {
            if c.pace().duty == Some(MIN_DUTY) {
                break;
            }
            until_the_duty_moves(&mut c, &mut clock, 9000);
        }
        assert_eq!(c.pace().duty, Some(MIN_DUTY));
    }

    #[test]
    fn the_duty_settles_near_the_target() {
        // A server where the job's impact grows with its duty: 1 + duty.
        let (mut c, mut clock) = (Controller::new(PaceMode::Auto), Clock::new());
        for _ in 0..6000 {
            let quiet = c.pace().holds();
            let duty = c.pace().duty.unwrap_or(1.0);
            let latency = if quiet { 1.0 } else { 1.0 + duty };
            c.observe(Sample {
                latency: Duration::from_secs_f64(latency / 1000.0),
                ..clock.sample(0, 4, quiet)
            });
        }
        let duty = c.pace().duty.unwrap();
        assert!((0.12..=0.18).contains(&duty), "{duty}");
    }

    #[test]
    fn noise_alone_does_not_walk_the_duty_down() {
        // Heavy-tailed latencies the job has no part in: one sample in ten is five times
        // slower, in quiet windows and out of them alike.
        let (mut c, mut clock) = (Controller::new(PaceMode::Auto), Clock::new());
        let mut rng = fastrand::Rng::with_seed(7);
        for _ in 0..6000 {
            let quiet = c.pace().holds();
            let latency = if rng.u8(0..10) == 0 {
                5.0
            } else {
                0.5 + rng.f64()
            };
            c.observe(Sample {
                latency: Duration::from_secs_f64(latency / 1000.0),
                ..clock.sample(0, 4, quiet)
            });
        }
        let duty = c.pace().duty.unwrap();
        assert!(duty >= MAX_SHARED_DUTY * 0.8, "{duty}");
    }

    #[test]
    fn quiet_windows_come_back_while_sharing() {
        let (mut c, mut clock) = (Controller::new(PaceMode::Auto), Clock::new());
        run(&mut c, &mut clock, 1 + QUIET_SAMPLES, 1, 1);
        let steps = usize::try_from(QUIET_EVERY.as_millis() / SAMPLE_EVERY.as_millis()).unwrap();
        run(&mut c, &mut clock, steps - 1, 1, 1);
        assert_eq!(c.pace().state, PaceState::Sharing);
        run(&mut c, &mut clock, 1, 1, 1);
        assert!(c.pace().holds());
    }

    #[test]
    fn a_quiet_window_ends_even_when_batches_keep_it_from_being_quiet() {
        let (mut c, mut clock) = (Controller::new(PaceMode::Auto), Clock::new());
        feed(&mut c, &mut clock, 1, 1, 3);
        let steps = usize::try_from(QUIET_LONGEST.as_millis() / SAMPLE_EVERY.as_millis()).unwrap();
        for _ in 0..steps {
            c.observe(clock.sample(1, 3, false));
        }
        assert_eq!(c.pace().state, PaceState::Sharing);
        assert_eq!(c.pace().quiet_ms, None);
    }

    #[test]
    fn when_the_others_leave_the_job_is_alone_again() {
        let (mut c, mut clock) = (Controller::new(PaceMode::Auto), Clock::new());
        run(&mut c, &mut clock, 1 + QUIET_SAMPLES + 5, 1, 1);
        assert_eq!(c.pace().state, PaceState::Sharing);
        feed(&mut c, &mut clock, 101, 1, 0);
        assert_eq!(c.pace().state, PaceState::Alone);
    }

    #[test]
    fn max_never_paces() {
        let (mut c, mut clock) = (Controller::new(PaceMode::Max), Clock::new());
        feed(&mut c, &mut clock, 50, 5, 4);
        assert_eq!(c.pace(), Pace::UNLIMITED);
    }

    #[test]
    fn rest_keeps_the_workers_at_their_duty() {
        let took = Duration::from_millis(10);
        assert_eq!(rest_after(took, 1.0, 1), Duration::ZERO);
        assert_eq!(rest_after(took, 0.5, 1), took);
        assert_eq!(rest_after(took, 0.5, 2), took * 3);
        assert_eq!(rest_after(took, 0.1, 1), took * 9);
    }

    #[test]
    fn modes_parse_and_name_themselves() {
        assert_eq!(PaceMode::parse("max"), Ok(PaceMode::Max));
        assert_eq!(PaceMode::parse("auto").map(PaceMode::as_str), Ok("auto"));
        assert!(PaceMode::parse("fast").unwrap_err().contains("\"fast\""));
    }
}
