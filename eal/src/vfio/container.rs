//! This process's VFIO container: IOMMU groups added to it, the IOMMU type set, the
//! group's memory mapped for DMA.

use super::*;

/// The character device of IOMMU group `group` (vfio names no-IOMMU groups apart).
pub(super) fn group_path(group: u32, noiommu: bool) -> String {
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
pub(super) struct Container {
    pub(super) fd: OwnedFd,
    pub(super) groups: HashMap<u32, OwnedFd>,
    /// Opened devices, shared by the ports that use them and by the IPC handler.
    pub(super) devices: HashMap<PciAddr, Arc<VfioDevice>>,
}

pub(super) static CONTAINER: OnceLock<Mutex<Option<Container>>> = OnceLock::new();

pub(super) fn container() -> &'static Mutex<Option<Container>> {
    CONTAINER.get_or_init(|| Mutex::new(None))
}

pub(super) fn open_dev(path: &str, hint: &'static str) -> Result<OwnedFd> {
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

pub(super) fn new_container() -> Result<Container> {
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
pub(super) fn map_group_memory(container: RawFd, addr: PciAddr) -> Result<()> {
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
pub(super) fn add_group(c: &mut Container, dev: &PciDevice, group: u32) -> Result<RawFd> {
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
pub(super) fn set_iommu(container: RawFd, addr: PciAddr, noiommu: bool) -> Result<()> {
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
