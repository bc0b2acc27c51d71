//! Output of `sluice-backfill`: a live progress bar on a terminal, a structured log line every
//! few seconds otherwise (Kubernetes Jobs), and a summary at the end.

use crate::lifecycle::{Control, JobState};
use sluice_common::exit;
use std::io::IsTerminal;
use std::time::{Duration, Instant};

use crate::engine::Outcome;
use crate::event::Event;
use crate::job::{Job, past_tense_of};
use crate::ops::JobStatus;
use crate::pace::Pace;
use crate::plan::Plan;
use crate::throttle::Reason;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::json;
use sluice_common::{errln, outln};

/// How often a progress line is logged when stderr is not a terminal.
const LOG_EVERY: Duration = Duration::from_secs(5);

/// Renders one `run`.
#[derive(Debug)]
pub struct Progress {
    bar: Option<ProgressBar>,
    last_log: Instant,
    /// When the job started in this run: throughput and ETA count from here.
    started: Instant,
    /// Working time of this run (batches), and throttled time.
    work: Duration,
    throttled: Duration,
    throttle_state: Option<Reason>,
    estimated: u64,
    /// The job's rows scanned when this run started, and now (every process's batches).
    scanned_before: u64,
    scanned: u64,
    updated: u64,
    /// Rows this process scanned in this run.
    own_scanned: u64,
    batch_size: u32,
    /// The pace the probe reported last.
    pace: Option<Pace>,
    longest_batch: Duration,
    workers: usize,
    job: String,
}

impl Progress {
    pub fn new(job: &Job) -> Self {
        Self {
            bar: None,
            last_log: Instant::now(),
            started: Instant::now(),
            work: Duration::ZERO,
            throttled: Duration::ZERO,
            throttle_state: None,
            estimated: 0,
            scanned_before: 0,
            scanned: 0,
            updated: 0,
            own_scanned: 0,
            batch_size: job.pacing.batch_size,
            pace: None,
            longest_batch: Duration::ZERO,
            workers: 1,
            job: job.name.clone(),
        }
    }

    pub fn event(&mut self, event: &Event) {
        match event {
            Event::Started {
                resumed,
                rows_scanned,
                rows_updated,
                estimated_rows,
                batch_size,
                workers,
                ranges,
                ranges_done,
                deadline,
                ..
            } => {
                self.workers = *workers;
                self.started = Instant::now();
                if let Some(deadline) = deadline {
                    tracing::info!(job = %self.job, stop_at = %deadline.at.to_rfc3339(), "stopping by itself at {} ({})", deadline.at.to_rfc3339(), deadline.reason.replace(" reached", "").replace("closed at", "closing at"));
                }
                tracing::info!(job = %self.job, workers, ranges, ranges_done, "{workers} worker(s) on {ranges} key range(s), {ranges_done} done before");
                self.estimated = (*estimated_rows).max(*rows_scanned);
                self.scanned_before = *rows_scanned;
                self.scanned = *rows_scanned;
                self.updated = *rows_updated;
                self.batch_size = *batch_size;
                let verb = if *resumed { "resuming" } else { "starting" };
                tracing::info!(job = %self.job, rows_done = rows_scanned, estimated_rows, "{verb} job {}", self.job);
                self.bar = std::io::stderr().is_terminal().then(|| self.new_bar());
            }
            Event::Batch(batch) => {
                self.work += batch.duration;
                self.longest_batch = self.longest_batch.max(batch.duration);
                self.own_scanned += batch.rows_scanned;
                self.scanned = batch.total_scanned;
                self.updated = batch.total_updated;
                self.batch_size = batch.next_batch_size;
                self.throttle_state = None;
                self.estimated = self.estimated.max(self.scanned);
                self.show();
            }
            Event::Throttled { reason, waited } => {
                self.throttled += *waited;
                self.throttle_state = Some(*reason);
                self.show();
            }
            Event::LoadSignal { reason, .. } => {
                self.throttle_state = Some(*reason);
                self.show();
            }
            Event::JobTotals {
                rows_scanned,
                rows_updated,
            } => {
                self.scanned = *rows_scanned;
                self.updated = *rows_updated;
                self.estimated = self.estimated.max(self.scanned);
                self.show();
            }
            Event::Pace(pace) => {
                if self.pace.is_none_or(|before| before.state != pace.state) {
                    tracing::info!(
                        job = %self.job,
                        pace = pace.state.as_str(),
                        duty = pace.duty,
                        impact = pace.impact,
                        others = pace.others,
                        "pace: {}",
                        pace.describe()
                    );
                }
                self.pace = Some(*pace);
                self.show();
            }
            Event::Retrying { .. } | Event::Claimed { .. } => {}
            Event::Verified { remaining } => {
                tracing::info!(job = %self.job, remaining, "verification: {remaining} row(s) in range still match `where`");
            }
        }
    }

    fn new_bar(&self) -> ProgressBar {
        let bar = ProgressBar::with_draw_target(Some(self.estimated), ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template("{prefix} [{bar:30}] {human_pos}/{human_len} rows  {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        bar.set_prefix(self.job.clone());
        bar.set_position(self.scanned);
        bar
    }

    /// This process's rows per second of working time: throttled time is left out; its
    /// workers work at once.
    /// This process's rows per second since the run started (wall clock: pauses, throttling
    /// and every worker included), for the summary.
    fn rate(&self) -> f64 {
        let secs = self.started.elapsed().as_secs_f64();
        #[expect(clippy::cast_precision_loss, reason = "a rate needs no exactness")]
        let done = self.own_scanned as f64;
        if secs > 0.0 { done / secs } else { 0.0 }
    }

    /// The job's rows per second since this run started, every process's batches and
    /// throttled time included: what the ETA needs.
    fn throughput(&self) -> f64 {
        let secs = self.started.elapsed().as_secs_f64();
        #[expect(clippy::cast_precision_loss, reason = "a rate needs no exactness")]
        let done = self.scanned.saturating_sub(self.scanned_before) as f64;
        if secs > 0.0 { done / secs } else { 0.0 }
    }

    fn eta(&self) -> Option<Duration> {
        let rate = self.throughput();
        #[expect(clippy::cast_precision_loss, reason = "an ETA needs no exactness")]
        let left = self.estimated.saturating_sub(self.scanned) as f64;
        (rate > 0.0).then(|| Duration::from_secs_f64(left / rate))
    }

    fn show(&mut self) {
        let eta = self.eta().map_or_else(
            || "?".to_owned(),
            |d| humantime::format_duration(Duration::from_secs(d.as_secs())).to_string(),
        );
        let throttle = self.throttle_state.map_or("", Reason::as_str);
        let pace = self.pace.map_or_else(String::new, |p| p.short());
        if let Some(bar) = &self.bar {
            bar.set_length(self.estimated);
            bar.set_position(self.scanned);
            bar.set_message(format!(
                "{:.0} rows/s  ETA {eta}  batch {}  pace {pace}  held {:.1}s {throttle}",
                self.throughput(),
                self.batch_size,
                self.throttled.as_secs_f64()
            ));
        } else if self.last_log.elapsed() >= LOG_EVERY {
            self.last_log = Instant::now();
            tracing::info!(
                job = %self.job,
                rows_scanned = self.scanned,
                rows_updated = self.updated,
                estimated_rows = self.estimated,
                rows_per_second = format!("{:.0}", self.throughput()),
                eta = %eta,
                batch_size = self.batch_size,
                throttled_s = format!("{:.1}", self.throttled.as_secs_f64()),
                throttle = throttle,
                pace = %pace,
                "progress"
            );
        }
    }

    /// Clears the bar and prints the summary (stdout) or the resume hint (stderr).
    pub fn finish(self, job: &Job, outcome: Option<&Outcome>) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
        let spec = job
            .path
            .as_ref()
            .map_or_else(|| job.name.clone(), |p| p.display().to_string());
        let totals = format!(
            "{} row(s) {}, {} scanned; this process: {} row(s) in {:.1}s ({:.0} rows/s), \
             its {} worker(s) busy {:.1}s and throttled {:.1}s in all, longest batch {}ms",
            self.updated,
            job.action.past_tense(),
            self.scanned,
            self.own_scanned,
            self.started.elapsed().as_secs_f64(),
            self.rate(),
            self.workers,
            self.work.as_secs_f64(),
            self.throttled.as_secs_f64(),
            self.longest_batch.as_millis()
        );
        match outcome {
            Some(Outcome::Completed { batches, .. }) => outln!(
                "job {} completed and verified: {totals}; {batches} batch(es)",
                job.name
            ),
            Some(Outcome::AlreadyCompleted) => {
                outln!("job {} is already complete; nothing to do", job.name)
            }
            Some(Outcome::Paused) => outln!(
                "job {} is paused: {totals}; `sluice-backfill resume {}` then `sluice-backfill run {spec}` to continue",
                job.name,
                job.name
            ),
            Some(Outcome::Cancelled) => {
                outln!("job {} is cancelled: {totals}", job.name)
            }
            Some(Outcome::Interrupted) => errln!(
                "sluice-backfill: job {} stopped: {totals}; every committed batch is kept. Resume with: sluice-backfill run {spec}",
                job.name
            ),
            Some(Outcome::LimitReached { reason }) => outln!(
                "job {} stopped because {reason}: {totals}; resumable: the next `sluice-backfill run {spec}` continues it",
                job.name
            ),
            Some(Outcome::OutsideWindow { opens_at, window }) => outln!(
                "job {}: outside the run window {window}; nothing done (it opens at {})",
                job.name,
                opens_at.to_rfc3339()
            ),
            None => {}
        }
    }
}

/// `plan`.
pub fn plan(plan: &Plan, json: bool) {
    if json {
        outln!("{}", serde_json::to_string(plan).unwrap_or_default());
        return;
    }
    let key = |k: &Option<Vec<String>>| {
        k.as_ref().map_or_else(
            || "(empty table)".to_owned(),
            |k| format!("({})", k.join(", ")),
        )
    };
    outln!("job:            {}", plan.job);
    outln!("action:         {}", plan.action);
    outln!("table:          {}", plan.table);
    outln!(
        "key:            ({}) of type ({}), walked with index {}",
        plan.key.join(", "),
        plan.key_types.join(", "),
        plan.index
    );
    outln!(
        "key bounds:     {} to {}",
        key(&plan.min_key),
        key(&plan.max_key)
    );
    outln!(
        "estimated rows: {} in about {} batch(es) of {}",
        plan.estimated_rows,
        plan.estimated_batches,
        plan.batch_size
    );
    if let Some(recorded) = &plan.recorded {
        outln!(
            "recorded:       {} — {} rows scanned, {} {}, cursor {}",
            recorded.state,
            recorded.rows_scanned,
            recorded.rows_updated,
            past_tense_of(&recorded.action),
            recorded
                .cursor
                .as_ref()
                .map_or_else(|| "(start)".to_owned(), |c| format!("({})", c.join(", ")))
        );
    }
    if let Some(answer) = &plan.throttle_query {
        outln!("throttle_query: {answer}");
    }
    outln!("\neach batch, in one transaction:");
    for line in &plan.batch_sql {
        outln!("  {line}");
    }
    outln!("\nEXPLAIN of the first batch:");
    for line in &plan.explain {
        outln!("  {line}");
    }
    outln!("\n(nothing was changed)");
}

/// `status`.
pub fn status(statuses: &[JobStatus], json: bool) {
    if json {
        outln!("{}", json!({ "jobs": statuses }));
        return;
    }
    if statuses.is_empty() {
        outln!("no jobs recorded yet");
        return;
    }
    for s in statuses {
        let row = &s.row;
        let stale = if row.state == JobState::Running && s.leases.is_empty() {
            " (no live worker: it stopped uncleanly; `run` resumes it)"
        } else {
            ""
        };
        outln!("{}: {}{stale}", row.name, row.state);
        outln!(
            "  {} table {} key ({})",
            row.action,
            row.table_name,
            row.key_columns.join(", ")
        );
        outln!(
            "  {} of {} key range(s) done, up to key {}",
            row.ranges_done,
            row.ranges,
            row.upper_bound
                .as_ref()
                .map_or_else(|| "(empty)".to_owned(), |c| format!("({})", c.join(", ")))
        );
        for lease in &s.leases {
            outln!(
                "  worker {} on range {} (lease {:.0}s left)",
                lease.owner,
                lease.range_no,
                lease.lease_seconds_left
            );
        }
        outln!(
            "  {} rows scanned of ~{}, {} {}, {} batches, {} retries, batch size {}",
            row.rows_scanned,
            row.estimated_rows,
            row.rows_updated,
            past_tense_of(&row.action),
            row.batches,
            row.retries,
            row.batch_size
        );
        let rate = s
            .rows_per_second
            .map_or_else(|| "-".to_owned(), |r| format!("{r:.0} rows/s"));
        let eta = s.eta_seconds.map_or_else(
            || "-".to_owned(),
            |e| humantime::format_duration(Duration::from_secs_f64(e.round())).to_string(),
        );
        outln!(
            "  {rate}, ETA {eta}, {:.1}s working, {:.1}s throttled",
            row.work_seconds,
            row.throttled_seconds
        );
        if let Some(by) = row.throttled_by.as_object().filter(|m| !m.is_empty()) {
            let reasons: Vec<String> = by
                .iter()
                .map(|(reason, secs)| format!("{reason} {:.1}s", secs.as_f64().unwrap_or(0.0)))
                .collect();
            outln!("  held back by: {}", reasons.join(", "));
        }
        if let (Some(pace), Some(at)) = (&row.pace, row.pace_at)
            && row.state == JobState::Running
        {
            let described = pace.get("describe").and_then(|d| d.as_str()).unwrap_or("?");
            let ago = (chrono::Utc::now() - at).num_seconds().max(0);
            outln!("  pace: {described} ({ago}s ago)");
        }
        if let Some(last) = &row.last_throttle {
            outln!("  last throttle: {last}");
        }
        if let Some(error) = &row.last_error {
            outln!("  last error: {error}");
        }
        if row.control != Control::Run
            && !matches!(row.state, JobState::Paused | JobState::Cancelled)
        {
            outln!("  requested: {}", row.control);
        }
        if !s.actions.is_empty() {
            outln!("  recent actions:");
        }
        for action in &s.actions {
            let by = sluice_common::display::one_line(
                action.actor.as_deref().unwrap_or(action.role.as_str()),
            );
            outln!(
                "    {} {} by {by}: {}",
                action.at.format("%Y-%m-%d %H:%M:%S UTC"),
                action.action,
                action.detail.as_deref().unwrap_or("")
            );
        }
    }
}

/// `status --wait`: one line on the job, and the exit code once it has ended.
pub fn wait_line(status: &JobStatus) -> (String, Option<u8>) {
    let row = &status.row;
    let progress = format!(
        "{} of ~{} rows scanned",
        row.rows_scanned,
        row.estimated_rows.max(row.rows_scanned)
    );
    match row.state {
        JobState::Completed if row.verified_remaining == Some(0) => (
            format!("job {} completed and verified: {progress}", row.name),
            Some(exit::OK),
        ),
        JobState::Failed => (
            format!(
                "job {} failed at {progress}: {}",
                row.name,
                row.last_error.as_deref().unwrap_or("(no error recorded)")
            ),
            Some(exit::FAILED),
        ),
        JobState::Cancelled => (
            format!("job {} was cancelled at {progress}", row.name),
            Some(exit::BLOCKED),
        ),
        // Not an end: whoever paused it means to resume it, and the wait goes on (bounded by
        // --timeout); but nothing moves until then, and the line says so.
        JobState::Paused => (
            format!(
                "job {} is paused at {progress}: nothing moves until `sluice-backfill resume {}` \
                 and a run; still waiting",
                row.name, row.name
            ),
            None,
        ),
        state => (
            format!(
                "job {} is {state} ({} worker(s)): {progress}",
                row.name,
                status.leases.len()
            ),
            None,
        ),
    }
}
