//! The exposition served on `/metrics`: rendered once per evaluation, swapped in atomically.
//!
//! Each rule's families are rendered to bytes when its evaluation completes; the body served is the
//! concatenation of every rule's bytes in rule order, rebuilt on each update. A scrape only clones an
//! `Arc` (no lock, no rendering, no database), so scrapes never wait on an evaluation and any number
//! of scrapers cost the database nothing.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use bytes::Bytes;

/// What a scrape sees.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// The rules' exposition, every rule's block in rule order.
    pub body: Bytes,
    /// Every current rule has completed at least one evaluation.
    pub ready: bool,
}

#[derive(Default)]
struct Blocks {
    order: Vec<String>,
    by_rule: HashMap<String, Bytes>,
}

/// Holds the current [`Snapshot`]; written by rule tasks, read by HTTP handlers.
#[derive(Default)]
pub struct SnapshotStore {
    current: ArcSwap<Snapshot>,
    /// Serialises writers only; readers never take it.
    blocks: Mutex<Blocks>,
}

impl SnapshotStore {
    pub fn new() -> SnapshotStore {
        SnapshotStore::default()
    }

    /// The snapshot to serve. Never blocks.
    pub fn load(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// Sets which rules exist, in order. Blocks of rules no longer listed are dropped (their series
    /// disappear); blocks of rules still listed are kept (no blip on reload).
    pub fn set_rules(&self, order: Vec<String>) {
        let mut blocks = self.lock();
        let keep: BTreeSet<&String> = order.iter().collect();
        blocks.by_rule.retain(|name, _| keep.contains(name));
        blocks.order = order;
        self.publish(&blocks);
    }

    /// Replaces one rule's block with a fresh rendering.
    pub fn update(&self, rule: &str, rendered: Vec<u8>) {
        let mut blocks = self.lock();
        if !blocks.order.iter().any(|r| r == rule) {
            return; // the rule was removed while it was evaluating
        }
        blocks.by_rule.insert(rule.to_string(), Bytes::from(rendered));
        self.publish(&blocks);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Blocks> {
        // A panic while holding the lock leaves consistent data (we only insert and retain).
        self.blocks.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn publish(&self, blocks: &Blocks) {
        let len = blocks.by_rule.values().map(Bytes::len).sum();
        let mut body = Vec::with_capacity(len);
        for name in &blocks.order {
            if let Some(b) = blocks.by_rule.get(name) {
                body.extend_from_slice(b);
            }
        }
        let ready = blocks.order.iter().all(|r| blocks.by_rule.contains_key(r));
        self.current.store(Arc::new(Snapshot { body: Bytes::from(body), ready }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_concatenate_in_rule_order_and_ready_waits_for_all() {
        let store = SnapshotStore::new();
        store.set_rules(vec!["a".into(), "b".into()]);
        assert!(!store.load().ready);
        store.update("b", b"B\n".to_vec());
        assert_eq!(&store.load().body[..], b"B\n");
        assert!(!store.load().ready);
        store.update("a", b"A\n".to_vec());
        assert_eq!(&store.load().body[..], b"A\nB\n");
        assert!(store.load().ready);
        store.set_rules(vec!["b".into()]);
        assert_eq!(&store.load().body[..], b"B\n");
        store.update("gone", b"X\n".to_vec());
        assert_eq!(&store.load().body[..], b"B\n");
    }
}
