//! A cooperative shutdown request, shared by the signal handler and the engines.
//!
//! Engines never install signal handlers: they receive a [`Shutdown`] and check it between
//! units of work (a migration, a batch), so an interrupted run always stops at a point where
//! its progress is committed. Tests pass [`Shutdown::never`] or trigger it themselves.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use tokio::sync::watch;

#[derive(Debug, Clone)]
pub struct Shutdown {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    requests: AtomicU32,
    sender: watch::Sender<bool>,
    at_once: AtomicBool,
    deferred: AtomicBool,
}

impl Shutdown {
    /// A handle that fires when [`Shutdown::trigger`] is called.
    pub fn new() -> Self {
        let (sender, _) = watch::channel(false);
        Self {
            inner: Arc::new(Inner {
                requests: AtomicU32::new(0),
                sender,
                at_once: AtomicBool::new(false),
                deferred: AtomicBool::new(false),
            }),
        }
    }

    /// A handle nobody will trigger, for tests and one-shot commands.
    pub fn never() -> Self {
        Self::new()
    }

    /// Requests shutdown; returns how many requests there have been, this one included.
    /// Safe to call from a signal-handling thread.
    pub fn trigger(&self) -> u32 {
        let count = self.inner.requests.fetch_add(1, Ordering::SeqCst) + 1;
        self.inner.sender.send_replace(true);
        count
    }

    /// Marks the running command as one with nothing to save (it only reads files): the
    /// first signal stops it at once instead of waiting for a safe point it never checks.
    pub fn stop_at_once(&self) {
        self.inner.at_once.store(true, Ordering::SeqCst);
    }

    /// Marks the running command as one whose first signal already stops it at once and whose
    /// clean-up must finish (a scratch database to drop): a second signal waits for it.
    pub fn defer_second_signal(&self) {
        self.inner.deferred.store(true, Ordering::SeqCst);
    }

    /// Whether a second signal waits for the clean-up.
    pub fn second_signal_deferred(&self) -> bool {
        self.inner.deferred.load(Ordering::SeqCst)
    }

    /// Whether the first signal should exit at once.
    pub fn stops_at_once(&self) -> bool {
        self.inner.at_once.load(Ordering::SeqCst)
    }

    pub fn is_requested(&self) -> bool {
        self.inner.requests.load(Ordering::SeqCst) > 0
    }

    /// Completes once shutdown has been requested (at once if it already was).
    pub async fn requested(&self) {
        let mut receiver = self.inner.sender.subscribe();
        // An error means the sender is gone, which cannot happen while `self` lives.
        let _ = receiver.wait_for(|requested| *requested).await;
    }
}

impl Default for Shutdown {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn counts_requests() {
        let shutdown = Shutdown::new();
        assert!(!shutdown.is_requested());
        assert_eq!(shutdown.trigger(), 1);
        assert_eq!(shutdown.clone().trigger(), 2);
        assert!(shutdown.is_requested());
    }

    #[tokio::test]
    async fn waiters_wake_when_triggered_from_another_thread() {
        let shutdown = Shutdown::new();
        let remote = shutdown.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            remote.trigger();
        });
        tokio::time::timeout(Duration::from_secs(5), shutdown.requested())
            .await
            .expect("the waiter was not woken");
    }

    #[tokio::test]
    async fn a_handle_that_never_fires_does_not_complete() {
        let shutdown = Shutdown::never();
        let waited = tokio::time::timeout(Duration::from_millis(50), shutdown.requested()).await;
        assert!(waited.is_err());
    }
}
