//! `rdsconn proxy` as a sidecar: health endpoints read with curl, the
//! drain on SIGTERM with its delays and exit codes, `/quitquitquit` with
//! `proxy shutdown`, `proxy wait`, systemd's notify socket, settings from
//! the environment, and the start-up connection test.

use std::net::TcpListener;
use std::os::unix::net::UnixDatagram;
use std::process::Command;
use std::time::Duration;

use crate::support::activity::{wait_for, wait_running};
use crate::support::pki::ENDPOINT;
use crate::support::proxy::{ProxyProc, psql_session};
use crate::support::server::{APP_PASSWORD, Variant, free_port};
use crate::support::{Run, TestEnv, pg};

fn pg_via() -> String {
    format!("127.0.0.1:{}", pg::server(Variant::Good).port)
}

/// `(status, body)` of `curl -X METHOD http://127.0.0.1:PORT/PATH`.
fn curl(method: &str, port: u16, path: &str) -> (u16, String) {
    let out = Command::new("curl")
        .args([
            "-s",
            "-X",
            method,
            "--max-time",
            "30",
            "-w",
            "\n%{http_code}",
            &format!("http://127.0.0.1:{port}{path}"),
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

fn proxy(env: &TestEnv, extra: &[&str], vars: &[(&str, &str)]) -> ProxyProc {
    let via = pg_via();
    let mut args = vec!["postgres", "-h", ENDPOINT, "--via", &via, "-u", "app"];
    args.extend_from_slice(extra);
    let mut all = vec![("PGPASSWORD", APP_PASSWORD)];
    all.extend_from_slice(vars);
    ProxyProc::start(env, &args, &all)
}

#[test]
fn health_endpoints_through_start_up_load_and_drain() {
    let env = TestEnv::new();
    let http = free_port().to_string();
    let mut p = proxy(
        &env,
        &[
            "--health-check",
            "--http-port",
            &http,
            "--max-connections",
            "1",
            "--min-sigterm-delay",
            "3s",
        ],
        &[],
    );
    let http: u16 = http.parse().unwrap();
    for path in ["/startup", "/liveness", "/readiness"] {
        let (code, body) = curl("GET", http, path);
        assert_eq!(code, 200, "{path}: {body}");
    }
    assert_eq!(curl("GET", http, "/nope").0, 404);
    assert_eq!(curl("POST", http, "/readiness").0, 405);

    // At --max-connections, readiness says why.
    let busy = psql_session(p.port(), "SELECT pg_sleep(60) AS sidecar_full");
    let pg_port = pg::server(Variant::Good).port;
    wait_running(&env, "postgres", pg_port, "sidecar_full");
    let (code, body) = curl("GET", http, "/readiness");
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("--max-connections 1"), "{body}");
    assert_eq!(curl("GET", http, "/liveness").0, 200);
    pg::admin_sql(
        Variant::Good,
        "SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE query LIKE '%sidecar_full%' AND pid <> pg_backend_pid();",
    );
    let _ = busy.join();

    // SIGTERM: readiness says no at once; during --min-sigterm-delay a new
    // client is still served; then the proxy exits 143.
    p.signal("TERM");
    wait_for("readiness to say draining", || {
        let (code, body) = curl("GET", http, "/readiness");
        code == 503 && body.contains("draining")
    });
    let late = psql_session(p.port(), "SELECT 41 + 1").join().unwrap();
    assert!(
        late.status.success(),
        "{}",
        String::from_utf8_lossy(&late.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&late.stdout).trim(), "42");
    let status = p.wait_exit(Duration::from_mins(1)).expect("still running");
    assert_eq!(status.code(), Some(143), "{}", p.log());
}

/// Readiness and start-up never dial the database: a listener in its
/// place sees no connection however often they are asked.
#[test]
fn readiness_never_dials_the_database() {
    let env = TestEnv::new();
    let db = TcpListener::bind("127.0.0.1:0").unwrap();
    db.set_nonblocking(true).unwrap();
    let via = db.local_addr().unwrap().to_string();
    let http = free_port();
    let http_s = http.to_string();
    let _p = ProxyProc::start(
        &env,
        &[
            "postgres",
            "-h",
            ENDPOINT,
            "--via",
            &via,
            "--health-check",
            "--http-port",
            &http_s,
        ],
        &[("PGPASSWORD", APP_PASSWORD)],
    );
    for _ in 0..5 {
        for path in ["/startup", "/readiness", "/liveness"] {
            assert_eq!(curl("GET", http, path).0, 200, "{path}");
        }
    }
    match db.accept() {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        other => panic!("the database was dialed: {other:?}"),
    }
}

/// `/quitquitquit` (sent by `rdsconn proxy shutdown`) stops the proxy as
/// SIGTERM does; `--exit-zero-on-sigterm` makes that exit 0; `proxy wait`
/// waits for `/startup`.
#[test]
fn quitquitquit_proxy_shutdown_and_proxy_wait() {
    let env = TestEnv::new();
    let (http, admin) = (free_port(), free_port());
    let (http_s, admin_s) = (http.to_string(), admin.to_string());
    let mut p = proxy(
        &env,
        &[
            "--health-check",
            "--http-port",
            &http_s,
            "--quitquitquit",
            "--admin-port",
            &admin_s,
        ],
        &[],
    );
    env.run(&["proxy", "wait", "--http-port", &http_s, "--max", "30s"])
        .assert_code(0);
    assert_eq!(curl("GET", admin, "/quitquitquit").0, 405);
    env.run(&["proxy", "shutdown", "--admin-port", &admin_s])
        .assert_code(0);
    let status = p.wait_exit(Duration::from_mins(1)).expect("still running");
    assert_eq!(status.code(), Some(143), "{}", p.log());
    assert!(p.log().contains("/quitquitquit"), "{}", p.log());

    // Nothing listens any more: wait gives up at --max, shutdown fails.
    let r = env.run(&["proxy", "wait", "--http-port", &http_s, "--max", "1s"]);
    r.assert_code(4);
    assert!(r.stderr.contains("did not start within 1s"), "{}", r.stderr);
    env.run(&["proxy", "shutdown", "--admin-port", &admin_s])
        .assert_code(4);

    let mut p = proxy(
        &env,
        &[
            "--quitquitquit",
            "--admin-port",
            &admin_s,
            "--exit-zero-on-sigterm",
        ],
        &[],
    );
    assert_eq!(curl("POST", admin, "/quitquitquit").0, 200);
    let status = p.wait_exit(Duration::from_mins(1)).expect("still running");
    assert_eq!(status.code(), Some(0), "{}", p.log());
}

/// With `NOTIFY_SOCKET`, systemd hears `READY=1` once the proxy accepts and
/// `STOPPING=1` when it drains; SIGINT exits 130.
#[test]
fn systemd_hears_ready_and_stopping() {
    let env = TestEnv::new();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify");
    let sock = UnixDatagram::bind(&path).unwrap();
    sock.set_read_timeout(Some(Duration::from_mins(1))).unwrap();
    let path_s = path.display().to_string();
    let mut p = proxy(&env, &[], &[("NOTIFY_SOCKET", &path_s)]);
    let mut buf = [0_u8; 256];
    let n = sock.recv(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"READY=1");
    p.signal("INT");
    let n = sock.recv(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"STOPPING=1");
    let status = p.wait_exit(Duration::from_mins(1)).expect("still running");
    assert_eq!(status.code(), Some(130));
}

/// A second signal ends the drain at once instead of waiting out
/// `--max-sigterm-delay`.
#[test]
fn a_second_signal_ends_the_drain_at_once() {
    let env = TestEnv::new();
    let mut p = proxy(&env, &["--max-sigterm-delay", "1h"], &[]);
    let busy = psql_session(p.port(), "SELECT pg_sleep(3600) AS sidecar_second");
    let pg_port = pg::server(Variant::Good).port;
    wait_running(&env, "postgres", pg_port, "sidecar_second");
    p.signal("TERM");
    p.wait_log("stopped accepting", Duration::from_mins(1));
    p.signal("TERM");
    let status = p.wait_exit(Duration::from_mins(2)).expect("still running");
    assert_eq!(status.code(), Some(143));
    let log = p.wait_log("shutdown grace period ended", Duration::from_mins(1));
    assert!(log.contains("closing every connection now"), "{log}");
    let out = busy.join().unwrap();
    assert!(!out.status.success());
}

/// Every proxy flag also comes from `RDSCONN_PROXY_<FLAG>`; a flag on the
/// command line wins.
#[test]
fn proxy_settings_come_from_the_environment() {
    let env = TestEnv::new();
    let via = pg_via();
    let (listen, http, other) = (free_port(), free_port(), free_port());
    let listen_s = format!("127.0.0.1:{listen}");
    let (http_s, other_s) = (http.to_string(), other.to_string());
    let _p = ProxyProc::start(
        &env,
        &["--http-port", &http_s],
        &[
            ("PGPASSWORD", APP_PASSWORD),
            ("RDSCONN_PROXY_ENGINE", "postgres"),
            ("RDSCONN_PROXY_HOST", ENDPOINT),
            ("RDSCONN_PROXY_VIA", &via),
            ("RDSCONN_PROXY_LISTEN", &listen_s),
            ("RDSCONN_PROXY_HEALTH_CHECK", "true"),
            ("RDSCONN_PROXY_HTTP_PORT", &other_s),
        ],
    );
    assert_eq!(curl("GET", http, "/readiness").0, 200);
    assert_eq!(
        curl("GET", other, "/readiness").0,
        0,
        "the variable lost to the flag"
    );
    let out = psql_session(listen, "SELECT 7").join().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "7");
    let help = env.run(&["proxy", "--help"]);
    assert!(
        help.stdout.contains("RDSCONN_PROXY_HEALTH_CHECK"),
        "{}",
        help.stdout
    );
}

/// `--run-connection-test` logs in once before listening: a refused login
/// is the exit code and the error, and nothing listens.
#[test]
fn the_connection_test_runs_before_listening() {
    let env = TestEnv::new();
    let via = pg_via();
    let ca = crate::support::server::pki().ca_file.display().to_string();
    let args = [
        "--ca-bundle",
        &ca,
        "proxy",
        "postgres",
        "-h",
        ENDPOINT,
        "--via",
        &via,
        "-u",
        "app",
        "--run-connection-test",
    ];
    let mut cmd = env.cmd(&args);
    cmd.env("PGPASSWORD", "wrong-password");
    let r = Run::from(cmd.output().unwrap());
    r.assert_code(6);
    assert!(r.stderr.contains("the connection test"), "{}", r.stderr);
    assert!(!r.stdout.contains("listening on"), "{}", r.stdout);
    let p = proxy(&env, &["--run-connection-test"], &[]);
    assert!(
        p.log().is_empty() || !p.log().contains("ERROR"),
        "{}",
        p.log()
    );
    let r = env.run_with(
        &["proxy", "postgres", "-h", ENDPOINT, "--run-connection-test"],
        &[("PGPASSWORD", APP_PASSWORD)],
    );
    r.assert_code(2);
    assert!(r.stderr.contains("-u USER"), "{}", r.stderr);
}

/// The value of the sample of `name` whose labels include every one of
/// `labels` (`key="value"`), if there is one.
fn sample(metrics: &str, name: &str, labels: &[&str]) -> Option<f64> {
    metrics
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        .find(|l| labels.iter().all(|want| l.contains(want)))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// `/metrics` after real traffic: promtool accepts it, and the counters
/// say what the test did (N logins → N).
#[test]
fn metrics_count_what_happened_and_promtool_accepts_them() {
    let env = TestEnv::new();
    let http = free_port();
    let http_s = http.to_string();
    let p = proxy(&env, &["--prometheus", "--http-port", &http_s], &[]);
    for _ in 0..3 {
        let out = psql_session(p.port(), "SELECT 1").join().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // Another user than the one served: refused by the proxy itself.
    let out = Command::new("psql")
        .args(["-X", "-c", "SELECT 1"])
        .arg(format!(
            "host=127.0.0.1 port={} user=other dbname=appdb sslmode=disable",
            p.port()
        ))
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .output()
        .unwrap();
    assert!(!out.status.success());
    // Each connection's line is logged once it has been counted.
    p.wait_log("connection 4 ", Duration::from_mins(1));
    let (code, body) = curl("GET", http, "/metrics");
    assert_eq!(code, 200, "{body}");

    crate::support::assert_promtool_accepts(&body);

    let pg = r#"engine="postgres""#;
    let ok = sample(
        &body,
        "rdsconn_upstream_logins_total",
        &[pg, r#"result="ok""#],
    );
    assert_eq!(ok, Some(3.0), "{body}");
    let accepted = sample(&body, "rdsconn_client_connections_total", &[pg]);
    assert_eq!(accepted, Some(4.0), "{body}");
    let open = sample(&body, "rdsconn_client_connections_open", &[pg]);
    assert_eq!(open, Some(0.0), "{body}");
    let refused = sample(
        &body,
        "rdsconn_client_logins_refused_total",
        &[pg, r#"reason="wrong_user""#],
    );
    assert_eq!(refused, Some(1.0), "{body}");
    let latency = sample(&body, "rdsconn_upstream_login_seconds_count", &[pg]);
    assert_eq!(latency, Some(3.0), "{body}");
    let up = sample(
        &body,
        "rdsconn_client_bytes_total",
        &[pg, r#"direction="up""#],
    );
    assert!(up.is_some_and(|b| b > 0.0), "{body}");
    assert!(
        sample(
            &body,
            "rdsconn_build_info",
            &[&format!("version=\"{}\"", env!("CARGO_PKG_VERSION"))]
        ) == Some(1.0),
        "{body}"
    );
    // Health endpoints are not served without --health-check.
    assert_eq!(curl("GET", http, "/readiness").0, 404);
}

/// A PostgreSQL startup packet for `user` (any bytes), sent raw.
fn startup_as(port: u16, user: &str) {
    let mut body = Vec::new();
    body.extend_from_slice(&196_608_u32.to_be_bytes());
    for (k, v) in [("user", user), ("database", "appdb")] {
        body.extend_from_slice(k.as_bytes());
        body.push(0);
        body.extend_from_slice(v.as_bytes());
        body.push(0);
    }
    body.push(0);
    let mut packet = u32::try_from(body.len() + 4)
        .unwrap()
        .to_be_bytes()
        .to_vec();
    packet.extend_from_slice(&body);
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    std::io::Write::write_all(&mut s, &packet).unwrap();
    s.set_read_timeout(Some(Duration::from_mins(1))).unwrap();
    let mut answer = Vec::new();
    let _ = std::io::Read::read_to_end(&mut s, &mut answer);
}

/// `--log-format json`: every line is one JSON object with a timestamp,
/// level and message; a connection's line carries its fields; a hostile
/// user name stays one escaped line; no secret. Text logs are stamped.
#[test]
fn json_logs_are_one_object_per_line_with_the_connections_fields() {
    let env = TestEnv::new();
    let p = proxy(&env, &["--log-format", "json"], &[]);
    let out = psql_session(p.port(), "SELECT 1").join().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The first connection's line comes when the proxy sees it end,
    // which may be after psql exits: wait for it before the second.
    p.wait_log(r#""connection":1"#, Duration::from_mins(1));
    startup_as(p.port(), "x\ny\u{1b}[31m");
    let log = p.wait_log(r#""connection":2"#, Duration::from_mins(1));
    let mut connections = Vec::new();
    for line in log.lines() {
        let j: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line:?}"));
        let ts = j["timestamp"].as_str().unwrap_or_else(|| panic!("{line}"));
        assert!(
            humantime::parse_rfc3339(ts).is_ok() && ts.ends_with('Z'),
            "{ts}"
        );
        assert!(j["level"].is_string() && j["message"].is_string(), "{line}");
        if j["connection"].is_u64() {
            connections.push(j);
        }
    }
    assert!(!log.contains(APP_PASSWORD), "{log}");
    assert_eq!(connections.len(), 2, "{log}");
    let ok = &connections[0];
    assert_eq!(ok["message"], "connection closed", "{ok}");
    assert_eq!(ok["user"], "app");
    assert_eq!(ok["database"], "appdb");
    assert!(ok["bytes_up"].as_u64().unwrap() > 0, "{ok}");
    assert!(
        ok["duration_ms"].as_f64().is_some() && ok["client"].is_string(),
        "{ok}"
    );
    let hostile = &connections[1];
    assert_eq!(hostile["level"], "WARN", "{hostile}");
    assert_eq!(hostile["user"], "x\\ny\\x1b[31m", "{hostile}");
    assert!(
        hostile["cause"]
            .as_str()
            .unwrap()
            .contains("serves the database user"),
        "{hostile}"
    );

    // Text logs carry the time.
    let p = proxy(&env, &[], &[]);
    let first = p.wait_log("forwarding to", Duration::from_mins(1));
    let stamp = first.split_whitespace().next().unwrap_or_default();
    assert!(humantime::parse_rfc3339(stamp).is_ok(), "{first}");
}

/// `/upstream` reports the last background login (every
/// `--upstream-check-interval`); readiness does not depend on it.
#[test]
fn upstream_reports_the_background_login_and_readiness_does_not_care() {
    let env = TestEnv::new();
    let http = free_port();
    let http_s = http.to_string();
    let good = proxy(
        &env,
        &[
            "--health-check",
            "--http-port",
            &http_s,
            "--upstream-check-interval",
            "1s",
        ],
        &[],
    );
    wait_for("the first upstream check", || {
        curl("GET", http, "/upstream").0 == 200
    });
    let (_, body) = curl("GET", http, "/upstream");
    assert!(body.starts_with("ok: upstream login"), "{body}");
    drop(good);

    let http = free_port();
    let http_s = http.to_string();
    let _bad = ProxyProc::start(
        &env,
        &[
            "postgres",
            "-h",
            ENDPOINT,
            "--via",
            &pg_via(),
            "-u",
            "app",
            "--health-check",
            "--http-port",
            &http_s,
            "--upstream-check-interval",
            "1s",
        ],
        &[("PGPASSWORD", "wrong-password")],
    );
    wait_for("the first upstream check", || {
        curl("GET", http, "/upstream").1.starts_with("failed")
    });
    let (code, body) = curl("GET", http, "/upstream");
    assert_eq!(code, 503);
    assert!(body.contains("password authentication failed"), "{body}");
    assert_eq!(curl("GET", http, "/readiness").0, 200);
}

/// `--config FILE` serves every `[targets.NAME]` in one process (here the
/// harness's PostgreSQL and MariaDB); logs and metrics carry the names; a
/// bad file is exit 2 naming its line.
#[test]
fn one_process_serves_the_targets_of_a_config_file() {
    let env = TestEnv::new();
    let (pg_listen, my_listen, http) = (free_port(), free_port(), free_port());
    let maria = crate::support::maria::server(Variant::Good).port;
    let file = env.root.path().join("proxy.toml");
    std::fs::write(
        &file,
        format!(
            "# two databases, one sidecar\n\
             [targets.orders]\nengine = \"postgres\"\nhost = \"{ENDPOINT}\"\nvia = \"{}\"\nuser = \"app\"\nlisten = \"127.0.0.1:{pg_listen}\"\n\n\
             [targets.billing]\nengine = \"mysql\"\nhost = \"{ENDPOINT}\"\nvia = \"127.0.0.1:{maria}\"\nlisten = [\"127.0.0.1:{my_listen}\"]\n",
            pg_via()
        ),
    )
    .unwrap();
    let file_s = file.display().to_string();
    let http_s = http.to_string();
    let p = ProxyProc::start(
        &env,
        &["--config", &file_s, "--prometheus", "--http-port", &http_s],
        &[("PGPASSWORD", APP_PASSWORD), ("MYSQL_PWD", APP_PASSWORD)],
    );
    let out = psql_session(pg_listen, "SELECT 'orders'").join().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "orders");
    let out = Command::new("mariadb")
        .args(["--no-defaults", "--protocol=TCP", "-h", "127.0.0.1", "-P"])
        .arg(my_listen.to_string())
        .args([
            "-u",
            "app",
            "-D",
            "appdb",
            "-N",
            "-B",
            "-e",
            "SELECT 'billing'",
        ])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "billing",
        "{}",
        p.log()
    );
    let log = p.wait_log("billing: connection 1 ", Duration::from_mins(1));
    assert!(log.contains("orders: connection 1 "), "{log}");
    let (_, metrics) = curl("GET", http, "/metrics");
    for t in ["orders", "billing"] {
        let n = sample(
            &metrics,
            "rdsconn_client_connections_total",
            &[&format!("target=\"{t}\"")],
        );
        assert_eq!(n, Some(1.0), "{t}: {metrics}");
    }

    for (text, line, needle) in [
        (
            "[targets.a]\nengine = \"postgres\"\nhost = \"h\"\nbogus = 1\n",
            4,
            "--bogus",
        ),
        (
            "[targets.a]\nengine = \"postgres\"\npassword = \"x\"\n",
            3,
            "password",
        ),
        (
            "[targets.a]\nengine = \"postgres\"\nport = \"nope\"\n",
            3,
            "--port",
        ),
        ("[targets.a\n", 1, ""),
    ] {
        std::fs::write(&file, text).unwrap();
        let r = env.run(&["proxy", "--config", &file_s]);
        r.assert_code(2);
        assert!(
            r.stderr.contains(&format!("proxy.toml:{line}:")) && r.stderr.contains(needle),
            "{text:?}: {}",
            r.stderr
        );
    }
    // Target flags belong in the file.
    let r = env.run(&["proxy", "postgres", "--config", &file_s]);
    r.assert_code(2);
    assert!(r.stderr.contains("[targets.NAME]"), "{}", r.stderr);
}
