//! Probing by PCI (primary): the devices on the bus that a registered driver takes.

use super::registry::{lock, probe_with, Registry};
use super::{Driver, Error, Result};
use eal::options::VdevSpec;

/// Probes the PCI devices some registered driver takes (primary): those allowed by
/// `-a`/`-b` and bound to vfio-pci. A device named with `-a` must work; others that fail
/// (held by another group, say) are reported and skipped, as DPDK does.
pub(super) fn probe_pci(reg: &'static Registry) -> Result<()> {
    if !lock(&reg.drivers).iter().any(|d| !d.pci_ids().is_empty()) {
        return Ok(());
    }
    let opts = eal::eal()?.options();
    let sys = eal::pci::Sysfs::default();
    let devices = match sys.devices() {
        Ok(d) => d,
        Err(e) if opts.allow.is_empty() => {
            log::debug!("no PCI bus to scan: {e}");
            return Ok(());
        }
        Err(e) => return Err(Error::Eal(e.into())),
    };
    for a in &opts.allow {
        if !devices.iter().any(|d| d.addr == a.addr) {
            return Err(Error::Eal(eal::pci::PciError::NoDevice(a.addr).into()));
        }
    }
    for dev in devices {
        if !eal::pci::allowed(opts, dev.addr) {
            continue;
        }
        let Some(drv) = pci_driver_for(reg, &dev) else {
            continue;
        };
        let named = opts.allow.iter().find(|a| a.addr == dev.addr);
        if named.is_none() && dev.driver.as_deref() != Some("vfio-pci") {
            log::info!(
                "{} ({}): left to its kernel driver {}",
                dev.addr,
                dev.description(),
                dev.driver.as_deref().unwrap_or("(none)")
            );
            continue;
        }
        let spec = VdevSpec {
            name: dev.addr.to_string(),
            args: named.map(|a| a.devargs.clone()).unwrap_or_default(),
        };
        match probe_with(reg, drv, &spec) {
            Ok(_) => {}
            Err(e) if named.is_some() => return Err(e),
            Err(e) => log::warn!("{}: skipped: {e}", dev.addr),
        }
    }
    Ok(())
}

/// The registered driver that takes PCI device `dev`, by vendor and device id.
pub(crate) fn pci_driver_for(
    reg: &Registry,
    dev: &eal::pci::PciDevice,
) -> Option<&'static dyn Driver> {
    lock(&reg.drivers)
        .iter()
        .find(|d| d.pci_ids().contains(&(dev.vendor_id, dev.device_id)))
        .copied()
}
