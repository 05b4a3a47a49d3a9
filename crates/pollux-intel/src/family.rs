//! What differs between the Intel VF families on the descriptor path.

use pollux_core::TxOffload;

use crate::desc::AdvTxDesc;

/// One family of Intel VFs, as the shared rings and queue set see it: its
/// register offsets, the descriptor bits it does not share with the other
/// families, and its transmit context descriptor. Implemented by a
/// zero-sized type in each PMD; every method is a constant or a small
/// `#[inline(always)]` function, so after monomorphisation the burst paths
/// are what a copy written for the family would be.
pub trait Family: Send + Sync + 'static {
    /// Names of the queue handles, for `Debug` (`IgbVfRx`, `IxgbeVfRx`, ..).
    const RX_HANDLE: &'static str;
    const TX_HANDLE: &'static str;

    /// Receive errors that drop the frame (CRC, symbol, length, ..).
    const RXD_ERR_FRAME: u32;
    /// Receive error: bad IPv4 header checksum.
    const RXD_ERR_IPE: u32;
    /// Receive error: bad TCP/UDP checksum.
    const RXD_ERR_TCPE: u32;
    /// Status bits that say the device checked the L4 checksum.
    const RXD_L4_CHECKED: u32;
    /// RSS type field of pkt_info: the hash goes into the mbuf when these
    /// bits are not 0. 0: the family's path reads no hash.
    const RSSTYPE_MASK: u16;
    /// Whether the VLAN tag of a loopback frame may be big endian (I350);
    /// the ring's `set_vlan_swap_on_loopback` decides at run time.
    const LB_VLAN_SWAP: bool;
    /// olinfo_status CC (check context), set on every transmit data
    /// descriptor of a family that has it (ixgbevf: the device then applies
    /// context 0 to every packet); 0 for a family whose data descriptors
    /// use the context only when they ask for an offload (igbvf).
    const TXD_CC: u32;

    /// Receive descriptor tail register of queue `q` (RDT, VFRDT).
    fn rdt(q: u16) -> u32;
    /// Transmit descriptor tail register of queue `q` (TDT, VFTDT).
    fn tdt(q: u16) -> u32;

    /// The family's transmit context descriptor.
    type TxCtx: Copy + PartialEq + std::fmt::Debug + Send + Sync;
    /// The context descriptor a packet needs, if any. A data descriptor is
    /// preceded by a context descriptor when this differs from the last one
    /// written.
    fn context_for(off: &TxOffload) -> Option<Self::TxCtx>;
    /// The context descriptor as a ring slot (same 16 bytes).
    fn ctx_desc(c: &Self::TxCtx) -> AdvTxDesc;
}
