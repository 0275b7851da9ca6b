//! A Linux network interface as the software PMDs that front one (`net_tap`, `net_af_xdp`)
//! see it: its index, flags, MTU, MAC address, queue count and speed, through the
//! interface ioctls of a plain datagram socket.

use net::MacAddr;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// `struct ifreq`: a name and a union the ioctl reads or writes (the kernel takes 40 bytes).
#[repr(C)]
pub(crate) struct IfReq {
    pub(crate) name: [u8; libc::IFNAMSIZ],
    pub(crate) data: [u8; 24],
}

impl IfReq {
    pub(crate) fn new(name: &str) -> IfReq {
        let mut r = IfReq {
            name: [0; libc::IFNAMSIZ],
            data: [0; 24],
        };
        let n = name.len().min(libc::IFNAMSIZ - 1);
        r.name[..n].copy_from_slice(&name.as_bytes()[..n]);
        r
    }
    fn short(&self) -> libc::c_short {
        libc::c_short::from_ne_bytes([self.data[0], self.data[1]])
    }
    pub(crate) fn set_short(&mut self, v: libc::c_short) {
        self.data[..2].copy_from_slice(&v.to_ne_bytes());
    }
    fn set_int(&mut self, v: i32) {
        self.data[..4].copy_from_slice(&v.to_ne_bytes());
    }
    fn set_ptr(&mut self, p: *mut libc::c_void) {
        self.data[..8].copy_from_slice(&(p as usize).to_ne_bytes());
    }
}

/// Whether `name` can name an interface: 1 to 15 bytes, no '/'.
pub(crate) fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.len() < libc::IFNAMSIZ && !name.contains('/')
}

fn control_socket() -> io::Result<OwnedFd> {
    // SAFETY: a plain datagram socket for interface ioctls.
    let s = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if s < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: s was just returned by socket and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(s) })
}

/// Runs interface ioctl `req` on `ifr`.
fn ioctl(req: libc::c_ulong, ifr: &mut IfReq) -> io::Result<()> {
    let s = control_socket()?;
    // SAFETY: every request passed here reads and writes at most the 40-byte ifreq we own
    // (SIOCETHTOOL: the buffer its data pointer names, which the caller keeps alive).
    if unsafe { libc::ioctl(s.as_raw_fd(), req, ifr as *mut IfReq) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The index of interface `name` in this network namespace (ENODEV when there is none).
pub(crate) fn index(name: &str) -> io::Result<u32> {
    let c = std::ffi::CString::new(name).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: a NUL-terminated name.
    match unsafe { libc::if_nametoindex(c.as_ptr()) } {
        0 => Err(io::Error::from_raw_os_error(libc::ENODEV)),
        i => Ok(i),
    }
}

/// The name of interface `index`.
pub(crate) fn name(index: u32) -> io::Result<String> {
    let mut buf = [0u8; libc::IFNAMSIZ];
    // SAFETY: the buffer has IF_NAMESIZE bytes, as if_indextoname needs.
    if unsafe { libc::if_indextoname(index, buf.as_mut_ptr() as *mut libc::c_char) }.is_null() {
        return Err(io::Error::last_os_error());
    }
    let len = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    Ok(String::from_utf8_lossy(&buf[..len]).into_owned())
}

/// The interface's flags (`IFF_*`).
pub(crate) fn flags(name: &str) -> io::Result<libc::c_int> {
    let mut r = IfReq::new(name);
    ioctl(libc::SIOCGIFFLAGS, &mut r)?;
    Ok(r.short() as u16 as libc::c_int)
}

/// Sets the flags in `on` and clears those in `off`.
pub(crate) fn change_flags(name: &str, on: libc::c_int, off: libc::c_int) -> io::Result<()> {
    let mut r = IfReq::new(name);
    ioctl(libc::SIOCGIFFLAGS, &mut r)?;
    let f = (r.short() as u16 as libc::c_int | on) & !off;
    r.set_short(f as u16 as libc::c_short);
    ioctl(libc::SIOCSIFFLAGS, &mut r)
}

/// Sets or clears IFF_UP.
pub(crate) fn set_up(name: &str, up: bool) -> io::Result<()> {
    match up {
        true => change_flags(name, libc::IFF_UP, 0),
        false => change_flags(name, 0, libc::IFF_UP),
    }
}

/// Sets the interface's MTU.
pub(crate) fn set_mtu(name: &str, mtu: u32) -> io::Result<()> {
    let mut r = IfReq::new(name);
    r.set_int(mtu as i32);
    ioctl(libc::SIOCSIFMTU, &mut r)
}

/// The interface's MAC address.
pub(crate) fn mac(name: &str) -> io::Result<MacAddr> {
    let mut r = IfReq::new(name);
    ioctl(libc::SIOCGIFHWADDR, &mut r)?;
    // sa_family (2 bytes), then the address.
    let mut m = [0u8; 6];
    m.copy_from_slice(&r.data[2..8]);
    Ok(MacAddr(m))
}

const ETHTOOL_GSET: u32 = 0x1;
const ETHTOOL_GCHANNELS: u32 = 0x3c;

/// Runs ethtool command `cmd` with `buf` (a `struct ethtool_*` of u32 words, the first the
/// command).
fn ethtool(name: &str, buf: &mut [u32]) -> io::Result<()> {
    let mut r = IfReq::new(name);
    r.set_ptr(buf.as_mut_ptr() as *mut libc::c_void);
    ioctl(libc::SIOCETHTOOL, &mut r)
}

/// How many RX queues the interface has in use: ethtool's combined channels, else its RX
/// channels (veth), else 1 for a driver without channels.
pub(crate) fn rx_queues(name: &str) -> io::Result<u32> {
    // struct ethtool_channels: cmd, max_rx, max_tx, max_other, max_combined, rx_count,
    // tx_count, other_count, combined_count.
    let mut ch = [0u32; 9];
    ch[0] = ETHTOOL_GCHANNELS;
    match ethtool(name, &mut ch) {
        Ok(()) => Ok(ch[8].max(ch[5]).max(1)),
        Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => Ok(1),
        Err(e) => Err(e),
    }
}

/// The link speed in Mbit/s, 0 when the driver does not know it.
pub(crate) fn speed_mbps(name: &str) -> u32 {
    // struct ethtool_cmd: `speed` is the u16 at byte 12 (word 3), `speed_hi` the u16 at
    // byte 28 (word 7); 11 words in all.
    let mut cmd = [0u32; 11];
    cmd[0] = ETHTOOL_GSET;
    if ethtool(name, &mut cmd).is_err() {
        return 0;
    }
    let speed = (cmd[3] & 0xffff) | (cmd[7] & 0xffff) << 16;
    match speed {
        0xffff | u32::MAX => 0,
        s => s,
    }
}
