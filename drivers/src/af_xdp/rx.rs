//! A `net_af_xdp` RX queue: frames from the socket's RX ring, fresh buffers into its fill
//! ring, each lent to the kernel after the store that commits it (see `queue.rs`).

use super::queue::{kernel_token, QueueShared, Umem0};
use super::sockets::{OnSocket, Socket, SocketLink};
use super::xsk;
use net::ethdev::{DeviceRecord, Direction};
use net::mbuf::{self, Mbuf};
use net::PktmbufPool;
use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering;

/// An RX queue's handle: the RX and fill rings of its socket.
pub(super) struct XskRx {
    link: SocketLink,
    shared: &'static QueueShared,
    pool: PktmbufPool,
    umem: Umem0,
    port_id: u16,
    token: u32,
    busy_poll: bool,
    /// Buffers the kernel should hold: the RX ring's size.
    target: u32,
    rx_cons: u32,
    rx_prod_seen: u32,
    fill_prod: u32,
    fill_cons_seen: u32,
    fresh: Vec<Mbuf>,
    rec: DeviceRecord,
}

/// Refills post at least this many buffers at once (or all that are missing).
const REFILL_BATCH: u32 = 32;

impl XskRx {
    pub(super) fn new(
        link: SocketLink,
        shared: &'static QueueShared,
        pool: PktmbufPool,
        port_id: u16,
        q: u16,
        busy_poll: bool,
        rec: DeviceRecord,
    ) -> XskRx {
        let mut rx = XskRx {
            umem: Umem0(0),
            token: kernel_token(port_id, Direction::Rx, q),
            target: 0,
            rx_cons: 0,
            rx_prod_seen: 0,
            fill_prod: 0,
            fill_cons_seen: 0,
            fresh: Vec::with_capacity(64),
            link,
            shared,
            pool,
            port_id,
            busy_poll,
            rec,
        };
        rx.socket();
        rx
    }

    /// Posts fresh buffers until the kernel holds the RX ring's worth (or the pool runs
    /// dry): the initial fill of a started queue.
    pub(super) fn fill_all(&mut self) -> bool {
        let Some(s) = self.socket() else { return false };
        while self.missing() > 0 {
            if !self.refill(s, 1) {
                return false;
            }
        }
        true
    }

    /// Buffers the kernel lacks: everything posted to the fill ring and not yet taken back
    /// from the RX ring is the kernel's.
    #[inline(always)]
    fn missing(&self) -> u32 {
        self.target
            .saturating_sub(self.fill_prod.wrapping_sub(self.rx_cons))
    }

    /// Posts up to a batch of fresh buffers when at least `min` are missing; false when
    /// the pool had none.
    #[inline]
    fn refill(&mut self, s: &Socket, min: u32) -> bool {
        let want = self.missing();
        if want < min.max(1) {
            return true;
        }
        let fill = &s.rings.fill;
        let p = self.fill_prod;
        let mut room = fill.size() - p.wrapping_sub(self.fill_cons_seen);
        if room < want {
            self.fill_cons_seen = fill.consumer().load(Ordering::Acquire);
            room = fill.size() - p.wrapping_sub(self.fill_cons_seen);
        }
        let k = want.min(room).min(self.fresh.capacity() as u32);
        if k == 0 {
            return true;
        }
        if !self.pool.alloc_bulk(&mut self.fresh, k as usize) {
            self.rec.count_rx_nombuf(k as u64);
            return false;
        }
        let (slots, umem) = (fill.slots(), self.umem);
        for (i, m) in self.fresh.iter().enumerate() {
            // SAFETY: a slot of the fill ring between its producer and the kernel's
            // consumer: ours to write until the producer moves past it.
            unsafe { *slots.addr(p.wrapping_add(i as u32)) = umem.chunk(m.addr()) };
        }
        let log = &self.shared.rx.fill;
        log.store((p as u64) << 32 | (k as u64) << 1 | 1, Ordering::Relaxed);
        eal::store_point!("af_xdp.fill.log");
        let end = p.wrapping_add(k);
        fill.producer().store(end, Ordering::Release);
        eal::store_point!("af_xdp.fill.commit");
        eal::fault_point!("af_xdp.fill.committed");
        for m in self.fresh.drain(..) {
            // SAFETY: one-segment mbufs the fill ring now names.
            unsafe { mbuf::lend_to_kernel(m.into_addr(), self.token) };
        }
        log.store(0, Ordering::Release);
        eal::store_point!("af_xdp.fill.logged");
        self.fill_prod = end;
        true
    }
}

impl OnSocket for XskRx {
    fn link(&mut self) -> &mut SocketLink {
        &mut self.link
    }
    fn sync(&mut self, s: &Socket) {
        let r = &s.rings;
        self.umem = Umem0(self.shared.umem().addr);
        self.target = r.rx.size();
        self.rx_cons = r.rx.consumer().load(Ordering::Acquire);
        self.rx_prod_seen = self.rx_cons;
        self.fill_prod = r.fill.producer().load(Ordering::Acquire);
        self.fill_cons_seen = r.fill.consumer().load(Ordering::Acquire);
    }
}

impl net::ethdev::RxBurst for XskRx {
    #[inline]
    fn rx_burst(&mut self, out: &mut Vec<Mbuf>, max: usize) -> usize {
        let Some(s) = self.socket() else { return 0 };
        let rx = &s.rings.rx;
        let mut avail = self.rx_prod_seen.wrapping_sub(self.rx_cons);
        if avail == 0 {
            self.rx_prod_seen = rx.producer().load(Ordering::Acquire);
            avail = self.rx_prod_seen.wrapping_sub(self.rx_cons);
        }
        if avail == 0 {
            self.refill(s, 1);
            if self.busy_poll || s.rings.fill.needs_wakeup() {
                let _ = xsk::kick_rx(s.fd.as_raw_fd());
            }
            // Frames a TX kick left in the ring of this socket (its device was busy) would
            // wait for the queue's next burst, which may never come: an idle poll sends them.
            let tx = &s.rings.tx;
            if tx.producer().load(Ordering::Relaxed) != tx.consumer().load(Ordering::Relaxed)
                && tx.needs_wakeup()
            {
                let _ = xsk::kick_tx(s.fd.as_raw_fd());
            }
            return 0;
        }
        let n = avail.min(max as u32);
        let (slots, umem, port, cons) = (rx.slots(), self.umem, self.port_id, self.rx_cons);
        let hold = mbuf::KernelReturns::to_this_process();
        out.extend((0..n).map(|i| {
            // SAFETY: an entry between the consumer and the producer the kernel published.
            let d = unsafe { *slots.desc(cons.wrapping_add(i)) };
            let (chunk, off) = xsk::split_addr(d.addr);
            let addr = umem.mbuf(chunk);
            // SAFETY: the kernel returned a buffer this queue lent it: a one-segment mbuf
            // of the queue's pool, the queue's until its consumer moves past it.
            let mut m = unsafe {
                hold.hold(addr);
                Mbuf::from_addr(addr)
            };
            m.set_received_at(off as u16, d.len as u16);
            m.set_port(port);
            m
        }));
        eal::fault_point!("af_xdp.rx.taken");
        self.rx_cons = self.rx_cons.wrapping_add(n);
        rx.consumer().store(self.rx_cons, Ordering::Release);
        eal::store_point!("af_xdp.rx.commit");
        self.refill(s, REFILL_BATCH);
        n as usize
    }
}
