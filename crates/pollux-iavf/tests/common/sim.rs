//! Safe wrappers over the unsafe device double (`pollux_iavf::testing`)
//! for the descriptor-path tests and benches, whose rings and pools are all
//! in plain memory made the way these wrappers' SAFETY comments say.

use pollux_iavf::desc::{DescRing, RxDesc, TxDesc};
use pollux_iavf::testing::{SentFrame, SimRx, SimTx};
use pollux_vfio::Bar;

/// The simulated device delivers a frame.
#[allow(clippy::too_many_arguments, dead_code)]
pub fn deliver(
    dev: &mut SimRx,
    bar: &Bar,
    queue: u16,
    ring: &DescRing<RxDesc>,
    frame: &[u8],
    status: u64,
    ptype: u8,
    l2tag1: u16,
    rss: u32,
) -> bool {
    // SAFETY: every ring in these tests is armed by RxRing over a pool of
    // AnonMemory (IOVA = address) with buffers of at least 2 KiB, which
    // the ring owns while the descriptors hold them; nothing else touches
    // them during the call, and frames are at most 2 KiB.
    unsafe { dev.deliver(bar, queue, ring, frame, status, ptype, l2tag1, rss) }
}

/// The simulated device transmits what the driver queued.
#[allow(dead_code)]
pub fn process(
    dev: &mut SimTx,
    bar: &Bar,
    queue: u16,
    ring: &DescRing<TxDesc>,
    copy: bool,
    out: &mut Vec<SentFrame>,
) -> usize {
    // SAFETY: the descriptors were written by TxRing for mbufs of AnonMemory
    // pools (IOVA = address) that the ring holds until completion.
    unsafe { dev.process(bar, queue, ring, copy, out) }
}
