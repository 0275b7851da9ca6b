//! A port as this process sees it: lookup, configuration and queue setup, and the
//! lifecycle (start, stop, close) that the primary drives.

use super::registry::{lock, registry};
use super::{
    DevInfo, Error, PortConf, PortDriver, PortRecord, PortState, Result, BURST_WAIT, MAX_QUEUES,
};
use crate::mbuf::PktmbufPool;
use crate::MacAddr;
use eal::{pid_alive, Role};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub(super) struct PortInner {
    pub(super) id: u16,
    pub(super) rec: &'static PortRecord,
    pub(super) drv: Box<dyn PortDriver>,
    pub(super) driver_name: &'static str,
}

/// A port, as this process sees it. Cheap to clone.
#[derive(Clone)]
pub struct Port {
    pub(super) inner: Arc<PortInner>,
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

    /// The port's id, the same in every process of the group.
    pub fn id(&self) -> u16 {
        self.inner.id
    }

    /// The port's name (`net_ring0`, a PCI address...).
    pub fn name(&self) -> String {
        self.inner.rec.name()
    }

    /// The port's record in shared memory.
    pub fn record(&self) -> &'static PortRecord {
        self.inner.rec
    }

    /// Where the port is in its life (configured, started...), as every process sees it.
    pub fn state(&self) -> PortState {
        self.inner.rec.state()
    }

    /// The port's MAC address.
    pub fn mac(&self) -> MacAddr {
        self.inner.rec.mac()
    }

    /// RX queues configured.
    pub fn nb_rx_queues(&self) -> u16 {
        self.inner.rec.nb_rx_queues()
    }

    /// TX queues configured.
    pub fn nb_tx_queues(&self) -> u16 {
        self.inner.rec.nb_tx_queues()
    }

    /// The port's MTU in bytes.
    pub fn mtu(&self) -> u32 {
        self.inner.rec.mtu.load(Ordering::Relaxed)
    }

    /// What the driver says about the device (queue and MTU limits...).
    pub fn info(&self) -> DevInfo {
        self.inner.drv.info()
    }

    pub(super) fn primary_only(&self, what: &'static str) -> Result<()> {
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
        self.check_offloads(&conf, &info)?;
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

    /// Refuses offloads the driver does not offer, as DPDK's `rte_eth_dev_configure`.
    fn check_offloads(&self, conf: &PortConf, info: &DevInfo) -> Result<()> {
        let unsupported = conf.tx_offloads - info.tx_offload_capa;
        if unsupported.is_empty() {
            return Ok(());
        }
        Err(Error::UnsupportedOffloads {
            port: self.id(),
            asked: unsupported,
            offered: info.tx_offload_capa,
        })
    }

    /// `check_queue` for a queue setup, which a started port refuses: setting up a queue
    /// frees what it held, and pollers of any process may be in it.
    fn check_queue_setup(&self, q: u16, rx: bool) -> Result<()> {
        if self.state() == PortState::Started {
            return Err(self.bad_state("setting up queues", "stop it first"));
        }
        self.check_queue(q, rx)
    }

    pub(super) fn check_queue(&self, q: u16, rx: bool) -> Result<()> {
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

    /// Starts the port (primary only): the device receives and sends, and every process's
    /// queues may be polled. Every configured queue must be set up first. Starting a started
    /// port does nothing.
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
                return Err(Error::NotSetUp {
                    port: self.name(),
                    dir: "RX",
                    queue: q,
                    call: "rx_queue_setup",
                });
            }
        }
        for q in 0..self.nb_tx_queues() {
            if r.tx_desc(q) == 0 {
                return Err(Error::NotSetUp {
                    port: self.name(),
                    dir: "TX",
                    queue: q,
                    call: "tx_queue_setup",
                });
            }
        }
        self.inner.drv.start()?;
        r.set_state(PortState::Started);
        r.set_link(self.inner.drv.link_update());
        Ok(())
    }

    /// Stops the port (primary only). New bursts in any process find the port stopped and
    /// return nothing; the call then waits (at most a second) for the bursts already under way
    /// in every process, then the driver stops the device and takes back the mbufs its rings
    /// held. A poller stuck inside a burst fails the stop ([`Error::StuckInBurst`]) and the
    /// port stays started; a poller that died inside one is not waited for. Queues keep their
    /// pollers: a stopped port may be started again.
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

    /// The driver's stable name (`net_ring`, `net_virtio`...).
    pub fn driver_name(&self) -> &'static str {
        self.inner.driver_name
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ethdev::{testing, TxOffloads};

    #[test]
    fn accessors_read_the_record_and_the_driver() {
        let rec = testing::configured(2, 3);
        rec.mtu.store(1500, Ordering::Relaxed);
        let (port, _) = testing::port(rec);
        assert_eq!(port.id(), 7);
        assert!(std::ptr::eq(port.record(), rec));
        assert_eq!(port.state(), PortState::Configured);
        assert_eq!((port.nb_rx_queues(), port.nb_tx_queues()), (2, 3));
        assert_eq!(port.mtu(), 1500);
        assert_eq!(port.info().max_mtu, 9000);
        assert_eq!(port.driver_name(), "net_fake");
    }

    #[test]
    fn queues_exist_once_configured_and_below_the_count() {
        let rec = testing::configured(2, 1);
        let (port, _) = testing::port(rec);
        assert!(port.check_queue(1, true).is_ok());
        assert!(port.check_queue(0, false).is_ok());
        match port.check_queue(2, true) {
            Err(Error::NoSuchQueue {
                port: 7,
                what: "RX",
                queue: 2,
                count: 2,
            }) => {}
            r => panic!("{r:?}"),
        }
        match port.check_queue(1, false) {
            Err(Error::NoSuchQueue {
                what: "TX",
                count: 1,
                ..
            }) => {}
            r => panic!("{r:?}"),
        }
        rec.set_state(PortState::Attached);
        match port.check_queue(0, true) {
            Err(Error::BadState {
                state: "not configured",
                ..
            }) => {}
            r => panic!("{r:?}"),
        }
    }

    #[test]
    fn configure_refuses_tx_offloads_the_driver_does_not_offer() {
        let (port, _) = testing::port(testing::configured(1, 1));
        let mut info = port.info();
        let fast = PortConf {
            tx_offloads: TxOffloads::MBUF_FAST_FREE,
            ..PortConf::default()
        };
        match port.check_offloads(&fast, &info) {
            Err(Error::UnsupportedOffloads {
                port: 7,
                asked,
                offered,
            }) if asked == TxOffloads::MBUF_FAST_FREE && offered.is_empty() => {}
            r => panic!("{r:?}"),
        }
        assert!(port.check_offloads(&PortConf::default(), &info).is_ok());
        info.tx_offload_capa = TxOffloads::MBUF_FAST_FREE;
        assert!(port.check_offloads(&fast, &info).is_ok());
    }

    #[test]
    fn a_started_port_refuses_queue_setup() {
        let rec = testing::configured(1, 1);
        let (port, _) = testing::port(rec);
        assert!(port.check_queue_setup(0, true).is_ok());
        rec.set_state(PortState::Started);
        match port.check_queue_setup(0, false) {
            Err(Error::BadState {
                state: "started", ..
            }) => {}
            r => panic!("{r:?}"),
        }
        rec.set_state(PortState::Stopped);
        assert!(port.check_queue_setup(0, false).is_ok());
    }
}
