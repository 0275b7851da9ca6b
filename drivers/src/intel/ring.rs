//! The advanced RX and TX descriptor rings that the 82576 (igb) and the 82599 (ixgbe)
//! share (82576 datasheet 7.1.5 and 7.2.3; 82599 datasheet 7.1.6 and 7.2.3).
//!
//! Each ring lives in one IOVA-contiguous memzone: a small header with the software
//! indices (so that whichever process polls the queue continues where the last one
//! stopped), the descriptors at `DESC_OFFSET`, then one word per descriptor with the mbuf
//! it holds. The device is told the ring's IOVA and length; each process writes the tail
//! register through its own mapping of BAR 0.
//!
//! RX: every descriptor holds an empty mbuf; the device writes a frame into it and writes
//! the descriptor back with DD (and EOP on a frame's last buffer). The burst takes done
//! descriptors in order, four at a time while each of the four is a whole frame (as DPDK's
//! vector paths; the first group that is not goes one by one, with every check), and
//! refills the emptied slots in bulk once `RX_FREE_THRESH` are empty. A frame carries the
//! RSS hash only when the write-back's RSS type says the device computed one.
//! TX: one data descriptor per segment, EOP and RS on the last, the head mbuf kept in the
//! last slot; sent chains are freed once the device has written DD back into that slot.
//!
//! The device is not trusted ([`RxLie`]): an RX write-back whose length is 0 or beyond the
//! buffer size the device was given drops its frame; DD on the one armed descriptor the
//! device was not given (the tail) is cleared by arming it again. TX reads DD only in the
//! last descriptor of chains it posted and not yet freed, and posting rewrites that word,
//! so no write-back can free a chain twice or one never posted; a device that stops
//! completing fills the ring and `tx_burst` takes nothing.
//!
//! TX fast free (DPDK's `MBUF_FAST_FREE`, asked in the port's TX offloads): every packet is
//! one descriptor, so the slots from the oldest not freed are a run of packets, which go
//! back to their pool straight from the slots, a run at a time once the device has written
//! back its last descriptor (`mbuf::fast_free_then_forget`). The ring records the pool of
//! the first packet sent; `tx_burst` checks each packet against it (one segment, one
//! reference, that pool), and one that breaks the promise ends fast free for the queue
//! until it is started again: it and all after it are sent (from the next burst on, when
//! the ring had recorded its pool) and freed with the checks.

use super::regs::*;
use eal::vfio::Bar;
use eal::MemzoneFlags;
use net::ethdev::{DeviceRecord, Error, Result, RxBurst, TxBurst};
use net::mbuf::FREE_BATCH;
use net::{mbuf, Mbuf, PktmbufPool};
use std::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;

/// Where the descriptors start in the ring's zone (device rings want 128-byte alignment).
const DESC_OFFSET: u64 = 4096;
/// Refill the RX ring once this many slots are empty.
const RX_FREE_THRESH: u32 = 32;

/// Sizes a ring may have: a multiple of 8 descriptors (the length register counts 128-byte
/// units), here a power of two.
pub const MIN_DESC: u32 = 32;
/// Most descriptors a ring may have.
pub const MAX_DESC: u32 = 4096;

/// [`RingState::fast_free`] of a ring that frees without the checks and has sent nothing
/// yet (not an address: pools are aligned).
const ANY_POOL: u64 = 1;

// Slot words are mbuf addresses, handed to the pool as they are.
const _: () = assert!(std::mem::size_of::<usize>() == std::mem::size_of::<u64>());

/// One descriptor, as two little-endian quadwords (read and write-back formats differ).
#[repr(C, align(16))]
struct Desc {
    lo: u64,
    hi: u64,
}

/// The header of a ring's zone.
#[repr(C)]
struct RingState {
    /// Descriptors in the ring (a power of two).
    size: u32,
    /// Offset of the ring's tail register in BAR 0.
    tail_reg: u32,
    /// RX: next descriptor to take; TX: next to fill.
    next: u32,
    /// RX: the tail, the one armed descriptor the device was not given; TX: oldest not
    /// yet freed.
    last: u32,
    /// RX: bytes the device may write into one buffer (what SRRCTL says).
    buf_len: u32,
    /// Bit per [`RxLie`] already logged.
    warned: AtomicU32,
    /// Lies seen, per [`RxLie`]; written by the poller, read by any process.
    lies: [AtomicU64; 2],
    /// TX: 0 when sent packets are freed with the checks (`mbuf::free_then_forget`);
    /// otherwise without them (`mbuf::fast_free_then_forget`), and the address of the pool
    /// every packet sent comes from, or [`ANY_POOL`] before the first.
    fast_free: u64,
}

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

impl RingState {
    fn new(size: u32, tail_reg: u32) -> RingState {
        RingState {
            size,
            tail_reg,
            next: 0,
            last: 0,
            buf_len: 0,
            warned: AtomicU32::new(0),
            lies: [AtomicU64::new(0), AtomicU64::new(0)],
            fast_free: 0,
        }
    }
}

/// A ring's zone, as this process sees it.
#[derive(Clone, Copy)]
pub struct RingZone {
    state: *mut RingState,
    desc: *mut Desc,
    slots: *mut u64,
    iova: u64,
}

// SAFETY: the zone is shared memory of the group; only the process that holds the queue
// (ethdev's claim) touches its indices, descriptors and slots.
unsafe impl Send for RingZone {}

impl RingZone {
    /// Creates (or re-creates, when the size changed) the zone `name` for `size`
    /// descriptors whose tail register is at `tail_reg`.
    pub fn create(name: &str, size: u32, tail_reg: usize) -> eal::Result<RingZone> {
        let eal = eal::eal()?;
        let len = DESC_OFFSET + size as u64 * (16 + 8);
        let mz = eal.memzone_reuse_or_reserve(name, len, 4096, MemzoneFlags::IOVA_CONTIG)?;
        // SAFETY: the zone is `len` bytes and no device or poller uses it yet (queues are set
        // up while the port is stopped).
        unsafe {
            std::ptr::write_bytes(mz.as_ptr::<u8>(), 0, len as usize);
            mz.as_ptr::<RingState>()
                .write(RingState::new(size, tail_reg as u32));
        }
        RingZone::lookup(name)
    }

    /// The ring zone `name`, set up by the primary.
    pub fn lookup(name: &str) -> eal::Result<RingZone> {
        let eal = eal::eal()?;
        let mz = eal.memzone_lookup(name)?;
        let base = mz.addr();
        Ok(RingZone {
            state: mz.as_ptr(),
            desc: (base + DESC_OFFSET) as *mut Desc,
            // The slots follow the descriptors (`create` sized the zone for both).
            slots: (base + DESC_OFFSET + 16 * RingZone::size_at(mz.as_ptr()) as u64) as *mut u64,
            iova: eal.config().virt_to_iova(base + DESC_OFFSET),
        })
    }

    fn size_at(state: *mut RingState) -> u32 {
        // SAFETY: `state` is the header of a zone `create` initialised.
        unsafe { (*state).size }
    }

    // The zone is shared memory, not part of `self`: a handle is a view of it.
    #[allow(clippy::mut_from_ref)]
    fn st(&self) -> &mut RingState {
        // SAFETY: the header of our zone; one poller at a time (see the Send impl).
        unsafe { &mut *self.state }
    }

    /// Descriptors in the ring.
    pub fn size(&self) -> u32 {
        self.st().size
    }

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

    /// TX: whether sent packets are freed without the checks (see [`RingState::fast_free`]),
    /// set as the queue starts (its ring is empty).
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

    /// IOVA of the descriptors and their length in bytes, for the base/length registers.
    pub fn dma(&self) -> (u64, u32) {
        (self.iova, self.size() * 16)
    }

    fn desc(&self, i: u32) -> *mut Desc {
        // SAFETY: callers pass i < size: inside the descriptor array.
        unsafe { self.desc.add(i as usize) }
    }

    #[allow(clippy::mut_from_ref)]
    fn slot(&self, i: u32) -> &mut u64 {
        // SAFETY: i < size: inside the slot array; one poller at a time.
        unsafe { &mut *self.slots.add(i as usize) }
    }

    /// How many mbufs the ring holds: RX, those armed for the device; TX, the chains sent
    /// and not yet freed (a chain counts once). Slots of neither are zero, so any process
    /// can count them; the count is a snapshot while a poller works on the ring.
    pub fn mbufs_held(&self) -> u32 {
        self.mbufs().count() as u32
    }

    /// The mbufs [`mbufs_held`](Self::mbufs_held) counts (a chain by its first).
    pub fn mbufs(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.size())
            .map(|i| *self.slot(i) as usize)
            .filter(|&a| a != 0)
    }

    /// RX, after its poller died inside a burst: moves `next` past the descriptors the burst
    /// had taken (`rx_poll` empties their slots in order from `next`, which the burst stores
    /// only at its end). Their mbufs were in the dead poller's hands and go back with its
    /// holds; left behind, their descriptors would be received again from empty slots.
    /// Returns how many.
    pub fn rx_skip_taken(&self) -> u32 {
        let st = self.st();
        let mask = st.size - 1;
        let mut i = st.next;
        let mut n = 0;
        while i != st.last && *self.slot(i) == 0 {
            i = (i + 1) & mask;
            n += 1;
        }
        if n > 0 {
            st.next = i;
            eal::store_point!("intel.rx.next");
        }
        n
    }

    /// TX: the chains committed since `next` was `mark`. Each chain's last slot holds it,
    /// and no slot is freed while nobody polls the queue.
    pub fn chains_since(&self, mark: u32) -> u32 {
        let st = self.st();
        let mask = st.size - 1;
        let mut i = mark & mask;
        let mut n = 0;
        while i != st.next {
            n += u32::from(*self.slot(i) != 0);
            i = (i + 1) & mask;
        }
        n
    }

    /// TX, after its poller died inside a burst: forgets the mbufs it wrote to slots past
    /// `next` and never committed. They are not the ring's (whoever gave them to the burst
    /// still holds them), and a stale slot would later be freed as a sent chain. Returns
    /// how many.
    pub fn forget_uncommitted(&self) -> u32 {
        let st = self.st();
        let mask = st.size - 1;
        // The slots from `next` up to `last` are free (all of them when the two meet).
        let free = match st.last.wrapping_sub(st.next) & mask {
            0 => st.size,
            n => n,
        };
        (0..free)
            .filter(|k| std::mem::take(self.slot((st.next + k) & mask)) != 0)
            .count() as u32
    }

    /// TX: forgets the slots from `from` up to `to` (chains taken from the ring) and makes
    /// `to` the oldest slot not yet freed.
    #[inline]
    fn forget(&self, from: u32, to: u32) {
        // One run of slots, or two where the ring wraps between them, as two plain loops
        // (a flattened pair of ranges does not compile to plain stores).
        let (first, second) = match to >= from {
            true => (from..to, 0..0),
            false => (from..self.st().size, 0..to),
        };
        for i in first {
            *self.slot(i) = 0;
            eal::store_point!("intel.tx.slot");
        }
        for i in second {
            *self.slot(i) = 0;
            eal::store_point!("intel.tx.slot");
        }
        self.st().last = to;
        eal::store_point!("intel.tx.last");
    }

    /// TX, after its poller died inside a clean: forgets the sent chains it had already put
    /// back in its lcore's cache (`mbuf::free_then_forget`) and ends their pin, before the
    /// primary empties that cache. Returns how many.
    pub fn forget_freed(&self) -> u32 {
        let st = self.st();
        let mask = st.size - 1;
        // The chain heads from `last` on, oldest first, with the slot after each.
        let mut heads: Vec<(usize, u32)> = Vec::new();
        let mut i = st.last;
        while i != st.next && heads.len() < mbuf::FREE_BATCH {
            let s = *self.slot(i);
            i = (i + 1) & mask;
            if s != 0 {
                heads.push((s as usize, i));
            }
        }
        let oldest: Vec<usize> = heads.iter().map(|h| h.0).collect();
        // SAFETY: a slot from `last` on names a chain's head mbuf.
        let Some((n, pin)) = (unsafe { mbuf::dead_pinned_prefix(&oldest) }) else {
            return 0;
        };
        self.forget(st.last, heads[n - 1].1);
        pin.unpin();
        n as u32
    }

    /// Frees every mbuf the ring holds and zeroes the indices (the device is stopped).
    pub fn release(&self) {
        let mut done = Vec::new();
        for i in 0..self.size() {
            let s = std::mem::take(self.slot(i));
            if s != 0 {
                // SAFETY: a slot's word is an mbuf the ring owned.
                done.push(unsafe { Mbuf::from_addr(s as usize) });
            }
        }
        mbuf::free_bulk(&mut done);
        let st = self.st();
        st.next = 0;
        st.last = 0;
    }
}

/// Moves a queue's tail register (`tail`, in this process's BAR mapping) to `i`: the
/// device owns the descriptors before it.
#[inline(always)]
fn write_tail(tail: *mut u32, i: u32) {
    // The descriptors must be in memory before the device sees the new tail.
    fence(Ordering::Release);
    // SAFETY: callers pass the tail register of their queue in their BAR mapping.
    unsafe { std::ptr::write_volatile(tail, i) };
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
    //! own steps (`rx_poll` and `rx_poll4`, arming after the tail, `tx_completed` and the
    //! fast-free runs of `tx_completed_run`, `forget`); the mbuf side of the bursts (frame
    //! assembly, frees) is not in them.
    use super::*;
    use proptest::prelude::*;
    use std::collections::{HashMap, HashSet};

    const CANARY: u64 = 0x5a5a_a5a5_5a5a_a5a5;
    const BUF_LEN: u32 = 2048;

    /// A ring of `size` descriptors in plain memory, canary words after it.
    struct Mem {
        buf: Vec<u64>,
        end: usize,
        z: RingZone,
    }

    impl Mem {
        fn ring(size: u32) -> Mem {
            let words = (DESC_OFFSET as usize + size as usize * 24) / 8;
            let mut buf = vec![0u64; words + 2 + 64];
            let base = (buf.as_mut_ptr() as u64).next_multiple_of(16);
            let end = words + 2;
            buf[end..].fill(CANARY);
            let state = base as *mut RingState;
            // SAFETY: the buffer holds the header, the descriptors and the slots.
            unsafe { state.write(RingState::new(size, 0)) };
            let z = RingZone {
                state,
                desc: (base + DESC_OFFSET) as *mut Desc,
                slots: (base + DESC_OFFSET + 16 * size as u64) as *mut u64,
                iova: 0,
            };
            Mem { buf, end, z }
        }

        fn canary_intact(&self) -> bool {
            self.buf[self.end..].iter().all(|&w| w == CANARY)
        }

        fn hi(&self, i: u32) -> u64 {
            // SAFETY: i is masked by the callers: a descriptor of the ring.
            unsafe { std::ptr::read_volatile(&(*self.z.desc(i)).hi) }
        }

        fn set_hi(&self, i: u32, hi: u64) {
            // SAFETY: as above.
            unsafe { std::ptr::write_volatile(&mut (*self.z.desc(i)).hi, hi) }
        }

        fn set_lo(&self, i: u32, lo: u64) {
            // SAFETY: as above.
            unsafe { std::ptr::write_volatile(&mut (*self.z.desc(i)).lo, lo) }
        }
    }

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
