//! Prometheus metrics of the proxy (`--prometheus`, `/metrics`, text
//! format 0.0.4), names prefixed `rdsconn_`. Labels are low-cardinality:
//! engine, listener, result, reason, direction — never a user name or a
//! client address. Recording is a few atomic operations; rendering happens
//! only when `/metrics` is read.

use std::sync::LazyLock;
use std::time::Duration;

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::net::ConnectError;
use crate::target::EngineKind;
use crate::tls::TlsFailure;

/// Login latencies: 1 ms to 10 s.
const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

pub(crate) struct Metrics {
    registry: Registry,
    clients_open: IntGaugeVec,
    clients_total: IntCounterVec,
    logins: IntCounterVec,
    login_seconds: HistogramVec,
    tokens: IntCounterVec,
    token_seconds: HistogramVec,
    secret_reads: IntCounterVec,
    bytes: IntCounterVec,
    refused: IntCounterVec,
    cancelled: IntCounterVec,
    pool: PoolMetrics,
}

/// Makes series and registers them.
struct Registrar<'a>(&'a Registry);

impl Registrar<'_> {
    fn counter(
        &self,
        name: &str,
        help: &str,
        labels: &[&str],
    ) -> prometheus::Result<IntCounterVec> {
        let c = IntCounterVec::new(Opts::new(name, help), labels)?;
        self.0.register(Box::new(c.clone()))?;
        Ok(c)
    }

    fn gauge(&self, name: &str, help: &str, labels: &[&str]) -> prometheus::Result<IntGaugeVec> {
        let g = IntGaugeVec::new(Opts::new(name, help), labels)?;
        self.0.register(Box::new(g.clone()))?;
        Ok(g)
    }

    /// Latencies, in [`LATENCY_BUCKETS`].
    fn histogram(
        &self,
        name: &str,
        help: &str,
        labels: &[&str],
    ) -> prometheus::Result<HistogramVec> {
        let h = HistogramVec::new(
            HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS.to_vec()),
            labels,
        )?;
        self.0.register(Box::new(h.clone()))?;
        Ok(h)
    }
}

/// The pools' series (`--pool-mode`), summed over a target's pools.
struct PoolMetrics {
    servers: IntGaugeVec,
    waiting: IntGaugeVec,
    wait_seconds: HistogramVec,
    timeouts: IntCounterVec,
    closed: IntCounterVec,
    resets: IntCounterVec,
    pins: IntCounterVec,
}

impl PoolMetrics {
    fn new(registry: &Registry) -> prometheus::Result<Self> {
        let r = Registrar(registry);
        let servers = r.gauge(
            "rdsconn_pool_server_connections",
            "Pooled server connections by state: active (lent to a client), idle, opening.",
            &["target", "engine", "state"],
        )?;
        let waiting = r.gauge(
            "rdsconn_pool_clients_waiting",
            "Clients waiting for a pooled server connection.",
            &["target", "engine"],
        )?;
        Ok(Self {
            servers,
            waiting,
            wait_seconds: r.histogram(
                "rdsconn_pool_wait_seconds",
                "How long clients waited for a pooled server connection.",
                &["target", "engine"],
            )?,
            timeouts: r.counter(
                "rdsconn_pool_timeouts_total",
                "Clients that got no server connection within --pool-timeout.",
                &["target", "engine"],
            )?,
            closed: r.counter(
                "rdsconn_pool_server_connections_closed_total",
                "Pooled server connections closed: idle_timeout, lifetime, broken, reset_failed.",
                &["target", "engine", "reason"],
            )?,
            resets: r.counter(
                "rdsconn_pool_resets_total",
                "Server connections reset for the next client, by result (ok, failed).",
                &["target", "engine", "result"],
            )?,
            pins: r.counter(
                "rdsconn_pool_pins_total",
                "Transaction-pooled clients pinned to their server connection, by the statement's kind.",
                &["target", "engine", "reason"],
            )?,
        })
    }
}

/// One pool's handles on the pool series: the gauges move by what changed
/// in this pool, so that a target's pools add up.
pub(crate) struct PoolGauges {
    active: IntGauge,
    idle: IntGauge,
    opening: IntGauge,
    waiting: IntGauge,
    last: std::sync::Mutex<[i64; 4]>,
    wait_seconds: Histogram,
    timeouts: IntCounter,
    closed: IntCounterVec,
    labels: [String; 2],
}

impl PoolGauges {
    /// The pool's counts now.
    pub(crate) fn set(&self, active: usize, idle: usize, opening: usize, waiting: usize) {
        let now = [active, idle, opening, waiting].map(|n| i64::try_from(n).unwrap_or(i64::MAX));
        let mut last = self
            .last
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for (i, g) in [&self.active, &self.idle, &self.opening, &self.waiting]
            .into_iter()
            .enumerate()
        {
            g.add(now[i] - last[i]);
        }
        *last = now;
    }

    /// A client's wait for a server connection (and whether it gave up).
    pub(crate) fn waited(&self, took: Duration, timed_out: bool) {
        self.wait_seconds.observe(took.as_secs_f64());
        if timed_out {
            self.timeouts.inc();
        }
    }

    /// A server connection closed by the pool: `idle_timeout`,
    /// `lifetime`, `broken`, `reset_failed`.
    pub(crate) fn closed(&self, reason: &str) {
        self.closed
            .with_label_values(&[&self.labels[0], &self.labels[1], reason])
            .inc();
    }
}

impl Drop for PoolGauges {
    fn drop(&mut self) {
        self.set(0, 0, 0, 0);
    }
}

/// Why a client was turned away before it reached the database.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    LocalPassword,
    WrongUser,
    MaxConnections,
    LoginDeadline,
}

impl Refusal {
    const fn label(self) -> &'static str {
        match self {
            Self::LocalPassword => "local_password",
            Self::WrongUser => "wrong_user",
            Self::MaxConnections => "max_connections",
            Self::LoginDeadline => "login_deadline",
        }
    }
}

static METRICS: LazyLock<Option<Metrics>> = LazyLock::new(|| match Metrics::new() {
    Ok(m) => Some(m),
    Err(e) => {
        tracing::warn!("setting up the metrics: {e}");
        None
    }
});

/// The process's metrics (`None` only if the registry refused them).
pub(crate) fn metrics() -> Option<&'static Metrics> {
    METRICS.as_ref()
}

/// `/metrics`' body.
pub(crate) fn render() -> String {
    let Some(m) = metrics() else {
        return String::new();
    };
    let mut out = Vec::new();
    if let Err(e) = TextEncoder::new().encode(&m.registry.gather(), &mut out) {
        tracing::warn!("rendering the metrics: {e}");
    }
    String::from_utf8(out).unwrap_or_default()
}

fn engine(kind: EngineKind) -> &'static str {
    kind.name()
}

/// Which proxy target: a `--config` table's name, else `default`.
pub(crate) fn target(name: Option<&str>) -> &str {
    name.unwrap_or("default")
}

impl Metrics {
    fn new() -> prometheus::Result<Self> {
        let registry = Registry::new();
        let r = Registrar(&registry);
        let clients_open = r.gauge(
            "rdsconn_client_connections_open",
            "Client connections open now.",
            &["target", "engine", "listener"],
        )?;
        let build = r.gauge(
            "rdsconn_build_info",
            "rdsconn's version and commit (always 1).",
            &["version", "commit"],
        )?;
        build
            .with_label_values(&[env!("CARGO_PKG_VERSION"), crate::build_info::BUILD.commit])
            .set(1);
        let pool = PoolMetrics::new(&registry)?;
        Ok(Self {
            pool,
            clients_open,
            clients_total: r.counter(
                "rdsconn_client_connections_total",
                "Client connections accepted.",
                &["target", "engine", "listener"],
            )?,
            logins: r.counter(
                "rdsconn_upstream_logins_total",
                "Upstream logins by result: ok, auth_refused, tls_refused (with its reason), network, error.",
                &["target", "engine", "result", "reason"],
            )?,
            login_seconds: r.histogram(
                "rdsconn_upstream_login_seconds",
                "Upstream connect, TLS and login time (retries included).",
                &["target", "engine"],
            )?,
            tokens: r.counter(
                "rdsconn_iam_tokens_minted_total",
                "IAM auth tokens minted for upstream logins.",
                &["result"],
            )?,
            token_seconds: r.histogram(
                "rdsconn_iam_token_mint_seconds",
                "Time to mint an IAM auth token (credentials included).",
                &[],
            )?,
            secret_reads: r.counter(
                "rdsconn_secrets_manager_reads_total",
                "Secrets Manager reads by result.",
                &["result"],
            )?,
            bytes: r.counter(
                "rdsconn_client_bytes_total",
                "Bytes relayed: up (client to server) and down.",
                &["target", "engine", "direction"],
            )?,
            refused: r.counter(
                "rdsconn_client_logins_refused_total",
                "Clients turned away: local_password, wrong_user, max_connections, login_deadline.",
                &["target", "engine", "reason"],
            )?,
            cancelled: r.counter(
                "rdsconn_sessions_cancelled_total",
                "Cancel requests (PostgreSQL CancelRequest, MySQL KILL QUERY) passed to the server.",
                &["engine"],
            )?,
            registry,
        })
    }

    pub(crate) fn client_opened(&self, target: &str, kind: EngineKind, listener: &str) {
        self.clients_open
            .with_label_values(&[target, engine(kind), listener])
            .inc();
        self.clients_total
            .with_label_values(&[target, engine(kind), listener])
            .inc();
    }

    pub(crate) fn client_closed(&self, target: &str, kind: EngineKind, listener: &str) {
        self.clients_open
            .with_label_values(&[target, engine(kind), listener])
            .dec();
    }

    /// An upstream login's outcome and how long it took.
    pub(crate) fn upstream_login(
        &self,
        target: &str,
        kind: EngineKind,
        outcome: Result<(), &ConnectError>,
        took: Duration,
    ) {
        let (result, reason) = match outcome {
            Ok(()) => ("ok", ""),
            Err(e) => classify(e),
        };
        self.logins
            .with_label_values(&[target, engine(kind), result, reason])
            .inc();
        self.login_seconds
            .with_label_values(&[target, engine(kind)])
            .observe(took.as_secs_f64());
    }

    pub(crate) fn token_minted(&self, ok: bool, took: Duration) {
        self.tokens
            .with_label_values(&[if ok { "ok" } else { "error" }])
            .inc();
        self.token_seconds
            .with_label_values::<&str>(&[])
            .observe(took.as_secs_f64());
    }

    pub(crate) fn secret_read(&self, ok: bool) {
        self.secret_reads
            .with_label_values(&[if ok { "ok" } else { "error" }])
            .inc();
    }

    pub(crate) fn relayed(&self, target: &str, kind: EngineKind, up: u64, down: u64) {
        self.bytes
            .with_label_values(&[target, engine(kind), "up"])
            .inc_by(up);
        self.bytes
            .with_label_values(&[target, engine(kind), "down"])
            .inc_by(down);
    }

    pub(crate) fn refused(&self, target: &str, kind: EngineKind, why: Refusal) {
        self.refused
            .with_label_values(&[target, engine(kind), why.label()])
            .inc();
    }

    /// Handles on the pool series for one pool of `target`.
    pub(crate) fn pool_gauges(&self, target: &str, kind: EngineKind) -> PoolGauges {
        let p = &self.pool;
        let state = |s: &str| p.servers.with_label_values(&[target, engine(kind), s]);
        PoolGauges {
            active: state("active"),
            idle: state("idle"),
            opening: state("opening"),
            waiting: p.waiting.with_label_values(&[target, engine(kind)]),
            last: std::sync::Mutex::new([0; 4]),
            wait_seconds: p.wait_seconds.with_label_values(&[target, engine(kind)]),
            timeouts: p.timeouts.with_label_values(&[target, engine(kind)]),
            closed: p.closed.clone(),
            labels: [target.to_string(), engine(kind).to_string()],
        }
    }

    /// A server connection reset for the next client.
    pub(crate) fn pool_reset(&self, target: &str, kind: EngineKind, ok: bool) {
        self.pool
            .resets
            .with_label_values(&[target, engine(kind), if ok { "ok" } else { "failed" }])
            .inc();
    }

    /// A transaction-pooled client pinned to its server connection.
    pub(crate) fn pool_pin(&self, target: &str, kind: EngineKind, reason: &str) {
        self.pool
            .pins
            .with_label_values(&[target, engine(kind), reason])
            .inc();
    }

    pub(crate) fn cancelled(&self, kind: EngineKind) {
        self.cancelled.with_label_values(&[engine(kind)]).inc();
    }
}

/// An upstream failure as (result, reason) labels.
fn classify(e: &ConnectError) -> (&'static str, &'static str) {
    match e {
        ConnectError::Auth { .. } | ConnectError::AuthMethod { .. } => ("auth_refused", ""),
        ConnectError::Tls(f) => (
            "tls_refused",
            match f {
                TlsFailure::WrongName { .. } => "wrong_name",
                TlsFailure::UnknownCa { .. } => "unknown_ca",
                TlsFailure::Expired { .. } => "expired",
                TlsFailure::NotYetValid => "not_yet_valid",
                TlsFailure::Revoked => "revoked",
                TlsFailure::NoTls => "no_tls",
                TlsFailure::Other(_) => "other",
            },
        ),
        ConnectError::Dns { .. }
        | ConnectError::Tcp { .. }
        | ConnectError::Network { .. }
        | ConnectError::Timeout { .. }
        | ConnectError::Tunnel { .. } => ("network", ""),
        _ => ("error", ""),
    }
}
