//! `net_virtio`: the virtio-net PMD (virtio 1.x, modern devices only).
//!
//! The device logic (feature negotiation, queue pairs, the control queue, RX/TX bursts)
//! is written once against [`Transport`]; `pci` is the PCI transport over VFIO, and the
//! vhost-user transport reuses the same queues.
//!
//! Shared state: the queues live in memzones named after the port id
//! (`virtio<port>_rx<q>`, `virtio<port>_tx<q>`, `virtio<port>_ctrl`), and the negotiated
//! features and queue counts in the port record's driver words, so a secondary attaches
//! by mapping the BARs (its own addresses) and looking the queues up.
//!
//! Files:
//! - `mod.rs`: the driver's registration and probe, the port ([`VirtioNet`]: feature
//!   negotiation, start and stop, link) and its [`PortDriver`] glue;
//! - `defs.rs`: definitions from the virtio spec (feature and status bits, the net header,
//!   the device configuration, control classes and commands);
//! - `transport.rs`: the [`Transport`] trait the device logic is written against;
//! - `control.rs`: the control queue and its commands (receive modes, MAC, queue pairs,
//!   RSS);
//! - `rxtx.rs`: the data path (RX/TX bursts, refill, reclaim, the repair of a dead
//!   poller's TX queue, draining the queues after a reset);
//! - `virtqueue.rs`: the split virtqueue in shared memory;
//! - `pci.rs`: the PCI transport over VFIO;
//! - `user.rs`: `net_virtio_user`, the vhost-user transport.

mod control;
mod defs;
pub mod pci;
mod rxtx;
mod transport;
pub mod user;
pub mod virtqueue;

pub use defs::{feature, status, NET_HDR_LEN, WANTED_FEATURES};
pub use transport::Transport;

use crate::irq::IrqWatch;
use defs::{CFG_DUPLEX, CFG_MAC, CFG_MAX_PAIRS, CFG_MTU, CFG_SPEED, CFG_STATUS, NET_S_LINK_UP};
use eal::options::PciAddr;
use net::ethdev::{
    DevInfo, DeviceRecord, Direction, Driver, Error, PortConf, PortContext, PortDriver, Result,
    RxBurst, TxBurst,
};
use net::{Link, MacAddr, PktmbufPool, PortState};
use rxtx::VirtioRx;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use transport::cfg_u16;
use virtqueue::{Lie, RingKind, VirtQueue, VqShared};

// Driver words of the port record.
const DW_FEATURES: usize = 0;
const DW_MAX_PAIRS: usize = 1;
const DW_PAIRS: usize = 2;
const DW_QUEUE_SIZE: usize = 3;

fn rx_zone(port: u16, q: u16) -> String {
    format!("virtio{port}_rx{q}")
}
fn tx_zone(port: u16, q: u16) -> String {
    format!("virtio{port}_tx{q}")
}
fn ctrl_zone(port: u16) -> String {
    format!("virtio{port}_ctrl")
}
fn ctrl_buf_zone(port: u16) -> String {
    format!("virtio{port}_ctrlbuf")
}

/// The driver, registered as `net_virtio`; it probes PCI devices 1af4:1041 (modern
/// virtio-net) and 1af4:1000 (transitional).
pub struct VirtioNetDriver;

impl Driver for VirtioNetDriver {
    fn name(&self) -> &'static str {
        "net_virtio"
    }
    fn pci_ids(&self) -> &'static [(u16, u16)] {
        &[(0x1af4, 0x1041), (0x1af4, 0x1000)]
    }
    fn probe(&self, ctx: &PortContext) -> Result<Box<dyn PortDriver>> {
        crate::check_args(ctx.name, ctx.args, &[])?;
        let addr = pci_addr(ctx)?;
        let t = pci::VirtioPci::open(addr).map_err(|what| Error::device(ctx.name, what))?;
        t.device()
            .enable_bus_master()
            .map_err(|e| Error::device(ctx.name, e))?;
        VirtioNet::probe(ctx, Arc::new(t))
    }
    fn attach(&self, ctx: &PortContext) -> Result<Box<dyn PortDriver>> {
        let addr = pci_addr(ctx)?;
        let t = pci::VirtioPci::open(addr).map_err(|what| Error::device(ctx.name, what))?;
        Ok(Box::new(VirtioNet::new(ctx, Arc::new(t))))
    }
}

fn pci_addr(ctx: &PortContext) -> Result<PciAddr> {
    ctx.name.parse().map_err(|why: String| Error::BadArg {
        port: ctx.name.into(),
        why,
    })
}

/// One virtio-net port in this process.
pub struct VirtioNet {
    t: Arc<dyn Transport>,
    name: String,
    port_id: u16,
    rec: DeviceRecord,
    /// The control queue (primary only).
    ctrl: Mutex<Option<VirtQueue>>,
    /// The configuration-interrupt thread (primary, while started).
    irq: IrqWatch,
}

impl VirtioNet {
    /// The shared state of queue `q`.
    fn shared_queue(&self, dir: Direction, q: u16) -> eal::Result<&'static VqShared> {
        virtqueue::lookup(&match dir {
            Direction::Rx => rx_zone(self.port_id, q),
            Direction::Tx => tx_zone(self.port_id, q),
        })
    }

    fn new(ctx: &PortContext, t: Arc<dyn Transport>) -> VirtioNet {
        VirtioNet {
            t,
            name: ctx.name.into(),
            port_id: ctx.port_id,
            rec: ctx.record,
            ctrl: Mutex::new(None),
            irq: IrqWatch::default(),
        }
    }

    /// Resets the device, reads what it offers and its MAC (primary).
    pub fn probe(ctx: &PortContext, t: Arc<dyn Transport>) -> Result<Box<dyn PortDriver>> {
        let p = VirtioNet::new(ctx, t);
        let offered = p.t.device_features();
        if offered & feature::VERSION_1 == 0 {
            return Err(p.err(format!(
                "the device offers features {offered:#x} without VERSION_1: legacy devices are not supported (QEMU: disable-legacy=on)"
            )));
        }
        // Negotiate now: a device shows its extra queues (MQ) only once features are set.
        let f = p.negotiate()?;
        let max_pairs = if f & feature::MQ != 0 {
            cfg_u16(p.t.as_ref(), CFG_MAX_PAIRS).max(1)
        } else {
            1
        };
        let rec = p.rec;
        rec.drv_data(DW_FEATURES).store(f, Ordering::Relaxed);
        rec.drv_data(DW_MAX_PAIRS)
            .store(max_pairs as u64, Ordering::Relaxed);
        if f & feature::MAC != 0 {
            let mut mac = [0u8; 6];
            p.t.read_config(CFG_MAC, &mut mac);
            rec.set_mac(MacAddr(mac));
        }
        log::info!(
            "{}: virtio-net, features {offered:#x} offered, {f:#x} usable, {max_pairs} queue pair(s)",
            p.name
        );
        Ok(Box::new(p))
    }

    fn err(&self, what: impl std::fmt::Display) -> Error {
        Error::device(self.name.as_str(), what)
    }

    fn features(&self) -> u64 {
        self.rec.drv_data(DW_FEATURES).load(Ordering::Relaxed)
    }

    fn pairs(&self) -> u16 {
        self.rec.drv_data(DW_PAIRS).load(Ordering::Relaxed) as u16
    }

    fn max_pairs(&self) -> u16 {
        self.rec
            .drv_data(DW_MAX_PAIRS)
            .load(Ordering::Relaxed)
            .max(1) as u16
    }

    fn ctrl_index(&self) -> u16 {
        if self.features() & feature::MQ != 0 {
            2 * self.max_pairs()
        } else {
            2
        }
    }

    fn queue_size(&self, q: u16, nb_desc: u32) -> Result<u16> {
        let max = self.t.max_queue_size(q);
        if max == 0 {
            return Err(self.err(format!("the device has no queue {q}")));
        }
        // The device's size unless asked for less (a power of two).
        let want = (nb_desc.max(1).next_power_of_two()).min(max as u32) as u16;
        Ok(if want.is_power_of_two() { want } else { max })
    }

    /// Resets the device and agrees on features (up to FEATURES_OK); returns them.
    fn negotiate(&self) -> Result<u64> {
        let t = self.t.as_ref();
        t.reset();
        let set = |s: u8| t.set_status(s).map_err(|e| self.err(e));
        set(status::ACKNOWLEDGE | status::DRIVER)?;
        let f = t.device_features() & WANTED_FEATURES;
        t.set_driver_features(f);
        set(status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK)?;
        if t.status() & status::FEATURES_OK == 0 {
            set(status::FAILED)?;
            return Err(self.err(format!(
                "the device refused features {f:#x} (FEATURES_OK not kept)"
            )));
        }
        self.rec.drv_data(DW_FEATURES).store(f, Ordering::Relaxed);
        Ok(f)
    }

    /// Negotiates features, enables the queues, DRIVER_OK (primary).
    fn bring_up(&self) -> Result<()> {
        let t = self.t.as_ref();
        let f = self.negotiate()?;
        let pairs = self.pairs();
        // With fewer RX than TX queues (a TX queue per client, one RX queue), the pairs
        // beyond the RX queues get no buffers, and RSS keeps received frames off them.
        let rxqs = self.rec.nb_rx_queues().clamp(1, pairs);
        if rxqs < pairs && f & feature::RSS == 0 {
            return Err(self.err(format!(
                "{pairs} TX queues but {rxqs} RX queue(s): the device has no RSS to keep received frames off the pairs nobody polls; configure as many RX queues as TX queues"
            )));
        }
        let kind = RingKind::from_features(f);
        log::info!(
            "{}: {pairs} queue pair(s) on {}",
            self.name,
            kind.describe()
        );
        for q in 0..pairs {
            let zone = rx_zone(self.port_id, q);
            let sh = match virtqueue::lookup(&zone) {
                Ok(sh) => sh,
                // An RX queue nobody set up (beyond the RX queues): a small, empty ring.
                Err(_) if q >= rxqs => virtqueue::create(&zone, self.queue_size(2 * q, 64)?)?,
                Err(e) => return Err(e.into()),
            };
            let mut vq = VirtQueue::new(sh, t.notifier(2 * q));
            vq.reset(kind);
            if q < rxqs {
                let pool = self
                    .rec
                    .rx_pool(q)
                    .ok_or_else(|| self.err(format!("RX queue {q} has no pool")))?;
                VirtioRx::new(vq, pool, self.port_id, self.rec, f).refill();
            }
            t.enable_queue(2 * q, sh).map_err(|e| self.err(e))?;
            let sh = virtqueue::lookup(&tx_zone(self.port_id, q))?;
            VirtQueue::new(sh, t.notifier(2 * q + 1)).reset(kind);
            t.enable_queue(2 * q + 1, sh).map_err(|e| self.err(e))?;
        }
        self.enable_ctrl_queue(f)?;
        t.set_status(
            status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK | status::DRIVER_OK,
        )
        .map_err(|e| self.err(e))?;
        // Tell the device about the RX buffers placed before DRIVER_OK.
        for q in 0..rxqs {
            t.notifier(2 * q).notify();
        }
        self.apply_control_state(f, rxqs, pairs)?;
        self.start_interrupts();
        Ok(())
    }

    /// Listens for configuration-change interrupts (link changes) on a thread of the
    /// primary, which records the new link for every process.
    fn start_interrupts(&self) {
        let Some(fd) = self.t.config_interrupt() else {
            return;
        };
        let t = self.t.clone();
        let rec = self.rec;
        let name = self.name.clone();
        self.irq.start(fd, move || {
            t.ack_interrupt();
            let link = read_link(t.as_ref(), rec);
            log::info!("{name}: configuration interrupt, link {link}");
            rec.set_link(link);
        });
    }
}

/// The link as the device reports it.
fn read_link(t: &dyn Transport, rec: DeviceRecord) -> Link {
    let f = rec.drv_data(DW_FEATURES).load(Ordering::Relaxed);
    let st = t.status();
    if st & status::NEEDS_RESET != 0 {
        log::error!(
            "{}: the device needs a reset (status {st:#x}): stop and start the port",
            t.describe()
        );
        return Link::DOWN;
    }
    if rec.state() != PortState::Started || st & status::DRIVER_OK == 0 {
        return Link::DOWN;
    }
    let up = f & feature::STATUS == 0 || cfg_u16(t, CFG_STATUS) & NET_S_LINK_UP != 0;
    if !up {
        return Link::DOWN;
    }
    let (mut speed, mut full) = (10_000, true);
    if f & feature::SPEED_DUPLEX != 0 {
        let mut b = [0u8; 4];
        t.read_config(CFG_SPEED, &mut b);
        let s = u32::from_le_bytes(b);
        if s != 0 && s != u32::MAX {
            speed = s;
        }
        let mut d = [0u8; 1];
        t.read_config(CFG_DUPLEX, &mut d);
        full = d[0] != 0;
    }
    Link {
        up: true,
        full_duplex: full,
        speed_mbps: speed,
    }
}

impl PortDriver for VirtioNet {
    fn info(&self) -> DevInfo {
        let pairs = self.max_pairs();
        let mtu = if self.features() & feature::MTU != 0 {
            cfg_u16(self.t.as_ref(), CFG_MTU) as u32
        } else {
            9000
        };
        DevInfo {
            driver_name: self.t.driver_name(),
            max_rx_queues: pairs,
            max_tx_queues: pairs,
            min_mtu: 68,
            max_mtu: mtu,
            if_name: None,
            tx_offload_capa: Default::default(),
        }
    }

    fn configure(&self, nb_rxq: u16, nb_txq: u16, _conf: &PortConf) -> Result<()> {
        let pairs = nb_rxq.max(nb_txq).max(1);
        if pairs > self.max_pairs() {
            return Err(self.err(format!(
                "{pairs} queue pairs asked, the device has {} (QEMU: -device virtio-net-pci,mq=on with a backend of that many queues; virtio-user: queues=N)",
                self.max_pairs()
            )));
        }
        self.rec
            .drv_data(DW_PAIRS)
            .store(pairs as u64, Ordering::Relaxed);
        Ok(())
    }

    fn rx_queue_setup(&self, q: u16, nb_desc: u32, pool: &PktmbufPool) -> Result<()> {
        let probe = pool
            .alloc()
            .ok_or_else(|| self.err(format!("RX queue {q}: pool '{}' is empty", pool.name())))?;
        if probe.headroom() < NET_HDR_LEN || probe.tailroom() < 64 {
            return Err(self.err(format!(
                "RX queue {q}: buffers of pool '{}' need at least {NET_HDR_LEN} bytes of headroom and 64 of data room",
                pool.name()
            )));
        }
        drop(probe);
        let size = self.queue_size(2 * q, nb_desc)?;
        virtqueue::create(&rx_zone(self.port_id, q), size)?;
        self.rec
            .drv_data(DW_QUEUE_SIZE)
            .store(size as u64, Ordering::Relaxed);
        Ok(())
    }

    fn tx_queue_setup(&self, q: u16, nb_desc: u32) -> Result<()> {
        let size = self.queue_size(2 * q + 1, nb_desc)?;
        virtqueue::create(&tx_zone(self.port_id, q), size)?;
        Ok(())
    }

    fn start(&self) -> Result<()> {
        self.bring_up().inspect_err(|_| {
            self.t.reset();
            self.drain_queues();
        })
    }

    fn stop(&self) -> Result<()> {
        self.irq.stop();
        self.t.disable_interrupts();
        self.t.reset();
        *self.ctrl.lock().unwrap_or_else(|p| p.into_inner()) = None;
        self.drain_queues();
        Ok(())
    }

    fn close(&self) -> Result<()> {
        self.t.reset();
        self.t.close();
        Ok(())
    }

    fn link_update(&self) -> Link {
        read_link(self.t.as_ref(), self.rec)
    }

    fn set_promiscuous(&self, on: bool) -> Result<()> {
        self.ctrl_set_promiscuous(on)
    }

    fn set_allmulticast(&self, on: bool) -> Result<()> {
        self.ctrl_set_allmulticast(on)
    }

    fn set_mac(&self, mac: MacAddr) -> Result<()> {
        self.ctrl_set_mac(mac)
    }

    fn set_mac_filters(&self, addrs: &[MacAddr]) -> Result<()> {
        self.ctrl_set_mac_filters(addrs)
    }

    fn xstats(&self) -> Vec<(String, u64)> {
        let mut x = vec![
            ("negotiated_features".into(), self.features()),
            ("queue_pairs".into(), self.pairs() as u64),
            ("device_status".into(), self.t.status() as u64),
        ];
        // What the device lied about, summed over the port's queues (see `virtqueue::Lie`).
        for (dir, zone) in [("rx", rx_zone as fn(u16, u16) -> String), ("tx", tx_zone)] {
            let queues: Vec<_> = (0..self.pairs())
                .filter_map(|q| virtqueue::lookup(&zone(self.port_id, q)).ok())
                .collect();
            for lie in Lie::ALL {
                let n = queues.iter().map(|sh| sh.lies(lie)).sum();
                x.push((format!("{dir}_{}", lie.name()), n));
            }
        }
        x
    }

    fn rx_queue(&self, q: u16) -> Result<Box<dyn RxBurst>> {
        self.open_rx_queue(q)
    }

    fn queue_mbufs(&self, dir: Direction, q: u16) -> u32 {
        self.shared_queue(dir, q)
            .map_or(0, |sh| sh.in_flight() as u32)
    }

    fn for_each_queue_mbuf(&self, dir: Direction, q: u16, f: &mut dyn FnMut(usize)) {
        if let Ok(sh) = self.shared_queue(dir, q) {
            sh.in_flight_cookies().for_each(|c| f(c as usize));
        }
    }

    fn recover_queue(&self, dir: Direction, q: u16) {
        self.recover_dead_queue(dir, q)
    }

    fn tx_taken_since(&self, q: u16, mark: u32) -> Option<u32> {
        let sh = virtqueue::lookup(&tx_zone(self.port_id, q)).ok()?;
        Some(sh.taken().wrapping_sub(mark as u16) as u32)
    }

    fn tx_queue(&self, q: u16) -> Result<Box<dyn TxBurst>> {
        self.open_tx_queue(q)
    }
}
