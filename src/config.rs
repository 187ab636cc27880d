//! rdsconn's TOML files: `[targets.NAME]` tables whose keys are a
//! command's long flag names (`engine`, `host`, `instance`, `iam`, `via`,
//! `listen`, …). A table is turned into the command line it stands for and
//! parsed by the same clap definition as typed flags, so a file can say
//! exactly what a command line can, checked the same way. `rdsconn proxy
//! --config` reads it; named targets will read the same format.

use std::collections::BTreeMap;
use std::path::Path;

use toml::Spanned;

use crate::cli::{GlobalArgs, ProxyArgs};
use crate::error::{Error, Result};

/// One `[targets.NAME]` table as the arguments it stands for.
#[derive(Debug)]
pub(crate) struct FileTarget {
    pub name: String,
    /// `--flag value` pairs (the engine first, as a positional).
    pub args: Vec<String>,
    /// The line of each flag's key, and of the table, for errors.
    lines: BTreeMap<String, usize>,
    table_line: usize,
}

/// One `[targets.NAME]` table, keys and values with their places.
type Table = BTreeMap<Spanned<String>, Spanned<toml::Value>>;

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    targets: Spanned<BTreeMap<String, Spanned<Table>>>,
}

/// The line (1-based) of byte `at` in `text`.
fn line_of(text: &str, at: usize) -> usize {
    text.get(..at).map_or(1, |t| t.matches('\n').count() + 1)
}

/// Reads `path`: every target, in name order. A file others may write is
/// refused (it says where to send passwords and tokens).
pub(crate) fn read(path: &Path) -> Result<Vec<FileTarget>> {
    let shown = path.display();
    let text =
        std::fs::read_to_string(path).map_err(|e| Error::usage(format!("reading {shown}: {e}")))?;
    {
        use std::os::unix::fs::MetadataExt;
        if let Ok(meta) = std::fs::metadata(path)
            && meta.mode() & 0o022 != 0
        {
            return Err(Error::usage(format!(
                "{shown} is writable by others (mode {:o}): rdsconn will not take targets from it",
                meta.mode() & 0o777
            ))
            .with_hint(format!("chmod go-w {shown}")));
        }
    }
    let file: File = toml::from_str(&text).map_err(|e| {
        let line = e.span().map_or(1, |s| line_of(&text, s.start));
        Error::usage(format!(
            "{shown}:{line}: {}",
            e.message().lines().next().unwrap_or("invalid TOML")
        ))
    })?;
    let targets = file.targets.into_inner();
    if targets.is_empty() {
        return Err(Error::usage(format!("{shown}: no [targets.NAME] table")));
    }
    targets
        .into_iter()
        .map(|(name, table)| {
            let table_line = line_of(&text, table.span().start);
            let mut target = FileTarget {
                name,
                args: Vec::new(),
                lines: BTreeMap::new(),
                table_line,
            };
            let mut engine = None;
            for (key, value) in table.into_inner() {
                let line = line_of(&text, key.span().start);
                let key = key.into_inner();
                let at = |msg: String| Error::usage(format!("{shown}:{line}: {msg}"));
                if key == "password" {
                    return Err(at("a password does not belong in a file: use --secret, .pgpass / .my.cnf, or the environment".into()));
                }
                let flag = format!("--{}", key.replace('_', "-"));
                target.lines.insert(flag.clone(), line);
                let values: Vec<toml::Value> = match value.into_inner() {
                    toml::Value::Array(items) => items,
                    one => vec![one],
                };
                for v in values {
                    let text = match v {
                        toml::Value::String(s) => s,
                        toml::Value::Integer(n) => n.to_string(),
                        toml::Value::Boolean(true) if key != "engine" => {
                            target.args.push(flag.clone());
                            continue;
                        }
                        toml::Value::Boolean(false) => continue,
                        other => {
                            return Err(at(format!(
                                "{key} = {}: expected a string, a whole number or true",
                                other.type_str()
                            )));
                        }
                    };
                    if key == "engine" {
                        engine = Some(text);
                    } else {
                        target.args.push(flag.clone());
                        target.args.push(text);
                    }
                }
            }
            if let Some(e) = engine {
                target.args.insert(0, e);
            }
            Ok(target)
        })
        .collect()
}

impl FileTarget {
    /// A clap error about this target, as one line naming the file and
    /// the line of the key it is about.
    pub(crate) fn error(&self, path: &Path, e: &clap::Error) -> Error {
        use clap::error::{ContextKind, ContextValue};
        let arg = match e.get(ContextKind::InvalidArg) {
            Some(ContextValue::String(s)) => Some(s.clone()),
            _ => None,
        };
        let line = arg
            .as_deref()
            .and_then(|a| a.split([' ', '=']).next())
            .and_then(|flag| self.lines.get(flag).copied())
            .unwrap_or(self.table_line);
        let text = e.to_string();
        let first = text
            .lines()
            .next()
            .unwrap_or("invalid target")
            .trim_start_matches("error: ");
        Error::usage(format!(
            "{}:{line}: [targets.{}]: {first}",
            path.display(),
            self.name
        ))
    }
}

/// A proxy target from the command line or a `--config` table.
pub(crate) struct Named {
    /// The table's name; `None` for the command line's target.
    pub name: Option<String>,
    pub global: GlobalArgs,
    pub args: ProxyArgs,
}

/// The `[targets.NAME]` tables of `file` as proxy targets, each parsed as
/// the flags it names, with the command line's global flags unless the
/// table sets its own (`region`, `profile`, `ca-bundle`).
pub(crate) fn proxy_targets(file: &Path, global: &GlobalArgs) -> Result<Vec<Named>> {
    read(file)?
        .into_iter()
        .map(|t| {
            let words = ["rdsconn", "proxy"]
                .into_iter()
                .map(String::from)
                .chain(t.args.iter().cloned());
            let parsed = crate::cli::parse_from(words.map(Into::into).collect())
                .map_err(|e| t.error(file, &e))?;
            let crate::cli::Command::Proxy(target_args) = parsed.command else {
                return Err(Error::usage(format!(
                    "{}: [targets.{}]: not a proxy target",
                    file.display(),
                    t.name
                )));
            };
            let g = parsed.global;
            Ok(Named {
                name: Some(t.name),
                global: GlobalArgs {
                    region: g.region.or_else(|| global.region.clone()),
                    profile: g.profile.or_else(|| global.profile.clone()),
                    ca_bundle: g.ca_bundle.or_else(|| global.ca_bundle.clone()),
                    ..global.clone()
                },
                args: target_args,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(text: &str) -> tempfile::NamedTempFile {
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), text).unwrap();
        f
    }

    #[test]
    fn tables_become_flags() {
        let f = write(
            "[targets.writer]\nengine = \"postgres\"\nhost = \"h.example\"\niam = true\nlisten = [\"127.0.0.1:1\", \"127.0.0.1:2\"]\nport = 5432\nreader = false\n",
        );
        let t = read(f.path()).unwrap();
        assert_eq!(t.len(), 1);
        assert_eq!(t[0].name, "writer");
        assert_eq!(
            t[0].args,
            [
                "postgres",
                "--host",
                "h.example",
                "--iam",
                "--listen",
                "127.0.0.1:1",
                "--listen",
                "127.0.0.1:2",
                "--port",
                "5432"
            ]
        );
    }

    #[test]
    fn bad_files_name_the_line() {
        for (text, want) in [
            (
                "[targets.a]\nengine = \"postgres\"\npassword = \"x\"\n",
                ":3: a password",
            ),
            ("[targets.a]\nport = 1.5\n", ":2: port = float"),
            ("[targets.a\n", ":1:"),
            ("[other]\n", ":1:"),
            ("", "missing field"),
        ] {
            let f = write(text);
            let e = read(f.path()).unwrap_err().to_string();
            assert!(e.contains(want), "{text:?}: {e}");
        }
    }
}
