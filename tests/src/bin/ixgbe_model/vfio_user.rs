//! A port as a PCI function served over vfio-user (QEMU's `vfio-user-pci` client), with
//! the rust-vmm `vfio_user` crate's server: configuration space, BAR 0 (the registers,
//! every access a message), BAR 4 (MSI-X table and PBA, which QEMU emulates), DMA into
//! the guest memory QEMU shares, interrupts through the eventfds QEMU hands over.
//!
//! One client at a time: while one is served, another that connects is refused (logged,
//! its connection closed). When the client goes away (QEMU quit or was killed), the port
//! is reset, its DMA mappings and eventfds dropped, and the next client is served.

use super::pci::{Config, BAR4_LEN, CONFIG_LEN, MSIX_VECTORS};
use super::port::Port;
use drivers::intel::regs::ixgbe::BAR_LEN;
use std::fs::File;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use vfio_bindings::bindings::vfio::*;
use vfio_user::{DmaMapFlags, DmaUnmapFlags, IrqInfo, Server, ServerBackend, ServerRegion};

struct Backend {
    port: Arc<Mutex<Port>>,
    config: Config,
    /// Set while a client is served (by its first device access).
    busy: Arc<AtomicBool>,
}

impl Backend {
    fn port(&self) -> std::sync::MutexGuard<'_, Port> {
        self.busy.store(true, Ordering::Release);
        super::lock(&self.port)
    }
}

fn bad_access(what: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidInput, what.to_string())
}

impl ServerBackend for Backend {
    fn region_read(&mut self, region: u32, offset: u64, data: &mut [u8]) -> std::io::Result<()> {
        match region {
            VFIO_PCI_CONFIG_REGION_INDEX => {
                self.busy.store(true, Ordering::Release);
                self.config.read(offset as usize, data);
            }
            VFIO_PCI_BAR0_REGION_INDEX => {
                let mut p = self.port();
                // 32-bit registers; a 64-bit access is two (low first), a narrower one
                // reads its bytes of the register.
                let off = offset as usize;
                let word = off & !3;
                if data.len() <= 4 && off + data.len() <= word + 4 {
                    let v = p.mmio_read(word).to_le_bytes();
                    data.copy_from_slice(&v[off - word..off - word + data.len()]);
                } else if data.len() == 8 && off.is_multiple_of(4) {
                    let lo = p.mmio_read(off);
                    let hi = p.mmio_read(off + 4);
                    data.copy_from_slice(&(lo as u64 | (hi as u64) << 32).to_le_bytes());
                } else {
                    return Err(bad_access("unaligned BAR 0 read"));
                }
            }
            // MSI-X table and PBA: QEMU emulates both; nothing is pending here.
            VFIO_PCI_BAR4_REGION_INDEX => data.fill(0),
            _ => return Err(bad_access("no such region")),
        }
        Ok(())
    }

    fn region_write(&mut self, region: u32, offset: u64, data: &[u8]) -> std::io::Result<()> {
        match region {
            VFIO_PCI_CONFIG_REGION_INDEX => {
                if self.config.write(offset as usize, data) {
                    println!("function-level reset");
                    self.port().reset();
                }
            }
            VFIO_PCI_BAR0_REGION_INDEX => {
                let mut p = self.port();
                let off = offset as usize;
                match data.len() {
                    4 if off.is_multiple_of(4) => p.mmio_write(
                        off,
                        u32::from_le_bytes([data[0], data[1], data[2], data[3]]),
                    ),
                    8 if off.is_multiple_of(4) => {
                        let v =
                            u64::from_le_bytes(data.try_into().map_err(|_| bad_access("length"))?);
                        p.mmio_write(off, v as u32);
                        p.mmio_write(off + 4, (v >> 32) as u32);
                    }
                    _ => return Err(bad_access("BAR 0 takes 32- and 64-bit aligned writes")),
                }
            }
            VFIO_PCI_BAR4_REGION_INDEX => {}
            _ => return Err(bad_access("no such region")),
        }
        Ok(())
    }

    fn dma_map(
        &mut self,
        _flags: DmaMapFlags,
        offset: u64,
        address: u64,
        size: u64,
        fd: Option<File>,
    ) -> std::io::Result<()> {
        let Some(fd) = fd else {
            // Not memory (another device's BAR, a ROM): QEMU sends no file for it, and a
            // DMA there finds nothing, as it would on the card.
            return Ok(());
        };
        self.port().dma.map(address, size, &fd, offset)
    }

    fn dma_unmap(&mut self, _flags: DmaUnmapFlags, address: u64, size: u64) -> std::io::Result<()> {
        self.port().dma.unmap(address, size);
        Ok(())
    }

    fn reset(&mut self) -> std::io::Result<()> {
        self.port().reset();
        Ok(())
    }

    fn set_irqs(
        &mut self,
        index: u32,
        flags: u32,
        start: u32,
        count: u32,
        fds: Vec<File>,
    ) -> std::io::Result<()> {
        let mut p = self.port();
        let Some(t) = p.trapped() else { return Ok(()) };
        if flags & VFIO_IRQ_SET_ACTION_TRIGGER == 0 {
            // Masking INTx: the model raises edges only.
            return Ok(());
        }
        let fds = if flags & VFIO_IRQ_SET_DATA_EVENTFD != 0 {
            fds
        } else {
            Vec::new()
        };
        match index {
            VFIO_PCI_MSIX_IRQ_INDEX => {
                if count == 0 {
                    t.vectors.clear();
                    return Ok(());
                }
                let end = (start + count) as usize;
                if t.vectors.len() < end {
                    t.vectors.resize_with(end, || None);
                }
                let mut fds = fds.into_iter();
                for v in &mut t.vectors[start as usize..end] {
                    *v = fds.next();
                }
            }
            VFIO_PCI_MSI_IRQ_INDEX | VFIO_PCI_INTX_IRQ_INDEX => t.single = fds.into_iter().next(),
            _ => {}
        }
        Ok(())
    }
}

fn regions(bar0_len: u64) -> Vec<ServerRegion> {
    (0..VFIO_PCI_NUM_REGIONS)
        .map(|index| {
            let size = match index {
                VFIO_PCI_BAR0_REGION_INDEX => bar0_len,
                VFIO_PCI_BAR4_REGION_INDEX => BAR4_LEN,
                VFIO_PCI_CONFIG_REGION_INDEX => CONFIG_LEN as u64,
                _ => 0,
            };
            let flags = if size > 0 {
                VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE
            } else {
                0
            };
            ServerRegion {
                region_info: vfio_region_info {
                    argsz: std::mem::size_of::<vfio_region_info>() as u32,
                    index,
                    size,
                    flags,
                    ..Default::default()
                },
                sparse_areas: Vec::new(),
                mmap_fd: None,
            }
        })
        .collect()
}

fn irqs() -> Vec<IrqInfo> {
    (0..VFIO_PCI_NUM_IRQS)
        .map(|index| {
            let (count, flags) = match index {
                VFIO_PCI_INTX_IRQ_INDEX => (1, VFIO_IRQ_INFO_EVENTFD | VFIO_IRQ_INFO_MASKABLE),
                VFIO_PCI_MSI_IRQ_INDEX => (1, VFIO_IRQ_INFO_EVENTFD | VFIO_IRQ_INFO_NORESIZE),
                VFIO_PCI_MSIX_IRQ_INDEX => {
                    (MSIX_VECTORS, VFIO_IRQ_INFO_EVENTFD | VFIO_IRQ_INFO_NORESIZE)
                }
                _ => (0, 0),
            };
            IrqInfo {
                index,
                flags,
                count,
            }
        })
        .collect()
}

/// Refuses clients that connect while one is served.
fn refuse_others(listener: UnixListener, path: String, busy: Arc<AtomicBool>) {
    let fd = listener.as_raw_fd();
    loop {
        let mut pfd = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one pollfd on our listening socket, for at most 200 ms.
        let n = unsafe { libc::poll(&mut pfd, 1, 200) };
        if n <= 0 || !busy.load(Ordering::Acquire) {
            // Not serving: the server's own accept takes the connection.
            std::thread::sleep(Duration::from_millis(50));
            continue;
        }
        if let Ok((conn, _)) = listener.accept() {
            eprintln!(
                "ixgbe_model: refused a second client on {path}: the port serves one QEMU at a time (stop the other first)"
            );
            drop(conn);
        }
    }
}

/// Serves `port` on the unix socket `path` from a thread of its own, until the process
/// ends. The socket exists when this returns, so a client may connect at once.
pub fn start(path: String, port: Arc<Mutex<Port>>) {
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path)
        .unwrap_or_else(|e| super::fail(format!("vfio-user socket {path}: {e}")));
    // Non-blocking, so that the refusing thread and the server never wait in accept for
    // a connection the other took.
    listener
        .set_nonblocking(true)
        .unwrap_or_else(|e| super::fail(e));
    let busy = Arc::new(AtomicBool::new(false));
    let spare = listener.try_clone().unwrap_or_else(|e| super::fail(e));
    let (p2, b2) = (path.clone(), busy.clone());
    std::thread::spawn(move || refuse_others(spare, p2, b2));
    let server = Server::from_owned_fd(
        OwnedFd::from(listener),
        true,
        irqs(),
        regions(BAR_LEN as u64),
    );
    let mut backend = Backend {
        port,
        config: Config::new(BAR_LEN as u64),
        busy: busy.clone(),
    };
    std::thread::spawn(move || serve(&server, &mut backend, &busy));
}

/// Serves one client after another on `server`.
fn serve(server: &Server, backend: &mut Backend, busy: &AtomicBool) {
    let id = super::lock(&backend.port).id;
    loop {
        match server.run(backend) {
            Err(vfio_user::Error::SocketAccept(e))
                if e.kind() == std::io::ErrorKind::WouldBlock =>
            {
                std::thread::sleep(Duration::from_millis(20));
                continue;
            }
            Ok(()) => println!("port {id}: client closed the connection"),
            Err(e) => println!("port {id}: client gone ({e})"),
        }
        let mut p = backend.port();
        p.reset();
        p.dma.unmap_all();
        if let Some(t) = p.trapped() {
            t.vectors.clear();
            t.single = None;
        }
        drop(p);
        backend.config = Config::new(BAR_LEN as u64);
        busy.store(false, Ordering::Release);
        println!("port {id}: ready for the next client");
    }
}
