//! Register offsets and bits of the 82576 and the 82599, named as in their datasheets:
//! here those at the same place in both families and the descriptor bits, in [`igb`] and
//! [`ixgbe`] the rest. The PMDs and the project's 82599 model
//! (`tests/src/bin/ixgbe_model/`) both use these, so the two read the same datasheet.

// Each name is the datasheet's register or field name: the datasheet documents them.
#![allow(missing_docs)]

// General registers.
pub const CTRL: usize = 0x0000;
pub const CTRL_RST: u32 = 1 << 26;
pub const CTRL_EXT: usize = 0x0018;
pub const CTRL_EXT_DRV_LOAD: u32 = 1 << 28;

// Receive filters and RSS.
pub const RXCSUM: usize = 0x5000;
pub const RXCSUM_PCSD: u32 = 1 << 13;
pub const MTA: usize = 0x5200;
pub const MTA_LEN: usize = 128;
pub const RAL0: usize = 0x5400;
pub const RAH_AV: u32 = 1 << 31;
pub const MRQC: usize = 0x5818;
/// Hash over IPv4 and IPv6 addresses, with TCP and UDP ports.
pub const MRQC_RSS_FIELDS: u32 =
    (1 << 16) | (1 << 17) | (1 << 20) | (1 << 21) | (1 << 22) | (1 << 23);
pub const RETA: usize = 0x5c00;
pub const RETA_ENTRIES: usize = 128;
pub const RSSRK: usize = 0x5c80;

// Offsets inside a queue's register block (stride 0x40).
pub const QUEUE_STRIDE: usize = 0x40;
pub const DBAL: usize = 0x00;
pub const DBAH: usize = 0x04;
pub const DLEN: usize = 0x08;
pub const DH: usize = 0x10;
pub const DT: usize = 0x18;
pub const DCTL: usize = 0x28;
pub const DCTL_ENABLE: u32 = 1 << 25;
pub const SRRCTL_DESCTYPE_ADV_ONEBUF: u32 = 1 << 25;

// Statistics (clear on read); the missed-packet and no-buffer counters differ by family.
pub const CRCERRS: usize = 0x4000;
pub const GPRC: usize = 0x4074;
pub const BPRC: usize = 0x4078;
pub const MPRC: usize = 0x407c;
pub const GPTC: usize = 0x4080;
pub const GORCL: usize = 0x4088;
pub const GOTCL: usize = 0x4090;
pub const RUC: usize = 0x40a4;
pub const ROC: usize = 0x40ac;
pub const TPR: usize = 0x40d0;
pub const TPT: usize = 0x40d4;

// RX write-back status (low 32 bits of the second quadword).
pub const RXD_STAT_DD: u64 = 1 << 0;
pub const RXD_STAT_EOP: u64 = 1 << 1;
/// RSS type in the RX write-back (bits 3:0 of the first quadword): IPv4 with UDP ports,
/// and IPv4 addresses only.
pub const RSS_TYPE_IPV4_UDP: u64 = 0x7;
pub const RSS_TYPE_IPV4: u64 = 0x2;
pub const RSS_TYPE_MASK: u64 = 0xf;
/// The RSS types (as bits) that say the device computed a hash: 1 to 9. 0 is none; 10 to
/// 15 are reserved (the 82599 reports a flow director match as 15).
pub const RSS_TYPES_HASHED: u16 = 0x3fe;

// TX data descriptor: command and type (low 32 bits of the second quadword) and status.
pub const TXD_DTYP_DATA: u64 = 0x0030_0000;
pub const TXD_CMD_EOP: u64 = 0x0100_0000;
pub const TXD_CMD_IFCS: u64 = 0x0200_0000;
pub const TXD_CMD_RS: u64 = 0x0800_0000;
pub const TXD_CMD_DEXT: u64 = 0x2000_0000;
pub const TXD_PAYLEN_SHIFT: u64 = 14;
pub const TXD_STAT_DD: u64 = 1 << 32;

/// The 82576's own registers (82576 datasheet, section 8).
pub mod igb {
    // General registers.
    pub const CTRL_SLU: u32 = 1 << 6;
    pub const STATUS: usize = 0x0008;
    pub const STATUS_FD: u32 = 1 << 0;
    pub const STATUS_LU: u32 = 1 << 1;
    pub const EECD: usize = 0x0010;
    pub const EECD_AUTO_RD: u32 = 1 << 9;
    pub const MDIC: usize = 0x0020;
    pub const MDIC_PHY_ADDR: u32 = 1 << 21;
    pub const MDIC_OP_WRITE: u32 = 1 << 26;
    pub const MDIC_READY: u32 = 1 << 28;
    pub const MDIC_ERROR: u32 = 1 << 30;
    pub const ICR: usize = 0x00c0;
    pub const IMC: usize = 0x00d8;
    pub const EIMC: usize = 0x1528;

    // PHY control register (MII BMCR): auto-negotiation on and restarted, 1000 Mb/s full
    // duplex.
    pub const PHY_BMCR: u32 = 0;
    pub const BMCR_RESTART_AN: u32 = 1 << 9;
    pub const BMCR_FULL_DUPLEX: u32 = 1 << 8;
    pub const BMCR_AN_ENABLE: u32 = 1 << 12;
    pub const BMCR_SPEED_1000: u32 = 1 << 6;

    // Receive and transmit control.
    pub const RCTL: usize = 0x0100;
    pub const RCTL_EN: u32 = 1 << 1;
    pub const RCTL_UPE: u32 = 1 << 3;
    pub const RCTL_MPE: u32 = 1 << 4;
    pub const RCTL_BAM: u32 = 1 << 15;
    pub const RCTL_SECRC: u32 = 1 << 26;
    pub const TCTL: usize = 0x0400;
    pub const TCTL_EN: u32 = 1 << 1;
    pub const TCTL_PSP: u32 = 1 << 3;
    pub const TCTL_CT: u32 = 0xf << 4;
    pub const TCTL_COLD: u32 = 0x3f << 12;

    /// First RX and TX queue register blocks (RDBAL0, TDBAL0).
    pub const RX_QUEUES: usize = 0xc000;
    pub const TX_QUEUES: usize = 0xe000;

    // Missed packets and receive no-buffer counts.
    pub const MPC: usize = 0x4010;
    pub const RNBC: usize = 0x40a0;
}

/// The 82599's own registers (82599 datasheet, section 8).
pub mod ixgbe {
    // General and interrupt registers.
    pub const CTRL_LNK_RST: u32 = 1 << 3;
    pub const CTRL_EXT_NS_DIS: u32 = 1 << 16;
    pub const EICR: usize = 0x0800;
    pub const EICR_LSC: u32 = 1 << 20;
    pub const EIMS: usize = 0x0880;
    pub const EIMC: usize = 0x0888;
    pub const GPIE: usize = 0x0898;
    pub const GPIE_MSIX_MODE: u32 = 1 << 4;
    pub const GPIE_EIAME: u32 = 1 << 30;
    pub const GPIE_PBA_SUPPORT: u32 = 1 << 31;
    /// Vector of the "other" causes (link change among them): bits 15:8, valid bit 7 of the
    /// byte.
    pub const IVAR_MISC: usize = 0x0a00;
    pub const IVAR_ALLOC_VAL: u32 = 0x80;
    pub const EICS: usize = 0x0808;
    pub const EIAC: usize = 0x0810;
    pub const EIAM: usize = 0x0890;
    pub const GPIE_OCD: u32 = 1 << 5;
    /// Extended MSI-X vector registers (vectors 32 n to 32 n + 31), n = 0, 1.
    pub const EICS_EX: usize = 0x0a90;
    pub const EIMS_EX: usize = 0x0aa0;
    pub const EIMC_EX: usize = 0x0ab0;
    pub const EIAM_EX: usize = 0x0ad0;
    /// Vectors of RX and TX queue causes: IVAR n holds queues 2n and 2n + 1 (a byte each
    /// for RX at bits 7:0 and 23:16, TX at 15:8 and 31:24; valid bit 7 of the byte).
    pub const IVAR: usize = 0x0900;
    pub const EITR: usize = 0x0820;
    pub const STATUS: usize = 0x0008;
    pub const STATUS_LAN_ID_SHIFT: u32 = 2;
    pub const STATUS_GIO: u32 = 1 << 19;
    pub const CTRL_GIO_DIS: u32 = 1 << 2;

    // EEPROM, semaphores and firmware.
    pub const EEC: usize = 0x1_0010;
    pub const EEC_PRES: u32 = 1 << 8;
    pub const EEC_ARD: u32 = 1 << 9;
    pub const EEC_SIZE_SHIFT: u32 = 11;
    pub const EERD: usize = 0x1_0014;
    pub const EERD_START: u32 = 1 << 0;
    pub const EERD_DONE: u32 = 1 << 1;
    pub const EERD_ADDR_SHIFT: u32 = 2;
    pub const EERD_DATA_SHIFT: u32 = 16;
    pub const SWSM: usize = 0x1_0140;
    pub const SWSM_SMBI: u32 = 1 << 0;
    pub const FWSM: usize = 0x1_0148;
    pub const FWSM_FW_VAL: u32 = 1 << 15;
    /// SW_FW_SYNC (the datasheet's GSSR).
    pub const SW_FW_SYNC: usize = 0x1_0160;

    // Receive.
    pub const RDRXCTL: usize = 0x2f00;
    pub const RDRXCTL_CRCSTRIP: u32 = 1 << 1;
    pub const RDRXCTL_DMAIDONE: u32 = 1 << 3;
    pub const RXCTRL: usize = 0x3000;
    pub const RXCTRL_RXEN: u32 = 1 << 0;
    pub const RXPBSIZE: usize = 0x3c00;
    pub const DCA_RXCTRL: usize = 0x2200;
    /// A bit the datasheet says to clear (ixy and DPDK do).
    pub const DCA_RXCTRL_BIT12: u32 = 1 << 12;
    pub const FCTRL: usize = 0x5080;
    pub const FCTRL_MPE: u32 = 1 << 8;
    pub const FCTRL_UPE: u32 = 1 << 9;
    pub const FCTRL_BAM: u32 = 1 << 10;

    // MAC.
    pub const HLREG0: usize = 0x4240;
    pub const HLREG0_TXCRCEN: u32 = 1 << 0;
    pub const HLREG0_RXCRCSTRP: u32 = 1 << 1;
    pub const HLREG0_TXPADEN: u32 = 1 << 10;
    pub const HLREG0_RXLNGTHERREN: u32 = 1 << 27;
    pub const AUTOC: usize = 0x42a0;
    pub const AUTOC_AN_RESTART: u32 = 1 << 12;
    pub const AUTOC_LMS_MASK: u32 = 7 << 13;
    pub const AUTOC_LMS_10G_SERIAL: u32 = 3 << 13;
    pub const LINKS: usize = 0x42a4;
    pub const LINKS_UP: u32 = 1 << 30;
    pub const LINKS_SPEED_MASK: u32 = 3 << 28;
    pub const LINKS_SPEED_10G: u32 = 3 << 28;
    pub const LINKS_SPEED_1G: u32 = 2 << 28;
    pub const LINKS_KX_AN_COMP: u32 = 1 << 31;
    pub const AUTOC_KX4_SUPP: u32 = 1 << 31;
    pub const AUTOC_KX_SUPP: u32 = 1 << 30;
    pub const AUTOC_LMS_KX4_KX_KR: u32 = 4 << 13;
    pub const AUTOC2: usize = 0x42a8;
    pub const ANLP1: usize = 0x42b0;
    pub const ANLP1_AN_STATE_MASK: u32 = 0xf << 16;
    /// MDI (PHY) access: command, then read/write data.
    pub const MSCA: usize = 0x425c;
    pub const MSCA_MDICMD: u32 = 1 << 30;
    pub const MSRWD: usize = 0x4260;

    // Flow director and the security blocks, whose init the drivers await.
    pub const FDIRCTRL: usize = 0xee00;
    pub const FDIRCTRL_INIT_DONE: u32 = 1 << 3;
    pub const FDIRCMD: usize = 0xee2c;
    pub const FDIRCMD_CMD_MASK: u32 = 0x3;
    pub const SECRXSTAT: usize = 0x8d04;
    pub const SECTXSTAT: usize = 0x8804;
    pub const SEC_RDY: u32 = 1 << 0;

    // Transmit.
    pub const DMATXCTL: usize = 0x4a80;
    pub const DMATXCTL_TE: u32 = 1 << 0;
    pub const RTTDCS: usize = 0x4900;
    pub const RTTDCS_ARBDIS: u32 = 1 << 6;
    pub const DTXMXSZRQ: usize = 0x8100;
    pub const TXPBSIZE: usize = 0xcc00;

    /// First RX and TX queue register blocks (RDBAL0, TDBAL0).
    pub const RX_QUEUES: usize = 0x1000;
    pub const TX_QUEUES: usize = 0x6000;

    // Per-queue statistics: each queue counts into one of 16 sets, chosen by a 4-bit field
    // (one byte per queue, four queues per register) of RQSMR (RX) and TQSM (TX).
    pub const RQSMR: usize = 0x2300;
    pub const TQSM: usize = 0x8600;
    /// Packets received into statistics set n (QPRC), then its 64-bit byte count (QBRC).
    pub const fn qprc(n: usize) -> usize {
        0x1030 + 0x40 * n
    }
    pub const fn qbrc(n: usize) -> usize {
        0x1034 + 0x40 * n
    }
    /// Packets sent from statistics set n (QPTC), then its 64-bit byte count (QBTC).
    pub const fn qptc(n: usize) -> usize {
        0x6030 + 0x40 * n
    }
    pub const fn qbtc(n: usize) -> usize {
        0x8700 + 8 * n
    }

    // Missed packets and receive no-buffer counts of packet buffer 0.
    pub const MPC0: usize = 0x3fa0;
    pub const RNBC0: usize = 0x3fc0;

    /// Size of BAR 0 the driver uses (and the model serves).
    pub const BAR_LEN: usize = 0x2_0000;

    /// SRRCTL of RX queue q (queues 0-15 at 0x2100, as the datasheet lists them first).
    pub fn srrctl(q: u16) -> usize {
        if q < 16 {
            0x2100 + 4 * q as usize
        } else {
            0x1014 + 0x40 * q as usize
        }
    }
}
