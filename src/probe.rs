//! The staged reachability probe behind `rdsconn check` and `rdsconn
//! doctor`. Each target goes through DNS, TCP, TLS (rdsconn's own probe, so
//! the handshake is timed and the certificate inspected on its own), then
//! authentication and the query through the engine driver on a second
//! connection (the drivers do TLS and authentication in one step). The
//! first failing stage stops the target; its category gives the exit code.
//! `--wait` retries network failures with backoff.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::net::Stream;
use mysql_common::constants::{CapabilityFlags, MariadbCapabilities};
use serde::Serialize;
use tokio::io::AsyncWriteExt;

use crate::cli::GlobalArgs;
use crate::engine;
use crate::error::{Category, Error};
use crate::net::{ConnectError, TlsSummary, ms, tls_handshake, within};
use crate::output::Status;
use crate::secret::{Auth, Secret};
use crate::target::{EngineKind, Target};
use crate::tls::{PeerChain, TlsPolicy};
use crate::wire::mysql;

/// Exit code of a target whose check Ctrl-C (SIGINT) cut short.
const INTERRUPTED: u8 = crate::signals::Stop::Interrupt.exit_code();

/// The stages, in order; the JSON names are part of the interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Step {
    /// `--via ssh://` / `socks5://`: the tunnel set up (only then).
    Tunnel,
    Dns,
    Tcp,
    Tls,
    Auth,
    Query,
}

impl Step {
    const ALL: [Self; 5] = [Self::Dns, Self::Tcp, Self::Tls, Self::Auth, Self::Query];

    pub(crate) const fn name(self) -> &'static str {
        match self {
            Self::Tunnel => "tunnel",
            Self::Dns => "dns",
            Self::Tcp => "tcp",
            Self::Tls => "tls",
            Self::Auth => "auth",
            Self::Query => "query",
        }
    }
}

/// One target to check.
pub(crate) struct Item {
    pub label: String,
    pub kind: EngineKind,
    pub target: Target,
    pub login: Login,
    /// The TLS mode and the roots for this endpoint's class.
    pub policy: TlsPolicy,
    /// The region, profile and CA bundle for this target (a named target
    /// may have its own; else the command line's).
    pub global: GlobalArgs,
}

/// How a target authenticates.
pub(crate) enum Login {
    /// A token minted right before the `auth` stage.
    Iam,
    Password(Secret),
    /// A password from Secrets Manager, read again once if refused.
    Secret(crate::secrets::FromSecret),
    /// No password for this target: its `auth` stage fails with this
    /// (exit 2), while the other targets still run.
    Missing(String),
}

#[derive(Clone, Debug, Serialize)]
pub(crate) struct Stage {
    pub name: Step,
    /// `ok`, `fail` or `skipped`.
    pub status: Status,
    pub duration_ms: Option<f64>,
    pub detail: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub(crate) struct Certificate {
    subject: String,
    sans: Vec<String>,
    issuer: String,
    not_after: String,
    days_left: i64,
}

impl From<crate::tls::CertSummary> for Certificate {
    fn from(c: crate::tls::CertSummary) -> Self {
        Self {
            days_left: days_left(c.not_after_unix),
            subject: c.subject,
            sans: c.sans,
            issuer: c.issuer,
            not_after: c.not_after,
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub(crate) struct Report {
    pub target: String,
    engine: EngineKind,
    endpoint: String,
    dial_address: String,
    /// `ok`, `warn`, `fail` or `interrupted`.
    pub status: Status,
    /// The failing stage, if any.
    pub stage: Option<Step>,
    pub exit_code: u8,
    /// What kind of failure, when the target failed.
    #[serde(skip)]
    pub failure: Option<Category>,
    pub error: Option<String>,
    pub hint: Option<String>,
    pub total_ms: f64,
    pub attempts: u32,
    tls_protocol: Option<String>,
    tls_cipher: Option<String>,
    certificate: Option<Certificate>,
    pub stages: Vec<Stage>,
}

/// What every check needs, shared by the tasks.
pub(crate) struct Settings {
    pub query: String,
    pub warn_days: i64,
    pub wait: Option<Duration>,
    pub wait_all: bool,
    /// Each failed attempt under `--wait` is a line on stderr (on a
    /// terminal, or with `-v`).
    pub progress: bool,
}

/// Checks a target, retrying transient failures until `--wait` ends.
pub(crate) async fn check_with_retries(
    item: &Item,
    settings: &Settings,
    progress: &std::sync::Mutex<Option<Report>>,
) -> Report {
    let started = Instant::now();
    let mut attempt = 0_u32;
    loop {
        attempt += 1;
        let mut report = check_once(item, settings).await;
        report.attempts = attempt;
        // What an interrupted check reports for this target.
        if let Ok(mut last) = progress.lock() {
            *last = Some(report.clone());
        }
        let Some(wait) = settings.wait else {
            return report;
        };
        if report.status != Status::Fail || !(settings.wait_all || report.is_transient()) {
            return report;
        }
        let elapsed = started.elapsed();
        if elapsed >= wait {
            return report;
        }
        // The last try comes at the deadline, not a back-off before it.
        let pause = backoff(attempt).min(wait.saturating_sub(elapsed));
        if settings.progress {
            crate::output::note(format!(
                "{}: attempt {attempt} failed at {}: {}; next try in {}",
                item.label,
                report.stage.map_or("?", Step::name),
                report.error.as_deref().unwrap_or("?"),
                crate::text::seconds(pause),
            ));
        }
        tokio::time::sleep(pause).await;
    }
}

/// 250 ms doubling to at most 5 s, with up to 25% random jitter.
fn backoff(attempt: u32) -> Duration {
    let base = crate::net::doubling(
        Duration::from_millis(250),
        attempt.saturating_sub(1),
        Duration::from_secs(5),
    );
    let jitter = crate::secret::random::<1>()
        .map_or(Duration::ZERO, |[byte]| base / 4 * u32::from(byte) / 255);
    base + jitter
}

/// The DNS and TCP stages of a direct connection (`--via HOST:PORT`
/// included); `None` after a failure.
async fn direct(
    target: &Target,
    run: &mut Run,
    remaining: impl Fn() -> Duration,
) -> Option<Stream> {
    let t = Instant::now();
    let lookup = crate::net::resolve_dial(target);
    let addrs = match within(remaining(), "DNS resolution", lookup).await {
        Ok(a) => {
            run.ok(Step::Dns, t, Some(join_addrs(&a)));
            a
        }
        Err(e) => {
            run.fail(Step::Dns, t, &e.into());
            return None;
        }
    };
    let t = Instant::now();
    match within(remaining(), "TCP connect", crate::net::tcp_connect(&addrs)).await {
        Ok(s) => {
            let peer = s.peer_addr().map(|a| a.to_string()).ok();
            run.ok(Step::Tcp, t, peer);
            Some(Stream::Tcp(s))
        }
        Err(e) => {
            run.fail(Step::Tcp, t, &e.into());
            None
        }
    }
}

/// The tunnel stage (ssh started, or the SOCKS5 proxy named), then DNS
/// (done at the tunnel's far end) and TCP (a channel through it).
async fn through_tunnel(
    target: &Target,
    run: &mut Run,
    remaining: impl Fn() -> Duration,
) -> Option<Stream> {
    let t = Instant::now();
    match within(
        remaining(),
        "tunnel set-up",
        crate::net::tunnel::ensure(target),
    )
    .await
    {
        Ok(detail) => run.ok(Step::Tunnel, t, detail),
        Err(e) => {
            run.fail(Step::Tunnel, t, &e.into());
            return None;
        }
    }
    run.report.stages.push(Stage {
        name: Step::Dns,
        status: Status::Skipped,
        duration_ms: None,
        detail: Some("resolved at the tunnel's far end".into()),
    });
    let t = Instant::now();
    let connect = Box::pin(crate::net::tunnel::connect(target));
    match within(remaining(), "TCP connect through the tunnel", connect).await {
        Ok(s) => {
            run.ok(
                Step::Tcp,
                t,
                Some(format!("{} through the tunnel", target.endpoint())),
            );
            Some(s)
        }
        Err(e) => {
            run.fail(Step::Tcp, t, &e.into());
            None
        }
    }
}

/// One pass through the stages.
pub(crate) async fn check_once(item: &Item, settings: &Settings) -> Report {
    let start = Instant::now();
    let target = &item.target;
    let mut run = Run::new(item, start);
    if let Login::Missing(why) = &item.login {
        // Nothing to log in with: no connection is made for it.
        run.fail(Step::Auth, start, &crate::error::Error::usage(why.clone()));
        return run.finish(settings);
    }
    let budget = target.connect_timeout;
    let remaining = || budget.saturating_sub(start.elapsed());

    let dialed = if target.tunnel().is_some() {
        through_tunnel(target, &mut run, remaining).await
    } else {
        direct(target, &mut run, remaining).await
    };
    let Some(stream) = dialed else {
        return run.finish(settings);
    };

    // TLS, with rdsconn's verifier
    let t = Instant::now();
    let peer = Arc::new(PeerChain::default());
    let upgrade = upgrade(item.kind, stream, target.host.as_str(), &item.policy, &peer);
    match within(remaining(), "TLS handshake", upgrade).await {
        Ok(p) => {
            run.report.tls_protocol.clone_from(&p.protocol);
            run.report.tls_cipher.clone_from(&p.cipher);
            run.report.certificate = p.leaf.map(Certificate::from);
            let detail = run.report.certificate.as_ref().map(|c| {
                format!(
                    "{} (issuer {}, {} days left)",
                    c.subject, c.issuer, c.days_left
                )
            });
            run.ok(Step::Tls, t, detail);
        }
        Err(e) => {
            // What the server presented, though it failed verification.
            run.report.certificate = peer
                .get()
                .first()
                .and_then(|c| crate::tls::CertSummary::from_der(c))
                .map(Certificate::from);
            let e = crate::net::tunnel::explained(target, e).await;
            run.fail(Step::Tls, t, &e.into());
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
            let minted = crate::iam::mint(&item.global, &target.host, target.port, &target.user);
            match minted.await {
                Ok(m) => Auth::IamToken(Secret::new(m.token)),
                Err(e) => {
                    run.fail(Step::Auth, t, &e);
                    return;
                }
            }
        }
        Login::Password(p) => Auth::Password(p.clone()),
        Login::Secret(s) => Auth::Password(s.password.clone()),
        Login::Missing(_) => return,
    };
    let mut bounded = target.clone();
    bounded.connect_timeout = remaining
        .saturating_sub(t.elapsed())
        .max(Duration::from_millis(1));
    let engine = engine::for_kind(item.kind);
    let mut auth = auth;
    let secret = match &item.login {
        Login::Secret(s) => Some(s),
        _ => None,
    };
    let target_tls = (&bounded, &item.policy);
    let rereading =
        crate::secrets::connect_rereading(&item.global, engine, target_tls, &mut auth, secret);
    let connected = match rereading.await {
        Ok((connected, _)) => connected,
        Err(e) => {
            run.fail(Step::Auth, t, &e.into());
            return;
        }
    };
    let mut session = match connected {
        Ok(s) => {
            run.ok(
                Step::Auth,
                t,
                Some(format!("{} as {}", auth.describe(), target.user)),
            );
            s
        }
        Err(e) => {
            run.fail(Step::Auth, t, &e.into());
            return;
        }
    };

    let t = Instant::now();
    let result = session.execute(&settings.query).await;
    session.close().await;
    match result {
        Ok(sets) => {
            let rows: usize = sets.iter().map(|s| s.rows.len()).sum();
            run.ok(Step::Query, t, Some(format!("{rows} row(s)")));
        }
        Err(e) => {
            run.fail(Step::Query, t, &e.into());
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

    fn ok(&mut self, name: Step, since: Instant, detail: Option<String>) {
        self.report.stages.push(Stage {
            name,
            status: Status::Ok,
            duration_ms: Some(ms(since)),
            detail,
        });
    }

    fn fail(&mut self, name: Step, since: Instant, err: &Error) {
        let message = err.one_line();
        self.report.stages.push(Stage {
            name,
            status: Status::Fail,
            duration_ms: Some(ms(since)),
            detail: Some(message.clone()),
        });
        self.report.status = Status::Fail;
        self.report.stage = Some(name);
        self.report.failure = Some(err.category());
        self.report.exit_code = err.category().exit_code();
        self.report.error = Some(message);
        self.report.hint = err.hint().map(str::to_string);
    }

    fn finish(self, settings: &Settings) -> Report {
        let mut report = self.report;
        let missing: Vec<Step> = Step::ALL
            .into_iter()
            .filter(|name| !report.stages.iter().any(|s| s.name == *name))
            .collect();
        for name in missing {
            report.stages.push(Stage {
                name,
                status: Status::Skipped,
                duration_ms: None,
                detail: None,
            });
        }
        if report.status == Status::Ok
            && let Some(c) = &report.certificate
            && c.days_left < settings.warn_days
        {
            report.status = Status::Warn;
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
            status: Status::Ok,
            stage: None,
            exit_code: 0,
            failure: None,
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

    /// A target whose check a signal ended after `last`, its latest
    /// attempt: what it learned (attempts, stages, the last error) stays.
    pub(crate) fn interrupted_after(last: Self) -> Self {
        Self {
            status: Status::Interrupted,
            exit_code: INTERRUPTED,
            ..last
        }
    }

    pub(crate) fn interrupted(item: &Item) -> Self {
        Self {
            status: Status::Interrupted,
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

/// The TLS stage: asks for TLS on a connected stream the way the engine's
/// protocol does (MySQL: read the greeting, send `SSLRequest`; PostgreSQL:
/// send `SSLRequest`, read `S`), runs the handshake with rdsconn's
/// verifier and hangs up before authentication. The presented chain lands
/// in `peer`, even when verification fails.
async fn upgrade(
    kind: EngineKind,
    mut stream: Stream,
    server_name: &str,
    tls: &TlsPolicy,
    peer: &Arc<PeerChain>,
) -> Result<TlsSummary, ConnectError> {
    let mut tls_stream = match kind {
        EngineKind::Mysql => {
            let mut packets = mysql::Packets::new(stream);
            let greeting = mysql::greeting(&mut packets).await?;
            let hello = mysql::ClientHello {
                capabilities: CapabilityFlags::CLIENT_LONG_PASSWORD,
                mariadb_capabilities: MariadbCapabilities::empty(),
                max_packet: 1 << 24,
                collation: 45,
                attributes: None,
            };
            mysql::start_tls(packets, &greeting, &hello, server_name, tls, peer)
                .await?
                .packets
                .stream
        }
        EngineKind::Postgres => {
            crate::wire::postgres::postgres_ssl_request(&mut stream).await?;
            tls_handshake(stream, server_name, tls, peer).await?.0
        }
    };
    let summary = TlsSummary::of(&tls_stream, peer);
    let _ = tls_stream.shutdown().await;
    Ok(summary)
}
