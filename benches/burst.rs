//! Benchmark: a login burst through `rdsconn proxy` (PostgreSQL, password
//! logins, so every upstream login is a TLS handshake plus SCRAM-SHA-256)
//! against the test harness's local server.
//!
//! - `pgbench -C -S`: a new connection for every transaction, 8 clients,
//!   for SECONDS: connections per second and pgbench's average connection
//!   time.
//! - 200 clients connecting at once (tokio-postgres): time until all are
//!   logged in and have answered `SELECT 1`, and each login's latency.
//! - Meanwhile, one session opened before the burst runs `SELECT 1` in a
//!   loop: its p50/p99/max latency while the 200 log in, next to the same
//!   loop's figures with nothing else going on.
//!
//! Rows: direct verified TLS (the reference: every client does its own TLS
//! and SCRAM), the proxy with `--threads 1`, the proxy with its default
//! (one worker per core), and, when `RDSCONN_BASELINE` names another rdsconn
//! binary (an earlier build), that build's proxy with its own defaults.
//!
//! `scripts/bench-burst.sh [SECONDS] [ROUNDS]` (= `cargo bench --bench
//! burst -- SECONDS ROUNDS`; ROUNDS bursts per route) prints the Markdown
//! for BENCHMARKS.md. Needs root, like the tests.

#[path = "../tests/support/mod.rs"]
mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use support::bench::{percentile, run_pgbench};
use support::pki::ENDPOINT;
use support::proxy::ProxyProc;
use support::server::{APP_PASSWORD, Variant, pki};
use support::{BINARY, TestEnv, pg};

const BURST: usize = 200;
const PGBENCH_CLIENTS: usize = 8;

/// `pgbench -n -S -C`: (transactions per second, average connection ms).
fn pgbench_connect(conninfo: &str, seconds: u64) -> (f64, f64) {
    let text = run_pgbench(
        &[
            "-n",
            "-S",
            "-C",
            "-c",
            &PGBENCH_CLIENTS.to_string(),
            "-j",
            "2",
            "-T",
            &seconds.to_string(),
        ],
        conninfo,
    );
    let number = |prefix: &str| -> f64 {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(prefix))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {prefix:?} in pgbench output:\n{text}"))
    };
    (number("tps = "), number("average connection time = "))
}

/// How a client reaches the server: straight, over verified TLS, or
/// through a proxy in plain protocol.
#[derive(Clone)]
enum Route {
    Direct {
        port: u16,
        tls: tokio_postgres_rustls::MakeRustlsConnect,
    },
    Proxy {
        port: u16,
    },
}

impl Route {
    async fn connect(&self) -> tokio_postgres::Client {
        let mut config = tokio_postgres::Config::new();
        config
            .user("app")
            .dbname("appdb")
            .connect_timeout(Duration::from_mins(2));
        match self {
            Self::Direct { port, tls } => {
                config
                    .host(ENDPOINT)
                    .hostaddr(std::net::Ipv4Addr::LOCALHOST.into())
                    .port(*port)
                    .password(APP_PASSWORD)
                    .ssl_mode(tokio_postgres::config::SslMode::Require);
                let (client, conn) = config.connect(tls.clone()).await.expect("direct connect");
                tokio::spawn(conn);
                client
            }
            Self::Proxy { port } => {
                config
                    .host("127.0.0.1")
                    .port(*port)
                    .ssl_mode(tokio_postgres::config::SslMode::Disable);
                let (client, conn) = config
                    .connect(tokio_postgres::NoTls)
                    .await
                    .expect("proxied connect");
                tokio::spawn(conn);
                client
            }
        }
    }
}

/// The open session's `SELECT 1` latencies (ms) over a window.
struct Loop {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<Vec<(Instant, f64)>>,
}

impl Loop {
    async fn start(route: &Route) -> Self {
        let client = route.connect().await;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let task = tokio::spawn(async move {
            let mut seen = Vec::new();
            while !flag.load(Ordering::Relaxed) {
                let t = Instant::now();
                client.simple_query("SELECT 1").await.expect("open session");
                seen.push((t, t.elapsed().as_secs_f64() * 1000.0));
            }
            seen
        });
        Self { stop, task }
    }

    async fn finish(self) -> Vec<(Instant, f64)> {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.expect("loop task")
    }
}

/// p50 / p99 / max of the samples taken in `[from, to)`.
fn window(samples: &[(Instant, f64)], from: Instant, to: Instant) -> (f64, f64, f64) {
    let mut v: Vec<f64> = samples
        .iter()
        .filter(|(t, _)| *t >= from && *t < to)
        .map(|(_, ms)| *ms)
        .collect();
    v.sort_by(f64::total_cmp);
    (
        percentile(&v, 0.5),
        percentile(&v, 0.99),
        v.last().copied().unwrap_or(f64::NAN),
    )
}

/// The burst: BURST clients at once, with an open session's loop running.
async fn burst(route: &Route) -> String {
    let open = Loop::start(route).await;
    let quiet_from = Instant::now();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..BURST {
        let route = route.clone();
        tasks.push(tokio::spawn(async move {
            let t = Instant::now();
            let client = route.connect().await;
            client.simple_query("SELECT 1").await.expect("burst query");
            (client, t.elapsed().as_secs_f64() * 1000.0)
        }));
    }
    let mut clients = Vec::with_capacity(BURST);
    let mut logins = Vec::with_capacity(BURST);
    for t in tasks {
        let (client, ms) = t.await.expect("burst task");
        clients.push(client);
        logins.push(ms);
    }
    let all_in = start.elapsed();
    let samples = open.finish().await;
    drop(clients);
    settle(route).await;
    logins.sort_by(f64::total_cmp);
    let (q50, q99, qmax) = window(&samples, quiet_from, start);
    let (b50, b99, bmax) = window(&samples, start, start + all_in);
    format!(
        "{:.2} | {:.0} | {:.0} | {q50:.2} / {q99:.2} / {qmax:.2} | {b50:.2} / {b99:.2} / {bmax:.2}",
        all_in.as_secs_f64(),
        percentile(&logins, 0.5),
        percentile(&logins, 0.99),
    )
}

/// Waits until the burst's server sessions have ended (the server's
/// connection limit is shared by the runs).
async fn settle(route: &Route) {
    let client = route.connect().await;
    let start = Instant::now();
    loop {
        let rows = client
            .simple_query("SELECT count(*) FROM pg_stat_activity WHERE usename = 'app'")
            .await
            .expect("counting sessions");
        let n: u64 = rows
            .iter()
            .find_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).and_then(|v| v.parse().ok()),
                _ => None,
            })
            .unwrap_or(u64::MAX);
        if n <= 2 {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_mins(2),
            "{n} sessions linger"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn tls_connector(ca: &str) -> tokio_postgres_rustls::MakeRustlsConnect {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    let pem = std::fs::read(ca).expect("test CA");
    for cert in rustls::pki_types::pem::PemObject::pem_slice_iter(&pem) {
        roots.add(cert.expect("test CA PEM")).expect("test CA");
    }
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    tokio_postgres_rustls::MakeRustlsConnect::new(config)
}

fn main() {
    let mut args = std::env::args().skip(1).filter(|a| !a.starts_with("--"));
    let seconds: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(20);
    let rounds: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(3);
    let env = TestEnv::new();
    let ca = pki().ca_file.display().to_string();
    let pg_port = pg::server(Variant::Good).port;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let via = format!("127.0.0.1:{pg_port}");
    let direct_info = format!(
        "host={ENDPOINT} hostaddr=127.0.0.1 port={pg_port} user=app dbname=appdb \
         sslmode=verify-full sslrootcert={ca}"
    );

    // pgbench's tables (scale 1), as `scripts/bench-proxy.sh` makes them.
    run_pgbench(&["-i", "-q", "-s", "1"], &direct_info);

    let baseline = std::env::var("RDSCONN_BASELINE").ok();
    let mut builds: Vec<(String, String, Vec<&str>)> = vec![
        (
            "proxy --threads 1".into(),
            BINARY.into(),
            vec!["--threads", "1"],
        ),
        (
            "proxy (default: one thread per core)".into(),
            BINARY.into(),
            vec![],
        ),
    ];
    if let Some(b) = &baseline {
        builds.insert(0, ("proxy, earlier build".into(), b.clone(), vec![]));
    }

    let mut connect_rows = Vec::new();
    let mut burst_rows = Vec::new();
    let (tps, conn_ms) = pgbench_connect(&direct_info, seconds);
    connect_rows.push(format!(
        "| direct verified TLS (reference) | {tps:.0} | {conn_ms:.2} |"
    ));
    let route = Route::Direct {
        port: pg_port,
        tls: tls_connector(&ca),
    };
    for round in 1..=rounds {
        burst_rows.push(format!(
            "| {round}: direct verified TLS (reference) | {} |",
            rt.block_on(burst(&route))
        ));
    }
    for (label, binary, extra) in &builds {
        let mut args = vec!["postgres", "-h", ENDPOINT, "--via", &via];
        args.extend_from_slice(extra);
        let proxy = ProxyProc::start_binary(&env, binary, &args, &[("PGPASSWORD", APP_PASSWORD)]);
        let info = format!(
            "host=127.0.0.1 port={} user=app dbname=appdb sslmode=disable",
            proxy.port()
        );
        let (tps, conn_ms) = pgbench_connect(&info, seconds);
        connect_rows.push(format!("| {label} | {tps:.0} | {conn_ms:.2} |"));
        let route = Route::Proxy { port: proxy.port() };
        for round in 1..=rounds {
            burst_rows.push(format!(
                "| {round}: {label} | {} |",
                rt.block_on(burst(&route))
            ));
        }
    }

    println!(
        "### pgbench -C -S (a new connection per transaction), {PGBENCH_CLIENTS} clients, {seconds} s\n\n\
         | route | TPS (= logins/s) | avg connection ms |\n|---|---|---|"
    );
    for r in &connect_rows {
        println!("{r}");
    }
    println!(
        "\n### {BURST} clients connecting at once ({rounds} rounds); an open session's SELECT 1 meanwhile\n\n\
         | route | all logged in, s | login p50 ms | login p99 ms | open session quiet p50/p99/max ms | open session during burst p50/p99/max ms |\n|---|---|---|---|---|---|"
    );
    for r in &burst_rows {
        println!("{r}");
    }
}
