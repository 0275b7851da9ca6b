//! The control virtqueue: commands sent to the device and waited for (primary only), and
//! what uses them: receive modes (promiscuous, all-multicast), the MAC address and filter
//! table, the number of queue pairs and the RSS configuration.

use super::defs::{
    feature, CFG_RSS_MAX_INDIRECTION_LEN, CFG_RSS_MAX_KEY_SIZE, CFG_SUPPORTED_HASH_TYPES, CTRL_MAC,
    CTRL_MAC_ADDR_SET, CTRL_MAC_TABLE_SET, CTRL_MQ, CTRL_MQ_RSS_CONFIG, CTRL_MQ_VQ_PAIRS_SET,
    CTRL_OK, CTRL_RX, CTRL_RX_ALLMULTI, CTRL_RX_PROMISC, RSS_HASH_TYPES, RSS_RETA_LEN,
};
use super::transport::cfg_u16;
use super::virtqueue::{self, RingKind, VirtQueue};
use super::{ctrl_buf_zone, ctrl_zone, VirtioNet};
use net::ethdev::Result;
use net::{MacAddr, PortState};
use std::time::{Duration, Instant};

/// The data of CTRL_MAC_TABLE_SET: the unicast table, then the multicast table, each an
/// le32 count followed by the addresses (virtio 1.2, 5.1.6.5.2).
fn mac_table(addrs: &[MacAddr]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + 6 * addrs.len());
    for multicast in [false, true] {
        let table: Vec<&MacAddr> = addrs
            .iter()
            .filter(|m| m.is_multicast() == multicast)
            .collect();
        out.extend_from_slice(&(table.len() as u32).to_le_bytes());
        for m in table {
            out.extend_from_slice(&m.0);
        }
    }
    out
}

impl VirtioNet {
    /// Sets up and enables the control queue, when the device has one (primary, at start).
    pub(super) fn enable_ctrl_queue(&self, f: u64) -> Result<()> {
        let t = self.t.as_ref();
        if f & feature::CTRL_VQ != 0 && !t.emulates_control() {
            let ci = self.ctrl_index();
            let size = self.queue_size(ci, 64)?;
            let sh = virtqueue::create(&ctrl_zone(self.port_id), size)?;
            let mut vq = VirtQueue::new(sh, t.notifier(ci));
            vq.reset(RingKind::from_features(f));
            t.enable_queue(ci, sh).map_err(|e| self.err(e))?;
            *self.ctrl.lock().unwrap_or_else(|p| p.into_inner()) = Some(vq);
        }
        Ok(())
    }

    /// Gives the started device the port's queue pairs or RSS, receive modes and MAC
    /// filters (primary, after DRIVER_OK).
    pub(super) fn apply_control_state(&self, f: u64, rxqs: u16, pairs: u16) -> Result<()> {
        if f & feature::RSS != 0 && (rxqs < pairs || (pairs > 1 && self.rec.rss_enabled())) {
            let config = self.rss_config(rxqs, pairs)?;
            self.ctrl_cmd(CTRL_MQ, CTRL_MQ_RSS_CONFIG, &config)?;
        } else if f & feature::MQ != 0 && self.max_pairs() > 1 {
            self.ctrl_cmd(CTRL_MQ, CTRL_MQ_VQ_PAIRS_SET, &pairs.to_le_bytes())?;
        }
        if f & feature::CTRL_RX != 0 {
            self.ctrl_cmd(CTRL_RX, CTRL_RX_PROMISC, &[self.rec.promiscuous() as u8])?;
            self.ctrl_cmd(CTRL_RX, CTRL_RX_ALLMULTI, &[self.rec.allmulticast() as u8])?;
            let filters = self.rec.mac_filters();
            if !filters.is_empty() {
                self.ctrl_cmd(CTRL_MAC, CTRL_MAC_TABLE_SET, &mac_table(&filters))?;
            }
        }
        Ok(())
    }

    pub(super) fn ctrl_set_promiscuous(&self, on: bool) -> Result<()> {
        if self.rec.state() != PortState::Started {
            return Ok(()); // applied at start
        }
        self.ctrl_cmd(CTRL_RX, CTRL_RX_PROMISC, &[on as u8])
    }

    pub(super) fn ctrl_set_allmulticast(&self, on: bool) -> Result<()> {
        if self.rec.state() != PortState::Started {
            return Ok(());
        }
        self.ctrl_cmd(CTRL_RX, CTRL_RX_ALLMULTI, &[on as u8])
    }

    pub(super) fn ctrl_set_mac(&self, mac: MacAddr) -> Result<()> {
        if self.features() & feature::CTRL_MAC_ADDR == 0 {
            return Err(self.err("the device cannot change its MAC (no CTRL_MAC_ADDR)"));
        }
        if self.rec.state() != PortState::Started {
            return Err(self.err("start the port before changing its MAC"));
        }
        self.ctrl_cmd(CTRL_MAC, CTRL_MAC_ADDR_SET, &mac.0)
    }

    pub(super) fn ctrl_set_mac_filters(&self, addrs: &[MacAddr]) -> Result<()> {
        if self.features() & feature::CTRL_RX == 0 {
            return Err(self.err("the device has no MAC filter table (no CTRL_RX)"));
        }
        if self.rec.state() != PortState::Started {
            return Ok(()); // applied at start
        }
        self.ctrl_cmd(CTRL_MAC, CTRL_MAC_TABLE_SET, &mac_table(addrs))
    }

    /// `struct virtio_net_rss_config` spreading flows over `rxqs` RX queues of `pairs` as a
    /// NIC does: the Toeplitz hash with DPDK's default key, indirection entry i to queue
    /// i % rxqs.
    fn rss_config(&self, rxqs: u16, pairs: u16) -> Result<Vec<u8>> {
        let t = self.t.as_ref();
        let mut b = [0u8; 4];
        t.read_config(CFG_SUPPORTED_HASH_TYPES, &mut b);
        let hash_types = u32::from_le_bytes(b) & RSS_HASH_TYPES;
        let max_reta = cfg_u16(t, CFG_RSS_MAX_INDIRECTION_LEN);
        let mut k = [0u8; 1];
        t.read_config(CFG_RSS_MAX_KEY_SIZE, &mut k);
        let key = &net::rss::DEFAULT_KEY[..net::rss::DEFAULT_KEY.len().min(k[0] as usize)];
        if hash_types == 0 || max_reta == 0 || key.is_empty() {
            return Err(self.err(format!(
                "the device offers RSS but no usable hash ({hash_types:#x}), table ({max_reta}) or key ({} bytes)",
                k[0]
            )));
        }
        // The table length must be a power of two.
        let len = RSS_RETA_LEN.min(1 << (15 - max_reta.leading_zeros()));
        let mut c = Vec::with_capacity(12 + 2 * len as usize + key.len());
        c.extend_from_slice(&hash_types.to_le_bytes());
        c.extend_from_slice(&(len - 1).to_le_bytes());
        c.extend_from_slice(&0u16.to_le_bytes()); // unclassified frames to queue 0
        for i in 0..len {
            c.extend_from_slice(&(i % rxqs).to_le_bytes()); // a receive queue number
        }
        c.extend_from_slice(&pairs.to_le_bytes()); // max_tx_vq
        c.push(key.len() as u8);
        c.extend_from_slice(key);
        log::info!(
            "{}: RSS over {rxqs} queues (hash types {hash_types:#x}, {len} entries, {}-byte key)",
            t.describe(),
            key.len()
        );
        Ok(c)
    }

    /// Sends one control command and waits for the device's answer (primary).
    fn ctrl_cmd(&self, class: u8, cmd: u8, data: &[u8]) -> Result<()> {
        if self.t.emulates_control() {
            return self.t.control(class, cmd, data).map_err(|e| self.err(e));
        }
        let mut g = self.ctrl.lock().unwrap_or_else(|p| p.into_inner());
        let Some(cq) = g.as_mut() else {
            return Err(self
                .err("the device has no control queue (feature CTRL_VQ): it cannot change this"));
        };
        let eal = eal::eal()?;
        let zone = ctrl_buf_zone(self.port_id);
        let mz = eal.memzone_reuse_or_reserve(&zone, 4096, 64, eal::MemzoneFlags::IOVA_CONTIG)?;
        if data.len() > 2048 {
            return Err(self.err("control command too long"));
        }
        let base = mz.addr();
        let buf = mz.as_ptr::<u8>();
        // SAFETY: the zone is 4 KiB and only the primary's control path (serialised by
        // the lock held) uses it: header at 0, data at 64, ack at 3072.
        unsafe {
            *buf = class;
            *buf.add(1) = cmd;
            std::ptr::copy_nonoverlapping(data.as_ptr(), buf.add(64), data.len());
            std::ptr::write_volatile(buf.add(3072), 0xff);
        }
        let iova = |off: u64| eal.config().virt_to_iova(base + off);
        cq.add(
            &[
                (iova(0), 2, false),
                (iova(64), data.len() as u32, false),
                (iova(3072), 1, true),
            ],
            base,
        )
        .ok_or_else(|| self.err("the control queue is full"))?;
        cq.publish();
        let deadline = Instant::now() + Duration::from_secs(2);
        while cq.used_count(1) == 0 {
            if Instant::now() > deadline {
                return Err(self.err(format!(
                    "no answer to control command {class}.{cmd} within 2 s"
                )));
            }
            std::thread::sleep(Duration::from_micros(50));
        }
        // A lying answer is counted by the queue; the ack byte below decides.
        cq.pop_used(0);
        // SAFETY: the ack byte written by the device, inside the zone.
        let ack = unsafe { std::ptr::read_volatile(buf.add(3072)) };
        if ack != CTRL_OK {
            return Err(self.err(format!(
                "the device refused control command {class}.{cmd} (answer {ack})"
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_table_lists_unicast_then_multicast_with_counts() {
        let uc = MacAddr([0x02, 0, 0, 0, 0, 1]);
        let mc = MacAddr([0x01, 0, 0x5e, 0, 0, 0xfb]);
        let t = mac_table(&[mc, uc]);
        let mut want = vec![1, 0, 0, 0];
        want.extend_from_slice(&uc.0);
        want.extend_from_slice(&[1, 0, 0, 0]);
        want.extend_from_slice(&mc.0);
        assert_eq!(t, want);
        assert_eq!(mac_table(&[]), vec![0; 8]);
    }
}
