//! What the test servers are running: the sessions that run a statement,
//! seen by a connection of their own, so that a test acts on a statement
//! that is running.

use std::time::{Duration, Instant};

use super::pki::ENDPOINT;
use super::server::{APP_PASSWORD, pki};
use super::{Run, TestEnv};

/// `rdsconn ENGINE … --via PORT ARGS` with the app password.
pub fn cmd(env: &TestEnv, engine: &str, port: u16, args: &[&str]) -> std::process::Command {
    let ca = pki().ca_file.display().to_string();
    let via = format!("127.0.0.1:{port}");
    let (user, db) = if engine == "postgres" {
        ("-U", "-d")
    } else {
        ("-u", "-D")
    };
    let mut all = vec![
        "--ca-bundle",
        &ca,
        engine,
        "-h",
        ENDPOINT,
        user,
        "app",
        db,
        "appdb",
        "--via",
        &via,
    ];
    all.extend_from_slice(args);
    let mut c = env.cmd(&all);
    c.env("PGPASSWORD", APP_PASSWORD)
        .env("MYSQL_PWD", APP_PASSWORD);
    c
}

/// How many sessions run a statement containing `marker`, as the server
/// reports them.
pub fn running(env: &TestEnv, engine: &str, port: u16, marker: &str) -> u64 {
    let sql = if engine == "postgres" {
        format!(
            "SELECT count(*) AS n FROM pg_stat_activity WHERE state = 'active' AND query LIKE '%{marker}%' AND pid <> pg_backend_pid()"
        )
    } else {
        format!(
            "SELECT COUNT(*) AS n FROM information_schema.PROCESSLIST WHERE INFO LIKE '%{marker}%' AND ID <> CONNECTION_ID()"
        )
    };
    count(env, engine, port, &sql)
}

/// The number a one-row, one-column query answers (as the app user).
pub fn count(env: &TestEnv, engine: &str, port: u16, sql: &str) -> u64 {
    let flag = if engine == "postgres" { "-c" } else { "-e" };
    let run = Run::from(cmd(env, engine, port, &[flag, sql]).output().unwrap());
    run.assert_code(0);
    run.stdout
        .lines()
        .nth(1)
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("{}", run.stdout))
}

pub fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(
            start.elapsed() < Duration::from_mins(2),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits until a session runs a statement containing `marker` (a marker
/// of the test's own: other tests' sessions must not match).
pub fn wait_running(env: &TestEnv, engine: &str, port: u16, marker: &str) {
    wait_for("the statement to run", || {
        running(env, engine, port, marker) > 0
    });
}
