//! Ctrl-C during `-c` / `-e` cancels the statement on the server (a
//! PostgreSQL `CancelRequest`, a MySQL `KILL QUERY`, each over a second
//! verified connection) before rdsconn exits 130.

use std::process::Stdio;

use crate::support::activity::{cmd, running, wait_for};
use crate::support::server::Variant;
use crate::support::{Run, TestEnv, maria, pg};

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
