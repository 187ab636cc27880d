//! `rdsconn proxy`: a local listener for clients that cannot do IAM or
//! verify RDS certificates. Each client connection gets its own upstream
//! connection, over TLS verified as everywhere in rdsconn (the endpoint
//! name, also through `--via`), logged in with a token minted for the user
//! the client names (or the configured password). The client talks plain
//! protocol to a loopback port or a private unix socket and never sees the
//! token.
//!
//! After the login, bytes are relayed as they are: PostgreSQL both ways,
//! MySQL too except `COM_CHANGE_USER`, which rdsconn answers by logging in
//! again upstream (`engine::mysql::relay`).

mod handoff;
mod mypool;
mod mysql;
mod pgpool;
mod pins;
pub(crate) mod pool;
mod postgres;

pub(crate) use handoff::{serving, through_proxy};

use std::fmt::Write as _;
use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::watch;

use crate::BoxFuture;
use crate::error::{Error, Result};
use crate::net::ConnectError;
use crate::ops::metrics::{Refusal, metrics};
use crate::secret::{Auth, Secret};
use crate::target::Target;
use crate::target::{EngineKind, Host};
use crate::text::Untrusted;
use crate::tls::TlsPolicy;
use crate::wire::mysql::relay::{self, Traffic};
use pool::PoolMode;

/// Where the proxy listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Listen {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

impl Listen {
    /// `HOST:PORT` (an IP address or `localhost`; port 0 picks a free
    /// one), `PORT` (on 127.0.0.1), or `unix:PATH`.
    pub(crate) fn parse(raw: &str) -> Result<Self> {
        if let Some(path) = raw.strip_prefix("unix:") {
            if path.is_empty() {
                return Err(Error::usage("--listen unix:PATH needs a path"));
            }
            return Ok(Self::Unix(PathBuf::from(path)));
        }
        if let Ok(port) = raw.parse::<u16>() {
            return Ok(Self::Tcp(SocketAddr::new(Ipv4Addr::LOCALHOST.into(), port)));
        }
        let bad = || {
            Error::usage(format!(
                "invalid --listen {raw:?}: expected IP:PORT, localhost:PORT, PORT or unix:PATH"
            ))
        };
        if let Ok(addr) = raw.parse::<SocketAddr>() {
            return Ok(Self::Tcp(addr));
        }
        let (host, port) = raw.rsplit_once(':').ok_or_else(bad)?;
        let port: u16 = port.parse().map_err(|_| bad())?;
        if host.eq_ignore_ascii_case("localhost") {
            return Ok(Self::Tcp(SocketAddr::new(Ipv4Addr::LOCALHOST.into(), port)));
        }
        Err(bad())
    }

    /// Reachable from this machine only.
    pub(crate) fn is_local(&self) -> bool {
        match self {
            Self::Tcp(addr) => addr.ip().is_loopback(),
            Self::Unix(_) => true,
        }
    }
}

impl std::fmt::Display for Listen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Tcp(addr) => write!(f, "{addr}"),
            Self::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

/// What every upstream connection is made with.
pub(crate) struct Config {
    /// The `--config` target's name, in log lines and metrics.
    pub name: Option<String>,
    pub kind: EngineKind,
    pub host: Host,
    pub port: u16,
    pub via: Option<crate::target::Via>,
    pub connect_timeout: Duration,
    pub policy: TlsPolicy,
    pub secrets: Secrets,
    /// Clients must prove this password (PostgreSQL: cleartext password
    /// message; MySQL: `mysql_native_password`).
    pub local_password: Option<Secret>,
    /// Only this database user may connect.
    pub only_user: Option<String>,
    pub max_connections: Option<usize>,
    /// A client that has not completed its startup / handshake (and the
    /// local password) by then is closed, so that clients that never
    /// speak cannot hold connections or `--max-connections` slots.
    pub client_login_timeout: Duration,
    /// `--pool-mode` and its settings.
    pub pool: pool::Settings,
}

/// `--client-login-timeout`'s default.
pub(crate) const CLIENT_LOGIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Each client holds two descriptors (its socket and the upstream's): the
/// soft limit on open files (often 1024) is raised to the hard limit, as
/// servers do.
pub(crate) fn raise_file_limit() {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    if let Some(max) = limit.maximum
        && limit.current.is_some_and(|c| c < max)
    {
        let raised = rustix::process::Rlimit {
            current: Some(max),
            maximum: Some(max),
        };
        if let Err(e) = setrlimit(Resource::Nofile, raised) {
            tracing::debug!("raising the open-file limit to {max}: {e}");
        }
    }
}

/// Runs a client-side login step within the client's login deadline.
async fn client_step<T>(
    deadline: tokio::time::Instant,
    limit: Duration,
    step: impl Future<Output = Result<T, String>>,
) -> Result<T, String> {
    tokio::time::timeout_at(deadline, step)
        .await
        .unwrap_or_else(|_| {
            Err(format!(
                "no login within {} ({LOGIN_DEADLINE_FLAG}); closed",
                humantime::format_duration(limit)
            ))
        })
}

impl Config {
    /// The upstream target for one client's user and database.
    fn target(&self, user: &str, database: Option<&str>) -> Target {
        Target {
            host: self.host.clone(),
            port: self.port,
            via: self.via.clone(),
            user: user.to_string(),
            database: database.map(str::to_string),
            connect_timeout: self.connect_timeout,
        }
    }

    /// Why `user` may not connect, if it may not; the refusal is logged
    /// with the user the client asked for.
    fn refuse_user(&self, user: &str) -> Option<ConnectError> {
        let only = self.only_user.as_deref()?;
        (only != user).then(|| {
            tracing::warn!("refused database user {user:?}: this proxy serves {only:?} only (-u)");
            ConnectError::Refused(format!(
                "rdsconn proxy serves the database user {only:?} only, not {user:?}"
            ))
        })
    }
}

impl Config {
    /// One upstream login as `user`, closed at once: `--run-connection-test`
    /// and the background check behind `/upstream`.
    pub(crate) async fn login_once(&self, user: &str) -> Result<(), ConnectError> {
        // PostgreSQL wants a database: `postgres` is on every server (RDS
        // too), where a database named after the user may not be.
        let database = (self.kind == EngineKind::Postgres).then_some("postgres");
        let target = self.target(user, database);
        let auth = relay::Credentials::auth_for(self, user).await?;
        let engine = crate::engine::for_kind(self.kind);
        let session = crate::engine::connect(engine, &target, &auth, &self.policy).await?;
        session.close().await;
        Ok(())
    }
}

/// Logs in upstream as a serving proxy would, for `/upstream`.
pub(crate) struct UpstreamProbe(Arc<Shared>);

impl UpstreamProbe {
    /// One login as `user`; the error in one line.
    pub(crate) async fn login(&self, user: &str) -> Result<(), String> {
        self.0
            .config
            .login_once(user)
            .await
            .map_err(|e| crate::error::error_line(&e))
    }
}

/// Every upstream login — a client's first, a MySQL `COM_CHANGE_USER`, a
/// retry — asks here, so `-u` holds for every way a client names a user.
impl relay::Credentials for Config {
    fn auth_for<'a>(&'a self, user: &'a str) -> BoxFuture<'a, Result<Auth, ConnectError>> {
        Box::pin(async move {
            if let Some(refused) = self.refuse_user(user) {
                return Err(refused);
            }
            self.secrets.auth_for(user).await
        })
    }
}

/// What upstream logins use.
pub(crate) enum Secrets {
    /// One password, for whichever user a client names.
    Password(Secret),
    /// IAM tokens minted per user.
    Iam(Box<crate::iam::TokenCache>),
    /// A password from Secrets Manager, read again when it ages or the
    /// database refuses it.
    Secret(std::sync::Arc<crate::secrets::SecretCache>),
}

impl Secrets {
    /// IAM tokens for `target`'s endpoint, minted per user as needed,
    /// signed in `region` with `credentials` (refreshed through `profile`).
    pub(crate) fn iam(
        target: &Target,
        region: String,
        profile: Option<String>,
        credentials: aws_credential_types::Credentials,
    ) -> Self {
        Self::Iam(Box::new(crate::iam::TokenCache::new(
            target.host.clone(),
            target.port,
            region,
            profile,
            credentials,
        )))
    }

    /// For rdsconn's own proxy behind a hand-off or `exec`: more tokens
    /// like the one already `minted`, else `password`.
    pub(crate) fn minted_or(
        minted: Option<crate::iam::Minted>,
        password: Secret,
        target: &Target,
        profile: Option<String>,
    ) -> Self {
        match minted {
            Some(m) => Self::iam(target, m.region, profile, m.credentials),
            None => Self::Password(password),
        }
    }

    /// After the database refused a login that started at `tried_at`:
    /// whether a fresh password is there to try once more (a secret that
    /// was rotated since it was read).
    async fn renewed_after(&self, tried_at: Instant) -> bool {
        let Self::Secret(cache) = self else {
            return false;
        };
        cache.refresh(tried_at).await.unwrap_or_else(|e| {
            tracing::warn!("reading the secret again: {}", crate::error::error_line(&e));
            false
        })
    }
}

impl relay::Credentials for Secrets {
    fn auth_for<'a>(&'a self, user: &'a str) -> BoxFuture<'a, Result<Auth, ConnectError>> {
        Box::pin(async move {
            match self {
                Self::Password(p) => Ok(Auth::Password(p.clone())),
                Self::Iam(cache) => cache.token(user).await.map(Auth::IamToken),
                Self::Secret(cache) => cache
                    .password()
                    .await
                    .map(Auth::Password)
                    .map_err(|e| ConnectError::Server(crate::error::error_line(&e))),
            }
        })
    }
}

/// The client's stream, counting what is read from it (up) and written to
/// it (down), so that a relay that fails still reports its traffic.
pub(crate) struct Metered<'a, S> {
    inner: &'a mut S,
    traffic: Traffic,
}

impl<'a, S> Metered<'a, S> {
    fn new(inner: &'a mut S) -> Self {
        Self {
            inner,
            traffic: Traffic::default(),
        }
    }

    fn traffic(&self) -> Traffic {
        self.traffic
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Metered<'_, S> {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = std::pin::Pin::new(&mut *this.inner).poll_read(cx, buf);
        this.traffic.up += (buf.filled().len() - before) as u64;
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Metered<'_, S> {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        data: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let polled = std::pin::Pin::new(&mut *this.inner).poll_write(cx, data);
        if let std::task::Poll::Ready(Ok(n)) = polled {
            this.traffic.down += n as u64;
        }
        polled
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut *self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut *self.get_mut().inner).poll_shutdown(cx)
    }
}

/// A bound listener.
enum Bound {
    Tcp(TcpListener),
    Unix(UnixListener, PathBuf),
}

impl Bound {
    async fn bind(listen: &Listen) -> Result<Self> {
        match listen {
            Listen::Tcp(addr) => TcpListener::bind(addr)
                .await
                .map(Self::Tcp)
                .map_err(|e| Error::usage(format!("listening on {addr}: {e}"))),
            Listen::Unix(path) => bind_unix(path).map(|l| Self::Unix(l, path.clone())),
        }
    }

    fn address(&self) -> String {
        match self {
            Self::Tcp(l) => l
                .local_addr()
                .map_or_else(|_| "?".into(), |a| a.to_string()),
            Self::Unix(_, path) => format!("unix:{}", path.display()),
        }
    }
}

/// A unix socket (0600) in a directory only this user can enter (0700,
/// created when missing). A stale socket file nobody listens on is
/// replaced; one in use is an error.
fn bind_unix(path: &Path) -> Result<UnixListener> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(|e| Error::usage(format!("creating {}: {e}", dir.display())))?;
    }
    let meta = std::fs::metadata(&dir)
        .map_err(|e| Error::usage(format!("reading {}: {e}", dir.display())))?;
    let me = rustix::process::geteuid().as_raw();
    if meta.uid() != me || meta.mode() & 0o077 != 0 {
        return Err(Error::usage(format!(
            "{} must belong to you and be closed to others (mode 0700, it is {:o}) to hold the proxy's socket",
            dir.display(),
            meta.mode() & 0o7777
        ))
        .with_hint(format!(
            "chmod 700 {}, or use a new directory (rdsconn creates it)",
            dir.display()
        )));
    }
    if let Ok(existing) = std::fs::symlink_metadata(path) {
        use std::os::unix::fs::FileTypeExt;
        if !existing.file_type().is_socket() {
            return Err(Error::usage(format!(
                "{} exists and is not a socket",
                path.display()
            )));
        }
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(Error::usage(format!(
                "{} is in use by another process",
                path.display()
            )));
        }
        std::fs::remove_file(path)
            .map_err(|e| Error::usage(format!("removing the stale {}: {e}", path.display())))?;
    }
    let listener = UnixListener::bind(path)
        .map_err(|e| Error::usage(format!("listening on {}: {e}", path.display())))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| Error::usage(format!("chmod 600 {}: {e}", path.display())))?;
    Ok(listener)
}

/// State the connections share.
struct Shared {
    config: Config,
    mysql: mysql::State,
    /// The server connection pools (`--pool-mode` session or transaction).
    pg_pools: Option<pgpool::PgPools>,
    my_pools: Option<mypool::MyPools>,
    /// Connections being served.
    active: watch::Sender<usize>,
    /// Set when the shutdown grace ends: the connections still open close,
    /// each with its log line.
    cut: watch::Sender<bool>,
    next_id: AtomicU64,
}

/// Counts a connection while it lives.
struct Counted(Arc<Shared>);

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.active.send_modify(|n| *n = n.saturating_sub(1));
    }
}

/// A listening proxy.
pub(crate) struct Proxy {
    shared: Arc<Shared>,
    bound: Vec<Bound>,
}

/// How serving ended.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Drained {
    /// Connections still open when the grace period ended (closed then).
    pub cut: usize,
}

impl Proxy {
    /// Binds every listener (any failure is reported before serving).
    pub(crate) async fn bind(config: Config, listens: &[Listen]) -> Result<Self> {
        let mut bound = Vec::with_capacity(listens.len());
        for l in listens {
            bound.push(Bound::bind(l).await?);
        }
        let pooled = config.pool.mode != PoolMode::None;
        let name = crate::ops::metrics::target(config.name.as_deref());
        let pg_pools = (pooled && config.kind == EngineKind::Postgres).then(|| {
            pgpool::PgPools::new(Arc::new(pool::Pools::new(
                name,
                config.kind,
                config.pool.clone(),
            )))
        });
        let my_pools = (pooled && config.kind == EngineKind::Mysql).then(|| {
            mypool::MyPools::new(Arc::new(pool::Pools::new(
                name,
                config.kind,
                config.pool.clone(),
            )))
        });
        Ok(Self {
            shared: Arc::new(Shared {
                pg_pools,
                my_pools,
                config,
                mysql: mysql::State::default(),
                active: watch::channel(0).0,
                cut: watch::channel(false).0,
                next_id: AtomicU64::new(1),
            }),
            bound,
        })
    }

    /// The addresses listened on (`IP:PORT`, `unix:PATH`).
    pub(crate) fn addresses(&self) -> Vec<String> {
        self.bound.iter().map(Bound::address).collect()
    }

    /// A background upstream login for `/upstream`.
    pub(crate) fn upstream_probe(&self) -> UpstreamProbe {
        UpstreamProbe(Arc::clone(&self.shared))
    }

    /// The number of open client connections, as it changes.
    pub(crate) fn open_connections(&self) -> watch::Receiver<usize> {
        self.shared.active.subscribe()
    }

    /// The server connection pools, for `/pools`.
    pub(crate) fn pools(&self) -> Option<Arc<dyn pool::PoolList>> {
        if let Some(pg) = &self.shared.pg_pools {
            return Some(Arc::clone(&pg.pools) as Arc<dyn pool::PoolList>);
        }
        let my = self.shared.my_pools.as_ref()?;
        Some(Arc::clone(&my.pools) as Arc<dyn pool::PoolList>)
    }

    /// `--max-connections`.
    pub(crate) fn max_connections(&self) -> Option<usize> {
        self.shared.config.max_connections
    }

    /// Serves until `stop` completes, then stops accepting (unix socket
    /// files are removed), waits up to `grace` for open connections to
    /// end (or until `hurry` completes: a second signal), and closes the
    /// rest.
    pub(crate) async fn serve(
        self,
        stop: impl Future<Output = ()>,
        grace: Duration,
        hurry: impl Future<Output = ()>,
    ) -> Drained {
        let (stopping, stopped) = watch::channel(false);
        if self.shared.config.kind == EngineKind::Mysql {
            // MySQL clients are greeted before rdsconn dials for them:
            // read what the server says once, now.
            let shared = Arc::clone(&self.shared);
            tokio::spawn(async move { mysql::prime(&shared.config, &shared.mysql).await });
        }
        let _maintain = maintain(&self.shared);
        let mut accepting = tokio::task::JoinSet::new();
        for bound in self.bound {
            let shared = Arc::clone(&self.shared);
            let stopped = stopped.clone();
            accepting.spawn(accept_loop(bound, shared, stopped));
        }
        stop.await;
        let _ = stopping.send(true);
        while accepting.join_next().await.is_some() {}
        let mut active = self.shared.active.subscribe();
        let open = *active.borrow();
        if open > 0 {
            tracing::warn!(
                "stopped accepting; waiting up to {} for {open} open connection(s)",
                humantime::format_duration(grace)
            );
        }
        let drained = tokio::select! {
            done = tokio::time::timeout(grace, active.wait_for(|n| *n == 0)) => done.is_ok(),
            () = hurry => *self.shared.active.borrow() == 0,
        };
        let cut = if drained {
            0
        } else {
            *self.shared.active.borrow()
        };
        if cut > 0 {
            // Each closes and logs its line; a moment for that.
            let _ = self.shared.cut.send(true);
            let _ = tokio::time::timeout(CUT_LOGGED, active.wait_for(|n| *n == 0)).await;
        }
        Drained { cut }
    }
}

/// The pools' upkeep (idle and aged server connections closed,
/// `--min-pool-size` kept), until dropped.
fn maintain(shared: &Arc<Shared>) -> Option<AbortOnDrop> {
    if let Some(pg) = &shared.pg_pools {
        let pools = Arc::clone(&pg.pools);
        let shared = Arc::clone(shared);
        return Some(AbortOnDrop(tokio::spawn(pools.maintain(move |pool| {
            let shared = Arc::clone(&shared);
            async move { pgpool::open(&shared.config, &pool).await.map_err(drop) }
        }))));
    }
    let my = shared.my_pools.as_ref()?;
    let pools = Arc::clone(&my.pools);
    let shared = Arc::clone(shared);
    Some(AbortOnDrop(tokio::spawn(pools.maintain(move |pool| {
        let shared = Arc::clone(&shared);
        async move {
            // A pool exists once a client came: its handshake is known.
            let my = shared.my_pools.as_ref().ok_or(())?;
            let hello = my.hello(&pool.extra).ok_or(())?;
            mypool::open(&shared.config, &pool, &hello)
                .await
                .map_err(drop)
        }
    }))))
}

/// Stops a background task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn accept_loop(bound: Bound, shared: Arc<Shared>, mut stopped: watch::Receiver<bool>) {
    let mut failing = AcceptFailures::default();
    // The metrics' `listener` label.
    let listener: Arc<str> = bound.address().into();
    loop {
        tokio::select! {
            _ = stopped.changed() => break,
            accepted = accept(&bound) => match accepted {
                Ok(accepted) => {
                    failing.recovered();
                    match accepted {
                        Accepted::Tcp(stream, peer) => {
                            let _ = stream.set_nodelay(true);
                            let at = (peer.to_string(), Arc::clone(&listener));
                            tokio::spawn(handle(Arc::clone(&shared), stream, at));
                        }
                        Accepted::Unix(stream) => {
                            let at = ("unix socket".to_string(), Arc::clone(&listener));
                            tokio::spawn(handle(Arc::clone(&shared), stream, at));
                        }
                    }
                }
                Err(e) => {
                    // Out of file descriptors and the like: not fatal, but
                    // retried with back-off (the error repeats until a
                    // connection closes) and logged once per episode.
                    let pause = failing.failed(&bound, &e);
                    tokio::select! {
                        _ = stopped.changed() => break,
                        () = tokio::time::sleep(pause) => {}
                    }
                }
            },
        }
    }
    if let Bound::Unix(_, path) = &bound {
        let _ = std::fs::remove_file(path);
    }
}

/// Accept failures: the back-off before the next try (consecutive
/// failures), and at most one warning per [`ACCEPT_LOG_EVERY`] however
/// often accepting fails.
#[derive(Default)]
struct AcceptFailures {
    consecutive: u32,
    last_logged: Option<Instant>,
    unlogged: u64,
}

const ACCEPT_LOG_EVERY: Duration = Duration::from_secs(10);

impl AcceptFailures {
    /// 10 ms doubling to 1 s.
    fn failed(&mut self, bound: &Bound, e: &std::io::Error) -> Duration {
        if self
            .last_logged
            .is_none_or(|t| t.elapsed() >= ACCEPT_LOG_EVERY)
        {
            let hint = if matches!(e.raw_os_error(), Some(23 | 24)) {
                " (out of file descriptors: --max-connections bounds the connections held)"
            } else {
                ""
            };
            let more = if self.unlogged > 0 {
                format!("; {} more failures since the last warning", self.unlogged)
            } else {
                String::new()
            };
            tracing::warn!(
                "accepting on {}: {e}{hint}; retrying with back-off{more}",
                bound.address()
            );
            self.last_logged = Some(Instant::now());
            self.unlogged = 0;
        } else {
            self.unlogged += 1;
        }
        self.consecutive = self.consecutive.saturating_add(1);
        crate::net::doubling(
            Duration::from_millis(10),
            self.consecutive,
            Duration::from_secs(1),
        )
    }

    fn recovered(&mut self) {
        self.consecutive = 0;
    }
}

enum Accepted {
    Tcp(tokio::net::TcpStream, SocketAddr),
    Unix(tokio::net::UnixStream),
}

async fn accept(bound: &Bound) -> std::io::Result<Accepted> {
    match bound {
        Bound::Tcp(l) => l.accept().await.map(|(s, a)| Accepted::Tcp(s, a)),
        Bound::Unix(l, _) => l.accept().await.map(|(s, _)| Accepted::Unix(s)),
    }
}

/// Upstream stage timings, in milliseconds.
#[derive(Clone, Copy, Debug, Default)]
struct Stages {
    dns: f64,
    tcp: f64,
    tls_auth: f64,
}

/// What one connection did, for its log line.
#[derive(Debug, Default)]
struct Report {
    user: Option<String>,
    database: Option<String>,
    stages: Option<Stages>,
    traffic: Traffic,
    /// How it ended; `failed` when it never reached the relay or broke.
    ended: String,
    failed: bool,
    /// Turned away by the proxy itself.
    refusal: Option<Refusal>,
}

impl Report {
    fn fail(&mut self, why: impl std::fmt::Display) {
        self.failed = true;
        self.ended = why.to_string();
    }

    /// The proxy itself turned the client away.
    fn refused(&mut self, why: impl std::fmt::Display, refusal: Refusal) {
        self.fail(why);
        self.refusal = Some(refusal);
    }

    /// A client's login step failed ([`client_step`]): past its deadline,
    /// or with a wrong local password, it was refused.
    fn client_failed(&mut self, why: String) {
        let refusal = if why.contains(LOGIN_DEADLINE_FLAG) {
            Some(Refusal::LoginDeadline)
        } else if why.contains(LOCAL_PASSWORD_WRONG) {
            Some(Refusal::LocalPassword)
        } else {
            None
        };
        self.fail(why);
        self.refusal = refusal;
    }
}

/// Named in [`client_step`]'s timeout message.
const LOGIN_DEADLINE_FLAG: &str = "--client-login-timeout";

/// In both engines' messages for a wrong local password.
const LOCAL_PASSWORD_WRONG: &str = "local password";

async fn handle<S>(shared: Arc<Shared>, stream: S, (peer, listener): (String, Arc<str>))
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let kind = shared.config.kind;
    let name = crate::ops::metrics::target(shared.config.name.as_deref());
    if let Some(m) = metrics() {
        m.client_opened(name, kind, &listener);
    }
    let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
    let started = Instant::now();
    let mut open = 0;
    shared.active.send_modify(|n| {
        *n += 1;
        open = *n;
    });
    let _counted = Counted(Arc::clone(&shared));
    let mut report = Report::default();
    let mut cut = shared.cut.subscribe();
    let served = serve_one(&shared, stream, open, &mut report);
    let was_cut = tokio::select! {
        () = served => false,
        _ = cut.wait_for(|c| *c) => true,
    };
    if was_cut {
        report.fail("closed: still open when the shutdown grace period ended (--shutdown-grace)");
    }
    if let Some(m) = metrics() {
        m.client_closed(name, kind, &listener);
        m.relayed(name, kind, report.traffic.up, report.traffic.down);
        if let Some(r) = report.refusal {
            m.refused(name, kind, r);
        }
    }
    log_connection(shared.config.name.as_deref(), id, &peer, started, &report);
}

/// How long the connections cut at the end of the shutdown grace get to
/// close and log their lines.
const CUT_LOGGED: Duration = Duration::from_secs(2);

async fn serve_one<S>(shared: &Shared, stream: S, open: usize, report: &mut Report)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let config = &shared.config;
    match config.max_connections {
        Some(max) if open > max => {
            let why = format!("too many connections (rdsconn proxy --max-connections {max})");
            let refusal = async {
                match config.kind {
                    EngineKind::Postgres => postgres::refuse_early(stream, "53300", &why).await,
                    EngineKind::Mysql => mysql::refuse_early(stream, 1040, &why).await,
                }
            };
            let _ = tokio::time::timeout(config.client_login_timeout, refusal).await;
            report.refused(why, Refusal::MaxConnections);
        }
        _ => match config.kind {
            EngineKind::Postgres => {
                let pooled = shared.pg_pools.as_ref().map(|p| p as &dyn postgres::Pooled);
                postgres::serve(config, pooled, stream, report).await;
            }
            EngineKind::Mysql => {
                let my = shared.my_pools.as_ref();
                mysql::serve(config, &shared.mysql, my, stream, report).await;
            }
        },
    }
}

fn log_connection(target: Option<&str>, id: u64, peer: &str, started: Instant, report: &Report) {
    if crate::json_logs() {
        return log_connection_fields(target, id, peer, started, report);
    }
    // The names are the client's, the ending may quote the server: both
    // escaped, so that one connection is one log line.
    let mut line = target.map_or_else(String::new, |t| format!("{t}: "));
    let _ = write!(line, "connection {id} from {peer}");
    if let Some(user) = &report.user {
        let _ = write!(line, ": user {}", Untrusted(user));
        if let Some(db) = &report.database {
            let _ = write!(line, ", database {}", Untrusted(db));
        }
    }
    if let Some(s) = report.stages {
        let _ = write!(
            line,
            "; upstream dns {:.1} ms, tcp {:.1} ms, tls+auth {:.1} ms",
            s.dns, s.tcp, s.tls_auth
        );
    }
    let _ = write!(
        line,
        "; {} bytes up, {} bytes down in {:.3} s; {}",
        report.traffic.up,
        report.traffic.down,
        started.elapsed().as_secs_f64(),
        Untrusted(&report.ended)
    );
    if report.failed {
        tracing::warn!("{line}");
    } else {
        tracing::info!("{line}");
    }
}

/// [`log_connection`] as fields of one JSON log object; the names and
/// the ending are escaped as in text.
fn log_connection_fields(
    target: Option<&str>,
    id: u64,
    peer: &str,
    started: Instant,
    report: &Report,
) {
    let user = report.user.as_deref().map(|u| Untrusted(u).to_string());
    let database = report.database.as_deref().map(|d| Untrusted(d).to_string());
    let ended = Untrusted(&report.ended).to_string();
    let duration_ms = started.elapsed().as_secs_f64() * 1000.0;
    let (up, down) = (report.traffic.up, report.traffic.down);
    let upstream_ms = report.stages.map(|s| s.dns + s.tcp + s.tls_auth);
    macro_rules! event {
        ($level:ident, $message:literal) => {
            tracing::$level!(
                target = target,
                connection = id,
                client = peer,
                user,
                database,
                bytes_up = up,
                bytes_down = down,
                duration_ms,
                upstream_ms,
                cause = ended,
                $message
            )
        };
    }
    if report.failed {
        event!(warn, "connection failed");
    } else {
        event!(info, "connection closed");
    }
}

/// RDS throttles new IAM connections; such a refusal is retried, an
/// authentication failure never.
fn throttled(e: &dyn std::fmt::Display) -> bool {
    let text = e.to_string().to_ascii_lowercase();
    text.contains("throttl") || text.contains("rate exceeded")
}

/// The wait before retry `attempt` (1, 2, …) after throttling.
fn backoff(attempt: u32) -> Duration {
    crate::net::doubling(Duration::from_millis(100), attempt, Duration::from_secs(3))
}

/// A failed upstream login that the database refused (wrong password).
pub(crate) trait Refused {
    fn is_refused(&self) -> bool;
    /// The failure underneath, for the metrics.
    fn cause(&self) -> &ConnectError;
}

impl Refused for ConnectError {
    fn is_refused(&self) -> bool {
        matches!(self, Self::Auth { .. })
    }

    fn cause(&self) -> &ConnectError {
        self
    }
}

/// Runs `attempt` (one upstream connect and login, each bounded by the
/// connect timeout) again after throttling, with backoff, for as long as
/// another connect timeout allows; and once more after the database refused
/// a password from a secret that has changed since it was read.
async fn retrying<T, E, F, Fut>(config: &Config, mut attempt: F) -> Result<T, E>
where
    E: std::fmt::Display + From<ConnectError> + Refused,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let start = Instant::now();
    let result = retried(config, &mut attempt).await;
    if let Some(m) = metrics() {
        let name = crate::ops::metrics::target(config.name.as_deref());
        match &result {
            // The proxy's own refusal (-u) is no upstream login.
            Err(e) if matches!(e.cause(), ConnectError::Refused(_)) => {}
            Err(e) => m.upstream_login(name, config.kind, Err(e.cause()), start.elapsed()),
            Ok(_) => m.upstream_login(name, config.kind, Ok(()), start.elapsed()),
        }
    }
    result
}

async fn retried<T, E, F, Fut>(config: &Config, attempt: &mut F) -> Result<T, E>
where
    E: std::fmt::Display + From<ConnectError> + Refused,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let limit = config.connect_timeout;
    let start = Instant::now();
    let mut n = 0;
    let mut reread = false;
    loop {
        let tried_at = Instant::now();
        let result = tokio::time::timeout(limit, attempt())
            .await
            .unwrap_or_else(|_| {
                Err(E::from(ConnectError::Timeout {
                    stage: "upstream connect and login",
                    after: limit,
                }))
            });
        match result {
            Err(e) if throttled(&e) && start.elapsed() < limit => {
                n += 1;
                let wait = backoff(n);
                tracing::info!(
                    "upstream throttled ({}); retrying in {} ms",
                    Untrusted(&e.to_string()),
                    wait.as_millis()
                );
                tokio::time::sleep(wait).await;
            }
            Err(e) if e.is_refused() && !reread && config.secrets.renewed_after(tried_at).await => {
                reread = true;
                tracing::info!("the secret changed since it was read (rotated?); logging in again");
            }
            other => return other,
        }
    }
}

/// A hint for the start-up message: how a client connects.
pub(crate) fn connect_hint(kind: EngineKind, address: &str) -> String {
    match (kind, address.strip_prefix("unix:")) {
        (EngineKind::Postgres, Some(path)) => {
            let p = Path::new(path);
            let dir = p
                .parent()
                .map_or_else(|| ".".into(), |d| d.display().to_string());
            let port = p
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_prefix(".s.PGSQL."))
                .unwrap_or("(name the socket DIR/.s.PGSQL.PORT for psql)");
            format!("psql \"host={dir} port={port} user=USER dbname=DB\"")
        }
        (EngineKind::Postgres, None) => {
            let (host, port) = split_address(address);
            format!("psql \"host={host} port={port} user=USER dbname=DB sslmode=disable\"")
        }
        (EngineKind::Mysql, Some(path)) => format!("mysql --socket={path} -u USER"),
        (EngineKind::Mysql, None) => {
            let (host, port) = split_address(address);
            format!("mysql --protocol=TCP -h {host} -P {port} -u USER --skip-ssl")
        }
    }
}

fn split_address(address: &str) -> (String, String) {
    match address.parse::<SocketAddr>() {
        Ok(a) => (a.ip().to_string(), a.port().to_string()),
        Err(_) => (address.to_string(), String::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_forms() {
        assert_eq!(
            Listen::parse("127.0.0.1:6432").unwrap(),
            Listen::Tcp("127.0.0.1:6432".parse().unwrap())
        );
        assert_eq!(
            Listen::parse("6432").unwrap(),
            Listen::Tcp("127.0.0.1:6432".parse().unwrap())
        );
        assert_eq!(
            Listen::parse("localhost:0").unwrap(),
            Listen::Tcp("127.0.0.1:0".parse().unwrap())
        );
        assert_eq!(
            Listen::parse("[::1]:5432").unwrap(),
            Listen::Tcp("[::1]:5432".parse().unwrap())
        );
        assert_eq!(
            Listen::parse("unix:/run/x/.s.PGSQL.5432").unwrap(),
            Listen::Unix("/run/x/.s.PGSQL.5432".into())
        );
        for bad in [
            "",
            "unix:",
            "db.example.com:5432",
            "127.0.0.1:99999",
            "1.2.3.4",
        ] {
            assert!(Listen::parse(bad).is_err(), "{bad}");
        }
        assert!(Listen::parse("[::1]:1").unwrap().is_local());
        assert!(!Listen::parse("0.0.0.0:1").unwrap().is_local());
        assert!(!Listen::parse("10.1.2.3:1").unwrap().is_local());
    }

    #[test]
    fn only_throttling_is_retried() {
        let throttle = ConnectError::Server("Rate exceeded for IAM connections".into());
        assert!(throttled(&throttle));
        let denied = ConnectError::Auth {
            message: "PAM authentication failed for user \"iam_user\"".into(),
            iam: true,
        };
        assert!(!throttled(&denied));
        assert!(backoff(1) < backoff(2));
        assert_eq!(backoff(30), Duration::from_secs(3));
    }
}
