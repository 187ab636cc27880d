//! `rdsconn audit --connect`: what the API cannot see, asked of the
//! database over a verified connection: sessions connected right now
//! without TLS, users the server lets in without TLS, TLS off on the
//! server, and the users that log in with IAM (an inventory).

use crate::cli::{AuditArgs, GlobalArgs, RdsSelector, SecretFlags, Severity};
use crate::engine::Session;
use crate::error::{Error, Result};
use crate::resolve::{Ask, Given, PasswordFrom, Prompt, Users, log_in, request};
use crate::secret::Secret;
use crate::target::EngineKind;

/// One live finding: severity, check, evidence, fix.
pub(crate) type Live = (Severity, &'static str, String, String);

/// The check naming the users that log in with IAM.
pub(crate) const IAM_USERS: &str = "iam-users";

/// Connects to the database `rds` selects (or the `--host` target) with
/// the audit's credentials and runs the live checks. `password`: the one
/// `--password-stdin` read (stdin is read once for every database).
pub(crate) async fn audit(
    global: &GlobalArgs,
    args: &AuditArgs,
    rds: &RdsSelector,
    password: Option<&Secret>,
) -> Result<Vec<Live>> {
    let secret = SecretFlags {
        secret: args.secret.clone(),
        secret_region: None,
        master_secret: args.master_secret,
    };
    let ask = Ask {
        kind: args.engine,
        given: Given {
            url: None,
            host: args.host.clone(),
            port: args.port,
            user: args.user.clone(),
            database: args.database.clone(),
            class: None,
        },
        rds,
        iam: args.iam,
        via: args.via.as_deref(),
        connect_timeout: args.connect_timeout.into(),
        users: Users::One,
        env: true,
        secret: &secret,
        tls: crate::tls::TlsMode::VerifyFull,
    };
    let req = request(global, ask).await?;
    let kind = req.engine()?;
    let from = PasswordFrom {
        read: password,
        stdin: false,
        prompt: Prompt::Never,
    };
    let mut session = log_in(global, &req, &from).await?;
    let found = match kind {
        EngineKind::Postgres => postgres(&mut *session).await,
        EngineKind::Mysql => mysql(&mut *session).await,
    };
    session.close().await;
    found
}

/// Every row of `sql`'s first result.
async fn rows(session: &mut dyn Session, sql: &str) -> Result<Vec<Vec<Option<String>>>> {
    let sets = session.execute(sql).await.map_err(Error::from)?;
    Ok(sets.into_iter().next().map(|s| s.rows).unwrap_or_default())
}

fn cell(row: &[Option<String>], i: usize) -> String {
    row.get(i).cloned().flatten().unwrap_or_default()
}

/// "a, b, c (and N more)".
fn listed(items: &[String]) -> String {
    let shown: Vec<&str> = items.iter().take(10).map(String::as_str).collect();
    let more = items.len().saturating_sub(10);
    if more > 0 {
        format!("{} (and {more} more)", shown.join(", "))
    } else {
        shown.join(", ")
    }
}

/// The inventory finding for the users that log in with IAM, if any.
fn iam_users(rows: &[Vec<Option<String>>]) -> Option<Live> {
    let names: Vec<String> = rows.iter().map(|r| cell(r, 0)).collect();
    (!names.is_empty()).then(|| {
        (
            Severity::Info,
            IAM_USERS,
            format!("{} user(s) log in with IAM: {}", names.len(), listed(&names)),
            "none needed: rdsconn policy -u USER prints the IAM policy that lets a principal log in as one".into(),
        )
    })
}

async fn postgres(session: &mut dyn Session) -> Result<Vec<Live>> {
    let mut out = Vec::new();
    let settings = rows(
        session,
        "SELECT current_setting('ssl'), coalesce(current_setting('rds.force_ssl', true), '')",
    )
    .await?;
    let row = settings.first().cloned().unwrap_or_default();
    let (ssl, force) = (cell(&row, 0), cell(&row, 1));
    if ssl != "on" {
        out.push((
            Severity::Critical,
            "server-tls-off",
            "ssl = off: the server accepts no TLS connection".into(),
            "turn TLS on (RDS always has it; a server of your own: ssl = on)".into(),
        ));
    }
    let plain = rows(
        session,
        "SELECT coalesce(a.usename, '?') || '@' || coalesce(host(a.client_addr), 'local') || ' (' || coalesce(nullif(a.application_name, ''), '-') || ')' \
         FROM pg_stat_activity a JOIN pg_stat_ssl s ON s.pid = a.pid \
         WHERE a.backend_type = 'client backend' AND NOT s.ssl ORDER BY 1",
    )
    .await?;
    if !plain.is_empty() {
        let who: Vec<String> = plain.iter().map(|r| cell(r, 0)).collect();
        out.push((
            Severity::High,
            "sessions-without-tls",
            format!("{} session(s) connected without TLS now: {}", who.len(), listed(&who)),
            "set rds.force_ssl = 1 in the parameter group (see tls-not-enforced), then reconnect those clients with sslmode=verify-full".into(),
        ));
    }
    let iam = rows(
        session,
        "SELECT r.rolname FROM pg_roles r WHERE r.rolcanlogin AND NOT r.rolsuper \
         AND pg_has_role(r.oid, to_regrole('rds_iam'), 'MEMBER') ORDER BY 1",
    )
    .await?;
    out.extend(iam_users(&iam));
    if force == "0" {
        let users = rows(
            session,
            "SELECT rolname FROM pg_roles WHERE rolcanlogin AND rolname NOT LIKE 'rds%' ORDER BY 1",
        )
        .await?;
        let names: Vec<String> = users.iter().map(|r| cell(r, 0)).collect();
        if !names.is_empty() {
            out.push((
                Severity::Medium,
                "users-allowed-without-tls",
                format!(
                    "rds.force_ssl = 0: {} login role(s) may connect without TLS: {}",
                    names.len(),
                    listed(&names)
                ),
                "set rds.force_ssl = 1 in the parameter group".into(),
            ));
        }
    }
    Ok(out)
}

async fn mysql(session: &mut dyn Session) -> Result<Vec<Live>> {
    let mut out = Vec::new();
    let vars = rows(session, "SELECT @@have_ssl, @@require_secure_transport")
        .await
        .or_else(|_| Ok::<_, Error>(vec![vec![Some("YES".into()), Some("0".into())]]))?;
    let row = vars.first().cloned().unwrap_or_default();
    let (have, require) = (cell(&row, 0), cell(&row, 1));
    if have.eq_ignore_ascii_case("DISABLED") || have.eq_ignore_ascii_case("NO") {
        out.push((
            Severity::Critical,
            "server-tls-off",
            format!("have_ssl = {have}: the server accepts no TLS connection"),
            "turn TLS on (RDS always has it)".into(),
        ));
    }
    // Sessions without TLS, where performance_schema keeps them.
    if let Ok(plain) = rows(
        session,
        "SELECT CONCAT(t.PROCESSLIST_USER, '@', t.PROCESSLIST_HOST) FROM performance_schema.threads t \
         JOIN performance_schema.status_by_thread s ON s.THREAD_ID = t.THREAD_ID AND s.VARIABLE_NAME = 'Ssl_version' \
         WHERE t.TYPE = 'FOREGROUND' AND t.PROCESSLIST_USER IS NOT NULL AND s.VARIABLE_VALUE = '' ORDER BY 1",
    )
    .await
        && !plain.is_empty()
    {
        let who: Vec<String> = plain.iter().map(|r| cell(r, 0)).collect();
        out.push((
            Severity::High,
            "sessions-without-tls",
            format!("{} session(s) connected without TLS now: {}", who.len(), listed(&who)),
            "set require_secure_transport = 1 in the parameter group, then reconnect those clients with --ssl-mode=VERIFY_IDENTITY".into(),
        ));
    }
    let iam = rows(
        session,
        "SELECT CONCAT(user, '@', host) FROM mysql.user WHERE plugin = 'AWSAuthenticationPlugin' ORDER BY 1",
    )
    .await?;
    out.extend(iam_users(&iam));
    let enforced = matches!(require.to_ascii_uppercase().as_str(), "1" | "ON");
    if !enforced {
        let users = rows(
            session,
            "SELECT CONCAT(user, '@', host) FROM mysql.user WHERE ssl_type = '' \
             AND plugin <> 'AWSAuthenticationPlugin' AND user NOT IN ('rdsadmin', 'mysql.sys', 'mysql.session', 'mysql.infoschema', 'mariadb.sys', '') ORDER BY 1",
        )
        .await?;
        let names: Vec<String> = users.iter().map(|r| cell(r, 0)).collect();
        if !names.is_empty() {
            out.push((
                Severity::Medium,
                "users-without-require-ssl",
                format!(
                    "require_secure_transport is off and {} user(s) have no REQUIRE SSL: {}",
                    names.len(),
                    listed(&names)
                ),
                "ALTER USER 'NAME'@'HOST' REQUIRE SSL for each, or require_secure_transport = 1 in the parameter group".into(),
            ));
        }
    }
    Ok(out)
}
