//! Which process holds an mbuf privately, so that what a killed process held between a
//! receive (or an allocation) and a send (or a free) goes back to its pool
//! (ARCHITECTURE.md, "Crash model", "Holds").
//!
//! Every mbuf header has a `holder` word: the pid of the process that took it out of shared
//! state into its own hands, or 0. An allocation sets it (so a PMD's RX refill posts
//! buffers already held by their poller, and a receive hands them out with no store), a
//! poller taking an RX queue sets it on the buffers the queue posted ([`take_hold`]), a
//! free clears it once the object is in the freeing lcore's cache ([`put_back`]), and
//! whoever repairs or releases a queue clears it on the mbufs the queue names
//! ([`end_hold`]). When a process dies, [`reclaim_held_by`] finds the mbufs it
//! still held (its hold set, in no cache, named by no queue) and frees them.

use super::{Mbuf, MbufHeader, HEADER_SIZE};
use eal::mempool::Mempool;
use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::OnceLock;

/// This process's stamp: its pid.
#[inline(always)]
pub(super) fn own_stamp() -> u32 {
    static STAMP: OnceLock<u32> = OnceLock::new();
    *STAMP.get_or_init(|| eal::own_pid() as u32)
}

/// The header of the mbuf at `addr`.
///
/// # Safety
/// `addr` is the address of an mbuf of a live pool of the group.
unsafe fn header<'a>(addr: usize) -> &'a MbufHeader {
    // SAFETY: forwarded to the caller.
    unsafe { &*(addr as *const MbufHeader) }
}

/// Ends the holds on `objs`.
#[inline(always)]
pub(super) fn clear(objs: &[usize]) {
    for &o in objs {
        // SAFETY: the caller's objects are mbufs of a live pool.
        unsafe { header(o) }.holder.store(0, Ordering::Relaxed);
        eal::store_point!("mbuf.holder");
    }
}

/// Returns mbufs this process holds to their pool `mp`, ending the hold where no other
/// process can take them yet: after the put when they land in this lcore's cache (a kill
/// in between leaves them free and held, which [`reclaim_held_by`] recognises), before it
/// for a pool without caches (a kill in between loses them: ARCHITECTURE.md, "Known
/// windows").
#[inline]
pub(crate) fn put_back(mp: &Mempool, objs: &[usize]) {
    match mp.local_cache() {
        // A put keeps the newest objects in the cache, up to its size: more go a cache's
        // worth at a time, each in the cache when its holds end.
        Some(c) => {
            for part in objs.chunks(mp.cache_size().max(1) as usize) {
                c.put_bulk(part);
                clear(part);
            }
        }
        None => {
            clear(objs);
            mp.put_bulk(objs);
        }
    }
}

/// Sets the holder word of every segment of the chain at `first` to `v`.
///
/// # Safety
/// `first` is the address of an mbuf of a live pool of the group, whose chain nobody
/// changes meanwhile.
#[inline(always)]
pub(super) unsafe fn set_chain_holder(first: usize, v: u32) {
    // SAFETY: forwarded to the caller.
    unsafe { header(first) }.holder.store(v, Ordering::Relaxed);
    eal::store_point!("mbuf.holder");
    for s in chain_after(first) {
        // SAFETY: a segment of that chain.
        unsafe { header(s) }.holder.store(v, Ordering::Relaxed);
        eal::store_point!("mbuf.holder");
    }
}

/// Ends any hold on the chain at `addr`, which a queue names (its poller left or died,
/// and nobody polls it): what a queue names is the queue's.
///
/// # Safety
/// `addr` is the address of an mbuf of a live pool of the group.
pub unsafe fn end_hold(addr: usize) {
    // SAFETY: forwarded to the caller; the queue's chains change only with a poller.
    unsafe { set_chain_holder(addr, 0) }
}

/// Makes this process the holder of the chain at `addr`, which a queue names and this
/// process has just taken for polling.
///
/// # Safety
/// `addr` is the address of an mbuf of a live pool of the group.
pub unsafe fn take_hold(addr: usize) {
    // SAFETY: forwarded to the caller; the queue's chains change only with its poller.
    unsafe { set_chain_holder(addr, own_stamp()) }
}

/// Holder words with this bit set name a kernel queue rather than a process: an AF_XDP
/// socket's rings and the kernel behind them hold the one-segment mbufs their driver lent
/// them (`drivers::af_xdp`), and the driver puts its port, direction and queue in the low
/// bits. Pids stay below 2^22, so no process's stamp has this bit. [`reclaim_held_by`]
/// never frees such an mbuf: it is the queue's, counted and given back by its driver.
pub const KERNEL_HOLDER: u32 = 1 << 31;

/// Marks the one-segment mbuf at `addr` as lent to the kernel queue `token` (a word with
/// [`KERNEL_HOLDER`] set).
///
/// # Safety
/// `addr` is the address of a one-segment mbuf of a live pool of the group, which the
/// caller's queue lends to the kernel.
#[inline(always)]
pub unsafe fn lend_to_kernel(addr: usize, token: u32) {
    debug_assert!(token & KERNEL_HOLDER != 0);
    // SAFETY: forwarded to the caller.
    unsafe { header(addr) }
        .holder
        .store(token, Ordering::Relaxed);
    eal::store_point!("mbuf.holder");
}

/// This process's holder word, read once for a burst of mbufs a queue takes back from the
/// kernel.
#[derive(Clone, Copy, Debug)]
pub struct KernelReturns(u32);

impl KernelReturns {
    /// This process's word.
    #[inline(always)]
    pub fn to_this_process() -> KernelReturns {
        KernelReturns(own_stamp())
    }

    /// Makes this process the holder of the one-segment mbuf at `addr`, which its queue
    /// takes back from the kernel to hand out.
    ///
    /// # Safety
    /// `addr` is the address of a one-segment mbuf of a live pool of the group, which the
    /// caller's queue has just taken back from the kernel.
    #[inline(always)]
    pub unsafe fn hold(self, addr: usize) {
        // SAFETY: forwarded to the caller.
        unsafe { header(addr) }
            .holder
            .store(self.0, Ordering::Relaxed);
        eal::store_point!("mbuf.holder");
    }
}

/// The mbufs of `pool` lent to kernel queue `token`: read from every header, for counting
/// and for taking them back once the kernel let go of them (not on a hot path).
pub fn lent_to_kernel(pool: &super::PktmbufPool, token: u32) -> impl Iterator<Item = usize> + '_ {
    pool.mempool().objects().filter(move |&o| {
        // SAFETY: an object of a pktmbuf pool.
        unsafe { header(o) }.holder.load(Ordering::Acquire) == token
    })
}

/// Makes this process the holder of the chain at `first` when it has the only reference
/// to every segment (a shared one has several holders, and the word can name only one).
///
/// # Safety
/// `first` is the address of an mbuf of a live pool of the group that this process has a
/// reference to.
pub(super) unsafe fn hold_if_sole(first: usize) {
    let sole = std::iter::once(first).chain(chain_after(first)).all(|s| {
        // SAFETY: a segment of the caller's chain.
        unsafe { header(s) }.refcnt.load(Ordering::Relaxed) == 1
    });
    if sole {
        // SAFETY: the only reference: nobody else changes the chain.
        unsafe { set_chain_holder(first, own_stamp()) }
    }
}

/// Whether `mp` holds mbufs: its objects are large enough and the first one's header names
/// the pool.
fn is_pktmbuf_pool(mp: &Mempool) -> bool {
    (mp.elt_size() as usize) >= HEADER_SIZE
        && mp.objects().next().is_some_and(|o| {
            // SAFETY: an object of mp, at least a header long; read as plain words.
            unsafe { header(o) }.pool == mp.addr()
        })
}

/// The segments after the first of the chain at `first`.
fn chain_after(first: usize) -> impl Iterator<Item = usize> {
    let next = |at: usize| {
        // SAFETY: an mbuf of a chain a dead process held; nobody else changes it.
        let n = unsafe { header(at) }.next as usize;
        (n != 0).then_some(n)
    };
    std::iter::successors(next(first), move |&s| next(s))
}

/// Frees the mbufs dead process `dead` still held, in every pool of the group; returns how
/// many. Run once the queues it polled were repaired (their mbufs' holds ended) and before
/// its lcores' caches are emptied (`eal::before_emptying_dead_caches`). Running it again
/// finds nothing more.
///
/// An mbuf whose word names `dead` is not freed when a ring holds it (what a ring holds is
/// the ring's: an enqueue leaves the word as it is) or a dead lcore's cache does (a free or
/// an allocation killed inside the cache's step): only its hold ends. The rings are read
/// before the words, and a consumer takes its hold before its ring lets go of an mbuf, so
/// an mbuf that left a ring since names its consumer by the time its word is read.
pub fn reclaim_held_by(dead: i32) -> u32 {
    let stamp = dead as u32;
    let in_rings: HashSet<usize> = eal::ring::Ring::list()
        .unwrap_or_default()
        .iter()
        .flat_map(|r| r.contents())
        .collect();
    let mut freed = 0;
    for mp in eal::mempool::list().unwrap_or_default() {
        if !is_pktmbuf_pool(&mp) {
            continue;
        }
        let mut held = Vec::new();
        let mut cached: Option<HashSet<usize>> = None;
        for o in mp.objects() {
            // SAFETY: an object of a pktmbuf pool.
            let h = unsafe { header(o) };
            if h.holder.load(Ordering::Acquire) != stamp {
                continue;
            }
            if in_rings.contains(&o) {
                // A live consumer may be taking it and its hold at this moment: end only
                // the dead process's.
                let _ = h
                    .holder
                    .compare_exchange(stamp, 0, Ordering::AcqRel, Ordering::Relaxed);
                continue;
            }
            let cached = cached.get_or_insert_with(|| mp.cached_objects().into_iter().collect());
            if cached.contains(&o) {
                h.holder.store(0, Ordering::Release);
                continue;
            }
            held.push(o);
        }
        // The segments of a held chain go back with its first.
        let segments: HashSet<usize> = held.iter().flat_map(|&o| chain_after(o)).collect();
        for o in held.into_iter().filter(|o| !segments.contains(o)) {
            // SAFETY: the dead process held this mbuf (one reference): nobody else will
            // free it.
            drop(unsafe { Mbuf::from_addr(o) });
            freed += 1;
        }
    }
    if freed > 0 {
        log::info!("process {dead} died holding {freed} mbufs: back in their pools");
    }
    freed
}
