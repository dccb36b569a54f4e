//! Picking an instance: priority groups, highest first; inside a group smooth weighted
//! round-robin, or consistent hashing on a request key.
//!
//! Consistent hashing is weighted rendezvous hashing over XXH3-64 (seed 0) of the key bytes, a
//! zero byte, and the instance *name*: a fixed function of the key and the name alone, so a key
//! maps to the same instance on every node, every build, and after any reordering of `instances`.

use switchyard_sdk::balancer::SmoothWeighted;
use switchyard_sdk::chash::HashOn;
use switchyard_sdk::vars::with_request;
use switchyard_sdk::{ConfigError, Ctx, Request};

use super::config::BalancerConfig;

struct Group {
    /// Instance indices, in config order.
    members: Vec<usize>,
    /// The members' names, which chash hashes.
    names: Vec<Box<[u8]>>,
    weights: Vec<u32>,
    wrr: SmoothWeighted,
}

pub struct Selector {
    groups: Vec<Group>,
    hash_on: Option<HashOn>,
}

impl Selector {
    /// `instances`: (name, priority, weight) per instance, in config order.
    pub fn new(instances: &[(&str, i64, u32)], balancer: &BalancerConfig) -> Result<Selector, ConfigError> {
        let mut priorities: Vec<i64> = instances.iter().map(|(_, p, _)| *p).collect();
        priorities.sort_unstable_by(|a, b| b.cmp(a));
        priorities.dedup();
        let groups = priorities
            .into_iter()
            .map(|priority| {
                let members: Vec<usize> = (0..instances.len()).filter(|&i| instances[i].1 == priority).collect();
                let weights: Vec<u32> = members.iter().map(|&i| instances[i].2).collect();
                let names = members.iter().map(|&i| instances[i].0.as_bytes().into()).collect();
                Group { wrr: SmoothWeighted::new(weights.iter().copied()), members, names, weights }
            })
            .collect();
        let hash_on = match balancer.algorithm.as_str() {
            "roundrobin" => None,
            "chash" => Some(
                HashOn::parse(Some(&balancer.hash_on), balancer.key.as_deref()).map_err(|e| e.within("balancer"))?,
            ),
            _ => return Err(ConfigError::new("balancer.algorithm", "must be one of roundrobin, chash")),
        };
        Ok(Selector { groups, hash_on })
    }

    /// The request's hash key, when the balancer hashes: the `hash_on` source's value, else the
    /// client address (as APISIX falls back to `remote_addr`). Runs once per request, in access.
    pub fn key(&self, req: &Request, ctx: &Ctx) -> Option<String> {
        let hash_on = self.hash_on.as_ref()?;
        Some(with_request(req, ctx.client_addr, |vars| hash_on.key(vars, ctx.consumer.as_deref()).into_owned()))
    }

    /// The next instance among those `usable`, highest priority group first; `None` when no
    /// group has a usable member. With a key, the same key maps to the same instance while it
    /// stays usable (weighted rendezvous hashing).
    pub fn pick(&self, usable: impl Fn(usize) -> bool, key: Option<&str>) -> Option<usize> {
        for group in &self.groups {
            let picked = match key {
                Some(key) => rendezvous(group, key, &usable),
                None => group.wrr.pick(|j| usable(group.members[j])).map(|j| group.members[j]),
            };
            if picked.is_some() {
                return picked;
            }
        }
        None
    }
}

/// The chash of `key` for the instance called `name` (see the module docs).
fn name_hash(key: &str, name: &[u8]) -> u64 {
    let mut hasher = xxhash_rust::xxh3::Xxh3Default::new();
    hasher.update(key.as_bytes());
    hasher.update(&[0]);
    hasher.update(name);
    hasher.digest()
}

fn rendezvous(group: &Group, key: &str, usable: &impl Fn(usize) -> bool) -> Option<usize> {
    let any_positive = group.members.iter().zip(&group.weights).any(|(&i, &w)| w > 0 && usable(i));
    (0..group.members.len())
        .filter(|&j| usable(group.members[j]) && (group.weights[j] > 0 || !any_positive))
        .map(|j| {
            // A uniform draw in (0, 1]; the score -w / ln(u) is weighted rendezvous hashing.
            let unit = ((name_hash(key, &group.names[j]) >> 11) as f64 + 1.0) / (1u64 << 53) as f64;
            (group.members[j], f64::from(group.weights[j].max(1)) / -unit.ln().min(-f64::MIN_POSITIVE))
        })
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(i, _)| i)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn higher_priority_first_then_weights() {
        let selector = Selector::new(&[("a", 1, 1), ("b", 2, 4), ("c", 2, 1)], &BalancerConfig::default()).unwrap();
        let picks: Vec<usize> = (0..10).map(|_| selector.pick(|_| true, None).unwrap()).collect();
        assert_eq!(picks.iter().filter(|&&p| p == 1).count(), 8);
        assert_eq!(picks.iter().filter(|&&p| p == 2).count(), 2);
        assert_eq!(selector.pick(|i| i == 0, None), Some(0));
        assert_eq!(selector.pick(|_| false, None), None);
    }

    #[test]
    fn chash_is_sticky_while_the_instance_is_usable() {
        let balancer =
            BalancerConfig { algorithm: "chash".into(), hash_on: "header".into(), key: Some("x-user".into()) };
        let selector = Selector::new(&[("a", 0, 1), ("b", 0, 1), ("c", 0, 1)], &balancer).unwrap();
        for user in ["alice", "bob", "carol", "dave"] {
            let first = selector.pick(|_| true, Some(user)).unwrap();
            assert!((0..5).all(|_| selector.pick(|_| true, Some(user)) == Some(first)));
            let other = selector.pick(|i| i != first, Some(user)).unwrap();
            assert_ne!(other, first);
        }
        let spread: std::collections::HashSet<usize> =
            (0..50).map(|n| selector.pick(|_| true, Some(&format!("user-{n}"))).unwrap()).collect();
        assert_eq!(spread.len(), 3, "keys spread over every instance");
    }

    #[test]
    fn chash_follows_the_instance_name_not_its_position() {
        let balancer = BalancerConfig { algorithm: "chash".into(), hash_on: "vars".into(), key: None };
        let forward = Selector::new(&[("a", 0, 1), ("b", 0, 1), ("c", 0, 1)], &balancer).unwrap();
        let reversed = Selector::new(&[("c", 0, 1), ("b", 0, 1), ("a", 0, 1)], &balancer).unwrap();
        let names = ["a", "b", "c"];
        for n in 0..100 {
            let key = format!("user-{n}");
            let there = names[forward.pick(|_| true, Some(&key)).unwrap()];
            let back = names[2 - reversed.pick(|_| true, Some(&key)).unwrap()];
            assert_eq!(there, back, "{key} moved when instances were reordered");
        }
    }

    #[test]
    fn chash_is_a_fixed_function_of_key_and_name() {
        // Pinned values: a change here moves every caller's instance on upgrade. XXH3-64, seed 0.
        assert_eq!(name_hash("user-1", b"a"), xxhash_rust::xxh3::xxh3_64(b"user-1\0a"));
        assert_eq!(xxhash_rust::xxh3::xxh3_64(b""), 0x2d06800538d394c2, "XXH3-64's published empty-input value");
        assert_eq!(name_hash("", b""), 14144645293874801883);
    }
}
