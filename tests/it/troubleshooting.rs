//! The README's Troubleshooting section quotes what rdsconn prints: each
//! quoted message (`…` for the part that varies) is produced here by a
//! real run and found, part by part, in its output. A message that drifts
//! from the code, or a new entry without a scenario, fails.

use crate::support::pki::ENDPOINT;
use crate::support::server::{APP_PASSWORD, IAM_ACCESS_KEY, IAM_SECRET_KEY, Variant, pki};
use crate::support::sshd::sshd;
use crate::support::{Run, TestEnv, http, maria, pg};

/// The bold code spans of the Troubleshooting section.
fn quoted() -> Vec<String> {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let section = readme
        .split("## Troubleshooting\n")
        .nth(1)
        .and_then(|s| s.split("\n## ").next())
        .unwrap();
    let mut out = Vec::new();
    for bold in section.split("**").skip(1).step_by(2) {
        if let Some(code) = bold.strip_prefix('`').and_then(|b| b.strip_suffix('`')) {
            out.push(code.to_string());
        }
    }
    out
}

/// Whether `text` holds the parts of `message` between its `…`, in order.
fn matches(message: &str, text: &str) -> bool {
    let mut rest = text;
    for part in message.split('…').filter(|p| !p.is_empty()) {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    true
}

fn ca() -> String {
    pki().ca_file.display().to_string()
}

fn pg_via(variant: Variant) -> String {
    format!("127.0.0.1:{}", pg::server(variant).port)
}

/// `rdsconn ARGS` (whitespace-separated, `{ca}` and `{via:VARIANT}`
/// filled in) with `vars`; stderr and stdout together.
fn run(env: &TestEnv, args: &str, vars: &[(&str, &str)]) -> String {
    let ca = ca();
    let filled = args
        .replace("{ca}", &ca)
        .replace("{endpoint}", ENDPOINT)
        .replace("{via:WrongName}", &pg_via(Variant::WrongName))
        .replace("{via:OtherCa}", &pg_via(Variant::OtherCa))
        .replace("{via:Expired}", &pg_via(Variant::Expired))
        .replace("{via:Good}", &pg_via(Variant::Good))
        .replace(
            "{via:Maria}",
            &format!("127.0.0.1:{}", maria::server(Variant::Good).port),
        );
    let args: Vec<&str> = filled.split_whitespace().collect();
    let r = env.run_with(&args, vars);
    format!("{}{}", r.stderr, r.stdout)
}

const CREDS: [(&str, &str); 2] = [
    ("AWS_ACCESS_KEY_ID", IAM_ACCESS_KEY),
    ("AWS_SECRET_ACCESS_KEY", IAM_SECRET_KEY),
];
const PW: [(&str, &str); 2] = [("PGPASSWORD", APP_PASSWORD), ("MYSQL_PWD", APP_PASSWORD)];
const WRONG: [(&str, &str); 2] = [
    ("PGPASSWORD", "wrong-password"),
    ("MYSQL_PWD", "wrong-password"),
];

/// Environment variables of a scenario.
type Vars = &'static [(&'static str, &'static str)];

/// Scenarios that are one command line: (key, arguments, variables).
const SIMPLE: &[(&str, &str, Vars)] = &[
    (
        "via 127.0.0.1",
        "--ca-bundle {ca} psql -h {endpoint} -U app --via {via:WrongName} -c SELECT",
        &PW,
    ),
    (
        "not valid for",
        "--ca-bundle {ca} psql -h {endpoint} -U app --via {via:WrongName} -c SELECT",
        &PW,
    ),
    (
        "not trusted",
        "psql -h {endpoint} -U app --via {via:OtherCa} -c SELECT",
        &PW,
    ),
    (
        "expired",
        "--ca-bundle {ca} psql -h {endpoint} -U app --via {via:Expired} -c SELECT",
        &PW,
    ),
    (
        "verify-ca (chain only)",
        "psql -h p.proxy-abc123.us-east-1.rds.amazonaws.com -U app --tls verify-ca -c SELECT",
        &PW,
    ),
    (
        "28P01",
        "--ca-bundle {ca} psql -h {endpoint} -U app -d appdb --via {via:Good} -c SELECT",
        &WRONG,
    ),
    (
        "1045",
        "--ca-bundle {ca} mysql -h {endpoint} -u app --via {via:Maria} -e SELECT",
        &WRONG,
    ),
    ("no AWS region", "token -h 10.0.0.5 -P 5432 -u app", &CREDS),
    (
        "unknown region",
        "token -h h -P 5432 -u app --region eu-wset-1",
        &CREDS,
    ),
    (
        "no AWS credentials",
        "token -h h -P 5432 -u app",
        &[
            ("AWS_REGION", "us-east-1"),
            ("AWS_EC2_METADATA_DISABLED", "true"),
        ],
    ),
    ("--port is required", "token -h h -u app", &CREDS),
    (
        "differs from",
        "token -h {endpoint} -P 5432 -u app",
        &[CREDS[0], CREDS[1], ("AWS_REGION", "eu-west-1")],
    ),
    (
        "error sending request",
        "ca fetch",
        &[("RDSCONN_CA_BASE_URL", "http://127.0.0.1:1")],
    ),
    (
        "downloading",
        "ca fetch",
        &[("RDSCONN_CA_BASE_URL", "http://127.0.0.1:1")],
    ),
    (
        "RDSCONN_CA_BASE_URL",
        "ca fetch",
        &[("RDSCONN_CA_BASE_URL", "http://example.com")],
    ),
];

/// The output of the run that makes the message with this key.
fn scenario(env: &TestEnv, key: &str) -> String {
    if let Some((_, args, vars)) = SIMPLE.iter().find(|(k, _, _)| *k == key) {
        return run(env, args, vars);
    }
    match key {
        "downloaded CA bundle" => {
            let server = http::Server::start(http::Reply::Body {
                body: b"<html>captive portal</html>".to_vec(),
                content_length: true,
            });
            run(
                env,
                "ca fetch",
                &[("RDSCONN_CA_BASE_URL", &server.base_url())],
            )
        }
        "global-bundle.pem is not usable" => {
            let path = env.run(&["ca", "path"]);
            path.assert_code(0);
            let file = path.stdout.trim_end();
            let pem = std::fs::read_to_string(file).unwrap();
            std::fs::write(file, &pem[..pem.len() / 2]).unwrap();
            run(env, "ca show", &[])
        }
        "Host key verification failed" | "Permission denied" => {
            let ssh = if key == "Permission denied" {
                sshd().client(env, "other_key", true)
            } else {
                sshd().client(env, "user_key", false)
            };
            let ca = ca();
            let via = sshd().url();
            let mut cmd = env.cmd(&[
                "--ca-bundle",
                &ca,
                "postgres",
                "-h",
                ENDPOINT,
                "-U",
                "app",
                "--via",
                &via,
                "-c",
                "SELECT 1",
            ]);
            cmd.env("RDSCONN_SSH_COMMAND", ssh)
                .env("PGPASSWORD", APP_PASSWORD);
            let r = Run::from(cmd.output().unwrap());
            format!("{}{}", r.stderr, r.stdout)
        }
        other => panic!("no scenario for {other:?}"),
    }
}

/// Which scenario makes a quoted message: the first key it contains.
const KEYS: &[&str] = &[
    "via 127.0.0.1",
    "not valid for",
    "not trusted",
    "expired",
    "verify-ca (chain only)",
    "28P01",
    "1045",
    "no AWS region",
    "unknown region",
    "no AWS credentials",
    "--port is required",
    "differs from",
    "error sending request",
    "downloaded CA bundle",
    "downloading",
    "global-bundle.pem is not usable",
    "RDSCONN_CA_BASE_URL",
    "Host key verification failed",
    "Permission denied",
];

#[test]
fn troubleshooting_quotes_the_messages_rdsconn_prints() {
    let messages = quoted();
    assert!(messages.len() >= 15, "{messages:#?}");
    for message in messages {
        let key = KEYS
            .iter()
            .find(|k| message.contains(*k))
            .unwrap_or_else(|| panic!("no scenario makes {message:?}: add one"));
        let env = TestEnv::new();
        let out = scenario(&env, key);
        assert!(
            matches(&message, &out),
            "README quotes {message:?}; rdsconn printed:\n{out}"
        );
    }
}
