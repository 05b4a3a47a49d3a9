//! Pollux bonding: one [`Port`](pollux_core::Port) over several member
//! ports (VF drivers, software ports, anything that implements the trait),
//! with the modes and options of Linux bonding
//! (Documentation/networking/bonding.rst): `balance-rr`, `active-backup`,
//! `balance-xor`, `broadcast` and `802.3ad` with LACP.
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
//! - [`bond`]: the protocol core of a bond: link monitoring with
//!   `miimon`/`updelay`/`downdelay`, active member selection, the sets of
//!   members that send and receive, MAC policy, `min_links`. Also no I/O:
//!   it takes `now` and link samples and returns [`bond::Action`]s.
//! - [`BondPort`]: the I/O shell. It owns the member ports, reads a
//!   [`Clock`], and implements `Port`.
//!
//! # Entry points for applications
//!
//! ```no_run
//! # use pollux_bond::{BondConfig, BondPort};
//! # fn members() -> Vec<(String, Box<dyn pollux_core::Port>)> { unimplemented!() }
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
//! // ... configure and start it like any Port, then:
//! println!("{}", bond.status()); // /proc/net/bonding/bond0 layout
//! let json = serde_json::to_string(&bond.status()).unwrap();
//! # Ok::<(), pollux_bond::BondError>(())
//! ```
//!
//! - [`BondConfig::from_args`] takes the device arguments. Keys: `mode`,
//!   `member` (repeated; `slave` too), `xmit_hash_policy` (`xmit_policy`),
//!   `lacp_rate`, `lacp_active`, `miimon`, `updelay`, `downdelay`,
//!   `primary`, `primary_reselect`, `fail_over_mac`, `ad_select`,
//!   `min_links`, `mac`, `ad_actor_sys_prio`, `ad_actor_system`,
//!   `ad_user_port_key`, `announce_ip` (repeated), `num_grat_arp`,
//!   `peer_notif_delay`. Values are Linux's names or numbers; times are
//!   milliseconds. Unknown keys are errors.
//! - [`BondPort::new`] takes the bond's name, the configuration and the
//!   member ports as `(name, Box<dyn Port>)`; the names must be those of
//!   the `member=` arguments.
//! - [`BondPort::status`] returns a [`BondStatus`]: `Display` prints the
//!   layout of /proc/net/bonding/bondN, `serde::Serialize` gives JSON.
//!
//! # Time
//!
//! The bond needs periodic work (link polling every `miimon`, LACP
//! transmissions every second and its timeouts). The core never reads a
//! clock; [`BondPort`] reads its [`Clock`] at the start of every
//! `rx_burst`, `tx_burst` and `link` call (one vDSO `clock_gettime`, then
//! a comparison with the next deadline) and does the work that is due. A
//! forwarding loop that calls `rx_burst` or `tx_burst` on the bond runs
//! LACP correctly with nothing else to do. A program that stops calling
//! them for more than about 100 ms must call [`BondPort::poll`] instead,
//! or link failures are noticed late and, with `lacp_rate=fast`, partners
//! time the bond out after 3 s.
//!
//! # Differences from Linux, on purpose
//!
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

pub mod bond;
pub mod config;
mod error;
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
