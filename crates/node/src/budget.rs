//! A byte-weighted budget for the memory of inferences in flight: each run
//! is charged its estimated bytes before it starts and gives them back when
//! it ends, so many large requests queue instead of exhausting memory.

use std::sync::Arc;

use thiserror::Error;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Permits are KiB so that a `u32` count covers terabytes.
const UNIT: usize = 1024;

/// The budget. Waiters are served in order (the semaphore is fair), so a
/// large charge is not starved by a stream of small ones.
#[derive(Debug, Clone)]
pub struct ByteBudget {
    permits: Arc<Semaphore>,
    units: u32,
}

/// Bytes held against a [`ByteBudget`] until dropped.
#[derive(Debug)]
pub struct Charge(#[allow(dead_code)] Option<OwnedSemaphorePermit>);

/// Why a charge cannot be taken.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum BudgetError {
    /// More than the whole budget: waiting would never help.
    #[error(
        "this inference needs about {need} bytes, more than the node's in-flight memory budget of {total} bytes (--inflight-bytes)"
    )]
    NeverFits {
        /// Estimated bytes.
        need: usize,
        /// The whole budget.
        total: usize,
    },
    /// The budget was closed (never happens in a running node).
    #[error("the in-flight budget is closed")]
    Closed(#[source] tokio::sync::AcquireError),
}

impl ByteBudget {
    /// A budget of `total` bytes (rounded up to whole KiB, at least one).
    pub fn new(total: usize) -> Self {
        let units = u32::try_from(total.div_ceil(UNIT))
            .unwrap_or(u32::MAX)
            .min(u32::try_from(Semaphore::MAX_PERMITS).unwrap_or(u32::MAX))
            .max(1);
        ByteBudget {
            permits: Arc::new(Semaphore::new(units as usize)),
            units,
        }
    }

    /// The whole budget in bytes.
    pub fn total(&self) -> usize {
        (self.units as usize).saturating_mul(UNIT)
    }

    /// Bytes not charged now.
    pub fn available(&self) -> usize {
        self.permits.available_permits().saturating_mul(UNIT)
    }

    /// Waits until `bytes` fit and charges them; fails at once when they
    /// never can. Bound the wait with a deadline.
    pub async fn charge(&self, bytes: usize) -> Result<Charge, BudgetError> {
        if bytes == 0 {
            return Ok(Charge(None));
        }
        let units = u32::try_from(bytes.div_ceil(UNIT)).unwrap_or(u32::MAX);
        if units > self.units {
            return Err(BudgetError::NeverFits {
                need: bytes,
                total: self.total(),
            });
        }
        self.permits
            .clone()
            .acquire_many_owned(units)
            .await
            .map(|p| Charge(Some(p)))
            .map_err(BudgetError::Closed)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[tokio::test]
    async fn charges_are_returned_on_drop() {
        let b = ByteBudget::new(10 * UNIT);
        let c = b.charge(4 * UNIT).await.unwrap();
        assert_eq!(b.available(), 6 * UNIT);
        drop(c);
        assert_eq!(b.available(), 10 * UNIT);
    }

    #[tokio::test]
    async fn a_charge_over_the_whole_budget_never_waits() {
        let b = ByteBudget::new(10 * UNIT);
        assert!(matches!(
            b.charge(10 * UNIT + 1).await,
            Err(BudgetError::NeverFits { .. })
        ));
    }
}
