//! What an operator's request (pause, resume, cancel) does to a job, decided from the job's
//! recorded state and pending request alone: pure, so every transition has a test, and no
//! answer claims what will not happen (a cancelled job is never "resumed").

use crate::state::{control, states};

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
        control: &'static str,
        state: Option<&'static str>,
        says: &'static str,
    },
    /// Nothing to change; tell the operator why (exit 0).
    Nothing(&'static str),
    /// The job was cancelled: it never runs again, so it cannot be paused or resumed.
    Cancelled,
}

/// The decision for `request` on a job in `state` with `pending` control.
pub fn decide(state: &str, pending: &str, request: Request) -> Decision {
    let cancelled = state == states::CANCELLED || pending == control::CANCEL;
    let running = state == states::RUNNING;
    match request {
        _ if state == states::COMPLETED => {
            Decision::Nothing("it is completed; there is nothing to pause, resume or cancel")
        }
        Request::Cancel if cancelled => Decision::Nothing("it is already cancelled"),
        Request::Pause | Request::Resume if cancelled => Decision::Cancelled,
        Request::Cancel if running => Decision::Record {
            control: control::CANCEL,
            state: None,
            says: "cancel requested: its workers stop after their current batch",
        },
        Request::Cancel => Decision::Record {
            control: control::CANCEL,
            state: Some(states::CANCELLED),
            says: "cancelled: it will not run again",
        },
        Request::Pause if pending == control::PAUSE => Decision::Nothing("it is already paused"),
        Request::Pause if running => Decision::Record {
            control: control::PAUSE,
            state: None,
            says: "pause requested: its workers pause after their current batch and give up \
                   their ranges",
        },
        Request::Pause => Decision::Record {
            control: control::PAUSE,
            state: Some(states::PAUSED),
            says: "paused: `run` does nothing until it is resumed",
        },
        Request::Resume if pending != control::PAUSE && state != states::PAUSED => {
            Decision::Nothing("it is not paused; `sluice-backfill run` continues it")
        }
        Request::Resume if running => Decision::Record {
            control: control::RUN,
            state: None,
            says: "pause request withdrawn: its workers go on",
        },
        Request::Resume => Decision::Record {
            control: control::RUN,
            state: Some(states::STOPPED),
            says: "resumed: the next `sluice-backfill run` continues it",
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn says(decision: &Decision) -> &str {
        match decision {
            Decision::Record { says, .. } | Decision::Nothing(says) => says,
            Decision::Cancelled => "cancelled",
        }
    }

    #[test]
    fn a_cancelled_job_is_never_resumed_or_paused() {
        for (state, pending) in [
            (states::CANCELLED, control::CANCEL),
            (states::CANCELLED, control::RUN),
            (states::RUNNING, control::CANCEL),
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
            let decision = decide(states::COMPLETED, control::RUN, request);
            assert!(matches!(decision, Decision::Nothing(_)), "{decision:?}");
        }
    }

    #[test]
    fn a_running_job_is_asked_and_its_workers_answer() {
        assert!(matches!(
            decide(states::RUNNING, control::RUN, Request::Pause),
            Decision::Record {
                control: control::PAUSE,
                state: None,
                ..
            }
        ));
        assert!(matches!(
            decide(states::RUNNING, control::RUN, Request::Cancel),
            Decision::Record {
                control: control::CANCEL,
                state: None,
                ..
            }
        ));
        assert!(matches!(
            decide(states::RUNNING, control::PAUSE, Request::Resume),
            Decision::Record {
                control: control::RUN,
                state: None,
                ..
            }
        ));
    }

    #[test]
    fn a_job_without_a_worker_changes_state_at_once() {
        assert!(matches!(
            decide(states::STOPPED, control::RUN, Request::Pause),
            Decision::Record {
                state: Some(states::PAUSED),
                ..
            }
        ));
        assert!(matches!(
            decide(states::FAILED, control::RUN, Request::Cancel),
            Decision::Record {
                state: Some(states::CANCELLED),
                ..
            }
        ));
        assert!(matches!(
            decide(states::PAUSED, control::PAUSE, Request::Resume),
            Decision::Record {
                control: control::RUN,
                state: Some(states::STOPPED),
                ..
            }
        ));
    }

    #[test]
    fn resuming_what_is_not_paused_claims_nothing() {
        for state in [states::STOPPED, states::FAILED, states::RUNNING] {
            let decision = decide(state, control::RUN, Request::Resume);
            assert!(
                matches!(decision, Decision::Nothing(_)),
                "{state}: {decision:?}"
            );
            assert!(!says(&decision).starts_with("resumed"));
        }
        assert!(matches!(
            decide(states::PAUSED, control::PAUSE, Request::Pause),
            Decision::Nothing(_)
        ));
    }
}
