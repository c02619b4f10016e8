//! The prefix cache: the KV of finished sequences, kept in RAM under a byte budget so that
//! a later request that starts with the same tokens (an agent resending its conversation,
//! an editor resending a file) skips that part of the prefill, whichever slot it lands in.
//! Lookup takes the entry with the longest common prefix; eviction drops the least
//! recently used entry first.
//! Input: finished sequences' `(tokens, KvCache)`. Output: a cache to continue from.
//! Must not depend on the server or HTTP types.

use crate::model::{KvCache, ModelError};

struct Entry {
    /// The tokens whose K/V `cache` holds, in order.
    tokens: Vec<u32>,
    cache: KvCache,
    last_used: u64,
}

pub(crate) struct PrefixCache {
    entries: Vec<Entry>,
    budget_bytes: usize,
    clock: u64,
}

/// What a lookup found: a cache holding the first `reuse` tokens of the prompt.
pub(crate) struct Hit {
    pub cache: KvCache,
    pub reuse: usize,
}

impl PrefixCache {
    pub fn new(budget_bytes: usize) -> Self {
        PrefixCache {
            entries: Vec::new(),
            budget_bytes,
            clock: 0,
        }
    }

    /// Bytes of KV held now.
    pub fn bytes(&self) -> usize {
        self.entries.iter().map(|e| e.cache.bytes()).sum()
    }

    /// Keeps a finished sequence's KV. Entries it extends are dropped (it holds all they
    /// hold), then the least recently used go until the cache fits its budget (the new one
    /// too, if it alone is over).
    pub fn insert(&mut self, tokens: Vec<u32>, cache: KvCache) {
        if tokens.is_empty() || tokens.len() != cache.len() || self.budget_bytes == 0 {
            return;
        }
        self.entries
            .retain(|e| !(e.tokens.len() <= tokens.len() && tokens.starts_with(&e.tokens)));
        self.clock += 1;
        self.entries.push(Entry {
            tokens,
            cache,
            last_used: self.clock,
        });
        let mut total = self.bytes();
        while total > self.budget_bytes {
            let Some(lru) = (0..self.entries.len()).min_by_key(|&i| self.entries[i].last_used)
            else {
                break;
            };
            total -= self.entries.swap_remove(lru).cache.bytes();
        }
    }

    /// The KV of the longest cached prefix of `prompt`, leaving at least its last token to
    /// run (its logits are needed). An entry the prompt continues is taken out whole; an
    /// entry that goes on differently stays, and its shared part is copied. `None` when no
    /// entry shares a token with the prompt.
    pub fn lookup(&mut self, prompt: &[u32]) -> Result<Option<Hit>, ModelError> {
        let limit = prompt.len().saturating_sub(1);
        let best = self
            .entries
            .iter()
            .enumerate()
            .map(|(i, e)| (i, common_prefix(&e.tokens, prompt).min(limit)))
            .filter(|&(_, n)| n > 0)
            .max_by_key(|&(i, n)| (n, self.entries[i].last_used));
        let Some((i, reuse)) = best else {
            return Ok(None);
        };
        if reuse == self.entries[i].tokens.len() {
            let mut cache = self.entries.swap_remove(i).cache;
            cache.truncate(reuse);
            return Ok(Some(Hit { cache, reuse }));
        }
        self.clock += 1;
        let entry = &mut self.entries[i];
        entry.last_used = self.clock;
        Ok(Some(Hit {
            cache: entry.cache.copy_prefix(reuse)?,
            reuse,
        }))
    }
}

/// Length of the common prefix of two token sequences.
pub(crate) fn common_prefix(a: &[u32], b: &[u32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::test_cache;

    fn entry(tokens: &[u32]) -> (Vec<u32>, KvCache) {
        (tokens.to_vec(), test_cache(1024, tokens.len()))
    }

    #[test]
    fn finds_longest_prefix_and_copies_a_diverging_entry() {
        let mut pc = PrefixCache::new(usize::MAX);
        let (t, c) = entry(&[1, 2, 3, 4]);
        pc.insert(t, c);
        let (t, c) = entry(&[1, 2, 9]);
        pc.insert(t, c);
        // Diverges after 3 tokens of the first entry: a copy; the entry stays.
        let hit = pc.lookup(&[1, 2, 3, 7, 7]).unwrap().unwrap();
        assert_eq!((hit.reuse, hit.cache.len()), (3, 3));
        assert_eq!(pc.entries.len(), 2);
        // Continues the first entry: taken out whole.
        let hit = pc.lookup(&[1, 2, 3, 4, 5]).unwrap().unwrap();
        assert_eq!((hit.reuse, hit.cache.len()), (4, 4));
        assert_eq!(pc.entries.len(), 1);
        // The last prompt token is always left to run.
        let hit = pc.lookup(&[1, 2, 9]).unwrap().unwrap();
        assert_eq!(hit.reuse, 2);
        assert!(pc.lookup(&[5, 6]).unwrap().is_none());
    }

    #[test]
    fn evicts_least_recently_used_past_the_budget() {
        let one = test_cache(1024, 1).bytes();
        let mut pc = PrefixCache::new(2 * one);
        for first in [1, 2, 3] {
            let (t, c) = entry(&[first, 0]);
            pc.insert(t, c);
        }
        assert!(pc.bytes() <= 2 * one);
        assert!(pc.lookup(&[1, 0, 5]).unwrap().is_none(), "the oldest went");
        assert!(pc.lookup(&[3, 0, 5]).unwrap().is_some());
        // An entry that extends another replaces it.
        let (t, c) = entry(&[2, 0, 7]);
        pc.insert(t, c);
        assert_eq!(pc.entries.len(), 1);
        // A zero budget keeps nothing.
        let mut none = PrefixCache::new(0);
        let (t, c) = entry(&[1, 2]);
        none.insert(t, c);
        assert!(none.lookup(&[1, 2, 3]).unwrap().is_none());
    }
}
