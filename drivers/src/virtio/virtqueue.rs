//! Virtqueues (virtio 1.x: split rings, section 2.7, and packed rings, 2.8 in
//! [`packed`]) in the group's shared memory.
//!
//! A queue lives in one memzone: a small [`VqShared`] header with the driver's side of the
//! queue state, then the descriptor table, the available ring, the used ring, one cookie
//! per descriptor (the address of the mbuf a chain carries), one 16-byte header slot per
//! descriptor (virtio-net headers that cannot be prepended to a packet) and the driver's
//! own links between descriptors (free list and chains). Any process of the
//! group can drive the queue through a [`VirtQueue`] handle; only the way to notify the
//! device is per process ([`Notifier`]), as ARCHITECTURE.md's rule 3 asks. One queue has one
//! poller at a time (the port layer records who), so the state needs no lock.
//!
//! The same code serves the PCI transport and vhost-user: both see these rings through
//! IOVAs (= virtual addresses of the group's memory for VFIO and for the vhost backend).
//!
//! The device is not trusted: what it writes (the used ring) is checked before use, and a
//! lie is skipped and counted ([`Lie`]). Chains are walked through the driver's links, never
//! through the descriptors' `next` the device could change; a chain's head holds its cookie
//! from `add` until it is taken back, so a used entry naming anything else is refused.

use eal::shm::ShmSafe;
use eal::{Memzone, MemzoneFlags};
use std::cell::Cell;
use std::os::fd::RawFd;
use std::sync::atomic::{compiler_fence, fence, AtomicU16, AtomicU64, AtomicU8, Ordering};

pub mod packed;
mod recovery;
mod split_in_order;

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
/// [`VirtQueue::link_used`]): the first chain's head, the last one's last descriptor, and
/// the entries skipped as lies among them.
#[derive(Clone, Copy, Debug, Default)]
pub struct UsedChains {
    first: u16,
    last: u16,
    entries: u16,
    /// Links the chains hold: descriptors of a split ring, buffer ids of a packed one.
    descs: u16,
    skipped: u16,
    /// Packed rings: ring slots the entries span (a chain's used entry stands for all of
    /// its descriptors).
    slots: u16,
}

impl UsedChains {
    /// Used entries on these chains (taken or skipped).
    pub fn entries(&self) -> u16 {
        self.entries
    }
}

/// The driver's link of one descriptor: the next one (of its chain, or of the free list)
/// and, at a chain's head, how many descriptors the chain has and how many bytes the device
/// may write into them.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
struct Link {
    next: u16,
    descs: u16,
    writable: u32,
}

/// What a device can do wrong that the queue notices, each counted in [`VqShared`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lie {
    /// A used entry whose id is past the ring or names no chain in flight (never added, or
    /// already taken back): skipped.
    BadUsedId = 0,
    /// A used entry whose length is beyond what the chain's device-writable buffers hold
    /// (or too short to be a frame): the chain is taken back, its packet dropped.
    BadUsedLen = 1,
    /// A used index ahead of the device's entries by more than the chains in flight: only
    /// as many entries as chains in flight are looked at.
    BadUsedIdx = 2,
}

impl Lie {
    /// Every kind, in counter order.
    pub const ALL: [Lie; 3] = [Lie::BadUsedId, Lie::BadUsedLen, Lie::BadUsedIdx];

    /// The xstat's name without its `rx_`/`tx_` prefix.
    pub fn name(self) -> &'static str {
        match self {
            Lie::BadUsedId => "bad_used_id",
            Lie::BadUsedLen => "bad_used_len",
            Lie::BadUsedIdx => "bad_used_idx",
        }
    }
}

/// What [`VirtQueue::take_next_used`] found in the next used entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Used {
    /// A chain in flight and the bytes the device wrote into it.
    Chain {
        /// The cookie given to `add`.
        cookie: u64,
        /// The used length.
        len: u32,
    },
    /// A chain in flight with a length beyond its buffers or below the least asked: taken,
    /// its cookie to be dropped by the caller.
    BadLen {
        /// The cookie given to `add`.
        cookie: u64,
    },
    /// An entry naming no chain in flight: skipped.
    BadId,
}

/// How a queue's ring is laid out and used, from the features agreed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RingKind {
    /// Split rings (virtio 1.0).
    Split = 0,
    /// Packed rings (`VIRTIO_F_RING_PACKED`).
    Packed = 1,
    /// Packed rings used in order (and `VIRTIO_F_IN_ORDER`): a chain's buffer id is its
    /// first slot, and the device may write one used entry for a batch of chains.
    PackedInOrder = 2,
    /// Split rings used in order (`VIRTIO_F_IN_ORDER`): chains take descriptors in ring
    /// order, and the device may write one used entry for a batch of chains.
    SplitInOrder = 3,
}

impl RingKind {
    /// The kind the features `f` agree on.
    pub fn from_features(f: u64) -> RingKind {
        use super::defs::feature;
        match (f & feature::RING_PACKED != 0, f & feature::IN_ORDER != 0) {
            (false, false) => RingKind::Split,
            (false, true) => RingKind::SplitInOrder,
            (true, false) => RingKind::Packed,
            (true, true) => RingKind::PackedInOrder,
        }
    }

    /// How the primary's log names it.
    pub fn describe(self) -> &'static str {
        match self {
            RingKind::Split => "split rings",
            RingKind::SplitInOrder => "split rings, in order",
            RingKind::Packed => "packed rings",
            RingKind::PackedInOrder => "packed rings, in order",
        }
    }
}

/// A cookie's low bit, set while a chain is being taken back (between
/// [`VirtQueue::link_used`] and [`VirtQueue::take_used`]): a second used entry naming the
/// same chain in that batch is refused. Cookies are mbuf or buffer addresses, aligned.
const COOKIE_TAKING: u64 = 1;
/// Bytes of a queue's name kept in its header, for messages.
const NAME_LEN: usize = 32;

/// The driver's side of a queue, in shared memory.
#[repr(C, align(64))]
pub struct VqShared {
    size: u16,
    /// Head of the free list: of descriptors (split), of buffer ids (packed).
    free_head: u16,
    /// Used entries taken (split: the next one to look at; in order: chains taken).
    last_used: u16,
    /// Packed rings: the next used slot, the wrap counter in bit 15; split rings in order:
    /// the used entries consumed. Beside `last_used` (both stored at once, see [`packed`]).
    used_pos: u16,
    /// Chains added (split: our copy of the available index, which the device only reads).
    avail_idx: u16,
    /// Packed rings: the next slot to fill, the wrap counter in bit 15. Beside `avail_idx`.
    avail_pos: u16,
    /// Split rings: descriptors on the free list.
    num_free: u16,
    /// `avail_idx` when the device was last shown the chains, whose own word (split) is
    /// not read back: the device's core reads that line all the time.
    published: u16,
    /// Packets a TX queue dropped instead of adding them (see [`VqShared::taken`]).
    dropped: u16,
    /// Used entries skipped as lies: they advanced `last_used` without taking a chain.
    skipped: u16,
    /// Packed rings: the slot and flags of the first chain added since the last publish,
    /// whose flags `publish` stores last, to show the device the whole batch at once.
    pending_slot: u16,
    pending_flags: u16,
    /// Bit per [`Lie`] already logged.
    warned: AtomicU8,
    /// The [`RingKind`] (set by [`VirtQueue::reset`] from the features agreed).
    kind: u8,
    desc: u64,
    avail: u64,
    used: u64,
    cookies: u64,
    hdrs: u64,
    links: u64,
    /// Lies seen, per [`Lie`]; written by the poller, read by any process.
    lies: [AtomicU64; 3],
    /// The queue's memzone name, NUL-padded.
    name: [u8; NAME_LEN],
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
    /// Offset of the driver's links between descriptors.
    pub links: u64,
    /// Bytes in all.
    pub total: u64,
}

/// A 16-bit field of the shared header, loaded at its own width. A plain load may be
/// widened over its neighbour, and a load wider than the store before it cannot take its
/// value from the store buffer: it waits until the buffer drains, behind stores to lines
/// the device holds.
#[inline(always)]
fn at_width(f: &u16) -> u16 {
    // SAFETY: a u16 and an AtomicU16 have the same size and alignment; the field is this
    // process's header, read while nothing else writes it (one poller per queue).
    unsafe { &*(f as *const u16 as *const AtomicU16) }.load(Ordering::Relaxed)
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
        let desc = align_up(std::mem::size_of::<VqShared>() as u64, 64);
        let avail = desc + 16 * n;
        // The used ring gets its own page, as legacy devices required; harmless for modern.
        let used = align_up(avail + 6 + 2 * n, 4096);
        let cookies = align_up(used + 6 + 8 * n, 64);
        let hdrs = cookies + 8 * n;
        let links = hdrs + HDR_SLOT * n;
        Layout {
            desc,
            avail,
            used,
            cookies,
            hdrs,
            links,
            total: links + 8 * n,
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
        sh.write(VqShared::new(name, size, base));
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
    /// The header of a queue `name` of `size` entries whose zone starts at `base`.
    fn new(name: &str, size: u16, base: u64) -> VqShared {
        let lay = Layout::new(size);
        let mut name_bytes = [0u8; NAME_LEN];
        let n = name.len().min(NAME_LEN);
        name_bytes[..n].copy_from_slice(&name.as_bytes()[..n]);
        VqShared {
            size,
            free_head: 0,
            last_used: 0,
            used_pos: 0,
            avail_idx: 0,
            avail_pos: 0,
            num_free: 0,
            published: 0,
            dropped: 0,
            skipped: 0,
            pending_slot: 0,
            pending_flags: 0,
            warned: AtomicU8::new(0),
            kind: RingKind::Split as u8,
            desc: base + lay.desc,
            avail: base + lay.avail,
            used: base + lay.used,
            cookies: base + lay.cookies,
            hdrs: base + lay.hdrs,
            links: base + lay.links,
            lies: [AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)],
            name: name_bytes,
        }
    }

    /// The queue's memzone name.
    pub fn name(&self) -> &str {
        let n = self.name.iter().position(|&b| b == 0).unwrap_or(NAME_LEN);
        std::str::from_utf8(&self.name[..n]).unwrap_or("?")
    }

    /// How many lies of kind `lie` the device told this queue.
    pub fn lies(&self, lie: Lie) -> u64 {
        self.lies[lie as usize].load(Ordering::Relaxed)
    }

    /// Counts a lie (one poller writes; any process reads) and logs the first of its kind.
    #[cold]
    fn count_lie(&self, lie: Lie, what: std::fmt::Arguments) {
        let c = &self.lies[lie as usize];
        c.store(c.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
        let bit = 1u8 << lie as u8;
        if self.warned.fetch_or(bit, Ordering::Relaxed) & bit == 0 {
            log::warn!(
                "virtio queue {}: the device {what} (counted as {}, logged once)",
                self.name(),
                lie.name()
            );
        }
    }

    /// Entries in the queue.
    pub fn size(&self) -> u16 {
        self.size
    }
    /// IOVAs of the descriptor table, available ring and used ring (packed: descriptor
    /// ring, driver and device event suppression areas); IOVA = VA here, the transports
    /// translate when they must.
    pub fn ring_addrs(&self) -> (u64, u64, u64) {
        (self.desc, self.avail, self.used)
    }
    /// How many chains the driver has added and not yet taken back from the used ring
    /// (each holds one mbuf); any process may look (a snapshot while a poller works).
    pub fn in_flight(&self) -> u16 {
        at_width(&self.avail_idx)
            .wrapping_sub(at_width(&self.last_used))
            .wrapping_add(at_width(&self.skipped))
    }
    /// The cookies (mbuf addresses) of the chains added and not yet taken back (a chain's
    /// head keeps its cookie exactly that long): those the device holds after a reset, or a
    /// queue holds when nobody polls it.
    pub fn in_flight_cookies(&self) -> impl Iterator<Item = u64> + '_ {
        (0..self.size as usize).filter_map(move |i| {
            // SAFETY: i < size: inside the cookie array (one word per descriptor).
            let c = unsafe { *(self.cookies as *const u64).add(i) } & !COOKIE_TAKING;
            (c != 0).then_some(c)
        })
    }
    /// How many packets the queue took, mod 2^16: chains added (counted as each is added,
    /// published or not) and packets dropped instead.
    pub fn taken(&self) -> u16 {
        at_width(&self.avail_idx).wrapping_add(at_width(&self.dropped))
    }
    /// Whether the queue is a packed ring.
    pub fn is_packed(&self) -> bool {
        matches!(self.kind(), RingKind::Packed | RingKind::PackedInOrder)
    }

    /// Whether the queue is used in order (split or packed).
    pub fn is_in_order(&self) -> bool {
        matches!(
            self.kind(),
            RingKind::PackedInOrder | RingKind::SplitInOrder
        )
    }

    /// The ring's kind, as the last reset set it.
    pub fn kind(&self) -> RingKind {
        match self.kind {
            1 => RingKind::Packed,
            2 => RingKind::PackedInOrder,
            3 => RingKind::SplitInOrder,
            _ => RingKind::Split,
        }
    }
    /// Where a device that restarts (a vhost-user backend reconnecting) resumes: after the
    /// last chain it completed (split: the used index; packed: the slot and wrap counter
    /// after the last used entry).
    pub fn resume_base(&'static self) -> u16 {
        if self.is_packed() {
            self.packed_resume_base()
        } else {
            self.used_idx()
        }
    }
    /// How many used entries the driver has not yet looked at (a snapshot; split rings).
    pub fn used_waiting(&self) -> u16 {
        self.used_idx().wrapping_sub(at_width(&self.last_used))
    }
    /// The used ring's index: how many chains the device has completed (mod 2^16; split
    /// rings).
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
    links: *mut Link,
    hdrs: u64,
    mask: u16,
    packed: bool,
    in_order: bool,
    /// Packed rings: used entry `.0` (from the next one) starts at slot `.1`, as the last
    /// look found; entries are looked at in order, so this spares walking from the first.
    used_cursor: Cell<(u16, u16)>,
    /// Split rings in order: the chain (from the next one) that ends the used entry the
    /// cursor is at, once known.
    batch_end: Cell<Option<u16>>,
    notifier: Notifier,
}

// SAFETY: the handle only points into shared memory and a device register; one poller at a
// time uses a queue (the port layer enforces it), from whichever thread owns the handle.
unsafe impl Send for VirtQueue {}

impl VirtQueue {
    /// A handle on `sh` that notifies the device through `notifier`.
    pub fn new(sh: &'static VqShared, notifier: Notifier) -> VirtQueue {
        // A packed ring's event suppression areas keep their flags in their second word.
        let flags_at = if sh.is_packed() { 2 } else { 0 };
        VirtQueue {
            sh: sh as *const VqShared as *mut VqShared,
            desc: sh.desc as *mut Desc,
            avail_flags: (sh.avail + flags_at) as *const AtomicU16,
            avail_idx: (sh.avail + 2) as *const AtomicU16,
            avail_ring: (sh.avail + 4) as *mut u16,
            used_flags: (sh.used + flags_at) as *const AtomicU16,
            used_idx: (sh.used + 2) as *const AtomicU16,
            used_ring: (sh.used + 4) as *const UsedElem,
            cookies: sh.cookies as *mut u64,
            links: sh.links as *mut Link,
            hdrs: sh.hdrs,
            mask: sh.size - 1,
            packed: sh.is_packed(),
            in_order: sh.is_in_order(),
            used_cursor: Cell::new((0, 0)),
            batch_end: Cell::new(None),
            notifier,
        }
    }

    /// The queue's header.
    fn shared(&self) -> &'static VqShared {
        // SAFETY: the header lives as long as the group.
        unsafe { &*self.sh }
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

    /// The driver's link of descriptor `i` (any index: masked).
    #[inline(always)]
    #[allow(clippy::mut_from_ref)]
    fn link(&self, i: u16) -> &mut Link {
        // SAFETY: i & mask < size: inside the links array, which only the poller touches.
        unsafe { &mut *self.links.add((i & self.mask) as usize) }
    }

    /// The cookie word of descriptor `i` (any index: masked).
    #[inline(always)]
    #[allow(clippy::mut_from_ref)]
    fn cookie(&self, i: u16) -> &mut u64 {
        // SAFETY: i & mask < size: inside the cookie array, which only the poller touches.
        unsafe { &mut *self.cookies.add((i & self.mask) as usize) }
    }

    /// Puts every descriptor on the free list and the indexes at 0 (the device is reset),
    /// as the ring `kind` the features agreed on.
    pub fn reset(&mut self, kind: RingKind) {
        self.st().kind = kind as u8;
        let notifier = std::mem::replace(&mut self.notifier, Notifier::EventFd(-1));
        // The pointers to the event flags depend on the ring's kind.
        *self = VirtQueue::new(self.shared(), notifier);
        if self.packed {
            return self.reset_packed();
        }
        let n = self.mask as usize + 1;
        for i in 0..n {
            // SAFETY: i < size: inside the descriptor table.
            unsafe { *self.desc.add(i) = Desc::default() };
            *self.link(i as u16) = Link {
                next: (i as u16).wrapping_add(1) & self.mask,
                ..Link::default()
            };
            *self.cookie(i as u16) = 0;
        }
        let st = self.st();
        st.free_head = 0;
        st.num_free = n as u16;
        st.set_used(0, 0);
        st.avail_idx = 0;
        st.published = 0;
        st.skipped = 0;
        // SAFETY: the ring words are inside the zone; nobody else uses a reset queue.
        unsafe {
            (*self.avail_idx).store(0, Ordering::Relaxed);
            (*self.avail_flags).store(AVAIL_F_NO_INTERRUPT, Ordering::Relaxed);
            (*self.used_idx).store(0, Ordering::Relaxed);
        }
    }

    /// Descriptors free now.
    #[inline(always)]
    pub fn num_free(&self) -> u16 {
        if self.packed {
            return self.packed_num_free();
        }
        at_width(&self.st().num_free)
    }

    /// Chains added and not yet taken back.
    pub fn in_flight(&self) -> u16 {
        self.st().in_flight()
    }

    /// See [`VqShared::taken`].
    pub fn taken(&self) -> u16 {
        self.st().taken()
    }

    /// See [`VqShared::lies`].
    pub fn lies(&self, lie: Lie) -> u64 {
        self.st().lies(lie)
    }

    /// Counts a packet dropped instead of added, before the caller frees it (a poller
    /// killed in between leaves it held, for the primary to free, never counted twice).
    pub fn count_dropped(&mut self) {
        let st = self.st();
        st.dropped = at_width(&st.dropped).wrapping_add(1);
        compiler_fence(Ordering::SeqCst);
    }

    /// IOVA of the header slot of descriptor `i` (slots are zero and stay zero).
    pub fn hdr_slot_iova(&self, i: u16) -> u64 {
        let va = self.hdrs + i as u64 * HDR_SLOT;
        eal::eal().map_or(va, |e| e.config().virt_to_iova(va))
    }

    /// The descriptor (packed: the buffer id) the next [`add`](Self::add) starts its chain
    /// with.
    pub fn next_free(&self) -> u16 {
        if self.packed && self.in_order {
            return self.packed_next_slot();
        }
        at_width(&self.st().free_head)
    }

    /// Adds a chain of buffers `(iova, len, device_writes)`; `cookie` (not 0, even) comes
    /// back with the used entry. Returns the head descriptor, or `None` when too few are free.
    #[inline(always)]
    pub fn add(&mut self, bufs: &[(u64, u32, bool)], cookie: u64) -> Option<u16> {
        debug_assert!(cookie != 0 && cookie & COOKIE_TAKING == 0);
        if self.packed {
            return self.add_packed(bufs, cookie);
        }
        let st = self.st();
        let free = at_width(&st.num_free);
        if (free as usize) < bufs.len() || bufs.is_empty() {
            return None;
        }
        let head = at_width(&st.free_head);
        let mut idx = head;
        let mut writable = 0u32;
        for (k, &(addr, len, write)) in bufs.iter().enumerate() {
            if write {
                writable = writable.saturating_add(len);
            }
            // The free list's link is the chain's: the device sees it in `next`.
            let next = self.link(idx).next;
            // SAFETY: idx is masked: inside the descriptor table.
            let d = unsafe { &mut *self.desc.add((idx & self.mask) as usize) };
            d.addr = addr;
            d.len = len;
            d.flags = if write { DESC_F_WRITE } else { 0 }
                | if k + 1 < bufs.len() { DESC_F_NEXT } else { 0 };
            d.next = next;
            idx = next;
        }
        eal::store_point!("virtio.desc");
        let l = self.link(head);
        l.descs = bufs.len() as u16;
        l.writable = writable;
        eal::store_point!("virtio.link");
        // A poller killed between these two stores must leave too few descriptors counted
        // free, never too many (an `add` would then walk past the free list's end).
        st.num_free = free - bufs.len() as u16;
        eal::store_point!("virtio.num_free");
        compiler_fence(Ordering::SeqCst);
        st.free_head = idx;
        eal::store_point!("virtio.free_head");
        // The ring's slot before the cookie: a poller killed after naming the chain and
        // before counting it leaves the slot to show which chain that was (`repair`).
        let added = at_width(&st.avail_idx);
        let slot = (added & self.mask) as usize;
        // SAFETY: slot <= mask: inside the available ring.
        unsafe { *self.avail_ring.add(slot) = head };
        eal::store_point!("virtio.avail_ring");
        *self.cookie(head) = cookie;
        eal::store_point!("virtio.cookie");
        st.avail_idx = added.wrapping_add(1);
        eal::store_point!("virtio.avail_idx");
        Some(head)
    }

    /// Makes the chains added so far visible to the device and notifies it unless it said
    /// it does not need it.
    #[inline(always)]
    pub fn publish(&mut self) {
        if self.packed {
            return self.publish_packed();
        }
        let st = self.st();
        let idx = at_width(&st.avail_idx);
        if at_width(&st.published) == idx {
            return;
        }
        // Release: the descriptors and ring entries are written before the index.
        // SAFETY: the ring word is inside the zone.
        unsafe { &*self.avail_idx }.store(idx, Ordering::Release);
        eal::store_point!("virtio.avail_idx.published");
        // After the ring's word: a poller killed in between leaves the next one to store
        // the same index again.
        st.published = idx;
        eal::store_point!("virtio.published");
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

    /// How many used entries wait, at most `limit` and at most as many as chains in
    /// flight (a used index further ahead is a lie, counted).
    #[inline(always)]
    pub fn used_count(&self, limit: u16) -> u16 {
        self.used_count_after(0, limit)
    }

    /// How many used entries wait after the first `k` (which wait), at most `limit`.
    #[inline(always)]
    pub fn used_count_after(&self, k: u16, limit: u16) -> u16 {
        if self.packed {
            return self.packed_used_count_after(k, limit);
        }
        if self.in_order {
            return self.in_order_used_count_after(k, limit);
        }
        self.used_waiting_after(at_width(&self.st().last_used))
            .saturating_sub(k)
            .min(limit)
    }

    /// Split rings: the used entries the device wrote after the first `consumed`, at most
    /// as many as chains in flight (a used index further ahead is a lie, counted).
    #[inline(always)]
    fn used_waiting_after(&self, consumed: u16) -> u16 {
        // SAFETY: the ring word is inside the zone. Acquire: entries are read after.
        let idx = unsafe { &*self.used_idx }.load(Ordering::Acquire);
        let st = self.st();
        let n = idx.wrapping_sub(consumed);
        let held = st.in_flight();
        if n > held {
            st.count_lie(
                Lie::BadUsedIdx,
                format_args!("moved the used index {n} entries ahead with {held} chains in flight"),
            );
            return held;
        }
        n
    }

    /// Used entry `k` from the next one, as the device wrote it.
    #[inline(always)]
    fn used_elem(&self, k: u16) -> UsedElem {
        if self.packed {
            return self.packed_used_elem(k);
        }
        if self.in_order {
            return self.in_order_used_elem(k);
        }
        let slot = (at_width(&self.st().last_used).wrapping_add(k) & self.mask) as usize;
        // SAFETY: slot <= mask: inside the used ring, written by the device before it
        // published the index (acquired in used_count).
        unsafe { std::ptr::read_volatile(self.used_ring.add(slot)) }
    }

    /// Used entry `k` from the next one (`k` below [`used_count`](Self::used_count)), left
    /// in place: its chain's head descriptor, cookie and length; `None` (counted) when it
    /// names no chain in flight.
    #[inline(always)]
    pub fn peek_used(&self, k: u16) -> Option<(u16, u64, u32)> {
        let e = self.used_elem(k);
        if e.id <= self.mask as u32 {
            let head = e.id as u16;
            let cookie = *self.cookie(head);
            if cookie != 0 && cookie & COOKIE_TAKING == 0 {
                return Some((head, cookie, e.len));
            }
        }
        self.st().count_lie(
            Lie::BadUsedId,
            format_args!(
                "returned used id {} (len {}), which names no chain in flight; skipped",
                e.id, e.len
            ),
        );
        None
    }

    /// Takes the next used entry (check [`used_count`](Self::used_count) first), as
    /// [`take_next_used`](Self::take_next_used) does, and gives its chain back to the free
    /// list.
    pub fn pop_used(&mut self, min_len: u32) -> Used {
        let mut chains = UsedChains::default();
        let used = self.take_next_used(&mut chains, min_len);
        self.give_back(chains);
        used
    }

    /// Takes the next used entry after those on `chains` (below
    /// [`used_count`](Self::used_count)): its chain's head loses its cookie (the buffer is
    /// the caller's from here) and the chain joins `chains`, for
    /// [`give_back`](Self::give_back). The used length must be at least `min_len` and at
    /// most what the chain's device-writable buffers hold, else `BadLen` (counted); `BadId`
    /// (skipped, counted) when the entry names no chain in flight.
    #[inline(always)]
    pub fn take_next_used(&mut self, chains: &mut UsedChains, min_len: u32) -> Used {
        let Some((head, cookie, len)) = self.peek_used(chains.entries) else {
            self.skip_used(chains);
            return Used::BadId;
        };
        let max_len = self.link(head).writable;
        // Cleared before the index moves: a poller killed in between leaves entries naming
        // no chain, never taken twice, which `repair` consumes; a second entry naming the
        // chain in this batch is refused.
        *self.cookie(head) = 0;
        eal::store_point!("virtio.cookie");
        self.append_chain(chains, head);
        if len >= min_len && len <= max_len {
            return Used::Chain { cookie, len };
        }
        self.st().count_lie(
            Lie::BadUsedLen,
            format_args!(
                "returned used length {len} for buffers of {max_len} bytes (at least {min_len} expected); packet dropped"
            ),
        );
        Used::BadLen { cookie }
    }

    /// Links the chain starting at `head` (a used entry's, from
    /// [`peek_used`](Self::peek_used)) onto `chains`, for [`take_used`](Self::take_used), and
    /// marks it as being taken. Only the driver's links change: the entry stays in the
    /// used ring as it was.
    #[inline(always)]
    pub fn link_used(&self, chains: &mut UsedChains, head: u16) {
        *self.cookie(head) |= COOKIE_TAKING;
        eal::store_point!("virtio.cookie");
        // Appended, so that `take_used` clears the cookies in the used ring's order: a
        // poller killed there leaves the batch's oldest entries cleared and the rest named
        // (see `VirtioTx::forget_freed`).
        self.append_chain(chains, head);
    }

    /// Appends the chain starting at `head` to `chains`, in the driver's links.
    #[inline(always)]
    fn append_chain(&self, chains: &mut UsedChains, head: u16) {
        let (tail, n) = self.chain_tail(head);
        if chains.descs == 0 {
            chains.first = head;
        } else if !self.in_order {
            // In order, the next chain is the one after in the ring (`next_chain`).
            self.link(chains.last).next = head;
            eal::store_point!("virtio.link");
        }
        chains.last = tail;
        chains.entries += 1;
        chains.descs += n;
        if self.packed {
            chains.slots += self.link(head).descs;
        }
    }

    /// The last link of the chain starting at `head`, and how many it has (a packed
    /// ring's chain is one buffer id).
    #[inline(always)]
    fn chain_tail(&self, head: u16) -> (u16, u16) {
        let n = self.link(head).descs;
        if self.packed {
            return (head, 1);
        }
        let mut tail = head;
        for _ in 1..n {
            tail = self.link(tail).next;
        }
        (tail, n)
    }

    /// The chain after the one ending at `tail` on a list of used chains.
    #[inline(always)]
    fn next_chain(&self, tail: u16) -> u16 {
        if self.in_order {
            // Packed: a chain is its first slot, and spans its descriptors.
            let n = if self.packed {
                self.link(tail).descs.max(1)
            } else {
                1
            };
            return tail.wrapping_add(n) & self.mask;
        }
        self.link(tail).next
    }

    /// Counts the next used entry onto `chains` as skipped (it named no chain in flight).
    #[inline(always)]
    pub fn skip_used(&self, chains: &mut UsedChains) {
        if self.packed {
            chains.slots += self.packed_skip_slots(chains.entries);
        }
        chains.entries += 1;
        chains.skipped += 1;
    }

    /// Takes the next `chains.entries` used entries, whose chains
    /// [`link_used`](Self::link_used) linked (or [`skip_used`](Self::skip_used) skipped),
    /// and gives the chains back to the free list.
    #[inline(always)]
    pub fn take_used(&mut self, chains: UsedChains) {
        if chains.entries == 0 {
            return;
        }
        // The heads lose their cookies first: a poller killed before the index moves leaves
        // entries naming no chain, never taken twice, which `repair` consumes.
        let mut head = chains.first;
        let mut left = chains.descs;
        while left > 0 {
            *self.cookie(head) = 0;
            eal::store_point!("virtio.cookie");
            let (tail, n) = self.chain_tail(head);
            head = self.next_chain(tail);
            left -= n;
        }
        self.give_back(chains);
    }

    /// Takes the next `chains.entries` used entries and gives their chains, whose heads
    /// have lost their cookies, back to the free list.
    #[inline(always)]
    pub fn give_back(&mut self, chains: UsedChains) {
        if chains.entries == 0 {
            return;
        }
        // The cookies and links of the chains are stored before anything below.
        compiler_fence(Ordering::SeqCst);
        let st = self.st();
        // `skipped` first: a kill in between counts the skipped entries' chains as still
        // held (they are), and only the index store takes the entries.
        st.skipped = at_width(&st.skipped).wrapping_add(chains.skipped);
        eal::store_point!("virtio.skipped");
        compiler_fence(Ordering::SeqCst);
        if self.packed {
            self.packed_take_slots(chains);
        } else if self.in_order {
            self.in_order_take(chains.entries);
        } else {
            st.last_used = at_width(&st.last_used).wrapping_add(chains.entries);
        }
        eal::store_point!("virtio.last_used");
        // Stored before the chains go back to the free list: a poller killed in between
        // leaves them to `repair`, where the other order would let the next one free them
        // twice.
        compiler_fence(Ordering::SeqCst);
        if chains.descs == 0 {
            return;
        }
        // In order, descriptors are used in ring order: no free list.
        if !self.in_order {
            self.link(chains.last).next = at_width(&st.free_head);
            eal::store_point!("virtio.link");
            st.free_head = chains.first;
            eal::store_point!("virtio.free_head");
        }
        if !self.packed {
            st.num_free = at_width(&st.num_free) + chains.descs;
            eal::store_point!("virtio.num_free");
        }
    }

    /// The cookies of every chain the device still holds (after a reset), freeing them.
    pub fn drain(&mut self) -> Vec<u64> {
        let out = self.st().in_flight_cookies().collect();
        self.reset(self.shared().kind());
        out
    }
}

#[cfg(test)]
mod tests;
