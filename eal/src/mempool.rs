//! Mempools: fixed-size objects in one memzone, the free ones in a ring, with a cache per
//! lcore in shared memory in front of it, as DPDK's `rte_mempool`.
//!
//! A cache belongs to an lcore, and an lcore to one thread of one process at a time (the
//! lcore table enforces it), so a cache needs no lock. Threads the EAL did not start have
//! no lcore id and go straight to the ring. When a process dies, the primary returns what
//! its lcores' caches held to the ring ([`flush_caches_of`]).
//!
//! No object crosses a page of the group's memory (unless it is larger than a page), as in
//! DPDK when objects must be IOVA-contiguous: with `--iova-mode=pa` the next page is
//! elsewhere in physical memory, and devices behind an IOMMU may translate each buffer
//! once (QEMU's igb drops a TX frame whose buffer spans two IOMMU pages).

use crate::lcore::{self, MAX_LCORE};
use crate::memzone::MemzoneFlags;
use crate::owner::OwnerWord;
use crate::ring::{Ring, RingFlags};
use crate::shm::{ShmName, ShmSafe};
use crate::{Error, Result};
use crossbeam_utils::CachePadded;
use std::marker::PhantomData;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, Ordering};

/// Largest per-lcore cache, as DPDK's `RTE_MEMPOOL_CACHE_MAX_SIZE`.
pub const CACHE_MAX_SIZE: u32 = 512;
/// Longest mempool name: memzone names less the `RG_MP_` prefix of its ring.
pub const NAME_MAX: usize = ShmName::CAPACITY - 1 - 6;
/// The one mempool driver: free objects in a multi-producer multi-consumer ring. Recorded
/// as a fixed id, never as a registration index (DESIGN.md, rule 2).
pub const OPS_RING_MP_MC: u32 = 1;

#[repr(C)]
pub struct MempoolHeader {
    name: ShmName,
    ops_id: u32,
    size: u32,
    elt_size: u32,
    cache_size: u32,
    flush_thresh: u32,
    cache_slots: u32,
    ring: u64,
    objs: ObjLayout,
    caches_start: u64,
    cache_stride: u64,
    /// Written on every move to or from the ring: each on a cache line of its own, away
    /// from the words every get and put reads.
    puts: CachePadded<SideLog>,
    gets: CachePadded<SideLog>,
}

// SAFETY: repr(C) integers, atomics and addresses inside the group's range.
unsafe impl ShmSafe for MempoolHeader {}

/// One side of the pool's ring, which one process at a time moves objects through (the
/// side is single-producer, or single-consumer, while `holder` is held), and what the move
/// under way moves: each says beforehand which cache slots it empties or fills, so that a
/// move whose process died is finished or undone exactly by whoever finds its holder dead
/// ([`Mempool::repair_move`]).
#[repr(C)]
#[derive(Default)]
struct SideLog {
    /// The moving process.
    holder: OwnerWord,
    /// How many objects the move may move (0: none under way).
    n: AtomicU32,
    /// The lcore whose cache they leave or fill, from slot `from` (NO_LCORE: the
    /// caller's own objects).
    lcore: AtomicU32,
    from: AtomicU32,
    /// The side's tail in the ring before the move.
    tail: AtomicU32,
}

/// A move of the caller's own objects, not a cache's.
const NO_LCORE: u32 = u32::MAX;

/// The two sides of a pool's ring.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Side {
    Put,
    Get,
}

/// One lcore's cache: `len`, `pinned`, then `cache_slots` object addresses.
#[repr(C)]
struct CacheHeader {
    len: AtomicU32,
    /// How many of the top objects the lcore's thread put while something in shared memory
    /// still names them (see [`LocalCache::put_pinned`]); 0 almost always.
    pinned: AtomicU32,
}

/// A handle to a mempool, valid in every process of the group.
#[derive(Clone, Copy)]
pub struct Mempool {
    hdr: NonNull<MempoolHeader>,
    ring: Ring,
}

// SAFETY: the ring is thread-safe; a cache is only touched by the thread holding its lcore.
unsafe impl Send for Mempool {}
// SAFETY: as above.
unsafe impl Sync for Mempool {}

impl std::fmt::Debug for Mempool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Mempool({}, {} of {} in use)",
            self.name(),
            self.in_use(),
            self.size()
        )
    }
}

fn align_up(v: u64, a: u64) -> u64 {
    (v + a - 1) & !(a - 1)
}

/// Where a pool's objects lie: packed from `start` up to the next page boundary, then
/// `per_page` to a page, each page's left-over bytes unused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C)]
struct ObjLayout {
    start: u64,
    elt: u64,
    page: u64,
    /// Objects before the first page boundary at or after `start`.
    first: u64,
    /// Objects per page; 0 when an object is larger than a page (then they are packed).
    per_page: u64,
}

impl ObjLayout {
    fn new(start: u64, elt: u64, page: u64) -> Self {
        let per_page = if elt <= page { page / elt } else { 0 };
        let first = if per_page == 0 {
            0
        } else {
            (align_up(start, page) - start) / elt
        };
        ObjLayout {
            start,
            elt,
            page,
            first,
            per_page,
        }
    }

    /// Bytes from `start` that `n` objects may need wherever `start` falls in a page.
    fn span_bound(n: u64, elt: u64, page: u64) -> u64 {
        let waste = if elt <= page {
            // Each boundary wastes less than one object; there are at most this many.
            (n / (page / elt) + 2) * elt
        } else {
            0
        };
        n * elt + waste
    }

    fn addr(&self, i: u64) -> u64 {
        if self.per_page == 0 || i < self.first {
            return self.start + i * self.elt;
        }
        let j = i - self.first;
        align_up(self.start, self.page)
            + (j / self.per_page) * self.page
            + (j % self.per_page) * self.elt
    }

    /// The index of the object starting at `addr`, if one does.
    fn index(&self, addr: u64) -> Option<u64> {
        let off = addr.checked_sub(self.start)?;
        if self.per_page == 0 || off < self.first * self.elt {
            return off.is_multiple_of(self.elt).then_some(off / self.elt);
        }
        let off = addr.checked_sub(align_up(self.start, self.page))?;
        let (page, in_page) = (off / self.page, off % self.page);
        let slot = in_page / self.elt;
        (in_page.is_multiple_of(self.elt) && slot < self.per_page)
            .then_some(self.first + page * self.per_page + slot)
    }
}

impl Mempool {
    /// Creates a pool of `n` objects of `elt_size` bytes with per-lcore caches of
    /// `cache_size` objects (0: no cache). `obj_init` runs once per object, in this process.
    pub fn create(
        name: &str,
        n: u32,
        elt_size: u32,
        cache_size: u32,
        mut obj_init: impl FnMut(NonNull<u8>, u32),
    ) -> Result<Mempool> {
        if name.len() > NAME_MAX {
            return Err(Error::BadName {
                name: name.into(),
                why: "mempool names have at most 25 bytes",
            });
        }
        if n == 0 || elt_size == 0 {
            return Err(Error::Mempool(format!(
                "mempool '{name}': needs at least one object of at least one byte"
            )));
        }
        if cache_size > CACHE_MAX_SIZE || cache_size > n {
            return Err(Error::Mempool(format!(
                "mempool '{name}': cache size {cache_size} is above {} (the most, and at most the pool size {n})",
                CACHE_MAX_SIZE
            )));
        }
        let eal = crate::eal()?;
        let ring_count = (n + 1)
            .checked_next_power_of_two()
            .ok_or_else(|| Error::Mempool(format!("mempool '{name}': {n} objects is too many")))?;
        let ring = Ring::create(&format!("MP_{name}"), ring_count, RingFlags::empty())?;
        let elt = align_up(elt_size as u64, 64);
        let cache_slots = cache_size * 2;
        let stride = align_up(8 + 8 * cache_slots as u64, 64);
        let hdr_len = align_up(std::mem::size_of::<MempoolHeader>() as u64, 64);
        let caches_len = if cache_size > 0 {
            stride * MAX_LCORE as u64
        } else {
            0
        };
        let page = eal.config().page_size;
        let total = hdr_len + caches_len + ObjLayout::span_bound(n as u64, elt, page);
        let mz = match eal.memzone_reserve(&format!("MP_{name}"), total, 64, MemzoneFlags::empty())
        {
            Ok(mz) => mz,
            Err(e) => {
                let _ = ring.free();
                return Err(e);
            }
        };
        let base = mz.addr();
        let hdr = base as *mut MempoolHeader;
        // SAFETY: the memzone is fresh, zeroed (so every cache's len is 0), aligned and long
        // enough for the header, the caches and the objects laid out above.
        unsafe {
            hdr.write(MempoolHeader {
                name: ShmName::new(name)?,
                ops_id: OPS_RING_MP_MC,
                size: n,
                elt_size: elt as u32,
                cache_size,
                flush_thresh: cache_size + cache_size / 2,
                cache_slots,
                ring: ring.addr(),
                objs: ObjLayout::new(base + hdr_len + caches_len, elt, page),
                caches_start: base + hdr_len,
                cache_stride: stride,
                puts: CachePadded::new(SideLog::default()),
                gets: CachePadded::new(SideLog::default()),
            });
        }
        let mp = Mempool {
            hdr: NonNull::new(hdr).ok_or_else(|| Error::Mempool("null pool".into()))?,
            ring,
        };
        let objs = mp.hdr().objs;
        let mut batch = Vec::with_capacity(64);
        for i in 0..n {
            let addr = objs.addr(i as u64);
            if let Some(p) = NonNull::new(addr as *mut u8) {
                obj_init(p, i);
            }
            batch.push(addr as usize);
            if batch.len() == 64 || i == n - 1 {
                ring.sp_enqueue_bulk(&batch);
                batch.clear();
            }
        }
        Ok(mp)
    }

    /// Finds a pool created by any process of the group.
    pub fn lookup(name: &str) -> Result<Mempool> {
        let mz = crate::eal()?
            .memzone_lookup(&format!("MP_{name}"))
            .map_err(|_| {
                Error::Mempool(format!(
                    "no mempool named '{name}' in this group: has the primary created it yet?"
                ))
            })?;
        Self::from_memzone_addr(mz.addr())
    }

    fn from_memzone_addr(addr: u64) -> Result<Mempool> {
        // SAFETY: the memzone named MP_<name> holds a header written by create.
        unsafe { Mempool::from_addr(addr) }
    }

    /// The address of the pool's header, the same in every process of the group; for
    /// objects that record their pool in shared memory (mbufs).
    pub fn addr(&self) -> u64 {
        self.hdr.as_ptr() as u64
    }

    /// A handle to the pool whose header is at `addr`, without a name look-up.
    ///
    /// # Safety
    /// `addr` was returned by [`Mempool::addr`] of a pool of this group that still exists.
    pub unsafe fn from_addr(addr: u64) -> Result<Mempool> {
        let hdr = NonNull::new(addr as *mut MempoolHeader)
            .ok_or_else(|| Error::Mempool("null pool".into()))?;
        // SAFETY: the caller guarantees a live header written by create.
        let h = unsafe { hdr.as_ref() };
        if h.ops_id != OPS_RING_MP_MC {
            return Err(Error::Mempool(format!(
                "mempool '{}' uses driver id {}, which this binary does not have",
                h.name.as_str(),
                h.ops_id
            )));
        }
        // SAFETY: create recorded the address of the pool's own ring, which lives as long.
        let ring = unsafe { Ring::from_addr(h.ring) }
            .ok_or_else(|| Error::Mempool("pool without ring".into()))?;
        Ok(Mempool { hdr, ring })
    }

    /// Frees the pool; every object must be back and every process done with it.
    pub fn free(self) -> Result<()> {
        let name = self.name().to_string();
        let eal = crate::eal()?;
        self.ring.free()?;
        eal.memzone_free(&format!("MP_{name}"))
    }

    #[inline(always)]
    fn hdr(&self) -> &MempoolHeader {
        // SAFETY: written by create, alive as long as the pool.
        unsafe { self.hdr.as_ref() }
    }

    pub fn name(&self) -> &str {
        self.hdr().name.as_str()
    }
    /// Number of objects in the pool.
    pub fn size(&self) -> u32 {
        self.hdr().size
    }
    /// Bytes per object (rounded up to a cache line).
    pub fn elt_size(&self) -> u32 {
        self.hdr().elt_size
    }
    pub fn cache_size(&self) -> u32 {
        self.hdr().cache_size
    }

    /// The cache of `lcore`: its header and its slots.
    #[inline(always)]
    fn cache(&self, lcore: u32) -> (&CacheHeader, *mut usize) {
        let h = self.hdr();
        let at = h.caches_start + lcore as u64 * h.cache_stride;
        // SAFETY: lcore < MAX_LCORE and the caches area holds MAX_LCORE strides when
        // cache_size > 0 (callers check); the slots follow the 8-byte header.
        unsafe { (&*(at as *const CacheHeader), (at + 8) as *mut usize) }
    }

    /// The calling lcore's cache of this pool, found once for many calls, as DPDK's
    /// `rte_mempool_default_cache` is passed to `rte_mempool_generic_get` and `_put`.
    /// [`get_bulk`](Self::get_bulk) and [`put_bulk`](Self::put_bulk) look it up on every
    /// call. `None` for a pool without caches or a thread the EAL did not start.
    #[inline]
    pub fn local_cache(&self) -> Option<LocalCache<'_>> {
        let h = self.hdr();
        if h.cache_size == 0 {
            return None;
        }
        let lcore = lcore::current()?;
        let (ch, slots) = self.cache(lcore);
        Some(LocalCache {
            pool: self,
            lcore,
            len: &ch.len,
            pinned: &ch.pinned,
            slots,
            flush_thresh: h.flush_thresh as usize,
            _this_thread: PhantomData,
        })
    }

    /// Free objects held in the lcore caches.
    pub fn cached(&self) -> u32 {
        if self.cache_size() == 0 {
            return 0;
        }
        (0..MAX_LCORE as u32)
            .map(|l| self.cache(l).0.len.load(Ordering::Relaxed))
            .sum()
    }

    /// Objects free now: in the ring and in every cache.
    pub fn available(&self) -> u32 {
        self.ring.count() + self.cached()
    }

    /// Objects taken and not yet returned.
    pub fn in_use(&self) -> u32 {
        self.size().saturating_sub(self.available())
    }

    /// Takes `objs.len()` objects, all or none.
    #[inline]
    pub fn get_bulk(&self, objs: &mut [usize]) -> Result<(), Empty> {
        match self.local_cache() {
            Some(cache) => cache.get_bulk(objs),
            None => self.get_from_ring(objs),
        }
    }

    fn get_from_ring(&self, objs: &mut [usize]) -> Result<(), Empty> {
        if self.get_logged(objs, NO_LCORE, 0, |_| {}) == objs.len() {
            Ok(())
        } else {
            Err(Empty)
        }
    }

    /// Returns objects to the pool.
    #[inline]
    pub fn put_bulk(&self, objs: &[usize]) {
        match self.local_cache() {
            Some(cache) => cache.put_bulk(objs),
            None => self.put_to_ring(objs),
        }
    }

    fn put_to_ring(&self, objs: &[usize]) {
        self.debug_assert_owns(objs);
        self.put_logged(objs, NO_LCORE, 0, || {});
    }

    /// Puts `objs` into the ring, the one put under way: `objs` are slots `from..` of
    /// `lcore`'s cache (or the caller's own, NO_LCORE), and `done` runs once they are in
    /// the ring, before the put ends (a cache's count shrinks there).
    fn put_logged(&self, objs: &[usize], lcore: u32, from: u32, done: impl FnOnce()) {
        self.lock_side(Side::Put);
        self.put_locked(objs, lcore, from, done);
        self.unlock_side(Side::Put);
    }

    /// [`put_logged`](Self::put_logged) with the put side already held.
    fn put_locked(&self, objs: &[usize], lcore: u32, from: u32, done: impl FnOnce()) {
        self.publish_logged(objs, lcore, from);
        done();
        self.side_log(Side::Put).n.store(0, Ordering::Release);
    }

    /// Logs the put, then puts `objs` into the ring. Out of line: a place for tests to
    /// stop a process between the two halves of a put.
    #[inline(never)]
    fn publish_logged(&self, objs: &[usize], lcore: u32, from: u32) {
        self.log_move(Side::Put, objs.len(), lcore, from);
        // The ring holds every object of the pool, so this cannot fail.
        self.ring.sp_enqueue_bulk(objs);
    }

    /// Takes up to `objs.len()` objects from the ring (all or none for the caller's own,
    /// NO_LCORE; as many as there are for slots `from..` of `lcore`'s cache), the one get
    /// under way; `done` gets how many, before the get ends (a cache's count grows there).
    /// Returns how many.
    fn get_logged(
        &self,
        objs: &mut [usize],
        lcore: u32,
        from: u32,
        done: impl FnOnce(usize),
    ) -> usize {
        self.lock_side(Side::Get);
        let got = self.take_logged(objs, lcore, from);
        done(got);
        self.side_log(Side::Get).n.store(0, Ordering::Release);
        self.unlock_side(Side::Get);
        got
    }

    /// Logs the get, then takes from the ring. Out of line, as `publish_logged`.
    #[inline(never)]
    fn take_logged(&self, objs: &mut [usize], lcore: u32, from: u32) -> usize {
        self.log_move(Side::Get, objs.len(), lcore, from);
        if lcore == NO_LCORE {
            self.ring.sc_dequeue_bulk(objs)
        } else {
            self.ring.sc_dequeue_burst(objs)
        }
    }

    fn side_log(&self, side: Side) -> &SideLog {
        match side {
            Side::Put => &self.hdr().puts,
            Side::Get => &self.hdr().gets,
        }
    }

    /// How many objects have gone through `side` of the ring, modulo 2^32.
    fn side_tail(&self, side: Side) -> u32 {
        match side {
            Side::Put => self.ring.enqueued_count(),
            Side::Get => self.ring.dequeued_count(),
        }
    }

    /// Takes `side` of the ring for this process, repairing first the move of a process
    /// that died holding it ([`repair_move`](Self::repair_move)).
    fn lock_side(&self, side: Side) {
        let holder = &self.side_log(side).holder;
        holder.lock(crate::sys::own_pid(), |dead| {
            holder.free_from_dead(dead, || self.repair_move(side))
        });
    }

    fn unlock_side(&self, side: Side) {
        self.side_log(side).holder.unlock();
    }

    /// Says which objects the move about to start on `side` moves.
    #[inline(always)]
    fn log_move(&self, side: Side, n: usize, lcore: u32, from: u32) {
        let log = self.side_log(side);
        log.lcore.store(lcore, Ordering::Relaxed);
        log.from.store(from, Ordering::Relaxed);
        log.tail.store(self.side_tail(side), Ordering::Relaxed);
        // Release: whoever reads n sees the rest.
        log.n.store(n as u32, Ordering::Release);
    }

    /// Finishes or undoes the move of a process that died holding `side` of the ring (see
    /// [`SideLog`]): a claim it left unfinished is given up (those objects are still where
    /// they were), and the count of the cache whose objects went through the ring is made
    /// to say so.
    fn repair_move(&self, side: Side) {
        let log = self.side_log(side);
        let n = log.n.load(Ordering::Acquire);
        let abandoned = match side {
            Side::Put => self.ring.abandon_enqueue_claims(),
            Side::Get => self.ring.abandon_dequeue_claims(),
        };
        if n == 0 {
            return;
        }
        let moved = self
            .side_tail(side)
            .wrapping_sub(log.tail.load(Ordering::Relaxed));
        let (lcore, from) = (
            log.lcore.load(Ordering::Relaxed),
            log.from.load(Ordering::Relaxed),
        );
        let verb = match side {
            Side::Put => "put",
            Side::Get => "get",
        };
        if lcore == NO_LCORE {
            // A put that did not happen, or a get that did, leaves the objects in the dead
            // caller's own hands.
            if (side == Side::Put) == (moved == 0) {
                log::warn!(
                    "mempool '{}': a process died in a {verb} of {n} objects of its own: they are lost",
                    self.name()
                );
            }
        } else if moved > 0 {
            // The count may have changed already: the move's last step.
            let count = &self.cache(lcore).0.len;
            match side {
                Side::Put if count.load(Ordering::Acquire) > from => {
                    count.store(from, Ordering::Release)
                }
                Side::Get if count.load(Ordering::Acquire) == from => {
                    count.store(from + moved, Ordering::Release)
                }
                _ => {}
            }
        }
        log::info!(
            "mempool '{}': finished a dead process's {verb} of {n} objects ({moved} had gone through the ring; {abandoned} claimed slots given up)",
            self.name()
        );
        log.n.store(0, Ordering::Release);
    }

    /// Takes one object.
    #[inline]
    pub fn get(&self) -> Option<NonNull<u8>> {
        let mut o = [0usize];
        self.get_bulk(&mut o).ok()?;
        NonNull::new(o[0] as *mut u8)
    }

    /// Returns one object.
    #[inline]
    pub fn put(&self, obj: NonNull<u8>) {
        self.put_bulk(&[obj.as_ptr() as usize]);
    }

    /// A get that the lcore cache (its count, its slots) cannot serve as it is: refills it
    /// to `cache_size` plus what the call takes, or goes to the ring. Out of line, with its
    /// arguments in registers, so that the common case inlines into the caller's loop.
    #[cold]
    #[inline(never)]
    fn refill_and_get(
        &self,
        lcore: u32,
        count: &AtomicU32,
        slots: *mut usize,
        objs: &mut [usize],
    ) -> Result<(), Empty> {
        let size = self.hdr().cache_size as usize;
        let n = objs.len();
        if n > size {
            return self.get_from_ring(objs);
        }
        let mut len = count.load(Ordering::Relaxed) as usize;
        let want = size + n - len;
        // SAFETY: len + want = size + n <= 2 * size = cache_slots, and only this lcore's
        // thread touches its cache.
        let dst = unsafe { std::slice::from_raw_parts_mut(slots.add(len), want) };
        // The count grows inside the logged get: see repair_move.
        let from = len;
        len += self.get_logged(dst, lcore, from as u32, |got| {
            count.store((from + got) as u32, Ordering::Release)
        });
        if len < n {
            return self.get_from_ring(objs);
        }
        // SAFETY: n <= len <= cache_slots, and the cache is this thread's.
        unsafe { take_from_cache(count, slots, len, objs) };
        Ok(())
    }

    /// A put that fills the lcore cache to its flush threshold: the cache keeps
    /// `cache_size` objects, the new ones on top, and sends the older rest to the ring (so
    /// that what was just put stays in the cache: see [`LocalCache::put_pinned`]); more
    /// than `cache_size` go to the ring directly. Out of line, as `refill_and_get`.
    #[cold]
    #[inline(never)]
    fn put_and_flush(&self, lcore: u32, count: &AtomicU32, slots: *mut usize, objs: &[usize]) {
        let (size, n) = (self.hdr().cache_size as usize, objs.len());
        if n > size {
            return self.put_to_ring(objs);
        }
        self.debug_assert_owns(objs);
        let len = count.load(Ordering::Relaxed) as usize;
        // The caller found len + n >= flush_thresh >= size, so len >= size - n (equal only
        // for a cache of one object, whose flush threshold is 1).
        let keep = size - n;
        // SAFETY: keep <= len <= cache_slots.
        let old = unsafe { std::slice::from_raw_parts(slots.add(keep), len - keep) };
        // The count shrinks once the objects are in the ring, inside the logged put: the
        // repair of a put this process died in knows which happened.
        self.put_logged(old, lcore, keep as u32, || {
            count.store(keep as u32, Ordering::Release)
        });
        // SAFETY: keep + n = size <= cache_slots; the cache is this thread's alone.
        let dst = unsafe { std::slice::from_raw_parts_mut(slots.add(keep), n) };
        copy_objects(dst, objs);
        // Release: as in `LocalCache::put_bulk`.
        count.store(size as u32, Ordering::Release);
    }

    /// In debug builds, panics on an object that is not one of this pool's: a put of a
    /// stranger would hand out memory the pool does not own.
    #[inline(always)]
    fn debug_assert_owns(&self, objs: &[usize]) {
        debug_assert!(
            objs.iter().all(|o| self.contains(*o)),
            "object not from pool {}",
            self.name()
        );
    }

    /// Whether `addr` is the start of one of this pool's objects.
    pub fn contains(&self, addr: usize) -> bool {
        let h = self.hdr();
        h.objs.index(addr as u64).is_some_and(|i| i < h.size as u64)
    }

    /// Returns the objects cached for `lcore` to the ring. Only for an lcore whose thread
    /// is gone (its process died) or idle.
    pub fn flush_cache(&self, lcore: u32) {
        if self.cache_size() == 0 || lcore as usize >= MAX_LCORE {
            return;
        }
        let (ch, slots) = self.cache(lcore);
        // The count is read once a get or put this lcore's process died in is repaired:
        // until then it may leave out objects taken from the ring, or cover objects
        // already back in it.
        self.lock_side(Side::Get);
        self.unlock_side(Side::Get);
        self.lock_side(Side::Put);
        let len = ch.len.load(Ordering::Acquire) as usize;
        // SAFETY: len <= cache_slots; the owner thread is gone, so nobody else touches it.
        let objs = unsafe { std::slice::from_raw_parts(slots, len) };
        self.put_locked(objs, lcore, 0, || ch.len.store(0, Ordering::Release));
        self.unlock_side(Side::Put);
        ch.pinned.store(0, Ordering::Release);
    }

    /// Whether `lcore`'s cache has objects pinned (see [`LocalCache::put_pinned`]).
    pub fn has_pin(&self, lcore: u32) -> bool {
        self.cache_size() > 0
            && (lcore as usize) < MAX_LCORE
            && self.cache(lcore).0.pinned.load(Ordering::Acquire) != 0
    }

    /// The pinned objects holding `obj` in the cache of an lcore whose thread died (see
    /// [`LocalCache::put_pinned`]): for whoever repairs the shared state that still names
    /// them, before the lcore's cache is emptied. Only while nobody else repairs that state.
    pub fn dead_pin_holding(&self, obj: usize) -> Option<DeadPin> {
        if self.cache_size() == 0 {
            return None;
        }
        (0..MAX_LCORE as u32)
            .filter(|l| self.has_pin(*l) && lcore_orphaned(*l))
            .find_map(|lcore| {
                let (ch, slots) = self.cache(lcore);
                let len = ch.len.load(Ordering::Acquire) as usize;
                let pinned = ch.pinned.load(Ordering::Acquire) as usize;
                let from = len.saturating_sub(pinned);
                // SAFETY: from <= len <= cache_slots; the lcore's thread is gone, and a
                // cache is emptied only after the state naming its pins was repaired.
                let objs = unsafe { std::slice::from_raw_parts(slots.add(from), len - from) };
                objs.contains(&obj).then(|| DeadPin {
                    pool: *self,
                    lcore,
                    objs: objs.to_vec(),
                })
            })
    }
}

/// Objects a thread killed between [`LocalCache::put_pinned`] and
/// [`LocalCache::unpin`] left pinned in its lcore's cache: free, though the state its
/// thread was updating may still name them.
pub struct DeadPin {
    pool: Mempool,
    lcore: u32,
    /// The pinned objects, in the order they were put.
    pub objs: Vec<usize>,
}

impl DeadPin {
    /// Ends the pin, once the state that named the objects forgot them.
    pub fn unpin(self) {
        self.pool
            .cache(self.lcore)
            .0
            .pinned
            .store(0, Ordering::Release);
    }
}

/// Whether no live thread holds `lcore`: its holder died, or a process is repairing it.
fn lcore_orphaned(lcore: u32) -> bool {
    crate::eal().is_ok_and(|eal| eal.config().lcores[lcore as usize].owner.orphaned())
}

/// Whether any mempool's cache of `lcore` has objects pinned.
pub fn any_pin(lcore: u32) -> bool {
    list()
        .unwrap_or_default()
        .iter()
        .any(|mp| mp.has_pin(lcore))
}

/// Returned by [`Mempool::get_bulk`] when the pool has fewer free objects than asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("mempool exhausted")]
pub struct Empty;

/// One lcore's cache of a pool, held by that lcore's thread: see [`Mempool::local_cache`].
/// A stack of free objects: a get that finds too few refills it from the ring up to the
/// pool's cache size (plus what it takes), a put that fills it to `flush_thresh` sends all
/// but the cache size back.
pub struct LocalCache<'a> {
    pool: &'a Mempool,
    lcore: u32,
    len: &'a AtomicU32,
    pinned: &'a AtomicU32,
    slots: *mut usize,
    flush_thresh: usize,
    /// Not Send: the cache belongs to the lcore of the thread that looked it up.
    _this_thread: PhantomData<*mut ()>,
}

impl LocalCache<'_> {
    /// Takes `objs.len()` objects, all or none.
    #[inline(always)]
    pub fn get_bulk(&self, objs: &mut [usize]) -> Result<(), Empty> {
        let len = self.len.load(Ordering::Relaxed) as usize;
        if objs.len() > len {
            return self
                .pool
                .refill_and_get(self.lcore, self.len, self.slots, objs);
        }
        // SAFETY: n <= len <= cache_slots: the cache holds them.
        unsafe { take_from_cache(self.len, self.slots, len, objs) };
        Ok(())
    }

    /// Returns objects to the pool.
    #[inline(always)]
    pub fn put_bulk(&self, objs: &[usize]) {
        let n = objs.len();
        let len = self.len.load(Ordering::Relaxed) as usize;
        if len + n >= self.flush_thresh {
            return self
                .pool
                .put_and_flush(self.lcore, self.len, self.slots, objs);
        }
        self.pool.debug_assert_owns(objs);
        // SAFETY: len + n < flush_thresh <= cache_slots; the cache is this thread's alone.
        let dst = unsafe { std::slice::from_raw_parts_mut(self.slots.add(len), n) };
        copy_objects(dst, objs);
        // Release: no compiler may move the copy after the count. A primary flushing the
        // cache of a process that died here must find the new objects in every slot the
        // count covers, never what the slots held before.
        self.len.store((len + n) as u32, Ordering::Release);
    }

    /// Puts `objs` on top of the cache and pins them there until [`unpin`](Self::unpin),
    /// for a caller that still names them in shared memory (a TX ring's slots) and forgets
    /// them in between. The put is their one step back into the pool: should this process
    /// die before the unpin, whoever repairs what named them finds them here
    /// ([`Mempool::dead_pin_holding`]) and forgets them too, before the primary empties
    /// the cache. False, with nothing put, when they would not all stay in the cache.
    /// Out of line: once per batch, and a place to stop a process between the put and
    /// the unpin in tests.
    #[inline(never)]
    pub fn put_pinned(&self, objs: &[usize]) -> bool {
        if objs.len() > self.pool.hdr().cache_size as usize {
            return false;
        }
        // Relaxed: the count's release store in the put publishes the pin with them.
        self.pinned.store(objs.len() as u32, Ordering::Relaxed);
        self.put_bulk(objs);
        true
    }

    /// Ends the pin of [`put_pinned`](Self::put_pinned), after the caller forgot them.
    #[inline]
    pub fn unpin(&self) {
        // Release: the caller's forgetting is seen before the pin is gone.
        self.pinned.store(0, Ordering::Release);
    }
}

/// Moves the top `objs.len()` of the `len` objects of a cache (its count, its slots) to
/// `objs`.
///
/// # Safety
/// `objs.len() <= len <= ` the cache's slots, and the calling thread holds the cache's lcore.
#[inline(always)]
unsafe fn take_from_cache(count: &AtomicU32, slots: *mut usize, len: usize, objs: &mut [usize]) {
    let n = objs.len();
    // SAFETY: the caller's promise: slots len - n .. len hold objects only we touch.
    let src = unsafe { std::slice::from_raw_parts(slots.add(len - n), n) };
    copy_objects(objs, src);
    count.store((len - n) as u32, Ordering::Relaxed);
}

/// Copies `src` into the start of `dst`. The shape was measured (mempool_perf, natively
/// and under callgrind): `copy_from_slice` becomes a call to `memcpy` whose set-up
/// outweighs copying the 1 to 32 objects calls move; an indexed loop keeps a bounds check
/// per object and does not unroll unless n is a constant; an iterator chain vectorises into
/// shuffles that lose on short copies. So: four objects per step through pointers, a tail
/// of 1 to 3 by copying the last four again, and under four objects three single copies
/// that may overlap. With n not a constant, what a call costs is mostly its taken branches:
/// this shape takes one (the skipped tail) for n a multiple of 4, where a 4-step loop
/// followed by a 1-step tail loop and a test for n = 1 took four; get 4/put 4 and
/// get 8/put 8 keep 32 moved 1.2 to 1.7 times the objects per second (n = 1 about 0.9
/// times). In order, not last to first as DPDK's get: with n constant, a reversed copy
/// costs a shuffle per two objects (get 8/put 8 keep 32: 8.7 -> 7.8 instructions per
/// object); which of the cache's top n objects comes first does not matter.
#[inline(always)]
fn copy_objects(dst: &mut [usize], src: &[usize]) {
    let n = src.len();
    let dst = &mut dst[..n];
    let (d, s) = (dst.as_mut_ptr(), src.as_ptr());
    if n >= 4 {
        let mut k = 0;
        loop {
            // SAFETY: k + 3 < n, and both slices hold n elements (dst was cut to n).
            unsafe { copy4(d, s, k) };
            k += 4;
            if k + 4 > n {
                break;
            }
        }
        if k < n {
            // SAFETY: 4 <= n, so n - 4..n lies in both slices.
            unsafe { copy4(d, s, n - 4) };
        }
    } else if n > 0 {
        let (mid, last) = (n / 2, n - 1);
        // SAFETY: 0 < n < 4: elements 0, n / 2 and n - 1 lie in both slices.
        unsafe {
            *d = *s;
            *d.add(mid) = *s.add(mid);
            *d.add(last) = *s.add(last);
        }
    }
}

/// Copies the four objects from `at` on.
///
/// # Safety
/// `at..at + 4` lies in both `d`'s and `s`'s objects.
#[inline(always)]
unsafe fn copy4(d: *mut usize, s: *const usize, at: usize) {
    // SAFETY: the caller's promise.
    unsafe {
        *d.add(at) = *s.add(at);
        *d.add(at + 1) = *s.add(at + 1);
        *d.add(at + 2) = *s.add(at + 2);
        *d.add(at + 3) = *s.add(at + 3);
    }
}

/// Every mempool of the group, found through their memzones.
pub fn list() -> Result<Vec<Mempool>> {
    let eal = crate::eal()?;
    Ok(eal
        .memzone_list()
        .into_iter()
        .filter(|mz| mz.name().starts_with("MP_"))
        .filter_map(|mz| Mempool::from_memzone_addr(mz.addr()).ok())
        .collect())
}

/// Returns to their rings whatever the caches of `lcores` hold, in every mempool.
pub fn flush_caches_of(lcores: &[u32]) {
    for mp in list().unwrap_or_default() {
        for l in lcores {
            mp.flush_cache(*l);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE: u64 = 2 << 20;

    #[test]
    fn no_object_crosses_a_page_and_every_index_maps_back() {
        for (start, elt) in [
            (PAGE * 3 + 4160, 2304),
            (PAGE, 2304),
            (PAGE + 64, 64),
            (4096, 192),
        ] {
            let l = ObjLayout::new(start, elt, PAGE);
            let n = 5000;
            let mut prev_end = start;
            for i in 0..n {
                let a = l.addr(i);
                assert!(a >= prev_end, "object {i} overlaps the one before");
                assert_eq!(
                    a / PAGE,
                    (a + elt - 1) / PAGE,
                    "object {i} at {a:#x} crosses a page"
                );
                assert_eq!(l.index(a), Some(i));
                assert_eq!(l.index(a + 8), None);
                prev_end = a + elt;
            }
            assert!(prev_end - start <= ObjLayout::span_bound(n, elt, PAGE));
        }
    }

    #[test]
    fn objects_larger_than_a_page_are_packed() {
        let l = ObjLayout::new(PAGE + 64, PAGE + 128, PAGE);
        assert_eq!(l.addr(2), PAGE + 64 + 2 * (PAGE + 128));
        assert_eq!(l.index(PAGE + 64 + PAGE + 128), Some(1));
        assert_eq!(ObjLayout::span_bound(3, PAGE + 128, PAGE), 3 * (PAGE + 128));
    }

    #[test]
    fn copy_objects_copies_every_length() {
        for n in 0..=13usize {
            let src: Vec<usize> = (100..100 + n).collect();
            let mut dst = vec![0usize; n + 2];
            copy_objects(&mut dst, &src);
            let want: Vec<usize> = src.iter().copied().chain([0, 0]).collect();
            assert_eq!(dst, want, "n = {n}");
        }
    }

    #[test]
    fn an_address_before_the_pool_is_not_an_object() {
        let l = ObjLayout::new(PAGE + 64, 2304, PAGE);
        assert_eq!(l.index(PAGE), None);
        assert_eq!(l.index(2 * PAGE - 1), None);
    }
}
