//! Request decoding: the two OpenGradient body shapes, the serde visitor
//! that keeps each fixed-point half as raw JSON, and the request types.

use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;

use super::scan::{scan_inputs, scan_request};
use super::{CodecError, FieldError, FixedPoint};

/// A decoded `/infer` request: which model, and its inputs still in wire form.
#[derive(Debug, Clone, PartialEq)]
pub struct InferRequest {
    /// The `ipfs_hash` field, unparsed (the caller validates CID syntax).
    pub model: String,
    /// Number and string tensors as sent.
    pub inputs: ModelInputs,
}

/// The decoded `model_inputs` object.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ModelInputs {
    /// Fixed-point number tensors.
    pub numbers: Vec<NumberTensor>,
    /// String tensors.
    pub strings: Vec<StringTensor>,
}

/// One number tensor as sent: name, shape and flat fixed-point values.
#[derive(Debug, Clone, PartialEq)]
pub struct NumberTensor {
    /// Input name.
    pub name: String,
    /// Requested shape.
    pub shape: Vec<usize>,
    /// Flat row-major values.
    pub values: Vec<FixedPoint>,
}

/// One string tensor as sent.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct StringTensor {
    /// Input name.
    pub name: String,
    /// Requested shape.
    pub shape: Vec<usize>,
    /// Flat row-major values.
    pub values: Vec<String>,
}

/// Strips JSON string quotes, if any, returning the inner text (unescaped).
fn json_scalar_text(raw: &str) -> Option<std::borrow::Cow<'_, str>> {
    let raw = raw.trim();
    if raw.starts_with('"') {
        if raw.contains('\\') {
            serde_json::from_str::<String>(raw).ok().map(Into::into)
        } else {
            raw.get(1..raw.len().checked_sub(1)?).map(Into::into)
        }
    } else {
        Some(raw.into())
    }
}

#[derive(Deserialize)]
struct WireRequest<'a> {
    ipfs_hash: Option<String>,
    #[serde(borrow, default)]
    model_inputs: Option<&'a RawValue>,
    #[serde(borrow, default)]
    num_inputs: Option<&'a RawValue>,
    #[serde(borrow, default)]
    string_inputs: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct WireInputs<'a> {
    #[serde(borrow, default)]
    numbers: Vec<WireNumberTensor<'a>>,
    #[serde(default)]
    strings: Vec<StringTensor>,
}

#[derive(Deserialize)]
struct WireNumberTensor<'a> {
    name: String,
    shape: Vec<usize>,
    #[serde(borrow)]
    values: Vec<WireFixed<'a>>,
}

struct WireFixed<'a> {
    value: &'a RawValue,
    decimals: &'a RawValue,
}

impl<'de: 'a, 'a> Deserialize<'de> for WireFixed<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = WireFixed<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object {\"value\", \"decimals\"}")
            }
            fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Self::Value, M::Error> {
                let mut value = None;
                let mut decimals = None;
                // A repeated key is refused, as serde refuses it in every
                // other object of the request: "last wins" would let two
                // readers of the same body see different numbers.
                while let Some(key) = map.next_key::<&str>()? {
                    match key {
                        "value" if value.is_some() => {
                            return Err(de::Error::duplicate_field("value"));
                        }
                        "decimals" if decimals.is_some() => {
                            return Err(de::Error::duplicate_field("decimals"));
                        }
                        "value" => value = Some(map.next_value::<&'de RawValue>()?),
                        "decimals" => decimals = Some(map.next_value::<&'de RawValue>()?),
                        _ => {
                            map.next_value::<de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(WireFixed {
                    value: value.ok_or_else(|| de::Error::missing_field("value"))?,
                    decimals: decimals.ok_or_else(|| de::Error::missing_field("decimals"))?,
                })
            }
        }
        d.deserialize_map(V(std::marker::PhantomData))
    }
}

/// Decodes an `/infer` body in either OpenGradient shape:
/// `{ipfs_hash, model_inputs: "<json>"}` (also accepting `model_inputs` as an
/// object) or the older `{ipfs_hash, num_inputs, string_inputs}`.
///
/// The plain form clients send takes a single-pass scanner; anything else
/// (and every refusal) goes through [`parse_request_general`], so both give
/// the same answer for every body.
pub fn parse_request(body: &[u8]) -> Result<InferRequest, CodecError> {
    let text = std::str::from_utf8(body).map_err(CodecError::NotUtf8)?;
    match scan_request(text) {
        Some(request) => Ok(request),
        None => general_request(text),
    }
}

/// [`parse_request`] without the fast path: the reference the scanner is
/// checked against (differential tests and the `og_scan` fuzz target).
pub fn parse_request_general(body: &[u8]) -> Result<InferRequest, CodecError> {
    let text = std::str::from_utf8(body).map_err(CodecError::NotUtf8)?;
    general_request(text)
}

fn general_request(text: &str) -> Result<InferRequest, CodecError> {
    let wire: WireRequest<'_> = serde_json::from_str(text).map_err(CodecError::json("body"))?;
    let model = wire
        .ipfs_hash
        .ok_or_else(|| CodecError::Malformed("missing field `ipfs_hash`".into()))?;
    let inputs = match (wire.model_inputs, wire.num_inputs, wire.string_inputs) {
        // The general decoder all the way down: the fast path has already
        // declined this body, and the reference must not depend on it.
        (Some(mi), None, None) => with_embedded(mi, "model_inputs", parse_inputs_general)?,
        (None, num, strings) if num.is_some() || strings.is_some() => {
            let numbers = match num {
                Some(raw) => with_embedded(raw, "num_inputs", parse_number_list)?,
                None => Vec::new(),
            };
            let strings = match strings {
                Some(raw) => with_embedded(raw, "string_inputs", |t| {
                    serde_json::from_str::<Vec<StringTensor>>(t)
                        .map_err(CodecError::json("string_inputs"))
                })?,
                None => Vec::new(),
            };
            ModelInputs { numbers, strings }
        }
        (None, None, None) => {
            return Err(CodecError::Malformed("missing field `model_inputs`".into()));
        }
        _ => {
            return Err(CodecError::Malformed(
                "send either `model_inputs` or `num_inputs`/`string_inputs`, not both".into(),
            ));
        }
    };
    Ok(InferRequest { model, inputs })
}

/// Calls `f` on the JSON text of a field that may hold the JSON itself or a
/// string containing it (OpenGradient sends the latter).
fn with_embedded<T>(
    raw: &RawValue,
    field: &'static str,
    f: impl FnOnce(&str) -> Result<T, CodecError>,
) -> Result<T, CodecError> {
    let text = raw.get().trim_start();
    if text.starts_with('"') {
        let inner: String = serde_json::from_str(text).map_err(CodecError::json(field))?;
        f(&inner)
    } else {
        f(text)
    }
}

/// Decodes the `model_inputs` JSON text (`{"numbers": [...], "strings": [...]}`).
/// `model_inputs` may also arrive as a JSON string holding that object.
/// Like [`parse_request`], the plain form takes the single-pass scanner.
pub fn parse_inputs(text: &str) -> Result<ModelInputs, CodecError> {
    match scan_inputs(text) {
        Some(inputs) => Ok(inputs),
        None => parse_inputs_general(text),
    }
}

/// [`parse_inputs`] without the fast path, the scanner's reference.
pub fn parse_inputs_general(text: &str) -> Result<ModelInputs, CodecError> {
    if text.trim_start().starts_with('"') {
        let inner: String = serde_json::from_str(text).map_err(CodecError::json("model_inputs"))?;
        return parse_object_inputs(&inner);
    }
    parse_object_inputs(text)
}

fn parse_object_inputs(text: &str) -> Result<ModelInputs, CodecError> {
    let wire: WireInputs<'_> =
        serde_json::from_str(text).map_err(CodecError::json("model_inputs"))?;
    Ok(ModelInputs {
        numbers: wire
            .numbers
            .into_iter()
            .map(convert_number_tensor)
            .collect::<Result<_, _>>()?,
        strings: wire.strings,
    })
}

fn parse_number_list(text: &str) -> Result<Vec<NumberTensor>, CodecError> {
    let wire: Vec<WireNumberTensor<'_>> =
        serde_json::from_str(text).map_err(CodecError::json("num_inputs"))?;
    wire.into_iter().map(convert_number_tensor).collect()
}

fn convert_number_tensor(t: WireNumberTensor<'_>) -> Result<NumberTensor, CodecError> {
    let mut values = Vec::with_capacity(t.values.len());
    for (index, v) in t.values.iter().enumerate() {
        let value_text = json_scalar_text(v.value.get());
        let decimals_text = json_scalar_text(v.decimals.get());
        let fp = match (&value_text, &decimals_text) {
            (Some(value), Some(decimals)) => FixedPoint::parse(value, decimals),
            (None, _) => Err(FieldError::Value),
            (_, None) => Err(FieldError::Decimals),
        };
        match fp {
            Ok(fp) => values.push(fp),
            Err(FieldError::Value) => {
                return Err(CodecError::InvalidNumber {
                    input: t.name,
                    index,
                    text: truncate(v.value.get()),
                });
            }
            Err(FieldError::Decimals) => {
                return Err(CodecError::InvalidDecimals {
                    input: t.name,
                    index,
                    text: truncate(v.decimals.get()),
                });
            }
        }
    }
    Ok(NumberTensor {
        name: t.name,
        shape: t.shape,
        values,
    })
}

fn truncate(s: &str) -> String {
    s.chars().take(40).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_current_shape_with_mixed_number_forms() {
        let inner = r#"{"numbers":[{"name":"x","shape":[2],"values":[{"value":15,"decimals":1},{"value":"-25","decimals":"2"}]}],"strings":[{"name":"s","shape":[1],"values":["hi"]}]}"#;
        let body = serde_json::json!({"ipfs_hash": "Qm", "model_inputs": inner}).to_string();
        let req = parse_request(body.as_bytes()).unwrap();
        assert_eq!(req.model, "Qm");
        assert_eq!(req.inputs.numbers[0].values[1].to_f64(), -0.25);
        assert_eq!(req.inputs.strings[0].values, vec!["hi".to_string()]);
    }

    #[test]
    fn parses_old_shape() {
        let body = r#"{"ipfs_hash":"Qm","num_inputs":[{"name":"x","shape":[1],"values":[{"value":"3","decimals":"0"}]}],"string_inputs":[]}"#;
        let req = parse_request(body.as_bytes()).unwrap();
        assert_eq!(req.inputs.numbers[0].values[0].to_f64(), 3.0);
        // Lists sent as JSON strings, as the OpenGradient README's "converted to string" suggests.
        let body = serde_json::json!({"ipfs_hash":"Qm","num_inputs":"[{\"name\":\"x\",\"shape\":[1],\"values\":[{\"value\":\"3\",\"decimals\":\"0\"}]}]"}).to_string();
        assert!(parse_request(body.as_bytes()).is_ok());
    }

    #[test]
    fn malformed_bodies_are_typed() {
        for body in [
            &b"not json"[..],
            b"{}",
            b"{\"ipfs_hash\":\"Qm\"}",
            b"{\"ipfs_hash\":\"Qm\",\"model_inputs\":\"{bad\"}",
            b"{\"ipfs_hash\":\"Qm\",\"model_inputs\":{\"numbers\":[{\"name\":\"x\",\"shape\":[1],\"values\":[{\"value\":1}]}]}}",
            b"\xff\xfe",
        ] {
            let err = parse_request(body).unwrap_err();
            assert_eq!(err.code(), "malformed_request", "{body:?}: {err}");
        }
        let body = br#"{"ipfs_hash":"Qm","model_inputs":{"numbers":[{"name":"x","shape":[1],"values":[{"value":1,"decimals":19}]}]}}"#;
        assert!(matches!(
            parse_request(body),
            Err(CodecError::InvalidDecimals { index: 0, .. })
        ));
    }

    #[test]
    fn duplicate_keys_are_refused_in_every_object() {
        // Each body is valid once the repeated key is dropped; with it, every
        // object of the request refuses alike (no "last wins" anywhere).
        let fixed = r#"{"value":1,"decimals":0}"#;
        let number = |values: &str| format!(r#"{{"name":"x","shape":[1],"values":[{values}]}}"#);
        let bodies = [
            // Inside a fixed-point number, both halves.
            format!(
                r#"{{"ipfs_hash":"Qm","model_inputs":{{"numbers":[{}]}}}}"#,
                number(r#"{"value":1,"value":2,"decimals":0}"#)
            ),
            format!(
                r#"{{"ipfs_hash":"Qm","model_inputs":{{"numbers":[{}]}}}}"#,
                number(r#"{"value":1,"decimals":0,"decimals":3}"#)
            ),
            // The same, in the older shape.
            format!(
                r#"{{"ipfs_hash":"Qm","num_inputs":[{}]}}"#,
                number(r#"{"decimals":0,"value":"1","value":"2"}"#)
            ),
            // A number tensor's own keys.
            format!(
                r#"{{"ipfs_hash":"Qm","model_inputs":{{"numbers":[{{"name":"x","name":"y","shape":[1],"values":[{fixed}]}}]}}}}"#
            ),
            format!(
                r#"{{"ipfs_hash":"Qm","model_inputs":{{"numbers":[{{"name":"x","shape":[1],"shape":[1],"values":[{fixed}]}}]}}}}"#
            ),
            // A string tensor's keys.
            r#"{"ipfs_hash":"Qm","model_inputs":{"strings":[{"name":"s","shape":[1],"values":["a"],"values":["b"]}]}}"#.to_string(),
            // model_inputs' keys, and the body's.
            format!(
                r#"{{"ipfs_hash":"Qm","model_inputs":{{"numbers":[],"numbers":[{}]}}}}"#,
                number(fixed)
            ),
            format!(
                r#"{{"ipfs_hash":"Qm","ipfs_hash":"Qn","model_inputs":{{"numbers":[{}]}}}}"#,
                number(fixed)
            ),
        ];
        for body in &bodies {
            let err = parse_request(body.as_bytes()).unwrap_err();
            assert_eq!(err.code(), "malformed_request", "{body}: {err}");
            assert!(err.to_string().contains("duplicate"), "{body}: {err}");
        }
        // The embedded-string form goes through the same decoder.
        let embedded = serde_json::json!({
            "ipfs_hash": "Qm",
            "model_inputs": format!(r#"{{"numbers":[{}]}}"#, number(r#"{"value":1,"value":2,"decimals":0}"#)),
        })
        .to_string();
        let err = parse_request(embedded.as_bytes()).unwrap_err();
        assert_eq!(err.code(), "malformed_request", "{err}");
        // Control: one of each key parses.
        let ok = format!(
            r#"{{"ipfs_hash":"Qm","model_inputs":{{"numbers":[{}]}}}}"#,
            number(fixed)
        );
        assert!(parse_request(ok.as_bytes()).is_ok());
    }
}
