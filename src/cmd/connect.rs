//! `rdsconn mysql` and `rdsconn postgres`: a verified connection, then
//! `-e SQL` or `--info`.

use std::path::Path;

use crate::cli::{ConnectArgs, GlobalArgs, MysqlArgs, OutputFormat, PostgresArgs, RdsSelector};
use crate::clientargs;
use crate::engine;
use crate::error::{Error, Result};
use crate::native::{self, ClientConn};
use crate::net::ConnectError;
use crate::output::{self, print_info};
use crate::proxy::{self, Secrets};
use crate::resolve::{
    Ask, FromSecret, Given, Prompt, Request, Users, ca_file, password_file, password_with, request,
    roots, via_addr,
};
use crate::secret::{Auth, Secret};
use crate::secrets::connect_rereading;
use crate::signals::{Stop, StopSignals};
use crate::target::EngineKind;
use crate::target::Target;
use crate::tls::{TlsMode, TlsPolicy};

pub(crate) async fn postgres(global: &GlobalArgs, args: &PostgresArgs) -> Result<u8> {
    let given = Given::try_from(args)?;
    let prompt = match (args.password, args.no_password) {
        (true, _) => Prompt::Always,
        (false, true) => Prompt::Never,
        (false, false) => Prompt::Auto,
    };
    let engine = Native {
        kind: EngineKind::Postgres,
        prompt,
        defaults_file: None,
    };
    connect(global, engine, &args.rds, given, &args.connect).await
}

pub(crate) async fn mysql(global: &GlobalArgs, args: &MysqlArgs) -> Result<u8> {
    // A password in argv (-pSECRET, --password=SECRET) was refused before
    // parsing: it is in every user's process list.
    let prompt = if args.password {
        Prompt::Always
    } else {
        Prompt::Auto
    };
    let given = Given::try_from(args)?;
    let engine = Native {
        kind: EngineKind::Mysql,
        prompt,
        defaults_file: args.defaults_file.as_deref(),
    };
    connect(global, engine, &args.rds, given, &args.connect).await
}

/// The engine, and how its native client finds a password.
#[derive(Clone, Copy)]
struct Native<'a> {
    kind: EngineKind,
    prompt: Prompt,
    /// `rdsconn mysql --defaults-file`.
    defaults_file: Option<&'a Path>,
}

/// Both engines' commands: the target resolved, then [`run`].
async fn connect(
    global: &GlobalArgs,
    native: Native<'_>,
    rds: &RdsSelector,
    given: Given,
    args: &ConnectArgs,
) -> Result<u8> {
    let ask = Ask {
        kind: Some(native.kind),
        given,
        rds,
        iam: args.iam,
        via: args.via.as_deref(),
        connect_timeout: args.connect_timeout.into(),
        users: Users::One,
        env: true,
        secret: &args.secret,
        tls: args.tls,
    };
    let request = request(global, ask).await?;
    run(global, native, request, args).await
}

async fn run(
    global: &GlobalArgs,
    native: Native<'_>,
    request: Request,
    args: &ConnectArgs,
) -> Result<u8> {
    let kind = native.kind;
    let Request {
        target,
        iam,
        secret,
        password,
        tls,
        ..
    } = request;
    let engine = engine::for_kind(kind);
    let native_client = native::for_kind(kind);
    // Without -e or --info the session goes to the native client; it must
    // be able to verify what rdsconn verifies, and be installed.
    let client = find_native_client(kind, &target, tls, args)?;
    let policy = TlsPolicy {
        mode: tls,
        roots: roots(global, &target.host)?,
    };
    let (mut auth, minted) = credentials(
        global,
        native,
        &target,
        iam,
        (secret.as_ref(), password),
        args,
    )
    .await?;
    // A refused secret's password is read again once (a rotation).
    let (connected, reread) = connect_rereading(
        global,
        engine,
        (&target, &policy),
        &mut auth,
        secret.as_ref(),
    )
    .await?;
    let context = || format!("connecting to {}{reread}", target.describe());
    if let Some(client) = client {
        match connected {
            // Verified: TLS, name and credentials work. Now the client gets
            // the same settings, and the terminal.
            Ok(session) => session.close().await,
            // TLS and the name were verified before the server asked for a
            // method only the native client speaks: the client takes over.
            Err(ConnectError::AuthMethod {
                message,
                native_client_can: true,
                ..
            }) => output::warn(format!(
                "{message}; TLS to {} verified, handing over to the client",
                target.host
            )),
            Err(e) => return Err(Error::from(e).context(context())),
        }
        if native_client.through_proxy(&target) {
            let secrets = Secrets::minted_or(
                minted,
                auth.secret().clone(),
                &target,
                global.profile.clone(),
            );
            return proxy::through_proxy(
                native_client,
                client,
                kind,
                &target,
                policy,
                secrets,
                &args.client_args,
            )
            .await;
        }
        let ca_file = ca_file(global, &target.host)?;
        let conn = ClientConn {
            target: &target,
            secret: auth.secret(),
            iam: matches!(auth, Auth::IamToken(_)),
            mode: tls,
            ca_file: &ca_file,
            via_addr: via_addr(&target).await?,
            rds_bundle: false,
            socket: None,
        };
        return native::run(native_client.launch(client, &conn, &args.client_args)?);
    }
    let mut session = connected.map_err(|e| Error::from(e).context(context()))?;
    let result = match &statements(args)? {
        Some(sql) => {
            let mut stop = StopSignals::install()?;
            let (canceller, json) = (session.canceller(), global.output == OutputFormat::Json);
            tokio::select! {
                done = crate::engine::run(&mut *session, sql, json) => output::print_outcome(global.output, done),
                // Ctrl-C (or SIGTERM) cancels the statement on the server
                // before rdsconn exits: an UPDATE must not go on unseen.
                signal = stop.recv() => {
                    return Ok(interrupted(signal, canceller, &target, &auth, &policy).await);
                }
            }
        }
        None => print_info(global.output, &session.describe().await),
    };
    session.close().await;
    result.map(|()| 0)
}

/// `-e SQL`, or `-f FILE` read now (after --password-stdin took its line).
fn statements(args: &ConnectArgs) -> Result<Option<String>> {
    Ok(match (&args.execute, &args.file) {
        (Some(sql), _) => Some(sql.clone()),
        (None, Some(file)) => Some(crate::resolve::sql_file(file)?),
        (None, None) => None,
    })
}

/// After Ctrl-C / SIGTERM during `-c` / `-e`: the server cancels the
/// statement (a second connection, verified like the first); the exit code
/// is the signal's.
async fn interrupted(
    signal: Stop,
    canceller: engine::Canceller,
    target: &Target,
    auth: &Auth,
    policy: &TlsPolicy,
) -> u8 {
    output::warn(format!(
        "{}: cancelling the statement on the server",
        signal.name()
    ));
    if let Err(e) = canceller.cancel(target, auth, policy).await {
        output::warn(format!(
            "the statement may still be running on the server: {}",
            crate::error::error_line(&e)
        ));
    }
    signal.exit_code()
}

/// The native client the session goes to (none for `-e`, `-f` or
/// `--info`): it must be able to verify what rdsconn verifies, and be
/// installed.
fn find_native_client(
    kind: EngineKind,
    target: &Target,
    tls: TlsMode,
    args: &ConnectArgs,
) -> Result<Option<native::NativeClient>> {
    if args.execute.is_some() || args.file.is_some() || args.info {
        return Ok(None);
    }
    let native_client = native::for_kind(kind);
    let family = match kind {
        EngineKind::Postgres => clientargs::Family::Libpq,
        EngineKind::Mysql => clientargs::Family::Mysql,
    };
    clientargs::check(family, &args.client_args)?;
    if !native_client.through_proxy(target) {
        native_client.check(target, tls)?;
    }
    Ok(Some(native_client.find(args.client.as_deref())?))
}

/// A fresh IAM token (and what minted it, for the hand-off's proxy), the
/// secret's password, or the password from stdin / the engine's variable /
/// a prompt.
async fn credentials(
    global: &GlobalArgs,
    native: Native<'_>,
    target: &Target,
    iam: bool,
    (secret, from_url): (Option<&FromSecret>, Option<Secret>),
    args: &ConnectArgs,
) -> Result<(Auth, Option<crate::iam::Minted>)> {
    if iam {
        let m = crate::iam::mint(global, &target.host, target.port, &target.user).await?;
        let token = Secret::new(m.token.clone());
        return Ok((Auth::IamToken(token), Some(m)));
    }
    let password = match (secret, from_url) {
        (Some(s), _) => s.password.clone(),
        (None, Some(p)) => p,
        (None, None) => password_with(
            args.password_stdin,
            native.prompt,
            native.kind.password_env(),
            (&target.user, target.host.as_str()),
            || password_file(native.kind, target, native.defaults_file),
        )?,
    };
    Ok((Auth::Password(password), None))
}
