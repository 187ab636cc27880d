//! Protocol code rdsconn speaks itself, by protocol: MySQL's handshake,
//! login plugins, server side and relay (`mysql`), PostgreSQL's
//! `SSLRequest` (`postgres`; the proxy's PostgreSQL messages live with it).

pub(crate) mod mysql;
pub(crate) mod postgres;
