//! The port record: what every process of a group sees of a port, in shared memory (the
//! state, the identity, the settings, per-queue owners and counters), and the table of them.

use super::counters::{QueueCounters, TakenCounter, TakenWords};
use super::{Direction, MAX_MAC_ADDRS, MAX_MC_ADDRS, MAX_PORTS, MAX_QUEUES, NAME_LEN};
use crate::capture::CaptureSlot;
use crate::mbuf::PktmbufPool;
use crate::MacAddr;
use eal::owner::OwnerWord;
use eal::shm::{RobustLock, ShmName, ShmSafe};
use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// Where a port is in its life.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PortState {
    /// The slot holds no port.
    Unused = 0,
    /// Probed, not configured.
    Attached = 1,
    /// Queues counted; they may be set up.
    Configured = 2,
    /// Receiving and sending.
    Started = 3,
    /// Stopped after a start; may be started again.
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
    /// The state as a word for messages.
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

/// Link status, packed in one word so that it is read and written atomically.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Link {
    /// Whether the link is up.
    pub up: bool,
    /// Full duplex (else half).
    pub full_duplex: bool,
    /// Speed in Mbit/s (0: unknown).
    pub speed_mbps: u32,
}

impl Link {
    /// A link that is down.
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
    pub(super) state: AtomicU32,
    /// Bumped whenever the primary changes the port; others re-read what they cache.
    pub(super) generation: AtomicU64,
    /// Identity: written by the primary under the table lock while the slot is unused, read
    /// by anyone once the state says the slot is in use.
    pub(super) name: UnsafeCell<[u8; NAME_LEN]>,
    pub(super) driver: UnsafeCell<ShmName>,
    pub(super) mac: AtomicU64,
    pub(super) mtu: AtomicU32,
    pub(super) nb_rxq: AtomicU32,
    pub(super) nb_txq: AtomicU32,
    pub(super) rss: AtomicU32,
    pub(super) promisc: AtomicU32,
    pub(super) allmulti: AtomicU32,
    pub(super) link: AtomicU64,
    /// Addresses the port receives besides its own (`pack_mac`, 0 = free slot): those
    /// added with `mac_addr_add`, and the multicast list of `set_mc_addr_list`.
    pub(super) mac_addrs: [AtomicU64; MAX_MAC_ADDRS],
    pub(super) mc_addrs: [AtomicU64; MAX_MC_ADDRS],
    pub(super) rx_desc: [AtomicU32; MAX_QUEUES],
    pub(super) tx_desc: [AtomicU32; MAX_QUEUES],
    /// Address of each RX queue's mbuf pool.
    pub(super) rx_pool: [AtomicU64; MAX_QUEUES],
    /// Pid of the process polling each queue, 0, or minus the pid of a process repairing it
    /// after its dead poller.
    pub(super) rx_owner: [OwnerWord; MAX_QUEUES],
    pub(super) tx_owner: [OwnerWord; MAX_QUEUES],
    pub(super) rx: [QueueCounters; MAX_QUEUES],
    pub(super) tx: [QueueCounters; MAX_QUEUES],
    /// Counter values at the last reset; stats are the difference, so a reset never races
    /// with the pollers' writes.
    pub(super) rx_base: [[AtomicU64; 3]; MAX_QUEUES],
    pub(super) tx_base: [[AtomicU64; 3]; MAX_QUEUES],
    pub(super) rx_nombuf: AtomicU64,
    pub(super) rx_nombuf_base: AtomicU64,
    /// Where a capture hooks into each queue (see the capture module).
    pub(super) rx_capture: [CaptureSlot; MAX_QUEUES],
    pub(super) tx_capture: [CaptureSlot; MAX_QUEUES],
    /// Plain values a driver keeps for all processes (e.g. net_null's packet size).
    pub(super) drv_data: [AtomicU64; 8],
    /// Packets each TX queue took, for drivers done with a packet when its burst returns
    /// (see [`TakenCounter`]).
    pub(super) tx_taken: [TakenWords; MAX_QUEUES],
}

#[repr(C)]
pub(super) struct PortTable {
    pub(super) lock: RobustLock,
    pub(super) ports: [PortRecord; MAX_PORTS],
}

// SAFETY: repr(C); atomics, byte arrays and names; pool addresses point into the group's range.
unsafe impl ShmSafe for PortRecord {}
// SAFETY: a lock and records, as above.
unsafe impl ShmSafe for PortTable {}
// SAFETY: all mutable state is atomic, except the identity cells, which are written only
// under the table lock while the slot is unused (no reader looks at an unused slot).
unsafe impl Sync for PortRecord {}

impl PortRecord {
    /// The port's state.
    pub fn state(&self) -> PortState {
        PortState::from_u32(self.state.load(Ordering::Acquire))
    }
    pub(super) fn set_state(&self, s: PortState) {
        self.state.store(s as u32, Ordering::Release);
        self.generation.fetch_add(1, Ordering::AcqRel);
    }
    /// The port's name.
    pub fn name(&self) -> String {
        // SAFETY: see the field: the name does not change while the slot is in use.
        let name = unsafe { &*self.name.get() };
        let len = name.iter().position(|b| *b == 0).unwrap_or(NAME_LEN);
        String::from_utf8_lossy(&name[..len]).into_owned()
    }
    /// The name of the driver every process uses for this port (ARCHITECTURE.md, rule 2).
    pub fn driver_name(&self) -> String {
        // SAFETY: as for the name.
        unsafe { &*self.driver.get() }.as_str().to_string()
    }
    /// The port's MAC address.
    pub fn mac(&self) -> MacAddr {
        unpack_mac(self.mac.load(Ordering::Relaxed))
    }
    /// Records the port's MAC address (drivers, once the device took it).
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
    /// RX queues configured.
    pub fn nb_rx_queues(&self) -> u16 {
        self.nb_rxq.load(Ordering::Acquire) as u16
    }
    /// TX queues configured.
    pub fn nb_tx_queues(&self) -> u16 {
        self.nb_txq.load(Ordering::Acquire) as u16
    }
    /// Whether RSS spreads received flows over the RX queues.
    pub fn rss_enabled(&self) -> bool {
        self.rss.load(Ordering::Relaxed) != 0
    }
    /// Descriptors of RX queue `q` (0: not set up).
    pub fn rx_desc(&self, q: u16) -> u32 {
        self.rx_desc[q as usize].load(Ordering::Relaxed)
    }
    /// Descriptors of TX queue `q` (0: not set up).
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
    /// The link as last read from the device.
    pub fn link(&self) -> Link {
        Link::unpack(self.link.load(Ordering::Acquire))
    }
    /// Records the link (drivers and the primary's link-change handler).
    pub fn set_link(&self, l: Link) {
        // A link that is down has no speed or duplex, whatever the driver says.
        let l = if l.up { l } else { Link::DOWN };
        self.link.store(l.pack(), Ordering::Release);
    }
    /// Whether all-multicast mode is on.
    pub fn allmulticast(&self) -> bool {
        self.allmulti.load(Ordering::Relaxed) != 0
    }
    /// Whether promiscuous mode is on.
    pub fn promiscuous(&self) -> bool {
        self.promisc.load(Ordering::Relaxed) != 0
    }
    /// A count that changes with every change of state or MAC address: a process holding
    /// per-port state checks it outside the hot path.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }
    /// Puts an unused slot back to all zeroes (callers hold the table lock).
    pub(super) fn reset(&self) {
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
    /// [`PortDriver::recover_queue`](super::PortDriver::recover_queue) for drivers that
    /// count with a [`TakenCounter`].
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

/// A MAC address in the low six bytes of a word, with bit 63 set so that no address
/// packs to 0 (a free slot).
pub(super) fn pack_mac(m: MacAddr) -> u64 {
    let mut b = [0u8; 8];
    b[..6].copy_from_slice(&m.0);
    u64::from_le_bytes(b) | 1 << 63
}

pub(super) fn unpack_mac(v: u64) -> MacAddr {
    let b = v.to_le_bytes();
    MacAddr([b[0], b[1], b[2], b[3], b[4], b[5]])
}
