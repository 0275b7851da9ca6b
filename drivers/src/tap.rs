//! `net_tap`: a port backed by a Linux TAP interface, so frames go to and come from the
//! kernel's network stack: `--vdev net_tap0,iface=dtap0`.
//!
//! Each queue is one file descriptor of a multi-queue TAP. File descriptors belong to a
//! process, so a secondary asks the primary for them over IPC (`SCM_RIGHTS`).

use crate::fd_share::FdShare;
use net::ethdev::{
    DevInfo, DeviceRecord, Direction, Driver, Error, PortContext, PortDriver, Result, RxBurst,
    TakenCounter, TxBurst,
};
use net::{Link, Mbuf, PktmbufPool};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::{Arc, Mutex};

/// The `net_tap` driver.
pub struct TapDriver;

const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
const IFF_TAP: libc::c_short = 0x0002;
const IFF_NO_PI: libc::c_short = 0x1000;
const IFF_MULTI_QUEUE: libc::c_short = 0x0100;
const FDS_REQUEST: &str = "net_tap_fds";
const MAX_QUEUES: usize = 8;

/// Opens one more queue of the multi-queue TAP `iface` (creating the interface first time).
fn open_queue(iface: &str) -> std::io::Result<OwnedFd> {
    // SAFETY: open with a constant, NUL-terminated path; the fd is owned right away.
    let fd = unsafe {
        libc::open(
            c"/dev/net/tun".as_ptr(),
            libc::O_RDWR | libc::O_NONBLOCK | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fd was just returned by open and is owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut req = crate::netdev::IfReq::new(iface);
    req.set_short(IFF_TAP | IFF_NO_PI | IFF_MULTI_QUEUE);
    // SAFETY: TUNSETIFF reads (and writes back) an ifreq of the size we pass.
    if unsafe { libc::ioctl(fd.as_raw_fd(), TUNSETIFF, &mut req) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(fd)
}

struct TapPort {
    name: String,
    iface: String,
    port_id: u16,
    rec: DeviceRecord,
    /// One per queue; RX and TX queue `q` share fd `q`.
    fds: Mutex<Vec<Arc<OwnedFd>>>,
}

/// Hands the primary's TAP queue fds to secondaries.
static TAP_FDS: FdShare = FdShare::new(FDS_REQUEST);

impl TapPort {
    fn dup_fds(&self) -> std::io::Result<Vec<OwnedFd>> {
        self.fds
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|f| f.try_clone())
            .collect()
    }
    fn fd(&self, q: u16) -> Result<Arc<OwnedFd>> {
        self.fds
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(q as usize)
            .cloned()
            .ok_or_else(|| {
                Error::device(&self.name, format!("queue {q} has no TAP file descriptor"))
            })
    }
}

impl Driver for TapDriver {
    fn name(&self) -> &'static str {
        "net_tap"
    }

    fn probe(&self, ctx: &PortContext) -> Result<Box<dyn PortDriver>> {
        crate::check_args(ctx.name, ctx.args, &["iface"])?;
        let iface = crate::arg(ctx.args, "iface")
            .map(String::from)
            .unwrap_or_else(|| format!("dtap{}", ctx.port_id));
        if !crate::netdev::valid_name(&iface) {
            return Err(Error::device(
                ctx.name,
                format!("iface={iface}: interface names have 1 to 15 bytes and no '/'"),
            ));
        }
        // A second opener of a multi-queue TAP just adds a queue, and the kernel would then
        // hand it part of the owner's traffic: refuse an interface another process uses.
        let line = format!("iff:\t{iface}");
        let holder = eal::fd_holders("/dev/net/tun", Some(&line))
            .into_iter()
            .find(|pid| eal::same_net_namespace(*pid));
        if let Some(pid) = holder {
            return Err(Error::device(
                ctx.name,
                format!(
                    "TAP interface {iface} is already in use by {}: an interface belongs to one group at a time; give this port another iface=",
                    eal::describe_process(pid)
                ),
            ));
        }
        let fd = open_queue(&iface).map_err(|e| {
            let hint = match e.raw_os_error() {
                Some(libc::EPERM) | Some(libc::EACCES) => ": run as root (CAP_NET_ADMIN)",
                Some(libc::EBUSY) | Some(libc::EINVAL) => {
                    ": is an interface of that name already in use by another program?"
                }
                Some(libc::ENOENT) => ": is the tun module loaded (/dev/net/tun)?",
                _ => "",
            };
            Error::device(
                ctx.name,
                format!("cannot create TAP interface {iface}: {e}{hint}"),
            )
        })?;
        let port = Arc::new(TapPort {
            name: ctx.name.into(),
            iface,
            port_id: ctx.port_id,
            rec: ctx.record,
            fds: Mutex::new(vec![Arc::new(fd)]),
        });
        let shared = port.clone();
        TAP_FDS.publish(ctx.name, move || shared.dup_fds());
        Ok(Box::new(SharedTap(port)))
    }

    fn attach(&self, ctx: &PortContext) -> Result<Box<dyn PortDriver>> {
        let fds = TAP_FDS.fetch(ctx.name)?;
        Ok(Box::new(SharedTap(Arc::new(TapPort {
            name: ctx.name.into(),
            iface: String::new(),
            port_id: ctx.port_id,
            rec: ctx.record,
            fds: Mutex::new(fds.into_iter().map(Arc::new).collect()),
        }))))
    }
}

/// The port driver: shared with the fd-handing IPC handler in the primary.
struct SharedTap(Arc<TapPort>);

impl PortDriver for SharedTap {
    fn info(&self) -> DevInfo {
        DevInfo {
            driver_name: "net_tap",
            max_rx_queues: MAX_QUEUES as u16,
            max_tx_queues: MAX_QUEUES as u16,
            min_mtu: 68,
            max_mtu: 1500,
            if_name: (!self.0.iface.is_empty()).then(|| self.0.iface.clone()),
            tx_offload_capa: Default::default(),
        }
    }

    fn configure(&self, nb_rxq: u16, nb_txq: u16, _conf: &net::PortConf) -> Result<()> {
        let want = nb_rxq.max(nb_txq) as usize;
        let mut fds = self.0.fds.lock().unwrap_or_else(|p| p.into_inner());
        while fds.len() < want {
            let fd = open_queue(&self.0.iface).map_err(|e| {
                Error::device(
                    &self.0.name,
                    format!("cannot open TAP queue {}: {e}", fds.len()),
                )
            })?;
            fds.push(Arc::new(fd));
        }
        Ok(())
    }

    fn start(&self) -> Result<()> {
        crate::netdev::set_up(&self.0.iface, true).map_err(|e| {
            Error::device(
                &self.0.name,
                format!("cannot bring {} up: {e}", self.0.iface),
            )
        })
    }

    fn stop(&self) -> Result<()> {
        crate::netdev::set_up(&self.0.iface, false).map_err(|e| {
            Error::device(
                &self.0.name,
                format!("cannot bring {} down: {e}", self.0.iface),
            )
        })
    }

    fn close(&self) -> Result<()> {
        TAP_FDS.withdraw(&self.0.name);
        self.0.fds.lock().unwrap_or_else(|p| p.into_inner()).clear();
        Ok(())
    }

    fn link_update(&self) -> Link {
        crate::software_link(&self.0.rec)
    }

    fn rx_queue(&self, q: u16) -> Result<Box<dyn RxBurst>> {
        let pool =
            self.0.rec.rx_pool(q).ok_or_else(|| {
                Error::device(&self.0.name, format!("RX queue {q} has no mbuf pool"))
            })?;
        // The kernel spreads the frames it sends over every queue of the TAP, also those
        // opened only for TX queues beyond the RX ones: the last RX queue reads those too,
        // so that no frame is left in a queue nobody polls.
        let mut fds = vec![self.0.fd(q)?];
        let nb_rxq = self.0.rec.nb_rx_queues();
        if q + 1 == nb_rxq {
            let nb_fds = self.0.fds.lock().unwrap_or_else(|p| p.into_inner()).len();
            for extra in nb_rxq as usize..nb_fds {
                fds.push(self.0.fd(extra as u16)?);
            }
        }
        Ok(Box::new(TapRx {
            fds,
            spare: None,
            pool,
            port_id: self.0.port_id,
            rec: self.0.rec,
        }))
    }

    fn tx_queue(&self, q: u16) -> Result<Box<dyn TxBurst>> {
        Ok(Box::new(TapTx {
            fd: self.0.fd(q)?,
            taken: self.0.rec.tx_taken(q),
        }))
    }
    fn tx_taken_since(&self, q: u16, mark: u32) -> Option<u32> {
        Some(self.0.rec.tx_taken(q).since(mark))
    }
    fn recover_queue(&self, dir: Direction, q: u16) {
        self.0.rec.recover_taken(dir, q)
    }
}

struct TapRx {
    /// The queue's own fd first, then any TX-only queues' fds it also drains.
    fds: Vec<Arc<OwnedFd>>,
    /// The empty mbuf of the last read that found nothing, kept for the next one rather
    /// than freed and allocated again on every idle poll.
    spare: Option<Mbuf>,
    pool: PktmbufPool,
    port_id: u16,
    rec: DeviceRecord,
}

impl RxBurst for TapRx {
    fn rx_burst(&mut self, out: &mut Vec<Mbuf>, max: usize) -> usize {
        let mut n = 0;
        for fd in &self.fds {
            while n < max {
                let Some(mut m) = self.spare.take().or_else(|| self.pool.alloc()) else {
                    self.rec.count_rx_nombuf(1);
                    return n;
                };
                let room = m.tailroom();
                let Some(buf) = m.append(room) else { return n };
                // SAFETY: read into the mbuf's data room we own, at most its length.
                let got = unsafe {
                    libc::read(
                        fd.as_raw_fd(),
                        buf.as_mut_ptr() as *mut libc::c_void,
                        buf.len(),
                    )
                };
                if got <= 0 {
                    // EAGAIN: nothing more now on this fd.
                    m.trim(room);
                    self.spare = Some(m);
                    break;
                }
                m.trim(room - got as u16);
                m.set_port(self.port_id);
                out.push(m);
                n += 1;
            }
        }
        n
    }
}

struct TapTx {
    fd: Arc<OwnedFd>,
    taken: TakenCounter,
}

fn write_packet(fd: RawFd, m: &Mbuf) -> bool {
    let iov: Vec<libc::iovec> = m
        .segments()
        .map(|s| libc::iovec {
            iov_base: s.as_ptr() as *mut libc::c_void,
            iov_len: s.len(),
        })
        .collect();
    // SAFETY: the iovecs point at the packet's segments, alive for the call.
    let n = unsafe { libc::writev(fd, iov.as_ptr(), iov.len() as libc::c_int) };
    n >= 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::EAGAIN)
}

impl TxBurst for TapTx {
    fn tx_burst(&mut self, pkts: &mut Vec<Mbuf>) -> usize {
        // Frames the kernel refuses (other than for a full queue) count as sent and dropped,
        // as a NIC drops a malformed frame; a full queue stops the burst.
        let n = pkts
            .iter()
            .take_while(|m| write_packet(self.fd.as_raw_fd(), m))
            .count();
        self.taken.free_taken(pkts, n);
        n
    }
    fn tx_mark(&self) -> Option<u32> {
        Some(self.taken.mark())
    }
}
