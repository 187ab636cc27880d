//! From what the user typed to one connection request: a URL and/or the
//! target flags, the RDS API (`--instance` / `--cluster`), the engine's
//! environment variables (`PGHOST`…, `MYSQL_HOST`…), `--via`, and the
//! password sources (`--password-stdin`, the engine's variable, a prompt).
//! Every target-taking command and the proxy come through here; nothing is
//! dialed and no token is minted in this module.

use std::io::{IsTerminal, Read};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::ca;
use crate::cli::{
    CheckArgs, GlobalArgs, MysqlArgs, PostgresArgs, ProxyArgs, RdsSelector, SecretFlags,
    TargetFlags, TokenArgs,
};
use crate::error::{Error, Result};
use crate::output;
use crate::rds::Rds;
use crate::secret::Secret;
pub(crate) use crate::secrets::FromSecret;
use crate::secrets::{self, SecretRef};
use crate::target::{EndpointClass, EngineKind, Host, UrlTarget, validate_database, validate_user};
use crate::target::{Target, Via};
use crate::tls::TlsMode;

/// Host, port, user and database as the user gave them, before defaults.
#[derive(Default)]
pub(crate) struct Given {
    pub url: Option<String>,
    pub host: Option<String>,
    pub port: Option<u16>,
    pub user: Option<String>,
    pub database: Option<String>,
    /// The endpoint's class when the RDS API said what it is (a proxy).
    pub class: Option<EndpointClass>,
}

impl Given {
    /// A target URL alone (`check`'s arguments and `--file` lines).
    pub(crate) fn url(url: String) -> Self {
        Self {
            url: Some(url),
            ..Self::default()
        }
    }

    /// The endpoint found through the RDS API in place of a typed one; a
    /// typed port still wins.
    #[must_use]
    pub(crate) fn at(self, found: Found) -> Self {
        Self {
            host: Some(found.host),
            port: self.port.or(Some(found.port)),
            class: found.class,
            ..self
        }
    }

    /// The engine's environment variables (`PGHOST`, `PGPORT`, `PGUSER`,
    /// `PGDATABASE`; `MYSQL_HOST`, `MYSQL_TCP_PORT`) fill in what the
    /// user's values leave open.
    ///
    /// `PGHOSTADDR` (what `rdsconn env` exports for `--via`) is the dial
    /// address, and `PGPORT` then the dial port, not the endpoint's: they
    /// come back as `via` (unless `--via` or a typed target says otherwise).
    /// A variable that is set but invalid is an error, not ignored.
    fn with_env(self, kind: EngineKind, typed: bool) -> Result<(Self, Option<String>)> {
        let port_of = |var: &str| -> Result<Option<u16>> {
            env(var)
                .map(|p| {
                    p.parse::<u16>()
                        .ok()
                        .filter(|p| *p > 0)
                        .ok_or_else(|| Error::usage(format!("{var}={p:?} is not a port (1-65535)")))
                })
                .transpose()
        };
        match kind {
            EngineKind::Postgres => {
                let hostaddr = if typed { None } else { env("PGHOSTADDR") };
                let pgport = port_of("PGPORT")?;
                let (port, via) = match &hostaddr {
                    Some(addr) => {
                        let addr: IpAddr = addr.parse().map_err(|_| {
                            Error::usage(format!("PGHOSTADDR={addr:?} is not an IP address"))
                        })?;
                        let dial = pgport.unwrap_or(EngineKind::Postgres.default_port());
                        let via = std::net::SocketAddr::new(addr, dial).to_string();
                        (self.port, Some(via))
                    }
                    None => (self.port.or(pgport), None),
                };
                let given = Self {
                    host: self.host.or_else(|| env("PGHOST")),
                    port,
                    user: self.user.or_else(|| env("PGUSER")),
                    database: self.database.or_else(|| env("PGDATABASE")),
                    ..self
                };
                Ok((given, via))
            }
            EngineKind::Mysql => {
                let port = port_of("MYSQL_TCP_PORT")?;
                let given = Self {
                    host: self.host.or_else(|| env("MYSQL_HOST")),
                    port: self.port.or(port),
                    ..self
                };
                Ok((given, None))
            }
        }
    }
}

/// The target flags of `env`, `exec` and `doctor`.
impl From<&TargetFlags> for Given {
    fn from(f: &TargetFlags) -> Self {
        Self {
            url: f.url.clone(),
            host: f.host.clone(),
            port: f.port,
            user: f.user.clone(),
            database: f.database.clone(),
            class: None,
        }
    }
}

/// `rdsconn postgres` / `rdsconn mysql`: the positional argument is a URL,
/// or the database name (as psql and mysql take it).
fn url_or_database(
    positional: Option<&String>,
    host: Option<&String>,
    database: Option<&String>,
) -> Result<(Option<String>, Option<String>)> {
    match positional {
        Some(url) if url.contains("://") || crate::target::is_conninfo(url) => {
            if host.is_some() {
                return Err(Error::usage(
                    "the URL names the host: pass either a URL or --host, not both",
                ));
            }
            Ok((Some(url.clone()), database.cloned()))
        }
        Some(db) => match database {
            Some(flag) if flag != db => Err(Error::usage(format!(
                "two databases: {db:?} and --dbname {flag:?}; pass one"
            ))),
            _ => Ok((None, Some(db.clone()))),
        },
        None => Ok((None, database.cloned())),
    }
}

macro_rules! given_from_engine_args {
    ($($flags:ty),*) => {$(
        impl TryFrom<&$flags> for Given {
            type Error = Error;

            fn try_from(f: &$flags) -> Result<Self> {
                let (url, database) =
                    url_or_database(f.url.as_ref(), f.host.as_ref(), f.database.as_ref())?;
                Ok(Self {
                    url,
                    host: f.host.clone(),
                    port: f.port,
                    user: f.user.clone(),
                    database,
                    class: None,
                })
            }
        }
    )*};
}

given_from_engine_args!(PostgresArgs, MysqlArgs);

/// `check`'s `--host` target (its URLs are [`Given::url`]).
impl From<&CheckArgs> for Given {
    fn from(f: &CheckArgs) -> Self {
        Self {
            url: None,
            host: f.host.clone(),
            port: f.port,
            user: f.user.clone(),
            database: f.database.clone(),
            class: None,
        }
    }
}

/// A token is for an endpoint and a user; a database has no part in it.
impl From<&TokenArgs> for Given {
    fn from(f: &TokenArgs) -> Self {
        Self {
            url: f.url.clone(),
            host: f.host.clone(),
            port: f.port,
            user: f.user.clone(),
            database: None,
            class: None,
        }
    }
}

/// TARGET as a URL, or `HOST[:PORT]` (then as --host / --port).
impl TryFrom<&ProxyArgs> for Given {
    type Error = Error;

    fn try_from(args: &ProxyArgs) -> Result<Self> {
        match args.url.as_deref() {
            Some(raw) if !raw.contains("://") => {
                let (host, port) = match raw.rsplit_once(':') {
                    Some((h, p)) if !h.contains(':') => {
                        let port = p.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(|| {
                            Error::usage(format!(
                                "invalid port in {raw:?}: expected HOST[:PORT] or a URL"
                            ))
                        })?;
                        (h.to_string(), Some(port))
                    }
                    _ => (raw.to_string(), None),
                };
                Ok(Given {
                    host: Some(host),
                    port: port.or(args.port),
                    user: args.user.clone(),
                    ..Given::default()
                })
            }
            _ => Ok(Given {
                url: args.url.clone(),
                host: args.host.clone(),
                port: args.port,
                user: args.user.clone(),
                ..Given::default()
            }),
        }
    }
}

/// An endpoint found through the RDS API (`--instance` / `--cluster`).
pub(crate) struct Found {
    pub kind: EngineKind,
    pub host: String,
    pub port: u16,
    /// `Some(Proxy)` for an RDS Proxy or proxy endpoint.
    pub class: Option<EndpointClass>,
    /// The RDS-managed master user secret's ARN, and the master user.
    pub master_secret: Option<String>,
    pub master_user: Option<String>,
    /// The database created with the instance or cluster.
    pub database: Option<String>,
}

impl Found {
    /// Where to connect to `db` (`reader`: a cluster's reader endpoint).
    pub(crate) fn of(db: &crate::rds::Database, reader: bool) -> Result<Self> {
        let kind = db.engine_kind()?;
        let (host, port) = db.address(reader)?;
        Ok(Self {
            kind,
            host,
            port,
            class: db.kind.is_proxy().then_some(EndpointClass::Proxy),
            master_secret: db.master_user_secret.clone(),
            master_user: db.master_username.clone(),
            database: db.db_name.clone(),
        })
    }
}

/// Resolves `--instance` / `--cluster` (when given) through the RDS API:
/// the engine must be `want` (when the command fixes one) and, for IAM,
/// IAM database authentication must be enabled — both reported before any
/// connection. `typed_target`: the user also gave --host or a URL.
async fn lookup(
    global: &GlobalArgs,
    sel: &RdsSelector,
    want: Option<EngineKind>,
    iam: bool,
    typed_target: bool,
) -> Result<Option<(Found, crate::rds::Database)>> {
    if !sel.is_set() {
        return Ok(None);
    }
    if typed_target {
        return Err(Error::usage(
            "--instance / --cluster / --proxy look the endpoint up; do not also pass --host or a URL",
        ));
    }
    let rds = Rds::connect(global).await?;
    let Some(db) = rds.selected(sel).await? else {
        return Ok(None);
    };
    db.engine_kind()?;
    if let Some(w) = want {
        db.expect_engine(w)?;
    }
    if iam {
        db.expect_iam()?;
    }
    let found = Found::of(&db, sel.reader)?;
    tracing::info!(host = %found.host, port = found.port, engine = %db.engine, "endpoint from the RDS API");
    Ok(Some((found, db)))
}

/// The database of an Aurora DSQL cluster.
const DSQL_DATABASE: &str = "postgres";

/// An environment variable, if set and not empty.
pub(crate) fn env(key: &str) -> Option<String> {
    std::env::var(key).ok().filter(|v| !v.is_empty())
}

/// The roots for in-process verification of `host` (by its endpoint
/// class, or `--ca-bundle`), warnings printed.
pub(crate) fn roots(global: &GlobalArgs, host: &Host) -> Result<std::sync::Arc<ca::Roots>> {
    let trust = ca::Trust::for_host(host);
    let (roots, warnings) = ca::roots_for(global.ca_bundle.as_deref(), trust)?;
    for w in warnings {
        output::warn(w);
    }
    Ok(roots)
}

/// A PEM file with the same roots, for child processes.
pub(crate) fn ca_file(global: &GlobalArgs, host: &Host) -> Result<PathBuf> {
    let cache = ca::Cache::from_env()?;
    let outcome = ca::ensure_path_for(
        &cache,
        &ca::LoadOptions {
            file: global.ca_bundle.as_deref(),
            region: None,
        },
        ca::Trust::for_host(host),
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
    let lookup = crate::net::resolve_dial(target);
    let addrs = crate::net::within(target.connect_timeout, "DNS resolution", lookup).await?;
    Ok(addrs.first().map(std::net::SocketAddr::ip))
}

/// Whom a target is for: one database user (every command but the
/// proxy), or any user a client names (the proxy; the target's user is then
/// empty unless one was given).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Users {
    One,
    Any,
}

/// What a command asks [`request`] to resolve.
pub(crate) struct Ask<'a> {
    /// The command's engine; `None`: the URL's, the RDS API's, or unknown.
    pub kind: Option<EngineKind>,
    pub given: Given,
    /// `--instance` / `--cluster`.
    pub rds: &'a RdsSelector,
    /// `--iam`: the RDS API lookup also checks IAM auth is enabled.
    pub iam: bool,
    /// `--via HOST:PORT`: the dial path.
    pub via: Option<&'a str>,
    pub connect_timeout: Duration,
    pub users: Users,
    /// Fill what is open from the engine's environment variables (`env`,
    /// `exec`, the engine commands and the proxy; not `check`, `doctor`
    /// and `token`, whose targets are all on the command line).
    pub env: bool,
    /// `--secret` / `--master-secret`: the credential source (and maybe
    /// the target) in Secrets Manager.
    pub secret: &'a SecretFlags,
    /// `--tls`: a URL's `sslmode` may ask for more, never for less.
    pub tls: TlsMode,
}

/// A resolved connection request.
pub(crate) struct Request {
    /// `None` only when neither the command, a URL nor the RDS API named
    /// one (`token` and `doctor` can do without).
    pub kind: Option<EngineKind>,
    pub target: Target,
    /// `--iam` or the URL's `?iam=true`.
    pub iam: bool,
    /// The password from `--secret` / `--master-secret`.
    pub secret: Option<FromSecret>,
    /// The password of a `DATABASE_URL` from the environment.
    pub password: Option<Secret>,
    /// `--tls`, or the stricter mode a URL's `sslmode` / `ssl-mode` asks.
    pub tls: TlsMode,
    /// The instance, cluster or proxy the RDS API found (`--instance`,
    /// `--cluster`, `--proxy`, or a secret naming one).
    pub database: Option<crate::rds::Database>,
}

impl Request {
    /// The engine, which the caller needs.
    pub(crate) fn engine(&self) -> Result<EngineKind> {
        self.kind
            .ok_or_else(|| Error::usage("an engine is required: pass a URL or --engine"))
    }
}

/// The one way from a command's target flags to a connection request: the
/// RDS API (`--instance` / `--cluster`), the engine's environment
/// variables, the URL and the flags, `--via`.
pub(crate) async fn request(global: &GlobalArgs, ask: Ask<'_>) -> Result<Request> {
    let typed_user = ask.given.user.clone();
    let typed_target = ask.given.url.is_some() || ask.given.host.is_some();
    let aws_ask = ask.rds_secret();
    let (mut kind, mut given) = (ask.kind, ask.given);
    let (from, found_db) = from_aws(global, &aws_ask, &mut kind, &mut given, typed_target).await?;
    // The user typed or named by the secret: the proxy serves that one.
    let typed_user = given.user.clone().or(typed_user);
    let from_env = ask.env && !typed_target && !ask.rds.is_set() && from.is_none();
    let (url, url_password) = url_for(&given, kind, from_env)?;
    let kind = match (kind, &url) {
        (Some(k), Some(u)) if u.engine != k => {
            return Err(Error::usage(format!(
                "the URL is for {}, but the engine is {}",
                u.engine.name(),
                k.name()
            )));
        }
        (Some(k), _) => Some(k),
        (None, u) => u.as_ref().map(|u| u.engine),
    };
    let mut env_via = None;
    if ask.env
        && let Some(k) = kind
    {
        let typed = ask.via.is_some() || given.url.is_some() || given.host.is_some();
        (given, env_via) = given.with_env(k, typed)?;
        if ask.users == Users::Any {
            // The environment's user is a client's business, not the proxy's.
            given.user = typed_user;
        }
    }
    let host = match (&url, &given.host) {
        (Some(u), _) => u.host.clone(),
        (None, Some(h)) => {
            let host = Host::parse(h)?;
            match given.class {
                Some(class) => host.with_class(class),
                None => host,
            }
        }
        (None, None) => {
            return Err(
                Error::usage("a host is required: pass --host HOST or a URL").with_hint(
                    "e.g. --host mydb.abc123.eu-west-1.rds.amazonaws.com, or postgres://app@HOST",
                ),
            );
        }
    };
    let kind = dsql_defaults(&host, kind, url.as_ref(), &mut given)?;
    let (url_via, url_port) = url_dial(url.as_ref(), kind);
    let port = given
        .port
        .or(url_port)
        .or(kind.map(EngineKind::default_port))
        .ok_or_else(|| {
            Error::usage("--port is required: the engine, whose default port it would be, is not known")
                .with_hint("pass --port, --engine mysql|postgres for the default port, or a URL such as postgres://app@HOST")
        })?;
    let user = given.user.or(url.as_ref().and_then(|u| u.user.clone()));
    let user = user_for(user, ask.users, from.as_ref())?;
    let url_iam = url.as_ref().is_some_and(|u| u.iam);
    let tls = url_tls(global, ask.tls, url.as_ref(), &host)?;
    refuse_chain_only_on_public_roots(global, tls, &host)?;
    let connect_timeout = url
        .as_ref()
        .and_then(|u| u.connect_timeout)
        .map_or(ask.connect_timeout, |t| t.min(ask.connect_timeout));
    let database = given.database.or(url.and_then(|u| u.database));
    if let Some(d) = &database {
        validate_database(d)?;
    }
    let via = ask
        .via
        .or(env_via.as_deref())
        .or(url_via.as_deref())
        .map(|raw| parse_via(raw, false))
        .transpose()?
        .map_or_else(|| all_proxy(&host), |v| Ok(Some(v)))?
        .map(|via| ssm_signing(via, global, &host))
        .transpose()?;
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
    Ok(Request {
        kind,
        target,
        iam: ask.iam || url_iam,
        secret: from,
        password: url_password,
        tls,
        database: found_db,
    })
}

/// The URL's dial address (`hostaddr`: its port is then the dial port, as
/// in rdsconn's own `DATABASE_URL`), or else its endpoint port.
fn url_dial(url: Option<&UrlTarget>, kind: Option<EngineKind>) -> (Option<String>, Option<u16>) {
    let Some(u) = url else {
        return (None, None);
    };
    match u.hostaddr {
        Some(addr) => {
            let dial = u
                .port
                .or(kind.map(EngineKind::default_port))
                .unwrap_or(5432);
            (
                Some(std::net::SocketAddr::new(addr, dial).to_string()),
                None,
            )
        }
        None => (None, u.port),
    }
}

/// The target URL: as given, or (`from_env`: nothing else names the
/// target) `DATABASE_URL` when it is for this engine — `rdsconn env`'s own
/// output read back, password included (it comes from the environment,
/// not argv).
fn url_for(
    given: &Given,
    kind: Option<EngineKind>,
    from_env: bool,
) -> Result<(Option<UrlTarget>, Option<Secret>)> {
    if let Some(raw) = &given.url {
        return Ok((Some(UrlTarget::parse(raw)?), None));
    }
    if !from_env || given.host.is_some() {
        return Ok((None, None));
    }
    let Some(raw) = env("DATABASE_URL") else {
        return Ok((None, None));
    };
    let scheme = raw.split_once("://").map(|(s, _)| s);
    let engine = scheme.and_then(EngineKind::from_scheme);
    if engine.is_none() || (kind.is_some() && engine != kind) {
        // Another engine's (or another program's) URL.
        return Ok((None, None));
    }
    let (url, password) = UrlTarget::parse_with_password(&raw)?;
    Ok((Some(url), password.map(Secret::new)))
}

/// `--tls`, or the stricter mode the URL asks for; a weaker one, and a CA
/// file other than the one rdsconn would use, are refused (exit 2).
fn url_tls(
    global: &GlobalArgs,
    flag: TlsMode,
    url: Option<&UrlTarget>,
    host: &Host,
) -> Result<TlsMode> {
    let Some(url) = url else {
        return Ok(flag);
    };
    let mode = match (url.verify_name, flag) {
        (Some(true), _) => TlsMode::VerifyFull,
        (Some(false), TlsMode::VerifyCa) | (None, _) => flag,
        (Some(false), TlsMode::VerifyFull) => {
            return Err(Error::usage(
                "sslmode=verify-ca in the URL is weaker than --tls verify-full: pass --tls verify-ca to allow it",
            ));
        }
    };
    if let Some(file) = &url.ca_file {
        let same = |a: &Path| {
            let canon = |p: &Path| std::fs::canonicalize(p).ok();
            canon(a).is_some() && canon(a) == canon(Path::new(file))
        };
        let ours = match &global.ca_bundle {
            Some(bundle) => same(bundle),
            None => ca_file(global, host).is_ok_and(|f| same(&f)),
        };
        if !ours {
            return Err(Error::usage(format!(
                "sslrootcert / ssl-ca {file:?} is not the CA file rdsconn trusts for {host}: pass --ca-bundle {file:?} to use it"
            )));
        }
    }
    Ok(mode)
}

/// `verify-ca` checks the chain only, which proves nothing where the roots
/// are public: the Amazon Trust Services roots (RDS Proxy and Aurora DSQL
/// names, or a `--ca-bundle` holding them) sign every AWS customer's ACM
/// certificates, so any of them would receive the password or token.
/// Refused (exit 2) in every command, before anything is dialed.
fn refuse_chain_only_on_public_roots(
    global: &GlobalArgs,
    mode: TlsMode,
    host: &Host,
) -> Result<()> {
    if mode != TlsMode::VerifyCa {
        return Ok(());
    }
    let why = if ca::Trust::for_host(host) == ca::Trust::AmazonTrust {
        "its certificate chains to public roots (the Amazon Trust Services roots)"
    } else if global.ca_bundle.is_some() && ca::holds_public_roots(&*roots(global, host)?) {
        "the --ca-bundle file holds public roots (the Amazon Trust Services roots)"
    } else {
        return Ok(());
    };
    Err(Error::usage(format!(
        "verify-ca (chain only) is refused for {host}: {why}, which sign every AWS customer's certificates; \
         use verify-full, which also checks the name"
    )))
}

/// `--secret` (which may fill the target), then the RDS API
/// (`--instance`, `--cluster`, `--proxy`, or the secret's instance or
/// cluster), then `--master-secret` of what the API found.
async fn from_aws(
    global: &GlobalArgs,
    ask: &RdsSecretAsk<'_>,
    kind: &mut Option<EngineKind>,
    given: &mut Given,
    typed_target: bool,
) -> Result<(Option<FromSecret>, Option<crate::rds::Database>)> {
    let mut sel = ask.rds.clone();
    let mut from = match &ask.secret.secret {
        Some(id) => {
            let source = SecretRef::new(id, ask.secret.secret_region.as_deref());
            let read = secrets::fetch(global, &source).await?;
            fill_from_secret(&read, kind, given, &mut sel, typed_target);
            Some(FromSecret {
                source,
                password: read.password,
            })
        }
        None => None,
    };
    let mut database = None;
    match lookup(global, &sel, ask.kind, ask.iam, typed_target).await? {
        Some((found, db)) => {
            if ask.secret.master_secret {
                from = Some(master_secret(global, &found, given).await?);
            }
            *kind = kind.or(Some(found.kind));
            *given = std::mem::take(given).at(found);
            database = Some(db);
        }
        None if ask.secret.master_secret => {
            return Err(Error::usage(
                "--master-secret reads the RDS-managed secret of --instance / --cluster: name one",
            ));
        }
        None => {}
    }
    Ok((from, database))
}

/// The parts of an [`Ask`] that talk to AWS.
struct RdsSecretAsk<'a> {
    kind: Option<EngineKind>,
    rds: &'a RdsSelector,
    iam: bool,
    secret: &'a SecretFlags,
}

impl<'a> Ask<'a> {
    fn rds_secret(&self) -> RdsSecretAsk<'a> {
        RdsSecretAsk {
            kind: self.kind,
            rds: self.rds,
            iam: self.iam,
            secret: self.secret,
        }
    }
}

/// The user: as given, none for the proxy (any client's), else an error
/// naming what should have said it.
fn user_for(user: Option<String>, users: Users, from: Option<&FromSecret>) -> Result<String> {
    match (user, users) {
        (Some(u), _) => {
            validate_user(&u)?;
            Ok(u)
        }
        (None, Users::Any) => Ok(String::new()),
        // The secret was to name the user.
        (None, Users::One) => match from {
            Some(f) => Err(secrets::SecretError::MissingKey {
                id: f.source.id.clone(),
                key: "username",
            }
            .into()),
            None => Err(Error::usage(
                "a database user is required: pass --user USER or USER@ in the URL",
            )),
        },
    }
}

/// What a `--secret` says fills what the flags left open (the user, the
/// host and port, the engine, the database, or the instance / cluster to
/// look up); where both say something different, the flags win, with a
/// warning for the host, port and engine.
fn fill_from_secret(
    read: &secrets::DbSecret,
    kind: &mut Option<EngineKind>,
    given: &mut Given,
    sel: &mut RdsSelector,
    typed_target: bool,
) {
    let disagree = |what: &str, flag: &dyn std::fmt::Display, secret: &dyn std::fmt::Display| {
        output::warn(format!(
            "the secret's {what} ({secret}) differs from the command line's ({flag}); using the command line's"
        ));
    };
    if given.user.is_none() {
        given.user.clone_from(&read.username);
    }
    if given.database.is_none() {
        given.database.clone_from(&read.dbname);
    }
    if let Some(engine) = &read.engine {
        match (crate::rds::engine_kind(engine), *kind) {
            (Some(s), Some(k)) if s != k => disagree("engine", &k.name(), &s.name()),
            (Some(s), None) => *kind = Some(s),
            _ => {}
        }
    }
    let typed_elsewhere = typed_target || sel.is_set();
    // A URL's host and port count as typed, as the flags do.
    let url = given.url.as_deref().and_then(|u| UrlTarget::parse(u).ok());
    let typed_host = given
        .host
        .clone()
        .or_else(|| url.as_ref().map(|u| u.host.as_str().to_string()));
    let typed_port = given.port.or_else(|| url.as_ref().and_then(|u| u.port));
    match (&read.host, &typed_host) {
        (Some(s), Some(f)) if !s.eq_ignore_ascii_case(f) => disagree("host", f, s),
        (Some(s), None) if !typed_elsewhere => given.host = Some(s.clone()),
        (Some(s), None) if given.url.is_none() => {
            disagree("host", &"--instance / --cluster / --proxy", s);
        }
        (None, None) if !typed_elsewhere => {
            sel.instance.clone_from(&read.instance);
            if sel.instance.is_none() {
                sel.cluster.clone_from(&read.cluster);
            }
        }
        _ => {}
    }
    match (read.port, typed_port) {
        (Some(s), Some(f)) if s != f => disagree("port", &f, &s),
        (Some(s), None) => given.port = Some(s),
        _ => {}
    }
}

/// `--master-secret`: the secret RDS manages for the master user of the
/// instance or cluster found, and that user (unless one was given).
pub(crate) async fn master_secret(
    global: &GlobalArgs,
    found: &Found,
    given: &mut Given,
) -> Result<FromSecret> {
    let Some(arn) = &found.master_secret else {
        return Err(crate::rds::RdsError::NoMasterSecret {
            host: found.host.clone(),
        }
        .into());
    };
    let source = SecretRef::new(arn, None);
    let read = secrets::fetch(global, &source).await?;
    if given.user.is_none() {
        given.user = found.master_user.clone().or(read.username);
    }
    // The master user's database, as the console's connect snippets use.
    if given.database.is_none() && given.url.is_none() {
        given.database.clone_from(&found.database);
    }
    Ok(FromSecret {
        source,
        password: read.password,
    })
}

/// Aurora DSQL speaks PostgreSQL, and its one database is `postgres`.
fn dsql_defaults(
    host: &Host,
    kind: Option<EngineKind>,
    url: Option<&UrlTarget>,
    given: &mut Given,
) -> Result<Option<EngineKind>> {
    if !host.is_dsql() {
        return Ok(kind);
    }
    if kind == Some(EngineKind::Mysql) {
        return Err(Error::usage(format!(
            "{host} is an Aurora DSQL endpoint, which speaks PostgreSQL, not MySQL"
        )));
    }
    if given.database.is_none() && url.is_none_or(|u| u.database.is_none()) {
        given.database = Some(DSQL_DATABASE.to_string());
    }
    Ok(Some(EngineKind::Postgres))
}

/// An SSM session is started in the region `--region` names (which must
/// be a region's name: it becomes the API's host name), else the
/// endpoint's, else the configuration's; with `--profile`'s credentials.
fn ssm_signing(via: Via, global: &GlobalArgs, host: &Host) -> Result<Via> {
    match via {
        Via::Ssm { target, .. } => {
            if let Some(r) = global
                .region
                .as_deref()
                .filter(|r| !crate::aws::is_valid_region(r))
            {
                return Err(crate::aws::AwsError::BadRegion {
                    region: r.to_string(),
                    from: "--region",
                }
                .into());
            }
            Ok(Via::Ssm {
                target,
                region: global
                    .region
                    .clone()
                    .or_else(|| host.rds_region().ok().flatten()),
                profile: global.profile.clone(),
            })
        }
        other => Ok(other),
    }
}

/// `ALL_PROXY` / `all_proxy` as the dial path when it is a SOCKS5 proxy
/// (as cloud-sql-proxy reads it) and `NO_PROXY` does not exempt `host`;
/// other proxies are for HTTP, not for database connections.
fn all_proxy(host: &Host) -> Result<Option<Via>> {
    let Some((name, raw)) = ["ALL_PROXY", "all_proxy"]
        .into_iter()
        .find_map(|n| env(n).map(|v| (n, v)))
    else {
        return Ok(None);
    };
    let exempt = ["NO_PROXY", "no_proxy"].into_iter().find_map(env);
    if exempt.is_some_and(|list| no_proxy_matches(&list, host.as_str())) {
        tracing::debug!("NO_PROXY exempts {host}: not through {name}");
        return Ok(None);
    }
    if !(raw.starts_with("socks5://") || raw.starts_with("socks5h://")) {
        return Ok(None);
    }
    Via::parse(&raw, true)
        .map(Some)
        .map_err(|why| Error::usage(format!("invalid {name}: {why}")))
}

/// Whether the `NO_PROXY` list exempts `host`, by the rules of curl and
/// Go's proxy package: `*` exempts everything; a name exempts itself and
/// its subdomains (with or without a leading `.`); an IP address or CIDR
/// block exempts the addresses in it. Case does not matter; a `:PORT`
/// on an entry is ignored.
fn no_proxy_matches(list: &str, host: &str) -> bool {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    let ip: Option<std::net::IpAddr> = host.parse().ok();
    list.split(',')
        .map(|e| e.trim().to_ascii_lowercase())
        .filter(|e| !e.is_empty())
        .any(|entry| {
            if entry == "*" {
                return true;
            }
            if let Some(ip) = ip {
                if let Ok(net) = entry.parse::<ipnet::IpNet>() {
                    return net.contains(&ip);
                }
                // An address, `ADDR:PORT`, `[V6]:PORT` or `[V6]`.
                let addr = entry
                    .parse::<std::net::IpAddr>()
                    .ok()
                    .or_else(|| entry.parse::<std::net::SocketAddr>().ok().map(|s| s.ip()))
                    .or_else(|| entry.strip_prefix('[')?.strip_suffix(']')?.parse().ok());
                return addr == Some(ip);
            }
            let name = entry.split_once(':').map_or(entry.as_str(), |(n, _)| n);
            let name = name.trim_start_matches("*.").trim_start_matches('.');
            !name.is_empty() && (host == name || host.ends_with(&format!(".{name}")))
        })
}

pub(crate) fn parse_via(raw: &str, from_env: bool) -> Result<Via> {
    Via::parse(raw, from_env)
        .map_err(|why| Error::usage(format!("invalid --via {:?}: {why}", redacted(raw))))
}

/// `raw` for an error message, never with the password of a URL's
/// `USER:PASSWORD@` (also when the URL does not parse).
fn redacted(raw: &str) -> String {
    if let Ok(mut u) = url::Url::parse(raw) {
        if u.password().is_some() {
            let _ = u.set_password(Some("REDACTED"));
            return u.to_string();
        }
        return raw.to_string();
    }
    let (scheme, rest) = raw.split_at(raw.find("://").map_or(0, |i| i + 3));
    match rest.rsplit_once('@') {
        Some((userinfo, host)) if userinfo.contains(':') => {
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{scheme}{user}:REDACTED@{host}")
        }
        _ => raw.to_string(),
    }
}

/// Target URLs from a file (`-` for stdin), one a line; blank lines and
/// `#` comments skipped (`check --file`).
pub(crate) fn target_lines(file: &Path) -> Result<Vec<String>> {
    let text = if file == Path::new("-") {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .map_err(|e| Error::usage(format!("reading targets from stdin: {e}")))?;
        s
    } else {
        std::fs::read_to_string(file)
            .map_err(|e| Error::usage(format!("reading {}: {e}", file.display())))?
    };
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect())
}

/// `-f FILE` (`-`: stdin, the rest of it after --password-stdin's line).
pub(crate) fn sql_file(file: &Path) -> Result<String> {
    let read = if file == Path::new("-") {
        let mut sql = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut sql).map(|_| sql)
    } else {
        std::fs::read_to_string(file)
    };
    let sql = read.map_err(|e| Error::usage(format!("reading {}: {e}", file.display())))?;
    if sql.trim().is_empty() {
        return Err(Error::usage(format!("{} holds no SQL", file.display())));
    }
    Ok(sql)
}

/// `--password-stdin`: the first line of stdin.
pub(crate) fn stdin_password() -> Result<Secret> {
    // Byte by byte from the descriptor itself: whatever follows the first
    // line stays in stdin, for `-c -` / `-f -` or the native client.
    let stdin = std::io::stdin();
    let mut line = Vec::new();
    let mut byte = [0_u8; 1];
    loop {
        match rustix::io::read(&stdin, &mut byte) {
            Ok(0) => break,
            Ok(_) if byte[0] == b'\n' => break,
            Ok(_) => line.push(byte[0]),
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => {
                return Err(Error::usage(format!(
                    "reading the password from stdin: {e}"
                )));
            }
        }
        if line.len() > 64 * 1024 {
            return Err(Error::usage(
                "--password-stdin: the first line is longer than 64 KiB",
            ));
        }
    }
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    let pw = String::from_utf8(line)
        .map_err(|_| Error::usage("--password-stdin: the password is not UTF-8"))?;
    if pw.is_empty() {
        return Err(Error::usage("--password-stdin: stdin held no password"));
    }
    Ok(Secret::new(pw))
}

/// When to ask for the password on the terminal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Prompt {
    /// Without one from stdin or the engine's variable, when there is a
    /// terminal.
    Auto,
    /// Always (mysql -p, psql -W).
    Always,
    /// Never (psql -w).
    Never,
}

/// Where a command's password comes from when the request has none (no
/// IAM, no secret, no `DATABASE_URL` password).
pub(crate) struct PasswordFrom<'a> {
    /// Read from stdin already (`--password-stdin` for several databases).
    pub read: Option<&'a Secret>,
    /// `--password-stdin`, not read yet.
    pub stdin: bool,
    pub prompt: Prompt,
}

/// Logs in to `req`'s target over verified TLS: a fresh IAM token, the
/// secret's password, the `DATABASE_URL`'s, else `from`, the engine's
/// variable, its password file or a prompt.
pub(crate) async fn log_in(
    global: &GlobalArgs,
    req: &Request,
    from: &PasswordFrom<'_>,
) -> Result<Box<dyn crate::engine::Session>> {
    use crate::secret::Auth;
    let kind = req.engine()?;
    let target = &req.target;
    let auth = if req.iam {
        let m = crate::iam::mint(global, &target.host, target.port, &target.user).await?;
        Auth::IamToken(Secret::new(m.token))
    } else if let Some(s) = &req.secret {
        Auth::Password(s.password.clone())
    } else if let Some(p) = req.password.as_ref().or(from.read) {
        Auth::Password(p.clone())
    } else {
        Auth::Password(password_with(
            from.stdin,
            from.prompt,
            kind.password_env(),
            (&target.user, target.host.as_str()),
            || password_file(kind, target, None),
        )?)
    };
    let policy = crate::tls::TlsPolicy {
        mode: req.tls,
        roots: roots(global, &target.host)?,
    };
    crate::engine::connect(crate::engine::for_kind(kind), target, &auth, &policy)
        .await
        .map_err(|e| Error::from(e).context(format!("connecting to {}", target.describe())))
}

/// The password from stdin, the engine's env var, or a terminal prompt.
pub(crate) fn password(from_stdin: bool, env_var: &str, user: &str, host: &str) -> Result<Secret> {
    password_with(from_stdin, Prompt::Auto, env_var, (user, host), || None)
}

/// The password file of `kind`'s native client that has one for `target`.
pub(crate) fn password_file(
    kind: EngineKind,
    target: &Target,
    defaults_file: Option<&Path>,
) -> Option<Secret> {
    match kind {
        EngineKind::Postgres => crate::passfile::pgpass(target),
        EngineKind::Mysql => crate::passfile::mycnf(defaults_file),
    }
}

/// [`password`], with the prompt rule the command line asked for and a
/// password file (`~/.pgpass`, `~/.my.cnf`) after the variable.
pub(crate) fn password_with(
    from_stdin: bool,
    prompt: Prompt,
    env_var: &str,
    (user, host): (&str, &str),
    from_file: impl FnOnce() -> Option<Secret>,
) -> Result<Secret> {
    if from_stdin {
        return stdin_password();
    }
    if prompt == Prompt::Always {
        let tty = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/tty");
        if tty.is_err() {
            return Err(Error::usage(format!(
                "there is no terminal to ask for the password on: use --password-stdin or {env_var}"
            )));
        }
        let question = format!("Password for {user}@{host}: ");
        return rpassword::prompt_password(question)
            .map(Secret::new)
            .map_err(|e| Error::usage(format!("reading the password: {e}")));
    }
    if let Ok(pw) = std::env::var(env_var) {
        // libpq takes an empty PGPASSWORD as unset, so ~/.pgpass applies.
        if !(pw.is_empty() && env_var == "PGPASSWORD") {
            return Ok(Secret::new(pw));
        }
    }
    if let Some(pw) = from_file() {
        return Ok(pw);
    }
    if prompt == Prompt::Auto && std::io::stdin().is_terminal() {
        let prompt = format!("Password for {user}@{host}: ");
        return rpassword::prompt_password(prompt)
            .map(Secret::new)
            .map_err(|e| Error::usage(format!("reading the password: {e}")));
    }
    Err(Error::usage(format!(
        "no password: pass --iam, --password-stdin, or set {env_var}"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_proxy_rules() {
        use super::no_proxy_matches as exempt;
        let rds = "mydb.abc.us-east-1.rds.amazonaws.com";
        assert!(exempt("*", rds));
        assert!(exempt("localhost, .amazonaws.com", rds));
        assert!(exempt("amazonaws.com", rds));
        assert!(exempt("*.rds.amazonaws.com", rds));
        assert!(exempt("RDS.AmazonAWS.com:5432", rds));
        assert!(exempt(rds, &format!("{rds}.")));
        assert!(!exempt("zonaws.com", rds));
        assert!(!exempt("example.com,,", rds));
        assert!(!exempt("", rds));
        assert!(exempt("10.0.0.0/8", "10.1.2.3"));
        assert!(!exempt("10.0.0.0/8", "11.1.2.3"));
        assert!(exempt("127.0.0.1", "127.0.0.1"));
        assert!(exempt("127.0.0.1:5432", "127.0.0.1"));
        assert!(exempt("[::1]:5432", "::1"));
        assert!(exempt("::1", "::1"));
        assert!(exempt("fd00::/8", "fd12::1"));
        assert!(!exempt("127.0.0.1", "127.0.0.2"));
        // A name entry never matches an address, nor the reverse.
        assert!(!exempt("localhost", "127.0.0.1"));
        assert!(!exempt("127.0.0.1", "localhost"));
    }

    #[test]
    fn via_forms() {
        let addr = |h: &str, p| Via::Addr(h.into(), p);
        assert_eq!(
            parse_via("127.0.0.1:15432", false).unwrap(),
            addr("127.0.0.1", 15432)
        );
        assert_eq!(parse_via("[::1]:5432", false).unwrap(), addr("::1", 5432));
        assert_eq!(
            parse_via("bastion.internal:6000", false).unwrap(),
            addr("bastion.internal", 6000)
        );
        for bad in [
            "127.0.0.1",
            "h:0",
            "h:x",
            ":5432",
            "a b:1",
            "ftp://h",
            "ssh://h/path",
        ] {
            assert!(parse_via(bad, false).is_err(), "{bad}");
        }
        assert_eq!(
            parse_via("ssh://ec2-user@bastion.example.com:2222", false).unwrap(),
            Via::Ssh {
                user: Some("ec2-user".into()),
                host: "bastion.example.com".into(),
                port: Some(2222)
            }
        );
        assert_eq!(
            parse_via("ssh://bastion", false).unwrap(),
            Via::Ssh {
                user: None,
                host: "bastion".into(),
                port: None
            }
        );
        assert_eq!(
            parse_via("socks5h://127.0.0.1", false).unwrap(),
            Via::Socks {
                host: "127.0.0.1".into(),
                port: 1080,
                remote_dns: true,
                auth: None
            }
        );
        // A proxy password only from the environment (ALL_PROXY).
        let e = parse_via("socks5://u:hunter2@p:1080", false)
            .unwrap_err()
            .to_string();
        assert!(!e.contains("hunter2"), "{e}");
        assert!(parse_via("socks5://u:pw@p:1080", true).is_ok());
        assert!(parse_via("ssh://u:pw@h", false).is_err());
        assert!(parse_via("ssh://h:0", false).is_err());
        // Messages show the value as given, without a password even when
        // the URL does not parse.
        let message = |raw| parse_via(raw, false).unwrap_err().to_string();
        assert_eq!(
            message("ssh://user@"),
            r#"invalid --via "ssh://user@": empty host"#
        );
        let e = message("socks5://u:hunter2@[bad");
        assert!(
            e.starts_with(r#"invalid --via "socks5://u:REDACTED@[bad""#) && !e.contains("hunter2"),
            "{e}"
        );
    }
}
