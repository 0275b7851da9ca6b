//! The port's EEPROM image, read through EERD, laid out as the 82599 datasheet's
//! EEPROM map (section 6): control words 0x00-0x02, section pointers 0x03-0x0E, the
//! firmware pointer 0x0F, the PBA number at 0x15-0x16, the checksum at 0x3F; a pointer of
//! 0xFFFF means the section is absent, as on an erased part. The one section here is the
//! LAN core module, which holds the port's MAC address; the device loads RAL0/RAH0 from
//! it at every reset.
//!
//! The checksum is the datasheet's: the words 0x00-0x3E, and every word of each section a
//! pointer 0x03-0x0E names (after the section's length word), add up with the checksum
//! word to 0xBABA.

use net::MacAddr;

/// Words in the image (EEC.SIZE = 4: 1 << (4 + 6) words, 2 KiB).
pub const WORDS: usize = 1024;
pub const EEC_SIZE_FIELD: u32 = 4;
const CHECKSUM_WORD: usize = 0x3f;
const FIRST_POINTER: usize = 0x03;
const FW_POINTER: usize = 0x0f;
/// The LAN core 0 module pointer and where the model puts that module.
const LAN_CORE_POINTER: usize = 0x09;
const LAN_CORE_AT: u16 = 0x100;
const PBA: [u16; 2] = [0x0000, 0x8259];
const SUM: u16 = 0xbaba;

pub struct Eeprom {
    words: Vec<u16>,
}

impl Eeprom {
    pub fn new(mac: MacAddr) -> Eeprom {
        let mut w = vec![0xffffu16; WORDS];
        // Control word 1: "valid" signature 01b in bits 7:6 (the datasheet's EEPROM
        // signature), everything else defaults.
        w[0] = 0x0040;
        w[1] = 0x0000;
        w[2] = 0x0000;
        w[0x15] = PBA[0];
        w[0x16] = PBA[1];
        // Device capabilities (no wake-on-LAN), and an ETrack id for the NVM version.
        w[0x2c] = 0x0000;
        w[0x2d] = 0x0001;
        w[0x2e] = 0x8000;
        // The LAN core module: its length, then the MAC address, low byte first.
        w[LAN_CORE_POINTER] = LAN_CORE_AT;
        let m = mac.0;
        let at = LAN_CORE_AT as usize;
        w[at] = 3;
        w[at + 1] = u16::from_le_bytes([m[0], m[1]]);
        w[at + 2] = u16::from_le_bytes([m[2], m[3]]);
        w[at + 3] = u16::from_le_bytes([m[4], m[5]]);
        let mut e = Eeprom { words: w };
        e.words[CHECKSUM_WORD] = SUM.wrapping_sub(e.sum());
        e
    }

    /// The word at `addr`; an address past the part reads as erased.
    pub fn read(&self, addr: usize) -> u16 {
        self.words.get(addr).copied().unwrap_or(0xffff)
    }

    /// The MAC address the device loads into RAL0/RAH0.
    pub fn mac(&self) -> MacAddr {
        let at = self.read(LAN_CORE_POINTER) as usize;
        let b: Vec<u8> = (1..=3)
            .flat_map(|i| self.read(at + i).to_le_bytes())
            .collect();
        MacAddr([b[0], b[1], b[2], b[3], b[4], b[5]])
    }

    /// The datasheet's sum, without the checksum word.
    fn sum(&self) -> u16 {
        let mut s = (0..CHECKSUM_WORD).fold(0u16, |s, i| s.wrapping_add(self.read(i)));
        for p in FIRST_POINTER..FW_POINTER {
            let at = self.read(p) as usize;
            if at == 0 || at == 0xffff {
                continue;
            }
            let len = self.read(at) as usize;
            if len == 0 || len == 0xffff {
                continue;
            }
            s = (at + 1..=at + len).fold(s, |s, i| s.wrapping_add(self.read(i)));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_makes_the_datasheet_sum() {
        let e = Eeprom::new(MacAddr([0x52, 0x54, 0, 0x82, 0x59, 1]));
        assert_eq!(e.sum().wrapping_add(e.read(CHECKSUM_WORD)), SUM);
        assert_eq!(e.mac(), MacAddr([0x52, 0x54, 0, 0x82, 0x59, 1]));
    }
}
