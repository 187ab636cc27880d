//! Throwaway MariaDB servers with TLS, one per certificate variant,
//! started on first use and shared by the tests of this process.
//!
//! Each server gets its own data directory (`mariadb-install-db`, well
//! under a second) and runs as root (`--user=root`) with `--no-defaults`,
//! so nothing from the machine's own MariaDB configuration leaks in.
//! Plaintext is refused by the server too (`require_secure_transport`),
//! except on the no-TLS variant. IAM users authenticate through PAM with
//! `pam_use_cleartext_plugin`, so the server asks for the token with
//! `mysql_clear_password`, as RDS does. The `Directory` and no-TLS servers
//! run PAM without it, so it asks through the `dialog` plugin, as RDS does
//! for directory (Kerberos) users; they have `DIRECTORY_USER` and
//! `TWO_FACTOR_USER`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::pki::ENDPOINT;
use super::server::{
    APP_PASSWORD, DIRECTORY_USER, IAM_USER, ODD_PASSWORD, ODD_USER, TWIN_USER, TWO_FACTOR_USER,
    directory_service,
};
use super::server::{
    Registry, free_port, get_or_start, is_root, leaf, pam_service, remove_after_exit,
    spawn_watchdog,
};
pub use super::server::{Server, Variant};

/// The endpoint port tokens are signed for (the servers listen elsewhere;
/// tests dial them with `--via`).
pub const SIGNED_PORT: u16 = 3306;

const SERVER_BIN: &str = "/usr/sbin/mariadbd";

/// The server for a variant, started on first use.
pub fn server(variant: Variant) -> &'static Server {
    static SERVERS: Registry = OnceLock::new();
    get_or_start(&SERVERS, variant, start)
}

fn root() -> &'static Path {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    ROOT.get_or_init(|| {
        assert!(
            is_root(),
            "the MariaDB tests need root: run scripts/test.sh as root"
        );
        assert!(
            Path::new(SERVER_BIN).exists(),
            "{SERVER_BIN} not found: run scripts/test.sh (apt-get install mariadb-server)"
        );
        let root = PathBuf::from(format!("/tmp/rdsconn-test-maria-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).unwrap();
        remove_after_exit(&root);
        root
    })
}

fn start(variant: Variant) -> Server {
    let dir = root().join(format!("{variant:?}").to_lowercase());
    let tls = if variant == Variant::NoTls {
        "--skip-ssl".to_string()
    } else {
        format!(
            "--ssl-cert={d}/server.crt --ssl-key={d}/server.key --require-secure-transport=ON",
            d = dir.display()
        )
    };
    let dialog = matches!(variant, Variant::Directory | Variant::NoTls);
    let port = boot(&dir, &leaf(variant), &tls, dialog);
    users(&dir, variant, port, dialog);
    Server { port }
}

/// The name of the moto instance `au-lax` in sa-east-1, which
/// [`lax_server`]'s certificate is also valid for.
pub const LAX_NAME: &str = "au-lax.aaaaaaaaaa.sa-east-1.rds.amazonaws.com";

/// A server that lets clients in without TLS (`require_secure_transport`
/// off, as an RDS parameter group may leave it) and keeps
/// `performance_schema` on (RDS MySQL can): for the audit's live checks,
/// which must find what such a server allows. Its certificate (test CA)
/// names [`ENDPOINT`] and [`LAX_NAME`]. Started on first use; only `root`
/// (over its socket) exists.
pub fn lax_server() -> &'static Server {
    static LAX: OnceLock<Server> = OnceLock::new();
    LAX.get_or_init(|| {
        let dir = root().join("lax");
        let tls = format!(
            "--ssl-cert={d}/server.crt --ssl-key={d}/server.key --require-secure-transport=OFF \
             --performance-schema=ON",
            d = dir.display()
        );
        let leaf = super::server::pki().ca.leaf(&[ENDPOINT, LAX_NAME], false);
        let port = boot(&dir, &leaf, &tls, false);
        admin(
            &dir,
            "DELETE FROM mysql.global_priv WHERE User = ''; FLUSH PRIVILEGES;",
        );
        Server { port }
    })
}

/// Runs SQL as root on [`lax_server`].
pub fn lax_sql(sql: &str) -> String {
    lax_server();
    admin(&root().join("lax"), sql)
}

/// Makes `dir`'s data directory and runs a server on it with `leaf` and
/// the `tls` flags until this test process is gone; its port once it
/// answers.
fn boot(dir: &Path, leaf: &super::pki::Leaf, tls: &str, dialog: bool) -> u16 {
    std::fs::create_dir_all(dir).unwrap();
    let out = Command::new("mariadb-install-db")
        .args([
            "--no-defaults",
            "--user=root",
            "--auth-root-authentication-method=socket",
            "--skip-test-db",
        ])
        .arg(format!("--datadir={}", dir.join("data").display()))
        .output()
        .expect("mariadb-install-db: run scripts/test.sh (apt-get install mariadb-server)");
    assert!(
        out.status.success(),
        "mariadb-install-db failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    std::fs::write(dir.join("server.crt"), &leaf.cert_pem).unwrap();
    std::fs::write(dir.join("server.key"), &leaf.key_pem).unwrap();
    let port = free_port();
    let cleartext = if dialog { "OFF" } else { "ON" };
    // The watchdog: runs the server until this test process is gone, then
    // stops it and removes its directory.
    let script = format!(
        "{SERVER_BIN} --no-defaults --user=root --datadir={d}/data --socket={d}/sock \
         --port={port} --bind-address=127.0.0.1 --pid-file={d}/pid --log-error={d}/err.log \
         --skip-name-resolve --skip-log-bin --innodb-buffer-pool-size=16M \
         --innodb-log-file-size=8M --max-connections=400 \
         --plugin-load-add=auth_pam --pam-use-cleartext-plugin={cleartext} {tls} & srv=$!; \
         while [ -d /proc/{pid} ] && kill -0 $srv 2>/dev/null; do sleep 0.3; done; \
         kill -TERM $srv 2>/dev/null; wait $srv; rm -rf {d}",
        d = dir.display(),
        pid = std::process::id()
    );
    spawn_watchdog(&script, None);
    wait_ready(dir, port);
    port
}

/// The users every variant's server has.
fn users(dir: &Path, variant: Variant, port: u16, dialog: bool) {
    // Native clients dial the Localhost variant by name, so its tokens
    // are signed for localhost and the port it really listens on.
    let service = if matches!(variant, Variant::Localhost | Variant::Directory) {
        pam_service("mysql", "localhost", port)
    } else {
        pam_service("mysql", ENDPOINT, SIGNED_PORT)
    };
    admin(
        dir,
        &format!(
            "DELETE FROM mysql.global_priv WHERE User = ''; FLUSH PRIVILEGES; \
             CREATE USER 'app'@'%' IDENTIFIED BY '{APP_PASSWORD}'; \
             CREATE DATABASE appdb; GRANT ALL ON appdb.* TO 'app'@'%'; \
             CREATE USER '{TWIN_USER}'@'%' IDENTIFIED BY '{APP_PASSWORD}'; \
             GRANT SELECT ON appdb.* TO '{TWIN_USER}'@'%'; \
             CREATE USER '{IAM_USER}'@'%' IDENTIFIED VIA pam USING '{service}'; \
             GRANT SELECT ON appdb.* TO '{IAM_USER}'@'%'; \
             CREATE USER '{ODD_USER}'@'%' IDENTIFIED BY '{}'; \
             GRANT SELECT ON appdb.* TO '{ODD_USER}'@'%';",
            ODD_PASSWORD.replace('\\', "\\\\").replace('\'', "''")
        ),
    );
    if dialog {
        admin(
            dir,
            &format!(
                "CREATE USER '{DIRECTORY_USER}'@'%' IDENTIFIED VIA pam USING '{}'; \
                 GRANT SELECT ON appdb.* TO '{DIRECTORY_USER}'@'%'; \
                 CREATE USER '{TWO_FACTOR_USER}'@'%' IDENTIFIED VIA pam USING '{}'; \
                 GRANT SELECT ON appdb.* TO '{TWO_FACTOR_USER}'@'%';",
                directory_service(port, false),
                directory_service(port, true),
            ),
        );
    }
}

/// Runs SQL as root over the server's unix socket; what it printed
/// (batch mode, no column names).
fn admin(dir: &Path, sql: &str) -> String {
    let out = Command::new("mariadb")
        .args(["--no-defaults", "-u", "root", "-N", "-B", "-e", sql])
        .arg(format!("--socket={}", dir.join("sock").display()))
        .output()
        .expect("mariadb client: run scripts/test.sh (apt-get install mariadb-client)");
    assert!(
        out.status.success(),
        "admin SQL failed: {sql}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn wait_ready(dir: &Path, port: u16) {
    let start = Instant::now();
    while start.elapsed() < Duration::from_mins(2) {
        if dir.join("sock").exists() && std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let log = std::fs::read_to_string(dir.join("err.log")).unwrap_or_default();
    panic!("MariaDB on port {port} did not start:\n{log}");
}

/// Runs SQL as root on the `variant` server (started if need be): for
/// tests that create their own users or change a password.
pub fn admin_sql(variant: Variant, sql: &str) -> String {
    server(variant);
    admin(&root().join(format!("{variant:?}").to_lowercase()), sql)
}

/// The mariadb client over TCP to 127.0.0.1:`port` as `user` in
/// `database`, without TLS (a proxy's local hop), running `sql` in batch
/// mode without column names.
pub fn client(port: u16, user: &str, database: &str, sql: &str) -> super::Run {
    let port = port.to_string();
    let out = std::process::Command::new("mariadb")
        .args([
            "--no-defaults",
            "--protocol=TCP",
            "-h",
            "127.0.0.1",
            "-P",
            &port,
            "-u",
            user,
            "-D",
            database,
            "--batch",
            "--skip-column-names",
            "-e",
            sql,
        ])
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .output()
        .unwrap();
    super::Run::from(out)
}
