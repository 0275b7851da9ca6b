//! TX on the shared rings: one data descriptor per segment, EOP and RS on the last, the
//! head mbuf kept in the last slot; sent chains are freed once the device has written DD
//! back into that slot.
//!
//! The device is not trusted: TX reads DD only in the last descriptor of chains it posted
//! and not yet freed, and posting rewrites that word, so no write-back can free a chain
//! twice or one never posted; a device that stops completing fills the ring and `tx_burst`
//! takes nothing.
//!
//! TX fast free (DPDK's `MBUF_FAST_FREE`, asked in the port's TX offloads): every packet is
//! one descriptor, so the slots from the oldest not freed are a run of packets, which go
//! back to their pool straight from the slots, a run at a time once the device has written
//! back its last descriptor (`mbuf::fast_free_then_forget`). The ring records the pool of
//! the first packet sent; `tx_burst` checks each packet against it (one segment, one
//! reference, that pool), and one that breaks the promise ends fast free for the queue
//! until it is started again: it and all after it are sent (from the next burst on, when
//! the ring had recorded its pool) and freed with the checks.

use super::{write_tail, RingZone, ANY_POOL};
use crate::intel::regs::*;
use eal::vfio::Bar;
use net::ethdev::TxBurst;
use net::mbuf::FREE_BATCH;
use net::{mbuf, Mbuf, PktmbufPool};
use std::sync::Arc;

impl RingZone {
    /// TX: calls `done` with the slot word of each sent chain the device has written back,
    /// oldest first, and the index just after its last descriptor; stops at the first
    /// chain not written back.
    #[inline(always)]
    pub fn tx_completed(&self, mut done: impl FnMut(u64, u32)) {
        let st = self.st();
        let mask = st.size - 1;
        let (next, mut i) = (st.next, st.last);
        while i != next {
            let s = *self.slot(i);
            if s != 0 {
                let d = self.desc(i);
                // SAFETY: a descriptor of our ring; the device sets DD when done with it.
                let hi = unsafe { std::ptr::read_volatile(&(*d).hi) };
                if hi & TXD_STAT_DD == 0 {
                    return;
                }
                done(s, (i + 1) & mask);
            }
            i = (i + 1) & mask;
        }
    }

    /// TX, on a fast-free ring (each packet one descriptor): the oldest slot not yet freed
    /// and how many packets from it the device has sent, when they are `max` (or all the
    /// ring holds, or all up to its end, when fewer). The device sends in order: a run is
    /// done when its last descriptor is written back. None while it is not.
    #[inline(always)]
    pub fn tx_completed_run(&self, max: u32) -> Option<(u32, u32)> {
        let st = self.st();
        let from = st.last;
        let n = (st.next.wrapping_sub(from) & (st.size - 1))
            .min(st.size - from)
            .min(max);
        if n == 0 {
            return None;
        }
        // SAFETY: a descriptor of our ring; the device sets DD when done with it.
        let hi = unsafe { std::ptr::read_volatile(&(*self.desc(from + n - 1)).hi) };
        (hi & TXD_STAT_DD != 0).then_some((from, n))
    }

    /// TX: whether sent packets are freed without the checks (see
    /// `RingState::fast_free`), set as the queue starts (its
    /// ring is empty).
    pub fn tx_set_fast_free(&self, on: bool) {
        self.st().fast_free = if on { ANY_POOL } else { 0 };
    }

    /// TX, fast free: `m`, about to be sent, does not match the pool the ring recorded.
    /// The first packet's pool becomes the ring's; any other packet breaks the promise and
    /// ends fast free for the queue (logged). Returns the ring's new word.
    #[cold]
    fn tx_fast_free_mismatch(&self, m: &Mbuf) -> u64 {
        let st = self.st();
        let now = match m.fast_free_pool() {
            Some(pool) if st.fast_free == ANY_POOL => pool,
            _ => {
                log::warn!(
                    "TX ring at IOVA {:#x}: {m:?} (reference count {}) breaks the MBUF_FAST_FREE promise of one segment, one reference and one pool: the queue frees with the checks until it is started again",
                    self.iova,
                    m.refcnt()
                );
                0
            }
        };
        st.fast_free = now;
        eal::store_point!("intel.tx.fast_free");
        now
    }

    /// TX: the words of `n` slots from `from` (not past the ring's end), as mbuf addresses.
    fn slot_words(&self, from: u32, n: u32) -> *const [usize] {
        // SAFETY: from < size: inside the slot array (the pointer keeps the whole array's
        // provenance, which a reference to one slot would not).
        let at = unsafe { self.slots.add(from as usize) };
        std::ptr::slice_from_raw_parts(at as *const usize, n as usize)
    }

    /// TX: writes the one descriptor of single-segment packet `m` at `i` and names it in
    /// that slot (the caller gives the ring its ownership).
    #[inline(always)]
    fn tx_write_single(&self, i: u32, m: &Mbuf) {
        self.tx_write(i, m.data_iova(), m.data_len() as u32, true, m.pkt_len());
        *self.slot(i) = m.addr() as u64;
        eal::store_point!("intel.tx.slot");
    }

    /// TX: writes data descriptor `i`: `len` bytes at `iova`, `paylen` (the frame's length
    /// in its first descriptor, else 0), and end of packet with a status report on its last.
    #[inline(always)]
    pub fn tx_write(&self, i: u32, iova: u64, len: u32, last: bool, paylen: u32) {
        let mut cmd = len as u64 | TXD_DTYP_DATA | TXD_CMD_DEXT | TXD_CMD_IFCS;
        if last {
            cmd |= TXD_CMD_EOP | TXD_CMD_RS;
        }
        let d = self.desc(i);
        // SAFETY: a free descriptor of our ring (the caller counted it), not the device's.
        unsafe {
            std::ptr::write_volatile(&mut (*d).lo, iova);
            std::ptr::write_volatile(
                &mut (*d).hi,
                cmd | (paylen as u64) << (32 + TXD_PAYLEN_SHIFT),
            );
        }
    }

    /// TX: descriptors free for new chains (one stays unused, so that a full ring is not
    /// mistaken for an empty one).
    #[inline(always)]
    pub fn tx_free(&self) -> u32 {
        let st = self.st();
        st.last.wrapping_sub(st.next).wrapping_sub(1) & (st.size - 1)
    }
}

/// A TX queue taken by this process.
pub struct IntelTx {
    z: RingZone,
    tail: *mut u32,
    done: Vec<Mbuf>,
    /// The pool fast free last went to, found once by its address.
    fast_pool: Option<PktmbufPool>,
    _bar: Arc<Bar>,
}

// SAFETY: as for IntelRx.
unsafe impl Send for IntelTx {}

impl IntelTx {
    /// A handle to TX ring `z`, whose tail register is in `bar`.
    pub fn new(z: RingZone, bar: Arc<Bar>) -> IntelTx {
        IntelTx {
            tail: bar.ptr(z.st().tail_reg as usize) as *mut u32,
            done: Vec::with_capacity(z.size() as usize),
            fast_pool: None,
            z,
            _bar: bar,
        }
    }

    /// Frees the chains whose last descriptor the device has written back, a batch at a
    /// time, each batch back in the pool before the ring forgets it (see
    /// `mbuf::free_then_forget`; [`RingZone::forget_freed`] repairs a poller killed in
    /// between); without the checks on a fast-free ring.
    #[inline]
    fn clean(&mut self) {
        let fast = self.z.st().fast_free;
        if fast > ANY_POOL && self.clean_fast(fast) {
            return;
        }
        self.clean_checked();
    }

    /// Frees the sent packets of a fast-free ring whose pool is at `pool`, runs of
    /// [`FREE_BATCH`] straight from the slots; false when this lcore's cache could not
    /// take a run (the checked clean frees the rest).
    #[inline]
    fn clean_fast(&mut self, pool: u64) -> bool {
        let p = match self.fast_pool {
            Some(p) if p.addr() == pool => p,
            // SAFETY: the ring recorded the pool of an mbuf it sent: a live pool.
            _ => match unsafe { PktmbufPool::from_addr(pool) } {
                Some(p) => *self.fast_pool.insert(p),
                None => return false,
            },
        };
        let z = self.z;
        let mask = z.size() - 1;
        while let Some((from, n)) = z.tx_completed_run(FREE_BATCH as u32) {
            let forget = || z.forget(from, (from + n) & mask);
            // SAFETY: on a fast-free ring each slot from the oldest not freed holds a packet
            // of `p` with one segment and one reference (tx_burst checked each); the ring
            // owns them.
            if !unsafe { mbuf::fast_free_then_forget(&p, z.slot_words(from, n), forget) } {
                return false;
            }
        }
        true
    }

    /// [`clean`](Self::clean) with the checks: any chain, any pool.
    #[inline]
    fn clean_checked(&mut self) {
        let z = self.z;
        // `from` is the oldest slot not yet forgotten, `last` just after the newest chain
        // taken.
        let mut from = z.st().last;
        let mut last = from;
        let done = &mut self.done;
        z.tx_completed(|s, after| {
            // SAFETY: the slot of a chain's last descriptor holds its head mbuf.
            done.push(unsafe { Mbuf::from_addr(s as usize) });
            last = after;
            if done.len() == mbuf::FREE_BATCH {
                let n = done.len();
                mbuf::free_then_forget(done, n, || z.forget(from, last));
                from = last;
            }
        });
        if !self.done.is_empty() {
            let n = self.done.len();
            mbuf::free_then_forget(&mut self.done, n, || z.forget(from, last));
        }
    }
}

impl TxBurst for IntelTx {
    #[inline]
    fn tx_burst(&mut self, pkts: &mut Vec<Mbuf>) -> usize {
        self.clean();
        let st = self.z.st();
        let (sent, i) = match st.fast_free {
            pool if pool > ANY_POOL => self.write_fast(pkts, pool),
            _ => self.write_checked(pkts),
        };
        if sent == 0 {
            return 0;
        }
        eal::fault_point!("intel.tx.written");
        st.next = i;
        eal::store_point!("intel.tx.next");
        write_tail(self.tail, i);
        eal::store_point!("intel.tx.tail");
        sent
    }

    fn tx_mark(&self) -> Option<u32> {
        Some(self.z.st().next)
    }

    fn done_cleanup(&mut self) -> usize {
        self.clean();
        // A poller that died between storing `next` and writing the tail register left
        // chains the device was not told of; telling it again is harmless.
        write_tail(self.tail, self.z.st().next);
        self.z.mbufs_held() as usize
    }
}

impl IntelTx {
    /// Writes the descriptors of the packets at the front of `pkts` that fit, chains
    /// included, and takes them from the vector (the ring's slots own them); returns how
    /// many, and the index after the last descriptor, for the caller to commit.
    #[inline]
    fn write_checked(&self, pkts: &mut Vec<Mbuf>) -> (usize, u32) {
        let st = self.z.st();
        let mask = st.size - 1;
        let mut free = self.z.tx_free() as usize;
        let mut fast = st.fast_free;
        let mut sent = 0;
        for m in pkts.iter() {
            let segs = m.nb_segs() as usize;
            if segs > free {
                break;
            }
            if fast != 0 && m.fast_free_pool() != Some(fast) {
                fast = self.z.tx_fast_free_mismatch(m);
            }
            free -= segs;
            sent += 1;
        }
        let mut i = st.next;
        for m in pkts.drain(..sent) {
            let segs = m.nb_segs();
            if segs == 1 {
                // One descriptor: the usual frame, without the segment walk.
                self.z.tx_write_single(i, &m);
                let _ = m.into_addr();
                i = (i + 1) & mask;
                continue;
            }
            for (k, (iova, len)) in m.segment_iovas().enumerate() {
                let last = k + 1 == segs as usize;
                // The frame's length goes in its first descriptor (olinfo_status.PAYLEN).
                let paylen = if k == 0 { m.pkt_len() } else { 0 };
                self.z.tx_write(i, iova, len, last, paylen);
                if last {
                    *self.z.slot(i) = m.addr() as u64;
                    eal::store_point!("intel.tx.slot");
                }
                i = (i + 1) & mask;
            }
            // The ring owns the chain now; its last slot gives it back.
            let _ = m.into_addr();
        }
        (sent, i)
    }

    /// [`write_checked`](Self::write_checked) on a fast-free ring whose pool is at `pool`:
    /// one descriptor per packet, each checked against the promise as it is written. The
    /// first that breaks it ends fast free ([`RingZone::tx_fast_free_mismatch`]) and stays
    /// in the vector with those after it, for the next burst to send with the checks.
    #[inline]
    fn write_fast(&self, pkts: &mut Vec<Mbuf>, pool: u64) -> (usize, u32) {
        let z = self.z;
        let mask = z.size() - 1;
        let room = (z.tx_free() as usize).min(pkts.len());
        let mut i = z.st().next;
        let mut sent = 0;
        for m in &pkts[..room] {
            if m.fast_free_pool() != Some(pool) {
                z.tx_fast_free_mismatch(m);
                break;
            }
            z.tx_write_single(i, m);
            i = (i + 1) & mask;
            sent += 1;
        }
        // The ring's slots own them now.
        pkts.drain(..sent).for_each(|m| {
            let _ = m.into_addr();
        });
        (sent, i)
    }
}

#[cfg(test)]
mod tests {
    //! Property tests: a fake device mixing honest write-backs with lies, against a ring in
    //! plain memory whose slots hold plain words instead of mbufs. They cover the ring's
    //! own TX steps (`tx_completed` and the fast-free runs of `tx_completed_run`,
    //! `forget`); the mbuf side of the burst (frees) is not in them.
    use super::super::tests::Mem;
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashSet;

    #[derive(Clone, Debug)]
    enum TxStep {
        /// The application sends chains of these many segments.
        Send { segs: Vec<u8> },
        /// The device sends its next `n` descriptors, writing DD into those with RS.
        Complete { n: u8 },
        /// DD anywhere: on a descriptor not posted, the middle of a chain, a chain not yet sent.
        Dd { at: u16 },
        /// The driver frees what was written back.
        Clean,
    }

    fn tx_steps() -> impl Strategy<Value = TxStep> {
        prop_oneof![
            4 => proptest::collection::vec(1u8..4, 1..6).prop_map(|segs| TxStep::Send { segs }),
            4 => (1u8..8).prop_map(|n| TxStep::Complete { n }),
            2 => any::<u16>().prop_map(|at| TxStep::Dd { at }),
            3 => Just(TxStep::Clean),
        ]
    }

    struct Tx {
        m: Mem,
        mask: u32,
        head: u32,
        posted: HashSet<u64>,
        freed: HashSet<u64>,
        next_word: u64,
        /// Fast free: every chain one descriptor, freed in runs.
        fast: bool,
    }

    impl Tx {
        fn new(size: u32, fast: bool) -> Tx {
            Tx {
                m: Mem::ring(size),
                mask: size - 1,
                head: 0,
                posted: HashSet::new(),
                freed: HashSet::new(),
                next_word: 1,
                fast,
            }
        }

        /// As `IntelTx::tx_burst`, with slot words for mbufs; returns how many it took.
        fn send(&mut self, segs: &[u8]) -> usize {
            let mut free = self.m.z.tx_free() as usize;
            let fit = segs
                .iter()
                .take_while(|&&s| {
                    let ok = s as usize <= free;
                    free -= if ok { s as usize } else { 0 };
                    ok
                })
                .count();
            let st = self.m.z.st();
            let mut i = st.next;
            for &n in &segs[..fit] {
                for k in 0..n {
                    let last = k + 1 == n;
                    self.m.z.tx_write(i, 0x1000, 60, last, 0);
                    if last {
                        *self.m.z.slot(i) = self.next_word;
                        self.posted.insert(self.next_word);
                        self.next_word += 1;
                    }
                    i = (i + 1) & self.mask;
                }
            }
            st.next = i;
            fit
        }

        /// As `IntelTx::clean_fast`, with slot words for mbufs.
        fn clean_fast(&mut self) {
            let z = self.m.z;
            while let Some((from, n)) = z.tx_completed_run(FREE_BATCH as u32) {
                assert!(n <= z.size() - from, "a run past the ring's end");
                // SAFETY: n slots from `from`, inside the ring (checked above).
                let words: Vec<u64> = unsafe { &*z.slot_words(from, n) }
                    .iter()
                    .map(|&w| w as u64)
                    .collect();
                z.forget(from, (from + n) & self.mask);
                for w in words {
                    assert!(self.posted.remove(&w), "word {w} freed but not posted");
                    assert!(self.freed.insert(w), "word {w} freed twice");
                }
            }
        }

        /// As `IntelTx::clean_checked`, with slot words for mbufs.
        fn clean(&mut self) {
            let z = self.m.z;
            let from = z.st().last;
            let mut last = from;
            let mut done = vec![];
            z.tx_completed(|s, after| {
                done.push(s);
                last = after;
            });
            z.forget(from, last);
            for w in done {
                assert!(self.posted.remove(&w), "word {w} freed but not posted");
                assert!(self.freed.insert(w), "word {w} freed twice");
            }
        }

        fn step(&mut self, s: &TxStep) {
            match s {
                TxStep::Send { segs } => {
                    let before = self.m.z.tx_free();
                    let one = vec![1; segs.len()];
                    let took = self.send(if self.fast { &one } else { segs });
                    if before == 0 {
                        assert_eq!(took, 0, "a full ring took packets");
                    }
                }
                TxStep::Complete { n } => {
                    for _ in 0..*n {
                        if self.head == self.m.z.st().next {
                            break;
                        }
                        let hi = self.m.hi(self.head);
                        if hi & TXD_CMD_RS != 0 {
                            self.m.set_hi(self.head, hi | TXD_STAT_DD);
                        }
                        self.head = (self.head + 1) & self.mask;
                    }
                }
                TxStep::Dd { at } => {
                    let i = *at as u32 & self.mask;
                    self.m.set_hi(i, self.m.hi(i) | TXD_STAT_DD);
                }
                TxStep::Clean if self.fast => self.clean_fast(),
                TxStep::Clean => self.clean(),
            }
            assert_eq!(self.m.z.mbufs_held() as usize, self.posted.len(), "slots");
            assert_eq!(
                self.posted.len() + self.freed.len(),
                self.next_word as usize - 1,
                "a word neither posted nor freed"
            );
            assert!(self.m.canary_intact(), "written past the ring");
        }
    }

    #[test]
    fn a_fast_free_run_waits_for_its_last_descriptor_and_stops_at_the_ring_end() {
        let mut tx = Tx::new(8, true);
        assert_eq!(tx.send(&[1; 5]), 5);
        tx.step(&TxStep::Complete { n: 4 });
        assert_eq!(tx.m.z.tx_completed_run(32), None, "the fifth is not sent");
        tx.step(&TxStep::Complete { n: 1 });
        assert_eq!(tx.m.z.tx_completed_run(32), Some((0, 5)));
        assert_eq!(tx.m.z.tx_completed_run(2), Some((0, 2)), "at most max");
        tx.step(&TxStep::Clean);
        assert_eq!(tx.freed.len(), 5);
        // Slots 5 to 7, then 0 to 2: the run ends with the ring.
        assert_eq!(tx.send(&[1; 6]), 6);
        tx.step(&TxStep::Complete { n: 6 });
        assert_eq!(tx.m.z.tx_completed_run(32), Some((5, 3)));
        tx.step(&TxStep::Clean);
        assert_eq!(tx.freed.len(), 11);
        assert!(tx.posted.is_empty());
        assert_eq!(tx.m.z.tx_completed_run(32), None, "nothing left");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(30_000))]

        /// Whatever DD the device writes, each sent chain is freed once, only after it
        /// was posted, whether freed chain by chain or in fast-free runs; a device that
        /// stops completing fills the ring and sends then take nothing; honest completions
        /// free the rest.
        #[test]
        fn tx_frees_each_posted_chain_once(
            size_log in 3u32..6,
            steps in proptest::collection::vec(tx_steps(), 1..40),
            fast in any::<bool>(),
        ) {
            let mut tx = Tx::new(1 << size_log, fast);
            for s in &steps {
                tx.step(s);
            }
            // A device whose lies freed chains early has lost count: it sends again from
            // the oldest chain the ring holds.
            tx.head = tx.m.z.st().last;
            tx.step(&TxStep::Complete { n: u8::MAX });
            tx.step(&TxStep::Clean);
            prop_assert!(tx.posted.is_empty(), "never freed: {:?}", tx.posted);
        }
    }
}
