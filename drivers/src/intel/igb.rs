//! `net_igb`: the Intel 82576 (igb) PMD, on the advanced descriptor rings of `ring`.
//!
//! Tested against QEMU's `igb` device model (8086:10c9) in the guest, not against a real
//! 82576. Register names and bits are the datasheet's (82576 datasheet, section 8).
//!
//! Bring-up at start: global reset (CTRL.RST), interrupts masked, link set up through the
//! PHY (auto-negotiation restarted over MDIC), the RX queues (SRRCTL advanced one-buffer
//! descriptors, rings filled, RXDCTL.ENABLE polled) and TX queues (TXDCTL.ENABLE polled),
//! RSS (MRQC, RETA, key) with more than one RX queue, the MAC filters, then RCTL/TCTL.
//! Hardware counters are clear-on-read: every read adds them to totals in a memzone that
//! all processes share.

use super::regs::igb::*;
use super::regs::*;
use super::{open_pci, probe, rx_mode_word, Family, IntelDevice, IntelPmd, IntelPort};
use eal::vfio::{Bar, VfioDevice};
use net::ethdev::{Driver, Error, PortContext, PortDriver, Result};
use net::Link;
use std::sync::Arc;
use std::time::Duration;

/// Where the 82576 differs from the 82599 in the shared code.
static FAMILY: Family = Family {
    chip: "82576",
    zone_prefix: "igb",
    max_queues: 8,
    rx_queues: RX_QUEUES,
    tx_queues: TX_QUEUES,
    srrctl: |q| 0xc00c + q as usize * 0x40,
    srrctl_drop_en: 1 << 31,
    // Prefetch 8, host 1, write-back 1 (write back every RS descriptor).
    txdctl_thresh: 8 | (1 << 8) | (1 << 16),
    mrqc_rss: 0x2,
    rar_entries: 16,
    // MPC and RNBC: the two counters at other offsets than on the other family.
    counters: &super::counters(MPC, RNBC),
};

/// The driver, registered as `net_igb`, for the 82576 (8086:10c9 and its siblings).
pub struct IgbDriver;

impl Driver for IgbDriver {
    fn name(&self) -> &'static str {
        "net_igb"
    }
    fn pci_ids(&self) -> &'static [(u16, u16)] {
        &[
            (0x8086, 0x10c9),
            (0x8086, 0x10e6),
            (0x8086, 0x10e7),
            (0x8086, 0x10e8),
        ]
    }
    fn probe(&self, ctx: &PortContext) -> Result<Box<dyn PortDriver>> {
        crate::check_args(ctx.name, ctx.args, &[])?;
        let (dev, bar) = open_pci(ctx)?;
        dev.enable_bus_master()
            .map_err(|e| Error::device(ctx.name, e))?;
        probe(Igb::new(ctx, dev, bar))
    }
    fn attach(&self, ctx: &PortContext) -> Result<Box<dyn PortDriver>> {
        let (dev, bar) = open_pci(ctx)?;
        Ok(Box::new(IntelPmd(Igb::new(ctx, dev, bar))))
    }
}

/// One 82576 port in this process.
pub struct Igb {
    /// Held open for as long as its BAR is mapped.
    _dev: Arc<VfioDevice>,
    p: IntelPort,
}

impl Igb {
    fn new(ctx: &PortContext, dev: Arc<VfioDevice>, bar: Bar) -> Igb {
        Igb {
            _dev: dev,
            p: IntelPort::new(ctx, bar, &FAMILY),
        }
    }

    fn mask_interrupts(&self) {
        self.p.wr(IMC, u32::MAX);
        self.p.wr(EIMC, u32::MAX);
        let _ = self.p.bar.read32_clear(ICR);
    }

    /// Writes a PHY register through MDIC.
    fn phy_write(&self, reg: u32, v: u32) -> Result<()> {
        let p = &self.p;
        p.wr(
            MDIC,
            (v & 0xffff) | reg << 16 | MDIC_PHY_ADDR | MDIC_OP_WRITE,
        );
        if !p.poll(100, |p| p.rd(MDIC) & (MDIC_READY | MDIC_ERROR) != 0) {
            return Err(p.err("the PHY did not answer a write over MDIC within 100 ms"));
        }
        if p.rd(MDIC) & MDIC_ERROR != 0 {
            return Err(p.err(format!("the PHY refused a write of register {reg}")));
        }
        Ok(())
    }
}

impl IntelDevice for Igb {
    fn port(&self) -> &IntelPort {
        &self.p
    }

    fn driver_name(&self) -> &'static str {
        "net_igb"
    }

    /// Global reset, then the link brought up through the PHY (primary).
    fn reset(&self) -> Result<()> {
        let p = &self.p;
        self.mask_interrupts();
        p.wr(RCTL, 0);
        p.wr(TCTL, TCTL_PSP);
        p.wr(CTRL, p.rd(CTRL) | CTRL_RST);
        // The datasheet asks for a pause before the next access after a reset.
        std::thread::sleep(Duration::from_millis(1));
        if !p.poll(100, |p| p.rd(CTRL) & CTRL_RST == 0) {
            return Err(
                p.err("the device did not finish its reset (CTRL.RST still set after 100 ms)")
            );
        }
        self.mask_interrupts();
        // The EEPROM auto-read; QEMU's model does not show the bit, so only note its absence.
        if !p.poll(10, |p| p.rd(EECD) & EECD_AUTO_RD != 0) {
            log::debug!("{}: EECD.AUTO_RD not set after reset; going on", p.name);
        }
        p.wr(CTRL_EXT, p.rd(CTRL_EXT) | CTRL_EXT_DRV_LOAD);
        p.wr(CTRL, p.rd(CTRL) | CTRL_SLU);
        self.phy_write(
            PHY_BMCR,
            BMCR_AN_ENABLE | BMCR_RESTART_AN | BMCR_FULL_DUPLEX | BMCR_SPEED_1000,
        )?;
        p.read_counters();
        Ok(())
    }

    fn bring_up(&self) -> Result<()> {
        self.reset()?;
        self.p.start_queues()?;
        let rec = self.p.rec;
        self.write_rx_modes(rec.promiscuous(), rec.allmulticast());
        self.p.wr(TCTL, TCTL_EN | TCTL_PSP | TCTL_CT | TCTL_COLD);
        Ok(())
    }

    fn shut_down(&self) {
        self.p.wr(RCTL, 0);
        self.p.wr(TCTL, TCTL_PSP);
        self.p.stop_queues();
    }

    fn close(&self) {
        self.mask_interrupts();
        self.p
            .wr(CTRL_EXT, self.p.rd(CTRL_EXT) & !CTRL_EXT_DRV_LOAD);
    }

    fn read_link(&self) -> Link {
        let st = self.p.rd(STATUS);
        if st & STATUS_LU == 0 {
            return Link::DOWN;
        }
        Link {
            up: true,
            full_duplex: st & STATUS_FD != 0,
            speed_mbps: match (st >> 6) & 3 {
                0 => 10,
                1 => 100,
                _ => 1000,
            },
        }
    }

    /// RCTL with the receiver enabled, broadcast accepted, CRC stripped.
    fn write_rx_modes(&self, promiscuous: bool, allmulticast: bool) {
        let base = RCTL_EN | RCTL_BAM | RCTL_SECRC;
        let v = rx_mode_word(base, RCTL_UPE, RCTL_MPE, promiscuous, allmulticast);
        self.p.wr(RCTL, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_registers_follow_the_datasheet() {
        assert_eq!((FAMILY.srrctl)(0), 0xc00c);
        assert_eq!((FAMILY.srrctl)(2), 0xc08c);
    }
}
