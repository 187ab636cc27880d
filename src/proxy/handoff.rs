//! The hand-off through rdsconn's own proxy: for native clients that
//! cannot verify what rdsconn verifies (a MySQL client through `--via`,
//! IAM with MariaDB's client), the client talks to a private unix socket and
//! this proxy logs in upstream.

use std::ffi::OsString;
use std::time::Duration;

use crate::ca;
use crate::error::{Error, Result};
use crate::native::{self, Client, ClientConn, NativeClient};
use crate::net::ConnectError;
use crate::proxy::{self, Secrets};
use crate::secret::Secret;
use crate::target::{EngineKind, Target};
use crate::tls::TlsPolicy;

/// The hand-off through rdsconn's proxy on a private unix socket: the
/// client logs in there with a one-time password, the proxy logs in
/// upstream (over TLS verified for the endpoint, a fresh token per
/// connection for IAM). Serves until the client exits.
pub(crate) async fn through_proxy(
    native_client: &dyn Client,
    client: NativeClient,
    kind: EngineKind,
    target: &Target,
    policy: TlsPolicy,
    secrets: Secrets,
    client_args: &[OsString],
) -> Result<u8> {
    if kind == EngineKind::Mysql {
        // The client's `status` says "SSL: Not in use": true of the
        // private socket only.
        crate::output::note(format!(
            "rdsconn: {} talks to rdsconn's proxy on a private socket; the session upstream is TLS \
             verified for {} ({}), though the client's `status` shows \"SSL: Not in use\" for the socket",
            client
                .program
                .file_name()
                .map_or_else(|| "the client".into(), |n| n.to_string_lossy()),
            target.host,
            match policy.mode {
                crate::tls::TlsMode::VerifyFull => "VERIFY_IDENTITY",
                crate::tls::TlsMode::VerifyCa => "VERIFY_CA",
            }
        ));
    }
    serving(kind, target, policy, secrets, |conn| {
        native_client.launch(client, conn, client_args)
    })
    .await
}

/// Runs the program `launch` makes for rdsconn's proxy on a private unix
/// socket (`ClientConn::socket`, with the proxy's one-time password as the
/// secret), serving it until the program exits; its exit status.
pub(crate) async fn serving(
    kind: EngineKind,
    target: &Target,
    policy: TlsPolicy,
    secrets: Secrets,
    launch: impl FnOnce(&ClientConn<'_>) -> Result<native::Launch>,
) -> Result<u8> {
    let policy_mode = policy.mode;
    let dir = crate::files::private_dir().map_err(|e| ConnectError::Server(e.to_string()))?;
    // libpq finds a socket by directory and port.
    let socket = dir.path().join(match kind {
        EngineKind::Postgres => format!(".s.PGSQL.{}", target.port),
        EngineKind::Mysql => "proxy.sock".to_string(),
    });
    let local = Secret::new(ca::hex(&crate::secret::random::<24>()?));
    let config = proxy::Config {
        name: None,
        kind,
        host: target.host.clone(),
        port: target.port,
        via: target.via.clone(),
        connect_timeout: target.connect_timeout,
        policy,
        secrets,
        local_password: Some(local.clone()),
        only_user: Some(target.user.clone()),
        max_connections: None,
        client_login_timeout: proxy::CLIENT_LOGIN_TIMEOUT,
        pool: proxy::pool::Settings::none(),
    };
    let proxy = proxy::Proxy::bind(config, &[proxy::Listen::Unix(socket.clone())]).await?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(proxy.serve(
        async {
            let _ = stopped.await;
        },
        Duration::from_secs(1),
        std::future::pending(),
    ));
    let conn = ClientConn {
        target,
        secret: &local,
        iam: false,
        mode: policy_mode,
        ca_file: std::path::Path::new(""),
        via_addr: None,
        rds_bundle: false,
        socket: Some(&socket),
    };
    let launch = launch(&conn)?;
    let code = tokio::task::spawn_blocking(move || native::run(launch))
        .await
        .map_err(|e| Error::new(crate::error::Category::Runtime, e))??;
    let _ = stop.send(());
    let _ = serving.await;
    drop(dir);
    Ok(code)
}
