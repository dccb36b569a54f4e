//! A route's metric series of one family, found by label values without a lock or an allocation.
//!
//! Label values that vary per request (the instance, the status code, the model) are known only
//! when a request ends, yet they come from config, so each route sees few distinct sets. Each set
//! is created once (through the family, which locks and allocates) and kept in a fixed table of
//! slots claimed by compare-and-swap; every later request finds it by hash and compares the labels.
//! A full table (more distinct sets than slots) still works: the family is asked each time.

use std::hash::Hasher;
use std::ops::Deref;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

/// The label values a series is found by: a few strings and one number (a status code, a flag).
#[derive(Clone, Copy)]
pub struct Key<'a> {
    pub labels: &'a [&'a str],
    pub number: u64,
}

impl Key<'_> {
    fn hash(&self) -> u64 {
        let mut hasher = fnv::FnvHasher::default();
        for label in self.labels {
            hasher.write(label.as_bytes());
            hasher.write_u8(0xff);
        }
        hasher.write_u64(self.number);
        // 0 marks an empty slot.
        hasher.finish() | 1
    }
}

struct Entry<T> {
    labels: Box<[Box<str>]>,
    number: u64,
    value: T,
}

impl<T> Entry<T> {
    fn is(&self, key: &Key<'_>) -> bool {
        self.number == key.number
            && self.labels.len() == key.labels.len()
            && self.labels.iter().zip(key.labels).all(|(a, b)| **a == **b)
    }
}

struct Slot<T> {
    tag: AtomicU64,
    entry: OnceLock<Entry<T>>,
}

/// Series handles by label values, filled on first use. See the module docs.
pub struct SeriesCache<T> {
    slots: Box<[Slot<T>]>,
}

/// A series found in the cache, or made for this request when the cache is full.
pub enum Found<'a, T> {
    Cached(&'a T),
    Made(T),
}

impl<T> Deref for Found<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        match self {
            Found::Cached(value) => value,
            Found::Made(value) => value,
        }
    }
}

impl<T> SeriesCache<T> {
    /// A cache of `slots` label sets (rounded up to a power of two).
    pub fn new(slots: usize) -> Self {
        let len = slots.max(1).next_power_of_two();
        Self { slots: (0..len).map(|_| Slot { tag: AtomicU64::new(0), entry: OnceLock::new() }).collect() }
    }

    /// The series of `key`, made by `make` the first time. Runs per request: after the first time
    /// it reads atomics and compares strings only.
    pub fn get(&self, key: Key<'_>, make: impl Fn() -> T) -> Found<'_, T> {
        let tag = key.hash();
        let mask = self.slots.len() - 1;
        let init =
            || Entry { labels: key.labels.iter().map(|l| Box::from(*l)).collect(), number: key.number, value: make() };
        for probe in 0..self.slots.len() {
            let slot = &self.slots[(tag as usize).wrapping_add(probe) & mask];
            let mut current = slot.tag.load(Ordering::Acquire);
            if current == 0 {
                current = match slot.tag.compare_exchange(0, tag, Ordering::AcqRel, Ordering::Acquire) {
                    Ok(_) => tag,
                    Err(other) => other,
                };
            }
            if current != tag {
                continue;
            }
            // The slot's claimer may still be filling it: `get_or_init` waits for it (once per
            // label set). Another set with the same hash may own the slot: then look further.
            let entry = slot.entry.get_or_init(init);
            if entry.is(&key) {
                return Found::Cached(&entry.value);
            }
        }
        Found::Made(make())
    }

    /// Every cached series, for tests and removal.
    pub fn values(&self) -> impl Iterator<Item = &T> {
        self.slots.iter().filter_map(|slot| slot.entry.get().map(|e| &e.value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::sync::Arc;

    #[test]
    fn a_label_set_is_made_once_and_found_again() {
        let made = AtomicUsize::new(0);
        let cache = SeriesCache::<usize>::new(4);
        let make = |n| {
            let made = &made;
            move || {
                made.fetch_add(1, Ordering::SeqCst);
                n
            }
        };
        for _ in 0..3 {
            assert_eq!(*cache.get(Key { labels: &["a"], number: 200 }, make(1)), 1);
            assert_eq!(*cache.get(Key { labels: &["a"], number: 500 }, make(2)), 2);
            assert_eq!(*cache.get(Key { labels: &["b"], number: 200 }, make(3)), 3);
            assert_eq!(*cache.get(Key { labels: &["a", ""], number: 200 }, make(4)), 4);
        }
        assert_eq!(made.load(Ordering::SeqCst), 4);
        assert_eq!(cache.values().count(), 4);
    }

    #[test]
    fn a_full_cache_still_answers_by_making_the_series() {
        let cache = SeriesCache::<u64>::new(2);
        for n in 0..5 {
            assert_eq!(*cache.get(Key { labels: &["x"], number: n }, || n * 10), n * 10);
        }
        assert!(matches!(cache.get(Key { labels: &["x"], number: 4 }, || 40), Found::Made(40)));
        assert!(matches!(cache.get(Key { labels: &["x"], number: 0 }, || 0), Found::Cached(0)));
    }

    #[test]
    fn threads_racing_for_the_same_set_share_one_series() {
        let cache = Arc::new(SeriesCache::<Arc<AtomicUsize>>::new(8));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let cache = Arc::clone(&cache);
                std::thread::spawn(move || {
                    for n in 0..1000u64 {
                        let key = Key { labels: &["route", "instance"], number: n % 3 };
                        cache.get(key, || Arc::new(AtomicUsize::new(0))).fetch_add(1, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        let total: usize = cache.values().map(|c| c.load(Ordering::Relaxed)).sum();
        assert_eq!((cache.values().count(), total), (3, 4000));
    }
}
