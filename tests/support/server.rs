//! What the PostgreSQL and MariaDB harnesses share: the certificate
//! variants, the test PKI, IAM through PAM, ports, and clean-up after the
//! test process exits.
//!
//! IAM: each server authenticates `IAM_USER` through a PAM service whose
//! only `auth` module is `pam_exec` running `tests/oracle/pam_verify_token.py`,
//! an independent SigV4 check of the token against the test access key.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, OnceLock};

use super::pki::{Ca, ENDPOINT, Leaf};

/// The password of the `app` user on every test server.
pub const APP_PASSWORD: &str = "app-Pa55word-for-tests";
/// A second password user with `app`'s password: a proxy that logs in with
/// one password for any user would let a client become it.
pub const TWIN_USER: &str = "app_twin";

/// A password user whose password needs quoting everywhere: shell, URL,
/// option file, SQL.
pub const ODD_USER: &str = "odd";
pub const ODD_PASSWORD: &str = r#"it's a "$HOME `id` #;\ %20&pass"#;

/// The database user that authenticates with IAM tokens (through PAM).
pub const IAM_USER: &str = "iam_user";
/// The test credentials the PAM verifier trusts.
pub const IAM_ACCESS_KEY: &str = "AKIDRDSCONNTEST00001";
pub const IAM_SECRET_KEY: &str = "rdsconn-test-secret-key/00001";
/// A directory user (PAM, asked through `dialog`) and its password.
pub const DIRECTORY_USER: &str = "ad_user";
pub const DIRECTORY_PASSWORD: &str = "Dir3ctory pa55word; for tests";
/// A directory user whose PAM stack also asks a second-factor question.
pub const TWO_FACTOR_USER: &str = "ad_2fa";
pub const TWO_FACTOR_CODE: &str = "424242";

/// A PostgreSQL user the server authenticates with Kerberos (GSSAPI).
pub const KERBEROS_USER: &str = "krb_user";

/// The region of [`ENDPOINT`], which tokens are signed for.
pub const IAM_REGION: &str = "us-east-1";

/// An Aurora DSQL name the `Localhost` certificate is also valid for, so
/// that DSQL connections verify their name (chain-only is refused for
/// DSQL's public roots).
pub const DSQL_NAME: &str = "abcdefghijklmnopqrstuvwxyz.dsql.us-east-1.on.aws";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Variant {
    /// Certificate for the endpoint name from the test CA.
    Good,
    /// Certificate from the test CA for another name.
    WrongName,
    /// Certificate for the endpoint name from an unknown CA.
    OtherCa,
    /// Expired certificate for the endpoint name from the test CA.
    Expired,
    /// TLS disabled on the server.
    NoTls,
    /// Certificate for the endpoint name, `localhost` and [`DSQL_NAME`]
    /// from the test CA, for native clients that verify the name they dial.
    Localhost,
    /// As `Localhost`, and (MariaDB) PAM asks through the `dialog` plugin,
    /// as for RDS directory (Kerberos) users.
    Directory,
}

pub struct Pki {
    pub ca: Ca,
    pub other_ca: Ca,
    /// The test CA as a file, for `--ca-bundle`.
    pub ca_file: PathBuf,
}

pub fn pki() -> &'static Pki {
    static PKI: OnceLock<Pki> = OnceLock::new();
    PKI.get_or_init(|| {
        let ca = Ca::new("rdsconn test CA");
        let other_ca = Ca::new("some other CA");
        let dir = tempfile::Builder::new()
            .prefix("rdsconn-pki-")
            .tempdir()
            .unwrap()
            .keep();
        remove_after_exit(&dir);
        let ca_file = dir.join("ca.pem");
        std::fs::write(&ca_file, ca.pem()).unwrap();
        Pki {
            ca,
            other_ca,
            ca_file,
        }
    })
}

/// The server certificate of a variant.
pub fn leaf(variant: Variant) -> Leaf {
    let pki = pki();
    match variant {
        Variant::Good | Variant::NoTls => pki.ca.leaf(&[ENDPOINT], false),
        Variant::WrongName => pki.ca.leaf(
            &["otherdb.xyz789.us-east-1.rds.amazonaws.com", "localhost"],
            false,
        ),
        Variant::OtherCa => pki.other_ca.leaf(&[ENDPOINT], false),
        Variant::Expired => pki.ca.leaf(&[ENDPOINT], true),
        Variant::Localhost | Variant::Directory => {
            pki.ca.leaf(&[ENDPOINT, "localhost", DSQL_NAME], false)
        }
    }
}

/// A running test server.
pub struct Server {
    pub port: u16,
}

/// The servers of one harness, by variant.
pub type Registry = OnceLock<Mutex<HashMap<Variant, &'static Server>>>;

/// The server for a variant, started with `start` on first use and shared
/// by the tests of this process.
pub fn get_or_start(
    registry: &'static Registry,
    variant: Variant,
    start: fn(Variant) -> Server,
) -> &'static Server {
    let mut map = registry
        .get_or_init(|| Mutex::new(HashMap::new()))
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(s) = map.get(&variant) {
        return s;
    }
    let server: &'static Server = Box::leak(Box::new(start(variant)));
    map.insert(variant, server);
    server
}

pub fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"))
}

/// Removes `path` a few seconds after this test process has exited (after
/// the server watchdogs have stopped their servers).
// The watchdog must outlive this process, so it is never waited for.
#[allow(clippy::zombie_processes)]
pub fn remove_after_exit(path: &Path) {
    let script = format!(
        "while [ -d /proc/{} ]; do sleep 0.5; done; sleep 3; rm -rf '{}'",
        std::process::id(),
        path.display()
    );
    Command::new("sh")
        .args(["-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
}

/// Runs `script` (which starts a server as `$srv` in the background and
/// loops while this process lives) detached, as `user` when given.
// The watchdog must outlive this process, so it is never waited for.
#[allow(clippy::zombie_processes)]
pub fn spawn_watchdog(script: &str, user: Option<&str>) {
    let mut cmd = Command::new(if user.is_some() { "su" } else { "sh" });
    if let Some(u) = user {
        cmd.args([u, "-s", "/bin/sh"]);
    }
    cmd.args(["-c", script]);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A world-readable directory (servers may run as another user) holding
/// the PAM verifier and the test secret key.
fn iam_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = PathBuf::from(format!("/tmp/rdsconn-test-iam-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        remove_after_exit(&dir);
        std::fs::copy(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/oracle/pam_verify_token.py"),
            dir.join("verify.py"),
        )
        .unwrap();
        std::fs::write(dir.join("secret"), IAM_SECRET_KEY).unwrap();
        let mode = |p: &Path, m| {
            std::fs::set_permissions(p, std::os::unix::fs::PermissionsExt::from_mode(m)).unwrap();
        };
        // Sticky and writable: pam_exec logs as the server's user.
        mode(&dir, 0o1777);
        mode(&dir.join("verify.py"), 0o644);
        mode(&dir.join("secret"), 0o644);
        dir
    })
}

/// A PAM service (in /etc/pam.d, removed after exit) that accepts IAM
/// tokens for `host:signed_port`. Returns its name.
pub fn pam_service(engine: &str, host: &str, signed_port: u16) -> String {
    static SERVICES: OnceLock<Mutex<HashSet<String>>> = OnceLock::new();
    let mut written = SERVICES
        .get_or_init(|| Mutex::new(HashSet::new()))
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let name = format!(
        "rdsconn-test-{}-{engine}-{host}-{signed_port}",
        std::process::id()
    );
    if written.contains(&name) {
        return name;
    }
    assert!(
        Path::new("/etc/pam.d").is_dir(),
        "PAM is not installed (/etc/pam.d missing)"
    );
    let dir = iam_dir();
    let file = Path::new("/etc/pam.d").join(&name);
    std::fs::write(
        &file,
        format!(
            "auth required pam_exec.so expose_authtok quiet log={log} /usr/bin/python3 {verify} \
             {host} {signed_port} {IAM_REGION} {IAM_ACCESS_KEY} {secret}\n\
             account required pam_permit.so\n",
            log = dir.join(format!("{engine}.log")).display(),
            verify = dir.join("verify.py").display(),
            secret = dir.join("secret").display(),
        ),
    )
    .unwrap();
    remove_after_exit(&file);
    written.insert(name.clone());
    name
}

/// A PAM service (in /etc/pam.d, removed after exit) for the directory
/// users of the server on `port`: the password checked by
/// `pam_fixed_password.py`, then, with `second_factor`, the question of
/// `pam_question.c`. Returns its name.
pub fn directory_service(port: u16, second_factor: bool) -> String {
    let dir = iam_dir();
    let name = format!(
        "rdsconn-test-{}-directory-{port}{}",
        std::process::id(),
        if second_factor { "-2fa" } else { "" }
    );
    let password_file = dir.join("directory-password");
    std::fs::write(&password_file, DIRECTORY_PASSWORD).unwrap();
    let oracle = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/oracle");
    let check = dir.join("fixed_password.py");
    std::fs::copy(oracle.join("pam_fixed_password.py"), &check).unwrap();
    let mut stack = format!(
        "auth required pam_exec.so expose_authtok quiet log={log} /usr/bin/python3 {check} {pw}\n",
        log = dir.join("directory.log").display(),
        check = check.display(),
        pw = password_file.display(),
    );
    if second_factor {
        let module = dir.join("pam_question.so");
        if !module.exists() {
            let out = Command::new("gcc")
                .args(["-shared", "-fPIC", "-o"])
                .arg(&module)
                .arg(oracle.join("pam_question.c"))
                .arg("-lpam")
                .output()
                .expect("gcc: run scripts/test.sh (apt-get install gcc libpam0g-dev)");
            assert!(
                out.status.success(),
                "building pam_question.so failed (scripts/test.sh installs libpam0g-dev):\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        stack += &[
            "auth required ",
            &module.display().to_string(),
            " answer=",
            TWO_FACTOR_CODE,
            "\n",
        ]
        .concat();
    }
    stack.push_str("account required pam_permit.so\n");
    let file = Path::new("/etc/pam.d").join(&name);
    std::fs::write(&file, stack).unwrap();
    remove_after_exit(&file);
    name
}

/// What the directory users' password check logged: one `attempt` line
/// per password received, with the PAM service and user.
pub fn directory_log() -> String {
    std::fs::read_to_string(iam_dir().join("directory.log")).unwrap_or_default()
}

/// What the PAM verifier logged for an engine (why tokens were rejected).
pub fn pam_log(engine: &str) -> String {
    std::fs::read_to_string(iam_dir().join(format!("{engine}.log"))).unwrap_or_default()
}
