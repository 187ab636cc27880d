//! Passwords from AWS Secrets Manager (moto in server mode): `--secret` on
//! every command, RDS-style secrets as whole targets, `--master-secret` of
//! RDS-managed master users, rotation, and the failures. The harness
//! servers check every password.

use std::process::Command;

use serde_json::{Value, json};

use crate::support::pki::ENDPOINT;
use crate::support::proxy::ProxyProc;
use crate::support::server::{APP_PASSWORD, Variant, pki};
use crate::support::{Run, TestEnv, maria, moto, pg};

/// Secrets (and databases with managed secrets) live in a region of their own.
const REGION: &str = "eu-central-1";

fn aws_env() -> Vec<(&'static str, String)> {
    vec![
        ("AWS_ENDPOINT_URL", moto::url().to_string()),
        ("AWS_ACCESS_KEY_ID", "testing".into()),
        ("AWS_SECRET_ACCESS_KEY", "testing".into()),
        ("AWS_REGION", REGION.into()),
        ("AWS_CONFIG_FILE", "/dev/null".into()),
        ("AWS_SHARED_CREDENTIALS_FILE", "/dev/null".into()),
    ]
}

/// `rdsconn --ca-bundle <harness CA> ARGS` with moto as AWS.
fn run(env: &TestEnv, args: &[&str]) -> Run {
    let ca = pki().ca_file.display().to_string();
    let mut all = vec!["--ca-bundle", ca.as_str()];
    all.extend_from_slice(args);
    let mut cmd = env.cmd(&all);
    for (k, v) in aws_env() {
        cmd.env(k, v);
    }
    Run::from(cmd.output().unwrap())
}

fn put(name: &str, value: &Value) -> String {
    let out = moto::secrets(
        &json!([{"op": "put", "region": REGION, "name": name, "value": value.to_string()}]),
    );
    out[0]["arn"].as_str().unwrap().to_string()
}

fn pg_via() -> String {
    format!("127.0.0.1:{}", pg::server(Variant::Good).port)
}

fn maria_via() -> String {
    format!("127.0.0.1:{}", maria::server(Variant::Good).port)
}

#[test]
fn a_secret_logs_in_with_every_command() {
    let arn = put(
        "it/app",
        &json!({"username": "app", "password": APP_PASSWORD}),
    );
    let env = TestEnv::new();
    let (pg, my) = (pg_via(), maria_via());

    // In-process SQL, by name and by ARN; the user comes from the secret.
    for id in ["it/app", arn.as_str()] {
        let r = run(
            &env,
            &[
                "postgres",
                "-h",
                ENDPOINT,
                "-d",
                "appdb",
                "--via",
                &pg,
                "--secret",
                id,
                "-c",
                "SELECT current_user AS u",
            ],
        );
        r.assert_code(0);
        assert_eq!(r.stdout, "u\napp\n");
    }
    let r = run(
        &env,
        &[
            "mysql",
            "-h",
            ENDPOINT,
            "-D",
            "appdb",
            "--via",
            &my,
            "--secret",
            "it/app",
            "-e",
            "SELECT SUBSTRING_INDEX(CURRENT_USER(), '@', 1) AS u",
        ],
    );
    r.assert_code(0);
    assert_eq!(r.stdout, "u\napp\n");

    // check: the --host target, and URL targets sharing the secret.
    let r = run(
        &env,
        &[
            "--output", "json", "check", "--engine", "postgres", "-h", ENDPOINT, "-d", "appdb",
            "--via", &pg, "--secret", "it/app",
        ],
    );
    r.assert_code(0);
    assert_eq!(r.json()["summary"]["passed"], 1);
    let url = format!("mysql://app@{ENDPOINT}/appdb");
    let r = run(&env, &["check", &url, "--via", &my, "--secret", "it/app"]);
    r.assert_code(0);
}

#[test]
fn a_secret_reaches_env_exec_and_the_hand_off() {
    put(
        "it/app",
        &json!({"username": "app", "password": APP_PASSWORD}),
    );
    let env = TestEnv::new();
    let (pg, my) = (pg_via(), maria_via());
    // env / exec: the password only in the variable the client reads.
    let r = run(
        &env,
        &[
            "--output", "json", "env", "postgres", "-h", ENDPOINT, "--secret", "it/app",
        ],
    );
    r.assert_code(0);
    let j = r.json();
    assert_eq!(j["PGPASSWORD"], APP_PASSWORD, "{j}");
    assert_eq!(j["PGUSER"], "app", "{j}");
    assert_eq!(j["RDSCONN_PASSWORD_SOURCE"], "secretsmanager:it/app", "{j}");
    // `--format json` is the same object.
    let r = run(
        &env,
        &[
            "env", "postgres", "-h", ENDPOINT, "--secret", "it/app", "--format", "json",
        ],
    );
    r.assert_code(0);
    assert_eq!(r.json(), j);
    let r = run(
        &env,
        &[
            "exec",
            "postgres",
            "-h",
            ENDPOINT,
            "-d",
            "appdb",
            "--via",
            &pg,
            "--secret",
            "it/app",
            "--",
            "psql",
            "-X",
            "-tAc",
            "SELECT current_user",
        ],
    );
    r.assert_code(0);
    assert_eq!(r.stdout.trim(), "app");

    // The hand-off to psql and to mariadb.
    let r = run(
        &env,
        &[
            "postgres",
            "-h",
            ENDPOINT,
            "-d",
            "appdb",
            "--via",
            &pg,
            "--secret",
            "it/app",
            "--",
            "-X",
            "-tAc",
            "SELECT current_user",
        ],
    );
    r.assert_code(0);
    assert_eq!(r.stdout.trim(), "app");
    let r = run(
        &env,
        &[
            "mysql",
            "-h",
            ENDPOINT,
            "-D",
            "appdb",
            "--via",
            &my,
            "--secret",
            "it/app",
            "--",
            "--batch",
            "--skip-column-names",
            "-e",
            "SELECT 40 + 2",
        ],
    );
    r.assert_code(0);
    assert_eq!(r.stdout.trim(), "42");
}

#[test]
fn the_proxy_logs_in_with_a_secret() {
    put(
        "it/proxy",
        &json!({"username": "app", "password": APP_PASSWORD}),
    );
    let env = TestEnv::new();
    let via = pg_via();
    let vars: Vec<(&str, String)> = aws_env();
    let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let proxy = ProxyProc::start(
        &env,
        &[
            "postgres", "-h", ENDPOINT, "--via", &via, "--secret", "it/proxy",
        ],
        &vars,
    );
    let r = psql(proxy.port(), "app", "SELECT current_user");
    r.assert_code(0);
    assert_eq!(r.stdout.trim(), "app");
    assert!(!proxy.log().contains(APP_PASSWORD));
}

/// psql against a proxy on `port` (no password of its own).
fn psql(port: u16, user: &str, sql: &str) -> Run {
    let out = Command::new("psql")
        .args([
            "-X",
            "-A",
            "-t",
            "-c",
            sql,
            &format!("host=127.0.0.1 port={port} user={user} dbname=appdb sslmode=disable connect_timeout=60"),
        ])
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .output()
        .unwrap();
    Run::from(out)
}

#[test]
fn an_rds_style_secret_is_a_whole_target() {
    put(
        "it/full",
        &json!({
            "username": "app", "password": APP_PASSWORD, "engine": "postgres",
            "host": ENDPOINT, "port": 5432, "dbname": "appdb",
            "dbInstanceIdentifier": "not-looked-up",
        }),
    );
    let env = TestEnv::new();
    let via = pg_via();
    let r = run(
        &env,
        &[
            "postgres",
            "--secret",
            "it/full",
            "--via",
            &via,
            "-c",
            "SELECT current_database() AS d, current_user AS u",
        ],
    );
    r.assert_code(0);
    assert_eq!(r.stdout, "d\tu\nappdb\tapp\n");
    assert!(!r.stderr.contains("warning"), "{}", r.stderr);

    // env: the secret fills host, port, user and database.
    let r = run(
        &env,
        &["--output", "json", "env", "postgres", "--secret", "it/full"],
    );
    r.assert_code(0);
    let j = r.json();
    assert_eq!(
        (
            j["PGHOST"].as_str(),
            j["PGPORT"].as_str(),
            j["PGDATABASE"].as_str()
        ),
        (Some(ENDPOINT), Some("5432"), Some("appdb")),
        "{j}"
    );

    // Flags win, with a warning naming what differs (never the password).
    let r = run(
        &env,
        &[
            "--output",
            "json",
            "env",
            "postgres",
            "--secret",
            "it/full",
            "-h",
            "other.example.com",
            "-P",
            "6543",
        ],
    );
    r.assert_code(0);
    assert_eq!(r.json()["PGHOST"], "other.example.com");
    assert!(r.stderr.contains("the secret's host"), "{}", r.stderr);
    assert!(r.stderr.contains("the secret's port"), "{}", r.stderr);
    let r = run(
        &env,
        &["--output", "json", "env", "mysql", "--secret", "it/full"],
    );
    r.assert_code(0);
    assert!(
        r.stderr.contains("the secret's engine (postgres)"),
        "{}",
        r.stderr
    );
}

#[test]
fn master_secrets_of_an_instance_and_a_cluster() {
    let managed = moto::secrets(&json!([
        {"op": "managed", "region": REGION, "kind": "instance", "id": "managed-pg", "engine": "postgres"},
        {"op": "managed", "region": REGION, "kind": "cluster", "id": "managed-cl", "engine": "aurora-postgresql"},
    ]));
    let env = TestEnv::new();
    let via = pg_via();
    for (db, flag) in managed.iter().zip(["--instance", "--cluster"]) {
        assert_eq!(db["master_user"], "admin", "{db}");
        let password = db["password"].as_str().unwrap();
        // The harness server's master user gets the secret's password.
        pg::admin_sql(
            Variant::Good,
            &format!(
                "DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'admin') THEN CREATE ROLE admin LOGIN; END IF; END $$;\n\
                 ALTER ROLE admin PASSWORD '{}';\nGRANT CONNECT ON DATABASE appdb TO admin;\n",
                password.replace('\'', "''")
            ),
        );
        let id = if flag == "--instance" {
            "managed-pg"
        } else {
            "managed-cl"
        };
        let r = run(
            &env,
            &[
                "postgres",
                flag,
                id,
                "--master-secret",
                "-d",
                "appdb",
                "--via",
                &via,
                "--tls",
                "verify-ca",
                "-c",
                "SELECT current_user AS u",
            ],
        );
        r.assert_code(0);
        assert_eq!(r.stdout, "u\nadmin\n", "{flag}");
        assert!(!r.stderr.contains(password));
    }
}

#[test]
fn ls_and_doctor_show_managed_master_secrets() {
    let managed = moto::secrets(&json!([
        {"op": "managed", "region": REGION, "kind": "instance", "id": "managed-pg", "engine": "postgres"},
    ]));
    let env = TestEnv::new();
    let via = pg_via();
    // ls shows which databases have a managed secret.
    let r = run(&env, &["--output", "json", "ls"]);
    r.assert_code(0);
    let listed = r.json();
    let inst = listed["databases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["identifier"] == "managed-pg")
        .unwrap();
    assert_eq!(inst["master_user_secret"], managed[0]["arn"], "{inst}");
    // doctor shows the secret and that it can be read.
    let r = run(
        &env,
        &[
            "--output",
            "json",
            "doctor",
            "--instance",
            "managed-pg",
            "--master-secret",
            "-d",
            "appdb",
            "--via",
            &via,
            "--tls",
            "verify-ca",
        ],
    );
    let j = r.json();
    let line = j["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["check"] == "master secret")
        .unwrap_or_else(|| panic!("{j}"));
    assert_eq!(line["status"], "ok", "{j}");
    let detail = line["detail"].as_str().unwrap();
    assert!(
        detail.contains(managed[0]["arn"].as_str().unwrap()) && detail.contains("readable"),
        "{detail}"
    );
    assert!(!r.stdout.contains(managed[0]["password"].as_str().unwrap()));
    // An instance without one: exit 3 with the fix.
    moto::setup(
        REGION,
        &json!([{"instance": "unmanaged-pg", "engine": "postgres"}]),
    );
    let r = run(
        &env,
        &[
            "postgres",
            "--instance",
            "unmanaged-pg",
            "--master-secret",
            "-c",
            "SELECT 1",
        ],
    );
    r.assert_code(3);
    assert!(
        r.stderr.contains("no master user secret")
            && r.stderr.contains("--manage-master-user-password"),
        "{}",
        r.stderr
    );
}

#[test]
fn a_rotated_secret_is_read_again_once() {
    let user = "rotating_user";
    let first = "first-password-1";
    pg::admin_sql(
        Variant::Good,
        &format!(
            "DROP ROLE IF EXISTS {user};\nCREATE ROLE {user} LOGIN PASSWORD '{first}';\nGRANT CONNECT ON DATABASE appdb TO {user};\n"
        ),
    );
    put("it/rotating", &json!({"username": user, "password": first}));
    let env = TestEnv::new();
    let via = pg_via();
    let vars: Vec<(&str, String)> = aws_env();
    let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let proxy = ProxyProc::start(
        &env,
        &[
            "postgres",
            "-h",
            ENDPOINT,
            "--via",
            &via,
            "--secret",
            "it/rotating",
        ],
        &vars,
    );
    psql(proxy.port(), user, "SELECT 1").assert_code(0);

    // Rotation: the server and the secret change together. The proxy still
    // holds the old password; the first refusal makes it read the secret
    // again, once for a burst of clients.
    let second = "second-password-2";
    pg::admin_sql(
        Variant::Good,
        &format!("ALTER ROLE {user} PASSWORD '{second}';\n"),
    );
    put(
        "it/rotating",
        &json!({"username": user, "password": second}),
    );
    let port = proxy.port();
    let clients: Vec<_> = (0..8)
        .map(|_| std::thread::spawn(move || psql(port, user, "SELECT 2")))
        .collect();
    for c in clients {
        let r = c.join().unwrap();
        r.assert_code(0);
        assert_eq!(r.stdout.trim(), "2");
    }
    let log = proxy.log();
    assert_eq!(
        log.matches("refused the secret's password; reading it again")
            .count(),
        1,
        "{log}"
    );
    assert!(!log.contains(first) && !log.contains(second));

    // A password that is still wrong after the re-read: exit 6, said so.
    put(
        "it/rotating",
        &json!({"username": user, "password": "wrong-password-3"}),
    );
    let r = run(
        &env,
        &[
            "postgres",
            "-h",
            ENDPOINT,
            "-d",
            "appdb",
            "--via",
            &via,
            "--secret",
            "it/rotating",
            "-c",
            "SELECT 1",
        ],
    );
    r.assert_code(6);
    assert!(
        r.stderr.contains("the secret was read again"),
        "{}",
        r.stderr
    );
    assert!(!r.stderr.contains("wrong-password-3"));
}

#[test]
fn bad_secrets_are_aws_errors_that_never_show_the_value() {
    put("it/not-json", &Value::String("hunter2-not-json".into()));
    put(
        "it/no-password",
        &json!({"username": "app", "secret": "hunter2-other"}),
    );
    put(
        "it/bad-port",
        &json!({"username": "app", "password": "hunter2", "port": "hunter2-port"}),
    );
    moto::secrets(&json!([{"op": "binary", "region": REGION, "name": "it/binary"}]));
    let env = TestEnv::new();
    for (id, needle) in [
        ("it/nope", "secret \"it/nope\" not found in eu-central-1"),
        ("it/not-json", "not a JSON object"),
        ("it/no-password", "no \"password\" key"),
        ("it/bad-port", "\"port\" is not a port number"),
        ("it/binary", "SecretBinary"),
    ] {
        let r = run(
            &env,
            &[
                "-vvv", "postgres", "-h", ENDPOINT, "-U", "app", "--secret", id, "-c", "SELECT 1",
            ],
        );
        r.assert_code(3);
        assert!(r.stderr.contains(needle), "{id}: {}", r.stderr);
        assert!(
            !r.stderr.contains("hunter2") && !r.stdout.contains("hunter2"),
            "{id}: {}",
            r.stderr
        );
    }
    // Another region (where it does not exist), and Secrets Manager down.
    let r = run(
        &env,
        &[
            "postgres",
            "-h",
            ENDPOINT,
            "--secret",
            "it/app",
            "--secret-region",
            "ap-south-1",
            "-c",
            "SELECT 1",
        ],
    );
    r.assert_code(3);
    let ca = pki().ca_file.display().to_string();
    let mut cmd = env.cmd(&[
        "--ca-bundle",
        &ca,
        "postgres",
        "-h",
        ENDPOINT,
        "--secret",
        "it/app",
        "-c",
        "SELECT 1",
    ]);
    for (k, v) in aws_env() {
        cmd.env(k, v);
    }
    cmd.env("AWS_ENDPOINT_URL", "http://127.0.0.1:1");
    let r = Run::from(cmd.output().unwrap());
    r.assert_code(3);
    assert!(r.stderr.contains("GetSecretValue"), "{}", r.stderr);
}

/// `token --secret`: an RDS-style secret names the endpoint and the user
/// (its password is not used); a secret without a user needs `--user`.
#[test]
fn token_takes_its_target_from_a_secret_and_a_missing_user_is_named() {
    put(
        "it/token-target",
        &json!({"username": "app", "password": "unused-password", "engine": "mysql", "host": ENDPOINT}),
    );
    put("it/no-user", &json!({"password": APP_PASSWORD}));
    let env = TestEnv::new();
    let r = run(&env, &["token", "--secret", "it/token-target"]);
    r.assert_code(0);
    assert!(
        r.stdout
            .starts_with(&format!("{ENDPOINT}:3306/?Action=connect&DBUser=app&")),
        "{}",
        r.stdout
    );
    assert!(!r.stdout.contains("unused-password") && !r.stderr.contains("unused-password"));

    let via = pg_via();
    let r = run(
        &env,
        &[
            "postgres",
            "-h",
            ENDPOINT,
            "-d",
            "appdb",
            "--via",
            &via,
            "--secret",
            "it/no-user",
            "-c",
            "SELECT 1",
        ],
    );
    r.assert_code(3);
    assert!(
        r.stderr
            .contains("secret \"it/no-user\" has no \"username\" key"),
        "{}",
        r.stderr
    );
    let r = run(
        &env,
        &[
            "postgres",
            "-h",
            ENDPOINT,
            "-U",
            "app",
            "-d",
            "appdb",
            "--via",
            &via,
            "--secret",
            "it/no-user",
            "-c",
            "SELECT 1 AS n",
        ],
    );
    r.assert_code(0);
    assert_eq!(r.stdout, "n\n1\n");
    // check: a still-refused secret password is read again once, then fails.
    put(
        "it/refused",
        &json!({"username": "app", "password": "not-the-password"}),
    );
    let r = run(
        &env,
        &[
            "--output",
            "json",
            "check",
            "--engine",
            "postgres",
            "-h",
            ENDPOINT,
            "-d",
            "appdb",
            "--via",
            &via,
            "--secret",
            "it/refused",
        ],
    );
    r.assert_code(6);
    assert_eq!(r.json()["targets"][0]["stage"], "auth");
    assert!(!r.stdout.contains("not-the-password") && !r.stderr.contains("not-the-password"));
}

/// A `--secret` proxy serves the secret's user only, as `-u` does: another
/// user is refused naming the served one (the secret's password is never
/// tried for it); and a password the database keeps refusing makes the
/// proxy read the secret again at most once per 30 s, however many
/// clients are refused.
#[test]
fn a_secret_proxy_serves_the_secrets_user_only_and_rereads_at_most_every_30s() {
    put(
        "it/only-user",
        &json!({"username": "app", "password": "not-the-password"}),
    );
    let env = TestEnv::new();
    let via = pg_via();
    let vars: Vec<(&str, String)> = aws_env();
    let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let proxy = ProxyProc::start(
        &env,
        &[
            "postgres",
            "-h",
            ENDPOINT,
            "--via",
            &via,
            "--secret",
            "it/only-user",
        ],
        &vars,
    );
    let r = psql(proxy.port(), "postgres", "SELECT 1");
    assert_ne!(r.code, 0);
    assert!(
        r.stderr.contains("serves the database user \"app\" only"),
        "{}",
        r.stderr
    );
    // Two bursts of refused clients: one re-read in all.
    let port = proxy.port();
    for _ in 0..2 {
        let clients: Vec<_> = (0..5)
            .map(|_| std::thread::spawn(move || psql(port, "app", "SELECT 2")))
            .collect();
        for c in clients {
            let r = c.join().unwrap();
            assert_ne!(r.code, 0, "{}", r.stdout);
            assert!(
                r.stderr.contains("28P01") || r.stderr.contains("password"),
                "{}",
                r.stderr
            );
        }
    }
    let log = proxy.log();
    assert_eq!(
        log.matches("refused the secret's password; reading it again")
            .count(),
        1,
        "{log}"
    );
    assert!(!log.contains("not-the-password"), "{log}");
}

/// `check` takes what a secret says as `psql` does: the user of a URL
/// without one, and an RDS-style secret as the whole target (for `doctor`
/// too).
#[test]
fn check_and_doctor_take_the_target_from_a_secret() {
    put(
        "it/check-user",
        &json!({"username": "app", "password": APP_PASSWORD}),
    );
    put(
        "it/check-whole",
        &json!({
            "username": "app", "password": APP_PASSWORD, "engine": "postgres",
            "host": ENDPOINT, "port": 5432, "dbname": "appdb",
        }),
    );
    let env = TestEnv::new();
    let via = pg_via();
    let url = format!("postgres://{ENDPOINT}/appdb");
    let r = run(
        &env,
        &[
            "check",
            "--output",
            "json",
            &url,
            "--secret",
            "it/check-user",
            "--via",
            &via,
        ],
    );
    r.assert_code(0);
    crate::support::schema::assert_valid("check", &r.stdout);
    assert_eq!(r.json()["targets"][0]["status"], "ok", "{}", r.stdout);

    let r = run(
        &env,
        &[
            "check",
            "--output",
            "json",
            "--secret",
            "it/check-whole",
            "--via",
            &via,
        ],
    );
    r.assert_code(0);
    let t = &r.json()["targets"][0];
    assert_eq!(t["status"], "ok", "{}", r.stdout);
    assert_eq!(t["endpoint"], format!("{ENDPOINT}:5432"), "{}", r.stdout);

    let r = run(
        &env,
        &[
            "doctor",
            "--output",
            "json",
            "--secret",
            "it/check-whole",
            "--via",
            &via,
        ],
    );
    crate::support::schema::assert_valid("doctor", &r.stdout);
    let j = r.json();
    let query = j["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["check"] == "connect: query")
        .unwrap_or_else(|| panic!("{j:#}"));
    assert_eq!(query["status"], "ok", "{j:#}");

    // A URL's port that differs from the secret's wins, with the warning
    // the flags get.
    let url = format!("postgres://app@{ENDPOINT}:5433/appdb");
    let r = run(
        &env,
        &[
            "--output",
            "json",
            "env",
            "postgres",
            &url,
            "--secret",
            "it/check-whole",
        ],
    );
    r.assert_code(0);
    assert_eq!(r.json()["PGPORT"], "5433", "{}", r.stdout);
    assert!(
        r.stderr
            .contains("the secret's port (5432) differs from the command line's (5433)"),
        "{}",
        r.stderr
    );
}

/// `--master-secret` connects to the database the instance was created
/// with when none is named.
#[test]
fn master_secret_uses_the_instances_database() {
    let env = TestEnv::new();
    let via = pg_via();
    let managed = moto::secrets(&json!([
        {"op": "managed", "region": REGION, "kind": "instance", "id": "managed-db", "engine": "postgres", "dbname": "appdb"},
    ]));
    let password = managed[0]["password"].as_str().unwrap();
    pg::admin_sql(
        Variant::Good,
        &format!(
            "DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'admin') THEN CREATE ROLE admin LOGIN; END IF; END $$;\n\
             ALTER ROLE admin PASSWORD '{}';\nGRANT CONNECT ON DATABASE appdb TO admin;\n",
            password.replace('\'', "''")
        ),
    );
    let r = run(
        &env,
        &[
            "postgres",
            "--instance",
            "managed-db",
            "--master-secret",
            "--via",
            &via,
            "--tls",
            "verify-ca",
            "-c",
            "SELECT current_database() AS d",
        ],
    );
    r.assert_code(0);
    assert_eq!(r.stdout, "d\nappdb\n", "{}", r.stderr);
}
