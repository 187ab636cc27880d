//! The one database trait: connect over verified TLS and authenticate,
//! then run SQL, describe the session, close. `mysql` (`mysql_async`
//! behind rdsconn's own login, see [`crate::wire::mysql`]) and `postgres`
//! (tokio-postgres + tokio-postgres-rustls) implement it; [`for_kind`]
//! picks one. Handing a connection to a native client is a separate seam,
//! [`crate::native::Client`].

mod column;
pub(crate) mod mysql;
pub(crate) mod postgres;
mod statements;

pub(crate) use column::{Column, Kind};

use std::future::Future;
use std::time::Duration;

use serde::Serialize;

use crate::BoxFuture;
use crate::error::{Categorized, Category};
use crate::net::{ConnectError, Stage};
use crate::secret::{Auth, Secret};
use crate::target::{EngineKind, Target};
use crate::tls::{CertSummary, TlsInfo, TlsMode, TlsPolicy};

/// Connect timings per stage, in milliseconds.
// The `_ms` suffixes are the JSON field names (`--info --output json`).
#[allow(clippy::struct_field_names)]
#[derive(Clone, Debug, Default, Serialize)]
pub(crate) struct Timings {
    pub dns_ms: f64,
    /// TCP connect.
    pub connect_ms: f64,
    /// TLS handshake and authentication.
    pub tls_auth_ms: Option<f64>,
    pub total_ms: f64,
}

/// What `--info` prints about a session.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct SessionInfo {
    pub engine: EngineKind,
    pub endpoint: String,
    pub dial_address: String,
    pub server_version: String,
    pub user: String,
    pub auth: &'static str,
    /// The client authentication plugin the server asked for (MySQL).
    pub auth_plugin: Option<String>,
    pub tls: TlsInfo,
    pub timings: Timings,
}

impl SessionInfo {
    /// What is known right after connecting; the server version, protocol
    /// and cipher are filled in by [`Session::describe`].
    pub(crate) fn connected(
        engine: EngineKind,
        target: &Target,
        auth: &Auth,
        mode: TlsMode,
        certificate: Option<CertSummary>,
        timings: Timings,
    ) -> Self {
        Self {
            engine,
            endpoint: target.endpoint(),
            dial_address: target.dial_address(),
            server_version: String::new(),
            user: target.user.clone(),
            auth: auth.describe(),
            auth_plugin: None,
            tls: TlsInfo {
                mode: Some(mode),
                protocol: None,
                cipher: None,
                certificate,
            },
            timings,
        }
    }
}

/// One statement's result: columns and rows (text, `None` for NULL), or
/// the number of affected rows.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct ResultSet {
    pub columns: Vec<Column>,
    pub rows: Vec<Vec<Option<String>>>,
    pub affected: Option<u64>,
}

/// A statement failed on the server, or the connection under it did.
#[derive(Debug)]
pub(crate) struct QueryError {
    pub message: String,
    /// SQLSTATE (PostgreSQL) or `ERROR n (SQLSTATE)` (MySQL); `Lost` when
    /// the connection was reset or closed under the statement.
    pub code: QueryCode,
    /// Results of the statements before the failing one, which the native
    /// client would have printed (mysql does; psql -c does not).
    pub completed: Vec<ResultSet>,
}

/// Where a statement's failure came from.
#[derive(Debug)]
pub(crate) enum QueryCode {
    /// The server's own error code.
    Server(String),
    /// The driver gave up on the server's answer (e.g. out of sync).
    Driver,
    /// The connection was reset or closed during the statement: a network
    /// failure (exit 4), e.g. a `--via` tunnel that ended.
    Lost,
}

impl std::fmt::Display for QueryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.code {
            QueryCode::Server(code) => write!(f, "{} ({code})", self.message),
            QueryCode::Driver => write!(f, "{}", self.message),
            QueryCode::Lost => write!(
                f,
                "the connection to the server was lost during the statement: {}",
                self.message
            ),
        }
    }
}

impl std::error::Error for QueryError {}

impl Categorized for QueryError {
    fn category(&self) -> Category {
        match self.code {
            QueryCode::Lost => Category::Network,
            QueryCode::Server(_) | QueryCode::Driver => Category::Runtime,
        }
    }
}

/// Runs `sql` on `session`; with `typed` (JSON output), with the column
/// types the results lack.
pub(crate) async fn run(
    session: &mut dyn Session,
    sql: &str,
    typed: bool,
) -> Result<Vec<ResultSet>, QueryError> {
    let mut sets = session.execute(sql).await?;
    if typed {
        session.describe_types(sql, &mut sets).await;
    }
    Ok(sets)
}

/// A database engine.
pub(crate) trait Engine: Send + Sync {
    /// Connects over verified TLS and authenticates, within
    /// `target.connect_timeout`.
    fn connect<'a>(
        &'a self,
        target: &'a Target,
        auth: &'a Auth,
        tls: &'a TlsPolicy,
    ) -> BoxFuture<'a, Result<Box<dyn Session>, ConnectError>>;
}

/// Logs in to `target` with `engine`. A network failure through an ssh
/// tunnel whose bastion would not open the channel to the endpoint is
/// ssh's own reason instead (the connection closed before the server's
/// first byte says nothing).
pub(crate) async fn connect(
    engine: &dyn Engine,
    target: &Target,
    auth: &Auth,
    tls: &TlsPolicy,
) -> Result<Box<dyn Session>, ConnectError> {
    match engine.connect(target, auth, tls).await {
        Err(e) if target.tunnel().is_some() => Err(crate::net::tunnel::explained(target, e).await),
        other => other,
    }
}

/// An authenticated session.
pub(crate) trait Session: Send {
    /// What was verified and negotiated; may ask the server (for `--info`,
    /// not on the plain connect path).
    fn describe(&mut self) -> BoxFuture<'_, SessionInfo>;

    /// Runs one or more `;`-separated statements, as the native client
    /// would, returning one result per statement.
    fn execute<'a>(&'a mut self, sql: &'a str)
    -> BoxFuture<'a, Result<Vec<ResultSet>, QueryError>>;

    /// Learns the column types of `sets` (the results of `sql`) where the
    /// results did not carry them: PostgreSQL's simple-query protocol does
    /// not, and describing costs a round trip per statement, so only JSON
    /// output asks. MySQL's results carry their types.
    fn describe_types<'a>(
        &'a mut self,
        _sql: &'a str,
        _sets: &'a mut [ResultSet],
    ) -> BoxFuture<'a, ()> {
        Box::pin(async {})
    }

    /// Ends the session politely.
    fn close(self: Box<Self>) -> BoxFuture<'static, ()>;

    /// What cancels the statement this session runs, from another
    /// connection (Ctrl-C during `-c` / `-e`).
    fn canceller(&self) -> Canceller;
}

/// Cancels a running statement on the server, over a second connection
/// verified like the first.
pub(crate) enum Canceller {
    /// PostgreSQL's `CancelRequest` (after `SSLRequest` and the TLS handshake).
    Postgres(tokio_postgres::CancelToken),
    /// `KILL QUERY <connection id>` on a second MySQL session.
    Mysql(u32),
}

impl Canceller {
    /// Asks the server to cancel; bounded by the target's connect timeout.
    pub(crate) async fn cancel(
        self,
        target: &Target,
        auth: &Auth,
        tls: &TlsPolicy,
    ) -> Result<(), ConnectError> {
        let limit = target.connect_timeout;
        let cancel = async {
            match self {
                Self::Postgres(token) => postgres::cancel(&token, target, tls).await,
                Self::Mysql(id) => {
                    let mut session = mysql::Mysql.connect(target, auth, tls).await?;
                    let killed = session.execute(&format!("KILL QUERY {id}")).await;
                    session.close().await;
                    killed
                        .map(drop)
                        .map_err(|e| ConnectError::Server(e.to_string()))
                }
            }
        };
        tokio::time::timeout(limit, cancel)
            .await
            .unwrap_or(Err(ConnectError::Timeout {
                stage: "cancelling the statement",
                after: limit,
            }))
    }
}

/// The engine for a kind.
pub(crate) fn for_kind(kind: EngineKind) -> &'static dyn Engine {
    match kind {
        EngineKind::Mysql => &mysql::Mysql,
        EngineKind::Postgres => &postgres::Postgres,
    }
}

/// Runs a connect future within `limit` (plus any time paused for the
/// user); a timeout names the stage it was in.
pub(crate) async fn bounded<S: Session + 'static>(
    limit: Duration,
    stage: &Stage,
    connect: impl Future<Output = Result<S, ConnectError>>,
) -> Result<Box<dyn Session>, ConnectError> {
    let start = tokio::time::Instant::now();
    let mut connect = std::pin::pin!(connect);
    loop {
        let (paused, pausing) = stage.paused();
        let deadline = if pausing {
            tokio::time::Instant::now() + Duration::from_millis(200)
        } else {
            start + limit + paused
        };
        match tokio::time::timeout_at(deadline, &mut connect).await {
            Ok(r) => return r.map(|s| Box::new(s) as Box<dyn Session>),
            Err(_) if pausing || stage.paused() != (paused, pausing) => {}
            Err(_) => {
                return Err(ConnectError::Timeout {
                    stage: stage.get(),
                    after: limit,
                });
            }
        }
    }
}
