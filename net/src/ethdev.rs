//! Ports: records in shared memory that every process of a group sees, drivers looked up
//! by name in each process, and queue handles that record which process polls them.
//!
//! The primary probes ports (from `--vdev`), configures, starts and stops them; a
//! secondary attaches to the ports the primary created and polls the queues it takes.
//! Nothing in a record points at process memory: a port records its driver's *name*, and
//! each process asks its own registry for the driver (DESIGN.md, rule 2).

pub use crate::capture::Direction;
use crate::capture::{Batch, CaptureSlot};
use crate::mbuf::{Mbuf, PktmbufPool};
use crate::MacAddr;
use eal::options::VdevSpec;
use eal::owner::{Claimed, OwnerWord};
use eal::shm::{RobustLock, ShmName, ShmSafe};
use eal::{pid_alive, MemzoneFlags, Role};
use std::cell::UnsafeCell;
use std::sync::atomic::{compiler_fence, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Most ports in a group, as DPDK's default `RTE_MAX_ETHPORTS`.
pub const MAX_PORTS: usize = 32;
/// Most RX (and TX) queues per port.
pub const MAX_QUEUES: usize = 16;
const PORTS_MEMZONE: &str = "ethdev_ports";
/// How long a stop waits for the pollers' bursts under way to end.
const BURST_WAIT: Duration = Duration::from_secs(1);
const NAME_LEN: usize = 64;

/// Errors of the port layer; each says what to do.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Eal(#[from] eal::Error),
    #[error("no driver for virtual device '{0}': known drivers are {1}")]
    UnknownDriver(String, String),
    #[error("port '{0}': {1}")]
    Driver(String, String),
    #[error("no port {0}: this group has {1} port(s)")]
    NoSuchPort(String, usize),
    #[error("a port named '{0}' exists already")]
    PortExists(String),
    #[error("all {MAX_PORTS} port slots are in use")]
    TooManyPorts,
    #[error("port {port}: {what} is not possible while the port is {state}; {fix}")]
    BadState {
        port: u16,
        what: &'static str,
        state: &'static str,
        fix: &'static str,
    },
    #[error("port {port}: {what} queue {queue} does not exist (the port has {count}): configure more queues or use a lower id")]
    NoSuchQueue {
        port: u16,
        what: &'static str,
        queue: u16,
        count: u16,
    },
    #[error("port {port}: cannot {what} it while process {pid} polls its {dir} queue {queue}: stop that poller first")]
    Polled {
        port: u16,
        what: &'static str,
        dir: &'static str,
        queue: u16,
        pid: i32,
    },
    #[error("port {port}: process {pid} has been inside a burst on {dir} queue {queue} for over {BURST_WAIT:?}, so the port was not stopped: if that process is stuck, kill it and stop the port again")]
    StuckInBurst {
        port: u16,
        dir: &'static str,
        queue: u16,
        pid: i32,
    },
    #[error("port {port}: {what} queue {queue} is already polled by process {pid}: a queue has one poller at a time")]
    QueueBusy {
        port: u16,
        what: &'static str,
        queue: u16,
        pid: i32,
    },
    #[error("port {0}: only the primary process can {1}")]
    PrimaryOnly(u16, &'static str),
    #[error("port {port}: at most {max} {what} queues")]
    TooManyQueues {
        port: u16,
        what: &'static str,
        max: usize,
    },
    #[error("port {0}: link still down after {1:?}")]
    LinkTimeout(u16, Duration),
    #[error("the port layer is not initialised: call net::init after eal::init")]
    NotInitialised,
    #[error("the primary of this group has no ports (it did not call net::init): start it with net::init, as the apps here do")]
    NoPortTable,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PortState {
    Unused = 0,
    Attached = 1,
    Configured = 2,
    Started = 3,
    Stopped = 4,
}

impl PortState {
    fn from_u32(v: u32) -> PortState {
        match v {
            1 => PortState::Attached,
            2 => PortState::Configured,
            3 => PortState::Started,
            4 => PortState::Stopped,
            _ => PortState::Unused,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            PortState::Unused => "unused",
            PortState::Attached => "not configured",
            PortState::Configured => "configured",
            PortState::Started => "started",
            PortState::Stopped => "stopped",
        }
    }
}

/// How many packets a TX queue took, for drivers that are done with a packet when its
/// burst returns (TAP, null): a poller killed inside a burst leaves each packet either
/// uncounted and still the caller's, or counted and back in its pool (see
/// `mbuf::free_then_forget`; [`TakenCounter::recover`] counts those it had put back).
#[derive(Clone, Copy)]
pub struct TakenCounter(&'static TakenWords);

/// A queue's [`TakenCounter`] in its port's record.
#[repr(C)]
#[derive(Debug, Default)]
struct TakenWords {
    count: AtomicU32,
    /// The count before the last burst that took packets, and the first of them.
    before: AtomicU32,
    first: AtomicU64,
}

impl TakenCounter {
    /// The count now, as [`TxBurst::tx_mark`].
    pub fn mark(&self) -> u32 {
        self.0.count.load(Ordering::Acquire)
    }
    /// Packets taken since the count was `mark`, as [`PortDriver::tx_taken_since`].
    pub fn since(&self, mark: u32) -> u32 {
        self.mark().wrapping_sub(mark)
    }
    /// Frees the first `n` of `pkts` and counts them as taken (the queue's poller).
    #[inline]
    pub fn free_taken(&self, pkts: &mut Vec<Mbuf>, n: usize) {
        let w = self.0;
        // One poller per queue: a plain add.
        let before = w.count.load(Ordering::Relaxed);
        if n > 0 {
            // Relaxed: the put that pins the packets publishes these with them.
            w.before.store(before, Ordering::Relaxed);
            w.first.store(pkts[0].addr() as u64, Ordering::Relaxed);
        }
        crate::mbuf::free_then_forget(pkts, n, || {
            w.count
                .store(before.wrapping_add(n as u32), Ordering::Release)
        });
    }

    /// After the queue's poller died inside a burst: counts the packets it had put back
    /// and not yet counted. Returns how many.
    pub fn recover(&self) -> u32 {
        let w = self.0;
        let first = w.first.load(Ordering::Acquire) as usize;
        let before = w.before.load(Ordering::Acquire);
        if first == 0 || w.count.load(Ordering::Acquire) != before {
            return 0;
        }
        // SAFETY: `first` was the first packet of the queue's last burst, an mbuf.
        let Some(pin) = (unsafe { crate::mbuf::dead_pin_holding(first) }) else {
            return 0;
        };
        if pin.objs.first() != Some(&first) {
            return 0;
        }
        let n = pin.objs.len() as u32;
        w.count.store(before.wrapping_add(n), Ordering::Release);
        pin.unpin();
        n
    }
}

/// Counters of one queue, and whether its poller is inside a burst: written only by the
/// queue's poller, on a cache line of their own (other queues' pollers run elsewhere).
#[repr(C, align(64))]
#[derive(Debug, Default)]
pub struct QueueCounters {
    pub packets: AtomicU64,
    pub bytes: AtomicU64,
    /// RX: packets the driver dropped (no room); TX: packets that failed.
    pub errors: AtomicU64,
    /// 1 while the poller is inside a burst: `Port::stop` waits for 0.
    in_burst: AtomicU32,
}

impl QueueCounters {
    /// Adds to counters that only this thread writes: a plain load and store, no lock prefix.
    #[inline]
    fn add(&self, packets: u64, bytes: u64) {
        self.packets.store(
            self.packets.load(Ordering::Relaxed) + packets,
            Ordering::Relaxed,
        );
        self.bytes.store(
            self.bytes.load(Ordering::Relaxed) + bytes,
            Ordering::Relaxed,
        );
    }
    /// Marks the start of a burst; whether the port is started (if not, the burst is over).
    #[inline(always)]
    fn enter_burst(&self, state: &AtomicU32) -> bool {
        self.in_burst.store(1, Ordering::Relaxed);
        // No fence instruction: `Port::stop` stores the new state and runs a global
        // membarrier before it reads this flag, so either it sees the flag or this load sees
        // the port stopped. Only the compiler must keep the store before the load.
        compiler_fence(Ordering::SeqCst);
        // Acquire: a port the primary (re)started is seen with the queues it set up.
        if state.load(Ordering::Acquire) == PortState::Started as u32 {
            return true;
        }
        self.leave_burst();
        false
    }

    /// Marks the end of a burst: what it did to the queue happens before a stop.
    #[inline(always)]
    fn leave_burst(&self) {
        self.in_burst.store(0, Ordering::Release);
    }

    fn snapshot(&self) -> [u64; 3] {
        [
            self.packets.load(Ordering::Relaxed),
            self.bytes.load(Ordering::Relaxed),
            self.errors.load(Ordering::Relaxed),
        ]
    }
}

/// Link status, packed in one word so that it is read and written atomically.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Link {
    pub up: bool,
    pub full_duplex: bool,
    pub speed_mbps: u32,
}

impl Link {
    pub const DOWN: Link = Link {
        up: false,
        full_duplex: false,
        speed_mbps: 0,
    };
    fn pack(self) -> u64 {
        (self.up as u64) << 63 | (self.full_duplex as u64) << 62 | self.speed_mbps as u64
    }
    fn unpack(v: u64) -> Link {
        Link {
            up: v >> 63 != 0,
            full_duplex: (v >> 62) & 1 != 0,
            speed_mbps: v as u32,
        }
    }
}

impl std::fmt::Display for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.up {
            write!(
                f,
                "up, {} Mbps, {}",
                self.speed_mbps,
                if self.full_duplex {
                    "full-duplex"
                } else {
                    "half-duplex"
                }
            )
        } else {
            write!(f, "down")
        }
    }
}

/// A port as every process of the group sees it.
#[repr(C)]
pub struct PortRecord {
    state: AtomicU32,
    /// Bumped whenever the primary changes the port; others re-read what they cache.
    generation: AtomicU64,
    /// Identity: written by the primary under the table lock while the slot is unused, read
    /// by anyone once the state says the slot is in use.
    name: UnsafeCell<[u8; NAME_LEN]>,
    driver: UnsafeCell<ShmName>,
    mac: AtomicU64,
    mtu: AtomicU32,
    nb_rxq: AtomicU32,
    nb_txq: AtomicU32,
    rss: AtomicU32,
    promisc: AtomicU32,
    allmulti: AtomicU32,
    link: AtomicU64,
    /// Addresses the port receives besides its own (`pack_mac`, 0 = free slot): those
    /// added with `mac_addr_add`, and the multicast list of `set_mc_addr_list`.
    mac_addrs: [AtomicU64; MAX_MAC_ADDRS],
    mc_addrs: [AtomicU64; MAX_MC_ADDRS],
    rx_desc: [AtomicU32; MAX_QUEUES],
    tx_desc: [AtomicU32; MAX_QUEUES],
    /// Address of each RX queue's mbuf pool.
    rx_pool: [AtomicU64; MAX_QUEUES],
    /// Pid of the process polling each queue, 0, or minus the pid of a process repairing it
    /// after its dead poller.
    rx_owner: [OwnerWord; MAX_QUEUES],
    tx_owner: [OwnerWord; MAX_QUEUES],
    rx: [QueueCounters; MAX_QUEUES],
    tx: [QueueCounters; MAX_QUEUES],
    /// Counter values at the last reset; stats are the difference, so a reset never races
    /// with the pollers' writes.
    rx_base: [[AtomicU64; 3]; MAX_QUEUES],
    tx_base: [[AtomicU64; 3]; MAX_QUEUES],
    rx_nombuf: AtomicU64,
    rx_nombuf_base: AtomicU64,
    /// Where a capture hooks into each queue (see the capture module).
    rx_capture: [CaptureSlot; MAX_QUEUES],
    tx_capture: [CaptureSlot; MAX_QUEUES],
    /// Plain values a driver keeps for all processes (e.g. net_null's packet size).
    drv_data: [AtomicU64; 8],
    /// Packets each TX queue took, for drivers done with a packet when its burst returns
    /// (see [`TakenCounter`]).
    tx_taken: [TakenWords; MAX_QUEUES],
}

#[repr(C)]
struct PortTable {
    lock: RobustLock,
    ports: [PortRecord; MAX_PORTS],
}

// SAFETY: repr(C); atomics, byte arrays and names; pool addresses point into the group's range.
unsafe impl ShmSafe for PortRecord {}
// SAFETY: a lock and records, as above.
unsafe impl ShmSafe for PortTable {}
// SAFETY: all mutable state is atomic, except the identity cells, which are written only
// under the table lock while the slot is unused (no reader looks at an unused slot).
unsafe impl Sync for PortRecord {}

impl PortRecord {
    pub fn state(&self) -> PortState {
        PortState::from_u32(self.state.load(Ordering::Acquire))
    }
    fn set_state(&self, s: PortState) {
        self.state.store(s as u32, Ordering::Release);
        self.generation.fetch_add(1, Ordering::AcqRel);
    }
    pub fn name(&self) -> String {
        // SAFETY: see the field: the name does not change while the slot is in use.
        let name = unsafe { &*self.name.get() };
        let len = name.iter().position(|b| *b == 0).unwrap_or(NAME_LEN);
        String::from_utf8_lossy(&name[..len]).into_owned()
    }
    pub fn driver_name(&self) -> String {
        // SAFETY: as for the name.
        unsafe { &*self.driver.get() }.as_str().to_string()
    }
    pub fn mac(&self) -> MacAddr {
        unpack_mac(self.mac.load(Ordering::Relaxed))
    }
    pub fn set_mac(&self, m: MacAddr) {
        self.mac.store(pack_mac(m), Ordering::Relaxed);
        self.generation.fetch_add(1, Ordering::AcqRel);
    }
    /// Every address the port receives besides its own, without repeats: what a driver
    /// puts in the device's filter table.
    pub fn mac_filters(&self) -> Vec<MacAddr> {
        let mut all: Vec<MacAddr> = Vec::new();
        for m in self.mac_addrs.iter().chain(&self.mc_addrs) {
            let v = m.load(Ordering::Relaxed);
            if v != 0 && !all.contains(&unpack_mac(v)) {
                all.push(unpack_mac(v));
            }
        }
        all
    }
    pub fn nb_rx_queues(&self) -> u16 {
        self.nb_rxq.load(Ordering::Acquire) as u16
    }
    pub fn nb_tx_queues(&self) -> u16 {
        self.nb_txq.load(Ordering::Acquire) as u16
    }
    pub fn rss_enabled(&self) -> bool {
        self.rss.load(Ordering::Relaxed) != 0
    }
    pub fn rx_desc(&self, q: u16) -> u32 {
        self.rx_desc[q as usize].load(Ordering::Relaxed)
    }
    pub fn tx_desc(&self, q: u16) -> u32 {
        self.tx_desc[q as usize].load(Ordering::Relaxed)
    }
    /// The mbuf pool set up for RX queue `q`.
    pub fn rx_pool(&self, q: u16) -> Option<PktmbufPool> {
        let a = self.rx_pool.get(q as usize)?.load(Ordering::Acquire);
        // SAFETY: rx_queue_setup stored the address of a live pool of this group.
        (a != 0)
            .then(|| unsafe { PktmbufPool::from_addr(a) })
            .flatten()
    }
    pub fn link(&self) -> Link {
        Link::unpack(self.link.load(Ordering::Acquire))
    }
    pub fn set_link(&self, l: Link) {
        // A link that is down has no speed or duplex, whatever the driver says.
        let l = if l.up { l } else { Link::DOWN };
        self.link.store(l.pack(), Ordering::Release);
    }
    pub fn allmulticast(&self) -> bool {
        self.allmulti.load(Ordering::Relaxed) != 0
    }
    pub fn promiscuous(&self) -> bool {
        self.promisc.load(Ordering::Relaxed) != 0
    }
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }
    /// Puts an unused slot back to all zeroes (callers hold the table lock).
    fn reset(&self) {
        // SAFETY: the slot is unused and the table lock is held (see the identity fields);
        // every field is an atomic, a byte array or a name, for which zero bytes are valid.
        unsafe {
            std::ptr::write_bytes(
                self as *const PortRecord as *mut u8,
                0,
                std::mem::size_of::<PortRecord>(),
            )
        };
    }

    /// Word `i` (0..8) of the driver's data, shared by every process.
    pub fn drv_data(&self, i: usize) -> &AtomicU64 {
        &self.drv_data[i]
    }
    /// TX queue `q`'s count of packets taken, for [`TakenCounter`].
    pub fn tx_taken(&'static self, q: u16) -> TakenCounter {
        TakenCounter(&self.tx_taken[q as usize])
    }
    /// [`PortDriver::recover_queue`] for drivers that count with a [`TakenCounter`].
    pub fn recover_taken(&'static self, dir: Direction, q: u16) {
        if dir == Direction::Tx {
            match self.tx_taken(q).recover() {
                0 => {}
                n => log::warn!(
                    "{}: TX queue {q}: counted {n} packets its dead poller had freed",
                    self.name()
                ),
            }
        }
    }
    /// The capture hook of queue `q` (below MAX_QUEUES) in direction `dir`.
    pub(crate) fn capture_slot(&self, q: u16, dir: Direction) -> &CaptureSlot {
        match dir {
            Direction::Rx => &self.rx_capture[q as usize],
            Direction::Tx => &self.tx_capture[q as usize],
        }
    }
    /// Counts packets a driver could not receive for want of mbufs.
    pub fn count_rx_nombuf(&self, n: u64) {
        self.rx_nombuf.fetch_add(n, Ordering::Relaxed);
    }
}

/// How many addresses `mac_addr_add` can give a port, and `set_mc_addr_list`.
pub const MAX_MAC_ADDRS: usize = 32;
pub const MAX_MC_ADDRS: usize = 32;

/// A MAC address in the low six bytes of a word, with bit 63 set so that no address
/// packs to 0 (a free slot).
fn pack_mac(m: MacAddr) -> u64 {
    let mut b = [0u8; 8];
    b[..6].copy_from_slice(&m.0);
    u64::from_le_bytes(b) | 1 << 63
}

fn unpack_mac(v: u64) -> MacAddr {
    let b = v.to_le_bytes();
    MacAddr([b[0], b[1], b[2], b[3], b[4], b[5]])
}

/// What configure sets.
#[derive(Clone, Copy, Debug, Default)]
pub struct PortConf {
    /// Spread received flows over the RX queues by their RSS hash.
    pub rss: bool,
}

/// What a driver says about itself.
#[derive(Clone, Debug)]
pub struct DevInfo {
    pub driver_name: &'static str,
    pub max_rx_queues: u16,
    pub max_tx_queues: u16,
    pub min_mtu: u32,
    pub max_mtu: u32,
    /// The kernel interface behind the port, if any (TAP).
    pub if_name: Option<String>,
}

/// Receives packets into `out` (appending at most `max`); returns how many.
pub trait RxBurst: Send {
    fn rx_burst(&mut self, out: &mut Vec<Mbuf>, max: usize) -> usize;
}

/// Sends packets from the front of `pkts`, removing those it took; returns how many.
pub trait TxBurst: Send {
    fn tx_burst(&mut self, pkts: &mut Vec<Mbuf>) -> usize;
    /// Where the queue stands, read before a burst: [`PortDriver::tx_taken_since`] turns it
    /// into how many of that burst's packets the queue took, should its poller die inside
    /// the burst. `None`: the driver cannot tell.
    fn tx_mark(&self) -> Option<u32> {
        None
    }
    /// Frees the packets the device has finished sending (DPDK's `tx_done_cleanup`) and
    /// makes sure it has been told of the rest; returns how many it still holds. Queues
    /// that keep nothing after a burst (rings, TAP) hold none.
    fn done_cleanup(&mut self) -> usize {
        0
    }
}

/// What a driver is told about the port it probes or attaches to.
pub struct PortContext<'a> {
    pub port_id: u16,
    pub name: &'a str,
    pub args: &'a [(String, String)],
    pub record: &'static PortRecord,
}

/// One port as driven in one process.
pub trait PortDriver: Send + Sync {
    fn info(&self) -> DevInfo;
    /// Prepares `nb_rxq`/`nb_txq` queues (primary).
    fn configure(&self, _nb_rxq: u16, _nb_txq: u16, _conf: &PortConf) -> Result<()> {
        Ok(())
    }
    fn rx_queue_setup(&self, _q: u16, _nb_desc: u32, _pool: &PktmbufPool) -> Result<()> {
        Ok(())
    }
    fn tx_queue_setup(&self, _q: u16, _nb_desc: u32) -> Result<()> {
        Ok(())
    }
    /// Starts the device; software devices have nothing to do.
    fn start(&self) -> Result<()> {
        Ok(())
    }
    fn stop(&self) -> Result<()> {
        Ok(())
    }
    fn close(&self) -> Result<()> {
        Ok(())
    }
    /// Reads the link from the device (the caller stores it in the record).
    fn link_update(&self) -> Link;
    fn set_promiscuous(&self, _on: bool) -> Result<()> {
        Ok(())
    }
    fn set_allmulticast(&self, _on: bool) -> Result<()> {
        Ok(())
    }
    fn set_mac(&self, _mac: MacAddr) -> Result<()> {
        Ok(())
    }
    fn set_mtu(&self, _mtu: u32) -> Result<()> {
        Ok(())
    }
    /// Makes the device receive `addrs` (unicast and multicast) besides its own address;
    /// software devices receive everything anyway.
    fn set_mac_filters(&self, _addrs: &[MacAddr]) -> Result<()> {
        Ok(())
    }
    /// Driver-specific counters, by name.
    fn xstats(&self) -> Vec<(String, u64)> {
        Vec::new()
    }
    /// Zeroes those of the driver's xstats that count (not those that describe, such as
    /// negotiated features), for every process of the group.
    fn xstats_reset(&self) {}
    /// This process's handle to RX queue `q` (after setup, in any process).
    fn rx_queue(&self, q: u16) -> Result<Box<dyn RxBurst>>;
    fn tx_queue(&self, q: u16) -> Result<Box<dyn TxBurst>>;
    /// How many mbufs queue `q` holds at this moment: given to the device for receiving, or
    /// sent and not yet freed. Read from the shared queue state, in any process.
    fn queue_mbufs(&self, _dir: Direction, _q: u16) -> u32 {
        0
    }
    /// Repairs queue `q`'s shared state after its poller died inside a burst (nobody polls
    /// it now), where a store order alone cannot keep it usable.
    fn recover_queue(&self, _dir: Direction, _q: u16) {}
    /// How many packets TX queue `q` took since its [`TxBurst::tx_mark`] was `mark`: of a
    /// burst whose poller died, the first that many are the queue's to free, the rest are
    /// still the caller's. Counts what the queue took at the store that committed it, so it
    /// holds after [`recover_queue`](Self::recover_queue); only while nobody polls `q`.
    fn tx_taken_since(&self, _q: u16, _mark: u32) -> Option<u32> {
        None
    }
}

/// A driver: found by name in each process's registry.
pub trait Driver: Send + Sync {
    /// The stable name recorded in ports, e.g. `net_ring`; vdev names start with it.
    fn name(&self) -> &'static str;
    /// PCI vendor and device ids this driver takes (none for virtual devices).
    fn pci_ids(&self) -> &'static [(u16, u16)] {
        &[]
    }
    /// Creates the device (primary); a PCI device's port is named by its address.
    fn probe(&self, ctx: &PortContext) -> Result<Box<dyn PortDriver>>;
    /// Joins a device the primary created (secondary).
    fn attach(&self, ctx: &PortContext) -> Result<Box<dyn PortDriver>>;
}

struct PortInner {
    id: u16,
    rec: &'static PortRecord,
    drv: Box<dyn PortDriver>,
    driver_name: &'static str,
}

/// A port, as this process sees it. Cheap to clone.
#[derive(Clone)]
pub struct Port {
    inner: Arc<PortInner>,
}

pub(crate) struct Registry {
    table: &'static PortTable,
    pub(crate) role: Role,
    pub(crate) drivers: Mutex<Vec<&'static dyn Driver>>,
    pub(crate) ports: Mutex<Vec<Option<Port>>>,
}

static REGISTRY: OnceLock<Registry> = OnceLock::new();
static PENDING_DRIVERS: Mutex<Vec<&'static dyn Driver>> = Mutex::new(Vec::new());

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Adds a driver to this process's registry (before or after [`init`]).
pub fn register_driver(d: &'static dyn Driver) {
    match REGISTRY.get() {
        Some(r) => lock(&r.drivers).push(d),
        None => lock(&PENDING_DRIVERS).push(d),
    }
}

pub(crate) fn registry() -> Result<&'static Registry> {
    REGISTRY.get().ok_or(Error::NotInitialised)
}

/// Sets up the port layer after `eal::init`: the primary creates the port table and probes
/// every `--vdev`; a secondary attaches to the ports the primary made.
pub fn init() -> Result<Vec<Port>> {
    let eal = eal::eal()?;
    let role = eal.role();
    let len = std::mem::size_of::<PortTable>() as u64;
    let mz = match role {
        Role::Primary => eal.memzone_reserve(PORTS_MEMZONE, len, 64, MemzoneFlags::empty())?,
        Role::Secondary => eal
            .memzone_lookup(PORTS_MEMZONE)
            .map_err(|_| Error::NoPortTable)?,
    };
    // SAFETY: the memzone is at least size_of::<PortTable>() bytes, zeroed at reservation (a
    // valid empty table: all atomics 0), and lives as long as the group.
    let table: &'static PortTable = unsafe { &*mz.as_ptr::<PortTable>() };
    let reg = Registry {
        table,
        role,
        drivers: Mutex::new(std::mem::take(&mut *lock(&PENDING_DRIVERS))),
        ports: Mutex::new(vec![None; MAX_PORTS]),
    };
    if REGISTRY.set(reg).is_err() {
        return Err(Error::Eal(eal::Error::AlreadyInitialised));
    }
    let reg = registry()?;
    crate::hotplug::init(eal, role);
    eal::before_emptying_pinned_caches(repair_dead_queues);
    match role {
        Role::Primary => {
            // A dead secondary's queues may be taken again.
            eal.ipc().on_peer_exit(release_queues_of);
            for v in &eal.options().vdevs {
                probe_vdev(v)?;
            }
            probe_pci(reg)?;
        }
        Role::Secondary => {
            for id in 0..MAX_PORTS as u16 {
                let rec = &table.ports[id as usize];
                if rec.state() != PortState::Unused {
                    if let Err(e) = attach(id, rec) {
                        log::warn!("cannot attach to port {id} ('{}'): {e}", rec.name());
                    }
                }
            }
        }
    }
    Ok(lock(&reg.ports).iter().flatten().cloned().collect())
}

/// The record of port `id`, if the slot is in use.
pub(crate) fn record(id: u16) -> Option<&'static PortRecord> {
    let rec = registry().ok()?.table.ports.get(id as usize)?;
    (rec.state() != PortState::Unused).then_some(rec)
}

/// Every capture hook of every port of the group.
pub(crate) fn capture_slots() -> impl Iterator<Item = &'static CaptureSlot> {
    registry()
        .ok()
        .into_iter()
        .flat_map(|reg| reg.table.ports.iter())
        .flat_map(|rec| rec.rx_capture.iter().chain(rec.tx_capture.iter()))
}

fn release_queues_of(pid: i32) {
    crate::capture::release_of(pid);
    for port in ports() {
        port.release_queues_of(pid);
    }
}

/// Repairs every queue of this process's ports that `dead` (an owner word's value) or
/// another dead process polled, and waits for those other processes repair: a dead
/// poller's lcore cache may hold mbufs its queue still names, and is emptied only after
/// this (see `eal::before_emptying_pinned_caches`).
fn repair_dead_queues(dead: i32) {
    for port in ports() {
        for dir in [Direction::Rx, Direction::Tx] {
            for q in 0..MAX_QUEUES as u16 {
                port.repair_if_dead(dir, q, dead);
            }
        }
    }
}

fn find_driver(reg: &Registry, name: &str) -> Option<&'static dyn Driver> {
    // The longest driver name that starts the device name: net_ring0 -> net_ring.
    lock(&reg.drivers)
        .iter()
        .filter(|d| name.starts_with(d.name()))
        .max_by_key(|d| d.name().len())
        .copied()
}

/// Creates a port from a virtual device spec (primary), as `--vdev` does.
pub fn probe_vdev(spec: &VdevSpec) -> Result<Port> {
    let reg = registry()?;
    if reg.role != Role::Primary {
        return Err(Error::PrimaryOnly(u16::MAX, "create ports"));
    }
    let drv = find_driver(reg, &spec.name).ok_or_else(|| {
        let known: Vec<&str> = lock(&reg.drivers).iter().map(|d| d.name()).collect();
        Error::UnknownDriver(spec.name.clone(), known.join(", "))
    })?;
    probe_with(reg, drv, spec)
}

/// Probes the PCI devices some registered driver takes (primary): those allowed by
/// `-a`/`-b` and bound to vfio-pci. A device named with `-a` must work; others that fail
/// (held by another group, say) are reported and skipped, as DPDK does.
fn probe_pci(reg: &'static Registry) -> Result<()> {
    if !lock(&reg.drivers).iter().any(|d| !d.pci_ids().is_empty()) {
        return Ok(());
    }
    let opts = eal::eal()?.options();
    let sys = eal::pci::Sysfs::default();
    let devices = match sys.devices() {
        Ok(d) => d,
        Err(e) if opts.allow.is_empty() => {
            log::debug!("no PCI bus to scan: {e}");
            return Ok(());
        }
        Err(e) => return Err(Error::Eal(e.into())),
    };
    for a in &opts.allow {
        if !devices.iter().any(|d| d.addr == a.addr) {
            return Err(Error::Eal(eal::pci::PciError::NoDevice(a.addr).into()));
        }
    }
    for dev in devices {
        if !eal::pci::allowed(opts, dev.addr) {
            continue;
        }
        let Some(drv) = pci_driver_for(reg, &dev) else {
            continue;
        };
        let named = opts.allow.iter().find(|a| a.addr == dev.addr);
        if named.is_none() && dev.driver.as_deref() != Some("vfio-pci") {
            log::info!(
                "{} ({}): left to its kernel driver {}",
                dev.addr,
                dev.description(),
                dev.driver.as_deref().unwrap_or("(none)")
            );
            continue;
        }
        let spec = VdevSpec {
            name: dev.addr.to_string(),
            args: named.map(|a| a.devargs.clone()).unwrap_or_default(),
        };
        match probe_with(reg, drv, &spec) {
            Ok(_) => {}
            Err(e) if named.is_some() => return Err(e),
            Err(e) => log::warn!("{}: skipped: {e}", dev.addr),
        }
    }
    Ok(())
}

/// The registered driver that takes PCI device `dev`, by vendor and device id.
pub(crate) fn pci_driver_for(
    reg: &Registry,
    dev: &eal::pci::PciDevice,
) -> Option<&'static dyn Driver> {
    lock(&reg.drivers)
        .iter()
        .find(|d| d.pci_ids().contains(&(dev.vendor_id, dev.device_id)))
        .copied()
}

pub(crate) fn probe_with(
    reg: &'static Registry,
    drv: &'static dyn Driver,
    spec: &VdevSpec,
) -> Result<Port> {
    let _g = reg.table.lock.lock();
    if reg
        .table
        .ports
        .iter()
        .any(|p| p.state() != PortState::Unused && p.name() == spec.name)
    {
        return Err(Error::PortExists(spec.name.clone()));
    }
    let id = reg
        .table
        .ports
        .iter()
        .position(|p| p.state() == PortState::Unused)
        .ok_or(Error::TooManyPorts)? as u16;
    let rec: &'static PortRecord = &reg.table.ports[id as usize];
    rec.reset();
    let n = spec.name.len().min(NAME_LEN - 1);
    // SAFETY: the slot is unused and the table lock is held: nobody reads its identity.
    unsafe {
        let name = &mut *rec.name.get();
        name[..n].copy_from_slice(&spec.name.as_bytes()[..n]);
        *rec.driver.get() = ShmName::new(drv.name())?;
    }
    rec.mtu.store(1500, Ordering::Relaxed);
    rec.set_mac(MacAddr::local(0x0100 + id as u32));
    let ctx = PortContext {
        port_id: id,
        name: &spec.name,
        args: &spec.args,
        record: rec,
    };
    let pd = drv.probe(&ctx)?;
    let port = Port {
        inner: Arc::new(PortInner {
            id,
            rec,
            drv: pd,
            driver_name: drv.name(),
        }),
    };
    rec.set_state(PortState::Attached);
    lock(&reg.ports)[id as usize] = Some(port.clone());
    log::info!(
        "port {id}: '{}' ({}), MAC {}",
        spec.name,
        drv.name(),
        rec.mac()
    );
    Ok(port)
}

pub(crate) fn attach(id: u16, rec: &'static PortRecord) -> Result<Port> {
    let reg = registry()?;
    let dname = rec.driver_name();
    let drv = lock(&reg.drivers)
        .iter()
        .find(|d| d.name() == dname)
        .copied()
        .ok_or_else(|| {
            Error::UnknownDriver(rec.name(), format!("this binary lacks driver '{dname}'"))
        })?;
    let name = rec.name();
    let ctx = PortContext {
        port_id: id,
        name: &name,
        args: &[],
        record: rec,
    };
    let pd = drv.attach(&ctx)?;
    let port = Port {
        inner: Arc::new(PortInner {
            id,
            rec,
            drv: pd,
            driver_name: drv.name(),
        }),
    };
    lock(&reg.ports)[id as usize] = Some(port.clone());
    log::debug!("attached to port {id} '{name}'");
    Ok(port)
}

/// The ports this process knows, by id order.
pub fn ports() -> Vec<Port> {
    registry()
        .map(|r| lock(&r.ports).iter().flatten().cloned().collect())
        .unwrap_or_default()
}

/// Statistics of a port (since the last reset).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub ipackets: u64,
    pub opackets: u64,
    pub ibytes: u64,
    pub obytes: u64,
    pub imissed: u64,
    pub oerrors: u64,
    pub rx_nombuf: u64,
    pub q_ipackets: Vec<u64>,
    pub q_opackets: Vec<u64>,
    pub q_ibytes: Vec<u64>,
    pub q_obytes: Vec<u64>,
}

impl Port {
    /// A port by id.
    pub fn by_id(id: u16) -> Result<Port> {
        let reg = registry()?;
        let ports = lock(&reg.ports);
        ports
            .get(id as usize)
            .cloned()
            .flatten()
            .ok_or_else(|| Error::NoSuchPort(id.to_string(), ports.iter().flatten().count()))
    }

    /// A port by name.
    pub fn by_name(name: &str) -> Result<Port> {
        let reg = registry()?;
        let ports = lock(&reg.ports);
        ports
            .iter()
            .flatten()
            .find(|p| p.inner.rec.name() == name)
            .cloned()
            .ok_or_else(|| Error::NoSuchPort(format!("'{name}'"), ports.iter().flatten().count()))
    }

    pub fn id(&self) -> u16 {
        self.inner.id
    }
    pub fn name(&self) -> String {
        self.inner.rec.name()
    }
    pub fn record(&self) -> &'static PortRecord {
        self.inner.rec
    }
    pub fn state(&self) -> PortState {
        self.inner.rec.state()
    }
    pub fn mac(&self) -> MacAddr {
        self.inner.rec.mac()
    }
    pub fn nb_rx_queues(&self) -> u16 {
        self.inner.rec.nb_rx_queues()
    }
    pub fn nb_tx_queues(&self) -> u16 {
        self.inner.rec.nb_tx_queues()
    }
    pub fn mtu(&self) -> u32 {
        self.inner.rec.mtu.load(Ordering::Relaxed)
    }
    pub fn info(&self) -> DevInfo {
        self.inner.drv.info()
    }

    fn primary_only(&self, what: &'static str) -> Result<()> {
        match registry()?.role {
            Role::Primary => Ok(()),
            Role::Secondary => Err(Error::PrimaryOnly(self.id(), what)),
        }
    }

    fn bad_state(&self, what: &'static str, fix: &'static str) -> Error {
        Error::BadState {
            port: self.id(),
            what,
            state: self.state().as_str(),
            fix,
        }
    }

    /// Sets the number of RX and TX queues (primary; port not started).
    pub fn configure(&self, nb_rxq: u16, nb_txq: u16, conf: PortConf) -> Result<()> {
        self.primary_only("configure ports")?;
        if self.state() == PortState::Started {
            return Err(self.bad_state("configure", "stop it first"));
        }
        let info = self.info();
        for (n, max, what) in [
            (nb_rxq, info.max_rx_queues, "RX"),
            (nb_txq, info.max_tx_queues, "TX"),
        ] {
            if n == 0 || n > max || n as usize > MAX_QUEUES {
                return Err(Error::TooManyQueues {
                    port: self.id(),
                    what,
                    max: (max as usize).min(MAX_QUEUES),
                });
            }
        }
        self.inner.drv.configure(nb_rxq, nb_txq, &conf)?;
        let r = self.inner.rec;
        r.nb_rxq.store(nb_rxq as u32, Ordering::Release);
        r.nb_txq.store(nb_txq as u32, Ordering::Release);
        r.rss.store(conf.rss as u32, Ordering::Relaxed);
        r.set_state(PortState::Configured);
        Ok(())
    }

    /// `check_queue` for a queue setup, which a started port refuses: setting up a queue
    /// frees what it held, and pollers of any process may be in it.
    fn check_queue_setup(&self, q: u16, rx: bool) -> Result<()> {
        if self.state() == PortState::Started {
            return Err(self.bad_state("setting up queues", "stop it first"));
        }
        self.check_queue(q, rx)
    }

    fn check_queue(&self, q: u16, rx: bool) -> Result<()> {
        let (count, what) = if rx {
            (self.nb_rx_queues(), "RX")
        } else {
            (self.nb_tx_queues(), "TX")
        };
        if self.state() == PortState::Attached {
            return Err(self.bad_state("setting up queues", "configure it first"));
        }
        if q >= count {
            return Err(Error::NoSuchQueue {
                port: self.id(),
                what,
                queue: q,
                count,
            });
        }
        Ok(())
    }

    /// Sets up RX queue `q` with `nb_desc` descriptors, receiving into buffers of `pool`
    /// (primary; port configured, not started).
    pub fn rx_queue_setup(&self, q: u16, nb_desc: u32, pool: &PktmbufPool) -> Result<()> {
        self.primary_only("set up queues")?;
        self.check_queue_setup(q, true)?;
        self.inner.drv.rx_queue_setup(q, nb_desc, pool)?;
        let r = self.inner.rec;
        r.rx_desc[q as usize].store(nb_desc, Ordering::Relaxed);
        r.rx_pool[q as usize].store(pool.addr(), Ordering::Release);
        Ok(())
    }

    /// Sets up TX queue `q` with `nb_desc` descriptors (primary; port configured, not
    /// started).
    pub fn tx_queue_setup(&self, q: u16, nb_desc: u32) -> Result<()> {
        self.primary_only("set up queues")?;
        self.check_queue_setup(q, false)?;
        self.inner.drv.tx_queue_setup(q, nb_desc)?;
        self.inner.rec.tx_desc[q as usize].store(nb_desc, Ordering::Relaxed);
        Ok(())
    }

    pub fn start(&self) -> Result<()> {
        self.primary_only("start ports")?;
        match self.state() {
            PortState::Configured | PortState::Stopped => {}
            PortState::Started => return Ok(()),
            _ => return Err(self.bad_state("start", "configure it and set up its queues first")),
        }
        let r = self.inner.rec;
        for q in 0..self.nb_rx_queues() {
            if r.rx_pool(q).is_none() {
                return Err(Error::Driver(
                    self.name(),
                    format!("RX queue {q} is not set up: call rx_queue_setup first"),
                ));
            }
        }
        for q in 0..self.nb_tx_queues() {
            if r.tx_desc(q) == 0 {
                return Err(Error::Driver(
                    self.name(),
                    format!("TX queue {q} is not set up: call tx_queue_setup first"),
                ));
            }
        }
        self.inner.drv.start()?;
        r.set_state(PortState::Started);
        r.set_link(self.inner.drv.link_update());
        Ok(())
    }

    pub fn stop(&self) -> Result<()> {
        self.primary_only("stop ports")?;
        if self.state() != PortState::Started {
            return Ok(());
        }
        // Pollers (of any process) check the state as each burst starts: once none is
        // inside a burst, none touches the queues the driver now stops and empties.
        self.inner.rec.set_state(PortState::Stopped);
        if let Err(e) = self.wait_for_bursts().and_then(|()| self.inner.drv.stop()) {
            self.inner.rec.set_state(PortState::Started);
            return Err(e);
        }
        self.inner.rec.set_link(self.inner.drv.link_update());
        Ok(())
    }

    /// Waits until no live poller of this port is inside a burst (a poller that died in
    /// one leaves its flag up), at most `BURST_WAIT`.
    fn wait_for_bursts(&self) -> Result<()> {
        if let Err(e) = eal::membarrier_global() {
            // Refused on kernels with nohz_full CPUs. A poller's flag can then still sit in
            // its CPU's store buffer, which drains within microseconds.
            log::debug!("membarrier: {e}; waiting 1 ms instead");
            std::thread::sleep(Duration::from_millis(1));
        }
        let r = self.inner.rec;
        let deadline = Instant::now() + BURST_WAIT;
        let rx = r.rx.iter().zip(&r.rx_owner).enumerate();
        let tx = r.tx.iter().zip(&r.tx_owner).enumerate();
        let queues = rx.map(|q| ("RX", q)).chain(tx.map(|q| ("TX", q)));
        for (dir, (q, (counters, owner))) in queues {
            while counters.in_burst.load(Ordering::Acquire) != 0 {
                let pid = owner.load();
                if !pid_alive(pid) {
                    break;
                }
                if Instant::now() > deadline {
                    return Err(Error::StuckInBurst {
                        port: self.id(),
                        dir,
                        queue: q as u16,
                        pid,
                    });
                }
                std::thread::yield_now();
            }
        }
        Ok(())
    }

    /// Stops the port and releases its device; its slot may be reused.
    pub fn close(&self) -> Result<()> {
        self.primary_only("close ports")?;
        self.stop()?;
        self.inner.drv.close()?;
        self.inner.rec.set_state(PortState::Unused);
        if let Ok(reg) = registry() {
            lock(&reg.ports)[self.id() as usize] = None;
        }
        Ok(())
    }

    /// The link as last recorded; the primary reads the device first.
    pub fn link(&self) -> Link {
        if registry().is_ok_and(|r| r.role == Role::Primary) && self.state() != PortState::Unused {
            self.inner.rec.set_link(self.inner.drv.link_update());
        }
        self.inner.rec.link()
    }

    /// Waits up to `timeout` for the link to come up.
    pub fn wait_link_up(&self, timeout: Duration) -> Result<Link> {
        let deadline = Instant::now() + timeout;
        loop {
            let l = self.link();
            if l.up {
                return Ok(l);
            }
            if Instant::now() > deadline {
                return Err(Error::LinkTimeout(self.id(), timeout));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Calls `f` (on a watcher thread of this process) whenever the link changes.
    pub fn on_link_change(&self, f: impl Fn(u16, Link) + Send + 'static) {
        let port = self.clone();
        let mut last = port.link();
        std::thread::spawn(move || loop {
            std::thread::sleep(Duration::from_millis(20));
            if port.state() == PortState::Unused {
                return;
            }
            let now = port.link();
            if now != last {
                f(port.id(), now);
                last = now;
            }
        });
    }

    pub fn promiscuous_enable(&self) -> Result<()> {
        self.set_promiscuous(true)
    }
    pub fn promiscuous_disable(&self) -> Result<()> {
        self.set_promiscuous(false)
    }
    fn set_promiscuous(&self, on: bool) -> Result<()> {
        let flag = &self.inner.rec.promisc;
        self.set_rx_mode("change promiscuous mode", flag, on, |d| {
            d.set_promiscuous(on)
        })
    }
    /// Changes a receive mode in the device, then records it for every process.
    fn set_rx_mode(
        &self,
        what: &'static str,
        flag: &AtomicU32,
        on: bool,
        apply: impl FnOnce(&dyn PortDriver) -> Result<()>,
    ) -> Result<()> {
        self.primary_only(what)?;
        apply(self.inner.drv.as_ref())?;
        flag.store(on as u32, Ordering::Relaxed);
        Ok(())
    }
    pub fn promiscuous(&self) -> bool {
        self.inner.rec.promiscuous()
    }
    pub fn allmulticast_enable(&self) -> Result<()> {
        self.set_allmulticast(true)
    }
    pub fn allmulticast_disable(&self) -> Result<()> {
        self.set_allmulticast(false)
    }
    fn set_allmulticast(&self, on: bool) -> Result<()> {
        let flag = &self.inner.rec.allmulti;
        self.set_rx_mode("change all-multicast mode", flag, on, |d| {
            d.set_allmulticast(on)
        })
    }
    pub fn allmulticast(&self) -> bool {
        self.inner.rec.allmulti.load(Ordering::Relaxed) != 0
    }

    pub fn set_mac(&self, mac: MacAddr) -> Result<()> {
        self.primary_only("change the MAC address")?;
        if mac.is_multicast() {
            return Err(Error::Driver(
                self.name(),
                format!("{mac} is a multicast address, not valid for a port"),
            ));
        }
        self.inner.drv.set_mac(mac)?;
        self.inner.rec.set_mac(mac);
        Ok(())
    }

    /// Makes the port receive frames for `mac` too (DPDK's `rte_eth_dev_mac_addr_add`).
    pub fn mac_addr_add(&self, mac: MacAddr) -> Result<()> {
        self.primary_only("add a MAC address")?;
        let rec = self.inner.rec;
        if mac == rec.mac()
            || rec
                .mac_addrs
                .iter()
                .any(|a| a.load(Ordering::Relaxed) == pack_mac(mac))
        {
            return Ok(());
        }
        let free = rec.mac_addrs.iter().find(|a| a.load(Ordering::Relaxed) == 0).ok_or_else(|| {
            Error::Driver(
                self.name(),
                format!("all {MAX_MAC_ADDRS} extra MAC addresses are in use: remove one (mac_addr_remove) before adding {mac}"),
            )
        })?;
        let mut filters = rec.mac_filters();
        filters.push(mac);
        self.inner.drv.set_mac_filters(&filters)?;
        free.store(pack_mac(mac), Ordering::Relaxed);
        Ok(())
    }

    /// Stops receiving frames for an address `mac_addr_add` gave.
    pub fn mac_addr_remove(&self, mac: MacAddr) -> Result<()> {
        self.primary_only("remove a MAC address")?;
        let rec = self.inner.rec;
        let slot = rec
            .mac_addrs
            .iter()
            .find(|a| a.load(Ordering::Relaxed) == pack_mac(mac))
            .ok_or_else(|| {
                Error::Driver(
                    self.name(),
                    format!("{mac} was not added to the port (its own address cannot be removed)"),
                )
            })?;
        slot.store(0, Ordering::Relaxed);
        if let Err(e) = self.inner.drv.set_mac_filters(&rec.mac_filters()) {
            slot.store(pack_mac(mac), Ordering::Relaxed);
            return Err(e);
        }
        Ok(())
    }

    /// Replaces the multicast addresses the port receives without all-multicast mode
    /// (DPDK's `rte_eth_dev_set_mc_addr_list`); an empty list removes them all.
    pub fn set_mc_addr_list(&self, list: &[MacAddr]) -> Result<()> {
        self.primary_only("set the multicast address list")?;
        let bad = |why: String| Err(Error::Driver(self.name(), why));
        if list.len() > MAX_MC_ADDRS {
            return bad(format!(
                "{} multicast addresses given, at most {MAX_MC_ADDRS}",
                list.len()
            ));
        }
        if let Some(m) = list.iter().find(|m| !m.is_multicast()) {
            return bad(format!(
                "{m} is not a multicast address (add unicast ones with mac_addr_add)"
            ));
        }
        let rec = self.inner.rec;
        let mut filters: Vec<MacAddr> = rec
            .mac_addrs
            .iter()
            .map(|a| a.load(Ordering::Relaxed))
            .filter(|v| *v != 0)
            .map(unpack_mac)
            .collect();
        for m in list {
            if !filters.contains(m) {
                filters.push(*m);
            }
        }
        self.inner.drv.set_mac_filters(&filters)?;
        for (i, slot) in rec.mc_addrs.iter().enumerate() {
            slot.store(list.get(i).map_or(0, |m| pack_mac(*m)), Ordering::Relaxed);
        }
        Ok(())
    }

    pub fn set_mtu(&self, mtu: u32) -> Result<()> {
        self.primary_only("change the MTU")?;
        let info = self.info();
        if !(info.min_mtu..=info.max_mtu).contains(&mtu) {
            return Err(Error::Driver(
                self.name(),
                format!("MTU {mtu} is outside {}..={}", info.min_mtu, info.max_mtu),
            ));
        }
        self.inner.drv.set_mtu(mtu)?;
        self.inner.rec.mtu.store(mtu, Ordering::Relaxed);
        Ok(())
    }

    pub fn stats(&self) -> Stats {
        let r = self.inner.rec;
        let mut s = Stats::default();
        let diff = |c: &QueueCounters, base: &[AtomicU64; 3]| {
            let now = c.snapshot();
            [0, 1, 2].map(|i| now[i].wrapping_sub(base[i].load(Ordering::Relaxed)))
        };
        for q in 0..self.nb_rx_queues() as usize {
            let [p, b, e] = diff(&r.rx[q], &r.rx_base[q]);
            s.ipackets += p;
            s.ibytes += b;
            s.imissed += e;
            s.q_ipackets.push(p);
            s.q_ibytes.push(b);
        }
        for q in 0..self.nb_tx_queues() as usize {
            let [p, b, e] = diff(&r.tx[q], &r.tx_base[q]);
            s.opackets += p;
            s.obytes += b;
            s.oerrors += e;
            s.q_opackets.push(p);
            s.q_obytes.push(b);
        }
        s.rx_nombuf = r
            .rx_nombuf
            .load(Ordering::Relaxed)
            .wrapping_sub(r.rx_nombuf_base.load(Ordering::Relaxed));
        s
    }

    /// Zeroes the statistics as seen from every process (the pollers' counters are left
    /// alone; the current values become the new base).
    pub fn stats_reset(&self) {
        let r = self.inner.rec;
        for (c, base) in
            r.rx.iter()
                .zip(&r.rx_base)
                .chain(r.tx.iter().zip(&r.tx_base))
        {
            let now = c.snapshot();
            for i in 0..3 {
                base[i].store(now[i], Ordering::Relaxed);
            }
        }
        r.rx_nombuf_base
            .store(r.rx_nombuf.load(Ordering::Relaxed), Ordering::Relaxed);
    }

    /// Zeroes the statistics and the driver's counters, as seen from every process.
    pub fn xstats_reset(&self) {
        self.stats_reset();
        self.inner.drv.xstats_reset();
    }

    /// Named statistics: the generic ones, per queue, then the driver's own.
    pub fn xstats(&self) -> Vec<(String, u64)> {
        let s = self.stats();
        let mut v = vec![
            ("rx_good_packets".to_string(), s.ipackets),
            ("tx_good_packets".to_string(), s.opackets),
            ("rx_good_bytes".to_string(), s.ibytes),
            ("tx_good_bytes".to_string(), s.obytes),
            ("rx_missed_errors".to_string(), s.imissed),
            ("tx_errors".to_string(), s.oerrors),
            ("rx_mbuf_allocation_errors".to_string(), s.rx_nombuf),
        ];
        for (q, (p, b)) in s.q_ipackets.iter().zip(&s.q_ibytes).enumerate() {
            v.push((format!("rx_q{q}_packets"), *p));
            v.push((format!("rx_q{q}_bytes"), *b));
        }
        for (q, (p, b)) in s.q_opackets.iter().zip(&s.q_obytes).enumerate() {
            v.push((format!("tx_q{q}_packets"), *p));
            v.push((format!("tx_q{q}_bytes"), *b));
        }
        v.extend(self.inner.drv.xstats());
        v
    }

    /// How many mbufs queue `q` holds now: armed for receiving (RX), or sent and not yet
    /// freed (TX; a chain of segments counts once). 0 while the port is not started.
    pub fn queue_mbufs(&self, dir: Direction, q: u16) -> Result<u32> {
        self.check_queue(q, dir == Direction::Rx)?;
        if self.state() != PortState::Started {
            return Ok(0);
        }
        Ok(self.inner.drv.queue_mbufs(dir, q))
    }

    /// How many packets TX queue `q` took since [`TxQueue::tx_mark`] said `mark`: settles
    /// the burst of a poller that died (or left) inside it. Only while nobody polls `q`, after
    /// taking it over; `None` when the driver cannot tell.
    pub fn tx_taken_since(&self, q: u16, mark: u32) -> Result<Option<u32>> {
        self.check_queue(q, false)?;
        Ok(self.inner.drv.tx_taken_since(q, mark))
    }

    /// Refuses `what` while a live process (this one included) polls one of the queues.
    pub(crate) fn check_unpolled(&self, what: &'static str) -> Result<()> {
        let r = self.inner.rec;
        let owners = r.rx_owner.iter().map(|o| ("RX", o)).enumerate();
        let owners = owners.chain(r.tx_owner.iter().map(|o| ("TX", o)).enumerate());
        for (q, (dir, owner)) in owners {
            if let Some(pid) = owner.live_holder() {
                return Err(Error::Polled {
                    port: self.id(),
                    what,
                    dir,
                    queue: q as u16,
                    pid,
                });
            }
        }
        Ok(())
    }

    fn claim(&self, q: u16, rx: bool) -> Result<()> {
        self.check_queue(q, rx)?;
        let dir = if rx { Direction::Rx } else { Direction::Tx };
        let owner = &self.queue_owners(dir)[q as usize];
        let what = if rx { "RX" } else { "TX" };
        // A poller (or repairer) that died before the primary noticed: repaired, then
        // taken. One poller a queue: this process polling it already is refused too.
        let me = eal::own_pid();
        let pid = match owner.claim(me, |dead| self.free_from_dead(dir, q, dead)) {
            Ok(Claimed::Now) => return Ok(()),
            Ok(Claimed::Already) => me,
            Err(holder) => holder,
        };
        Err(Error::QueueBusy {
            port: self.id(),
            what,
            queue: q,
            pid,
        })
    }

    fn queue_owners(&self, dir: Direction) -> &'static [OwnerWord; MAX_QUEUES] {
        match dir {
            Direction::Rx => &self.inner.rec.rx_owner,
            Direction::Tx => &self.inner.rec.tx_owner,
        }
    }

    /// Frees the queues dead process `pid` polled (the primary, told it exited).
    fn release_queues_of(&self, pid: i32) {
        for dir in [Direction::Rx, Direction::Tx] {
            for q in 0..MAX_QUEUES as u16 {
                if self.free_from_dead(dir, q, pid) {
                    log::info!(
                        "released {dir} queue {q} of port '{}' polled by exited process {pid}",
                        self.name()
                    );
                }
            }
        }
    }

    /// Repairs queue `q` if its poller (or repairer) is `dead` or died; returns once nobody
    /// repairs it.
    fn repair_if_dead(&self, dir: Direction, q: u16, dead: i32) {
        self.queue_owners(dir)[q as usize].settle(dead, |cur| self.free_from_dead(dir, q, cur));
    }

    /// Frees queue `q` of dead owner `pid` (a poller, or minus a repairer), repaired (see
    /// `recover_dead_burst`) before anyone can claim it (see `OwnerWord::free_from_dead`).
    /// Returns whether this call did it.
    fn free_from_dead(&self, dir: Direction, q: u16, pid: i32) -> bool {
        let owner = &self.queue_owners(dir)[q as usize];
        owner.free_from_dead(pid, || {
            self.recover_dead_burst(dir, q, pid.saturating_abs())
        })
    }

    /// After queue `q` was taken from dead poller `pid`: if it died inside a burst, lowers
    /// the burst flag it left up (a stop would wait for the queue's next poller) and has
    /// the driver repair what store order alone cannot. What that burst held may stay in
    /// use.
    fn recover_dead_burst(&self, dir: Direction, q: u16, pid: i32) {
        let r = self.inner.rec;
        let counters = match dir {
            Direction::Rx => &r.rx[q as usize],
            Direction::Tx => &r.tx[q as usize],
        };
        if counters.in_burst.swap(0, Ordering::AcqRel) != 0 {
            self.inner.drv.recover_queue(dir, q);
            log::warn!(
                "port {}: process {pid} died inside a burst on {dir} queue {q}: the queue goes on; the packets of that burst may stay in use",
                self.id()
            );
        }
    }

    fn release(&self, q: u16, rx: bool) {
        let dir = if rx { Direction::Rx } else { Direction::Tx };
        self.queue_owners(dir)[q as usize].release(eal::own_pid());
    }

    /// Claims queue `q` in the record, then opens this process's handle to it; the claim
    /// is given back if opening fails.
    fn take_queue<T>(
        &self,
        q: u16,
        rx: bool,
        open: impl FnOnce(&dyn PortDriver) -> Result<T>,
    ) -> Result<T> {
        self.claim(q, rx)?;
        open(self.inner.drv.as_ref()).inspect_err(|_| self.release(q, rx))
    }

    /// Takes RX queue `q` for polling by this process (until the handle drops).
    pub fn rx_queue(&self, q: u16) -> Result<RxQueue> {
        let burst = self.take_queue(q, true, |d| d.rx_queue(q))?;
        let rec = self.inner.rec;
        Ok(RxQueue {
            port: self.clone(),
            q,
            burst,
            counters: &rec.rx[q as usize],
            state: &rec.state,
            capture: rec.capture_slot(q, Direction::Rx),
        })
    }

    /// Takes TX queue `q` for this process (until the handle drops).
    pub fn tx_queue(&self, q: u16) -> Result<TxQueue> {
        let burst = self.take_queue(q, false, |d| d.tx_queue(q))?;
        let rec = self.inner.rec;
        Ok(TxQueue {
            port: self.clone(),
            q,
            burst,
            counters: &rec.tx[q as usize],
            state: &rec.state,
            capture: rec.capture_slot(q, Direction::Tx),
        })
    }

    pub fn driver_name(&self) -> &'static str {
        self.inner.driver_name
    }
}

/// An RX queue taken by this process. Polling a port that is not started receives nothing.
pub struct RxQueue {
    port: Port,
    q: u16,
    burst: Box<dyn RxBurst>,
    counters: &'static QueueCounters,
    state: &'static AtomicU32,
    capture: &'static CaptureSlot,
}

impl RxQueue {
    /// Appends up to `max` received packets to `out`; returns how many.
    #[inline]
    pub fn rx_burst(&mut self, out: &mut Vec<Mbuf>, max: usize) -> usize {
        if !self.counters.enter_burst(self.state) {
            return 0;
        }
        let start = out.len();
        let n = self.burst.rx_burst(out, max);
        if n > 0 {
            let bytes: u64 = out[start..].iter().map(|m| m.pkt_len() as u64).sum();
            self.counters.add(n as u64, bytes);
            if self.capture.armed() {
                let port = self.port.id();
                Batch::copy(self.capture, &out[start..], port, self.q, Direction::Rx).commit(n);
            }
        }
        self.counters.leave_burst();
        n
    }
    pub fn port(&self) -> &Port {
        &self.port
    }
    pub fn queue_id(&self) -> u16 {
        self.q
    }
}

impl Drop for RxQueue {
    fn drop(&mut self) {
        self.port.release(self.q, true);
    }
}

/// A TX queue taken by this process.
pub struct TxQueue {
    port: Port,
    q: u16,
    burst: Box<dyn TxBurst>,
    counters: &'static QueueCounters,
    state: &'static AtomicU32,
    capture: &'static CaptureSlot,
}

impl TxQueue {
    /// Sends packets from the front of `pkts`; those sent leave the vector, the rest stay
    /// for the caller to retry or drop. Returns how many were sent.
    #[inline]
    pub fn tx_burst(&mut self, pkts: &mut Vec<Mbuf>) -> usize {
        if pkts.is_empty() || !self.counters.enter_burst(self.state) {
            return 0;
        }
        let bytes_before: u64 = pkts.iter().map(|m| m.pkt_len() as u64).sum();
        // Copies are made before the driver takes the packets; only those of the packets
        // it sent reach the capture.
        let copies = self
            .capture
            .armed()
            .then(|| Batch::copy(self.capture, pkts, self.port.id(), self.q, Direction::Tx));
        let n = self.burst.tx_burst(pkts);
        if let Some(c) = copies {
            c.commit(n);
        }
        if n > 0 {
            let bytes_left: u64 = pkts.iter().map(|m| m.pkt_len() as u64).sum();
            self.counters.add(n as u64, bytes_before - bytes_left);
        }
        self.counters.leave_burst();
        n
    }

    /// Where the queue stands before a burst, for [`Port::tx_taken_since`]; `None` when its
    /// driver cannot tell.
    #[inline]
    pub fn tx_mark(&self) -> Option<u32> {
        self.burst.tx_mark()
    }

    /// Frees the packets the device has finished sending, as DPDK's
    /// `rte_eth_tx_done_cleanup` (bursts do it as they go); returns how many it still
    /// holds. A stopped port holds none: stopping it freed them.
    pub fn done_cleanup(&mut self) -> usize {
        if !self.counters.enter_burst(self.state) {
            return 0;
        }
        let held = self.burst.done_cleanup();
        self.counters.leave_burst();
        held
    }

    /// Waits until the device has sent all this queue was given, at most `timeout`,
    /// freeing it; returns how many packets it still holds (0: all back in their pools).
    /// For a poller that leaves (or takes over from one that died) without sending more.
    pub fn wait_sent(&mut self, timeout: Duration) -> usize {
        let deadline = Instant::now() + timeout;
        loop {
            let held = self.done_cleanup();
            if held == 0 || Instant::now() >= deadline {
                return held;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    pub fn port(&self) -> &Port {
        &self.port
    }
    pub fn queue_id(&self) -> u16 {
        self.q
    }
}

impl Drop for TxQueue {
    fn drop(&mut self) {
        self.port.release(self.q, false);
    }
}
