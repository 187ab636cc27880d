//! `rdsconn policy` against moto: the resource ARN of an instance
//! (`DbiResourceId`), an Aurora cluster (`DbClusterResourceId`) and an RDS
//! Proxy (`prx-…`), each compared with the documented form built from what
//! boto3 reads back; DSQL's action and ARN; every partition; bad input.

use serde_json::{Value, json};

use crate::support::server::{IAM_ACCESS_KEY, IAM_SECRET_KEY};
use crate::support::{Run, TestEnv, moto};

const REGION: &str = "eu-central-1";

fn fleet() -> Value {
    static FLEET: std::sync::OnceLock<Value> = std::sync::OnceLock::new();
    FLEET
        .get_or_init(|| {
            moto::setup(
                REGION,
                &json!([
                    {"instance": "pol-pg", "engine": "postgres", "iam": true},
                    {"cluster": "pol-aurora", "engine": "aurora-postgresql", "iam": true},
                    {"proxy": "pol-proxy", "engine_family": "POSTGRESQL", "iam": "REQUIRED"},
                ]),
            )
        })
        .clone()
}

fn policy(args: &[&str]) -> Run {
    let env = TestEnv::new();
    let mut all = vec!["--output", "json", "policy"];
    all.extend_from_slice(args);
    let mut cmd = env.cmd(&all);
    cmd.env("AWS_ENDPOINT_URL_RDS", moto::url())
        .env("AWS_ENDPOINT_URL_STS", moto::url())
        .env("AWS_ACCESS_KEY_ID", IAM_ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", IAM_SECRET_KEY)
        .env("AWS_REGION", REGION);
    Run::from(cmd.output().unwrap())
}

/// The documented resource: arn:aws:rds-db:REGION:ACCOUNT:dbuser:ID/USER,
/// the account from the database's ARN as boto3 read it.
fn documented(db: &Value, user: &str) -> String {
    let arn = db["arn"].as_str().unwrap();
    let account = arn.split(':').nth(4).unwrap();
    let id = match db["resource_id"].as_str() {
        Some(id) => id.to_string(),
        None => arn.rsplit(':').next().unwrap().to_string(),
    };
    format!("arn:aws:rds-db:{REGION}:{account}:dbuser:{id}/{user}")
}

fn resources(run: &Run, action: &str) -> Vec<String> {
    run.assert_code(0);
    let json = run.json();
    let statements = json["policy"]["Statement"].as_array().unwrap();
    let s = statements
        .iter()
        .find(|s| s["Action"][0] == action)
        .unwrap_or_else(|| panic!("no {action} statement: {json:#}"));
    assert_eq!(s["Effect"], "Allow");
    assert_eq!(json["policy"]["Version"], "2012-10-17");
    s["Resource"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn instances_clusters_and_proxies_get_their_own_resource_ids() {
    let fleet = fleet();
    let (pg, aurora, proxy) = (&fleet["pol-pg"], &fleet["pol-aurora"], &fleet["pol-proxy"]);
    assert!(
        pg["resource_id"].as_str().unwrap().starts_with("db-"),
        "{pg}"
    );
    let run = policy(&["--instance", "pol-pg", "-u", "app", "-u", "report"]);
    assert_eq!(
        resources(&run, "rds-db:connect"),
        [documented(pg, "app"), documented(pg, "report")]
    );
    let run = policy(&["--cluster", "pol-aurora", "-u", "app"]);
    let got = resources(&run, "rds-db:connect");
    assert_eq!(got, [documented(aurora, "app")]);
    assert!(got[0].contains(":dbuser:cluster-"), "{got:?}");
    let run = policy(&["--proxy", "pol-proxy", "-u", "app"]);
    let got = resources(&run, "rds-db:connect");
    assert_eq!(got, [documented(proxy, "app")]);
    assert!(got[0].contains(":dbuser:prx-"), "{got:?}");
    // By endpoint: the instance the API says has it.
    let host = pg["endpoint"].as_str().unwrap();
    let run = policy(&["-h", host, "-u", "app", "--principal", "app-role"]);
    assert_eq!(resources(&run, "rds-db:connect"), [documented(pg, "app")]);
    let command = run.json()["command"].as_str().unwrap().to_string();
    assert!(
        command.starts_with(
            "aws iam put-role-policy --role-name app-role --policy-name rdsconn-connect --policy-document '{"
        ),
        "{command}"
    );
    let inline: Value = serde_json::from_str(command.split('\'').nth(1).unwrap()).unwrap();
    assert_eq!(inline, run.json()["policy"]);
    // Several targets in one policy.
    let run = policy(&[
        "--instance",
        "pol-pg",
        "--cluster",
        "pol-aurora",
        "-u",
        "app",
    ]);
    assert_eq!(
        resources(&run, "rds-db:connect"),
        [documented(pg, "app"), documented(aurora, "app")]
    );
}

#[test]
fn dsql_and_every_partition_have_the_documented_forms() {
    // The account from STS (moto's) when --account is not given.
    let run = policy(&[
        "-h",
        "abcdefghijklmnopqrstuvwxyz.dsql.us-east-1.on.aws",
        "-u",
        "admin",
        "-u",
        "app",
    ]);
    let arn = "arn:aws:dsql:us-east-1:123456789012:cluster/abcdefghijklmnopqrstuvwxyz";
    assert_eq!(resources(&run, "dsql:DbConnectAdmin"), [arn]);
    assert_eq!(resources(&run, "dsql:DbConnect"), [arn]);
    for (region, partition) in [
        ("us-east-2", "aws"),
        ("cn-northwest-1", "aws-cn"),
        ("us-gov-east-1", "aws-us-gov"),
    ] {
        let run = policy(&[
            "--resource-id",
            "db-ABCDEFGHIJKL01234",
            "--account",
            "123456789012",
            "--region",
            region,
            "-u",
            "db_user",
        ]);
        assert_eq!(
            resources(&run, "rds-db:connect"),
            [format!(
                "arn:{partition}:rds-db:{region}:123456789012:dbuser:db-ABCDEFGHIJKL01234/db_user"
            )]
        );
    }
}

#[test]
fn bad_input_is_one_line_and_exit_2() {
    fleet();
    for (args, says) in [
        (vec!["-u", "app"], "no database"),
        (
            vec!["--instance", "pol-pg", "-u", "a b"],
            "a database user in a policy",
        ),
        (
            vec![
                "--resource-id",
                "i-123",
                "--account",
                "123456789012",
                "-u",
                "a",
            ],
            "--resource-id",
        ),
        (
            vec!["--resource-id", "db-ABC", "--account", "12", "-u", "a"],
            "12 digits",
        ),
        (
            vec![
                "--instance",
                "pol-pg",
                "-u",
                "a",
                "--principal",
                "x'; rm -rf /",
            ],
            "IAM role name",
        ),
    ] {
        let run = policy(&args);
        run.assert_code(2);
        assert!(run.stderr.contains(says), "{args:?}: {}", run.stderr);
    }
    let run = policy(&["--instance", "no-such-db", "-u", "a"]);
    assert_ne!(run.code, 0);
    assert!(run.stderr.contains("no-such-db"), "{}", run.stderr);
}
