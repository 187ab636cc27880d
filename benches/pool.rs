//! Benchmark: `rdsconn proxy --pool-mode session|transaction` against
//! `PgBouncer` in the same run, on the same machine and server (the test
//! harness's PostgreSQL, password logins: every server login is a TLS
//! handshake plus SCRAM-SHA-256, verify-full on every route).
//!
//! - `pgbench -C -S` (a login per transaction), 8 clients: direct, rdsconn
//!   unpooled, rdsconn session and transaction pools, `PgBouncer` session and
//!   transaction pools.
//! - `pgbench -S` and `pgbench -S -M prepared`, 8 and 64 clients: the
//!   transaction pools (and direct for reference).
//! - The same login storm and steady `-S` with the server behind an
//!   emulated network hop of 0.5 ms each way (an RDS endpoint in the same
//!   region): a forwarder in this process holds every chunk for the delay
//!   in each direction, order kept, for every route alike (the kernel here
//!   has no `netem`).
//! - 1,000 idle logged-in clients on 20 server connections: the pooler's
//!   resident memory and the p99 of one active client's `SELECT 1`.
//!
//! `PgBouncer` runs as `postgres` in a mount namespace whose `/etc/hosts`
//! names the endpoint (so that it verifies the server's certificate for
//! that name, as rdsconn does), with `server_tls_sslmode = verify-full`.
//!
//! `scripts/bench-pool.sh [SECONDS] [ROUNDS]` (= `cargo bench --bench pool
//! -- SECONDS ROUNDS`) installs `PgBouncer` and prints the Markdown for
//! BENCHMARKS.md: each cell is the median of ROUNDS runs. Needs root.

#[path = "../tests/support/mod.rs"]
mod support;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use support::TestEnv;
use support::bench::{percentile, rdsconn, run_pgbench};
use support::pki::ENDPOINT;
use support::proxy::ProxyProc;
use support::server::{APP_PASSWORD, free_port, pki};

/// `PgBouncer` with one database (`appdb`), in `mode`.
struct Bouncer {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Bouncer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn bouncer(mode: &str, server_port: u16) -> Bouncer {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path();
    std::fs::copy(&pki().ca_file, path.join("ca.pem")).unwrap();
    std::fs::write(
        path.join("hosts"),
        format!("127.0.0.1 localhost\n127.0.0.1 {ENDPOINT}\n"),
    )
    .unwrap();
    std::fs::write(path.join("users.txt"), "\"app\" \"\"\n").unwrap();
    let port = free_port();
    let ini = format!(
        "[databases]\n\
         appdb = host={ENDPOINT} port={server_port} dbname=appdb user=app password={APP_PASSWORD}\n\
         [pgbouncer]\n\
         listen_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n\
         auth_type = trust\nauth_file = {dir}/users.txt\n\
         pool_mode = {mode}\ndefault_pool_size = 20\nmax_client_conn = 5000\n\
         server_tls_sslmode = verify-full\nserver_tls_ca_file = {dir}/ca.pem\n\
         ignore_startup_parameters = extra_float_digits\n\
         log_connections = 0\nlog_disconnections = 0\nlog_stats = 0\n\
         logfile = {dir}/pgbouncer.log\npidfile = {dir}/pgbouncer.pid\n",
        dir = path.display()
    );
    std::fs::write(path.join("pgbouncer.ini"), ini).unwrap();
    let _ = Command::new("chown")
        .args(["-R", "postgres:postgres", &path.display().to_string()])
        .status();
    let script = format!(
        "mount --bind {dir}/hosts /etc/hosts && \
         exec setpriv --reuid=postgres --regid=postgres --init-groups pgbouncer {dir}/pgbouncer.ini",
        dir = path.display()
    );
    // The open-file limit is the caller's (scripts/bench-pool.sh raises it).
    let child = Command::new("unshare")
        .args(["-m", "--", "sh", "-c", &script])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("pgbouncer starts (scripts/bench-pool.sh installs it)");
    let start = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "pgbouncer did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Bouncer {
        child,
        port,
        _dir: dir,
    }
}

/// A forwarder to `127.0.0.1:to` that holds every chunk `delay` in each
/// direction (order kept); its port.
fn delayed_hop(to: u16, delay: Duration) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for client in listener.incoming().flatten() {
            let Ok(server) = TcpStream::connect(("127.0.0.1", to)) else {
                continue;
            };
            let _ = client.set_nodelay(true);
            let _ = server.set_nodelay(true);
            for (from, into) in [
                (client.try_clone().unwrap(), server.try_clone().unwrap()),
                (server, client),
            ] {
                one_way(from, into, delay);
            }
        }
    });
    port
}

fn one_way(mut from: TcpStream, mut into: TcpStream, delay: Duration) {
    let (tx, rx) = mpsc::channel::<(Instant, Vec<u8>)>();
    std::thread::spawn(move || {
        let mut buf = vec![0_u8; 64 * 1024];
        while let Ok(n) = from.read(&mut buf) {
            if n == 0
                || tx
                    .send((Instant::now() + delay, buf[..n].to_vec()))
                    .is_err()
            {
                break;
            }
        }
    });
    std::thread::spawn(move || {
        for (due, chunk) in rx {
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
            if into.write_all(&chunk).is_err() {
                break;
            }
        }
        let _ = into.shutdown(std::net::Shutdown::Write);
    });
}

/// One pgbench run's TPS (`extra`: -C, -M prepared, …).
fn tps(conninfo: &str, clients: usize, seconds: u64, extra: &[&str]) -> Option<f64> {
    let (c, s) = (clients.to_string(), seconds.to_string());
    let jobs = clients.min(8).to_string();
    let mut args = vec!["-n", "-S", "-c", &c, "-j", &jobs, "-T", &s];
    args.extend_from_slice(extra);
    // A pooler that cannot run the workload is reported, not fatal.
    let run = std::panic::catch_unwind(|| run_pgbench(&args, conninfo));
    let text = run.ok()?;
    if !text.contains("number of failed transactions: 0") {
        return None;
    }
    text.lines()
        .find(|l| l.starts_with("tps = "))
        .and_then(|l| l.split_whitespace().nth(2))
        .and_then(|v| v.parse().ok())
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied()
}

/// Where pgbench connects, by name.
struct Routes {
    names: Vec<&'static str>,
    conninfos: Vec<String>,
}

fn local(port: u16) -> String {
    format!("host=127.0.0.1 port={port} user=app dbname=appdb sslmode=disable")
}

/// The proxies and `PgBouncer`s in front of the server at `server_port`.
struct Poolers {
    proxies: Vec<ProxyProc>,
    bouncers: Vec<Bouncer>,
}

fn poolers(env: &TestEnv, server_port: u16) -> Poolers {
    let via = format!("127.0.0.1:{server_port}");
    let binary = rdsconn();
    let proxy = |mode: &str| {
        let args = [
            "postgres",
            "-h",
            ENDPOINT,
            "--via",
            &via,
            "--pool-mode",
            mode,
            "--pool-size",
            "20",
            "--client-login-timeout",
            "1h",
        ];
        ProxyProc::start_binary(env, &binary, &args, &[("PGPASSWORD", APP_PASSWORD)])
    };
    Poolers {
        proxies: vec![proxy("none"), proxy("session"), proxy("transaction")],
        bouncers: vec![
            bouncer("session", server_port),
            bouncer("transaction", server_port),
        ],
    }
}

impl Poolers {
    fn routes(&self, direct: &str) -> Routes {
        Routes {
            names: vec![
                "direct (verify-full)",
                "rdsconn unpooled",
                "rdsconn session pool",
                "rdsconn transaction pool",
                "PgBouncer session",
                "PgBouncer transaction",
            ],
            conninfos: [direct.to_string()]
                .into_iter()
                .chain(self.proxies.iter().map(|p| local(p.port())))
                .chain(self.bouncers.iter().map(|b| local(b.port)))
                .collect(),
        }
    }
}

/// Runs `workload` over `routes` (rounds interleaved, so that drift favours
/// none) and prints one Markdown row per route.
fn table(
    title: &str,
    routes: &Routes,
    which: &[usize],
    rounds: usize,
    run: impl Fn(&str) -> Option<f64>,
) {
    println!("### {title}\n\n| route | TPS (median) | vs PgBouncer |\n|---|---|---|");
    let mut samples = vec![Vec::new(); routes.names.len()];
    let mut failed = vec![false; routes.names.len()];
    for _ in 0..rounds {
        for &i in which {
            match run(&routes.conninfos[i]) {
                Some(t) => samples[i].push(t),
                None => failed[i] = true,
            }
        }
    }
    let medians: Vec<Option<f64>> = samples.into_iter().map(median).collect();
    // The `PgBouncer` of the same mode, where there is one.
    let peer = |i: usize| {
        let p = match routes.names[i] {
            n if n.contains("session") => 4,
            n if n.contains("transaction") => 5,
            _ => return None,
        };
        medians.get(p).copied().flatten().filter(|_| !failed[p])
    };
    for &i in which {
        let cell = match (medians[i], failed[i]) {
            (Some(m), false) => format!("{m:.0}"),
            _ => "fails (errors during the run)".into(),
        };
        let ratio = match (medians[i], peer(i)) {
            (Some(m), Some(p)) if !failed[i] && !routes.names[i].starts_with("PgBouncer") => {
                format!("{:.2}×", m / p)
            }
            _ => String::new(),
        };
        println!("| {} | {cell} | {ratio} |", routes.names[i]);
    }
    println!();
}

fn main() {
    let mut args = std::env::args().skip(1).filter(|a| !a.starts_with("--"));
    let seconds: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(15);
    let rounds: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(3);
    let env = TestEnv::new();
    let ca = pki().ca_file.display().to_string();
    let (pg_port, direct) = support::bench::pgbench_database(&ca);
    let all = [0, 1, 2, 3, 4, 5];
    let txn = [0, 3, 5];

    let near = poolers(&env, pg_port);
    let routes = near.routes(&direct);
    table(
        &format!("Login storm: pgbench -C -S, 8 clients, {seconds} s"),
        &routes,
        &all,
        rounds,
        |c| tps(c, 8, seconds, &["-C"]),
    );
    for clients in [8, 64] {
        for (prepared, flags) in [("", &[][..]), (" -M prepared", &["-M", "prepared"][..])] {
            table(
                &format!("Steady: pgbench -S{prepared}, {clients} clients, {seconds} s"),
                &routes,
                &txn,
                rounds,
                |c| tps(c, clients, seconds, flags),
            );
        }
    }
    idle_clients(&near);
    drop(near);

    // The server 0.5 ms away each way.
    let hop = delayed_hop(pg_port, Duration::from_micros(500));
    let far = poolers(&env, hop);
    let far_direct = direct.replace(&format!("port={pg_port}"), &format!("port={hop}"));
    let routes = far.routes(&far_direct);
    println!("With the server behind an emulated hop of 0.5 ms each way:\n");
    table(
        &format!("Login storm over the hop: pgbench -C -S, 8 clients, {seconds} s"),
        &routes,
        &all,
        rounds,
        |c| tps(c, 8, seconds, &["-C"]),
    );
    table(
        &format!("Steady over the hop: pgbench -S, 8 clients, {seconds} s"),
        &routes,
        &all,
        rounds,
        |c| tps(c, 8, seconds, &[]),
    );
}

/// 1,000 idle logged-in clients on the transaction pools (20 server
/// connections): RSS of rdsconn and `PgBouncer`, and one active client's
/// `SELECT 1` p99 meanwhile.
fn idle_clients(p: &Poolers) {
    println!(
        "### 1,000 idle logged-in clients on 20 server connections (transaction pools)\n\n\
         | pooler | RSS before MiB | RSS with 1,000 clients MiB | active client p50 / p99 ms |\n|---|---|---|---|"
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    for (name, pid, port) in [
        ("rdsconn", p.proxies[2].pid(), p.proxies[2].port()),
        ("PgBouncer", p.bouncers[1].child.id(), p.bouncers[1].port),
    ] {
        // `PgBouncer` runs under unshare / sh / setpriv: its own pid is
        // the last descendant.
        let pid = leaf(pid);
        let before = rss_mib(pid);
        let (with, p50, p99) = rt.block_on(async move {
            let mut config = tokio_postgres::Config::new();
            config
                .host("127.0.0.1")
                .port(port)
                .user("app")
                .dbname("appdb")
                .ssl_mode(tokio_postgres::config::SslMode::Disable);
            let mut idle = Vec::new();
            for _ in 0..1000 {
                let (c, conn) = config
                    .connect(tokio_postgres::NoTls)
                    .await
                    .expect("idle client");
                tokio::spawn(conn);
                c.simple_query("SELECT 1")
                    .await
                    .expect("idle client's query");
                idle.push(c);
            }
            let (active, conn) = config.connect(tokio_postgres::NoTls).await.unwrap();
            tokio::spawn(conn);
            let mut lat = Vec::new();
            let until = Instant::now() + Duration::from_secs(5);
            while Instant::now() < until {
                let t = Instant::now();
                active.simple_query("SELECT 1").await.unwrap();
                lat.push(t.elapsed().as_secs_f64() * 1000.0);
            }
            lat.sort_by(f64::total_cmp);
            let with = rss_mib(pid);
            drop(idle);
            (with, percentile(&lat, 0.5), percentile(&lat, 0.99))
        });
        println!("| {name} | {before:.1} | {with:.1} | {p50:.3} / {p99:.3} |");
    }
    println!();
}

/// The deepest first child of `pid` (the process a wrapper chain runs).
fn leaf(pid: u32) -> u32 {
    let mut at = pid;
    loop {
        let children =
            std::fs::read_to_string(format!("/proc/{at}/task/{at}/children")).unwrap_or_default();
        match children
            .split_whitespace()
            .next()
            .and_then(|c| c.parse().ok())
        {
            Some(c) => at = c,
            None => return at,
        }
    }
}

fn rss_mib(pid: u32) -> f64 {
    let kib: u32 = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    f64::from(kib) / 1024.0
}
