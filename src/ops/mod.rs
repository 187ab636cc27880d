//! The proxy's operations surface, for running it as a sidecar: health
//! (`/startup`, `/liveness`, `/readiness`, `/upstream`) on an HTTP
//! listener, `POST /quitquitquit` on a localhost admin port, and systemd's
//! notify socket. It knows no engine: the proxy reports into [`Health`].
//! Readiness never dials the database.

pub(crate) mod http;
pub(crate) mod metrics;
pub(crate) mod notify;

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use tokio::sync::{Notify, watch};

/// What the health endpoints report.
#[derive(Debug)]
pub(crate) struct Health {
    /// Every listener accepts.
    started: AtomicBool,
    /// A stop was asked for: readiness says no from then on.
    draining: AtomicBool,
    /// Open client connections, per proxy (target).
    open: Mutex<Vec<watch::Receiver<usize>>>,
    /// `--max-connections`, per proxy.
    max: Mutex<Vec<Option<usize>>>,
    /// The last background upstream login and when it ended.
    upstream: Mutex<Option<(Result<(), String>, Instant)>>,
    /// `POST /quitquitquit` asked for a stop.
    pub quit: std::sync::Arc<Notify>,
}

impl Default for Health {
    fn default() -> Self {
        Self {
            started: AtomicBool::new(false),
            draining: AtomicBool::new(false),
            open: Mutex::default(),
            max: Mutex::default(),
            upstream: Mutex::new(None),
            quit: std::sync::Arc::new(Notify::new()),
        }
    }
}

impl Health {
    /// A proxy whose open connections count toward readiness.
    pub(crate) fn watch(&self, open: watch::Receiver<usize>, max: Option<usize>) {
        if let (Ok(mut o), Ok(mut m)) = (self.open.lock(), self.max.lock()) {
            o.push(open);
            m.push(max);
        }
    }

    pub(crate) fn started(&self) {
        self.started.store(true, Ordering::SeqCst);
    }

    pub(crate) fn draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    pub(crate) fn upstream_checked(&self, result: Result<(), String>) {
        if let Ok(mut u) = self.upstream.lock() {
            *u = Some((result, Instant::now()));
        }
    }

    /// `/startup`: 200 once every listener accepts.
    fn startup(&self) -> (u16, String) {
        if self.started.load(Ordering::SeqCst) {
            (200, "ok: every listener accepts\n".into())
        } else {
            (
                503,
                "starting: the listeners are not accepting yet\n".into(),
            )
        }
    }

    /// `/readiness`: 200 while new clients can be served: started, not
    /// draining, below every `--max-connections`. No database is dialed.
    fn readiness(&self) -> (u16, String) {
        if !self.started.load(Ordering::SeqCst) {
            return (
                503,
                "starting: the listeners are not accepting yet\n".into(),
            );
        }
        if self.draining.load(Ordering::SeqCst) {
            return (
                503,
                "draining: shutting down, new clients go elsewhere\n".into(),
            );
        }
        let full = match (self.open.lock(), self.max.lock()) {
            (Ok(open), Ok(max)) => open.iter().zip(max.iter()).find_map(|(o, m)| {
                let n = *o.borrow();
                m.filter(|m| n >= *m).map(|m| (n, m))
            }),
            _ => None,
        };
        match full {
            Some((n, m)) => (
                503,
                format!("full: {n} connections open, --max-connections {m}\n"),
            ),
            None => (200, "ok\n".into()),
        }
    }

    /// `/upstream`: the last background login's result and age.
    fn upstream(&self) -> (u16, String) {
        let last = self.upstream.lock().ok().and_then(|u| u.clone());
        match last {
            None => (
                503,
                "no upstream login checked yet (--upstream-check-interval)\n".into(),
            ),
            Some((Ok(()), at)) => (
                200,
                format!(
                    "ok: upstream login {} ago\n",
                    crate::text::seconds(at.elapsed())
                ),
            ),
            Some((Err(e), at)) => (
                503,
                format!(
                    "failed {} ago: {}\n",
                    crate::text::seconds(at.elapsed()),
                    crate::text::escape(&e)
                ),
            ),
        }
    }
}
