//! Intel PMDs on one advanced-descriptor core: `ring` holds the RX/TX rings the 82576
//! and the 82599 share; this module what else their drivers do alike (queue set-up and
//! start, receive address and multicast filters, RSS, clear-on-read counters), with a
//! [`Family`] profile for where the two differ; `igb` is the 82576 PMD, `ixgbe` the 82599's;
//! `regs` names the registers and bits of both (shared with the 82599 model in `tests/`).

pub mod igb;
pub mod ixgbe;
pub mod regs;
pub mod ring;

use eal::options::PciAddr;
use eal::vfio::{Bar, VfioDevice};
use net::ethdev::{
    DevInfo, DeviceRecord, Direction, Error, PortConf, PortContext, PortDriver, Result, RxBurst,
    TxBurst, TxOffloads,
};
use net::{Link, MacAddr, PktmbufPool, PortState};
use regs::*;
use ring::{IntelRx, IntelTx, RingZone};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

// Driver words of the port record.
const DW_RXQ: usize = 0;
const DW_TXQ: usize = 1;
/// The port's TX offloads (`TxOffloads` bits).
const DW_TX_OFFLOADS: usize = 2;

/// Where an Intel family differs in what this module does.
pub struct Family {
    /// The chip, for messages ("82576").
    pub chip: &'static str,
    /// Prefix of the port's memzones ("igb": `igb0_rx1`).
    pub zone_prefix: &'static str,
    /// Most RX (and TX) queues of the chip.
    pub max_queues: u16,
    /// First RX and TX queue register blocks (queues 0 to 63).
    pub rx_queues: usize,
    /// First TX queue register block.
    pub tx_queues: usize,
    /// SRRCTL of RX queue q.
    pub srrctl: fn(u16) -> usize,
    /// SRRCTL's drop-enable bit.
    pub srrctl_drop_en: u32,
    /// TXDCTL thresholds (prefetch, host, write-back).
    pub txdctl_thresh: u32,
    /// MRQC.MRQE value for RSS.
    pub mrqc_rss: u32,
    /// Receive address entries reachable at RAL0 (entry 0 is the port's own).
    pub rar_entries: usize,
    /// Hardware counters kept as totals, by name and offset; the 64-bit octet counters
    /// are read low then high.
    pub counters: &'static [(&'static str, usize, bool)],
}

/// The xstat of the missed-packet counter (MPC): frames dropped as they arrived, the RX
/// queue they were for full (the port's `imissed`).
const MISSED: &str = "rx_missed_packets";

/// The counters xstats shows, which the 82576 and the 82599 keep at the same offsets except
/// the missed-packet (`mpc`) and no-buffer (`rnbc`) counters.
pub const fn counters(mpc: usize, rnbc: usize) -> [(&'static str, usize, bool); 13] {
    [
        ("rx_crc_errors", CRCERRS, false),
        (MISSED, mpc, false),
        ("rx_good_packets_hw", GPRC, false),
        ("rx_broadcast_packets", BPRC, false),
        ("rx_multicast_packets", MPRC, false),
        ("tx_good_packets_hw", GPTC, false),
        ("rx_good_octets_hw", GORCL, true),
        ("tx_good_octets_hw", GOTCL, true),
        ("rx_no_buffer_count", rnbc, false),
        ("rx_undersize_packets", RUC, false),
        ("rx_oversize_packets", ROC, false),
        ("rx_total_packets", TPR, false),
        ("tx_total_packets", TPT, false),
    ]
}

/// The bit of the 4096-bit multicast table an address hashes to (filter type 0: bits 47:36).
fn mta_bit(m: MacAddr) -> usize {
    ((m.0[4] as usize >> 4) | (m.0[5] as usize) << 4) & 0xfff
}

/// What an Intel port driver needs in every process: BAR 0, its name and record.
pub struct IntelPort {
    /// BAR 0, mapped in this process.
    pub bar: Arc<Bar>,
    /// The port's name.
    pub name: String,
    /// The port's id.
    pub port_id: u16,
    /// The port's record.
    pub rec: DeviceRecord,
    /// What the chip does its own way.
    pub fam: &'static Family,
}

impl IntelPort {
    /// The port of `ctx` over BAR 0 `bar`.
    pub fn new(ctx: &PortContext, bar: Bar, fam: &'static Family) -> IntelPort {
        IntelPort {
            bar: Arc::new(bar),
            name: ctx.name.into(),
            port_id: ctx.port_id,
            rec: ctx.record,
            fam,
        }
    }

    /// An [`Error::Device`] of this port.
    pub fn err(&self, what: impl std::fmt::Display) -> Error {
        Error::device(self.name.as_str(), what)
    }

    /// Reads register `r`.
    pub fn rd(&self, r: usize) -> u32 {
        self.bar.read32(r)
    }
    /// Writes register `r`.
    pub fn wr(&self, r: usize, v: u32) {
        self.bar.write32(r, v)
    }

    /// Waits up to `ms` milliseconds for `done` to hold.
    pub fn poll(&self, ms: u64, done: impl Fn(&IntelPort) -> bool) -> bool {
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

    fn rx_reg(&self, q: u16, r: usize) -> usize {
        self.fam.rx_queues + q as usize * QUEUE_STRIDE + r
    }
    fn tx_reg(&self, q: u16, r: usize) -> usize {
        self.fam.tx_queues + q as usize * QUEUE_STRIDE + r
    }
    fn zone(&self, what: &str) -> String {
        format!("{}{}_{what}", self.fam.zone_prefix, self.port_id)
    }

    /// Reserves the zone of the counter totals (probe, primary).
    pub fn reserve_counters(&self) -> Result<()> {
        eal::eal()?.memzone_reuse_or_reserve(
            &self.zone("hw"),
            8 * self.fam.counters.len() as u64,
            64,
            eal::MemzoneFlags::empty(),
        )?;
        Ok(())
    }

    /// The group's counter totals: one u64 per counter of the family's table.
    fn totals(&self) -> Option<eal::Memzone> {
        eal::eal()
            .ok()
            .and_then(|e| e.memzone_lookup(&self.zone("hw")).ok())
    }

    /// Zeroes the counters: what the device counted since the last read is read (and so
    /// cleared), then the totals start again from 0.
    pub fn reset_counters(&self) {
        self.read_counters();
        for z in self.rx_rings() {
            z.reset_lies();
        }
        if let Some(z) = self.totals() {
            for i in 0..self.fam.counters.len() {
                // SAFETY: as in read_counters.
                unsafe { &*(z.as_ptr::<AtomicU64>().add(i)) }.store(0, Ordering::Relaxed);
            }
        }
    }

    /// Adds the clear-on-read counters to the group's totals; returns the totals.
    pub fn read_counters(&self) -> Vec<u64> {
        let totals = self.totals();
        (0..self.fam.counters.len())
            .map(|i| self.read_counter(totals.as_ref(), i))
            .collect()
    }

    /// Adds counter `i` of the family's table to the group's total in `totals` (none: this
    /// process alone); returns the total.
    fn read_counter(&self, totals: Option<&eal::Memzone>, i: usize) -> u64 {
        let (_, reg, wide) = self.fam.counters[i];
        let mut v = self.bar.read32_clear(reg) as u64;
        if wide {
            v |= (self.bar.read32_clear(reg + 4) as u64) << 32;
        }
        match totals {
            // SAFETY: the zone holds one u64 per counter, used only atomically.
            Some(z) => unsafe { &*(z.as_ptr::<AtomicU64>().add(i)) }
                .fetch_add(v, Ordering::Relaxed)
                .wrapping_add(v),
            None => v,
        }
    }

    /// The frames the device missed (MPC), group-wide, since the counters' last reset: that
    /// one counter read.
    pub fn missed(&self) -> u64 {
        self.fam
            .counters
            .iter()
            .position(|&(name, _, _)| name == MISSED)
            .map_or(0, |i| self.read_counter(self.totals().as_ref(), i))
    }

    /// The RX rings this process can see.
    fn rx_rings(&self) -> Vec<RingZone> {
        (0..self.queues().0)
            .filter_map(|q| RingZone::lookup(&self.zone(&format!("rx{q}"))).ok())
            .collect()
    }

    /// The device's counters, group-wide totals, by name, then what the device lied about
    /// (see `ring::RxLie`), summed over the RX rings.
    pub fn xstats(&self) -> Vec<(String, u64)> {
        let mut x: Vec<(String, u64)> = self
            .fam
            .counters
            .iter()
            .zip(self.read_counters())
            .map(|(&(name, _, _), v)| (name.to_string(), v))
            .collect();
        let rings = self.rx_rings();
        for lie in ring::RxLie::ALL {
            x.push((lie.name().into(), rings.iter().map(|z| z.lies(lie)).sum()));
        }
        x
    }

    /// The MAC address in receive address 0 (RAL0/RAH0).
    pub fn read_mac(&self) -> MacAddr {
        let lo = self.rd(RAL0).to_le_bytes();
        let hi = self.rd(RAL0 + 4).to_le_bytes();
        MacAddr([lo[0], lo[1], lo[2], lo[3], hi[0], hi[1]])
    }

    /// Receive address entry `i` (0 is the port's own address).
    pub fn set_rar(&self, i: usize, m: Option<MacAddr>) {
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
    pub fn program_filters(&self, filters: &[MacAddr]) -> Result<()> {
        let room = self.fam.rar_entries - 1;
        let unicast: Vec<MacAddr> = filters
            .iter()
            .copied()
            .filter(|m| !m.is_multicast())
            .collect();
        if unicast.len() > room {
            return Err(self.err(format!(
                "{} unicast filters asked, the {} has room for {room}",
                unicast.len(),
                self.fam.chip
            )));
        }
        self.set_rar(0, Some(self.rec.mac()));
        for i in 1..self.fam.rar_entries {
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

    /// RSS over `nrx` queues: DPDK's default key, table entry i to queue i % nrx.
    fn program_rss(&self, nrx: u16) {
        if nrx < 2 || !self.rec.rss_enabled() {
            // PCSD clear: the write-back's hash field holds the IP identification and the
            // fragment checksum, with RSS type 0, so RX takes no hash from it.
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
        self.wr(MRQC, self.fam.mrqc_rss | MRQC_RSS_FIELDS);
        log::info!("{}: RSS over {nrx} queues", self.name);
    }

    /// The queue counts `configure` recorded.
    pub fn queues(&self) -> (u16, u16) {
        let w = |i| self.rec.drv_data(i).load(Ordering::Relaxed) as u16;
        (w(DW_RXQ), w(DW_TXQ))
    }

    /// Records the queue counts, within what the chip has, and the TX offloads (primary).
    pub fn configure(&self, nb_rxq: u16, nb_txq: u16, tx_offloads: TxOffloads) -> Result<()> {
        let max = self.fam.max_queues;
        if nb_rxq > max || nb_txq > max {
            return Err(self.err(format!(
                "{nb_rxq} RX / {nb_txq} TX queues asked, the {} driver offers {max} of each",
                self.fam.chip
            )));
        }
        let store = |i, v: u16| self.rec.drv_data(i).store(v as u64, Ordering::Relaxed);
        store(DW_RXQ, nb_rxq);
        store(DW_TXQ, nb_txq);
        self.rec
            .drv_data(DW_TX_OFFLOADS)
            .store(tx_offloads.bits(), Ordering::Relaxed);
        Ok(())
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

    fn ring_size(nb_desc: u32) -> u32 {
        nb_desc
            .clamp(ring::MIN_DESC, ring::MAX_DESC)
            .next_power_of_two()
    }

    /// Lays out RX queue `q`'s ring of `nb_desc` descriptors and fills it from `pool` (primary).
    pub fn rx_queue_setup(&self, q: u16, nb_desc: u32, pool: &PktmbufPool) -> Result<()> {
        let room = self.data_room(q, pool)?;
        if room < 1024 {
            return Err(self.err(format!(
                "RX queue {q}: buffers of pool '{}' have {room} bytes of data room, the {} needs at least 1024",
                pool.name(),
                self.fam.chip
            )));
        }
        let size = IntelPort::ring_size(nb_desc);
        RingZone::create(&self.zone(&format!("rx{q}")), size, self.rx_reg(q, DT))?;
        Ok(())
    }

    /// Lays out TX queue `q`'s ring of `nb_desc` descriptors (primary).
    pub fn tx_queue_setup(&self, q: u16, nb_desc: u32) -> Result<()> {
        let size = IntelPort::ring_size(nb_desc);
        RingZone::create(&self.zone(&format!("tx{q}")), size, self.tx_reg(q, DT))?;
        Ok(())
    }

    /// Gives the device every configured ring, fills the RX rings and enables the queues
    /// (polling each enable bit), then RSS and the address filters. The family's global
    /// receive and transmit enables come after.
    pub fn start_queues(&self) -> Result<()> {
        let (nrx, ntx) = self.queues();
        for q in 0..nrx {
            let pool = self.rx_pool(q)?;
            let z = RingZone::lookup(&self.zone(&format!("rx{q}")))?;
            let (iova, len) = z.dma();
            let kb = (self.data_room(q, &pool)? / 1024).min(31) as u32;
            self.wr(self.rx_reg(q, DBAL), iova as u32);
            self.wr(self.rx_reg(q, DBAH), (iova >> 32) as u32);
            self.wr(self.rx_reg(q, DLEN), len);
            self.wr(
                (self.fam.srrctl)(q),
                kb | SRRCTL_DESCTYPE_ADV_ONEBUF | self.fam.srrctl_drop_en,
            );
            self.wr(self.rx_reg(q, DH), 0);
            self.wr(self.rx_reg(q, DT), 0);
            let tail = ring::rx_fill(&z, &pool, kb * 1024)?;
            self.wr(self.rx_reg(q, DCTL), DCTL_ENABLE);
            if !self.poll(100, |p| p.rd(p.rx_reg(q, DCTL)) & DCTL_ENABLE != 0) {
                return Err(self.err(format!("RX queue {q} did not enable (RXDCTL)")));
            }
            self.wr(self.rx_reg(q, DT), tail);
        }
        let tx_offloads = TxOffloads::from_bits_truncate(
            self.rec.drv_data(DW_TX_OFFLOADS).load(Ordering::Relaxed),
        );
        for q in 0..ntx {
            let z = RingZone::lookup(&self.zone(&format!("tx{q}")))?;
            z.tx_set_fast_free(tx_offloads.contains(TxOffloads::MBUF_FAST_FREE));
            let (iova, len) = z.dma();
            self.wr(self.tx_reg(q, DBAL), iova as u32);
            self.wr(self.tx_reg(q, DBAH), (iova >> 32) as u32);
            self.wr(self.tx_reg(q, DLEN), len);
            self.wr(self.tx_reg(q, DH), 0);
            self.wr(self.tx_reg(q, DT), 0);
            self.wr(self.tx_reg(q, DCTL), DCTL_ENABLE | self.fam.txdctl_thresh);
            if !self.poll(100, |p| p.rd(p.tx_reg(q, DCTL)) & DCTL_ENABLE != 0) {
                return Err(self.err(format!("TX queue {q} did not enable (TXDCTL)")));
            }
        }
        self.program_rss(nrx);
        self.program_filters(&self.rec.mac_filters())
    }

    /// Disables the queues and gives back every mbuf the rings hold (the family has
    /// stopped the receiver and transmitter).
    pub fn stop_queues(&self) {
        let (nrx, ntx) = self.queues();
        for q in 0..nrx {
            self.wr(self.rx_reg(q, DCTL), 0);
            if let Ok(z) = RingZone::lookup(&self.zone(&format!("rx{q}"))) {
                z.release();
            }
        }
        for q in 0..ntx {
            self.wr(self.tx_reg(q, DCTL), 0);
            if let Ok(z) = RingZone::lookup(&self.zone(&format!("tx{q}"))) {
                z.release();
            }
        }
    }

    /// This process's handle to RX queue `q`.
    pub fn rx_queue(&self, q: u16) -> Result<Box<dyn RxBurst>> {
        let pool = self.rx_pool(q)?;
        let z = RingZone::lookup(&self.zone(&format!("rx{q}")))?;
        Ok(Box::new(IntelRx::new(
            z,
            self.bar.clone(),
            pool,
            self.port_id,
            self.rec,
        )))
    }

    /// This process's handle to TX queue `q`.
    pub fn tx_queue(&self, q: u16) -> Result<Box<dyn TxBurst>> {
        let z = RingZone::lookup(&self.zone(&format!("tx{q}")))?;
        Ok(Box::new(IntelTx::new(z, self.bar.clone())))
    }

    /// Mbufs queue `q` holds (see `PortDriver::queue_mbufs`).
    pub fn queue_mbufs(&self, dir: Direction, q: u16) -> u32 {
        let name = self.zone(&format!("{}{q}", dir.lowercase()));
        RingZone::lookup(&name).map_or(0, |z| z.mbufs_held())
    }

    /// The mbufs queue `q` holds (see `PortDriver::for_each_queue_mbuf`).
    pub fn for_each_queue_mbuf(&self, dir: Direction, q: u16, f: &mut dyn FnMut(usize)) {
        let name = self.zone(&format!("{}{q}", dir.lowercase()));
        if let Ok(z) = RingZone::lookup(&name) {
            z.mbufs().for_each(f);
        }
    }

    /// A TX ring whose poller died inside a burst drops what the burst wrote and did not
    /// commit; an RX ring skips the descriptors the burst had taken before it could store
    /// its index.
    pub fn recover_queue(&self, dir: Direction, q: u16) {
        if dir == Direction::Rx {
            if let Ok(z) = RingZone::lookup(&self.zone(&format!("rx{q}"))) {
                match z.rx_skip_taken() {
                    0 => {}
                    n => log::warn!(
                        "{}: RX queue {q}: skipped {n} descriptors its dead poller had taken",
                        self.rec.name()
                    ),
                }
            }
            return;
        }
        match RingZone::lookup(&self.zone(&format!("tx{q}"))) {
            Ok(z) => {
                let name = self.rec.name();
                match z.forget_uncommitted() {
                    0 => {}
                    n => log::warn!(
                        "{name}: TX queue {q}: forgot {n} mbufs its dead poller wrote and did not commit",
                    ),
                }
                match z.forget_freed() {
                    0 => {}
                    n => log::warn!(
                        "{name}: TX queue {q}: forgot {n} sent mbufs its dead poller had freed"
                    ),
                }
            }
            Err(e) => log::warn!("TX queue {q}: {e}"),
        }
    }

    /// See `PortDriver::tx_taken_since`.
    pub fn tx_taken_since(&self, q: u16, mark: u32) -> Option<u32> {
        let z = RingZone::lookup(&self.zone(&format!("tx{q}"))).ok()?;
        Some(z.chains_since(mark))
    }
}

/// A receive-control word: `base`, with the unicast (`upe`) and multicast (`mpe`)
/// promiscuous bits as the modes ask.
pub fn rx_mode_word(base: u32, upe: u32, mpe: u32, promiscuous: bool, allmulticast: bool) -> u32 {
    let mut v = base;
    if promiscuous {
        v |= upe | mpe;
    }
    if allmulticast {
        v |= mpe;
    }
    v
}

/// Opens PCI function `ctx.name` through VFIO and maps its BAR 0 (primary or secondary).
pub fn open_pci(ctx: &PortContext) -> Result<(Arc<VfioDevice>, Bar)> {
    let err = |e: String| Error::device(ctx.name, e);
    let addr: PciAddr = ctx.name.parse().map_err(err)?;
    let dev = VfioDevice::open(addr).map_err(|e| err(e.to_string()))?;
    let bar = dev.map_bar(0).map_err(|e| err(e.to_string()))?;
    Ok((dev, bar))
}

/// Creates a port on device `d` (primary): reset, its MAC address recorded, the counter
/// totals reserved.
pub fn probe<D: IntelDevice + 'static>(d: D) -> Result<Box<dyn PortDriver>> {
    d.reset()?;
    let p = d.port();
    let mac = p.read_mac();
    p.rec.set_mac(mac);
    p.reserve_counters()?;
    let family = d.driver_name().trim_start_matches("net_");
    log::info!("{}: {} ({family}), MAC {mac}", p.name, p.fam.chip);
    Ok(Box::new(IntelPmd(d)))
}

/// What an Intel family's driver does its own way; the port API comes with it.
pub trait IntelDevice: Send + Sync {
    /// The family-independent part of the port.
    fn port(&self) -> &IntelPort;
    /// The registered name ("net_igb").
    fn driver_name(&self) -> &'static str;
    /// Global reset and link set-up, as the datasheet orders them (also at each start).
    fn reset(&self) -> Result<()>;
    /// Reset, queues, filters, receive and transmit enables.
    fn bring_up(&self) -> Result<()>;
    /// Receive and transmit off, queues stopped, their mbufs given back.
    fn shut_down(&self);
    /// Interrupts masked, the device told the driver is gone.
    fn close(&self);
    /// The link as the device shows it (the port is started).
    fn read_link(&self) -> Link;
    /// The receive filter modes, for a started port.
    fn write_rx_modes(&self, promiscuous: bool, allmulticast: bool);
}

/// An Intel family's device as a port driver.
pub struct IntelPmd<D>(pub D);

impl<D: IntelDevice> PortDriver for IntelPmd<D> {
    fn info(&self) -> DevInfo {
        let max = self.0.port().fam.max_queues;
        DevInfo {
            driver_name: self.0.driver_name(),
            max_rx_queues: max,
            max_tx_queues: max,
            min_mtu: 68,
            max_mtu: 1500,
            if_name: None,
            tx_offload_capa: TxOffloads::MBUF_FAST_FREE,
        }
    }

    fn configure(&self, nb_rxq: u16, nb_txq: u16, conf: &PortConf) -> Result<()> {
        self.0.port().configure(nb_rxq, nb_txq, conf.tx_offloads)
    }

    fn rx_queue_setup(&self, q: u16, nb_desc: u32, pool: &PktmbufPool) -> Result<()> {
        self.0.port().rx_queue_setup(q, nb_desc, pool)
    }

    fn tx_queue_setup(&self, q: u16, nb_desc: u32) -> Result<()> {
        self.0.port().tx_queue_setup(q, nb_desc)
    }

    fn start(&self) -> Result<()> {
        self.0.bring_up().inspect_err(|_| self.0.shut_down())
    }

    fn stop(&self) -> Result<()> {
        self.0.shut_down();
        Ok(())
    }

    fn close(&self) -> Result<()> {
        self.0.close();
        Ok(())
    }

    fn link_update(&self) -> Link {
        if self.0.port().rec.state() != PortState::Started {
            return Link::DOWN;
        }
        self.0.read_link()
    }

    fn set_promiscuous(&self, on: bool) -> Result<()> {
        let rec = self.0.port().rec;
        if rec.state() == PortState::Started {
            self.0.write_rx_modes(on, rec.allmulticast());
        }
        Ok(())
    }

    fn set_allmulticast(&self, on: bool) -> Result<()> {
        let rec = self.0.port().rec;
        if rec.state() == PortState::Started {
            self.0.write_rx_modes(rec.promiscuous(), on);
        }
        Ok(())
    }

    fn set_mac(&self, mac: MacAddr) -> Result<()> {
        self.0.port().set_rar(0, Some(mac));
        Ok(())
    }

    fn set_mac_filters(&self, addrs: &[MacAddr]) -> Result<()> {
        self.0.port().program_filters(addrs)
    }

    fn xstats(&self) -> Vec<(String, u64)> {
        self.0.port().xstats()
    }

    fn xstats_reset(&self) {
        self.0.port().reset_counters()
    }

    fn rx_missed(&self) -> u64 {
        self.0.port().missed()
    }

    fn rx_queue(&self, q: u16) -> Result<Box<dyn RxBurst>> {
        self.0.port().rx_queue(q)
    }

    fn tx_queue(&self, q: u16) -> Result<Box<dyn TxBurst>> {
        self.0.port().tx_queue(q)
    }

    fn queue_mbufs(&self, dir: Direction, q: u16) -> u32 {
        self.0.port().queue_mbufs(dir, q)
    }

    fn for_each_queue_mbuf(&self, dir: Direction, q: u16, f: &mut dyn FnMut(usize)) {
        self.0.port().for_each_queue_mbuf(dir, q, f)
    }

    fn recover_queue(&self, dir: Direction, q: u16) {
        self.0.port().recover_queue(dir, q)
    }

    fn tx_taken_since(&self, q: u16, mark: u32) -> Option<u32> {
        self.0.port().tx_taken_since(q, mark)
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
}
