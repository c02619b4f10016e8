//! The in-memory store behind `previous_response_id`: each stored response keeps the
//! conversation it ended (input messages plus its own answer, as chat messages) so a
//! follow-up can continue it. Bounded: past `--responses-store N` entries the least
//! recently used one is evicted; N = 0 stores nothing. Lost on restart, by design.
//! Must not depend on axum.

use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

struct Entry {
    messages: Vec<Value>,
    tick: u64,
}

#[derive(Default)]
struct Lru {
    entries: HashMap<String, Entry>,
    /// tick → id, oldest first.
    order: BTreeMap<u64, String>,
    tick: u64,
}

pub struct ResponseStore {
    capacity: usize,
    inner: Mutex<Lru>,
}

impl ResponseStore {
    pub fn new(capacity: usize) -> Self {
        ResponseStore {
            capacity,
            inner: Mutex::new(Lru::default()),
        }
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Keeps a response's conversation, evicting the least recently used past capacity.
    pub fn put(&self, id: String, messages: Vec<Value>) {
        if self.capacity == 0 {
            return;
        }
        // A poisoned lock only means another request panicked mid-update; the map is fine.
        let mut lru = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        lru.tick += 1;
        let tick = lru.tick;
        if let Some(old) = lru.entries.insert(id.clone(), Entry { messages, tick }) {
            lru.order.remove(&old.tick);
        }
        lru.order.insert(tick, id);
        while lru.entries.len() > self.capacity {
            let Some((_, oldest)) = lru.order.pop_first() else {
                break;
            };
            lru.entries.remove(&oldest);
        }
    }

    /// The conversation a stored response ended; marks it recently used.
    pub fn get(&self, id: &str) -> Option<Vec<Value>> {
        let mut lru = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        lru.tick += 1;
        let tick = lru.tick;
        let entry = lru.entries.get_mut(id)?;
        let old = std::mem::replace(&mut entry.tick, tick);
        let messages = entry.messages.clone();
        lru.order.remove(&old);
        lru.order.insert(tick, id.to_owned());
        Some(messages)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn evicts_the_least_recently_used() {
        let s = ResponseStore::new(2);
        s.put("a".into(), vec![json!(1)]);
        s.put("b".into(), vec![json!(2)]);
        assert_eq!(s.get("a"), Some(vec![json!(1)]));
        s.put("c".into(), vec![json!(3)]);
        assert_eq!(s.get("b"), None);
        assert!(s.get("a").is_some() && s.get("c").is_some());
        let none = ResponseStore::new(0);
        none.put("a".into(), vec![]);
        assert_eq!(none.get("a"), None);
    }
}
