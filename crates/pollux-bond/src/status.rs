//! [`BondStatus`]: what `pollux bond show` prints, in the shape of Linux's
//! /proc/net/bonding/bondN (drivers/net/bonding/bond_procfs.c) so that the
//! same eyes, and the same parsers, read both; and as JSON via serde.

use std::fmt;

use pollux_core::{Duplex, MacAddr};
use serde::{Serialize, Serializer};

use crate::alb::Client;
use crate::bond::{BondCounters, LinkState};
use crate::config::{AdSelect, FailOverMac, LacpRate, Mode, PrimaryReselect, XmitHashPolicy};
use crate::lacp::{ChurnState, LacpStats, MuxState, PeriodicState, RxState, Selected};
use crate::wire::LacpInfo;

fn ser_mac<S: Serializer>(m: &MacAddr, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&m.to_string())
}

fn ser_duplex<S: Serializer>(d: &Duplex, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(duplex_name(*d))
}

fn duplex_name(d: Duplex) -> &'static str {
    match d {
        Duplex::Full => "full",
        Duplex::Half => "half",
        Duplex::Unknown => "Unknown",
    }
}

/// The state of a bond.
#[derive(Clone, Debug, Serialize)]
pub struct BondStatus {
    pub name: String,
    pub mode: Mode,
    pub xmit_hash_policy: Option<XmitHashPolicy>,
    pub fail_over_mac: Option<FailOverMac>,
    /// Active-backup only: the configured primary (inner `None`: none).
    pub primary: Option<Option<String>>,
    pub primary_reselect: PrimaryReselect,
    pub active_member: Option<String>,
    /// The bond's carrier ("MII Status").
    pub mii_status: bool,
    pub miimon_ms: u64,
    pub updelay_ms: u64,
    pub downdelay_ms: u64,
    pub peer_notif_delay_ms: u64,
    #[serde(serialize_with = "ser_mac")]
    pub mac: MacAddr,
    pub lacp: Option<LacpStatus>,
    pub members: Vec<MemberStatus>,
    pub counters: BondCounters,
    /// balance-tlb and balance-alb: the load-balancing tables (what Linux
    /// shows in debugfs, bonding/bondN/rlb_hash_table, not in /proc).
    pub alb: Option<AlbStatus>,
}

/// The state of balance-tlb and balance-alb.
#[derive(Clone, Debug, Serialize)]
pub struct AlbStatus {
    pub tlb_dynamic_lb: bool,
    pub lp_interval_s: u64,
    /// The bond's own IPv4 addresses (`ip=`).
    pub ip: Vec<std::net::Ipv4Addr>,
    pub tlb_rebalances: u64,
    /// Each member's transmit load by the last rebalance, bytes per second.
    pub tlb_load_bytes_per_s: Vec<u64>,
    /// balance-alb: the receive clients and the member each was given.
    pub clients: Vec<Client>,
}

/// The "802.3ad info" block.
#[derive(Clone, Debug, Serialize)]
pub struct LacpStatus {
    pub lacp_active: bool,
    pub lacp_rate: LacpRate,
    pub min_links: u16,
    pub ad_select: AdSelect,
    pub system_priority: u16,
    #[serde(serialize_with = "ser_mac")]
    pub system_mac: MacAddr,
    pub active_aggregator: Option<ActiveAggregatorStatus>,
}

/// "Active Aggregator Info".
#[derive(Clone, Debug, Serialize)]
pub struct ActiveAggregatorStatus {
    pub id: u16,
    /// Ports of the aggregator whose link is up.
    pub ports: usize,
    pub actor_key: u16,
    pub partner_key: u16,
    #[serde(serialize_with = "ser_mac")]
    pub partner_mac: MacAddr,
}

/// One member ("Slave Interface").
#[derive(Clone, Debug, Serialize)]
pub struct MemberStatus {
    pub name: String,
    pub mii_status: LinkState,
    pub speed_mbps: Option<u32>,
    #[serde(serialize_with = "ser_duplex")]
    pub duplex: Duplex,
    pub link_failure_count: u32,
    #[serde(serialize_with = "ser_mac")]
    pub permanent_hw_addr: MacAddr,
    /// The MAC the bond programmed on it.
    #[serde(serialize_with = "ser_mac")]
    pub mac: MacAddr,
    /// Carries traffic now (the active member; a distributing port).
    pub active: bool,
    pub lacp: Option<MemberLacpStatus>,
}

/// A member's 802.3ad details.
#[derive(Clone, Debug, Serialize)]
pub struct MemberLacpStatus {
    pub aggregator_id: Option<u16>,
    pub actor_churn_state: ChurnState,
    pub partner_churn_state: ChurnState,
    pub actor_churned_count: u32,
    pub partner_churned_count: u32,
    pub actor: LacpInfo,
    pub partner: LacpInfo,
    pub rx_state: RxState,
    pub mux_state: MuxState,
    pub periodic_state: PeriodicState,
    pub selected: Selected,
    pub stats: LacpStats,
}

impl fmt::Display for BondStatus {
    /// The layout of bond_info_seq_show(), field for field.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "Ethernet Channel Bonding Driver: pollux-bond {}",
            env!("CARGO_PKG_VERSION")
        )?;
        writeln!(f)?;
        write!(f, "Bonding Mode: {}", self.mode.description())?;
        if let Some(m) = self.fail_over_mac {
            write!(f, " (fail_over_mac {})", m.name())?;
        }
        writeln!(f)?;
        if let Some(p) = self.xmit_hash_policy {
            writeln!(f, "Transmit Hash Policy: {} ({})", p.name(), p.number())?;
        }
        if let Some(primary) = &self.primary {
            match primary {
                Some(p) => writeln!(
                    f,
                    "Primary Slave: {p} (primary_reselect {})",
                    self.primary_reselect.name()
                )?,
                None => writeln!(f, "Primary Slave: None")?,
            }
            writeln!(
                f,
                "Currently Active Slave: {}",
                self.active_member.as_deref().unwrap_or("None")
            )?;
        }
        writeln!(
            f,
            "MII Status: {}",
            if self.mii_status { "up" } else { "down" }
        )?;
        writeln!(f, "MII Polling Interval (ms): {}", self.miimon_ms)?;
        writeln!(f, "Up Delay (ms): {}", self.updelay_ms)?;
        writeln!(f, "Down Delay (ms): {}", self.downdelay_ms)?;
        writeln!(
            f,
            "Peer Notification Delay (ms): {}",
            self.peer_notif_delay_ms
        )?;
        if let Some(l) = &self.lacp {
            writeln!(f)?;
            writeln!(f, "802.3ad info")?;
            writeln!(
                f,
                "LACP active: {}",
                if l.lacp_active { "on" } else { "off" }
            )?;
            writeln!(f, "LACP rate: {}", l.lacp_rate.name())?;
            writeln!(f, "Min links: {}", l.min_links)?;
            writeln!(
                f,
                "Aggregator selection policy (ad_select): {}",
                l.ad_select.name()
            )?;
            writeln!(f, "System priority: {}", l.system_priority)?;
            writeln!(f, "System MAC address: {}", l.system_mac)?;
            match &l.active_aggregator {
                None => writeln!(f, "bond {} has no active aggregator", self.name)?,
                Some(a) => {
                    writeln!(f, "Active Aggregator Info:")?;
                    writeln!(f, "\tAggregator ID: {}", a.id)?;
                    writeln!(f, "\tNumber of ports: {}", a.ports)?;
                    writeln!(f, "\tActor Key: {}", a.actor_key)?;
                    writeln!(f, "\tPartner Key: {}", a.partner_key)?;
                    writeln!(f, "\tPartner Mac Address: {}", a.partner_mac)?;
                }
            }
        }
        for m in &self.members {
            writeln!(f)?;
            writeln!(f, "Slave Interface: {}", m.name)?;
            writeln!(f, "MII Status: {}", m.mii_status.name())?;
            match m.speed_mbps {
                Some(s) => writeln!(f, "Speed: {s} Mbps")?,
                None => writeln!(f, "Speed: Unknown")?,
            }
            writeln!(f, "Duplex: {}", duplex_name(m.duplex))?;
            writeln!(f, "Link Failure Count: {}", m.link_failure_count)?;
            writeln!(f, "Permanent HW addr: {}", m.permanent_hw_addr)?;
            writeln!(f, "Slave queue ID: 0")?;
            if let Some(l) = &m.lacp {
                match l.aggregator_id {
                    None => writeln!(f, "Aggregator ID: N/A")?,
                    Some(id) => {
                        writeln!(f, "Aggregator ID: {id}")?;
                        writeln!(f, "Actor Churn State: {}", l.actor_churn_state.name())?;
                        writeln!(f, "Partner Churn State: {}", l.partner_churn_state.name())?;
                        writeln!(f, "Actor Churned Count: {}", l.actor_churned_count)?;
                        writeln!(f, "Partner Churned Count: {}", l.partner_churned_count)?;
                        write_info(f, "details actor lacp pdu:", "port key", &l.actor)?;
                        write_info(f, "details partner lacp pdu:", "oper key", &l.partner)?;
                    }
                }
            }
        }
        Ok(())
    }
}

fn write_info(f: &mut fmt::Formatter<'_>, title: &str, key: &str, i: &LacpInfo) -> fmt::Result {
    writeln!(f, "{title}")?;
    writeln!(f, "    system priority: {}", i.system_priority)?;
    writeln!(f, "    system mac address: {}", i.system)?;
    writeln!(f, "    {key}: {}", i.key)?;
    writeln!(f, "    port priority: {}", i.port_priority)?;
    writeln!(f, "    port number: {}", i.port)?;
    writeln!(f, "    port state: {}", i.state.0)
}
