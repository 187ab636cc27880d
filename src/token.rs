//! IAM database auth tokens: pure `(credentials, endpoint, user, region,
//! time) -> token`, byte-identical to botocore's `generate_db_auth_token`
//! (RDS) and `generate_db_connect[_admin]_auth_token` (Aurora DSQL:
//! [`generate_dsql`]).
//!
//! A token is a SigV4 presigned `GET https://HOST:PORT/?Action=connect&DBUser=…`
//! for the `rds-db` service, valid 900 s, with the `https://` prefix dropped.
//! Built on aws-sigv4 directly rather than `aws_sdk_rds::auth_token`, which
//! does not percent-encode `DBUser` and falls back to us-east-1 silently.
//!
//! Byte-level rules (botocore's): query values are RFC 3986 encoded; the
//! query order is `Action`, `DBUser`, the `X-Amz-*` auth parameters, then
//! `X-Amz-Signature`; the host keeps its case in the token but is signed
//! lower-cased (the `Host` header); the signed host omits `:443`; the
//! payload hash is that of the empty body.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    SignableBody, SignableRequest, SignatureLocation, SigningSettings, sign,
};
use aws_sigv4::sign::v4;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use crate::target::Host;

/// How long a token is accepted by RDS.
pub const TOKEN_LIFETIME: Duration = Duration::from_mins(15);

/// Everything except the RFC 3986 unreserved characters is encoded.
pub(crate) const RFC3986: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// What a token is signed for.
#[derive(Debug, Clone, Copy)]
pub struct TokenRequest<'a> {
    pub host: &'a Host,
    pub port: u16,
    pub user: &'a str,
    pub region: &'a str,
}

/// Signing failed (malformed input that validation let through).
#[derive(Debug, thiserror::Error)]
#[error("signing the IAM auth token: {0}")]
pub struct TokenError(String);

impl crate::error::Categorized for TokenError {
    fn category(&self) -> crate::error::Category {
        crate::error::Category::Aws
    }
}

/// What an Aurora DSQL token is signed for: the host only (no port, no
/// user), `DbConnect`, or `DbConnectAdmin` for the `admin` role.
#[derive(Debug, Clone, Copy)]
pub struct DsqlTokenRequest<'a> {
    pub host: &'a Host,
    pub region: &'a str,
    pub admin: bool,
    /// At most [`DSQL_MAX_LIFETIME`]; botocore's default is 900 s.
    pub expires_in: Duration,
}

/// The longest lifetime Aurora DSQL accepts for a token (one week).
pub const DSQL_MAX_LIFETIME: Duration = Duration::from_hours(7 * 24);

/// Builds the RDS token for `req`, signed with `creds` at `time`.
pub fn generate(
    creds: &Credentials,
    req: &TokenRequest<'_>,
    time: SystemTime,
) -> Result<String, TokenError> {
    let authority = format!("{}:{}", req.host.for_url(), req.port);
    let action = format!(
        "Action=connect&DBUser={}",
        utf8_percent_encode(req.user, RFC3986)
    );
    let signed_host = if req.port == 443 {
        req.host.for_url().to_ascii_lowercase()
    } else {
        authority.to_ascii_lowercase()
    };
    let signing = Signing {
        service: "rds-db",
        region: req.region,
        expires_in: TOKEN_LIFETIME,
        time,
    };
    presign(creds, &authority, &signed_host, &action, &signing)
}

/// Builds the Aurora DSQL token for `req`, byte-identical to botocore's
/// `generate_db_connect_auth_token` / `generate_db_connect_admin_auth_token`:
/// `HOST/?Action=DbConnect[Admin]&X-Amz-…`, service `dsql`.
pub fn generate_dsql(
    creds: &Credentials,
    req: &DsqlTokenRequest<'_>,
    time: SystemTime,
) -> Result<String, TokenError> {
    if req.expires_in.is_zero() || req.expires_in > DSQL_MAX_LIFETIME {
        return Err(TokenError(format!(
            "a DSQL token lives 1 s to {} s, not {} s",
            DSQL_MAX_LIFETIME.as_secs(),
            req.expires_in.as_secs()
        )));
    }
    let authority = req.host.for_url();
    let action = if req.admin {
        "Action=DbConnectAdmin"
    } else {
        "Action=DbConnect"
    };
    let signing = Signing {
        service: "dsql",
        region: req.region,
        expires_in: req.expires_in,
        time,
    };
    presign(
        creds,
        &authority,
        &authority.to_ascii_lowercase(),
        action,
        &signing,
    )
}

/// The SigV4 parameters of a presign.
struct Signing<'a> {
    service: &'a str,
    region: &'a str,
    expires_in: Duration,
    time: SystemTime,
}

/// `AUTHORITY/?ACTION&X-Amz-…&X-Amz-Signature=…`: `GET
/// https://SIGNED_HOST/?ACTION` presigned in the query string.
fn presign(
    creds: &Credentials,
    authority: &str,
    signed_host: &str,
    action: &str,
    signing: &Signing<'_>,
) -> Result<String, TokenError> {
    let mut settings = SigningSettings::default();
    settings.signature_location = SignatureLocation::QueryParams;
    settings.expires_in = Some(signing.expires_in);
    let identity = creds.clone().into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(signing.region)
        .name(signing.service)
        .time(signing.time)
        .settings(settings)
        .build()
        .map_err(|e| TokenError(e.to_string()))?
        .into();
    let uri = format!("https://{signed_host}/?{action}");
    let request = SignableRequest::new(
        "GET",
        uri,
        std::iter::once(("host", signed_host)),
        // botocore's SigV4QueryAuth (unlike S3's) signs the empty body's
        // sha256, not UNSIGNED-PAYLOAD.
        SignableBody::Bytes(&[]),
    )
    .map_err(|e| TokenError(e.to_string()))?;
    let (instructions, _) = sign(request, &params)
        .map_err(|e| TokenError(e.to_string()))?
        .into_parts();

    let mut token = format!("{authority}/?{action}");
    let mut signature = None;
    for (name, value) in instructions.params() {
        if *name == "X-Amz-Signature" {
            signature = Some(value);
            continue;
        }
        let _ = write!(token, "&{name}={}", utf8_percent_encode(value, RFC3986));
    }
    let signature = signature.ok_or_else(|| TokenError("no signature produced".into()))?;
    let _ = write!(token, "&X-Amz-Signature={signature}");
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    fn creds(token: Option<&str>) -> Credentials {
        Credentials::new(
            "AKIDEXAMPLE",
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            token.map(str::to_string),
            None,
            "test",
        )
    }

    #[test]
    fn token_shape_and_parameter_order() {
        let host = Host::parse("MyDB.abc.us-east-1.rds.amazonaws.com").unwrap();
        let req = TokenRequest {
            host: &host,
            port: 5432,
            user: "a+b@c/d é",
            region: "us-east-1",
        };
        let time = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let token = generate(&creds(Some("tok/en+=")), &req, time).unwrap();
        let (authority, query) = token.split_once("/?").unwrap();
        assert_eq!(authority, "MyDB.abc.us-east-1.rds.amazonaws.com:5432");
        let keys: Vec<&str> = query
            .split('&')
            .map(|kv| kv.split_once('=').unwrap().0)
            .collect();
        assert_eq!(
            keys,
            [
                "Action",
                "DBUser",
                "X-Amz-Algorithm",
                "X-Amz-Credential",
                "X-Amz-Date",
                "X-Amz-Expires",
                "X-Amz-SignedHeaders",
                "X-Amz-Security-Token",
                "X-Amz-Signature"
            ]
        );
        assert!(query.contains("DBUser=a%2Bb%40c%2Fd%20%C3%A9&"), "{query}");
        assert!(query.contains(
            "X-Amz-Credential=AKIDEXAMPLE%2F20231114%2Fus-east-1%2Frds-db%2Faws4_request&"
        ));
        assert!(
            query.contains(
                "X-Amz-Date=20231114T221320Z&X-Amz-Expires=900&X-Amz-SignedHeaders=host&"
            )
        );
        assert!(
            query.contains("X-Amz-Security-Token=tok%2Fen%2B%3D&"),
            "{query}"
        );
        let sig = query.rsplit_once("X-Amz-Signature=").unwrap().1;
        assert_eq!(sig.len(), 64);
        assert!(
            sig.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        );
    }

    #[test]
    fn host_case_does_not_change_the_signature() {
        let time = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let sig = |h: &str| {
            let host = Host::parse(h).unwrap();
            let req = TokenRequest {
                host: &host,
                port: 3306,
                user: "app",
                region: "eu-west-1",
            };
            let t = generate(&creds(None), &req, time).unwrap();
            t.rsplit_once('=').unwrap().1.to_string()
        };
        assert_eq!(sig("DB.Example.COM"), sig("db.example.com"));
        assert_ne!(sig("db.example.com"), sig("db2.example.com"));
    }
}
