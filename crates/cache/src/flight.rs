//! The one async single flight of attesta: [`SingleFlight`].

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::hash::Hash;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};

use tokio::sync::{OnceCell, watch};
use tokio::task::AbortHandle;

/// Called with the key of each spawned flight stopped because its last waiter left.
type AbandonHook<K> = Box<dyn Fn(&K) + Send + Sync>;

/// Concurrent callers asking for the same key share one computation:
/// the first caller starts it, later callers join it, and all of them receive a clone of its
/// value. The entry is removed as soon as the computation ends, so a call after that computes
/// again: nothing is cached here (errors included); an owner that wants the value kept stores
/// it itself, in its own cache, from inside the computation.
///
/// Two ways to run a flight:
///
/// - [`SingleFlight::run`]: the computation is a future polled by the callers themselves (no
///   task is spawned; it may borrow from the caller). When the caller driving it is cancelled
///   or its computation panics, the next waiter runs its own `make` instead (the others keep
///   waiting); when no waiter is left, the flight is gone.
/// - [`SingleFlight::run_spawned`]: the computation runs in a spawned task, so it goes on
///   while its callers merely wait (each for as long as it likes, e.g. under a timeout). When
///   the last waiter leaves, the task is aborted (the flight is *abandoned*) unless the
///   computation said, through its [`Keep`], that it is past the point where stopping saves
///   anything; from then on it runs to the end with or without waiters.
///
/// Because the entry is removed only after the computation ends, a caller that checked its
/// own cache just before a flight stored its value there can start a second flight: a
/// computation that stores its value should check that store again first (see the node's
/// model cache and the content fetcher).
///
/// The engine's plan cache keeps a synchronous `OnceLock` per LRU entry instead, and rightly:
/// that is a lazily computed cache cell whose value (or compile error) stays in the LRU, used
/// from the blocking threads inference runs on, not a flight that ends.
pub struct SingleFlight<K, V> {
    shared: Arc<Shared<K, V>>,
}

struct Shared<K, V> {
    flights: Mutex<Flights<K, V>>,
    on_abandon: Option<AbandonHook<K>>,
}

struct Flights<K, V> {
    map: HashMap<K, Flight<V>>,
    /// Generation counter: tells a flight from a later one for the same key, so a guard of a
    /// finished flight never touches its successor.
    next_id: u64,
}

struct Flight<V> {
    id: u64,
    waiters: usize,
    run: Run<V>,
}

enum Run<V> {
    /// Driven by its callers: the cell hands the computation over when its driver leaves.
    Caller(Arc<OnceCell<V>>),
    /// A spawned task publishing into `result`.
    Task {
        result: watch::Receiver<Option<V>>,
        abort: AbortHandle,
        /// The computation asked to finish even if nobody waits.
        kept: bool,
    },
}

/// What a joining caller waits on.
enum Joined<V> {
    Cell(Arc<OnceCell<V>>),
    Task(watch::Receiver<Option<V>>),
}

impl<V> Run<V> {
    fn joined(&self) -> Joined<V> {
        match self {
            Run::Caller(cell) => Joined::Cell(Arc::clone(cell)),
            Run::Task { result, .. } => Joined::Task(result.clone()),
        }
    }
}

/// A spawned flight's computation ended without a value: it panicked, or its task was
/// cancelled (the runtime shut down).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stopped;

impl fmt::Display for Stopped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the shared computation stopped without a result")
    }
}

impl std::error::Error for Stopped {}

/// Handed to a spawned computation: [`Keep::keep`] tells the flight to run to the end even
/// when no waiter is left.
pub struct Keep {
    keep: Option<Box<dyn Fn() -> bool + Send + Sync>>,
}

impl Keep {
    /// Marks the flight as kept: from now on it is not aborted when its last waiter leaves.
    /// False when it was already abandoned (its task is being aborted; the computation should
    /// stop without publishing anything).
    pub fn keep(&self) -> bool {
        self.keep.as_ref().is_none_or(|keep| keep())
    }
}

impl fmt::Debug for Keep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keep").finish_non_exhaustive()
    }
}

impl<K, V> fmt::Debug for SingleFlight<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let flights = self.shared.lock().map.len();
        f.debug_struct("SingleFlight")
            .field("flights", &flights)
            .finish_non_exhaustive()
    }
}

impl<K, V> Default for SingleFlight<K, V> {
    fn default() -> Self {
        SingleFlight {
            shared: Arc::new(Shared {
                flights: Mutex::new(Flights {
                    map: HashMap::new(),
                    next_id: 0,
                }),
                on_abandon: None,
            }),
        }
    }
}

impl<K, V> Shared<K, V> {
    /// The flights; a panic elsewhere never leaves them half-changed (every change is a
    /// single map operation), so a poisoned lock is simply taken over.
    fn lock(&self) -> MutexGuard<'_, Flights<K, V>> {
        self.flights.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl<K: Hash + Eq + Clone, V: Clone> SingleFlight<K, V> {
    /// No flights.
    pub fn new() -> Self {
        Self::default()
    }

    /// No flights; `hook` is called with the key of every spawned flight abandoned because
    /// its last waiter left (for metrics and logs).
    pub fn with_abandon_hook(hook: impl Fn(&K) + Send + Sync + 'static) -> Self {
        SingleFlight {
            shared: Arc::new(Shared {
                flights: Mutex::new(Flights {
                    map: HashMap::new(),
                    next_id: 0,
                }),
                on_abandon: Some(Box::new(hook)),
            }),
        }
    }

    /// Flights in progress.
    pub fn len(&self) -> usize {
        self.shared.lock().map.len()
    }

    /// True when no flight is in progress.
    pub fn is_empty(&self) -> bool {
        self.shared.lock().map.is_empty()
    }

    /// True when a flight for `key` is in progress.
    pub fn in_flight(&self, key: &K) -> bool {
        self.shared.lock().map.contains_key(key)
    }

    /// The value of `make()` for `key`, shared with every concurrent caller of `key`: one
    /// caller's `make` runs, polled by that caller. If that caller is cancelled, or its
    /// computation panics, a waiting caller runs its own `make` in its place. If `key`
    /// already has a flight started by [`SingleFlight::run_spawned`], this call waits for it
    /// (and runs its own `make` should that stop without a value).
    pub async fn run<F, Fut>(&self, key: K, make: F) -> V
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = V>,
    {
        let (id, joined) = {
            let mut flights = self.shared.lock();
            flights.next_id = flights.next_id.wrapping_add(1);
            let next = flights.next_id;
            let flight = flights.map.entry(key.clone()).or_insert_with(|| Flight {
                id: next,
                waiters: 0,
                run: Run::Caller(Arc::new(OnceCell::new())),
            });
            flight.waiters += 1;
            (flight.id, flight.run.joined())
        };
        let _leave = Leave {
            shared: &self.shared,
            key: &key,
            id,
        };
        match joined {
            // OnceCell runs one initializer at a time; when it is dropped (its caller
            // cancelled) or unwinds, the next waiter's initializer runs.
            Joined::Cell(cell) => cell.get_or_init(make).await.clone(),
            Joined::Task(result) => match wait(result).await {
                Ok(v) => v,
                Err(Stopped) => make().await,
            },
        }
    }

    /// The value of `make(keep)` for `key`, computed in a spawned task and shared with every
    /// concurrent caller of `key`. Each caller waits as long as it is polled; when the last
    /// one leaves (dropped, e.g. by its timeout) before the computation called
    /// [`Keep::keep`], the task is aborted and the hook given to [`SingleFlight::with_abandon_hook`] called.
    /// A kept computation runs to the end; its value goes to whoever still waits.
    ///
    /// `make` is called with the flight table locked: it must only build the future (an
    /// `async move` block), not call into this `SingleFlight`. Needs a Tokio runtime.
    ///
    /// Fails with [`Stopped`] when the computation panicked. If `key` already has a flight
    /// started by [`SingleFlight::run`], this call joins it, computing in place as `run`
    /// does (its [`Keep`] then has no effect).
    pub async fn run_spawned<F, Fut>(&self, key: K, make: F) -> Result<V, Stopped>
    where
        K: Send + Sync + 'static,
        V: Send + Sync + 'static,
        F: FnOnce(Keep) -> Fut,
        Fut: Future<Output = V> + Send + 'static,
    {
        let (id, joined, make) = {
            let mut flights = self.shared.lock();
            match flights.map.get_mut(&key) {
                Some(flight) => {
                    flight.waiters += 1;
                    (flight.id, flight.run.joined(), Some(make))
                }
                None => {
                    flights.next_id = flights.next_id.wrapping_add(1);
                    let id = flights.next_id;
                    let (tx, rx) = watch::channel(None);
                    let keep = Keep::of(&self.shared, key.clone(), id);
                    let done = Done {
                        shared: Arc::downgrade(&self.shared),
                        key: key.clone(),
                        id,
                    };
                    let computation = make(keep);
                    let task = tokio::spawn(async move {
                        // Dropped on every way out (value, panic, abort): the entry goes.
                        let _done = done;
                        let value = computation.await;
                        // Nobody left to tell only when every waiter is gone.
                        let _ = tx.send(Some(value));
                    });
                    flights.map.insert(
                        key.clone(),
                        Flight {
                            id,
                            waiters: 1,
                            run: Run::Task {
                                result: rx.clone(),
                                abort: task.abort_handle(),
                                kept: false,
                            },
                        },
                    );
                    (id, Joined::Task(rx), None)
                }
            }
        };
        let _leave = Leave {
            shared: &self.shared,
            key: &key,
            id,
        };
        match (joined, make) {
            (Joined::Task(result), _) => wait(result).await,
            (Joined::Cell(cell), Some(make)) => {
                Ok(cell.get_or_init(|| make(Keep { keep: None })).await.clone())
            }
            // A new flight is always a task.
            (Joined::Cell(_), None) => Err(Stopped),
        }
    }
}

impl Keep {
    fn of<K, V>(shared: &Arc<Shared<K, V>>, key: K, id: u64) -> Keep
    where
        K: Hash + Eq + Send + Sync + 'static,
        V: Send + Sync + 'static,
    {
        let shared = Arc::downgrade(shared);
        Keep {
            keep: Some(Box::new(move || {
                let Some(shared) = shared.upgrade() else {
                    return false;
                };
                let mut flights = shared.lock();
                match flights.map.get_mut(&key).filter(|f| f.id == id) {
                    Some(Flight {
                        run: Run::Task { kept, .. },
                        ..
                    }) => {
                        *kept = true;
                        true
                    }
                    _ => false,
                }
            })),
        }
    }
}

/// Waits for a spawned flight's value.
async fn wait<V: Clone>(mut result: watch::Receiver<Option<V>>) -> Result<V, Stopped> {
    match result.wait_for(Option::is_some).await {
        Ok(value) => (*value).clone().ok_or(Stopped),
        // The task dropped its sender without a value: it panicked or was cancelled.
        Err(_) => Err(Stopped),
    }
}

/// One caller of a flight; leaving (with the value, cancelled or unwinding) is counted.
struct Leave<'a, K: Hash + Eq, V> {
    shared: &'a Shared<K, V>,
    key: &'a K,
    id: u64,
}

impl<K: Hash + Eq, V> Drop for Leave<'_, K, V> {
    fn drop(&mut self) {
        let mut flights = self.shared.lock();
        let Some(flight) = flights.map.get_mut(self.key).filter(|f| f.id == self.id) else {
            return;
        };
        flight.waiters = flight.waiters.saturating_sub(1);
        let (remove, abandoned) = match &flight.run {
            // Done (later calls compute again), or nobody left to take the computation over.
            Run::Caller(cell) => (cell.initialized() || flight.waiters == 0, false),
            Run::Task { abort, kept, .. } => {
                let abandon = flight.waiters == 0 && !*kept;
                if abandon {
                    // Drops the computation's future at its next await (and whatever it
                    // owns: a child process handle, a load slot).
                    abort.abort();
                }
                (abandon, abandon)
            }
        };
        if remove {
            flights.map.remove(self.key);
        }
        drop(flights);
        if abandoned && let Some(hook) = &self.shared.on_abandon {
            hook(self.key);
        }
    }
}

/// Owned by a spawned computation: removes its flight when it ends in any way.
struct Done<K: Hash + Eq, V> {
    shared: Weak<Shared<K, V>>,
    key: K,
    id: u64,
}

impl<K: Hash + Eq, V> Drop for Done<K, V> {
    fn drop(&mut self) {
        let Some(shared) = self.shared.upgrade() else {
            return;
        };
        let mut flights = shared.lock();
        if flights.map.get(&self.key).is_some_and(|f| f.id == self.id) {
            flights.map.remove(&self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    const LONG: Duration = Duration::from_secs(3600);

    /// Yields until `cond` holds (bounded, so a broken flight fails instead of hanging).
    async fn until(cond: impl Fn() -> bool) {
        for _ in 0..2000 {
            if cond() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        panic!("condition never held");
    }

    #[tokio::test]
    async fn concurrent_callers_share_one_run_and_a_finished_key_runs_again() {
        let flight = SingleFlight::<&str, usize>::new();
        let runs = AtomicUsize::new(0);
        let make = || async {
            let n = runs.fetch_add(1, Ordering::SeqCst) + 1;
            tokio::time::sleep(Duration::from_millis(50)).await;
            n
        };
        let all = futures_join((0..16).map(|_| flight.run("k", make)).collect::<Vec<_>>()).await;
        assert_eq!(all, vec![1; 16]);
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        assert!(flight.is_empty(), "the entry goes when the run ends");
        // Nothing is cached: the next call computes again.
        assert_eq!(flight.run("k", make).await, 2);
        // Other keys fly on their own.
        assert_eq!(flight.run("other", || async { 7 }).await, 7);
    }

    /// Polls every future to completion on this task (what `join_all` does).
    async fn futures_join<F: Future>(futs: Vec<F>) -> Vec<F::Output> {
        let mut pinned: Vec<_> = futs.into_iter().map(Box::pin).collect();
        let mut out: Vec<Option<F::Output>> = (0..pinned.len()).map(|_| None).collect();
        std::future::poll_fn(|cx| {
            let mut pending = false;
            for (fut, slot) in pinned.iter_mut().zip(out.iter_mut()) {
                if slot.is_none() {
                    match fut.as_mut().poll(cx) {
                        std::task::Poll::Ready(v) => *slot = Some(v),
                        std::task::Poll::Pending => pending = true,
                    }
                }
            }
            if pending {
                std::task::Poll::Pending
            } else {
                std::task::Poll::Ready(())
            }
        })
        .await;
        out.into_iter().map(|v| v.unwrap()).collect()
    }

    #[tokio::test]
    async fn a_cancelled_leader_hands_over_to_a_waiter() {
        let flight = Arc::new(SingleFlight::<u8, &'static str>::new());
        let leader = tokio::spawn({
            let flight = flight.clone();
            async move {
                flight
                    .run(1, || async {
                        tokio::time::sleep(LONG).await;
                        "leader"
                    })
                    .await
            }
        });
        until(|| flight.in_flight(&1)).await;
        let waiter = tokio::spawn({
            let flight = flight.clone();
            async move { flight.run(1, || async { "waiter" }).await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(
            !waiter.is_finished(),
            "the waiter waits for the leader's run"
        );
        leader.abort();
        assert_eq!(waiter.await.unwrap(), "waiter");
        assert!(flight.is_empty());
        // A cancelled run with nobody waiting leaves nothing behind.
        let lone = tokio::spawn({
            let flight = flight.clone();
            async move { flight.run(2, std::future::pending).await }
        });
        until(|| flight.in_flight(&2)).await;
        lone.abort();
        until(|| flight.is_empty()).await;
    }

    #[tokio::test]
    async fn a_panic_in_the_computation_does_not_poison_later_calls() {
        let flight = Arc::new(SingleFlight::<u8, u32>::new());
        let panicking = tokio::spawn({
            let flight = flight.clone();
            async move {
                flight
                    .run(1, || async {
                        tokio::time::sleep(Duration::from_millis(30)).await;
                        panic!("computation failed")
                    })
                    .await
            }
        });
        until(|| flight.in_flight(&1)).await;
        // A waiter takes over from the panicked run.
        let waiter = flight.run(1, || async { 5 });
        assert_eq!(waiter.await, 5);
        assert!(panicking.await.unwrap_err().is_panic());
        assert!(flight.is_empty());
        assert_eq!(flight.run(1, || async { 6 }).await, 6);

        // The same for a spawned computation: its waiters learn it stopped, later calls run.
        let err = flight
            .run_spawned(3, |_| async { panic!("spawned computation failed") })
            .await;
        assert_eq!(err, Err(Stopped));
        until(|| flight.is_empty()).await;
        assert_eq!(flight.run_spawned(3, |_| async { 8 }).await, Ok(8));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_spawned_run_is_shared_and_abandoned_when_its_last_waiter_leaves() {
        let abandoned = Arc::new(AtomicUsize::new(0));
        let flight = Arc::new(SingleFlight::<u8, u32>::with_abandon_hook({
            let abandoned = abandoned.clone();
            move |_| {
                abandoned.fetch_add(1, Ordering::SeqCst);
            }
        }));
        let runs = Arc::new(AtomicUsize::new(0));
        // Shared: 8 callers, one run.
        let callers: Vec<_> = (0..8)
            .map(|_| {
                let (flight, runs) = (flight.clone(), runs.clone());
                tokio::spawn(async move {
                    flight
                        .run_spawned(1, move |_| async move {
                            runs.fetch_add(1, Ordering::SeqCst);
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            11
                        })
                        .await
                })
            })
            .collect();
        for c in callers {
            assert_eq!(c.await.unwrap(), Ok(11));
        }
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        until(|| flight.is_empty()).await;

        // Abandoned: every waiter gives up, so the computation is dropped mid-way.
        struct Dropped(Arc<AtomicUsize>);
        impl Drop for Dropped {
            fn drop(&mut self) {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }
        let dropped = Arc::new(AtomicUsize::new(0));
        let slow = |dropped: Arc<AtomicUsize>| {
            move |_: Keep| async move {
                let _guard = Dropped(dropped);
                tokio::time::sleep(LONG).await;
                0
            }
        };
        let a = flight.run_spawned(2, slow(dropped.clone()));
        let b = flight.run_spawned(2, slow(dropped.clone()));
        let gave_up = tokio::time::timeout(Duration::from_millis(50), futures_join(vec![a, b]));
        assert!(gave_up.await.is_err());
        assert_eq!(abandoned.load(Ordering::SeqCst), 1);
        assert!(flight.is_empty(), "an abandoned flight is gone at once");
        until(|| dropped.load(Ordering::SeqCst) == 1).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_kept_spawned_run_finishes_without_waiters() {
        let flight = Arc::new(SingleFlight::<u8, u32>::with_abandon_hook(|_| {
            panic!("a kept flight is never abandoned")
        }));
        let finished = Arc::new(AtomicUsize::new(0));
        let make = {
            let finished = finished.clone();
            move |keep: Keep| async move {
                assert!(keep.keep());
                tokio::time::sleep(Duration::from_millis(100)).await;
                finished.fetch_add(1, Ordering::SeqCst);
                21
            }
        };
        let gave_up = tokio::time::timeout(Duration::from_millis(30), flight.run_spawned(1, make));
        assert!(gave_up.await.is_err());
        // Still in flight: a later caller joins it rather than starting another run.
        assert!(flight.in_flight(&1));
        let joined = flight.run_spawned(1, |_| async { 99 }).await;
        assert_eq!(joined, Ok(21));
        assert_eq!(finished.load(Ordering::SeqCst), 1);
        until(|| flight.is_empty()).await;
        // A kept run nobody waits for still ends and leaves.
        let gave_up = tokio::time::timeout(
            Duration::from_millis(10),
            flight.run_spawned(2, |keep| async move {
                keep.keep();
                tokio::time::sleep(Duration::from_millis(40)).await;
                1
            }),
        );
        assert!(gave_up.await.is_err());
        assert!(flight.in_flight(&2));
        until(|| flight.is_empty()).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn keep_after_abandonment_says_so() {
        let flight = Arc::new(SingleFlight::<u8, u32>::new());
        let (tx, rx) = tokio::sync::oneshot::channel::<Keep>();
        // The computation hands its Keep out, then waits; its only waiter gives up.
        let caller = tokio::spawn({
            let flight = flight.clone();
            async move {
                flight
                    .run_spawned(1, move |keep| async move {
                        let _ = tx.send(keep);
                        tokio::time::sleep(LONG).await;
                        0
                    })
                    .await
            }
        });
        let keep = rx.await.unwrap();
        caller.abort();
        until(|| flight.is_empty()).await;
        assert!(!keep.keep(), "an abandoned flight cannot be kept");
    }
}
