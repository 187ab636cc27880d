//! `rdsconn postgres` against real PostgreSQL servers with test-CA
//! certificates, dialed through `--via` while verifying the RDS-like name.

use crate::support::pg::{self, APP_PASSWORD, Variant};
use crate::support::pki::ENDPOINT;
use crate::support::{Run, TestEnv};

/// `rdsconn --ca-bundle TEST-CA postgres -h ENDPOINT -U app -d appdb --via SERVER EXTRA…`
fn pg_cmd(env: &TestEnv, variant: Variant, extra: &[&str]) -> std::process::Command {
    let server = pg::server(variant);
    let ca = pg::pki().ca_file.display().to_string();
    let via = format!("127.0.0.1:{}", server.port);
    let mut args = vec![
        "--ca-bundle",
        &ca,
        "postgres",
        "-h",
        ENDPOINT,
        "-U",
        "app",
        "-d",
        "appdb",
        "--via",
        &via,
    ];
    args.extend_from_slice(extra);
    env.cmd(&args)
}

fn run_pg(variant: Variant, extra: &[&str], password: Option<&str>) -> Run {
    let env = TestEnv::new();
    let mut cmd = pg_cmd(&env, variant, extra);
    if let Some(pw) = password {
        cmd.env("PGPASSWORD", pw);
    }
    Run::from(cmd.output().unwrap())
}

#[test]
fn verify_full_through_via_runs_sql_with_nulls_and_unicode() {
    let run = run_pg(
        Variant::Good,
        &[
            "--output",
            "json",
            "-c",
            "SELECT 1 AS one, NULL AS nothing, 'NULL' AS word, 'ünïcødé ✓' AS u",
        ],
        Some(APP_PASSWORD),
    );
    run.assert_code(0);
    let json = run.json();
    assert_eq!(
        json,
        serde_json::json!([{"one": "1", "nothing": null, "word": "NULL", "u": "ünïcødé ✓"}])
    );
}

#[test]
fn ten_thousand_rows_tab_separated_when_piped() {
    let run = run_pg(
        Variant::Good,
        &[
            "-e",
            "SELECT g AS n, repeat('x', g % 5) AS s FROM generate_series(1, 10000) g",
        ],
        Some(APP_PASSWORD),
    );
    run.assert_code(0);
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines.len(), 10_001);
    assert_eq!(lines[0], "n\ts");
    assert_eq!(lines[10_000], "10000\t");
    assert_eq!(lines[3], "3\txxx");
}

#[test]
fn multiple_statements_behave_like_psql() {
    let run = run_pg(
        Variant::Good,
        &[
            "--output",
            "json",
            "-c",
            "CREATE TEMP TABLE t(a int); INSERT INTO t VALUES (1),(2); SELECT a FROM t ORDER BY a; SELECT count(*) AS c FROM t",
        ],
        Some(APP_PASSWORD),
    );
    run.assert_code(0);
    assert_eq!(
        run.json(),
        serde_json::json!([[{"a": "1"}, {"a": "2"}], [{"c": "2"}]])
    );
}

#[test]
fn info_shows_tls_and_the_certificate() {
    let run = run_pg(
        Variant::Good,
        &["--output", "json", "--info"],
        Some(APP_PASSWORD),
    );
    run.assert_code(0);
    let j = run.json();
    assert!(
        j["tls"]["protocol"].as_str().unwrap().starts_with("TLSv1."),
        "{j}"
    );
    assert_eq!(j["tls"]["mode"], "verify-full");
    assert_eq!(
        j["tls"]["certificate"]["sans"],
        serde_json::json!([ENDPOINT])
    );
    assert!(
        j["tls"]["certificate"]["subject"]
            .as_str()
            .unwrap()
            .contains(ENDPOINT)
    );
    assert!(
        j["tls"]["certificate"]["issuer"]
            .as_str()
            .unwrap()
            .contains("rdsconn test CA")
    );
    assert_eq!(j["endpoint"], format!("{ENDPOINT}:5432"));
    assert_eq!(j["auth"], "password");
    assert!(
        j["server_version"]
            .as_str()
            .unwrap()
            .starts_with(char::is_numeric)
    );

    let text = run_pg(Variant::Good, &["--info"], Some(APP_PASSWORD));
    text.assert_code(0);
    assert!(
        text.stdout.contains("tls:          TLSv1.3"),
        "{}",
        text.stdout
    );
}

#[test]
fn wrong_name_is_refused_by_verify_full_and_accepted_by_verify_ca() {
    let run = run_pg(Variant::WrongName, &["-c", "SELECT 1"], Some(APP_PASSWORD));
    run.assert_code(5);
    assert!(
        run.stderr.starts_with(&format!(
            "error: connecting to {ENDPOINT}:5432 via 127.0.0.1:"
        )),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("not valid for \"mydb.abc123"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr
            .contains("otherdb.xyz789.us-east-1.rds.amazonaws.com, localhost"),
        "SANs listed: {}",
        run.stderr
    );

    let run = run_pg(
        Variant::WrongName,
        &["--tls", "verify-ca", "-c", "SELECT 1 AS x"],
        Some(APP_PASSWORD),
    );
    run.assert_code(0);
    assert_eq!(run.stdout, "x\n1\n");
}

#[test]
fn unknown_ca_and_expired_certificates_are_refused() {
    for (variant, needle) in [
        (Variant::OtherCa, "not trusted"),
        (Variant::Expired, "expired"),
    ] {
        for mode in ["verify-full", "verify-ca"] {
            let run = run_pg(
                variant,
                &["--tls", mode, "-c", "SELECT 1"],
                Some(APP_PASSWORD),
            );
            run.assert_code(5);
            assert!(
                run.stderr.contains(needle),
                "{variant:?} {mode}: {}",
                run.stderr
            );
            assert!(run.stdout.is_empty());
        }
    }
}

#[test]
fn server_without_tls_is_refused_before_the_password_is_sent() {
    let run = run_pg(Variant::NoTls, &["-c", "SELECT 1"], Some(APP_PASSWORD));
    run.assert_code(5);
    assert!(run.stderr.contains("does not offer TLS"), "{}", run.stderr);
}

#[test]
fn wrong_password_is_exit_6() {
    let run = run_pg(Variant::Good, &["-c", "SELECT 1"], Some("not-the-password"));
    run.assert_code(6);
    assert!(
        run.stderr.contains("rejected authentication"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("28P01"), "{}", run.stderr);
}

#[test]
fn sql_error_is_exit_1_with_sqlstate() {
    let run = run_pg(Variant::Good, &["-c", "SELEC 1"], Some(APP_PASSWORD));
    run.assert_code(1);
    assert!(
        run.stderr
            .starts_with("error: syntax error at or near \"SELEC\" (SQLSTATE 42601)"),
        "{}",
        run.stderr
    );
}

#[test]
fn nothing_listening_and_black_hole_are_network_errors() {
    let env = TestEnv::new();
    let ca = pg::pki().ca_file.display().to_string();
    let closed = format!("127.0.0.1:{}", pg::free_port());
    let run = env.run_with(
        &[
            "--ca-bundle",
            &ca,
            "postgres",
            "-h",
            ENDPOINT,
            "-U",
            "app",
            "--via",
            &closed,
            "-c",
            "SELECT 1",
        ],
        &[("PGPASSWORD", "x")],
    );
    run.assert_code(4);
    assert!(run.stderr.contains("Connection refused"), "{}", run.stderr);

    let hole = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let via = hole.local_addr().unwrap().to_string();
    let run = env.run_with(
        &[
            "--ca-bundle",
            &ca,
            "postgres",
            "-h",
            ENDPOINT,
            "-U",
            "app",
            "--via",
            &via,
            "--connect-timeout",
            "1s",
            "-c",
            "SELECT 1",
        ],
        &[("PGPASSWORD", "x")],
    );
    run.assert_code(4);
    assert!(
        run.stderr
            .contains("timed out after 1s during TLS handshake"),
        "{}",
        run.stderr
    );
    drop(hole);
}

#[test]
fn password_stdin_and_secrets_stay_out_of_output() {
    let env = TestEnv::new();
    let mut cmd = pg_cmd(
        &env,
        Variant::Good,
        &["-vvv", "--password-stdin", "-c", "SELECT current_user AS u"],
    );
    cmd.stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    std::io::Write::write_all(
        child.stdin.as_mut().unwrap(),
        format!("{APP_PASSWORD}\n").as_bytes(),
    )
    .unwrap();
    let run = Run::from(child.wait_with_output().unwrap());
    run.assert_code(0);
    assert_eq!(run.stdout, "u\napp\n");
    assert!(!run.stderr.contains(APP_PASSWORD) && !run.stdout.contains(APP_PASSWORD));

    let bad = run_pg(
        Variant::Good,
        &["-vvv", "-c", "SELECT 1"],
        Some("wrong-Secret-123"),
    );
    assert!(!bad.stderr.contains("wrong-Secret-123"), "{}", bad.stderr);
}

#[test]
fn usage_errors_come_before_any_connection() {
    let env = TestEnv::new();
    let cases: &[(&[&str], &str)] = &[
        (
            &["postgres", "-h", ENDPOINT, "-U", "app"],
            "native postgres client is not implemented",
        ),
        (
            &[
                "postgres", "-h", ENDPOINT, "-U", "app", "--via", "nohost", "-c", "SELECT 1",
            ],
            "invalid --via",
        ),
        (
            &["postgres", "mysql://app@h", "-c", "SELECT 1"],
            "the URL is for mysql",
        ),
        (
            &["postgres", "-h", ENDPOINT, "-c", "SELECT 1"],
            "database user is required",
        ),
        (
            &[
                "postgres",
                "-h",
                ENDPOINT,
                "-U",
                "a",
                "--iam",
                "--password-stdin",
                "-c",
                "x",
            ],
            "cannot be used with",
        ),
        (
            &["postgres", "-h", ENDPOINT, "-U", "a", "-c", "x"],
            "no password",
        ),
    ];
    for (args, needle) in cases {
        let run = env.run(args);
        assert_eq!(run.code, 2, "{args:?}: {}", run.stderr);
        assert!(run.stderr.contains(needle), "{args:?}: {}", run.stderr);
    }
}
