//! The XDP program that hands a port's queues to its sockets, through bpf(2) alone: an
//! XSKMAP (queue id to socket), six instructions that redirect each frame to the socket of
//! its RX queue (or pass it to the kernel's stack when that queue has none), and a BPF link
//! that attaches them to the interface. The link goes with the last descriptor to it, so a
//! primary that dies leaves no program on the interface.
//!
//! The program is assembled here rather than loaded from libxdp's object file: it is the
//! same six instructions (libbpf's default program for kernels since 5.3), it needs no
//! ELF, BTF or bpffs at run time, and libxdp attaches through netlink, which outlives a
//! crashed process.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

const BPF_MAP_CREATE: libc::c_long = 0;
const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;
const BPF_MAP_DELETE_ELEM: libc::c_long = 3;
const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_LINK_CREATE: libc::c_long = 28;
const BPF_MAP_TYPE_XSKMAP: u32 = 17;
const BPF_PROG_TYPE_XDP: u32 = 6;
const BPF_XDP: u32 = 37;

/// `union bpf_attr` as 6.1's headers size it, written field by field at the kernel's
/// offsets; every byte not written stays zero, as the kernel requires.
struct Attr([u8; 144]);

impl Attr {
    fn new() -> Attr {
        Attr([0; 144])
    }
    fn u32(mut self, off: usize, v: u32) -> Attr {
        self.0[off..off + 4].copy_from_slice(&v.to_ne_bytes());
        self
    }
    fn u64(mut self, off: usize, v: u64) -> Attr {
        self.0[off..off + 8].copy_from_slice(&v.to_ne_bytes());
        self
    }
    fn bytes(mut self, off: usize, b: &[u8]) -> Attr {
        self.0[off..off + b.len()].copy_from_slice(b);
        self
    }
    /// Runs bpf(2) command `cmd` with this attribute block.
    fn call(&mut self, cmd: libc::c_long) -> io::Result<libc::c_long> {
        // SAFETY: bpf(2) reads (and for some commands writes) the block we own, of the size
        // we pass; pointers inside it name buffers the caller keeps alive for the call.
        let r = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                cmd,
                self.0.as_mut_ptr(),
                self.0.len() as libc::c_uint,
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(r)
    }
    /// Runs a command that returns a new descriptor.
    fn call_fd(&mut self, cmd: libc::c_long) -> io::Result<OwnedFd> {
        let fd = self.call(cmd)?;
        // SAFETY: the kernel has just returned this descriptor to us.
        Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
    }
}

/// A port's XSKMAP, program and link.
pub(super) struct XdpProgram {
    map: OwnedFd,
    _prog: OwnedFd,
    _link: OwnedFd,
}

/// Why attaching failed, with the step that failed.
#[derive(Debug)]
pub(super) enum AttachError {
    /// Creating the map or loading the program.
    Load(io::Error),
    /// Linking the program to the interface.
    Link(io::Error),
}

impl XdpProgram {
    /// Loads the program with a map of `max_queues` entries and links it to interface
    /// `ifindex` with `XDP_FLAGS_*` `flags` (0: native mode where the driver has it, else
    /// generic).
    pub(super) fn attach(
        ifindex: u32,
        max_queues: u32,
        flags: u32,
    ) -> Result<XdpProgram, AttachError> {
        let map = Attr::new()
            .u32(0, BPF_MAP_TYPE_XSKMAP)
            .u32(4, 4)
            .u32(8, 4)
            .u32(12, max_queues)
            .bytes(28, b"xsks_map")
            .call_fd(BPF_MAP_CREATE)
            .map_err(AttachError::Load)?;
        let insns = program(map.as_raw_fd());
        let license = c"GPL";
        let prog = Attr::new()
            .u32(0, BPF_PROG_TYPE_XDP)
            .u32(4, (insns.len() / 8) as u32)
            .u64(8, insns.as_ptr() as u64)
            .u64(16, license.as_ptr() as u64)
            .bytes(48, b"rpmd_xsk_redir")
            .call_fd(BPF_PROG_LOAD)
            .map_err(AttachError::Load)?;
        let link = Attr::new()
            .u32(0, prog.as_raw_fd() as u32)
            .u32(4, ifindex)
            .u32(8, BPF_XDP)
            .u32(12, flags)
            .call_fd(BPF_LINK_CREATE)
            .map_err(AttachError::Link)?;
        Ok(XdpProgram {
            map,
            _prog: prog,
            _link: link,
        })
    }

    /// Sends the frames of interface queue `queue` to socket `xsk`.
    pub(super) fn insert(&self, queue: u32, xsk: RawFd) -> io::Result<()> {
        let value = xsk as u32;
        Attr::new()
            .u32(0, self.map.as_raw_fd() as u32)
            .u64(8, &queue as *const u32 as u64)
            .u64(16, &value as *const u32 as u64)
            .call(BPF_MAP_UPDATE_ELEM)
            .map(drop)
    }

    /// Sends the frames of interface queue `queue` to the kernel's stack again.
    pub(super) fn remove(&self, queue: u32) -> io::Result<()> {
        Attr::new()
            .u32(0, self.map.as_raw_fd() as u32)
            .u64(8, &queue as *const u32 as u64)
            .call(BPF_MAP_DELETE_ELEM)
            .map(drop)
    }
}

/// `return bpf_redirect_map(&xsks_map, ctx->rx_queue_index, XDP_PASS);` as eBPF
/// instructions (8 bytes each: opcode, dst and src registers, offset, immediate).
fn program(map_fd: RawFd) -> Vec<u8> {
    let mut p = Vec::with_capacity(48);
    let mut insn = |code: u8, regs: u8, off: i16, imm: i32| {
        p.push(code);
        p.push(regs);
        p.extend_from_slice(&off.to_le_bytes());
        p.extend_from_slice(&imm.to_le_bytes());
    };
    // r2 = *(u32 *)(r1 + 16): xdp_md.rx_queue_index (LDX | MEM | W; dst 2, src 1).
    insn(0x61, 0x12, 16, 0);
    // r1 = the map (LD | IMM | DW, src BPF_PSEUDO_MAP_FD): two slots, the second holding the
    // immediate's high half.
    insn(0x18, 0x11, 0, map_fd);
    insn(0, 0, 0, 0);
    // r3 = XDP_PASS, what bpf_redirect_map returns when the queue has no socket.
    insn(0xb7, 0x03, 0, 2);
    // call bpf_redirect_map (helper 51); its result is the program's.
    insn(0x85, 0, 0, 51);
    insn(0x95, 0, 0, 0);
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_program_is_the_six_instructions_of_libbpfs_redirect() {
        let p = program(7);
        assert_eq!(p.len(), 48);
        assert_eq!(&p[..8], &[0x61, 0x12, 0x10, 0, 0, 0, 0, 0]);
        assert_eq!(&p[8..16], &[0x18, 0x11, 0, 0, 7, 0, 0, 0]);
        assert_eq!(&p[24..32], &[0xb7, 0x03, 0, 0, 2, 0, 0, 0]);
        assert_eq!(&p[32..40], &[0x85, 0, 0, 0, 0x33, 0, 0, 0]);
        assert_eq!(&p[40..], &[0x95, 0, 0, 0, 0, 0, 0, 0]);
    }
}
