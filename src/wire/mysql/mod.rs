//! The part of the MySQL protocol rdsconn speaks itself: packets, the
//! server greeting, the TLS upgrade and authentication. Packet layouts come
//! from `mysql_common` (the protocol crate under `mysql_async`); what is
//! here is the order of the exchange and rdsconn's rules:
//!
//! - nothing secret is sent before TLS is up and verified with rdsconn's
//!   verifier; a server that does not offer TLS is refused after its
//!   greeting, before the client says anything;
//! - the client plugins: `mysql_native_password`, `caching_sha2_password`
//!   and `sha256_password` (full authentication as a cleartext password,
//!   which is what both do inside TLS), `mysql_clear_password` (IAM tokens,
//!   PAM with `pam_use_cleartext_plugin`) and `dialog` (PAM's questions: the
//!   first password question gets the password, any other question is
//!   asked on the terminal or fails naming the server's prompt).
//!
//! The drivers cannot do `dialog`, and do not say which plugin was used, so
//! every MySQL session authenticates here; see `relay` for how the driver
//! then gets the session.

pub(crate) mod relay;

use std::borrow::Cow;
use std::collections::HashMap;
use std::io;
use std::sync::Arc;

use crate::net::Stream;
use mysql_common::constants::{CapabilityFlags, MariadbCapabilities};
use mysql_common::io::ParseBuf;
use mysql_common::packets::{
    AuthPlugin, AuthSwitchRequest, ComChangeUser, ComChangeUserMoreData, ErrPacket,
    HandshakePacket, HandshakeResponse, SslRequest,
};
use mysql_common::proto::MySerialize;
use mysql_common::scramble;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_rustls::client::TlsStream;

use crate::net::{ConnectError, io_err};
use crate::secret::{Auth, Secret};
use crate::tls::{PeerChain, TlsFailure, TlsPolicy};

/// The largest packet accepted before authentication completes (real
/// handshake packets are a few hundred bytes; connection attributes may
/// add a few KiB).
const MAX_HANDSHAKE_PACKET: usize = 64 * 1024;

/// `ER_ACCESS_DENIED_ERROR` and `ER_ACCESS_DENIED_NO_PASSWORD_ERROR`.
pub(crate) const ACCESS_DENIED: [u16; 2] = [1045, 1698];

/// What rdsconn asks for on top of the client's capabilities: protocol 4.1,
/// plugin authentication (needed for the switch to `dialog` or
/// `mysql_clear_password`) and TLS.
const REQUIRED: CapabilityFlags = CapabilityFlags::CLIENT_PROTOCOL_41
    .union(CapabilityFlags::CLIENT_SECURE_CONNECTION)
    .union(CapabilityFlags::CLIENT_PLUGIN_AUTH)
    .union(CapabilityFlags::CLIENT_SSL);

/// What never crosses rdsconn: compression (the relay copies bytes as they
/// are) and TLS (only ever between rdsconn and the server).
pub(crate) const NOT_RELAYED: CapabilityFlags =
    CapabilityFlags::CLIENT_COMPRESS.union(CapabilityFlags::CLIENT_SSL);

/// MySQL packets with their sequence ids, over any stream.
pub(crate) struct Packets<S> {
    pub stream: S,
    seq: u8,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Packets<S> {
    pub(crate) fn new(stream: S) -> Self {
        Self { stream, seq: 0 }
    }

    /// Packets continuing a command whose last packet had sequence id
    /// `seq - 1`.
    pub(crate) fn continuing(stream: S, seq: u8) -> Self {
        Self { stream, seq }
    }

    /// Reads one handshake-phase packet; the next write follows its
    /// sequence id.
    pub(crate) async fn read(&mut self) -> io::Result<Vec<u8>> {
        let mut header = [0_u8; 4];
        self.stream.read_exact(&mut header).await?;
        let len =
            usize::from(header[0]) | usize::from(header[1]) << 8 | usize::from(header[2]) << 16;
        if len > MAX_HANDSHAKE_PACKET {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("a {len}-byte packet during the handshake; this does not look like MySQL"),
            ));
        }
        self.seq = header[3].wrapping_add(1);
        let mut payload = vec![0_u8; len];
        self.stream.read_exact(&mut payload).await?;
        Ok(payload)
    }

    /// Writes one packet (handshake packets are far below the 16 MiB that
    /// would need splitting).
    pub(crate) async fn write(&mut self, payload: &[u8]) -> io::Result<()> {
        let len = u32::try_from(payload.len())
            .ok()
            .filter(|&l| l < 0x00ff_ffff)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "packet too large"))?;
        let mut buf = Vec::with_capacity(payload.len() + 4);
        buf.extend_from_slice(&len.to_le_bytes()[..3]);
        buf.push(self.seq);
        buf.extend_from_slice(payload);
        self.stream.write_all(&buf).await?;
        self.stream.flush().await?;
        self.seq = self.seq.wrapping_add(1);
        Ok(())
    }

    /// Serializes and writes a packet.
    pub(crate) async fn send(&mut self, packet: &impl MySerialize) -> io::Result<()> {
        let mut buf = Vec::new();
        packet.serialize(&mut buf);
        self.write(&buf).await
    }
}

/// Reads the server greeting; an error packet (too many connections, host
/// blocked) becomes the server's message, and a server that does not offer
/// TLS is refused here, before rdsconn sends anything.
pub(crate) async fn greeting<S: AsyncRead + AsyncWrite + Unpin>(
    packets: &mut Packets<S>,
) -> Result<HandshakePacket<'static>, ConnectError> {
    // A MySQL server greets at once; one that says nothing for a while may
    // be PostgreSQL, which waits for the client: ask it as PostgreSQL
    // would (its answer is one byte), instead of waiting for the timeout.
    let payload = match tokio::time::timeout(GREETING_WAIT, packets.read()).await {
        Ok(read) => read.map_err(io_err("reading the server greeting"))?,
        Err(_) => return Err(silent_server(&mut packets.stream).await),
    };
    let greeting = parse_greeting(&payload)?;
    if !greeting
        .capabilities()
        .contains(CapabilityFlags::CLIENT_SSL)
    {
        return Err(ConnectError::Tls(TlsFailure::NoTls));
    }
    Ok(greeting)
}

/// How long a server may take to greet before rdsconn asks whether it is
/// PostgreSQL.
const GREETING_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

/// A server that sent no greeting: PostgreSQL answers an `SSLRequest` with
/// one byte at once.
async fn silent_server<S: AsyncRead + AsyncWrite + Unpin>(stream: &mut S) -> ConnectError {
    let asked = async {
        stream
            .write_all(&crate::wire::postgres::SSL_REQUEST)
            .await
            .ok()?;
        let mut answer = [0_u8; 1];
        stream.read_exact(&mut answer).await.ok()?;
        Some(answer[0])
    };
    match tokio::time::timeout(GREETING_WAIT, asked).await {
        Ok(Some(b'S' | b'N')) => ConnectError::WrongProtocol {
            speaks: crate::target::EngineKind::Postgres,
        },
        // Neither: a server that does not answer (a network problem).
        _ => ConnectError::Timeout {
            stage: "waiting for the server's MySQL greeting",
            after: GREETING_WAIT * 2,
        },
    }
}

fn parse_greeting(payload: &[u8]) -> Result<HandshakePacket<'static>, ConnectError> {
    match payload.first() {
        // Anyone on the path can send this: it is marked, and escaped
        // wherever it is shown.
        Some(0xff) => Err(ConnectError::Server(format!(
            "the server refused the connection before TLS (unverified text): {}",
            server_error_text(payload, CapabilityFlags::empty())
        ))),
        Some(10) => ParseBuf(payload)
            .parse::<HandshakePacket<'_>>(())
            .map(HandshakePacket::into_owned)
            .map_err(|_| ConnectError::Server("the server greeting is truncated".into())),
        _ => Err(ConnectError::Server(
            "the server does not speak the MySQL protocol (version 10)".into(),
        )),
    }
}

/// An error packet as `message (ERROR code (state))`.
fn server_error_text(payload: &[u8], caps: CapabilityFlags) -> String {
    match ParseBuf(payload).parse::<ErrPacket<'_>>(caps) {
        Ok(ErrPacket::Error(e)) => match e.sql_state_ref() {
            Some(state) => format!(
                "{} (ERROR {} ({}))",
                e.message_str(),
                e.error_code(),
                state.as_str()
            ),
            None => format!("{} (ERROR {})", e.message_str(), e.error_code()),
        },
        _ => "the server sent a malformed error packet".into(),
    }
}

/// What the client side of a session asks for: rdsconn's own driver or,
/// through the relay, any MySQL client.
#[derive(Clone, Debug)]
pub(crate) struct ClientHello {
    pub capabilities: CapabilityFlags,
    pub mariadb_capabilities: MariadbCapabilities,
    pub max_packet: u32,
    pub collation: u8,
    pub attributes: Option<HashMap<String, String>>,
}

impl ClientHello {
    /// The capabilities sent upstream: the client's, as far as the server
    /// has them, plus what rdsconn needs, minus what it does not relay.
    pub(crate) fn upstream_capabilities(&self, server: CapabilityFlags) -> CapabilityFlags {
        (self.capabilities & server).difference(NOT_RELAYED) | REQUIRED
    }
}

/// The TLS session rdsconn verified.
pub(crate) struct Secured {
    pub packets: Packets<TlsStream<Stream>>,
    pub tls: crate::net::TlsSummary,
}

/// Sends `SSLRequest` and runs the TLS handshake with rdsconn's verifier.
pub(crate) async fn start_tls(
    mut packets: Packets<Stream>,
    greeting: &HandshakePacket<'_>,
    hello: &ClientHello,
    server_name: &str,
    policy: &TlsPolicy,
    peer: &Arc<PeerChain>,
) -> Result<Secured, ConnectError> {
    let request = SslRequest::new(
        hello.upstream_capabilities(greeting.capabilities()),
        hello.max_packet,
        hello.collation,
    )
    .with_mariadb_capabilities(hello.mariadb_capabilities & greeting.mariadb_ext_capabilities());
    packets
        .send(&request)
        .await
        .map_err(io_err("sending SSLRequest"))?;
    let Packets { stream, seq } = packets;
    let (stream, tls) = crate::net::tls_handshake(stream, server_name, policy, peer).await?;
    Ok(Secured {
        packets: Packets { stream, seq },
        tls,
    })
}

/// Answers the questions of the `dialog` plugin that are not the password.
pub(crate) trait Prompter: Send + Sync {
    /// Asks `prompt` (as the server wrote it); `echo` is false for
    /// password-like answers. `None`: nobody can answer.
    fn ask<'a>(&'a self, prompt: &'a str, echo: bool) -> crate::BoxFuture<'a, Option<String>>;
}

/// Nobody to ask: `dialog` questions beyond the password fail.
pub(crate) struct NoPrompter;

impl Prompter for NoPrompter {
    fn ask<'a>(&'a self, _prompt: &'a str, _echo: bool) -> crate::BoxFuture<'a, Option<String>> {
        Box::pin(async { None })
    }
}

/// Who logs in, and with what.
pub(crate) struct Login<'a> {
    pub user: &'a [u8],
    pub database: Option<&'a [u8]>,
    pub auth: &'a Auth,
    pub hello: &'a ClientHello,
    pub prompter: &'a dyn Prompter,
}

/// A completed login.
#[derive(Debug)]
pub(crate) struct LoggedIn {
    /// The client plugin that authenticated (after any switch).
    pub plugin: String,
    /// The server's OK packet, to pass on as it is.
    pub ok: Vec<u8>,
}

/// Sends the handshake response and answers the server until it says OK.
pub(crate) async fn authenticate<S: AsyncRead + AsyncWrite + Unpin>(
    packets: &mut Packets<S>,
    greeting: &HandshakePacket<'_>,
    login: &Login<'_>,
) -> Result<LoggedIn, ConnectError> {
    let plugin = greeting_plugin(greeting);
    let first = initial_response(&plugin, &greeting.nonce(), login.auth.secret())?;
    let (response, caps) = handshake_response(greeting, login, &plugin, &first);
    packets
        .write(&response)
        .await
        .map_err(io_err("sending the handshake response"))?;
    converse(packets, plugin, caps, login).await
}

/// `COM_CHANGE_USER` on a logged-in session: logs in again as `login`'s
/// user (the scramble is still the greeting's), answered as
/// [`authenticate`] does. `caps`: what the session negotiated.
pub(crate) async fn change_user<S: AsyncRead + AsyncWrite + Unpin>(
    packets: &mut Packets<S>,
    greeting: &HandshakePacket<'_>,
    caps: CapabilityFlags,
    login: &Login<'_>,
) -> Result<LoggedIn, ConnectError> {
    let plugin = greeting_plugin(greeting);
    let first = initial_response(&plugin, &greeting.nonce(), login.auth.secret())?;
    let command = ComChangeUser::new()
        .with_user(Some(login.user))
        .with_auth_plugin_data(Some(first.as_slice()))
        .with_database(login.database)
        .with_more_data(Some(
            ComChangeUserMoreData::new(u16::from(login.hello.collation))
                .with_auth_plugin(Some(AuthPlugin::from_bytes(plugin.as_bytes())))
                .with_connect_attributes(login.hello.attributes.clone()),
        ));
    packets.seq = 0;
    packets
        .send(&command)
        .await
        .map_err(io_err("sending COM_CHANGE_USER"))?;
    converse(packets, plugin, caps, login).await
}

fn greeting_plugin(greeting: &HandshakePacket<'_>) -> String {
    greeting
        .auth_plugin_name_str()
        .map_or_else(|| "mysql_native_password".to_string(), Cow::into_owned)
}

/// Answers the server (plugin switch, `caching_sha2` steps, `dialog`
/// questions) until it says OK or fails.
async fn converse<S: AsyncRead + AsyncWrite + Unpin>(
    packets: &mut Packets<S>,
    mut plugin: String,
    caps: CapabilityFlags,
    login: &Login<'_>,
) -> Result<LoggedIn, ConnectError> {
    let mut dialog = Dialog {
        login,
        password_sent: false,
    };
    let mut switched = false;
    loop {
        let packet = packets
            .read()
            .await
            .map_err(io_err("reading the authentication result"))?;
        let reply = match packet.first() {
            Some(0x00) => {
                return Ok(LoggedIn { plugin, ok: packet });
            }
            Some(0xff) => {
                let mut message = server_error_text(&packet, caps);
                let code = packet.get(1..3).map(|c| u16::from_le_bytes([c[0], c[1]]));
                let iam = matches!(login.auth, Auth::IamToken(_));
                if !iam && plugin == "mysql_clear_password" {
                    message.push_str(crate::net::CLEARTEXT_ASKED);
                }
                return Err(if code.is_some_and(|c| ACCESS_DENIED.contains(&c)) {
                    ConnectError::Auth { message, iam }
                } else if let Ok(ErrPacket::Error(e)) =
                    ParseBuf(&packet).parse::<ErrPacket<'_>>(caps)
                {
                    ConnectError::MysqlError {
                        code: e.error_code(),
                        state: e.sql_state_ref().map_or(*b"HY000", |s| {
                            s.as_str().as_bytes().try_into().unwrap_or(*b"HY000")
                        }),
                        message: e.message_str().into_owned(),
                    }
                } else {
                    ConnectError::Server(message)
                });
            }
            Some(0xfe) if !switched => {
                switched = true;
                let request = ParseBuf(&packet)
                    .parse::<AuthSwitchRequest<'_>>(())
                    .map_err(|_| unsupported("mysql_old_password"))?;
                plugin = String::from_utf8_lossy(
                    match request.auth_plugin() {
                        AuthPlugin::Other(name) => name.into_owned(),
                        known => known.as_bytes().to_vec(),
                    }
                    .as_slice(),
                )
                .into_owned();
                if plugin == "dialog" {
                    dialog.answer(request.plugin_data()).await?
                } else {
                    initial_response(&plugin, request.plugin_data(), login.auth.secret())?
                }
            }
            // caching_sha2_password: 3 is "fast authentication succeeded"
            // (OK follows), 4 asks for the password, which inside TLS goes
            // as it is.
            Some(0x01) if is_sha2(&plugin) => match packet.get(1) {
                Some(3) => continue,
                Some(4) => with_nul(login.auth.secret().expose().as_bytes()),
                _ => {
                    return Err(ConnectError::Server(format!(
                        "unexpected {plugin} exchange from the server"
                    )));
                }
            },
            Some(_) if plugin == "dialog" => dialog.answer(&packet).await?,
            _ => {
                return Err(ConnectError::Server(format!(
                    "unexpected packet during {plugin} authentication"
                )));
            }
        };
        packets
            .write(&reply)
            .await
            .map_err(io_err("sending authentication data"))?;
    }
}

/// The handshake response and the capabilities it asks for.
fn handshake_response(
    greeting: &HandshakePacket<'_>,
    login: &Login<'_>,
    plugin: &str,
    first: &[u8],
) -> (Vec<u8>, CapabilityFlags) {
    let response = HandshakeResponse::new(
        Some(first),
        // Only picks a collation, which is replaced below.
        (8, 0, 0),
        Some(login.user),
        login.database,
        Some(AuthPlugin::from_bytes(plugin.as_bytes())),
        login.hello.upstream_capabilities(greeting.capabilities()),
        login.hello.attributes.clone(),
        login.hello.max_packet,
    )
    .with_mariadb_ext_capabilities(
        login.hello.mariadb_capabilities & greeting.mariadb_ext_capabilities(),
    );
    let mut buf = Vec::new();
    response.serialize(&mut buf);
    // capabilities (4), max packet (4), then the client's collation.
    if let Some(c) = buf.get_mut(8) {
        *c = login.hello.collation;
    }
    (buf, response.capabilities())
}

fn is_sha2(plugin: &str) -> bool {
    plugin == "caching_sha2_password" || plugin == "sha256_password"
}

fn with_nul(bytes: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(bytes.len() + 1);
    v.extend_from_slice(bytes);
    v.push(0);
    v
}

fn unsupported(plugin: &str) -> ConnectError {
    ConnectError::AuthMethod {
        message: format!(
            "the server asks for the {plugin:?} authentication plugin, which rdsconn does not speak"
        ),
        hint: None,
        native_client_can: false,
    }
}

/// The first answer for a plugin, to the greeting or to a switch request.
fn initial_response(plugin: &str, nonce: &[u8], secret: &Secret) -> Result<Vec<u8>, ConnectError> {
    let password = secret.expose().as_bytes();
    let nonce = match nonce {
        [head @ .., 0] => head,
        all => all,
    };
    Ok(match plugin {
        "mysql_native_password" => scramble::scramble_native(nonce, password)
            .map(|s| s.to_vec())
            .unwrap_or_default(),
        "caching_sha2_password" => scramble::scramble_sha256(nonce, password)
            .map(|s| s.to_vec())
            .unwrap_or_default(),
        // Inside TLS both send the password itself.
        "sha256_password" | "mysql_clear_password" => with_nul(password),
        // dialog speaks after the server's first question.
        "dialog" => Vec::new(),
        other => return Err(unsupported(other)),
    })
}

/// The client side of MariaDB's `dialog` plugin: each server packet is a
/// question, its first byte the kind (2: echo on, 4: password; +1 on the
/// last question), the rest the prompt.
struct Dialog<'a> {
    login: &'a Login<'a>,
    password_sent: bool,
}

impl Dialog<'_> {
    async fn answer(&mut self, question: &[u8]) -> Result<Vec<u8>, ConnectError> {
        let (kind, prompt) = question.split_first().unwrap_or((&4, &[]));
        let password_like = kind >> 1 == 2;
        if password_like && !self.password_sent {
            self.password_sent = true;
            return Ok(with_nul(self.login.auth.secret().expose().as_bytes()));
        }
        let prompt = String::from_utf8_lossy(prompt);
        let prompt = prompt.trim_end_matches(['\0', '\n']);
        match self.login.prompter.ask(prompt, !password_like).await {
            Some(answer) => Ok(with_nul(answer.as_bytes())),
            None => Err(ConnectError::Auth {
                message: format!(
                    "the server asks {prompt:?} (dialog plugin), and there is no terminal to answer it"
                ),
                iam: false,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mysql_common::constants::StatusFlags;

    fn greeting_bytes(caps: CapabilityFlags, plugin: &str) -> Vec<u8> {
        let mut buf = Vec::new();
        HandshakePacket::new(
            10,
            &b"5.5.5-10.11.6-MariaDB"[..],
            7,
            *b"abcdefgh",
            Some(&b"ijklmnopqrst\0"[..]),
            caps,
            45,
            StatusFlags::empty(),
            Some(plugin.as_bytes()),
        )
        .serialize(&mut buf);
        buf
    }

    #[test]
    fn greeting_needs_tls() {
        let caps = CapabilityFlags::CLIENT_PROTOCOL_41
            | CapabilityFlags::CLIENT_SECURE_CONNECTION
            | CapabilityFlags::CLIENT_PLUGIN_AUTH;
        let g = parse_greeting(&greeting_bytes(
            caps | CapabilityFlags::CLIENT_SSL,
            "mysql_native_password",
        ))
        .unwrap();
        assert_eq!(g.nonce(), b"abcdefghijklmnopqrst");
        assert_eq!(g.connection_id(), 7);
        assert!(g.capabilities().contains(CapabilityFlags::CLIENT_SSL));
        let err = parse_greeting(b"\xff\x10\x04Too many connections").unwrap_err();
        assert_eq!(
            err.to_string(),
            "the server refused the connection before TLS (unverified text): Too many connections (ERROR 1040)"
        );
        assert!(parse_greeting(b"HTTP/1.1").is_err());
        assert!(parse_greeting(&[10, b'8', 0, 1]).is_err(), "truncated");
    }

    #[test]
    fn capabilities_upstream() {
        let hello = ClientHello {
            capabilities: CapabilityFlags::CLIENT_COMPRESS
                | CapabilityFlags::CLIENT_DEPRECATE_EOF
                | CapabilityFlags::CLIENT_MULTI_RESULTS
                | CapabilityFlags::CLIENT_QUERY_ATTRIBUTES,
            mariadb_capabilities: MariadbCapabilities::empty(),
            max_packet: 1 << 24,
            collation: 45,
            attributes: None,
        };
        let server = CapabilityFlags::CLIENT_COMPRESS
            | CapabilityFlags::CLIENT_DEPRECATE_EOF
            | CapabilityFlags::CLIENT_MULTI_RESULTS
            | CapabilityFlags::CLIENT_SSL;
        let up = hello.upstream_capabilities(server);
        assert!(up.contains(CapabilityFlags::CLIENT_DEPRECATE_EOF | REQUIRED));
        assert!(up.contains(CapabilityFlags::CLIENT_MULTI_RESULTS));
        assert!(!up.contains(CapabilityFlags::CLIENT_COMPRESS));
        // The server does not have it: not asked for.
        assert!(!up.contains(CapabilityFlags::CLIENT_QUERY_ATTRIBUTES));
    }

    #[test]
    fn plugin_responses() {
        let secret = Secret::new("pw".into());
        let nonce = b"abcdefghijklmnopqrst\0";
        assert_eq!(
            initial_response("mysql_native_password", nonce, &secret).unwrap(),
            scramble::scramble_native(&nonce[..20], b"pw")
                .unwrap()
                .to_vec()
        );
        assert_eq!(
            initial_response("caching_sha2_password", nonce, &secret)
                .unwrap()
                .len(),
            32
        );
        assert_eq!(
            initial_response("mysql_clear_password", nonce, &secret).unwrap(),
            b"pw\0"
        );
        assert!(
            initial_response("dialog", nonce, &secret)
                .unwrap()
                .is_empty()
        );
        assert!(matches!(
            initial_response("client_ed25519", nonce, &secret),
            Err(ConnectError::AuthMethod { .. })
        ));
        // An empty password scrambles to nothing, as the server expects.
        assert!(
            initial_response("mysql_native_password", nonce, &Secret::new(String::new()))
                .unwrap()
                .is_empty()
        );
    }
}
