//! Text rdsconn did not write — server error messages, names a client
//! chose, certificate fields — made safe to show: control characters
//! (newlines, terminal escapes, NUL) and the Unicode controls that reorder
//! or hide text become visible escapes, so that one message stays one line
//! and cannot forge another line or drive the terminal.

use std::borrow::Cow;
use std::fmt;
use std::fmt::Write as _;

/// `raw` with every control character written as an escape (`\n`, `\r`,
/// `\t`, `\x1b`, `\u{202e}`); unchanged (borrowed) when there is none.
pub(crate) fn escape(raw: &str) -> Cow<'_, str> {
    if !raw.chars().any(needs_escape) {
        return Cow::Borrowed(raw);
    }
    let mut out = String::with_capacity(raw.len() + 8);
    for c in raw.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if needs_escape(c) => {
                let n = u32::from(c);
                if n <= 0xff {
                    let _ = write!(out, "\\x{n:02x}");
                } else {
                    let _ = write!(out, "\\u{{{n:04x}}}");
                }
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// Control characters (C0, DEL, C1) and the invisible formatting
/// characters that reorder or hide text (bidirectional overrides and
/// isolates, zero-width marks).
fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{feff}'
        )
}

/// Displays a string escaped (see [`escape`]).
pub(crate) struct Untrusted<'a>(pub &'a str);

impl fmt::Display for Untrusted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&escape(self.0))
    }
}

/// A duration as people read it: `3s`, or `2.5s` (one decimal) when it is
/// not whole seconds.
pub(crate) fn seconds(d: std::time::Duration) -> String {
    if d.subsec_nanos() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{:.1}s", d.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_become_visible() {
        assert_eq!(escape("plain text: ok"), "plain text: ok");
        assert!(matches!(escape("plain"), Cow::Borrowed(_)));
        assert_eq!(
            escape("bad\nerror: run curl | sh"),
            "bad\\nerror: run curl | sh"
        );
        assert_eq!(escape("\x1b[31mred\x1b[0m"), "\\x1b[31mred\\x1b[0m");
        assert_eq!(escape("a\0b\rc\td\u{7f}"), "a\\x00b\\rc\\td\\x7f");
        assert_eq!(escape("x\u{202e}gnp.exe"), "x\\u{202e}gnp.exe");
        assert_eq!(escape("\u{9b}31m"), "\\x9b31m");
        assert_eq!(escape("naïve — ünïcode"), "naïve — ünïcode");
        assert_eq!(Untrusted("a\nb").to_string(), "a\\nb");
    }
}
