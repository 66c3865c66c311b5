//! Python's `str()` of JSON-decoded values, and the SDK's synapse body hash.
//!
//! The SDK hashes `str(model_dump()[field])` of each of a synapse's
//! `required_hash_fields`, so the bytes depend on Python's `str`/`repr`: `True`, `None`,
//! `[0.5, 1.0]`, `{'a': 1}`, `1e-07`, strings in quotes chosen as `repr` does. JSON
//! objects keep their order here (a `dict` does), which is why this has its own value type
//! instead of `serde_json::Value` (whose maps are sorted in this workspace).
//!
//! Limits (documented, not silent): integers beyond 64 bits arrive as floats from the JSON
//! parser, and inside *nested* strings only ASCII, Latin-1 and the common Unicode
//! non-printables are escaped as Python would; a top-level string field (the case of
//! every attesta synapse) is hashed byte for byte.

use std::fmt::Write as _;

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use sha3::{Digest, Sha3_256};

/// A JSON value as Python's `json`/pydantic holds it.
#[derive(Debug, Clone, PartialEq)]
pub enum PyValue {
    /// `None`.
    None,
    /// `True` / `False`.
    Bool(bool),
    /// An `int` that fits 64 bits.
    Int(i128),
    /// A `float`.
    Float(f64),
    /// A `str`.
    Str(String),
    /// A `list`.
    List(Vec<PyValue>),
    /// A `dict`, in insertion order.
    Dict(Vec<(String, PyValue)>),
}

impl<'de> Deserialize<'de> for PyValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(PyVisitor)
    }
}

struct PyVisitor;

impl<'de> Visitor<'de> for PyVisitor {
    type Value = PyValue;
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_unit<E>(self) -> Result<PyValue, E> {
        Ok(PyValue::None)
    }
    fn visit_none<E>(self) -> Result<PyValue, E> {
        Ok(PyValue::None)
    }
    fn visit_bool<E>(self, v: bool) -> Result<PyValue, E> {
        Ok(PyValue::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<PyValue, E> {
        Ok(PyValue::Int(v.into()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<PyValue, E> {
        Ok(PyValue::Int(v.into()))
    }
    fn visit_f64<E>(self, v: f64) -> Result<PyValue, E> {
        Ok(PyValue::Float(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<PyValue, E> {
        Ok(PyValue::Str(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<PyValue, E> {
        Ok(PyValue::Str(v))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<PyValue, A::Error> {
        let mut v = Vec::new();
        while let Some(x) = seq.next_element()? {
            v.push(x);
        }
        Ok(PyValue::List(v))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<PyValue, A::Error> {
        let mut v: Vec<(String, PyValue)> = Vec::new();
        while let Some((k, x)) = map.next_entry::<String, PyValue>()? {
            // A dict keeps the last value of a repeated key, at the first key's place.
            match v.iter_mut().find(|(key, _)| *key == k) {
                Some(slot) => slot.1 = x,
                None => v.push((k, x)),
            }
        }
        Ok(PyValue::Dict(v))
    }
}

impl PyValue {
    /// Python's `str(value)`: a string is itself, everything else is its `repr`.
    pub fn py_str(&self) -> String {
        match self {
            PyValue::Str(s) => s.clone(),
            other => {
                let mut out = String::new();
                other.write_repr(&mut out);
                out
            }
        }
    }

    fn write_repr(&self, out: &mut String) {
        match self {
            PyValue::None => out.push_str("None"),
            PyValue::Bool(true) => out.push_str("True"),
            PyValue::Bool(false) => out.push_str("False"),
            PyValue::Int(i) => {
                let _ = write!(out, "{i}");
            }
            PyValue::Float(f) => out.push_str(&float_repr(*f)),
            PyValue::Str(s) => str_repr(s, out),
            PyValue::List(items) => {
                out.push('[');
                for (i, x) in items.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    x.write_repr(out);
                }
                out.push(']');
            }
            PyValue::Dict(items) => {
                out.push('{');
                for (i, (k, x)) in items.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    str_repr(k, out);
                    out.push_str(": ");
                    x.write_repr(out);
                }
                out.push('}');
            }
        }
    }
}

/// Python's `repr(float)`: the shortest round-trip digits, fixed notation for decimal
/// exponents -5 < e < 16 (with a trailing `.0` for integral values), else `d.ddde±XX`.
pub fn float_repr(f: f64) -> String {
    if f.is_nan() {
        return "nan".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "inf".into() } else { "-inf".into() };
    }
    if f == 0.0 {
        return if f.is_sign_negative() {
            "-0.0".into()
        } else {
            "0.0".into()
        };
    }
    // Rust's `{:e}` gives the same shortest round-trip digits: `-1.2345e-7`.
    let sci = format!("{f:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((sci.as_str(), "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let (sign, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => ("-", m),
        None => ("", mantissa),
    };
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    if !(-5 < exp && exp < 16) {
        let (first, rest) = digits.split_at(1.min(digits.len()));
        let frac = if rest.is_empty() {
            String::new()
        } else {
            format!(".{rest}")
        };
        let esign = if exp < 0 { '-' } else { '+' };
        return format!("{sign}{first}{frac}e{esign}{:02}", exp.unsigned_abs());
    }
    let point = exp + 1; // digits before the decimal point
    let body = if point <= 0 {
        let zeros = usize::try_from(point.unsigned_abs()).unwrap_or(0);
        format!("0.{}{digits}", "0".repeat(zeros))
    } else {
        let point = usize::try_from(point).unwrap_or(0);
        if digits.len() <= point {
            format!("{digits}{}.0", "0".repeat(point - digits.len()))
        } else {
            let (int, frac) = digits.split_at(point);
            format!("{int}.{frac}")
        }
    };
    format!("{sign}{body}")
}

/// Python's `repr(str)`.
fn str_repr(s: &str, out: &mut String) {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if !printable(c) => {
                let n = u32::from(c);
                let _ = if n < 0x100 {
                    write!(out, "\\x{n:02x}")
                } else if n < 0x10000 {
                    write!(out, "\\u{n:04x}")
                } else {
                    write!(out, "\\U{n:08x}")
                };
            }
            c => out.push(c),
        }
    }
    out.push(quote);
}

/// Python's `str.isprintable` for one character, for ASCII, Latin-1 and the usual
/// Unicode separators, format characters and private-use planes.
fn printable(c: char) -> bool {
    let n = u32::from(c);
    !(n < 0x20
        || (0x7f..=0xa0).contains(&n)
        || n == 0xad
        || n == 0x1680
        || (0x2000..=0x200f).contains(&n)
        || (0x2028..=0x202f).contains(&n)
        || (0x205f..=0x2064).contains(&n)
        || (0x2066..=0x206f).contains(&n)
        || n == 0x3000
        || n == 0xfeff
        || (0xfff9..=0xfffb).contains(&n)
        || (0xe000..=0xf8ff).contains(&n)
        || n >= 0xf0000)
}

/// Lowercase hex SHA3-256.
pub fn sha3_hex(bytes: &[u8]) -> String {
    hex::encode(Sha3_256::digest(bytes))
}

/// The SDK's body hash over the `str()` texts of the hashed fields, in order:
/// `sha3(concat(sha3_hex(text) for text in texts))`.
pub fn body_hash<'a>(texts: impl IntoIterator<Item = &'a str>) -> String {
    let mut joined = String::new();
    for t in texts {
        joined.push_str(&sha3_hex(t.as_bytes()));
    }
    sha3_hex(joined.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(json: &str) -> String {
        serde_json::from_str::<PyValue>(json).unwrap().py_str()
    }

    #[test]
    fn matches_python_str() {
        assert_eq!(s("1.0"), "1.0");
        assert_eq!(s("1e-7"), "1e-07");
        assert_eq!(s("0.0001"), "0.0001");
        assert_eq!(s("0.00001"), "1e-05");
        assert_eq!(s("1e16"), "1e+16");
        assert_eq!(s("1234567890123456.0"), "1234567890123456.0");
        assert_eq!(s("1.5e300"), "1.5e+300");
        assert_eq!(s("-2.5"), "-2.5");
        assert_eq!(s("123.456"), "123.456");
        assert_eq!(s("-0.0"), "-0.0");
        assert_eq!(s("18446744073709551615"), "18446744073709551615");
        assert_eq!(s("-3"), "-3");
        assert_eq!(
            s(r#"["a\\b", "\u0001", "é", "x'y\"z"]"#),
            r#"['a\\b', '\x01', 'é', 'x\'y"z']"#
        );
        assert_eq!(
            s(r#"{"b": 1, "a": [true, null], "b": 2}"#),
            "{'b': 2, 'a': [True, None]}"
        );
        assert_eq!(s(r#""top level\nstays raw""#), "top level\nstays raw");
    }
}
