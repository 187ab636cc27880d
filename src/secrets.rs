//! Passwords from AWS Secrets Manager (`--secret`, `--master-secret`): one
//! `GetSecretValue` through the same credential chain, endpoint-URL
//! variables and bounded timeouts as the RDS API, and the `SecretString`
//! JSON read the way RDS writes it (`username`, `password`, and for
//! RDS-style secrets `engine`, `host`, `port`, `dbname`,
//! `dbInstanceIdentifier` / `dbClusterIdentifier`).
//!
//! The secret's value never leaves this module except as a [`Secret`]: no
//! error, log line or warning quotes any part of it (JSON parse errors are
//! replaced by rdsconn's own words, since serde's may quote the input).

use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_secretsmanager::error::{ProvideErrorMetadata, SdkError};
use serde_json::Value;

use crate::aws;
use crate::cli::GlobalArgs;
use crate::error::{Categorized, Category};
use crate::secret::Secret;

/// Why a secret could not be used; every one is an AWS error (exit 3).
#[derive(Debug, thiserror::Error)]
pub(crate) enum SecretError {
    #[error(transparent)]
    Aws(#[from] aws::AwsError),
    #[error("secret {id:?} not found in {region}")]
    NotFound { id: String, region: String },
    #[error("reading secret {id:?}: access denied ({code})")]
    Denied { id: String, code: String },
    #[error("the Secrets Manager call {operation} for {id:?} to {at} failed: {message}")]
    Api {
        operation: &'static str,
        id: String,
        /// `HOST (REGION)`.
        at: String,
        message: String,
    },
    #[error("secret {id:?} holds SecretBinary; rdsconn reads a SecretString with JSON")]
    Binary { id: String },
    #[error("secret {id:?} is not a JSON object with username and password")]
    NotJson { id: String },
    #[error("secret {id:?} has no {key:?} key")]
    MissingKey { id: String, key: &'static str },
    #[error("secret {id:?}: {key:?} is not {expected}")]
    BadValue {
        id: String,
        key: &'static str,
        expected: &'static str,
    },
}

impl Categorized for SecretError {
    fn category(&self) -> Category {
        match self {
            Self::Aws(e) => e.category(),
            _ => Category::Aws,
        }
    }

    fn hint(&self) -> Option<String> {
        match self {
            Self::Aws(e) => e.hint(),
            Self::NotFound { .. } => Some(
                "check the name or ARN and the region (--secret-region, or an ARN, which names its region)"
                    .into(),
            ),
            Self::Denied { .. } => Some(
                "the caller needs secretsmanager:GetSecretValue on the secret (and kms:Decrypt on its key)"
                    .into(),
            ),
            Self::Api { .. } => Some(
                "check network access to Secrets Manager (or AWS_ENDPOINT_URL_SECRETS_MANAGER for a VPC endpoint)"
                    .into(),
            ),
            Self::Binary { .. } | Self::NotJson { .. } | Self::MissingKey { .. } | Self::BadValue { .. } => Some(
                "store {\"username\": …, \"password\": …} (RDS-style secrets may add engine, host, port, dbname)".into(),
            ),
        }
    }
}

/// A database secret as read: the password and what else it says.
#[derive(Clone)]
pub(crate) struct DbSecret {
    pub password: Secret,
    pub username: Option<String>,
    pub engine: Option<String>,
    pub host: Option<String>,
    pub port: Option<u16>,
    pub dbname: Option<String>,
    pub instance: Option<String>,
    pub cluster: Option<String>,
}

impl std::fmt::Debug for DbSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DbSecret")
            .field("username", &self.username)
            .field("host", &self.host)
            .finish_non_exhaustive()
    }
}

/// Where a secret is: its name or ARN, and the region to ask.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SecretRef {
    pub id: String,
    /// `--secret-region`, else the ARN's, else the configured region.
    pub region: Option<String>,
}

impl SecretRef {
    pub(crate) fn new(id: &str, region: Option<&str>) -> Self {
        Self {
            id: id.to_string(),
            region: region.map(str::to_string).or_else(|| arn_region(id)),
        }
    }
}

/// The region of a Secrets Manager ARN
/// (`arn:PARTITION:secretsmanager:REGION:ACCOUNT:secret:NAME`).
fn arn_region(id: &str) -> Option<String> {
    let mut parts = id.splitn(6, ':');
    match (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) {
        (Some("arn"), Some(_), Some("secretsmanager"), Some(region), Some(_), Some(_))
            if aws::is_valid_region(region) =>
        {
            Some(region.to_string())
        }
        _ => None,
    }
}

/// Reads `secret` with `GetSecretValue`.
pub(crate) async fn fetch(
    global: &GlobalArgs,
    secret: &SecretRef,
) -> Result<DbSecret, SecretError> {
    let region = if let Some(r) = &secret.region {
        r.clone()
    } else {
        let configured = match global.region {
            Some(_) => None,
            None => aws::configured_region(global.profile.as_deref()).await,
        };
        aws::resolve_region(global.region.as_deref(), None, configured)?.region
    };
    let config = crate::rds::sdk_config(global, &region).await?;
    let client = aws_sdk_secretsmanager::Client::new(&config);
    let id = &secret.id;
    tracing::info!(secret = %id, %region, "reading the password from Secrets Manager");
    let out = client.get_secret_value().secret_id(id).send().await;
    if let Some(m) = crate::ops::metrics::metrics() {
        m.secret_read(out.is_ok());
    }
    let out = out.map_err(|e| call_error("GetSecretValue", id, &region, &e))?;
    match (out.secret_string(), out.secret_binary()) {
        (Some(text), _) => parse(id, text),
        (None, Some(_)) => Err(SecretError::Binary { id: id.clone() }),
        (None, None) => Err(SecretError::NotJson { id: id.clone() }),
    }
}

fn call_error<E>(
    operation: &'static str,
    id: &str,
    region: &str,
    e: &SdkError<E, aws_smithy_runtime_api::client::orchestrator::HttpResponse>,
) -> SecretError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    if let SdkError::ServiceError(s) = e {
        let err = s.err();
        match err.code() {
            Some("ResourceNotFoundException") => {
                return SecretError::NotFound {
                    id: id.to_string(),
                    region: region.to_string(),
                };
            }
            Some(
                code @ ("AccessDeniedException" | "AccessDenied" | "UnrecognizedClientException"),
            ) => {
                return SecretError::Denied {
                    id: id.to_string(),
                    code: code.to_string(),
                };
            }
            _ => {}
        }
    }
    SecretError::Api {
        operation,
        id: id.to_string(),
        at: crate::aws::api_at(("SECRETS_MANAGER", "secretsmanager"), region),
        message: crate::rds::api_message(e),
    }
}

/// The `SecretString` JSON; values are never quoted in errors.
fn parse(id: &str, text: &str) -> Result<DbSecret, SecretError> {
    let Ok(Value::Object(map)) = serde_json::from_str::<Value>(text) else {
        return Err(SecretError::NotJson { id: id.to_string() });
    };
    let bad = |key, expected| SecretError::BadValue {
        id: id.to_string(),
        key,
        expected,
    };
    let text_of = |key: &'static str| -> Result<Option<String>, SecretError> {
        match map.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if s.is_empty() => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(bad(key, "a string")),
        }
    };
    let password = match map.get("password") {
        Some(Value::String(p)) if !p.is_empty() => Secret::new(p.clone()),
        Some(Value::String(_) | Value::Null) | None => {
            return Err(SecretError::MissingKey {
                id: id.to_string(),
                key: "password",
            });
        }
        Some(_) => return Err(bad("password", "a string")),
    };
    let port = match map.get("port") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => Some(
            n.as_u64()
                .and_then(|p| u16::try_from(p).ok())
                .filter(|p| *p > 0)
                .ok_or_else(|| bad("port", "a port number"))?,
        ),
        Some(Value::String(s)) => Some(
            s.parse::<u16>()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| bad("port", "a port number"))?,
        ),
        Some(_) => return Err(bad("port", "a port number")),
    };
    Ok(DbSecret {
        password,
        username: text_of("username")?,
        engine: text_of("engine")?,
        host: text_of("host")?,
        port,
        dbname: text_of("dbname")?,
        instance: text_of("dbInstanceIdentifier")?,
        cluster: text_of("dbClusterIdentifier")?,
    })
}

/// What `doctor` says about a secret: its rotation and whether the caller
/// may read it (`GetSecretValue` attempted; the value is dropped unread).
pub(crate) struct SecretInfo {
    pub rotation: Rotation,
    pub readable: Result<(), SecretError>,
}

/// A secret's rotation, from `DescribeSecret`.
pub(crate) struct Rotation {
    pub enabled: Option<bool>,
    pub last_rotated: Option<String>,
}

/// A Secrets Manager client for one configuration's region, for asking
/// about many secrets.
#[derive(Clone)]
pub(crate) struct Describer {
    client: aws_sdk_secretsmanager::Client,
    region: String,
}

impl Describer {
    pub(crate) fn new(config: &aws_types::SdkConfig) -> Self {
        Self {
            client: aws_sdk_secretsmanager::Client::new(config),
            region: config
                .region()
                .map_or_else(String::new, ToString::to_string),
        }
    }

    /// `DescribeSecret` only: the secret's rotation, its value unread.
    pub(crate) async fn rotation(&self, arn: &str) -> Result<Rotation, SecretError> {
        let out = self
            .client
            .describe_secret()
            .secret_id(arn)
            .send()
            .await
            .map_err(|e| call_error("DescribeSecret", arn, &self.region, &e))?;
        Ok(Rotation {
            enabled: out.rotation_enabled(),
            last_rotated: out
                .last_rotated_date()
                .and_then(|d| d.fmt(aws_smithy_types::date_time::Format::DateTime).ok()),
        })
    }

    /// Whether the caller may read the secret (`GetSecretValue`; the
    /// value is dropped unread).
    async fn readable(&self, arn: &str) -> Result<(), SecretError> {
        self.client
            .get_secret_value()
            .secret_id(arn)
            .send()
            .await
            .map(drop)
            .map_err(|e| call_error("GetSecretValue", arn, &self.region, &e))
    }
}

/// `DescribeSecret`, then a `GetSecretValue` whose value is dropped.
pub(crate) async fn describe(
    config: &aws_types::SdkConfig,
    arn: &str,
) -> Result<SecretInfo, SecretError> {
    let api = Describer::new(config);
    let rotation = api.rotation(arn).await?;
    let readable = api.readable(arn).await;
    Ok(SecretInfo { rotation, readable })
}

/// A password read from Secrets Manager, and where to read it again.
#[derive(Clone)]
pub(crate) struct FromSecret {
    pub source: SecretRef,
    pub password: Secret,
}

impl FromSecret {
    /// The secret read again (after the database refused its password:
    /// it may have been rotated since).
    pub(crate) async fn reread(&self, global: &GlobalArgs) -> Result<Secret, SecretError> {
        Ok(fetch(global, &self.source).await?.password)
    }
}

/// Logs in with `auth`; when the server refuses a password read from
/// `secret`, reads the secret once more (a rotation may have happened
/// since) and tries again with it. The `&str` is what error messages add:
/// empty, or that the secret was read again.
pub(crate) async fn connect_rereading(
    global: &GlobalArgs,
    engine: &dyn crate::engine::Engine,
    (target, tls): (&crate::target::Target, &crate::tls::TlsPolicy),
    auth: &mut crate::secret::Auth,
    secret: Option<&FromSecret>,
) -> Result<
    (
        Result<Box<dyn crate::engine::Session>, crate::net::ConnectError>,
        &'static str,
    ),
    SecretError,
> {
    let connected = crate::engine::connect(engine, target, auth, tls).await;
    match (&connected, secret) {
        (Err(crate::net::ConnectError::Auth { .. }), Some(s)) => {
            tracing::info!(secret = %s.source.id, "the server refused the secret's password; reading the secret again");
            *auth = crate::secret::Auth::Password(s.reread(global).await?);
            let again = crate::engine::connect(engine, target, auth, tls).await;
            Ok((
                again,
                " (the secret was read again after the first refusal)",
            ))
        }
        _ => Ok((connected, "")),
    }
}

/// How long the proxy reuses a secret's password before reading it again.
pub(crate) const SECRET_REUSE: Duration = Duration::from_mins(5);

/// The proxy's copy of a secret's password: read at start-up, read again
/// after [`SECRET_REUSE`] or when the database refused it (a rotation),
/// with one read in flight at a time however many clients wait.
pub(crate) struct SecretCache {
    global: GlobalArgs,
    secret: SecretRef,
    current: tokio::sync::Mutex<(Secret, Instant)>,
    /// When a refusal last made it read the secret again.
    refreshed: tokio::sync::Mutex<Option<Instant>>,
}

/// After a refusal the secret is read again at most this often, however
/// many clients are refused (a wrong password must not become a storm of
/// Secrets Manager calls).
pub(crate) const REFRESH_AT_MOST_EVERY: Duration = Duration::from_secs(30);

impl SecretCache {
    pub(crate) fn new(global: GlobalArgs, secret: SecretRef, password: Secret) -> Arc<Self> {
        Arc::new(Self {
            global,
            secret,
            current: tokio::sync::Mutex::new((password, Instant::now())),
            refreshed: tokio::sync::Mutex::new(None),
        })
    }

    /// The password to log in with.
    pub(crate) async fn password(&self) -> Result<Secret, SecretError> {
        let mut current = self.current.lock().await;
        if current.1.elapsed() >= SECRET_REUSE {
            let fresh = fetch(&self.global, &self.secret).await?;
            *current = (fresh.password, Instant::now());
        }
        Ok(current.0.clone())
    }

    /// After the database refused a login that started at `tried_at`:
    /// whether there is a newer password to try. The secret is read again
    /// unless another client already did so since then (one read for a
    /// burst of refusals), and at most once per [`REFRESH_AT_MOST_EVERY`].
    pub(crate) async fn refresh(&self, tried_at: Instant) -> Result<bool, SecretError> {
        let mut current = self.current.lock().await;
        if current.1 > tried_at {
            return Ok(true);
        }
        let mut refreshed = self.refreshed.lock().await;
        if refreshed.is_some_and(|t| t.elapsed() < REFRESH_AT_MOST_EVERY) {
            return Ok(false);
        }
        *refreshed = Some(Instant::now());
        tracing::info!(secret = %self.secret.id, "the database refused the secret's password; reading it again");
        let fresh = fetch(&self.global, &self.secret).await?;
        let changed = fresh.password.expose() != current.0.expose();
        *current = (fresh.password, Instant::now());
        Ok(changed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rds_style_secrets_and_their_errors() {
        let s = parse(
            "x",
            r#"{"username":"app","password":"p w","engine":"postgres","host":"h.example","port":"5433","dbname":"d","dbInstanceIdentifier":"db1"}"#,
        )
        .unwrap();
        assert_eq!(s.password.expose(), "p w");
        assert_eq!(s.username.as_deref(), Some("app"));
        assert_eq!(s.port, Some(5433));
        assert_eq!(s.instance.as_deref(), Some("db1"));
        assert_eq!(
            parse("x", r#"{"password":"p","port":3306}"#).unwrap().port,
            Some(3306)
        );
        for (text, want) in [
            ("not json at all: hunter2", "not a JSON object"),
            ("[\"hunter2\"]", "not a JSON object"),
            (r#"{"username":"app"}"#, "no \"password\" key"),
            (r#"{"password":""}"#, "no \"password\" key"),
            (r#"{"password":7}"#, "\"password\" is not a string"),
            (
                r#"{"password":"p","port":"hunter2"}"#,
                "\"port\" is not a port number",
            ),
            (
                r#"{"password":"p","port":70000}"#,
                "\"port\" is not a port number",
            ),
            (
                r#"{"password":"p","host":["hunter2"]}"#,
                "\"host\" is not a string",
            ),
        ] {
            let e = parse("x", text).map(|_| ()).unwrap_err().to_string();
            assert!(e.contains(want), "{text}: {e}");
            assert!(!e.contains("hunter2"), "{e}");
        }
    }

    #[test]
    fn arn_regions() {
        assert_eq!(
            SecretRef::new(
                "arn:aws:secretsmanager:eu-west-1:123456789012:secret:prod/app-AbCdEf",
                None
            )
            .region
            .as_deref(),
            Some("eu-west-1")
        );
        assert_eq!(SecretRef::new("prod/app", None).region, None);
        assert_eq!(
            SecretRef::new(
                "arn:aws:secretsmanager:eu-west-1:1:secret:x",
                Some("us-east-2")
            )
            .region
            .as_deref(),
            Some("us-east-2")
        );
    }
}
