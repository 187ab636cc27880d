//! rdsconn between a MySQL client and the server: it greets the client as
//! the server would (the server's own version, connection id and
//! capabilities, minus TLS and compression), takes the client's handshake
//! response, logs in upstream over verified TLS as the user the client
//! named (`wire::authenticate`), hands the client the server's OK, and from
//! then on copies bytes both ways.
//!
//! rdsconn's own sessions use it with `mysql_async` on a private unix
//! socket, so every plugin `wire` speaks (`dialog` included) works for the
//! driver, and rdsconn knows the plugin and TLS details it reports.

use std::sync::Arc;

use mysql_common::constants::{CapabilityFlags, StatusFlags};
use mysql_common::io::ParseBuf;
use mysql_common::packets::{
    AuthSwitchRequest, ErrPacket, HandshakePacket, HandshakeResponse, ServerError, SqlState,
};
use mysql_common::scramble;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use super::wire::{self, ClientHello, LoggedIn, Login, Packets, Prompter};
use crate::engine::probe::TlsSummary;
use crate::engine::{Auth, ConnectError, Secret, io_err};
use crate::tls::{PeerChain, TlsPolicy};

/// An upstream connection whose greeting has been read (it offers TLS).
pub struct Upstream<'a> {
    pub packets: Packets<TcpStream>,
    pub greeting: HandshakePacket<'static>,
    /// The name the certificate is verified against.
    pub server_name: &'a str,
    pub policy: &'a TlsPolicy,
}

/// A logged-in pair, ready for [`pump`].
pub struct Relayed<C> {
    pub client: C,
    pub upstream: TlsStream<TcpStream>,
    pub tls: TlsSummary,
    pub login: LoggedIn,
}

/// Greets `client`, checks its `mysql_native_password` answer against
/// `local`, logs in upstream with `auth` and passes
/// the server's OK on. A failure upstream reaches the client as an error
/// packet (the server's own message where there is one) and the caller as
/// the classified error.
pub async fn login<C: AsyncRead + AsyncWrite + Unpin>(
    client: C,
    upstream: Upstream<'_>,
    local: &Secret,
    auth: &Auth,
    prompter: &dyn Prompter,
) -> Result<Relayed<C>, ConnectError> {
    let mut front = Packets::new(client);
    let nonce = nonce()?;
    let greeting = &upstream.greeting;
    let offered = greeting.capabilities().difference(wire::NOT_RELAYED)
        | CapabilityFlags::CLIENT_PROTOCOL_41
        | CapabilityFlags::CLIENT_SECURE_CONNECTION
        | CapabilityFlags::CLIENT_PLUGIN_AUTH;
    let hello = HandshakePacket::new(
        10,
        greeting.server_version_ref(),
        greeting.connection_id(),
        nonce[..8].try_into().unwrap_or_default(),
        Some([&nonce[8..], &[0][..]].concat()),
        offered,
        greeting.default_collation(),
        StatusFlags::SERVER_STATUS_AUTOCOMMIT,
        Some(&b"mysql_native_password"[..]),
    )
    .with_mariadb_ext_capabilities(greeting.mariadb_ext_capabilities());
    front
        .send(&hello)
        .await
        .map_err(io_err("talking to the local client"))?;

    let payload = front
        .read()
        .await
        .map_err(io_err("talking to the local client"))?;
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
    check_local(&mut front, &response, &nonce, local).await?;

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
    let peer = Arc::new(PeerChain::default());
    let upstream_result = async {
        let mut secured = wire::start_tls(
            upstream.packets,
            greeting,
            &hello,
            upstream.server_name,
            upstream.policy,
            &peer,
        )
        .await?;
        let login = wire::authenticate(
            &mut secured.packets,
            greeting,
            &Login {
                user: response.user(),
                database: response.db_name(),
                auth,
                hello: &hello,
                prompter,
            },
        )
        .await?;
        Ok::<_, ConnectError>((secured, login))
    }
    .await;
    match upstream_result {
        Ok((secured, login)) => {
            front
                .write(&login.ok)
                .await
                .map_err(io_err("talking to the local client"))?;
            Ok(Relayed {
                client: front.stream,
                upstream: secured.packets.stream,
                tls: secured.tls,
                login,
            })
        }
        Err(e) => {
            let (code, state) = match &e {
                ConnectError::Auth { .. } => (1045, *b"28000"),
                _ => (2013, *b"HY000"),
            };
            let _ = send_error(&mut front, code, state, &format!("rdsconn: {e}")).await;
            Err(e)
        }
    }
}

/// Copies bytes both ways until either side closes, then closes the other.
pub async fn pump<C: AsyncRead + AsyncWrite + Unpin>(mut relayed: Relayed<C>) {
    let _ = tokio::io::copy_bidirectional(&mut relayed.client, &mut relayed.upstream).await;
    let _ = relayed.upstream.shutdown().await;
    let _ = relayed.client.shutdown().await;
}

/// A private directory (0700, removed on drop) for the driver's socket.
pub fn private_dir() -> Result<tempfile::TempDir, ConnectError> {
    let base = crate::native::private_base();
    tempfile::Builder::new()
        .prefix("rdsconn-")
        .tempdir_in(&base)
        .map_err(|e| {
            ConnectError::Server(format!(
                "creating a private directory in {}: {e}",
                base.display()
            ))
        })
}

/// `N` random bytes.
pub fn random<const N: usize>() -> Result<[u8; N], ConnectError> {
    let mut bytes = [0_u8; N];
    aws_lc_rs::rand::fill(&mut bytes)
        .map_err(|_| ConnectError::Server("the system random generator failed".into()))?;
    Ok(bytes)
}

/// 20 random scramble bytes in 1..=127 (no NUL, as servers send them).
fn nonce() -> Result<[u8; 20], ConnectError> {
    let mut bytes = random::<20>()?;
    for b in &mut bytes {
        *b = *b % 127 + 1;
    }
    Ok(bytes)
}

async fn send_error<S: AsyncRead + AsyncWrite + Unpin>(
    front: &mut Packets<S>,
    code: u16,
    state: [u8; 5],
    message: &str,
) -> std::io::Result<()> {
    let packet = ErrPacket::Error(ServerError::new(
        code,
        Some(SqlState::new(state)),
        message.as_bytes(),
    ));
    front.send(&packet).await
}

/// The local client's `mysql_native_password` answer, asked for again with
/// a switch request when it started with another plugin.
async fn check_local<S: AsyncRead + AsyncWrite + Unpin>(
    front: &mut Packets<S>,
    response: &HandshakeResponse<'_>,
    nonce: &[u8; 20],
    expected: &Secret,
) -> Result<(), ConnectError> {
    let want = scramble::scramble_native(nonce, expected.expose().as_bytes())
        .map(|s| s.to_vec())
        .unwrap_or_default();
    let native = response
        .auth_plugin()
        .is_none_or(|p| p.as_bytes() == b"mysql_native_password");
    let answer = if native {
        response.scramble_buf().to_vec()
    } else {
        let switch = AuthSwitchRequest::new(
            &b"mysql_native_password"[..],
            [&nonce[..], &[0][..]].concat(),
        );
        front
            .send(&switch)
            .await
            .map_err(io_err("talking to the local client"))?;
        front
            .read()
            .await
            .map_err(io_err("talking to the local client"))?
    };
    if constant_time_eq(&answer, &want) {
        return Ok(());
    }
    let user = String::from_utf8_lossy(response.user()).into_owned();
    let msg = format!("Access denied for user '{user}' (the local password is wrong)");
    let _ = send_error(front, 1045, *b"28000", &msg).await;
    Err(ConnectError::Auth {
        message: format!("local client: {msg}"),
        iam: false,
    })
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0_u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
