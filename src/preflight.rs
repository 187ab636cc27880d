//! `rdsconn doctor`'s checks before the connection: region, credentials,
//! identity and clock, the instance or cluster, IAM auth and policy, the
//! CA. Each renders one checklist line, OK / WARN / FAIL / SKIP with a fix;
//! the worst failure gives the exit code.

use std::fmt::Write as _;
use std::time::SystemTime;

use serde::Serialize;

use crate::aws::{self, RegionSource};
use crate::ca;
use crate::cli::{GlobalArgs, OutputFormat, RdsSelector};
use crate::error::{Category, Error, Result};
use crate::output::{self, Status};
use crate::rds::{Database, Rds};
use crate::target::{EngineKind, Host};

#[derive(Debug, Serialize)]
pub(crate) struct Line {
    check: &'static str,
    status: Status,
    detail: String,
    fix: Option<String>,
    /// How long a timed check (a connection stage) took.
    duration_ms: Option<f64>,
    #[serde(skip)]
    failure: Option<Category>,
}

/// The checklist: each line printed as it completes (text), or all at
/// the end (JSON).
pub(crate) struct Lines {
    done: Vec<Line>,
    format: OutputFormat,
    /// The target needs no AWS call (a password user with a host or URL):
    /// an AWS failure is then SKIP, not FAIL.
    aws_optional: bool,
    /// The duration of the next line pushed ([`Lines::timed`]).
    next_ms: Option<f64>,
}

impl Lines {
    pub(crate) fn new(format: OutputFormat, aws_optional: bool) -> Self {
        Self {
            done: Vec::new(),
            format,
            aws_optional,
            next_ms: None,
        }
    }

    /// The next line is a timed check that took `ms`.
    pub(crate) fn timed(&mut self, ms: Option<f64>) -> &mut Self {
        self.next_ms = ms;
        self
    }

    /// What doctor could not check itself (an IAM policy): INFO with what
    /// it must allow.
    pub(crate) fn not_checked(&mut self, check: &'static str, detail: impl Into<String>) {
        self.push(check, Status::NotChecked, detail.into(), None, None);
    }

    pub(crate) fn ok(&mut self, check: &'static str, detail: impl Into<String>) {
        self.push(check, Status::Ok, detail.into(), None, None);
    }

    pub(crate) fn warn(
        &mut self,
        check: &'static str,
        detail: impl Into<String>,
        fix: Option<String>,
    ) {
        self.push(check, Status::Warn, detail.into(), fix, None);
    }

    pub(crate) fn fail(
        &mut self,
        check: &'static str,
        detail: impl Into<String>,
        fix: Option<String>,
        failure: Category,
    ) {
        self.push(check, Status::Fail, detail.into(), fix, Some(failure));
    }

    pub(crate) fn skip(&mut self, check: &'static str, why: &str) {
        self.push(check, Status::Skipped, why.to_string(), None, None);
    }

    /// A failure from an error: its message, hint and category.
    pub(crate) fn error(&mut self, check: &'static str, e: impl Into<Error>) {
        let e: Error = e.into();
        let hint = e.hint().map(str::to_string);
        self.fail(check, e.one_line(), hint, e.category());
    }

    fn push(
        &mut self,
        check: &'static str,
        status: Status,
        detail: String,
        fix: Option<String>,
        failure: Option<Category>,
    ) {
        let line = if self.aws_optional && failure == Some(Category::Aws) {
            Line {
                check,
                status: Status::Skipped,
                detail: format!("not needed without --iam or a secret ({detail})"),
                fix: None,
                duration_ms: self.next_ms.take(),
                failure: None,
            }
        } else {
            Line {
                check,
                status,
                detail,
                fix,
                duration_ms: self.next_ms.take(),
                failure,
            }
        };
        if self.format == OutputFormat::Text {
            // A closed stdout ends the checklist quietly at the end.
            let _ = output::raw(line.text().as_bytes());
        }
        self.done.push(line);
    }

    pub(crate) fn failed(&self) -> bool {
        self.done.iter().any(|l| l.status == Status::Fail)
    }

    /// The worst failure's exit code, 0 without one.
    pub(crate) fn exit_code(&self) -> u8 {
        self.done
            .iter()
            .filter_map(|l| l.failure)
            .max_by_key(|c| c.severity())
            .map_or(0, Category::exit_code)
    }

    /// The JSON document with the exit code (text lines were printed as
    /// they came).
    pub(crate) fn print(&self) -> Result<()> {
        #[derive(Serialize)]
        struct Document<'a> {
            checks: &'a [Line],
            exit_code: u8,
        }
        if self.format == OutputFormat::Text {
            return Ok(());
        }
        output::json(&Document {
            checks: &self.done,
            exit_code: self.exit_code(),
        })
    }
}

impl Line {
    /// `STATUS check detail`, and the fix on its own line.
    fn text(&self) -> String {
        // Details and fixes are escaped where they are made (an error's
        // one_line), as before.
        let detail = match self.duration_ms {
            Some(ms) => format!("{ms:.1} ms {}", self.detail).trim_end().to_string(),
            None => self.detail.clone(),
        };
        let mut out = format!("{:<5} {:<15} {}\n", self.status.label(), self.check, detail);
        if let Some(fix) = &self.fix {
            let _ = writeln!(out, "{:<21} fix: {fix}", "");
        }
        out
    }
}

/// The region line renders the signing rule itself ([`aws::resolve_region`]):
/// what doctor says is what every command does.
pub(crate) fn region_line(
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

pub(crate) fn credentials_line(lines: &mut Lines, creds: &aws_credential_types::Credentials) {
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
pub(crate) async fn identity_and_clock(
    lines: &mut Lines,
    config: &aws_types::SdkConfig,
) -> Option<String> {
    let (identity, skew) = aws::caller_identity(config).await;
    let account = match identity {
        Ok(id) => {
            lines.ok("identity", format!("{} (account {})", id.arn, id.account));
            Some(id.account)
        }
        Err(e) => {
            lines.error(
                "identity",
                crate::rds::api_error(
                    "sts:GetCallerIdentity",
                    config
                        .region()
                        .map_or_else(|| "STS".into(), |r| aws::api_at(("STS", "sts"), r.as_ref())),
                    &e,
                ),
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
                    Category::Aws,
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
pub(crate) async fn database_line(
    lines: &mut Lines,
    rds: &Rds,
    sel: &RdsSelector,
    engine: Option<EngineKind>,
    host: Option<&Host>,
) -> Option<Database> {
    let lookup = rds.find(sel, host).await;
    match lookup {
        Ok(Some(db)) => {
            let what = if db.kind.is_proxy() {
                let tls = if db.require_tls == Some(true) {
                    ", TLS required"
                } else {
                    ""
                };
                format!(
                    "{:#} {} ({}, {}{tls})",
                    db.kind, db.identifier, db.engine, db.status
                )
            } else {
                format!(
                    "{:#} {} ({} {}, {})",
                    db.kind, db.identifier, db.engine, db.engine_version, db.status
                )
            };
            match engine.map(|k| db.expect_engine(k)) {
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
                    host.map_or("?", Host::as_str)
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

pub(crate) fn iam_lines(
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
            lines.not_checked(
                "iam policy",
                format!(
                    "not checked: the identity's policies must allow rds-db:connect on arn:{partition}:rds-db:{r}:{a}:dbuser:{id}/{user} (the connection line below tries it)"
                ),
            );
        }
        _ => lines.skip("iam policy", "account or resource id unknown"),
    }
    if db.kind.is_proxy() {
        // The proxy logs in to the database itself: with end-to-end IAM
        // its role needs rds-db:connect there too.
        match &db.role_arn {
            Some(role) => lines.ok(
                "proxy role",
                format!(
                    "{role}: for end-to-end IAM it needs rds-db:connect on the database's dbuser ARN (else secretsmanager:GetSecretValue for its secrets)"
                ),
            ),
            None => lines.warn(
                "proxy role",
                format!("{:#} {} has no IAM role", db.kind, db.identifier),
                Some("give the proxy a role that can reach the database's credentials (aws rds modify-db-proxy --role-arn …)".into()),
            ),
        }
    }
}

/// The master user secret RDS manages, if it does: its ARN and status,
/// rotation, and whether the caller may read it.
pub(crate) async fn secret_line(lines: &mut Lines, config: &aws_types::SdkConfig, db: &Database) {
    let Some(arn) = &db.master_user_secret else {
        return;
    };
    let status = db.master_user_secret_status.as_deref().unwrap_or("?");
    match crate::secrets::describe(config, arn).await {
        Ok(info) => {
            let rotation = match (info.rotation.enabled, &info.rotation.last_rotated) {
                (Some(true), Some(at)) => format!("rotated {at}"),
                (Some(true), None) => "rotation on, not rotated yet".to_string(),
                _ => "rotation off".to_string(),
            };
            let detail = format!("{arn} ({status}, {rotation})");
            match info.readable {
                Ok(()) => lines.ok("master secret", format!("{detail}, readable")),
                Err(e) => {
                    let e = Error::from(e);
                    lines.fail(
                        "master secret",
                        format!("{detail}: {}", e.one_line()),
                        e.hint().map(str::to_string),
                        Category::Aws,
                    );
                }
            }
        }
        Err(e) => lines.error("master secret", e),
    }
}

/// The instance's CA identifier (e.g. `rds-ca-rsa2048-g1`) among the
/// bundle's roots for its region.
pub(crate) fn ca_line(
    lines: &mut Lines,
    global: &GlobalArgs,
    db: &Database,
    region: Option<&str>,
) -> Result<()> {
    if db.kind.is_proxy() {
        lines.ok(
            "ca",
            "RDS Proxy presents an ACM certificate: the Amazon Trust Services roots (embedded) verify it",
        );
        return Ok(());
    }
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
