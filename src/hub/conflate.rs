//! Conflation by key: a topic's index of the newest event of each key, and of its
//! recent keyless events, from which a subscriber that fell behind (or a resumer) gets
//! what it missed in short: the newest event of each key, and every keyless event.
//!
//! The index is kept beside the ring, under the topic's lock, only when the hub
//! conflates (`LagPolicy::Conflate` while the topic has subscribers, or
//! `conflate_replay`). A publish does constant work on it: the key's hash is computed
//! before any lock is taken; under the lock, one probe of a map from hashes to slots, a
//! comparison of at most [`MAX_KEY_LEN`] bytes, and the key's slot moved to the end of a
//! list ordered by id (or a new slot, and the oldest one dropped at the cap). Because the
//! list is in id order, what a subscriber missed since an id is the list's tail from
//! there: reading it costs what it returns, never a walk over the topic's history.
//!
//! Bounds: at most `conflate_keys` keys (past it the slot of the key published least
//! recently goes), and the keyless events of the live window (`queue_events`,
//! `queue_bytes`). What goes moves the topic's `keys_from` up: the index can serve a
//! reader from an id at or above it, and no other. A reader from further back gets what
//! the hub gives without conflation (history, or the reset event); nothing is lost
//! silently.
//!
//! A reader that fell behind takes its catch-up (`since`) under the topic's lock once:
//! handles (an id, the key's `Arc` and the frame's `Bytes`, 56 bytes) to at most that
//! many events, never a copy of a frame. It keeps them until it has taken them; a
//! subscriber that keeps up holds none.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

use slab::Slab;

use crate::Event;

/// The longest conflation key, in bytes (UTF-8). Longer keys, and the empty key, are
/// refused by [`Hub::publish_keyed`](crate::Hub::publish_keyed) with
/// [`PublishError::InvalidKey`](crate::hub::PublishError::InvalidKey).
///
/// ```
/// use tower_sse::{Event, Hub, hub::{MAX_KEY_LEN, PublishError}};
///
/// let hub = Hub::new();
/// let longest = "k".repeat(MAX_KEY_LEN);
/// assert!(hub.publish_keyed("t", &longest, Event::data("x")).is_ok());
/// let refused = hub.publish_keyed("t", &format!("{longest}k"), Event::data("x"));
/// assert!(matches!(refused, Err(PublishError::InvalidKey { len: 257 })));
/// ```
pub const MAX_KEY_LEN: usize = 256;

/// What the hub's budget counts for a key's slot beside the key and the event's frame:
/// the slot (about 80 bytes), its place in the map of hashes, and the key's allocation.
pub(crate) const SLOT_COST: usize = 160;
/// What the budget counts for a keyless event in the index beside its frame.
pub(crate) const KEYLESS_COST: usize = 48;

/// No slot.
const NIL: usize = usize::MAX;

/// A conflation key and its hash, computed before any lock is taken.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Key<'a> {
    pub(crate) name: &'a str,
    pub(crate) hash: u64,
}

/// One item of a catch-up: an id, the key (if any) and the event, with its id line.
pub(crate) type Item = (u64, Option<Arc<str>>, Event);

/// The newest event of one key.
#[derive(Debug)]
struct Slot {
    key: Arc<str>,
    hash: u64,
    id: u64,
    event: Event,
    /// Neighbours in id order.
    older: usize,
    newer: usize,
    /// The next slot whose key has the same hash (a collision: never in practice).
    same_hash: usize,
}

impl Slot {
    fn cost(&self) -> usize {
        SLOT_COST + self.key.len() + self.event.as_bytes().len()
    }
}

/// The hashes are SipHash values of the hub's random state: used as they are.
#[derive(Default)]
struct Identity(u64);

impl Hasher for Identity {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is used; anything else folds in, byte by byte.
        for byte in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*byte);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// A topic's index of the newest event per key and of its recent keyless events.
#[derive(Debug, Default)]
pub(crate) struct KeyIndex {
    slots: Slab<Slot>,
    /// The first slot of each hash.
    hashes: HashMap<u64, usize, BuildHasherDefault<Identity>>,
    /// Ends of the list of slots in id order.
    oldest: Option<usize>,
    newest: Option<usize>,
    /// Keyless events, oldest first, within the live window.
    keyless: VecDeque<(u64, Event)>,
    keyless_bytes: usize,
    /// What the hub's budget counts for the index.
    pub(crate) charged: usize,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Identity")
    }
}

impl KeyIndex {
    /// Keys in the index.
    pub(crate) fn keys(&self) -> usize {
        self.slots.len()
    }

    /// Records `event` (with its id line) as the newest of `key`. At the cap, the key
    /// published least recently leaves: returns its id, which the index can no longer
    /// serve readers from before.
    pub(crate) fn keyed(
        &mut self,
        key: Key<'_>,
        id: u64,
        event: &Event,
        cap: usize,
    ) -> Option<u64> {
        if let Some(index) = self.find(key) {
            let slot = &mut self.slots[index];
            self.charged -= slot.event.as_bytes().len();
            self.charged += event.as_bytes().len();
            slot.id = id;
            slot.event = event.clone();
            self.unlink(index);
            self.link_newest(index);
            return None;
        }
        let mut gone = None;
        if self.slots.len() >= cap.max(1) {
            gone = self.oldest.map(|oldest| self.remove(oldest));
        }
        let slot = Slot {
            key: Arc::from(key.name),
            hash: key.hash,
            id,
            event: event.clone(),
            older: NIL,
            newer: NIL,
            same_hash: self.hashes.get(&key.hash).copied().unwrap_or(NIL),
        };
        self.charged += slot.cost();
        let index = self.slots.insert(slot);
        self.hashes.insert(key.hash, index);
        self.link_newest(index);
        gone
    }

    /// Records a keyless event; the oldest ones leave once more than `max_events` or
    /// `max_bytes` are held (the newest always stays): returns the newest id that left.
    pub(crate) fn keyless(
        &mut self,
        id: u64,
        event: &Event,
        max_events: usize,
        max_bytes: usize,
    ) -> Option<u64> {
        let len = event.as_bytes().len();
        self.keyless.push_back((id, event.clone()));
        self.keyless_bytes += len;
        self.charged += KEYLESS_COST + len;
        let mut gone = None;
        while self.keyless.len() > 1
            && (self.keyless.len() > max_events || self.keyless_bytes > max_bytes)
        {
            let (id, event) = self.keyless.pop_front().expect("more than one");
            let len = event.as_bytes().len();
            self.keyless_bytes -= len;
            self.charged -= KEYLESS_COST + len;
            gone = Some(id);
        }
        gone
    }

    /// The newest event of each key with an id above `after`, and every keyless event
    /// above it, in id order. Costs what it returns.
    pub(crate) fn since(&self, after: u64) -> Vec<Item> {
        let mut keyed = Vec::new();
        let mut at = self.newest;
        while let Some(index) = at {
            let slot = &self.slots[index];
            if slot.id <= after {
                break;
            }
            keyed.push((slot.id, Some(slot.key.clone()), slot.event.clone()));
            at = (slot.older != NIL).then_some(slot.older);
        }
        keyed.reverse();
        let start = self.keyless.partition_point(|(id, _)| *id <= after);
        let keyless = self.keyless.range(start..);
        let mut items = Vec::with_capacity(keyed.len() + keyless.len());
        let mut keyed = keyed.into_iter().peekable();
        for (id, event) in keyless {
            while let Some(item) = keyed.next_if(|item| item.0 < *id) {
                items.push(item);
            }
            items.push((*id, None, event.clone()));
        }
        items.extend(keyed);
        items
    }

    /// The slot of `key`, if it has one.
    fn find(&self, key: Key<'_>) -> Option<usize> {
        let mut at = self.hashes.get(&key.hash).copied().unwrap_or(NIL);
        while at != NIL {
            let slot = &self.slots[at];
            if *slot.key == *key.name {
                return Some(at);
            }
            at = slot.same_hash;
        }
        None
    }

    /// Removes a slot; returns its id.
    fn remove(&mut self, index: usize) -> u64 {
        self.unlink(index);
        let hash = self.slots[index].hash;
        let next = self.slots[index].same_hash;
        // Out of its chain of keys of one hash.
        match self.hashes.get(&hash).copied() {
            Some(first) if first == index => {
                if next == NIL {
                    self.hashes.remove(&hash);
                } else {
                    self.hashes.insert(hash, next);
                }
            }
            Some(mut at) => {
                while self.slots[at].same_hash != index {
                    at = self.slots[at].same_hash;
                }
                self.slots[at].same_hash = next;
            }
            None => {}
        }
        let slot = self.slots.remove(index);
        self.charged -= slot.cost();
        slot.id
    }

    fn unlink(&mut self, index: usize) {
        let (older, newer) = (self.slots[index].older, self.slots[index].newer);
        match older {
            NIL => self.oldest = (newer != NIL).then_some(newer),
            older => self.slots[older].newer = newer,
        }
        match newer {
            NIL => self.newest = (older != NIL).then_some(older),
            newer => self.slots[newer].older = older,
        }
        self.slots[index].older = NIL;
        self.slots[index].newer = NIL;
    }

    fn link_newest(&mut self, index: usize) {
        match self.newest {
            Some(newest) => {
                self.slots[newest].newer = index;
                self.slots[index].older = newest;
            }
            None => self.oldest = Some(index),
        }
        self.newest = Some(index);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str, hash: u64) -> Key<'_> {
        Key { name, hash }
    }

    fn ids(items: &[Item]) -> Vec<(u64, Option<&str>)> {
        items.iter().map(|(id, k, _)| (*id, k.as_deref())).collect()
    }

    #[test]
    fn the_newest_per_key_and_every_keyless_event_in_id_order() {
        let mut index = KeyIndex::default();
        let e = Event::data("x");
        index.keyed(key("a", 1), 1, &e, 10);
        index.keyed(key("b", 2), 2, &e, 10);
        index.keyless(3, &e, 10, usize::MAX);
        index.keyed(key("a", 1), 4, &e, 10);
        index.keyless(5, &e, 10, usize::MAX);
        index.keyed(key("c", 3), 6, &e, 10);
        assert_eq!(
            ids(&index.since(0)),
            [
                (2, Some("b")),
                (3, None),
                (4, Some("a")),
                (5, None),
                (6, Some("c"))
            ]
        );
        assert_eq!(ids(&index.since(4)), [(5, None), (6, Some("c"))]);
        assert_eq!(ids(&index.since(6)), []);
        assert_eq!(index.keys(), 3);
    }

    #[test]
    fn keys_of_one_hash_stay_apart() {
        let mut index = KeyIndex::default();
        let e = Event::data("x");
        index.keyed(key("a", 7), 1, &e, 10);
        index.keyed(key("b", 7), 2, &e, 10);
        index.keyed(key("c", 7), 3, &e, 10);
        index.keyed(key("b", 7), 4, &e, 10);
        assert_eq!(
            ids(&index.since(0)),
            [(1, Some("a")), (3, Some("c")), (4, Some("b"))]
        );
        // The first of the chain leaves at the cap; the others are still found.
        assert_eq!(index.keyed(key("d", 8), 5, &e, 3), Some(1));
        index.keyed(key("c", 7), 6, &e, 3);
        assert_eq!(
            ids(&index.since(0)),
            [(4, Some("b")), (5, Some("d")), (6, Some("c"))]
        );
        // One in the middle of a chain leaves.
        assert_eq!(index.keyed(key("e", 9), 7, &e, 3), Some(4));
        index.keyed(key("c", 7), 8, &e, 3);
        assert_eq!(index.keys(), 3);
        assert_eq!(
            ids(&index.since(0)),
            [(5, Some("d")), (7, Some("e")), (8, Some("c"))]
        );
    }

    #[test]
    fn bounded_by_the_cap_and_the_window_and_charged_to_the_end() {
        let mut index = KeyIndex::default();
        let e = Event::data("payload");
        for id in 1..=1000u64 {
            let name = id.to_string();
            let gone = index.keyed(key(&name, id), id, &e, 100);
            assert_eq!(gone, id.checked_sub(100).filter(|g| *g > 0));
        }
        assert_eq!(index.keys(), 100);
        for id in 1001..=1100u64 {
            index.keyless(id, &e, 10, usize::MAX);
        }
        assert_eq!(index.since(0).len(), 110);
        // Bytes bound the keyless events too; the newest always stays.
        assert_eq!(index.keyless(1101, &e, 10, 1), Some(1100));
        assert_eq!(index.since(1000).len(), 1);
        let slot_cost = SLOT_COST + e.as_bytes().len();
        let charged: usize = (901..=1000u64)
            .map(|id| slot_cost + id.to_string().len())
            .sum::<usize>()
            + KEYLESS_COST
            + e.as_bytes().len();
        assert_eq!(index.charged, charged);
    }
}
