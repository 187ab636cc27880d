//! AWS configuration: region names, signing-region resolution, and
//! credentials through the default chain with a bounded IMDS probe.
//!
//! Nothing here ever formats a secret: credentials only leave this module
//! as `aws_credential_types::Credentials`, whose `Debug` redacts them.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use aws_config::default_provider::credentials::DefaultCredentialsChain;
use aws_config::environment::credentials::EnvironmentVariableCredentialsProvider;
use aws_config::environment::region::EnvironmentVariableRegionProvider;
use aws_config::meta::region::ProvideRegion;
use aws_config::profile::{ProfileFileCredentialsProvider, ProfileFileRegionProvider};
use aws_config::provider_config::ProviderConfig;
use aws_credential_types::Credentials;
use aws_credential_types::provider::ProvideCredentials;
use aws_credential_types::provider::error::CredentialsError;
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::BeforeDeserializationInterceptorContextRef;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;
use aws_types::region::Region;

use crate::error::Category;

/// Whether `s` has the shape of an AWS region name: lowercase words joined
/// by `-`, a two- to four-letter first word and a trailing number
/// (`us-east-1`, `us-gov-west-1`, `cn-northwest-1`, `eu-isoe-west-1`,
/// `eusc-de-east-1`); not
/// `US-EAST-1`, nor an availability zone such as `us-east-1a`.
pub(crate) fn is_valid_region(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    let Some((last, words)) = parts.split_last() else {
        return false;
    };
    words.len() >= 2
        && (2..=4).contains(&words[0].len())
        && words
            .iter()
            .all(|w| !w.is_empty() && w.bytes().all(|b| b.is_ascii_lowercase()))
        && (1..=2).contains(&last.len())
        && last.bytes().all(|b| b.is_ascii_digit())
}

/// Every region rdsconn knows, in every partition (botocore's partitions
/// data; a test compares the two). A region newer than this build is
/// accepted with `--allow-unknown-region` / `RDSCONN_ALLOW_UNKNOWN_REGION`.
pub(crate) const KNOWN_REGIONS: &[&str] = &[
    "af-south-1",
    "ap-east-1",
    "ap-east-2",
    "ap-northeast-1",
    "ap-northeast-2",
    "ap-northeast-3",
    "ap-south-1",
    "ap-south-2",
    "ap-southeast-1",
    "ap-southeast-2",
    "ap-southeast-3",
    "ap-southeast-4",
    "ap-southeast-5",
    "ap-southeast-6",
    "ap-southeast-7",
    "ca-central-1",
    "ca-west-1",
    "eu-central-1",
    "eu-central-2",
    "eu-north-1",
    "eu-south-1",
    "eu-south-2",
    "eu-west-1",
    "eu-west-2",
    "eu-west-3",
    "il-central-1",
    "me-central-1",
    "me-south-1",
    "me-west-1",
    "mx-central-1",
    "sa-east-1",
    "sa-west-1",
    "us-east-1",
    "us-east-2",
    "us-west-1",
    "us-west-2",
    "cn-north-1",
    "cn-northwest-1",
    "eusc-de-east-1",
    "us-iso-east-1",
    "us-iso-west-1",
    "us-isob-east-1",
    "us-isob-west-1",
    "eu-isoe-west-1",
    "us-isof-east-1",
    "us-isof-south-1",
    "us-gov-east-1",
    "us-gov-west-1",
];

static ALLOW_UNKNOWN: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// `--allow-unknown-region`: a well-formed region that is not in
/// [`KNOWN_REGIONS`] is accepted for the rest of the run.
pub(crate) fn allow_unknown_regions(allow: bool) {
    ALLOW_UNKNOWN.store(allow, std::sync::atomic::Ordering::Relaxed);
}

/// A region `from` names, checked: its shape, and that rdsconn knows it
/// (a typo such as `eu-wset-1` would sign for a region that does not
/// exist), unless unknown regions are allowed.
pub(crate) fn check_region(region: &str, from: &'static str) -> Result<(), AwsError> {
    if !is_valid_region(region) {
        return Err(AwsError::BadRegion {
            region: region.to_string(),
            from,
        });
    }
    if KNOWN_REGIONS.contains(&region) || ALLOW_UNKNOWN.load(std::sync::atomic::Ordering::Relaxed) {
        return Ok(());
    }
    let suggestion = KNOWN_REGIONS
        .iter()
        .map(|k| (strsim::damerau_levenshtein(region, k), *k))
        .filter(|(d, _)| *d <= 2)
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k.to_string());
    Err(AwsError::UnknownRegion {
        region: region.to_string(),
        from,
        suggestion,
    })
}

/// Where an AWS API's calls go, for error messages: `HOST (REGION)`, the
/// host from `AWS_ENDPOINT_URL_<SERVICE>`, else `AWS_ENDPOINT_URL`, else
/// the partition's `SERVICE.REGION.SUFFIX`.
pub(crate) fn api_at((var_name, service): (&str, &str), region: &str) -> String {
    let var = format!("AWS_ENDPOINT_URL_{var_name}");
    let host = std::env::var(var)
        .ok()
        .or_else(|| std::env::var("AWS_ENDPOINT_URL").ok())
        .filter(|u| !u.is_empty())
        .and_then(|u| {
            let url = url::Url::parse(&u).ok()?;
            let host = url.host_str()?.to_string();
            Some(url.port().map_or(host.clone(), |p| format!("{host}:{p}")))
        })
        .unwrap_or_else(|| format!("{service}.{region}.{}", partition_of(region).dns_suffix));
    format!("{} ({region})", crate::text::escape(&host))
}

/// Where the signing region came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum RegionSource {
    /// `--region`.
    Flag,
    /// Parsed from the RDS endpoint name.
    Endpoint,
    /// `AWS_REGION` / `AWS_DEFAULT_REGION`.
    Environment,
    /// The shared config profile's `region`.
    Profile,
}

/// The region to sign for, and a warning when sources disagreed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ResolvedRegion {
    pub region: String,
    pub source: RegionSource,
    pub warning: Option<String>,
}

/// Errors of this module; their [`Categorized`](crate::error::Categorized) impl gives the exit code.
#[derive(Debug, thiserror::Error)]
pub(crate) enum AwsError {
    #[error("invalid region {region:?} from {from} (expected e.g. us-east-1)")]
    BadRegion { region: String, from: &'static str },
    #[error("unknown region {region:?} from {from}{}", suggestion.as_ref().map(|s| format!(": did you mean {s}?")).unwrap_or_default())]
    UnknownRegion {
        region: String,
        from: &'static str,
        suggestion: Option<String>,
    },
    #[error("no AWS region: the endpoint name does not carry one and none is configured")]
    NoRegion,
    #[error("no AWS credentials found")]
    NoCredentials(#[source] CredentialsError),
    #[error("loading AWS credentials from profile {profile:?}")]
    ProfileCredentials {
        profile: String,
        #[source]
        source: CredentialsError,
    },
    #[error("no AWS credentials could be loaded")]
    Credentials(#[source] CredentialsError),
    #[error("loading AWS credentials timed out after {}", crate::text::seconds(*.0))]
    CredentialsTimeout(Duration),
}

const CREDENTIAL_SOURCES: &str = "looked in: environment (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY), \
shared config and credentials files (~/.aws/config, ~/.aws/credentials; profile from --profile / AWS_PROFILE, \
incl. SSO, credential_process, assume-role), web identity (AWS_WEB_IDENTITY_TOKEN_FILE), \
container credentials (AWS_CONTAINER_CREDENTIALS_*), EC2 instance metadata (IMDS)";

impl crate::error::Categorized for AwsError {
    fn category(&self) -> Category {
        match self {
            Self::BadRegion { .. } | Self::UnknownRegion { .. } => Category::Usage,
            _ => Category::Aws,
        }
    }

    fn hint(&self) -> Option<String> {
        match self {
            Self::NoRegion => Some(
                "pass --region, use the RDS endpoint name (NAME.ID.REGION.rds.amazonaws.com), \
                 or set AWS_REGION / `region` in ~/.aws/config"
                    .into(),
            ),
            Self::NoCredentials(_) | Self::Credentials(_) | Self::CredentialsTimeout(_) => {
                Some(format!(
                    "{CREDENTIAL_SOURCES}; run `aws configure` or `aws sso login`, or export AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
                ))
            }
            Self::ProfileCredentials { profile, .. } => Some(format!(
                "check [profile {profile}] in ~/.aws/config or [{profile}] in ~/.aws/credentials (for SSO: `aws sso login --profile {profile}`)"
            )),
            Self::BadRegion { .. } => None,
            Self::UnknownRegion { .. } => Some(
                "a region newer than this rdsconn: pass --allow-unknown-region \
                 (or set RDSCONN_ALLOW_UNKNOWN_REGION=1)"
                    .into(),
            ),
        }
    }
}

/// The region configured outside the command line: `AWS_REGION` /
/// `AWS_DEFAULT_REGION`, else the profile's `region`.
pub(crate) async fn configured_region(profile: Option<&str>) -> Option<(String, RegionSource)> {
    if let Some(r) = EnvironmentVariableRegionProvider::new().region().await {
        return Some((r.to_string(), RegionSource::Environment));
    }
    let mut builder = ProfileFileRegionProvider::builder();
    if let Some(p) = profile {
        builder = builder.profile_name(p);
    }
    let region = builder.build().region().await?;
    Some((region.to_string(), RegionSource::Profile))
}

/// Picks the signing region: `--region` > the endpoint's region > the
/// configured region. Never a default: no region is an error.
pub(crate) fn resolve_region(
    flag: Option<&str>,
    endpoint: Option<&str>,
    configured: Option<(String, RegionSource)>,
) -> Result<ResolvedRegion, AwsError> {
    if let Some(r) = flag {
        check_region(r, "--region")?;
        let warning = endpoint.filter(|e| *e != r).map(|e| {
            format!("--region {r} differs from the endpoint's region {e}; signing for {r} as asked")
        });
        return Ok(ResolvedRegion {
            region: r.to_string(),
            source: RegionSource::Flag,
            warning,
        });
    }
    if let Some(e) = endpoint {
        check_region(e, "the endpoint name")?;
        let warning = configured.filter(|(c, _)| c != e).map(|(c, source)| {
            let from = match source {
                RegionSource::Environment => "AWS_REGION",
                _ => "the profile's region",
            };
            format!("{from} ({c}) differs from the endpoint's region {e}; signing for {e}")
        });
        return Ok(ResolvedRegion {
            region: e.to_string(),
            source: RegionSource::Endpoint,
            warning,
        });
    }
    match configured {
        Some((c, source)) => {
            check_region(
                &c,
                if source == RegionSource::Environment {
                    "AWS_REGION"
                } else {
                    "the AWS profile"
                },
            )?;
            Ok(ResolvedRegion {
                region: c,
                source,
                warning: None,
            })
        }
        None => Err(AwsError::NoRegion),
    }
}

/// Loads credentials: `--profile` uses that profile only (as the AWS CLI
/// does); otherwise the default chain, environment first.
///
/// The IMDS probe is bounded (one attempt, short timeouts) so that a
/// machine without credentials fails within about a second instead of
/// waiting out the SDK's defaults.
pub(crate) async fn credentials(
    profile: Option<&str>,
    region: &str,
) -> Result<Credentials, AwsError> {
    // Fast path for the common CI case; exactly what the chain tries first.
    if profile.is_none() && std::env::var_os("AWS_ACCESS_KEY_ID").is_some() {
        let env = EnvironmentVariableCredentialsProvider::new();
        if let Ok(c) = env.provide_credentials().await {
            tracing::debug!("AWS credentials from the environment");
            return Ok(c);
        }
    }
    let conf = ProviderConfig::default().with_region(Some(Region::new(region.to_string())));
    let load = async {
        if let Some(p) = profile {
            let provider = ProfileFileCredentialsProvider::builder()
                .profile_name(p)
                .configure(&conf)
                .build();
            return provider.provide_credentials().await.map_err(|source| {
                AwsError::ProfileCredentials {
                    profile: p.to_string(),
                    source,
                }
            });
        }
        let imds = aws_config::imds::Client::builder()
            .max_attempts(1)
            .connect_timeout(Duration::from_millis(250))
            .read_timeout(Duration::from_millis(500))
            .operation_timeout(Duration::from_secs(1))
            .configure(&conf)
            .build();
        let chain = DefaultCredentialsChain::builder()
            .region(Region::new(region.to_string()))
            .imds_client(imds)
            .configure(conf.clone())
            .build()
            .await;
        chain.provide_credentials().await.map_err(|e| match e {
            CredentialsError::CredentialsNotLoaded(_) => AwsError::NoCredentials(e),
            other => AwsError::Credentials(other),
        })
    };
    // SSO and credential_process may legitimately take a while; this only
    // guards against a provider that never answers.
    let limit = Duration::from_mins(1);
    tokio::time::timeout(limit, load)
        .await
        .map_err(|_| AwsError::CredentialsTimeout(limit))?
}

/// A warning when the credentials expire before a 15-minute token would.
pub(crate) fn expiry_warning(
    creds: &Credentials,
    now: SystemTime,
    lifetime: Duration,
) -> Option<String> {
    let expiry = creds.expiry()?;
    let left = expiry.duration_since(now).unwrap_or(Duration::ZERO);
    (left < lifetime).then(|| {
        format!(
            "the AWS credentials expire in {} min ({}); the token stops working then, not after {} min",
            left.as_secs() / 60,
            humantime::format_rfc3339_seconds(expiry),
            lifetime.as_secs() / 60
        )
    })
}

/// SigV4 requests (and tokens) are rejected beyond this clock skew.
pub(crate) const MAX_CLOCK_SKEW: Duration = Duration::from_mins(5);

/// Why STS `GetCallerIdentity` failed.
pub(crate) type IdentityError = aws_sdk_sts::error::SdkError<
    aws_sdk_sts::operation::get_caller_identity::GetCallerIdentityError,
>;

/// Who the credentials are (STS `GetCallerIdentity`).
pub(crate) struct Identity {
    pub arn: String,
    pub account: String,
}

/// The `Date` header of an AWS response.
#[derive(Clone, Debug, Default)]
struct ServerDate(Arc<Mutex<Option<String>>>);

impl Intercept for ServerDate {
    fn name(&self) -> &'static str {
        "ServerDate"
    }

    fn read_after_transmit(
        &self,
        context: &BeforeDeserializationInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> std::result::Result<(), BoxError> {
        if let Some(date) = context.response().headers().get("date") {
            *self.0.lock().unwrap_or_else(PoisonError::into_inner) = Some(date.to_string());
        }
        Ok(())
    }
}

/// STS `GetCallerIdentity`, and the local clock's skew from AWS in seconds
/// (positive: ahead), from the response's Date header when there is one.
pub(crate) async fn caller_identity(
    config: &aws_types::SdkConfig,
) -> (Result<Identity, IdentityError>, Option<f64>) {
    let sts = aws_sdk_sts::Client::new(config);
    let date = ServerDate::default();
    let sent = SystemTime::now();
    let result = sts
        .get_caller_identity()
        .customize()
        .interceptor(date.clone())
        .send()
        .await;
    let received = SystemTime::now();
    let identity = result.map(|out| Identity {
        arn: out.arn().unwrap_or("?").to_string(),
        account: out.account().unwrap_or("?").to_string(),
    });
    let header = date
        .0
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    let skew = header
        .and_then(|d| {
            aws_smithy_types::DateTime::from_str(&d, aws_smithy_types::date_time::Format::HttpDate)
                .ok()
        })
        .map(|server| {
            // The server stamped its Date (whole seconds, truncated)
            // between sending and receiving.
            let local = sent + received.duration_since(sent).unwrap_or_default() / 2;
            let local = aws_smithy_types::DateTime::from(local).as_secs_f64();
            local - (server.as_secs_f64() + 0.5)
        });
    (identity, skew)
}

/// An AWS partition: its ARN name and the DNS suffix of its endpoints
/// (botocore's `partitions.json`; a test holds this table to it).
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Partition {
    pub id: &'static str,
    pub dns_suffix: &'static str,
    /// What its region names start with.
    region_prefixes: &'static [&'static str],
}

/// Every partition, the more specific region prefixes first (`us-gov-`
/// before the commercial `us-`), so the first match wins.
pub(crate) const PARTITIONS: &[Partition] = &[
    Partition {
        id: "aws-us-gov",
        dns_suffix: "amazonaws.com",
        region_prefixes: &["us-gov-"],
    },
    Partition {
        id: "aws-iso",
        dns_suffix: "c2s.ic.gov",
        region_prefixes: &["us-iso-"],
    },
    Partition {
        id: "aws-iso-b",
        dns_suffix: "sc2s.sgov.gov",
        region_prefixes: &["us-isob-"],
    },
    Partition {
        id: "aws-iso-e",
        dns_suffix: "cloud.adc-e.uk",
        region_prefixes: &["eu-isoe-"],
    },
    Partition {
        id: "aws-iso-f",
        dns_suffix: "csp.hci.ic.gov",
        region_prefixes: &["us-isof-"],
    },
    Partition {
        id: "aws-eusc",
        dns_suffix: "amazonaws.eu",
        region_prefixes: &["eusc-"],
    },
    Partition {
        id: "aws-cn",
        dns_suffix: "amazonaws.com.cn",
        region_prefixes: &["cn-"],
    },
    Partition {
        id: "aws",
        dns_suffix: "amazonaws.com",
        region_prefixes: &[
            "us-", "eu-", "ap-", "sa-", "ca-", "me-", "af-", "il-", "mx-",
        ],
    },
];

/// The partition a region is in (botocore's rule: the region's pattern,
/// else the commercial partition).
pub(crate) fn partition_of(region: &str) -> &'static Partition {
    PARTITIONS
        .iter()
        .find(|p| p.region_prefixes.iter().any(|pre| region.starts_with(pre)))
        .unwrap_or(&PARTITIONS[PARTITIONS.len() - 1])
}

/// The ARN partition of a region.
pub(crate) fn partition(region: &str) -> &'static str {
    partition_of(region).id
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn region_shapes() {
        assert!(is_valid_region("us-gov-west-1"));
        assert!(!is_valid_region("US-EAST-1"));
        assert!(!is_valid_region("us-east-1a")); // an availability zone
    }

    #[test]
    fn region_syntax() {
        for ok in [
            "us-east-1",
            "us-gov-west-1",
            "cn-northwest-1",
            "eu-isoe-west-1",
            "ap-southeast-10",
        ] {
            assert!(is_valid_region(ok), "{ok}");
        }
        for bad in [
            "",
            "us",
            "us-east",
            "US-EAST-1",
            "us-east-1a",
            "us--1",
            "useast-1",
            "us-east-123",
            "us east-1",
        ] {
            assert!(!is_valid_region(bad), "{bad}");
        }
    }

    #[test]
    fn region_precedence_and_warnings() {
        let env = Some(("eu-west-1".to_string(), RegionSource::Environment));
        let r = resolve_region(Some("us-east-2"), Some("us-east-1"), env.clone()).unwrap();
        assert_eq!(
            (r.region.as_str(), r.source),
            ("us-east-2", RegionSource::Flag)
        );
        assert!(
            r.warning
                .unwrap()
                .contains("differs from the endpoint's region us-east-1")
        );

        let r = resolve_region(None, Some("us-east-1"), env.clone()).unwrap();
        assert_eq!(
            (r.region.as_str(), r.source),
            ("us-east-1", RegionSource::Endpoint)
        );
        assert!(
            r.warning
                .unwrap()
                .starts_with("AWS_REGION (eu-west-1) differs")
        );

        let r = resolve_region(None, Some("eu-west-1"), env.clone()).unwrap();
        assert_eq!(r.warning, None);

        let r = resolve_region(None, None, env).unwrap();
        assert_eq!(
            (r.region.as_str(), r.source),
            ("eu-west-1", RegionSource::Environment)
        );

        assert!(matches!(
            resolve_region(None, None, None),
            Err(AwsError::NoRegion)
        ));
        assert!(matches!(
            resolve_region(Some("moon"), None, None),
            Err(AwsError::BadRegion { .. })
        ));
        assert!(matches!(
            resolve_region(None, None, Some(("Mars".into(), RegionSource::Profile))),
            Err(AwsError::BadRegion { .. })
        ));
    }

    #[test]
    fn expiry_warning_only_when_credentials_die_first() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let soon = Credentials::new(
            "AKID",
            "secret",
            None,
            Some(now + Duration::from_mins(5)),
            "t",
        );
        let later = Credentials::new(
            "AKID",
            "secret",
            None,
            Some(now + Duration::from_hours(1)),
            "t",
        );
        let never = Credentials::new("AKID", "secret", None, None, "t");
        let lifetime = Duration::from_mins(15);
        let w = expiry_warning(&soon, now, lifetime).unwrap();
        assert!(
            w.contains("expire in 5 min") && !w.contains("secret"),
            "{w}"
        );
        assert_eq!(expiry_warning(&later, now, lifetime), None);
        assert_eq!(expiry_warning(&never, now, lifetime), None);
    }
}
