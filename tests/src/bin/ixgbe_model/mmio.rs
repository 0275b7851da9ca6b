//! Register accesses that arrive one by one (BAR 0 over vfio-user), with the side effects
//! the datasheet gives them: clear-on-read counters and EICR, EERD's EEPROM reads, SWSM's
//! read-to-acquire semaphore, MDI commands that complete (no PHY answers on a KX4
//! backplane port), interrupt masks set by EIMS and cleared by EIMC, causes routed to
//! MSI-X vectors by IVAR with auto-clear (EIAC) and auto-mask (EIAM).
//!
//! A register the model gives no meaning to keeps what is written to it, and its first
//! access is logged (offset, read or write, value), so that a driver's need shows instead
//! of being answered with an invented value.

use super::port::{Cause, Port};
use super::regs::Regs;
use drivers::intel::regs::ixgbe::*;
use drivers::intel::regs::*;
use std::collections::{BTreeMap, HashSet};
use std::fs::File;
use std::io::Write;

/// A driver's register writes from a start the test marks to the port's first sent frame.
pub struct Recording {
    pub label: String,
    /// Last value written, by offset.
    pub writes: BTreeMap<usize, u32>,
    pub done: bool,
}

/// Interrupt state and bookkeeping of a port served over vfio-user.
#[derive(Default)]
pub struct Trapped {
    /// Vector causes and mask (EICR/EIMS bits 0-15, EICR_EX/EIMS_EX for all 64).
    vcause: u64,
    vmask: u64,
    /// The "other" causes and their mask (EICR/EIMS bits 16-30).
    ocause: u32,
    omask: u32,
    /// MSI-X vectors' eventfds, as QEMU set them.
    pub vectors: Vec<Option<File>>,
    /// The MSI or INTx eventfd, when MSI-X is off.
    pub single: Option<File>,
    /// Accesses to registers without a model, logged once each: (offset, is a write).
    seen: HashSet<(usize, bool)>,
    pub recordings: Vec<Recording>,
}

impl Trapped {
    /// A device reset clears causes and masks; the eventfds are QEMU's and stay.
    pub fn reset(&mut self) {
        (self.vcause, self.vmask, self.ocause, self.omask) = (0, 0, 0, 0);
    }

    fn fire(&self, regs: &Regs, vector: u32) {
        // Without GPIE's multiple-vector mode every cause goes to MSI-X vector 0 when MSI-X
        // is on, else to MSI or INTx.
        let fd = if regs.r(GPIE) & GPIE_MSIX_MODE != 0 {
            self.vectors.get(vector as usize).and_then(Option::as_ref)
        } else {
            self.vectors
                .first()
                .and_then(Option::as_ref)
                .or(self.single.as_ref())
        };
        if let Some(mut f) = fd {
            let _ = f.write_all(&1u64.to_ne_bytes());
        }
    }

    /// Sets `cause` and signals its vector if its mask allows.
    pub fn raise(&mut self, regs: &Regs, cause: Cause) {
        let msix = regs.r(GPIE) & GPIE_MSIX_MODE != 0;
        let automask = regs.r(GPIE) & GPIE_EIAME != 0;
        match cause {
            Cause::Other(bit) => {
                self.ocause |= bit;
                if self.omask & bit == 0 {
                    return;
                }
                let misc = regs.r(IVAR_MISC) >> 8;
                if !msix {
                    self.fire(regs, 0);
                } else if misc & IVAR_ALLOC_VAL != 0 {
                    self.fire(regs, misc & 0x3f);
                }
                if msix && automask && regs.r(EIAM) & bit != 0 {
                    self.omask &= !bit;
                }
            }
            Cause::Queue { tx, q } => {
                let shift = 16 * (q % 2) + if tx { 8 } else { 0 };
                let entry = regs.r(IVAR + 4 * (q / 2)) >> shift;
                if entry & IVAR_ALLOC_VAL == 0 {
                    return;
                }
                self.raise_vector(regs, entry & 0x3f);
            }
        }
    }

    /// Sets the cause of `vector` (a queue's, or EICS's) and signals it as the masks allow.
    fn raise_vector(&mut self, regs: &Regs, vector: u32) {
        let bit = 1u64 << vector;
        self.vcause |= bit;
        if self.vmask & bit == 0 {
            return;
        }
        self.fire(regs, vector);
        if regs.r(GPIE) & GPIE_MSIX_MODE == 0 {
            return;
        }
        if vector < 16 && regs.r(EIAC) & 1 << vector != 0 {
            self.vcause &= !bit;
        }
        let eiam = regs.r(EIAM_EX + 4 * (vector as usize / 32)) >> (vector % 32) & 1 != 0
            || (vector < 16 && regs.r(EIAM) & 1 << vector != 0);
        if regs.r(GPIE) & GPIE_EIAME != 0 && eiam {
            self.vmask &= !bit;
        }
    }

    /// Signals what was pending under bits just unmasked.
    fn unmasked(&mut self, regs: &Regs, vbits: u64, obits: u32) {
        for v in 0..64 {
            if vbits & self.vcause & 1 << v != 0 {
                self.raise_vector(regs, v);
            }
        }
        let pending = obits & self.ocause;
        if pending != 0 {
            self.raise(regs, Cause::Other(pending));
        }
    }

    fn eicr(&self) -> u32 {
        self.ocause | (self.vcause & 0xffff) as u32
    }

    #[cold]
    fn unmodelled(&mut self, off: usize, write: bool, v: u32) {
        if self.seen.insert((off, write)) {
            let what = if write { "write" } else { "read" };
            eprintln!("ixgbe_model: unmodelled register {off:#07x}: {what} {v:#010x}");
        }
    }
}

/// Clear-on-read statistics (the datasheet's statistics block, the missed-packet
/// and no-buffer counts of the packet buffers, and the per-queue sets).
fn is_counter(off: usize) -> bool {
    (CRCERRS..0x4120).contains(&off)
        || (MPC0..0x3fe0).contains(&off)
        || (0..16).any(|n| {
            off == qprc(n) || off == qptc(n) || (qbrc(n)..qbrc(n) + 8).contains(&off)
        })
        || (qbtc(0)..qbtc(16)).contains(&off)
}

/// Registers whose behaviour the model has (beyond holding a value).
fn is_modelled(off: usize) -> bool {
    let queue = |base: usize| {
        (base..base + QUEUE_STRIDE * super::port::QUEUES).contains(&off)
            && [DBAL, DBAH, DLEN, DH, DT, DCTL].contains(&((off - base) % QUEUE_STRIDE))
    };
    let ranges = [
        (IVAR, IVAR + 4 * 32),
        (EICS_EX, EIAM_EX + 8),
        (MTA, MTA + 4 * MTA_LEN),
        (RAL0, RAL0 + 8 * 16),
        (RETA, RETA + 4 * 32),
        (RSSRK, RSSRK + 40),
        (0x2100, 0x2140), // SRRCTL 0-15
    ];
    const SINGLE: [usize; 31] = [
        CTRL, STATUS, CTRL_EXT, EICR, EICS, EIMS, EIMC, EIAC, EIAM, GPIE, IVAR_MISC, EEC, EERD,
        SWSM, FWSM, SW_FW_SYNC, RDRXCTL, RXCTRL, FCTRL, HLREG0, AUTOC, LINKS, ANLP1, MSCA, MSRWD,
        DMATXCTL, MRQC, FDIRCTRL, FDIRCMD, SECRXSTAT, SECTXSTAT,
    ];
    is_counter(off)
        || queue(RX_QUEUES)
        || queue(TX_QUEUES)
        || ranges.iter().any(|(a, b)| (*a..*b).contains(&off))
        || SINGLE.contains(&off)
}

impl Port {
    /// A driver's read of BAR 0 at `off`.
    pub fn mmio_read(&mut self, off: usize) -> u32 {
        let regs = &self.regs;
        let super::port::Transport::Trapped(t) = &mut self.transport else {
            return 0;
        };
        let regs_v = match off {
            EICR => {
                let v = t.eicr();
                t.vcause &= !0xffff;
                t.ocause = 0;
                return v;
            }
            EICS => return t.eicr(),
            EIMS => return t.omask | (t.vmask & 0xffff) as u32,
            o if (EIMS_EX..EIMS_EX + 8).contains(&o) => {
                return (t.vmask >> (32 * ((o - EIMS_EX) / 4))) as u32
            }
            SWSM => {
                // Read-to-acquire: a read that finds SMBI clear sets it.
                let v = regs.r(SWSM);
                regs.w(SWSM, v | SWSM_SMBI);
                v
            }
            o if is_counter(o) => regs.reg(o).swap(0, std::sync::atomic::Ordering::AcqRel),
            o => regs.r(o),
        };
        if !is_modelled(off) {
            t.unmodelled(off, false, regs_v);
        }
        regs_v
    }

    /// A driver's write of `v` to BAR 0 at `off`.
    pub fn mmio_write(&mut self, off: usize, v: u32) {
        let regs = &self.regs;
        let eeprom = &self.eeprom;
        let super::port::Transport::Trapped(t) = &mut self.transport else {
            return;
        };
        if let Some(r) = t.recordings.last_mut().filter(|r| !r.done) {
            r.writes.insert(off, v);
        }
        match off {
            EICR => {
                t.vcause &= !(v as u64 & 0xffff);
                t.ocause &= !(v & !0xffff);
            }
            EICS => {
                for k in 0..16 {
                    if v & 1 << k != 0 {
                        t.raise_vector(regs, k);
                    }
                }
                if v & !0xffff != 0 {
                    t.raise(regs, Cause::Other(v & 0x7fff_0000));
                }
            }
            o if (EICS_EX..EICS_EX + 8).contains(&o) => {
                let base = 32 * ((o - EICS_EX) / 4) as u32;
                for k in 0..32 {
                    if v & 1 << k != 0 {
                        t.raise_vector(regs, base + k);
                    }
                }
            }
            EIMS => {
                t.vmask |= v as u64 & 0xffff;
                t.omask |= v & 0x7fff_0000;
                t.unmasked(regs, v as u64 & 0xffff, v & 0x7fff_0000);
            }
            EIMC => {
                t.vmask &= !(v as u64 & 0xffff);
                t.omask &= !(v & 0x7fff_0000);
            }
            o if (EIMS_EX..EIMS_EX + 8).contains(&o) => {
                let bits = (v as u64) << (32 * ((o - EIMS_EX) / 4));
                t.vmask |= bits;
                t.unmasked(regs, bits, 0);
            }
            o if (EIMC_EX..EIMC_EX + 8).contains(&o) => {
                t.vmask &= !((v as u64) << (32 * ((o - EIMC_EX) / 4)));
            }
            EERD => {
                if v & EERD_START != 0 {
                    let addr = (v >> EERD_ADDR_SHIFT) & 0x3fff;
                    let data = eeprom.read(addr as usize) as u32;
                    regs.w(
                        EERD,
                        data << EERD_DATA_SHIFT | addr << EERD_ADDR_SHIFT | EERD_DONE,
                    );
                }
            }
            MSCA => {
                // No PHY on the MDI bus: a read returns all ones; the command completes.
                let op = (v >> 26) & 0x3;
                if v & MSCA_MDICMD != 0 && op >= 2 {
                    regs.w(MSRWD, 0xffff << 16 | (regs.r(MSRWD) & 0xffff));
                }
                regs.w(MSCA, v & !MSCA_MDICMD);
            }
            // The flow director's tables are ready at once, and its commands complete.
            FDIRCTRL => regs.w(FDIRCTRL, v | FDIRCTRL_INIT_DONE),
            FDIRCMD => regs.w(FDIRCMD, v & !FDIRCMD_CMD_MASK),
            // EEC: the presence, auto-read and size fields are the hardware's.
            EEC => {
                let hw = EEC_PRES | EEC_ARD | 0xf << EEC_SIZE_SHIFT;
                regs.w(EEC, (regs.r(EEC) & hw) | (v & !hw));
            }
            // Read-only: status, link, AN state, security block status, counters.
            STATUS | LINKS | ANLP1 | SECRXSTAT | SECTXSTAT => {}
            o if is_counter(o) => {}
            o => {
                regs.w(o, v);
                if !is_modelled(o) {
                    t.unmodelled(o, true, v);
                }
            }
        }
        self.control();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::fd::FromRawFd;

    fn eventfd() -> File {
        // SAFETY: a plain syscall; the fd is owned right away.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK) };
        assert!(fd >= 0);
        // SAFETY: a new fd nobody else owns.
        unsafe { File::from_raw_fd(fd) }
    }

    fn fired(f: &File) -> bool {
        let mut v = [0u8; 8];
        (&*f).read(&mut v).is_ok()
    }

    #[test]
    fn queue_causes_reach_their_vector_with_auto_clear_and_auto_mask() {
        let regs = Regs::private();
        let mut t = Trapped {
            vectors: (0..3).map(|_| Some(eventfd())).collect(),
            ..Default::default()
        };
        regs.w(GPIE, GPIE_MSIX_MODE | GPIE_EIAME);
        // RX queue 1 -> vector 2 (IVAR 0, bits 23:16); LSC -> vector 0.
        regs.w(IVAR, (IVAR_ALLOC_VAL | 2) << 16);
        regs.w(IVAR_MISC, IVAR_ALLOC_VAL << 8);
        regs.w(EIAC, 1 << 2);
        regs.w(EIAM_EX, 1 << 2);
        let rx1 = Cause::Queue { tx: false, q: 1 };
        t.raise(&regs, rx1);
        assert!(
            !fired(t.vectors[2].as_ref().unwrap()),
            "masked: no interrupt"
        );
        // Unmasking a pending cause signals it, then auto-clear and auto-mask apply.
        t.vmask |= 1 << 2;
        t.unmasked(&regs, 1 << 2, 0);
        assert!(fired(t.vectors[2].as_ref().unwrap()));
        assert_eq!((t.vcause, t.vmask), (0, 0));
        // LSC with its mask set goes to vector 0; EICS reads it without clearing, EICR
        // clears it.
        t.omask = EICR_LSC;
        t.raise(&regs, Cause::Other(EICR_LSC));
        assert!(fired(t.vectors[0].as_ref().unwrap()));
        assert_eq!(t.eicr(), EICR_LSC);
    }
}
