//! Splitting a PostgreSQL batch (`-c 'SELECT 1; SELECT 2'`) into its
//! statements, so that each result set's column types can be described.
//! Quotes (`'…'`, `E'…'`, `"…"`), dollar quotes (`$tag$…$tag$`) and
//! comments (`--`, nested `/* */`) are skipped; statements that hold only
//! blanks and comments are dropped, as the server drops them.

/// The statements of `sql`, trimmed, in order.
pub(crate) fn split(sql: &str) -> Vec<&str> {
    let bytes = sql.as_bytes();
    let mut out = Vec::new();
    let (mut start, mut i) = (0, 0);
    let mut has_code = false;
    while i < bytes.len() {
        let b = bytes[i];
        let next = bytes.get(i + 1).copied();
        match b {
            b'-' if next == Some(b'-') => {
                i = sql[i..].find('\n').map_or(bytes.len(), |n| i + n);
                continue;
            }
            b'/' if next == Some(b'*') => {
                i = block_comment_end(bytes, i);
                continue;
            }
            b';' => {
                if has_code {
                    out.push(sql[start..i].trim());
                }
                start = i + 1;
                has_code = false;
            }
            b'\'' => {
                let escapes =
                    i > 0 && matches!(bytes[i - 1], b'e' | b'E') && !word_before(bytes, i - 1);
                i = quoted_end(bytes, i, b'\'', escapes);
                has_code = true;
                continue;
            }
            b'"' => {
                i = quoted_end(bytes, i, b'"', false);
                has_code = true;
                continue;
            }
            b'$' if !word_before(bytes, i) => {
                if let Some(end) = dollar_end(sql, i) {
                    i = end;
                    has_code = true;
                    continue;
                }
                has_code = true;
            }
            _ if !b.is_ascii_whitespace() => has_code = true,
            _ => {}
        }
        i += 1;
    }
    if has_code {
        out.push(sql[start..].trim());
    }
    out
}

/// Whether the byte before `i` continues an identifier (so `$` or `E` at
/// `i` is part of a word, not a quote's start).
fn word_before(bytes: &[u8], i: usize) -> bool {
    i > 0 && (bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_' || bytes[i - 1] == b'$')
}

/// The index after a `/* … */` comment starting at `i` (comments nest).
fn block_comment_end(bytes: &[u8], mut i: usize) -> usize {
    let mut depth = 0usize;
    while i < bytes.len() {
        match (bytes[i], bytes.get(i + 1).copied()) {
            (b'/', Some(b'*')) => {
                depth += 1;
                i += 2;
            }
            (b'*', Some(b'/')) => {
                depth -= 1;
                i += 2;
                if depth == 0 {
                    return i;
                }
            }
            _ => i += 1,
        }
    }
    bytes.len()
}

/// The index after a quoted run starting at `i`: a doubled quote stays
/// inside, and with `escapes` so does a backslash-escaped byte.
fn quoted_end(bytes: &[u8], mut i: usize, quote: u8, escapes: bool) -> usize {
    i += 1;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' if escapes => i += 2,
            b if b == quote => {
                if bytes.get(i + 1) == Some(&quote) {
                    i += 2;
                } else {
                    return i + 1;
                }
            }
            _ => i += 1,
        }
    }
    bytes.len()
}

/// The index after a `$tag$ … $tag$` string starting at `i`, if `i`
/// starts one (a tag is empty or an identifier not starting with a digit).
fn dollar_end(sql: &str, i: usize) -> Option<usize> {
    let rest = &sql[i + 1..];
    let tag_len = rest.find('$')?;
    let tag = &rest[..tag_len];
    let valid = tag
        .chars()
        .enumerate()
        .all(|(n, c)| c == '_' || c.is_alphabetic() || (n > 0 && c.is_ascii_digit()));
    if !valid {
        return None;
    }
    let delimiter = &sql[i..i + tag_len + 2];
    let body = i + delimiter.len();
    Some(
        sql[body..]
            .find(delimiter)
            .map_or(sql.len(), |n| body + n + delimiter.len()),
    )
}

#[cfg(test)]
mod tests {
    use super::split;

    #[test]
    fn splits_on_semicolons_outside_quotes_and_comments() {
        assert_eq!(split("SELECT 1; SELECT 2"), ["SELECT 1", "SELECT 2"]);
        assert_eq!(split("SELECT 1;"), ["SELECT 1"]);
        assert_eq!(
            split("SELECT ';' AS a; SELECT \"x;y\" FROM t"),
            ["SELECT ';' AS a", "SELECT \"x;y\" FROM t"]
        );
        assert_eq!(
            split("SELECT 'it''s;'; SELECT E'\\';' ; SELECT 3"),
            ["SELECT 'it''s;'", "SELECT E'\\';'", "SELECT 3"]
        );
        assert_eq!(
            split("SELECT $$a;b$$; SELECT $f$ $$ ; $f$"),
            ["SELECT $$a;b$$", "SELECT $f$ $$ ; $f$"]
        );
        assert_eq!(
            split("-- a; comment\nSELECT 1 /* x; /* y; */ z; */; ;; -- end;"),
            ["-- a; comment\nSELECT 1 /* x; /* y; */ z; */"]
        );
    }

    #[test]
    fn blank_and_comment_only_statements_are_dropped() {
        assert!(split("  ;  ; -- nothing").is_empty());
        assert_eq!(split("SELECT $1, a$b FROM t; SELECT 2").len(), 2);
    }
}
