//! Split rings used in order (`VIRTIO_F_IN_ORDER` without packed rings; the virtio spec's
//! "In-order use of descriptors" for split virtqueues): chains take descriptors in ring
//! order (the links stay `i + 1` and no free list is spliced), and the device may write
//! one used entry for a batch of chains, naming the head of the batch's last chain.
//!
//! `last_used` counts the chains taken, `used_pos` the used entries consumed: a take that
//! ends inside a batch leaves the batch's entry for the rest of it. The two are stored as
//! one word. The available ring names the chains in the order they were added, so chain
//! `k` from the oldest in flight is found without walking the descriptors.

use super::{Lie, UsedElem, VirtQueue};

impl VirtQueue {
    /// The head descriptor of chain `k` from the oldest in flight (`k` below the chains in
    /// flight: its slot in the available ring is not reused before it is taken).
    #[inline(always)]
    fn in_order_head(&self, taken: u16, k: u16) -> u16 {
        let slot = (taken.wrapping_add(k) & self.mask) as usize;
        // SAFETY: slot <= mask: inside the available ring, which only the driver writes.
        unsafe { *self.avail_ring.add(slot) & self.mask }
    }

    /// Used entry `e` from the next one, as the device wrote it.
    #[inline(always)]
    fn in_order_entry(&self, used_pos: u16, e: u16) -> UsedElem {
        let slot = (used_pos.wrapping_add(e) & self.mask) as usize;
        // SAFETY: slot <= mask: inside the used ring, written by the device before it
        // published the index (acquired in `in_order_scan`).
        unsafe { std::ptr::read_volatile(self.used_ring.add(slot)) }
    }

    /// How many chains from the oldest in flight (at most `max`) the device has used, and
    /// how many used entries those chains end (a count that stops inside a batch does not
    /// end its entry). An entry naming no chain in flight is a lie, taken as a batch of one.
    #[inline]
    fn in_order_scan(&self, max: u16) -> (u16, u16) {
        let (taken, pos) = self.st().used_word();
        let waiting = self.used_waiting_after(pos);
        let (mut n, mut e) = (0u16, 0u16);
        while n < max && e < waiting {
            let last = self.in_order_entry(pos, e).id;
            let k = match self.in_order_batch_end(taken, n, last) {
                Some(end) => end - n + 1,
                None => {
                    self.st().count_lie(
                        Lie::BadUsedId,
                        format_args!(
                            "ended an in-order batch at id {last}, which names no chain in flight; taken as a batch of one"
                        ),
                    );
                    1
                }
            };
            if n + k > max {
                return (max, e);
            }
            n += k;
            e += 1;
        }
        (n, e)
    }

    /// The split in-order part of [`used_count_after`](Self::used_count_after).
    #[inline]
    pub(super) fn in_order_used_count_after(&self, k: u16, limit: u16) -> u16 {
        self.in_order_scan(k.saturating_add(limit))
            .0
            .saturating_sub(k)
    }

    /// The chain (from the next one) whose head used entry `last` names, from chain `k`
    /// on; `None` when it names none in flight (a lie).
    #[inline(always)]
    fn in_order_batch_end(&self, taken: u16, k: u16, last: u32) -> Option<u16> {
        (k..self.st().in_flight()).find(|&j| self.in_order_head(taken, j) as u32 == last)
    }

    /// Used chain `k` from the next one: its head and, where the device wrote an entry
    /// for that chain, its length (0 for a chain inside a batch).
    #[inline(always)]
    pub(super) fn in_order_used_elem(&self, k: u16) -> UsedElem {
        let (taken, pos) = self.st().used_word();
        // The entry chain `k` ends or lies inside, and the chain that ends it if known.
        let (ck, ce) = self.used_cursor.get();
        let (e, end) = if ck == k {
            (ce, self.batch_end.get())
        } else {
            (self.in_order_scan(k).1, None)
        };
        let entry = self.in_order_entry(pos, e);
        // A lie ends a batch of one, as `in_order_scan` counted it.
        let end = end.unwrap_or_else(|| self.in_order_batch_end(taken, k, entry.id).unwrap_or(k));
        let head = self.in_order_head(taken, k);
        let ends = end == k;
        if ends {
            self.used_cursor.set((k.wrapping_add(1), e.wrapping_add(1)));
            self.batch_end.set(None);
        } else {
            self.used_cursor.set((k.wrapping_add(1), e));
            self.batch_end.set(Some(end));
        }
        UsedElem {
            id: head as u32,
            len: if ends && entry.id == head as u32 {
                entry.len
            } else {
                0
            },
        }
    }

    /// Takes the next `chains` used chains and the entries they end (the split in-order
    /// part of `give_back`), in one store.
    #[inline]
    pub(super) fn in_order_take(&self, chains: u16) {
        // The cursor already knows the entries when the chains were looked at in order.
        let (ck, ce) = self.used_cursor.get();
        let e = if ck == chains {
            ce
        } else {
            self.in_order_scan(chains).1
        };
        let st = self.st();
        let (taken, pos) = st.used_word();
        st.set_used(taken.wrapping_add(chains), pos.wrapping_add(e));
        self.used_cursor.set((0, 0));
        self.batch_end.set(None);
    }

    /// The split in-order part of [`repair`](Self::repair), after the cookies were
    /// unmarked and an `add` killed after naming its chain was finished: the used chains
    /// at the front whose cookies a dead take had cleared are taken, and the descriptors
    /// outside the named chains are free again, from the end of the newest one.
    pub(super) fn repair_in_order(&mut self, named: u16, descs_named: u16) -> u16 {
        let size = self.mask + 1;
        let st = self.st();
        let held = st.in_flight();
        let (taken, _) = st.used_word();
        let used = self.in_order_scan(held).0;
        let cleared = (0..used)
            .take_while(|&k| *self.cookie(self.in_order_head(taken, k)) == 0)
            .count() as u16;
        if cleared > 0 {
            self.in_order_take(cleared);
        }
        let st = self.st();
        // In order, nothing is skipped: every chain counted in flight is named.
        st.skipped = named.wrapping_sub(st.avail_idx.wrapping_sub(st.last_used));
        if named > 0 {
            let newest = self.in_order_head(st.last_used, st.in_flight() - 1);
            st.free_head = newest.wrapping_add(self.link(newest).descs) & self.mask;
        }
        let was_free = st.num_free;
        st.num_free = size - descs_named;
        st.num_free.saturating_sub(was_free)
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{take_in_order, Mem};
    use super::super::{RingKind, Used, UsedChains, DESC_F_NEXT};
    use super::*;
    use proptest::prelude::*;
    use std::sync::atomic::Ordering;

    /// The device's side of a split ring used in order: it reads chains from the available
    /// ring and may end a batch of them with one used entry naming the last.
    struct Device {
        seen: u16,
        /// Heads read and not yet used.
        held: std::collections::VecDeque<u16>,
    }

    impl Device {
        fn new() -> Device {
            Device {
                seen: 0,
                held: Default::default(),
            }
        }

        fn sync(&mut self, q: &VirtQueue) {
            // SAFETY: test memory laid out by Mem::queue.
            let avail = unsafe { (*q.avail_idx).load(Ordering::Acquire) };
            while self.seen != avail {
                // SAFETY: as above; the slot is masked.
                let head = unsafe { *q.avail_ring.add((self.seen & q.mask) as usize) };
                // In order, a chain's descriptors follow its head in the table.
                let mut d = head;
                loop {
                    // SAFETY: as above; d is masked.
                    let desc = unsafe { *q.desc.add((d & q.mask) as usize) };
                    if desc.flags & DESC_F_NEXT == 0 {
                        break;
                    }
                    assert_eq!(desc.next, (d + 1) & q.mask, "descriptors out of ring order");
                    d = desc.next;
                }
                self.held.push_back(head);
                self.seen = self.seen.wrapping_add(1);
            }
        }

        /// Writes one used entry naming `id` with `len`.
        fn write_used(&self, q: &VirtQueue, id: u32, len: u32) {
            // SAFETY: test memory laid out by Mem::queue; the slot is masked.
            unsafe {
                let idx = (*q.used_idx).load(Ordering::Relaxed);
                *(q.used_ring as *mut UsedElem).add((idx & q.mask) as usize) = UsedElem { id, len };
                (*q.used_idx).store(idx.wrapping_add(1), Ordering::Release);
            }
        }

        /// Uses the first `n` chains held, with one used entry naming the last.
        fn complete(&mut self, q: &VirtQueue, n: usize, len: u32) -> Vec<u16> {
            let n = n.min(self.held.len());
            let batch: Vec<u16> = self.held.drain(..n).collect();
            if let Some(&last) = batch.last() {
                self.write_used(q, last as u32, len);
            }
            batch
        }
    }

    fn in_order_queue(size: u16) -> (Mem, VirtQueue) {
        let (m, mut q) = Mem::queue(size);
        q.reset(RingKind::SplitInOrder);
        (m, q)
    }

    /// Chains of one buffer, added, published and read by the device.
    fn with_chains(q: &mut VirtQueue, dev: &mut Device, cookies: std::ops::RangeInclusive<u64>) {
        for c in cookies {
            assert!(q.add(&[(0x1000 * c, 64, true)], c * 64).is_some());
        }
        q.publish();
        dev.sync(q);
    }

    fn take(q: &mut VirtQueue, max: u16) -> Vec<(u64, u32)> {
        let n = q.used_count(max);
        take_in_order(q, n, false)
    }

    #[test]
    fn descriptors_are_used_in_ring_order_across_the_wrap() {
        let (_m, mut q) = in_order_queue(8);
        let mut dev = Device::new();
        for round in 0..5u64 {
            let first = q.next_free();
            assert!(q.add(&[(0x1000, 64, true); 3], 64 + round * 64).is_some());
            assert!(q.add(&[(0x1000, 64, true)], 4096 + round * 64).is_some());
            q.publish();
            dev.sync(&q);
            assert_eq!(q.next_free(), (first + 4) & 7);
            dev.complete(&q, 2, 7);
            assert_eq!(
                take(&mut q, 8),
                vec![(64 + round * 64, 0), (4096 + round * 64, 7)]
            );
            assert_eq!(q.num_free(), 8);
        }
    }

    #[test]
    fn an_entry_naming_no_chain_takes_one_chain_as_a_lie() {
        let (_m, mut q) = in_order_queue(8);
        let mut dev = Device::new();
        with_chains(&mut q, &mut dev, 1..=3);
        dev.write_used(&q, 6, 100);
        dev.complete(&q, 3, 9);
        assert_eq!(q.used_count(u16::MAX), 3);
        let mut chains = UsedChains::default();
        assert_eq!(
            q.take_next_used(&mut chains, 1),
            Used::BadLen { cookie: 64 }
        );
        q.give_back(chains);
        assert_eq!(q.lies(Lie::BadUsedId), 1);
        // The batch's entry still ends the other two.
        assert_eq!(take(&mut q, 8), vec![(128, 0), (192, 9)]);
        assert_eq!((q.in_flight(), q.num_free()), (0, 8));
    }

    #[test]
    fn repair_takes_the_chains_a_dead_take_had_cleared_inside_a_batch() {
        let (_m, mut q) = in_order_queue(8);
        let mut dev = Device::new();
        with_chains(&mut q, &mut dev, 1..=4);
        dev.complete(&q, 3, 0);
        // A poller killed in `take_used` after clearing the first two of the batch.
        let mut chains = UsedChains::default();
        for k in 0..2 {
            let (head, _, _) = q.peek_used(k).unwrap();
            q.link_used(&mut chains, head);
        }
        for k in 0..2 {
            *q.cookie(q.in_order_head(0, k)) = 0;
        }
        assert_eq!(q.repair(), 2);
        assert_eq!(q.st().unaccounted(), (0, 0));
        assert_eq!((q.in_flight(), q.num_free()), (2, 6));
        assert_eq!(q.repair(), 0);
        // The batch's last chain comes back, once; then the fourth when used.
        assert_eq!(take(&mut q, 8), vec![(192, 0)]);
        dev.complete(&q, 1, 5);
        assert_eq!(take(&mut q, 8), vec![(256, 5)]);
        assert_eq!((q.in_flight(), q.num_free()), (0, 8));
    }

    #[test]
    fn repair_gives_back_descriptors_of_an_add_killed_before_naming_its_chain() {
        let (_m, mut q) = in_order_queue(8);
        let mut dev = Device::new();
        with_chains(&mut q, &mut dev, 1..=2);
        // `add`'s stores up to the free head, not the available ring's slot.
        assert!(q.add(&[(0x9000, 64, true); 2], 640).is_some());
        let st = q.st();
        st.avail_idx -= 1;
        *q.cookie(2) = 0;
        assert_eq!(q.st().unaccounted(), (2, 0));
        assert_eq!(q.repair(), 2);
        assert_eq!(q.st().unaccounted(), (0, 0));
        // The next chain starts where the dead one did, after the newest named.
        assert_eq!(q.next_free(), 2);
        with_chains(&mut q, &mut dev, 3..=3);
        dev.complete(&q, 3, 1);
        assert_eq!(take(&mut q, 8), vec![(64, 0), (128, 0), (192, 1)]);
    }

    #[derive(Clone, Debug)]
    enum Step {
        Add { bufs: u8 },
        Complete { n: u8, len: u16 },
        Poll { max: u8, batch: bool },
    }

    proptest! {
        /// The device ends batches of one to five chains (of one to three descriptors)
        /// with one entry; chains come back in order, each once, the one the entry names
        /// with the entry's length and the others with 0, whatever
        /// the polls' limits cut the batches into, across the wraps of both rings.
        #[test]
        fn in_order_batches_come_back_whole_in_any_cut(
            steps in prop::collection::vec(
                prop_oneof![
                    3 => (1u8..4).prop_map(|bufs| Step::Add { bufs }),
                    3 => (1u8..6, 1u16..101).prop_map(|(n, len)| Step::Complete { n, len }),
                    2 => (1u8..12, any::<bool>()).prop_map(|(max, batch)| Step::Poll { max, batch }),
                ],
                1..400,
            ),
        ) {
            let (m, mut q) = in_order_queue(16);
            let mut dev = Device::new();
            // Chains in the order added: (head, cookie, descriptors); lengths by cookie.
            let mut order: std::collections::VecDeque<(u16, u64, u16)> = Default::default();
            let mut done: std::collections::HashMap<u64, u32> = Default::default();
            let mut next = 64u64;
            for s in &steps {
                match *s {
                    Step::Add { bufs } => {
                        let b = vec![(0x1000u64, 128u32, true); bufs as usize];
                        let first = q.next_free();
                        if let Some(head) = q.add(&b, next) {
                            prop_assert_eq!(head, first);
                            order.push_back((head, next, bufs as u16));
                            next += 64;
                            q.publish();
                            dev.sync(&q);
                        }
                    }
                    Step::Complete { n, len } => {
                        let heads = dev.complete(&q, n as usize, len as u32);
                        let last = heads.last().copied();
                        for h in heads {
                            let cookie = order.iter().find(|c| c.0 == h).expect("held").1;
                            done.insert(cookie, if Some(h) == last { len as u32 } else { 0 });
                        }
                    }
                    Step::Poll { max, batch } => {
                        let n = q.used_count(max as u16);
                        prop_assert!(n <= max as u16);
                        prop_assert!(n as usize <= done.len());
                        for (cookie, len) in take_in_order(&mut q, n, batch) {
                            prop_assert_eq!(order.pop_front().map(|c| c.1), Some(cookie));
                            prop_assert_eq!(done.remove(&cookie), Some(len));
                        }
                    }
                }
                let descs: u16 = order.iter().map(|c| c.2).sum();
                prop_assert_eq!(q.in_flight() as usize, order.len());
                prop_assert_eq!(q.num_free() + descs, 16);
                prop_assert_eq!(q.st().unaccounted(), (0, 0));
                prop_assert!(m.canary_intact());
                for lie in Lie::ALL {
                    prop_assert_eq!(q.lies(lie), 0);
                }
            }
            prop_assert_eq!(q.used_count(u16::MAX) as usize, done.len());
        }
    }
}
