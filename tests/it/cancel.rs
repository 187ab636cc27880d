//! Ctrl-C during `-c` / `-e` cancels the statement on the server (a
//! PostgreSQL `CancelRequest`, a MySQL `KILL QUERY`, each over a second
//! verified connection) before rdsconn exits 130.

use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::support::pki::ENDPOINT;
use crate::support::server::{APP_PASSWORD, Variant, pki};
use crate::support::{Run, TestEnv, maria, pg};

/// `rdsconn ENGINE … --via PORT ARGS` with the app password.
fn cmd(env: &TestEnv, engine: &str, port: u16, args: &[&str]) -> std::process::Command {
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
fn running(env: &TestEnv, engine: &str, port: u16, marker: &str) -> u64 {
    let sql = if engine == "postgres" {
        format!(
            "SELECT count(*) AS n FROM pg_stat_activity WHERE state = 'active' AND query LIKE '%{marker}%' AND pid <> pg_backend_pid()"
        )
    } else {
        format!(
            "SELECT COUNT(*) AS n FROM information_schema.PROCESSLIST WHERE INFO LIKE '%{marker}%' AND ID <> CONNECTION_ID()"
        )
    };
    let flag = if engine == "postgres" { "-c" } else { "-e" };
    let run = Run::from(cmd(env, engine, port, &[flag, &sql]).output().unwrap());
    run.assert_code(0);
    run.stdout
        .lines()
        .nth(1)
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("{}", run.stdout))
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(
            start.elapsed() < Duration::from_mins(2),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn ctrl_c_cancels_the_running_statement_on_the_server() {
    for (engine, port, sleep) in [
        (
            "postgres",
            pg::server(Variant::Good).port,
            "SELECT pg_sleep(300) /* rdsconn-cancel-pg */",
        ),
        (
            "mysql",
            maria::server(Variant::Good).port,
            "SELECT SLEEP(300) /* rdsconn-cancel-my */",
        ),
    ] {
        let env = TestEnv::new();
        let marker = if engine == "postgres" {
            "rdsconn-cancel-pg"
        } else {
            "rdsconn-cancel-my"
        };
        let flag = if engine == "postgres" { "-c" } else { "-e" };
        let child = cmd(&env, engine, port, &[flag, sleep])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        wait_for("the statement to run", || {
            running(&env, engine, port, marker) == 1
        });
        let pid = child.id().to_string();
        assert!(
            std::process::Command::new("kill")
                .args(["-INT", &pid])
                .status()
                .unwrap()
                .success()
        );
        let run = Run::from(child.wait_with_output().unwrap());
        run.assert_code(130);
        assert!(
            run.stderr
                .contains("cancelling the statement on the server"),
            "{}",
            run.stderr
        );
        assert!(
            !run.stderr.contains("may still be running"),
            "{}",
            run.stderr
        );
        // The server is no longer running it.
        wait_for("the statement to end on the server", || {
            running(&env, engine, port, marker) == 0
        });
    }
}
