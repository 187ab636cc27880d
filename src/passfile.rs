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
                .all(|(i, (field, want))| {
                    field == "*" || field == want || (i == 0 && field.eq_ignore_ascii_case(want))
                });
            matches.then(|| Secret::new(fields[4].clone()))
        })
}

/// One `.pgpass` line into its fields (`:` separates, `\` escapes).
fn split_pgpass(line: &str) -> Vec<String> {
    let mut fields = vec![String::new()];
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let (Some(next), Some(f)) = (chars.next(), fields.last_mut()) {
                    f.push(next);
                }
            }
            ':' if fields.len() < 5 => fields.push(String::new()),
            c => {
                if let Some(f) = fields.last_mut() {
                    f.push(c);
                }
            }
        }
    }
    fields
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
        assert_eq!(
            split_pgpass("h:5432:db:u:p\\:w\\\\d"),
            ["h", "5432", "db", "u", "p:w\\d"]
        );
        assert_eq!(split_pgpass("*:*:*:u:a:b"), ["*", "*", "*", "u", "a:b"]);
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
