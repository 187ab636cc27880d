//! Benchmark: the same load directly over verified TLS and through
//! `rdsconn proxy`, against the test harness's local servers.
//!
//! - PostgreSQL: `pgbench -S` (select-only), 8 clients, 2 threads, for
//!   SECONDS; per-transaction latencies from `pgbench --log`.
//! - MySQL: a load loop (8 `mysql_async` connections, point selects on a
//!   10 000-row table) for SECONDS; per-query latencies measured around
//!   each query.
//!
//! Direct runs verify the server certificate (libpq verify-full; the
//! MariaDB `Localhost` variant's name for `mysql_async`); the proxy verifies
//! upstream and its clients speak plain protocol on loopback. The runs
//! alternate direct / proxied, ROUNDS times; the table shows each round.
//!
//! `scripts/bench-proxy.sh [SECONDS] [ROUNDS]` (= `cargo bench --bench
//! proxy -- SECONDS ROUNDS`) prints the Markdown for BENCHMARKS.md. Needs
//! root, like the tests.

#[path = "../tests/support/mod.rs"]
mod support;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;
use support::bench::{cpu_seconds, percentile};
use support::pki::ENDPOINT;
use support::proxy::ProxyProc;
use support::server::{APP_PASSWORD, Variant, pki};
use support::{TestEnv, maria};

const CLIENTS: usize = 8;
const MYSQL_ROWS: u32 = 10_000;

/// Throughput and latency of one run.
struct Result {
    per_second: f64,
    p50_ms: f64,
    p99_ms: f64,
}

fn summarize(count: usize, elapsed: Duration, mut latencies_ms: Vec<f64>) -> Result {
    latencies_ms.sort_by(f64::total_cmp);
    #[allow(clippy::cast_precision_loss)]
    let per_second = count as f64 / elapsed.as_secs_f64();
    Result {
        per_second,
        p50_ms: percentile(&latencies_ms, 0.50),
        p99_ms: percentile(&latencies_ms, 0.99),
    }
}

/// One select-only pgbench run; latencies from its per-transaction log.
fn pg_run(conninfo: &str, seconds: u64) -> Result {
    let start = Instant::now();
    let (tps, latencies) = support::bench::pgbench_select(conninfo, CLIENTS, seconds, false);
    let elapsed = start.elapsed();
    let n = latencies.len();
    let mut r = summarize(n, elapsed, latencies);
    // pgbench's own figure leaves the connection set-up out.
    r.per_second = tps;
    r
}

/// The MySQL load loop: CLIENTS connections, point selects for `seconds`.
async fn my_run(opts: mysql_async::Opts, seconds: u64) -> Result {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    let mut conns = Vec::new();
    for _ in 0..CLIENTS {
        conns.push(mysql_async::Conn::new(opts.clone()).await.expect("connect"));
    }
    let start = Instant::now();
    for (i, mut conn) in conns.into_iter().enumerate() {
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut id = u32::try_from(i).unwrap_or(0) * 997;
            while Instant::now() < deadline {
                id = (id * 31 + 7) % MYSQL_ROWS + 1;
                let t = Instant::now();
                let v: Option<u32> = conn
                    .query_first(format!("SELECT v FROM appdb.bench WHERE id = {id}"))
                    .await
                    .expect("query");
                latencies.push(t.elapsed().as_secs_f64() * 1000.0);
                assert_eq!(v, Some(id * 2));
            }
            let _ = conn.disconnect().await;
            latencies
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("load task"));
    }
    let elapsed = start.elapsed();
    let n = all.len();
    summarize(n, elapsed, all)
}

/// CPU seconds (user + system) a process has used so far.
/// A table row; `proxy_cpu`: the proxy's CPU seconds during the run.
fn row(label: &str, r: &Result, direct: &Result, seconds: u64, proxy_cpu: Option<f64>) -> String {
    #[allow(clippy::cast_precision_loss)]
    let cpu = proxy_cpu.map_or_else(
        || "–".into(),
        |c| format!("{:.1}", c * 1e6 / (r.per_second * seconds as f64)),
    );
    format!(
        "| {label} | {:.0} | {:.2} | {:.3} | {:.3} | {cpu} |",
        r.per_second,
        r.per_second / direct.per_second,
        r.p50_ms,
        r.p99_ms
    )
}

/// Runs `load` with the proxy's CPU time measured around it.
fn with_cpu<T>(pid: u32, load: impl FnOnce() -> T) -> (T, f64) {
    let before = cpu_seconds(pid);
    let r = load();
    (r, cpu_seconds(pid) - before)
}

fn main() {
    let mut args = std::env::args().skip(1).filter(|a| !a.starts_with("--"));
    let seconds: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(30);
    let rounds: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(2);
    let env = TestEnv::new();
    let ca = pki().ca_file.display().to_string();
    postgres(&env, &ca, seconds, rounds);
    mysql(&env, &ca, seconds, rounds);
}

fn postgres(env: &TestEnv, ca: &str, seconds: u64, rounds: usize) {
    let (pg_port, direct) = support::bench::pgbench_database(ca);
    let via = format!("127.0.0.1:{pg_port}");
    let dir = env.root.path().join("pg-proxy");
    let socket = format!("unix:{}/.s.PGSQL.5432", dir.display());
    let proxy = ProxyProc::start_binary(
        env,
        &support::bench::rdsconn(),
        &[
            "postgres",
            "-h",
            ENDPOINT,
            "--via",
            &via,
            "--listen",
            "127.0.0.1:0",
            "--listen",
            &socket,
        ],
        &[("PGPASSWORD", APP_PASSWORD)],
    );
    let tcp = format!(
        "host=127.0.0.1 port={} user=app dbname=appdb sslmode=disable",
        proxy.port()
    );
    let unix = format!("host={} port=5432 user=app dbname=appdb", dir.display());
    println!(
        "### pgbench -S, {CLIENTS} clients, {seconds} s per run\n\n\
         | run | TPS | vs direct | p50 ms | p99 ms | proxy CPU µs/tx |\n|---|---|---|---|---|---|"
    );
    // Control: the same TLS sessions through a plain TCP forwarder, to
    // show what one more local hop costs on this machine by itself.
    let socat_port = support::server::free_port();
    let mut socat = Command::new("socat")
        .arg(format!(
            "TCP-LISTEN:{socat_port},bind=127.0.0.1,fork,reuseaddr"
        ))
        .arg(format!("TCP:127.0.0.1:{pg_port}"))
        .spawn()
        .expect("socat (scripts/bench-proxy.sh installs it)");
    std::thread::sleep(Duration::from_millis(300));
    let via_socat = direct.replace(&format!("port={pg_port}"), &format!("port={socat_port}"));
    for round in 1..=rounds {
        let d = pg_run(&direct, seconds);
        let f = pg_run(&via_socat, seconds);
        let (t, t_cpu) = with_cpu(proxy.pid(), || pg_run(&tcp, seconds));
        let (u, u_cpu) = with_cpu(proxy.pid(), || pg_run(&unix, seconds));
        println!(
            "{}",
            row(
                &format!("{round}: direct TLS (verify-full)"),
                &d,
                &d,
                seconds,
                None
            )
        );
        println!(
            "{}",
            row(
                &format!("{round}: direct TLS via socat (control)"),
                &f,
                &d,
                seconds,
                None
            )
        );
        println!(
            "{}",
            row(
                &format!("{round}: proxy, loopback TCP"),
                &t,
                &d,
                seconds,
                Some(t_cpu)
            )
        );
        println!(
            "{}",
            row(
                &format!("{round}: proxy, unix socket"),
                &u,
                &d,
                seconds,
                Some(u_cpu)
            )
        );
    }
    drop(proxy);
    let _ = socat.kill();
    let _ = socat.wait();
}

/// A 10 000-row table for the point selects.
async fn fill_bench_table(opts: mysql_async::Opts) {
    let mut conn = mysql_async::Conn::new(opts).await.expect("setup");
    conn.query_drop("CREATE TABLE IF NOT EXISTS appdb.bench (id INT PRIMARY KEY, v INT NOT NULL)")
        .await
        .expect("create");
    conn.query_drop("SET SESSION max_recursive_iterations = 100000")
        .await
        .expect("set");
    conn.query_drop(format!(
        "INSERT IGNORE INTO appdb.bench WITH RECURSIVE g(n) AS \
             (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < {MYSQL_ROWS}) SELECT n, 2 * n FROM g"
    ))
    .await
    .expect("fill");
    let _ = conn.disconnect().await;
}

fn mysql(env: &TestEnv, ca: &str, seconds: u64, rounds: usize) {
    let my_port = maria::server(Variant::Localhost).port;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let direct = mysql_async::OptsBuilder::default()
        .ip_or_hostname("localhost")
        .tcp_port(my_port)
        .user(Some("app"))
        .pass(Some(APP_PASSWORD))
        .db_name(Some("appdb"))
        .prefer_socket(false)
        .ssl_opts(Some(
            mysql_async::SslOpts::default()
                .with_root_certs(vec![Path::new(ca).to_path_buf().into()]),
        ));
    rt.block_on(fill_bench_table(direct.clone().into()));
    let via = format!("127.0.0.1:{my_port}");
    let socket = env.root.path().join("my-proxy/mysql.sock");
    let listen = format!("unix:{}", socket.display());
    let proxy = ProxyProc::start_binary(
        env,
        &support::bench::rdsconn(),
        &[
            "mysql",
            "-h",
            ENDPOINT,
            "--via",
            &via,
            "--listen",
            "127.0.0.1:0",
            "--listen",
            &listen,
        ],
        &[("MYSQL_PWD", APP_PASSWORD)],
    );
    let tcp = mysql_async::OptsBuilder::default()
        .ip_or_hostname("127.0.0.1")
        .tcp_port(proxy.port())
        .user(Some("app"))
        .db_name(Some("appdb"))
        .prefer_socket(false);
    let unix = mysql_async::OptsBuilder::default()
        .socket(Some(socket.display().to_string()))
        .user(Some("app"))
        .db_name(Some("appdb"));
    println!(
        "\n### MySQL point selects (mysql_async load loop), {CLIENTS} connections, {seconds} s per run\n\n\
         | run | queries/s | vs direct | p50 ms | p99 ms | proxy CPU µs/query |\n|---|---|---|---|---|---|"
    );
    for round in 1..=rounds {
        let d = rt.block_on(my_run(direct.clone().into(), seconds));
        let (t, t_cpu) = with_cpu(proxy.pid(), || {
            rt.block_on(my_run(tcp.clone().into(), seconds))
        });
        let (u, u_cpu) = with_cpu(proxy.pid(), || {
            rt.block_on(my_run(unix.clone().into(), seconds))
        });
        println!(
            "{}",
            row(
                &format!("{round}: direct TLS (VERIFY_IDENTITY)"),
                &d,
                &d,
                seconds,
                None
            )
        );
        println!(
            "{}",
            row(
                &format!("{round}: proxy, loopback TCP"),
                &t,
                &d,
                seconds,
                Some(t_cpu)
            )
        );
        println!(
            "{}",
            row(
                &format!("{round}: proxy, unix socket"),
                &u,
                &d,
                seconds,
                Some(u_cpu)
            )
        );
    }
    drop(proxy);
}
