//! Stopping a run from outside: the caller's deadline reaching into the engine.
//!
//! A node answers a request that outlives its deadline with a timeout, but the run itself
//! would go on holding its executor slot (and a core) until it finished; a hostile model
//! that computes for minutes could fill every slot that way. A [`Cancel`] lets the caller
//! stop the run: backends that can stop midway (onnxruntime, via its run options'
//! `terminate`) register a stopper; others (tract) run to completion.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

type Stopper = Box<dyn Fn() + Send + Sync>;

/// A cancellation handle shared by the caller and a run; clones are the same handle.
#[derive(Clone, Default)]
pub struct Cancel {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    cancelled: AtomicBool,
    stoppers: Mutex<Vec<Stopper>>,
}

impl Cancel {
    /// A handle that has not fired.
    pub fn new() -> Self {
        Cancel::default()
    }

    /// Fires: every registered stopper runs once, and later ones run as they register.
    pub fn cancel(&self) {
        if self.inner.cancelled.swap(true, Ordering::AcqRel) {
            return;
        }
        let stoppers = match self.inner.stoppers.lock() {
            Ok(mut s) => std::mem::take(&mut *s),
            Err(poisoned) => std::mem::take(&mut *poisoned.into_inner()),
        };
        for stop in stoppers {
            stop();
        }
    }

    /// Whether [`Cancel::cancel`] was called.
    pub fn is_cancelled(&self) -> bool {
        self.inner.cancelled.load(Ordering::Acquire)
    }

    /// Registers `stop` to run when the handle fires (at once if it already has).
    pub fn on_cancel(&self, stop: impl Fn() + Send + Sync + 'static) {
        let mut stoppers = match self.inner.stoppers.lock() {
            Ok(s) => s,
            Err(poisoned) => poisoned.into_inner(),
        };
        // Checked under the lock `cancel` takes before draining: a stopper is either
        // drained by it or sees the flag here, never lost between the two.
        if self.is_cancelled() {
            drop(stoppers);
            stop();
        } else {
            stoppers.push(Box::new(stop));
        }
    }
}

impl std::fmt::Debug for Cancel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cancel")
            .field("cancelled", &self.is_cancelled())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    #[test]
    fn stoppers_run_once_whether_registered_before_or_after_the_cancel() {
        let cancel = Cancel::new();
        let count = Arc::new(AtomicUsize::new(0));
        let c = count.clone();
        cancel.on_cancel(move || {
            c.fetch_add(1, Ordering::SeqCst);
        });
        assert_eq!(count.load(Ordering::SeqCst), 0);
        cancel.clone().cancel();
        cancel.cancel();
        assert_eq!(count.load(Ordering::SeqCst), 1);
        let c = count.clone();
        cancel.on_cancel(move || {
            c.fetch_add(10, Ordering::SeqCst);
        });
        assert_eq!(count.load(Ordering::SeqCst), 11);
        assert!(cancel.is_cancelled());
    }
}
