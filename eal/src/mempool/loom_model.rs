//! Loom models of the mempool's logged moves through its ring: a cache's flush into the
//! ring and a cache's refill from it by two threads, one of them killed before any of its
//! writes, and the repair of its side by a third, on the pool's own code (its atomics
//! come from `crate::sync`). Run with
//! `RUSTFLAGS="--cfg loom" cargo test -p rpmd-eal --release --lib loom_model`.

use super::cache::{CacheHeader, CACHE_HEADER_BYTES};
use super::journal::{Side, SideLog};
use super::layout::ObjLayout;
use super::{Mempool, MempoolHeader, OPS_RING_MP_MC};
use crate::ring::{LocalRing, RingFlags};
use crate::shm::ShmName;
use crate::sync::{at_every_kill_point, killed_before_write, kills_seen, AtomicU32};
use crossbeam_utils::CachePadded;
use loom::thread;
use std::alloc::Layout;
use std::ptr::NonNull;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// Objects in the pool; a cache keeps 2 (flushes at 3, holds at most 4).
const OBJECTS: u32 = 5;
const CACHE_SIZE: u32 = 2;
/// The lcores of the putting and the getting thread.
const PUTTER: u32 = 0;
const GETTER: u32 = 1;

/// A pool in this process's heap, laid out as [`Mempool::create`] lays one out in a memzone,
/// with the caches of two lcores.
struct ModelPool {
    pool: Mempool,
    objects: Vec<usize>,
    _ring: LocalRing,
    _hdr: Box<MempoolHeader>,
    caches: NonNull<u8>,
    caches_layout: Layout,
}

// SAFETY: as Mempool; the memory is owned by the value.
unsafe impl Send for ModelPool {}
// SAFETY: as above.
unsafe impl Sync for ModelPool {}

impl Drop for ModelPool {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout; the pool handle dies with self.
        unsafe { std::alloc::dealloc(self.caches.as_ptr(), self.caches_layout) };
    }
}

impl ModelPool {
    /// The putter's cache holds objects 0 and 1, the ring 2 and 3; object 4 is the
    /// putter's, in its hand.
    fn new() -> Self {
        let ring_count = (OBJECTS + 1).next_power_of_two();
        let ring = LocalRing::new("MP_loom", ring_count, RingFlags::empty()).expect("ring");
        let cache_slots = CACHE_SIZE * 2;
        let stride = (CACHE_HEADER_BYTES + 8 * cache_slots as u64).next_multiple_of(64);
        let caches_layout = Layout::from_size_align(2 * stride as usize, 64).expect("cache layout");
        // SAFETY: a non-empty layout.
        let caches =
            NonNull::new(unsafe { std::alloc::alloc_zeroed(caches_layout) }).expect("cache memory");
        let objs = ObjLayout::new(0x10_0000, 64, 4096);
        let mut hdr = Box::new(MempoolHeader {
            name: ShmName::new("loom").expect("name"),
            ops_id: OPS_RING_MP_MC,
            size: OBJECTS,
            elt_size: 64,
            cache_size: CACHE_SIZE,
            flush_thresh: CACHE_SIZE + CACHE_SIZE / 2,
            cache_slots,
            ring: ring.addr(),
            objs,
            caches_start: caches.as_ptr() as u64,
            cache_stride: stride,
            puts: CachePadded::new(SideLog::default()),
            gets: CachePadded::new(SideLog::default()),
        });
        let pool = Mempool {
            hdr: NonNull::from(&mut *hdr),
            ring: *ring,
        };
        let objects: Vec<usize> = (0..OBJECTS as u64).map(|i| objs.addr(i) as usize).collect();
        for lcore in [PUTTER, GETTER] {
            let (ch, _) = pool.cache(lcore);
            // SAFETY: the header of `lcore`'s cache, in memory this value owns; loom's
            // atomics are not valid as zeroes, so each is made here.
            unsafe {
                (ch as *const CacheHeader as *mut CacheHeader).write(CacheHeader {
                    len: AtomicU32::new(0),
                    pinned: AtomicU32::new(0),
                })
            };
        }
        let (putter, slots) = pool.cache(PUTTER);
        // SAFETY: the putter's cache has 4 slots; nobody else uses it yet.
        unsafe { std::slice::from_raw_parts_mut(slots, 2) }.copy_from_slice(&objects[..2]);
        putter.len.store(2, Ordering::Release);
        assert_eq!(ring.enqueue_bulk(&objects[2..4]), 2);
        ModelPool {
            pool,
            objects,
            _ring: ring,
            _hdr: hdr,
            caches,
            caches_layout,
        }
    }

    /// What `lcore`'s cache holds.
    fn cached(&self, lcore: u32) -> Vec<usize> {
        let (ch, slots) = self.pool.cache(lcore);
        let len = ch.len.load(Ordering::Acquire) as usize;
        // SAFETY: len <= the cache's slots; every thread that used the cache is done.
        unsafe { std::slice::from_raw_parts(slots, len) }.to_vec()
    }

    /// Checks that every object but `lost` is in exactly one place: the ring, a cache, or
    /// `hands` (what live threads hold); `lost` nowhere.
    fn check_accounted(&self, hands: &[usize], lost: &[usize]) {
        let ring: Vec<usize> = std::iter::from_fn(|| self.pool.ring.dequeue_one()).collect();
        let (put_cache, get_cache) = (self.cached(PUTTER), self.cached(GETTER));
        let places = [&ring[..], &put_cache, &get_cache, hands].concat();
        for o in &self.objects {
            let want = usize::from(!lost.contains(o));
            assert_eq!(
                places.iter().filter(|p| *p == o).count(),
                want,
                "object {o:#x} in {want} place(s): ring {ring:x?}, caches {put_cache:x?} \
                 {get_cache:x?}, hands {hands:x?}"
            );
        }
        assert_eq!(places.len(), self.objects.len() - lost.len(), "{places:x?}");
    }
}

/// Which thread is killed.
#[derive(Clone, Copy)]
enum Victim {
    Putter,
    Getter,
}

/// The putter flushes its cache into the ring while the getter refills its cache from
/// it; `victim` is killed before its write `k`; once it is dead a third thread takes over
/// its side of the ring (the repair of the logged move), killed in turn before its write
/// `repair_kill` (then this thread takes over from it), while the other thread goes on.
/// Returns whether the victim and the repairer were killed.
fn flush_and_refill(victim: Victim, k: u32, repair_kill: Option<u32>) -> [bool; 2] {
    let mp = Arc::new(ModelPool::new());
    let (put_kill, get_kill) = match victim {
        Victim::Putter => (Some(k), None),
        Victim::Getter => (None, Some(k)),
    };
    let putter = {
        let mp = mp.clone();
        thread::spawn(move || {
            let mine = mp.objects[4];
            killed_before_write(put_kill, || mp.pool.lcore_cache(PUTTER).put_bulk(&[mine]))
        })
    };
    let getter = {
        let mp = mp.clone();
        thread::spawn(move || {
            killed_before_write(get_kill, || {
                let mut hand = [0usize];
                mp.pool
                    .lcore_cache(GETTER)
                    .get_bulk(&mut hand)
                    .map(|()| hand[0])
            })
        })
    };
    // Once the victim is dead (the join stands for the kernel telling so), a third thread
    // repairs its side while the other thread may still be at work.
    let (put_done, get_done, repaired) = match victim {
        Victim::Putter => {
            let put_done = putter.join().expect("putter");
            let repaired = repair(&mp, Side::Put, repair_kill);
            (put_done, getter.join().expect("getter"), repaired)
        }
        Victim::Getter => {
            let get_done = getter.join().expect("getter");
            let repaired = repair(&mp, Side::Get, repair_kill);
            (putter.join().expect("putter"), get_done, repaired)
        }
    };
    let got = get_done.map(|r| r.expect("the ring had objects for the getter"));
    let lost: Vec<usize> = match put_done {
        Some(()) => vec![],
        // Killed before its last write (the count that covers it): object 4 was still
        // the putter's own and dies with it.
        None => vec![mp.objects[4]],
    };
    // Both lcores' caches go back to the ring, as the primary empties a dead process's:
    // the next moves through both sides after the repair.
    mp.pool.flush_cache(PUTTER);
    mp.pool.flush_cache(GETTER);
    mp.check_accounted(got.as_slice(), &lost);
    [put_done.is_none() || get_done.is_none(), !repaired]
}

/// A third thread takes over `side` from the dead victim, as a process finding the side's
/// owner word naming a dead pid does (all threads here share one pid), killed before its
/// write `kill_at`; then this thread takes over from the dead repairer, whose word names
/// it as minus its pid. Returns whether the third thread finished.
fn repair(mp: &Arc<ModelPool>, side: Side, kill_at: Option<u32>) -> bool {
    let pid = crate::sys::own_pid();
    let repairer = {
        let mp = mp.clone();
        thread::spawn(move || killed_before_write(kill_at, || mp.pool.take_over_side(side, pid)))
    };
    let finished = repairer.join().expect("repairer").is_some();
    if !finished {
        assert!(
            mp.pool.take_over_side(side, -pid),
            "the dead repairer held the side"
        );
    }
    finished
}

#[test]
fn a_flush_killed_at_any_step_is_repaired_while_a_refill_goes_on() {
    at_every_kill_point(|k| flush_and_refill(Victim::Putter, k, None)[0]);
}

#[test]
fn a_refill_killed_at_any_step_is_repaired_while_a_flush_goes_on() {
    at_every_kill_point(|k| flush_and_refill(Victim::Getter, k, None)[0]);
}

/// Every repair must be safe to run again after a partial run (ARCHITECTURE.md, "Owner
/// words"): the victim killed at each step, its repairer killed at each of its own.
#[test]
fn a_repair_killed_at_any_step_is_run_again() {
    for victim in [Victim::Putter, Victim::Getter] {
        for k in 0.. {
            let mut victim_killed = false;
            for j in 0.. {
                let [victim, repairer] = kills_seen(move || flush_and_refill(victim, k, Some(j)));
                victim_killed |= victim;
                if !repairer {
                    break;
                }
            }
            if !victim_killed {
                break;
            }
        }
    }
}
