//! MySQL and MariaDB: rdsconn logs in itself (`wire`: TLS with rdsconn's
//! verifier, then the server's authentication plugin, `dialog` included)
//! and hands the session to `mysql_async` through a private unix socket
//! (`relay`), which runs the statements.
//!
//! Passwords and IAM tokens go out only inside verified TLS: a server that
//! does not offer TLS is refused after its greeting, before rdsconn says
//! anything, and the cleartext plugins (`mysql_clear_password` for IAM and
//! PAM, `dialog`) are spoken only because of that.

use std::path::Path;
use std::time::Instant;

use mysql_async::prelude::Queryable;
use mysql_async::{OptsBuilder, Row, ServerError, Value};

use super::{
    Auth, Column, Engine, Kind, QueryCode, QueryError, ResultSet, Secret, Session, SessionInfo,
    Timings,
};
use crate::BoxFuture;
use crate::error::error_line;
use crate::net::{ConnectError, Stage, ms};
use crate::target::EngineKind;
use crate::target::Target;
use crate::tls::TlsPolicy;
use crate::wire::mysql::{self as wire, relay};

pub(crate) struct Mysql;

impl Engine for Mysql {
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
) -> Result<MysqlSession, ConnectError> {
    let dialed = crate::net::dial(target, stage).await?;

    stage.set("TLS handshake and authentication");
    let t = Instant::now();
    let mut packets = wire::Packets::new(dialed.stream);
    let greeting = wire::greeting(&mut packets).await?;

    // The driver reaches the session through a socket only this process
    // knows, and proves it with a one-time password.
    let dir = crate::files::private_dir().map_err(|e| ConnectError::Server(e.to_string()))?;
    let path = dir.path().join("mysql.sock");
    let listener = tokio::net::UnixListener::bind(&path)
        .map_err(|e| ConnectError::Server(format!("listening on {}: {e}", path.display())))?;
    let local = Secret::new(crate::ca::hex(&crate::secret::random::<24>()?));
    let mut driver = std::pin::pin!(mysql_async::Conn::new(opts(&path, target, &local)));
    let client = tokio::select! {
        accepted = listener.accept() => accepted
            .map_err(|e| ConnectError::Server(format!("accepting the driver's connection: {e}")))?
            .0,
        failed = &mut driver => {
            return Err(ConnectError::Server(match failed {
                Ok(_) => "the driver connected elsewhere".into(),
                Err(e) => format!("starting the driver: {}", error_line(&e)),
            }));
        }
    };
    drop(listener);
    drop(dir);

    let prompter = Terminal { stage };
    let front = relay::login(
        client,
        relay::Upstream {
            packets,
            greeting,
            server_name: target.host.as_str(),
            policy: tls,
        },
        &local,
        auth,
        &prompter,
    );
    let (front, driver) = tokio::join!(front, driver);
    let relayed = front?;
    let conn = driver.map_err(|e| {
        ConnectError::Server(format!(
            "the driver failed after rdsconn logged in: {}",
            error_line(&e)
        ))
    })?;
    let tls_auth_ms = ms(t);

    let mut info = SessionInfo::connected(
        EngineKind::Mysql,
        target,
        auth,
        tls.mode,
        relayed.tls.leaf.clone(),
        Timings {
            dns_ms: dialed.dns_ms,
            connect_ms: dialed.connect_ms,
            tls_auth_ms: Some(tls_auth_ms),
            total_ms: ms(dialed.start),
        },
    );
    info.tls.protocol.clone_from(&relayed.tls.protocol);
    info.tls.cipher.clone_from(&relayed.tls.cipher);
    info.auth_plugin = Some(relayed.login.plugin.clone());
    let auth = auth.clone();
    let pump = tokio::spawn(async move {
        // The driver changes user only if asked to; the same credentials
        // (and no terminal questions) then apply.
        let handling = relay::Handling {
            credentials: &auth,
            prompter: &wire::NoPrompter,
            ids: None,
            pooled_user: None,
        };
        relay::pump(relayed, &handling).await;
    });
    Ok(MysqlSession { conn, pump, info })
}

/// Driver options for the private socket: no TLS there (the socket never
/// leaves the machine; TLS is upstream), the one-time password.
fn opts(socket: &Path, target: &Target, local: &Secret) -> OptsBuilder {
    OptsBuilder::default()
        .socket(Some(socket.to_string_lossy()))
        .user(Some(target.user.clone()))
        .pass(Some(local.expose().to_string()))
        .db_name(target.database.clone())
        .prefer_socket(false)
        .stmt_cache_size(0)
        // Known up front, so the driver skips its settings query.
        .max_allowed_packet(Some(1 << 30))
        .wait_timeout(Some(28_800))
}

/// Answers `dialog` questions other than the password on the terminal
/// (`/dev/tty`), when there is one; the connect timeout stops while the
/// user types.
struct Terminal<'a> {
    stage: &'a Stage,
}

impl wire::Prompter for Terminal<'_> {
    fn ask<'a>(&'a self, prompt: &'a str, echo: bool) -> BoxFuture<'a, Option<String>> {
        Box::pin(async move {
            let prompt = format!("{} ", prompt.trim_end());
            let _paused = self.stage.pause();
            tokio::task::spawn_blocking(move || ask_terminal(&prompt, echo))
                .await
                .ok()
                .flatten()
        })
    }
}

fn ask_terminal(prompt: &str, echo: bool) -> Option<String> {
    use std::io::{BufRead, Write};
    let tty = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/tty")
        .ok()?;
    if !echo {
        return rpassword::prompt_password(prompt).ok();
    }
    let mut out = &tty;
    out.write_all(prompt.as_bytes()).ok()?;
    out.flush().ok()?;
    let mut line = String::new();
    std::io::BufReader::new(&tty).read_line(&mut line).ok()?;
    Some(line.trim_end_matches(['\n', '\r']).to_string())
}

struct MysqlSession {
    conn: mysql_async::Conn,
    /// Copies between the driver's socket and the server.
    pump: tokio::task::JoinHandle<()>,
    info: SessionInfo,
}

impl Session for MysqlSession {
    fn describe(&mut self) -> BoxFuture<'_, SessionInfo> {
        Box::pin(async move {
            let mut info = self.info.clone();
            info.server_version = self
                .conn
                .query_first::<String, _>("SELECT VERSION()")
                .await
                .ok()
                .flatten()
                .unwrap_or_default();
            info
        })
    }

    fn execute<'a>(
        &'a mut self,
        sql: &'a str,
    ) -> BoxFuture<'a, Result<Vec<ResultSet>, QueryError>> {
        Box::pin(async move {
            let mut result = self
                .conn
                .query_iter(sql)
                .await
                .map_err(|e| query_error(e, Vec::new()))?;
            let mut sets = Vec::new();
            loop {
                if result.is_empty() {
                    // A failing statement after the first is stored by the
                    // driver and surfaces here.
                    return match result.next().await {
                        Err(e) => Err(query_error(e, sets)),
                        Ok(_) => Ok(sets),
                    };
                }
                let columns: Vec<Column> = result.columns_ref().iter().map(column).collect();
                // Read before `collect`, which moves on to the next result.
                let affected = result.affected_rows();
                let rows: Vec<Row> = match result.collect().await {
                    Ok(rows) => rows,
                    Err(e) => return Err(query_error(e, sets)),
                };
                sets.push(if columns.is_empty() {
                    ResultSet {
                        affected: Some(affected),
                        ..ResultSet::default()
                    }
                } else {
                    ResultSet {
                        columns,
                        rows: rows.iter().map(row_text).collect(),
                        affected: None,
                    }
                });
            }
        })
    }

    fn canceller(&self) -> super::Canceller {
        super::Canceller::Mysql(self.conn.id())
    }

    fn close(self: Box<Self>) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            let _ = self.conn.disconnect().await;
            // The server closes after COM_QUIT; one that does not is not
            // waited for long.
            let _ = tokio::time::timeout(std::time::Duration::from_secs(2), self.pump).await;
        })
    }
}

/// A column's name, MySQL type name (`long`, `json`) and JSON kind.
fn column(c: &mysql_async::Column) -> Column {
    use mysql_async::consts::{ColumnFlags, ColumnType as T};
    let ty = c.column_type();
    let kind = match ty {
        T::MYSQL_TYPE_TINY
        | T::MYSQL_TYPE_SHORT
        | T::MYSQL_TYPE_LONG
        | T::MYSQL_TYPE_INT24
        | T::MYSQL_TYPE_LONGLONG
        | T::MYSQL_TYPE_YEAR => Kind::Integer,
        T::MYSQL_TYPE_FLOAT | T::MYSQL_TYPE_DOUBLE => Kind::Float,
        T::MYSQL_TYPE_DECIMAL | T::MYSQL_TYPE_NEWDECIMAL => Kind::Decimal,
        T::MYSQL_TYPE_JSON => Kind::Json,
        _ => Kind::Text,
    };
    let name = format!("{ty:?}");
    let mut type_name = name.trim_start_matches("MYSQL_TYPE_").to_ascii_lowercase();
    if kind == Kind::Integer && c.flags().contains(ColumnFlags::UNSIGNED_FLAG) {
        type_name.push_str(" unsigned");
    }
    Column {
        name: c.name_str().into_owned(),
        type_name,
        kind,
    }
}

/// A text-protocol row as strings; NULL stays `None`.
fn row_text(row: &Row) -> Vec<Option<String>> {
    (0..row.len())
        .map(|i| match row.as_ref(i) {
            None | Some(Value::NULL) => None,
            Some(Value::Bytes(b)) => Some(String::from_utf8_lossy(b).into_owned()),
            Some(other) => Some(other.as_sql(true)),
        })
        .collect()
}

fn query_error(e: mysql_async::Error, completed: Vec<ResultSet>) -> QueryError {
    let (message, code) = match e {
        mysql_async::Error::Server(ServerError {
            code,
            message,
            state,
        }) => (
            message,
            QueryCode::Server(format!("ERROR {code} ({state})")),
        ),
        mysql_async::Error::Io(_)
        | mysql_async::Error::Driver(mysql_async::DriverError::ConnectionClosed) => {
            (error_line(&e), QueryCode::Lost)
        }
        other => (error_line(&other), QueryCode::Driver),
    };
    QueryError {
        message,
        code,
        completed,
    }
}
