//! Directory (Kerberos/PAM) users on MySQL: the harness's `Directory`
//! MariaDB runs its PAM plugin without `pam_use_cleartext_plugin`, so the
//! server asks for the password through the `dialog` plugin, as RDS does
//! for directory users. The PAM stack checks a fixed password
//! (`pam_fixed_password.py`, which logs every password it receives) and,
//! for `TWO_FACTOR_USER`, asks a second question (`pam_question.c`).
//!
//! PostgreSQL Kerberos (GSSAPI) is for psql: the harness's PostgreSQL asks
//! `KERBEROS_USER` for GSSAPI.

use std::process::Command;

use crate::support::pki::ENDPOINT;
use crate::support::server::{
    APP_PASSWORD, DIRECTORY_PASSWORD, DIRECTORY_USER, IAM_ACCESS_KEY, IAM_REGION, IAM_SECRET_KEY,
    IAM_USER, KERBEROS_USER, TWO_FACTOR_CODE, TWO_FACTOR_USER, Variant, directory_log, pki,
};
use crate::support::{Run, TestEnv, maria, on_a_terminal, pg, wrapped};

fn ca() -> String {
    pki().ca_file.display().to_string()
}

fn port(variant: Variant) -> u16 {
    maria::server(variant).port
}

/// `rdsconn --ca-bundle CA mysql -h ENDPOINT -P 3306 --via 127.0.0.1:PORT -u USER -D appdb EXTRA…`
fn mysql(env: &TestEnv, variant: Variant, user: &str, extra: &[&str]) -> Command {
    let ca = ca();
    let via = format!("127.0.0.1:{}", port(variant));
    let mut args = vec![
        "--ca-bundle",
        &ca,
        "mysql",
        "-h",
        ENDPOINT,
        "-P",
        "3306",
        "--via",
        &via,
        "-u",
        user,
        "-D",
        "appdb",
    ];
    args.extend_from_slice(extra);
    env.cmd(&args)
}

fn output(mut cmd: Command) -> Run {
    Run::from(cmd.output().unwrap())
}

fn with_password(mut cmd: Command, password: &str) -> Command {
    cmd.env("MYSQL_PWD", password);
    cmd
}

/// A directory user's run on the `Directory` server with `password`.
fn directory(env: &TestEnv, user: &str, extra: &[&str], password: &str) -> Run {
    output(with_password(
        mysql(env, Variant::Directory, user, extra),
        password,
    ))
}

/// The password checks the PAM stack of the server on `port` logged for `user`.
fn attempts(variant: Variant, user: &str) -> Vec<String> {
    let service = format!(
        "service=rdsconn-test-{}-directory-{} ",
        std::process::id(),
        port(variant)
    );
    directory_log()
        .lines()
        .filter(|l| l.contains(&service) && l.contains(&format!("user={user} ")))
        .map(str::to_string)
        .collect()
}

#[test]
fn dialog_users_run_sql_inside_tls_and_info_names_the_plugin() {
    let env = TestEnv::new();
    let run = directory(
        &env,
        DIRECTORY_USER,
        &[
            "-e",
            "SELECT CURRENT_USER(); SHOW SESSION STATUS LIKE 'Ssl_version'",
        ],
        DIRECTORY_PASSWORD,
    );
    run.assert_code(0);
    assert!(
        run.stdout.contains(&format!("{DIRECTORY_USER}@%")),
        "{}",
        run.stdout
    );
    // The server's own view: the session is TLS.
    assert!(run.stdout.contains("TLSv1."), "{}", run.stdout);
    assert!(
        attempts(Variant::Directory, DIRECTORY_USER)
            .iter()
            .any(|l| l.ends_with(" ok")),
        "{}",
        directory_log()
    );

    let run = directory(
        &env,
        DIRECTORY_USER,
        &["--info", "--output", "json"],
        DIRECTORY_PASSWORD,
    );
    run.assert_code(0);
    let j = run.json();
    assert_eq!(j["auth_plugin"], "dialog", "{j}");
    assert_eq!(j["tls"]["mode"], "verify-full", "{j}");
    assert!(
        j["tls"]["certificate"]["issuer"]
            .as_str()
            .is_some_and(|s| s.contains("rdsconn test CA")),
        "{j}"
    );
    let text = directory(&env, DIRECTORY_USER, &["--info"], DIRECTORY_PASSWORD);
    text.assert_code(0);
    assert!(
        text.stdout.contains("auth: password, plugin dialog"),
        "{}",
        text.stdout
    );

    // The other plugins, as the harness set the users up: a password user
    // (the server's default plugin) and an IAM user (PAM with
    // pam_use_cleartext_plugin, as RDS's AWSAuthenticationPlugin asks).
    let run = output(with_password(
        mysql(&env, Variant::Good, "app", &["--info", "--output", "json"]),
        APP_PASSWORD,
    ));
    run.assert_code(0);
    assert_eq!(run.json()["auth_plugin"], "mysql_native_password");
    let mut iam = mysql(
        &env,
        Variant::Good,
        IAM_USER,
        &["--iam", "--info", "--output", "json"],
    );
    iam.env("AWS_ACCESS_KEY_ID", IAM_ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", IAM_SECRET_KEY)
        .env("AWS_REGION", IAM_REGION);
    let run = output(iam);
    run.assert_code(0);
    assert_eq!(run.json()["auth_plugin"], "mysql_clear_password");
}

#[test]
fn check_passes_for_a_dialog_user() {
    let env = TestEnv::new();
    let ca = ca();
    let via = format!("127.0.0.1:{}", port(Variant::Directory));
    let url = format!("mysql://{DIRECTORY_USER}@{ENDPOINT}:3306/appdb");
    let mut cmd = env.cmd(&[
        "--ca-bundle",
        &ca,
        "check",
        &url,
        "--via",
        &via,
        "--output",
        "json",
    ]);
    cmd.env("MYSQL_PWD", DIRECTORY_PASSWORD);
    let run = output(cmd);
    run.assert_code(0);
    let j = run.json();
    assert_eq!(j["targets"][0]["status"], "ok", "{j}");
}

#[test]
fn wrong_directory_password_is_exit_6() {
    let env = TestEnv::new();
    let run = directory(
        &env,
        DIRECTORY_USER,
        &["-e", "SELECT 1"],
        "not-the-password",
    );
    run.assert_code(6);
    assert!(
        run.stderr.contains("rejected authentication") && run.stderr.contains("1045"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("not-the-password"), "{}", run.stderr);
    assert!(
        attempts(Variant::Directory, DIRECTORY_USER)
            .iter()
            .any(|l| l.ends_with(" bad")),
        "{}",
        directory_log()
    );
}

#[test]
fn without_tls_no_password_is_sent() {
    let env = TestEnv::new();
    let run = output(with_password(
        mysql(&env, Variant::NoTls, DIRECTORY_USER, &["-e", "SELECT 1"]),
        DIRECTORY_PASSWORD,
    ));
    run.assert_code(5);
    assert!(run.stderr.contains("does not offer TLS"), "{}", run.stderr);
    // The no-TLS server's PAM stack never saw a password from rdsconn.
    assert_eq!(
        attempts(Variant::NoTls, DIRECTORY_USER),
        Vec::<String>::new()
    );
    // …while the same server does take one from a client that sends it in
    // the clear, so the check above could have failed.
    let out = Command::new("mariadb")
        .args([
            "--no-defaults",
            "--protocol=TCP",
            "-h",
            "127.0.0.1",
            "--skip-ssl",
        ])
        .arg(format!("-P{}", port(Variant::NoTls)))
        .args(["-u", DIRECTORY_USER, "-e", "SELECT 1"])
        .arg(format!("-p{DIRECTORY_PASSWORD}"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(attempts(Variant::NoTls, DIRECTORY_USER).len(), 1);
}

#[test]
fn a_second_question_without_a_terminal_is_exit_6_with_the_prompt() {
    let env = TestEnv::new();
    // setsid: no controlling terminal, as in CI.
    let mut setsid = Command::new("setsid");
    setsid.arg("-w");
    let inner = mysql(
        &env,
        Variant::Directory,
        TWO_FACTOR_USER,
        &["-e", "SELECT 1"],
    );
    let mut cmd = wrapped(setsid, &inner);
    cmd.env("MYSQL_PWD", DIRECTORY_PASSWORD)
        .stdin(std::process::Stdio::null());
    let run = output(cmd);
    run.assert_code(6);
    assert!(
        run.stderr.contains("Verification code:") && run.stderr.contains("no terminal"),
        "{}",
        run.stderr
    );
}

#[test]
fn a_second_question_is_asked_on_the_terminal() {
    let env = TestEnv::new();
    let inner = mysql(
        &env,
        Variant::Directory,
        TWO_FACTOR_USER,
        &["-e", "SELECT CURRENT_USER()"],
    );
    let mut cmd = on_a_terminal(&inner, "Verification code:", TWO_FACTOR_CODE);
    cmd.env("MYSQL_PWD", DIRECTORY_PASSWORD);
    let run = output(cmd);
    run.assert_code(0);
    assert!(
        run.stdout.contains(&format!("{TWO_FACTOR_USER}@%")),
        "{}",
        run.stdout
    );
}

#[test]
fn the_mariadb_client_gets_a_dialog_session() {
    let env = TestEnv::new();
    let ca = ca();
    let port = port(Variant::Directory).to_string();
    let mut cmd = env.cmd(&[
        "--ca-bundle",
        &ca,
        "mysql",
        "-h",
        "localhost",
        "-P",
        &port,
        "-u",
        DIRECTORY_USER,
        "-D",
        "appdb",
        "--client",
        "mariadb",
        "--",
        "-N",
        "-B",
        "-e",
        "SELECT CURRENT_USER()",
    ]);
    cmd.env("MYSQL_PWD", DIRECTORY_PASSWORD);
    let run = output(cmd);
    run.assert_code(0);
    assert_eq!(run.stdout, format!("{DIRECTORY_USER}@%\n"));
}

#[test]
fn postgres_kerberos_is_one_line_exit_6_and_psql_takes_over() {
    let env = TestEnv::new();
    let ca = ca();
    let via = format!("127.0.0.1:{}", pg::server(Variant::Good).port);
    let args = |extra: &[&str]| {
        let mut a: Vec<String> = [
            "--ca-bundle",
            &ca,
            "postgres",
            "-h",
            ENDPOINT,
            "--via",
            &via,
            "-U",
            KERBEROS_USER,
            "-d",
            "appdb",
        ]
        .iter()
        .map(ToString::to_string)
        .collect();
        a.extend(extra.iter().map(ToString::to_string));
        a
    };
    let a = args(&["-e", "SELECT 1"]);
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    let mut cmd = env.cmd(&a);
    cmd.env("PGPASSWORD", "unused");
    let run = output(cmd);
    run.assert_code(6);
    // rdsconn's error shape: what failed, the cause, the hint.
    let lines: Vec<&str> = run.stderr.lines().collect();
    assert_eq!(lines.len(), 3, "{}", run.stderr);
    assert!(lines[1].contains("Kerberos (GSSAPI)"), "{}", run.stderr);
    assert!(
        lines[2].starts_with("  hint:") && lines[2].contains("psql"),
        "{}",
        run.stderr
    );

    // Without -e: psql gets the connection and speaks GSSAPI itself (here
    // it has no ticket, so it is psql's own error that ends the run).
    let a = args(&["--", "-c", "SELECT 1"]);
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    let mut cmd = env.cmd(&a);
    cmd.env("PGPASSWORD", "unused");
    let run = output(cmd);
    assert_eq!(run.code, 2, "psql's exit code: {}", run.stderr);
    assert!(
        run.stderr.contains("handing over to the client"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("psql: error"), "{}", run.stderr);
    assert!(
        run.stderr.to_lowercase().contains("gssapi"),
        "{}",
        run.stderr
    );
}
