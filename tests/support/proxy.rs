//! `rdsconn proxy` as a child process for the tests, and a TCP forwarder
//! that can cut every connection through it (a server that dies).

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::TestEnv;
use super::server::pki;

/// A running `rdsconn proxy`; killed when dropped.
pub struct ProxyProc {
    child: Child,
    /// The first address it printed (`IP:PORT` or `unix:PATH`).
    pub addr: String,
    /// Every address it printed.
    pub addrs: Vec<String>,
    stderr: PathBuf,
    _dir: tempfile::TempDir,
}

impl ProxyProc {
    /// `rdsconn --ca-bundle TEST_CA -vvv proxy ARGS…` with `vars` set,
    /// once it has printed where it listens.
    pub fn start(env: &TestEnv, args: &[&str], vars: &[(&str, &str)]) -> Self {
        Self::spawn(env, super::BINARY, &["-vvv"], args, vars)
    }

    /// As [`ProxyProc::start`], logging only failures (for benchmarks).
    pub fn start_quiet(env: &TestEnv, args: &[&str], vars: &[(&str, &str)]) -> Self {
        Self::spawn(env, super::BINARY, &[], args, vars)
    }

    /// As [`ProxyProc::start_quiet`], with another build of rdsconn.
    pub fn start_binary(env: &TestEnv, binary: &str, args: &[&str], vars: &[(&str, &str)]) -> Self {
        Self::spawn(env, binary, &[], args, vars)
    }

    /// As [`ProxyProc::start`], with at most `files` open files (soft and
    /// hard limit, set by `prlimit`).
    pub fn start_with_file_limit(
        env: &TestEnv,
        files: u32,
        args: &[&str],
        vars: &[(&str, &str)],
    ) -> Self {
        let limit = format!("--nofile={files}:{files}");
        let ca = pki().ca_file.display().to_string();
        let mut all = vec![limit.as_str(), "--", super::BINARY, "--ca-bundle", &ca];
        all.extend_from_slice(&["-vvv", "proxy"]);
        all.extend_from_slice(args);
        Self::spawn_command(env, "prlimit", &all, vars, args)
    }

    fn spawn(
        env: &TestEnv,
        binary: &str,
        verbosity: &[&str],
        args: &[&str],
        vars: &[(&str, &str)],
    ) -> Self {
        let ca = pki().ca_file.display().to_string();
        let mut all = vec!["--ca-bundle", &ca];
        all.extend_from_slice(verbosity);
        all.push("proxy");
        all.extend_from_slice(args);
        Self::spawn_command(env, binary, &all, vars, args)
    }

    /// Runs `program ALL…`; `args` are the proxy's own (to count listeners).
    fn spawn_command(
        env: &TestEnv,
        program: &str,
        all: &[&str],
        vars: &[(&str, &str)],
        args: &[&str],
    ) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let stderr = dir.path().join("stderr");
        // Its private sockets (a tunnel's) go with this directory, also
        // when the proxy is killed.
        let run = dir.path().join("run");
        std::fs::create_dir(&run).unwrap();
        let mut cmd = env.cmd_of(program, all);
        cmd.env("XDG_RUNTIME_DIR", &run);
        for (k, v) in vars {
            cmd.env(k, v);
        }
        cmd.stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr).unwrap());
        let mut child = cmd.spawn().unwrap();
        let rx = super::line_channel(child.stdout.take().unwrap());
        // One line per listener, all printed before the proxy serves.
        let expected = args.iter().filter(|a| **a == "--listen").count().max(1);
        let mut addrs = Vec::new();
        while addrs.len() < expected {
            let Ok(line) = rx.recv_timeout(Duration::from_mins(1)) else {
                break;
            };
            let addr = line
                .strip_prefix("listening on ")
                .unwrap_or_else(|| panic!("unexpected proxy output {line:?}"));
            addrs.push(addr.to_string());
        }
        if addrs.len() < expected {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "the proxy did not start:\n{}",
                std::fs::read_to_string(&stderr).unwrap_or_default()
            );
        }
        Self {
            child,
            addr: addrs[0].clone(),
            addrs,
            stderr,
            _dir: dir,
        }
    }

    /// The port of the first (TCP) address.
    pub fn port(&self) -> u16 {
        self.addr.rsplit_once(':').unwrap().1.parse().unwrap()
    }

    /// What the proxy logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn signal(&self, name: &str) {
        let ok = std::process::Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{name} failed");
    }

    /// The exit status, if it exits within `limit`.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let start = Instant::now();
        while start.elapsed() < limit {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Waits until `count` log lines contain `needle` (each connection's
    /// line is written after it closes, in no set order).
    pub fn wait_log_lines(&self, needle: &str, count: usize, limit: Duration) -> String {
        let start = Instant::now();
        loop {
            let log = self.log();
            if log.lines().filter(|l| l.contains(needle)).count() >= count
                || start.elapsed() > limit
            {
                return log;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until the log has `needle` (log lines come after the event).
    pub fn wait_log(&self, needle: &str, limit: Duration) -> String {
        let start = Instant::now();
        loop {
            let log = self.log();
            if log.contains(needle) || start.elapsed() > limit {
                return log;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for ProxyProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Forwards 127.0.0.1:`port` to 127.0.0.1:`upstream`; [`Cutter::cut`]
/// breaks every connection through it at once, as a crashed server would.
pub struct Cutter {
    pub port: u16,
    live: Arc<Mutex<Vec<TcpStream>>>,
}

impl Cutter {
    pub fn new(upstream: u16) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let live: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let registry = Arc::clone(&live);
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
                    continue;
                };
                {
                    let mut live = registry.lock().unwrap();
                    live.push(client.try_clone().unwrap());
                    live.push(server.try_clone().unwrap());
                }
                pipe(client.try_clone().unwrap(), server.try_clone().unwrap());
                pipe(server, client);
            }
        });
        Self { port, live }
    }

    /// Breaks every open connection (both directions, both sides).
    pub fn cut(&self) {
        for s in self.live.lock().unwrap().drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
    }
}

fn pipe(mut from: TcpStream, mut to: TcpStream) {
    std::thread::spawn(move || {
        let mut buf = [0_u8; 16 * 1024];
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if to.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            }
        }
        let _ = to.shutdown(Shutdown::Write);
    });
}

/// `n` clients of `proxy` connected at once with `config`, each with its
/// server session's backend pid.
pub async fn concurrent_sessions(
    proxy: &ProxyProc,
    config: &tokio_postgres::Config,
    n: usize,
) -> Vec<(tokio_postgres::Client, i32)> {
    let mut tasks = Vec::new();
    for _ in 0..n {
        let config = config.clone();
        tasks.push(tokio::spawn(async move {
            let (client, conn) = config.connect(tokio_postgres::NoTls).await?;
            tokio::spawn(conn);
            let pid: i32 = client
                .query_one("SELECT pg_backend_pid()", &[])
                .await?
                .get(0);
            Ok::<_, tokio_postgres::Error>((client, pid))
        }));
    }
    let mut clients = Vec::new();
    for t in tasks {
        clients.push(
            t.await
                .unwrap()
                .unwrap_or_else(|e| panic!("{e}\n{}", proxy.log())),
        );
    }
    clients
}

/// A psql session through a proxy on 127.0.0.1:`port` (as `app`, no TLS on
/// the local hop) running `sql`, in a thread of its own.
pub fn psql_session(port: u16, sql: &'static str) -> std::thread::JoinHandle<std::process::Output> {
    std::thread::spawn(move || {
        std::process::Command::new("psql")
            .args([
                "-X",
                "-At",
                "-c",
                sql,
                &format!("host=127.0.0.1 port={port} user=app dbname=appdb sslmode=disable"),
            ])
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .output()
            .unwrap()
    })
}
