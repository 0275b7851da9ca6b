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
    /// The lcore that polls each queue, plus one (0: not known yet), for tools; written by
    /// the poller at its first burst.
    pub(super) rx_lcore: [AtomicU32; MAX_QUEUES],
    pub(super) tx_lcore: [AtomicU32; MAX_QUEUES],
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
    pub(crate) fn set_mac(&self, m: MacAddr) {
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
    pub(crate) fn set_link(&self, l: Link) {
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
    pub(crate) fn drv_data(&self, i: usize) -> &AtomicU64 {
        &self.drv_data[i]
    }
    /// TX queue `q`'s count of packets taken, for [`TakenCounter`].
    pub(crate) fn tx_taken(&'static self, q: u16) -> TakenCounter {
        TakenCounter(&self.tx_taken[q as usize])
    }
    /// [`PortDriver::recover_queue`](super::PortDriver::recover_queue) for drivers that
    /// count with a [`TakenCounter`].
    pub(crate) fn recover_taken(&'static self, dir: Direction, q: u16) {
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
    pub(crate) fn count_rx_nombuf(&self, n: u64) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ethdev::testing;

    const STATES: [PortState; 5] = [
        PortState::Unused,
        PortState::Attached,
        PortState::Configured,
        PortState::Started,
        PortState::Stopped,
    ];

    #[test]
    fn port_state_round_trips_through_its_word() {
        for s in STATES {
            assert_eq!(PortState::from_u32(s as u32), s);
        }
        // A word no state writes reads as an unused slot.
        assert_eq!(PortState::from_u32(5), PortState::Unused);
        assert_eq!(PortState::from_u32(u32::MAX), PortState::Unused);
        let mut names: Vec<&str> = STATES.iter().map(|s| s.as_str()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), STATES.len(), "each state has its own name");
    }

    #[test]
    fn link_round_trips_through_its_word() {
        let links = [
            Link::DOWN,
            Link {
                up: true,
                full_duplex: true,
                speed_mbps: 10_000,
            },
            Link {
                up: true,
                full_duplex: false,
                speed_mbps: 100,
            },
            Link {
                up: false,
                full_duplex: true,
                speed_mbps: u32::MAX,
            },
        ];
        for l in links {
            assert_eq!(Link::unpack(l.pack()), l);
        }
        assert_eq!(Link::DOWN.pack(), 0, "a zeroed record's link is down");
        assert_eq!(Link::unpack(0), Link::DOWN);
    }

    #[test]
    fn link_displays_speed_and_duplex_when_up() {
        let up = |full_duplex, speed_mbps| Link {
            up: true,
            full_duplex,
            speed_mbps,
        };
        assert_eq!(up(true, 10_000).to_string(), "up, 10000 Mbps, full-duplex");
        assert_eq!(up(false, 100).to_string(), "up, 100 Mbps, half-duplex");
        assert_eq!(Link::DOWN.to_string(), "down");
    }

    #[test]
    fn mac_round_trips_and_never_packs_to_a_free_slot() {
        for m in [
            MacAddr([0; 6]),
            MacAddr([0xff; 6]),
            MacAddr([0x02, 0, 0, 0, 0x01, 0x07]),
            MacAddr([0x01, 0x00, 0x5e, 0x00, 0x00, 0xfb]),
        ] {
            let v = pack_mac(m);
            assert_ne!(v, 0, "{m} packs to a free slot");
            assert_eq!(unpack_mac(v), m);
        }
        assert_ne!(
            pack_mac(MacAddr([1, 2, 3, 4, 5, 6])),
            pack_mac(MacAddr([6, 5, 4, 3, 2, 1]))
        );
    }

    #[test]
    fn a_zeroed_record_is_an_unused_slot() {
        let rec = testing::record();
        assert_eq!(rec.state(), PortState::Unused);
        assert_eq!(rec.generation(), 0);
        assert_eq!(rec.name(), "");
        assert_eq!(rec.link(), Link::DOWN);
        assert_eq!((rec.nb_rx_queues(), rec.nb_tx_queues()), (0, 0));
        assert!(rec.mac_filters().is_empty());
        assert!(rec.rx_pool(0).is_none(), "no pool set up");
        assert!(rec.rx_pool(MAX_QUEUES as u16).is_none(), "no such queue");
        assert!(!rec.promiscuous() && !rec.allmulticast() && !rec.rss_enabled());
    }

    #[test]
    fn state_and_mac_changes_bump_the_generation() {
        let rec = testing::record();
        rec.set_state(PortState::Started);
        assert_eq!(rec.state(), PortState::Started);
        assert_eq!(rec.generation(), 1);
        let m = MacAddr([0x02, 0, 0, 0, 0, 9]);
        rec.set_mac(m);
        assert_eq!(rec.mac(), m);
        assert_eq!(rec.generation(), 2);
        // The link is read often and cached by nobody: no bump.
        rec.set_link(Link::DOWN);
        assert_eq!(rec.generation(), 2);
    }

    #[test]
    fn a_down_link_has_no_speed_or_duplex() {
        let rec = testing::record();
        rec.set_link(Link {
            up: false,
            full_duplex: true,
            speed_mbps: 1000,
        });
        assert_eq!(rec.link(), Link::DOWN);
        let up = Link {
            up: true,
            full_duplex: false,
            speed_mbps: 1000,
        };
        rec.set_link(up);
        assert_eq!(rec.link(), up);
    }

    #[test]
    fn the_name_ends_at_its_first_nul_or_at_the_field() {
        let rec = testing::record();
        // SAFETY: the record is this test's alone.
        let name = unsafe { &mut *rec.name.get() };
        name[..9].copy_from_slice(b"net_ring0");
        assert_eq!(rec.name(), "net_ring0");
        name.fill(b'a');
        assert_eq!(rec.name(), "a".repeat(NAME_LEN));
    }

    #[test]
    fn mac_filters_list_added_then_multicast_without_repeats() {
        let rec = testing::record();
        let a = MacAddr([0x02, 0, 0, 0, 0, 1]);
        let b = MacAddr([0x02, 0, 0, 0, 0, 2]);
        let mc = MacAddr([0x01, 0x00, 0x5e, 0, 0, 1]);
        rec.mac_addrs[3].store(pack_mac(b), Ordering::Relaxed);
        rec.mac_addrs[0].store(pack_mac(a), Ordering::Relaxed);
        rec.mac_addrs[5].store(pack_mac(a), Ordering::Relaxed);
        rec.mc_addrs[1].store(pack_mac(mc), Ordering::Relaxed);
        rec.mc_addrs[2].store(pack_mac(b), Ordering::Relaxed);
        assert_eq!(rec.mac_filters(), vec![a, b, mc]);
    }

    #[test]
    fn reset_puts_a_used_slot_back_to_zero() {
        let rec = testing::configured(2, 3);
        rec.set_mac(MacAddr([0x02, 0, 0, 0, 0, 1]));
        rec.mtu.store(1500, Ordering::Relaxed);
        rec.mac_addrs[0].store(pack_mac(MacAddr([0x02; 6])), Ordering::Relaxed);
        rec.rx_desc[1].store(512, Ordering::Relaxed);
        rec.drv_data(7).store(9, Ordering::Relaxed);
        rec.count_rx_nombuf(4);
        rec.reset();
        assert_eq!(rec.state(), PortState::Unused);
        assert_eq!(rec.generation(), 0);
        assert_eq!(rec.mac(), MacAddr([0; 6]));
        assert_eq!(rec.mtu.load(Ordering::Relaxed), 0);
        assert!(rec.mac_filters().is_empty());
        assert_eq!((rec.nb_rx_queues(), rec.nb_tx_queues()), (0, 0));
        assert_eq!(rec.rx_desc(1), 0);
        assert_eq!(rec.drv_data(7).load(Ordering::Relaxed), 0);
        assert_eq!(rec.rx_nombuf.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn per_queue_fields_are_per_queue_and_per_direction() {
        let rec = testing::record();
        rec.rx_desc[2].store(256, Ordering::Relaxed);
        rec.tx_desc[2].store(1024, Ordering::Relaxed);
        assert_eq!((rec.rx_desc(2), rec.tx_desc(2)), (256, 1024));
        assert_eq!((rec.rx_desc(1), rec.tx_desc(3)), (0, 0));
        let rx = rec.capture_slot(3, Direction::Rx);
        let tx = rec.capture_slot(3, Direction::Tx);
        assert!(std::ptr::eq(rx, &rec.rx_capture[3]));
        assert!(std::ptr::eq(tx, &rec.tx_capture[3]));
        assert!(!std::ptr::eq(rec.capture_slot(4, Direction::Rx), rx));
        rec.count_rx_nombuf(3);
        rec.count_rx_nombuf(4);
        assert_eq!(rec.rx_nombuf.load(Ordering::Relaxed), 7);
    }
}
