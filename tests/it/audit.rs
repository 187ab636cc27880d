//! `rdsconn audit` against moto, with what moto lacks
//! (`DescribeCertificates`, `DescribePendingMaintenanceActions`,
//! `DescribeDBEngineVersions`) answered by `tests/oracle/rds_stub.py`: a
//! fleet of 300 databases with every finding kind, each detected with its
//! evidence and fix; healthy databases without findings; the bulk read
//! through the API's pages; exit codes of `--fail-on`.

use serde_json::{Value, json};

use crate::rds::EndpointsStub;
use crate::support::server::{IAM_ACCESS_KEY, IAM_SECRET_KEY};
use crate::support::{Run, TestEnv, moto};

const REGION: &str = "sa-east-1";
const BULK: usize = 289;

/// The fleet (made once) and its stub.
fn fleet() -> &'static (Value, EndpointsStub) {
    static FLEET: std::sync::OnceLock<(Value, EndpointsStub)> = std::sync::OnceLock::new();
    FLEET.get_or_init(|| {
        let made = moto::setup(
            REGION,
            &json!([
                {"parameter_group": "pg-notls", "family": "postgres14",
                 "parameters": {"rds.force_ssl": "0", "ssl_min_protocol_version": "TLSv1"}},
                {"parameter_group": "my-tls", "family": "mysql8.0", "parameters": {"require_secure_transport": "1"}},
                {"parameter_group": "am-notls", "family": "aurora-mysql8.0", "cluster": true,
                 "parameters": {"require_secure_transport": "OFF"}},
                {"instance": "au-pg14-notls", "engine": "postgres", "version": "14.10", "parameter_group": "pg-notls",
                 "public": true, "ca": "rds-ca-2019"},
                {"instance": "au-pg16", "engine": "postgres", "version": "16.1", "iam": true,
                 "managed_secret": true, "secret_rotation": true, "ca": "rds-ca-rsa2048-g1",
                 "public": false},
                {"instance": "au-pg14-default", "engine": "postgres", "version": "14.10", "iam": true,
                 "managed_secret": true, "secret_rotation": true, "ca": "rds-ca-rsa2048-g1"},
                {"instance": "au-mysql", "engine": "mysql", "parameter_group": "my-tls", "iam": true,
                 "managed_secret": true, "ca": "rds-ca-soon"},
                {"instance": "au-mysql57", "engine": "mysql", "version": "5.7.44", "iam": true,
                 "managed_secret": true, "secret_rotation": true, "ca": "rds-ca-rsa2048-g1"},
                {"cluster": "au-am", "engine": "aurora-mysql", "parameter_group": "am-notls", "iam": true},
                {"proxy": "au-proxy", "engine_family": "POSTGRESQL", "require_tls": false},
                // Their engine defaults from the API (the stub) force TLS.
                {"instance": "au-mysql84", "engine": "mysql", "version": "8.4.3", "iam": true,
                 "managed_secret": true, "secret_rotation": true, "ca": "rds-ca-rsa2048-g1"},
                {"parameter_group": "apg16-plain", "family": "aurora-postgresql16", "cluster": true,
                 "parameters": {"log_statement": "ddl"}},
                {"cluster": "au-apg16", "engine": "aurora-postgresql", "version": "16.1", "iam": true,
                 "parameter_group": "apg16-plain"},
                // moto names this one's group default.aurora8.0, which it
                // never made: a group that cannot be read.
                {"cluster": "au-apg-nogroup", "engine": "aurora-postgresql", "version": "16.1",
                 "iam": true},
                // Reached live through --via (maria::lax_server).
                {"instance": "au-lax", "engine": "mysql", "iam": false},
                {"instances": "au-bulk", "count": BULK, "engine": "mysql"},
            ]),
        );
        let soon = humantime::format_rfc3339_seconds(
            std::time::SystemTime::now() + std::time::Duration::from_hours(240),
        )
        .to_string();
        let stub = EndpointsStub::start(&json!({
            "certificates": {
                "rds-ca-2019": "2024-08-22T17:08:50Z",
                "rds-ca-rsa2048-g1": "2061-05-19T19:06:26Z",
                "rds-ca-soon": soon,
            },
            "pending": {
                made["au-pg16"]["arn"].as_str().unwrap(): ["ca-certificate-rotation"],
                made["au-mysql"]["arn"].as_str().unwrap(): ["system-update"],
            },
            // moto's default MySQL is 5.6.21; PostgreSQL 16.1 is unknown
            // to this API (nothing said about a restart; rdsconn's own
            // knowledge of its defaults applies).
            "engine_versions": {
                "postgres 14.10": {"rotation_without_restart": true, "family": "postgres14"},
                "mysql 5.6.21": {"rotation_without_restart": false, "family": "mysql5.6"},
                "mysql 8.4.3": {"family": "mysql8.4"},
                "aurora-postgresql 16.1": {"family": "aurora-postgresql16"},
            },
            // The stub answers 2 parameters a page: the TLS ones are on
            // later pages.
            "engine_defaults": {
                "postgres14": {"rds.force_ssl": "0", "ssl_min_protocol_version": "TLSv1.2",
                               "array_nulls": "1", "autovacuum": "1", "work_mem": "4096"},
                "mysql8.4": {"require_secure_transport": "1", "tls_version": "TLSv1.2,TLSv1.3",
                             "autocommit": "1", "back_log": "80"},
            },
            "cluster_engine_defaults": {
                "aurora-postgresql16": {"apg_a": "x", "apg_b": "y", "rds.force_ssl": "1"},
            },
        }));
        (made, stub)
    })
}

fn audit(args: &[&str]) -> Run {
    audit_with(args, &[])
}

/// As [`audit`], with these environment variables too.
fn audit_with(args: &[&str], vars: &[(&str, &str)]) -> Run {
    let (_, stub) = fleet();
    let env = TestEnv::new();
    let mut all = vec!["audit"];
    all.extend_from_slice(args);
    let mut cmd = env.cmd(&all);
    cmd.env("AWS_ENDPOINT_URL_RDS", &stub.url)
        .env("AWS_ENDPOINT_URL_SECRETS_MANAGER", moto::url())
        .env("AWS_ACCESS_KEY_ID", IAM_ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", IAM_SECRET_KEY)
        .env("AWS_REGION", REGION);
    // The caller's variables win.
    cmd.envs(vars.iter().copied());
    Run::from(cmd.output().unwrap())
}

/// The findings of `database`, as (check, severity).
fn of(json: &Value, database: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = json["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["database"] == database)
        .map(|f| {
            assert!(
                f["fix"].as_str().unwrap().starts_with("aws rds ")
                    || f["fix"]
                        .as_str()
                        .unwrap()
                        .starts_with("aws secretsmanager ")
                    || f["fix"]
                        .as_str()
                        .unwrap()
                        .starts_with("a default group cannot change"),
                "{f}"
            );
            (
                f["check"].as_str().unwrap().to_string(),
                f["severity"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    out.sort();
    out
}

fn finding<'a>(json: &'a Value, database: &str, check: &str) -> &'a Value {
    json["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["database"] == database && f["check"] == check)
        .unwrap_or_else(|| panic!("no {check} for {database}"))
}

fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = items
        .iter()
        .map(|(a, b)| ((*a).to_string(), (*b).to_string()))
        .collect();
    v.sort();
    v
}

#[test]
fn every_finding_kind_is_detected_with_evidence_and_fix() {
    let run = audit(&["--output", "json"]);
    run.assert_code(0);
    crate::support::schema::assert_valid("audit", &run.stdout);
    let json = run.json();
    assert_eq!(json["databases"], BULK + 11, "{}", run.stderr);
    assert_eq!(
        of(&json, "au-pg14-notls"),
        pairs(&[
            ("ca-expired", "critical"),
            ("iam-auth-off", "medium"),
            ("master-password-not-managed", "low"),
            ("publicly-accessible", "high"),
            ("tls-min-version", "medium"),
            ("tls-not-enforced", "high"),
        ])
    );
    let ca = finding(&json, "au-pg14-notls", "ca-expired");
    assert!(
        ca["evidence"]
            .as_str()
            .unwrap()
            .contains("rds-ca-2019 expired on 2024-08-22"),
        "{ca}"
    );
    // PostgreSQL 16's default forces TLS; only the pending rotation is left.
    assert_eq!(
        of(&json, "au-pg16"),
        pairs(&[("ca-rotation-pending", "medium")])
    );
    let arn = fleet().0["au-pg16"]["arn"].as_str().unwrap().to_string();
    assert!(
        finding(&json, "au-pg16", "ca-rotation-pending")["fix"]
            .as_str()
            .unwrap()
            .contains(&format!(
                "--resource-identifier {arn} --apply-action ca-certificate-rotation"
            ))
    );
    // Required TLS in its group; moto's default MySQL is a 5.x, whose
    // default lowest version is TLS 1.0. Its managed secret does not
    // rotate (the others' were turned on).
    assert_eq!(
        of(&json, "au-mysql"),
        pairs(&[
            ("ca-expiring", "high"),
            ("master-secret-rotation-off", "low"),
            ("tls-min-version", "medium")
        ])
    );
    assert_eq!(
        of(&json, "au-am"),
        pairs(&[
            ("master-password-not-managed", "low"),
            ("tls-not-enforced", "high")
        ])
    );
    assert_eq!(
        of(&json, "au-proxy"),
        pairs(&[("proxy-tls-not-required", "high")])
    );
    // Every page of instances was read: each bulk MySQL instance is there.
    for i in [0, BULK / 2, BULK - 1] {
        let name = format!("au-bulk-{i:04}");
        assert!(
            of(&json, &name).contains(&("tls-not-enforced".to_string(), "high".to_string())),
            "{name}"
        );
    }
    assert_eq!(json["summary"]["critical"], 1, "{}", json["summary"]);
}

#[test]
fn ca_rotation_restarts_and_master_secret_rotation_come_from_the_api() {
    let run = audit(&["--output", "json"]);
    run.assert_code(0);
    let json = run.json();
    let ca = finding(&json, "au-pg14-notls", "ca-expired");
    // DescribeDBEngineVersions: PostgreSQL 14.10 rotates without a
    // restart, MySQL 5.6.21 does not, 16.1 is not said.
    assert!(
        ca["evidence"]
            .as_str()
            .unwrap()
            .ends_with("; postgres 14.10 rotates it without a restart"),
        "{ca}"
    );
    let expiring = finding(&json, "au-mysql", "ca-expiring");
    assert!(
        expiring["evidence"]
            .as_str()
            .unwrap()
            .ends_with("; rotating restarts the instance (mysql 5.6.21 cannot rotate without one)"),
        "{expiring}"
    );
    let pending = finding(&json, "au-pg16", "ca-rotation-pending");
    assert!(
        !pending["evidence"].as_str().unwrap().contains("restart"),
        "{pending}"
    );
    // moto's default CA is not one the stub's DescribeCertificates lists.
    let unknown = finding(&json, "au-bulk-0000", "ca-unknown");
    assert_eq!(unknown["severity"], "medium");
    assert!(
        unknown["evidence"]
            .as_str()
            .unwrap()
            .contains("is not one DescribeCertificates lists (retired)"),
        "{unknown}"
    );
    // moto's default MySQL (5.6.21) is older than IAM authentication.
    assert!(
        finding(&json, "au-bulk-0000", "iam-auth-off")["evidence"]
            .as_str()
            .unwrap()
            .ends_with("; mysql 5.6.21 cannot have it: upgrade to 5.6.34 or later first")
    );
    let rotation = finding(&json, "au-mysql", "master-secret-rotation-off");
    let secret = rotation["evidence"]
        .as_str()
        .unwrap()
        .split(' ')
        .find(|w| w.starts_with("arn:aws:secretsmanager:"))
        .unwrap_or_else(|| panic!("{rotation}"));
    assert!(
        rotation["evidence"]
            .as_str()
            .unwrap()
            .ends_with("is off (never rotated)"),
        "{rotation}"
    );
    assert_eq!(
        rotation["fix"],
        format!(
            "aws secretsmanager rotate-secret --secret-id {secret} --rotation-rules '{{\"ScheduleExpression\":\"rate(7 days)\"}}' --region {REGION}"
        )
    );
}

#[test]
fn tls_enforcement_and_versions_follow_parameter_groups_and_engine_defaults() {
    let run = audit(&["--output", "json"]);
    run.assert_code(0);
    let json = run.json();
    let min = finding(&json, "au-pg14-notls", "tls-min-version");
    assert!(
        min["evidence"]
            .as_str()
            .unwrap()
            .starts_with("ssl_min_protocol_version lets TLSv1 in"),
        "{min}"
    );
    // MySQL 5.7's default lets TLS 1.0 and 1.1 in, and does not require TLS.
    assert_eq!(
        of(&json, "au-mysql57"),
        pairs(&[("tls-min-version", "medium"), ("tls-not-enforced", "high")])
    );
    let tls = finding(&json, "au-pg14-notls", "tls-not-enforced");
    assert!(
        tls["evidence"]
            .as_str()
            .unwrap()
            .starts_with("rds.force_ssl = 0 (set in pg-notls)"),
        "{tls}"
    );
    assert!(tls["fix"].as_str().unwrap().contains(
        "aws rds modify-db-parameter-group --db-parameter-group-name pg-notls --parameters \"ParameterName=rds.force_ssl,ParameterValue=1,ApplyMethod=immediate\""
    ), "{tls}");
    // PostgreSQL 14's default does not.
    assert_eq!(
        of(&json, "au-pg14-default"),
        pairs(&[("tls-not-enforced", "high")])
    );
    let tls = finding(&json, "au-pg14-default", "tls-not-enforced");
    assert!(
        tls["evidence"].as_str().unwrap().starts_with(
            "rds.force_ssl = 0 (the engine default of postgres14: default.postgres14 leaves it unset)"
        ),
        "{tls}"
    );
    // Engine defaults that force TLS, said by the API (instance and
    // cluster families): no finding, where rdsconn's own knowledge would
    // have one.
    assert_eq!(of(&json, "au-mysql84"), pairs(&[]));
    // A group that cannot be read: said once, the rest audited.
    assert!(
        run.stderr.contains(
            "TLS enforcement not checked for the databases using default.aurora8.0: the API call DescribeDBClusterParameters"
        ),
        "{}",
        run.stderr
    );
    assert_eq!(
        of(&json, "au-apg-nogroup"),
        pairs(&[("master-password-not-managed", "low")])
    );
    assert_eq!(
        of(&json, "au-apg16"),
        pairs(&[("master-password-not-managed", "low")])
    );
    assert!(
        tls["fix"]
            .as_str()
            .unwrap()
            .starts_with("a default group cannot change"),
        "{tls}"
    );
    assert!(
        finding(&json, "au-am", "tls-not-enforced")["fix"]
            .as_str()
            .unwrap()
            .contains(
                "modify-db-cluster-parameter-group --db-cluster-parameter-group-name am-notls"
            )
    );
}

#[test]
fn fail_on_gates_ci_and_a_selection_narrows_the_audit() {
    let run = audit(&["--fail-on", "critical"]);
    run.assert_code(1);
    assert!(
        run.stdout
            .contains("CRITICAL  instance au-pg14-notls  ca-expired"),
        "{}",
        run.stdout
    );
    let run = audit(&[
        "--instance",
        "au-pg16",
        "--fail-on",
        "high",
        "--output",
        "json",
    ]);
    run.assert_code(0);
    assert_eq!(run.json()["databases"], 1);
    let run = audit(&["--instance", "au-pg16", "--fail-on", "medium"]);
    run.assert_code(1);
    // --connect over the API: a database that cannot be reached is said,
    // and the audit goes on.
    let run = audit(&[
        "--instance",
        "au-pg16",
        "--connect",
        "-u",
        "admin",
        "--connect-timeout",
        "2s",
    ]);
    run.assert_code(0);
    assert!(
        run.stderr.contains("au-pg16: live checks skipped"),
        "{}",
        run.stderr
    );
    let run = audit(&["--instance", "no-such-db"]);
    run.assert_code(2);
    assert!(run.stderr.contains("no-such-db"), "{}", run.stderr);
}

/// `rdsconn audit --connect -h ENDPOINT` (JSON) of the `engine` server
/// listening on `port`, logging in as `au_admin` with `password` from the
/// engine's variable; `extra` flags after.
fn audit_endpoint(engine: &str, port: u16, password: &str, extra: &[&str]) -> Run {
    use crate::support::pki::ENDPOINT;
    let ca = crate::support::server::pki().ca_file.display().to_string();
    let via = format!("127.0.0.1:{port}");
    let mut args = vec![
        "--ca-bundle",
        &ca,
        "--output",
        "json",
        "audit",
        "--connect",
        "-h",
        ENDPOINT,
        "--engine",
        engine,
        "--via",
        &via,
        "-u",
        "au_admin",
    ];
    args.extend_from_slice(extra);
    let var = if engine == "postgres" {
        "PGPASSWORD"
    } else {
        "MYSQL_PWD"
    };
    TestEnv::new().run_with(&args, &[(var, password)])
}

#[test]
fn connected_audits_find_sessions_without_tls_and_what_the_server_enforces() {
    use crate::support::pg;
    use crate::support::pki::ENDPOINT;
    use crate::support::server::Variant;
    let password = "au-Admin-pa55";
    pg::rds_roles();
    pg::admin_sql(
        Variant::Good,
        &format!(
            "CREATE USER au_admin PASSWORD '{password}'; GRANT pg_read_all_stats TO au_admin; \
             CREATE USER au_iam; GRANT rds_iam TO au_iam; \
             CREATE ROLE au_iam_group IN ROLE rds_iam; CREATE USER au_iam_nested IN ROLE au_iam_group;"
        ),
    );
    // A session over the unix socket, without TLS, as RDS would show one
    // from a client that did not ask for TLS.
    let _plain = pg::LocalSession::start(Variant::Good, "au_plain");
    let started = std::time::Instant::now();
    while !pg::admin_query(
        Variant::Good,
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'au_plain'",
    )
    .trim()
    .eq("1")
    {
        assert!(
            started.elapsed() < std::time::Duration::from_mins(1),
            "no au_plain session"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let run = audit_endpoint(
        "postgres",
        pg::server(Variant::Good).port,
        password,
        &["-d", "postgres", "--fail-on", "high"],
    );
    run.assert_code(1);
    crate::support::schema::assert_valid("audit", &run.stdout);
    let json = run.json();
    let f = finding(&json, ENDPOINT, "sessions-without-tls");
    assert_eq!(f["severity"], "high");
    assert!(
        f["evidence"]
            .as_str()
            .unwrap()
            .contains("postgres@local (au_plain)"),
        "{f}"
    );
    // The audit's own session is over verified TLS: not in the list.
    assert!(!f["evidence"].as_str().unwrap().contains("au_admin"), "{f}");
    // Its IAM users (directly or through a role), an inventory; the
    // group itself cannot log in.
    let iam = finding(&json, ENDPOINT, "iam-users");
    assert_eq!(iam["severity"], "info");
    let listed = iam["evidence"].as_str().unwrap();
    assert!(
        listed.contains(" au_iam") && listed.contains("au_iam_nested"),
        "{iam}"
    );
    assert!(
        !listed.contains("au_iam_group") && !listed.contains("au_admin"),
        "{iam}"
    );
}

#[test]
fn a_server_that_requires_tls_has_no_live_findings() {
    use crate::support::maria;
    use crate::support::server::Variant;
    let password = "au-Admin-pa55";
    // MariaDB: require_secure_transport is on, so no user is let in
    // without TLS, and TLS is on.
    maria::admin_sql(
        Variant::Good,
        &format!(
            "CREATE USER IF NOT EXISTS 'au_admin'@'%' IDENTIFIED BY '{password}'; \
             GRANT SELECT ON *.* TO 'au_admin'@'%';"
        ),
    );
    let run = audit_endpoint(
        "mysql",
        maria::server(Variant::Good).port,
        password,
        &["--fail-on", "low"],
    );
    run.assert_code(0);
    assert_eq!(run.json()["findings"], json!([]), "{}", run.stdout);
}

const LAX_PASSWORD: &str = "au-Lax-pa55";

/// [`crate::support::maria::lax_server`] as RDS MySQL with `require_secure_transport` off:
/// a user without REQUIRE SSL connected without TLS now (that session
/// kept open for the rest of the process), one with REQUIRE SSL, an IAM
/// user (the plugin is not loaded here, so its row is written directly);
/// its port.
fn lax() -> u16 {
    use crate::support::maria;
    static PLAIN: std::sync::OnceLock<std::process::Child> = std::sync::OnceLock::new();
    let port = maria::lax_server().port;
    PLAIN.get_or_init(|| {
        maria::lax_sql(&format!(
            "CREATE USER 'au_admin'@'%' IDENTIFIED BY '{LAX_PASSWORD}'; GRANT SELECT ON *.* TO 'au_admin'@'%'; \
             CREATE USER 'au_plain'@'%' IDENTIFIED BY '{LAX_PASSWORD}'; \
             CREATE USER 'au_tls'@'%' IDENTIFIED BY '{LAX_PASSWORD}' REQUIRE SSL; \
             INSERT INTO mysql.global_priv (Host, User, Priv) VALUES ('%', 'au_iam', \
               '{{\"plugin\":\"AWSAuthenticationPlugin\",\"authentication_string\":\"RDS\",\"ssl_type\":1}}'); \
             FLUSH PRIVILEGES;"
        ));
        // Ends with the server, when this process is gone.
        let child = std::process::Command::new("mariadb")
            .args(["--no-defaults", "--skip-ssl", "--protocol=TCP", "-h", "127.0.0.1"])
            .args(["-P", &port.to_string(), "-u", "au_plain", "-e", "SELECT SLEEP(600)"])
            .env("MYSQL_PWD", LAX_PASSWORD)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let started = std::time::Instant::now();
        while maria::lax_sql(
            "SELECT count(*) FROM information_schema.PROCESSLIST WHERE USER = 'au_plain'",
        )
        .trim()
            != "1"
        {
            assert!(
                started.elapsed() < std::time::Duration::from_mins(1),
                "no au_plain session"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        child
    });
    port
}

#[test]
fn a_server_that_lets_clients_in_without_tls_is_found_out_live() {
    use crate::support::pki::ENDPOINT;
    let (port, password) = (lax(), LAX_PASSWORD);
    let run = audit_endpoint("mysql", port, password, &["--fail-on", "high"]);
    run.assert_code(1);
    crate::support::schema::assert_valid("audit", &run.stdout);
    let json = run.json();
    let evidence = |check: &str, severity: &str| {
        let f = finding(&json, ENDPOINT, check);
        assert_eq!(f["severity"], severity, "{f}");
        f["evidence"].as_str().unwrap().to_string()
    };
    let sessions = evidence("sessions-without-tls", "high");
    assert!(sessions.starts_with("1 session(s)"), "{sessions}");
    assert!(sessions.contains("au_plain@127.0.0.1"), "{sessions}");
    // The audit's own session is over verified TLS.
    assert!(!sessions.contains("au_admin"), "{sessions}");
    let users = evidence("users-without-require-ssl", "medium");
    assert!(users.contains("au_plain@%"), "{users}");
    assert!(users.contains("au_admin@%"), "{users}");
    assert!(!users.contains("au_tls"), "{users}");
    assert!(!users.contains("au_iam"), "{users}");
    assert_eq!(
        evidence("iam-users", "info"),
        "1 user(s) log in with IAM: au_iam@%"
    );
    assert!(
        json["findings"]
            .as_array()
            .unwrap()
            .iter()
            .all(|f| f["check"] != "server-tls-off"),
        "{json}"
    );
}

#[test]
fn iam_users_where_iam_authentication_is_off_are_found_through_the_api() {
    let (port, password) = (lax(), LAX_PASSWORD);
    let ca = crate::support::server::pki().ca_file.display().to_string();
    let via = format!("127.0.0.1:{port}");
    // The instance's IAM authentication is off, so its IAM user cannot
    // log in.
    let run = audit_with(
        &[
            "--ca-bundle",
            &ca,
            "--output",
            "json",
            "--instance",
            "au-lax",
            "--connect",
            "--via",
            &via,
            "-u",
            "au_admin",
        ],
        &[("MYSQL_PWD", password)],
    );
    run.assert_code(0);
    let json = run.json();
    let f = finding(&json, "au-lax", "iam-users-without-iam-auth");
    assert_eq!(f["severity"], "medium", "{f}");
    assert!(
        f["fix"].as_str().unwrap().starts_with(
            "aws rds modify-db-instance --db-instance-identifier au-lax --enable-iam-database-authentication"
        ),
        "{f}"
    );
    finding(&json, "au-lax", "sessions-without-tls");
    finding(&json, "au-lax", "iam-auth-off");
    // One address cannot stand for every database.
    let run = audit(&["--connect", "--via", &via, "-u", "au_admin"]);
    run.assert_code(2);
    assert!(run.stderr.contains("dials one address"), "{}", run.stderr);
}

#[test]
fn an_unreachable_secrets_manager_is_said_once_and_the_audit_goes_on() {
    // A listener that counts connections and drops them.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let count = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = std::sync::Arc::clone(&count);
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            drop(conn);
        }
    });
    let run = audit_with(
        &["--output", "json"],
        &[("AWS_ENDPOINT_URL_SECRETS_MANAGER", url.as_str())],
    );
    run.assert_code(0);
    // Five managed secrets in the fleet; the first failure stops the
    // rest: only its attempts (the SDK retries) reached the listener.
    let seen = count.load(std::sync::atomic::Ordering::SeqCst);
    assert!((1..=3).contains(&seen), "{seen} connections");
    assert_eq!(
        run.stderr
            .matches("master secret rotation not checked for 5 database(s)")
            .count(),
        1,
        "{}",
        run.stderr
    );
    let json = run.json();
    assert!(
        json["findings"]
            .as_array()
            .unwrap()
            .iter()
            .all(|f| f["check"] != "master-secret-rotation-off"),
        "{json}"
    );
    finding(&json, "au-mysql", "ca-expiring");
}

#[test]
fn a_bad_via_is_refused_without_echoing_its_password() {
    let run = audit(&[
        "--connect",
        "--via",
        "socks5://u:s3cr3t-pw@127.0.0.1:1080",
        "-u",
        "admin",
    ]);
    run.assert_code(2);
    assert!(run.stderr.contains("--via"), "{}", run.stderr);
    assert!(!run.stderr.contains("s3cr3t-pw"), "{}", run.stderr);
    // Refused before the API's parameter groups were read.
    assert!(
        !run.stderr.contains("TLS enforcement not checked"),
        "{}",
        run.stderr
    );
}
