//! A register-level model of the Intel 82599 for testing the ixgbe PMD: a test component,
//! not a driver. Each port's BAR 0 is a shared file that every process of the group maps
//! (`--vdev net_ixgbe_model<N>,bar=PATH`); one device thread watches the registers and
//! reacts as the datasheet describes:
//! - CTRL.RST / CTRL.LNK_RST reset the register file and self-clear; EEC.ARD (auto-read
//!   done) and RDRXCTL.DMAIDONE appear; the port's MAC is in RAL0/RAH0.
//! - AUTOC.AN_RESTART brings the link up 5 ms later (LINKS.UP, 10 Gb/s) unless the cable
//!   is unplugged (`link N down` on standard input); link changes set EICR.LSC and, when
//!   EIMS allows it, signal the interrupt eventfd handed out on `PATH.irq`.
//! - EIMS/EIMC set and clear the interrupt mask; the PMD reads clear-on-read registers
//!   (counters, EICR) with an atomic swap, the model adds to them atomically.
//! - RXDCTL/TXDCTL.ENABLE latch a queue's ring (base, length); a TX queue latches only with
//!   DMATXCTL.TE set.
//! - TX: descriptors from TDH to TDT are fetched from the group's memory, the frame leaves on
//!   the port's UDP socket, DD is written back where RS is set, TDH advances.
//! - RX (RXCTRL.RXEN): frames arriving on the UDP socket pass the filters (own address in the
//!   receive address table, broadcast with FCTRL.BAM, multicast with FCTRL.MPE or the MTA,
//!   anything with FCTRL.UPE), pick a queue by RSS (MRQC, key, RETA: Toeplitz over IPv4
//!   addresses and TCP/UDP ports), are written to the queue's buffers and written back
//!   (length, DD, EOP, RSS hash and type; a batch's write-backs after the batch's data, as
//!   with a write-back threshold); with no descriptor free they are dropped and
//!   counted in MPC. Statistics: GPRC/GORC/BPRC/MPRC/TPR, GPTC/GOTC/TPT, MPC.
//!
//! ```text
//! ixgbe_model --file-prefix PREFIX --port bar=PATH,udp=LISTEN:SEND[,mac=AA:BB:..] [--port ...]
//! ixgbe_model --file-prefix PREFIX --port bar=PATH,gen=LEN[,mac=AA:BB:..]
//! ```
//! With `udp=`, frames go out to 127.0.0.1:SEND and come in on 127.0.0.1:LISTEN, one per
//! datagram (as QEMU's `-netdev dgram`), so `port_helper udp-fwd` drives it. With `gen=` the
//! wire is a benchmark's traffic source and sink (`scripts/bench ixgbe`): every free RX
//! descriptor gets a LEN-byte UDP frame for the port's address, and what the port sends is
//! counted and dropped. The model maps the group's
//! memory (as a device reaches it by DMA) when a queue is first enabled. It prints `READY`
//! when the register files exist, and reads `link N up|down` and `quit` on standard input.

use drivers::intel::regs::ixgbe::*;
use drivers::intel::regs::*;
use eal::memory::GroupMemory;
use eal::vfio::Bar;
use net::MacAddr;
use std::io::BufRead;
use std::net::UdpSocket;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

const CTRL_RESET: u32 = CTRL_RST | CTRL_LNK_RST;
/// Receive address entries and queues the model serves (as many as the PMD uses).
const RAR_ENTRIES: usize = 16;
const QUEUES: usize = 16;

fn fail(msg: impl std::fmt::Display) -> ! {
    eprintln!("ixgbe_model: error: {msg}");
    std::process::exit(2)
}

/// BAR 0 of one port: a register file in a shared file, mapped as the PMD maps it.
struct Regs {
    bar: Bar,
}

impl Regs {
    fn create(path: &str) -> Regs {
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)
            .unwrap_or_else(|e| fail(format!("{path}: {e}")));
        f.set_len(BAR_LEN as u64)
            .unwrap_or_else(|e| fail(format!("{path}: {e}")));
        let bar = Bar::map_emulated(std::path::Path::new(path), BAR_LEN)
            .unwrap_or_else(|e| fail(format!("map {path}: {e}")));
        Regs { bar }
    }

    fn reg(&self, off: usize) -> &AtomicU32 {
        assert!(off.is_multiple_of(4), "register {off:#x}");
        // SAFETY: inside the mapping (`ptr` checks) and aligned (checked); the mapping
        // lives as long as `self`; the PMD's processes access the same words with single
        // aligned accesses.
        unsafe { &*(self.bar.ptr(off) as *const AtomicU32) }
    }
    fn r(&self, off: usize) -> u32 {
        self.reg(off).load(Ordering::Acquire)
    }
    fn w(&self, off: usize, v: u32) {
        self.reg(off).store(v, Ordering::Release)
    }
    fn add(&self, off: usize, n: u32) {
        self.reg(off).fetch_add(n, Ordering::AcqRel);
    }
    /// A 64-bit counter kept in a low and a high register.
    fn add64(&self, off: usize, n: u64) {
        let lo = self.reg(off).fetch_add(n as u32, Ordering::AcqRel);
        let carry = (lo as u64 + (n & 0xffff_ffff)) >> 32;
        self.add(off + 4, ((n >> 32) + carry) as u32);
    }
}

/// A ring the device latched when its queue was enabled.
#[derive(Clone, Copy)]
struct Ring {
    base: u64,
    size: u32,
}

struct Port {
    id: usize,
    regs: Regs,
    mac: MacAddr,
    wire: Wire,
    irq: OwnedFd,
    cable: Arc<AtomicBool>,
    link_up_at: Option<Instant>,
    eims: u32,
    rx: [Option<Ring>; QUEUES],
    tx: [Option<Ring>; QUEUES],
}

/// Where a port's frames come from and go to.
enum Wire {
    /// One frame per datagram on 127.0.0.1.
    Udp {
        sock: UdpSocket,
        peer: (std::net::Ipv4Addr, u16),
    },
    /// A copy of `frame` for every free RX descriptor, as fast as the model runs: a source
    /// that never outruns the ring, so nothing is missed (whether the driver finds full
    /// bursts depends on which side is faster); sent frames are counted and dropped.
    Generator { frame: Vec<u8> },
}

/// A UDP frame of `len` bytes (Ethernet to IPv4 198.18.0.1 -> .2, ports 9 -> 9) for `dst`.
fn generator_frame(len: usize, dst: MacAddr) -> Vec<u8> {
    let mut f = vec![0u8; len.max(60)];
    f[0..6].copy_from_slice(&dst.0);
    f[6..12].copy_from_slice(&[0x02, 0, 0, 0, 0, 0x99]);
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    let ip_len = (f.len() - 14) as u16;
    f[14] = 0x45;
    f[16..18].copy_from_slice(&ip_len.to_be_bytes());
    f[22] = 64;
    f[23] = 17;
    f[26..30].copy_from_slice(&[198, 18, 0, 1]);
    f[30..34].copy_from_slice(&[198, 18, 0, 2]);
    f[34..36].copy_from_slice(&9u16.to_be_bytes());
    f[36..38].copy_from_slice(&9u16.to_be_bytes());
    f[38..40].copy_from_slice(&(ip_len - 20).to_be_bytes());
    f
}

/// Pages whose translation the model keeps (as a device's IOTLB would): looking each DMA
/// address up in the group's page table costs more than the rest of a 64-byte frame's work,
/// and a benchmark's traffic source must outrun the driver.
const TLB_ENTRIES: usize = 64;

/// The group's memory as the device reaches it, mapped when first needed.
struct Dma {
    prefix: String,
    mem: Option<GroupMemory>,
    /// (IOVA of a page, its address here), by page number modulo TLB_ENTRIES; 0: none.
    tlb: [(u64, usize); TLB_ENTRIES],
    /// log2 of the group's page size, once the memory is mapped (0 before).
    page_shift: u32,
}

impl Dma {
    fn new(prefix: String) -> Dma {
        Dma {
            prefix,
            mem: None,
            tlb: [(0, 0); TLB_ENTRIES],
            page_shift: 0,
        }
    }
    /// Maps the group's memory, on the first DMA.
    #[cold]
    #[inline(never)]
    fn attach(&mut self) {
        let mem = GroupMemory::attach(&self.prefix)
            .unwrap_or_else(|e| fail(format!("DMA to group '{}': {e}", self.prefix)));
        self.page_shift = mem.page_size().trailing_zeros();
        self.mem = Some(mem);
    }
    /// Where `len` bytes at `iova` are here, if they lie in one page of the group's memory.
    #[inline]
    fn virt(&mut self, iova: u64, len: usize) -> Option<*mut u8> {
        if self.page_shift == 0 {
            self.attach();
        }
        // Page sizes are powers of two: shifts, not divisions, on this path.
        let page_size = 1u64 << self.page_shift;
        let off = iova & (page_size - 1);
        if off + len as u64 > page_size {
            return None;
        }
        let page = iova - off;
        let slot = &mut self.tlb[(iova >> self.page_shift) as usize % TLB_ENTRIES];
        if slot.1 == 0 || slot.0 != page {
            let va = self.mem.as_ref()?.iova_to_virt(page, page_size)?;
            *slot = (page, va as usize);
        }
        Some((slot.1 + off as usize) as *mut u8)
    }
    fn slice(&mut self, iova: u64, len: usize) -> &mut [u8] {
        let p = self
            .virt(iova, len)
            .unwrap_or_else(|| fail(format!("DMA to {iova:#x}+{len} outside the group's memory")));
        // SAFETY: `len` bytes of the group's memory (checked by iova_to_virt), a buffer the
        // driver gave the device; the driver does not touch it until the device hands it back.
        unsafe { std::slice::from_raw_parts_mut(p, len) }
    }
    /// Descriptor i of `ring`, as two quadwords.
    fn desc(&mut self, ring: Ring, i: u32) -> &[AtomicU64; 2] {
        let p = self.virt(ring.base + 16 * i as u64, 16).unwrap_or_else(|| {
            fail(format!(
                "descriptor ring at {:#x} outside the group's memory",
                ring.base
            ))
        });
        // SAFETY: 16 aligned bytes of the group's memory (the ring is 128-byte aligned); the
        // driver reads and writes descriptors with single aligned accesses too.
        unsafe { &*(p as *const [AtomicU64; 2]) }
    }
}

impl Port {
    fn reset(&mut self) {
        // SAFETY: the whole register file is ours to clear; no other thread of the model
        // touches this port.
        unsafe { std::ptr::write_bytes(self.regs.bar.ptr(0), 0, BAR_LEN) };
        let m = self.mac.0;
        self.regs
            .w(RAL0, u32::from_le_bytes([m[0], m[1], m[2], m[3]]));
        self.regs
            .w(RAL0 + 4, u32::from_le_bytes([m[4], m[5], 0, 0]) | 1 << 31);
        self.regs.w(EEC, EEC_PRES | EEC_ARD);
        self.regs.w(RDRXCTL, RDRXCTL_DMAIDONE);
        self.eims = 0;
        self.link_up_at = None;
        self.rx = [None; QUEUES];
        self.tx = [None; QUEUES];
    }

    fn link_up(&self) -> bool {
        self.regs.r(LINKS) & LINKS_UP != 0
    }

    fn set_link(&mut self, up: bool) {
        if up == self.link_up() {
            return;
        }
        self.regs
            .w(LINKS, if up { LINKS_UP | LINKS_SPEED_10G } else { 0 });
        self.regs.reg(EICR).fetch_or(EICR_LSC, Ordering::AcqRel);
        if self.eims & EICR_LSC != 0 {
            let one = 1u64.to_ne_bytes();
            // SAFETY: an 8-byte write from a local buffer to our eventfd.
            unsafe { libc::write(self.irq.as_raw_fd(), one.as_ptr().cast(), 8) };
        }
        println!("port {} link {}", self.id, if up { "up" } else { "down" });
    }

    /// Reacts to what the driver wrote since the last look.
    fn control(&mut self) {
        let ctrl = self.regs.r(CTRL);
        if ctrl & CTRL_RESET != 0 {
            self.reset();
            return;
        }
        let autoc = self.regs.r(AUTOC);
        if autoc & AUTOC_AN_RESTART != 0 {
            self.regs.w(AUTOC, autoc & !AUTOC_AN_RESTART);
            self.link_up_at = Some(Instant::now() + Duration::from_millis(5));
        }
        // Up once auto-negotiation completed, while the cable is in.
        let negotiated = self.link_up_at.is_some_and(|t| Instant::now() >= t);
        self.set_link(negotiated && self.cable.load(Ordering::Acquire));
        // EIMS reads back the mask (the model keeps it there); a value other than the mask
        // is a driver's write, whose 1s set bits. EIMC's 1s clear bits.
        let written = self.regs.r(EIMS);
        let clear = self.regs.reg(EIMC).swap(0, Ordering::AcqRel);
        let mut eims = self.eims & !clear;
        if written != self.eims {
            // Both written since the last look: their order is lost. EIMS is taken as the
            // later one, the order drivers use (mask all at reset, unmask at start).
            eims |= written;
        }
        if eims != written {
            // Only if the driver did not write EIMS meanwhile; the next look takes that.
            let _ = self.regs.reg(EIMS).compare_exchange(
                written,
                eims,
                Ordering::AcqRel,
                Ordering::Acquire,
            );
        }
        self.eims = eims;
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
            let base = self.regs.r(block + DBAL) as u64 | (self.regs.r(block + DBAH) as u64) << 32;
            Some(Ring {
                base,
                size: self.regs.r(block + DLEN) / 16,
            })
        })
    }

    /// Sends what the TX rings hold; returns whether there was work.
    fn transmit(&mut self, dma: &mut Dma) -> bool {
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
            let tail = self.regs.r(tail_reg);
            let mut head = self.regs.r(head_reg);
            let mut i = head;
            let (mut frames, mut bytes, mut frame_len) = (0, 0, 0);
            frame.clear();
            while i != tail {
                let d = dma.desc(ring, i);
                let addr = d[0].load(Ordering::Acquire);
                let cmd = d[1].load(Ordering::Acquire);
                let len = (cmd & 0xffff) as usize;
                let data = dma.slice(addr, len);
                frame_len += len;
                // The generator's sink counts the bytes and drops the frame uncopied.
                if let Wire::Udp { .. } = self.wire {
                    frame.extend_from_slice(data);
                }
                if cmd & TXD_CMD_RS != 0 {
                    dma.desc(ring, i)[1].store(cmd | TXD_STAT_DD, Ordering::Release);
                }
                i = (i + 1) % ring.size;
                if cmd & TXD_CMD_EOP != 0 {
                    if let Wire::Udp { sock, peer } = &self.wire {
                        let _ = sock.send_to(&frame, *peer);
                    }
                    frames += 1;
                    bytes += frame_len as u64 + 4;
                    frame_len = 0;
                    frame.clear();
                    head = i;
                }
            }
            // Head and counters once per pass: each is a write the driver's CPU may see.
            if frames > 0 {
                self.regs.w(head_reg, head);
                self.regs.add(GPTC, frames);
                self.regs.add(TPT, frames);
                self.regs.add64(GOTCL, bytes);
                busy = true;
            }
        }
        busy
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
            hi & 1 << 31 != 0 && dst.0 == [lo[0], lo[1], lo[2], lo[3], hb[0], hb[1]]
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
    fn receive(&mut self, dma: &mut Dma, buf: &mut [u8]) -> bool {
        let sock = match &self.wire {
            Wire::Udp { sock, .. } => sock,
            Wire::Generator { frame } => return self.generate(dma, frame),
        };
        let mut busy = false;
        for _ in 0..64 {
            let Ok(n) = sock.recv(buf) else { break };
            busy = true;
            if n < 14 || !self.link_up() || self.regs.r(RXCTRL) & RXCTRL_RXEN == 0 {
                continue;
            }
            let mut frame = buf[..n].to_vec();
            self.regs.add(TPR, 1);
            let dst = MacAddr([frame[0], frame[1], frame[2], frame[3], frame[4], frame[5]]);
            if !self.accepts(dst) {
                continue;
            }
            if self.regs.r(HLREG0) & HLREG0_RXCRCSTRP == 0 {
                let crc = crc32(&frame);
                frame.extend_from_slice(&crc.to_le_bytes());
            }
            let (q, hash, kind) = self.classify(&frame);
            if self.deliver(dma, q, &frame, hash, kind, 1) == 0 {
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
        }
        busy
    }

    /// The generator's frames into the RX rings, up to 256 at a time; returns whether there
    /// was room for any.
    fn generate(&self, dma: &mut Dma, frame: &[u8]) -> bool {
        if !self.link_up() || self.regs.r(RXCTRL) & RXCTRL_RXEN == 0 {
            return false;
        }
        let (q, hash, kind) = self.classify(frame);
        let n = self.deliver(dma, q, frame, hash, kind, 256);
        self.regs.add(TPR, n);
        self.regs.add(GPRC, n);
        self.regs.add64(GORCL, n as u64 * (frame.len() as u64 + 4));
        n > 0
    }

    /// Writes up to `copies` copies of `frame` into RX queue `q`'s buffers, as many as the
    /// free descriptors hold; returns how many.
    fn deliver(
        &self,
        dma: &mut Dma,
        q: usize,
        frame: &[u8],
        hash: u32,
        kind: u64,
        copies: u32,
    ) -> u32 {
        let Some(ring) = self.rx[q] else { return 0 };
        let block = RX_QUEUES + QUEUE_STRIDE * q;
        let bufsize = ((self.regs.r(srrctl(q as u16)) & 0x1f) as usize * 1024).max(1024);
        let mut head = self.regs.r(block + DH);
        let tail = self.regs.r(block + DT);
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
            let addr = dma.desc(ring, head)[0].load(Ordering::Acquire);
            dma.slice(addr, chunk.len()).copy_from_slice(chunk);
            head = (head + 1) % ring.size;
        }
        head = start;
        for (k, chunk) in chunks() {
            let last = k + 1 == need as usize;
            let d = dma.desc(ring, head);
            d[0].store((hash as u64) << 32 | kind, Ordering::Relaxed);
            let status = RXD_STAT_DD | if last { RXD_STAT_EOP } else { 0 };
            // DD last: the write-back's second quadword is stored after the first.
            d[1].store((chunk.len() as u64) << 32 | status, Ordering::Release);
            head = (head + 1) % ring.size;
        }
        self.regs.w(block + DH, head);
        copies
    }
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

/// Hands a copy of the port's interrupt eventfd to each process that connects to `path`.
fn serve_irq(path: String, irq: OwnedFd) {
    let _ = std::fs::remove_file(&path);
    let l = std::os::unix::net::UnixListener::bind(&path)
        .unwrap_or_else(|e| fail(format!("{path}: {e}")));
    std::thread::spawn(move || {
        for c in l.incoming().flatten() {
            if let Ok(fd) = irq.try_clone() {
                let _ = eal::ipc::send_raw(c.as_raw_fd(), b"irq", &[fd]);
            }
        }
    });
}

struct PortSpec {
    bar: String,
    listen: u16,
    send: u16,
    generate: Option<usize>,
    mac: MacAddr,
}

const PORT_USAGE: &str = "give bar=PATH and one of udp=LISTEN:SEND or gen=LEN[,mac=..]";

fn parse_port(i: usize, s: &str) -> PortSpec {
    let mut spec = PortSpec {
        bar: String::new(),
        listen: 0,
        send: 0,
        generate: None,
        mac: MacAddr([0x52, 0x54, 0x00, 0x82, 0x59, i as u8]),
    };
    for kv in s.split(',') {
        match kv.split_once('=') {
            Some(("bar", v)) => spec.bar = v.into(),
            Some(("udp", v)) => {
                let (l, r) = v.split_once(':').unwrap_or_else(|| fail("udp=LISTEN:SEND"));
                spec.listen = l.parse().unwrap_or_else(|e| fail(format!("udp={v}: {e}")));
                spec.send = r.parse().unwrap_or_else(|e| fail(format!("udp={v}: {e}")));
            }
            Some(("gen", v)) => {
                let len = v.parse().unwrap_or_else(|e| fail(format!("gen={v}: {e}")));
                if !(60..=9000).contains(&len) {
                    fail(format!("gen={v}: give a frame length from 60 to 9000"));
                }
                spec.generate = Some(len);
            }
            Some(("mac", v)) => {
                spec.mac = v.parse().unwrap_or_else(|e| fail(format!("mac={v}: {e}")))
            }
            _ => fail(format!("--port {s}: {PORT_USAGE}")),
        }
    }
    if spec.bar.is_empty() || (spec.listen == 0) == spec.generate.is_none() {
        fail(format!("--port {s}: {PORT_USAGE}"));
    }
    spec
}

/// The non-blocking socket a port's frames arrive on.
fn udp_socket(port: u16) -> UdpSocket {
    let sock = UdpSocket::bind(("127.0.0.1", port))
        .unwrap_or_else(|e| fail(format!("udp 127.0.0.1:{port}: {e}")));
    sock.set_nonblocking(true).unwrap_or_else(|e| fail(e));
    // The wire's frames wait here while the processes under test hold the CPUs.
    let big: i32 = 64 << 20;
    // SAFETY: sets an integer option on our socket.
    unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            (&big as *const i32).cast(),
            4,
        )
    };
    sock
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut prefix = "rpmd".to_string();
    let mut specs = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--file-prefix" => {
                prefix = it
                    .next()
                    .cloned()
                    .unwrap_or_else(|| fail("--file-prefix NAME"))
            }
            "--port" => {
                let s = it
                    .next()
                    .unwrap_or_else(|| fail(format!("--port: {PORT_USAGE}")));
                specs.push(parse_port(specs.len(), s));
            }
            other => fail(format!("unknown argument '{other}'")),
        }
    }
    if specs.is_empty() {
        fail(format!("give at least one --port: {PORT_USAGE}"));
    }
    let mut ports: Vec<Port> = specs
        .into_iter()
        .enumerate()
        .map(|(id, s)| {
            let wire = match s.generate {
                Some(len) => Wire::Generator {
                    frame: generator_frame(len, s.mac),
                },
                None => Wire::Udp {
                    sock: udp_socket(s.listen),
                    peer: (std::net::Ipv4Addr::LOCALHOST, s.send),
                },
            };
            // SAFETY: plain syscall; the fd is owned right away.
            let efd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
            if efd < 0 {
                fail(std::io::Error::last_os_error());
            }
            // SAFETY: a new fd nobody else owns.
            let irq = unsafe { OwnedFd::from_raw_fd(efd) };
            let served = irq.try_clone().unwrap_or_else(|e| fail(e));
            serve_irq(format!("{}.irq", s.bar), served);
            let mut p = Port {
                id,
                regs: Regs::create(&s.bar),
                mac: s.mac,
                wire,
                irq,
                cable: Arc::new(AtomicBool::new(true)),
                link_up_at: None,
                eims: 0,
                rx: [None; QUEUES],
                tx: [None; QUEUES],
            };
            p.reset();
            p
        })
        .collect();
    let cables: Vec<Arc<AtomicBool>> = ports.iter().map(|p| p.cable.clone()).collect();
    let (quit_tx, quit_rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines().map_while(Result::ok) {
            let w: Vec<&str> = line.split_whitespace().collect();
            match w.as_slice() {
                ["link", n, state] => {
                    match (n.parse::<usize>().ok().and_then(|n| cables.get(n)), *state) {
                        (Some(c), "up") => c.store(true, Ordering::Release),
                        (Some(c), "down") => c.store(false, Ordering::Release),
                        _ => eprintln!("ixgbe_model: link N up|down"),
                    }
                }
                ["quit"] => break,
                _ => eprintln!("ixgbe_model: unknown command '{line}'"),
            }
        }
        let _ = quit_tx.send(());
    });
    println!("READY");
    let mut dma = Dma::new(prefix);
    let mut buf = vec![0u8; 65536];
    let mut idle = 0u32;
    while quit_rx.try_recv().is_err() {
        let mut busy = false;
        for p in ports.iter_mut() {
            p.control();
            busy |= p.transmit(&mut dma);
            busy |= p.receive(&mut dma, &mut buf);
        }
        // Spin briefly when there was work, then back off so that the model leaves the
        // CPUs to the processes under test.
        idle = if busy { 0 } else { idle + 1 };
        if idle > 100 {
            std::thread::sleep(Duration::from_micros(50));
        }
    }
}
