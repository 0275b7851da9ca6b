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
//! descriptors in order and refills the emptied slots in bulk once `RX_FREE_THRESH` are empty.
//! TX: one data descriptor per segment, EOP and RS on the last, the head mbuf kept in the
//! last slot; sent chains are freed once the device has written DD back into that slot.

use super::regs::*;
use eal::vfio::Bar;
use eal::MemzoneFlags;
use net::ethdev::{DeviceRecord, Error, Result, RxBurst, TxBurst};
use net::{mbuf, Mbuf, PktmbufPool};
use std::sync::atomic::{fence, Ordering};
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
    /// RX: last descriptor given to the device (the tail); TX: oldest not yet freed.
    last: u32,
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
            mz.as_ptr::<RingState>().write(RingState {
                size,
                tail_reg: tail_reg as u32,
                next: 0,
                last: 0,
            });
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
        let mask = self.st().size - 1;
        let mut i = from;
        while i != to {
            *self.slot(i) = 0;
            i = (i + 1) & mask;
        }
        self.st().last = to;
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

/// Writes an RX descriptor in read format for `m` and keeps `m` in its slot.
fn rx_arm(z: &RingZone, i: u32, m: Mbuf) {
    let d = z.desc(i);
    // SAFETY: a descriptor of our ring that the device does not own (past the tail).
    unsafe {
        std::ptr::write_volatile(&mut (*d).lo, m.data_iova());
        std::ptr::write_volatile(&mut (*d).hi, 0);
    }
    *z.slot(i) = m.into_addr() as u64;
}

/// Fills every descriptor of an RX ring with an mbuf of `pool` (before the queue is
/// enabled); returns the tail to write (the last descriptor).
pub fn rx_fill(z: &RingZone, pool: &PktmbufPool) -> Result<u32> {
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
        rx_arm(z, i as u32, m);
    }
    let st = z.st();
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
            _bar: bar,
        }
    }

    /// Gives the device new buffers for the slots emptied since the last refill.
    #[inline]
    fn refill(&mut self) {
        let st = self.z.st();
        let mask = st.size - 1;
        let empty = st.next.wrapping_sub(st.last).wrapping_sub(1) & mask;
        if empty < RX_FREE_THRESH {
            return;
        }
        if !self.pool.alloc_bulk(&mut self.fresh, empty as usize) {
            self.rec.count_rx_nombuf(empty as u64);
            return;
        }
        let mut i = st.last;
        for m in self.fresh.drain(..) {
            i = (i + 1) & mask;
            rx_arm(&self.z, i, m);
        }
        st.last = i;
        write_tail(self.tail, i);
    }
}

impl RxBurst for IntelRx {
    #[inline]
    fn rx_burst(&mut self, out: &mut Vec<Mbuf>, max: usize) -> usize {
        let z = self.z;
        let st = z.st();
        let mask = st.size - 1;
        // The index lives in shared memory: work on a copy, store it once.
        let mut next = st.next;
        let mut n = 0;
        while n < max {
            let i = next;
            let d = z.desc(i);
            // SAFETY: a descriptor of our ring; the device writes DD last.
            let hi = unsafe { std::ptr::read_volatile(&(*d).hi) };
            if hi & RXD_STAT_DD == 0 {
                break;
            }
            // Nothing of the descriptor or the buffer may be read before DD was seen.
            fence(Ordering::Acquire);
            // SAFETY: as above; the device is done with this descriptor.
            let lo = unsafe { std::ptr::read_volatile(&(*d).lo) };
            // SAFETY: the slot holds the mbuf armed in this descriptor.
            let mut m = unsafe { Mbuf::from_addr(std::mem::take(z.slot(i)) as usize) };
            next = (i + 1) & mask;
            m.set_received_len(((hi >> 32) & 0xffff) as u16);
            let m = match self.partial.take() {
                Some(mut first) => {
                    first.chain(m);
                    first
                }
                None => m,
            };
            if hi & RXD_STAT_EOP == 0 {
                self.partial = Some(m);
                continue;
            }
            let mut m = m;
            m.mark_received(self.port_id);
            let hash = (lo >> 32) as u32;
            if hash != 0 {
                m.set_rss_hash(hash);
            }
            out.push(m);
            n += 1;
        }
        st.next = next;
        self.refill();
        n
    }
}

/// A TX queue taken by this process.
pub struct IntelTx {
    z: RingZone,
    tail: *mut u32,
    done: Vec<Mbuf>,
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
            z,
            _bar: bar,
        }
    }

    /// Frees the chains whose last descriptor the device has written back, a batch at a
    /// time, each batch back in the pool before the ring forgets it (see
    /// `mbuf::free_then_forget`; [`RingZone::forget_freed`] repairs a poller killed in
    /// between).
    #[inline]
    fn clean(&mut self) {
        let z = self.z;
        let st = z.st();
        let mask = st.size - 1;
        // Copies of the shared indices: `from` is the oldest slot not yet forgotten,
        // `last` just after the newest chain taken.
        let (next, mut from) = (st.next, st.last);
        let (mut i, mut last) = (from, from);
        while i != next {
            let s = *z.slot(i);
            if s != 0 {
                let d = z.desc(i);
                // SAFETY: a descriptor of our ring; the device sets DD when done with it.
                let hi = unsafe { std::ptr::read_volatile(&(*d).hi) };
                if hi & TXD_STAT_DD == 0 {
                    break;
                }
                // SAFETY: the slot of a chain's last descriptor holds its head mbuf.
                self.done.push(unsafe { Mbuf::from_addr(s as usize) });
                last = (i + 1) & mask;
                if self.done.len() == mbuf::FREE_BATCH {
                    let n = self.done.len();
                    mbuf::free_then_forget(&mut self.done, n, || z.forget(from, last));
                    from = last;
                }
            }
            i = (i + 1) & mask;
        }
        if !self.done.is_empty() {
            let n = self.done.len();
            mbuf::free_then_forget(&mut self.done, n, || z.forget(from, last));
        }
    }

    /// Writes data descriptor `i`: `len` bytes at `iova`, `paylen` (the frame's length in
    /// its first descriptor, else 0), and end of packet with a status report on its last.
    #[inline(always)]
    fn write_data_desc(&self, i: u32, iova: u64, len: u32, last: bool, paylen: u32) {
        let mut cmd = len as u64 | TXD_DTYP_DATA | TXD_CMD_DEXT | TXD_CMD_IFCS;
        if last {
            cmd |= TXD_CMD_EOP | TXD_CMD_RS;
        }
        let d = self.z.desc(i);
        // SAFETY: a free descriptor of our ring (tx_burst counted it), not yet the device's.
        unsafe {
            std::ptr::write_volatile(&mut (*d).lo, iova);
            std::ptr::write_volatile(
                &mut (*d).hi,
                cmd | (paylen as u64) << (32 + TXD_PAYLEN_SHIFT),
            );
        }
    }
}

impl TxBurst for IntelTx {
    #[inline]
    fn tx_burst(&mut self, pkts: &mut Vec<Mbuf>) -> usize {
        self.clean();
        let st = self.z.st();
        let mask = st.size - 1;
        // One descriptor stays unused, so that a full ring is not mistaken for an empty one.
        let mut free = (st.last.wrapping_sub(st.next).wrapping_sub(1) & mask) as usize;
        let mut sent = 0;
        for m in pkts.iter() {
            if m.nb_segs() as usize > free {
                break;
            }
            free -= m.nb_segs() as usize;
            sent += 1;
        }
        if sent == 0 {
            return 0;
        }
        let mut i = st.next;
        for m in pkts.drain(..sent) {
            let segs = m.nb_segs();
            if segs == 1 {
                // One descriptor: the usual frame, without the segment walk.
                self.write_data_desc(i, m.data_iova(), m.data_len() as u32, true, m.pkt_len());
                *self.z.slot(i) = m.into_addr() as u64;
                i = (i + 1) & mask;
                continue;
            }
            for (k, (iova, len)) in m.segment_iovas().enumerate() {
                let last = k + 1 == segs as usize;
                // The frame's length goes in its first descriptor (olinfo_status.PAYLEN).
                let paylen = if k == 0 { m.pkt_len() } else { 0 };
                self.write_data_desc(i, iova, len, last, paylen);
                if last {
                    *self.z.slot(i) = m.addr() as u64;
                }
                i = (i + 1) & mask;
            }
            // The ring owns the chain now; its last slot gives it back.
            let _ = m.into_addr();
        }
        eal::fault_point!("intel.tx.written");
        st.next = i;
        write_tail(self.tail, i);
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
