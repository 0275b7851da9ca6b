//! An opened VFIO device: its regions, config space, BARs, interrupts and reset; a
//! secondary gets the primary's device fd over IPC.

use super::*;

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
pub(super) fn register_ipc() {
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
