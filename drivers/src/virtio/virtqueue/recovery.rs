//! What a queue's next user needs after its poller died: the driver's state brought back in
//! line with the chains that hold a buffer (ARCHITECTURE.md, "What a driver's recovery hooks
//! must guarantee"), and the census that checks it.

use super::{Link, VirtQueue, VqShared, COOKIE_TAKING};

impl VqShared {
    /// Descriptors neither free nor in a chain that holds a buffer, and chains counted in
    /// flight that hold none (a snapshot while nobody polls the queue): both 0 unless a
    /// dead poller's queue went unrepaired (see [`VirtQueue::repair`]).
    pub fn unaccounted(&self) -> (u16, u16) {
        let links = self.links as *const Link;
        let (mut named, mut descs) = (0u16, 0u16);
        for i in 0..self.size as usize {
            // SAFETY: i < size: inside the cookie and link arrays.
            let (cookie, link) = unsafe { (*(self.cookies as *const u64).add(i), *links.add(i)) };
            if cookie & !COOKIE_TAKING != 0 {
                named += 1;
                descs += link.descs;
            }
        }
        let lost = if self.is_packed() {
            self.packed_unaccounted_slots(descs)
        } else {
            self.size.wrapping_sub(self.num_free).wrapping_sub(descs)
        };
        (lost, self.in_flight().wrapping_sub(named))
    }
}

impl VirtQueue {
    /// After its poller died, and once the buffers it had freed are forgotten (TX:
    /// `forget_freed`): brings the driver's state back in line with the chains that hold a
    /// buffer (their head's cookie), whatever store the poller died after, so that no
    /// descriptor is lost. Only while nobody polls the queue; the device may go on.
    /// - Cookies marked as being taken are unmarked: those chains are still in flight.
    /// - An `add` killed after naming its chain and before counting it is finished (the
    ///   available ring's slot names the chain): the chain goes to the device.
    /// - Used entries at the front naming no chain are consumed: the chains a take back
    ///   had cleared (and lies, which the next poller would skip).
    /// - Every descriptor outside a named chain goes back to the free list (a take back
    ///   killed before its chains reached it, an `add` killed before naming its chain:
    ///   neither was ever visible to the device), and the chains in flight are counted
    ///   as exactly the named ones.
    ///
    /// Returns how many descriptors this gave back to the free list beyond those it had.
    pub fn repair(&mut self) -> u16 {
        self.unmark_taking();
        if self.packed {
            return self.repair_packed();
        }
        let size = self.mask + 1;
        let mut in_chain = vec![false; size as usize];
        let (mut named, mut descs_named) = (0u16, 0u16);
        for head in 0..size {
            if *self.cookie(head) == 0 {
                continue;
            }
            named += 1;
            descs_named += self.link(head).descs;
            let mut d = head;
            for _ in 0..self.link(head).descs {
                in_chain[d as usize] = true;
                d = self.link(d).next & self.mask;
            }
        }
        let st = self.st();
        if named == st.in_flight().wrapping_add(1) {
            // SAFETY: the slot is masked: inside the available ring.
            let head = unsafe { *self.avail_ring.add((st.avail_idx & self.mask) as usize) };
            if head <= self.mask && *self.cookie(head) != 0 {
                st.avail_idx = st.avail_idx.wrapping_add(1);
            }
        }
        if self.in_order {
            return self.repair_in_order(named, descs_named);
        }
        let waiting = st.used_waiting().min(size);
        for _ in 0..waiting {
            let id = self.used_elem(0).id;
            if id <= self.mask as u32 && *self.cookie(id as u16) != 0 {
                break;
            }
            st.last_used = st.last_used.wrapping_add(1);
        }
        // In flight = added - looked at + skipped: the skipped make up the difference.
        st.skipped = named.wrapping_sub(st.avail_idx.wrapping_sub(st.last_used));
        let was_free = st.num_free;
        let mut free = 0u16;
        for i in (0..size).rev().filter(|&i| !in_chain[i as usize]) {
            self.link(i).next = if free == 0 { i } else { st.free_head };
            st.free_head = i;
            free += 1;
        }
        st.num_free = free;
        free.saturating_sub(was_free)
    }

    /// After its poller died: the cookies it had marked as being taken (between
    /// `link_used` and `take_used`) are unmarked, their chains still in flight.
    pub fn unmark_taking(&mut self) {
        for i in 0..=self.mask {
            *self.cookie(i) &= !COOKIE_TAKING;
        }
    }

    /// The cookie of used entry `k` as it is (for repairs after a poller died: the
    /// entries it marked as being taken), or 0 when the entry names no chain in flight.
    pub fn used_cookie(&self, k: u16) -> u64 {
        let e = self.used_elem(k);
        if e.id > self.mask as u32 {
            return 0;
        }
        *self.cookie(e.id as u16) & !COOKIE_TAKING
    }
}
