//! A result column's name and type, and how a value of that type becomes
//! JSON (`--output json`).
//!
//! The rule, documented in the README: integers are JSON numbers when a
//! double holds them exactly (|n| < 2^53), else strings; exact decimals
//! (`numeric`, `DECIMAL`) are numbers when they have at most 15 significant
//! digits (a double round-trips that many), else strings; floating-point
//! columns are numbers, with `NaN` and the infinities as strings; booleans
//! are `true`/`false`; JSON columns are JSON; NULL is `null`; everything
//! else is the server's text.

use serde::Serialize;
use serde_json::{Number, Value};

/// How a column's text becomes JSON.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum Kind {
    Integer,
    Float,
    Decimal,
    Bool,
    Json,
    #[default]
    Text,
}

/// One result column.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub(crate) struct Column {
    pub name: String,
    /// The server's type name (`int4`, `jsonb`; MySQL's `long`, `json`), or
    /// empty when the type could not be learnt.
    #[serde(rename = "type")]
    pub type_name: String,
    #[serde(skip)]
    pub kind: Kind,
}

impl Column {
    /// A column whose type is unknown: its values stay text.
    pub(crate) fn untyped(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            ..Self::default()
        }
    }
}

/// Largest integer a double (and so JavaScript) holds exactly, plus one.
const EXACT_LIMIT: i128 = 1 << 53;
/// Significant digits a double round-trips through decimal text.
const EXACT_DIGITS: usize = 15;

impl Kind {
    /// The JSON for one value of this kind, given as the server's text.
    pub(crate) fn json(self, text: Option<&str>) -> Value {
        let Some(text) = text else {
            return Value::Null;
        };
        let typed = match self {
            Self::Integer => text
                .parse::<i128>()
                .ok()
                .filter(|n| n.abs() < EXACT_LIMIT)
                .and_then(|n| i64::try_from(n).ok())
                .map(|n| Value::Number(n.into())),
            Self::Float => float(text),
            Self::Decimal => (significant_digits(text) <= EXACT_DIGITS)
                .then(|| float(text))
                .flatten(),
            Self::Bool => match text {
                "t" | "true" => Some(Value::Bool(true)),
                "f" | "false" => Some(Value::Bool(false)),
                _ => None,
            },
            Self::Json => serde_json::from_str(text).ok(),
            Self::Text => None,
        };
        typed.unwrap_or_else(|| Value::String(text.to_string()))
    }
}

fn float(text: &str) -> Option<Value> {
    text.parse::<f64>()
        .ok()
        .and_then(Number::from_f64)
        .map(Value::Number)
}

/// Digits from the first non-zero digit to the last non-zero one of a
/// decimal literal (`0.00120` → 2, `1200` → 2, `-12.5` → 3); anything that
/// is not a plain decimal counts as too many.
fn significant_digits(text: &str) -> usize {
    let body = text.strip_prefix(['-', '+']).unwrap_or(text);
    if body.is_empty() || !body.chars().all(|c| c.is_ascii_digit() || c == '.') {
        return usize::MAX;
    }
    let digits: String = body.chars().filter(char::is_ascii_digit).collect();
    let trimmed = digits.trim_start_matches('0').trim_end_matches('0');
    trimmed.len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn integers_are_numbers_while_exact() {
        assert_eq!(Kind::Integer.json(Some("42")), json!(42));
        assert_eq!(Kind::Integer.json(Some("-7")), json!(-7));
        assert_eq!(
            Kind::Integer.json(Some("9007199254740991")),
            json!(9_007_199_254_740_991_i64)
        );
        assert_eq!(
            Kind::Integer.json(Some("9007199254740992")),
            json!("9007199254740992")
        );
        assert_eq!(
            Kind::Integer.json(Some("18446744073709551615")),
            json!("18446744073709551615")
        );
    }

    #[test]
    fn decimals_are_numbers_up_to_fifteen_digits() {
        assert_eq!(Kind::Decimal.json(Some("1.50")), json!(1.5));
        assert_eq!(Kind::Decimal.json(Some("-0.001")), json!(-0.001));
        assert_eq!(
            Kind::Decimal.json(Some("123456789012345")),
            json!(123_456_789_012_345.0)
        );
        assert_eq!(
            Kind::Decimal.json(Some("1234567890.123456")),
            json!("1234567890.123456")
        );
        assert_eq!(Kind::Decimal.json(Some("NaN")), json!("NaN"));
    }

    #[test]
    fn floats_bools_json_null_and_text() {
        assert_eq!(Kind::Float.json(Some("2.5")), json!(2.5));
        assert_eq!(Kind::Float.json(Some("Infinity")), json!("Infinity"));
        assert_eq!(Kind::Bool.json(Some("t")), json!(true));
        assert_eq!(Kind::Bool.json(Some("f")), json!(false));
        assert_eq!(Kind::Json.json(Some(r#"{"a": [1]}"#)), json!({"a": [1]}));
        assert_eq!(Kind::Json.json(Some("{oops")), json!("{oops"));
        assert_eq!(Kind::Text.json(Some("007")), json!("007"));
        assert_eq!(Kind::Integer.json(None), Value::Null);
    }
}
