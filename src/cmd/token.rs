//! `rdsconn token`: print an IAM database auth token.

use serde::Serialize;

use crate::cli::MAX_DURATION;
use crate::cli::{GlobalArgs, SecretFlags, TokenArgs};
use crate::error::{Error, Result};
use crate::iam;
use crate::output;
use crate::resolve::{Ask, Given, Users, request};
use crate::target::Target;

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
    let ask = Ask {
        // A DSQL endpoint speaks PostgreSQL (the port is not signed).
        kind: args
            .engine
            .or(args.dsql.then_some(crate::target::EngineKind::Postgres)),
        given: Given::from(args),
        rds: &args.rds,
        iam: true,
        via: None,
        connect_timeout: MAX_DURATION,
        users: Users::One,
        env: false,
        // Only the target's details: a token needs no password.
        secret: &SecretFlags {
            secret: args.secret.clone(),
            secret_region: args.secret_region.clone(),
            master_secret: false,
        },
        tls: crate::tls::TlsMode::VerifyFull,
    };
    let Target {
        host, port, user, ..
    } = request(global, ask).await?.target;
    let dsql = args.dsql || host.is_dsql();
    if args.admin && !dsql {
        return Err(Error::usage(
            "--admin is for Aurora DSQL tokens (DbConnectAdmin): pass a DSQL endpoint or --dsql",
        ));
    }
    if args.expires_in.is_some() && !dsql {
        return Err(Error::usage(
            "--expires-in is for Aurora DSQL tokens; an RDS token is accepted for 15 minutes",
        ));
    }
    let minted = iam::mint_with(global, &host, port, &user, |req| {
        req.dsql = args.dsql;
        req.admin = args.admin;
        req.expires_in = args.expires_in.map(Into::into);
    })
    .await?;
    let json = TokenJson {
        token: &minted.token,
        host: host.as_str(),
        port,
        user: &user,
        region: &minted.region,
        issued_at: humantime::format_rfc3339_seconds(minted.issued_at).to_string(),
        expires_at: humantime::format_rfc3339_seconds(minted.issued_at + minted.lifetime)
            .to_string(),
    };
    output::emit(global.output, &json, || minted.token.clone())?;
    Ok(0)
}
