//! Packed virtqueues (virtio 1.2, section 2.8): one ring of descriptors that the driver
//! fills in order and the device writes back, in order of its choosing, as used.
//!
//! A [`VirtQueue`] whose features agreed on `VIRTIO_F_RING_PACKED` takes these paths; the
//! rest (cookies, the driver's links, lies, taking chains back) is the split ring's. What
//! differs:
//! - A chain is one buffer id (the free list holds ids, not descriptors) and takes as many
//!   consecutive slots as it has descriptors; its used entry stands for all of them.
//! - A slot is available when its `AVAIL` flag equals the driver's wrap counter and its
//!   `USED` flag does not, used when both equal the used wrap counter. `publish` stores the
//!   flags of the first chain added since the last publish last, with release, so that the
//!   device, which reads the ring in order, sees every chain of the batch at once.
//! - The chains added and the next slot to fill (`avail_idx`, `avail_pos`), and the used
//!   entries taken and the next used slot (`last_used`, `used_pos`), are stored together in
//!   one 32-bit store each: a poller killed between two stores never leaves them apart.
//!
//! In order (`VIRTIO_F_IN_ORDER` as well), a chain's buffer id is its first slot, and the
//! device may write one used entry, at the first slot of a batch of chains, naming the
//! batch's last. The chains of a batch are found by walking the driver's links from its
//! first slot. A take that ends inside a batch writes such an entry where it ends, so
//! that the next look finds the rest of the batch used.
//!
//! A poller killed inside `add` can leave descriptors written in free slots with their
//! flags saying available, behind the unpublished first chain; `repair` turns them back
//! before anyone publishes (see [`VirtQueue::repair`]).

use super::{at_width, Lie, Link, Notifier, UsedChains, UsedElem, VirtQueue, VqShared};
use std::sync::atomic::{compiler_fence, fence, AtomicU16, AtomicU32, Ordering};

/// `VIRTQ_DESC_F_AVAIL`.
const DESC_F_AVAIL: u16 = 1 << 7;
/// `VIRTQ_DESC_F_USED`.
const DESC_F_USED: u16 = 1 << 15;
/// `RING_EVENT_FLAGS_DISABLE`: no notifications (the driver's side: we poll; the device's
/// side: it polls).
const EVENT_F_DISABLE: u16 = 1;
/// A ring position's wrap counter bit; the slot is in the bits below.
const WRAP: u16 = 1 << 15;

/// A descriptor of the packed ring, as the spec lays it out.
#[repr(C)]
struct PackedDesc {
    addr: u64,
    len: u32,
    id: u16,
    flags: u16,
}

/// The position `n` slots after `pos` in a ring of `size`, the wrap counter flipped when
/// it passes the end.
#[inline(always)]
fn advance(pos: u16, n: u16, size: u16) -> u16 {
    let slot = (pos & !WRAP) + n;
    if slot >= size {
        (slot - size) | ((pos & WRAP) ^ WRAP)
    } else {
        slot | (pos & WRAP)
    }
}

/// The flags a slot at `pos` gets to be available to the device.
#[inline(always)]
fn avail_flags(pos: u16) -> u16 {
    if pos & WRAP != 0 {
        DESC_F_AVAIL
    } else {
        DESC_F_USED
    }
}

/// The flags of a used slot at `pos`: both bits equal to its wrap counter.
#[inline(always)]
fn used_flags(pos: u16) -> u16 {
    if pos & WRAP != 0 {
        DESC_F_AVAIL | DESC_F_USED
    } else {
        0
    }
}

/// Whether `flags` mark a slot at `pos` (of the used side) as used.
#[inline(always)]
fn is_used(flags: u16, pos: u16) -> bool {
    let w = pos & WRAP != 0;
    (flags & DESC_F_AVAIL != 0) == w && (flags & DESC_F_USED != 0) == w
}

/// Two 16-bit fields side by side as one word, for a single store.
#[inline(always)]
fn pair(first: u16, second: u16) -> u32 {
    let [a, b] = first.to_ne_bytes();
    let [c, d] = second.to_ne_bytes();
    u32::from_ne_bytes([a, b, c, d])
}

/// The two 16-bit fields of a word made by [`pair`].
#[inline(always)]
fn unpair(w: u32) -> (u16, u16) {
    let [a, b, c, d] = w.to_ne_bytes();
    (u16::from_ne_bytes([a, b]), u16::from_ne_bytes([c, d]))
}

// `avail_idx`/`avail_pos` and `last_used`/`used_pos` are stored as one word each.
const _: () = {
    use std::mem::offset_of;
    assert!(offset_of!(VqShared, avail_idx) % 4 == 0);
    assert!(offset_of!(VqShared, avail_pos) == offset_of!(VqShared, avail_idx) + 2);
    assert!(offset_of!(VqShared, last_used) % 4 == 0);
    assert!(offset_of!(VqShared, used_pos) == offset_of!(VqShared, last_used) + 2);
};

impl VqShared {
    /// The chains added and the next slot to fill. Loaded as the one word they are stored
    /// as: a load spanning two smaller stores still in flight waits for them to commit.
    #[inline(always)]
    fn avail_word(&self) -> (u16, u16) {
        // SAFETY: as in set_avail.
        let w = unsafe { &*(std::ptr::addr_of!(self.avail_idx) as *const AtomicU32) };
        unpair(w.load(Ordering::Relaxed))
    }

    /// The used entries taken and the next used slot, as one word (see `avail_word`).
    #[inline(always)]
    pub(super) fn used_word(&self) -> (u16, u16) {
        // SAFETY: as in set_avail.
        let w = unsafe { &*(std::ptr::addr_of!(self.last_used) as *const AtomicU32) };
        unpair(w.load(Ordering::Relaxed))
    }

    /// Chains in flight (see [`VqShared::in_flight`]), from the two words.
    #[inline(always)]
    fn packed_in_flight(&self) -> u16 {
        let (added, taken) = (self.avail_word().0, self.used_word().0);
        added
            .wrapping_sub(taken)
            .wrapping_add(at_width(&self.skipped))
    }

    /// Slots between the next used one and the next to fill in a ring of `size`: those of
    /// the chains in flight, and of used entries not yet taken.
    #[inline(always)]
    fn packed_in_use(&self, size: u16) -> u16 {
        let (a, u) = (self.avail_word().1, self.used_word().1);
        let (sa, su) = (a & !WRAP, u & !WRAP);
        if (a ^ u) & WRAP == 0 {
            sa.wrapping_sub(su)
        } else {
            size - su + sa
        }
    }

    /// The descriptor at `slot`.
    fn packed_desc(&self, slot: u16) -> *mut PackedDesc {
        debug_assert!(slot < self.size);
        (self.desc as *mut PackedDesc).wrapping_add(slot as usize)
    }

    /// The flags word of the descriptor at `slot`, which the device writes.
    fn packed_flags(&self, slot: u16) -> &AtomicU16 {
        // SAFETY: slot < size: inside the descriptor ring of this zone; the flags are
        // 2-byte aligned and accessed atomically by both sides.
        unsafe { &*(std::ptr::addr_of_mut!((*self.packed_desc(slot)).flags) as *const AtomicU16) }
    }

    /// The buffer id and length of the (used) descriptor at `slot`.
    fn packed_entry(&self, slot: u16) -> UsedElem {
        let d = self.packed_desc(slot);
        // SAFETY: inside the ring; read after the flags were found used (acquire).
        unsafe {
            UsedElem {
                id: std::ptr::read_volatile(std::ptr::addr_of!((*d).id)) as u32,
                len: std::ptr::read_volatile(std::ptr::addr_of!((*d).len)),
            }
        }
    }

    /// Slots a used entry naming `id` spans in a ring of `size`: its chain's descriptors;
    /// 1 for an id past the ring (a lie).
    #[inline(always)]
    fn packed_entry_slots(&self, id: u32, size: u16) -> u16 {
        if id >= size as u32 {
            return 1;
        }
        // SAFETY: id < size: inside the links array.
        let descs = unsafe { (*(self.links as *const Link).add(id as usize)).descs };
        descs.max(1)
    }

    /// The position after the used entries waiting from `pos` in a ring of `size`, at
    /// most `max` of them, and how many there were.
    #[inline(always)]
    fn packed_scan_used(&self, mut pos: u16, max: u16, size: u16) -> (u16, u16) {
        let mut n = 0;
        while n < max && is_used(self.packed_flags(pos & !WRAP).load(Ordering::Acquire), pos) {
            let id = self.packed_entry(pos & !WRAP).id;
            pos = advance(pos, self.packed_entry_slots(id, size), size);
            n += 1;
        }
        (pos, n)
    }

    /// Slots in use beyond those `descs` spans (see [`VqShared::unaccounted`]): the used
    /// entries not yet taken belong to chains still named, so the two agree.
    pub(super) fn packed_unaccounted_slots(&self, descs: u16) -> u16 {
        self.packed_in_use(self.size).wrapping_sub(descs)
    }

    /// See [`VqShared::resume_base`].
    pub(super) fn packed_resume_base(&'static self) -> u16 {
        if self.is_in_order() {
            let q = VirtQueue::new(self, Notifier::EventFd(-1));
            let held = self.in_flight();
            let n = q.inorder_scan(self.used_pos, held, held).0;
            return q.inorder_skip(self.used_pos, n);
        }
        self.packed_scan_used(self.used_pos, self.in_flight(), self.size)
            .0
    }

    /// Stores the chains added and the next slot to fill at once.
    fn set_avail(&mut self, idx: u16, pos: u16) {
        // SAFETY: the two fields are adjacent and 4-byte aligned (checked above); the
        // word is this poller's alone.
        let w = unsafe { &*(std::ptr::addr_of_mut!(self.avail_idx) as *const AtomicU32) };
        w.store(pair(idx, pos), Ordering::Relaxed);
    }

    /// Stores the used entries taken and the next used slot at once.
    pub(super) fn set_used(&mut self, taken: u16, pos: u16) {
        // SAFETY: as in set_avail.
        let w = unsafe { &*(std::ptr::addr_of_mut!(self.last_used) as *const AtomicU32) };
        w.store(pair(taken, pos), Ordering::Relaxed);
    }
}

impl VirtQueue {
    /// The packed part of [`reset`](Self::reset): every id free, both positions at slot 0
    /// with wrap counters 1, no notifications asked of the device.
    pub(super) fn reset_packed(&mut self) {
        let size = self.mask + 1;
        for i in 0..size {
            let d = self.st().packed_desc(i);
            // SAFETY: i < size: inside the ring; nobody else uses a reset queue.
            unsafe {
                d.write(PackedDesc {
                    addr: 0,
                    len: 0,
                    id: 0,
                    flags: 0,
                })
            };
            *self.link(i) = Link {
                next: i.wrapping_add(1) & self.mask,
                ..Link::default()
            };
            *self.cookie(i) = 0;
        }
        let st = self.st();
        st.free_head = 0;
        st.num_free = 0;
        st.set_avail(0, WRAP);
        st.set_used(0, WRAP);
        st.published = 0;
        st.skipped = 0;
        // SAFETY: the event suppression words are inside the zone (their first 4 bytes).
        unsafe {
            (*self.avail_flags).store(EVENT_F_DISABLE, Ordering::Relaxed);
            (*self.used_flags).store(0, Ordering::Relaxed);
        }
        self.used_cursor.set((0, 0));
    }

    /// Slots free now.
    #[inline(always)]
    pub(super) fn packed_num_free(&self) -> u16 {
        let size = self.mask + 1;
        size - self.st().packed_in_use(size)
    }

    /// The packed part of [`add`](Self::add): the chain's descriptors in the next slots,
    /// under the next free buffer id.
    #[inline]
    pub(super) fn add_packed(&mut self, bufs: &[(u64, u32, bool)], cookie: u64) -> Option<u16> {
        let n = bufs.len() as u16;
        if self.packed_num_free() < n || n == 0 {
            return None;
        }
        let st = self.st();
        let size = self.mask + 1;
        let (added, head) = st.avail_word();
        let id = if self.in_order {
            head & !WRAP
        } else {
            st.free_head
        };
        // The first chain since the last publish keeps its flags for `publish`.
        let first = at_width(&st.published) == added;
        let mut pos = head;
        let mut writable = 0u32;
        let mut head_flags = 0;
        for (k, &(addr, len, write)) in bufs.iter().enumerate() {
            if write {
                writable = writable.saturating_add(len);
            }
            let flags = avail_flags(pos)
                | if write { super::DESC_F_WRITE } else { 0 }
                | if k + 1 < bufs.len() {
                    super::DESC_F_NEXT
                } else {
                    0
                };
            let d = st.packed_desc(pos & !WRAP);
            // SAFETY: the slot is free (checked above): inside the ring, not the device's.
            unsafe {
                (*d).addr = addr;
                (*d).len = len;
                (*d).id = id;
            }
            if k == 0 {
                head_flags = flags;
            }
            if k > 0 || !first {
                st.packed_flags(pos & !WRAP).store(flags, Ordering::Relaxed);
            }
            pos = advance(pos, 1, size);
        }
        eal::store_point!("virtio.desc");
        if first {
            st.pending_slot = head & !WRAP;
            st.pending_flags = head_flags;
            eal::store_point!("virtio.pending");
        }
        let l = self.link(id);
        l.descs = n;
        l.writable = writable;
        eal::store_point!("virtio.link");
        // Named before it is counted: `repair` finishes an add killed in between (the
        // slot at `avail_pos` names the id).
        *self.cookie(id) = cookie;
        eal::store_point!("virtio.cookie");
        if !self.in_order {
            st.free_head = self.link(id).next;
            eal::store_point!("virtio.free_head");
        }
        compiler_fence(Ordering::SeqCst);
        st.set_avail(added.wrapping_add(1), pos);
        eal::store_point!("virtio.avail_idx");
        Some(id)
    }

    /// The packed part of [`publish`](Self::publish).
    #[inline]
    pub(super) fn publish_packed(&mut self) {
        let st = self.st();
        let added = st.avail_word().0;
        if at_width(&st.published) == added {
            return;
        }
        // Release: every descriptor added since is written before the first one's flags.
        st.packed_flags(at_width(&st.pending_slot))
            .store(at_width(&st.pending_flags), Ordering::Release);
        eal::store_point!("virtio.avail_idx.published");
        st.published = added;
        eal::store_point!("virtio.published");
        // The flags are seen before we read the device's (a full barrier), or both sides
        // could wait for each other.
        fence(Ordering::SeqCst);
        // SAFETY: the device's event suppression word is inside the zone.
        if unsafe { &*self.used_flags }.load(Ordering::Relaxed) != EVENT_F_DISABLE {
            self.notifier.notify();
        }
    }

    /// The position of used entry `k` from the next one (entries before it used).
    #[inline(always)]
    fn packed_used_pos(&self, k: u16) -> u16 {
        let st = self.st();
        if k == 0 {
            return st.used_word().1;
        }
        let (ck, cpos) = self.used_cursor.get();
        if ck == k {
            return cpos;
        }
        if self.in_order {
            return self.inorder_skip(st.used_word().1, k);
        }
        st.packed_scan_used(st.used_word().1, k, self.mask + 1).0
    }

    /// The packed part of [`used_count_after`](Self::used_count_after).
    #[inline]
    pub(super) fn packed_used_count_after(&self, k: u16, limit: u16) -> u16 {
        let st = self.st();
        let held = st.packed_in_flight();
        if k >= held {
            return 0;
        }
        if self.in_order {
            // Entry `k` may be inside a batch, whose used entry is at its start.
            let n = self
                .inorder_scan(st.used_word().1, k.saturating_add(limit), held)
                .0;
            return n.saturating_sub(k);
        }
        let pos = self.packed_used_pos(k);
        st.packed_scan_used(pos, limit.min(held - k), self.mask + 1)
            .1
    }

    /// Used entry `k` from the next one (below the used count), as the device wrote it.
    #[inline(always)]
    pub(super) fn packed_used_elem(&self, k: u16) -> UsedElem {
        if self.in_order {
            return self.inorder_used_elem(k);
        }
        let st = self.st();
        let pos = self.packed_used_pos(k);
        let e = st.packed_entry(pos & !WRAP);
        let size = self.mask + 1;
        let next = advance(pos, st.packed_entry_slots(e.id, size), size);
        self.used_cursor.set((k.wrapping_add(1), next));
        e
    }

    /// Slots of used entry `k`, skipped as a lie.
    pub(super) fn packed_skip_slots(&self, k: u16) -> u16 {
        let id = self.packed_used_elem(k).id;
        self.st().packed_entry_slots(id, self.mask + 1)
    }

    /// Takes the used entries of `chains` (the packed part of `give_back`).
    #[inline(never)]
    pub(super) fn packed_take_slots(&self, chains: UsedChains) {
        let st = self.st();
        let (taken, pos) = st.used_word();
        let to = advance(pos, chains.slots, self.mask + 1);
        if self.in_order {
            self.inorder_mark(pos, chains.entries, to);
        }
        st.set_used(taken.wrapping_add(chains.entries), to);
        self.used_cursor.set((0, 0));
    }

    /// The packed part of [`repair`](Self::repair), after the cookies were unmarked.
    pub(super) fn repair_packed(&mut self) -> u16 {
        let size = self.mask + 1;
        let named = (0..size).filter(|&i| *self.cookie(i) != 0).count() as u16;
        let st = self.st();
        let was_free = size - st.in_flight();
        // A publish killed after storing the first chain's flags: they are the device's
        // (it may even have used the slot since); storing them again would hide its entry.
        if st.published != st.avail_idx
            && st.packed_flags(st.pending_slot).load(Ordering::Relaxed) & DESC_F_AVAIL
                == st.pending_flags & DESC_F_AVAIL
        {
            st.published = st.avail_idx;
        }
        // An add killed after naming its chain and before counting it: finished.
        if named == st.in_flight().wrapping_add(1) {
            let id = st.packed_entry(st.avail_pos & !WRAP).id as u16;
            if id <= self.mask && *self.cookie(id) != 0 {
                let pos = advance(st.avail_pos, self.link(id).descs, size);
                st.set_avail(st.avail_idx.wrapping_add(1), pos);
            }
        }
        // Descriptors an add killed before naming its chain left in free slots: their
        // flags must not say available when a later chain in front of them is published.
        let mut pos = st.avail_pos;
        for _ in 0..self.packed_num_free() {
            let flags = st.packed_flags(pos & !WRAP);
            if (flags.load(Ordering::Relaxed) & DESC_F_AVAIL != 0) == (pos & WRAP != 0) {
                // As the slot was after the device used it in the previous round.
                flags.store(used_flags(pos ^ WRAP), Ordering::Relaxed);
            }
            pos = advance(pos, 1, size);
        }
        // Used entries at the front naming no chain: a take back's it had cleared, or lies.
        let (mut taken, mut pos) = (st.last_used, st.used_pos);
        if self.in_order {
            let held = st.in_flight();
            let used = self.inorder_scan(pos, held, held).0;
            let (mut cleared, mut to) = (0, pos);
            while cleared < used && *self.cookie(to & !WRAP) == 0 {
                to = self.inorder_skip(to, 1);
                cleared += 1;
            }
            self.inorder_mark(pos, cleared, to);
            (taken, pos) = (taken.wrapping_add(cleared), to);
        }
        for _ in 0..size {
            if !is_used(st.packed_flags(pos & !WRAP).load(Ordering::Acquire), pos) {
                break;
            }
            let id = st.packed_entry(pos & !WRAP).id;
            if id <= self.mask as u32 && *self.cookie(id as u16) != 0 {
                break;
            }
            pos = advance(pos, st.packed_entry_slots(id, size), size);
            taken = taken.wrapping_add(1);
        }
        st.set_used(taken, pos);
        self.used_cursor.set((0, 0));
        st.skipped = named.wrapping_sub(st.avail_idx.wrapping_sub(st.last_used));
        // Every id that names no chain is free.
        let mut free = 0u16;
        for i in (0..size).rev().filter(|&i| *self.cookie(i) == 0) {
            self.link(i).next = if free == 0 { i } else { st.free_head };
            st.free_head = i;
            free += 1;
        }
        free.saturating_sub(was_free)
    }
}

/// In-order packed rings.
impl VirtQueue {
    /// The first slot of the next chain to add (its buffer id, in order).
    pub(super) fn packed_next_slot(&self) -> u16 {
        self.st().avail_word().1 & !WRAP
    }

    /// The position `n` chains after `pos` (each spans its first slot's descriptors).
    fn inorder_skip(&self, mut pos: u16, n: u16) -> u16 {
        let size = self.mask + 1;
        for _ in 0..n {
            pos = advance(pos, self.link(pos & !WRAP).descs.max(1), size);
        }
        pos
    }

    /// How many of the chains from `pos` (at most `max`, of `held` in flight) the device
    /// has used, and the last id of the batch the count ends inside, if it does.
    fn inorder_scan(&self, mut pos: u16, max: u16, held: u16) -> (u16, Option<u16>) {
        let st = self.st();
        let size = self.mask + 1;
        let mut n = 0;
        while n < max && is_used(st.packed_flags(pos & !WRAP).load(Ordering::Acquire), pos) {
            let last = st.packed_entry(pos & !WRAP).id;
            let (mut k, mut p, mut found) = (0, pos, false);
            while n + k < held && !found {
                let slot = p & !WRAP;
                p = advance(p, self.link(slot).descs.max(1), size);
                k += 1;
                found = slot as u32 == last;
            }
            if !found {
                st.count_lie(
                    Lie::BadUsedId,
                    format_args!(
                        "ended an in-order batch at id {last}, which names no chain in flight; taken as a batch of one"
                    ),
                );
                (k, p) = (1, self.inorder_skip(pos, 1));
            }
            if n + k > max {
                return (max, Some(last as u16));
            }
            n += k;
            pos = p;
        }
        (n, None)
    }

    /// Used entry `k`: its chain's first slot and, where the device wrote the entry for
    /// that chain alone, the length (0 for a chain inside a batch).
    fn inorder_used_elem(&self, k: u16) -> UsedElem {
        let st = self.st();
        let pos = self.packed_used_pos(k);
        let slot = pos & !WRAP;
        let e = st.packed_entry(slot);
        let own =
            e.id == slot as u32 && is_used(st.packed_flags(slot).load(Ordering::Relaxed), pos);
        let next = advance(pos, self.link(slot).descs.max(1), self.mask + 1);
        self.used_cursor.set((k.wrapping_add(1), next));
        UsedElem {
            id: slot as u32,
            len: if own { e.len } else { 0 },
        }
    }

    /// Before the next used slot moves from `from` past `n` chains to `to`: when `to` is
    /// inside a batch, writes the batch's used entry there, for the rest of it.
    fn inorder_mark(&self, from: u16, n: u16, to: u16) {
        let held = self.st().packed_in_flight();
        if let (_, Some(last)) = self.inorder_scan(from, n, held) {
            let st = self.st();
            let d = st.packed_desc(to & !WRAP);
            // SAFETY: inside the ring; the slot belongs to a used chain not yet taken: the
            // device is done with it.
            unsafe {
                (*d).id = last;
                (*d).len = 0;
            }
            st.packed_flags(to & !WRAP)
                .store(used_flags(to), Ordering::Release);
            eal::store_point!("virtio.inorder_mark");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{take_in_order, Mem};
    use super::super::{RingKind, Used, DESC_F_NEXT, DESC_F_WRITE};
    use super::*;
    use proptest::prelude::*;

    /// The device's side of a packed ring, as the spec has it.
    struct Device {
        avail: u16,
        used: u16,
        /// Chains read and not yet used: (id, descriptors, bytes writable).
        held: Vec<(u16, u16, u32)>,
    }

    impl Device {
        fn new() -> Device {
            Device {
                avail: WRAP,
                used: WRAP,
                held: vec![],
            }
        }

        /// Reads every chain the driver made available.
        fn sync(&mut self, q: &VirtQueue) -> usize {
            let sh = q.shared();
            let mut got = 0;
            loop {
                let flags = sh.packed_flags(self.avail & !WRAP).load(Ordering::Acquire);
                let w = self.avail & WRAP != 0;
                if (flags & DESC_F_AVAIL != 0) != w || (flags & DESC_F_USED != 0) == w {
                    return got;
                }
                let (mut n, mut writable, mut pos) = (0u16, 0u32, self.avail);
                let id = loop {
                    let d = sh.packed_desc(pos & !WRAP);
                    // SAFETY: test memory laid out by Mem::queue.
                    let (f, len, id) = unsafe { ((*d).flags, (*d).len, (*d).id) };
                    n += 1;
                    if f & DESC_F_WRITE != 0 {
                        writable += len;
                    }
                    pos = advance(pos, 1, sh.size);
                    if f & DESC_F_NEXT == 0 {
                        break id;
                    }
                };
                self.held.push((id, n, writable));
                self.avail = pos;
                got += 1;
            }
        }

        /// Uses the `pick`th chain held, writing `len` bytes.
        fn complete(&mut self, q: &VirtQueue, pick: usize, len: u32) -> Option<u16> {
            if self.held.is_empty() {
                return None;
            }
            let (id, n, _) = self.held.remove(pick % self.held.len());
            self.write_used(q, id, len, n);
            Some(id)
        }

        /// Writes a used entry naming `id` at the next used slot, and moves that `slots` on.
        fn write_used(&mut self, q: &VirtQueue, id: u16, len: u32, slots: u16) {
            let sh = q.shared();
            let d = sh.packed_desc(self.used & !WRAP);
            // SAFETY: test memory laid out by Mem::queue.
            unsafe {
                (*d).id = id;
                (*d).len = len;
            }
            let flags = if self.used & WRAP != 0 {
                DESC_F_AVAIL | DESC_F_USED
            } else {
                0
            };
            sh.packed_flags(self.used & !WRAP)
                .store(flags, Ordering::Release);
            self.used = advance(self.used, slots, sh.size);
        }
    }

    impl Device {
        /// Uses the first `n` chains held, in order, with one used entry naming the last.
        fn complete_in_order(&mut self, q: &VirtQueue, n: usize, len: u32) -> Vec<u16> {
            let n = n.min(self.held.len());
            if n == 0 {
                return vec![];
            }
            let batch: Vec<(u16, u16, u32)> = self.held.drain(..n).collect();
            let slots = batch.iter().map(|b| b.1).sum();
            self.write_used(q, batch[n - 1].0, len, slots);
            batch.iter().map(|b| b.0).collect()
        }
    }

    fn packed_queue(size: u16) -> (Mem, VirtQueue) {
        queue_of(size, RingKind::Packed)
    }

    fn queue_of(size: u16, kind: RingKind) -> (Mem, VirtQueue) {
        let (m, mut q) = Mem::queue(size);
        q.reset(kind);
        (m, q)
    }

    #[test]
    fn positions_wrap_with_their_counter() {
        assert_eq!(advance(WRAP | 6, 3, 8), 1);
        assert_eq!(advance(1, 7, 8), WRAP);
        assert_eq!(advance(WRAP | 2, 3, 8), WRAP | 5);
    }

    #[test]
    fn publish_shows_the_batch_at_once() {
        let (_m, mut q) = packed_queue(8);
        let mut dev = Device::new();
        for c in 1..=3u64 {
            assert!(q.add(&[(0x1000 * c, 64, true)], c * 64).is_some());
            assert_eq!(dev.sync(&q), 0, "seen before publish");
        }
        q.publish();
        assert_eq!(dev.sync(&q), 3);
        assert_eq!(q.num_free(), 5);
        // Out of order: the third chain first.
        assert_eq!(dev.complete(&q, 2, 10), Some(2));
        assert_eq!(q.used_count(8), 1);
        assert_eq!(
            q.pop_used(1),
            Used::Chain {
                cookie: 192,
                len: 10
            }
        );
        assert_eq!((q.num_free(), q.in_flight()), (6, 2));
        assert_eq!(q.st().unaccounted(), (0, 0));
    }

    #[derive(Clone, Debug)]
    enum Step {
        Add { bufs: u8 },
        Complete { pick: u8, len: u16 },
        Poll { max: u8, batch: bool },
    }

    fn steps() -> impl Strategy<Value = Vec<Step>> {
        prop::collection::vec(
            prop_oneof![
                3 => (1u8..4).prop_map(|bufs| Step::Add { bufs }),
                3 => (any::<u8>(), 1u16..300).prop_map(|(pick, len)| Step::Complete { pick, len }),
                2 => (1u8..12, any::<bool>()).prop_map(|(max, batch)| Step::Poll { max, batch }),
            ],
            1..400,
        )
    }

    /// A chain of `n` buffers of 100 bytes.
    fn buffers(n: u8, device_writes: bool) -> Vec<(u64, u32, bool)> {
        (0..n)
            .map(|k| (0x1000 * (k as u64 + 1), 100, device_writes))
            .collect()
    }

    /// After each step: the chains in flight are those held, every slot is free or
    /// spanned by one of them, no lie was counted and nothing was written past the queue.
    fn accounted(q: &VirtQueue, m: &Mem, held: usize) -> Result<(), TestCaseError> {
        prop_assert_eq!(q.in_flight() as usize, held);
        prop_assert_eq!(q.st().unaccounted(), (0, 0));
        prop_assert_eq!(q.lies(super::super::Lie::BadUsedId), 0);
        prop_assert!(m.canary_intact());
        Ok(())
    }

    proptest! {
        /// Chains of one to three descriptors, completed in any order, come back with their
        /// cookies and lengths, as often as the ring wraps; every slot is free or held.
        #[test]
        fn chains_come_back_in_any_order_across_wraps(steps in steps(), rx in any::<bool>()) {
            let (m, mut q) = packed_queue(8);
            let mut dev = Device::new();
            // Cookie and bytes writable, by id; lengths the device wrote, by cookie.
            let mut held: std::collections::HashMap<u16, (u64, u32)> = Default::default();
            let mut done: std::collections::HashMap<u64, u32> = Default::default();
            let mut next = 64u64;
            for s in &steps {
                match *s {
                    Step::Add { bufs } => {
                        let b = buffers(bufs, rx);
                        let free = q.num_free();
                        match q.add(&b, next) {
                            Some(id) => {
                                let room = if rx { 100 * bufs as u32 } else { 0 };
                                let before = held.insert(id, (next, room));
                                prop_assert!(before.is_none(), "id {} reused in flight", id);
                                next += 64;
                                q.publish();
                                dev.sync(&q);
                            }
                            None => prop_assert!(free < bufs as u16),
                        }
                    }
                    Step::Complete { pick, len } => {
                        if let Some(id) = dev.complete(&q, pick as usize, len as u32) {
                            done.insert(held[&id].0, len as u32);
                        }
                    }
                    Step::Poll { max, batch } => {
                        let n = q.used_count(max as u16);
                        prop_assert!(n <= max as u16);
                        let mut chains = UsedChains::default();
                        for k in 0..n {
                            let (id, cookie, len) = if batch {
                                let Some(e) = q.peek_used(k) else { panic!("a lie") };
                                q.link_used(&mut chains, e.0);
                                e
                            } else {
                                let (cookie, len) = match q.take_next_used(&mut chains, 0) {
                                    Used::Chain { cookie, len } => (cookie, len),
                                    // TX chains have no room: every length is beyond it.
                                    Used::BadLen { cookie } => (cookie, done[&cookie]),
                                    Used::BadId => panic!("a lie"),
                                };
                                let id = held.iter().find(|(_, h)| h.0 == cookie).map(|(&id, _)| id);
                                (id.expect("a cookie held"), cookie, len)
                            };
                            prop_assert_eq!(held.remove(&id).map(|h| h.0), Some(cookie));
                            prop_assert_eq!(done.remove(&cookie), Some(len));
                        }
                        if batch { q.take_used(chains) } else { q.give_back(chains) }
                    }
                }
                accounted(&q, &m, held.len())?;
            }
        }
    }

    /// A queue with `added` chains of one buffer published, `used` of them used in order.
    fn queue_with_chains(added: u64, used: usize) -> (Mem, VirtQueue, Device) {
        let (m, mut q) = packed_queue(8);
        let mut dev = Device::new();
        for c in 1..=added {
            assert!(q.add(&[(0x1000 * c, 64, false)], c * 64).is_some());
        }
        q.publish();
        dev.sync(&q);
        for _ in 0..used {
            dev.complete(&q, 0, 0);
        }
        (m, q, dev)
    }

    #[test]
    fn repair_hides_descriptors_an_add_killed_before_naming_left_available() {
        let (_m, mut q, mut dev) = queue_with_chains(0, 0);
        assert!(q.add(&[(0x1000, 64, false)], 64).is_some());
        // The next add wrote two descriptors, flags included (not the batch's first
        // chain), and died before naming its id.
        let st = q.st();
        let pos = st.avail_pos;
        for k in 0..2 {
            let p = advance(pos, k, 8);
            st.packed_flags(p & !WRAP)
                .store(avail_flags(p), Ordering::Relaxed);
        }
        assert_eq!(q.repair(), 0);
        q.publish();
        assert_eq!(dev.sync(&q), 1, "the device took a dead add's descriptors");
        assert_eq!(q.st().unaccounted(), (0, 0));
    }

    #[test]
    fn repair_finishes_an_add_killed_after_naming_its_chain() {
        let (_m, mut q, mut dev) = queue_with_chains(1, 0);
        let (idx, pos) = (q.st().avail_idx, q.st().avail_pos);
        assert!(q
            .add(&[(0x2000, 64, false), (0x3000, 64, false)], 128)
            .is_some());
        // Killed before the chain was counted.
        q.st().set_avail(idx, pos);
        assert_eq!(q.in_flight(), 1);
        q.repair();
        assert_eq!((q.in_flight(), q.num_free()), (2, 5));
        q.publish();
        assert_eq!(dev.sync(&q), 1);
        assert_eq!(dev.complete(&q, 1, 0), Some(1));
        assert_eq!(
            q.pop_used(0),
            Used::Chain {
                cookie: 128,
                len: 0
            }
        );
        assert_eq!(q.st().unaccounted(), (0, 0));
    }

    #[test]
    fn repair_keeps_a_publish_killed_after_its_store_from_hiding_the_used_entry() {
        let (_m, mut q, mut dev) = queue_with_chains(0, 0);
        let before = q.st().published;
        assert!(q.add(&[(0x1000, 64, true)], 64).is_some());
        q.publish();
        // Killed before `published` was stored; the device used the chain meanwhile.
        q.st().published = before;
        dev.sync(&q);
        dev.complete(&q, 0, 5);
        q.repair();
        q.publish();
        assert_eq!(q.used_count(8), 1);
        assert_eq!(q.pop_used(0), Used::Chain { cookie: 64, len: 5 });
    }

    #[test]
    fn repair_takes_back_what_a_dead_take_had_cleared() {
        let (_m, mut q, _dev) = queue_with_chains(3, 2);
        let mut chains = UsedChains::default();
        for k in 0..2 {
            let (id, _, _) = q.peek_used(k).expect("used");
            q.link_used(&mut chains, id);
        }
        // Killed in `take_used` after clearing the first chain's cookie.
        *q.cookie(chains.first) = 0;
        assert_eq!(q.repair(), 1);
        assert_eq!(q.st().unaccounted(), (0, 0));
        assert_eq!((q.in_flight(), q.num_free()), (2, 6));
        assert_eq!(q.repair(), 0);
        assert_eq!(q.used_count(8), 1);
        assert_eq!(
            q.pop_used(0),
            Used::Chain {
                cookie: 128,
                len: 0
            }
        );
    }

    #[test]
    fn resume_base_is_after_the_last_used_entry() {
        let (_m, q, _dev) = queue_with_chains(8, 8);
        // Eight one-slot chains used in a ring of eight: slot 0 again, wrap counter 0.
        assert_eq!(q.shared().resume_base(), 0);
        let (_m, q, _dev) = queue_with_chains(3, 1);
        assert_eq!(q.shared().resume_base(), WRAP | 1);
    }

    proptest! {
        /// In order: the device names only the last chain of each batch; chains of one to
        /// three descriptors come back in order, each once, with the length the device
        /// wrote when it wrote an entry for that chain alone (0 inside a batch), whatever
        /// the polls' limits cut the batches into.
        #[test]
        fn in_order_batches_come_back_whole_in_any_cut(
            steps in prop::collection::vec(
                prop_oneof![
                    3 => (1u8..4).prop_map(|bufs| Step::Add { bufs }),
                    3 => (1u8..6, 1u16..101).prop_map(|(pick, len)| Step::Complete { pick, len }),
                    2 => (1u8..12, any::<bool>()).prop_map(|(max, batch)| Step::Poll { max, batch }),
                ],
                1..400,
            ),
        ) {
            let (m, mut q) = queue_of(16, RingKind::PackedInOrder);
            let mut dev = Device::new();
            // Chains in the order added: (id, cookie); lengths expected, by cookie.
            let mut order: std::collections::VecDeque<(u16, u64)> = Default::default();
            let mut done: std::collections::HashMap<u64, u32> = Default::default();
            let mut next = 64u64;
            for s in &steps {
                match *s {
                    Step::Add { bufs } => {
                        let b = buffers(bufs, true);
                        let slot = q.next_free();
                        if let Some(id) = q.add(&b, next) {
                            prop_assert_eq!(id, slot, "in order, a chain's id is its first slot");
                            order.push_back((id, next));
                            next += 64;
                            q.publish();
                            dev.sync(&q);
                        }
                    }
                    Step::Complete { pick: n, len } => {
                        let ids = dev.complete_in_order(&q, n as usize, len as u32);
                        let alone = ids.len() == 1;
                        for id in ids {
                            let cookie = order.iter().find(|c| c.0 == id).expect("held").1;
                            done.insert(cookie, if alone { len as u32 } else { 0 });
                        }
                    }
                    Step::Poll { max, batch } => {
                        let n = q.used_count(max as u16);
                        prop_assert!(n <= max as u16);
                        prop_assert!(n as usize <= done.len());
                        for (cookie, len) in take_in_order(&mut q, n, batch) {
                            prop_assert_eq!(order.pop_front().map(|c| c.1), Some(cookie));
                            prop_assert_eq!(done.remove(&cookie), Some(len));
                        }
                    }
                }
                accounted(&q, &m, order.len())?;
            }
            // Everything the device used is found, however the polls cut it.
            prop_assert_eq!(q.used_count(u16::MAX) as usize, done.len());
        }
    }
}
