//! Packet buffers, as DPDK's `rte_mbuf`: a `#[repr(C)]` header at the start of each
//! mempool object, then the headroom and the data room.
//!
//! [`Mbuf`] owns one packet (a chain of segments): moving it moves the packet, dropping it
//! returns every segment whose reference count falls to zero to its pool. Bursts move
//! ownership into and out of drivers.

use eal::mempool::Mempool;
use eal::shm::ShmSafe;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU16, AtomicU32, Ordering};

mod holder;
mod tx_free;
use holder::put_back;
pub use holder::{
    end_hold, lend_to_kernel, lent_to_kernel, reclaim_held_by, take_hold, KernelReturns,
    KERNEL_HOLDER,
};
pub use tx_free::{
    dead_pin_holding, dead_pinned_prefix, fast_free_then_forget, free_then_forget, FREE_BATCH,
};

/// Default room before the packet data, for headers a driver or app prepends.
pub const DEFAULT_HEADROOM: u16 = 128;
/// Default room for packet data.
pub const DEFAULT_DATAROOM: u16 = 2048;
/// Size of the mbuf header (two cache lines, as DPDK's).
pub const HEADER_SIZE: usize = 128;

bitflags::bitflags! {
    /// Offload flags (a subset of DPDK's `RTE_MBUF_F_*`).
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
    pub struct OlFlags: u64 {
        /// `rss_hash` holds the RSS hash computed for the packet.
        const RX_RSS_HASH = 1 << 1;
        /// The device found the L4 checksum wrong.
        const RX_L4_CKSUM_BAD = 1 << 3;
        /// The device found the IPv4 header checksum wrong.
        const RX_IP_CKSUM_BAD = 1 << 4;
        /// The device checked the IPv4 header checksum: right.
        const RX_IP_CKSUM_GOOD = 1 << 7;
        /// The device checked the L4 checksum: right.
        const RX_L4_CKSUM_GOOD = 1 << 8;
        /// Ask the device to fill in the IPv4 header checksum.
        const TX_IP_CKSUM = 1 << 54;
        /// The packet is IPv4 (with `TX_IP_CKSUM`).
        const TX_IPV4 = 1 << 55;
    }
}

/// The header at the start of every packet buffer, in shared memory.
#[repr(C, align(64))]
pub struct MbufHeader {
    /// Address of the buffer (headroom + data room), right after this header.
    buf_addr: u64,
    buf_iova: u64,
    data_off: u16,
    refcnt: AtomicU16,
    nb_segs: u16,
    port: u16,
    ol_flags: u64,
    pkt_len: u32,
    data_len: u16,
    vlan_tci: u16,
    rss_hash: u32,
    packet_type: u32,
    buf_len: u16,
    /// The headroom a fresh buffer starts with (the pool's setting).
    reset_headroom: u16,
    /// The pid of the process that holds the mbuf privately (between a receive or an
    /// allocation and a send or a free), or 0: see `holder.rs`.
    holder: AtomicU32,
    /// Address of the owning mempool's header (see `Mempool::addr`).
    pool: u64,
    /// Next segment of a chain, or 0.
    next: u64,
}

// SAFETY: repr(C) integers and addresses inside the group's shared range.
unsafe impl ShmSafe for MbufHeader {}

#[cfg(test)]
impl MbufHeader {
    /// The header of a one-segment packet of `len` bytes with no buffer and no pool, for
    /// unit tests without an EAL that move mbufs and read their lengths: an mbuf on it
    /// frees nothing when dropped (it has no pool).
    pub(crate) fn without_pool(len: u16) -> MbufHeader {
        MbufHeader {
            buf_addr: 0,
            buf_iova: 0,
            data_off: 0,
            refcnt: AtomicU16::new(1),
            nb_segs: 1,
            port: u16::MAX,
            ol_flags: 0,
            pkt_len: len as u32,
            data_len: len,
            vlan_tci: 0,
            rss_hash: 0,
            packet_type: 0,
            buf_len: len,
            reset_headroom: 0,
            holder: AtomicU32::new(0),
            pool: 0,
            next: 0,
        }
    }
}

const _: () = assert!(std::mem::size_of::<MbufHeader>() <= HEADER_SIZE);

/// A pool of packet buffers.
#[derive(Clone, Copy, Debug)]
pub struct PktmbufPool {
    mp: Mempool,
}

/// Why a pool could not be made.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    /// The EAL failed (no memory, a name taken...).
    #[error(transparent)]
    Eal(#[from] eal::Error),
    /// Headroom and data room do not fit an mbuf's 16-bit lengths.
    #[error("mbuf pool '{0}': headroom + data room must fit in 65535 bytes")]
    TooLarge(String),
    /// The mempool found by that name holds no mbufs.
    #[error("'{0}' is a mempool, but not of packet buffers")]
    NotPktmbuf(String),
}

impl PktmbufPool {
    /// Creates a pool of `n` buffers with per-lcore caches of `cache` buffers.
    pub fn create(
        name: &str,
        n: u32,
        cache: u32,
        headroom: u16,
        data_room: u16,
    ) -> Result<Self, PoolError> {
        let buf_len = headroom
            .checked_add(data_room)
            .ok_or_else(|| PoolError::TooLarge(name.into()))?;
        let eal = eal::eal()?;
        let elt = (HEADER_SIZE + buf_len as usize) as u32;
        let mp = Mempool::create(name, n, elt, cache, |obj, _| {
            let hdr = obj.as_ptr() as *mut MbufHeader;
            let buf = obj.as_ptr() as u64 + HEADER_SIZE as u64;
            // SAFETY: obj is the start of a fresh object of `elt` bytes, aligned to 64.
            unsafe {
                hdr.write(MbufHeader {
                    buf_addr: buf,
                    buf_iova: eal.config().virt_to_iova(buf),
                    data_off: headroom,
                    refcnt: AtomicU16::new(1),
                    nb_segs: 1,
                    port: u16::MAX,
                    ol_flags: 0,
                    pkt_len: 0,
                    data_len: 0,
                    vlan_tci: 0,
                    rss_hash: 0,
                    packet_type: 0,
                    buf_len,
                    reset_headroom: headroom,
                    holder: AtomicU32::new(0),
                    pool: 0,
                    next: 0,
                })
            };
        })?;
        // The pool's address is known only now: record it in every header.
        let addr = mp.addr();
        let mut all = vec![0usize; n as usize];
        mp.get_bulk(&mut all)
            .map_err(|_| PoolError::NotPktmbuf(name.into()))?;
        for o in &all {
            // SAFETY: every object of the new pool was initialised above and is ours now.
            unsafe { (*(*o as *mut MbufHeader)).pool = addr };
        }
        mp.put_bulk(&all);
        Ok(PktmbufPool { mp })
    }

    /// Finds a pool created by any process of the group.
    pub fn lookup(name: &str) -> Result<Self, PoolError> {
        let mp = Mempool::lookup(name)?;
        if (mp.elt_size() as usize) < HEADER_SIZE {
            return Err(PoolError::NotPktmbuf(name.into()));
        }
        Ok(PktmbufPool { mp })
    }

    /// The pool whose header is at `addr` (an mbuf's `pool` field).
    ///
    /// # Safety
    /// `addr` is the address of a live pktmbuf pool of this group.
    pub unsafe fn from_addr(addr: u64) -> Option<Self> {
        // SAFETY: forwarded to the caller.
        unsafe { Mempool::from_addr(addr) }
            .ok()
            .map(|mp| PktmbufPool { mp })
    }

    /// The mempool behind the pool.
    pub fn mempool(&self) -> &Mempool {
        &self.mp
    }
    /// The pool's name.
    pub fn name(&self) -> &str {
        self.mp.name()
    }
    /// The pool's address, the same in every process (what an mbuf records).
    pub fn addr(&self) -> u64 {
        self.mp.addr()
    }
    /// Mbufs taken and not yet freed, in every process.
    pub fn in_use(&self) -> u32 {
        self.mp.in_use()
    }
    /// Mbufs free, in the ring and the lcore caches.
    pub fn available(&self) -> u32 {
        self.mp.available()
    }

    /// One empty packet buffer.
    #[inline]
    pub fn alloc(&self) -> Option<Mbuf> {
        let mut obj = [0usize];
        let mut m = None;
        self.mp
            .get_bulk_with(&mut obj, |o| {
                // SAFETY: a pool object, initialised as an mbuf, now ours.
                m = Some(unsafe { Mbuf::from_fresh(o[0], holder::own_stamp()) })
            })
            .ok()?;
        m
    }

    /// Appends `n` empty packet buffers to `out`, all or none.
    ///
    /// Each is reset and held ("Holds") while the lcore's cache still counts it, so a
    /// process killed in here loses none: the allocation goes a cache's worth at a time.
    #[inline]
    pub fn alloc_bulk(&self, out: &mut Vec<Mbuf>, n: usize) -> bool {
        let mut objs = [0usize; 64];
        let step = match self.mp.cache_size() as usize {
            0 => objs.len(),
            size => size.min(objs.len()),
        };
        let mut left = n;
        let start = out.len();
        out.reserve(n);
        let stamp = holder::own_stamp();
        while left > 0 {
            let k = left.min(step);
            let got = self.mp.get_bulk_with(&mut objs[..k], |got| {
                // SAFETY: each is a pool object, initialised as an mbuf, now ours.
                out.extend(got.iter().map(|&o| unsafe { Mbuf::from_fresh(o, stamp) }))
            });
            if got.is_err() {
                out.truncate(start); // The ones taken so far go back on drop.
                return false;
            }
            left -= k;
        }
        true
    }
}

/// One packet, owned: dropping it frees its segments.
///
/// `repr(transparent)`: a slice of mbufs is a slice of header addresses, which lets
/// [`free_bulk`] hand a burst to the mempool without copying it.
#[repr(transparent)]
pub struct Mbuf {
    hdr: NonNull<MbufHeader>,
}

// SAFETY: an Mbuf is the only handle to its buffer (shared buffers count references
// atomically), so it may move between threads and processes' lcores.
unsafe impl Send for Mbuf {}

impl std::fmt::Debug for Mbuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Mbuf({:#x}, {} bytes in {} segment(s))",
            self.addr(),
            self.pkt_len(),
            self.nb_segs()
        )
    }
}

impl Mbuf {
    /// Resets a buffer just taken from its pool, held by `stamp` (this process's, read once
    /// per allocation call).
    ///
    /// # Safety
    /// `addr` is the address of an mbuf header of a pool object that the caller now owns.
    #[inline]
    unsafe fn from_fresh(addr: usize, stamp: u32) -> Mbuf {
        // SAFETY: the caller's object, a pool object: never null.
        let hdr = unsafe { NonNull::new_unchecked(addr as *mut MbufHeader) };
        let mut m = Mbuf { hdr };
        let h = m.h_mut();
        h.data_off = h.reset_headroom.min(h.buf_len);
        h.refcnt.store(1, Ordering::Relaxed);
        h.nb_segs = 1;
        h.port = u16::MAX;
        h.ol_flags = 0;
        h.pkt_len = 0;
        h.data_len = 0;
        h.vlan_tci = 0;
        h.rss_hash = 0;
        h.packet_type = 0;
        h.next = 0;
        // The fields above as one store: nobody reads them before the hold below.
        eal::store_point!("mbuf.fields");
        h.holder.store(stamp, Ordering::Relaxed);
        eal::store_point!("mbuf.holder");
        m
    }

    /// Takes ownership of the mbuf at `addr` (as passed through a ring or a descriptor).
    ///
    /// # Safety
    /// `addr` is the address of an mbuf whose ownership the caller holds (one reference).
    /// Taken from a ring of another process's mbufs, the caller must also hold it
    /// ([`take_hold`]) before the ring lets it go ([`eal::ring::Ring::dequeue_burst_with`]),
    /// as [`MbufRing`](crate::mbuf_ring::MbufRing) does: the holder word of an mbuf in a
    /// ring may name a process that has it no more, and if that process dies, an mbuf
    /// that left the ring still in its name goes back to its pool.
    #[inline]
    pub unsafe fn from_addr(addr: usize) -> Mbuf {
        Mbuf {
            // SAFETY: forwarded to the caller; addresses of pool objects are never 0.
            hdr: unsafe { NonNull::new_unchecked(addr as *mut MbufHeader) },
        }
    }

    /// Gives up ownership; the address goes through a ring or a descriptor and comes back
    /// with [`Mbuf::from_addr`].
    #[inline]
    pub fn into_addr(self) -> usize {
        let a = self.hdr.as_ptr() as usize;
        std::mem::forget(self);
        a
    }

    /// The mbuf's header address, the same in every process.
    pub fn addr(&self) -> usize {
        self.hdr.as_ptr() as usize
    }

    #[inline(always)]
    fn h(&self) -> &MbufHeader {
        // SAFETY: we own the mbuf; its header is valid for as long.
        unsafe { self.hdr.as_ref() }
    }
    #[inline(always)]
    fn h_mut(&mut self) -> &mut MbufHeader {
        // SAFETY: as in h; &mut self makes the access exclusive in this process, and a
        // shared buffer (refcnt > 1) is only read by its holders.
        unsafe { self.hdr.as_mut() }
    }

    /// Total length of the packet over all segments.
    pub fn pkt_len(&self) -> u32 {
        self.h().pkt_len
    }
    /// Length of the data in this (first) segment.
    pub fn data_len(&self) -> u16 {
        self.h().data_len
    }
    /// Segments in the chain from this one.
    pub fn nb_segs(&self) -> u16 {
        self.h().nb_segs
    }
    /// Room before the data (DPDK's `rte_pktmbuf_headroom`).
    pub fn headroom(&self) -> u16 {
        self.h().data_off
    }
    /// Room left after the data of the last segment.
    pub fn tailroom(&self) -> u16 {
        let last = self.last();
        last.buf_len - last.data_off - last.data_len
    }
    /// The port it was received on.
    pub fn port(&self) -> u16 {
        self.h().port
    }
    /// Records the port it was received on.
    #[inline]
    pub fn set_port(&mut self, p: u16) {
        self.h_mut().port = p;
    }
    /// The RSS hash of the packet, if the device computed one.
    pub fn rss_hash(&self) -> Option<u32> {
        self.ol_flags()
            .contains(OlFlags::RX_RSS_HASH)
            .then_some(self.h().rss_hash)
    }
    /// Records an RSS hash and flags it.
    pub fn set_rss_hash(&mut self, hash: u32) {
        let h = self.h_mut();
        h.rss_hash = hash;
        h.ol_flags |= OlFlags::RX_RSS_HASH.bits();
    }
    /// The offload flags.
    pub fn ol_flags(&self) -> OlFlags {
        OlFlags::from_bits_truncate(self.h().ol_flags)
    }
    /// Sets the offload flags.
    pub fn set_ol_flags(&mut self, f: OlFlags) {
        self.h_mut().ol_flags = f.bits();
    }
    /// References to this segment.
    pub fn refcnt(&self) -> u16 {
        self.h().refcnt.load(Ordering::Relaxed)
    }
    /// IOVA of the first byte of data, for descriptors.
    pub fn data_iova(&self) -> u64 {
        self.h().buf_iova + self.h().data_off as u64
    }
    /// The pool the buffer belongs to.
    pub fn pool(&self) -> PktmbufPool {
        // SAFETY: the pool field was set when the pool was created and the pool outlives
        // its buffers.
        unsafe { PktmbufPool::from_addr(self.h().pool) }.expect("mbuf without a pool")
    }

    /// The data of the first segment.
    pub fn data(&self) -> &[u8] {
        let h = self.h();
        // SAFETY: data_off + data_len <= buf_len, inside the buffer we own.
        unsafe {
            std::slice::from_raw_parts(
                (h.buf_addr + h.data_off as u64) as *const u8,
                h.data_len as usize,
            )
        }
    }
    /// The segment's data, writable.
    pub fn data_mut(&mut self) -> &mut [u8] {
        let h = self.h();
        // SAFETY: as in data; &mut self gives exclusive access.
        unsafe {
            std::slice::from_raw_parts_mut(
                (h.buf_addr + h.data_off as u64) as *mut u8,
                h.data_len as usize,
            )
        }
    }

    /// Every segment's data, in order.
    pub fn segments(&self) -> impl Iterator<Item = &[u8]> {
        let mut cur = Some(self.h());
        std::iter::from_fn(move || {
            let h = cur?;
            // SAFETY: next is 0 or a segment owned through this chain.
            cur = (h.next != 0).then(|| unsafe { &*(h.next as *const MbufHeader) });
            // SAFETY: as in data.
            Some(unsafe {
                std::slice::from_raw_parts(
                    (h.buf_addr + h.data_off as u64) as *const u8,
                    h.data_len as usize,
                )
            })
        })
    }

    /// IOVA and length of each segment's data, for DMA descriptors.
    pub fn segment_iovas(&self) -> impl Iterator<Item = (u64, u32)> + '_ {
        let mut cur = Some(self.h());
        std::iter::from_fn(move || {
            let h = cur?;
            // SAFETY: next is 0 or a segment owned through this chain.
            cur = (h.next != 0).then(|| unsafe { &*(h.next as *const MbufHeader) });
            Some((h.buf_iova + h.data_off as u64, h.data_len as u32))
        })
    }

    /// The whole packet copied into one vector (for tests and slow paths).
    pub fn to_vec(&self) -> Vec<u8> {
        self.segments().flat_map(|s| s.iter().copied()).collect()
    }

    /// The last segment, as a raw pointer with the chain's (owned, writable) provenance.
    fn last_ptr(&self) -> *mut MbufHeader {
        let mut p = self.hdr.as_ptr();
        // SAFETY: every `next` is 0 or a segment owned through this chain.
        while unsafe { (*p).next } != 0 {
            // SAFETY: as above.
            p = unsafe { (*p).next } as *mut MbufHeader;
        }
        p
    }

    fn last(&self) -> &MbufHeader {
        // SAFETY: last_ptr returns a segment of the chain we own.
        unsafe { &*self.last_ptr() }
    }

    /// Sets the length of a buffer a NIC has just filled: `len` bytes (at most what the
    /// buffer holds) from the start of its data. The mbuf must be one empty segment, as
    /// RX queues arm them; cheaper than `append` on the RX path.
    #[inline]
    pub fn set_received_len(&mut self, len: u16) {
        let h = self.h_mut();
        debug_assert!(
            h.next == 0 && h.data_len == 0,
            "not an empty single segment"
        );
        let len = len.min(h.buf_len - h.data_off);
        h.data_len = len;
        h.pkt_len = len as u32;
    }

    /// Sets where and how long the frame a kernel or device has just written into this
    /// empty one-segment buffer is: `len` bytes from `data_off` into the buffer (both cut to
    /// the buffer), for a receiver that does not write at the pool's headroom (AF_XDP).
    #[inline]
    pub fn set_received_at(&mut self, data_off: u16, len: u16) {
        let h = self.h_mut();
        h.data_off = data_off.min(h.buf_len);
        let len = len.min(h.buf_len - h.data_off);
        h.data_len = len;
        h.pkt_len = len as u32;
    }

    /// The buffer's length (headroom and data room).
    pub fn buf_len(&self) -> u16 {
        self.h().buf_len
    }

    /// Grows the packet by `n` bytes at its end (in the last segment); returns them.
    pub fn append(&mut self, n: u16) -> Option<&mut [u8]> {
        if self.tailroom() < n {
            return None;
        }
        // SAFETY: the last segment of the chain we own exclusively (&mut self).
        let l = unsafe { &mut *self.last_ptr() };
        let at = l.buf_addr + l.data_off as u64 + l.data_len as u64;
        l.data_len += n;
        self.h_mut().pkt_len += n as u32;
        // SAFETY: at..at+n is tailroom of our buffer, checked above.
        Some(unsafe { std::slice::from_raw_parts_mut(at as *mut u8, n as usize) })
    }

    /// Grows the packet by `n` bytes at its start (into the headroom); returns them.
    pub fn prepend(&mut self, n: u16) -> Option<&mut [u8]> {
        let h = self.h_mut();
        if h.data_off < n {
            return None;
        }
        h.data_off -= n;
        h.data_len += n;
        h.pkt_len += n as u32;
        let at = h.buf_addr + h.data_off as u64;
        // SAFETY: at..at+n was headroom of our buffer, checked above.
        Some(unsafe { std::slice::from_raw_parts_mut(at as *mut u8, n as usize) })
    }

    /// Makes the `n` bytes of headroom right before the data zero, leaving the data where
    /// it is (a header for a device to read in front of it); `false` when the headroom is
    /// shorter. Bytes already zero are not written again: the line they share may be cached
    /// by the core that read it last (the device's), and a store would take it back.
    #[inline(always)]
    pub fn zero_before_data(&mut self, n: u16) -> bool {
        let h = self.h();
        if h.data_off < n {
            return false;
        }
        let at = (h.buf_addr + (h.data_off - n) as u64) as *mut u8;
        // SAFETY: at..at+n is headroom of our buffer (checked above); &mut self gives
        // exclusive access.
        let room = unsafe { std::slice::from_raw_parts_mut(at, n as usize) };
        // One OR over the bytes, no early exit: a few wide loads for a small header.
        if room.iter().fold(0, |acc, &b| acc | b) != 0 {
            room.fill(0);
        }
        true
    }

    /// Removes `n` bytes from the start of the first segment.
    pub fn adj(&mut self, n: u16) -> bool {
        let h = self.h_mut();
        if h.data_len < n {
            return false;
        }
        h.data_off += n;
        h.data_len -= n;
        h.pkt_len -= n as u32;
        true
    }

    /// Removes `n` bytes from the end of the last segment.
    pub fn trim(&mut self, n: u16) -> bool {
        // SAFETY: the last segment of the chain we own exclusively (&mut self).
        let l = unsafe { &mut *self.last_ptr() };
        if l.data_len < n {
            return false;
        }
        l.data_len -= n;
        self.h_mut().pkt_len -= n as u32;
        true
    }

    /// Appends the segments of `tail` to this packet.
    pub fn chain(&mut self, tail: Mbuf) {
        let (tl, tn) = (tail.pkt_len(), tail.nb_segs());
        // SAFETY: the last segment of the chain we own exclusively (&mut self); tail's
        // ownership moves into the chain (it is freed with it).
        unsafe { (*self.last_ptr()).next = tail.into_addr() as u64 };
        let h = self.h_mut();
        h.pkt_len += tl;
        h.nb_segs += tn;
    }

    /// Another handle to the same buffer (the reference count goes up); the data is then
    /// shared and should be treated as read-only by both.
    pub fn clone_ref(&self) -> Mbuf {
        let mut h = Some(self.h());
        while let Some(seg) = h {
            seg.refcnt.fetch_add(1, Ordering::AcqRel);
            eal::store_point!("mbuf.refcnt");
            // SAFETY: next is a segment owned through this chain.
            h = (seg.next != 0).then(|| unsafe { &*(seg.next as *const MbufHeader) });
        }
        Mbuf { hdr: self.hdr }
    }
}

/// Frees one segment if this was its last reference; returns the next segment.
///
/// # Safety
/// The caller owns one reference to `seg`.
#[inline]
unsafe fn release_segment(seg: NonNull<MbufHeader>) -> (Option<NonNull<MbufHeader>>, bool) {
    // SAFETY: forwarded to the caller.
    let h = unsafe { seg.as_ref() };
    let next = NonNull::new(h.next as *mut MbufHeader);
    // The common case, one owner, needs no atomic read-modify-write.
    let last = h.refcnt.load(Ordering::Acquire) == 1 || {
        let was = h.refcnt.fetch_sub(1, Ordering::AcqRel);
        eal::store_point!("mbuf.refcnt");
        was == 1
    };
    (next, last)
}

impl Drop for Mbuf {
    fn drop(&mut self) {
        let mut seg = Some(self.hdr);
        while let Some(s) = seg {
            // SAFETY: we own one reference to every segment of the chain.
            let (next, last) = unsafe { release_segment(s) };
            if last {
                // SAFETY: the last reference: the buffer goes back to its pool.
                let h = unsafe { &mut *s.as_ptr() };
                h.next = 0;
                eal::store_point!("mbuf.next");
                // SAFETY: the pool outlives its buffers.
                if let Some(p) = unsafe { PktmbufPool::from_addr(h.pool) } {
                    put_back(&p.mp, &[s.as_ptr() as usize]);
                }
            }
            seg = next;
        }
    }
}

/// The pool of `pkts` when they are the usual burst: single segments, one reference each,
/// all of one pool; they can go back in one call, straight from the vector.
fn plain_pool(pkts: &[Mbuf]) -> Option<PktmbufPool> {
    let pool = pkts.first()?.h().pool;
    let plain = pkts.iter().all(|m| {
        let h = m.h();
        h.next == 0 && h.refcnt.load(Ordering::Relaxed) == 1 && h.pool == pool
    });
    // SAFETY: pool is the live pool of these buffers (each header names it).
    plain.then(|| unsafe { PktmbufPool::from_addr(pool) })?
}

/// The addresses of `pkts`, as `put_bulk` takes them.
fn addrs(pkts: &[Mbuf]) -> &[usize] {
    // SAFETY: Mbuf is repr(transparent) over its header address, so the elements read as
    // addresses.
    unsafe { std::slice::from_raw_parts(pkts.as_ptr() as *const usize, pkts.len()) }
}

/// Frees many single-segment packets of one pool in one bulk; others one by one.
pub fn free_bulk(pkts: &mut Vec<Mbuf>) {
    if let Some(p) = plain_pool(pkts) {
        put_back(&p.mp, addrs(pkts));
        // SAFETY: the mbufs are back in their pool: they must not be dropped again.
        unsafe { pkts.set_len(0) };
        return;
    }
    let mut batch = [0usize; 64];
    let mut n = 0;
    let mut pool = 0u64;
    for m in pkts.drain(..) {
        let h = m.h();
        let simple = h.next == 0 && h.refcnt.load(Ordering::Relaxed) == 1;
        if !simple {
            drop(m);
            continue;
        }
        if n == batch.len() || (n > 0 && h.pool != pool) {
            // SAFETY: pool is the live pool of the buffers in the batch.
            if let Some(p) = unsafe { PktmbufPool::from_addr(pool) } {
                put_back(&p.mp, &batch[..n]);
            }
            n = 0;
        }
        pool = h.pool;
        batch[n] = m.into_addr();
        n += 1;
    }
    if n > 0 {
        // SAFETY: as above.
        if let Some(p) = unsafe { PktmbufPool::from_addr(pool) } {
            put_back(&p.mp, &batch[..n]);
        }
    }
}
