//! `rdsconn mysql` and `rdsconn postgres`: a verified connection, then
//! `-e SQL` or `--info`.

use std::fmt::Write as _;
use std::io::{BufRead, IsTerminal};
use std::time::Duration;

use serde_json::{Map, Value};

use crate::ca;
use crate::cli::{ConnectArgs, GlobalArgs, MysqlArgs, OutputFormat, PostgresArgs};
use crate::engine::{self, Auth, ResultSet, Secret, SessionInfo, Target};
use crate::error::{Error, Result};
use crate::output;
use crate::target::{EngineKind, Host, UrlTarget, validate_user};
use crate::tls::TlsPolicy;

/// Host, port, user and database as the user gave them, before defaults.
pub(crate) struct Given {
    pub url: Option<String>,
    pub host: Option<String>,
    pub port: Option<u16>,
    pub user: Option<String>,
    pub database: Option<String>,
}

pub async fn postgres(global: &GlobalArgs, args: &PostgresArgs) -> Result<u8> {
    let given = Given {
        url: args.url.clone(),
        host: args.host.clone().or_else(|| env("PGHOST")),
        port: args
            .port
            .or_else(|| env("PGPORT").and_then(|p| p.parse().ok())),
        user: args.user.clone().or_else(|| env("PGUSER")),
        database: args.database.clone().or_else(|| env("PGDATABASE")),
    };
    run(
        global,
        EngineKind::Postgres,
        given,
        &args.connect,
        "PGPASSWORD",
    )
    .await
}

pub async fn mysql(global: &GlobalArgs, args: &MysqlArgs) -> Result<u8> {
    let given = Given {
        url: args.url.clone(),
        host: args.host.clone().or_else(|| env("MYSQL_HOST")),
        port: args
            .port
            .or_else(|| env("MYSQL_TCP_PORT").and_then(|p| p.parse().ok())),
        user: args.user.clone(),
        database: args.database.clone(),
    };
    run(global, EngineKind::Mysql, given, &args.connect, "MYSQL_PWD").await
}

/// An environment variable, if set and not empty.
pub(crate) fn env(key: &str) -> Option<String> {
    std::env::var(key).ok().filter(|v| !v.is_empty())
}

async fn run(
    global: &GlobalArgs,
    kind: EngineKind,
    given: Given,
    args: &ConnectArgs,
    password_env: &str,
) -> Result<u8> {
    // Everything the user typed is checked before any I/O.
    let (_, target, url_iam) = target(
        Some(kind),
        given,
        args.via.as_deref(),
        args.connect_timeout.into(),
    )?;
    if args.execute.is_none() && !args.info {
        return Err(Error::usage(format!(
            "handing the session to the native {} client is not implemented in this build yet",
            kind.name()
        ))
        .with_hint("use -e SQL to run statements, or --info to check the connection"));
    }
    let engine = engine::for_kind(kind);
    let (roots, warnings) = ca::roots(global.ca_bundle.as_deref())?;
    for w in warnings {
        output::warn(w);
    }
    let policy = TlsPolicy {
        mode: args.tls,
        roots,
    };
    let auth = if args.iam || url_iam {
        let minted =
            crate::cmd::token::mint(global, &target.host, target.port, &target.user).await?;
        Auth::IamToken(Secret::new(minted.token))
    } else {
        Auth::Password(password(args.password_stdin, password_env, &target)?)
    };
    let mut session = engine
        .connect(&target, &auth, &policy)
        .await
        .map_err(|e| Error::from(e).context(format!("connecting to {}", target.describe())))?;
    let result = match &args.execute {
        Some(sql) => match session.execute(sql).await {
            Ok(sets) => print_results(global.output, &sets),
            Err(mut e) => {
                let completed = std::mem::take(&mut e.completed);
                if !completed.is_empty() {
                    print_results(global.output, &completed)?;
                }
                Err(Error::from(e))
            }
        },
        None => print_info(global.output, &session.describe().await),
    };
    session.close().await;
    result.map(|()| 0)
}

/// A target from a URL and/or flags; `kind` is the command's engine, or
/// `None` to take it from the URL. Also returns the URL's `?iam=true`.
pub(crate) fn target(
    kind: Option<EngineKind>,
    given: Given,
    via: Option<&str>,
    connect_timeout: Duration,
) -> Result<(EngineKind, Target, bool)> {
    let url = given.url.as_deref().map(UrlTarget::parse).transpose()?;
    let kind = match (kind, &url) {
        (Some(k), Some(u)) if u.engine != k => {
            return Err(Error::usage(format!(
                "the URL is for {}, but this is `rdsconn {}`",
                u.engine.name(),
                k.name()
            )));
        }
        (Some(k), _) => k,
        (None, Some(u)) => u.engine,
        (None, None) => {
            return Err(Error::usage(
                "an engine is required: pass a URL or --engine",
            ));
        }
    };
    let host = match (&url, &given.host) {
        (Some(u), _) => u.host.clone(),
        (None, Some(h)) => Host::parse(h)?,
        (None, None) => {
            return Err(Error::usage(
                "a host is required: pass --host HOST or a URL",
            ));
        }
    };
    let port = given
        .port
        .or(url.as_ref().and_then(|u| u.port))
        .unwrap_or(kind.default_port());
    let user = given
        .user
        .or(url.as_ref().and_then(|u| u.user.clone()))
        .ok_or_else(|| {
            Error::usage("a database user is required: pass --user USER or USER@ in the URL")
        })?;
    validate_user(&user)?;
    let iam = url.as_ref().is_some_and(|u| u.iam);
    let database = given.database.or(url.and_then(|u| u.database));
    let via = via.map(parse_via).transpose()?;
    if connect_timeout.is_zero() {
        return Err(Error::usage("--connect-timeout must be more than 0s"));
    }
    let target = Target {
        host,
        port,
        via,
        user,
        database,
        connect_timeout,
    };
    Ok((kind, target, iam))
}

/// `HOST:PORT` or `[IPv6]:PORT`.
fn parse_via(raw: &str) -> Result<(String, u16)> {
    let bad = || {
        Error::usage(format!(
            "invalid --via {raw:?}: expected HOST:PORT, e.g. 127.0.0.1:15432"
        ))
    };
    let (host, port) = raw.rsplit_once(':').ok_or_else(bad)?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let port: u16 = port.parse().ok().filter(|p| *p > 0).ok_or_else(bad)?;
    let host = Host::parse(host)?;
    Ok((host.as_str().to_string(), port))
}

/// `--password-stdin`: the first line of stdin.
pub(crate) fn stdin_password() -> Result<Secret> {
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| Error::usage(format!("reading the password from stdin: {e}")))?;
    let pw = line.trim_end_matches(['\n', '\r']);
    if pw.is_empty() {
        return Err(Error::usage("--password-stdin: stdin held no password"));
    }
    Ok(Secret::new(pw.to_string()))
}

/// The password from stdin, the engine's env var, or a terminal prompt.
fn password(from_stdin: bool, env_var: &str, target: &Target) -> Result<Secret> {
    if from_stdin {
        return stdin_password();
    }
    if let Ok(pw) = std::env::var(env_var) {
        return Ok(Secret::new(pw));
    }
    if std::io::stdin().is_terminal() {
        let prompt = format!("Password for {}@{}: ", target.user, target.host);
        return rpassword::prompt_password(prompt)
            .map(Secret::new)
            .map_err(|e| Error::usage(format!("reading the password: {e}")));
    }
    Err(Error::usage(format!(
        "no password: pass --iam, --password-stdin, or set {env_var}"
    )))
}

const NULL_TEXT: &str = "NULL";

fn print_results(format: OutputFormat, sets: &[ResultSet]) -> Result<()> {
    let with_rows: Vec<&ResultSet> = sets.iter().filter(|s| !s.columns.is_empty()).collect();
    match format {
        OutputFormat::Json => {
            let arrays: Vec<Value> = with_rows.iter().map(|s| json_rows(s)).collect();
            match arrays.as_slice() {
                [one] => output::json(one),
                _ => output::json(&arrays),
            }
        }
        OutputFormat::Text => {
            let tty = std::io::stdout().is_terminal();
            let mut text = String::new();
            for (i, set) in with_rows.iter().enumerate() {
                if tty {
                    if i > 0 {
                        text.push('\n');
                    }
                    let rows: Vec<Vec<String>> = set
                        .rows
                        .iter()
                        .map(|r| {
                            r.iter()
                                .map(|v| v.clone().unwrap_or_else(|| NULL_TEXT.into()))
                                .collect()
                        })
                        .collect();
                    text.push_str(&output::table(
                        &set.columns.iter().map(String::as_str).collect::<Vec<_>>(),
                        &rows,
                    ));
                    let _ = writeln!(
                        text,
                        "({} row{})",
                        set.rows.len(),
                        if set.rows.len() == 1 { "" } else { "s" }
                    );
                } else {
                    text.push_str(&tsv_line(set.columns.iter().map(|c| Some(c.as_str()))));
                    for row in &set.rows {
                        text.push_str(&tsv_line(row.iter().map(Option::as_deref)));
                    }
                }
            }
            output::raw(text.as_bytes())
        }
    }
}

fn json_rows(set: &ResultSet) -> Value {
    Value::Array(
        set.rows
            .iter()
            .map(|row| {
                let obj: Map<String, Value> = set
                    .columns
                    .iter()
                    .zip(row)
                    .map(|(c, v)| (c.clone(), v.clone().map_or(Value::Null, Value::String)))
                    .collect();
                Value::Object(obj)
            })
            .collect(),
    )
}

/// Tab-separated, with `\t`, `\n`, `\\` escaped and NULL as `NULL` (as the
/// mysql client's batch mode does).
fn tsv_line<'a>(cells: impl Iterator<Item = Option<&'a str>>) -> String {
    let mut line = cells
        .map(|c| match c {
            None => NULL_TEXT.to_string(),
            Some(v) => v
                .replace('\\', "\\\\")
                .replace('\t', "\\t")
                .replace('\n', "\\n"),
        })
        .collect::<Vec<_>>()
        .join("\t");
    line.push('\n');
    line
}

fn print_info(format: OutputFormat, info: &SessionInfo) -> Result<()> {
    output::emit(format, info, || {
        let tls = &info.tls;
        let cert = tls.certificate.clone().unwrap_or_default();
        let t = &info.timings;
        // MySQL's driver does TCP, TLS and authentication in one step.
        let stages = t.tls_auth_ms.map_or_else(
            || format!("tcp+tls+auth {:.1} ms", t.connect_ms),
            |v| format!("tcp {:.1} ms, tls+auth {v:.1} ms", t.connect_ms),
        );
        format!(
            "endpoint:     {} (dialed {})\nserver:       {} {}\nuser:         {} (auth: {})\n\
             tls:          {} {} ({})\ncertificate:  {}\nSANs:         {}\nissuer:       {}\nnot after:    {}\n\
             timings:      dns {:.1} ms, {stages}, total {:.1} ms",
            info.endpoint,
            info.dial_address,
            info.engine.name(),
            info.server_version,
            info.user,
            info.auth,
            tls.protocol.as_deref().unwrap_or("?"),
            tls.cipher.as_deref().unwrap_or("?"),
            tls.mode.map_or("?", crate::tls::TlsMode::as_str),
            cert.subject,
            cert.sans.join(", "),
            cert.issuer,
            cert.not_after,
            t.dns_ms,
            t.total_ms,
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn via_forms() {
        assert_eq!(
            parse_via("127.0.0.1:15432").unwrap(),
            ("127.0.0.1".into(), 15432)
        );
        assert_eq!(parse_via("[::1]:5432").unwrap(), ("::1".into(), 5432));
        assert_eq!(
            parse_via("bastion.internal:6000").unwrap(),
            ("bastion.internal".into(), 6000)
        );
        for bad in ["127.0.0.1", "h:0", "h:x", ":5432", "a b:1"] {
            assert!(parse_via(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn tsv_escapes_and_marks_null() {
        let line = tsv_line([Some("a\tb"), None, Some("x\ny\\")].into_iter());
        assert_eq!(line, "a\\tb\tNULL\tx\\ny\\\\\n");
    }
}
