//! Checks of request inputs against a model's declared interface, shared by
//! every backend so each refuses the same inputs with the same errors.

use crate::{Dim, EngineError, ModelInfo, Tensor, TensorTooLarge};

/// Checks count, element types, shapes (fixed dimensions, and symbolic
/// dimensions that must agree across inputs) and the tensor cap.
pub(crate) fn inputs(
    info: &ModelInfo,
    inputs: &[Tensor],
    max_tensor_bytes: usize,
) -> Result<(), EngineError> {
    if inputs.len() < info.inputs.len() {
        let missing = info
            .inputs
            .get(inputs.len())
            .map(|i| i.name.clone())
            .unwrap_or_default();
        return Err(EngineError::MissingInput(missing));
    }
    if inputs.len() > info.inputs.len() {
        return Err(EngineError::InvalidInput {
            input: String::new(),
            reason: format!(
                "the model takes {} inputs, got {}",
                info.inputs.len(),
                inputs.len()
            ),
        });
    }
    let mut symbols: Vec<(&str, usize, &str)> = Vec::new();
    for (t, decl) in inputs.iter().zip(&info.inputs) {
        let bad = |reason: String| EngineError::InvalidInput {
            input: decl.name.clone(),
            reason,
        };
        if t.dtype() != decl.dtype {
            return Err(bad(format!("expected {}, got {}", decl.dtype, t.dtype())));
        }
        if !decl.accepts_shape(t.shape()) {
            return Err(bad(format!(
                "shape {:?} does not fit {}",
                t.shape(),
                decl.signature()
            )));
        }
        if t.byte_size() > max_tensor_bytes {
            return Err(EngineError::TensorTooLarge(TensorTooLarge {
                what: format!("input {:?}", decl.name),
                bytes: Some(t.byte_size() as u128),
                cap: max_tensor_bytes,
            }));
        }
        for (d, s) in decl.shape.iter().flatten().zip(t.shape()) {
            if let Dim::Symbolic(name) = d
                && name != "?"
            {
                if let Some((_, prev, who)) = symbols.iter().find(|(n, _, _)| n == name)
                    && prev != s
                {
                    return Err(bad(format!(
                        "dimension {name} is {s} here but {prev} in input {who:?}"
                    )));
                }
                symbols.push((name, *s, &decl.name));
            }
        }
    }
    Ok(())
}

/// Refuses a model whose declared inputs or outputs of fixed shape are over
/// the tensor cap: no request to it could be served.
pub(crate) fn declared_sizes(info: &ModelInfo, max_tensor_bytes: usize) -> Result<(), EngineError> {
    for t in info.inputs.iter().chain(&info.outputs) {
        let Some(dims) = &t.shape else { continue };
        let fixed: Option<Vec<u128>> = dims
            .iter()
            .map(|d| match d {
                Dim::Fixed(n) => Some(*n as u128),
                Dim::Symbolic(_) => None,
            })
            .collect();
        let Some(fixed) = fixed else { continue };
        let bytes = fixed
            .iter()
            .try_fold(t.dtype.size_of() as u128, |b, d| b.checked_mul(*d));
        if bytes.is_none_or(|b| b > max_tensor_bytes as u128) {
            return Err(EngineError::Load(
                TensorTooLarge {
                    what: format!("declared tensor {}", t.signature()),
                    bytes,
                    cap: max_tensor_bytes,
                }
                .to_string(),
            ));
        }
    }
    Ok(())
}
