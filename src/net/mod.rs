//! Networking under every connection: the connection error and its
//! stages (DNS, TCP, timeouts, a peer that went away), resolving and
//! dialing the dial address with each stage timed, bounding a stage in
//! time, classifying I/O failures, and the TLS handshake with rdsconn's
//! verifier once a protocol has agreed to TLS.

mod ssm;
pub(crate) mod tunnel;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use crate::error::{Categorized, Category};
use crate::target::{EngineKind, Target};
use crate::tls::{CertSummary, PeerChain, TlsFailure, TlsPolicy};

/// Appended to a MySQL access denial after the server asked for the
/// password in clear text (RDS IAM users, PAM): the IAM hint keys on it.
pub(crate) const CLEARTEXT_ASKED: &str = " (the server asked for a cleartext password)";

/// Why connecting failed, by stage.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConnectError {
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
    #[error("timed out after {} during {stage}", crate::text::seconds(*.after))]
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
    /// The port speaks the other engine's protocol (`speaks`).
    #[error("this port speaks {}, not {}", .speaks.protocol(), .speaks.other().protocol())]
    WrongProtocol { speaks: EngineKind },
    /// The tunnel (`--via ssh://`, `socks5://`) failed: `layer` names it,
    /// `message` is its own (ssh's last line on stderr).
    #[error("{layer}: {}", crate::text::Untrusted(.message))]
    Tunnel {
        layer: String,
        message: String,
        hint: Option<String>,
    },
}

impl From<crate::secret::RandomFailed> for ConnectError {
    fn from(e: crate::secret::RandomFailed) -> Self {
        Self::Server(e.to_string())
    }
}

impl Categorized for ConnectError {
    fn category(&self) -> Category {
        match self {
            Self::Dns { .. }
            | Self::Tcp { .. }
            | Self::Timeout { .. }
            | Self::Network { .. }
            | Self::Tunnel { .. } => Category::Network,
            Self::Tls(_) => Category::Tls,
            Self::Auth { .. } | Self::AuthMethod { .. } | Self::Refused(_) => Category::Auth,
            Self::Server(_) | Self::MysqlError { .. } => Category::Runtime,
            Self::WrongProtocol { .. } => Category::Usage,
        }
    }

    fn hint(&self) -> Option<String> {
        match self {
            Self::Tls(t) => t.hint(),
            Self::WrongProtocol { speaks } => Some(format!(
                "use `rdsconn {}` for it (or check --port / --via)",
                speaks.name()
            )),
            Self::Auth { iam: true, .. } => Some(
                "for IAM: IAM database authentication enabled on the instance; PostgreSQL `GRANT rds_iam TO user`, \
                 MySQL `CREATE USER … IDENTIFIED WITH AWSAuthenticationPlugin AS 'RDS'`; an IAM policy allowing \
                 rds-db:connect on arn:aws:rds-db:REGION:ACCOUNT:dbuser:RESOURCE_ID/USER; the token signed for \
                 this endpoint name, port and region (see `rdsconn token --output json`)"
                    .into(),
            ),
            // The server wanted a cleartext password (PAM): as RDS does for
            // IAM users.
            Self::Auth {
                iam: false,
                message,
            } if message.contains("PAM authentication failed")
                || message.ends_with(CLEARTEXT_ASKED) =>
            {
                Some("this user may be an IAM user: add --iam (or check the password)".into())
            }
            Self::Auth { iam: false, .. } => Some("check the user name and password".into()),
            // An AWS endpoint name that does not resolve here: a private
            // subnet's endpoint resolves only inside its VPC.
            Self::Dns { host, .. }
                if crate::target::Host::parse(host)
                    .and_then(|h| h.endpoint())
                    .is_ok_and(|e| e.class != crate::target::EndpointClass::Other) =>
            {
                Some(
                    "endpoints in private subnets resolve only inside their VPC: connect through a tunnel, \
                     --via ssh://BASTION (or socks5h://PROXY, or HOST:PORT of your own forward), keeping \
                     this name as --host"
                        .into(),
                )
            }
            Self::AuthMethod { hint, .. } | Self::Tunnel { hint, .. } => hint.clone(),
            Self::Timeout { .. } => Some("raise --connect-timeout, or check security groups / the tunnel".into()),
            _ => None,
        }
    }
}

pub(crate) fn ms(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1000.0
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
    pub(crate) fn paused(&self) -> (Duration, bool) {
        let p = lock(&self.paused);
        (p.0, p.1.is_some())
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

/// `first`, doubled `step` times, at most `cap`: the back-off of retries.
pub(crate) fn doubling(first: Duration, step: u32, cap: Duration) -> Duration {
    first.saturating_mul(1 << step.min(16)).min(cap)
}

/// Resolves the target's dial address (`--via`, else the endpoint).
pub(crate) async fn resolve_dial(target: &Target) -> Result<Vec<SocketAddr>, ConnectError> {
    let (host, port) = target.dial();
    resolve(&host, port).await
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

/// A connection on the dial path: TCP, or a tunnel's private unix socket
/// (`--via ssh://…`). The endpoint's TLS runs inside either.
#[derive(Debug)]
pub(crate) enum Stream {
    Tcp(TcpStream),
    Unix(tokio::net::UnixStream),
}

impl From<TcpStream> for Stream {
    fn from(s: TcpStream) -> Self {
        Self::Tcp(s)
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.get_mut() {
            Self::Tcp(s) => std::pin::Pin::new(s).poll_read(cx, buf),
            Self::Unix(s) => std::pin::Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Self::Tcp(s) => std::pin::Pin::new(s).poll_write(cx, buf),
            Self::Unix(s) => std::pin::Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.get_mut() {
            Self::Tcp(s) => std::pin::Pin::new(s).poll_flush(cx),
            Self::Unix(s) => std::pin::Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.get_mut() {
            Self::Tcp(s) => std::pin::Pin::new(s).poll_shutdown(cx),
            Self::Unix(s) => std::pin::Pin::new(s).poll_shutdown(cx),
        }
    }
}

/// The first two stages of every connect, timed.
pub(crate) struct Dialed {
    pub stream: Stream,
    /// When the connect began (DNS).
    pub start: Instant,
    pub dns_ms: f64,
    pub connect_ms: f64,
}

/// Resolves the dial address and connects to the first address that
/// accepts, naming each stage for the timeout.
pub(crate) async fn dial(target: &Target, stage: &Stage) -> Result<Dialed, ConnectError> {
    let start = Instant::now();
    if target.tunnel().is_some() {
        // The tunnel resolves and connects at its far end.
        stage.set("tunnel");
        // Boxed: a tunnel's set-up (SSM's calls) is a large future.
        let stream = Box::pin(tunnel::connect(target)).await?;
        return Ok(Dialed {
            stream,
            start,
            dns_ms: 0.0,
            connect_ms: ms(start),
        });
    }
    let addrs = resolve_dial(target).await?;
    let dns_ms = ms(start);
    stage.set("TCP connect");
    let t = Instant::now();
    let stream = Stream::Tcp(tcp_connect(&addrs).await?);
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

/// What a verified TLS session negotiated and presented.
#[derive(Clone, Debug, Default)]
pub(crate) struct TlsSummary {
    pub leaf: Option<CertSummary>,
    /// e.g. `TLSv1.3`.
    pub protocol: Option<String>,
    pub cipher: Option<String>,
}

impl TlsSummary {
    pub(crate) fn of(stream: &TlsStream<Stream>, peer: &PeerChain) -> Self {
        let (_, session) = stream.get_ref();
        Self {
            leaf: peer.get().first().and_then(|c| CertSummary::from_der(c)),
            protocol: session
                .protocol_version()
                .and_then(|v| v.as_str())
                .map(|v| v.replace("TLSv1_", "TLSv1.")),
            cipher: session
                .negotiated_cipher_suite()
                .and_then(|c| c.suite().as_str())
                .map(str::to_string),
        }
    }
}

/// The TLS handshake with rdsconn's verifier, once the engine's protocol
/// has agreed to TLS.
pub(crate) async fn tls_handshake(
    stream: Stream,
    server_name: &str,
    tls: &TlsPolicy,
    peer: &Arc<PeerChain>,
) -> Result<(TlsStream<Stream>, TlsSummary), ConnectError> {
    let config = tls
        .client_config(Arc::clone(peer))
        .map_err(|e| ConnectError::Tls(TlsFailure::Other(e.to_string())))?;
    let name = ServerName::try_from(server_name.to_string()).map_err(|_| {
        ConnectError::Tls(TlsFailure::Other(format!(
            "{server_name:?} is not a valid TLS server name"
        )))
    })?;
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    match connector.connect(name, stream).await {
        Ok(tls_stream) => {
            let summary = TlsSummary::of(&tls_stream, peer);
            Ok((tls_stream, summary))
        }
        Err(e) => Err(match find_rustls(&e) {
            Some(r) => ConnectError::Tls(TlsFailure::from_rustls(
                r,
                server_name,
                &peer.get(),
                tls.roots.name,
            )),
            None => ConnectError::Tls(TlsFailure::Other(e.to_string())),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_people_write_them() {
        assert_eq!(crate::text::seconds(Duration::from_secs(3)), "3s");
        assert_eq!(
            crate::text::seconds(Duration::from_secs_f64(2.999_538_583_999_999_7)),
            "3.0s"
        );
        assert_eq!(crate::text::seconds(Duration::from_millis(2500)), "2.5s");
        assert_eq!(
            ConnectError::Timeout {
                stage: "TCP connect",
                after: Duration::from_secs_f64(2.999_538_583_999_999_7),
            }
            .to_string(),
            "timed out after 3.0s during TCP connect"
        );
    }
}
