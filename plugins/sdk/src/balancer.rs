//! Smooth weighted round-robin (nginx's algorithm): weights 4:1 give exactly 4 and 1 picks in
//! every 5, interleaved rather than in bursts. Used for upstream nodes and AI instances alike.

use std::sync::Mutex;

/// The shared state of one weighted set. Cheap to pick from; the lock is held for a few
/// additions only.
#[derive(Debug)]
pub struct SmoothWeighted {
    weights: Vec<i64>,
    current: Mutex<Vec<i64>>,
}

impl SmoothWeighted {
    pub fn new(weights: impl IntoIterator<Item = u32>) -> Self {
        let weights: Vec<i64> = weights.into_iter().map(i64::from).collect();
        let current = Mutex::new(vec![0; weights.len()]);
        Self { weights, current }
    }

    pub fn len(&self) -> usize {
        self.weights.len()
    }

    pub fn is_empty(&self) -> bool {
        self.weights.is_empty()
    }

    /// Picks among the members for which `eligible` is true. Members of weight 0 are picked only
    /// when no eligible member has a positive weight. `None` when nothing is eligible.
    pub fn pick(&self, eligible: impl Fn(usize) -> bool) -> Option<usize> {
        let positive = |i: usize| self.weights[i] > 0 && eligible(i);
        if !(0..self.weights.len()).any(positive) {
            return (0..self.weights.len()).find(|&i| eligible(i));
        }
        let mut current = self.current.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut total = 0;
        let mut best: Option<usize> = None;
        for i in (0..self.weights.len()).filter(|&i| positive(i)) {
            current[i] += self.weights[i];
            total += self.weights[i];
            if best.is_none_or(|b| current[i] > current[b]) {
                best = Some(i);
            }
        }
        if let Some(b) = best {
            current[b] -= total;
        }
        best
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_four_to_one_give_eight_to_two_over_ten() {
        let wrr = SmoothWeighted::new([4, 1]);
        let picks: Vec<usize> = (0..10).map(|_| wrr.pick(|_| true).unwrap()).collect();
        assert_eq!(picks.iter().filter(|&&p| p == 0).count(), 8);
        assert_eq!(picks.iter().filter(|&&p| p == 1).count(), 2);
        // Smooth: the light member is not starved to the end of the cycle.
        assert_ne!(&picks[..5], &[0, 0, 0, 0, 0]);
    }

    #[test]
    fn zero_weight_is_picked_only_when_alone() {
        let wrr = SmoothWeighted::new([0, 3]);
        assert!((0..6).all(|_| wrr.pick(|_| true) == Some(1)));
        assert_eq!(wrr.pick(|i| i == 0), Some(0));
        assert_eq!(wrr.pick(|_| false), None);
    }
}
