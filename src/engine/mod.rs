//! The one database trait: connect over verified TLS, run SQL, describe
//! the session, close. `mysql` (`mysql_async`) and `postgres`
//! (tokio-postgres + tokio-postgres-rustls) implement it. Command code
//! picks an engine once with [`for_kind`] and never matches on it again.

pub mod mysql;
pub mod postgres;
pub mod probe;

use std::ffi::OsString;
use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::error::{Categorized, Category, Error};
use crate::native::{ClientConn, EnvVar, Launch, NativeClient};
use crate::secret::{Auth, Secret};
use crate::target::{EngineKind, Host};
use crate::tls::{CertSummary, TlsFailure, TlsInfo, TlsMode, TlsPolicy};

/// A boxed future, so the traits stay object-safe.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Where to connect: the endpoint (signed for, verified against) and the
/// dial address (`--via`), which defaults to the endpoint.
#[derive(Clone, Debug)]
pub struct Target {
    pub host: Host,
    pub port: u16,
    /// `--via HOST:PORT`: where TCP actually goes.
    pub via: Option<(String, u16)>,
    pub user: String,
    pub database: Option<String>,
    /// Bound on DNS + TCP + TLS + authentication.
    pub connect_timeout: Duration,
}

impl Target {
    /// The address TCP goes to: `--via`, else the endpoint.
    pub fn dial(&self) -> (String, u16) {
        self.via
            .clone()
            .unwrap_or_else(|| (self.host.as_str().to_string(), self.port))
    }

    /// The endpoint as `host:port`.
    pub fn endpoint(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// The dial address as `host:port`.
    pub fn dial_address(&self) -> String {
        let (h, p) = self.dial();
        format!("{h}:{p}")
    }

    /// Resolves the dial address.
    pub(crate) async fn resolve_dial(&self) -> Result<Vec<SocketAddr>, ConnectError> {
        let (host, port) = self.dial();
        resolve(&host, port).await
    }

    /// `host:port`, plus ` via addr` when dialing elsewhere, for errors.
    pub fn describe(&self) -> String {
        match &self.via {
            Some(_) => format!("{} via {}", self.endpoint(), self.dial_address()),
            None => self.endpoint(),
        }
    }
}

/// Connect timings per stage, in milliseconds.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Timings {
    pub dns_ms: f64,
    /// TCP connect.
    pub connect_ms: f64,
    /// TLS handshake and authentication.
    pub tls_auth_ms: Option<f64>,
    pub total_ms: f64,
}

pub(crate) fn ms(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1000.0
}

/// What `--info` prints about a session.
#[derive(Clone, Debug, Serialize)]
pub struct SessionInfo {
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
pub struct ResultSet {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Option<String>>>,
    pub affected: Option<u64>,
}

/// Why connecting failed, by stage.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("resolving {host}")]
    Dns {
        host: String,
        #[source]
        source: std::io::Error,
    },
    #[error("connecting to {addr}")]
    Tcp {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    /// The connection was reset or closed under rdsconn.
    #[error("{what}")]
    Network {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("timed out after {}s during {stage}", .after.as_secs_f64())]
    Timeout {
        stage: &'static str,
        after: Duration,
    },
    #[error(transparent)]
    Tls(TlsFailure),
    #[error("the server rejected authentication: {message}")]
    Auth { message: String, iam: bool },
    /// The server asks for an authentication method rdsconn does not speak
    /// in-process; TLS was verified before it asked.
    #[error("{message}")]
    AuthMethod {
        message: String,
        hint: Option<String>,
        /// The native client speaks it, so a hand-off may go on.
        native_client_can: bool,
    },
    #[error("{0}")]
    Server(String),
    /// A MySQL server's own ERR packet during login that is not an access
    /// denial (unknown database, too many connections…): the proxy passes
    /// it on as it came.
    #[error("{message} (ERROR {code} ({}))", String::from_utf8_lossy(.state))]
    MysqlError {
        code: u16,
        state: [u8; 5],
        message: String,
    },
    /// rdsconn itself turned the login away (the proxy's `-u`).
    #[error("{0}")]
    Refused(String),
}

impl From<crate::secret::RandomFailed> for ConnectError {
    fn from(e: crate::secret::RandomFailed) -> Self {
        Self::Server(e.to_string())
    }
}

impl Categorized for ConnectError {
    fn category(&self) -> Category {
        match self {
            Self::Dns { .. } | Self::Tcp { .. } | Self::Timeout { .. } | Self::Network { .. } => {
                Category::Network
            }
            Self::Tls(_) => Category::Tls,
            Self::Auth { .. } | Self::AuthMethod { .. } | Self::Refused(_) => Category::Auth,
            Self::Server(_) | Self::MysqlError { .. } => Category::Runtime,
        }
    }

    fn hint(&self) -> Option<String> {
        match self {
            Self::Tls(t) => t.hint(),
            Self::Auth { iam: true, .. } => Some(
                "for IAM: IAM database authentication enabled on the instance; PostgreSQL `GRANT rds_iam TO user`, \
                 MySQL `CREATE USER … IDENTIFIED WITH AWSAuthenticationPlugin AS 'RDS'`; an IAM policy allowing \
                 rds-db:connect on arn:aws:rds-db:REGION:ACCOUNT:dbuser:RESOURCE_ID/USER; the token signed for \
                 this endpoint name, port and region (see `rdsconn token --output json`)"
                    .into(),
            ),
            Self::Auth { iam: false, .. } => Some("check the user name and password".into()),
            Self::AuthMethod { hint, .. } => hint.clone(),
            Self::Timeout { .. } => Some("raise --connect-timeout, or check security groups / the tunnel".into()),
            _ => None,
        }
    }
}

/// A statement failed on the server.
#[derive(Debug, thiserror::Error)]
#[error("{message} ({code})")]
pub struct QueryError {
    pub message: String,
    /// SQLSTATE (PostgreSQL) or `ERROR n (SQLSTATE)` (MySQL).
    pub code: String,
    /// Results of the statements before the failing one, which the native
    /// client would have printed (mysql does; psql -c does not).
    pub completed: Vec<ResultSet>,
}

impl Categorized for QueryError {
    fn category(&self) -> Category {
        Category::Runtime
    }
}

/// A database engine.
pub trait Engine: Send + Sync {
    fn kind(&self) -> EngineKind;

    /// Connects over verified TLS and authenticates, within
    /// `target.connect_timeout`.
    fn connect<'a>(
        &'a self,
        target: &'a Target,
        auth: &'a Auth,
        tls: &'a TlsPolicy,
    ) -> BoxFuture<'a, Result<Box<dyn Session>, ConnectError>>;

    /// Refuses, before any I/O, to hand a connection to a child process
    /// (native client, `env`, `exec`) that could not verify what rdsconn
    /// verifies.
    fn check_handoff(&self, target: &Target, mode: TlsMode) -> Result<(), Error>;

    /// The native client gets the session through rdsconn's proxy on a
    /// private unix socket instead of dialing itself (it could not verify
    /// the endpoint name through `--via`).
    fn handoff_through_proxy(&self, _target: &Target) -> bool {
        false
    }

    /// The variables `rdsconn env` prints and `rdsconn exec` sets, in the
    /// names the engine's clients read, `DATABASE_URL` last.
    fn child_env(&self, conn: &ClientConn<'_>) -> Vec<EnvVar>;

    /// The installed native client, or `given` (`--client`).
    fn find_client(&self, given: Option<&Path>) -> Result<NativeClient, Error>;

    /// The client's invocation for this connection; `extra` (the user's
    /// arguments after `--`) comes last. Secrets go into its environment
    /// or a 0600 file, never its arguments.
    fn launch(
        &self,
        client: NativeClient,
        conn: &ClientConn<'_>,
        extra: &[OsString],
    ) -> Result<Launch, Error>;
}

/// An authenticated session.
pub trait Session: Send {
    /// What was verified and negotiated; may ask the server (for `--info`,
    /// not on the plain connect path).
    fn describe(&mut self) -> BoxFuture<'_, SessionInfo>;

    /// Runs one or more `;`-separated statements, as the native client
    /// would, returning one result per statement.
    fn execute<'a>(&'a mut self, sql: &'a str)
    -> BoxFuture<'a, Result<Vec<ResultSet>, QueryError>>;

    /// Ends the session politely.
    fn close(self: Box<Self>) -> BoxFuture<'static, ()>;
}

/// The engine for a kind.
pub fn for_kind(kind: EngineKind) -> &'static dyn Engine {
    match kind {
        EngineKind::Mysql => &mysql::Mysql,
        EngineKind::Postgres => &postgres::Postgres,
    }
}

/// The connect stage in progress, for timeout messages, and the time spent
/// waiting for the user (a terminal prompt), which the timeout leaves out.
#[derive(Debug)]
pub(crate) struct Stage {
    name: std::sync::Mutex<&'static str>,
    paused: std::sync::Mutex<(Duration, Option<Instant>)>,
}

impl Default for Stage {
    fn default() -> Self {
        Self {
            name: std::sync::Mutex::new("DNS resolution"),
            paused: std::sync::Mutex::new((Duration::ZERO, None)),
        }
    }
}

/// Ends a pause of the connect timeout when dropped.
pub(crate) struct Paused<'a>(&'a Stage);

impl Drop for Paused<'_> {
    fn drop(&mut self) {
        let mut p = lock(&self.0.paused);
        if let Some(since) = p.1.take() {
            p.0 += since.elapsed();
        }
    }
}

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Stage {
    pub(crate) fn set(&self, stage: &'static str) {
        *lock(&self.name) = stage;
    }

    pub(crate) fn get(&self) -> &'static str {
        *lock(&self.name)
    }

    /// Stops the connect timeout until the guard is dropped.
    pub(crate) fn pause(&self) -> Paused<'_> {
        lock(&self.paused).1 = Some(Instant::now());
        Paused(self)
    }

    /// Time paused so far, and whether a pause is running.
    fn paused(&self) -> (Duration, bool) {
        let p = lock(&self.paused);
        (p.0, p.1.is_some())
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

/// Awaits `fut` within `limit`; a timeout is a network failure naming the stage.
pub(crate) async fn within<T>(
    limit: Duration,
    stage: &'static str,
    fut: impl Future<Output = Result<T, ConnectError>>,
) -> Result<T, ConnectError> {
    tokio::time::timeout(limit, fut)
        .await
        .unwrap_or(Err(ConnectError::Timeout {
            stage,
            after: limit,
        }))
}

/// Resolves the dial address (the first address that answers wins).
pub(crate) async fn resolve(host: &str, port: u16) -> Result<Vec<SocketAddr>, ConnectError> {
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
        .await
        .map_err(|source| ConnectError::Dns {
            host: host.to_string(),
            source,
        })?
        .collect();
    if addrs.is_empty() {
        return Err(ConnectError::Dns {
            host: host.to_string(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "no addresses"),
        });
    }
    Ok(addrs)
}

/// The first two stages of every connect, timed.
pub(crate) struct Dialed {
    pub stream: tokio::net::TcpStream,
    /// When the connect began (DNS).
    pub start: Instant,
    pub dns_ms: f64,
    pub connect_ms: f64,
}

/// Resolves the dial address and connects to the first address that
/// accepts, naming each stage for the timeout.
pub(crate) async fn dial(target: &Target, stage: &Stage) -> Result<Dialed, ConnectError> {
    let start = Instant::now();
    let addrs = target.resolve_dial().await?;
    let dns_ms = ms(start);
    stage.set("TCP connect");
    let t = Instant::now();
    let stream = tcp_connect(&addrs).await?;
    Ok(Dialed {
        stream,
        start,
        dns_ms,
        connect_ms: ms(t),
    })
}

/// TCP connect to the first address that accepts.
pub(crate) async fn tcp_connect(
    addrs: &[SocketAddr],
) -> Result<tokio::net::TcpStream, ConnectError> {
    let mut last = ConnectError::Tcp {
        addr: String::new(),
        source: std::io::Error::new(std::io::ErrorKind::NotFound, "no addresses"),
    };
    for addr in addrs {
        match tokio::net::TcpStream::connect(addr).await {
            Ok(s) => {
                let _ = s.set_nodelay(true);
                return Ok(s);
            }
            Err(source) => {
                last = ConnectError::Tcp {
                    addr: addr.to_string(),
                    source,
                };
            }
        }
    }
    Err(last)
}

/// An I/O failure while talking to the server, naming what was being done.
pub(crate) fn io_err(what: &'static str) -> impl Fn(std::io::Error) -> ConnectError {
    move |source| {
        if is_network_io(&source) {
            ConnectError::Network { what, source }
        } else {
            ConnectError::Server(format!("{what}: {source}"))
        }
    }
}

/// I/O failures that mean the path or the peer went away (a reset, a
/// connection closed early): network failures, retried by `check --wait`.
pub(crate) fn is_network_io(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::{
        BrokenPipe, ConnectionAborted, ConnectionRefused, ConnectionReset, HostUnreachable,
        NetworkDown, NetworkUnreachable, NotConnected, TimedOut, UnexpectedEof,
    };
    matches!(
        e.kind(),
        BrokenPipe
            | ConnectionAborted
            | ConnectionRefused
            | ConnectionReset
            | HostUnreachable
            | NetworkDown
            | NetworkUnreachable
            | NotConnected
            | TimedOut
            | UnexpectedEof
    )
}

/// Finds a rustls error in an error's source chain.
pub(crate) fn find_rustls<'a>(
    err: &'a (dyn std::error::Error + 'static),
) -> Option<&'a rustls::Error> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cur {
        if let Some(r) = e.downcast_ref::<rustls::Error>() {
            return Some(r);
        }
        if let Some(r) = e
            .downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::get_ref)
            .and_then(|i| i.downcast_ref::<rustls::Error>())
        {
            return Some(r);
        }
        cur = e.source();
    }
    None
}
