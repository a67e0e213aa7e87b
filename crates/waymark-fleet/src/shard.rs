//! `--shard i/N`: which targets one of N runners takes, so that N
//! Kubernetes Jobs or CI matrix jobs share a fleet without a coordinator.

use crate::error::FleetError;

/// One of `count` runners, numbered from 0 as an indexed Job's
/// `JOB_COMPLETION_INDEX` is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// This runner's number, below `count`.
    pub index: u64,
    /// How many runners share the fleet.
    pub count: u64,
}

impl Shard {
    /// Reads `i/N`.
    pub fn parse(raw: &str) -> Result<Shard, FleetError> {
        let bad = |why: &str| FleetError::Usage(format!("--shard {raw}: {why}; write i/N, as 0/4 … 3/4"));
        let (i, n) = raw.split_once('/').ok_or_else(|| bad("no `/`"))?;
        let index: u64 = i.trim().parse().map_err(|_| bad("the index is not a number"))?;
        let count: u64 = n.trim().parse().map_err(|_| bad("the count is not a number"))?;
        if count == 0 {
            return Err(bad("the count must be at least 1"));
        }
        if index >= count {
            return Err(bad("the index counts from 0 and must be below the count"));
        }
        Ok(Shard { index, count })
    }

    /// Whether this shard takes the target called `name`. The choice
    /// depends on the name alone (FNV-1a, stable across builds and
    /// machines, unlike std's hasher), so every runner agrees on it and a
    /// target keeps its shard when others are added.
    pub fn takes(&self, name: &str) -> bool {
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for byte in name.as_bytes() {
            hash ^= u64::from(*byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
        hash % self.count == self.index
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_lands_in_exactly_one_shard_and_they_are_spread() {
        let shards: Vec<Shard> = (0..4).map(|i| Shard::parse(&format!("{i}/4")).unwrap()).collect();
        let mut sizes = [0usize; 4];
        for n in 0..1000 {
            let name = format!("tenant-{n}");
            let takers: Vec<usize> = (0..4).filter(|i| shards[*i].takes(&name)).collect();
            assert_eq!(takers.len(), 1, "{name}");
            sizes[takers[0]] += 1;
        }
        assert!(sizes.iter().all(|s| (200..300).contains(s)), "{sizes:?}");
    }

    #[test]
    fn a_bad_shard_is_refused_saying_how_to_write_one() {
        for raw in ["4/4", "1", "a/2", "0/0"] {
            let e = Shard::parse(raw).unwrap_err().to_string();
            assert!(
                e.starts_with(&format!("--shard {raw}: ")) && e.ends_with("write i/N, as 0/4 … 3/4"),
                "{e}"
            );
        }
    }
}
