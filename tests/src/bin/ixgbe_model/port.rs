//! One port's behaviour, as the datasheet describes it: reset, link, queue latches, TX,
//! RX filters, RSS, and the interrupt causes they raise. Register accesses with side
//! effects (EERD, SWSM, clear-on-read counters, interrupt masks) are in `mmio`, for the
//! ports whose accesses arrive one by one (vfio-user); shared-file ports are polled here.

use super::dma::Dma;
use super::eeprom::{Eeprom, EEC_SIZE_FIELD};
use super::mmio::Trapped;
use super::regs::Regs;
use drivers::intel::regs::ixgbe::*;
use drivers::intel::regs::*;
use net::MacAddr;
use std::net::UdpSocket;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const CTRL_RESET: u32 = CTRL_RST | CTRL_LNK_RST;
/// Receive address entries and queues the model serves (as many as the PMD uses).
const RAR_ENTRIES: usize = 16;
pub const QUEUES: usize = 16;
/// How long auto-negotiation takes once restarted.
const AN_TIME: Duration = Duration::from_millis(5);
/// Advanced TX descriptor types (DTYP, bits 23:20 of the command quadword).
const TXD_DTYP_MASK: u64 = 0xf << 20;
const TXD_DTYP_CONTEXT: u64 = 0x2 << 20;
/// TCP segmentation and checksum insertion, which the model does not do.
const TXD_CMD_TSE: u64 = 1 << 31;
const TXD_POPTS_CSUM: u64 = 0x3 << 40;

/// Lies the model tells the driver now and then (`--evil`), to check that it holds.
#[derive(Clone, Copy, Default, Debug)]
pub struct Evil {
    /// Every `EVIL_EVERY`th received frame's write-back says one byte more than the buffer.
    pub long_rx_len: bool,
    /// Every `EVIL_EVERY`th received frame, DD (length 0) is also written on the tail's
    /// descriptor, which the driver did not give.
    pub unposted_dd: bool,
    /// After `EVIL_STOP_AFTER` sent frames, TX descriptors are neither sent nor written back.
    pub stop_completing: bool,
}

/// How often a lie is told: every this many received frames.
const EVIL_EVERY: u64 = 7;
/// Frames sent before `stop-completing` stops.
const EVIL_STOP_AFTER: u64 = 100;

impl Evil {
    /// `KIND[,KIND...]` of `long-rx-len`, `unposted-dd`, `stop-completing`.
    pub fn parse(s: &str) -> Result<Evil, String> {
        let mut e = Evil::default();
        for kind in s.split(',') {
            match kind {
                "long-rx-len" => e.long_rx_len = true,
                "unposted-dd" => e.unposted_dd = true,
                "stop-completing" => e.stop_completing = true,
                other => {
                    return Err(format!(
                        "--evil: unknown lie '{other}' (long-rx-len, unposted-dd, stop-completing)"
                    ))
                }
            }
        }
        Ok(e)
    }
}

/// A ring the device latched when its queue was enabled.
#[derive(Clone, Copy)]
pub struct Ring {
    base: u64,
    size: u32,
}

/// Where a port's frames come from and go to.
pub enum Wire {
    /// One frame per datagram on 127.0.0.1.
    Udp {
        sock: UdpSocket,
        peer: (std::net::Ipv4Addr, u16),
    },
    /// A copy of `frame` for every free RX descriptor, as fast as the model runs: a source
    /// that never outruns the ring, so nothing is missed (whether the driver finds full
    /// bursts depends on which side is faster); sent frames are counted and dropped.
    Generator { frame: Arc<[u8]> },
}

/// An interrupt cause, as the datasheet's EICR names them.
#[derive(Clone, Copy)]
pub enum Cause {
    /// One of EICR's "other" bits (16-30), e.g. LSC.
    Other(u32),
    /// A queue's RX or TX cause, routed by IVAR.
    Queue { tx: bool, q: usize },
}

/// How a port's registers reach the driver.
pub enum Transport {
    /// A shared file the driver maps; the port's one interrupt is an eventfd handed out
    /// on `<file>.irq`.
    SharedFile { irq: OwnedFd, eims: u32 },
    /// vfio-user: every access arrives as a message.
    Trapped(Box<Trapped>),
}

/// A UDP wire's frames by fate.
#[derive(Default, Debug)]
pub struct WireCounts {
    /// Arrived from the wire.
    pub arrived: u64,
    /// Arrived while the link was down or the receiver off (RXCTRL.RXEN clear).
    pub receiver_off: u64,
    /// Not taken by the address filters.
    pub filtered: u64,
    /// Taken, but no RX descriptor was free (also counted in MPC).
    pub missed: u64,
    /// Sent to the wire.
    pub sent: u64,
    /// Sending to the wire failed (the socket said why; logged once).
    pub send_errors: u64,
}

pub struct Port {
    pub id: usize,
    pub regs: Regs,
    pub eeprom: Eeprom,
    pub wire: Wire,
    pub transport: Transport,
    pub dma: Dma,
    pub cable: Arc<AtomicBool>,
    link_up_at: Option<Instant>,
    rx: [Option<Ring>; QUEUES],
    tx: [Option<Ring>; QUEUES],
    /// Frames the model did not send: offloads it does not do.
    pub tx_refused: u64,
    /// What happened to the frames of a UDP wire, for the tests to say where one was lost.
    pub wire_counts: WireCounts,
    /// Set when the port has sent a frame since the last look (a recording's end).
    pub sent: bool,
    /// The lies it tells.
    pub evil: Evil,
    /// Frames received and sent so far, to time the lies.
    evil_rx: u64,
    evil_tx: u64,
}

impl Port {
    pub fn new(
        id: usize,
        regs: Regs,
        mac: MacAddr,
        wire: Wire,
        transport: Transport,
        dma: Dma,
    ) -> Port {
        let mut p = Port {
            id,
            regs,
            eeprom: Eeprom::new(mac),
            wire,
            transport,
            dma,
            cable: Arc::new(AtomicBool::new(true)),
            link_up_at: None,
            rx: [None; QUEUES],
            tx: [None; QUEUES],
            tx_refused: 0,
            wire_counts: WireCounts::default(),
            sent: false,
            evil: Evil::default(),
            evil_rx: 0,
            evil_tx: 0,
        };
        p.reset();
        p
    }

    pub fn trapped(&mut self) -> Option<&mut Trapped> {
        match &mut self.transport {
            Transport::Trapped(t) => Some(t),
            Transport::SharedFile { .. } => None,
        }
    }

    /// The power-on and software reset: registers to their defaults, the EEPROM's
    /// settings loaded again (MAC address, AUTOC), queues stopped.
    pub fn reset(&mut self) {
        self.regs.clear();
        let m = self.eeprom.mac().0;
        self.regs
            .w(RAL0, u32::from_le_bytes([m[0], m[1], m[2], m[3]]));
        self.regs
            .w(RAL0 + 4, u32::from_le_bytes([m[4], m[5], 0, 0]) | RAH_AV);
        self.regs
            .w(EEC, EEC_PRES | EEC_ARD | EEC_SIZE_FIELD << EEC_SIZE_SHIFT);
        self.regs.w(RDRXCTL, RDRXCTL_DMAIDONE);
        self.regs
            .w(AUTOC, AUTOC_KX4_SUPP | AUTOC_KX_SUPP | AUTOC_LMS_KX4_KX_KR);
        self.regs.w(
            STATUS,
            STATUS_GIO | (self.id as u32 & 1) << STATUS_LAN_ID_SHIFT,
        );
        self.regs.w(SECRXSTAT, SEC_RDY);
        self.regs.w(SECTXSTAT, SEC_RDY);
        // The datasheet's defaults: one 512 KB RX and one 160 KB TX packet buffer; the
        // NVM holds valid firmware, with no manageability mode.
        self.regs.w(RXPBSIZE, 512 << 10);
        self.regs.w(TXPBSIZE, 160 << 10);
        self.regs.w(FWSM, FWSM_FW_VAL);
        // CRC appended on TX, stripped on RX, short frames padded, length errors checked:
        // HLREG0's defaults (drivers that strip the CRC may only set RDRXCTL.CRCSTRIP).
        self.regs.w(
            HLREG0,
            HLREG0_TXCRCEN | HLREG0_RXCRCSTRP | HLREG0_TXPADEN | HLREG0_RXLNGTHERREN,
        );
        self.link_up_at = None;
        self.rx = [None; QUEUES];
        self.tx = [None; QUEUES];
        match &mut self.transport {
            Transport::SharedFile { eims, .. } => *eims = 0,
            Transport::Trapped(t) => t.reset(),
        }
    }

    fn link_up(&self) -> bool {
        self.regs.r(LINKS) & LINKS_UP != 0
    }

    fn set_link(&mut self, up: bool) {
        if up == self.link_up() {
            return;
        }
        let links = if up {
            LINKS_UP | LINKS_SPEED_10G | LINKS_KX_AN_COMP
        } else {
            0
        };
        self.regs.w(LINKS, links);
        println!("port {} link {}", self.id, if up { "up" } else { "down" });
        self.interrupt(Cause::Other(EICR_LSC));
    }

    /// Raises `cause`: sets it in EICR and signals the vector it maps to, as the masks
    /// allow.
    pub fn interrupt(&mut self, cause: Cause) {
        match &mut self.transport {
            Transport::SharedFile { irq, eims } => {
                let Cause::Other(bit) = cause else { return };
                self.regs.reg(EICR).fetch_or(bit, Ordering::AcqRel);
                if *eims & bit != 0 {
                    let one = 1u64.to_ne_bytes();
                    // SAFETY: an 8-byte write from a local buffer to our eventfd.
                    unsafe { libc::write(irq.as_raw_fd(), one.as_ptr().cast(), 8) };
                }
            }
            Transport::Trapped(t) => t.raise(&self.regs, cause),
        }
    }

    /// Reacts to what the driver wrote since the last look, and to time passing.
    pub fn control(&mut self) {
        let ctrl = self.regs.r(CTRL);
        if ctrl & CTRL_RESET != 0 {
            self.reset();
            return;
        }
        // STATUS.GIO: master requests enabled unless CTRL.GIO_DIS holds them (nothing is
        // ever pending here, so the change is at once).
        let status = self.regs.r(STATUS);
        let gio = if ctrl & CTRL_GIO_DIS != 0 {
            0
        } else {
            STATUS_GIO
        };
        self.regs.w(STATUS, (status & !STATUS_GIO) | gio);
        let autoc = self.regs.r(AUTOC);
        if autoc & AUTOC_AN_RESTART != 0 {
            self.regs.w(AUTOC, autoc & !AUTOC_AN_RESTART);
            self.link_up_at = Some(Instant::now() + AN_TIME);
            // The AN state machine leaves its idle state (ANLP1.AN_STATE), which drivers
            // await after a restart.
            let anlp1 = self.regs.r(ANLP1) & !ANLP1_AN_STATE_MASK;
            self.regs.w(ANLP1, anlp1 | 0x4 << 16);
        }
        // Up once auto-negotiation completed, while the cable is in.
        let negotiated = self.link_up_at.is_some_and(|t| Instant::now() >= t);
        self.set_link(negotiated && self.cable.load(Ordering::Acquire));
        if let Transport::SharedFile { eims, .. } = &mut self.transport {
            *eims = poll_interrupt_mask(&self.regs, *eims);
        }
        let te = self.regs.r(DMATXCTL) & DMATXCTL_TE != 0;
        for q in 0..QUEUES {
            self.rx[q] = self.latch(RX_QUEUES + QUEUE_STRIDE * q, self.rx[q], true);
            self.tx[q] = self.latch(TX_QUEUES + QUEUE_STRIDE * q, self.tx[q], te);
        }
    }

    /// A queue's ring while its enable bit is set (and `allowed`).
    fn latch(&self, block: usize, now: Option<Ring>, allowed: bool) -> Option<Ring> {
        let ctl = self.regs.r(block + DCTL);
        if ctl & DCTL_ENABLE == 0 {
            return None;
        }
        if !allowed {
            // The enable bit does not stick.
            self.regs.w(block + DCTL, ctl & !DCTL_ENABLE);
            return None;
        }
        now.or_else(|| {
            // The low 7 bits of the base are ignored (rings are 128-byte aligned).
            let base = (self.regs.r(block + DBAL) & !0x7f) as u64
                | (self.regs.r(block + DBAH) as u64) << 32;
            Some(Ring {
                base,
                size: (self.regs.r(block + DLEN) / 16).max(8),
            })
        })
    }

    /// Sends what the TX rings hold; returns whether there was work.
    pub fn transmit(&mut self) -> bool {
        if !self.link_up() {
            return false;
        }
        let mut busy = false;
        let mut frame = Vec::with_capacity(2048);
        for q in 0..QUEUES {
            let Some(ring) = self.tx[q] else { continue };
            let (head_reg, tail_reg) = (
                TX_QUEUES + QUEUE_STRIDE * q + DH,
                TX_QUEUES + QUEUE_STRIDE * q + DT,
            );
            let tail = self.regs.r(tail_reg) % ring.size;
            let mut head = self.regs.r(head_reg);
            if self.evil.stop_completing && self.evil_tx >= EVIL_STOP_AFTER {
                continue;
            }
            let mut i = head;
            let (mut frames, mut bytes, mut frame_len) = (0, 0, 0);
            // Why the frame under way is not sent: an offload asked for, a buffer outside
            // DMA memory (counted there).
            let (mut offload, mut unreachable) = (false, false);
            let mut written_back = false;
            frame.clear();
            while i != tail {
                let Some(d) = self.dma.desc(ring.base, i) else {
                    break;
                };
                let (addr, cmd) = (d[0].load(Ordering::Acquire), d[1].load(Ordering::Acquire));
                let context = cmd & TXD_CMD_DEXT != 0 && cmd & TXD_DTYP_MASK == TXD_DTYP_CONTEXT;
                if !context {
                    let len = (cmd & 0xffff) as usize;
                    offload |= cmd & TXD_CMD_DEXT != 0 && cmd & (TXD_CMD_TSE | TXD_POPTS_CSUM) != 0;
                    frame_len += len;
                    match self.dma.slice(addr, len) {
                        // The generator's sink counts the bytes and drops the frame uncopied.
                        Some(data) if matches!(self.wire, Wire::Udp { .. }) => {
                            frame.extend_from_slice(data)
                        }
                        Some(_) => {}
                        None => unreachable = true,
                    }
                }
                if cmd & TXD_CMD_RS != 0 {
                    self.evil_tx += 1;
                    if let Some(d) = self.dma.desc(ring.base, i) {
                        d[1].store(cmd | TXD_STAT_DD, Ordering::Release);
                        written_back = true;
                    }
                }
                i = (i + 1) % ring.size;
                if !context && cmd & TXD_CMD_EOP != 0 {
                    if offload {
                        self.tx_refused += 1;
                        self.log_refused();
                    } else if !unreachable {
                        if let Wire::Udp { sock, peer } = &self.wire {
                            match sock.send_to(&frame, *peer) {
                                Ok(_) => self.wire_counts.sent += 1,
                                Err(e) => {
                                    self.wire_counts.send_errors += 1;
                                    if self.wire_counts.send_errors == 1 {
                                        eprintln!(
                                            "ixgbe_model: port {}: sending to the wire: {e}",
                                            self.id
                                        );
                                    }
                                }
                            }
                        }
                        frames += 1;
                        bytes += frame_len as u64 + 4;
                    }
                    (frame_len, offload, unreachable) = (0, false, false);
                    frame.clear();
                    head = i;
                }
            }
            // Head and counters once per pass: each is a write the driver's CPU may see.
            if head != self.regs.r(head_reg) {
                self.regs.w(head_reg, head);
                busy = true;
            }
            if frames > 0 {
                let set = self.stats_set(TQSM, q);
                self.regs.add(qptc(set), frames);
                self.regs.add64(qbtc(set), bytes);
                self.regs.add(GPTC, frames);
                self.regs.add(TPT, frames);
                self.regs.add64(GOTCL, bytes);
                self.sent = true;
            }
            if written_back {
                self.interrupt(Cause::Queue { tx: true, q });
            }
        }
        busy
    }

    #[cold]
    fn log_refused(&self) {
        if self.tx_refused <= 3 {
            eprintln!(
                "ixgbe_model: port {}: a frame asked for segmentation or checksum insertion, which the model does not do: not sent (counted)",
                self.id
            );
        }
    }

    /// Whether the filters take a frame for `dst`.
    fn accepts(&self, dst: MacAddr) -> bool {
        let fctrl = self.regs.r(FCTRL);
        if fctrl & FCTRL_UPE != 0 {
            return true;
        }
        if dst.0 == [0xff; 6] {
            return fctrl & FCTRL_BAM != 0;
        }
        if dst.is_multicast() {
            let bit = ((dst.0[4] as usize >> 4) | (dst.0[5] as usize) << 4) & 0xfff;
            return fctrl & FCTRL_MPE != 0
                || self.regs.r(MTA + 4 * (bit >> 5)) & 1 << (bit & 31) != 0;
        }
        (0..RAR_ENTRIES).any(|i| {
            let hi = self.regs.r(RAL0 + 8 * i + 4);
            let lo = self.regs.r(RAL0 + 8 * i).to_le_bytes();
            let hb = hi.to_le_bytes();
            hi & RAH_AV != 0 && dst.0 == [lo[0], lo[1], lo[2], lo[3], hb[0], hb[1]]
        })
    }

    /// The RX queue and RSS hash (and type) of a frame, as MRQC, the key and RETA say.
    fn classify(&self, frame: &[u8]) -> (usize, u32, u64) {
        if self.regs.r(MRQC) & 0xf != 1 {
            return (0, 0, 0);
        }
        let key: Vec<u8> = (0..10)
            .flat_map(|i| self.regs.r(RSSRK + 4 * i).to_le_bytes())
            .collect();
        let Some(hash) = net::rss::hash_ipv4_frame(&key, frame) else {
            return (0, 0, 0);
        };
        let udp = frame.len() > 23 && frame[23] == 17;
        let entry = (hash & 0x7f) as usize;
        let q = (self.regs.r(RETA + 4 * (entry / 4)) >> (8 * (entry % 4))) & 0xf;
        let kind = if udp {
            RSS_TYPE_IPV4_UDP
        } else {
            RSS_TYPE_IPV4
        };
        (q as usize, hash, kind)
    }

    /// Takes frames from the wire into the RX rings; returns whether there was work.
    pub fn receive(&mut self, buf: &mut [u8]) -> bool {
        if let Wire::Generator { frame } = &self.wire {
            let frame = Arc::clone(frame);
            return self.generate(&frame);
        }
        let mut busy = false;
        for _ in 0..64 {
            let Wire::Udp { sock, .. } = &self.wire else {
                break;
            };
            let Ok(n) = sock.recv(buf) else { break };
            busy = true;
            self.wire_counts.arrived += 1;
            if n < 14 || !self.link_up() || self.regs.r(RXCTRL) & RXCTRL_RXEN == 0 {
                self.wire_counts.receiver_off += 1;
                continue;
            }
            let mut frame = buf[..n].to_vec();
            self.regs.add(TPR, 1);
            let dst = MacAddr([frame[0], frame[1], frame[2], frame[3], frame[4], frame[5]]);
            if !self.accepts(dst) {
                self.wire_counts.filtered += 1;
                continue;
            }
            if self.regs.r(HLREG0) & HLREG0_RXCRCSTRP == 0 {
                let crc = crc32(&frame);
                frame.extend_from_slice(&crc.to_le_bytes());
            }
            let (q, hash, kind) = self.classify(&frame);
            if self.deliver(q, &frame, hash, kind, 1) == 0 {
                self.wire_counts.missed += 1;
                self.regs.add(MPC0, 1);
                continue;
            }
            self.regs.add(GPRC, 1);
            self.regs.add64(GORCL, n as u64 + 4);
            if dst.0 == [0xff; 6] {
                self.regs.add(BPRC, 1);
            } else if dst.is_multicast() {
                self.regs.add(MPRC, 1);
            }
            self.interrupt(Cause::Queue { tx: false, q });
        }
        busy
    }

    /// The generator's frames into the RX rings, up to 256 at a time; returns whether there
    /// was room for any.
    fn generate(&mut self, frame: &[u8]) -> bool {
        if !self.link_up() || self.regs.r(RXCTRL) & RXCTRL_RXEN == 0 {
            return false;
        }
        let (q, hash, kind) = self.classify(frame);
        let n = self.deliver(q, frame, hash, kind, 256);
        self.regs.add(TPR, n);
        self.regs.add(GPRC, n);
        self.regs.add64(GORCL, n as u64 * (frame.len() as u64 + 4));
        n > 0
    }

    /// Writes up to `copies` copies of `frame` into RX queue `q`'s buffers, as many as the
    /// free descriptors hold; returns how many.
    fn deliver(&mut self, q: usize, frame: &[u8], hash: u32, kind: u64, copies: u32) -> u32 {
        let Some(ring) = self.rx[q] else { return 0 };
        let block = RX_QUEUES + QUEUE_STRIDE * q;
        let bufsize = ((self.regs.r(srrctl(q as u16)) & 0x1f) as usize * 1024).max(1024);
        let mut head = self.regs.r(block + DH) % ring.size;
        let tail = self.regs.r(block + DT) % ring.size;
        let free = (tail + ring.size - head) % ring.size;
        let need = frame.len().div_ceil(bufsize) as u32;
        let copies = copies.min(free / need);
        let chunks = || (0..copies).flat_map(|_| frame.chunks(bufsize).enumerate());
        // The data of the whole batch first, then its write-backs, as a NIC that writes
        // descriptors back in batches (the 82599's WTHRESH): a driver polling DD finds the
        // batch complete instead of chasing the model descriptor by descriptor, which would
        // bounce each descriptor line between the two CPUs while both work on it.
        let start = head;
        for (_, chunk) in chunks() {
            let Some(addr) = self
                .dma
                .desc(ring.base, head)
                .map(|d| d[0].load(Ordering::Acquire))
            else {
                return 0;
            };
            let Some(buf) = self.dma.slice(addr, chunk.len()) else {
                // The frame is dropped (counted by the caller); the descriptor stays free.
                return 0;
            };
            buf.copy_from_slice(chunk);
            head = (head + 1) % ring.size;
        }
        head = start;
        for (k, chunk) in chunks() {
            let last = k + 1 == need as usize;
            let Some(d) = self.dma.desc(ring.base, head) else {
                return 0;
            };
            d[0].store((hash as u64) << 32 | kind, Ordering::Relaxed);
            let status = RXD_STAT_DD | if last { RXD_STAT_EOP } else { 0 };
            let mut len = chunk.len() as u64;
            if last {
                self.evil_rx += 1;
                if self.evil.long_rx_len && self.evil_rx.is_multiple_of(EVIL_EVERY) {
                    len = bufsize as u64 + 1;
                }
            }
            // DD last: the write-back's second quadword is stored after the first.
            d[1].store(len << 32 | status, Ordering::Release);
            head = (head + 1) % ring.size;
        }
        if self.evil.unposted_dd && self.evil_rx % EVIL_EVERY == 3 {
            if let Some(d) = self.dma.desc(ring.base, tail) {
                d[1].store(RXD_STAT_DD | RXD_STAT_EOP, Ordering::Release);
            }
        }
        self.regs.w(block + DH, head);
        let set = self.stats_set(RQSMR, q);
        self.regs.add(qprc(set), copies);
        self.regs
            .add64(qbrc(set), copies as u64 * frame.len() as u64);
        copies
    }

    /// The statistics set queue `q` counts into, from the map at `map` (RQSMR or TQSM).
    fn stats_set(&self, map: usize, q: usize) -> usize {
        (self.regs.r(map + 4 * (q / 4)) >> (8 * (q % 4)) & 0xf) as usize
    }
}

/// EIMS/EIMC of a driver that writes them in place (shared-file ports): EIMS reads back
/// the mask (the model keeps it there); a value other than the mask is a driver's write,
/// whose 1s set bits. EIMC's 1s clear bits. Returns the new mask.
fn poll_interrupt_mask(regs: &Regs, old: u32) -> u32 {
    let written = regs.r(EIMS);
    let clear = regs.reg(EIMC).swap(0, Ordering::AcqRel);
    let mut eims = old & !clear;
    if written != old {
        // Both written since the last look: their order is lost. EIMS is taken as the
        // later one, the order drivers use (mask all at reset, unmask at start).
        eims |= written;
    }
    if eims != written {
        // Only if the driver did not write EIMS meanwhile; the next look takes that.
        let _ = regs
            .reg(EIMS)
            .compare_exchange(written, eims, Ordering::AcqRel, Ordering::Acquire);
    }
    eims
}

/// The Ethernet FCS (CRC-32, IEEE), appended when the driver does not ask to strip it.
fn crc32(data: &[u8]) -> u32 {
    let mut c = !0u32;
    for b in data {
        c ^= *b as u32;
        for _ in 0..8 {
            c = if c & 1 != 0 {
                (c >> 1) ^ 0xedb8_8320
            } else {
                c >> 1
            };
        }
    }
    !c
}
