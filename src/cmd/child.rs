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
    let vars = variables(global, &args.target).await?;
    output::raw(native::render(&vars, shell).as_bytes())?;
    Ok(0)
}

pub(crate) async fn exec(global: &GlobalArgs, args: &ExecArgs) -> Result<u8> {
    let (program, rest) = args
        .command
        .split_first()
        .ok_or_else(|| crate::error::Error::usage("a command is required after --"))?;
    // A known client is held to the same rules as the hand-off's.
    if let Some(family) = crate::clientargs::Family::of_program(std::path::Path::new(program)) {
        crate::clientargs::check(family, rest)?;
    }
    let vars = variables(global, &args.target).await?;
    native::run(Launch {
        program: program.into(),
        args: rest.to_vec(),
        env: vars,
        env_remove: &[],
        secret_file: None,
    })
}

/// The engine's variables for the target, with a freshly minted token
/// (`--iam`) or the password.
async fn variables(global: &GlobalArgs, args: &ChildArgs) -> Result<Vec<EnvVar>> {
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
    let client = native::for_kind(kind);
    client.check(&target, tls)?;
    // Where the password came from, for scripts (never the value).
    let mut source = None;
    let secret = if iam {
        let minted = crate::iam::mint(global, &target.host, target.port, &target.user).await?;
        Secret::new(minted.token)
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
    let conn = ClientConn {
        target: &target,
        secret: &secret,
        iam,
        mode: tls,
        ca_file: &ca_file,
        via_addr: via_addr(&target).await?,
        socket: None,
    };
    let mut vars = client.env(&conn);
    vars.extend(source);
    Ok(vars)
}
