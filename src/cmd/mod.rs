//! One module per subcommand: parse arguments, call the library modules,
//! hand the results to `output`.

pub(crate) mod audit;
pub(crate) mod ca;
pub(crate) mod check;
pub(crate) mod child;
pub(crate) mod completions;
pub(crate) mod connect;
pub(crate) mod doctor;
pub(crate) mod ls;
pub(crate) mod man;
pub(crate) mod policy;
pub(crate) mod proxy;
pub(crate) mod targets;
pub(crate) mod token;
pub(crate) mod user;
pub(crate) mod version;
