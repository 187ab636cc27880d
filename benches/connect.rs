//! Benchmark: connect, `SELECT 1`, exit — TLS verified, password auth —
//! `rdsconn mysql -e` vs `mariadb --ssl-verify-server-cert -e`, and
//! `rdsconn postgres -c` vs `psql "sslmode=verify-full …" -c`, against the
//! test harness's local MariaDB and PostgreSQL servers.
//!
//! Every client verifies against the same CA file: the RDS global bundle
//! plus the test CA (109 certificates), so bundle parsing costs the same.
//! Runs alternate between the two clients; wall time is measured around
//! each run, peak RSS in separate runs under GNU time.
//!
//! Then `rdsconn check` over 10, 50 and 200 targets (both servers, repeated
//! URLs) with `--concurrency 32`, to show the total grows with
//! N / concurrency, not N.
//!
//! `scripts/bench-connect.sh [RUNS]` (= `cargo bench --bench connect -- RUNS`)
//! prints the Markdown tables for BENCHMARKS.md. Needs root, like the tests.

#[path = "../tests/support/mod.rs"]
mod support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use support::pki::ENDPOINT;
use support::server::{APP_PASSWORD, Variant, pki};
use support::{maria, pg};

const GNU_TIME: &str = "/usr/bin/time";

struct Client {
    label: String,
    argv: Vec<String>,
    env: &'static [(&'static str, &'static str)],
    /// A line the run must print.
    expect: String,
}

impl Client {
    /// The client's command line, after `prefix` (e.g. GNU time).
    fn command(&self, home: &Path, prefix: &[&str]) -> Command {
        let mut argv = prefix
            .iter()
            .map(|a| (*a).to_string())
            .chain(self.argv.iter().cloned());
        let mut cmd = Command::new(argv.next().unwrap_or_default());
        cmd.args(argv)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", home)
            .envs(self.env.iter().copied())
            .stdin(Stdio::null());
        cmd
    }

    /// Wall seconds of one run; the run must print the `1`.
    fn time(&self, home: &Path) -> f64 {
        let start = Instant::now();
        let out = self.command(home, &[]).output().expect("client runs");
        let wall = start.elapsed().as_secs_f64();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.lines().any(|l| l.trim() == self.expect),
            "{} failed: {}\n{stdout}{}",
            self.label,
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        wall
    }

    /// Peak RSS of one run in MiB, from GNU time.
    fn peak_rss(&self, home: &Path) -> f64 {
        let out = self
            .command(home, &[GNU_TIME, "-f", "RSS-KiB %M"])
            .output()
            .expect("GNU time: apt-get install time");
        let stderr = String::from_utf8_lossy(&out.stderr);
        let kib: f64 = stderr
            .lines()
            .last()
            .and_then(|l| l.strip_prefix("RSS-KiB "))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("{} under GNU time: {stderr}", self.label));
        kib / 1024.0
    }
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        f64::midpoint(v[n / 2 - 1], v[n / 2])
    }
}

/// (rdsconn, native client) pairs: MySQL, then PostgreSQL.
fn clients(bundle: &str) -> [(Client, Client); 2] {
    let rdsconn = support::bench::rdsconn();
    let my = maria::server(Variant::Localhost).port;
    let pgp = pg::server(Variant::Localhost).port;
    let s = |v: &[&str]| v.iter().map(|a| (*a).to_string()).collect::<Vec<_>>();
    [
        (
            Client {
                label: "`rdsconn mysql -e`".into(),
                argv: s(&[
                    &rdsconn,
                    "--ca-bundle",
                    bundle,
                    "mysql",
                    "-h",
                    ENDPOINT,
                    "-u",
                    "app",
                    "-D",
                    "appdb",
                    "--via",
                    &format!("127.0.0.1:{my}"),
                    "-e",
                    "SELECT 1",
                ]),
                env: &[("MYSQL_PWD", APP_PASSWORD)],
                expect: "1".into(),
            },
            Client {
                label: "`mariadb --ssl-verify-server-cert -e`".into(),
                argv: s(&[
                    "mariadb",
                    "--no-defaults",
                    "--protocol=TCP",
                    "-h",
                    "localhost",
                    "-P",
                    &my.to_string(),
                    "-u",
                    "app",
                    "-D",
                    "appdb",
                    "--ssl",
                    "--ssl-verify-server-cert",
                    &format!("--ssl-ca={bundle}"),
                    "-e",
                    "SELECT 1",
                ]),
                env: &[("MYSQL_PWD", APP_PASSWORD)],
                expect: "1".into(),
            },
        ),
        (
            Client {
                label: "`rdsconn postgres -c`".into(),
                argv: s(&[
                    &rdsconn,
                    "--ca-bundle",
                    bundle,
                    "postgres",
                    "-h",
                    ENDPOINT,
                    "-U",
                    "app",
                    "-d",
                    "appdb",
                    "--via",
                    &format!("127.0.0.1:{pgp}"),
                    "-c",
                    "SELECT 1",
                ]),
                env: &[("PGPASSWORD", APP_PASSWORD)],
                expect: "1".into(),
            },
            Client {
                label: "`psql sslmode=verify-full -c`".into(),
                argv: s(&[
                    "psql",
                    "-X",
                    "-w",
                    &format!(
                        "host={ENDPOINT} hostaddr=127.0.0.1 port={pgp} user=app dbname=appdb \
                         sslmode=verify-full sslrootcert={bundle}"
                    ),
                    "-c",
                    "SELECT 1",
                ]),
                env: &[("PGPASSWORD", APP_PASSWORD)],
                expect: "1".into(),
            },
        ),
    ]
}

fn main() {
    let runs: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(30);
    assert!(
        Path::new(GNU_TIME).exists(),
        "{GNU_TIME} missing: run scripts/bench-connect.sh (it installs `time`)"
    );
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let bundle = dir.path().join("bundle.pem");
    let mut pem = support::embedded_pem();
    pem.extend_from_slice(pki().ca.pem().as_bytes());
    std::fs::write(&bundle, pem).unwrap();
    let bundle = bundle.display().to_string();

    let pairs = clients(&bundle);

    println!(
        "{runs} alternating runs per client; {} cores; CA file: RDS global bundle + test CA",
        std::thread::available_parallelism().map_or(0, std::num::NonZero::get)
    );
    println!();
    println!(
        "| client | median wall | median peak RSS | max peak RSS | ratio (rdsconn / native) |"
    );
    println!("|---|---|---|---|---|");
    for (ours, native) in &pairs {
        report(ours, native, runs, &home);
    }
    check_scaling(&bundle, &home, runs.min(5));
    secret_cost(&bundle, &home, runs);
}

/// What `--secret` adds to a connect: one `GetSecretValue` (against moto
/// on loopback here; a real Secrets Manager call is a network round trip
/// more).
fn secret_cost(bundle: &str, home: &Path, runs: usize) {
    support::moto::secrets(&serde_json::json!([{
        "op": "put", "region": "eu-central-1", "name": "bench/app",
        "value": serde_json::json!({"username": "app", "password": APP_PASSWORD}).to_string(),
    }]));
    let via = format!("127.0.0.1:{}", pg::server(Variant::Localhost).port);
    let rdsconn = support::bench::rdsconn();
    let aws: &'static [(&'static str, &'static str)] = Box::leak(Box::new([
        ("AWS_ENDPOINT_URL", support::moto::url()),
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("AWS_REGION", "eu-central-1"),
        ("PGPASSWORD", APP_PASSWORD),
    ]));
    let argv = |extra: &[&str]| {
        let mut v: Vec<String> = [
            rdsconn.as_str(),
            "--ca-bundle",
            bundle,
            "postgres",
            "-h",
            ENDPOINT,
            "-d",
            "appdb",
            "--via",
            &via,
            "-c",
            "SELECT 1",
        ]
        .iter()
        .map(|a| (*a).to_string())
        .collect();
        v.extend(extra.iter().map(|a| (*a).to_string()));
        v
    };
    let with_secret = Client {
        label: "`rdsconn postgres -c --secret` (GetSecretValue on moto)".into(),
        argv: argv(&["--secret", "bench/app"]),
        env: aws,
        expect: "1".into(),
    };
    let with_password = Client {
        label: "`rdsconn postgres -c` (PGPASSWORD)".into(),
        argv: argv(&["-U", "app"]),
        env: aws,
        expect: "1".into(),
    };
    println!();
    println!("`--secret` against the password in PGPASSWORD, {runs} alternating runs:");
    println!();
    println!(
        "| client | median wall | median peak RSS | max peak RSS | ratio (secret / password) |"
    );
    println!("|---|---|---|---|---|");
    report(&with_secret, &with_password, runs, home);
}

/// `rdsconn check` over N targets at `--concurrency 32`.
fn check_scaling(bundle: &str, home: &Path, runs: usize) {
    let urls = [
        format!(
            "postgres://app@localhost:{}/appdb",
            pg::server(Variant::Localhost).port
        ),
        format!(
            "mysql://app@localhost:{}/appdb",
            maria::server(Variant::Localhost).port
        ),
    ];
    println!();
    println!(
        "`rdsconn check --concurrency 32 --file TARGETS` (PostgreSQL and MariaDB URLs alternating, password auth, verify-full); median of {runs} runs:"
    );
    println!();
    println!("| targets | median wall | per target | peak RSS |");
    println!("|---|---|---|---|");
    let binary = support::bench::rdsconn();
    for n in [1_usize, 10, 50, 200] {
        let file = Path::new(home).join(format!("targets-{n}.txt"));
        let lines: Vec<&str> = (0..n).map(|i| urls[i % 2].as_str()).collect();
        std::fs::write(&file, lines.join("\n")).unwrap();
        let file = file.display().to_string();
        let argv = [
            binary.as_str(),
            "--ca-bundle",
            bundle,
            "check",
            "--concurrency",
            "32",
            "--file",
            &file,
        ];
        let client = Client {
            label: format!("check x{n}"),
            argv: argv.iter().map(|a| (*a).to_string()).collect(),
            env: &[("PGPASSWORD", APP_PASSWORD), ("MYSQL_PWD", APP_PASSWORD)],
            expect: format!("{n} target(s): {n} passed, 0 warning(s), 0 failed"),
        };
        let mut walls: Vec<f64> = (0..runs).map(|_| client.time(home)).collect();
        let rss = client.peak_rss(home);
        let wall = median(&mut walls);
        println!(
            "| {n} | {:.1} ms | {:.2} ms | {rss:.1} MiB |",
            wall * 1000.0,
            wall * 1000.0 / f64::from(u32::try_from(n).unwrap_or(u32::MAX))
        );
    }
}

/// Times one pair and prints its two table rows.
fn report(ours: &Client, native: &Client, runs: usize, home: &Path) {
    // Warm the page cache and the servers.
    for _ in 0..3 {
        ours.time(home);
        native.time(home);
    }
    let (mut ow, mut nw, mut orss, mut nrss) = (vec![], vec![], vec![], vec![]);
    for _ in 0..runs {
        ow.push(ours.time(home));
        nw.push(native.time(home));
        orss.push(ours.peak_rss(home));
        nrss.push(native.peak_rss(home));
    }
    let (om, nm) = (median(&mut ow), median(&mut nw));
    let max = |v: &[f64]| v.iter().copied().fold(0.0, f64::max);
    println!(
        "| {} | {:.1} ms | {:.1} MiB | {:.1} MiB | {:.2} |",
        ours.label,
        om * 1000.0,
        median(&mut orss.clone()),
        max(&orss),
        om / nm
    );
    println!(
        "| {} | {:.1} ms | {:.1} MiB | {:.1} MiB | |",
        native.label,
        nm * 1000.0,
        median(&mut nrss.clone()),
        max(&nrss)
    );
}
