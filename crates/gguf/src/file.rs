//! The bounded GGUF (v2/v3) reader.
//!
//! A model file arrives from a content store and may be hostile: every declared length is
//! checked against the bytes left in the file and against [`Limits`] *before* anything is
//! allocated, every size computation is overflow-checked, and every tensor must lie inside
//! the file, aligned, without overlapping another. Only the header, metadata and tensor
//! table are read; tensor data stays on disk for the engine to map or read.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufReader, Read, Seek, SeekFrom};

/// The four magic bytes every GGUF file starts with.
pub const MAGIC: [u8; 4] = *b"GGUF";

/// Tensor data alignment when `general.alignment` is absent (the GGUF default).
pub const DEFAULT_ALIGNMENT: u64 = 32;

/// Bounds applied while reading an untrusted file; [`Limits::default`] fits every real model
/// (a 256 k-token vocabulary needs about 30 MiB of metadata) with room to spare.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Memory charged to metadata in total: every value counts its in-memory size plus the
    /// bytes of its strings, so an array of a million `u8` costs what it really occupies.
    pub max_metadata_bytes: u64,
    /// Most metadata key/value pairs.
    pub max_kv: u64,
    /// Most elements in one metadata array.
    pub max_array_len: u64,
    /// Longest string (key, value, tensor name), in bytes.
    pub max_string_len: u64,
    /// Most tensors.
    pub max_tensors: u64,
    /// Most dimensions of one tensor.
    pub max_dims: u32,
    /// Deepest nesting of arrays inside arrays.
    pub max_array_depth: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_metadata_bytes: 64 << 20,
            max_kv: 1 << 16,
            max_array_len: 16 << 20,
            max_string_len: 16 << 20,
            max_tensors: 1 << 16,
            max_dims: 4,
            max_array_depth: 4,
        }
    }
}

/// One metadata value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// Type 0.
    U8(u8),
    /// Type 1.
    I8(i8),
    /// Type 2.
    U16(u16),
    /// Type 3.
    I16(i16),
    /// Type 4.
    U32(u32),
    /// Type 5.
    I32(i32),
    /// Type 6.
    F32(f32),
    /// Type 7 (a byte that must be 0 or 1).
    Bool(bool),
    /// Type 8 (UTF-8, length-prefixed).
    String(String),
    /// Type 10.
    U64(u64),
    /// Type 11.
    I64(i64),
    /// Type 12.
    F64(f64),
    /// Type 9: elements all of one declared type.
    Array(Vec<Value>),
}

impl Value {
    /// The value as an integer when it is one of the integer types.
    pub fn as_i128(&self) -> Option<i128> {
        Some(match *self {
            Value::U8(v) => v.into(),
            Value::I8(v) => v.into(),
            Value::U16(v) => v.into(),
            Value::I16(v) => v.into(),
            Value::U32(v) => v.into(),
            Value::I32(v) => v.into(),
            Value::U64(v) => v.into(),
            Value::I64(v) => v.into(),
            _ => return None,
        })
    }

    /// The value as a string slice when it is a string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    /// The elements when the value is an array.
    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }
}

/// The GGML tensor element types this reader knows the block layout of.
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum GgmlType {
    /// 32-bit float.
    F32,
    /// IEEE half.
    F16,
    /// bfloat16.
    BF16,
    /// 4-bit, blocks of 32, one f16 scale.
    Q4_0,
    /// 4-bit, blocks of 32, f16 scale and min.
    Q4_1,
    /// 5-bit, blocks of 32, one f16 scale.
    Q5_0,
    /// 5-bit, blocks of 32, f16 scale and min.
    Q5_1,
    /// 8-bit, blocks of 32, one f16 scale.
    Q8_0,
    /// 8-bit, blocks of 32, f16 scale and sum.
    Q8_1,
    /// 2-bit k-quant, super-blocks of 256.
    Q2K,
    /// 3-bit k-quant.
    Q3K,
    /// 4-bit k-quant.
    Q4K,
    /// 5-bit k-quant.
    Q5K,
    /// 6-bit k-quant.
    Q6K,
    /// 8-bit k-quant (intermediate type).
    Q8K,
    /// 8-bit integer.
    I8,
    /// 16-bit integer.
    I16,
    /// 32-bit integer.
    I32,
    /// 64-bit integer.
    I64,
    /// 64-bit float.
    F64,
}

impl GgmlType {
    /// Every known type.
    pub const ALL: [GgmlType; 20] = [
        GgmlType::F32,
        GgmlType::F16,
        GgmlType::BF16,
        GgmlType::Q4_0,
        GgmlType::Q4_1,
        GgmlType::Q5_0,
        GgmlType::Q5_1,
        GgmlType::Q8_0,
        GgmlType::Q8_1,
        GgmlType::Q2K,
        GgmlType::Q3K,
        GgmlType::Q4K,
        GgmlType::Q5K,
        GgmlType::Q6K,
        GgmlType::Q8K,
        GgmlType::I8,
        GgmlType::I16,
        GgmlType::I32,
        GgmlType::I64,
        GgmlType::F64,
    ];

    /// The `ggml_type` number stored in the file.
    pub fn id(self) -> u32 {
        match self {
            GgmlType::F32 => 0,
            GgmlType::F16 => 1,
            GgmlType::Q4_0 => 2,
            GgmlType::Q4_1 => 3,
            GgmlType::Q5_0 => 6,
            GgmlType::Q5_1 => 7,
            GgmlType::Q8_0 => 8,
            GgmlType::Q8_1 => 9,
            GgmlType::Q2K => 10,
            GgmlType::Q3K => 11,
            GgmlType::Q4K => 12,
            GgmlType::Q5K => 13,
            GgmlType::Q6K => 14,
            GgmlType::Q8K => 15,
            GgmlType::I8 => 24,
            GgmlType::I16 => 25,
            GgmlType::I32 => 26,
            GgmlType::I64 => 27,
            GgmlType::F64 => 28,
            GgmlType::BF16 => 30,
        }
    }

    /// The type with `ggml_type` number `id`, if known.
    pub fn from_id(id: u32) -> Option<GgmlType> {
        GgmlType::ALL.into_iter().find(|t| t.id() == id)
    }

    /// Elements per block (the first dimension must be a multiple of it).
    pub fn block_size(self) -> u64 {
        match self {
            GgmlType::Q4_0
            | GgmlType::Q4_1
            | GgmlType::Q5_0
            | GgmlType::Q5_1
            | GgmlType::Q8_0
            | GgmlType::Q8_1 => 32,
            GgmlType::Q2K
            | GgmlType::Q3K
            | GgmlType::Q4K
            | GgmlType::Q5K
            | GgmlType::Q6K
            | GgmlType::Q8K => 256,
            _ => 1,
        }
    }

    /// Bytes per block.
    pub fn block_bytes(self) -> u64 {
        match self {
            GgmlType::F32 | GgmlType::I32 => 4,
            GgmlType::F16 | GgmlType::BF16 | GgmlType::I16 => 2,
            GgmlType::I8 => 1,
            GgmlType::I64 | GgmlType::F64 => 8,
            GgmlType::Q4_0 => 18,
            GgmlType::Q4_1 => 20,
            GgmlType::Q5_0 => 22,
            GgmlType::Q5_1 => 24,
            GgmlType::Q8_0 => 34,
            GgmlType::Q8_1 => 36,
            GgmlType::Q2K => 84,
            GgmlType::Q3K => 110,
            GgmlType::Q4K => 144,
            GgmlType::Q5K => 176,
            GgmlType::Q6K => 210,
            GgmlType::Q8K => 292,
        }
    }

    /// The name llama.cpp prints (`Q4_K`, `F16`, ...).
    pub fn name(self) -> &'static str {
        match self {
            GgmlType::F32 => "F32",
            GgmlType::F16 => "F16",
            GgmlType::BF16 => "BF16",
            GgmlType::Q4_0 => "Q4_0",
            GgmlType::Q4_1 => "Q4_1",
            GgmlType::Q5_0 => "Q5_0",
            GgmlType::Q5_1 => "Q5_1",
            GgmlType::Q8_0 => "Q8_0",
            GgmlType::Q8_1 => "Q8_1",
            GgmlType::Q2K => "Q2_K",
            GgmlType::Q3K => "Q3_K",
            GgmlType::Q4K => "Q4_K",
            GgmlType::Q5K => "Q5_K",
            GgmlType::Q6K => "Q6_K",
            GgmlType::Q8K => "Q8_K",
            GgmlType::I8 => "I8",
            GgmlType::I16 => "I16",
            GgmlType::I32 => "I32",
            GgmlType::I64 => "I64",
            GgmlType::F64 => "F64",
        }
    }

    /// Bytes taken by a tensor of this type and shape (`dims[0]` innermost), or `None` when
    /// the first dimension is not a multiple of the block size or the size overflows.
    pub fn tensor_bytes(self, dims: &[u64]) -> Option<u64> {
        let (first, rest) = match dims.split_first() {
            Some(s) => s,
            None => return Some(self.block_bytes()).filter(|_| self.block_size() == 1),
        };
        if first % self.block_size() != 0 {
            return None;
        }
        let row = (first / self.block_size()).checked_mul(self.block_bytes())?;
        rest.iter().try_fold(row, |acc, &d| acc.checked_mul(d))
    }
}

impl std::fmt::Display for GgmlType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One entry of the tensor table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorInfo {
    /// Tensor name (`blk.0.attn_q.weight`, ...).
    pub name: String,
    /// Shape, innermost (contiguous) dimension first, as GGML stores it.
    pub dims: Vec<u64>,
    /// Element type.
    pub ggml_type: GgmlType,
    /// Absolute offset of the first byte in the file.
    pub offset: u64,
    /// Bytes of tensor data (from `dims` and the type's block layout).
    pub size: u64,
}

impl TensorInfo {
    /// Number of elements.
    pub fn n_elements(&self) -> u64 {
        // Cannot overflow: `size` (≥ elements / block × block bytes) was computed checked.
        self.dims.iter().product()
    }
}

/// Why a file was refused; `offset` is where in the file reading failed.
#[derive(Debug, thiserror::Error)]
pub enum GgufError {
    /// The underlying reader failed.
    #[error("I/O error at offset {offset}")]
    Io {
        /// Offset of the failed read.
        offset: u64,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The file ends before a declared structure does.
    #[error("file truncated at offset {offset} while reading {what}")]
    Truncated {
        /// Offset of the read that did not fit.
        offset: u64,
        /// What was being read.
        what: &'static str,
    },
    /// The file does not start with `GGUF`.
    #[error("not a GGUF file (magic {found:02x?})")]
    BadMagic {
        /// The first four bytes.
        found: [u8; 4],
    },
    /// Version other than 2 or 3 (version 1 used 32-bit lengths and is obsolete).
    #[error("unsupported GGUF version {0}")]
    UnsupportedVersion(u32),
    /// A declared count or length exceeds a [`Limits`] bound.
    #[error("{what} = {value} exceeds the limit {limit} at offset {offset} (key/tensor {at:?})")]
    Limit {
        /// Offset of the field.
        offset: u64,
        /// Which bound.
        what: &'static str,
        /// The declared value.
        value: u64,
        /// The bound.
        limit: u64,
        /// The metadata key or tensor being read ("" for the header).
        at: String,
    },
    /// A string is not UTF-8.
    #[error("invalid UTF-8 in a string at offset {offset} (key/tensor {at:?})")]
    Utf8 {
        /// Offset of the string's bytes.
        offset: u64,
        /// The metadata key or tensor being read.
        at: String,
    },
    /// A metadata value type number outside the specification.
    #[error("unknown value type {type_id} at offset {offset} (key {key:?})")]
    UnknownValueType {
        /// Offset of the type field.
        offset: u64,
        /// The key.
        key: String,
        /// The type number.
        type_id: u32,
    },
    /// A boolean byte other than 0 or 1.
    #[error("invalid boolean {byte} at offset {offset} (key {key:?})")]
    BadBool {
        /// Offset of the byte.
        offset: u64,
        /// The key.
        key: String,
        /// The byte.
        byte: u8,
    },
    /// Two metadata pairs with one key.
    #[error("duplicate metadata key {0:?}")]
    DuplicateKey(String),
    /// `general.alignment` that is not a non-zero power of two (or not an integer).
    #[error("invalid general.alignment {0}")]
    BadAlignment(u64),
    /// Two tensors with one name.
    #[error("duplicate tensor {0:?}")]
    DuplicateTensor(String),
    /// A tensor type number this reader does not know.
    #[error("tensor {tensor:?}: unknown ggml type {type_id}")]
    UnknownTensorType {
        /// Tensor name.
        tensor: String,
        /// Type number.
        type_id: u32,
    },
    /// A shape that is empty of elements, overflows, or does not fit the type's blocks.
    #[error("tensor {tensor:?}: invalid shape {dims:?} for type {ggml_type}")]
    BadShape {
        /// Tensor name.
        tensor: String,
        /// Declared shape.
        dims: Vec<u64>,
        /// Declared type.
        ggml_type: GgmlType,
    },
    /// Tensor data not aligned to `general.alignment`.
    #[error("tensor {tensor:?}: data offset {offset} not aligned to {alignment}")]
    Misaligned {
        /// Tensor name.
        tensor: String,
        /// Offset relative to the data section.
        offset: u64,
        /// Required alignment.
        alignment: u64,
    },
    /// Tensor data reaching past the end of the file.
    #[error("tensor {tensor:?}: bytes {start}..{end} outside the file of {file_len} bytes")]
    OutOfFile {
        /// Tensor name.
        tensor: String,
        /// Absolute start (saturated).
        start: u64,
        /// Absolute end (saturated).
        end: u64,
        /// File length.
        file_len: u64,
    },
    /// Two tensors sharing bytes.
    #[error("tensors {0:?} and {1:?} overlap")]
    Overlap(String, String),
}

/// A parsed GGUF header: metadata and tensor table (no tensor data).
#[derive(Debug, Clone, PartialEq)]
pub struct Gguf {
    /// Format version (2 or 3).
    pub version: u32,
    /// Metadata key/value pairs.
    pub metadata: BTreeMap<String, Value>,
    /// The tensor table, in file order.
    pub tensors: Vec<TensorInfo>,
    /// Absolute offset of the (aligned) tensor data section.
    pub data_offset: u64,
}

/// Reads primitives while counting the offset and refusing to read past `file_len`.
struct Cursor<R> {
    r: R,
    pos: u64,
    file_len: u64,
    budget: u64,
    limits: Limits,
}

const VALUE_COST: u64 = std::mem::size_of::<Value>() as u64;

impl<R: Read> Cursor<R> {
    fn left(&self) -> u64 {
        self.file_len.saturating_sub(self.pos)
    }

    fn bytes<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], GgufError> {
        let mut buf = [0u8; N];
        self.fill(&mut buf, what)?;
        Ok(buf)
    }

    fn fill(&mut self, buf: &mut [u8], what: &'static str) -> Result<(), GgufError> {
        if (buf.len() as u64) > self.left() {
            return Err(GgufError::Truncated {
                offset: self.pos,
                what,
            });
        }
        self.r.read_exact(buf).map_err(|source| {
            if source.kind() == std::io::ErrorKind::UnexpectedEof {
                GgufError::Truncated {
                    offset: self.pos,
                    what,
                }
            } else {
                GgufError::Io {
                    offset: self.pos,
                    source,
                }
            }
        })?;
        self.pos += buf.len() as u64;
        Ok(())
    }

    fn u32(&mut self, what: &'static str) -> Result<u32, GgufError> {
        self.bytes(what).map(u32::from_le_bytes)
    }

    fn u64(&mut self, what: &'static str) -> Result<u64, GgufError> {
        self.bytes(what).map(u64::from_le_bytes)
    }

    fn limit(&self, what: &'static str, value: u64, limit: u64, at: &str) -> Result<(), GgufError> {
        if value > limit {
            return Err(GgufError::Limit {
                offset: self.pos,
                what,
                value,
                limit,
                at: at.to_owned(),
            });
        }
        Ok(())
    }

    /// Charges `cost` bytes of memory to the metadata budget.
    fn charge(&mut self, cost: u64, at: &str) -> Result<(), GgufError> {
        let total = self.limits.max_metadata_bytes - self.budget;
        self.limit(
            "metadata bytes",
            total.saturating_add(cost),
            self.limits.max_metadata_bytes,
            at,
        )?;
        self.budget -= cost;
        Ok(())
    }

    fn string(&mut self, what: &'static str, at: &str) -> Result<String, GgufError> {
        let len = self.u64(what)?;
        self.limit("string length", len, self.limits.max_string_len, at)?;
        if len > self.left() {
            return Err(GgufError::Truncated {
                offset: self.pos,
                what,
            });
        }
        let offset = self.pos;
        // Bounded by the checks above: at most max_string_len and at most the bytes left.
        let mut buf = vec![0u8; len as usize];
        self.fill(&mut buf, what)?;
        String::from_utf8(buf).map_err(|_| GgufError::Utf8 {
            offset,
            at: at.to_owned(),
        })
    }

    fn value(&mut self, type_id: u32, key: &str, depth: u32) -> Result<Value, GgufError> {
        const W: &str = "metadata value";
        Ok(match type_id {
            0 => Value::U8(u8::from_le_bytes(self.bytes(W)?)),
            1 => Value::I8(i8::from_le_bytes(self.bytes(W)?)),
            2 => Value::U16(u16::from_le_bytes(self.bytes(W)?)),
            3 => Value::I16(i16::from_le_bytes(self.bytes(W)?)),
            4 => Value::U32(u32::from_le_bytes(self.bytes(W)?)),
            5 => Value::I32(i32::from_le_bytes(self.bytes(W)?)),
            6 => Value::F32(f32::from_le_bytes(self.bytes(W)?)),
            7 => {
                let offset = self.pos;
                match self.bytes::<1>(W)? {
                    [0] => Value::Bool(false),
                    [1] => Value::Bool(true),
                    [byte] => {
                        return Err(GgufError::BadBool {
                            offset,
                            key: key.to_owned(),
                            byte,
                        });
                    }
                }
            }
            8 => {
                let s = self.string("string value", key)?;
                self.charge(s.len() as u64, key)?;
                Value::String(s)
            }
            9 => {
                self.limit(
                    "array nesting",
                    u64::from(depth) + 1,
                    u64::from(self.limits.max_array_depth),
                    key,
                )?;
                let type_offset = self.pos;
                let elem = self.u32("array type")?;
                let min_size = min_encoded_size(elem).ok_or(GgufError::UnknownValueType {
                    offset: type_offset,
                    key: key.to_owned(),
                    type_id: elem,
                })?;
                let count = self.u64("array length")?;
                self.limit("array length", count, self.limits.max_array_len, key)?;
                // Each element needs at least `min_size` bytes of file: a count the file cannot
                // hold is refused before reserving anything.
                if count.saturating_mul(min_size) > self.left() {
                    return Err(GgufError::Truncated {
                        offset: self.pos,
                        what: "array elements",
                    });
                }
                self.charge(count.saturating_mul(VALUE_COST), key)?;
                let mut items = Vec::with_capacity(count as usize);
                for _ in 0..count {
                    items.push(self.value(elem, key, depth + 1)?);
                }
                Value::Array(items)
            }
            10 => Value::U64(u64::from_le_bytes(self.bytes(W)?)),
            11 => Value::I64(i64::from_le_bytes(self.bytes(W)?)),
            12 => Value::F64(f64::from_le_bytes(self.bytes(W)?)),
            other => {
                return Err(GgufError::UnknownValueType {
                    offset: self.pos.saturating_sub(4),
                    key: key.to_owned(),
                    type_id: other,
                });
            }
        })
    }
}

/// Smallest encoding of a value of type `type_id` (None for unknown types).
fn min_encoded_size(type_id: u32) -> Option<u64> {
    Some(match type_id {
        0 | 1 | 7 => 1,
        2 | 3 => 2,
        4..=6 => 4,
        8 | 10..=12 => 8,
        9 => 12,
        _ => return None,
    })
}

impl Gguf {
    /// Reads the header, metadata and tensor table of a GGUF file of `file_len` bytes from
    /// `r` (positioned anywhere: it is rewound to the start), within `limits`.
    pub fn read<R: Read + Seek>(r: R, file_len: u64, limits: &Limits) -> Result<Gguf, GgufError> {
        let mut r = BufReader::with_capacity(64 << 10, r);
        r.seek(SeekFrom::Start(0))
            .map_err(|source| GgufError::Io { offset: 0, source })?;
        let mut c = Cursor {
            r,
            pos: 0,
            file_len,
            budget: limits.max_metadata_bytes,
            limits: *limits,
        };
        let magic = c.bytes::<4>("magic")?;
        if magic != MAGIC {
            return Err(GgufError::BadMagic { found: magic });
        }
        let version = c.u32("version")?;
        if !(2..=3).contains(&version) {
            return Err(GgufError::UnsupportedVersion(version));
        }
        let n_tensors = c.u64("tensor count")?;
        c.limit("tensor count", n_tensors, limits.max_tensors, "")?;
        let n_kv = c.u64("metadata count")?;
        c.limit("metadata count", n_kv, limits.max_kv, "")?;

        let mut metadata = BTreeMap::new();
        for _ in 0..n_kv {
            let key = c.string("metadata key", "")?;
            c.charge(key.len() as u64 + VALUE_COST, &key)?;
            let type_id = c.u32("value type")?;
            let value = c.value(type_id, &key, 0)?;
            if metadata.contains_key(&key) {
                return Err(GgufError::DuplicateKey(key));
            }
            metadata.insert(key, value);
        }

        let alignment = match metadata.get("general.alignment") {
            None => DEFAULT_ALIGNMENT,
            Some(v) => {
                let a = v.as_i128().unwrap_or(0);
                let a = u64::try_from(a).unwrap_or(0);
                if a == 0 || !a.is_power_of_two() {
                    return Err(GgufError::BadAlignment(a));
                }
                a
            }
        };

        // Tensor entries are at least 8 (name) + 4 (dims) + 4 (type) + 8 (offset) bytes.
        if n_tensors.saturating_mul(24) > c.left() {
            return Err(GgufError::Truncated {
                offset: c.pos,
                what: "tensor table",
            });
        }
        let mut raw = Vec::with_capacity(n_tensors as usize);
        let mut names = HashMap::with_capacity(n_tensors as usize);
        for _ in 0..n_tensors {
            let name = c.string("tensor name", "")?;
            let n_dims = c.u32("tensor dims")?;
            c.limit(
                "tensor dimensions",
                n_dims.into(),
                limits.max_dims.into(),
                &name,
            )?;
            let mut dims = Vec::with_capacity(n_dims as usize);
            for _ in 0..n_dims {
                dims.push(c.u64("tensor dim")?);
            }
            let type_id = c.u32("tensor type")?;
            let rel = c.u64("tensor offset")?;
            let Some(ggml_type) = GgmlType::from_id(type_id) else {
                return Err(GgufError::UnknownTensorType {
                    tensor: name,
                    type_id,
                });
            };
            if names.insert(name.clone(), ()).is_some() {
                return Err(GgufError::DuplicateTensor(name));
            }
            raw.push((name, dims, ggml_type, rel));
        }
        let data_offset = c
            .pos
            .checked_next_multiple_of(alignment)
            .ok_or(GgufError::BadAlignment(alignment))?;

        let mut tensors = Vec::with_capacity(raw.len());
        for (name, dims, ggml_type, rel) in raw {
            let size = match ggml_type.tensor_bytes(&dims) {
                Some(s) if !dims.is_empty() => s,
                _ => {
                    return Err(GgufError::BadShape {
                        tensor: name,
                        dims,
                        ggml_type,
                    });
                }
            };
            if rel % alignment != 0 {
                return Err(GgufError::Misaligned {
                    tensor: name,
                    offset: rel,
                    alignment,
                });
            }
            let start = data_offset.saturating_add(rel);
            let end = start.saturating_add(size);
            if end > file_len || start == u64::MAX {
                return Err(GgufError::OutOfFile {
                    tensor: name,
                    start,
                    end,
                    file_len,
                });
            }
            tensors.push(TensorInfo {
                name,
                dims,
                ggml_type,
                offset: start,
                size,
            });
        }
        let mut order: Vec<&TensorInfo> = tensors.iter().filter(|t| t.size > 0).collect();
        order.sort_by_key(|t| t.offset);
        for pair in order.windows(2) {
            if let [a, b] = pair
                && a.offset + a.size > b.offset
            {
                return Err(GgufError::Overlap(a.name.clone(), b.name.clone()));
            }
        }
        Ok(Gguf {
            version,
            metadata,
            tensors,
            data_offset,
        })
    }

    /// The value under `key`.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.metadata.get(key)
    }

    /// The string under `key`.
    pub fn get_str(&self, key: &str) -> Option<&str> {
        self.get(key)?.as_str()
    }

    /// The integer under `key` when it has any integer type and fits a `u32`.
    pub fn get_u32(&self, key: &str) -> Option<u32> {
        u32::try_from(self.get(key)?.as_i128()?).ok()
    }

    /// The float under `key` (`f32`, or `f64` narrowed).
    pub fn get_f32(&self, key: &str) -> Option<f32> {
        match *self.get(key)? {
            Value::F32(v) => Some(v),
            Value::F64(v) => Some(v as f32),
            _ => None,
        }
    }

    /// The boolean under `key`.
    pub fn get_bool(&self, key: &str) -> Option<bool> {
        match *self.get(key)? {
            Value::Bool(b) => Some(b),
            _ => None,
        }
    }

    /// `general.architecture` (`llama`, `qwen2`, ...).
    pub fn architecture(&self) -> Option<&str> {
        self.get_str("general.architecture")
    }

    /// The architecture-scoped integer `{arch}.{suffix}`, e.g. `arch_u32("context_length")`.
    pub fn arch_u32(&self, suffix: &str) -> Option<u32> {
        self.get_u32(&format!("{}.{suffix}", self.architecture()?))
    }

    /// A one-word quantisation summary: the most common type (by elements) among the 2-D
    /// weight tensors, else the name of `general.file_type`, else `"unknown"`.
    pub fn quantisation(&self) -> String {
        let mut by_type: BTreeMap<GgmlType, u64> = BTreeMap::new();
        for t in self.tensors.iter().filter(|t| t.dims.len() == 2) {
            *by_type.entry(t.ggml_type).or_default() += t.n_elements();
        }
        if let Some((t, _)) = by_type
            .iter()
            .max_by_key(|(t, n)| (**n, std::cmp::Reverse(**t)))
        {
            return t.name().to_owned();
        }
        self.get_u32("general.file_type")
            .and_then(file_type_name)
            .unwrap_or("unknown")
            .to_owned()
    }

    /// Total number of tensor elements (the model's parameter count).
    pub fn parameter_count(&self) -> u64 {
        self.tensors
            .iter()
            .fold(0u64, |acc, t| acc.saturating_add(t.n_elements()))
    }

    /// The tensor named `name`.
    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.tensors.iter().find(|t| t.name == name)
    }
}

/// llama.cpp's `llama_ftype` names for `general.file_type`.
fn file_type_name(ft: u32) -> Option<&'static str> {
    Some(match ft {
        0 => "F32",
        1 => "F16",
        2 => "Q4_0",
        3 => "Q4_1",
        7 => "Q8_0",
        8 => "Q5_0",
        9 => "Q5_1",
        10 => "Q2_K",
        11 => "Q3_K_S",
        12 => "Q3_K_M",
        13 => "Q3_K_L",
        14 => "Q4_K_S",
        15 => "Q4_K_M",
        16 => "Q5_K_S",
        17 => "Q5_K_M",
        18 => "Q6_K",
        32 => "BF16",
        _ => return None,
    })
}
