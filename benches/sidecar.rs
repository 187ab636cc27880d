//! Benchmark: what the sidecar's operations surface costs. The same
//! `pgbench` load through two proxies in the same run, one plain and one
//! with `--prometheus --health-check --log-format json` (its `/metrics`
//! scraped every second meanwhile, as Prometheus would): steady `-S` and a
//! login per transaction (`-C -S`, where the per-connection metrics and log
//! lines are written). Then the proxy's resident memory with 1,000 idle
//! clients connected (before their login) and with 250 idle logged-in
//! sessions (the harness server allows 300).
//!
//! `scripts/bench-sidecar.sh [SECONDS] [ROUNDS]` (= `cargo bench --bench
//! sidecar -- SECONDS ROUNDS`) prints the Markdown for BENCHMARKS.md. Needs
//! root, like the tests.

#[path = "../tests/support/mod.rs"]
mod support;

use std::process::Command;
use std::time::Duration;

use support::TestEnv;
use support::bench::{cpu_seconds, rdsconn};
use support::pki::ENDPOINT;
use support::proxy::ProxyProc;
use support::server::{APP_PASSWORD, free_port, pki};

const CLIENTS: usize = 8;

/// TPS and p99 latency (ms) of one pgbench run (`-C` when `connect`).
fn pg_run(conninfo: &str, seconds: u64, connect: bool) -> (f64, f64) {
    let (tps, mut latencies) = support::bench::pgbench_select(conninfo, CLIENTS, seconds, connect);
    latencies.sort_by(f64::total_cmp);
    (tps, support::bench::percentile(&latencies, 0.99))
}

/// Resident memory in MiB.
fn rss_mib(pid: u32) -> f64 {
    let kib: u32 = rss_kib(pid).try_into().unwrap_or(u32::MAX);
    f64::from(kib) / 1024.0
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn main() {
    let mut args = std::env::args().skip(1).filter(|a| !a.starts_with("--"));
    let seconds: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(20);
    let rounds: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(3);
    let env = TestEnv::new();
    let ca = pki().ca_file.display().to_string();
    let (pg_port, _) = support::bench::pgbench_database(&ca);
    let via = format!("127.0.0.1:{pg_port}");
    let binary = rdsconn();
    let base = [
        "postgres",
        "-h",
        ENDPOINT,
        "--via",
        &via,
        "--listen",
        "127.0.0.1:0",
    ];
    let plain = ProxyProc::start_binary(&env, &binary, &base, &[("PGPASSWORD", APP_PASSWORD)]);
    let http = free_port();
    let http_s = http.to_string();
    let mut with_ops = base.to_vec();
    with_ops.extend([
        "--prometheus",
        "--health-check",
        "--log-format",
        "json",
        "--http-port",
        &http_s,
        "--client-login-timeout",
        "1h",
    ]);
    let ops = ProxyProc::start_binary(&env, &binary, &with_ops, &[("PGPASSWORD", APP_PASSWORD)]);
    // Scraped every second, as Prometheus would.
    let scraping = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let scraper = {
        let scraping = std::sync::Arc::clone(&scraping);
        std::thread::spawn(move || {
            while scraping.load(std::sync::atomic::Ordering::Relaxed) {
                let _ = Command::new("curl")
                    .args([
                        "-s",
                        "-o",
                        "/dev/null",
                        &format!("http://127.0.0.1:{http}/metrics"),
                    ])
                    .status();
                std::thread::sleep(Duration::from_secs(1));
            }
        })
    };
    let conninfo = |p: &ProxyProc| {
        format!(
            "host=127.0.0.1 port={} user=app dbname=appdb sslmode=disable",
            p.port()
        )
    };
    for (connect, title) in [
        (false, "pgbench -S"),
        (true, "pgbench -C -S (a login per transaction)"),
    ] {
        println!(
            "### {title}, {CLIENTS} clients, {seconds} s per run\n\n\
             | run | plain TPS | with ops TPS | ratio | plain p99 ms | with ops p99 ms | plain CPU µs/tx | with ops CPU µs/tx |\n\
             |---|---|---|---|---|---|---|---|"
        );
        for round in 1..=rounds {
            // Which goes first alternates, so that drift favours neither.
            let measure = |p: &ProxyProc| {
                let before = cpu_seconds(p.pid());
                let (tps, p99) = pg_run(&conninfo(p), seconds, connect);
                #[allow(clippy::cast_precision_loss)]
                let us = (cpu_seconds(p.pid()) - before) * 1e6 / (tps * seconds as f64);
                (tps, p99, us)
            };
            let (plain_r, ops_r) = if round % 2 == 1 {
                let p = measure(&plain);
                (p, measure(&ops))
            } else {
                let o = measure(&ops);
                (measure(&plain), o)
            };
            println!(
                "| {round} | {:.0} | {:.0} | {:.3} | {:.2} | {:.2} | {:.1} | {:.1} |",
                plain_r.0,
                ops_r.0,
                ops_r.0 / plain_r.0,
                plain_r.1,
                ops_r.1,
                plain_r.2,
                ops_r.2
            );
        }
        println!();
    }
    scraping.store(false, std::sync::atomic::Ordering::Relaxed);
    let _ = scraper.join();

    memory(&ops, &conninfo(&ops));
}

/// The proxy's RSS: after the load, with 1,000 idle clients (before their
/// login), with 250 idle logged-in sessions.
fn memory(ops: &ProxyProc, conninfo: &str) {
    // Memory: 1,000 idle clients before their login, then 250 sessions.
    let before = rss_mib(ops.pid());
    let idle: Vec<std::net::TcpStream> = (0..1000)
        .map(|_| std::net::TcpStream::connect(("127.0.0.1", ops.port())).unwrap())
        .collect();
    std::thread::sleep(Duration::from_secs(2));
    let with_idle = rss_mib(ops.pid());
    drop(idle);
    let sessions: Vec<std::process::Child> = (0..250)
        .map(|_| {
            Command::new("psql")
                .args(["-X", "-c", "SELECT pg_sleep(30)", conninfo])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    std::thread::sleep(Duration::from_secs(10));
    let with_sessions = rss_mib(ops.pid());
    for mut s in sessions {
        let _ = s.kill();
        let _ = s.wait();
    }
    println!(
        "### Proxy memory (RSS)\n\n| state | RSS MiB |\n|---|---|\n\
         | after the load, no client | {before:.1} |\n| 1,000 idle clients (connected, before their login) | {with_idle:.1} |\n\
         | 250 idle logged-in sessions | {with_sessions:.1} |"
    );
}
