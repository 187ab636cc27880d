//! `rdsconn targets`: the named targets (`@NAME`) of rdsconn's config
//! files and libpq's service file, and one target resolved.

use serde::Serialize;

use crate::cli::{GlobalArgs, TargetsAction, TargetsArgs};
use crate::config::{Entry, Place, Val};
use crate::error::Result;
use crate::named::{Resolved, resolve, sources};
use crate::output;
use crate::text::Untrusted;

/// One name as `targets` lists it.
#[derive(Serialize)]
struct Listed {
    name: String,
    engine: Option<String>,
    /// What names the endpoint: a host, `instance ID`, `cluster ID`, ….
    target: String,
    source: &'static str,
    file: String,
    line: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    extends: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<String>,
}

#[derive(Serialize)]
struct Key {
    #[serde(rename = "key")]
    name: String,
    value: serde_json::Value,
    file: String,
    line: usize,
    from: String,
}

#[derive(Serialize)]
struct Shown {
    name: String,
    source: &'static str,
    file: String,
    line: usize,
    keys: Vec<Key>,
}

pub(crate) fn run(global: &GlobalArgs, args: &TargetsArgs) -> Result<u8> {
    match &args.action {
        None | Some(TargetsAction::List) => list(global),
        Some(TargetsAction::Show { name }) => show(global, name.trim_start_matches('@')),
        Some(TargetsAction::Names) => {
            for l in listed()? {
                output::line(&l.name)?;
            }
            Ok(0)
        }
    }
}

fn value(e: &Entry, key: &str) -> Option<String> {
    (e.key == key).then(|| match &e.val {
        Val::One(v) => v.clone(),
        other => other.to_string(),
    })
}

/// What names a target's endpoint, in a few words.
fn endpoint(entries: &[Entry]) -> String {
    let get = |k: &str| entries.iter().rev().find_map(|e| value(e, k));
    let reader = entries
        .iter()
        .any(|e| e.key == "reader" && e.val == Val::On);
    if let Some(h) = get("host") {
        h
    } else if let Some(i) = get("instance") {
        format!("instance {i}")
    } else if let Some(c) = get("cluster") {
        format!("cluster {c}{}", if reader { " (reader)" } else { "" })
    } else if let Some(p) = get("proxy") {
        format!("proxy {p}")
    } else if let Some(p) = get("proxy-endpoint") {
        format!("proxy endpoint {p}")
    } else if let Some(s) = get("secret") {
        format!("secret {s}")
    } else {
        "-".into()
    }
}

fn engine(entries: &[Entry]) -> Option<String> {
    entries.iter().rev().find_map(|e| value(e, "engine"))
}

/// Every name: rdsconn's tables (each resolved, so a bad one is an
/// error), then libpq services rdsconn's files do not shadow.
fn listed() -> Result<Vec<Listed>> {
    let sources = sources()?;
    let mut out = Vec::new();
    for table in sources.loaded.tables.values() {
        let r = resolve(&sources, &table.name, false)?;
        out.push(Listed {
            name: table.name.clone(),
            engine: engine(&r.entries),
            target: endpoint(&r.entries),
            source: "rdsconn",
            file: table.place.file.display().to_string(),
            line: table.place.line,
            extends: table.extends.as_ref().map(|(b, _)| b.clone()),
            description: table.description.clone(),
        });
    }
    for service in crate::pgservice::all() {
        if sources.loaded.tables.contains_key(&service.name) {
            continue;
        }
        let Ok((entries, _)) = crate::pgservice::entries(&service) else {
            continue;
        };
        out.push(Listed {
            name: service.name.clone(),
            engine: engine(&entries),
            target: endpoint(&entries),
            source: "pg_service",
            file: service.place.file.display().to_string(),
            line: service.place.line,
            extends: None,
            description: None,
        });
    }
    Ok(out)
}

fn list(global: &GlobalArgs) -> Result<u8> {
    let all = listed()?;
    output::emit(global.output, &all, || {
        if all.is_empty() {
            return "no named targets: define [targets.NAME] in ~/.config/rdsconn/config.toml or .rdsconn.toml".into();
        }
        let rows: Vec<Vec<String>> = all
            .iter()
            .map(|l| {
                vec![
                    format!("@{}", l.name),
                    l.engine.clone().unwrap_or_else(|| "-".into()),
                    l.target.clone(),
                    format!("{}:{}", l.file, l.line),
                ]
            })
            .map(|r| r.into_iter().map(|c| Untrusted(&c).to_string()).collect())
            .collect();
        output::grid(&["NAME", "ENGINE", "TARGET", "DEFINED AT"], &rows)
            .trim_end()
            .to_string()
    })?;
    Ok(0)
}

fn place_of(p: &Place) -> (String, usize) {
    (p.file.display().to_string(), p.line)
}

fn show(global: &GlobalArgs, name: &str) -> Result<u8> {
    let sources = sources()?;
    let Resolved {
        entries,
        place,
        service,
        warnings,
        ..
    } = resolve(&sources, name, false)?;
    for w in &warnings {
        output::warn(w);
    }
    let (file, line) = place_of(&place);
    let shown = Shown {
        name: name.to_string(),
        source: if service { "pg_service" } else { "rdsconn" },
        file,
        line,
        keys: entries
            .iter()
            .map(|e| {
                let (file, line) = place_of(&e.place);
                Key {
                    name: e.key.clone(),
                    value: match &e.val {
                        Val::On => true.into(),
                        Val::Off => false.into(),
                        Val::One(v) => v.clone().into(),
                        Val::Many(v) => v.clone().into(),
                    },
                    file,
                    line,
                    from: e.from.clone(),
                }
            })
            .collect(),
    };
    output::emit(global.output, &shown, || {
        let mut text = format!("@{name} ({place})\n");
        for e in &entries {
            let line = format!("  {} = {}    # {} {}", e.key, e.val, e.place, e.from);
            text.push_str(&Untrusted(&line).to_string());
            text.push('\n');
        }
        text.trim_end().to_string()
    })?;
    Ok(0)
}
