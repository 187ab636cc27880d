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

/// `rdsconn ARGS` with `vars`; stderr and stdout together.
fn run(env: &TestEnv, args: &[&str], vars: &[(&str, &str)]) -> String {
    let r = env.run_with(args, vars);
    format!("{}{}", r.stderr, r.stdout)
}

fn creds() -> Vec<(&'static str, &'static str)> {
    vec![
        ("AWS_ACCESS_KEY_ID", IAM_ACCESS_KEY),
        ("AWS_SECRET_ACCESS_KEY", IAM_SECRET_KEY),
    ]
}

/// The output of the run that makes the message with this key.
fn scenario(env: &TestEnv, key: &str) -> String {
    let ca = ca();
    let pw = [("PGPASSWORD", APP_PASSWORD), ("MYSQL_PWD", APP_PASSWORD)];
    match key {
        "via 127.0.0.1" | "not valid for" => run(
            env,
            &[
                "--ca-bundle",
                &ca,
                "postgres",
                "-h",
                ENDPOINT,
                "-U",
                "app",
                "--via",
                &pg_via(Variant::WrongName),
                "-c",
                "SELECT 1",
            ],
            &pw,
        ),
        "not trusted" => run(
            env,
            &[
                "postgres",
                "-h",
                ENDPOINT,
                "-U",
                "app",
                "--via",
                &pg_via(Variant::OtherCa),
                "-c",
                "SELECT 1",
            ],
            &pw,
        ),
        "expired" => run(
            env,
            &[
                "--ca-bundle",
                &ca,
                "postgres",
                "-h",
                ENDPOINT,
                "-U",
                "app",
                "--via",
                &pg_via(Variant::Expired),
                "-c",
                "SELECT 1",
            ],
            &pw,
        ),
        "verify-ca (chain only)" => run(
            env,
            &[
                "postgres",
                "-h",
                "p.proxy-abc123.us-east-1.rds.amazonaws.com",
                "-U",
                "app",
                "--tls",
                "verify-ca",
                "-c",
                "SELECT 1",
            ],
            &pw,
        ),
        "28P01" => run(
            env,
            &[
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
                &pg_via(Variant::Good),
                "-c",
                "SELECT 1",
            ],
            &[("PGPASSWORD", "wrong-password")],
        ),
        "1045" => {
            let via = format!("127.0.0.1:{}", maria::server(Variant::Good).port);
            run(
                env,
                &[
                    "--ca-bundle",
                    &ca,
                    "mysql",
                    "-h",
                    ENDPOINT,
                    "-u",
                    "app",
                    "--via",
                    &via,
                    "-e",
                    "SELECT 1",
                ],
                &[("MYSQL_PWD", "wrong-password")],
            )
        }
        "no AWS region" => run(
            env,
            &["token", "-h", "10.0.0.5", "-P", "5432", "-u", "app"],
            &creds(),
        ),
        "unknown region" => run(
            env,
            &[
                "token",
                "-h",
                "h",
                "-P",
                "5432",
                "-u",
                "app",
                "--region",
                "eu-wset-1",
            ],
            &creds(),
        ),
        "no AWS credentials" => run(
            env,
            &["token", "-h", "h", "-P", "5432", "-u", "app"],
            &[
                ("AWS_REGION", "us-east-1"),
                ("AWS_EC2_METADATA_DISABLED", "true"),
            ],
        ),
        "--port is required" => run(env, &["token", "-h", "h", "-u", "app"], &creds()),
        "differs from" => {
            let mut vars = creds();
            vars.push(("AWS_REGION", "eu-west-1"));
            run(
                env,
                &["token", "-h", ENDPOINT, "-P", "5432", "-u", "app"],
                &vars,
            )
        }
        "downloading" | "error sending request" => run(
            env,
            &["ca", "fetch"],
            &[("RDSCONN_CA_BASE_URL", "http://127.0.0.1:1")],
        ),
        "downloaded CA bundle" => {
            let server = http::Server::start(http::Reply::Body {
                body: b"<html>captive portal</html>".to_vec(),
                content_length: true,
            });
            run(
                env,
                &["ca", "fetch"],
                &[("RDSCONN_CA_BASE_URL", &server.base_url())],
            )
        }
        "global-bundle.pem is not usable" => {
            let path = env.run(&["ca", "path"]);
            path.assert_code(0);
            let file = path.stdout.trim_end();
            let pem = std::fs::read_to_string(file).unwrap();
            std::fs::write(file, &pem[..pem.len() / 2]).unwrap();
            run(env, &["ca", "show"], &[])
        }
        "RDSCONN_CA_BASE_URL" => run(
            env,
            &["ca", "fetch"],
            &[("RDSCONN_CA_BASE_URL", "http://example.com")],
        ),
        "Host key verification failed" | "Permission denied" => {
            let ssh = if key == "Permission denied" {
                sshd().client(env, "other_key", true)
            } else {
                sshd().client(env, "user_key", false)
            };
            let mut cmd = env.cmd(&[
                "--ca-bundle",
                &ca,
                "postgres",
                "-h",
                ENDPOINT,
                "-U",
                "app",
                "--via",
                &sshd().url(),
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
