//! Chain-only verification (`verify-ca`) is never used with public roots:
//! the Amazon Trust Services roots sign every AWS customer's ACM
//! certificates, so a chain to them proves nothing about which endpoint
//! answered. A stand-in CA (`--ca-bundle`) plays the Amazon set here; a
//! certificate for another name must never receive a secret.

use std::net::TcpListener;

use crate::support::server::{APP_PASSWORD, Variant, pki};
use crate::support::{Run, TestEnv, pg};

const PROXY: &str = "myproxy.proxy-c9akciq32abc.us-east-1.rds.amazonaws.com";
const DSQL: &str = crate::support::server::DSQL_NAME;

/// A listener standing where the database would be: it must see no
/// connection at all, so nothing (least of all a secret) is sent.
struct Untouched(TcpListener);

impl Untouched {
    fn new() -> Self {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.set_nonblocking(true).unwrap();
        Self(l)
    }

    fn via(&self) -> String {
        self.0.local_addr().unwrap().to_string()
    }

    fn assert_untouched(&self, what: &str) {
        match self.0.accept() {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            other => panic!("{what}: the server was dialed: {other:?}"),
        }
    }
}

fn refused(run: &Run, what: &str) {
    run.assert_code(2);
    assert!(
        run.stderr.contains("verify-ca (chain only) is refused"),
        "{what}: {}",
        run.stderr
    );
    assert!(run.stderr.contains("verify-full"), "{what}: {}", run.stderr);
    assert_eq!(
        run.stderr
            .lines()
            .filter(|l| l.starts_with("error"))
            .count(),
        1,
        "{what}: {}",
        run.stderr
    );
    assert!(!run.stdout.contains(APP_PASSWORD), "{what}: {}", run.stdout);
    assert!(!run.stdout.contains("verify-ca"), "{what}: {}", run.stdout);
}

/// Every command that takes a target, as `ARGS` with `{host}`, `{url}` and
/// `{via}` to fill in.
const POSTGRES_CASES: &[(&str, &str)] = &[
    (
        "-c",
        "postgres -h {host} -U app -d appdb --via {via} --tls verify-ca -c SELECT",
    ),
    (
        "URL sslmode",
        "postgres {url} --via {via} --tls verify-ca -c SELECT",
    ),
    (
        "hand-off",
        "psql -h {host} -U app -d appdb --via {via} --tls verify-ca",
    ),
    ("env", "env postgres -h {host} -U app --tls verify-ca"),
    (
        "exec",
        "exec postgres -h {host} -U app --via {via} --tls verify-ca -- sh -c true",
    ),
    ("check", "check {url} --via {via} --tls verify-ca"),
    (
        "doctor",
        "doctor --engine postgres -h {host} -U app --via {via} --tls verify-ca",
    ),
    (
        "proxy",
        "proxy postgres -h {host} --via {via} --tls verify-ca --listen 127.0.0.1:0",
    ),
];

const MYSQL_CASES: &[(&str, &str)] = &[
    (
        "-e",
        "mysql -h {host} -u app --via {via} --tls verify-ca -e SELECT",
    ),
    (
        "URL ssl-mode",
        "mysql {url} --via {via} --tls verify-ca -e SELECT",
    ),
    ("env", "env mysql -h {host} -u app --tls verify-ca"),
];

#[test]
fn verify_ca_is_refused_for_public_roots_in_every_command() {
    let env = TestEnv::new();
    let ca = pki().ca_file.display().to_string();
    let db = Untouched::new();
    let via = db.via();
    let mut runs = Vec::new();
    for host in [PROXY, DSQL] {
        let url = format!("postgres://app@{host}/appdb?sslmode=verify-ca");
        runs.extend(POSTGRES_CASES.iter().map(|c| (host, url.clone(), *c)));
    }
    let url = format!("mysql://app@{PROXY}/appdb?ssl-mode=VERIFY_CA");
    runs.extend(MYSQL_CASES.iter().map(|c| (PROXY, url.clone(), *c)));
    for (host, url, (what, args)) in runs {
        let args = args
            .replace("{host}", host)
            .replace("{url}", &url)
            .replace("{via}", &via);
        let mut full = vec!["--ca-bundle", ca.as_str()];
        full.extend(args.split_whitespace());
        let run = env.run_with(
            &full,
            &[("PGPASSWORD", APP_PASSWORD), ("MYSQL_PWD", APP_PASSWORD)],
        );
        let what = format!("{host} {what}");
        refused(&run, &what);
        db.assert_untouched(&what);
    }
}

/// A --ca-bundle holding the Amazon Trust Services roots makes any name's
/// roots public: chain-only is refused for an instance name too.
#[test]
fn a_ca_bundle_with_public_roots_never_checks_the_chain_only() {
    let env = TestEnv::new();
    let dir = env.root.path();
    let amazon = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("certs/amazon-trust");
    let mut pem = std::fs::read_to_string(&pki().ca_file).unwrap();
    pem.push_str(&std::fs::read_to_string(amazon.join("Amazon_Root_CA_1.crt")).unwrap());
    let bundle = dir.join("mixed.pem");
    std::fs::write(&bundle, pem).unwrap();
    let bundle = bundle.display().to_string();
    let db = Untouched::new();
    let via = db.via();
    let run = env.run_with(
        &[
            "--ca-bundle",
            &bundle,
            "postgres",
            "-h",
            "mydb.c9akciq32abc.us-east-1.rds.amazonaws.com",
            "-U",
            "app",
            "--via",
            &via,
            "--tls",
            "verify-ca",
            "-c",
            "SELECT 1",
        ],
        &[("PGPASSWORD", APP_PASSWORD)],
    );
    refused(&run, "mixed bundle");
    assert!(
        run.stderr.contains("--ca-bundle file holds public roots"),
        "{}",
        run.stderr
    );
    db.assert_untouched("mixed bundle");
}

/// With verify-full (the only mode left for public roots), a certificate
/// from the stand-in CA for another name fails TLS (exit 5) and the server
/// never sees the password: PostgreSQL logs no authentication attempt.
#[test]
fn a_certificate_for_another_name_never_receives_the_password() {
    let env = TestEnv::new();
    let ca = pki().ca_file.display().to_string();
    let via = format!("127.0.0.1:{}", pg::server(Variant::Good).port);
    for host in [PROXY, DSQL] {
        let run = env.run_with(
            &[
                "--ca-bundle",
                &ca,
                "postgres",
                "-h",
                host,
                "-U",
                "app",
                "-d",
                "appdb",
                "--via",
                &via,
                "-c",
                "SELECT 1",
            ],
            &[("PGPASSWORD", "never-sent-password")],
        );
        run.assert_code(5);
        assert!(
            run.stderr.contains("not valid for"),
            "{host}: {}",
            run.stderr
        );
    }
}
