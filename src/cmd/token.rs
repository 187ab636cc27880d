//! `rdsconn token`: print an IAM database auth token.

use serde::Serialize;

use crate::cli::{GlobalArgs, TokenArgs};
use crate::error::{Error, Result};
use crate::iam;
use crate::output;
use crate::resolve::Found;
use crate::target::{self, Host, UrlTarget};
use crate::token::TOKEN_LIFETIME;

/// `token --output json`; field names are part of the documented interface.
#[derive(Serialize)]
struct TokenJson<'a> {
    token: &'a str,
    host: &'a str,
    port: u16,
    user: &'a str,
    region: &'a str,
    issued_at: String,
    expires_at: String,
}

pub(crate) async fn run(global: &GlobalArgs, args: &TokenArgs) -> Result<u8> {
    // All input is checked before any file or network access, except the
    // RDS API lookup of --instance / --cluster.
    let found = crate::resolve::lookup(
        global,
        &args.rds,
        args.engine,
        true,
        args.url.is_some() || args.host.is_some(),
    )
    .await?;
    let (host, port, user) = endpoint(args, found)?;
    let minted = iam::mint(global, &host, port, &user).await?;
    let json = TokenJson {
        token: &minted.token,
        host: host.as_str(),
        port,
        user: &user,
        region: &minted.region,
        issued_at: humantime::format_rfc3339_seconds(minted.issued_at).to_string(),
        expires_at: humantime::format_rfc3339_seconds(minted.issued_at + TOKEN_LIFETIME)
            .to_string(),
    };
    output::emit(global.output, &json, || minted.token.clone())?;
    Ok(0)
}

/// Host, port and user from the URL, the flags (flags win) or the RDS API.
fn endpoint(args: &TokenArgs, found: Option<Found>) -> Result<(Host, u16, String)> {
    let url = args.url.as_deref().map(UrlTarget::parse).transpose()?;
    let api_port = found.as_ref().map(|f| f.port);
    let host = match (&url, &args.host, found) {
        (_, _, Some(f)) => Host::parse(&f.host)?,
        (Some(u), _, None) => u.host.clone(),
        (None, Some(h), None) => Host::parse(h)?,
        (None, None, None) => {
            return Err(Error::usage("a host is required: pass --host HOST or a target URL")
                .with_hint("e.g. rdsconn token --host mydb.abc123.eu-west-1.rds.amazonaws.com --port 5432 --user app"));
        }
    };
    let engine = args.engine.or(url.as_ref().map(|u| u.engine));
    let port = args
        .port
        .or(api_port)
        .or(url.as_ref().and_then(|u| u.port))
        .or(engine.map(target::EngineKind::default_port))
        .ok_or_else(|| {
            Error::usage("--port is required: the port is part of the signed token")
                .with_hint("pass --port, --engine mysql|postgres for the default port, or a URL such as postgres://app@HOST")
        })?;
    let user = args
        .user
        .clone()
        .or(url.and_then(|u| u.user))
        .ok_or_else(|| {
            Error::usage("a database user is required: pass --user USER or USER@ in the URL")
        })?;
    target::validate_user(&user)?;
    Ok((host, port, user))
}
