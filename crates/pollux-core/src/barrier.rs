//! Memory barriers between a driver and a device that reads and writes the
//! same memory (descriptor rings, buffers) and takes doorbells over MMIO.
//!
//! The three are Linux's `dma_wmb()`, `dma_rmb()` and `mb()` as drivers use
//! them around rings (Documentation/memory-barriers.txt, "DMA/MMIO
//! barriers"); DPDK's `rte_io_wmb()`/`rte_io_rmb()`/`rte_mb()` play the same
//! parts. Per target:
//!
//! - x86-64: stores are not reordered with older stores (to write-back
//!   memory or to uncached MMIO) and loads not with older loads, so
//!   [`dma_wmb`] and [`dma_rmb`] only have to stop the compiler; a store
//!   followed by a load of another location can be reordered, which
//!   [`dma_mb`] forbids with an `mfence` (the `SeqCst` fence).
//! - aarch64: a CPU fence (`dmb ish*`, what `fence()` compiles to) orders
//!   only within the inner shareable domain, which a device is not in; the
//!   device needs the outer shareable forms (`dmb oshst`, `dmb oshld`,
//!   `dmb osh`), as Linux's `dma_wmb()`, `dma_rmb()` and `__iomb()` use.
//! - Other targets: `SeqCst` fences, not verified against a device.

/// Orders every store before it (descriptors, buffers, ring indices in
/// memory) ahead of every store after it (an index the device reads, an
/// MMIO doorbell), as the device sees them: a descriptor is complete
/// before the device can learn that it may fetch it.
///
/// On x86-64 the `SeqCst` fence is more than needed (an `mfence`, a few
/// cycles per burst); it is what keeps the compiler from moving the stores.
#[inline(always)]
pub fn dma_wmb() {
    #[cfg(target_arch = "aarch64")]
    // SAFETY: a barrier instruction; it touches no memory or register the
    // compiler tracks, and `nostack` holds.
    unsafe {
        std::arch::asm!("dmb oshst", options(nostack, preserves_flags));
    }
    #[cfg(not(target_arch = "aarch64"))]
    std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
}

/// Orders the load of a completion mark the device wrote last (a done bit,
/// a used index) ahead of the loads of what the device wrote before it (the
/// rest of the descriptor, the buffer).
#[inline(always)]
pub fn dma_rmb() {
    #[cfg(target_arch = "aarch64")]
    // SAFETY: a barrier instruction, as in `dma_wmb`.
    unsafe {
        std::arch::asm!("dmb oshld", options(nostack, preserves_flags));
    }
    #[cfg(not(target_arch = "aarch64"))]
    std::sync::atomic::fence(std::sync::atomic::Ordering::Acquire);
}

/// Orders every store before it ahead of every load after it: a driver
/// that published a ring index and then reads whether the device wants a
/// notification (virtio's `used.flags` or `avail_event`) must not read
/// the device's answer from before its own store was visible, or both
/// sides wait for each other.
#[inline(always)]
pub fn dma_mb() {
    #[cfg(target_arch = "aarch64")]
    // SAFETY: a barrier instruction, as in `dma_wmb`.
    unsafe {
        std::arch::asm!("dmb osh", options(nostack, preserves_flags));
    }
    #[cfg(not(target_arch = "aarch64"))]
    std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
}
