//! The RDS CA bundle: the embedded copy, the per-user cache, `fetch`, bundle
//! validation and inspection, and the one root store every TLS verification
//! in rdsconn uses.
//!
//! Where a bundle comes from, in order: `--ca-bundle FILE`; else the cache
//! (`$RDSCONN_CACHE_DIR`, `$XDG_CACHE_HOME/rdsconn`, `~/.cache/rdsconn`) if it
//! holds a bundle that validates; else the copy compiled into the binary, so
//! that rdsconn works offline from its first run. A cached file that fails
//! validation (truncated, edited, wrong checksum) is never trusted: rdsconn
//! says so and falls back to the embedded copy.
//!
//! The cache holds `NAME.pem` (what clients are pointed at) and `NAME.json`
//! (origin, URL, ETag, Last-Modified, sha256). Writers replace both
//! atomically under an exclusive lock on `.lock`; readers take a shared lock,
//! so parallel runs (CI matrix jobs sharing a cache) never see a torn pair.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use std::{fs, io};

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::{self, PemObject};
use serde::{Deserialize, Serialize};

use crate::aws;
use crate::error::{Category, error_line};
use crate::files::{self, Lock};
use crate::target::{EndpointClass, Host};

/// The global RDS CA bundle shipped with this build (see `certs/README.md`).
pub(crate) const EMBEDDED_PEM: &[u8] = include_bytes!("../certs/rds-global-bundle.pem");

/// The Amazon Trust Services roots (Amazon Root CA 1–4, Starfield Services
/// Root G2; see `certs/amazon-trust/README.md`): what RDS Proxy and Aurora
/// DSQL certificates, issued by ACM, chain to.
pub(crate) const AMAZON_TRUST_PEM: &str = concat!(
    include_str!("../certs/amazon-trust/Amazon_Root_CA_1.crt"),
    include_str!("../certs/amazon-trust/Amazon_Root_CA_2.crt"),
    include_str!("../certs/amazon-trust/Amazon_Root_CA_3.crt"),
    include_str!("../certs/amazon-trust/Amazon_Root_CA_4.crt"),
    include_str!("../certs/amazon-trust/Starfield_Services_Root_Certificate_Authority_-_G2.crt"),
);

/// The cache file name of [`AMAZON_TRUST_PEM`], for native clients.
const AMAZON_TRUST_NAME: &str = "amazon-trust";

/// Which roots a connection trusts. Chosen from the endpoint's class,
/// never both sets for one name, never the system store; `--ca-bundle`
/// replaces either.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Trust {
    /// The RDS CA bundle: DB instance and cluster endpoints (and names
    /// rdsconn cannot classify).
    RdsBundle,
    /// The Amazon Trust Services roots: RDS Proxy and Aurora DSQL.
    AmazonTrust,
}

impl Trust {
    pub(crate) fn for_class(class: crate::target::EndpointClass) -> Self {
        if class.uses_amazon_trust() {
            Self::AmazonTrust
        } else {
            Self::RdsBundle
        }
    }

    /// The roots a host name gets: its class's (a name that is not even
    /// valid gets the RDS bundle; resolution refuses it anyway).
    pub(crate) fn for_host(host: &crate::target::Host) -> Self {
        host.endpoint()
            .map_or(Self::RdsBundle, |e| Self::for_class(e.class))
    }

    pub(crate) const fn describe(self) -> &'static str {
        match self {
            Self::RdsBundle => RDS_ROOTS,
            Self::AmazonTrust => AMAZON_ROOTS,
        }
    }
}

/// `ca show --for HOST`: the host, its endpoint class and region, and the
/// roots that class gets; part of `ca show --output json`.
#[derive(Serialize)]
pub(crate) struct TrustFor {
    pub host: String,
    pub class: EndpointClass,
    pub region: Option<String>,
    pub partition: Option<&'static str>,
    /// `rds-bundle`, `amazon-trust`, or `ca-bundle` (the --ca-bundle file).
    pub roots: &'static str,
    pub why: String,
    #[serde(skip)]
    pub trust: Trust,
}

/// What `ca show --for HOST` reports for `raw` (`file`: `--ca-bundle` was
/// given, and replaces every class's roots).
pub(crate) fn trust_for(raw: &str, file: bool) -> Result<TrustFor, crate::target::TargetError> {
    let host = Host::parse(raw)?;
    let endpoint = host.endpoint()?;
    let trust = Trust::for_class(endpoint.class);
    let (roots, why) = if file {
        (
            "ca-bundle",
            "--ca-bundle replaces the roots of every endpoint class".to_string(),
        )
    } else {
        let roots = match trust {
            Trust::RdsBundle => "rds-bundle",
            Trust::AmazonTrust => "amazon-trust",
        };
        let why = match endpoint.class {
            EndpointClass::Proxy | EndpointClass::Dsql => {
                "its certificate is issued by AWS Certificate Manager"
            }
            EndpointClass::Database => "its certificate is issued by the RDS CA",
            EndpointClass::Other => {
                "an unrecognised name gets the RDS CA bundle (a CNAME of a proxy: pass the proxy's name as --host)"
            }
        };
        (roots, format!("{}: {why}", trust.describe()))
    };
    Ok(TrustFor {
        host: host.as_str().to_string(),
        class: endpoint.class,
        partition: endpoint.region.as_deref().map(aws::partition),
        region: endpoint.region,
        roots,
        why,
        trust,
    })
}

/// A PEM parse failure in words (the parser's own text shows byte arrays).
fn pem_reason(e: &pem::Error) -> String {
    match e {
        pem::Error::MissingSectionEnd { end_marker } => format!(
            "a {} section has no END line (a truncated file?)",
            crate::text::escape(&String::from_utf8_lossy(end_marker))
        ),
        pem::Error::IllegalSectionStart { line } => format!(
            "a malformed BEGIN line: {}",
            crate::text::escape(&String::from_utf8_lossy(line))
        ),
        other => other.to_string(),
    }
}

/// The embedded Amazon Trust Services roots as a bundle.
pub(crate) fn amazon_trust() -> Result<Bundle, InvalidBundle> {
    let certs = validate(AMAZON_TRUST_PEM.as_bytes())?;
    Ok(Bundle {
        source: Source::Embedded,
        pem: Cow::Borrowed(AMAZON_TRUST_PEM.as_bytes()),
        certs,
    })
}

/// Whether `roots` hold a public root: one of the Amazon Trust Services
/// roots, which sign every AWS customer's ACM certificates, so a chain to
/// them says nothing about *which* endpoint answered.
pub(crate) fn holds_public_roots(roots: &Roots) -> bool {
    static PUBLIC: OnceLock<Vec<CertificateDer<'static>>> = OnceLock::new();
    let public = PUBLIC.get_or_init(|| validate(AMAZON_TRUST_PEM.as_bytes()).unwrap_or_default());
    roots.certs.iter().any(|c| public.contains(c))
}

/// The roots for `trust`: `--ca-bundle` (`file`) whatever the class, else
/// the RDS bundle ([`roots`]) or the embedded Amazon Trust roots; built
/// once per process.
pub(crate) fn roots_for(
    file: Option<&Path>,
    trust: Trust,
) -> Result<(Arc<Roots>, Vec<String>), CaError> {
    static AMAZON: OnceLock<Arc<Roots>> = OnceLock::new();
    if file.is_some() || trust == Trust::RdsBundle {
        return roots(file);
    }
    if let Some(store) = AMAZON.get() {
        return Ok((Arc::clone(store), Vec::new()));
    }
    let bundle = amazon_trust().map_err(|source| CaError::InvalidFile {
        path: PathBuf::from("<embedded Amazon Trust Services roots>"),
        source,
    })?;
    let store = AMAZON.get_or_init(|| {
        Arc::new(Roots {
            name: AMAZON_ROOTS,
            ..bundle.roots()
        })
    });
    Ok((Arc::clone(store), Vec::new()))
}

/// A PEM file with the roots for `trust`, for native clients: the
/// `--ca-bundle` file, else [`ensure_path`]'s RDS bundle, else the Amazon
/// Trust roots written to the cache.
pub(crate) fn ensure_path_for(
    cache: &Cache,
    opts: &LoadOptions<'_>,
    trust: Trust,
) -> Result<PathOutcome, CaError> {
    if opts.file.is_some() || trust == Trust::RdsBundle {
        return ensure_path(cache, opts);
    }
    let pem = AMAZON_TRUST_PEM.as_bytes();
    let sha = sha256_hex(pem);
    let _lock = cache.lock_exclusive()?;
    if let Ok(Some(c)) = cache.read_locked(AMAZON_TRUST_NAME)
        && c.meta.sha256 == sha
    {
        return Ok(PathOutcome {
            path: absolute(c.path),
            warnings: Vec::new(),
        });
    }
    let path = cache.write_locked(AMAZON_TRUST_NAME, pem, &Meta::embedded(sha))?;
    Ok(PathOutcome {
        path: absolute(path),
        warnings: Vec::new(),
    })
}

/// Largest bundle accepted from the network or disk. The global bundle is
/// about 165 KB; anything near this cap is not an RDS bundle.
pub(crate) const MAX_BUNDLE_BYTES: usize = 4 * 1024 * 1024;

/// Certificates closer than this to their expiry are flagged by `ca show`.
pub(crate) const EXPIRING_SOON_DAYS: i64 = 90;

const DEFAULT_BASE_URL: &str = "https://truststore.pki.rds.amazonaws.com";
const GOVCLOUD_BASE_URL: &str = "https://truststore.pki.us-gov-west-1.rds.amazonaws.com";
const CHINA_BASE_URL: &str = "https://rds-truststore.s3.cn-north-1.amazonaws.com.cn";

/// Environment variable replacing the truststore base URL.
pub(crate) const BASE_URL_ENV: &str = "RDSCONN_CA_BASE_URL";
/// Environment variable replacing the cache directory.
pub(crate) const CACHE_DIR_ENV: &str = "RDSCONN_CACHE_DIR";

/// Why a byte string is not an acceptable CA bundle.
#[derive(Debug, thiserror::Error)]
pub(crate) enum InvalidBundle {
    #[error("the bundle is empty")]
    Empty,
    #[error("the bundle is larger than {MAX_BUNDLE_BYTES} bytes")]
    TooLarge,
    #[error("no PEM certificate found")]
    NoCertificates,
    #[error("PEM syntax error after certificate {index}: {reason}")]
    Pem { index: usize, reason: String },
    #[error("certificate {index} is not valid X.509: {reason}")]
    X509 { index: usize, reason: String },
    #[error("checksum mismatch: the file changed after rdsconn wrote it")]
    Checksum,
    #[error("its metadata file is missing or unreadable")]
    Metadata,
}

/// Errors of this module; their [`Categorized`](crate::error::Categorized) impl gives the exit code.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CaError {
    #[error("no cache directory: set {CACHE_DIR_ENV} or HOME")]
    NoCacheDir,
    #[error("{what} {}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("CA bundle {} is not usable", path.display())]
    InvalidFile {
        path: PathBuf,
        #[source]
        source: InvalidBundle,
    },
    #[error("downloaded CA bundle from {url} is not usable; the cached bundle was kept")]
    InvalidDownload {
        url: String,
        #[source]
        source: InvalidBundle,
    },
    #[error("invalid {BASE_URL_ENV} {url:?}: {reason}")]
    BadBaseUrl { url: String, reason: &'static str },
    #[error("invalid region {0:?} (expected e.g. us-east-1)")]
    BadRegion(String),
    #[error("downloading {url}")]
    Http {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("downloading {url}: server answered {status}")]
    HttpStatus {
        url: String,
        status: reqwest::StatusCode,
    },
}

impl crate::error::Categorized for CaError {
    /// The error category (and so the exit code) of this failure.
    fn category(&self) -> Category {
        match self {
            Self::NoCacheDir | Self::BadBaseUrl { .. } | Self::BadRegion(_) => Category::Usage,
            Self::Io { source, .. }
                if matches!(
                    source.kind(),
                    io::ErrorKind::NotFound | io::ErrorKind::PermissionDenied
                ) =>
            {
                Category::Usage
            }
            Self::Io { .. } => Category::Runtime,
            Self::InvalidFile { .. } | Self::InvalidDownload { .. } => Category::Tls,
            Self::Http { .. } | Self::HttpStatus { .. } => Category::Network,
        }
    }

    /// A suggestion for the user, where one helps.
    fn hint(&self) -> Option<String> {
        match self {
            Self::HttpStatus { status, .. } if status.as_u16() == 404 => {
                Some("check the region name; `rdsconn ca fetch` without --region gets the global bundle".into())
            }
            Self::Http { source, .. } if source.is_timeout() => {
                Some("the download timed out; raise --timeout or check the network / proxy".into())
            }
            Self::Http { .. } | Self::HttpStatus { .. } => Some(
                "the embedded bundle keeps working offline; set RDSCONN_CA_BASE_URL to use a mirror".into(),
            ),
            Self::InvalidFile { .. } => Some(
                "run `rdsconn ca fetch --force` to replace a cached bundle, or check the --ca-bundle file".into(),
            ),
            _ => None,
        }
    }
}

fn io_err<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> CaError + 'a {
    move |source| CaError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// Where the bundle in use came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Source {
    /// The copy compiled into this binary.
    Embedded,
    /// A file in the cache directory, with what is known about its origin.
    Cache { path: PathBuf, meta: Meta },
    /// A file named by `--ca-bundle`.
    File(PathBuf),
}

/// A validated CA bundle.
#[derive(Debug, Clone)]
pub(crate) struct Bundle {
    pub source: Source,
    pub pem: Cow<'static, [u8]>,
    pub certs: Vec<CertificateDer<'static>>,
}

impl Bundle {
    /// The embedded bundle. [`validate`] runs on it in this crate's tests,
    /// not at run time: parsing 108 certificates as X.509 on every start
    /// would cost a connect about 0.3 ms for nothing.
    pub(crate) fn embedded() -> Result<Self, InvalidBundle> {
        let certs = CertificateDer::pem_slice_iter(EMBEDDED_PEM)
            .enumerate()
            .map(|(index, item)| {
                item.map_err(|e| InvalidBundle::Pem {
                    index,
                    reason: pem_reason(&e),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            source: Source::Embedded,
            pem: Cow::Borrowed(EMBEDDED_PEM),
            certs,
        })
    }

    /// Hex sha256 of the PEM bytes.
    pub(crate) fn sha256(&self) -> String {
        sha256_hex(&self.pem)
    }

    /// The trust anchors of the bundle: a rustls root store and the DER
    /// certificates it was built from.
    pub(crate) fn roots(&self) -> Roots {
        let mut store = rustls::RootCertStore::empty();
        let mut certs = Vec::with_capacity(self.certs.len());
        // Every certificate already parsed as X.509 in `validate`; one that
        // rustls still rejects (e.g. an unsupported key) cannot anchor a
        // chain anyway, so it is left out rather than failing the bundle.
        for cert in &self.certs {
            if store.add(cert.clone()).is_ok() {
                certs.push(cert.clone());
            }
        }
        let name = match self.source {
            Source::File(_) => FILE_ROOTS,
            Source::Embedded | Source::Cache { .. } => RDS_ROOTS,
        };
        Roots {
            store: Arc::new(store),
            certs,
            name,
        }
    }
}

/// [`Roots::name`] of the RDS CA bundle.
pub(crate) const RDS_ROOTS: &str = "the RDS CA bundle";
/// [`Roots::name`] of the Amazon Trust Services roots.
pub(crate) const AMAZON_ROOTS: &str = "the Amazon Trust Services roots";
/// [`Roots::name`] of a `--ca-bundle` file.
pub(crate) const FILE_ROOTS: &str = "the --ca-bundle file";

/// The roots TLS verification trusts: one root store for rdsconn's own
/// rustls configs, and the same certificates as DER for drivers that build
/// their own configuration (`mysql_async`).
#[derive(Debug)]
pub(crate) struct Roots {
    pub store: Arc<rustls::RootCertStore>,
    pub certs: Vec<CertificateDer<'static>>,
    /// Which set this is, for error messages ("the RDS CA bundle", "the
    /// Amazon Trust Services roots", "the --ca-bundle file").
    pub name: &'static str,
}

/// What rdsconn records next to a cached bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Meta {
    /// `fetched` (downloaded) or `embedded` (written by `ca path`).
    pub origin: Origin,
    pub url: Option<String>,
    pub etag: Option<String>,
    pub last_modified: Option<String>,
    /// Unix seconds when this content was written.
    pub written_at: u64,
    pub sha256: String,
}

impl Meta {
    /// For a copy of a bundle compiled into rdsconn, written now.
    fn embedded(sha256: String) -> Self {
        Self {
            origin: Origin::Embedded,
            url: None,
            etag: None,
            last_modified: None,
            written_at: unix_now(),
            sha256,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Origin {
    Fetched,
    Embedded,
}

/// Checks that `bytes` is a usable bundle and returns its certificates.
///
/// Rules: not empty, at most [`MAX_BUNDLE_BYTES`], PEM that parses to the
/// end, at least one certificate, and every certificate parses as X.509.
pub(crate) fn validate(bytes: &[u8]) -> Result<Vec<CertificateDer<'static>>, InvalidBundle> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(InvalidBundle::Empty);
    }
    if bytes.len() > MAX_BUNDLE_BYTES {
        return Err(InvalidBundle::TooLarge);
    }
    let mut certs = Vec::new();
    for item in CertificateDer::pem_slice_iter(bytes) {
        let cert = item.map_err(|e| InvalidBundle::Pem {
            index: certs.len(),
            reason: pem_reason(&e),
        })?;
        let index = certs.len() + 1;
        x509_parser::parse_x509_certificate(&cert).map_err(|e| InvalidBundle::X509 {
            index,
            reason: e.to_string(),
        })?;
        certs.push(cert);
    }
    if certs.is_empty() {
        return Err(InvalidBundle::NoCertificates);
    }
    Ok(certs)
}

/// Hex-encoded sha256 of `bytes`.
pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    hex(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes).as_ref())
}

/// Lowercase hex.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The per-user cache directory of rdsconn.
#[derive(Debug, Clone)]
pub(crate) struct Cache {
    dir: PathBuf,
}

/// A bundle read back from the cache.
#[derive(Debug)]
pub(crate) struct Cached {
    pub path: PathBuf,
    pub pem: Vec<u8>,
    pub certs: Vec<CertificateDer<'static>>,
    pub meta: Meta,
}

impl Cache {
    /// The cache directory from the environment (see the module docs).
    pub(crate) fn from_env() -> Result<Self, CaError> {
        if let Some(dir) = std::env::var_os(CACHE_DIR_ENV).filter(|d| !d.is_empty()) {
            return Ok(Self::at(PathBuf::from(dir)));
        }
        let base = directories::BaseDirs::new().ok_or(CaError::NoCacheDir)?;
        Ok(Self::at(base.cache_dir().join("rdsconn")))
    }

    pub(crate) fn at(dir: PathBuf) -> Self {
        Self { dir }
    }

    /// `NAME.pem` for a bundle name (see [`bundle_name`]).
    pub(crate) fn pem_path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.pem"))
    }

    fn meta_path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.json"))
    }

    fn prepare(&self) -> Result<(), CaError> {
        files::ensure_private_dir(&self.dir).map_err(io_err("creating cache directory", &self.dir))
    }

    fn lock_path(&self) -> PathBuf {
        self.dir.join(".lock")
    }

    fn lock_exclusive(&self) -> Result<Lock, CaError> {
        self.prepare()?;
        let path = self.lock_path();
        Lock::exclusive(&path).map_err(io_err("locking", &path))
    }

    /// Reads a cached bundle under a shared lock. `Ok(None)`: nothing cached.
    /// `Err(InvalidFile)`: something is there but must not be trusted.
    pub(crate) fn read(&self, name: &str) -> Result<Option<Cached>, CaError> {
        if !self.pem_path(name).exists() {
            return Ok(None);
        }
        let _lock = self.lock_shared_if_possible();
        self.read_locked(name)
    }

    /// A reader lock; a cache directory we may not write to (read-only home)
    /// is still readable, so failing to lock is not an error for readers.
    fn lock_shared_if_possible(&self) -> Option<Lock> {
        Lock::shared(&self.lock_path()).ok()
    }

    fn read_locked(&self, name: &str) -> Result<Option<Cached>, CaError> {
        let path = self.pem_path(name);
        let pem = match fs::read(&path) {
            Ok(pem) => pem,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err("reading", &path)(e)),
        };
        let invalid = |source| CaError::InvalidFile {
            path: path.clone(),
            source,
        };
        let meta: Meta = fs::read(self.meta_path(name))
            .ok()
            .and_then(|m| serde_json::from_slice(&m).ok())
            .ok_or_else(|| invalid(InvalidBundle::Metadata))?;
        let certs = validate(&pem).map_err(invalid)?;
        if sha256_hex(&pem) != meta.sha256 {
            return Err(invalid(InvalidBundle::Checksum));
        }
        Ok(Some(Cached {
            path,
            pem,
            certs,
            meta,
        }))
    }

    /// Writes bundle + metadata; the caller holds the exclusive lock.
    fn write_locked(&self, name: &str, pem: &[u8], meta: &Meta) -> Result<PathBuf, CaError> {
        let path = self.pem_path(name);
        files::write_atomic(&path, pem).map_err(io_err("writing", &path))?;
        self.write_meta_locked(name, meta)?;
        Ok(path)
    }

    fn write_meta_locked(&self, name: &str, meta: &Meta) -> Result<(), CaError> {
        let path = self.meta_path(name);
        let json =
            serde_json::to_vec_pretty(meta).map_err(|e| io_err("encoding", &path)(e.into()))?;
        files::write_atomic(&path, &json).map_err(io_err("writing", &path))
    }
}

/// The cache name of a bundle: `global-bundle` or `REGION-bundle`.
pub(crate) fn bundle_name(region: Option<&str>) -> String {
    format!("{}-bundle", region.unwrap_or("global"))
}

/// The download URL of the global bundle or of one region's bundle.
///
/// `base_override` (from [`BASE_URL_ENV`]) replaces the partition's host;
/// the path stays the same. Plain `http://` is allowed only for loopback.
pub(crate) fn bundle_url(
    region: Option<&str>,
    base_override: Option<&str>,
) -> Result<String, CaError> {
    if let Some(r) = region.filter(|r| !aws::is_valid_region(r)) {
        return Err(CaError::BadRegion(r.to_string()));
    }
    let base = match base_override.filter(|b| !b.is_empty()) {
        Some(b) => {
            check_base_url(b)?;
            b.trim_end_matches('/')
        }
        None => match region {
            Some(r) if r.starts_with("us-gov-") => GOVCLOUD_BASE_URL,
            Some(r) if r.starts_with("cn-") => CHINA_BASE_URL,
            _ => DEFAULT_BASE_URL,
        },
    };
    Ok(match region {
        Some(r) => format!("{base}/{r}/{r}-bundle.pem"),
        None => format!("{base}/global/global-bundle.pem"),
    })
}

fn check_base_url(raw: &str) -> Result<(), CaError> {
    let bad = |reason| CaError::BadBaseUrl {
        url: raw.to_string(),
        reason,
    };
    let url = reqwest::Url::parse(raw).map_err(|_| bad("not a URL"))?;
    if url.query().is_some() || url.fragment().is_some() {
        return Err(bad("must not have a query or fragment"));
    }
    match url.scheme() {
        "https" => Ok(()),
        "http" if is_loopback(&url) => Ok(()),
        "http" => Err(bad("plain http is only allowed for loopback addresses")),
        _ => Err(bad("must be an https:// URL")),
    }
}

fn is_loopback(url: &reqwest::Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => {
            d.eq_ignore_ascii_case("localhost")
                || d.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
        }
        None => false,
    }
}

/// How `ca show` and TLS verification pick a bundle.
#[derive(Debug, Default)]
pub(crate) struct LoadOptions<'a> {
    /// `--ca-bundle FILE`.
    pub file: Option<&'a Path>,
    /// `--region` for `ca` subcommands: prefer that region's fetched bundle.
    pub region: Option<&'a str>,
}

/// Loads the bundle to use: `--ca-bundle`, else a valid cached bundle, else
/// the embedded one. Returns warnings (e.g. a corrupt cache) for stderr.
pub(crate) fn load(
    cache: Option<&Cache>,
    opts: &LoadOptions<'_>,
) -> Result<(Bundle, Vec<String>), CaError> {
    if let Some(file) = opts.file {
        return load_file(file).map(|b| (b, Vec::new()));
    }
    let mut warnings = Vec::new();
    if let Some(cache) = cache {
        let mut names = Vec::new();
        if let Some(r) = opts.region {
            names.push(bundle_name(Some(r)));
        }
        names.push(bundle_name(None));
        for name in names {
            match cache.read(&name) {
                Ok(Some(c)) => {
                    let bundle = Bundle {
                        source: Source::Cache {
                            path: c.path,
                            meta: c.meta,
                        },
                        pem: Cow::Owned(c.pem),
                        certs: c.certs,
                    };
                    return Ok((bundle, warnings));
                }
                Ok(None) => {}
                Err(e) => warnings.push(format!(
                    "{}; not trusting it, using the embedded bundle (run `rdsconn ca fetch --force` to replace it)",
                    error_line(&e)
                )),
            }
        }
    }
    let embedded = Bundle::embedded().map_err(|source| CaError::InvalidFile {
        path: PathBuf::from("<embedded>"),
        source,
    })?;
    Ok((embedded, warnings))
}

fn load_file(path: &Path) -> Result<Bundle, CaError> {
    let pem = fs::read(path).map_err(io_err("reading --ca-bundle", path))?;
    let certs = validate(&pem).map_err(|source| CaError::InvalidFile {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(Bundle {
        source: Source::File(path.to_path_buf()),
        pem: Cow::Owned(pem),
        certs,
    })
}

/// The root store for TLS verification, built once per process.
///
/// Every command that verifies a server certificate gets its roots here, so
/// `--ca-bundle`, the cache and the embedded fallback behave the same
/// everywhere. Warnings are returned on the first call only.
pub(crate) fn roots(file: Option<&Path>) -> Result<(Arc<Roots>, Vec<String>), CaError> {
    static ROOTS: OnceLock<Arc<Roots>> = OnceLock::new();
    if let Some(store) = ROOTS.get() {
        return Ok((Arc::clone(store), Vec::new()));
    }
    let cache = Cache::from_env().ok();
    let (bundle, warnings) = load(cache.as_ref(), &LoadOptions { file, region: None })?;
    let store = ROOTS.get_or_init(|| Arc::new(bundle.roots()));
    Ok((Arc::clone(store), warnings))
}

/// The result of [`ensure_path`].
#[derive(Debug)]
pub(crate) struct PathOutcome {
    pub path: PathBuf,
    pub warnings: Vec<String>,
}

/// A PEM file on disk for native clients: the `--ca-bundle` file, a cached
/// regional or global bundle, or the embedded bundle written to the cache.
pub(crate) fn ensure_path(cache: &Cache, opts: &LoadOptions<'_>) -> Result<PathOutcome, CaError> {
    if let Some(file) = opts.file {
        load_file(file)?;
        let path = std::path::absolute(file).map_err(io_err("resolving", file))?;
        return Ok(PathOutcome {
            path,
            warnings: Vec::new(),
        });
    }
    let mut warnings = Vec::new();
    if let Some(region) = opts.region {
        match cache.read(&bundle_name(Some(region))) {
            Ok(Some(c)) => {
                return Ok(PathOutcome {
                    path: absolute(c.path),
                    warnings,
                });
            }
            Ok(None) => {}
            Err(e) => warnings.push(format!("{}; using the global bundle", error_line(&e))),
        }
    }
    let name = bundle_name(None);
    let _lock = cache.lock_exclusive()?;
    match cache.read_locked(&name) {
        Ok(Some(c))
            if c.meta.origin == Origin::Fetched || c.meta.sha256 == sha256_hex(EMBEDDED_PEM) =>
        {
            return Ok(PathOutcome {
                path: absolute(c.path),
                warnings,
            });
        }
        // An embedded copy written by an older rdsconn: replace it below.
        Ok(_) => {}
        Err(e) => warnings.push(format!(
            "{}; replacing it with the embedded bundle",
            error_line(&e)
        )),
    }
    let meta = Meta::embedded(sha256_hex(EMBEDDED_PEM));
    let path = cache.write_locked(&name, EMBEDDED_PEM, &meta)?;
    Ok(PathOutcome {
        path: absolute(path),
        warnings,
    })
}

fn absolute(path: PathBuf) -> PathBuf {
    std::path::absolute(&path).unwrap_or(path)
}

/// Options of [`fetch`].
#[derive(Debug, Clone)]
pub(crate) struct FetchOptions {
    pub region: Option<String>,
    /// Download even when the server says the bundle is unchanged.
    pub force: bool,
    /// Bound on the whole download.
    pub timeout: Duration,
    /// Replacement for the truststore base URL.
    pub base_url: Option<String>,
}

/// What [`fetch`] did.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct FetchOutcome {
    /// `updated` (new content written) or `unchanged` (cached file kept).
    pub status: FetchStatus,
    pub url: String,
    pub path: PathBuf,
    pub sha256: String,
    pub certificates: usize,
    pub etag: Option<String>,
    pub last_modified: Option<String>,
    #[serde(skip)]
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum FetchStatus {
    Updated,
    Unchanged,
}

/// Downloads a bundle into the cache (see the module docs for the rules).
pub(crate) async fn fetch(cache: &Cache, opts: &FetchOptions) -> Result<FetchOutcome, CaError> {
    let region = opts.region.as_deref();
    let url = bundle_url(region, opts.base_url.as_deref())?;
    let name = bundle_name(region);
    // Held across the download: a concurrent run waits, then revalidates
    // with our ETag instead of downloading the same bytes again.
    let _lock = cache.lock_exclusive()?;
    let mut warnings = Vec::new();
    let existing = match cache.read_locked(&name) {
        Ok(c) => c,
        Err(e) => {
            warnings.push(format!("{}; downloading a fresh copy", error_line(&e)));
            None
        }
    };
    let conditional = existing.as_ref().filter(|c| {
        !opts.force && c.meta.origin == Origin::Fetched && c.meta.url.as_deref() == Some(&url)
    });

    let client = http_client(opts.timeout).map_err(|source| CaError::Http {
        url: url.clone(),
        source,
    })?;
    let mut request = client.get(&url);
    if let Some(c) = conditional {
        if let Some(etag) = &c.meta.etag {
            request = request.header(reqwest::header::IF_NONE_MATCH, etag);
        }
        if let Some(lm) = &c.meta.last_modified {
            request = request.header(reqwest::header::IF_MODIFIED_SINCE, lm);
        }
    }
    let http_err = |source| CaError::Http {
        url: url.clone(),
        source,
    };
    let mut response = request.send().await.map_err(http_err)?;
    let status = response.status();
    if let Some(c) = conditional.filter(|_| status == reqwest::StatusCode::NOT_MODIFIED) {
        return Ok(FetchOutcome {
            status: FetchStatus::Unchanged,
            url,
            path: absolute(c.path.clone()),
            sha256: c.meta.sha256.clone(),
            certificates: c.certs.len(),
            etag: c.meta.etag.clone(),
            last_modified: c.meta.last_modified.clone(),
            warnings,
        });
    }
    if status != reqwest::StatusCode::OK {
        return Err(CaError::HttpStatus { url, status });
    }
    let header = |name| {
        response
            .headers()
            .get(name)
            .and_then(|v: &reqwest::header::HeaderValue| v.to_str().ok())
            .map(str::to_string)
    };
    let etag = header(reqwest::header::ETAG);
    let last_modified = header(reqwest::header::LAST_MODIFIED);
    let invalid = |source| CaError::InvalidDownload {
        url: url.clone(),
        source,
    };
    let body = read_capped(&mut response).await.map_err(|e| match e {
        None => invalid(InvalidBundle::TooLarge),
        Some(source) => http_err(source),
    })?;
    let certs = validate(&body).map_err(invalid)?;
    let sha256 = sha256_hex(&body);
    let meta = Meta {
        origin: Origin::Fetched,
        url: Some(url.clone()),
        etag: etag.clone(),
        last_modified: last_modified.clone(),
        written_at: unix_now(),
        sha256: sha256.clone(),
    };
    let unchanged = existing.as_ref().is_some_and(|c| c.meta.sha256 == sha256);
    let path = if unchanged && existing.is_some_and(|c| c.meta.origin == Origin::Fetched) {
        // Same bytes: keep the file (and its mtime), refresh the validators.
        cache.write_meta_locked(&name, &meta)?;
        cache.pem_path(&name)
    } else {
        cache.write_locked(&name, &body, &meta)?
    };
    Ok(FetchOutcome {
        status: if unchanged {
            FetchStatus::Unchanged
        } else {
            FetchStatus::Updated
        },
        url,
        path: absolute(path),
        sha256,
        certificates: certs.len(),
        etag,
        last_modified,
        warnings,
    })
}

/// The response body, or `Err(None)` when it exceeds [`MAX_BUNDLE_BYTES`].
async fn read_capped(response: &mut reqwest::Response) -> Result<Vec<u8>, Option<reqwest::Error>> {
    if response
        .content_length()
        .is_some_and(|n| n > MAX_BUNDLE_BYTES as u64)
    {
        return Err(None);
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(Some)? {
        if body.len() + chunk.len() > MAX_BUNDLE_BYTES {
            return Err(None);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

fn http_client(timeout: Duration) -> reqwest::Result<reqwest::Client> {
    // Redirects may not leave https (loopback http stays allowed for mirrors
    // and tests, as for the base URL itself).
    let policy = reqwest::redirect::Policy::custom(|attempt| {
        let ok_scheme = attempt.url().scheme() == "https" || is_loopback(attempt.url());
        if attempt.previous().len() >= 5 || !ok_scheme {
            attempt.stop()
        } else {
            attempt.follow()
        }
    });
    reqwest::Client::builder()
        .user_agent(concat!("rdsconn/", env!("CARGO_PKG_VERSION")))
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(10)))
        .redirect(policy)
        .build()
}

/// Expiry state of one certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Expiry {
    Ok,
    /// Fewer than [`EXPIRING_SOON_DAYS`] days left.
    Expiring,
    Expired,
}

/// What `ca show` reports about one certificate.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct CertInfo {
    pub subject_cn: Option<String>,
    pub subject: String,
    pub issuer: String,
    /// The AWS region named in an RDS CA's common name, if any.
    pub region: Option<String>,
    pub key_type: String,
    pub not_before: String,
    pub not_after: String,
    /// Whole days until expiry; negative once expired.
    pub days_left: i64,
    pub status: Expiry,
    pub self_signed: bool,
    pub sha256_fingerprint: String,
}

/// What the bundle holds for an instance's CA identifier.
pub(crate) enum CaLookup {
    /// The identifier is not of the `rds-ca-KIND-GEN` form.
    Unknown,
    /// No root in the bundle is that CA.
    Missing,
    Found(Box<CertInfo>),
}

/// An instance's CA identifier (`rds-ca-rsa2048-g1`, from the RDS API)
/// among the bundle's roots for `region`.
pub(crate) fn find_ca_identifier(
    roots: &Roots,
    id: &str,
    region: Option<&str>,
    now: SystemTime,
) -> CaLookup {
    // rds-ca-rsa2048-g1 → a root named "… RSA2048 G1".
    let Some(needle) = id
        .strip_prefix("rds-ca-")
        .and_then(|rest| rest.rsplit_once('-'))
        .map(|(kind, generation)| format!("{} {}", kind.to_uppercase(), generation.to_uppercase()))
    else {
        return CaLookup::Unknown;
    };
    inspect(&roots.certs, now)
        .into_iter()
        .find(|c| {
            c.subject_cn
                .as_deref()
                .is_some_and(|cn| cn.ends_with(&needle))
                && (region.is_none() || c.region.as_deref() == region)
        })
        .map_or(CaLookup::Missing, |c| CaLookup::Found(Box::new(c)))
}

pub(crate) fn inspect(certs: &[CertificateDer<'_>], now: SystemTime) -> Vec<CertInfo> {
    let now = now
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    certs
        .iter()
        .filter_map(|der| {
            let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
            let subject_cn = cert
                .subject()
                .iter_common_name()
                .next()
                .and_then(|cn| cn.as_str().ok())
                .map(str::to_string);
            let region = subject_cn.as_deref().and_then(region_of_cn);
            let not_after = cert.validity().not_after.timestamp();
            let days_left = (not_after - now).div_euclid(86_400);
            let status = if not_after <= now {
                Expiry::Expired
            } else if days_left < EXPIRING_SOON_DAYS {
                Expiry::Expiring
            } else {
                Expiry::Ok
            };
            Some(CertInfo {
                subject: cert.subject().to_string(),
                issuer: cert.issuer().to_string(),
                self_signed: cert.subject() == cert.issuer(),
                region,
                key_type: key_type(&cert),
                not_before: rfc3339(cert.validity().not_before.timestamp()),
                not_after: rfc3339(not_after),
                days_left,
                status,
                sha256_fingerprint: sha256_hex(der),
                subject_cn,
            })
        })
        .collect()
}

/// `Amazon RDS eu-west-2 Root CA RSA2048 G1` → `eu-west-2`.
fn region_of_cn(cn: &str) -> Option<String> {
    let word = cn.strip_prefix("Amazon RDS ")?.split_whitespace().next()?;
    aws::is_valid_region(word).then(|| word.to_string())
}

fn key_type(cert: &x509_parser::certificate::X509Certificate<'_>) -> String {
    use x509_parser::public_key::PublicKey;
    match cert.public_key().parsed() {
        Ok(PublicKey::RSA(rsa)) => format!("RSA {}", rsa.key_size()),
        Ok(PublicKey::EC(ec)) => match ec.key_size() {
            256 => "ECDSA P-256".into(),
            384 => "ECDSA P-384".into(),
            521 | 528 => "ECDSA P-521".into(),
            bits => format!("EC {bits}"),
        },
        Ok(other) => format!("{:?}", std::mem::discriminant(&other)),
        Err(_) => "unknown".into(),
    }
}

/// Unix seconds as RFC 3339 UTC (`2061-05-19T19:06:26Z`).
pub(crate) fn rfc3339(unix: i64) -> String {
    let t = u64::try_from(unix).map_or(UNIX_EPOCH, |s| UNIX_EPOCH + Duration::from_secs(s));
    humantime::format_rfc3339_seconds(t).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundle_urls_by_partition_and_loopback_only_http() {
        assert_eq!(
            bundle_url(Some("us-gov-east-1"), None).unwrap(),
            "https://truststore.pki.us-gov-west-1.rds.amazonaws.com/us-gov-east-1/us-gov-east-1-bundle.pem"
        );
        assert!(bundle_url(None, Some("http://10.0.0.1:8080")).is_err());
    }

    #[test]
    fn embedded_bundle_is_valid_and_complete() {
        let bundle = Bundle::embedded().unwrap();
        assert_eq!(bundle.certs.len(), 108);
        // What `Bundle::embedded` skips at run time.
        assert_eq!(validate(EMBEDDED_PEM).unwrap(), bundle.certs);
        let roots = bundle.roots();
        assert_eq!(roots.store.len(), 108);
        assert_eq!(roots.certs.len(), 108);
    }

    #[test]
    fn amazon_trust_roots_are_the_five_the_readme_lists() {
        let bundle = amazon_trust().unwrap();
        assert_eq!(bundle.certs.len(), 5);
        assert_eq!(bundle.roots().store.len(), 5);
        let readme = include_str!("../certs/amazon-trust/README.md");
        for cert in &bundle.certs {
            let fingerprint = sha256_hex(cert)
                .as_bytes()
                .chunks(2)
                .map(|c| String::from_utf8_lossy(c).to_ascii_uppercase())
                .collect::<Vec<_>>()
                .join(":");
            assert!(
                readme.contains(&fingerprint),
                "certs/amazon-trust/README.md does not list {fingerprint}"
            );
        }
        // No certificate of one set is in the other.
        let rds = Bundle::embedded().unwrap();
        assert!(bundle.certs.iter().all(|c| !rds.certs.contains(c)));
    }

    #[test]
    fn embedded_sha256_matches_certs_readme() {
        let readme = include_str!("../certs/README.md");
        let sha = sha256_hex(EMBEDDED_PEM);
        assert!(
            readme.contains(&sha),
            "certs/README.md does not list sha256 {sha}"
        );
    }

    #[test]
    fn validate_rejects_bad_content() {
        assert!(matches!(validate(b""), Err(InvalidBundle::Empty)));
        assert!(matches!(validate(b" \n"), Err(InvalidBundle::Empty)));
        assert!(matches!(
            validate(b"<html>not a bundle</html>"),
            Err(InvalidBundle::NoCertificates)
        ));
        let truncated = &EMBEDDED_PEM[..EMBEDDED_PEM.len() / 2];
        assert!(matches!(
            validate(truncated),
            Err(InvalidBundle::Pem { .. })
        ));
        let not_x509 =
            b"-----BEGIN CERTIFICATE-----\naGVsbG8gd29ybGQ=\n-----END CERTIFICATE-----\n";
        assert!(matches!(
            validate(not_x509),
            Err(InvalidBundle::X509 { index: 1, .. })
        ));
        let mut huge = EMBEDDED_PEM.to_vec();
        while huge.len() <= MAX_BUNDLE_BYTES {
            huge.extend_from_slice(EMBEDDED_PEM);
        }
        assert!(matches!(validate(&huge), Err(InvalidBundle::TooLarge)));
    }

    #[test]
    fn urls_per_partition() {
        assert_eq!(
            bundle_url(None, None).unwrap(),
            "https://truststore.pki.rds.amazonaws.com/global/global-bundle.pem"
        );
        assert_eq!(
            bundle_url(Some("eu-west-1"), None).unwrap(),
            "https://truststore.pki.rds.amazonaws.com/eu-west-1/eu-west-1-bundle.pem"
        );
        assert_eq!(
            bundle_url(Some("us-gov-west-1"), None).unwrap(),
            "https://truststore.pki.us-gov-west-1.rds.amazonaws.com/us-gov-west-1/us-gov-west-1-bundle.pem"
        );
        assert_eq!(
            bundle_url(Some("cn-north-1"), None).unwrap(),
            "https://rds-truststore.s3.cn-north-1.amazonaws.com.cn/cn-north-1/cn-north-1-bundle.pem"
        );
        assert_eq!(
            bundle_url(None, Some("http://127.0.0.1:8080/mirror/")).unwrap(),
            "http://127.0.0.1:8080/mirror/global/global-bundle.pem"
        );
        assert!(matches!(
            bundle_url(Some("US-EAST-1"), None),
            Err(CaError::BadRegion(_))
        ));
        assert!(matches!(
            bundle_url(None, Some("http://mirror.example.com")),
            Err(CaError::BadBaseUrl { .. })
        ));
        assert!(matches!(
            bundle_url(None, Some("ftp://127.0.0.1/")),
            Err(CaError::BadBaseUrl { .. })
        ));
        assert!(bundle_url(None, Some("http://[::1]:9/")).is_ok());
        assert!(bundle_url(None, Some("http://localhost:9/")).is_ok());
    }

    #[test]
    fn region_from_common_names() {
        assert_eq!(
            region_of_cn("Amazon RDS eu-west-2 Root CA RSA2048 G1").as_deref(),
            Some("eu-west-2")
        );
        assert_eq!(region_of_cn("Amazon RDS Root 2019 CA"), None);
        assert_eq!(region_of_cn("Some Other CA"), None);
    }

    #[test]
    fn inspect_flags_expiry_relative_to_now() {
        let bundle = Bundle::embedded().unwrap();
        let infos = inspect(&bundle.certs, SystemTime::now());
        assert_eq!(infos.len(), 108);
        assert!(
            infos
                .iter()
                .all(|i| i.status == Expiry::Ok && i.self_signed)
        );
        let key_types: std::collections::BTreeSet<_> =
            infos.iter().map(|i| i.key_type.as_str()).collect();
        assert_eq!(
            key_types.into_iter().collect::<Vec<_>>(),
            ["ECDSA P-384", "RSA 2048", "RSA 4096"]
        );
        // Far in the future every certificate has expired.
        let later = UNIX_EPOCH + Duration::from_secs(200 * 365 * 86_400 + 1_000_000_000);
        assert!(
            inspect(&bundle.certs, later)
                .iter()
                .all(|i| i.status == Expiry::Expired && i.days_left < 0)
        );
    }
}
