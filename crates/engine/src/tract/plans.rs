//! A small LRU of compiled plans, one per distinct set of input shapes,
//! bounded in entries and in the bytes the compiled plans hold: a flood of
//! distinct shapes evicts the least recently used plans instead of growing.
//!
//! The lock guards only the map; compilation happens outside it in a
//! per-entry `OnceLock`, so a slow compile blocks only callers waiting for
//! that same shape set, and runs of a cached plan never contend.

use std::sync::{Arc, Mutex, OnceLock};

use attesta_cache::Lru;

use tract_onnx::prelude::TypedSimplePlan;

use crate::{EngineError, TensorTooLarge};

/// Concrete shapes of every input (in input order), plus the values of the
/// inputs a plan bakes in as constants (empty for most models).
pub(crate) type ShapeKey = (Vec<Vec<usize>>, Vec<Vec<i64>>);

/// A compiled, runnable plan.
pub(crate) struct Plan {
    /// `None` when this input set can only be evaluated with every input
    /// frozen to a constant (not cacheable: the plan depends on all values).
    pub(crate) runnable: Option<Arc<TypedSimplePlan>>,
    /// Indices of the inputs the plan takes at run time (the others are baked in).
    pub(crate) feeds: Vec<usize>,
    /// Rough resident size (constants of the optimised graph), in bytes.
    pub(crate) bytes: usize,
    /// Upper bound on what one run allocates (every node output), when
    /// every shape is known at compile time.
    pub(crate) run_bytes: Option<usize>,
    /// True when optimisation failed and the plan runs the typed graph.
    pub(crate) unoptimised: bool,
}

/// Why a plan could not be built; cached like a success so that a shape set
/// that breaks the model is not recompiled on every request.
#[derive(Clone, Debug)]
pub(crate) enum CompileError {
    Failed(String),
    Panicked(String),
    /// A tensor of this input set would be over the tensor cap.
    TooLarge(TensorTooLarge),
    /// A size-setting value of this input set is invalid (negative...).
    Invalid(String),
}

impl CompileError {
    /// The engine error for a run that needed this plan.
    pub(crate) fn into_engine_error(self, context: &str) -> EngineError {
        match self {
            CompileError::Failed(m) => EngineError::Run(format!("{context}: {m}")),
            CompileError::Panicked(m) => EngineError::Internal(m),
            CompileError::TooLarge(t) => EngineError::TensorTooLarge(t),
            CompileError::Invalid(reason) => EngineError::InvalidInput {
                input: String::new(),
                reason,
            },
        }
    }
}

type Cell = Arc<OnceLock<Result<Arc<Plan>, CompileError>>>;

/// The per-model plan cache.
pub(crate) struct PlanCache {
    capacity: usize,
    max_bytes: usize,
    /// Entries weigh the bytes of their compiled plan (0 while compiling or failed).
    state: Mutex<Lru<ShapeKey, Cell>>,
}

impl PlanCache {
    /// A cache of at most `capacity` plans holding at most `max_bytes`
    /// together (the most recent plan is kept even if alone over it).
    pub(crate) fn new(capacity: usize, max_bytes: usize) -> Self {
        PlanCache {
            capacity: capacity.max(1),
            max_bytes,
            state: Mutex::new(Lru::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Lru<ShapeKey, Cell>> {
        // A panic never happens while the lock is held, so the state is consistent.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The plan for `key`, compiled by `compile` at most once per cache entry.
    pub(crate) fn get_or_compile(
        &self,
        key: ShapeKey,
        compile: impl FnOnce() -> Result<Plan, CompileError>,
    ) -> Result<Arc<Plan>, CompileError> {
        let (cell, new_key) = {
            let mut state = self.lock();
            if let Some(cell) = state.get(&key) {
                (cell.clone(), None)
            } else {
                while state.len() >= self.capacity && state.pop_lru(|_, _| false).is_some() {}
                let cell: Cell = Arc::default();
                state.insert(key.clone(), cell.clone(), 0);
                (cell, Some(key))
            }
        };
        let result = cell.get_or_init(|| compile().map(Arc::new)).clone();
        if let Some(key) = new_key {
            self.weigh(&key, &cell);
        }
        result
    }

    /// Records the size of the plan just compiled for `key`, then evicts least
    /// recently used compiled plans (never `keep`) until the budget holds.
    fn weigh(&self, key: &ShapeKey, keep: &Cell) {
        let mut state = self.lock();
        if state.peek(key).is_some_and(|c| Arc::ptr_eq(c, keep)) {
            state.set_weight(key, plan_bytes(keep));
        }
        while state.bytes() > self.max_bytes
            && state
                .pop_lru(|_, c| Arc::ptr_eq(c, keep) || plan_bytes(c) == 0)
                .is_some()
        {}
    }

    /// Number of entries held.
    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }

    /// Sum of the sizes of compiled plans held.
    pub(crate) fn bytes(&self) -> usize {
        self.lock().bytes()
    }
}

/// Size of a compiled plan, 0 while compiling or for a failed compile.
fn plan_bytes(cell: &Cell) -> usize {
    cell.get()
        .and_then(|r| r.as_ref().ok())
        .map_or(0, |p| p.bytes)
}
