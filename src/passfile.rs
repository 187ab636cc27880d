//! Password files the native clients read: libpq's `~/.pgpass`
//! (`PGPASSFILE`) and the `[client]` / `[mysql]` `password` of the MySQL
//! option files (`~/.my.cnf`, or `--defaults-file`). A file that others can
//! read is ignored with a warning, as libpq does; nothing in a file is ever
//! printed.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::output;
use crate::secret::Secret;
use crate::target::Target;

/// A password file's contents, if it exists and only its owner may read it.
fn read_private(path: &Path) -> Option<String> {
    let meta = std::fs::metadata(path).ok()?;
    if !meta.is_file() {
        return None;
    }
    if meta.permissions().mode() & 0o077 != 0 {
        output::warn(format!(
            "password file {} has group or world access; ignoring it (chmod 0600 it)",
            path.display()
        ));
        return None;
    }
    std::fs::read_to_string(path).ok()
}

/// The home directory, as the cache directory is found (`directories`).
fn home() -> Option<PathBuf> {
    directories::BaseDirs::new().map(|b| b.home_dir().to_path_buf())
}

/// The `~/.pgpass` (or `PGPASSFILE`) password for the target: the first
/// `host:port:database:user:password` line that matches, `*` matching
/// anything, `\:` and `\\` escaped, as libpq reads it. The host and port are
/// the endpoint's; the database defaults to the user name, as in libpq.
pub(crate) fn pgpass(target: &Target) -> Option<Secret> {
    let path = std::env::var_os("PGPASSFILE")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .or_else(|| home().map(|h| h.join(".pgpass")))?;
    let text = read_private(&path)?;
    let port = target.port.to_string();
    let database = target.database.as_deref().unwrap_or(&target.user);
    let wanted = [target.host.as_str(), &port, database, &target.user];
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .find_map(|line| {
            let fields = split_pgpass(line);
            if fields.len() != 5 {
                return None;
            }
            // Host names compare without case (DNS); the rest exactly.
            let matches = fields[..4]
                .iter()
                .zip(wanted)
                .enumerate()
                .all(|(i, (field, want))| match field {
                    Field::Any => true,
                    Field::Value(v) => v == want || (i == 0 && v.eq_ignore_ascii_case(want)),
                });
            matches.then(|| {
                Secret::new(match &fields[4] {
                    Field::Any => "*".to_string(),
                    Field::Value(v) => v.clone(),
                })
            })
        })
}

/// A `.pgpass` field: a bare `*` matches anything; `\*` (like any escaped
/// character) is itself, as libpq reads it.
#[derive(Debug, PartialEq, Eq)]
enum Field {
    Any,
    Value(String),
}

/// One `.pgpass` line into its fields (`:` separates, `\` escapes).
fn split_pgpass(line: &str) -> Vec<Field> {
    let mut fields = vec![(String::new(), false)];
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == ':' && fields.len() < 5 {
            fields.push((String::new(), false));
            continue;
        }
        let Some((field, escaped)) = fields.last_mut() else {
            break;
        };
        if c == '\\' {
            if let Some(next) = chars.next() {
                field.push(next);
                *escaped = true;
            }
        } else {
            field.push(c);
        }
    }
    fields
        .into_iter()
        .map(|(v, escaped)| {
            if v == "*" && !escaped {
                Field::Any
            } else {
                Field::Value(v)
            }
        })
        .collect()
}

/// The `password` of the `[client]` or `[mysql]` group of the MySQL option
/// file: `defaults_file`, else `~/.my.cnf` (the last setting wins, as in
/// the mysql client).
pub(crate) fn mycnf(defaults_file: Option<&Path>) -> Option<Secret> {
    let path = match defaults_file {
        Some(p) => p.to_path_buf(),
        None => home()?.join(".my.cnf"),
    };
    let text = read_private(&path)?;
    let mut group = String::new();
    let mut password = None;
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            group = name.trim().to_ascii_lowercase();
            continue;
        }
        if group != "client" && group != "mysql" {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let key = key.trim().replace('_', "-");
        if key == "password" {
            password = Some(unquote(value.trim()));
        }
    }
    password.filter(|p| !p.is_empty()).map(Secret::new)
}

/// An option file value: `"…"` or `'…'` with backslash escapes, or bare.
fn unquote(value: &str) -> String {
    let quote = value.chars().next().filter(|c| *c == '"' || *c == '\'');
    let Some(q) = quote else {
        return value.to_string();
    };
    let mut out = String::new();
    let mut chars = value[1..].chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some('n') => out.push('\n'),
                Some('t') => out.push('\t'),
                Some(other) => out.push(other),
                None => {}
            },
            c if c == q => break,
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pgpass_fields_and_escapes() {
        let v = |s: &str| Field::Value(s.to_string());
        assert_eq!(
            split_pgpass("h:5432:db:u:p\\:w\\\\d"),
            [v("h"), v("5432"), v("db"), v("u"), v("p:w\\d")]
        );
        assert_eq!(
            split_pgpass("*:*:*:u:a:b"),
            [Field::Any, Field::Any, Field::Any, v("u"), v("a:b")]
        );
        // An escaped star is a literal star, not a wildcard (libpq).
        assert_eq!(
            split_pgpass("h:5432:\\*:u:pw"),
            [v("h"), v("5432"), v("*"), v("u"), v("pw")]
        );
    }

    #[test]
    fn option_file_values() {
        assert_eq!(unquote("plain"), "plain");
        assert_eq!(
            unquote("\"qu\\\"oted # not a comment\""),
            "qu\"oted # not a comment"
        );
        assert_eq!(unquote("'single'"), "single");
    }
}
