//! The proxy's operations surface, for running it as a sidecar: health
//! (`/startup`, `/liveness`, `/readiness`, `/upstream`) on an HTTP
//! listener, `POST /quitquitquit` on a localhost admin port, and systemd's
//! notify socket. It knows no engine: the proxy reports into [`Health`].
//! Readiness never dials the database.

pub(crate) mod client;
pub(crate) mod drain;
pub(crate) mod http;
pub(crate) mod metrics;
pub(crate) mod notify;

use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use tokio::sync::{Notify, watch};

/// A background upstream login's result and when it ended.
type Checked = (Result<(), String>, Instant);

/// What the health endpoints report.
#[derive(Debug)]
pub(crate) struct Health {
    /// Every listener accepts.
    started: AtomicBool,
    /// A stop was asked for: readiness says no from then on.
    draining: AtomicBool,
    /// Each proxy's (target's) open client connections and its
    /// `--max-connections`.
    proxies: Mutex<Vec<(watch::Receiver<usize>, Option<usize>)>>,
    /// Each target's last background upstream login and when it ended.
    upstream: Mutex<std::collections::BTreeMap<String, Checked>>,
    /// `POST /quitquitquit` asked for a stop.
    pub quit: std::sync::Arc<Notify>,
}

impl Default for Health {
    fn default() -> Self {
        Self {
            started: AtomicBool::new(false),
            draining: AtomicBool::new(false),
            proxies: Mutex::default(),
            upstream: Mutex::default(),
            quit: std::sync::Arc::new(Notify::new()),
        }
    }
}

impl Health {
    /// A proxy whose open connections count toward readiness.
    pub(crate) fn watch(&self, open: watch::Receiver<usize>, max: Option<usize>) {
        if let Ok(mut p) = self.proxies.lock() {
            p.push((open, max));
        }
    }

    pub(crate) fn started(&self) {
        self.started.store(true, Ordering::SeqCst);
    }

    pub(crate) fn draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    pub(crate) fn upstream_checked(&self, target: &str, result: Result<(), String>) {
        if let Ok(mut u) = self.upstream.lock() {
            u.insert(target.to_string(), (result, Instant::now()));
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
            return self.startup();
        }
        if self.draining.load(Ordering::SeqCst) {
            return (
                503,
                "draining: shutting down, new clients go elsewhere\n".into(),
            );
        }
        let full = self.proxies.lock().ok().and_then(|p| {
            p.iter().find_map(|(open, max)| {
                let n = *open.borrow();
                max.filter(|m| n >= *m).map(|m| (n, m))
            })
        });
        match full {
            Some((n, m)) => (
                503,
                format!("full: {n} connections open, --max-connections {m}\n"),
            ),
            None => (200, "ok\n".into()),
        }
    }

    /// `/upstream`: each target's last background login and its age;
    /// 200 when every one succeeded.
    fn upstream(&self) -> (u16, String) {
        let checked: Vec<(String, Result<(), String>, Instant)> = self
            .upstream
            .lock()
            .map(|u| {
                u.iter()
                    .map(|(k, (r, t))| (k.clone(), r.clone(), *t))
                    .collect()
            })
            .unwrap_or_default();
        if checked.is_empty() {
            return (
                503,
                "no upstream login checked yet (--upstream-check-interval)\n".into(),
            );
        }
        let named = checked.len() > 1 || checked[0].0 != "default";
        let mut ok = true;
        let mut body = String::new();
        for (target, result, at) in checked {
            let ago = crate::text::seconds(at.elapsed());
            let prefix = if named {
                format!("{target}: ")
            } else {
                String::new()
            };
            match result {
                Ok(()) => {
                    let _ = writeln!(body, "{prefix}ok: upstream login {ago} ago");
                }
                Err(e) => {
                    ok = false;
                    let _ = writeln!(
                        body,
                        "{prefix}failed {ago} ago: {}",
                        crate::text::escape(&e)
                    );
                }
            }
        }
        (if ok { 200 } else { 503 }, body)
    }
}
