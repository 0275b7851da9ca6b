//! The data path: RX and TX bursts over the virtqueues, RX refill, TX reclaim, and what a
//! dead poller leaves behind: the sent mbufs it had already freed (`forget_freed`) and the
//! buffers every queue holds after a reset.

use super::defs::{feature, NET_HDR_LEN};
use super::virtqueue::{self, Notifier, Used, UsedChains, VirtQueue};
use super::{rx_zone, tx_zone, VirtioNet};
use net::ethdev::{DeviceRecord, Direction, Result, RxBurst, TxBurst};
use net::{mbuf, Mbuf, PktmbufPool};

/// Refill the RX ring once this many descriptors are free.
const RX_FREE_THRESH: u16 = 32;

impl VirtioNet {
    /// This process's RX queue `q`.
    pub(super) fn open_rx_queue(&self, q: u16) -> Result<Box<dyn RxBurst>> {
        let pool = self
            .rec
            .rx_pool(q)
            .ok_or_else(|| self.err(format!("RX queue {q} has no pool")))?;
        let sh = virtqueue::lookup(&rx_zone(self.port_id, q))?;
        let vq = VirtQueue::new(sh, self.t.notifier(2 * q));
        Ok(Box::new(VirtioRx::new(
            vq,
            pool,
            self.port_id,
            self.rec,
            self.features(),
        )))
    }

    /// This process's TX queue `q`.
    pub(super) fn open_tx_queue(&self, q: u16) -> Result<Box<dyn TxBurst>> {
        let sh = virtqueue::lookup(&tx_zone(self.port_id, q))?;
        let vq = VirtQueue::new(sh, self.t.notifier(2 * q + 1));
        Ok(Box::new(VirtioTx {
            vq,
            done: Vec::with_capacity(sh.size() as usize),
        }))
    }

    /// Repairs queue `q` after its poller died: TX, the sent mbufs it had freed; both, the
    /// chains and descriptors it was moving.
    pub(super) fn recover_dead_queue(&self, dir: Direction, q: u16) {
        let (zone, index) = match dir {
            Direction::Rx => (rx_zone(self.port_id, q), 2 * q),
            Direction::Tx => (tx_zone(self.port_id, q), 2 * q + 1),
        };
        let Ok(sh) = virtqueue::lookup(&zone) else {
            return;
        };
        let mut vq = VirtQueue::new(sh, self.t.notifier(index));
        if dir == Direction::Tx {
            match VirtioTx::forget_freed(&mut vq) {
                0 => {}
                n => log::warn!(
                    "{}: TX queue {q}: forgot {n} sent mbufs its dead poller had freed",
                    self.rec.name()
                ),
            }
        }
        match vq.repair() {
            0 => {}
            n => log::info!(
                "{}: {dir} queue {q}: {n} descriptors its dead poller was moving are free again",
                self.rec.name()
            ),
        }
    }

    /// Gives back the buffers every queue still holds (after a reset).
    pub(super) fn drain_queues(&self) {
        for q in 0..self.pairs() {
            for zone in [rx_zone(self.port_id, q), tx_zone(self.port_id, q)] {
                if let Ok(sh) = virtqueue::lookup(&zone) {
                    let mut vq = VirtQueue::new(sh, Notifier::EventFd(-1));
                    for cookie in vq.drain() {
                        if cookie != 0 {
                            // SAFETY: cookies of RX/TX chains are mbufs the queue owned.
                            drop(unsafe { Mbuf::from_addr(cookie as usize) });
                        }
                    }
                }
            }
        }
    }
}

/// An RX queue: each descriptor is one buffer; the header sits in the mbuf's headroom.
pub(super) struct VirtioRx {
    vq: VirtQueue,
    pool: PktmbufPool,
    port_id: u16,
    rec: DeviceRecord,
    mergeable: bool,
    fresh: Vec<Mbuf>,
}

impl VirtioRx {
    pub(super) fn new(
        vq: VirtQueue,
        pool: PktmbufPool,
        port_id: u16,
        rec: DeviceRecord,
        features: u64,
    ) -> VirtioRx {
        VirtioRx {
            fresh: Vec::with_capacity(vq.num_free().max(64) as usize + 64),
            vq,
            pool,
            port_id,
            rec,
            mergeable: features & feature::MRG_RXBUF != 0,
        }
    }

    /// Gives the device fresh buffers for every free descriptor.
    #[inline]
    pub(super) fn refill(&mut self) {
        let n = self.vq.num_free() as usize;
        if n == 0 {
            return;
        }
        if !self.pool.alloc_bulk(&mut self.fresh, n) {
            self.rec.count_rx_nombuf(n as u64);
            return;
        }
        for m in self.fresh.drain(..) {
            let hdr = NET_HDR_LEN as u64;
            let bufs = [(m.data_iova() - hdr, m.tailroom() as u32 + hdr as u32, true)];
            // The descriptor now owns the buffer; it comes back as the used entry's cookie.
            let cookie = m.into_addr() as u64;
            if self.vq.add(&bufs, cookie).is_none() {
                // SAFETY: the buffer was not queued; take ownership back to free it.
                drop(unsafe { Mbuf::from_addr(cookie as usize) });
            }
        }
        self.vq.publish();
    }

    /// Takes one used buffer as a segment of `len` bytes (header included in the first),
    /// its chain onto `chains`; `None` when the device lied about it (the entry skipped, or
    /// its buffer freed).
    #[inline(always)]
    fn take(&mut self, chains: &mut UsedChains, skip_hdr: bool) -> Option<(Mbuf, u16)> {
        // A first buffer holds the header and at least a byte of frame.
        let min_len = if skip_hdr { NET_HDR_LEN as u32 + 1 } else { 1 };
        let (cookie, len) = match self.vq.take_next_used(chains, min_len) {
            Used::Chain { cookie, len } => (cookie, len),
            Used::BadLen { cookie } => {
                // SAFETY: the cookie of an RX descriptor is the mbuf queued with it; the
                // queue no longer names it (its used entry is consumed with the batch).
                drop(unsafe { Mbuf::from_addr(cookie as usize) });
                return None;
            }
            Used::BadId => return None,
        };
        // SAFETY: the cookie of an RX descriptor is the mbuf queued with it: one empty
        // segment, as `refill` posted it.
        let mut m = unsafe { Mbuf::from_addr(cookie as usize) };
        let mut num_buffers = 1;
        let data = if skip_hdr {
            // A device fills every buffer of a frame but the last (virtio 1.1, 5.1.6.4.2),
            // so a first buffer it did not fill holds the whole frame: its header is not
            // read, and its line stays with the device's core, which writes it next.
            if self.mergeable && len >= m.tailroom() as u32 + NET_HDR_LEN as u32 {
                let hdr = m.data().as_ptr().wrapping_sub(NET_HDR_LEN as usize);
                // SAFETY: the header is the 12 bytes before the data, inside the headroom
                // (checked at queue set-up); num_buffers is its last field.
                num_buffers = unsafe { std::ptr::read_unaligned(hdr.add(10) as *const u16) };
            }
            len.saturating_sub(NET_HDR_LEN as u32)
        } else {
            // A continuation buffer holds frame data from its start, where a first buffer
            // holds the header (`refill` posts them alike): its data starts that much
            // earlier.
            if m.prepend(NET_HDR_LEN).is_some() {
                m.trim(NET_HDR_LEN);
            }
            len
        };
        m.set_received_len(data.min(u16::MAX as u32) as u16);
        Some((m, num_buffers.max(1)))
    }
}

impl RxBurst for VirtioRx {
    #[inline]
    fn rx_burst(&mut self, out: &mut Vec<Mbuf>, max: usize) -> usize {
        let mut avail = self.vq.used_count(max.min(u16::MAX as usize) as u16) as usize;
        let mut n = 0;
        // The burst's chains go back to the free list at once, after the loop.
        let mut chains = UsedChains::default();
        while n < max && avail > 0 {
            avail -= 1;
            let Some((mut m, bufs)) = self.take(&mut chains, true) else {
                continue;
            };
            // A frame larger than one buffer continues in the next used entries; one of
            // them lied about drops the frame.
            let mut whole = true;
            for left in (1..bufs).rev() {
                if avail == 0 {
                    // The burst counted no further than it needed for `max` frames.
                    avail = self.vq.used_count_after(chains.entries(), left) as usize;
                    if avail == 0 {
                        break;
                    }
                }
                avail -= 1;
                match self.take(&mut chains, false) {
                    Some((seg, _)) => m.chain(seg),
                    None => whole = false,
                }
            }
            if !whole {
                continue;
            }
            m.set_port(self.port_id);
            out.push(m);
            n += 1;
        }
        self.vq.give_back(chains);
        if self.vq.num_free() >= RX_FREE_THRESH {
            self.refill();
        }
        n
    }
}

/// A TX burst takes sent buffers back only once fewer descriptors than this (or than it
/// has packets) are free: the used ring is then read in large batches, long after the
/// device wrote it, rather than a few entries while the device's core is writing them.
const TX_RECLAIM_BELOW: usize = 64;

/// A TX queue: one chain per packet, the header prepended in the headroom when the
/// buffer is ours alone, else in the queue's header slot.
struct VirtioTx {
    vq: VirtQueue,
    done: Vec<Mbuf>,
}

impl VirtioTx {
    /// Frees what the device has sent, a batch at a time, each back in the pool before the
    /// queue forgets it (as the Intel TX ring's clean; `forget_freed` repairs a poller
    /// killed in between).
    #[inline]
    fn reclaim(&mut self) {
        // One look at what the device has used: its index's line is the device's.
        let mut n = self.vq.used_count(u16::MAX);
        while n > 0 {
            let batch = n.min(mbuf::FREE_BATCH as u16);
            let mut chains = UsedChains::default();
            for k in 0..batch {
                let Some((head, cookie, _)) = self.vq.peek_used(k) else {
                    self.vq.skip_used(&mut chains);
                    continue;
                };
                self.vq.link_used(&mut chains, head);
                // SAFETY: the cookie of a TX chain is the mbuf sent with it.
                self.done.push(unsafe { Mbuf::from_addr(cookie as usize) });
            }
            let vq = &mut self.vq;
            let freed = self.done.len();
            mbuf::free_then_forget(&mut self.done, freed, || vq.take_used(chains));
            n -= batch;
        }
    }

    /// After the queue's poller died inside a reclaim: takes the used entries of the mbufs
    /// it had already put back in its lcore's cache and ends their pin, before the primary
    /// empties that cache. Returns how many.
    /// The chains it had marked as being taken and not freed are unmarked.
    fn forget_freed(vq: &mut VirtQueue) -> usize {
        let n = vq.used_count(mbuf::FREE_BATCH as u16);
        let cookies: Vec<usize> = (0..n).map(|k| vq.used_cookie(k) as usize).collect();
        // `take_used` clears the batch's cookies in order before the used index moves: the
        // entries it had cleared come first, then those still naming the rest of the batch,
        // up to the first that names none (a lie, or a chain already given back).
        let cleared = cookies.iter().take_while(|&&c| c == 0).count();
        let oldest: Vec<usize> = cookies[cleared..]
            .iter()
            .copied()
            .take_while(|&c| c != 0)
            .collect();
        vq.unmark_taking();
        // SAFETY: the cookies of used TX entries are the mbufs sent with them.
        let Some((named, pin)) = (unsafe { mbuf::dead_pinned_prefix(&oldest) }) else {
            // Nothing of the batch named any more (all cleared, or none pinned): the
            // cache's objects are the cache's.
            return 0;
        };
        let n = cleared + named;
        let mut chains = UsedChains::default();
        for k in 0..n as u16 {
            match vq.peek_used(k) {
                Some((head, _, _)) => vq.link_used(&mut chains, head),
                None => vq.skip_used(&mut chains),
            }
        }
        vq.take_used(chains);
        pin.unpin();
        n
    }
}

impl TxBurst for VirtioTx {
    #[inline]
    fn tx_burst(&mut self, pkts: &mut Vec<Mbuf>) -> usize {
        if (self.vq.num_free() as usize) < pkts.len().max(TX_RECLAIM_BELOW) {
            self.reclaim();
        }
        let mut free = self.vq.num_free() as usize;
        let mut fit = 0;
        for m in pkts.iter() {
            let push = m.refcnt() == 1 && m.headroom() >= NET_HDR_LEN;
            let need = m.nb_segs() as usize + usize::from(!push);
            if need > free {
                break;
            }
            free -= need;
            fit += 1;
        }
        let mut bufs: [(u64, u32, bool); 8] = [(0, 0, false); 8];
        for mut m in pkts.drain(..fit) {
            // The header goes in the headroom, in front of the data, which stays where it
            // is (the mbuf is not changed): the first descriptor starts that much earlier.
            let push = m.refcnt() == 1 && m.zero_before_data(NET_HDR_LEN);
            let mut k = 0;
            let mut hdr = 0;
            if push {
                eal::store_point!("virtio.tx.hdr");
                hdr = NET_HDR_LEN as u64;
            } else {
                // The next free descriptor becomes the head: its slot holds a zero header.
                let slot = self.vq.next_free();
                bufs[0] = (self.vq.hdr_slot_iova(slot), NET_HDR_LEN as u32, false);
                k = 1;
            }
            let mut chain_ok = true;
            if m.nb_segs() == 1 {
                // The usual frame, without the segment walk.
                bufs[k] = (m.data_iova() - hdr, m.data_len() as u32 + hdr as u32, false);
                k += 1;
            } else {
                for seg in m.segment_iovas() {
                    if k == bufs.len() {
                        chain_ok = false;
                        break;
                    }
                    bufs[k] = (seg.0 - hdr, seg.1 + hdr as u32, false);
                    hdr = 0;
                    k += 1;
                }
            }
            if !chain_ok {
                log::warn!("virtio TX: dropping a packet of more than 7 segments");
                self.vq.count_dropped();
                continue;
            }
            let cookie = m.into_addr() as u64;
            if self.vq.add(&bufs[..k], cookie).is_none() {
                self.vq.count_dropped();
                // SAFETY: not queued: take the buffer back to free it.
                drop(unsafe { Mbuf::from_addr(cookie as usize) });
            }
        }
        self.vq.publish();
        fit
    }

    fn tx_mark(&self) -> Option<u32> {
        Some(self.vq.taken() as u32)
    }

    fn done_cleanup(&mut self) -> usize {
        self.reclaim();
        // Chains a poller killed before publishing them go out now; one killed before
        // notifying the device left it asleep: wake it.
        self.vq.publish();
        let held = self.vq.in_flight();
        if held > 0 {
            self.vq.kick();
        }
        held as usize
    }
}
