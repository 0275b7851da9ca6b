//! Unit and property tests of the split ring, and the queue in plain memory that the
//! other ring kinds' tests share.

use super::*;

/// Words past the queue's end that must stay as written.
const CANARY_WORDS: usize = 64;
const CANARY: u64 = 0xa5a5_5a5a_a5a5_5a5a;

/// A queue in plain memory, with a device side played by the test, and canary words
/// after it.
pub(super) struct Mem {
    buf: Vec<u64>,
    end: usize,
}

impl Mem {
    pub(super) fn queue(size: u16) -> (Mem, VirtQueue) {
        let lay = Layout::new(size);
        let words = lay.total as usize / 8 + 8;
        let mut m = Mem {
            buf: vec![0u64; words + CANARY_WORDS],
            end: words,
        };
        m.buf[words..].fill(CANARY);
        let base = m.buf.as_mut_ptr() as u64;
        let base = align_up(base, 64);
        let sh = base as *mut VqShared;
        // SAFETY: the buffer holds lay.total bytes after the aligned base.
        unsafe { sh.write(VqShared::new("test_vq", size, base)) };
        // SAFETY: the header was just written; the buffer outlives the test's queue.
        let sh: &'static VqShared = unsafe { &*sh };
        let mut q = VirtQueue::new(
            sh,
            Notifier::Mmio {
                reg: Box::leak(Box::new(0u16)) as *mut u16,
                value: 0,
            },
        );
        q.reset(RingKind::Split);
        (m, q)
    }

    pub(super) fn canary_intact(&self) -> bool {
        self.buf[self.end..].iter().all(|&w| w == CANARY)
    }
}

/// Takes the `n` used chains that wait (below `used_count`) in order, as a TX queue does
/// (`batch`: peek, link, then take them all) or as an RX queue does (one take at a time,
/// then give back): their cookies and lengths. Panics on a lie: for honest devices.
pub(super) fn take_in_order(q: &mut VirtQueue, n: u16, batch: bool) -> Vec<(u64, u32)> {
    let mut chains = UsedChains::default();
    let got = (0..n)
        .map(|k| {
            if batch {
                let Some((head, cookie, len)) = q.peek_used(k) else {
                    panic!("a lie")
                };
                q.link_used(&mut chains, head);
                (cookie, len)
            } else {
                match q.take_next_used(&mut chains, 0) {
                    Used::Chain { cookie, len } => (cookie, len),
                    other => panic!("{other:?}"),
                }
            }
        })
        .collect();
    if batch {
        q.take_used(chains)
    } else {
        q.give_back(chains)
    }
    got
}

/// The device's side: takes the next available chain and returns it as used.
fn device_use(q: &VirtQueue, seen: &mut u16, len: u32) -> Vec<Desc> {
    // SAFETY: test memory laid out by Mem::queue.
    unsafe {
        let avail = (*q.avail_idx).load(Ordering::Acquire);
        assert_ne!(avail, *seen, "nothing available");
        let head = *q.avail_ring.add((*seen & q.mask) as usize);
        let mut chain = vec![];
        let mut i = head;
        loop {
            let d = *q.desc.add(i as usize);
            chain.push(d);
            if d.flags & DESC_F_NEXT == 0 {
                break;
            }
            i = d.next;
        }
        let used_idx = (*q.used_idx).load(Ordering::Relaxed);
        *(q.used_ring as *mut UsedElem).add((used_idx & q.mask) as usize) = UsedElem {
            id: head as u32,
            len,
        };
        (*q.used_idx).store(used_idx.wrapping_add(1), Ordering::Release);
        *seen = seen.wrapping_add(1);
        chain
    }
}

#[test]
fn layout_keeps_parts_apart_and_aligned() {
    let l = Layout::new(256);
    assert_eq!(l.desc % 16, 0);
    assert!(l.avail >= l.desc + 16 * 256);
    assert_eq!(l.used % 4096, 0);
    assert!(l.used >= l.avail + 6 + 2 * 256);
    assert!(l.cookies >= l.used + 6 + 8 * 256);
    assert!(l.desc >= std::mem::size_of::<VqShared>() as u64);
    assert_eq!(l.links, l.hdrs + 16 * 256);
    assert_eq!(l.total, l.links + 8 * 256);
}

#[test]
fn chains_go_round_and_come_back_free() {
    let (_m, mut q) = Mem::queue(8);
    let mut seen = 0u16;
    // Many rounds through a small queue, chains of 1 to 3 descriptors, wrapping the
    // 16-bit indexes is not needed to exercise the free list.
    for round in 0..1000u64 {
        let n = (round % 3 + 1) as usize;
        let bufs: Vec<(u64, u32, bool)> = (0..n)
            .map(|k| (0x1000 * (k as u64 + 1), 100 + k as u32, round % 2 == 0))
            .collect();
        assert!(q.add(&bufs, (round + 1) * 64).is_some());
        q.publish();
        assert_eq!(q.num_free(), 8 - n as u16);
        let chain = device_use(&q, &mut seen, 42);
        assert_eq!(chain.len(), n);
        for (k, d) in chain.iter().enumerate() {
            assert_eq!(d.addr, 0x1000 * (k as u64 + 1));
            assert_eq!(d.flags & DESC_F_WRITE != 0, round % 2 == 0);
        }
        assert_eq!(q.used_count(u16::MAX), 1);
        let writable = if round % 2 == 0 { n as u32 * 100 } else { 0 };
        let want = if 42 <= writable {
            Used::Chain {
                cookie: (round + 1) * 64,
                len: 42,
            }
        } else {
            Used::BadLen {
                cookie: (round + 1) * 64,
            }
        };
        assert_eq!(q.pop_used(0), want);
        assert_eq!(q.num_free(), 8);
    }
}

#[test]
fn full_queue_refuses_and_drain_returns_what_the_device_held() {
    let (_m, mut q) = Mem::queue(4);
    for c in 0..4 {
        assert!(q.add(&[(0x2000, 64, true)], (c + 1) * 64).is_some());
    }
    assert!(q.add(&[(0x2000, 64, true)], 640).is_none());
    // Added chains count as held before they are published, and used ones until taken.
    assert_eq!(q.in_flight(), 4);
    q.publish();
    let mut seen = 0;
    device_use(&q, &mut seen, 60);
    assert_eq!(q.in_flight(), 4);
    assert_eq!(
        q.pop_used(0),
        Used::Chain {
            cookie: 64,
            len: 60
        }
    );
    assert_eq!(q.in_flight(), 3);
    let mut left = q.drain();
    left.sort();
    assert_eq!(left, vec![128, 192, 256]);
    assert_eq!(q.num_free(), 4);
    assert_eq!(q.in_flight(), 0);
}

#[test]
fn taken_counts_chains_as_added_and_drops_across_the_wrap() {
    let (_m, mut q) = Mem::queue(4);
    q.st().avail_idx = u16::MAX - 1;
    let mark = q.taken();
    assert!(q.add(&[(0x2000, 64, false)], 64).is_some());
    // Added, not yet published: taken already (a recovery publishes it).
    assert_eq!(q.taken().wrapping_sub(mark), 1);
    q.count_dropped();
    assert!(q.add(&[(0x2000, 64, false)], 128).is_some());
    q.publish();
    assert_eq!(q.taken().wrapping_sub(mark), 3);
    // A refused add is not taken until the caller counts it dropped.
    assert!(q.add(&[(0x2000, 64, false); 3], 192).is_none());
    assert_eq!(q.taken().wrapping_sub(mark), 3);
}

/// Chains of one buffer each, added and published, the first `used` of them used by
/// the device.
fn queue_with_chains(size: u16, added: u64, used: u16) -> (Mem, VirtQueue) {
    let (m, mut q) = Mem::queue(size);
    for c in 1..=added {
        assert!(q.add(&[(0x1000 * c, 64, false)], c * 64).is_some());
    }
    q.publish();
    let mut seen = 0;
    for _ in 0..used {
        device_use(&q, &mut seen, 0);
    }
    (m, q)
}

/// The first `n` used entries linked for a take back, as `VirtioTx::reclaim` does.
fn link_first(q: &VirtQueue, n: u16) -> UsedChains {
    let mut chains = UsedChains::default();
    for k in 0..n {
        let (head, _, _) = q.peek_used(k).unwrap();
        q.link_used(&mut chains, head);
    }
    chains
}

#[test]
fn repair_takes_back_what_a_dead_take_had_cleared_and_frees_its_descriptors() {
    let (_m, mut q) = queue_with_chains(8, 4, 2);
    // A poller killed in `take_used` after clearing the first chain's cookie.
    let chains = link_first(&q, 2);
    *q.cookie(chains.first) = 0;
    assert_eq!(q.repair(), 1);
    assert_eq!(q.st().unaccounted(), (0, 0));
    assert_eq!((q.in_flight(), q.num_free()), (3, 5));
    // A repairer that died and is run again changes nothing more.
    assert_eq!(q.repair(), 0);
    assert_eq!(
        (q.in_flight(), q.num_free(), q.used_count(u16::MAX)),
        (3, 5, 1)
    );
    // The second used entry is still the queue's and comes back whole.
    assert_eq!(q.used_count(u16::MAX), 1);
    assert_eq!(
        q.pop_used(0),
        Used::Chain {
            cookie: 128,
            len: 0
        }
    );
    assert_eq!(q.lies(Lie::BadUsedId), 0);
}

#[test]
fn repair_frees_chains_a_dead_give_back_had_not_linked_yet() {
    let (_m, mut q) = queue_with_chains(8, 3, 3);
    // Killed in `give_back` after the used index moved, before the free list took the
    // chains: their descriptors are neither free nor named.
    let chains = link_first(&q, 3);
    let mut head = chains.first;
    for _ in 0..3 {
        *q.cookie(head) = 0;
        head = q.link(head).next;
    }
    q.st().last_used = 3;
    assert_eq!(q.st().unaccounted(), (3, 0));
    assert_eq!(q.repair(), 3);
    assert_eq!(q.st().unaccounted(), (0, 0));
    assert_eq!((q.in_flight(), q.num_free()), (0, 8));
    // Every descriptor can carry a chain again.
    for c in 1..=8u64 {
        assert!(q.add(&[(0x1000, 64, false)], c * 64).is_some());
    }
}

#[test]
fn repair_finishes_an_add_killed_after_naming_its_chain() {
    let (_m, mut q) = queue_with_chains(8, 2, 0);
    // `add`'s stores up to the cookie, not the index: named, not counted.
    let head = q.next_free();
    assert!(q.add(&[(0x9000, 64, false)], 640).is_some());
    q.st().avail_idx -= 1;
    assert_eq!(q.st().unaccounted(), (0, u16::MAX));
    assert_eq!(q.repair(), 0);
    assert_eq!(q.st().unaccounted(), (0, 0));
    assert_eq!(q.in_flight(), 3);
    assert_eq!(q.repair(), 0);
    assert_eq!(q.in_flight(), 3);
    q.publish();
    let mut seen = 0;
    for _ in 0..3 {
        device_use(&q, &mut seen, 0);
    }
    let cookies: Vec<u64> = (0..3)
        .map(|_| match q.pop_used(0) {
            Used::Chain { cookie, .. } => cookie,
            u => panic!("{u:?}"),
        })
        .collect();
    assert_eq!(cookies, vec![64, 128, 640]);
    assert_eq!(q.link(head).descs, 1);
}

/// Property tests: a fake device that mixes honest completions with every lie the
/// queue must survive, against a reference model of what the queue must do with each
/// used entry it looks at.
mod lying_device {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    /// Most used entries one batch takes in the TX-style poll (as `mbuf::FREE_BATCH`).
    const BATCH: u16 = 4;

    #[derive(Clone, Debug)]
    enum Step {
        /// The application adds a chain of `bufs` buffers of `len` bytes.
        Add { bufs: u8, len: u16 },
        /// The device completes the `pick`th chain it holds, honestly.
        Complete { pick: u8, len: u16 },
        /// A used id past the ring.
        IdPastRing { id: u32 },
        /// A used id naming a chain the device completed before.
        IdCompleted { pick: u8 },
        /// A used id naming any descriptor.
        IdAny { id: u16 },
        /// A chain the device holds, completed with a length beyond its buffers.
        LenBeyond { pick: u8, extra: u16 },
        /// A used length of 0.
        LenZero { pick: u8 },
        /// The device scribbles over a descriptor (its `next`, flags and length).
        CorruptDesc {
            i: u16,
            next: u16,
            flags: u16,
            len: u32,
        },
        /// The used index moves `by` without entries (chaos only).
        JumpIdx { by: u16 },
        /// A used entry written where the index does not point (chaos only).
        StaleEntry { slot: u16, id: u32, len: u32 },
        /// The driver polls at most `max` entries.
        Poll { max: u8 },
        /// The queue is reset and drained (chaos only).
        Reset,
    }

    fn honest_steps() -> impl Strategy<Value = Step> {
        prop_oneof![
            4 => (1u8..4, 1u16..2048).prop_map(|(bufs, len)| Step::Add { bufs, len }),
            4 => (any::<u8>(), any::<u16>()).prop_map(|(pick, len)| Step::Complete { pick, len }),
            1 => (any::<u32>()).prop_map(|id| Step::IdPastRing { id }),
            1 => any::<u8>().prop_map(|pick| Step::IdCompleted { pick }),
            1 => any::<u16>().prop_map(|id| Step::IdAny { id }),
            1 => (any::<u8>(), any::<u16>()).prop_map(|(pick, extra)| Step::LenBeyond { pick, extra }),
            1 => any::<u8>().prop_map(|pick| Step::LenZero { pick }),
            1 => (any::<u16>(), any::<u16>(), any::<u16>(), any::<u32>())
                .prop_map(|(i, next, flags, len)| Step::CorruptDesc { i, next, flags, len }),
            3 => (1u8..40).prop_map(|max| Step::Poll { max }),
        ]
    }

    fn chaos_steps() -> impl Strategy<Value = Step> {
        prop_oneof![
            10 => honest_steps(),
            1 => any::<u16>().prop_map(|by| Step::JumpIdx { by }),
            1 => (any::<u16>(), any::<u32>(), any::<u32>())
                .prop_map(|(slot, id, len)| Step::StaleEntry { slot, id, len }),
            1 => Just(Step::Reset),
        ]
    }

    /// A chain the application has given the queue and not had back.
    #[derive(Clone, Copy, Debug)]
    struct Held {
        cookie: u64,
        descs: u16,
        writable: u32,
    }

    /// What the driver gave back for a used entry.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    enum Out {
        Chain(u64, u32),
        BadLen(u64),
    }

    struct World {
        mem: Mem,
        q: VirtQueue,
        size: u16,
        /// RX style (buffers the device writes, `pop_used` with a least length of 1)
        /// or TX style (read-only buffers, batches of peek/link/skip/take).
        rx: bool,
        /// Whether the device may also overrun the used ring.
        chaos: bool,
        /// The application's and the reference's view: chains held, by head.
        held: HashMap<u16, Held>,
        next_cookie: u64,
        /// Used entries the reference has consumed.
        consumed: u16,
        /// Lies the reference expects counted, per [`Lie`].
        lies: [u64; 3],
        /// The device: avail entries read, chains held (heads), heads it completed.
        seen: u16,
        pending: Vec<u16>,
        completed: Vec<u16>,
    }

    impl World {
        fn new(size: u16, rx: bool, chaos: bool) -> World {
            let (mem, q) = Mem::queue(size);
            World {
                mem,
                q,
                size,
                rx,
                chaos,
                held: HashMap::new(),
                next_cookie: 64,
                consumed: 0,
                lies: [0; 3],
                seen: 0,
                pending: vec![],
                completed: vec![],
            }
        }

        /// The device reads the available ring.
        fn device_sync(&mut self) {
            // SAFETY: test memory laid out by Mem::queue.
            let avail = unsafe { (*self.q.avail_idx).load(Ordering::Acquire) };
            while self.seen != avail {
                // SAFETY: as above; the slot is masked.
                let head = unsafe { *self.q.avail_ring.add((self.seen & self.q.mask) as usize) };
                self.pending.push(head);
                self.seen = self.seen.wrapping_add(1);
            }
        }

        fn used_idx(&self) -> u16 {
            // SAFETY: test memory laid out by Mem::queue.
            unsafe { (*self.q.used_idx).load(Ordering::Relaxed) }
        }

        fn write_entry(&self, slot: u16, id: u32, len: u32) {
            // SAFETY: test memory; the slot is masked.
            unsafe {
                *(self.q.used_ring as *mut UsedElem).add((slot & self.q.mask) as usize) =
                    UsedElem { id, len }
            };
        }

        /// The device writes a used entry; an honest device (all but `chaos`) never
        /// writes more entries than the ring has slots, even when lying.
        fn device_use(&mut self, id: u32, len: u32) {
            if !self.room() {
                return;
            }
            let idx = self.used_idx();
            self.write_entry(idx, id, len);
            // SAFETY: test memory laid out by Mem::queue.
            unsafe { (*self.q.used_idx).store(idx.wrapping_add(1), Ordering::Release) };
        }

        /// Whether the device may write another used entry.
        fn room(&self) -> bool {
            self.chaos || self.used_idx().wrapping_sub(self.consumed) < self.size
        }

        /// The device gives back the `pick`th chain it holds, with `len(writable)`.
        fn complete(&mut self, pick: u8, len: impl Fn(u32) -> u32) {
            self.device_sync();
            if self.pending.is_empty() || !self.room() {
                return;
            }
            let head = self.pending.remove(pick as usize % self.pending.len());
            let writable = self.held.get(&head).map_or(0, |h| h.writable);
            self.device_use(head as u32, len(writable));
            self.completed.push(head);
        }

        fn step(&mut self, s: &Step) {
            match *s {
                Step::Add { bufs, len } => {
                    let free = self.q.num_free();
                    let head = self.q.next_free();
                    let cookie = self.next_cookie;
                    let b: Vec<(u64, u32, bool)> = (0..bufs)
                        .map(|k| (0x10_0000 + k as u64 * 0x1000, len as u32, self.rx))
                        .collect();
                    match self.q.add(&b, cookie) {
                        Some(h) => {
                            assert!(free >= bufs as u16);
                            assert_eq!(h, head);
                            assert!(!self.held.contains_key(&h), "head {h} reused in flight");
                            let writable = if self.rx { bufs as u32 * len as u32 } else { 0 };
                            self.held.insert(
                                h,
                                Held {
                                    cookie,
                                    descs: bufs as u16,
                                    writable,
                                },
                            );
                            self.next_cookie += 64;
                            self.q.publish();
                            // The device reads what is published at once: a chain given
                            // back early by a lie and added again is then held twice by
                            // the device and still completed after it was added.
                            self.device_sync();
                        }
                        None => assert!(free < bufs as u16, "refused with {free} free"),
                    }
                }
                Step::Complete { pick, len } => {
                    let rx = self.rx;
                    self.complete(pick, |w| if rx { 1 + len as u32 % w.max(1) } else { 0 });
                }
                Step::IdPastRing { id } => {
                    let id = id.max(self.size as u32);
                    self.device_use(id, 1);
                }
                Step::IdCompleted { pick } => {
                    if !self.completed.is_empty() {
                        let head = self.completed[pick as usize % self.completed.len()];
                        self.device_use(head as u32, 1);
                    }
                }
                Step::IdAny { id } => self.device_use((id % self.size) as u32, 1),
                Step::LenBeyond { pick, extra } => {
                    self.complete(pick, |w| w + 1 + extra as u32);
                }
                Step::LenZero { pick } => self.complete(pick, |_| 0),
                Step::CorruptDesc {
                    i,
                    next,
                    flags,
                    len,
                } => {
                    // SAFETY: test memory; the index is masked.
                    let d = unsafe { &mut *self.q.desc.add((i & self.q.mask) as usize) };
                    d.next = next;
                    d.flags = flags;
                    d.len = len;
                }
                Step::JumpIdx { by } => {
                    let idx = self.used_idx().wrapping_add(by);
                    // SAFETY: test memory laid out by Mem::queue.
                    unsafe { (*self.q.used_idx).store(idx, Ordering::Release) };
                }
                Step::StaleEntry { slot, id, len } => self.write_entry(slot, id, len),
                Step::Poll { max } => self.poll(max as u16),
                Step::Reset => {
                    let mut got = self.q.drain();
                    got.sort();
                    let mut want: Vec<u64> = self.held.values().map(|h| h.cookie).collect();
                    want.sort();
                    assert_eq!(got, want, "drain gave back other than what was held");
                    self.held.clear();
                    self.consumed = 0;
                    self.seen = 0;
                    self.pending.clear();
                    self.completed.clear();
                }
            }
            self.check();
        }

        /// The reference's verdict on the used entry `k` after the consumed ones, with
        /// `taking` the heads already taken in this batch.
        fn judge(&mut self, k: u16, taking: &mut Vec<u16>) -> Option<Out> {
            // SAFETY: test memory; the slot is masked.
            let e = unsafe {
                *self
                    .q
                    .used_ring
                    .add((self.consumed.wrapping_add(k) & self.q.mask) as usize)
            };
            let h = match self.held.get(&(e.id as u16)) {
                Some(h) if e.id < self.size as u32 && !taking.contains(&(e.id as u16)) => *h,
                _ => {
                    self.lies[Lie::BadUsedId as usize] += 1;
                    return None;
                }
            };
            taking.push(e.id as u16);
            if self.rx && !(1..=h.writable).contains(&e.len) {
                self.lies[Lie::BadUsedLen as usize] += 1;
                return Some(Out::BadLen(h.cookie));
            }
            Some(Out::Chain(h.cookie, e.len))
        }

        /// The reference's count of used entries to look at.
        fn expect_count(&mut self) -> u16 {
            let n = self.used_idx().wrapping_sub(self.consumed);
            if n as usize > self.held.len() {
                self.lies[Lie::BadUsedIdx as usize] += 1;
                return self.held.len() as u16;
            }
            n
        }

        /// The driver takes up to `max` used entries; each outcome must be the
        /// reference's.
        fn poll(&mut self, max: u16) {
            let n = self.q.used_count(u16::MAX);
            assert_eq!(n, self.expect_count(), "used_count");
            let n = n.min(max);
            if self.rx {
                for _ in 0..n {
                    let want = self.judge(0, &mut vec![]);
                    let got = match self.q.pop_used(1) {
                        Used::Chain { cookie, len } => Some(Out::Chain(cookie, len)),
                        Used::BadLen { cookie } => Some(Out::BadLen(cookie)),
                        Used::BadId => None,
                    };
                    assert_eq!(got, want);
                    self.give_back(want);
                    self.consumed = self.consumed.wrapping_add(1);
                }
                return;
            }
            let mut left = n;
            while left > 0 {
                let b = left.min(BATCH);
                let mut chains = UsedChains::default();
                let mut taking = vec![];
                let mut got = vec![];
                let mut want = vec![];
                for k in 0..b {
                    want.push(self.judge(k, &mut taking));
                    match self.q.peek_used(k) {
                        Some((head, cookie, len)) => {
                            self.q.link_used(&mut chains, head);
                            got.push(Some(Out::Chain(cookie, len)));
                        }
                        None => {
                            self.q.skip_used(&mut chains);
                            got.push(None);
                        }
                    }
                }
                self.q.take_used(chains);
                assert_eq!(got, want);
                for w in want {
                    self.give_back(w);
                }
                self.consumed = self.consumed.wrapping_add(b);
                left -= b;
            }
        }

        /// A chain given back leaves the held set, once.
        fn give_back(&mut self, out: Option<Out>) {
            let cookie = match out {
                Some(Out::Chain(c, _)) | Some(Out::BadLen(c)) => c,
                None => return,
            };
            let head = *self
                .held
                .iter()
                .find(|(_, h)| h.cookie == cookie)
                .expect("a chain given back twice")
                .0;
            self.held.remove(&head);
        }

        /// Every chain is held or given back, every descriptor free or in a held chain,
        /// the lies counted as the reference says, nothing written past the queue.
        fn check(&self) {
            assert_eq!(
                self.q.in_flight() as usize,
                self.held.len(),
                "chains in flight"
            );
            let descs: u16 = self.held.values().map(|h| h.descs).sum();
            assert_eq!(self.q.num_free() + descs, self.size, "descriptors");
            for lie in Lie::ALL {
                assert_eq!(self.q.lies(lie), self.lies[lie as usize], "{lie:?} count");
            }
            assert!(self.mem.canary_intact(), "written past the queue");
        }

        /// The device completes all it holds honestly; the driver takes everything
        /// (a poll looks at no more entries than chains in flight, so entries the
        /// device wrote beyond them take more than one).
        fn finish(&mut self) {
            for _ in 0..64 {
                self.device_sync();
                while !self.pending.is_empty() && self.room() {
                    self.step(&Step::Complete { pick: 0, len: 1 });
                }
                self.poll(u16::MAX);
                self.check();
                if self.pending.is_empty() && self.used_idx() == self.consumed {
                    break;
                }
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(20_000))]

        /// Lies about used ids and lengths are skipped or dropped and counted; every
        /// honest completion, before or after them, is still delivered.
        #[test]
        fn lies_are_skipped_and_honest_chains_still_arrive(
            size_log in 2u32..5,
            rx in any::<bool>(),
            steps in proptest::collection::vec(honest_steps(), 1..32),
        ) {
            let mut w = World::new(1 << size_log, rx, false);
            for s in &steps {
                w.step(s);
            }
            w.finish();
            prop_assert!(w.held.is_empty(), "chains never given back: {:?}", w.held);
        }

        /// With used indexes that jump and stale entries too, nothing is given back
        /// twice or out of thin air, and a reset gives back exactly what is held.
        #[test]
        fn any_device_leaves_the_queue_accounted_for(
            size_log in 2u32..5,
            rx in any::<bool>(),
            steps in proptest::collection::vec(chaos_steps(), 1..32),
        ) {
            let mut w = World::new(1 << size_log, rx, true);
            for s in &steps {
                w.step(s);
            }
            w.step(&Step::Reset);
            prop_assert_eq!(w.q.num_free(), w.size);
        }
    }
}
