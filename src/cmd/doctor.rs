//! `rdsconn doctor`: a preflight checklist, each line OK / WARN / FAIL with
//! a fix, ending with the staged connection check of `rdsconn check`.

use std::fmt::Write as _;
use std::time::SystemTime;

use serde::Serialize;

use crate::aws::{self, RegionSource};
use crate::ca;
use crate::cli::{DoctorArgs, GlobalArgs, OutputFormat};
use crate::error::{Error, Result};
use crate::output;
use crate::probe::{self, Item, Login, Settings};
use crate::rds::{Database, Rds};
use crate::resolve::{Given, password, target};
use crate::target::{EngineKind, Host, UrlTarget};
use crate::tls::TlsPolicy;

#[derive(Debug, Serialize)]
struct Line {
    check: &'static str,
    /// `ok`, `warn`, `fail` or `skipped`.
    status: &'static str,
    detail: String,
    fix: Option<String>,
    #[serde(skip)]
    exit: u8,
}

#[derive(Default)]
struct Lines(Vec<Line>);

impl Lines {
    fn ok(&mut self, check: &'static str, detail: impl Into<String>) {
        self.push(check, "ok", detail.into(), None, 0);
    }

    fn warn(&mut self, check: &'static str, detail: impl Into<String>, fix: Option<String>) {
        self.push(check, "warn", detail.into(), fix, 0);
    }

    fn fail(
        &mut self,
        check: &'static str,
        detail: impl Into<String>,
        fix: Option<String>,
        exit: u8,
    ) {
        self.push(check, "fail", detail.into(), fix, exit);
    }

    fn skip(&mut self, check: &'static str, why: &str) {
        self.push(check, "skipped", why.to_string(), None, 0);
    }

    /// A failure from an error: its message, hint and exit code.
    fn error(&mut self, check: &'static str, e: impl Into<Error>) {
        let e: Error = e.into();
        let hint = e.hint().map(str::to_string);
        self.fail(check, e.one_line(), hint, e.category().exit_code());
    }

    fn push(
        &mut self,
        check: &'static str,
        status: &'static str,
        detail: String,
        fix: Option<String>,
        exit: u8,
    ) {
        self.0.push(Line {
            check,
            status,
            detail,
            fix,
            exit,
        });
    }

    fn failed(&self) -> bool {
        self.0.iter().any(|l| l.status == "fail")
    }

    fn exit_code(&self) -> u8 {
        self.0
            .iter()
            .map(|l| l.exit)
            .max_by_key(|c| probe::severity(*c))
            .unwrap_or(0)
    }
}

/// What the user named: a URL, --host, or --instance / --cluster.
struct Named {
    url: Option<UrlTarget>,
    host: Option<Host>,
    user: String,
    engine: Option<EngineKind>,
}

fn named(args: &DoctorArgs) -> Result<Named> {
    let url = args
        .target
        .url
        .as_deref()
        .map(UrlTarget::parse)
        .transpose()?;
    let host = match (&url, &args.target.host) {
        (Some(u), _) => Some(u.host.clone()),
        (None, Some(h)) => Some(Host::parse(h)?),
        (None, None) => None,
    };
    if host.is_some() == args.target.rds.is_set() {
        return Err(Error::usage(
            "name one target: a URL, --host, or --instance / --cluster",
        ));
    }
    let user = args
        .target
        .user
        .clone()
        .or_else(|| url.as_ref().and_then(|u| u.user.clone()))
        .ok_or_else(|| Error::usage("a database user is required: pass --user USER"))?;
    crate::target::validate_user(&user)?;
    let engine = args.engine.or(url.as_ref().map(|u| u.engine));
    Ok(Named {
        url,
        host,
        user,
        engine,
    })
}

pub(crate) async fn run(global: &GlobalArgs, args: &DoctorArgs) -> Result<u8> {
    let named = named(args)?;
    let iam = args.target.iam || named.url.as_ref().is_some_and(|u| u.iam);
    // The connection check's password is read before any network I/O.
    let login = if iam {
        Login::Iam
    } else {
        let env_var = named
            .engine
            .map_or("PGPASSWORD / MYSQL_PWD", EngineKind::password_env);
        let host = named.host.as_ref().map_or("the database", Host::as_str);
        Login::Password(password(
            args.target.password_stdin,
            env_var,
            &named.user,
            host,
        )?)
    };
    let mut lines = Lines::default();
    let profile = global.profile.as_deref();

    // Region: the endpoint's (tokens are signed for it) vs the configuration.
    let endpoint_region = match &named.host {
        Some(h) => h.rds_region()?,
        None => None,
    };
    let configured = aws::configured_region(profile).await;
    let region = region_line(
        &mut lines,
        global.region.as_deref(),
        endpoint_region.as_deref(),
        configured,
    );

    let mut found: Option<Database> = None;
    let mut account: Option<String> = None;
    if let Some(region) = &region {
        match aws::credentials(profile, region).await {
            Ok(creds) => {
                credentials_line(&mut lines, &creds);
                let config = crate::rds::sdk_config(global, region).await?;
                account = identity_and_clock(&mut lines, &config).await;
                found = database_line(&mut lines, &Rds::new(&config, region.clone()), args, &named)
                    .await;
            }
            Err(e) => {
                lines.error("credentials", e);
                lines.skip("identity", "no credentials");
                lines.skip("database", "no credentials");
            }
        }
    } else {
        lines.skip("credentials", "no region");
    }
    if let Some(db) = &found {
        if iam {
            iam_lines(
                &mut lines,
                db,
                region.as_deref(),
                account.as_deref(),
                &named.user,
            );
        }
        ca_line(&mut lines, global, db, region.as_deref())?;
    }

    // The connection, unless something above already failed.
    if lines.failed() {
        lines.skip("connection", "fix the failures above first");
    } else {
        connection_lines(&mut lines, global, args, &named, found.as_ref(), login).await?;
    }

    let code = lines.exit_code();
    print(global.output, &lines, code)?;
    Ok(code)
}

/// The region line renders the signing rule itself ([`aws::resolve_region`]):
/// what doctor says is what every command does.
fn region_line(
    lines: &mut Lines,
    flag: Option<&str>,
    endpoint: Option<&str>,
    configured: Option<(String, RegionSource)>,
) -> Option<String> {
    let resolved = match aws::resolve_region(flag, endpoint, configured) {
        Ok(r) => r,
        Err(e) => {
            lines.error("region", e);
            return None;
        }
    };
    let region = resolved.region;
    match (resolved.warning, resolved.source) {
        (Some(w), RegionSource::Flag) => lines.warn(
            "region",
            w,
            Some(format!(
                "drop --region or pass --region {}",
                endpoint.unwrap_or("the endpoint's region")
            )),
        ),
        (Some(w), _) => lines.warn(
            "region",
            w,
            Some(format!(
                "export AWS_REGION={region} (or fix the profile's region)"
            )),
        ),
        (None, source) => {
            let from = match source {
                RegionSource::Flag => "--region",
                RegionSource::Endpoint => "from the endpoint name",
                RegionSource::Environment => "from AWS_REGION",
                RegionSource::Profile => "from the profile",
            };
            lines.ok("region", format!("{region} ({from})"));
        }
    }
    Some(region)
}

fn credentials_line(lines: &mut Lines, creds: &aws_credential_types::Credentials) {
    let key = creds.access_key_id();
    let shown = if key.len() > 8 {
        format!("{}…{}", &key[..4], &key[key.len() - 4..])
    } else {
        "…".to_string()
    };
    let kind = if creds.session_token().is_some() {
        "temporary"
    } else {
        "long-term"
    };
    match aws::expiry_warning(creds, SystemTime::now(), crate::token::TOKEN_LIFETIME) {
        Some(w) => lines.warn(
            "credentials",
            format!("{kind} key {shown}: {w}"),
            Some("refresh them (aws sso login, or re-assume the role)".into()),
        ),
        None => lines.ok("credentials", format!("{kind} key {shown}")),
    }
}

/// STS `GetCallerIdentity` (who the credentials are) and the clock skew
/// from the response's Date. Returns the account.
async fn identity_and_clock(lines: &mut Lines, config: &aws_types::SdkConfig) -> Option<String> {
    let (identity, skew) = aws::caller_identity(config).await;
    let account = match identity {
        Ok(id) => {
            lines.ok("identity", format!("{} (account {})", id.arn, id.account));
            Some(id.account)
        }
        Err(e) => {
            lines.error(
                "identity",
                crate::rds::api_error("sts:GetCallerIdentity", &e),
            );
            None
        }
    };
    match skew {
        Some(skew) => {
            let detail = format!("local clock {skew:+.0} s from AWS (Date header, ±1 s)");
            if skew.abs() > aws::MAX_CLOCK_SKEW.as_secs_f64() {
                lines.fail(
                    "clock",
                    detail,
                    Some("sync the clock (chrony / systemd-timesyncd): SigV4 tokens fail beyond 5 minutes".into()),
                    3,
                );
            } else if skew.abs() > 60.0 {
                lines.warn(
                    "clock",
                    detail,
                    Some("sync the clock (chrony / systemd-timesyncd)".into()),
                );
            } else {
                lines.ok("clock", detail);
            }
        }
        None => lines.skip("clock", "no Date header from AWS"),
    }
    account
}

/// The instance or cluster behind the target.
async fn database_line(
    lines: &mut Lines,
    rds: &Rds,
    args: &DoctorArgs,
    named: &Named,
) -> Option<Database> {
    let lookup = match (
        &args.target.rds.instance,
        &args.target.rds.cluster,
        &named.host,
    ) {
        (Some(id), _, _) => rds.instance(id).await.map(Some),
        (None, Some(id), _) => rds.cluster(id).await.map(Some),
        (None, None, Some(host)) => rds.list().await.map(|all| {
            all.into_iter().find(|d| {
                d.endpoint.as_deref() == Some(host.as_str())
                    || d.reader_endpoint.as_deref() == Some(host.as_str())
            })
        }),
        (None, None, None) => Ok(None),
    };
    match lookup {
        Ok(Some(db)) => {
            let what = format!(
                "{:#} {} ({} {}, {})",
                db.kind, db.identifier, db.engine, db.engine_version, db.status
            );
            match named.engine.map(|k| db.expect_engine(k)) {
                Some(Err(e)) => lines.error("database", e),
                _ => lines.ok("database", what),
            }
            Some(db)
        }
        Ok(None) => {
            lines.warn(
                "database",
                format!(
                    "no instance or cluster in {} has the endpoint {}",
                    rds.region,
                    named.host.as_ref().map_or("?", Host::as_str)
                ),
                Some(
                    "a custom DNS name or another region? use --instance / --cluster, or --region"
                        .into(),
                ),
            );
            None
        }
        Err(e) => {
            lines.error("database", e);
            None
        }
    }
}

fn iam_lines(
    lines: &mut Lines,
    db: &Database,
    region: Option<&str>,
    account: Option<&str>,
    user: &str,
) {
    match db.expect_iam() {
        Ok(()) => lines.ok(
            "iam auth",
            format!("enabled on {:#} {}", db.kind, db.identifier),
        ),
        Err(e) => lines.error("iam auth", e),
    }
    match (region, account, &db.resource_id) {
        (Some(r), Some(a), Some(id)) => {
            let partition = aws::partition(r);
            lines.ok(
                "iam policy",
                format!(
                    "allow rds-db:connect on arn:{partition}:rds-db:{r}:{a}:dbuser:{id}/{user}"
                ),
            );
        }
        _ => lines.skip("iam policy", "account or resource id unknown"),
    }
}

/// The instance's CA identifier (e.g. `rds-ca-rsa2048-g1`) among the
/// bundle's roots for its region.
fn ca_line(
    lines: &mut Lines,
    global: &GlobalArgs,
    db: &Database,
    region: Option<&str>,
) -> Result<()> {
    let Some(id) = &db.ca_certificate else {
        lines.skip(
            "ca",
            "the API gives no CA identifier (clusters: see their instances)",
        );
        return Ok(());
    };
    let (roots, _) = ca::roots(global.ca_bundle.as_deref())?;
    match ca::find_ca_identifier(&roots, id, region, SystemTime::now()) {
        ca::CaLookup::Unknown => lines.warn(
            "ca",
            format!("unknown CA identifier {id:?}"),
            Some("check `rdsconn ca show` against the instance's CA".into()),
        ),
        ca::CaLookup::Found(c) => lines.ok(
            "ca",
            format!(
                "{id}: {} in the bundle, expires {}",
                c.subject_cn.as_deref().unwrap_or("?"),
                c.not_after
            ),
        ),
        ca::CaLookup::Missing => lines.warn(
            "ca",
            format!("{id} is not in the CA bundle in use"),
            Some("rdsconn ca fetch (or --ca-bundle with the bundle that has it)".into()),
        ),
    }
    Ok(())
}

async fn connection_lines(
    lines: &mut Lines,
    global: &GlobalArgs,
    args: &DoctorArgs,
    named: &Named,
    found: Option<&Database>,
    login: Login,
) -> Result<()> {
    let (host, port) = match (&named.host, found) {
        (Some(h), _) => (h.as_str().to_string(), args.target.port),
        (None, Some(db)) => match db.address(args.target.rds.reader) {
            Ok((h, p)) => (h, args.target.port.or(Some(p))),
            Err(e) => {
                lines.error("connection", e);
                return Ok(());
            }
        },
        (None, None) => {
            lines.skip("connection", "no endpoint");
            return Ok(());
        }
    };
    let engine = named
        .engine
        .or_else(|| found.and_then(|d| d.engine_kind().ok()));
    let Some(kind) = engine else {
        lines.fail(
            "connection",
            "the engine is unknown",
            Some("pass --engine mysql|postgres".into()),
            2,
        );
        return Ok(());
    };
    let given = Given {
        url: None,
        host: Some(host),
        port: port.or(named.url.as_ref().and_then(|u| u.port)),
        user: Some(named.user.clone()),
        database: args
            .target
            .database
            .clone()
            .or_else(|| named.url.as_ref().and_then(|u| u.database.clone())),
    };
    let (kind, target, _) = target(
        Some(kind),
        given,
        args.target.via.as_deref(),
        args.connect_timeout.into(),
    )?;
    let (roots, warnings) = ca::roots(global.ca_bundle.as_deref())?;
    for w in warnings {
        output::warn(w);
    }
    let settings = Settings {
        global: global.clone(),
        policy: TlsPolicy {
            mode: args.target.tls,
            roots,
        },
        query: "SELECT 1".into(),
        warn_days: 30,
        wait: None,
        wait_all: false,
    };
    let item = Item {
        label: target.describe(),
        kind,
        target,
        login,
    };
    let report = probe::check_once(&item, &settings).await;
    for stage in &report.stages {
        let detail = stage.detail.clone().unwrap_or_default();
        let timed = stage.duration_ms.map_or(detail.clone(), |ms| {
            format!("{ms:.1} ms {detail}").trim_end().to_string()
        });
        let check = stage_name(stage.name);
        match stage.status {
            "ok" => lines.ok(check, timed),
            "fail" => lines.fail(
                check,
                report.error.clone().unwrap_or(timed),
                report.hint.clone(),
                report.exit_code,
            ),
            _ => lines.skip(check, "an earlier stage failed"),
        }
    }
    Ok(())
}

/// Doctor's names for the connection stages.
fn stage_name(stage: &str) -> &'static str {
    match stage {
        "dns" => "connect: dns",
        "tcp" => "connect: tcp",
        "tls" => "connect: tls",
        "auth" => "connect: auth",
        _ => "connect: query",
    }
}

#[derive(Serialize)]
struct Document<'a> {
    checks: &'a [Line],
    exit_code: u8,
}

fn print(format: OutputFormat, lines: &Lines, code: u8) -> Result<()> {
    output::emit(
        format,
        &Document {
            checks: &lines.0,
            exit_code: code,
        },
        || {
            let mut out = String::new();
            for l in &lines.0 {
                let status = if l.status == "skipped" {
                    "SKIP"
                } else {
                    &l.status.to_uppercase()
                };
                let _ = writeln!(out, "{status:<5} {:<15} {}", l.check, l.detail);
                if let Some(fix) = &l.fix {
                    let _ = writeln!(out, "{:<21} fix: {fix}", "");
                }
            }
            out.trim_end().to_string()
        },
    )
}
