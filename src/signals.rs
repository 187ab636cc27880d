//! SIGINT and SIGTERM for the commands that end early on them (`check`
//! prints a partial report, `proxy` drains): installed once, before any
//! work, so that no signal falls between two waits.
//!
//! And a last resort for runs that hold something a default death would
//! leave behind (a tunnel's ssh): [`last_resort`] ends the run as the
//! signal would have (exit 128+N), after its clean-up, whenever nothing
//! else handles that signal at that moment ([`Handling`]).

use std::sync::Once;
use std::sync::atomic::{AtomicUsize, Ordering};

pub(crate) use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use tokio::signal::unix::{Signal, SignalKind, signal};

use crate::BoxFuture;
use crate::error::{Category, Error, Result};

/// The signals the last resort stands in for: SIGINT, SIGTERM, SIGHUP.
const WATCHED: [(i32, &str); 3] = [(SIGINT, "SIGINT"), (SIGTERM, "SIGTERM"), (SIGHUP, "SIGHUP")];

/// How many handlers take care of each of [`WATCHED`] right now.
static HANDLED: [AtomicUsize; 3] = [const { AtomicUsize::new(0) }; 3];

/// While alive, the signals it names are someone's to handle (a command's
/// own handler, a child they are forwarded to): the last resort leaves
/// them alone.
pub(crate) struct Handling {
    signals: &'static [i32],
}

impl Handling {
    /// `signals` (of SIGINT, SIGTERM, SIGHUP) are handled until the value
    /// is dropped.
    pub(crate) fn new(signals: &'static [i32]) -> Self {
        for (i, (n, _)) in WATCHED.iter().enumerate() {
            if signals.contains(n) {
                HANDLED[i].fetch_add(1, Ordering::SeqCst);
            }
        }
        Self { signals }
    }
}

impl Drop for Handling {
    fn drop(&mut self) {
        for (i, (n, _)) in WATCHED.iter().enumerate() {
            if self.signals.contains(n) {
                HANDLED[i].fetch_sub(1, Ordering::SeqCst);
            }
        }
    }
}

/// Installs (once per run) the last resort: SIGINT, SIGTERM or SIGHUP
/// that no [`Handling`] covers runs `cleanup`, then ends the process
/// with 128+N, as the default action would have ended it (minus what it
/// would have left behind). Needs a tokio runtime.
pub(crate) fn last_resort(cleanup: fn() -> BoxFuture<'static, ()>) {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let mut streams = Vec::new();
        for (i, (n, name)) in WATCHED.iter().enumerate() {
            match signal(SignalKind::from_raw(*n)) {
                Ok(s) => streams.push((i, *n, *name, s)),
                Err(e) => tracing::warn!("watching {name}: {e}"),
            }
        }
        for (i, n, name, mut stream) in streams {
            tokio::spawn(async move {
                while stream.recv().await.is_some() {
                    if HANDLED[i].load(Ordering::SeqCst) > 0 {
                        continue;
                    }
                    cleanup().await;
                    eprintln!("rdsconn: stopped by {name}");
                    std::process::exit(128 + n);
                }
            });
        }
    });
}

/// Which signal asked rdsconn to stop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Stop {
    Interrupt,
    Terminate,
}

impl Stop {
    pub(crate) const fn name(self) -> &'static str {
        match self {
            Self::Interrupt => "SIGINT",
            Self::Terminate => "SIGTERM",
        }
    }

    /// 128 + the signal's number, as shells report it.
    pub(crate) const fn exit_code(self) -> u8 {
        match self {
            Self::Interrupt => 130,
            Self::Terminate => 143,
        }
    }
}

/// The installed SIGINT and SIGTERM handlers.
pub(crate) struct StopSignals {
    int: Signal,
    term: Signal,
    _handling: Handling,
}

impl StopSignals {
    pub(crate) fn install() -> Result<Self> {
        let failed = |e| Error::new(Category::Runtime, e).context("installing signal handlers");
        Ok(Self {
            int: signal(SignalKind::interrupt()).map_err(failed)?,
            term: signal(SignalKind::terminate()).map_err(failed)?,
            _handling: Handling::new(&[SIGINT, SIGTERM]),
        })
    }

    /// The first signal to come.
    pub(crate) async fn recv(&mut self) -> Stop {
        tokio::select! {
            _ = self.int.recv() => Stop::Interrupt,
            _ = self.term.recv() => Stop::Terminate,
        }
    }
}
