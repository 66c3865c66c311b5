//! Challenges: a model from the set, fresh random inputs built from its
//! declared input shapes, and the answer the validator computes itself with
//! the same engine. Inputs are generated as OpenGradient fixed-point pairs
//! and converted through the same codec the node uses, so both sides run the
//! model on bit-identical tensors.
#![deny(clippy::indexing_slicing)]

use std::collections::BTreeMap;
use std::sync::Arc;

use attesta_content::{Cid, ModelStore};
use attesta_engine::tract::TractEngine;
use attesta_engine::{DType, Dim, Engine, Limits, Model, og};
use rand_core::Rng;
use serde_json::{Value, json};

/// One challenge model as configured.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChallengeSpec {
    /// Model CID (must be in the challenge store).
    pub cid: String,
    /// Allowed absolute difference per float element.
    #[serde(default = "default_abs")]
    pub abs_tolerance: f64,
    /// Allowed difference relative to the expected value per float element.
    #[serde(default = "default_rel")]
    pub rel_tolerance: f64,
    /// Inclusive range of generated numbers.
    #[serde(default = "default_range")]
    pub range: [f64; 2],
    /// Decimal places of generated numbers (0 for integer inputs regardless).
    #[serde(default = "default_decimals")]
    pub decimals: u32,
    /// Extents for symbolic dimensions (`batch = 2`); unnamed ones default to 1.
    #[serde(default)]
    pub dims: BTreeMap<String, usize>,
    /// Tolerances for answers whose receipt names a given engine
    /// (`onnxruntime = { abs = 1e-4, rel = 1e-3 }`): engines order float
    /// operations differently. Engines not listed get the tolerances above.
    #[serde(default)]
    pub engine_tolerances: BTreeMap<String, Tolerance>,
}

/// Allowed differences per float element for one engine.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tolerance {
    /// Absolute difference.
    pub abs: f64,
    /// Difference relative to the expected value.
    pub rel: f64,
}

fn default_abs() -> f64 {
    1e-5
}
fn default_rel() -> f64 {
    1e-4
}
fn default_range() -> [f64; 2] {
    [-1.0, 1.0]
}
fn default_decimals() -> u32 {
    4
}

impl ChallengeSpec {
    /// A spec with default tolerances and generator for `cid`.
    pub fn new(cid: impl Into<String>) -> Self {
        ChallengeSpec {
            cid: cid.into(),
            abs_tolerance: default_abs(),
            rel_tolerance: default_rel(),
            range: default_range(),
            decimals: default_decimals(),
            dims: BTreeMap::new(),
            engine_tolerances: BTreeMap::new(),
        }
    }

    /// Range checks.
    pub fn validate(&self) -> Result<(), String> {
        let [lo, hi] = self.range;
        if !(lo.is_finite() && hi.is_finite() && lo <= hi) {
            return Err(format!(
                "model {}: range must be finite with lo ≤ hi",
                self.cid
            ));
        }
        let tolerances_ok = self.abs_tolerance >= 0.0 // false for NaN
            && self.rel_tolerance >= 0.0
            && self
                .engine_tolerances
                .values()
                .all(|t| t.abs >= 0.0 && t.rel >= 0.0);
        if self.decimals > 9 || !tolerances_ok {
            return Err(format!(
                "model {}: decimals ≤ 9 and tolerances ≥ 0 required",
                self.cid
            ));
        }
        let exponent = i32::try_from(self.decimals).unwrap_or(i32::MAX);
        if (lo.abs().max(hi.abs())) * 10f64.powi(exponent) > 9.0e15 {
            return Err(format!("model {}: range × 10^decimals too large", self.cid));
        }
        if self.dims.values().any(|d| *d == 0 || *d > 4096) {
            return Err(format!(
                "model {}: symbolic dims must be 1..=4096",
                self.cid
            ));
        }
        Ok(())
    }
}

/// Why the challenge set could not be built or a challenge not generated.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ChallengeError {
    /// The CID text is not a CID.
    #[error("challenge model `{cid}`: invalid CID: {reason}")]
    BadCid {
        /// The CID text.
        cid: String,
        /// Why.
        reason: String,
    },
    /// The model is not in the store.
    #[error("challenge model `{0}` is not in the model store")]
    Missing(String),
    /// The store failed.
    #[error("model store: {source}")]
    Store {
        /// Model CID.
        cid: String,
        /// The store's (or the file system's) error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The engine could not load or run the model.
    #[error("challenge model `{cid}`: {source}")]
    Engine {
        /// Model CID.
        cid: String,
        /// The engine's (or the codec's) error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The model has an input the generator cannot fill (strings, no rank).
    #[error("challenge model `{cid}`: {reason}")]
    Unsupported {
        /// Model CID.
        cid: String,
        /// Why.
        reason: String,
    },
    /// The set has no models.
    #[error("the challenge set is empty")]
    Empty,
}

/// A loaded challenge model.
pub struct ChallengeModel {
    spec: ChallengeSpec,
    sha256_hex: String,
    model: Arc<dyn Model>,
}

impl std::fmt::Debug for ChallengeModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChallengeModel")
            .field("cid", &self.spec.cid)
            .field("sha256", &self.sha256_hex)
            .finish()
    }
}

/// A challenge ready to send, with its expected answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Challenge {
    /// Model CID.
    pub model_cid: String,
    /// SHA-256 hex of the model file (what the receipt must name).
    pub model_sha256: String,
    /// OpenGradient `model_inputs` object.
    pub inputs: Value,
    /// The validator's own answer: the OpenGradient `output` list.
    pub expected: Value,
    /// Tolerances in force.
    pub abs_tolerance: f64,
    /// See `abs_tolerance`.
    pub rel_tolerance: f64,
    /// Tolerances for answers from named engines (see [`ChallengeSpec`]).
    pub engine_tolerances: BTreeMap<String, Tolerance>,
}

impl Challenge {
    /// The (absolute, relative) tolerances for an answer whose receipt
    /// names `engine`.
    pub fn tolerance_for(&self, engine: &str) -> (f64, f64) {
        match self.engine_tolerances.get(engine) {
            Some(t) => (t.abs, t.rel),
            None => (self.abs_tolerance, self.rel_tolerance),
        }
    }
}

/// The configured challenge models, loaded and ready.
#[derive(Debug, Clone)]
pub struct ChallengeSet {
    models: Vec<Arc<ChallengeModel>>,
}

impl ChallengeSet {
    /// Loads every spec's model from the store with the tract engine.
    pub fn load(
        store: &ModelStore,
        specs: &[ChallengeSpec],
        engine: &TractEngine,
    ) -> Result<Self, ChallengeError> {
        let mut entries = Vec::with_capacity(specs.len());
        for spec in specs {
            let cid: Cid = spec.cid.parse().map_err(|e: attesta_content::CidError| {
                ChallengeError::BadCid {
                    cid: spec.cid.clone(),
                    reason: e.to_string(),
                }
            })?;
            let stored = store
                .get(&cid)
                .map_err(|e| ChallengeError::Store {
                    cid: spec.cid.clone(),
                    source: e.into(),
                })?
                .ok_or_else(|| ChallengeError::Missing(spec.cid.clone()))?;
            let bytes = std::fs::read(&stored.path).map_err(|e| ChallengeError::Store {
                cid: spec.cid.clone(),
                source: e.into(),
            })?;
            entries.push((spec.clone(), bytes));
        }
        Self::from_bytes(entries, engine)
    }

    /// Builds the set from model bytes directly (the CID is taken as given).
    pub fn from_bytes(
        entries: Vec<(ChallengeSpec, Vec<u8>)>,
        engine: &TractEngine,
    ) -> Result<Self, ChallengeError> {
        use sha2::Digest as _;
        if entries.is_empty() {
            return Err(ChallengeError::Empty);
        }
        let mut models = Vec::with_capacity(entries.len());
        for (spec, bytes) in entries {
            spec.validate()
                .map_err(|reason| ChallengeError::Unsupported {
                    cid: spec.cid.clone(),
                    reason,
                })?;
            let model =
                engine
                    .load(&bytes, &Limits::default())
                    .map_err(|e| ChallengeError::Engine {
                        cid: spec.cid.clone(),
                        source: e.into(),
                    })?;
            for input in &model.info().inputs {
                if !input.dtype.is_numeric() || input.shape.is_none() {
                    return Err(ChallengeError::Unsupported {
                        cid: spec.cid.clone(),
                        reason: format!("cannot generate input {}", input.signature()),
                    });
                }
            }
            let sha256_hex = hex::encode(sha2::Sha256::digest(&bytes));
            models.push(Arc::new(ChallengeModel {
                spec,
                sha256_hex,
                model,
            }));
        }
        Ok(ChallengeSet { models })
    }

    /// Number of models.
    pub fn len(&self) -> usize {
        self.models.len()
    }

    /// Always false for a built set.
    pub fn is_empty(&self) -> bool {
        self.models.is_empty()
    }

    /// Model CIDs in order.
    pub fn cids(&self) -> Vec<String> {
        self.models.iter().map(|m| m.spec.cid.clone()).collect()
    }

    /// A fresh challenge: a model picked at random, random inputs, the
    /// expected answer computed locally (CPU-bound: run it off the async threads).
    pub fn generate(&self, rng: &mut impl Rng) -> Result<Challenge, ChallengeError> {
        let n = self.models.len() as u64;
        if n == 0 {
            return Err(ChallengeError::Empty);
        }
        let idx = usize::try_from(rng.next_u64() % n).unwrap_or(0);
        let m = self.models.get(idx).ok_or(ChallengeError::Empty)?;
        let inputs = random_inputs(m, rng)?;
        let expected = expected_output(m, &inputs)?;
        Ok(Challenge {
            model_cid: m.spec.cid.clone(),
            model_sha256: m.sha256_hex.clone(),
            inputs,
            expected,
            abs_tolerance: m.spec.abs_tolerance,
            rel_tolerance: m.spec.rel_tolerance,
            engine_tolerances: m.spec.engine_tolerances.clone(),
        })
    }
}

fn uniform_int(rng: &mut impl Rng, lo: i64, hi: i64) -> i64 {
    let span = hi.saturating_sub(lo) as u64 + 1;
    // Modulo bias is irrelevant here: inputs need to be unpredictable, not uniform.
    lo.saturating_add((rng.next_u64() % span.max(1)) as i64)
}

fn random_inputs(m: &ChallengeModel, rng: &mut impl Rng) -> Result<Value, ChallengeError> {
    let spec = &m.spec;
    let mut numbers = Vec::new();
    for input in &m.model.info().inputs {
        let dims = input.shape.as_deref().unwrap_or(&[]);
        let shape: Vec<usize> = dims
            .iter()
            .map(|d| match d {
                Dim::Fixed(n) => *n,
                Dim::Symbolic(name) => spec.dims.get(name).copied().unwrap_or(1),
            })
            .collect();
        let count = attesta_engine::element_count(&shape)
            .filter(|c| *c <= 1 << 20)
            .ok_or_else(|| ChallengeError::Unsupported {
                cid: spec.cid.clone(),
                reason: format!("input {} would have more than 2^20 elements", input.name),
            })?;
        let [lo, hi] = spec.range;
        let (decimals, lo_i, hi_i) = match input.dtype {
            DType::F32 | DType::F64 => {
                // `validate` bounds decimals to ≤ 9; saturate rather than wrap regardless.
                let scale = 10f64.powi(i32::try_from(spec.decimals).unwrap_or(i32::MAX));
                (
                    spec.decimals,
                    (lo * scale).ceil() as i64,
                    (hi * scale).floor() as i64,
                )
            }
            DType::Bool => (0, 0, 1),
            DType::U8 | DType::U16 | DType::U32 | DType::U64 => {
                (0, lo.max(0.0).ceil() as i64, hi.max(0.0).floor() as i64)
            }
            _ => (0, lo.ceil() as i64, hi.floor() as i64),
        };
        let values: Vec<Value> = (0..count)
            .map(|_| json!({"value": uniform_int(rng, lo_i, hi_i.max(lo_i)), "decimals": decimals}))
            .collect();
        numbers.push(json!({"name": input.name, "shape": shape, "values": values}));
    }
    Ok(json!({"numbers": numbers, "strings": []}))
}

fn expected_output(m: &ChallengeModel, inputs: &Value) -> Result<Value, ChallengeError> {
    let err = |source: Box<dyn std::error::Error + Send + Sync>| ChallengeError::Engine {
        cid: m.spec.cid.clone(),
        source,
    };
    let parsed = og::parse_inputs(&inputs.to_string()).map_err(|e| err(e.into()))?;
    let tensors = og::to_tensors(&parsed, m.model.info()).map_err(|e| err(e.into()))?;
    let outputs = m.model.run(tensors).map_err(|e| err(e.into()))?;
    let response = og::encode_response(&outputs, &m.sha256_hex);
    let v = serde_json::to_value(&response.output).map_err(|e| err(e.into()))?;
    Ok(v)
}

/// How an answer differs from the expected one.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("answer differs at {path}: {reason}")]
pub struct Mismatch {
    /// JSON path of the first difference.
    pub path: String,
    /// What differs.
    pub reason: String,
}

/// Compares a node's `output` list with the expected one: same names, shapes,
/// types and structure; numbers within `abs + rel·|expected|`; everything
/// else exactly.
pub fn compare(expected: &Value, got: &Value, abs: f64, rel: f64) -> Result<(), Mismatch> {
    compare_at(expected, got, abs, rel, &mut String::from("output"))
}

fn compare_at(
    expected: &Value,
    got: &Value,
    abs: f64,
    rel: f64,
    path: &mut String,
) -> Result<(), Mismatch> {
    let mismatch = |path: &str, reason: String| Mismatch {
        path: path.to_string(),
        reason,
    };
    match (expected, got) {
        (Value::Number(e), Value::Number(g)) => {
            let (Some(e), Some(g)) = (e.as_f64(), g.as_f64()) else {
                return Err(mismatch(path, "unrepresentable number".into()));
            };
            let allowed = abs + rel * e.abs();
            if (e - g).abs() <= allowed {
                Ok(())
            } else {
                Err(mismatch(
                    path,
                    format!("expected {e}, got {g} (allowed ±{allowed:e})"),
                ))
            }
        }
        (Value::Array(e), Value::Array(g)) => {
            if e.len() != g.len() {
                return Err(mismatch(
                    path,
                    format!("expected {} elements, got {}", e.len(), g.len()),
                ));
            }
            for (i, (ev, gv)) in e.iter().zip(g).enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                compare_at(ev, gv, abs, rel, path)?;
                path.truncate(len);
            }
            Ok(())
        }
        (Value::Object(e), Value::Object(g)) => {
            if e.len() != g.len() || e.keys().any(|k| !g.contains_key(k)) {
                return Err(mismatch(path, "different fields".into()));
            }
            for (k, ev) in e {
                let gv = g
                    .get(k)
                    .ok_or_else(|| mismatch(path, format!("missing field {k}")))?;
                let len = path.len();
                path.push('.');
                path.push_str(k);
                // Shapes, names and types must match exactly.
                let (a, r) = if k == "result" {
                    (abs, rel)
                } else {
                    (0.0, 0.0)
                };
                compare_at(ev, gv, a, r, path)?;
                path.truncate(len);
            }
            Ok(())
        }
        (e, g) if e == g => Ok(()),
        (e, g) => Err(mismatch(path, format!("expected {e}, got {g}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_failures_keep_the_engine_error() {
        use std::error::Error as _;
        let entries = vec![(ChallengeSpec::new("bafkreia"), b"not onnx".to_vec())];
        let err = ChallengeSet::from_bytes(entries, &TractEngine::new(1)).unwrap_err();
        assert!(matches!(err, ChallengeError::Engine { .. }), "{err}");
        let source = err.source().expect("the engine error is kept");
        assert!(
            source
                .downcast_ref::<attesta_engine::EngineError>()
                .is_some(),
            "{source:?}"
        );
        assert!(
            err.to_string().starts_with("challenge model `bafkreia`: "),
            "{err}"
        );
    }

    #[test]
    fn compare_tolerates_only_what_is_allowed() {
        let e = json!([{"name":"y","shape":[2],"result":[1.0, -2.0],"type":"number"}]);
        assert!(compare(&e, &e, 0.0, 0.0).is_ok());
        let near = json!([{"name":"y","shape":[2],"result":[1.000001, -2.0],"type":"number"}]);
        assert!(compare(&e, &near, 1e-5, 0.0).is_ok());
        assert!(compare(&e, &near, 0.0, 0.0).is_err());
        let far = json!([{"name":"y","shape":[2],"result":[1.1, -2.0],"type":"number"}]);
        let m = compare(&e, &far, 1e-5, 1e-4).unwrap_err();
        assert_eq!(m.path, "output[0].result[0]");
        let renamed = json!([{"name":"z","shape":[2],"result":[1.0, -2.0],"type":"number"}]);
        assert!(compare(&e, &renamed, 1.0, 1.0).is_err());
        let reshaped = json!([{"name":"y","shape":[1,2],"result":[[1.0, -2.0]],"type":"number"}]);
        assert!(compare(&e, &reshaped, 1.0, 1.0).is_err());
        let short = json!([{"name":"y","shape":[2],"result":[1.0],"type":"number"}]);
        assert!(compare(&e, &short, 1.0, 1.0).is_err());
        let extra = json!([{"name":"y","shape":[2],"result":[1.0, -2.0],"type":"number","x":1}]);
        assert!(compare(&e, &extra, 1.0, 1.0).is_err());
        let nan = json!([{"name":"y","shape":[2],"result":[null, -2.0],"type":"number"}]);
        assert!(compare(&e, &nan, 1.0, 1.0).is_err());
        // Tolerance never applies to shapes.
        let e2 = json!([{"name":"y","shape":[2],"result":[1.0, 2.0],"type":"number"}]);
        let s3 = json!([{"name":"y","shape":[3],"result":[1.0, 2.0],"type":"number"}]);
        assert!(compare(&e2, &s3, 5.0, 5.0).is_err());
    }

    #[test]
    fn spec_validation() {
        assert!(ChallengeSpec::new("x").validate().is_ok());
        let mut s = ChallengeSpec::new("x");
        s.range = [1.0, -1.0];
        assert!(s.validate().is_err());
        let mut s = ChallengeSpec::new("x");
        s.abs_tolerance = f64::NAN;
        assert!(s.validate().is_err());
        let mut s = ChallengeSpec::new("x");
        s.dims.insert("batch".into(), 0);
        assert!(s.validate().is_err());
    }
}
