//! MySQL / MariaDB through a pool (`--pool-mode session`).
//!
//! A pool per user, database and the client's side of the handshake
//! (capabilities and character set: a server connection answers in the
//! protocol its login agreed on). A client is greeted as without a pool;
//! its handshake picks the pool, and it gets an idle server connection's
//! login OK, or a new login. When it leaves, the server connection is
//! reset — `COM_RESET_CONNECTION`, `COM_INIT_DB` (MariaDB does not restore
//! the database), and a query whose answer carries a random marker, read
//! up to that marker, so that nothing of the last client's is left in
//! the stream — and goes back to the pool; one that cannot be reset is
//! closed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mysql_common::packets::HandshakePacket;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::client::TlsStream;

use super::pool::{AcquireError, Conn, Pool, Pools};
use super::{Config, mysql};
use crate::BoxFuture;
use crate::net::{ConnectError, Stream, TlsSummary};
use crate::ops::metrics::metrics;
use crate::target::EngineKind;
use crate::wire::mysql::relay::{self, Credentials, Upstream, framed};
use crate::wire::mysql::{ClientHello, LoggedIn, Login, NoPrompter};

/// A pooled server connection.
pub(super) struct MyServer {
    stream: TlsStream<Stream>,
    tls: TlsSummary,
    login: LoggedIn,
    greeting: HandshakePacket<'static>,
}

impl Conn for MyServer {
    fn is_broken(&mut self) -> bool {
        super::pool::said_something(&mut self.stream)
    }

    fn terminate(mut self) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            let _ = tokio::time::timeout(Duration::from_secs(5), async {
                let _ = self.stream.write_all(&framed(&[COM_QUIT])).await;
                let _ = self.stream.shutdown().await;
            })
            .await;
        })
    }
}

const COM_QUIT: u8 = 0x01;
const COM_INIT_DB: u8 = 0x02;
const COM_QUERY: u8 = 0x03;
const COM_PING: u8 = 0x0e;
const COM_RESET_CONNECTION: u8 = 0x1f;
/// An idle server connection lent after this long is pinged first.
const CHECK_AFTER: Duration = Duration::from_secs(1);
const ACQUIRE_TRIES: usize = 3;
/// A reset that takes longer closes the server connection.
const RESET_WITHIN: Duration = Duration::from_secs(10);

/// The MySQL pools of one proxy, and the handshake each pool's server
/// connections log in with.
pub(super) struct MyPools {
    pub pools: Arc<Pools<MyServer>>,
    hellos: Mutex<HashMap<String, ClientHello>>,
}

impl MyPools {
    pub(super) fn new(pools: Arc<Pools<MyServer>>) -> Self {
        Self {
            pools,
            hellos: Mutex::new(HashMap::new()),
        }
    }

    fn hellos(&self) -> std::sync::MutexGuard<'_, HashMap<String, ClientHello>> {
        self.hellos
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The handshake a pool's server connections log in with (for
    /// `--min-pool-size`).
    pub(super) fn hello(&self, key: &str) -> Option<ClientHello> {
        self.hellos().get(key).cloned()
    }
}

/// What separates server connections that cannot serve each other's
/// clients.
fn hello_key(hello: &ClientHello) -> String {
    format!(
        "{:x}/{:x}/{}",
        hello.capabilities.bits(),
        hello.mariadb_capabilities.bits(),
        hello.collation
    )
}

/// Logs in a new server connection for `pool` with `hello`.
pub(super) async fn open(
    config: &Config,
    pool: &Pool<MyServer>,
    hello: &ClientHello,
) -> Result<MyServer, ConnectError> {
    let target = config.target(&pool.user, pool.database.as_deref());
    super::retrying(config, || async {
        let dialed = mysql::dial(&target).await?;
        let auth = config.auth_for(&target.user).await?;
        let upstream = Upstream {
            packets: dialed.packets,
            greeting: dialed.greeting,
            server_name: target.host.as_str(),
            policy: &config.policy,
        };
        let login = Login {
            user: target.user.as_bytes(),
            database: target.database.as_deref().map(str::as_bytes),
            auth: &auth,
            hello,
            prompter: &NoPrompter,
        };
        let (secured, login, greeting) = relay::login_upstream(upstream, &login).await?;
        Ok(MyServer {
            stream: secured.packets.stream,
            tls: secured.tls,
            login,
            greeting,
        })
    })
    .await
}

/// Serves a greeted client from its pool; the report's ending is
/// returned.
pub(super) async fn serve<C>(
    config: &Config,
    state: &mysql::State,
    my: &MyPools,
    greeted: relay::Greeted<C>,
    id: u32,
) -> Result<(relay::Traffic, relay::Ended), String>
where
    C: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let key = hello_key(&greeted.hello);
    my.hellos()
        .entry(key.clone())
        .or_insert_with(|| greeted.hello.clone());
    let pool = my
        .pools
        .get(&greeted.user, greeted.database.as_deref(), &key);
    let mut greeted = greeted;
    let mut lease = None;
    for _ in 0..ACQUIRE_TRIES {
        let hello = greeted.hello.clone();
        let got = pool.acquire(|| Box::pin(open(config, &pool, &hello))).await;
        match got {
            Ok(mut l) => {
                if l.idle_for < CHECK_AFTER || ping(&mut l.conn().stream).await {
                    lease = Some(l);
                    break;
                }
            }
            Err(AcquireError::Timeout(after)) => {
                let why = format!(
                    "rdsconn: no server connection within {} (--pool-timeout): all {} of this pool's connections are in use (--pool-size)",
                    humantime::format_duration(after),
                    my.pools.settings.size
                );
                let e = ConnectError::MysqlError {
                    code: 1040,
                    state: *b"08004",
                    message: why.clone(),
                };
                let _ = greeted.refuse(&e).await;
                return Err(format!("pool: {why}"));
            }
            Err(AcquireError::Open(e)) => {
                let _ = greeted.refuse(&e).await;
                return Err(format!("upstream: {e}"));
            }
        }
    }
    let Some(mut lease) = lease else {
        let e =
            ConnectError::Server("the pool's server connections broke one after another".into());
        let _ = greeted.refuse(&e).await;
        return Err(format!("upstream: {e}"));
    };
    let Some(server) = lease.take() else {
        return Err("upstream: no server connection".into());
    };
    state.ids().insert(id, server.greeting.connection_id());
    let _forget = mysql::IdLease { state, id };
    let mut relayed = greeted
        .finish_pooled(server.stream, server.tls, server.login, server.greeting)
        .await
        .map_err(|(e, ..)| format!("client: {e}"))?;
    let handling = relay::Handling {
        credentials: config,
        prompter: &NoPrompter,
        ids: Some(state),
        pooled_user: Some(&pool.user),
    };
    let (traffic, ended, whole) = relay::relay(&mut relayed, &handling).await;
    let _ = relayed.client.shutdown().await;
    let (mut stream, tls, login, greeting) = relayed.into_upstream();
    let reusable = matches!(ended, relay::Ended::Client) && whole;
    if reusable && reset(&mut stream, pool.database.as_deref()).await {
        lease.put(MyServer {
            stream,
            tls,
            login,
            greeting,
        });
        lease.release();
        reset_done(config, true);
    } else if reusable {
        tracing::debug!("the server connection could not be reset: closed");
        reset_done(config, false);
    } else {
        tracing::debug!("the client left mid-command: its server connection is closed");
    }
    Ok((traffic, ended))
}

fn reset_done(config: &Config, ok: bool) {
    if let Some(m) = metrics() {
        let name = crate::ops::metrics::target(config.name.as_deref());
        m.pool_reset(name, EngineKind::Mysql, ok);
    }
}

/// `COM_PING`, answered by OK: the connection still works.
async fn ping(stream: &mut TlsStream<Stream>) -> bool {
    let talk = async {
        stream.write_all(&framed(&[COM_PING])).await?;
        stream.flush().await?;
        let payload = read_packet(stream).await?;
        Ok::<_, std::io::Error>(payload.first() == Some(&0x00))
    };
    matches!(tokio::time::timeout(RESET_WITHIN, talk).await, Ok(Ok(true)))
}

/// Resets the session and re-selects `database`, then reads everything the
/// server says up to the end of a marker query's answer; false when any of
/// it failed (the connection is then closed).
async fn reset(stream: &mut TlsStream<Stream>, database: Option<&str>) -> bool {
    let Ok(marker) = crate::secret::random::<12>() else {
        return false;
    };
    let marker = format!("rdsconn-reset-{}", crate::ca::hex(&marker));
    let mut out = framed(&[COM_RESET_CONNECTION]);
    if let Some(db) = database {
        out.extend(framed(&[&[COM_INIT_DB][..], db.as_bytes()].concat()));
    }
    // Aliased: the column's definition must not carry the marker, only
    // the row. A pool without a database must not keep one a client chose
    // (`USE`): nothing unselects it, so such a connection is closed.
    let select = format!("SELECT '{marker}' AS r, DATABASE() IS NULL AS n");
    out.extend(framed(&[&[COM_QUERY][..], select.as_bytes()].concat()));
    let talk = async {
        stream.write_all(&out).await?;
        stream.flush().await?;
        let mut failed = false;
        let needle = marker.as_bytes();
        // Up to the marker's row …
        loop {
            let payload = read_packet(stream).await?;
            if payload.first() == Some(&0xff) {
                failed = true;
            }
            if payload.windows(needle.len()).any(|w| w == needle) {
                // The row's last column: "1" when no database is selected.
                let none_selected = payload.ends_with(&[1, b'1']);
                failed |= database.is_none() && !none_selected;
                break;
            }
        }
        // … and its result set's end (EOF, or OK with 0xFE).
        loop {
            let payload = read_packet(stream).await?;
            match payload.first() {
                Some(0xfe) if payload.len() < 0xff_ffff => break,
                Some(0xff) => {
                    failed = true;
                    break;
                }
                _ => {}
            }
        }
        Ok::<_, std::io::Error>(!failed)
    };
    let done = tokio::time::timeout(RESET_WITHIN, talk).await;
    tracing::debug!("server connection reset: {done:?}");
    matches!(done, Ok(Ok(true)))
}

/// One packet's payload (packets of 16 MiB and more are joined).
async fn read_packet(stream: &mut TlsStream<Stream>) -> std::io::Result<Vec<u8>> {
    let mut payload = Vec::new();
    loop {
        let mut header = [0_u8; 4];
        stream.read_exact(&mut header).await?;
        let len =
            usize::from(header[0]) | usize::from(header[1]) << 8 | usize::from(header[2]) << 16;
        let start = payload.len();
        payload.resize(start + len, 0);
        stream.read_exact(&mut payload[start..]).await?;
        if len < 0xff_ffff {
            return Ok(payload);
        }
    }
}
