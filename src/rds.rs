//! The RDS API: endpoint discovery for `--instance` / `--cluster` and
//! `rdsconn ls`.
//!
//! Every call honours `--profile`, `--region`, `AWS_ENDPOINT_URL` /
//! `AWS_ENDPOINT_URL_RDS` (a VPC endpoint, or a local test server), uses the
//! credentials rdsconn resolves for tokens, and is bounded in time: a
//! failure or timeout is an AWS error (exit 3), never a hang.

use std::time::Duration;

use aws_sdk_rds::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_rds::operation::describe_db_clusters::DescribeDBClustersError;
use aws_sdk_rds::operation::describe_db_instances::DescribeDBInstancesError;
use aws_sdk_rds::operation::describe_db_proxies::DescribeDBProxiesError;
use aws_sdk_rds::operation::describe_db_proxy_endpoints::DescribeDBProxyEndpointsError;
use aws_sdk_rds::types::{DbCluster, DbInstance, DbProxy, DbProxyEndpoint, IamAuthMode};
use serde::Serialize;

use crate::aws;
use crate::cli::GlobalArgs;
use crate::error::{Categorized, Category};
use crate::target::EngineKind;

/// Bounds on every RDS API call (each attempt, and all retries together).
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
const OPERATION_TIMEOUT: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// The AWS SDK configuration for API calls in `region`: rdsconn's own
/// credential chain (bounded IMDS probe), `--profile`, the endpoint-URL
/// variables, and bounded timeouts.
pub(crate) async fn sdk_config(
    global: &GlobalArgs,
    region: &str,
) -> Result<aws_types::SdkConfig, aws::AwsError> {
    let profile = global.profile.as_deref();
    let creds = aws::credentials(profile, region).await?;
    let timeouts = aws_config::timeout::TimeoutConfig::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .operation_attempt_timeout(ATTEMPT_TIMEOUT)
        .operation_timeout(OPERATION_TIMEOUT)
        .build();
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_types::region::Region::new(region.to_string()))
        .credentials_provider(creds)
        .timeout_config(timeouts);
    if let Some(p) = profile {
        loader = loader.profile_name(p);
    }
    Ok(loader.load().await)
}

/// Why an RDS lookup failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RdsError {
    #[error(transparent)]
    Aws(#[from] aws::AwsError),
    #[error("DB instance {id:?} not found in {region}")]
    InstanceNotFound { id: String, region: String },
    #[error("DB cluster {id:?} not found in {region}")]
    ClusterNotFound { id: String, region: String },
    #[error("{what} {id:?} not found in {region}")]
    ProxyNotFound {
        what: DbKind,
        id: String,
        region: String,
    },
    #[error("the API call {operation} to {at} failed: {message}")]
    Api {
        operation: &'static str,
        /// `HOST (REGION)`.
        at: String,
        message: String,
    },
    #[error(
        "{what} {id:?} runs {engine}, which rdsconn does not connect to (MySQL, MariaDB, PostgreSQL, Aurora)"
    )]
    UnsupportedEngine {
        what: DbKind,
        id: String,
        engine: String,
    },
    #[error("{what} {id:?} has no endpoint yet (status {status})")]
    NoEndpoint {
        what: DbKind,
        id: String,
        status: String,
    },
    #[error("{what} {id:?} is {engine}, but this is a {wanted} command")]
    EngineMismatch {
        what: DbKind,
        id: String,
        engine: String,
        wanted: &'static str,
    },
    #[error("IAM database authentication is disabled on {what} {id:?}")]
    IamDisabled { what: DbKind, id: String },
    #[error("{host} has no master user secret managed by RDS")]
    NoMasterSecret { host: String },
    #[error("{id:?} is a {is}, not a {asked}")]
    OtherKind {
        id: String,
        is: DbKind,
        asked: DbKind,
    },
}

impl Categorized for RdsError {
    fn category(&self) -> Category {
        match self {
            Self::Aws(e) => e.category(),
            Self::EngineMismatch { .. }
            | Self::UnsupportedEngine { .. }
            | Self::OtherKind { .. } => Category::Usage,
            _ => Category::Aws,
        }
    }

    fn hint(&self) -> Option<String> {
        match self {
            Self::Aws(e) => e.hint(),
            Self::InstanceNotFound { .. }
            | Self::ClusterNotFound { .. }
            | Self::ProxyNotFound { .. } => Some(
                "check the identifier and the region (--region, AWS_REGION); `rdsconn ls` lists what this account has there"
                    .into(),
            ),
            Self::Api { .. } => Some(
                "check network access to the RDS API (or AWS_ENDPOINT_URL_RDS for a VPC endpoint) and the rds:Describe* permissions"
                    .into(),
            ),
            Self::IamDisabled {
                what: DbKind::Proxy | DbKind::ProxyEndpoint,
                id,
            } => Some(format!(
                "set IAMAuth to REQUIRED (or ENABLED) in the proxy's authentication: aws rds modify-db-proxy --db-proxy-name {id} --auth …; its IAM role also needs rds-db:connect for end-to-end IAM"
            )),
            Self::IamDisabled { what, id } => Some(format!(
                "enable it: aws rds modify-db-{what:#} --db-{what:#}-identifier {id} --enable-iam-database-authentication --apply-immediately"
            )),
            Self::EngineMismatch { engine, .. } => {
                let e = engine_kind(engine).map_or("…", EngineKind::name);
                Some(format!(
                    "use `rdsconn {e}` for it (settings: `rdsconn env {e}` / `rdsconn exec {e}`; `rdsconn proxy {e}`)"
                ))
            }
            Self::OtherKind { id, is, .. } => Some(format!("pass --{is:#} {id}")),
            Self::NoMasterSecret { .. } => Some(
                "let RDS manage it (aws rds modify-db-instance/-cluster … --manage-master-user-password), or pass --secret ID".into(),
            ),
            Self::UnsupportedEngine { .. } | Self::NoEndpoint { .. } => None,
        }
    }
}

/// An RDS API client for the configured (or `--region`) region.
pub(crate) struct Rds {
    client: aws_sdk_rds::Client,
    pub region: String,
}

impl Rds {
    /// Builds a client: region from `--region` or the AWS configuration
    /// (there is no default), credentials as for tokens.
    pub(crate) async fn connect(global: &GlobalArgs) -> Result<Self, RdsError> {
        Ok(Self::connect_config(global).await?.0)
    }

    /// [`Rds::connect`], and the configuration it loaded (for other AWS
    /// services in the same region and credentials).
    pub(crate) async fn connect_config(
        global: &GlobalArgs,
    ) -> Result<(Self, aws_types::SdkConfig), RdsError> {
        let configured = match global.region {
            Some(_) => None,
            None => aws::configured_region(global.profile.as_deref()).await,
        };
        let region = aws::resolve_region(global.region.as_deref(), None, configured)?.region;
        let config = sdk_config(global, &region).await?;
        Ok((Self::new(&config, region), config))
    }

    /// An API failure of this client, naming where it called.
    fn api_error<E>(&self, operation: &'static str, e: &SdkError<E, HttpResponse>) -> RdsError
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        api_error(
            operation,
            crate::aws::api_at(("RDS", "rds"), &self.region),
            e,
        )
    }

    /// The region the client calls.
    pub(crate) fn region(&self) -> &str {
        &self.region
    }

    /// A client on an already loaded configuration.
    pub(crate) fn new(config: &aws_types::SdkConfig, region: String) -> Self {
        Self {
            client: aws_sdk_rds::Client::new(config),
            region,
        }
    }

    /// One instance by identifier.
    pub(crate) async fn instance(&self, id: &str) -> Result<Database, RdsError> {
        let out = self
            .client
            .describe_db_instances()
            .db_instance_identifier(id)
            .send()
            .await
            .map_err(|e| {
                if e.as_service_error()
                    .is_some_and(DescribeDBInstancesError::is_db_instance_not_found_fault)
                {
                    RdsError::InstanceNotFound {
                        id: id.to_string(),
                        region: self.region.clone(),
                    }
                } else {
                    self.api_error("DescribeDBInstances", &e)
                }
            })?;
        let mut db = out
            .db_instances()
            .first()
            .map(Database::from_instance)
            .ok_or_else(|| RdsError::InstanceNotFound {
                id: id.to_string(),
                region: self.region.clone(),
            })?;
        // IAM database authentication is a cluster setting for Aurora; its
        // member instances may not carry it.
        if !db.iam_auth
            && let Some(cluster) = db.cluster.clone()
        {
            db.iam_auth = self.cluster(&cluster).await?.iam_auth;
        }
        Ok(db)
    }

    /// One cluster by identifier.
    pub(crate) async fn cluster(&self, id: &str) -> Result<Database, RdsError> {
        let out = self
            .client
            .describe_db_clusters()
            .db_cluster_identifier(id)
            .send()
            .await
            .map_err(|e| {
                if e.as_service_error()
                    .is_some_and(DescribeDBClustersError::is_db_cluster_not_found_fault)
                {
                    RdsError::ClusterNotFound {
                        id: id.to_string(),
                        region: self.region.clone(),
                    }
                } else {
                    self.api_error("DescribeDBClusters", &e)
                }
            })?;
        out.db_clusters()
            .first()
            .map(Database::from_cluster)
            .ok_or_else(|| RdsError::ClusterNotFound {
                id: id.to_string(),
                region: self.region.clone(),
            })
    }

    /// One proxy by name.
    pub(crate) async fn proxy(&self, name: &str) -> Result<Database, RdsError> {
        let not_found = || RdsError::ProxyNotFound {
            what: DbKind::Proxy,
            id: name.to_string(),
            region: self.region.clone(),
        };
        let out = self
            .client
            .describe_db_proxies()
            .db_proxy_name(name)
            .send()
            .await
            .map_err(|e| {
                if e.as_service_error()
                    .is_some_and(DescribeDBProxiesError::is_db_proxy_not_found_fault)
                {
                    not_found()
                } else {
                    self.api_error("DescribeDBProxies", &e)
                }
            })?;
        out.db_proxies()
            .first()
            .map(Database::from_proxy)
            .ok_or_else(not_found)
    }

    /// One proxy endpoint by name, with its proxy's settings.
    pub(crate) async fn proxy_endpoint(&self, name: &str) -> Result<Database, RdsError> {
        let not_found = || RdsError::ProxyNotFound {
            what: DbKind::ProxyEndpoint,
            id: name.to_string(),
            region: self.region.clone(),
        };
        let out = self
            .client
            .describe_db_proxy_endpoints()
            .db_proxy_endpoint_name(name)
            .send()
            .await
            .map_err(|e| {
                if e.as_service_error().is_some_and(
                    DescribeDBProxyEndpointsError::is_db_proxy_endpoint_not_found_fault,
                ) {
                    not_found()
                } else {
                    self.api_error("DescribeDBProxyEndpoints", &e)
                }
            })?;
        let endpoint = out.db_proxy_endpoints().first().ok_or_else(not_found)?;
        let proxy = self
            .proxy(endpoint.db_proxy_name().unwrap_or_default())
            .await?;
        Ok(Database::from_proxy_endpoint(endpoint, &proxy))
    }

    /// The region's proxies (all pages).
    pub(crate) async fn proxies(&self) -> Result<Vec<Database>, RdsError> {
        let proxies = self
            .client
            .describe_db_proxies()
            .into_paginator()
            .items()
            .send()
            .collect::<Result<Vec<_>, _>>()
            .await
            .map_err(|e| self.api_error("DescribeDBProxies", &e))?;
        Ok(proxies.iter().map(Database::from_proxy).collect())
    }

    /// The instance or cluster `--instance` / `--cluster` name, else the
    /// one whose writer or reader endpoint is `host` (`None` when no
    /// database in the region has it).
    pub(crate) async fn find(
        &self,
        sel: &crate::cli::RdsSelector,
        host: Option<&crate::target::Host>,
    ) -> Result<Option<Database>, RdsError> {
        if let Some(db) = self.selected(sel).await? {
            return Ok(Some(db));
        }
        let Some(host) = host else {
            return Ok(None);
        };
        let is_host = |d: &Database| {
            d.endpoint.as_deref() == Some(host.as_str())
                || d.reader_endpoint.as_deref() == Some(host.as_str())
        };
        if let Some(db) = self.list().await?.into_iter().find(is_host) {
            return Ok(Some(db));
        }
        Ok(self.proxies().await?.into_iter().find(is_host))
    }

    /// What `--instance`, `--cluster`, `--proxy` or `--proxy-endpoint`
    /// names, if any.
    pub(crate) async fn selected(
        &self,
        sel: &crate::cli::RdsSelector,
    ) -> Result<Option<Database>, RdsError> {
        let db = if let Some(id) = &sel.instance {
            match self.instance(id).await {
                Err(RdsError::InstanceNotFound { .. }) if self.cluster(id).await.is_ok() => {
                    return Err(RdsError::OtherKind {
                        id: id.clone(),
                        is: DbKind::Cluster,
                        asked: DbKind::Instance,
                    });
                }
                other => other?,
            }
        } else if let Some(id) = &sel.cluster {
            match self.cluster(id).await {
                Err(RdsError::ClusterNotFound { .. }) if self.instance(id).await.is_ok() => {
                    return Err(RdsError::OtherKind {
                        id: id.clone(),
                        is: DbKind::Instance,
                        asked: DbKind::Cluster,
                    });
                }
                other => other?,
            }
        } else if let Some(name) = &sel.proxy {
            self.proxy(name).await?
        } else if let Some(name) = &sel.proxy_endpoint {
            self.proxy_endpoint(name).await?
        } else {
            return Ok(None);
        };
        Ok(Some(db))
    }

    pub(crate) async fn list(&self) -> Result<Vec<Database>, RdsError> {
        let (instances, clusters) = tokio::join!(
            self.client
                .describe_db_instances()
                .into_paginator()
                .items()
                .send()
                .collect::<Result<Vec<_>, _>>(),
            self.client
                .describe_db_clusters()
                .into_paginator()
                .items()
                .send()
                .collect::<Result<Vec<_>, _>>(),
        );
        let instances = instances.map_err(|e| self.api_error("DescribeDBInstances", &e))?;
        let clusters = clusters.map_err(|e| self.api_error("DescribeDBClusters", &e))?;
        let mut all: Vec<Database> = clusters.iter().map(Database::from_cluster).collect();
        all.extend(instances.iter().map(Database::from_instance));
        Ok(all)
    }
}

impl Rds {
    /// The values of `names` a DB parameter group (`cluster`: a DB
    /// cluster parameter group) sets, every page read; a name it leaves
    /// unset (the engine's default applies) is absent.
    pub(crate) async fn parameters(
        &self,
        group: &str,
        names: &[&str],
        cluster: bool,
    ) -> Result<std::collections::HashMap<String, String>, RdsError> {
        // Both calls answer with the same `Parameter` shape.
        let params: Vec<aws_sdk_rds::types::Parameter> = if cluster {
            self.client
                .describe_db_cluster_parameters()
                .db_cluster_parameter_group_name(group)
                .into_paginator()
                .items()
                .send()
                .collect::<Result<_, _>>()
                .await
                .map_err(|e| self.api_error("DescribeDBClusterParameters", &e))?
        } else {
            self.client
                .describe_db_parameters()
                .db_parameter_group_name(group)
                .into_paginator()
                .items()
                .send()
                .collect::<Result<_, _>>()
                .await
                .map_err(|e| self.api_error("DescribeDBParameters", &e))?
        };
        Ok(values_of(&params, names))
    }

    /// Turns IAM database authentication on for an instance or cluster,
    /// applied immediately.
    pub(crate) async fn enable_iam(&self, db: &Database) -> Result<(), RdsError> {
        if db.kind == DbKind::Cluster {
            self.client
                .modify_db_cluster()
                .db_cluster_identifier(&db.identifier)
                .enable_iam_database_authentication(true)
                .apply_immediately(true)
                .send()
                .await
                .map(drop)
                .map_err(|e| self.api_error("ModifyDBCluster", &e))
        } else {
            self.client
                .modify_db_instance()
                .db_instance_identifier(&db.identifier)
                .enable_iam_database_authentication(true)
                .apply_immediately(true)
                .send()
                .await
                .map(drop)
                .map_err(|e| self.api_error("ModifyDBInstance", &e))
        }
    }

    /// Every CA certificate the region offers: identifier → `ValidTill`
    /// (seconds since the epoch).
    pub(crate) async fn certificates(
        &self,
    ) -> Result<std::collections::HashMap<String, i64>, RdsError> {
        let pages = self
            .client
            .describe_certificates()
            .into_paginator()
            .send()
            .collect::<Result<Vec<_>, _>>()
            .await
            .map_err(|e| self.api_error("DescribeCertificates", &e))?;
        Ok(pages
            .iter()
            .flat_map(|p| p.certificates().iter())
            .filter_map(|c| {
                Some((
                    c.certificate_identifier()?.to_string(),
                    c.valid_till()?.secs(),
                ))
            })
            .collect())
    }

    /// What `DescribeDBEngineVersions` says about `engine` `version`;
    /// `None` when it does not know the version.
    pub(crate) async fn engine_version(
        &self,
        engine: &str,
        version: &str,
    ) -> Result<Option<EngineVersion>, RdsError> {
        let versions: Vec<aws_sdk_rds::types::DbEngineVersion> = self
            .client
            .describe_db_engine_versions()
            .engine(engine)
            .engine_version(version)
            .into_paginator()
            .items()
            .send()
            .collect::<Result<_, _>>()
            .await
            .map_err(|e| self.api_error("DescribeDBEngineVersions", &e))?;
        Ok(versions
            .iter()
            .find(|v| v.engine_version() == Some(version))
            .map(|v| EngineVersion {
                rotation_without_restart: v.supports_certificate_rotation_without_restart(),
                family: v.db_parameter_group_family().map(str::to_string),
            }))
    }

    /// The values of `names` in the engine defaults of a parameter group
    /// family (`DescribeEngineDefaultParameters`, or
    /// `DescribeEngineDefaultClusterParameters` for `cluster`), every page
    /// read; a name without a default value is absent.
    pub(crate) async fn engine_defaults(
        &self,
        family: &str,
        names: &[&str],
        cluster: bool,
    ) -> Result<std::collections::HashMap<String, String>, RdsError> {
        let mut params: Vec<aws_sdk_rds::types::Parameter> = Vec::new();
        if cluster {
            // No paginator for this one: follow the marker.
            let mut marker: Option<String> = None;
            loop {
                let out = self
                    .client
                    .describe_engine_default_cluster_parameters()
                    .db_parameter_group_family(family)
                    .set_marker(marker.clone())
                    .send()
                    .await
                    .map_err(|e| self.api_error("DescribeEngineDefaultClusterParameters", &e))?;
                let defaults = out.engine_defaults();
                params.extend(
                    defaults
                        .map(|d| d.parameters().to_vec())
                        .unwrap_or_default(),
                );
                marker = defaults
                    .and_then(|d| d.marker())
                    .filter(|m| !m.is_empty() && Some(*m) != marker.as_deref())
                    .map(str::to_string);
                if marker.is_none() {
                    break;
                }
            }
        } else {
            params = self
                .client
                .describe_engine_default_parameters()
                .db_parameter_group_family(family)
                .into_paginator()
                .items()
                .send()
                .collect::<Result<_, _>>()
                .await
                .map_err(|e| self.api_error("DescribeEngineDefaultParameters", &e))?;
        }
        Ok(values_of(&params, names))
    }

    /// Pending maintenance actions by resource ARN.
    pub(crate) async fn pending_maintenance(
        &self,
    ) -> Result<std::collections::HashMap<String, Vec<String>>, RdsError> {
        let pages = self
            .client
            .describe_pending_maintenance_actions()
            .into_paginator()
            .send()
            .collect::<Result<Vec<_>, _>>()
            .await
            .map_err(|e| self.api_error("DescribePendingMaintenanceActions", &e))?;
        let mut out: std::collections::HashMap<String, Vec<String>> =
            std::collections::HashMap::new();
        for r in pages
            .iter()
            .flat_map(|p| p.pending_maintenance_actions().iter())
        {
            if let Some(arn) = r.resource_identifier() {
                out.entry(arn.to_string()).or_default().extend(
                    r.pending_maintenance_action_details()
                        .iter()
                        .filter_map(|a| a.action().map(str::to_string)),
                );
            }
        }
        Ok(out)
    }
}

pub(crate) fn api_error<E>(
    operation: &'static str,
    at: String,
    e: &SdkError<E, HttpResponse>,
) -> RdsError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    RdsError::Api {
        operation,
        at,
        message: api_message(e),
    }
}

type HttpResponse = aws_smithy_runtime_api::client::orchestrator::HttpResponse;

/// An AWS API failure in one line: the service's code and message, a
/// timeout with its bounds, or the transport error.
pub(crate) fn api_message<E>(e: &SdkError<E, HttpResponse>) -> String
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    match e {
        SdkError::ServiceError(s) => {
            let err = s.err();
            // A service that answers without a code or message (a proxy's
            // error page, a stand-in) still has its HTTP status.
            let status = s.raw().status().as_u16();
            match (err.code(), err.message()) {
                (Some(code), Some(message)) => format!("{code}: {message}"),
                (Some(code), None) => format!("{code} (HTTP {status})"),
                (None, Some(message)) => format!("HTTP {status}: {message}"),
                (None, None) => format!("HTTP {status} without an error code or message"),
            }
        }
        SdkError::TimeoutError(_) => format!(
            "timed out (each attempt is bounded to {}s, the call to {}s)",
            ATTEMPT_TIMEOUT.as_secs(),
            OPERATION_TIMEOUT.as_secs()
        ),
        other => crate::error::error_line(other),
    }
}

/// A DB instance or a DB cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum DbKind {
    Instance,
    Cluster,
    /// An RDS Proxy (its default endpoint).
    Proxy,
    /// A custom endpoint of an RDS Proxy.
    #[serde(rename = "proxy-endpoint")]
    ProxyEndpoint,
}

impl DbKind {
    /// A proxy or one of its endpoints.
    pub(crate) const fn is_proxy(self) -> bool {
        matches!(self, Self::Proxy | Self::ProxyEndpoint)
    }
}

impl std::fmt::Display for DbKind {
    /// `DB instance` / `DB cluster`; the alternate form (`{:#}`) is the bare
    /// word, as in the AWS CLI's command and flag names.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let word = match self {
            Self::Instance => "instance",
            Self::Cluster => "cluster",
            Self::Proxy => "proxy",
            Self::ProxyEndpoint => "proxy-endpoint",
        };
        match (self, f.alternate()) {
            (_, true) => f.write_str(word),
            (Self::ProxyEndpoint, false) => f.write_str("DB proxy endpoint"),
            (_, false) => write!(f, "DB {word}"),
        }
    }
}

/// What `rdsconn ls` lists and `--instance` / `--cluster` resolve.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct Database {
    pub kind: DbKind,
    pub identifier: String,
    /// The RDS engine name (`aurora-postgresql`, `mysql`, …).
    pub engine: String,
    pub engine_version: String,
    pub endpoint: Option<String>,
    pub port: Option<u16>,
    /// Clusters: the reader endpoint.
    pub reader_endpoint: Option<String>,
    pub status: String,
    pub iam_auth: bool,
    /// Instances: the CA the server certificate comes from.
    pub ca_certificate: Option<String>,
    /// `DbiResourceId` / `DbClusterResourceId` (for `rds-db:connect` ARNs).
    pub resource_id: Option<String>,
    /// The database's own ARN (its partition, region and account).
    #[serde(skip)]
    pub arn: Option<String>,
    /// `PubliclyAccessible`.
    #[serde(skip)]
    pub publicly_accessible: Option<bool>,
    /// Instances: the DB parameter group; clusters: the cluster parameter
    /// group.
    #[serde(skip)]
    pub parameter_group: Option<String>,
    /// Instances: the cluster they belong to; proxy endpoints: their proxy.
    pub cluster: Option<String>,
    /// Proxies: the IAM authentication setting (`REQUIRED`, `ENABLED`,
    /// `DISABLED`; `REQUIRED` for end-to-end IAM).
    pub iam_auth_setting: Option<String>,
    /// Proxies: whether clients must use TLS.
    pub require_tls: Option<bool>,
    /// Proxies: the IAM role the proxy logs in to the database with.
    pub role_arn: Option<String>,
    /// The master user's name.
    pub master_username: Option<String>,
    /// The database created with it (`DBName` / `DatabaseName`).
    #[serde(rename = "database_name")]
    pub db_name: Option<String>,
    /// The ARN of the master user secret RDS manages in Secrets Manager
    /// (`ManageMasterUserPassword`), if it does.
    pub master_user_secret: Option<String>,
    /// That secret's status (`active`, `creating`, `rotating`…).
    pub master_user_secret_status: Option<String>,
}

impl Database {
    fn from_instance(i: &DbInstance) -> Self {
        let endpoint = i.endpoint();
        Self {
            kind: DbKind::Instance,
            identifier: i.db_instance_identifier().unwrap_or_default().to_string(),
            engine: i.engine().unwrap_or_default().to_string(),
            engine_version: i.engine_version().unwrap_or_default().to_string(),
            endpoint: endpoint.and_then(|e| e.address()).map(str::to_string),
            port: endpoint
                .and_then(aws_sdk_rds::types::Endpoint::port)
                .and_then(|p| u16::try_from(p).ok()),
            reader_endpoint: None,
            status: i.db_instance_status().unwrap_or_default().to_string(),
            iam_auth: i.iam_database_authentication_enabled().unwrap_or(false),
            ca_certificate: i.ca_certificate_identifier().map(str::to_string),
            resource_id: i.dbi_resource_id().map(str::to_string),
            arn: i.db_instance_arn().map(str::to_string),
            publicly_accessible: i.publicly_accessible(),
            parameter_group: i
                .db_parameter_groups()
                .first()
                .and_then(|g| g.db_parameter_group_name())
                .map(str::to_string),
            cluster: i.db_cluster_identifier().map(str::to_string),
            iam_auth_setting: None,
            require_tls: None,
            role_arn: None,
            master_username: i.master_username().map(str::to_string),
            db_name: i.db_name().map(str::to_string),
            master_user_secret: i
                .master_user_secret()
                .and_then(|s| s.secret_arn())
                .map(str::to_string),
            master_user_secret_status: i
                .master_user_secret()
                .and_then(|s| s.secret_status())
                .map(str::to_string),
        }
    }

    fn from_cluster(c: &DbCluster) -> Self {
        Self {
            kind: DbKind::Cluster,
            identifier: c.db_cluster_identifier().unwrap_or_default().to_string(),
            engine: c.engine().unwrap_or_default().to_string(),
            engine_version: c.engine_version().unwrap_or_default().to_string(),
            endpoint: c.endpoint().map(str::to_string),
            port: c.port().and_then(|p| u16::try_from(p).ok()),
            reader_endpoint: c.reader_endpoint().map(str::to_string),
            status: c.status().unwrap_or_default().to_string(),
            iam_auth: c.iam_database_authentication_enabled().unwrap_or(false),
            ca_certificate: None,
            resource_id: c.db_cluster_resource_id().map(str::to_string),
            arn: c.db_cluster_arn().map(str::to_string),
            publicly_accessible: c.publicly_accessible(),
            parameter_group: c.db_cluster_parameter_group().map(str::to_string),
            cluster: None,
            iam_auth_setting: None,
            require_tls: None,
            role_arn: None,
            master_username: c.master_username().map(str::to_string),
            db_name: c.database_name().map(str::to_string),
            master_user_secret: c
                .master_user_secret()
                .and_then(|s| s.secret_arn())
                .map(str::to_string),
            master_user_secret_status: c
                .master_user_secret()
                .and_then(|s| s.secret_status())
                .map(str::to_string),
        }
    }

    fn from_proxy(p: &DbProxy) -> Self {
        // IAM auth: `DefaultAuthScheme` IAM_AUTH (end-to-end IAM), or a
        // user auth entry with IAMAuth ENABLED / REQUIRED.
        let modes: Vec<&IamAuthMode> = p.auth().iter().filter_map(|a| a.iam_auth()).collect();
        let setting = if p.default_auth_scheme() == Some("IAM_AUTH")
            || modes.contains(&&IamAuthMode::Required)
        {
            "REQUIRED"
        } else if modes.contains(&&IamAuthMode::Enabled) {
            "ENABLED"
        } else {
            "DISABLED"
        };
        let iam_auth = setting != "DISABLED";
        Self {
            kind: DbKind::Proxy,
            identifier: p.db_proxy_name().unwrap_or_default().to_string(),
            engine: p.engine_family().unwrap_or_default().to_ascii_lowercase(),
            engine_version: String::new(),
            endpoint: p.endpoint().map(str::to_string),
            port: None,
            reader_endpoint: None,
            status: p
                .status()
                .map(|s| s.as_str().to_string())
                .unwrap_or_default(),
            iam_auth,
            ca_certificate: None,
            // `prx-…`, the last part of the proxy's ARN: the resource of
            // `rds-db:connect` through the proxy.
            resource_id: p
                .db_proxy_arn()
                .and_then(|a| a.rsplit(':').next())
                .map(str::to_string),
            arn: p.db_proxy_arn().map(str::to_string),
            publicly_accessible: None,
            parameter_group: None,
            cluster: None,
            iam_auth_setting: Some(setting.to_string()),
            require_tls: p.require_tls(),
            role_arn: p.role_arn().map(str::to_string),
            master_username: None,
            db_name: None,
            master_user_secret: None,
            master_user_secret_status: None,
        }
    }

    /// A proxy's custom endpoint: its own name and address, the rest from
    /// its proxy.
    fn from_proxy_endpoint(e: &DbProxyEndpoint, proxy: &Self) -> Self {
        Self {
            kind: DbKind::ProxyEndpoint,
            identifier: e.db_proxy_endpoint_name().unwrap_or_default().to_string(),
            endpoint: e.endpoint().map(str::to_string),
            status: e
                .status()
                .map(|s| s.as_str().to_string())
                .unwrap_or_default(),
            cluster: Some(proxy.identifier.clone()),
            ..proxy.clone()
        }
    }

    /// `aws rds modify-db-instance --db-instance-identifier ID` (for a
    /// cluster, `modify-db-cluster --db-cluster-identifier ID`): the start
    /// of the command that changes it.
    pub(crate) fn modify_command(&self) -> String {
        let (verb, flag) = match self.kind {
            DbKind::Cluster => ("modify-db-cluster", "--db-cluster-identifier"),
            _ => ("modify-db-instance", "--db-instance-identifier"),
        };
        format!("aws rds {verb} {flag} {}", self.identifier)
    }

    /// The engine family rdsconn speaks to it with.
    pub(crate) fn engine_kind(&self) -> Result<EngineKind, RdsError> {
        engine_kind(&self.engine).ok_or_else(|| RdsError::UnsupportedEngine {
            what: self.kind,
            id: self.identifier.clone(),
            engine: self.engine.clone(),
        })
    }

    /// The endpoint to connect to (`reader`: the cluster's reader
    /// endpoint) and its port.
    pub(crate) fn address(&self, reader: bool) -> Result<(String, u16), RdsError> {
        let host = if reader {
            self.reader_endpoint.clone()
        } else {
            self.endpoint.clone()
        };
        let port = self
            .port
            .or_else(|| self.engine_kind().ok().map(EngineKind::default_port));
        match (host, port) {
            (Some(h), Some(p)) if !h.is_empty() => Ok((h, p)),
            _ => Err(RdsError::NoEndpoint {
                what: self.kind,
                id: self.identifier.clone(),
                status: self.status.clone(),
            }),
        }
    }

    /// Refuses an engine other than the command's.
    pub(crate) fn expect_engine(&self, wanted: EngineKind) -> Result<(), RdsError> {
        if self.engine_kind()? == wanted {
            Ok(())
        } else {
            Err(RdsError::EngineMismatch {
                what: self.kind,
                id: self.identifier.clone(),
                engine: self.engine.clone(),
                wanted: wanted.name(),
            })
        }
    }

    /// For `--iam`: IAM database authentication must be enabled.
    pub(crate) fn expect_iam(&self) -> Result<(), RdsError> {
        if self.iam_auth {
            Ok(())
        } else {
            Err(RdsError::IamDisabled {
                what: self.kind,
                id: self.identifier.clone(),
            })
        }
    }
}

/// The values `params` give `names` (those without a value left out).
fn values_of(
    params: &[aws_sdk_rds::types::Parameter],
    names: &[&str],
) -> std::collections::HashMap<String, String> {
    params
        .iter()
        .filter_map(|p| Some((p.parameter_name()?, p.parameter_value()?)))
        .filter(|(n, _)| names.contains(n))
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect()
}

/// What `DescribeDBEngineVersions` says about one engine version.
#[derive(Clone, Debug, Default)]
pub(crate) struct EngineVersion {
    /// `SupportsCertificateRotationWithoutRestart`.
    pub rotation_without_restart: Option<bool>,
    /// Its parameter group family (`postgres16`, `aurora-mysql8.0`).
    pub family: Option<String>,
}

/// The engine family of an RDS engine name.
pub(crate) fn engine_kind(engine: &str) -> Option<EngineKind> {
    match engine {
        "mysql" | "mariadb" | "aurora" | "aurora-mysql" => Some(EngineKind::Mysql),
        "postgres" | "postgresql" | "aurora-postgresql" => Some(EngineKind::Postgres),
        _ => None,
    }
}

/// The oldest version of its major that IAM database authentication
/// works with, when `version` of `engine` is older (the documented
/// minimums: MySQL 5.6.34, 5.7.16, 8.0.16; PostgreSQL 9.5.15, 9.6.11,
/// 10.6). `None`: supported, or not known to be unsupported (MariaDB,
/// Aurora, versions that do not parse).
pub(crate) fn iam_minimum(engine: &str, version: &str) -> Option<&'static str> {
    let parts: Vec<u32> = version.split('.').map_while(|p| p.parse().ok()).collect();
    let (major, minor) = (*parts.first()?, parts.get(1).copied().unwrap_or(0));
    let min = match (engine, major, minor) {
        ("mysql", 5, 0..=6) => "5.6.34",
        ("mysql", 5, 7) => "5.7.16",
        ("mysql", 8, 0) => "8.0.16",
        ("postgres", 0..=8, _) | ("postgres", 9, 0..=5) => "9.5.15",
        ("postgres", 9, _) => "9.6.11",
        ("postgres", 10, _) => "10.6",
        _ => return None,
    };
    let wanted: Vec<u32> = min.split('.').map_while(|p| p.parse().ok()).collect();
    (parts < wanted).then_some(min)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iam_minimum_versions() {
        for (engine, version, min) in [
            ("mysql", "5.5.62", Some("5.6.34")),
            ("mysql", "5.6.21", Some("5.6.34")),
            ("mysql", "5.6.34", None),
            ("mysql", "5.7.15", Some("5.7.16")),
            ("mysql", "5.7.44", None),
            ("mysql", "8.0.15", Some("8.0.16")),
            ("mysql", "8.0.36", None),
            ("mysql", "8.4.3", None),
            ("postgres", "9.5.14", Some("9.5.15")),
            ("postgres", "9.6.10", Some("9.6.11")),
            ("postgres", "10.4", Some("10.6")),
            ("postgres", "10.6", None),
            ("postgres", "16.1", None),
            ("mariadb", "10.4.8", None),
            ("aurora-mysql", "5.7.mysql_aurora.2.11.2", None),
            ("postgres", "beta", None),
        ] {
            assert_eq!(iam_minimum(engine, version), min, "{engine} {version}");
        }
    }

    #[test]
    fn engine_families() {
        assert_eq!(engine_kind("aurora-mysql"), Some(EngineKind::Mysql));
        assert_eq!(engine_kind("mariadb"), Some(EngineKind::Mysql));
        assert_eq!(engine_kind("aurora-postgresql"), Some(EngineKind::Postgres));
        assert_eq!(engine_kind("sqlserver-ee"), None);
    }
}
