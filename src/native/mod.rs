//! Handing a connection to another program: the native clients (`psql`,
//! `mysql`, `mariadb`) for interactive sessions, and any command under
//! `rdsconn exec` / `eval "$(rdsconn env …)"`.
//!
//! What is engine-specific (variable names, client flags, URL forms) lives
//! with the engines; this module has what they share: the resolved
//! connection, client lookup, the 0600 secret file, shell quoting, and
//! running a child with signal forwarding and its exit status.

mod mysql;
mod postgres;

use std::ffi::OsString;
use std::fmt::Write as _;
use std::io::Write as _;
use std::net::IpAddr;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use percent_encoding::utf8_percent_encode;
use serde_json::{Map, Value};

use crate::error::{Category, Error, Result};
use crate::secret::Secret;
use crate::target::EngineKind;
use crate::target::Target;
use crate::tls::TlsMode;
use crate::token::RFC3986;

/// A native client family: what `env`/`exec` export for it, and how it is
/// found and started with a connection rdsconn verified.
pub(crate) trait Client: Send + Sync {
    /// Refuses, before any I/O, to hand a connection to a child process
    /// (native client, `env`, `exec`) that could not verify what rdsconn
    /// verifies.
    fn check(&self, target: &Target, mode: TlsMode) -> Result<()>;

    /// The client gets the session through rdsconn's proxy on a private
    /// unix socket instead of dialing itself (it could not verify the
    /// endpoint name through `--via`).
    fn through_proxy(&self, target: &Target) -> bool {
        // A tunnel rdsconn opens is rdsconn's: the client reaches it through
        // rdsconn's proxy.
        target.tunnel().is_some()
    }

    /// The variables `rdsconn env` prints and `rdsconn exec` sets, in the
    /// names the clients read, `DATABASE_URL` last.
    fn env(&self, conn: &ClientConn<'_>) -> Vec<EnvVar>;

    /// The variables for rdsconn's proxy on a private unix socket
    /// (`conn.socket`, one-time password): `exec` through a tunnel.
    fn socket_env(&self, conn: &ClientConn<'_>) -> Vec<EnvVar>;

    /// The installed client, or `given` (`--client`).
    fn find(&self, given: Option<&Path>) -> Result<NativeClient>;

    /// The client's invocation for this connection; `extra` (the user's
    /// arguments after `--`) comes last. Secrets go into its environment
    /// or a 0600 file, never its arguments.
    fn launch(
        &self,
        client: NativeClient,
        conn: &ClientConn<'_>,
        extra: &[OsString],
    ) -> Result<Launch>;
}

/// The client family of an engine.
pub(crate) fn for_kind(kind: EngineKind) -> &'static dyn Client {
    match kind {
        EngineKind::Mysql => &mysql::Mysql,
        EngineKind::Postgres => &postgres::Postgres,
    }
}

/// Everything a child process needs to open the same verified connection.
pub(crate) struct ClientConn<'a> {
    pub target: &'a Target,
    /// The password or IAM token.
    pub secret: &'a Secret,
    pub iam: bool,
    pub mode: TlsMode,
    /// A PEM file with the CA bundle (`sslrootcert=`, `--ssl-ca=`).
    pub ca_file: &'a Path,
    /// `--via`'s host resolved to an address (libpq's `hostaddr`).
    pub via_addr: Option<IpAddr>,
    /// `ca_file` is the RDS CA bundle (embedded, cached or fetched), which
    /// Node's mysql2 ships as its `Amazon RDS` TLS profile.
    pub rds_bundle: bool,
    /// rdsconn's proxy on a private unix socket: the client connects there
    /// (no TLS on the socket; the proxy verifies upstream) and `secret` is
    /// the proxy's one-time local password.
    pub socket: Option<&'a Path>,
}

impl ClientConn<'_> {
    /// The port the child dials: `--via`'s, else the endpoint's.
    pub(crate) fn dial_port(&self) -> u16 {
        self.target.dial().1
    }
}

/// One environment variable for a child. `Debug` never shows the value,
/// which may be a password.
pub(crate) struct EnvVar {
    pub name: &'static str,
    pub value: String,
}

impl std::fmt::Debug for EnvVar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}=…", self.name)
    }
}

impl EnvVar {
    pub(crate) fn new(name: &'static str, value: impl Into<String>) -> Self {
        Self {
            name,
            value: value.into(),
        }
    }
}

/// `scheme://user:password@host:port/database?k=v&…` with every part
/// percent-encoded (RFC 3986), for `DATABASE_URL` and its kin.
pub(crate) fn database_url(
    scheme: &str,
    conn: &ClientConn<'_>,
    host: &str,
    params: &[(&str, &str)],
) -> String {
    let authority = format!("{}:{}", url_host(host), conn.dial_port());
    url_at(scheme, conn, &authority, params)
}

/// `scheme://user:password@host/database?k=v&…` without a port: for
/// rdsconn's proxy on a unix socket, which the parameters name.
pub(crate) fn socket_url(
    scheme: &str,
    conn: &ClientConn<'_>,
    host: &str,
    params: &[(&str, &str)],
) -> String {
    url_at(scheme, conn, host, params)
}

fn url_at(scheme: &str, conn: &ClientConn<'_>, authority: &str, params: &[(&str, &str)]) -> String {
    let enc = |s: &str| utf8_percent_encode(s, RFC3986).to_string();
    let mut url = format!(
        "{scheme}://{}:{}@{authority}/{}",
        enc(&conn.target.user),
        enc(conn.secret.expose()),
        conn.target.database.as_deref().map(enc).unwrap_or_default()
    );
    push_params(&mut url, params);
    url
}

/// `jdbc:SUBPROTOCOL://host:port/database?k=v&…&user=…&password=…`: the
/// form `DriverManager.getConnection(url)` takes whole (JDBC has no
/// userinfo part).
pub(crate) fn jdbc_url(
    subprotocol: &str,
    conn: &ClientConn<'_>,
    host: &str,
    params: &[(&str, &str)],
) -> String {
    let enc = |s: &str| utf8_percent_encode(s, RFC3986).to_string();
    let mut url = format!(
        "jdbc:{subprotocol}://{}:{}/{}",
        url_host(host),
        conn.dial_port(),
        conn.target.database.as_deref().map(enc).unwrap_or_default()
    );
    let mut all = params.to_vec();
    all.push(("user", &conn.target.user));
    all.push(("password", conn.secret.expose()));
    push_params(&mut url, &all);
    url
}

fn url_host(host: &str) -> String {
    if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_string()
    }
}

fn push_params(url: &mut String, params: &[(&str, &str)]) {
    for (i, (k, v)) in params.iter().enumerate() {
        let v = utf8_percent_encode(v, RFC3986);
        let _ = write!(url, "{}{k}={v}", if i == 0 { '?' } else { '&' });
    }
}

/// Names of the URL variables, which only work where the driver dials the
/// endpoint itself: through `--via` they are left out (see
/// [`Client::env`]).
pub(crate) const URL_VARIABLES: &[&str] = &["DATABASE_URL", "SQLALCHEMY_URL", "JDBC_URL"];

/// `rdsconn exec` of a MySQL-family tool: the connection in an option
/// file in the tool's dialect (see the MySQL client's `tool`).
pub(crate) fn mysql_tool(launch: &mut Launch, conn: &ClientConn<'_>) -> Result<()> {
    mysql::tool(launch, conn)
}

/// A native client found on this machine.
#[derive(Debug)]
pub(crate) struct NativeClient {
    pub program: PathBuf,
    /// A MySQL client that is MariaDB's (`--ssl-verify-server-cert`), not
    /// Oracle's (`--ssl-mode=VERIFY_IDENTITY`); always false for psql.
    pub mariadb: bool,
}

/// `given` (`--client PATH`, or a name looked up in PATH), else the first
/// of `names` found in PATH. Not found: a usage error saying `missing`,
/// hinting at `install`, `--client` and the in-process `sql_flag`.
pub(crate) fn find_client(
    given: Option<&Path>,
    names: &[&str],
    missing: &str,
    install: &str,
    sql_flag: &str,
) -> Result<PathBuf> {
    let found = match given {
        Some(p) if p.components().count() > 1 => p.is_file().then(|| p.to_path_buf()),
        Some(p) => which::which(p).ok(),
        None => names.iter().find_map(|n| which::which(n).ok()),
    };
    found.ok_or_else(|| {
        Error::usage(match given {
            Some(p) => format!("--client {}: no such program", p.display()),
            None => missing.to_string(),
        })
        .with_hint(format!(
            "{install}, pass --client PATH, or run statements without it: {sql_flag}"
        ))
    })
}

/// A program with arguments and extra environment, ready to run. Owns the
/// secret file (if any), which is removed when the `Launch` is dropped.
pub(crate) struct Launch {
    pub program: PathBuf,
    pub args: Vec<OsString>,
    pub env: Vec<EnvVar>,
    /// Variables removed from the child's environment (they could override
    /// the verified settings).
    pub env_remove: &'static [&'static str],
    pub secret_file: Option<tempfile::NamedTempFile>,
}

/// A 0600 file holding `contents`, in `$XDG_RUNTIME_DIR` when there is one
/// (a per-user tmpfs), else the temp directory. It is removed on drop.
pub(crate) fn secret_file(prefix: &str, contents: &str) -> Result<tempfile::NamedTempFile> {
    let dir = crate::files::private_base();
    let io = |e: std::io::Error| {
        Error::new(Category::Runtime, e).context(format!(
            "writing the client's credentials file in {}",
            dir.display()
        ))
    };
    // tempfile creates the file with O_EXCL and mode 0600.
    let mut file = tempfile::Builder::new()
        .prefix(prefix)
        .suffix(".cnf")
        .tempfile_in(&dir)
        .map_err(io)?;
    file.write_all(contents.as_bytes()).map_err(io)?;
    file.flush().map_err(io)?;
    Ok(file)
}

/// Runs the launch with the terminal, forwarding signals; returns the
/// child's exit status (128 + N when signal N killed it).
pub(crate) fn run(launch: Launch) -> Result<u8> {
    let mut cmd = Command::new(&launch.program);
    cmd.args(&launch.args);
    for name in launch.env_remove {
        cmd.env_remove(name);
    }
    for var in &launch.env {
        cmd.env(var.name, &var.value);
    }
    let code = run_forwarding(&mut cmd, &launch.program)?;
    drop(launch.secret_file);
    Ok(code)
}

/// Signals rdsconn passes on to the child.
const FORWARDED: [i32; 5] = [
    signal_hook::consts::SIGINT,
    signal_hook::consts::SIGTERM,
    signal_hook::consts::SIGHUP,
    signal_hook::consts::SIGQUIT,
    signal_hook::consts::SIGUSR1,
];

/// Spawns `cmd`, forwards signals sent to rdsconn, waits.
///
/// With a terminal, the child shares rdsconn's foreground process group
/// (it reads the terminal): a signal the kernel generated for the terminal
/// (Ctrl-C, Ctrl-\, hang-up) already reached it and is not sent twice (a
/// second SIGINT means "force quit" to many tools); signals another
/// process sent to rdsconn (`kill`) are forwarded.
///
/// Without a controlling terminal (CI, cron, systemd) the child gets a
/// process group of its own, so that a signal sent to rdsconn's whole
/// group (CI runners do `kill -INT -PGID`) reaches it once, forwarded,
/// instead of once directly and once forwarded.
fn run_forwarding(cmd: &mut Command, program: &Path) -> Result<u8> {
    use signal_hook::iterator::SignalsInfo;
    use signal_hook::iterator::exfiltrator::WithOrigin;
    use signal_hook::low_level::siginfo::Cause;
    use std::os::unix::process::CommandExt;

    let own_group = std::fs::File::open("/dev/tty").is_err();
    if own_group {
        cmd.process_group(0);
    }

    let spawn_err = |e: std::io::Error| {
        Error::new(Category::Runtime, e).context(format!("starting {}", program.display()))
    };
    // Registered before the spawn, so no signal falls between the two.
    let mut signals = SignalsInfo::<WithOrigin>::new(FORWARDED).map_err(spawn_err)?;
    crate::signals::taken_over(&[
        crate::signals::SIGINT,
        crate::signals::SIGTERM,
        crate::signals::SIGHUP,
    ]);
    let handle = signals.handle();
    let mut child = cmd.spawn().map_err(|e| {
        // As shells report a command they cannot run.
        let code = match e.kind() {
            std::io::ErrorKind::NotFound => Some(127),
            std::io::ErrorKind::PermissionDenied => Some(126),
            _ => None,
        };
        let err = spawn_err(e);
        match code {
            Some(c) => err.with_exit_code(c),
            None => err,
        }
    })?;
    let pid = rustix::process::Pid::from_child(&child);
    let forwarder = std::thread::spawn(move || {
        for origin in signals.forever() {
            if origin.cause == Cause::Kernel && !own_group {
                continue;
            }
            if let Some(sig) = rustix::process::Signal::from_named_raw(origin.signal) {
                // The child may be gone already; nothing to do then.
                let _ = rustix::process::kill_process(pid, sig);
            }
        }
    });
    let status = child.wait().map_err(|e| {
        Error::new(Category::Runtime, e).context(format!("waiting for {}", program.display()))
    });
    handle.close();
    let _ = forwarder.join();
    let status = status?;
    let code = status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(1);
    Ok(u8::try_from(code).unwrap_or(1))
}

/// How `rdsconn env` prints variables.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Shell {
    /// `export NAME='value'` (sh, bash, zsh, dash).
    #[value(alias = "shell")]
    Sh,
    /// `set -gx NAME 'value'`.
    Fish,
    /// One JSON object.
    Json,
    /// `NAME='value'` lines for `.env` files (python-dotenv, Node's
    /// dotenv, docker compose).
    Dotenv,
}

/// The variables as `shell` code for `eval`, a JSON object, or a `.env`
/// file. A value a `.env` file cannot hold is a usage error.
pub(crate) fn render(vars: &[EnvVar], shell: Shell) -> Result<String> {
    Ok(match shell {
        Shell::Dotenv => {
            let mut out = String::new();
            for v in vars {
                let quoted = dotenv_quote(&v.value).ok_or_else(|| {
                    Error::usage(format!(
                        "{}'s value cannot be written to a .env file that python-dotenv and Node's dotenv \
                         both read back unchanged (quotes with backslashes, `${{`, or a line break)",
                        v.name
                    ))
                    .with_hint("use --format json, or exec to hand the values to the program")
                })?;
                let _ = writeln!(out, "{}={quoted}", v.name);
            }
            out
        }
        Shell::Sh => vars.iter().fold(String::new(), |mut out, v| {
            let _ = writeln!(out, "export {}={}", v.name, sh_quote(&v.value));
            out
        }),
        Shell::Fish => vars.iter().fold(String::new(), |mut out, v| {
            let _ = writeln!(out, "set -gx {} {}", v.name, fish_quote(&v.value));
            out
        }),
        Shell::Json => {
            let map: Map<String, Value> = vars
                .iter()
                .map(|v| (v.name.to_string(), Value::String(v.value.clone())))
                .collect();
            let mut s = serde_json::to_string_pretty(&Value::Object(map)).unwrap_or_default();
            s.push('\n');
            s
        }
    })
}

/// A `.env` value both python-dotenv and Node's dotenv read back byte for
/// byte, or `None`. Values may come from a Secrets Manager secret, so
/// every rule of both parsers counts:
/// - python-dotenv expands `${NAME}` inside any quotes, with no escape;
/// - neither holds a line break on one line;
/// - in single quotes python-dotenv decodes `\\` and `\'` (Node keeps
///   both), and a trailing `\` escapes the closing quote in both, which
///   swallows the lines after it;
/// - in double quotes python-dotenv decodes `\` escapes and Node `\n`
///   and `\r`, so no backslash at all.
fn dotenv_quote(s: &str) -> Option<String> {
    if s.contains(['\n', '\r']) || s.contains("${") {
        None
    } else if !s.contains('\'') && !s.contains("\\\\") && !s.ends_with('\\') {
        Some(format!("'{s}'"))
    } else if !s.contains(['"', '\\']) {
        Some(format!("\"{s}\""))
    } else {
        None
    }
}

/// POSIX single quotes: nothing inside is special; `'` is `'\''`.
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// fish single quotes: only `\\` and `\'` are escapes inside.
fn fish_quote(s: &str) -> String {
    format!("'{}'", s.replace('\\', r"\\").replace('\'', r"\'"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sh_quoting() {
        assert_eq!(sh_quote("plain"), "'plain'");
        assert_eq!(sh_quote("it's $HOME `x` \\"), r"'it'\''s $HOME `x` \'");
        assert_eq!(sh_quote(""), "''");
    }

    #[test]
    fn fish_quoting() {
        assert_eq!(fish_quote("it's a \\ $x"), r"'it\'s a \\ $x'");
    }

    #[test]
    fn json_rendering_keeps_order() {
        let vars = [EnvVar::new("B", "1"), EnvVar::new("A", "x\"y")];
        assert_eq!(
            render(&vars, Shell::Json).expect("JSON holds any value"),
            "{\n  \"B\": \"1\",\n  \"A\": \"x\\\"y\"\n}\n"
        );
    }

    #[test]
    fn env_var_debug_hides_the_value() {
        assert_eq!(
            format!("{:?}", EnvVar::new("PGPASSWORD", "s3cret")),
            "PGPASSWORD=…"
        );
    }
}
