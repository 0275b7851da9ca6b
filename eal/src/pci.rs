//! The PCI bus as sysfs shows it: devices, their ids, class, kernel driver, IOMMU group,
//! NUMA node and network interfaces; binding a device to another driver.
//!
//! Everything goes through a [`Sysfs`] rooted at `/` on a real machine and at a
//! temporary directory in the unit tests, so the logic is tested on any machine.

use crate::options::{EalOptions, PciAddr};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// PCI class code of network controllers (the high byte of the 24-bit class).
const CLASS_NETWORK: u32 = 0x02;
/// `IFF_UP` in `/sys/class/net/<if>/flags`.
const IFF_UP: u32 = 0x1;

/// What scanning or binding PCI devices can fail with.
#[derive(Debug, thiserror::Error)]
pub enum PciError {
    #[error(
        "no PCI device {0}: see the devices with `devbind --status` (or `ls /sys/bus/pci/devices`)"
    )]
    /// No such device in sysfs.
    NoDevice(PciAddr),
    /// A sysfs file could not be read or written.
    #[error("{what} {path}: {source}")]
    Sysfs {
        /// What was being done.
        what: &'static str,
        /// The sysfs file.
        path: PathBuf,
        /// Why it failed.
        #[source]
        source: io::Error,
    },
    /// The device carries kernel interfaces that are up or routed.
    #[error("device {addr} has interface(s) {ifaces} that {why}: bring them down (`ip link set dev IF down`) first, or force it")]
    InterfaceActive {
        /// The device.
        addr: PciAddr,
        /// Its interfaces.
        ifaces: String,
        /// What they are doing (up, routed).
        why: &'static str,
    },
    /// The device has no IOMMU group.
    #[error("device {0} has no IOMMU group, so vfio-pci cannot take it: turn the IOMMU on (boot with intel_iommu=on or amd_iommu=on, with VT-d or AMD-Vi enabled in the firmware; in QEMU, -device intel-iommu). Without an IOMMU, vfio's no-IOMMU mode can take it: load vfio with enable_unsafe_noiommu_mode=1 (a kernel built with CONFIG_VFIO_NOIOMMU; the device can then reach all memory)")]
    NoIommuGroup(PciAddr),
    /// The device did not bind to the driver asked for.
    #[error("device {addr} did not bind to {driver} (it is {now}): is the {driver} module loaded (`modprobe {driver}`)?")]
    BindFailed {
        /// The device.
        addr: PciAddr,
        /// The driver asked for.
        driver: String,
        /// What holds it now.
        now: String,
    },
}

/// PCI results.
pub type Result<T, E = PciError> = std::result::Result<T, E>;

/// One PCI function.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PciDevice {
    /// Its address.
    pub addr: PciAddr,
    /// PCI vendor id.
    pub vendor_id: u16,
    /// PCI device id.
    pub device_id: u16,
    /// Subsystem vendor id.
    pub subsystem_vendor_id: u16,
    /// Subsystem id.
    pub subsystem_device_id: u16,
    /// Class, subclass and programming interface (24 bits).
    pub class: u32,
    /// The kernel driver bound to it, if any.
    pub driver: Option<String>,
    /// Its IOMMU group (or vfio's no-IOMMU group), if any.
    pub iommu_group: Option<u32>,
    /// NUMA node, if the platform says.
    pub numa_node: Option<u32>,
    /// Kernel network interfaces on it (when a kernel network driver holds it).
    pub interfaces: Vec<String>,
}

impl PciDevice {
    /// Whether its class is a network controller.
    pub fn is_network(&self) -> bool {
        self.class >> 16 == CLASS_NETWORK
    }

    /// `Vendor Device` names from the PCI id database, or the hex ids.
    pub fn description(&self) -> String {
        match pci_ids::Device::from_vid_pid(self.vendor_id, self.device_id) {
            Some(d) => format!("{} {}", d.vendor().name(), d.name()),
            None => match pci_ids::Vendors::iter().find(|v| v.id() == self.vendor_id) {
                Some(v) => format!("{} device {:04x}", v.name(), self.device_id),
                None => format!("device {:04x}:{:04x}", self.vendor_id, self.device_id),
            },
        }
    }
}

/// Whether `-a`/`-b` let this process use `addr`: with an allow list only those listed,
/// otherwise all but the blocked.
pub fn allowed(opts: &EalOptions, addr: PciAddr) -> bool {
    if !opts.allow.is_empty() {
        return opts.allow.iter().any(|a| a.addr == addr);
    }
    !opts.block.contains(&addr)
}

/// The kernel's view of PCI, under a root directory (`/` on a real machine).
#[derive(Clone, Debug)]
pub struct Sysfs {
    root: PathBuf,
}

impl Default for Sysfs {
    fn default() -> Self {
        Sysfs::at("/")
    }
}

fn sysfs_err<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> PciError + 'a {
    move |source| PciError::Sysfs {
        what,
        path: path.to_path_buf(),
        source,
    }
}

fn read_hex(path: &Path) -> Option<u32> {
    let s = fs::read_to_string(path).ok()?;
    u32::from_str_radix(s.trim().trim_start_matches("0x"), 16).ok()
}

fn link_name(path: &Path) -> Option<String> {
    fs::read_link(path)
        .ok()?
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
}

impl Sysfs {
    /// The PCI bus under another sysfs root (tests use a fake tree).
    pub fn at(root: impl Into<PathBuf>) -> Self {
        Sysfs { root: root.into() }
    }

    fn devices_dir(&self) -> PathBuf {
        self.root.join("sys/bus/pci/devices")
    }

    fn device_dir(&self, addr: PciAddr) -> PathBuf {
        self.devices_dir().join(addr.to_string())
    }

    /// Every PCI function, in address order.
    pub fn devices(&self) -> Result<Vec<PciDevice>> {
        let dir = self.devices_dir();
        let mut out = Vec::new();
        for e in fs::read_dir(&dir).map_err(sysfs_err("cannot list PCI devices in", &dir))? {
            let e = e.map_err(sysfs_err("cannot list PCI devices in", &dir))?;
            if let Ok(addr) = e.file_name().to_string_lossy().parse::<PciAddr>() {
                if let Ok(d) = self.device(addr) {
                    out.push(d);
                }
            }
        }
        out.sort_by_key(|d| d.addr);
        Ok(out)
    }

    /// One PCI function.
    pub fn device(&self, addr: PciAddr) -> Result<PciDevice> {
        let dir = self.device_dir(addr);
        let id = |f: &str| read_hex(&dir.join(f)).ok_or(PciError::NoDevice(addr));
        let mut interfaces: Vec<String> = fs::read_dir(dir.join("net"))
            .map(|r| {
                r.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        interfaces.sort();
        Ok(PciDevice {
            addr,
            vendor_id: id("vendor")? as u16,
            device_id: id("device")? as u16,
            subsystem_vendor_id: id("subsystem_vendor").unwrap_or(0) as u16,
            subsystem_device_id: id("subsystem_device").unwrap_or(0) as u16,
            class: id("class")?,
            driver: link_name(&dir.join("driver")),
            iommu_group: link_name(&dir.join("iommu_group")).and_then(|g| g.parse().ok()),
            numa_node: fs::read_to_string(dir.join("numa_node"))
                .ok()
                .and_then(|s| s.trim().parse::<i64>().ok())
                .and_then(|n| u32::try_from(n).ok()),
            interfaces,
        })
    }

    /// The devices of an IOMMU group, with their drivers.
    pub fn iommu_group_devices(&self, group: u32) -> Vec<PciDevice> {
        let dir = self
            .root
            .join(format!("sys/kernel/iommu_groups/{group}/devices"));
        let mut out: Vec<PciDevice> = fs::read_dir(dir)
            .map(|r| {
                r.flatten()
                    .filter_map(|e| e.file_name().to_string_lossy().parse().ok())
                    .filter_map(|a| self.device(a).ok())
                    .collect()
            })
            .unwrap_or_default();
        out.sort_by_key(|d| d.addr);
        out
    }

    /// Whether the kernel has an IOMMU group of a real IOMMU (vfio's no-IOMMU groups
    /// do not count).
    pub fn has_iommu(&self) -> bool {
        fs::read_dir(self.root.join("sys/kernel/iommu_groups"))
            .map(|r| {
                r.flatten().any(|e| {
                    e.file_name()
                        .to_str()
                        .and_then(|g| g.parse().ok())
                        .is_some_and(|g| !self.is_noiommu_group(g))
                })
            })
            .unwrap_or(false)
    }

    /// Whether vfio runs in its no-IOMMU mode (`enable_unsafe_noiommu_mode`): vfio-pci
    /// then takes devices without an IOMMU group and makes a group of its own for each.
    pub fn noiommu_enabled(&self) -> bool {
        let p = self
            .root
            .join("sys/module/vfio/parameters/enable_unsafe_noiommu_mode");
        fs::read_to_string(p).is_ok_and(|v| v.trim() == "Y")
    }

    /// Whether IOMMU group `group` is one vfio made in no-IOMMU mode (no translation: the
    /// device sees physical addresses).
    pub fn is_noiommu_group(&self, group: u32) -> bool {
        let p = self
            .root
            .join(format!("sys/kernel/iommu_groups/{group}/name"));
        fs::read_to_string(p).is_ok_and(|n| n.trim() == "vfio-noiommu")
    }

    /// Which of the device's interfaces are up, and which carry routes.
    fn active_interfaces(&self, dev: &PciDevice) -> (Vec<String>, Vec<String>) {
        let up: Vec<String> = dev
            .interfaces
            .iter()
            .filter(|i| {
                read_hex(&self.root.join(format!("sys/class/net/{i}/flags")))
                    .is_some_and(|f| f & IFF_UP != 0)
            })
            .cloned()
            .collect();
        let routes = fs::read_to_string(self.root.join("proc/net/route")).unwrap_or_default();
        let routed = dev
            .interfaces
            .iter()
            .filter(|i| {
                routes
                    .lines()
                    .skip(1)
                    .any(|l| l.split_whitespace().next() == Some(i.as_str()))
            })
            .cloned()
            .collect();
        (up, routed)
    }

    /// Detaches the device from its driver. Refuses when one of its interfaces is up or
    /// routed (the machine may depend on it), unless `force`.
    pub fn unbind(&self, addr: PciAddr, force: bool) -> Result<()> {
        let dev = self.device(addr)?;
        let Some(driver) = &dev.driver else {
            return Ok(());
        };
        if !force {
            let (up, routed) = self.active_interfaces(&dev);
            if !routed.is_empty() {
                return Err(PciError::InterfaceActive {
                    addr,
                    ifaces: routed.join(", "),
                    why: "carry routes (this machine may be reached through them)",
                });
            }
            if !up.is_empty() {
                return Err(PciError::InterfaceActive {
                    addr,
                    ifaces: up.join(", "),
                    why: "are up",
                });
            }
        }
        let path = self
            .root
            .join(format!("sys/bus/pci/drivers/{driver}/unbind"));
        fs::write(&path, addr.to_string()).map_err(sysfs_err("cannot write", &path))
    }

    /// Binds the device to `driver` through `driver_override`, unbinding it first.
    pub fn bind(&self, addr: PciAddr, driver: &str, force: bool) -> Result<()> {
        let dev = self.device(addr)?;
        if dev.driver.as_deref() == Some(driver) {
            return Ok(());
        }
        if driver == "vfio-pci" && dev.iommu_group.is_none() && !self.noiommu_enabled() {
            return Err(PciError::NoIommuGroup(addr));
        }
        self.unbind(addr, force)?;
        let ovr = self.device_dir(addr).join("driver_override");
        fs::write(&ovr, driver).map_err(sysfs_err("cannot write", &ovr))?;
        let probe = self.root.join("sys/bus/pci/drivers_probe");
        // The kernel reports a failed probe as an error; the check below explains it.
        let _ = fs::write(&probe, addr.to_string());
        let now = self.device(addr)?.driver;
        if now.as_deref() != Some(driver) {
            return Err(PciError::BindFailed {
                addr,
                driver: driver.into(),
                now: now.map_or("unbound".into(), |d| format!("bound to {d}")),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    /// A fake sysfs with the devices QEMU gives the guest tests.
    struct FakeSys {
        dir: PathBuf,
    }

    impl FakeSys {
        fn new(tag: &str) -> Self {
            let dir = std::env::temp_dir().join(format!("rpmd-pci-{tag}-{}", std::process::id()));
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(dir.join("sys/bus/pci/devices")).unwrap();
            fs::create_dir_all(dir.join("proc/net")).unwrap();
            fs::write(
                dir.join("proc/net/route"),
                "Iface\tDestination\tGateway\neth1\t00000000\t0202000A\n",
            )
            .unwrap();
            FakeSys { dir }
        }
        fn add(&self, addr: &str, vendor: u16, device: u16, class: u32, driver: Option<&str>) {
            let d = self.dir.join("sys/devices/pci0000:00").join(addr);
            fs::create_dir_all(&d).unwrap();
            fs::write(d.join("vendor"), format!("0x{vendor:04x}\n")).unwrap();
            fs::write(d.join("device"), format!("0x{device:04x}\n")).unwrap();
            fs::write(d.join("class"), format!("0x{class:06x}\n")).unwrap();
            fs::write(d.join("numa_node"), "-1\n").unwrap();
            if let Some(drv) = driver {
                let dd = self.dir.join("sys/bus/pci/drivers").join(drv);
                fs::create_dir_all(&dd).unwrap();
                symlink(&dd, d.join("driver")).unwrap();
            }
            let g = self.dir.join("sys/kernel/iommu_groups/3");
            fs::create_dir_all(g.join("devices")).unwrap();
            symlink(&g, d.join("iommu_group")).unwrap();
            symlink(&d, self.dir.join("sys/bus/pci/devices").join(addr)).unwrap();
        }
        fn add_iface(&self, addr: &str, name: &str, flags: u32) {
            let d = self.dir.join("sys/devices/pci0000:00").join(addr);
            fs::create_dir_all(d.join("net").join(name)).unwrap();
            let c = self.dir.join("sys/class/net").join(name);
            fs::create_dir_all(&c).unwrap();
            fs::write(c.join("flags"), format!("0x{flags:x}\n")).unwrap();
        }
        fn sysfs(&self) -> Sysfs {
            Sysfs::at(&self.dir)
        }
    }

    impl Drop for FakeSys {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }

    #[test]
    fn scans_ids_class_driver_group_and_names() {
        let f = FakeSys::new("scan");
        f.add("0000:00:03.0", 0x1af4, 0x1041, 0x020000, Some("vfio-pci"));
        f.add("0000:00:02.0", 0x8086, 0x10c9, 0x020000, None);
        f.add("0000:00:1f.0", 0x8086, 0x2918, 0x060100, Some("lpc_ich"));
        let devs = f.sysfs().devices().unwrap();
        assert_eq!(devs.len(), 3);
        assert_eq!(devs[0].addr.to_string(), "0000:00:02.0");
        assert_eq!(devs[0].driver, None);
        let v = &devs[1];
        assert_eq!((v.vendor_id, v.device_id), (0x1af4, 0x1041));
        assert_eq!(v.driver.as_deref(), Some("vfio-pci"));
        assert_eq!(v.iommu_group, Some(3));
        assert_eq!(v.numa_node, None);
        assert!(v.is_network() && !devs[2].is_network());
        assert!(v.description().contains("Virtio"), "{}", v.description());
        assert!(
            devs[0].description().contains("82576"),
            "{}",
            devs[0].description()
        );
    }

    #[test]
    fn a_no_iommu_group_is_not_an_iommu() {
        let f = FakeSys::new("noiommu");
        f.add("0000:00:02.0", 0x1af4, 0x1041, 0x020000, Some("vfio-pci"));
        let sys = f.sysfs();
        assert!(sys.has_iommu() && !sys.is_noiommu_group(3) && !sys.noiommu_enabled());
        fs::write(
            f.dir.join("sys/kernel/iommu_groups/3/name"),
            "vfio-noiommu\n",
        )
        .unwrap();
        let param = f.dir.join("sys/module/vfio/parameters");
        fs::create_dir_all(&param).unwrap();
        fs::write(param.join("enable_unsafe_noiommu_mode"), "Y\n").unwrap();
        assert!(!sys.has_iommu() && sys.is_noiommu_group(3) && sys.noiommu_enabled());
    }

    #[test]
    fn allow_and_block_lists() {
        let a: PciAddr = "00:02.0".parse().unwrap();
        let b: PciAddr = "00:03.0".parse().unwrap();
        let opts = |args: &[&str]| {
            let v: Vec<String> = std::iter::once("app")
                .chain(args.iter().copied())
                .map(String::from)
                .collect();
            match crate::options::parse(&v).unwrap() {
                crate::options::Parsed::Run { options, .. } => *options,
                crate::options::Parsed::Help(_) => unreachable!("no -h given"),
            }
        };
        let o = opts(&[]);
        assert!(allowed(&o, a) && allowed(&o, b));
        let o = opts(&["-a", "0000:00:02.0"]);
        assert!(allowed(&o, a) && !allowed(&o, b));
        let o = opts(&["-b", "00:02.0"]);
        assert!(!allowed(&o, a) && allowed(&o, b));
    }

    #[test]
    fn unbind_refuses_up_or_routed_interfaces_unless_forced() {
        let f = FakeSys::new("unbind");
        f.add("0000:00:02.0", 0x1af4, 0x1041, 0x020000, Some("virtio-pci"));
        f.add("0000:00:03.0", 0x1af4, 0x1041, 0x020000, Some("virtio-pci"));
        f.add_iface("0000:00:02.0", "eth0", 0x1003);
        f.add_iface("0000:00:03.0", "eth1", 0x1002);
        let s = f.sysfs();
        let a: PciAddr = "00:02.0".parse().unwrap();
        let b: PciAddr = "00:03.0".parse().unwrap();
        let e = s.unbind(a, false).unwrap_err().to_string();
        assert!(e.contains("eth0") && e.contains("are up"), "{e}");
        let e = s.unbind(b, false).unwrap_err().to_string();
        assert!(e.contains("eth1") && e.contains("routes"), "{e}");
        s.unbind(a, true).unwrap();
        let written = fs::read_to_string(f.dir.join("sys/bus/pci/drivers/virtio-pci/unbind"));
        assert_eq!(written.unwrap(), "0000:00:02.0");
    }

    #[test]
    fn vfio_bind_without_an_iommu_group_says_to_turn_the_iommu_on() {
        let f = FakeSys::new("nogroup");
        f.add("0000:00:02.0", 0x1af4, 0x1041, 0x020000, None);
        fs::remove_file(
            f.dir
                .join("sys/devices/pci0000:00/0000:00:02.0/iommu_group"),
        )
        .unwrap();
        let e = f
            .sysfs()
            .bind("00:02.0".parse().unwrap(), "vfio-pci", false)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("no IOMMU group") && e.contains("intel_iommu=on"),
            "{e}"
        );
        // Nothing was written: the device keeps no override.
        assert!(!f
            .dir
            .join("sys/devices/pci0000:00/0000:00:02.0/driver_override")
            .exists());
    }

    #[test]
    fn missing_device_names_the_fix() {
        let f = FakeSys::new("missing");
        let e = f
            .sysfs()
            .device("00:09.0".parse().unwrap())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("0000:00:09.0") && e.contains("devbind --status"),
            "{e}"
        );
    }
}
