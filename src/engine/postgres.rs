//! PostgreSQL through tokio-postgres + tokio-postgres-rustls.
//!
//! rdsconn opens the TCP connection itself (DNS and TCP timed separately,
//! `--via` honoured) and hands it to `connect_raw`; TLS is required
//! (`SslMode::Require`, since verify-full is not an `SslMode` there) and
//! enforced by rdsconn's own rustls config, whose server name is the
//! endpoint. For `--info`, the protocol and cipher come from `pg_stat_ssl`,
//! the server's view of this very session (one query, only when asked).

use std::sync::Arc;
use std::time::Instant;

use tokio_postgres::config::SslMode;
use tokio_postgres::tls::MakeTlsConnect;
use tokio_postgres::{SimpleQueryMessage, error::SqlState};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::{
    Auth, Column, Engine, Kind, QueryCode, QueryError, ResultSet, Session, SessionInfo, Timings,
};
use crate::BoxFuture;
use crate::error::error_line;
use crate::net::{ConnectError, Stage, ms};
use crate::target::EngineKind;
use crate::target::Target;
use crate::tls::{CertSummary, PeerChain, TlsFailure, TlsPolicy};

pub(crate) struct Postgres;

impl Engine for Postgres {
    fn connect<'a>(
        &'a self,
        target: &'a Target,
        auth: &'a Auth,
        tls: &'a TlsPolicy,
    ) -> BoxFuture<'a, Result<Box<dyn Session>, ConnectError>> {
        Box::pin(async move {
            let stage = Stage::default();
            let session = connect(target, auth, tls, &stage);
            super::bounded(target.connect_timeout, &stage, session).await
        })
    }
}

async fn connect(
    target: &Target,
    auth: &Auth,
    tls: &TlsPolicy,
    stage: &Stage,
) -> Result<PgSession, ConnectError> {
    let dialed = crate::net::dial(target, stage).await?;

    stage.set("TLS handshake and authentication");
    let t = Instant::now();
    let peer = Arc::new(PeerChain::default());
    let connector = connector(tls, Arc::clone(&peer), target)?;

    let mut pg = tokio_postgres::Config::new();
    pg.host(target.host.as_str())
        .port(target.port)
        .user(&target.user)
        .password(auth.secret().expose())
        .ssl_mode(SslMode::Require)
        .application_name("rdsconn");
    if let Some(db) = &target.database {
        pg.dbname(db);
    }
    let (client, connection) = match pg.connect_raw(dialed.stream, connector).await {
        Ok(c) => c,
        Err(e) => {
            let error = classify(&e, target, auth, &peer, tls.roots.name);
            // "No TLS" from a server that greets first: MySQL's port.
            if matches!(error, ConnectError::Tls(TlsFailure::NoTls))
                && crate::wire::postgres::speaks_mysql(target).await
            {
                return Err(ConnectError::WrongProtocol {
                    speaks: EngineKind::Mysql,
                });
            }
            return Err(error);
        }
    };
    let driver = tokio::spawn(async move {
        let _ = connection.await;
    });
    let tls_auth_ms = ms(t);

    let info = SessionInfo::connected(
        EngineKind::Postgres,
        target,
        auth,
        tls.mode,
        peer.get().first().and_then(|c| CertSummary::from_der(c)),
        Timings {
            dns_ms: dialed.dns_ms,
            connect_ms: dialed.connect_ms,
            tls_auth_ms: Some(tls_auth_ms),
            total_ms: ms(dialed.start),
        },
    );
    Ok(PgSession {
        client,
        driver,
        info,
    })
}

/// Maps a connect failure to its stage: TLS, authentication, or other.
fn classify(
    err: &tokio_postgres::Error,
    target: &Target,
    auth: &Auth,
    peer: &PeerChain,
    roots: &'static str,
) -> ConnectError {
    if let Some(r) = crate::net::find_rustls(err) {
        return ConnectError::Tls(TlsFailure::from_rustls(
            r,
            target.host.as_str(),
            &peer.get(),
            roots,
        ));
    }
    if let Some(db) = err.as_db_error() {
        let code = db.code();
        if *code == SqlState::INVALID_PASSWORD
            || *code == SqlState::INVALID_AUTHORIZATION_SPECIFICATION
        {
            return ConnectError::Auth {
                message: format!("{} ({})", db.message(), code.code()),
                iam: matches!(auth, Auth::IamToken(_)),
            };
        }
        return ConnectError::Server(format!("{} ({})", db.message(), code.code()));
    }
    let text = error_line(err);
    if text.contains("server does not support TLS") {
        return ConnectError::Tls(TlsFailure::NoTls);
    }
    // Reset, or closed before the login finished ("early eof",
    // "connection closed"): the network or the peer went away.
    if let Some(source) = lost(err, &text) {
        return ConnectError::Network {
            what: "talking to the server",
            source,
        };
    }
    // tokio-postgres's words for GSSAPI, SSPI, Kerberos V5 and SCM
    // credentials requests.
    if text.contains("unsupported authentication method") {
        return ConnectError::AuthMethod {
            message: "the server asks for Kerberos (GSSAPI) authentication, which rdsconn's \
                      in-process driver does not speak"
                .into(),
            hint: Some(
                "psql does, with your Kerberos ticket (kinit): run `rdsconn postgres` without -e \
                 to hand the verified connection settings to psql"
                    .into(),
            ),
            native_client_can: true,
        };
    }
    ConnectError::Server(text)
}

/// A statement's failure: the server's error and its SQLSTATE, or the
/// connection lost under it.
fn query_error(e: &tokio_postgres::Error) -> QueryError {
    if let Some(db) = e.as_db_error() {
        return QueryError {
            message: db.message().to_string(),
            code: QueryCode::Server(format!("SQLSTATE {}", db.code().code())),
            completed: Vec::new(),
        };
    }
    let message = error_line(e);
    QueryError {
        code: if lost(e, &message).is_some() {
            QueryCode::Lost
        } else {
            QueryCode::Driver
        },
        message,
        completed: Vec::new(),
    }
}

/// The connection was reset or closed under `err` (the network or the
/// peer went away): the I/O error, with `text` as its message.
fn lost(err: &tokio_postgres::Error, text: &str) -> Option<std::io::Error> {
    let io_kind = std::iter::successors(Some(err as &(dyn std::error::Error + 'static)), |e| {
        e.source()
    })
    .find_map(|e| e.downcast_ref::<std::io::Error>())
    .map(std::io::Error::kind);
    let io = io_kind.map(|k| std::io::Error::new(k, text));
    io.filter(crate::net::is_network_io).or_else(|| {
        err.is_closed()
            .then(|| std::io::Error::new(std::io::ErrorKind::UnexpectedEof, text))
    })
}

/// rdsconn's verifier as tokio-postgres' TLS connector for the endpoint
/// name; the presented chain lands in `peer`.
fn connector(
    tls: &TlsPolicy,
    peer: Arc<PeerChain>,
    target: &Target,
) -> Result<<MakeRustlsConnect as MakeTlsConnect<crate::net::Stream>>::TlsConnect, ConnectError> {
    let config = tls
        .client_config(peer)
        .map_err(|e| ConnectError::Tls(TlsFailure::Other(e.to_string())))?;
    let mut make = MakeRustlsConnect::new(config);
    <MakeRustlsConnect as MakeTlsConnect<crate::net::Stream>>::make_tls_connect(
        &mut make,
        target.host.as_str(),
    )
    .map_err(|e| ConnectError::Tls(TlsFailure::Other(e.to_string())))
}

/// Sends the `CancelRequest` for `token` over a fresh connection, verified
/// like the session's.
pub(super) async fn cancel(
    token: &tokio_postgres::CancelToken,
    target: &Target,
    tls: &TlsPolicy,
) -> Result<(), ConnectError> {
    let dialed = crate::net::dial(target, &Stage::default()).await?;
    let connector = connector(tls, Arc::new(PeerChain::default()), target)?;
    token
        .cancel_query_raw(dialed.stream, connector)
        .await
        .map_err(|e| {
            ConnectError::Server(format!("sending the cancel request: {}", error_line(&e)))
        })
}

struct PgSession {
    client: tokio_postgres::Client,
    driver: tokio::task::JoinHandle<()>,
    info: SessionInfo,
}

impl Session for PgSession {
    fn describe(&mut self) -> BoxFuture<'_, SessionInfo> {
        Box::pin(async move {
            let row = self
                .client
                .simple_query(
                    "SELECT version, cipher, current_setting('server_version') \
                     FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
                )
                .await
                .ok()
                .and_then(|msgs| {
                    msgs.into_iter().find_map(|m| match m {
                        SimpleQueryMessage::Row(r) => Some(
                            (0..3)
                                .map(|i| r.get(i).map(str::to_string))
                                .collect::<Vec<_>>(),
                        ),
                        _ => None,
                    })
                })
                .unwrap_or_default();
            let mut info = self.info.clone();
            let mut cells = row.into_iter();
            info.tls.protocol = cells.next().flatten();
            info.tls.cipher = cells.next().flatten();
            info.server_version = cells.next().flatten().unwrap_or_default();
            info
        })
    }

    fn execute<'a>(
        &'a mut self,
        sql: &'a str,
    ) -> BoxFuture<'a, Result<Vec<ResultSet>, QueryError>> {
        Box::pin(async move {
            let messages = self
                .client
                .simple_query(sql)
                .await
                .map_err(|e| query_error(&e))?;
            let mut sets = Vec::new();
            let mut current = ResultSet::default();
            for m in messages {
                match m {
                    SimpleQueryMessage::RowDescription(cols) => {
                        current.columns = cols.iter().map(|c| Column::untyped(c.name())).collect();
                    }
                    SimpleQueryMessage::Row(row) => {
                        if current.columns.is_empty() {
                            current.columns = row
                                .columns()
                                .iter()
                                .map(|c| Column::untyped(c.name()))
                                .collect();
                        }
                        current.rows.push(
                            (0..row.len())
                                .map(|i| row.get(i).map(str::to_string))
                                .collect(),
                        );
                    }
                    SimpleQueryMessage::CommandComplete(n) => {
                        if current.columns.is_empty() {
                            current.affected = Some(n);
                        }
                        sets.push(std::mem::take(&mut current));
                    }
                    _ => {}
                }
            }
            Ok(sets)
        })
    }

    fn describe_types<'a>(
        &'a mut self,
        sql: &'a str,
        sets: &'a mut [ResultSet],
    ) -> BoxFuture<'a, ()> {
        Box::pin(describe_types(&self.client, sql, sets))
    }

    fn canceller(&self) -> super::Canceller {
        super::Canceller::Postgres(self.client.cancel_token())
    }

    fn close(self: Box<Self>) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            drop(self.client);
            let _ = self.driver.await;
        })
    }
}

/// Learns each result set's column types by describing its statement
/// again after the batch ran (a description executes nothing, and sees the
/// tables the batch created). When the statements and the result sets do
/// not pair up, or a statement cannot be described, its columns stay text.
async fn describe_types(client: &tokio_postgres::Client, sql: &str, sets: &mut [ResultSet]) {
    let statements = super::statements::split(sql);
    if statements.len() != sets.len() {
        return;
    }
    for (statement, set) in statements.into_iter().zip(sets.iter_mut()) {
        if set.columns.is_empty() {
            continue;
        }
        let Ok(prepared) = client.prepare(statement).await else {
            continue;
        };
        if prepared.columns().len() != set.columns.len() {
            continue;
        }
        for (column, described) in set.columns.iter_mut().zip(prepared.columns()) {
            column.type_name = described.type_().name().to_string();
            column.kind = kind_of(described.type_());
        }
    }
}

fn kind_of(ty: &tokio_postgres::types::Type) -> Kind {
    use tokio_postgres::types::{Kind as PgKind, Type};
    match *ty {
        Type::INT2 | Type::INT4 | Type::INT8 | Type::OID => Kind::Integer,
        Type::FLOAT4 | Type::FLOAT8 => Kind::Float,
        Type::NUMERIC => Kind::Decimal,
        Type::BOOL => Kind::Bool,
        Type::JSON | Type::JSONB => Kind::Json,
        _ => match ty.kind() {
            PgKind::Domain(inner) => kind_of(inner),
            _ => Kind::Text,
        },
    }
}
