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

mod bar;
mod container;
mod device;

pub use bar::Bar;
pub use container::group_holder;
use container::{add_group, container, new_container, Container};
pub use device::{Region, VfioDevice};

// VFIO ioctl numbers: _IO(';', 100 + n), from linux/vfio.h.
pub(super) const VFIO_GET_API_VERSION: u64 = 0x3b64;
pub(super) const VFIO_CHECK_EXTENSION: u64 = 0x3b65;
pub(super) const VFIO_SET_IOMMU: u64 = 0x3b66;
pub(super) const VFIO_GROUP_GET_STATUS: u64 = 0x3b67;
pub(super) const VFIO_GROUP_SET_CONTAINER: u64 = 0x3b68;
pub(super) const VFIO_GROUP_GET_DEVICE_FD: u64 = 0x3b6a;
pub(super) const VFIO_DEVICE_GET_INFO: u64 = 0x3b6b;
pub(super) const VFIO_DEVICE_GET_REGION_INFO: u64 = 0x3b6c;
pub(super) const VFIO_DEVICE_GET_IRQ_INFO: u64 = 0x3b6d;
pub(super) const VFIO_DEVICE_SET_IRQS: u64 = 0x3b6e;
pub(super) const VFIO_DEVICE_RESET: u64 = 0x3b6f;
pub(super) const VFIO_IOMMU_MAP_DMA: u64 = 0x3b71;

/// PCI command register and its bits.
pub(super) const PCI_COMMAND: u64 = 0x04;
pub(super) const PCI_COMMAND_MEMORY: u16 = 0x2;
pub(super) const PCI_COMMAND_MASTER: u16 = 0x4;
pub(super) const PCI_COMMAND_INTX_DISABLE: u16 = 0x400;

/// The IPC action a secondary uses to get a device fd from the primary.
pub(super) const IPC_DEVICE_FD: &str = "vfio_device_fd";

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

pub(super) fn ioctl_err(
    what: &'static str,
    target: impl ToString,
) -> impl FnOnce(io::Error) -> VfioError {
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
pub(super) unsafe fn ioctl<T>(fd: RawFd, req: u64, arg: T) -> io::Result<i32> {
    // SAFETY: forwarded to the caller.
    let r = unsafe { libc::ioctl(fd, req as libc::c_ulong, arg) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
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
