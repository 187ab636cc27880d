//! The tunnels behind `--via ssh://…` and `--via socks5[h]://…`: only the
//! dial path. Whatever runs through them is the endpoint's own TLS,
//! verified against the endpoint name as on a direct connection.
//!
//! SSH: one system `ssh` per rdsconn run and endpoint (`~/.ssh/config`,
//! the agent, `ProxyJump` and `known_hosts` work as for the user's ssh),
//! forwarding a unix socket in a private 0700 directory to the endpoint
//! as the bastion resolves it (`ssh -N -L SOCKET:ENDPOINT:PORT`). Every
//! connection of the run (the session, a cancel request, each of the
//! proxy's clients) is a channel of that one ssh; a socket, unlike a
//! loopback port, no other local user can use. A dead ssh is started
//! again for the next connection, after a back-off. The ssh process is
//! killed and the directory removed when the run ends ([`close_all`]).
//!
//! SOCKS5: a connection through the proxy per connection; with `socks5h`
//! the proxy resolves the endpoint name, with `socks5` rdsconn does.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use tokio::io::AsyncBufReadExt;
use tokio::process::{Child, Command};

use super::{ConnectError, Stream};
use crate::target::{Target, Via};

/// The variable `session-manager-plugin` reads `StartSession`'s response
/// from when its first argument names it (AWS CLI v2's way).
const SSM_RESPONSE_VAR: &str = "AWS_SSM_START_SESSION_RESPONSE";

/// A tunnel's key: its dial path and the endpoint at its far end.
type Key = (Via, String, u16);

/// Every tunnel of this run.
static TUNNELS: LazyLock<Mutex<HashMap<Key, Arc<Tunnel>>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

/// One tunnel to one endpoint.
struct Tunnel {
    via: Via,
    endpoint: (String, u16),
    /// The running process (SSH, SSM); SOCKS5 has none.
    process: tokio::sync::Mutex<ForwardState>,
}

#[derive(Default)]
struct ForwardState {
    forward: Option<Forward>,
    /// Failed starts in a row, and when the last one ended (back-off).
    failures: u32,
    last_failure: Option<Instant>,
}

/// A running forwarding process: `ssh -N -L socket:endpoint`, or
/// `session-manager-plugin` listening on a loopback port.
struct Forward {
    child: Proc,
    at: ForwardAt,
    /// The process's last lines (stderr; the plugin's stdout too), for
    /// errors.
    said: Arc<Mutex<Vec<String>>>,
    /// The SSM session behind the plugin, ended with the tunnel.
    session: Option<Arc<super::ssm::Session>>,
}

/// Where a forward listens.
#[derive(Clone, Debug)]
enum ForwardAt {
    Unix(PathBuf),
    Tcp(std::net::SocketAddr),
}

impl ForwardAt {
    async fn connect(&self) -> std::io::Result<Stream> {
        match self {
            Self::Unix(p) => tokio::net::UnixStream::connect(p).await.map(Stream::Unix),
            Self::Tcp(a) => {
                let s = tokio::net::TcpStream::connect(a).await?;
                let _ = s.set_nodelay(true);
                Ok(Stream::Tcp(s))
            }
        }
    }
}

impl std::fmt::Display for ForwardAt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Unix(p) => write!(f, "{}", p.display()),
            Self::Tcp(a) => write!(f, "{a}"),
        }
    }
}

/// A connection to `target`'s endpoint through its tunnel.
pub(crate) async fn connect(target: &Target) -> Result<Stream, ConnectError> {
    let Some(via) = target.tunnel() else {
        return Err(ConnectError::Server("no tunnel for this target".into()));
    };
    tunnel(via, target).connect().await
}

/// Starts `target`'s tunnel if it is not running (the `tunnel` stage of
/// `check`); for SOCKS5 there is nothing to start.
pub(crate) async fn ensure(target: &Target) -> Result<Option<String>, ConnectError> {
    let Some(via) = target.tunnel() else {
        return Ok(None);
    };
    let tunnel = tunnel(via, target);
    match &tunnel.via {
        Via::Ssh { .. } | Via::Ssm { .. } => {
            let mut state = tunnel.process.lock().await;
            let at = tunnel.running(&mut state).await?;
            Ok(Some(format!("{via} forwarding on {at}")))
        }
        _ => Ok(Some(format!("{via}"))),
    }
}

/// A tunnel of this run whose process has ended, and its last words:
/// why a session through it broke. A process that is still ending (ssh
/// closes its channels before it exits) gets half a second.
pub(crate) async fn ended() -> Option<String> {
    let tunnels: Vec<Arc<Tunnel>> = TUNNELS
        .lock()
        .map(|t| t.values().cloned().collect())
        .unwrap_or_default();
    for tunnel in tunnels {
        // Never wait long on a connection that holds the tunnel.
        let Ok(mut state) =
            tokio::time::timeout(Duration::from_secs(1), tunnel.process.lock()).await
        else {
            continue;
        };
        let Some(forward) = state.forward.as_mut() else {
            continue;
        };
        let waited = tokio::time::timeout(Duration::from_millis(500), forward.child.wait()).await;
        if let Ok(Ok(status)) = waited {
            return Some(format!(
                "the tunnel {} ended ({})",
                tunnel.via,
                // Escaped where the hint is printed, as all of them.
                last_words(&forward.said).unwrap_or_else(|| status.to_string())
            ));
        }
    }
    None
}

/// `error` of a connection through `target`'s tunnel, or ssh's own
/// reason when that connection was accepted but the bastion would not
/// open its channel to the endpoint ("open failed": forwarding refused,
/// the endpoint's port closed or unreachable from the bastion): the
/// connection closed before the server's first byte says nothing.
pub(crate) async fn explained(target: &Target, error: ConnectError) -> ConnectError {
    match error {
        ConnectError::Network { .. } => channel_refused(target).await.unwrap_or(error),
        other => other,
    }
}

/// ssh's "open failed" line for `target`'s ssh tunnel, as an error. ssh
/// says it on stderr as it closes the connection, so the line gets up to
/// two seconds to be read (only a connection that broke waits); without
/// one, `None`.
async fn channel_refused(target: &Target) -> Option<ConnectError> {
    let via @ Via::Ssh { .. } = target.tunnel()? else {
        return None;
    };
    let tunnel = tunnel(via, target);
    let said = {
        let state = tokio::time::timeout(Duration::from_secs(1), tunnel.process.lock())
            .await
            .ok()?;
        Arc::clone(&state.forward.as_ref()?.said)
    };
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        // Taken out, so that a later failure is not blamed on it.
        let refused = {
            let mut lines = said.lock().ok()?;
            let at = lines.iter().rposition(|l| l.contains("open failed"));
            at.map(|i| lines.remove(i))
        };
        if let Some(line) = refused {
            let (endpoint, port) = &tunnel.endpoint;
            let hint = format!(
                "the bastion did not open a channel to {endpoint}:{port}: is it the endpoint's \
                 port, may the bastion reach it (security groups), and may your ssh user forward \
                 (AllowTcpForwarding)?"
            );
            return Some(tunnel.error(&line, Some(&hint)));
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Ends every tunnel of this run: the processes are killed, ssh's
/// directories removed, SSM sessions terminated.
pub(crate) async fn close_all() {
    let tunnels: Vec<Arc<Tunnel>> = TUNNELS
        .lock()
        .map(|mut t| t.drain().map(|(_, v)| v).collect())
        .unwrap_or_default();
    for tunnel in tunnels {
        if let Ok(mut state) = tunnel.process.try_lock()
            && let Some(mut forward) = state.forward.take()
        {
            let _ = forward.child.start_kill();
            if let Some(session) = &forward.session {
                session.terminate().await;
            }
        }
    }
    // Sessions whose tunnel never became ready (a timeout or a signal
    // ended the wait), or whose start was still in flight.
    super::ssm::terminate_open().await;
    // Those a start or a connection still holds (a signal ends the run
    // under them): killed by their pid, their directories removed.
    let live: Vec<(u32, Option<PathBuf>)> = LIVE
        .lock()
        .map(|mut l| l.drain().collect())
        .unwrap_or_default();
    for (pid, dir) in live {
        if let Some(pid) = rustix::process::Pid::from_raw(pid.cast_signed()) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
        }
        if let Some(dir) = dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// The fix for ssh's commonest refusals: rdsconn runs ssh with
/// `BatchMode=yes` when it has no terminal, so ssh cannot ask about an
/// unknown host key or a passphrase.
fn ssh_hint(message: &str, user: Option<&str>, host: &str, port: u16) -> Option<String> {
    let login = user.map_or_else(|| host.to_string(), |u| format!("{u}@{host}"));
    if message.contains("Host key verification failed") {
        Some(format!(
            "the bastion's host key is not in known_hosts, and without a terminal rdsconn runs ssh \
             with BatchMode=yes, which cannot ask: connect once with `ssh -p {port} {login}` on a \
             terminal, or add its key to ~/.ssh/known_hosts (`ssh-keyscan -p {port} {host}`, after \
             checking the fingerprint)"
        ))
    } else if message.contains("Permission denied") {
        Some(format!(
            "the bastion accepted none of ssh's keys: load yours into the agent (`ssh-add ~/.ssh/KEY`), \
             or name it with IdentityFile under `Host {host}` in ~/.ssh/config (or \
             RDSCONN_SSH_COMMAND='ssh -i ~/.ssh/KEY'); check with `ssh -p {port} {login}`"
        ))
    } else {
        None
    }
}

/// Every tunnel process of this run from its spawn until it is reaped
/// (pid → its private directory), for [`close_all`].
static LIVE: LazyLock<Mutex<HashMap<u32, Option<PathBuf>>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

/// A tunnel's process and its private directory (ssh's socket), known to
/// [`close_all`] from spawn to reaping even while its tunnel is busy.
/// Dropped: killed (`kill_on_drop`) and the directory removed.
struct Proc {
    child: Child,
    pid: Option<u32>,
    _dir: Option<tempfile::TempDir>,
}

impl Proc {
    fn new(child: Child, dir: Option<tempfile::TempDir>) -> Self {
        let pid = child.id();
        if let (Some(p), Ok(mut live)) = (pid, LIVE.lock()) {
            live.insert(p, dir.as_ref().map(|d| d.path().to_path_buf()));
        }
        Self {
            child,
            pid,
            _dir: dir,
        }
    }

    /// Once reaped, its pid may be another process's: forgotten.
    fn forget(&mut self) {
        if let (Some(p), Ok(mut live)) = (self.pid.take(), LIVE.lock()) {
            live.remove(&p);
        }
    }

    fn try_wait(&mut self) -> std::io::Result<Option<std::process::ExitStatus>> {
        let status = self.child.try_wait();
        if matches!(status, Ok(Some(_))) {
            self.forget();
        }
        status
    }

    async fn wait(&mut self) -> std::io::Result<std::process::ExitStatus> {
        let status = self.child.wait().await;
        if status.is_ok() {
            self.forget();
        }
        status
    }

    fn start_kill(&mut self) -> std::io::Result<()> {
        self.child.start_kill()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.forget();
    }
}

fn tunnel(via: &Via, target: &Target) -> Arc<Tunnel> {
    let key = (via.clone(), target.host.as_str().to_string(), target.port);
    let mut all = TUNNELS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    Arc::clone(all.entry(key).or_insert_with(|| {
        Arc::new(Tunnel {
            via: via.clone(),
            endpoint: (target.host.as_str().to_string(), target.port),
            process: tokio::sync::Mutex::default(),
        })
    }))
}

impl Tunnel {
    async fn connect(&self) -> Result<Stream, ConnectError> {
        match &self.via {
            Via::Ssh { .. } | Via::Ssm { .. } => {
                let mut state = self.process.lock().await;
                let at = self.running(&mut state).await?;
                loop {
                    let error = match at.connect().await {
                        Ok(stream) => return Ok(stream),
                        Err(e) => e,
                    };
                    // ssh makes its socket file a moment before it listens
                    // on it: refused while the process runs is "not yet"
                    // (the caller's connect timeout bounds the wait).
                    let running = state
                        .forward
                        .as_mut()
                        .is_some_and(|f| matches!(f.child.try_wait(), Ok(None)));
                    if running && error.kind() == std::io::ErrorKind::ConnectionRefused {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                        continue;
                    }
                    // The process went away between the check and the connect.
                    state.forward = None;
                    return Err(self.error(&format!("the forward on {at}: {error}"), None));
                }
            }
            Via::Socks {
                host,
                port,
                remote_dns,
                auth,
            } => self.socks(host, *port, *remote_dns, auth.as_ref()).await,
            Via::Addr(..) => Err(ConnectError::Server("HOST:PORT is not a tunnel".into())),
        }
    }

    /// Where the running forward listens, starting it (again) when needed.
    async fn running(&self, state: &mut ForwardState) -> Result<ForwardAt, ConnectError> {
        // A stop signal nothing else handles ends the run without leaving
        // the process behind.
        crate::signals::last_resort(|| Box::pin(close_all()));
        if let Some(forward) = &mut state.forward {
            if let Ok(None) = forward.child.try_wait() {
                return Ok(forward.at.clone());
            }
            tracing::warn!(
                "the tunnel {} ended{}; starting it again",
                self.via,
                last_words(&forward.said)
                    .map(|l| format!(" ({})", crate::text::Untrusted(&l)))
                    .unwrap_or_default()
            );
            state.forward = None;
        }
        if let Some(last) = state.last_failure {
            let pause = super::doubling(
                Duration::from_millis(250),
                state.failures,
                Duration::from_secs(5),
            );
            if let Some(left) = pause.checked_sub(last.elapsed()) {
                tokio::time::sleep(left).await;
            }
        }
        let started = match &self.via {
            Via::Ssm {
                target,
                region,
                profile,
            } => {
                self.start_ssm(target, region.as_deref(), profile.as_deref())
                    .await
            }
            _ => self.start_ssh().await,
        };
        match started {
            Ok(forward) => {
                let at = forward.at.clone();
                state.forward = Some(forward);
                state.failures = 0;
                state.last_failure = None;
                Ok(at)
            }
            Err(e) => {
                state.failures = state.failures.saturating_add(1);
                state.last_failure = Some(Instant::now());
                Err(e)
            }
        }
    }

    /// Starts `ssh -N -L SOCKET:ENDPOINT:PORT BASTION` and waits for the
    /// socket (the caller's connect timeout bounds the wait).
    async fn start_ssh(&self) -> Result<Forward, ConnectError> {
        let Via::Ssh { user, host, port } = &self.via else {
            return Err(ConnectError::Server("not an ssh tunnel".into()));
        };
        let dir = crate::files::private_dir().map_err(|e| ConnectError::Server(e.to_string()))?;
        let socket = dir.path().join("tunnel.sock");
        let (endpoint, endpoint_port) = &self.endpoint;
        let far = if endpoint.contains(':') {
            format!("[{endpoint}]:{endpoint_port}")
        } else {
            format!("{endpoint}:{endpoint_port}")
        };
        let (program, fixed) = ssh_command();
        let missing = |e: &dyn std::fmt::Display| {
            self.error(
                &format!("running {}: {e}", program.to_string_lossy()),
                Some("install OpenSSH's client (Debian/Ubuntu: apt-get install openssh-client), or set RDSCONN_SSH_COMMAND"),
            )
        };
        let found = which::which(&program).map_err(|e| missing(&e))?;
        let mut cmd = bound_to_this_run(&found);
        cmd.args(&fixed)
            .args([
                "-N",
                "-o",
                "ExitOnForwardFailure=yes",
                "-o",
                "StreamLocalBindUnlink=yes",
            ])
            .args([
                "-o",
                "ServerAliveInterval=15",
                "-o",
                "ServerAliveCountMax=3",
            ]);
        // ssh's own questions (host key, passphrase) need a terminal.
        if !(std::io::stdin().is_terminal() && std::io::stderr().is_terminal()) {
            cmd.args(["-o", "BatchMode=yes"]);
        }
        cmd.arg("-L").arg(format!("{}:{far}", socket.display()));
        if let Some(p) = port {
            cmd.arg("-p").arg(p.to_string());
        }
        if let Some(u) = user {
            cmd.arg("-l").arg(u);
        }
        cmd.arg("--").arg(host);
        cmd.stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        let child = cmd.spawn().map_err(|e| missing(&e))?;
        let ready = socket.clone();
        let said = Arc::new(Mutex::new(Vec::new()));
        let child = Proc::new(child, Some(dir));
        self.wait_ready(child, ForwardAt::Unix(socket), said, move |_| {
            ready.exists()
        })
        .await
    }

    /// Starts an SSM port-forwarding session and `session-manager-plugin`
    /// for it, listening on a loopback port; ready when the plugin says it
    /// is waiting for connections.
    async fn start_ssm(
        &self,
        target: &str,
        region: Option<&str>,
        profile: Option<&str>,
    ) -> Result<Forward, ConnectError> {
        let plugin = which::which("session-manager-plugin").map_err(|_| {
            self.error(
                "session-manager-plugin is not installed (not in PATH)",
                Some("install AWS's Session Manager plugin: https://docs.aws.amazon.com/systems-manager/latest/userguide/session-manager-working-with-install-plugin.html"),
            )
        })?;
        // A free loopback port for the plugin to listen on.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(super::io_err("choosing a local port"))?
            .port();
        let (host, endpoint_port) = &self.endpoint;
        let session = Box::pin(super::ssm::start(
            target,
            region,
            profile,
            (host, *endpoint_port),
            port,
        ))
        .await?;
        let mut cmd = bound_to_this_run(&plugin);
        // As the AWS CLI runs it; the response (with the session's token)
        // in the environment, never in argv where `ps` shows it.
        cmd.env(SSM_RESPONSE_VAR, session.response.to_string())
            .arg(SSM_RESPONSE_VAR)
            .arg(&session.region)
            .arg("StartSession")
            .arg(profile.unwrap_or(""))
            .arg(session.request.to_string())
            .arg(&session.endpoint_url)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd
            .spawn()
            .map_err(|e| self.error(&format!("running {}: {e}", plugin.display()), None))?;
        let said = Arc::new(Mutex::new(Vec::new()));
        if let Some(stdout) = child.stdout.take() {
            collect(stdout, Arc::clone(&said));
        }
        tracing::debug!("SSM session through {} started", session.target);
        let at = ForwardAt::Tcp(std::net::SocketAddr::from(([127, 0, 0, 1], port)));
        let ready = self
            .wait_ready(Proc::new(child, None), at, said, move |said| {
                // The plugin says so; a plugin that words it otherwise is
                // ready when its port listens (seen without connecting: a
                // probe connection would be forwarded to the database).
                said.iter().any(|l| l.contains("Waiting for connections")) || listening(port)
            })
            .await;
        match ready {
            Ok(mut forward) => {
                forward.session = Some(session);
                Ok(forward)
            }
            Err(e) => {
                session.terminate().await;
                Err(e)
            }
        }
    }

    /// Waits until `ready` holds for the process's lines so far (or the
    /// process ends: its last line is the error); the caller's connect
    /// timeout bounds the wait.
    async fn wait_ready(
        &self,
        mut child: Proc,
        at: ForwardAt,
        said: Arc<Mutex<Vec<String>>>,
        ready: impl Fn(&[String]) -> bool,
    ) -> Result<Forward, ConnectError> {
        if let Some(stderr) = child.child.stderr.take() {
            collect(stderr, Arc::clone(&said));
        }
        let started = Instant::now();
        loop {
            if said.lock().is_ok_and(|lines| ready(&lines)) {
                tracing::debug!(
                    "tunnel {} ready on {at} in {:.0} ms",
                    self.via,
                    started.elapsed().as_secs_f64() * 1000.0
                );
                return Ok(Forward {
                    child,
                    at,
                    said,
                    session: None,
                });
            }
            if let Ok(Some(status)) = child.try_wait() {
                // Let the readers take its last words.
                tokio::time::sleep(Duration::from_millis(50)).await;
                let message = last_words(&said).unwrap_or_else(|| format!("exited ({status})"));
                return Err(self.error(&message, None));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// The tunnel's failure, naming its layer.
    fn error(&self, message: &str, hint: Option<&str>) -> ConnectError {
        let mut hint = hint.map(str::to_string);
        let layer = match &self.via {
            Via::Ssh { user, host, port } => {
                let port = port.unwrap_or(22);
                let host = if host.contains(':') {
                    format!("[{host}]")
                } else {
                    host.clone()
                };
                hint = hint.or_else(|| ssh_hint(message, user.as_deref(), &host, port));
                format!("ssh to bastion {host}:{port}")
            }
            Via::Ssm { target, .. } => format!("SSM session through {target}"),
            other => format!("{other}"),
        };
        ConnectError::Tunnel {
            layer,
            message: message.to_string(),
            hint,
        }
    }

    async fn socks(
        &self,
        host: &str,
        port: u16,
        remote_dns: bool,
        auth: Option<&(String, String)>,
    ) -> Result<Stream, ConnectError> {
        let layer = format!("SOCKS5 proxy {host}:{port}");
        let err = |message: String| ConnectError::Tunnel {
            layer: layer.clone(),
            message,
            hint: None,
        };
        let proxy = super::resolve(host, port).await?;
        let proxy = proxy
            .first()
            .copied()
            .ok_or_else(|| err("no address".into()))?;
        let (endpoint, endpoint_port) = &self.endpoint;
        let target = if remote_dns {
            tokio_socks::TargetAddr::Domain(endpoint.clone().into(), *endpoint_port)
        } else {
            let addrs = super::resolve(endpoint, *endpoint_port).await?;
            let first = addrs
                .first()
                .copied()
                .ok_or_else(|| err("no address".into()))?;
            tokio_socks::TargetAddr::Ip(first)
        };
        let connected = match auth {
            Some((user, password)) => {
                tokio_socks::tcp::Socks5Stream::connect_with_password(proxy, target, user, password)
                    .await
            }
            None => tokio_socks::tcp::Socks5Stream::connect(proxy, target).await,
        };
        match connected {
            Ok(s) => {
                let tcp = s.into_inner();
                let _ = tcp.set_nodelay(true);
                Ok(Stream::Tcp(tcp))
            }
            Err(e) => Err(err(format!(
                "connecting to {endpoint}:{endpoint_port}: {e}"
            ))),
        }
    }
}

/// Whether a socket listens on TCP `port` on this machine, from Linux's
/// `/proc/net/tcp` and `tcp6` (state `0A`); `false` where they cannot be
/// read.
#[cfg(target_os = "linux")]
fn listening(port: u16) -> bool {
    let port = format!(":{port:04X}");
    ["/proc/net/tcp", "/proc/net/tcp6"].iter().any(|table| {
        std::fs::read_to_string(table).is_ok_and(|text| {
            text.lines().skip(1).any(|line| {
                let mut fields = line.split_whitespace();
                let local = fields.nth(1).unwrap_or("");
                let state = fields.nth(1).unwrap_or("");
                local.ends_with(&port) && state == "0A"
            })
        })
    })
}

/// Whether a socket listens on TCP `port` on this machine, from `lsof`
/// (every macOS and BSD has it); `false` when it cannot run.
#[cfg(not(target_os = "linux"))]
fn listening(port: u16) -> bool {
    std::process::Command::new("lsof")
        .args(["-nP", &format!("-iTCP:{port}"), "-sTCP:LISTEN", "-t"])
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output()
        .is_ok_and(|out| out.status.success() && !out.stdout.is_empty())
}

/// A command for `program` (found already) that the kernel kills when
/// rdsconn ends, even by `kill -9`: run under util-linux's `setpriv
/// --pdeathsig KILL` where there is one (every Debian/Ubuntu; elsewhere
/// the program runs as it is, and only a signal rdsconn can handle ends
/// it with the run). The parent that counts is the runtime thread that
/// spawns it, which lives as long as the run.
#[cfg(target_os = "linux")]
fn bound_to_this_run(program: &std::path::Path) -> Command {
    match which::which("setpriv") {
        Ok(setpriv) => {
            let mut cmd = Command::new(setpriv);
            cmd.args(["--pdeathsig", "KILL", "--"]).arg(program);
            cmd
        }
        Err(_) => Command::new(program),
    }
}

/// Outside Linux there is no parent-death signal: the program runs as it
/// is, and only a signal rdsconn can handle ends it with the run.
#[cfg(not(target_os = "linux"))]
fn bound_to_this_run(program: &std::path::Path) -> Command {
    Command::new(program)
}

/// `RDSCONN_SSH_COMMAND` (a program and its fixed arguments, split on
/// blanks, as `GIT_SSH_COMMAND`), else `ssh`.
fn ssh_command() -> (std::ffi::OsString, Vec<String>) {
    match std::env::var("RDSCONN_SSH_COMMAND") {
        Ok(c) if !c.trim().is_empty() => {
            let mut words = c.split_whitespace().map(str::to_string);
            let program = words.next().unwrap_or_else(|| "ssh".into());
            (program.into(), words.collect())
        }
        _ => ("ssh".into(), Vec::new()),
    }
}

/// Keeps a process's last 20 lines from `stream` in `said`.
fn collect(
    stream: impl tokio::io::AsyncRead + Unpin + Send + 'static,
    said: Arc<Mutex<Vec<String>>>,
) {
    tokio::spawn(async move {
        let mut lines = tokio::io::BufReader::new(stream).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            tracing::debug!("tunnel: {}", crate::text::Untrusted(&line));
            if let Ok(mut said) = said.lock() {
                said.push(line);
                let excess = said.len().saturating_sub(20);
                said.drain(..excess);
            }
        }
    });
}

/// A process's last non-blank line.
fn last_words(said: &Mutex<Vec<String>>) -> Option<String> {
    said.lock()
        .ok()?
        .iter()
        .rev()
        .find(|l| !l.trim().is_empty())
        .cloned()
}

#[cfg(test)]
mod tests {
    use super::listening;

    #[test]
    fn a_listening_port_is_seen_without_connecting() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        assert!(listening(port));
        // Bound but not listening (held, so that no one else takes it).
        let bound = tokio::net::TcpSocket::new_v4().unwrap();
        bound.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        assert!(!listening(bound.local_addr().unwrap().port()));
        drop(listener);
    }
}
