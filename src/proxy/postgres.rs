//! The PostgreSQL side of the proxy.
//!
//! The client's `SSLRequest` / `GSSENCRequest` are answered "no" (TLS is
//! upstream), its `StartupMessage` is read (user, database) and forwarded
//! over a new verified TLS connection; rdsconn answers the server's
//! password request (cleartext for IAM tokens and PAM, MD5 or SCRAM for
//! passwords) itself, then relays `AuthenticationOk` and everything after
//! byte for byte. A `CancelRequest` goes to the server on a connection of
//! its own, as libpq sends it.

use std::time::Instant;

use crate::net::Stream;
use bytes::BytesMut;
use postgres_protocol::authentication::sasl::{self, ChannelBinding, ScramSha256};
use postgres_protocol::message::frontend;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_rustls::client::TlsStream;

use super::{Config, Report, Stages};
use crate::net::{ConnectError, Stage, io_err, ms};
use crate::ops::metrics::Refusal;
use crate::secret::Auth;
use crate::secret::constant_time_eq;
use crate::target::Target;
use crate::tls::PeerChain;
use crate::wire::mysql::relay::{self, Credentials};

const SSL_REQUEST: u32 = 80_877_103;
const GSSENC_REQUEST: u32 = 80_877_104;
const CANCEL_REQUEST: u32 = 80_877_102;
/// `AuthenticationSASLContinue`.
const SASL_CONTINUE: u32 = 11;
/// Startup packets are small; libpq's limit is 10000 bytes.
const MAX_STARTUP: usize = 10_000;
/// Server messages before `AuthenticationOk` are small too.
const MAX_AUTH_MESSAGE: usize = 64 * 1024;
const BUFFER: usize = 64 * 1024;

/// A client's byte stream, whatever carries it.
pub(super) trait ClientIo: AsyncRead + AsyncWrite + Unpin + Send {}

impl<T: AsyncRead + AsyncWrite + Unpin + Send> ClientIo for T {}

/// A pool that serves clients once their startup packet is read
/// (`--pool-mode session|transaction`), and answers their cancel requests.
pub(super) trait Pooled: Sync {
    /// Serves the client from its startup packet on.
    fn serve<'a>(
        &'a self,
        config: &'a Config,
        client: &'a mut dyn ClientIo,
        startup: &'a [u8],
        who: (&'a str, Option<&'a str>),
        report: &'a mut Report,
    ) -> crate::BoxFuture<'a, ()>;

    /// The server key a client's `CancelRequest` stands for, while that
    /// client holds a server connection.
    fn cancel_key(&self, packet: &[u8]) -> Option<[u8; 8]>;
}

/// What the client opened with.
enum Opening {
    /// Protocol 3.x startup: the packet as sent, and its parameters.
    Startup {
        packet: Vec<u8>,
        user: String,
        database: Option<String>,
    },
    Cancel(Vec<u8>),
}

pub(super) async fn serve<S: AsyncRead + AsyncWrite + Unpin + Send>(
    config: &Config,
    pooled: Option<&dyn Pooled>,
    mut client: S,
    report: &mut Report,
) {
    let deadline = tokio::time::Instant::now() + config.client_login_timeout;
    let limit = config.client_login_timeout;
    let opening = match super::client_step(deadline, limit, read_opening(&mut client)).await {
        Ok(o) => o,
        Err(e) => {
            let _ = send_error(&mut client, "08P01", &e).await;
            return report.client_failed(format!("client: {e}"));
        }
    };
    let (packet, user, database) = match opening {
        Opening::Cancel(packet) => return Box::pin(cancel(config, pooled, &packet, report)).await,
        Opening::Startup {
            packet,
            user,
            database,
        } => (packet, user, database),
    };
    report.user = Some(user.clone());
    report.database.clone_from(&database);
    if let Some(e) = config.refuse_user(&user) {
        let _ = send_error(&mut client, "28000", &e.to_string()).await;
        return report.refused(e, Refusal::WrongUser);
    }
    if let Some(expected) = &config.local_password {
        let checked =
            super::client_step(deadline, limit, check_local(&mut client, &user, expected)).await;
        if let Err(why) = checked {
            return report.client_failed(why);
        }
    }

    if let Some(pg) = pooled {
        let mut counted = super::Metered::new(&mut client);
        let who = (user.as_str(), database.as_deref());
        pg.serve(config, &mut counted, &packet, who, report).await;
        report.traffic = counted.traffic();
        return;
    }
    let target = config.target(&user, database.as_deref());
    // Boxed, as the pooled path: a client's task keeps the size of its
    // largest step for as long as it lives, and a login is large.
    let login = Box::pin(super::retrying(config, || login(config, &target, &packet))).await;
    let (mut upstream, to_client, stages) = match login {
        Ok(up) => up,
        Err(Failure { error, to_client }) => {
            let why = crate::error::error_line(&error);
            let _ = if let Some(raw) = to_client {
                client.write_all(&raw).await
            } else {
                send_error(&mut client, sqlstate(&error), &format!("rdsconn: {why}")).await
            };
            return report.fail(format!("upstream: {why}"));
        }
    };
    report.stages = Some(stages);
    if let Err(e) = client.write_all(&to_client).await {
        return report.fail(format!("client: {e}"));
    }
    let mut counted = super::Metered::new(&mut client);
    let ended = pump(&mut counted, &mut upstream).await;
    report.traffic = counted.traffic();
    match ended {
        relay::Ended::Failed(e) => report.fail(format!("relay: {e}")),
        dropped @ relay::Ended::Dropped(_) => report.fail(dropped),
        relay::Ended::Client | relay::Ended::Server => report.ended = "closed".into(),
    }
}

/// `Terminate`: the client ends its session.
const TERMINATE: [u8; 5] = [b'X', 0, 0, 0, 4];

/// Relays bytes both ways until one side ends. A side that goes away
/// abruptly (no `Terminate`, no TLS `close_notify`) ends the session
/// normally when it is the client; the server ending a session the
/// client did not end (a restart, a failover, `pg_terminate_backend`, a
/// broken network) is a drop, said as such.
async fn pump<C, U>(client: &mut C, upstream: &mut U) -> relay::Ended
where
    C: AsyncRead + AsyncWrite + Unpin,
    U: AsyncRead + AsyncWrite + Unpin,
{
    let mut up = vec![0_u8; BUFFER];
    let mut down = vec![0_u8; BUFFER];
    // The client's last bytes, to see its Terminate.
    let mut tail = [0_u8; TERMINATE.len()];
    let ended = loop {
        tokio::select! {
            read = client.read(&mut up) => match read {
                Ok(0) => break relay::Ended::Client,
                Ok(n) => {
                    let keep = n.min(tail.len());
                    tail.rotate_left(keep);
                    let at = tail.len() - keep;
                    tail[at..].copy_from_slice(&up[n - keep..n]);
                    if let Err(e) = send(upstream, &up[..n]).await {
                        break relay::Ended::by_server(Err(e), tail == TERMINATE);
                    }
                }
                Err(e) => break relay::ended_by(e, relay::Ended::Client),
            },
            read = upstream.read(&mut down) => match read {
                Ok(0) => break relay::Ended::by_server(Ok(()), tail == TERMINATE),
                Ok(n) => {
                    if let Err(e) = send(client, &down[..n]).await {
                        break relay::ended_by(e, relay::Ended::Client);
                    }
                }
                Err(e) => break relay::Ended::by_server(Err(e), tail == TERMINATE),
            },
        }
    };
    let _ = upstream.shutdown().await;
    let _ = client.shutdown().await;
    ended
}

/// Writes `bytes` to one side of the relay, at once.
async fn send<S: AsyncWrite + Unpin>(to: &mut S, bytes: &[u8]) -> std::io::Result<()> {
    to.write_all(bytes).await?;
    to.flush().await
}

/// Reads the client's first packet, answering TLS and GSS encryption
/// requests with "no" first.
async fn read_opening<S: AsyncRead + AsyncWrite + Unpin>(
    client: &mut S,
) -> Result<Opening, String> {
    let mut asked_tls = false;
    loop {
        let len = client.read_u32().await.map_err(|e| {
            if asked_tls && e.kind() == std::io::ErrorKind::UnexpectedEof {
                // libpq with sslmode=require (or verify-*) hangs up here.
                "the client asked for TLS and hung up when told no: this listener speaks plain \
                 protocol (TLS is between rdsconn and the server): connect with sslmode=disable \
                 or sslmode=prefer"
                    .to_string()
            } else {
                format!("reading the startup packet: {e}")
            }
        })?;
        // A TLS record (0x16 0x03 …): the client opened with a TLS
        // handshake instead of a startup packet.
        if len >> 24 == 0x16 && (len >> 16) & 0xff == 0x03 {
            return Err(
                "the client started a TLS handshake; this listener speaks plain protocol \
                 (TLS is between rdsconn and the server): connect with sslmode=disable"
                    .into(),
            );
        }
        let len = usize::try_from(len).unwrap_or(usize::MAX);
        if !(8..=MAX_STARTUP).contains(&len) {
            return Err(format!("invalid startup packet length {len}"));
        }
        let mut packet = vec![0_u8; len];
        packet[..4].copy_from_slice(&u32::try_from(len).unwrap_or(0).to_be_bytes());
        client
            .read_exact(&mut packet[4..])
            .await
            .map_err(|e| format!("reading the startup packet: {e}"))?;
        let code = u32::from_be_bytes([packet[4], packet[5], packet[6], packet[7]]);
        match code {
            SSL_REQUEST | GSSENC_REQUEST => {
                asked_tls = true;
                client
                    .write_all(b"N")
                    .await
                    .map_err(|e| format!("answering SSLRequest: {e}"))?;
            }
            CANCEL_REQUEST if len == 16 => return Ok(Opening::Cancel(packet)),
            code if code >> 16 == 3 => {
                let params = parameters(&packet[8..]);
                let user = params
                    .iter()
                    .find(|(k, _)| k == "user")
                    .map(|(_, v)| v.clone())
                    .filter(|u| !u.is_empty())
                    .ok_or("the startup packet names no user")?;
                let database = params
                    .into_iter()
                    .find(|(k, _)| k == "database")
                    .map(|(_, v)| v);
                return Ok(Opening::Startup {
                    packet,
                    user,
                    database,
                });
            }
            other => {
                return Err(format!(
                    "unsupported frontend protocol {}.{}",
                    other >> 16,
                    other & 0xffff
                ));
            }
        }
    }
}

/// `name\0value\0…\0`.
pub(super) fn parameters(body: &[u8]) -> Vec<(String, String)> {
    let mut fields = body
        .split(|&b| b == 0)
        .map(|f| String::from_utf8_lossy(f).into_owned());
    let mut out = Vec::new();
    while let (Some(k), Some(v)) = (fields.next(), fields.next()) {
        if k.is_empty() {
            break;
        }
        out.push((k, v));
    }
    out
}

/// Asks the client for the local password (cleartext: it stays on this
/// machine's loopback or socket).
async fn check_local<S: AsyncRead + AsyncWrite + Unpin>(
    client: &mut S,
    user: &str,
    expected: &crate::secret::Secret,
) -> Result<(), String> {
    client
        .write_all(&[b'R', 0, 0, 0, 8, 0, 0, 0, 3])
        .await
        .map_err(|e| format!("client: {e}"))?;
    let (kind, body) = read_message(client, MAX_STARTUP)
        .await
        .map_err(|e| format!("client: {e}"))?;
    let given = body.strip_suffix(&[0]).unwrap_or(&body);
    if kind == b'p' && constant_time_eq(given, expected.expose().as_bytes()) {
        return Ok(());
    }
    let msg = format!(
        "password authentication failed for user \"{user}\" (rdsconn proxy's local password)"
    );
    let _ = send_error(client, "28P01", &msg).await;
    Err(format!("client: {msg}"))
}

/// An upstream failure, with the server's own error message to pass on
/// when there is one.
pub(super) struct Failure {
    pub error: ConnectError,
    pub to_client: Option<Vec<u8>>,
}

impl super::Refused for Failure {
    fn is_refused(&self) -> bool {
        super::Refused::is_refused(&self.error)
    }

    fn cause(&self) -> &ConnectError {
        &self.error
    }
}

impl From<ConnectError> for Failure {
    fn from(error: ConnectError) -> Self {
        Self {
            error,
            to_client: None,
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.error.fmt(f)
    }
}

/// Dials, upgrades to verified TLS and logs in; returns the session and
/// what the client gets (server notices, `AuthenticationOk`).
pub(super) async fn login(
    config: &Config,
    target: &Target,
    startup: &[u8],
) -> Result<(TlsStream<Stream>, Vec<u8>, Stages), Failure> {
    let (mut tls, mut stages) = upgrade(config, target).await?;
    let t = Instant::now();
    tls.write_all(startup)
        .await
        .map_err(io_err("sending the startup packet"))?;
    let auth = config.auth_for(&target.user).await?;
    let mut to_client = Vec::new();
    let mut scram: Option<ScramSha256> = None;
    loop {
        let (kind, body) = read_message(&mut tls, MAX_AUTH_MESSAGE)
            .await
            .map_err(io_err("reading the server's authentication request"))?;
        match kind {
            b'R' => {
                let code = body
                    .get(..4)
                    .map_or(u32::MAX, |c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]));
                let data = body.get(4..).unwrap_or_default();
                if code == 0 {
                    push_message(&mut to_client, kind, &body);
                    stages.tls_auth += ms(t);
                    return Ok((tls, to_client, stages));
                }
                if code == SASL_CONTINUE {
                    scram_update(&mut scram, data).await?;
                }
                let mut out = BytesMut::new();
                answer(code, data, &auth, &target.user, &mut scram, &mut out)?;
                if !out.is_empty() {
                    tls.write_all(&out)
                        .await
                        .map_err(io_err("sending the password"))?;
                }
            }
            b'E' => {
                let mut raw = Vec::new();
                push_message(&mut raw, kind, &body);
                return Err(Failure {
                    error: classify(&body, &auth),
                    to_client: Some(raw),
                });
            }
            // NegotiateProtocolVersion, notices: the client's business.
            _ => push_message(&mut to_client, kind, &body),
        }
    }
}

/// TCP (DNS and connect timed) and TLS with rdsconn's verifier.
async fn upgrade(
    config: &Config,
    target: &Target,
) -> Result<(TlsStream<Stream>, Stages), ConnectError> {
    let dialed = crate::net::dial(target, &Stage::default()).await?;
    let t = Instant::now();
    let mut stream = dialed.stream;
    if let Err(e) = crate::wire::postgres::postgres_ssl_request(&mut stream).await {
        return Err(crate::net::tunnel::explained(target, e).await);
    }
    let peer = std::sync::Arc::new(PeerChain::default());
    let (tls, _) =
        crate::net::tls_handshake(stream, target.host.as_str(), &config.policy, &peer).await?;
    Ok((
        tls,
        Stages {
            dns: dialed.dns_ms,
            tcp: dialed.connect_ms,
            tls_auth: ms(t),
        },
    ))
}

/// The answer to an authentication request, into `out`.
fn answer(
    code: u32,
    data: &[u8],
    auth: &Auth,
    user: &str,
    scram: &mut Option<ScramSha256>,
    out: &mut BytesMut,
) -> Result<(), ConnectError> {
    let secret = auth.secret().expose().as_bytes();
    match code {
        // Cleartext: IAM tokens and PAM ask this way.
        3 => {
            frontend::password_message(secret, out).map_err(|e| ConnectError::Server(e.to_string()))
        }
        5 => {
            let salt: [u8; 4] = data
                .get(..4)
                .and_then(|s| s.try_into().ok())
                .ok_or_else(|| broken("a short MD5 salt"))?;
            let hashed = postgres_protocol::authentication::md5_hash(user.as_bytes(), secret, salt);
            frontend::password_message(hashed.as_bytes(), out)
                .map_err(|e| ConnectError::Server(e.to_string()))
        }
        10 => {
            let offered = data
                .split(|&b| b == 0)
                .any(|m| m == sasl::SCRAM_SHA_256.as_bytes());
            if !offered {
                return Err(unsupported("a SASL mechanism other than SCRAM-SHA-256"));
            }
            let s = ScramSha256::new(secret, ChannelBinding::unsupported());
            frontend::sasl_initial_response(sasl::SCRAM_SHA_256, s.message(), out)
                .map_err(|e| ConnectError::Server(e.to_string()))?;
            *scram = Some(s);
            Ok(())
        }
        // The server's challenge was taken in by `scram_update`.
        SASL_CONTINUE => {
            let s = scram
                .as_mut()
                .ok_or_else(|| broken("SASLContinue out of order"))?;
            frontend::sasl_response(s.message(), out)
                .map_err(|e| ConnectError::Server(e.to_string()))
        }
        12 => {
            let s = scram
                .as_mut()
                .ok_or_else(|| broken("SASLFinal out of order"))?;
            s.finish(data)
                .map_err(|_| broken("a server signature that does not verify"))
        }
        7 | 8 => Err(unsupported("Kerberos (GSSAPI)")),
        9 => Err(unsupported("SSPI")),
        other => Err(unsupported(&format!("authentication method {other}"))),
    }
}

/// PBKDF2 runs at most as many at once as there are cores: a burst of
/// logins queues here instead of starting a blocking thread each.
static PBKDF2: std::sync::LazyLock<tokio::sync::Semaphore> = std::sync::LazyLock::new(|| {
    tokio::sync::Semaphore::new(std::thread::available_parallelism().map_or(1, usize::from))
});

/// Takes in the server's SCRAM challenge. The salted password costs 4,096
/// PBKDF2 rounds: done on the blocking pool, so that a burst of logins does
/// not hold up the threads relaying open sessions.
async fn scram_update(scram: &mut Option<ScramSha256>, data: &[u8]) -> Result<(), ConnectError> {
    let mut s = scram
        .take()
        .ok_or_else(|| broken("SASLContinue out of order"))?;
    let data = data.to_vec();
    let _permit = PBKDF2
        .acquire()
        .await
        .map_err(|e| ConnectError::Server(format!("computing the SCRAM proof: {e}")))?;
    let updated = tokio::task::spawn_blocking(move || s.update(&data).map(|()| s))
        .await
        .map_err(|e| ConnectError::Server(format!("computing the SCRAM proof: {e}")))?;
    *scram = Some(updated.map_err(|e| broken(&e.to_string()))?);
    Ok(())
}

fn broken(what: &str) -> ConnectError {
    ConnectError::Server(format!("{what} in the server's SCRAM exchange"))
}

fn unsupported(what: &str) -> ConnectError {
    ConnectError::AuthMethod {
        message: format!("the server asks for {what}, which rdsconn proxy does not speak"),
        hint: None,
        native_client_can: false,
    }
}

/// A server `ErrorResponse` during login: authentication failures by
/// SQLSTATE, the rest as server errors.
fn classify(body: &[u8], auth: &Auth) -> ConnectError {
    let (code, text) = error_fields(body);
    if code == "28P01" || code == "28000" {
        ConnectError::Auth {
            message: text,
            iam: matches!(auth, Auth::IamToken(_)),
        }
    } else {
        ConnectError::Server(text)
    }
}

/// An `ErrorResponse`'s SQLSTATE, and its message with the SQLSTATE.
pub(super) fn error_fields(body: &[u8]) -> (String, String) {
    let (mut code, mut message) = (String::new(), String::new());
    for field in body.split(|&b| b == 0) {
        match field.split_first() {
            Some((b'C', v)) => code = String::from_utf8_lossy(v).into_owned(),
            Some((b'M', v)) => message = String::from_utf8_lossy(v).into_owned(),
            _ => {}
        }
    }
    let text = format!("{message} ({code})");
    (code, text)
}

/// The SQLSTATE a client gets for rdsconn's own upstream failures.
pub(super) fn sqlstate(e: &ConnectError) -> &'static str {
    match e {
        ConnectError::Auth { .. } | ConnectError::AuthMethod { .. } | ConnectError::Refused(_) => {
            "28000"
        }
        _ => "08006",
    }
}

/// Forwards a `CancelRequest` to the server over its own verified TLS
/// connection, and waits for the server to hang up.
async fn cancel(config: &Config, pooled: Option<&dyn Pooled>, packet: &[u8], report: &mut Report) {
    // A pooled client's key is rdsconn's: it stands for the server
    // connection the client holds now, if any.
    let mapped;
    let packet = match pooled {
        None => packet,
        Some(pg) => {
            let Some(key) = pg.cancel_key(packet) else {
                report.ended = "cancel request for no running query: ignored".into();
                return;
            };
            mapped = [&packet[..8], &key[..]].concat();
            &mapped[..]
        }
    };
    // The cancel key is the secret here; no user is involved.
    let target = config.target("", None);
    let sent = crate::net::within(config.connect_timeout, "cancel request", async {
        let (mut tls, stages) = upgrade(config, &target).await?;
        tls.write_all(packet)
            .await
            .map_err(io_err("sending the cancel request"))?;
        tls.flush()
            .await
            .map_err(io_err("sending the cancel request"))?;
        let mut rest = Vec::new();
        let _ = tls.read_to_end(&mut rest).await;
        Ok(stages)
    })
    .await;
    match sent {
        Ok(stages) => {
            report.stages = Some(stages);
            report.ended = "cancel request forwarded".into();
            if let Some(m) = crate::ops::metrics::metrics() {
                m.cancelled(config.kind);
            }
        }
        Err(e) => report.fail(format!("cancel request: {e}")),
    }
}

/// Reads one message: type byte, length (including itself), body.
pub(super) async fn read_message<S: AsyncRead + Unpin>(
    stream: &mut S,
    max: usize,
) -> std::io::Result<(u8, Vec<u8>)> {
    let kind = stream.read_u8().await?;
    let len = usize::try_from(stream.read_u32().await?).unwrap_or(usize::MAX);
    if !(4..=max).contains(&len) {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("a {len}-byte message; this does not look like PostgreSQL"),
        ));
    }
    let mut body = vec![0_u8; len - 4];
    stream.read_exact(&mut body).await?;
    Ok((kind, body))
}

fn push_message(out: &mut Vec<u8>, kind: u8, body: &[u8]) {
    out.push(kind);
    out.extend_from_slice(
        &u32::try_from(body.len() + 4)
            .unwrap_or(u32::MAX)
            .to_be_bytes(),
    );
    out.extend_from_slice(body);
}

/// An `ErrorResponse` (FATAL) from rdsconn itself.
pub(super) async fn send_error<S: AsyncWrite + Unpin>(
    client: &mut S,
    code: &str,
    message: &str,
) -> std::io::Result<()> {
    let mut body = Vec::new();
    for (field, value) in [
        (b'S', "FATAL"),
        (b'V', "FATAL"),
        (b'C', code),
        (b'M', message),
    ] {
        body.push(field);
        body.extend_from_slice(value.as_bytes());
        body.push(0);
    }
    body.push(0);
    let mut out = Vec::new();
    push_message(&mut out, b'E', &body);
    client.write_all(&out).await?;
    client.flush().await
}

/// Turns a client away before reading anything (too many connections).
pub(super) async fn refuse_early<S: AsyncRead + AsyncWrite + Unpin>(
    mut client: S,
    code: &str,
    message: &str,
) {
    // The client speaks first; answer its opening (after any SSLRequest).
    if read_opening(&mut client).await.is_ok() {
        let _ = send_error(&mut client, code, message).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn startup_parameters() {
        let body = b"user\0app\0database\0appdb\0application_name\0psql\0\0";
        let params = parameters(body);
        assert_eq!(params.len(), 3);
        assert_eq!(params[0], ("user".into(), "app".into()));
        assert_eq!(params[1], ("database".into(), "appdb".into()));
    }

    #[test]
    fn login_errors_are_classified_by_sqlstate() {
        let body = b"SFATAL\0VFATAL\0C28P01\0Mpassword authentication failed for user \"x\"\0\0";
        let e = classify(
            body,
            &Auth::Password(crate::secret::Secret::new("p".into())),
        );
        assert!(matches!(e, ConnectError::Auth { iam: false, .. }), "{e:?}");
        let body = b"SFATAL\0C3D000\0Mdatabase \"nope\" does not exist\0\0";
        let e = classify(
            body,
            &Auth::Password(crate::secret::Secret::new("p".into())),
        );
        assert!(
            matches!(e, ConnectError::Server(ref m) if m.contains("3D000")),
            "{e:?}"
        );
    }
}
