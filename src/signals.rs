//! SIGINT and SIGTERM for the commands that end early on them (`check`
//! prints a partial report, `proxy` drains): installed once, before any
//! work, so that no signal falls between two waits.

use tokio::signal::unix::{Signal, SignalKind, signal};

use crate::error::{Category, Error, Result};

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
        Ok(Self {
            int: signal(SignalKind::interrupt()).map_err(failed)?,
            term: signal(SignalKind::terminate()).map_err(failed)?,
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
