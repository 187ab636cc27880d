//! PostgreSQL through a pool (`--pool-mode session|transaction`).
//!
//! Server connections log in with only the user and the database; each
//! client's other startup parameters (`application_name`, `DateStyle`,
//! `search_path`, …) are applied with `set_config` when it gets a server
//! connection, and the client is greeted by rdsconn with the server's
//! parameters and a key of its own for `CancelRequest`.
//!
//! Session mode lends a server connection for the client's whole session
//! and resets it afterwards (`ROLLBACK` when in a transaction, then
//! `DISCARD ALL`). Transaction mode lends it until `ReadyForQuery` says
//! idle with nothing outstanding; named protocol-level prepared statements
//! are renamed after their text (`rdsconn_…`) and prepared again on
//! whichever server connection the client gets next, with the replies the
//! client does not expect swallowed and the ones it does made up in
//! order; statements that leave session state pin the client to its
//! server connection (`pins`).

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_rustls::client::TlsStream;

use super::pool::{AcquireError, Conn, Lease, Pool, PoolMode, Pools};
use super::postgres::{self, Failure};
use super::{Config, Report, pins};
use crate::BoxFuture;
use crate::net::{ConnectError, Stream};
use crate::ops::metrics::metrics;
use crate::target::EngineKind;
use crate::wire::mysql::relay;

/// A pooled server connection.
pub(super) struct PgServer {
    stream: TlsStream<Stream>,
    /// `ParameterStatus` values as the server last reported them.
    status: BTreeMap<String, String>,
    /// The server's `BackendKeyData` (process id and secret).
    key: [u8; 8],
    /// The client parameters set on it (`set_config`) since it was new or
    /// last reset.
    applied: BTreeMap<String, String>,
    /// The `rdsconn_…` statements prepared on it.
    prepared: HashSet<String>,
}

impl Conn for PgServer {
    fn is_broken(&mut self) -> bool {
        super::pool::said_something(&mut self.stream)
    }

    fn terminate(mut self) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            let _ = tokio::time::timeout(Duration::from_secs(5), async {
                let _ = self.stream.write_all(&TERMINATE).await;
                let _ = self.stream.shutdown().await;
            })
            .await;
        })
    }
}

const TERMINATE: [u8; 5] = [b'X', 0, 0, 0, 4];
const SYNC: [u8; 5] = [b'S', 0, 0, 0, 4];
/// PostgreSQL's own bound on a message.
const MAX_MESSAGE: usize = 1 << 30;
/// An idle server connection lent after this long is asked a `Sync`
/// first, so that one that went away is not handed to a client.
const CHECK_AFTER: Duration = Duration::from_secs(1);
/// Tries to get a server connection that works before giving up.
const ACQUIRE_TRIES: usize = 3;

/// The PostgreSQL pools of one proxy, and the cancel keys handed out.
pub(super) struct PgPools {
    pub pools: Arc<Pools<PgServer>>,
    /// Client key → the server key of the connection it holds now (0:
    /// none), set by the client's session as it gets and gives back
    /// server connections.
    cancels: Mutex<HashMap<[u8; 8], Arc<AtomicU64>>>,
}

impl PgPools {
    pub(super) fn new(pools: Arc<Pools<PgServer>>) -> Self {
        Self {
            pools,
            cancels: Mutex::new(HashMap::new()),
        }
    }

    fn cancels(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 8], Arc<AtomicU64>>> {
        self.cancels
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The server key a client's `CancelRequest` (its 16 bytes) stands
    /// for, while that client holds a server connection.
    pub(super) fn cancel_key(&self, packet: &[u8]) -> Option<[u8; 8]> {
        let key: [u8; 8] = packet.get(8..16)?.try_into().ok()?;
        let held = self.cancels().get(&key)?.load(Ordering::Acquire);
        (held != 0).then(|| held.to_be_bytes())
    }
}

/// Logs in a new server connection for `pool`: the startup packet names
/// only the user and the database.
pub(super) async fn open(config: &Config, pool: &Pool<PgServer>) -> Result<PgServer, Failure> {
    let target = config.target(&pool.user, pool.database.as_deref());
    let mut params = vec![("user", pool.user.as_str())];
    if let Some(db) = &pool.database {
        params.push(("database", db.as_str()));
    }
    let mut startup = BytesMut::new();
    postgres_protocol::message::frontend::startup_message(params, &mut startup)
        .map_err(|e| Failure::from(ConnectError::Server(e.to_string())))?;
    let (mut stream, _, _) =
        super::retrying(config, || postgres::login(config, &target, &startup)).await?;
    let mut status = BTreeMap::new();
    let mut key = [0; 8];
    loop {
        let (kind, body) = read(&mut stream).await?;
        match kind {
            b'S' => {
                if let Some((k, v)) = status_pair(&body) {
                    status.insert(k, v);
                }
            }
            b'K' => {
                if let Some(k) = body.get(..8).and_then(|k| k.try_into().ok()) {
                    key = k;
                }
            }
            b'Z' => break,
            b'E' => {
                // The server's own words reach the client.
                return Err(Failure {
                    error: ConnectError::Server(postgres::error_fields(&body).1),
                    to_client: Some(message(b'E', &[&body])),
                });
            }
            _ => {}
        }
    }
    Ok(PgServer {
        stream,
        status,
        key,
        applied: BTreeMap::new(),
        prepared: HashSet::new(),
    })
}

async fn read(stream: &mut TlsStream<Stream>) -> Result<(u8, Vec<u8>), Failure> {
    postgres::read_message(stream, MAX_MESSAGE)
        .await
        .map_err(|e| Failure::from(ConnectError::Server(format!("after login: {e}"))))
}

fn status_pair(body: &[u8]) -> Option<(String, String)> {
    let mut parts = body.split(|&b| b == 0);
    let k = String::from_utf8_lossy(parts.next()?).into_owned();
    let v = String::from_utf8_lossy(parts.next()?).into_owned();
    Some((k, v))
}

/// What the server's replies to each message sent (or not sent) mean for
/// the client, in order.
enum Expect {
    /// The client's own message of this kind: its replies go through.
    Relay(u8),
    /// The client's `Parse`, renamed to this statement: the replies go
    /// through.
    Prepared(String),
    /// A `Parse` rdsconn added so that the client's statement exists on
    /// this server connection: its `ParseComplete` is not the client's.
    Swallow(String),
    /// A reply the client is owed without the server being asked (its
    /// statement is prepared already, or a `Close` of one).
    Synth(Vec<u8>),
}

impl Expect {
    /// Whether `reply` is the last reply to this message (`ReadyForQuery`
    /// and errors are handled apart).
    fn ends_with(&self, reply: u8) -> bool {
        match self {
            Self::Relay(b'P') | Self::Prepared(_) | Self::Swallow(_) => reply == b'1',
            Self::Relay(b'B') => reply == b'2',
            Self::Relay(b'C') => reply == b'3',
            Self::Relay(b'D') => matches!(reply, b'T' | b'n'),
            Self::Relay(b'E') => matches!(reply, b'C' | b'I' | b's'),
            _ => false,
        }
    }

    /// Answered by `ReadyForQuery`: `Sync`, a simple query, a function call.
    fn is_sync(&self) -> bool {
        matches!(self, Self::Relay(b'S' | b'Q' | b'F'))
    }
}

/// Reads a stream into whole messages, except the kinds that may be large
/// and are only passed on (rows and copy data), which go on in pieces.
#[derive(Default)]
struct Framer {
    buf: BytesMut,
    /// Bytes of a passed-on message still to come.
    passing: usize,
}

enum Piece {
    Whole(u8, Bytes),
    Part(Bytes),
}

impl Framer {
    fn next(&mut self, streamed: &[u8]) -> Result<Option<Piece>, String> {
        if self.passing > 0 {
            if self.buf.is_empty() {
                return Ok(None);
            }
            let n = self.passing.min(self.buf.len());
            self.passing -= n;
            return Ok(Some(Piece::Part(self.buf.split_to(n).freeze())));
        }
        if self.buf.len() < 5 {
            return Ok(None);
        }
        let kind = self.buf[0];
        let len = u32::from_be_bytes([self.buf[1], self.buf[2], self.buf[3], self.buf[4]]);
        let len = usize::try_from(len).unwrap_or(usize::MAX);
        if !(4..=MAX_MESSAGE).contains(&len) {
            return Err(format!(
                "a {len}-byte message; this does not look like PostgreSQL"
            ));
        }
        let total = len + 1;
        if self.buf.len() >= total {
            return Ok(Some(Piece::Whole(kind, self.buf.split_to(total).freeze())));
        }
        if streamed.contains(&kind) {
            self.passing = total;
            return self.next(streamed);
        }
        self.buf.reserve(total - self.buf.len());
        Ok(None)
    }

    fn is_empty(&self) -> bool {
        self.buf.is_empty() && self.passing == 0
    }
}

/// The C string at the start of `b`, and what follows it.
fn cstr(b: &[u8]) -> (&[u8], &[u8]) {
    match b.iter().position(|&c| c == 0) {
        Some(i) => (&b[..i], &b[i + 1..]),
        None => (b, &[]),
    }
}

fn message(kind: u8, parts: &[&[u8]]) -> Vec<u8> {
    let len: usize = parts.iter().map(|p| p.len()).sum::<usize>() + 4;
    let mut out = Vec::with_capacity(len + 1);
    out.push(kind);
    out.extend_from_slice(&u32::try_from(len).unwrap_or(u32::MAX).to_be_bytes());
    for p in parts {
        out.extend_from_slice(p);
    }
    out
}

/// A simple `Query`.
fn query(sql: &str) -> Vec<u8> {
    message(b'Q', &[sql.as_bytes(), &[0]])
}

/// The server-side name of a statement: after its text and parameter
/// types, so that clients preparing the same statement share it.
fn server_name(parse_rest: &[u8]) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, parse_rest);
    format!("rdsconn_{}", crate::ca::hex(&digest.as_ref()[..16]))
}

/// `E'…'`: a string constant whatever `standard_conforming_strings` is.
fn literal(s: &str) -> String {
    format!("E'{}'", s.replace('\\', "\\\\").replace('\'', "''"))
}

fn ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// The client's startup parameters that are settings (`options`' `-c
/// name=value` too); what the pool cannot give is refused.
fn client_params(packet: &[u8]) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    for (k, v) in postgres::parameters(packet.get(8..).unwrap_or_default()) {
        match k.as_str() {
            "user" | "database" => {}
            "replication" => {
                return Err("replication connections are not pooled: use --pool-mode none".into());
            }
            "options" => {
                for (name, value) in options(&v)? {
                    out.insert(name, value);
                }
            }
            k if k.starts_with("_pq_.") => {}
            _ => {
                out.insert(k, v);
            }
        }
    }
    Ok(out)
}

/// `-c name=value` / `--name=value` in `options` (backslash escapes a
/// space, as the server reads it).
fn options(raw: &str) -> Result<Vec<(String, String)>, String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => word.extend(chars.next()),
            c if c.is_ascii_whitespace() => {
                if !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
            }
            c => word.push(c),
        }
    }
    if !word.is_empty() {
        words.push(word);
    }
    let mut out = Vec::new();
    let mut it = words.into_iter();
    while let Some(w) = it.next() {
        let setting = if w == "-c" {
            it.next().unwrap_or_default()
        } else if let Some(s) = w.strip_prefix("-c").or_else(|| w.strip_prefix("--")) {
            s.to_string()
        } else {
            return Err(format!(
                "the startup option {} cannot be pooled: only -c name=value settings can",
                crate::text::Untrusted(&w)
            ));
        };
        let Some((name, value)) = setting.split_once('=') else {
            return Err(format!(
                "the startup option -c {} has no value",
                crate::text::Untrusted(&setting)
            ));
        };
        out.push((name.replace('-', "_"), value.to_string()));
    }
    Ok(out)
}

/// Why a server connection could not be readied for a client.
enum ApplyError {
    /// It broke: another is tried.
    Broken,
    /// The server refused the client's settings (its `ErrorResponse`).
    Refused(Vec<u8>),
}

/// Sets the client's parameters on `server` (and resets those of the
/// client before that this one did not set); after a long idle, asks a
/// `Sync` at least, to know it still works.
async fn apply(
    server: &mut PgServer,
    params: &BTreeMap<String, String>,
    check: bool,
) -> Result<(), ApplyError> {
    let sql = settings_sql(&server.applied, params);
    let out = if !sql.is_empty() {
        query(&sql)
    } else if check {
        SYNC.to_vec()
    } else {
        return Ok(());
    };
    let refused = exchange(server, &out, 1)
        .await
        .map_err(|()| ApplyError::Broken)?;
    if let Some(e) = refused {
        return Err(ApplyError::Refused(e));
    }
    server.applied.clone_from(params);
    Ok(())
}

/// The SQL that takes a server connection from the client parameters
/// `from` to `to`: `RESET` what `to` does not set, `set_config` what
/// differs; empty when nothing does.
fn settings_sql(from: &BTreeMap<String, String>, to: &BTreeMap<String, String>) -> String {
    let mut sql = String::new();
    for k in from.keys().filter(|k| !to.contains_key(*k)) {
        sql.push_str("RESET ");
        sql.push_str(&ident(k));
        sql.push(';');
    }
    let changed: Vec<String> = to
        .iter()
        .filter(|(k, v)| from.get(*k) != Some(v))
        .map(|(k, v)| {
            format!(
                "pg_catalog.set_config({}, {}, false)",
                literal(k),
                literal(v)
            )
        })
        .collect();
    if !changed.is_empty() {
        sql.push_str("SELECT ");
        sql.push_str(&changed.join(", "));
    }
    sql
}

/// Sends `out` and reads up to the `syncs`-th `ReadyForQuery`, keeping
/// the parameters the server reports; the first error, if any.
async fn exchange(server: &mut PgServer, out: &[u8], syncs: usize) -> Result<Option<Vec<u8>>, ()> {
    let talk = async {
        server.stream.write_all(out).await.map_err(drop)?;
        server.stream.flush().await.map_err(drop)?;
        let mut error = None;
        let mut left = syncs;
        while left > 0 {
            let (kind, body) = postgres::read_message(&mut server.stream, MAX_MESSAGE)
                .await
                .map_err(drop)?;
            match kind {
                b'S' => {
                    if let Some((k, v)) = status_pair(&body) {
                        server.status.insert(k, v);
                    }
                }
                b'E' if error.is_none() => error = Some(message(b'E', &[&body])),
                b'Z' => left -= 1,
                _ => {}
            }
        }
        Ok(error)
    };
    tokio::time::timeout(RESET_WITHIN, talk)
        .await
        .unwrap_or(Err(()))
}

/// A reset or a check that takes longer closes the server connection.
const RESET_WITHIN: Duration = Duration::from_secs(10);

/// Removes a client's cancel key when its session ends.
struct Registered<'a>(&'a PgPools, [u8; 8]);

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        self.0.cancels().remove(&self.1);
    }
}

/// One pooled client.
struct Session<'a> {
    config: &'a Config,
    pg: &'a PgPools,
    pool: Arc<Pool<PgServer>>,
    mode: PoolMode,
    params: BTreeMap<String, String>,
    key: [u8; 8],
    /// The server key for this client's cancel requests (0: none held).
    held: Arc<AtomicU64>,
    server: Option<Lease<PgServer>>,
    /// Named statements: the client's name → the server's, and the
    /// `Parse` body after the name.
    stmts: HashMap<Vec<u8>, (Arc<str>, Bytes)>,
    expect: VecDeque<Expect>,
    /// Messages answered by `ReadyForQuery` not answered yet.
    syncs: usize,
    /// Extended-query messages sent since the last `Sync`.
    extended: bool,
    /// The transaction status of the last `ReadyForQuery`.
    status: u8,
    pinned: Option<&'static str>,
    /// Where the server connection's stream is not at a message boundary.
    partial: Partial,
    to_server: Vec<u8>,
    to_client: Vec<u8>,
}

/// A server connection is lent again only at a message boundary.
#[derive(Default)]
struct Partial {
    /// Part of a server message is read and not yet passed on.
    server: bool,
    /// Part of a client message (copy data) is passed on, the rest not yet.
    client: bool,
    /// The session ended inside a message (see [`Session::run`]).
    at_end: bool,
}

/// How a session ended, and what the client was told.
type End = relay::Ended;

/// Serves a client of a pooled proxy, from its startup packet on.
pub(super) async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    config: &Config,
    pg: &PgPools,
    client: &mut S,
    startup: &[u8],
    (user, database): (&str, Option<&str>),
    report: &mut Report,
) {
    let params = match client_params(startup) {
        Ok(p) => p,
        Err(why) => {
            let _ = postgres::send_error(client, "08P01", &format!("rdsconn: {why}")).await;
            return report.fail(format!("client: {why}"));
        }
    };
    let Ok(mut key) = crate::secret::random::<8>() else {
        return report.fail("no random cancel key");
    };
    key[0] &= 0x7f;
    let held = Arc::new(AtomicU64::new(0));
    pg.cancels().insert(key, Arc::clone(&held));
    let _registered = Registered(pg, key);
    let mut s = Session {
        config,
        pg,
        pool: pg.pools.get(user, database, ""),
        mode: pg.pools.settings.mode,
        params,
        key,
        held,
        server: None,
        stmts: HashMap::new(),
        expect: VecDeque::new(),
        syncs: 0,
        extended: false,
        status: b'I',
        pinned: None,
        partial: Partial::default(),
        to_server: Vec::new(),
        to_client: negotiate(startup),
    };
    // The rarer steps are boxed: a client's task keeps the size of its
    // largest step for as long as it lives.
    if let Err(why) = Box::pin(s.acquire(client, "FATAL")).await {
        return report.fail(why);
    }
    s.greet();
    if let Err(e) = s.flush_client(client).await {
        return report.fail(format!("client: {e}"));
    }
    s.maybe_release();
    let ended = s.run(client).await;
    Box::pin(s.finish()).await;
    match ended {
        relay::Ended::Failed(e) => report.fail(format!("relay: {e}")),
        dropped @ relay::Ended::Dropped(_) => report.fail(dropped),
        relay::Ended::Client | relay::Ended::Server => report.ended = "closed".into(),
    }
}

/// `NegotiateProtocolVersion` for a client that asked for more than 3.0
/// or for protocol options: the pool speaks 3.0 without options.
fn negotiate(startup: &[u8]) -> Vec<u8> {
    let minor = startup
        .get(6..8)
        .map_or(0, |m| u16::from_be_bytes([m[0], m[1]]));
    let asked: Vec<String> = postgres::parameters(startup.get(8..).unwrap_or_default())
        .into_iter()
        .map(|(k, _)| k)
        .filter(|k| k.starts_with("_pq_."))
        .collect();
    if minor == 0 && asked.is_empty() {
        return Vec::new();
    }
    let mut body = 0_u32.to_be_bytes().to_vec();
    body.extend_from_slice(&u32::try_from(asked.len()).unwrap_or(0).to_be_bytes());
    for a in &asked {
        body.extend_from_slice(a.as_bytes());
        body.push(0);
    }
    message(b'v', &[&body])
}

impl Session<'_> {
    /// Gets a server connection that works and carries the client's
    /// parameters; on failure the client has been told (with `severity`).
    async fn acquire<S: AsyncWrite + Unpin>(
        &mut self,
        client: &mut S,
        severity: &str,
    ) -> Result<(), String> {
        for _ in 0..ACQUIRE_TRIES {
            let (config, pool) = (self.config, Arc::clone(&self.pool));
            // Boxed: a login's future is large, and rare.
            let got = pool.acquire(|| Box::pin(open(config, &pool))).await;
            let mut lease = match got {
                Ok(l) => l,
                Err(AcquireError::Timeout(after)) => {
                    let why = format!(
                        "no server connection within {} (--pool-timeout): all {} of this pool's connections are in use (--pool-size)",
                        humantime::format_duration(after),
                        self.pg.pools.settings.size
                    );
                    let _ = send(client, severity, "53300", &format!("rdsconn: {why}")).await;
                    return Err(format!("pool: {why}"));
                }
                Err(AcquireError::Open(f)) => {
                    let why = crate::error::error_line(&f.error);
                    let _ = if let Some(raw) = &f.to_client {
                        client.write_all(raw).await
                    } else {
                        let code = postgres::sqlstate(&f.error);
                        send(client, severity, code, &format!("rdsconn: {why}")).await
                    };
                    return Err(format!("upstream: {why}"));
                }
            };
            let check = lease.idle_for >= CHECK_AFTER;
            match apply(lease.conn(), &self.params, check).await {
                Ok(()) => {
                    let key = u64::from_be_bytes(lease.conn().key);
                    self.held.store(key, Ordering::Release);
                    self.server = Some(lease);
                    return Ok(());
                }
                Err(ApplyError::Broken) => {}
                Err(ApplyError::Refused(raw)) => {
                    lease.release();
                    let _ = client.write_all(&raw).await;
                    return Err("the server refused the client's startup parameters".into());
                }
            }
        }
        let why = "the server connections of the pool broke one after another";
        let _ = send(client, severity, "08006", &format!("rdsconn: {why}")).await;
        Err(format!("upstream: {why}"))
    }

    /// `AuthenticationOk`, the server's parameters, the client's key,
    /// `ReadyForQuery`.
    fn greet(&mut self) {
        self.to_client.extend(message(b'R', &[&[0, 0, 0, 0]]));
        if let Some(lease) = self.server.as_mut() {
            for (k, v) in &lease.conn().status {
                self.to_client
                    .extend(message(b'S', &[k.as_bytes(), &[0], v.as_bytes(), &[0]]));
            }
        }
        self.to_client.extend(message(b'K', &[&self.key]));
        self.to_client.extend(message(b'Z', &[b"I"]));
    }

    async fn flush_client<S: AsyncWrite + Unpin>(&mut self, client: &mut S) -> std::io::Result<()> {
        if self.to_client.is_empty() {
            return Ok(());
        }
        let out = std::mem::take(&mut self.to_client);
        client.write_all(&out).await?;
        client.flush().await
    }

    async fn flush_server(&mut self) -> std::io::Result<()> {
        if self.to_server.is_empty() {
            return Ok(());
        }
        let out = std::mem::take(&mut self.to_server);
        let Some(lease) = self.server.as_mut() else {
            return Ok(());
        };
        let stream = &mut lease.conn().stream;
        stream.write_all(&out).await?;
        stream.flush().await
    }

    /// In transaction mode, gives the server connection back once the
    /// client's transaction is over and nothing is outstanding.
    fn maybe_release(&mut self) {
        if self.mode == PoolMode::Transaction
            && self.pinned.is_none()
            && self.syncs == 0
            && !self.extended
            && self.expect.is_empty()
            && self.status == b'I'
            && !self.partial.server
            && !self.partial.client
            && let Some(lease) = self.server.take()
        {
            self.held.store(0, Ordering::Release);
            lease.release();
        }
    }

    async fn run<S: AsyncRead + AsyncWrite + Unpin>(&mut self, client: &mut S) -> End {
        let (mut from_client, mut from_server) = (Framer::default(), Framer::default());
        let ended = self.relay(client, &mut from_client, &mut from_server).await;
        // Half a message passed on either way: the server connection is
        // not at a message boundary, and cannot be lent again.
        self.partial.at_end = from_client.passing > 0 || !from_server.is_empty();
        ended
    }

    async fn relay<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        client: &mut S,
        from_client: &mut Framer,
        from_server: &mut Framer,
    ) -> End {
        loop {
            let server = self.server.as_mut().map(|l| &mut l.conn().stream);
            tokio::select! {
                read = client.read_buf(&mut from_client.buf) => match read {
                    Ok(0) => return relay::Ended::Client,
                    Ok(_) => {
                        if let Err(end) = self.client_said(client, from_client).await {
                            return end;
                        }
                    }
                    Err(e) => return relay::ended_by(e, relay::Ended::Client),
                },
                read = read_server(server, &mut from_server.buf) => match read {
                    Ok(0) => return self.server_gone(client, Ok(())).await,
                    Ok(_) => {
                        if let Err(end) = self.server_said(client, from_server).await {
                            return end;
                        }
                    }
                    Err(e) => return self.server_gone(client, Err(e)).await,
                },
            }
        }
    }

    /// The server connection ended under a client: the client is told and
    /// closed (its transaction is gone).
    async fn server_gone<S: AsyncWrite + Unpin>(
        &mut self,
        client: &mut S,
        how: std::io::Result<()>,
    ) -> End {
        self.flush_client(client).await.ok();
        if let Some(lease) = self.server.take() {
            drop(lease); // closed: slot freed
        }
        let _ = send(
            client,
            "FATAL",
            "08006",
            "rdsconn: the server connection ended (a restart, a failover, or the session was terminated)",
        )
        .await;
        relay::Ended::by_server(how, false)
    }

    async fn client_said<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        client: &mut S,
        framer: &mut Framer,
    ) -> Result<(), End> {
        loop {
            let piece = framer
                .next(b"d")
                .map_err(|e| relay::Ended::Failed(std::io::Error::other(format!("client: {e}"))))?;
            match piece {
                None => break,
                Some(Piece::Part(bytes)) => {
                    self.ensure_server(client).await?;
                    self.to_server.extend_from_slice(&bytes);
                }
                Some(Piece::Whole(b'X', _)) => {
                    // What came before the Terminate still runs.
                    let _ = self.flush_server().await;
                    return Err(relay::Ended::Client);
                }
                Some(Piece::Whole(kind, msg)) => self.on_client(client, kind, msg).await?,
            }
        }
        let sent = self.flush_server().await;
        self.flush_client(client)
            .await
            .map_err(|e| relay::ended_by(e, relay::Ended::Client))?;
        sent.map_err(|e| relay::Ended::by_server(Err(e), false))?;
        self.partial.client = framer.passing > 0;
        self.maybe_release();
        Ok(())
    }

    async fn ensure_server<S: AsyncWrite + Unpin>(&mut self, client: &mut S) -> Result<(), End> {
        if self.server.is_none() {
            self.flush_client(client).await.ok();
            Box::pin(self.acquire(client, "FATAL"))
                .await
                .map_err(|why| relay::Ended::Failed(std::io::Error::other(why)))?;
        }
        Ok(())
    }

    fn rewrite(&self) -> bool {
        self.mode == PoolMode::Transaction
    }

    fn push(&mut self, e: Expect) {
        self.expect.push_back(e);
        self.emit_ready();
    }

    /// Made-up replies whose turn has come.
    fn emit_ready(&mut self) {
        while let Some(Expect::Synth(_)) = self.expect.front() {
            if let Some(Expect::Synth(m)) = self.expect.pop_front() {
                self.to_client.extend(m);
            }
        }
    }

    fn check_pin(&mut self, sql: &[u8]) {
        if self.mode != PoolMode::Transaction || self.pinned.is_some() || !pins::worth_a_look(sql) {
            return;
        }
        if let Some(reason) = pins::pin_reason(&String::from_utf8_lossy(sql)) {
            self.pinned = Some(reason);
            if let Some(m) = metrics() {
                let name = crate::ops::metrics::target(self.config.name.as_deref());
                m.pool_pin(name, EngineKind::Postgres, reason);
            }
        }
    }
}

/// Reads from the server connection, or waits forever without one.
async fn read_server(
    server: Option<&mut TlsStream<Stream>>,
    buf: &mut BytesMut,
) -> std::io::Result<usize> {
    match server {
        Some(s) => s.read_buf(buf).await,
        None => std::future::pending().await,
    }
}

/// An `ErrorResponse` from rdsconn with `severity` (FATAL ends the client).
async fn send<S: AsyncWrite + Unpin>(
    client: &mut S,
    severity: &str,
    code: &str,
    text: &str,
) -> std::io::Result<()> {
    let mut body = Vec::new();
    for (f, v) in [
        (b'S', severity),
        (b'V', severity),
        (b'C', code),
        (b'M', text),
    ] {
        body.push(f);
        body.extend_from_slice(v.as_bytes());
        body.push(0);
    }
    body.push(0);
    client.write_all(&message(b'E', &[&body])).await?;
    client.flush().await
}

impl Session<'_> {
    /// One whole message from the client.
    async fn on_client<S: AsyncWrite + Unpin>(
        &mut self,
        client: &mut S,
        kind: u8,
        msg: Bytes,
    ) -> Result<(), End> {
        let body = msg.slice(5..);
        if kind == b'Q' && self.deallocated(&body) {
            return Ok(());
        }
        self.ensure_server(client).await?;
        match kind {
            b'Q' => {
                let (sql, _) = cstr(&body);
                self.check_pin(sql);
                self.forget_all_after(sql);
                self.syncs += 1;
                self.to_server.extend_from_slice(&msg);
                self.push(Expect::Relay(b'Q'));
            }
            b'P' => {
                self.extended = true;
                let (name, rest) = cstr(&body);
                let (sql, _) = cstr(rest);
                self.check_pin(sql);
                if self.rewrite() && !name.is_empty() {
                    let rest = body.slice(name.len() + 1..);
                    let sname: Arc<str> = server_name(&rest).into();
                    self.stmts
                        .insert(name.to_vec(), (Arc::clone(&sname), rest.clone()));
                    if self.prepared(&sname) {
                        self.push(Expect::Synth(message(b'1', &[])));
                    } else {
                        self.mark_prepared(&sname);
                        self.to_server
                            .extend(message(b'P', &[sname.as_bytes(), &[0], &rest]));
                        self.push(Expect::Prepared(sname.to_string()));
                    }
                } else {
                    self.to_server.extend_from_slice(&msg);
                    self.push(Expect::Relay(b'P'));
                }
            }
            b'B' => {
                self.extended = true;
                let (portal, rest) = cstr(&body);
                let (stmt, rest) = cstr(rest);
                match self.server_stmt(stmt) {
                    Some(sname) => self
                        .to_server
                        .extend(message(b'B', &[portal, &[0], sname.as_bytes(), &[0], rest])),
                    None => self.to_server.extend_from_slice(&msg),
                }
                self.push(Expect::Relay(b'B'));
            }
            b'D' | b'C' => {
                self.extended = true;
                let (what, name) = body.split_first().map_or((0, &[][..]), |(w, n)| (*w, n));
                let (name, _) = cstr(name);
                if kind == b'C' && what == b'S' && self.rewrite() && !name.is_empty() {
                    // The statement stays prepared on the server, for the
                    // next client that prepares the same text.
                    self.stmts.remove(name);
                    self.push(Expect::Synth(message(b'3', &[])));
                    return Ok(());
                }
                match (what, self.server_stmt(name)) {
                    (b'S', Some(sname)) => self
                        .to_server
                        .extend(message(kind, &[b"S", sname.as_bytes(), &[0]])),
                    _ => self.to_server.extend_from_slice(&msg),
                }
                self.push(Expect::Relay(kind));
            }
            b'E' => {
                self.extended = true;
                self.to_server.extend_from_slice(&msg);
                self.push(Expect::Relay(b'E'));
            }
            b'H' => {
                self.extended = true;
                self.to_server.extend_from_slice(&msg);
            }
            b'S' | b'F' => {
                if kind == b'S' {
                    self.extended = false;
                }
                self.syncs += 1;
                self.to_server.extend_from_slice(&msg);
                self.push(Expect::Relay(kind));
            }
            _ => self.to_server.extend_from_slice(&msg),
        }
        Ok(())
    }

    fn prepared(&mut self, sname: &str) -> bool {
        self.server
            .as_mut()
            .is_some_and(|l| l.conn().prepared.contains(sname))
    }

    fn mark_prepared(&mut self, sname: &str) {
        if let Some(l) = self.server.as_mut() {
            l.conn().prepared.insert(sname.to_string());
        }
    }

    /// The server's name for the client's statement `name`, prepared on
    /// this server connection first when it is not yet (transaction mode).
    fn server_stmt(&mut self, name: &[u8]) -> Option<Arc<str>> {
        if !self.rewrite() || name.is_empty() {
            return None;
        }
        let (sname, rest) = self.stmts.get(name)?;
        let (sname, rest) = (Arc::clone(sname), rest.clone());
        if !self.prepared(&sname) {
            self.mark_prepared(&sname);
            self.to_server
                .extend(message(b'P', &[sname.as_bytes(), &[0], &rest]));
            self.push(Expect::Swallow(sname.to_string()));
        }
        Some(sname)
    }

    /// `DEALLOCATE` of the client's protocol-level statements, answered
    /// by rdsconn (their server names are not the client's).
    fn deallocated(&mut self, body: &[u8]) -> bool {
        if !self.rewrite() || self.pinned.is_some() {
            return false;
        }
        let (sql, _) = cstr(body);
        if !pins::worth_a_look(sql) {
            return false;
        }
        let tag = match pins::deallocate(&String::from_utf8_lossy(sql)) {
            Some(pins::Deallocate::All) => {
                self.stmts.clear();
                "DEALLOCATE ALL"
            }
            Some(pins::Deallocate::Named(n)) if self.stmts.remove(n.as_bytes()).is_some() => {
                "DEALLOCATE"
            }
            _ => return false,
        };
        let mut reply = message(b'C', &[tag.as_bytes(), &[0]]);
        reply.extend(message(b'Z', &[&[self.status]]));
        self.push(Expect::Synth(reply));
        true
    }

    /// After `DISCARD ALL` / `DEALLOCATE ALL` (a pinned client), nothing
    /// is prepared on the server connection any more.
    fn forget_all_after(&mut self, sql: &[u8]) {
        if pins::worth_a_look(sql) && pins::drops_all_statements(&String::from_utf8_lossy(sql)) {
            self.stmts.clear();
            if let Some(l) = self.server.as_mut() {
                l.conn().prepared.clear();
            }
        }
    }

    async fn server_said<S: AsyncWrite + Unpin>(
        &mut self,
        client: &mut S,
        framer: &mut Framer,
    ) -> Result<(), End> {
        loop {
            let piece = framer
                .next(b"Dd")
                .map_err(|e| relay::Ended::Failed(std::io::Error::other(format!("server: {e}"))))?;
            match piece {
                None => break,
                Some(Piece::Part(bytes)) => self.to_client.extend_from_slice(&bytes),
                Some(Piece::Whole(kind, msg)) => self.on_server(kind, &msg),
            }
        }
        self.flush_client(client)
            .await
            .map_err(|e| relay::ended_by(e, relay::Ended::Client))?;
        self.partial.server = !framer.is_empty();
        self.maybe_release();
        Ok(())
    }

    /// One whole message from the server.
    fn on_server(&mut self, kind: u8, msg: &Bytes) {
        match kind {
            b'S' => {
                if let (Some(l), Some((k, v))) = (self.server.as_mut(), status_pair(&msg[5..])) {
                    l.conn().status.insert(k, v);
                }
                self.to_client.extend_from_slice(msg);
            }
            b'N' | b'A' => self.to_client.extend_from_slice(msg),
            b'Z' => {
                self.status = msg.get(5).copied().unwrap_or(b'I');
                self.syncs = self.syncs.saturating_sub(1);
                if self.expect.front().is_some_and(Expect::is_sync) {
                    self.expect.pop_front();
                }
                self.to_client.extend_from_slice(msg);
            }
            b'E' => {
                self.to_client.extend_from_slice(msg);
                // The server skips what follows up to the next Sync.
                while let Some(front) = self.expect.front() {
                    if front.is_sync() {
                        break;
                    }
                    if let Some(Expect::Prepared(n) | Expect::Swallow(n)) = self.expect.pop_front()
                        && let Some(l) = self.server.as_mut()
                    {
                        l.conn().prepared.remove(&n);
                    }
                }
            }
            _ => {
                let ends = self.expect.front().is_some_and(|e| e.ends_with(kind));
                if !matches!(self.expect.front(), Some(Expect::Swallow(_))) {
                    self.to_client.extend_from_slice(msg);
                }
                if ends {
                    self.expect.pop_front();
                }
            }
        }
        self.emit_ready();
    }

    /// After the client left: its server connection goes back to the pool
    /// (reset when the client may have left state on it), or is closed
    /// when it cannot be made clean.
    async fn finish(mut self) {
        let Some(mut lease) = self.server.take() else {
            return;
        };
        self.held.store(0, Ordering::Release);
        if self.syncs > 0 || self.partial.at_end {
            tracing::debug!(
                "the client left with a query running or inside a message: its server connection is closed"
            );
            self.reset_done(false);
            return;
        }
        let reset = self.mode == PoolMode::Session || self.pinned.is_some();
        if !reset && !self.extended && self.status == b'I' {
            return lease.release();
        }
        let mut out = Vec::new();
        let mut syncs = 0;
        if self.extended {
            out.extend_from_slice(&SYNC);
            syncs += 1;
        }
        if self.status != b'I' || self.extended {
            out.extend(query("ROLLBACK"));
            syncs += 1;
        }
        // The next client most likely sets what this one did (the same
        // application): set again in the same round trip.
        let again = settings_sql(&BTreeMap::new(), &self.params);
        if reset {
            out.extend(query("DISCARD ALL"));
            syncs += 1;
            if !again.is_empty() {
                out.extend(query(&again));
                syncs += 1;
            }
        }
        let done = exchange(lease.conn(), &out, syncs).await;
        let ok = matches!(done, Ok(None));
        self.reset_done(ok);
        if ok {
            if reset {
                let server = lease.conn();
                server.applied = std::mem::take(&mut self.params);
                server.prepared.clear();
            }
            lease.release();
        }
    }

    fn reset_done(&self, ok: bool) {
        if let Some(m) = metrics() {
            let name = crate::ops::metrics::target(self.config.name.as_deref());
            m.pool_reset(name, EngineKind::Postgres, ok);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn startup_options_become_settings() {
        assert_eq!(
            options("-c search_path=a,b --statement-timeout=5 -cwork_mem=1MB").unwrap(),
            vec![
                ("search_path".into(), "a,b".into()),
                ("statement_timeout".into(), "5".into()),
                ("work_mem".into(), "1MB".into())
            ]
        );
        assert_eq!(
            options(r"-c application_name=a\ b").unwrap(),
            vec![("application_name".into(), "a b".into())]
        );
        assert!(options("-D /tmp").is_err());
        assert!(options("-c novalue").is_err());
    }

    #[test]
    fn quoting() {
        assert_eq!(literal(r"a'b\c"), r"E'a''b\\c'");
        assert_eq!(ident(r#"a"b"#), r#""a""b""#);
        let n = server_name(b"SELECT 1\0\0\0");
        assert!(n.starts_with("rdsconn_") && n.len() == 40 && n.len() < 64);
        assert_ne!(n, server_name(b"SELECT 2\0\0\0"));
    }

    #[test]
    fn framer_passes_rows_in_pieces() {
        let mut f = Framer::default();
        let row = message(b'D', &[&[0; 100]]);
        f.buf.extend_from_slice(&row[..50]);
        let Ok(Some(Piece::Part(p))) = f.next(b"D") else {
            panic!("a piece")
        };
        assert_eq!(p.len(), 50);
        f.buf.extend_from_slice(&row[50..]);
        f.buf.extend_from_slice(&message(b'Z', &[b"I"]));
        let Ok(Some(Piece::Part(p))) = f.next(b"D") else {
            panic!("the rest")
        };
        assert_eq!(p.len(), row.len() - 50);
        assert!(matches!(f.next(b"D"), Ok(Some(Piece::Whole(b'Z', _)))));
        assert!(f.is_empty());
        f.buf.extend_from_slice(&[b'Q', 0, 0, 0, 2]);
        assert!(f.next(b"D").is_err());
    }
}
