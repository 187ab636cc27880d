//! Benchmark: the built-in SSH tunnel (`--via ssh://`) against the same
//! bastion used by hand, with the test harness's sshd (loopback) and
//! PostgreSQL server.
//!
//! 1. Connect + `SELECT 1` + exit, TLS verified for the endpoint name:
//!    - `rdsconn postgres --via ssh://root@127.0.0.1:PORT -c 'SELECT 1'`
//!      (rdsconn starts and stops ssh itself), vs
//!    - by hand: `ssh -N -L 127.0.0.1:LPORT:ENDPOINT:5432 …` started, waited
//!      for, then `rdsconn postgres --via 127.0.0.1:LPORT -c 'SELECT 1'`,
//!      then ssh stopped: what a user types today, timed as a whole;
//!    - and, for reference, only the `rdsconn --via 127.0.0.1:LPORT` part
//!      with the hand-made tunnel already up.
//! 2. `rdsconn proxy` throughput: `pgbench -S`-like `SELECT 1` (custom
//!    script, 8 clients) through the proxy dialing the server directly, and
//!    through the proxy dialing through one ssh.
//!
//! `scripts/bench-tunnel.sh [RUNS] [SECONDS]` (= `cargo bench --bench tunnel
//! -- RUNS SECONDS`) prints the Markdown for BENCHMARKS.md. Needs root.

#[path = "../tests/support/mod.rs"]
mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::bench::run_pgbench;
use support::pki::ENDPOINT;
use support::proxy::ProxyProc;
use support::server::{APP_PASSWORD, Variant, free_port, pki};
use support::sshd::sshd;
use support::{TestEnv, pg};

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn rdsconn(env: &TestEnv, ssh: &str, via: &str) -> Command {
    let ca = pki().ca_file.display().to_string();
    let mut cmd = env.cmd_of(
        &support::bench::rdsconn(),
        &[
            "--ca-bundle",
            &ca,
            "postgres",
            "-h",
            ENDPOINT,
            "-U",
            "app",
            "-d",
            "appdb",
            "--via",
            via,
            "-c",
            "SELECT 1",
        ],
    );
    cmd.env("RDSCONN_SSH_COMMAND", ssh)
        .env("PGPASSWORD", APP_PASSWORD);
    cmd
}

fn must(mut cmd: Command) {
    let out = cmd.output().expect("runs");
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains('1'),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `ssh -N -L 127.0.0.1:PORT:ENDPOINT:5432` through the bench bastion,
/// once the port accepts.
fn hand_made_tunnel(ssh: &str, port: u16) -> std::process::Child {
    let spec = format!("127.0.0.1:{port}:{ENDPOINT}:5432");
    let child = sshd()
        .forwarding(ssh, "-L", &spec)
        .stderr(Stdio::null())
        .spawn()
        .expect("ssh runs");
    let deadline = Instant::now() + Duration::from_mins(1);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "the hand-made tunnel never opened"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    child
}

fn connects(env: &TestEnv, ssh: &str, runs: usize) {
    let url = sshd().url();
    let (mut built_in, mut by_hand, mut warm) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..runs {
        let t = Instant::now();
        must(rdsconn(env, ssh, &url));
        built_in.push(t.elapsed().as_secs_f64() * 1000.0);

        let t = Instant::now();
        let port = free_port();
        let mut tunnel = hand_made_tunnel(ssh, port);
        let w = Instant::now();
        must(rdsconn(env, ssh, &format!("127.0.0.1:{port}")));
        warm.push(w.elapsed().as_secs_f64() * 1000.0);
        let _ = tunnel.kill();
        let _ = tunnel.wait();
        by_hand.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    println!("### Connect + `SELECT 1` + exit through the bastion ({runs} runs, median)\n");
    println!("| how | wall (ms) |");
    println!("|---|---:|");
    println!(
        "| `rdsconn postgres --via ssh://root@127.0.0.1:PORT` (ssh started and stopped by rdsconn) | {:.1} |",
        median(&mut built_in)
    );
    println!(
        "| by hand: `ssh -N -L …` started and waited for, `rdsconn postgres --via 127.0.0.1:LPORT`, ssh stopped | {:.1} |",
        median(&mut by_hand)
    );
    println!(
        "| only `rdsconn postgres --via 127.0.0.1:LPORT`, the hand-made tunnel already up | {:.1} |\n",
        median(&mut warm)
    );
}

fn tps(proxy: &ProxyProc, script: &std::path::Path, seconds: u32) -> f64 {
    let conninfo = format!(
        "host=127.0.0.1 port={} user=app dbname=appdb sslmode=disable",
        proxy.port()
    );
    let text = run_pgbench(
        &[
            "-n",
            "-f",
            &script.display().to_string(),
            "-c",
            "8",
            "-j",
            "2",
            "-T",
            &seconds.to_string(),
        ],
        &conninfo,
    );
    text.lines()
        .find_map(|l| l.strip_prefix("tps = "))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no tps in:\n{text}"))
}

fn throughput(env: &TestEnv, ssh: &str, seconds: u32) {
    let script = env.root.path().join("select1.sql");
    std::fs::write(&script, "SELECT 1;\n").unwrap();
    let direct_via = format!("127.0.0.1:{}", pg::server(Variant::Good).port);
    let url = sshd().url();
    let mut rows = Vec::new();
    for (label, via) in [
        ("direct", direct_via.as_str()),
        ("through one ssh", url.as_str()),
    ] {
        let proxy = ProxyProc::start_quiet(
            env,
            &["postgres", "-h", ENDPOINT, "--via", via],
            &[("RDSCONN_SSH_COMMAND", ssh), ("PGPASSWORD", APP_PASSWORD)],
        );
        // A first round warms the pool of server sessions and the tunnel.
        let _ = tps(&proxy, &script, 2);
        rows.push((label, tps(&proxy, &script, seconds)));
    }
    println!("### `rdsconn proxy` throughput, `SELECT 1`, 8 clients, {seconds} s\n");
    println!("| upstream | transactions/s |");
    println!("|---|---:|");
    for (label, t) in rows {
        println!("| {label} | {t:.0} |");
    }
    println!();
}

fn main() {
    let mut args = std::env::args().skip(1).filter(|a| !a.starts_with('-'));
    let runs: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(20);
    let seconds: u32 = args.next().and_then(|a| a.parse().ok()).unwrap_or(15);
    let env = TestEnv::new();
    let ssh = sshd().client(&env, "user_key", true);
    connects(&env, &ssh, runs);
    throughput(&env, &ssh, seconds);
}
