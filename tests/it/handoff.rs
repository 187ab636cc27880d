//! Hand-off to the real `psql` and `mariadb` clients, `rdsconn env` through
//! a real shell, and `rdsconn exec`, against the harness servers.
//!
//! psql is dialed through `--via` while verifying the endpoint name (libpq's
//! `host` + `hostaddr`). The MySQL clients verify the name they dial, so
//! they get the `Localhost` server, whose certificate also names
//! `localhost`, and IAM tokens signed for `localhost:PORT`.

use std::process::{Command, Stdio};

use crate::support::pki::ENDPOINT;
use crate::support::server::{
    APP_PASSWORD, IAM_ACCESS_KEY, IAM_REGION, IAM_SECRET_KEY, IAM_USER, ODD_PASSWORD, ODD_USER,
    Variant, pki,
};
use crate::support::standin::StandIn;
use crate::support::{BINARY, Run, TestEnv, maria, pg, run_with_stdin};

fn ca() -> String {
    pki().ca_file.display().to_string()
}

fn pg_via() -> String {
    format!("127.0.0.1:{}", pg::server(Variant::Good).port)
}

fn maria_port() -> String {
    maria::server(Variant::Localhost).port.to_string()
}

/// `rdsconn --ca-bundle CA psql -h ENDPOINT -U USER -d appdb --via … EXTRA…`
fn psql(env: &TestEnv, user: &str, extra: &[&str]) -> Command {
    let (ca, via) = (ca(), pg_via());
    let mut args = vec![
        "--ca-bundle",
        &ca,
        "psql",
        "-h",
        ENDPOINT,
        "-U",
        user,
        "-d",
        "appdb",
        "--via",
        &via,
    ];
    args.extend_from_slice(extra);
    env.cmd(&args)
}

/// `rdsconn --ca-bundle CA mysql -h localhost -P PORT -u USER -D appdb EXTRA…`
fn mysql(env: &TestEnv, user: &str, extra: &[&str]) -> Command {
    let (ca, port) = (ca(), maria_port());
    let mut args = vec![
        "--ca-bundle",
        &ca,
        "mysql",
        "-h",
        "localhost",
        "-P",
        &port,
        "-u",
        user,
        "-D",
        "appdb",
    ];
    args.extend_from_slice(extra);
    env.cmd(&args)
}

fn with_iam(mut cmd: Command) -> Command {
    cmd.env("AWS_ACCESS_KEY_ID", IAM_ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", IAM_SECRET_KEY)
        .env("AWS_REGION", IAM_REGION);
    cmd
}

fn output(mut cmd: Command) -> Run {
    Run::from(cmd.output().unwrap())
}

const PG_WHO: &str = "SELECT current_user, ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()";
const MY_WHO: &str = "SELECT SUBSTRING_INDEX(CURRENT_USER(), '@', 1), \
                      VARIABLE_VALUE <> '' FROM information_schema.SESSION_STATUS \
                      WHERE VARIABLE_NAME = 'Ssl_cipher'";

#[test]
fn psql_gets_the_session_through_via_with_password_and_iam() {
    let env = TestEnv::new();
    let mut cmd = psql(&env, "app", &["--", "-At", "-c", PG_WHO]);
    cmd.env("PGPASSWORD", APP_PASSWORD);
    let run = output(cmd);
    run.assert_code(0);
    assert_eq!(run.stdout, "app|t\n");

    let run = output(with_iam(psql(
        &env,
        IAM_USER,
        &["--iam", "--", "-At", "-c", PG_WHO],
    )));
    run.assert_code(0);
    assert_eq!(run.stdout, format!("{IAM_USER}|t\n"));
}

#[test]
fn psql_exit_status_is_rdsconns() {
    let env = TestEnv::new();
    let script = env.root.path().join("fail.sql");
    std::fs::write(&script, "SELECT 1/0;\n").unwrap();
    let script = script.display().to_string();
    let mut cmd = psql(&env, "app", &["--", "-v", "ON_ERROR_STOP=1", "-f", &script]);
    cmd.env("PGPASSWORD", APP_PASSWORD);
    let run = output(cmd);
    // psql's own code for a script stopped by an error (3), and its message.
    run.assert_code(3);
    assert!(run.stderr.contains("division by zero"), "{}", run.stderr);
}

#[test]
fn mariadb_client_gets_the_session_with_password_and_iam() {
    let env = TestEnv::new();
    let mut cmd = mysql(&env, "app", &["--", "-N", "-B", "-e", MY_WHO]);
    cmd.env("MYSQL_PWD", APP_PASSWORD);
    let run = output(cmd);
    run.assert_code(0);
    assert_eq!(run.stdout, "app\t1\n");

    let run = output(with_iam(mysql(
        &env,
        IAM_USER,
        &[
            "--iam", "--client", "mariadb", "--", "-N", "-B", "-e", MY_WHO,
        ],
    )));
    run.assert_code(0);
    assert_eq!(run.stdout, format!("{IAM_USER}\t1\n"));
}

#[test]
fn odd_passwords_reach_the_clients_intact() {
    let env = TestEnv::new();
    let run = run_with_stdin(
        psql(
            &env,
            ODD_USER,
            &["--password-stdin", "--", "-At", "-c", PG_WHO],
        ),
        &format!("{ODD_PASSWORD}\n"),
    );
    run.assert_code(0);
    assert_eq!(run.stdout, format!("{ODD_USER}|t\n"));

    let run = run_with_stdin(
        mysql(
            &env,
            ODD_USER,
            &["--password-stdin", "--", "-N", "-B", "-e", MY_WHO],
        ),
        &format!("{ODD_PASSWORD}\n"),
    );
    run.assert_code(0);
    assert_eq!(run.stdout, format!("{ODD_USER}\t1\n"));
}

#[test]
fn secrets_never_reach_the_clients_argv_and_the_defaults_file_is_private_and_removed() {
    let env = TestEnv::new();
    // Stand-ins record what they were given, then exec the real clients.
    let psql_standin = StandIn::new(env.root.path(), "psql", "psql");
    let run = output(with_iam(psql(
        &env,
        IAM_USER,
        &[
            "--iam",
            "--client",
            &psql_standin.arg(),
            "--",
            "-At",
            "-c",
            "SELECT current_user",
        ],
    )));
    run.assert_code(0);
    assert_eq!(run.stdout, format!("{IAM_USER}\n"));
    let argv = psql_standin.argv();
    assert!(argv[0].ends_with("psql"), "{argv:?}");
    assert!(argv.len() > 1, "{argv:?}");
    assert!(!argv.iter().any(|a| a.contains("X-Amz-")), "{argv:?}");
    // The token travels in the child's environment only.
    let child_env = psql_standin.env();
    assert!(
        child_env
            .iter()
            .any(|v| v.starts_with("PGPASSWORD=") && v.contains("X-Amz-Signature=")),
        "no token in the client's environment"
    );

    let maria_standin = StandIn::new(env.root.path(), "mariadb", "mariadb");
    let run = output(with_iam(mysql(
        &env,
        IAM_USER,
        &[
            "--iam",
            "--client",
            &maria_standin.arg(),
            "--",
            "-N",
            "-B",
            "-e",
            "SELECT 0",
        ],
    )));
    run.assert_code(0);
    assert_eq!(run.stdout, "0\n");
    let argv = maria_standin.argv();
    assert!(argv.len() > 1, "{argv:?}");
    assert!(!argv.iter().any(|a| a.contains("X-Amz-")), "{argv:?}");
    assert!(
        !maria_standin.env().iter().any(|v| v.contains("X-Amz-")),
        "the token reached the client's environment"
    );
    let (file, mode, contents) = maria_standin
        .defaults()
        .unwrap_or_else(|| panic!("no defaults file in {argv:?}"));
    assert_eq!(mode, 0o600, "{}", file.display());
    assert!(
        contents.contains("X-Amz-Signature="),
        "no token in the file"
    );
    assert!(!file.exists(), "{} left behind", file.display());
}

#[test]
fn mysql_hand_off_through_via_goes_through_a_private_proxy() {
    let env = TestEnv::new();
    // The client cannot verify the endpoint name through the tunnel, so
    // rdsconn's proxy does, on a private socket; the server sees TLS.
    let via = format!("127.0.0.1:{}", maria::server(Variant::Good).port);
    let ca = ca();
    let base = [
        "--ca-bundle",
        &ca,
        "mysql",
        "-h",
        ENDPOINT,
        "-D",
        "appdb",
        "--via",
        &via,
    ];
    let mut args = base.to_vec();
    args.extend(["-u", "app", "--", "-N", "-B", "-e", MY_WHO]);
    let mut cmd = env.cmd(&args);
    cmd.env("MYSQL_PWD", APP_PASSWORD);
    let run = output(cmd);
    run.assert_code(0);
    assert_eq!(run.stdout, "app\t1\n");
    // One line says the session upstream is verified TLS (the client's own
    // `status` speaks of the local socket).
    assert_eq!(run.stderr.lines().count(), 1, "{}", run.stderr);
    assert!(
        run.stderr.contains(&format!(
            "the session upstream is TLS verified for {ENDPOINT} (VERIFY_IDENTITY)"
        )),
        "{}",
        run.stderr
    );

    let mut args = base.to_vec();
    args.extend(["-u", IAM_USER, "--iam", "--", "-N", "-B", "-e", MY_WHO]);
    let run = output(with_iam(env.cmd(&args)));
    run.assert_code(0);
    assert_eq!(run.stdout, format!("{IAM_USER}\t1\n"));

    // The client's own exit status still comes back.
    let mut args = base.to_vec();
    args.extend(["-u", "app", "--", "-e", "SELECT * FROM no_such_table"]);
    let mut cmd = env.cmd(&args);
    cmd.env("MYSQL_PWD", APP_PASSWORD);
    let run = output(cmd);
    run.assert_code(1);
    assert!(run.stderr.contains("no_such_table"), "{}", run.stderr);

    // `env` and `exec` have no proxy: the same request is refused there.
    let run = env.run(&[
        "env",
        "mysql",
        "-h",
        ENDPOINT,
        "-u",
        "app",
        "--via",
        "127.0.0.1:1",
    ]);
    run.assert_code(2);
    assert!(run.stderr.contains("cannot verify"), "{}", run.stderr);
    assert!(run.stdout.is_empty());
}

#[test]
fn missing_client_is_a_usage_error_with_install_hints() {
    let env = TestEnv::new();
    for args in [
        ["psql", "-h", ENDPOINT, "-U", "app"],
        ["mysql", "-h", ENDPOINT, "-u", "app"],
    ] {
        let mut cmd = env.cmd(&args);
        cmd.env("PATH", "/nonexistent");
        let run = output(cmd);
        run.assert_code(2);
        assert!(run.stderr.contains("apt-get install"), "{}", run.stderr);
        assert!(run.stderr.contains("brew install"), "{}", run.stderr);
        assert!(run.stderr.contains("-e SQL") || run.stderr.contains("-c SQL"));
    }
}

#[test]
fn a_client_path_that_does_not_exist_is_a_usage_error() {
    let env = TestEnv::new();
    let run = env.run(&[
        "psql",
        "-h",
        ENDPOINT,
        "-U",
        "app",
        "--client",
        "/nonexistent/psql",
    ]);
    run.assert_code(2);
    assert!(
        run.stderr
            .contains("--client /nonexistent/psql: no such program"),
        "{}",
        run.stderr
    );
}

#[test]
fn failed_verification_stops_before_the_client_starts() {
    let env = TestEnv::new();
    let mut cmd = psql(&env, "app", &["--", "-c", "SELECT 1"]);
    cmd.env("PGPASSWORD", "wrong");
    let run = output(cmd);
    run.assert_code(6);
    assert!(!run.stderr.contains("psql:"), "psql ran: {}", run.stderr);

    let mut cmd = mysql(&env, "app", &["--", "-e", "SELECT 1"]);
    cmd.env("MYSQL_PWD", "wrong");
    let run = output(cmd);
    run.assert_code(6);
    assert!(run.stderr.contains("ERROR 1045"), "{}", run.stderr);
    assert!(
        !run.stderr.contains("ERROR 1045 (28000) at"),
        "{}",
        run.stderr
    );
}

/// `sh -c SCRIPT` with `$RDSCONN`, `$CA`, `$VIA` and `$PORT` set and the
/// password on stdin.
fn sh(env: &TestEnv, script: &str) -> Run {
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(script)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", env.home())
        .env("RDSCONN_CACHE_DIR", env.cache_dir())
        .env("RDSCONN", BINARY)
        .env("CA", ca())
        .env("VIA", pg_via())
        .env("PORT", maria_port())
        .env("ENDPOINT", ENDPOINT);
    run_with_stdin(cmd, &format!("{ODD_PASSWORD}\n"))
}

#[test]
fn env_output_round_trips_through_the_shell() {
    let env = TestEnv::new();
    let run = sh(
        &env,
        &format!(
            r#"eval "$("$RDSCONN" --ca-bundle "$CA" env pg -h "$ENDPOINT" -u {ODD_USER} -d appdb --via "$VIA" --password-stdin)" || exit 9
               test "$PGPASSWORD" = '{pw}' || exit 8
               psql -At -c "{PG_WHO}""#,
            pw = ODD_PASSWORD.replace('\'', r"'\''")
        ),
    );
    run.assert_code(0);
    assert_eq!(run.stdout, format!("{ODD_USER}|t\n"));

    let run = sh(
        &env,
        &format!(
            r#"eval "$("$RDSCONN" --ca-bundle "$CA" env mysql -h localhost --port "$PORT" -u {ODD_USER} --password-stdin)" || exit 9
               mariadb --protocol=TCP --ssl-ca="$MYSQL_SSL_CA" --ssl-verify-server-cert -u "$MYSQL_USER" -N -B -e "{MY_WHO}""#
        ),
    );
    run.assert_code(0);
    assert_eq!(run.stdout, format!("{ODD_USER}\t1\n"));
}

#[test]
fn env_json_holds_the_values_unquoted() {
    let env = TestEnv::new();
    let (ca, via) = (ca(), pg_via());
    let run = run_with_stdin(
        env.cmd(&[
            "--ca-bundle",
            &ca,
            "env",
            "postgres",
            &format!("postgres://{ODD_USER}@{ENDPOINT}/appdb"),
            "--via",
            &via,
            "--password-stdin",
            "--shell",
            "json",
        ]),
        &format!("{ODD_PASSWORD}\n"),
    );
    run.assert_code(0);
    let j = run.json();
    assert_eq!(j["PGPASSWORD"], ODD_PASSWORD);
    assert_eq!(j["PGHOST"], ENDPOINT);
    assert_eq!(j["PGHOSTADDR"], "127.0.0.1");
    assert_eq!(j["PGPORT"], via.rsplit(':').next().unwrap());
    assert_eq!(j["PGSSLMODE"], "verify-full");
    assert_eq!(j["PGSSLROOTCERT"], ca);
    assert_eq!(j["PGDATABASE"], "appdb");
}

#[test]
fn exec_sets_the_variables_and_database_url_in_the_child_only() {
    let env = TestEnv::new();
    // DATABASE_URL alone (the PG* variables removed) opens a verified session.
    let ca = ca();
    let pg_port = pg::server(Variant::Localhost).port.to_string();
    let mut cmd = env.cmd(&[
        "--ca-bundle",
        &ca,
        "exec",
        "pg",
        "-h",
        "localhost",
        "-p",
        &pg_port,
        "-u",
        ODD_USER,
        "-d",
        "appdb",
        "--",
        "sh",
        "-c",
        &format!(
            r#"unset PGHOST PGHOSTADDR PGPORT PGUSER PGDATABASE PGSSLMODE PGSSLROOTCERT PGPASSWORD
               psql "$DATABASE_URL" -At -c "{PG_WHO}""#
        ),
    ]);
    cmd.env("PGPASSWORD", ODD_PASSWORD);
    let run = output(cmd);
    run.assert_code(0);
    assert_eq!(run.stdout, format!("{ODD_USER}|t\n"));

    // Through --via HOST:PORT (a port-forward made by hand) the child gets
    // rdsconn's proxy on a private socket, as through a tunnel: the URL
    // works for every driver, and nothing is said on stderr.
    let mut cmd = env.cmd(&[
        "--ca-bundle",
        &ca,
        "exec",
        "pg",
        "-h",
        ENDPOINT,
        "-u",
        ODD_USER,
        "-d",
        "appdb",
        "--via",
        &pg_via(),
        "--",
        "sh",
        "-c",
        &format!(
            r#"test -n "$DATABASE_URL" || exit 7
               unset PGHOST PGHOSTADDR PGPORT PGUSER PGDATABASE PGSSLMODE PGSSLROOTCERT PGPASSWORD
               psql "$DATABASE_URL" -At -c "{PG_WHO}""#
        ),
    ]);
    cmd.env("PGPASSWORD", ODD_PASSWORD)
        .env_remove("DATABASE_URL");
    let run = output(cmd);
    run.assert_code(0);
    assert_eq!(run.stdout, format!("{ODD_USER}|t\n"));
    assert_eq!(run.stderr, "", "exec through --via HOST:PORT says nothing");

    // The MySQL URL decodes back to the password (checked by Python's parser).
    let port = maria_port();
    let decode = "import os, urllib.parse as u; p = u.urlsplit(os.environ['DATABASE_URL']); \
                  q = u.parse_qs(p.query); \
                  print(p.username, u.unquote(p.password), p.hostname, p.port, p.path, \
                  q['ssl-mode'][0], q['ssl-ca'][0], sep='\\n')";
    let mut cmd = env.cmd(&[
        "--ca-bundle",
        &ca,
        "exec",
        "mysql",
        "-h",
        "localhost",
        "--port",
        &port,
        "-u",
        ODD_USER,
        "-d",
        "app db",
        "--",
        "python3",
        "-c",
        decode,
    ]);
    cmd.env("MYSQL_PWD", ODD_PASSWORD);
    let run = output(cmd);
    run.assert_code(0);
    assert_eq!(
        run.stdout,
        format!(
            "{ODD_USER}\n{ODD_PASSWORD}\nlocalhost\n{port}\n/app%20db\nVERIFY_IDENTITY\n{ca}\n"
        )
    );
}

#[test]
fn exec_returns_the_childs_status_and_forwards_sigint() {
    let env = TestEnv::new();
    let base = ["exec", "pg", "-h", ENDPOINT, "-u", "app", "--"];
    let with = |tail: &[&str]| {
        let mut args = base.to_vec();
        args.extend_from_slice(tail);
        let mut cmd = env.cmd(&args);
        cmd.env("PGPASSWORD", APP_PASSWORD);
        cmd
    };
    output(with(&["true"])).assert_code(0);
    output(with(&["sh", "-c", "exit 3"])).assert_code(3);
    // A command that cannot run: 127 not found, 126 not executable, as
    // shells say; one error line either way.
    let r = output(with(&["rdsconn-no-such-command"]));
    r.assert_code(127);
    assert!(
        r.stderr.contains("starting rdsconn-no-such-command"),
        "{}",
        r.stderr
    );
    let plain = env.root.path().join("not-executable");
    std::fs::write(&plain, "#!/bin/sh\n").unwrap();
    let r = output(with(&[plain.to_str().unwrap()]));
    r.assert_code(126);
    // The variables are in the child's environment, not in rdsconn's output.
    let run = output(with(&["sh", "-c", r#"printf %s "$PGPASSWORD""#]));
    run.assert_code(0);
    assert_eq!(run.stdout, APP_PASSWORD);

    // SIGINT sent to rdsconn reaches the child; rdsconn reports 128 + 2.
    // The child says it is running (its pid, then it becomes `sleep`)
    // before the signal is sent.
    let mut cmd = with(&["sh", "-c", "echo $$; exec sleep 30"]);
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.as_mut().unwrap()),
        &mut line,
    )
    .unwrap();
    let sleeper: u32 = line.trim().parse().unwrap_or_else(|_| panic!("{line:?}"));
    let ok = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok);
    let run = Run::from(child.wait_with_output().unwrap());
    // Without forwarding, sleep would finish after 30 s and exit 0.
    run.assert_code(130);
    assert!(
        !std::path::Path::new(&format!("/proc/{sleeper}")).exists(),
        "the child survived"
    );
}

/// Regression: options after `--` could point psql elsewhere or turn TLS
/// off (`-d 'dbname=x sslmode=disable'`, a URL, `-h`, `host=`), and psql
/// then sent the password or token rdsconn gave it unverified. Such options
/// are refused before anything runs, for the hand-off and for known
/// clients under `exec`.
#[test]
fn options_after_dashes_cannot_redirect_the_client_or_weaken_tls() {
    let env = TestEnv::new();
    let psql_standin = StandIn::new(env.root.path(), "psql", "psql");
    let maria_standin = StandIn::new(env.root.path(), "mariadb", "mariadb");
    let psql_client = psql_standin.arg();
    let maria_client = maria_standin.arg();
    for (extra, needle) in [
        (&["-d", "dbname=appdb sslmode=disable"][..], "sslmode"),
        (&["-d", "postgresql:///appdb?sslmode=disable"], "URL"),
        (&["-h", "127.0.0.1"], "-h"),
        (&["-At", "-p", "5432"], "-p"),
        (&["--host=evil.example"], "--host"),
        (&["appdb host=evil.example"], "host"),
        (&["-c", "\\c host=evil.example"], "\\connect"),
    ] {
        let mut args = vec!["--client", psql_client.as_str(), "--"];
        args.extend_from_slice(extra);
        let mut cmd = psql(&env, "app", &args);
        cmd.env("PGPASSWORD", APP_PASSWORD);
        let run = output(cmd);
        run.assert_code(2);
        assert!(run.stderr.contains(needle), "{extra:?}: {}", run.stderr);
        assert!(!run.stderr.contains(APP_PASSWORD), "{}", run.stderr);
    }
    for extra in [
        &["--skip-ssl"][..],
        &["--ssl=0"],
        &["--ssl-verify-server-cert=0"],
        &["-h", "127.0.0.1"],
        &["--port=1"],
        &["--protocol=SOCKET"],
        &["--loose-disable-ssl"],
        &["--print-defaults"],
    ] {
        let mut args = vec!["--client", maria_client.as_str(), "--"];
        args.extend_from_slice(extra);
        let mut cmd = mysql(&env, "app", &args);
        cmd.env("MYSQL_PWD", APP_PASSWORD);
        let run = output(cmd);
        run.assert_code(2);
        assert!(run.stderr.contains("after --"), "{extra:?}: {}", run.stderr);
    }
    // Neither client ever started.
    for standin in [&psql_standin, &maria_standin] {
        assert!(
            std::panic::catch_unwind(|| standin.argv()).is_err(),
            "a client ran"
        );
    }
    // exec with a known client: the same rules.
    let mut cmd = env.cmd(&[
        "exec",
        "pg",
        "-h",
        ENDPOINT,
        "-u",
        "app",
        "--",
        "psql",
        "-d",
        "host=evil.example dbname=x",
    ]);
    cmd.env("PGPASSWORD", APP_PASSWORD);
    output(cmd).assert_code(2);
    // What stays allowed still works end to end.
    let mut cmd = psql(
        &env,
        "app",
        &[
            "--client",
            &psql_client,
            "--",
            "-At",
            "-d",
            "appdb",
            "-c",
            PG_WHO,
        ],
    );
    cmd.env("PGPASSWORD", APP_PASSWORD);
    let run = output(cmd);
    run.assert_code(0);
    assert_eq!(run.stdout, "app|t\n");
}

/// Regression: a SIGINT sent to rdsconn's whole process group (CI runners
/// do `kill -INT -PGID`) reached the client twice: once directly, once
/// forwarded. Without a controlling terminal the client has a process
/// group of its own and gets the signal once.
#[test]
fn a_signal_to_the_whole_group_reaches_the_client_once() {
    let env = TestEnv::new();
    let counted = env.root.path().join("ints");
    // The child counts SIGINT deliveries (each one writes a byte to the
    // wake-up pipe, in the C handler: none are merged once delivered) and
    // says so; SIGUSR1 makes it write the count and exit.
    let script = format!(
        r#"import os, signal, sys
r, w = os.pipe()
os.set_blocking(w, False)
for s in (signal.SIGINT, signal.SIGUSR1):
    signal.signal(s, lambda *a: None)
signal.set_wakeup_fd(w)
print("ready", flush=True)
n = 0
while True:
    b = os.read(r, 1)[0]
    if b == signal.SIGINT:
        n += 1
        print("int", flush=True)
    elif b == signal.SIGUSR1:
        open("{f}", "w").write(str(n))
        sys.exit(0)
"#,
        f = counted.display()
    );
    // setsid: rdsconn leads a new session with no controlling terminal,
    // its process group id is its pid.
    let mut cmd = Command::new("setsid");
    cmd.arg(crate::support::BINARY)
        .args([
            "exec", "pg", "-h", ENDPOINT, "-u", "app", "--", "python3", "-c", &script,
        ])
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", env.home())
        .env("RDSCONN_CACHE_DIR", env.cache_dir())
        .env("PGPASSWORD", APP_PASSWORD)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(child.stdout.take().unwrap()));
    let line = lines.next().and_then(Result::ok).unwrap_or_default();
    if line != "ready" {
        let out = child.wait_with_output().unwrap();
        panic!(
            "the child did not start: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let group = format!("-{}", child.id());
    let kill = |args: &[&str]| {
        assert!(Command::new("kill").args(args).status().unwrap().success());
    };
    kill(&["-INT", "--", &group]);
    // Once the client has its SIGINT, SIGUSR1 asks for the count.
    assert_eq!(lines.next().and_then(Result::ok).as_deref(), Some("int"));
    kill(&["-USR1", &child.id().to_string()]);
    let run = Run::from(child.wait_with_output().unwrap());
    run.assert_code(0);
    let n = std::fs::read_to_string(&counted).unwrap();
    assert_eq!(n.trim(), "1", "the client got {} SIGINTs", n.trim());
}
