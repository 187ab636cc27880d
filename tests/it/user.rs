//! `rdsconn user create` against the harness's servers: a PostgreSQL IAM
//! user in `rds_iam` (the group made here, as RDS has it), a MariaDB
//! Kerberos user on its PAM plugin, both read back by the servers' own
//! clients; running it twice changes nothing; a role in `rds_ad` is
//! refused; the MySQL IAM SQL (no `AWSAuthenticationPlugin` here) checked
//! with `--dry-run` against AWS's documented form; bad names.

use crate::support::pki::ENDPOINT;
use crate::support::server::{Variant, pki};
use crate::support::{Run, TestEnv, maria, pg};

const ADMIN_PASSWORD: &str = "uc-Admin-pa55";

fn create(engine: &str, port: u16, args: &[&str]) -> Run {
    let env = TestEnv::new();
    let ca = pki().ca_file.display().to_string();
    let via = format!("127.0.0.1:{port}");
    let mut all = vec!["--ca-bundle", &ca, "user", "create"];
    all.extend_from_slice(args);
    all.extend([
        "--engine", engine, "-h", ENDPOINT, "--via", &via, "-u", "uc_admin",
    ]);
    if engine == "postgres" {
        all.extend(["-d", "postgres"]);
    }
    env.run_with(
        &all,
        &[
            ("PGPASSWORD", ADMIN_PASSWORD),
            ("MYSQL_PWD", ADMIN_PASSWORD),
        ],
    )
}

fn pg_admin() -> u16 {
    static ONCE: std::sync::OnceLock<u16> = std::sync::OnceLock::new();
    *ONCE.get_or_init(|| {
        pg::rds_roles();
        pg::admin_sql(
            Variant::Good,
            &format!(
                "CREATE USER uc_admin PASSWORD '{ADMIN_PASSWORD}' CREATEROLE; \
                 CREATE USER uc_kerb; GRANT rds_ad TO uc_kerb; \
                 CREATE ROLE uc_group; GRANT rds_ad TO uc_group; CREATE USER uc_nested IN ROLE uc_group;"
            ),
        );
        pg::server(Variant::Good).port
    })
}

#[test]
fn a_postgresql_iam_user_is_created_in_rds_iam_once() {
    let port = pg_admin();
    let run = create("postgres", port, &["uc_app", "--iam", "--output", "json"]);
    run.assert_code(0);
    crate::support::schema::assert_valid("user", &run.stdout);
    let json = run.json();
    assert_eq!(json["changed"], true, "{json:#}");
    let statuses: Vec<&str> = json["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["run", "run"]);
    // The server says so, in its own client.
    let member = pg::admin_query(
        Variant::Good,
        "SELECT r.rolcanlogin, pg_has_role('uc_app', 'rds_iam', 'MEMBER') FROM pg_roles r WHERE r.rolname = 'uc_app'",
    );
    assert_eq!(member.trim(), "t|t");
    // Twice: nothing changes, and it says so.
    let again = create("postgres", port, &["uc_app", "--iam"]);
    again.assert_code(0);
    assert!(
        again
            .stdout
            .contains("nothing to change: uc_app was there already"),
        "{}",
        again.stdout
    );
    // A user that exists without the group gets only the grant.
    pg::admin_sql(Variant::Good, "CREATE USER uc_half;");
    let half = create("postgres", port, &["uc_half", "--iam", "--output", "json"]);
    half.assert_code(0);
    assert_eq!(half.json()["steps"][0]["status"], "exists");
    assert_eq!(half.json()["steps"][1]["status"], "run");
}

#[test]
fn a_role_in_rds_ad_directly_or_through_a_role_is_refused() {
    let port = pg_admin();
    for user in ["uc_kerb", "uc_nested"] {
        let run = create("postgres", port, &[user, "--iam"]);
        run.assert_code(2);
        assert!(
            run.stderr.contains(&format!(
                "{user} is a member of rds_ad (directly or through a role)"
            )),
            "{}",
            run.stderr
        );
    }
    let in_iam = pg::admin_query(
        Variant::Good,
        "SELECT count(*) FROM pg_roles WHERE pg_has_role(oid, 'rds_iam', 'MEMBER') AND rolname IN ('uc_kerb', 'uc_nested')",
    );
    assert_eq!(in_iam.trim(), "0");
}

#[test]
fn a_mariadb_kerberos_user_uses_pam_and_requires_tls() {
    let port = maria::server(Variant::Good).port;
    maria::admin_sql(
        Variant::Good,
        &format!(
            "CREATE USER IF NOT EXISTS 'uc_admin'@'%' IDENTIFIED BY '{ADMIN_PASSWORD}'; \
             GRANT ALL ON *.* TO 'uc_admin'@'%' WITH GRANT OPTION;"
        ),
    );
    let run = create(
        "mysql",
        port,
        &["uc_krb", "--kerberos", "--grant", "SELECT ON appdb.*"],
    );
    run.assert_code(0);
    assert!(
        run.stdout
            .contains("CREATE USER 'uc_krb'@'%' IDENTIFIED VIA pam;"),
        "{}",
        run.stdout
    );
    let row = maria::admin_sql(
        Variant::Good,
        "SELECT plugin, ssl_type FROM mysql.user WHERE user = 'uc_krb' AND host = '%'",
    );
    assert_eq!(row.trim(), "pam\tANY");
    let grants = maria::admin_sql(Variant::Good, "SHOW GRANTS FOR 'uc_krb'@'%'");
    assert!(
        grants.contains("GRANT SELECT ON `appdb`.* TO `uc_krb`@`%`"),
        "{grants}"
    );
    let again = create("mysql", port, &["uc_krb", "--kerberos", "--output", "json"]);
    again.assert_code(0);
    assert_eq!(again.json()["changed"], false, "{}", again.stdout);
    // A user with another plugin is not changed.
    let other = create("mysql", port, &["app", "--kerberos"]);
    other.assert_code(2);
    assert!(
        other
            .stderr
            .contains("exists with the authentication plugin"),
        "{}",
        other.stderr
    );
}

#[test]
fn the_mysql_iam_sql_is_the_documented_form() {
    let env = TestEnv::new();
    let run = env.run(&[
        "user",
        "create",
        "jane_doe",
        "--iam",
        "--engine",
        "mysql",
        "--dry-run",
        "--grant",
        "SELECT, INSERT ON appdb.*",
    ]);
    run.assert_code(0);
    assert_eq!(
        run.stdout,
        "CREATE USER 'jane_doe'@'%' IDENTIFIED WITH AWSAuthenticationPlugin AS 'RDS';\n\
         ALTER USER 'jane_doe'@'%' REQUIRE SSL;\n\
         GRANT SELECT, INSERT ON appdb.* TO 'jane_doe'@'%';\n"
    );
    let run = env.run(&[
        "user",
        "create",
        "jane_doe",
        "--iam",
        "--engine",
        "mysql",
        "--mariadb",
        "--dry-run",
    ]);
    assert!(
        run.stdout.starts_with(
            "CREATE USER 'jane_doe'@'%' IDENTIFIED VIA AWSAuthenticationPlugin USING 'RDS';"
        ),
        "{}",
        run.stdout
    );
    let run = env.run(&[
        "user",
        "create",
        "db_user",
        "--iam",
        "--engine",
        "postgres",
        "--dry-run",
    ]);
    assert_eq!(
        run.stdout,
        "CREATE USER \"db_user\";\nGRANT rds_iam TO \"db_user\";\n"
    );
    for (args, says) in [
        (vec!["x'; DROP USER root; --", "--iam"], "user name"),
        (
            vec!["ok", "--iam", "--grant", "ALL ON *.*; DROP DATABASE x"],
            "--grant",
        ),
        (vec!["ok", "--iam"], "needs the engine"),
        (
            vec!["ok", "--iam", "--realm", "R", "--engine", "mysql"],
            "--realm",
        ),
    ] {
        let mut all = vec!["user", "create"];
        all.extend(args.iter().copied());
        all.push("--dry-run");
        let run = env.run(&all);
        run.assert_code(2);
        assert!(run.stderr.contains(says), "{args:?}: {}", run.stderr);
    }
}

/// `rdsconn ARGS` against moto in `region` (passwords in the variables:
/// the databases themselves are not reachable).
fn on_moto(region: &str, args: &[&str]) -> Run {
    use crate::support::moto;
    use crate::support::server::{IAM_ACCESS_KEY, IAM_SECRET_KEY};
    let env = TestEnv::new();
    let mut cmd = env.cmd(args);
    cmd.env("AWS_ENDPOINT_URL_RDS", moto::url())
        .env("AWS_ACCESS_KEY_ID", IAM_ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", IAM_SECRET_KEY)
        .env("AWS_REGION", region)
        .env("MYSQL_PWD", "x")
        .env("PGPASSWORD", "x");
    Run::from(cmd.output().unwrap())
}

#[test]
fn iam_authentication_off_on_the_database_says_how_to_turn_it_on() {
    use crate::support::moto;
    let region = "ap-south-1";
    moto::setup(
        region,
        &serde_json::json!([
            {"instance": "uc-noiam", "engine": "mysql", "version": "8.0.36", "iam": false},
            {"cluster": "uc-aurora-noiam", "engine": "aurora-postgresql", "iam": false},
            {"instance": "uc-old-mysql", "engine": "mysql", "version": "5.7.10", "iam": true},
            {"instance": "uc-old-pg", "engine": "postgres", "version": "10.4", "iam": true},
        ]),
    );
    // An engine version IAM authentication does not work with: nothing
    // is created, the database is not even dialled.
    for (id, says) in [
        (
            "uc-old-mysql",
            "needs mysql 5.7.16 or later, and instance uc-old-mysql runs 5.7.10",
        ),
        (
            "uc-old-pg",
            "needs postgres 10.6 or later, and instance uc-old-pg runs 10.4",
        ),
    ] {
        let run = on_moto(
            region,
            &[
                "user",
                "create",
                "app_iam",
                "--iam",
                "--instance",
                id,
                "-u",
                "admin",
            ],
        );
        run.assert_code(2);
        assert!(run.stderr.contains(says), "{}", run.stderr);
        assert!(
            run.stderr.contains(&format!(
                "aws rds modify-db-instance --db-instance-identifier {id} --engine-version VERSION"
            )),
            "{}",
            run.stderr
        );
    }
    for (flag, id, command) in [
        (
            "--instance",
            "uc-noiam",
            "modify-db-instance --db-instance-identifier",
        ),
        (
            "--cluster",
            "uc-aurora-noiam",
            "modify-db-cluster --db-cluster-identifier",
        ),
    ] {
        let run = on_moto(
            region,
            &[
                "user",
                "create",
                "app_iam",
                "--iam",
                flag,
                id,
                "-u",
                "admin",
                "--connect-timeout",
                "3s",
            ],
        );
        assert!(
            run.stderr.contains(&format!(
                "aws rds {command} {id} --enable-iam-database-authentication --apply-immediately --region {region}"
            )),
            "{}",
            run.stderr
        );
        // The database is not reachable from here: the network's exit code.
        run.assert_code(4);
    }
}

#[test]
fn enable_iam_turns_it_on_when_confirmed() {
    use crate::support::moto;
    use crate::support::server::{IAM_ACCESS_KEY, IAM_SECRET_KEY};
    let region = "ap-southeast-2";
    moto::setup(
        region,
        &serde_json::json!([{"instance": "uc-turn-on", "engine": "postgres", "version": "16.1", "iam": false}]),
    );
    let run_with = |extra: &[&str]| {
        let env = TestEnv::new();
        let mut args = vec![
            "user",
            "create",
            "app_iam",
            "--iam",
            "--instance",
            "uc-turn-on",
            "-u",
            "admin",
            "--connect-timeout",
            "3s",
        ];
        args.extend_from_slice(extra);
        let mut cmd = env.cmd(&args);
        cmd.env("AWS_ENDPOINT_URL_RDS", moto::url())
            .env("AWS_ACCESS_KEY_ID", IAM_ACCESS_KEY)
            .env("AWS_SECRET_ACCESS_KEY", IAM_SECRET_KEY)
            .env("AWS_REGION", region)
            .env("PGPASSWORD", "x");
        Run::from(cmd.output().unwrap())
    };
    // No terminal and no --yes: nothing is changed.
    let run = run_with(&["--enable-iam"]);
    run.assert_code(2);
    assert!(run.stderr.contains("add --yes"), "{}", run.stderr);
    assert_eq!(
        moto::setup(region, &serde_json::json!([]))["uc-turn-on"]["iam"],
        false
    );
    // Confirmed: on, read back by boto3; then the (unreachable) database.
    let run = run_with(&["--enable-iam", "--yes"]);
    assert!(
        run.stderr
            .contains("IAM database authentication turned on for instance uc-turn-on"),
        "{}",
        run.stderr
    );
    run.assert_code(4);
    assert_eq!(
        moto::setup(region, &serde_json::json!([]))["uc-turn-on"]["iam"],
        true
    );
}
