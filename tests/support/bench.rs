//! What the benchmarks share: percentiles and running pgbench.

/// The rdsconn binary a benchmark measures: this build, or another one
/// named by `RDSCONN_BENCH_BINARY` (an earlier build, to compare the same
/// benchmark's numbers with it).
pub fn rdsconn() -> String {
    std::env::var("RDSCONN_BENCH_BINARY").unwrap_or_else(|_| super::BINARY.to_string())
}

/// The `p` quantile (0.0–1.0) of sorted samples; NaN when there are none.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

/// pgbench from the PostgreSQL server package (not on PATH on Debian).
pub fn pgbench() -> String {
    std::fs::read_dir("/usr/lib/postgresql")
        .ok()
        .into_iter()
        .flatten()
        .flatten()
        .map(|d| d.path().join("bin/pgbench"))
        .find(|p| p.exists())
        .map_or_else(|| "pgbench".into(), |p| p.display().to_string())
}

/// `pgbench ARGS… CONNINFO` with the harness's app password; its output
/// (stdout and stderr), or a panic with it when pgbench fails.
pub fn run_pgbench(args: &[&str], conninfo: &str) -> String {
    let out = std::process::Command::new(pgbench())
        .args(args)
        .arg(conninfo)
        .env("PGPASSWORD", super::server::APP_PASSWORD)
        .output()
        .expect("pgbench runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "pgbench failed:\n{text}");
    text
}

/// The CPU time (user + system) process `pid` has used, in seconds.
pub fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces): utime is the
    // 12th, stime the 13th.
    let rest = stat.rsplit_once(") ").map_or("", |(_, r)| r);
    let ticks: u64 = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|v| v.parse::<u64>().ok())
        .sum();
    #[allow(clippy::cast_precision_loss)]
    let secs = ticks as f64 / 100.0;
    secs
}

/// A select-only pgbench run (`-n -S -j 2`, `clients`, `seconds`, `-C`
/// when `connect`): its TPS and every transaction's latency in ms (from
/// `pgbench --log`).
pub fn pgbench_select(
    conninfo: &str,
    clients: usize,
    seconds: u64,
    connect: bool,
) -> (f64, Vec<f64>) {
    let dir = tempfile::tempdir().unwrap();
    let prefix = format!("--log-prefix={}", dir.path().join("tx").display());
    let (clients, secs) = (clients.to_string(), seconds.to_string());
    let mut args = vec![
        "-n", "-S", "-c", &clients, "-j", "2", "-T", &secs, "--log", &prefix,
    ];
    if connect {
        args.push("-C");
    }
    let text = run_pgbench(&args, conninfo);
    let tps: f64 = text
        .lines()
        .find(|l| l.starts_with("tps = "))
        .and_then(|l| l.split_whitespace().nth(2))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no tps in pgbench output:\n{text}"));
    let mut latencies = Vec::new();
    for entry in std::fs::read_dir(dir.path()).unwrap().flatten() {
        let log = std::fs::read_to_string(entry.path()).unwrap();
        // client_id transaction_no time_us script_no epoch epoch_us
        latencies.extend(
            log.lines()
                .filter_map(|l| l.split_whitespace().nth(2))
                .filter_map(|us| us.parse::<f64>().ok())
                .map(|us| us / 1000.0),
        );
    }
    (tps, latencies)
}

/// The harness's PostgreSQL with pgbench's tables (scale 1): its port and
/// a direct verify-full conninfo to it (`ca`: the test CA file).
pub fn pgbench_database(ca: &str) -> (u16, String) {
    let port = super::pg::server(super::server::Variant::Good).port;
    let direct = format!(
        "host={} hostaddr=127.0.0.1 port={port} user=app dbname=appdb \
         sslmode=verify-full sslrootcert={ca}",
        super::pki::ENDPOINT
    );
    run_pgbench(&["-i", "-q", "-s", "1"], &direct);
    (port, direct)
}
