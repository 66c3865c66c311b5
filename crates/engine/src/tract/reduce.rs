//! Exact integer reductions.
//!
//! tract sums integers in an `i32` accumulator whatever their type (an
//! `int64` ReduceSum of `[2^31, 2^31+1, 2^31+2]` comes out `-2147483645`),
//! and the ONNX reductions built on that sum (Mean, SumSquare, L1, L2)
//! inherit it. The ONNX reduction operators are therefore parsed here: float
//! inputs still go to tract's kernels, integer inputs (and `TDim` shape
//! arithmetic) to [`IntReduce`], which computes the mathematically exact
//! result in 128-bit (or saturating) arithmetic and then saturates it to the
//! element type. That is what onnxruntime returns whenever its own float64
//! accumulation is exact, and the same saturation when the result is out of
//! range.

use tract_onnx::model::{OnnxOpRegister, ParsingContext};
use tract_onnx::pb::NodeProto;
use tract_onnx::tract_core::ops::cast::cast;
use tract_onnx::tract_hir::internal::*;
use tract_onnx::tract_hir::ops::nn::{Reduce, Reducer};

/// The ONNX reductions parsed here, with tract's reducer for each.
const REDUCTIONS: &[(&str, Reducer)] = &[
    ("ReduceSum", Reducer::Sum),
    ("ReduceProd", Reducer::Prod),
    ("ReduceMin", Reducer::Min),
    ("ReduceMax", Reducer::Max),
    ("ReduceMean", Reducer::Mean),
    ("ReduceSumSquare", Reducer::SumSquare),
    ("ReduceL1", Reducer::L1),
    ("ReduceL2", Reducer::L2),
    ("ReduceLogSum", Reducer::LogSum),
    ("ReduceLogSumExp", Reducer::LogSumExp),
];

/// Replaces tract's parsers for the reductions and ArgMax/ArgMin.
pub(crate) fn register(reg: &mut OnnxOpRegister) {
    for (name, _) in REDUCTIONS {
        reg.insert(name, parse_reduce);
    }
    reg.insert("ArgMax", parse_arg);
    reg.insert("ArgMin", parse_arg);
}

type Parsed = TractResult<(Box<dyn InferenceOp>, Vec<String>)>;

fn parse_reduce(ctx: &ParsingContext, node: &NodeProto) -> Parsed {
    let Some((_, reducer)) = REDUCTIONS.iter().find(|(n, _)| *n == node.op_type) else {
        bail!("{} is not a reduction", node.op_type);
    };
    let keep_dims = node.get_attr_opt("keepdims")?.unwrap_or(1i64) == 1;
    // ReduceSum took its axes as an input from opset 13, the others from 18.
    let axes_input = (ctx.onnx_operator_set_version >= 13 && node.op_type == "ReduceSum")
        || ctx.onnx_operator_set_version >= 18;
    let axes = if axes_input {
        let noop = node.get_attr_opt("noop_with_empty_axes")?.unwrap_or(0i64) == 1;
        Axes::Input {
            given: node.input.len() == 2,
            noop_when_empty: noop,
        }
    } else {
        Axes::Attr(node.get_attr_opt_vec("axes")?)
    };
    Ok((
        expand(ExactReduce {
            axes,
            keep_dims,
            reducer: *reducer,
        }),
        vec![],
    ))
}

fn parse_arg(_ctx: &ParsingContext, node: &NodeProto) -> Parsed {
    let axis = node.get_attr_opt("axis")?.unwrap_or(0i64);
    let keep_dims = node.get_attr_opt("keepdims")?.unwrap_or(1i64) == 1;
    let last = node.get_attr_opt("select_last_index")?.unwrap_or(0i64) == 1;
    let reducer = if node.op_type == "ArgMax" {
        Reducer::ArgMax(last)
    } else {
        Reducer::ArgMin(last)
    };
    Ok((
        expand(ExactReduce {
            axes: Axes::Attr(Some(vec![axis])),
            keep_dims,
            reducer,
        }),
        vec![],
    ))
}

/// Where a reduction finds its axes.
#[derive(Debug, Clone, Hash, PartialEq, Eq)]
enum Axes {
    /// The `axes` attribute (`None`: every axis).
    Attr(Option<Vec<i64>>),
    /// The optional second input; empty means every axis unless `noop_when_empty`.
    Input { given: bool, noop_when_empty: bool },
}

/// An ONNX reduction: tract's for floats, [`IntReduce`] for integers.
#[derive(Debug, Clone, Hash, PartialEq, Eq)]
struct ExactReduce {
    axes: Axes,
    keep_dims: bool,
    reducer: Reducer,
}

impl ExactReduce {
    /// Axes as the model states them (possibly negative), for an input of `rank`.
    fn stated_axes(&self, rank: usize, axes_value: Option<&Tensor>) -> TractResult<Vec<i64>> {
        let all = || (0..rank as i64).collect();
        Ok(match &self.axes {
            Axes::Attr(None) => all(),
            Axes::Attr(Some(a)) => a.clone(),
            Axes::Input {
                noop_when_empty, ..
            } => {
                let given: Vec<i64> = match axes_value {
                    Some(t) => t
                        .cast_to::<i64>()?
                        .try_as_plain_ram()?
                        .as_slice::<i64>()?
                        .to_vec(),
                    None => vec![],
                };
                if given.is_empty() && !noop_when_empty {
                    all()
                } else {
                    given
                }
            }
        })
    }

    fn hir(&self, axes: Vec<i64>) -> Reduce {
        Reduce::new(Some(axes), self.keep_dims, self.reducer)
    }
}

/// Resolves possibly negative axes against `rank`, sorted and deduplicated.
fn resolve_axes(axes: &[i64], rank: usize) -> TractResult<TVec<usize>> {
    let mut out: TVec<usize> = TVec::new();
    for &a in axes {
        let r = if a < 0 { a + rank as i64 } else { a };
        ensure!(
            (0..rank as i64).contains(&r),
            "axis {a} out of range for rank {rank}"
        );
        out.push(r as usize);
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

impl Expansion for ExactReduce {
    fn name(&self) -> StaticName {
        format!("ExactReduce<{:?}>", self.reducer).into()
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        let given = matches!(self.axes, Axes::Input { given: true, .. });
        check_input_arity(inputs, 1 + usize::from(given))?;
        check_output_arity(outputs, 1)?;
        if matches!(self.reducer, Reducer::ArgMax(_) | Reducer::ArgMin(_)) {
            s.equals(&outputs[0].datum_type, DatumType::I64)?;
        } else {
            s.equals(&inputs[0].datum_type, &outputs[0].datum_type)?;
        }
        if given {
            s.given_2(&inputs[0].shape, &inputs[1].value, move |s, shape, axes| {
                let stated = self.stated_axes(shape.len(), Some(&*axes))?;
                // tract's shape helper panics on an out-of-range axis.
                resolve_axes(&stated, shape.len())?;
                let out = self.hir(stated).output_shape(&shape);
                s.equals(&outputs[0].shape, out)
            })
        } else {
            s.given(&inputs[0].shape, move |s, shape| {
                let stated = self.stated_axes(shape.len(), None)?;
                resolve_axes(&stated, shape.len())?;
                let out = self.hir(stated).output_shape(&shape);
                s.equals(&outputs[0].shape, out)
            })
        }
    }

    fn wire(
        &self,
        prefix: &str,
        model: &mut TypedModel,
        inputs: &[OutletId],
    ) -> TractResult<TVec<OutletId>> {
        let Some(&data) = inputs.first() else {
            bail!("reduction without input");
        };
        let fact = model.outlet_fact(data)?.clone();
        let axes_value = match inputs.get(1) {
            Some(o) => Some(
                model
                    .outlet_fact(*o)?
                    .konst
                    .clone()
                    .ok_or_else(|| format_err!("reduction axes must be a constant"))?,
            ),
            None => None,
        };
        let stated = self.stated_axes(fact.rank(), axes_value.as_deref())?;
        let kind = IntReducer::of(self.reducer);
        let integer = (fact.datum_type.is_integer() && !fact.datum_type.is_quantized())
            || fact.datum_type == DatumType::TDim;
        let (true, Some(kind)) = (integer, kind) else {
            // Floats (and reductions with no integer meaning) stay with tract.
            return self.hir(stated).wire(prefix, model, &inputs[..1]);
        };
        let axes = resolve_axes(&stated, fact.rank())?;
        let mut wire = data;
        if fact.datum_type == DatumType::TDim {
            wire = model.wire_node(
                format!("{prefix}.cast_from_tdim"),
                cast(DatumType::I64),
                &[wire],
            )?[0];
        }
        wire = model.wire_node(
            format!("{prefix}.exact"),
            IntReduce {
                axes: axes.clone(),
                kind,
            },
            &[wire],
        )?[0];
        if fact.datum_type == DatumType::TDim && !matches!(kind, IntReducer::Arg { .. }) {
            wire = model.wire_node(
                format!("{prefix}.cast_to_tdim"),
                cast(DatumType::TDim),
                &[wire],
            )?[0];
        }
        if !self.keep_dims {
            for axis in axes.into_iter().rev() {
                wire = model.wire_node(format!("{prefix}.rm{axis}"), AxisOp::Rm(axis), &[wire])?[0];
            }
        }
        Ok(tvec!(wire))
    }
}

/// What [`IntReduce`] computes over each reduced block.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
pub(crate) enum IntReducer {
    Sum,
    Prod,
    Min,
    Max,
    /// Exact sum divided by the count, truncated toward zero.
    Mean,
    SumSquare,
    L1,
    /// Square root of the exact sum of squares, truncated.
    L2,
    /// Index of the largest (`max`) or smallest element; ties go to the
    /// first index, or to the last with `last`.
    Arg {
        max: bool,
        last: bool,
    },
}

impl IntReducer {
    fn of(r: Reducer) -> Option<IntReducer> {
        Some(match r {
            Reducer::Sum => IntReducer::Sum,
            Reducer::Prod => IntReducer::Prod,
            Reducer::Min => IntReducer::Min,
            Reducer::Max => IntReducer::Max,
            Reducer::Mean => IntReducer::Mean,
            Reducer::SumSquare => IntReducer::SumSquare,
            Reducer::L1 => IntReducer::L1,
            Reducer::L2 => IntReducer::L2,
            Reducer::ArgMax(last) => IntReducer::Arg { max: true, last },
            Reducer::ArgMin(last) => IntReducer::Arg { max: false, last },
            Reducer::LogSum | Reducer::LogSumExp => return None,
        })
    }
}

/// Integer reduction over `axes` (kept as size-1 dims), computed exactly.
#[derive(Debug, Clone, Hash, PartialEq, Eq)]
pub(crate) struct IntReduce {
    axes: TVec<usize>,
    kind: IntReducer,
}

impl Op for IntReduce {
    fn name(&self) -> StaticName {
        format!("IntReduce<{:?}>", self.kind).into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!("axes: {:?}", self.axes)])
    }

    tract_onnx::tract_core::op_as_typed_op!();
}

impl EvalOp for IntReduce {
    tract_onnx::tract_core::op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let Some(input) = inputs.first() else {
            bail!("IntReduce takes one input");
        };
        let dt = input.datum_type();
        let values = widen(input)?;
        let shape = input.shape();
        let out_shape: Vec<usize> = shape
            .iter()
            .enumerate()
            .map(|(ax, d)| if self.axes.contains(&ax) { 1 } else { *d })
            .collect();
        let out_len: usize = out_shape.iter().product();
        let mut accs = vec![Acc::EMPTY; out_len];
        // Row-major strides of the output, and which input axis (if any)
        // the Arg reductions index along.
        let mut out_strides = vec![0usize; shape.len()];
        let mut stride = 1;
        for ax in (0..shape.len()).rev() {
            out_strides[ax] = stride;
            stride *= out_shape[ax];
        }
        let arg_axis = self.axes.first().copied();
        let mut coords = vec![0usize; shape.len()];
        for v in values {
            let mut o = 0;
            for ax in 0..shape.len() {
                if !self.axes.contains(&ax) {
                    o += coords[ax] * out_strides[ax];
                }
            }
            let pos = arg_axis.map_or(0, |a| coords[a]);
            accs[o].push(self.kind, v, pos);
            // Advance the row-major coordinates.
            for ax in (0..shape.len()).rev() {
                coords[ax] += 1;
                if coords[ax] < shape[ax] {
                    break;
                }
                coords[ax] = 0;
            }
        }
        let out: Vec<i128> = accs.iter().map(|a| a.finish(self.kind)).collect();
        let out_dt = if matches!(self.kind, IntReducer::Arg { .. }) {
            DatumType::I64
        } else {
            dt
        };
        Ok(tvec!(
            narrow(&out, out_dt, &out_shape, Narrow::Saturate)?.into_tvalue()
        ))
    }
}

impl TypedOp for IntReduce {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let Some(input) = inputs.first() else {
            bail!("IntReduce takes one input");
        };
        ensure!(
            input.datum_type.is_integer(),
            "IntReduce takes integers, got {:?}",
            input.datum_type
        );
        ensure!(self.axes.iter().all(|a| *a < input.rank()));
        let mut shape = input.shape.to_tvec();
        for ax in &self.axes {
            shape[*ax] = 1usize.into();
        }
        let dt = if matches!(self.kind, IntReducer::Arg { .. }) {
            DatumType::I64
        } else {
            input.datum_type
        };
        Ok(tvec!(dt.fact(shape)))
    }

    tract_onnx::tract_core::as_op!();
}

/// Running state of one reduced block.
#[derive(Clone, Copy)]
struct Acc {
    /// Sum of values (Sum, Mean), squares (SumSquare, L2) or magnitudes
    /// (L1), saturating at the `i128` bounds (unreachable for sums of
    /// values, which are below 2^64 each).
    sum: i128,
    /// Product magnitude, `None` once it overflowed `u128`.
    magnitude: Option<u128>,
    /// Odd number of negative factors.
    negative: bool,
    /// A zero factor was seen.
    zero: bool,
    /// Best (value, index) so far, for Min, Max and Arg.
    best: Option<(i128, usize)>,
    count: i128,
}

impl Acc {
    const EMPTY: Acc = Acc {
        sum: 0,
        magnitude: Some(1),
        negative: false,
        zero: false,
        best: None,
        count: 0,
    };

    fn push(&mut self, kind: IntReducer, v: i128, pos: usize) {
        self.count += 1;
        match kind {
            IntReducer::Sum | IntReducer::Mean => self.sum = self.sum.saturating_add(v),
            IntReducer::L1 => self.sum = self.sum.saturating_add(v.saturating_abs()),
            IntReducer::SumSquare | IntReducer::L2 => {
                let square = v
                    .unsigned_abs()
                    .checked_mul(v.unsigned_abs())
                    .and_then(|s| i128::try_from(s).ok())
                    .unwrap_or(i128::MAX);
                self.sum = self.sum.saturating_add(square);
            }
            IntReducer::Prod => {
                self.zero |= v == 0;
                self.negative ^= v < 0;
                self.magnitude = self.magnitude.and_then(|m| m.checked_mul(v.unsigned_abs()));
            }
            IntReducer::Min | IntReducer::Max | IntReducer::Arg { .. } => {
                let better = match (self.best, kind) {
                    (None, _) => true,
                    (Some((b, _)), IntReducer::Max) => v > b,
                    (Some((b, _)), IntReducer::Min) => v < b,
                    (Some((b, _)), IntReducer::Arg { max, last }) => {
                        (if max { v > b } else { v < b }) || (last && v == b)
                    }
                    _ => false,
                };
                if better {
                    self.best = Some((v, pos));
                }
            }
        }
    }

    /// The exact result (saturated to `i128`), before narrowing to the type.
    fn finish(&self, kind: IntReducer) -> i128 {
        match kind {
            IntReducer::Sum | IntReducer::SumSquare | IntReducer::L1 => self.sum,
            // Rust's integer division truncates toward zero, as a float
            // mean converted to an integer does.
            IntReducer::Mean => self.sum.checked_div(self.count).unwrap_or(0),
            IntReducer::L2 => self.sum.max(0).unsigned_abs().isqrt() as i128,
            IntReducer::Prod => {
                if self.zero {
                    return 0;
                }
                let m = self
                    .magnitude
                    .and_then(|m| i128::try_from(m).ok())
                    .unwrap_or(i128::MAX);
                if self.negative { -m } else { m }
            }
            // An empty block has no extreme: the identity of the reduction,
            // saturated to the type by `narrow` (as onnxruntime returns the
            // lowest value for an empty Max).
            IntReducer::Max => self.best.map_or(i128::MIN, |b| b.0),
            IntReducer::Min => self.best.map_or(i128::MAX, |b| b.0),
            IntReducer::Arg { .. } => self.best.map_or(0, |b| b.1 as i128),
        }
    }
}

/// Reads an integer tensor as `i128` values, row-major.
pub(crate) fn widen(t: &Tensor) -> TractResult<Vec<i128>> {
    fn w<T: Datum + Copy + Into<i128>>(t: &Tensor) -> TractResult<Vec<i128>> {
        Ok(t.try_as_plain_ram()?
            .as_slice::<T>()?
            .iter()
            .map(|x| (*x).into())
            .collect())
    }
    match t.datum_type() {
        DatumType::I8 => w::<i8>(t),
        DatumType::I16 => w::<i16>(t),
        DatumType::I32 => w::<i32>(t),
        DatumType::I64 => w::<i64>(t),
        DatumType::U8 => w::<u8>(t),
        DatumType::U16 => w::<u16>(t),
        DatumType::U32 => w::<u32>(t),
        DatumType::U64 => w::<u64>(t),
        other => bail!("IntReduce takes integers, got {other:?}"),
    }
}

/// How an exact result out of the element type's range is stored.
#[derive(Clone, Copy)]
pub(crate) enum Narrow {
    /// Clamped to the type's range (reductions, like onnxruntime's).
    Saturate,
    /// Reduced modulo 2^bits (matrix products, like onnxruntime's).
    Wrap,
}

/// Stores exact results into a tensor of `dt`.
pub(crate) fn narrow(
    values: &[i128],
    dt: DatumType,
    shape: &[usize],
    mode: Narrow,
) -> TractResult<Tensor> {
    fn n<T: Datum + Copy + TryFrom<i128> + tract_num_traits::Bounded>(
        values: &[i128],
        shape: &[usize],
        mode: Narrow,
    ) -> TractResult<Tensor>
    where
        i128: From<T>,
    {
        let lo = i128::from(T::min_value());
        let hi = i128::from(T::max_value());
        // The type's width, to wrap into: hi - lo + 1 = 2^bits.
        let span = hi.wrapping_sub(lo).wrapping_add(1);
        let v: Vec<T> = values
            .iter()
            .map(|x| {
                let x = match mode {
                    Narrow::Saturate => (*x).clamp(lo, hi),
                    Narrow::Wrap => (x.wrapping_sub(lo)).rem_euclid(span).wrapping_add(lo),
                };
                T::try_from(x).unwrap_or(T::max_value())
            })
            .collect();
        Tensor::from_shape(shape, &v)
    }
    match dt {
        DatumType::I8 => n::<i8>(values, shape, mode),
        DatumType::I16 => n::<i16>(values, shape, mode),
        DatumType::I32 => n::<i32>(values, shape, mode),
        DatumType::I64 => n::<i64>(values, shape, mode),
        DatumType::U8 => n::<u8>(values, shape, mode),
        DatumType::U16 => n::<u16>(values, shape, mode),
        DatumType::U32 => n::<u32>(values, shape, mode),
        DatumType::U64 => n::<u64>(values, shape, mode),
        other => bail!("IntReduce cannot return {other:?}"),
    }
}
