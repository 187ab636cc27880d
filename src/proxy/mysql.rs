//! The MySQL side of the proxy: the upstream greeting is read first, so
//! the client is greeted with the server's own version, connection id and
//! capabilities (minus TLS and compression); the client's handshake names
//! the user, for whom rdsconn logs in upstream (`relay`), then the session
//! is relayed (`relay::pump`, which also answers `COM_CHANGE_USER`).

use std::time::Instant;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use super::{Config, Report, Stages};
use crate::engine::mysql::relay::{self, Credentials, Greeted, Upstream};
use crate::engine::mysql::{NoPrompter, wire};
use crate::engine::{ConnectError, Stage, Target, ms};

/// A dialed upstream connection whose greeting has been read.
struct Dialed {
    packets: wire::Packets<TcpStream>,
    greeting: mysql_common::packets::HandshakePacket<'static>,
    stages: Stages,
}

async fn dial(target: &Target) -> Result<Dialed, ConnectError> {
    let dialed = crate::engine::dial(target, &Stage::default()).await?;
    let mut packets = wire::Packets::new(dialed.stream);
    let greeting = wire::greeting(&mut packets).await?;
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

pub(super) async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    config: &Config,
    client: S,
    report: &mut Report,
) {
    // The user is not known before the client's handshake; the dial does
    // not need it.
    let anyone = config.target("", None);
    let first =
        crate::engine::within(config.connect_timeout, "upstream greeting", dial(&anyone)).await;
    let first = match first {
        Ok(d) => d,
        Err(e) => {
            refuse_early(client, 2013, &format!("rdsconn: {e}")).await;
            return report.fail(format!("upstream: {e}"));
        }
    };
    let mut greeted =
        match relay::greet(client, &first.greeting, config.local_password.as_ref()).await {
            Ok(g) => g,
            Err(e) => return report.fail(format!("client: {e}")),
        };
    report.user = Some(greeted.user.clone());
    report.database.clone_from(&greeted.database);
    if let Some(e) = config.refuse_user(&greeted.user) {
        let _ = greeted.refuse(&e).await;
        return report.fail(e);
    }

    let (login, stages) = login(config, &greeted, first).await;
    report.stages = Some(stages);
    let relayed = match greeted.finish(login).await {
        Ok(r) => r,
        Err(e) => return report.fail(format!("upstream: {e}")),
    };
    let (traffic, ended) = relay::pump(relayed, config, &NoPrompter).await;
    report.traffic = traffic;
    match ended {
        relay::Ended::Failed(e) => report.fail(format!("relay: {e}")),
        other => report.ended = other.to_string(),
    }
}

type LoggedIn = (
    wire::Secured,
    wire::LoggedIn,
    mysql_common::packets::HandshakePacket<'static>,
);

/// Logs in upstream as the client's user: over the connection already
/// dialed, and on new ones when the server throttles.
async fn login<S: AsyncRead + AsyncWrite + Unpin>(
    config: &Config,
    greeted: &Greeted<S>,
    first: Dialed,
) -> (Result<LoggedIn, ConnectError>, Stages) {
    let target = config.target(&greeted.user, greeted.database.as_deref());
    let mut next = Some(first);
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
            let result = greeted.login_upstream(upstream, &auth, &NoPrompter).await;
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
/// connection does).
pub(super) async fn refuse_early<S: AsyncRead + AsyncWrite + Unpin>(
    client: S,
    code: u16,
    message: &str,
) {
    let mut packets = wire::Packets::new(client);
    let _ = relay::send_error(&mut packets, code, *b"HY000", message).await;
}
