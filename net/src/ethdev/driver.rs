//! What a driver implements and is given: the driver (found by name in each process), the
//! port as driven in one process, and the burst functions of its queues.

use super::{Direction, Link, PortRecord, Result, TakenCounter};
use crate::mbuf::{Mbuf, PktmbufPool};
use crate::MacAddr;
use std::sync::atomic::AtomicU64;

bitflags::bitflags! {
    /// Offloads of a port's TX queues: DPDK's `RTE_ETH_TX_OFFLOAD_*` (same names and bits),
    /// those this stack knows.
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
    pub struct TxOffloads: u64 {
        /// The application promises that every packet it sends on the port is one segment
        /// with one reference, and that all of a queue's packets are of one pool: the driver
        /// may free sent packets in bulk without looking at each. A driver that finds the
        /// promise broken must not corrupt the pool (the Intel PMDs free that queue with the
        /// checks from then on).
        const MBUF_FAST_FREE = 1 << 16;
    }
}

/// What configure sets.
#[derive(Clone, Copy, Debug, Default)]
pub struct PortConf {
    /// Spread received flows over the RX queues by their RSS hash.
    pub rss: bool,
    /// Offloads of every TX queue of the port (DPDK's `txmode.offloads`), among those the
    /// driver offers ([`DevInfo::tx_offload_capa`]).
    pub tx_offloads: TxOffloads,
}

/// What a driver says about itself.
#[derive(Clone, Debug)]
pub struct DevInfo {
    /// The driver's stable name.
    pub driver_name: &'static str,
    /// Most RX queues.
    pub max_rx_queues: u16,
    /// Most TX queues.
    pub max_tx_queues: u16,
    /// Smallest MTU in bytes.
    pub min_mtu: u32,
    /// Largest MTU in bytes.
    pub max_mtu: u32,
    /// The kernel interface behind the port, if any (TAP).
    pub if_name: Option<String>,
    /// The TX offloads the driver honours.
    pub tx_offload_capa: TxOffloads,
}

/// Receives packets into `out` (appending at most `max`); returns how many.
pub trait RxBurst: Send {
    /// Appends at most `max` received packets to `out`; returns how many.
    fn rx_burst(&mut self, out: &mut Vec<Mbuf>, max: usize) -> usize;
}

/// Sends packets from the front of `pkts`, removing those it took; returns how many.
pub trait TxBurst: Send {
    /// Takes packets from the front of `pkts` for sending; returns how many it took.
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
    /// The port's id.
    pub port_id: u16,
    /// The device's name (`net_ring0`, a PCI address).
    pub name: &'a str,
    /// Its `key=value` arguments.
    pub args: &'a [(String, String)],
    /// The port's record in shared memory.
    pub record: DeviceRecord,
}

/// One port as driven in one process.
pub trait PortDriver: Send + Sync {
    /// What the device can do.
    fn info(&self) -> DevInfo;
    /// Prepares `nb_rxq`/`nb_txq` queues (primary).
    fn configure(&self, _nb_rxq: u16, _nb_txq: u16, _conf: &PortConf) -> Result<()> {
        Ok(())
    }
    /// Prepares RX queue `q` with `nb_desc` descriptors filled from `pool` (primary).
    fn rx_queue_setup(&self, _q: u16, _nb_desc: u32, _pool: &PktmbufPool) -> Result<()> {
        Ok(())
    }
    /// Prepares TX queue `q` with `nb_desc` descriptors (primary).
    fn tx_queue_setup(&self, _q: u16, _nb_desc: u32) -> Result<()> {
        Ok(())
    }
    /// Starts the device; software devices have nothing to do.
    fn start(&self) -> Result<()> {
        Ok(())
    }
    /// Stops the device and takes back the mbufs its rings hold; no burst is under way.
    fn stop(&self) -> Result<()> {
        Ok(())
    }
    /// Releases the device.
    fn close(&self) -> Result<()> {
        Ok(())
    }
    /// Reads the link from the device (the caller stores it in the record).
    fn link_update(&self) -> Link;
    /// Turns promiscuous mode on or off in the device.
    fn set_promiscuous(&self, _on: bool) -> Result<()> {
        Ok(())
    }
    /// Turns all-multicast mode on or off in the device.
    fn set_allmulticast(&self, _on: bool) -> Result<()> {
        Ok(())
    }
    /// Sets the device's MAC address.
    fn set_mac(&self, _mac: MacAddr) -> Result<()> {
        Ok(())
    }
    /// Sets the device's MTU.
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
    /// Frames the device dropped as they arrived, for want of room in an RX queue (DPDK's
    /// `imissed`), for the whole group, since the last [`xstats_reset`](Self::xstats_reset)
    /// (or since the device's counters started).
    fn rx_missed(&self) -> u64 {
        0
    }
    /// This process's handle to RX queue `q` (after setup, in any process).
    fn rx_queue(&self, q: u16) -> Result<Box<dyn RxBurst>>;
    /// This process's handle to TX queue `q`.
    fn tx_queue(&self, q: u16) -> Result<Box<dyn TxBurst>>;
    /// How many mbufs queue `q` holds at this moment: given to the device for receiving, or
    /// sent and not yet freed. Read from the shared queue state, in any process.
    fn queue_mbufs(&self, _dir: Direction, _q: u16) -> u32 {
        0
    }
    /// Calls `f` with the address of each mbuf queue `q` names (as [`queue_mbufs`] counts
    /// them), read from the shared queue state; only while nobody polls `q`. A driver whose
    /// queues keep mbufs between bursts must have it: the mbufs' holds end there when the
    /// poller leaves or dies (ARCHITECTURE.md, "Holds").
    ///
    /// [`queue_mbufs`]: Self::queue_mbufs
    fn for_each_queue_mbuf(&self, _dir: Direction, _q: u16, _f: &mut dyn FnMut(usize)) {}
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

/// A port's record as its driver sees it: everything [`PortRecord`] shows, and what only
/// the port's driver may change: the link, the MAC address, the driver's own words, the
/// counts a TX queue keeps of what it took, RX allocation failures. Drivers get it in their
/// [`PortContext`]; applications see the record through [`Port::record`](super::Port::record),
/// read-only.
#[derive(Clone, Copy)]
pub struct DeviceRecord(&'static PortRecord);

impl std::ops::Deref for DeviceRecord {
    type Target = PortRecord;
    fn deref(&self) -> &PortRecord {
        self.0
    }
}

impl DeviceRecord {
    pub(crate) fn new(rec: &'static PortRecord) -> Self {
        DeviceRecord(rec)
    }
    /// Records the port's MAC address, once the device took it.
    pub fn set_mac(&self, m: MacAddr) {
        self.0.set_mac(m)
    }
    /// Records the link as read from the device.
    pub fn set_link(&self, l: Link) {
        self.0.set_link(l)
    }
    /// Word `i` (0..8) of the driver's data, shared by every process.
    pub fn drv_data(&self, i: usize) -> &'static AtomicU64 {
        self.0.drv_data(i)
    }
    /// TX queue `q`'s count of packets taken, for [`TakenCounter`].
    pub fn tx_taken(&self, q: u16) -> TakenCounter {
        self.0.tx_taken(q)
    }
    /// [`PortDriver::recover_queue`] for drivers that count with a [`TakenCounter`].
    pub fn recover_taken(&self, dir: Direction, q: u16) {
        self.0.recover_taken(dir, q)
    }
    /// Counts packets the driver could not receive for want of mbufs.
    pub fn count_rx_nombuf(&self, n: u64) {
        self.0.count_rx_nombuf(n)
    }
}
