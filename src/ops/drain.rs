//! The proxy's drain: the first stop (SIGTERM, SIGINT or
//! `/quitquitquit`) turns readiness off and tells systemd, keeps accepting
//! for `--min-sigterm-delay`, then closes the listeners; a second signal
//! ends the drain at once. The exit code is the first stop's.

use super::Health;
use crate::error::Result;
use crate::signals::{Stop, StopSignals};

/// What stops the proxy: SIGINT / SIGTERM or `/quitquitquit`, then a
/// second signal that ends the drain at once.
pub(crate) struct Stops {
    signals: tokio::sync::Mutex<StopSignals>,
    /// The first stop: its exit code.
    why: std::sync::Mutex<Option<Stop>>,
    /// A second signal came during `--min-sigterm-delay`.
    hurried: std::sync::atomic::AtomicBool,
}

impl Stops {
    pub(crate) fn install() -> Result<Self> {
        Ok(Self {
            signals: tokio::sync::Mutex::new(StopSignals::install()?),
            why: std::sync::Mutex::new(None),
            hurried: std::sync::atomic::AtomicBool::new(false),
        })
    }

    pub(crate) fn why(&self) -> Option<Stop> {
        self.why.lock().ok().and_then(|w| *w)
    }

    /// Completes once the listeners should close: after the first stop,
    /// readiness says no and systemd is told, new connections are still
    /// accepted for `min_delay` (a second signal ends that at once).
    pub(crate) async fn first(&self, health: &Health, min_delay: std::time::Duration) {
        let mut signals = self.signals.lock().await;
        let stop = tokio::select! {
            s = signals.recv() => s,
            () = health.quit.notified() => {
                tracing::warn!("/quitquitquit: shutting down");
                Stop::Terminate
            }
        };
        if let Ok(mut why) = self.why.lock() {
            *why = Some(stop);
        }
        health.draining();
        super::notify::notify("STOPPING=1");
        tracing::warn!("{}: shutting down", stop.name());
        if !min_delay.is_zero() {
            tracing::warn!(
                "still accepting for {} (--min-sigterm-delay); readiness says no",
                humantime::format_duration(min_delay)
            );
            tokio::select! {
                () = tokio::time::sleep(min_delay) => {}
                _ = signals.recv() => {
                    self.hurried.store(true, std::sync::atomic::Ordering::SeqCst);
                }
            }
        }
    }

    /// Completes on a second signal (or at once if one came already).
    pub(crate) async fn second(&self) {
        if self.hurried.load(std::sync::atomic::Ordering::SeqCst) {
            return;
        }
        let second = self.signals.lock().await.recv().await;
        tracing::warn!("{}: closing every connection now", second.name());
    }
}
