//! Virtio-net definitions from the virtio 1.x specification: feature bits, device status
//! bits, the net header, the device configuration layout and the control queue's classes
//! and commands.

/// Feature bits (virtio 1.x, section 5.1.3 and 6).
pub mod feature {
    /// VIRTIO_NET_F_MTU: the device reports its maximum MTU.
    pub const MTU: u64 = 1 << 3;
    /// VIRTIO_NET_F_MAC: the device has a MAC address.
    pub const MAC: u64 = 1 << 5;
    /// VIRTIO_NET_F_MRG_RXBUF: a frame may span several RX buffers.
    pub const MRG_RXBUF: u64 = 1 << 15;
    /// VIRTIO_NET_F_STATUS: the device reports link status.
    pub const STATUS: u64 = 1 << 16;
    /// VIRTIO_NET_F_CTRL_VQ: a control queue.
    pub const CTRL_VQ: u64 = 1 << 17;
    /// VIRTIO_NET_F_CTRL_RX: RX modes and MAC filters through the control queue.
    pub const CTRL_RX: u64 = 1 << 18;
    /// VIRTIO_NET_F_MQ: several queue pairs.
    pub const MQ: u64 = 1 << 22;
    /// VIRTIO_NET_F_CTRL_MAC_ADDR: the MAC can be set through the control queue.
    pub const CTRL_MAC_ADDR: u64 = 1 << 23;
    /// VIRTIO_F_VERSION_1: a modern (1.0) device.
    pub const VERSION_1: u64 = 1 << 32;
    /// VIRTIO_F_ACCESS_PLATFORM: the device goes through the IOMMU.
    pub const ACCESS_PLATFORM: u64 = 1 << 33;
    /// VIRTIO_F_RING_PACKED: packed virtqueues.
    pub const RING_PACKED: u64 = 1 << 34;
    /// VIRTIO_F_IN_ORDER: the device uses buffers in the order they were made available.
    pub const IN_ORDER: u64 = 1 << 35;
    /// VIRTIO_NET_F_RSS: the device spreads flows over RX queues.
    pub const RSS: u64 = 1 << 60;
    /// VIRTIO_NET_F_SPEED_DUPLEX: the device reports speed and duplex.
    pub const SPEED_DUPLEX: u64 = 1 << 63;
}

/// Device status bits.
pub mod status {
    /// The driver has noticed the device.
    pub const ACKNOWLEDGE: u8 = 1;
    /// The driver knows how to drive it.
    pub const DRIVER: u8 = 2;
    /// The driver is ready: the device may start.
    pub const DRIVER_OK: u8 = 4;
    /// The driver accepted the features.
    pub const FEATURES_OK: u8 = 8;
    /// The device has failed and needs a reset.
    pub const NEEDS_RESET: u8 = 0x40;
    /// The driver gave up on the device.
    pub const FAILED: u8 = 0x80;
}

/// What this driver can use; the device's offer is intersected with it.
pub const WANTED_FEATURES: u64 = feature::VERSION_1
    | feature::ACCESS_PLATFORM
    | feature::RING_PACKED
    | feature::IN_ORDER
    | feature::MTU
    | feature::MAC
    | feature::MRG_RXBUF
    | feature::STATUS
    | feature::CTRL_VQ
    | feature::CTRL_RX
    | feature::MQ
    | feature::CTRL_MAC_ADDR
    | feature::RSS
    | feature::SPEED_DUPLEX;

/// Size of `struct virtio_net_hdr_v1` (with `num_buffers`), before every frame.
pub const NET_HDR_LEN: u16 = 12;

// Device configuration (struct virtio_net_config) offsets.
pub(super) const CFG_MAC: usize = 0;
pub(super) const CFG_STATUS: usize = 6;
pub(super) const CFG_MAX_PAIRS: usize = 8;
pub(super) const CFG_MTU: usize = 10;
pub(super) const CFG_SPEED: usize = 12;
pub(super) const CFG_DUPLEX: usize = 16;
pub(super) const CFG_RSS_MAX_KEY_SIZE: usize = 17;
pub(super) const CFG_RSS_MAX_INDIRECTION_LEN: usize = 18;
pub(super) const CFG_SUPPORTED_HASH_TYPES: usize = 20;
pub(super) const NET_S_LINK_UP: u16 = 1;

// Control queue classes and commands (section 5.1.6.5).
pub(super) const CTRL_RX: u8 = 0;
pub(super) const CTRL_RX_PROMISC: u8 = 0;
pub(super) const CTRL_RX_ALLMULTI: u8 = 1;
pub(super) const CTRL_MAC: u8 = 1;
pub(super) const CTRL_MAC_TABLE_SET: u8 = 0;
pub(super) const CTRL_MAC_ADDR_SET: u8 = 1;
pub(super) const CTRL_MQ: u8 = 4;
pub(super) const CTRL_MQ_VQ_PAIRS_SET: u8 = 0;
pub(super) const CTRL_MQ_RSS_CONFIG: u8 = 1;
/// Hash types (virtio 1.2, 5.1.6.4.3): IPv4/IPv6 addresses, with TCP and UDP ports.
pub(super) const RSS_HASH_TYPES: u32 = 0x3f;
/// Entries of the indirection table we ask for (DPDK's default RETA size on virtio).
pub(super) const RSS_RETA_LEN: u16 = 128;
pub(super) const CTRL_OK: u8 = 0;
