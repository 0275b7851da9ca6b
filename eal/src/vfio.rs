//! VFIO: PCI devices driven from user space behind an IOMMU.
//!
//! The primary opens one container per process (as DPDK's default container), adds each
//! device's IOMMU group to it, sets the type 1 IOMMU and maps every memory segment of the
//! group with IOVA = VA, so any mbuf in any process's view of the shared memory is a valid
//! DMA address. Without an IOMMU, vfio's no-IOMMU mode (`enable_unsafe_noiommu_mode`)
//! gives each device a group of its own and translates nothing: the memory must then be in
//! IOVA mode PA (each page's physical address, recorded at start-up). A secondary asks the
//! primary for the device fd over IPC (the same open file, so the same container and
//! mappings) and maps the BARs itself: BAR mappings are per-process addresses
//! (ARCHITECTURE.md, rule 3).

use crate::options::PciAddr;
use crate::pci::{PciDevice, Sysfs};
use crate::{ipc::Message, Role};
use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::FileExt;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use vfio_bindings::bindings::vfio::*;

// VFIO ioctl numbers: _IO(';', 100 + n), from linux/vfio.h.
const VFIO_GET_API_VERSION: u64 = 0x3b64;
const VFIO_CHECK_EXTENSION: u64 = 0x3b65;
const VFIO_SET_IOMMU: u64 = 0x3b66;
const VFIO_GROUP_GET_STATUS: u64 = 0x3b67;
const VFIO_GROUP_SET_CONTAINER: u64 = 0x3b68;
const VFIO_GROUP_GET_DEVICE_FD: u64 = 0x3b6a;
const VFIO_DEVICE_GET_INFO: u64 = 0x3b6b;
const VFIO_DEVICE_GET_REGION_INFO: u64 = 0x3b6c;
const VFIO_DEVICE_GET_IRQ_INFO: u64 = 0x3b6d;
const VFIO_DEVICE_SET_IRQS: u64 = 0x3b6e;
const VFIO_DEVICE_RESET: u64 = 0x3b6f;
const VFIO_IOMMU_MAP_DMA: u64 = 0x3b71;

/// PCI command register and its bits.
const PCI_COMMAND: u64 = 0x04;
const PCI_COMMAND_MEMORY: u16 = 0x2;
const PCI_COMMAND_MASTER: u16 = 0x4;
const PCI_COMMAND_INTX_DISABLE: u16 = 0x400;

/// The IPC action a secondary uses to get a device fd from the primary.
const IPC_DEVICE_FD: &str = "vfio_device_fd";

/// What opening, mapping or driving a device through VFIO can fail with.
#[derive(Debug, thiserror::Error)]
pub enum VfioError {
    /// A PCI look-up failed.
    #[error(transparent)]
    Pci(#[from] crate::pci::PciError),
    /// The device is not bound to vfio-pci.
    #[error("device {addr} ({desc}) is {now}, not vfio-pci: bind it with `devbind --bind=vfio-pci {addr}`")]
    NotBound {
        /// The device.
        addr: PciAddr,
        /// Its name from the PCI ids database.
        desc: String,
        /// The driver it is bound to now, or none.
        now: String,
    },
    /// The kernel runs without an IOMMU and without vfio's no-IOMMU mode.
    #[error("device {0} has no IOMMU group: the kernel runs without an IOMMU. Boot with `intel_iommu=on` (or `amd_iommu=on`) with VT-d or AMD-Vi enabled in the firmware, or, where there is no IOMMU, load vfio with enable_unsafe_noiommu_mode=1 (a kernel built with CONFIG_VFIO_NOIOMMU) and bind the device to vfio-pci")]
    NoIommu(PciAddr),
    /// A no-IOMMU device with memory in IOVA mode VA.
    #[error("device {0} is in vfio's no-IOMMU mode, where it reads and writes physical addresses, but this group's memory uses IOVA = VA: run as root on hugepages (not --no-huge), without --iova-mode=va")]
    NoIommuNeedsPa(PciAddr),
    /// Another device of the IOMMU group is bound to a kernel driver.
    #[error("IOMMU group {group} of device {addr} is not viable: every device of the group must be bound to vfio-pci or to no driver; the group holds {members}. Unbind the others (`devbind --unbind ADDR`) or bind them to vfio-pci too, or move the device to a slot with a group of its own")]
    NotViable {
        /// The IOMMU group.
        group: u32,
        /// The device asked for.
        addr: PciAddr,
        /// The group's devices and their drivers.
        members: String,
    },
    /// Another process group holds the device.
    #[error("device {addr} (IOMMU group {group}) is already in use by {holder}: each device belongs to one process group at a time; give the groups different devices with -a/-b")]
    Busy {
        /// The device.
        addr: PciAddr,
        /// Its IOMMU group.
        group: u32,
        /// The process holding it, with its `--file-prefix`.
        holder: String,
    },
    /// A VFIO file could not be opened.
    #[error("cannot open {path}: {source}{hint}")]
    Open {
        /// The file.
        path: String,
        /// Why.
        source: io::Error,
        /// What to do, when known.
        hint: &'static str,
    },
    /// A VFIO ioctl failed.
    #[error("VFIO {what} failed for {target}: {source}")]
    Ioctl {
        /// The request.
        what: &'static str,
        /// The container, group or device.
        target: String,
        /// Why.
        source: io::Error,
    },
    /// The device does not behave as expected.
    #[error("device {addr}: {what}")]
    Device {
        /// The device.
        addr: PciAddr,
        /// What was wrong.
        what: String,
    },
    /// The primary did not hand the device to this secondary.
    #[error("the primary could not hand device {addr} to this process: {why}")]
    Secondary {
        /// The device.
        addr: PciAddr,
        /// Why.
        why: String,
    },
}

/// VFIO results.
pub type Result<T, E = VfioError> = std::result::Result<T, E>;

fn ioctl_err(what: &'static str, target: impl ToString) -> impl FnOnce(io::Error) -> VfioError {
    let target = target.to_string();
    move |source| VfioError::Ioctl {
        what,
        target,
        source,
    }
}

/// Runs an ioctl whose argument is a pointer to `arg` (or a plain integer).
///
/// # Safety
/// `arg` must be what the kernel expects for `req` on `fd`.
unsafe fn ioctl<T>(fd: RawFd, req: u64, arg: T) -> io::Result<i32> {
    // SAFETY: forwarded to the caller.
    let r = unsafe { libc::ioctl(fd, req as libc::c_ulong, arg) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// The character device of IOMMU group `group` (vfio names no-IOMMU groups apart).
fn group_path(group: u32, noiommu: bool) -> String {
    if noiommu {
        format!("/dev/vfio/noiommu-{group}")
    } else {
        format!("/dev/vfio/{group}")
    }
}

/// Who holds the group's device open: "process PID (NAME, --file-prefix ...)".
pub fn group_holder(group: u32) -> String {
    let target = group_path(group, Sysfs::default().is_noiommu_group(group));
    crate::sys::fd_holders(&target, None)
        .first()
        .map(|pid| crate::sys::describe_process(*pid))
        .unwrap_or_else(|| "another process".into())
}

/// This process's container and the groups in it.
struct Container {
    fd: OwnedFd,
    groups: HashMap<u32, OwnedFd>,
    /// Opened devices, shared by the ports that use them and by the IPC handler.
    devices: HashMap<PciAddr, Arc<VfioDevice>>,
}

static CONTAINER: OnceLock<Mutex<Option<Container>>> = OnceLock::new();

fn container() -> &'static Mutex<Option<Container>> {
    CONTAINER.get_or_init(|| Mutex::new(None))
}

fn open_dev(path: &str, hint: &'static str) -> Result<OwnedFd> {
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(|source| VfioError::Open {
            path: path.into(),
            source,
            hint,
        })?;
    Ok(f.into())
}

fn new_container() -> Result<Container> {
    let fd = open_dev(
        "/dev/vfio/vfio",
        ": load the vfio-pci module (`modprobe vfio-pci`)",
    )?;
    // SAFETY: these two ioctls take an integer argument or none.
    let version = unsafe { ioctl(fd.as_raw_fd(), VFIO_GET_API_VERSION, 0) }
        .map_err(ioctl_err("GET_API_VERSION", "the container"))?;
    if version != VFIO_API_VERSION as i32 {
        return Err(VfioError::Ioctl {
            what: "API version check",
            target: format!("the container (kernel API {version})"),
            source: io::Error::from(io::ErrorKind::Unsupported),
        });
    }
    Ok(Container {
        fd,
        groups: HashMap::new(),
        devices: HashMap::new(),
    })
}

/// Maps every memory segment of the group for DMA at its IOVA: whole segments with IOVA =
/// VA, page by page at the physical addresses with `--iova-mode=pa`.
fn map_group_memory(container: RawFd, addr: PciAddr) -> Result<()> {
    let eal = crate::eal().map_err(|e| VfioError::Device {
        addr,
        what: e.to_string(),
    })?;
    let cfg = eal.config();
    let chunk = match cfg.iova_mode() {
        crate::config::IovaMode::Va => u64::MAX,
        crate::config::IovaMode::Pa => cfg.page_size,
    };
    for seg in cfg.segments() {
        let start = cfg.base_va + seg.offset;
        let mut va = start;
        while va < start + seg.len {
            let len = chunk.min(start + seg.len - va);
            let map = vfio_iommu_type1_dma_map {
                argsz: std::mem::size_of::<vfio_iommu_type1_dma_map>() as u32,
                flags: VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE,
                vaddr: va,
                iova: cfg.virt_to_iova(va),
                size: len,
            };
            // SAFETY: map is a valid vfio_iommu_type1_dma_map; the range is our mapped memory.
            unsafe { ioctl(container, VFIO_IOMMU_MAP_DMA, &map) }
                .map_err(ioctl_err("MAP_DMA", format!("{va:#x}+{len:#x}")))?;
            va += len;
        }
    }
    log::debug!(
        "VFIO: mapped {} segment(s) for DMA, IOVA mode {:?}",
        cfg.segments().len(),
        cfg.iova_mode()
    );
    Ok(())
}

/// Adds the device's group to the container (first group: sets the IOMMU and maps memory).
fn add_group(c: &mut Container, dev: &PciDevice, group: u32) -> Result<RawFd> {
    if let Some(g) = c.groups.get(&group) {
        return Ok(g.as_raw_fd());
    }
    let noiommu = Sysfs::default().is_noiommu_group(group);
    let path = group_path(group, noiommu);
    let g = match open_dev(&path, "") {
        Err(VfioError::Open { source, .. }) if source.raw_os_error() == Some(libc::EBUSY) => {
            return Err(VfioError::Busy {
                addr: dev.addr,
                group,
                holder: group_holder(group),
            })
        }
        r => r?,
    };
    let mut status = vfio_group_status {
        argsz: std::mem::size_of::<vfio_group_status>() as u32,
        flags: 0,
    };
    // SAFETY: status is a valid vfio_group_status.
    unsafe { ioctl(g.as_raw_fd(), VFIO_GROUP_GET_STATUS, &mut status) }
        .map_err(ioctl_err("GROUP_GET_STATUS", &path))?;
    if status.flags & VFIO_GROUP_FLAGS_VIABLE == 0 {
        let members: Vec<String> = Sysfs::default()
            .iommu_group_devices(group)
            .iter()
            .map(|d| {
                format!(
                    "{} ({})",
                    d.addr,
                    d.driver.as_deref().unwrap_or("no driver")
                )
            })
            .collect();
        return Err(VfioError::NotViable {
            group,
            addr: dev.addr,
            members: members.join(", "),
        });
    }
    let cfd = c.fd.as_raw_fd();
    // SAFETY: the argument is a pointer to the container's fd.
    unsafe { ioctl(g.as_raw_fd(), VFIO_GROUP_SET_CONTAINER, &cfd) }
        .map_err(ioctl_err("GROUP_SET_CONTAINER", &path))?;
    if c.groups.is_empty() {
        set_iommu(cfd, dev.addr, noiommu)?;
    }
    let raw = g.as_raw_fd();
    c.groups.insert(group, g);
    Ok(raw)
}

/// Sets the container's IOMMU for its first group: type 1 with every memory segment mapped,
/// or no-IOMMU (nothing to map; the device sees physical addresses).
fn set_iommu(container: RawFd, addr: PciAddr, noiommu: bool) -> Result<()> {
    let pa = crate::eal()
        .map(|e| e.config().iova_mode() == crate::config::IovaMode::Pa)
        .unwrap_or(false);
    if noiommu && !pa {
        return Err(VfioError::NoIommuNeedsPa(addr));
    }
    let (iommu, what) = if noiommu {
        (VFIO_NOIOMMU_IOMMU, "the no-IOMMU check")
    } else {
        (VFIO_TYPE1v2_IOMMU, "the type 1 IOMMU check")
    };
    // SAFETY: these two ioctls take an integer argument.
    let offered = unsafe { ioctl(container, VFIO_CHECK_EXTENSION, iommu) }
        .map_err(ioctl_err("CHECK_EXTENSION", "the container"))?;
    if offered != 1 {
        return Err(VfioError::Ioctl {
            what,
            target: "the container".into(),
            source: io::Error::from(io::ErrorKind::Unsupported),
        });
    }
    // SAFETY: as above.
    unsafe { ioctl(container, VFIO_SET_IOMMU, iommu) }
        .map_err(ioctl_err("SET_IOMMU", "the container"))?;
    if !noiommu {
        return map_group_memory(container, addr);
    }
    log::warn!(
        "{addr}: vfio's no-IOMMU mode: the device can reach all memory; IOVA = physical addresses"
    );
    Ok(())
}

/// One region of a device (a BAR, the config space...).
#[derive(Clone, Copy, Debug, Default)]
pub struct Region {
    /// Bytes in the region.
    pub size: u64,
    /// Its offset in the device file.
    pub offset: u64,
    /// VFIO's region flags (readable, writable, mappable).
    pub flags: u32,
}

/// An opened VFIO device.
pub struct VfioDevice {
    addr: PciAddr,
    fd: OwnedFd,
    regions: Vec<Region>,
    num_irqs: u32,
}

impl std::fmt::Debug for VfioDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "VfioDevice({})", self.addr)
    }
}

impl VfioDevice {
    /// Opens `addr` for this process: the primary through its container, a secondary by
    /// asking the primary for the fd.
    pub fn open(addr: PciAddr) -> Result<Arc<VfioDevice>> {
        let role = crate::eal().map(|e| e.role()).unwrap_or(Role::Primary);
        let mut guard = container().lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = guard.as_ref() {
            if let Some(d) = c.devices.get(&addr) {
                return Ok(d.clone());
            }
        }
        let dev = match role {
            Role::Primary => Self::open_primary(&mut guard, addr)?,
            Role::Secondary => Self::open_secondary(addr)?,
        };
        let dev = Arc::new(dev);
        if let Some(c) = guard.as_mut() {
            c.devices.insert(addr, dev.clone());
        }
        Ok(dev)
    }

    fn open_primary(guard: &mut Option<Container>, addr: PciAddr) -> Result<VfioDevice> {
        let sys = Sysfs::default();
        let pdev = sys.device(addr)?;
        // Without an IOMMU, binding would fail too (unless vfio runs without one): say
        // what to fix first.
        if pdev.iommu_group.is_none() && !sys.noiommu_enabled() {
            return Err(VfioError::NoIommu(addr));
        }
        if pdev.driver.as_deref() != Some("vfio-pci") {
            return Err(VfioError::NotBound {
                addr,
                desc: pdev.description(),
                now: pdev
                    .driver
                    .as_ref()
                    .map_or("bound to no driver".into(), |d| format!("bound to {d}")),
            });
        }
        // vfio-pci gives every device it takes a group (a no-IOMMU one if need be).
        let group = pdev.iommu_group.ok_or(VfioError::NoIommu(addr))?;
        if guard.is_none() {
            *guard = Some(new_container()?);
            register_ipc();
        }
        let Some(c) = guard.as_mut() else {
            unreachable!("the container was created above")
        };
        let gfd = add_group(c, &pdev, group)?;
        let name = std::ffi::CString::new(addr.to_string()).map_err(|_| VfioError::Device {
            addr,
            what: "bad address".into(),
        })?;
        // SAFETY: the argument is a NUL-terminated device name.
        let fd = unsafe { ioctl(gfd, VFIO_GROUP_GET_DEVICE_FD, name.as_ptr()) }
            .map_err(ioctl_err("GROUP_GET_DEVICE_FD", addr))?;
        // SAFETY: the kernel returned a new fd that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Self::from_fd(addr, fd)
    }

    fn open_secondary(addr: PciAddr) -> Result<VfioDevice> {
        let fail = |why: String| VfioError::Secondary { addr, why };
        let eal = crate::eal().map_err(|e| fail(e.to_string()))?;
        let mut reply = eal
            .ipc()
            .request(
                None,
                Message::new(IPC_DEVICE_FD, addr.to_string()),
                Duration::from_secs(5),
            )
            .map_err(|e| fail(e.to_string()))?;
        if reply.fds.is_empty() {
            return Err(fail(reply.text()));
        }
        Self::from_fd(addr, reply.fds.remove(0))
    }

    /// Reads what a device fd offers.
    fn from_fd(addr: PciAddr, fd: OwnedFd) -> Result<VfioDevice> {
        let mut info = vfio_device_info {
            argsz: std::mem::size_of::<vfio_device_info>() as u32,
            ..Default::default()
        };
        // SAFETY: info is a valid vfio_device_info.
        unsafe { ioctl(fd.as_raw_fd(), VFIO_DEVICE_GET_INFO, &mut info) }
            .map_err(ioctl_err("DEVICE_GET_INFO", addr))?;
        if info.flags & VFIO_DEVICE_FLAGS_PCI == 0 {
            return Err(VfioError::Device {
                addr,
                what: "not a PCI device".into(),
            });
        }
        let mut regions = Vec::new();
        for index in 0..info.num_regions {
            let mut r = vfio_region_info {
                argsz: std::mem::size_of::<vfio_region_info>() as u32,
                index,
                ..Default::default()
            };
            // SAFETY: r is a valid vfio_region_info.
            let ok = unsafe { ioctl(fd.as_raw_fd(), VFIO_DEVICE_GET_REGION_INFO, &mut r) };
            regions.push(match ok {
                Ok(_) => Region {
                    size: r.size,
                    offset: r.offset,
                    flags: r.flags,
                },
                Err(_) => Region::default(),
            });
        }
        Ok(VfioDevice {
            addr,
            fd,
            regions,
            num_irqs: info.num_irqs,
        })
    }

    /// The device's PCI address.
    pub fn addr(&self) -> PciAddr {
        self.addr
    }

    fn file(&self) -> std::mem::ManuallyDrop<File> {
        // SAFETY: a File view of our fd that is never dropped (the fd stays ours).
        std::mem::ManuallyDrop::new(unsafe { File::from_raw_fd(self.fd.as_raw_fd()) })
    }

    fn config_region(&self) -> Region {
        self.regions
            .get(VFIO_PCI_CONFIG_REGION_INDEX as usize)
            .copied()
            .unwrap_or_default()
    }

    /// Reads PCI config space at `off`.
    pub fn config_read(&self, off: u64, buf: &mut [u8]) -> Result<()> {
        let r = self.config_region();
        self.file()
            .read_exact_at(buf, r.offset + off)
            .map_err(ioctl_err("config space read", self.addr))
    }

    /// Writes PCI config space at `off`.
    pub fn config_write(&self, off: u64, buf: &[u8]) -> Result<()> {
        let r = self.config_region();
        self.file()
            .write_all_at(buf, r.offset + off)
            .map_err(ioctl_err("config space write", self.addr))
    }

    /// Reads a byte of the config space at `off`.
    pub fn config_u8(&self, off: u64) -> Result<u8> {
        let mut b = [0u8; 1];
        self.config_read(off, &mut b)?;
        Ok(b[0])
    }

    /// Reads 16 bits of the config space at `off`.
    pub fn config_u16(&self, off: u64) -> Result<u16> {
        let mut b = [0u8; 2];
        self.config_read(off, &mut b)?;
        Ok(u16::from_le_bytes(b))
    }

    /// Reads 32 bits of the config space at `off`.
    pub fn config_u32(&self, off: u64) -> Result<u32> {
        let mut b = [0u8; 4];
        self.config_read(off, &mut b)?;
        Ok(u32::from_le_bytes(b))
    }

    /// Lets the device answer memory accesses and master the bus (DMA); primary only.
    pub fn enable_bus_master(&self) -> Result<()> {
        let cmd = self.config_u16(PCI_COMMAND)?;
        let want = cmd | PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER;
        if want != cmd {
            self.config_write(PCI_COMMAND, &want.to_le_bytes())?;
        }
        Ok(())
    }

    /// Maps BAR `bar` into this process.
    pub fn map_bar(&self, bar: u32) -> Result<Bar> {
        let r = self.regions.get(bar as usize).copied().unwrap_or_default();
        if r.size == 0 || r.flags & VFIO_REGION_INFO_FLAG_MMAP == 0 {
            return Err(VfioError::Device {
                addr: self.addr,
                what: format!(
                    "BAR {bar} cannot be mapped (size {}, flags {:#x})",
                    r.size, r.flags
                ),
            });
        }
        // SAFETY: a fresh shared mapping of the region, at an address the kernel picks.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                r.size as usize,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                self.fd.as_raw_fd(),
                r.offset as libc::off_t,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(ioctl_err("BAR mmap", self.addr)(io::Error::last_os_error()));
        }
        Ok(Bar {
            base: p as *mut u8,
            len: r.size as usize,
            emulated: false,
        })
    }

    /// How many vectors interrupt `index` (e.g. MSI-X) has.
    pub fn irq_count(&self, index: u32) -> u32 {
        if index >= self.num_irqs {
            return 0;
        }
        let mut info = vfio_irq_info {
            argsz: std::mem::size_of::<vfio_irq_info>() as u32,
            index,
            ..Default::default()
        };
        // SAFETY: info is a valid vfio_irq_info.
        match unsafe { ioctl(self.fd.as_raw_fd(), VFIO_DEVICE_GET_IRQ_INFO, &mut info) } {
            Ok(_) => info.count,
            Err(_) => 0,
        }
    }

    fn set_irqs(&self, index: u32, flags: u32, fds: &[RawFd]) -> Result<()> {
        // vfio_irq_set followed by one i32 per vector.
        let mut buf = vec![0u32; 5 + fds.len()];
        buf[0] = (20 + 4 * fds.len()) as u32;
        buf[1] = flags;
        buf[2] = index;
        buf[3] = 0;
        buf[4] = if flags & VFIO_IRQ_SET_DATA_NONE != 0 && fds.is_empty() {
            0
        } else {
            fds.len().max(1) as u32
        };
        for (i, fd) in fds.iter().enumerate() {
            buf[5 + i] = *fd as u32;
        }
        // SAFETY: buf holds a vfio_irq_set header and its data, as argsz says.
        unsafe { ioctl(self.fd.as_raw_fd(), VFIO_DEVICE_SET_IRQS, buf.as_ptr()) }
            .map_err(ioctl_err("DEVICE_SET_IRQS", self.addr))?;
        Ok(())
    }

    /// Routes interrupts to eventfds: MSI-X with `vectors` vectors when the device has
    /// MSI-X, else the legacy INTx line (one eventfd). Returns the eventfds and whether
    /// they are MSI-X.
    pub fn enable_interrupts(&self, vectors: u32) -> Result<(Vec<OwnedFd>, bool)> {
        let msix = self.irq_count(VFIO_PCI_MSIX_IRQ_INDEX) >= vectors;
        let (index, n) = if msix {
            (VFIO_PCI_MSIX_IRQ_INDEX, vectors)
        } else {
            (VFIO_PCI_INTX_IRQ_INDEX, 1)
        };
        let mut fds = Vec::new();
        for _ in 0..n {
            // SAFETY: plain syscall; the fd is owned right away.
            let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
            if fd < 0 {
                return Err(ioctl_err("eventfd", self.addr)(io::Error::last_os_error()));
            }
            // SAFETY: a new fd nobody else owns.
            fds.push(unsafe { OwnedFd::from_raw_fd(fd) });
        }
        let raw: Vec<RawFd> = fds.iter().map(|f| f.as_raw_fd()).collect();
        self.set_irqs(
            index,
            VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER,
            &raw,
        )?;
        if !msix {
            let cmd = self.config_u16(PCI_COMMAND)? & !PCI_COMMAND_INTX_DISABLE;
            self.config_write(PCI_COMMAND, &cmd.to_le_bytes())?;
            self.unmask_intx()?;
        }
        Ok((fds, msix))
    }

    /// Re-arms the INTx line after an interrupt was handled.
    pub fn unmask_intx(&self) -> Result<()> {
        self.set_irqs(
            VFIO_PCI_INTX_IRQ_INDEX,
            VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_UNMASK,
            &[],
        )
    }

    /// Stops routing interrupts of `index`.
    pub fn disable_interrupts(&self, msix: bool) {
        let index = if msix {
            VFIO_PCI_MSIX_IRQ_INDEX
        } else {
            VFIO_PCI_INTX_IRQ_INDEX
        };
        let mut buf = [0u32; 5];
        buf[0] = 20;
        buf[1] = VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_TRIGGER;
        buf[2] = index;
        // SAFETY: buf is a vfio_irq_set with count 0 (disable), as argsz says.
        if let Err(e) = unsafe { ioctl(self.fd.as_raw_fd(), VFIO_DEVICE_SET_IRQS, buf.as_ptr()) } {
            log::debug!("{}: disabling interrupts: {e}", self.addr);
        }
    }

    /// Function-level reset, when the device supports it.
    pub fn reset(&self) {
        // SAFETY: no argument.
        if let Err(e) = unsafe { ioctl(self.fd.as_raw_fd(), VFIO_DEVICE_RESET, 0) } {
            log::debug!("{}: VFIO reset: {e}", self.addr);
        }
    }
}

/// In the primary: answers secondaries that ask for a device fd.
fn register_ipc() {
    let Ok(eal) = crate::eal() else { return };
    if eal.role() != Role::Primary {
        return;
    }
    eal.ipc().register(IPC_DEVICE_FD, |_pid, msg| {
        let addr: Result<PciAddr, String> = msg.text().parse();
        let c = container().lock().unwrap_or_else(|p| p.into_inner());
        let dev = addr.ok().and_then(|a| c.as_ref()?.devices.get(&a).cloned());
        match dev.map(|d| d.fd.try_clone()) {
            Some(Ok(fd)) => Message::new(IPC_DEVICE_FD, "ok").with_fds(vec![fd]),
            Some(Err(e)) => Message::new(IPC_DEVICE_FD, format!("cannot duplicate the fd: {e}")),
            None => Message::new(
                IPC_DEVICE_FD,
                format!("the primary has not opened device {}", msg.text()),
            ),
        }
    });
}

/// A BAR mapped into this process. Register access is volatile and little-endian (x86).
pub struct Bar {
    base: *mut u8,
    len: usize,
    /// A register file in shared memory that a device model serves (tests), not MMIO.
    emulated: bool,
}

// SAFETY: MMIO registers may be accessed from any thread; accesses are volatile.
unsafe impl Send for Bar {}
// SAFETY: as above; synchronisation is the device protocol's business.
unsafe impl Sync for Bar {}

macro_rules! bar_access {
    ($read:ident, $write:ident, $t:ty) => {
        /// Reads the register at byte offset `off` (volatile).
        #[inline]
        pub fn $read(&self, off: usize) -> $t {
            assert!(
                off + std::mem::size_of::<$t>() <= self.len,
                "BAR access out of range"
            );
            // SAFETY: in range of the mapping (checked), naturally aligned by the callers'
            // register layouts.
            unsafe { std::ptr::read_volatile(self.base.add(off) as *const $t) }
        }
        /// Writes the register at byte offset `off` (volatile).
        #[inline]
        pub fn $write(&self, off: usize, v: $t) {
            assert!(
                off + std::mem::size_of::<$t>() <= self.len,
                "BAR access out of range"
            );
            // SAFETY: as in the read.
            unsafe { std::ptr::write_volatile(self.base.add(off) as *mut $t, v) }
        }
    };
}

impl Bar {
    bar_access!(read8, write8, u8);
    bar_access!(read16, write16, u16);
    bar_access!(read32, write32, u32);
    bar_access!(read64, write64, u64);

    /// The mapping's length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }
    /// Whether the mapping is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    /// Reads a clear-on-read register (statistics, interrupt causes). The device clears it
    /// on the read; an emulated register file has no read side effects, so the clearing is
    /// done here, atomically against the model's updates.
    pub fn read32_clear(&self, off: usize) -> u32 {
        if !self.emulated {
            return self.read32(off);
        }
        assert!(
            off + 4 <= self.len && off.is_multiple_of(4),
            "BAR access out of range"
        );
        // SAFETY: in range and aligned (checked); the model updates the word atomically too.
        let word = unsafe { &*(self.base.add(off) as *const std::sync::atomic::AtomicU32) };
        word.swap(0, std::sync::atomic::Ordering::AcqRel)
    }

    /// Maps `len` bytes of the register file a device model serves at `path` (tests: the
    /// ixgbe PMD's `net_ixgbe_model` ports). Every process of the group maps the same file.
    pub fn map_emulated(path: &std::path::Path, len: usize) -> io::Result<Bar> {
        let f = OpenOptions::new().read(true).write(true).open(path)?;
        if (f.metadata()?.len() as usize) < len {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "{} is smaller than a {len}-byte register file",
                    path.display()
                ),
            ));
        }
        // SAFETY: a fresh shared mapping of the file, at an address the kernel picks.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                f.as_raw_fd(),
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Bar {
            base: p as *mut u8,
            len,
            emulated: true,
        })
    }

    /// Address of the register at `off`, for hot paths that keep a pointer.
    pub fn ptr(&self, off: usize) -> *mut u8 {
        assert!(off < self.len, "BAR offset out of range");
        // SAFETY: in range of the mapping.
        unsafe { self.base.add(off) }
    }
}

impl Drop for Bar {
    fn drop(&mut self) {
        // SAFETY: our own mapping, unmapped once.
        unsafe { libc::munmap(self.base as *mut libc::c_void, self.len) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holder_of_an_open_file_is_found() {
        // group_holder scans /proc for /dev/vfio/N; a group number nobody holds gives the
        // generic answer rather than an error.
        assert_eq!(group_holder(987_654), "another process");
    }
}
