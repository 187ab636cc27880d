//! Integration tests: they drive the real `rdsconn` binary.

#[path = "../support/mod.rs"]
mod support;

mod action;
mod audit;
mod ca;
mod cancel;
mod check;
mod cli;
mod connect;
mod deploy;
mod directory;
mod drivers;
mod endpoints;
mod habits;
mod handoff;
mod hostile;
mod named;
mod policy;
mod pool;
mod poolmy;
mod proxy;
mod publicroots;
mod rds;
mod readme;
mod secrets;
mod sidecar;
mod token;
mod troubleshooting;
mod tunnel;
mod user;
