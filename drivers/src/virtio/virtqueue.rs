//! Split virtqueues (virtio 1.x, section 2.7) in the group's shared memory.
//!
//! A queue lives in one memzone: a small [`VqShared`] header with the driver's side of the
//! queue state, then the descriptor table, the available ring, the used ring, one cookie
//! per descriptor (the address of the mbuf a chain carries) and one 16-byte header slot per
//! descriptor (virtio-net headers that cannot be prepended to a packet). Any process of the
//! group can drive the queue through a [`VirtQueue`] handle; only the way to notify the
//! device is per process ([`Notifier`]), as ARCHITECTURE.md's rule 3 asks. One queue has one
//! poller at a time (the port layer records who), so the state needs no lock.
//!
//! The same code serves the PCI transport and vhost-user: both see these rings through
//! IOVAs (= virtual addresses of the group's memory for VFIO and for the vhost backend).

use eal::shm::ShmSafe;
use eal::{Memzone, MemzoneFlags};
use std::os::fd::RawFd;
use std::sync::atomic::{compiler_fence, fence, AtomicU16, Ordering};

/// The descriptor continues in `next`.
pub const DESC_F_NEXT: u16 = 1;
/// The device writes the buffer (RX).
pub const DESC_F_WRITE: u16 = 2;
/// The device asks not to be notified (`VIRTQ_USED_F_NO_NOTIFY`).
const USED_F_NO_NOTIFY: u16 = 1;
/// The driver asks not to be interrupted (`VIRTQ_AVAIL_F_NO_INTERRUPT`): we poll.
const AVAIL_F_NO_INTERRUPT: u16 = 1;
/// Size of a header slot.
pub const HDR_SLOT: u64 = 16;
const NONE: u16 = u16::MAX;

/// A descriptor of the split ring, as the spec lays it out.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Desc {
    /// The buffer's IOVA.
    pub addr: u64,
    /// The buffer's length.
    pub len: u32,
    /// `DESC_F_*`.
    pub flags: u16,
    /// The next descriptor of a chain.
    pub next: u16,
}

/// An entry of the used ring.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct UsedElem {
    /// The head of the chain the device used.
    pub id: u32,
    /// Bytes the device wrote into it.
    pub len: u32,
}

/// Chains of used entries linked together while the entries stay in the used ring (see
/// [`VirtQueue::link_used`]): the first chain's head, the last one's last descriptor.
#[derive(Clone, Copy, Debug, Default)]
pub struct UsedChains {
    first: u16,
    last: u16,
    entries: u16,
    descs: u16,
}

/// The driver's side of a queue, in shared memory.
#[repr(C, align(64))]
pub struct VqShared {
    size: u16,
    free_head: u16,
    num_free: u16,
    /// Next used entry to look at.
    last_used: u16,
    /// Our copy of the available index (the device only reads it).
    avail_idx: u16,
    /// Packets a TX queue dropped instead of adding them (see [`VqShared::taken`]).
    dropped: u16,
    _pad: [u16; 2],
    desc: u64,
    avail: u64,
    used: u64,
    cookies: u64,
    hdrs: u64,
}

// SAFETY: repr(C) integers and addresses inside the group's shared memory.
unsafe impl ShmSafe for VqShared {}

/// Where the parts of a queue of `size` entries sit from the start of its memzone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    /// Offset of the descriptor table.
    pub desc: u64,
    /// Offset of the available ring.
    pub avail: u64,
    /// Offset of the used ring.
    pub used: u64,
    /// Offset of the per-descriptor mbuf addresses.
    pub cookies: u64,
    /// Offset of the TX net headers.
    pub hdrs: u64,
    /// Bytes in all.
    pub total: u64,
}

fn align_up(v: u64, a: u64) -> u64 {
    v.div_ceil(a) * a
}

impl Layout {
    /// The layout of a queue of `size` entries.
    ///
    /// ```
    /// use drivers::virtio::virtqueue::Layout;
    ///
    /// let l = Layout::new(256);
    /// // 16-byte descriptors, then the available ring; the used ring on a page of its own.
    /// assert_eq!(l.avail - l.desc, 16 * 256);
    /// assert_eq!(l.used % 4096, 0);
    /// assert!(l.used >= l.avail + 6 + 2 * 256);
    /// assert!(l.total > l.hdrs && l.hdrs > l.cookies);
    /// ```
    pub fn new(size: u16) -> Layout {
        let n = size as u64;
        let desc = 64;
        let avail = desc + 16 * n;
        // The used ring gets its own page, as legacy devices required; harmless for modern.
        let used = align_up(avail + 6 + 2 * n, 4096);
        let cookies = align_up(used + 6 + 8 * n, 64);
        let hdrs = cookies + 8 * n;
        Layout {
            desc,
            avail,
            used,
            cookies,
            hdrs,
            total: hdrs + HDR_SLOT * n,
        }
    }
}

/// How this process tells the device there is work.
#[derive(Debug)]
pub enum Notifier {
    /// A write of `value` to a notify register mapped in this process.
    Mmio {
        /// The notify register.
        reg: *mut u16,
        /// The queue's index, written to it.
        value: u16,
    },
    /// A write to an eventfd (vhost-user kick).
    EventFd(RawFd),
}

// SAFETY: the MMIO pointer is a device register of this process's BAR mapping; writes to
// it are volatile and may come from any thread.
unsafe impl Send for Notifier {}

impl Notifier {
    /// Tells the device to look at the queue.
    #[inline]
    pub fn notify(&self) {
        match *self {
            // SAFETY: reg is a mapped notify register of this process.
            Notifier::Mmio { reg, value } => unsafe { std::ptr::write_volatile(reg, value) },
            // A queue handle made only to drain a reset queue notifies nobody.
            Notifier::EventFd(fd) if fd < 0 => {}
            Notifier::EventFd(fd) => {
                let one = 1u64.to_ne_bytes();
                // SAFETY: an 8-byte write to an eventfd we hold; a full counter only means
                // a kick is pending already.
                unsafe { libc::write(fd, one.as_ptr().cast(), 8) };
            }
        }
    }
}

/// Creates (or re-initialises) a queue of `size` entries in memzone `name`.
pub fn create(name: &str, size: u16) -> eal::Result<&'static VqShared> {
    if !size.is_power_of_two() || size == 0 || size > 32768 {
        return Err(eal::Error::BadQueueSize {
            name: name.into(),
            size,
        });
    }
    let eal = eal::eal()?;
    let lay = Layout::new(size);
    let mz = eal.memzone_reuse_or_reserve(name, lay.total, 4096, MemzoneFlags::IOVA_CONTIG)?;
    let sh = mz.as_ptr::<VqShared>();
    let base = mz.addr();
    // SAFETY: the memzone holds the header and the rings (lay.total bytes) and is not yet
    // used by any device or poller (queues are created before the port starts).
    unsafe {
        std::ptr::write_bytes(base as *mut u8, 0, lay.total as usize);
        sh.write(VqShared {
            size,
            free_head: 0,
            num_free: 0,
            last_used: 0,
            avail_idx: 0,
            dropped: 0,
            _pad: [0; 2],
            desc: base + lay.desc,
            avail: base + lay.avail,
            used: base + lay.used,
            cookies: base + lay.cookies,
            hdrs: base + lay.hdrs,
        });
        Ok(&*sh)
    }
}

/// The queue in memzone `name`, as made by [`create`].
pub fn lookup(name: &str) -> eal::Result<&'static VqShared> {
    let mz: Memzone = eal::eal()?.memzone_lookup(name)?;
    // SAFETY: the zone was initialised by `create` and lives as long as the group.
    Ok(unsafe { &*mz.as_ptr::<VqShared>() })
}

impl VqShared {
    /// Entries in the queue.
    pub fn size(&self) -> u16 {
        self.size
    }
    /// IOVAs of the descriptor table, available ring and used ring (IOVA = VA here; the
    /// transports translate when they must).
    pub fn ring_addrs(&self) -> (u64, u64, u64) {
        (self.desc, self.avail, self.used)
    }
    /// How many chains the driver has added and not yet taken back from the used ring
    /// (each holds one mbuf); any process may look (a snapshot while a poller works).
    pub fn in_flight(&self) -> u16 {
        self.avail_idx.wrapping_sub(self.last_used)
    }
    /// The cookies (mbuf addresses) of the chains added and not yet taken back, in the
    /// order they were added: those the device holds after a reset, or a queue holds when
    /// nobody polls it.
    pub fn in_flight_cookies(&self) -> impl Iterator<Item = u64> + '_ {
        let mask = self.size - 1;
        (0..self.in_flight()).map(move |k| {
            let slot = self.last_used.wrapping_add(k) & mask;
            // SAFETY: slot < size: an entry of the available ring (after its flags and
            // index words), which names a descriptor (masked) of the table; cookies has one
            // word per descriptor.
            unsafe {
                let head = *((self.avail + 4) as *const u16).add(slot as usize) & mask;
                *(self.cookies as *const u64).add(head as usize)
            }
        })
    }
    /// How many packets the queue took, mod 2^16: chains added (counted as each is added,
    /// published or not) and packets dropped instead.
    pub fn taken(&self) -> u16 {
        self.avail_idx.wrapping_add(self.dropped)
    }
    /// The used ring's index: how many chains the device has completed (mod 2^16).
    pub fn used_idx(&self) -> u16 {
        // SAFETY: `used` points at the used ring of this zone; its index word is at offset 2
        // and is only written by the device, atomically.
        unsafe { &*((self.used + 2) as *const AtomicU16) }.load(Ordering::Acquire)
    }
}

/// One process's handle on a queue.
pub struct VirtQueue {
    sh: *mut VqShared,
    desc: *mut Desc,
    avail_flags: *const AtomicU16,
    avail_idx: *const AtomicU16,
    avail_ring: *mut u16,
    used_flags: *const AtomicU16,
    used_idx: *const AtomicU16,
    used_ring: *const UsedElem,
    cookies: *mut u64,
    hdrs: u64,
    mask: u16,
    notifier: Notifier,
}

// SAFETY: the handle only points into shared memory and a device register; one poller at a
// time uses a queue (the port layer enforces it), from whichever thread owns the handle.
unsafe impl Send for VirtQueue {}

impl VirtQueue {
    /// A handle on `sh` that notifies the device through `notifier`.
    pub fn new(sh: &'static VqShared, notifier: Notifier) -> VirtQueue {
        VirtQueue {
            sh: sh as *const VqShared as *mut VqShared,
            desc: sh.desc as *mut Desc,
            avail_flags: sh.avail as *const AtomicU16,
            avail_idx: (sh.avail + 2) as *const AtomicU16,
            avail_ring: (sh.avail + 4) as *mut u16,
            used_flags: sh.used as *const AtomicU16,
            used_idx: (sh.used + 2) as *const AtomicU16,
            used_ring: (sh.used + 4) as *const UsedElem,
            cookies: sh.cookies as *mut u64,
            hdrs: sh.hdrs,
            mask: sh.size - 1,
            notifier,
        }
    }

    /// The queue state. The handle is its only user while it holds the queue and no
    /// method keeps the reference across a call to another, so the `&mut` is unique.
    #[allow(clippy::mut_from_ref)]
    #[inline(always)]
    fn st(&self) -> &mut VqShared {
        // SAFETY: the header lives as long as the group; this handle is its only user
        // while it holds the queue (one poller per queue).
        unsafe { &mut *self.sh }
    }

    /// Puts every descriptor on the free list and the indexes at 0 (the device is reset).
    pub fn reset(&mut self) {
        let n = self.mask as usize + 1;
        for i in 0..n {
            // SAFETY: i < size: inside the descriptor table.
            unsafe {
                *self.desc.add(i) = Desc {
                    next: if i + 1 < n { i as u16 + 1 } else { NONE },
                    ..Desc::default()
                }
            };
        }
        let st = self.st();
        st.free_head = 0;
        st.num_free = n as u16;
        st.last_used = 0;
        st.avail_idx = 0;
        // SAFETY: the ring words are inside the zone; nobody else uses a reset queue.
        unsafe {
            (*self.avail_idx).store(0, Ordering::Relaxed);
            (*self.avail_flags).store(AVAIL_F_NO_INTERRUPT, Ordering::Relaxed);
            (*self.used_idx).store(0, Ordering::Relaxed);
        }
    }

    /// Descriptors free now.
    pub fn num_free(&self) -> u16 {
        self.st().num_free
    }

    /// Descriptors given to the device and not yet used.
    pub fn in_flight(&self) -> u16 {
        self.st().in_flight()
    }

    /// See [`VqShared::taken`].
    pub fn taken(&self) -> u16 {
        self.st().taken()
    }

    /// Counts a packet dropped instead of added, before the caller frees it (a poller
    /// killed in between leaks it rather than leave it to be freed twice).
    pub fn count_dropped(&mut self) {
        let st = self.st();
        st.dropped = st.dropped.wrapping_add(1);
        compiler_fence(Ordering::SeqCst);
    }

    /// IOVA of the header slot of descriptor `i` (slots are zero and stay zero).
    pub fn hdr_slot_iova(&self, i: u16) -> u64 {
        let va = self.hdrs + i as u64 * HDR_SLOT;
        eal::eal().map_or(va, |e| e.config().virt_to_iova(va))
    }

    /// The descriptor the next [`add`](Self::add) starts its chain with.
    pub fn next_free(&self) -> u16 {
        self.st().free_head
    }

    /// Adds a chain of buffers `(iova, len, device_writes)`; `cookie` comes back with the
    /// used entry. Returns the head descriptor, or `None` when too few are free.
    #[inline]
    pub fn add(&mut self, bufs: &[(u64, u32, bool)], cookie: u64) -> Option<u16> {
        let st = self.st();
        if (st.num_free as usize) < bufs.len() || bufs.is_empty() {
            return None;
        }
        let head = st.free_head;
        let mut idx = head;
        for (k, &(addr, len, write)) in bufs.iter().enumerate() {
            // SAFETY: idx came from the free list, so it is < size.
            let d = unsafe { &mut *self.desc.add(idx as usize) };
            let next = d.next;
            d.addr = addr;
            d.len = len;
            d.flags = if write { DESC_F_WRITE } else { 0 }
                | if k + 1 < bufs.len() { DESC_F_NEXT } else { 0 };
            idx = next;
        }
        // A poller killed between these two stores must leave too few descriptors counted
        // free, never too many (an `add` would then walk past the free list's end).
        st.num_free -= bufs.len() as u16;
        compiler_fence(Ordering::SeqCst);
        st.free_head = idx;
        // SAFETY: head < size: inside the cookie array.
        unsafe { *self.cookies.add(head as usize) = cookie };
        let slot = (st.avail_idx & self.mask) as usize;
        // SAFETY: slot <= mask: inside the available ring.
        unsafe { *self.avail_ring.add(slot) = head };
        st.avail_idx = st.avail_idx.wrapping_add(1);
        Some(head)
    }

    /// Makes the chains added so far visible to the device and notifies it unless it said
    /// it does not need it.
    #[inline]
    pub fn publish(&mut self) {
        let idx = self.st().avail_idx;
        // SAFETY: the ring word is inside the zone.
        let avail_idx = unsafe { &*self.avail_idx };
        if avail_idx.load(Ordering::Relaxed) == idx {
            return;
        }
        // Release: the descriptors and ring entries are written before the index.
        avail_idx.store(idx, Ordering::Release);
        // The index store must be seen before we read the device's flag (a full barrier, as
        // virtio_mb in DPDK), or both sides could wait for each other.
        fence(Ordering::SeqCst);
        // SAFETY: as above.
        if unsafe { &*self.used_flags }.load(Ordering::Relaxed) & USED_F_NO_NOTIFY == 0 {
            self.notifier.notify();
        }
    }

    /// Notifies the device unconditionally (after start, so it looks at the queue).
    pub fn kick(&self) {
        self.notifier.notify();
    }

    /// How many used entries wait.
    #[inline]
    pub fn used_count(&self) -> u16 {
        // SAFETY: the ring word is inside the zone. Acquire: entries are read after.
        let idx = unsafe { &*self.used_idx }.load(Ordering::Acquire);
        idx.wrapping_sub(self.st().last_used)
    }

    /// Used entry `k` from the next one (`k` below [`used_count`](Self::used_count)), left
    /// in place: its chain's head descriptor, cookie and length.
    #[inline]
    pub fn peek_used(&self, k: u16) -> (u16, u64, u32) {
        let slot = (self.st().last_used.wrapping_add(k) & self.mask) as usize;
        // SAFETY: slot <= mask: inside the used ring, written by the device before it
        // published the index (acquired in used_count).
        let e = unsafe { std::ptr::read_volatile(self.used_ring.add(slot)) };
        let head = (e.id as u16) & self.mask;
        // SAFETY: head <= mask: inside the cookie array.
        (head, unsafe { *self.cookies.add(head as usize) }, e.len)
    }

    /// Takes the next used entry (check [`used_count`](Self::used_count) first): returns its
    /// cookie and length, and frees its chain.
    #[inline]
    pub fn pop_used(&mut self) -> (u64, u32) {
        let (head, cookie, len) = self.peek_used(0);
        let mut chains = UsedChains::default();
        self.link_used(&mut chains, head);
        self.take_used(chains);
        (cookie, len)
    }

    /// Links the chain starting at `head` (a used entry's, from
    /// [`peek_used`](Self::peek_used)) onto `chains`, for [`take_used`](Self::take_used). Only
    /// the chain's last descriptor changes, in its `next`, which the device and a walk of
    /// the chain ignore (no NEXT flag): the entry stays in the used ring as it was.
    #[inline]
    pub fn link_used(&self, chains: &mut UsedChains, head: u16) {
        let mut tail = head;
        let mut n = 1;
        loop {
            // SAFETY: chain links stay inside the table.
            let d = unsafe { &*self.desc.add(tail as usize) };
            if d.flags & DESC_F_NEXT == 0 {
                break;
            }
            tail = d.next & self.mask;
            n += 1;
        }
        if chains.entries == 0 {
            chains.last = tail;
        } else {
            // SAFETY: tail <= mask.
            unsafe { (*self.desc.add(tail as usize)).next = chains.first };
        }
        chains.first = head;
        chains.entries += 1;
        chains.descs += n;
    }

    /// Takes the next `chains.entries` used entries, whose chains
    /// [`link_used`](Self::link_used) linked, and gives the chains back to the free list.
    #[inline]
    pub fn take_used(&mut self, chains: UsedChains) {
        if chains.entries == 0 {
            return;
        }
        let st = self.st();
        st.last_used = st.last_used.wrapping_add(chains.entries);
        // Stored before the chains go back to the free list: a poller killed in between
        // leaks them, where the other order would let the next one free them twice.
        compiler_fence(Ordering::SeqCst);
        // SAFETY: last <= mask.
        unsafe { (*self.desc.add(chains.last as usize)).next = st.free_head };
        st.free_head = chains.first;
        st.num_free += chains.descs;
    }

    /// The cookies of every chain the device still holds (after a reset), freeing them.
    pub fn drain(&mut self) -> Vec<u64> {
        let out = self.st().in_flight_cookies().collect();
        self.reset();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A queue in plain memory, with a device side played by the test.
    struct Mem {
        buf: Vec<u64>,
    }

    impl Mem {
        fn queue(size: u16) -> (Mem, VirtQueue) {
            let lay = Layout::new(size);
            let mut m = Mem {
                buf: vec![0u64; lay.total as usize / 8 + 8],
            };
            let base = m.buf.as_mut_ptr() as u64;
            let base = align_up(base, 64);
            let sh = base as *mut VqShared;
            // SAFETY: the buffer holds lay.total bytes after the aligned base.
            unsafe {
                sh.write(VqShared {
                    size,
                    free_head: 0,
                    num_free: 0,
                    last_used: 0,
                    avail_idx: 0,
                    dropped: 0,
                    _pad: [0; 2],
                    desc: base + lay.desc,
                    avail: base + lay.avail,
                    used: base + lay.used,
                    cookies: base + lay.cookies,
                    hdrs: base + lay.hdrs,
                })
            };
            // SAFETY: the header was just written; the buffer outlives the test's queue.
            let sh: &'static VqShared = unsafe { &*sh };
            let mut q = VirtQueue::new(
                sh,
                Notifier::Mmio {
                    reg: Box::leak(Box::new(0u16)) as *mut u16,
                    value: 0,
                },
            );
            q.reset();
            (m, q)
        }
    }

    /// The device's side: takes the next available chain and returns it as used.
    fn device_use(q: &VirtQueue, seen: &mut u16, len: u32) -> Vec<Desc> {
        // SAFETY: test memory laid out by Mem::queue.
        unsafe {
            let avail = (*q.avail_idx).load(Ordering::Acquire);
            assert_ne!(avail, *seen, "nothing available");
            let head = *q.avail_ring.add((*seen & q.mask) as usize);
            let mut chain = vec![];
            let mut i = head;
            loop {
                let d = *q.desc.add(i as usize);
                chain.push(d);
                if d.flags & DESC_F_NEXT == 0 {
                    break;
                }
                i = d.next;
            }
            let used_idx = (*q.used_idx).load(Ordering::Relaxed);
            *(q.used_ring as *mut UsedElem).add((used_idx & q.mask) as usize) = UsedElem {
                id: head as u32,
                len,
            };
            (*q.used_idx).store(used_idx.wrapping_add(1), Ordering::Release);
            *seen = seen.wrapping_add(1);
            chain
        }
    }

    #[test]
    fn layout_keeps_parts_apart_and_aligned() {
        let l = Layout::new(256);
        assert_eq!(l.desc % 16, 0);
        assert!(l.avail >= l.desc + 16 * 256);
        assert_eq!(l.used % 4096, 0);
        assert!(l.used >= l.avail + 6 + 2 * 256);
        assert!(l.cookies >= l.used + 6 + 8 * 256);
        assert_eq!(l.total, l.hdrs + 16 * 256);
    }

    #[test]
    fn chains_go_round_and_come_back_free() {
        let (_m, mut q) = Mem::queue(8);
        let mut seen = 0u16;
        // Many rounds through a small queue, chains of 1 to 3 descriptors, wrapping the
        // 16-bit indexes is not needed to exercise the free list.
        for round in 0..1000u64 {
            let n = (round % 3 + 1) as usize;
            let bufs: Vec<(u64, u32, bool)> = (0..n)
                .map(|k| (0x1000 * (k as u64 + 1), 100 + k as u32, round % 2 == 0))
                .collect();
            assert!(q.add(&bufs, round).is_some());
            q.publish();
            assert_eq!(q.num_free(), 8 - n as u16);
            let chain = device_use(&q, &mut seen, 42);
            assert_eq!(chain.len(), n);
            for (k, d) in chain.iter().enumerate() {
                assert_eq!(d.addr, 0x1000 * (k as u64 + 1));
                assert_eq!(d.flags & DESC_F_WRITE != 0, round % 2 == 0);
            }
            assert_eq!(q.used_count(), 1);
            assert_eq!(q.pop_used(), (round, 42));
            assert_eq!(q.num_free(), 8);
        }
    }

    #[test]
    fn full_queue_refuses_and_drain_returns_what_the_device_held() {
        let (_m, mut q) = Mem::queue(4);
        for c in 0..4 {
            assert!(q.add(&[(0x2000, 64, true)], c).is_some());
        }
        assert!(q.add(&[(0x2000, 64, true)], 9).is_none());
        // Added chains count as held before they are published, and used ones until taken.
        assert_eq!(q.in_flight(), 4);
        q.publish();
        let mut seen = 0;
        device_use(&q, &mut seen, 60);
        assert_eq!(q.in_flight(), 4);
        assert_eq!(q.pop_used(), (0, 60));
        assert_eq!(q.in_flight(), 3);
        let mut left = q.drain();
        left.sort();
        assert_eq!(left, vec![1, 2, 3]);
        assert_eq!(q.num_free(), 4);
        assert_eq!(q.in_flight(), 0);
    }

    #[test]
    fn taken_counts_chains_as_added_and_drops_across_the_wrap() {
        let (_m, mut q) = Mem::queue(4);
        q.st().avail_idx = u16::MAX - 1;
        let mark = q.taken();
        assert!(q.add(&[(0x2000, 64, false)], 1).is_some());
        // Added, not yet published: taken already (a recovery publishes it).
        assert_eq!(q.taken().wrapping_sub(mark), 1);
        q.count_dropped();
        assert!(q.add(&[(0x2000, 64, false)], 2).is_some());
        q.publish();
        assert_eq!(q.taken().wrapping_sub(mark), 3);
        // A refused add is not taken until the caller counts it dropped.
        assert!(q.add(&[(0x2000, 64, false); 3], 3).is_none());
        assert_eq!(q.taken().wrapping_sub(mark), 3);
    }
}
