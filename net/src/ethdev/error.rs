//! The port layer's errors: each says what to do.

use super::{BURST_WAIT, MAX_PORTS};
use std::time::Duration;

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
