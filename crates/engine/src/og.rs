//! OpenGradient's tensor JSON: the `/infer` request and response bodies of
//! OpenGradient's TEE ONNX node, decoded exactly and checked against a model.
//!
//! A number travels as a fixed-point pair `{value, decimals}` meaning
//! `value / 10^decimals`, where each half may be a JSON integer or a decimal
//! string. Conversion is exact up to the target type: integers use integer
//! arithmetic (truncating toward zero, as OpenGradient's `np.int_` does),
//! floats are the correctly rounded `f64` of the exact quotient (narrowed to
//! `f32` for float32 inputs, again as OpenGradient does).

#![deny(clippy::indexing_slicing)]

use std::collections::HashMap;
use std::fmt;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::ser::{SerializeSeq, Serializer};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use thiserror::Error;

use crate::{DType, ModelInfo, NamedTensor, Tensor, TensorData, element_count};

/// Largest `decimals` OpenGradient accepts (the precision of a 64-bit float).
pub const MAX_DECIMALS: u32 = 18;

/// Longest digit string accepted for one `value` (beyond any dtype's range).
const MAX_VALUE_DIGITS: usize = 64;

/// Why an OpenGradient request could not be turned into model inputs.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CodecError {
    /// The body (or the embedded `model_inputs` string) is not the JSON we expect.
    #[error("malformed request: {0}")]
    Malformed(String),
    /// A fixed-point `value` is not an integer or plain decimal.
    #[error("input {input:?}, element {index}: invalid number {text:?}")]
    InvalidNumber {
        /// Input name.
        input: String,
        /// Flat element index.
        index: usize,
        /// The offending JSON text.
        text: String,
    },
    /// `decimals` is negative, not an integer, or above [`MAX_DECIMALS`].
    #[error("input {input:?}, element {index}: decimals {text} out of range 0..={MAX_DECIMALS}")]
    InvalidDecimals {
        /// Input name.
        input: String,
        /// Flat element index.
        index: usize,
        /// The offending JSON text.
        text: String,
    },
    /// The number does not fit the model input's element type.
    #[error("input {input:?}, element {index}: value does not fit {dtype}")]
    OutOfRange {
        /// Input name.
        input: String,
        /// Flat element index.
        index: usize,
        /// Target type.
        dtype: DType,
    },
    /// Element count and shape disagree, or the shape does not fit the model.
    #[error("input {input:?}: {reason}")]
    Shape {
        /// Input name.
        input: String,
        /// What disagrees.
        reason: String,
    },
    /// Numbers sent for a string input or the reverse, or an unsupported dtype.
    #[error("input {input:?}: model expects {expected}, request sent {sent}")]
    TypeMismatch {
        /// Input name.
        input: String,
        /// Model's dtype.
        expected: DType,
        /// What the request carried (`numbers` or `strings`).
        sent: &'static str,
    },
    /// The model has no input with this name.
    #[error("unknown input {0:?}")]
    UnknownInput(String),
    /// The model declares an input the request did not send.
    #[error("missing input {0:?}")]
    MissingInput(String),
    /// The same input name was sent twice.
    #[error("duplicate input {0:?}")]
    DuplicateInput(String),
}

impl CodecError {
    /// Stable machine-readable code for the wire.
    pub fn code(&self) -> &'static str {
        match self {
            CodecError::Malformed(_) => "malformed_request",
            CodecError::InvalidNumber { .. } => "invalid_number",
            CodecError::InvalidDecimals { .. } => "invalid_decimals",
            CodecError::OutOfRange { .. } => "value_out_of_range",
            CodecError::Shape { .. } => "shape_mismatch",
            CodecError::TypeMismatch { .. } => "type_mismatch",
            CodecError::UnknownInput(_) => "unknown_input",
            CodecError::MissingInput(_) => "missing_input",
            CodecError::DuplicateInput(_) => "duplicate_input",
        }
    }
}

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

/// An exact decimal `sign · digits / 10^scale`, where `scale` already folds
/// in the `decimals` field and any fraction written in `value` itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FixedPoint {
    negative: bool,
    digits: Digits,
    scale: u32,
    /// The `decimals` field as sent, for error messages.
    decimals: u32,
}

/// The decimal digits without leading zeros. Numbers of up to 19 digits
/// (every number a client sends in practice) are held as a `u64`, so
/// decoding one allocates nothing; longer ones keep their text.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Digits {
    /// At most [`SMALL_DIGITS`] digits (`len` of them; 0 for zero).
    Small { mantissa: u64, len: u8 },
    /// More digits than fit a `u64` exactly.
    Big(Box<str>),
}

/// Digits a `u64` always holds (10^19 - 1 < 2^64).
const SMALL_DIGITS: usize = 19;

/// `10^k` for k ≤ 38 (the largest power of ten in `u128`).
fn pow10_u128(k: u32) -> Option<u128> {
    10u128.checked_pow(k)
}

impl FixedPoint {
    /// Builds `value / 10^decimals` from the two JSON texts as sent.
    /// Errors carry no input name; [`to_tensors`] adds it.
    pub fn parse(value: &str, decimals: &str) -> Result<FixedPoint, FieldError> {
        let decimals = parse_decimals(decimals).ok_or(FieldError::Decimals)?;
        let (negative, int_part, frac_part) = split_decimal(value).ok_or(FieldError::Value)?;
        let int_trimmed = int_part.trim_start_matches('0');
        // Leading zeros run into the fraction only when the integer part is all zeros.
        let frac_trimmed = if int_trimmed.is_empty() {
            frac_part.trim_start_matches('0')
        } else {
            frac_part
        };
        let len = int_trimmed.len() + frac_trimmed.len();
        if len > MAX_VALUE_DIGITS {
            return Err(FieldError::Value);
        }
        let digits = if len <= SMALL_DIGITS {
            let mantissa = int_trimmed
                .bytes()
                .chain(frac_trimmed.bytes())
                .fold(0u64, |m, b| m * 10 + u64::from(b - b'0'));
            Digits::Small {
                mantissa,
                len: len as u8,
            }
        } else {
            let mut text = String::with_capacity(len);
            text.push_str(int_trimmed);
            text.push_str(frac_trimmed);
            Digits::Big(text.into_boxed_str())
        };
        let frac_len = u32::try_from(frac_part.len()).map_err(|_| FieldError::Value)?;
        let is_zero = matches!(digits, Digits::Small { mantissa: 0, .. });
        Ok(FixedPoint {
            negative: negative && !is_zero,
            digits,
            scale: decimals + frac_len,
            decimals,
        })
    }

    /// The exact quotient, correctly rounded to `f64`.
    pub fn to_f64(&self) -> f64 {
        // Fast path (Clinger): both operands exact in f64, one rounding.
        if let Digits::Small { mantissa, len } = self.digits
            && self.scale <= 22
            && len <= 15
            && let Some(pow) = POW10_F64.get(self.scale as usize)
        {
            let v = mantissa as f64 / pow;
            return if self.negative { -v } else { v };
        }
        let sign = if self.negative { "-" } else { "" };
        let text = match &self.digits {
            Digits::Small { mantissa, .. } => format!("{sign}{mantissa}e-{}", self.scale),
            Digits::Big(d) => format!("{sign}{d}e-{}", self.scale),
        };
        // Rust's float parser is correctly rounded for any digit count.
        text.parse::<f64>().unwrap_or(f64::NAN)
    }

    /// The quotient truncated toward zero, or `None` beyond `i128`.
    pub fn to_i128_trunc(&self) -> Option<i128> {
        let magnitude: i128 = match &self.digits {
            Digits::Small { mantissa, .. } => match pow10_u128(self.scale) {
                Some(p) => i128::try_from(u128::from(*mantissa) / p).ok()?,
                // 10^scale is beyond u128, so beyond any u64 mantissa.
                None => 0,
            },
            Digits::Big(d) => {
                let keep = d.len().saturating_sub(self.scale as usize);
                let int_digits = d.get(..keep)?;
                if int_digits.is_empty() {
                    0
                } else {
                    int_digits.parse::<i128>().ok()?
                }
            }
        };
        Some(if self.negative { -magnitude } else { magnitude })
    }

    /// True when the quotient has no fractional part.
    pub fn is_integral(&self) -> bool {
        match &self.digits {
            Digits::Small { mantissa, .. } => match pow10_u128(self.scale) {
                Some(p) => u128::from(*mantissa) % p == 0,
                None => *mantissa == 0,
            },
            Digits::Big(d) => {
                let keep = d.len().saturating_sub(self.scale as usize);
                d.get(keep..).is_some_and(|f| f.bytes().all(|b| b == b'0'))
            }
        }
    }
}

/// Which half of a fixed-point pair was malformed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldError {
    /// The `value` half.
    Value,
    /// The `decimals` half.
    Decimals,
}

static POW10_F64: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
];

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

/// `[+-]?digits[.digits]` → (negative, integer digits, fraction digits).
fn split_decimal(text: &str) -> Option<(bool, &str, &str)> {
    let (negative, rest) = match text.as_bytes().first()? {
        b'-' => (true, text.get(1..)?),
        b'+' => (false, text.get(1..)?),
        _ => (false, text),
    };
    let (int_part, frac_part) = match rest.split_once('.') {
        Some((i, f)) => (i, f),
        None => (rest, ""),
    };
    let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if (int_part.is_empty() && frac_part.is_empty())
        || !all_digits(int_part)
        || !all_digits(frac_part)
    {
        return None;
    }
    if rest.contains('.') && (int_part.is_empty() || frac_part.is_empty()) {
        return None;
    }
    Some((negative, int_part, frac_part))
}

fn parse_decimals(text: &str) -> Option<u32> {
    if text.is_empty() || text.len() > 3 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let d: u32 = text.parse().ok()?;
    (d <= MAX_DECIMALS).then_some(d)
}

// ---------------------------------------------------------------------------
// Request decoding

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
pub fn parse_request(body: &[u8]) -> Result<InferRequest, CodecError> {
    let text =
        std::str::from_utf8(body).map_err(|_| CodecError::Malformed("body is not UTF-8".into()))?;
    let wire: WireRequest<'_> =
        serde_json::from_str(text).map_err(|e| CodecError::Malformed(format!("body: {e}")))?;
    let model = wire
        .ipfs_hash
        .ok_or_else(|| CodecError::Malformed("missing field `ipfs_hash`".into()))?;
    let inputs = match (wire.model_inputs, wire.num_inputs, wire.string_inputs) {
        (Some(mi), None, None) => with_embedded(mi, "model_inputs", parse_inputs)?,
        (None, num, strings) if num.is_some() || strings.is_some() => {
            let numbers = match num {
                Some(raw) => with_embedded(raw, "num_inputs", parse_number_list)?,
                None => Vec::new(),
            };
            let strings = match strings {
                Some(raw) => with_embedded(raw, "string_inputs", |t| {
                    serde_json::from_str::<Vec<StringTensor>>(t)
                        .map_err(|e| CodecError::Malformed(format!("string_inputs: {e}")))
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
    field: &str,
    f: impl FnOnce(&str) -> Result<T, CodecError>,
) -> Result<T, CodecError> {
    let text = raw.get().trim_start();
    if text.starts_with('"') {
        let inner: String = serde_json::from_str(text)
            .map_err(|e| CodecError::Malformed(format!("{field}: {e}")))?;
        f(&inner)
    } else {
        f(text)
    }
}

/// Decodes the `model_inputs` JSON text (`{"numbers": [...], "strings": [...]}`).
/// `model_inputs` may also arrive as a JSON string holding that object.
pub fn parse_inputs(text: &str) -> Result<ModelInputs, CodecError> {
    if text.trim_start().starts_with('"') {
        let inner: String = serde_json::from_str(text)
            .map_err(|e| CodecError::Malformed(format!("model_inputs: {e}")))?;
        return parse_object_inputs(&inner);
    }
    parse_object_inputs(text)
}

fn parse_object_inputs(text: &str) -> Result<ModelInputs, CodecError> {
    let wire: WireInputs<'_> = serde_json::from_str(text)
        .map_err(|e| CodecError::Malformed(format!("model_inputs: {e}")))?;
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
    let wire: Vec<WireNumberTensor<'_>> = serde_json::from_str(text)
        .map_err(|e| CodecError::Malformed(format!("num_inputs: {e}")))?;
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

// ---------------------------------------------------------------------------
// Conversion to engine tensors

/// Matches the request's tensors to the model's inputs by name and converts
/// each to the declared dtype and shape. The result follows `info.inputs` order.
pub fn to_tensors(inputs: &ModelInputs, info: &ModelInfo) -> Result<Vec<Tensor>, CodecError> {
    let mut slots: Vec<Option<Tensor>> = vec![None; info.inputs.len()];
    let mut seen: HashMap<&str, ()> = HashMap::new();
    for t in &inputs.numbers {
        let (pos, decl) = claim(&t.name, info, &mut seen)?;
        if decl.dtype == DType::String {
            return Err(CodecError::TypeMismatch {
                input: t.name.clone(),
                expected: decl.dtype,
                sent: "numbers",
            });
        }
        check_shape(&t.name, &t.shape, t.values.len(), decl)?;
        let data = convert_numbers(&t.name, &t.values, decl.dtype)?;
        put(&mut slots, pos, &t.name, t.shape.clone(), data)?;
    }
    for t in &inputs.strings {
        let (pos, decl) = claim(&t.name, info, &mut seen)?;
        if decl.dtype != DType::String {
            return Err(CodecError::TypeMismatch {
                input: t.name.clone(),
                expected: decl.dtype,
                sent: "strings",
            });
        }
        check_shape(&t.name, &t.shape, t.values.len(), decl)?;
        put(
            &mut slots,
            pos,
            &t.name,
            t.shape.clone(),
            TensorData::String(t.values.clone()),
        )?;
    }
    slots
        .into_iter()
        .zip(&info.inputs)
        .map(|(slot, decl)| slot.ok_or_else(|| CodecError::MissingInput(decl.name.clone())))
        .collect()
}

fn claim<'i>(
    name: &str,
    info: &'i ModelInfo,
    seen: &mut HashMap<&'i str, ()>,
) -> Result<(usize, &'i crate::TensorInfo), CodecError> {
    let (pos, decl) = info
        .input(name)
        .ok_or_else(|| CodecError::UnknownInput(name.to_string()))?;
    if seen.insert(decl.name.as_str(), ()).is_some() {
        return Err(CodecError::DuplicateInput(name.to_string()));
    }
    Ok((pos, decl))
}

fn put(
    slots: &mut [Option<Tensor>],
    pos: usize,
    name: &str,
    shape: Vec<usize>,
    data: TensorData,
) -> Result<(), CodecError> {
    let tensor = Tensor::new(shape, data).map_err(|e| CodecError::Shape {
        input: name.to_string(),
        reason: e.to_string(),
    })?;
    if let Some(slot) = slots.get_mut(pos) {
        *slot = Some(tensor);
    }
    Ok(())
}

fn check_shape(
    name: &str,
    shape: &[usize],
    count: usize,
    decl: &crate::TensorInfo,
) -> Result<(), CodecError> {
    let expected = element_count(shape).ok_or_else(|| CodecError::Shape {
        input: name.to_string(),
        reason: format!("shape {shape:?} overflows"),
    })?;
    if expected != count {
        return Err(CodecError::Shape {
            input: name.to_string(),
            reason: format!(
                "shape {shape:?} holds {expected} elements but {count} values were sent"
            ),
        });
    }
    if !decl.accepts_shape(shape) {
        return Err(CodecError::Shape {
            input: name.to_string(),
            reason: format!(
                "shape {shape:?} does not fit the model's {}",
                decl.signature()
            ),
        });
    }
    Ok(())
}

fn convert_numbers(
    name: &str,
    values: &[FixedPoint],
    dtype: DType,
) -> Result<TensorData, CodecError> {
    let out_of_range = |index: usize| CodecError::OutOfRange {
        input: name.to_string(),
        index,
        dtype,
    };
    macro_rules! ints {
        ($variant:ident, $t:ty) => {{
            let mut out = Vec::with_capacity(values.len());
            for (i, v) in values.iter().enumerate() {
                let n = v.to_i128_trunc().ok_or_else(|| out_of_range(i))?;
                out.push(<$t>::try_from(n).map_err(|_| out_of_range(i))?);
            }
            TensorData::$variant(out)
        }};
    }
    Ok(match dtype {
        DType::F64 => TensorData::F64(values.iter().map(FixedPoint::to_f64).collect()),
        DType::F32 => {
            let mut out = Vec::with_capacity(values.len());
            for (i, v) in values.iter().enumerate() {
                let x = v.to_f64() as f32;
                if x.is_infinite() {
                    return Err(out_of_range(i));
                }
                out.push(x);
            }
            TensorData::F32(out)
        }
        DType::I8 => ints!(I8, i8),
        DType::I16 => ints!(I16, i16),
        DType::I32 => ints!(I32, i32),
        DType::I64 => ints!(I64, i64),
        DType::U8 => ints!(U8, u8),
        DType::U16 => ints!(U16, u16),
        DType::U32 => ints!(U32, u32),
        DType::U64 => ints!(U64, u64),
        DType::Bool => {
            let mut out = Vec::with_capacity(values.len());
            for (i, v) in values.iter().enumerate() {
                match (v.is_integral(), v.to_i128_trunc()) {
                    (true, Some(0)) => out.push(false),
                    (true, Some(1)) => out.push(true),
                    _ => return Err(out_of_range(i)),
                }
            }
            TensorData::Bool(out)
        }
        DType::String => {
            return Err(CodecError::TypeMismatch {
                input: name.to_string(),
                expected: dtype,
                sent: "numbers",
            });
        }
    })
}

// ---------------------------------------------------------------------------
// Response encoding

/// The `/infer` response body.
#[derive(Debug, Serialize)]
pub struct InferResponse<'a> {
    /// One entry per model output, in graph order.
    pub output: Vec<OutputEntry<'a>>,
    /// SHA-256 hex of the model file.
    pub model_hash: &'a str,
}

/// One output tensor in OpenGradient's shape.
#[derive(Debug, Serialize)]
pub struct OutputEntry<'a> {
    /// Output name.
    pub name: &'a str,
    /// Shape of the result.
    pub shape: &'a [usize],
    /// Nested lists (a bare scalar for rank 0).
    pub result: Nested<'a>,
    /// `number` or `string`.
    #[serde(rename = "type")]
    pub kind: &'static str,
}

/// A flat tensor serialised as nested JSON lists following its shape.
/// Floats are written as the shortest `f64` text (what Python's
/// `ndarray.tolist()` + `json` produce); NaN and infinities become `null`;
/// booleans become 0/1 so every `number` output holds numbers.
#[derive(Debug)]
pub struct Nested<'a> {
    shape: &'a [usize],
    data: &'a TensorData,
}

/// Builds the response for `outputs` of a model whose file hashes to `model_hash`.
pub fn encode_response<'a>(outputs: &'a [NamedTensor], model_hash: &'a str) -> InferResponse<'a> {
    InferResponse {
        output: outputs
            .iter()
            .map(|o| OutputEntry {
                name: &o.name,
                shape: o.tensor.shape(),
                result: Nested {
                    shape: o.tensor.shape(),
                    data: o.tensor.data(),
                },
                kind: if o.tensor.dtype() == DType::String {
                    "string"
                } else {
                    "number"
                },
            })
            .collect(),
        model_hash,
    }
}

impl Serialize for Nested<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        serialize_level(
            s,
            self.shape,
            self.data,
            0,
            element_count(self.shape).unwrap_or(0),
        )
    }
}

fn serialize_level<S: Serializer>(
    s: S,
    shape: &[usize],
    data: &TensorData,
    offset: usize,
    span: usize,
) -> Result<S::Ok, S::Error> {
    let Some((&dim, rest)) = shape.split_first() else {
        return serialize_scalar(s, data, offset);
    };
    let stride = span.checked_div(dim).unwrap_or(0);
    let mut seq = s.serialize_seq(Some(dim))?;
    for i in 0..dim {
        seq.serialize_element(&Level {
            shape: rest,
            data,
            offset: offset + i * stride,
            span: stride,
        })?;
    }
    seq.end()
}

struct Level<'a> {
    shape: &'a [usize],
    data: &'a TensorData,
    offset: usize,
    span: usize,
}

impl Serialize for Level<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        serialize_level(s, self.shape, self.data, self.offset, self.span)
    }
}

fn serialize_scalar<S: Serializer>(s: S, data: &TensorData, i: usize) -> Result<S::Ok, S::Error> {
    fn float<S: Serializer>(s: S, x: Option<f64>) -> Result<S::Ok, S::Error> {
        match x {
            Some(x) if x.is_finite() => s.serialize_f64(x),
            _ => s.serialize_none(),
        }
    }
    match data {
        TensorData::F32(v) => float(s, v.get(i).map(|x| f64::from(*x))),
        TensorData::F64(v) => float(s, v.get(i).copied()),
        TensorData::I8(v) => s.serialize_i64(v.get(i).map_or(0, |x| i64::from(*x))),
        TensorData::I16(v) => s.serialize_i64(v.get(i).map_or(0, |x| i64::from(*x))),
        TensorData::I32(v) => s.serialize_i64(v.get(i).map_or(0, |x| i64::from(*x))),
        TensorData::I64(v) => s.serialize_i64(v.get(i).copied().unwrap_or(0)),
        TensorData::U8(v) => s.serialize_u64(v.get(i).map_or(0, |x| u64::from(*x))),
        TensorData::U16(v) => s.serialize_u64(v.get(i).map_or(0, |x| u64::from(*x))),
        TensorData::U32(v) => s.serialize_u64(v.get(i).map_or(0, |x| u64::from(*x))),
        TensorData::U64(v) => s.serialize_u64(v.get(i).copied().unwrap_or(0)),
        TensorData::Bool(v) => s.serialize_u64(u64::from(v.get(i).copied().unwrap_or(false))),
        TensorData::String(v) => s.serialize_str(v.get(i).map_or("", String::as_str)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Dim, TensorInfo};

    fn fp(v: &str, d: &str) -> FixedPoint {
        FixedPoint::parse(v, d).unwrap()
    }

    fn info(inputs: Vec<(&str, DType, Option<Vec<Dim>>)>) -> ModelInfo {
        ModelInfo {
            inputs: inputs
                .into_iter()
                .map(|(n, dtype, shape)| TensorInfo {
                    name: n.into(),
                    dtype,
                    shape,
                })
                .collect(),
            outputs: vec![],
        }
    }

    #[test]
    fn fixed_point_is_exact() {
        assert_eq!(fp("7286679744720459", "17").to_f64(), 0.07286679744720459);
        assert_eq!(fp("-15", "1").to_f64(), -1.5);
        assert_eq!(fp("1", "18").to_f64(), 1e-18);
        // 2^63 + 1 does not fit the fast path; the slow path stays exact.
        assert_eq!(
            fp("9223372036854775809", "0").to_f64(),
            9223372036854775808.0
        );
        assert_eq!(
            fp("123456789012345678901234567890", "18").to_f64(),
            // The reference is Rust's own correctly rounded parse of the exact decimal.
            "123456789012.34567890123456789".parse::<f64>().unwrap()
        );
        assert_eq!(fp("1.25", "1").to_f64(), 0.125);
        assert_eq!(fp("0", "5").to_f64(), 0.0);
        assert_eq!(fp("-0", "0").to_f64().to_bits(), 0.0f64.to_bits());
    }

    #[test]
    fn fixed_point_matches_decimal_then_f64_then_f32() {
        // OpenGradient: np.float32(Decimal(v) / Decimal(10**d)); Decimal → f64 → f32.
        let x = fp("16777217", "0").to_f64() as f32; // 2^24 + 1 rounds to even
        assert_eq!(x, 16777216.0);
        assert_eq!(fp("1", "1").to_f64() as f32, 0.1f32);
    }

    #[test]
    fn integers_truncate_toward_zero_like_np_int() {
        assert_eq!(fp("15", "1").to_i128_trunc(), Some(1));
        assert_eq!(fp("-15", "1").to_i128_trunc(), Some(-1));
        assert_eq!(fp("5", "3").to_i128_trunc(), Some(0));
        assert_eq!(fp("42", "0").to_i128_trunc(), Some(42));
        assert!(!fp("15", "1").is_integral() && fp("10", "1").is_integral());
    }

    #[test]
    fn short_and_long_digit_strings_agree() {
        // 19 digits stay inline, 20 go to the text form: both answer alike.
        let inline = fp("1234567890123456789", "3");
        let long = fp("12345678901234567890", "4");
        assert_eq!(inline.to_i128_trunc(), Some(1_234_567_890_123_456));
        assert_eq!(long.to_i128_trunc(), Some(1_234_567_890_123_456));
        assert_eq!(
            inline.to_f64(),
            "1234567890123456.789".parse::<f64>().unwrap()
        );
        assert_eq!(
            long.to_f64(),
            "1234567890123456.789".parse::<f64>().unwrap()
        );
        // Leading zeros, in the integer part and past the point.
        assert_eq!(fp("000.00125", "0").to_f64(), 0.00125);
        assert_eq!(fp("000.00125", "0").digits, fp("125", "5").digits);
        assert_eq!(fp("00100", "2").to_i128_trunc(), Some(1));
        // Scales beyond 10^38 (and beyond u64) truncate to zero, exactly.
        assert_eq!(fp("99", "18").to_i128_trunc(), Some(0));
        assert_eq!(fp("9.9", "18").to_i128_trunc(), Some(0));
        assert!(!fp("1", "18").is_integral());
        assert!(fp("1000", "3").is_integral() && fp("0", "18").is_integral());
        assert!(fp("100000000000000000000", "18").is_integral());
        assert_eq!(fp("100000000000000000000", "18").to_i128_trunc(), Some(100));
        assert_eq!(fp("-0.0", "0").to_f64().to_bits(), 0.0f64.to_bits());
    }

    #[test]
    fn rejects_bad_fields() {
        assert_eq!(FixedPoint::parse("1e5", "0"), Err(FieldError::Value));
        assert_eq!(FixedPoint::parse("abc", "0"), Err(FieldError::Value));
        assert_eq!(FixedPoint::parse("", "0"), Err(FieldError::Value));
        assert_eq!(FixedPoint::parse("1.", "0"), Err(FieldError::Value));
        assert_eq!(FixedPoint::parse("1", "19"), Err(FieldError::Decimals));
        assert_eq!(FixedPoint::parse("1", "-1"), Err(FieldError::Decimals));
        assert_eq!(FixedPoint::parse("1", "1.5"), Err(FieldError::Decimals));
        assert_eq!(
            FixedPoint::parse(&"9".repeat(65), "0"),
            Err(FieldError::Value)
        );
    }

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
            assert!(matches!(parse_request(body), Err(CodecError::Malformed(_))), "{body:?}");
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

    #[test]
    fn converts_to_each_dtype_and_checks_range() {
        let m = info(vec![(
            "x",
            DType::U8,
            Some(vec![Dim::Symbolic("n".into())]),
        )]);
        let mk = |v: &str| ModelInputs {
            numbers: vec![NumberTensor {
                name: "x".into(),
                shape: vec![1],
                values: vec![fp(v, "0")],
            }],
            strings: vec![],
        };
        assert_eq!(
            to_tensors(&mk("255"), &m).unwrap()[0].data(),
            &TensorData::U8(vec![255])
        );
        assert!(matches!(
            to_tensors(&mk("256"), &m),
            Err(CodecError::OutOfRange {
                dtype: DType::U8,
                ..
            })
        ));
        assert!(matches!(
            to_tensors(&mk("-1"), &m),
            Err(CodecError::OutOfRange { .. })
        ));
        let b = info(vec![("x", DType::Bool, None)]);
        assert_eq!(
            to_tensors(&mk("1"), &b).unwrap()[0].data(),
            &TensorData::Bool(vec![true])
        );
        assert!(to_tensors(&mk("2"), &b).is_err());
        let f = info(vec![("x", DType::F32, None)]);
        assert!(matches!(
            to_tensors(&mk(&"9".repeat(40)), &f),
            Err(CodecError::OutOfRange { .. })
        ));
    }

    #[test]
    fn names_and_shapes_are_checked() {
        let m = info(vec![(
            "x",
            DType::F32,
            Some(vec![Dim::Symbolic("b".into()), Dim::Fixed(2)]),
        )]);
        let t = |name: &str, shape: Vec<usize>, n: usize| NumberTensor {
            name: name.into(),
            shape,
            values: vec![fp("1", "0"); n],
        };
        let one = |t: NumberTensor| ModelInputs {
            numbers: vec![t],
            strings: vec![],
        };
        assert!(to_tensors(&one(t("x", vec![3, 2], 6)), &m).is_ok());
        assert!(matches!(
            to_tensors(&one(t("x", vec![3, 2], 5)), &m),
            Err(CodecError::Shape { .. })
        ));
        assert!(matches!(
            to_tensors(&one(t("x", vec![2, 3], 6)), &m),
            Err(CodecError::Shape { .. })
        ));
        assert!(matches!(
            to_tensors(&one(t("y", vec![1, 2], 2)), &m),
            Err(CodecError::UnknownInput(_))
        ));
        assert!(matches!(
            to_tensors(&ModelInputs::default(), &m),
            Err(CodecError::MissingInput(_))
        ));
        let dup = ModelInputs {
            numbers: vec![t("x", vec![1, 2], 2), t("x", vec![1, 2], 2)],
            strings: vec![],
        };
        assert!(matches!(
            to_tensors(&dup, &m),
            Err(CodecError::DuplicateInput(_))
        ));
        let strs = ModelInputs {
            numbers: vec![],
            strings: vec![StringTensor {
                name: "x".into(),
                shape: vec![1, 2],
                values: vec!["a".into(), "b".into()],
            }],
        };
        assert!(matches!(
            to_tensors(&strs, &m),
            Err(CodecError::TypeMismatch { .. })
        ));
    }

    #[test]
    fn encodes_nested_lists() {
        let outputs = vec![
            NamedTensor {
                name: "y".into(),
                tensor: Tensor::new(
                    vec![2, 3],
                    TensorData::F32(vec![0.1, 1.0, 2.5, f32::NAN, -0.0, 3.0]),
                )
                .unwrap(),
            },
            NamedTensor {
                name: "s".into(),
                tensor: Tensor::new(vec![], TensorData::String(vec!["a".into()])).unwrap(),
            },
            NamedTensor {
                name: "e".into(),
                tensor: Tensor::new(vec![2, 0], TensorData::I64(vec![])).unwrap(),
            },
            NamedTensor {
                name: "b".into(),
                tensor: Tensor::new(vec![2], TensorData::Bool(vec![true, false])).unwrap(),
            },
        ];
        let json = serde_json::to_value(encode_response(&outputs, "ab")).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"output": [
                {"name": "y", "shape": [2, 3], "result": [[0.10000000149011612, 1.0, 2.5], [null, -0.0, 3.0]], "type": "number"},
                {"name": "s", "shape": [], "result": "a", "type": "string"},
                {"name": "e", "shape": [2, 0], "result": [[], []], "type": "number"},
                {"name": "b", "shape": [2], "result": [1, 0], "type": "number"},
            ], "model_hash": "ab"})
        );
    }

    /// Bounded mutation fuzzing: no body, however mangled, makes the codec panic,
    /// and whatever parses converts (or fails) cleanly against a model.
    #[test]
    fn mutated_bodies_never_panic() {
        let inner = r#"{"numbers":[{"name":"x","shape":[2,2],"values":[{"value":15,"decimals":1},{"value":"-25","decimals":"2"},{"value":"1.5","decimals":0},{"value":7,"decimals":18}]}],"strings":[{"name":"s","shape":[1],"values":["hi"]}]}"#;
        let seed = serde_json::json!({"ipfs_hash": "QmX", "model_inputs": inner})
            .to_string()
            .into_bytes();
        let model = info(vec![
            (
                "x",
                DType::I16,
                Some(vec![Dim::Symbolic("n".into()), Dim::Fixed(2)]),
            ),
            ("s", DType::String, None),
        ]);
        let mut state = 0x9e3779b97f4a7c15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..20_000 {
            let mut body = seed.clone();
            for _ in 0..(next() % 4 + 1) {
                let pos = (next() as usize) % body.len();
                match next() % 3 {
                    0 => body[pos] = next() as u8,
                    1 => {
                        body.remove(pos);
                    }
                    _ => {
                        let alphabet = b"{}[]\",:0-9e.";
                        body.insert(pos, alphabet[(next() as usize) % alphabet.len()]);
                    }
                }
            }
            if let Ok(req) = parse_request(&body) {
                let _ = to_tensors(&req.inputs, &model);
            }
        }
    }
}
