//! Ports: records in shared memory that every process of a group sees, drivers looked up
//! by name in each process, and queue handles that record which process polls them.
//!
//! The primary probes ports (from `--vdev`), configures, starts and stops them; a
//! secondary attaches to the ports the primary created and polls the queues it takes.
//! Nothing in a record points at process memory: a port records its driver's *name*, and
//! each process asks its own registry for the driver (ARCHITECTURE.md, rule 2).

mod counters;
mod driver;
mod error;
mod ownership;
mod pci;
mod port;
mod port_config;
mod queue;
mod record;
mod registry;
mod stats;
mod telemetry;
#[cfg(test)]
mod testing;

pub use crate::capture::Direction;
pub use counters::{QueueCounters, TakenCounter};
pub use driver::{
    DevInfo, DeviceRecord, Driver, PortConf, PortContext, PortDriver, RxBurst, TxBurst, TxOffloads,
};
pub use error::{Error, Result};
pub use port::Port;
pub use queue::{QueuePoller, RxQueue, TxQueue};
pub use record::{Link, PortRecord, PortState};
pub use registry::{init, ports, probe_vdev, register_driver};
pub use stats::Stats;

pub(crate) use pci::pci_driver_for;
pub(crate) use registry::{attach, capture_slots, lock, probe_with, record, registry};

use std::time::Duration;

/// Most ports in a group, as DPDK's default `RTE_MAX_ETHPORTS`.
pub const MAX_PORTS: usize = 32;
/// Most RX (and TX) queues per port.
pub const MAX_QUEUES: usize = 16;
/// How many addresses `mac_addr_add` can give a port, and `set_mc_addr_list`.
pub const MAX_MAC_ADDRS: usize = 32;
/// Most multicast addresses a port filters.
pub const MAX_MC_ADDRS: usize = 32;
const PORTS_MEMZONE: &str = "ethdev_ports";
/// How long a stop waits for the pollers' bursts under way to end.
const BURST_WAIT: Duration = Duration::from_secs(1);
const NAME_LEN: usize = 64;
