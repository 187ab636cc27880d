//! Real drivers reading what `rdsconn env` / `exec` export, each opening a
//! TLS session it verified itself: asyncpg and node-pg (`DATABASE_URL`),
//! mysql2 (`DATABASE_URL`), `SQLAlchemy` + `PyMySQL` (`SQLALCHEMY_URL`),
//! and the `MariaDB` tools Debian ships (`exec … mariadb-dump`).
//! `scripts/test.sh` installs them (`PyPI` into `.venv`, npm into
//! `tests/node`).

use std::process::Command;

use crate::support::server::{
    APP_PASSWORD, IAM_ACCESS_KEY, IAM_REGION, IAM_SECRET_KEY, IAM_USER, ODD_PASSWORD, ODD_USER,
    Variant, pki,
};
use crate::support::{Run, TestEnv, maria, node_modules, pg, python};

fn ca() -> String {
    pki().ca_file.display().to_string()
}

/// `rdsconn --ca-bundle CA exec ENGINE -h localhost -p PORT -u USER -d appdb
/// -- PROGRAM ARGS…` with the password in the engine's variable.
fn exec(env: &TestEnv, engine: &str, user: &str, password: &str, program: &[&str]) -> Command {
    let ca = ca();
    let (port, pw_var) = if engine == "postgres" {
        (pg::server(Variant::Localhost).port, "PGPASSWORD")
    } else {
        (maria::server(Variant::Localhost).port, "MYSQL_PWD")
    };
    let port = port.to_string();
    let mut args = vec![
        "--ca-bundle",
        &ca,
        "exec",
        engine,
        "-h",
        "localhost",
        "-P",
        &port,
        "-u",
        user,
        "-d",
        "appdb",
        "--",
    ];
    args.extend_from_slice(program);
    let mut cmd = env.cmd(&args);
    cmd.env(pw_var, password)
        .env("NODE_PATH", node_modules())
        .env_remove("NODE_EXTRA_CA_CERTS");
    cmd
}

fn run(mut cmd: Command) -> Run {
    Run::from(cmd.output().unwrap())
}

const ASYNCPG: &str = r"
import asyncio, os, asyncpg
async def main():
    conn = await asyncpg.connect(os.environ['DATABASE_URL'])
    row = await conn.fetchrow(
        'SELECT current_user AS u, ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()')
    print(row['u'], row['ssl'])
    await conn.close()
asyncio.run(main())
";

const NODE_PG: &str = r"
const { Client } = require('pg');
(async () => {
  const c = new Client({ connectionString: process.env.DATABASE_URL });
  await c.connect();
  const r = await c.query('SELECT current_user AS u, ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()');
  console.log(r.rows[0].u, r.rows[0].ssl);
  await c.end();
})().catch((e) => { console.error(e.code || '', e.message); process.exit(3); });
";

const MYSQL2: &str = r"
const mysql = require('mysql2/promise');
(async () => {
  const c = await mysql.createConnection(process.env.DATABASE_URL);
  const [u] = await c.query('SELECT CURRENT_USER() AS u');
  const [s] = await c.query(`SHOW SESSION STATUS LIKE 'Ssl_cipher'`);
  console.log(u[0].u.split('@')[0], s[0].Value !== '');
  await c.end();
})().catch((e) => { console.error(e.code || '', e.message); process.exit(3); });
";

const SQLALCHEMY: &str = r#"
import os, sqlalchemy
engine = sqlalchemy.create_engine(os.environ['SQLALCHEMY_URL'])
with engine.connect() as c:
    user = c.execute(sqlalchemy.text('SELECT CURRENT_USER()')).scalar()
    cipher = c.execute(sqlalchemy.text(
        "SHOW SESSION STATUS LIKE 'Ssl_cipher'")).fetchone()[1]
print(user.split('@')[0], cipher != '')
"#;

/// `program` under `exec ENGINE`, as each of the two password users (one
/// with every quote and `%` in its password), prints `USER TLS` with TLS
/// on: `truth` is the language's true (`True`, `true`).
fn each_user_connects_verified(
    env: &TestEnv,
    (engine, label): (&str, &str),
    program: &[&str],
    truth: &str,
) {
    for (user, password) in [("app", APP_PASSWORD), (ODD_USER, ODD_PASSWORD)] {
        let r = run(exec(env, engine, user, password, program));
        r.assert_code(0);
        assert_eq!(
            r.stdout,
            format!("{user} {truth}\n"),
            "{label}: {}",
            r.stderr
        );
    }
}

#[test]
fn asyncpg_and_node_pg_connect_verified_with_database_url() {
    let env = TestEnv::new();
    let py = python().display().to_string();
    let asyncpg = [py.as_str(), "-c", ASYNCPG];
    each_user_connects_verified(&env, ("postgres", "asyncpg"), &asyncpg, "True");
    let node_pg = ["node", "-e", NODE_PG];
    each_user_connects_verified(&env, ("postgres", "node-pg"), &node_pg, "true");
}

#[test]
fn mysql2_and_sqlalchemy_pymysql_connect_verified() {
    let env = TestEnv::new();
    let py = python().display().to_string();
    let mysql2 = ["node", "-e", MYSQL2];
    each_user_connects_verified(&env, ("mysql", "mysql2"), &mysql2, "true");
    let sqlalchemy = [py.as_str(), "-c", SQLALCHEMY];
    each_user_connects_verified(&env, ("mysql", "SQLAlchemy"), &sqlalchemy, "True");
}

/// An IAM token through mysql2 needs its cleartext plugin switched on;
/// the URL does it.
#[test]
fn mysql2_logs_in_with_an_iam_token() {
    let env = TestEnv::new();
    let ca = ca();
    let port = maria::server(Variant::Localhost).port.to_string();
    let mut cmd = env.cmd(&[
        "--ca-bundle",
        &ca,
        "exec",
        "mysql",
        "-h",
        "localhost",
        "-P",
        &port,
        "-u",
        IAM_USER,
        "--iam",
        "--",
        "node",
        "-e",
        MYSQL2,
    ]);
    cmd.env("AWS_ACCESS_KEY_ID", IAM_ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", IAM_SECRET_KEY)
        .env("AWS_REGION", IAM_REGION)
        .env("NODE_PATH", node_modules());
    let r = run(cmd);
    r.assert_code(0);
    assert_eq!(r.stdout, format!("{IAM_USER} true\n"), "{}", r.stderr);
}

/// With a CA file too large to put into the URL (any file but the RDS
/// bundle), mysql2 gets a strict check against Node's own roots: the
/// session fails on the certificate instead of going on without TLS.
#[test]
fn mysql2_fails_closed_when_it_cannot_be_given_the_ca() {
    let env = TestEnv::new();
    let big = env.root.path().join("big-bundle.pem");
    let bundle =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("certs/rds-global-bundle.pem");
    let mut pem = std::fs::read_to_string(bundle).unwrap();
    pem.push_str(&std::fs::read_to_string(&pki().ca_file).unwrap());
    std::fs::write(&big, pem).unwrap();
    let big = big.display().to_string();
    let port = maria::server(Variant::Localhost).port.to_string();
    let mut cmd = env.cmd(&[
        "--ca-bundle",
        &big,
        "exec",
        "mysql",
        "-h",
        "localhost",
        "-P",
        &port,
        "-u",
        "app",
        "--",
        "node",
        "-e",
        MYSQL2,
    ]);
    cmd.env("MYSQL_PWD", APP_PASSWORD)
        .env("NODE_PATH", node_modules())
        .env_remove("NODE_EXTRA_CA_CERTS");
    let r = run(cmd);
    r.assert_code(3);
    assert!(r.stdout.is_empty(), "{}", r.stdout);
    assert!(
        r.stderr.contains("CERT") || r.stderr.contains("certificate"),
        "{}",
        r.stderr
    );
}

/// `exec mysql -- mariadb-dump`: Debian's MariaDB tools read neither
/// `MYSQL_HOST` nor `MYSQL_USER` nor `ssl-mode`; rdsconn hands them an option
/// file in their dialect.
#[test]
fn exec_runs_the_mariadb_tools_verified() {
    let env = TestEnv::new();
    for tool in ["mariadb-dump", "mysqldump"] {
        let r = run(exec(
            &env,
            "mysql",
            "app",
            APP_PASSWORD,
            &[tool, "--no-data", "--skip-comments", "appdb"],
        ));
        r.assert_code(0);
        assert!(
            r.stdout.contains("CREATE TABLE") || r.stdout.contains("SET"),
            "{tool}: {}{}",
            r.stdout,
            r.stderr
        );
    }
    let r = run(exec(
        &env,
        "mysql",
        ODD_USER,
        ODD_PASSWORD,
        &["mariadb-admin", "status"],
    ));
    r.assert_code(0);
    assert!(r.stdout.contains("Uptime"), "{}{}", r.stdout, r.stderr);
}

/// A `.env` file as python-dotenv and Node's dotenv read it.
fn dotenv_read_back(file: &std::path::Path) -> (serde_json::Value, serde_json::Value) {
    let py = Run::from(
        Command::new(python())
            .args([
                "-c",
                "import json, sys, dotenv; print(json.dumps(dotenv.dotenv_values(sys.argv[1])))",
            ])
            .arg(file)
            .env("HOME", "/expanded-home")
            .output()
            .unwrap(),
    );
    py.assert_code(0);
    let node = Run::from(
        Command::new("node")
            .args([
                "-e",
                "const fs = require('fs'); \
                 console.log(JSON.stringify(require('dotenv').parse(fs.readFileSync(process.argv[1]))))",
            ])
            .arg(file)
            .env("NODE_PATH", node_modules())
            .output()
            .unwrap(),
    );
    node.assert_code(0);
    (
        serde_json::from_str(&py.stdout).unwrap(),
        serde_json::from_str(&node.stdout).unwrap(),
    )
}

/// One error line naming the variable and `--format json`, nothing on
/// stdout, and never the password itself.
fn assert_dotenv_refusal(run: &Run, var: &str, password: Option<&str>) {
    let errors: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| l.starts_with("error:"))
        .collect();
    assert_eq!(errors.len(), 1, "{var}: {}", run.stderr);
    assert!(errors[0].contains(var), "{var}: {}", run.stderr);
    assert!(
        run.stderr.contains("--format json"),
        "{var}: {}",
        run.stderr
    );
    assert_eq!(run.stdout, "", "{var}");
    if let Some(p) = password.filter(|p| p.len() > 2) {
        assert!(!run.stderr.contains(p), "{var}: the password was echoed");
    }
}

/// `env --format dotenv` is read back byte for byte by python-dotenv and
/// Node's dotenv, with no line lost, or refused naming the variable: the
/// values (a database name, a password from a secret) are hostile. A
/// database name ending in `\` made python-dotenv swallow the next line
/// (`PGSSLMODE` vanished).
#[test]
fn dotenv_format_round_trips_or_refuses() {
    let env = TestEnv::new();
    let ca = ca();
    let port = pg::server(Variant::Localhost).port.to_string();
    let args = |format: &str, db: &str| -> Vec<String> {
        [
            "--ca-bundle",
            &ca,
            "env",
            "postgres",
            "-h",
            "localhost",
            "-p",
            &port,
            "-U",
            "app",
            "-d",
            db,
            "--format",
            format,
        ]
        .iter()
        .map(|a| (*a).to_string())
        .collect()
    };
    let hostile = [
        "plain",
        "p'w $x",
        "\\",
        "\\\\",
        "\\'",
        "'",
        "\"",
        "${HOME}",
        "$HOME",
        "$(id)",
        "`id`",
        "a#b",
        " #c",
        "trail\\",
        "C:\\dir",
        "both ' and \"",
        "\\n",
        "a\\\"b",
        "x=y",
        " lead",
        "tail ",
    ];
    let (mut written, mut refused) = (0, 0);
    for value in hostile {
        for (db, pw) in [(value, "pw"), ("appdb", value)] {
            let what = format!("db {db:?} password {pw:?}");
            let vars = [("PGPASSWORD", pw)];
            let json = env.run_with(&strs(&args("json", db)), &vars);
            json.assert_code(0);
            let dotenv = env.run_with(&strs(&args("dotenv", db)), &vars);
            if dotenv.code == 2 {
                refused += 1;
                let var = if db == value {
                    "PGDATABASE"
                } else {
                    "PGPASSWORD"
                };
                assert_dotenv_refusal(&dotenv, var, (pw == value).then_some(value));
                continue;
            }
            dotenv.assert_code(0);
            written += 1;
            let file = env.root.path().join(".env");
            std::fs::write(&file, &dotenv.stdout).unwrap();
            let (py, node) = dotenv_read_back(&file);
            assert_eq!(
                py,
                json.json(),
                "{what}: python-dotenv read\n{}",
                dotenv.stdout
            );
            assert_eq!(
                node,
                json.json(),
                "{what}: Node's dotenv read\n{}",
                dotenv.stdout
            );
        }
    }
    // Most values are written; only what no quoting holds in both is refused.
    assert!(written >= 30, "{written} written, {refused} refused");
    assert!(refused >= 4, "{written} written, {refused} refused");
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}
