//! Throwaway PostgreSQL servers with TLS, one per certificate variant,
//! started on first use and shared by the tests of this process.
//!
//! PostgreSQL refuses to run as root, so data directories belong to the
//! `postgres` system user and the server runs under `su postgres`. A
//! watchdog shell stops the server and removes its directory as soon as the
//! test process is gone, whether the tests passed or not.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::pki::ENDPOINT;
use super::server::{APP_PASSWORD, IAM_USER, KERBEROS_USER, ODD_PASSWORD, ODD_USER, TWIN_USER};
use super::server::{
    Registry, free_port, get_or_start, is_root, leaf, pam_service, remove_after_exit,
    spawn_watchdog,
};
pub use super::server::{Server, Variant};

/// The endpoint port tokens are signed for (the servers listen elsewhere;
/// tests dial them with `--via`).
pub const SIGNED_PORT: u16 = 5432;

struct Base {
    root: PathBuf,
    bin: PathBuf,
    template: PathBuf,
}

fn base_dir() -> &'static Base {
    static BASE: OnceLock<Base> = OnceLock::new();
    BASE.get_or_init(|| {
        assert!(
            is_root(),
            "the PostgreSQL tests need root (to run the server as the postgres user): run scripts/test.sh as root"
        );
        let bin = find_bin();
        let root = PathBuf::from(format!("/tmp/rdsconn-test-pg-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).unwrap();
        remove_after_exit(&root);
        chown_postgres(&root);
        let template = root.join("template");
        as_postgres(&format!(
            "{}/initdb -D {} -U postgres -A trust --no-sync -E UTF8 --locale=C.UTF-8 >/dev/null",
            bin.display(),
            template.display()
        ));
        Base { root, bin, template }
    })
}

fn find_bin() -> PathBuf {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|p| p.join("postgres").exists())
        .collect();
    dirs.sort();
    dirs.pop().unwrap_or_else(|| {
        panic!("PostgreSQL server binaries not found under /usr/lib/postgresql: run scripts/test.sh (apt-get install postgresql)")
    })
}

fn chown_postgres(path: &Path) {
    let ok = Command::new("chown")
        .args(["-R", "postgres:postgres"])
        .arg(path)
        .status()
        .unwrap()
        .success();
    assert!(ok, "chown postgres {}", path.display());
}

fn as_postgres(script: &str) -> String {
    let out = Command::new("su")
        .args(["postgres", "-s", "/bin/sh", "-c", script])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "as postgres: {script}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The server for a variant, started on first use.
pub fn server(variant: Variant) -> &'static Server {
    static SERVERS: Registry = OnceLock::new();
    get_or_start(&SERVERS, variant, start)
}

fn start(variant: Variant) -> Server {
    let base = base_dir();
    let dir = base.root.join(format!("{variant:?}").to_lowercase());
    let ok = Command::new("cp")
        .arg("-a")
        .arg(&base.template)
        .arg(&dir)
        .status()
        .unwrap()
        .success();
    assert!(ok);
    let leaf = leaf(variant);
    std::fs::write(dir.join("server.crt"), &leaf.cert_pem).unwrap();
    std::fs::write(dir.join("server.key"), &leaf.key_pem).unwrap();
    std::fs::set_permissions(
        dir.join("server.key"),
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    let port = free_port();
    let tls = variant != Variant::NoTls;
    let mut conf = std::fs::read_to_string(dir.join("postgresql.conf")).unwrap();
    let _ = write!(
        conf,
        "\nlisten_addresses = '127.0.0.1'\nport = {port}\nunix_socket_directories = '{}'\n\
         ssl = {}\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\nfsync = off\n\
         password_encryption = 'scram-sha-256'\nmax_connections = 300\n",
        dir.display(),
        if tls { "on" } else { "off" }
    );
    std::fs::write(dir.join("postgresql.conf"), conf).unwrap();
    // Plaintext is refused by the server too, except on the no-TLS variant.
    let service = pam_service("postgres", ENDPOINT, SIGNED_PORT);
    let hba = if tls {
        format!(
            "local all all trust\nhostssl all {IAM_USER} 127.0.0.1/32 pam pamservice={service}\n\
             hostssl all {KERBEROS_USER} 127.0.0.1/32 gss\n\
             hostssl all all 127.0.0.1/32 scram-sha-256\nhostnossl all all 127.0.0.1/32 reject\n"
        )
    } else {
        format!(
            "local all all trust\nhost all {IAM_USER} 127.0.0.1/32 pam pamservice={service}\n\
             host all all 127.0.0.1/32 scram-sha-256\n"
        )
    };
    std::fs::write(dir.join("pg_hba.conf"), hba).unwrap();
    chown_postgres(&dir);

    // The watchdog: runs the server until this test process is gone, then
    // stops it and removes its data directory.
    let script = format!(
        "{bin}/postgres -D {dir} >{dir}/server.log 2>&1 & srv=$!; \
         while [ -d /proc/{pid} ] && kill -0 $srv 2>/dev/null; do sleep 0.3; done; \
         kill -INT $srv 2>/dev/null; wait $srv; rm -rf {dir}",
        bin = base.bin.display(),
        dir = dir.display(),
        pid = std::process::id()
    );
    spawn_watchdog(&script, Some("postgres"));
    wait_ready(&dir, port);
    let sql = dir.join("setup.sql");
    std::fs::write(
        &sql,
        format!(
            "CREATE USER app PASSWORD '{APP_PASSWORD}';\nCREATE DATABASE appdb OWNER app;\n\
             CREATE USER {TWIN_USER} PASSWORD '{APP_PASSWORD}';\n\
             CREATE USER {IAM_USER};\nCREATE USER {KERBEROS_USER};\n\
             CREATE USER {ODD_USER} PASSWORD '{}';\n",
            ODD_PASSWORD.replace('\'', "''")
        ),
    )
    .unwrap();
    chown_postgres(&sql);
    as_postgres(&format!(
        "{}/psql -q -At -h {} -p {port} -U postgres -d postgres -v ON_ERROR_STOP=1 -f {}",
        base.bin.display(),
        dir.display(),
        sql.display()
    ));
    Server { port }
}

fn wait_ready(dir: &Path, port: u16) {
    let start = Instant::now();
    while start.elapsed() < Duration::from_mins(2) {
        if dir.join(format!(".s.PGSQL.{port}")).exists()
            && std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let log = std::fs::read_to_string(dir.join("server.log")).unwrap_or_default();
    panic!("PostgreSQL on port {port} did not start:\n{log}");
}

/// Runs SQL as the superuser on the `variant` server (started if need
/// be): for tests that create their own users or change a password.
pub fn admin_sql(variant: Variant, sql: &str) {
    admin_query(variant, sql);
}

/// The roles RDS PostgreSQL has for IAM and directory users (`rds_iam`,
/// `rds_ad`), made once on the `Good` server for the tests that need them.
pub fn rds_roles() {
    static ONCE: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    ONCE.get_or_init(|| admin_sql(Variant::Good, "CREATE ROLE rds_iam; CREATE ROLE rds_ad;"));
}

/// As [`admin_sql`], returning what psql printed (unaligned, tuples only).
pub fn admin_query(variant: Variant, sql: &str) -> String {
    let port = server(variant).port;
    let base = base_dir();
    let dir = base.root.join(format!("{variant:?}").to_lowercase());
    let file = dir.join(format!(
        "admin-{}.sql",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos()
    ));
    std::fs::write(&file, sql).unwrap();
    chown_postgres(&file);
    let out = as_postgres(&format!(
        "{}/psql -q -At -h {} -p {port} -U postgres -d postgres -v ON_ERROR_STOP=1 -f {}",
        base.bin.display(),
        dir.display(),
        file.display()
    ));
    let _ = std::fs::remove_file(&file);
    out
}

/// A superuser session over the `variant` server's unix socket (no TLS)
/// running `SELECT pg_sleep(600)` as application `app`; killed on drop.
pub struct LocalSession(std::process::Child);

impl LocalSession {
    pub fn start(variant: Variant, app: &str) -> Self {
        let port = server(variant).port;
        let base = base_dir();
        let dir = base.root.join(format!("{variant:?}").to_lowercase());
        let script = format!(
            "PGAPPNAME={app} exec {}/psql -X -q -h {} -p {port} -U postgres -d postgres -c 'SELECT pg_sleep(600)'",
            base.bin.display(),
            dir.display()
        );
        let child = Command::new("su")
            .args(["postgres", "-s", "/bin/sh", "-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        Self(child)
    }
}

impl Drop for LocalSession {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
