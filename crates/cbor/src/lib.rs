//! The one CBOR (RFC 8949) decoder and encoder of attesta, for the subset that
//! attestation documents (COSE_Sign1) and CARv1 headers use.
//!
//! Hand-written rather than pulled in because every input it sees is untrusted:
//! it never panics, never allocates more than the input can justify (a length
//! is checked against the bytes left before anything is reserved), bounds
//! nesting, and handles definite and indefinite lengths alike (the COSE
//! signature covers the *contents* of byte strings, so chunked strings are
//! concatenated). General-purpose CBOR crates either deserialize through serde
//! (no access to the exact signed bytes) or pre-allocate from declared lengths.
#![forbid(unsafe_code)]
#![deny(clippy::indexing_slicing)]

use std::borrow::Cow;

/// Nesting deeper than this is rejected; attestation documents need 4 levels.
const MAX_DEPTH: usize = 16;

/// A decoded CBOR data item; strings borrow from the input when they were
/// encoded with a definite length.
#[derive(Debug, Clone, PartialEq)]
pub enum Value<'a> {
    /// Major type 0.
    Uint(u64),
    /// Major type 1: the value is `-1 - n`.
    Nint(u64),
    /// Major type 2.
    Bytes(Cow<'a, [u8]>),
    /// Major type 3.
    Text(Cow<'a, str>),
    /// Major type 4.
    Array(Vec<Value<'a>>),
    /// Major type 5, in encoded order (duplicates are kept for the caller to reject).
    Map(Vec<(Value<'a>, Value<'a>)>),
    /// Major type 6.
    Tag(u64, Box<Value<'a>>),
    /// `true` / `false`.
    Bool(bool),
    /// `null`.
    Null,
    /// `undefined`.
    Undefined,
    /// Any float (kept only so that well-formed input is not misreported).
    Float(f64),
}

impl Value<'_> {
    /// A short name of the item's type, for error messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Value::Uint(_) => "unsigned integer",
            Value::Nint(_) => "negative integer",
            Value::Bytes(_) => "byte string",
            Value::Text(_) => "text string",
            Value::Array(_) => "array",
            Value::Map(_) => "map",
            Value::Tag(..) => "tag",
            Value::Bool(_) => "bool",
            Value::Null => "null",
            Value::Undefined => "undefined",
            Value::Float(_) => "float",
        }
    }
}

/// Why a byte sequence is not the CBOR we accept.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CborError {
    /// The input ended inside an item.
    #[error("truncated CBOR at byte {0}")]
    Truncated(usize),
    /// A reserved or unsupported additional-information value.
    #[error("malformed CBOR at byte {offset}: {reason}")]
    Malformed {
        /// Byte offset of the offending item.
        offset: usize,
        /// What is wrong.
        reason: &'static str,
    },
    /// Nesting beyond 16 levels.
    #[error("CBOR nested deeper than {MAX_DEPTH} levels")]
    TooDeep,
    /// Bytes left over after the top-level item.
    #[error("{0} trailing bytes after the CBOR item")]
    TrailingBytes(usize),
}

/// Decodes exactly one item spanning the whole input.
pub fn decode(input: &[u8]) -> Result<Value<'_>, CborError> {
    let mut d = Decoder { input, pos: 0 };
    let v = d.item(0)?;
    let rest = input.len().saturating_sub(d.pos);
    if rest != 0 {
        return Err(CborError::TrailingBytes(rest));
    }
    Ok(v)
}

struct Decoder<'a> {
    input: &'a [u8],
    pos: usize,
}

/// The argument of an item header: a length/value, or "indefinite".
enum Arg {
    Val(u64),
    Indefinite,
}

impl<'a> Decoder<'a> {
    fn byte(&mut self) -> Result<u8, CborError> {
        let b = *self
            .input
            .get(self.pos)
            .ok_or(CborError::Truncated(self.pos))?;
        self.pos += 1;
        Ok(b)
    }

    fn take(&mut self, n: u64) -> Result<&'a [u8], CborError> {
        let start = self.pos;
        let n = usize::try_from(n).map_err(|_| CborError::Truncated(start))?;
        let end = start.checked_add(n).ok_or(CborError::Truncated(start))?;
        let s = self
            .input
            .get(start..end)
            .ok_or(CborError::Truncated(start))?;
        self.pos = end;
        Ok(s)
    }

    fn remaining(&self) -> usize {
        self.input.len().saturating_sub(self.pos)
    }

    fn header(&mut self) -> Result<(u8, u8, Arg), CborError> {
        let at = self.pos;
        let b = self.byte()?;
        let major = b >> 5;
        let info = b & 0x1f;
        let arg = match info {
            0..=23 => Arg::Val(u64::from(info)),
            24 => Arg::Val(u64::from(self.byte()?)),
            25 => Arg::Val(be(self.take(2)?)),
            26 => Arg::Val(be(self.take(4)?)),
            27 => Arg::Val(be(self.take(8)?)),
            31 => Arg::Indefinite,
            _ => {
                return Err(CborError::Malformed {
                    offset: at,
                    reason: "reserved additional information",
                });
            }
        };
        Ok((major, info, arg))
    }

    fn item(&mut self, depth: usize) -> Result<Value<'a>, CborError> {
        if depth > MAX_DEPTH {
            return Err(CborError::TooDeep);
        }
        let at = self.pos;
        let (major, info, arg) = self.header()?;
        match (major, arg) {
            (0, Arg::Val(v)) => Ok(Value::Uint(v)),
            (1, Arg::Val(v)) => Ok(Value::Nint(v)),
            (2, Arg::Val(n)) => Ok(Value::Bytes(Cow::Borrowed(self.take(n)?))),
            (2, Arg::Indefinite) => Ok(Value::Bytes(Cow::Owned(self.chunks(2)?))),
            (3, Arg::Val(n)) => {
                let s = std::str::from_utf8(self.take(n)?).map_err(|_| CborError::Malformed {
                    offset: at,
                    reason: "text string is not UTF-8",
                })?;
                Ok(Value::Text(Cow::Borrowed(s)))
            }
            (3, Arg::Indefinite) => {
                let bytes = self.chunks(3)?;
                let s = String::from_utf8(bytes).map_err(|_| CborError::Malformed {
                    offset: at,
                    reason: "text string is not UTF-8",
                })?;
                Ok(Value::Text(Cow::Owned(s)))
            }
            (4, arg) => {
                let mut items = Vec::with_capacity(self.capacity(&arg, 1));
                match arg {
                    Arg::Val(n) => {
                        for _ in 0..n {
                            items.push(self.item(depth + 1)?);
                        }
                    }
                    Arg::Indefinite => {
                        while !self.at_break()? {
                            items.push(self.item(depth + 1)?);
                        }
                    }
                }
                Ok(Value::Array(items))
            }
            (5, arg) => {
                let mut entries = Vec::with_capacity(self.capacity(&arg, 2));
                match arg {
                    Arg::Val(n) => {
                        for _ in 0..n {
                            let k = self.item(depth + 1)?;
                            let v = self.item(depth + 1)?;
                            entries.push((k, v));
                        }
                    }
                    Arg::Indefinite => {
                        while !self.at_break()? {
                            let k = self.item(depth + 1)?;
                            let v = self.item(depth + 1)?;
                            entries.push((k, v));
                        }
                    }
                }
                Ok(Value::Map(entries))
            }
            (6, Arg::Val(tag)) => Ok(Value::Tag(tag, Box::new(self.item(depth + 1)?))),
            (7, Arg::Val(v)) => match info {
                20 => Ok(Value::Bool(false)),
                21 => Ok(Value::Bool(true)),
                22 => Ok(Value::Null),
                23 => Ok(Value::Undefined),
                25 => Ok(Value::Float(half_to_f64(v as u16))),
                26 => Ok(Value::Float(f64::from(f32::from_bits(v as u32)))),
                27 => Ok(Value::Float(f64::from_bits(v))),
                _ => Err(CborError::Malformed {
                    offset: at,
                    reason: "unsupported simple value",
                }),
            },
            _ => Err(CborError::Malformed {
                offset: at,
                reason: "indefinite length not allowed here",
            }),
        }
    }

    /// Pre-allocation never exceeds what the remaining input could encode.
    fn capacity(&self, arg: &Arg, per_item: usize) -> usize {
        match arg {
            Arg::Val(n) => usize::try_from(*n)
                .unwrap_or(usize::MAX)
                .min(self.remaining() / per_item),
            Arg::Indefinite => 0,
        }
    }

    fn at_break(&mut self) -> Result<bool, CborError> {
        match self.input.get(self.pos) {
            Some(0xff) => {
                self.pos += 1;
                Ok(true)
            }
            Some(_) => Ok(false),
            None => Err(CborError::Truncated(self.pos)),
        }
    }

    /// Concatenates the definite-length chunks of an indefinite string.
    fn chunks(&mut self, major: u8) -> Result<Vec<u8>, CborError> {
        let mut out = Vec::new();
        while !self.at_break()? {
            let at = self.pos;
            match self.header()? {
                (m, _, Arg::Val(n)) if m == major => out.extend_from_slice(self.take(n)?),
                _ => {
                    return Err(CborError::Malformed {
                        offset: at,
                        reason: "bad chunk in indefinite-length string",
                    });
                }
            }
        }
        Ok(out)
    }
}

fn be(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b))
}

fn half_to_f64(h: u16) -> f64 {
    let exp = (h >> 10) & 0x1f;
    let mant = f64::from(h & 0x3ff);
    let v = match exp {
        0 => mant * 2f64.powi(-24),
        31 => {
            if mant == 0.0 {
                f64::INFINITY
            } else {
                f64::NAN
            }
        }
        e => (mant + 1024.0) * 2f64.powi(i32::from(e) - 25),
    };
    if h & 0x8000 != 0 { -v } else { v }
}

/// Writes canonical (shortest-form, definite-length) CBOR.
#[derive(Debug, Default, Clone)]
pub struct Encoder {
    buf: Vec<u8>,
}

impl Encoder {
    /// An empty encoder with room for `cap` bytes.
    pub fn with_capacity(cap: usize) -> Self {
        Encoder {
            buf: Vec::with_capacity(cap),
        }
    }

    /// The bytes written so far.
    pub fn into_bytes(self) -> Vec<u8> {
        self.buf
    }

    fn head(&mut self, major: u8, v: u64) -> &mut Self {
        let m = major << 5;
        if v < 24 {
            self.buf.push(m | v as u8);
        } else if v <= 0xff {
            self.buf.extend_from_slice(&[m | 24, v as u8]);
        } else if v <= 0xffff {
            self.buf.push(m | 25);
            self.buf.extend_from_slice(&(v as u16).to_be_bytes());
        } else if v <= 0xffff_ffff {
            self.buf.push(m | 26);
            self.buf.extend_from_slice(&(v as u32).to_be_bytes());
        } else {
            self.buf.push(m | 27);
            self.buf.extend_from_slice(&v.to_be_bytes());
        }
        self
    }

    /// An unsigned integer.
    pub fn uint(&mut self, v: u64) -> &mut Self {
        self.head(0, v)
    }

    /// A negative integer `v` (must be < 0).
    pub fn int(&mut self, v: i64) -> &mut Self {
        if v >= 0 {
            self.head(0, v.unsigned_abs())
        } else {
            self.head(1, (-1 - v).unsigned_abs())
        }
    }

    /// A byte string.
    pub fn bytes(&mut self, b: &[u8]) -> &mut Self {
        self.head(2, b.len() as u64);
        self.buf.extend_from_slice(b);
        self
    }

    /// A text string.
    pub fn text(&mut self, s: &str) -> &mut Self {
        self.head(3, s.len() as u64);
        self.buf.extend_from_slice(s.as_bytes());
        self
    }

    /// An array header for `n` items (the items follow).
    pub fn array(&mut self, n: usize) -> &mut Self {
        self.head(4, n as u64)
    }

    /// A map header for `n` pairs (the pairs follow).
    pub fn map(&mut self, n: usize) -> &mut Self {
        self.head(5, n as u64)
    }

    /// `null`.
    pub fn null(&mut self) -> &mut Self {
        self.buf.push(0xf6);
        self
    }

    /// Raw, already-encoded CBOR.
    pub fn raw(&mut self, b: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(b);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn definite_and_indefinite_strings_decode_alike() {
        let definite = [0x82, 0x43, 1, 2, 3, 0x62, b'h', b'i'];
        let indefinite = [
            0x9f, 0x5f, 0x41, 1, 0x42, 2, 3, 0xff, 0x7f, 0x61, b'h', 0x61, b'i', 0xff, 0xff,
        ];
        assert_eq!(decode(&definite), decode(&indefinite));
    }

    #[test]
    fn rejects_garbage_without_panicking() {
        assert!(matches!(
            decode(&[0x5b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]),
            Err(CborError::Truncated(_))
        ));
        assert!(matches!(decode(&[0x1c]), Err(CborError::Malformed { .. })));
        assert!(matches!(
            decode(&[0x5f, 0x61, b'a', 0xff]),
            Err(CborError::Malformed { .. })
        ));
        assert!(matches!(
            decode(&[0x01, 0x02]),
            Err(CborError::TrailingBytes(1))
        ));
        assert!(matches!(decode(&[0x81; 64]), Err(CborError::TooDeep)));
        assert!(matches!(decode(&[0x9f; 3]), Err(CborError::Truncated(_))));
    }

    #[test]
    fn encoder_round_trips() {
        let mut e = Encoder::default();
        e.array(4).int(-35).uint(300).bytes(&[9; 30]).text("x");
        let bytes = e.into_bytes();
        let v = decode(&bytes);
        assert!(
            matches!(v, Ok(Value::Array(ref a)) if a.len() == 4 && a.first() == Some(&Value::Nint(34)))
        );
    }
}
