//! Named targets: `@NAME` on a command line stands for the flags of a
//! `[targets.NAME]` table (rdsconn's config file, or the project's
//! `.rdsconn.toml`), else of libpq's service `NAME` (`pg_service.conf`).
//! The command line is rewritten before it is parsed: the table's flags
//! first, then what was typed, so the one clap definition checks both and a
//! typed flag wins (an endpoint or login flag replaces every endpoint or
//! login key of the table). `service=NAME` and `PGSERVICE` name a libpq
//! service as psql takes them.
//!
//! Files: `$RDSCONN_CONFIG`, else `$XDG_CONFIG_HOME/rdsconn/config.toml`,
//! else `~/.config/rdsconn/config.toml`; then the first `.rdsconn.toml`
//! found from the current directory upward, whose tables replace the
//! user's of the same name.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use crate::config::{
    AUTH_KEYS, AUTH_QUALIFIERS, ENDPOINT_KEYS, ENDPOINT_QUALIFIERS, Entry, FileTarget, Loaded,
    Place,
};
use crate::error::{Error, Result};

/// The commands that take a target, by their canonical names.
const TARGET_COMMANDS: &[&str] = &[
    "mysql",
    "postgres",
    "check",
    "env",
    "exec",
    "token",
    "doctor",
    "proxy",
    "policy",
    "audit",
    "user create",
];

/// Flags that are not part of a target (what to do with it, not where it
/// is): never taken from a file.
const NOT_TARGET_KEYS: &[&str] = &[
    "help",
    "version",
    "output",
    "verbose",
    "config",
    "execute",
    "command",
    "file",
    "client",
    "info",
    "format",
    "shell",
    "password",
    "principal",
    "policy-name",
    "fail-on",
    "concurrency",
    "connect",
];

/// A command line with its `@NAME`s replaced.
#[derive(Debug, Default)]
pub struct Expanded {
    pub args: Vec<OsString>,
    /// For `-v`: where each value of a named target came from.
    pub notes: Vec<String>,
    /// Always shown: what a service file says that rdsconn does not use.
    pub warnings: Vec<String>,
    /// `check @A @B`: each name's own command line (its flags, then the
    /// typed flags).
    pub checks: Vec<(String, Vec<OsString>)>,
}

/// The files named targets come from, merged.
pub(crate) struct Sources {
    pub loaded: Loaded,
    pub files: Vec<PathBuf>,
}

/// The user's config file: `$RDSCONN_CONFIG` (which must exist), else the
/// XDG one if it exists.
fn user_file() -> Result<Option<PathBuf>> {
    if let Some(p) = std::env::var_os("RDSCONN_CONFIG").filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        if !p.exists() {
            return Err(Error::usage(format!(
                "RDSCONN_CONFIG names {}, which does not exist",
                p.display()
            )));
        }
        return Ok(Some(p));
    }
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|p| Path::new(p).is_absolute())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".config")));
    Ok(base
        .map(|b| b.join("rdsconn").join("config.toml"))
        .filter(|p| p.exists()))
}

/// The first `.rdsconn.toml` from the current directory upward.
fn project_file() -> Option<PathBuf> {
    let cwd = std::env::current_dir().ok()?;
    cwd.ancestors()
        .map(|d| d.join(".rdsconn.toml"))
        .find(|p| p.is_file())
}

/// Reads the user's and the project's files.
pub(crate) fn sources() -> Result<Sources> {
    let mut loaded = Loaded::default();
    let mut files = Vec::new();
    for file in [user_file()?, project_file()].into_iter().flatten() {
        loaded.merge(crate::config::load(&file)?);
        files.push(file);
    }
    Ok(Sources { loaded, files })
}

/// A named target's entries and what it came from.
pub(crate) struct Resolved {
    pub name: String,
    pub entries: Vec<Entry>,
    pub place: Place,
    pub service: bool,
    pub warnings: Vec<String>,
}

/// `name` from rdsconn's files, else from libpq's service file (only
/// there with `service_only`: `service=NAME`, `PGSERVICE`).
pub(crate) fn resolve(sources: &Sources, name: &str, service_only: bool) -> Result<Resolved> {
    if !service_only && let Some(table) = sources.loaded.tables.get(name) {
        let entries = sources.loaded.resolve(name)?;
        let keys = target_keys();
        for e in &entries {
            check_key(&keys, e)?;
        }
        return Ok(Resolved {
            name: name.to_string(),
            entries,
            place: table.place.clone(),
            service: false,
            warnings: Vec::new(),
        });
    }
    if let Some(service) = crate::pgservice::find(name)? {
        let (entries, warnings) = crate::pgservice::entries(&service)?;
        return Ok(Resolved {
            name: name.to_string(),
            entries,
            place: service.place,
            service: true,
            warnings,
        });
    }
    let services: Vec<String> = crate::pgservice::all()
        .into_iter()
        .map(|s| s.name)
        .collect();
    let hint = if service_only {
        None
    } else {
        sources.loaded.closest(name, &services)
    };
    let mut where_ = sources
        .files
        .iter()
        .map(|f| f.display().to_string())
        .collect::<Vec<_>>();
    where_.extend(
        crate::pgservice::files()
            .iter()
            .map(|f| f.display().to_string()),
    );
    let what = if service_only { "service" } else { "target" };
    let shown = if service_only {
        name.to_string()
    } else {
        format!("@{name}")
    };
    let mut e = Error::usage(format!(
        "unknown {what} {}{}",
        crate::text::Untrusted(&shown),
        hint.map(|h| format!(" (did you mean @{h}?)"))
            .unwrap_or_default()
    ));
    e = e.with_hint(format!("names come from {}", where_.join(", ")));
    Err(e)
}

/// Every long flag a target may set: those of the commands that take a
/// target, less what is not part of a target.
pub(crate) fn target_keys() -> BTreeSet<String> {
    let mut cmd = crate::cli::command();
    cmd.build();
    let mut keys = BTreeSet::new();
    for sub in cmd.get_subcommands() {
        if !TARGET_COMMANDS.contains(&sub.get_name()) {
            continue;
        }
        for arg in sub.get_arguments() {
            if let Some(long) = arg.get_long()
                && !NOT_TARGET_KEYS.contains(&long)
            {
                keys.insert(long.to_string());
            }
        }
    }
    keys.insert("engine".into());
    keys
}

/// An unknown key is an error naming its place, with the closest key.
pub(crate) fn check_key(keys: &BTreeSet<String>, e: &Entry) -> Result<()> {
    if keys.contains(&e.key) {
        return Ok(());
    }
    let close = keys
        .iter()
        .map(|k| (strsim::damerau_levenshtein(&e.key, k), k))
        .filter(|(d, _)| *d <= 2)
        .min()
        .map(|(_, k)| format!(" (did you mean {k}?)"))
        .unwrap_or_default();
    Err(Error::usage(format!(
        "{}: {}: unknown key {:?}{close}",
        e.place,
        e.from,
        crate::text::Untrusted(&e.key).to_string()
    )))
}

/// What a word of a command line is.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Word {
    /// A flag (by its long name, or `?NAME` when unknown) and how many
    /// words it spans (2 when its value is the next word).
    Flag(String, usize),
    Positional,
    Named(String),
    /// `--` and everything after it.
    Rest,
}

fn find_long<'a>(cmd: &'a clap::Command, long: &str) -> Option<&'a clap::Arg> {
    cmd.get_arguments().find(|a| {
        a.get_long() == Some(long) || a.get_all_aliases().is_some_and(|al| al.contains(&long))
    })
}

fn find_short(cmd: &clap::Command, c: char) -> Option<&clap::Arg> {
    cmd.get_arguments().find(|a| {
        a.get_short() == Some(c) || a.get_all_short_aliases().is_some_and(|al| al.contains(&c))
    })
}

/// The words of `words` as flags, positionals and `@NAME`s (one entry per
/// word index; a flag's value word is `None`).
fn classify(cmd: &clap::Command, words: &[OsString]) -> Vec<Option<Word>> {
    let mut out = vec![None; words.len()];
    let mut i = 0;
    while i < words.len() {
        let w = words[i].to_string_lossy();
        if w == "--" {
            out[i] = Some(Word::Rest);
            break;
        }
        let (word, span) = if let Some(long) = w.strip_prefix("--") {
            let (name, inline) = match long.split_once('=') {
                Some((n, _)) => (n, true),
                None => (long, false),
            };
            match find_long(cmd, name) {
                Some(a) => {
                    let span = if a.get_action().takes_values() && !inline {
                        2
                    } else {
                        1
                    };
                    (
                        Word::Flag(a.get_long().unwrap_or(name).to_string(), span),
                        span,
                    )
                }
                None => (Word::Flag(format!("?{name}"), 1), 1),
            }
        } else if w.len() > 1 && w.starts_with('-') {
            let chars: Vec<char> = w[1..].chars().collect();
            let mut found = (Word::Flag(format!("?{w}"), 1), 1);
            for (j, c) in chars.iter().enumerate() {
                let Some(a) = find_short(cmd, *c) else { break };
                let long = a.get_long().unwrap_or_default().to_string();
                if a.get_action().takes_values() {
                    let span = if j + 1 == chars.len() { 2 } else { 1 };
                    found = (Word::Flag(long, span), span);
                    break;
                }
                found = (Word::Flag(long, 1), 1);
            }
            found
        } else if let Some(name) = w.strip_prefix('@').filter(|n| !n.is_empty()) {
            (Word::Named(name.to_string()), 1)
        } else {
            (Word::Positional, 1)
        };
        out[i] = Some(word);
        i += span;
    }
    out
}

/// How a command takes its engine.
#[derive(Clone, Copy, PartialEq, Eq)]
enum EngineAt {
    /// It is the command (`mysql`, `postgres`).
    Command(&'static str),
    /// The first positional (`env`, `exec`, `proxy`).
    Positional,
    /// `--engine` (`check`, `doctor`, `token`).
    Flag,
}

fn engine_at(command: &str) -> EngineAt {
    match command {
        "mysql" => EngineAt::Command("mysql"),
        "postgres" => EngineAt::Command("postgres"),
        "env" | "exec" | "proxy" => EngineAt::Positional,
        _ => EngineAt::Flag,
    }
}

/// The engine a target names, spelled as rdsconn's commands are.
fn engine_of(value: &str) -> Option<&'static str> {
    match value {
        "mysql" | "mariadb" => Some("mysql"),
        "postgres" | "postgresql" | "psql" | "pg" => Some("postgres"),
        _ => None,
    }
}

/// The typed part of a command line, classified.
struct Typed<'a> {
    sub: &'a clap::Command,
    name: String,
    /// Index of the subcommand word in the whole command line.
    at: usize,
    words: Vec<OsString>,
    kinds: Vec<Option<Word>>,
}

impl Typed<'_> {
    fn positionals(&self) -> Vec<String> {
        self.kinds
            .iter()
            .zip(&self.words)
            .filter(|(k, _)| **k == Some(Word::Positional))
            .map(|(_, w)| w.to_string_lossy().into_owned())
            .collect()
    }

    fn names(&self) -> Vec<String> {
        self.kinds
            .iter()
            .filter_map(|k| match k {
                Some(Word::Named(n)) => Some(n.clone()),
                _ => None,
            })
            .collect()
    }

    /// The long names of the typed flags, with `engine` when it is typed
    /// and `host` / `database` for a positional URL / database name.
    fn keys(&self) -> BTreeSet<String> {
        let mut keys: BTreeSet<String> = self
            .kinds
            .iter()
            .filter_map(|k| match k {
                Some(Word::Flag(long, _)) => Some(long.clone()),
                _ => None,
            })
            .collect();
        let positionals = self.positionals();
        let mut rest = positionals.iter();
        match engine_at(&self.name) {
            EngineAt::Command(_) => {
                keys.insert("engine".into());
            }
            EngineAt::Positional => {
                if rest.next().is_some() {
                    keys.insert("engine".into());
                }
            }
            EngineAt::Flag => {}
        }
        if self.name == "user create" {
            // NAME (the new user), then the URL.
            if positionals.iter().skip(1).any(|p| p.contains("://")) {
                keys.insert("host".into());
            }
        } else if self.name != "check" {
            for p in rest {
                if p.contains("://") || (self.name != "mysql" && self.name != "postgres") {
                    keys.insert("host".into());
                } else if !p.contains('=') {
                    keys.insert("database".into());
                }
            }
        }
        keys
    }

    /// The typed words without `@NAME`s, `service=NAME` (and, for
    /// `check`'s per-name command lines, without its URLs).
    fn rest(&self, drop_positionals: bool) -> Vec<OsString> {
        self.words
            .iter()
            .zip(&self.kinds)
            .filter(|(w, k)| match k {
                Some(Word::Named(_)) => false,
                Some(Word::Positional) => {
                    !drop_positionals && !w.to_string_lossy().starts_with("service=")
                }
                _ => true,
            })
            .map(|(w, _)| w.clone())
            .collect()
    }
}

/// Finds the subcommand in `args` (after the global flags).
fn typed<'a>(root: &'a clap::Command, args: &[OsString]) -> Option<Typed<'a>> {
    let words = args.get(1..)?;
    let kinds = classify(root, words);
    let mut at = kinds.iter().position(|k| *k == Some(Word::Positional))? + 1;
    let mut sub = root.find_subcommand(args[at].to_str()?)?;
    let mut name = sub.get_name().to_string();
    // `user create`: the target is create's.
    if name == "user" {
        at += 1;
        sub = sub.find_subcommand(args.get(at)?.to_str()?)?;
        name = format!("user {}", sub.get_name());
    }
    if !TARGET_COMMANDS.contains(&name.as_str()) {
        return None;
    }
    let words = args[at + 1..].to_vec();
    let kinds = classify(sub, &words);
    let t = Typed {
        sub,
        name,
        at,
        words,
        kinds,
    };
    // `proxy wait`, `proxy shutdown`: no target.
    if t.name == "proxy"
        && t.positionals()
            .first()
            .is_some_and(|p| sub.find_subcommand(p).is_some())
    {
        return None;
    }
    Some(t)
}

/// Replaces `@NAME` (and `service=NAME`, `PGSERVICE`) in `args`.
pub fn expand(args: Vec<OsString>) -> Result<Expanded> {
    // Most command lines name no target: they do not pay for building
    // the parser a second time at start-up.
    if !might_name_a_target(&args) {
        return Ok(Expanded {
            args,
            ..Expanded::default()
        });
    }
    let mut root = crate::cli::command();
    root.build();
    let Some(t) = typed(&root, &args) else {
        return Ok(Expanded {
            args,
            ..Expanded::default()
        });
    };
    let mut names: Vec<(String, bool)> = t.names().into_iter().map(|n| (n, false)).collect();
    if names.is_empty() {
        if let Some(service) = service_of(&t) {
            names.push((service, true));
        } else {
            check_not_a_name(&t)?;
            return Ok(Expanded {
                args,
                ..Expanded::default()
            });
        }
    }
    if names.len() > 1 && t.name != "check" {
        return Err(Error::usage(format!(
            "one @NAME per command (rdsconn check takes several); this one has {}",
            names.len()
        )));
    }
    let sources = sources()?;
    let typed_keys = t.keys();
    let mut out = Expanded::default();
    let head: Vec<OsString> = args[..=t.at].to_vec();
    for (name, service_only) in &names {
        let resolved = resolve(&sources, name, *service_only)?;
        let words = flags_for(&t, &resolved, &typed_keys, &mut out.notes)?;
        out.warnings.extend(resolved.warnings);
        let mut line = head.clone();
        line.extend(words.into_iter().map(OsString::from));
        if t.name == "check" {
            line.extend(t.rest(true));
            out.checks.push((format!("@{name}"), line));
        } else {
            line.extend(t.rest(false));
            out.args = line;
        }
    }
    if t.name == "check" {
        out.args = head;
        out.args.extend(t.rest(false));
    }
    Ok(out)
}

/// Parses each `check @NAME` command line and gives it to the parsed
/// `check`.
pub fn attach(
    cli: &mut crate::cli::Cli,
    checks: Vec<(String, Vec<OsString>)>,
) -> std::result::Result<(), clap::Error> {
    use crate::cli::Command;
    let Command::Check(args) = &mut cli.command else {
        return Ok(());
    };
    for (name, line) in checks {
        let parsed = crate::cli::parse_from(line)?;
        if let Command::Check(one) = parsed.command {
            args.named.push(crate::cli::NamedCheck {
                name,
                global: parsed.global,
                args: one,
            });
        }
    }
    Ok(())
}

/// Logs where each value came from (`-v`) and shows the warnings.
pub fn report(expanded: &Expanded) {
    for note in &expanded.notes {
        tracing::info!("{note}");
    }
    for warning in &expanded.warnings {
        crate::output::warn(warning);
    }
}

/// Whether `args` may hold `@NAME`, `service=NAME`, rely on `PGSERVICE`,
/// or be a psql/mysql command whose database name could be a target's.
fn might_name_a_target(args: &[OsString]) -> bool {
    std::env::var_os("PGSERVICE").is_some_and(|v| !v.is_empty())
        || args.iter().skip(1).any(|a| {
            let a = a.to_string_lossy();
            a.starts_with('@')
                || a.starts_with("service=")
                || matches!(a.as_ref(), "mysql" | "mariadb" | "postgres" | "psql" | "pg")
        })
}

/// `service=NAME` as the target of a PostgreSQL command, else
/// `PGSERVICE` when nothing else names one.
fn service_of(t: &Typed<'_>) -> Option<String> {
    let positionals = t.positionals();
    let engine = match engine_at(&t.name) {
        EngineAt::Command(e) => Some(e),
        EngineAt::Positional => positionals.first().and_then(|p| engine_of(p)),
        EngineAt::Flag => None,
    };
    if engine != Some("postgres") {
        return None;
    }
    if let Some(s) = positionals.iter().find_map(|p| p.strip_prefix("service=")) {
        return Some(s.to_string());
    }
    let keys = t.keys();
    let named = ENDPOINT_KEYS.iter().any(|k| keys.contains(*k)) || keys.contains("secret");
    if named {
        return None;
    }
    std::env::var("PGSERVICE").ok().filter(|s| !s.is_empty())
}

/// `rdsconn psql prod` where `prod` is a target name and nothing names an
/// endpoint: psql would take `prod` as the database; say which was meant.
fn check_not_a_name(t: &Typed<'_>) -> Result<()> {
    if !matches!(engine_at(&t.name), EngineAt::Command(_)) {
        return Ok(());
    }
    let keys = t.keys();
    if ENDPOINT_KEYS.iter().any(|k| keys.contains(*k))
        || keys.contains("secret")
        || std::env::var_os("PGHOST").is_some()
        || std::env::var_os("MYSQL_HOST").is_some()
    {
        return Ok(());
    }
    let Some(db) = t
        .positionals()
        .into_iter()
        .find(|p| !p.contains("://") && !p.contains('='))
    else {
        return Ok(());
    };
    // Files that cannot be read do not stop a command that needs none.
    let Ok(sources) = sources() else {
        return Ok(());
    };
    if let Some(table) = sources.loaded.tables.get(&db) {
        return Err(Error::usage(format!(
            "{db:?} is a database name here and also the target defined at {}",
            table.place
        ))
        .with_hint(format!(
            "for the target write @{db}; for the database name add -h HOST (or --database {db} with @TARGET)"
        )));
    }
    Ok(())
}

/// The flags target `r` gives `t`'s command: its entries less those the
/// typed flags replace, less keys the command does not have; each type
/// checked and each value checked by the command's own parser.
fn flags_for(
    t: &Typed<'_>,
    r: &Resolved,
    typed_keys: &BTreeSet<String>,
    notes: &mut Vec<String>,
) -> Result<Vec<String>> {
    let replaced = |group: &[&str]| group.iter().any(|k| typed_keys.contains(*k));
    let (endpoint, auth) = (replaced(ENDPOINT_KEYS), replaced(AUTH_KEYS));
    let mut kept: Vec<Entry> = Vec::new();
    for e in &r.entries {
        let k = e.key.as_str();
        let by_group = (endpoint
            && (ENDPOINT_KEYS.contains(&k) || ENDPOINT_QUALIFIERS.contains(&k)))
            || (auth && (AUTH_KEYS.contains(&k) || AUTH_QUALIFIERS.contains(&k)));
        if k == "engine" {
            let crate::config::Val::One(v) = &e.val else {
                return Err(Error::usage(format!(
                    "{}: engine = {}: expected \"mysql\" or \"postgres\"",
                    e.place, e.val
                )));
            };
            let Some(engine) = engine_of(v) else {
                return Err(Error::usage(format!(
                    "{}: engine = {v:?}: expected \"mysql\" or \"postgres\"",
                    e.place
                )));
            };
            if let EngineAt::Command(mine) = engine_at(&t.name)
                && mine != engine
            {
                return Err(Error::usage(format!(
                    "@{} is a {engine} target ({}); this is rdsconn {mine}",
                    r.name, e.place
                ))
                .with_hint(format!("rdsconn {engine} @{}", r.name)));
            }
            if matches!(engine_at(&t.name), EngineAt::Command(_)) {
                continue;
            }
            if typed_keys.contains(k) {
                notes.push(format!(
                    "@{}: engine from the command line ({} not used)",
                    r.name, e.place
                ));
            } else {
                notes.push(format!("@{}: engine {engine} from {}", r.name, e.place));
                kept.push(e.clone());
            }
            continue;
        }
        if typed_keys.contains(k) || by_group {
            notes.push(format!(
                "@{}: {k} from the command line ({} not used)",
                r.name, e.place
            ));
            continue;
        }
        // In `user create`, --iam is the new user's login method, not how
        // rdsconn logs in.
        if t.name == "user create" && k == "iam" {
            notes.push(format!(
                "@{}: iam ({}) is the new user's method in rdsconn user create; not used",
                r.name, e.place
            ));
            continue;
        }
        let Some(arg) = find_long(t.sub, k) else {
            notes.push(format!(
                "@{}: {k} ({}) is not a flag of rdsconn {}; not used",
                r.name, e.place, t.name
            ));
            continue;
        };
        check_type(arg, e)?;
        notes.push(format!(
            "@{}: --{k} {} from {} {}",
            r.name,
            shown(e),
            e.place,
            e.from
        ));
        kept.push(e.clone());
    }
    let target = FileTarget::new(
        &r.name,
        r.place.clone(),
        &kept,
        engine_at(&t.name) == EngineAt::Positional,
    );
    check_values(t, &target)?;
    Ok(target.args)
}

/// A value as `-v` shows it (a secret's name is not a secret; passwords
/// never reach a file).
fn shown(e: &Entry) -> String {
    crate::text::Untrusted(&e.val.to_string()).to_string()
}

/// `true` for a switch, a value for a flag that takes one, several only
/// for a repeatable flag.
fn check_type(arg: &clap::Arg, e: &Entry) -> Result<()> {
    use crate::config::Val;
    let takes = arg.get_action().takes_values();
    let many = matches!(arg.get_action(), clap::ArgAction::Append);
    let bad = match &e.val {
        Val::On | Val::Off => takes,
        Val::One(_) => !takes,
        Val::Many(_) => !many,
    };
    if bad {
        let want = if !takes {
            "true or false"
        } else if many {
            "a value or a list of values"
        } else {
            "a value (a string or a whole number)"
        };
        return Err(Error::usage(format!(
            "{}: {}: {} = {}: expected {want}",
            e.place, e.from, e.key, e.val
        )));
    }
    Ok(())
}

/// The target's flags parsed alone by the command's parser: a bad value
/// or two flags that conflict is an error naming the file and line.
fn check_values(t: &Typed<'_>, target: &FileTarget) -> Result<()> {
    use clap::error::ErrorKind;
    let line = std::iter::once("rdsconn".to_string()).chain(target.args.iter().cloned());
    let Err(e) = t.sub.clone().try_get_matches_from(line) else {
        return Ok(());
    };
    match e.kind() {
        ErrorKind::InvalidValue
        | ErrorKind::ValueValidation
        | ErrorKind::ArgumentConflict
        | ErrorKind::UnknownArgument
        | ErrorKind::TooManyValues
        | ErrorKind::WrongNumberOfValues => Err(target.error(&e)),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<OsString> {
        s.split_whitespace().map(OsString::from).collect()
    }

    #[test]
    fn words_are_told_apart_as_clap_would() {
        let mut root = crate::cli::command();
        root.build();
        let line = words("rdsconn -v --region eu-west-1 psql -U app -dapp -c @x @prod db -- @y");
        let t = typed(&root, &line).unwrap();
        assert_eq!(t.name, "postgres");
        assert_eq!(t.names(), ["prod"]);
        assert_eq!(t.positionals(), ["db"]);
        let keys: Vec<String> = t.keys().into_iter().collect();
        assert_eq!(keys, ["database", "engine", "execute", "user"]);
        assert_eq!(t.rest(false), words("-U app -dapp -c @x db -- @y"));
        let line = words("rdsconn env postgres @a -- x");
        let t = typed(&root, &line).unwrap();
        assert_eq!(t.positionals(), ["postgres"]);
        assert!(t.keys().contains("engine"));
        assert!(typed(&root, &words("rdsconn ca show")).is_none());
        assert!(typed(&root, &words("rdsconn proxy wait")).is_none());
    }
}
