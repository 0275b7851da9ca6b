//! `net_af_xdp`: the queues of any Linux network interface, through the kernel's AF_XDP
//! sockets: `--vdev net_af_xdp0,iface=IF[,start_queue=Q][,queue_count=N]
//! [,zero_copy=auto|0|1][,busy_budget=N][,mode=drv|skb]`, DPDK's names.
//!
//! Port queue `q` is one socket bound to interface queue `start_queue + q`, its RX and TX
//! rings the port's RX and TX queue `q`. The UMEM of that socket is the whole of RX queue
//! `q`'s mbuf pool, so the kernel writes received frames straight into mbuf buffers and
//! sends mbufs of that pool where they lie (others are copied into it). A program of six
//! instructions, linked to the interface while the port exists (`bpf`), sends each
//! queue's frames to its socket and the rest to the kernel's stack.
//!
//! Multi-process: the primary makes the sockets when the port starts; a secondary taking a
//! queue gets their descriptors over IPC and maps the rings itself (a kernel since 6.x
//! allows that on a bound socket; 6.1 does not, and the error says so). The mbufs the
//! kernel holds carry the queue's holder word (`queue`), so a dead poller's queue is
//! repaired from them and nothing it lent is lost.

mod args;
mod bpf;
mod diag;
mod queue;
mod rx;
mod sockets;
mod tx;
mod xsk;

use crate::fd_share::FdShare;
use crate::netdev;
use net::ethdev::{
    DevInfo, DeviceRecord, Direction, Driver, Error, PortContext, PortDriver, Result, RxBurst,
    TxBurst,
};
use net::{Link, Mbuf, PktmbufPool};
use queue::{PortShared, QueueShared};
use rx::XskRx;
use sockets::{PortSockets, Socket, SocketLink};
use std::io;
use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};
use tx::XskTx;
use xsk::{BindMode, RingSizes, Umem};

/// The `net_af_xdp` driver.
pub struct AfXdpDriver;

const NAME: &str = "net_af_xdp";
/// The largest UMEM chunk the kernel takes (a page): frames up to this less its headroom.
const MAX_CHUNK: u32 = 4096;
const MIN_CHUNK: u32 = 2048;

/// Hands the primary's socket descriptors to secondaries.
static XSK_FDS: FdShare = FdShare::new("net_af_xdp_fds");
/// The primary's request to a secondary, as a port stops: close your copies of its sockets.
const RELEASE: &str = "net_af_xdp_release";
/// The interfaces this process's ports serve (index, port name): a second port on one is
/// refused by name.
static PROBED: Mutex<Vec<(u32, String)>> = Mutex::new(Vec::new());
/// A secondary's ports, by name, for the primary's RELEASE requests.
static ATTACHED: Mutex<Vec<(String, Weak<PortSockets>)>> = Mutex::new(Vec::new());

/// The driver's words in the port record (every process reads the port's set-up there).
#[derive(Clone, Copy)]
enum Word {
    Ifindex = 0,
    StartQueue,
    QueueCount,
    BusyBudget,
    Mode,
}

/// Who holds interface `ifindex`'s XDP program or its sockets (see `diag::holders`), as a
/// clause of a message: empty when no process of this network namespace is found.
fn holders(ifindex: u32, queue: Option<u32>) -> String {
    match diag::holders(ifindex, queue) {
        who if who.is_empty() => String::new(),
        who => format!(", held by {}", who.join(" and ")),
    }
}

fn attach_error(name: &str, iface: &str, ifindex: u32, e: bpf::AttachError) -> Error {
    let what = match e {
        bpf::AttachError::Load(e) if is_perm(&e) => format!(
            "cannot load the XDP program for {iface}: {e}: loading one needs CAP_BPF and CAP_NET_ADMIN (or CAP_SYS_ADMIN), and the sockets CAP_NET_RAW: run as root"
        ),
        bpf::AttachError::Load(e) => format!("cannot load the XDP program for {iface}: {e}"),
        bpf::AttachError::Link(e) if matches!(e.raw_os_error(), Some(libc::EBUSY) | Some(libc::EEXIST)) => format!(
            "{iface} already has an XDP program{}: an interface serves one AF_XDP port at a time: stop that program or give this port another iface=",
            match holders(ifindex, None) {
                h if h.is_empty() => format!(
                    " that no process of this network namespace holds (one left by a process that died? `ip link set dev {iface} xdp off` removes it)"
                ),
                h => h,
            }
        ),
        bpf::AttachError::Link(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => format!(
            "{iface} has no native XDP support ({e}): leave out mode=drv to use generic XDP"
        ),
        bpf::AttachError::Link(e) => format!("cannot attach the XDP program to {iface}: {e}"),
    };
    Error::device(name, what)
}

fn is_perm(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EPERM) | Some(libc::EACCES))
}

/// The smallest power of two at least `n`, within the ring sizes every kernel takes.
fn ring_size(n: u32) -> u32 {
    n.clamp(64, 8192).next_power_of_two()
}

/// A port as this process drives it.
struct XdpPort {
    name: String,
    port_id: u16,
    rec: DeviceRecord,
    iface: String,
    ifindex: u32,
    start_queue: u32,
    queue_count: u32,
    bind: BindMode,
    busy_budget: u32,
    shared: &'static PortShared,
    /// The primary's program, linked from probe to close.
    program: Mutex<Option<bpf::XdpProgram>>,
    /// The sockets as this process holds them: the primary's own from start to stop, a
    /// secondary's copies from its first use to the port's stop.
    sockets: Arc<PortSockets>,
}

impl XdpPort {
    fn is_primary(&self) -> bool {
        self.program
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some()
    }

    /// `port: interface`, as messages name the port.
    fn label(&self) -> String {
        format!("{}: {}", self.name, self.iface)
    }

    fn queue(&self, q: u16) -> &'static QueueShared {
        &self.shared.queues[q as usize]
    }

    /// This process's socket of queue `q`.
    fn socket(&self, q: u16) -> Result<Arc<Socket>> {
        self.sockets.get(q).map(|(s, _)| s)
    }

    /// Queue pair `q`'s socket counters since the last reset, or None without a socket.
    fn socket_stats(&self, q: u16) -> Option<[u64; 6]> {
        let now = xsk::statistics(self.socket(q).ok()?.fd.as_raw_fd()).ok()?;
        let base = &self.queue(q).stats_base;
        Some(std::array::from_fn(|i| {
            now[i].wrapping_sub(base[i].load(Ordering::Relaxed))
        }))
    }

    fn link(&self, q: u16) -> Result<SocketLink> {
        SocketLink::new(self.sockets.clone(), q)
    }

    /// The mbuf pool of queue pair `q`: its UMEM.
    fn pool(&self, q: u16) -> Result<PktmbufPool> {
        self.rec.rx_pool(q).ok_or_else(|| Error::NotSetUp {
            port: self.name.clone(),
            dir: "RX",
            queue: q,
            call: "rx_queue_setup (an AF_XDP TX queue shares its RX queue's socket and pool)",
        })
    }

    /// Makes queue pair `q`'s socket and binds it (primary).
    fn open_socket(&self, q: u16) -> Result<Arc<Socket>> {
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
        xsk::bind(fd.as_raw_fd(), self.ifindex, iq, self.bind).map_err(|e| {
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
    fn post_buffers(&self, q: u16, prog: &bpf::XdpProgram) -> Result<()> {
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
    fn close_queues(&self) {
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
    fn release_secondaries(&self) {
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
fn pool_buf_len(pool: &PktmbufPool) -> u32 {
    // Every header records it; the first object's is as good as any.
    let elt = pool.mempool().elt_size();
    pool.alloc()
        .map(|m| m.buf_len() as u32)
        .unwrap_or(elt.saturating_sub(net::mbuf::HEADER_SIZE as u32))
}

impl Driver for AfXdpDriver {
    fn name(&self) -> &'static str {
        NAME
    }

    fn probe(&self, ctx: &PortContext) -> Result<Box<dyn PortDriver>> {
        let cfg = args::parse(ctx)?;
        let iface = &cfg.iface;
        let ifindex = netdev::index(iface).map_err(|_| {
            Error::device(
                ctx.name,
                format!("no interface {iface} in this network namespace (`ip link` lists them)"),
            )
        })?;
        let probed = PROBED.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, other)) = probed.iter().find(|(i, _)| *i == ifindex) {
            return Err(Error::device(
                ctx.name,
                format!("{iface} is already served by port '{other}' of this process: an interface serves one AF_XDP port (give that port more queues with queue_count=)"),
            ));
        }
        drop(probed);
        let queues = netdev::rx_queues(iface)
            .map_err(|e| Error::device(ctx.name, format!("cannot read {iface}'s queues: {e}")))?;
        let end = cfg.start_queue as u64 + cfg.queue_count as u64;
        if end > queues as u64 {
            return Err(Error::BadArg {
                port: ctx.name.into(),
                why: format!(
                    "start_queue={} queue_count={} asks for queues {}..{} of {iface}, which has {queues}: ask for fewer, or give it more (ethtool -L {iface})",
                    cfg.start_queue,
                    cfg.queue_count,
                    cfg.start_queue,
                    end - 1
                ),
            });
        }
        let program = bpf::XdpProgram::attach(ifindex, end as u32, cfg.attach_flags)
            .map_err(|e| attach_error(ctx.name, iface, ifindex, e))?;
        match netdev::mac(iface) {
            Ok(m) => ctx.record.set_mac(m),
            Err(e) => log::warn!("{}: cannot read {iface}'s MAC address: {e}", ctx.name),
        }
        let words = [
            (Word::Ifindex, ifindex),
            (Word::StartQueue, cfg.start_queue),
            (Word::QueueCount, cfg.queue_count),
            (Word::BusyBudget, cfg.busy_budget),
            (Word::Mode, cfg.bind as u32),
        ];
        for (w, v) in words {
            ctx.record
                .drv_data(w as usize)
                .store(v as u64, Ordering::Relaxed);
        }
        let eal = eal::eal()?;
        let mz = eal.memzone_reuse_or_reserve(
            &zone_name(ctx.name),
            std::mem::size_of::<PortShared>() as u64,
            64,
            eal::memzone::MemzoneFlags::empty(),
        )?;
        // SAFETY: a zone of the port's own, as large as PortShared, aligned; nobody uses it
        // before the port exists, and all-zero is PortShared's empty state.
        let shared = unsafe {
            std::ptr::write_bytes(mz.as_ptr::<u8>(), 0, std::mem::size_of::<PortShared>());
            &*mz.as_ptr::<PortShared>()
        };
        let port = Arc::new(XdpPort {
            name: ctx.name.into(),
            port_id: ctx.port_id,
            rec: ctx.record,
            iface: cfg.iface,
            ifindex,
            start_queue: cfg.start_queue,
            queue_count: cfg.queue_count,
            bind: cfg.bind,
            busy_budget: cfg.busy_budget,
            shared,
            program: Mutex::new(Some(program)),
            sockets: Arc::new(PortSockets::new(ctx.name, None)),
        });
        let sockets = port.sockets.clone();
        XSK_FDS.publish(ctx.name, move || sockets.dup_fds());
        PROBED
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((ifindex, ctx.name.into()));
        Ok(Box::new(SharedPort(port)))
    }

    fn attach(&self, ctx: &PortContext) -> Result<Box<dyn PortDriver>> {
        let word = |w: Word| ctx.record.drv_data(w as usize).load(Ordering::Relaxed) as u32;
        let ifindex = word(Word::Ifindex);
        let eal = eal::eal()?;
        let mz = eal.memzone_lookup(&zone_name(ctx.name))?;
        // SAFETY: the primary made this zone for the port, as large as PortShared.
        let shared: &'static PortShared = unsafe { &*mz.as_ptr::<PortShared>() };
        let name = ctx.name.to_string();
        let fetch: sockets::Fetch = Box::new(move || fetch_sockets(&name, shared));
        let sockets = Arc::new(PortSockets::new(ctx.name, Some(fetch)));
        static SERVING: OnceLock<()> = OnceLock::new();
        SERVING.get_or_init(|| {
            eal.ipc().register(RELEASE, |_, msg| {
                let name = msg.text();
                let mut ports = ATTACHED.lock().unwrap_or_else(|p| p.into_inner());
                ports.retain(|(_, s)| s.strong_count() > 0);
                for s in ports
                    .iter()
                    .filter(|(n, _)| *n == name)
                    .filter_map(|(_, s)| s.upgrade())
                {
                    drop(s.release());
                }
                eal::ipc::Message::new(RELEASE, "ok")
            })
        });
        ATTACHED
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((ctx.name.into(), Arc::downgrade(&sockets)));
        Ok(Box::new(SharedPort(Arc::new(XdpPort {
            name: ctx.name.into(),
            port_id: ctx.port_id,
            rec: ctx.record,
            iface: netdev::name(ifindex).unwrap_or_default(),
            ifindex,
            start_queue: word(Word::StartQueue),
            queue_count: word(Word::QueueCount),
            bind: match word(Word::Mode) {
                1 => BindMode::Copy,
                2 => BindMode::ZeroCopy,
                _ => BindMode::Auto,
            },
            busy_budget: word(Word::BusyBudget),
            shared,
            program: Mutex::new(None),
            sockets,
        }))))
    }
}

/// A secondary's copies of port `name`'s sockets: the primary's descriptors, the rings
/// mapped here.
fn fetch_sockets(name: &str, shared: &'static PortShared) -> Result<Vec<Arc<Socket>>> {
    let fds = XSK_FDS.fetch(name)?;
    let mut all = Vec::with_capacity(fds.len());
    for (i, fd) in fds.into_iter().enumerate() {
        let sizes = shared.queues[i].sizes();
        let rings = xsk::map_rings(fd.as_raw_fd(), sizes).map_err(|e| {
            let why = match e.raw_os_error() {
                Some(libc::EBUSY) => format!(
                    "this kernel does not let a second process map the rings of a bound AF_XDP socket ({e}; Linux 6.1 refuses, newer kernels allow it): poll this port's queues from the primary"
                ),
                _ => format!("cannot map the rings of queue {i}'s socket: {e}"),
            };
            Error::device(name, why)
        })?;
        all.push(Arc::new(Socket { rings, fd }));
    }
    Ok(all)
}

fn zone_name(port: &str) -> String {
    format!("af_xdp_{port}")
}

/// The port driver: shared with the descriptor-handing IPC handler in the primary.
struct SharedPort(Arc<XdpPort>);

impl PortDriver for SharedPort {
    fn info(&self) -> DevInfo {
        DevInfo {
            driver_name: NAME,
            max_rx_queues: self.0.queue_count as u16,
            max_tx_queues: self.0.queue_count as u16,
            min_mtu: 68,
            max_mtu: MAX_CHUNK - xsk::XDP_PACKET_HEADROOM as u32 - 18,
            if_name: Some(self.0.iface.clone()),
            tx_offload_capa: Default::default(),
        }
    }

    fn configure(&self, nb_rxq: u16, nb_txq: u16, _conf: &net::PortConf) -> Result<()> {
        if nb_txq > nb_rxq {
            return Err(Error::device(
                &self.0.name,
                format!("{nb_txq} TX queues and {nb_rxq} RX queues: each AF_XDP TX queue shares the socket of its RX queue, so configure at least as many RX queues"),
            ));
        }
        Ok(())
    }

    fn rx_queue_setup(&self, _q: u16, _nb_desc: u32, pool: &PktmbufPool) -> Result<()> {
        let len = pool_buf_len(pool);
        if len < MIN_CHUNK {
            return Err(Error::device(
                &self.0.name,
                format!("mbuf pool '{}' has buffers of {len} bytes: AF_XDP needs at least {MIN_CHUNK} (headroom and data room)", pool.name()),
            ));
        }
        Ok(())
    }

    fn start(&self) -> Result<()> {
        let p = &self.0;
        let guard = p.program.lock().unwrap_or_else(|e| e.into_inner());
        let Some(prog) = guard.as_ref() else {
            return Err(Error::device(&p.name, "only the primary starts the port"));
        };
        let mut socks = Vec::new();
        for q in 0..p.rec.nb_rx_queues() {
            socks.push(p.open_socket(q)?);
        }
        let zero_copy = socks
            .first()
            .is_some_and(|s| xsk::is_zero_copy(s.fd.as_raw_fd()));
        let n = socks.len();
        p.sockets.install(socks);
        for q in 0..n as u16 {
            if let Err(e) = p.post_buffers(q, prog) {
                drop(guard);
                p.close_queues();
                return Err(e);
            }
        }
        log::info!(
            "{}: {n} queue(s) of {} from queue {}, {} mode",
            p.name,
            p.iface,
            p.start_queue,
            if zero_copy { "zero-copy" } else { "copy" }
        );
        Ok(())
    }

    fn stop(&self) -> Result<()> {
        match self.0.is_primary() {
            true => self.0.close_queues(),
            // A secondary only closes its copies: the sockets and their buffers are the
            // primary's.
            false => drop(self.0.sockets.release()),
        }
        Ok(())
    }

    fn close(&self) -> Result<()> {
        let primary = self.0.is_primary();
        self.stop()?;
        if primary {
            XSK_FDS.withdraw(&self.0.name);
            let program = self
                .0
                .program
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take();
            drop(program);
            PROBED
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .retain(|(_, name)| *name != self.0.name);
            if let Ok(eal) = eal::eal() {
                if let Err(e) = eal.memzone_free(&zone_name(&self.0.name)) {
                    log::warn!("{}: {e}", self.0.name);
                }
            }
        }
        Ok(())
    }

    fn link_update(&self) -> Link {
        let iface = &self.0.iface;
        let running = libc::IFF_UP | libc::IFF_RUNNING;
        let up = self.0.rec.state() == net::PortState::Started
            && netdev::flags(iface).is_ok_and(|f| f & running == running);
        Link {
            up,
            full_duplex: true,
            speed_mbps: netdev::speed_mbps(iface),
        }
    }

    fn set_promiscuous(&self, on: bool) -> Result<()> {
        let (set, clear) = match on {
            true => (libc::IFF_PROMISC, 0),
            false => (0, libc::IFF_PROMISC),
        };
        netdev::change_flags(&self.0.iface, set, clear).map_err(|e| {
            Error::device(
                &self.0.name,
                format!("cannot change {}'s promiscuous mode: {e}", self.0.iface),
            )
        })
    }

    fn set_mtu(&self, mtu: u32) -> Result<()> {
        // A frame lands 256 bytes into its buffer: it must fit the rest of a chunk.
        if let Ok(pool) = self.0.pool(0) {
            let room = pool_buf_len(&pool).min(MAX_CHUNK) - xsk::XDP_PACKET_HEADROOM as u32;
            if mtu + 18 > room {
                return Err(Error::device(
                    &self.0.name,
                    format!("MTU {mtu} does not fit mbuf pool '{}': AF_XDP frames land 256 bytes into a buffer, leaving {room} bytes, so the MTU can be at most {}; make the pool's data room larger", pool.name(), room - 18),
                ));
            }
        }
        netdev::set_mtu(&self.0.iface, mtu).map_err(|e| {
            Error::device(
                &self.0.name,
                format!("{} refuses MTU {mtu}: {e}", self.0.iface),
            )
        })
    }

    fn xstats(&self) -> Vec<(String, u64)> {
        let p = &self.0;
        let mut out = Vec::new();
        for q in 0..p.rec.nb_rx_queues() {
            if let Some(stats) = p.socket_stats(q) {
                for (name, v) in xsk::STAT_NAMES.iter().zip(stats) {
                    out.push((format!("xsk_q{q}_{name}"), v));
                }
            }
            out.push((format!("tx_q{q}_too_long"), p.queue(q).tx_too_long()));
        }
        out
    }

    /// The kernel's drops for want of a buffer (`rx_dropped`: the fill ring empty) and of
    /// room in the RX ring (`rx_ring_full`), over every queue.
    fn rx_missed(&self) -> u64 {
        let p = &self.0;
        (0..p.rec.nb_rx_queues())
            .filter_map(|q| p.socket_stats(q))
            .map(|s| s[xsk::RX_DROPPED] + s[xsk::RX_RING_FULL])
            .sum()
    }

    fn xstats_reset(&self) {
        let p = &self.0;
        for q in 0..p.rec.nb_rx_queues() {
            let shared = p.queue(q);
            if let Ok(s) = p.socket(q) {
                if let Ok(stats) = xsk::statistics(s.fd.as_raw_fd()) {
                    for (i, v) in stats.iter().enumerate() {
                        shared.stats_base[i].store(*v, Ordering::Relaxed);
                    }
                }
            }
            shared.reset_tx_too_long();
        }
    }

    fn rx_queue(&self, q: u16) -> Result<Box<dyn RxBurst>> {
        let p = &self.0;
        Ok(Box::new(XskRx::new(
            p.link(q)?,
            p.queue(q),
            p.pool(q)?,
            p.port_id,
            q,
            p.busy_budget > 0,
            p.rec,
        )))
    }

    fn tx_queue(&self, q: u16) -> Result<Box<dyn TxBurst>> {
        let p = &self.0;
        Ok(Box::new(XskTx::new(
            p.link(q)?,
            p.queue(q),
            p.pool(q)?,
            p.port_id,
            q,
            p.label(),
        )))
    }

    fn queue_mbufs(&self, dir: Direction, q: u16) -> u32 {
        self.0
            .pool(q)
            .map(|pool| queue::lent(&pool, self.0.port_id, dir, q).len() as u32)
            .unwrap_or(0)
    }

    fn recover_queue(&self, dir: Direction, q: u16) {
        match self.0.socket(q) {
            Ok(s) => queue::recover(&s.rings, self.0.queue(q), self.0.port_id, dir, q),
            Err(e) => log::error!("{}: cannot repair {dir} queue {q}: {e}", self.0.name),
        }
    }

    fn tx_taken_since(&self, q: u16, mark: u32) -> Option<u32> {
        Some(self.0.queue(q).tx_taken().wrapping_sub(mark))
    }
}
