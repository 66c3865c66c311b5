//! Conversion of decoded request tensors to engine tensors, checked
//! against the model's declared inputs.

use std::collections::HashMap;

use super::{CodecError, FixedPoint, ModelInputs};
use crate::{DType, ModelInfo, Tensor, TensorData, element_count};

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

#[cfg(test)]
mod tests {
    use super::super::test_util::{fp, info};
    use super::super::{NumberTensor, StringTensor};
    use super::*;
    use crate::Dim;

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
}
