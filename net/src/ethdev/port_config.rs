//! A port's settings besides its queues: the link, the receive modes (promiscuous,
//! all-multicast), its addresses and the MTU.

use super::record::{pack_mac, unpack_mac};
use super::registry::registry;
use super::{Error, Link, Port, PortDriver, PortState, Result, MAX_MAC_ADDRS, MAX_MC_ADDRS};
use crate::MacAddr;
use eal::Role;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

impl Port {
    /// The link as last recorded; the primary reads the device first.
    pub fn link(&self) -> Link {
        if registry().is_ok_and(|r| r.role == Role::Primary) && self.state() != PortState::Unused {
            self.inner.rec.set_link(self.inner.drv.link_update());
        }
        self.inner.rec.link()
    }

    /// Waits up to `timeout` for the link to come up.
    pub fn wait_link_up(&self, timeout: Duration) -> Result<Link> {
        let deadline = Instant::now() + timeout;
        loop {
            let l = self.link();
            if l.up {
                return Ok(l);
            }
            if Instant::now() > deadline {
                return Err(Error::LinkTimeout(self.id(), timeout));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Calls `f` (on a watcher thread of this process) whenever the link changes.
    pub fn on_link_change(&self, f: impl Fn(u16, Link) + Send + 'static) {
        let port = self.clone();
        let mut last = port.link();
        std::thread::spawn(move || loop {
            std::thread::sleep(Duration::from_millis(20));
            if port.state() == PortState::Unused {
                return;
            }
            let now = port.link();
            if now != last {
                f(port.id(), now);
                last = now;
            }
        });
    }

    /// Receives frames for any destination address.
    pub fn promiscuous_enable(&self) -> Result<()> {
        self.set_promiscuous(true)
    }

    /// Receives only frames for the port's addresses (and multicast, per all-multicast).
    pub fn promiscuous_disable(&self) -> Result<()> {
        self.set_promiscuous(false)
    }

    fn set_promiscuous(&self, on: bool) -> Result<()> {
        let flag = &self.inner.rec.promisc;
        self.set_rx_mode("change promiscuous mode", flag, on, |d| {
            d.set_promiscuous(on)
        })
    }

    /// Changes a receive mode in the device, then records it for every process.
    fn set_rx_mode(
        &self,
        what: &'static str,
        flag: &AtomicU32,
        on: bool,
        apply: impl FnOnce(&dyn PortDriver) -> Result<()>,
    ) -> Result<()> {
        self.primary_only(what)?;
        apply(self.inner.drv.as_ref())?;
        flag.store(on as u32, Ordering::Relaxed);
        Ok(())
    }

    /// Whether promiscuous mode is on.
    pub fn promiscuous(&self) -> bool {
        self.inner.rec.promiscuous()
    }

    /// Receives every multicast frame.
    pub fn allmulticast_enable(&self) -> Result<()> {
        self.set_allmulticast(true)
    }

    /// Receives only the multicast groups the port was given.
    pub fn allmulticast_disable(&self) -> Result<()> {
        self.set_allmulticast(false)
    }

    fn set_allmulticast(&self, on: bool) -> Result<()> {
        let flag = &self.inner.rec.allmulti;
        self.set_rx_mode("change all-multicast mode", flag, on, |d| {
            d.set_allmulticast(on)
        })
    }

    /// Whether all-multicast mode is on.
    pub fn allmulticast(&self) -> bool {
        self.inner.rec.allmulti.load(Ordering::Relaxed) != 0
    }

    /// Sets the port's MAC address, in the device and the record.
    pub fn set_mac(&self, mac: MacAddr) -> Result<()> {
        self.primary_only("change the MAC address")?;
        if mac.is_multicast() {
            return Err(Error::BadAddress {
                port: self.name(),
                why: format!("{mac} is a multicast address, not valid for a port"),
            });
        }
        self.inner.drv.set_mac(mac)?;
        self.inner.rec.set_mac(mac);
        Ok(())
    }

    /// Makes the port receive frames for `mac` too (DPDK's `rte_eth_dev_mac_addr_add`).
    pub fn mac_addr_add(&self, mac: MacAddr) -> Result<()> {
        self.primary_only("add a MAC address")?;
        let rec = self.inner.rec;
        if mac == rec.mac()
            || rec
                .mac_addrs
                .iter()
                .any(|a| a.load(Ordering::Relaxed) == pack_mac(mac))
        {
            return Ok(());
        }
        let free = rec.mac_addrs.iter().find(|a| a.load(Ordering::Relaxed) == 0).ok_or_else(|| {
            Error::BadAddress {
                port: self.name(),
                why: format!("all {MAX_MAC_ADDRS} extra MAC addresses are in use: remove one (mac_addr_remove) before adding {mac}"),
            }
        })?;
        let mut filters = rec.mac_filters();
        filters.push(mac);
        self.inner.drv.set_mac_filters(&filters)?;
        free.store(pack_mac(mac), Ordering::Relaxed);
        Ok(())
    }

    /// Stops receiving frames for an address `mac_addr_add` gave.
    pub fn mac_addr_remove(&self, mac: MacAddr) -> Result<()> {
        self.primary_only("remove a MAC address")?;
        let rec = self.inner.rec;
        let slot = rec
            .mac_addrs
            .iter()
            .find(|a| a.load(Ordering::Relaxed) == pack_mac(mac))
            .ok_or_else(|| Error::BadAddress {
                port: self.name(),
                why: format!("{mac} was not added to the port (its own address cannot be removed)"),
            })?;
        slot.store(0, Ordering::Relaxed);
        if let Err(e) = self.inner.drv.set_mac_filters(&rec.mac_filters()) {
            slot.store(pack_mac(mac), Ordering::Relaxed);
            return Err(e);
        }
        Ok(())
    }

    /// Replaces the multicast addresses the port receives without all-multicast mode
    /// (DPDK's `rte_eth_dev_set_mc_addr_list`); an empty list removes them all.
    pub fn set_mc_addr_list(&self, list: &[MacAddr]) -> Result<()> {
        self.primary_only("set the multicast address list")?;
        let bad = |why: String| {
            Err(Error::BadAddress {
                port: self.name(),
                why,
            })
        };
        if list.len() > MAX_MC_ADDRS {
            return bad(format!(
                "{} multicast addresses given, at most {MAX_MC_ADDRS}",
                list.len()
            ));
        }
        if let Some(m) = list.iter().find(|m| !m.is_multicast()) {
            return bad(format!(
                "{m} is not a multicast address (add unicast ones with mac_addr_add)"
            ));
        }
        let rec = self.inner.rec;
        let mut filters: Vec<MacAddr> = rec
            .mac_addrs
            .iter()
            .map(|a| a.load(Ordering::Relaxed))
            .filter(|v| *v != 0)
            .map(unpack_mac)
            .collect();
        for m in list {
            if !filters.contains(m) {
                filters.push(*m);
            }
        }
        self.inner.drv.set_mac_filters(&filters)?;
        for (i, slot) in rec.mc_addrs.iter().enumerate() {
            slot.store(list.get(i).map_or(0, |m| pack_mac(*m)), Ordering::Relaxed);
        }
        Ok(())
    }

    /// Sets the MTU, within the device's limits (see [`Port::info`]).
    pub fn set_mtu(&self, mtu: u32) -> Result<()> {
        self.primary_only("change the MTU")?;
        let info = self.info();
        if !(info.min_mtu..=info.max_mtu).contains(&mtu) {
            return Err(Error::BadMtu {
                port: self.name(),
                mtu,
                min: info.min_mtu,
                max: info.max_mtu,
            });
        }
        self.inner.drv.set_mtu(mtu)?;
        self.inner.rec.mtu.store(mtu, Ordering::Relaxed);
        Ok(())
    }
}
