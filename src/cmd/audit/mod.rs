//! `rdsconn audit`: a region's (or the selected) databases' TLS, IAM and
//! CA posture through the RDS API, each finding with a severity, its
//! evidence and the command that fixes it.
//!
//! - TLS enforced: the effective `rds.force_ssl` (PostgreSQL) or
//!   `require_secure_transport` (MySQL, MariaDB): the parameter group's
//!   value, else the engine default of the group's family
//!   (`DescribeEngineDefault[Cluster]Parameters`, the family from
//!   `DescribeDBEngineVersions`), else rdsconn's own knowledge of it (on
//!   from RDS PostgreSQL 15); Aurora's from the cluster parameter group. A
//!   group that cannot be read is said, and its databases not judged. The lowest TLS version
//!   (`ssl_min_protocol_version`, `tls_version`). An RDS Proxy's
//!   `RequireTLS`.
//! - IAM database authentication; public accessibility; a master password
//!   RDS manages in Secrets Manager.
//! - CA: the instance's CA and its `ValidTill` (`DescribeCertificates`),
//!   a pending `ca-certificate-rotation`.
//! - `--connect` ([`live`]): asked of each database over a verified
//!   connection.

mod live;

use std::collections::{BTreeSet, HashMap};
use std::fmt::Write as _;
use std::sync::Arc;

use serde::Serialize;

use crate::cli::{AuditArgs, GlobalArgs, RdsSelector, Severity};
use crate::error::Result;
use crate::output;
use crate::rds::{Database, DbKind, EngineVersion, Rds};

/// One finding.
#[derive(Debug, Serialize)]
struct Finding {
    severity: Severity,
    /// `instance`, `cluster` or `proxy`.
    kind: &'static str,
    database: String,
    check: &'static str,
    evidence: String,
    fix: String,
}

#[derive(Serialize)]
struct Document<'a> {
    region: &'a str,
    databases: usize,
    findings: &'a [Finding],
    summary: BTreeMapCounts,
    exit_code: u8,
}

type BTreeMapCounts = std::collections::BTreeMap<&'static str, usize>;

/// The parameters that enforce TLS and set its lowest version for an
/// engine, and whether they are read from the cluster parameter group.
fn tls_parameter(db: &Database) -> Option<(&'static str, &'static str, bool)> {
    const PG: (&str, &str) = ("rds.force_ssl", "ssl_min_protocol_version");
    const MY: (&str, &str) = ("require_secure_transport", "tls_version");
    let ((force, min), cluster) = match (db.engine.as_str(), db.kind) {
        ("postgres", DbKind::Instance) => (PG, false),
        ("mysql" | "mariadb", DbKind::Instance) => (MY, false),
        ("aurora-postgresql", DbKind::Cluster) => (PG, true),
        ("aurora-mysql", DbKind::Cluster) => (MY, true),
        _ => return None,
    };
    Some((force, min, cluster))
}

/// The TLS versions below 1.2 a `ssl_min_protocol_version` /
/// `tls_version` value (else the engine default) lets in.
fn old_tls(db: &Database, value: Option<&str>) -> Option<String> {
    let value = match value {
        Some(v) => v.to_string(),
        // MySQL 5.7 allows TLS 1.0 and 1.1 by default; PostgreSQL (12 on)
        // and MySQL 8.0 start at 1.2.
        None if db.engine == "mysql" && db.engine_version.starts_with("5.") => {
            "TLSv1,TLSv1.1,TLSv1.2".into()
        }
        None => return None,
    };
    let old: Vec<&str> = value
        .split(',')
        .map(str::trim)
        .filter(|v| matches!(*v, "TLSv1" | "TLSv1.1"))
        .collect();
    (!old.is_empty()).then(|| old.join(", "))
}

/// The engine's default when the parameter group leaves it unset: RDS
/// PostgreSQL forces TLS from version 15 on; the others do not.
fn engine_default(db: &Database) -> &'static str {
    let major: u32 = db
        .engine_version
        .split('.')
        .next()
        .and_then(|m| m.parse().ok())
        .unwrap_or(0);
    if db.engine == "postgres" && major >= 15 {
        "1"
    } else {
        "0"
    }
}

fn is_on(v: &str) -> bool {
    matches!(v.to_ascii_lowercase().as_str(), "1" | "on" | "true")
}

const DAY: i64 = 86_400;

pub(crate) async fn run(global: &GlobalArgs, args: &AuditArgs) -> Result<u8> {
    // A bad --via is refused before any API call (its password redacted).
    let via = args
        .via
        .as_deref()
        .map(|raw| crate::resolve::parse_via(raw, false))
        .transpose()?;
    // Read once, for every database --connect logs in to.
    let password = if args.password_stdin {
        Some(crate::resolve::stdin_password()?)
    } else {
        None
    };
    if let Some(host) = &args.host {
        // One endpoint, asked directly: no RDS API.
        // Boxed: a login's future is large.
        let found = Box::pin(live::audit(
            global,
            args,
            &RdsSelector::default(),
            password.as_ref(),
        ))
        .await?;
        let findings = live_findings("endpoint", host, found);
        let region = global.region.clone().unwrap_or_else(|| "-".into());
        return finish(global, args, &region, 1, findings);
    }
    let (rds, config) = Rds::connect_config(global).await?;
    let rds = Arc::new(rds);
    let (dbs, proxies) = tokio::join!(rds.list(), rds.proxies());
    let mut dbs = dbs?;
    dbs.extend(proxies?);
    let wanted: BTreeSet<&String> = args
        .instance
        .iter()
        .chain(&args.cluster)
        .chain(&args.proxy)
        .collect();
    if !wanted.is_empty() {
        dbs.retain(|d| wanted.contains(&d.identifier));
        for w in &wanted {
            if !dbs.iter().any(|d| &&d.identifier == w) {
                return Err(crate::error::Error::usage(format!(
                    "no instance, cluster or proxy {w:?} in {}",
                    rds.region()
                )));
            }
        }
    }
    if args.connect {
        one_address(args.via.as_deref().zip(via.as_ref()), &dbs)?;
    }
    let (certs, pending) = tokio::join!(rds.certificates(), rds.pending_maintenance());
    let certs = certs.unwrap_or_else(|e| {
        output::warn(format!("CA validity not checked: {e}"));
        HashMap::new()
    });
    let pending = pending.unwrap_or_else(|e| {
        output::warn(format!("pending maintenance not checked: {e}"));
        HashMap::new()
    });
    let params = parameters(&rds, &dbs, args.concurrency).await?;
    let versions = versions(&rds, &dbs, args.concurrency).await;
    let defaults = defaults(&rds, &dbs, &versions, args.concurrency).await;
    let rotation = rotations(&config, &dbs, args.concurrency).await;
    let facts = Facts {
        region: rds.region().to_string(),
        params,
        defaults,
        certs,
        pending,
        versions,
        rotation,
        now: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(0)),
    };
    let mut findings: Vec<Finding> = Vec::new();
    for db in &dbs {
        findings.extend(checks(db, &facts));
    }
    if args.connect {
        findings.extend(connected(global, args, (&dbs, &facts.region), password).await?);
    }
    finish(global, args, &facts.region, dbs.len(), findings)
}

/// Whether `--connect` logs in to `db`: clusters and the instances that
/// are not a cluster's member.
fn logs_in(db: &Database) -> bool {
    match db.kind {
        DbKind::Instance => db.cluster.is_none(),
        DbKind::Cluster => true,
        _ => false,
    }
}

/// `--via HOST:PORT` dials one address: refused when --connect would
/// log in to more than one database through it.
fn one_address(via: Option<(&str, &crate::target::Via)>, dbs: &[Database]) -> Result<()> {
    let reached = dbs.iter().filter(|d| logs_in(d)).count();
    if let Some((raw, crate::target::Via::Addr(..))) = via
        && reached > 1
    {
        // A HOST:PORT holds no password.
        return Err(crate::error::Error::usage(format!(
            "--via {} dials one address, and --connect would reach {reached} databases: select one with --instance or --cluster, or use ssh://, ssm:// or socks5h://",
            crate::text::escape(raw)
        )));
    }
    Ok(())
}

/// What the API said about the region, beyond the databases themselves.
struct Facts {
    region: String,
    params: Params,
    /// CA identifier → `ValidTill`.
    certs: HashMap<String, i64>,
    /// Resource ARN → pending maintenance actions.
    pending: HashMap<String, Vec<String>>,
    /// The TLS parameters' engine defaults by (family, cluster?).
    defaults: Params,
    /// (engine, version) → what `DescribeDBEngineVersions` says.
    versions: HashMap<(String, String), EngineVersion>,
    /// Master secret ARN → its rotation.
    rotation: HashMap<String, crate::secrets::Rotation>,
    now: i64,
}

/// `--connect` for every instance (not a cluster's member) and cluster,
/// `--concurrency` at a time; a database that cannot be reached is said on
/// stderr. IAM users on a database whose IAM authentication is off cannot
/// log in: a finding.
async fn connected(
    global: &GlobalArgs,
    args: &AuditArgs,
    (dbs, region): (&[Database], &str),
    password: Option<crate::secret::Secret>,
) -> Result<Vec<Finding>> {
    let wanted: Vec<&Database> = dbs.iter().filter(|d| logs_in(d)).collect();
    let shared = Arc::new((global.clone(), args.clone(), password));
    let found = gather(
        "databases",
        (0..wanted.len()).collect(),
        args.concurrency,
        |i| {
            let mut sel = RdsSelector::default();
            let id = wanted[i].identifier.clone();
            if wanted[i].kind == DbKind::Cluster {
                sel.cluster = Some(id);
            } else {
                sel.instance = Some(id);
            }
            let shared = Arc::clone(&shared);
            async move {
                let (global, args, password) = &*shared;
                live::audit(global, args, &sel, password.as_ref()).await
            }
        },
    )
    .await?;
    let mut out = Vec::new();
    for (i, result) in found {
        let db = wanted[i];
        let kind = if db.kind == DbKind::Cluster {
            "cluster"
        } else {
            "instance"
        };
        match result {
            Ok(found) => {
                if !db.iam_auth && found.iter().any(|f| f.1 == live::IAM_USERS) {
                    out.push(Finding {
                        severity: Severity::Medium,
                        kind,
                        database: db.identifier.clone(),
                        check: "iam-users-without-iam-auth",
                        evidence: "users log in with IAM, but IAM database authentication is off: their logins fail".into(),
                        fix: format!(
                            "{} --enable-iam-database-authentication --apply-immediately --region {region}",
                            db.modify_command(),
                        ),
                    });
                }
                out.extend(live_findings(kind, &db.identifier, found));
            }
            Err(e) => output::warn(format!(
                "{} {}: live checks skipped: {}",
                db.kind,
                db.identifier,
                e.one_line()
            )),
        }
    }
    Ok(out)
}

fn live_findings(kind: &'static str, database: &str, found: Vec<live::Live>) -> Vec<Finding> {
    found
        .into_iter()
        .map(|(severity, check, evidence, fix)| Finding {
            severity,
            kind,
            database: database.to_string(),
            check,
            evidence,
            fix,
        })
        .collect()
}

/// Sorts, prints and gives the exit code (`--fail-on`).
fn finish(
    global: &GlobalArgs,
    args: &AuditArgs,
    region: &str,
    databases: usize,
    mut findings: Vec<Finding>,
) -> Result<u8> {
    findings.sort_by(|a, b| {
        b.severity
            .cmp(&a.severity)
            .then_with(|| a.database.cmp(&b.database))
            .then_with(|| a.check.cmp(b.check))
    });
    let code = u8::from(
        args.fail_on
            .is_some_and(|at| findings.iter().any(|f| f.severity >= at)),
    );
    print(global, region, databases, &findings, code)?;
    Ok(code)
}

/// The parameters the TLS checks read.
const TLS_PARAMETERS: [&str; 4] = [
    "rds.force_ssl",
    "ssl_min_protocol_version",
    "require_secure_transport",
    "tls_version",
];

/// What each (parameter group, cluster group?) sets; also the engine
/// defaults by (family, cluster?).
type Params = HashMap<(String, bool), HashMap<String, String>>;

/// `call` for every key, at most `concurrency` in flight, with a progress
/// line on a terminal naming `what`.
async fn gather<K, V, F, Fut>(
    what: &str,
    keys: BTreeSet<K>,
    concurrency: u16,
    call: F,
) -> Result<HashMap<K, V>>
where
    K: Ord + std::hash::Hash + Clone + Send + 'static,
    V: Send + 'static,
    F: Fn(K) -> Fut,
    Fut: std::future::Future<Output = V> + Send + 'static,
{
    let permits = Arc::new(tokio::sync::Semaphore::new(usize::from(concurrency.max(1))));
    let mut set = tokio::task::JoinSet::new();
    let total = keys.len();
    for key in keys {
        let (permits, work) = (Arc::clone(&permits), call(key.clone()));
        set.spawn(async move {
            let _permit = permits.acquire_owned().await;
            (key, work.await)
        });
    }
    let tty = output::stderr_is_tty();
    let mut out = HashMap::new();
    while let Some(done) = set.join_next().await {
        let (key, value) = done.map_err(|e| {
            crate::error::Error::new(crate::error::Category::Runtime, e)
                .context(format!("reading {what}"))
        })?;
        out.insert(key, value);
        if tty {
            eprint!("\rrdsconn audit: {what} {}/{total}", out.len());
        }
    }
    if tty && total > 0 {
        eprintln!();
    }
    Ok(out)
}

/// Every parameter group's TLS parameter, each group read once; a group
/// that cannot be read is said once (its databases' TLS is not judged).
async fn parameters(rds: &Arc<Rds>, dbs: &[Database], concurrency: u16) -> Result<Params> {
    let wanted: BTreeSet<(String, bool)> = dbs
        .iter()
        .filter_map(|d| {
            let (_, _, cluster) = tls_parameter(d)?;
            Some((d.parameter_group.clone()?, cluster))
        })
        .collect();
    let read = gather("parameter groups", wanted, concurrency, |key| {
        let rds = Arc::clone(rds);
        async move { rds.parameters(&key.0, &TLS_PARAMETERS, key.1).await }
    })
    .await?;
    let mut out = Params::new();
    let mut failed: Vec<String> = Vec::new();
    let mut first = None;
    for ((group, cluster), value) in read {
        match value {
            Ok(v) => {
                out.insert((group, cluster), v);
            }
            Err(e) => {
                failed.push(group);
                first.get_or_insert(e);
            }
        }
    }
    if let Some(e) = first {
        failed.sort();
        output::warn(format!(
            "TLS enforcement not checked for the databases using {}: {e}",
            failed.join(", ")
        ));
    }
    Ok(out)
}

/// Each engine version in use (`DescribeDBEngineVersions`): whether it
/// rotates its certificate without a restart, its parameter group family.
/// What the API cannot say is left out, with one warning.
async fn versions(
    rds: &Arc<Rds>,
    dbs: &[Database],
    concurrency: u16,
) -> HashMap<(String, String), EngineVersion> {
    let wanted: BTreeSet<(String, String)> = dbs
        .iter()
        .filter(|d| matches!(d.kind, DbKind::Instance | DbKind::Cluster))
        .map(|d| (d.engine.clone(), d.engine_version.clone()))
        .collect();
    let read = gather(
        "engine versions",
        wanted,
        concurrency,
        |(engine, version)| {
            let rds = Arc::clone(rds);
            async move { rds.engine_version(&engine, &version).await }
        },
    )
    .await;
    let mut out = HashMap::new();
    let mut failed = None;
    for (key, value) in read.into_iter().flatten() {
        match value {
            Ok(Some(v)) => {
                out.insert(key, v);
            }
            Ok(None) => {}
            Err(e) => failed = Some(e),
        }
    }
    if let Some(e) = failed {
        output::warn(format!(
            "engine versions not read (whether CA rotation restarts, engine defaults): {e}"
        ));
    }
    out
}

/// The TLS parameters' engine defaults of each parameter group family in
/// use (`DescribeEngineDefault[Cluster]Parameters`), for groups that leave
/// them unset. What the API cannot say is left out (rdsconn's own
/// knowledge of the defaults applies), with one warning.
async fn defaults(
    rds: &Arc<Rds>,
    dbs: &[Database],
    versions: &HashMap<(String, String), EngineVersion>,
    concurrency: u16,
) -> Params {
    let wanted: BTreeSet<(String, bool)> = dbs
        .iter()
        .filter_map(|d| {
            let (_, _, cluster) = tls_parameter(d)?;
            let family = family_of(d, versions)?;
            Some((family.to_string(), cluster))
        })
        .collect();
    let read = gather("engine defaults", wanted, concurrency, |key| {
        let rds = Arc::clone(rds);
        async move { rds.engine_defaults(&key.0, &TLS_PARAMETERS, key.1).await }
    })
    .await;
    let mut out = Params::new();
    let mut failed = None;
    for (key, value) in read.into_iter().flatten() {
        match value {
            Ok(v) => {
                out.insert(key, v);
            }
            Err(e) => failed = Some(e),
        }
    }
    if let Some(e) = failed {
        output::warn(format!(
            "engine defaults not read (rdsconn's own knowledge of them applies): {e}"
        ));
    }
    out
}

/// `db`'s parameter group family, from its engine version.
fn family_of<'a>(
    db: &Database,
    versions: &'a HashMap<(String, String), EngineVersion>,
) -> Option<&'a str> {
    versions
        .get(&(db.engine.clone(), db.engine_version.clone()))?
        .family
        .as_deref()
}

/// Each managed master secret's rotation (`DescribeSecret`; the value is
/// never read). Secrets that cannot be described are left out, with one
/// warning.
async fn rotations(
    config: &aws_types::SdkConfig,
    dbs: &[Database],
    concurrency: u16,
) -> HashMap<String, crate::secrets::Rotation> {
    let wanted: BTreeSet<String> = dbs
        .iter()
        .filter(|d| !(d.kind == DbKind::Instance && d.cluster.is_some()))
        .filter_map(|d| d.master_user_secret.clone())
        .collect();
    let mut out = HashMap::new();
    let (mut failed, mut first) = (0_usize, None);
    // One first: when Secrets Manager cannot be reached at all (not a
    // refusal for one secret), the others are not tried one by one.
    let api = crate::secrets::Describer::new(config);
    let mut rest = wanted;
    if let Some(arn) = rest.pop_first() {
        match api.rotation(&arn).await {
            Ok(r) => {
                out.insert(arn, r);
            }
            Err(e) => {
                let unreachable = matches!(
                    e,
                    crate::secrets::SecretError::Api { .. } | crate::secrets::SecretError::Aws(_)
                );
                if unreachable {
                    output::warn(format!(
                        "master secret rotation not checked for {} database(s): {}",
                        rest.len() + 1,
                        crate::error::Error::from(e).one_line()
                    ));
                    return out;
                }
                failed += 1;
                first = Some(e);
            }
        }
    }
    let read = gather("master secrets", rest, concurrency, |arn| {
        let api = api.clone();
        async move { api.rotation(&arn).await }
    })
    .await;
    for (arn, value) in read.into_iter().flatten() {
        match value {
            Ok(r) => {
                out.insert(arn, r);
            }
            Err(e) => {
                failed += 1;
                first.get_or_insert(e);
            }
        }
    }
    if let Some(e) = first {
        output::warn(format!(
            "master secret rotation not checked for {failed} database(s): {}",
            crate::error::Error::from(e).one_line()
        ));
    }
    out
}

/// The findings for one database.
fn checks(db: &Database, facts: &Facts) -> Vec<Finding> {
    let region = &facts.region;
    let kind = match db.kind {
        DbKind::Instance => "instance",
        DbKind::Cluster => "cluster",
        _ => "proxy",
    };
    let id = &db.identifier;
    let modify = db.modify_command();
    let mut out = Vec::new();
    let mut add = |severity, check, evidence: String, fix: String| {
        out.push(Finding {
            severity,
            kind,
            database: id.clone(),
            check,
            evidence,
            fix: format!("{fix} --region {region}"),
        });
    };
    if db.kind.is_proxy() {
        if db.require_tls == Some(false) {
            add(
                Severity::High,
                "proxy-tls-not-required",
                "RequireTLS is false: clients may connect without TLS".into(),
                format!("aws rds modify-db-proxy --db-proxy-name {id} --require-tls"),
            );
        }
        return out;
    }
    // A cluster's members follow the cluster for TLS, IAM and the secret.
    let member = db.kind == DbKind::Instance && db.cluster.is_some();
    tls_check(db, facts, &mut add);
    if !member && !db.iam_auth {
        let upgrade = crate::rds::iam_minimum(&db.engine, &db.engine_version).map_or_else(
            String::new,
            |min| {
                format!(
                    "; {} {} cannot have it: upgrade to {min} or later first",
                    db.engine, db.engine_version
                )
            },
        );
        add(
            Severity::Medium,
            "iam-auth-off",
            format!("IAM database authentication is off: every login is a password{upgrade}"),
            format!("{modify} --enable-iam-database-authentication --apply-immediately"),
        );
    }
    if db.publicly_accessible == Some(true) {
        add(
            Severity::High,
            "publicly-accessible",
            "PubliclyAccessible is true: the endpoint resolves to a public address".into(),
            format!("{modify} --no-publicly-accessible --apply-immediately"),
        );
    }
    if !member && db.master_user_secret.is_none() {
        add(
            Severity::Low,
            "master-password-not-managed",
            "the master user's password is not managed by RDS in Secrets Manager (no rotation)"
                .into(),
            format!("{modify} --manage-master-user-password --apply-immediately"),
        );
    }
    if !member && let Some(arn) = &db.master_user_secret {
        secret_check(arn, facts.rotation.get(arn), &mut add);
    }
    if db.kind == DbKind::Instance {
        ca_checks(db, facts, &mut add);
    }
    out
}

/// The managed master secret's rotation: off is a finding.
fn secret_check(
    arn: &str,
    rotation: Option<&crate::secrets::Rotation>,
    add: &mut impl FnMut(Severity, &'static str, String, String),
) {
    let Some(rotation) = rotation else { return };
    if rotation.enabled == Some(true) {
        return;
    }
    let last = rotation.last_rotated.as_deref().map_or_else(
        || "never rotated".to_string(),
        |at| format!("last rotated {at}"),
    );
    add(
        Severity::Low,
        "master-secret-rotation-off",
        format!("rotation of the RDS-managed master secret {arn} is off ({last})"),
        format!(
            "aws secretsmanager rotate-secret --secret-id {arn} --rotation-rules '{{\"ScheduleExpression\":\"rate(7 days)\"}}'"
        ),
    );
}

/// TLS enforced: the parameter group's value, else the engine default.
fn tls_check(
    db: &Database,
    facts: &Facts,
    add: &mut impl FnMut(Severity, &'static str, String, String),
) {
    let (Some((name, min, cluster)), Some(group)) = (tls_parameter(db), &db.parameter_group) else {
        return;
    };
    // The command that sets PARAMETER=VALUE in this group.
    let set_in_group = |parameter: &str, value: &str, apply: &str| {
        let (verb, flag) = if cluster {
            (
                "modify-db-cluster-parameter-group",
                "--db-cluster-parameter-group-name",
            )
        } else {
            ("modify-db-parameter-group", "--db-parameter-group-name")
        };
        format!(
            "aws rds {verb} {flag} {group} --parameters \"ParameterName={parameter},ParameterValue={value},ApplyMethod={apply}\""
        )
    };
    // Not read (said already): not judged.
    let Some(values) = facts.params.get(&(group.clone(), cluster)) else {
        return;
    };
    // The family's engine defaults, as the API says them.
    let family = family_of(db, &facts.versions);
    let defaults = family.and_then(|f| facts.defaults.get(&(f.to_string(), cluster)));
    let min_value = values
        .get(min)
        .or_else(|| defaults.and_then(|d| d.get(min)));
    if let Some(old) = old_tls(db, min_value.map(String::as_str)) {
        add(
            Severity::Medium,
            "tls-min-version",
            format!("{min} lets {old} in ({group}, or the engine default)"),
            set_in_group(min, "TLSv1.2", "pending-reboot"),
        );
    }
    let (value, from) = match (values.get(name), defaults.and_then(|d| d.get(name))) {
        (Some(v), _) => (v.as_str(), format!("set in {group}")),
        (None, Some(v)) => (
            v.as_str(),
            format!(
                "the engine default of {}: {group} leaves it unset",
                family.unwrap_or_default()
            ),
        ),
        (None, None) => (
            engine_default(db),
            format!(
                "the engine default for {} {}: {group} leaves it unset",
                db.engine, db.engine_version
            ),
        ),
    };
    if !is_on(value) {
        let copy_first = if group.starts_with("default.") {
            "a default group cannot change: copy it (aws rds copy-db-parameter-group), attach the copy, then "
        } else {
            ""
        };
        add(
            Severity::High,
            "tls-not-enforced",
            format!("{name} = {value} ({from}): clients may connect without TLS"),
            format!("{copy_first}{}", set_in_group(name, "1", "immediate")),
        );
    }
}

/// The instance's CA: unknown, expired or expiring, a rotation pending.
fn ca_checks(
    db: &Database,
    facts: &Facts,
    add: &mut impl FnMut(Severity, &'static str, String, String),
) {
    let (certs, now) = (&facts.certs, facts.now);
    let rotate = format!(
        "{} --ca-certificate-identifier rds-ca-rsa2048-g1 --apply-immediately",
        db.modify_command()
    );
    // Whether rotating restarts the database, when the API says.
    let restart = match facts
        .versions
        .get(&(db.engine.clone(), db.engine_version.clone()))
        .and_then(|v| v.rotation_without_restart)
    {
        Some(true) => format!(
            "; {} {} rotates it without a restart",
            db.engine, db.engine_version
        ),
        Some(false) => format!(
            "; rotating restarts the instance ({} {} cannot rotate without one)",
            db.engine, db.engine_version
        ),
        None => String::new(),
    };
    let mut add = |severity, check, evidence: String, fix: String| {
        add(severity, check, format!("{evidence}{restart}"), fix);
    };
    if let Some(ca) = &db.ca_certificate {
        match certs.get(ca) {
            Some(&till) => {
                let days = (till - now).div_euclid(DAY);
                let date = crate::ca::rfc3339(till)
                    .get(..10)
                    .unwrap_or_default()
                    .to_string();
                if days < 0 {
                    add(
                        Severity::Critical,
                        "ca-expired",
                        format!("CA {ca} expired on {date}: clients that verify refuse the server"),
                        rotate,
                    );
                } else if days < 30 {
                    add(
                        Severity::High,
                        "ca-expiring",
                        format!("CA {ca} expires on {date}, in {days} days"),
                        rotate,
                    );
                } else if days < 180 {
                    add(
                        Severity::Medium,
                        "ca-expiring",
                        format!("CA {ca} expires on {date}, in {days} days"),
                        rotate,
                    );
                }
            }
            None if !certs.is_empty() => add(
                Severity::Medium,
                "ca-unknown",
                format!("CA {ca} is not one DescribeCertificates lists (retired)"),
                rotate,
            ),
            None => {}
        }
    }
    if let Some(arn) = &db.arn
        && facts
            .pending
            .get(arn)
            .is_some_and(|a| a.iter().any(|x| x == "ca-certificate-rotation"))
    {
        add(
            Severity::Medium,
            "ca-rotation-pending",
            "a ca-certificate-rotation maintenance action is pending".into(),
            format!(
                "aws rds apply-pending-maintenance-action --resource-identifier {arn} --apply-action ca-certificate-rotation --opt-in-type immediate"
            ),
        );
    }
}

fn print(
    global: &GlobalArgs,
    region: &str,
    databases: usize,
    findings: &[Finding],
    exit_code: u8,
) -> Result<()> {
    let mut summary = BTreeMapCounts::new();
    for f in findings {
        *summary.entry(f.severity.label()).or_default() += 1;
    }
    let doc = Document {
        region,
        databases,
        findings,
        summary: summary.clone(),
        exit_code,
    };
    output::emit(global.output, &doc, || {
        let mut text = String::new();
        for f in findings {
            let shown = |s: &str| crate::text::Untrusted(s).to_string();
            let _ = write!(
                text,
                "{:<9} {} {}  {}: {}\n          fix: {}\n",
                f.severity.label().to_uppercase(),
                f.kind,
                shown(&f.database),
                f.check,
                shown(&f.evidence),
                shown(&f.fix)
            );
        }
        let counts: Vec<String> = summary.iter().map(|(k, v)| format!("{v} {k}")).collect();
        let _ = write!(
            text,
            "{databases} database(s) in {region}: {} finding(s){}",
            findings.len(),
            if counts.is_empty() {
                String::new()
            } else {
                format!(" ({})", counts.join(", "))
            }
        );
        text
    })
}
