//! Habits from psql and mysql: mysql's `-p` and psql's `-W` ask on the
//! terminal, psql's `-w` never does, a password in argv is refused, and the
//! database may be the positional argument.

use std::process::Command;

use crate::support::pki::ENDPOINT;
use crate::support::server::{APP_PASSWORD, Variant, pki};
use crate::support::{BINARY, Run, TestEnv, maria, pg};

fn target(engine: &str) -> (String, Vec<String>) {
    let ca = pki().ca_file.display().to_string();
    let (port, user) = if engine == "postgres" {
        (pg::server(Variant::Good).port, "-U")
    } else {
        (maria::server(Variant::Good).port, "-u")
    };
    let args = vec![
        "--ca-bundle".into(),
        ca,
        engine.into(),
        "-h".into(),
        ENDPOINT.into(),
        user.into(),
        "app".into(),
        "--via".into(),
        format!("127.0.0.1:{port}"),
    ];
    (engine.into(), args)
}

/// rdsconn ARGS on a new pseudo-terminal that answers `answer` to the
/// password question (`tests/oracle/pty_answer.py`).
fn on_a_terminal(env: &TestEnv, args: &[String], answer: &str, vars: &[(&str, &str)]) -> Run {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut cmd = env.cmd(&args);
    for (k, v) in vars {
        cmd.env(k, v);
    }
    Run::from(
        crate::support::on_a_terminal(&cmd, "Password for", answer)
            .output()
            .unwrap(),
    )
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|a| (*a).to_string()).collect()
}

#[test]
fn mysql_p_asks_on_the_terminal_and_a_password_in_argv_is_refused() {
    let env = TestEnv::new();
    let (_, base) = target("mysql");
    // -p asks even when MYSQL_PWD is set (as mysql does); the answer logs in.
    let mut args = base.clone();
    args.extend(strings(&["-p", "appdb", "-e", "SELECT DATABASE() AS d"]));
    let run = on_a_terminal(
        &env,
        &args,
        APP_PASSWORD,
        &[("MYSQL_PWD", "not-the-password")],
    );
    run.assert_code(0);
    assert!(run.stdout.contains("appdb"), "{}", run.stdout);
    // Without a terminal it says so instead of hanging.
    let plain: Vec<&str> = args.iter().map(String::as_str).collect();
    let run = env.run(&plain);
    run.assert_code(2);
    assert!(run.stderr.contains("no terminal"), "{}", run.stderr);
    // A password in argv, in any spelling: exit 2, not echoed.
    for spelled in ["-pSECRET-IN-ARGV", "--password=SECRET-IN-ARGV"] {
        let mut args: Vec<&str> = base.iter().map(String::as_str).collect();
        args.extend([spelled, "-e", "SELECT 1"]);
        let run = env.run(&args);
        run.assert_code(2);
        assert!(
            run.stderr
                .contains("use MYSQL_PWD, --password-stdin or the prompt"),
            "{}",
            run.stderr
        );
        assert!(!run.stderr.contains("SECRET"), "{}", run.stderr);
    }
}

#[test]
fn psql_w_flags_ask_or_never_ask() {
    let env = TestEnv::new();
    let (_, base) = target("postgres");
    let mut args = base.clone();
    args.extend(strings(&[
        "-W",
        "appdb",
        "-c",
        "SELECT current_database() AS d",
    ]));
    let run = on_a_terminal(
        &env,
        &args,
        APP_PASSWORD,
        &[("PGPASSWORD", "not-the-password")],
    );
    run.assert_code(0);
    assert!(run.stdout.contains("appdb"), "{}", run.stdout);
    // -w: no prompt even on a terminal; without a password it fails.
    let mut args = base;
    args.extend(strings(&["-w", "-d", "appdb", "-c", "SELECT 1"]));
    let run = on_a_terminal(&env, &args, APP_PASSWORD, &[]);
    assert!(!run.stdout.contains("Password for"), "{}", run.stdout);
    assert!(run.stdout.contains("no password"), "{}", run.stdout);
    assert_ne!(run.code, 0);
}

#[test]
fn the_database_can_be_the_positional_argument() {
    let env = TestEnv::new();
    for (engine, sql, flag) in [
        ("postgres", "SELECT current_database() AS d", "-c"),
        ("mysql", "SELECT DATABASE() AS d", "-e"),
    ] {
        let (_, base) = target(engine);
        let mut args: Vec<&str> = base.iter().map(String::as_str).collect();
        args.extend(["appdb", flag, sql]);
        let run = env.run_with(
            &args,
            &[("PGPASSWORD", APP_PASSWORD), ("MYSQL_PWD", APP_PASSWORD)],
        );
        run.assert_code(0);
        assert_eq!(run.stdout, "d\nappdb\n", "{engine}");
    }
    // Two databases, or a URL and --host: refused with the reason.
    let (_, base) = target("postgres");
    let mut args: Vec<&str> = base.iter().map(String::as_str).collect();
    args.extend(["-d", "other", "appdb", "-c", "SELECT 1"]);
    let run = env.run_with(&args, &[("PGPASSWORD", APP_PASSWORD)]);
    run.assert_code(2);
    assert!(run.stderr.contains("two databases"), "{}", run.stderr);
    let run = env.run(&[
        "postgres",
        "postgres://app@db.example.com/appdb",
        "-h",
        "db.example.com",
        "-c",
        "SELECT 1",
    ]);
    run.assert_code(2);
    assert!(
        run.stderr.contains("either a URL or --host"),
        "{}",
        run.stderr
    );
}

/// An RDS name that does not resolve (a private subnet's endpoint, seen
/// from outside its VPC): the hint names the tunnel and `--via`. The
/// resolver is one that refuses at once, in a mount namespace of the
/// command's own.
#[test]
fn an_rds_name_that_does_not_resolve_gets_the_tunnel_hint() {
    let env = TestEnv::new();
    let resolv = env.root.path().join("resolv.conf");
    std::fs::write(
        &resolv,
        "nameserver 127.0.0.1\noptions timeout:1 attempts:1\n",
    )
    .unwrap();
    let mut cmd = Command::new("unshare");
    cmd.args([
        "--mount",
        "sh",
        "-c",
        r#"mount --bind "$0" /etc/resolv.conf && exec "$@""#,
    ])
    .arg(&resolv)
    .arg(BINARY)
    .args([
        "postgres",
        "-h",
        "mydb.c9akciq32abc.eu-west-1.rds.amazonaws.com",
        "-U",
        "app",
        "--connect-timeout",
        "30s",
        "-c",
        "SELECT 1",
    ])
    .env("PGPASSWORD", APP_PASSWORD)
    .env("HOME", env.home())
    .env("RDSCONN_CACHE_DIR", env.cache_dir());
    let run = Run::from(cmd.output().unwrap());
    run.assert_code(4);
    assert!(
        run.stderr.contains("resolving mydb.c9akciq32abc"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("resolve only inside their VPC") && run.stderr.contains("--via"),
        "{}",
        run.stderr
    );
}

/// What `rdsconn env postgres` exports comes back in: `PGHOSTADDR` is the
/// dial address and `PGPORT` then the dial port (the token's port stays the
/// endpoint's). Invalid port variables are errors, not ignored.
#[test]
fn env_output_is_read_back_and_bad_variables_are_errors() {
    let env = TestEnv::new();
    let ca = pki().ca_file.display().to_string();
    let via = format!("127.0.0.1:{}", pg::server(Variant::Good).port);
    let exported = env.run_with(
        &[
            "--ca-bundle",
            &ca,
            "--output",
            "json",
            "env",
            "postgres",
            "-h",
            ENDPOINT,
            "--user",
            "app",
            "-d",
            "appdb",
            "--via",
            &via,
        ],
        &[("PGPASSWORD", APP_PASSWORD)],
    );
    exported.assert_code(0);
    let vars = exported.json();
    let vars: Vec<(String, String)> = vars
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
        .collect();
    assert!(vars.iter().any(|(k, _)| k == "PGHOSTADDR"), "{vars:?}");
    let pairs: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let run = env.run_with(
        &[
            "--ca-bundle",
            &ca,
            "postgres",
            "-c",
            "SELECT current_user AS u, current_database() AS d",
        ],
        &pairs,
    );
    run.assert_code(0);
    assert_eq!(run.stdout, "u\td\napp\tappdb\n");

    for (engine, var, value) in [
        ("postgres", "PGPORT", "abc"),
        ("postgres", "PGHOSTADDR", "not-an-address"),
        ("mysql", "MYSQL_TCP_PORT", "0"),
    ] {
        let flag = if engine == "postgres" { "-c" } else { "-e" };
        let user = if engine == "postgres" { "-U" } else { "-u" };
        let run = env.run_with(
            &[engine, user, "app", flag, "SELECT 1"],
            &[(var, value), ("PGHOST", ENDPOINT), ("MYSQL_HOST", ENDPOINT)],
        );
        run.assert_code(2);
        assert!(
            run.stderr.contains(&format!("{var}=\"{value}\"")),
            "{var}: {}",
            run.stderr
        );
    }
}

fn write_private(path: &std::path::Path, text: &str, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// `~/.pgpass` / `PGPASSFILE` (libpq's rules) and the MySQL option files'
/// `[client]` password, when only their owner can read them.
#[test]
fn password_files_of_the_native_clients() {
    let env = TestEnv::new();
    let (_, pg_args) = target("postgres");
    let mut pg_args: Vec<&str> = pg_args.iter().map(String::as_str).collect();
    pg_args.extend(["-d", "appdb", "-c", "SELECT current_user AS u"]);
    let pgpass = env.home().join(".pgpass");
    let escaped = APP_PASSWORD.replace('\\', "\\\\").replace(':', "\\:");
    write_private(
        &pgpass,
        &format!(
            "# comment\nother.example.com:5432:appdb:app:wrong\n{ENDPOINT}:5432:appdb:app:{escaped}\n"
        ),
        0o600,
    );
    let run = env.run(&pg_args);
    run.assert_code(0);
    assert_eq!(run.stdout, "u\napp\n");
    // Wildcards, and PGPASSFILE elsewhere.
    let elsewhere = env.root.path().join("pgpass");
    write_private(&elsewhere, &format!("*:*:*:app:{escaped}\n"), 0o600);
    std::fs::remove_file(&pgpass).unwrap();
    let file = elsewhere.display().to_string();
    let run = env.run_with(&pg_args, &[("PGPASSFILE", &file)]);
    run.assert_code(0);
    // An empty PGPASSWORD is unset, as in libpq: the file still applies.
    let run = env.run_with(&pg_args, &[("PGPASSFILE", &file), ("PGPASSWORD", "")]);
    run.assert_code(0);
    // An escaped star is a literal star, not a wildcard: the wrong line
    // no longer matches the database appdb, the next one does.
    write_private(
        &elsewhere,
        &format!("*:*:\\*:app:wrong\n*:*:appdb:app:{escaped}\n"),
        0o600,
    );
    let run = env.run_with(&pg_args, &[("PGPASSFILE", &file)]);
    run.assert_code(0);
    // Readable by others: ignored, with a warning.
    write_private(&elsewhere, &format!("*:*:*:app:{escaped}\n"), 0o644);
    let run = env.run_with(&pg_args, &[("PGPASSFILE", &file)]);
    run.assert_code(2);
    assert!(
        run.stderr.contains("has group or world access"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains(APP_PASSWORD));

    let (_, my_args) = target("mysql");
    let mut my_args: Vec<&str> = my_args.iter().map(String::as_str).collect();
    my_args.extend(["-D", "appdb", "-e", "SELECT 40 + 2 AS n"]);
    let quoted = APP_PASSWORD.replace('\\', "\\\\").replace('"', "\\\"");
    write_private(
        &env.home().join(".my.cnf"),
        &format!("[mysqld]\npassword=wrong\n[client]\nuser=app\npassword=\"{quoted}\"\n"),
        0o600,
    );
    let run = env.run(&my_args);
    run.assert_code(0);
    assert_eq!(run.stdout, "n\n42\n");
    let other = env.root.path().join("other.cnf");
    write_private(&other, &format!("[client]\npassword=\"{quoted}\"\n"), 0o600);
    std::fs::remove_file(env.home().join(".my.cnf")).unwrap();
    let other = other.display().to_string();
    let mut with_file = my_args.clone();
    with_file.extend(["--defaults-file", &other]);
    env.run(&with_file).assert_code(0);
}

/// `--password-stdin` takes the first line only: the rest of stdin is the
/// SQL, for the native client or for `-f -`; `-f FILE` runs a file.
#[test]
fn stdin_after_the_password_line_is_sql() {
    use crate::support::run_with_stdin;
    let env = TestEnv::new();
    let input = format!("{APP_PASSWORD}\nSELECT 40 + 2 AS n;\n");
    for engine in ["postgres", "mysql"] {
        let (_, base) = target(engine);
        let db = if engine == "postgres" { "-d" } else { "-D" };
        // The native client gets the rest of stdin.
        let mut args: Vec<&str> = base.iter().map(String::as_str).collect();
        args.extend([db, "appdb", "--password-stdin"]);
        let run = run_with_stdin(env.cmd(&args), &input);
        run.assert_code(0);
        assert!(
            run.stdout.contains("42"),
            "{engine}: {}{}",
            run.stdout,
            run.stderr
        );
        // In-process with -f -.
        let mut args: Vec<&str> = base.iter().map(String::as_str).collect();
        args.extend([db, "appdb", "--password-stdin", "-f", "-"]);
        let run = run_with_stdin(env.cmd(&args), &input);
        run.assert_code(0);
        assert_eq!(run.stdout, "n\n42\n", "{engine}");
    }
    // -f FILE.
    let file = env.root.path().join("q.sql");
    std::fs::write(&file, "SELECT 6 * 7 AS n;\n").unwrap();
    let file = file.display().to_string();
    let (_, base) = target("postgres");
    let mut args: Vec<&str> = base.iter().map(String::as_str).collect();
    args.extend(["-d", "appdb", "-f", &file]);
    let run = env.run_with(&args, &[("PGPASSWORD", APP_PASSWORD)]);
    run.assert_code(0);
    assert_eq!(run.stdout, "n\n42\n");
}

/// An IAM user logging in with a password (no `--iam`): the server asked
/// for a cleartext password (PAM, as RDS does for IAM users) and refused
/// it; the hint says to add `--iam`.
#[test]
fn an_iam_user_without_iam_gets_the_hint() {
    use crate::support::server::IAM_USER;
    let env = TestEnv::new();
    for engine in ["postgres", "mysql"] {
        let (_, mut base) = target(engine);
        // target() logs in as app: this is the IAM user instead.
        let at = base.iter().position(|a| a == "app").unwrap();
        base[at] = IAM_USER.to_string();
        let mut args: Vec<&str> = base.iter().map(String::as_str).collect();
        let flag = if engine == "postgres" { "-c" } else { "-e" };
        args.extend([flag, "SELECT 1"]);
        let run = env.run_with(
            &args,
            &[("PGPASSWORD", "a-password"), ("MYSQL_PWD", "a-password")],
        );
        run.assert_code(6);
        assert!(
            run.stderr.contains("may be an IAM user: add --iam"),
            "{engine}: {}",
            run.stderr
        );
    }
}

/// The other engine's port: said at once (exit 2), never "no TLS" and never
/// a wait for the whole connect timeout.
#[test]
fn the_wrong_engine_on_the_port_is_named() {
    let env = TestEnv::new();
    let ca = pki().ca_file.display().to_string();
    for (engine, port, speaks) in [
        (
            "postgres",
            maria::server(Variant::Good).port,
            "this port speaks MySQL",
        ),
        (
            "mysql",
            pg::server(Variant::Good).port,
            "this port speaks PostgreSQL",
        ),
    ] {
        let via = format!("127.0.0.1:{port}");
        let (user, flag) = if engine == "postgres" {
            ("-U", "-c")
        } else {
            ("-u", "-e")
        };
        let start = std::time::Instant::now();
        let run = env.run_with(
            &[
                "--ca-bundle",
                &ca,
                engine,
                "-h",
                ENDPOINT,
                user,
                "app",
                "--via",
                &via,
                "--connect-timeout",
                "60s",
                flag,
                "SELECT 1",
            ],
            &[("PGPASSWORD", APP_PASSWORD), ("MYSQL_PWD", APP_PASSWORD)],
        );
        assert!(
            start.elapsed() < std::time::Duration::from_secs(30),
            "{engine} took {:?}",
            start.elapsed()
        );
        run.assert_code(2);
        assert!(run.stderr.contains(speaks), "{engine}: {}", run.stderr);
        assert!(
            !run.stderr.contains("does not offer TLS"),
            "{engine}: {}",
            run.stderr
        );
        // check's TLS stage says the same.
        let url = format!("{engine}://app@{ENDPOINT}/appdb");
        let run = env.run_with(
            &[
                "--ca-bundle",
                &ca,
                "--output",
                "json",
                "check",
                &url,
                "--via",
                &via,
            ],
            &[("PGPASSWORD", APP_PASSWORD), ("MYSQL_PWD", APP_PASSWORD)],
        );
        run.assert_code(2);
        let t = &run.json()["targets"][0];
        assert!(t["error"].as_str().unwrap().contains(speaks), "{t}");
    }
}

/// URL parameters of the native world: TLS ones honoured when at least as
/// strict as rdsconn's, `hostaddr` as `--via`; rdsconn's own
/// `DATABASE_URL` (password included, from the environment) read back.
#[test]
fn url_parameters_and_database_url_read_back() {
    let env = TestEnv::new();
    let ca = pki().ca_file.display().to_string();
    let pg_port = pg::server(Variant::Good).port;
    let my_port = maria::server(Variant::Good).port;
    let pw = [("PGPASSWORD", APP_PASSWORD), ("MYSQL_PWD", APP_PASSWORD)];
    let pg_url = |params: &str| {
        format!("postgresql://app@{ENDPOINT}:{pg_port}/appdb?hostaddr=127.0.0.1&{params}")
    };
    for params in [
        "sslmode=verify-full&application_name=x&connect_timeout=30".to_string(),
        format!("sslrootcert={ca}"),
    ] {
        let url = pg_url(&params);
        let run = env.run_with(
            &[
                "--ca-bundle",
                &ca,
                "postgres",
                &url,
                "-c",
                "SELECT current_user AS u",
            ],
            &pw,
        );
        run.assert_code(0);
        assert_eq!(run.stdout, "u\napp\n", "{params}");
    }
    let url = format!("mysql://app@{ENDPOINT}/appdb?ssl-mode=VERIFY_IDENTITY&ssl-ca={ca}");
    let via = format!("127.0.0.1:{my_port}");
    let run = env.run_with(
        &[
            "--ca-bundle",
            &ca,
            "mysql",
            &url,
            "--via",
            &via,
            "-e",
            "SELECT 1 AS n",
        ],
        &pw,
    );
    run.assert_code(0);
    // Weaker, or another CA file: refused, naming the parameter.
    for (params, needle, extra) in [
        ("sslmode=require", "sslmode=require is weaker", None),
        ("sslmode=verify-ca", "pass --tls verify-ca", None),
        (
            "sslrootcert=/etc/hostname",
            "is not the CA file rdsconn trusts",
            None,
        ),
        ("sslmode=verify-ca", "", Some("verify-ca")),
    ] {
        let url = pg_url(params);
        let mut args = vec![
            "--ca-bundle",
            ca.as_str(),
            "postgres",
            &url,
            "-c",
            "SELECT 1",
        ];
        if let Some(mode) = extra {
            args.extend(["--tls", mode]);
        }
        let run = env.run_with(&args, &pw);
        if extra.is_some() {
            run.assert_code(0);
        } else {
            run.assert_code(2);
            assert!(run.stderr.contains(needle), "{params}: {}", run.stderr);
        }
    }
}

/// `DATABASE_URL` from `rdsconn env` works as the only input.
#[test]
fn database_url_from_the_environment_is_read_back() {
    let env = TestEnv::new();
    let ca = pki().ca_file.display().to_string();
    let pg_port = pg::server(Variant::Localhost).port.to_string();
    let pw = [("PGPASSWORD", APP_PASSWORD)];
    let exported = env.run_with(
        &[
            "--ca-bundle",
            &ca,
            "--output",
            "json",
            "env",
            "postgres",
            "-h",
            "localhost",
            "-p",
            &pg_port,
            "--user",
            "app",
            "-d",
            "appdb",
        ],
        &pw,
    );
    exported.assert_code(0);
    let database_url = exported.json()["DATABASE_URL"]
        .as_str()
        .unwrap()
        .to_string();
    let run = env.run_with(
        &[
            "--ca-bundle",
            &ca,
            "postgres",
            "-c",
            "SELECT current_user AS u, current_database() AS d",
        ],
        &[("DATABASE_URL", database_url.as_str())],
    );
    run.assert_code(0);
    assert_eq!(run.stdout, "u\td\napp\tappdb\n");
    // A password in a URL on the command line is still refused.
    let run = env.run(&["postgres", &database_url, "-c", "SELECT 1"]);
    run.assert_code(2);
    assert!(!run.stderr.contains(APP_PASSWORD), "{}", run.stderr);
}

/// env, exec, doctor, check and proxy take both engines' letters for the
/// user, port and database (`-U`/`-p`/`-d` as psql, `-u`/`-P`/`-D` as mysql).
#[test]
fn generic_commands_take_both_engines_letters() {
    let env = TestEnv::new();
    for letters in [["-U", "-p", "-d"], ["-u", "-P", "-D"]] {
        let run = env.run_with(
            &[
                "--output",
                "json",
                "env",
                "postgres",
                "-h",
                "db.example.com",
                letters[0],
                "app",
                letters[1],
                "6543",
                letters[2],
                "prod",
            ],
            &[("PGPASSWORD", "x")],
        );
        run.assert_code(0);
        let j = run.json();
        assert_eq!(
            (
                j["PGUSER"].as_str(),
                j["PGPORT"].as_str(),
                j["PGDATABASE"].as_str()
            ),
            (Some("app"), Some("6543"), Some("prod")),
            "{letters:?}"
        );
    }
    // The proxy has no database: its clients choose theirs.
    for (sub, letters) in [
        ("exec", &["-U", "-p", "-D"][..]),
        ("doctor", &["-U", "-p", "-D"][..]),
        ("check", &["-U", "-p", "-D"][..]),
        ("proxy", &["-U", "-p"][..]),
    ] {
        let run = env.run(&[sub, "--help"]);
        run.assert_code(0);
        for letter in letters {
            assert!(run.stdout.contains(letter), "{sub} --help lacks {letter}");
        }
    }
}

/// A libpq connection string is a target, as psql takes it; its TLS
/// settings are held to rdsconn's, and a password in it is refused.
#[test]
fn libpq_connection_strings_are_targets() {
    let env = TestEnv::new();
    let ca = pki().ca_file.display().to_string();
    let port = pg::server(Variant::Localhost).port;
    let pw = [("PGPASSWORD", APP_PASSWORD)];
    let conninfo = format!(
        "host=localhost port={port} user=app dbname='appdb' sslmode=verify-full sslrootcert={ca}"
    );
    for command in ["postgres", "check"] {
        let mut args = vec!["--ca-bundle", &ca, command, &conninfo];
        if command == "postgres" {
            args.extend(["-c", "SELECT current_user AS u, current_database() AS d"]);
        }
        let run = env.run_with(&args, &pw);
        run.assert_code(0);
        if command == "postgres" {
            assert_eq!(run.stdout, "u\td\napp\tappdb\n");
        }
    }
    // Through hostaddr (the dial address), the name still verified.
    let via = format!("host={ENDPOINT} hostaddr=127.0.0.1 port={port} user=app dbname=appdb");
    let run = env.run_with(
        &["--ca-bundle", &ca, "psql", &via, "-c", "SELECT 1 AS one"],
        &pw,
    );
    run.assert_code(0);
    assert_eq!(run.stdout, "one\n1\n");
    for (bad, says) in [
        (
            format!("host=localhost port={port} user=app sslmode=require"),
            "sslmode=require",
        ),
        (
            format!("host=localhost port={port} user=app password=hunter2"),
            "password",
        ),
        (
            format!("host=localhost port={port} user=app dbname='open"),
            "quote",
        ),
    ] {
        let run = env.run_with(&["--ca-bundle", &ca, "psql", &bad, "-c", "SELECT 1"], &pw);
        run.assert_code(2);
        assert!(run.stderr.contains(says), "{bad}: {}", run.stderr);
        assert!(!run.stderr.contains("hunter2"), "{}", run.stderr);
        assert_eq!(
            run.stderr
                .lines()
                .filter(|l| l.starts_with("error:"))
                .count(),
            1
        );
    }
    // A connection string is PostgreSQL's: for mysql it is a usage error.
    let run = env.run(&["mysql", &conninfo, "-e", "SELECT 1"]);
    run.assert_code(2);
}

/// A password user needs no AWS: without credentials or a region the AWS
/// lines SKIP and the network, TLS and login are still checked.
#[test]
fn doctor_checks_a_password_user_without_aws() {
    let env = TestEnv::new();
    let ca = pki().ca_file.display().to_string();
    let port = pg::server(Variant::Localhost).port;
    let url = format!("postgres://app@localhost:{port}/appdb");
    let run = env.run_with(
        &["--ca-bundle", &ca, "--output", "json", "doctor", &url],
        &[("PGPASSWORD", APP_PASSWORD)],
    );
    run.assert_code(0);
    let j = run.json();
    let status = |name: &str| crate::support::doctor_line(&j, name)["status"].clone();
    assert_eq!(status("region"), "skipped", "{j}");
    assert_eq!(status("credentials"), "skipped", "{j}");
    for stage in [
        "connect: tcp",
        "connect: tls",
        "connect: auth",
        "connect: query",
    ] {
        assert_eq!(status(stage), "ok", "{j}");
    }
    // With --iam the same missing region is a failure.
    let run = env.run_with(
        &[
            "--ca-bundle",
            &ca,
            "--output",
            "json",
            "doctor",
            &url,
            "--iam",
        ],
        &[],
    );
    assert_ne!(run.code, 0, "{}", run.stdout);
}

/// doctor's text lines come as each check completes: the first ones are
/// on stdout while the connection check still waits on a silent server.
#[test]
fn doctor_prints_each_line_as_it_completes() {
    use std::io::BufRead;
    let env = TestEnv::new();
    let ca = pki().ca_file.display().to_string();
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let via = silent.local_addr().unwrap().to_string();
    let url = format!("postgres://app@{ENDPOINT}/appdb");
    let mut cmd = env.cmd(&[
        "--ca-bundle",
        &ca,
        "doctor",
        &url,
        "--via",
        &via,
        "--connect-timeout",
        "120s",
    ]);
    cmd.env("PGPASSWORD", APP_PASSWORD)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null());
    let mut child = cmd.spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let first = rx
        .recv_timeout(std::time::Duration::from_mins(1))
        .expect("a first checklist line");
    assert!(first.contains("region"), "{first}");
    // The connection line cannot have finished: the server never answers
    // and the timeout is two minutes.
    assert!(child.try_wait().unwrap().is_none(), "doctor ended early");
    child.kill().unwrap();
    child.wait().unwrap();
    drop(silent);
}
