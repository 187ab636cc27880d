//! Endpoint classes: RDS DB names, RDS Proxy names and Aurora DSQL names in
//! every partition, the roots each class trusts, DSQL tokens against
//! botocore, and fully qualified names (a trailing dot).

use std::time::{Duration, UNIX_EPOCH};

use rdsconn::target::Host;
use rdsconn::token::{DsqlTokenRequest, generate_dsql};
use serde_json::{Value, json};

use crate::support::pki::ENDPOINT;
use crate::support::server::{APP_PASSWORD, Variant, pki};
use crate::support::{Run, TestEnv, maria, pg, python};
use crate::token::{AKID, SECRET, SESSION, creds, oracle};

const PROXY: &str = "myproxy.proxy-c9akciq32abc.us-east-1.rds.amazonaws.com";
const DSQL: &str = crate::support::server::DSQL_NAME;
const DB: &str = "mydb.c9akciq32abc.us-east-1.rds.amazonaws.com";

fn creds_env(region: &str) -> Vec<(&'static str, String)> {
    vec![
        ("AWS_ACCESS_KEY_ID", AKID.to_string()),
        ("AWS_SECRET_ACCESS_KEY", SECRET.to_string()),
        ("AWS_REGION", region.to_string()),
        ("AWS_CONFIG_FILE", "/dev/null".to_string()),
        ("AWS_SHARED_CREDENTIALS_FILE", "/dev/null".to_string()),
    ]
}

fn run_token(env: &TestEnv, args: &[&str], region: &str) -> Run {
    let mut all = vec!["token"];
    all.extend_from_slice(args);
    let mut cmd = env.cmd(&all);
    for (k, v) in creds_env(region) {
        cmd.env(k, v);
    }
    Run::from(cmd.output().unwrap())
}

/// The X-Amz-Date a token was signed at.
fn amz_date(token: &str) -> String {
    token
        .split("X-Amz-Date=")
        .nth(1)
        .and_then(|rest| rest.split('&').next())
        .unwrap_or_else(|| panic!("no X-Amz-Date in {token}"))
        .to_string()
}

#[test]
fn dsql_tokens_are_byte_identical_to_botocore() {
    let hosts = [
        DSQL,
        "ABCDEF.DSQL.EU-WEST-1.ON.AWS",
        "db.internal.example.com",
        "10.0.0.5",
    ];
    let regions = ["us-east-1", "eu-west-1", "ap-northeast-1", "us-gov-west-1"];
    let lifetimes = [900_u64, 1, 3600, 604_800];
    let times = [1_700_000_000_u64, 1_798_761_599, 946_684_800];
    let mut cases = Vec::new();
    let mut ours = Vec::new();
    for (i, host) in hosts.iter().enumerate() {
        for (j, admin) in [false, true].into_iter().enumerate() {
            for (k, expires) in lifetimes.iter().enumerate() {
                let region = regions[(i + j + k) % regions.len()];
                let time = times[(i + 2 * j + k) % times.len()];
                let session = ((i + j + k) % 2 == 0).then_some(SESSION);
                let parsed = Host::parse(host).unwrap();
                let req = DsqlTokenRequest {
                    host: &parsed,
                    region,
                    admin,
                    expires_in: Duration::from_secs(*expires),
                };
                let at = UNIX_EPOCH + Duration::from_secs(time);
                ours.push(generate_dsql(&creds(session), &req, at).unwrap());
                let mut case = json!({
                    "dsql": true, "host": host, "region": region, "admin": admin,
                    "expires_in": expires, "access_key": AKID, "secret_key": SECRET,
                    "time": time,
                });
                if let Some(s) = session {
                    case["session_token"] = json!(s);
                }
                cases.push(case);
            }
        }
    }
    let theirs = oracle(&cases);
    for ((case, ours), theirs) in cases.iter().zip(&ours).zip(&theirs) {
        assert_eq!(ours, theirs, "case {case}");
    }
    assert!(theirs.iter().any(|t| t.contains("Action=DbConnectAdmin&")));
    assert!(theirs.iter().any(|t| t.contains("Action=DbConnect&")));
    // Out of DSQL's bounds: refused, not signed.
    let host = Host::parse(DSQL).unwrap();
    for bad in [Duration::ZERO, Duration::from_secs(604_801)] {
        let req = DsqlTokenRequest {
            host: &host,
            region: "us-east-1",
            admin: false,
            expires_in: bad,
        };
        assert!(generate_dsql(&creds(None), &req, UNIX_EPOCH).is_err());
    }
}

/// `rdsconn token` for a DSQL name: `DbConnectAdmin` for `admin`, `DbConnect`
/// otherwise, the lifetime from --expires-in, the region from the name;
/// `--dsql` for a name that is not a DSQL one.
#[test]
fn binary_dsql_tokens_match_botocore() {
    let env = TestEnv::new();
    let cases: [(&[&str], &str, &str, bool, u64); 5] = [
        (
            &["-h", DSQL, "-u", "app", "--admin"],
            DSQL,
            "us-east-1",
            true,
            900,
        ),
        (&["-h", DSQL, "-u", "admin"], DSQL, "us-east-1", true, 900),
        (
            &[
                "-h",
                "xyz.dsql.eu-central-1.on.aws.",
                "-u",
                "app",
                "--expires-in",
                "1h",
            ],
            "xyz.dsql.eu-central-1.on.aws",
            "eu-central-1",
            false,
            3600,
        ),
        (
            &[
                "postgres://admin@xyz.dsql.ap-south-1.on.aws",
                "--expires-in",
                "7days",
            ],
            "xyz.dsql.ap-south-1.on.aws",
            "ap-south-1",
            true,
            604_800,
        ),
        (
            &["--dsql", "-h", "dsql.corp.example", "-u", "app"],
            "dsql.corp.example",
            "us-west-2",
            false,
            900,
        ),
    ];
    for (args, host, region, admin, expires) in cases {
        let run = run_token(&env, args, "us-west-2");
        run.assert_code(0);
        let token = run.stdout.trim_end();
        let case = json!({
            "dsql": true, "host": host, "region": region, "admin": admin,
            "expires_in": expires, "access_key": AKID, "secret_key": SECRET,
            "amz_date": amz_date(token),
        });
        assert_eq!(token, oracle(&[case])[0], "{args:?}");
    }
    // The JSON form's expiry follows the lifetime.
    let mut args = vec!["--output", "json", "token", "-h", DSQL, "-u", "app"];
    args.extend(["--expires-in", "2h"]);
    let mut cmd = env.cmd(&args);
    for (k, v) in creds_env("us-east-1") {
        cmd.env(k, v);
    }
    let run = Run::from(cmd.output().unwrap());
    run.assert_code(0);
    crate::support::schema::assert_valid("token", &run.stdout);
    let j = run.json();
    let issued = humantime::parse_rfc3339(j["issued_at"].as_str().unwrap()).unwrap();
    let expires = humantime::parse_rfc3339(j["expires_at"].as_str().unwrap()).unwrap();
    assert_eq!(
        expires.duration_since(issued).unwrap(),
        Duration::from_hours(2)
    );
}

#[test]
fn expires_in_is_for_dsql_tokens_within_a_week() {
    let env = TestEnv::new();
    for (args, needle) in [
        (
            vec!["-h", DB, "-P", "5432", "-u", "app", "--expires-in", "1h"],
            "--expires-in is for Aurora DSQL",
        ),
        (
            vec!["-h", DSQL, "-u", "app", "--expires-in", "0s"],
            "one week",
        ),
        (
            vec!["-h", DSQL, "-u", "app", "--expires-in", "8days"],
            "one week",
        ),
        // Below one second was a token with X-Amz-Expires=0.
        (
            vec!["-h", DSQL, "-u", "app", "--expires-in", "500ms"],
            "one week",
        ),
        (
            vec!["-h", DSQL, "-u", "app", "--expires-in", "0"],
            "one week",
        ),
        (
            vec!["-h", DSQL, "-u", "app", "--expires-in", "1500ms"],
            "whole seconds",
        ),
        (
            vec!["mysql://app@x.dsql.us-east-1.on.aws"],
            "speaks PostgreSQL",
        ),
        (
            vec!["-h", DB, "-P", "5432", "-u", "app", "--admin"],
            "--admin is for Aurora DSQL",
        ),
    ] {
        let run = run_token(&env, &args, "us-east-1");
        run.assert_code(2);
        assert!(run.stderr.contains(needle), "{args:?}: {}", run.stderr);
        assert!(!run.stdout.contains("X-Amz"), "{}", run.stdout);
    }
    // Bare seconds, as the AWS CLI takes them.
    for (raw, expires) in [("3600", "3600"), ("2h", "7200"), ("1", "1")] {
        let run = run_token(
            &env,
            &["-h", DSQL, "-u", "admin", "--expires-in", raw],
            "us-east-1",
        );
        run.assert_code(0);
        assert!(
            run.stdout.contains(&format!("&X-Amz-Expires={expires}&")),
            "{raw}: {}",
            run.stdout
        );
    }
}

/// Every partition and region in botocore's partitions data: the region
/// and partition come from the endpoint name's DNS suffix, DB and proxy
/// names get their own roots, and an RDS token is signed for that region.
#[test]
fn every_partition_in_botocore_data() {
    let script = r#"
import json, botocore, os
path = os.path.join(os.path.dirname(botocore.__file__), "data", "partitions.json")
out = []
for p in json.load(open(path))["partitions"]:
    regions = [r for r in p["regions"] if not r.endswith("-global")]
    out.append({"id": p["id"], "suffix": p["outputs"]["dnsSuffix"], "regions": regions})
print(json.dumps(out))
"#;
    let out = std::process::Command::new(python())
        .args(["-c", script])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let partitions: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert!(partitions.len() >= 8, "{partitions:?}");
    let env = TestEnv::new();
    let mut token_cases = Vec::new();
    let mut tokens = Vec::new();
    for p in &partitions {
        let id = p["id"].as_str().unwrap();
        let suffix = p["suffix"].as_str().unwrap();
        let regions: Vec<&str> = p["regions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r.as_str().unwrap())
            .collect();
        assert!(!regions.is_empty(), "{id}");
        for region in &regions {
            for (name, class, roots) in [
                (
                    format!("db.c9akciq32.{region}.rds.{suffix}"),
                    "database",
                    "rds-bundle",
                ),
                (
                    format!("p.proxy-c9akciq32.{region}.rds.{suffix}"),
                    "proxy",
                    "amazon-trust",
                ),
            ] {
                let run = env.run(&["--output", "json", "ca", "show", "--for", &name]);
                run.assert_code(0);
                let f = &run.json()["for"];
                assert_eq!(f["class"], class, "{name}");
                assert_eq!(f["region"], *region, "{name}");
                assert_eq!(f["partition"], id, "{name}");
                assert_eq!(f["roots"], roots, "{name}");
            }
        }
        // One token per partition, the region taken from the name.
        let region = regions[0];
        let host = format!("db.c9akciq32.{region}.rds.{suffix}");
        let run = run_token(&env, &["-h", &host, "-P", "5432", "-u", "app"], "us-east-1");
        run.assert_code(0);
        let token = run.stdout.trim_end().to_string();
        token_cases.push(json!({
            "host": host, "port": 5432, "user": "app", "region": region,
            "access_key": AKID, "secret_key": SECRET, "amz_date": amz_date(&token),
        }));
        tokens.push(token);
    }
    assert_eq!(oracle(&token_cases), tokens);
}

/// Blue/Green, Limitless shard-group, custom cluster and proxy names sign
/// like any RDS name (botocore's rule does not depend on the shape).
#[test]
fn special_rds_names_sign_like_botocore() {
    let env = TestEnv::new();
    for host in [
        "mydb-green-abcdef.c9akciq32.us-east-2.rds.amazonaws.com",
        "lim.shardgrp-c9akciq32.us-west-2.rds.amazonaws.com",
        "rep.cluster-custom-c9akciq32.ap-south-1.rds.amazonaws.com",
        PROXY,
        "ro.endpoint.proxy-c9akciq32.eu-west-1.rds.amazonaws.com",
    ] {
        let run = run_token(&env, &["-h", host, "-P", "3306", "-u", "app"], "us-east-1");
        run.assert_code(0);
        let token = run.stdout.trim_end();
        let region = Host::parse(host).unwrap().rds_region().unwrap().unwrap();
        let case = json!({
            "host": host, "port": 3306, "user": "app", "region": region,
            "access_key": AKID, "secret_key": SECRET, "amz_date": amz_date(token),
        });
        assert_eq!(token, oracle(&[case])[0], "{host}");
    }
}

#[test]
fn a_trailing_dot_signs_connects_and_verifies_as_the_name() {
    let env = TestEnv::new();
    let fqdn = format!("{DB}.");
    let run = run_token(&env, &["-h", &fqdn, "-P", "5432", "-u", "app"], "us-east-1");
    run.assert_code(0);
    let token = run.stdout.trim_end();
    assert!(token.starts_with(&format!("{DB}:5432/?")), "{token}");
    let case = json!({
        "host": DB, "port": 5432, "user": "app", "region": "us-east-1",
        "access_key": AKID, "secret_key": SECRET, "amz_date": amz_date(token),
    });
    assert_eq!(token, oracle(&[case])[0]);

    // Each engine: TLS verified (SNI and name check) for the name without
    // its dot.
    let ca = pki().ca_file.display().to_string();
    let fqdn = format!("{ENDPOINT}.");
    let pg_via = format!("127.0.0.1:{}", pg::server(Variant::Good).port);
    let my_via = format!("127.0.0.1:{}", maria::server(Variant::Good).port);
    let runs = [
        env.run_with(
            &[
                "--ca-bundle",
                &ca,
                "postgres",
                "-h",
                &fqdn,
                "-U",
                "app",
                "-d",
                "appdb",
                "--via",
                &pg_via,
                "-c",
                "SELECT 41 + 1 AS n",
            ],
            &[("PGPASSWORD", APP_PASSWORD)],
        ),
        env.run_with(
            &[
                "--ca-bundle",
                &ca,
                "mysql",
                "-h",
                &fqdn,
                "-u",
                "app",
                "-D",
                "appdb",
                "--via",
                &my_via,
                "-e",
                "SELECT 41 + 1 AS n",
            ],
            &[("MYSQL_PWD", APP_PASSWORD)],
        ),
    ];
    for run in runs {
        run.assert_code(0);
        assert!(run.stdout.contains("42"), "{}", run.stdout);
    }
}

/// The roots are chosen by the name: the harness's certificate chains to
/// neither embedded set, and the error names the set that was tried. With
/// --ca-bundle, that file is trusted for every class.
#[test]
fn proxy_and_dsql_names_get_the_amazon_trust_roots_and_db_names_do_not() {
    let env = TestEnv::new();
    let via = format!("127.0.0.1:{}", pg::server(Variant::Good).port);
    let connect = |host: &str, bundle: Option<&str>, mode: &str| {
        let mut args = Vec::new();
        if let Some(b) = bundle {
            args.extend(["--ca-bundle", b]);
        }
        args.extend([
            "postgres", "-h", host, "-U", "app", "-d", "appdb", "--via", &via, "--tls", mode, "-c",
            "SELECT 1",
        ]);
        env.run_with(&args, &[("PGPASSWORD", APP_PASSWORD)])
    };
    for (host, roots) in [
        (PROXY, "the Amazon Trust Services roots"),
        (DSQL, "the Amazon Trust Services roots"),
        (DB, "the RDS CA bundle"),
    ] {
        let run = connect(host, None, "verify-full");
        run.assert_code(5);
        assert!(
            run.stderr.contains(&format!("outside {roots}")),
            "{host}: {}",
            run.stderr
        );
    }
    let run = connect(PROXY, None, "verify-full");
    assert!(run.stderr.contains("ca show --for"), "{}", run.stderr);
    // --ca-bundle replaces the roots of every class; chain-only is never
    // allowed for the public roots' names (tests/it/publicroots.rs).
    let ca = pki().ca_file.display().to_string();
    connect(DB, Some(&ca), "verify-ca").assert_code(0);
    for host in [PROXY, DSQL] {
        connect(host, Some(&ca), "verify-ca").assert_code(2);
    }

    // The file native clients get.
    let amazon: String = [
        "Amazon_Root_CA_1.crt",
        "Amazon_Root_CA_2.crt",
        "Amazon_Root_CA_3.crt",
        "Amazon_Root_CA_4.crt",
        "Starfield_Services_Root_Certificate_Authority_-_G2.crt",
    ]
    .iter()
    .map(|f| {
        std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("certs/amazon-trust")
                .join(f),
        )
        .unwrap()
    })
    .collect();
    for (host, expect_amazon) in [(PROXY, true), (DSQL, true), (DB, false)] {
        let run = env.run(&["ca", "path", "--for", host]);
        run.assert_code(0);
        let pem = std::fs::read_to_string(run.stdout.trim_end()).unwrap();
        assert_eq!(pem == amazon, expect_amazon, "{host}");
        let count = pem.matches("BEGIN CERTIFICATE").count();
        assert_eq!(count, if expect_amazon { 5 } else { 108 }, "{host}");

        let run = env.run_with(
            &["env", "postgres", "-h", host, "--user", "app"],
            &[("PGPASSWORD", APP_PASSWORD)],
        );
        run.assert_code(0);
        let line = run
            .stdout
            .lines()
            .find(|l| l.contains("PGSSLROOTCERT="))
            .unwrap_or_else(|| panic!("{}", run.stdout));
        assert_eq!(
            line.contains("amazon-trust"),
            expect_amazon,
            "{host}: {line}"
        );
    }
    // DSQL's database is `postgres` unless one is named.
    let run = env.run_with(
        &["env", "postgres", "-h", DSQL, "--user", "admin"],
        &[("PGPASSWORD", APP_PASSWORD)],
    );
    run.assert_code(0);
    assert!(
        run.stdout.contains("PGDATABASE='postgres'") || run.stdout.contains("PGDATABASE=postgres"),
        "{}",
        run.stdout
    );
}

/// A name that is not an RDS name, whose certificate is for the RDS name
/// (a CNAME): the hint says which name goes where.
#[test]
fn a_cname_gets_the_host_and_via_hint() {
    let env = TestEnv::new();
    let ca = pki().ca_file.display().to_string();
    let via = format!("127.0.0.1:{}", pg::server(Variant::Good).port);
    let run = env.run_with(
        &[
            "--ca-bundle",
            &ca,
            "postgres",
            "-h",
            "db.corp.example",
            "-U",
            "app",
            "-d",
            "appdb",
            "--via",
            &via,
            "-c",
            "SELECT 1",
        ],
        &[("PGPASSWORD", APP_PASSWORD)],
    );
    run.assert_code(5);
    assert!(
        run.stderr.contains("not an RDS endpoint name"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("as --via"), "{}", run.stderr);
}

/// `--iam` to a DSQL name mints a DSQL token wherever a token is used: in
/// the settings for other programs (`env`: the password variable), and on
/// the wire (`postgres -c`: the harness's token check sees a host-only
/// token, no port, and rejects it as not an RDS one).
#[test]
fn iam_to_a_dsql_name_uses_dsql_tokens_everywhere() {
    use crate::support::server::{IAM_USER, pam_log};
    let env = TestEnv::new();
    let vars: Vec<(&str, String)> = creds_env("us-east-1");
    let with_creds = |args: &[&str]| {
        let mut c = env.cmd(args);
        for (k, v) in &vars {
            c.env(k, v);
        }
        Run::from(c.output().unwrap())
    };
    let run = with_creds(&[
        "--output", "json", "env", "postgres", "-h", DSQL, "--user", "admin", "--iam",
    ]);
    run.assert_code(0);
    crate::support::schema::assert_valid("env", &run.stdout);
    let j = run.json();
    // When the token stops being accepted: 15 minutes from now.
    let expires =
        humantime::parse_rfc3339(j["RDSCONN_TOKEN_EXPIRES_AT"].as_str().unwrap()).unwrap();
    let left = expires
        .duration_since(std::time::SystemTime::now())
        .unwrap();
    assert!(
        left > std::time::Duration::from_secs(800) && left <= std::time::Duration::from_mins(15),
        "{left:?}"
    );
    let token = j["PGPASSWORD"].as_str().unwrap_or_else(|| panic!("{j}"));
    assert!(
        token.starts_with(&format!("{DSQL}/?Action=DbConnectAdmin&")),
        "{token}"
    );
    let case = json!({
        "dsql": true, "host": DSQL, "region": "us-east-1", "admin": true, "expires_in": 900,
        "access_key": AKID, "secret_key": SECRET, "amz_date": amz_date(token),
    });
    assert_eq!(token, oracle(&[case])[0]);
    assert_eq!(j["PGDATABASE"], "postgres", "{j}");
    assert!(
        j["PGSSLROOTCERT"]
            .as_str()
            .unwrap()
            .contains("amazon-trust"),
        "{j}"
    );

    let ca = pki().ca_file.display().to_string();
    let via = format!("127.0.0.1:{}", pg::server(Variant::Localhost).port);
    let run = with_creds(&[
        "--ca-bundle",
        &ca,
        "postgres",
        "-h",
        DSQL,
        "-U",
        IAM_USER,
        "--via",
        &via,
        "--iam",
        "-c",
        "SELECT 1",
    ]);
    run.assert_code(6);
    let log = pam_log("postgres");
    assert!(
        log.contains(&format!("signed for '{DSQL}', expected")),
        "{log}"
    );
}
