//! `net_virtio_user`: the virtio-net PMD over vhost-user, so that a software backend on the
//! same host (DPDK's `net_vhost`, QEMU's vhost-user clients, OVS) plays the device:
//! `--vdev net_virtio_user0,path=/tmp/sock[,queues=N][,server=1][,mac=..][,queue_size=N]
//! [,packed_vq=1][,in_order=0]` (`packed_vq=1` asks for packed rings; split or packed, the
//! rings are used in order when the backend offers it unless `in_order=0`, as DPDK's
//! virtio-user).
//!
//! This is the second [`Transport`] of [`VirtioNet`]: the queues, bursts and feature logic
//! are the PCI PMD's. What a PCI device keeps in registers, this transport keeps itself and
//! hands to the backend over the socket (the `vhost` crate speaks the protocol) when the
//! driver sets DRIVER_OK: features, the group's memory segments (one region per segment
//! file, so a few large regions), and for each ring its size, base, addresses and eventfds.
//! Backends have no control queue, so control commands are answered here, as DPDK's
//! virtio-user does: queue pairs become `SET_VRING_ENABLE`, receive modes need nothing
//! (a software backend delivers every frame).
//!
//! The backend may go away: a thread of the primary watches the socket, takes the link
//! down, reconnects (or waits for the backend to connect, in server mode) and replays the
//! set-up with each ring's base at its used index, so buffers in flight stay ours and
//! nothing leaks. Secondaries only need the kick eventfds, which they get over IPC.

use super::defs::{
    feature, status, CFG_MAC, CFG_MAX_PAIRS, CFG_STATUS, CTRL_MQ, CTRL_MQ_VQ_PAIRS_SET,
};
use super::transport::Transport;
use super::virtqueue::{Notifier, VqShared};
use super::VirtioNet;
use crate::fd_share::FdShare;
use net::ethdev::{Driver, Error, PortContext, PortDriver, Result};
use net::MacAddr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use vhost::vhost_user::message::{VhostUserProtocolFeatures, VhostUserVirtioFeatures};
use vhost::vhost_user::{Frontend, VhostUserFrontend};
use vhost::{VhostBackend, VhostUserMemoryRegionInfo, VringConfigData};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

/// Hands the primary's kick eventfds to secondaries.
static KICK_FDS: FdShare = FdShare::new("net_virtio_user_kicks");

/// Features the backend provides and we pass on; the rest of what the driver sees
/// (MAC, STATUS, control queue, MQ) this transport provides itself.
const BACKEND_FEATURES: u64 = feature::VERSION_1 | feature::MRG_RXBUF;
const EMULATED_FEATURES: u64 =
    feature::MAC | feature::STATUS | feature::CTRL_VQ | feature::CTRL_RX | feature::CTRL_MAC_ADDR;
/// Largest ring we offer (DPDK's vhost takes up to 32768; more only costs memory).
const MAX_QUEUE_SIZE: u16 = 4096;
/// How long server mode waits for the backend at probe.
const ACCEPT_TIMEOUT: Duration = Duration::from_secs(60);
const RECONNECT_INTERVAL: Duration = Duration::from_millis(100);
/// The vhost-user protocol's limit on memory regions in one SET_MEM_TABLE.
const MAX_REGIONS: usize = 8;

/// The `net_virtio_user` driver.
pub struct VirtioUserDriver;

impl Driver for VirtioUserDriver {
    fn name(&self) -> &'static str {
        "net_virtio_user"
    }

    fn probe(&self, ctx: &PortContext) -> Result<Box<dyn PortDriver>> {
        crate::check_args(
            ctx.name,
            ctx.args,
            &[
                "path",
                "queues",
                "server",
                "mac",
                "queue_size",
                "packed_vq",
                "in_order",
            ],
        )?;
        let bad = |why: String| Error::BadArg {
            port: ctx.name.into(),
            why,
        };
        let path = crate::arg(ctx.args, "path")
            .ok_or_else(|| bad("path=SOCKET is required (the vhost-user socket)".into()))?;
        let number = |key: &str, default: u16, max: u16| -> Result<u16> {
            match crate::arg(ctx.args, key) {
                None => Ok(default),
                Some(v) => v
                    .parse::<u16>()
                    .ok()
                    .filter(|n| (1..=max).contains(n))
                    .ok_or_else(|| bad(format!("{key}={v}: a number from 1 to {max}"))),
            }
        };
        let queues = number("queues", 1, net::ethdev::MAX_QUEUES as u16)?;
        let queue_size = number("queue_size", 256, MAX_QUEUE_SIZE)?;
        if !queue_size.is_power_of_two() {
            return Err(bad(format!("queue_size={queue_size}: a power of two")));
        }
        let flag = |key: &str, default: bool| match crate::arg(ctx.args, key) {
            None => Ok(default),
            Some("0") => Ok(false),
            Some("1") => Ok(true),
            Some(v) => Err(bad(format!("{key}={v}: 0 or 1"))),
        };
        let server = flag("server", false)?;
        let packed = flag("packed_vq", false)?;
        let in_order = flag("in_order", true)?;
        let mac = match crate::arg(ctx.args, "mac") {
            Some(m) => m.parse::<MacAddr>().map_err(bad)?,
            None => random_mac(),
        };
        let user = VirtioUser::open(Config {
            port: ctx.name.into(),
            path: path.into(),
            queues,
            queue_size,
            server,
            packed,
            in_order,
            mac,
        })
        .map_err(bad)?;
        let kicks = user.inner.clone();
        KICK_FDS.publish(ctx.name, move || {
            kicks.kicks.iter().map(dup_eventfd).collect()
        });
        VirtioNet::probe(ctx, Arc::new(user))
    }

    fn attach(&self, ctx: &PortContext) -> Result<Box<dyn PortDriver>> {
        let kicks = KICK_FDS.fetch(ctx.name)?;
        Ok(Box::new(VirtioNet::new(
            ctx,
            Arc::new(KickOnly {
                port: ctx.name.into(),
                kicks,
            }),
        )))
    }
}

fn dup_eventfd(e: &EventFd) -> std::io::Result<OwnedFd> {
    // SAFETY: the eventfd is open while the port lives; try_clone dups it into a new fd.
    let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(e.as_raw_fd()) };
    fd.try_clone_to_owned()
}

/// A locally administered unicast address, as DPDK's virtio-user picks when given none.
fn random_mac() -> MacAddr {
    let mut b = [0u8; 4];
    // SAFETY: getrandom writes at most 4 bytes into the local buffer.
    let n = unsafe { libc::getrandom(b.as_mut_ptr().cast(), 4, 0) };
    if n != 4 {
        b = std::process::id().to_be_bytes();
    }
    MacAddr::local(u32::from_be_bytes(b))
}

struct Config {
    port: String,
    path: PathBuf,
    queues: u16,
    queue_size: u16,
    server: bool,
    /// Packed rings when the backend offers them (`packed_vq=1`).
    packed: bool,
    /// Rings used in order when the backend offers it (`in_order=1`, the default).
    in_order: bool,
    mac: MacAddr,
}

impl Config {
    /// Features of the backend's that we pass on.
    fn backend_features(&self) -> u64 {
        let packed = if self.packed { feature::RING_PACKED } else { 0 };
        let in_order = if self.in_order { feature::IN_ORDER } else { 0 };
        BACKEND_FEATURES | packed | in_order
    }
}

/// A ring the driver enabled: what the backend is told about it.
#[derive(Clone, Copy)]
struct Ring {
    vq: &'static VqShared,
}

/// What a PCI device would hold in its registers.
struct DeviceState {
    status: u8,
    driver_features: u64,
    rings: Vec<Option<Ring>>,
    /// Queue pairs the driver enabled (the control queue's MQ command).
    pairs: u16,
}

struct Inner {
    cfg: Config,
    /// The connection; `None` while the backend is away.
    conn: Mutex<Option<Frontend>>,
    listener: Option<UnixListener>,
    /// The group's memory as the backend maps it; the files stay open for reconnections.
    regions: Vec<VhostUserMemoryRegionInfo>,
    /// What the backend offered at the last handshake.
    backend_features: Mutex<u64>,
    state: Mutex<DeviceState>,
    link_up: AtomicBool,
    /// One per ring (RX 2q, TX 2q+1); kept across reconnections, so secondaries keep theirs.
    kicks: Vec<EventFd>,
    calls: Vec<EventFd>,
    /// Signalled on link changes (the driver's configuration interrupt).
    config_event: EventFd,
    /// Set when the port is closed: the watcher thread ends.
    closed: AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The vhost-user transport of the primary.
pub struct VirtioUser {
    inner: Arc<Inner>,
}

impl VirtioUser {
    fn open(cfg: Config) -> std::result::Result<VirtioUser, String> {
        let rings = 2 * cfg.queues as usize;
        let new_fd = |what: &str| {
            EventFd::new(EFD_NONBLOCK)
                .map_err(|e| format!("cannot create an eventfd for {what}: {e}"))
        };
        let kicks = (0..rings)
            .map(|_| new_fd("a kick"))
            .collect::<std::result::Result<_, _>>()?;
        let calls = (0..rings)
            .map(|_| new_fd("a call"))
            .collect::<std::result::Result<_, _>>()?;
        let listener = if cfg.server {
            let _ = std::fs::remove_file(&cfg.path);
            Some(
                UnixListener::bind(&cfg.path)
                    .map_err(|e| format!("cannot listen on {}: {e}", cfg.path.display()))?,
            )
        } else {
            None
        };
        let inner = Arc::new(Inner {
            regions: memory_regions()?,
            conn: Mutex::new(None),
            listener,
            backend_features: Mutex::new(0),
            state: Mutex::new(DeviceState {
                status: 0,
                driver_features: 0,
                rings: vec![None; rings],
                pairs: 1,
            }),
            link_up: AtomicBool::new(false),
            kicks,
            calls,
            config_event: new_fd("link changes")?,
            closed: AtomicBool::new(false),
            cfg,
        });
        let frontend = if inner.cfg.server {
            log::info!(
                "{}: waiting for a vhost-user backend to connect to {}",
                inner.cfg.port,
                inner.cfg.path.display()
            );
            inner.accept(Some(Instant::now() + ACCEPT_TIMEOUT))?
        } else {
            inner.connect()?
        };
        inner.handshake(frontend)?;
        let watcher = inner.clone();
        std::thread::Builder::new()
            .name(format!("{}-watch", inner.cfg.port))
            .spawn(move || watcher.watch())
            .map_err(|e| format!("cannot start the connection thread: {e}"))?;
        Ok(VirtioUser { inner })
    }
}

impl Inner {
    fn describe(&self) -> String {
        format!("vhost-user socket {}", self.cfg.path.display())
    }

    /// The message for a vhost-user request `what` that failed.
    fn request_failed(&self, what: &str, e: vhost::Error) -> String {
        format!("vhost-user {what} on {}: {e}", self.describe())
    }

    fn connect(&self) -> std::result::Result<Frontend, String> {
        let path = &self.cfg.path;
        if !path.exists() {
            return Err(format!(
                "no vhost-user socket at {}: start the backend first (e.g. dpdk-testpmd --vdev 'net_vhost0,iface={}'), or use server=1 to have it connect to us",
                path.display(),
                path.display()
            ));
        }
        let sock = UnixStream::connect(path).map_err(|e| {
            format!(
                "cannot connect to the vhost-user socket {}: {e}; is the backend running?",
                path.display()
            )
        })?;
        Ok(Frontend::from_stream(sock, 2 * self.cfg.queues as u64))
    }

    /// Server mode: the next backend that connects, waiting until `deadline` if given.
    fn accept(&self, deadline: Option<Instant>) -> std::result::Result<Frontend, String> {
        let Some(l) = &self.listener else {
            return Err("not in server mode".into());
        };
        l.set_nonblocking(true).map_err(|e| e.to_string())?;
        loop {
            match l.accept() {
                Ok((sock, _)) => {
                    sock.set_nonblocking(false).map_err(|e| e.to_string())?;
                    return Ok(Frontend::from_stream(sock, 2 * self.cfg.queues as u64));
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(format!("accept on {}: {e}", self.cfg.path.display())),
            }
            if self.closed.load(Ordering::Acquire) || deadline.is_some_and(|d| Instant::now() > d) {
                return Err(format!(
                    "no vhost-user backend connected to {} within {} s: start one in client mode (DPDK: net_vhost0,iface={},client=1)",
                    self.cfg.path.display(),
                    ACCEPT_TIMEOUT.as_secs(),
                    self.cfg.path.display()
                ));
            }
            std::thread::sleep(RECONNECT_INTERVAL);
        }
    }

    /// Owner, features and protocol features; keeps the connection.
    fn handshake(&self, mut fe: Frontend) -> std::result::Result<(), String> {
        let err = |what: &str, e: vhost::Error| self.request_failed(what, e);
        fe.set_owner().map_err(|e| err("SET_OWNER", e))?;
        let offered = fe.get_features().map_err(|e| err("GET_FEATURES", e))?;
        if offered & feature::VERSION_1 == 0 {
            return Err(format!(
                "the vhost-user backend at {} offers features {offered:#x} without VERSION_1: legacy backends are not supported",
                self.cfg.path.display()
            ));
        }
        if offered & VhostUserVirtioFeatures::PROTOCOL_FEATURES.bits() != 0 {
            let proto = fe
                .get_protocol_features()
                .map_err(|e| err("GET_PROTOCOL_FEATURES", e))?;
            let want = proto & VhostUserProtocolFeatures::MQ;
            // SET_PROTOCOL_FEATURES is valid before SET_FEATURES acks PROTOCOL_FEATURES.
            fe.set_protocol_features(want)
                .map_err(|e| err("SET_PROTOCOL_FEATURES", e))?;
            if self.cfg.queues > 1 {
                if !want.contains(VhostUserProtocolFeatures::MQ) {
                    return Err(format!(
                        "queues={}: the vhost-user backend at {} has no multi-queue support",
                        self.cfg.queues,
                        self.cfg.path.display()
                    ));
                }
                let n = fe.get_queue_num().map_err(|e| err("GET_QUEUE_NUM", e))?;
                if n < self.cfg.queues as u64 {
                    return Err(format!(
                        "queues={}: the vhost-user backend at {} has {n} queue pair(s); start it with queues={} or more",
                        self.cfg.queues,
                        self.cfg.path.display(),
                        self.cfg.queues
                    ));
                }
            }
        } else if self.cfg.queues > 1 {
            return Err(format!(
                "queues={}: the vhost-user backend at {} offers no protocol features, so one queue pair only",
                self.cfg.queues,
                self.cfg.path.display()
            ));
        }
        *lock(&self.backend_features) = offered;
        *lock(&self.conn) = Some(fe);
        Ok(())
    }

    /// Tells the backend everything it needs to run the rings (at DRIVER_OK, and again
    /// after a reconnection).
    fn start_device(&self, st: &DeviceState) -> std::result::Result<(), String> {
        let mut conn = lock(&self.conn);
        let Some(fe) = conn.as_mut() else {
            return Err(format!(
                "the vhost-user backend at {} is not connected",
                self.cfg.path.display()
            ));
        };
        let err = |what: &str, e: vhost::Error| self.request_failed(what, e);
        let offered = *lock(&self.backend_features);
        let proto = offered & VhostUserVirtioFeatures::PROTOCOL_FEATURES.bits();
        let features = (st.driver_features & self.cfg.backend_features() & offered) | proto;
        fe.set_features(features)
            .map_err(|e| err("SET_FEATURES", e))?;
        let regions = &self.regions;
        fe.set_mem_table(regions).map_err(|e| {
            err("SET_MEM_TABLE", e)
                + &format!(
                    " ({} region(s), the protocol allows {MAX_REGIONS})",
                    regions.len()
                )
        })?;
        for (q, ring) in st.rings.iter().enumerate() {
            let Some(ring) = ring else { continue };
            let vq = ring.vq;
            let (desc, avail, used) = vq.ring_addrs();
            fe.set_vring_call(q, &self.calls[q])
                .map_err(|e| err("SET_VRING_CALL", e))?;
            fe.set_vring_num(q, vq.size())
                .map_err(|e| err("SET_VRING_NUM", e))?;
            // The device resumes where it left: entries it completed are in the used ring.
            fe.set_vring_base(q, vq.resume_base())
                .map_err(|e| err("SET_VRING_BASE", e))?;
            let addrs = VringConfigData {
                queue_max_size: vq.size(),
                queue_size: vq.size(),
                flags: 0,
                desc_table_addr: desc,
                used_ring_addr: used,
                avail_ring_addr: avail,
                log_addr: None,
            };
            fe.set_vring_addr(q, &addrs)
                .map_err(|e| err("SET_VRING_ADDR", e))?;
            fe.set_vring_kick(q, &self.kicks[q])
                .map_err(|e| err("SET_VRING_KICK", e))?;
        }
        drop(conn);
        self.enable_pairs(st)
    }

    /// Enables the rings of the first `st.pairs` queue pairs, disables the others.
    fn enable_pairs(&self, st: &DeviceState) -> std::result::Result<(), String> {
        let mut conn = lock(&self.conn);
        let Some(fe) = conn.as_mut() else {
            return Ok(());
        };
        if *lock(&self.backend_features) & VhostUserVirtioFeatures::PROTOCOL_FEATURES.bits() == 0 {
            return Ok(()); // rings start enabled without protocol features
        }
        for (q, ring) in st.rings.iter().enumerate() {
            if ring.is_some() {
                fe.set_vring_enable(q, q < 2 * st.pairs as usize)
                    .map_err(|e| self.request_failed("SET_VRING_ENABLE", e))?;
            }
        }
        Ok(())
    }

    /// Stops the rings (GET_VRING_BASE), as a device reset does.
    fn stop_device(&self, st: &DeviceState) {
        let mut conn = lock(&self.conn);
        let Some(fe) = conn.as_mut() else { return };
        for (q, ring) in st.rings.iter().enumerate() {
            if ring.is_some() {
                if let Err(e) = fe.get_vring_base(q) {
                    log::warn!("{}: stopping ring {q}: {e}", self.cfg.port);
                }
            }
        }
    }

    fn set_link(&self, up: bool) {
        if self.link_up.swap(up, Ordering::AcqRel) != up {
            let _ = self.config_event.write(1);
        }
    }

    /// The primary's connection thread: notices the backend leaving and brings it back.
    fn watch(self: Arc<Self>) {
        while !self.closed.load(Ordering::Acquire) {
            let fd = lock(&self.conn).as_ref().map(|f| f.as_raw_fd());
            if let Some(fd) = fd {
                if !peer_closed(fd) {
                    continue;
                }
                log::warn!(
                    "{}: the vhost-user backend at {} went away; link down until it is back",
                    self.cfg.port,
                    self.cfg.path.display()
                );
                *lock(&self.conn) = None;
                self.set_link(false);
            }
            let fe = if self.cfg.server {
                self.accept(None)
            } else {
                std::thread::sleep(RECONNECT_INTERVAL);
                self.connect()
            };
            let resumed = fe.and_then(|fe| self.handshake(fe)).and_then(|()| {
                let st = lock(&self.state);
                if st.status & status::DRIVER_OK != 0 {
                    self.start_device(&st)?;
                }
                Ok(())
            });
            match resumed {
                Ok(()) => {
                    log::info!("{}: the vhost-user backend is back", self.cfg.port);
                    self.set_link(lock(&self.state).status & status::DRIVER_OK != 0);
                }
                Err(e) => {
                    log::debug!("{}: reconnecting: {e}", self.cfg.port);
                    *lock(&self.conn) = None;
                }
            }
        }
    }
}

/// Waits up to 100 ms for the socket; true when the peer has closed it. Readable alone is
/// not enough: a reply to a request of another thread may be waiting to be read.
fn peer_closed(fd: i32) -> bool {
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLRDHUP,
        revents: 0,
    };
    // SAFETY: one valid pollfd, a bounded wait.
    let n = unsafe { libc::poll(&mut pfd, 1, 100) };
    n > 0 && pfd.revents & (libc::POLLRDHUP | libc::POLLHUP | libc::POLLERR) != 0
}

/// One memory region per segment file of the group: virtual addresses are the addresses
/// in descriptors (IOVA = VA, which the EAL picks when a virtio-user port is asked for).
/// The descriptors are the EAL's own, open for the life of the process.
fn memory_regions() -> std::result::Result<Vec<VhostUserMemoryRegionInfo>, String> {
    let eal = eal::eal().map_err(|e| e.to_string())?;
    let cfg = eal.config();
    if cfg.iova_mode() != eal::config::IovaMode::Va {
        return Err("virtio-user needs IOVA = VA: drop --iova-mode=pa".into());
    }
    let segs = cfg.segments();
    if segs.len() > MAX_REGIONS {
        return Err(format!(
            "the group's memory is in {} segments, vhost-user allows {MAX_REGIONS} regions: ask for less memory with -m",
            segs.len()
        ));
    }
    Ok(segs
        .iter()
        .zip(eal.segment_files())
        .map(|(seg, file)| {
            let va = cfg.base_va + seg.offset;
            VhostUserMemoryRegionInfo {
                guest_phys_addr: va,
                memory_size: seg.len,
                userspace_addr: va,
                mmap_offset: 0,
                mmap_handle: file.as_raw_fd(),
            }
        })
        .collect())
}

impl Transport for VirtioUser {
    fn describe(&self) -> String {
        self.inner.describe()
    }
    fn driver_name(&self) -> &'static str {
        "net_virtio_user"
    }
    fn status(&self) -> u8 {
        lock(&self.inner.state).status
    }
    fn set_status(&self, s: u8) -> std::result::Result<(), String> {
        let mut st = lock(&self.inner.state);
        let starting = s & status::DRIVER_OK != 0 && st.status & status::DRIVER_OK == 0;
        st.status = s;
        if starting {
            if let Err(e) = self.inner.start_device(&st) {
                st.status |= status::FAILED;
                return Err(e);
            }
            drop(st);
            self.inner.set_link(lock(&self.inner.conn).is_some());
        }
        Ok(())
    }
    fn reset(&self) {
        let mut st = lock(&self.inner.state);
        if st.status & status::DRIVER_OK != 0 {
            self.inner.stop_device(&st);
        }
        st.status = 0;
        st.rings.iter_mut().for_each(|r| *r = None);
        st.pairs = 1;
        drop(st);
        self.inner.set_link(false);
    }
    fn device_features(&self) -> u64 {
        let mq = if self.inner.cfg.queues > 1 {
            feature::MQ
        } else {
            0
        };
        (*lock(&self.inner.backend_features) & self.inner.cfg.backend_features())
            | EMULATED_FEATURES
            | mq
    }
    fn set_driver_features(&self, f: u64) {
        lock(&self.inner.state).driver_features = f;
    }
    fn read_config(&self, off: usize, buf: &mut [u8]) {
        // struct virtio_net_config as far as we fill it.
        let mut c = [0u8; 24];
        c[CFG_MAC..CFG_MAC + 6].copy_from_slice(&self.inner.cfg.mac.0);
        let link = self.inner.link_up.load(Ordering::Acquire) as u16;
        c[CFG_STATUS..CFG_STATUS + 2].copy_from_slice(&link.to_le_bytes());
        c[CFG_MAX_PAIRS..CFG_MAX_PAIRS + 2].copy_from_slice(&self.inner.cfg.queues.to_le_bytes());
        for (i, b) in buf.iter_mut().enumerate() {
            *b = c.get(off + i).copied().unwrap_or(0);
        }
    }
    fn num_queues(&self) -> u16 {
        2 * self.inner.cfg.queues
    }
    /// `queue_size` (DPDK's default 256) caps the rings, as in DPDK's virtio-user.
    fn max_queue_size(&self, q: u16) -> u16 {
        if q < self.num_queues() {
            self.inner.cfg.queue_size
        } else {
            0
        }
    }
    fn enable_queue(&self, q: u16, vq: &'static VqShared) -> std::result::Result<(), String> {
        let mut st = lock(&self.inner.state);
        let slot = st.rings.get_mut(q as usize).ok_or_else(|| {
            format!(
                "queue {q}: the port has {} rings (queues={})",
                2 * self.inner.cfg.queues,
                self.inner.cfg.queues
            )
        })?;
        *slot = Some(Ring { vq });
        Ok(())
    }
    fn notifier(&self, q: u16) -> Notifier {
        Notifier::EventFd(
            self.inner
                .kicks
                .get(q as usize)
                .map_or(-1, |k| k.as_raw_fd()),
        )
    }
    fn config_interrupt(&self) -> Option<OwnedFd> {
        dup_eventfd(&self.inner.config_event).ok()
    }
    /// Ends the connection thread and, in server mode, removes the socket.
    fn close(&self) {
        if self.inner.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        KICK_FDS.withdraw(&self.inner.cfg.port);
        *lock(&self.inner.conn) = None;
        if self.inner.cfg.server {
            let _ = std::fs::remove_file(&self.inner.cfg.path);
        }
    }
    fn emulates_control(&self) -> bool {
        true
    }
    fn control(&self, class: u8, cmd: u8, data: &[u8]) -> std::result::Result<(), String> {
        if (class, cmd) == (CTRL_MQ, CTRL_MQ_VQ_PAIRS_SET) {
            let pairs = data
                .get(..2)
                .map_or(0, |b| u16::from_le_bytes([b[0], b[1]]));
            if pairs == 0 || pairs > self.inner.cfg.queues {
                return Err(format!(
                    "{pairs} queue pairs asked, queues={}",
                    self.inner.cfg.queues
                ));
            }
            let mut st = lock(&self.inner.state);
            st.pairs = pairs;
            return self.inner.enable_pairs(&st);
        }
        // Receive modes and MAC tables: a software backend hands over every frame.
        Ok(())
    }
}

impl Drop for VirtioUser {
    fn drop(&mut self) {
        Transport::close(self);
    }
}

/// A secondary's view: it only kicks the rings it polls; the primary does the rest.
struct KickOnly {
    port: String,
    kicks: Vec<OwnedFd>,
}

impl Transport for KickOnly {
    fn describe(&self) -> String {
        format!("{} (attached)", self.port)
    }
    fn driver_name(&self) -> &'static str {
        "net_virtio_user"
    }
    fn status(&self) -> u8 {
        status::DRIVER_OK
    }
    fn set_status(&self, _s: u8) -> std::result::Result<(), String> {
        Err("only the primary process drives the device".into())
    }
    fn reset(&self) {}
    fn device_features(&self) -> u64 {
        0
    }
    fn set_driver_features(&self, _f: u64) {}
    fn read_config(&self, _off: usize, buf: &mut [u8]) {
        buf.fill(0);
    }
    fn num_queues(&self) -> u16 {
        self.kicks.len() as u16
    }
    fn max_queue_size(&self, _q: u16) -> u16 {
        0
    }
    fn enable_queue(&self, _q: u16, _vq: &'static VqShared) -> std::result::Result<(), String> {
        Err("only the primary process drives the device".into())
    }
    fn notifier(&self, q: u16) -> Notifier {
        Notifier::EventFd(self.kicks.get(q as usize).map_or(-1, |k| k.as_raw_fd()))
    }
}
