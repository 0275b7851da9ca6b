//! A fixed-capacity lock-free FIFO of pointer-sized values, in shared memory, as DPDK's
//! `rte_ring`: separate producer and consumer head/tail, single- or multi-producer and
//! consumer, bulk (all or nothing) and burst (as many as possible).
//!
//! Orderings: a side loads its own head and the other side's tail with acquire (so the
//! slots the other side published are visible), claims slots with an acquire-release
//! compare-and-swap (multi) or a plain store (single), copies, waits for earlier claimers
//! of its own side (multi) with acquire loads, and publishes its tail with release.

use crate::memzone::MemzoneFlags;
use crate::shm::{ShmName, ShmSafe};
use crate::sync::{AtomicU32, AtomicUsize, Ordering};
use crate::{Error, Result};
use crossbeam_utils::CachePadded;
use std::ptr::NonNull;
use std::time::{Duration, Instant};

bitflags::bitflags! {
    /// Creation flags, as DPDK's `RING_F_*`.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct RingFlags: u32 {
        /// The default enqueue is single-producer.
        const SP_ENQ = 0x1;
        /// The default dequeue is single-consumer.
        const SC_DEQ = 0x2;
        /// The ring holds exactly `count` entries (else `count` must be a power of two and
        /// the ring holds `count - 1`).
        const EXACT_SZ = 0x4;
    }
}

/// Longest ring name: memzone names less the `RG_` prefix.
pub const NAME_MAX: usize = ShmName::CAPACITY - 1 - 3;
/// Largest ring, as DPDK's `RTE_RING_SZ_MASK`.
pub const MAX_SIZE: u32 = 0x7fff_ffff;

/// How many stalls (waits longer than `STALL_REPORT` for an earlier producer or consumer)
/// this process has reported, for tools and tests.
pub static STALLS_REPORTED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// How long a multi-producer or multi-consumer waits for an earlier one before it says
/// that a process probably died in the middle of an operation.
const STALL_REPORT: Duration = Duration::from_secs(1);

#[repr(C)]
#[derive(Debug, Default)]
struct HeadTail {
    head: AtomicU32,
    tail: AtomicU32,
    /// The other side's tail as last read by a single producer (or consumer), kept on this
    /// side's own cache line: the shared one is read again only when this copy says there is
    /// not enough room (or data), which saves a cache-line transfer per call across cores.
    other_tail_seen: AtomicU32,
}

/// The ring's header in shared memory; `size` slots of `AtomicUsize` follow it.
#[repr(C)]
pub struct RingHeader {
    name: ShmName,
    flags: u32,
    size: u32,
    mask: u32,
    capacity: u32,
    prod: CachePadded<HeadTail>,
    cons: CachePadded<HeadTail>,
}

// SAFETY: repr(C); a name, integers, and atomics (CachePadded only aligns). The slots that
// follow are atomics holding plain values.
unsafe impl ShmSafe for RingHeader {}

/// A handle to a ring; the same ring may be used from every process of the group.
#[derive(Clone, Copy)]
pub struct Ring {
    hdr: NonNull<RingHeader>,
}

// SAFETY: every access to the ring's shared state goes through atomics.
unsafe impl Send for Ring {}
// SAFETY: as above.
unsafe impl Sync for Ring {}

impl std::fmt::Debug for Ring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Ring({}, {}/{})",
            self.name(),
            self.count(),
            self.capacity()
        )
    }
}

/// Whether an operation moves all `n` values or none (bulk), or as many as it can (burst).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Behavior {
    Fixed,
    Variable,
}

/// Slot count and usable capacity for a requested `count`.
fn geometry(count: u32, flags: RingFlags) -> Result<(u32, u32)> {
    if flags.contains(RingFlags::EXACT_SZ) {
        let size = count
            .checked_add(1)
            .and_then(u32::checked_next_power_of_two)
            .filter(|s| *s <= MAX_SIZE + 1 && count > 0)
            .ok_or_else(|| {
                Error::Ring(format!("ring size {count} is out of range (1..{MAX_SIZE})"))
            })?;
        Ok((size, count))
    } else if count.is_power_of_two() && (2..=MAX_SIZE).contains(&count) {
        Ok((count, count - 1))
    } else {
        Err(Error::Ring(format!(
            "ring size {count} must be a power of two from 2 to {MAX_SIZE} (or use RingFlags::EXACT_SZ)"
        )))
    }
}

/// Moves one side's head back to its tail; how far it moved.
fn abandon_claims(side: &HeadTail) -> u32 {
    let tail = side.tail.load(Ordering::Acquire);
    side.head.swap(tail, Ordering::AcqRel).wrapping_sub(tail)
}

/// Copies `src` into slots of equal length (the caller owns them until it moves the tail).
#[inline(always)]
fn store_run(slots: &[AtomicUsize], src: &[usize]) {
    for (s, o) in slots.iter().zip(src) {
        s.store(*o, Ordering::Relaxed);
    }
}

/// Copies slots (the caller claimed them) into `dst` of equal length.
#[inline(always)]
fn load_run(slots: &[AtomicUsize], dst: &mut [usize]) {
    for (s, o) in slots.iter().zip(dst) {
        *o = s.load(Ordering::Relaxed);
    }
}

impl Ring {
    /// Bytes a ring of `count` entries occupies.
    pub fn memory_size(count: u32, flags: RingFlags) -> Result<usize> {
        let (size, _) = geometry(count, flags)?;
        Ok(std::mem::size_of::<RingHeader>() + size as usize * std::mem::size_of::<AtomicUsize>())
    }

    /// Creates a ring in a new memzone named `RG_<name>`.
    pub fn create(name: &str, count: u32, flags: RingFlags) -> Result<Ring> {
        if name.len() > NAME_MAX {
            return Err(Error::BadName {
                name: name.into(),
                why: "ring names have at most 28 bytes",
            });
        }
        let eal = crate::eal()?;
        let len = Ring::memory_size(count, flags)?;
        let mz = eal.memzone_reserve(
            &format!("RG_{name}"),
            len as u64,
            128,
            MemzoneFlags::empty(),
        )?;
        // SAFETY: the memzone is fresh, zeroed, 128-byte aligned and `len` bytes long.
        unsafe { Ring::init_at(mz.as_ptr(), name, count, flags) }
    }

    /// Finds a ring created by any process of the group.
    pub fn lookup(name: &str) -> Result<Ring> {
        let mz = crate::eal()?
            .memzone_lookup(&format!("RG_{name}"))
            .map_err(|_| {
                Error::Ring(format!(
                    "no ring named '{name}' in this group: has the primary created it yet?"
                ))
            })?;
        let hdr = NonNull::new(mz.as_ptr::<RingHeader>())
            .ok_or_else(|| Error::Ring("null ring".into()))?;
        Ok(Ring { hdr })
    }

    /// Every ring of the group, found through their memzones.
    pub fn list() -> Result<Vec<Ring>> {
        Ok(crate::eal()?
            .memzone_list()
            .into_iter()
            .filter(|mz| mz.name().starts_with("RG_"))
            .filter_map(|mz| NonNull::new(mz.as_ptr::<RingHeader>()))
            .map(|hdr| Ring { hdr })
            .collect())
    }

    /// The address of the ring's header: the same in every process of the group, so it
    /// may be stored in shared memory and turned back into a handle with [`Ring::from_addr`].
    pub fn addr(&self) -> u64 {
        self.hdr.as_ptr() as u64
    }

    /// A handle to the ring whose header is at `addr`.
    ///
    /// # Safety
    /// `addr` was returned by [`Ring::addr`] of a ring of this group that still exists.
    pub unsafe fn from_addr(addr: u64) -> Option<Ring> {
        NonNull::new(addr as *mut RingHeader).map(|hdr| Ring { hdr })
    }

    /// Frees the ring's memory. Every process must have stopped using it.
    pub fn free(self) -> Result<()> {
        crate::eal()?.memzone_free(&format!("RG_{}", self.name()))
    }

    /// Lays a ring out in `mem`.
    ///
    /// # Safety
    /// `mem` points at `memory_size(count, flags)` writable bytes, aligned to 64, that
    /// stay valid and are used for nothing else for as long as the ring is used.
    pub unsafe fn init_at(mem: *mut u8, name: &str, count: u32, flags: RingFlags) -> Result<Ring> {
        let (size, capacity) = geometry(count, flags)?;
        let hdr = mem as *mut RingHeader;
        // SAFETY: the caller gives us exclusive, aligned, large enough memory.
        unsafe {
            hdr.write(RingHeader {
                name: ShmName::new(name)?,
                flags: flags.bits(),
                size,
                mask: size - 1,
                capacity,
                prod: CachePadded::new(HeadTail::default()),
                cons: CachePadded::new(HeadTail::default()),
            });
            let slots = hdr.add(1) as *mut AtomicUsize;
            for i in 0..size as usize {
                slots.add(i).write(AtomicUsize::new(0));
            }
        }
        Ok(Ring {
            hdr: NonNull::new(hdr).ok_or_else(|| Error::Ring("null ring memory".into()))?,
        })
    }

    #[inline(always)]
    fn hdr(&self) -> &RingHeader {
        // SAFETY: the header was initialised by init_at and lives as long as the ring is used.
        unsafe { self.hdr.as_ref() }
    }

    /// The `n` slots from index `head` on, as at most two contiguous runs (the ring wraps).
    #[inline(always)]
    fn runs(&self, head: u32, n: u32) -> (&[AtomicUsize], &[AtomicUsize]) {
        let h = self.hdr();
        let start = (head & h.mask) as usize;
        let first = (n as usize).min(h.size as usize - start);
        // SAFETY: the slot array of `size` atomics follows the header; start + first <= size
        // and n - first <= start, so both runs lie inside it.
        unsafe {
            let slots = self.hdr.as_ptr().add(1) as *const AtomicUsize;
            (
                std::slice::from_raw_parts(slots.add(start), first),
                std::slice::from_raw_parts(slots, n as usize - first),
            )
        }
    }

    /// The ring's name.
    pub fn name(&self) -> &str {
        self.hdr().name.as_str()
    }
    /// How many values the ring can hold.
    pub fn capacity(&self) -> u32 {
        self.hdr().capacity
    }
    /// How many slots it has: a power of two, more than its capacity.
    pub fn size(&self) -> u32 {
        self.hdr().size
    }
    /// How the ring was created (single or multi producer and consumer).
    pub fn flags(&self) -> RingFlags {
        RingFlags::from_bits_truncate(self.hdr().flags)
    }
    /// Values in the ring now (a snapshot).
    pub fn count(&self) -> u32 {
        let h = self.hdr();
        let n = h
            .prod
            .tail
            .load(Ordering::Acquire)
            .wrapping_sub(h.cons.tail.load(Ordering::Acquire));
        n.min(h.capacity)
    }
    /// How many more values fit now.
    pub fn free_count(&self) -> u32 {
        self.capacity() - self.count()
    }
    /// Entries claimed and not yet published, by producers and by consumers (head minus
    /// tail of each side, as DPDK's ring dump shows them): non-zero while an operation is
    /// under way, and for good on a side where a process died in one.
    pub fn claims_in_flight(&self) -> (u32, u32) {
        let h = self.hdr();
        let side = |s: &HeadTail| {
            let tail = s.tail.load(Ordering::Acquire);
            s.head.load(Ordering::Acquire).wrapping_sub(tail)
        };
        (side(&h.prod), side(&h.cons))
    }
    /// Whether no value fits now.
    pub fn is_full(&self) -> bool {
        self.free_count() == 0
    }
    /// Whether the ring holds no value now.
    pub fn is_empty(&self) -> bool {
        self.count() == 0
    }

    /// Claims up to `n` entries on one side: free slots for producers, filled ones for
    /// consumers. Returns the old head and how many were claimed.
    #[inline(always)]
    fn move_head(&self, producer: bool, single: bool, n: u32, b: Behavior) -> (u32, u32) {
        let h = self.hdr();
        let (mine, other) = if producer {
            (&h.prod, &h.cons)
        } else {
            (&h.cons, &h.prod)
        };
        let mut old = mine.head.load(Ordering::Acquire);
        let avail_from = |other_tail: u32, head: u32| {
            if producer {
                h.capacity.wrapping_add(other_tail).wrapping_sub(head)
            } else {
                other_tail.wrapping_sub(head)
            }
        };
        loop {
            let mut avail = if single {
                // The copy is only ever behind the real tail: it can under-state room, not
                // over-state it. Mixed single and multi calls can leave it so far behind that
                // the arithmetic wraps past the capacity; then it is read afresh too.
                avail_from(mine.other_tail_seen.load(Ordering::Acquire), old)
            } else {
                0
            };
            if avail < n || avail > h.capacity {
                let other_tail = other.tail.load(Ordering::Acquire);
                if single {
                    mine.other_tail_seen.store(other_tail, Ordering::Release);
                    crate::store_point!("ring.other_tail_seen");
                }
                avail = avail_from(other_tail, old);
            }
            let take = if n <= avail {
                n
            } else if b == Behavior::Fixed {
                0
            } else {
                avail
            };
            if take == 0 {
                return (old, 0);
            }
            let new = old.wrapping_add(take);
            if single {
                mine.head.store(new, Ordering::Relaxed);
                crate::store_point!("ring.head");
                return (old, take);
            }
            match mine
                .head
                .compare_exchange_weak(old, new, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => {
                    crate::store_point!("ring.head");
                    if producer {
                        crate::fault_point!("ring.mp_enqueue.claimed");
                    }
                    return (old, take);
                }
                Err(cur) => old = cur,
            }
        }
    }

    /// Publishes `old..old+n` on one side, after earlier claimers of the same side.
    #[inline(always)]
    fn update_tail(&self, producer: bool, single: bool, old: u32, n: u32) {
        let h = self.hdr();
        let mine = if producer { &h.prod } else { &h.cons };
        if !single && mine.tail.load(Ordering::Acquire) != old {
            self.wait_for_tail(mine, producer, old);
        }
        mine.tail.store(old.wrapping_add(n), Ordering::Release);
        crate::store_point!("ring.tail");
    }

    #[cold]
    fn wait_for_tail(&self, mine: &HeadTail, producer: bool, old: u32) {
        let mut spins: u32 = 0;
        let start = Instant::now();
        let mut reported = false;
        while mine.tail.load(Ordering::Acquire) != old {
            spins = spins.wrapping_add(1);
            if spins < 128 {
                crate::sync::spin_hint();
                continue;
            }
            // The earlier claimer may have been preempted: give it the CPU.
            crate::sync::yield_now();
            if !reported && spins.is_multiple_of(1024) && start.elapsed() > STALL_REPORT {
                reported = true;
                STALLS_REPORTED.fetch_add(1, Ordering::Relaxed);
                log::error!(
                    "ring '{}': an earlier {} has not finished for over {} s (tail {}, waiting for {}); \
                     a process of the group probably died in the middle of an operation, and this ring \
                     stays blocked until the group is restarted",
                    self.name(),
                    if producer { "producer" } else { "consumer" },
                    STALL_REPORT.as_secs(),
                    mine.tail.load(Ordering::Relaxed),
                    old
                );
            }
        }
    }

    #[inline(always)]
    fn enqueue(&self, objs: &[usize], single: bool, b: Behavior) -> usize {
        let (head, n) = self.move_head(true, single, objs.len().min(u32::MAX as usize) as u32, b);
        if n == 0 {
            return 0;
        }
        let (first, second) = self.runs(head, n);
        let objs = &objs[..n as usize];
        if second.is_empty() {
            // The usual case, without a wrap: one loop, no second set-up.
            store_run(first, objs);
        } else {
            let (a, b) = objs.split_at(first.len());
            store_run(first, a);
            store_run(second, b);
        }
        // The slots as one store: nobody reads them before the tail covers them.
        crate::store_point!("ring.slots");
        self.update_tail(true, single, head, n);
        n as usize
    }

    #[inline(always)]
    fn dequeue(&self, objs: &mut [usize], single: bool, b: Behavior) -> usize {
        self.dequeue_with(objs, single, b, |_| {})
    }

    /// A dequeue that hands what it took to `before_release` while the ring still names it.
    #[inline(always)]
    fn dequeue_with(
        &self,
        objs: &mut [usize],
        single: bool,
        b: Behavior,
        before_release: impl FnOnce(&[usize]),
    ) -> usize {
        let (head, n) = self.claim_filled(objs, single, b);
        if n > 0 {
            before_release(&objs[..n as usize]);
            self.update_tail(false, single, head, n);
        }
        n as usize
    }

    /// Claims up to `objs.len()` filled slots and copies them into `objs`, leaving the tail
    /// where it was. Returns the old head and how many.
    #[inline(always)]
    fn claim_filled(&self, objs: &mut [usize], single: bool, b: Behavior) -> (u32, u32) {
        let (head, n) = self.move_head(false, single, objs.len().min(u32::MAX as usize) as u32, b);
        if n > 0 {
            self.load_slots(head, &mut objs[..n as usize]);
        }
        (head, n)
    }

    /// Copies the slots from index `from` on into `objs` (the caller claimed them).
    #[inline(always)]
    fn load_slots(&self, from: u32, objs: &mut [usize]) {
        let (first, second) = self.runs(from, objs.len() as u32);
        if second.is_empty() {
            load_run(first, objs);
        } else {
            let (a, b) = objs.split_at_mut(first.len());
            load_run(first, a);
            load_run(second, b);
        }
    }

    /// Copies up to `objs.len()` values into `objs` and leaves them claimed: they stay in
    /// the ring's slots until [`sc_dequeue_finish`](Self::sc_dequeue_finish), so what a
    /// consumer that dies holds them can be found with
    /// [`dequeue_claims`](Self::dequeue_claims) (DPDK's `rte_ring_dequeue_burst_start`).
    /// Single consumer only, one claim at a time. Returns how many.
    #[inline]
    pub fn sc_dequeue_start(&self, objs: &mut [usize]) -> usize {
        self.claim_filled(objs, true, Behavior::Variable).1 as usize
    }

    /// Ends the claim of [`sc_dequeue_start`](Self::sc_dequeue_start) (or a dead consumer's,
    /// by whoever took its place): the first `n` claimed values leave the ring, the rest are
    /// given back for the next dequeue.
    #[inline]
    pub fn sc_dequeue_finish(&self, n: u32) {
        let cons = &self.hdr().cons;
        let new = cons.tail.load(Ordering::Relaxed).wrapping_add(n);
        if cons.head.load(Ordering::Relaxed) != new {
            cons.head.store(new, Ordering::Relaxed);
            crate::store_point!("ring.head");
        }
        // Release: the slots were read before producers may fill them again.
        cons.tail.store(new, Ordering::Release);
        crate::store_point!("ring.tail");
    }

    /// The values consumers claimed and have not finished with (oldest first): what
    /// [`sc_dequeue_start`](Self::sc_dequeue_start) left if its process died. A snapshot
    /// while a consumer works on the ring.
    pub fn dequeue_claims(&self) -> Vec<usize> {
        self.slots_from_consumers_tail(&self.hdr().cons.head)
    }

    /// The values the ring holds, oldest first: published by producers and not yet
    /// released by a consumer (what consumers claimed included). A snapshot, for whoever
    /// needs to know what a ring owns after a process died; values may leave meanwhile.
    pub fn contents(&self) -> Vec<usize> {
        self.slots_from_consumers_tail(&self.hdr().prod.tail)
    }

    /// A copy of the slots from the consumers' tail up to index `end` (read after it).
    fn slots_from_consumers_tail(&self, end: &AtomicU32) -> Vec<usize> {
        let tail = self.hdr().cons.tail.load(Ordering::Acquire);
        let n = end.load(Ordering::Acquire).wrapping_sub(tail);
        let mut out = vec![0; n.min(self.capacity()) as usize];
        self.load_slots(tail, &mut out);
        out
    }

    /// How many values producers have published since the ring was made, modulo 2^32 (the
    /// producers' tail): the difference of two readings is how many were enqueued between.
    pub fn enqueued_count(&self) -> u32 {
        self.hdr().prod.tail.load(Ordering::Acquire)
    }

    /// How many values consumers have taken since the ring was made, modulo 2^32 (the
    /// consumers' tail).
    pub fn dequeued_count(&self) -> u32 {
        self.hdr().cons.tail.load(Ordering::Acquire)
    }

    /// Gives up what a dead producer claimed and never published: those slots stay hidden
    /// and the next producer does not wait for them. Returns how many were given up.
    /// Only when no live process is enqueueing, e.g. on a port queue's ring after its one
    /// poller died inside a burst.
    pub fn abandon_enqueue_claims(&self) -> u32 {
        abandon_claims(&self.hdr().prod)
    }

    /// Gives up what a dead consumer claimed and never released: the next consumer takes
    /// those entries again. Returns how many. Only when no live process is dequeueing.
    pub fn abandon_dequeue_claims(&self) -> u32 {
        abandon_claims(&self.hdr().cons)
    }

    fn single_producer(&self) -> bool {
        self.flags().contains(RingFlags::SP_ENQ)
    }
    fn single_consumer(&self) -> bool {
        self.flags().contains(RingFlags::SC_DEQ)
    }

    // The DPDK names. "sp"/"sc": only one thread of the whole group enqueues/dequeues
    // (misuse loses or duplicates values, never memory safety: slots are atomics).

    /// Enqueues all of `objs` or none; returns how many (0 or `objs.len()`).
    #[inline]
    pub fn enqueue_bulk(&self, objs: &[usize]) -> usize {
        self.enqueue(objs, self.single_producer(), Behavior::Fixed)
    }
    /// [`enqueue_bulk`](Self::enqueue_bulk) by the one producer of a single-producer side.
    #[inline]
    pub fn sp_enqueue_bulk(&self, objs: &[usize]) -> usize {
        self.enqueue(objs, true, Behavior::Fixed)
    }
    /// [`enqueue_bulk`](Self::enqueue_bulk) by one of several producers.
    #[inline]
    pub fn mp_enqueue_bulk(&self, objs: &[usize]) -> usize {
        self.enqueue(objs, false, Behavior::Fixed)
    }
    /// Enqueues as many of `objs` as fit; returns how many.
    #[inline]
    pub fn enqueue_burst(&self, objs: &[usize]) -> usize {
        self.enqueue(objs, self.single_producer(), Behavior::Variable)
    }
    /// [`enqueue_burst`](Self::enqueue_burst) by the one producer.
    #[inline]
    pub fn sp_enqueue_burst(&self, objs: &[usize]) -> usize {
        self.enqueue(objs, true, Behavior::Variable)
    }
    /// [`enqueue_burst`](Self::enqueue_burst) by one of several producers.
    #[inline]
    pub fn mp_enqueue_burst(&self, objs: &[usize]) -> usize {
        self.enqueue(objs, false, Behavior::Variable)
    }
    /// Enqueues one value; false when the ring is full.
    #[inline]
    pub fn enqueue_one(&self, obj: usize) -> bool {
        self.enqueue(&[obj], self.single_producer(), Behavior::Fixed) == 1
    }
    /// [`enqueue_one`](Self::enqueue_one) by the one producer.
    #[inline]
    pub fn sp_enqueue_one(&self, obj: usize) -> bool {
        self.enqueue(&[obj], true, Behavior::Fixed) == 1
    }
    /// [`enqueue_one`](Self::enqueue_one) by one of several producers.
    #[inline]
    pub fn mp_enqueue_one(&self, obj: usize) -> bool {
        self.enqueue(&[obj], false, Behavior::Fixed) == 1
    }

    /// Dequeues exactly `objs.len()` values or none; returns how many.
    #[inline]
    pub fn dequeue_bulk(&self, objs: &mut [usize]) -> usize {
        self.dequeue(objs, self.single_consumer(), Behavior::Fixed)
    }
    /// [`dequeue_bulk`](Self::dequeue_bulk) by the one consumer of a single-consumer side.
    #[inline]
    pub fn sc_dequeue_bulk(&self, objs: &mut [usize]) -> usize {
        self.dequeue(objs, true, Behavior::Fixed)
    }
    /// [`dequeue_bulk`](Self::dequeue_bulk) by one of several consumers.
    #[inline]
    pub fn mc_dequeue_bulk(&self, objs: &mut [usize]) -> usize {
        self.dequeue(objs, false, Behavior::Fixed)
    }
    /// Dequeues up to `objs.len()` values; returns how many.
    #[inline]
    pub fn dequeue_burst(&self, objs: &mut [usize]) -> usize {
        self.dequeue(objs, self.single_consumer(), Behavior::Variable)
    }
    /// [`dequeue_burst`](Self::dequeue_burst) by the one consumer.
    #[inline]
    pub fn sc_dequeue_burst(&self, objs: &mut [usize]) -> usize {
        self.dequeue(objs, true, Behavior::Variable)
    }
    /// As [`dequeue_burst`](Self::dequeue_burst), handing the values taken to
    /// `before_release` before the consumers' tail moves past them: until then they are
    /// the ring's ([`contents`](Self::contents) names them), so a consumer that dies in
    /// `before_release` leaves them in the ring for its repairer.
    #[inline]
    pub fn dequeue_burst_with(
        &self,
        objs: &mut [usize],
        before_release: impl FnOnce(&[usize]),
    ) -> usize {
        let single = self.single_consumer();
        self.dequeue_with(objs, single, Behavior::Variable, before_release)
    }
    /// [`dequeue_burst_with`](Self::dequeue_burst_with) by the one consumer.
    #[inline]
    pub fn sc_dequeue_burst_with(
        &self,
        objs: &mut [usize],
        before_release: impl FnOnce(&[usize]),
    ) -> usize {
        self.dequeue_with(objs, true, Behavior::Variable, before_release)
    }
    /// [`dequeue_burst`](Self::dequeue_burst) by one of several consumers.
    #[inline]
    pub fn mc_dequeue_burst(&self, objs: &mut [usize]) -> usize {
        self.dequeue(objs, false, Behavior::Variable)
    }
    /// Dequeues one value.
    #[inline]
    pub fn dequeue_one(&self) -> Option<usize> {
        self.dequeue_one_with(self.single_consumer())
    }
    /// [`dequeue_one`](Self::dequeue_one) by the one consumer.
    #[inline]
    pub fn sc_dequeue_one(&self) -> Option<usize> {
        self.dequeue_one_with(true)
    }
    /// [`dequeue_one`](Self::dequeue_one) by one of several consumers.
    #[inline]
    pub fn mc_dequeue_one(&self) -> Option<usize> {
        self.dequeue_one_with(false)
    }
    #[inline(always)]
    fn dequeue_one_with(&self, single: bool) -> Option<usize> {
        let mut v = [0usize];
        (self.dequeue(&mut v, single, Behavior::Fixed) == 1).then_some(v[0])
    }
}

/// A ring in process-private memory, for tests and benchmarks that need no EAL.
pub struct LocalRing {
    ring: Ring,
    mem: NonNull<u8>,
    layout: std::alloc::Layout,
}

impl LocalRing {
    /// A ring as [`Ring::create`] makes it (same `count` and `flags`), in this process's heap.
    pub fn new(name: &str, count: u32, flags: RingFlags) -> Result<Self> {
        let layout = std::alloc::Layout::from_size_align(Ring::memory_size(count, flags)?, 128)
            .map_err(|e| Error::Ring(e.to_string()))?;
        // SAFETY: the layout has a non-zero size (the header alone is non-empty).
        let mem = NonNull::new(unsafe { std::alloc::alloc_zeroed(layout) })
            .ok_or_else(|| Error::Ring("out of memory".into()))?;
        // SAFETY: mem is fresh, aligned to 128 and memory_size bytes; we own it until drop.
        let ring = unsafe { Ring::init_at(mem.as_ptr(), name, count, flags) }?;
        Ok(LocalRing { ring, mem, layout })
    }
}

impl std::ops::Deref for LocalRing {
    type Target = Ring;
    fn deref(&self) -> &Ring {
        &self.ring
    }
}

impl Drop for LocalRing {
    fn drop(&mut self) {
        // SAFETY: allocated in new with this layout; the ring handle dies with self.
        unsafe { std::alloc::dealloc(self.mem.as_ptr(), self.layout) };
    }
}

// SAFETY: the ring is usable from any thread (see Ring); the memory is owned by self.
unsafe impl Send for LocalRing {}
// SAFETY: as above.
unsafe impl Sync for LocalRing {}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn sizes() {
        assert!(LocalRing::new("r", 1000, RingFlags::empty()).is_err());
        let r = LocalRing::new("r", 1024, RingFlags::empty()).expect("ring");
        assert_eq!(r.capacity(), 1023);
        let r = LocalRing::new("r", 1000, RingFlags::EXACT_SZ).expect("ring");
        assert_eq!(r.capacity(), 1000);
    }

    #[test]
    fn bulk_is_all_or_nothing_burst_takes_what_fits() {
        let r = LocalRing::new("r", 8, RingFlags::empty()).expect("ring");
        assert_eq!(r.enqueue_bulk(&[1, 2, 3, 4, 5]), 5);
        assert_eq!(r.enqueue_bulk(&[6, 7, 8]), 0, "only 2 free");
        assert_eq!(r.enqueue_burst(&[6, 7, 8]), 2);
        assert!(r.is_full());
        let mut out = [0; 10];
        assert_eq!(r.dequeue_bulk(&mut out), 0, "only 7 there");
        assert_eq!(r.dequeue_burst(&mut out), 7);
        assert_eq!(&out[..7], &[1, 2, 3, 4, 5, 6, 7]);
        assert!(r.is_empty());
        assert_eq!(r.dequeue_one(), None);
    }

    #[test]
    fn indexes_wrap_around_u32() {
        let r = LocalRing::new("r", 16, RingFlags::empty()).expect("ring");
        for side in [&r.hdr().prod, &r.hdr().cons] {
            side.head.store(u32::MAX - 5, Ordering::Relaxed);
            side.tail.store(u32::MAX - 5, Ordering::Relaxed);
        }
        for round in 0..100usize {
            assert_eq!(r.sp_enqueue_bulk(&[round, round + 1, round + 2]), 3);
            let mut o = [0; 3];
            assert_eq!(r.sc_dequeue_bulk(&mut o), 3);
            assert_eq!(o, [round, round + 1, round + 2]);
        }
    }

    #[test]
    fn single_side_copies_of_the_other_tail_never_overstate_room() {
        let r = LocalRing::new("r", 16, RingFlags::empty()).expect("ring");
        let mut out = [0usize; 32];
        // The single-producer and single-consumer paths remember the other side's tail...
        assert_eq!(r.sp_enqueue_burst(&[1, 2]), 2);
        assert_eq!(r.sc_dequeue_burst(&mut out), 2);
        // ...then multi calls move both sides far beyond what they remembered.
        for i in 0..1000 {
            assert_eq!(r.mp_enqueue_bulk(&[i; 10]), 10);
            assert_eq!(r.mc_dequeue_bulk(&mut out[..10]), 10);
        }
        assert_eq!(
            r.sp_enqueue_burst(&[7; 20]),
            15,
            "capacity is 15, whatever the copy says"
        );
        assert_eq!(r.sc_dequeue_burst(&mut out), 15);
        assert_eq!(
            r.sc_dequeue_burst(&mut out),
            0,
            "nothing more than was put in"
        );
        assert!(r.is_empty());
    }

    #[test]
    fn a_producer_that_died_mid_enqueue_is_reported_not_waited_for_silently() {
        let r = Arc::new(LocalRing::new("r", 64, RingFlags::empty()).expect("ring"));
        // A "dead" producer claimed 5 slots (head moved) and never published them (tail).
        r.hdr().prod.head.store(5, Ordering::Relaxed);
        let before = STALLS_REPORTED.load(Ordering::Relaxed);
        let r2 = r.clone();
        let waiter = std::thread::spawn(move || r2.mp_enqueue_bulk(&[42]));
        let deadline = Instant::now() + Duration::from_secs(10);
        while STALLS_REPORTED.load(Ordering::Relaxed) == before && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(
            STALLS_REPORTED.load(Ordering::Relaxed) > before,
            "the stall was reported"
        );
        assert!(
            !waiter.is_finished(),
            "the later producer still waits its turn"
        );
        // Whoever repairs the ring publishes the dead producer's slots: the wait ends.
        r.hdr().prod.tail.store(5, Ordering::Release);
        assert_eq!(waiter.join().expect("producer"), 1);
        assert_eq!(r.count(), 6);
    }

    #[test]
    fn claims_of_a_dead_producer_or_consumer_can_be_abandoned() {
        let r = LocalRing::new("r", 64, RingFlags::empty()).expect("ring");
        // A dead producer claimed 5 slots and wrote one of them.
        r.hdr().prod.head.store(5, Ordering::Relaxed);
        r.runs(0, 1).0[0].store(99, Ordering::Relaxed);
        assert_eq!(r.claims_in_flight(), (5, 0));
        assert_eq!(r.abandon_enqueue_claims(), 5);
        assert_eq!(r.abandon_enqueue_claims(), 0);
        // The next producer neither waits nor publishes the dead one's slots.
        assert_eq!(r.mp_enqueue_bulk(&[1, 2, 3]), 3);
        assert_eq!(r.count(), 3);
        // A dead consumer claimed 2 entries and never released them: they come again.
        r.hdr().cons.head.store(2, Ordering::Relaxed);
        assert_eq!(r.claims_in_flight(), (0, 2));
        assert_eq!(r.abandon_dequeue_claims(), 2);
        let mut out = [0usize; 8];
        assert_eq!(r.mc_dequeue_burst(&mut out), 3);
        assert_eq!(out[..3], [1, 2, 3]);
    }

    #[test]
    fn a_started_dequeue_stays_in_the_ring_until_finished() {
        let r = LocalRing::new("r", 8, RingFlags::SP_ENQ | RingFlags::SC_DEQ).expect("ring");
        // Past the wrap, so the claims cover both ends of the slot array.
        r.hdr().prod.head.store(u32::MAX - 2, Ordering::Relaxed);
        r.hdr().prod.tail.store(u32::MAX - 2, Ordering::Relaxed);
        r.hdr().cons.head.store(u32::MAX - 2, Ordering::Relaxed);
        r.hdr().cons.tail.store(u32::MAX - 2, Ordering::Relaxed);
        let before = r.enqueued_count();
        assert_eq!(r.enqueue_burst(&[1, 2, 3, 4, 5, 6]), 6);
        assert_eq!(r.enqueued_count().wrapping_sub(before), 6);
        let mut out = [0usize; 5];
        assert_eq!(r.sc_dequeue_start(&mut out), 5);
        assert_eq!(out, [1, 2, 3, 4, 5]);
        // Claimed, not gone: a dead consumer's hand is still readable, and producers do
        // not overwrite it (one slot is free: 7 capacity, 6 in the ring).
        assert_eq!(r.dequeue_claims(), vec![1, 2, 3, 4, 5]);
        assert_eq!(r.count(), 6);
        assert_eq!(r.enqueue_burst(&[7, 8, 9]), 1);
        // Finishing 3 gives 4 and 5 back.
        r.sc_dequeue_finish(3);
        assert!(r.dequeue_claims().is_empty());
        assert_eq!(r.count(), 4);
        let mut out = [0usize; 8];
        assert_eq!(r.sc_dequeue_start(&mut out), 4);
        assert_eq!(out[..4], [4, 5, 6, 7]);
        r.sc_dequeue_finish(4);
        assert!(r.is_empty());
    }

    #[test]
    fn mpmc_threads_account_for_every_value() {
        const PER: usize = 200_000;
        let r = Arc::new(LocalRing::new("r", 1024, RingFlags::empty()).expect("ring"));
        let producers: Vec<_> = (0..3)
            .map(|p| {
                let r = r.clone();
                std::thread::spawn(move || {
                    let mut i = 0;
                    while i < PER {
                        let burst: Vec<usize> =
                            (i..(i + 7).min(PER)).map(|v| (p << 32) | v).collect();
                        let n = r.mp_enqueue_burst(&burst);
                        i += n;
                        if n == 0 {
                            std::thread::yield_now();
                        }
                    }
                })
            })
            .collect();
        // std's, not the ring's (loom's in the loom build): a counter of this test.
        let total = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let consumers: Vec<_> = (0..2)
            .map(|_| {
                let (r, total) = (r.clone(), total.clone());
                std::thread::spawn(move || {
                    let mut seen = Vec::new();
                    let mut buf = [0usize; 16];
                    while total.load(Ordering::Relaxed) < 3 * PER {
                        let n = r.mc_dequeue_burst(&mut buf);
                        total.fetch_add(n, Ordering::Relaxed);
                        seen.extend_from_slice(&buf[..n]);
                        if n == 0 {
                            std::thread::yield_now();
                        }
                    }
                    seen
                })
            })
            .collect();
        for p in producers {
            p.join().expect("producer");
        }
        let mut all: Vec<usize> = consumers
            .into_iter()
            .flat_map(|c| c.join().expect("consumer"))
            .collect();
        all.sort_unstable();
        let want: Vec<usize> = (0..3)
            .flat_map(|p| (0..PER).map(move |v| (p << 32) | v))
            .collect();
        assert_eq!(all, want);
    }
}

#[cfg(all(test, loom))]
mod loom_model;
