//! `rdsconn ls`: the region's DB instances, clusters and RDS proxies.

use crate::cli::{GlobalArgs, LsArgs};
use crate::error::Result;
use crate::output;
use crate::rds::{Database, Rds, engine_kind};

pub(crate) async fn run(global: &GlobalArgs, args: &LsArgs) -> Result<u8> {
    let rds = Rds::connect(global).await?;
    let (dbs, proxies) = tokio::join!(rds.list(), rds.proxies());
    let mut dbs: Vec<Database> = dbs?
        .into_iter()
        .chain(proxies?)
        .filter(|d| {
            args.engine
                .is_none_or(|k| engine_kind(&d.engine) == Some(k))
        })
        .collect();
    dbs.sort_by(|a, b| a.identifier.cmp(&b.identifier).then(a.kind.cmp(&b.kind)));
    output::emit(global.output, &dbs, || {
        let rows: Vec<Vec<String>> = dbs
            .iter()
            .map(|d| {
                let at = |host: &Option<String>| match (host, d.port) {
                    (Some(h), Some(p)) => format!("{h}:{p}"),
                    (Some(h), None) => h.clone(),
                    (None, _) => "-".to_string(),
                };
                vec![
                    d.identifier.clone(),
                    format!("{:#}", d.kind),
                    format!("{} {}", d.engine, d.engine_version),
                    d.status.clone(),
                    match (&d.iam_auth_setting, d.iam_auth) {
                        (Some(s), _) => s.to_ascii_lowercase(),
                        (None, true) => "on".into(),
                        (None, false) => "off".into(),
                    },
                    match d.require_tls {
                        Some(true) => "required",
                        Some(false) => "optional",
                        None => "-",
                    }
                    .to_string(),
                    at(&d.endpoint),
                    at(&d.reader_endpoint),
                    d.ca_certificate.clone().unwrap_or_else(|| "-".into()),
                    if d.master_user_secret.is_some() {
                        "managed"
                    } else {
                        "-"
                    }
                    .to_string(),
                    d.resource_id.clone().unwrap_or_else(|| "-".into()),
                ]
            })
            .collect();
        let text = output::grid(
            &[
                "IDENTIFIER",
                "KIND",
                "ENGINE",
                "STATUS",
                "IAM",
                "TLS",
                "ENDPOINT",
                "READER",
                "CA",
                "SECRET",
                "RESOURCE ID",
            ],
            &rows,
        );
        text.trim_end_matches('\n').to_string()
    })?;
    Ok(0)
}
