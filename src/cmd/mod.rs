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
pub mod proxy;
pub mod token;
