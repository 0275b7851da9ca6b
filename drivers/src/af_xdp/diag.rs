//! Who holds an interface's AF_XDP sockets: the kernel's socket diagnostics (netlink
//! `SOCK_DIAG_BY_FAMILY` for AF_XDP, what `ss --xdp` reads) give each socket's interface,
//! queue and inode; the process is the one with a descriptor to that inode.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

const NETLINK_SOCK_DIAG: libc::c_int = 4;
const SOCK_DIAG_BY_FAMILY: u16 = 20;
const XDP_SHOW_INFO: u32 = 1;
const XDP_DIAG_INFO: u16 = 1;
const IFLA_XDP_PROG_ID: u16 = 4;
const NLMSG_HDR: usize = 16;
/// `struct xdp_diag_msg`: family, type, pad, inode, cookie.
const DIAG_MSG: usize = 16;

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}
fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

/// Sends netlink request `kind` with `flags` and `body` over a `protocol` socket; the
/// bodies of the messages the kernel answers with, up to its end of a dump (or its one
/// answer).
fn query(protocol: libc::c_int, kind: u16, flags: u16, body: &[u8]) -> io::Result<Vec<Vec<u8>>> {
    // SAFETY: socket(2) with constant arguments.
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
            protocol,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel has just returned this descriptor to us.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut req = Vec::with_capacity(NLMSG_HDR + body.len());
    req.extend_from_slice(&((NLMSG_HDR + body.len()) as u32).to_ne_bytes());
    req.extend_from_slice(&kind.to_ne_bytes());
    req.extend_from_slice(&(flags | libc::NLM_F_REQUEST as u16).to_ne_bytes());
    req.extend_from_slice(&[0; 8]);
    req.extend_from_slice(body);
    // SAFETY: sends our buffer, of its length, to the kernel (the socket's default peer).
    if unsafe {
        libc::send(
            fd.as_raw_fd(),
            req.as_ptr() as *const libc::c_void,
            req.len(),
            0,
        )
    } < 0
    {
        return Err(io::Error::last_os_error());
    }
    let dump = flags & libc::NLM_F_DUMP as u16 != 0;
    let mut out = Vec::new();
    let mut buf = vec![0u8; 32 << 10];
    loop {
        // SAFETY: receives into our buffer, at most its length.
        let n = unsafe {
            libc::recv(
                fd.as_raw_fd(),
                buf.as_mut_ptr() as *mut libc::c_void,
                buf.len(),
                0,
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut msgs = &buf[..n as usize];
        while msgs.len() >= NLMSG_HDR {
            let len = u32_at(msgs, 0).unwrap_or(0) as usize;
            if len < NLMSG_HDR || len > msgs.len() {
                return Ok(out);
            }
            match u16_at(msgs, 4).unwrap_or(0) as libc::c_int {
                libc::NLMSG_DONE => return Ok(out),
                libc::NLMSG_ERROR => {
                    let errno = u32_at(msgs, NLMSG_HDR).unwrap_or(0) as i32;
                    return Err(io::Error::from_raw_os_error(-errno));
                }
                _ => out.push(msgs[NLMSG_HDR..len].to_vec()),
            }
            if !dump {
                return Ok(out);
            }
            msgs = &msgs[((len + 3) & !3).min(msgs.len())..];
        }
    }
}

/// The netlink attributes in `b`: (type, payload).
fn attrs(mut b: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        let (len, kind) = (u16_at(b, 0)? as usize, u16_at(b, 2)?);
        if len < 4 || len > b.len() {
            return None;
        }
        let payload = &b[4..len];
        b = &b[((len + 3) & !3).min(b.len())..];
        Some((kind & 0x3fff, payload))
    })
}

/// The inodes of the AF_XDP sockets of this network namespace bound to `ifindex` (and to
/// `queue`, when given). Kernels without socket diagnostics for AF_XDP give none.
fn bound_sockets(ifindex: u32, queue: Option<u32>) -> io::Result<Vec<u32>> {
    // struct xdp_diag_req: family, protocol, pad, inode, show, cookie[2].
    let mut req = vec![libc::AF_XDP as u8, 0, 0, 0, 0, 0, 0, 0];
    req.extend_from_slice(&XDP_SHOW_INFO.to_ne_bytes());
    req.extend_from_slice(&[0; 8]);
    let msgs = query(
        NETLINK_SOCK_DIAG,
        SOCK_DIAG_BY_FAMILY,
        libc::NLM_F_DUMP as u16,
        &req,
    )?;
    Ok(msgs
        .iter()
        .filter_map(|m| parse_socket(m))
        .filter(|(_, (i, q))| *i == ifindex && queue.is_none_or(|want| want == *q))
        .map(|(ino, _)| ino)
        .collect())
}

/// A socket's inode and its (interface, queue), from one diagnostics message.
fn parse_socket(msg: &[u8]) -> Option<(u32, (u32, u32))> {
    let ino = u32_at(msg, 4)?;
    let (_, info) = attrs(msg.get(DIAG_MSG..)?).find(|(k, _)| *k == XDP_DIAG_INFO)?;
    Some((ino, (u32_at(info, 0)?, u32_at(info, 4)?)))
}

/// The id of the XDP program attached to interface `ifindex`, as `ip link` reads it.
fn attached_program(ifindex: u32) -> Option<u32> {
    // struct ifinfomsg: family, pad, type, index, flags, change.
    let mut req = vec![0u8; 4];
    req.extend_from_slice(&(ifindex as i32).to_ne_bytes());
    req.extend_from_slice(&[0; 8]);
    let msgs = query(libc::NETLINK_ROUTE, libc::RTM_GETLINK, 0, &req).ok()?;
    let (_, xdp) = attrs(msgs.first()?.get(16..)?).find(|(k, _)| *k == libc::IFLA_XDP)?;
    let (_, id) = attrs(xdp).find(|(k, _)| *k == IFLA_XDP_PROG_ID)?;
    u32_at(id, 0).filter(|id| *id != 0)
}

/// The processes of this network namespace holding interface `ifindex`'s XDP program (its
/// BPF link, or the program itself when it was attached through netlink, as DPDK's
/// libxdp does) or an AF_XDP socket bound to it (to `queue`, when given), as messages name
/// them.
pub(super) fn holders(ifindex: u32, queue: Option<u32>) -> Vec<String> {
    let mut pids = eal::fd_holders("anon_inode:bpf_link", Some(&format!("ifindex:\t{ifindex}")));
    if let Some(id) = attached_program(ifindex) {
        pids.extend(eal::fd_holders(
            "anon_inode:bpf-prog",
            Some(&format!("prog_id:\t{id}")),
        ));
    }
    for ino in bound_sockets(ifindex, queue).unwrap_or_default() {
        pids.extend(eal::fd_holders(&format!("socket:[{ino}]"), None));
    }
    pids.retain(|pid| eal::same_net_namespace(*pid));
    pids.sort_unstable();
    pids.dedup();
    pids.into_iter().map(eal::describe_process).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_diagnostics_message_gives_the_inode_interface_and_queue() {
        let mut m = vec![44, 3, 0, 0];
        m.extend_from_slice(&1234u32.to_ne_bytes());
        m.extend_from_slice(&[0; 8]);
        // An attribute before the one wanted, then XDP_DIAG_INFO.
        m.extend_from_slice(&8u16.to_ne_bytes());
        m.extend_from_slice(&7u16.to_ne_bytes());
        m.extend_from_slice(&[0; 4]);
        m.extend_from_slice(&12u16.to_ne_bytes());
        m.extend_from_slice(&XDP_DIAG_INFO.to_ne_bytes());
        m.extend_from_slice(&5u32.to_ne_bytes());
        m.extend_from_slice(&1u32.to_ne_bytes());
        assert_eq!(parse_socket(&m), Some((1234, (5, 1))));
        assert_eq!(parse_socket(&m[..20]), None);
    }
}
