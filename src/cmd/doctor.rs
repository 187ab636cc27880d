//! `rdsconn doctor`: a preflight checklist, each line OK / WARN / FAIL with
//! a fix (the checks are in `preflight`), ending with the staged
//! connection check of `rdsconn check`.

use crate::aws;
use crate::cli::{DoctorArgs, GlobalArgs, RdsSelector, SecretFlags};
use crate::error::{Category, Error, Result};
use crate::output::Status;
use crate::preflight::{self, Lines};
use crate::probe::{self, Item, Login, Settings};
use crate::rds::{Database, Rds};
use crate::resolve::{Ask, Found, Given, Request, Users, master_secret, password, request, roots};
use crate::target::{EngineKind, Host, Target, validate_user};
use crate::tls::{TlsMode, TlsPolicy};

pub(crate) async fn run(global: &GlobalArgs, args: &DoctorArgs) -> Result<u8> {
    let flags = &args.target;
    // An RDS-style secret alone is a whole target, as for `psql`/`mysql`.
    let typed = flags.url.is_some()
        || flags.host.is_some()
        || (flags.secret.secret.is_some() && !flags.rds.is_set());
    if typed == flags.rds.is_set() {
        return Err(Error::usage(
            "name one target: a URL, --host, --instance / --cluster, or an RDS-style --secret",
        ));
    }
    // A typed target is resolved now, one from the RDS API after the
    // database line has found it.
    let typed = if typed {
        Some(request(global, ask(args, Given::from(flags))).await?)
    } else {
        None
    };
    // --master-secret: the master user, unless one is named.
    let user = match &typed {
        Some(r) => Some(r.target.user.clone()),
        None => flags.user.clone(),
    };
    match &user {
        Some(u) => {
            validate_user(u)?;
        }
        None if flags.secret.master_secret => {}
        None => {
            return Err(Error::usage(
                "a database user is required: pass --user USER",
            ));
        }
    }
    let user = user.unwrap_or_default();
    let iam = typed.as_ref().map_or(flags.iam, |r| r.iam);
    let engine = typed.as_ref().and_then(|r| r.kind).or(args.engine);
    let host = typed.as_ref().map(|r| r.target.host.clone());
    let login = login(args, typed.as_ref(), iam, engine, host.as_ref(), &user)?;
    // A password user with a host or URL needs no AWS call: without
    // credentials the AWS lines SKIP and the connection is still checked.
    let aws_optional =
        !iam && !flags.rds.is_set() && flags.secret.secret.is_none() && !flags.secret.master_secret;
    let mut lines = Lines::new(global.output, aws_optional);
    let profile = global.profile.as_deref();

    // Region: the endpoint's (tokens are signed for it) vs the configuration.
    let endpoint_region = match &host {
        Some(h) => h.rds_region()?,
        None => None,
    };
    let configured = aws::configured_region(profile).await;
    let region = preflight::region_line(
        &mut lines,
        global.region.as_deref(),
        endpoint_region.as_deref(),
        configured,
    );

    let mut found: Option<Database> = None;
    let mut account: Option<String> = None;
    if let Some(region) = &region {
        match aws::credentials(profile, region).await {
            Ok(creds) => {
                preflight::credentials_line(&mut lines, &creds);
                let config = crate::rds::sdk_config(global, region).await?;
                account = preflight::identity_and_clock(&mut lines, &config).await;
                let rds = Rds::new(&config, region.clone());
                found =
                    preflight::database_line(&mut lines, &rds, &flags.rds, engine, host.as_ref())
                        .await;
                if let Some(db) = &found {
                    preflight::secret_line(&mut lines, &config, db).await;
                }
            }
            Err(e) => {
                lines.error("credentials", e);
                lines.skip("identity", "no credentials");
                lines.skip("database", "no credentials");
            }
        }
    } else {
        lines.skip("credentials", "no region");
    }
    if let Some(db) = &found {
        if iam {
            preflight::iam_lines(&mut lines, db, region.as_deref(), account.as_deref(), &user);
        }
        preflight::ca_line(&mut lines, global, db, region.as_deref())?;
    }

    // The connection, unless something above already failed.
    if lines.failed() {
        lines.skip("connection", "fix the failures above first");
    } else if let Some((kind, request)) =
        connection_target(&mut lines, global, args, typed, found.as_ref()).await?
    {
        let from_secret = request.secret.map(|s| Login::Password(s.password));
        let tls = request.tls;
        match login.or(from_secret) {
            Some(login) => {
                connection_lines(&mut lines, global, (kind, tls), request.target, login).await?;
            }
            None => lines.skip("connection", "no password"),
        }
    }

    lines.print()?;
    Ok(lines.exit_code())
}

/// The connection check's login, read before any network I/O, unless the
/// password is in Secrets Manager (`None`: it comes with the target).
fn login(
    args: &DoctorArgs,
    typed: Option<&Request>,
    iam: bool,
    engine: Option<EngineKind>,
    host: Option<&Host>,
    user: &str,
) -> Result<Option<Login>> {
    let flags = &args.target;
    if iam {
        return Ok(Some(Login::Iam));
    }
    if let Some(s) = typed.and_then(|r| r.secret.as_ref()) {
        return Ok(Some(Login::Password(s.password.clone())));
    }
    if flags.secret.secret.is_some() || flags.secret.master_secret {
        return Ok(None);
    }
    let env_var = engine.map_or("PGPASSWORD / MYSQL_PWD", EngineKind::password_env);
    let shown = host.map_or("the database", Host::as_str);
    let password = password(flags.password_stdin, env_var, user, shown)?;
    Ok(Some(Login::Password(password)))
}

/// How doctor resolves its target: as typed (no environment variables),
/// the RDS API's endpoint given to it as found.
fn ask(args: &DoctorArgs, given: Given) -> Ask<'_> {
    static NO_SECRET: SecretFlags = SecretFlags {
        secret: None,
        secret_region: None,
        master_secret: false,
    };
    static NO_LOOKUP: RdsSelector = RdsSelector {
        instance: None,
        cluster: None,
        reader: false,
        proxy: None,
        proxy_endpoint: None,
    };
    Ask {
        kind: args.engine,
        given,
        rds: &NO_LOOKUP,
        iam: args.target.iam,
        via: args.target.via.as_deref(),
        connect_timeout: args.connect_timeout.into(),
        users: Users::One,
        env: false,
        // The master secret is read here, from the database found.
        secret: if args.target.secret.master_secret {
            &NO_SECRET
        } else {
            &args.target.secret
        },
        tls: args.target.tls,
    }
}

/// The endpoint to connect to and its engine: the typed target's, else
/// the database's from the RDS API; `None` after a line saying why not.
async fn connection_target(
    lines: &mut Lines,
    global: &GlobalArgs,
    args: &DoctorArgs,
    typed: Option<Request>,
    found: Option<&Database>,
) -> Result<Option<(EngineKind, Request)>> {
    let request = match (typed, found) {
        (Some(r), _) => r,
        (None, Some(db)) => match Found::of(db, args.target.rds.reader) {
            Ok(f) => {
                let kind = f.kind;
                let mut given = Given::from(&args.target);
                let master = if args.target.secret.master_secret {
                    match master_secret(global, &f, &mut given).await {
                        Ok(s) => Some(s),
                        Err(e) => {
                            lines.error("connection", e);
                            return Ok(None);
                        }
                    }
                } else {
                    None
                };
                let mut r = request(global, ask(args, given.at(f))).await?;
                r.kind = r.kind.or(Some(kind));
                r.secret = r.secret.or(master);
                r
            }
            Err(e) => {
                lines.error("connection", e);
                return Ok(None);
            }
        },
        (None, None) => {
            lines.skip("connection", "no endpoint");
            return Ok(None);
        }
    };
    let Some(kind) = request.kind else {
        lines.fail(
            "connection",
            "the engine is unknown",
            Some("pass --engine mysql|postgres".into()),
            Category::Usage,
        );
        return Ok(None);
    };
    Ok(Some((kind, request)))
}

/// The staged check, one line per stage.
async fn connection_lines(
    lines: &mut Lines,
    global: &GlobalArgs,
    (kind, tls): (EngineKind, TlsMode),
    target: Target,
    login: Login,
) -> Result<()> {
    let policy = TlsPolicy {
        mode: tls,
        roots: roots(global, &target.host)?,
    };
    let settings = Settings {
        query: "SELECT 1".into(),
        warn_days: 30,
        wait: None,
        wait_all: false,
        progress: false,
    };
    let item = Item {
        label: target.describe(),
        kind,
        target,
        login,
        policy,
        global: global.clone(),
    };
    let report = Box::pin(probe::check_once(&item, &settings)).await;
    for stage in &report.stages {
        let detail = stage.detail.clone().unwrap_or_default();
        let check = stage_name(stage.name);
        match (stage.status, report.failure) {
            (Status::Ok, _) => lines.timed(stage.duration_ms).ok(check, detail),
            (Status::Fail, Some(failure)) => lines.timed(stage.duration_ms).fail(
                check,
                report.error.clone().unwrap_or(detail),
                report.hint.clone(),
                failure,
            ),
            _ => lines.skip(check, "an earlier stage failed"),
        }
    }
    Ok(())
}

/// Doctor's names for the connection stages.
fn stage_name(stage: probe::Step) -> &'static str {
    match stage {
        probe::Step::Tunnel => "connect: tunnel",
        probe::Step::Dns => "connect: dns",
        probe::Step::Tcp => "connect: tcp",
        probe::Step::Tls => "connect: tls",
        probe::Step::Auth => "connect: auth",
        probe::Step::Query => "connect: query",
    }
}
