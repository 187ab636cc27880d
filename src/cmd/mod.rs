//! One module per subcommand: parse arguments, call the library modules,
//! hand the results to `output`.

pub mod ca;
pub mod check;
pub mod child;
pub mod completions;
pub mod connect;
pub mod doctor;
pub mod ls;
pub mod man;
pub mod token;

use crate::error::{Error, Result};

/// A subcommand that this build declares but does not implement yet.
pub fn pending(name: &str) -> Result<u8> {
    Err(Error::usage(format!(
        "`rdsconn {name}` is not implemented in this build yet"
    ))
    .with_hint("see `rdsconn --help` for the commands available now"))
}
