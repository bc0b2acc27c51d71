//! A job's lifecycle, decided from plain data alone: what a run does with the job's recorded
//! row at its start, what a run's end is given how its workers ended, and what an operator's
//! request (pause, resume, cancel) does. Pure, so every transition has a test, and no answer
//! claims what will not happen (a cancelled job is never "resumed").

pub use sluice_common::backfill_gate::{Control, JobState};

/// What a run knows at its start about the job's recorded row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StartFacts {
    pub state: JobState,
    pub control: Control,
    /// The spec names the table and key the job was registered with.
    pub same_identity: bool,
    /// The spec's `set` and `where` are those the job was registered (or last accepted) with.
    pub same_spec: bool,
}

/// The operator's choices for a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StartOptions {
    pub accept_spec_change: bool,
    pub rescan: bool,
}

/// What a run does at its start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    Refuse(Refusal),
    /// Completed and not to be scanned again: nothing to do.
    AlreadyCompleted,
    Go {
        /// Record the spec's checksum as the job's.
        accept_spec: bool,
        /// Start another pass over the whole key range.
        rescan: bool,
        /// A pause is pending: the run does nothing (and the job stays as it is).
        paused: bool,
    },
}

/// Why a run refuses to start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The spec names another table or key than the job's.
    IdentityChanged,
    Cancelled,
    /// `set` or `where` changed on an unfinished job, without `--accept-spec-change`.
    SpecChanged,
}

/// The start decision.
pub fn on_start(facts: StartFacts, options: StartOptions) -> Start {
    if !facts.same_identity {
        return Start::Refuse(Refusal::IdentityChanged);
    }
    if facts.state == JobState::Cancelled || facts.control == Control::Cancel {
        return Start::Refuse(Refusal::Cancelled);
    }
    let completed = facts.state == JobState::Completed;
    if completed && !options.rescan {
        return Start::AlreadyCompleted;
    }
    if !facts.same_spec && !options.accept_spec_change && !completed {
        return Start::Refuse(Refusal::SpecChanged);
    }
    Start::Go {
        accept_spec: !facts.same_spec,
        rescan: options.rescan,
        paused: facts.control == Control::Pause,
    }
}

/// Why a worker stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkerEnd {
    /// Every range is done.
    NoWork,
    Paused,
    Cancelled,
    /// A shutdown signal.
    Interrupted,
    /// The run's deadline (window, max runtime, until) passed.
    Deadline,
    /// Another worker of this process failed.
    Stopped,
}

/// How a run ends, given how its workers did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunEnd {
    Cancelled,
    Paused,
    /// Stopped before the end; `limit`: by the run's deadline (a planned stop).
    Stopped {
        limit: bool,
    },
    /// Every worker found no work left: verify and complete.
    AllDone,
}

/// The end decision: a cancel wins over a pause, which wins over any stop.
pub fn on_end(ends: &[WorkerEnd]) -> RunEnd {
    let has = |end: WorkerEnd| ends.contains(&end);
    if has(WorkerEnd::Cancelled) {
        RunEnd::Cancelled
    } else if has(WorkerEnd::Paused) {
        RunEnd::Paused
    } else if has(WorkerEnd::Interrupted) || has(WorkerEnd::Stopped) || has(WorkerEnd::Deadline) {
        // A worker that reached the deadline means the run's limit ended it, whatever the
        // others saw on the way out.
        RunEnd::Stopped {
            limit: has(WorkerEnd::Deadline),
        }
    } else {
        RunEnd::AllDone
    }
}

/// An operator's request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    Pause,
    Resume,
    Cancel,
}

impl Request {
    pub fn verb(self) -> &'static str {
        match self {
            Self::Pause => "pause",
            Self::Resume => "resume",
            Self::Cancel => "cancel",
        }
    }
}

/// What to do about a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Record `control` (and `state`, when the job has no worker to notice the request), then
    /// tell the operator `says`.
    Record {
        control: Control,
        state: Option<JobState>,
        says: &'static str,
    },
    /// Nothing to change; tell the operator why (exit 0).
    Nothing(&'static str),
    /// The job was cancelled: it never runs again, so it cannot be paused or resumed.
    Cancelled,
}

/// The decision for `request` on a job in `state` with `pending` control.
pub fn decide(state: JobState, pending: Control, request: Request) -> Decision {
    let cancelled = state == JobState::Cancelled || pending == Control::Cancel;
    let running = state == JobState::Running;
    match request {
        _ if state == JobState::Completed => {
            Decision::Nothing("it is completed; there is nothing to pause, resume or cancel")
        }
        Request::Cancel if cancelled => Decision::Nothing("it is already cancelled"),
        Request::Pause | Request::Resume if cancelled => Decision::Cancelled,
        Request::Cancel if running => Decision::Record {
            control: Control::Cancel,
            state: None,
            says: "cancel requested: its workers stop after their current batch",
        },
        Request::Cancel => Decision::Record {
            control: Control::Cancel,
            state: Some(JobState::Cancelled),
            says: "cancelled: it will not run again",
        },
        Request::Pause if pending == Control::Pause => Decision::Nothing("it is already paused"),
        Request::Pause if running => Decision::Record {
            control: Control::Pause,
            state: None,
            says: "pause requested: its workers pause after their current batch and give up \
                   their ranges",
        },
        Request::Pause => Decision::Record {
            control: Control::Pause,
            state: Some(JobState::Paused),
            says: "paused: `run` does nothing until it is resumed",
        },
        Request::Resume if pending != Control::Pause && state != JobState::Paused => {
            Decision::Nothing("it is not paused; `sluice-backfill run` continues it")
        }
        Request::Resume if running => Decision::Record {
            control: Control::Run,
            state: None,
            says: "pause request withdrawn: its workers go on",
        },
        Request::Resume => Decision::Record {
            control: Control::Run,
            state: Some(JobState::Stopped),
            says: "resumed: the next `sluice-backfill run` continues it",
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(state: JobState, control: Control) -> StartFacts {
        StartFacts {
            state,
            control,
            same_identity: true,
            same_spec: true,
        }
    }

    const GO: Start = Start::Go {
        accept_spec: false,
        rescan: false,
        paused: false,
    };

    #[test]
    fn a_recorded_job_in_any_resumable_state_starts() {
        for state in [
            JobState::Running,
            JobState::Stopped,
            JobState::Failed,
            JobState::Paused,
        ] {
            assert_eq!(
                on_start(facts(state, Control::Run), StartOptions::default()),
                GO
            );
        }
    }

    #[test]
    fn another_table_or_key_is_refused_whatever_the_options() {
        let moved = StartFacts {
            same_identity: false,
            ..facts(JobState::Completed, Control::Run)
        };
        let all = StartOptions {
            accept_spec_change: true,
            rescan: true,
        };
        assert_eq!(
            on_start(moved, all),
            Start::Refuse(Refusal::IdentityChanged)
        );
    }

    #[test]
    fn a_cancelled_job_or_a_pending_cancel_is_refused() {
        let all = StartOptions {
            accept_spec_change: true,
            rescan: true,
        };
        assert_eq!(
            on_start(facts(JobState::Cancelled, Control::Run), all),
            Start::Refuse(Refusal::Cancelled)
        );
        assert_eq!(
            on_start(facts(JobState::Running, Control::Cancel), all),
            Start::Refuse(Refusal::Cancelled)
        );
    }

    #[test]
    fn a_completed_job_is_done_unless_rescanned() {
        let done = facts(JobState::Completed, Control::Run);
        assert_eq!(
            on_start(done, StartOptions::default()),
            Start::AlreadyCompleted
        );
        let rescan = StartOptions {
            rescan: true,
            ..StartOptions::default()
        };
        assert_eq!(
            on_start(done, rescan),
            Start::Go {
                accept_spec: false,
                rescan: true,
                paused: false
            }
        );
    }

    #[test]
    fn a_changed_spec_needs_acceptance_unless_the_job_is_complete() {
        let changed = StartFacts {
            same_spec: false,
            ..facts(JobState::Stopped, Control::Run)
        };
        assert_eq!(
            on_start(changed, StartOptions::default()),
            Start::Refuse(Refusal::SpecChanged)
        );
        let accept = StartOptions {
            accept_spec_change: true,
            ..StartOptions::default()
        };
        assert!(matches!(
            on_start(changed, accept),
            Start::Go {
                accept_spec: true,
                ..
            }
        ));
        let completed = StartFacts {
            same_spec: false,
            ..facts(JobState::Completed, Control::Run)
        };
        let rescan = StartOptions {
            rescan: true,
            ..StartOptions::default()
        };
        assert!(matches!(
            on_start(completed, rescan),
            Start::Go {
                accept_spec: true,
                rescan: true,
                ..
            }
        ));
    }

    #[test]
    fn a_pending_pause_starts_nothing() {
        assert!(matches!(
            on_start(
                facts(JobState::Paused, Control::Pause),
                StartOptions::default()
            ),
            Start::Go { paused: true, .. }
        ));
    }

    #[test]
    fn a_run_ends_as_its_most_decisive_worker() {
        use WorkerEnd::*;
        assert_eq!(on_end(&[NoWork, NoWork]), RunEnd::AllDone);
        assert_eq!(on_end(&[]), RunEnd::AllDone);
        assert_eq!(on_end(&[NoWork, Cancelled, Paused]), RunEnd::Cancelled);
        assert_eq!(on_end(&[Paused, Interrupted]), RunEnd::Paused);
        assert_eq!(
            on_end(&[Interrupted, NoWork]),
            RunEnd::Stopped { limit: false }
        );
        assert_eq!(on_end(&[Stopped]), RunEnd::Stopped { limit: false });
        assert_eq!(on_end(&[Deadline, NoWork]), RunEnd::Stopped { limit: true });
        assert_eq!(
            on_end(&[Deadline, Interrupted]),
            RunEnd::Stopped { limit: true }
        );
    }

    #[test]
    fn a_cancelled_job_is_never_resumed_or_paused() {
        for (state, pending) in [
            (JobState::Cancelled, Control::Cancel),
            (JobState::Cancelled, Control::Run),
            (JobState::Running, Control::Cancel),
        ] {
            assert_eq!(decide(state, pending, Request::Resume), Decision::Cancelled);
            assert_eq!(decide(state, pending, Request::Pause), Decision::Cancelled);
            assert!(matches!(
                decide(state, pending, Request::Cancel),
                Decision::Nothing(_)
            ));
        }
    }

    #[test]
    fn a_completed_job_changes_for_no_request() {
        for request in [Request::Pause, Request::Resume, Request::Cancel] {
            let decision = decide(JobState::Completed, Control::Run, request);
            assert!(matches!(decision, Decision::Nothing(_)), "{decision:?}");
        }
    }

    #[test]
    fn a_running_job_is_asked_and_its_workers_answer() {
        assert!(matches!(
            decide(JobState::Running, Control::Run, Request::Pause),
            Decision::Record {
                control: Control::Pause,
                state: None,
                ..
            }
        ));
        assert!(matches!(
            decide(JobState::Running, Control::Run, Request::Cancel),
            Decision::Record {
                control: Control::Cancel,
                state: None,
                ..
            }
        ));
        assert!(matches!(
            decide(JobState::Running, Control::Pause, Request::Resume),
            Decision::Record {
                control: Control::Run,
                state: None,
                ..
            }
        ));
    }

    #[test]
    fn a_job_without_a_worker_changes_state_at_once() {
        assert!(matches!(
            decide(JobState::Stopped, Control::Run, Request::Pause),
            Decision::Record {
                state: Some(JobState::Paused),
                ..
            }
        ));
        assert!(matches!(
            decide(JobState::Failed, Control::Run, Request::Cancel),
            Decision::Record {
                state: Some(JobState::Cancelled),
                ..
            }
        ));
        assert!(matches!(
            decide(JobState::Paused, Control::Pause, Request::Resume),
            Decision::Record {
                control: Control::Run,
                state: Some(JobState::Stopped),
                ..
            }
        ));
    }

    #[test]
    fn resuming_what_is_not_paused_claims_nothing() {
        for state in [JobState::Stopped, JobState::Failed, JobState::Running] {
            let decision = decide(state, Control::Run, Request::Resume);
            assert!(
                matches!(decision, Decision::Nothing(_)),
                "{state}: {decision:?}"
            );
        }
        assert!(matches!(
            decide(JobState::Paused, Control::Pause, Request::Pause),
            Decision::Nothing(_)
        ));
    }
}
