//! Device models served from Rust over vfio-user: the lab's stand-in for
//! NICs that have no emulator.
//!
//! QEMU 11's `-device vfio-user-pci,socket=...` presents a PCI function
//! whose config space, BARs, DMA and interrupts a process on the host
//! provides. This crate is that process:
//! - [`host`]: the vfio-user server side (rust-vmm's `vfio_user` crate for
//!   the protocol) around a [`model::Model`];
//! - [`pci`]: the function's config space (type 0 header, memory BARs, PCI
//!   Express with FLR, MSI-X; no INTx);
//! - [`iova`]: the client's DMA maps and DMA through them;
//! - [`irq`]: MSI-X vectors as eventfds;
//! - [`model`]: what a model is, its context and the violation log;
//! - [`wire`]: a model's wire (QEMU dgram netdevs: UDP or unix datagrams);
//! - [`dma_test`]: the `dma-test` model that proves the host;
//! - [`ixgbevf`]: the Intel 82599/X540/X550 SR-IOV virtual function;
//! - [`toeplitz`]: the RSS Toeplitz hash;
//! - [`checksum`]: the Internet checksum and CRC-32C the NIC models use.
//!
//! Models are event driven: they act on a register write (and, for NIC
//! models, a frame on their wire) and never poll.

pub mod checksum;
pub mod dma_test;
pub mod host;
pub mod iavf;
pub mod iova;
pub mod irq;
pub mod ixgbevf;
pub mod model;
pub mod pci;
pub mod toeplitz;
pub mod wire;
