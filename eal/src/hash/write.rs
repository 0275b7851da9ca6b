//! Adds and deletes: one writer at a time in the whole group, under a lock that survives
//! its holder's death; the next writer repairs what a dead one left.
//!
//! Every step keeps each key that was present findable by a concurrent reader (see
//! `read.rs` for how a reader notices a move or a reused slot):
//! - an add makes a free key slot's version odd, fills it and gives it a new even version,
//!   then names it in a bucket entry, the signature first and the slot last;
//! - a cuckoo move copies an entry to its key's other bucket first, moves the change
//!   counter, and only then overwrites the old entry;
//! - a delete clears the entry, then puts the slot back on the free stack, leaving the slot
//!   itself as it was; a reused slot's version tells a reader still comparing it (so a
//!   slot is reused at once, with no grace period: DPDK needs its RCU library for that).
//!   Neither reads a slot's version to change it: the versions come from a counter of the
//!   writer's state, so an add writes a slot it has not read, and a delete leaves the
//!   slot's line clean.
//!
//! A writer killed anywhere leaves at worst: an entry copied and not yet overwritten (the
//! key in both its buckets), a slot or an extendable bucket taken from its free stack and
//! named nowhere, a free stack or the count not yet updated. The repair
//! ([`Layout::repair`]) rebuilds all of that from the bucket entries, which are the truth;
//! it can run again after its own death.

use super::layout::{Bucket, Layout, BUCKET_ENTRIES};
use super::read::{alt_bucket, short_sig, SearchKey};
use super::HashError;
use crate::owner::Claimed;
use crate::sync::{fence, Ordering};
use crate::sys;
use std::cell::RefCell;

/// The most buckets a cuckoo search visits, as DPDK's `RTE_HASH_BFS_QUEUE_MAX_LEN`.
const BFS_MAX: usize = 1000;

/// How far ahead of the bucket it expands the cuckoo search fetches the next one: the
/// search's misses overlap instead of coming one after another.
const PREFETCH_AHEAD: usize = 8;

/// A bucket's lanes as a mask (`Bucket::empty_lanes` of an empty bucket).
const ALL_LANES: u8 = u8::MAX;

thread_local! {
    /// The cuckoo search's queue, kept per thread: allocated once, never zeroed per add.
    static SEARCH_QUEUE: RefCell<Vec<Node>> = RefCell::new(Vec::with_capacity(BFS_MAX));
}

/// A bucket in the cuckoo search: reached from `parent`'s entry `lane`.
#[derive(Clone, Copy)]
struct Node {
    bucket: u32,
    parent: u16,
    lane: u8,
}

/// The writers' lock, held: the only way to change a table.
pub(crate) struct Writer<'a> {
    t: &'a Layout,
    /// Taken by a thread that held it already (a call on the table inside its
    /// `HashWriter`): the outer one gives it back.
    nested: bool,
}

impl Drop for Writer<'_> {
    fn drop(&mut self) {
        if self.nested {
            return;
        }
        // A loom model's killed writer unwinds through here; a killed process runs nothing
        // more, and leaves the lock to the next writer's repair.
        #[cfg(all(test, loom))]
        if crate::sync::being_killed() {
            return;
        }
        if std::thread::panicking() {
            // A write that panicked stopped where a kill could have: repair as after one.
            self.t.repair();
        }
        self.t.header().writer.lock.unlock();
    }
}

impl Layout {
    /// Takes the writers' lock, repairing the table first if its last holder died; a
    /// thread that holds it already gets a nested writer.
    pub(crate) fn writer(&self) -> Writer<'_> {
        let claimed = self
            .header()
            .writer
            .lock
            .lock_thread(sys::gettid(), |dead| self.take_over(dead));
        Writer {
            t: self,
            nested: claimed == Claimed::Already,
        }
    }

    /// Frees the writers' lock from `dead`, a writer (or a repairer) that died, repairing
    /// the table meanwhile; false when someone else did. `dead` is trusted, not checked.
    pub(crate) fn take_over(&self, dead: i32) -> bool {
        self.header().writer.lock.free_from_dead(dead, || {
            log::warn!(
                "hash table '{}': its writer (thread {dead}) died; repairing the table",
                self.header().name.as_str()
            );
            self.repair();
        })
    }

    /// Rebuilds what a dead writer may have left half done from the bucket entries (see the
    /// module documentation). Each key named twice keeps its first entry; slots and
    /// extendable buckets named nowhere go back on their free stacks.
    pub(crate) fn repair(&self) {
        // First, as a cuckoo move between its copy and its clearing: the writer may have
        // died in between, and a reader that missed the kept copy and then finds the other
        // entry cleared must search again.
        self.header().change.fetch_add(1, Ordering::AcqRel);
        crate::store_point!("hash.repair.change");
        let geo = self.geo;
        let mut named = vec![false; geo.entries as usize + 1];
        let mut linked = vec![false; geo.ext_buckets as usize];
        for i in 0..geo.num_buckets {
            let mut b = self.bucket(i);
            loop {
                for idx in &b.key_idx {
                    let k = idx.load(Ordering::Relaxed);
                    if k == 0 {
                        continue;
                    }
                    if self.slot(k).is_none() || named[k as usize] {
                        // The old entry of a move the writer died in (or garbage).
                        idx.store(0, Ordering::Release);
                        crate::store_point!("hash.repair.entry");
                    } else {
                        named[k as usize] = true;
                    }
                }
                let next = b.next.load(Ordering::Relaxed);
                match next
                    .checked_sub(1)
                    .filter(|e| !linked.get(*e as usize).copied().unwrap_or(true))
                {
                    Some(e) => {
                        linked[e as usize] = true;
                        b = self.ext_bucket(e).unwrap_or(b);
                    }
                    None if next == 0 => break,
                    None => {
                        b.next.store(0, Ordering::Release);
                        crate::store_point!("hash.repair.next");
                        break;
                    }
                }
            }
        }
        for e in (0..geo.ext_buckets).filter(|e| !linked[*e as usize]) {
            // Taken for an add that died before linking it, or unlinked by a delete that
            // died before freeing it: nobody can reach it.
            let b = self.ext_bucket(e).filter(|b| {
                b.next.load(Ordering::Relaxed) != 0
                    || b.key_idx.iter().any(|i| i.load(Ordering::Relaxed) != 0)
            });
            if let Some(b) = b {
                clear_bucket(b);
                crate::store_point!("hash.repair.ext");
            }
        }
        let w = &self.header().writer;
        let mut free = 0;
        for k in (1..=geo.entries).rev().filter(|k| !named[*k as usize]) {
            self.free_slot(free).store(k, Ordering::Relaxed);
            free += 1;
        }
        w.free_slots.store(free, Ordering::Release);
        crate::store_point!("hash.repair.free_slots");
        let mut free_ext = 0;
        for e in (0..geo.ext_buckets).rev().filter(|e| !linked[*e as usize]) {
            self.free_ext(free_ext).store(e, Ordering::Relaxed);
            free_ext += 1;
        }
        w.free_ext.store(free_ext, Ordering::Release);
        crate::store_point!("hash.repair.free_ext");
        w.count.store(geo.entries - free, Ordering::Release);
        crate::store_point!("hash.repair.count");
    }
}

fn clear_bucket(b: &Bucket) {
    for idx in &b.key_idx {
        idx.store(0, Ordering::Release);
    }
    b.next.store(0, Ordering::Release);
}

impl Writer<'_> {
    /// The bucket and lane holding `key`, and its slot. Inlined into `add` and `delete`: as
    /// a call it saved and restored most registers on every change.
    #[inline(always)]
    fn find(&self, key: &[u8], hash: u32) -> Option<(&Bucket, usize, u32)> {
        let t = self.t;
        let sig = short_sig(hash);
        let prim = hash & t.bucket_mask;
        // The secondary bucket's miss overlaps the primary's: an add reads both, and a
        // delete finds its key there often at high fill.
        t.prefetch_bucket(alt_bucket(prim, sig));
        let key = SearchKey::new(key);
        let in_bucket = |b: &Bucket| {
            let mut hits = b.sig_matches(sig);
            while hits != 0 {
                let lane = hits.trailing_zeros() as usize % BUCKET_ENTRIES;
                hits &= hits - 1;
                let idx = b.key_idx[lane].load(Ordering::Relaxed);
                if t.slot(idx).is_some_and(|s| key.matches(s.key)) {
                    return Some((lane, idx));
                }
            }
            None
        };
        let prim_bucket = t.bucket(prim);
        if let Some((lane, idx)) = in_bucket(prim_bucket) {
            return Some((prim_bucket, lane, idx));
        }
        let mut b = Some(t.bucket(alt_bucket(prim, sig)));
        while let Some(bucket) = b {
            if let Some((lane, idx)) = in_bucket(bucket) {
                return Some((bucket, lane, idx));
            }
            b = t.next_in_chain(bucket);
        }
        None
    }

    /// Adds `key` with `data`, or sets the data of a key already present; returns its slot.
    pub(crate) fn add(&self, key: &[u8], hash: u32, data: u64) -> Result<u32, HashError> {
        let t = self.t;
        if let Some((_, _, idx)) = self.find(key, hash) {
            if let Some(slot) = t.slot(idx) {
                slot.data.store(data, Ordering::Release);
                crate::store_point!("hash.update");
            }
            return Ok(idx);
        }
        let idx = self.take_slot().ok_or_else(|| self.full())?;
        self.fill_slot(idx, key, data);
        let sig = short_sig(hash);
        let prim = hash & t.bucket_mask;
        let sec = alt_bucket(prim, sig) & t.bucket_mask;
        let placed = [prim, sec]
            .into_iter()
            .find_map(|b| lowest_lane(t.bucket(b).empty_lanes()).map(|lane| (b, lane)))
            .or_else(|| {
                [prim, sec]
                    .into_iter()
                    .find_map(|b| self.make_space(b).map(|lane| (b, lane)))
            });
        match placed {
            Some((b, lane)) => t.bucket(b).fill(lane, sig, idx),
            None => {
                if !self.add_to_chain(sec, sig, idx) {
                    self.release_slot(idx);
                    return Err(self.full());
                }
            }
        }
        crate::store_point!("hash.entry");
        let count = &t.header().writer.count;
        count.store(count.load(Ordering::Relaxed) + 1, Ordering::Release);
        crate::store_point!("hash.count");
        Ok(idx)
    }

    /// Deletes `key`; returns its data if it was present.
    pub(crate) fn delete(&self, key: &[u8], hash: u32) -> Option<u64> {
        let t = self.t;
        let (bucket, lane, idx) = self.find(key, hash)?;
        let data = t.slot(idx).map(|s| s.data.load(Ordering::Acquire))?;
        bucket.key_idx[lane].store(0, Ordering::Release);
        crate::store_point!("hash.entry");
        self.release_slot(idx);
        let count = &t.header().writer.count;
        count.store(
            count.load(Ordering::Relaxed).saturating_sub(1),
            Ordering::Release,
        );
        crate::store_point!("hash.count");
        if t.geo.ext_buckets != 0 {
            // The entry was in the key's primary bucket, or in its secondary one's chain.
            let prim = hash & t.bucket_mask;
            let head = if std::ptr::eq(bucket, t.bucket(prim)) {
                prim
            } else {
                alt_bucket(prim, short_sig(hash))
            };
            self.compact_chain(head, bucket, lane);
        }
        Some(data)
    }

    /// After a delete emptied entry `lane` of `hole`, main bucket `head` or a bucket of its
    /// chain: moves the chain's last entry into the hole (as a cuckoo move: copied, the
    /// change counter moved, then cleared), and unlinks the chain's last bucket once it is
    /// empty, back onto the free stack. A chain so stays dense, and an emptied chain gives
    /// its buckets back for any other (as DPDK compacts its lists).
    fn compact_chain(&self, head: u32, hole: &Bucket, lane: usize) {
        let t = self.t;
        let mut prev = t.bucket(head);
        let mut last_no = prev.next.load(Ordering::Relaxed);
        let Some(mut last) = t.next_in_chain(prev) else {
            return;
        };
        while let Some(next) = t.next_in_chain(last) {
            prev = last;
            last_no = last.next.load(Ordering::Relaxed);
            last = next;
        }
        let used = !last.empty_lanes() & ALL_LANES;
        if let (false, Some(from)) = (std::ptr::eq(last, hole), highest_lane(used)) {
            hole.fill(
                lane,
                last.sig(from),
                last.key_idx[from].load(Ordering::Relaxed),
            );
            crate::store_point!("hash.chain.copy");
            self.moved();
            last.key_idx[from].store(0, Ordering::Release);
            crate::store_point!("hash.chain.clear");
        }
        if last.empty_lanes() != ALL_LANES {
            return;
        }
        prev.next.store(0, Ordering::Release);
        crate::store_point!("hash.chain.unlink");
        let w = &t.header().writer;
        let n = w.free_ext.load(Ordering::Relaxed);
        t.free_ext(n).store(last_no - 1, Ordering::Relaxed);
        w.free_ext.store(n + 1, Ordering::Release);
        crate::store_point!("hash.free_ext");
    }

    /// Moves the change counter: readers that miss from here on search again. Between a
    /// key's copy to its new entry and the clearing of its old one.
    fn moved(&self) {
        let change = &self.t.header().change;
        // Release: a reader that starts its search at the new count sees the copy. The
        // fence: one that sees the old entry's clearing sees the new count.
        change.store(
            change.load(Ordering::Relaxed).wrapping_add(1),
            Ordering::Release,
        );
        fence(Ordering::Release);
        crate::store_point!("hash.change");
    }

    /// Empties the table.
    pub(crate) fn reset(&self) {
        let t = self.t;
        for i in 0..t.geo.num_buckets {
            clear_bucket(t.bucket(i));
        }
        crate::store_point!("hash.reset");
        // Every slot and extendable bucket is now named nowhere: the repair frees them.
        t.repair();
    }

    fn full(&self) -> HashError {
        HashError::Full {
            name: self.t.header().name.as_str().into(),
            entries: self.t.geo.entries,
        }
    }

    /// Takes a key slot off the free stack.
    fn take_slot(&self) -> Option<u32> {
        let w = &self.t.header().writer;
        let n = w.free_slots.load(Ordering::Relaxed).checked_sub(1)?;
        let idx = self.t.free_slot(n).load(Ordering::Relaxed);
        w.free_slots.store(n, Ordering::Release);
        crate::store_point!("hash.free_slots");
        Some(idx)
    }

    /// Puts key slot `idx`, named by no entry, back on the free stack.
    fn release_slot(&self, idx: u32) {
        let w = &self.t.header().writer;
        let n = w.free_slots.load(Ordering::Relaxed);
        self.t.free_slot(n).store(idx, Ordering::Relaxed);
        w.free_slots.store(n + 1, Ordering::Release);
        crate::store_point!("hash.free_slots");
    }

    /// Makes free slot `idx`'s version odd, writes `key` and `data` into it, then gives it
    /// an even version it never had: a reader that compared the slot's old key sees the
    /// version move. Neither version needs the old one, so the slot is not read.
    fn fill_slot(&self, idx: u32, key: &[u8], data: u64) {
        let Some(slot) = self.t.slot(idx) else { return };
        let versions = &self.t.header().writer.versions;
        let n = versions.load(Ordering::Relaxed) + 1;
        versions.store(n, Ordering::Relaxed);
        crate::store_point!("hash.versions");
        slot.version.store(n << 1 | 1, Ordering::Relaxed);
        crate::store_point!("hash.slot.odd");
        // The odd version is seen before any of the new key (release fence, then stores).
        fence(Ordering::Release);
        slot.data.store(data, Ordering::Relaxed);
        for (w, v) in slot.key.iter().zip(SearchKey::new(key).words()) {
            w.store(v, Ordering::Relaxed);
        }
        slot.version.store(n << 1, Ordering::Release);
        crate::store_point!("hash.slot.key");
    }

    /// Frees an entry of main bucket `root` by moving keys to their other buckets along the
    /// shortest path to a bucket with an empty entry (breadth first, no bucket twice on a
    /// path); returns the freed lane of `root`, whose old entry the caller overwrites.
    fn make_space(&self, root: u32) -> Option<usize> {
        SEARCH_QUEUE.with_borrow_mut(|queue| {
            queue.clear();
            queue.push(Node {
                bucket: root,
                parent: 0,
                lane: 0,
            });
            self.search(queue)
        })
    }

    /// The breadth-first search of [`make_space`](Self::make_space) from `queue[0]`.
    fn search(&self, queue: &mut Vec<Node>) -> Option<usize> {
        let t = self.t;
        let mut head = 0;
        while head < queue.len() {
            let node = queue[head];
            if let Some(ahead) = queue.get(head + PREFETCH_AHEAD) {
                t.prefetch_bucket(ahead.bucket);
            }
            let b = t.bucket(node.bucket);
            if head != 0 {
                if let Some(free) = lowest_lane(b.empty_lanes()) {
                    if path_is_simple(queue, head) {
                        return Some(self.move_along(queue, head, free));
                    }
                }
            }
            // Only a step straight back is left out here: a longer cycle is rare, and the
            // path that reaches a free entry is checked for one whole (above).
            let back = queue[node.parent as usize].bucket;
            for lane in 0..BUCKET_ENTRIES {
                let alt = alt_bucket(node.bucket, b.sig(lane)) & t.bucket_mask;
                if queue.len() == BFS_MAX {
                    return None;
                }
                if alt != node.bucket && (head == 0 || alt != back) {
                    queue.push(Node {
                        bucket: alt,
                        parent: head as u16,
                        lane: lane as u8,
                    });
                }
            }
            head += 1;
        }
        None
    }

    /// Moves the entries of the path ending at `queue[at]` one step each, deepest first,
    /// into `free`, a lane of the last bucket; returns the root's lane left to overwrite.
    fn move_along(&self, queue: &[Node], mut at: usize, mut free: usize) -> usize {
        let t = self.t;
        while at != 0 {
            let node = queue[at];
            let src = t.bucket(queue[node.parent as usize].bucket);
            let lane = node.lane as usize;
            t.bucket(node.bucket).fill(
                free,
                src.sig(lane),
                src.key_idx[lane].load(Ordering::Relaxed),
            );
            crate::store_point!("hash.cuckoo.copy");
            // The old entry is overwritten next.
            self.moved();
            free = lane;
            at = node.parent as usize;
        }
        free
    }

    /// Adds slot `idx` to the chain of extendable buckets of main bucket `head`: an empty
    /// entry of the chain, or a new bucket linked at its end. False when none is left.
    fn add_to_chain(&self, head: u32, sig: u16, idx: u32) -> bool {
        let t = self.t;
        let mut last = t.bucket(head);
        let mut b = t.next_in_chain(last);
        while let Some(bucket) = b {
            if let Some(lane) = lowest_lane(bucket.empty_lanes()) {
                bucket.fill(lane, sig, idx);
                return true;
            }
            last = bucket;
            b = t.next_in_chain(bucket);
        }
        let w = &t.header().writer;
        let Some(n) = w.free_ext.load(Ordering::Relaxed).checked_sub(1) else {
            return false;
        };
        let e = t.free_ext(n).load(Ordering::Relaxed);
        let Some(new) = t.ext_bucket(e) else {
            return false;
        };
        w.free_ext.store(n, Ordering::Release);
        crate::store_point!("hash.free_ext");
        new.fill(0, sig, idx);
        crate::store_point!("hash.ext.entry");
        last.next.store(e + 1, Ordering::Release);
        true
    }
}

/// Whether bucket `b` is on the path from the root to `queue[at]` (inclusive).
fn on_path(queue: &[Node], mut at: usize, b: u32) -> bool {
    loop {
        if queue[at].bucket == b {
            return true;
        }
        if at == 0 {
            return false;
        }
        at = queue[at].parent as usize;
    }
}

/// Whether the path from the root to `queue[at]` holds no bucket twice (the moves along it
/// assume each step lands in a bucket of its own).
fn path_is_simple(queue: &[Node], mut at: usize) -> bool {
    while at != 0 {
        let parent = queue[at].parent as usize;
        if on_path(queue, parent, queue[at].bucket) {
            return false;
        }
        at = parent;
    }
    true
}

fn lowest_lane(mask: u8) -> Option<usize> {
    (mask != 0).then(|| mask.trailing_zeros() as usize)
}

fn highest_lane(mask: u8) -> Option<usize> {
    mask.checked_ilog2().map(|lane| lane as usize)
}

#[cfg(test)]
mod tests {
    use super::{path_is_simple, Node};

    #[test]
    fn a_path_through_a_bucket_twice_is_not_simple() {
        let node = |bucket, parent| Node {
            bucket,
            parent,
            lane: 0,
        };
        // 5 -> 7 -> 9 -> 5 (queue[3]) and 5 -> 7 -> 9 -> 11 (queue[4]).
        let queue = [node(5, 0), node(7, 0), node(9, 1), node(5, 2), node(11, 2)];
        assert!(path_is_simple(&queue, 2));
        assert!(!path_is_simple(&queue, 3));
        assert!(path_is_simple(&queue, 4));
        assert!(path_is_simple(&queue, 0));
    }
}
