//! `rdsconn mysql` and `rdsconn postgres`: a verified connection, then
//! `-e SQL` or `--info`.

use std::fmt::Write as _;
use std::io::{BufRead, IsTerminal};
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Map, Value};

use crate::ca;
use crate::cli::{
    ConnectArgs, GlobalArgs, MysqlArgs, OutputFormat, PostgresArgs, RdsSelector, TargetFlags,
};
use crate::clientargs;
use crate::engine::mysql::relay;
use crate::engine::{self, Auth, ConnectError, ResultSet, Secret, SessionInfo, Target};
use crate::error::{Error, Result};
use crate::native::{self, ClientConn};
use crate::output;
use crate::proxy::{self, Secrets, TokenCache};
use crate::rds::Rds;
use crate::target::{EngineKind, Host, UrlTarget, validate_database, validate_user};
use crate::tls::TlsPolicy;

/// Host, port, user and database as the user gave them, before defaults.
pub(crate) struct Given {
    pub url: Option<String>,
    pub host: Option<String>,
    pub port: Option<u16>,
    pub user: Option<String>,
    pub database: Option<String>,
}

impl Given {
    /// The target flags of `env`, `exec` and `doctor`.
    pub(crate) fn from_flags(flags: &TargetFlags) -> Self {
        Self {
            url: flags.url.clone(),
            host: flags.host.clone(),
            port: flags.port,
            user: flags.user.clone(),
            database: flags.database.clone(),
        }
    }

    /// The engine's environment variables (`PGHOST`, `PGPORT`, `PGUSER`,
    /// `PGDATABASE`; `MYSQL_HOST`, `MYSQL_TCP_PORT`) fill in what the
    /// user's values leave open.
    fn with_env(self, kind: EngineKind) -> Self {
        let port_of = |var| env(var).and_then(|p| p.parse().ok());
        match kind {
            EngineKind::Postgres => Self {
                host: self.host.or_else(|| env("PGHOST")),
                port: self.port.or_else(|| port_of("PGPORT")),
                user: self.user.or_else(|| env("PGUSER")),
                database: self.database.or_else(|| env("PGDATABASE")),
                ..self
            },
            EngineKind::Mysql => Self {
                host: self.host.or_else(|| env("MYSQL_HOST")),
                port: self.port.or_else(|| port_of("MYSQL_TCP_PORT")),
                ..self
            },
        }
    }
}

/// An endpoint found through the RDS API (`--instance` / `--cluster`).
pub(crate) struct Found {
    pub kind: EngineKind,
    pub host: String,
    pub port: u16,
}

/// Resolves `--instance` / `--cluster` (when given) through the RDS API:
/// the engine must be `want` (when the command fixes one) and, for IAM,
/// IAM database authentication must be enabled — both reported before any
/// connection. `typed_target`: the user also gave --host or a URL.
pub(crate) async fn lookup(
    global: &GlobalArgs,
    sel: &RdsSelector,
    want: Option<EngineKind>,
    iam: bool,
    typed_target: bool,
) -> Result<Option<Found>> {
    if !sel.is_set() {
        return Ok(None);
    }
    if typed_target {
        return Err(Error::usage(
            "--instance / --cluster look the endpoint up; do not also pass --host or a URL",
        ));
    }
    let rds = Rds::connect(global).await?;
    let db = match (&sel.instance, &sel.cluster) {
        (Some(id), _) => rds.instance(id).await?,
        (None, Some(id)) => rds.cluster(id).await?,
        (None, None) => return Ok(None),
    };
    let kind = db.engine_kind()?;
    if let Some(w) = want {
        db.expect_engine(w)?;
    }
    if iam {
        db.expect_iam()?;
    }
    let (host, port) = db.address(sel.reader)?;
    tracing::info!(%host, port, engine = %db.engine, "endpoint from the RDS API");
    Ok(Some(Found { kind, host, port }))
}

/// The target as typed, or as found through the RDS API, with the
/// engine's environment variables filling in the rest.
pub(crate) async fn given(
    global: &GlobalArgs,
    kind: EngineKind,
    sel: &RdsSelector,
    iam: bool,
    typed: Given,
) -> Result<Given> {
    let typed_target = typed.url.is_some() || typed.host.is_some();
    let typed = match lookup(global, sel, Some(kind), iam, typed_target).await? {
        Some(f) => Given {
            host: Some(f.host),
            port: typed.port.or(Some(f.port)),
            ..typed
        },
        None => typed,
    };
    Ok(typed.with_env(kind))
}

pub async fn postgres(global: &GlobalArgs, args: &PostgresArgs) -> Result<u8> {
    let kind = EngineKind::Postgres;
    let typed = Given {
        url: args.url.clone(),
        host: args.host.clone(),
        port: args.port,
        user: args.user.clone(),
        database: args.database.clone(),
    };
    let given = given(global, kind, &args.rds, args.connect.iam, typed).await?;
    run(global, kind, given, &args.connect).await
}

pub async fn mysql(global: &GlobalArgs, args: &MysqlArgs) -> Result<u8> {
    let kind = EngineKind::Mysql;
    let typed = Given {
        url: args.url.clone(),
        host: args.host.clone(),
        port: args.port,
        user: args.user.clone(),
        database: args.database.clone(),
    };
    let given = given(global, kind, &args.rds, args.connect.iam, typed).await?;
    run(global, kind, given, &args.connect).await
}

/// An environment variable, if set and not empty.
pub(crate) fn env(key: &str) -> Option<String> {
    std::env::var(key).ok().filter(|v| !v.is_empty())
}

async fn run(
    global: &GlobalArgs,
    kind: EngineKind,
    given: Given,
    args: &ConnectArgs,
) -> Result<u8> {
    // Everything the user typed is checked before any I/O.
    let (_, target, url_iam) = target(
        Some(kind),
        given,
        args.via.as_deref(),
        args.connect_timeout.into(),
    )?;
    let engine = engine::for_kind(kind);
    // Without -e or --info the session goes to the native client; it must
    // be able to verify what rdsconn verifies, and be installed.
    let client = if args.execute.is_none() && !args.info {
        let family = match kind {
            EngineKind::Postgres => clientargs::Family::Libpq,
            EngineKind::Mysql => clientargs::Family::Mysql,
        };
        clientargs::check(family, &args.client_args)?;
        if !engine.handoff_through_proxy(&target) {
            engine.check_handoff(&target, args.tls)?;
        }
        Some(engine.find_client(args.client.as_deref())?)
    } else {
        None
    };
    let policy = TlsPolicy {
        mode: args.tls,
        roots: roots(global)?,
    };
    let mut minted = None;
    let auth = if args.iam || url_iam {
        let m = crate::cmd::token::mint(global, &target.host, target.port, &target.user).await?;
        let token = Secret::new(m.token.clone());
        minted = Some(m);
        Auth::IamToken(token)
    } else {
        Auth::Password(password(
            args.password_stdin,
            kind.password_env(),
            &target.user,
            target.host.as_str(),
        )?)
    };
    let connected = engine.connect(&target, &auth, &policy).await;
    let context = || format!("connecting to {}", target.describe());
    if let Some(client) = client {
        match connected {
            // Verified: TLS, name and credentials work. Now the client gets
            // the same settings, and the terminal.
            Ok(session) => session.close().await,
            // TLS and the name were verified before the server asked for a
            // method only the native client speaks: the client takes over.
            Err(ConnectError::AuthMethod {
                message,
                native_client_can: true,
                ..
            }) => output::warn(format!(
                "{message}; TLS to {} verified, handing over to the client",
                target.host
            )),
            Err(e) => return Err(Error::from(e).context(context())),
        }
        if engine.handoff_through_proxy(&target) {
            let secrets = match minted {
                Some(m) => Secrets::Iam(Box::new(TokenCache::new(
                    target.host.clone(),
                    target.port,
                    m.region,
                    global.profile.clone(),
                    m.credentials,
                ))),
                None => Secrets::Password(auth.secret().clone()),
            };
            return through_proxy(engine, client, kind, &target, policy, secrets, args).await;
        }
        let ca_file = ca_file(global)?;
        let conn = ClientConn {
            target: &target,
            secret: auth.secret(),
            iam: matches!(auth, Auth::IamToken(_)),
            mode: args.tls,
            ca_file: &ca_file,
            via_addr: via_addr(&target).await?,
            socket: None,
        };
        let launch = engine.launch(client, &conn, &args.client_args)?;
        return native::run(launch);
    }
    let mut session = connected.map_err(|e| Error::from(e).context(context()))?;
    let result = match &args.execute {
        Some(sql) => match session.execute(sql).await {
            Ok(sets) => print_results(global.output, &sets),
            Err(mut e) => {
                let completed = std::mem::take(&mut e.completed);
                if !completed.is_empty() {
                    print_results(global.output, &completed)?;
                }
                Err(Error::from(e))
            }
        },
        None => print_info(global.output, &session.describe().await),
    };
    session.close().await;
    result.map(|()| 0)
}

/// The hand-off through rdsconn's proxy on a private unix socket: the
/// client logs in there with a one-time password, the proxy logs in
/// upstream (over TLS verified for the endpoint, a fresh token per
/// connection for IAM). Serves until the client exits.
async fn through_proxy(
    engine: &dyn engine::Engine,
    client: native::NativeClient,
    kind: EngineKind,
    target: &Target,
    policy: TlsPolicy,
    secrets: Secrets,
    args: &ConnectArgs,
) -> Result<u8> {
    let dir = relay::private_dir()?;
    let socket = dir.path().join("proxy.sock");
    let local = Secret::new(ca::hex(&relay::random::<24>()?));
    let config = proxy::Config {
        kind,
        host: target.host.clone(),
        port: target.port,
        via: target.via.clone(),
        connect_timeout: target.connect_timeout,
        policy,
        secrets,
        local_password: Some(local.clone()),
        only_user: Some(target.user.clone()),
        max_connections: None,
        client_login_timeout: proxy::CLIENT_LOGIN_TIMEOUT,
    };
    let proxy = proxy::Proxy::bind(config, &[proxy::Listen::Unix(socket.clone())]).await?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(proxy.serve(
        async {
            let _ = stopped.await;
        },
        Duration::from_secs(1),
    ));
    let conn = ClientConn {
        target,
        secret: &local,
        iam: false,
        mode: args.tls,
        ca_file: std::path::Path::new(""),
        via_addr: None,
        socket: Some(&socket),
    };
    let launch = engine.launch(client, &conn, &args.client_args)?;
    let code = tokio::task::spawn_blocking(move || native::run(launch))
        .await
        .map_err(|e| Error::new(crate::error::Category::Runtime, e))??;
    let _ = stop.send(());
    let _ = serving.await;
    drop(dir);
    Ok(code)
}

/// The roots for in-process verification, warnings printed.
fn roots(global: &GlobalArgs) -> Result<std::sync::Arc<ca::Roots>> {
    let (roots, warnings) = ca::roots(global.ca_bundle.as_deref())?;
    for w in warnings {
        output::warn(w);
    }
    Ok(roots)
}

/// A PEM file with the same bundle, for child processes.
pub(crate) fn ca_file(global: &GlobalArgs) -> Result<PathBuf> {
    let cache = ca::Cache::from_env()?;
    let outcome = ca::ensure_path(
        &cache,
        &ca::LoadOptions {
            file: global.ca_bundle.as_deref(),
            region: None,
        },
    )?;
    for w in &outcome.warnings {
        output::warn(w);
    }
    Ok(outcome.path)
}

/// `--via`'s host as an address, for libpq's `hostaddr`; the lookup is
/// bounded by the target's connect timeout.
pub(crate) async fn via_addr(target: &Target) -> Result<Option<IpAddr>> {
    if target.via.is_none() {
        return Ok(None);
    }
    let lookup = target.resolve_dial();
    let addrs = engine::within(target.connect_timeout, "DNS resolution", lookup).await?;
    Ok(addrs.first().map(std::net::SocketAddr::ip))
}

/// A target from a URL and/or flags; `kind` is the command's engine, or
/// `None` to take it from the URL. Also returns the URL's `?iam=true`.
pub(crate) fn target(
    kind: Option<EngineKind>,
    given: Given,
    via: Option<&str>,
    connect_timeout: Duration,
) -> Result<(EngineKind, Target, bool)> {
    let url = given.url.as_deref().map(UrlTarget::parse).transpose()?;
    let kind = match (kind, &url) {
        (Some(k), Some(u)) if u.engine != k => {
            return Err(Error::usage(format!(
                "the URL is for {}, but the engine is {}",
                u.engine.name(),
                k.name()
            )));
        }
        (Some(k), _) => k,
        (None, Some(u)) => u.engine,
        (None, None) => {
            return Err(Error::usage(
                "an engine is required: pass a URL or --engine",
            ));
        }
    };
    let host = match (&url, &given.host) {
        (Some(u), _) => u.host.clone(),
        (None, Some(h)) => Host::parse(h)?,
        (None, None) => {
            return Err(Error::usage(
                "a host is required: pass --host HOST or a URL",
            ));
        }
    };
    let port = given
        .port
        .or(url.as_ref().and_then(|u| u.port))
        .unwrap_or(kind.default_port());
    let user = given
        .user
        .or(url.as_ref().and_then(|u| u.user.clone()))
        .ok_or_else(|| {
            Error::usage("a database user is required: pass --user USER or USER@ in the URL")
        })?;
    validate_user(&user)?;
    let iam = url.as_ref().is_some_and(|u| u.iam);
    let database = given.database.or(url.and_then(|u| u.database));
    if let Some(d) = &database {
        validate_database(d)?;
    }
    let via = via.map(parse_via).transpose()?;
    if connect_timeout.is_zero() {
        return Err(Error::usage("--connect-timeout must be more than 0s"));
    }
    let target = Target {
        host,
        port,
        via,
        user,
        database,
        connect_timeout,
    };
    Ok((kind, target, iam))
}

/// `HOST:PORT` or `[IPv6]:PORT`.
fn parse_via(raw: &str) -> Result<(String, u16)> {
    let bad = || {
        Error::usage(format!(
            "invalid --via {raw:?}: expected HOST:PORT, e.g. 127.0.0.1:15432"
        ))
    };
    let (host, port) = raw.rsplit_once(':').ok_or_else(bad)?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let port: u16 = port.parse().ok().filter(|p| *p > 0).ok_or_else(bad)?;
    let host = Host::parse(host)?;
    Ok((host.as_str().to_string(), port))
}

/// `--password-stdin`: the first line of stdin.
pub(crate) fn stdin_password() -> Result<Secret> {
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| Error::usage(format!("reading the password from stdin: {e}")))?;
    let pw = line.trim_end_matches(['\n', '\r']);
    if pw.is_empty() {
        return Err(Error::usage("--password-stdin: stdin held no password"));
    }
    Ok(Secret::new(pw.to_string()))
}

/// The password from stdin, the engine's env var, or a terminal prompt.
pub(crate) fn password(from_stdin: bool, env_var: &str, user: &str, host: &str) -> Result<Secret> {
    if from_stdin {
        return stdin_password();
    }
    if let Ok(pw) = std::env::var(env_var) {
        return Ok(Secret::new(pw));
    }
    if std::io::stdin().is_terminal() {
        let prompt = format!("Password for {user}@{host}: ");
        return rpassword::prompt_password(prompt)
            .map(Secret::new)
            .map_err(|e| Error::usage(format!("reading the password: {e}")));
    }
    Err(Error::usage(format!(
        "no password: pass --iam, --password-stdin, or set {env_var}"
    )))
}

const NULL_TEXT: &str = "NULL";

fn print_results(format: OutputFormat, sets: &[ResultSet]) -> Result<()> {
    let with_rows: Vec<&ResultSet> = sets.iter().filter(|s| !s.columns.is_empty()).collect();
    match format {
        OutputFormat::Json => {
            let arrays: Vec<Value> = with_rows.iter().map(|s| json_rows(s)).collect();
            match arrays.as_slice() {
                [one] => output::json(one),
                _ => output::json(&arrays),
            }
        }
        OutputFormat::Text => {
            let tty = std::io::stdout().is_terminal();
            let mut text = String::new();
            for (i, set) in with_rows.iter().enumerate() {
                if tty {
                    if i > 0 {
                        text.push('\n');
                    }
                    let rows: Vec<Vec<String>> = set
                        .rows
                        .iter()
                        .map(|r| {
                            r.iter()
                                .map(|v| v.clone().unwrap_or_else(|| NULL_TEXT.into()))
                                .collect()
                        })
                        .collect();
                    text.push_str(&output::table(
                        &set.columns.iter().map(String::as_str).collect::<Vec<_>>(),
                        &rows,
                    ));
                    let _ = writeln!(
                        text,
                        "({} row{})",
                        set.rows.len(),
                        if set.rows.len() == 1 { "" } else { "s" }
                    );
                } else {
                    text.push_str(&tsv_line(set.columns.iter().map(|c| Some(c.as_str()))));
                    for row in &set.rows {
                        text.push_str(&tsv_line(row.iter().map(Option::as_deref)));
                    }
                }
            }
            output::raw(text.as_bytes())
        }
    }
}

fn json_rows(set: &ResultSet) -> Value {
    Value::Array(
        set.rows
            .iter()
            .map(|row| {
                let obj: Map<String, Value> = set
                    .columns
                    .iter()
                    .zip(row)
                    .map(|(c, v)| (c.clone(), v.clone().map_or(Value::Null, Value::String)))
                    .collect();
                Value::Object(obj)
            })
            .collect(),
    )
}

/// Tab-separated, with `\t`, `\n`, `\\` escaped and NULL as `NULL` (as the
/// mysql client's batch mode does).
fn tsv_line<'a>(cells: impl Iterator<Item = Option<&'a str>>) -> String {
    let mut line = cells
        .map(|c| match c {
            None => NULL_TEXT.to_string(),
            Some(v) => v
                .replace('\\', "\\\\")
                .replace('\t', "\\t")
                .replace('\n', "\\n"),
        })
        .collect::<Vec<_>>()
        .join("\t");
    line.push('\n');
    line
}

fn print_info(format: OutputFormat, info: &SessionInfo) -> Result<()> {
    output::emit(format, info, || {
        let tls = &info.tls;
        let cert = tls.certificate.clone().unwrap_or_default();
        let t = &info.timings;
        let auth = info.auth_plugin.as_ref().map_or_else(
            || info.auth.to_string(),
            |plugin| format!("{}, plugin {plugin}", info.auth),
        );
        let stages = t.tls_auth_ms.map_or_else(
            || format!("tcp+tls+auth {:.1} ms", t.connect_ms),
            |v| format!("tcp {:.1} ms, tls+auth {v:.1} ms", t.connect_ms),
        );
        format!(
            "endpoint:     {} (dialed {})\nserver:       {} {}\nuser:         {} (auth: {})\n\
             tls:          {} {} ({})\ncertificate:  {}\nSANs:         {}\nissuer:       {}\nnot after:    {}\n\
             timings:      dns {:.1} ms, {stages}, total {:.1} ms",
            info.endpoint,
            info.dial_address,
            info.engine.name(),
            info.server_version,
            info.user,
            auth,
            tls.protocol.as_deref().unwrap_or("?"),
            tls.cipher.as_deref().unwrap_or("?"),
            tls.mode.map_or("?", crate::tls::TlsMode::as_str),
            cert.subject,
            cert.sans.join(", "),
            cert.issuer,
            cert.not_after,
            t.dns_ms,
            t.total_ms,
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn via_forms() {
        assert_eq!(
            parse_via("127.0.0.1:15432").unwrap(),
            ("127.0.0.1".into(), 15432)
        );
        assert_eq!(parse_via("[::1]:5432").unwrap(), ("::1".into(), 5432));
        assert_eq!(
            parse_via("bastion.internal:6000").unwrap(),
            ("bastion.internal".into(), 6000)
        );
        for bad in ["127.0.0.1", "h:0", "h:x", ":5432", "a b:1"] {
            assert!(parse_via(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn tsv_escapes_and_marks_null() {
        let line = tsv_line([Some("a\tb"), None, Some("x\ny\\")].into_iter());
        assert_eq!(line, "a\\tb\tNULL\tx\\ny\\\\\n");
    }
}
