//! The RDS API against moto: `--instance` / `--cluster` on every command
//! that takes a target, `rdsconn ls`, and their errors. What moto reports is
//! read back with boto3 (`tests/oracle/moto_setup.py`), not with rdsconn.

use std::process::Command;

use serde_json::{Value, json};

use crate::support::pki::ENDPOINT;
use crate::support::server::{
    APP_PASSWORD, IAM_ACCESS_KEY, IAM_REGION, IAM_SECRET_KEY, IAM_USER, Variant, pki,
};
use crate::support::{Run, TestEnv, doctor_line, moto, pg, run_with_stdin};

/// The instances and clusters in us-east-1 that these tests share.
fn shared() -> Value {
    static SHARED: std::sync::OnceLock<Value> = std::sync::OnceLock::new();
    SHARED
        .get_or_init(|| {
            moto::setup(
                IAM_REGION,
                &json!([
                        {"instance": "mydb", "engine": "postgres", "iam": true},
                        {"instance": "mysql-noiam", "engine": "mysql", "iam": false},
                        {"instance": "oracle1", "engine": "oracle-ee", "iam": false},
                        {"cluster": "aumy", "engine": "aurora-mysql", "iam": true},
                        {"cluster": "aupg-noiam", "engine": "aurora-postgresql", "iam": false},
                {"instance": "aumy-1", "engine": "aurora-mysql", "member_of": "aumy"},
                    ]),
            )
        })
        .clone()
}

/// `rdsconn ARGS` talking to moto (through `AWS_ENDPOINT_URL_RDS`) with the
/// test credentials the harness servers' IAM verifier trusts.
fn cmd(env: &TestEnv, args: &[&str]) -> Command {
    let mut cmd = env.cmd(args);
    cmd.env("AWS_ENDPOINT_URL_RDS", moto::url())
        .env("AWS_ACCESS_KEY_ID", IAM_ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", IAM_SECRET_KEY)
        .env("AWS_REGION", IAM_REGION);
    cmd
}

fn run(env: &TestEnv, args: &[&str]) -> Run {
    Run::from(cmd(env, args).output().unwrap())
}

#[test]
fn instance_resolves_and_connects_with_iam() {
    let moto = shared();
    assert_eq!(moto["mydb"]["endpoint"], ENDPOINT, "{moto}");
    let env = TestEnv::new();
    let ca = pki().ca_file.display().to_string();
    let via = format!("127.0.0.1:{}", pg::server(Variant::Good).port);
    let conn = run(
        &env,
        &[
            "--ca-bundle",
            &ca,
            "postgres",
            "--instance",
            "mydb",
            "-U",
            IAM_USER,
            "-d",
            "appdb",
            "--iam",
            "--via",
            &via,
            "-c",
            "SELECT current_user AS u",
        ],
    );
    conn.assert_code(0);
    assert_eq!(conn.stdout, format!("u\n{IAM_USER}\n"));

    // check and env take it too.
    let mut c = cmd(
        &env,
        &[
            "--ca-bundle",
            &ca,
            "check",
            "--instance",
            "mydb",
            "-u",
            "app",
            "--database",
            "appdb",
            "--via",
            &via,
            "--output",
            "json",
        ],
    );
    c.env("PGPASSWORD", APP_PASSWORD);
    let check = Run::from(c.output().unwrap());
    check.assert_code(0);
    assert_eq!(check.json()["targets"][0]["engine"], "postgres");

    let envout = run_with_stdin(
        cmd(
            &env,
            &[
                "env",
                "postgres",
                "--instance",
                "mydb",
                "-u",
                "app",
                "--password-stdin",
                "--shell",
                "json",
            ],
        ),
        "pw\n",
    );
    envout.assert_code(0);
    let j = envout.json();
    assert_eq!(j["PGHOST"], moto["mydb"]["endpoint"]);
    assert_eq!(j["PGPORT"], moto["mydb"]["port"].to_string());
}

#[test]
fn token_for_instance_cluster_and_reader_endpoints() {
    let moto = shared();
    // moto reports the member instance with IAM off; only the cluster has it.
    assert_eq!(moto["aumy-1"]["iam"], false, "{moto}");
    assert_eq!(moto["aumy"]["iam"], true, "{moto}");
    let env = TestEnv::new();
    for (args, id, field) in [
        (vec!["--instance", "mydb"], "mydb", "endpoint"),
        (vec!["--cluster", "aumy"], "aumy", "endpoint"),
        (
            vec!["--cluster", "aumy", "--reader"],
            "aumy",
            "reader_endpoint",
        ),
    ] {
        let mut all = vec!["token", "-u", "app"];
        all.extend(args);
        let out = run(&env, &all);
        out.assert_code(0);
        let host = moto[id][field].as_str().unwrap();
        let port = &moto[id]["port"];
        assert!(
            out.stdout
                .starts_with(&format!("{host}:{port}/?Action=connect&DBUser=app&")),
            "{all:?}: {}",
            out.stdout
        );
    }
}

#[test]
fn iam_disabled_is_reported_with_the_fix_before_connecting() {
    shared();
    let env = TestEnv::new();
    for (args, fix) in [
        (
            vec![
                "mysql",
                "--instance",
                "mysql-noiam",
                "-u",
                "app",
                "--iam",
                "-e",
                "SELECT 1",
            ],
            "aws rds modify-db-instance --db-instance-identifier mysql-noiam --enable-iam-database-authentication",
        ),
        (
            vec!["token", "--cluster", "aupg-noiam", "-u", "app"],
            "aws rds modify-db-cluster --db-cluster-identifier aupg-noiam --enable-iam-database-authentication",
        ),
    ] {
        let out = run(&env, &args);
        out.assert_code(3);
        assert!(
            out.stderr
                .contains("IAM database authentication is disabled"),
            "{}",
            out.stderr
        );
        assert!(out.stderr.contains(fix), "{}", out.stderr);
    }
    // Without --iam the same instance resolves (the password path).
    let out = run(
        &env,
        &[
            "env",
            "mysql",
            "--instance",
            "mysql-noiam",
            "-u",
            "app",
            "--password-stdin",
        ],
    );
    // stdin is empty: the lookup passed and the password is what is missing.
    out.assert_code(2);
    assert!(
        out.stderr.contains("stdin held no password"),
        "{}",
        out.stderr
    );
}

#[test]
fn engine_mismatch_unsupported_engine_and_not_found() {
    shared();
    let env = TestEnv::new();
    let run1 = run(
        &env,
        &["mysql", "--instance", "mydb", "-u", "app", "-e", "1"],
    );
    run1.assert_code(2);
    assert!(
        run1.stderr
            .contains("\"mydb\" is postgres, but this is a mysql command"),
        "{}",
        run1.stderr
    );
    assert!(run1.stderr.contains("rdsconn postgres"), "{}", run1.stderr);
    // env and exec name their own form of the fix.
    let run1 = run(&env, &["env", "mysql", "--instance", "mydb", "-u", "app"]);
    run1.assert_code(2);
    assert!(run1.stdout.is_empty(), "{}", run1.stdout);
    assert!(
        run1.stderr.contains("rdsconn env postgres"),
        "{}",
        run1.stderr
    );

    let run2 = run(&env, &["token", "--instance", "oracle1", "-u", "app"]);
    run2.assert_code(2);
    assert!(run2.stderr.contains("oracle-ee"), "{}", run2.stderr);

    let run3 = run(&env, &["token", "--instance", "nope", "-u", "app"]);
    run3.assert_code(3);
    assert!(
        run3.stderr
            .contains("DB instance \"nope\" not found in us-east-1"),
        "{}",
        run3.stderr
    );
    let run4 = run(
        &env,
        &["postgres", "--cluster", "nope", "-U", "app", "-c", "1"],
    );
    run4.assert_code(3);
    assert!(
        run4.stderr.contains("DB cluster \"nope\" not found"),
        "{}",
        run4.stderr
    );

    let run5 = run(
        &env,
        &[
            "token",
            "--instance",
            "mydb",
            "--host",
            ENDPOINT,
            "-u",
            "app",
        ],
    );
    run5.assert_code(2);
}

#[test]
fn ls_lists_every_page_and_filters_by_engine() {
    // A region of its own: 150 instances (more than one 100-item page).
    let region = "eu-west-3";
    let moto = moto::setup(
        region,
        &json!([
            {"instances": "pg", "count": 150, "engine": "postgres"},
            {"instance": "my1", "engine": "mariadb", "version": "10.11.6", "iam": true},
            {"cluster": "aumy", "engine": "aurora-mysql", "iam": true},
            {"cluster": "aupg", "engine": "aurora-postgresql"},
        ]),
    );
    let env = TestEnv::new();
    let all = run(&env, &["--region", region, "ls", "--output", "json"]);
    all.assert_code(0);
    crate::support::schema::assert_valid("ls", &all.stdout);
    let listed = all.json();
    assert_eq!(listed["region"], region);
    let listed = listed["databases"].as_array().unwrap();
    let mut ids: Vec<&str> = listed
        .iter()
        .map(|d| d["identifier"].as_str().unwrap())
        .collect();
    let mut want: Vec<&str> = moto
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    ids.sort_unstable();
    want.sort_unstable();
    assert_eq!(ids, want);
    assert_eq!(ids.len(), 153);
    for d in listed {
        let m = &moto[d["identifier"].as_str().unwrap()];
        assert_eq!(d["endpoint"], m["endpoint"], "{d}");
        assert_eq!(d["port"], m["port"], "{d}");
        assert_eq!(d["engine"], m["engine"], "{d}");
        assert_eq!(d["iam_auth"], m["iam"], "{d}");
        assert_eq!(d["reader_endpoint"], m["reader_endpoint"], "{d}");
    }

    let filtered = run(
        &env,
        &[
            "--region", region, "ls", "--engine", "mysql", "--output", "json",
        ],
    );
    filtered.assert_code(0);
    let mut mysql: Vec<String> = filtered.json()["databases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["identifier"].as_str().unwrap().to_string())
        .collect();
    mysql.sort_unstable();
    assert_eq!(mysql, ["aumy", "my1"]);

    // Piped text: a header, then one tab-separated line per database with
    // every column; the count on stderr.
    let text = run(&env, &["--region", region, "ls"]);
    text.assert_code(0);
    assert_eq!(text.stdout.lines().count(), 154);
    assert!(
        text.stdout
            .starts_with("IDENTIFIER\tKIND\tENGINE\tSTATUS\tIAM\tTLS\tENDPOINT\tREADER\tCA\tSECRET\tRESOURCE ID\n"),
        "{}",
        text.stdout
    );
    assert_eq!(text.stderr.trim(), format!("153 databases in {region}"));
    assert!(
        text.stdout
            .lines()
            .any(|l| l.starts_with("my1\tinstance\tmariadb "))
    );
}

/// On a terminal: the columns that fit (identifier, kind, engine, status,
/// IAM, endpoint) unless `-o wide`; an empty region says so.
#[test]
fn ls_is_narrow_on_a_terminal_and_says_when_a_region_is_empty() {
    shared();
    let env = TestEnv::new();
    // `script` gives rdsconn a pseudo-terminal for stdout and stderr.
    let on_tty = |args: &str| {
        let mut c = cmd(&env, &[]);
        let line = format!("{} --region {IAM_REGION} ls {args}", crate::support::BINARY);
        let mut script = Command::new("script");
        script.args(["-qec", &line, "/dev/null"]);
        for (k, v) in c.get_envs() {
            match v {
                Some(v) => script.env(k, v),
                None => script.env_remove(k),
            };
        }
        c.stdin(std::process::Stdio::null());
        Run::from(script.stdin(std::process::Stdio::null()).output().unwrap())
    };
    let narrow = on_tty("");
    narrow.assert_code(0);
    let header = narrow
        .stdout
        .lines()
        .find(|l| l.starts_with("IDENTIFIER"))
        .unwrap_or_else(|| panic!("{}", narrow.stdout));
    let words: Vec<&str> = header.split_whitespace().collect();
    assert_eq!(
        words,
        ["IDENTIFIER", "KIND", "ENGINE", "STATUS", "IAM", "ENDPOINT"],
        "{}",
        narrow.stdout
    );
    assert!(narrow.stdout.contains("-o wide"), "{}", narrow.stdout);
    let wide = on_tty("-o wide");
    wide.assert_code(0);
    assert!(
        wide.stdout.contains("RESOURCE ID") && wide.stdout.contains("READER"),
        "{}",
        wide.stdout
    );

    let empty = run(&env, &["--region", "ap-south-2", "ls"]);
    empty.assert_code(0);
    assert!(empty.stdout.is_empty(), "{}", empty.stdout);
    assert_eq!(empty.stderr.trim(), "0 databases in ap-south-2");
    let json = run(&env, &["--region", "ap-south-2", "ls", "-o", "json"]);
    json.assert_code(0);
    assert_eq!(
        json.json(),
        json!({"region": "ap-south-2", "databases": []})
    );
}

#[test]
fn unreachable_rds_api_is_an_aws_error_not_a_hang() {
    let env = TestEnv::new();
    let mut c = env.cmd(&["ls"]);
    c.env("AWS_ENDPOINT_URL", "http://127.0.0.1:1")
        .env("AWS_ACCESS_KEY_ID", IAM_ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", IAM_SECRET_KEY)
        .env("AWS_REGION", IAM_REGION);
    let run = Run::from(c.output().unwrap());
    run.assert_code(3);
    assert!(run.stderr.contains("DescribeDB"), "{}", run.stderr);
    // Where it called, and in which region.
    assert!(
        run.stderr.contains("to 127.0.0.1:1 (us-east-1) failed"),
        "{}",
        run.stderr
    );

    // An answer without an error code or message still says something.
    let server = crate::support::http::Server::start(crate::support::http::Reply::Status(500));
    let mut c = env.cmd(&["ls"]);
    c.env("AWS_ENDPOINT_URL_RDS", server.base_url())
        .env("AWS_ACCESS_KEY_ID", IAM_ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", IAM_SECRET_KEY)
        .env("AWS_REGION", IAM_REGION);
    let run = Run::from(c.output().unwrap());
    run.assert_code(3);
    assert!(!run.stderr.contains("no message"), "{}", run.stderr);
    assert!(run.stderr.contains("HTTP 500"), "{}", run.stderr);
    assert!(
        run.stderr
            .contains(&format!("to {} (us-east-1)", server.addr)),
        "{}",
        run.stderr
    );

    // No region anywhere: exit 3 before any call.
    let mut c = env.cmd(&["ls"]);
    c.env("AWS_ACCESS_KEY_ID", IAM_ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", IAM_SECRET_KEY);
    let run = Run::from(c.output().unwrap());
    run.assert_code(3);
    assert!(run.stderr.contains("no AWS region"), "{}", run.stderr);
}

/// `rdsconn doctor ARGS --output json` with STS on moto too.
fn doctor(env: &TestEnv, args: &[&str], region: &str) -> (Run, Value) {
    let ca = pki().ca_file.display().to_string();
    let mut all = vec!["--ca-bundle", &ca, "--output", "json", "doctor"];
    all.extend_from_slice(args);
    let mut c = cmd(env, &all);
    c.env("AWS_ENDPOINT_URL", moto::url())
        .env("AWS_REGION", region);
    let run = Run::from(c.output().unwrap());
    crate::support::schema::assert_valid("doctor", &run.stdout);
    let j = run.json();
    (run, j)
}

/// The status of each check, by name.
fn statuses(j: &Value) -> Vec<(String, String)> {
    j["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["check"].as_str().unwrap().to_string(),
                c["status"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn doctor_passes_a_good_iam_target_and_names_the_policy_arn() {
    let moto = shared();
    let env = TestEnv::new();
    let via = format!("127.0.0.1:{}", pg::server(Variant::Good).port);
    let (run, j) = doctor(
        &env,
        &[
            "--instance",
            "mydb",
            "-u",
            IAM_USER,
            "-d",
            "appdb",
            "--iam",
            "--via",
            &via,
        ],
        IAM_REGION,
    );
    run.assert_code(0);
    assert_eq!(j["exit_code"], 0);
    let s = statuses(&j);
    for name in [
        "region",
        "credentials",
        "identity",
        "clock",
        "database",
        "iam auth",
        "connect: dns",
        "connect: tcp",
        "connect: tls",
        "connect: auth",
        "connect: query",
    ] {
        assert!(
            s.contains(&(name.to_string(), "ok".to_string())),
            "{name} not ok: {s:?}"
        );
    }
    // doctor cannot read IAM policies: the line says what they must allow,
    // never OK.
    assert_eq!(doctor_line(&j, "iam policy")["status"], "not_checked");
    // moto's CA identifier is not a real one: a warning, not a failure.
    assert_eq!(doctor_line(&j, "ca")["status"], "warn");
    // moto's fixed account (GetCallerIdentity) and the instance's resource id.
    let arn = format!(
        "arn:aws:rds-db:us-east-1:123456789012:dbuser:{}/{IAM_USER}",
        moto["mydb"]["resource_id"].as_str().unwrap()
    );
    assert!(
        doctor_line(&j, "iam policy")["detail"]
            .as_str()
            .unwrap()
            .contains(&arn),
        "{j}"
    );
}

#[test]
fn doctor_reports_iam_disabled_with_the_fix_and_skips_the_connection() {
    shared();
    let env = TestEnv::new();
    let (run, j) = doctor(
        &env,
        &["--instance", "mysql-noiam", "-u", "app", "--iam"],
        IAM_REGION,
    );
    run.assert_code(3);
    let line = doctor_line(&j, "iam auth");
    assert_eq!(line["status"], "fail");
    assert!(
        line["fix"]
            .as_str()
            .unwrap()
            .contains("modify-db-instance --db-instance-identifier mysql-noiam"),
        "{j}"
    );
    assert_eq!(doctor_line(&j, "connection")["status"], "skipped");
}

#[test]
fn doctor_warns_about_a_configured_region_other_than_the_endpoints() {
    shared();
    let env = TestEnv::new();
    let via = format!("127.0.0.1:{}", pg::server(Variant::Good).port);
    let (run, j) = doctor(
        &env,
        &[
            "-h", ENDPOINT, "--engine", "postgres", "-u", IAM_USER, "-d", "appdb", "--iam",
            "--via", &via,
        ],
        "eu-west-1",
    );
    run.assert_code(0);
    let region = doctor_line(&j, "region");
    assert_eq!(region["status"], "warn");
    let detail = region["detail"].as_str().unwrap();
    assert!(
        detail.contains("eu-west-1") && detail.contains("us-east-1"),
        "{detail}"
    );
    // The instance is found by its endpoint in the endpoint's region.
    assert_eq!(doctor_line(&j, "database")["status"], "ok", "{j}");
    assert_eq!(doctor_line(&j, "connect: auth")["status"], "ok", "{j}");
}

/// Regression: doctor re-implemented the region rule and accepted an
/// invalid `--region` that every other command refuses. Its region line
/// now renders the signing rule itself.
#[test]
fn doctor_refuses_an_invalid_region_as_every_command_does() {
    shared();
    let env = TestEnv::new();
    let (run, j) = doctor(
        &env,
        &[
            "--region",
            "not a region",
            "-h",
            ENDPOINT,
            "--engine",
            "postgres",
            "-u",
            IAM_USER,
            "--iam",
        ],
        IAM_REGION,
    );
    assert_ne!(run.code, 0);
    let region = doctor_line(&j, "region");
    assert_eq!(region["status"], "fail", "{j}");
    assert!(
        region["detail"]
            .as_str()
            .unwrap()
            .contains("invalid region"),
        "{j}"
    );
    // token, for comparison, refuses the same flag.
    let run = env.run_with(
        &[
            "--region",
            "not a region",
            "token",
            "-h",
            ENDPOINT,
            "-P",
            "5432",
            "-u",
            IAM_USER,
        ],
        &[
            ("AWS_ACCESS_KEY_ID", IAM_ACCESS_KEY),
            ("AWS_SECRET_ACCESS_KEY", IAM_SECRET_KEY),
        ],
    );
    assert_ne!(run.code, 0);
    assert!(run.stderr.contains("invalid region"), "{}", run.stderr);
}

/// RDS Proxies in a region of their own.
const PROXY_REGION: &str = "ca-central-1";

fn proxies() -> Value {
    static PROXIES: std::sync::OnceLock<Value> = std::sync::OnceLock::new();
    PROXIES
        .get_or_init(|| {
            moto::setup(
                PROXY_REGION,
                &json!([
                    {"proxy": "pgproxy", "engine_family": "POSTGRESQL", "iam": "REQUIRED", "require_tls": true},
                    {"proxy": "my-noiam", "engine_family": "MYSQL", "iam": "DISABLED", "require_tls": false},
                ]),
            )
        })
        .clone()
}

#[test]
fn ls_lists_proxies_with_engine_family_iam_and_tls() {
    let moto = proxies();
    let env = TestEnv::new();
    let ls = run(&env, &["--region", PROXY_REGION, "ls", "--output", "json"]);
    ls.assert_code(0);
    let listed = ls.json();
    let find = |id: &str| {
        listed["databases"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["identifier"] == id)
            .unwrap_or_else(|| panic!("{id} not listed: {listed}"))
            .clone()
    };
    for (id, engine, iam, tls) in [
        ("pgproxy", "postgresql", true, true),
        ("my-noiam", "mysql", false, false),
    ] {
        let d = find(id);
        let m = &moto[id];
        assert_eq!(d["kind"], "proxy", "{d}");
        assert_eq!(d["endpoint"], m["endpoint"], "{d}");
        assert_eq!(d["engine"], engine, "{d}");
        assert_eq!(d["iam_auth"], iam, "{d}");
        assert_eq!(d["require_tls"], tls, "{d}");
        assert_eq!(d["iam_auth_setting"], m["iam"], "{d}");
        assert_eq!(d["status"], m["status"], "{d}");
        assert_eq!(d["role_arn"], m["role_arn"], "{d}");
        let arn = m["arn"].as_str().unwrap();
        assert_eq!(d["resource_id"], arn.rsplit(':').next().unwrap(), "{d}");
    }
    // --engine filters proxies by engine family too.
    let pg = run(
        &env,
        &[
            "--region",
            PROXY_REGION,
            "ls",
            "--engine",
            "postgres",
            "--output",
            "json",
        ],
    );
    pg.assert_code(0);
    let ids: Vec<String> = pg.json()["databases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["identifier"].as_str().unwrap().to_string())
        .collect();
    assert!(
        ids.contains(&"pgproxy".to_string()) && !ids.contains(&"my-noiam".to_string()),
        "{ids:?}"
    );
    let text = run(&env, &["--region", PROXY_REGION, "ls"]);
    text.assert_code(0);
    let line = text
        .stdout
        .lines()
        .find(|l| l.starts_with("pgproxy\t"))
        .unwrap_or_else(|| panic!("{}", text.stdout));
    assert!(
        line.contains("\tproxy\t") && line.contains("\trequired\t"),
        "{line}"
    );
}

/// `--proxy NAME`: the endpoint and engine family from `DescribeDBProxies`,
/// the engine's port, a token signed for that endpoint, and the Amazon
/// Trust roots even though moto's proxy names do not have the real shape.
#[test]
fn proxy_targets_resolve_through_the_api_and_trust_the_amazon_roots() {
    let moto = proxies();
    let endpoint = moto["pgproxy"]["endpoint"].as_str().unwrap().to_string();
    let env = TestEnv::new();

    let token = run(
        &env,
        &[
            "--region",
            PROXY_REGION,
            "token",
            "--proxy",
            "pgproxy",
            "-u",
            "app",
        ],
    );
    token.assert_code(0);
    let token = token.stdout.trim_end();
    assert!(
        token.starts_with(&format!("{endpoint}:5432/?Action=connect&DBUser=app&")),
        "{token}"
    );
    assert!(
        token.contains(&format!("%2F{PROXY_REGION}%2Frds-db%2F")),
        "{token}"
    );

    let via = format!("127.0.0.1:{}", pg::server(Variant::Good).port);
    let connect = |extra: &[&str], tls: &str| {
        let mut args = vec!["--region", PROXY_REGION];
        args.extend_from_slice(extra);
        args.extend([
            "postgres",
            "--proxy",
            "pgproxy",
            "-U",
            "app",
            "-d",
            "appdb",
            "--via",
            &via,
            "--tls",
            tls,
            "-c",
            "SELECT 7 AS n",
        ]);
        let mut c = cmd(&env, &args);
        c.env("PGPASSWORD", APP_PASSWORD);
        Run::from(c.output().unwrap())
    };
    let run1 = connect(&[], "verify-full");
    run1.assert_code(5);
    assert!(
        run1.stderr
            .contains("outside the Amazon Trust Services roots"),
        "{}",
        run1.stderr
    );
    // A proxy found through the API is a proxy whatever its name: its
    // roots are public, so the chain alone is never enough.
    let ca = pki().ca_file.display().to_string();
    let run2 = connect(&["--ca-bundle", &ca], "verify-ca");
    run2.assert_code(2);
    assert!(
        run2.stderr.contains("verify-ca (chain only) is refused"),
        "{}",
        run2.stderr
    );
    let run3 = connect(&["--ca-bundle", &ca], "verify-full");
    run3.assert_code(5);
    assert!(run3.stderr.contains("not valid for"), "{}", run3.stderr);
}

/// The proxy's IAM setting and engine family are checked before connecting.
#[test]
fn proxy_rules_are_checked_before_connecting() {
    proxies();
    let env = TestEnv::new();
    let noiam = run(
        &env,
        &[
            "--region",
            PROXY_REGION,
            "mysql",
            "--proxy",
            "my-noiam",
            "-u",
            "app",
            "--iam",
            "-e",
            "SELECT 1",
        ],
    );
    noiam.assert_code(3);
    assert!(
        noiam
            .stderr
            .contains("modify-db-proxy --db-proxy-name my-noiam"),
        "{}",
        noiam.stderr
    );
    let wrong = run(
        &env,
        &[
            "--region",
            PROXY_REGION,
            "mysql",
            "--proxy",
            "pgproxy",
            "-u",
            "app",
            "-e",
            "SELECT 1",
        ],
    );
    wrong.assert_code(2);
    let missing = run(
        &env,
        &[
            "--region",
            PROXY_REGION,
            "token",
            "--proxy",
            "nope",
            "-u",
            "app",
        ],
    );
    missing.assert_code(3);
    assert!(
        missing.stderr.contains("DB proxy \"nope\" not found"),
        "{}",
        missing.stderr
    );
}

#[test]
fn doctor_knows_a_proxys_rules() {
    let moto = proxies();
    let env = TestEnv::new();
    let via = format!("127.0.0.1:{}", pg::server(Variant::Good).port);
    let (run, j) = doctor(
        &env,
        &["--proxy", "pgproxy", "-u", "app", "--iam", "--via", &via],
        PROXY_REGION,
    );
    // The harness certificate is not an ACM one: the TLS stage fails.
    run.assert_code(5);
    let db = doctor_line(&j, "database");
    assert_eq!(db["status"], "ok", "{j}");
    assert!(
        db["detail"]
            .as_str()
            .unwrap()
            .contains("proxy pgproxy (postgresql, available, TLS required)"),
        "{j}"
    );
    assert_eq!(doctor_line(&j, "iam auth")["status"], "ok", "{j}");
    let arn = moto["pgproxy"]["arn"].as_str().unwrap();
    let prx = arn.rsplit(':').next().unwrap();
    assert!(
        doctor_line(&j, "iam policy")["detail"]
            .as_str()
            .unwrap()
            .contains(&format!(":dbuser:{prx}/app")),
        "{j}"
    );
    assert_eq!(doctor_line(&j, "proxy role")["status"], "ok", "{j}");
    assert_eq!(doctor_line(&j, "ca")["status"], "ok", "{j}");
    assert_eq!(doctor_line(&j, "connect: tls")["status"], "fail", "{j}");
}

/// What moto lacks (`DescribeDBProxyEndpoints`, `DescribeCertificates`,
/// `DescribePendingMaintenanceActions`) answered by a stand-in in front of
/// moto (`tests/oracle/rds_stub.py`); killed on drop.
pub(crate) struct EndpointsStub {
    child: std::process::Child,
    pub(crate) url: String,
}

impl EndpointsStub {
    pub(crate) fn start(stub: &Value) -> Self {
        use std::io::BufRead;
        let script =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/oracle/rds_stub.py");
        let mut child = Command::new(crate::support::python())
            .arg(script)
            .args([moto::url(), &stub.to_string()])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port: u16 = line
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("stub said {line:?}"));
        Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
        }
    }
}

impl Drop for EndpointsStub {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn proxy_endpoints_resolve_with_their_proxys_settings() {
    proxies();
    let endpoint = "ro.endpoint.proxy-c9akciq32abc.ca-central-1.rds.amazonaws.com";
    let stub = EndpointsStub::start(&json!({"endpoints": {
        "ro": {"proxy": "pgproxy", "endpoint": endpoint, "role": "READ_ONLY"},
        "orphan": {"proxy": "no-such-proxy", "endpoint": "x.endpoint.proxy-x.ca-central-1.rds.amazonaws.com"},
    }}));
    let env = TestEnv::new();
    let through_stub = |args: &[&str]| {
        let mut all = vec!["--region", PROXY_REGION];
        all.extend_from_slice(args);
        let mut c = cmd(&env, &all);
        c.env("AWS_ENDPOINT_URL_RDS", &stub.url)
            .env("PGPASSWORD", APP_PASSWORD);
        Run::from(c.output().unwrap())
    };
    // The token: the endpoint's name, the proxy's engine family's port.
    let token = through_stub(&["token", "--proxy-endpoint", "ro", "-u", "app"]);
    token.assert_code(0);
    assert!(
        token
            .stdout
            .starts_with(&format!("{endpoint}:5432/?Action=connect&DBUser=app&")),
        "{}",
        token.stdout
    );
    // A connection verifies against the Amazon Trust roots.
    let via = format!("127.0.0.1:{}", pg::server(Variant::Good).port);
    let conn = through_stub(&[
        "postgres",
        "--proxy-endpoint",
        "ro",
        "-U",
        "app",
        "-d",
        "appdb",
        "--via",
        &via,
        "-c",
        "SELECT 1",
    ]);
    conn.assert_code(5);
    assert!(
        conn.stderr
            .contains("outside the Amazon Trust Services roots"),
        "{}",
        conn.stderr
    );
    // The proxy's engine family decides the engine.
    let wrong = through_stub(&[
        "mysql",
        "--proxy-endpoint",
        "ro",
        "-u",
        "app",
        "-e",
        "SELECT 1",
    ]);
    wrong.assert_code(2);
    for (name, needle) in [
        ("nope", "DB proxy endpoint \"nope\" not found"),
        ("orphan", "DB proxy \"no-such-proxy\" not found"),
    ] {
        let run = through_stub(&["token", "--proxy-endpoint", name, "-u", "app"]);
        run.assert_code(3);
        assert!(run.stderr.contains(needle), "{name}: {}", run.stderr);
    }
}

/// An instance's name passed as `--cluster`, or the reverse: the hint
/// names the right flag.
#[test]
fn a_cluster_passed_as_an_instance_gets_the_right_flag() {
    shared();
    let env = TestEnv::new();
    for (flag, id, want) in [
        ("--instance", "aumy", "pass --cluster aumy"),
        ("--cluster", "mydb", "pass --instance mydb"),
    ] {
        let run = run(&env, &["token", flag, id, "-u", "app"]);
        run.assert_code(2);
        assert!(run.stderr.contains(want), "{flag} {id}: {}", run.stderr);
    }
}
