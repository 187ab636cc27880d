//! `rdsconn postgres` and `rdsconn mysql` against real PostgreSQL and
//! MariaDB servers with test-CA certificates, dialed through `--via` while
//! verifying (and signing for) the RDS-like endpoint name. Every behaviour
//! the two commands share is checked on both engines.

use std::process::{Command, Stdio};

use crate::support::activity;
use crate::support::pki::ENDPOINT;
use crate::support::proxy::Cutter;
use crate::support::server::{
    APP_PASSWORD, IAM_ACCESS_KEY, IAM_SECRET_KEY, IAM_USER, Server, Variant, free_port, pam_log,
    pki,
};
use crate::support::{Run, TestEnv, maria, pg, run_with_stdin};

/// One engine command and its server harness.
#[derive(Clone, Copy)]
struct Db {
    command: &'static str,
    user_flag: &'static str,
    database_flag: &'static str,
    port_flag: &'static str,
    password_env: &'static str,
    server: fn(Variant) -> &'static Server,
    signed_port: u16,
    /// Prints the session user as column `u`.
    whoami: &'static str,
    /// 10,000 rows: `n` = 1..=10000, `s` = `n % 5` times "x".
    ten_thousand: &'static str,
    /// What the server's access-denied error contains.
    denied_code: &'static str,
    /// What the server's syntax error contains.
    syntax_code: &'static str,
}

const PG: Db = Db {
    command: "postgres",
    user_flag: "-U",
    database_flag: "-d",
    port_flag: "-p",
    password_env: "PGPASSWORD",
    server: pg::server,
    signed_port: pg::SIGNED_PORT,
    whoami: "SELECT current_user AS u",
    ten_thousand: "SELECT g AS n, repeat('x', g % 5) AS s FROM generate_series(1, 10000) g",
    denied_code: "28P01",
    syntax_code: "(SQLSTATE 42601)",
};

const MYSQL: Db = Db {
    command: "mysql",
    user_flag: "-u",
    database_flag: "-D",
    port_flag: "-P",
    password_env: "MYSQL_PWD",
    server: maria::server,
    signed_port: maria::SIGNED_PORT,
    whoami: "SELECT SUBSTRING_INDEX(CURRENT_USER(), '@', 1) AS u",
    ten_thousand: "SELECT seq AS n, REPEAT('x', seq % 5) AS s FROM seq_1_to_10000",
    denied_code: "ERROR 1045 (28000)",
    syntax_code: "ERROR 1064 (42000)",
};

const BOTH: [Db; 2] = [PG, MYSQL];

impl Db {
    /// `rdsconn --ca-bundle TEST-CA CMD -h ENDPOINT USER app DB appdb --via SERVER EXTRA…`
    fn cmd_as(self, env: &TestEnv, variant: Variant, user: &str, extra: &[&str]) -> Command {
        let server = (self.server)(variant);
        let ca = pki().ca_file.display().to_string();
        let via = format!("127.0.0.1:{}", server.port);
        let mut args = vec![
            "--ca-bundle",
            &ca,
            self.command,
            "-h",
            ENDPOINT,
            self.user_flag,
            user,
            self.database_flag,
            "appdb",
            "--via",
            &via,
        ];
        args.extend_from_slice(extra);
        env.cmd(&args)
    }

    fn run(self, variant: Variant, extra: &[&str], password: Option<&str>) -> Run {
        let env = TestEnv::new();
        let mut cmd = self.cmd_as(&env, variant, "app", extra);
        if let Some(pw) = password {
            cmd.env(self.password_env, pw);
        }
        Run::from(cmd.output().unwrap())
    }

    /// `-e SQL --output json` as `app` on the good server; must succeed.
    fn json(self, sql: &str) -> serde_json::Value {
        let run = self.run(
            Variant::Good,
            &["--output", "json", "-e", sql],
            Some(APP_PASSWORD),
        );
        run.assert_code(0);
        crate::support::schema::assert_valid("query", &run.stdout);
        run.json()
    }

    fn run_iam(self, secret_key: &str, extra: &[&str]) -> Run {
        let env = TestEnv::new();
        let mut args = vec!["--iam"];
        args.extend_from_slice(extra);
        let mut cmd = self.cmd_as(&env, Variant::Good, IAM_USER, &args);
        cmd.env("AWS_ACCESS_KEY_ID", IAM_ACCESS_KEY)
            .env("AWS_SECRET_ACCESS_KEY", secret_key);
        Run::from(cmd.output().unwrap())
    }
}

#[test]
fn verify_full_through_via_runs_sql_with_nulls_and_unicode() {
    for db in BOTH {
        assert_eq!(
            db.json("SELECT 1 AS one, NULL AS nothing, 'NULL' AS word, 'ünïcødé ✓' AS u")["results"]
                [0]["rows"],
            serde_json::json!([[1, null, "NULL", "ünïcødé ✓"]]),
            "{}",
            db.command
        );
    }
}

#[test]
fn ten_thousand_rows_tab_separated_when_piped() {
    for db in BOTH {
        let run = db.run(Variant::Good, &["-e", db.ten_thousand], Some(APP_PASSWORD));
        run.assert_code(0);
        let lines: Vec<&str> = run.stdout.lines().collect();
        assert_eq!(lines.len(), 10_001, "{}", db.command);
        assert_eq!(lines[0], "n\ts");
        assert_eq!(lines[10_000], "10000\t");
        assert_eq!(lines[3], "3\txxx");
    }
}

#[test]
fn multiple_statements_behave_like_the_native_clients() {
    for db in BOTH {
        assert_eq!(
            shape(&db.json(
                "CREATE TEMPORARY TABLE t(a int); INSERT INTO t VALUES (1),(2); \
                 SELECT a FROM t ORDER BY a; SELECT count(*) AS c FROM t"
            )),
            serde_json::json!([
                {"columns": [], "rows": [], "affected": 0},
                {"columns": [], "rows": [], "affected": 2},
                {"columns": ["a"], "rows": [[1], [2]], "affected": null},
                {"columns": ["c"], "rows": [[2]], "affected": null},
            ]),
            "{}",
            db.command
        );
    }
}

/// The results without the engine-specific type names.
fn shape(json: &serde_json::Value) -> serde_json::Value {
    let mut results = json["results"].clone();
    for r in results.as_array_mut().expect("results is an array") {
        r.as_object_mut()
            .expect("a result is an object")
            .remove("types");
    }
    results
}

#[test]
fn json_values_are_typed_and_the_shape_is_stable() {
    for db in BOTH {
        let (bool_sql, json_sql) = if db.command == "postgres" {
            ("true", "'{\"a\": [1, 2]}'::jsonb")
        } else {
            ("'t'", "'{\"a\": [1, 2]}'")
        };
        let j = db.json(&format!(
            "SELECT 42 AS i, CAST(9007199254740993 AS DECIMAL(20,0)) AS big, \
             CAST(1.50 AS DECIMAL(5,2)) AS d, {bool_sql} AS b, {json_sql} AS j, \
             NULL AS z, '007' AS s"
        ));
        let r = &j["results"][0];
        assert_eq!(
            r["columns"],
            serde_json::json!(["i", "big", "d", "b", "j", "z", "s"])
        );
        assert_eq!(r["rows"][0][0], 42, "{}: {j}", db.command);
        assert_eq!(r["rows"][0][1], "9007199254740993", "{}: {j}", db.command);
        assert_eq!(r["rows"][0][2], 1.5, "{}: {j}", db.command);
        if db.command == "postgres" {
            assert_eq!(r["rows"][0][3], true, "{j}");
            assert_eq!(r["rows"][0][4], serde_json::json!({"a": [1, 2]}), "{j}");
            assert_eq!(r["types"][4], "jsonb", "{j}");
        }
        assert_eq!(
            r["rows"][0][5],
            serde_json::Value::Null,
            "{}: {j}",
            db.command
        );
        assert_eq!(r["rows"][0][6], "007", "{}: {j}", db.command);
        // One statement or several: always {"results": [...]}.
        let one = db.json("SELECT 1 AS a");
        assert_eq!(
            shape(&one),
            serde_json::json!([{"columns": ["a"], "rows": [[1]], "affected": null}])
        );
    }
}

#[test]
fn mysql_prints_the_statements_before_a_failing_one() {
    // As `mysql -e`: results so far, then the error (exit 1).
    let run = MYSQL.run(
        Variant::Good,
        &["-e", "SELECT 1 AS a; SELEC 2; SELECT 3 AS b"],
        Some(APP_PASSWORD),
    );
    run.assert_code(1);
    assert_eq!(run.stdout, "a\n1\n");
    assert!(run.stderr.contains(MYSQL.syntax_code), "{}", run.stderr);
}

#[test]
fn info_shows_tls_and_the_certificate() {
    for db in BOTH {
        let run = db.run(
            Variant::Good,
            &["--output", "json", "--info"],
            Some(APP_PASSWORD),
        );
        run.assert_code(0);
        let j = run.json();
        assert!(
            j["tls"]["protocol"]
                .as_str()
                .is_some_and(|p| p.starts_with("TLSv1.")),
            "{j}"
        );
        assert!(
            j["tls"]["cipher"].as_str().is_some_and(|c| !c.is_empty()),
            "{j}"
        );
        assert_eq!(j["tls"]["mode"], "verify-full");
        assert_eq!(j["engine"], db.command);
        assert_eq!(
            j["tls"]["certificate"]["sans"],
            serde_json::json!([ENDPOINT]),
            "{j}"
        );
        assert!(
            j["tls"]["certificate"]["subject"]
                .as_str()
                .is_some_and(|s| s.contains(ENDPOINT)),
            "{j}"
        );
        assert!(
            j["tls"]["certificate"]["issuer"]
                .as_str()
                .is_some_and(|s| s.contains("rdsconn test CA")),
            "{j}"
        );
        assert_eq!(j["endpoint"], format!("{ENDPOINT}:{}", db.signed_port));
        assert_eq!(j["auth"], "password");
        assert!(
            j["server_version"]
                .as_str()
                .is_some_and(|v| v.starts_with(char::is_numeric)),
            "{j}"
        );
        assert!(
            j["timings"]["total_ms"].as_f64().is_some_and(|t| t > 0.0),
            "{j}"
        );

        let text = db.run(Variant::Good, &["--info"], Some(APP_PASSWORD));
        text.assert_code(0);
        assert!(
            text.stdout.contains("tls:          TLSv1.3"),
            "{}",
            text.stdout
        );
    }
}

#[test]
fn wrong_name_is_refused_by_verify_full_and_accepted_by_verify_ca() {
    for db in BOTH {
        let run = db.run(Variant::WrongName, &["-e", "SELECT 1"], Some(APP_PASSWORD));
        run.assert_code(5);
        assert!(
            run.stderr.starts_with(&format!(
                "error: connecting to {ENDPOINT}:{} via 127.0.0.1:",
                db.signed_port
            )),
            "{}",
            run.stderr
        );
        assert!(
            run.stderr.contains(&format!("not valid for \"{ENDPOINT}")),
            "{}",
            run.stderr
        );
        assert!(
            run.stderr
                .contains("otherdb.xyz789.us-east-1.rds.amazonaws.com, localhost"),
            "SANs listed: {}",
            run.stderr
        );

        let run = db.run(
            Variant::WrongName,
            &["--tls", "verify-ca", "-e", "SELECT 1 AS x"],
            Some(APP_PASSWORD),
        );
        run.assert_code(0);
        assert_eq!(run.stdout, "x\n1\n");
    }
}

#[test]
fn unknown_ca_and_expired_certificates_are_refused() {
    for db in BOTH {
        for (variant, needle) in [
            // What was seen: the issuer, the expiry day.
            (
                Variant::OtherCa,
                "not trusted: issued by \"CN=some other CA\", a CA outside",
            ),
            (
                Variant::Expired,
                "expired 2021-01-01; or check this machine's clock",
            ),
        ] {
            for mode in ["verify-full", "verify-ca"] {
                let run = db.run(
                    variant,
                    &["--tls", mode, "-e", "SELECT 1"],
                    Some(APP_PASSWORD),
                );
                run.assert_code(5);
                assert!(
                    run.stderr.contains(needle),
                    "{} {variant:?} {mode}: {}",
                    db.command,
                    run.stderr
                );
                assert!(run.stdout.is_empty());
            }
        }
    }
}

#[test]
fn server_without_tls_is_refused_before_the_password_is_sent() {
    for db in BOTH {
        let run = db.run(Variant::NoTls, &["-e", "SELECT 1"], Some(APP_PASSWORD));
        run.assert_code(5);
        assert!(run.stderr.contains("does not offer TLS"), "{}", run.stderr);
    }
}

#[test]
fn wrong_password_is_exit_6() {
    for db in BOTH {
        let run = db.run(Variant::Good, &["-e", "SELECT 1"], Some("not-the-password"));
        run.assert_code(6);
        assert!(
            run.stderr.contains("rejected authentication"),
            "{}",
            run.stderr
        );
        assert!(run.stderr.contains(db.denied_code), "{}", run.stderr);
        assert!(
            run.stderr
                .contains("hint: check the user name and password")
        );
    }
}

#[test]
fn sql_error_is_exit_1_with_the_server_code() {
    for db in BOTH {
        let run = db.run(Variant::Good, &["-e", "SELEC 1"], Some(APP_PASSWORD));
        run.assert_code(1);
        let first = run.stderr.lines().next().unwrap_or_default();
        assert!(
            first.starts_with("error: ")
                && first.contains("syntax")
                && first.contains(db.syntax_code),
            "{}",
            run.stderr
        );
    }
}

/// The connection breaks while a statement runs (a crashed server, a
/// dropped link): a network failure, exit 4, never "the SQL failed".
#[test]
fn a_connection_lost_during_a_statement_is_exit_4() {
    for db in BOTH {
        let env = TestEnv::new();
        let port = (db.server)(Variant::Good).port;
        let cutter = Cutter::new(port);
        let marker = format!("rdsconn-lost-{}", db.command);
        let sleep = if db.command == "postgres" {
            format!("SELECT pg_sleep(300) /* {marker} */")
        } else {
            format!("SELECT SLEEP(300) /* {marker} */")
        };
        let child = activity::cmd(&env, db.command, cutter.port, &["-e", &sleep])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        activity::wait_for("the statement to run", || {
            activity::running(&env, db.command, port, &marker) == 1
        });
        cutter.cut();
        let run = Run::from(child.wait_with_output().unwrap());
        run.assert_code(4);
        assert!(
            run.stderr
                .starts_with("error: the connection to the server was lost during the statement"),
            "{}",
            run.stderr
        );
        assert_eq!(run.stdout, "", "{}", db.command);
    }
}

#[test]
fn iam_token_is_accepted_by_an_independent_sigv4_check() {
    for db in BOTH {
        let run = db.run_iam(IAM_SECRET_KEY, &["-vvv", "-e", db.whoami]);
        run.assert_code(0);
        assert_eq!(run.stdout, format!("u\n{IAM_USER}\n"), "{}", db.command);
        assert!(
            !run.stderr.contains("X-Amz-") && !run.stderr.contains(IAM_SECRET_KEY),
            "token material at -vvv: {}",
            run.stderr
        );

        // Signed with the wrong secret: the verifier rejects it, rdsconn
        // says authentication failed and prints the IAM checklist.
        let run = db.run_iam("not-the-secret", &["-e", db.whoami]);
        run.assert_code(6);
        assert!(run.stderr.contains("rds-db:connect"), "{}", run.stderr);
        assert!(
            pam_log(db.command).contains("signature mismatch"),
            "verifier log: {}",
            pam_log(db.command)
        );

        let info = db.run_iam(IAM_SECRET_KEY, &["--info", "--output", "json"]);
        info.assert_code(0);
        assert_eq!(info.json()["auth"], "iam");
    }
}

#[test]
fn tokens_for_another_port_or_user_are_rejected_by_the_server() {
    for db in BOTH {
        let other_port = (db.signed_port + 1).to_string();
        let signed_port = db.signed_port.to_string();
        for (port, user, reason) in [
            (other_port.as_str(), IAM_USER, "signed for"),
            (signed_port.as_str(), "someone_else", "DBUser="),
        ] {
            // Minted by `rdsconn token`, then sent as a plain password, so
            // only the server's verifier can refuse it.
            let env = TestEnv::new();
            let creds = [
                ("AWS_ACCESS_KEY_ID", IAM_ACCESS_KEY),
                ("AWS_SECRET_ACCESS_KEY", IAM_SECRET_KEY),
            ];
            let minted = env.run_with(&["token", "-h", ENDPOINT, "-P", port, "-u", user], &creds);
            minted.assert_code(0);
            let cmd = db.cmd_as(
                &env,
                Variant::Good,
                IAM_USER,
                &["--password-stdin", "-e", db.whoami],
            );
            let run = run_with_stdin(cmd, &minted.stdout);
            run.assert_code(6);
            assert!(
                pam_log(db.command).contains(reason),
                "{} {reason}: verifier log: {}",
                db.command,
                pam_log(db.command)
            );
        }
    }
}

#[test]
fn nothing_listening_and_black_hole_are_network_errors() {
    for db in BOTH {
        let env = TestEnv::new();
        let ca = pki().ca_file.display().to_string();
        let closed = format!("127.0.0.1:{}", free_port());
        let base = [
            "--ca-bundle",
            &ca,
            db.command,
            "-h",
            ENDPOINT,
            db.user_flag,
            "app",
        ];
        let with = |extra: &[&str]| {
            let mut args = base.to_vec();
            args.extend_from_slice(extra);
            env.run_with(&args, &[(db.password_env, "x")])
        };
        let run = with(&["--via", &closed, "-e", "SELECT 1"]);
        run.assert_code(4);
        assert!(run.stderr.contains("Connection refused"), "{}", run.stderr);

        let hole = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let via = hole.local_addr().unwrap().to_string();
        let run = with(&["--via", &via, "--connect-timeout", "1s", "-e", "SELECT 1"]);
        run.assert_code(4);
        assert!(
            run.stderr.contains("timed out after 1s during"),
            "{}",
            run.stderr
        );
        drop(hole);
    }
}

#[test]
fn password_stdin_and_secrets_stay_out_of_output() {
    for db in BOTH {
        let env = TestEnv::new();
        let cmd = db.cmd_as(
            &env,
            Variant::Good,
            "app",
            &["-vvv", "--password-stdin", "-e", db.whoami],
        );
        let run = run_with_stdin(cmd, &format!("{APP_PASSWORD}\n"));
        run.assert_code(0);
        assert_eq!(run.stdout, "u\napp\n");
        assert!(!run.stderr.contains(APP_PASSWORD) && !run.stdout.contains(APP_PASSWORD));

        let bad = db.run(
            Variant::Good,
            &["-vvv", "-e", "SELECT 1"],
            Some("wrong-Secret-123"),
        );
        bad.assert_code(6);
        assert!(!bad.stderr.contains("wrong-Secret-123"), "{}", bad.stderr);
    }
}

#[test]
fn environment_variables_fill_in_the_target() {
    let server = maria::server(Variant::Good);
    let env = TestEnv::new();
    let ca = pki().ca_file.display().to_string();
    let via = format!("127.0.0.1:{}", server.port);
    let run = env.run_with(
        &[
            "--ca-bundle",
            &ca,
            "mysql",
            "-u",
            "app",
            "--via",
            &via,
            "--output",
            "json",
            "--info",
        ],
        &[
            ("MYSQL_HOST", ENDPOINT),
            ("MYSQL_TCP_PORT", "3307"),
            ("MYSQL_PWD", APP_PASSWORD),
        ],
    );
    run.assert_code(0);
    assert_eq!(run.json()["endpoint"], format!("{ENDPOINT}:3307"));

    let server = pg::server(Variant::Good);
    let via = format!("127.0.0.1:{}", server.port);
    let run = env.run_with(
        &[
            "--ca-bundle",
            &ca,
            "postgres",
            "--via",
            &via,
            "-c",
            "SELECT current_database() AS d",
        ],
        &[
            ("PGHOST", ENDPOINT),
            ("PGUSER", "app"),
            ("PGDATABASE", "appdb"),
            ("PGPASSWORD", APP_PASSWORD),
        ],
    );
    run.assert_code(0);
    assert_eq!(run.stdout, "d\nappdb\n");
}

#[test]
fn url_target_works_for_both_engines() {
    for (db, url) in [
        (PG, format!("postgres://app@{ENDPOINT}/appdb")),
        (MYSQL, format!("mysql://app@{ENDPOINT}/appdb")),
    ] {
        let server = (db.server)(Variant::Good);
        let env = TestEnv::new();
        let ca = pki().ca_file.display().to_string();
        let via = format!("127.0.0.1:{}", server.port);
        let run = env.run_with(
            &[
                "--ca-bundle",
                &ca,
                db.command,
                &url,
                "--via",
                &via,
                "-e",
                "SELECT 7 AS n",
            ],
            &[(db.password_env, APP_PASSWORD)],
        );
        run.assert_code(0);
        assert_eq!(run.stdout, "n\n7\n", "{}", db.command);
    }
}

#[test]
fn usage_errors_come_before_any_connection() {
    let env = TestEnv::new();
    for db in BOTH {
        let other = if db.command == "mysql" {
            "postgres://app@h"
        } else {
            "mysql://app@h"
        };
        let cases: Vec<(Vec<&str>, &str)> = vec![
            (
                vec![
                    db.command,
                    "-h",
                    ENDPOINT,
                    db.user_flag,
                    "app",
                    "-e",
                    "x",
                    "--",
                    "-c",
                    "y",
                ],
                "cannot be used with",
            ),
            (
                vec![
                    db.command,
                    "-h",
                    ENDPOINT,
                    db.user_flag,
                    "app",
                    "--info",
                    "--client",
                    "psql",
                ],
                "cannot be used with",
            ),
            (
                vec![
                    db.command,
                    "-h",
                    ENDPOINT,
                    db.user_flag,
                    "app",
                    "--via",
                    "nohost",
                    "-e",
                    "x",
                ],
                "invalid --via",
            ),
            (vec![db.command, other, "-e", "x"], "the URL is for"),
            (
                vec![db.command, "-h", ENDPOINT, "-e", "x"],
                "database user is required",
            ),
            (
                vec![
                    db.command,
                    "-h",
                    ENDPOINT,
                    db.user_flag,
                    "a",
                    "--iam",
                    "--password-stdin",
                    "-e",
                    "x",
                ],
                "cannot be used with",
            ),
            (
                vec![db.command, "-h", ENDPOINT, db.user_flag, "a", "-e", "x"],
                "no password",
            ),
            (
                vec![db.command, "-h", ENDPOINT, db.port_flag, "0", "-e", "x"],
                "invalid value '0'",
            ),
        ];
        for (args, needle) in cases {
            let run = env.run(&args);
            assert_eq!(run.code, 2, "{args:?}: {}", run.stderr);
            assert!(run.stderr.contains(needle), "{args:?}: {}", run.stderr);
            let errors = run.stderr.lines().filter(|l| l.starts_with("error:"));
            assert_eq!(errors.count(), 1, "{args:?}: {}", run.stderr);
        }
    }
}
