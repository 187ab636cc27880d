//! rdsconn's TOML files: `[targets.NAME]` tables whose keys are a
//! command's long flag names (`engine`, `host`, `instance`, `iam`, `via`,
//! `listen`, …), `[defaults]` under every table, and `extends = "BASE"`
//! for a table that changes a few keys of another. A table is turned into
//! the command line it stands for and parsed by the same clap definition as
//! typed flags, so a file can say exactly what a command line can, checked
//! the same way. `rdsconn proxy --config` and named targets (`@NAME`)
//! read the same format.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use toml::Spanned;

use crate::cli::{GlobalArgs, ProxyArgs};
use crate::error::{Error, Result};

/// Where a key or table is: a file and a line (1-based).
#[derive(Clone, Debug)]
pub(crate) struct Place {
    pub file: Arc<PathBuf>,
    pub line: usize,
}

impl std::fmt::Display for Place {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.file.display(), self.line)
    }
}

/// A key's value as flags: `true` (a switch), `false` (unset what a base
/// or `[defaults]` set), one value, or several (a repeatable flag).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Val {
    On,
    Off,
    One(String),
    Many(Vec<String>),
}

impl std::fmt::Display for Val {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::On => f.write_str("true"),
            Self::Off => f.write_str("false"),
            Self::One(v) => write!(f, "{v:?}"),
            Self::Many(v) => write!(f, "{v:?}"),
        }
    }
}

/// One key of a table: its flag's long name (`connect-timeout`; the file
/// may spell it `connect_timeout`), its value, and where it was written.
#[derive(Clone, Debug)]
pub(crate) struct Entry {
    pub key: String,
    pub val: Val,
    pub place: Place,
    /// `[defaults]`, or the table it was written in.
    pub from: String,
}

/// One `[targets.NAME]` table.
#[derive(Clone, Debug)]
pub(crate) struct Table {
    pub name: String,
    pub place: Place,
    pub extends: Option<(String, Place)>,
    pub description: Option<String>,
    pub entries: Vec<Entry>,
}

/// What one or more files define.
#[derive(Clone, Debug, Default)]
pub(crate) struct Loaded {
    pub defaults: Vec<Entry>,
    pub tables: BTreeMap<String, Table>,
}

/// Keys that each name the endpoint: one given on a higher layer (a flag,
/// a table over its base) replaces every one of them below it, and what
/// qualifies them ([`ENDPOINT_QUALIFIERS`]).
pub(crate) const ENDPOINT_KEYS: &[&str] =
    &["host", "instance", "cluster", "proxy", "proxy-endpoint"];

/// `reader` qualifies `cluster`: it goes with the endpoint it was for.
pub(crate) const ENDPOINT_QUALIFIERS: &[&str] = &["reader"];

/// Keys that each say how to log in; as [`ENDPOINT_KEYS`].
pub(crate) const AUTH_KEYS: &[&str] = &["iam", "password-stdin", "secret", "master-secret"];

/// `secret-region` qualifies `secret`.
pub(crate) const AUTH_QUALIFIERS: &[&str] = &["secret-region"];

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    targets: BTreeMap<Spanned<String>, Spanned<RawTable>>,
    defaults: Option<Spanned<RawTable>>,
}

type RawTable = BTreeMap<Spanned<String>, Spanned<toml::Value>>;

/// The line (1-based) of byte `at` in `text`.
fn line_of(text: &str, at: usize) -> usize {
    text.get(..at).map_or(1, |t| t.matches('\n').count() + 1)
}

/// Refuses a file others may write (its mode, or an owner other than this
/// user or root): it says where to send passwords and tokens.
pub(crate) fn check_private(path: &Path) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = std::fs::metadata(path) else {
        return Ok(());
    };
    let shown = path.display();
    if meta.mode() & 0o022 != 0 {
        return Err(Error::usage(format!(
            "{shown} is writable by others (mode {:o}): rdsconn will not take targets from it",
            meta.mode() & 0o777
        ))
        .with_hint(format!("chmod go-w {shown}")));
    }
    let me = rustix::process::geteuid().as_raw();
    if meta.uid() != me && meta.uid() != 0 {
        return Err(Error::usage(format!(
            "{shown} belongs to another user (uid {}): rdsconn will not take targets from it",
            meta.uid()
        )));
    }
    Ok(())
}

/// Reads and checks `path`: every table and `[defaults]`.
pub(crate) fn load(path: &Path) -> Result<Loaded> {
    let shown = path.display();
    let text =
        std::fs::read_to_string(path).map_err(|e| Error::usage(format!("reading {shown}: {e}")))?;
    check_private(path)?;
    let file: File = toml::from_str(&text).map_err(|e| {
        let line = e.span().map_or(1, |s| line_of(&text, s.start));
        Error::usage(format!(
            "{shown}:{line}: {}",
            e.message().lines().next().unwrap_or("invalid TOML")
        ))
    })?;
    let file_name = Arc::new(path.to_path_buf());
    let place = |at: usize| Place {
        file: Arc::clone(&file_name),
        line: line_of(&text, at),
    };
    let mut loaded = Loaded::default();
    if let Some(defaults) = file.defaults {
        let (entries, extends, description) = entries(defaults.into_inner(), "[defaults]", &place)?;
        if let Some((_, at)) = extends.or(description.map(|(_, at)| (String::new(), at))) {
            return Err(Error::usage(format!(
                "{at}: [defaults] takes flags only (no extends or description)"
            )));
        }
        loaded.defaults = entries;
    }
    for (name, table) in file.targets {
        let at = place(name.span().start);
        let name = name.into_inner();
        check_name(&name, &at)?;
        let from = format!("[targets.{name}]");
        let (entries, extends, description) = entries(table.into_inner(), &from, &place)?;
        loaded.tables.insert(
            name.clone(),
            Table {
                name,
                place: at,
                extends,
                description: description.map(|(d, _)| d),
                entries,
            },
        );
    }
    Ok(loaded)
}

/// A target name: letters, digits, `-`, `_` and `.`, starting with a
/// letter or digit (it follows `@` on command lines and in completions).
fn check_name(name: &str, at: &Place) -> Result<()> {
    let ok = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok && name.len() <= 64 {
        Ok(())
    } else {
        Err(Error::usage(format!(
            "{at}: target name {:?}: use letters, digits, '-', '_' and '.' (at most 64)",
            crate::text::Untrusted(name).to_string()
        )))
    }
}

type Described = (String, Place);

/// A table's keys as entries, with its `extends` and `description`.
fn entries(
    table: RawTable,
    from: &str,
    place: &dyn Fn(usize) -> Place,
) -> Result<(Vec<Entry>, Option<Described>, Option<Described>)> {
    let mut out = Vec::new();
    let (mut extends, mut description) = (None, None);
    for (key, value) in table {
        let at = place(key.span().start);
        let key = key.into_inner().replace('_', "-");
        let value = value.into_inner();
        let err = |msg: String| Error::usage(format!("{at}: {msg}"));
        if key == "password" {
            return Err(err("a password does not belong in a file".into()).with_hint(
                "use --secret (AWS Secrets Manager), ~/.pgpass / ~/.my.cnf, or PGPASSWORD / MYSQL_PWD",
            ));
        }
        if key == "extends" || key == "description" {
            let toml::Value::String(s) = value else {
                return Err(err(format!(
                    "{key} = {}: expected a string",
                    value.type_str()
                )));
            };
            let s = s.strip_prefix('@').map(str::to_string).unwrap_or(s);
            if key == "extends" {
                extends = Some((s, at));
            } else {
                description = Some((s, at));
            }
            continue;
        }
        let val = match value {
            toml::Value::Boolean(true) => Val::On,
            toml::Value::Boolean(false) => Val::Off,
            toml::Value::Array(items) => Val::Many(
                items
                    .into_iter()
                    .map(|v| scalar(&key, v).map_err(&err))
                    .collect::<Result<_>>()?,
            ),
            one => Val::One(scalar(&key, one).map_err(&err)?),
        };
        out.push(Entry {
            key,
            val,
            place: at,
            from: from.to_string(),
        });
    }
    Ok((out, extends, description))
}

fn scalar(key: &str, v: toml::Value) -> std::result::Result<String, String> {
    match v {
        toml::Value::String(s) => Ok(s),
        toml::Value::Integer(n) => Ok(n.to_string()),
        other => Err(format!(
            "{key} = {}: expected a string, a whole number or true/false",
            other.type_str()
        )),
    }
}

/// `below` with `over` on top: a key in `over` replaces the same key below,
/// and any endpoint (or login) key in `over` replaces every endpoint (or
/// login) key below.
pub(crate) fn overlay(below: &[Entry], over: &[Entry]) -> Vec<Entry> {
    let keys: BTreeSet<&str> = over.iter().map(|e| e.key.as_str()).collect();
    let replaces = |group: &[&str]| group.iter().any(|k| keys.contains(k));
    let (endpoint, auth) = (replaces(ENDPOINT_KEYS), replaces(AUTH_KEYS));
    below
        .iter()
        .filter(|e| {
            let k = e.key.as_str();
            let endpoint_key = ENDPOINT_KEYS.contains(&k) || ENDPOINT_QUALIFIERS.contains(&k);
            let auth_key = AUTH_KEYS.contains(&k) || AUTH_QUALIFIERS.contains(&k);
            let covered = keys.contains(k) || (endpoint && endpoint_key) || (auth && auth_key);
            !covered
        })
        .chain(over)
        .cloned()
        .collect()
}

impl Loaded {
    /// `over`'s tables replace this one's of the same name; its
    /// `[defaults]` keys replace these.
    pub(crate) fn merge(&mut self, over: Loaded) {
        self.defaults = overlay(&self.defaults, &over.defaults);
        self.tables.extend(over.tables);
    }

    /// The closest defined name to `name`, for "did you mean".
    pub(crate) fn closest(&self, name: &str, others: &[String]) -> Option<String> {
        self.tables
            .keys()
            .chain(others)
            .map(|k| (strsim::damerau_levenshtein(name, k), k))
            .filter(|(d, k)| *d <= 2.max(k.len() / 3))
            .min()
            .map(|(_, k)| k.clone())
    }

    /// Table `name`'s keys over its bases' over `[defaults]`, `false`
    /// values dropped.
    pub(crate) fn resolve(&self, name: &str) -> Result<Vec<Entry>> {
        let mut chain: Vec<&str> = Vec::new();
        let resolved = self.resolve_in(name, &mut chain)?;
        Ok(resolved.into_iter().filter(|e| e.val != Val::Off).collect())
    }

    fn resolve_in<'a>(&'a self, name: &'a str, chain: &mut Vec<&'a str>) -> Result<Vec<Entry>> {
        let table = &self.tables[name];
        chain.push(name);
        let below = match &table.extends {
            None => self.defaults.clone(),
            Some((base, at)) => {
                if chain.contains(&base.as_str()) {
                    chain.push(base);
                    return Err(Error::usage(format!(
                        "{at}: extends makes a cycle: {}",
                        chain.join(" → ")
                    )));
                }
                if !self.tables.contains_key(base) {
                    let hint = self
                        .closest(base, &[])
                        .map(|c| format!(" (did you mean {c:?}?)"))
                        .unwrap_or_default();
                    return Err(Error::usage(format!(
                        "{at}: extends {base:?}, which no file defines{hint}"
                    )));
                }
                self.resolve_in(base, chain)?
            }
        };
        Ok(overlay(&below, &table.entries))
    }
}

/// One `[targets.NAME]` table as the arguments it stands for.
#[derive(Debug)]
pub(crate) struct FileTarget {
    pub name: String,
    /// `--flag value` pairs (the engine first, as a positional).
    pub args: Vec<String>,
    /// Where each flag's key was written, and the table, for errors.
    places: BTreeMap<String, Place>,
    table: Place,
}

impl FileTarget {
    /// A resolved table as flags: the engine first (a positional, or
    /// `--engine` unless `engine_positional`), then `--key value` /
    /// `--key` for each entry.
    pub(crate) fn new(
        name: &str,
        table: Place,
        entries: &[Entry],
        engine_positional: bool,
    ) -> Self {
        let mut target = Self {
            name: name.to_string(),
            args: Vec::new(),
            places: BTreeMap::new(),
            table,
        };
        let mut engine = None;
        for e in entries {
            let flag = format!("--{}", e.key);
            target.places.insert(flag.clone(), e.place.clone());
            match &e.val {
                Val::One(v) if e.key == "engine" && engine_positional => engine = Some(v.clone()),
                Val::On => target.args.push(flag),
                Val::Off => {}
                Val::One(v) => target.args.extend([flag, v.clone()]),
                Val::Many(vs) => {
                    for v in vs {
                        target.args.extend([flag.clone(), v.clone()]);
                    }
                }
            }
        }
        if let Some(e) = engine {
            target.args.insert(0, e);
        }
        target
    }

    /// A clap error about this target, as one line naming the file and
    /// the line of the key it is about.
    pub(crate) fn error(&self, e: &clap::Error) -> Error {
        use clap::error::{ContextKind, ContextValue};
        let arg = match e.get(ContextKind::InvalidArg) {
            Some(ContextValue::String(s)) => Some(s.clone()),
            _ => None,
        };
        let place = arg
            .as_deref()
            .and_then(|a| a.split([' ', '=']).next())
            .and_then(|flag| self.places.get(flag))
            .unwrap_or(&self.table);
        let text = e.to_string();
        let first = text
            .lines()
            .next()
            .unwrap_or("invalid target")
            .trim_start_matches("error: ");
        Error::usage(format!("{place}: [targets.{}]: {first}", self.name))
    }
}

/// Reads `path` for `rdsconn proxy --config`: every target, resolved, in
/// name order.
pub(crate) fn read(path: &Path) -> Result<Vec<FileTarget>> {
    let loaded = load(path)?;
    if loaded.tables.is_empty() {
        return Err(Error::usage(format!(
            "{}: no [targets.NAME] table",
            path.display()
        )));
    }
    loaded
        .tables
        .values()
        .map(|t| {
            let entries = loaded.resolve(&t.name)?;
            Ok(FileTarget::new(&t.name, t.place.clone(), &entries, true))
        })
        .collect()
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
            let parsed =
                crate::cli::parse_from(words.map(Into::into).collect()).map_err(|e| t.error(&e))?;
            let crate::cli::Command::Proxy(target_args) = parsed.command else {
                return Err(Error::usage(format!(
                    "{}: [targets.{}]: not a proxy target",
                    t.table, t.name
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
    fn bases_and_defaults_are_under_the_table() {
        let f = write(concat!(
            "[defaults]\nregion = \"eu-west-1\"\niam = true\nport = 1\n",
            "[targets.prod]\nengine = \"postgres\"\ncluster = \"c\"\nuser = \"app\"\n",
            "[targets.prod-ro]\nextends = \"prod\"\nreader = true\nport = 2\n",
            "[targets.other]\nextends = \"prod-ro\"\nhost = \"h\"\nsecret = \"s\"\niam = false\n",
        ));
        let loaded = load(f.path()).unwrap();
        let keys = |name: &str| -> Vec<String> {
            loaded
                .resolve(name)
                .unwrap()
                .iter()
                .map(|e| format!("{}={}", e.key, e.val))
                .collect()
        };
        assert_eq!(
            keys("prod-ro"),
            [
                "iam=true",
                "region=\"eu-west-1\"",
                "cluster=\"c\"",
                "engine=\"postgres\"",
                "user=\"app\"",
                "port=\"2\"",
                "reader=true"
            ]
        );
        // A host replaces the base's cluster and reader; a secret its iam.
        assert_eq!(
            keys("other"),
            [
                "region=\"eu-west-1\"",
                "engine=\"postgres\"",
                "user=\"app\"",
                "port=\"2\"",
                "host=\"h\"",
                "secret=\"s\""
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
            (
                "[targets.a]\nextends = \"b\"\n[targets.b]\nextends = \"a\"\n",
                "cycle",
            ),
            (
                "[targets.a]\nextends = \"prd\"\n[targets.prod]\n",
                "did you mean \"prod\"",
            ),
            ("[targets.\"a b\"]\n", "target name"),
            (
                "[defaults]\nextends = \"a\"\n",
                "[defaults] takes flags only",
            ),
        ] {
            let f = write(text);
            let e = read(f.path()).unwrap_err().to_string();
            assert!(e.contains(want), "{text:?}: {e}");
        }
        let f = write("");
        assert!(
            read(f.path())
                .unwrap_err()
                .to_string()
                .contains("no [targets.NAME]")
        );
    }
}
