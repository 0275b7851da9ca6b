//! The advanced RX and TX descriptor rings that the 82576 (igb) and the 82599 (ixgbe)
//! share (82576 datasheet 7.1.5 and 7.2.3; 82599 datasheet 7.1.6 and 7.2.3).
//!
//! Each ring lives in one IOVA-contiguous memzone: a small header with the software
//! indices (so that whichever process polls the queue continues where the last one
//! stopped), the descriptors at `DESC_OFFSET`, then one word per descriptor with the mbuf
//! it holds. The device is told the ring's IOVA and length; each process writes the tail
//! register through its own mapping of BAR 0.
//!
//! This module holds the zone (its header, descriptors and slots), what both directions
//! use, and the repairs after a poller died (`rx_skip_taken`, `chains_since`,
//! `forget_uncommitted`, `forget_freed`); `rx` the RX ring's steps, [`IntelRx`] and its
//! burst; `tx` the TX ring's steps, fast free, [`IntelTx`] and its burst. Each says how it
//! does not trust the device.

mod rx;
mod tx;

pub use rx::{rx_fill, IntelRx, RxDesc, RxFrame, RxLie};
pub use tx::IntelTx;

use eal::MemzoneFlags;
use net::{mbuf, Mbuf};
use std::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};

/// Where the descriptors start in the ring's zone (device rings want 128-byte alignment).
const DESC_OFFSET: u64 = 4096;

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

#[cfg(test)]
mod tests {
    //! What the tests of `rx` and `tx` share: a ring in plain memory whose slots hold plain
    //! words instead of mbufs, for a fake device to write back into.
    use super::*;

    const CANARY: u64 = 0x5a5a_a5a5_5a5a_a5a5;

    /// A ring of `size` descriptors in plain memory, canary words after it.
    pub(super) struct Mem {
        buf: Vec<u64>,
        end: usize,
        pub(super) z: RingZone,
    }

    impl Mem {
        pub(super) fn ring(size: u32) -> Mem {
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

        pub(super) fn canary_intact(&self) -> bool {
            self.buf[self.end..].iter().all(|&w| w == CANARY)
        }

        pub(super) fn hi(&self, i: u32) -> u64 {
            // SAFETY: i is masked by the callers: a descriptor of the ring.
            unsafe { std::ptr::read_volatile(&(*self.z.desc(i)).hi) }
        }

        pub(super) fn set_hi(&self, i: u32, hi: u64) {
            // SAFETY: as above.
            unsafe { std::ptr::write_volatile(&mut (*self.z.desc(i)).hi, hi) }
        }

        pub(super) fn set_lo(&self, i: u32, lo: u64) {
            // SAFETY: as above.
            unsafe { std::ptr::write_volatile(&mut (*self.z.desc(i)).lo, lo) }
        }
    }
}
