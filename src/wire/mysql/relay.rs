//! rdsconn between a MySQL client and the server: it greets the client as
//! the server would (the server's own version and capabilities, minus TLS
//! and compression, and a connection id), takes the client's handshake
//! response, logs in upstream over verified TLS as the user the client
//! named (`wire::authenticate`), hands the client the server's OK, and from
//! then on copies bytes both ways.
//!
//! rdsconn's own sessions use it with `mysql_async` on a private unix
//! socket, so every plugin `wire` speaks (`dialog` included) works for the
//! driver, and rdsconn knows the plugin and TLS details it reports.

use std::sync::Arc;

use crate::net::Stream;
use bytes::{Buf, BytesMut};
use mysql_common::constants::{CapabilityFlags, StatusFlags};
use mysql_common::io::ParseBuf;
use mysql_common::packets::{
    AuthSwitchRequest, ErrPacket, HandshakePacket, HandshakeResponse, ServerError, SqlState,
};
use mysql_common::scramble;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_rustls::client::TlsStream;

use super::{self as wire, ClientHello, LoggedIn, Login, Packets, Prompter, Secured};
use crate::BoxFuture;
use crate::net::{ConnectError, TlsSummary, io_err};
use crate::secret::{Auth, Secret};
use crate::tls::{PeerChain, TlsPolicy};

/// What failed I/O with the local client is called.
const CLIENT: &str = "talking to the local client";

/// An upstream connection whose greeting has been read (it offers TLS).
pub(crate) struct Upstream<'a> {
    pub packets: Packets<Stream>,
    pub greeting: HandshakePacket<'static>,
    /// The name the certificate is verified against.
    pub server_name: &'a str,
    pub policy: &'a TlsPolicy,
}

/// What a user logs in upstream with: one fixed secret (rdsconn's own
/// sessions), or a token minted for whichever user a client names (the
/// proxy).
pub(crate) trait Credentials: Send + Sync {
    fn auth_for<'a>(&'a self, user: &'a str) -> BoxFuture<'a, Result<Auth, ConnectError>>;
}

impl Credentials for Auth {
    fn auth_for<'a>(&'a self, _user: &'a str) -> BoxFuture<'a, Result<Auth, ConnectError>> {
        Box::pin(async move { Ok(self.clone()) })
    }
}

/// A client that has been greeted and has answered: who it wants to be.
pub(crate) struct Greeted<C> {
    front: Packets<C>,
    nonce: [u8; 20],
    pub user: String,
    pub database: Option<String>,
    pub hello: ClientHello,
    /// The local password it proved, if one is required.
    local: Option<Secret>,
}

/// A logged-in pair, ready for [`pump`].
pub(crate) struct Relayed<C> {
    pub client: C,
    pub upstream: TlsStream<Stream>,
    pub tls: TlsSummary,
    pub login: LoggedIn,
    pub user: String,
    /// For `COM_CHANGE_USER`: the server's greeting (its scramble), the
    /// client's side of the handshake and the local password.
    greeting: HandshakePacket<'static>,
    nonce: [u8; 20],
    hello: ClientHello,
    local: Option<Secret>,
    /// The client sent `COM_QUIT`: the server closing is then the
    /// session's normal end.
    quit: bool,
}

impl<C> Relayed<C> {
    /// The server side back, for the pool: its stream, TLS summary, login
    /// and greeting.
    pub(crate) fn into_upstream(
        self,
    ) -> (
        TlsStream<Stream>,
        TlsSummary,
        LoggedIn,
        HandshakePacket<'static>,
    ) {
        (self.upstream, self.tls, self.login, self.greeting)
    }
}

/// Greets `client` as the server of `greeting` would (its version and
/// capabilities, minus TLS and compression; `connection_id` as the
/// session's id), reads its handshake response and, when `local` is set,
/// checks its `mysql_native_password` answer against it. Without `local`
/// any answer is accepted (the socket's own access rules guard it).
pub(crate) async fn greet<C: AsyncRead + AsyncWrite + Unpin>(
    client: C,
    greeting: &HandshakePacket<'_>,
    connection_id: u32,
    local: Option<&Secret>,
) -> Result<Greeted<C>, ConnectError> {
    let mut front = Packets::new(client);
    let nonce = nonce()?;
    let offered = greeting.capabilities().difference(wire::NOT_RELAYED)
        | CapabilityFlags::CLIENT_PROTOCOL_41
        | CapabilityFlags::CLIENT_SECURE_CONNECTION
        | CapabilityFlags::CLIENT_PLUGIN_AUTH;
    let hello = HandshakePacket::new(
        10,
        greeting.server_version_ref(),
        connection_id,
        nonce[..8].try_into().unwrap_or_default(),
        Some([&nonce[8..], &[0][..]].concat()),
        offered,
        greeting.default_collation(),
        StatusFlags::SERVER_STATUS_AUTOCOMMIT,
        Some(&b"mysql_native_password"[..]),
    )
    .with_mariadb_ext_capabilities(greeting.mariadb_ext_capabilities());
    front.send(&hello).await.map_err(io_err(CLIENT))?;

    let payload = front.read().await.map_err(io_err(CLIENT))?;
    let response = ParseBuf(&payload)
        .parse::<HandshakeResponse<'_>>(())
        .map_err(|_| ConnectError::Server("the local client sent a malformed handshake".into()))?;
    if response
        .capabilities()
        .contains(CapabilityFlags::CLIENT_SSL)
    {
        let msg = "TLS is between rdsconn and the server; connect to rdsconn without TLS";
        let _ = send_error(&mut front, 2026, *b"HY000", msg).await;
        return Err(ConnectError::Server(format!("local client: {msg}")));
    }
    let user = String::from_utf8_lossy(response.user()).into_owned();
    if let Some(local) = local {
        let plugin = response.auth_plugin().map(|p| p.as_bytes().to_vec());
        let answer = response.scramble_buf().to_vec();
        check_local(&mut front, plugin.as_deref(), answer, &user, &nonce, local).await?;
    }
    let hello = ClientHello {
        capabilities: response.capabilities(),
        mariadb_capabilities: response.mariadb_ext_capabilities(),
        // capabilities (4), then the client's max packet size.
        max_packet: payload
            .get(4..8)
            .and_then(|b| b.try_into().ok())
            .map_or(1 << 24, u32::from_le_bytes),
        collation: response.collation(),
        attributes: response.connect_attributes(),
    };
    let database = response
        .db_name()
        .map(|d| String::from_utf8_lossy(d).into_owned());
    Ok(Greeted {
        front,
        nonce,
        user,
        database,
        hello,
        local: local.cloned(),
    })
}

impl<C: AsyncRead + AsyncWrite + Unpin> Greeted<C> {
    /// Logs in upstream (TLS with rdsconn's verifier, then the server's
    /// plugin) as the user the client named. The client is not told yet:
    /// see [`Greeted::finish`].
    pub(crate) async fn login_upstream(
        &self,
        upstream: Upstream<'_>,
        auth: &Auth,
        prompter: &dyn Prompter,
    ) -> Result<(Secured, LoggedIn, HandshakePacket<'static>), ConnectError> {
        let login = Login {
            user: self.user.as_bytes(),
            database: self.database.as_deref().map(str::as_bytes),
            auth,
            hello: &self.hello,
            prompter,
        };
        login_upstream(upstream, &login).await
    }

    /// Hands the client a pooled server connection: the OK of that
    /// connection's login (the client's own handshake was for the same
    /// user, database and capabilities).
    pub(crate) async fn finish_pooled(
        mut self,
        upstream: TlsStream<Stream>,
        tls: TlsSummary,
        login: LoggedIn,
        greeting: HandshakePacket<'static>,
    ) -> Result<Relayed<C>, (ConnectError, TlsStream<Stream>, TlsSummary, LoggedIn)> {
        if let Err(e) = self.front.write(&login.ok).await {
            return Err((io_err(CLIENT)(e), upstream, tls, login));
        }
        Ok(Relayed {
            client: self.front.stream,
            upstream,
            tls,
            login,
            user: self.user,
            greeting,
            nonce: self.nonce,
            hello: self.hello,
            local: self.local,
            quit: false,
        })
    }

    /// Passes the server's OK on, or the failure as an error packet (the
    /// server's own message where there is one).
    pub(crate) async fn finish(
        mut self,
        upstream: Result<(Secured, LoggedIn, HandshakePacket<'static>), ConnectError>,
    ) -> Result<Relayed<C>, ConnectError> {
        match upstream {
            Ok((secured, login, greeting)) => {
                self.front.write(&login.ok).await.map_err(io_err(CLIENT))?;
                Ok(Relayed {
                    client: self.front.stream,
                    upstream: secured.packets.stream,
                    tls: secured.tls,
                    login,
                    user: self.user,
                    greeting,
                    nonce: self.nonce,
                    hello: self.hello,
                    local: self.local,
                    quit: false,
                })
            }
            Err(e) => {
                let _ = self.refuse(&e).await;
                Err(e)
            }
        }
    }

    /// Tells the client why it cannot log in.
    pub(crate) async fn refuse(&mut self, e: &ConnectError) -> std::io::Result<()> {
        refuse(&mut self.front, e).await
    }
}

/// Upgrades `upstream` to TLS with rdsconn's verifier and logs in with
/// the server's plugin.
pub(crate) async fn login_upstream(
    upstream: Upstream<'_>,
    login: &Login<'_>,
) -> Result<(Secured, LoggedIn, HandshakePacket<'static>), ConnectError> {
    let peer = Arc::new(PeerChain::default());
    let greeting = upstream.greeting;
    let mut secured = wire::start_tls(
        upstream.packets,
        &greeting,
        login.hello,
        upstream.server_name,
        upstream.policy,
        &peer,
    )
    .await?;
    let logged_in = wire::authenticate(&mut secured.packets, &greeting, login).await?;
    Ok((secured, logged_in, greeting))
}

/// `e` as an error packet a client reads as the server's: the server's own
/// ERR when there is one, else access denied (1045, 28000) for
/// authentication failures and an aborted connection (1152, 08S01) for
/// the rest, with rdsconn's cause chain. Never a client-side (2xxx) code,
/// which MySQL client libraries do not expect from a server.
async fn refuse<S: AsyncRead + AsyncWrite + Unpin>(
    front: &mut Packets<S>,
    e: &ConnectError,
) -> std::io::Result<()> {
    if let ConnectError::MysqlError {
        code,
        state,
        message,
    } = e
    {
        return send_error(front, *code, *state, message).await;
    }
    let (code, state) = match e {
        ConnectError::Auth { .. } | ConnectError::Refused(_) | ConnectError::AuthMethod { .. } => {
            (1045, *b"28000")
        }
        _ => (ABORTED_CONNECTION, *b"08S01"),
    };
    let chain = crate::error::error_line(e);
    send_error(front, code, state, &format!("rdsconn: {chain}")).await
}

/// `ER_ABORTING_CONNECTION`: what a client gets for rdsconn's own upstream
/// failures (unreachable, TLS refused, timed out).
pub(crate) const ABORTED_CONNECTION: u16 = 1152;

/// rdsconn's own sessions: greets `client` (the driver, which proves
/// `local`), logs in upstream with `auth` and passes the server's OK on.
pub(crate) async fn login<C: AsyncRead + AsyncWrite + Unpin>(
    client: C,
    upstream: Upstream<'_>,
    local: &Secret,
    auth: &Auth,
    prompter: &dyn Prompter,
) -> Result<Relayed<C>, ConnectError> {
    let id = upstream.greeting.connection_id();
    let greeted = greet(client, &upstream.greeting, id, Some(local)).await?;
    let result = greeted.login_upstream(upstream, auth, prompter).await;
    greeted.finish(result).await
}

/// Bytes relayed, each way.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Traffic {
    /// Client to server.
    pub up: u64,
    /// Server to client.
    pub down: u64,
}

/// How a relayed session ended.
#[derive(Debug)]
pub(crate) enum Ended {
    Client,
    Server,
    /// The server ended the session the client had not quit (a restart,
    /// a failover, a killed session, a broken network): why.
    Dropped(String),
    Failed(std::io::Error),
}

impl Ended {
    /// How the server's side ended (`Ok(0)`: it closed; else the read's
    /// error): a normal end after the client quit, else a drop.
    pub(crate) fn by_server(read: std::io::Result<()>, client_quit: bool) -> Self {
        let why = match read {
            Ok(()) => "the server closed the connection".to_string(),
            Err(e) => match ended_by(e, Self::Server) {
                Self::Failed(e) => return Self::Failed(e),
                _ => "the connection to the server was lost".to_string(),
            },
        };
        if client_quit {
            Self::Server
        } else {
            Self::Dropped(why)
        }
    }
}

impl std::fmt::Display for Ended {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Client => f.write_str("client closed"),
            Self::Server => f.write_str("server closed"),
            Self::Dropped(why) => write!(f, "the server ended the session: {why}"),
            Self::Failed(e) => write!(f, "{e}"),
        }
    }
}

const BUFFER: usize = 64 * 1024;

/// Connection ids a client was given in place of the server's (the
/// proxy greets before it dials), for `KILL`.
pub(crate) trait ConnectionIds: Send + Sync {
    /// The server's id for the id a client was greeted with.
    fn server_id(&self, client_id: u32) -> Option<u32>;
}

/// How [`pump`] treats the client's packets beyond copying them.
pub(crate) struct Handling<'a> {
    /// `COM_CHANGE_USER` logs in upstream again with these.
    pub credentials: &'a dyn Credentials,
    pub prompter: &'a dyn Prompter,
    /// `KILL [QUERY|CONNECTION] ID` and `COM_PROCESS_KILL` naming an id
    /// from here are rewritten to the server's id.
    pub ids: Option<&'a dyn ConnectionIds>,
    /// A pooled server connection of this user: `COM_QUIT` ends the
    /// client's session without reaching the server, and
    /// `COM_CHANGE_USER` to another user is refused.
    pub pooled_user: Option<&'a str>,
}

/// Relays the session until either side closes, then closes the other.
/// Client packets are copied as they come, except `COM_CHANGE_USER`, which
/// rdsconn answers by logging in upstream again as the new user (the
/// client's answer checked against the local password when there is one),
/// and `KILL` of a connection id rdsconn handed out (see [`Handling`]);
/// `COM_RESET_CONNECTION` goes through as it is.
pub(crate) async fn pump<C: AsyncRead + AsyncWrite + Unpin>(
    mut relayed: Relayed<C>,
    handling: &Handling<'_>,
) -> (Traffic, Ended) {
    let (traffic, ended, _) = relay(&mut relayed, handling).await;
    let _ = relayed.upstream.shutdown().await;
    let _ = relayed.client.shutdown().await;
    (traffic, ended)
}

/// [`pump`] without closing either side; also says whether the client's
/// last packet was whole (else the server waits for the rest of it).
pub(crate) async fn relay<C: AsyncRead + AsyncWrite + Unpin>(
    relayed: &mut Relayed<C>,
    handling: &Handling<'_>,
) -> (Traffic, Ended, bool) {
    let mut traffic = Traffic::default();
    let mut from_client = BytesMut::with_capacity(BUFFER);
    let mut from_server = vec![0_u8; BUFFER];
    // Bytes of the current client packet still to forward.
    let mut pending = 0_usize;
    let ended = loop {
        if from_client.capacity() - from_client.len() < BUFFER / 4 {
            from_client.reserve(BUFFER);
        }
        tokio::select! {
            read = relayed.client.read_buf(&mut from_client) => match read {
                Ok(0) => break Ended::Client,
                Ok(_) => {
                    let forwarded =
                        forward_client(relayed, &mut from_client, &mut pending, handling).await;
                    match forwarded {
                        Ok(n) => traffic.up += n,
                        Err(e) => break Ended::Failed(e),
                    }
                    if relayed.quit && handling.pooled_user.is_some() {
                        break Ended::Client;
                    }
                }
                Err(e) => break ended_by(e, Ended::Client),
            },
            read = relayed.upstream.read(&mut from_server) => match read {
                Ok(0) => break Ended::by_server(Ok(()), relayed.quit),
                Ok(n) => {
                    let sent = async {
                        relayed.client.write_all(&from_server[..n]).await?;
                        relayed.client.flush().await
                    };
                    if let Err(e) = sent.await {
                        break ended_by(e, Ended::Client);
                    }
                    traffic.down += n as u64;
                }
                Err(e) => break Ended::by_server(Err(e), relayed.quit),
            },
        }
    };
    (traffic, ended, pending == 0)
}

/// A side that goes away abruptly — a client that closes without
/// `COM_QUIT`, a server that closes without TLS `close_notify` (common) —
/// is a normal end of the session, not a failure.
pub(crate) fn ended_by(e: std::io::Error, side: Ended) -> Ended {
    use std::io::ErrorKind::{BrokenPipe, ConnectionAborted, ConnectionReset, UnexpectedEof};
    if matches!(
        e.kind(),
        UnexpectedEof | ConnectionReset | ConnectionAborted | BrokenPipe
    ) {
        side
    } else {
        Ended::Failed(e)
    }
}

/// `COM_CHANGE_USER`'s command byte.
const COM_CHANGE_USER: u8 = 0x11;
const COM_QUERY: u8 = 0x03;
const COM_QUIT: u8 = 0x01;
const COM_PROCESS_KILL: u8 = 0x0c;
/// A `KILL` statement is short; longer queries are not looked at.
const MAX_KILL: usize = 80;

/// Forwards the complete and partial client packets in `buf`; returns the
/// bytes forwarded.
async fn forward_client<C: AsyncRead + AsyncWrite + Unpin>(
    relayed: &mut Relayed<C>,
    buf: &mut BytesMut,
    pending: &mut usize,
    handling: &Handling<'_>,
) -> std::io::Result<u64> {
    let mut sent = 0;
    loop {
        if *pending > 0 {
            let n = (*pending).min(buf.len());
            if n == 0 {
                break;
            }
            relayed.upstream.write_all(&buf[..n]).await?;
            buf.advance(n);
            *pending -= n;
            sent += n as u64;
            continue;
        }
        let Some(header) = buf.get(..4) else { break };
        let len =
            usize::from(header[0]) | usize::from(header[1]) << 8 | usize::from(header[2]) << 16;
        // The first packet of a command has sequence id 0.
        if header[3] == 0 && len > 0 {
            let Some(&command) = buf.get(4) else { break };
            if command == COM_QUIT {
                relayed.quit = true;
                if handling.pooled_user.is_some() {
                    // The server connection goes back to the pool.
                    buf.clear();
                    break;
                }
            }
            if command == COM_CHANGE_USER {
                if buf.len() < 4 + len {
                    break;
                }
                let packet = buf.split_to(4 + len);
                relayed.upstream.flush().await?;
                change_user(relayed, &packet[4..], handling).await?;
                continue;
            }
            if let Some(ids) = handling.ids
                && matches!(command, COM_QUERY | COM_PROCESS_KILL)
                && len <= MAX_KILL
            {
                if buf.len() < 4 + len {
                    break;
                }
                let packet = buf.split_to(4 + len);
                let out = match rewrite_kill(&packet[4..], ids) {
                    Some(payload) => {
                        if let Some(m) = crate::ops::metrics::metrics() {
                            m.cancelled(crate::target::EngineKind::Mysql);
                        }
                        framed(&payload)
                    }
                    None => packet.to_vec(),
                };
                relayed.upstream.write_all(&out).await?;
                sent += out.len() as u64;
                continue;
            }
        }
        *pending = 4 + len;
    }
    relayed.upstream.flush().await?;
    Ok(sent)
}

/// A client's `KILL` naming a connection id rdsconn handed out, with the
/// server's id in its place; `None` for anything else.
fn rewrite_kill(payload: &[u8], ids: &dyn ConnectionIds) -> Option<Vec<u8>> {
    match payload.split_first()? {
        (&COM_PROCESS_KILL, id) => {
            let id = u32::from_le_bytes(id.try_into().ok()?);
            let server = ids.server_id(id)?;
            Some([&[COM_PROCESS_KILL][..], &server.to_le_bytes()].concat())
        }
        (&COM_QUERY, text) => {
            let text = std::str::from_utf8(text).ok()?;
            let words: Vec<&str> = text
                .trim()
                .trim_end_matches(';')
                .split_whitespace()
                .collect();
            let (first, rest) = words.split_first()?;
            let (last, middle) = rest.split_last()?;
            let modifiers = ["HARD", "SOFT", "CONNECTION", "QUERY"];
            if !first.eq_ignore_ascii_case("KILL")
                || !middle
                    .iter()
                    .all(|w| modifiers.iter().any(|m| w.eq_ignore_ascii_case(m)))
            {
                return None;
            }
            let server = ids.server_id(last.parse().ok()?)?;
            let mut statement = words[..words.len() - 1].join(" ");
            statement.push(' ');
            statement.push_str(&server.to_string());
            Some([&[COM_QUERY][..], statement.as_bytes()].concat())
        }
        _ => None,
    }
}

/// A one-packet command: header (length, sequence 0) and payload.
pub(crate) fn framed(payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).unwrap_or(0).to_le_bytes();
    [&[len[0], len[1], len[2], 0][..], payload].concat()
}

/// Answers a client's `COM_CHANGE_USER`: checks its answer against the
/// local password (when there is one), logs in upstream as the new user
/// and passes the server's OK (or the failure) back.
async fn change_user<C: AsyncRead + AsyncWrite + Unpin>(
    relayed: &mut Relayed<C>,
    payload: &[u8],
    handling: &Handling<'_>,
) -> std::io::Result<()> {
    let (credentials, prompter) = (handling.credentials, handling.prompter);
    let mut front = Packets::continuing(&mut relayed.client, 1);
    let Some(command) = ChangeUser::parse(payload, relayed.hello.capabilities) else {
        return send_error(&mut front, 1047, *b"08S01", "malformed COM_CHANGE_USER").await;
    };
    if let Some(local) = &relayed.local {
        let checked = check_local(
            &mut front,
            command.plugin.as_deref(),
            command.answer.clone(),
            &command.user,
            &relayed.nonce,
            local,
        )
        .await;
        if checked.is_err() {
            return Ok(());
        }
    }
    if let Some(only) = handling.pooled_user
        && only != command.user
    {
        let msg = format!(
            "rdsconn proxy: a pooled session stays user {only:?}; connect as {:?} instead of COM_CHANGE_USER",
            command.user
        );
        return send_error(&mut front, 1045, *b"28000", &msg).await;
    }
    let mut hello = relayed.hello.clone();
    if let Some(c) = command.collation {
        hello.collation = c;
    }
    let result = async {
        let auth = credentials.auth_for(&command.user).await?;
        let mut upstream = Packets::new(&mut relayed.upstream);
        let caps = hello.upstream_capabilities(relayed.greeting.capabilities());
        wire::change_user(
            &mut upstream,
            &relayed.greeting,
            caps,
            &Login {
                user: command.user.as_bytes(),
                database: command.database.as_deref().map(str::as_bytes),
                auth: &auth,
                hello: &hello,
                prompter,
            },
        )
        .await
    }
    .await;
    match result {
        Ok(login) => {
            front.write(&login.ok).await?;
            relayed.user = command.user;
            relayed.hello = hello;
            Ok(())
        }
        Err(e) => {
            tracing::info!(
                "COM_CHANGE_USER to {} failed: {}",
                crate::text::Untrusted(&command.user),
                crate::text::Untrusted(&e.to_string())
            );
            refuse(&mut front, &e).await
        }
    }
}

/// The fields of a client's `COM_CHANGE_USER` that rdsconn needs.
struct ChangeUser {
    user: String,
    answer: Vec<u8>,
    database: Option<String>,
    collation: Option<u8>,
    plugin: Option<Vec<u8>>,
}

impl ChangeUser {
    /// 0x11, user NUL, answer (length byte), database NUL, then (4.1)
    /// character set (2), plugin name NUL, attributes.
    fn parse(payload: &[u8], caps: CapabilityFlags) -> Option<Self> {
        let rest = payload.strip_prefix(&[COM_CHANGE_USER])?;
        let (user, rest) = split_nul(rest)?;
        let (&n, rest) = rest.split_first()?;
        let answer = rest.get(..usize::from(n))?.to_vec();
        let (database, rest) = split_nul(&rest[usize::from(n)..])?;
        let (collation, rest) = match rest {
            [lo, _hi, rest @ ..] => (Some(*lo), rest),
            _ => (None, rest),
        };
        let plugin = if caps.contains(CapabilityFlags::CLIENT_PLUGIN_AUTH) {
            split_nul(rest).map(|(p, _)| p.to_vec())
        } else {
            None
        };
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        Some(Self {
            user: text(user),
            answer,
            database: (!database.is_empty()).then(|| text(database)),
            collation,
            plugin: plugin.filter(|p| !p.is_empty()),
        })
    }
}

fn split_nul(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
    let i = bytes.iter().position(|&b| b == 0)?;
    Some((&bytes[..i], &bytes[i + 1..]))
}

/// 20 random scramble bytes in 1..=127 (no NUL, as servers send them).
fn nonce() -> Result<[u8; 20], ConnectError> {
    let mut bytes = crate::secret::random::<20>()?;
    for b in &mut bytes {
        *b = *b % 127 + 1;
    }
    Ok(bytes)
}

/// Sends an error packet; with a SQL state after the greeting (protocol
/// 4.1 clients), without one in place of the greeting.
pub(crate) async fn send_error<S: AsyncRead + AsyncWrite + Unpin>(
    front: &mut Packets<S>,
    code: u16,
    state: impl Into<Option<[u8; 5]>>,
    message: &str,
) -> std::io::Result<()> {
    let packet = ErrPacket::Error(ServerError::new(
        code,
        state.into().map(SqlState::new),
        message.as_bytes(),
    ));
    front.send(&packet).await
}

/// The local client's `mysql_native_password` answer, asked for again with
/// a switch request when it started with another plugin.
async fn check_local<S: AsyncRead + AsyncWrite + Unpin>(
    front: &mut Packets<S>,
    plugin: Option<&[u8]>,
    answer: Vec<u8>,
    user: &str,
    nonce: &[u8; 20],
    expected: &Secret,
) -> Result<(), ConnectError> {
    let want = scramble::scramble_native(nonce, expected.expose().as_bytes())
        .map(|s| s.to_vec())
        .unwrap_or_default();
    let native = plugin.is_none_or(|p| p == b"mysql_native_password");
    let answer = if native {
        answer
    } else {
        let switch = AuthSwitchRequest::new(
            &b"mysql_native_password"[..],
            [&nonce[..], &[0][..]].concat(),
        );
        front.send(&switch).await.map_err(io_err(CLIENT))?;
        front.read().await.map_err(io_err(CLIENT))?
    };
    if crate::secret::constant_time_eq(&answer, &want) {
        return Ok(());
    }
    let msg = format!("Access denied for user '{user}' (the local password is wrong)");
    let _ = send_error(front, 1045, *b"28000", &msg).await;
    Err(ConnectError::Auth {
        message: format!("local client: {msg}"),
        iam: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Ids;
    impl ConnectionIds for Ids {
        fn server_id(&self, client_id: u32) -> Option<u32> {
            (client_id == 1_879_048_193).then_some(42)
        }
    }

    #[test]
    fn kill_of_a_handed_out_id_names_the_servers_id() {
        let q = |s: &str| [&[COM_QUERY][..], s.as_bytes()].concat();
        assert_eq!(
            rewrite_kill(&q("KILL QUERY 1879048193"), &Ids),
            Some(q("KILL QUERY 42"))
        );
        assert_eq!(
            rewrite_kill(&q(" kill 1879048193 ;"), &Ids),
            Some(q("kill 42"))
        );
        assert_eq!(
            rewrite_kill(&q("KILL HARD CONNECTION 1879048193"), &Ids),
            Some(q("KILL HARD CONNECTION 42"))
        );
        assert_eq!(rewrite_kill(&q("KILL QUERY 7"), &Ids), None, "not ours");
        assert_eq!(rewrite_kill(&q("SELECT 1879048193"), &Ids), None);
        assert_eq!(rewrite_kill(&q("KILL USER 1879048193"), &Ids), None);
        let pk = [&[COM_PROCESS_KILL][..], &1_879_048_193_u32.to_le_bytes()].concat();
        assert_eq!(
            rewrite_kill(&pk, &Ids),
            Some([&[COM_PROCESS_KILL][..], &42_u32.to_le_bytes()].concat())
        );
        assert_eq!(framed(b"\x03ab"), b"\x03\0\0\0\x03ab");
    }

    #[test]
    fn change_user_fields() {
        let caps = CapabilityFlags::CLIENT_PLUGIN_AUTH | CapabilityFlags::CLIENT_PROTOCOL_41;
        let mut p = vec![COM_CHANGE_USER];
        p.extend_from_slice(b"bob\0");
        p.extend_from_slice(&[3, 1, 2, 3]);
        p.extend_from_slice(b"appdb\0");
        p.extend_from_slice(&[45, 0]);
        p.extend_from_slice(b"mysql_native_password\0");
        let c = ChangeUser::parse(&p, caps).unwrap();
        assert_eq!(c.user, "bob");
        assert_eq!(c.answer, vec![1, 2, 3]);
        assert_eq!(c.database.as_deref(), Some("appdb"));
        assert_eq!(c.collation, Some(45));
        assert_eq!(c.plugin.as_deref(), Some(&b"mysql_native_password"[..]));
        // Truncated: the answer is longer than the packet.
        assert!(ChangeUser::parse(&[COM_CHANGE_USER, b'x', 0, 9, 1], caps).is_none());
    }
}
