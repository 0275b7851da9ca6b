//! A register-level model of the Intel 82599 for testing ixgbe drivers: a test component,
//! not a driver. A port's BAR 0 reaches a driver one of two ways:
//! - a shared file that every process of a group maps (`--vdev net_ixgbe_model<N>,bar=PATH`,
//!   the host tests and the cycle benchmark): the device thread watches the registers;
//!   the PMD reads clear-on-read registers (counters, EICR) with an atomic swap;
//! - a PCI function over vfio-user (`vfio-user=SOCK`), which QEMU's `vfio-user-pci` puts in a
//!   guest, where Linux's ixgbe, DPDK's net_ixgbe and ours drive it: every register access
//!   is a message, answered as the datasheet says (`mmio`), with the PCI configuration
//!   space (`pci`), DMA into guest memory and MSI-X interrupts (`vfio_user`).
//!
//! What the device does, either way (`port`):
//! - CTRL.RST / CTRL.LNK_RST (and a function-level reset) reset the registers and
//!   self-clear; EEC.ARD (auto-read done) and RDRXCTL.DMAIDONE appear; the port's MAC is
//!   loaded from the EEPROM image (`eeprom`, read through EERD) into RAL0/RAH0.
//! - AUTOC.AN_RESTART brings the link up 5 ms later (LINKS.UP, 10 Gb/s, KX AN complete)
//!   unless the cable is unplugged (`link N down` on standard input); link changes raise
//!   EICR.LSC.
//! - RXDCTL/TXDCTL.ENABLE latch a queue's ring (base, length); a TX queue latches only with
//!   DMATXCTL.TE set.
//! - TX: descriptors from TDH to TDT (advanced context descriptors skipped) are fetched from
//!   DMA memory, the frame leaves on the port's wire, DD is written back where RS is set,
//!   TDH advances. Frames asking for segmentation or checksum insertion are not sent
//!   (counted): the model does not do those offloads.
//! - RX (RXCTRL.RXEN): frames pass the filters (own address in the receive address table,
//!   broadcast with FCTRL.BAM, multicast with FCTRL.MPE or the MTA, anything with
//!   FCTRL.UPE), pick a queue by RSS (MRQC, key, RETA: Toeplitz over IPv4 addresses and
//!   TCP/UDP ports), are written to the queue's buffers and written back (length, DD, EOP,
//!   RSS hash and type; a batch's write-backs after the batch's data); with no descriptor
//!   free they are dropped and counted in MPC. Statistics: GPRC/GORC/BPRC/MPRC/TPR,
//!   GPTC/GOTC/TPT, MPC.
//! - DMA outside the memory the device was given is logged, the frame dropped and counted.
//!
//! ```text
//! ixgbe_model --file-prefix PREFIX --port bar=PATH,udp=LISTEN:SEND[,mac=AA:BB:..] [--port ...]
//! ixgbe_model --file-prefix PREFIX --port bar=PATH,gen=LEN[,mac=AA:BB:..]
//! ixgbe_model --port vfio-user=SOCK,udp=LISTEN:SEND[,mac=AA:BB:..] [--port ...]
//! ixgbe_model ... --evil long-rx-len,unposted-dd,stop-completing
//! ```
//! `--evil` makes every port lie to the driver now and then (see `port::Evil`): an RX
//! write-back longer than the buffer or DD on the RX tail every 7th frame, TX that stops
//! completing after 100 frames.
//! With `udp=`, frames go out to 127.0.0.1:SEND and come in on 127.0.0.1:LISTEN, one per
//! datagram (as QEMU's `-netdev dgram`), so `port_helper udp-fwd` drives it. With `gen=` the
//! wire is a benchmark's traffic source and sink (`scripts/bench ixgbe`): every free RX
//! descriptor gets a LEN-byte UDP frame for the port's address, and what the port sends is
//! counted and dropped. A shared-file port maps the group's memory (as a device reaches it
//! by DMA) when a queue is first enabled.
//!
//! It prints `READY` when the ports can be reached, and reads on standard input:
//! `link N up|down`; `record N LABEL` (record the driver's register writes on port N from
//! now to the port's first sent frame); `records` (print every finished recording, one
//! `record LABEL PORT OFFSET VALUE` line per register); `stats` (per port: DMA errors, refused
//! frames, and the wire's frames by fate); `quit`.

mod dma;
mod eeprom;
mod mmio;
mod pci;
mod port;
mod regs;
mod vfio_user;

use dma::Dma;
use mmio::Recording;
use net::MacAddr;
use port::{Port, Transport, Wire};
use regs::Regs;
use std::io::BufRead;
use std::net::UdpSocket;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

/// The group's memory, attached at the first DMA of any shared-file port.
type GroupMemoryCell = Arc<std::sync::OnceLock<eal::memory::GroupMemory>>;

fn fail(msg: impl std::fmt::Display) -> ! {
    eprintln!("ixgbe_model: error: {msg}");
    std::process::exit(2)
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
    /// The shared register file (bar=) or the vfio-user socket (vfio-user=).
    bar: String,
    vfio_user: String,
    listen: u16,
    send: u16,
    generate: Option<usize>,
    mac: MacAddr,
}

const PORT_USAGE: &str =
    "give bar=PATH or vfio-user=SOCK, and one of udp=LISTEN:SEND or gen=LEN[,mac=..]";

fn parse_port(i: usize, s: &str) -> PortSpec {
    let mut spec = PortSpec {
        bar: String::new(),
        vfio_user: String::new(),
        listen: 0,
        send: 0,
        generate: None,
        mac: MacAddr([0x52, 0x54, 0x00, 0x82, 0x59, i as u8]),
    };
    for kv in s.split(',') {
        match kv.split_once('=') {
            Some(("bar", v)) => spec.bar = v.into(),
            Some(("vfio-user", v)) => spec.vfio_user = v.into(),
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
    if spec.bar.is_empty() == spec.vfio_user.is_empty()
        || (spec.listen == 0) == spec.generate.is_none()
    {
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

/// Builds port `id` from its spec; a vfio-user port is served from a thread of its own.
fn start_port(id: usize, s: PortSpec, group: &(String, GroupMemoryCell)) -> Arc<Mutex<Port>> {
    let wire = match s.generate {
        Some(len) => Wire::Generator {
            frame: generator_frame(len, s.mac).into(),
        },
        None => Wire::Udp {
            sock: udp_socket(s.listen),
            peer: (std::net::Ipv4Addr::LOCALHOST, s.send),
        },
    };
    if !s.vfio_user.is_empty() {
        let transport = Transport::Trapped(Box::default());
        let port = Port::new(id, Regs::private(), s.mac, wire, transport, Dma::guest());
        let port = Arc::new(Mutex::new(port));
        vfio_user::start(s.vfio_user, port.clone());
        return port;
    }
    // SAFETY: plain syscall; the fd is owned right away.
    let efd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
    if efd < 0 {
        fail(std::io::Error::last_os_error());
    }
    // SAFETY: a new fd nobody else owns.
    let irq = unsafe { OwnedFd::from_raw_fd(efd) };
    let served = irq.try_clone().unwrap_or_else(|e| fail(e));
    serve_irq(format!("{}.irq", s.bar), served);
    let transport = Transport::SharedFile { irq, eims: 0 };
    let regs = Regs::shared_file(&s.bar);
    Arc::new(Mutex::new(Port::new(
        id,
        regs,
        s.mac,
        wire,
        transport,
        Dma::group(group.0.clone(), group.1.clone()),
    )))
}

fn lock(p: &Mutex<Port>) -> std::sync::MutexGuard<'_, Port> {
    // A panic elsewhere ends the process: the lock is never poisoned.
    p.lock().unwrap_or_else(|e| e.into_inner())
}

/// What standard input asks for, applied to the ports; false on `quit`.
fn command(line: &str, ports: &[Arc<Mutex<Port>>]) -> bool {
    let w: Vec<&str> = line.split_whitespace().collect();
    let port = |n: &str| n.parse::<usize>().ok().and_then(|n| ports.get(n));
    match w.as_slice() {
        ["link", n, state @ ("up" | "down")] => match port(n) {
            Some(p) => lock(p).cable.store(*state == "up", Ordering::Release),
            None => eprintln!("ixgbe_model: no port {n}"),
        },
        ["record", n, label] => match port(n) {
            Some(p) => {
                if let Some(t) = lock(p).trapped() {
                    t.recordings.push(Recording {
                        label: label.to_string(),
                        writes: Default::default(),
                        done: false,
                    });
                }
                println!("recording {label} on port {n}");
            }
            None => eprintln!("ixgbe_model: no port {n}"),
        },
        ["records"] => {
            for (id, p) in ports.iter().enumerate() {
                if let Some(t) = lock(p).trapped() {
                    for r in t.recordings.iter().filter(|r| r.done) {
                        for (off, v) in &r.writes {
                            println!("record {} {id} {off:#07x} {v:#010x}", r.label);
                        }
                    }
                }
            }
            println!("records end");
        }
        ["stats"] => {
            for (id, p) in ports.iter().enumerate() {
                let p = lock(p);
                let w = &p.wire_counts;
                println!(
                    "port {id} dma_errors {} tx_refused {} arrived {} receiver_off {} filtered {} missed {} sent {} send_errors {}",
                    p.dma.errors, p.tx_refused, w.arrived, w.receiver_off, w.filtered, w.missed, w.sent, w.send_errors
                );
            }
        }
        ["quit"] => return false,
        _ => eprintln!(
            "ixgbe_model: unknown command '{line}' (link N up|down, record N LABEL, records, stats, quit)"
        ),
    }
    true
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut prefix = "rpmd".to_string();
    let mut specs = Vec::new();
    let mut evil = port::Evil::default();
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
            "--evil" => {
                let kinds = it.next().unwrap_or_else(|| fail("--evil KIND[,KIND...]"));
                evil = port::Evil::parse(kinds).unwrap_or_else(|e| fail(e));
            }
            other => fail(format!("unknown argument '{other}'")),
        }
    }
    if specs.is_empty() {
        fail(format!("give at least one --port: {PORT_USAGE}"));
    }
    let group = (prefix, GroupMemoryCell::default());
    let ports: Vec<Arc<Mutex<Port>>> = specs
        .into_iter()
        .enumerate()
        .map(|(id, s)| start_port(id, s, &group))
        .collect();
    for p in &ports {
        lock(p).evil = evil;
    }
    let (quit_tx, quit_rx) = mpsc::channel();
    let commanded = ports.clone();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines().map_while(Result::ok) {
            if !command(&line, &commanded) {
                break;
            }
        }
        let _ = quit_tx.send(());
    });
    println!("READY");
    let mut buf = vec![0u8; 65536];
    let mut idle = 0u32;
    while quit_rx.try_recv().is_err() {
        let mut busy = false;
        for p in &ports {
            let mut p = lock(p);
            p.control();
            busy |= p.transmit();
            busy |= p.receive(&mut buf);
            if std::mem::take(&mut p.sent) {
                if let Some(r) = p.trapped().and_then(|t| t.recordings.last_mut()) {
                    r.done = true;
                }
            }
        }
        // Spin briefly when there was work, then back off so that the model leaves the
        // CPUs to the processes under test.
        idle = if busy { 0 } else { idle + 1 };
        if idle > 100 {
            std::thread::sleep(Duration::from_micros(50));
        }
    }
}
