//! Which SQL leaves state in a PostgreSQL session (transaction pooling
//! pins such a client to its server connection) — read from the
//! statement's words, outside strings, quoted names and comments.
//! Erring towards a pin costs only sharing; missing one would be wrong.

/// Whether `sql` has any word the other functions here look for: most
/// statements have none, and are then passed over without lexing (a
/// superset: strings and comments are not told apart here).
pub(crate) fn worth_a_look(sql: &[u8]) -> bool {
    const WORDS: &[&[u8]] = &[
        b"SET",
        b"RESET",
        b"LISTEN",
        b"PREPARE",
        b"DECLARE",
        b"LOAD",
        b"DISCARD",
        b"DEALLOCATE",
        b"CREATE",
        b"INTO",
        b"SET_CONFIG",
        b"PG_ADVISORY_LOCK",
        b"PG_ADVISORY_LOCK_SHARED",
        b"PG_TRY_ADVISORY_LOCK",
        b"PG_TRY_ADVISORY_LOCK_SHARED",
    ];
    sql.split(|c: &u8| !(c.is_ascii_alphanumeric() || *c == b'_'))
        .any(|w| WORDS.iter().any(|k| k.eq_ignore_ascii_case(w)))
}

/// The reason a statement pins, as `rdsconn_pool_pins_total`'s label.
pub(crate) fn pin_reason(sql: &str) -> Option<&'static str> {
    statements(sql)
        .iter()
        .find_map(|words| statement_pin(words))
}

/// What a whole `Query` is when it only deallocates statements.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Deallocate {
    All,
    Named(String),
}

/// `DEALLOCATE [PREPARE] name` / `DEALLOCATE [PREPARE] ALL` alone.
pub(crate) fn deallocate(sql: &str) -> Option<Deallocate> {
    let stmts = statements(sql);
    let [words] = stmts.as_slice() else {
        return None;
    };
    let mut w = words.iter();
    if !w.next()?.eq_ignore_ascii_case("DEALLOCATE") {
        return None;
    }
    let mut next = w.next()?;
    if next.eq_ignore_ascii_case("PREPARE") {
        next = w.next()?;
    }
    if w.next().is_some() {
        return None;
    }
    if next.eq_ignore_ascii_case("ALL") {
        Some(Deallocate::All)
    } else {
        Some(Deallocate::Named(next.clone()))
    }
}

fn statement_pin(words: &[String]) -> Option<&'static str> {
    let up: Vec<String> = words.iter().map(|w| w.to_ascii_uppercase()).collect();
    let first = up.first()?.as_str();
    let second = up.get(1).map_or("", String::as_str);
    let third = up.get(2).map_or("", String::as_str);
    let pinned = match first {
        "SET" => match second {
            "LOCAL" | "TRANSACTION" | "CONSTRAINTS" => None,
            "SESSION" if third == "CHARACTERISTICS" || third == "AUTHORIZATION" => Some("set"),
            _ => Some("set"),
        },
        "RESET" => Some("set"),
        "LISTEN" => Some("listen"),
        "PREPARE" if second != "TRANSACTION" => Some("prepare"),
        "DECLARE" if up.windows(2).any(|p| p[0] == "WITH" && p[1] == "HOLD") => {
            Some("cursor_with_hold")
        }
        "LOAD" => Some("load"),
        "DISCARD" => Some("discard"),
        "DEALLOCATE" => Some("prepare"),
        "CREATE" if creates_temp(&up[1..]) => Some("temp_table"),
        _ => None,
    };
    pinned.or_else(|| {
        up.iter().enumerate().find_map(|(i, w)| match w.as_str() {
            "PG_ADVISORY_LOCK"
            | "PG_ADVISORY_LOCK_SHARED"
            | "PG_TRY_ADVISORY_LOCK"
            | "PG_TRY_ADVISORY_LOCK_SHARED" => Some("advisory_lock"),
            "SET_CONFIG" => Some("set"),
            "INTO"
                if matches!(first, "SELECT" | "WITH")
                    && matches!(
                        up.get(i + 1).map(String::as_str),
                        Some("TEMP" | "TEMPORARY")
                    ) =>
            {
                Some("temp_table")
            }
            _ => None,
        })
    })
}

/// `CREATE [OR REPLACE] [GLOBAL|LOCAL] TEMP|TEMPORARY …`.
fn creates_temp(rest: &[String]) -> bool {
    let mut w = rest.iter().map(String::as_str).peekable();
    if w.peek() == Some(&"OR") {
        w.next();
        w.next();
    }
    if matches!(w.peek(), Some(&("GLOBAL" | "LOCAL"))) {
        w.next();
    }
    matches!(w.next(), Some("TEMP" | "TEMPORARY"))
}

/// The words (unquoted identifiers and keywords, and quoted names with
/// their quotes removed) of each `;`-separated statement; string
/// constants and comments are left out.
fn statements(sql: &str) -> Vec<Vec<String>> {
    let b = sql.as_bytes();
    let mut out = vec![Vec::new()];
    let mut i = 0;
    let push = |out: &mut Vec<Vec<String>>, w: String| {
        if let Some(last) = out.last_mut() {
            last.push(w);
        }
    };
    while i < b.len() {
        let c = b[i];
        match c {
            b';' => {
                out.push(Vec::new());
                i += 1;
            }
            b'-' if b.get(i + 1) == Some(&b'-') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => i = skip_block_comment(b, i),
            b'\'' => i = skip_string(b, i, false),
            b'E' | b'e' if b.get(i + 1) == Some(&b'\'') && !word_before(b, i) => {
                i = skip_string(b, i + 1, true);
            }
            b'"' => {
                let (name, next) = quoted_name(b, i);
                push(&mut out, name);
                i = next;
            }
            b'$' if !word_before(b, i) => i = skip_dollar(b, i),
            c if c.is_ascii_alphabetic() || c == b'_' || c >= 0x80 => {
                let start = i;
                while i < b.len()
                    && (b[i].is_ascii_alphanumeric()
                        || b[i] == b'_'
                        || b[i] == b'$'
                        || b[i] >= 0x80)
                {
                    i += 1;
                }
                push(&mut out, String::from_utf8_lossy(&b[start..i]).into_owned());
            }
            _ => i += 1,
        }
    }
    out.retain(|s| !s.is_empty());
    out
}

fn word_before(b: &[u8], i: usize) -> bool {
    i > 0 && (b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_' || b[i - 1] >= 0x80)
}

/// Past a `/* … */` comment (they nest).
fn skip_block_comment(b: &[u8], mut i: usize) -> usize {
    let mut depth = 0;
    while i < b.len() {
        if b[i] == b'/' && b.get(i + 1) == Some(&b'*') {
            depth += 1;
            i += 2;
        } else if b[i] == b'*' && b.get(i + 1) == Some(&b'/') {
            depth -= 1;
            i += 2;
            if depth == 0 {
                return i;
            }
        } else {
            i += 1;
        }
    }
    i
}

/// Past a `'…'` constant (`''` inside; backslash escapes in `E'…'`).
fn skip_string(b: &[u8], mut i: usize, escapes: bool) -> usize {
    i += 1;
    while i < b.len() {
        match b[i] {
            b'\\' if escapes => i += 2,
            b'\'' if b.get(i + 1) == Some(&b'\'') => i += 2,
            b'\'' => return i + 1,
            _ => i += 1,
        }
    }
    i
}

fn quoted_name(b: &[u8], mut i: usize) -> (String, usize) {
    i += 1;
    let mut name = Vec::new();
    while i < b.len() {
        if b[i] == b'"' {
            if b.get(i + 1) == Some(&b'"') {
                name.push(b'"');
                i += 2;
                continue;
            }
            return (String::from_utf8_lossy(&name).into_owned(), i + 1);
        }
        name.push(b[i]);
        i += 1;
    }
    (String::from_utf8_lossy(&name).into_owned(), i)
}

/// Past `$tag$ … $tag$` (a lone `$1` parameter is stepped over).
fn skip_dollar(b: &[u8], i: usize) -> usize {
    let mut j = i + 1;
    while j < b.len() && (b[j].is_ascii_alphanumeric() || b[j] == b'_') {
        j += 1;
    }
    if b.get(j) != Some(&b'$') || b[i + 1..j].first().is_some_and(u8::is_ascii_digit) {
        return j.max(i + 1);
    }
    let tag = &b[i..=j];
    let mut k = j + 1;
    while k + tag.len() <= b.len() {
        if &b[k..k + tag.len()] == tag {
            return k + tag.len();
        }
        k += 1;
    }
    b.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_state_pins() {
        for (sql, reason) in [
            ("SET search_path = x", "set"),
            ("set statement_timeout to 5", "set"),
            ("SET SESSION statement_timeout = 1", "set"),
            (
                "SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY",
                "set",
            ),
            ("RESET ALL", "set"),
            ("select 1; SET TimeZone='UTC'", "set"),
            ("SELECT pg_catalog.set_config('a.b', 'c', false)", "set"),
            ("LISTEN chan", "listen"),
            ("select pg_advisory_lock(1)", "advisory_lock"),
            ("SELECT pg_try_advisory_lock_shared(1, 2)", "advisory_lock"),
            ("CREATE TEMP TABLE t (a int)", "temp_table"),
            ("create global temporary table t (a int)", "temp_table"),
            ("CREATE OR REPLACE TEMP VIEW v AS SELECT 1", "temp_table"),
            ("SELECT 1 INTO TEMP t", "temp_table"),
            ("PREPARE p AS SELECT 1", "prepare"),
            (
                "DECLARE c CURSOR WITH HOLD FOR SELECT 1",
                "cursor_with_hold",
            ),
            ("LOAD 'auto_explain'", "load"),
            ("DISCARD ALL", "discard"),
            ("/* c */ -- x\n  SET x.y = 1", "set"),
        ] {
            assert_eq!(pin_reason(sql), Some(reason), "{sql}");
        }
    }

    #[test]
    fn transaction_scoped_or_quoted_does_not_pin() {
        for sql in [
            "SET LOCAL statement_timeout = 1",
            "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE",
            "SET CONSTRAINTS ALL DEFERRED",
            "SELECT pg_advisory_xact_lock(1)",
            "SELECT 'SET x = 1; LISTEN y'",
            "SELECT E'it\\'s; SET a=1'",
            "SELECT $$ SET a = 1 $$",
            "SELECT $tag$ ; LISTEN x $tag$, $1",
            "SELECT \"set\" FROM t",
            "-- SET a = 1\nSELECT 1",
            "/* /* SET */ LISTEN */ SELECT 1",
            "DECLARE c CURSOR FOR SELECT 1",
            "CREATE TABLE temp (a int)",
            "PREPARE TRANSACTION 'x'",
            "BEGIN; UPDATE t SET a = 1; COMMIT",
            "INSERT INTO temp VALUES (1)",
        ] {
            assert_eq!(pin_reason(sql), None, "{sql}");
        }
    }

    #[test]
    fn only_statements_with_those_words_are_lexed() {
        assert!(!worth_a_look(
            b"SELECT abalance FROM pgbench_accounts WHERE aid = $1"
        ));
        assert!(!worth_a_look(b"UPDATE t SETTINGS"));
        for sql in [
            "select 1; set x = 1",
            "SELECT pg_advisory_lock(1)",
            "create temp table t()",
            "deallocate all",
        ] {
            assert!(worth_a_look(sql.as_bytes()), "{sql}");
        }
        // Every statement that pins is looked at.
        for sql in [
            "LISTEN c",
            "DECLARE c CURSOR WITH HOLD FOR SELECT 1",
            "LOAD 'x'",
        ] {
            assert!(worth_a_look(sql.as_bytes()) && pin_reason(sql).is_some());
        }
    }

    #[test]
    fn deallocate_forms() {
        assert_eq!(deallocate("DEALLOCATE ALL"), Some(Deallocate::All));
        assert_eq!(deallocate("deallocate prepare all;"), Some(Deallocate::All));
        assert_eq!(
            deallocate("DEALLOCATE \"_pg3_1\""),
            Some(Deallocate::Named("_pg3_1".into()))
        );
        assert_eq!(deallocate("DEALLOCATE x; SELECT 1"), None);
        assert_eq!(deallocate("SELECT 1"), None);
    }
}
