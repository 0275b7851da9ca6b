//! This process's registry: its drivers, the shared port table and the ports it knows;
//! `init`, probing virtual devices (primary) and attaching to the primary's ports
//! (secondary).

use super::ownership::{release_queues_of, settle_dead};
use super::pci::probe_pci;
use super::port::PortInner;
use super::record::PortTable;
use super::DeviceRecord;
use super::{
    Driver, Error, Port, PortContext, PortRecord, PortState, Result, MAX_PORTS, NAME_LEN,
    PORTS_MEMZONE,
};
use crate::capture::CaptureSlot;
use crate::MacAddr;
use eal::options::VdevSpec;
use eal::shm::ShmName;
use eal::{MemzoneFlags, Role};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, OnceLock};

pub(crate) struct Registry {
    pub(super) table: &'static PortTable,
    pub(crate) role: Role,
    pub(crate) drivers: Mutex<Vec<&'static dyn Driver>>,
    pub(crate) ports: Mutex<Vec<Option<Port>>>,
}

static REGISTRY: OnceLock<Registry> = OnceLock::new();

static PENDING_DRIVERS: Mutex<Vec<&'static dyn Driver>> = Mutex::new(Vec::new());

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Adds a driver to this process's registry (before or after [`init`]).
pub fn register_driver(d: &'static dyn Driver) {
    match REGISTRY.get() {
        Some(r) => lock(&r.drivers).push(d),
        None => lock(&PENDING_DRIVERS).push(d),
    }
}

pub(crate) fn registry() -> Result<&'static Registry> {
    REGISTRY.get().ok_or(Error::NotInitialised)
}

/// Sets up the port layer after `eal::init`: the primary creates the port table and probes
/// every `--vdev`; a secondary attaches to the ports the primary made.
pub fn init() -> Result<Vec<Port>> {
    let eal = eal::eal()?;
    let role = eal.role();
    let len = std::mem::size_of::<PortTable>() as u64;
    let mz = match role {
        Role::Primary => eal.memzone_reserve(PORTS_MEMZONE, len, 64, MemzoneFlags::empty())?,
        Role::Secondary => {
            let mz = eal
                .memzone_lookup(PORTS_MEMZONE)
                .map_err(|_| Error::NoPortTable)?;
            // The group's version check cannot see this crate's layout: a binary built from
            // other sources of the same version would read the ports wrong.
            if mz.len() != len {
                return Err(Error::PortTableLayout {
                    theirs: mz.len(),
                    ours: len,
                });
            }
            mz
        }
    };
    // SAFETY: the memzone is at least size_of::<PortTable>() bytes, zeroed at reservation (a
    // valid empty table: all atomics 0), and lives as long as the group.
    let table: &'static PortTable = unsafe { &*mz.as_ptr::<PortTable>() };
    let reg = Registry {
        table,
        role,
        drivers: Mutex::new(std::mem::take(&mut *lock(&PENDING_DRIVERS))),
        ports: Mutex::new(vec![None; MAX_PORTS]),
    };
    if REGISTRY.set(reg).is_err() {
        return Err(Error::Eal(eal::Error::AlreadyInitialised));
    }
    let reg = registry()?;
    crate::hotplug::init(eal, role);
    super::telemetry::register();
    eal::before_emptying_dead_caches(settle_dead);
    match role {
        Role::Primary => {
            // A dead secondary's queues may be taken again.
            eal.ipc().on_peer_exit(release_queues_of);
            for v in &eal.options().vdevs {
                probe_vdev(v)?;
            }
            probe_pci(reg)?;
        }
        Role::Secondary => {
            for id in 0..MAX_PORTS as u16 {
                let rec = &table.ports[id as usize];
                if rec.state() != PortState::Unused {
                    if let Err(e) = attach(id, rec) {
                        log::warn!("cannot attach to port {id} ('{}'): {e}", rec.name());
                    }
                }
            }
        }
    }
    Ok(lock(&reg.ports).iter().flatten().cloned().collect())
}

/// The record of port `id`, if the slot is in use.
pub(crate) fn record(id: u16) -> Option<&'static PortRecord> {
    let rec = registry().ok()?.table.ports.get(id as usize)?;
    (rec.state() != PortState::Unused).then_some(rec)
}

/// Every capture hook of every port of the group.
pub(crate) fn capture_slots() -> impl Iterator<Item = &'static CaptureSlot> {
    registry()
        .ok()
        .into_iter()
        .flat_map(|reg| reg.table.ports.iter())
        .flat_map(|rec| rec.rx_capture.iter().chain(rec.tx_capture.iter()))
}

fn find_driver(reg: &Registry, name: &str) -> Option<&'static dyn Driver> {
    // The longest driver name that starts the device name: net_ring0 -> net_ring.
    lock(&reg.drivers)
        .iter()
        .filter(|d| name.starts_with(d.name()))
        .max_by_key(|d| d.name().len())
        .copied()
}

/// Creates a port from a virtual device spec (primary), as `--vdev` does.
pub fn probe_vdev(spec: &VdevSpec) -> Result<Port> {
    let reg = registry()?;
    if reg.role != Role::Primary {
        return Err(Error::PrimaryOnly(u16::MAX, "create ports"));
    }
    let drv = find_driver(reg, &spec.name).ok_or_else(|| {
        let known: Vec<&str> = lock(&reg.drivers).iter().map(|d| d.name()).collect();
        Error::UnknownDriver(spec.name.clone(), known.join(", "))
    })?;
    probe_with(reg, drv, spec)
}

pub(crate) fn probe_with(
    reg: &'static Registry,
    drv: &'static dyn Driver,
    spec: &VdevSpec,
) -> Result<Port> {
    let _g = reg.table.lock.lock();
    if reg
        .table
        .ports
        .iter()
        .any(|p| p.state() != PortState::Unused && p.name() == spec.name)
    {
        return Err(Error::PortExists(spec.name.clone()));
    }
    let id = reg
        .table
        .ports
        .iter()
        .position(|p| p.state() == PortState::Unused)
        .ok_or(Error::TooManyPorts)? as u16;
    let rec: &'static PortRecord = &reg.table.ports[id as usize];
    rec.reset();
    let n = spec.name.len().min(NAME_LEN - 1);
    // SAFETY: the slot is unused and the table lock is held: nobody reads its identity.
    unsafe {
        let name = &mut *rec.name.get();
        name[..n].copy_from_slice(&spec.name.as_bytes()[..n]);
        *rec.driver.get() = ShmName::new(drv.name())?;
    }
    rec.mtu.store(1500, Ordering::Relaxed);
    rec.set_mac(MacAddr::local(0x0100 + id as u32));
    let ctx = PortContext {
        port_id: id,
        name: &spec.name,
        args: &spec.args,
        record: DeviceRecord::new(rec),
    };
    let pd = drv.probe(&ctx)?;
    rec.set_state(PortState::Attached);
    let port = register_port(reg, id, rec, drv, pd);
    log::info!(
        "port {id}: '{}' ({}), MAC {}",
        spec.name,
        drv.name(),
        rec.mac()
    );
    Ok(port)
}

/// Port `id` over record `rec`, as `drv` drives it in this process (`pd`), in this
/// process's list of ports.
fn register_port(
    reg: &Registry,
    id: u16,
    rec: &'static PortRecord,
    drv: &'static dyn Driver,
    pd: Box<dyn super::PortDriver>,
) -> Port {
    let port = Port {
        inner: Arc::new(PortInner {
            id,
            rec,
            drv: pd,
            driver_name: drv.name(),
        }),
    };
    lock(&reg.ports)[id as usize] = Some(port.clone());
    port
}

pub(crate) fn attach(id: u16, rec: &'static PortRecord) -> Result<Port> {
    let reg = registry()?;
    let dname = rec.driver_name();
    let drv = lock(&reg.drivers)
        .iter()
        .find(|d| d.name() == dname)
        .copied()
        .ok_or_else(|| {
            Error::UnknownDriver(rec.name(), format!("this binary lacks driver '{dname}'"))
        })?;
    let name = rec.name();
    let ctx = PortContext {
        port_id: id,
        name: &name,
        args: &[],
        record: DeviceRecord::new(rec),
    };
    let pd = drv.attach(&ctx)?;
    let port = register_port(reg, id, rec, drv, pd);
    log::debug!("attached to port {id} '{name}'");
    Ok(port)
}

/// The ports this process knows, by id order.
pub fn ports() -> Vec<Port> {
    registry()
        .map(|r| lock(&r.ports).iter().flatten().cloned().collect())
        .unwrap_or_default()
}
