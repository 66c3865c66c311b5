//! The request's fast path: one hand-written pass over the body for the
//! shape clients actually send, and nothing else.
//!
//! The general decoder (serde in `parse`) unescapes the `model_inputs`
//! string into a second buffer, parses it into borrowed raw values and then
//! walks those again; most of a request's cost was that walk, not the
//! numbers. This scanner reads the bytes once, still escaped when
//! `model_inputs` is a string, and hands each fixed-point pair's two texts to
//! [`FixedPoint::parse`], the one place numbers are understood.
//!
//! It accepts only a strict subset of what the general decoder accepts:
//! plain strings (no escapes), JSON integers and decimals without exponent,
//! known keys each at most once, `strings` only when empty. Anything else,
//! including every input the general decoder refuses, makes it give up
//! (`None`) and the caller runs the general decoder, so results and typed
//! errors are the general decoder's by construction. The differential tests
//! and the `og_scan` fuzz target check that claim.

use super::{FixedPoint, InferRequest, ModelInputs, NumberTensor};
use crate::element_count;

/// The shortest fixed-point pair, `{"value":0,"decimals":0}`.
const MIN_FIXED_POINT_BYTES: usize = 24;

/// Decodes a whole `/infer` body of the current shape, or `None` when the
/// body is anything but the plain form (the caller then runs the general
/// decoder).
pub(super) fn scan_request(text: &str) -> Option<InferRequest> {
    let mut s = Scanner::new(text);
    s.ws();
    s.byte(b'{')?;
    let mut model = None;
    let mut inputs = None;
    s.members(b'}', |s, key| match key {
        "ipfs_hash" if model.is_none() => {
            model = Some(s.string()?.to_owned());
            Some(())
        }
        "model_inputs" if inputs.is_none() => {
            inputs = Some(s.model_inputs()?);
            Some(())
        }
        // Repeated and unknown keys (and the older shape) are the general
        // decoder's business.
        _ => None,
    })?;
    s.end()?;
    Some(InferRequest {
        model: model?,
        inputs: inputs?,
    })
}

/// Decodes `model_inputs` text (the object, or a JSON string holding it), or
/// `None` outside the plain form.
pub(super) fn scan_inputs(text: &str) -> Option<ModelInputs> {
    let mut s = Scanner::new(text);
    s.ws();
    let inputs = s.model_inputs()?;
    s.end()?;
    Some(inputs)
}

/// A cursor over the request text. `escaped` is set while inside the
/// `model_inputs` JSON string, where a quote of the embedded JSON is `\"`.
struct Scanner<'a> {
    text: &'a str,
    pos: usize,
    escaped: bool,
}

impl<'a> Scanner<'a> {
    fn new(text: &'a str) -> Self {
        Scanner {
            text,
            pos: 0,
            escaped: false,
        }
    }

    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.pos).copied()
    }

    /// Skips JSON whitespace. Inside an escaped string only a space is the
    /// same byte before and after unescaping; a raw tab or newline there
    /// would be a control character the general decoder refuses.
    fn ws(&mut self) {
        while let Some(b) = self.peek() {
            let skip = if self.escaped {
                b == b' '
            } else {
                matches!(b, b' ' | b'\t' | b'\n' | b'\r')
            };
            if !skip {
                break;
            }
            self.pos += 1;
        }
    }

    fn byte(&mut self, want: u8) -> Option<()> {
        (self.peek()? == want).then(|| self.pos += 1)
    }

    /// One quote of the current level: `"`, or `\"` inside the escaped string.
    fn quote(&mut self) -> Option<()> {
        if self.escaped {
            self.byte(b'\\')?;
        }
        self.byte(b'"')
    }

    /// A string without escapes or control characters, returned as its
    /// content, which is then the same text the general decoder would see.
    fn string(&mut self) -> Option<&'a str> {
        self.quote()?;
        let start = self.pos;
        while let Some(b) = self.peek() {
            if b == b'\\' || b == b'"' {
                break;
            }
            if b < 0x20 {
                return None;
            }
            self.pos += 1;
        }
        let content = self.text.get(start..self.pos)?;
        self.quote()?;
        Some(content)
    }

    /// At the end of the text, after trailing whitespace.
    fn end(&mut self) -> Option<()> {
        self.ws();
        (self.pos == self.text.len()).then_some(())
    }

    /// The members of an object whose `{` was consumed, up to `close`: calls
    /// `member` with each key, the cursor on the value.
    fn members(
        &mut self,
        close: u8,
        mut member: impl FnMut(&mut Self, &'a str) -> Option<()>,
    ) -> Option<()> {
        self.ws();
        if self.byte(close).is_some() {
            return Some(());
        }
        loop {
            let key = self.string()?;
            self.ws();
            self.byte(b':')?;
            self.ws();
            member(self, key)?;
            self.ws();
            if self.byte(b',').is_some() {
                self.ws();
            } else {
                return self.byte(close);
            }
        }
    }

    /// The elements of an array: `[`, then `element` for each, then `]`.
    fn elements(&mut self, mut element: impl FnMut(&mut Self) -> Option<()>) -> Option<()> {
        self.byte(b'[')?;
        self.ws();
        if self.byte(b']').is_some() {
            return Some(());
        }
        loop {
            element(self)?;
            self.ws();
            if self.byte(b',').is_some() {
                self.ws();
            } else {
                return self.byte(b']');
            }
        }
    }

    /// `model_inputs`: the object itself, or a JSON string holding it (read
    /// in place, still escaped).
    fn model_inputs(&mut self) -> Option<ModelInputs> {
        let in_string = self.peek()? == b'"';
        if in_string {
            self.pos += 1;
            self.escaped = true;
            self.ws();
        }
        self.byte(b'{')?;
        let mut numbers = None;
        let mut strings_seen = false;
        self.members(b'}', |s, key| match key {
            "numbers" if numbers.is_none() => {
                let mut list = Vec::new();
                s.elements(|s| {
                    list.push(s.number_tensor()?);
                    Some(())
                })?;
                numbers = Some(list);
                Some(())
            }
            // Only an empty list: string tensors are left to serde.
            "strings" if !strings_seen => {
                strings_seen = true;
                s.elements(|_| None)
            }
            _ => None,
        })?;
        if in_string {
            self.ws();
            self.escaped = false;
            self.byte(b'"')?;
        }
        Some(ModelInputs {
            numbers: numbers.unwrap_or_default(),
            strings: Vec::new(),
        })
    }

    fn number_tensor(&mut self) -> Option<NumberTensor> {
        self.byte(b'{')?;
        let mut name = None;
        let mut shape = None;
        let mut values = None;
        self.members(b'}', |s, key| match key {
            "name" if name.is_none() => {
                name = Some(s.string()?.to_owned());
                Some(())
            }
            "shape" if shape.is_none() => {
                let mut dims = Vec::new();
                s.elements(|s| {
                    dims.push(s.dimension()?);
                    Some(())
                })?;
                shape = Some(dims);
                Some(())
            }
            "values" if values.is_none() => {
                // Sized from the shape when it came first (growing a list
                // of thousands by doubling was a tenth of the time), but
                // never beyond what the rest of the text could hold.
                let room = s.text.len().saturating_sub(s.pos) / MIN_FIXED_POINT_BYTES + 1;
                let wanted = shape.as_deref().and_then(element_count).unwrap_or(0);
                let mut list = Vec::with_capacity(wanted.min(room));
                s.elements(|s| {
                    list.push(s.fixed_point()?);
                    Some(())
                })?;
                values = Some(list);
                Some(())
            }
            _ => None,
        })?;
        Some(NumberTensor {
            name: name?,
            shape: shape?,
            values: values?,
        })
    }

    /// A shape entry: a JSON integer without sign that fits `usize`.
    fn dimension(&mut self) -> Option<usize> {
        let text = self.integer_text()?;
        if text.starts_with('-') {
            return None;
        }
        text.parse().ok()
    }

    /// `{"value": .., "decimals": ..}` in either order, each once; the two
    /// texts go to [`FixedPoint::parse`], and a refusal there is left to the
    /// general decoder, which reports it with the input's name and index.
    fn fixed_point(&mut self) -> Option<FixedPoint> {
        if let Some((value, decimals)) = self.compact_pair() {
            return FixedPoint::parse(value, decimals).ok();
        }
        self.byte(b'{')?;
        let mut value = None;
        let mut decimals = None;
        self.members(b'}', |s, key| match key {
            "value" if value.is_none() => {
                value = Some(s.scalar()?);
                Some(())
            }
            "decimals" if decimals.is_none() => {
                decimals = Some(s.scalar()?);
                Some(())
            }
            _ => None,
        })?;
        FixedPoint::parse(value?, decimals?).ok()
    }

    /// `{"value":INT,"decimals":INT}` exactly as clients write it (no spaces,
    /// this key order, each half a JSON integer or a string holding one),
    /// matched by two literal compares instead of the member walk: half the
    /// scanner's time went to that walk. Any other form gives `None` with the
    /// cursor unmoved, and [`Self::fixed_point`] reads it member by member; the
    /// texts are the ones that walk hands on (a string's content, a number's
    /// text).
    fn compact_pair(&mut self) -> Option<(&'a str, &'a str)> {
        let start = self.pos;
        let pair = if self.escaped {
            self.pair_between(br#"{\"value\":"#, br#",\"decimals\":"#)
        } else {
            self.pair_between(br#"{"value":"#, br#","decimals":"#)
        };
        if pair.is_none() {
            self.pos = start;
        }
        pair
    }

    /// `open HALF mid HALF }`. The literals' lengths are constants, so each
    /// compare is a couple of word loads rather than a call to `memcmp`.
    fn pair_between<const A: usize, const B: usize>(
        &mut self,
        open: &[u8; A],
        mid: &[u8; B],
    ) -> Option<(&'a str, &'a str)> {
        self.literal(open)?;
        let value = self.pair_half()?;
        self.literal(mid)?;
        let decimals = self.pair_half()?;
        self.byte(b'}')?;
        Some((value, decimals))
    }

    /// A JSON integer, or a string whose whole content is one (`"-306552"`, as
    /// some clients send them): the text [`Self::scalar`] would hand on.
    fn pair_half(&mut self) -> Option<&'a str> {
        // A failed integer leaves the cursor where it was.
        if let Some(bare) = self.integer_text() {
            return Some(bare);
        }
        self.quote()?;
        let text = self.integer_text()?;
        self.quote()?;
        Some(text)
    }

    /// Consumes `p` if the text continues with it.
    fn literal<const N: usize>(&mut self, p: &[u8; N]) -> Option<()> {
        let rest = self.text.as_bytes().get(self.pos..)?;
        (rest.first_chunk::<N>()? == p).then(|| self.pos += N)
    }

    /// A fixed-point half as the general decoder hands it on: a string's
    /// content, or a number's text.
    fn scalar(&mut self) -> Option<&'a str> {
        match self.peek()? {
            b'"' | b'\\' => self.string(),
            _ => self.number_text(),
        }
    }

    /// `-?(0|[1-9][0-9]*)`: a JSON integer's text.
    fn integer_text(&mut self) -> Option<&'a str> {
        let bytes = self.text.as_bytes();
        let start = self.pos;
        let mut end = start + usize::from(bytes.get(start) == Some(&b'-'));
        match bytes.get(end)? {
            b'0' => end += 1,
            b'1'..=b'9' => {
                end += 1;
                while bytes.get(end).is_some_and(u8::is_ascii_digit) {
                    end += 1;
                }
            }
            _ => return None,
        }
        self.pos = end;
        self.text.get(start..end)
    }

    /// A JSON number without exponent, `int(.digits)?`; an exponent (which
    /// [`FixedPoint::parse`] refuses anyway) stops the fast path.
    fn number_text(&mut self) -> Option<&'a str> {
        let start = self.pos;
        self.integer_text()?;
        if self.peek() == Some(b'.') {
            self.pos += 1;
            if !self.peek()?.is_ascii_digit() {
                return None;
            }
            self.digits();
        }
        if matches!(self.peek(), Some(b'e' | b'E' | b'.' | b'0'..=b'9')) {
            return None;
        }
        self.text.get(start..self.pos)
    }

    fn digits(&mut self) {
        while self.peek().is_some_and(|b| b.is_ascii_digit()) {
            self.pos += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plain(values: &str) -> String {
        format!(r#"{{"numbers":[{{"name":"x","shape":[2],"values":[{values}]}}],"strings":[]}}"#)
    }

    /// The forms clients send do take the fast path (so the differential
    /// tests compare two paths, not the general decoder with itself).
    #[test]
    fn plain_forms_are_scanned() {
        let inner = plain(r#"{"value":15,"decimals":1},{"decimals":"2","value":"-2.5"}"#);
        let as_string = serde_json::json!({"ipfs_hash": "Qm", "model_inputs": inner}).to_string();
        let as_object = format!(r#"{{"ipfs_hash":"Qm","model_inputs":{inner}}}"#);
        // Python's json.dumps separators.
        let spaced = format!(
            r#"{{"model_inputs": {}, "ipfs_hash": "Qm"}}"#,
            serde_json::Value::String(inner.replace(',', ", ").replace(':', ": "))
        );
        for body in [&as_string, &as_object, &spaced] {
            let req = scan_request(body).unwrap_or_else(|| panic!("{body}"));
            let values = &req.inputs.numbers[0].values;
            assert_eq!(values[0].to_f64(), 1.5);
            assert_eq!(values[1].to_f64(), -0.025);
        }
        assert!(scan_inputs(&inner).is_some());
    }

    /// The compact pair takes integers written bare or as strings, in the plain
    /// text and inside the escaped `model_inputs` string; anything else leaves
    /// the cursor where it was for the member walk.
    #[test]
    fn compact_pairs_take_bare_and_quoted_integers() {
        let pair = |text: &str, escaped: bool| {
            let mut s = Scanner::new(text);
            s.escaped = escaped;
            let found = s.compact_pair().map(|(v, d)| (v.to_owned(), d.to_owned()));
            (found, s.pos)
        };
        let owned = |v: &str, d: &str| Some((v.to_owned(), d.to_owned()));
        let text = r#"{"value":-306552,"decimals":6}"#;
        assert_eq!(pair(text, false), (owned("-306552", "6"), text.len()));
        let text = r#"{"value":"-306552","decimals":"6"}"#;
        assert_eq!(pair(text, false), (owned("-306552", "6"), text.len()));
        let text = r#"{\"value\":\"0\",\"decimals\":6}"#;
        assert_eq!(pair(text, true), (owned("0", "6"), text.len()));
        for declined in [
            r#"{"value":"1.5","decimals":"6"}"#,
            r#"{"value":"007","decimals":6}"#,
            r#"{"value":"+1","decimals":6}"#,
            r#"{"value":"1,"decimals":6}"#,
            r#"{"value": 1,"decimals":6}"#,
            r#"{"decimals":6,"value":1}"#,
        ] {
            assert_eq!(pair(declined, false), (None, 0), "{declined}");
        }
        // An unescaped quote inside the escaped string is not the pair's quote.
        assert_eq!(pair(r#"{\"value\":"1",\"decimals\":6}"#, true), (None, 0));
    }

    /// What it leaves to the general decoder.
    #[test]
    fn unusual_forms_are_declined() {
        for inner in [
            plain(r#"{"value":1e1,"decimals":0},{"value":1,"decimals":0}"#),
            plain(r#"{"value":"\u0031","decimals":0},{"value":1,"decimals":0}"#),
            plain(r#"{"value":1,"decimals":19},{"value":1,"decimals":0}"#),
            plain(r#"{"value":1,"value":1,"decimals":0},{"value":1,"decimals":0}"#),
            r#"{"strings":[{"name":"s","shape":[1],"values":["a"]}]}"#.into(),
        ] {
            let body = serde_json::json!({"ipfs_hash": "Qm", "model_inputs": inner}).to_string();
            assert!(scan_request(&body).is_none(), "{body}");
            assert!(scan_inputs(&inner).is_none(), "{inner}");
        }
        // A raw tab inside the string is a control character, not whitespace.
        assert!(scan_request("{\"ipfs_hash\":\"Qm\",\"model_inputs\":\"{}\t\"}").is_none());
    }
}
