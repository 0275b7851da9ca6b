//! The modern virtio PCI transport (virtio 1.x, section 4.1) over VFIO.
//!
//! The device describes where its register blocks are with vendor capabilities in PCI
//! config space: common configuration, notifications, ISR and device configuration, each
//! a window into one BAR. Each process maps the BARs itself; nothing here is shared.

use super::transport::Transport;
use super::virtqueue::{Notifier, VqShared};
use eal::options::PciAddr;
use eal::vfio::{Bar, VfioDevice};
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

const PCI_STATUS: u64 = 0x06;
const PCI_STATUS_CAP_LIST: u16 = 0x10;
const PCI_CAPABILITY_LIST: u64 = 0x34;
const PCI_CAP_ID_VNDR: u8 = 0x09;

const CAP_COMMON_CFG: u8 = 1;
const CAP_NOTIFY_CFG: u8 = 2;
const CAP_ISR_CFG: u8 = 3;
const CAP_DEVICE_CFG: u8 = 4;

// Common configuration registers (struct virtio_pci_common_cfg).
const DEVICE_FEATURE_SELECT: usize = 0x00;
const DEVICE_FEATURE: usize = 0x04;
const DRIVER_FEATURE_SELECT: usize = 0x08;
const DRIVER_FEATURE: usize = 0x0c;
const MSIX_CONFIG: usize = 0x10;
const NUM_QUEUES: usize = 0x12;
const DEVICE_STATUS: usize = 0x14;
const CONFIG_GENERATION: usize = 0x15;
const QUEUE_SELECT: usize = 0x16;
const QUEUE_SIZE: usize = 0x18;
const QUEUE_MSIX_VECTOR: usize = 0x1a;
const QUEUE_ENABLE: usize = 0x1c;
const QUEUE_NOTIFY_OFF: usize = 0x1e;
const QUEUE_DESC: usize = 0x20;
const QUEUE_DRIVER: usize = 0x28;
const QUEUE_DEVICE: usize = 0x30;

/// "No MSI-X vector" for a queue or the config space.
pub const NO_VECTOR: u16 = 0xffff;

/// One capability: a window of `len` bytes at `offset` in BAR `bar`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    /// The BAR.
    pub bar: u8,
    /// Offset in the BAR.
    pub offset: u32,
    /// Length in bytes.
    pub len: u32,
}

/// The windows a modern device offers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Caps {
    /// The common configuration.
    pub common: Window,
    /// The notification area.
    pub notify: Window,
    /// Bytes between two queues' notify registers.
    pub notify_multiplier: u32,
    /// The ISR status byte.
    pub isr: Window,
    /// The device-specific (virtio-net) configuration.
    pub device: Window,
}

/// Finds the virtio capabilities in config space (`cfg` reads `len` bytes at an offset).
pub fn parse_caps(read: impl Fn(u64, &mut [u8]) -> bool) -> Option<Caps> {
    let mut b2 = [0u8; 2];
    if !read(PCI_STATUS, &mut b2) || u16::from_le_bytes(b2) & PCI_STATUS_CAP_LIST == 0 {
        return None;
    }
    let mut b1 = [0u8; 1];
    if !read(PCI_CAPABILITY_LIST, &mut b1) {
        return None;
    }
    let (mut common, mut notify, mut isr, mut device, mut mult) = (None, None, None, None, 0);
    let mut pos = b1[0] as u64 & !3;
    let mut hops = 0;
    while pos != 0 && hops < 48 {
        let mut cap = [0u8; 20];
        if !read(pos, &mut cap) {
            return None;
        }
        if cap[0] == PCI_CAP_ID_VNDR {
            let w = Window {
                bar: cap[4],
                offset: u32::from_le_bytes([cap[8], cap[9], cap[10], cap[11]]),
                len: u32::from_le_bytes([cap[12], cap[13], cap[14], cap[15]]),
            };
            // The first capability of each type is the preferred one.
            match cap[3] {
                CAP_COMMON_CFG if common.is_none() => common = Some(w),
                CAP_NOTIFY_CFG if notify.is_none() => {
                    notify = Some(w);
                    mult = u32::from_le_bytes([cap[16], cap[17], cap[18], cap[19]]);
                }
                CAP_ISR_CFG if isr.is_none() => isr = Some(w),
                CAP_DEVICE_CFG if device.is_none() => device = Some(w),
                _ => {}
            }
        }
        pos = cap[1] as u64 & !3;
        hops += 1;
    }
    Some(Caps {
        common: common?,
        notify: notify?,
        notify_multiplier: mult,
        isr: isr?,
        device: device?,
    })
}

/// A virtio device on PCI, as mapped in this process.
pub struct VirtioPci {
    dev: Arc<VfioDevice>,
    caps: Caps,
    /// Mapped BARs, by index (only those the capabilities use).
    bars: Vec<Option<Bar>>,
    /// Interrupts go through MSI-X (else INTx, which must be re-armed).
    msix: AtomicBool,
}

impl VirtioPci {
    /// Opens and maps the device (primary or secondary).
    pub fn open(addr: PciAddr) -> Result<VirtioPci, String> {
        let dev = VfioDevice::open(addr).map_err(|e| e.to_string())?;
        let caps = parse_caps(|off, buf| dev.config_read(off, buf).is_ok()).ok_or_else(|| {
            format!("{addr} has no virtio 1.0 capabilities: only modern devices are supported (QEMU: disable-legacy=on)")
        })?;
        let mut bars: Vec<Option<Bar>> = (0..6).map(|_| None).collect();
        for w in [caps.common, caps.notify, caps.isr, caps.device] {
            let b = w.bar as usize;
            if b >= bars.len() {
                return Err(format!(
                    "{addr}: capability in BAR {b}, which does not exist"
                ));
            }
            if bars[b].is_none() {
                bars[b] = Some(dev.map_bar(w.bar as u32).map_err(|e| e.to_string())?);
            }
            let len = bars[b].as_ref().map_or(0, |m| m.len());
            if w.offset as usize + w.len as usize > len {
                return Err(format!("{addr}: capability window outside BAR {b}"));
            }
        }
        Ok(VirtioPci {
            dev,
            caps,
            bars,
            msix: AtomicBool::new(false),
        })
    }

    /// The VFIO device behind the transport.
    pub fn device(&self) -> &Arc<VfioDevice> {
        &self.dev
    }

    fn bar(&self, w: Window) -> &Bar {
        match &self.bars[w.bar as usize] {
            Some(b) => b,
            None => unreachable!("every capability's BAR is mapped in open"),
        }
    }

    fn common(&self) -> (&Bar, usize) {
        (self.bar(self.caps.common), self.caps.common.offset as usize)
    }

    /// Reads (and so clears) the ISR status: bit 0 queue, bit 1 configuration change.
    pub fn read_isr(&self) -> u8 {
        self.bar(self.caps.isr).read8(self.caps.isr.offset as usize)
    }

    /// Routes configuration-change interrupts to MSI-X vector `v` (or none).
    pub fn set_config_vector(&self, v: u16) -> bool {
        let (b, o) = self.common();
        b.write16(o + MSIX_CONFIG, v);
        b.read16(o + MSIX_CONFIG) == v
    }
}

impl Transport for VirtioPci {
    fn describe(&self) -> String {
        self.dev.addr().to_string()
    }
    fn status(&self) -> u8 {
        let (b, o) = self.common();
        b.read8(o + DEVICE_STATUS)
    }
    fn set_status(&self, s: u8) -> Result<(), String> {
        let (b, o) = self.common();
        b.write8(o + DEVICE_STATUS, s);
        Ok(())
    }
    fn reset(&self) {
        let (b, o) = self.common();
        b.write8(o + DEVICE_STATUS, 0);
        // The device finishes its reset when the status reads back 0.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(1);
        while self.status() != 0 && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_micros(100));
        }
    }
    fn device_features(&self) -> u64 {
        let (b, o) = self.common();
        b.write32(o + DEVICE_FEATURE_SELECT, 0);
        let lo = b.read32(o + DEVICE_FEATURE) as u64;
        b.write32(o + DEVICE_FEATURE_SELECT, 1);
        let hi = b.read32(o + DEVICE_FEATURE) as u64;
        hi << 32 | lo
    }
    fn set_driver_features(&self, f: u64) {
        let (b, o) = self.common();
        b.write32(o + DRIVER_FEATURE_SELECT, 0);
        b.write32(o + DRIVER_FEATURE, f as u32);
        b.write32(o + DRIVER_FEATURE_SELECT, 1);
        b.write32(o + DRIVER_FEATURE, (f >> 32) as u32);
    }
    fn read_config(&self, off: usize, buf: &mut [u8]) {
        let w = self.caps.device;
        let bar = self.bar(w);
        let (cb, co) = self.common();
        // Re-read until the generation is stable: the device may change the config midway.
        loop {
            let gen = cb.read8(co + CONFIG_GENERATION);
            for (i, byte) in buf.iter_mut().enumerate() {
                *byte = bar.read8(w.offset as usize + off + i);
            }
            if cb.read8(co + CONFIG_GENERATION) == gen {
                return;
            }
        }
    }
    fn num_queues(&self) -> u16 {
        let (b, o) = self.common();
        b.read16(o + NUM_QUEUES)
    }
    fn max_queue_size(&self, q: u16) -> u16 {
        let (b, o) = self.common();
        b.write16(o + QUEUE_SELECT, q);
        b.read16(o + QUEUE_SIZE)
    }
    fn enable_queue(&self, q: u16, vq: &'static VqShared) -> Result<(), String> {
        let (b, o) = self.common();
        b.write16(o + QUEUE_SELECT, q);
        let max = b.read16(o + QUEUE_SIZE);
        if vq.size() > max || max == 0 {
            return Err(format!(
                "queue {q}: {} descriptors asked, the device takes at most {max}",
                vq.size()
            ));
        }
        let (desc, avail, used) = vq.ring_addrs();
        let iova = |va: u64| eal::eal().map_or(va, |e| e.config().virt_to_iova(va));
        let (desc, avail, used) = (iova(desc), iova(avail), iova(used));
        b.write16(o + QUEUE_SIZE, vq.size());
        b.write64(o + QUEUE_DESC, desc);
        b.write64(o + QUEUE_DRIVER, avail);
        b.write64(o + QUEUE_DEVICE, used);
        b.write16(o + QUEUE_MSIX_VECTOR, NO_VECTOR);
        b.write16(o + QUEUE_ENABLE, 1);
        Ok(())
    }
    fn config_interrupt(&self) -> Option<OwnedFd> {
        let (mut fds, msix) = match self.dev.enable_interrupts(1) {
            Ok(r) => r,
            Err(e) => {
                log::warn!(
                    "{}: no interrupts, link changes are seen by polling: {e}",
                    self.describe()
                );
                return None;
            }
        };
        if msix && !self.set_config_vector(0) {
            log::warn!(
                "{}: the device refused MSI-X vector 0 for configuration changes",
                self.describe()
            );
            self.dev.disable_interrupts(true);
            return None;
        }
        self.msix.store(msix, Ordering::Relaxed);
        log::debug!(
            "{}: configuration interrupts through {}",
            self.describe(),
            if msix { "MSI-X" } else { "INTx" }
        );
        fds.pop()
    }
    fn ack_interrupt(&self) {
        let _ = self.read_isr();
        if !self.msix.load(Ordering::Relaxed) {
            if let Err(e) = self.dev.unmask_intx() {
                log::debug!("{}: {e}", self.describe());
            }
        }
    }
    fn disable_interrupts(&self) {
        self.dev
            .disable_interrupts(self.msix.load(Ordering::Relaxed));
    }
    fn notifier(&self, q: u16) -> Notifier {
        let (b, o) = self.common();
        b.write16(o + QUEUE_SELECT, q);
        let off = b.read16(o + QUEUE_NOTIFY_OFF) as usize;
        let w = self.caps.notify;
        let reg = self
            .bar(w)
            .ptr(w.offset as usize + off * self.caps.notify_multiplier as usize);
        Notifier::Mmio {
            reg: reg as *mut u16,
            value: q,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Config space with the capabilities QEMU's virtio-net-pci shows (BAR 4 windows).
    fn qemu_like_config() -> Vec<u8> {
        let mut c = vec![0u8; 256];
        c[0x06] = 0x10; // capability list present
        c[0x34] = 0x84; // MSI-X first, then the vendor caps, as QEMU orders them
        c[0x84] = 0x11; // MSI-X
        c[0x85] = 0x70;
        let vcap = |c: &mut Vec<u8>, at: usize, next: u8, ty: u8, off: u32, len: u32| {
            c[at] = PCI_CAP_ID_VNDR;
            c[at + 1] = next;
            c[at + 2] = 16;
            c[at + 3] = ty;
            c[at + 4] = 4;
            c[at + 8..at + 12].copy_from_slice(&off.to_le_bytes());
            c[at + 12..at + 16].copy_from_slice(&len.to_le_bytes());
        };
        vcap(&mut c, 0x70, 0x60, CAP_NOTIFY_CFG, 0x3000, 0x1000);
        c[0x70 + 16..0x70 + 20].copy_from_slice(&4u32.to_le_bytes());
        vcap(&mut c, 0x60, 0x50, CAP_DEVICE_CFG, 0x2000, 0x1000);
        vcap(&mut c, 0x50, 0x40, CAP_ISR_CFG, 0x1000, 0x1000);
        vcap(&mut c, 0x40, 0x00, CAP_COMMON_CFG, 0x0, 0x1000);
        c
    }

    fn reader(c: &[u8]) -> impl Fn(u64, &mut [u8]) -> bool + '_ {
        move |off, buf| {
            let off = off as usize;
            match c.get(off..off + buf.len()) {
                Some(s) => {
                    buf.copy_from_slice(s);
                    true
                }
                None => false,
            }
        }
    }

    #[test]
    fn finds_the_four_windows() {
        let c = qemu_like_config();
        let caps = parse_caps(reader(&c)).unwrap();
        let w = |offset, len| Window {
            bar: 4,
            offset,
            len,
        };
        assert_eq!(caps.common, w(0, 0x1000));
        assert_eq!(caps.isr, w(0x1000, 0x1000));
        assert_eq!(caps.device, w(0x2000, 0x1000));
        assert_eq!(caps.notify, w(0x3000, 0x1000));
        assert_eq!(caps.notify_multiplier, 4);
    }

    #[test]
    fn legacy_device_or_loop_is_refused() {
        let mut c = qemu_like_config();
        c[0x40 + 3] = 9; // no common configuration: a legacy-only device
        assert_eq!(parse_caps(reader(&c)), None);
        let mut c = qemu_like_config();
        c[0x41] = 0x40; // a capability pointing at itself ends after a bounded walk
        c[0x40 + 3] = 9;
        assert_eq!(parse_caps(reader(&c)), None);
        let mut c = qemu_like_config();
        c[0x06] = 0;
        assert_eq!(parse_caps(reader(&c)), None);
    }
}
