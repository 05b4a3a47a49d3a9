//! Constants of the virtio 1.x PCI transport and the network device.
//!
//! Source: OASIS "Virtual I/O Device (VIRTIO) Version 1.2" (virtio-v1.2-cs01),
//! section 2.1 (device status), 2.7 (split virtqueues), 4.1.4 (virtio PCI
//! capabilities and the common configuration layout), 5.1 (network device:
//! feature bits, configuration layout, `virtio_net_hdr`, control virtqueue),
//! 6 (reserved feature bits). The same numbers are in Linux's
//! `include/uapi/linux/virtio_{config,pci,net,ring}.h`.

/// Red Hat's PCI vendor ID, which virtio devices use (4.1.2).
pub const VENDOR_VIRTIO: u16 = 0x1af4;
/// Modern (virtio 1.x) network device: 0x1040 + device type 1 (4.1.2.1).
pub const DEV_ID_NET_MODERN: u16 = 0x1041;
/// Transitional network device (legacy and modern interfaces) (4.1.2.3).
pub const DEV_ID_NET_TRANSITIONAL: u16 = 0x1000;

// ---- device status (2.1) ----
pub const STATUS_ACKNOWLEDGE: u8 = 1;
pub const STATUS_DRIVER: u8 = 2;
pub const STATUS_DRIVER_OK: u8 = 4;
pub const STATUS_FEATURES_OK: u8 = 8;
pub const STATUS_DEVICE_NEEDS_RESET: u8 = 64;
pub const STATUS_FAILED: u8 = 128;

// ---- feature bits: reserved (6) ----
pub const F_RING_INDIRECT_DESC: u32 = 28;
pub const F_RING_EVENT_IDX: u32 = 29;
pub const F_VERSION_1: u32 = 32;
pub const F_ACCESS_PLATFORM: u32 = 33;
pub const F_RING_PACKED: u32 = 34;
pub const F_IN_ORDER: u32 = 35;
pub const F_ORDER_PLATFORM: u32 = 36;
pub const F_SR_IOV: u32 = 37;
pub const F_NOTIFICATION_DATA: u32 = 38;

// ---- feature bits: network device (5.1.3) ----
pub const NET_F_CSUM: u32 = 0;
pub const NET_F_GUEST_CSUM: u32 = 1;
pub const NET_F_MTU: u32 = 3;
pub const NET_F_MAC: u32 = 5;
pub const NET_F_MRG_RXBUF: u32 = 15;
pub const NET_F_STATUS: u32 = 16;
pub const NET_F_CTRL_VQ: u32 = 17;
pub const NET_F_CTRL_RX: u32 = 18;
pub const NET_F_CTRL_VLAN: u32 = 19;
pub const NET_F_MQ: u32 = 22;
pub const NET_F_CTRL_MAC_ADDR: u32 = 23;
pub const NET_F_RSS: u32 = 60;
pub const NET_F_SPEED_DUPLEX: u32 = 63;

/// The bit of feature `f` in a 64-bit feature word.
pub const fn bit(f: u32) -> u64 {
    1 << f
}

// ---- virtio PCI capabilities (4.1.4) ----
/// PCI capability ID of a vendor-specific capability, which virtio uses.
pub const PCI_CAP_ID_VNDR: u8 = 0x09;
pub const PCI_CAP_COMMON_CFG: u8 = 1;
pub const PCI_CAP_NOTIFY_CFG: u8 = 2;
pub const PCI_CAP_ISR_CFG: u8 = 3;
pub const PCI_CAP_DEVICE_CFG: u8 = 4;
pub const PCI_CAP_PCI_CFG: u8 = 5;

/// `struct virtio_pci_common_cfg` field offsets (4.1.4.3). Each field is
/// accessed with its own width, as the spec requires.
pub mod common {
    pub const DEVICE_FEATURE_SELECT: u32 = 0x00; // le32
    pub const DEVICE_FEATURE: u32 = 0x04; // le32
    pub const DRIVER_FEATURE_SELECT: u32 = 0x08; // le32
    pub const DRIVER_FEATURE: u32 = 0x0c; // le32
    pub const MSIX_CONFIG: u32 = 0x10; // le16
    pub const NUM_QUEUES: u32 = 0x12; // le16
    pub const DEVICE_STATUS: u32 = 0x14; // u8
    pub const CONFIG_GENERATION: u32 = 0x15; // u8
    pub const QUEUE_SELECT: u32 = 0x16; // le16
    pub const QUEUE_SIZE: u32 = 0x18; // le16
    pub const QUEUE_MSIX_VECTOR: u32 = 0x1a; // le16
    pub const QUEUE_ENABLE: u32 = 0x1c; // le16
    pub const QUEUE_NOTIFY_OFF: u32 = 0x1e; // le16
    pub const QUEUE_DESC_LO: u32 = 0x20; // le64 as two le32
    pub const QUEUE_DESC_HI: u32 = 0x24;
    pub const QUEUE_DRIVER_LO: u32 = 0x28;
    pub const QUEUE_DRIVER_HI: u32 = 0x2c;
    pub const QUEUE_DEVICE_LO: u32 = 0x30;
    pub const QUEUE_DEVICE_HI: u32 = 0x34;
    /// Bytes the common configuration needs up to `queue_device`.
    pub const LEN: u32 = 0x38;
}

/// "No MSI-X vector" (4.1.4.3: `VIRTIO_MSI_NO_VECTOR`).
pub const MSI_NO_VECTOR: u16 = 0xffff;

/// `struct virtio_net_config` offsets (5.1.4).
pub mod netcfg {
    pub const MAC: u32 = 0; // u8[6]
    pub const STATUS: u32 = 6; // le16
    pub const MAX_VIRTQUEUE_PAIRS: u32 = 8; // le16
    pub const MTU: u32 = 10; // le16
    pub const SPEED: u32 = 12; // le32, Mbit/s, 0xffffffff unknown
    pub const DUPLEX: u32 = 16; // u8: 0 half, 1 full, 0xff unknown
    /// The next three exist with `VIRTIO_NET_F_RSS` (or `_HASH_REPORT`).
    pub const RSS_MAX_KEY_SIZE: u32 = 17; // u8
    pub const RSS_MAX_INDIRECTION_TABLE_LENGTH: u32 = 18; // le16
    pub const SUPPORTED_HASH_TYPES: u32 = 20; // le32
}

/// Hash types of `supported_hash_types` and `virtio_net_rss_config`
/// (5.1.6.5.6.1, "Supported/enabled hash types"). The `_EX` types (IPv6
/// extension headers) are not used.
pub mod hash {
    pub const IPV4: u32 = 1 << 0;
    pub const TCPV4: u32 = 1 << 1;
    pub const UDPV4: u32 = 1 << 2;
    pub const IPV6: u32 = 1 << 3;
    pub const TCPV6: u32 = 1 << 4;
    pub const UDPV6: u32 = 1 << 5;
    /// Every type this driver enables when the device supports it.
    pub const ALL: u32 = IPV4 | TCPV4 | UDPV4 | IPV6 | TCPV6 | UDPV6;
}

/// `virtio_net_config.status` bits (5.1.4).
pub const NET_S_LINK_UP: u16 = 1;

// ---- split virtqueue (2.7) ----
pub const VRING_DESC_F_NEXT: u16 = 1;
pub const VRING_DESC_F_WRITE: u16 = 2;
/// `avail.flags`: the driver wants no used-buffer notifications (2.7.7).
pub const VRING_AVAIL_F_NO_INTERRUPT: u16 = 1;
/// `used.flags`: the device wants no available-buffer notifications (2.7.10).
pub const VRING_USED_F_NO_NOTIFY: u16 = 1;
/// Largest split virtqueue (2.7: Queue Size is at most 32768).
pub const MAX_QUEUE_SIZE: u16 = 32768;

// ---- virtio_net_hdr (5.1.6) ----
/// Size of `struct virtio_net_hdr` with `num_buffers`, which every
/// VERSION_1 device uses (5.1.6: "the header is always 12 bytes" unless
/// hash reporting is negotiated).
pub const NET_HDR_LEN: usize = 12;
pub const NET_HDR_F_NEEDS_CSUM: u8 = 1;
pub const NET_HDR_F_DATA_VALID: u8 = 2;
pub const NET_HDR_GSO_NONE: u8 = 0;

// ---- control virtqueue (5.1.6.5) ----
pub const CTRL_OK: u8 = 0;
pub const CTRL_ERR: u8 = 1;
pub const CTRL_RX: u8 = 0;
pub const CTRL_RX_PROMISC: u8 = 0;
pub const CTRL_RX_ALLMULTI: u8 = 1;
pub const CTRL_MAC: u8 = 1;
pub const CTRL_MAC_TABLE_SET: u8 = 0;
pub const CTRL_MAC_ADDR_SET: u8 = 1;
pub const CTRL_VLAN: u8 = 2;
pub const CTRL_VLAN_ADD: u8 = 0;
pub const CTRL_VLAN_DEL: u8 = 1;
pub const CTRL_MQ: u8 = 4;
pub const CTRL_MQ_VQ_PAIRS_SET: u8 = 0;
/// `VIRTIO_NET_CTRL_MQ_RSS_CONFIG` (5.1.6.5.7.1): with `VIRTIO_NET_F_RSS`
/// it replaces `VQ_PAIRS_SET` (its `max_tx_vq` sets the queue pairs).
pub const CTRL_MQ_RSS_CONFIG: u8 = 1;
/// `VIRTIO_NET_CTRL_MQ_VQ_PAIRS_MIN` / `_MAX` (5.1.6.5.5).
pub const MQ_PAIRS_MIN: u16 = 1;
pub const MQ_PAIRS_MAX: u16 = 0x8000;

/// Feature names for messages and `pollux devices`.
pub fn feature_name(f: u32) -> Option<&'static str> {
    Some(match f {
        NET_F_CSUM => "CSUM",
        NET_F_GUEST_CSUM => "GUEST_CSUM",
        NET_F_MTU => "MTU",
        NET_F_MAC => "MAC",
        NET_F_MRG_RXBUF => "MRG_RXBUF",
        NET_F_STATUS => "STATUS",
        NET_F_CTRL_VQ => "CTRL_VQ",
        NET_F_CTRL_RX => "CTRL_RX",
        NET_F_CTRL_VLAN => "CTRL_VLAN",
        NET_F_MQ => "MQ",
        NET_F_CTRL_MAC_ADDR => "CTRL_MAC_ADDR",
        NET_F_RSS => "RSS",
        NET_F_SPEED_DUPLEX => "SPEED_DUPLEX",
        F_RING_INDIRECT_DESC => "RING_INDIRECT_DESC",
        F_RING_EVENT_IDX => "RING_EVENT_IDX",
        F_VERSION_1 => "VERSION_1",
        F_ACCESS_PLATFORM => "ACCESS_PLATFORM",
        F_RING_PACKED => "RING_PACKED",
        F_IN_ORDER => "IN_ORDER",
        F_ORDER_PLATFORM => "ORDER_PLATFORM",
        F_SR_IOV => "SR_IOV",
        F_NOTIFICATION_DATA => "NOTIFICATION_DATA",
        _ => return None,
    })
}

/// Names of the bits set in `features`, unknown ones as numbers.
pub fn feature_names(features: u64) -> Vec<String> {
    (0..64)
        .filter(|b| features & bit(*b) != 0)
        .map(|b| feature_name(b).map_or_else(|| format!("bit{b}"), str::to_owned))
        .collect()
}
