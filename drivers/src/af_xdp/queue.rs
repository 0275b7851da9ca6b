//! A queue pair of a `net_af_xdp` port: its state shared by the group (a memzone per port)
//! and the repair after a poller died. Its bursts are in `rx.rs` and `tx.rs`, the sockets
//! they run over in `sockets.rs`.
//!
//! The mbufs lent to the kernel (posted to the fill ring, received and not yet taken,
//! sent and not yet completed) carry a holder word naming the queue
//! (`net::mbuf::KERNEL_HOLDER`): what the rings and the kernel hold is found by those
//! words, whatever the kernel keeps between its rings. Each lend follows the store that
//! commits it to the kernel, and each burst that commits something logs first what it
//! commits, so that [`recover`] can finish the words a killed poller left.

use super::xsk::{self, Ring, RingSizes, Rings, Umem};
use net::ethdev::{Direction, MAX_QUEUES};
use net::mbuf::{self, HEADER_SIZE, KERNEL_HOLDER};
use net::PktmbufPool;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

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
pub(super) struct RxLog {
    /// `producer << 32 | count << 1 | 1` of the run being committed, or 0.
    pub(super) fill: AtomicU64,
}

/// What a TX poller keeps: its count of packets taken and the run it is committing.
#[repr(C, align(64))]
#[derive(Default)]
pub(super) struct TxLog {
    /// `producer << 32 | descriptors << 1 | 1` of the run being committed, or 0.
    pub(super) run: AtomicU64,
    /// `taken before << 32 | packets taken` of that run.
    pub(super) taken_run: AtomicU64,
    /// Packets TX bursts took (sent, or dropped as too long for the socket), as
    /// `TxBurst::tx_mark` counts.
    pub(super) taken: AtomicU32,
    /// Packets dropped because they do not fit a UMEM chunk.
    pub(super) too_long: AtomicU64,
}

/// One queue pair's shared state.
#[repr(C)]
#[derive(Default)]
pub(super) struct QueueShared {
    pub(super) config: QueueConfig,
    /// XDP_STATISTICS of the queue's socket as they were at the last reset (0 when it was
    /// made).
    pub(super) stats_base: [AtomicU64; 6],
    pub(super) rx: RxLog,
    pub(super) tx: TxLog,
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

/// Where a queue's mbufs lie: the UMEM's base in this (every) process.
#[derive(Clone, Copy)]
pub(super) struct Umem0(pub(super) u64);

impl Umem0 {
    /// The mbuf whose buffer starts at UMEM offset `chunk`.
    #[inline(always)]
    pub(super) fn mbuf(self, chunk: u64) -> usize {
        (self.0 + chunk) as usize - HEADER_SIZE
    }
    /// The UMEM offset of the buffer of the mbuf at `addr`.
    #[inline(always)]
    pub(super) fn chunk(self, addr: usize) -> u64 {
        (addr + HEADER_SIZE) as u64 - self.0
    }
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
