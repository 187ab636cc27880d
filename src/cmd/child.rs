//! `rdsconn env` and `rdsconn exec`: a connection's settings for other
//! programs, as shell variables or in a child's environment.

use crate::cli::{ChildArgs, EnvArgs, ExecArgs, GlobalArgs, OutputFormat};
use crate::error::Result;
use crate::native::{self, ClientConn, EnvVar, Launch, Shell};
use crate::output;
use crate::resolve::{
    Ask, Given, Prompt, Request, Users, ca_file, password_file, password_with, request, via_addr,
};
use crate::secret::Secret;

/// `env` and `exec` do not connect; this only bounds `--via`'s DNS lookup.
const LOOKUP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

pub(crate) async fn env(global: &GlobalArgs, args: &EnvArgs) -> Result<u8> {
    let shell = args.shell.unwrap_or(match global.output {
        OutputFormat::Json => Shell::Json,
        OutputFormat::Text => Shell::Sh,
    });
    let prepared = prepare(global, &args.target, false).await?;
    let vars = prepared.vars();
    output::raw(native::render(&vars, shell)?.as_bytes())?;
    Ok(0)
}

pub(crate) async fn exec(global: &GlobalArgs, args: &ExecArgs) -> Result<u8> {
    let (program, rest) = args
        .command
        .split_first()
        .ok_or_else(|| crate::error::Error::usage("a command is required after --"))?;
    // A known client is held to the same rules as the hand-off's.
    let family = crate::clientargs::Family::of_program(std::path::Path::new(program));
    if let Some(family) = family {
        crate::clientargs::check(family, rest)?;
    }
    // MariaDB's tools read neither MYSQL_HOST nor MYSQL_USER, and each
    // flavour knows only its own TLS options: an option file in the
    // program's own dialect says it all.
    let mysql_tool = family == Some(crate::clientargs::Family::Mysql);
    let prepared = prepare(global, &args.target, true).await?;
    if prepared.target.via.is_some() {
        return through_proxy(global, prepared, (program, rest), mysql_tool).await;
    }
    let mut launch = Launch {
        program: program.into(),
        args: rest.to_vec(),
        env: prepared.vars(),
        env_remove: &[],
        secret_file: None,
    };
    if mysql_tool {
        native::mysql_tool(&mut launch, &prepared.conn())?;
    }
    native::run(launch)
}

/// `exec` with any `--via` (a tunnel rdsconn opens, or a port-forward
/// made by hand): the command talks to rdsconn's proxy on a private unix
/// socket (the variables say where, with a one-time password), which logs
/// in upstream through the dial path with the endpoint verified, a fresh
/// token per connection for IAM. Every driver can use that socket, where
/// none but libpq can dial a port-forward while verifying the endpoint's
/// name. Tunnel and proxy live as long as the command.
async fn through_proxy(
    global: &GlobalArgs,
    prepared: Prepared,
    (program, rest): (&std::ffi::OsString, &[std::ffi::OsString]),
    mysql_tool: bool,
) -> Result<u8> {
    let kind = prepared.kind;
    // The tunnel first: a bastion that cannot be reached is rdsconn's
    // error (exit 4, ssh's words), not the command's.
    let target = &prepared.target;
    let set_up = Box::pin(crate::net::tunnel::ensure(target));
    crate::net::within(target.connect_timeout, "tunnel set-up", set_up)
        .await
        .map_err(|e| {
            crate::error::Error::from(e).context(format!("connecting to {}", target.describe()))
        })?;
    let secrets = crate::proxy::Secrets::minted_or(
        prepared.minted,
        prepared.secret.clone(),
        &prepared.target,
        global.profile.clone(),
    );
    let policy = crate::tls::TlsPolicy {
        mode: prepared.tls,
        roots: crate::resolve::roots(global, &prepared.target.host)?,
    };
    let client = prepared.client;
    crate::proxy::serving(kind, &prepared.target, policy, secrets, |conn| {
        let mut launch = Launch {
            program: program.into(),
            args: rest.to_vec(),
            env: client.socket_env(conn),
            env_remove: &[],
            secret_file: None,
        };
        if mysql_tool {
            native::mysql_tool(&mut launch, conn)?;
        }
        Ok(launch)
    })
    .await
}

/// What `env` and `exec` hand on: the target with its password or a
/// freshly minted token, the CA file, and where the password came from.
struct Prepared {
    kind: crate::target::EngineKind,
    /// The token's signing details, for the tunnel's proxy to mint more.
    minted: Option<crate::iam::Minted>,
    client: &'static dyn native::Client,
    target: crate::target::Target,
    secret: Secret,
    iam: bool,
    tls: crate::tls::TlsMode,
    ca_file: std::path::PathBuf,
    rds_bundle: bool,
    via_addr: Option<std::net::IpAddr>,
    source: Option<EnvVar>,
}

impl Prepared {
    fn conn(&self) -> ClientConn<'_> {
        ClientConn {
            target: &self.target,
            secret: &self.secret,
            iam: self.iam,
            mode: self.tls,
            ca_file: &self.ca_file,
            rds_bundle: self.rds_bundle,
            via_addr: self.via_addr,
            socket: None,
        }
    }

    /// The engine's variables (see [`native::Client::env`]) and the
    /// password's source.
    fn vars(&self) -> Vec<EnvVar> {
        let mut vars = self.client.env(&self.conn());
        vars.extend(
            self.source
                .iter()
                .map(|s| EnvVar::new(s.name, s.value.clone())),
        );
        if let Some(m) = &self.minted {
            // When the token in the password variable stops being accepted.
            let expires = humantime::format_rfc3339_seconds(m.issued_at + m.lifetime);
            vars.push(EnvVar::new("RDSCONN_TOKEN_EXPIRES_AT", expires.to_string()));
        }
        vars
    }
}

/// The target, with a freshly minted token (`--iam`) or the password;
/// a tunnel only when `served` (`exec`: any `--via` is served through
/// rdsconn's proxy).
async fn prepare(global: &GlobalArgs, args: &ChildArgs, served: bool) -> Result<Prepared> {
    let (kind, flags) = (args.engine, &args.target);
    let ask = Ask {
        kind: Some(kind),
        given: Given::from(flags),
        rds: &flags.rds,
        iam: flags.iam,
        via: flags.via.as_deref(),
        connect_timeout: LOOKUP_TIMEOUT,
        users: Users::One,
        env: true,
        secret: &flags.secret,
        tls: flags.tls,
    };
    let Request {
        target,
        iam,
        secret: from_secret,
        password: url_password,
        tls,
        ..
    } = request(global, ask).await?;
    if let Some(via) = target.tunnel().filter(|_| !served) {
        // The tunnel is rdsconn's and ends with it: `env` would print
        // settings for a tunnel that is gone.
        return Err(crate::error::Error::usage(format!(
            "--via {via}: the tunnel lives only while rdsconn runs, so `env` cannot hand it to another program"
        ))
        .with_hint(format!(
            "run the program under `rdsconn exec {0} … --via {via} -- PROGRAM`, or point it at `rdsconn proxy {0} … --via {via}`",
            kind.name()
        )));
    }
    let client = native::for_kind(kind);
    let served = served && target.via.is_some();
    if !served {
        client.check(&target, tls)?;
    }
    // Where the password came from, for scripts (never the value).
    let mut source = None;
    let mut minted = None;
    let secret = if iam {
        let m = crate::iam::mint(global, &target.host, target.port, &target.user).await?;
        let token = Secret::new(m.token.clone());
        minted = Some(m);
        token
    } else if let Some(p) = url_password {
        p
    } else if let Some(s) = from_secret {
        source = Some(EnvVar::new(
            "RDSCONN_PASSWORD_SOURCE",
            format!("secretsmanager:{}", s.source.id),
        ));
        s.password
    } else {
        password_with(
            flags.password_stdin,
            Prompt::Auto,
            kind.password_env(),
            (&target.user, target.host.as_str()),
            || password_file(kind, &target, None),
        )?
    };
    let ca_file = ca_file(global, &target.host)?;
    let rds_bundle = global.ca_bundle.is_none()
        && crate::ca::Trust::for_host(&target.host) == crate::ca::Trust::RdsBundle;
    let via_addr = if served {
        None
    } else {
        via_addr(&target).await?
    };
    if target.via.is_some() && !served {
        output::warn(format!(
            "through --via only the client's own variables are set ({}): other drivers \
             cannot dial the tunnel while verifying {}; for them, run the program under \
             `rdsconn exec … --via …`, or point them at `rdsconn proxy`",
            if kind == crate::target::EngineKind::Postgres {
                "libpq's PGHOSTADDR"
            } else {
                "MYSQL_HOST, verify-ca"
            },
            target.host
        ));
    }
    Ok(Prepared {
        kind,
        minted,
        client,
        target,
        secret,
        iam,
        tls,
        ca_file,
        rds_bundle,
        via_addr,
        source,
    })
}
