//! The MySQL side of the proxy. A MySQL server speaks first, so the proxy
//! greets each client from a cached server greeting (version,
//! capabilities, minus TLS and compression; read at start-up and refreshed
//! by every login) with a connection id of its own: nothing is dialed for a
//! client that has not answered the greeting within its login deadline.
//! The client's handshake names the user, for whom rdsconn logs in
//! upstream (`relay`); the session is then relayed (`relay::pump`, which
//! answers `COM_CHANGE_USER` and maps `KILL` of a handed-out id to the
//! server's id).

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Instant;

use crate::net::Stream;
use mysql_common::packets::HandshakePacket;
use tokio::io::{AsyncRead, AsyncWrite};

use super::{Config, Report, Stages};
use crate::net::{ConnectError, Stage, ms};
use crate::target::Target;
use crate::text::Untrusted;
use crate::wire::mysql as wire;
use crate::wire::mysql::relay::{self, Credentials, Greeted, Upstream};

/// A dialed upstream connection whose greeting has been read.
pub(super) struct Dialed {
    pub packets: wire::Packets<Stream>,
    pub greeting: HandshakePacket<'static>,
    stages: Stages,
}

pub(super) async fn dial(target: &Target) -> Result<Dialed, ConnectError> {
    let dialed = crate::net::dial(target, &Stage::default()).await?;
    let mut packets = wire::Packets::new(dialed.stream);
    let greeting = match wire::greeting(&mut packets).await {
        Ok(g) => g,
        Err(e) => return Err(crate::net::tunnel::explained(target, e).await),
    };
    Ok(Dialed {
        packets,
        greeting,
        stages: Stages {
            dns: dialed.dns_ms,
            tcp: dialed.connect_ms,
            tls_auth: 0.0,
        },
    })
}

/// The MySQL proxy's shared state: the greeting clients get before any
/// upstream connection exists, and the connection ids handed out.
pub(super) struct State {
    /// The most recent upstream greeting (version, capabilities,
    /// collation): what the server would say.
    greeting: Mutex<Option<HandshakePacket<'static>>>,
    /// Ids clients were greeted with → the server's ids, while they live.
    ids: Mutex<HashMap<u32, u32>>,
    next_id: AtomicU32,
}

/// Handed-out connection ids start high, away from the server's own
/// counter, so that `KILL` of a real id is never mistaken for one of them.
const FIRST_ID: u32 = 0x7000_0001;

impl Default for State {
    fn default() -> Self {
        Self {
            greeting: Mutex::new(None),
            ids: Mutex::new(HashMap::new()),
            next_id: AtomicU32::new(FIRST_ID),
        }
    }
}

/// The state's locks never hold a broken invariant: a poisoned one is used
/// as it is.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl State {
    fn greeting(&self) -> Option<HandshakePacket<'static>> {
        lock(&self.greeting).clone()
    }

    pub(super) fn ids(&self) -> std::sync::MutexGuard<'_, HashMap<u32, u32>> {
        lock(&self.ids)
    }

    /// Dials the server (for no user yet) and reads its greeting, which
    /// becomes the one clients are greeted with.
    async fn read_greeting(&self, config: &Config) -> Result<Dialed, ConnectError> {
        let anyone = config.target("", None);
        let dialed =
            crate::net::within(config.connect_timeout, "upstream greeting", dial(&anyone)).await?;
        self.remember(&dialed.greeting);
        Ok(dialed)
    }

    fn remember(&self, greeting: &HandshakePacket<'static>) {
        *lock(&self.greeting) = Some(greeting.clone());
    }
}

impl relay::ConnectionIds for State {
    fn server_id(&self, client_id: u32) -> Option<u32> {
        self.ids().get(&client_id).copied()
    }
}

/// Forgets a handed-out id when its connection ends.
pub(super) struct IdLease<'a> {
    pub state: &'a State,
    pub id: u32,
}

impl Drop for IdLease<'_> {
    fn drop(&mut self) {
        self.state.ids().remove(&self.id);
    }
}

/// Reads one upstream greeting for the cache (at start-up), so that the
/// first client is greeted without waiting for an upstream connection.
pub(super) async fn prime(config: &Config, state: &State) {
    if let Err(e) = state.read_greeting(config).await {
        tracing::warn!(
            "reading the server's greeting at start-up: {}; the first client waits for it",
            Untrusted(&e.to_string())
        );
    }
}

pub(super) async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    config: &Config,
    state: &State,
    pooled: Option<&super::mypool::MyPools>,
    client: S,
    report: &mut Report,
) {
    // The client is greeted from the cached greeting: nothing is dialed
    // for a client that has not said who it is. Only without a cached
    // greeting (the server was unreachable at start-up) does a client
    // wait for an upstream greeting first.
    let mut first = None;
    let template = if let Some(g) = state.greeting() {
        g
    } else {
        match Box::pin(state.read_greeting(config)).await {
            Ok(d) => {
                let g = d.greeting.clone();
                first = Some(d);
                g
            }
            Err(e) => {
                let chain = crate::error::error_line(&e);
                refuse_early(
                    client,
                    relay::ABORTED_CONNECTION,
                    &format!("rdsconn: {chain}"),
                )
                .await;
                return report.fail(format!("upstream: {e}"));
            }
        }
    };
    let id = state.next_id.fetch_add(1, Ordering::Relaxed);
    let deadline = tokio::time::Instant::now() + config.client_login_timeout;
    let greeted = super::client_step(deadline, config.client_login_timeout, async {
        relay::greet(client, &template, id, config.local_password.as_ref())
            .await
            .map_err(|e| e.to_string())
    })
    .await;
    let mut greeted = match greeted {
        Ok(g) => g,
        Err(e) => return report.client_failed(format!("client: {e}")),
    };
    report.user = Some(greeted.user.clone());
    report.database.clone_from(&greeted.database);
    if let Some(e) = config.refuse_user(&greeted.user) {
        let _ = greeted.refuse(&e).await;
        return report.refused(e, crate::ops::metrics::Refusal::WrongUser);
    }

    if let Some(my) = pooled {
        drop(first);
        match Box::pin(super::mypool::serve(config, state, my, greeted, id)).await {
            Ok((traffic, ended)) => {
                report.traffic = traffic;
                match ended {
                    relay::Ended::Failed(e) => report.fail(format!("relay: {e}")),
                    dropped @ relay::Ended::Dropped(_) => report.fail(dropped),
                    other => report.ended = other.to_string(),
                }
            }
            Err(why) => report.fail(why),
        }
        return;
    }
    // Boxed: a client's task keeps the size of its largest step while it
    // lives, and a login is large.
    let (login, stages) = Box::pin(login(config, &greeted, first)).await;
    report.stages = Some(stages);
    let _lease = match &login {
        Ok((_, _, greeting)) => {
            state.remember(greeting);
            state.ids().insert(id, greeting.connection_id());
            Some(IdLease { state, id })
        }
        Err(_) => None,
    };
    let relayed = match greeted.finish(login).await {
        Ok(r) => r,
        Err(e) => return report.fail(format!("upstream: {e}")),
    };
    let handling = relay::Handling {
        credentials: config,
        prompter: &crate::wire::mysql::NoPrompter,
        ids: Some(state),
        pooled_user: None,
    };
    let (traffic, ended) = relay::pump(relayed, &handling).await;
    report.traffic = traffic;
    match ended {
        relay::Ended::Failed(e) => report.fail(format!("relay: {e}")),
        dropped @ relay::Ended::Dropped(_) => report.fail(dropped),
        other => report.ended = other.to_string(),
    }
}

type LoggedIn = (
    wire::Secured,
    wire::LoggedIn,
    mysql_common::packets::HandshakePacket<'static>,
);

/// Logs in upstream as the client's user: over the connection already
/// dialed if there is one, else (and when the server throttles) on a new
/// one.
async fn login<S: AsyncRead + AsyncWrite + Unpin>(
    config: &Config,
    greeted: &Greeted<S>,
    first: Option<Dialed>,
) -> (Result<LoggedIn, ConnectError>, Stages) {
    let target = config.target(&greeted.user, greeted.database.as_deref());
    let mut next = first;
    let stages = std::sync::Mutex::new(Stages::default());
    let result = super::retrying(config, || {
        let dialed = next.take();
        let (target, stages) = (&target, &stages);
        async move {
            let dialed = match dialed {
                Some(d) => d,
                None => dial(target).await?,
            };
            let mut timed = dialed.stages;
            let auth = config.auth_for(&target.user).await?;
            let t = Instant::now();
            let upstream = Upstream {
                packets: dialed.packets,
                greeting: dialed.greeting,
                server_name: target.host.as_str(),
                policy: &config.policy,
            };
            let result = greeted
                .login_upstream(upstream, &auth, &crate::wire::mysql::NoPrompter)
                .await;
            timed.tls_auth = ms(t);
            *stages
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = timed;
            result
        }
    })
    .await;
    let stages = stages
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    (result, stages)
}

/// Answers a client in place of a greeting (as a server that refuses a
/// connection does): without a SQL state, which only clients that have
/// said they speak protocol 4.1 (in their handshake answer) read.
pub(super) async fn refuse_early<S: AsyncRead + AsyncWrite + Unpin>(
    client: S,
    code: u16,
    message: &str,
) {
    let mut packets = wire::Packets::new(client);
    let _ = relay::send_error(&mut packets, code, None, message).await;
}
