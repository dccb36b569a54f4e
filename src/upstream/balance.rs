//! How a plain upstream picks a node: smooth weighted round-robin, consistent hashing on a
//! request variable (`chash`), or the fewest requests in flight per weight (`least_conn`).

use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use switchyard_sdk::balancer::SmoothWeighted;

use switchyard_sdk::chash::HashOn;

/// Points each unit of weight puts on the hash ring: enough to spread keys evenly.
const POINTS_PER_WEIGHT: u32 = 40;

pub enum Balancer {
    RoundRobin(SmoothWeighted),
    Hash(Ring),
    LeastConn(LeastConn),
}

impl Balancer {
    /// Picks among the nodes `eligible` allows. `key` is the `chash` key of this request
    /// (unused by the other balancers). `None` when nothing is eligible.
    pub fn pick(&self, key: Option<&str>, eligible: impl Fn(usize) -> bool) -> Option<usize> {
        match self {
            Balancer::RoundRobin(wrr) => wrr.pick(eligible),
            Balancer::Hash(ring) => ring.pick(key.map_or(0, hash_key), eligible),
            Balancer::LeastConn(least) => least.pick(eligible),
        }
    }
}

/// A consistent hash ring: each node owns points in proportion to its weight, and a key goes to
/// the first eligible point at or after its hash, so adding or removing a node moves only the
/// keys it owns.
pub struct Ring {
    /// What `chash` hashes.
    pub hash_on: HashOn,
    points: Vec<(u64, usize)>,
}

impl Ring {
    pub fn new(hash_on: HashOn, node_names: &[&str], weights: &[u32]) -> Ring {
        let mut points = Vec::new();
        for (node, (name, weight)) in node_names.iter().zip(weights).enumerate() {
            for i in 0..weight.saturating_mul(POINTS_PER_WEIGHT) {
                let mut hasher = DefaultHasher::new();
                (name, i).hash(&mut hasher);
                points.push((hasher.finish(), node));
            }
        }
        points.sort_unstable();
        Ring { hash_on, points }
    }

    fn pick(&self, hash: u64, eligible: impl Fn(usize) -> bool) -> Option<usize> {
        let start = self.points.partition_point(|(point, _)| *point < hash);
        let (after, before) = self.points.split_at(start);
        before.iter().chain(after).map(|(_, node)| *node).find(|&node| eligible(node))
    }
}

fn hash_key(key: &str) -> u64 {
    let mut hasher = DefaultHasher::new();
    key.as_bytes().hash(&mut hasher);
    hasher.finish()
}

/// Requests in flight per node. A request counts from its pick until its response head is in
/// (or it fails): a streamed body no longer counts.
pub struct LeastConn {
    weights: Vec<u32>,
    active: Arc<Vec<AtomicUsize>>,
    /// Where the scan starts, turning each pick: ties go round the nodes.
    cursor: AtomicUsize,
}

impl LeastConn {
    pub fn new(weights: Vec<u32>) -> Self {
        let active = Arc::new(weights.iter().map(|_| AtomicUsize::new(0)).collect());
        Self { weights, active, cursor: AtomicUsize::new(0) }
    }

    fn pick(&self, eligible: impl Fn(usize) -> bool) -> Option<usize> {
        let n = self.weights.len();
        let start = self.cursor.fetch_add(1, Ordering::Relaxed);
        let mut best: Option<(u128, usize)> = None;
        for offset in 0..n {
            let node = (start + offset) % n;
            if !eligible(node) {
                continue;
            }
            // (active + 1) / weight, compared without division: a / w < b / v ⇔ a·v < b·w.
            let load = self.active[node].load(Ordering::Relaxed) as u128 + 1;
            let weight = u128::from(self.weights[node].max(1));
            let better = best.is_none_or(|(best_load, best_node)| {
                load * u128::from(self.weights[best_node].max(1)) < best_load * weight
            });
            if better {
                best = Some((load, node));
            }
        }
        let (_, node) = best?;
        Some(node)
    }

    /// Counts one request on `node` until the guard drops.
    pub fn start(&self, node: usize) -> InFlight {
        self.active[node].fetch_add(1, Ordering::Relaxed);
        InFlight { active: Arc::clone(&self.active), node }
    }
}

/// One request counted on a node.
pub struct InFlight {
    active: Arc<Vec<AtomicUsize>>,
    node: usize,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.active[self.node].fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ring_sends_a_key_to_one_node_and_moves_it_only_when_that_node_goes() {
        let ring = Ring::new(HashOn::Consumer, &["a:1", "b:1", "c:1"], &[1, 1, 1]);
        let key = |k: u64| hash_key(&format!("user-{k}"));
        let owners: Vec<usize> = (0..300).map(|k| ring.pick(key(k), |_| true).unwrap()).collect();
        for node in 0..3 {
            let share = owners.iter().filter(|&&o| o == node).count();
            assert!(share > 50, "node {node} owns {share} of 300 keys");
        }
        let without_b: Vec<usize> = (0..300).map(|k| ring.pick(key(k), |n| n != 1).unwrap()).collect();
        for (before, after) in owners.iter().zip(&without_b) {
            if *before != 1 {
                assert_eq!(before, after, "keys of the nodes that stayed do not move");
            }
        }
        assert_eq!(ring.pick(5, |_| false), None);
    }

    #[test]
    fn least_conn_prefers_the_node_with_fewer_requests_per_weight() {
        let least = LeastConn::new(vec![1, 1]);
        let busy = least.start(0);
        assert!((0..4).all(|_| least.pick(|_| true) == Some(1)));
        drop(busy);
        let picks: Vec<_> = (0..4).map(|_| least.pick(|_| true).unwrap()).collect();
        assert!(picks.contains(&0) && picks.contains(&1), "ties go round: {picks:?}");
        let heavy = LeastConn::new(vec![3, 1]);
        let _one = heavy.start(0);
        assert_eq!(heavy.pick(|_| true), Some(0), "2/3 beats 1/1");
    }
}
