//! The control virtqueue (virtio 1.2, 5.1.6.5): receive filters, MAC
//! address and table, VLAN filter, number of queue pairs.
//!
//! A command is `class` u8, `command` u8, command data (device-readable),
//! then one `ack` byte the device writes: two descriptors chained. The
//! encoding ([`Command::encode`]) is I/O-free; [`ControlVq`] does the
//! exchange on the control side only, one command at a time, and every wait
//! for the device has a deadline.

use std::time::{Duration, Instant};

use pollux_core::{DmaRegion, MacAddr};

use crate::spec;
use crate::transport::Notifier;
use crate::vq::{Seg, Vq};

/// One control command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// `VIRTIO_NET_CTRL_RX_PROMISC`.
    Promisc(bool),
    /// `VIRTIO_NET_CTRL_RX_ALLMULTI`.
    AllMulti(bool),
    /// `VIRTIO_NET_CTRL_MAC_ADDR_SET`.
    MacAddrSet(MacAddr),
    /// `VIRTIO_NET_CTRL_MAC_TABLE_SET`: unicast then multicast entries.
    MacTableSet {
        unicast: Vec<MacAddr>,
        multicast: Vec<MacAddr>,
    },
    /// `VIRTIO_NET_CTRL_VLAN_ADD` / `_DEL`.
    Vlan { vid: u16, add: bool },
    /// `VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET`.
    QueuePairs(u16),
    /// `VIRTIO_NET_CTRL_MQ_RSS_CONFIG` (`struct virtio_net_rss_config`,
    /// 5.1.6.5.7.1): the hash types, the indirection table (its length a
    /// power of two; entries are receive queue numbers 0..pairs, as QEMU,
    /// Linux and DPDK read them), the transmit queues in use and the key.
    /// Unclassified frames go to queue 0.
    Rss {
        hash_types: u32,
        table: Vec<u16>,
        max_tx_vq: u16,
        key: Vec<u8>,
    },
}

/// Largest encoded command this driver sends (a MAC table of
/// [`MAX_MAC_ENTRIES`] entries; an RSS configuration with the largest table
/// and key is smaller).
pub const MAX_COMMAND: usize = 2 + 8 + 6 * MAX_MAC_ENTRIES;
/// Indirection table entries sent at most (QEMU's
/// `VIRTIO_NET_RSS_MAX_TABLE_LEN`).
pub const MAX_RSS_TABLE: usize = 128;
/// Key bytes sent at most (QEMU's `VIRTIO_NET_RSS_MAX_KEY_SIZE`, and the
/// Toeplitz key length of most NICs).
pub const MAX_RSS_KEY: usize = 40;
const _: () = assert!(2 + 4 + 2 + 2 + 2 * MAX_RSS_TABLE + 2 + 1 + MAX_RSS_KEY <= MAX_COMMAND);
/// MAC table entries sent at most (QEMU keeps 64, `MAC_TABLE_ENTRIES`;
/// more and it falls back to all-multicast on its own).
pub const MAX_MAC_ENTRIES: usize = 64;

impl Command {
    /// (class, command) codes.
    pub fn codes(&self) -> (u8, u8) {
        match self {
            Command::Promisc(_) => (spec::CTRL_RX, spec::CTRL_RX_PROMISC),
            Command::AllMulti(_) => (spec::CTRL_RX, spec::CTRL_RX_ALLMULTI),
            Command::MacAddrSet(_) => (spec::CTRL_MAC, spec::CTRL_MAC_ADDR_SET),
            Command::MacTableSet { .. } => (spec::CTRL_MAC, spec::CTRL_MAC_TABLE_SET),
            Command::Vlan { add: true, .. } => (spec::CTRL_VLAN, spec::CTRL_VLAN_ADD),
            Command::Vlan { add: false, .. } => (spec::CTRL_VLAN, spec::CTRL_VLAN_DEL),
            Command::QueuePairs(_) => (spec::CTRL_MQ, spec::CTRL_MQ_VQ_PAIRS_SET),
            Command::Rss { .. } => (spec::CTRL_MQ, spec::CTRL_MQ_RSS_CONFIG),
        }
    }

    /// Encodes the device-readable part (class, command, data) into `out`;
    /// returns its length, or `None` when it does not fit or has too many
    /// MAC entries.
    pub fn encode(&self, out: &mut [u8]) -> Option<usize> {
        let (class, cmd) = self.codes();
        let mut w = Writer { out, at: 0 };
        w.put(&[class, cmd])?;
        match self {
            Command::Promisc(on) | Command::AllMulti(on) => w.put(&[*on as u8])?,
            Command::MacAddrSet(m) => w.put(&m.0)?,
            Command::MacTableSet { unicast, multicast } => {
                if unicast.len() + multicast.len() > MAX_MAC_ENTRIES {
                    return None;
                }
                for table in [unicast, multicast] {
                    w.put(&(table.len() as u32).to_le_bytes())?;
                    for m in table {
                        w.put(&m.0)?;
                    }
                }
            }
            Command::Vlan { vid, .. } => w.put(&(vid & 0x0fff).to_le_bytes())?,
            Command::QueuePairs(n) => w.put(&n.to_le_bytes())?,
            Command::Rss {
                hash_types,
                table,
                max_tx_vq,
                key,
            } => {
                if table.is_empty()
                    || !table.len().is_power_of_two()
                    || table.len() > MAX_RSS_TABLE
                    || key.len() > MAX_RSS_KEY
                {
                    return None;
                }
                w.put(&hash_types.to_le_bytes())?;
                w.put(&((table.len() - 1) as u16).to_le_bytes())?; // indirection_table_mask
                w.put(&0u16.to_le_bytes())?; // unclassified_queue
                for q in table {
                    w.put(&q.to_le_bytes())?;
                }
                w.put(&max_tx_vq.to_le_bytes())?;
                w.put(&[key.len() as u8])?;
                w.put(key)?;
            }
        }
        Some(w.at)
    }

    /// What the command does, for errors.
    pub fn name(&self) -> &'static str {
        match self {
            Command::Promisc(_) => "RX_PROMISC",
            Command::AllMulti(_) => "RX_ALLMULTI",
            Command::MacAddrSet(_) => "MAC_ADDR_SET",
            Command::MacTableSet { .. } => "MAC_TABLE_SET",
            Command::Vlan { add: true, .. } => "VLAN_ADD",
            Command::Vlan { add: false, .. } => "VLAN_DEL",
            Command::QueuePairs(_) => "MQ_VQ_PAIRS_SET",
            Command::Rss { .. } => "MQ_RSS_CONFIG",
        }
    }
}

struct Writer<'a> {
    out: &'a mut [u8],
    at: usize,
}

impl Writer<'_> {
    fn put(&mut self, b: &[u8]) -> Option<()> {
        self.out
            .get_mut(self.at..self.at + b.len())?
            .copy_from_slice(b);
        self.at += b.len();
        Some(())
    }
}

/// Why a control command failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CtrlError {
    #[error("control command {0} is too large to send")]
    TooLarge(&'static str),
    #[error("the device answered control command {command} with {ack:#x} (not VIRTIO_NET_OK)")]
    Refused { command: &'static str, ack: u8 },
    #[error("the device did not complete control command {command} within {ms} ms")]
    Timeout { command: &'static str, ms: u64 },
    #[error(
        "control command {0} not sent: an earlier command timed out and the control queue \
         waits for a device reset"
    )]
    Stale(&'static str),
    #[error("the device completed control command {command} with a bad used entry (id {id})")]
    BadCompletion { command: &'static str, id: u32 },
}

/// Offset of the ack byte in the command buffer: its own cache line, after
/// the largest command.
const ACK_AT: usize = MAX_COMMAND.next_multiple_of(64);
/// Bytes of DMA memory a control queue's command buffer needs.
pub const BUF_BYTES: usize = ACK_AT + 64;

/// The control virtqueue and its command buffer.
pub struct ControlVq {
    vq: Vq,
    buf: DmaRegion,
    notifier: Notifier,
    timeout: Duration,
    /// A command timed out: out of step until the next reset.
    broken: bool,
}

impl ControlVq {
    /// A control queue over `vq` with `buf` (at least [`BUF_BYTES`]) for
    /// the commands; `None` when the buffer is too small or the queue
    /// cannot chain two descriptors.
    pub fn new(vq: Vq, buf: DmaRegion, notifier: Notifier, timeout: Duration) -> Option<ControlVq> {
        if buf.len() < BUF_BYTES || vq.size() < 2 {
            return None;
        }
        Some(ControlVq {
            vq,
            buf,
            notifier,
            timeout,
            broken: false,
        })
    }

    /// The virtqueue.
    pub fn vq(&self) -> &Vq {
        &self.vq
    }

    /// The queue's index.
    pub fn index(&self) -> u16 {
        self.notifier.queue()
    }

    /// Starts over for a device that has just been reset.
    pub fn reset(&mut self) {
        self.vq.reset();
        self.broken = false;
    }

    /// Sends `cmd` and waits for the device's ack, at most the timeout.
    /// After a timeout the queue is out of step with the device (the
    /// command may still complete) and refuses commands until a reset.
    pub fn send(&mut self, cmd: &Command) -> Result<(), CtrlError> {
        if self.broken {
            return Err(CtrlError::Stale(cmd.name()));
        }
        let mut bytes = [0u8; MAX_COMMAND];
        let n = cmd
            .encode(&mut bytes)
            .ok_or(CtrlError::TooLarge(cmd.name()))?;
        let p = self.buf.as_ptr();
        // SAFETY: the buffer is ours and at least BUF_BYTES long (checked in
        // `new`), n <= MAX_COMMAND <= ACK_AT; the device reads it only
        // between the notify below and its used entry, which is awaited
        // before the next command writes it again. Volatile: the device
        // reads it.
        unsafe {
            for (i, b) in bytes[..n].iter().enumerate() {
                p.add(i).write_volatile(*b);
            }
            // An ack the device never writes reads as an error.
            p.add(ACK_AT).write_volatile(0xff);
        }
        let iova = self.buf.iova().0;
        self.vq.post(
            0,
            &[
                Seg {
                    addr: iova,
                    len: n as u32,
                    write: false,
                },
                Seg {
                    addr: iova + ACK_AT as u64,
                    len: 1,
                    write: true,
                },
            ],
        );
        // One command at a time, so the device is always told: whatever
        // publish says about suppression, a notification is harmless here.
        let _ = self.vq.publish();
        self.notifier.notify();
        let deadline = Instant::now() + self.timeout;
        let mut spins = 0u32;
        let id = loop {
            match self.vq.pop_used() {
                Ok(Some((id, _))) => break id,
                Ok(None) => {}
                Err(_) => {
                    self.broken = true;
                    return Err(CtrlError::BadCompletion {
                        command: cmd.name(),
                        id: u32::MAX,
                    });
                }
            }
            if Instant::now() >= deadline {
                self.broken = true;
                return Err(CtrlError::Timeout {
                    command: cmd.name(),
                    ms: self.timeout.as_millis() as u64,
                });
            }
            spins += 1;
            if spins > 1000 {
                std::thread::sleep(Duration::from_micros(50));
            } else {
                std::hint::spin_loop();
            }
        };
        if id != 0 {
            return Err(CtrlError::BadCompletion {
                command: cmd.name(),
                id,
            });
        }
        // SAFETY: in the buffer (ACK_AT < BUF_BYTES), which the device has
        // finished with (its used entry is in).
        let ack = unsafe { p.add(ACK_AT).read_volatile() };
        if ack != spec::CTRL_OK {
            return Err(CtrlError::Refused {
                command: cmd.name(),
                ack,
            });
        }
        Ok(())
    }
}

impl std::fmt::Debug for ControlVq {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlVq").field("vq", &self.vq).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(c: &Command) -> Vec<u8> {
        let mut b = [0u8; MAX_COMMAND];
        let n = c.encode(&mut b).unwrap();
        b[..n].to_vec()
    }

    #[test]
    fn commands_encode_as_the_spec_lays_them_out() {
        assert_eq!(enc(&Command::Promisc(true)), [0, 0, 1]);
        assert_eq!(enc(&Command::AllMulti(false)), [0, 1, 0]);
        let m = MacAddr([2, 0, 0, 0, 0, 1]);
        assert_eq!(enc(&Command::MacAddrSet(m)), [1, 1, 2, 0, 0, 0, 0, 1]);
        assert_eq!(
            enc(&Command::MacTableSet {
                unicast: vec![],
                multicast: vec![MacAddr([1, 0, 0x5e, 0, 0, 1])]
            }),
            [1, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0x5e, 0, 0, 1]
        );
        assert_eq!(
            enc(&Command::Vlan {
                vid: 0x1064,
                add: true
            }),
            [2, 0, 0x64, 0]
        );
        assert_eq!(enc(&Command::QueuePairs(2)), [4, 0, 2, 0]);
        assert_eq!(
            enc(&Command::Rss {
                hash_types: 0x3f,
                table: vec![0, 1, 0, 1],
                max_tx_vq: 2,
                key: vec![0xaa, 0xbb],
            }),
            [
                4, 1, // class MQ, RSS_CONFIG
                0x3f, 0, 0, 0, // hash_types
                3, 0, // indirection_table_mask
                0, 0, // unclassified_queue
                0, 0, 1, 0, 0, 0, 1, 0, // indirection_table
                2, 0, // max_tx_vq
                2, 0xaa, 0xbb // hash_key_length, hash_key_data
            ]
        );
    }

    #[test]
    fn rss_tables_must_be_a_power_of_two_and_fit() {
        let rss = |n: usize, k: usize| Command::Rss {
            hash_types: 1,
            table: vec![0; n],
            max_tx_vq: 1,
            key: vec![0; k],
        };
        let mut b = [0u8; MAX_COMMAND];
        for bad in [
            rss(0, 40),
            rss(3, 40),
            rss(MAX_RSS_TABLE * 2, 40),
            rss(4, 41),
        ] {
            assert_eq!(bad.encode(&mut b), None, "{bad:?}");
        }
        assert!(rss(MAX_RSS_TABLE, MAX_RSS_KEY).encode(&mut b).is_some());
    }

    #[test]
    fn oversized_tables_and_small_buffers_are_refused() {
        let many = vec![MacAddr([1, 0, 0x5e, 0, 0, 1]); MAX_MAC_ENTRIES + 1];
        let c = Command::MacTableSet {
            unicast: vec![],
            multicast: many,
        };
        let mut b = [0u8; MAX_COMMAND + 64];
        assert_eq!(c.encode(&mut b), None);
        assert_eq!(Command::Promisc(true).encode(&mut [0u8; 2]), None);
    }
}
