//! `rdsconn proxy --pool-mode session|transaction` against the harness's
//! servers: state isolation between the clients of one server connection,
//! pins, prepared statements across server connections, bounds and
//! timeouts, IAM logins per server connection, servers that die, cancel,
//! `/pools` and the pool metrics.

use std::collections::HashSet;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::activity::{self, wait_for, wait_running};
use crate::support::pki::ENDPOINT;
use crate::support::proxy::ProxyProc;
use crate::support::server::{
    APP_PASSWORD, IAM_ACCESS_KEY, IAM_REGION, IAM_SECRET_KEY, IAM_USER, Variant, free_port,
};
use crate::support::{Run, TestEnv, node_modules, pg, python};

fn pg_via() -> String {
    format!("127.0.0.1:{}", pg::server(Variant::Good).port)
}

/// A pooled PostgreSQL proxy for `app` with the password.
fn proxy(env: &TestEnv, extra: &[&str]) -> ProxyProc {
    let via = pg_via();
    let mut args = vec!["postgres", "-h", ENDPOINT, "--via", &via];
    args.extend_from_slice(extra);
    ProxyProc::start(env, &args, &[("PGPASSWORD", APP_PASSWORD)])
}

fn conninfo(port: u16) -> String {
    conninfo_in(port, "appdb")
}

fn conninfo_in(port: u16, database: &str) -> String {
    format!("host=127.0.0.1 port={port} user=app dbname={database} sslmode=disable")
}

/// `psql -c SQL` as `app` in `database` through the proxy on `port`.
fn psql_in(port: u16, database: &str, sql: &str) -> std::process::Output {
    Command::new("psql")
        .args(["-X", "-At", "-v", "ON_ERROR_STOP=1", "-c", sql])
        .arg(conninfo_in(port, database))
        .output()
        .unwrap()
}

/// `psql -X -At -v ON_ERROR_STOP=1 -c SQL…` through the proxy: stdout, or
/// the failure with the proxy's log.
fn psql(p: &ProxyProc, sqls: &[&str]) -> String {
    let out = psql_raw(p.port(), sqls, &[]);
    assert!(
        out.status.success(),
        "psql {sqls:?}: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        p.log()
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn psql_raw(port: u16, sqls: &[&str], vars: &[(&str, &str)]) -> std::process::Output {
    let mut cmd = Command::new("psql");
    cmd.args(["-X", "-At", "-v", "ON_ERROR_STOP=1"]);
    for s in sqls {
        cmd.args(["-c", s]);
    }
    cmd.arg(conninfo(port))
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default());
    for (k, v) in vars {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

/// A `rdsconn_…` series of `/metrics` summed over the lines matching
/// every `needles`.
fn metric(http: u16, name: &str, needles: &[&str]) -> u64 {
    let body = get(http, "/metrics");
    body.lines()
        .filter(|l| l.starts_with(name) && needles.iter().all(|n| l.contains(n)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// A database of the test's own (so that its server sessions can be
/// counted while other tests run), that `app` may use.
fn fresh_database(name: &str) {
    pg::admin_sql(
        Variant::Good,
        &format!(
            "DROP DATABASE IF EXISTS {name} WITH (FORCE);\nCREATE DATABASE {name};\nGRANT ALL ON DATABASE {name} TO app, {IAM_USER};\n"
        ),
    );
}

/// Server sessions on `database` now, as the server counts them.
fn backends(env: &TestEnv, database: &str) -> u64 {
    let port = pg::server(Variant::Good).port;
    let sql = format!("SELECT count(*) AS n FROM pg_stat_activity WHERE datname = '{database}'");
    activity::count(env, "postgres", port, &sql)
}

fn config(p: &ProxyProc, user: &str, database: &str) -> tokio_postgres::Config {
    let mut c = tokio_postgres::Config::new();
    c.host("127.0.0.1")
        .port(p.port())
        .user(user)
        .dbname(database)
        .ssl_mode(tokio_postgres::config::SslMode::Disable)
        .connect_timeout(Duration::from_mins(1));
    c
}

async fn connect(p: &ProxyProc, user: &str, database: &str) -> tokio_postgres::Client {
    let (client, conn) = config(p, user, database)
        .connect(tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("connecting through the pool: {e}\n{}", p.log()));
    tokio::spawn(conn);
    client
}

fn get(http: u16, path: &str) -> String {
    let out = Command::new("curl")
        .args([
            "-sf",
            "--max-time",
            "30",
            &format!("http://127.0.0.1:{http}{path}"),
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "GET {path} failed");
    String::from_utf8_lossy(&out.stdout).to_string()
}

#[test]
fn session_mode_resets_state_between_clients_of_one_server_connection() {
    let env = TestEnv::new();
    let p = proxy(&env, &["--pool-mode", "session", "--pool-size", "1"]);
    let first = psql(
        &p,
        &[
            "SET statement_timeout = '77s'",
            "CREATE TEMP TABLE pooled_tmp (a int)",
            "PREPARE pooled_stmt AS SELECT 1",
            "SELECT pg_advisory_lock(4242)",
            "BEGIN",
            "SELECT pg_backend_pid()",
        ],
    );
    let pid_a = first.lines().last().unwrap().to_string();
    let second = psql(
        &p,
        &[
            "SELECT pg_backend_pid()",
            "SHOW statement_timeout",
            "SELECT count(*) FROM pg_prepared_statements",
            "SELECT count(*) FROM pg_class WHERE relname = 'pooled_tmp'",
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = 4242",
            "SELECT current_setting('application_name')",
        ],
    );
    let lines: Vec<&str> = second.lines().collect();
    assert_eq!(lines[0], pid_a, "the same server connection: {}", p.log());
    assert_eq!(&lines[1..], ["0", "0", "0", "0", "psql"], "{second}");
}

#[test]
fn transaction_mode_pins_session_state_and_never_shares_it() {
    let env = TestEnv::new();
    let http = free_port();
    let hp = http.to_string();
    let p = proxy(
        &env,
        &[
            "--pool-mode",
            "transaction",
            "--pool-size",
            "2",
            "--prometheus",
            "--http-port",
            &hp,
        ],
    );
    // SET LOCAL inside a transaction does not pin.
    psql(
        &p,
        &["BEGIN; SET LOCAL statement_timeout = '5s'; SELECT 1; COMMIT"],
    );
    assert_eq!(metric(http, "rdsconn_pool_pins_total", &[]), 0);
    // A client that SETs keeps its server connection; others never see it.
    let out = Command::new("psql")
        .args([
            "-X",
            "-At",
            "-v",
            "ON_ERROR_STOP=1",
            "-c",
            "SET statement_timeout = '66s'",
            "-c",
            "SELECT pg_sleep(0.2)",
            "-c",
            "SHOW statement_timeout",
            &conninfo(p.port()),
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", p.log());
    assert!(String::from_utf8_lossy(&out.stdout).contains("66s"));
    assert_eq!(
        metric(http, "rdsconn_pool_pins_total", &["reason=\"set\""]),
        1
    );
    for _ in 0..5 {
        assert_eq!(psql(&p, &["SHOW statement_timeout"]), "0");
    }
}

#[test]
fn transaction_mode_serves_pgbench_prepared_statements_on_any_server_connection() {
    let env = TestEnv::new();
    let p = proxy(&env, &["--pool-mode", "transaction", "--pool-size", "2"]);
    // A thread per client: pgbench prepares with a blocking PQprepare,
    // which would hold its thread's other clients (and their open
    // transactions) while it waits for a server connection.
    let out = Command::new("pgbench")
        .args([
            "-n",
            "-M",
            "prepared",
            "-c",
            "8",
            "-j",
            "8",
            "-t",
            "200",
            "-f",
            "/dev/stdin",
        ])
        .arg(conninfo(p.port()))
        .stdin(std::fs::File::open(pgbench_script()).unwrap())
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}\n{}", p.log());
    assert!(text.contains("number of failed transactions: 0"), "{text}");
    assert!(!text.contains("does not exist"), "{text}");
}

/// A pgbench script of prepared statements and transactions.
fn pgbench_script() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("rdsconn-pool-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("script.sql");
    std::fs::write(
        &path,
        "\\set a random(1, 1000)\nSELECT :a::int + 1;\nBEGIN;\nSELECT :a::int * 2;\nSELECT now();\nCOMMIT;\n",
    )
    .unwrap();
    path
}

#[tokio::test(flavor = "multi_thread")]
async fn two_hundred_clients_share_ten_server_connections() {
    let env = TestEnv::new();
    fresh_database("pool_bound");
    let p = proxy(&env, &["--pool-mode", "transaction", "--pool-size", "10"]);
    let mut tasks = Vec::new();
    for i in 0..200_i32 {
        let config = config(&p, "app", "pool_bound");
        tasks.push(tokio::spawn(async move {
            let (client, conn) = config.connect(tokio_postgres::NoTls).await?;
            tokio::spawn(conn);
            let mut pids = Vec::new();
            for _ in 0..3 {
                let row = client
                    .query_one(
                        "SELECT pg_backend_pid(), $1::int + 1, pg_sleep(0.01)::text",
                        &[&i],
                    )
                    .await?;
                assert_eq!(row.get::<_, i32>(1), i + 1);
                pids.push(row.get::<_, i32>(0));
            }
            Ok::<_, tokio_postgres::Error>((client, pids))
        }));
    }
    let mut pids = HashSet::new();
    let mut clients = Vec::new();
    for t in tasks {
        let (client, seen) = t
            .await
            .unwrap()
            .unwrap_or_else(|e| panic!("{e}\n{}", p.log()));
        pids.extend(seen);
        clients.push(client);
    }
    // All 200 are connected at once, on at most 10 server sessions.
    assert!(pids.len() <= 10, "{} server sessions: {pids:?}", pids.len());
    assert!(backends(&env, "pool_bound") <= 10);
    drop(clients);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_pool_answers_too_many_connections_after_the_pool_timeout() {
    let env = TestEnv::new();
    let p = proxy(
        &env,
        &[
            "--pool-mode",
            "session",
            "--pool-size",
            "1",
            "--pool-timeout",
            "1s",
        ],
    );
    let holder = connect(&p, "app", "appdb").await;
    let started = Instant::now();
    let err = config(&p, "app", "appdb")
        .connect(tokio_postgres::NoTls)
        .await
        .err()
        .expect("no server connection for a second client");
    assert!(started.elapsed() >= Duration::from_secs(1));
    let db = err.as_db_error().unwrap_or_else(|| panic!("{err}"));
    assert_eq!(
        db.code(),
        &tokio_postgres::error::SqlState::TOO_MANY_CONNECTIONS
    );
    assert!(db.message().contains("--pool-timeout"), "{}", db.message());
    // Once the first client leaves, the next one gets its connection.
    drop(holder);
    let next = connect(&p, "app", "appdb").await;
    next.simple_query("SELECT 1").await.unwrap();
}

#[test]
fn server_connections_that_die_are_replaced() {
    let env = TestEnv::new();
    fresh_database("pool_killed");
    let p = proxy(&env, &["--pool-mode", "session", "--pool-size", "2"]);
    let info = conninfo_in(p.port(), "pool_killed");
    let run = |sql: &str| psql_in(p.port(), "pool_killed", sql);
    for _ in 0..3 {
        assert!(run("SELECT 1").status.success(), "{}", p.log());
    }
    assert!(backends(&env, "pool_killed") >= 1);
    // Killed while idle in the pool (as a restart or a failover would).
    let kill =
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = 'pool_killed'";
    pg::admin_sql(Variant::Good, kill);
    wait_for("the pooled sessions to end", || {
        backends(&env, "pool_killed") == 0
    });
    for _ in 0..5 {
        let out = run("SELECT 2");
        assert!(
            out.status.success(),
            "{}\n{}",
            String::from_utf8_lossy(&out.stderr),
            p.log()
        );
    }
    // Killed under load: the clients of the killed sessions fail, the
    // ones after succeed.
    let load: Vec<_> = (0..4)
        .map(|_| {
            let info = info.clone();
            std::thread::spawn(move || {
                Command::new("psql")
                    .args([
                        "-X",
                        "-At",
                        "-c",
                        "SELECT pg_sleep(2) AS pool_under_load",
                        &info,
                    ])
                    .output()
                    .unwrap()
            })
        })
        .collect();
    wait_running(
        &env,
        "postgres",
        pg::server(Variant::Good).port,
        "pool_under_load",
    );
    pg::admin_sql(Variant::Good, kill);
    for l in load {
        let _ = l.join();
    }
    for _ in 0..5 {
        assert!(run("SELECT 3").status.success(), "{}", p.log());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn cancel_in_transaction_mode_reaches_the_running_query() {
    let env = TestEnv::new();
    let p = proxy(&env, &["--pool-mode", "transaction", "--pool-size", "2"]);
    let busy = connect(&p, "app", "appdb").await;
    let other = connect(&p, "app", "appdb").await;
    let token = busy.cancel_token();
    let running = tokio::spawn(async move {
        busy.simple_query("SELECT pg_sleep(60) AS pool_cancel_me")
            .await
    });
    wait_running(
        &env,
        "postgres",
        pg::server(Variant::Good).port,
        "pool_cancel_me",
    );
    // The other client's query keeps running on its own server session.
    let slow_other = tokio::spawn(async move {
        other
            .simple_query("SELECT pg_sleep(0.5) AS pool_not_cancelled")
            .await
            .map(|_| ())
    });
    token.cancel_query(tokio_postgres::NoTls).await.unwrap();
    let err = running.await.unwrap().expect_err("cancelled");
    assert_eq!(
        err.code(),
        Some(&tokio_postgres::error::SqlState::QUERY_CANCELED),
        "{err}"
    );
    slow_other.await.unwrap().unwrap();
}

#[test]
fn pools_are_shown_at_pools_and_in_the_metrics() {
    let env = TestEnv::new();
    let http = free_port();
    let hp = http.to_string();
    let p = proxy(
        &env,
        &[
            "--pool-mode",
            "session",
            "--pool-size",
            "3",
            "--prometheus",
            "--http-port",
            &hp,
        ],
    );
    psql(&p, &["SELECT 1"]);
    // The reset runs after the client has gone: wait for its connection
    // to be back in the pool.
    wait_for("the server connection back in the pool", || {
        metric(http, "rdsconn_pool_resets_total", &["result=\"ok\""]) == 1
    });
    let body = get(http, "/pools");
    crate::support::schema::assert_valid("pools", &body);
    let pools: serde_json::Value = serde_json::from_str(&body).unwrap();
    let first = &pools["pools"][0];
    assert_eq!(first["user"], "app");
    assert_eq!(first["database"], "appdb");
    assert_eq!(first["mode"], "session");
    assert_eq!(first["size"], 3);
    assert_eq!(first["idle"], 1, "{pools}");
    assert_eq!(
        metric(http, "rdsconn_pool_server_connections", &["state=\"idle\""]),
        1
    );
    assert_eq!(
        metric(http, "rdsconn_pool_resets_total", &["result=\"ok\""]),
        1
    );
    let body = get(http, "/metrics");
    assert!(body.contains("rdsconn_pool_wait_seconds_bucket"), "{body}");
    crate::support::assert_promtool_accepts(&body);
}

const IAM_ENV: [(&str, &str); 3] = [
    ("AWS_ACCESS_KEY_ID", IAM_ACCESS_KEY),
    ("AWS_SECRET_ACCESS_KEY", IAM_SECRET_KEY),
    ("AWS_REGION", IAM_REGION),
];

fn iam_proxy(env: &TestEnv, extra: &[&str]) -> ProxyProc {
    let via = pg_via();
    let mut args = vec!["postgres", "-h", ENDPOINT, "--via", &via, "--iam"];
    args.extend_from_slice(extra);
    ProxyProc::start(env, &args, &IAM_ENV)
}

#[tokio::test(flavor = "multi_thread")]
async fn iam_logins_happen_per_server_connection_not_per_client() {
    let env = TestEnv::new();
    fresh_database("pool_iam");
    let http = free_port();
    let hp = http.to_string();
    let p = iam_proxy(
        &env,
        &[
            "--pool-mode",
            "session",
            "--pool-size",
            "5",
            "--prometheus",
            "--http-port",
            &hp,
        ],
    );
    let mut pids = HashSet::new();
    for _round in 0..5 {
        let mut tasks = Vec::new();
        for _ in 0..20 {
            let config = config(&p, IAM_USER, "pool_iam");
            tasks.push(tokio::spawn(async move {
                let (client, conn) = config.connect(tokio_postgres::NoTls).await?;
                tokio::spawn(conn);
                let row = client.query_one("SELECT pg_backend_pid()", &[]).await?;
                Ok::<i32, tokio_postgres::Error>(row.get(0))
            }));
        }
        for t in tasks {
            pids.insert(
                t.await
                    .unwrap()
                    .unwrap_or_else(|e| panic!("{e}\n{}", p.log())),
            );
        }
    }
    // 100 clients, at most 5 server logins (each verified by the server).
    assert!(pids.len() <= 5, "{} server sessions", pids.len());
    let logins = metric(http, "rdsconn_upstream_logins_total", &["result=\"ok\""]);
    assert!((1..=5).contains(&logins), "{logins} upstream logins");
    assert!(metric(http, "rdsconn_iam_tokens_minted_total", &[]) <= 5);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_login_storm_queues_under_max_logins_per_second() {
    let env = TestEnv::new();
    let p = proxy(
        &env,
        &[
            "--pool-mode",
            "session",
            "--pool-size",
            "8",
            "--max-logins-per-second",
            "2",
        ],
    );
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let config = config(&p, "app", "appdb");
        tasks.push(tokio::spawn(async move {
            let (client, conn) = config.connect(tokio_postgres::NoTls).await?;
            tokio::spawn(conn);
            client.simple_query("SELECT pg_sleep(0.1)").await?;
            Ok::<_, tokio_postgres::Error>(client)
        }));
    }
    let mut clients = Vec::new();
    for t in tasks {
        clients.push(
            t.await
                .unwrap()
                .unwrap_or_else(|e| panic!("{e}\n{}", p.log())),
        );
    }
    // Eight logins at two a second: the last starts 3.5 s after the first.
    assert!(
        started.elapsed() >= Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
}

/// A Python driver's script through a transaction-pooled proxy on `port`.
fn python_driver(port: u16, script: &str) -> Run {
    Run::from(
        Command::new(python())
            .args(["-c", script, &port.to_string()])
            .output()
            .unwrap(),
    )
}

#[test]
fn drivers_run_prepared_statements_transactions_and_errors_through_transaction_pooling() {
    let env = TestEnv::new();
    let p = proxy(&env, &["--pool-mode", "transaction", "--pool-size", "2"]);
    let java = || {
        Run::from(
            Command::new("java")
                .args(["-cp", "/usr/share/java/postgresql.jar"])
                .arg(
                    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                        .join("tests/java/PoolJdbc.java"),
                )
                .arg(p.port().to_string())
                .output()
                .expect("java runs (scripts/test.sh installs default-jdk-headless and pgjdbc)"),
        )
    };
    for (name, run, want) in [
        ("asyncpg", python_driver(p.port(), ASYNCPG), "asyncpg ok"),
        ("psycopg", python_driver(p.port(), PSYCOPG), "psycopg ok"),
        ("pgjdbc", java(), "pgjdbc ok"),
        ("node-pg", node_driver(p.port(), NODE_PG), "node-pg ok"),
    ] {
        assert_eq!(
            (run.code, run.stdout.trim()),
            (0, want),
            "{name}: {}\n{}",
            run.stderr,
            p.log()
        );
    }
}

fn node_driver(port: u16, script: &str) -> Run {
    Run::from(
        Command::new("node")
            .args(["-e", script, &port.to_string()])
            .env("NODE_PATH", node_modules())
            .output()
            .unwrap(),
    )
}

/// asyncpg with its default statement cache: four connections of one
/// pool (two server connections), prepared statements reused across
/// transactions, an error in a transaction, a rollback.
const ASYNCPG: &str = r#"
import asyncio, sys
import asyncpg

async def work(port, n):
    conn = await asyncpg.connect(host="127.0.0.1", port=port, user="app", database="appdb", ssl=False)
    for i in range(30):
        assert await conn.fetchval("SELECT $1::int * 2", i) == i * 2
        async with conn.transaction():
            assert await conn.fetchval("SELECT $1::text || 'x'", str(n)) == f"{n}x"
        try:
            async with conn.transaction():
                await conn.fetchval("SELECT 1 / $1::int", 0)
        except asyncpg.DivisionByZeroError:
            pass
        else:
            raise SystemExit("no error")
    stmt = await conn.prepare("SELECT $1::int + 100")
    assert await stmt.fetchval(1) == 101
    await conn.close()

async def main():
    port = int(sys.argv[1])
    await asyncio.gather(*(work(port, n) for n in range(4)))
    print("asyncpg ok")

asyncio.run(main())
"#;

/// `DISCARD ALL` that the server refuses (inside a transaction block)
/// drops nothing: the client's statements still run, on this server
/// connection or another; one that ran drops them all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statements_outlive_a_refused_discard_all_and_not_one_that_ran() {
    let env = TestEnv::new();
    let p = proxy(&env, &["--pool-mode", "transaction", "--pool-size", "1"]);
    let c = connect(&p, "app", "appdb").await;
    let plus = c.prepare("SELECT $1::int + 40").await.unwrap();
    c.batch_execute("BEGIN").await.unwrap();
    let refused = c.batch_execute("DISCARD ALL").await.unwrap_err();
    assert_eq!(
        refused.code(),
        Some(&tokio_postgres::error::SqlState::ACTIVE_SQL_TRANSACTION),
        "{refused}"
    );
    c.batch_execute("ROLLBACK").await.unwrap();
    for i in 0..3 {
        let row = c.query_one(&plus, &[&i]).await.unwrap();
        assert_eq!(row.get::<_, i32>(0), i + 40);
    }
    c.batch_execute("DISCARD ALL").await.unwrap();
    let gone = c.query_one(&plus, &[&1]).await.unwrap_err();
    assert_eq!(
        gone.code(),
        Some(&tokio_postgres::error::SqlState::INVALID_SQL_STATEMENT_NAME),
        "{gone}"
    );
    let again = c.prepare("SELECT $1::int + 40").await.unwrap();
    let row = c.query_one(&again, &[&2]).await.unwrap();
    assert_eq!(row.get::<_, i32>(0), 42);
}

/// psycopg 3 with server-side prepared statements from the first run
/// (`prepare_threshold=0`), in transactions and after errors.
const PSYCOPG: &str = r#"
import sys, threading
import psycopg

def work(port, n, errors):
    try:
        with psycopg.connect(host="127.0.0.1", port=port, user="app", dbname="appdb",
                             sslmode="disable", prepare_threshold=0, autocommit=True) as conn:
            for i in range(30):
                assert conn.execute("SELECT %s::int * 3", (i,)).fetchone()[0] == i * 3
                with conn.transaction():
                    assert conn.execute("SELECT %s::text", (str(n),)).fetchone()[0] == str(n)
                try:
                    with conn.transaction():
                        conn.execute("SELECT 1 / %s::int", (0,))
                except psycopg.errors.DivisionByZero:
                    pass
                else:
                    raise SystemExit("no error")
    except BaseException as e:
        errors.append(repr(e))

port = int(sys.argv[1])
errors = []
threads = [threading.Thread(target=work, args=(port, n, errors)) for n in range(4)]
for t in threads: t.start()
for t in threads: t.join()
if errors:
    raise SystemExit("; ".join(errors))
print("psycopg ok")
"#;

/// node-pg with named prepared statements on four clients.
const NODE_PG: &str = r"
const { Client } = require('pg');
const port = Number(process.argv[1]);
async function work(n) {
  const c = new Client({ host: '127.0.0.1', port, user: 'app', database: 'appdb' });
  await c.connect();
  for (let i = 0; i < 30; i++) {
    const r = await c.query({ name: 'double', text: 'SELECT $1::int * 2 AS v', values: [i] });
    if (r.rows[0].v !== i * 2) throw new Error('wrong result');
    await c.query('BEGIN');
    await c.query({ name: 'text', text: 'SELECT $1::text AS t', values: [String(n)] });
    await c.query('COMMIT');
    try {
      await c.query({ name: 'div', text: 'SELECT 1 / $1::int AS v', values: [0] });
      throw new Error('no error');
    } catch (e) {
      if (e.code !== '22012') throw e;
    }
  }
  await c.end();
}
Promise.all([0, 1, 2, 3].map(work)).then(() => console.log('node-pg ok'))
  .catch((e) => { console.error(e); process.exit(1); });
";

#[test]
fn min_pool_size_is_kept_warm_and_idle_connections_time_out() {
    let env = TestEnv::new();
    fresh_database("pool_warm");
    let p = proxy(
        &env,
        &[
            "--pool-mode",
            "session",
            "--pool-size",
            "4",
            "--min-pool-size",
            "3",
        ],
    );
    let out = psql_in(p.port(), "pool_warm", "SELECT 1");
    assert!(out.status.success(), "{}", p.log());
    // The pool exists now: it is filled up to --min-pool-size.
    wait_for("three warm server connections", || {
        backends(&env, "pool_warm") == 3
    });

    fresh_database("pool_idle");
    let p = proxy(
        &env,
        &["--pool-mode", "session", "--server-idle-timeout", "1s"],
    );
    let out = psql_in(p.port(), "pool_idle", "SELECT 1");
    assert!(out.status.success(), "{}", p.log());
    wait_for("the idle server connection to close", || {
        backends(&env, "pool_idle") == 0
    });
}

#[test]
fn startup_parameters_follow_the_client_in_transaction_mode() {
    let env = TestEnv::new();
    let p = proxy(&env, &["--pool-mode", "transaction", "--pool-size", "1"]);
    let show = "SELECT current_setting('search_path'), current_setting('DateStyle'), \
                current_setting('application_name'), current_setting('statement_timeout')";
    let with = |vars: &[(&str, &str)]| {
        let out = psql_raw(p.port(), &[show], vars);
        assert!(
            out.status.success(),
            "{}\n{}",
            String::from_utf8_lossy(&out.stderr),
            p.log()
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    // One server connection: each client's own settings, none of another's.
    let a = with(&[
        (
            "PGOPTIONS",
            "-c search_path=pg_catalog -c statement_timeout=7s",
        ),
        ("PGAPPNAME", "client-a"),
        ("PGDATESTYLE", "SQL, DMY"),
    ]);
    assert_eq!(a, "pg_catalog|SQL, DMY|client-a|7s");
    let b = with(&[("PGAPPNAME", "client-b")]);
    assert_eq!(b, "\"$user\", public|ISO, MDY|client-b|0");
    // A value the server refuses is the client's error, at login.
    let out = psql_raw(
        p.port(),
        &["SELECT 1"],
        &[("PGOPTIONS", "-c DateStyle=bogus")],
    );
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("DateStyle"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Replication connections are not pooled.
    let out = psql_raw(
        p.port(),
        &["IDENTIFY_SYSTEM"],
        &[("PGREPLICATION", "database")],
    );
    assert!(!out.status.success());
}

#[test]
fn a_failover_under_load_recovers_without_restarting_the_proxy() {
    let env = TestEnv::new();
    let cutter = crate::support::proxy::Cutter::new(pg::server(Variant::Good).port);
    let via = format!("127.0.0.1:{}", cutter.port);
    let p = ProxyProc::start(
        &env,
        &[
            "postgres",
            "-h",
            ENDPOINT,
            "--via",
            &via,
            "--pool-mode",
            "transaction",
            "--pool-size",
            "4",
        ],
        &[("PGPASSWORD", APP_PASSWORD)],
    );
    for _ in 0..3 {
        psql(&p, &["SELECT 1"]);
    }
    let port = p.port();
    let load: Vec<_> = (0..3)
        .map(|_| {
            std::thread::spawn(move || {
                psql_raw(port, &["SELECT pg_sleep(30) AS pool_failover_load"], &[])
            })
        })
        .collect();
    // All three run (on server connections through the cutter) before it
    // cuts: one that started later would rightly succeed.
    let pg_port = pg::server(Variant::Good).port;
    wait_for("the three loaded sessions", || {
        activity::running(&env, "postgres", pg_port, "pool_failover_load") == 3
    });
    // Every server connection breaks at once, busy and idle alike.
    cutter.cut();
    for l in load {
        let out = l.join().unwrap();
        assert!(
            !out.status.success(),
            "a query on a broken connection failed"
        );
    }
    for _ in 0..6 {
        assert_eq!(psql(&p, &["SELECT 7"]), "7");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn server_connections_are_replaced_at_their_lifetime() {
    let env = TestEnv::new();
    let p = proxy(
        &env,
        &[
            "--pool-mode",
            "session",
            "--pool-size",
            "1",
            "--server-lifetime",
            "1s",
        ],
    );
    let pid = |c: tokio_postgres::Client| async move {
        let row = c.query_one("SELECT pg_backend_pid()", &[]).await.unwrap();
        row.get::<_, i32>(0)
    };
    let first = pid(connect(&p, "app", "appdb").await).await;
    // The same connection while it is young; a new login once it aged.
    let start = Instant::now();
    loop {
        let now = pid(connect(&p, "app", "appdb").await).await;
        if now != first {
            break;
        }
        assert!(start.elapsed() < Duration::from_mins(2), "never replaced");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A raw client logged in through the proxy (read up to its first
/// `ReadyForQuery`).
fn raw_login(port: u16) -> std::net::TcpStream {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_mins(1))).unwrap();
    let params = b"user\0app\0database\0appdb\0\0";
    let len = u32::try_from(8 + params.len()).unwrap();
    let mut startup = len.to_be_bytes().to_vec();
    startup.extend_from_slice(&196_608_u32.to_be_bytes());
    startup.extend_from_slice(params);
    s.write_all(&startup).unwrap();
    let mut seen = Vec::new();
    let mut buf = [0_u8; 4096];
    while !seen.windows(6).any(|w| w == b"Z\0\0\0\x05I") {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "closed before ReadyForQuery: {seen:?}");
        seen.extend_from_slice(&buf[..n]);
    }
    s
}

#[test]
fn hostile_clients_leave_the_pool_working() {
    use std::io::{Read, Write};
    let env = TestEnv::new();
    for mode in ["session", "transaction"] {
        let p = proxy(&env, &["--pool-mode", mode, "--pool-size", "1"]);
        // A message length no PostgreSQL message has.
        let mut client = raw_login(p.port());
        client.write_all(&[b'Q', 0, 0, 0, 2]).unwrap();
        let mut rest = Vec::new();
        let _ = client.read_to_end(&mut rest);
        // Half a query, then gone.
        let mut client = raw_login(p.port());
        client.write_all(&[b'Q', 0, 0, 0, 100, b'S', b'E']).unwrap();
        drop(client);
        // Half of a large CopyData (passed on as it comes), then gone: the
        // server connection is mid-message and must not be lent again.
        let mut client = raw_login(p.port());
        let copy = b"COPY (SELECT 1) TO STDOUT\0";
        let mut query = vec![b'Q'];
        query.extend_from_slice(&u32::try_from(4 + copy.len()).unwrap().to_be_bytes());
        query.extend_from_slice(copy);
        client.write_all(&query).unwrap();
        let mut buf = [0_u8; 1024];
        let _ = client.read(&mut buf).unwrap();
        let mut data = vec![b'd'];
        data.extend_from_slice(&1_000_000_u32.to_be_bytes());
        data.extend_from_slice(&[7; 100]);
        client.write_all(&data).unwrap();
        drop(client);
        // An unknown cancel key.
        let mut canceller = std::net::TcpStream::connect(("127.0.0.1", p.port())).unwrap();
        let mut cancel = 16_u32.to_be_bytes().to_vec();
        cancel.extend_from_slice(&80_877_102_u32.to_be_bytes());
        cancel.extend_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8]);
        canceller.write_all(&cancel).unwrap();
        drop(canceller);
        // The one server connection slot serves clients as before.
        for _ in 0..3 {
            assert_eq!(psql(&p, &["SELECT 41 + 1"]), "42", "{mode}");
        }
        // The server connection left inside the copy data was closed, not
        // lent to the next client.
        let log = p.log();
        assert!(
            log.contains("inside a message: its server connection is closed"),
            "{mode}:\n{log}"
        );
    }
}

/// A protocol message: kind, length, body.
fn pg_msg(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut m = vec![kind];
    m.extend_from_slice(&u32::try_from(body.len() + 4).unwrap().to_be_bytes());
    m.extend_from_slice(body);
    m
}

/// Reads `s` until a message of `kind` has come; every message's kind.
fn read_until(s: &mut std::net::TcpStream, seen: &mut Vec<u8>, kind: u8) -> Vec<u8> {
    use std::io::Read;
    let mut buf = [0_u8; 4096];
    loop {
        let mut kinds = Vec::new();
        let mut at = 0;
        while at + 5 <= seen.len() {
            let len = u32::from_be_bytes(seen[at + 1..at + 5].try_into().unwrap()) as usize;
            if at + 1 + len > seen.len() {
                break;
            }
            kinds.push(seen[at]);
            at += 1 + len;
        }
        if kinds.contains(&kind) {
            seen.drain(..at);
            return kinds;
        }
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "closed before {}: {kinds:?}", kind as char);
        seen.extend_from_slice(&buf[..n]);
    }
}

/// The server reports a Bind's error before the client's Execute and Sync
/// have come (it flushes errors at once): what the client sends up to its
/// Sync is discarded, the Sync answered, and the client's connection and
/// the pool's one server connection go on working.
#[test]
fn an_error_before_the_clients_sync_leaves_the_session_in_step() {
    use std::io::Write;
    let env = TestEnv::new();
    let p = proxy(
        &env,
        &[
            "--pool-mode",
            "transaction",
            "--pool-size",
            "1",
            "--pool-timeout",
            "5s",
        ],
    );
    let mut c = raw_login(p.port());
    let mut seen = Vec::new();
    // Parse + Bind (1 / 0 is found when the plan is made, at Bind) and
    // nothing else: the error comes on its own.
    let mut batch = pg_msg(b'P', b"s1\0SELECT 1 / $1::int\0\0\x01\0\0\0\x17");
    batch.extend(pg_msg(b'B', b"\0s1\0\0\0\0\x01\0\0\0\x010\0\0"));
    c.write_all(&batch).unwrap();
    let kinds = read_until(&mut c, &mut seen, b'E');
    assert_eq!(kinds, b"1E");
    // Then the rest of the batch, which the server discards, and Sync.
    let mut rest = pg_msg(b'D', b"P\0");
    rest.extend(pg_msg(b'E', b"\0\0\0\0\0"));
    rest.extend(pg_msg(b'S', b""));
    c.write_all(&rest).unwrap();
    assert_eq!(read_until(&mut c, &mut seen, b'Z'), b"Z");
    // The statement (prepared before the error) runs, and so do queries.
    let mut again = pg_msg(b'B', b"\0s1\0\0\0\0\x01\0\0\0\x012\0\0");
    again.extend(pg_msg(b'E', b"\0\0\0\0\0"));
    again.extend(pg_msg(b'S', b""));
    c.write_all(&again).unwrap();
    assert_eq!(read_until(&mut c, &mut seen, b'Z'), b"2DCZ");
    c.write_all(&pg_msg(b'Q', b"SELECT 41 + 1\0")).unwrap();
    assert_eq!(read_until(&mut c, &mut seen, b'Z'), b"TDCZ");
    // The one server connection went back to the pool between them.
    assert_eq!(psql(&p, &["SELECT 6 * 7"]), "42", "{}", p.log());
}
