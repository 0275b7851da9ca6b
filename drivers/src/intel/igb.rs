//! `net_igb`: the Intel 82576 (igb) PMD, on the advanced descriptor rings of `ring`.
//!
//! Tested against QEMU's `igb` device model (8086:10c9) in the guest, not against a real
//! 82576. Register names and bits are the datasheet's (82576 datasheet, section 8).
//!
//! Bring-up at start: global reset (CTRL.RST), interrupts masked, link set up through the
//! PHY (auto-negotiation restarted over MDIC), the RX queues (SRRCTL advanced one-buffer
//! descriptors, rings filled, RXDCTL.ENABLE polled) and TX queues (TXDCTL.ENABLE polled),
//! RSS (MRQC, RETA, key) with more than one RX queue, the MAC filters, then RCTL/TCTL.
//! Hardware counters are clear-on-read: every read adds them to totals in a memzone that
//! all processes share.

use super::ring::{self, IntelRx, IntelTx, RingZone};
use eal::options::PciAddr;
use eal::vfio::{Bar, VfioDevice};
use net::ethdev::{
    DevInfo, Driver, Error, PortConf, PortContext, PortDriver, PortRecord, Result, RxBurst, TxBurst,
};
use net::{Link, MacAddr, PktmbufPool, PortState};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

// General registers.
const CTRL: usize = 0x0000;
const CTRL_SLU: u32 = 1 << 6;
const CTRL_RST: u32 = 1 << 26;
const STATUS: usize = 0x0008;
const STATUS_FD: u32 = 1 << 0;
const STATUS_LU: u32 = 1 << 1;
const EECD: usize = 0x0010;
const EECD_AUTO_RD: u32 = 1 << 9;
const CTRL_EXT: usize = 0x0018;
const CTRL_EXT_DRV_LOAD: u32 = 1 << 28;
const MDIC: usize = 0x0020;
const MDIC_PHY_ADDR: u32 = 1 << 21;
const MDIC_OP_WRITE: u32 = 1 << 26;
const MDIC_READY: u32 = 1 << 28;
const MDIC_ERROR: u32 = 1 << 30;
const ICR: usize = 0x00c0;
const IMC: usize = 0x00d8;
const EIMC: usize = 0x1528;

// PHY control register (MII BMCR): auto-negotiation on and restarted, 1000 Mb/s full duplex.
const PHY_BMCR: u32 = 0;
const BMCR_RESTART_AN: u32 = 1 << 9;
const BMCR_FULL_DUPLEX: u32 = 1 << 8;
const BMCR_AN_ENABLE: u32 = 1 << 12;
const BMCR_SPEED_1000: u32 = 1 << 6;

// Receive and transmit control.
const RCTL: usize = 0x0100;
const RCTL_EN: u32 = 1 << 1;
const RCTL_UPE: u32 = 1 << 3;
const RCTL_MPE: u32 = 1 << 4;
const RCTL_BAM: u32 = 1 << 15;
const RCTL_SECRC: u32 = 1 << 26;
const TCTL: usize = 0x0400;
const TCTL_EN: u32 = 1 << 1;
const TCTL_PSP: u32 = 1 << 3;
const TCTL_CT: u32 = 0xf << 4;
const TCTL_COLD: u32 = 0x3f << 12;

// Filters and RSS.
const RXCSUM: usize = 0x5000;
const RXCSUM_PCSD: u32 = 1 << 13;
const MTA: usize = 0x5200;
const MTA_LEN: usize = 128;
const RAL0: usize = 0x5400;
const RAH_AV: u32 = 1 << 31;
/// Receive address registers: entry 0 is the port's own address.
const RAR_ENTRIES: usize = 16;
const MRQC: usize = 0x5818;
const MRQC_RSS: u32 = 0x2;
/// Hash over IPv4 and IPv6 addresses, with TCP and UDP ports.
const MRQC_RSS_FIELDS: u32 = (1 << 16) | (1 << 17) | (1 << 20) | (1 << 21) | (1 << 22) | (1 << 23);
const RETA: usize = 0x5c00;
const RETA_ENTRIES: usize = 128;
const RSSRK: usize = 0x5c80;

// Queue register blocks.
const RX_QUEUES: usize = 0xc000;
const TX_QUEUES: usize = 0xe000;
const QUEUE_STRIDE: usize = 0x40;
const DBAL: usize = 0x00;
const DBAH: usize = 0x04;
const DLEN: usize = 0x08;
const SRRCTL: usize = 0x0c;
const DH: usize = 0x10;
const DT: usize = 0x18;
const DCTL: usize = 0x28;
const DCTL_ENABLE: u32 = 1 << 25;
const SRRCTL_DESCTYPE_ADV_ONEBUF: u32 = 1 << 25;
const SRRCTL_DROP_EN: u32 = 1 << 31;
/// TXDCTL thresholds: prefetch 8, host 1, write-back 1 (write back every RS descriptor).
const TXDCTL_THRESH: u32 = 8 | (1 << 8) | (1 << 16);

/// Hardware counters kept as totals (clear-on-read registers), by name and offset; the
/// 64-bit octet counters are read low then high.
const HW_COUNTERS: [(&str, usize, bool); 13] = [
    ("rx_crc_errors", 0x4000, false),
    ("rx_missed_packets", 0x4010, false),
    ("rx_good_packets_hw", 0x4074, false),
    ("rx_broadcast_packets", 0x4078, false),
    ("rx_multicast_packets", 0x407c, false),
    ("tx_good_packets_hw", 0x4080, false),
    ("rx_good_octets_hw", 0x4088, true),
    ("tx_good_octets_hw", 0x4090, true),
    ("rx_no_buffer_count", 0x40a0, false),
    ("rx_undersize_packets", 0x40a4, false),
    ("rx_oversize_packets", 0x40ac, false),
    ("rx_total_packets", 0x40d0, false),
    ("tx_total_packets", 0x40d4, false),
];

// Driver words of the port record.
const DW_RXQ: usize = 0;
const DW_TXQ: usize = 1;

/// Queues of the 82576 usable with RSS.
const MAX_QUEUES: u16 = 8;

fn rx_reg(q: u16, r: usize) -> usize {
    RX_QUEUES + q as usize * QUEUE_STRIDE + r
}
fn tx_reg(q: u16, r: usize) -> usize {
    TX_QUEUES + q as usize * QUEUE_STRIDE + r
}
fn rx_zone(port: u16, q: u16) -> String {
    format!("igb{port}_rx{q}")
}
fn tx_zone(port: u16, q: u16) -> String {
    format!("igb{port}_tx{q}")
}
fn hw_zone(port: u16) -> String {
    format!("igb{port}_hw")
}

/// The bit of the 4096-bit multicast table an address hashes to (RCTL.MO = 0: bits 47:36).
fn mta_bit(m: MacAddr) -> usize {
    ((m.0[4] as usize >> 4) | (m.0[5] as usize) << 4) & 0xfff
}

/// The driver, registered as `net_igb`, for the 82576 (8086:10c9 and its siblings).
pub struct IgbDriver;

impl Driver for IgbDriver {
    fn name(&self) -> &'static str {
        "net_igb"
    }
    fn pci_ids(&self) -> &'static [(u16, u16)] {
        &[
            (0x8086, 0x10c9),
            (0x8086, 0x10e6),
            (0x8086, 0x10e7),
            (0x8086, 0x10e8),
        ]
    }
    fn probe(&self, ctx: &PortContext) -> Result<Box<dyn PortDriver>> {
        crate::check_args(ctx.name, ctx.args, &[])?;
        let p = Igb::open(ctx)?;
        p.dev
            .enable_bus_master()
            .map_err(|e| p.err(e.to_string()))?;
        p.reset()?;
        let mac = p.read_mac();
        ctx.record.set_mac(mac);
        eal::eal()?.memzone_reuse_or_reserve(
            &hw_zone(ctx.port_id),
            8 * HW_COUNTERS.len() as u64,
            64,
            eal::MemzoneFlags::empty(),
        )?;
        log::info!("{}: 82576 (igb), MAC {mac}", ctx.name);
        Ok(Box::new(p))
    }
    fn attach(&self, ctx: &PortContext) -> Result<Box<dyn PortDriver>> {
        Ok(Box::new(Igb::open(ctx)?))
    }
}

/// One 82576 port in this process.
pub struct Igb {
    dev: Arc<VfioDevice>,
    bar: Arc<Bar>,
    name: String,
    port_id: u16,
    rec: &'static PortRecord,
}

impl Igb {
    /// Opens the device and maps BAR 0 (primary or secondary).
    fn open(ctx: &PortContext) -> Result<Igb> {
        let err = |e: String| Error::Driver(ctx.name.into(), e);
        let addr: PciAddr = ctx.name.parse().map_err(err)?;
        let dev = VfioDevice::open(addr).map_err(|e| err(e.to_string()))?;
        let bar = dev.map_bar(0).map_err(|e| err(e.to_string()))?;
        Ok(Igb {
            dev,
            bar: Arc::new(bar),
            name: ctx.name.into(),
            port_id: ctx.port_id,
            rec: ctx.record,
        })
    }

    fn err(&self, what: impl Into<String>) -> Error {
        Error::Driver(self.name.clone(), what.into())
    }

    fn rd(&self, r: usize) -> u32 {
        self.bar.read32(r)
    }
    fn wr(&self, r: usize, v: u32) {
        self.bar.write32(r, v)
    }

    /// Waits up to `ms` milliseconds for `done` to hold.
    fn poll(&self, ms: u64, done: impl Fn(&Igb) -> bool) -> bool {
        let deadline = Instant::now() + Duration::from_millis(ms);
        loop {
            if done(self) {
                return true;
            }
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_micros(100));
        }
    }

    fn mask_interrupts(&self) {
        self.wr(IMC, u32::MAX);
        self.wr(EIMC, u32::MAX);
        let _ = self.rd(ICR);
    }

    /// Global reset, then the link brought up through the PHY (primary).
    fn reset(&self) -> Result<()> {
        self.mask_interrupts();
        self.wr(RCTL, 0);
        self.wr(TCTL, TCTL_PSP);
        self.wr(CTRL, self.rd(CTRL) | CTRL_RST);
        // The datasheet asks for a pause before the next access after a reset.
        std::thread::sleep(Duration::from_millis(1));
        if !self.poll(100, |p| p.rd(CTRL) & CTRL_RST == 0) {
            return Err(
                self.err("the device did not finish its reset (CTRL.RST still set after 100 ms)")
            );
        }
        self.mask_interrupts();
        // The EEPROM auto-read; QEMU's model does not show the bit, so only note its absence.
        if !self.poll(10, |p| p.rd(EECD) & EECD_AUTO_RD != 0) {
            log::debug!("{}: EECD.AUTO_RD not set after reset; going on", self.name);
        }
        self.wr(CTRL_EXT, self.rd(CTRL_EXT) | CTRL_EXT_DRV_LOAD);
        self.wr(CTRL, self.rd(CTRL) | CTRL_SLU);
        self.phy_write(
            PHY_BMCR,
            BMCR_AN_ENABLE | BMCR_RESTART_AN | BMCR_FULL_DUPLEX | BMCR_SPEED_1000,
        )?;
        self.read_hw_counters();
        Ok(())
    }

    /// Writes a PHY register through MDIC.
    fn phy_write(&self, reg: u32, v: u32) -> Result<()> {
        self.wr(
            MDIC,
            (v & 0xffff) | reg << 16 | MDIC_PHY_ADDR | MDIC_OP_WRITE,
        );
        if !self.poll(100, |p| p.rd(MDIC) & (MDIC_READY | MDIC_ERROR) != 0) {
            return Err(self.err("the PHY did not answer a write over MDIC within 100 ms"));
        }
        if self.rd(MDIC) & MDIC_ERROR != 0 {
            return Err(self.err(format!("the PHY refused a write of register {reg}")));
        }
        Ok(())
    }

    fn read_mac(&self) -> MacAddr {
        let lo = self.rd(RAL0).to_le_bytes();
        let hi = self.rd(RAL0 + 4).to_le_bytes();
        MacAddr([lo[0], lo[1], lo[2], lo[3], hi[0], hi[1]])
    }

    /// Receive address entry `i` (0 is the port's own address).
    fn set_rar(&self, i: usize, m: Option<MacAddr>) {
        let (lo, hi) = match m {
            Some(m) => (
                u32::from_le_bytes([m.0[0], m.0[1], m.0[2], m.0[3]]),
                u32::from_le_bytes([m.0[4], m.0[5], 0, 0]) | RAH_AV,
            ),
            None => (0, 0),
        };
        self.wr(RAL0 + 8 * i, lo);
        self.wr(RAL0 + 8 * i + 4, hi);
    }

    /// The port's own address, the unicast filters in the receive address table and the
    /// multicast ones in the hash table.
    fn program_filters(&self, filters: &[MacAddr]) -> Result<()> {
        let unicast: Vec<MacAddr> = filters
            .iter()
            .copied()
            .filter(|m| !m.is_multicast())
            .collect();
        if unicast.len() > RAR_ENTRIES - 1 {
            return Err(self.err(format!(
                "{} unicast filters asked, the 82576 has room for {}",
                unicast.len(),
                RAR_ENTRIES - 1
            )));
        }
        self.set_rar(0, Some(self.rec.mac()));
        for i in 1..RAR_ENTRIES {
            self.set_rar(i, unicast.get(i - 1).copied());
        }
        let mut mta = [0u32; MTA_LEN];
        for m in filters.iter().filter(|m| m.is_multicast()) {
            let b = mta_bit(*m);
            mta[b >> 5] |= 1 << (b & 31);
        }
        for (i, w) in mta.iter().enumerate() {
            self.wr(MTA + 4 * i, *w);
        }
        Ok(())
    }

    /// RCTL for an enabled receiver (the record is updated only after the device call, so
    /// the caller says which modes are on).
    fn rctl(promiscuous: bool, allmulticast: bool) -> u32 {
        let mut v = RCTL_EN | RCTL_BAM | RCTL_SECRC;
        if promiscuous {
            v |= RCTL_UPE | RCTL_MPE;
        }
        if allmulticast {
            v |= RCTL_MPE;
        }
        v
    }

    fn queues(&self) -> (u16, u16) {
        let w = |i| self.rec.drv_data(i).load(Ordering::Relaxed) as u16;
        (w(DW_RXQ), w(DW_TXQ))
    }

    /// RSS over `nrx` queues: DPDK's default key, table entry i to queue i % nrx.
    fn program_rss(&self, nrx: u16) {
        if nrx < 2 || !self.rec.rss_enabled() {
            self.wr(MRQC, 0);
            self.wr(RXCSUM, 0);
            return;
        }
        for (i, k) in net::rss::DEFAULT_KEY.chunks(4).enumerate() {
            self.wr(RSSRK + 4 * i, u32::from_le_bytes([k[0], k[1], k[2], k[3]]));
        }
        for r in 0..RETA_ENTRIES / 4 {
            let e = |j: usize| ((4 * r + j) % nrx as usize) as u32;
            self.wr(RETA + 4 * r, e(0) | e(1) << 8 | e(2) << 16 | e(3) << 24);
        }
        // The descriptor's RSS hash field replaces the checksum field (PCSD).
        self.wr(RXCSUM, RXCSUM_PCSD);
        self.wr(MRQC, MRQC_RSS | MRQC_RSS_FIELDS);
        log::info!("{}: RSS over {nrx} queues", self.name);
    }

    fn bring_up(&self) -> Result<()> {
        self.reset()?;
        let (nrx, ntx) = self.queues();
        for q in 0..nrx {
            let pool = self.rx_pool(q)?;
            let z = RingZone::lookup(&rx_zone(self.port_id, q))?;
            let (iova, len) = z.dma();
            let kb = (self.data_room(q, &pool)? / 1024).min(127) as u32;
            self.wr(rx_reg(q, DBAL), iova as u32);
            self.wr(rx_reg(q, DBAH), (iova >> 32) as u32);
            self.wr(rx_reg(q, DLEN), len);
            self.wr(
                rx_reg(q, SRRCTL),
                kb | SRRCTL_DESCTYPE_ADV_ONEBUF | SRRCTL_DROP_EN,
            );
            self.wr(rx_reg(q, DH), 0);
            self.wr(rx_reg(q, DT), 0);
            let tail = ring::rx_fill(&z, &pool)?;
            self.wr(rx_reg(q, DCTL), DCTL_ENABLE);
            if !self.poll(100, |p| p.rd(rx_reg(q, DCTL)) & DCTL_ENABLE != 0) {
                return Err(self.err(format!("RX queue {q} did not enable (RXDCTL)")));
            }
            self.wr(rx_reg(q, DT), tail);
        }
        for q in 0..ntx {
            let z = RingZone::lookup(&tx_zone(self.port_id, q))?;
            let (iova, len) = z.dma();
            self.wr(tx_reg(q, DBAL), iova as u32);
            self.wr(tx_reg(q, DBAH), (iova >> 32) as u32);
            self.wr(tx_reg(q, DLEN), len);
            self.wr(tx_reg(q, DH), 0);
            self.wr(tx_reg(q, DT), 0);
            self.wr(tx_reg(q, DCTL), DCTL_ENABLE | TXDCTL_THRESH);
            if !self.poll(100, |p| p.rd(tx_reg(q, DCTL)) & DCTL_ENABLE != 0) {
                return Err(self.err(format!("TX queue {q} did not enable (TXDCTL)")));
            }
        }
        self.program_rss(nrx);
        self.program_filters(&self.rec.mac_filters())?;
        self.wr(
            RCTL,
            Igb::rctl(self.rec.promiscuous(), self.rec.allmulticast()),
        );
        self.wr(TCTL, TCTL_EN | TCTL_PSP | TCTL_CT | TCTL_COLD);
        Ok(())
    }

    /// Stops the queues and gives back every mbuf the rings hold.
    fn shut_down(&self) {
        self.wr(RCTL, 0);
        self.wr(TCTL, TCTL_PSP);
        let (nrx, ntx) = self.queues();
        for q in 0..nrx {
            self.wr(rx_reg(q, DCTL), 0);
            if let Ok(z) = RingZone::lookup(&rx_zone(self.port_id, q)) {
                z.release();
            }
        }
        for q in 0..ntx {
            self.wr(tx_reg(q, DCTL), 0);
            if let Ok(z) = RingZone::lookup(&tx_zone(self.port_id, q)) {
                z.release();
            }
        }
    }

    /// Adds the clear-on-read counters to the group's totals; returns the totals.
    fn read_hw_counters(&self) -> Vec<u64> {
        let totals = eal::eal()
            .ok()
            .and_then(|e| e.memzone_lookup(&hw_zone(self.port_id)).ok());
        HW_COUNTERS
            .iter()
            .enumerate()
            .map(|(i, &(_, reg, wide))| {
                let mut v = self.rd(reg) as u64;
                if wide {
                    v |= (self.rd(reg + 4) as u64) << 32;
                }
                match &totals {
                    // SAFETY: the zone holds one u64 per counter, used only atomically.
                    Some(z) => unsafe { &*(z.as_ptr::<AtomicU64>().add(i)) }
                        .fetch_add(v, Ordering::Relaxed)
                        .wrapping_add(v),
                    None => v,
                }
            })
            .collect()
    }

    fn rx_pool(&self, q: u16) -> Result<PktmbufPool> {
        self.rec
            .rx_pool(q)
            .ok_or_else(|| self.err(format!("RX queue {q} has no pool")))
    }

    /// The data room of the pool's buffers (what one RX descriptor can take), seen on one
    /// of them: the pool does not record its headroom.
    fn data_room(&self, q: u16, pool: &PktmbufPool) -> Result<u16> {
        pool.alloc()
            .map(|m| m.tailroom())
            .ok_or_else(|| self.err(format!("RX queue {q}: pool '{}' is empty", pool.name())))
    }

    fn ring_size(&self, nb_desc: u32) -> u32 {
        nb_desc
            .clamp(ring::MIN_DESC, ring::MAX_DESC)
            .next_power_of_two()
    }
}

impl PortDriver for Igb {
    fn info(&self) -> DevInfo {
        DevInfo {
            driver_name: "net_igb",
            max_rx_queues: MAX_QUEUES,
            max_tx_queues: MAX_QUEUES,
            min_mtu: 68,
            max_mtu: 1500,
            if_name: None,
        }
    }

    fn configure(&self, nb_rxq: u16, nb_txq: u16, _conf: &PortConf) -> Result<()> {
        if nb_rxq > MAX_QUEUES || nb_txq > MAX_QUEUES {
            return Err(self.err(format!(
                "{nb_rxq} RX / {nb_txq} TX queues asked, the 82576 driver offers {MAX_QUEUES} of each"
            )));
        }
        self.rec
            .drv_data(DW_RXQ)
            .store(nb_rxq as u64, Ordering::Relaxed);
        self.rec
            .drv_data(DW_TXQ)
            .store(nb_txq as u64, Ordering::Relaxed);
        Ok(())
    }

    fn rx_queue_setup(&self, q: u16, nb_desc: u32, pool: &PktmbufPool) -> Result<()> {
        let room = self.data_room(q, pool)?;
        if room < 1024 {
            return Err(self.err(format!(
                "RX queue {q}: buffers of pool '{}' have {room} bytes of data room, the 82576 needs at least 1024",
                pool.name()
            )));
        }
        RingZone::create(
            &rx_zone(self.port_id, q),
            self.ring_size(nb_desc),
            rx_reg(q, DT),
        )?;
        Ok(())
    }

    fn tx_queue_setup(&self, q: u16, nb_desc: u32) -> Result<()> {
        RingZone::create(
            &tx_zone(self.port_id, q),
            self.ring_size(nb_desc),
            tx_reg(q, DT),
        )?;
        Ok(())
    }

    fn start(&self) -> Result<()> {
        self.bring_up().inspect_err(|_| self.shut_down())
    }

    fn stop(&self) -> Result<()> {
        self.shut_down();
        Ok(())
    }

    fn close(&self) -> Result<()> {
        self.mask_interrupts();
        self.wr(CTRL_EXT, self.rd(CTRL_EXT) & !CTRL_EXT_DRV_LOAD);
        Ok(())
    }

    fn link_update(&self) -> Link {
        let st = self.rd(STATUS);
        if self.rec.state() != PortState::Started || st & STATUS_LU == 0 {
            return Link::DOWN;
        }
        Link {
            up: true,
            full_duplex: st & STATUS_FD != 0,
            speed_mbps: match (st >> 6) & 3 {
                0 => 10,
                1 => 100,
                _ => 1000,
            },
        }
    }

    fn set_promiscuous(&self, on: bool) -> Result<()> {
        if self.rec.state() == PortState::Started {
            self.wr(RCTL, Igb::rctl(on, self.rec.allmulticast()));
        }
        Ok(())
    }

    fn set_allmulticast(&self, on: bool) -> Result<()> {
        if self.rec.state() == PortState::Started {
            self.wr(RCTL, Igb::rctl(self.rec.promiscuous(), on));
        }
        Ok(())
    }

    fn set_mac(&self, mac: MacAddr) -> Result<()> {
        self.set_rar(0, Some(mac));
        Ok(())
    }

    fn set_mac_filters(&self, addrs: &[MacAddr]) -> Result<()> {
        self.program_filters(addrs)
    }

    fn xstats(&self) -> Vec<(String, u64)> {
        HW_COUNTERS
            .iter()
            .zip(self.read_hw_counters())
            .map(|(&(name, _, _), v)| (name.to_string(), v))
            .collect()
    }

    fn rx_queue(&self, q: u16) -> Result<Box<dyn RxBurst>> {
        let pool = self.rx_pool(q)?;
        let z = RingZone::lookup(&rx_zone(self.port_id, q))?;
        Ok(Box::new(IntelRx::new(
            z,
            self.bar.clone(),
            pool,
            self.port_id,
            self.rec,
        )))
    }

    fn tx_queue(&self, q: u16) -> Result<Box<dyn TxBurst>> {
        let z = RingZone::lookup(&tx_zone(self.port_id, q))?;
        Ok(Box::new(IntelTx::new(z, self.bar.clone())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multicast_hash_takes_bits_36_to_47() {
        // 01:00:5e:00:00:fb: bytes 4 and 5 are 0x00 and 0xfb -> 0xfb0.
        assert_eq!(mta_bit(MacAddr([1, 0, 0x5e, 0, 0, 0xfb])), 0xfb0);
        assert_eq!(mta_bit(MacAddr([1, 0, 0x5e, 0, 0x10, 0x01])), 0x011);
    }

    #[test]
    fn queue_registers_follow_the_datasheet() {
        assert_eq!(rx_reg(0, DT), 0xc018);
        assert_eq!(rx_reg(1, DCTL), 0xc068);
        assert_eq!(tx_reg(3, DT), 0xe0d8);
        assert_eq!(rx_reg(0, SRRCTL), 0xc00c);
    }
}
