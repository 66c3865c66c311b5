//! Protobuf-level checks run before tract sees a model.
//!
//! tract allocates every initializer and constant-folds shape computations
//! while it parses and analyses a graph; an allocation that fails aborts the
//! process instead of returning an error. Everything a hostile file could use
//! to make tract allocate more than [`Limits::max_tensor_bytes`] is therefore
//! rejected here, from the declarations alone.

#![deny(clippy::indexing_slicing)]

use std::collections::{HashMap, HashSet};

use tract_onnx::pb::{self, TensorProto, tensor_proto::DataLocation, tensor_proto::DataType};

use crate::{EngineError, Limits, TensorTooLarge};

/// Subgraph nesting (If/Loop/Scan bodies) allowed below the main graph.
pub(crate) const MAX_GRAPH_DEPTH: usize = 8;
/// Graph inputs, outputs, initializers and value infos allowed per graph.
pub(crate) const MAX_VALUES_PER_GRAPH: usize = 250_000;
/// Rank allowed for any declared tensor.
pub(crate) const MAX_RANK: usize = 32;
/// Largest constant decoded to inspect a shape-like operand.
const MAX_SHAPE_OPERAND: usize = 64;

fn load(msg: impl Into<String>) -> EngineError {
    EngineError::Load(msg.into())
}

/// Checks the file's size, decodes it and runs [`check_model`]: what every
/// backend does before its library sees a model.
pub(crate) fn decode_and_check(
    onnx: &[u8],
    limits: &Limits,
    known_op: &dyn Fn(&str) -> bool,
) -> Result<pb::ModelProto, EngineError> {
    if onnx.len() > limits.max_model_bytes {
        return Err(load(format!(
            "model is {} bytes, over the {} byte limit",
            onnx.len(),
            limits.max_model_bytes
        )));
    }
    if onnx.is_empty() {
        return Err(load("model file is empty"));
    }
    let proto = <pb::ModelProto as prost::Message>::decode(onnx)
        .map_err(|e| load(format!("not an ONNX model: {e}")))?;
    check_model(&proto, limits, known_op)?;
    Ok(proto)
}

/// Checks a decoded model against the limits and the operator set tract knows.
pub(crate) fn check_model(
    model: &pb::ModelProto,
    limits: &Limits,
    known_op: &dyn Fn(&str) -> bool,
) -> Result<(), EngineError> {
    let graph = model
        .graph
        .as_ref()
        .ok_or_else(|| load("the model has no graph"))?;
    let mut scan = Scan {
        limits,
        known_op,
        nodes: 0,
    };
    scan.graph(graph, 0)
}

struct Scan<'a> {
    limits: &'a Limits,
    known_op: &'a dyn Fn(&str) -> bool,
    nodes: usize,
}

/// A constant operand as far as shape checks care about it.
pub(crate) enum Const<'a> {
    Tensor(&'a TensorProto),
    Ints(&'a [i64]),
    Floats(&'a [f32]),
    /// A value known while tract analyses a graph: its numbers when small
    /// enough to be shape-like, its element count and element size.
    Known {
        numbers: Option<Vec<f64>>,
        volume: f64,
        size: usize,
    },
}

impl Const<'_> {
    /// Values as `f64`, for constants small enough to be shape-like.
    fn numbers(&self) -> Option<Vec<f64>> {
        match self {
            Const::Ints(v) => {
                (v.len() <= MAX_SHAPE_OPERAND).then(|| v.iter().map(|x| *x as f64).collect())
            }
            Const::Floats(v) => {
                (v.len() <= MAX_SHAPE_OPERAND).then(|| v.iter().map(|x| f64::from(*x)).collect())
            }
            Const::Tensor(t) => tensor_numbers(t),
            Const::Known { numbers, .. } => numbers.clone(),
        }
    }

    /// Element count and element size, when known.
    fn volume_and_size(&self) -> Option<(f64, usize)> {
        match self {
            Const::Ints(v) => Some((v.len() as f64, 8)),
            Const::Floats(v) => Some((v.len() as f64, 4)),
            Const::Tensor(t) => {
                let size = elem_size(t.data_type)?;
                let count = t.dims.iter().map(|d| *d as f64).product::<f64>();
                Some((count, size))
            }
            Const::Known { volume, size, .. } => Some((*volume, *size)),
        }
    }
}

impl Scan<'_> {
    fn graph(&mut self, graph: &pb::GraphProto, depth: usize) -> Result<(), EngineError> {
        if depth > MAX_GRAPH_DEPTH {
            return Err(load(format!(
                "subgraphs nested deeper than {MAX_GRAPH_DEPTH} levels"
            )));
        }
        for (what, n) in [
            ("inputs", graph.input.len()),
            ("outputs", graph.output.len()),
            ("initializers", graph.initializer.len()),
            ("value infos", graph.value_info.len()),
        ] {
            if n > MAX_VALUES_PER_GRAPH {
                return Err(load(format!(
                    "graph declares {n} {what}, over the limit of {MAX_VALUES_PER_GRAPH}"
                )));
            }
        }
        self.nodes = self.nodes.saturating_add(graph.node.len());
        if self.nodes > self.limits.max_nodes {
            return Err(load(format!(
                "graph has more than {} nodes (the node limit)",
                self.limits.max_nodes
            )));
        }
        if !graph.sparse_initializer.is_empty() {
            return Err(load("sparse initializers are not supported"));
        }
        for value in graph
            .input
            .iter()
            .chain(&graph.output)
            .chain(&graph.value_info)
        {
            check_value_info(value)?;
        }

        let mut consts: HashMap<&str, Const<'_>> = HashMap::new();
        for init in &graph.initializer {
            self.tensor(init, &format!("initializer {:?}", init.name))?;
            consts.insert(init.name.as_str(), Const::Tensor(init));
        }
        for node in &graph.node {
            self.node_header(node)?;
            for attr in &node.attribute {
                self.attribute(node, attr, depth)?;
            }
            if node.op_type == "Constant"
                && let Some(out) = node.output.first()
                && let Some(c) = constant_value(node)
            {
                consts.insert(out.as_str(), c);
            }
            materialising(node, &consts, self.limits.max_tensor_bytes)?;
        }
        Ok(())
    }

    fn node_header(&self, node: &pb::NodeProto) -> Result<(), EngineError> {
        if !(node.domain.is_empty() || node.domain == "ai.onnx") {
            return Err(load(format!(
                "operator {:?} of domain {:?} is not supported (only the default ONNX domain is)",
                node.op_type, node.domain
            )));
        }
        if !(self.known_op)(&node.op_type) {
            return Err(load(format!(
                "operator {:?} is not supported by tract",
                node.op_type
            )));
        }
        Ok(())
    }

    fn attribute(
        &mut self,
        node: &pb::NodeProto,
        attr: &pb::AttributeProto,
        depth: usize,
    ) -> Result<(), EngineError> {
        let what = |i: Option<usize>| match i {
            None => format!(
                "attribute {:?} of node {:?} ({})",
                attr.name, node.name, node.op_type
            ),
            Some(i) => format!(
                "attribute {:?}[{i}] of node {:?} ({})",
                attr.name, node.name, node.op_type
            ),
        };
        if let Some(t) = &attr.t {
            self.tensor(t, &what(None))?;
        }
        for (i, t) in attr.tensors.iter().enumerate() {
            self.tensor(t, &what(Some(i)))?;
        }
        if attr.sparse_tensor.is_some() || !attr.sparse_tensors.is_empty() {
            return Err(load(format!(
                "{}: sparse tensors are not supported",
                what(None)
            )));
        }
        if let Some(g) = &attr.g {
            self.graph(g, depth + 1)?;
        }
        for g in &attr.graphs {
            self.graph(g, depth + 1)?;
        }
        Ok(())
    }

    fn tensor(&self, t: &TensorProto, what: &str) -> Result<(), EngineError> {
        check_tensor(t, what, self.limits.max_tensor_bytes)
    }
}

/// Operators whose output size is set by the values of their operands.
pub(crate) const MATERIALISING: &[&str] = &[
    "ConstantOfShape",
    "OneHot",
    "Expand",
    "Tile",
    "Range",
    "Resize",
    "Upsample",
    "RandomNormal",
    "RandomUniform",
];

/// Why [`materialising`] refused an operator.
#[derive(Debug)]
pub(crate) enum Refusal {
    /// The output would be over the tensor cap.
    TooLarge(TensorTooLarge),
    /// A size-setting operand is negative, non-finite or a zero step.
    Invalid(String),
}

impl From<Refusal> for EngineError {
    /// In a model file, either refusal means the model cannot be loaded.
    fn from(r: Refusal) -> EngineError {
        match r {
            Refusal::TooLarge(t) => load(t.to_string()),
            Refusal::Invalid(m) => load(m),
        }
    }
}

/// Checks an operator whose output size is set by the values of constant
/// operands (`consts`, by input name).
pub(crate) fn materialising(
    node: &pb::NodeProto,
    consts: &HashMap<&str, Const<'_>>,
    max_tensor_bytes: usize,
) -> Result<(), Refusal> {
    {
        let cap = max_tensor_bytes as f64;
        let operand = |i: usize| node.input.get(i).and_then(|name| consts.get(name.as_str()));
        let numbers = |i: usize| operand(i).and_then(Const::numbers);
        let over = |elements: f64, size: usize, why: &str| -> Result<(), Refusal> {
            let bytes = elements * size as f64;
            if bytes > cap {
                Err(Refusal::TooLarge(TensorTooLarge {
                    what: format!(
                        "node {:?} ({}) output of {elements:.0} elements ({why})",
                        node.name, node.op_type
                    ),
                    // f64 → u128 saturates; infinities count as uncountable.
                    bytes: bytes.is_finite().then_some(bytes as u128),
                    cap: max_tensor_bytes,
                }))
            } else {
                Ok(())
            }
        };
        let shape_product = |dims: &[f64], why: &str| -> Result<f64, Refusal> {
            if let Some(d) = dims.iter().find(|d| **d < 0.0 || !d.is_finite()) {
                return Err(Refusal::Invalid(format!(
                    "node {:?} ({}) has an invalid {why} value {d}",
                    node.name, node.op_type
                )));
            }
            Ok(dims.iter().product())
        };
        match node.op_type.as_str() {
            "ConstantOfShape" => {
                if let Some(dims) = numbers(0) {
                    let size = node
                        .attribute
                        .iter()
                        .find(|a| a.name == "value")
                        .and_then(|a| a.t.as_ref())
                        .and_then(|t| elem_size(t.data_type))
                        .unwrap_or(4);
                    over(
                        shape_product(&dims, "shape")?,
                        size,
                        "ConstantOfShape shape",
                    )?;
                }
            }
            "Expand" => {
                if let Some(dims) = numbers(1) {
                    let size = operand(0)
                        .and_then(Const::volume_and_size)
                        .map_or(1, |(_, s)| s);
                    over(shape_product(&dims, "shape")?, size, "Expand shape")?;
                }
            }
            "Tile" => {
                if let Some(reps) = numbers(1) {
                    let (volume, size) = operand(0)
                        .and_then(Const::volume_and_size)
                        .unwrap_or((1.0, 1));
                    over(
                        shape_product(&reps, "repeats")? * volume,
                        size,
                        "Tile repeats",
                    )?;
                }
            }
            "Range" => {
                if let (Some(start), Some(limit), Some(delta)) =
                    (numbers(0), numbers(1), numbers(2))
                    && let (Some(s), Some(l), Some(d)) =
                        (start.first(), limit.first(), delta.first())
                {
                    if *d == 0.0 || !d.is_finite() || !s.is_finite() || !l.is_finite() {
                        return Err(Refusal::Invalid(format!(
                            "node {:?} (Range) has a zero or non-finite step",
                            node.name
                        )));
                    }
                    let size = operand(0)
                        .and_then(Const::volume_and_size)
                        .map_or(8, |(_, s)| s);
                    over(((l - s) / d).ceil().max(0.0), size, "Range length")?;
                }
            }
            "Resize" | "Upsample" => {
                // sizes (Resize input 3) give the output shape directly; scales
                // (input 2 of Resize, 1 of Upsample) bound its growth factor.
                if let Some(sizes) = numbers(3) {
                    over(shape_product(&sizes, "sizes")?, 1, "Resize sizes")?;
                }
                let scales_ix = if node.op_type == "Resize" { 2 } else { 1 };
                if let Some(scales) = numbers(scales_ix) {
                    let (volume, size) = operand(0)
                        .and_then(Const::volume_and_size)
                        .unwrap_or((1.0, 1));
                    over(
                        shape_product(&scales, "scales")? * volume,
                        size,
                        "Resize scales",
                    )?;
                }
            }
            "OneHot" => {
                // Output: the indices' shape with a `depth` axis inserted.
                if let Some(depth) = numbers(1) {
                    let indices = operand(0)
                        .and_then(Const::volume_and_size)
                        .map_or(1.0, |(v, _)| v);
                    let size = operand(2)
                        .and_then(Const::volume_and_size)
                        .map_or(1, |(_, s)| s);
                    over(
                        shape_product(&depth, "depth")? * indices,
                        size,
                        "OneHot depth",
                    )?;
                }
            }
            "RandomNormal" | "RandomUniform" => {
                if let Some(a) = node.attribute.iter().find(|a| a.name == "shape") {
                    let dims: Vec<f64> = a.ints.iter().map(|x| *x as f64).collect();
                    over(shape_product(&dims, "shape")?, 8, "random shape")?;
                }
            }
            _ => {}
        }
        Ok(())
    }
}

/// The main-graph operators whose size-setting operands come straight from
/// graph inputs: checked against the actual values when those inputs are
/// baked into a plan as constants (tract would evaluate them while typing).
pub(crate) struct ValueGuard {
    nodes: Vec<pb::NodeProto>,
}

impl ValueGuard {
    pub(crate) fn new(graph: &pb::GraphProto) -> ValueGuard {
        let inputs: HashSet<&str> = graph.input.iter().map(|v| v.name.as_str()).collect();
        let nodes = graph
            .node
            .iter()
            .filter(|n| {
                MATERIALISING.contains(&n.op_type.as_str())
                    && n.input.iter().any(|i| inputs.contains(i.as_str()))
            })
            .cloned()
            .collect();
        ValueGuard { nodes }
    }

    /// Checks the guarded operators with `values` (input name → integer values).
    pub(crate) fn check(
        &self,
        values: &[(&str, &[i64])],
        max_tensor_bytes: usize,
    ) -> Result<(), Refusal> {
        if self.nodes.is_empty() {
            return Ok(());
        }
        let consts: HashMap<&str, Const<'_>> = values
            .iter()
            .map(|(name, v)| (*name, Const::Ints(v)))
            .collect();
        for node in &self.nodes {
            materialising(node, &consts, max_tensor_bytes)?;
        }
        Ok(())
    }
}

fn check_value_info(value: &pb::ValueInfoProto) -> Result<(), EngineError> {
    if let Some(pb::TypeProto {
        value: Some(pb::type_proto::Value::TensorType(t)),
        ..
    }) = &value.r#type
        && let Some(shape) = &t.shape
        && shape.dim.len() > MAX_RANK
    {
        return Err(load(format!(
            "value {:?} has rank {}, over the limit of {MAX_RANK}",
            value.name,
            shape.dim.len()
        )));
    }
    Ok(())
}

/// The value of a `Constant` node, when it is one we can inspect.
fn constant_value(node: &pb::NodeProto) -> Option<Const<'_>> {
    let attr = node.attribute.first()?;
    match attr.name.as_str() {
        "value" => attr.t.as_ref().map(Const::Tensor),
        "value_ints" => Some(Const::Ints(&attr.ints)),
        "value_int" => Some(Const::Ints(std::slice::from_ref(&attr.i))),
        "value_floats" => Some(Const::Floats(&attr.floats)),
        "value_float" => Some(Const::Floats(std::slice::from_ref(&attr.f))),
        _ => None,
    }
}

/// Bytes per element of an ONNX element type, or `None` if unknown.
pub(crate) fn elem_size(data_type: i32) -> Option<usize> {
    let dt = DataType::try_from(data_type).ok()?;
    Some(match dt {
        DataType::Undefined => return None,
        DataType::Uint8 | DataType::Int8 | DataType::Bool => 1,
        DataType::Uint16 | DataType::Int16 | DataType::Float16 | DataType::Bfloat16 => 2,
        DataType::Float | DataType::Int32 | DataType::Uint32 => 4,
        DataType::Int64 | DataType::Uint64 | DataType::Double | DataType::Complex64 => 8,
        DataType::Complex128 => 16,
        DataType::String => std::mem::size_of::<String>(),
        _ => 1,
    })
}

/// Checks one tensor declaration: dims, size against the cap, and that the
/// data actually carried matches the declared element count.
pub(crate) fn check_tensor(
    t: &TensorProto,
    what: &str,
    max_bytes: usize,
) -> Result<(), EngineError> {
    if t.dims.len() > MAX_RANK {
        return Err(load(format!(
            "{what}: rank {} over the limit of {MAX_RANK}",
            t.dims.len()
        )));
    }
    let mut count: usize = 1;
    for d in &t.dims {
        let d = usize::try_from(*d)
            .map_err(|_| load(format!("{what}: negative dimension {d} in {:?}", t.dims)))?;
        count = count
            .checked_mul(d)
            .ok_or_else(|| load(format!("{what}: dimensions {:?} overflow", t.dims)))?;
    }
    let size = elem_size(t.data_type)
        .ok_or_else(|| load(format!("{what}: unknown element type {}", t.data_type)))?;
    let bytes = count
        .checked_mul(size)
        .filter(|b| *b <= max_bytes)
        .ok_or_else(|| {
            load(format!(
                "{what}: dimensions {:?} declare more than the {max_bytes} byte tensor cap",
                t.dims
            ))
        })?;
    if t.data_location == Some(DataLocation::External as i32) || !t.external_data.is_empty() {
        return Err(load(format!(
            "{what}: external tensor data is not supported"
        )));
    }
    let is = |d: DataType| t.data_type == d as i32;
    let carried = if !t.raw_data.is_empty() {
        if is(DataType::String) {
            return Err(load(format!("{what}: string tensors cannot use raw_data")));
        }
        if t.raw_data.len() != bytes {
            return Err(load(format!(
                "{what}: dimensions {:?} need {bytes} bytes, raw_data holds {}",
                t.dims,
                t.raw_data.len()
            )));
        }
        return Ok(());
    } else if is(DataType::Float) {
        t.float_data.len()
    } else if is(DataType::Complex64) {
        t.float_data.len() / 2
    } else if is(DataType::Double) {
        t.double_data.len()
    } else if is(DataType::Complex128) {
        t.double_data.len() / 2
    } else if is(DataType::Int64) {
        t.int64_data.len()
    } else if is(DataType::Uint32) || is(DataType::Uint64) {
        t.uint64_data.len()
    } else if is(DataType::String) {
        t.string_data.len()
    } else {
        t.int32_data.len()
    };
    if carried != count {
        return Err(load(format!(
            "{what}: dimensions {:?} declare {count} elements, the tensor carries {carried}",
            t.dims
        )));
    }
    Ok(())
}

/// Values of a small numeric tensor, as `f64`.
fn tensor_numbers(t: &TensorProto) -> Option<Vec<f64>> {
    let count = t
        .dims
        .iter()
        .try_fold(1usize, |acc, d| acc.checked_mul(usize::try_from(*d).ok()?))?;
    if count > MAX_SHAPE_OPERAND {
        return None;
    }
    let dt = DataType::try_from(t.data_type).ok()?;
    if !t.raw_data.is_empty() {
        fn le<const N: usize>(raw: &[u8], f: fn([u8; N]) -> f64) -> Option<Vec<f64>> {
            raw.chunks_exact(N)
                .map(|c| <[u8; N]>::try_from(c).ok().map(f))
                .collect()
        }
        let raw = &t.raw_data;
        return match dt {
            DataType::Int64 => le::<8>(raw, |b| i64::from_le_bytes(b) as f64),
            DataType::Uint64 => le::<8>(raw, |b| u64::from_le_bytes(b) as f64),
            DataType::Int32 => le::<4>(raw, |b| f64::from(i32::from_le_bytes(b))),
            DataType::Uint32 => le::<4>(raw, |b| f64::from(u32::from_le_bytes(b))),
            DataType::Float => le::<4>(raw, |b| f64::from(f32::from_le_bytes(b))),
            DataType::Double => le::<8>(raw, f64::from_le_bytes),
            DataType::Int16 => le::<2>(raw, |b| f64::from(i16::from_le_bytes(b))),
            DataType::Uint16 => le::<2>(raw, |b| f64::from(u16::from_le_bytes(b))),
            DataType::Int8 => le::<1>(raw, |b| f64::from(i8::from_le_bytes(b))),
            DataType::Uint8 => le::<1>(raw, |b| f64::from(u8::from_le_bytes(b))),
            _ => None,
        };
    }
    match dt {
        DataType::Int64 => Some(t.int64_data.iter().map(|x| *x as f64).collect()),
        DataType::Uint64 | DataType::Uint32 => {
            Some(t.uint64_data.iter().map(|x| *x as f64).collect())
        }
        DataType::Float => Some(t.float_data.iter().map(|x| f64::from(*x)).collect()),
        DataType::Double => Some(t.double_data.clone()),
        DataType::Int32 | DataType::Int16 | DataType::Int8 | DataType::Uint16 | DataType::Uint8 => {
            Some(t.int32_data.iter().map(|x| f64::from(*x)).collect())
        }
        _ => None,
    }
}

/// Names of the initializers of a graph, so inputs they feed are not model inputs.
pub(crate) fn initializer_names(graph: &pb::GraphProto) -> HashSet<&str> {
    graph.initializer.iter().map(|t| t.name.as_str()).collect()
}
