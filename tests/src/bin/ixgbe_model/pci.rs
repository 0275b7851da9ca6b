//! The PCI function's configuration space, with the capabilities an 82599 port has at the
//! offsets it has them (82599 datasheet, section 9): power management at 0x40, MSI at
//! 0x50, MSI-X at 0x70 (64 vectors, table at 0 and PBA at 0x2000 of BAR 4), PCI Express
//! at 0xA0 (an x8 link at 5 GT/s, function-level reset). Drivers read some of these at
//! fixed offsets (Linux's ixgbe reads the link status word at 0xB2).
//!
//! Each byte has a write mask: read-only bytes ignore writes, BAR bits below the BAR's
//! size read back as 0 (so sizing a BAR works as on hardware).

/// Device id: 82599 KX4 (backplane): its media needs no SFP+ module identification.
pub const DEVICE_ID: u16 = 0x10f7;
pub const VENDOR_ID: u16 = 0x8086;
pub const CONFIG_LEN: usize = 4096;
pub const BAR4_LEN: u64 = 0x4000;
pub const MSIX_VECTORS: u32 = 64;

const PM: usize = 0x40;
const MSI: usize = 0x50;
const MSIX: usize = 0x70;
const PCIE: usize = 0xa0;
const DEVCTL: usize = PCIE + 0x08;
const DEVCTL_FLR: u16 = 1 << 15;

pub struct Config {
    bytes: [u8; CONFIG_LEN],
    wmask: [u8; CONFIG_LEN],
}

impl Config {
    pub fn new(bar0_len: u64) -> Config {
        let mut c = Config {
            bytes: [0; CONFIG_LEN],
            wmask: [0; CONFIG_LEN],
        };
        c.set16(0x00, VENDOR_ID);
        c.set16(0x02, DEVICE_ID);
        // Command: I/O, memory, bus master, parity, SERR, INTx disable are writable.
        c.mask16(0x04, 0x0547);
        // Status: capability list.
        c.set16(0x06, 0x0010);
        c.set32(0x08, 0x0200_0001); // class 02 (network) 00 (Ethernet), revision 1
        c.mask8(0x0c, 0xff); // cache line size
                             // BAR 0: 64-bit memory, the registers; BAR 4: 64-bit memory, MSI-X table and PBA.
        c.bar64(0x10, bar0_len);
        c.bar64(0x20, BAR4_LEN);
        c.set16(0x2c, VENDOR_ID); // subsystem vendor
        c.set16(0x2e, 0x0001); // subsystem
        c.set8(0x34, PM as u8);
        c.mask8(0x3c, 0xff); // interrupt line
        c.set8(0x3d, 1); // INTA
                         // Power management: version 3; PMCSR's power state and PME enable are writable.
        c.cap(PM, 0x01, MSI);
        c.set16(PM + 2, 0x0003);
        c.mask16(PM + 4, 0x0103);
        // MSI: 64-bit addresses, per-vector masking, one vector.
        c.cap(MSI, 0x05, MSIX);
        c.set16(MSI + 2, 0x0180);
        c.mask16(MSI + 2, 0x0071);
        for off in (MSI + 4..MSI + 0x14).step_by(4) {
            c.mask32(off, 0xffff_ffff);
        }
        // MSI-X: 64 vectors; table at BAR 4 + 0, PBA at BAR 4 + 0x2000; enable and mask
        // writable.
        c.cap(MSIX, 0x11, PCIE);
        c.set16(MSIX + 2, (MSIX_VECTORS - 1) as u16);
        c.mask16(MSIX + 2, 0xc000);
        c.set32(MSIX + 4, 4);
        c.set32(MSIX + 8, 0x2000 | 4);
        // PCI Express v2 endpoint: max payload 512, function-level reset; an x8 link at
        // 5 GT/s.
        c.cap(PCIE, 0x10, 0);
        c.set16(PCIE + 2, 0x0002);
        c.set32(PCIE + 4, 0x1000_8001);
        c.mask16(DEVCTL, 0xffff);
        c.set32(PCIE + 0x0c, 0x0003_f482);
        c.mask16(PCIE + 0x10, 0x01eb);
        c.set16(PCIE + 0x12, 0x0082);
        c.set32(PCIE + 0x24, 0x0000_001f); // completion timeout ranges A-D, disable
        c.mask16(PCIE + 0x28, 0x001f);
        c
    }

    fn set8(&mut self, off: usize, v: u8) {
        self.bytes[off] = v;
    }
    fn set16(&mut self, off: usize, v: u16) {
        self.bytes[off..off + 2].copy_from_slice(&v.to_le_bytes());
    }
    fn set32(&mut self, off: usize, v: u32) {
        self.bytes[off..off + 4].copy_from_slice(&v.to_le_bytes());
    }
    fn mask8(&mut self, off: usize, m: u8) {
        self.wmask[off] = m;
    }
    fn mask16(&mut self, off: usize, m: u16) {
        self.wmask[off..off + 2].copy_from_slice(&m.to_le_bytes());
    }
    fn mask32(&mut self, off: usize, m: u32) {
        self.wmask[off..off + 4].copy_from_slice(&m.to_le_bytes());
    }
    fn cap(&mut self, off: usize, id: u8, next: usize) {
        self.set8(off, id);
        self.set8(off + 1, next as u8);
    }
    fn bar64(&mut self, off: usize, len: u64) {
        self.set32(off, 0x4);
        self.mask32(off, !(len as u32 - 1) & 0xffff_fff0);
        self.mask32(off + 4, 0xffff_ffff);
    }

    pub fn read(&self, off: usize, data: &mut [u8]) {
        for (i, b) in data.iter_mut().enumerate() {
            *b = self.bytes.get(off + i).copied().unwrap_or(0);
        }
    }

    /// Writes what the masks allow; returns whether the write asked for a function-level
    /// reset (which the caller performs; the bit reads back as 0).
    pub fn write(&mut self, off: usize, data: &[u8]) -> bool {
        for (i, b) in data.iter().enumerate() {
            let at = off + i;
            if at < CONFIG_LEN {
                let m = self.wmask[at];
                self.bytes[at] = (self.bytes[at] & !m) | (b & m);
            }
        }
        let ctl = u16::from_le_bytes([self.bytes[DEVCTL], self.bytes[DEVCTL + 1]]);
        if ctl & DEVCTL_FLR != 0 {
            self.set16(DEVCTL, ctl & !DEVCTL_FLR);
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bar_sizing_reads_back_the_size() {
        let mut c = Config::new(0x2_0000);
        c.write(0x10, &[0xff; 4]);
        let mut v = [0u8; 4];
        c.read(0x10, &mut v);
        assert_eq!(u32::from_le_bytes(v), 0xfffe_0004);
        c.read(0x00, &mut v);
        assert_eq!(u32::from_le_bytes(v), 0x10f7_8086);
        assert!(c.write(DEVCTL, &[0, 0x80]));
        c.read(DEVCTL, &mut v[..2]);
        assert_eq!(v[1] & 0x80, 0);
    }
}
