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

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::AsyncWriteExt;
use tokio_rustls::client::TlsStream;

use super::Config;
use super::pool::{Conn, Pool, Pools};
use super::postgres::{self, Failure};
use crate::BoxFuture;
use crate::net::{ConnectError, Stream};

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
    fn held_key(&self, packet: &[u8]) -> Option<[u8; 8]> {
        let key: [u8; 8] = packet.get(8..16)?.try_into().ok()?;
        let held = self.cancels().get(&key)?.load(Ordering::Acquire);
        (held != 0).then(|| held.to_be_bytes())
    }
}

impl postgres::Pooled for PgPools {
    fn serve<'a>(
        &'a self,
        config: &'a Config,
        client: &'a mut dyn postgres::ClientIo,
        startup: &'a [u8],
        who: (&'a str, Option<&'a str>),
        report: &'a mut crate::proxy::Report,
    ) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let mut client = client;
            session::serve(config, self, &mut client, startup, who, report).await;
        })
    }

    fn cancel_key(&self, packet: &[u8]) -> Option<[u8; 8]> {
        self.held_key(packet)
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

mod frames;
mod session;
mod settings;

use frames::message;
