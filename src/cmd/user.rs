//! `rdsconn user create NAME`: a database user that logs in with IAM
//! (`--iam`) or Kerberos (`--kerberos`), made as AWS documents it:
//!
//! - MySQL: `CREATE USER 'u'@'%' IDENTIFIED WITH AWSAuthenticationPlugin
//!   AS 'RDS'` (Kerberos: `IDENTIFIED WITH 'auth_pam'`), then `ALTER USER
//!   'u'@'%' REQUIRE SSL`; MariaDB: `IDENTIFIED VIA AWSAuthenticationPlugin
//!   USING 'RDS'` (Kerberos: `IDENTIFIED VIA pam`).
//! - PostgreSQL: `CREATE USER "u"` and `GRANT rds_iam TO "u"` (Kerberos:
//!   `CREATE USER "u@REALM" WITH LOGIN` and `GRANT rds_ad`), in one
//!   transaction; a role in the other group is refused.
//!
//! `--dry-run` prints the SQL without connecting; otherwise only what is
//! missing runs, over the verified connection (twice changes nothing).

use serde::Serialize;

use crate::cli::{GlobalArgs, SecretFlags, UserAction, UserArgs, UserCreateArgs};
use crate::engine::Session;
use crate::error::{Category, Error, Result};
use crate::output;
use crate::resolve::{Ask, Given, Users, request};
use crate::target::EngineKind;

/// How the new user logs in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
enum Method {
    Iam,
    Kerberos,
}

/// What `user create` makes, and the SQL for it.
#[derive(Debug, Serialize)]
struct Plan {
    engine: &'static str,
    user: String,
    method: Method,
    steps: Vec<Step>,
    /// Whether anything changed (false: all of it was there already).
    changed: bool,
}

#[derive(Debug, Serialize)]
struct Step {
    sql: String,
    /// `run`, `exists` (there already, skipped) or `planned` (dry run).
    status: &'static str,
}

pub(crate) async fn run(global: &GlobalArgs, args: &UserArgs) -> Result<u8> {
    match &args.action {
        UserAction::Create(c) => create(global, c).await,
    }
}

/// The flavour of SQL: MySQL, MariaDB or PostgreSQL.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Dialect {
    Mysql,
    Mariadb,
    Postgres,
}

async fn create(global: &GlobalArgs, args: &UserCreateArgs) -> Result<u8> {
    let method = if args.kerberos {
        Method::Kerberos
    } else {
        Method::Iam
    };
    check_name(&args.name, 63)?;
    for g in &args.grant {
        check_grant(g)?;
    }
    if args.dry_run {
        let kind = args
            .engine
            .or_else(|| engine_of_url(args.url.as_deref()))
            .ok_or_else(|| {
                Error::usage("--dry-run needs the engine: pass --engine mysql|postgres (or a URL)")
            })?;
        let dialect = dialect(kind, args.mariadb);
        let name = user_name(args, dialect)?;
        let steps = statements(dialect, method, &name, &args.grant)
            .into_iter()
            .map(|sql| Step {
                sql,
                status: "planned",
            })
            .collect();
        return report(global, dialect, name, method, steps);
    }
    let secret = SecretFlags {
        secret: args.secret.clone(),
        secret_region: args.secret_region.clone(),
        master_secret: args.master_secret,
    };
    let ask = Ask {
        kind: args.engine,
        given: Given {
            url: args.url.clone(),
            host: args.host.clone(),
            port: args.port,
            user: args.user.clone(),
            database: args.database.clone(),
            class: None,
        },
        rds: &args.rds,
        iam: false,
        via: args.via.as_deref(),
        connect_timeout: args.connect_timeout.into(),
        users: Users::One,
        env: true,
        secret: &secret,
        tls: args.tls,
    };
    let req = request(global, ask).await?;
    let kind = req.engine()?;
    if method == Method::Iam
        && let Some(db) = &req.database
    {
        iam_precheck(global, args, db).await?;
    }
    let from = crate::resolve::PasswordFrom {
        read: None,
        stdin: args.password_stdin,
        prompt: crate::resolve::Prompt::Auto,
    };
    let mut session = crate::resolve::log_in(global, &req, &from).await?;
    let result = apply(&mut *session, kind, method, args).await;
    session.close().await;
    let (dialect, name, steps) = result?;
    report(global, dialect, name, method, steps)
}

/// Runs what is missing; says what was there.
async fn apply(
    session: &mut dyn Session,
    kind: EngineKind,
    method: Method,
    args: &UserCreateArgs,
) -> Result<(Dialect, String, Vec<Step>)> {
    let dialect = match kind {
        EngineKind::Postgres => Dialect::Postgres,
        EngineKind::Mysql => {
            let version = one_value(session, "SELECT VERSION()").await?;
            dialect(
                kind,
                args.mariadb || version.is_some_and(|v| v.contains("MariaDB")),
            )
        }
    };
    let name = user_name(args, dialect)?;
    let all = statements(dialect, method, &name, &args.grant);
    let there = match dialect {
        Dialect::Postgres => postgres_state(session, method, &name).await?,
        Dialect::Mysql | Dialect::Mariadb => mysql_state(session, dialect, method, &name).await?,
    };
    // The statements in order: create, then the login rule (group or
    // REQUIRE SSL), then the grants (which run every time: GRANT is
    // idempotent and says nothing of what was there).
    let mut steps = Vec::new();
    let mut to_run = Vec::new();
    for (i, sql) in all.into_iter().enumerate() {
        let done = match i {
            0 => there.exists,
            1 => there.rule,
            _ => false,
        };
        if !done {
            to_run.push(sql.clone());
        }
        steps.push(Step {
            sql,
            status: if done { "exists" } else { "run" },
        });
    }
    if !to_run.is_empty() {
        let batch = if dialect == Dialect::Postgres {
            format!("BEGIN; {}; COMMIT", to_run.join("; "))
        } else {
            to_run.join("; ")
        };
        if let Err(e) = session.execute(&batch).await {
            if dialect == Dialect::Postgres {
                let _ = session.execute("ROLLBACK").await;
            }
            return Err(Error::from(e).context(format!("creating {name}")));
        }
    }
    Ok((dialect, name, steps))
}

/// What is there already: the user, and its login rule.
struct There {
    exists: bool,
    rule: bool,
}

async fn postgres_state(session: &mut dyn Session, method: Method, name: &str) -> Result<There> {
    let (group, other) = match method {
        Method::Iam => ("rds_iam", "rds_ad"),
        Method::Kerberos => ("rds_ad", "rds_iam"),
    };
    let lit = literal(name);
    if one_value(
        session,
        &format!("SELECT 1 FROM pg_roles WHERE rolname = '{group}'"),
    )
    .await?
    .is_none()
    {
        return Err(Error::new(
            Category::Runtime,
            std::io::Error::other(format!(
                "the role {group} does not exist: is this RDS or Aurora PostgreSQL?"
            )),
        ));
    }
    let exists = one_value(
        session,
        &format!("SELECT 1 FROM pg_roles WHERE rolname = {lit}"),
    )
    .await?
    .is_some();
    if !exists {
        return Ok(There {
            exists,
            rule: false,
        });
    }
    let member = |g: &str| {
        format!(
            "SELECT 1 FROM pg_roles g, pg_roles u WHERE g.rolname = '{g}' AND u.rolname = {lit} AND pg_has_role(u.oid, g.oid, 'MEMBER')"
        )
    };
    if one_value(session, &member(other)).await?.is_some() {
        return Err(Error::usage(format!(
            "{name} is a member of {other} (directly or through a role): RDS PostgreSQL lets a role log in with IAM (rds_iam) or Kerberos (rds_ad), and with both its {} logins stop working",
            if method == Method::Iam { "Kerberos" } else { "password and Kerberos" }
        ))
        .with_hint(format!("REVOKE {other} FROM {}; or create another user", quoted(name))));
    }
    let rule = one_value(session, &member(group)).await?.is_some();
    Ok(There { exists, rule })
}

async fn mysql_state(
    session: &mut dyn Session,
    dialect: Dialect,
    method: Method,
    name: &str,
) -> Result<There> {
    let sets = session
        .execute(&format!(
            "SELECT plugin, ssl_type FROM mysql.user WHERE user = {} AND host = '%'",
            literal(name)
        ))
        .await
        .map_err(|e| Error::from(e).context("reading mysql.user"))?;
    let Some(row) = sets.first().and_then(|s| s.rows.first()) else {
        return Ok(There {
            exists: false,
            rule: false,
        });
    };
    let plugin = row.first().cloned().flatten().unwrap_or_default();
    let ssl = row.get(1).cloned().flatten().unwrap_or_default();
    let wanted = plugin_of(dialect, method);
    if !plugin.eq_ignore_ascii_case(wanted) {
        return Err(Error::usage(format!(
            "'{name}'@'%' exists with the authentication plugin {:?}, not {wanted}",
            crate::text::Untrusted(&plugin).to_string()
        )));
    }
    Ok(There {
        exists: true,
        rule: ssl.eq_ignore_ascii_case("ANY"),
    })
}

fn plugin_of(dialect: Dialect, method: Method) -> &'static str {
    match (dialect, method) {
        (_, Method::Iam) => "AWSAuthenticationPlugin",
        (Dialect::Mariadb, Method::Kerberos) => "pam",
        (_, Method::Kerberos) => "auth_pam",
    }
}

/// The first column of the first row of `sql`'s first result.
async fn one_value(session: &mut dyn Session, sql: &str) -> Result<Option<String>> {
    let sets = session.execute(sql).await.map_err(Error::from)?;
    Ok(sets
        .first()
        .and_then(|s| s.rows.first())
        .and_then(|r| r.first().cloned().flatten()))
}

fn dialect(kind: EngineKind, mariadb: bool) -> Dialect {
    match kind {
        EngineKind::Postgres => Dialect::Postgres,
        EngineKind::Mysql if mariadb => Dialect::Mariadb,
        EngineKind::Mysql => Dialect::Mysql,
    }
}

fn engine_of_url(url: Option<&str>) -> Option<EngineKind> {
    let scheme = url?.split_once("://")?.0;
    crate::rds::engine_kind(scheme)
}

/// The user's name: NAME, or `NAME@REALM` for PostgreSQL Kerberos users;
/// letters, digits and `_ - . @` only (no quoting games).
fn user_name(args: &UserCreateArgs, dialect: Dialect) -> Result<String> {
    let name = match (&args.realm, dialect) {
        (Some(realm), Dialect::Postgres) if !args.name.contains('@') => {
            format!("{}@{realm}", args.name)
        }
        (Some(_), Dialect::Postgres) => {
            return Err(Error::usage(
                "--realm with a NAME that has its realm already (NAME@REALM)",
            ));
        }
        (Some(_), _) => return Err(Error::usage("--realm is for PostgreSQL Kerberos users")),
        (None, _) => args.name.clone(),
    };
    check_name(&name, if dialect == Dialect::Postgres { 63 } else { 32 })?;
    Ok(name)
}

/// Letters, digits and `_ - . @`, starting with a letter or digit, at
/// most `max` bytes.
fn check_name(name: &str, max: usize) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= max
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b'@'))
        && name.as_bytes()[0].is_ascii_alphanumeric();
    if ok {
        Ok(())
    } else {
        Err(Error::usage(format!(
            "user name {:?}: letters, digits, '_', '-', '.' and '@', starting with a letter or digit, at most {max}",
            crate::text::Untrusted(name).to_string()
        )))
    }
}

/// `--grant 'PRIVILEGES ON OBJECT'`: words, `*`, `.`, `,`, `_` and
/// parentheses (column lists) only: no quote, `;` or comment to smuggle a
/// second statement in.
fn check_grant(g: &str) -> Result<()> {
    let upper = g.to_ascii_uppercase();
    let ok = upper.contains(" ON ")
        && g.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b' ' | b'*' | b'.' | b',' | b'_' | b'(' | b')')
        });
    if ok {
        Ok(())
    } else {
        Err(Error::usage(format!(
            "--grant {:?}: expected PRIVILEGES ON OBJECT, e.g. 'SELECT ON appdb.*' (MySQL) or 'SELECT ON ALL TABLES IN SCHEMA public' (PostgreSQL)",
            crate::text::Untrusted(g).to_string()
        )))
    }
}

fn quoted(name: &str) -> String {
    format!("\"{name}\"")
}

fn literal(name: &str) -> String {
    format!("'{name}'")
}

/// The documented statements, in order: create, the login rule, grants.
fn statements(dialect: Dialect, method: Method, name: &str, grants: &[String]) -> Vec<String> {
    let (create, rule, to) = if dialect == Dialect::Postgres {
        let user = quoted(name);
        let (with, group) = match method {
            Method::Iam => ("", "rds_iam"),
            Method::Kerberos => (" WITH LOGIN", "rds_ad"),
        };
        (
            format!("CREATE USER {user}{with}"),
            format!("GRANT {group} TO {user}"),
            user,
        )
    } else {
        // MySQL and MariaDB: the plugin's clause, then TLS required.
        let account = format!("{}@'%'", literal(name));
        let identified = match (dialect, method) {
            (Dialect::Mariadb, Method::Iam) => "VIA AWSAuthenticationPlugin USING 'RDS'",
            (Dialect::Mariadb, Method::Kerberos) => "VIA pam",
            (_, Method::Iam) => "WITH AWSAuthenticationPlugin AS 'RDS'",
            (_, Method::Kerberos) => "WITH 'auth_pam'",
        };
        (
            format!("CREATE USER {account} IDENTIFIED {identified}"),
            format!("ALTER USER {account} REQUIRE SSL"),
            account,
        )
    };
    let mut out = vec![create, rule];
    out.extend(grants.iter().map(|g| format!("GRANT {g} TO {to}")));
    out
}

/// With --instance / --cluster and --iam: the engine version must support
/// IAM database authentication (else nothing is created), and it must be
/// on for the new user to log in; if it is off, say how to turn it on.
async fn iam_precheck(
    global: &GlobalArgs,
    args: &UserCreateArgs,
    db: &crate::rds::Database,
) -> Result<()> {
    let too_old = crate::rds::iam_minimum(&db.engine, &db.engine_version);
    if too_old.is_none() && db.iam_auth {
        return Ok(());
    }
    // Only for the region of the commands it prints and for --enable-iam.
    let rds = crate::rds::Rds::connect(global).await?;
    if let Some(min) = too_old {
        return Err(Error::usage(format!(
            "IAM database authentication needs {} {min} or later, and {:#} {} runs {}: upgrade it first ({} --engine-version VERSION --region {}), then create the user",
            db.engine,
            db.kind,
            db.identifier,
            crate::text::escape(&db.engine_version),
            db.modify_command(),
            rds.region()
        )));
    }
    let command = format!(
        "{} --enable-iam-database-authentication --apply-immediately --region {}",
        db.modify_command(),
        rds.region()
    );
    if !args.enable_iam {
        output::warn(format!(
            "IAM database authentication is off on {:#} {}: the user is created, but logs in with a token only once it is on: {command} (or --enable-iam)",
            db.kind, db.identifier
        ));
        return Ok(());
    }
    if !args.yes
        && !confirmed(&format!(
            "Turn IAM database authentication on for {:#} {} now (applied immediately)? [y/N] ",
            db.kind, db.identifier
        ))?
    {
        return Err(Error::usage(
            "IAM database authentication left off (not confirmed)",
        ));
    }
    rds.enable_iam(db).await?;
    output::note(format!(
        "IAM database authentication turned on for {:#} {} ({command})",
        db.kind, db.identifier
    ));
    Ok(())
}

/// A yes on the terminal; without one, `--yes` is needed.
fn confirmed(question: &str) -> Result<bool> {
    use std::io::{BufRead, IsTerminal, Write};
    let Ok(tty) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/tty")
    else {
        return Err(Error::usage(
            "--enable-iam asks first: without a terminal, add --yes",
        ));
    };
    if !tty.is_terminal() {
        return Err(Error::usage(
            "--enable-iam asks first: without a terminal, add --yes",
        ));
    }
    let mut out = &tty;
    let _ = out.write_all(question.as_bytes());
    let mut answer = String::new();
    std::io::BufReader::new(&tty)
        .read_line(&mut answer)
        .map_err(|e| Error::new(Category::Runtime, e))?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes"))
}

fn report(
    global: &GlobalArgs,
    dialect: Dialect,
    user: String,
    method: Method,
    steps: Vec<Step>,
) -> Result<u8> {
    let changed = steps.iter().any(|s| s.status == "run");
    let plan = Plan {
        engine: match dialect {
            Dialect::Postgres => "postgres",
            Dialect::Mysql => "mysql",
            Dialect::Mariadb => "mariadb",
        },
        user,
        method,
        steps,
        changed,
    };
    output::emit(global.output, &plan, || text(&plan))?;
    Ok(0)
}

fn text(plan: &Plan) -> String {
    let dry = plan.steps.iter().all(|s| s.status == "planned");
    if dry {
        return plan
            .steps
            .iter()
            .map(|s| format!("{};", s.sql))
            .collect::<Vec<_>>()
            .join("\n");
    }
    let mut lines: Vec<String> = plan
        .steps
        .iter()
        .map(|s| match s.status {
            "exists" => format!("-- there already: {};", s.sql),
            _ => format!("{};", s.sql),
        })
        .collect();
    lines.push(if plan.changed {
        format!("-- {} is ready for {:?} logins", plan.user, plan.method)
    } else {
        format!("-- nothing to change: {} was there already", plan.user)
    });
    lines.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documented_statements() {
        assert_eq!(
            statements(
                Dialect::Mysql,
                Method::Iam,
                "jane_doe",
                &["SELECT ON appdb.*".into()]
            ),
            [
                "CREATE USER 'jane_doe'@'%' IDENTIFIED WITH AWSAuthenticationPlugin AS 'RDS'",
                "ALTER USER 'jane_doe'@'%' REQUIRE SSL",
                "GRANT SELECT ON appdb.* TO 'jane_doe'@'%'"
            ]
        );
        assert_eq!(
            statements(Dialect::Postgres, Method::Iam, "db_userx", &[]),
            ["CREATE USER \"db_userx\"", "GRANT rds_iam TO \"db_userx\""]
        );
        assert_eq!(
            statements(Dialect::Postgres, Method::Kerberos, "u@EXAMPLE.COM", &[]),
            [
                "CREATE USER \"u@EXAMPLE.COM\" WITH LOGIN",
                "GRANT rds_ad TO \"u@EXAMPLE.COM\""
            ]
        );
    }

    #[test]
    fn grants_cannot_carry_a_second_statement() {
        assert!(check_grant("SELECT, INSERT ON appdb.*").is_ok());
        assert!(check_grant("SELECT ON ALL TABLES IN SCHEMA public").is_ok());
        for bad in [
            "SELECT ON a.*; DROP DATABASE a",
            "SELECT ON a.* -- x",
            "SELECT ON 'a'",
            "ALL",
        ] {
            assert!(check_grant(bad).is_err(), "{bad}");
        }
    }
}
