//! `rdsconn ca fetch|path|show`: the RDS CA bundle lifecycle.

use std::io::Write;
use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::ca::{
    self, Bundle, CaError, Cache, CertInfo, Expiry, FetchOptions, FetchStatus, LoadOptions, Source,
};
use crate::ca::{Trust, TrustFor};
use crate::cli::{CaArgs, CaCommand, CaFetchArgs, CaForArgs, GlobalArgs, OutputFormat};
use crate::error::{Error, Result};
use crate::output;

pub(crate) async fn run(global: &GlobalArgs, args: &CaArgs) -> Result<u8> {
    let region = global.region.as_deref();
    if let Some(r) = region {
        crate::aws::check_region(r, "--region")?;
    }
    let opts = LoadOptions {
        file: global.ca_bundle.as_deref(),
        region,
    };
    match &args.action {
        CaCommand::Fetch(fetch_args) => fetch(global, fetch_args).await,
        CaCommand::Path(a) => path(global.output, &opts, trust_for(&opts, a)?.as_ref()),
        CaCommand::Show(a) => show(global.output, &opts, trust_for(&opts, a)?.as_ref()),
    }
}

async fn fetch(global: &GlobalArgs, args: &CaFetchArgs) -> Result<u8> {
    if global.ca_bundle.is_some() {
        return Err(Error::usage(
            "cannot specify --ca-bundle with `ca fetch`: it downloads into the cache, not into that file",
        ));
    }
    let cache = Cache::from_env()?;
    let opts = FetchOptions {
        region: global.region.clone(),
        force: args.force,
        timeout: *args.timeout,
        base_url: std::env::var(ca::BASE_URL_ENV).ok(),
    };
    let spinner = output::stderr_is_tty().then(|| tokio::spawn(spin("fetching the RDS CA bundle")));
    let result = ca::fetch(&cache, &opts).await;
    if let Some(task) = spinner {
        task.abort();
        let _ = write!(std::io::stderr(), "\r\x1b[K");
    }
    let outcome = result?;
    for w in &outcome.warnings {
        output::warn(w);
    }
    output::emit(global.output, &outcome, || {
        let verb = match outcome.status {
            FetchStatus::Updated => "updated",
            FetchStatus::Unchanged => "unchanged",
        };
        format!(
            "{verb}: {} ({} certificates, sha256 {}) from {}",
            outcome.path.display(),
            outcome.certificates,
            outcome.sha256,
            outcome.url
        )
    })?;
    Ok(0)
}

async fn spin(msg: &'static str) {
    const FRAMES: [char; 4] = ['|', '/', '-', '\\'];
    let mut ticker = tokio::time::interval(Duration::from_millis(120));
    for frame in FRAMES.iter().cycle() {
        ticker.tick().await;
        let _ = write!(std::io::stderr(), "\r{frame} {msg}");
    }
}

/// `--for HOST`, read.
fn trust_for(opts: &LoadOptions<'_>, args: &CaForArgs) -> Result<Option<TrustFor>> {
    args.for_host
        .as_deref()
        .map(|h| ca::trust_for(h, opts.file.is_some()))
        .transpose()
        .map_err(Into::into)
}

fn trust_text(t: &TrustFor) -> String {
    let at = match (&t.region, t.partition) {
        (Some(r), Some(p)) => format!(" (region {r}, partition {p})"),
        _ => String::new(),
    };
    format!(
        "host:          {}\nclass:         {}{at}\nroots:         {}\n",
        t.host,
        t.class.describe(),
        t.why
    )
}

fn path(format: OutputFormat, opts: &LoadOptions<'_>, trust: Option<&TrustFor>) -> Result<u8> {
    #[derive(Serialize)]
    struct PathJson<'a> {
        path: &'a std::path::Path,
    }
    let cache = Cache::from_env()?;
    let trust = trust.map_or(Trust::RdsBundle, |t| t.trust);
    let outcome = ca::ensure_path_for(&cache, opts, trust)?;
    for w in &outcome.warnings {
        output::warn(w);
    }
    output::emit(
        format,
        &PathJson {
            path: &outcome.path,
        },
        || outcome.path.display().to_string(),
    )?;
    Ok(0)
}

/// `ca show --output json`: field names are part of the documented interface.
#[derive(Serialize)]
struct ShowJson<'a> {
    #[serde(rename = "for")]
    for_host: Option<&'a TrustFor>,
    source: SourceJson<'a>,
    sha256: String,
    bytes: usize,
    certificates: &'a [CertInfo],
    summary: Summary,
}

#[derive(Serialize)]
struct SourceJson<'a> {
    /// `embedded`, `cache` or `file`.
    kind: &'static str,
    path: Option<&'a std::path::Path>,
    origin: Option<ca::Origin>,
    url: Option<&'a str>,
    written_at: Option<String>,
    etag: Option<&'a str>,
}

#[derive(Serialize)]
struct Summary {
    total: usize,
    expired: usize,
    expiring: usize,
}

fn source_json(bundle: &Bundle) -> SourceJson<'_> {
    match &bundle.source {
        Source::Embedded => SourceJson {
            kind: "embedded",
            path: None,
            origin: None,
            url: None,
            written_at: None,
            etag: None,
        },
        Source::Cache { path, meta } => SourceJson {
            kind: "cache",
            path: Some(path),
            origin: Some(meta.origin),
            url: meta.url.as_deref(),
            written_at: Some(ca::rfc3339(
                i64::try_from(meta.written_at).unwrap_or(i64::MAX),
            )),
            etag: meta.etag.as_deref(),
        },
        Source::File(path) => SourceJson {
            kind: "file",
            path: Some(path),
            origin: None,
            url: None,
            written_at: None,
            etag: None,
        },
    }
}

fn describe_source(s: &SourceJson<'_>) -> String {
    match (s.kind, s.path, s.url) {
        ("embedded", ..) => format!("embedded in rdsconn {}", env!("CARGO_PKG_VERSION")),
        ("cache", Some(p), Some(url)) => format!(
            "cache {} (fetched {} from {url})",
            p.display(),
            s.written_at.as_deref().unwrap_or("?")
        ),
        ("cache", Some(p), None) => format!("cache {} (embedded copy)", p.display()),
        (_, Some(p), _) => format!("file {}", p.display()),
        _ => s.kind.to_string(),
    }
}

fn show(format: OutputFormat, opts: &LoadOptions<'_>, trust: Option<&TrustFor>) -> Result<u8> {
    let cache = if opts.file.is_some() {
        None
    } else {
        Cache::from_env().ok()
    };
    let (bundle, warnings) = match trust {
        Some(t) if t.trust == Trust::AmazonTrust && opts.file.is_none() => {
            let bundle = ca::amazon_trust().map_err(|source| CaError::InvalidFile {
                path: "<embedded Amazon Trust Services roots>".into(),
                source,
            })?;
            (bundle, Vec::new())
        }
        _ => ca::load(cache.as_ref(), opts)?,
    };
    for w in &warnings {
        output::warn(w);
    }
    let certs = ca::inspect(&bundle.certs, SystemTime::now());
    let count = |s| certs.iter().filter(|c| c.status == s).count();
    let view = ShowJson {
        for_host: trust,
        source: source_json(&bundle),
        sha256: bundle.sha256(),
        bytes: bundle.pem.len(),
        certificates: &certs,
        summary: Summary {
            total: certs.len(),
            expired: count(Expiry::Expired),
            expiring: count(Expiry::Expiring),
        },
    };
    output::emit(format, &view, || show_text(&view))?;
    if view.summary.expired > 0 {
        output::warn(format_args!(
            "{} of {} certificates in this bundle have expired; servers still using them cannot be verified (run `rdsconn ca fetch`)",
            view.summary.expired, view.summary.total
        ));
    }
    Ok(0)
}

fn show_text(view: &ShowJson<'_>) -> String {
    let rows: Vec<Vec<String>> = view
        .certificates
        .iter()
        .map(|c| {
            let status = match c.status {
                Expiry::Ok => "ok",
                Expiry::Expiring => "EXPIRING",
                Expiry::Expired => "EXPIRED",
            };
            vec![
                c.region.clone().unwrap_or_else(|| "-".into()),
                c.key_type.clone(),
                c.not_after.clone(),
                c.days_left.to_string(),
                status.to_string(),
                c.subject_cn.clone().unwrap_or_else(|| c.subject.clone()),
            ]
        })
        .collect();
    let trust = view.for_host.map(trust_text).unwrap_or_default();
    format!(
        "{trust}source:        {}\nsha256:        {}\ncertificates:  {} ({} expired, {} expiring within {} days)\n\n{}",
        describe_source(&view.source),
        view.sha256,
        view.summary.total,
        view.summary.expired,
        view.summary.expiring,
        ca::EXPIRING_SOON_DAYS,
        output::table(
            &[
                "REGION",
                "KEY",
                "NOT AFTER",
                "DAYS LEFT",
                "STATUS",
                "SUBJECT CN"
            ],
            &rows
        )
    )
}
