//! The port layer's errors: each says what to do.

use super::{BURST_WAIT, MAX_PORTS};
use std::time::Duration;

/// Errors of the port layer; each says what to do.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The EAL failed.
    #[error(transparent)]
    Eal(#[from] eal::Error),
    /// No driver of this binary takes the device: its name, then the drivers known.
    #[error("no driver for virtual device '{0}': known drivers are {1}")]
    UnknownDriver(String, String),
    /// A device argument (`--vdev`, `-a` devargs) was refused.
    #[error("port '{port}': {why}")]
    BadArg {
        /// The port.
        port: String,
        /// Why.
        why: String,
    },
    /// The device, or the system under its driver, refused or failed.
    #[error("port '{port}': {what}")]
    Device {
        /// The port.
        port: String,
        /// What went wrong.
        what: String,
    },
    /// A queue the port was configured with has not been set up.
    #[error("port '{port}': {dir} queue {queue} is not set up: call {call} first")]
    NotSetUp {
        /// The port.
        port: String,
        /// RX or TX.
        dir: &'static str,
        /// The queue.
        queue: u16,
        /// The call that sets it up.
        call: &'static str,
    },
    /// A MAC address (or list) the port cannot take.
    #[error("port '{port}': {why}")]
    BadAddress {
        /// The port.
        port: String,
        /// Why.
        why: String,
    },
    /// An MTU outside the device's limits.
    #[error("port '{port}': MTU {mtu} is outside {min}..={max}")]
    BadMtu {
        /// The port.
        port: String,
        /// The MTU asked for.
        mtu: u32,
        /// The smallest the device takes.
        min: u32,
        /// The largest allowed.
        max: u32,
    },
    /// A secondary did not get the device's descriptors from the primary.
    #[error("port '{port}': the primary refused to share the device: {why}")]
    NotShared {
        /// The port.
        port: String,
        /// Why.
        why: String,
    },
    /// An mbuf pool with fewer free mbufs than an RX ring needs.
    #[error(
        "mbuf pool '{pool}' has {free} free mbufs, the RX ring needs {need}: make the pool larger"
    )]
    PoolTooSmall {
        /// The pool.
        pool: String,
        /// Its free mbufs.
        free: u32,
        /// How many the ring needs.
        need: u32,
    },
    /// A hotplug request or reply was malformed or refused.
    #[error("hotplug: {0}")]
    Hotplug(String),
    /// No port by that name or id: what was asked, then how many ports the group has.
    #[error("no port {0}: this group has {1} port(s)")]
    NoSuchPort(String, usize),
    /// A port of that name exists.
    #[error("a port named '{0}' exists already")]
    PortExists(String),
    /// Every port slot is in use.
    #[error("all {MAX_PORTS} port slots are in use")]
    TooManyPorts,
    /// The call does not fit the port's state.
    #[error("port {port}: {what} is not possible while the port is {state}; {fix}")]
    BadState {
        /// The port.
        port: u16,
        /// What was asked or done.
        what: &'static str,
        /// The port's state.
        state: &'static str,
        /// What to do first.
        fix: &'static str,
    },
    /// A queue id beyond those configured.
    #[error("port {port}: {what} queue {queue} does not exist (the port has {count}): configure more queues or use a lower id")]
    NoSuchQueue {
        /// The port.
        port: u16,
        /// What was asked or done.
        what: &'static str,
        /// The queue.
        queue: u16,
        /// Queues configured.
        count: u16,
    },
    /// The call needs no poller, and a live process polls a queue.
    #[error("port {port}: cannot {what} it while process {pid} polls its {dir} queue {queue}: stop that poller first")]
    Polled {
        /// The port.
        port: u16,
        /// What was asked or done.
        what: &'static str,
        /// RX or TX.
        dir: &'static str,
        /// The queue.
        queue: u16,
        /// The process.
        pid: i32,
    },
    /// A stop found a live process inside a burst for too long.
    #[error("port {port}: process {pid} has been inside a burst on {dir} queue {queue} for over {BURST_WAIT:?}, so the port was not stopped: if that process is stuck, kill it and stop the port again")]
    StuckInBurst {
        /// The port.
        port: u16,
        /// RX or TX.
        dir: &'static str,
        /// The queue.
        queue: u16,
        /// The process.
        pid: i32,
    },
    /// Another process (or this one) polls the queue already.
    #[error("port {port}: {what} queue {queue} is already polled by process {pid}: a queue has one poller at a time")]
    QueueBusy {
        /// The port.
        port: u16,
        /// What was asked or done.
        what: &'static str,
        /// The queue.
        queue: u16,
        /// The process.
        pid: i32,
    },
    /// Only the primary may do this: the port, then what.
    #[error("port {0}: only the primary process can {1}")]
    PrimaryOnly(u16, &'static str),
    /// More queues than a port can have.
    #[error("port {port}: at most {max} {what} queues")]
    TooManyQueues {
        /// The port.
        port: u16,
        /// What was asked or done.
        what: &'static str,
        /// The largest allowed.
        max: usize,
    },
    /// TX offloads asked of a driver that does not offer them.
    #[error("port {port}: TX offloads {asked:?} asked, the driver offers {offered:?}: ask only for those (DevInfo::tx_offload_capa)")]
    UnsupportedOffloads {
        /// The port.
        port: u16,
        /// Those asked that the driver does not offer.
        asked: super::TxOffloads,
        /// Those it offers.
        offered: super::TxOffloads,
    },
    /// The link stayed down: the port, then how long it waited.
    #[error("port {0}: link still down after {1:?}")]
    LinkTimeout(u16, Duration),
    /// `net::init` has not run in this process.
    #[error("the port layer is not initialised: call net::init after eal::init")]
    NotInitialised,
    /// The primary of the group did not set up ports.
    #[error("the primary of this group has no ports (it did not call net::init): start it with net::init, as the apps here do")]
    NoPortTable,
    /// The primary's port table has another size than this binary's.
    #[error("the primary's port table is {theirs} bytes and this binary's {ours}: they were built from different sources (the group's version check passed, the port layout differs); start every process of a group from the same build")]
    PortTableLayout {
        /// Its size in the primary's build.
        theirs: u64,
        /// Its size in this binary.
        ours: u64,
    },
}

impl Error {
    /// [`Error::Device`] for port `port`: what the device or the system under it refused.
    pub fn device(port: impl Into<String>, what: impl std::fmt::Display) -> Self {
        Error::Device {
            port: port.into(),
            what: what.to_string(),
        }
    }
}

/// Port-layer results.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_limits_they_hit() {
        assert_eq!(
            Error::TooManyPorts.to_string(),
            format!("all {MAX_PORTS} port slots are in use")
        );
        let stuck = Error::StuckInBurst {
            port: 1,
            dir: "TX",
            queue: 2,
            pid: 42,
        };
        let msg = stuck.to_string();
        assert!(msg.contains(&format!("{BURST_WAIT:?}")), "{msg}");
        assert!(msg.starts_with("port 1: process 42 "), "{msg}");
        let busy = Error::QueueBusy {
            port: 0,
            what: "RX",
            queue: 3,
            pid: 7,
        };
        assert_eq!(
            busy.to_string(),
            "port 0: RX queue 3 is already polled by process 7: a queue has one poller at a time"
        );
    }
}
