//! `rdsconn token`: print an IAM database auth token.

use std::time::SystemTime;

use serde::Serialize;

use crate::aws;
use crate::cli::{GlobalArgs, TokenArgs};
use crate::error::{Error, Result};
use crate::output;
use crate::resolve::Found;
use crate::target::{self, Host, UrlTarget};
use crate::token::{self, TOKEN_LIFETIME, TokenRequest};

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

pub async fn run(global: &GlobalArgs, args: &TokenArgs) -> Result<u8> {
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
    let minted = mint(global, &host, port, &user).await?;
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

/// A freshly minted token and what it was signed for.
pub struct Minted {
    pub token: String,
    pub region: String,
    pub issued_at: SystemTime,
    /// What it was signed with (for minting more, as the proxy does).
    pub credentials: aws_credential_types::Credentials,
}

/// Resolves the region and credentials and signs a token for
/// `host:port` and `user`; warnings go to stderr. Every `--iam` connection
/// mints through here (the proxy through [`signing_region`] and its own
/// credentials cache).
pub async fn mint(global: &GlobalArgs, host: &Host, port: u16, user: &str) -> Result<Minted> {
    let region = signing_region(global, host).await?;
    let creds = aws::credentials(global.profile.as_deref(), &region).await?;
    let now = SystemTime::now();
    if let Some(w) = aws::expiry_warning(&creds, now, TOKEN_LIFETIME) {
        output::warn(w);
    }
    let req = TokenRequest {
        host,
        port,
        user,
        region: &region,
    };
    let token = token::generate(&creds, &req, now)?;
    Ok(Minted {
        token,
        region,
        issued_at: now,
        credentials: creds,
    })
}

/// The region tokens for `host` are signed for: `--region`, else the
/// endpoint's, else the AWS config's (a disagreement is warned about).
pub async fn signing_region(global: &GlobalArgs, host: &Host) -> Result<String> {
    let endpoint_region = host.rds_region()?;
    let configured = match global.region {
        Some(_) => None,
        None => aws::configured_region(global.profile.as_deref()).await,
    };
    let region = aws::resolve_region(
        global.region.as_deref(),
        endpoint_region.as_deref(),
        configured,
    )?;
    if let Some(w) = &region.warning {
        output::warn(w);
    }
    tracing::debug!(region = %region.region, source = ?region.source, "signing region");
    Ok(region.region)
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
