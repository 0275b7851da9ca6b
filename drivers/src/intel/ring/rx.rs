//! RX on the shared rings: every descriptor holds an empty mbuf; the device writes a frame
//! into it and writes the descriptor back with DD (and EOP on a frame's last buffer). The
//! burst takes done descriptors in order, four at a time while each of the four is a whole
//! frame (as DPDK's vector paths; the first group that is not goes one by one, with every
//! check), and refills the emptied slots in bulk once `RX_FREE_THRESH` are empty. A frame
//! carries the RSS hash only when the write-back's RSS type says the device computed one.
//!
//! The device is not trusted ([`RxLie`]): an RX write-back whose length is 0 or beyond the
//! buffer size the device was given drops its frame; DD on the one armed descriptor the
//! device was not given (the tail) is cleared by arming it again.

use super::{write_tail, RingZone};
use crate::intel::regs::*;
use eal::vfio::Bar;
use net::ethdev::{DeviceRecord, Error, Result, RxBurst};
use net::{Mbuf, PktmbufPool};
use std::sync::atomic::{fence, Ordering};
use std::sync::Arc;

/// Refill the RX ring once this many slots are empty.
const RX_FREE_THRESH: u32 = 32;

/// What an RX device can do wrong that the ring notices, each counted in the ring's header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RxLie {
    /// A write-back whose length is 0 or beyond the buffer: the frame is dropped.
    BadDescLen = 0,
    /// DD on the descriptor at the tail, which the device was not given: armed again.
    UnpostedDd = 1,
}

impl RxLie {
    /// Every kind, in counter order.
    pub const ALL: [RxLie; 2] = [RxLie::BadDescLen, RxLie::UnpostedDd];

    /// The xstat's name.
    pub fn name(self) -> &'static str {
        match self {
            RxLie::BadDescLen => "rx_bad_desc_len",
            RxLie::UnpostedDd => "rx_unposted_dd",
        }
    }
}

/// What [`RingZone::rx_poll`] found in an RX descriptor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RxDesc {
    /// Not written back: the device still has it (or it is the tail).
    NotDone,
    /// A buffer of `len` bytes, the frame's last when `eop`; its slot word, taken.
    Frame {
        /// The slot's word (the mbuf).
        slot: u64,
        /// Bytes the device wrote.
        len: u16,
        /// End of packet.
        eop: bool,
        /// The RSS hash (0: none).
        hash: u32,
    },
    /// A buffer whose length is a lie (counted); its slot word, taken, for the caller to
    /// drop with the rest of its frame.
    BadLen {
        /// The slot's word (the mbuf).
        slot: u64,
        /// End of packet.
        eop: bool,
    },
}

/// A whole frame (one buffer, EOP, a length the buffer holds) that
/// [`RingZone::rx_poll4`] took.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RxFrame {
    /// The slot's word (the mbuf).
    pub slot: u64,
    /// Bytes the device wrote.
    pub len: u16,
    /// The RSS hash (0: none).
    pub hash: u32,
}

/// The RSS hash of an RX write-back (`lo`, its first quadword), 0 when its RSS type says
/// the device computed none: the upper half then holds the IP identification and the
/// fragment checksum (RXCSUM.PCSD clear, as with one queue) or nothing, not a hash.
#[inline(always)]
fn rx_hash(lo: u64) -> u32 {
    if RSS_TYPES_HASHED >> (lo & RSS_TYPE_MASK) & 1 != 0 {
        (lo >> 32) as u32
    } else {
        0
    }
}

/// The length of an RX write-back (`hi`), and whether a buffer of `buf_len` bytes holds it
/// (0 bytes is a lie too).
#[inline(always)]
fn rx_len(hi: u64, buf_len: u32) -> (u32, bool) {
    let len = ((hi >> 32) & 0xffff) as u32;
    (len, len.wrapping_sub(1) < buf_len)
}

impl RingZone {
    /// How many lies of kind `lie` the device told this RX ring.
    pub fn lies(&self, lie: RxLie) -> u64 {
        self.st().lies[lie as usize].load(Ordering::Relaxed)
    }

    /// Zeroes the lie counters (xstats reset); each kind is still logged only once.
    pub fn reset_lies(&self) {
        for c in &self.st().lies {
            c.store(0, Ordering::Relaxed);
        }
    }

    /// Counts a lie and logs the first of its kind.
    #[cold]
    fn count_lie(&self, lie: RxLie, what: std::fmt::Arguments) {
        let st = self.st();
        let c = &st.lies[lie as usize];
        c.store(c.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
        let bit = 1u32 << lie as u32;
        if st.warned.fetch_or(bit, Ordering::Relaxed) & bit == 0 {
            log::warn!(
                "RX ring at IOVA {:#x}: the device {what} (counted as {}, logged once)",
                self.iova,
                lie.name()
            );
        }
    }

    /// RX: the tail and the buffer size, which [`rx_poll`](Self::rx_poll) checks against
    /// (read once per burst).
    #[inline(always)]
    pub fn rx_bounds(&self) -> (u32, u32) {
        let st = self.st();
        (st.last, st.buf_len)
    }

    /// RX: reads descriptor `i` (the next to take; `last` and `buf_len` from
    /// [`rx_bounds`](Self::rx_bounds)) and, when the device is done with it, takes its
    /// slot. DD on the tail is a lie: the descriptor is armed again with its buffer, at
    /// `iova(slot)`.
    #[inline(always)]
    pub fn rx_poll(
        &self,
        i: u32,
        (last, buf_len): (u32, u32),
        iova: impl Fn(u64) -> u64,
    ) -> RxDesc {
        let d = self.desc(i);
        // SAFETY: a descriptor of our ring; the device writes DD last.
        let hi = unsafe { std::ptr::read_volatile(&(*d).hi) };
        if hi & RXD_STAT_DD == 0 {
            return RxDesc::NotDone;
        }
        if i == last {
            self.rearm_tail(iova);
            return RxDesc::NotDone;
        }
        // Nothing of the descriptor or the buffer may be read before DD was seen.
        fence(Ordering::Acquire);
        // SAFETY: as above; the device is done with this descriptor.
        let lo = unsafe { std::ptr::read_volatile(&(*d).lo) };
        let slot = std::mem::take(self.slot(i));
        eal::store_point!("intel.rx.slot");
        let (len, fits) = rx_len(hi, buf_len);
        let eop = hi & RXD_STAT_EOP != 0;
        if !fits {
            self.count_lie(
                RxLie::BadDescLen,
                format_args!("wrote {len} bytes into descriptor {i}, whose buffer holds {buf_len}; frame dropped"),
            );
            return RxDesc::BadLen { slot, eop };
        }
        RxDesc::Frame {
            slot,
            len: len as u16,
            eop,
            hash: rx_hash(lo),
        }
    }

    /// RX: whether the device wrote descriptor `i` back (DD), before anything else of it is
    /// read: a poll that finds nothing stops at this one load.
    #[inline(always)]
    pub fn rx_written_back(&self, i: u32) -> bool {
        // SAFETY: a descriptor of our ring; the device writes DD last.
        unsafe { std::ptr::read_volatile(&(*self.desc(i)).hi) & RXD_STAT_DD != 0 }
    }

    /// RX: descriptors `i` to `i + 3` (`i` the next to take, `last` and `buf_len` as in
    /// [`rx_poll`](Self::rx_poll)) when the device wrote back all four, each a whole frame
    /// (EOP) of a length the buffer holds, and none is the tail nor past the ring's end:
    /// takes their slots, in order. None, with nothing read but their status, otherwise:
    /// `rx_poll` takes them one by one and sees any lie.
    #[inline(always)]
    pub fn rx_poll4(&self, i: u32, (last, buf_len): (u32, u32)) -> Option<[RxFrame; 4]> {
        let size = self.st().size;
        if last.wrapping_sub(i) & (size - 1) < 4 || i + 4 > size {
            return None;
        }
        let d = self.desc(i);
        // SAFETY: four descriptors of our ring (i + 4 <= size); the device writes DD last.
        let hi: [u64; 4] =
            std::array::from_fn(|k| unsafe { std::ptr::read_volatile(&(*d.add(k)).hi) });
        const DONE: u64 = RXD_STAT_DD | RXD_STAT_EOP;
        // One test of all four, no early exit.
        let whole = hi.iter().fold(true, |all, &h| {
            all & (h & DONE == DONE) & rx_len(h, buf_len).1
        });
        if !whole {
            return None;
        }
        // Nothing of the descriptors or the buffers may be read before DD was seen.
        fence(Ordering::Acquire);
        Some(std::array::from_fn(|k| {
            // SAFETY: as above; the device is done with these descriptors.
            let lo = unsafe { std::ptr::read_volatile(&(*d.add(k)).lo) };
            let slot = std::mem::take(self.slot(i + k as u32));
            eal::store_point!("intel.rx.slot");
            RxFrame {
                slot,
                len: rx_len(hi[k], buf_len).0 as u16,
                hash: rx_hash(lo),
            }
        }))
    }

    /// RX: the tail's descriptor, written back though the device was not given it: counted
    /// and armed again with its buffer (at `iova(slot)`), before it is given.
    #[cold]
    fn rearm_tail(&self, iova: impl Fn(u64) -> u64) {
        let i = self.st().last;
        self.count_lie(
            RxLie::UnpostedDd,
            format_args!("wrote back descriptor {i}, the tail it was not given; armed again"),
        );
        self.rx_arm(i, iova(*self.slot(i)), *self.slot(i));
    }

    /// RX: how many slots were emptied since the last refill.
    #[inline(always)]
    pub fn rx_empty(&self) -> u32 {
        let st = self.st();
        st.next.wrapping_sub(st.last).wrapping_sub(1) & (st.size - 1)
    }

    /// RX: arms the slots after the tail with `bufs` (IOVA, slot word), at most
    /// [`rx_empty`](Self::rx_empty) of them; returns the new tail. The old tail, given to
    /// the device now, is armed again first if the device wrote it back (`iova` as in
    /// [`rx_poll`](Self::rx_poll)).
    #[inline(always)]
    pub fn rx_arm_after_tail(
        &self,
        bufs: impl Iterator<Item = (u64, u64)>,
        iova: impl Fn(u64) -> u64,
    ) -> u32 {
        let st = self.st();
        let mask = st.size - 1;
        let mut i = st.last;
        // SAFETY: a descriptor of our ring.
        if unsafe { std::ptr::read_volatile(&(*self.desc(i)).hi) } & RXD_STAT_DD != 0 {
            self.rearm_tail(iova);
        }
        for (iova, slot) in bufs {
            i = (i + 1) & mask;
            self.rx_arm(i, iova, slot);
        }
        st.last = i;
        eal::store_point!("intel.rx.last");
        i
    }

    /// Writes RX descriptor `i` in read format for a buffer at `iova` and keeps `slot`.
    fn rx_arm(&self, i: u32, iova: u64, slot: u64) {
        let d = self.desc(i);
        // SAFETY: a descriptor of our ring that the device does not own (past the tail).
        unsafe {
            std::ptr::write_volatile(&mut (*d).lo, iova);
            std::ptr::write_volatile(&mut (*d).hi, 0);
        }
        *self.slot(i) = slot;
        eal::store_point!("intel.rx.slot");
    }
}

/// The IOVA of the data of the mbuf a slot holds.
fn mbuf_iova(slot: u64) -> u64 {
    // SAFETY: an RX slot's word is the mbuf armed there, which the ring keeps.
    std::mem::ManuallyDrop::new(unsafe { Mbuf::from_addr(slot as usize) }).data_iova()
}

/// Fills every descriptor of an RX ring with an mbuf of `pool` (before the queue is
/// enabled), whose device writes at most `buf_len` bytes into each (SRRCTL); returns the
/// tail to write (the last descriptor).
pub fn rx_fill(z: &RingZone, pool: &PktmbufPool, buf_len: u32) -> Result<u32> {
    let n = z.size();
    let mut fresh = Vec::with_capacity(n as usize);
    if !pool.alloc_bulk(&mut fresh, n as usize) {
        return Err(Error::PoolTooSmall {
            pool: pool.name().into(),
            free: pool.available(),
            need: n,
        });
    }
    for (i, m) in fresh.into_iter().enumerate() {
        z.rx_arm(i as u32, m.data_iova(), m.into_addr() as u64);
    }
    let st = z.st();
    st.buf_len = buf_len;
    st.next = 0;
    st.last = n - 1;
    Ok(n - 1)
}

/// An RX queue taken by this process.
pub struct IntelRx {
    z: RingZone,
    tail: *mut u32,
    pool: PktmbufPool,
    port_id: u16,
    rec: DeviceRecord,
    /// The frame being assembled when a burst ended inside it.
    partial: Option<Mbuf>,
    /// The rest of a frame one of whose buffers was a lie is dropped up to its end.
    discarding: bool,
    fresh: Vec<Mbuf>,
    _bar: Arc<Bar>,
}

// SAFETY: `tail` points into `_bar`, which the queue keeps alive; the ring is ours while
// the queue is claimed.
unsafe impl Send for IntelRx {}

impl IntelRx {
    /// A handle to RX ring `z`, refilled from `pool`, whose tail register is in `bar`.
    pub fn new(
        z: RingZone,
        bar: Arc<Bar>,
        pool: PktmbufPool,
        port_id: u16,
        rec: DeviceRecord,
    ) -> IntelRx {
        IntelRx {
            tail: bar.ptr(z.st().tail_reg as usize) as *mut u32,
            fresh: Vec::with_capacity(z.size() as usize),
            z,
            pool,
            port_id,
            rec,
            partial: None,
            discarding: false,
            _bar: bar,
        }
    }

    /// Gives the device new buffers for the slots emptied since the last refill.
    #[inline]
    fn refill(&mut self) {
        let empty = self.z.rx_empty();
        if empty < RX_FREE_THRESH {
            return;
        }
        if !self.pool.alloc_bulk(&mut self.fresh, empty as usize) {
            self.rec.count_rx_nombuf(empty as u64);
            return;
        }
        let bufs = self
            .fresh
            .drain(..)
            .map(|m| (m.data_iova(), m.into_addr() as u64));
        let i = self.z.rx_arm_after_tail(bufs, mbuf_iova);
        write_tail(self.tail, i);
        eal::store_point!("intel.rx.tail");
    }

    /// Marks a whole frame received on this port, with its RSS hash (0: none).
    #[inline(always)]
    fn deliver(&self, m: &mut Mbuf, hash: u32) {
        m.set_port(self.port_id);
        if hash != 0 {
            m.set_rss_hash(hash);
        }
    }
}

impl RxBurst for IntelRx {
    #[inline]
    fn rx_burst(&mut self, out: &mut Vec<Mbuf>, max: usize) -> usize {
        let z = self.z;
        let st = z.st();
        let mask = st.size - 1;
        // The indices live in shared memory: work on copies, store `next` once.
        let (mut next, bounds) = (st.next, z.rx_bounds());
        if !z.rx_written_back(next) {
            // Nothing received: only a refill that found the pool empty may be due.
            self.refill();
            return 0;
        }
        let mut n = 0;
        // Four at a time, between frames (a frame of several buffers goes one by one).
        if self.partial.is_none() && !self.discarding {
            while n + 4 <= max {
                let Some(frames) = z.rx_poll4(next, bounds) else {
                    break;
                };
                next = (next + 4) & mask;
                let len = out.len();
                out.reserve(4);
                let to = out.spare_capacity_mut().as_mut_ptr();
                for (k, f) in frames.into_iter().enumerate() {
                    // SAFETY: the slot held the mbuf armed in this descriptor.
                    let mut m = unsafe { Mbuf::from_addr(f.slot as usize) };
                    m.set_received_len(f.len);
                    self.deliver(&mut m, f.hash);
                    // SAFETY: k < 4, and the vector has room for four more.
                    unsafe { (*to.add(k)).write(m) };
                }
                // SAFETY: the four after `len` were written just above.
                unsafe { out.set_len(len + 4) };
                n += 4;
            }
        }
        while n < max {
            let i = next;
            let (slot, len, eop, hash) = match z.rx_poll(i, bounds, mbuf_iova) {
                RxDesc::NotDone => break,
                RxDesc::Frame {
                    slot,
                    len,
                    eop,
                    hash,
                } => (slot, len, eop, hash),
                RxDesc::BadLen { slot, eop } => {
                    next = (i + 1) & mask;
                    // SAFETY: the slot held the mbuf armed in this descriptor.
                    drop(unsafe { Mbuf::from_addr(slot as usize) });
                    drop(self.partial.take());
                    self.discarding = !eop;
                    continue;
                }
            };
            // SAFETY: the slot held the mbuf armed in this descriptor.
            let mut m = unsafe { Mbuf::from_addr(slot as usize) };
            next = (i + 1) & mask;
            if self.discarding {
                self.discarding = !eop;
                continue;
            }
            m.set_received_len(len);
            let m = match self.partial.take() {
                Some(mut first) => {
                    first.chain(m);
                    first
                }
                None => m,
            };
            if !eop {
                self.partial = Some(m);
                continue;
            }
            let mut m = m;
            self.deliver(&mut m, hash);
            out.push(m);
            n += 1;
        }
        st.next = next;
        eal::store_point!("intel.rx.next");
        self.refill();
        n
    }
}

#[cfg(test)]
mod tests {
    //! Property tests: a fake device mixing honest write-backs with lies, against a ring in
    //! plain memory whose slots hold plain words instead of mbufs. They cover the ring's
    //! own RX steps (`rx_poll` and `rx_poll4`, arming after the tail, the repair
    //! `rx_skip_taken`); the mbuf side of the burst (frame assembly) is not in them.
    use super::super::tests::Mem;
    use super::*;
    use proptest::prelude::*;
    use std::collections::{HashMap, HashSet};

    const BUF_LEN: u32 = 2048;

    /// The IOVA the tests give a slot word's buffer.
    fn fake_iova(slot: u64) -> u64 {
        slot << 12
    }

    #[derive(Clone, Debug)]
    enum RxStep {
        /// The device writes back its next descriptor: `len` bytes, end of packet or not.
        Complete { len: u16, eop: bool },
        /// A write-back longer than the buffer.
        LongLen { extra: u16 },
        /// A write-back of 0 bytes.
        ZeroLen,
        /// DD on the tail (armed, not given) or a slot emptied and not armed again; with
        /// EOP and a length the buffer holds when `whole`.
        UnpostedDd { at: u16, whole: bool },
        /// The driver takes at most `max` descriptors (four at a time first, when `wide`),
        /// then refills what it emptied.
        Poll { max: u8, refill: bool, wide: bool },
    }

    fn rx_steps() -> impl Strategy<Value = RxStep> {
        prop_oneof![
            6 => (1u16..=BUF_LEN as u16, any::<bool>()).prop_map(|(len, eop)| RxStep::Complete { len, eop }),
            1 => (1u16..1000).prop_map(|extra| RxStep::LongLen { extra }),
            1 => Just(RxStep::ZeroLen),
            1 => (any::<u16>(), any::<bool>()).prop_map(|(at, whole)| RxStep::UnpostedDd { at, whole }),
            3 => (1u8..20, any::<bool>(), any::<bool>())
                .prop_map(|(max, refill, wide)| RxStep::Poll { max, refill, wide }),
        ]
    }

    /// The length of a whole-looking write-back where the device was not given the
    /// descriptor.
    const UNPOSTED_LEN: u16 = 64;

    /// What the device wrote into a descriptor since it was armed.
    #[derive(Clone, Copy, Debug)]
    enum Wrote {
        Frame(u16, bool),
        BadLen(bool),
        /// DD where the device was not given the descriptor: length 0, or a whole frame
        /// of [`UNPOSTED_LEN`] bytes when `whole`.
        Unposted {
            whole: bool,
        },
    }

    struct Rx {
        m: Mem,
        mask: u32,
        /// The device's next descriptor to write back.
        head: u32,
        /// Slot words armed, by descriptor; every word ever made is armed or given back.
        armed: HashMap<u32, u64>,
        given_back: HashSet<u64>,
        next_word: u64,
        wrote: HashMap<u32, Wrote>,
        lies: [u64; 2],
        /// As `IntelRx`: a frame's first buffers taken, not its last.
        partial: bool,
        /// As `IntelRx`: dropping a frame up to its last buffer.
        discarding: bool,
    }

    impl Rx {
        fn new(size: u32) -> Rx {
            let m = Mem::ring(size);
            m.z.st().buf_len = BUF_LEN;
            let mut rx = Rx {
                m,
                mask: size - 1,
                head: 0,
                armed: HashMap::new(),
                given_back: HashSet::new(),
                next_word: 1,
                wrote: HashMap::new(),
                lies: [0; 2],
                partial: false,
                discarding: false,
            };
            // As rx_fill: every descriptor armed, the last one is the tail.
            for i in 0..size {
                rx.arm_word(i);
                rx.m.z.rx_arm(i, fake_iova(rx.armed[&i]), rx.armed[&i]);
            }
            rx.m.z.st().last = size - 1;
            rx
        }

        fn arm_word(&mut self, i: u32) {
            self.armed.insert(i, self.next_word);
            self.wrote.remove(&i);
            self.next_word += 1;
        }

        fn tail(&self) -> u32 {
            self.m.z.st().last
        }

        fn write_back(&mut self, len: u32, eop: bool) -> Option<u32> {
            if self.head == self.tail() {
                return None;
            }
            let i = self.head;
            let hi = RXD_STAT_DD | if eop { RXD_STAT_EOP } else { 0 } | (len as u64) << 32;
            self.m.set_hi(i, hi);
            self.head = (i + 1) & self.mask;
            Some(i)
        }

        fn step(&mut self, s: &RxStep) {
            match *s {
                RxStep::Complete { len, eop } => {
                    if let Some(i) = self.write_back(len as u32, eop) {
                        self.wrote.insert(i, Wrote::Frame(len, eop));
                    }
                }
                RxStep::LongLen { extra } => {
                    if let Some(i) = self.write_back(BUF_LEN + extra as u32, true) {
                        self.wrote.insert(i, Wrote::BadLen(true));
                    }
                }
                RxStep::ZeroLen => {
                    if let Some(i) = self.write_back(0, false) {
                        self.wrote.insert(i, Wrote::BadLen(false));
                    }
                }
                RxStep::UnpostedDd { at, whole } => {
                    // From the tail up to the device's head: not given to the device.
                    let span = (self.head.wrapping_sub(self.tail()) & self.mask).max(1);
                    let i = (self.tail() + at as u32 % span) & self.mask;
                    let hi = match whole {
                        true => RXD_STAT_DD | RXD_STAT_EOP | (UNPOSTED_LEN as u64) << 32,
                        false => RXD_STAT_DD,
                    };
                    self.m.set_hi(i, hi);
                    self.wrote.insert(i, Wrote::Unposted { whole });
                }
                RxStep::Poll { max, refill, wide } => self.poll(max as usize, refill, wide),
            }
            self.check();
        }

        /// The reference's verdict on descriptor `i`.
        fn expect(&mut self, i: u32) -> RxDesc {
            let word = self.armed.get(&i).copied().unwrap_or(0);
            match self.wrote.get(&i).copied() {
                None => RxDesc::NotDone,
                Some(Wrote::Unposted { .. }) if i == self.tail() => {
                    self.lies[RxLie::UnpostedDd as usize] += 1;
                    self.wrote.remove(&i);
                    RxDesc::NotDone
                }
                // On a descriptor given since: a frame, or a bad length when 0.
                Some(Wrote::Unposted { whole: true }) => RxDesc::Frame {
                    slot: word,
                    len: UNPOSTED_LEN,
                    eop: true,
                    hash: 0,
                },
                Some(Wrote::Unposted { whole: false }) => {
                    self.lies[RxLie::BadDescLen as usize] += 1;
                    RxDesc::BadLen {
                        slot: word,
                        eop: false,
                    }
                }
                Some(Wrote::BadLen(eop)) => {
                    self.lies[RxLie::BadDescLen as usize] += 1;
                    RxDesc::BadLen { slot: word, eop }
                }
                Some(Wrote::Frame(len, eop)) => RxDesc::Frame {
                    slot: word,
                    len,
                    eop,
                    hash: 0,
                },
            }
        }

        /// The reference's verdict on descriptors `i` to `i + 3` for `rx_poll4`: whole
        /// frames, none the tail, not past the ring's end.
        fn expect4(&self, i: u32) -> Option<[RxFrame; 4]> {
            if i + 4 > self.mask + 1 {
                return None;
            }
            let frames: Option<Vec<RxFrame>> = (i..i + 4)
                .map(|j| {
                    let len = match self.wrote.get(&j)? {
                        _ if j == self.tail() => return None,
                        Wrote::Frame(len, true) => *len,
                        Wrote::Unposted { whole: true } => UNPOSTED_LEN,
                        _ => return None,
                    };
                    Some(RxFrame {
                        slot: self.armed[&j],
                        len,
                        hash: 0,
                    })
                })
                .collect();
            frames.map(|f| [f[0], f[1], f[2], f[3]])
        }

        /// The driver took `word` from descriptor `i`.
        fn took(&mut self, i: u32, word: u64) {
            assert_eq!(self.armed.remove(&i), Some(word), "a word not armed there");
            assert!(self.given_back.insert(word), "word {word} given back twice");
            self.wrote.remove(&i);
        }

        /// As `IntelRx::rx_burst` and `refill`, with slot words for mbufs (and descriptors
        /// counted against `max`, not frames).
        fn poll(&mut self, max: usize, refill: bool, wide: bool) {
            let (mut next, bounds) = (self.m.z.st().next, self.m.z.rx_bounds());
            let mut taken = 0;
            if wide && !self.partial && !self.discarding {
                while taken + 4 <= max {
                    let want = self.expect4(next);
                    let got = self.m.z.rx_poll4(next, bounds);
                    assert_eq!(got, want, "descriptors {next} to {}", next + 3);
                    let Some(frames) = got else {
                        break;
                    };
                    for (k, f) in (0..).zip(frames) {
                        self.took(next + k, f.slot);
                    }
                    next = (next + 4) & self.mask;
                    taken += 4;
                }
            }
            for _ in taken..max {
                let want = self.expect(next);
                let got = self.m.z.rx_poll(next, bounds, fake_iova);
                assert_eq!(got, want, "descriptor {next}");
                let word = match got {
                    RxDesc::NotDone => break,
                    RxDesc::Frame { slot, eop, .. } => {
                        if self.discarding {
                            self.discarding = !eop;
                        } else {
                            self.partial = !eop;
                        }
                        slot
                    }
                    RxDesc::BadLen { slot, eop } => {
                        self.partial = false;
                        self.discarding = !eop;
                        slot
                    }
                };
                self.took(next, word);
                next = (next + 1) & self.mask;
            }
            self.m.z.st().next = next;
            if !refill {
                return;
            }
            let empty = self.m.z.rx_empty();
            if matches!(self.wrote.get(&self.tail()), Some(Wrote::Unposted { .. })) {
                self.lies[RxLie::UnpostedDd as usize] += 1;
                self.wrote.remove(&self.tail());
            }
            let first = (self.tail() + 1) & self.mask;
            let words: Vec<u64> = (0..empty)
                .map(|k| {
                    let i = (first + k) & self.mask;
                    self.arm_word(i);
                    self.armed[&i]
                })
                .collect();
            let tail = self
                .m
                .z
                .rx_arm_after_tail(words.iter().map(|&w| (fake_iova(w), w)), fake_iova);
            assert_eq!(tail, (first + empty).wrapping_sub(1) & self.mask);
        }

        fn check(&self) {
            let held = self.m.z.mbufs_held();
            assert_eq!(held as usize, self.armed.len(), "slots holding words");
            for (&i, &w) in &self.armed {
                assert_eq!(*self.m.z.slot(i), w);
            }
            assert_eq!(
                self.armed.len() + self.given_back.len(),
                self.next_word as usize - 1,
                "a word neither armed nor given back"
            );
            for lie in RxLie::ALL {
                assert_eq!(self.m.z.lies(lie), self.lies[lie as usize], "{lie:?}");
            }
            // Every descriptor the device was not given is in read format or a lie's.
            let t = self.tail();
            if !self.wrote.contains_key(&t) {
                assert_eq!(self.m.hi(t) & RXD_STAT_DD, 0, "DD left on the tail");
            }
            assert!(self.m.canary_intact(), "written past the ring");
        }

        /// The device writes back all it was given, honestly; the driver takes it all.
        fn finish(&mut self) {
            for refill in [true, true, false] {
                while let Some(i) = self.write_back(64, true) {
                    self.wrote.insert(i, Wrote::Frame(64, true));
                }
                self.poll(usize::MAX >> 1, refill, true);
                self.check();
            }
            let left: Vec<_> = self
                .wrote
                .iter()
                .filter(|(_, w)| !matches!(w, Wrote::Unposted { .. }))
                .collect();
            assert!(left.is_empty(), "write-backs never taken: {left:?}");
        }
    }

    #[test]
    fn descriptors_a_dead_poller_took_are_skipped_not_received_again() {
        let mut rx = Rx::new(8);
        for _ in 0..4 {
            rx.step(&RxStep::Complete { len: 60, eop: true });
        }
        // A burst takes three descriptors and dies before it stores `next`.
        let bounds = rx.m.z.rx_bounds();
        for i in 0..3 {
            assert!(matches!(
                rx.m.z.rx_poll(i, bounds, fake_iova),
                RxDesc::Frame { .. }
            ));
        }
        assert_eq!(rx.m.z.st().next, 0);
        assert_eq!(rx.m.z.rx_skip_taken(), 3);
        assert_eq!(rx.m.z.st().next, 3);
        assert_eq!(rx.m.z.rx_skip_taken(), 0, "a second repair finds nothing");
        // The fourth frame is still there for the next poller, in its slot.
        assert!(matches!(
            rx.m.z.rx_poll(3, bounds, fake_iova),
            RxDesc::Frame { slot, .. } if slot == rx.armed[&3]
        ));
    }

    #[test]
    fn descriptors_a_dead_poller_took_four_at_a_time_are_skipped_too() {
        let mut rx = Rx::new(8);
        for _ in 0..6 {
            rx.step(&RxStep::Complete { len: 60, eop: true });
        }
        let bounds = rx.m.z.rx_bounds();
        let frames = rx.m.z.rx_poll4(0, bounds).expect("four whole frames");
        let armed: Vec<u64> = (0..4).map(|i| rx.armed[&i]).collect();
        assert_eq!(frames.map(|f| f.slot).to_vec(), armed);
        // The burst dies before it stores `next`.
        assert_eq!(rx.m.z.rx_skip_taken(), 4);
        assert_eq!(rx.m.z.st().next, 4);
        // Descriptors 4 to 7 hold the tail (7): one by one.
        assert_eq!(rx.m.z.rx_poll4(4, bounds), None);
        assert!(matches!(
            rx.m.z.rx_poll(4, bounds, fake_iova),
            RxDesc::Frame { slot, .. } if slot == rx.armed[&4]
        ));
    }

    #[test]
    fn the_hash_field_is_taken_only_when_the_rss_type_says_it_is_a_hash() {
        // What a write-back may hold there without a hash: with RXCSUM.PCSD clear (one
        // queue, RSS off), the IP identification and the fragment checksum of an IPv4 frame.
        const FIELD: u64 = 0xb1e6_1c46;
        let types = [0, RSS_TYPE_IPV4, RSS_TYPE_IPV4_UDP, 0xf];
        let want = types.map(|t| match t {
            0 | 0xf => 0,
            _ => FIELD as u32,
        });
        let mut rx = Rx::new(16);
        for i in 0..8 {
            rx.step(&RxStep::Complete { len: 60, eop: true });
            rx.m.set_lo(i, FIELD << 32 | types[i as usize % 4]);
        }
        let bounds = rx.m.z.rx_bounds();
        let four = rx.m.z.rx_poll4(0, bounds).expect("four whole frames");
        assert_eq!(four.map(|f| f.hash), want);
        for i in 4..8 {
            match rx.m.z.rx_poll(i, bounds, fake_iova) {
                RxDesc::Frame { hash, .. } => {
                    assert_eq!(hash, want[i as usize - 4], "type {}", types[i as usize - 4])
                }
                other => panic!("descriptor {i}: {other:?}"),
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(30_000))]

        /// Lying RX write-backs are dropped or armed again and counted; every honest one,
        /// before or after them, is taken; no buffer is lost or given back twice.
        #[test]
        fn rx_lies_are_dropped_and_honest_frames_still_arrive(
            size_log in 3u32..6,
            steps in proptest::collection::vec(rx_steps(), 1..40),
        ) {
            let mut rx = Rx::new(1 << size_log);
            for s in &steps {
                rx.step(s);
            }
            rx.finish();
        }
    }
}
