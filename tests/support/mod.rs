//! Test harness: a `TestEnv` that runs the real rdsconn binary with a
//! private cache and home, and a scripted HTTP server for `ca fetch`.

#![allow(dead_code, unreachable_pub)]

pub mod activity;
pub mod bench;
pub mod hostile;
pub mod http;
pub mod maria;
pub mod moto;
pub mod pg;
pub mod pki;
pub mod proxy;
pub mod schema;
pub mod server;
pub mod sshd;
pub mod standin;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

pub const BINARY: &str = env!("CARGO_BIN_EXE_rdsconn");

/// The repository's embedded bundle and the expired 2023 test bundle.
pub fn embedded_pem() -> Vec<u8> {
    std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("certs/rds-global-bundle.pem"))
        .unwrap()
}

pub fn old_bundle_path() -> PathBuf {
    let local =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/rds-global-bundle-2023-12.pem");
    assert!(local.exists(), "missing test data {}", local.display());
    local
}

/// The test venv's Python (botocore, boto3, moto), made by scripts/test.sh.
pub fn python() -> PathBuf {
    let py = std::env::var_os("RDSCONN_TEST_PYTHON").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python"),
        PathBuf::from,
    );
    assert!(
        py.exists(),
        "the test venv is missing: {} (scripts/test.sh creates it)",
        py.display()
    );
    py
}

/// The Node drivers' `node_modules` (pg, mysql2, postgres, dotenv), made
/// by scripts/test.sh in tests/node.
pub fn node_modules() -> PathBuf {
    let dir = std::env::var_os("RDSCONN_TEST_NODE_MODULES").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/node/node_modules"),
        PathBuf::from,
    );
    assert!(
        dir.join("pg").exists() && dir.join("mysql2").exists(),
        "the Node drivers are missing in {} (scripts/test.sh installs them)",
        dir.display()
    );
    dir
}

/// Panics unless `promtool check metrics` (Debian's prometheus package,
/// installed by scripts/test.sh) accepts a `/metrics` body.
pub fn assert_promtool_accepts(body: &str) {
    let mut promtool = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool (Debian's prometheus package; scripts/test.sh installs it)");
    std::io::Write::write_all(&mut promtool.stdin.take().unwrap(), body.as_bytes()).unwrap();
    let checked = promtool.wait_with_output().unwrap();
    assert!(
        checked.status.success(),
        "promtool: {}{}\n{body}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );
}

/// A private HOME and cache directory for one test.
pub struct TestEnv {
    pub root: tempfile::TempDir,
}

impl TestEnv {
    pub fn new() -> Self {
        Self {
            root: tempfile::tempdir().unwrap(),
        }
    }

    pub fn home(&self) -> PathBuf {
        self.root.path().join("home")
    }

    pub fn cache_dir(&self) -> PathBuf {
        self.root.path().join("cache")
    }

    /// `rdsconn ARGS` with a clean environment: no AWS or RDSCONN variables
    /// from the developer's shell, HOME and the cache inside the temp dir.
    pub fn cmd(&self, args: &[&str]) -> Command {
        self.cmd_of(BINARY, args)
    }

    /// As [`TestEnv::cmd`], running another build of rdsconn (benchmarks
    /// compare with an earlier one).
    pub fn cmd_of(&self, binary: &str, args: &[&str]) -> Command {
        let mut cmd = Command::new(binary);
        cmd.args(args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.home())
            .env("RDSCONN_CACHE_DIR", self.cache_dir())
            .stdin(Stdio::null());
        cmd
    }

    pub fn run(&self, args: &[&str]) -> Run {
        Run::from(self.cmd(args).output().unwrap())
    }

    pub fn run_with(&self, args: &[&str], env: &[(&str, &str)]) -> Run {
        let mut cmd = self.cmd(args);
        for (k, v) in env {
            cmd.env(k, v);
        }
        Run::from(cmd.output().unwrap())
    }
}

/// Runs `cmd` with `input` on its stdin.
pub fn run_with_stdin(mut cmd: Command, input: &str) -> Run {
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), input.as_bytes()).unwrap();
    Run::from(child.wait_with_output().unwrap())
}

/// `cmd` (its program, arguments and environment) on a new
/// pseudo-terminal that types `answer` when `prompt` appears
/// (`tests/oracle/pty_answer.py`): stdout is the terminal's transcript.
pub fn on_a_terminal(cmd: &Command, prompt: &str, answer: &str) -> Command {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/oracle/pty_answer.py");
    let mut python = Command::new("python3");
    python.arg(script).args([prompt, answer, "--"]);
    wrapped(python, cmd)
}

/// `wrapper ARGS… PROGRAM ARGS…` with `inner`'s program, arguments and
/// environment (e.g. `setsid`, the pty answerer).
pub fn wrapped(mut wrapper: Command, inner: &Command) -> Command {
    wrapper
        .arg(inner.get_program())
        .args(inner.get_args())
        .env_clear()
        .envs(inner.get_envs().filter_map(|(k, v)| v.map(|v| (k, v))));
    wrapper
}

/// A finished run of the binary.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(o: Output) -> Self {
        Self {
            code: o.status.code().expect("killed by a signal"),
            stdout: String::from_utf8(o.stdout).unwrap(),
            stderr: String::from_utf8(o.stderr).unwrap(),
        }
    }
}

impl Run {
    #[track_caller]
    pub fn assert_code(&self, code: i32) -> &Self {
        assert_eq!(
            self.code, code,
            "unexpected exit code; stdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}", self.stdout))
    }
}

/// A port that refuses connections (bound, not listening) until
/// [`LateServer::open`] makes it forward to a real server: a server that
/// comes up late, at a moment the test chooses.
pub struct LateServer {
    socket: socket2::Socket,
    pub port: u16,
}

impl LateServer {
    pub fn new() -> Self {
        Self::at("127.0.0.1:0")
    }

    /// Bound to `addr` (not yet listening).
    pub fn at(addr: &str) -> Self {
        use socket2::{Domain, Socket, Type};
        let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        socket.set_reuse_address(true).unwrap();
        let addr: std::net::SocketAddr = addr.parse().unwrap();
        socket.bind(&addr.into()).unwrap();
        let port = socket
            .local_addr()
            .unwrap()
            .as_socket()
            .expect("an IP socket")
            .port();
        Self { socket, port }
    }

    /// Listens, and forwards every connection to 127.0.0.1:`upstream`.
    pub fn open(self, upstream: u16) {
        self.socket.listen(128).unwrap();
        let listener: std::net::TcpListener = self.socket.into();
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let Ok(server) = std::net::TcpStream::connect(("127.0.0.1", upstream)) else {
                    continue;
                };
                let pipe = |mut from: std::net::TcpStream, mut to: std::net::TcpStream| {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = to.shutdown(std::net::Shutdown::Write);
                    });
                };
                pipe(client.try_clone().unwrap(), server.try_clone().unwrap());
                pipe(server, client);
            }
        });
    }
}

/// The lines `reader` yields, as they come, read on a thread of their own.
pub fn line_channel(
    reader: impl std::io::Read + Send + 'static,
) -> std::sync::mpsc::Receiver<String> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(reader).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// A running rdsconn whose stderr is read line by line, so that a test can
/// wait for what it reports (an event) before acting.
pub struct Watched {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
    seen: String,
}

impl Watched {
    pub fn spawn(mut cmd: Command) -> Self {
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        let lines = line_channel(child.stderr.take().unwrap());
        Self {
            child,
            lines,
            seen: String::new(),
        }
    }

    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Waits for a stderr line containing `needle`; panics (with what was
    /// seen) if the process ends first or after a minute, a real hang.
    pub fn wait_for(&mut self, needle: &str) -> String {
        let deadline = std::time::Instant::now() + std::time::Duration::from_mins(1);
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push_str(&line);
                    self.seen.push('\n');
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(e) => panic!("no {needle:?} on stderr ({e}); it said:\n{}", self.seen),
            }
        }
    }

    /// Waits for the exit: its code, `None` when a signal ended it.
    pub fn exit_code(mut self) -> Option<i32> {
        self.child.wait().unwrap().code()
    }

    /// Waits for the exit; stdout and the whole stderr.
    pub fn finish(mut self) -> Run {
        let mut stdout = String::new();
        std::io::Read::read_to_string(self.child.stdout.as_mut().unwrap(), &mut stdout).unwrap();
        let status = self.child.wait().unwrap();
        while let Ok(line) = self.lines.recv() {
            self.seen.push_str(&line);
            self.seen.push('\n');
        }
        Run {
            code: status.code().expect("killed by a signal"),
            stdout,
            stderr: self.seen,
        }
    }
}

/// The line `name` of doctor's JSON checklist (`{"checks":[…]}`).
pub fn doctor_line<'a>(j: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    j["checks"]
        .as_array()
        .expect("doctor's JSON has checks")
        .iter()
        .find(|c| c["check"] == name)
        .unwrap_or_else(|| panic!("no {name} check in {j}"))
}
