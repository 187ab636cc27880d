//! A client's startup parameters on the server connections it gets:
//! which are settings, and the SQL that sets (and resets) them.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::io::AsyncWriteExt;

use super::frames::{message, query};
use super::{MAX_MESSAGE, PgServer, SYNC, status_pair};
use crate::proxy::postgres::{self};

/// `E'…'`: a string constant whatever `standard_conforming_strings` is.
pub(super) fn literal(s: &str) -> String {
    format!("E'{}'", s.replace('\\', "\\\\").replace('\'', "''"))
}

pub(super) fn ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// The client's startup parameters that are settings (`options`' `-c
/// name=value` too); what the pool cannot give is refused.
pub(super) fn client_params(packet: &[u8]) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    for (k, v) in postgres::parameters(packet.get(8..).unwrap_or_default()) {
        match k.as_str() {
            "user" | "database" => {}
            "replication" => {
                return Err("replication connections are not pooled: use --pool-mode none".into());
            }
            "options" => {
                for (name, value) in options(&v)? {
                    out.insert(name, value);
                }
            }
            k if k.starts_with("_pq_.") => {}
            _ => {
                out.insert(k, v);
            }
        }
    }
    Ok(out)
}

/// `-c name=value` / `--name=value` in `options` (backslash escapes a
/// space, as the server reads it).
pub(super) fn options(raw: &str) -> Result<Vec<(String, String)>, String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => word.extend(chars.next()),
            c if c.is_ascii_whitespace() => {
                if !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
            }
            c => word.push(c),
        }
    }
    if !word.is_empty() {
        words.push(word);
    }
    let mut out = Vec::new();
    let mut it = words.into_iter();
    while let Some(w) = it.next() {
        let setting = if w == "-c" {
            it.next().unwrap_or_default()
        } else if let Some(s) = w.strip_prefix("-c").or_else(|| w.strip_prefix("--")) {
            s.to_string()
        } else {
            return Err(format!(
                "the startup option {} cannot be pooled: only -c name=value settings can",
                crate::text::Untrusted(&w)
            ));
        };
        let Some((name, value)) = setting.split_once('=') else {
            return Err(format!(
                "the startup option -c {} has no value",
                crate::text::Untrusted(&setting)
            ));
        };
        out.push((name.replace('-', "_"), value.to_string()));
    }
    Ok(out)
}

/// Why a server connection could not be readied for a client.
pub(super) enum ApplyError {
    /// It broke: another is tried.
    Broken,
    /// The server refused the client's settings (its `ErrorResponse`).
    Refused(Vec<u8>),
}

/// Sets the client's parameters on `server` (and resets those of the
/// client before that this one did not set); after a long idle, asks a
/// `Sync` at least, to know it still works.
pub(super) async fn apply(
    server: &mut PgServer,
    params: &BTreeMap<String, String>,
    check: bool,
) -> Result<(), ApplyError> {
    let sql = settings_sql(&server.applied, params);
    let out = if !sql.is_empty() {
        query(&sql)
    } else if check {
        SYNC.to_vec()
    } else {
        return Ok(());
    };
    let refused = exchange(server, &out, 1)
        .await
        .map_err(|()| ApplyError::Broken)?;
    if let Some(e) = refused {
        return Err(ApplyError::Refused(e));
    }
    server.applied.clone_from(params);
    Ok(())
}

/// The SQL that takes a server connection from the client parameters
/// `from` to `to`: `RESET` what `to` does not set, `set_config` what
/// differs; empty when nothing does.
pub(super) fn settings_sql(
    from: &BTreeMap<String, String>,
    to: &BTreeMap<String, String>,
) -> String {
    let mut sql = String::new();
    for k in from.keys().filter(|k| !to.contains_key(*k)) {
        sql.push_str("RESET ");
        sql.push_str(&ident(k));
        sql.push(';');
    }
    let changed: Vec<String> = to
        .iter()
        .filter(|(k, v)| from.get(*k) != Some(v))
        .map(|(k, v)| {
            format!(
                "pg_catalog.set_config({}, {}, false)",
                literal(k),
                literal(v)
            )
        })
        .collect();
    if !changed.is_empty() {
        sql.push_str("SELECT ");
        sql.push_str(&changed.join(", "));
    }
    sql
}

/// Sends `out` and reads up to the `syncs`-th `ReadyForQuery`, keeping
/// the parameters the server reports; the first error, if any.
pub(super) async fn exchange(
    server: &mut PgServer,
    out: &[u8],
    syncs: usize,
) -> Result<Option<Vec<u8>>, ()> {
    let talk = async {
        server.stream.write_all(out).await.map_err(drop)?;
        server.stream.flush().await.map_err(drop)?;
        let mut error = None;
        let mut left = syncs;
        while left > 0 {
            let (kind, body) = postgres::read_message(&mut server.stream, MAX_MESSAGE)
                .await
                .map_err(drop)?;
            match kind {
                b'S' => {
                    if let Some((k, v)) = status_pair(&body) {
                        server.status.insert(k, v);
                    }
                }
                b'E' if error.is_none() => error = Some(message(b'E', &[&body])),
                b'Z' => left -= 1,
                _ => {}
            }
        }
        Ok(error)
    };
    tokio::time::timeout(RESET_WITHIN, talk)
        .await
        .unwrap_or(Err(()))
}

/// A reset or a check that takes longer closes the server connection.
pub(super) const RESET_WITHIN: Duration = Duration::from_secs(10);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::pgpool::frames::server_name;

    #[test]
    fn startup_options_become_settings() {
        assert_eq!(
            options("-c search_path=a,b --statement-timeout=5 -cwork_mem=1MB").unwrap(),
            vec![
                ("search_path".into(), "a,b".into()),
                ("statement_timeout".into(), "5".into()),
                ("work_mem".into(), "1MB".into())
            ]
        );
        assert_eq!(
            options(r"-c application_name=a\ b").unwrap(),
            vec![("application_name".into(), "a b".into())]
        );
        assert!(options("-D /tmp").is_err());
        assert!(options("-c novalue").is_err());
    }

    #[test]
    fn quoting() {
        assert_eq!(literal(r"a'b\c"), r"E'a''b\\c'");
        assert_eq!(ident(r#"a"b"#), r#""a""b""#);
        let n = server_name(b"SELECT 1\0\0\0");
        assert!(n.starts_with("rdsconn_") && n.len() == 40 && n.len() < 64);
        assert_ne!(n, server_name(b"SELECT 2\0\0\0"));
    }
}
