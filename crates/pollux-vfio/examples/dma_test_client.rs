//! Drives pollux-model's `dma-test` function from a guest through VFIO: maps
//! a buffer for the device, rings the doorbell, waits for the MSI-X vector
//! and checks the pattern the model wrote, byte for byte.
//!
//! `dma_test_client <PCI address> [LEN] [SEED]` (the function bound to
//! vfio-pci). Prints one line per step; exits non-zero with the reason on
//! any failure.

use std::process::ExitCode;
use std::time::Duration;

use pollux_core::HugePages;
use pollux_model::dma_test::{self, pattern, reg};
use pollux_vfio::{Container, Device, OpenOpts};

fn run() -> Result<(), String> {
    let mut args = std::env::args().skip(1);
    let addr = args
        .next()
        .ok_or("usage: dma_test_client <PCI address> [LEN] [SEED]")?;
    let len: usize = args
        .next()
        .map_or(Ok(5000), |s| s.parse())
        .map_err(|e| format!("LEN: {e}"))?;
    let seed: u32 = args
        .next()
        .map_or(Ok(0x42), |s| s.parse())
        .map_err(|e| format!("SEED: {e}"))?;
    let addr = addr.parse().map_err(|e| format!("{addr}: {e}"))?;
    let container = Container::new().map_err(|e| e.to_string())?;
    let dev = Device::open(&container, addr, &OpenOpts::default()).map_err(|e| e.to_string())?;
    if (dev.vendor_id(), dev.device_id()) != dma_test::ID {
        return Err(format!(
            "{addr} is {:04x}:{:04x}, not dma-test",
            dev.vendor_id(),
            dev.device_id()
        ));
    }
    let bar = dev.map_bar(0).map_err(|e| e.to_string())?;
    let magic = bar.read32(reg::MAGIC as u32);
    if magic != dma_test::MAGIC {
        return Err(format!("MAGIC reads {magic:#x}"));
    }
    println!("dma-test {addr}: MAGIC ok");
    dev.set_bus_master(true).map_err(|e| e.to_string())?;
    let irqs = dev.enable_msix(1).map_err(|e| e.to_string())?;
    let mem = container.dma_memory(HugePages::Never);
    let buf = mem.allocate_region(len).map_err(|e| e.to_string())?;
    let iova = buf.iova().0;
    bar.write32(reg::ADDR_LO as u32, iova as u32);
    bar.write32(reg::ADDR_HI as u32, (iova >> 32) as u32);
    bar.write32(reg::LEN as u32, len as u32);
    bar.write32(reg::SEED as u32, seed);
    bar.write32(reg::VECTOR as u32, 0);
    bar.write32(reg::DOORBELL as u32, 1);
    let fired = irqs[0]
        .wait(Duration::from_secs(10))
        .map_err(|e| format!("waiting for MSI-X: {e}"))?;
    let status = bar.read32(reg::STATUS as u32);
    if status != dma_test::STATUS_DONE {
        return Err(format!(
            "STATUS {status:#x} after the doorbell (the model's violation log says why)"
        ));
    }
    if fired == 0 {
        return Err("no MSI-X interrupt within 10 s".into());
    }
    let mut got = vec![0u8; len];
    // SAFETY: `buf` is `len` bytes of memory this process owns; the device
    // has finished writing (STATUS done and its interrupt arrived), and the
    // copy goes through a raw pointer, no reference to DMA memory.
    unsafe { std::ptr::copy_nonoverlapping(buf.as_ptr(), got.as_mut_ptr(), len) };
    if let Some(i) = (0..len).find(|&i| got[i] != pattern(seed, i)) {
        return Err(format!(
            "byte {i} of {len} is {:#x}, the pattern says {:#x}",
            got[i],
            pattern(seed, i)
        ));
    }
    println!(
        "dma-test {addr}: {len} bytes at IOVA {iova:#x} match the pattern; MSI-X vector 0 fired {fired} time(s); DONE={}",
        bar.read32(reg::DONE as u32)
    );
    Ok(())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("dma_test_client: {e}");
            ExitCode::FAILURE
        }
    }
}
