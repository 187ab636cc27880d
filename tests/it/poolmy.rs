//! `rdsconn proxy mysql --pool-mode session` against the harness's
//! MariaDB: session state reset between the clients of one server
//! connection, the pool's bound and timeout, `COM_CHANGE_USER` and
//! `COM_RESET_CONNECTION`, and real drivers (the mariadb client, `PyMySQL`,
//! mysql2, `mysql_async`) through the pool.

use std::process::Command;
use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;

use crate::support::pki::ENDPOINT;
use crate::support::proxy::ProxyProc;
use crate::support::server::{APP_PASSWORD, TWIN_USER, Variant};
use crate::support::{Run, TestEnv, maria, node_modules, python};

fn proxy(env: &TestEnv, extra: &[&str]) -> ProxyProc {
    let via = format!("127.0.0.1:{}", maria::server(Variant::Good).port);
    let mut args = vec![
        "mysql",
        "-h",
        ENDPOINT,
        "--via",
        &via,
        "--pool-mode",
        "session",
    ];
    args.extend_from_slice(extra);
    ProxyProc::start(env, &args, &[("MYSQL_PWD", APP_PASSWORD)])
}

/// The mariadb client through the proxy as `app` in `appdb`.
fn mariadb(p: &ProxyProc, sql: &str) -> Run {
    maria::client(p.port(), "app", "appdb", sql)
}

fn opts(p: &ProxyProc) -> mysql_async::Opts {
    mysql_async::OptsBuilder::default()
        .ip_or_hostname("127.0.0.1")
        .tcp_port(p.port())
        .user(Some("app"))
        .db_name(Some("appdb"))
        .prefer_socket(false)
        .into()
}

#[test]
fn session_state_is_reset_between_clients_of_one_server_connection() {
    let env = TestEnv::new();
    let p = proxy(&env, &["--pool-size", "1"]);
    let first = mariadb(
        &p,
        "SET @pooled_var = 42; SET SESSION sql_mode = 'ANSI'; \
         CREATE TEMPORARY TABLE pooled_tmp (a INT); SELECT GET_LOCK('pooled_lock', 0); \
         PREPARE pooled_ps FROM 'SELECT 1'; START TRANSACTION; USE information_schema; \
         SELECT CONNECTION_ID()",
    );
    first.assert_code(0);
    let id = first.stdout.lines().last().unwrap().to_string();
    let second = mariadb(
        &p,
        "SELECT CONNECTION_ID(), @pooled_var IS NULL, @@session.sql_mode = @@global.sql_mode, \
         IS_USED_LOCK('pooled_lock') IS NULL, DATABASE(), @@in_transaction",
    );
    second.assert_code(0);
    assert_eq!(
        second.stdout.trim(),
        format!("{id}\t1\t1\t1\tappdb\t0"),
        "{}",
        p.log()
    );
    let tmp = mariadb(&p, "SELECT COUNT(*) FROM pooled_tmp");
    assert_ne!(tmp.code, 0, "the temporary table is gone");
    let ps = mariadb(&p, "EXECUTE pooled_ps");
    assert_ne!(ps.code, 0, "the prepared statement is gone");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_pool_answers_1040_after_the_pool_timeout() {
    let env = TestEnv::new();
    let p = proxy(&env, &["--pool-size", "1", "--pool-timeout", "1s"]);
    let mut holder = mysql_async::Conn::new(opts(&p))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", p.log()));
    holder.query_drop("SELECT 1").await.unwrap();
    let started = Instant::now();
    let err = mysql_async::Conn::new(opts(&p))
        .await
        .err()
        .unwrap_or_else(|| panic!("a second client got a connection\n{}", p.log()));
    assert!(started.elapsed() >= Duration::from_secs(1));
    match err {
        mysql_async::Error::Server(e) => {
            assert_eq!(e.code, 1040, "{e:?}");
            assert!(e.message.contains("--pool-timeout"), "{e:?}");
        }
        other => panic!("{other:?}"),
    }
    holder.disconnect().await.unwrap();
    let mut next = mysql_async::Conn::new(opts(&p)).await.unwrap();
    next.query_drop("SELECT 1").await.unwrap();
    next.disconnect().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn change_user_stays_the_pools_user_and_reset_connection_is_honoured() {
    let env = TestEnv::new();
    let p = proxy(&env, &["--pool-size", "2"]);
    let mut conn = mysql_async::Conn::new(opts(&p))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", p.log()));
    // Prepared statements (binary protocol) and COM_RESET_CONNECTION.
    let got: Option<(i64, String)> = conn
        .exec_first("SELECT ? + 1, CONCAT('a', ?)", (41, "b"))
        .await
        .unwrap();
    assert_eq!(got, Some((42, "ab".into())));
    conn.query_drop("SET @marker = 8").await.unwrap();
    conn.reset().await.unwrap();
    let after: Option<Option<i64>> = conn.query_first("SELECT @marker").await.unwrap();
    assert_eq!(after, Some(None));
    // Another user would leave a session of theirs in app's pool.
    let refused = conn
        .change_user(mysql_async::ChangeUserOpts::default().with_user(Some(TWIN_USER.into())))
        .await;
    let Err(mysql_async::Error::Server(e)) = refused else {
        panic!("COM_CHANGE_USER to {TWIN_USER} was not refused: {refused:?}");
    };
    assert_eq!(e.code, 1045, "{e:?}");
    assert!(e.message.contains("pooled"), "{e:?}");
    drop(conn);
    // The pool still serves.
    assert_eq!(mariadb(&p, "SELECT CURRENT_USER()").stdout.trim(), "app@%");
}

/// A driver script with the proxy's port as its argument.
fn driver(program: &str, flag: &str, script: &str, port: u16) -> Run {
    let mut cmd = Command::new(program);
    cmd.args([flag, script, &port.to_string()]);
    if program == "node" {
        cmd.env("NODE_PATH", node_modules());
    }
    Run::from(cmd.output().unwrap())
}

#[test]
fn drivers_run_transactions_prepared_statements_and_errors_through_the_pool() {
    let env = TestEnv::new();
    let p = proxy(&env, &["--pool-size", "2"]);
    let py = python().display().to_string();
    for (name, program, flag, script, want) in [
        ("PyMySQL", py.as_str(), "-c", PYMYSQL, "pymysql ok"),
        ("mysql2", "node", "-e", MYSQL2, "mysql2 ok"),
    ] {
        let run = driver(program, flag, script, p.port());
        assert_eq!(
            (run.code, run.stdout.trim()),
            (0, want),
            "{name}: {}\n{}",
            run.stderr,
            p.log()
        );
    }
}

/// Four `PyMySQL` connections on two server connections, each one after
/// the other's state: transactions, an error, a rollback.
const PYMYSQL: &str = r#"
import sys, threading
import pymysql

def work(port, n, errors):
    try:
        for round in range(10):
            conn = pymysql.connect(host="127.0.0.1", port=port, user="app", database="appdb")
            with conn.cursor() as cur:
                cur.execute("SELECT @pymysql_var")
                assert cur.fetchone()[0] is None, "state from another client"
                cur.execute("SET @pymysql_var = %s", (n,))
                conn.begin()
                cur.execute("SELECT %s + 1", (round,))
                assert cur.fetchone()[0] == round + 1
                conn.rollback()
                try:
                    cur.execute("SELECT * FROM no_such_table_here")
                except pymysql.err.ProgrammingError:
                    pass
                else:
                    raise SystemExit("no error")
            conn.close()
    except BaseException as e:
        errors.append(repr(e))

port = int(sys.argv[1])
errors = []
threads = [threading.Thread(target=work, args=(port, n, errors)) for n in range(4)]
for t in threads: t.start()
for t in threads: t.join()
if errors:
    raise SystemExit("; ".join(errors))
print("pymysql ok")
"#;

/// mysql2's `execute` (server-side prepared statements) on four
/// connections, each opened and closed ten times.
const MYSQL2: &str = r"
const mysql = require('mysql2/promise');
const port = Number(process.argv[1]);
async function work(n) {
  for (let round = 0; round < 10; round++) {
    const c = await mysql.createConnection({ host: '127.0.0.1', port, user: 'app', database: 'appdb' });
    const [fresh] = await c.query('SELECT @mysql2_var AS v');
    if (fresh[0].v !== null) throw new Error('state from another client');
    await c.query('SET @mysql2_var = ?', [n]);
    const [rows] = await c.execute('SELECT ? + 1 AS v', [round]);
    if (Number(rows[0].v) !== round + 1) throw new Error('wrong result');
    await c.beginTransaction();
    await c.execute('SELECT ? AS t', [String(n)]);
    await c.rollback();
    try {
      await c.execute('SELECT * FROM no_such_table_here WHERE a = ?', [1]);
      throw new Error('no error');
    } catch (e) {
      if (e.errno !== 1146) throw e;
    }
    await c.end();
  }
}
Promise.all([0, 1, 2, 3].map(work)).then(() => console.log('mysql2 ok'))
  .catch((e) => { console.error(e); process.exit(1); });
";

#[test]
fn transaction_pooling_is_postgresql_only() {
    let env = TestEnv::new();
    let run = Run::from(
        env.cmd(&[
            "proxy",
            "mysql",
            "-h",
            ENDPOINT,
            "--pool-mode",
            "transaction",
        ])
        .output()
        .unwrap(),
    );
    run.assert_code(2);
    assert!(run.stderr.contains("--pool-mode session"), "{}", run.stderr);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_database_a_client_chose_does_not_reach_the_next_client() {
    let env = TestEnv::new();
    let p = proxy(&env, &["--pool-size", "1"]);
    let no_db: mysql_async::Opts = mysql_async::OptsBuilder::default()
        .ip_or_hostname("127.0.0.1")
        .tcp_port(p.port())
        .user(Some("app"))
        .prefer_socket(false)
        .into();
    let mut first = mysql_async::Conn::new(no_db.clone())
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", p.log()));
    first.query_drop("USE appdb").await.unwrap();
    first.disconnect().await.unwrap();
    let mut second = mysql_async::Conn::new(no_db).await.unwrap();
    let db: Option<Option<String>> = second.query_first("SELECT DATABASE()").await.unwrap();
    assert_eq!(db, Some(None), "{}", p.log());
    second.disconnect().await.unwrap();
}

#[test]
fn character_set_and_session_variables_are_the_next_clients_own() {
    let env = TestEnv::new();
    let p = proxy(&env, &["--pool-size", "1"]);
    let show =
        "SELECT @@character_set_client, @@collation_connection, @@autocommit, @@session.time_zone";
    let before = mariadb(&p, show);
    before.assert_code(0);
    let changed = mariadb(
        &p,
        "SET NAMES latin1; SET autocommit = 0; SET time_zone = '+05:00'; SELECT 1",
    );
    changed.assert_code(0);
    let after = mariadb(&p, show);
    after.assert_code(0);
    assert_eq!(after.stdout, before.stdout, "{}", p.log());
}
