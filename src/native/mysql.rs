//! The hand-off to the MySQL clients (Oracle's `mysql`, MariaDB's
//! `mariadb`, told apart by name or `--version`): their variables for
//! `env`/`exec`, and their invocation with the password in a 0600 defaults
//! file and the TLS flags each flavour reads.

use std::ffi::OsString;
use std::fmt::Write as _;
use std::path::Path;

use super::{Client, ClientConn, EnvVar, Launch, NativeClient};
use crate::error::Error;
use crate::target::Target;
use crate::tls::TlsMode;

pub(super) struct Mysql;

impl Client for Mysql {
    fn check(&self, target: &Target, mode: TlsMode) -> Result<(), Error> {
        if target.via.is_some() && mode == TlsMode::VerifyFull {
            return Err(Error::usage(format!(
                "MySQL clients verify the name they dial, so through --via {} they cannot \
                 verify {} (VERIFY_IDENTITY); rdsconn will not weaken that",
                target.dial_address(),
                target.host
            ))
            .with_hint(
                "point the tool at `rdsconn proxy mysql … --via …` (verified upstream, \
                 no token on the client side), or accept a chain-only check with --tls verify-ca",
            ));
        }
        Ok(())
    }

    fn through_proxy(&self, target: &Target) -> bool {
        target.via.is_some()
    }

    fn env(&self, conn: &ClientConn<'_>) -> Vec<EnvVar> {
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
        if target.via.is_some() {
            // Drivers verify the name they dial: no URL would work.
            return vars;
        }
        let strict = if conn.mode == TlsMode::VerifyFull {
            "true"
        } else {
            "false"
        };
        // sqlx and MySQL Connector URLs read ssl-mode / ssl-ca; Node's
        // mysql2 ignores those (and would skip TLS) but reads `ssl`.
        let mysql2 = mysql2_ssl(conn);
        let mut params = vec![
            ("ssl-mode", ssl_mode(conn.mode)),
            ("ssl-ca", ca.as_ref()),
            ("ssl", mysql2.as_str()),
        ];
        if conn.iam {
            params.push(("enableCleartextPlugin", "true"));
        }
        vars.push(EnvVar::new(
            "DATABASE_URL",
            super::database_url("mysql", conn, &host, &params),
        ));
        // SQLAlchemy with PyMySQL: ssl_* query parameters become PyMySQL's
        // `ssl` dictionary.
        vars.push(EnvVar::new(
            "SQLALCHEMY_URL",
            super::database_url(
                "mysql+pymysql",
                conn,
                &host,
                &[("ssl_ca", ca.as_ref()), ("ssl_check_hostname", strict)],
            ),
        ));
        // MariaDB Connector/J reads a PEM CA file (MySQL Connector/J needs
        // a Java trust store instead).
        let jdbc_mode = if conn.mode == TlsMode::VerifyFull {
            "verify-full"
        } else {
            "verify-ca"
        };
        vars.push(EnvVar::new(
            "JDBC_URL",
            super::jdbc_url(
                "mariadb",
                conn,
                &host,
                &[("sslMode", jdbc_mode), ("serverSslCert", ca.as_ref())],
            ),
        ));
        vars
    }

    fn socket_env(&self, conn: &ClientConn<'_>) -> Vec<EnvVar> {
        let socket = conn.socket.unwrap_or(Path::new("")).to_string_lossy();
        let mut vars = vec![
            // The mysql client takes the socket for host `localhost`.
            EnvVar::new("MYSQL_HOST", "localhost"),
            EnvVar::new("MYSQL_UNIX_PORT", socket.as_ref()),
            EnvVar::new("MYSQL_USER", &conn.target.user),
        ];
        if let Some(db) = &conn.target.database {
            vars.push(EnvVar::new("MYSQL_DATABASE", db));
        }
        vars.push(EnvVar::new("MYSQL_PWD", conn.secret.expose()));
        // sqlx reads `socket`, mysql2 `socketPath`; no TLS on the socket
        // (the proxy verifies upstream).
        vars.push(EnvVar::new(
            "DATABASE_URL",
            super::socket_url(
                "mysql",
                conn,
                "localhost",
                &[("socket", socket.as_ref()), ("socketPath", socket.as_ref())],
            ),
        ));
        vars
    }

    fn find(&self, given: Option<&Path>) -> Result<NativeClient, Error> {
        let program = super::find_client(
            given,
            &["mysql", "mariadb"],
            "neither mysql nor mariadb found in PATH",
            "install a client (Debian/Ubuntu: sudo apt-get install mariadb-client; \
             macOS: brew install mysql-client)",
            "-e SQL",
        )?;
        let mariadb = is_mariadb(&program)?;
        Ok(NativeClient { program, mariadb })
    }

    fn launch(
        &self,
        client: NativeClient,
        conn: &ClientConn<'_>,
        extra: &[OsString],
    ) -> Result<Launch, Error> {
        let target = conn.target;
        let (arg, file) = defaults_file(&format!(
            "[client]\npassword={}\n",
            option_value(conn.secret.expose())
        ))?;
        // The defaults file must come first.
        let mut args: Vec<OsString> = vec![arg];
        if let Some(socket) = conn.socket {
            // rdsconn's proxy: TLS and the endpoint name are verified
            // upstream; the socket is private to this user.
            args.push("--protocol=SOCKET".into());
            args.push(format!("--socket={}", socket.display()).into());
            args.push(format!("--user={}", target.user).into());
            if let Some(db) = &target.database {
                args.push(format!("--database={db}").into());
            }
            args.push(if client.mariadb {
                "--skip-ssl".into()
            } else {
                "--ssl-mode=DISABLED".into()
            });
            args.extend(extra.iter().cloned());
            return Ok(Launch {
                program: client.program,
                args,
                env: Vec::new(),
                env_remove: &[],
                secret_file: Some(file),
            });
        }
        // The endpoint, or `--via` (allowed in verify-ca mode only).
        let (host, port) = conn.target.dial();
        let ca = conn.ca_file.to_string_lossy();
        args.push("--protocol=TCP".into());
        args.push(format!("--host={host}").into());
        args.push(format!("--port={port}").into());
        args.push(format!("--user={}", target.user).into());
        if let Some(db) = &target.database {
            args.push(format!("--database={db}").into());
        }
        if client.mariadb {
            args.push("--ssl".into());
            args.push(format!("--ssl-ca={ca}").into());
            if conn.mode == TlsMode::VerifyFull {
                args.push("--ssl-verify-server-cert".into());
            }
            // MariaDB's client sends cleartext passwords on its own.
        } else {
            args.push(format!("--ssl-mode={}", ssl_mode(conn.mode)).into());
            args.push(format!("--ssl-ca={ca}").into());
            if conn.iam {
                args.push("--enable-cleartext-plugin".into());
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

/// Whether a MySQL client program is MariaDB's (which may be installed
/// as `mysql`, `mysqldump`…: Debian links them); its TLS options differ
/// from Oracle's. Only a name that does not say costs a `--version`.
fn is_mariadb(program: &Path) -> Result<bool, Error> {
    let canonical = std::fs::canonicalize(program).unwrap_or_else(|_| program.to_path_buf());
    if canonical
        .file_name()
        .is_some_and(|n| n.to_string_lossy().starts_with("mariadb"))
    {
        return Ok(true);
    }
    let version = std::process::Command::new(program)
        .arg("--version")
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| {
            Error::new(crate::error::Category::Usage, e)
                .context(format!("running {} --version", program.display()))
        })?;
    Ok(String::from_utf8_lossy(&version.stdout).contains("MariaDB"))
}

/// `rdsconn exec` of a MySQL or MariaDB tool (`mysqldump`,
/// `mariadb-admin`…): the connection in a 0600 option file, in the
/// tool's own dialect, named first on its command line.
pub(super) fn tool(launch: &mut Launch, conn: &ClientConn<'_>) -> Result<(), Error> {
    let program = which::which(&launch.program).unwrap_or_else(|_| launch.program.clone());
    let mariadb = is_mariadb(&program)?;
    let mut file = String::from("[client]\n");
    if let Some(socket) = conn.socket {
        let socket = socket.to_string_lossy();
        let _ = writeln!(file, "protocol=SOCKET\nsocket={}", option_value(&socket));
    } else {
        let (host, port) = conn.target.dial();
        let _ = writeln!(
            file,
            "protocol=TCP\nhost={}\nport={port}",
            option_value(&host)
        );
    }
    let _ = writeln!(
        file,
        "user={}\npassword={}",
        option_value(&conn.target.user),
        option_value(conn.secret.expose())
    );
    if conn.socket.is_some() {
        // rdsconn's proxy on a private socket: TLS is the proxy's, upstream.
        file.push_str(if mariadb {
            "skip-ssl\n"
        } else {
            "ssl-mode=DISABLED\n"
        });
    } else {
        let _ = writeln!(
            file,
            "ssl-ca={}",
            option_value(&conn.ca_file.to_string_lossy())
        );
        if !mariadb {
            let _ = writeln!(file, "ssl-mode={}", ssl_mode(conn.mode));
        } else if conn.mode == TlsMode::VerifyFull {
            file.push_str("ssl\nssl-verify-server-cert\n");
        } else {
            file.push_str("ssl\n");
        }
    }
    let (arg, file) = defaults_file(&file)?;
    launch.args.insert(0, arg);
    launch.secret_file = Some(file);
    Ok(())
}

/// A 0600 option file holding `contents` and the `--defaults-extra-file`
/// argument naming it (which must come first on the command line).
fn defaults_file(contents: &str) -> Result<(OsString, tempfile::NamedTempFile), Error> {
    let file = super::secret_file("rdsconn-mysql-", contents)?;
    let arg = format!("--defaults-extra-file={}", file.path().display()).into();
    Ok((arg, file))
}

/// Largest CA file put whole into mysql2's `ssl` option (an environment
/// variable holds at most 128 KiB; the RDS bundle is larger).
const MYSQL2_INLINE_CA: usize = 16 * 1024;

/// mysql2's `ssl` URL parameter (JSON, or a profile name): the CA file's
/// certificates when they are small, else mysql2's own copy of the RDS
/// bundle (`Amazon RDS`), else a strict check against Node's roots, which
/// fails rather than connecting unverified.
fn mysql2_ssl(conn: &ClientConn<'_>) -> String {
    let pem = std::fs::read_to_string(conn.ca_file)
        .ok()
        .filter(|p| p.len() <= MYSQL2_INLINE_CA);
    match pem {
        Some(pem) => serde_json::json!({"ca": pem, "rejectUnauthorized": true}).to_string(),
        None if conn.rds_bundle => "Amazon RDS".to_string(),
        None => serde_json::json!({"rejectUnauthorized": true}).to_string(),
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
/// reader undoes; an inner `"` is escaped, or it would end the quoting and
/// a later `#` would start a comment.
fn option_value(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
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
