//! The packet layer: mbufs, ports and queues (the ethdev layer), Ethernet helpers and RSS.
//!
//! Call [`init`] after `eal::init`, having registered the drivers this binary has
//! (`drivers::register_all()`).

#![warn(missing_docs)]

pub mod capture;
pub mod ethdev;
pub mod ether;
pub mod hotplug;
pub mod mbuf;
pub mod mbuf_ring;
pub mod rss;

pub use ethdev::{
    init, register_driver, Direction, Link, Port, PortConf, PortState, RxQueue, Stats, TxQueue,
};
pub use ether::MacAddr;
pub use mbuf::{Mbuf, PktmbufPool};
