//! SIGINT and SIGTERM for the commands that end early on them (`check`
//! prints a partial report, `proxy` drains): installed once, before any
//! work, so that no signal falls between two waits.
//!
//! And a last resort for runs that hold something a default death would
//! leave behind (a tunnel's ssh): [`last_resort`] ends the run as the
//! signal would have (exit 128+N), after its clean-up, as long as no
//! command has taken that signal over ([`taken_over`]).

use std::sync::Once;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

pub(crate) use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use tokio::signal::unix::{Signal, SignalKind, signal};

use crate::BoxFuture;
use crate::error::{Category, Error, Result};

/// The signals the last resort stands in for: SIGINT, SIGTERM, SIGHUP.
const WATCHED: [(i32, &str); 3] = [(SIGINT, "SIGINT"), (SIGTERM, "SIGTERM"), (SIGHUP, "SIGHUP")];

/// Which of [`WATCHED`] a command has taken over for the rest of the run.
static TAKEN: [AtomicBool; 3] = [const { AtomicBool::new(false) }; 3];

/// From now on until the run ends, `signals` (of SIGINT, SIGTERM, SIGHUP)
/// are the command's to handle (its own handler, a child they are
/// forwarded to): the last resort leaves them alone. For the rest of the
/// run, not only while the handler lives: a signal the handler took must
/// not also end the run while the command cleans up after it.
pub(crate) fn taken_over(signals: &[i32]) {
    for (i, (n, _)) in WATCHED.iter().enumerate() {
        if signals.contains(n) {
            TAKEN[i].store(true, Ordering::SeqCst);
        }
    }
}

/// The exit code of the signal the last resort is ending the run for
/// (0: none).
static STOPPED: AtomicI32 = AtomicI32::new(0);

/// When the last resort is ending the run: the exit code for it (128+N),
/// whatever the command itself returns now.
pub(crate) fn stopped() -> Option<u8> {
    u8::try_from(STOPPED.load(Ordering::SeqCst))
        .ok()
        .filter(|c| *c != 0)
}

/// Installs (once per run) the last resort: SIGINT, SIGTERM or SIGHUP
/// that no command has [`taken_over`] runs `cleanup`, then ends the
/// process with 128+N, as the default action would have ended it (minus
/// what it would have left behind). Needs a tokio runtime.
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
                    if TAKEN[i].load(Ordering::SeqCst) {
                        continue;
                    }
                    // First, so that a command the clean-up breaks ends
                    // with this code too (see `stopped`), not its error.
                    STOPPED.store(128 + n, Ordering::SeqCst);
                    eprintln!("rdsconn: stopped by {name}");
                    cleanup().await;
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
}

impl StopSignals {
    pub(crate) fn install() -> Result<Self> {
        let failed = |e| Error::new(Category::Runtime, e).context("installing signal handlers");
        let installed = Self {
            int: signal(SignalKind::interrupt()).map_err(failed)?,
            term: signal(SignalKind::terminate()).map_err(failed)?,
        };
        taken_over(&[SIGINT, SIGTERM]);
        Ok(installed)
    }

    /// The first signal to come.
    pub(crate) async fn recv(&mut self) -> Stop {
        tokio::select! {
            _ = self.int.recv() => Stop::Interrupt,
            _ = self.term.recv() => Stop::Terminate,
        }
    }
}
