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
mod port;
mod queue;
mod rx;
mod sockets;
mod tx;
mod xsk;

use crate::fd_share::FdShare;
use crate::netdev;
use net::ethdev::{
    DevInfo, Direction, Driver, Error, PortContext, PortDriver, Result, RxBurst, TxBurst,
};
use net::{Link, PktmbufPool};
use port::{pool_buf_len, XdpPort};
use queue::PortShared;
use rx::XskRx;
use sockets::{PortSockets, Socket};
use std::io;
use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use tx::XskTx;
use xsk::BindMode;

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
