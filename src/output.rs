//! Rendering for stdout (text tables, JSON) and warnings for stderr.
//!
//! This is the only module that writes to stdout, so that `--output json`
//! and "only the token on stdout" hold by construction. A closed pipe
//! (`rdsconn ca show | head`) ends output quietly instead of failing.

use std::fmt::Write as _;
use std::io::{self, IsTerminal, Write};

use serde::Serialize;
use serde_json::Value;

use crate::cli::OutputFormat;
use crate::engine::{ResultSet, SessionInfo};
use crate::error::{Category, Error, Result, ResultExt};

/// The outcome of one check, one stage or one target in `check` and
/// `doctor` reports; the JSON names are part of the interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Status {
    Ok,
    Warn,
    Fail,
    Skipped,
    /// Something doctor cannot evaluate itself (an IAM policy), with what
    /// it must allow.
    NotChecked,
    /// Ctrl-C or SIGTERM came before the target's result.
    Interrupted,
}

impl Status {
    /// The text report's column.
    pub(crate) const fn label(self) -> &'static str {
        match self {
            Self::Ok => "OK",
            Self::Warn => "WARN",
            Self::Fail => "FAIL",
            Self::Skipped => "SKIP",
            Self::NotChecked => "INFO",
            Self::Interrupted => "INTERRUPTED",
        }
    }
}

/// The result sets, or those completed before the failing statement and
/// then the error.
pub(crate) fn print_outcome(
    format: OutputFormat,
    done: std::result::Result<Vec<ResultSet>, crate::engine::QueryError>,
) -> Result<()> {
    match done {
        Ok(sets) => print_results(format, &sets),
        Err(mut e) => {
            let completed = std::mem::take(&mut e.completed);
            if !completed.is_empty() {
                print_results(format, &completed)?;
            }
            Err(Error::from(e))
        }
    }
}

/// Writes `bytes` to stdout as they are.
pub(crate) fn raw(bytes: &[u8]) -> Result<()> {
    let mut out = io::stdout().lock();
    finish(out.write_all(bytes).and_then(|()| out.flush()))
}

/// Writes `text` and a newline (unless it already ends with one).
pub(crate) fn line(text: &str) -> Result<()> {
    let mut out = io::stdout().lock();
    let nl: &[u8] = if text.ends_with('\n') { b"" } else { b"\n" };
    finish(
        out.write_all(text.as_bytes())
            .and_then(|()| out.write_all(nl))
            .and_then(|()| out.flush()),
    )
}

/// Writes `value` as pretty JSON and a newline.
pub(crate) fn json<T: Serialize + ?Sized>(value: &T) -> Result<()> {
    let mut text = serde_json::to_string_pretty(value).category(Category::Runtime)?;
    text.push('\n');
    raw(text.as_bytes())
}

/// Writes text or JSON depending on `format`.
pub(crate) fn emit<T: Serialize + ?Sized>(
    format: OutputFormat,
    value: &T,
    text: impl FnOnce() -> String,
) -> Result<()> {
    match format {
        OutputFormat::Json => json(value),
        OutputFormat::Text => line(&text()),
    }
}

fn finish(result: io::Result<()>) -> Result<()> {
    match result {
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        other => other.map_err(|e| Error::new(Category::Runtime, e).context("writing to stdout")),
    }
}

/// Prints `warning: MSG` on stderr.
pub(crate) fn warn(msg: impl std::fmt::Display) {
    let msg = msg.to_string();
    let _ = writeln!(
        io::stderr().lock(),
        "warning: {}",
        crate::text::Untrusted(&msg)
    );
}

/// A plain line on stderr (a summary that must not mix into stdout).
pub(crate) fn note(msg: impl std::fmt::Display) {
    let msg = msg.to_string();
    let _ = writeln!(io::stderr().lock(), "{}", crate::text::Untrusted(&msg));
}

/// Whether stderr is a terminal (for progress output).
pub(crate) fn stderr_is_tty() -> bool {
    io::stderr().is_terminal()
}

/// Rows for a person or a script: an aligned table with a header when
/// stdout is a terminal, else tab-separated rows without one. Cells are
/// escaped (they hold server errors and API names): a cell is one line
/// with no tab in it.
pub(crate) fn grid(header: &[&str], rows: &[Vec<String>]) -> String {
    let tty = io::stdout().is_terminal();
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            r.iter()
                .map(|c| crate::text::escape(c).into_owned())
                .collect()
        })
        .collect();
    let rows = &rows;
    if tty {
        table(header, rows)
    } else {
        // Tab-separated with the header line, as `-c` / `-e` results.
        std::iter::once(header.join("\t"))
            .chain(rows.iter().map(|r| r.join("\t")))
            .fold(String::new(), |mut out, line| {
                out.push_str(&line);
                out.push('\n');
                out
            })
    }
}

/// Left-aligned columns separated by two spaces; the last column is not
/// padded. Widths count characters, not bytes.
pub(crate) fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let header: Vec<String> = header.iter().map(|h| (*h).to_string()).collect();
    for row in std::iter::once(&header).chain(rows) {
        let last = row.len().saturating_sub(1);
        for (i, cell) in row.iter().enumerate() {
            if i == last {
                out.push_str(cell);
            } else {
                let pad = widths[i] - cell.chars().count();
                out.push_str(cell);
                out.extend(std::iter::repeat_n(' ', pad + 2));
            }
        }
        out.push('\n');
    }
    out
}

/// SQL results (`-e`/`-c`) and session details (`--info`).
const NULL_TEXT: &str = "NULL";

pub(crate) fn print_results(format: OutputFormat, sets: &[ResultSet]) -> Result<()> {
    match format {
        OutputFormat::Json => json(&serde_json::json!({
            "results": sets.iter().map(json_set).collect::<Vec<_>>()
        })),
        OutputFormat::Text => raw(results_text(sets, std::io::stdout().is_terminal()).as_bytes()),
    }
}

/// Tables on a terminal, else tab-separated lines with a header; only the
/// statements that return rows print.
fn results_text(sets: &[ResultSet], tty: bool) -> String {
    let mut text = String::new();
    for (i, set) in sets.iter().filter(|s| !s.columns.is_empty()).enumerate() {
        let names = set.columns.iter().map(|c| c.name.as_str());
        if tty {
            if i > 0 {
                text.push('\n');
            }
            let rows: Vec<Vec<String>> = set
                .rows
                .iter()
                .map(|r| {
                    r.iter()
                        .map(|v| v.clone().unwrap_or_else(|| NULL_TEXT.into()))
                        .collect()
                })
                .collect();
            text.push_str(&table(&names.collect::<Vec<_>>(), &rows));
            let _ = writeln!(
                text,
                "({} row{})",
                set.rows.len(),
                if set.rows.len() == 1 { "" } else { "s" }
            );
        } else {
            text.push_str(&tsv_line(names.map(Some)));
            for row in &set.rows {
                text.push_str(&tsv_line(row.iter().map(Option::as_deref)));
            }
        }
    }
    text
}

/// One statement's result: `{"columns":[…],"types":[…],"rows":[[…]],
/// "affected":n|null}`, values typed by their column (see
/// [`crate::engine::Kind::json`]).
fn json_set(set: &ResultSet) -> Value {
    let rows: Vec<Value> = set
        .rows
        .iter()
        .map(|row| {
            Value::Array(
                set.columns
                    .iter()
                    .zip(row)
                    .map(|(c, v)| c.kind.json(v.as_deref()))
                    .collect(),
            )
        })
        .collect();
    serde_json::json!({
        "columns": set.columns.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(),
        "types": set.columns.iter().map(|c| c.type_name.as_str()).collect::<Vec<_>>(),
        "rows": rows,
        "affected": set.affected,
    })
}

/// Tab-separated, with `\t`, `\n`, `\\` escaped and NULL as `NULL` (as the
/// mysql client's batch mode does).
fn tsv_line<'a>(cells: impl Iterator<Item = Option<&'a str>>) -> String {
    let mut line = cells
        .map(|c| match c {
            None => NULL_TEXT.to_string(),
            Some(v) => v
                .replace('\\', "\\\\")
                .replace('\t', "\\t")
                .replace('\n', "\\n"),
        })
        .collect::<Vec<_>>()
        .join("\t");
    line.push('\n');
    line
}

pub(crate) fn print_info(format: OutputFormat, info: &SessionInfo) -> Result<()> {
    emit(format, info, || {
        let tls = &info.tls;
        let cert = tls.certificate.clone().unwrap_or_default();
        let t = &info.timings;
        let auth = info.auth_plugin.as_ref().map_or_else(
            || info.auth.to_string(),
            |plugin| format!("{}, plugin {plugin}", info.auth),
        );
        let stages = t.tls_auth_ms.map_or_else(
            || format!("tcp+tls+auth {:.1} ms", t.connect_ms),
            |v| format!("tcp {:.1} ms, tls+auth {v:.1} ms", t.connect_ms),
        );
        format!(
            "endpoint:     {} (dialed {})\nserver:       {} {}\nuser:         {} (auth: {})\n\
             tls:          {} {} ({})\ncertificate:  {}\nSANs:         {}\nissuer:       {}\nnot after:    {}\n\
             timings:      dns {:.1} ms, {stages}, total {:.1} ms",
            info.endpoint,
            info.dial_address,
            info.engine.name(),
            info.server_version,
            info.user,
            auth,
            tls.protocol.as_deref().unwrap_or("?"),
            tls.cipher.as_deref().unwrap_or("?"),
            tls.mode.map_or("?", crate::tls::TlsMode::as_str),
            cert.subject,
            cert.sans.join(", "),
            cert.issuer,
            cert.not_after,
            t.dns_ms,
            t.total_ms,
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tsv_escapes_and_marks_null() {
        let line = tsv_line([Some("a\tb"), None, Some("x\ny\\")].into_iter());
        assert_eq!(line, "a\\tb\tNULL\tx\\ny\\\\\n");
    }

    #[test]
    fn table_aligns_columns_by_characters() {
        let rows = vec![
            vec!["é".to_string(), "x".to_string(), "last".to_string()],
            vec!["long".to_string(), "yy".to_string(), "z".to_string()],
        ];
        let t = table(&["A", "B", "C"], &rows);
        assert_eq!(t, "A     B   C\né     x   last\nlong  yy  z\n");
    }
}
