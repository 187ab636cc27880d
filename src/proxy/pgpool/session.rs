//! One pooled client: its greeting, the relay, and what happens to its
//! server connection when it leaves.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_rustls::client::TlsStream;

use super::frames::{Expect, Framer, Piece, cstr, message, query, server_name};
use super::settings::{ApplyError, apply, client_params, exchange, settings_sql};
use super::{ACQUIRE_TRIES, CHECK_AFTER, PgPools, PgServer, SYNC, open, status_pair};
use crate::net::Stream;
use crate::ops::metrics::metrics;
use crate::proxy::pool::{AcquireError, Lease, Pool, PoolMode};
use crate::proxy::postgres;
use crate::proxy::{Config, Report, pins};
use crate::target::EngineKind;
use crate::wire::mysql::relay;

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
    /// The server reported an error before the client's `Sync` came: it
    /// discards what the client sends up to that `Sync`, and so does the
    /// record of what it will answer.
    skipping: bool,
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
pub(in crate::proxy) async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
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
        skipping: false,
        status: b'I',
        pinned: None,
        partial: Partial::default(),
        to_server: Vec::new(),
        to_client: negotiate(startup),
    };
    // The rarer steps are boxed: a client's task keeps the size of its
    // largest step for as long as it lives.
    if let Err(why) = Box::pin(s.acquire(client)).await {
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
    /// parameters; on failure the client has been told (FATAL: it is
    /// closed).
    async fn acquire<S: AsyncWrite + Unpin>(&mut self, client: &mut S) -> Result<(), String> {
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
                    let _ = postgres::send_error(client, "53300", &format!("rdsconn: {why}")).await;
                    return Err(format!("pool: {why}"));
                }
                Err(AcquireError::Open(f)) => {
                    let why = crate::error::error_line(&f.error);
                    let _ = if let Some(raw) = &f.to_client {
                        client.write_all(raw).await
                    } else {
                        let code = postgres::sqlstate(&f.error);
                        postgres::send_error(client, code, &format!("rdsconn: {why}")).await
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
        let _ = postgres::send_error(client, "08006", &format!("rdsconn: {why}")).await;
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
        let _ = postgres::send_error(
            client,
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
            let piece = framer.next(b"d").map_err(|e| garbled("client", &e))?;
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
            Box::pin(self.acquire(client))
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

impl Session<'_> {
    /// One whole message from the client.
    async fn on_client<S: AsyncWrite + Unpin>(
        &mut self,
        client: &mut S,
        kind: u8,
        msg: Bytes,
    ) -> Result<(), End> {
        let body = msg.slice(5..);
        if self.skipping && kind != b'S' {
            // Discarded by the server, which answers none of it: sent as
            // it is (nothing renamed, prepared or expected).
            self.to_server.extend_from_slice(&msg);
            return Ok(());
        }
        self.skipping = false;
        if kind == b'Q' && self.deallocated(&body) {
            return Ok(());
        }
        self.ensure_server(client).await?;
        match kind {
            b'Q' => {
                let (sql, _) = cstr(&body);
                self.check_pin(sql);
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
                        self.prepare(&sname, &rest);
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

    /// Sends `Parse` of server statement `sname` (its expectation is the
    /// caller's to push), after a `Close` of it: should this server
    /// connection have it though rdsconn's record says not, the `Parse`
    /// still succeeds ("already exists" would fail the client's batch).
    fn prepare(&mut self, sname: &str, rest: &[u8]) {
        if let Some(l) = self.server.as_mut() {
            l.conn().prepared.insert(sname.to_string());
        }
        self.to_server
            .extend(message(b'C', &[b"S", sname.as_bytes(), &[0]]));
        self.push(Expect::Closed);
        self.to_server
            .extend(message(b'P', &[sname.as_bytes(), &[0], rest]));
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
            self.prepare(&sname, &rest);
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

    /// Once the server says `DISCARD ALL` / `DEALLOCATE ALL` ran (a
    /// pinned client's), nothing is prepared on the server connection any
    /// more; one it refused (inside a transaction block) dropped nothing.
    fn forget_all_if(&mut self, tag: &[u8]) {
        if matches!(tag, b"DISCARD ALL" | b"DEALLOCATE ALL") {
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
            let piece = framer.next(b"Dd").map_err(|e| garbled("server", &e))?;
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
                // An error (a Bind's, say) before the client's Sync has
                // come: the server skips the rest of the batch as it comes.
                self.skipping = self.expect.is_empty() && self.extended;
            }
            _ => {
                if kind == b'C' {
                    self.forget_all_if(cstr(&msg[5..]).0);
                }
                let ends = self.expect.front().is_some_and(|e| e.ends_with(kind));
                if !matches!(
                    self.expect.front(),
                    Some(Expect::Swallow(_) | Expect::Closed)
                ) {
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
        if ok {
            if reset {
                let server = lease.conn();
                server.applied = std::mem::take(&mut self.params);
                server.prepared.clear();
            }
            lease.release();
        } else {
            drop(lease); // closed: slot freed
        }
        // Counted once the connection is back (or gone).
        self.reset_done(ok);
    }

    fn reset_done(&self, ok: bool) {
        if let Some(m) = metrics() {
            let name = crate::ops::metrics::target(self.config.name.as_deref());
            m.pool_reset(name, EngineKind::Postgres, ok);
        }
    }
}

/// A side that sent something that is not PostgreSQL: the session ends.
fn garbled(side: &str, why: &str) -> End {
    relay::Ended::Failed(std::io::Error::other(format!("{side}: {why}")))
}
