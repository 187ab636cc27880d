//! The arguments a user passes to a native client after `--` (and to a
//! known client under `rdsconn exec`), checked before the client starts:
//! an option that would point the client elsewhere or weaken its TLS would
//! hand rdsconn's password or token to a server nobody verified, or send
//! it in clear. Such an option is refused (exit 2) naming it.
//!
//! Both client families accept unambiguous prefixes of long options
//! (`--ho` for `--host`, `getopt_long` and MySQL's `my_getopt` alike), MySQL
//! also `--skip-`/`--disable-`/`--enable-`/`--loose-` forms: a long option
//! is refused when it could mean one of the redirecting options.

use std::ffi::OsString;

use crate::error::{Error, Result};

/// Which option syntax a client speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Family {
    /// psql and the other libpq tools (`pg_dump`, pgbench…).
    Libpq,
    /// mysql, mariadb and their tools (mysqldump…).
    Mysql,
}

impl Family {
    /// The family of a program by its file name, if it is a known client.
    pub(crate) fn of_program(program: &std::path::Path) -> Option<Self> {
        let name = program.file_name()?.to_str()?;
        match name {
            "psql" | "pg_dump" | "pg_dumpall" | "pg_restore" | "pgbench" | "pg_isready"
            | "vacuumdb" | "reindexdb" | "clusterdb" | "createdb" | "dropdb" => Some(Self::Libpq),
            "mysql" | "mariadb" | "mysqldump" | "mariadb-dump" | "mysqladmin" | "mariadb-admin"
            | "mysqlcheck" | "mariadb-check" | "mysqlimport" | "mariadb-import" | "mysqlshow"
            | "mariadb-show" | "mysqlslap" | "mariadb-slap" => Some(Self::Mysql),
            _ => None,
        }
    }

    /// Long options that redirect the connection or change its TLS.
    fn redirecting(self) -> &'static [&'static str] {
        match self {
            Self::Libpq => &["host", "port"],
            Self::Mysql => &[
                "host",
                "port",
                "socket",
                "protocol",
                "pipe",
                "shared-memory-base-name",
                "ssl",
                "ssl-mode",
                "ssl-ca",
                "ssl-capath",
                "ssl-cert",
                "ssl-cipher",
                "ssl-key",
                "ssl-crl",
                "ssl-crlpath",
                "ssl-verify-server-cert",
                "ssl-fp",
                "ssl-fplist",
                "tls-version",
                "defaults-file",
                "defaults-extra-file",
                "defaults-group-suffix",
                "no-defaults",
                "login-path",
                "print-defaults",
            ],
        }
    }

    /// Short options that redirect the connection.
    fn redirecting_short(self) -> &'static [char] {
        match self {
            Self::Libpq => &['h', 'p'],
            Self::Mysql => &['h', 'P', 'S', 'W'],
        }
    }

    /// Short options that take a value (in the same argument or the next).
    fn short_with_value(self) -> &'static [char] {
        match self {
            Self::Libpq => &[
                'c', 'd', 'f', 'h', 'L', 'o', 'p', 'P', 'R', 'T', 'U', 'v', 'F',
            ],
            Self::Mysql => &['D', 'e', 'h', 'P', 'S', 'u'],
        }
    }

    /// Long options that take a value in the next argument when not given
    /// with `=` (the ones whose value must not be read as an option).
    fn long_with_value(self) -> &'static [&'static str] {
        match self {
            Self::Libpq => &[
                "command",
                "dbname",
                "file",
                "host",
                "log-file",
                "output",
                "port",
                "pset",
                "record-separator",
                "table-attr",
                "username",
                "set",
                "variable",
                "field-separator",
            ],
            Self::Mysql => &[
                "database",
                "execute",
                "host",
                "port",
                "socket",
                "user",
                "init-command",
                "pager",
                "tee",
                "delimiter",
                "default-character-set",
                "protocol",
            ],
        }
    }
}

/// Checks `args` (what follows `--`) for `family`.
pub(crate) fn check(family: Family, args: &[OsString]) -> Result<()> {
    let mut positional = 0;
    let mut i = 0;
    while i < args.len() {
        let arg = args[i].to_string_lossy();
        i += 1;
        if arg == "--" {
            // Everything after is positional.
            for rest in &args[i..] {
                positional += 1;
                check_positional(family, positional, &rest.to_string_lossy())?;
            }
            break;
        }
        if let Some(long) = arg.strip_prefix("--") {
            let (name, value) = match long.split_once('=') {
                Some((n, v)) => (n, Some(v.to_string())),
                None => (long, None),
            };
            let value = match value {
                Some(v) => Some(v),
                None if takes_value(family, name) => {
                    let v = args.get(i).map(|a| a.to_string_lossy().into_owned());
                    i += 1;
                    v
                }
                None => None,
            };
            check_long(family, name, value.as_deref(), &arg)?;
        } else if let Some(cluster) = arg.strip_prefix('-').filter(|c| !c.is_empty()) {
            let chars = cluster.char_indices();
            for (at, c) in chars {
                if family.redirecting_short().contains(&c) {
                    return Err(refused(&format!("-{c}")));
                }
                if family.short_with_value().contains(&c) {
                    let attached = &cluster[at + c.len_utf8()..];
                    let value = if attached.is_empty() {
                        let v = args.get(i).map(|a| a.to_string_lossy().into_owned());
                        i += 1;
                        v
                    } else {
                        Some(attached.to_string())
                    };
                    check_short_value(family, c, value.as_deref())?;
                    break;
                }
            }
        } else {
            positional += 1;
            check_positional(family, positional, &arg)?;
        }
    }
    Ok(())
}

/// A long option's name as the client reads it: MySQL's `loose-` and
/// boolean prefixes removed.
fn base_name(family: Family, name: &str) -> String {
    let mut name = name.to_ascii_lowercase().replace('_', "-");
    if family == Family::Mysql {
        if let Some(rest) = name.strip_prefix("loose-") {
            name = rest.to_string();
        }
        for prefix in ["skip-", "disable-", "enable-"] {
            if let Some(rest) = name.strip_prefix(prefix) {
                name = rest.to_string();
                break;
            }
        }
    }
    name
}

/// The long options `name` could stand for (itself, or as a prefix).
fn could_mean<'a>(name: &str, options: &'a [&'a str]) -> impl Iterator<Item = &'a str> {
    let name = name.to_string();
    options
        .iter()
        .copied()
        .filter(move |o| !name.is_empty() && o.starts_with(name.as_str()))
}

fn takes_value(family: Family, name: &str) -> bool {
    let base = base_name(family, name);
    could_mean(&base, family.long_with_value()).next().is_some()
}

fn check_long(family: Family, name: &str, value: Option<&str>, typed: &str) -> Result<()> {
    let base = base_name(family, name);
    if let Some(option) = could_mean(&base, family.redirecting()).next() {
        let shown = typed.split('=').next().unwrap_or(typed);
        return Err(refused(&if shown.trim_start_matches('-') == option {
            shown.to_string()
        } else {
            format!("{shown} (--{option})")
        }));
    }
    match family {
        Family::Libpq if could_mean(&base, &["dbname"]).next().is_some() => {
            check_database(value, &format!("--{name}"))
        }
        Family::Libpq if could_mean(&base, &["command"]).next().is_some() => {
            check_command(value, &format!("--{name}"))
        }
        _ => Ok(()),
    }
}

fn check_short_value(family: Family, option: char, value: Option<&str>) -> Result<()> {
    match (family, option) {
        (Family::Libpq, 'd') => check_database(value, "-d"),
        (Family::Libpq, 'c') => check_command(value, "-c"),
        _ => Ok(()),
    }
}

/// psql's first positional argument is the database, which may be a
/// connection string; the second is the user.
fn check_positional(family: Family, n: usize, value: &str) -> Result<()> {
    if family == Family::Libpq && n == 1 {
        return check_database(Some(value), "the database argument");
    }
    Ok(())
}

/// Connection-string keywords that send the connection elsewhere or
/// change its TLS; the others (`dbname`, `user`, `application_name`…)
/// may be given.
const CONNINFO_REDIRECTING: [&str; 15] = [
    "host",
    "hostaddr",
    "port",
    "service",
    "servicefile",
    "passfile",
    "sslmode",
    "requiressl",
    "sslrootcert",
    "sslcert",
    "sslkey",
    "sslcrl",
    "sslcrldir",
    "sslsni",
    "sslnegotiation",
];

/// A libpq database name may be a connection string or a URL, which
/// would replace rdsconn's host, port and TLS settings.
fn check_database(value: Option<&str>, what: &str) -> Result<()> {
    let Some(value) = value else { return Ok(()) };
    let lower = value.trim_start().to_ascii_lowercase();
    if lower.starts_with("postgres://") || lower.starts_with("postgresql://") {
        return Err(Error::usage(format!(
            "{what} is a URL: after -- it would replace the endpoint and TLS settings rdsconn verified"
        ))
        .with_hint("give rdsconn the URL (rdsconn psql postgres://USER@HOST/DB), or the database name with -d"));
    }
    if let Some(key) = conninfo_keywords(value).first() {
        return Err(Error::usage(format!(
            "{what} sets {key}=: after -- it would send rdsconn's password or token to a server rdsconn did not verify, or without TLS"
        ))
        .with_hint("give rdsconn the endpoint (-h/--via) and --tls; after -- only the database name"));
    }
    Ok(())
}

/// The redirecting keywords set in a libpq connection string. Any
/// `KEYWORD =` at a word start counts, quoted or not: a string libpq would
/// reject costs nothing to refuse, and one it accepts is never let through.
fn conninfo_keywords(s: &str) -> Vec<&'static str> {
    let lower = s.to_ascii_lowercase();
    let bytes = lower.as_bytes();
    let mut found = Vec::new();
    for key in CONNINFO_REDIRECTING {
        let mut from = 0;
        while let Some(at) = lower[from..].find(key) {
            let start = from + at;
            let end = start + key.len();
            from = end;
            let word_start = start == 0 || !is_key_char(bytes[start - 1]);
            let rest = lower[end..].trim_start();
            if word_start && rest.starts_with('=') {
                found.push(key);
                break;
            }
        }
    }
    found
}

fn is_key_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// psql runs backslash commands given with -c: `\connect` / `\c` would
/// reconnect with the password rdsconn handed over.
fn check_command(value: Option<&str>, what: &str) -> Result<()> {
    let Some(value) = value else { return Ok(()) };
    let reconnects = value.split('\\').skip(1).any(|after| {
        let word: String = after
            .chars()
            .take_while(char::is_ascii_alphabetic)
            .collect();
        word == "c" || word == "connect"
    });
    if reconnects {
        return Err(Error::usage(format!(
            "{what} runs \\connect: it would hand rdsconn's password or token to another connection rdsconn did not verify"
        ))
        .with_hint("run one rdsconn psql per database"));
    }
    Ok(())
}

fn refused(option: &str) -> Error {
    Error::usage(format!(
        "{option} after --: rdsconn verified the endpoint and sets the connection and TLS options itself; another host, port, socket or TLS setting would receive the password or token unverified"
    ))
    .with_hint("give the endpoint to rdsconn (-h, -P/-p, --via, --tls); after -- only the client's own options")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<OsString> {
        list.iter().map(OsString::from).collect()
    }

    fn refused_for(family: Family, list: &[&str]) -> bool {
        check(family, &args(list)).is_err()
    }

    #[test]
    fn psql_redirections_are_refused() {
        for bad in [
            &["-d", "dbname=x sslmode=disable"][..],
            &["-d", "postgresql:///x?sslmode=disable"],
            &["--dbname=host=evil dbname=x"],
            &["--dbn", "hostaddr=10.0.0.1"],
            &["dbname='x y' port=1"],
            &["-h", "evil"],
            &["-hevil"],
            &["-Ath", "evil"],
            &["--host=evil"],
            &["--ho", "evil"],
            &["-p", "5433"],
            &["--port=1"],
            &["-c", "\\c host=evil"],
            &["-Atc", "SELECT 1; \\connect postgres"],
            &["-c", "\\connect x"],
            &["service=prod"],
            &["-X", "--", "host=evil"],
            &["-d", "  PostgreSQL://u@evil/db"],
            &["appdb host=evil"],
            &["-d", "dbname = x  SSLMODE = disable"],
        ] {
            assert!(refused_for(Family::Libpq, bad), "{bad:?}");
        }
        for good in [
            &["-At", "-c", "SELECT 1"][..],
            &["-d", "otherdb"],
            &["-d", "dbname=otherdb application_name=x"],
            &["-d", "dbname=x application_name=myhost"],
            &["-v", "ON_ERROR_STOP=1", "-f", "x.sql"],
            &["-c", "SELECT '-h' AS x"],
            &["-c", "SELECT 'a\\b'"],
            &["otherdb", "otheruser"],
            &["--csv", "-X", "--set=X=1"],
            &["-P", "pager=off"],
            &["-U", "someone"],
            &["-W"],
        ] {
            assert!(!refused_for(Family::Libpq, good), "{good:?}");
        }
    }

    #[test]
    fn mysql_redirections_and_tls_downgrades_are_refused() {
        for bad in [
            &["-h", "evil"][..],
            &["-hevil"],
            &["-NBhevil"],
            &["-P3307"],
            &["-S", "/tmp/x.sock"],
            &["--host=evil"],
            &["--ho=evil"],
            &["--port", "1"],
            &["--skip-ssl"],
            &["--ssl=0"],
            &["--disable-ssl"],
            &["--loose-skip-ssl"],
            &["--ssl-mode=DISABLED"],
            &["--skip-ssl-verify-server-cert"],
            &["--ssl-ca=/tmp/evil.pem"],
            &["--protocol=TCP"],
            &["--defaults-file=/tmp/x.cnf"],
            &["--no-defaults"],
            &["--print-defaults"],
            &["--SSL"],
        ] {
            assert!(refused_for(Family::Mysql, bad), "{bad:?}");
        }
        for good in [
            &["-N", "-B", "-e", "SELECT 1"][..],
            &["-NBe", "SELECT -1"],
            &["-e", "-h"],
            &["--execute", "--host"],
            &["--skip-column-names", "--batch"],
            &["-D", "otherdb"],
            &["otherdb"],
            &["--silent", "-vvv"],
            &["--init-command=SET x=1"],
        ] {
            assert!(!refused_for(Family::Mysql, good), "{good:?}");
        }
    }

    #[test]
    fn known_clients_by_name() {
        use std::path::Path;
        assert_eq!(
            Family::of_program(Path::new("/usr/bin/psql")),
            Some(Family::Libpq)
        );
        assert_eq!(
            Family::of_program(Path::new("pg_dump")),
            Some(Family::Libpq)
        );
        assert_eq!(
            Family::of_program(Path::new("mariadb")),
            Some(Family::Mysql)
        );
        assert_eq!(
            Family::of_program(Path::new("mysqldump")),
            Some(Family::Mysql)
        );
        assert_eq!(Family::of_program(Path::new("sh")), None);
    }
}
