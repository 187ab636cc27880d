//! libpq's connection service file, read as libpq reads it: the service
//! is looked up in `PGSERVICEFILE` (else `~/.pg_service.conf`), then in
//! `PGSYSCONFDIR/pg_service.conf` (else Debian's libpq default,
//! `/etc/postgresql-common/pg_service.conf`). A service's keys become
//! rdsconn's target keys (the same entries as a `[targets.NAME]` table):
//! `host`, `hostaddr` (→ `via`, dialed while the name is verified),
//! `port`, `user`, `dbname`, `sslmode`, `sslrootcert` (→ `ca-bundle`),
//! `connect_timeout`. Keys rdsconn does not use are reported, never
//! ignored silently.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::config::{Entry, Place, Val};
use crate::error::{Error, Result};

/// One `[NAME]` section: its place and its `key=value` lines.
#[derive(Debug, Clone)]
pub(crate) struct Service {
    pub name: String,
    pub place: Place,
    pub keys: Vec<(String, String, Place)>,
}

/// The service files in libpq's order of lookup: the user's, then the
/// system's.
pub(crate) fn files() -> Vec<PathBuf> {
    let user = std::env::var_os("PGSERVICEFILE")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".pg_service.conf")));
    let system = std::env::var_os("PGSYSCONFDIR")
        .filter(|p| !p.is_empty())
        .map_or_else(|| PathBuf::from("/etc/postgresql-common"), PathBuf::from)
        .join("pg_service.conf");
    user.into_iter().chain([system]).collect()
}

/// Every service of `path` (none when it does not exist).
pub(crate) fn read(path: &Path) -> Result<Vec<Service>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(Error::usage(format!("reading {}: {e}", path.display())));
        }
    };
    let file = Arc::new(path.to_path_buf());
    let mut services: Vec<Service> = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let place = Place {
            file: Arc::clone(&file),
            line: i + 1,
        };
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[') {
            let name = name.strip_suffix(']').ok_or_else(|| {
                Error::usage(format!("{place}: syntax error in service file: {line:?}"))
            })?;
            services.push(Service {
                name: name.to_string(),
                place,
                keys: Vec::new(),
            });
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            return Err(Error::usage(format!(
                "{place}: syntax error in service file (expected key=value)"
            )));
        };
        let Some(service) = services.last_mut() else {
            return Err(Error::usage(format!(
                "{place}: syntax error in service file (a key before any [service])"
            )));
        };
        service
            .keys
            .push((key.trim().to_string(), value.trim().to_string(), place));
    }
    Ok(services)
}

/// Service `name` as libpq finds it: the first file that defines it.
pub(crate) fn find(name: &str) -> Result<Option<Service>> {
    for file in files() {
        if let Some(s) = read(&file)?.into_iter().find(|s| s.name == name) {
            return Ok(Some(s));
        }
    }
    Ok(None)
}

/// Every service name of every file (the first definition of each).
pub(crate) fn all() -> Vec<Service> {
    let mut out: Vec<Service> = Vec::new();
    for file in files() {
        for s in read(&file).unwrap_or_default() {
            if !out.iter().any(|o| o.name == s.name) {
                out.push(s);
            }
        }
    }
    out
}

/// A service as target entries (engine `postgres`), and warnings: keys
/// rdsconn does not use, an `sslmode` below `verify-ca` (rdsconn always
/// verifies).
pub(crate) fn entries(service: &Service) -> Result<(Vec<Entry>, Vec<String>)> {
    let from = format!("pg_service [{}]", service.name);
    let mut out = vec![Entry {
        key: "engine".into(),
        val: Val::One("postgres".into()),
        place: service.place.clone(),
        from: from.clone(),
    }];
    let (mut warnings, mut unused) = (Vec::new(), Vec::new());
    let port = service
        .keys
        .iter()
        .rev()
        .find(|(k, _, _)| k == "port")
        .map_or("5432", |(_, v, _)| v.as_str());
    for (key, value, place) in &service.keys {
        let entry = |key: &str, val: String| Entry {
            key: key.into(),
            val: Val::One(val),
            place: place.clone(),
            from: from.clone(),
        };
        if value.contains(',') && matches!(key.as_str(), "host" | "hostaddr" | "port") {
            return Err(Error::usage(format!(
                "{place}: [{}] {key}={value}: rdsconn connects to one host",
                service.name
            )));
        }
        match key.as_str() {
            "host" => out.push(entry("host", value.clone())),
            "hostaddr" => out.push(entry("via", format!("{value}:{port}"))),
            "port" => out.push(entry("port", value.clone())),
            "user" => out.push(entry("user", value.clone())),
            "dbname" => out.push(entry("database", value.clone())),
            "sslrootcert" if value != "system" => out.push(entry("ca-bundle", value.clone())),
            "connect_timeout" => out.push(entry("connect-timeout", format!("{value}s"))),
            "sslmode" => match value.as_str() {
                "verify-full" | "verify-ca" => out.push(entry("tls", value.clone())),
                _ => warnings.push(format!(
                    "{place}: [{}] sslmode={value}: rdsconn always verifies the server (verify-full)",
                    service.name
                )),
            },
            _ => unused.push(key.clone()),
        }
    }
    if !unused.is_empty() {
        warnings.push(format!(
            "{}: [{}] keys rdsconn does not use: {}",
            service.place,
            service.name,
            unused.join(", ")
        ));
    }
    Ok((out, warnings))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_keys_and_what_rdsconn_uses() {
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(
            f.path(),
            "# comment\n[prod]\nhost=db.example\nhostaddr = 10.0.0.5\nport=6432\nuser=app\ndbname=orders\nsslmode=require\napplication_name=x\n[other]\nhost=o\n",
        )
        .unwrap();
        let services = read(f.path()).unwrap();
        assert_eq!(services.len(), 2);
        let (entries, warnings) = super::entries(&services[0]).unwrap();
        let got: Vec<String> = entries
            .iter()
            .map(|e| format!("{}={}", e.key, e.val))
            .collect();
        assert_eq!(
            got,
            [
                "engine=\"postgres\"",
                "host=\"db.example\"",
                "via=\"10.0.0.5:6432\"",
                "port=\"6432\"",
                "user=\"app\"",
                "database=\"orders\""
            ]
        );
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(warnings[0].contains(":8: [prod] sslmode=require"));
        assert!(warnings[1].contains(":2: [prod] keys rdsconn does not use: application_name"));
    }

    #[test]
    fn bad_lines_are_errors_with_the_line() {
        for (text, want) in [
            ("host=x\n", ":1: syntax error"),
            ("[a]\nhost\n", ":2: syntax error"),
            ("[a\n", ":1: syntax error"),
        ] {
            let f = tempfile::NamedTempFile::new().unwrap();
            std::fs::write(f.path(), text).unwrap();
            let e = read(f.path()).unwrap_err().to_string();
            assert!(e.contains(want), "{text:?}: {e}");
        }
    }
}
