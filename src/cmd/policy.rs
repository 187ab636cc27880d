//! `rdsconn policy`: the IAM policy that lets a principal connect as
//! database users: `rds-db:connect` on
//! `arn:PARTITION:rds-db:REGION:ACCOUNT:dbuser:RESOURCE-ID/USER`, where the
//! resource id is the instance's `DbiResourceId`, the Aurora cluster's
//! `DbClusterResourceId` or the RDS Proxy's `prx-…` (from the RDS API, or
//! given); Aurora DSQL's `dsql:DbConnect` (`DbConnectAdmin` for `admin`)
//! on `arn:PARTITION:dsql:REGION:ACCOUNT:cluster/ID`.

use serde_json::{Value, json};

use crate::cli::{GlobalArgs, OutputFormat, PolicyArgs, RdsSelector};
use crate::error::{Error, Result};
use crate::output;
use crate::rds::Rds;
use crate::target::Host;

/// One database the policy is for.
#[derive(Debug, PartialEq, Eq)]
enum Resource {
    /// An RDS instance, cluster or proxy: the ARN prefix
    /// `arn:P:rds-db:R:A:dbuser:ID`.
    Rds(String),
    /// An Aurora DSQL cluster's ARN.
    Dsql(String),
}

pub(crate) async fn run(global: &GlobalArgs, args: &PolicyArgs) -> Result<u8> {
    for user in &args.user {
        check_user(user)?;
    }
    if let Some(role) = &args.principal {
        check_role(role)?;
    }
    let resources = resources(global, args).await?;
    let policy = document(&resources, &args.user);
    let command = args
        .principal
        .as_ref()
        .map(|role| put_role_policy(role, &args.policy_name, &policy));
    if global.output == OutputFormat::Json {
        let mut out = json!({ "policy": policy });
        if let Some(c) = &command {
            out["command"] = Value::String(c.clone());
        }
        output::json(&out)?;
    } else {
        let text = serde_json::to_string_pretty(&policy).unwrap_or_default();
        output::line(&text)?;
        if let Some(c) = &command {
            output::line(&format!("\n{c}"))?;
        }
    }
    Ok(0)
}

/// The resources of every target flag: given ids first, then DSQL
/// endpoints, then what the RDS API says.
async fn resources(global: &GlobalArgs, args: &PolicyArgs) -> Result<Vec<Resource>> {
    let mut out = Vec::new();
    let mut lookups = Vec::new();
    let mut dsql = Vec::new();
    for host in &args.host {
        let h = Host::parse(host)?;
        if h.is_dsql() {
            dsql.push(h);
        } else {
            lookups.push(h);
        }
    }
    let needs_api = !lookups.is_empty()
        || !args.instance.is_empty()
        || !args.cluster.is_empty()
        || !args.proxy.is_empty();
    let needs_account =
        (!args.resource_id.is_empty() || !dsql.is_empty()) && args.account.is_none();
    if args.resource_id.is_empty() && dsql.is_empty() && !needs_api {
        return Err(Error::usage(
            "no database: pass --instance, --cluster, --proxy, -h HOST or --resource-id",
        ));
    }
    let account = match &args.account {
        Some(a) => Some(check_account(a)?),
        None if needs_account => Some(caller_account(global).await?),
        None => None,
    };
    if !args.resource_id.is_empty() {
        let region = region(global).await?;
        let account = account.clone().unwrap_or_default();
        for id in &args.resource_id {
            check_resource_id(id)?;
            out.push(rds_resource(
                crate::aws::partition(&region),
                &region,
                &account,
                id,
            ));
        }
    }
    for h in &dsql {
        let region = h.endpoint().ok().and_then(|e| e.region).unwrap_or_default();
        let id = h.as_str().split('.').next().unwrap_or_default();
        let account = account.clone().unwrap_or_default();
        out.push(Resource::Dsql(format!(
            "arn:{}:dsql:{region}:{account}:cluster/{id}",
            crate::aws::partition(&region)
        )));
    }
    if needs_api {
        let rds = Rds::connect(global).await?;
        let mut dbs = Vec::new();
        for (ids, pick) in [(&args.instance, 0), (&args.cluster, 1), (&args.proxy, 2)] {
            for id in ids {
                let mut sel = RdsSelector::default();
                match pick {
                    0 => sel.instance = Some(id.clone()),
                    1 => sel.cluster = Some(id.clone()),
                    _ => sel.proxy = Some(id.clone()),
                }
                dbs.extend(rds.selected(&sel).await?);
            }
        }
        for h in &lookups {
            let db = rds.find(&RdsSelector::default(), Some(h)).await?;
            dbs.push(db.ok_or_else(|| {
                Error::usage(format!(
                    "no instance, cluster or proxy in {} has the endpoint {}",
                    rds.region(),
                    h.as_str()
                ))
                .with_hint("use --instance / --cluster / --proxy, or --region")
            })?);
        }
        for db in dbs {
            out.push(from_api(&db)?);
        }
    }
    out.dedup();
    Ok(out)
}

/// The `rds-db` resource of a database the API described: the partition,
/// region and account of its own ARN, and its resource id.
fn from_api(db: &crate::rds::Database) -> Result<Resource> {
    let missing = || {
        Error::new(
            crate::error::Category::Aws,
            std::io::Error::other(format!(
                "the RDS API gave no ARN and resource id for {}",
                db.identifier
            )),
        )
    };
    let arn = db.arn.as_deref().ok_or_else(missing)?;
    let id = db.resource_id.as_deref().ok_or_else(missing)?;
    let parts: Vec<&str> = arn.split(':').collect();
    let [_, partition, _, region, account, ..] = parts.as_slice() else {
        return Err(missing());
    };
    Ok(rds_resource(partition, region, account, id))
}

fn rds_resource(partition: &str, region: &str, account: &str, id: &str) -> Resource {
    Resource::Rds(format!(
        "arn:{partition}:rds-db:{region}:{account}:dbuser:{id}"
    ))
}

/// The policy: one statement per action, every resource × user in it.
fn document(resources: &[Resource], users: &[String]) -> Value {
    let mut rds = Vec::new();
    let (mut connect, mut admin) = (Vec::new(), Vec::new());
    for r in resources {
        match r {
            Resource::Rds(prefix) => {
                rds.extend(users.iter().map(|u| format!("{prefix}/{u}")));
            }
            Resource::Dsql(arn) => {
                if users.iter().any(|u| u == "admin") {
                    admin.push(arn.clone());
                }
                if users.iter().any(|u| u != "admin") {
                    connect.push(arn.clone());
                }
            }
        }
    }
    let statements: Vec<Value> = [
        ("rds-db:connect", rds),
        ("dsql:DbConnect", connect),
        ("dsql:DbConnectAdmin", admin),
    ]
    .into_iter()
    .filter(|(_, r)| !r.is_empty())
    .map(
        |(action, resources)| json!({"Effect": "Allow", "Action": [action], "Resource": resources}),
    )
    .collect();
    json!({"Version": "2012-10-17", "Statement": statements})
}

/// `aws iam put-role-policy …` with the policy inline (the policy holds
/// only checked names: no quote to escape).
fn put_role_policy(role: &str, name: &str, policy: &Value) -> String {
    // The command takes the role's name; an ARN's is after the last '/'.
    let role = role.rsplit('/').next().unwrap_or(role);
    format!(
        "aws iam put-role-policy --role-name {role} --policy-name {name} --policy-document '{}'",
        serde_json::to_string(policy).unwrap_or_default()
    )
}

/// The region for `--resource-id`: `--region`, else the AWS configuration.
async fn region(global: &GlobalArgs) -> Result<String> {
    let configured = match global.region {
        Some(_) => None,
        None => crate::aws::configured_region(global.profile.as_deref()).await,
    };
    Ok(crate::aws::resolve_region(global.region.as_deref(), None, configured)?.region)
}

/// The caller's account (STS `GetCallerIdentity`).
async fn caller_account(global: &GlobalArgs) -> Result<String> {
    let region = region(global).await?;
    let config = crate::rds::sdk_config(global, &region).await?;
    let (identity, _) = crate::aws::caller_identity(&config).await;
    identity.map(|i| i.account).map_err(|e| {
        Error::new(crate::error::Category::Aws, e)
            .context("finding the account (STS GetCallerIdentity)")
            .with_hint("pass --account ACCOUNT")
    })
}

fn check_account(a: &str) -> Result<String> {
    if a.len() == 12 && a.bytes().all(|b| b.is_ascii_digit()) {
        Ok(a.to_string())
    } else {
        Err(Error::usage(format!(
            "--account {:?}: an AWS account is 12 digits",
            crate::text::Untrusted(a).to_string()
        )))
    }
}

fn check_resource_id(id: &str) -> Result<()> {
    let ok = ["db-", "cluster-", "prx-"].iter().any(|p| {
        id.strip_prefix(p)
            .is_some_and(|rest| !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_alphanumeric()))
    });
    if ok {
        Ok(())
    } else {
        Err(Error::usage(format!(
            "--resource-id {:?}: expected db-… (DbiResourceId), cluster-… (DbClusterResourceId) or prx-… (an RDS Proxy)",
            crate::text::Untrusted(id).to_string()
        )))
    }
}

/// A user name in an ARN: printable, no blank, quote, slash or backslash;
/// `*` for every user.
fn check_user(u: &str) -> Result<()> {
    let ok = !u.is_empty()
        && u.len() <= 128
        && u.bytes().all(|b| {
            b.is_ascii_graphic() && !matches!(b, b'"' | b'\'' | b'/' | b'\\' | b'`' | b'$')
        });
    if ok {
        Ok(())
    } else {
        Err(Error::usage(format!(
            "-u {:?}: a database user in a policy is printable ASCII without quotes, '/' or '\\'",
            crate::text::Untrusted(u).to_string()
        )))
    }
}

/// An IAM role name (`[\w+=,.@-]`, at most 64), or its ARN.
fn check_role(role: &str) -> Result<()> {
    let name = role.rsplit('/').next().unwrap_or(role);
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_+=,.@-".contains(&b));
    if ok && !role.contains(['\'', ' ']) {
        Ok(())
    } else {
        Err(Error::usage(format!(
            "--principal {:?}: an IAM role name is letters, digits and _+=,.@- (at most 64)",
            crate::text::Untrusted(role).to_string()
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resources_in_every_partition_have_the_documented_form() {
        for (region, partition) in [
            ("us-east-2", "aws"),
            ("cn-north-1", "aws-cn"),
            ("us-gov-west-1", "aws-us-gov"),
        ] {
            let r = rds_resource(
                crate::aws::partition(region),
                region,
                "123456789012",
                "db-ABCDEFGHIJKL01234",
            );
            let doc = document(&[r], &["db_user".into()]);
            assert_eq!(
                doc["Statement"][0]["Resource"][0],
                format!(
                    "arn:{partition}:rds-db:{region}:123456789012:dbuser:db-ABCDEFGHIJKL01234/db_user"
                )
            );
            assert_eq!(doc["Statement"][0]["Action"][0], "rds-db:connect");
            assert_eq!(doc["Version"], "2012-10-17");
        }
    }

    #[test]
    fn bad_names_are_refused() {
        assert!(check_user("app").is_ok());
        assert!(check_user("*").is_ok());
        for bad in ["", "a b", "a'b", "a/b", "a\nb"] {
            assert!(check_user(bad).is_err(), "{bad:?}");
        }
        assert!(check_account("123456789012").is_ok());
        assert!(check_account("12345").is_err());
        assert!(check_resource_id("prx-0123abcd").is_ok());
        assert!(check_resource_id("db-").is_err());
        assert!(check_resource_id("i-123").is_err());
        assert!(check_role("arn:aws:iam::123456789012:role/app-role").is_ok());
        assert!(check_role("app role").is_err());
    }
}
