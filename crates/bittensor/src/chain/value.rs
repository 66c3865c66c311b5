//! A small dynamic SCALE decoder over the metadata's type registry: enough for storage
//! values, constants, events and runtime-API answers, without generated code.
//!
//! Bytes are untrusted: every sequence length is checked against the bytes left before
//! anything is allocated, nesting depth is capped, and nothing panics.

use parity_scale_codec::{Compact, Decode};
use scale_info::form::PortableForm;
use scale_info::{PortableRegistry, TypeDef, TypeDefPrimitive};

/// How deep types may nest (subtensor's deepest are ~10; a cycle in a hostile registry
/// stops here instead of overflowing the stack).
pub const MAX_DEPTH: usize = 64;

/// A decoded SCALE value.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Value {
    /// `bool`.
    Bool(bool),
    /// Any unsigned integer (u8..u128, and compacts of them).
    Uint(u128),
    /// Any signed integer (i8..i128).
    Int(i128),
    /// `char`.
    Char(char),
    /// `str`.
    Str(String),
    /// u256/i256 and bit sequences, kept as raw bytes.
    Bytes(Vec<u8>),
    /// A struct or tuple: fields in order, named when the type names them.
    Composite(Vec<(Option<String>, Value)>),
    /// An enum variant.
    Variant {
        /// The variant's name.
        name: String,
        /// Its index byte.
        index: u8,
        /// Its fields.
        fields: Vec<(Option<String>, Value)>,
    },
    /// A `Vec` or array.
    Sequence(Vec<Value>),
}

impl Value {
    /// The unsigned integer inside, seeing through single-field wrappers (`NetUid(u16)`).
    pub fn as_u128(&self) -> Option<u128> {
        match self {
            Value::Uint(v) => Some(*v),
            Value::Composite(f) if f.len() == 1 => f[0].1.as_u128(),
            _ => None,
        }
    }

    /// The boolean inside, seeing through single-field wrappers.
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(b) => Some(*b),
            Value::Composite(f) if f.len() == 1 => f[0].1.as_bool(),
            _ => None,
        }
    }

    /// A field of a composite by name.
    pub fn field(&self, name: &str) -> Option<&Value> {
        let fields = match self {
            Value::Composite(f) => f,
            Value::Variant { fields, .. } => fields,
            _ => return None,
        };
        fields
            .iter()
            .find(|(n, _)| n.as_deref() == Some(name))
            .map(|(_, v)| v)
    }

    /// A sequence of `u8` (or a byte array) as bytes.
    pub fn as_bytes(&self) -> Option<Vec<u8>> {
        match self {
            Value::Sequence(items) => items
                .iter()
                .map(|v| match v {
                    Value::Uint(b) => u8::try_from(*b).ok(),
                    _ => None,
                })
                .collect(),
            Value::Bytes(b) => Some(b.clone()),
            Value::Composite(f) if f.len() == 1 => f[0].1.as_bytes(),
            _ => None,
        }
    }
}

/// Why bytes did not decode as a type.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ValueError {
    /// The type id is not in the registry.
    #[error("type {0} not in the registry")]
    UnknownType(u32),
    /// Types nest deeper than [`MAX_DEPTH`].
    #[error("types nest deeper than {MAX_DEPTH}")]
    TooDeep,
    /// The bytes end early or are not valid for the type.
    #[error("type {ty}: {source}")]
    Codec {
        /// The type id.
        ty: u32,
        /// The cause.
        #[source]
        source: parity_scale_codec::Error,
    },
    /// An enum index names no variant.
    #[error("type {ty}: no variant with index {index}")]
    BadVariant {
        /// The type id.
        ty: u32,
        /// The index byte.
        index: u8,
    },
    /// A length prefix promises more items than bytes are left.
    #[error("type {ty}: length {len} exceeds the {left} bytes left")]
    LengthTooLarge {
        /// The type id.
        ty: u32,
        /// The promised length.
        len: u64,
        /// Bytes left.
        left: usize,
    },
    /// Bytes were left over after the value.
    #[error("{0} bytes left after the value")]
    Trailing(usize),
}

/// Decodes all of `bytes` as type `ty` (trailing bytes are an error).
pub fn decode_all(registry: &PortableRegistry, ty: u32, bytes: &[u8]) -> Result<Value, ValueError> {
    let mut input = bytes;
    let v = decode(registry, ty, &mut input)?;
    if input.is_empty() {
        Ok(v)
    } else {
        Err(ValueError::Trailing(input.len()))
    }
}

/// Decodes one value of type `ty` from the front of `input`.
pub fn decode(
    registry: &PortableRegistry,
    ty: u32,
    input: &mut &[u8],
) -> Result<Value, ValueError> {
    decode_at(registry, ty, input, 0)
}

fn codec<T: Decode>(ty: u32, input: &mut &[u8]) -> Result<T, ValueError> {
    T::decode(input).map_err(|source| ValueError::Codec { ty, source })
}

/// `len` as a count, refused when it exceeds the bytes left (each item takes ≥ 1 byte).
fn check_len(ty: u32, len: u64, input: &[u8]) -> Result<usize, ValueError> {
    match usize::try_from(len) {
        Ok(n) if n <= input.len() => Ok(n),
        _ => Err(ValueError::LengthTooLarge {
            ty,
            len,
            left: input.len(),
        }),
    }
}

/// The next `len` bytes.
fn take<'a>(ty: u32, input: &mut &'a [u8], len: u64) -> Result<&'a [u8], ValueError> {
    let n = check_len(ty, len, input)?;
    let (head, rest) = input.split_at(n);
    *input = rest;
    Ok(head)
}

fn decode_fields(
    registry: &PortableRegistry,
    fields: &[scale_info::Field<PortableForm>],
    input: &mut &[u8],
    depth: usize,
) -> Result<Vec<(Option<String>, Value)>, ValueError> {
    fields
        .iter()
        .map(|f| {
            Ok((
                f.name.clone(),
                decode_at(registry, f.ty.id, input, depth + 1)?,
            ))
        })
        .collect()
}

fn decode_at(
    registry: &PortableRegistry,
    ty: u32,
    input: &mut &[u8],
    depth: usize,
) -> Result<Value, ValueError> {
    if depth > MAX_DEPTH {
        return Err(ValueError::TooDeep);
    }
    let t = registry.resolve(ty).ok_or(ValueError::UnknownType(ty))?;
    match &t.type_def {
        TypeDef::Composite(c) => Ok(Value::Composite(decode_fields(
            registry, &c.fields, input, depth,
        )?)),
        TypeDef::Variant(v) => {
            let index: u8 = codec(ty, input)?;
            let var = v
                .variants
                .iter()
                .find(|x| x.index == index)
                .ok_or(ValueError::BadVariant { ty, index })?;
            Ok(Value::Variant {
                name: var.name.clone(),
                index,
                fields: decode_fields(registry, &var.fields, input, depth)?,
            })
        }
        TypeDef::Sequence(s) => {
            // Every item takes at least one byte except zero-sized ones; a zero-sized item
            // type with a huge length is refused the same way (no honest chain sends it).
            let len = check_len(ty, codec::<Compact<u64>>(ty, input)?.0, input)?;
            let mut items = Vec::with_capacity(len);
            for _ in 0..len {
                items.push(decode_at(registry, s.type_param.id, input, depth + 1)?);
            }
            Ok(Value::Sequence(items))
        }
        TypeDef::Array(a) => {
            let len = check_len(ty, a.len.into(), input)?;
            let mut items = Vec::with_capacity(len);
            for _ in 0..len {
                items.push(decode_at(registry, a.type_param.id, input, depth + 1)?);
            }
            Ok(Value::Sequence(items))
        }
        TypeDef::Tuple(t) => {
            let mut fields = Vec::with_capacity(t.fields.len());
            for f in &t.fields {
                fields.push((None, decode_at(registry, f.id, input, depth + 1)?));
            }
            Ok(Value::Composite(fields))
        }
        TypeDef::Primitive(p) => decode_primitive(ty, p, input),
        TypeDef::Compact(c) => decode_compact(registry, ty, c.type_param.id, input, depth),
        TypeDef::BitSequence(_) => {
            // Bits are rare in what we read; keep the raw bytes (u8 store, Lsb0 order).
            let bits = codec::<Compact<u64>>(ty, input)?.0;
            Ok(Value::Bytes(take(ty, input, bits.div_ceil(8))?.to_vec()))
        }
    }
}

fn decode_compact(
    registry: &PortableRegistry,
    ty: u32,
    inner: u32,
    input: &mut &[u8],
    depth: usize,
) -> Result<Value, ValueError> {
    if depth > MAX_DEPTH {
        return Err(ValueError::TooDeep);
    }
    // A compact of a single-field wrapper is a compact of the field (e.g. Compact<NetUid>).
    let t = registry
        .resolve(inner)
        .ok_or(ValueError::UnknownType(inner))?;
    match &t.type_def {
        TypeDef::Composite(c) if c.fields.len() == 1 => {
            let v = decode_compact(registry, ty, c.fields[0].ty.id, input, depth + 1)?;
            Ok(Value::Composite(vec![(c.fields[0].name.clone(), v)]))
        }
        TypeDef::Composite(c) if c.fields.is_empty() => Ok(Value::Composite(vec![])),
        _ => Ok(Value::Uint(codec::<Compact<u128>>(ty, input)?.0)),
    }
}

fn decode_primitive(ty: u32, p: &TypeDefPrimitive, input: &mut &[u8]) -> Result<Value, ValueError> {
    Ok(match p {
        TypeDefPrimitive::Bool => Value::Bool(codec(ty, input)?),
        TypeDefPrimitive::Char => {
            let c: u32 = codec(ty, input)?;
            Value::Char(char::from_u32(c).ok_or(ValueError::Codec {
                ty,
                source: "invalid char".into(),
            })?)
        }
        TypeDefPrimitive::Str => {
            let len = codec::<Compact<u64>>(ty, input)?.0;
            Value::Str(String::from_utf8_lossy(take(ty, input, len)?).into_owned())
        }
        TypeDefPrimitive::U8 => Value::Uint(codec::<u8>(ty, input)?.into()),
        TypeDefPrimitive::U16 => Value::Uint(codec::<u16>(ty, input)?.into()),
        TypeDefPrimitive::U32 => Value::Uint(codec::<u32>(ty, input)?.into()),
        TypeDefPrimitive::U64 => Value::Uint(codec::<u64>(ty, input)?.into()),
        TypeDefPrimitive::U128 => Value::Uint(codec::<u128>(ty, input)?),
        TypeDefPrimitive::I8 => Value::Int(codec::<i8>(ty, input)?.into()),
        TypeDefPrimitive::I16 => Value::Int(codec::<i16>(ty, input)?.into()),
        TypeDefPrimitive::I32 => Value::Int(codec::<i32>(ty, input)?.into()),
        TypeDefPrimitive::I64 => Value::Int(codec::<i64>(ty, input)?.into()),
        TypeDefPrimitive::I128 => Value::Int(codec::<i128>(ty, input)?),
        TypeDefPrimitive::U256 | TypeDefPrimitive::I256 => {
            Value::Bytes(codec::<[u8; 32]>(ty, input)?.to_vec())
        }
    })
}
