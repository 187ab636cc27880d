//! IAM database authentication: the region a token is signed for, minting
//! one for a connection (credentials loaded, expiry warned about), and the
//! per-user token cache the proxy mints through. The signing itself is pure
//! and lives in [`crate::token`].

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use tokio::sync::Mutex;

use crate::aws;
use crate::cli::GlobalArgs;
use crate::error::Result;
use crate::net::ConnectError;
use crate::output;
use crate::secret::Secret;
use crate::target::Host;
use crate::token::{self, DsqlTokenRequest, TOKEN_LIFETIME, TokenRequest};

/// How long a minted token is reused for new connections of the same
/// user (RDS accepts it for 15 minutes; connections already open are not
/// affected by its expiry).
pub(crate) const TOKEN_REUSE: Duration = Duration::from_mins(10);

/// A freshly minted token and what it was signed for.
pub(crate) struct Minted {
    pub token: String,
    pub region: String,
    pub issued_at: SystemTime,
    /// How long it is accepted.
    pub lifetime: Duration,
    /// What it was signed with (for minting more, as the proxy does).
    pub credentials: Credentials,
}

/// Resolves the region and credentials and signs a token for
/// `host:port` and `user`; warnings go to stderr. Every `--iam` connection
/// mints through here (the proxy through [`signing_region`] and its own
/// credentials cache).
pub(crate) async fn mint(
    global: &GlobalArgs,
    host: &Host,
    port: u16,
    user: &str,
) -> Result<Minted> {
    mint_with(global, host, port, user, |_| {}).await
}

/// [`mint`], with `adjust` setting what `rdsconn token` may choose (a
/// DSQL token for any name, its lifetime).
pub(crate) async fn mint_with(
    global: &GlobalArgs,
    host: &Host,
    port: u16,
    user: &str,
    adjust: impl FnOnce(&mut Sign<'_>),
) -> Result<Minted> {
    let region = signing_region(global, host).await?;
    let creds = aws::credentials(global.profile.as_deref(), &region).await?;
    let now = SystemTime::now();
    let mut req = Sign::new(host, port, user, &region);
    adjust(&mut req);
    if let Some(w) = aws::expiry_warning(&creds, now, req.lifetime()) {
        output::warn(w);
    }
    let token = sign(&creds, &req, now)?;
    let lifetime = req.lifetime();
    Ok(Minted {
        token,
        region,
        issued_at: now,
        lifetime,
        credentials: creds,
    })
}

/// What a token is for. The endpoint's class picks the kind: an Aurora
/// DSQL name gets a DSQL token (`DbConnectAdmin` for the `admin` role),
/// every other name an RDS one.
pub(crate) struct Sign<'a> {
    pub host: &'a Host,
    pub port: u16,
    pub user: &'a str,
    pub region: &'a str,
    /// A DSQL token whatever the name (`token --dsql`: a custom DNS name).
    pub dsql: bool,
    /// DSQL only: `DbConnectAdmin` whatever the user (`token --admin`).
    pub admin: bool,
    /// DSQL only: the token's lifetime [default: 15 minutes].
    pub expires_in: Option<Duration>,
}

impl<'a> Sign<'a> {
    pub(crate) fn new(host: &'a Host, port: u16, user: &'a str, region: &'a str) -> Self {
        Self {
            host,
            port,
            user,
            region,
            dsql: false,
            admin: false,
            expires_in: None,
        }
    }

    /// Whether this is a DSQL token.
    pub(crate) fn is_dsql(&self) -> bool {
        self.dsql || self.host.is_dsql()
    }

    /// How long the token is accepted.
    pub(crate) fn lifetime(&self) -> Duration {
        self.expires_in.unwrap_or(TOKEN_LIFETIME)
    }
}

/// Signs the token `req` describes.
pub(crate) fn sign(
    creds: &Credentials,
    req: &Sign<'_>,
    now: SystemTime,
) -> Result<String, token::TokenError> {
    if req.is_dsql() {
        let dsql = DsqlTokenRequest {
            host: req.host,
            region: req.region,
            admin: req.admin || req.user == DSQL_ADMIN,
            expires_in: req.lifetime(),
        };
        return token::generate_dsql(creds, &dsql, now);
    }
    let rds = TokenRequest {
        host: req.host,
        port: req.port,
        user: req.user,
        region: req.region,
    };
    token::generate(creds, &rds, now)
}

/// Aurora DSQL's administrator role: its tokens are for `DbConnectAdmin`.
pub(crate) const DSQL_ADMIN: &str = "admin";

/// The region tokens for `host` are signed for: `--region`, else the
/// endpoint's, else the AWS config's (a disagreement is warned about).
pub(crate) async fn signing_region(global: &GlobalArgs, host: &Host) -> Result<String> {
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

/// Tokens minted per user, reused for new connections for at most
/// [`TOKEN_REUSE`] and never past the credentials' expiry; credentials
/// that are about to expire are loaded again.
pub(crate) struct TokenCache {
    host: Host,
    port: u16,
    region: String,
    profile: Option<String>,
    credentials: Mutex<Credentials>,
    tokens: Mutex<HashMap<String, (Secret, SystemTime)>>,
}

impl TokenCache {
    /// `credentials`: loaded at start-up, so that missing credentials fail
    /// before the proxy listens.
    pub(crate) fn new(
        host: Host,
        port: u16,
        region: String,
        profile: Option<String>,
        credentials: Credentials,
    ) -> Self {
        Self {
            host,
            port,
            region,
            profile,
            credentials: Mutex::new(credentials),
            tokens: Mutex::new(HashMap::new()),
        }
    }

    pub(crate) async fn token(&self, user: &str) -> Result<Secret, ConnectError> {
        let now = SystemTime::now();
        let mut tokens = self.tokens.lock().await;
        if let Some((token, until)) = tokens.get(user)
            && now < *until
        {
            return Ok(token.clone());
        }
        let started = std::time::Instant::now();
        let minted = async {
            let creds = self.fresh_credentials(now).await?;
            let req = Sign::new(&self.host, self.port, user, &self.region);
            let token = sign(&creds, &req, now).map_err(|e| ConnectError::Server(e.to_string()))?;
            Ok::<_, ConnectError>((creds, Secret::new(token)))
        }
        .await;
        if let Some(m) = crate::ops::metrics::metrics() {
            m.token_minted(minted.is_ok(), started.elapsed());
        }
        let (creds, token) = minted?;
        tracing::debug!(user, "minted an IAM token");
        make_room(&mut tokens, now);
        tokens.insert(
            user.to_string(),
            (token.clone(), reuse_until(now, creds.expiry())),
        );
        Ok(token)
    }

    /// The credentials, loaded again when they expire within a minute.
    async fn fresh_credentials(&self, now: SystemTime) -> Result<Credentials, ConnectError> {
        let mut creds = self.credentials.lock().await;
        if creds
            .expiry()
            .is_some_and(|e| e <= now + Duration::from_mins(1))
        {
            tracing::info!("AWS credentials expire soon; loading them again");
            *creds = crate::aws::credentials(self.profile.as_deref(), &self.region)
                .await
                .map_err(|e| {
                    ConnectError::Server(format!(
                        "loading AWS credentials: {}",
                        crate::error::error_line(&e)
                    ))
                })?;
        }
        Ok(creds.clone())
    }
}

/// Users whose tokens are kept: clients choose user names, so the cache
/// is bounded.
const MAX_CACHED_TOKENS: usize = 1024;

/// Makes room for one more token: expired ones go first, then the one
/// that expires soonest.
fn make_room<V>(tokens: &mut HashMap<String, (V, SystemTime)>, now: SystemTime) {
    if tokens.len() < MAX_CACHED_TOKENS {
        return;
    }
    tokens.retain(|_, (_, until)| now < *until);
    while tokens.len() >= MAX_CACHED_TOKENS {
        let Some(first) = tokens
            .iter()
            .min_by_key(|(_, (_, until))| *until)
            .map(|(user, _)| user.clone())
        else {
            break;
        };
        tokens.remove(&first);
    }
}

/// Until when a token minted at `minted` may be handed to new connections.
fn reuse_until(minted: SystemTime, credentials_expiry: Option<SystemTime>) -> SystemTime {
    let cap = minted + TOKEN_REUSE;
    credentials_expiry.map_or(cap, |e| e.min(cap))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_reused_ten_minutes_at_most_and_not_past_the_credentials() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(reuse_until(t0, None), t0 + Duration::from_mins(10));
        let soon = t0 + Duration::from_mins(3);
        assert_eq!(reuse_until(t0, Some(soon)), soon);
        let late = t0 + Duration::from_hours(1);
        assert_eq!(reuse_until(t0, Some(late)), t0 + Duration::from_mins(10));
    }

    #[test]
    fn the_token_cache_is_bounded() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let mut tokens = HashMap::new();
        for i in 0..MAX_CACHED_TOKENS + 500 {
            make_room(&mut tokens, t0);
            let until = t0 + Duration::from_secs(600 + i as u64);
            tokens.insert(format!("user{i}"), ((), until));
            assert!(tokens.len() <= MAX_CACHED_TOKENS);
        }
        // The soonest to expire went first; the newest stayed.
        assert!(!tokens.contains_key("user0"));
        assert!(tokens.contains_key(&format!("user{}", MAX_CACHED_TOKENS + 499)));
        // Expired entries go before live ones.
        let later = t0 + Duration::from_secs(600 + 700);
        make_room(&mut tokens, later);
        assert!(tokens.len() < MAX_CACHED_TOKENS);
    }
}
