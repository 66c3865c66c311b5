//! A small LRU of compiled plans, one per distinct set of input shapes,
//! bounded in entries and in the bytes the compiled plans hold: a flood of
//! distinct shapes evicts the least recently used plans instead of growing.
//!
//! The lock guards only the map; compilation happens outside it in a
//! per-entry `OnceLock`, so a slow compile blocks only callers waiting for
//! that same shape set, and runs of a cached plan never contend.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

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

struct Entry {
    last_used: u64,
    cell: Cell,
}

#[derive(Default)]
struct State {
    tick: u64,
    entries: HashMap<ShapeKey, Entry>,
}

/// The per-model plan cache.
pub(crate) struct PlanCache {
    capacity: usize,
    max_bytes: usize,
    state: Mutex<State>,
}

impl PlanCache {
    /// A cache of at most `capacity` plans holding at most `max_bytes`
    /// together (the most recent plan is kept even if alone over it).
    pub(crate) fn new(capacity: usize, max_bytes: usize) -> Self {
        PlanCache {
            capacity: capacity.max(1),
            max_bytes,
            state: Mutex::new(State::default()),
        }
    }

    /// The plan for `key`, compiled by `compile` at most once per cache entry.
    pub(crate) fn get_or_compile(
        &self,
        key: ShapeKey,
        compile: impl FnOnce() -> Result<Plan, CompileError>,
    ) -> Result<Arc<Plan>, CompileError> {
        let cell = {
            // A panic never happens while the lock is held, so the state is consistent.
            let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
            state.tick += 1;
            let tick = state.tick;
            if let Some(entry) = state.entries.get_mut(&key) {
                entry.last_used = tick;
                entry.cell.clone()
            } else {
                if state.entries.len() >= self.capacity {
                    let oldest = state
                        .entries
                        .iter()
                        .min_by_key(|(_, e)| e.last_used)
                        .map(|(k, _)| k.clone());
                    if let Some(oldest) = oldest {
                        state.entries.remove(&oldest);
                    }
                }
                let cell: Cell = Arc::default();
                state.entries.insert(
                    key,
                    Entry {
                        last_used: tick,
                        cell: cell.clone(),
                    },
                );
                cell
            }
        };
        let result = cell.get_or_init(|| compile().map(Arc::new)).clone();
        self.trim(&cell);
        result
    }

    /// Evicts least recently used compiled plans (never `keep`) until the
    /// plans held fit the byte budget.
    fn trim(&self, keep: &Cell) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            let total: usize = state
                .entries
                .values()
                .map(|e| plan_bytes(&e.cell))
                .fold(0, usize::saturating_add);
            if total <= self.max_bytes {
                return;
            }
            let victim = state
                .entries
                .iter()
                .filter(|(_, e)| !Arc::ptr_eq(&e.cell, keep) && plan_bytes(&e.cell) > 0)
                .min_by_key(|(_, e)| e.last_used)
                .map(|(k, _)| k.clone());
            match victim {
                Some(k) => {
                    state.entries.remove(&k);
                }
                None => return,
            }
        }
    }

    /// Number of entries held.
    pub(crate) fn len(&self) -> usize {
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entries
            .len()
    }

    /// Sum of the sizes of compiled plans held.
    pub(crate) fn bytes(&self) -> usize {
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state
            .entries
            .values()
            .map(|e| plan_bytes(&e.cell))
            .fold(0, usize::saturating_add)
    }
}

/// Size of a compiled plan, 0 while compiling or for a failed compile.
fn plan_bytes(cell: &Cell) -> usize {
    cell.get()
        .and_then(|r| r.as_ref().ok())
        .map_or(0, |p| p.bytes)
}
