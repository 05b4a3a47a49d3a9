//! Pollux bonding: one [`Port`](pollux_core::Port) over several member
//! ports (VF drivers, software ports, anything that implements the trait),
//! with the modes and options of Linux bonding
//! (Documentation/networking/bonding.rst): all seven, `balance-rr`,
//! `active-backup`, `balance-xor`, `broadcast`, `802.3ad` with LACP,
//! `balance-tlb` and `balance-alb`.
//!
//! # Layers
//!
//! - [`wire`]: LACPDU and marker PDU as checked zero-copy views, and the
//!   failover announcement frames. Untrusted bytes go through
//!   `new_checked` once; no accessor panics afterwards.
//! - [`hash`]: Linux's `xmit_hash_policy` functions, bit for bit, so a
//!   flow lands on the member index Linux would pick.
//! - [`lacp`]: the IEEE 802.1AX machines (Receive, Periodic, Selection,
//!   Mux, Transmit, Churn) with no I/O and no clock.
//! - [`alb`]: the transmit flow table of balance-tlb and the receive
//!   client table of balance-alb (Linux's bond_alb.c), no I/O, no clock.
//! - [`bond`]: the protocol core of a bond: link monitoring with
//!   `miimon`/`updelay`/`downdelay`, active member selection, the sets of
//!   members that send and receive, MAC policy, `min_links`. Also no I/O:
//!   it takes `now` and link samples and returns [`bond::Action`]s.
//! - [`BondPort`]: the I/O shell, split as every [`Port`](pollux_core::Port)
//!   is into a control side and per-queue handles (next section).
//!
//! # Control side and queue handles
//!
//! A bond is used like any port: configure, start,
//! [`take_queues`](pollux_core::Port::take_queues), bursts on the handles
//! from the lcores that own them, [`service`](pollux_core::Port::service)
//! from the thread that owns the [`BondPort`], stop, drop the handles. It
//! follows DPDK's bonding PMD:
//!
//! - **Control side.** [`BondPort`] owns the members' control sides, the
//!   protocol core, the clock and the receive filters. `status`, `stats`,
//!   `xstats`, `link`, MAC and filter changes and `service` work while the
//!   queues run.
//! - **Queues.** Bond receive queue `q` owns receive queue `q` of every
//!   member; bond transmit queue `q` owns transmit queue `q` of every
//!   member. The handles are `Send` and take no lock: what they need of the
//!   core (which members transmit, which members' frames go up) the
//!   control side publishes after every change as two 32-bit masks in one
//!   atomic word (plain loads on the burst path, no read-modify-write). A
//!   transmit handle loads it once per burst and rebuilds its own member
//!   list only when it changed; a receive handle loads it after each
//!   member's frames are in hand, so a frame is judged by a view no older
//!   than its arrival (as Linux judges it when processing it), and a frame
//!   sent after its member was enabled is never dropped as early. The
//!   handles see a change at their next burst. Transmit spreads packets exactly
//!   as the core's [`Bond::tx_index`] would (balance-xor and 802.3ad put a
//!   flow on the member Linux picks); balance-rr keeps one rotation per
//!   transmit queue. Hence at most [`config::MAX_MEMBERS`] (32) members.
//! - **Slow protocols.** In 802.3ad mode a receive handle takes LACPDUs and
//!   marker PDUs out of the stream (the order of the rest is kept) and
//!   passes them to the control side through a single-producer,
//!   single-consumer ring, one per receive queue; `service` feeds them to
//!   LACP. A ring that is full (no `service` for a long time, or a flood)
//!   drops and counts ([`ShellCounters::slow_rx_dropped`]).
//! - **balance-tlb and balance-alb.** The control side also publishes the
//!   active member, the 256-bucket flow table (a byte per bucket, eight to
//!   an atomic word) and the members' MACs, with plain stores of changed
//!   words. A transmit handle reads the active member once per burst and
//!   the flow table with one relaxed load per IP frame, counts each
//!   frame's bytes in its own per-bucket counters (one writer, a load and
//!   a store, never a read-modify-write), and writes the member's MAC as
//!   source when a frame leaves on a member other than the active one.
//!   `service` sums those counters every 10 s to rebalance. ARP requests
//!   for the bond's `ip=` addresses are taken out of the receive stream
//!   (balance-alb only) and go up through the same single-producer ring as
//!   slow-protocol frames; the control side answers them from its client
//!   table with the chosen member's MAC, and sends the ARP updates and
//!   learning packets. So nothing is answered in the data path, and the
//!   answer to a request waits for the next `service` (10 to 100 ms).
//!   Requests are not delivered to the application; other ARP frames are.
//! - **Control transmissions.** When every member has a transmit queue
//!   to spare, each is configured with one more than the bond has and the
//!   control side keeps that last queue of each member: LACPDUs, marker
//!   responses and failover announcements go out from `service`, on the
//!   control thread, whether or not the application is sending (DPDK's
//!   "dedicated queues"). Otherwise (ring, pcap and af_packet members with
//!   one queue pair) the control side queues them per member and the
//!   bond's transmit queue 0 sends them at its next call, an empty burst
//!   included, as DPDK's bonding does without dedicated queues; that queue
//!   must then be called at least every 100 ms, and `configure` logs so.
//! - **Stop.** `stop` stops the members and the handles (they return 0
//!   from then on). The bond starts again once the handles of the last
//!   start are dropped; they hold the members' queues.
//!
//! # Entry points for applications
//!
//! ```no_run
//! # use pollux_bond::{BondConfig, BondPort};
//! # use pollux_core::{Burst, Port, PortConf, Mempool};
//! # fn members() -> Vec<(String, Box<dyn pollux_core::Port>)> { unimplemented!() }
//! # fn pool() -> Mempool { unimplemented!() }
//! // `--vdev 'bond0,mode=802.3ad,member=vf0,member=vf1,lacp_rate=fast'`:
//! // everything after the name, as key/value pairs.
//! let args: Vec<(String, String)> = vec![
//!     ("mode".into(), "802.3ad".into()),
//!     ("member".into(), "vf0".into()),
//!     ("member".into(), "vf1".into()),
//!     ("lacp_rate".into(), "fast".into()),
//! ];
//! let config = BondConfig::from_args(&args)?;
//! // The ports named by `member=`, built by the caller, in any order.
//! let mut bond = BondPort::new("bond0", config, members())?;
//! bond.configure(&PortConf::new(pool()))?; // members get 2 tx queues each
//! bond.start()?;
//! let mut queues = bond.take_queues()?;
//! let (mut rx, mut tx) = (queues.rx.remove(0), queues.tx.remove(0));
//! // An lcore: `rx.rx_burst(&mut burst)`, `tx.tx_burst(&mut burst)`.
//! // Meanwhile, on the thread that owns `bond`, every 10 to 100 ms:
//! bond.service();
//! println!("{}", bond.status()); // /proc/net/bonding/bond0 layout
//! let json = serde_json::to_string(&bond.status()).unwrap();
//! # let mut burst = Burst::new(32); rx.rx_burst(&mut burst); tx.tx_burst(&mut burst);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! - [`BondConfig::from_args`] takes the device arguments. Keys: `mode`,
//!   `member` (repeated; `slave` too), `xmit_hash_policy` (`xmit_policy`),
//!   `lacp_rate`, `lacp_active`, `miimon`, `updelay`, `downdelay`,
//!   `primary`, `primary_reselect`, `fail_over_mac`, `ad_select`,
//!   `min_links`, `mac`, `ad_actor_sys_prio`, `ad_actor_system`,
//!   `ad_user_port_key`, `announce_ip` (repeated), `num_grat_arp`,
//!   `peer_notif_delay`, `tlb_dynamic_lb`, `lp_interval` (seconds, as on
//!   Linux), `ip` (repeated; the bond's own IPv4 addresses, required by
//!   balance-alb). Values are Linux's names or numbers; other times are
//!   milliseconds. Unknown keys are errors.
//! - [`BondPort::new`] takes the bond's name, the configuration and the
//!   member ports as `(name, Box<dyn Port>)`; the names must be those of
//!   the `member=` arguments.
//! - [`BondPort::status`] returns a [`BondStatus`]: `Display` prints the
//!   layout of /proc/net/bonding/bondN, `serde::Serialize` gives JSON.
//!
//! # Time
//!
//! The bond needs periodic work: link polling every `miimon`, LACP
//! transmissions every second (fast) or 30 seconds (slow) and its
//! timeouts, failover announcements. The core never reads a clock; the
//! queue handles never do either. [`Port::service`](pollux_core::Port::service)
//! reads the bond's [`Clock`] and does what is due; `link` services too,
//! and [`BondPort::poll`] is another name for `service`. Call it every 10
//! to 100 ms: a link failure is noticed at the first call after `miimon`,
//! received LACPDUs are processed at the next call, and with
//! `lacp_rate=fast` a partner times the bond out after 3 s without one.
//! The application must also keep polling the bond's receive queues in
//! 802.3ad mode, or no LACPDU reaches the control side.
//!
//! # Differences from Linux, on purpose
//!
//! - balance-tlb/alb assign every flow bucket at each rebalance, heaviest
//!   first, on the control side; Linux assigns a bucket at its first frame
//!   after a rebalance (the handles may not write shared state). The first
//!   round of ARP updates after a member fails goes out at once, not at
//!   the next 100 ms tick. Learning packets are untagged only (no VLAN
//!   devices above a Pollux bond).
//! - `min_links` applies to every mode, not only 802.3ad: below it the
//!   bond reports link down and sends nothing.
//! - With `miimon=0` the links are sampled once at start and never again,
//!   which is what Linux's "no link monitoring" amounts to.
//! - Ports of an aggregator other than the active one are STANDBY in the
//!   802.1AX sense, so they tell the partner they are out of sync and
//!   the partner does not send on them; Linux leaves them ATTACHED.
//! - A transmit burst that finds no usable member returns 0 and leaves
//!   the packets with the caller (the `Port` contract); Linux drops them.

#![deny(unsafe_code)]

pub mod alb;
pub mod bond;
pub mod config;
mod error;
/// Entry points for the fuzz targets and the corpus replay: a test double,
/// behind the `testing` feature.
#[cfg(any(test, feature = "testing"))]
#[doc(hidden)]
pub mod fuzz_harness;
pub mod hash;
pub mod lacp;
mod port;
pub mod status;
pub mod wire;

pub use bond::{Action, Bond, LinkState, MemberSpec};
pub use config::{
    AdSelect, BondConfig, FailOverMac, LacpRate, Mode, PrimaryReselect, XmitHashPolicy,
};
pub use error::BondError;
pub use port::{BondPort, Clock, ManualClock, MonotonicClock, ShellCounters};
pub use status::BondStatus;
