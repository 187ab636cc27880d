//! A real OpenSSH server as the bastion, for `--via ssh://` and, through
//! `ssh -D`, `--via socks5h://`. It runs in a private mount namespace
//! whose /etc/hosts says the RDS endpoint name is 127.0.0.2, as on a real
//! bastion inside the VPC; on 127.0.0.2 the engines' default ports (5432,
//! 3306) forward to the harness servers, so tokens signed for the endpoint
//! and its port verify. One sshd serves every test; each test gets its
//! own ssh client configuration (keys, `known_hosts`) in its `TestEnv`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;

use super::pki::ENDPOINT;
use super::server::{Variant, free_port, spawn_watchdog};
use super::{LateServer, TestEnv, line_channel, maria, pg};

/// The bastion: its port, host key and the user key it accepts.
pub struct Sshd {
    pub port: u16,
    dir: PathBuf,
    _child: Child,
}

/// The far end of the tunnel, as the bastion resolves the endpoint.
const FAR_END: &str = "127.0.0.2";

pub fn sshd() -> &'static Sshd {
    static SSHD: OnceLock<Sshd> = OnceLock::new();
    SSHD.get_or_init(start)
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn keygen(path: &Path) {
    run(Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "rdsconn-test", "-f"])
        .arg(path));
}

fn start() -> Sshd {
    let sshd = Path::new("/usr/sbin/sshd");
    assert!(
        sshd.exists(),
        "openssh-server is missing (scripts/test.sh installs it)"
    );
    // The endpoint's default ports on the bastion's view of it.
    LateServer::at(&format!("{FAR_END}:{}", pg::SIGNED_PORT)).open(pg::server(Variant::Good).port);
    LateServer::at(&format!("{FAR_END}:{}", maria::SIGNED_PORT))
        .open(maria::server(Variant::Good).port);

    let dir = tempfile::Builder::new()
        .prefix("rdsconn-sshd-")
        .tempdir()
        .unwrap()
        .keep();
    keygen(&dir.join("host_key"));
    keygen(&dir.join("user_key"));
    keygen(&dir.join("other_key"));
    keygen(&dir.join("restricted_key"));
    // `restricted_key` logs in but may not forward (`restrict`).
    let read = |name: &str| std::fs::read_to_string(dir.join(name)).unwrap();
    std::fs::write(
        dir.join("authorized_keys"),
        format!(
            "{}restrict {}",
            read("user_key.pub"),
            read("restricted_key.pub")
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join("hosts"),
        format!("127.0.0.1 localhost\n{FAR_END} {ENDPOINT}\n"),
    )
    .unwrap();
    let port = free_port();
    std::fs::write(
        dir.join("sshd_config"),
        format!(
            "ListenAddress 127.0.0.1:{port}\n\
             HostKey {d}/host_key\n\
             AuthorizedKeysFile {d}/authorized_keys\n\
             PidFile none\n\
             UsePAM no\n\
             StrictModes no\n\
             PasswordAuthentication no\n\
             KbdInteractiveAuthentication no\n\
             PermitRootLogin prohibit-password\n\
             AllowTcpForwarding yes\n\
             AllowStreamLocalForwarding yes\n\
             MaxSessions 200\n\
             MaxStartups 200\n\
             LogLevel VERBOSE\n",
            d = dir.display()
        ),
    )
    .unwrap();
    std::fs::create_dir_all("/run/sshd").unwrap();
    let mut child = Command::new("unshare")
        .args([
            "--mount",
            "sh",
            "-c",
            r#"mount --bind "$0" /etc/hosts && exec "$@""#,
        ])
        .arg(dir.join("hosts"))
        .arg(sshd)
        .args(["-D", "-e", "-f"])
        .arg(dir.join("sshd_config"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Ready when it says so (a minute is a real hang).
    let lines = line_channel(child.stderr.take().unwrap());
    let mut seen = String::new();
    loop {
        match lines.recv_timeout(std::time::Duration::from_mins(1)) {
            Ok(line) if line.contains("Server listening") => break,
            Ok(line) => {
                seen.push_str(&line);
                seen.push('\n');
            }
            Err(e) => panic!("sshd did not start ({e}):\n{seen}"),
        }
    }
    // Keep draining its log so that it never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    // It serves this test process only: gone with it, and its keys too
    // (`unshare` and `sh` exec, so the child's pid is sshd's).
    spawn_watchdog(
        &format!(
            "while [ -d /proc/{me} ]; do sleep 0.3; done; kill {sshd} 2>/dev/null; rm -rf '{dir}'",
            me = std::process::id(),
            sshd = child.id(),
            dir = dir.display()
        ),
        None,
    );
    Sshd {
        port,
        dir,
        _child: child,
    }
}

impl Sshd {
    /// `ssh://root@127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("ssh://root@127.0.0.1:{}", self.port)
    }

    /// Writes an ssh client configuration into `env` and returns the
    /// `RDSCONN_SSH_COMMAND` that uses it: `key` is `user_key` (accepted),
    /// `restricted_key` (accepted, may not forward) or `other_key`
    /// (refused); `known` whether the host key is known.
    pub fn client(&self, env: &TestEnv, key: &str, known: bool) -> String {
        let dir = env.root.path().join("ssh");
        std::fs::create_dir_all(&dir).unwrap();
        let known_hosts = dir.join("known_hosts");
        let host_key = std::fs::read_to_string(self.dir.join("host_key.pub")).unwrap();
        std::fs::write(
            &known_hosts,
            if known {
                format!("[127.0.0.1]:{} {host_key}", self.port)
            } else {
                String::new()
            },
        )
        .unwrap();
        let key_path = dir.join("key");
        std::fs::copy(self.dir.join(key), &key_path).unwrap();
        std::fs::set_permissions(
            &key_path,
            std::os::unix::fs::PermissionsExt::from_mode(0o600),
        )
        .unwrap();
        let config = dir.join("config");
        std::fs::write(
            &config,
            format!(
                "Host *\n  IdentityFile {}\n  IdentitiesOnly yes\n  IdentityAgent none\n  UserKnownHostsFile {}\n  GlobalKnownHostsFile /dev/null\n  StrictHostKeyChecking yes\n",
                key_path.display(),
                known_hosts.display()
            ),
        )
        .unwrap();
        format!("ssh -F {}", config.display())
    }

    /// `SSH -N FLAG SPEC` to root on the bastion, in `BatchMode` (`SSH` is
    /// [`Sshd::client`]'s command; `-L` / `-D` and their spec), with no
    /// stdin or stdout.
    pub fn forwarding(&self, ssh: &str, flag: &str, spec: &str) -> Command {
        let mut words = ssh.split_whitespace();
        let mut cmd = Command::new(words.next().unwrap_or("ssh"));
        cmd.args(words)
            .args([
                "-N",
                "-o",
                "ExitOnForwardFailure=yes",
                "-o",
                "BatchMode=yes",
            ])
            .args([flag, spec])
            .args(["-p", &self.port.to_string(), "root@127.0.0.1"])
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        cmd
    }

    /// A SOCKS5 proxy on the bastion (`ssh -D`), alive while the returned
    /// [`Socks`] is; its port.
    pub fn socks(&self, env: &TestEnv) -> (Socks, u16) {
        let port = free_port();
        let ssh = self.client(env, "user_key", true);
        let mut cmd = self.forwarding(&ssh, "-D", &format!("127.0.0.1:{port}"));
        cmd.arg("-v").stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        let lines = line_channel(child.stderr.take().unwrap());
        let mut seen = String::new();
        loop {
            match lines.recv_timeout(std::time::Duration::from_mins(1)) {
                Ok(line) if line.contains("Entering interactive session") => break,
                Ok(line) => {
                    seen.push_str(&line);
                    seen.push('\n');
                }
                Err(e) => panic!("ssh -D did not start ({e}):\n{seen}"),
            }
        }
        std::thread::spawn(move || for _ in lines {});
        (Socks(child), port)
    }
}

/// The `ssh -D` of [`Sshd::socks`]: killed when dropped, also when the
/// test fails first.
pub struct Socks(Child);

impl Drop for Socks {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The ssh processes still running whose command line names `marker`
/// (a test's own ssh configuration).
pub fn ssh_processes(marker: &str) -> Vec<String> {
    processes(marker)
        .into_iter()
        .filter(|l| l.contains("ssh "))
        .collect()
}

/// The processes still running whose command line names `marker`.
pub fn processes(marker: &str) -> Vec<String> {
    let me = std::process::id().to_string();
    let out = Command::new("pgrep")
        .args(["-a", "-f", marker])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.contains("pgrep") && l.split_whitespace().next() != Some(me.as_str()))
        .map(str::to_string)
        .collect()
}
