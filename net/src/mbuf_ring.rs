//! A ring of mbufs: an [`eal::ring::Ring`] in shared memory whose words are the addresses
//! of the mbufs it holds, handing out and taking owned [`Mbuf`]s, so that the processes of
//! the group pass packets to each other without `unsafe` of their own.
//!
//! The invariant: a ring used as an `MbufRing` only ever holds mbuf addresses, each put
//! there by this type (in this process or another of the group) or by code that gave up
//! the mbuf as this type does, and the ring owns those mbufs until a dequeue hands them
//! out. The ring's single-producer and single-consumer rules (its flags, the `sc_` calls)
//! must hold as for any ring: broken, they would hand one mbuf out twice.
//!
//! Underneath are the ring calls of raw words, so a crash behaves as it does on a raw
//! ring: what a dead consumer claimed with [`MbufRing::sc_dequeue_start`] stays in the
//! ring, where its repairer finds it ([`MbufRing::claims`]).

use crate::mbuf::Mbuf;
use eal::ring::{Ring, RingFlags};
use std::mem::ManuallyDrop;

/// Most mbufs one call moves: a burst goes through an array of this many words on the
/// stack, as the raw callers did.
pub const MAX_BURST: usize = 64;

/// A handle to a ring of mbufs; the same ring may be used from every process of the group.
#[derive(Clone, Copy, Debug)]
pub struct MbufRing {
    ring: Ring,
}

/// The mbuf at `addr`, a word just dequeued or claimed from an `MbufRing` (only for those).
#[inline(always)]
fn owned(addr: usize) -> Mbuf {
    // SAFETY: a ring used as an MbufRing only ever holds addresses of mbufs whose owner gave
    // them up to the ring (the module's invariant), and the dequeue or claim that read this
    // word gave it to this caller alone (the ring's consumer rules): the caller now holds
    // the mbuf's reference.
    unsafe { Mbuf::from_addr(addr) }
}

impl MbufRing {
    /// Creates a ring of `count` entries (see [`Ring::create`]) that will hold mbufs.
    pub fn create(name: &str, count: u32, flags: RingFlags) -> eal::Result<MbufRing> {
        Ring::create(name, count, flags).map(|ring| MbufRing { ring })
    }

    /// Finds a ring of mbufs created by any process of the group.
    pub fn lookup(name: &str) -> eal::Result<MbufRing> {
        Ring::lookup(name).map(|ring| MbufRing { ring })
    }

    /// The address of the ring's header, the same in every process (see [`Ring::addr`]).
    pub fn addr(&self) -> u64 {
        self.ring.addr()
    }

    /// Frees the ring's memory (not the mbufs still in it). Every process must have
    /// stopped using it.
    pub fn free(self) -> eal::Result<()> {
        self.ring.free()
    }

    /// The ring's name.
    pub fn name(&self) -> &str {
        self.ring.name()
    }
    /// Mbufs in the ring now (a snapshot).
    pub fn count(&self) -> u32 {
        self.ring.count()
    }
    /// Whether the ring holds no mbuf now.
    pub fn is_empty(&self) -> bool {
        self.ring.is_empty()
    }
    /// Entries claimed and not yet published, by producers and by consumers (see
    /// [`Ring::claims_in_flight`]).
    pub fn claims_in_flight(&self) -> (u32, u32) {
        self.ring.claims_in_flight()
    }
    /// How many mbufs producers have published, modulo 2^32 (see [`Ring::enqueued_count`]).
    pub fn enqueued_count(&self) -> u32 {
        self.ring.enqueued_count()
    }
    /// Gives up what a dead producer claimed and never published (those mbufs stay in
    /// use); see [`Ring::abandon_enqueue_claims`].
    pub fn abandon_enqueue_claims(&self) -> u32 {
        self.ring.abandon_enqueue_claims()
    }
    /// Gives up what a dead consumer claimed and never released: the next consumer takes
    /// those mbufs again; see [`Ring::abandon_dequeue_claims`].
    pub fn abandon_dequeue_claims(&self) -> u32 {
        self.ring.abandon_dequeue_claims()
    }

    /// Moves as many mbufs from the front of `pkts` into the ring as fit, at most
    /// [`MAX_BURST`]; those leave the vector, the rest stay. Returns how many.
    ///
    /// Their holder words are left as they are: what a ring holds is the ring's, whoever
    /// the word names (`mbuf::reclaim_held_by` looks in every ring), and a consumer takes
    /// the hold before the ring lets an mbuf go.
    #[inline(always)]
    pub fn enqueue_burst(&self, pkts: &mut Vec<Mbuf>) -> usize {
        let k = pkts.len().min(MAX_BURST);
        let mut addrs = [0usize; MAX_BURST];
        for (a, m) in addrs.iter_mut().zip(pkts.iter()) {
            *a = m.addr();
        }
        let n = self.ring.enqueue_burst(&addrs[..k]);
        // The ring owns the enqueued ones now.
        for m in pkts.drain(..n) {
            m.into_addr();
        }
        n
    }

    /// Dequeues up to `max` mbufs (at most [`MAX_BURST`]) and hands each to `f`, oldest
    /// first; returns how many.
    #[inline(always)]
    pub fn dequeue_burst(&self, max: usize, f: impl FnMut(Mbuf)) -> usize {
        self.take(max, f, |r, addrs, hold| r.dequeue_burst_with(addrs, hold))
    }

    /// As [`dequeue_burst`](Self::dequeue_burst), as the ring's only consumer.
    #[inline(always)]
    pub fn sc_dequeue_burst(&self, max: usize, f: impl FnMut(Mbuf)) -> usize {
        self.take(max, f, |r, addrs, hold| {
            r.sc_dequeue_burst_with(addrs, hold)
        })
    }

    /// Claims up to `max` mbufs (at most [`MAX_BURST`]) as the ring's only consumer and
    /// hands each to `f`, oldest first (see [`Ring::sc_dequeue_start`]); returns how many.
    /// They are the caller's to send on, but the ring still names them until
    /// [`sc_dequeue_finish`](Self::sc_dequeue_finish): should the caller die before, whoever
    /// takes its place finds them with [`claims`](Self::claims). So the caller must free
    /// none of them before finishing, or that repairer could free them again.
    #[inline(always)]
    pub fn sc_dequeue_start(&self, max: usize, f: impl FnMut(Mbuf)) -> usize {
        self.take(max, f, |r, addrs, hold| {
            let n = r.sc_dequeue_start(addrs);
            hold(&addrs[..n]);
            n
        })
    }

    /// Ends the claim of [`sc_dequeue_start`](Self::sc_dequeue_start) (or a dead
    /// consumer's, by whoever took its place): the first `n` claimed mbufs leave the ring,
    /// the rest are given back for the next dequeue.
    #[inline]
    pub fn sc_dequeue_finish(&self, n: u32) {
        self.ring.sc_dequeue_finish(n)
    }

    /// What the consumer claimed with [`sc_dequeue_start`](Self::sc_dequeue_start) and did
    /// not finish with, oldest first: its hand, for whoever takes the place of a consumer
    /// that died or stopped with mbufs in hand, while no consumer works on the ring. They
    /// stay in the ring until [`sc_dequeue_finish`](Self::sc_dequeue_finish). Each comes as
    /// `ManuallyDrop`: the consumer may have handed some on (to a TX queue) before it
    /// stopped, and those are not the ring's to free; take (`ManuallyDrop::into_inner`)
    /// only those known to be left.
    pub fn claims(&self) -> Vec<ManuallyDrop<Mbuf>> {
        self.ring
            .dequeue_claims()
            .into_iter()
            .map(|a| ManuallyDrop::new(owned(a)))
            .collect()
    }

    /// Reads up to `max` words with `op` into an array on the stack and hands each out as
    /// an mbuf: one pass over the burst after the ring's copy. `op` calls its hold step on
    /// what it took before the ring lets go of it, so that this process holds those mbufs
    /// by the time they leave the ring.
    #[inline(always)]
    fn take(
        &self,
        max: usize,
        mut f: impl FnMut(Mbuf),
        op: impl FnOnce(&Ring, &mut [usize], fn(&[usize])) -> usize,
    ) -> usize {
        let mut addrs = [0usize; MAX_BURST];
        let n = op(&self.ring, &mut addrs[..max.min(MAX_BURST)], hold_all);
        for &a in &addrs[..n] {
            f(owned(a));
        }
        n
    }
}

/// Makes this process the holder of the mbufs at `addrs`, which it is taking from a ring.
#[inline(always)]
fn hold_all(addrs: &[usize]) {
    for &a in addrs {
        // SAFETY: words of an MbufRing are mbuf addresses (the module's invariant).
        unsafe { crate::mbuf::take_hold(a) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mbuf::HEADER_SIZE;
    use eal::ring::LocalRing;

    /// Zeroed memory shaped as mbuf headers (no pool, so no EAL): the tests only move them
    /// and read their port, and give every one back with `into_addr`, never dropping one.
    #[repr(C, align(64))]
    struct FakeHeader([u8; HEADER_SIZE]);

    struct Fakes {
        mem: Vec<FakeHeader>,
    }

    impl Fakes {
        fn new(n: usize) -> Fakes {
            Fakes {
                mem: (0..n).map(|_| FakeHeader([0; HEADER_SIZE])).collect(),
            }
        }
        /// Mbufs on the fake headers, mbuf `i` on port `i`.
        fn mbufs(&mut self) -> Vec<Mbuf> {
            let base = self.mem.as_mut_ptr();
            (0..self.mem.len())
                .map(|i| {
                    // SAFETY: a header-sized, 64-aligned block of our own, handed out once;
                    // zero is a valid header (no pool, no next segment).
                    let mut m = unsafe { Mbuf::from_addr(base.wrapping_add(i) as usize) };
                    m.set_port(i as u16);
                    m
                })
                .collect()
        }
    }

    fn ring(count: u32, flags: RingFlags) -> (LocalRing, MbufRing) {
        let local = LocalRing::new("mbufs", count, flags).expect("ring");
        let ring = MbufRing { ring: *local };
        (local, ring)
    }

    fn ports(pkts: &[Mbuf]) -> Vec<u16> {
        pkts.iter().map(Mbuf::port).collect()
    }

    fn give_back(pkts: &mut Vec<Mbuf>) {
        for m in pkts.drain(..) {
            m.into_addr();
        }
    }

    #[test]
    fn mbufs_go_through_in_order_and_what_does_not_fit_stays() {
        let (_mem, r) = ring(8, RingFlags::empty());
        let mut fakes = Fakes::new(10);
        let mut pkts = fakes.mbufs();
        let addrs: Vec<usize> = pkts.iter().map(Mbuf::addr).collect();
        assert_eq!(r.enqueue_burst(&mut pkts), 7, "capacity 7");
        assert_eq!(ports(&pkts), [7, 8, 9], "the rest stay, in order");
        assert_eq!(r.count(), 7);
        let mut out = Vec::new();
        assert_eq!(r.dequeue_burst(5, |m| out.push(m)), 5);
        assert_eq!(r.sc_dequeue_burst(100, |m| out.push(m)), 2);
        assert_eq!(r.dequeue_burst(100, |m| out.push(m)), 0);
        assert!(r.is_empty());
        assert_eq!(ports(&out), [0, 1, 2, 3, 4, 5, 6]);
        let back: Vec<usize> = out.iter().map(Mbuf::addr).collect();
        assert_eq!(back, addrs[..7]);
        give_back(&mut out);
        give_back(&mut pkts);
    }

    #[test]
    fn a_call_moves_at_most_max_burst() {
        let (_mem, r) = ring(256, RingFlags::empty());
        let mut fakes = Fakes::new(MAX_BURST + 10);
        let mut pkts = fakes.mbufs();
        assert_eq!(r.enqueue_burst(&mut pkts), MAX_BURST);
        assert_eq!(pkts.len(), 10);
        assert_eq!(r.enqueue_burst(&mut pkts), 10);
        let mut out = Vec::new();
        assert_eq!(r.dequeue_burst(usize::MAX, |m| out.push(m)), MAX_BURST);
        assert_eq!(r.dequeue_burst(usize::MAX, |m| out.push(m)), 10);
        assert_eq!(ports(&out), (0..MAX_BURST as u16 + 10).collect::<Vec<_>>());
        give_back(&mut out);
    }

    #[test]
    fn a_started_dequeue_stays_claimed_until_finished() {
        let (_mem, r) = ring(8, RingFlags::SP_ENQ | RingFlags::SC_DEQ);
        let mut fakes = Fakes::new(6);
        let mut pkts = fakes.mbufs();
        assert_eq!(r.enqueue_burst(&mut pkts), 6);
        let mut hand = Vec::new();
        assert_eq!(r.sc_dequeue_start(4, |m| hand.push(m)), 4);
        assert_eq!(ports(&hand), [0, 1, 2, 3]);
        // Still in the ring: a repairer would find the same mbufs, in the same order.
        assert_eq!(r.count(), 6);
        assert_eq!(r.claims_in_flight(), (0, 4));
        let claims = r.claims();
        let claimed: Vec<usize> = claims.iter().map(|m| m.addr()).collect();
        let held: Vec<usize> = hand.iter().map(Mbuf::addr).collect();
        assert_eq!(claimed, held);
        // Finishing 3 gives the 4th back for the next dequeue.
        r.sc_dequeue_finish(3);
        assert!(r.claims().is_empty());
        assert_eq!(r.count(), 3);
        let mut rest = Vec::new();
        assert_eq!(r.sc_dequeue_burst(8, |m| rest.push(m)), 3);
        assert_eq!(ports(&rest), [3, 4, 5]);
        give_back(&mut hand);
        give_back(&mut rest);
    }
}
