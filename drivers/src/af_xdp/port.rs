//! A `net_af_xdp` port as one process drives it: its sockets made, bound and handed their
//! interface queues (primary), their buffers posted, and the queues taken back from the
//! kernel at stop.

use super::queue::{self, PortShared, QueueShared};
use super::rx::XskRx;
use super::sockets::{PortSockets, Socket, SocketLink};
use super::tx::XskTx;
use super::xsk::{self, BindMode, RingSizes, Umem};
use super::{bpf, holders, MAX_CHUNK, RELEASE};
use net::ethdev::{DeviceRecord, Direction, Error, Result, TxBurst};
use net::{Mbuf, PktmbufPool};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a bind waits for a queue to come free: the kernel frees the queue of a closed
/// socket from a work queue after the close, so a port started again right after its stop
/// can find its own old socket still bound for a moment.
const UNBIND_GRACE: Duration = Duration::from_secs(1);

/// Binds socket `fd` to interface queue `iq`, trying again while the queue is busy for up to
/// [`UNBIND_GRACE`]; then the kernel's answer.
fn bind_when_free(fd: RawFd, ifindex: u32, iq: u32, mode: BindMode) -> std::io::Result<()> {
    let until = Instant::now() + UNBIND_GRACE;
    loop {
        match xsk::bind(fd, ifindex, iq, mode) {
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && Instant::now() < until => {
                std::thread::sleep(Duration::from_millis(5));
            }
            done => return done,
        }
    }
}

/// The smallest power of two at least `n`, within the ring sizes every kernel takes.
fn ring_size(n: u32) -> u32 {
    n.clamp(64, 8192).next_power_of_two()
}

/// A port as this process drives it.
pub(super) struct XdpPort {
    pub(super) name: String,
    pub(super) port_id: u16,
    pub(super) rec: DeviceRecord,
    pub(super) iface: String,
    pub(super) ifindex: u32,
    pub(super) start_queue: u32,
    pub(super) queue_count: u32,
    pub(super) bind: BindMode,
    pub(super) busy_budget: u32,
    pub(super) shared: &'static PortShared,
    /// The primary's program, linked from probe to close.
    pub(super) program: Mutex<Option<bpf::XdpProgram>>,
    /// The sockets as this process holds them: the primary's own from start to stop, a
    /// secondary's copies from its first use to the port's stop.
    pub(super) sockets: Arc<PortSockets>,
}

impl XdpPort {
    pub(super) fn is_primary(&self) -> bool {
        self.program
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some()
    }

    /// `port: interface`, as messages name the port.
    pub(super) fn label(&self) -> String {
        format!("{}: {}", self.name, self.iface)
    }

    pub(super) fn queue(&self, q: u16) -> &'static QueueShared {
        &self.shared.queues[q as usize]
    }

    /// This process's socket of queue `q`.
    pub(super) fn socket(&self, q: u16) -> Result<Arc<Socket>> {
        self.sockets.get(q).map(|(s, _)| s)
    }

    /// Queue pair `q`'s socket counters since the last reset, or None without a socket.
    pub(super) fn socket_stats(&self, q: u16) -> Option<[u64; 6]> {
        let now = xsk::statistics(self.socket(q).ok()?.fd.as_raw_fd()).ok()?;
        let base = &self.queue(q).stats_base;
        Some(std::array::from_fn(|i| {
            now[i].wrapping_sub(base[i].load(Ordering::Relaxed))
        }))
    }

    pub(super) fn link(&self, q: u16) -> Result<SocketLink> {
        SocketLink::new(self.sockets.clone(), q)
    }

    /// The mbuf pool of queue pair `q`: its UMEM.
    pub(super) fn pool(&self, q: u16) -> Result<PktmbufPool> {
        self.rec.rx_pool(q).ok_or_else(|| Error::NotSetUp {
            port: self.name.clone(),
            dir: "RX",
            queue: q,
            call: "rx_queue_setup (an AF_XDP TX queue shares its RX queue's socket and pool)",
        })
    }

    /// Makes queue pair `q`'s socket and binds it (primary).
    pub(super) fn open_socket(&self, q: u16) -> Result<Arc<Socket>> {
        let pool = self.pool(q)?;
        let span = pool.mempool().object_span();
        let addr = span.start as u64 & !4095;
        let umem = Umem {
            addr,
            len: (span.end as u64 - addr + 4095) & !4095,
            chunk: pool_buf_len(&pool).min(MAX_CHUNK),
        };
        let rx = ring_size(self.rec.rx_desc(q));
        let tx = match q < self.rec.nb_tx_queues() {
            true => ring_size(self.rec.tx_desc(q)),
            false => 64,
        };
        let sizes = RingSizes {
            fill: 2 * rx,
            comp: tx,
            rx,
            tx,
        };
        let iq = self.start_queue + q as u32;
        let (iface, name) = (&self.iface, &self.name);
        let fd = xsk::create(umem, sizes).map_err(|e| {
            let hint = match e.raw_os_error() {
                Some(libc::EPERM) | Some(libc::EACCES) => {
                    ": AF_XDP sockets need CAP_NET_RAW: run as root".to_string()
                }
                Some(libc::ENOMEM) | Some(libc::ENOBUFS) => format!(
                    ": the kernel would not pin the {} MiB of mbuf pool '{}': raise the locked-memory limit (ulimit -l) or run with CAP_IPC_LOCK",
                    umem.len >> 20,
                    pool.name()
                ),
                Some(libc::EAFNOSUPPORT) => ": this kernel has no AF_XDP (CONFIG_XDP_SOCKETS)".into(),
                _ => String::new(),
            };
            Error::device(name, format!("cannot make the AF_XDP socket of {iface} queue {iq}: {e}{hint}"))
        })?;
        let rings = xsk::map_rings(fd.as_raw_fd(), sizes).map_err(|e| {
            Error::device(
                name,
                format!("cannot map the rings of {iface} queue {iq}: {e}"),
            )
        })?;
        bind_when_free(fd.as_raw_fd(), self.ifindex, iq, self.bind).map_err(|e| {
            let why = match e.raw_os_error() {
                Some(libc::EBUSY) => format!(
                    "queue {iq} of {iface} is already bound by another AF_XDP socket{}: stop that program, or give this port another start_queue=",
                    holders(self.ifindex, Some(iq))
                ),
                Some(libc::EOPNOTSUPP) if self.bind == BindMode::ZeroCopy => format!(
                    "{iface}'s driver has no zero-copy AF_XDP: use zero_copy=auto (or 0) for copy mode"
                ),
                Some(libc::EINVAL) => format!(
                    "{iface} has no queue {iq} ({e}): see `ethtool -l {iface}`"
                ),
                Some(libc::ENODEV) => format!("{iface} is gone ({e})"),
                _ => format!("cannot bind to {iface} queue {iq}: {e}"),
            };
            Error::device(name, why)
        })?;
        if self.busy_budget > 0 {
            if let Err(e) = xsk::prefer_busy_poll(fd.as_raw_fd(), self.busy_budget) {
                log::warn!(
                    "{name}: no busy polling on {iface} queue {iq} ({e}): it goes on without"
                );
            }
        }
        let shared = self.queue(q);
        shared.set_config(umem, sizes);
        // A new socket's statistics start from 0.
        shared
            .stats_base
            .iter()
            .for_each(|b| b.store(0, Ordering::Relaxed));
        Ok(Arc::new(Socket { rings, fd }))
    }

    /// Posts queue pair `q`'s buffers and hands its interface queue to its socket
    /// (primary, sockets installed).
    pub(super) fn post_buffers(&self, q: u16, prog: &bpf::XdpProgram) -> Result<()> {
        let pool = self.pool(q)?;
        let mut rxq = XskRx::new(
            self.link(q)?,
            self.queue(q),
            pool,
            self.port_id,
            q,
            false,
            self.rec,
        );
        if !rxq.fill_all() {
            return Err(Error::PoolTooSmall {
                pool: pool.name().into(),
                free: pool.available(),
                need: self.queue(q).sizes().rx,
            });
        }
        let iq = self.start_queue + q as u32;
        prog.insert(iq, self.socket(q)?.fd.as_raw_fd())
            .map_err(|e| {
                Error::device(
                    &self.name,
                    format!("cannot hand {} queue {iq} to its socket: {e}", self.iface),
                )
            })
    }

    /// Takes the port's queues away from the kernel (primary; no burst is under way):
    /// their frames go to the stack again, the secondaries close their copies of the
    /// sockets, what the kernel was sending is given a moment to finish, the sockets close,
    /// and every mbuf they held goes back to its pool.
    pub(super) fn close_queues(&self) {
        if let Some(prog) = self
            .program
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
        {
            for q in 0..self.queue_count {
                let _ = prog.remove(self.start_queue + q);
            }
        }
        self.release_secondaries();
        let n = self.sockets.len() as u16;
        for q in 0..n {
            let (Ok(pool), Ok(link)) = (self.pool(q), self.link(q)) else {
                continue;
            };
            let mut tx = XskTx::new(link, self.queue(q), pool, self.port_id, q, self.label());
            let until = Instant::now() + Duration::from_millis(100);
            while tx.done_cleanup() > 0 && Instant::now() < until {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        drop(self.sockets.release());
        let mut back = 0;
        for q in 0..n {
            let Ok(pool) = self.pool(q) else { continue };
            for dir in [Direction::Rx, Direction::Tx] {
                for m in queue::lent(&pool, self.port_id, dir, q) {
                    // SAFETY: an mbuf the queue lent the kernel, whose socket is closed in
                    // every process: nobody else names it.
                    drop(unsafe { Mbuf::from_addr(m) });
                    back += 1;
                }
            }
        }
        log::debug!("{}: {back} mbufs back from the kernel", self.name);
    }

    /// Has every secondary close its copies of the port's sockets, so that they close for
    /// good with the primary's.
    pub(super) fn release_secondaries(&self) {
        let Ok(eal) = eal::eal() else { return };
        for pid in eal.ipc().peers() {
            let asked = eal.ipc().request(
                Some(pid),
                eal::ipc::Message::new(RELEASE, self.name.as_str()),
                Duration::from_secs(1),
            );
            if let Err(e) = asked {
                log::debug!(
                    "{}: process {pid} kept no sockets of the port ({e})",
                    self.name
                );
            }
        }
    }
}

/// The buffer length of `pool`'s mbufs (headroom and data room).
pub(super) fn pool_buf_len(pool: &PktmbufPool) -> u32 {
    // Every header records it; the first object's is as good as any.
    let elt = pool.mempool().elt_size();
    pool.alloc()
        .map(|m| m.buf_len() as u32)
        .unwrap_or(elt.saturating_sub(net::mbuf::HEADER_SIZE as u32))
}
