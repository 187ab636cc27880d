//! MySQL and MariaDB through `mysql_async`.
//!
//! `mysql_async` builds its own rustls configuration, so rdsconn hands it
//! exactly the roots of the CA bundle (its built-in web roots disabled) and
//! the name to verify:
//!
//! - verify-full: the endpoint name, while TCP goes to the resolved dial
//!   address (`--via` or the endpoint's own address);
//! - verify-ca: the driver cannot skip only the name check, so rdsconn first
//!   runs a TLS probe with its own verifier (chain only) and pins a name the
//!   presented certificate carries. If the certificate changes between the
//!   probe and the connection, the driver's check fails closed.
//!
//! The probe (greeting, `SSLRequest`, TLS handshake, nothing more) also
//! supplies what the driver does not expose: the certificate for `--info`
//! and for error messages.
//!
//! Passwords and IAM tokens go out only after TLS: a server that does not
//! offer TLS is refused by the driver before authentication, and
//! `mysql_clear_password` (IAM, PAM) is enabled only because of that.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use mysql_async::prelude::Queryable;
use mysql_async::{DriverError, IoError, OptsBuilder, Row, ServerError, SslOpts, TlsError, Value};
use rustls::pki_types::ServerName;

use super::{
    Auth, BoxFuture, ConnectError, Engine, QueryError, ResultSet, Session, SessionInfo, Stage,
    Target, Timings, ms,
};
use crate::error::{Error, error_line};
use crate::native::{self, ClientConn, EnvVar, Flavor, Launch, NativeClient};
use crate::target::EngineKind;
use crate::tls::{CertSummary, PeerChain, TlsFailure, TlsMode, TlsPolicy};

pub struct Mysql;

/// `ER_ACCESS_DENIED_ERROR` and `ER_ACCESS_DENIED_NO_PASSWORD_ERROR`.
const ACCESS_DENIED: [u16; 2] = [1045, 1698];

impl Engine for Mysql {
    fn kind(&self) -> EngineKind {
        EngineKind::Mysql
    }

    fn connect<'a>(
        &'a self,
        target: &'a Target,
        auth: &'a Auth,
        tls: &'a TlsPolicy,
    ) -> BoxFuture<'a, Result<Box<dyn Session>, ConnectError>> {
        Box::pin(async move {
            let stage = Stage::default();
            let session = connect(target, auth, tls, &stage);
            super::bounded(target.connect_timeout, &stage, session).await
        })
    }

    fn check_handoff(&self, target: &Target, mode: TlsMode) -> Result<(), Error> {
        if target.via.is_some() && mode == TlsMode::VerifyFull {
            return Err(Error::usage(format!(
                "MySQL clients verify the name they dial, so through --via {} they cannot \
                 verify {} (VERIFY_IDENTITY); rdsconn will not weaken that",
                target.dial_address(),
                target.host
            ))
            .with_hint(
                "run statements in rdsconn instead (-e SQL, verified through --via), \
                 or accept a chain-only check with --tls verify-ca",
            ));
        }
        Ok(())
    }

    fn child_env(&self, conn: &ClientConn<'_>) -> Vec<EnvVar> {
        let target = conn.target;
        // The endpoint, or `--via` (allowed in verify-ca mode only).
        let (host, port) = conn.target.dial();
        let mut vars = vec![
            EnvVar::new("MYSQL_HOST", host.clone()),
            EnvVar::new("MYSQL_TCP_PORT", port.to_string()),
            EnvVar::new("MYSQL_USER", &target.user),
        ];
        if let Some(db) = &target.database {
            vars.push(EnvVar::new("MYSQL_DATABASE", db));
        }
        vars.push(EnvVar::new("MYSQL_PWD", conn.secret.expose()));
        let ca = conn.ca_file.to_string_lossy();
        vars.push(EnvVar::new("MYSQL_SSL_CA", ca.as_ref()));
        vars.push(EnvVar::new("MYSQL_SSL_MODE", ssl_mode(conn.mode)));
        if conn.iam {
            // Oracle's libmysqlclient sends cleartext passwords only with this.
            vars.push(EnvVar::new("LIBMYSQL_ENABLE_CLEARTEXT_PLUGIN", "1"));
        }
        // The form sqlx and other MySQL URL parsers read.
        let url = native::database_url(
            "mysql",
            conn,
            &host,
            &[("ssl-mode", ssl_mode(conn.mode)), ("ssl-ca", &ca)],
        );
        vars.push(EnvVar::new("DATABASE_URL", url));
        vars
    }

    fn find_client(&self, given: Option<&Path>) -> Result<NativeClient, Error> {
        let program = native::find_client(
            given,
            &["mysql", "mariadb"],
            "neither mysql nor mariadb found in PATH",
            "install a client (Debian/Ubuntu: sudo apt-get install mariadb-client; \
             macOS: brew install mysql-client)",
            "-e SQL",
        )?;
        // MariaDB's client may be installed as `mysql` (Debian links it);
        // its flags differ. Only an unrecognised name costs a `--version`.
        let canonical = std::fs::canonicalize(&program).unwrap_or_else(|_| program.clone());
        let flavor = if canonical.file_name().is_some_and(|n| n == "mariadb") {
            Flavor::Mariadb
        } else {
            let version = std::process::Command::new(&program)
                .arg("--version")
                .stdin(std::process::Stdio::null())
                .output()
                .map_err(|e| {
                    Error::new(crate::error::Category::Usage, e)
                        .context(format!("running {} --version", program.display()))
                })?;
            if String::from_utf8_lossy(&version.stdout).contains("MariaDB") {
                Flavor::Mariadb
            } else {
                Flavor::OracleMysql
            }
        };
        Ok(NativeClient { program, flavor })
    }

    fn launch(
        &self,
        client: NativeClient,
        conn: &ClientConn<'_>,
        extra: &[OsString],
    ) -> Result<Launch, Error> {
        let target = conn.target;
        let file = native::secret_file(
            "rdsconn-mysql-",
            &format!(
                "[client]\npassword={}\n",
                option_value(conn.secret.expose())
            ),
        )?;
        // The endpoint, or `--via` (allowed in verify-ca mode only).
        let (host, port) = conn.target.dial();
        let ca = conn.ca_file.to_string_lossy();
        // The defaults file must come first.
        let mut args: Vec<OsString> = vec![
            format!("--defaults-extra-file={}", file.path().display()).into(),
            "--protocol=TCP".into(),
            format!("--host={host}").into(),
            format!("--port={port}").into(),
            format!("--user={}", target.user).into(),
        ];
        if let Some(db) = &target.database {
            args.push(format!("--database={db}").into());
        }
        match client.flavor {
            Flavor::Mariadb => {
                args.push("--ssl".into());
                args.push(format!("--ssl-ca={ca}").into());
                if conn.mode == TlsMode::VerifyFull {
                    args.push("--ssl-verify-server-cert".into());
                }
                // MariaDB's client sends cleartext passwords on its own.
            }
            Flavor::OracleMysql | Flavor::Psql => {
                args.push(format!("--ssl-mode={}", ssl_mode(conn.mode)).into());
                args.push(format!("--ssl-ca={ca}").into());
                if conn.iam {
                    args.push("--enable-cleartext-plugin".into());
                }
            }
        }
        args.extend(extra.iter().cloned());
        Ok(Launch {
            program: client.program,
            args,
            env: Vec::new(),
            env_remove: &[],
            secret_file: Some(file),
        })
    }
}

/// The mysql client's `--ssl-mode` for a TLS mode.
const fn ssl_mode(mode: TlsMode) -> &'static str {
    match mode {
        TlsMode::VerifyFull => "VERIFY_IDENTITY",
        TlsMode::VerifyCa => "VERIFY_CA",
    }
}

/// A value for a MySQL option file: double-quoted (so `#`, `;`, and
/// surrounding spaces stay part of it) with the escapes the option-file
/// reader undoes.
fn option_value(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

async fn connect(
    target: &Target,
    auth: &Auth,
    tls: &TlsPolicy,
    stage: &Stage,
) -> Result<MysqlSession, ConnectError> {
    let start = Instant::now();
    let addrs = target.resolve_dial().await?;
    let dns_ms = ms(start);

    // verify-ca: learn a name the certificate carries, verifying its chain.
    let mut probed = None;
    let verify_name = match tls.mode {
        TlsMode::VerifyFull => target.host.as_str().to_string(),
        TlsMode::VerifyCa => {
            stage.set("TLS probe");
            let peer = Arc::new(PeerChain::default());
            let leaf =
                super::probe::probe(EngineKind::Mysql, &addrs, target.host.as_str(), tls, &peer)
                    .await?
                    .leaf;
            let name = leaf.as_ref().and_then(pin_name).ok_or_else(|| {
                ConnectError::Tls(TlsFailure::Other(
                    "the server certificate names no DNS name or IP address to pin for verify-ca"
                        .into(),
                ))
            })?;
            probed = leaf;
            name
        }
    };

    stage.set("TCP connect, TLS handshake and authentication");
    let t = Instant::now();
    let mut last = None;
    for addr in &addrs {
        match mysql_async::Conn::new(opts(target, auth, tls, addr, &verify_name)).await {
            Ok(conn) => {
                let connect_ms = ms(t);
                let info = SessionInfo::connected(
                    EngineKind::Mysql,
                    target,
                    auth,
                    tls.mode,
                    probed,
                    Timings {
                        dns_ms,
                        connect_ms,
                        tls_auth_ms: None,
                        total_ms: ms(start),
                    },
                );
                return Ok(MysqlSession {
                    conn,
                    host: target.host.as_str().to_string(),
                    addr: *addr,
                    policy: tls.clone(),
                    info,
                });
            }
            // Only a refused or unreachable address moves on to the next one.
            Err(mysql_async::Error::Io(IoError::Io(source))) if is_dial_error(&source) => {
                last = Some(ConnectError::Tcp {
                    addr: addr.to_string(),
                    source,
                });
            }
            Err(e) => return Err(classify(e, target, auth, tls, &addrs).await),
        }
    }
    Err(last.unwrap_or_else(|| ConnectError::Tcp {
        addr: target.dial_address(),
        source: std::io::Error::new(std::io::ErrorKind::NotFound, "no addresses"),
    }))
}

fn opts(
    target: &Target,
    auth: &Auth,
    tls: &TlsPolicy,
    addr: &SocketAddr,
    verify_name: &str,
) -> OptsBuilder {
    let roots = tls.roots.certs.iter().map(|c| c.to_vec().into()).collect();
    let ssl = SslOpts::default()
        .with_root_certs(roots)
        .with_disable_built_in_roots(true)
        .with_danger_tls_hostname_override(Some(verify_name.to_string()));
    OptsBuilder::default()
        .ip_or_hostname(addr.ip().to_string())
        .tcp_port(addr.port())
        .user(Some(target.user.clone()))
        .pass(Some(auth.secret().expose().to_string()))
        .db_name(target.database.clone())
        .ssl_opts(Some(ssl))
        .prefer_socket(false)
        .enable_cleartext_plugin(true)
        .stmt_cache_size(0)
        // Known up front, so the driver skips its settings query.
        .max_allowed_packet(Some(1 << 30))
        .wait_timeout(Some(28_800))
}

fn is_dial_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::{
        AddrNotAvailable, ConnectionRefused, HostUnreachable, NetworkUnreachable,
    };
    matches!(
        e.kind(),
        ConnectionRefused | HostUnreachable | NetworkUnreachable | AddrNotAvailable
    )
}

/// A name from the certificate that rustls will accept as the server name
/// and that the certificate is valid for: a SAN, with a wildcard's `*`
/// replaced by a label it matches.
fn pin_name(cert: &CertSummary) -> Option<String> {
    cert.sans.iter().find_map(|san| {
        let name = san
            .strip_prefix("*.")
            .map_or_else(|| san.clone(), |rest| format!("rdsconn.{rest}"));
        ServerName::try_from(name.as_str()).is_ok().then_some(name)
    })
}

/// Maps a connect failure to its stage. TLS failures are re-examined with
/// a probe so the message can name what the certificate is valid for.
async fn classify(
    err: mysql_async::Error,
    target: &Target,
    auth: &Auth,
    tls: &TlsPolicy,
    addrs: &[SocketAddr],
) -> ConnectError {
    match &err {
        mysql_async::Error::Server(ServerError {
            code,
            message,
            state,
        }) => {
            let text = format!("{message} (ERROR {code} ({state}))");
            if ACCESS_DENIED.contains(code) {
                ConnectError::Auth {
                    message: text,
                    iam: matches!(auth, Auth::IamToken(_)),
                }
            } else {
                ConnectError::Server(text)
            }
        }
        mysql_async::Error::Driver(DriverError::NoClientSslFlagFromServer) => {
            ConnectError::Tls(TlsFailure::NoTls)
        }
        mysql_async::Error::Driver(DriverError::UnknownAuthPlugin { name }) => ConnectError::Auth {
            message: format!(
                "the server asks for the {name:?} authentication plugin, which rdsconn does not speak"
            ),
            iam: false,
        },
        mysql_async::Error::Io(IoError::Tls(TlsError::InvalidDnsName(_))) => {
            ConnectError::Tls(TlsFailure::Other(format!(
                "{:?} is not a valid TLS server name",
                target.host.as_str()
            )))
        }
        _ => {
            if let Some(r) = super::find_rustls(&err) {
                // The probe's verifier records the chain the server shows,
                // whether or not it verifies.
                let peer = Arc::new(PeerChain::default());
                let _ =
                    super::probe::probe(EngineKind::Mysql, addrs, target.host.as_str(), tls, &peer)
                        .await;
                return ConnectError::Tls(TlsFailure::from_rustls(
                    r,
                    target.host.as_str(),
                    &peer.get(),
                ));
            }
            ConnectError::Server(error_line(&err))
        }
    }
}

struct MysqlSession {
    conn: mysql_async::Conn,
    /// The endpoint name and the address the session is connected to, for
    /// the `--info` probe.
    host: String,
    addr: SocketAddr,
    policy: TlsPolicy,
    info: SessionInfo,
}

impl MysqlSession {
    async fn status(&mut self) -> Vec<(String, String)> {
        self.conn
            .query::<(String, String), _>(
                "SHOW SESSION STATUS WHERE Variable_name IN ('Ssl_version', 'Ssl_cipher')",
            )
            .await
            .unwrap_or_default()
    }
}

impl Session for MysqlSession {
    fn describe(&mut self) -> BoxFuture<'_, SessionInfo> {
        Box::pin(async move {
            let mut info = self.info.clone();
            info.server_version = self
                .conn
                .query_first::<String, _>("SELECT VERSION()")
                .await
                .ok()
                .flatten()
                .unwrap_or_default();
            for (name, value) in self.status().await {
                match name.as_str() {
                    "Ssl_version" => info.tls.protocol = Some(value),
                    "Ssl_cipher" => info.tls.cipher = Some(value),
                    _ => {}
                }
            }
            // The driver does not expose the peer certificate; a probe of
            // the same address shows it (verify-ca already has it).
            if info.tls.certificate.is_none() {
                let peer = Arc::new(PeerChain::default());
                info.tls.certificate = super::probe::probe(
                    EngineKind::Mysql,
                    &[self.addr],
                    &self.host,
                    &self.policy,
                    &peer,
                )
                .await
                .ok()
                .and_then(|p| p.leaf);
            }
            info
        })
    }

    fn execute<'a>(
        &'a mut self,
        sql: &'a str,
    ) -> BoxFuture<'a, Result<Vec<ResultSet>, QueryError>> {
        Box::pin(async move {
            let mut result = self
                .conn
                .query_iter(sql)
                .await
                .map_err(|e| query_error(e, Vec::new()))?;
            let mut sets = Vec::new();
            loop {
                if result.is_empty() {
                    // A failing statement after the first is stored by the
                    // driver and surfaces here.
                    return match result.next().await {
                        Err(e) => Err(query_error(e, sets)),
                        Ok(_) => Ok(sets),
                    };
                }
                let columns: Vec<String> = result
                    .columns_ref()
                    .iter()
                    .map(|c| c.name_str().into_owned())
                    .collect();
                let rows: Vec<Row> = match result.collect().await {
                    Ok(rows) => rows,
                    Err(e) => return Err(query_error(e, sets)),
                };
                sets.push(if columns.is_empty() {
                    ResultSet {
                        affected: Some(result.affected_rows()),
                        ..ResultSet::default()
                    }
                } else {
                    ResultSet {
                        columns,
                        rows: rows.iter().map(row_text).collect(),
                        affected: None,
                    }
                });
            }
        })
    }

    fn close(self: Box<Self>) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            let _ = self.conn.disconnect().await;
        })
    }
}

/// A text-protocol row as strings; NULL stays `None`.
fn row_text(row: &Row) -> Vec<Option<String>> {
    (0..row.len())
        .map(|i| match row.as_ref(i) {
            None | Some(Value::NULL) => None,
            Some(Value::Bytes(b)) => Some(String::from_utf8_lossy(b).into_owned()),
            Some(other) => Some(other.as_sql(true)),
        })
        .collect()
}

fn query_error(e: mysql_async::Error, completed: Vec<ResultSet>) -> QueryError {
    let (message, code) = match e {
        mysql_async::Error::Server(ServerError {
            code,
            message,
            state,
        }) => (message, format!("ERROR {code} ({state})")),
        other => (error_line(&other), "connection".into()),
    };
    QueryError {
        message,
        code,
        completed,
    }
}
