//! A queue pair of a `net_af_xdp` port: its state shared by the group (a memzone per port),
//! its RX and TX bursts over one socket's rings, and the repair after a poller died.
//!
//! The mbufs lent to the kernel (posted to the fill ring, received and not yet taken,
//! sent and not yet completed) carry a holder word naming the queue
//! (`net::mbuf::KERNEL_HOLDER`): what the rings and the kernel hold is found by those
//! words, whatever the kernel keeps between its rings. Each lend follows the store that
//! commits it to the kernel, and each burst that commits something logs first what it
//! commits, so that [`recover`] can finish the words a killed poller left.

use super::xsk::{self, Ring, RingSizes, Rings, Umem};
use net::ethdev::{DeviceRecord, Direction, MAX_QUEUES};
use net::mbuf::{self, Mbuf, HEADER_SIZE, KERNEL_HOLDER};
use net::PktmbufPool;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;

/// The holder word of the mbufs lent through queue `q` of port `port` in direction `dir`.
pub(super) fn kernel_token(port: u16, dir: Direction, q: u16) -> u32 {
    KERNEL_HOLDER | (port as u32) << 16 | (matches!(dir, Direction::Tx) as u32) << 15 | q as u32
}

/// How a queue was set up, written by the primary when the port starts.
#[repr(C)]
#[derive(Default)]
pub(super) struct QueueConfig {
    umem_addr: AtomicU64,
    umem_len: AtomicU64,
    chunk: AtomicU32,
    fill: AtomicU32,
    comp: AtomicU32,
    rx: AtomicU32,
    tx: AtomicU32,
}

/// What an RX poller logs: the fill-ring run it is committing.
#[repr(C, align(64))]
#[derive(Default)]
struct RxLog {
    /// `producer << 32 | count << 1 | 1` of the run being committed, or 0.
    fill: AtomicU64,
}

/// What a TX poller keeps: its count of packets taken and the run it is committing.
#[repr(C, align(64))]
#[derive(Default)]
struct TxLog {
    /// `producer << 32 | descriptors << 1 | 1` of the run being committed, or 0.
    run: AtomicU64,
    /// `taken before << 32 | packets taken` of that run.
    taken_run: AtomicU64,
    /// Packets TX bursts took (sent, or dropped as too long for the socket), as
    /// `TxBurst::tx_mark` counts.
    taken: AtomicU32,
    /// Packets dropped because they do not fit a UMEM chunk.
    too_long: AtomicU64,
}

/// One queue pair's shared state.
#[repr(C)]
#[derive(Default)]
pub(super) struct QueueShared {
    pub(super) config: QueueConfig,
    /// XDP_STATISTICS as they were at the last xstats reset.
    pub(super) stats_base: [AtomicU64; 6],
    rx: RxLog,
    tx: TxLog,
}

/// A port's shared state: its memzone.
#[repr(C)]
pub(super) struct PortShared {
    pub(super) queues: [QueueShared; MAX_QUEUES],
}

// SAFETY: repr(C) atomics only.
unsafe impl eal::shm::ShmSafe for PortShared {}

impl QueueShared {
    pub(super) fn set_config(&self, umem: Umem, sizes: RingSizes) {
        let c = &self.config;
        c.umem_addr.store(umem.addr, Ordering::Relaxed);
        c.umem_len.store(umem.len, Ordering::Relaxed);
        c.chunk.store(umem.chunk, Ordering::Relaxed);
        c.fill.store(sizes.fill, Ordering::Relaxed);
        c.comp.store(sizes.comp, Ordering::Relaxed);
        c.rx.store(sizes.rx, Ordering::Relaxed);
        c.tx.store(sizes.tx, Ordering::Release);
        self.rx.fill.store(0, Ordering::Relaxed);
        self.tx.run.store(0, Ordering::Relaxed);
    }
    pub(super) fn sizes(&self) -> RingSizes {
        let c = &self.config;
        RingSizes {
            fill: c.fill.load(Ordering::Acquire),
            comp: c.comp.load(Ordering::Acquire),
            rx: c.rx.load(Ordering::Acquire),
            tx: c.tx.load(Ordering::Acquire),
        }
    }
    pub(super) fn umem(&self) -> Umem {
        let c = &self.config;
        Umem {
            addr: c.umem_addr.load(Ordering::Acquire),
            len: c.umem_len.load(Ordering::Acquire),
            chunk: c.chunk.load(Ordering::Acquire),
        }
    }
    pub(super) fn tx_taken(&self) -> u32 {
        self.tx.taken.load(Ordering::Acquire)
    }
    pub(super) fn tx_too_long(&self) -> u64 {
        self.tx.too_long.load(Ordering::Relaxed)
    }
    pub(super) fn reset_tx_too_long(&self) {
        self.tx.too_long.store(0, Ordering::Relaxed)
    }
}

/// A socket as this process holds it: its rings mapped here, then its descriptor (dropped
/// in that order: the socket goes with its last mapping and descriptor in every process).
pub(super) struct Socket {
    pub(super) rings: Rings,
    pub(super) fd: OwnedFd,
}

/// A secondary's way to the primary's sockets: their descriptors over IPC, the rings mapped
/// here.
pub(super) type Fetch = Box<dyn Fn() -> net::ethdev::Result<Vec<Arc<Socket>>> + Send + Sync>;

/// The sockets of a port in this process, and the epoch that changes whenever they do.
/// Queue handles point at a socket without holding it (`SocketLink`), so that a stop closes
/// the sockets in every process at once, whatever handles exist: a stop changes them only
/// while no burst is under way (ethdev's stop waits for bursts and refuses new ones), and a
/// handle looks at the epoch before each burst.
pub(super) struct PortSockets {
    /// The port's name, for messages.
    name: String,
    socks: std::sync::Mutex<Vec<Arc<Socket>>>,
    epoch: AtomicU32,
    fetch: Option<Fetch>,
}

impl PortSockets {
    pub(super) fn new(name: &str, fetch: Option<Fetch>) -> PortSockets {
        PortSockets {
            name: name.into(),
            socks: Default::default(),
            epoch: AtomicU32::new(0),
            fetch,
        }
    }

    /// Queue `q`'s socket and the epoch it belongs to; a secondary fetches the primary's.
    pub(super) fn get(&self, q: u16) -> net::ethdev::Result<(Arc<Socket>, u32)> {
        let lock = || self.socks.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(fetch) = self.fetch.as_ref().filter(|_| lock().is_empty()) {
            // Fetched without the lock: the IPC thread that brings the reply may meanwhile
            // need it (a release). Kept only if no release came in between.
            let before = self.epoch.load(Ordering::Acquire);
            let fetched = fetch()?;
            let mut socks = lock();
            if socks.is_empty() && self.epoch.load(Ordering::Acquire) == before {
                *socks = fetched;
                self.epoch.fetch_add(1, Ordering::Release);
            }
        }
        let socks = lock();
        let s = socks.get(q as usize).cloned().ok_or_else(|| {
            net::ethdev::Error::device(
                &self.name,
                format!("queue {q} has no socket: is the port started?"),
            )
        })?;
        Ok((s, self.epoch.load(Ordering::Acquire)))
    }

    /// How many sockets this process holds.
    pub(super) fn len(&self) -> usize {
        self.socks.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Copies of the sockets' descriptors, for a secondary (the primary).
    pub(super) fn dup_fds(&self) -> std::io::Result<Vec<OwnedFd>> {
        let socks = self.socks.lock().unwrap_or_else(|p| p.into_inner());
        socks.iter().map(|s| s.fd.try_clone()).collect()
    }

    /// Makes `socks` the port's sockets (the primary, at start).
    pub(super) fn install(&self, socks: Vec<Arc<Socket>>) {
        let mut cur = self.socks.lock().unwrap_or_else(|p| p.into_inner());
        *cur = socks;
        self.epoch.fetch_add(1, Ordering::Release);
    }

    /// Gives up this process's sockets (a stop: no burst is under way in any process).
    pub(super) fn release(&self) -> Vec<Arc<Socket>> {
        let mut cur = self.socks.lock().unwrap_or_else(|p| p.into_inner());
        self.epoch.fetch_add(1, Ordering::Release);
        std::mem::take(&mut *cur)
    }
}

/// A queue handle's pointer to its socket in this process, good while the port's sockets
/// keep their epoch.
pub(super) struct SocketLink {
    sockets: Arc<PortSockets>,
    q: u16,
    epoch: u32,
    sock: *const Socket,
    /// Whether the handle has taken up where this socket's rings stand.
    taken_up: bool,
    complained: bool,
}

// SAFETY: the socket it points at is Send + Sync and outlives the pointer's use (see get).
unsafe impl Send for SocketLink {}

impl SocketLink {
    pub(super) fn new(sockets: Arc<PortSockets>, q: u16) -> net::ethdev::Result<SocketLink> {
        let (s, epoch) = sockets.get(q)?;
        Ok(SocketLink {
            sock: Arc::as_ptr(&s),
            sockets,
            q,
            epoch,
            taken_up: false,
            complained: false,
        })
    }

    /// The queue's socket, and whether the handle has yet to take it up (its first call, or
    /// the port was stopped and started again): None while the port has none.
    #[inline(always)]
    fn get<'a>(&mut self) -> Option<(&'a Socket, bool)> {
        let changed = !self.taken_up;
        self.taken_up = true;
        if self.sockets.epoch.load(Ordering::Acquire) != self.epoch {
            match self.sockets.get(self.q) {
                Ok((s, epoch)) => {
                    self.sock = Arc::as_ptr(&s);
                    self.epoch = epoch;
                    // SAFETY: as below.
                    return Some((unsafe { &*self.sock }, true));
                }
                Err(e) => {
                    self.taken_up = false;
                    if !self.complained {
                        log::warn!("{e}");
                        self.complained = true;
                    }
                    return None;
                }
            }
        }
        // SAFETY: the port's sockets hold this socket for as long as their epoch is the
        // one read above, and change it only while no burst runs, which is when this is
        // called (or from the stop itself, before it gives them up).
        Some((unsafe { &*self.sock }, changed))
    }
}

/// A queue handle over a socket's rings: it takes up where they stand when it gets its
/// socket, and again whenever the port restarts with new sockets.
trait OnSocket {
    fn link(&mut self) -> &mut SocketLink;
    /// Takes up where the socket's rings stand.
    fn sync(&mut self, s: &Socket);
    /// The socket, taken up anew if the port restarted; None while the port has none.
    #[inline(always)]
    fn socket<'a>(&mut self) -> Option<&'a Socket> {
        let (s, changed) = self.link().get()?;
        if changed {
            self.sync(s);
        }
        Some(s)
    }
}

/// Where a queue's mbufs lie: the UMEM's base in this (every) process.
#[derive(Clone, Copy)]
struct Umem0(u64);

impl Umem0 {
    /// The mbuf whose buffer starts at UMEM offset `chunk`.
    #[inline(always)]
    fn mbuf(self, chunk: u64) -> usize {
        (self.0 + chunk) as usize - HEADER_SIZE
    }
    /// The UMEM offset of the buffer of the mbuf at `addr`.
    #[inline(always)]
    fn chunk(self, addr: usize) -> u64 {
        (addr + HEADER_SIZE) as u64 - self.0
    }
}

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

/// Calls in a row that may find the kernel taking no TX descriptor before a kick gives up.
const KICK_STALLS: u32 = 8;

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

/// The mbufs lent through queue `q` of `port` in direction `dir`, from `pool`.
pub(super) fn lent(pool: &PktmbufPool, port: u16, dir: Direction, q: u16) -> Vec<usize> {
    mbuf::lent_to_kernel(pool, kernel_token(port, dir, q)).collect()
}

/// Repairs direction `dir` of queue `q` after its poller died inside a burst: every mbuf
/// the rings name gets the queue's word again (a burst may have taken it into the dead
/// poller's hands before committing), the run a log names is lent if it was committed, and
/// a batch of completions the poller had put back pinned is forgotten. Safe to run again.
pub(super) fn recover(rings: &Rings, shared: &QueueShared, port: u16, dir: Direction, q: u16) {
    let umem = Umem0(shared.umem().addr);
    let token = kernel_token(port, dir, q);
    let lend = |chunk: u64| {
        // SAFETY: a buffer the queue's ring names: a one-segment mbuf of its pool.
        unsafe { mbuf::lend_to_kernel(umem.mbuf(chunk), token) }
    };
    let desc_chunks = |r: &Ring, from: u32, to: u32| -> Vec<u64> {
        (0..to.wrapping_sub(from))
            .map(|i| {
                // SAFETY: an entry between a consumer and a producer of the ring.
                xsk::split_addr(unsafe { *r.slots().desc(from.wrapping_add(i)) }.addr).0
            })
            .collect()
    };
    let addr_chunks = |r: &Ring, from: u32, to: u32| -> Vec<u64> {
        (0..to.wrapping_sub(from))
            .map(|i| {
                // SAFETY: an entry of the ring (fill or completion).
                xsk::split_addr(unsafe { *r.slots().addr(from.wrapping_add(i)) }).0
            })
            .collect()
    };
    match dir {
        Direction::Rx => {
            let rx = &rings.rx;
            let c = rx.consumer().load(Ordering::Acquire);
            let p = rx.producer().load(Ordering::Acquire);
            desc_chunks(rx, c, p).into_iter().for_each(lend);
            let log = shared.rx.fill.load(Ordering::Acquire);
            if log != 0 {
                let (start, k) = ((log >> 32) as u32, (log as u32) >> 1);
                let fill = &rings.fill;
                if fill.producer().load(Ordering::Acquire) == start.wrapping_add(k) {
                    addr_chunks(fill, start, start.wrapping_add(k))
                        .into_iter()
                        .for_each(lend);
                }
                shared.rx.fill.store(0, Ordering::Release);
            }
        }
        Direction::Tx => {
            let log = &shared.tx;
            let run = log.run.load(Ordering::Acquire);
            if run != 0 {
                let (start, k) = ((run >> 32) as u32, (run as u32) >> 1);
                let tr = log.taken_run.load(Ordering::Acquire);
                let (before, take) = ((tr >> 32) as u32, tr as u32);
                if rings.tx.producer().load(Ordering::Acquire) == start.wrapping_add(k) {
                    desc_chunks(&rings.tx, start, start.wrapping_add(k))
                        .into_iter()
                        .for_each(lend);
                    log.taken
                        .store(before.wrapping_add(take), Ordering::Release);
                }
                log.run.store(0, Ordering::Release);
            }
            let comp = &rings.comp;
            let mut c = comp.consumer().load(Ordering::Acquire);
            let p = comp.producer().load(Ordering::Acquire);
            let named: Vec<usize> = addr_chunks(comp, c, p)
                .into_iter()
                .map(|ch| umem.mbuf(ch))
                .collect();
            // SAFETY: mbufs the completion ring names, oldest first.
            if let Some((k, pin)) = unsafe { mbuf::dead_pinned_prefix(&named) } {
                c = c.wrapping_add(k as u32);
                comp.consumer().store(c, Ordering::Release);
                // Free in the dead lcore's cache now: no longer the queue's.
                for &m in &named[..k] {
                    // SAFETY: an mbuf of the queue's pool.
                    unsafe { mbuf::end_hold(m) };
                }
                pin.unpin();
            }
            addr_chunks(comp, c, p).into_iter().for_each(lend);
        }
    }
}
