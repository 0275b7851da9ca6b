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

pub mod pci;
pub mod user;
pub mod virtqueue;

use crate::irq::IrqWatch;
use eal::options::PciAddr;
use net::ethdev::{
    DevInfo, Direction, Driver, Error, PortConf, PortContext, PortDriver, PortRecord, Result,
    RxBurst, TxBurst,
};
use net::{mbuf, Link, MacAddr, Mbuf, PktmbufPool, PortState};
use std::os::fd::OwnedFd;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use virtqueue::{Notifier, UsedChains, VirtQueue, VqShared};

/// Feature bits (virtio 1.x, section 5.1.3 and 6).
pub mod feature {
    pub const MTU: u64 = 1 << 3;
    pub const MAC: u64 = 1 << 5;
    pub const MRG_RXBUF: u64 = 1 << 15;
    pub const STATUS: u64 = 1 << 16;
    pub const CTRL_VQ: u64 = 1 << 17;
    pub const CTRL_RX: u64 = 1 << 18;
    pub const MQ: u64 = 1 << 22;
    pub const CTRL_MAC_ADDR: u64 = 1 << 23;
    pub const VERSION_1: u64 = 1 << 32;
    pub const ACCESS_PLATFORM: u64 = 1 << 33;
    pub const RSS: u64 = 1 << 60;
    pub const SPEED_DUPLEX: u64 = 1 << 63;
}

/// Device status bits.
pub mod status {
    pub const ACKNOWLEDGE: u8 = 1;
    pub const DRIVER: u8 = 2;
    pub const DRIVER_OK: u8 = 4;
    pub const FEATURES_OK: u8 = 8;
    pub const NEEDS_RESET: u8 = 0x40;
    pub const FAILED: u8 = 0x80;
}

/// What this driver can use; the device's offer is intersected with it.
pub const WANTED_FEATURES: u64 = feature::VERSION_1
    | feature::ACCESS_PLATFORM
    | feature::MTU
    | feature::MAC
    | feature::MRG_RXBUF
    | feature::STATUS
    | feature::CTRL_VQ
    | feature::CTRL_RX
    | feature::MQ
    | feature::CTRL_MAC_ADDR
    | feature::RSS
    | feature::SPEED_DUPLEX;

/// Size of `struct virtio_net_hdr_v1` (with `num_buffers`), before every frame.
pub const NET_HDR_LEN: u16 = 12;

// Device configuration (struct virtio_net_config) offsets.
const CFG_MAC: usize = 0;
const CFG_STATUS: usize = 6;
const CFG_MAX_PAIRS: usize = 8;
const CFG_MTU: usize = 10;
const CFG_SPEED: usize = 12;
const CFG_DUPLEX: usize = 16;
const CFG_RSS_MAX_KEY_SIZE: usize = 17;
const CFG_RSS_MAX_INDIRECTION_LEN: usize = 18;
const CFG_SUPPORTED_HASH_TYPES: usize = 20;
const NET_S_LINK_UP: u16 = 1;

// Control queue classes and commands (section 5.1.6.5).
const CTRL_RX: u8 = 0;
const CTRL_RX_PROMISC: u8 = 0;
const CTRL_RX_ALLMULTI: u8 = 1;
const CTRL_MAC: u8 = 1;
const CTRL_MAC_TABLE_SET: u8 = 0;
const CTRL_MAC_ADDR_SET: u8 = 1;
const CTRL_MQ: u8 = 4;
const CTRL_MQ_VQ_PAIRS_SET: u8 = 0;
const CTRL_MQ_RSS_CONFIG: u8 = 1;
/// Hash types (virtio 1.2, 5.1.6.4.3): IPv4/IPv6 addresses, with TCP and UDP ports.
const RSS_HASH_TYPES: u32 = 0x3f;
/// Entries of the indirection table we ask for (DPDK's default RETA size on virtio).
const RSS_RETA_LEN: u16 = 128;
const CTRL_OK: u8 = 0;

// Driver words of the port record.
const DW_FEATURES: usize = 0;
const DW_MAX_PAIRS: usize = 1;
const DW_PAIRS: usize = 2;
const DW_QUEUE_SIZE: usize = 3;

/// Refill the RX ring once this many descriptors are free.
const RX_FREE_THRESH: u16 = 32;

/// A virtio device's register interface, as one process sees it.
pub trait Transport: Send + Sync {
    /// The device, for messages (a PCI address or a socket path).
    fn describe(&self) -> String;
    /// The driver name ports of this transport report.
    fn driver_name(&self) -> &'static str {
        "net_virtio"
    }
    fn status(&self) -> u8;
    /// Writes the device status; fails when the transport cannot pass it on (vhost-user
    /// sets the backend up at DRIVER_OK).
    fn set_status(&self, s: u8) -> Result<(), String>;
    /// Resets the device and waits until it is done.
    fn reset(&self);
    fn device_features(&self) -> u64;
    fn set_driver_features(&self, f: u64);
    /// Reads the device-specific configuration at `off`.
    fn read_config(&self, off: usize, buf: &mut [u8]);
    fn num_queues(&self) -> u16;
    fn max_queue_size(&self, q: u16) -> u16;
    /// Tells the device where queue `q` is and enables it.
    fn enable_queue(&self, q: u16, vq: &'static VqShared) -> Result<(), String>;
    /// How this process notifies queue `q`.
    fn notifier(&self, q: u16) -> Notifier;
    /// An eventfd signalled on configuration changes (link), when the transport has one.
    fn config_interrupt(&self) -> Option<OwnedFd> {
        None
    }
    /// Acknowledges an interrupt (reads the ISR, re-arms a level interrupt).
    fn ack_interrupt(&self) {}
    /// Stops interrupts set up by `config_interrupt`.
    fn disable_interrupts(&self) {}
    /// Releases what the transport holds outside the device (port close).
    fn close(&self) {}
    /// Whether the transport answers control commands itself instead of a control queue
    /// (vhost-user backends have none).
    fn emulates_control(&self) -> bool {
        false
    }
    /// Carries out a control command when `emulates_control`.
    fn control(&self, _class: u8, _cmd: u8, _data: &[u8]) -> Result<(), String> {
        Err("this device has no control queue".into())
    }
}

fn cfg_u16(t: &dyn Transport, off: usize) -> u16 {
    let mut b = [0u8; 2];
    t.read_config(off, &mut b);
    u16::from_le_bytes(b)
}

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

/// The data of CTRL_MAC_TABLE_SET: the unicast table, then the multicast table, each an
/// le32 count followed by the addresses (virtio 1.2, 5.1.6.5.2).
fn mac_table(addrs: &[MacAddr]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + 6 * addrs.len());
    for multicast in [false, true] {
        let table: Vec<&MacAddr> = addrs
            .iter()
            .filter(|m| m.is_multicast() == multicast)
            .collect();
        out.extend_from_slice(&(table.len() as u32).to_le_bytes());
        for m in table {
            out.extend_from_slice(&m.0);
        }
    }
    out
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
        let t = pci::VirtioPci::open(addr).map_err(|e| Error::Driver(ctx.name.into(), e))?;
        t.device()
            .enable_bus_master()
            .map_err(|e| Error::Driver(ctx.name.into(), e.to_string()))?;
        VirtioNet::probe(ctx, Arc::new(t))
    }
    fn attach(&self, ctx: &PortContext) -> Result<Box<dyn PortDriver>> {
        let addr = pci_addr(ctx)?;
        let t = pci::VirtioPci::open(addr).map_err(|e| Error::Driver(ctx.name.into(), e))?;
        Ok(Box::new(VirtioNet::new(ctx, Arc::new(t))))
    }
}

fn pci_addr(ctx: &PortContext) -> Result<PciAddr> {
    ctx.name
        .parse()
        .map_err(|e: String| Error::Driver(ctx.name.into(), e))
}

/// One virtio-net port in this process.
pub struct VirtioNet {
    t: Arc<dyn Transport>,
    name: String,
    port_id: u16,
    rec: &'static PortRecord,
    /// The control queue (primary only).
    ctrl: Mutex<Option<VirtQueue>>,
    /// The configuration-interrupt thread (primary, while started).
    irq: IrqWatch,
}

impl VirtioNet {
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

    fn err(&self, what: impl Into<String>) -> Error {
        Error::Driver(self.name.clone(), what.into())
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
        for q in 0..pairs {
            let zone = rx_zone(self.port_id, q);
            let sh = match virtqueue::lookup(&zone) {
                Ok(sh) => sh,
                // An RX queue nobody set up (beyond the RX queues): a small, empty ring.
                Err(_) if q >= rxqs => virtqueue::create(&zone, self.queue_size(2 * q, 64)?)?,
                Err(e) => return Err(e.into()),
            };
            let mut vq = VirtQueue::new(sh, t.notifier(2 * q));
            vq.reset();
            if q < rxqs {
                let pool = self
                    .rec
                    .rx_pool(q)
                    .ok_or_else(|| self.err(format!("RX queue {q} has no pool")))?;
                VirtioRx::new(vq, pool, self.port_id, self.rec, f).refill();
            }
            t.enable_queue(2 * q, sh).map_err(|e| self.err(e))?;
            let sh = virtqueue::lookup(&tx_zone(self.port_id, q))?;
            VirtQueue::new(sh, t.notifier(2 * q + 1)).reset();
            t.enable_queue(2 * q + 1, sh).map_err(|e| self.err(e))?;
        }
        if f & feature::CTRL_VQ != 0 && !t.emulates_control() {
            let ci = self.ctrl_index();
            let size = self.queue_size(ci, 64)?;
            let sh = virtqueue::create(&ctrl_zone(self.port_id), size)?;
            let mut vq = VirtQueue::new(sh, t.notifier(ci));
            vq.reset();
            t.enable_queue(ci, sh).map_err(|e| self.err(e))?;
            *self.ctrl.lock().unwrap_or_else(|p| p.into_inner()) = Some(vq);
        }
        t.set_status(
            status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK | status::DRIVER_OK,
        )
        .map_err(|e| self.err(e))?;
        // Tell the device about the RX buffers placed before DRIVER_OK.
        for q in 0..rxqs {
            t.notifier(2 * q).notify();
        }
        if f & feature::RSS != 0 && (rxqs < pairs || (pairs > 1 && self.rec.rss_enabled())) {
            let config = self.rss_config(rxqs, pairs)?;
            self.ctrl_cmd(CTRL_MQ, CTRL_MQ_RSS_CONFIG, &config)?;
        } else if f & feature::MQ != 0 && self.max_pairs() > 1 {
            self.ctrl_cmd(CTRL_MQ, CTRL_MQ_VQ_PAIRS_SET, &pairs.to_le_bytes())?;
        }
        if f & feature::CTRL_RX != 0 {
            self.ctrl_cmd(CTRL_RX, CTRL_RX_PROMISC, &[self.rec.promiscuous() as u8])?;
            self.ctrl_cmd(CTRL_RX, CTRL_RX_ALLMULTI, &[self.rec.allmulticast() as u8])?;
            let filters = self.rec.mac_filters();
            if !filters.is_empty() {
                self.ctrl_cmd(CTRL_MAC, CTRL_MAC_TABLE_SET, &mac_table(&filters))?;
            }
        }
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

    /// `struct virtio_net_rss_config` spreading flows over `rxqs` RX queues of `pairs` as a
    /// NIC does: the Toeplitz hash with DPDK's default key, indirection entry i to queue
    /// i % rxqs.
    fn rss_config(&self, rxqs: u16, pairs: u16) -> Result<Vec<u8>> {
        let t = self.t.as_ref();
        let mut b = [0u8; 4];
        t.read_config(CFG_SUPPORTED_HASH_TYPES, &mut b);
        let hash_types = u32::from_le_bytes(b) & RSS_HASH_TYPES;
        let max_reta = cfg_u16(t, CFG_RSS_MAX_INDIRECTION_LEN);
        let mut k = [0u8; 1];
        t.read_config(CFG_RSS_MAX_KEY_SIZE, &mut k);
        let key = &net::rss::DEFAULT_KEY[..net::rss::DEFAULT_KEY.len().min(k[0] as usize)];
        if hash_types == 0 || max_reta == 0 || key.is_empty() {
            return Err(self.err(format!(
                "the device offers RSS but no usable hash ({hash_types:#x}), table ({max_reta}) or key ({} bytes)",
                k[0]
            )));
        }
        // The table length must be a power of two.
        let len = RSS_RETA_LEN.min(1 << (15 - max_reta.leading_zeros()));
        let mut c = Vec::with_capacity(12 + 2 * len as usize + key.len());
        c.extend_from_slice(&hash_types.to_le_bytes());
        c.extend_from_slice(&(len - 1).to_le_bytes());
        c.extend_from_slice(&0u16.to_le_bytes()); // unclassified frames to queue 0
        for i in 0..len {
            c.extend_from_slice(&(i % rxqs).to_le_bytes()); // a receive queue number
        }
        c.extend_from_slice(&pairs.to_le_bytes()); // max_tx_vq
        c.push(key.len() as u8);
        c.extend_from_slice(key);
        log::info!(
            "{}: RSS over {rxqs} queues (hash types {hash_types:#x}, {len} entries, {}-byte key)",
            t.describe(),
            key.len()
        );
        Ok(c)
    }

    /// Sends one control command and waits for the device's answer (primary).
    fn ctrl_cmd(&self, class: u8, cmd: u8, data: &[u8]) -> Result<()> {
        if self.t.emulates_control() {
            return self.t.control(class, cmd, data).map_err(|e| self.err(e));
        }
        let mut g = self.ctrl.lock().unwrap_or_else(|p| p.into_inner());
        let Some(cq) = g.as_mut() else {
            return Err(self
                .err("the device has no control queue (feature CTRL_VQ): it cannot change this"));
        };
        let eal = eal::eal()?;
        let zone = ctrl_buf_zone(self.port_id);
        let mz = eal.memzone_reuse_or_reserve(&zone, 4096, 64, eal::MemzoneFlags::IOVA_CONTIG)?;
        if data.len() > 2048 {
            return Err(self.err("control command too long"));
        }
        let base = mz.addr();
        let buf = mz.as_ptr::<u8>();
        // SAFETY: the zone is 4 KiB and only the primary's control path (serialised by
        // the lock held) uses it: header at 0, data at 64, ack at 3072.
        unsafe {
            *buf = class;
            *buf.add(1) = cmd;
            std::ptr::copy_nonoverlapping(data.as_ptr(), buf.add(64), data.len());
            std::ptr::write_volatile(buf.add(3072), 0xff);
        }
        let iova = |off: u64| eal.config().virt_to_iova(base + off);
        cq.add(
            &[
                (iova(0), 2, false),
                (iova(64), data.len() as u32, false),
                (iova(3072), 1, true),
            ],
            0,
        )
        .ok_or_else(|| self.err("the control queue is full"))?;
        cq.publish();
        let deadline = Instant::now() + Duration::from_secs(2);
        while cq.used_count() == 0 {
            if Instant::now() > deadline {
                return Err(self.err(format!(
                    "no answer to control command {class}.{cmd} within 2 s"
                )));
            }
            std::thread::sleep(Duration::from_micros(50));
        }
        cq.pop_used();
        // SAFETY: the ack byte written by the device, inside the zone.
        let ack = unsafe { std::ptr::read_volatile(buf.add(3072)) };
        if ack != CTRL_OK {
            return Err(self.err(format!(
                "the device refused control command {class}.{cmd} (answer {ack})"
            )));
        }
        Ok(())
    }

    /// Gives back the buffers every queue still holds (after a reset).
    fn drain_queues(&self) {
        for q in 0..self.pairs() {
            for zone in [rx_zone(self.port_id, q), tx_zone(self.port_id, q)] {
                if let Ok(sh) = virtqueue::lookup(&zone) {
                    let mut vq = VirtQueue::new(sh, Notifier::EventFd(-1));
                    for cookie in vq.drain() {
                        if cookie != 0 {
                            // SAFETY: cookies of RX/TX chains are mbufs the queue owned.
                            drop(unsafe { Mbuf::from_addr(cookie as usize) });
                        }
                    }
                }
            }
        }
    }
}

/// The link as the device reports it.
fn read_link(t: &dyn Transport, rec: &PortRecord) -> Link {
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
        if self.rec.state() != PortState::Started {
            return Ok(()); // applied at start
        }
        self.ctrl_cmd(CTRL_RX, CTRL_RX_PROMISC, &[on as u8])
    }

    fn set_allmulticast(&self, on: bool) -> Result<()> {
        if self.rec.state() != PortState::Started {
            return Ok(());
        }
        self.ctrl_cmd(CTRL_RX, CTRL_RX_ALLMULTI, &[on as u8])
    }

    fn set_mac(&self, mac: MacAddr) -> Result<()> {
        if self.features() & feature::CTRL_MAC_ADDR == 0 {
            return Err(self.err("the device cannot change its MAC (no CTRL_MAC_ADDR)"));
        }
        if self.rec.state() != PortState::Started {
            return Err(self.err("start the port before changing its MAC"));
        }
        self.ctrl_cmd(CTRL_MAC, CTRL_MAC_ADDR_SET, &mac.0)
    }

    fn set_mac_filters(&self, addrs: &[MacAddr]) -> Result<()> {
        if self.features() & feature::CTRL_RX == 0 {
            return Err(self.err("the device has no MAC filter table (no CTRL_RX)"));
        }
        if self.rec.state() != PortState::Started {
            return Ok(()); // applied at start
        }
        self.ctrl_cmd(CTRL_MAC, CTRL_MAC_TABLE_SET, &mac_table(addrs))
    }

    fn xstats(&self) -> Vec<(String, u64)> {
        vec![
            ("negotiated_features".into(), self.features()),
            ("queue_pairs".into(), self.pairs() as u64),
            ("device_status".into(), self.t.status() as u64),
        ]
    }

    fn rx_queue(&self, q: u16) -> Result<Box<dyn RxBurst>> {
        let pool = self
            .rec
            .rx_pool(q)
            .ok_or_else(|| self.err(format!("RX queue {q} has no pool")))?;
        let sh = virtqueue::lookup(&rx_zone(self.port_id, q))?;
        let vq = VirtQueue::new(sh, self.t.notifier(2 * q));
        Ok(Box::new(VirtioRx::new(
            vq,
            pool,
            self.port_id,
            self.rec,
            self.features(),
        )))
    }

    fn queue_mbufs(&self, dir: Direction, q: u16) -> u32 {
        let zone = match dir {
            Direction::Rx => rx_zone(self.port_id, q),
            Direction::Tx => tx_zone(self.port_id, q),
        };
        virtqueue::lookup(&zone).map_or(0, |sh| sh.in_flight() as u32)
    }

    fn recover_queue(&self, dir: Direction, q: u16) {
        if dir == Direction::Rx {
            return;
        }
        let Ok(sh) = virtqueue::lookup(&tx_zone(self.port_id, q)) else {
            return;
        };
        let mut vq = VirtQueue::new(sh, self.t.notifier(2 * q + 1));
        match VirtioTx::forget_freed(&mut vq) {
            0 => {}
            n => log::warn!(
                "{}: TX queue {q}: forgot {n} sent mbufs its dead poller had freed",
                self.rec.name()
            ),
        }
    }

    fn tx_taken_since(&self, q: u16, mark: u32) -> Option<u32> {
        let sh = virtqueue::lookup(&tx_zone(self.port_id, q)).ok()?;
        Some(sh.taken().wrapping_sub(mark as u16) as u32)
    }

    fn tx_queue(&self, q: u16) -> Result<Box<dyn TxBurst>> {
        let sh = virtqueue::lookup(&tx_zone(self.port_id, q))?;
        let vq = VirtQueue::new(sh, self.t.notifier(2 * q + 1));
        Ok(Box::new(VirtioTx {
            vq,
            done: Vec::with_capacity(sh.size() as usize),
        }))
    }
}

/// An RX queue: each descriptor is one buffer; the header sits in the mbuf's headroom.
struct VirtioRx {
    vq: VirtQueue,
    pool: PktmbufPool,
    port_id: u16,
    rec: &'static PortRecord,
    mergeable: bool,
    fresh: Vec<Mbuf>,
}

impl VirtioRx {
    fn new(
        vq: VirtQueue,
        pool: PktmbufPool,
        port_id: u16,
        rec: &'static PortRecord,
        features: u64,
    ) -> VirtioRx {
        VirtioRx {
            fresh: Vec::with_capacity(vq.num_free().max(64) as usize + 64),
            vq,
            pool,
            port_id,
            rec,
            mergeable: features & feature::MRG_RXBUF != 0,
        }
    }

    /// Gives the device fresh buffers for every free descriptor.
    #[inline]
    fn refill(&mut self) {
        let n = self.vq.num_free() as usize;
        if n == 0 {
            return;
        }
        if !self.pool.alloc_bulk(&mut self.fresh, n) {
            self.rec.count_rx_nombuf(n as u64);
            return;
        }
        for m in self.fresh.drain(..) {
            let hdr = NET_HDR_LEN as u64;
            let bufs = [(m.data_iova() - hdr, m.tailroom() as u32 + hdr as u32, true)];
            // The descriptor now owns the buffer; it comes back as the used entry's cookie.
            let cookie = m.into_addr() as u64;
            if self.vq.add(&bufs, cookie).is_none() {
                // SAFETY: the buffer was not queued; take ownership back to free it.
                drop(unsafe { Mbuf::from_addr(cookie as usize) });
            }
        }
        self.vq.publish();
    }

    /// Takes one used buffer as a segment of `len` bytes (header included in the first).
    #[inline]
    fn take(&mut self, skip_hdr: bool) -> (Mbuf, u16) {
        let (cookie, len) = self.vq.pop_used();
        // SAFETY: the cookie of an RX descriptor is the mbuf queued with it.
        let mut m = unsafe { Mbuf::from_addr(cookie as usize) };
        let mut num_buffers = 1;
        let data = if skip_hdr {
            if self.mergeable {
                let hdr = m.data().as_ptr().wrapping_sub(NET_HDR_LEN as usize);
                // SAFETY: the header is the 12 bytes before the data, inside the headroom
                // (checked at queue set-up); num_buffers is its last field.
                num_buffers = unsafe { std::ptr::read_unaligned(hdr.add(10) as *const u16) };
            }
            len.saturating_sub(NET_HDR_LEN as u32)
        } else {
            len
        };
        let room = m.tailroom() as u32;
        m.append(data.min(room) as u16);
        (m, num_buffers.max(1))
    }
}

impl RxBurst for VirtioRx {
    #[inline]
    fn rx_burst(&mut self, out: &mut Vec<Mbuf>, max: usize) -> usize {
        let mut avail = self.vq.used_count() as usize;
        let mut n = 0;
        while n < max && avail > 0 {
            let (mut m, bufs) = self.take(true);
            avail -= 1;
            // A frame larger than one buffer continues in the next used entries.
            for _ in 1..bufs {
                if avail == 0 {
                    break;
                }
                let (seg, _) = self.take(false);
                avail -= 1;
                m.chain(seg);
            }
            m.set_port(self.port_id);
            out.push(m);
            n += 1;
        }
        if self.vq.num_free() >= RX_FREE_THRESH {
            self.refill();
        }
        n
    }
}

/// A TX queue: one chain per packet, the header prepended in the headroom when the
/// buffer is ours alone, else in the queue's header slot.
struct VirtioTx {
    vq: VirtQueue,
    done: Vec<Mbuf>,
}

impl VirtioTx {
    /// Frees what the device has sent, a batch at a time, each back in the pool before the
    /// queue forgets it (as the Intel TX ring's clean; `forget_freed` repairs a poller
    /// killed in between).
    #[inline]
    fn reclaim(&mut self) {
        let mut n = self.vq.used_count();
        while n > 0 {
            let batch = n.min(mbuf::FREE_BATCH as u16);
            let mut chains = UsedChains::default();
            for k in 0..batch {
                let (head, cookie, _) = self.vq.peek_used(k);
                self.vq.link_used(&mut chains, head);
                // SAFETY: the cookie of a TX chain is the mbuf sent with it.
                self.done.push(unsafe { Mbuf::from_addr(cookie as usize) });
            }
            let vq = &mut self.vq;
            mbuf::free_then_forget(&mut self.done, batch as usize, || vq.take_used(chains));
            n -= batch;
        }
    }

    /// After the queue's poller died inside a reclaim: takes the used entries of the mbufs
    /// it had already put back in its lcore's cache and ends their pin, before the primary
    /// empties that cache. Returns how many.
    fn forget_freed(vq: &mut VirtQueue) -> usize {
        let n = vq.used_count().min(mbuf::FREE_BATCH as u16);
        let oldest: Vec<usize> = (0..n).map(|k| vq.peek_used(k).1 as usize).collect();
        // SAFETY: the cookies of used TX entries are the mbufs sent with them.
        let Some((n, pin)) = (unsafe { mbuf::dead_pinned_prefix(&oldest) }) else {
            return 0;
        };
        let mut chains = UsedChains::default();
        for k in 0..n as u16 {
            let head = vq.peek_used(k).0;
            vq.link_used(&mut chains, head);
        }
        vq.take_used(chains);
        pin.unpin();
        n
    }
}

impl TxBurst for VirtioTx {
    #[inline]
    fn tx_burst(&mut self, pkts: &mut Vec<Mbuf>) -> usize {
        self.reclaim();
        let mut free = self.vq.num_free() as usize;
        let mut fit = 0;
        for m in pkts.iter() {
            let push = m.refcnt() == 1 && m.headroom() >= NET_HDR_LEN;
            let need = m.nb_segs() as usize + usize::from(!push);
            if need > free {
                break;
            }
            free -= need;
            fit += 1;
        }
        let mut bufs: [(u64, u32, bool); 8] = [(0, 0, false); 8];
        for mut m in pkts.drain(..fit) {
            let push = m.refcnt() == 1 && m.headroom() >= NET_HDR_LEN;
            let mut k = 0;
            if push {
                if let Some(h) = m.prepend(NET_HDR_LEN) {
                    h.fill(0);
                }
            } else {
                // The next free descriptor becomes the head: its slot holds a zero header.
                let slot = self.vq.next_free();
                bufs[0] = (self.vq.hdr_slot_iova(slot), NET_HDR_LEN as u32, false);
                k = 1;
            }
            let mut chain_ok = true;
            for seg in m.segment_iovas() {
                if k == bufs.len() {
                    chain_ok = false;
                    break;
                }
                bufs[k] = (seg.0, seg.1, false);
                k += 1;
            }
            if !chain_ok {
                log::warn!("virtio TX: dropping a packet of more than 7 segments");
                self.vq.count_dropped();
                continue;
            }
            let cookie = m.into_addr() as u64;
            if self.vq.add(&bufs[..k], cookie).is_none() {
                self.vq.count_dropped();
                // SAFETY: not queued: take the buffer back to free it.
                drop(unsafe { Mbuf::from_addr(cookie as usize) });
            }
        }
        self.vq.publish();
        fit
    }

    fn tx_mark(&self) -> Option<u32> {
        Some(self.vq.taken() as u32)
    }

    fn done_cleanup(&mut self) -> usize {
        self.reclaim();
        // Chains a poller killed before publishing them go out now; one killed before
        // notifying the device left it asleep: wake it.
        self.vq.publish();
        let held = self.vq.in_flight();
        if held > 0 {
            self.vq.kick();
        }
        held as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_table_lists_unicast_then_multicast_with_counts() {
        let uc = MacAddr([0x02, 0, 0, 0, 0, 1]);
        let mc = MacAddr([0x01, 0, 0x5e, 0, 0, 0xfb]);
        let t = mac_table(&[mc, uc]);
        let mut want = vec![1, 0, 0, 0];
        want.extend_from_slice(&uc.0);
        want.extend_from_slice(&[1, 0, 0, 0]);
        want.extend_from_slice(&mc.0);
        assert_eq!(t, want);
        assert_eq!(mac_table(&[]), vec![0; 8]);
    }
}
