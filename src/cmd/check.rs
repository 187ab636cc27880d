//! `rdsconn check`: a staged reachability probe for CI.
//!
//! Each target goes through DNS, TCP, TLS (rdsconn's own probe, so the
//! handshake is timed and the certificate inspected on its own), then
//! authentication and the query through the engine driver on a second
//! connection (the drivers do TLS and authentication in one step). The
//! first failing stage stops the target; its category gives the exit code.

use std::fmt::Write as _;
use std::io::Read;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use tokio::task::JoinSet;

use crate::ca;
use crate::cli::{CheckArgs, GlobalArgs, OutputFormat};
use crate::engine::{self, Auth, Secret, Target, ms, probe, within};
use crate::error::{Category, Error, Result};
use crate::output;
use crate::resolve::{Found, Given, env, lookup, stdin_password, target};
use crate::target::EngineKind;
use crate::tls::{PeerChain, TlsPolicy};

/// One target to check.
pub(crate) struct Item {
    pub label: String,
    pub kind: EngineKind,
    pub target: Target,
    pub login: Login,
}

/// How a target authenticates.
pub(crate) enum Login {
    /// A token minted right before the `auth` stage.
    Iam,
    Password(Secret),
}

#[derive(Clone, Debug, Serialize)]
pub(crate) struct Stage {
    pub name: &'static str,
    /// `ok`, `fail` or `skipped`.
    pub status: &'static str,
    pub duration_ms: Option<f64>,
    pub detail: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
struct Certificate {
    subject: String,
    sans: Vec<String>,
    issuer: String,
    not_after: String,
    days_left: i64,
}

#[derive(Clone, Debug, Serialize)]
pub(crate) struct Report {
    target: String,
    engine: EngineKind,
    endpoint: String,
    dial_address: String,
    /// `ok`, `warn`, `fail` or `interrupted`.
    pub status: &'static str,
    /// The failing stage, if any.
    pub stage: Option<&'static str>,
    pub exit_code: u8,
    pub error: Option<String>,
    pub hint: Option<String>,
    total_ms: f64,
    attempts: u32,
    tls_protocol: Option<String>,
    tls_cipher: Option<String>,
    certificate: Option<Certificate>,
    pub stages: Vec<Stage>,
}

#[derive(Debug, Serialize)]
struct Summary {
    targets: usize,
    passed: usize,
    warnings: usize,
    failed: usize,
    interrupted: bool,
    exit_code: u8,
}

#[derive(Serialize)]
struct Document<'a> {
    targets: &'a [Report],
    summary: &'a Summary,
}

const STAGES: [&str; 5] = ["dns", "tcp", "tls", "auth", "query"];

/// Exit code when Ctrl-C (SIGINT) ends the run; SIGTERM gives 128 + 15.
const INTERRUPTED: u8 = 130;
const TERMINATED: u8 = 143;

pub async fn run(global: &GlobalArgs, args: &CheckArgs) -> Result<u8> {
    // Installed first: a signal that comes at any point is seen.
    let mut stop = StopSignals::install()?;
    let found = lookup(
        global,
        &args.rds,
        args.engine,
        args.iam,
        args.host.is_some(),
    )
    .await?;
    let items = items(args, found)?;
    let (roots, warnings) = ca::roots(global.ca_bundle.as_deref())?;
    for w in warnings {
        output::warn(w);
    }
    let policy = TlsPolicy {
        mode: args.tls,
        roots,
    };
    let settings = Arc::new(Settings {
        global: global.clone(),
        policy,
        query: args.query.clone(),
        warn_days: i64::from(args.warn_cert_days),
        wait: args.wait.map(Into::into),
        wait_all: args.wait_all,
    });

    // A target without a result when Ctrl-C comes stays `interrupted`.
    let mut reports: Vec<Report> = items.iter().map(Report::interrupted).collect();
    let permits = Arc::new(tokio::sync::Semaphore::new(usize::from(args.concurrency)));
    let mut set = JoinSet::new();
    for (index, item) in items.into_iter().enumerate() {
        let permits = Arc::clone(&permits);
        let settings = Arc::clone(&settings);
        set.spawn(async move {
            let _permit = permits.acquire_owned().await;
            (index, check_with_retries(&item, &settings).await)
        });
    }

    let mut interrupted = None;
    loop {
        tokio::select! {
            next = set.join_next() => match next {
                Some(Ok((index, report))) => {
                    tracing::info!(
                        "{}: {} after {} attempt(s)",
                        report.target,
                        report.status,
                        report.attempts
                    );
                    reports[index] = report;
                }
                Some(Err(e)) => return Err(Error::new(Category::Runtime, e).context("a check task failed")),
                None => break,
            },
            code = stop.recv() => {
                interrupted = Some(code);
                set.abort_all();
                break;
            }
        }
    }
    let summary = summarize(&reports, interrupted, args.strict);
    print(global.output, &reports, &summary)?;
    Ok(summary.exit_code)
}

/// What every check needs, shared by the tasks.
pub(crate) struct Settings {
    pub global: GlobalArgs,
    pub policy: TlsPolicy,
    pub query: String,
    pub warn_days: i64,
    pub wait: Option<Duration>,
    pub wait_all: bool,
}

/// The targets from URLs, `--file`, the `--host` flags or `--instance` /
/// `--cluster` (`api`), with their passwords; every problem is a usage
/// error before any connection.
fn items(args: &CheckArgs, api: Option<Found>) -> Result<Vec<Item>> {
    let mut urls = args.urls.clone();
    if let Some(file) = &args.file {
        urls.extend(read_target_file(file)?);
    }
    let timeout: Duration = args.connect_timeout.into();
    let mut found = Vec::new();
    for url in urls {
        let given = Given {
            url: Some(url.clone()),
            host: None,
            port: None,
            user: None,
            database: None,
        };
        let (kind, target, iam) = target(None, given, args.via.as_deref(), timeout)?;
        found.push((url, kind, target, iam));
    }
    // One target from --host (with --engine) or from the RDS API.
    let single = match api {
        Some(f) => Some((Some(f.kind), f.host, args.port.or(Some(f.port)))),
        None => args.host.clone().map(|h| (args.engine, h, args.port)),
    };
    if single.is_none() && (args.user.is_some() || args.port.is_some() || args.database.is_some()) {
        return Err(Error::usage(
            "--user, --port and --database describe a --host, --instance or --cluster target",
        ));
    }
    if let Some((engine, host, port)) = single {
        let given = Given {
            url: None,
            host: Some(host),
            port,
            user: args.user.clone(),
            database: args.database.clone(),
        };
        let (kind, target, iam) = target(engine, given, args.via.as_deref(), timeout)?;
        let label = format!(
            "{}://{}@{}:{}{}",
            kind.name(),
            target.user,
            target.host,
            target.port,
            target
                .database
                .as_deref()
                .map(|d| format!("/{d}"))
                .unwrap_or_default()
        );
        found.push((label, kind, target, iam));
    }
    if found.is_empty() {
        return Err(Error::usage(
            "no targets: pass URLs, --file FILE, --engine/--host/--user, or --instance/--cluster with --user",
        ));
    }
    if args.via.is_some() && found.len() > 1 {
        return Err(Error::usage(
            "--via applies to a single target; this check has several",
        ));
    }
    let stdin_password = if args.password_stdin {
        Some(stdin_password()?)
    } else {
        None
    };
    found
        .into_iter()
        .map(|(label, kind, target, url_iam)| {
            let login = if args.iam || url_iam {
                Login::Iam
            } else {
                let var = kind.password_env();
                let secret = stdin_password.clone().or_else(|| env(var).map(Secret::new));
                Login::Password(secret.ok_or_else(|| {
                    Error::usage(format!(
                        "no password for {label}: pass --iam (or ?iam=true), --password-stdin, or set {var}"
                    ))
                })?)
            };
            Ok(Item {
                label,
                kind,
                target,
                login,
            })
        })
        .collect()
}

fn read_target_file(file: &Path) -> Result<Vec<String>> {
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

/// Checks a target, retrying transient failures until `--wait` ends.
async fn check_with_retries(item: &Item, settings: &Settings) -> Report {
    let started = Instant::now();
    let mut attempt = 0_u32;
    loop {
        attempt += 1;
        let mut report = check_once(item, settings).await;
        report.attempts = attempt;
        let Some(wait) = settings.wait else {
            return report;
        };
        if report.status != "fail" || !(settings.wait_all || report.is_transient()) {
            return report;
        }
        let elapsed = started.elapsed();
        let pause = backoff(attempt);
        if elapsed + pause >= wait {
            return report;
        }
        tracing::info!(
            "{}: attempt {attempt} failed at {}: {}; next try in {:.1} s",
            item.label,
            report.stage.unwrap_or("?"),
            crate::text::Untrusted(report.error.as_deref().unwrap_or("?")),
            pause.as_secs_f64()
        );
        tokio::time::sleep(pause).await;
    }
}

/// 250 ms doubling to at most 5 s, with up to 25% random jitter.
fn backoff(attempt: u32) -> Duration {
    let base = Duration::from_millis(250) * 2_u32.pow(attempt.saturating_sub(1).min(5));
    let base = base.min(Duration::from_secs(5));
    let mut byte = [0_u8; 1];
    let jitter = if aws_lc_rs::rand::fill(&mut byte).is_ok() {
        base / 4 * u32::from(byte[0]) / 255
    } else {
        Duration::ZERO
    };
    base + jitter
}

/// One pass through the stages.
pub(crate) async fn check_once(item: &Item, settings: &Settings) -> Report {
    let start = Instant::now();
    let target = &item.target;
    let mut run = Run::new(item, start);
    let budget = target.connect_timeout;
    let remaining = || budget.saturating_sub(start.elapsed());

    // DNS
    let t = Instant::now();
    let addrs = match within(remaining(), "DNS resolution", target.resolve_dial()).await {
        Ok(a) => {
            run.ok("dns", t, Some(join_addrs(&a)));
            a
        }
        Err(e) => {
            run.fail("dns", t, &e.into());
            return run.finish(settings);
        }
    };

    // TCP
    let t = Instant::now();
    let stream = match within(remaining(), "TCP connect", engine::tcp_connect(&addrs)).await {
        Ok(s) => {
            let peer = s.peer_addr().map(|a| a.to_string()).ok();
            run.ok("tcp", t, peer);
            s
        }
        Err(e) => {
            run.fail("tcp", t, &e.into());
            return run.finish(settings);
        }
    };

    // TLS, with rdsconn's verifier
    let t = Instant::now();
    let peer = Arc::new(PeerChain::default());
    let upgrade = probe::upgrade(
        item.kind,
        stream,
        target.host.as_str(),
        &settings.policy,
        &peer,
    );
    match within(remaining(), "TLS handshake", upgrade).await {
        Ok(p) => {
            run.report.tls_protocol.clone_from(&p.protocol);
            run.report.tls_cipher.clone_from(&p.cipher);
            run.report.certificate = p.leaf.map(|c| Certificate {
                days_left: days_left(c.not_after_unix),
                subject: c.subject,
                sans: c.sans,
                issuer: c.issuer,
                not_after: c.not_after,
            });
            let detail = run.report.certificate.as_ref().map(|c| {
                format!(
                    "{} (issuer {}, {} days left)",
                    c.subject, c.issuer, c.days_left
                )
            });
            run.ok("tls", t, detail);
        }
        Err(e) => {
            run.fail("tls", t, &e.into());
            return run.finish(settings);
        }
    }

    session_stages(item, settings, &mut run, remaining()).await;
    run.finish(settings)
}

/// Authentication (a fresh connection through the driver) and the query.
async fn session_stages(item: &Item, settings: &Settings, run: &mut Run, remaining: Duration) {
    let target = &item.target;
    let t = Instant::now();
    let auth = match &item.login {
        Login::Iam => {
            let minted =
                crate::iam::mint(&settings.global, &target.host, target.port, &target.user);
            match minted.await {
                Ok(m) => Auth::IamToken(Secret::new(m.token)),
                Err(e) => {
                    run.fail("auth", t, &e);
                    return;
                }
            }
        }
        Login::Password(p) => Auth::Password(p.clone()),
    };
    let mut bounded = target.clone();
    bounded.connect_timeout = remaining
        .saturating_sub(t.elapsed())
        .max(Duration::from_millis(1));
    let mut session = match engine::for_kind(item.kind)
        .connect(&bounded, &auth, &settings.policy)
        .await
    {
        Ok(s) => {
            run.ok(
                "auth",
                t,
                Some(format!("{} as {}", auth.describe(), target.user)),
            );
            s
        }
        Err(e) => {
            run.fail("auth", t, &e.into());
            return;
        }
    };

    let t = Instant::now();
    let result = session.execute(&settings.query).await;
    session.close().await;
    match result {
        Ok(sets) => {
            let rows: usize = sets.iter().map(|s| s.rows.len()).sum();
            run.ok("query", t, Some(format!("{rows} row(s)")));
        }
        Err(e) => {
            run.fail("query", t, &e.into());
        }
    }
}

fn join_addrs(addrs: &[std::net::SocketAddr]) -> String {
    addrs
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

fn days_left(not_after: i64) -> i64 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    (not_after - now).div_euclid(86_400)
}

/// A report being filled in, stage by stage.
struct Run {
    report: Report,
    start: Instant,
}

impl Run {
    fn new(item: &Item, start: Instant) -> Self {
        Self {
            report: Report::new(item),
            start,
        }
    }

    fn ok(&mut self, name: &'static str, since: Instant, detail: Option<String>) {
        self.report.stages.push(Stage {
            name,
            status: "ok",
            duration_ms: Some(ms(since)),
            detail,
        });
    }

    fn fail(&mut self, name: &'static str, since: Instant, err: &Error) {
        let message = err.one_line();
        self.report.stages.push(Stage {
            name,
            status: "fail",
            duration_ms: Some(ms(since)),
            detail: Some(message.clone()),
        });
        self.report.status = "fail";
        self.report.stage = Some(name);
        self.report.exit_code = err.category().exit_code();
        self.report.error = Some(message);
        self.report.hint = err.hint().map(str::to_string);
    }

    fn finish(self, settings: &Settings) -> Report {
        let mut report = self.report;
        for name in STAGES.iter().skip(report.stages.len()) {
            report.stages.push(Stage {
                name,
                status: "skipped",
                duration_ms: None,
                detail: None,
            });
        }
        if report.status == "ok"
            && let Some(c) = &report.certificate
            && c.days_left < settings.warn_days
        {
            report.status = "warn";
            report.error = Some(format!(
                "the server certificate expires in {} days ({})",
                c.days_left, c.not_after
            ));
            report.hint = Some(
                "rotate the instance's CA / certificate (RDS: modify the DB instance's CA)".into(),
            );
        }
        report.total_ms = ms(self.start);
        report
    }
}

impl Report {
    /// A passing report with no stages yet.
    fn new(item: &Item) -> Self {
        Self {
            target: item.label.clone(),
            engine: item.kind,
            endpoint: item.target.endpoint(),
            dial_address: item.target.dial_address(),
            status: "ok",
            stage: None,
            exit_code: 0,
            error: None,
            hint: None,
            total_ms: 0.0,
            attempts: 1,
            tls_protocol: None,
            tls_cipher: None,
            certificate: None,
            stages: Vec::new(),
        }
    }

    fn interrupted(item: &Item) -> Self {
        Self {
            status: "interrupted",
            exit_code: INTERRUPTED,
            error: Some("interrupted before the check finished".into()),
            attempts: 0,
            ..Self::new(item)
        }
    }

    /// Worth retrying under `--wait`: the network, not the server's answer
    /// (DNS and TCP failures and timeouts are all network failures).
    fn is_transient(&self) -> bool {
        self.exit_code == Category::Network.exit_code()
    }
}

/// Worst first: network, TLS, authentication, AWS, query.
/// How bad an exit code is, for "the worst failure": 4 > 5 > 6 > 3 > 1.
pub(crate) fn severity(code: u8) -> u8 {
    match code {
        4 => 5,
        5 => 4,
        6 => 3,
        3 => 2,
        1 => 1,
        _ => 0,
    }
}

/// SIGINT and SIGTERM, each ending the run with a partial report.
struct StopSignals {
    int: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
}

impl StopSignals {
    fn install() -> Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        let failed = |e| Error::new(Category::Runtime, e).context("installing signal handlers");
        Ok(Self {
            int: signal(SignalKind::interrupt()).map_err(failed)?,
            term: signal(SignalKind::terminate()).map_err(failed)?,
        })
    }

    /// The exit code of the first signal to come.
    async fn recv(&mut self) -> u8 {
        tokio::select! {
            _ = self.int.recv() => INTERRUPTED,
            _ = self.term.recv() => TERMINATED,
        }
    }
}

fn summarize(reports: &[Report], interrupted: Option<u8>, strict: bool) -> Summary {
    let failed = reports.iter().filter(|r| r.status == "fail").count();
    let warnings = reports.iter().filter(|r| r.status == "warn").count();
    let passed = reports.iter().filter(|r| r.status == "ok").count();
    let worst = reports
        .iter()
        .filter(|r| r.status == "fail")
        .map(|r| r.exit_code)
        .max_by_key(|c| severity(*c));
    let exit_code = if let Some(signal) = interrupted {
        signal
    } else if let Some(code) = worst {
        code
    } else if strict && warnings > 0 {
        Category::Tls.exit_code()
    } else {
        0
    };
    Summary {
        targets: reports.len(),
        passed: passed + if strict { 0 } else { warnings },
        warnings,
        failed,
        interrupted: interrupted.is_some(),
        exit_code,
    }
}

fn print(format: OutputFormat, reports: &[Report], summary: &Summary) -> Result<()> {
    if format == OutputFormat::Json {
        return output::json(&Document {
            targets: reports,
            summary,
        });
    }
    let rows: Vec<Vec<String>> = reports
        .iter()
        .map(|r| {
            vec![
                r.status.to_uppercase(),
                r.target.clone(),
                r.stage.unwrap_or("-").to_string(),
                format!("{:.1} ms", r.total_ms),
                r.error.clone().unwrap_or_default(),
            ]
        })
        .collect();
    let mut text = output::grid(&["STATUS", "TARGET", "STAGE", "TIME", "REASON"], &rows);
    let _ = write!(
        text,
        "{} target(s): {} passed, {} warning(s), {} failed{}",
        summary.targets,
        summary.passed,
        summary.warnings,
        summary.failed,
        if summary.interrupted {
            " (interrupted)"
        } else {
            ""
        }
    );
    output::line(&text)
}
