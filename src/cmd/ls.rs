//! `rdsconn ls`: the region's DB instances, clusters and RDS proxies.

use std::io::IsTerminal;

use crate::cli::{GlobalArgs, LsArgs, LsFormat, OutputFormat};
use crate::error::Result;
use crate::output;
use crate::rds::{Database, Rds, engine_kind};

/// The columns shown on a terminal without `-o wide`: identifier, kind,
/// engine, status, IAM, endpoint.
const NARROW: [usize; 6] = [0, 1, 2, 3, 4, 6];

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
    let format = match args.format {
        Some(LsFormat::Json) => OutputFormat::Json,
        _ => global.output,
    };
    let tty = std::io::stdout().is_terminal();
    // On a terminal the columns that fit a screen, unless asked for all;
    // piped text always has all of them, for scripts.
    let wide = !tty || args.wide || args.format == Some(LsFormat::Wide);
    if format == OutputFormat::Text {
        // The count on stderr, so that stdout stays the table.
        output::note(format!(
            "{} database{} in {}{}",
            dbs.len(),
            if dbs.len() == 1 { "" } else { "s" },
            rds.region(),
            if dbs.is_empty() || wide {
                ""
            } else {
                " (-o wide: every column)"
            },
        ));
        if dbs.is_empty() {
            return Ok(0);
        }
    }
    let listed = Listed {
        region: rds.region(),
        databases: &dbs,
    };
    output::emit(format, &listed, || table(&dbs, wide))?;
    Ok(0)
}

/// `ls --output json`: the region and every database, proxy included.
#[derive(serde::Serialize)]
struct Listed<'a> {
    region: &'a str,
    databases: &'a [Database],
}

/// The text table: every column (`wide`), or those that fit a screen.
fn table(dbs: &[Database], wide: bool) -> String {
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
    let header = [
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
    ];
    let text = if wide {
        output::grid(&header, &rows)
    } else {
        let keep =
            |row: &[String]| -> Vec<String> { NARROW.iter().map(|&i| row[i].clone()).collect() };
        let narrow_header: Vec<&str> = NARROW.iter().map(|&i| header[i]).collect();
        let narrow: Vec<Vec<String>> = rows.iter().map(|r| keep(r)).collect();
        output::grid(&narrow_header, &narrow)
    };
    text.trim_end_matches('\n').to_string()
}
