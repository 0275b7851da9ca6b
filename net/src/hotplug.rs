//! Port hotplug, as DPDK's `rte_dev_probe`/`rte_dev_remove`: a device attached or detached
//! while the group runs. Only the primary creates and closes ports; a secondary asks it
//! over IPC. Every process learns of the change from the primary's broadcast, attaches to
//! a new port or forgets a removed one, and runs the callbacks given to [`on_port_event`].

use crate::ethdev::{self, lock, registry, Error, Result};
use crate::Port;
use eal::ipc::Message;
use eal::options::PciAddr;
use eal::Role;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A secondary's request to the primary: `attach DEVARGS` or `detach ID`.
const REQUEST: &str = "ethdev_hotplug";
/// The primary's broadcast: `added ID` or `removed ID`.
const EVENT: &str = "ethdev_port_event";
/// Probing a PCI device maps its memory for DMA and resets it: allow time.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// What happened to a port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PortEvent {
    /// The port with this id appeared.
    Added(u16),
    /// The port with this id went away.
    Removed(u16),
}

type Callback = Arc<dyn Fn(PortEvent) + Send + Sync>;
static CALLBACKS: Mutex<Vec<Callback>> = Mutex::new(Vec::new());

/// Calls `f` in this process whenever a port is attached or detached in the group.
pub fn on_port_event(f: impl Fn(PortEvent) + Send + Sync + 'static) {
    lock(&CALLBACKS).push(Arc::new(f));
}

fn notify(ev: PortEvent) {
    let callbacks: Vec<Callback> = lock(&CALLBACKS).clone();
    for f in callbacks {
        f(ev);
    }
}

/// Registers the IPC handlers: the primary serves requests, secondaries follow events.
pub(crate) fn init(eal: &eal::Eal, role: Role) {
    match role {
        Role::Primary => eal.ipc().register(REQUEST, |_pid, msg| {
            let text = msg.text();
            let reply = match text.split_once(' ') {
                Some(("attach", devargs)) => attach(devargs).map(|p| p.id()),
                Some(("detach", id)) => match id.parse::<u16>() {
                    Ok(id) => detach(id).map(|_| id),
                    Err(_) => Err(Error::NoSuchPort(id.into(), ethdev::ports().len())),
                },
                _ => Err(Error::Hotplug(format!("bad request '{text}'"))),
            };
            Message::new(
                REQUEST,
                match reply {
                    Ok(id) => format!("ok {id}"),
                    Err(e) => format!("error {e}"),
                },
            )
        }),
        Role::Secondary => eal.ipc().on_broadcast(EVENT, |msg| {
            let text = msg.text();
            let event = match text.split_once(' ') {
                Some(("added", id)) => id.parse().ok().map(PortEvent::Added),
                Some(("removed", id)) => id.parse().ok().map(PortEvent::Removed),
                _ => None,
            };
            match event {
                Some(ev) => follow(ev),
                None => log::warn!("ignored a port event that this binary does not know: '{text}'"),
            }
        }),
    }
}

/// A secondary's side of an event: attach to the new port (once) or forget the old one,
/// then run the callbacks.
fn follow(ev: PortEvent) {
    if take_in(ev) {
        notify(ev);
    }
}

/// Applies `ev` to this process's ports; false if it was applied already. The request
/// that caused an event and the event's broadcast both come here; the lock makes one of
/// them do it.
fn take_in(ev: PortEvent) -> bool {
    static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
    let _one = lock(&ONE_AT_A_TIME);
    let Ok(reg) = registry() else { return false };
    match ev {
        PortEvent::Added(id) => {
            if Port::by_id(id).is_ok() {
                return false;
            }
            let Some(rec) = ethdev::record(id) else {
                return false;
            };
            match ethdev::attach(id, rec) {
                Ok(_) => true,
                Err(e) => {
                    log::warn!("cannot attach to new port {id} ('{}'): {e}", rec.name());
                    false
                }
            }
        }
        PortEvent::Removed(id) => lock(&reg.ports)
            .get_mut(id as usize)
            .and_then(Option::take)
            .is_some(),
    }
}

/// The primary's side: tells every process, then this one's callbacks.
fn announce(ev: PortEvent) {
    let text = match ev {
        PortEvent::Added(id) => format!("added {id}"),
        PortEvent::Removed(id) => format!("removed {id}"),
    };
    if let Ok(eal) = eal::eal() {
        if let Err(e) = eal.ipc().broadcast(&Message::new(EVENT, text)) {
            log::warn!("cannot tell the secondaries of {ev:?}: {e}");
        }
    }
    notify(ev);
}

/// Asks the primary (from a secondary) to `attach DEVARGS` or `detach ID`; the port id.
fn request(what: String) -> Result<u16> {
    let eal = eal::eal()?;
    let reply = eal
        .ipc()
        .request(None, Message::new(REQUEST, what), REQUEST_TIMEOUT)?
        .text();
    match reply.split_once(' ') {
        Some(("ok", id)) => id
            .parse()
            .map_err(|_| Error::Hotplug(format!("bad reply '{reply}'"))),
        Some(("error", e)) => Err(Error::Hotplug(e.into())),
        _ => Err(Error::Hotplug(format!("bad reply '{reply}'"))),
    }
}

/// Attaches the device `devargs` names, as `--vdev` (`net_ring2`, `net_tap1,iface=x`) or
/// `-a` (a PCI address bound to vfio-pci) would at start-up; every process of the group
/// sees the new port. From a secondary, the primary does it.
pub fn attach(devargs: &str) -> Result<Port> {
    let reg = registry()?;
    if reg.role == Role::Secondary {
        let id = request(format!("attach {devargs}"))?;
        follow(PortEvent::Added(id));
        return Port::by_id(id);
    }
    let spec = eal::options::parse_devargs(devargs).map_err(|why| {
        Error::Eal(eal::Error::BadDevargs {
            devargs: devargs.into(),
            why,
        })
    })?;
    let port = match spec.name.parse::<PciAddr>() {
        Ok(addr) => {
            let sys = eal::pci::Sysfs::default();
            let dev = sys
                .devices()
                .map_err(|e| Error::Eal(e.into()))?
                .into_iter()
                .find(|d| d.addr == addr)
                .ok_or_else(|| Error::Eal(eal::pci::PciError::NoDevice(addr).into()))?;
            let drv = ethdev::pci_driver_for(reg, &dev).ok_or_else(|| {
                Error::UnknownDriver(
                    format!("{addr} ({})", dev.description()),
                    "none of this binary's PCI drivers takes it".into(),
                )
            })?;
            ethdev::probe_with(reg, drv, &spec)?
        }
        Err(_) => ethdev::probe_vdev(&spec)?,
    };
    announce(PortEvent::Added(port.id()));
    Ok(port)
}

/// Detaches port `id`: stops and closes it, and every process forgets it. Refused while a
/// process polls one of its queues. From a secondary, the primary does it.
pub fn detach(id: u16) -> Result<()> {
    let reg = registry()?;
    if reg.role == Role::Secondary {
        request(format!("detach {id}"))?;
        follow(PortEvent::Removed(id));
        return Ok(());
    }
    let port = Port::by_id(id)?;
    port.check_unpolled("detach")?;
    port.close()?;
    announce(PortEvent::Removed(id));
    Ok(())
}
