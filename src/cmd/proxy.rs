//! `rdsconn proxy`: checks the flags, loads credentials, binds the
//! listeners, prints where it listens, serves until SIGINT / SIGTERM.

use std::io::IsTerminal;

use serde::Serialize;

use crate::cli::{GlobalArgs, OutputFormat, ProxyArgs};
use crate::error::{Error, Result};
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
    engine: &'static str,
    endpoint: String,
    dial_address: String,
    listen: &'a [String],
}

pub(crate) async fn run(global: &GlobalArgs, args: &ProxyArgs) -> Result<u8> {
    let kind = args.engine;
    // Everything typed is checked before any I/O.
    let listens = listens(args)?;
    let ask = Ask {
        kind: Some(kind),
        given: Given::try_from(args)?,
        rds: &args.rds,
        iam: args.iam,
        via: args.via.as_deref(),
        connect_timeout: args.connect_timeout.into(),
        users: Users::Any,
        env: true,
        secret: &args.secret,
        tls: args.tls,
    };
    let Request {
        target,
        iam,
        secret: from_secret,
        password: url_password,
        tls,
        ..
    } = request(global, ask).await?;
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

    let config = Config {
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
    };
    let stop = shutdown_signal()?;
    raise_file_limit();
    let proxy = Proxy::bind(config, &listens).await?;
    let addresses = proxy.addresses();
    match global.output {
        OutputFormat::Json => output::json(&Started {
            engine: kind.name(),
            endpoint: target.endpoint(),
            dial_address: target.dial_address(),
            listen: &addresses,
        })?,
        OutputFormat::Text => {
            let mut text = String::new();
            for a in &addresses {
                text.push_str("listening on ");
                text.push_str(a);
                text.push('\n');
            }
            output::raw(text.as_bytes())?;
        }
    }
    if let Some(first) = addresses.first() {
        tracing::info!(
            "forwarding to {} over verified TLS; connect with: {}",
            target.describe(),
            proxy::connect_hint(kind, first)
        );
    }
    let drained = proxy.serve(stop, args.shutdown_grace.into()).await;
    if drained.cut > 0 {
        tracing::warn!(
            "closed {} connection(s) still open after the grace period",
            drained.cut
        );
    }
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
        args.engine.password_env(),
        only_user.unwrap_or("the proxy's users"),
        target.host.as_str(),
    )?))
}

/// Each client holds two descriptors (its socket and the upstream's): the
/// soft limit on open files (often 1024) is raised to the hard limit, as
/// servers do.
fn raise_file_limit() {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    if let Some(max) = limit.maximum
        && limit.current.is_some_and(|c| c < max)
    {
        let raised = rustix::process::Rlimit {
            current: Some(max),
            maximum: Some(max),
        };
        if let Err(e) = setrlimit(Resource::Nofile, raised) {
            tracing::debug!("raising the open-file limit to {max}: {e}");
        }
    }
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

/// A future that completes on the first SIGINT or SIGTERM; the handlers
/// are installed before it returns (before the addresses are printed).
fn shutdown_signal() -> Result<impl std::future::Future<Output = ()>> {
    let mut stop = crate::signals::StopSignals::install()?;
    Ok(async move {
        let signal = stop.recv().await;
        tracing::warn!("{}: shutting down", signal.name());
    })
}
