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

use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{ConnectError, ms};
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
    let stream = super::tcp_connect(addrs).await?;
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
    match kind {
        EngineKind::Mysql => mysql_ssl_request(&mut stream).await?,
        EngineKind::Postgres => postgres_ssl_request(&mut stream).await?,
    }
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
        Ok(mut tls_stream) => {
            let tls_ms = ms(t);
            let (_, session) = tls_stream.get_ref();
            let protocol = session
                .protocol_version()
                .and_then(|v| v.as_str())
                .map(|v| v.replace("TLSv1_", "TLSv1."));
            let cipher = session
                .negotiated_cipher_suite()
                .and_then(|c| c.suite().as_str())
                .map(str::to_string);
            let _ = tls_stream.shutdown().await;
            Ok(Probe {
                leaf: peer.get().first().and_then(|c| CertSummary::from_der(c)),
                protocol,
                cipher,
                tcp_ms: 0.0,
                tls_ms,
            })
        }
        Err(e) => Err(match super::find_rustls(&e) {
            Some(r) => ConnectError::Tls(TlsFailure::from_rustls(r, server_name, &peer.get())),
            None => ConnectError::Tls(TlsFailure::Other(e.to_string())),
        }),
    }
}

fn io_err(what: &'static str) -> impl Fn(std::io::Error) -> ConnectError {
    move |source| ConnectError::Server(format!("{what}: {source}"))
}

/// PostgreSQL: `SSLRequest` (length 8, code 80877103), answered by one
/// byte, `S` to go on with TLS.
async fn postgres_ssl_request(stream: &mut TcpStream) -> Result<(), ConnectError> {
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

/// Largest greeting rdsconn reads (real ones are about 100 bytes).
const MAX_GREETING: usize = 16 * 1024;
const CLIENT_LONG_PASSWORD: u32 = 0x0000_0001;
const CLIENT_PROTOCOL_41: u32 = 0x0000_0200;
const CLIENT_SSL: u32 = 0x0000_0800;
const CLIENT_SECURE_CONNECTION: u32 = 0x0000_8000;

/// MySQL: read the greeting, check it offers TLS, send `SSLRequest`.
async fn mysql_ssl_request(stream: &mut TcpStream) -> Result<(), ConnectError> {
    let mut header = [0_u8; 4];
    stream
        .read_exact(&mut header)
        .await
        .map_err(io_err("reading the server greeting"))?;
    let len = usize::from(header[0]) | usize::from(header[1]) << 8 | usize::from(header[2]) << 16;
    if len > MAX_GREETING {
        return Err(ConnectError::Server(format!(
            "the server greeting is {len} bytes; this does not look like MySQL"
        )));
    }
    let mut greeting = vec![0_u8; len];
    stream
        .read_exact(&mut greeting)
        .await
        .map_err(io_err("reading the server greeting"))?;
    if !greeting_offers_tls(&greeting)? {
        return Err(ConnectError::Tls(TlsFailure::NoTls));
    }
    // SSLRequest: capabilities, max packet size, character set, 23 zeros;
    // sequence id 1.
    let caps = CLIENT_LONG_PASSWORD | CLIENT_PROTOCOL_41 | CLIENT_SSL | CLIENT_SECURE_CONNECTION;
    let mut request = Vec::with_capacity(36);
    request.extend_from_slice(&[32, 0, 0, 1]);
    request.extend_from_slice(&caps.to_le_bytes());
    request.extend_from_slice(&(1_u32 << 24).to_le_bytes());
    request.push(45); // utf8mb4_general_ci
    request.extend_from_slice(&[0; 23]);
    stream
        .write_all(&request)
        .await
        .map_err(io_err("sending SSLRequest"))
}

/// Whether a protocol-10 greeting advertises `CLIENT_SSL`; an error packet
/// (too many connections, host blocked) becomes the server's message.
fn greeting_offers_tls(greeting: &[u8]) -> Result<bool, ConnectError> {
    match greeting.first() {
        Some(0xff) => {
            let code = greeting
                .get(1..3)
                .map_or(0, |b| u16::from_le_bytes([b[0], b[1]]));
            let message = String::from_utf8_lossy(greeting.get(3..).unwrap_or_default());
            Err(ConnectError::Server(format!("{message} (ERROR {code})")))
        }
        Some(10) => {
            // version (NUL-terminated), connection id (4), scramble (8),
            // filler (1), then the lower two capability bytes.
            let version_end = greeting.iter().skip(1).position(|&b| b == 0).map(|p| p + 1);
            let caps_at = version_end.map(|end| end + 1 + 4 + 8 + 1);
            let caps = caps_at
                .and_then(|at| greeting.get(at..at + 2))
                .map(|b| u32::from(u16::from_le_bytes([b[0], b[1]])));
            caps.map(|c| c & CLIENT_SSL != 0)
                .ok_or_else(|| ConnectError::Server("the server greeting is truncated".into()))
        }
        _ => Err(ConnectError::Server(
            "the server does not speak the MySQL protocol (version 10)".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greeting_parsing() {
        // protocol 10, "8.0.36\0", id, 8-byte scramble, filler, caps.
        let mut g = vec![10];
        g.extend_from_slice(b"8.0.36\0");
        g.extend_from_slice(&[1, 0, 0, 0]);
        g.extend_from_slice(&[0x41; 8]);
        g.push(0);
        let with_ssl = [&g[..], &[0xff, 0xff]].concat();
        let without = [&g[..], &[0xff, 0xf7]].concat();
        assert!(greeting_offers_tls(&with_ssl).unwrap());
        assert!(!greeting_offers_tls(&without).unwrap());
        assert!(greeting_offers_tls(&g).is_err(), "truncated");
        let err = greeting_offers_tls(b"\xff\x10\x04Too many connections").unwrap_err();
        assert_eq!(err.to_string(), "Too many connections (ERROR 1040)");
        assert!(greeting_offers_tls(b"HTTP/1.1").is_err());
    }
}
