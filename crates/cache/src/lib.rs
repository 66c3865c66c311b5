//! The cache mechanisms of attesta: the one bounded LRU and (feature `flight`) the one
//! single flight, [`SingleFlight`].
//!
//! [`Lru`] is a plain map that also keeps its entries in recency order and sums a
//! caller-given byte weight per entry, so every cache in the tree (loaded models,
//! compiled plans, verified certificate chains, the on-disk model store) bounds itself
//! the same way: by count, by bytes, or both, sparing whatever entries the caller says.
//! Finding the least recently used entry is O(log n) (a `BTreeMap` keyed by a use
//! counter), not a scan of the whole map.
//!
//! It holds no lock: each owner wraps it in the lock it already has, so a cache's own
//! state (flights, pins, failures) changes atomically with it.
#![forbid(unsafe_code)]

#[cfg(feature = "flight")]
mod flight;
#[cfg(feature = "flight")]
pub use flight::{Keep, SingleFlight, Stopped};

use std::borrow::Borrow;
use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;

/// A map that remembers use order and the bytes each entry holds.
#[derive(Debug, Clone)]
pub struct Lru<K, V> {
    map: HashMap<K, Slot<V>>,
    /// Use counter → key; the first entry is the least recently used.
    order: BTreeMap<u64, K>,
    tick: u64,
    bytes: usize,
}

#[derive(Debug, Clone)]
struct Slot<V> {
    value: V,
    tick: u64,
    bytes: usize,
}

impl<K, V> Default for Lru<K, V> {
    fn default() -> Self {
        Lru {
            map: HashMap::new(),
            order: BTreeMap::new(),
            tick: 0,
            bytes: 0,
        }
    }
}

impl<K: Hash + Eq + Clone, V> Lru<K, V> {
    /// An empty map.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// True when there are no entries.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Sum of the entries' byte weights (saturating).
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// True when `key` has an entry (does not count as a use).
    pub fn contains_key<Q>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.map.contains_key(key)
    }

    /// The value for `key`, marked as the most recently used.
    pub fn get<Q>(&mut self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.touch(key);
        self.map.get(key).map(|s| &s.value)
    }

    /// The value for `key`, without counting a use.
    pub fn peek<Q>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.map.get(key).map(|s| &s.value)
    }

    /// The byte weight of `key`'s entry.
    pub fn weight<Q>(&self, key: &Q) -> Option<usize>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.map.get(key).map(|s| s.bytes)
    }

    /// Marks `key` as the most recently used; false when absent.
    pub fn touch<Q>(&mut self, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let tick = self.next_tick();
        let Some(slot) = self.map.get_mut(key) else {
            return false;
        };
        if let Some(k) = self.order.remove(&slot.tick) {
            self.order.insert(tick, k);
        }
        slot.tick = tick;
        true
    }

    /// Inserts (or replaces) `key` as the most recently used entry holding `bytes`;
    /// returns the value it replaced. Nothing is evicted here: the owner decides what
    /// to spare, with [`Lru::pop_lru`].
    pub fn insert(&mut self, key: K, value: V, bytes: usize) -> Option<V> {
        let old = self.remove(&key);
        let tick = self.next_tick();
        self.order.insert(tick, key.clone());
        self.bytes = self.bytes.saturating_add(bytes);
        self.map.insert(key, Slot { value, tick, bytes });
        old
    }

    /// Changes the byte weight of `key`'s entry (its size became known later); false
    /// when absent. Does not count as a use.
    pub fn set_weight<Q>(&mut self, key: &Q, bytes: usize) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let Some(slot) = self.map.get_mut(key) else {
            return false;
        };
        self.bytes = self.bytes.saturating_sub(slot.bytes).saturating_add(bytes);
        slot.bytes = bytes;
        true
    }

    /// Removes `key`'s entry.
    pub fn remove<Q>(&mut self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let slot = self.map.remove(key)?;
        self.order.remove(&slot.tick);
        self.bytes = self.bytes.saturating_sub(slot.bytes);
        Some(slot.value)
    }

    /// Removes and returns the least recently used entry that `spare` does not protect,
    /// with its byte weight. Costs O(log n) plus the spared entries it steps over.
    pub fn pop_lru(&mut self, mut spare: impl FnMut(&K, &V) -> bool) -> Option<(K, V, usize)> {
        let victim = self
            .order
            .values()
            .find(|k| self.map.get(*k).is_some_and(|slot| !spare(k, &slot.value)))?;
        let key = victim.clone();
        let slot = self.map.remove(&key)?;
        self.order.remove(&slot.tick);
        self.bytes = self.bytes.saturating_sub(slot.bytes);
        Some((key, slot.value, slot.bytes))
    }

    /// Keeps only the entries for which `keep` is true.
    pub fn retain(&mut self, mut keep: impl FnMut(&K, &V) -> bool) {
        let order = &mut self.order;
        let mut freed = 0usize;
        self.map.retain(|k, slot| {
            let kept = keep(k, &slot.value);
            if !kept {
                order.remove(&slot.tick);
                freed = freed.saturating_add(slot.bytes);
            }
            kept
        });
        self.bytes = self.bytes.saturating_sub(freed);
    }

    /// Removes every entry.
    pub fn clear(&mut self) {
        self.map.clear();
        self.order.clear();
        self.bytes = 0;
    }

    /// Entries from least to most recently used.
    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.order
            .values()
            .filter_map(|k| self.map.get_key_value(k).map(|(k, s)| (k, &s.value)))
    }

    fn next_tick(&mut self) -> u64 {
        self.tick = self.tick.wrapping_add(1);
        self.tick
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn keys(lru: &Lru<&'static str, u32>) -> Vec<&'static str> {
        lru.iter().map(|(k, _)| *k).collect()
    }

    #[test]
    fn use_order_and_weights() {
        let mut lru = Lru::new();
        lru.insert("a", 1, 10);
        lru.insert("b", 2, 20);
        lru.insert("c", 3, 30);
        assert_eq!((lru.len(), lru.bytes()), (3, 60));
        assert_eq!(lru.get("a"), Some(&1));
        assert_eq!(keys(&lru), ["b", "c", "a"]);
        assert_eq!(lru.peek("b"), Some(&2));
        assert_eq!(keys(&lru), ["b", "c", "a"], "peek is not a use");
        assert_eq!(lru.insert("b", 4, 5), Some(2));
        assert_eq!((keys(&lru), lru.bytes()), (vec!["c", "a", "b"], 45));
        assert!(lru.set_weight("c", 1));
        assert_eq!(lru.bytes(), 16);
        assert_eq!(lru.remove("a"), Some(1));
        assert_eq!((keys(&lru), lru.bytes()), (vec!["c", "b"], 6));
    }

    #[test]
    fn eviction_spares_what_the_owner_protects() {
        let mut lru = Lru::new();
        for (i, k) in ["a", "b", "c", "d"].into_iter().enumerate() {
            lru.insert(k, i as u32, 100);
        }
        // Over a 250-byte budget, sparing "a" (say, the entry just loaded) and odd values.
        let mut evicted = Vec::new();
        while lru.bytes() > 250 {
            let Some((k, _, w)) = lru.pop_lru(|k, v| *k == "a" || v % 2 == 1) else {
                break;
            };
            assert_eq!(w, 100);
            evicted.push(k);
        }
        assert_eq!(evicted, ["c"]);
        assert_eq!(keys(&lru), ["a", "b", "d"]);
        // Everything spared: nothing to pop, and the budget is simply not met.
        assert!(lru.pop_lru(|_, _| true).is_none());
        lru.retain(|k, _| *k != "b");
        assert_eq!((keys(&lru), lru.bytes()), (vec!["a", "d"], 200));
        lru.clear();
        assert!(lru.is_empty() && lru.bytes() == 0);
    }

    #[test]
    fn a_flood_of_entries_stays_fast() {
        // 100k inserts into a 1,000-entry bound: O(log n) eviction keeps this instant;
        // the old O(n) scan per insert was 100M steps.
        let mut lru = Lru::new();
        for i in 0..100_000u32 {
            lru.insert(i, i, 1);
            while lru.len() > 1000 {
                lru.pop_lru(|_, _| false);
            }
        }
        assert_eq!(lru.len(), 1000);
        assert_eq!(lru.iter().next().map(|(k, _)| *k), Some(99_000));
    }
}
