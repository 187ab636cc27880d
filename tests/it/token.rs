//! `rdsconn token` against botocore's `generate_db_auth_token` (the oracle,
//! run from the venv that scripts/test.sh creates), plus credential sources,
//! region rules and input errors.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, UNIX_EPOCH};

use rdsconn::target::Host;
use rdsconn::token::{TokenRequest, generate};
use serde_json::{Value, json};

use crate::support::{Run, TestEnv, python};

pub(crate) const AKID: &str = "AKIAIOSFODNN7EXAMPLE";
pub(crate) const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
pub(crate) const SESSION: &str = "FwoGZXIvYXdzEJr//////////wEaDAbc+/def=GHI%jkl";

/// Tokens from botocore for each case, in order.
pub(crate) fn oracle(cases: &[Value]) -> Vec<String> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/oracle/botocore_token.py");
    let mut child = Command::new(python())
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = String::new();
    for case in cases {
        input.push_str(&case.to_string());
        input.push('\n');
    }
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "oracle failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tokens: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["token"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(tokens.len(), cases.len());
    tokens
}

pub(crate) fn creds(session: Option<&str>) -> aws_credential_types::Credentials {
    aws_credential_types::Credentials::new(AKID, SECRET, session.map(str::to_string), None, "test")
}

/// Every rule at once: user encoding, host case, IPs, IPv6, ports, regions
/// of all partitions, temporary credentials, several signing seconds.
#[test]
fn library_tokens_are_byte_identical_to_botocore() {
    let hosts = [
        "mydb.abc123.us-east-1.rds.amazonaws.com",
        "MyDB.ABC123.US-EAST-1.rds.amazonaws.com",
        "c.cluster-ro-xyz.eu-west-1.rds.amazonaws.com",
        "10.0.0.5",
        "[::1]",
        "[2001:db8::a:1]",
        "db.abc.rds.cn-north-1.amazonaws.com.cn",
    ];
    let users = [
        "app",
        "a+b@c/d",
        "with space",
        "ünïcødé_ユーザー",
        "~-._",
        "user%41",
        "=&?#[]",
    ];
    let ports = [5432, 3306, 443, 1, 65535, 80];
    let regions = ["us-east-1", "eu-west-1", "us-gov-west-1", "cn-north-1"];
    let times = [1_700_000_000u64, 1_798_761_599, 946_684_800];
    let mut cases = Vec::new();
    let mut ours = Vec::new();
    for (i, host) in hosts.iter().enumerate() {
        for (j, user) in users.iter().enumerate() {
            let port = ports[(i + j) % ports.len()];
            let region = regions[(i * 3 + j) % regions.len()];
            let time = times[(i + 2 * j) % times.len()];
            let session = ((i + j) % 2 == 0).then_some(SESSION);
            let parsed = Host::parse(host).unwrap();
            let req = TokenRequest {
                host: &parsed,
                port,
                user,
                region,
            };
            let at = UNIX_EPOCH + Duration::from_secs(time);
            ours.push(generate(&creds(session), &req, at).unwrap());
            let mut case = json!({
                "host": host, "port": port, "user": user, "region": region,
                "access_key": AKID, "secret_key": SECRET, "time": time,
            });
            if let Some(s) = session {
                case["session_token"] = json!(s);
            }
            cases.push(case);
        }
    }
    let theirs = oracle(&cases);
    for ((case, ours), theirs) in cases.iter().zip(&ours).zip(&theirs) {
        assert_eq!(ours, theirs, "case {case}");
    }
    assert!(theirs.iter().any(|t| t.contains("X-Amz-Security-Token=")));
    assert!(theirs.iter().any(|t| t.starts_with("[::1]:")));
}

/// The binary, compared at the second it signed (from its X-Amz-Date).
fn assert_binary_matches_oracle(
    run: &Run,
    host: &str,
    port: u16,
    user: &str,
    region: &str,
    session: Option<&str>,
) {
    run.assert_code(0);
    assert!(
        run.stdout.ends_with('\n') && run.stdout.lines().count() == 1,
        "stdout: {:?}",
        run.stdout
    );
    let token = run.stdout.trim_end_matches('\n');
    let amz_date = token
        .split("X-Amz-Date=")
        .nth(1)
        .unwrap()
        .split('&')
        .next()
        .unwrap();
    let mut case = json!({
        "host": host, "port": port, "user": user, "region": region,
        "access_key": AKID, "secret_key": SECRET, "amz_date": amz_date,
    });
    if let Some(s) = session {
        case["session_token"] = json!(s);
    }
    assert_eq!(token, oracle(&[case])[0]);
}

fn env_creds(session: bool) -> Vec<(&'static str, &'static str)> {
    let mut v = vec![
        ("AWS_ACCESS_KEY_ID", AKID),
        ("AWS_SECRET_ACCESS_KEY", SECRET),
    ];
    if session {
        v.push(("AWS_SESSION_TOKEN", SESSION));
    }
    v
}

#[test]
fn binary_with_env_credentials_matches_botocore() {
    let env = TestEnv::new();
    let host = "MyDB.abc123.eu-central-1.rds.amazonaws.com";
    let run = env.run_with(
        &["token", "-h", host, "-P", "5432", "-u", "a+b@c/d"],
        &env_creds(false),
    );
    assert_binary_matches_oracle(&run, host, 5432, "a+b@c/d", "eu-central-1", None);
    assert!(run.stderr.is_empty(), "{}", run.stderr);

    // AWS CLI spellings, session token, explicit region for an IP address.
    let run = env.run_with(
        &[
            "token",
            "--hostname",
            "10.1.2.3",
            "--port",
            "3306",
            "--username",
            "app user",
            "--region",
            "ap-south-1",
        ],
        &env_creds(true),
    );
    assert_binary_matches_oracle(
        &run,
        "10.1.2.3",
        3306,
        "app user",
        "ap-south-1",
        Some(SESSION),
    );
}

#[test]
fn url_forms_and_default_ports() {
    let env = TestEnv::new();
    let creds = env_creds(false);
    let host = "db.abc.us-west-2.rds.amazonaws.com";
    let run = env.run_with(&["token", &format!("postgres://app@{host}")], &creds);
    assert_binary_matches_oracle(&run, host, 5432, "app", "us-west-2", None);
    let run = env.run_with(&["token", &format!("mysql://a%2Bb@{host}:13306")], &creds);
    assert_binary_matches_oracle(&run, host, 13306, "a+b", "us-west-2", None);
    let run = env.run_with(
        &["token", "--engine", "mysql", "-h", host, "-u", "app"],
        &creds,
    );
    assert_binary_matches_oracle(&run, host, 3306, "app", "us-west-2", None);
    let run = env.run_with(
        &[
            "token",
            "mysql://[fd00::7]:3306",
            "-u",
            "app",
            "--region",
            "eu-west-3",
        ],
        &creds,
    );
    assert_binary_matches_oracle(&run, "[fd00::7]", 3306, "app", "eu-west-3", None);
}

#[test]
fn json_output_has_the_documented_fields() {
    let env = TestEnv::new();
    let run = env.run_with(
        &[
            "--output",
            "json",
            "token",
            "-h",
            "db.x.eu-north-1.rds.amazonaws.com",
            "-P",
            "5432",
            "-u",
            "app",
        ],
        &env_creds(false),
    );
    run.assert_code(0);
    let j = run.json();
    assert_eq!(j["host"], "db.x.eu-north-1.rds.amazonaws.com");
    assert_eq!(j["port"], 5432);
    assert_eq!(j["user"], "app");
    assert_eq!(j["region"], "eu-north-1");
    let issued = humantime::parse_rfc3339(j["issued_at"].as_str().unwrap()).unwrap();
    let expires = humantime::parse_rfc3339(j["expires_at"].as_str().unwrap()).unwrap();
    assert_eq!(
        expires.duration_since(issued).unwrap(),
        Duration::from_mins(15)
    );
    assert!(
        j["token"]
            .as_str()
            .unwrap()
            .starts_with("db.x.eu-north-1.rds.amazonaws.com:5432/?Action=connect&DBUser=app&")
    );
}

#[test]
fn region_mismatch_warns_and_signs_for_the_endpoint() {
    let env = TestEnv::new();
    let mut vars = env_creds(false);
    vars.push(("AWS_REGION", "eu-west-2"));
    let host = "db.x.eu-west-1.rds.amazonaws.com";
    let run = env.run_with(&["token", "-h", host, "-P", "5432", "-u", "app"], &vars);
    assert_binary_matches_oracle(&run, host, 5432, "app", "eu-west-1", None);
    assert!(
        run.stderr
            .starts_with("warning: AWS_REGION (eu-west-2) differs"),
        "{}",
        run.stderr
    );

    // A non-RDS name takes the configured region, without a warning.
    let run = env.run_with(
        &["token", "-h", "db.internal", "-P", "5432", "-u", "app"],
        &vars,
    );
    assert_binary_matches_oracle(&run, "db.internal", 5432, "app", "eu-west-2", None);
    assert!(run.stderr.is_empty(), "{}", run.stderr);
}

#[test]
fn no_region_anywhere_is_exit_3_never_us_east_1() {
    let env = TestEnv::new();
    let run = env.run_with(
        &["token", "-h", "10.0.0.1", "-P", "5432", "-u", "app"],
        &env_creds(false),
    );
    run.assert_code(3);
    assert!(run.stdout.is_empty());
    assert!(
        run.stderr.starts_with("error: no AWS region"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("hint: pass --region"), "{}", run.stderr);
}

/// A shared credentials file and config file with profiles.
fn write_aws_files(env: &TestEnv) -> Vec<(String, String)> {
    let dir = env.root.path().join("aws");
    std::fs::create_dir_all(&dir).unwrap();
    let credentials = dir.join("credentials");
    std::fs::write(
        &credentials,
        format!(
            "[default]\naws_access_key_id = AKIDDEFAULT\naws_secret_access_key = defaultsecret\n\n\
             [temp]\naws_access_key_id = {AKID}\naws_secret_access_key = {SECRET}\naws_session_token = {SESSION}\n"
        ),
    )
    .unwrap();
    let config = dir.join("config");
    std::fs::write(
        &config,
        "[default]\nregion = sa-east-1\n\n[profile temp]\nregion = ap-northeast-2\n",
    )
    .unwrap();
    vec![
        (
            "AWS_SHARED_CREDENTIALS_FILE".into(),
            credentials.display().to_string(),
        ),
        ("AWS_CONFIG_FILE".into(), config.display().to_string()),
        // Never reach a real instance metadata service from tests.
        (
            "AWS_EC2_METADATA_SERVICE_ENDPOINT".into(),
            "http://127.0.0.1:9".into(),
        ),
    ]
}

fn run_vars(env: &TestEnv, args: &[&str], vars: &[(String, String)]) -> Run {
    let pairs: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    env.run_with(args, &pairs)
}

#[test]
fn profiles_from_shared_files() {
    let env = TestEnv::new();
    let vars = write_aws_files(&env);
    // --profile with a session token; the region comes from that profile.
    let run = run_vars(
        &env,
        &[
            "token",
            "--profile",
            "temp",
            "-h",
            "db.internal",
            "-P",
            "5432",
            "-u",
            "app",
        ],
        &vars,
    );
    assert_binary_matches_oracle(
        &run,
        "db.internal",
        5432,
        "app",
        "ap-northeast-2",
        Some(SESSION),
    );

    // AWS_PROFILE selects the same profile.
    let mut with_profile = vars.clone();
    with_profile.push(("AWS_PROFILE".into(), "temp".into()));
    let run = run_vars(
        &env,
        &["token", "-h", "db.internal", "-P", "5432", "-u", "app"],
        &with_profile,
    );
    assert_binary_matches_oracle(
        &run,
        "db.internal",
        5432,
        "app",
        "ap-northeast-2",
        Some(SESSION),
    );

    // The default profile and its region.
    let run = run_vars(
        &env,
        &["token", "-h", "db.internal", "-P", "5432", "-u", "app"],
        &vars,
    );
    run.assert_code(0);
    assert!(
        run.stdout.contains("X-Amz-Credential=AKIDDEFAULT%2F"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("%2Fsa-east-1%2Frds-db%2F"),
        "{}",
        run.stdout
    );

    let missing = run_vars(
        &env,
        &[
            "token",
            "--profile",
            "nope",
            "-h",
            "db.internal",
            "-P",
            "1",
            "-u",
            "u",
            "--region",
            "us-east-1",
        ],
        &vars,
    );
    missing.assert_code(3);
    assert!(
        missing.stderr.contains("profile \"nope\""),
        "{}",
        missing.stderr
    );
}

#[test]
fn profile_flag_wins_over_environment_credentials() {
    let env = TestEnv::new();
    let vars = write_aws_files(&env);
    // --profile wins over environment credentials, as in the AWS CLI.
    let mut both = vars;
    both.push(("AWS_ACCESS_KEY_ID".into(), "AKIDFROMENV".into()));
    both.push(("AWS_SECRET_ACCESS_KEY".into(), "envsecret".into()));
    let run = run_vars(
        &env,
        &[
            "token",
            "--profile",
            "temp",
            "-h",
            "db.internal",
            "-P",
            "1",
            "-u",
            "u",
        ],
        &both,
    );
    assert!(
        run.stdout.contains(&format!("X-Amz-Credential={AKID}%2F")),
        "{}",
        run.stdout
    );
}

#[test]
fn missing_credentials_fail_with_exit_3_and_the_sources_tried() {
    let env = TestEnv::new();
    // IMDS answers nothing at all: the bounded probe must give up by itself.
    let blackhole = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", blackhole.local_addr().unwrap());
    let run = env.run_with(
        &[
            "token",
            "-h",
            "db.x.us-east-1.rds.amazonaws.com",
            "-P",
            "5432",
            "-u",
            "app",
        ],
        &[("AWS_EC2_METADATA_SERVICE_ENDPOINT", &endpoint)],
    );
    run.assert_code(3);
    assert!(run.stdout.is_empty());
    assert!(
        run.stderr.starts_with("error: no AWS credentials found"),
        "{}",
        run.stderr
    );
    for source in [
        "environment",
        "~/.aws/credentials",
        "web identity",
        "container",
        "IMDS",
    ] {
        assert!(
            run.stderr.contains(source),
            "hint lacks {source}: {}",
            run.stderr
        );
    }
    drop(blackhole);
}

#[test]
fn expiring_credentials_warn_that_the_token_dies_with_them() {
    let env = TestEnv::new();
    let mut vars = write_aws_files(&env);
    let script = env.root.path().join("creds.sh");
    let expiry =
        humantime::format_rfc3339_seconds(std::time::SystemTime::now() + Duration::from_mins(5));
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\necho '{{\"Version\": 1, \"AccessKeyId\": \"{AKID}\", \"SecretAccessKey\": \"{SECRET}\", \
             \"SessionToken\": \"{SESSION}\", \"Expiration\": \"{expiry}\"}}'\n"
        ),
    )
    .unwrap();
    std::os::unix::fs::PermissionsExt::set_mode(
        &mut std::fs::metadata(&script).unwrap().permissions(),
        0o755,
    );
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let config = env.root.path().join("aws/config");
    let mut text = std::fs::read_to_string(&config).unwrap();
    let _ = write!(
        text,
        "
[profile short]
region = us-east-2
credential_process = {}
",
        script.display()
    );
    std::fs::write(&config, text).unwrap();
    vars.push(("AWS_PROFILE".into(), "short".into()));
    let run = run_vars(
        &env,
        &["token", "-h", "db.internal", "-P", "5432", "-u", "app"],
        &vars,
    );
    assert_binary_matches_oracle(&run, "db.internal", 5432, "app", "us-east-2", Some(SESSION));
    assert!(
        run.stderr
            .contains("warning: the AWS credentials expire in"),
        "{}",
        run.stderr
    );
}

#[test]
fn secrets_never_reach_stderr_even_at_trace_level() {
    let env = TestEnv::new();
    let mut vars = env_creds(true);
    vars.push(("AWS_REGION", "us-east-1"));
    let run = env.run_with(
        &[
            "-vvv",
            "token",
            "-h",
            "db.internal",
            "-P",
            "5432",
            "-u",
            "app",
        ],
        &vars,
    );
    run.assert_code(0);
    assert!(!run.stderr.contains(SECRET), "secret key in stderr");
    assert!(
        !run.stderr.contains("FwoGZXIvYXdzEJr"),
        "session token in stderr"
    );
    assert!(!run.stdout.contains(SECRET));
    // A failure path: bad profile, verbose.
    let run = env.run_with(
        &[
            "-vvv",
            "token",
            "--profile",
            "x",
            "-h",
            "h",
            "-P",
            "1",
            "-u",
            "u",
            "--region",
            "us-east-1",
        ],
        &vars,
    );
    assert!(!run.stderr.contains(SECRET) && !run.stderr.contains("FwoGZXIvYXdzEJr"));
}

#[test]
fn bad_input_is_one_line_and_exit_2() {
    let env = TestEnv::new();
    let creds = env_creds(false);
    let cases: &[(&[&str], &str)] = &[
        (
            &["token", "-h", "", "-P", "5432", "-u", "app"],
            "the host is empty",
        ),
        (
            &["token", "-h", "my host", "-P", "5432", "-u", "app"],
            "cannot contain spaces",
        ),
        (
            &["token", "-h", "h", "-P", "0", "-u", "app"],
            "0 is not in 1..=65535",
        ),
        (
            &["token", "-h", "h", "-P", "65536", "-u", "app"],
            "65536 is not in 1..=65535",
        ),
        (&["token", "-h", "h", "-P", "abc", "-u", "app"], "--port"),
        (
            &["token", "-h", "h", "-P", "5432", "-u", ""],
            "user name is empty",
        ),
        (
            &["token", "-h", "h", "-P", "5432"],
            "database user is required",
        ),
        (&["token", "-P", "5432", "-u", "app"], "a host is required"),
        (&["token", "-h", "h", "-u", "app"], "--port is required"),
        (
            &[
                "token",
                "-h",
                "db.x.us-esat-1x.rds.amazonaws.com",
                "-P",
                "1",
                "-u",
                "a",
            ],
            "not a region name",
        ),
        (
            &["token", "-h", "h", "-P", "1", "-u", "a", "--region", "EU"],
            "invalid region \"EU\"",
        ),
        (&["token", "postgres://app:pw@h/db"], "password in the URL"),
        (&["token", "ftp://h"], "unknown scheme"),
        (
            &["token", "postgres://u@h", "-h", "h2"],
            "cannot be used with",
        ),
    ];
    for (args, needle) in cases {
        let run = env.run_with(args, &creds);
        assert_eq!(run.code, 2, "{args:?}: {}", run.stderr);
        assert_eq!(
            run.stderr
                .lines()
                .filter(|l| l.starts_with("error:"))
                .count(),
            1,
            "{args:?}: {}",
            run.stderr
        );
        assert!(
            run.stderr.contains(needle),
            "{args:?}: expected {needle:?} in {}",
            run.stderr
        );
        assert!(run.stdout.is_empty(), "{args:?}");
        assert!(
            !run.stderr.contains("pw@"),
            "password echoed: {}",
            run.stderr
        );
    }
}

#[test]
fn help_documents_the_port_rule_and_h_is_host() {
    let run = TestEnv::new().run(&["token", "--help"]);
    run.assert_code(0);
    assert!(
        run.stdout.contains("The port is part of the signed string"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("-h, --host <HOST>"), "{}", run.stdout);
}

/// A hex digest of `text` by Python's hashlib (`sha1`, `sha256`): the
/// names of the SSO and login token caches.
fn hexdigest(algorithm: &str, text: &str) -> String {
    let out = Command::new(python())
        .args([
            "-c",
            "import hashlib, sys; print(hashlib.new(sys.argv[1], sys.argv[2].encode()).hexdigest())",
            algorithm,
            text,
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// An `sso_session` profile with a cached SSO token: the role credentials
/// come from SSO's `GetRoleCredentials` (a local stand-in here), and the
/// token is signed with them.
#[test]
fn sso_session_profiles_use_the_cached_token() {
    use crate::support::http::{Reply, Server};
    let env = TestEnv::new();
    let body = json!({"roleCredentials": {
        "accessKeyId": AKID, "secretAccessKey": SECRET, "sessionToken": SESSION,
        "expiration": 4_102_444_800_000_u64,
    }});
    let sso = Server::start(Reply::Body {
        body: body.to_string().into_bytes(),
        content_length: true,
    });
    let aws = env.root.path().join("aws");
    std::fs::create_dir_all(&aws).unwrap();
    let config = aws.join("config");
    std::fs::write(
        &config,
        "[profile corp-db]\nsso_session = corp\nsso_account_id = 123456789012\n\
         sso_role_name = DbConnect\nregion = eu-north-1\n\n\
         [sso-session corp]\nsso_start_url = https://corp.awsapps.com/start\nsso_region = eu-north-1\n",
    )
    .unwrap();
    let cache = env.home().join(".aws/sso/cache");
    std::fs::create_dir_all(&cache).unwrap();
    std::fs::write(
        cache.join(format!("{}.json", hexdigest("sha1", "corp"))),
        json!({
            "startUrl": "https://corp.awsapps.com/start", "region": "eu-north-1",
            "accessToken": "cached-sso-access-token", "expiresAt": "2099-01-01T00:00:00Z",
        })
        .to_string(),
    )
    .unwrap();
    let vars = vec![
        ("AWS_CONFIG_FILE".to_string(), config.display().to_string()),
        (
            "AWS_SHARED_CREDENTIALS_FILE".to_string(),
            "/dev/null".to_string(),
        ),
        ("AWS_ENDPOINT_URL_SSO".to_string(), sso.base_url()),
        (
            "AWS_EC2_METADATA_SERVICE_ENDPOINT".to_string(),
            "http://127.0.0.1:9".to_string(),
        ),
    ];
    let run = run_vars(
        &env,
        &[
            "token",
            "--profile",
            "corp-db",
            "-h",
            "db.internal",
            "-P",
            "5432",
            "-u",
            "app",
        ],
        &vars,
    );
    assert_binary_matches_oracle(
        &run,
        "db.internal",
        5432,
        "app",
        "eu-north-1",
        Some(SESSION),
    );
    let requests = sso.requests();
    let asked = requests
        .iter()
        .find(|r| r.path.starts_with("/federation/credentials"))
        .unwrap_or_else(|| panic!("no GetRoleCredentials call: {requests:?}"));
    assert!(asked.path.contains("account_id=123456789012"), "{asked:?}");
    assert!(asked.path.contains("role_name=DbConnect"), "{asked:?}");
    assert_eq!(
        asked
            .headers
            .get("x-amz-sso_bearer_token")
            .map(String::as_str),
        Some("cached-sso-access-token"),
        "{asked:?}"
    );
    // The token is a secret: never printed.
    assert!(!run.stderr.contains("cached-sso-access-token"));
}

/// An `aws login` profile (`login_session`, AWS CLI 2.32+) with a cached,
/// unexpired login token: its credentials sign the token, no network.
#[test]
fn login_session_profiles_use_the_cached_login_token() {
    let env = TestEnv::new();
    let arn = "arn:aws:iam::123456789012:user/Admin";
    let aws = env.root.path().join("aws");
    let cache = aws.join("login-cache");
    std::fs::create_dir_all(&cache).unwrap();
    let config = aws.join("config");
    std::fs::write(
        &config,
        format!("[profile signed-in]\nlogin_session = {arn}\nregion = ap-southeast-2\n"),
    )
    .unwrap();
    let key = Command::new("openssl")
        .args(["ecparam", "-name", "prime256v1", "-genkey", "-noout"])
        .output()
        .unwrap();
    assert!(
        key.status.success(),
        "openssl: {}",
        String::from_utf8_lossy(&key.stderr)
    );
    std::fs::write(
        cache.join(format!("{}.json", hexdigest("sha256", arn))),
        json!({
            "accessToken": {
                "accessKeyId": AKID, "secretAccessKey": SECRET, "sessionToken": SESSION,
                "accountId": "123456789012", "expiresAt": "2099-01-01T00:00:00Z",
            },
            "tokenType": "aws_sigv4",
            "refreshToken": "cached-refresh-token",
            "clientId": "arn:aws:signin:::devtools/same-device",
            "dpopKey": String::from_utf8(key.stdout).unwrap(),
        })
        .to_string(),
    )
    .unwrap();
    let vars = vec![
        ("AWS_CONFIG_FILE".to_string(), config.display().to_string()),
        (
            "AWS_SHARED_CREDENTIALS_FILE".to_string(),
            "/dev/null".to_string(),
        ),
        (
            "AWS_LOGIN_CACHE_DIRECTORY".to_string(),
            cache.display().to_string(),
        ),
        // Nothing may be reached: a refresh or IMDS would fail here.
        (
            "AWS_ENDPOINT_URL".to_string(),
            "http://127.0.0.1:9".to_string(),
        ),
        (
            "AWS_EC2_METADATA_SERVICE_ENDPOINT".to_string(),
            "http://127.0.0.1:9".to_string(),
        ),
    ];
    let run = run_vars(
        &env,
        &[
            "token",
            "--profile",
            "signed-in",
            "-h",
            "db.internal",
            "-P",
            "3306",
            "-u",
            "app",
        ],
        &vars,
    );
    assert_binary_matches_oracle(
        &run,
        "db.internal",
        3306,
        "app",
        "ap-southeast-2",
        Some(SESSION),
    );
    assert!(!run.stderr.contains("cached-refresh-token"));
}

/// A region newer than rdsconn's table is accepted when asked for, by flag
/// or environment, and the token is signed for it; `AWS_REGION` with a typo
/// is refused as --region is.
#[test]
fn unknown_regions_need_allow_unknown_region() {
    let env = TestEnv::new();
    let creds = [
        ("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE"),
        (
            "AWS_SECRET_ACCESS_KEY",
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        ),
    ];
    let args = [
        "token",
        "-h",
        "h",
        "-P",
        "5432",
        "-u",
        "a",
        "--region",
        "xx-newplace-1",
    ];
    let run = env.run_with(&args, &creds);
    run.assert_code(2);
    assert!(
        run.stderr.contains("RDSCONN_ALLOW_UNKNOWN_REGION"),
        "{}",
        run.stderr
    );
    let mut allowed = args.to_vec();
    allowed.push("--allow-unknown-region");
    let run = env.run_with(&allowed, &creds);
    run.assert_code(0);
    assert!(
        run.stdout.contains("%2Fxx-newplace-1%2Frds-db%2F"),
        "{}",
        run.stdout
    );
    let mut with_env = creds.to_vec();
    with_env.push(("RDSCONN_ALLOW_UNKNOWN_REGION", "1"));
    env.run_with(&args, &with_env).assert_code(0);

    // A typo signs for a region that does not exist: did you mean.
    for (args, needle) in [
        (
            &["--region", "eu-wset-1"][..],
            "unknown region \"eu-wset-1\" from --region: did you mean eu-west-1?",
        ),
        (&["--region", "xx-nowhere-9"][..], "--allow-unknown-region"),
    ] {
        let mut all = vec!["token", "-h", "h", "-P", "1", "-u", "a"];
        all.extend_from_slice(args);
        let run = env.run_with(&all, &creds);
        run.assert_code(2);
        assert!(run.stderr.contains(needle), "{}", run.stderr);
    }
    let run = env.run_with(
        &[
            "token",
            "-h",
            "db.x.us-esat-1.rds.amazonaws.com",
            "-P",
            "1",
            "-u",
            "a",
        ],
        &creds,
    );
    run.assert_code(2);
    assert!(
        run.stderr.contains("did you mean us-east-1?"),
        "{}",
        run.stderr
    );
    let mut typo = creds.to_vec();
    typo.push(("AWS_REGION", "us-wset-2"));
    let run = env.run_with(&["token", "-h", "h", "-P", "5432", "-u", "a"], &typo);
    run.assert_code(2);
    assert!(
        run.stderr
            .contains("unknown region \"us-wset-2\" from AWS_REGION: did you mean us-west-2?"),
        "{}",
        run.stderr
    );
}
