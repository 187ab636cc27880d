//! The names of a connection: the endpoint (host and port that IAM tokens
//! are signed for and server certificates must match), the region an
//! endpoint name implies, and target URLs (`mysql://user@host:3306/db`).
//!
//! Everything here is pure parsing and validation; bad input becomes a
//! [`TargetError`], which is a usage error (exit 2).

use std::borrow::Cow;
use std::fmt;
use std::net::Ipv6Addr;
use std::time::Duration;

use crate::aws;

/// The database engine a target speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EngineKind {
    /// MySQL, MariaDB, Aurora MySQL (default port 3306).
    #[value(alias = "mariadb")]
    Mysql,
    /// PostgreSQL, Aurora PostgreSQL (default port 5432).
    #[value(aliases = ["postgresql", "psql", "pg"])]
    Postgres,
}

impl EngineKind {
    pub const fn default_port(self) -> u16 {
        match self {
            Self::Mysql => 3306,
            Self::Postgres => 5432,
        }
    }

    pub const fn name(self) -> &'static str {
        match self {
            Self::Mysql => "mysql",
            Self::Postgres => "postgres",
        }
    }

    /// The protocol's name in messages.
    pub const fn protocol(self) -> &'static str {
        match self {
            Self::Mysql => "MySQL",
            Self::Postgres => "PostgreSQL",
        }
    }

    /// The other engine.
    #[must_use]
    pub const fn other(self) -> Self {
        match self {
            Self::Mysql => Self::Postgres,
            Self::Postgres => Self::Mysql,
        }
    }

    /// The variable the engine's clients read the password from.
    pub const fn password_env(self) -> &'static str {
        match self {
            Self::Mysql => "MYSQL_PWD",
            Self::Postgres => "PGPASSWORD",
        }
    }

    /// The engine a URL scheme names.
    pub fn from_scheme(scheme: &str) -> Option<Self> {
        match scheme.to_ascii_lowercase().as_str() {
            "mysql" | "mariadb" => Some(Self::Mysql),
            "postgres" | "postgresql" => Some(Self::Postgres),
            _ => None,
        }
    }
}

/// Why a host, port, user or URL was rejected.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error("invalid host {host:?}: {reason}")]
    BadHost { host: String, reason: &'static str },
    #[error("invalid user: the user name is empty")]
    EmptyUser,
    /// Control characters (NUL above all: the MySQL protocol ends names
    /// at NUL, so `a\0b` would log in as `a` while a token names `a\0b`).
    #[error(
        "invalid {what} {name:?}: control characters (such as NUL or a newline) are not allowed"
    )]
    ControlCharacter { what: &'static str, name: String },
    #[error("invalid URL {url:?}: {reason}")]
    BadUrl {
        url: String,
        reason: Cow<'static, str>,
    },
    #[error(
        "invalid endpoint {host:?}: {label:?} is not a region name (expected e.g. NAME.ID.us-east-1.rds.amazonaws.com)"
    )]
    BadEndpointRegion { host: String, label: String },
}

impl crate::error::Categorized for TargetError {
    fn category(&self) -> crate::error::Category {
        crate::error::Category::Usage
    }
}

/// A validated endpoint host name or IP address, case kept as given.
///
/// IPv6 addresses are stored without brackets; [`Host::for_url`] adds them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Host(String, Option<EndpointClass>);

impl Host {
    /// Validates a host as typed: a DNS name, an IPv4 address, or an IPv6
    /// address with or without brackets.
    pub fn parse(raw: &str) -> Result<Self, TargetError> {
        let bad = |reason| TargetError::BadHost {
            host: raw.to_string(),
            reason,
        };
        if raw.is_empty() {
            return Err(bad("the host is empty"));
        }
        // A fully qualified name (`NAME.`, as `dig` prints it) is the same
        // name: signed, sent as SNI and verified without the dot.
        let raw = match raw.strip_suffix('.') {
            Some(r) if !r.is_empty() && !r.ends_with('.') && !r.contains(':') => r,
            _ => raw,
        };
        if raw.chars().any(char::is_whitespace) {
            return Err(bad("host names cannot contain spaces"));
        }
        let inner = raw
            .strip_prefix('[')
            .and_then(|r| r.strip_suffix(']'))
            .unwrap_or(raw);
        if inner.contains(':') {
            return inner
                .parse::<Ipv6Addr>()
                .map(|_| Self(inner.to_string(), None))
                .map_err(|_| bad("not a valid IPv6 address (a port goes in --port)"));
        }
        if raw.len() > 253 {
            return Err(bad("longer than 253 characters"));
        }
        if !raw
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
        {
            return Err(bad("only letters, digits, '-', '.' and '_' are allowed"));
        }
        if raw.split('.').any(str::is_empty) {
            return Err(bad("empty label (leading, trailing or double dot)"));
        }
        if raw.split('.').any(|label| label.starts_with('-')) {
            // Also what keeps a host from reading as an option to ssh.
            return Err(bad("a label cannot start with '-'"));
        }
        Ok(Self(raw.to_string(), None))
    }

    /// The host as typed (IPv6 without brackets).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn is_ipv6(&self) -> bool {
        self.0.contains(':')
    }

    /// The host as it appears in a URL authority: IPv6 in brackets.
    pub fn for_url(&self) -> Cow<'_, str> {
        if self.is_ipv6() {
            Cow::Owned(format!("[{}]", self.0))
        } else {
            Cow::Borrowed(&self.0)
        }
    }

    /// The AWS region an endpoint name carries, if it is an RDS or DSQL
    /// name (see [`Host::endpoint`]).
    pub fn rds_region(&self) -> Result<Option<String>, TargetError> {
        Ok(self.endpoint()?.region)
    }

    /// What kind of AWS endpoint the name is, and its region.
    ///
    /// RDS names in every partition: `*.REGION.rds.SUFFIX` (SUFFIX the
    /// partition's DNS suffix, e.g. `amazonaws.com`, `amazonaws.com.cn`,
    /// `amazonaws.eu`, `c2s.ic.gov`), and China's `*.rds.REGION.amazonaws.com.cn`.
    /// Instance, cluster (`cluster-`, `cluster-ro-`, `cluster-custom-`),
    /// Blue/Green and Limitless names are DB endpoints; a `proxy-ID` label
    /// before the region (`NAME.proxy-ID.…`, `NAME.endpoint.proxy-ID.…`)
    /// makes an RDS Proxy endpoint. Aurora DSQL: `ID.dsql.REGION.on.aws`.
    /// An AWS-looking name whose region label is not a region is an error
    /// rather than "no region", so a typo is not signed for another region.
    pub fn endpoint(&self) -> Result<Endpoint, TargetError> {
        let named = self.endpoint_by_name()?;
        Ok(match self.1 {
            Some(class) => Endpoint { class, ..named },
            None => named,
        })
    }

    /// Whether the name is an Aurora DSQL endpoint's (its token and its
    /// default engine and database differ).
    pub fn is_dsql(&self) -> bool {
        self.endpoint()
            .is_ok_and(|e| e.class == EndpointClass::Dsql)
    }

    /// The same name, known to be of `class` (the RDS API said so: a
    /// proxy's endpoint need not have the usual shape).
    #[must_use]
    pub fn with_class(self, class: EndpointClass) -> Self {
        Self(self.0, Some(class))
    }

    fn endpoint_by_name(&self) -> Result<Endpoint, TargetError> {
        let lower = self.0.to_ascii_lowercase();
        let labels: Vec<&str> = lower.rsplit('.').collect();
        let (class, region) = match labels.as_slice() {
            ["aws", "on", region, "dsql", _, ..] => (EndpointClass::Dsql, *region),
            _ => match rds_labels(&lower) {
                Some((region, id)) => {
                    let class = if id.is_some_and(|l| l.starts_with("proxy-")) {
                        EndpointClass::Proxy
                    } else {
                        EndpointClass::Database
                    };
                    (class, region)
                }
                None => {
                    return Ok(Endpoint {
                        class: EndpointClass::Other,
                        region: None,
                    });
                }
            },
        };
        if !aws::is_valid_region(region) {
            return Err(TargetError::BadEndpointRegion {
                host: self.0.clone(),
                label: region.to_string(),
            });
        }
        Ok(Endpoint {
            class,
            region: Some(region.to_string()),
        })
    }
}

/// The region label of an RDS name and the label before it (the
/// instance, cluster or proxy id), in any partition.
fn rds_labels(lower: &str) -> Option<(&str, Option<&str>)> {
    // No suffix ends another (`….com.cn` does not end in `.com`), so the
    // order does not matter.
    aws::PARTITIONS.iter().find_map(|p| {
        let suffix = p.dns_suffix;
        let rest = lower.strip_suffix(suffix)?.strip_suffix('.')?;
        let mut labels = rest.rsplit('.');
        match (labels.next(), labels.next()) {
            (Some("rds"), Some(region)) => Some((region, labels.next())),
            (Some(region), Some("rds")) if suffix == "amazonaws.com.cn" => {
                Some((region, labels.next()))
            }
            _ => None,
        }
    })
}

/// What kind of AWS endpoint a host name is; it decides the token and the
/// roots its certificate must chain to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum EndpointClass {
    /// An RDS DB instance or Aurora cluster endpoint: the RDS CA bundle.
    Database,
    /// An RDS Proxy endpoint: ACM certificates, Amazon Trust Services roots.
    Proxy,
    /// An Aurora DSQL cluster endpoint: a `dsql` token, Amazon Trust
    /// Services roots.
    Dsql,
    /// Any other name (a custom DNS name, an IP address): treated as a DB
    /// endpoint.
    Other,
}

impl EndpointClass {
    /// Its name in text output.
    pub const fn describe(self) -> &'static str {
        match self {
            Self::Database => "RDS DB instance or cluster endpoint",
            Self::Proxy => "RDS Proxy endpoint",
            Self::Dsql => "Aurora DSQL cluster endpoint",
            Self::Other => "not an AWS endpoint name (treated as an RDS DB endpoint)",
        }
    }

    /// Whether its certificates come from ACM (Amazon Trust Services
    /// roots) rather than the RDS CA.
    pub const fn uses_amazon_trust(self) -> bool {
        matches!(self, Self::Proxy | Self::Dsql)
    }
}

/// A host name's endpoint class and the region it carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    pub class: EndpointClass,
    pub region: Option<String>,
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.for_url())
    }
}

/// A parsed target URL: `SCHEME://[USER@]HOST[:PORT][/DATABASE]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UrlTarget {
    pub engine: EngineKind,
    pub user: Option<String>,
    pub host: Host,
    pub port: Option<u16>,
    pub database: Option<String>,
    /// `?iam=true`: authenticate with an IAM token.
    pub iam: bool,
    /// libpq's `sslmode` / MySQL's `ssl-mode`, if given: `Some(true)` for
    /// verify-full / `VERIFY_IDENTITY`, `Some(false)` for verify-ca /
    /// `VERIFY_CA` (weaker modes are refused when parsing).
    pub verify_name: Option<bool>,
    /// `sslrootcert` / `ssl-ca`: the CA file the URL names.
    pub ca_file: Option<String>,
    /// libpq's `hostaddr`: the address to dial (rdsconn's `--via`); the
    /// URL's port is then the dial port.
    pub hostaddr: Option<std::net::IpAddr>,
    /// `connect_timeout` (seconds).
    pub connect_timeout: Option<Duration>,
}

/// mysql2's `ssl` option (JSON) turning the certificate check off.
fn skips_verification(options: &str) -> bool {
    serde_json::from_str::<serde_json::Value>(options)
        .is_ok_and(|v| v["rejectUnauthorized"] == serde_json::Value::Bool(false))
}

impl UrlTarget {
    /// Parses a target URL. Passwords in URLs are refused: a URL is an
    /// argument, and arguments are visible to every user through `ps`.
    pub fn parse(raw: &str) -> Result<Self, TargetError> {
        Self::parse_inner(raw, false).map(|(url, _)| url)
    }

    /// A URL from the environment (`DATABASE_URL`, as `rdsconn env`
    /// exports it): its password is accepted and returned.
    pub fn parse_with_password(raw: &str) -> Result<(Self, Option<String>), TargetError> {
        Self::parse_inner(raw, true)
    }

    fn parse_inner(raw: &str, allow_password: bool) -> Result<(Self, Option<String>), TargetError> {
        if is_conninfo(raw) {
            return Self::parse_conninfo(raw).map(|t| (t, None));
        }
        let bad = |reason: Cow<'static, str>| TargetError::BadUrl {
            url: redact_url(raw),
            reason,
        };
        let url = url::Url::parse(raw).map_err(|e| bad(e.to_string().into()))?;
        let engine = EngineKind::from_scheme(url.scheme()).ok_or_else(|| {
            bad(format!(
                "unknown scheme {:?} (expected mysql://, mariadb://, postgres:// or postgresql://)",
                url.scheme()
            )
            .into())
        })?;
        if url.password().is_some() && !allow_password {
            return Err(bad(
                "a password in the URL would be visible in the process list; use --password-stdin or an environment variable".into(),
            ));
        }
        let host_raw = url_host(&url).ok_or_else(|| bad("no host".into()))?;
        let host = Host::parse(&host_raw)?;
        let user = Some(decode(url.username())).filter(|u| !u.is_empty());
        let database = url
            .path()
            .strip_prefix('/')
            .map(decode)
            .filter(|d| !d.is_empty());
        if url.port() == Some(0) {
            return Err(bad("port 0 is not a valid port".into()));
        }
        let mut params = Params::default();
        for (key, value) in url.query_pairs() {
            params.set(&key, &value).map_err(bad)?;
        }
        let password = url.password().map(decode).filter(|p| !p.is_empty());
        let parsed = Self {
            engine,
            user,
            host,
            port: url.port(),
            database,
            iam: params.iam,
            verify_name: params.verify_name,
            ca_file: params.ca_file,
            hostaddr: params.hostaddr,
            connect_timeout: params.connect_timeout,
        };
        Ok((parsed, password))
    }
}

/// A libpq connection string (`host=EP user=app dbname=prod`) rather than
/// a URL or a database name: psql's own test (an `=` and no `://`).
pub fn is_conninfo(raw: &str) -> bool {
    raw.contains('=') && !raw.contains("://")
}

impl UrlTarget {
    /// A libpq connection string, for PostgreSQL: `key=value` pairs
    /// separated by blanks, values bare or single-quoted (`\\` escapes).
    /// `host`, `port`, `user`, `dbname` name the target; the other keys are
    /// the URL parameters (`sslmode`, `sslrootcert`, `hostaddr`,
    /// `connect_timeout`, `application_name`); a password is refused.
    fn parse_conninfo(raw: &str) -> Result<Self, TargetError> {
        let pairs = conninfo_pairs(raw);
        let shown = pairs.as_ref().map_or_else(
            |_| "(connection string)".to_string(),
            |pairs| {
                pairs
                    .iter()
                    .map(|(k, v)| match k.as_str() {
                        "host" | "port" | "user" | "dbname" => format!("{k}={v}"),
                        _ => format!("{k}=REDACTED"),
                    })
                    .collect::<Vec<_>>()
                    .join(" ")
            },
        );
        let bad = |reason: Cow<'static, str>| TargetError::BadUrl {
            url: shown.clone(),
            reason,
        };
        let pairs = pairs.map_err(bad)?;
        let (mut host, mut port, mut user, mut database) = (None, None, None, None);
        let mut params = Params::default();
        for (key, value) in pairs {
            match key.as_str() {
                "host" => host = Some(value),
                "port" => {
                    port = Some(
                        value
                            .parse::<u16>()
                            .ok()
                            .filter(|p| *p > 0)
                            .ok_or_else(|| {
                                bad(format!("port={value:?} is not a port number").into())
                            })?,
                    );
                }
                "user" => user = Some(value).filter(|u| !u.is_empty()),
                "dbname" => database = Some(value).filter(|d| !d.is_empty()),
                _ => params.set(&key, &value).map_err(bad)?,
            }
        }
        let host = host.ok_or_else(|| bad("no host= in the connection string".into()))?;
        Ok(Self {
            engine: EngineKind::Postgres,
            user,
            host: Host::parse(&host)?,
            port,
            database,
            iam: params.iam,
            verify_name: params.verify_name,
            ca_file: params.ca_file,
            hostaddr: params.hostaddr,
            connect_timeout: params.connect_timeout,
        })
    }
}

/// libpq's `key = value` pairs, in order.
fn conninfo_pairs(raw: &str) -> Result<Vec<(String, String)>, Cow<'static, str>> {
    let mut pairs = Vec::new();
    let mut chars = raw.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.peek().is_none() {
            return Ok(pairs);
        }
        let mut key = String::new();
        while let Some(c) = chars.next_if(|c| *c != '=' && !c.is_whitespace()) {
            key.push(c);
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.next() != Some('=') {
            return Err(format!("{key:?} has no value (expected key=value)").into());
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let mut value = String::new();
        if chars.next_if_eq(&'\'').is_some() {
            loop {
                match chars.next() {
                    None => return Err(format!("{key}= has an unterminated quote").into()),
                    Some('\'') => break,
                    Some('\\') => value.extend(chars.next()),
                    Some(c) => value.push(c),
                }
            }
        } else {
            while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                if c == '\\' {
                    value.extend(chars.next());
                } else {
                    value.push(c);
                }
            }
        }
        pairs.push((key, value));
    }
}

/// The connection parameters a URL's query (or a libpq connection string)
/// may carry.
#[derive(Default)]
struct Params {
    iam: bool,
    verify_name: Option<bool>,
    ca_file: Option<String>,
    hostaddr: Option<std::net::IpAddr>,
    connect_timeout: Option<Duration>,
}

impl Params {
    /// Takes one `key=value`; the reason when it is refused.
    fn set(&mut self, key: &str, value: &str) -> Result<(), Cow<'static, str>> {
        match (key, value) {
            ("iam", "true" | "1") => self.iam = true,
            ("iam", "false" | "0") => self.iam = false,
            ("iam", other) => return Err(format!("iam={other:?}: expected true or false").into()),
            ("sslmode" | "ssl-mode" | "ssl_mode", mode) => {
                self.verify_name = Some(match mode.to_ascii_lowercase().as_str() {
                    "verify-full" | "verify_identity" => true,
                    "verify-ca" | "verify_ca" => false,
                    _ => {
                        return Err(format!(
                            "{key}={mode} is weaker than rdsconn's verification (verify-full / VERIFY_IDENTITY, or verify-ca with --tls verify-ca): drop it"
                        )
                        .into());
                    }
                });
            }
            ("sslrootcert" | "ssl-ca" | "ssl_ca", file) => self.ca_file = Some(file.to_string()),
            ("hostaddr", addr) => {
                self.hostaddr = Some(
                    addr.parse()
                        .map_err(|_| format!("hostaddr={addr:?} is not an IP address"))?,
                );
            }
            ("connect_timeout" | "connect-timeout", secs) => {
                let secs: u64 = secs
                    .parse()
                    .ok()
                    .filter(|s| *s > 0)
                    .ok_or_else(|| format!("{key}={secs:?}: expected whole seconds"))?;
                self.connect_timeout = Some(Duration::from_secs(secs.min(86_400)));
            }
            ("ssl", options) if skips_verification(options) => {
                return Err(
                    "ssl={\"rejectUnauthorized\":false} skips the certificate check: drop it"
                        .into(),
                );
            }
            // application_name: rdsconn names its sessions itself;
            // mysql2's settings in the `DATABASE_URL` rdsconn exports.
            ("application_name" | "ssl" | "enableCleartextPlugin", _) => {}
            (other, _) if PASSWORD_PARAMETERS.contains(&other.to_ascii_lowercase().as_str()) => {
                return Err(format!(
                    "a password in the URL ({other}=) would be visible in the process list; use --password-stdin or an environment variable"
                )
                .into());
            }
            (other, _) => {
                return Err(format!(
                    "unknown parameter {other:?} (understood: iam, sslmode / ssl-mode, sslrootcert / ssl-ca, hostaddr, connect_timeout, application_name)"
                )
                .into());
            }
        }
        Ok(())
    }
}

/// A URL's host as written (percent-decoded; an IPv6 address without
/// its brackets).
fn url_host(url: &url::Url) -> Option<String> {
    Some(match url.host()? {
        url::Host::Ipv6(ip) => ip.to_string(),
        url::Host::Ipv4(ip) => ip.to_string(),
        url::Host::Domain(d) => decode(d),
    })
}

fn decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

/// The URL with any password and every parameter value but `iam`'s
/// replaced, for error messages: `?password=…`, `?pwd=…` or a parameter
/// rdsconn does not know may hold a secret.
fn redact_url(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(mut u) => {
            if u.password().is_some() {
                let _ = u.set_password(Some("REDACTED"));
            }
            if u.query().is_some() {
                let pairs: Vec<(String, String)> = u
                    .query_pairs()
                    .map(|(k, v)| {
                        let v = if k == "iam" {
                            v.into_owned()
                        } else {
                            "REDACTED".into()
                        };
                        (k.into_owned(), v)
                    })
                    .collect();
                u.query_pairs_mut().clear().extend_pairs(pairs);
            }
            if u.fragment().is_some() {
                u.set_fragment(Some("REDACTED"));
            }
            u.to_string()
        }
        // Unparseable: an embedded password cannot be located reliably.
        Err(_) if raw.contains(['@', '?', '#']) => {
            "<URL not shown: it may contain a password>".to_string()
        }
        Err(_) => raw.to_string(),
    }
}

/// URL parameters that carry a password in other tools' URLs.
const PASSWORD_PARAMETERS: [&str; 4] = ["password", "pwd", "pass", "passwd"];

/// Checks a database user name (as signed into IAM tokens).
pub fn validate_user(user: &str) -> Result<&str, TargetError> {
    if user.is_empty() {
        return Err(TargetError::EmptyUser);
    }
    no_control("user", user)?;
    Ok(user)
}

/// Checks a database name.
pub fn validate_database(database: &str) -> Result<&str, TargetError> {
    no_control("database", database)?;
    Ok(database)
}

fn no_control(what: &'static str, name: &str) -> Result<(), TargetError> {
    if name.chars().any(char::is_control) {
        return Err(TargetError::ControlCharacter {
            what,
            name: name.to_string(),
        });
    }
    Ok(())
}

/// An ssh login name: rdsconn checks it itself rather than rely on the
/// ssh build (OpenSSH refuses shell metacharacters only since 9.6, after
/// CVE-2023-51385, and `%u` reaches `ProxyCommand` / `Match exec`).
fn validate_ssh_user(user: &str) -> Result<(), String> {
    if user.starts_with('-') {
        return Err("the ssh user cannot start with '-'".into());
    }
    if user.len() > 256
        || !user
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'@' | b'+'))
    {
        return Err(format!(
            "the ssh user {} may hold only letters, digits, '.', '_', '-', '@' and '+'",
            crate::text::escape(user)
        ));
    }
    Ok(())
}

/// `--via`: the dial path. The token is still signed for, and TLS still
/// verified against, the endpoint name, end to end through any of these.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Via {
    /// `HOST:PORT`: a tunnel or port-forward set up by hand.
    Addr(String, u16),
    /// `ssh://[USER@]BASTION[:PORT]`: rdsconn runs the system `ssh`, which
    /// forwards to the endpoint as the bastion resolves it.
    Ssh {
        user: Option<String>,
        host: String,
        port: Option<u16>,
    },
    /// `ssm://TARGET` (an instance id, or `tag:Name=VALUE`): an AWS
    /// Systems Manager port-forwarding session through that instance,
    /// run by `session-manager-plugin`; the region and profile sign the
    /// SSM calls.
    Ssm {
        target: String,
        region: Option<String>,
        profile: Option<String>,
    },
    /// `socks5://HOST:PORT` (the endpoint name resolved here) or
    /// `socks5h://` (resolved by the proxy); also from `ALL_PROXY`.
    Socks {
        host: String,
        port: u16,
        remote_dns: bool,
        /// `user:password@`, accepted from `ALL_PROXY` only.
        auth: Option<(String, String)>,
    },
}

impl Via {
    /// Parses `--via` (or `ALL_PROXY`, `from_env`): `HOST:PORT` or one of
    /// the tunnel URLs. A password is accepted only from the environment.
    pub fn parse(raw: &str, from_env: bool) -> Result<Self, String> {
        let Some((scheme, rest)) = raw.split_once("://") else {
            return parse_host_port(raw).map(|(h, p)| Self::Addr(h, p));
        };
        if scheme == "ssm" {
            return parse_ssm_target(rest).map(|target| Self::Ssm {
                target,
                region: None,
                profile: None,
            });
        }
        let url = url::Url::parse(raw).map_err(|e| format!("{e}"))?;
        let host = url_host(&url).ok_or("no host")?;
        let host = Host::parse(&host)
            .map_err(|e| e.to_string())?
            .as_str()
            .to_string();
        if url.path().len() > 1 || url.query().is_some() || url.fragment().is_some() {
            return Err("expected no path or query".into());
        }
        if url.port() == Some(0) {
            return Err("port 0 is not a port".into());
        }
        let user = Some(decode(url.username())).filter(|u| !u.is_empty());
        if let Some(u) = &user {
            validate_user(u).map_err(|e| e.to_string())?;
        }
        match scheme {
            "ssh" => {
                if url.password().is_some() {
                    return Err("ssh passwords are ssh's to ask for; drop it from the URL".into());
                }
                if let Some(u) = &user {
                    validate_ssh_user(u)?;
                }
                Ok(Self::Ssh {
                    user,
                    host,
                    port: url.port(),
                })
            }
            "socks5" | "socks5h" => {
                let auth = match (user, url.password()) {
                    (Some(_), Some(_)) if !from_env => {
                        return Err("a password on the command line is visible to other users: put the proxy URL in ALL_PROXY".into());
                    }
                    (Some(u), Some(p)) => Some((u, decode(p))),
                    (None, Some(_)) => return Err("a password without a user".into()),
                    (_, None) => None,
                };
                Ok(Self::Socks {
                    host,
                    port: url.port().unwrap_or(1080),
                    remote_dns: scheme == "socks5h",
                    auth,
                })
            }
            other => Err(format!(
                "unknown scheme {other}:// (expected HOST:PORT, ssh://, ssm://, socks5:// or socks5h://)"
            )),
        }
    }

    /// A tunnel rdsconn opens itself (not `HOST:PORT`).
    pub fn is_tunnel(&self) -> bool {
        !matches!(self, Self::Addr(..))
    }
}

impl fmt::Display for Via {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let host = |h: &str| {
            if h.contains(':') {
                format!("[{h}]")
            } else {
                h.to_string()
            }
        };
        match self {
            Self::Addr(h, p) => write!(f, "{}:{p}", host(h)),
            Self::Ssh {
                user,
                host: h,
                port,
            } => {
                write!(f, "ssh://")?;
                if let Some(u) = user {
                    write!(f, "{u}@")?;
                }
                write!(f, "{}", host(h))?;
                match port {
                    Some(p) => write!(f, ":{p}"),
                    None => Ok(()),
                }
            }
            Self::Ssm { target, .. } => write!(f, "ssm://{target}"),
            // Never the proxy's password.
            Self::Socks {
                host: h,
                port,
                remote_dns,
                ..
            } => write!(
                f,
                "socks5{}://{}:{port}",
                if *remote_dns { "h" } else { "" },
                host(h)
            ),
        }
    }
}

/// An SSM target: an instance id (`i-…`, a managed instance's `mi-…`) or
/// `tag:KEY=VALUE` (the one running managed instance with that tag).
fn parse_ssm_target(raw: &str) -> Result<String, String> {
    let raw = raw.strip_suffix('/').unwrap_or(raw);
    let id = |s: &str, prefix: &str| {
        s.strip_prefix(prefix).is_some_and(|h| {
            (8..=17).contains(&h.len()) && h.chars().all(|c| c.is_ascii_hexdigit())
        })
    };
    if id(raw, "i-") || id(raw, "mi-") {
        return Ok(raw.to_string());
    }
    if let Some((key, value)) = raw.strip_prefix("tag:").and_then(|t| t.split_once('=')) {
        let fine = |s: &str| !s.is_empty() && s.len() <= 256 && !s.chars().any(char::is_control);
        if fine(key) && fine(value) {
            return Ok(raw.to_string());
        }
    }
    Err("expected ssm://INSTANCE-ID (i-0123456789abcdef0) or ssm://tag:Name=VALUE".into())
}

/// `HOST:PORT` (`[v6]:PORT`).
fn parse_host_port(raw: &str) -> Result<(String, u16), String> {
    let bad = || {
        format!(
            "expected HOST:PORT (e.g. 127.0.0.1:15432), ssh://BASTION or socks5h://HOST:PORT, not {raw:?}"
        )
    };
    let (host, port) = raw.rsplit_once(':').ok_or_else(bad)?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let port: u16 = port.parse().ok().filter(|p| *p > 0).ok_or_else(bad)?;
    let host = Host::parse(host).map_err(|e| e.to_string())?;
    Ok((host.as_str().to_string(), port))
}

/// Where to connect: the endpoint (signed for, verified against) and the
/// dial path (`--via`), which defaults to the endpoint.
#[derive(Clone, Debug)]
pub struct Target {
    pub host: Host,
    pub port: u16,
    /// `--via`: a hand-made forward's address, or a tunnel rdsconn opens.
    pub via: Option<Via>,
    pub user: String,
    pub database: Option<String>,
    /// Bound on DNS + TCP + TLS + authentication.
    pub connect_timeout: Duration,
}

impl Target {
    /// The address TCP goes to: `--via HOST:PORT`, else the endpoint
    /// (also the far end of a tunnel).
    pub fn dial(&self) -> (String, u16) {
        match &self.via {
            Some(Via::Addr(h, p)) => (h.clone(), *p),
            _ => (self.host.as_str().to_string(), self.port),
        }
    }

    /// The tunnel rdsconn opens for this target, if any.
    pub fn tunnel(&self) -> Option<&Via> {
        self.via.as_ref().filter(|v| v.is_tunnel())
    }

    /// The endpoint as `host:port`.
    pub fn endpoint(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// The dial address as `host:port`.
    pub fn dial_address(&self) -> String {
        let (h, p) = self.dial();
        format!("{h}:{p}")
    }

    /// `host:port`, plus ` via …` when dialing elsewhere, for errors.
    pub fn describe(&self) -> String {
        match &self.via {
            Some(via) => format!("{} via {via}", self.endpoint()),
            None => self.endpoint(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts() {
        assert_eq!(
            Host::parse("MyDB.abc.us-east-1.rds.amazonaws.com")
                .unwrap()
                .as_str(),
            "MyDB.abc.us-east-1.rds.amazonaws.com"
        );
        assert_eq!(Host::parse("[::1]").unwrap().for_url(), "[::1]");
        assert_eq!(Host::parse("fd00::5").unwrap().for_url(), "[fd00::5]");
        assert_eq!(Host::parse("10.0.0.5").unwrap().for_url(), "10.0.0.5");
        for bad in [
            "",
            "my host",
            "a..b",
            ".a",
            "[::1",
            "::g",
            "host:5432",
            "a/b",
            "ä.example",
        ] {
            assert!(Host::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn regions_from_endpoint_names() {
        let region = |h: &str| Host::parse(h).unwrap().rds_region().unwrap();
        assert_eq!(
            region("mydb.c9akciq32.us-east-1.rds.amazonaws.com").as_deref(),
            Some("us-east-1")
        );
        assert_eq!(
            region("MYDB.C9AKCIQ32.EU-WEST-2.RDS.AMAZONAWS.COM").as_deref(),
            Some("eu-west-2")
        );
        assert_eq!(
            region("c.cluster-ro-abc.ap-south-1.rds.amazonaws.com").as_deref(),
            Some("ap-south-1")
        );
        assert_eq!(
            region("c.cluster-custom-abc.ca-central-1.rds.amazonaws.com").as_deref(),
            Some("ca-central-1")
        );
        assert_eq!(
            region("p.proxy-abc.us-west-2.rds.amazonaws.com").as_deref(),
            Some("us-west-2")
        );
        assert_eq!(
            region("db.abc.us-gov-west-1.rds.amazonaws.com").as_deref(),
            Some("us-gov-west-1")
        );
        assert_eq!(
            region("db.abc.rds.cn-north-1.amazonaws.com.cn").as_deref(),
            Some("cn-north-1")
        );
        assert_eq!(
            region("db.abc.cn-northwest-1.rds.amazonaws.com.cn").as_deref(),
            Some("cn-northwest-1")
        );
        assert_eq!(region("db.internal.example.com"), None);
        assert_eq!(region("127.0.0.1"), None);
        assert!(
            Host::parse("db.abc.useast1.rds.amazonaws.com")
                .unwrap()
                .rds_region()
                .is_err()
        );
    }

    #[test]
    #[allow(clippy::too_many_lines)] // one table of names
    fn endpoint_classes_of_real_shaped_names() {
        use EndpointClass::{Database, Dsql, Other, Proxy};
        let cases = [
            (
                "mydb.c9akciq32.us-east-1.rds.amazonaws.com",
                Database,
                Some("us-east-1"),
            ),
            (
                "app.cluster-c9akciq32.eu-west-1.rds.amazonaws.com",
                Database,
                Some("eu-west-1"),
            ),
            (
                "app.cluster-ro-c9akciq32.eu-west-1.rds.amazonaws.com",
                Database,
                Some("eu-west-1"),
            ),
            (
                "rep.cluster-custom-c9akciq32.ap-south-1.rds.amazonaws.com",
                Database,
                Some("ap-south-1"),
            ),
            (
                "mydb-green-abcdef.c9akciq32.us-east-2.rds.amazonaws.com",
                Database,
                Some("us-east-2"),
            ),
            (
                "lim.shardgrp-c9akciq32.us-west-2.rds.amazonaws.com",
                Database,
                Some("us-west-2"),
            ),
            (
                "db.abc.rds.cn-north-1.amazonaws.com.cn",
                Database,
                Some("cn-north-1"),
            ),
            (
                "db.abc.cn-northwest-1.rds.amazonaws.com.cn",
                Database,
                Some("cn-northwest-1"),
            ),
            (
                "db.abc.us-gov-west-1.rds.amazonaws.com",
                Database,
                Some("us-gov-west-1"),
            ),
            (
                "db.abc.us-iso-east-1.rds.c2s.ic.gov",
                Database,
                Some("us-iso-east-1"),
            ),
            (
                "db.abc.us-isob-east-1.rds.sc2s.sgov.gov",
                Database,
                Some("us-isob-east-1"),
            ),
            (
                "db.abc.eu-isoe-west-1.rds.cloud.adc-e.uk",
                Database,
                Some("eu-isoe-west-1"),
            ),
            (
                "db.abc.us-isof-south-1.rds.csp.hci.ic.gov",
                Database,
                Some("us-isof-south-1"),
            ),
            (
                "db.abc.eusc-de-east-1.rds.amazonaws.eu",
                Database,
                Some("eusc-de-east-1"),
            ),
            (
                "myproxy.proxy-c9akciq32.us-east-1.rds.amazonaws.com",
                Proxy,
                Some("us-east-1"),
            ),
            (
                "ro.endpoint.proxy-c9akciq32.us-east-1.rds.amazonaws.com",
                Proxy,
                Some("us-east-1"),
            ),
            (
                "p.proxy-abc.rds.cn-north-1.amazonaws.com.cn",
                Proxy,
                Some("cn-north-1"),
            ),
            (
                "MYPROXY.PROXY-ABC.US-EAST-1.RDS.AMAZONAWS.COM",
                Proxy,
                Some("us-east-1"),
            ),
            (
                "abcdefghijklmnopqrstuvwxyz.dsql.us-east-1.on.aws",
                Dsql,
                Some("us-east-1"),
            ),
            ("ABC.DSQL.EU-WEST-1.ON.AWS", Dsql, Some("eu-west-1")),
            ("db.internal.example.com", Other, None),
            ("proxy-abc.example.com", Other, None),
            ("dsql.us-east-1.on.aws", Other, None),
            ("10.0.0.5", Other, None),
            ("::1", Other, None),
        ];
        for (name, class, region) in cases {
            let e = Host::parse(name).unwrap().endpoint().unwrap();
            assert_eq!((e.class, e.region.as_deref()), (class, region), "{name}");
        }
        // A region label that is not a region is an error, not "no region".
        for bad in [
            "p.proxy-abc.useast1.rds.amazonaws.com",
            "x.dsql.nowhere.on.aws",
        ] {
            assert!(Host::parse(bad).unwrap().endpoint().is_err(), "{bad}");
        }
    }

    #[test]
    fn a_trailing_dot_is_the_same_name() {
        let h = Host::parse("mydb.abc.us-east-1.rds.amazonaws.com.").unwrap();
        assert_eq!(h.as_str(), "mydb.abc.us-east-1.rds.amazonaws.com");
        assert_eq!(h.rds_region().unwrap().as_deref(), Some("us-east-1"));
        for bad in [".", "a..", "a.b..", "..", "[::1]."] {
            assert!(Host::parse(bad).is_err(), "{bad:?} accepted");
        }
        let url =
            UrlTarget::parse("postgres://app@db.abc.eu-west-1.rds.amazonaws.com.:5432/d").unwrap();
        assert_eq!(url.host.as_str(), "db.abc.eu-west-1.rds.amazonaws.com");
    }

    #[test]
    fn redaction_hides_passwords_and_parameter_values() {
        let r = redact_url("postgres://u:secret@h/db?iam=true&password=secret&x=secret#secret");
        assert!(!r.contains("secret"), "{r}");
        assert!(r.contains("iam=true"), "{r}");
        assert_eq!(
            redact_url("postgres://u@h:99999/db?pwd=secret"),
            "<URL not shown: it may contain a password>"
        );
        assert_eq!(redact_url("postgres://u@h/db"), "postgres://u@h/db");
    }

    #[test]
    fn names_with_control_characters_are_refused() {
        assert!(validate_user("a\0b").is_err());
        assert!(validate_user("a\nb").is_err());
        assert!(validate_database("d\u{1b}[31m").is_err());
        assert!(validate_user("app+x.y@corp").is_ok());
        assert!(validate_database("app db").is_ok());
    }

    #[test]
    fn urls() {
        let t = UrlTarget::parse("postgres://app%2Bx@MyDB.example.com:6543/prod%20db").unwrap();
        assert_eq!(t.engine, EngineKind::Postgres);
        assert_eq!(t.user.as_deref(), Some("app+x"));
        assert_eq!(t.host.as_str(), "MyDB.example.com");
        assert_eq!(t.port, Some(6543));
        assert_eq!(t.database.as_deref(), Some("prod db"));
        let t = UrlTarget::parse("mysql://root@[::1]").unwrap();
        assert_eq!(
            (t.engine, t.host.as_str(), t.port),
            (EngineKind::Mysql, "::1", None)
        );
        assert_eq!(UrlTarget::parse("postgresql://h").unwrap().user, None);
        let e = UrlTarget::parse("postgres://u:hunter2@h/db")
            .unwrap_err()
            .to_string();
        assert!(e.contains("password") && !e.contains("hunter2"), "{e}");
        assert!(UrlTarget::parse("http://h").is_err());
        assert!(UrlTarget::parse("mysql://h:0").is_err());
        assert!(UrlTarget::parse("mysql://h:70000").is_err());
        assert!(UrlTarget::parse("mysql://u@h/db?iam=true").unwrap().iam);
        assert!(!UrlTarget::parse("mysql://u@h/db?iam=0").unwrap().iam);
        assert!(!UrlTarget::parse("mysql://u@h/db").unwrap().iam);
        assert!(UrlTarget::parse("mysql://u@h/db?iam=yes").is_err());
        assert!(UrlTarget::parse("mysql://u@h/db?sslmode=disable").is_err());
        let t = UrlTarget::parse(
            "host=db.abc.eu-west-1.rds.amazonaws.com port = 5433 user=app dbname='my db' \
             sslmode=verify-full application_name='a b\\'c'",
        )
        .unwrap();
        assert_eq!(t.engine, EngineKind::Postgres);
        assert_eq!(t.port, Some(5433));
        assert_eq!(t.user.as_deref(), Some("app"));
        assert_eq!(t.database.as_deref(), Some("my db"));
        assert_eq!(t.verify_name, Some(true));
        let e = UrlTarget::parse("host=h user=u password=hunter2")
            .unwrap_err()
            .to_string();
        assert!(!e.contains("hunter2") && e.contains("password"), "{e}");
        assert!(UrlTarget::parse("host=h sslmode=require").is_err());
        assert!(UrlTarget::parse("user=u dbname=d").is_err());
        assert!(UrlTarget::parse("host=h dbname='open").is_err());
    }
}
