//! Ethernet addresses and the few header fields the apps touch.

use std::fmt;
use std::str::FromStr;

/// An Ethernet (MAC) address.
#[repr(C)]
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    /// ff:ff:ff:ff:ff:ff.
    pub const BROADCAST: MacAddr = MacAddr([0xff; 6]);

    /// A locally administered unicast address with `tail` in its last bytes.
    pub fn local(tail: u32) -> MacAddr {
        let t = tail.to_be_bytes();
        MacAddr([0x02, 0x00, t[0], t[1], t[2], t[3]])
    }

    /// Whether the group bit (the first byte's lowest) is set; broadcast included.
    pub fn is_multicast(&self) -> bool {
        self.0[0] & 1 != 0
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.0;
        write!(
            f,
            "{:02X}:{:02X}:{:02X}:{:02X}:{:02X}:{:02X}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }
}

impl fmt::Debug for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for MacAddr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let parts: Vec<&str> = s.split(':').collect();
        let mut m = [0u8; 6];
        if parts.len() != 6 {
            return Err(format!(
                "'{s}' is not a MAC address such as 02:00:00:00:00:01"
            ));
        }
        for (d, p) in m.iter_mut().zip(parts) {
            *d = u8::from_str_radix(p, 16)
                .map_err(|_| format!("'{s}' is not a MAC address such as 02:00:00:00:00:01"))?;
        }
        Ok(MacAddr(m))
    }
}

/// Destination address of an Ethernet frame (its first 6 bytes).
pub fn dst(frame: &[u8]) -> Option<MacAddr> {
    frame.get(0..6).and_then(|b| b.try_into().ok()).map(MacAddr)
}

/// Source address of an Ethernet frame.
pub fn src(frame: &[u8]) -> Option<MacAddr> {
    frame
        .get(6..12)
        .and_then(|b| b.try_into().ok())
        .map(MacAddr)
}

/// Rewrites both addresses of a frame; false if it is shorter than an Ethernet header.
#[inline]
pub fn set_addrs(frame: &mut [u8], dst: MacAddr, src: MacAddr) -> bool {
    if frame.len() < 14 {
        return false;
    }
    frame[0..6].copy_from_slice(&dst.0);
    frame[6..12].copy_from_slice(&src.0);
    true
}

/// Swaps source and destination addresses (testpmd's macswap).
///
/// ```
/// use net::ether::{dst, src, swap_addrs};
/// use net::MacAddr;
///
/// let a: MacAddr = "02:00:00:00:00:0a".parse().expect("an address");
/// let b = MacAddr::local(0xb);
/// let mut frame = [0u8; 60];
/// frame[..6].copy_from_slice(&a.0);
/// frame[6..12].copy_from_slice(&b.0);
/// assert!(swap_addrs(&mut frame));
/// assert_eq!((dst(&frame), src(&frame)), (Some(b), Some(a)));
/// assert_eq!(b.to_string(), "02:00:00:00:00:0B");
/// // Too short for an Ethernet header: left alone.
/// assert!(!swap_addrs(&mut frame[..13]));
/// ```
#[inline]
pub fn swap_addrs(frame: &mut [u8]) -> bool {
    if frame.len() < 14 {
        return false;
    }
    let (d, s) = frame[..12].split_at_mut(6);
    d.swap_with_slice(s);
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_print_rewrite() {
        let m: MacAddr = "02:00:00:00:00:0a".parse().expect("parses");
        assert_eq!(m.to_string(), "02:00:00:00:00:0A");
        assert!("02:00:00".parse::<MacAddr>().is_err());
        let mut f = [0u8; 20];
        assert!(set_addrs(&mut f, m, MacAddr::local(7)));
        assert_eq!(dst(&f), Some(m));
        assert_eq!(src(&f), Some(MacAddr([2, 0, 0, 0, 0, 7])));
        assert!(swap_addrs(&mut f));
        assert_eq!(src(&f), Some(m));
        assert!(!set_addrs(&mut [0u8; 10], m, m));
    }
}
