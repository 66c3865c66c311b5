//! Engine-neutral tensors: the values that cross the boundary between the
//! wire codecs and an inference backend.

use std::fmt;

use crate::EngineError;

/// Element type of a tensor, named after ONNX's `TensorProto.DataType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DType {
    /// IEEE-754 binary32.
    F32,
    /// IEEE-754 binary64.
    F64,
    /// Signed 8-bit integer.
    I8,
    /// Signed 16-bit integer.
    I16,
    /// Signed 32-bit integer.
    I32,
    /// Signed 64-bit integer.
    I64,
    /// Unsigned 8-bit integer.
    U8,
    /// Unsigned 16-bit integer.
    U16,
    /// Unsigned 32-bit integer.
    U32,
    /// Unsigned 64-bit integer.
    U64,
    /// Boolean.
    Bool,
    /// UTF-8 string.
    String,
}

impl DType {
    /// The lowercase ONNX-style name (`float32`, `int64`, `string`, ...).
    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "float32",
            DType::F64 => "float64",
            DType::I8 => "int8",
            DType::I16 => "int16",
            DType::I32 => "int32",
            DType::I64 => "int64",
            DType::U8 => "uint8",
            DType::U16 => "uint16",
            DType::U32 => "uint32",
            DType::U64 => "uint64",
            DType::Bool => "bool",
            DType::String => "string",
        }
    }

    /// Size of one element in bytes (strings count their pointer, not content).
    pub fn size_of(self) -> usize {
        match self {
            DType::I8 | DType::U8 | DType::Bool => 1,
            DType::I16 | DType::U16 => 2,
            DType::F32 | DType::I32 | DType::U32 => 4,
            DType::F64 | DType::I64 | DType::U64 => 8,
            DType::String => std::mem::size_of::<String>(),
        }
    }

    /// True for the numeric types (everything but `String`).
    pub fn is_numeric(self) -> bool {
        !matches!(self, DType::String)
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One dimension of a declared tensor shape.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Dim {
    /// A fixed extent.
    Fixed(usize),
    /// A named symbolic extent (`batch`, `N`, ...) or an unnamed unknown (`?`).
    Symbolic(String),
}

impl fmt::Display for Dim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Dim::Fixed(n) => write!(f, "{n}"),
            Dim::Symbolic(s) => f.write_str(s),
        }
    }
}

/// Declared name, element type and shape of a model input or output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorInfo {
    /// The graph-level name.
    pub name: String,
    /// Element type.
    pub dtype: DType,
    /// Declared shape; `None` when the model does not declare a rank.
    pub shape: Option<Vec<Dim>>,
}

impl TensorInfo {
    /// Whether a concrete shape is compatible with the declared one.
    pub fn accepts_shape(&self, shape: &[usize]) -> bool {
        match &self.shape {
            None => true,
            Some(dims) => {
                dims.len() == shape.len()
                    && dims.iter().zip(shape).all(|(d, s)| match d {
                        Dim::Fixed(n) => n == s,
                        Dim::Symbolic(_) => true,
                    })
            }
        }
    }

    /// Human-readable signature such as `x: float32[batch,3,224,224]`.
    pub fn signature(&self) -> String {
        match &self.shape {
            None => format!("{}: {}[*]", self.name, self.dtype),
            Some(dims) => {
                let dims: Vec<String> = dims.iter().map(Dim::to_string).collect();
                format!("{}: {}[{}]", self.name, self.dtype, dims.join(","))
            }
        }
    }
}

/// Inputs and outputs a model declares, in graph order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ModelInfo {
    /// Graph inputs that are not initializers, in declaration order.
    pub inputs: Vec<TensorInfo>,
    /// Graph outputs, in declaration order.
    pub outputs: Vec<TensorInfo>,
}

impl ModelInfo {
    /// Position and info of the input called `name`.
    pub fn input(&self, name: &str) -> Option<(usize, &TensorInfo)> {
        self.inputs.iter().enumerate().find(|(_, i)| i.name == name)
    }
}

/// Typed, flat (row-major) tensor contents.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
#[allow(missing_docs)] // one variant per DType, named alike
pub enum TensorData {
    F32(Vec<f32>),
    F64(Vec<f64>),
    I8(Vec<i8>),
    I16(Vec<i16>),
    I32(Vec<i32>),
    I64(Vec<i64>),
    U8(Vec<u8>),
    U16(Vec<u16>),
    U32(Vec<u32>),
    U64(Vec<u64>),
    Bool(Vec<bool>),
    String(Vec<String>),
}

macro_rules! each_variant {
    ($value:expr, $v:ident => $body:expr) => {
        match $value {
            TensorData::F32($v) => $body,
            TensorData::F64($v) => $body,
            TensorData::I8($v) => $body,
            TensorData::I16($v) => $body,
            TensorData::I32($v) => $body,
            TensorData::I64($v) => $body,
            TensorData::U8($v) => $body,
            TensorData::U16($v) => $body,
            TensorData::U32($v) => $body,
            TensorData::U64($v) => $body,
            TensorData::Bool($v) => $body,
            TensorData::String($v) => $body,
        }
    };
}

impl TensorData {
    /// Element type of the contents.
    pub fn dtype(&self) -> DType {
        match self {
            TensorData::F32(_) => DType::F32,
            TensorData::F64(_) => DType::F64,
            TensorData::I8(_) => DType::I8,
            TensorData::I16(_) => DType::I16,
            TensorData::I32(_) => DType::I32,
            TensorData::I64(_) => DType::I64,
            TensorData::U8(_) => DType::U8,
            TensorData::U16(_) => DType::U16,
            TensorData::U32(_) => DType::U32,
            TensorData::U64(_) => DType::U64,
            TensorData::Bool(_) => DType::Bool,
            TensorData::String(_) => DType::String,
        }
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        each_variant!(self, v => v.len())
    }

    /// True when there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A shaped tensor whose element count always matches its shape.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    shape: Vec<usize>,
    data: TensorData,
}

impl Tensor {
    /// Builds a tensor, checking that `data` has exactly `product(shape)` elements.
    pub fn new(shape: Vec<usize>, data: TensorData) -> Result<Self, EngineError> {
        let expected = element_count(&shape).ok_or_else(|| EngineError::InvalidInput {
            input: String::new(),
            reason: format!("shape {shape:?} overflows"),
        })?;
        if expected != data.len() {
            return Err(EngineError::InvalidInput {
                input: String::new(),
                reason: format!(
                    "shape {shape:?} needs {expected} elements, got {}",
                    data.len()
                ),
            });
        }
        Ok(Tensor { shape, data })
    }

    /// The shape.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// The contents.
    pub fn data(&self) -> &TensorData {
        &self.data
    }

    /// Element type.
    pub fn dtype(&self) -> DType {
        self.data.dtype()
    }

    /// Splits into shape and contents.
    pub fn into_parts(self) -> (Vec<usize>, TensorData) {
        (self.shape, self.data)
    }

    /// Approximate heap size in bytes.
    pub fn byte_size(&self) -> usize {
        match &self.data {
            TensorData::String(v) => v.iter().map(|s| s.len() + DType::String.size_of()).sum(),
            d => d.len() * d.dtype().size_of(),
        }
    }
}

/// Product of the dimensions, or `None` on overflow.
pub fn element_count(shape: &[usize]) -> Option<usize> {
    shape.iter().try_fold(1usize, |acc, d| acc.checked_mul(*d))
}

/// A tensor together with its graph name.
#[derive(Debug, Clone, PartialEq)]
pub struct NamedTensor {
    /// Graph-level name.
    pub name: String,
    /// The value.
    pub tensor: Tensor,
}
