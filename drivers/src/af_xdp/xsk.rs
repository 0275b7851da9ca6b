//! One AF_XDP socket: its UMEM (the group's mbuf memory), its four rings mapped into this
//! process, its bind to an interface queue, its statistics and kicks. Every call into the
//! kernel for a socket is here.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU32, Ordering};

/// The headroom the kernel leaves in front of every frame it writes into a UMEM chunk.
pub(super) const XDP_PACKET_HEADROOM: u64 = 256;
/// The low bits of an unaligned-mode descriptor address: the chunk's offset in the UMEM;
/// the bits above hold the offset of the data in the chunk.
pub(super) const ADDR_MASK: u64 = (1 << 48) - 1;
const OFFSET_SHIFT: u32 = 48;

/// A descriptor address in unaligned mode: chunk `base`, data `offset` bytes into it.
#[inline(always)]
pub(super) fn desc_addr(base: u64, offset: u64) -> u64 {
    base | offset << OFFSET_SHIFT
}

/// The chunk and the data offset of an unaligned-mode descriptor address.
#[inline(always)]
pub(super) fn split_addr(addr: u64) -> (u64, u64) {
    (addr & ADDR_MASK, addr >> OFFSET_SHIFT)
}

/// Entries of each ring (powers of two).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct RingSizes {
    pub fill: u32,
    pub comp: u32,
    pub rx: u32,
    pub tx: u32,
}

/// Where the UMEM lies in the group's memory (the same address in every process) and the
/// chunk each fill address stands for.
#[derive(Clone, Copy, Debug)]
pub(super) struct Umem {
    pub addr: u64,
    pub len: u64,
    pub chunk: u32,
}

fn check(r: libc::c_int) -> io::Result<()> {
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn set_opt<T>(fd: RawFd, level: libc::c_int, opt: libc::c_int, v: &T) -> io::Result<()> {
    // SAFETY: the option value is a plain struct or integer we own, of the size we pass.
    check(unsafe {
        libc::setsockopt(
            fd,
            level,
            opt,
            v as *const T as *const libc::c_void,
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    })
}

fn get_opt<T: Copy>(fd: RawFd, opt: libc::c_int, init: T) -> io::Result<T> {
    let mut v = init;
    let mut len = std::mem::size_of::<T>() as libc::socklen_t;
    // SAFETY: the kernel writes at most `len` bytes into the value we own.
    check(unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_XDP,
            opt,
            &mut v as *mut T as *mut libc::c_void,
            &mut len,
        )
    })?;
    Ok(v)
}

/// A new AF_XDP socket with `umem` registered and rings of `sizes` made, neither mapped
/// nor bound.
pub(super) fn create(umem: Umem, sizes: RingSizes) -> io::Result<OwnedFd> {
    // SAFETY: socket(2) with constant arguments.
    let fd = unsafe { libc::socket(libc::AF_XDP, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel has just returned this descriptor to us.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: xdp_umem_reg is plain integers; all-zero bytes are a valid value (and the
    // kernel wants the padding zero).
    let mut reg: libc::xdp_umem_reg = unsafe { std::mem::zeroed() };
    reg.addr = umem.addr;
    reg.len = umem.len;
    reg.chunk_size = umem.chunk;
    reg.flags = libc::XDP_UMEM_UNALIGNED_CHUNK_FLAG;
    let raw = fd.as_raw_fd();
    set_opt(raw, libc::SOL_XDP, libc::XDP_UMEM_REG, &reg)?;
    for (opt, n) in [
        (libc::XDP_UMEM_FILL_RING, sizes.fill),
        (libc::XDP_UMEM_COMPLETION_RING, sizes.comp),
        (libc::XDP_RX_RING, sizes.rx),
        (libc::XDP_TX_RING, sizes.tx),
    ] {
        set_opt(raw, libc::SOL_XDP, opt, &(n as libc::c_int))?;
    }
    Ok(fd)
}

/// Binds socket `fd` to queue `queue` of interface `ifindex`; copy mode when `copy`, zero
/// copy (or an error) when `zero_copy`, the driver's choice otherwise.
pub(super) fn bind(fd: RawFd, ifindex: u32, queue: u32, mode: BindMode) -> io::Result<()> {
    // SAFETY: sockaddr_xdp is plain integers.
    let mut sa: libc::sockaddr_xdp = unsafe { std::mem::zeroed() };
    sa.sxdp_family = libc::AF_XDP as u16;
    sa.sxdp_ifindex = ifindex;
    sa.sxdp_queue_id = queue;
    sa.sxdp_flags = libc::XDP_USE_NEED_WAKEUP
        | match mode {
            BindMode::Auto => 0,
            BindMode::Copy => libc::XDP_COPY,
            BindMode::ZeroCopy => libc::XDP_ZEROCOPY,
        };
    // SAFETY: the address is ours, of the size we pass.
    check(unsafe {
        libc::bind(
            fd,
            &sa as *const libc::sockaddr_xdp as *const libc::sockaddr,
            std::mem::size_of::<libc::sockaddr_xdp>() as libc::socklen_t,
        )
    })
}

/// How a socket is bound: DPDK's `zero_copy`/`force_copy` choices.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum BindMode {
    Auto = 0,
    Copy = 1,
    ZeroCopy = 2,
}

/// Whether the kernel bound socket `fd` in zero-copy mode.
pub(super) fn is_zero_copy(fd: RawFd) -> bool {
    get_opt(fd, libc::XDP_OPTIONS, libc::xdp_options { flags: 0 })
        .is_ok_and(|o| o.flags & libc::XDP_OPTIONS_ZEROCOPY != 0)
}

/// The socket's counters, as XDP_STATISTICS gives them.
pub(super) fn statistics(fd: RawFd) -> io::Result<[u64; 6]> {
    // SAFETY: xdp_statistics is six u64 counters.
    let s: libc::xdp_statistics = get_opt(fd, libc::XDP_STATISTICS, unsafe { std::mem::zeroed() })?;
    Ok([
        s.rx_dropped,
        s.rx_invalid_descs,
        s.tx_invalid_descs,
        s.rx_ring_full,
        s.rx_fill_ring_empty_descs,
        s.tx_ring_empty_descs,
    ])
}

/// Where [`statistics`] has the frames dropped for want of a fill ring buffer.
pub(super) const RX_DROPPED: usize = 0;
/// Where [`statistics`] has the frames dropped for want of room in the RX ring.
pub(super) const RX_RING_FULL: usize = 3;

/// The names of [`statistics`], in order, as xstats name them per queue.
pub(super) const STAT_NAMES: [&str; 6] = [
    "rx_dropped",
    "rx_invalid_descs",
    "tx_invalid_descs",
    "rx_ring_full",
    "rx_fill_ring_empty_descs",
    "tx_ring_empty_descs",
];

/// Asks the kernel to busy-poll the socket's device queue: DPDK's `busy_budget`.
pub(super) fn prefer_busy_poll(fd: RawFd, budget: u32) -> io::Result<()> {
    set_opt(
        fd,
        libc::SOL_SOCKET,
        libc::SO_PREFER_BUSY_POLL,
        &1 as &libc::c_int,
    )?;
    set_opt(
        fd,
        libc::SOL_SOCKET,
        libc::SO_BUSY_POLL,
        &20 as &libc::c_int,
    )?;
    set_opt(
        fd,
        libc::SOL_SOCKET,
        libc::SO_BUSY_POLL_BUDGET,
        &(budget as libc::c_int),
    )
}

/// Has the kernel send what the TX ring holds (copy mode sends inside this call, 32 at a
/// time): Ok(true) when more remain for another call.
#[inline]
pub(super) fn kick_tx(fd: RawFd) -> io::Result<bool> {
    // SAFETY: sendto(2) without a buffer or address.
    let r = unsafe {
        libc::sendto(
            fd,
            std::ptr::null(),
            0,
            libc::MSG_DONTWAIT,
            std::ptr::null(),
            0,
        )
    };
    if r >= 0 {
        return Ok(false);
    }
    let e = io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::EAGAIN) | Some(libc::EBUSY) | Some(libc::EINTR) => Ok(true),
        _ => Err(e),
    }
}

/// Has the kernel process the socket's receive side (after the fill ring asked for it, or
/// to busy-poll).
#[inline]
pub(super) fn kick_rx(fd: RawFd) -> io::Result<()> {
    // SAFETY: recvfrom(2) without a buffer or address.
    let r = unsafe {
        libc::recvfrom(
            fd,
            std::ptr::null_mut(),
            0,
            libc::MSG_DONTWAIT,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
        )
    };
    if r < 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EAGAIN) {
            return Err(e);
        }
    }
    Ok(())
}

/// One ring of a socket mapped into this process: the kernel's producer and consumer
/// words, its flags word and its entries.
pub(super) struct Ring {
    area: *mut u8,
    len: usize,
    producer: *const AtomicU32,
    consumer: *const AtomicU32,
    flags: *const AtomicU32,
    entries: *mut u8,
    mask: u32,
}

// SAFETY: the mapping belongs to this handle until drop; the words are atomics the kernel
// and one poller share, and the entries are written by one side at a time (ring protocol).
unsafe impl Send for Ring {}
// SAFETY: as above; a queue's poller is one thread at a time (ethdev's queue ownership).
unsafe impl Sync for Ring {}

impl Ring {
    /// Maps the ring of `entries` entries of `entry_size` bytes at mmap offset `pgoff` of
    /// socket `fd`, with the word offsets the kernel gave.
    fn map(
        fd: RawFd,
        off: &libc::xdp_ring_offset,
        pgoff: u64,
        entries: u32,
        entry_size: usize,
    ) -> io::Result<Ring> {
        let len = off.desc as usize + entries as usize * entry_size;
        // SAFETY: a fresh shared mapping of the socket's ring; the kernel checks the length
        // and offset.
        let area = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_POPULATE,
                fd,
                pgoff as libc::off_t,
            )
        };
        if area == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let area = area as *mut u8;
        // SAFETY: the offsets lie inside the mapping (the kernel's own layout).
        Ok(unsafe {
            Ring {
                area,
                len,
                producer: area.add(off.producer as usize) as *const AtomicU32,
                consumer: area.add(off.consumer as usize) as *const AtomicU32,
                flags: area.add(off.flags as usize) as *const AtomicU32,
                entries: area.add(off.desc as usize),
                mask: entries - 1,
            }
        })
    }

    /// Entries the ring holds.
    pub(super) fn size(&self) -> u32 {
        self.mask + 1
    }
    #[inline(always)]
    pub(super) fn producer(&self) -> &AtomicU32 {
        // SAFETY: a word of our mapping, written only through atomics.
        unsafe { &*self.producer }
    }
    #[inline(always)]
    pub(super) fn consumer(&self) -> &AtomicU32 {
        // SAFETY: as for producer.
        unsafe { &*self.consumer }
    }
    /// Whether the kernel asked for a kick (`XDP_RING_NEED_WAKEUP`).
    #[inline(always)]
    pub(super) fn needs_wakeup(&self) -> bool {
        // SAFETY: as for producer.
        unsafe { &*self.flags }.load(Ordering::Relaxed) & libc::XDP_RING_NEED_WAKEUP != 0
    }
    /// Where the ring's entries lie, as a value a burst keeps in registers.
    #[inline(always)]
    pub(super) fn slots(&self) -> Slots {
        Slots {
            entries: self.entries,
            mask: self.mask,
        }
    }
}

/// A ring's entries: a copy of its mapping's address and mask. A burst reads them once
/// (the compiler cannot keep them in registers across the stores into mbufs and rings
/// when it reads them through the ring).
#[derive(Clone, Copy)]
pub(super) struct Slots {
    entries: *mut u8,
    mask: u32,
}

impl Slots {
    /// The address entry at free-running index `i` of a fill or completion ring.
    #[inline(always)]
    pub(super) fn addr(self, i: u32) -> *mut u64 {
        // SAFETY: masked into the ring's entries, 8 bytes each.
        unsafe { (self.entries as *mut u64).add((i & self.mask) as usize) }
    }
    /// The descriptor at free-running index `i` of an RX or TX ring.
    #[inline(always)]
    pub(super) fn desc(self, i: u32) -> *mut libc::xdp_desc {
        // SAFETY: masked into the ring's entries, 16 bytes each.
        unsafe { (self.entries as *mut libc::xdp_desc).add((i & self.mask) as usize) }
    }
}

impl Drop for Ring {
    fn drop(&mut self) {
        // SAFETY: our own mapping, unmapped once.
        unsafe { libc::munmap(self.area as *mut libc::c_void, self.len) };
    }
}

/// A socket's four rings, mapped into this process.
pub(super) struct Rings {
    pub fill: Ring,
    pub comp: Ring,
    pub rx: Ring,
    pub tx: Ring,
}

/// Maps the four rings of socket `fd` (made with `sizes`). A kernel before 6.x refuses
/// (EBUSY) once the socket is bound.
pub(super) fn map_rings(fd: RawFd, sizes: RingSizes) -> io::Result<Rings> {
    // SAFETY: xdp_mmap_offsets is plain integers.
    let off: libc::xdp_mmap_offsets =
        get_opt(fd, libc::XDP_MMAP_OFFSETS, unsafe { std::mem::zeroed() })?;
    let desc = std::mem::size_of::<libc::xdp_desc>();
    Ok(Rings {
        fill: Ring::map(fd, &off.fr, libc::XDP_UMEM_PGOFF_FILL_RING, sizes.fill, 8)?,
        comp: Ring::map(
            fd,
            &off.cr,
            libc::XDP_UMEM_PGOFF_COMPLETION_RING,
            sizes.comp,
            8,
        )?,
        rx: Ring::map(fd, &off.rx, libc::XDP_PGOFF_RX_RING as u64, sizes.rx, desc)?,
        tx: Ring::map(fd, &off.tx, libc::XDP_PGOFF_TX_RING as u64, sizes.tx, desc)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unaligned_address_splits_back_into_chunk_and_offset() {
        let a = desc_addr(0x12_3456_7880, 256);
        assert_eq!(split_addr(a), (0x12_3456_7880, 256));
        assert_eq!(a & ADDR_MASK, 0x12_3456_7880);
    }
}
