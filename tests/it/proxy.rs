//! `rdsconn proxy` with real clients (psql, the mariadb client,
//! tokio-postgres, `mysql_async`) against the harness servers, which it
//! reaches through `--via` while verifying the endpoint name. The servers
//! refuse plaintext, so every session that works went over TLS.

use std::io::{BufRead, Write};
use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;

use crate::support::pki::ENDPOINT;
use crate::support::proxy::{Cutter, ProxyProc};
use crate::support::server::{
    APP_PASSWORD, IAM_ACCESS_KEY, IAM_REGION, IAM_SECRET_KEY, IAM_USER, TWIN_USER, Variant,
};
use crate::support::{Run, TestEnv, maria, pg};

const IAM_ENV: [(&str, &str); 3] = [
    ("AWS_ACCESS_KEY_ID", IAM_ACCESS_KEY),
    ("AWS_SECRET_ACCESS_KEY", IAM_SECRET_KEY),
    ("AWS_REGION", IAM_REGION),
];

fn pg_via() -> String {
    format!("127.0.0.1:{}", pg::server(Variant::Good).port)
}

fn maria_via() -> String {
    format!("127.0.0.1:{}", maria::server(Variant::Good).port)
}

/// `proxy postgres -h ENDPOINT --via … EXTRA…` with the app password.
fn pg_proxy(env: &TestEnv, extra: &[&str], vars: &[(&str, &str)]) -> ProxyProc {
    let via = pg_via();
    let mut args = vec!["postgres", "-h", ENDPOINT, "--via", &via];
    args.extend_from_slice(extra);
    let mut all = vec![("PGPASSWORD", APP_PASSWORD)];
    all.extend_from_slice(vars);
    ProxyProc::start(env, &args, &all)
}

fn pg_iam_proxy(env: &TestEnv, extra: &[&str]) -> ProxyProc {
    let via = pg_via();
    // TARGET as HOST:PORT.
    let target = format!("{ENDPOINT}:5432");
    let mut args = vec!["postgres", &target, "--via", &via, "--iam"];
    args.extend_from_slice(extra);
    ProxyProc::start(env, &args, &IAM_ENV)
}

fn maria_proxy(env: &TestEnv, extra: &[&str]) -> ProxyProc {
    let via = maria_via();
    let mut args = vec!["mysql", "-h", ENDPOINT, "--via", &via];
    args.extend_from_slice(extra);
    ProxyProc::start(env, &args, &[("MYSQL_PWD", APP_PASSWORD)])
}

fn maria_iam_proxy(env: &TestEnv, extra: &[&str]) -> ProxyProc {
    let via = maria_via();
    let mut args = vec!["mysql", "-h", ENDPOINT, "--via", &via, "--iam"];
    args.extend_from_slice(extra);
    ProxyProc::start(env, &args, &IAM_ENV)
}

/// psql against the proxy; no password of its own unless `password`.
fn psql(proxy: &ProxyProc, user: &str, password: Option<&str>, sql: &str) -> Run {
    let mut cmd = Command::new("psql");
    cmd.args([
        "-X",
        "-A",
        "-t",
        "-v",
        "ON_ERROR_STOP=1",
        "-c",
        sql,
        &format!(
            "host=127.0.0.1 port={} user={user} dbname=appdb sslmode=disable connect_timeout=60",
            proxy.port()
        ),
    ])
    .env_clear()
    .env("PATH", std::env::var_os("PATH").unwrap_or_default());
    if let Some(p) = password {
        cmd.env("PGPASSWORD", p);
    }
    Run::from(cmd.output().unwrap())
}

fn mariadb(proxy: &ProxyProc, user: &str, sql: &str) -> Run {
    mariadb_in(proxy, user, "appdb", sql)
}

/// The mariadb client through the proxy as `user` in `database`.
fn mariadb_in(proxy: &ProxyProc, user: &str, database: &str, sql: &str) -> Run {
    maria::client(proxy.port(), user, database, sql)
}

fn pg_config(proxy: &ProxyProc, user: &str) -> tokio_postgres::Config {
    let mut c = tokio_postgres::Config::new();
    c.host("127.0.0.1")
        .port(proxy.port())
        .user(user)
        .dbname("appdb")
        .ssl_mode(tokio_postgres::config::SslMode::Disable)
        .connect_timeout(Duration::from_mins(1));
    c
}

async fn pg_connect(proxy: &ProxyProc, user: &str) -> tokio_postgres::Client {
    let (client, conn) = pg_config(proxy, user)
        .connect(tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("connecting through the proxy: {e}\n{}", proxy.log()));
    tokio::spawn(conn);
    client
}

/// Waits until the server runs `query` (seen in `pg_stat_activity` by a
/// connection of its own), so that what a test does next happens to a
/// running statement. The bound only fires on a real hang.
async fn wait_until_running(proxy: &ProxyProc, query: &str) {
    let watcher = pg_connect(proxy, "app").await;
    let start = Instant::now();
    loop {
        let n: i64 = watcher
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE query = $1 AND state = 'active'",
                &[&query],
            )
            .await
            .unwrap()
            .get(0);
        if n > 0 {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_mins(1),
            "the server never ran {query:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn my_opts(proxy: &ProxyProc, user: &str, pass: Option<&str>) -> mysql_async::Opts {
    mysql_async::OptsBuilder::default()
        .ip_or_hostname("127.0.0.1")
        .tcp_port(proxy.port())
        .user(Some(user))
        .pass(pass)
        .db_name(Some("appdb"))
        .prefer_socket(false)
        .into()
}

/// No token in what the proxy logged (at -vvv) or the client saw.
fn assert_no_token(text: &str) {
    for marker in ["X-Amz-Signature", "X-Amz-Credential", "Action=connect"] {
        assert!(
            !text.contains(marker),
            "token material ({marker}) in:\n{text}"
        );
    }
}

// --- PostgreSQL ---------------------------------------------------------

#[test]
fn psql_through_the_proxy_with_a_password_and_with_iam() {
    let env = TestEnv::new();
    let proxy = pg_proxy(&env, &[], &[]);
    let run = psql(
        &proxy,
        "app",
        None,
        "SELECT current_user, ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
    );
    run.assert_code(0);
    // The server saw this session over TLS.
    assert_eq!(run.stdout.trim(), "app|t", "{}", proxy.log());

    let iam = pg_iam_proxy(&env, &[]);
    let run = psql(&iam, IAM_USER, None, "SELECT current_user");
    run.assert_code(0);
    assert_eq!(run.stdout.trim(), IAM_USER);
    let log = iam.wait_log("connection 1 ", Duration::from_mins(1));
    assert!(
        log.contains(&format!("user {IAM_USER}, database appdb")),
        "{log}"
    );
    assert!(log.contains("tls+auth"), "{log}");
    assert_no_token(&log);
}

#[tokio::test(flavor = "multi_thread")]
async fn tokio_postgres_prepared_statement_transaction_and_large_result() {
    let env = TestEnv::new();
    let proxy = pg_iam_proxy(&env, &[]);
    let client = pg_connect(&proxy, IAM_USER).await;

    let stmt = client
        .prepare("SELECT $1::int + 1, $2::text")
        .await
        .unwrap();
    let row = client.query_one(&stmt, &[&41_i32, &"x"]).await.unwrap();
    assert_eq!(row.get::<_, i32>(0), 42);
    assert_eq!(row.get::<_, &str>(1), "x");

    client
        .batch_execute("CREATE TEMP TABLE t (n int)")
        .await
        .unwrap();
    client
        .batch_execute("BEGIN; INSERT INTO t VALUES (1); ROLLBACK;")
        .await
        .unwrap();
    client
        .batch_execute("BEGIN; INSERT INTO t VALUES (2); COMMIT;")
        .await
        .unwrap();
    let n: i64 = client
        .query_one("SELECT count(*) FROM t WHERE n = 2", &[])
        .await
        .unwrap()
        .get(0);
    let rolled_back: i64 = client
        .query_one("SELECT count(*) FROM t WHERE n = 1", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!((n, rolled_back), (1, 0));

    // 60 000 rows of 1000 bytes: 60 MB through the proxy.
    let rows = client
        .query(
            "SELECT repeat(chr(65 + (g % 26)), 1000) FROM generate_series(1, 60000) g",
            &[],
        )
        .await
        .unwrap();
    let bytes: usize = rows.iter().map(|r| r.get::<_, &str>(0).len()).sum();
    assert_eq!(bytes, 60_000_000);
    assert_eq!(rows[25].get::<_, &str>(0), "A".repeat(1000));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cancel_request_reaches_the_server() {
    let env = TestEnv::new();
    let proxy = pg_proxy(&env, &[], &[]);
    let mut config = pg_config(&proxy, "app");
    config.password(APP_PASSWORD);
    let (client, conn) = config.connect(tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    let cancel = client.cancel_token();
    let start = Instant::now();
    let query = tokio::spawn(async move { client.simple_query("SELECT pg_sleep(300)").await });
    wait_until_running(&proxy, "SELECT pg_sleep(300)").await;
    cancel.cancel_query(tokio_postgres::NoTls).await.unwrap();
    let err = query.await.unwrap().unwrap_err();
    assert_eq!(
        err.code(),
        Some(&tokio_postgres::error::SqlState::QUERY_CANCELED),
        "{err}"
    );
    assert!(start.elapsed() < Duration::from_mins(2));
    let log = proxy.wait_log("cancel request forwarded", Duration::from_mins(1));
    assert!(log.contains("cancel request forwarded"), "{log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn two_hundred_concurrent_clients() {
    let env = TestEnv::new();
    let proxy = pg_proxy(&env, &[], &[]);
    let mut config = pg_config(&proxy, "app");
    config.password("ignored: the proxy logs in with its own");
    let clients = crate::support::proxy::concurrent_sessions(&proxy, &config, 200).await;
    let mut pids: Vec<i32> = clients.iter().map(|(_, p)| *p).collect();
    pids.sort_unstable();
    pids.dedup();
    // 200 clients open at once, each with its own server session.
    assert_eq!(pids.len(), 200);
    for (client, _) in &clients {
        client.simple_query("SELECT 1").await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_leaves_mid_query_ends_its_server_session() {
    let env = TestEnv::new();
    let proxy = pg_proxy(&env, &[], &[]);
    let (client, conn) = pg_config(&proxy, "app")
        .connect(tokio_postgres::NoTls)
        .await
        .unwrap();
    let conn = tokio::spawn(conn);
    client
        .batch_execute("SET client_connection_check_interval = '100ms'")
        .await
        .unwrap();
    let query = tokio::spawn(async move { client.simple_query("SELECT pg_sleep(600)").await });
    wait_until_running(&proxy, "SELECT pg_sleep(600)").await;
    // The client goes away: its socket closes mid-query.
    query.abort();
    conn.abort();
    let _ = query.await;
    let _ = conn.await;

    let watcher = pg_connect(&proxy, "app").await;
    let start = Instant::now();
    loop {
        let n: i64 = watcher
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(600)'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        if n == 0 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_mins(2),
            "the server still runs the abandoned query\n{}",
            proxy.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_server_dying_mid_session_fails_that_client_only() {
    let env = TestEnv::new();
    let cutter = Cutter::new(pg::server(Variant::Good).port);
    let via = format!("127.0.0.1:{}", cutter.port);
    let proxy = ProxyProc::start(
        &env,
        &["postgres", "-h", ENDPOINT, "--via", &via],
        &[("PGPASSWORD", APP_PASSWORD)],
    );
    let victim = pg_connect(&proxy, "app").await;
    victim.simple_query("SELECT 1").await.unwrap();
    let query = tokio::spawn(async move { victim.simple_query("SELECT pg_sleep(300)").await });
    wait_until_running(&proxy, "SELECT pg_sleep(300)").await;
    let start = Instant::now();
    cutter.cut();
    let err = query.await.unwrap().unwrap_err();
    assert!(start.elapsed() < Duration::from_mins(2), "{err}");
    // The proxy serves the next client.
    let next = pg_connect(&proxy, "app").await;
    let rows = next.simple_query("SELECT 2").await.unwrap();
    assert!(!rows.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_stops_accepting_and_drains_open_sessions() {
    let env = TestEnv::new();
    let mut proxy = pg_proxy(&env, &["--shutdown-grace", "30s"], &[]);
    let client = pg_connect(&proxy, "app").await;
    client.batch_execute("BEGIN").await.unwrap();
    proxy.signal("TERM");
    // Logged once the listeners are closed.
    proxy.wait_log("stopped accepting", Duration::from_mins(1));
    // New connections are refused…
    let refused = pg_config(&proxy, "app")
        .connect(tokio_postgres::NoTls)
        .await;
    assert!(refused.is_err(), "a connection after SIGTERM was accepted");
    // …the open one goes on…
    client.batch_execute("SELECT 1; COMMIT").await.unwrap();
    assert!(proxy.wait_exit(Duration::from_millis(300)).is_none());
    // …and the proxy exits as soon as it ends, well before the grace.
    drop(client);
    let status = proxy
        .wait_exit(Duration::from_mins(1))
        .expect("still running");
    // 128 + SIGTERM, as shells report it (0 with --exit-zero-on-sigterm).
    assert_eq!(status.code(), Some(143), "{status}\n{}", proxy.log());

    // A session still open when the grace ends is closed.
    let mut proxy = pg_proxy(&env, &["--shutdown-grace", "1s"], &[]);
    let client = pg_connect(&proxy, "app").await;
    let start = Instant::now();
    proxy.signal("INT");
    let status = proxy
        .wait_exit(Duration::from_mins(1))
        .expect("still running");
    assert_eq!(status.code(), Some(130));
    assert!(start.elapsed() >= Duration::from_millis(900));
    assert!(client.simple_query("SELECT 1").await.is_err());
}

#[test]
fn threads_is_bounded_and_one_worker_serves() {
    let env = TestEnv::new();
    for bad in ["0", "1025", "many"] {
        let run = env.run(&["proxy", "postgres", "-h", ENDPOINT, "--threads", bad]);
        run.assert_code(2);
        assert!(run.stderr.contains("--threads"), "{}", run.stderr);
    }
    let proxy = pg_proxy(&env, &["--threads", "1"], &[]);
    let run = psql(&proxy, "app", None, "SELECT current_user");
    run.assert_code(0);
    assert_eq!(run.stdout.trim(), "app");
}

#[test]
fn max_connections_and_the_local_password() {
    let env = TestEnv::new();
    let proxy = pg_proxy(
        &env,
        &["--max-connections", "1", "--local-password"],
        &[("RDSCONN_LOCAL_PASSWORD", "local secret")],
    );
    let wrong = psql(&proxy, "app", Some("nope"), "SELECT 1");
    assert_ne!(wrong.code, 0);
    assert!(wrong.stderr.contains("local password"), "{}", wrong.stderr);
    // The app password is for the server, not for the proxy's clients.
    let app_pw = psql(&proxy, "app", Some(APP_PASSWORD), "SELECT 1");
    assert_ne!(app_pw.code, 0);
    let run = psql(&proxy, "app", Some("local secret"), "SELECT current_user");
    run.assert_code(0);
    assert_eq!(run.stdout.trim(), "app");

    // One connection held open: the next is turned away. psql reads its
    // statements from a pipe; its answer to the first one shows that it is
    // logged in and holds the proxy's only slot.
    let mut held = Command::new("psql")
        .args([
            "-X",
            "-A",
            "-t",
            &format!(
                "host=127.0.0.1 port={} user=app dbname=appdb sslmode=disable",
                proxy.port()
            ),
        ])
        .env("PGPASSWORD", "local secret")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = held.stdin.take().unwrap();
    stdin.write_all(b"SELECT 'held';\n").unwrap();
    stdin.flush().unwrap();
    let mut line = String::new();
    std::io::BufReader::new(held.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line, "held\n");
    let busy = psql(&proxy, "app", Some("local secret"), "SELECT 1");
    assert_ne!(busy.code, 0);
    assert!(
        busy.stderr.contains("too many connections"),
        "{}",
        busy.stderr
    );
    drop(stdin);
    assert!(held.wait().unwrap().success());
}

#[test]
fn unix_socket_listener_and_loopback_only_by_default() {
    let env = TestEnv::new();
    let dir = env.root.path().join("sock");
    let socket = dir.join(".s.PGSQL.5432");
    let listen = format!("unix:{}", socket.display());
    let mut proxy = pg_proxy(&env, &["--listen", &listen, "--listen", "127.0.0.1:0"], &[]);
    assert_eq!(proxy.addrs.len(), 2);
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&socket), 0o600);
    let out = Command::new("psql")
        .args(["-X", "-A", "-t", "-h"])
        .arg(&dir)
        .args([
            "-p",
            "5432",
            "-U",
            "app",
            "-d",
            "appdb",
            "-c",
            "SELECT current_user",
        ])
        .output()
        .unwrap();
    let run = Run::from(out);
    run.assert_code(0);
    assert_eq!(run.stdout.trim(), "app");
    proxy.signal("TERM");
    assert!(proxy.wait_exit(Duration::from_mins(1)).is_some());
    assert!(!socket.exists(), "the socket file outlived the proxy");

    // An open directory is refused, as is the network without --allow-remote.
    let open = env.root.path().join("open");
    std::fs::create_dir(&open).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o755)).unwrap();
    let ca = crate::support::server::pki().ca_file.display().to_string();
    let via = pg_via();
    let base = [
        "--ca-bundle",
        &ca,
        "proxy",
        "pg",
        "-h",
        ENDPOINT,
        "--via",
        &via,
    ];
    let listen = format!("unix:{}/s", open.display());
    let mut args = base.to_vec();
    args.extend(["--listen", &listen]);
    let run = env.run_with(&args, &[("PGPASSWORD", "x")]);
    run.assert_code(2);
    assert!(run.stderr.contains("0700"), "{}", run.stderr);
    let mut args = base.to_vec();
    args.extend(["--listen", "0.0.0.0:0"]);
    let run = env.run_with(&args, &[("PGPASSWORD", "x")]);
    run.assert_code(2);
    assert!(run.stderr.contains("--allow-remote"), "{}", run.stderr);
}

#[test]
fn the_token_never_reaches_the_client() {
    use std::io::{Read, Write};
    let env = TestEnv::new();
    let proxy = pg_iam_proxy(&env, &[]);
    // A raw client: everything the proxy sends it, up to ReadyForQuery.
    let mut s = std::net::TcpStream::connect(("127.0.0.1", proxy.port())).unwrap();
    s.set_read_timeout(Some(Duration::from_mins(1))).unwrap();
    let mut body = Vec::new();
    body.extend_from_slice(&196_608_u32.to_be_bytes());
    body.extend_from_slice(format!("user\0{IAM_USER}\0database\0appdb\0\0").as_bytes());
    let mut startup = u32::try_from(body.len() + 4)
        .unwrap()
        .to_be_bytes()
        .to_vec();
    startup.extend_from_slice(&body);
    s.write_all(&startup).unwrap();
    let mut seen = Vec::new();
    let mut buf = [0_u8; 4096];
    while !seen.windows(6).any(|w| w == [b'Z', 0, 0, 0, 5, b'I']) {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&seen));
        seen.extend_from_slice(&buf[..n]);
    }
    // AuthenticationOk reached the client; no password request did.
    assert!(
        seen.starts_with(&[b'R', 0, 0, 0, 8, 0, 0, 0, 0]),
        "{seen:?}"
    );
    assert_no_token(&String::from_utf8_lossy(&seen));
    s.write_all(&[b'X', 0, 0, 0, 4]).unwrap();
    // The connection's log line is written when both sides have closed.
    drop(s);
    let log = proxy.wait_log("connection 1 ", Duration::from_mins(1));
    assert!(log.contains("connection 1 "), "{log}");
    assert_no_token(&log);
    assert!(log.contains("minted an IAM token"), "{log}");
}

// --- MySQL / MariaDB ------------------------------------------------------

/// Regression: a failing upstream login reached MySQL clients as error
/// 2013 (a client-side code), which libmariadb clients turned into "ERROR
/// 2027 (HY000): Received malformed packet". The server's own ERR packet
/// goes through; rdsconn's own failures are a server-side code with the
/// cause chain.
#[test]
fn mysql_clients_get_the_servers_error_or_rdsconns_as_a_server_error() {
    let env = TestEnv::new();
    let proxy = maria_proxy(&env, &[]);
    let run = mariadb_in(&proxy, "app", "no_such_db", "SELECT 1");
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr.contains("ERROR 1044 (42000)") && run.stderr.contains("no_such_db"),
        "{}",
        run.stderr
    );

    // TLS refused upstream (the certificate names another host): the
    // greeting came from the cache, the login fails after the handshake.
    // Nothing listens upstream: refused in place of a greeting.
    let wrong = format!("127.0.0.1:{}", maria::server(Variant::WrongName).port);
    let closed = format!("127.0.0.1:{}", crate::support::server::free_port());
    for (via, needles) in [
        (&wrong, ["ERROR 1152", "rdsconn: "]),
        (&closed, ["1152", "Connection refused"]),
    ] {
        let proxy = ProxyProc::start(
            &env,
            &["mysql", "-h", ENDPOINT, "--via", via],
            &[("MYSQL_PWD", APP_PASSWORD)],
        );
        let run = mariadb(&proxy, "app", "SELECT 1");
        assert_eq!(run.code, 1, "{}", run.stderr);
        for needle in needles {
            assert!(run.stderr.contains(needle), "{}", run.stderr);
        }
        assert!(!run.stderr.contains("2027"), "{}", run.stderr);
        // An error in place of the greeting has no SQL state marker
        // (clients have not said they read one yet).
        assert!(!run.stderr.contains("#HY000"), "{}", run.stderr);
    }
}

/// Regression: about a third of normal MySQL session ends were logged as
/// WARN "peer closed connection without sending TLS `close_notify`", and a
/// client that opened with TLS got "invalid startup packet length
/// 369295622".
#[test]
fn normal_session_ends_are_not_warnings_and_tls_clients_are_told_why() {
    let env = TestEnv::new();
    let proxy = maria_proxy(&env, &[]);
    for _ in 0..10 {
        mariadb(&proxy, "app", "SELECT 1").assert_code(0);
    }
    let log = proxy.wait_log_lines(" from 127.0.0.1:", 10, Duration::from_mins(1));
    let ends: Vec<&str> = log
        .lines()
        .filter(|l| l.contains(" from 127.0.0.1:"))
        .collect();
    assert_eq!(ends.len(), 10, "{log}");
    assert!(ends.iter().all(|l| l.contains("INFO")), "{log}");
    assert!(!log.contains("close_notify"), "{log}");
    // No ANSI colour: stderr is a file here.
    assert!(!log.contains('\x1b'), "{log:?}");

    let proxy = pg_proxy(&env, &[], &[]);
    let mut s = std::net::TcpStream::connect(("127.0.0.1", proxy.port())).unwrap();
    // The start of a TLS ClientHello record.
    std::io::Write::write_all(
        &mut s,
        &[0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc],
    )
    .unwrap();
    let mut answer = Vec::new();
    s.set_read_timeout(Some(Duration::from_mins(1))).unwrap();
    let _ = std::io::Read::read_to_end(&mut s, &mut answer);
    let log = proxy.wait_log("connection 1 ", Duration::from_mins(1));
    assert!(log.contains("started a TLS handshake"), "{log}");
    assert!(!log.contains("invalid startup packet length"), "{log}");
}

#[test]
fn the_mariadb_client_through_the_proxy_with_a_password_and_with_iam() {
    let env = TestEnv::new();
    let proxy = maria_proxy(&env, &[]);
    let run = mariadb(
        &proxy,
        "app",
        "SELECT CURRENT_USER(), VARIABLE_VALUE FROM information_schema.SESSION_STATUS \
         WHERE VARIABLE_NAME = 'SSL_VERSION'",
    );
    run.assert_code(0);
    let out = run.stdout.trim();
    assert!(out.starts_with("app@%\tTLSv1."), "{out}\n{}", proxy.log());

    let iam = maria_iam_proxy(&env, &[]);
    let run = mariadb(&iam, IAM_USER, "SELECT CURRENT_USER()");
    run.assert_code(0);
    assert_eq!(run.stdout.trim(), format!("{IAM_USER}@%"));
    let log = iam.wait_log("connection 1 ", Duration::from_mins(1));
    assert!(
        log.contains(&format!("user {IAM_USER}, database appdb")),
        "{log}"
    );
    assert_no_token(&log);
}

#[tokio::test(flavor = "multi_thread")]
async fn mysql_async_statements_large_result_change_user_and_reset() {
    let env = TestEnv::new();
    let proxy = maria_proxy(&env, &[]);
    let mut conn = mysql_async::Conn::new(my_opts(&proxy, "app", None))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", proxy.log()));

    // Prepared statement (binary protocol).
    let got: Option<(i64, String)> = conn
        .exec_first("SELECT ? + 1, CONCAT('a', ?)", (41, "b"))
        .await
        .unwrap();
    assert_eq!(got, Some((42, "ab".into())));

    // A transaction on a temporary table.
    conn.query_drop("CREATE TEMPORARY TABLE t (n INT) ENGINE=InnoDB")
        .await
        .unwrap();
    conn.query_drop("START TRANSACTION").await.unwrap();
    conn.query_drop("INSERT INTO t VALUES (1)").await.unwrap();
    conn.query_drop("ROLLBACK").await.unwrap();
    conn.query_drop("INSERT INTO t VALUES (2)").await.unwrap();
    let ns: Vec<i64> = conn.query("SELECT n FROM t").await.unwrap();
    assert_eq!(ns, vec![2]);

    // 60 MB in 60 000 rows.
    conn.query_drop("SET SESSION max_recursive_iterations = 100000")
        .await
        .unwrap();
    let rows: Vec<String> = conn
        .query(
            "WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < 60000) \
             SELECT REPEAT(CHAR(65 + n % 26), 1000) FROM g",
        )
        .await
        .unwrap();
    assert_eq!(rows.iter().map(String::len).sum::<usize>(), 60_000_000);
    assert_eq!(rows[0], "B".repeat(1000));
    conn.disconnect().await.unwrap();

    let proxy = maria_iam_proxy(&env, &[]);
    let mut conn = mysql_async::Conn::new(my_opts(&proxy, IAM_USER, None))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", proxy.log()));
    // COM_CHANGE_USER: a new login upstream (fresh token), session state gone.
    conn.query_drop("SET @marker = 7").await.unwrap();
    conn.change_user(mysql_async::ChangeUserOpts::default())
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", proxy.log()));
    let after: Option<(Option<i64>, String)> = conn
        .query_first("SELECT @marker, CURRENT_USER()")
        .await
        .unwrap();
    assert_eq!(after, Some((None, format!("{IAM_USER}@%"))));

    // COM_RESET_CONNECTION goes through.
    conn.query_drop("SET @marker = 8").await.unwrap();
    conn.reset().await.unwrap();
    let after: Option<Option<i64>> = conn.query_first("SELECT @marker").await.unwrap();
    assert_eq!(after, Some(None));
    conn.disconnect().await.unwrap();
    assert_no_token(&proxy.log());
}

/// Regression: `-u USER` was enforced at login only; a client logged in as
/// USER could become any other user with `COM_CHANGE_USER`, for whom the
/// proxy then logged in with its password (or minted a token).
#[tokio::test(flavor = "multi_thread")]
async fn only_user_holds_for_change_user_and_every_login() {
    let env = TestEnv::new();
    // Password mode: the twin user has the same password, so only the
    // proxy's own rule can stop the switch.
    let proxy = maria_proxy(&env, &["-u", "app"]);
    let mut conn = mysql_async::Conn::new(my_opts(&proxy, "app", None))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", proxy.log()));
    let err = conn
        .change_user(mysql_async::ChangeUserOpts::default().with_user(Some(TWIN_USER.to_string())))
        .await
        .expect_err("COM_CHANGE_USER to another user went through");
    assert!(err.to_string().contains("1045"), "{err}");
    assert!(err.to_string().contains("rdsconn proxy serves"), "{err}");
    let log = proxy.wait_log(
        &format!("refused database user \"{TWIN_USER}\""),
        Duration::from_mins(1),
    );
    assert!(
        log.contains(&format!("refused database user \"{TWIN_USER}\"")),
        "{log}"
    );
    // A direct login as the twin is refused too, and the proxy goes on
    // serving its user.
    let direct = mysql_async::Conn::new(my_opts(&proxy, TWIN_USER, None)).await;
    assert!(direct.is_err(), "the twin logged in");
    let mut conn = mysql_async::Conn::new(my_opts(&proxy, "app", None))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", proxy.log()));
    let who: Option<String> = conn.query_first("SELECT CURRENT_USER()").await.unwrap();
    assert_eq!(who.as_deref(), Some("app@%"));

    // IAM mode: no token is minted for another user.
    let proxy = maria_iam_proxy(&env, &["-u", IAM_USER]);
    let mut conn = mysql_async::Conn::new(my_opts(&proxy, IAM_USER, None))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", proxy.log()));
    let err = conn
        .change_user(mysql_async::ChangeUserOpts::default().with_user(Some("app".to_string())))
        .await
        .expect_err("COM_CHANGE_USER to another user went through");
    assert!(err.to_string().contains("rdsconn proxy serves"), "{err}");
    let log = proxy.wait_log("refused database user \"app\"", Duration::from_mins(1));
    assert_eq!(log.matches("minted an IAM token").count(), 1, "{log}");

    // PostgreSQL: the startup packet's user.
    let proxy = pg_proxy(&env, &["-u", "app"], &[]);
    let run = psql(&proxy, TWIN_USER, None, "SELECT current_user");
    assert_ne!(run.code, 0, "{}", run.stdout);
    assert!(
        run.stderr.contains("rdsconn proxy serves"),
        "{}",
        run.stderr
    );
    let run = psql(&proxy, "app", None, "SELECT current_user");
    run.assert_code(0);
}

/// The proxy greets a client before it dials upstream, so the connection
/// id in the greeting is its own; `KILL QUERY` with that id (what the
/// mysql client sends on Ctrl-C) reaches the server's session.
#[tokio::test(flavor = "multi_thread")]
async fn kill_query_with_the_greeting_id_reaches_the_session() {
    let env = TestEnv::new();
    let proxy = maria_proxy(&env, &[]);
    let mut victim = mysql_async::Conn::new(my_opts(&proxy, "app", None))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", proxy.log()));
    let greeted_id = victim.id();
    let sleeping = tokio::spawn(async move {
        let r: Result<Option<i64>, _> = victim.query_first("SELECT SLEEP(300)").await;
        r
    });
    let mut killer = mysql_async::Conn::new(my_opts(&proxy, "app", None))
        .await
        .unwrap();
    let start = Instant::now();
    loop {
        let n: Option<i64> = killer
            .query_first(
                "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE INFO = 'SELECT SLEEP(300)'",
            )
            .await
            .unwrap();
        if n == Some(1) {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_mins(1),
            "the query never ran"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    killer
        .query_drop(format!("KILL QUERY {greeted_id}"))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", proxy.log()));
    // SLEEP() interrupted by KILL QUERY returns 1 (or the query fails).
    let result = sleeping.await.unwrap();
    assert!(
        matches!(result, Ok(Some(1)) | Err(_)),
        "the sleep was not interrupted: {result:?}"
    );
    assert!(start.elapsed() < Duration::from_mins(2));
}

#[tokio::test(flavor = "multi_thread")]
async fn mysql_two_hundred_concurrent_clients_and_a_dying_server() {
    let env = TestEnv::new();
    let cutter = Cutter::new(maria::server(Variant::Good).port);
    let via = format!("127.0.0.1:{}", cutter.port);
    let proxy = ProxyProc::start(
        &env,
        &["mysql", "-h", ENDPOINT, "--via", &via],
        &[("MYSQL_PWD", APP_PASSWORD)],
    );
    let opts = my_opts(&proxy, "app", None);
    let mut tasks = Vec::new();
    for _ in 0..200 {
        let opts = opts.clone();
        tasks.push(tokio::spawn(async move {
            let mut conn = mysql_async::Conn::new(opts).await?;
            let id: Option<u64> = conn.query_first("SELECT CONNECTION_ID()").await?;
            Ok::<_, mysql_async::Error>((conn, id.unwrap_or_default()))
        }));
    }
    let mut conns = Vec::new();
    for t in tasks {
        conns.push(
            t.await
                .unwrap()
                .unwrap_or_else(|e| panic!("{e}\n{}", proxy.log())),
        );
    }
    let mut ids: Vec<u64> = conns.iter().map(|(_, id)| *id).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 200);
    // Each client was greeted with an id of its own (the proxy's: it
    // greets before it dials; KILL with it is mapped to the server's id).
    let mut greeted: Vec<u32> = conns.iter().map(|(c, _)| c.id()).collect();
    greeted.sort_unstable();
    greeted.dedup();
    assert_eq!(greeted.len(), 200);

    // The server "dies" under all of them: each client gets an error.
    cutter.cut();
    for (conn, _) in &mut conns {
        assert!(conn.query_drop("SELECT 1").await.is_err());
    }
    // The proxy serves the next client.
    let mut next = mysql_async::Conn::new(opts.clone()).await.unwrap();
    let one: Option<i64> = next.query_first("SELECT 1").await.unwrap();
    assert_eq!(one, Some(1));
}

/// The client learns why, on one line with the layer and the cause (the
/// PostgreSQL side showed only "connecting to 127.0.0.1:1"), and the log
/// line says the same; a client that insists on TLS on the local hop is
/// told what to change; a server that ends a session the client did not
/// end is a warning with the cause, not a normal close.
#[test]
fn proxy_errors_carry_the_layer_and_the_cause() {
    let env = TestEnv::new();
    let proxy = ProxyProc::start(
        &env,
        &["postgres", "-h", ENDPOINT, "--via", "127.0.0.1:1"],
        &[("PGPASSWORD", APP_PASSWORD)],
    );
    let r = psql(&proxy, "app", None, "SELECT 1");
    assert_ne!(r.code, 0);
    assert!(
        r.stderr.contains("rdsconn: connecting to 127.0.0.1:1") && r.stderr.contains("refused"),
        "{}",
        r.stderr
    );
    let log = proxy.wait_log("connection 1 ", Duration::from_mins(1));
    let line = log.lines().find(|l| l.contains("connection 1 ")).unwrap();
    assert!(line.contains("WARN") && line.contains("refused"), "{log}");

    // sslmode=require on the local hop.
    let proxy = pg_proxy(&env, &[], &[]);
    let out = Command::new("psql")
        .args([
            "-X",
            "-c",
            "SELECT 1",
            &format!(
                "host=127.0.0.1 port={} user=app dbname=appdb sslmode=require connect_timeout=60",
                proxy.port()
            ),
        ])
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let log = proxy.wait_log("connection 1 ", Duration::from_mins(1));
    assert!(
        log.contains("asked for TLS and hung up") && log.contains("sslmode=disable"),
        "{log}"
    );
    assert!(!log.contains("unexpected end of file"), "{log}");

    // A normal end stays a normal end.
    psql(&proxy, "app", None, "SELECT 1").assert_code(0);
    let log = proxy.wait_log("connection 2 ", Duration::from_mins(1));
    let line = log.lines().find(|l| l.contains("connection 2 ")).unwrap();
    assert!(line.contains("INFO") && line.ends_with("closed"), "{log}");
}

/// A server that ends a session the client did not end (here the network
/// to it breaks while the client waits for a statement) is a warning with
/// the cause, for both engines; the client sees its session end.
#[test]
fn a_session_the_server_ends_is_a_warning() {
    let env = TestEnv::new();
    for mysql in [false, true] {
        let server = if mysql {
            maria::server(Variant::Good).port
        } else {
            pg::server(Variant::Good).port
        };
        let cutter = Cutter::new(server);
        let via = format!("127.0.0.1:{}", cutter.port);
        let (engine, pw_var) = if mysql {
            ("mysql", "MYSQL_PWD")
        } else {
            ("postgres", "PGPASSWORD")
        };
        let proxy = ProxyProc::start(
            &env,
            &[engine, "-h", ENDPOINT, "--via", &via],
            &[(pw_var, APP_PASSWORD)],
        );
        let port = proxy.port();
        let client = std::thread::spawn(move || {
            let mut cmd = if mysql {
                let mut c = Command::new("mariadb");
                c.args(["--no-defaults", "--protocol=TCP", "-h", "127.0.0.1", "-P"])
                    .arg(port.to_string())
                    .args([
                        "-u",
                        "app",
                        "-D",
                        "appdb",
                        "-e",
                        "SELECT SLEEP(60) AS cut_me",
                    ]);
                c
            } else {
                let mut c = Command::new("psql");
                c.args(["-X", "-c", "SELECT pg_sleep(60) AS cut_me"])
                    .arg(format!(
                        "host=127.0.0.1 port={port} user=app dbname=appdb sslmode=disable"
                    ));
                c
            };
            cmd.output().unwrap()
        });
        crate::support::activity::wait_running(&env, engine, server, "cut_me");
        cutter.cut();
        let out = client.join().unwrap();
        assert!(!out.status.success(), "{engine}");
        let log = proxy.wait_log("connection 1 ", Duration::from_mins(1));
        let line = log.lines().find(|l| l.contains("connection 1 ")).unwrap();
        assert!(
            line.contains("WARN") && line.contains("the server ended the session"),
            "{engine}: {log}"
        );
    }
}

/// A session still open when the shutdown grace period ends is closed
/// with a log line of its own.
#[test]
fn a_session_cut_at_the_end_of_the_grace_period_is_logged() {
    let env = TestEnv::new();
    let proxy = pg_proxy(&env, &["--shutdown-grace", "1s"], &[]);
    let client =
        crate::support::proxy::psql_session(proxy.port(), "SELECT pg_sleep(60) AS grace_cut");
    let pg_port = pg::server(Variant::Good).port;
    crate::support::activity::wait_running(&env, "postgres", pg_port, "grace_cut");
    proxy.signal("TERM");
    let log = proxy.wait_log("shutdown grace period ended", Duration::from_mins(1));
    assert!(log.contains("connection 1 "), "{log}");
    let out = client.join().unwrap();
    assert!(!out.status.success());
}

/// `proxy --output json` says where it listens in one JSON document, valid
/// against its schema, before it serves.
#[test]
fn the_proxy_start_up_line_follows_its_schema() {
    let env = TestEnv::new();
    let ca = crate::support::server::pki().ca_file.display().to_string();
    let via = pg_via();
    let mut cmd = env.cmd(&[
        "--ca-bundle",
        &ca,
        "--output",
        "json",
        "proxy",
        "postgres",
        "-h",
        ENDPOINT,
        "--via",
        &via,
        "--listen",
        "127.0.0.1:0",
    ]);
    cmd.env("PGPASSWORD", APP_PASSWORD)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null());
    let mut child = cmd.spawn().unwrap();
    let rx = crate::support::line_channel(child.stdout.take().unwrap());
    let mut doc = String::new();
    while let Ok(line) = rx.recv_timeout(Duration::from_mins(1)) {
        doc.push_str(&line);
        doc.push('\n');
        if line == "}" {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    crate::support::schema::assert_valid("proxy", &doc);
    let j: serde_json::Value = serde_json::from_str(&doc).unwrap();
    assert_eq!(j["engine"], "postgres");
    assert_eq!(j["dial_address"], via);
}
