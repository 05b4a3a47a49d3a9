//! Safe wrappers over the unsafe device double (`pollux_igbvf::testing`)
//! for the descriptor-path tests and benches, whose rings and pools are
//! all in plain memory made the way these wrappers' SAFETY comments say.

use pollux_igbvf::desc::{AdvRxDesc, AdvTxDesc, DescRing};
use pollux_igbvf::testing::{SentFrame, SimRx, SimTx};
use pollux_vfio::Bar;

/// The simulated device delivers a frame.
#[allow(clippy::too_many_arguments)]
pub fn deliver(
    dev: &mut SimRx,
    bar: &Bar,
    queue: u16,
    ring: &DescRing<AdvRxDesc>,
    frame: &[u8],
    status: u32,
    vlan: u16,
    pkt_info: u16,
) -> bool {
    // SAFETY: every ring in these tests is armed by RxRing over a pool of
    // AnonMemory (IOVA = address), whose buffers the ring owns while the
    // descriptors hold them; nothing else touches them during the call.
    unsafe { dev.deliver(bar, queue, ring, frame, status, vlan, pkt_info, 0) }
}

/// The simulated device transmits what the driver queued.
pub fn process(
    dev: &mut SimTx,
    bar: &Bar,
    queue: u16,
    ring: &DescRing<AdvTxDesc>,
    copy: bool,
    out: &mut Vec<SentFrame>,
) -> usize {
    // SAFETY: the descriptors were written by TxRing for mbufs of AnonMemory
    // pools (IOVA = address) that the ring holds until completion.
    unsafe { dev.process(bar, queue, ring, copy, out) }
}
