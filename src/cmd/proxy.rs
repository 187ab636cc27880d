//! `rdsconn proxy`: checks the flags, loads credentials, binds the
//! listeners, prints where it listens, serves until SIGINT / SIGTERM.

use std::io::IsTerminal;

use serde::Serialize;

use std::net::SocketAddr;
use std::sync::Arc;

use crate::cli::{
    GlobalArgs, OutputFormat, ProxyAction, ProxyArgs, ProxyShutdownArgs, ProxyWaitArgs,
};
use crate::config::Named;
use crate::error::{Error, Result};
use crate::ops;
use crate::output;
use crate::proxy::{self, Config, Listen, Proxy, Secrets};
use crate::resolve::{Ask, Given, Request, Users, env, password, request};
use crate::secret::Secret;
use crate::tls::TlsPolicy;

/// The environment variable `--local-password` reads.
const LOCAL_PASSWORD_ENV: &str = "RDSCONN_LOCAL_PASSWORD";

/// `--output json` at start-up; field names are part of the interface.
#[derive(Serialize)]
struct Started<'a> {
    /// The `--config` table's name (absent for the command line's target).
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    engine: &'static str,
    endpoint: String,
    dial_address: String,
    listen: &'a [String],
}

pub(crate) async fn run(global: &GlobalArgs, args: &ProxyArgs) -> Result<u8> {
    match &args.action {
        Some(ProxyAction::Wait(w)) => return wait(w).await,
        Some(ProxyAction::Shutdown(s)) => return shutdown(s).await,
        None => {}
    }
    // Everything typed (the file's targets too) is checked before any I/O.
    let named = targets(global, args)?;
    // Installed first: a signal that comes at any point is seen.
    let stops = ops::drain::Stops::install()?;
    // Every port is bound before anything is served: one in use is exit 2.
    let http = bind_if(
        args.health_check || args.prometheus,
        SocketAddr::new(args.http_address, args.http_port),
        "--http-port",
    )
    .await?;
    let admin = bind_if(
        args.quitquitquit,
        SocketAddr::from(([127, 0, 0, 1], args.admin_port)),
        "--admin-port",
    )
    .await?;
    let mut prepared = Vec::with_capacity(named.len());
    for t in &named {
        prepared.push(prepare(t, args).await?);
    }
    proxy::raise_file_limit();
    let health = Arc::new(ops::Health::default());
    let mut serving = Vec::with_capacity(prepared.len());
    let mut started = Vec::with_capacity(prepared.len());
    let mut pools = Vec::new();
    for p in prepared {
        let proxy = Proxy::bind(p.config, &p.listens).await?;
        health.watch(proxy.open_connections(), proxy.max_connections());
        started.push((p.name.clone(), p.kind, p.target, proxy.addresses()));
        pools.extend(proxy.pools());
        let check = args
            .upstream_check_interval
            .zip(p.check_user)
            .map(|(every, user)| (every, user, proxy.upstream_probe()));
        serving.push((p.name, proxy, check));
    }
    print_started(global.output, &started)?;
    let _listeners = serve_http(args, &health, http, admin, pools);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let (hurry_tx, hurry_rx) = tokio::sync::watch::channel(false);
    let (mut serves, mut checks) = (tokio::task::JoinSet::new(), tokio::task::JoinSet::new());
    for (name, proxy, check) in serving {
        if let Some((every, user, probe)) = check {
            let health = Arc::clone(&health);
            checks.spawn(async move {
                loop {
                    health.upstream_checked(&name, probe.login(&user).await);
                    tokio::time::sleep(every.into()).await;
                }
            });
        }
        let (mut stop, mut hurry) = (stop_rx.clone(), hurry_rx.clone());
        let grace = args.max_sigterm_delay.into();
        serves.spawn(async move {
            let drained = proxy
                .serve(
                    async move {
                        let _ = stop.wait_for(|s| *s).await;
                    },
                    grace,
                    async move {
                        let _ = hurry.wait_for(|h| *h).await;
                    },
                )
                .await;
            if drained.cut > 0 {
                tracing::warn!(
                    "closed {} connection(s) still open after the grace period",
                    drained.cut
                );
            }
        });
    }
    health.started();
    ops::notify::notify("READY=1");
    stops.first(&health, args.min_sigterm_delay.into()).await;
    let _ = stop_tx.send(true);
    tokio::select! {
        () = stops.second() => {
            let _ = hurry_tx.send(true);
        }
        () = async { while serves.join_next().await.is_some() {} } => {}
    }
    // After a second signal each proxy closes what is still open, each
    // with its log line, at once.
    while serves.join_next().await.is_some() {}
    checks.abort_all();
    Ok(match stops.why() {
        Some(_) if args.exit_zero_on_sigterm => 0,
        Some(stop) => stop.exit_code(),
        None => 0,
    })
}

/// The targets to serve: the command line's, or each `[targets.NAME]` of
/// `--config` (target flags on the command line are then an error).
fn targets(global: &GlobalArgs, args: &ProxyArgs) -> Result<Vec<Named>> {
    let Some(file) = &args.config else {
        return Ok(vec![Named {
            name: None,
            global: global.clone(),
            args: args.clone(),
        }]);
    };
    let typed = args.engine.is_some()
        || args.url.is_some()
        || args.host.is_some()
        || args.rds.is_set()
        || !args.listen.is_empty()
        || args.secret.secret.is_some();
    if typed {
        return Err(Error::usage(
            "--config names the targets: put ENGINE, --host, --listen and the like in its [targets.NAME] tables",
        ));
    }
    crate::config::proxy_targets(file, global)
}

/// A target ready to bind: its configuration and listeners, and the user
/// the connection test and `/upstream` log in as.
struct Prepared {
    name: String,
    kind: crate::target::EngineKind,
    target: crate::target::Target,
    config: Config,
    listens: Vec<Listen>,
    check_user: Option<String>,
}

/// Resolves a target (the RDS API, secrets, credentials) and runs the
/// connection test; the operations flags are the command line's (`ops`).
async fn prepare(named: &Named, ops: &ProxyArgs) -> Result<Prepared> {
    let (global, args) = (&named.global, &named.args);
    let kind = args
        .engine
        .ok_or_else(|| Error::usage("an engine is required: rdsconn proxy mysql|postgres …"))?;
    let listens = listens(args)?;
    // The pool flags are checked before anything is read or dialed.
    pool_settings(args, kind)?;
    let ask = Ask {
        kind: Some(kind),
        given: Given::try_from(args)?,
        rds: &args.rds,
        iam: args.iam,
        via: args.via.as_deref(),
        connect_timeout: args.connect_timeout.into(),
        users: Users::Any,
        env: named.name.is_none(),
        secret: &args.secret,
        tls: args.tls,
    };
    let request = request(global, ask).await?;
    let target = request.target.clone();
    let mut config = config(global, args, kind, &listens, request).await?;
    config.name.clone_from(&named.name);
    let check_user = connection_test(ops, &config, &target).await?;
    Ok(Prepared {
        name: named.name.clone().unwrap_or_else(|| "default".into()),
        kind,
        target,
        config,
        listens,
        check_user,
    })
}

/// The proxy's configuration for the resolved target.
async fn config(
    global: &GlobalArgs,
    args: &ProxyArgs,
    kind: crate::target::EngineKind,
    listens: &[Listen],
    request: Request,
) -> Result<Config> {
    let Request {
        target,
        iam,
        secret: from_secret,
        password: url_password,
        tls,
        ..
    } = request;
    // --user, else the URL's: the only user served.
    let only_user = Some(target.user.clone()).filter(|u| !u.is_empty());
    let local_password = args.local_password.then(local_password).transpose()?;
    if listens.iter().any(|l| !l.is_local()) && local_password.is_none() {
        output::warn(
            "no --local-password: anyone who reaches the proxy connects as the database user they name",
        );
    }

    let roots = crate::resolve::roots(global, &target.host)?;
    let secrets = secrets(
        global,
        args,
        &target,
        iam,
        only_user.as_deref(),
        (from_secret, url_password),
    )
    .await?;

    Ok(Config {
        name: None,
        kind,
        host: target.host.clone(),
        port: target.port,
        via: target.via.clone(),
        connect_timeout: target.connect_timeout,
        policy: TlsPolicy { mode: tls, roots },
        secrets,
        local_password,
        only_user,
        max_connections: args.max_connections.map(|n| n as usize),
        client_login_timeout: args.client_login_timeout.into(),
        pool: pool_settings(args, kind)?,
    })
}

/// Serves the HTTP listener (health, metrics, pools) and the admin port
/// while the handles live.
fn serve_http(
    args: &ProxyArgs,
    health: &Arc<ops::Health>,
    http: Option<tokio::net::TcpListener>,
    admin: Option<tokio::net::TcpListener>,
    pools: Vec<Arc<dyn proxy::pool::PoolList>>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let health_routes = args.health_check.then(|| Arc::clone(health));
    let routes = ops::http::health_routes(health_routes, args.prometheus, pools);
    let mut handles: Vec<_> = http
        .map(|l| ops::http::spawn(l, routes))
        .into_iter()
        .collect();
    handles.extend(admin.map(|l| ops::http::spawn(l, ops::http::admin_routes(Arc::clone(health)))));
    handles
}

/// A listener for the ops surface when its flag is on.
async fn bind_if(
    on: bool,
    addr: SocketAddr,
    flag: &str,
) -> Result<Option<tokio::net::TcpListener>> {
    if on {
        ops::http::bind(addr, flag).await.map(Some)
    } else {
        Ok(None)
    }
}

/// `--run-connection-test`: one upstream login before listening. Returns
/// the user the background check logs in as, when one is needed.
async fn connection_test(
    args: &ProxyArgs,
    config: &Config,
    target: &crate::target::Target,
) -> Result<Option<String>> {
    if !args.run_connection_test && args.upstream_check_interval.is_none() {
        return Ok(None);
    }
    let Some(user) = config.only_user.clone() else {
        return Err(Error::usage(
            "--run-connection-test and --upstream-check-interval log in as the proxy's one user: pass -u USER (or --secret)",
        ));
    };
    if args.run_connection_test {
        config.login_once(&user).await.map_err(|e| {
            Error::from(e).context(format!(
                "the connection test to {} as {user}",
                target.describe()
            ))
        })?;
        tracing::info!(
            "connection test passed: logged in to {} as {user}",
            target.describe()
        );
    }
    Ok(Some(user))
}

/// Where the proxy listens, on stdout: a line per address, or one JSON
/// document (with `--config`, `{"targets": [...]}`, each with its name).
fn print_started(
    format: OutputFormat,
    started: &[(
        String,
        crate::target::EngineKind,
        crate::target::Target,
        Vec<String>,
    )],
) -> Result<()> {
    let docs: Vec<Started<'_>> = started
        .iter()
        .map(|(name, kind, target, addresses)| Started {
            name: (started.len() > 1 || name != "default").then_some(name.as_str()),
            engine: kind.name(),
            endpoint: target.endpoint(),
            dial_address: target.dial_address(),
            listen: addresses,
        })
        .collect();
    match (format, docs.as_slice()) {
        (OutputFormat::Json, [one]) if one.name.is_none() => output::json(one)?,
        (OutputFormat::Json, _) => output::json(&serde_json::json!({ "targets": docs }))?,
        (OutputFormat::Text, _) => {
            let mut text = String::new();
            for (_, _, _, addresses) in started {
                for a in addresses {
                    text.push_str("listening on ");
                    text.push_str(a);
                    text.push('\n');
                }
            }
            output::raw(text.as_bytes())?;
        }
    }
    for (name, kind, target, addresses) in started {
        if let Some(first) = addresses.first() {
            tracing::info!(
                "{name}: forwarding to {} over verified TLS; connect with: {}",
                target.describe(),
                proxy::connect_hint(*kind, first)
            );
        }
    }
    Ok(())
}

/// `rdsconn proxy wait`: exit 0 once `/startup` answers 200.
async fn wait(args: &ProxyWaitArgs) -> Result<u8> {
    ops::client::wait_started(
        SocketAddr::new(args.http_address, args.http_port),
        *args.max,
    )
    .await?;
    Ok(0)
}

/// `rdsconn proxy shutdown`: `POST /quitquitquit` on the admin port.
async fn shutdown(args: &ProxyShutdownArgs) -> Result<u8> {
    ops::client::quit(args.admin_port).await?;
    Ok(0)
}

/// IAM (credentials loaded now, so that missing ones fail before the
/// proxy listens) or the password.
async fn secrets(
    global: &GlobalArgs,
    args: &ProxyArgs,
    target: &crate::target::Target,
    url_iam: bool,
    only_user: Option<&str>,
    (from_secret, from_url): (Option<crate::resolve::FromSecret>, Option<Secret>),
) -> Result<Secrets> {
    if let Some(p) = from_url {
        return Ok(Secrets::Password(p));
    }
    if let Some(s) = from_secret {
        return Ok(Secrets::Secret(crate::secrets::SecretCache::new(
            global.clone(),
            s.source,
            s.password,
        )));
    }
    if args.iam || url_iam {
        let region = crate::iam::signing_region(global, &target.host).await?;
        let creds = crate::aws::credentials(global.profile.as_deref(), &region).await?;
        return Ok(Secrets::iam(target, region, global.profile.clone(), creds));
    }
    Ok(Secrets::Password(password(
        args.password_stdin,
        args.engine
            .map_or("PGPASSWORD", crate::target::EngineKind::password_env),
        only_user.unwrap_or("the proxy's users"),
        target.host.as_str(),
    )?))
}

/// `--listen` values, loopback unless `--allow-remote`.
fn listens(args: &ProxyArgs) -> Result<Vec<Listen>> {
    let listens = if args.listen.is_empty() {
        vec![Listen::parse("127.0.0.1:0")?]
    } else {
        args.listen
            .iter()
            .map(|l| Listen::parse(l))
            .collect::<Result<Vec<_>>>()?
    };
    for l in &listens {
        if !l.is_local() {
            if !args.allow_remote {
                return Err(Error::usage(format!(
                    "--listen {l} is reachable from other machines; pass --allow-remote to mean it"
                ))
                .with_hint("127.0.0.1:PORT or unix:PATH keep the proxy to this machine"));
            }
            output::warn(format!(
                "--listen {l}: other machines can connect to this proxy"
            ));
        }
    }
    Ok(listens)
}

/// `--local-password`: `RDSCONN_LOCAL_PASSWORD`, else a no-echo prompt.
fn local_password() -> Result<Secret> {
    if let Some(pw) = env(LOCAL_PASSWORD_ENV) {
        return Ok(Secret::new(pw));
    }
    if std::io::stdin().is_terminal() {
        return rpassword::prompt_password("Local password for the proxy's clients: ")
            .map(Secret::new)
            .map_err(|e| Error::usage(format!("reading the local password: {e}")))
            .and_then(|p| {
                if p.expose().is_empty() {
                    Err(Error::usage("the local password is empty"))
                } else {
                    Ok(p)
                }
            });
    }
    Err(Error::usage(format!(
        "--local-password: set {LOCAL_PASSWORD_ENV} (or run on a terminal to be asked)"
    )))
}

/// The pool flags, checked against the engine.
fn pool_settings(
    args: &ProxyArgs,
    kind: crate::target::EngineKind,
) -> Result<proxy::pool::Settings> {
    use proxy::pool::PoolMode;
    if args.pool_mode == PoolMode::Transaction && kind == crate::target::EngineKind::Mysql {
        return Err(Error::usage(
            "--pool-mode transaction is PostgreSQL's: MySQL sessions carry state a transaction pool cannot move (use --pool-mode session)",
        ));
    }
    if args.min_pool_size > args.pool_size {
        return Err(Error::usage(format!(
            "--min-pool-size {} is more than --pool-size {}",
            args.min_pool_size, args.pool_size
        )));
    }
    Ok(proxy::pool::Settings {
        mode: args.pool_mode,
        size: args.pool_size as usize,
        min_size: args.min_pool_size as usize,
        idle_timeout: args.server_idle_timeout.into(),
        lifetime: args.server_lifetime.into(),
        timeout: args.pool_timeout.into(),
        logins: Arc::new(proxy::pool::LoginRate::new(args.max_logins_per_second)),
    })
}
