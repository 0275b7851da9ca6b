//! Per-queue counters in the port record, each written by the queue's one poller: packets,
//! bytes and errors with the in-burst flag a stop waits on, and the count of packets a TX
//! queue took, which survives a poller killed inside a burst.

use super::PortState;
use crate::mbuf::Mbuf;
use std::sync::atomic::{compiler_fence, AtomicU32, AtomicU64, Ordering};

/// How many packets a TX queue took, for drivers that are done with a packet when its
/// burst returns (TAP, null): a poller killed inside a burst leaves each packet either
/// uncounted and still the caller's, or counted and back in its pool (see
/// `mbuf::free_then_forget`; [`TakenCounter::recover`] counts those it had put back).
#[derive(Clone, Copy)]
pub struct TakenCounter(pub(super) &'static TakenWords);

/// A queue's [`TakenCounter`] in its port's record.
#[repr(C)]
#[derive(Debug, Default)]
pub(super) struct TakenWords {
    count: AtomicU32,
    /// The count before the last burst that took packets, and the first of them.
    before: AtomicU32,
    first: AtomicU64,
}

impl TakenCounter {
    /// The count now, as [`TxBurst::tx_mark`](super::TxBurst::tx_mark).
    pub fn mark(&self) -> u32 {
        self.0.count.load(Ordering::Acquire)
    }
    /// Packets taken since the count was `mark`, as
    /// [`PortDriver::tx_taken_since`](super::PortDriver::tx_taken_since).
    pub fn since(&self, mark: u32) -> u32 {
        self.mark().wrapping_sub(mark)
    }
    /// Frees the first `n` of `pkts` and counts them as taken (the queue's poller).
    #[inline]
    pub fn free_taken(&self, pkts: &mut Vec<Mbuf>, n: usize) {
        let w = self.0;
        // One poller per queue: a plain add.
        let before = w.count.load(Ordering::Relaxed);
        if n > 0 {
            // Relaxed: the put that pins the packets publishes these with them.
            w.before.store(before, Ordering::Relaxed);
            w.first.store(pkts[0].addr() as u64, Ordering::Relaxed);
        }
        crate::mbuf::free_then_forget(pkts, n, || {
            w.count
                .store(before.wrapping_add(n as u32), Ordering::Release)
        });
    }

    /// After the queue's poller died inside a burst: counts the packets it had put back
    /// and not yet counted. Returns how many.
    pub fn recover(&self) -> u32 {
        let w = self.0;
        let first = w.first.load(Ordering::Acquire) as usize;
        let before = w.before.load(Ordering::Acquire);
        if first == 0 || w.count.load(Ordering::Acquire) != before {
            return 0;
        }
        // SAFETY: `first` was the first packet of the queue's last burst, an mbuf.
        let Some(pin) = (unsafe { crate::mbuf::dead_pin_holding(first) }) else {
            return 0;
        };
        if pin.objs.first() != Some(&first) {
            return 0;
        }
        let n = pin.objs.len() as u32;
        w.count.store(before.wrapping_add(n), Ordering::Release);
        pin.unpin();
        n
    }
}

/// Counters of one queue, and whether its poller is inside a burst: written only by the
/// queue's poller, on a cache line of their own (other queues' pollers run elsewhere).
#[repr(C, align(64))]
#[derive(Debug, Default)]
pub struct QueueCounters {
    /// Packets counted.
    pub packets: AtomicU64,
    /// Bytes counted.
    pub bytes: AtomicU64,
    /// RX: packets the driver dropped (no room); TX: packets that failed.
    pub errors: AtomicU64,
    /// 1 while the poller is inside a burst: `Port::stop` waits for 0.
    pub(super) in_burst: AtomicU32,
}

impl QueueCounters {
    /// Adds to counters that only this thread writes: a plain load and store, no lock prefix.
    #[inline]
    pub(super) fn add(&self, packets: u64, bytes: u64) {
        self.packets.store(
            self.packets.load(Ordering::Relaxed) + packets,
            Ordering::Relaxed,
        );
        self.bytes.store(
            self.bytes.load(Ordering::Relaxed) + bytes,
            Ordering::Relaxed,
        );
    }
    /// Marks the start of a burst; whether the port is started (if not, the burst is over).
    #[inline(always)]
    pub(super) fn enter_burst(&self, state: &AtomicU32) -> bool {
        self.in_burst.store(1, Ordering::Relaxed);
        // No fence instruction: `Port::stop` stores the new state and runs a global
        // membarrier before it reads this flag, so either it sees the flag or this load sees
        // the port stopped. Only the compiler must keep the store before the load.
        compiler_fence(Ordering::SeqCst);
        // Acquire: a port the primary (re)started is seen with the queues it set up.
        if state.load(Ordering::Acquire) == PortState::Started as u32 {
            return true;
        }
        self.leave_burst();
        false
    }

    /// Marks the end of a burst: what it did to the queue happens before a stop.
    #[inline(always)]
    pub(super) fn leave_burst(&self) {
        self.in_burst.store(0, Ordering::Release);
    }

    pub(super) fn snapshot(&self) -> [u64; 3] {
        [
            self.packets.load(Ordering::Relaxed),
            self.bytes.load(Ordering::Relaxed),
            self.errors.load(Ordering::Relaxed),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ethdev::testing;

    #[test]
    fn queue_counters_add_and_snapshot() {
        let c = QueueCounters::default();
        c.add(3, 180);
        c.add(2, 120);
        c.errors.store(4, Ordering::Relaxed);
        assert_eq!(c.snapshot(), [5, 300, 4]);
    }

    #[test]
    fn a_burst_enters_only_a_started_port_and_leaves_its_flag_down() {
        let c = QueueCounters::default();
        let state = AtomicU32::new(PortState::Started as u32);
        assert!(c.enter_burst(&state));
        assert_eq!(c.in_burst.load(Ordering::Relaxed), 1, "a stop waits for it");
        c.leave_burst();
        assert_eq!(c.in_burst.load(Ordering::Relaxed), 0);
        for s in [PortState::Stopped, PortState::Configured, PortState::Unused] {
            state.store(s as u32, Ordering::Relaxed);
            assert!(!c.enter_burst(&state), "{s:?}");
            assert_eq!(c.in_burst.load(Ordering::Relaxed), 0, "{s:?}");
        }
    }

    #[test]
    fn taken_since_a_mark_wraps_with_the_count() {
        let rec = testing::record();
        let t = rec.tx_taken(1);
        assert_eq!(t.mark(), 0);
        rec.tx_taken[1].count.store(5, Ordering::Relaxed);
        assert_eq!(t.mark(), 5);
        assert_eq!(t.since(3), 2);
        assert_eq!(t.since(5), 0);
        rec.tx_taken[1].count.store(1, Ordering::Relaxed);
        assert_eq!(t.since(u32::MAX), 2, "the count wrapped");
        assert_eq!(rec.tx_taken(0).mark(), 0, "each queue has its own count");
    }

    #[test]
    fn freeing_no_packets_counts_and_records_nothing() {
        let rec = testing::record();
        let t = rec.tx_taken(0);
        rec.tx_taken[0].count.store(9, Ordering::Relaxed);
        t.free_taken(&mut Vec::new(), 0);
        let w = &rec.tx_taken[0];
        assert_eq!(t.mark(), 9);
        assert_eq!(w.before.load(Ordering::Relaxed), 0);
        assert_eq!(w.first.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn recover_counts_nothing_without_an_uncounted_burst() {
        let rec = testing::record();
        let t = rec.tx_taken(2);
        // No burst took packets yet.
        assert_eq!(t.recover(), 0);
        assert_eq!(t.mark(), 0);
        // The last burst was counted: the count moved past its `before`.
        let w = &rec.tx_taken[2];
        w.before.store(10, Ordering::Relaxed);
        w.first.store(0x1000, Ordering::Relaxed);
        w.count.store(14, Ordering::Relaxed);
        assert_eq!(t.recover(), 0);
        assert_eq!(t.mark(), 14);
    }
}
