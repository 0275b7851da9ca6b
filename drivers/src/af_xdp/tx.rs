//! A `net_af_xdp` TX queue: packets into the socket's TX ring (as they are when they lie in
//! the UMEM, copied into it otherwise), sent buffers freed from its completion ring.

use super::queue::{kernel_token, QueueShared, Umem0};
use super::sockets::{OnSocket, Socket, SocketLink};
use super::xsk;
use net::ethdev::Direction;
use net::mbuf::{self, Mbuf};
use net::PktmbufPool;
use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering;

/// Calls in a row that may find the kernel taking no TX descriptor before a kick gives up.
const KICK_STALLS: u32 = 8;

/// A TX queue's handle: the TX and completion rings of its socket.
pub(super) struct XskTx {
    link: SocketLink,
    shared: &'static QueueShared,
    /// The UMEM's pool: packets of it go out without a copy, others are copied into it.
    pool: PktmbufPool,
    umem: Umem0,
    chunk: u32,
    token: u32,
    size: u32,
    tx_prod: u32,
    comp_cons: u32,
    comp_prod_seen: u32,
    /// Completions to free where this thread has no cache of the pool (see `reap`).
    done: Vec<Mbuf>,
    /// The packets of a burst that did not go out as they were: their index in the burst
    /// and their copy's address (0: too long, dropped).
    copies: Vec<(usize, usize)>,
    kick_failed: bool,
    /// `port: interface`, for messages.
    label: String,
}

impl XskTx {
    pub(super) fn new(
        link: SocketLink,
        shared: &'static QueueShared,
        pool: PktmbufPool,
        port_id: u16,
        q: u16,
        label: String,
    ) -> XskTx {
        let mut tx = XskTx {
            umem: Umem0(0),
            chunk: 0,
            token: kernel_token(port_id, Direction::Tx, q),
            size: 0,
            tx_prod: 0,
            comp_cons: 0,
            comp_prod_seen: 0,
            done: Vec::with_capacity(mbuf::FREE_BATCH),
            copies: Vec::with_capacity(64),
            kick_failed: false,
            link,
            shared,
            pool,
            label,
        };
        tx.socket();
        tx
    }

    /// Frees what the kernel has finished sending, a batch at a time.
    #[inline]
    fn reap(&mut self, s: &Socket) {
        let comp = &s.rings.comp;
        let (slots, umem) = (comp.slots(), self.umem);
        let mut objs = [0usize; mbuf::FREE_BATCH];
        loop {
            let mut avail = self.comp_prod_seen.wrapping_sub(self.comp_cons);
            if avail < mbuf::FREE_BATCH as u32 {
                self.comp_prod_seen = comp.producer().load(Ordering::Acquire);
                avail = self.comp_prod_seen.wrapping_sub(self.comp_cons);
            }
            let n = avail.min(mbuf::FREE_BATCH as u32) as usize;
            if n == 0 {
                return;
            }
            let cons = self.comp_cons;
            for (i, o) in objs[..n].iter_mut().enumerate() {
                // SAFETY: an entry the kernel published, naming a buffer this queue sent.
                let a = unsafe { *slots.addr(cons.wrapping_add(i as u32)) };
                *o = umem.mbuf(xsk::split_addr(a).0);
            }
            let end = cons.wrapping_add(n as u32);
            let forget = move || {
                comp.consumer().store(end, Ordering::Release);
                eal::store_point!("af_xdp.comp.commit");
            };
            // SAFETY: every buffer this queue lends is a one-segment mbuf of the UMEM's pool
            // with one reference (`zero_copy` said so, or a copy made here), and the kernel
            // has given these back: the queue's to free.
            let freed = unsafe { mbuf::fast_free_then_forget(&self.pool, &objs[..n], forget) };
            if !freed {
                // SAFETY: as above, each the queue's.
                let sent = objs[..n].iter().map(|&a| unsafe { Mbuf::from_addr(a) });
                self.done.extend(sent);
                mbuf::free_then_forget(&mut self.done, n, forget);
            }
            self.comp_cons = end;
        }
    }

    /// Lends the kernel what a burst with copies put in the TX ring: the packets sent as
    /// they were and the copies of the others (`taken`: the burst's packets taken).
    fn lend_with_copies(&self, taken: &[Mbuf], token: u32) {
        let mut copies = self.copies.iter().peekable();
        for (i, m) in taken.iter().enumerate() {
            let addr = match copies.next_if(|c| c.0 == i) {
                Some(&(_, copy)) => copy,
                None => m.addr(),
            };
            if addr != 0 {
                // SAFETY: a one-segment mbuf the TX ring now names.
                unsafe { mbuf::lend_to_kernel(addr, token) };
            }
        }
    }

    /// A copy of `m` in an mbuf of the UMEM's pool: None when the pool is empty, Some(None)
    /// when `m` is too long for a chunk.
    fn copy(&self, m: &Mbuf) -> Option<Option<Mbuf>> {
        let len = m.pkt_len();
        if len + xsk::XDP_PACKET_HEADROOM as u32 > self.chunk || len > u16::MAX as u32 {
            return Some(None);
        }
        let mut c = self.pool.alloc()?;
        let room = c.append(len as u16)?;
        let mut at = 0;
        for s in m.segments() {
            room[at..at + s.len()].copy_from_slice(s);
            at += s.len();
        }
        Some(Some(c))
    }

    /// Has the kernel send what the ring holds: copy mode sends inside the call, a batch
    /// at a time.
    #[inline]
    fn kick(&mut self, s: &Socket) {
        if !s.rings.tx.needs_wakeup() {
            return;
        }
        // Copy mode sends 32 a call, and a device whose queue is full (virtio_net) refuses
        // more for a while: both say EAGAIN. Call again while the kernel takes descriptors,
        // as DPDK's driver does; after a few calls without progress, what is left goes
        // with a later kick (the next burst, or an RX poll of this socket finding nothing).
        let consumer = s.rings.tx.consumer();
        let (mut seen, mut stalled) = (consumer.load(Ordering::Acquire), 0);
        loop {
            match xsk::kick_tx(s.fd.as_raw_fd()) {
                Ok(true) => {
                    let now = consumer.load(Ordering::Acquire);
                    if now != seen {
                        (seen, stalled) = (now, 0);
                    } else if stalled == KICK_STALLS {
                        return;
                    } else {
                        stalled += 1;
                    }
                }
                Ok(false) => {
                    if self.kick_failed {
                        log::info!("{}: sending again", self.label);
                        self.kick_failed = false;
                    }
                    return;
                }
                Err(e) => {
                    if !self.kick_failed {
                        let why = match e.raw_os_error() {
                            Some(libc::ENETDOWN) => {
                                "is down: what is sent waits in the TX ring until it is up again"
                            }
                            Some(libc::ENXIO) => {
                                "is gone: its sockets are dead; close the port and probe it again"
                            }
                            _ => "refuses to send",
                        };
                        log::warn!("{} {why} ({e})", self.label);
                        self.kick_failed = true;
                    }
                    return;
                }
            }
        }
    }
}

impl OnSocket for XskTx {
    fn link(&mut self) -> &mut SocketLink {
        &mut self.link
    }
    fn sync(&mut self, s: &Socket) {
        let (r, umem) = (&s.rings, self.shared.umem());
        self.umem = Umem0(umem.addr);
        self.chunk = umem.chunk;
        self.size = r.tx.size().min(r.comp.size());
        self.tx_prod = r.tx.producer().load(Ordering::Acquire);
        self.comp_cons = r.comp.consumer().load(Ordering::Acquire);
        self.comp_prod_seen = self.comp_cons;
    }
}

impl net::ethdev::TxBurst for XskTx {
    #[inline]
    fn tx_burst(&mut self, pkts: &mut Vec<Mbuf>) -> usize {
        let Some(s) = self.socket() else { return 0 };
        self.reap(s);
        let room = self.size - self.tx_prod.wrapping_sub(self.comp_cons);
        let n = pkts.len().min(room as usize);
        if n == 0 {
            self.kick(s);
            return 0;
        }
        let tx = &s.rings.tx;
        let (slots, umem, pool, chunk, p) = (
            tx.slots(),
            self.umem,
            self.pool.addr(),
            self.chunk,
            self.tx_prod,
        );
        let mut k = 0u32;
        let mut take = 0;
        self.copies.clear();
        for (i, m) in pkts[..n].iter().enumerate() {
            let (addr, off, len) = if zero_copy(m, pool, chunk) {
                (m.addr(), m.headroom(), m.data_len())
            } else {
                match self.copy(m) {
                    None => break,
                    Some(None) => {
                        self.copies.push((i, 0));
                        take += 1;
                        continue;
                    }
                    Some(Some(c)) => {
                        let (off, len) = (c.headroom(), c.data_len());
                        let a = c.into_addr();
                        self.copies.push((i, a));
                        (a, off, len)
                    }
                }
            };
            // SAFETY: a slot between the kernel's consumer and our producer: ours to
            // write until the producer moves past it (room counted above).
            unsafe {
                *slots.desc(p.wrapping_add(k)) = libc::xdp_desc {
                    addr: xsk::desc_addr(umem.chunk(addr), off as u64),
                    len: len as u32,
                    options: 0,
                }
            };
            k += 1;
            take += 1;
        }
        if take == 0 {
            return 0;
        }
        let log = &self.shared.tx;
        let before = log.taken.load(Ordering::Relaxed);
        log.taken_run
            .store((before as u64) << 32 | take as u64, Ordering::Relaxed);
        log.run
            .store((p as u64) << 32 | (k as u64) << 1 | 1, Ordering::Relaxed);
        eal::store_point!("af_xdp.tx.log");
        let end = p.wrapping_add(k);
        tx.producer().store(end, Ordering::Release);
        eal::store_point!("af_xdp.tx.commit");
        eal::fault_point!("af_xdp.tx.committed");
        let token = self.token;
        if self.copies.is_empty() {
            // Every packet went out as it was: each is the kernel's now.
            for m in pkts.drain(..take) {
                // SAFETY: a one-segment mbuf the TX ring now names.
                unsafe { mbuf::lend_to_kernel(m.into_addr(), token) };
            }
        } else {
            self.lend_with_copies(&pkts[..take], token);
        }
        log.taken
            .store(before.wrapping_add(take as u32), Ordering::Release);
        log.run.store(0, Ordering::Release);
        eal::store_point!("af_xdp.tx.logged");
        self.tx_prod = end;
        if !self.copies.is_empty() {
            // The originals of copies, and packets too long, are freed; the rest are the
            // kernel's.
            let mut copied = self.copies.iter().map(|c| c.0).peekable();
            for (i, m) in pkts.drain(..take).enumerate() {
                if copied.next_if_eq(&i).is_none() {
                    m.into_addr();
                }
            }
            let too_long = self.copies.iter().filter(|c| c.1 == 0).count();
            log.too_long.fetch_add(too_long as u64, Ordering::Relaxed);
        }
        self.kick(s);
        take
    }

    fn tx_mark(&self) -> Option<u32> {
        Some(self.shared.tx_taken())
    }

    fn done_cleanup(&mut self) -> usize {
        let Some(s) = self.socket() else { return 0 };
        self.kick(s);
        self.reap(s);
        self.tx_prod.wrapping_sub(self.comp_cons) as usize
    }
}

/// Whether `m` can go out as it is: one segment of `pool` (the UMEM's), with no other
/// reference, inside one chunk of `chunk` bytes.
#[inline(always)]
fn zero_copy(m: &Mbuf, pool: u64, chunk: u32) -> bool {
    m.fast_free_pool() == Some(pool) && m.headroom() as u32 + m.data_len() as u32 <= chunk
}
