//! A TLS probe: open a connection, ask for TLS the way the engine's
//! protocol does (MySQL: read the greeting, send `SSLRequest`; PostgreSQL:
//! send `SSLRequest`, read `S`), run the handshake with rdsconn's verifier,
//! and hang up before authentication.
//!
//! It gives what the drivers do not: the presented certificate chain (also
//! when verification fails), the negotiated protocol and cipher, and TCP
//! and TLS timed separately (for `rdsconn check`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use mysql_common::constants::{CapabilityFlags, MariadbCapabilities};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use super::mysql::wire;
use crate::net::{ConnectError, io_err, ms};
use crate::target::EngineKind;
use crate::tls::{CertSummary, PeerChain, TlsFailure, TlsPolicy};

/// What a successful probe saw.
#[derive(Clone, Debug, Default)]
pub struct Probe {
    pub leaf: Option<CertSummary>,
    pub protocol: Option<String>,
    pub cipher: Option<String>,
    pub tcp_ms: f64,
    pub tls_ms: f64,
}

/// TCP connect to the first address that accepts, then [`upgrade`].
pub async fn probe(
    kind: EngineKind,
    addrs: &[SocketAddr],
    server_name: &str,
    tls: &TlsPolicy,
    peer: &Arc<PeerChain>,
) -> Result<Probe, ConnectError> {
    let t = Instant::now();
    let stream = crate::net::tcp_connect(addrs).await?;
    let tcp_ms = ms(t);
    let mut p = upgrade(kind, stream, server_name, tls, peer).await?;
    p.tcp_ms = tcp_ms;
    Ok(p)
}

/// Asks for TLS on a connected stream and runs the handshake. The
/// presented chain lands in `peer`, even when verification fails.
pub async fn upgrade(
    kind: EngineKind,
    mut stream: TcpStream,
    server_name: &str,
    tls: &TlsPolicy,
    peer: &Arc<PeerChain>,
) -> Result<Probe, ConnectError> {
    let t = Instant::now();
    let mut tls_stream = match kind {
        EngineKind::Mysql => {
            let mut packets = wire::Packets::new(stream);
            let greeting = wire::greeting(&mut packets).await?;
            let hello = wire::ClientHello {
                capabilities: CapabilityFlags::CLIENT_LONG_PASSWORD,
                mariadb_capabilities: MariadbCapabilities::empty(),
                max_packet: 1 << 24,
                collation: 45,
                attributes: None,
            };
            wire::start_tls(packets, &greeting, &hello, server_name, tls, peer)
                .await?
                .packets
                .stream
        }
        EngineKind::Postgres => {
            postgres_ssl_request(&mut stream).await?;
            tls_handshake(stream, server_name, tls, peer).await?.0
        }
    };
    let summary = TlsSummary::of(&tls_stream, peer);
    let _ = tls_stream.shutdown().await;
    Ok(Probe {
        leaf: summary.leaf,
        protocol: summary.protocol,
        cipher: summary.cipher,
        tcp_ms: 0.0,
        tls_ms: ms(t),
    })
}

/// What a verified TLS session negotiated and presented.
#[derive(Clone, Debug, Default)]
pub struct TlsSummary {
    pub leaf: Option<CertSummary>,
    /// e.g. `TLSv1.3`.
    pub protocol: Option<String>,
    pub cipher: Option<String>,
}

impl TlsSummary {
    fn of(stream: &TlsStream<TcpStream>, peer: &PeerChain) -> Self {
        let (_, session) = stream.get_ref();
        Self {
            leaf: peer.get().first().and_then(|c| CertSummary::from_der(c)),
            protocol: session
                .protocol_version()
                .and_then(|v| v.as_str())
                .map(|v| v.replace("TLSv1_", "TLSv1.")),
            cipher: session
                .negotiated_cipher_suite()
                .and_then(|c| c.suite().as_str())
                .map(str::to_string),
        }
    }
}

/// The TLS handshake with rdsconn's verifier, once the engine's protocol
/// has agreed to TLS.
pub async fn tls_handshake(
    stream: TcpStream,
    server_name: &str,
    tls: &TlsPolicy,
    peer: &Arc<PeerChain>,
) -> Result<(TlsStream<TcpStream>, TlsSummary), ConnectError> {
    let config = tls
        .client_config(Arc::clone(peer))
        .map_err(|e| ConnectError::Tls(TlsFailure::Other(e.to_string())))?;
    let name = ServerName::try_from(server_name.to_string()).map_err(|_| {
        ConnectError::Tls(TlsFailure::Other(format!(
            "{server_name:?} is not a valid TLS server name"
        )))
    })?;
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    match connector.connect(name, stream).await {
        Ok(tls_stream) => {
            let summary = TlsSummary::of(&tls_stream, peer);
            Ok((tls_stream, summary))
        }
        Err(e) => Err(match crate::net::find_rustls(&e) {
            Some(r) => ConnectError::Tls(TlsFailure::from_rustls(r, server_name, &peer.get())),
            None => ConnectError::Tls(TlsFailure::Other(e.to_string())),
        }),
    }
}

/// PostgreSQL: `SSLRequest` (length 8, code 80877103), answered by one
/// byte, `S` to go on with TLS.
pub(crate) async fn postgres_ssl_request(stream: &mut TcpStream) -> Result<(), ConnectError> {
    stream
        .write_all(&[0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f])
        .await
        .map_err(io_err("sending SSLRequest"))?;
    let mut answer = [0_u8; 1];
    stream
        .read_exact(&mut answer)
        .await
        .map_err(io_err("reading the SSLRequest answer"))?;
    match answer[0] {
        b'S' => Ok(()),
        b'N' => Err(ConnectError::Tls(TlsFailure::NoTls)),
        other => Err(ConnectError::Server(format!(
            "unexpected answer to SSLRequest (byte {other:#04x}); is this PostgreSQL?"
        ))),
    }
}
