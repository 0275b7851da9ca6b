//! `net_ixgbe`: the Intel 82599 (ixgbe) PMD, on the advanced descriptor rings of `ring`.
//!
//! Two ways to reach a device, one driver: `net_ixgbe` takes 82599, X540 and X550 PCI
//! functions bound to vfio-pci; `net_ixgbe_model` (`--vdev net_ixgbe_model0,bar=PATH`)
//! takes the register file that the project's 82599 model (`tests/src/bin/ixgbe_model.rs`)
//! serves in shared memory. No machine here has an 82599, so the PCI path has run only up
//! to the device lookup; everything past BAR 0 is tested on the model.
//!
//! Bring-up follows the 82599 datasheet's initialisation (section 4.6): interrupts masked,
//! global reset (CTRL.RST | CTRL.LNK_RST, self-clearing), EEPROM auto-read and DMA init
//! done awaited (EEC.ARD, RDRXCTL.DMAIDONE), link set up (AUTOC 10G serial, restart
//! auto-negotiation), counters cleared; then CRC strip and padding (HLREG0, RDRXCTL), the
//! packet buffers, DMATXCTL.TE, the queues (shared with igb), broadcast and promiscuous
//! filters (FCTRL) and RXCTRL.RXEN. The link-change interrupt (EICR.LSC) arrives on MSI-X
//! vector 0 (on the model, an eventfd it hands over) and is taken by the primary, which
//! records the new link for every process.

use super::regs::ixgbe::*;
use super::regs::*;
use super::{open_pci, probe, rx_mode_word, Family, IntelDevice, IntelPmd, IntelPort};
use crate::irq::IrqWatch;
use eal::vfio::{Bar, VfioDevice};
use net::ethdev::{Driver, Error, PortContext, PortDriver, Result};
use net::Link;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Where the 82599 differs from the 82576 in the shared code.
static FAMILY: Family = Family {
    chip: "82599",
    zone_prefix: "ixgbe",
    max_queues: 16,
    rx_queues: RX_QUEUES,
    tx_queues: TX_QUEUES,
    srrctl,
    srrctl_drop_en: 1 << 28,
    // Prefetch 32, host 1, write-back 0: DD comes back for each RS descriptor at once.
    txdctl_thresh: 32 | (1 << 8),
    mrqc_rss: 0x1,
    rar_entries: 16,
    // MPC and RNBC: the two counters at other offsets than on the other family.
    counters: &super::counters(MPC0, RNBC0),
};

/// The PCI driver, `net_ixgbe`: 82599, X540 and X550 functions.
pub struct IxgbeDriver;

impl Driver for IxgbeDriver {
    fn name(&self) -> &'static str {
        "net_ixgbe"
    }
    fn pci_ids(&self) -> &'static [(u16, u16)] {
        &[
            (0x8086, 0x10fb),
            (0x8086, 0x10f7),
            (0x8086, 0x10fc),
            (0x8086, 0x1557),
            (0x8086, 0x154d),
            (0x8086, 0x151c),
            (0x8086, 0x1528),
            (0x8086, 0x1560),
            (0x8086, 0x1563),
            (0x8086, 0x15d1),
        ]
    }
    fn probe(&self, ctx: &PortContext) -> Result<Box<dyn PortDriver>> {
        crate::check_args(ctx.name, ctx.args, &[])?;
        let (dev, bar) = open_pci(ctx)?;
        dev.enable_bus_master()
            .map_err(|e| Error::device(ctx.name, e))?;
        probe(Ixgbe::new(ctx, bar, Backend::Pci(dev)))
    }
    fn attach(&self, ctx: &PortContext) -> Result<Box<dyn PortDriver>> {
        let (dev, bar) = open_pci(ctx)?;
        Ok(Box::new(IntelPmd(Ixgbe::new(ctx, bar, Backend::Pci(dev)))))
    }
}

/// The same PMD on the 82599 model's register file: `net_ixgbe_model<N>,bar=PATH`.
pub struct IxgbeModelDriver;

fn model_zone(port: u16) -> String {
    format!("ixgbe{port}_model")
}

impl Driver for IxgbeModelDriver {
    fn name(&self) -> &'static str {
        "net_ixgbe_model"
    }
    fn probe(&self, ctx: &PortContext) -> Result<Box<dyn PortDriver>> {
        crate::check_args(ctx.name, ctx.args, &["bar"])?;
        let path = crate::arg(ctx.args, "bar").ok_or_else(|| Error::BadArg {
            port: ctx.name.into(),
            why: "give the model's register file: bar=PATH, the path given to ixgbe_model --port"
                .into(),
        })?;
        let bar = map_model(ctx, Path::new(path))?;
        // Secondaries get no device arguments: they find the path here.
        let mz = eal::eal()?.memzone_reuse_or_reserve(
            &model_zone(ctx.port_id),
            4096,
            64,
            eal::MemzoneFlags::empty(),
        )?;
        let bytes = path.as_bytes();
        if bytes.len() >= 4096 {
            return Err(Error::BadArg {
                port: ctx.name.into(),
                why: "bar= path too long".into(),
            });
        }
        // SAFETY: the zone is 4096 bytes, the path and its terminator fit (checked).
        unsafe {
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), mz.as_ptr::<u8>(), bytes.len());
            mz.as_ptr::<u8>().add(bytes.len()).write(0);
        }
        probe(Ixgbe::new(ctx, bar, Backend::Model(path.into())))
    }
    fn attach(&self, ctx: &PortContext) -> Result<Box<dyn PortDriver>> {
        let mz = eal::eal()?.memzone_lookup(&model_zone(ctx.port_id))?;
        // SAFETY: the zone holds a NUL-terminated path the primary wrote at probe.
        let path = unsafe { std::ffi::CStr::from_ptr(mz.as_ptr::<libc::c_char>()) }
            .to_string_lossy()
            .into_owned();
        let bar = map_model(ctx, Path::new(&path))?;
        Ok(Box::new(IntelPmd(Ixgbe::new(
            ctx,
            bar,
            Backend::Model(path.into()),
        ))))
    }
}

fn map_model(ctx: &PortContext, path: &Path) -> Result<Bar> {
    Bar::map_emulated(path, BAR_LEN).map_err(|e| {
        Error::device(
            ctx.name,
            format!(
                "cannot map the model's register file {}: {e} (is ixgbe_model running?)",
                path.display()
            ),
        )
    })
}

/// What is behind BAR 0.
enum Backend {
    Pci(Arc<VfioDevice>),
    /// The model's register file; its interrupt eventfd is handed over on `<file>.irq`.
    Model(PathBuf),
}

impl Backend {
    /// An eventfd signalled on the device's "other causes" interrupt (link change).
    fn interrupt(&self) -> std::io::Result<OwnedFd> {
        match self {
            Backend::Pci(dev) => match dev.enable_interrupts(1) {
                Ok((mut fds, true)) => Ok(fds.remove(0)),
                Ok((_, false)) => {
                    dev.disable_interrupts(false);
                    Err(std::io::Error::other("the device offers no MSI-X"))
                }
                Err(e) => Err(std::io::Error::other(e.to_string())),
            },
            Backend::Model(path) => {
                let mut sock = path.as_os_str().to_owned();
                sock.push(".irq");
                crate::fd_share::receive_fd(Path::new(&sock))
            }
        }
    }

    fn disable_interrupts(&self) {
        if let Backend::Pci(dev) = self {
            dev.disable_interrupts(true);
        }
    }
}

/// One 82599 port in this process.
pub struct Ixgbe {
    backend: Backend,
    p: IntelPort,
    /// The primary's link-change interrupt thread, while started.
    irq: IrqWatch,
}

impl Ixgbe {
    fn new(ctx: &PortContext, bar: Bar, backend: Backend) -> Ixgbe {
        Ixgbe {
            backend,
            p: IntelPort::new(ctx, bar, &FAMILY),
            irq: IrqWatch::default(),
        }
    }

    fn mask_interrupts(&self) {
        self.p.wr(EIMC, 0x7fff_ffff);
        let _ = self.p.bar.read32_clear(EICR);
    }

    /// Routes the link-change interrupt to a thread of the primary, which records the link
    /// for every process (their link callbacks see it). Without an interrupt, the link is
    /// read when asked.
    fn start_interrupts(&self) {
        if self.irq.is_running() {
            return;
        }
        let fd = match self.backend.interrupt() {
            Ok(fd) => fd,
            Err(e) => {
                log::warn!(
                    "{}: no link-change interrupt, the link is read when asked: {e}",
                    self.p.name
                );
                return;
            }
        };
        let p = &self.p;
        p.wr(GPIE, GPIE_MSIX_MODE | GPIE_PBA_SUPPORT | GPIE_EIAME);
        p.wr(IVAR_MISC, IVAR_ALLOC_VAL << 8);
        p.wr(EIMS, EICR_LSC);
        let bar = p.bar.clone();
        let (rec, name) = (p.rec, p.name.clone());
        self.irq.start(fd, move || {
            let cause = bar.read32_clear(EICR);
            if cause & EICR_LSC != 0 {
                let link = read_link(&bar);
                log::info!("{name}: link change interrupt, link {link}");
                rec.set_link(link);
            }
            // EIAME masked the cause when the interrupt fired: unmask it.
            bar.write32(EIMS, EICR_LSC);
        });
    }
}

/// The link as LINKS shows it.
fn read_link(bar: &Bar) -> Link {
    let links = bar.read32(LINKS);
    if links & LINKS_UP == 0 {
        return Link::DOWN;
    }
    Link {
        up: true,
        full_duplex: true,
        speed_mbps: match links & LINKS_SPEED_MASK {
            LINKS_SPEED_10G => 10_000,
            LINKS_SPEED_1G => 1000,
            _ => 100,
        },
    }
}

impl IntelDevice for Ixgbe {
    fn port(&self) -> &IntelPort {
        &self.p
    }

    fn driver_name(&self) -> &'static str {
        "net_ixgbe"
    }

    /// The datasheet's reset and link set-up (4.6.3), then the counters cleared.
    fn reset(&self) -> Result<()> {
        let p = &self.p;
        self.mask_interrupts();
        p.wr(CTRL, p.rd(CTRL) | CTRL_RST | CTRL_LNK_RST);
        // The datasheet asks for at least 1 ms before the next access after a reset.
        std::thread::sleep(Duration::from_millis(1));
        if !p.poll(100, |p| p.rd(CTRL) & (CTRL_RST | CTRL_LNK_RST) == 0) {
            return Err(p.err("the device did not finish its reset (CTRL.RST still set)"));
        }
        std::thread::sleep(Duration::from_millis(10));
        self.mask_interrupts();
        if !p.poll(1000, |p| p.rd(EEC) & EEC_ARD != 0) {
            return Err(p.err("the EEPROM auto-read did not finish (EEC.ARD) within 1 s"));
        }
        if !p.poll(1000, |p| p.rd(RDRXCTL) & RDRXCTL_DMAIDONE != 0) {
            return Err(p.err("DMA initialisation did not finish (RDRXCTL.DMAIDONE) within 1 s"));
        }
        p.wr(CTRL_EXT, p.rd(CTRL_EXT) | CTRL_EXT_DRV_LOAD);
        let autoc = (p.rd(AUTOC) & !AUTOC_LMS_MASK) | AUTOC_LMS_10G_SERIAL;
        p.wr(AUTOC, autoc);
        p.wr(AUTOC, autoc | AUTOC_AN_RESTART);
        p.read_counters();
        Ok(())
    }

    fn bring_up(&self) -> Result<()> {
        let p = &self.p;
        self.reset()?;
        // Receive: CRC stripped (both places the datasheet names), one 128 KB packet buffer.
        p.wr(RXCTRL, 0);
        p.wr(HLREG0, HLREG0_RXCRCSTRP | HLREG0_TXCRCEN | HLREG0_TXPADEN);
        p.wr(RDRXCTL, p.rd(RDRXCTL) | RDRXCTL_CRCSTRIP);
        for i in 0..8 {
            p.wr(RXPBSIZE + 4 * i, if i == 0 { 128 << 10 } else { 0 });
            p.wr(TXPBSIZE + 4 * i, if i == 0 { 40 << 10 } else { 0 });
        }
        p.wr(CTRL_EXT, p.rd(CTRL_EXT) | CTRL_EXT_NS_DIS);
        for q in 0..16 {
            p.wr(
                DCA_RXCTRL + 4 * q,
                p.rd(DCA_RXCTRL + 4 * q) & !DCA_RXCTRL_BIT12,
            );
        }
        // Transmit: the whole DMA request size, the DCB arbiter on, then TE before the
        // queues are enabled (a TX queue does not enable without it).
        p.wr(DTXMXSZRQ, 0xfff);
        p.wr(RTTDCS, p.rd(RTTDCS) & !RTTDCS_ARBDIS);
        p.wr(DMATXCTL, DMATXCTL_TE);
        p.start_queues()?;
        let rec = p.rec;
        self.write_rx_modes(rec.promiscuous(), rec.allmulticast());
        p.wr(RXCTRL, RXCTRL_RXEN);
        self.start_interrupts();
        Ok(())
    }

    fn shut_down(&self) {
        self.irq.stop();
        self.backend.disable_interrupts();
        self.mask_interrupts();
        self.p.wr(RXCTRL, 0);
        self.p.wr(DMATXCTL, 0);
        self.p.stop_queues();
    }

    fn close(&self) {
        self.mask_interrupts();
        self.p
            .wr(CTRL_EXT, self.p.rd(CTRL_EXT) & !CTRL_EXT_DRV_LOAD);
    }

    fn read_link(&self) -> Link {
        read_link(&self.p.bar)
    }

    /// FCTRL: broadcast accepted, and the modes the caller gives.
    fn write_rx_modes(&self, promiscuous: bool, allmulticast: bool) {
        let v = rx_mode_word(FCTRL_BAM, FCTRL_UPE, FCTRL_MPE, promiscuous, allmulticast);
        self.p.wr(FCTRL, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn srrctl_of_low_and_high_queues() {
        assert_eq!(srrctl(0), 0x2100);
        assert_eq!(srrctl(15), 0x213c);
        assert_eq!(srrctl(16), 0x1414);
    }
}
