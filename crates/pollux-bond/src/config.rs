//! Bond options, named and valued as Linux bonding names them
//! (Documentation/networking/bonding.rst, "Bonding Driver Options"), and
//! their parsing from DPDK-style device arguments.

use std::fmt;
use std::net::Ipv4Addr;
use std::time::Duration;

use pollux_core::MacAddr;
use serde::Serialize;

use crate::BondError;

/// Bonding mode (`mode`). Numbers are Linux's (`BOND_MODE_*`), so `mode=4`
/// works as it does there and in DPDK's `net_bonding`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Strict rotation over the usable members (mode 0).
    #[default]
    BalanceRr,
    /// One active member, the others stand by (mode 1).
    ActiveBackup,
    /// Member chosen by `xmit_hash_policy` (mode 2).
    BalanceXor,
    /// Every frame on every usable member (mode 3).
    Broadcast,
    /// IEEE 802.1AX (802.3ad) link aggregation with LACP (mode 4).
    #[serde(rename = "802.3ad")]
    Ieee8023ad,
    /// Adaptive transmit load balancing (mode 5): transmit spread by load,
    /// receive on the active member, MACs swapped at failover.
    BalanceTlb,
    /// Adaptive load balancing (mode 6): balance-tlb plus receive load
    /// balancing for IPv4 by ARP (the bond answers ARP for `ip=` with a
    /// member's MAC chosen per peer).
    BalanceAlb,
}

impl Mode {
    /// The Linux option value (`balance-rr`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Mode::BalanceRr => "balance-rr",
            Mode::ActiveBackup => "active-backup",
            Mode::BalanceXor => "balance-xor",
            Mode::Broadcast => "broadcast",
            Mode::Ieee8023ad => "802.3ad",
            Mode::BalanceTlb => "balance-tlb",
            Mode::BalanceAlb => "balance-alb",
        }
    }

    /// The text /proc/net/bonding prints (bond_mode_name() in bond_main.c).
    pub fn description(self) -> &'static str {
        match self {
            Mode::BalanceRr => "load balancing (round-robin)",
            Mode::ActiveBackup => "fault-tolerance (active-backup)",
            Mode::BalanceXor => "load balancing (xor)",
            Mode::Broadcast => "fault-tolerance (broadcast)",
            Mode::Ieee8023ad => "IEEE 802.3ad Dynamic link aggregation",
            Mode::BalanceTlb => "transmit load balancing",
            Mode::BalanceAlb => "adaptive load balancing",
        }
    }

    /// Whether the mode picks members with `xmit_hash_policy`.
    pub fn uses_xmit_hash(self) -> bool {
        matches!(self, Mode::BalanceXor | Mode::Ieee8023ad)
    }

    /// balance-tlb or balance-alb: the modes of Linux's bond_alb.c.
    pub fn is_alb_family(self) -> bool {
        matches!(self, Mode::BalanceTlb | Mode::BalanceAlb)
    }

    /// Modes with one active member (Linux's bond_uses_primary()).
    pub fn uses_primary(self) -> bool {
        matches!(
            self,
            Mode::ActiveBackup | Mode::BalanceTlb | Mode::BalanceAlb
        )
    }

    fn parse(v: &str) -> Option<Mode> {
        Some(match v {
            "balance-rr" | "0" => Mode::BalanceRr,
            "active-backup" | "1" => Mode::ActiveBackup,
            "balance-xor" | "2" => Mode::BalanceXor,
            "broadcast" | "3" => Mode::Broadcast,
            "802.3ad" | "4" => Mode::Ieee8023ad,
            "balance-tlb" | "5" => Mode::BalanceTlb,
            "balance-alb" | "6" => Mode::BalanceAlb,
            _ => return None,
        })
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Transmit hash policy (`xmit_hash_policy`), numbered as Linux numbers
/// them (`BOND_XMIT_POLICY_*`, printed in /proc/net/bonding).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub enum XmitHashPolicy {
    #[default]
    #[serde(rename = "layer2")]
    Layer2,
    #[serde(rename = "layer3+4")]
    Layer34,
    #[serde(rename = "layer2+3")]
    Layer23,
    #[serde(rename = "encap2+3")]
    Encap23,
    #[serde(rename = "encap3+4")]
    Encap34,
    #[serde(rename = "vlan+srcmac")]
    VlanSrcMac,
}

impl XmitHashPolicy {
    /// Linux's option value.
    pub fn name(self) -> &'static str {
        match self {
            XmitHashPolicy::Layer2 => "layer2",
            XmitHashPolicy::Layer34 => "layer3+4",
            XmitHashPolicy::Layer23 => "layer2+3",
            XmitHashPolicy::Encap23 => "encap2+3",
            XmitHashPolicy::Encap34 => "encap3+4",
            XmitHashPolicy::VlanSrcMac => "vlan+srcmac",
        }
    }

    /// Linux's number for the policy.
    pub fn number(self) -> u8 {
        match self {
            XmitHashPolicy::Layer2 => 0,
            XmitHashPolicy::Layer34 => 1,
            XmitHashPolicy::Layer23 => 2,
            XmitHashPolicy::Encap23 => 3,
            XmitHashPolicy::Encap34 => 4,
            XmitHashPolicy::VlanSrcMac => 5,
        }
    }

    fn parse(v: &str) -> Option<XmitHashPolicy> {
        // DPDK's net_bonding spells them l2, l23, l34 (`xmit_policy=`).
        Some(match v {
            "layer2" | "0" | "l2" => XmitHashPolicy::Layer2,
            "layer3+4" | "1" | "l34" => XmitHashPolicy::Layer34,
            "layer2+3" | "2" | "l23" => XmitHashPolicy::Layer23,
            "encap2+3" | "3" => XmitHashPolicy::Encap23,
            "encap3+4" | "4" => XmitHashPolicy::Encap34,
            "vlan+srcmac" | "5" => XmitHashPolicy::VlanSrcMac,
            _ => return None,
        })
    }
}

impl fmt::Display for XmitHashPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// `lacp_rate`: how often we ask the partner to send LACPDUs, which is
/// also how long we wait for them (802.1AX: fast = 1 s period and 3 s
/// timeout, slow = 30 s period and 90 s timeout).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LacpRate {
    #[default]
    Slow,
    Fast,
}

impl LacpRate {
    pub fn name(self) -> &'static str {
        match self {
            LacpRate::Slow => "slow",
            LacpRate::Fast => "fast",
        }
    }
}

/// `primary_reselect`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PrimaryReselect {
    /// The primary becomes active whenever it comes back.
    #[default]
    Always,
    /// Only if it is faster (or as fast and full duplex where the active is not).
    Better,
    /// Only when the active member fails.
    Failure,
}

impl PrimaryReselect {
    pub fn name(self) -> &'static str {
        match self {
            PrimaryReselect::Always => "always",
            PrimaryReselect::Better => "better",
            PrimaryReselect::Failure => "failure",
        }
    }
}

/// `fail_over_mac` (active-backup only).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FailOverMac {
    /// Every member carries the bond's MAC.
    #[default]
    None,
    /// The bond takes the MAC of whichever member is active; members keep theirs.
    Active,
    /// The active member gets the bond's MAC; at failover the old active
    /// member gets the new one's MAC.
    Follow,
}

impl FailOverMac {
    pub fn name(self) -> &'static str {
        match self {
            FailOverMac::None => "none",
            FailOverMac::Active => "active",
            FailOverMac::Follow => "follow",
        }
    }
}

/// `ad_select`: how the active aggregator is chosen.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AdSelect {
    /// Keep the active aggregator while it has working ports.
    #[default]
    Stable,
    /// Highest total bandwidth, re-chosen on every change.
    Bandwidth,
    /// Most ports, re-chosen on every change.
    Count,
}

impl AdSelect {
    pub fn name(self) -> &'static str {
        match self {
            AdSelect::Stable => "stable",
            AdSelect::Bandwidth => "bandwidth",
            AdSelect::Count => "count",
        }
    }
}

/// Most members a bond has. The queue handles see the members in use as
/// two 32-bit masks in one atomic word (see [`BondPort`](crate::BondPort)).
pub const MAX_MEMBERS: usize = 32;

/// Everything a bond is configured with.
///
/// Defaults are Linux's, except `miimon`, which Linux also forces to 100 ms
/// when neither it nor ARP monitoring is set (bond_check_params()).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BondConfig {
    pub mode: Mode,
    /// Member names, in order; the order is the member index that hashing
    /// and round-robin use, as the enslave order is on Linux.
    pub members: Vec<String>,
    pub xmit_hash_policy: XmitHashPolicy,
    pub lacp_rate: LacpRate,
    /// `lacp_active`: send LACPDUs even when the partner does not.
    pub lacp_active: bool,
    /// Link polling interval; zero turns link monitoring off (members
    /// are then always taken as up, as on Linux).
    #[serde(serialize_with = "ser_ms")]
    pub miimon: Duration,
    #[serde(serialize_with = "ser_ms")]
    pub updelay: Duration,
    #[serde(serialize_with = "ser_ms")]
    pub downdelay: Duration,
    pub primary: Option<String>,
    pub primary_reselect: PrimaryReselect,
    pub fail_over_mac: FailOverMac,
    pub ad_select: AdSelect,
    /// Fewest usable members for the bond to report link up and send.
    /// Linux applies it to 802.3ad only; Pollux applies it in every mode.
    pub min_links: u16,
    /// Bond MAC; defaults to the first member's.
    #[serde(serialize_with = "ser_opt_mac")]
    pub mac: Option<MacAddr>,
    /// `ad_actor_sys_prio`.
    pub ad_actor_sys_prio: u16,
    /// `ad_actor_system`; defaults to the bond MAC.
    #[serde(serialize_with = "ser_opt_mac")]
    pub ad_actor_system: Option<MacAddr>,
    /// `ad_user_port_key` (10 bits, the top of the LACP port key).
    pub ad_user_port_key: u16,
    /// IPv4 addresses to announce with gratuitous ARP after an
    /// active-backup failover; with none, an L2 announcement (RARP, as
    /// QEMU and VMware announce a moved MAC) is sent instead.
    pub announce_ip: Vec<Ipv4Addr>,
    /// `num_grat_arp`: announcements per failover.
    pub num_grat_arp: u8,
    /// `peer_notif_delay`: gap between announcements (zero: `miimon`).
    #[serde(serialize_with = "ser_ms")]
    pub peer_notif_delay: Duration,
    /// `tlb_dynamic_lb` (balance-tlb): true spreads flows by the load they
    /// sent, rebalanced every 10 s; false spreads them by the xmit hash.
    /// balance-alb always balances dynamically, as on Linux.
    pub tlb_dynamic_lb: bool,
    /// `lp_interval`: seconds between the learning packets every member
    /// sends with its own MAC (balance-tlb, balance-alb).
    #[serde(serialize_with = "ser_ms")]
    pub lp_interval: Duration,
    /// `ip` (repeatable): the bond's own IPv4 addresses. balance-alb answers
    /// ARP requests for them with a member's MAC chosen per peer (Pollux
    /// has no IP stack to take them from, as Linux's bond_alb.c does).
    pub ip: Vec<Ipv4Addr>,
}

fn ser_ms<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_millis() as u64)
}

fn ser_opt_mac<S: serde::Serializer>(m: &Option<MacAddr>, s: S) -> Result<S::Ok, S::Error> {
    match m {
        Some(m) => s.serialize_some(&m.to_string()),
        None => s.serialize_none(),
    }
}

impl Default for BondConfig {
    fn default() -> BondConfig {
        BondConfig {
            mode: Mode::BalanceRr,
            members: Vec::new(),
            xmit_hash_policy: XmitHashPolicy::Layer2,
            lacp_rate: LacpRate::Slow,
            lacp_active: true,
            miimon: Duration::from_millis(100),
            updelay: Duration::ZERO,
            downdelay: Duration::ZERO,
            primary: None,
            primary_reselect: PrimaryReselect::Always,
            fail_over_mac: FailOverMac::None,
            ad_select: AdSelect::Stable,
            min_links: 0,
            mac: None,
            ad_actor_sys_prio: 65535,
            ad_actor_system: None,
            ad_user_port_key: 0,
            announce_ip: Vec::new(),
            num_grat_arp: 1,
            peer_notif_delay: Duration::ZERO,
            tlb_dynamic_lb: true,
            // BOND_ALB_DEFAULT_LP_INTERVAL (bond_alb.h): 1 second.
            lp_interval: Duration::from_secs(1),
            ip: Vec::new(),
        }
    }
}

/// The keys [`BondConfig::from_args`] accepts.
pub const KEYS: &str = "mode, member (or slave), xmit_hash_policy (or xmit_policy), lacp_rate, \
lacp_active, miimon, updelay, downdelay, primary, primary_reselect, fail_over_mac, ad_select, \
min_links, mac, ad_actor_sys_prio, ad_actor_system, ad_user_port_key, announce_ip, num_grat_arp, \
peer_notif_delay, tlb_dynamic_lb, lp_interval, ip";

impl BondConfig {
    /// A configuration of `mode` over `members`, everything else default.
    pub fn new(mode: Mode, members: &[&str]) -> BondConfig {
        BondConfig {
            mode,
            members: members.iter().map(|s| s.to_string()).collect(),
            ..BondConfig::default()
        }
    }

    /// Parses DPDK-style device arguments, the `key=value` pairs after
    /// the bond's name in `--vdev 'bond0,mode=802.3ad,member=a,member=b'`.
    ///
    /// `member` repeats (DPDK 22.11's `slave` is accepted too); every other
    /// key may appear once. Unknown keys are errors. Times are in
    /// milliseconds; `updelay` and `downdelay` are rounded down to a
    /// multiple of `miimon`, as Linux does.
    pub fn from_args(args: &[(String, String)]) -> Result<BondConfig, BondError> {
        let mut c = BondConfig::default();
        let mut seen: Vec<&str> = Vec::new();
        for (key, value) in args {
            let key = key.as_str();
            let v = value.trim();
            let once = |seen: &mut Vec<&str>, canon: &'static str| {
                if seen.contains(&canon) {
                    Err(BondError::Duplicate(canon.to_string()))
                } else {
                    seen.push(canon);
                    Ok(())
                }
            };
            let bad = |why: &str| BondError::invalid(key, v, why);
            match key {
                "member" | "slave" => {
                    if v.is_empty() {
                        return Err(bad("empty member name"));
                    }
                    if c.members.iter().any(|m| m == v) {
                        return Err(BondError::DuplicateMember(v.to_string()));
                    }
                    c.members.push(v.to_string());
                }
                "mode" => {
                    once(&mut seen, "mode")?;
                    c.mode = Mode::parse(v).ok_or_else(|| {
                        bad("use balance-rr, active-backup, balance-xor, broadcast, 802.3ad, balance-tlb or balance-alb (or 0-6)")
                    })?;
                }
                "xmit_hash_policy" | "xmit_policy" => {
                    once(&mut seen, "xmit_hash_policy")?;
                    c.xmit_hash_policy = XmitHashPolicy::parse(v).ok_or_else(|| {
                        bad("use layer2, layer2+3, layer3+4, encap2+3, encap3+4 or vlan+srcmac")
                    })?;
                }
                "lacp_rate" => {
                    once(&mut seen, "lacp_rate")?;
                    c.lacp_rate = match v {
                        "slow" | "0" => LacpRate::Slow,
                        "fast" | "1" => LacpRate::Fast,
                        _ => return Err(bad("use slow or fast (0 or 1)")),
                    };
                }
                "lacp_active" => {
                    once(&mut seen, "lacp_active")?;
                    c.lacp_active = match v {
                        "on" | "1" => true,
                        "off" | "0" => false,
                        _ => return Err(bad("use on or off")),
                    };
                }
                "miimon" => {
                    once(&mut seen, "miimon")?;
                    c.miimon = ms(key, v)?;
                }
                "updelay" => {
                    once(&mut seen, "updelay")?;
                    c.updelay = ms(key, v)?;
                }
                "downdelay" => {
                    once(&mut seen, "downdelay")?;
                    c.downdelay = ms(key, v)?;
                }
                "peer_notif_delay" => {
                    once(&mut seen, "peer_notif_delay")?;
                    c.peer_notif_delay = ms(key, v)?;
                }
                "primary" => {
                    once(&mut seen, "primary")?;
                    if v.is_empty() {
                        return Err(bad("empty member name"));
                    }
                    c.primary = Some(v.to_string());
                }
                "primary_reselect" => {
                    once(&mut seen, "primary_reselect")?;
                    c.primary_reselect = match v {
                        "always" | "0" => PrimaryReselect::Always,
                        "better" | "1" => PrimaryReselect::Better,
                        "failure" | "2" => PrimaryReselect::Failure,
                        _ => return Err(bad("use always, better or failure")),
                    };
                }
                "fail_over_mac" => {
                    once(&mut seen, "fail_over_mac")?;
                    c.fail_over_mac = match v {
                        "none" | "0" => FailOverMac::None,
                        "active" | "1" => FailOverMac::Active,
                        "follow" | "2" => FailOverMac::Follow,
                        _ => return Err(bad("use none, active or follow")),
                    };
                }
                "ad_select" => {
                    once(&mut seen, "ad_select")?;
                    c.ad_select = match v {
                        "stable" | "0" => AdSelect::Stable,
                        "bandwidth" | "1" => AdSelect::Bandwidth,
                        "count" | "2" => AdSelect::Count,
                        _ => return Err(bad("use stable, bandwidth or count")),
                    };
                }
                "min_links" => {
                    once(&mut seen, "min_links")?;
                    c.min_links = v.parse().map_err(|_| bad("a number of links"))?;
                }
                "mac" => {
                    once(&mut seen, "mac")?;
                    c.mac = Some(unicast(key, v)?);
                }
                "ad_actor_system" => {
                    once(&mut seen, "ad_actor_system")?;
                    c.ad_actor_system = Some(unicast(key, v)?);
                }
                "ad_actor_sys_prio" => {
                    once(&mut seen, "ad_actor_sys_prio")?;
                    c.ad_actor_sys_prio = match v.parse::<u16>() {
                        Ok(p) if p >= 1 => p,
                        _ => return Err(bad("1..=65535")),
                    };
                }
                "ad_user_port_key" => {
                    once(&mut seen, "ad_user_port_key")?;
                    c.ad_user_port_key = match v.parse::<u16>() {
                        Ok(k) if k < 1024 => k,
                        _ => return Err(bad("0..=1023 (10 bits)")),
                    };
                }
                "announce_ip" => {
                    let ip: Ipv4Addr = v.parse().map_err(|_| bad("an IPv4 address"))?;
                    if !c.announce_ip.contains(&ip) {
                        c.announce_ip.push(ip);
                    }
                }
                "tlb_dynamic_lb" => {
                    once(&mut seen, "tlb_dynamic_lb")?;
                    c.tlb_dynamic_lb = match v {
                        "1" => true,
                        "0" => false,
                        _ => return Err(bad("use 0 or 1")),
                    };
                }
                "lp_interval" => {
                    once(&mut seen, "lp_interval")?;
                    // Seconds, as Linux's lp_interval (1..=INT_MAX there).
                    c.lp_interval = match v.parse::<u64>() {
                        Ok(n) if (1..=3600).contains(&n) => Duration::from_secs(n),
                        _ => return Err(bad("seconds, 1..=3600")),
                    };
                }
                "ip" => {
                    let ip: Ipv4Addr = v.parse().map_err(|_| bad("an IPv4 address"))?;
                    if ip.is_unspecified() || ip.is_broadcast() || ip.is_multicast() {
                        return Err(bad("a unicast IPv4 address"));
                    }
                    if !c.ip.contains(&ip) {
                        c.ip.push(ip);
                    }
                }
                "num_grat_arp" | "num_unsol_na" => {
                    once(&mut seen, "num_grat_arp")?;
                    c.num_grat_arp = v.parse().map_err(|_| bad("0..=255"))?;
                }
                _ => {
                    return Err(BondError::UnknownKey {
                        key: key.to_string(),
                        known: KEYS,
                    })
                }
            }
        }
        c.normalise();
        c.validate()?;
        Ok(c)
    }

    /// Rounds the delays down to multiples of `miimon`, as Linux does.
    fn normalise(&mut self) {
        let mii = self.miimon.as_millis() as u64;
        if mii == 0 {
            return;
        }
        for d in [
            &mut self.updelay,
            &mut self.downdelay,
            &mut self.peer_notif_delay,
        ] {
            let v = d.as_millis() as u64;
            if v % mii != 0 {
                tracing::warn!(
                    "bond delay {v} ms is not a multiple of miimon {mii} ms; rounding down"
                );
                *d = Duration::from_millis(v / mii * mii);
            }
        }
    }

    /// Checks what can be checked without the member ports.
    pub fn validate(&self) -> Result<(), BondError> {
        if self.members.len() > MAX_MEMBERS {
            return Err(BondError::TooManyMembers(self.members.len()));
        }
        if self.mode == Mode::BalanceAlb && self.ip.is_empty() {
            return Err(BondError::invalid(
                "ip",
                "",
                "balance-alb answers ARP for the bond's own IPv4 addresses: give at least one ip=A.B.C.D",
            ));
        }
        if let Some(p) = &self.primary {
            if !self.members.is_empty() && !self.members.contains(p) {
                return Err(BondError::UnknownPrimary(p.clone()));
            }
        }
        Ok(())
    }

    /// The gap between failover announcements.
    pub(crate) fn notify_gap(&self) -> Duration {
        if !self.peer_notif_delay.is_zero() {
            self.peer_notif_delay
        } else if !self.miimon.is_zero() {
            self.miimon
        } else {
            Duration::from_millis(100)
        }
    }
}

fn ms(key: &str, v: &str) -> Result<Duration, BondError> {
    match v.parse::<u64>() {
        Ok(n) if n <= 3_600_000 => Ok(Duration::from_millis(n)),
        _ => Err(BondError::invalid(key, v, "milliseconds, 0..=3600000")),
    }
}

fn unicast(key: &str, v: &str) -> Result<MacAddr, BondError> {
    let m: MacAddr = v
        .parse()
        .map_err(|_| BondError::invalid(key, v, "a MAC address like 02:00:00:00:00:01"))?;
    if !m.is_valid_unicast() {
        return Err(BondError::invalid(
            key,
            v,
            "must be a non-zero unicast address",
        ));
    }
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &[(&str, &str)]) -> Vec<(String, String)> {
        s.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn parses_the_issue_example() {
        let c = BondConfig::from_args(&args(&[
            ("mode", "802.3ad"),
            ("member", "vf0"),
            ("member", "vf1"),
            ("xmit_hash_policy", "layer3+4"),
            ("lacp_rate", "fast"),
        ]))
        .unwrap();
        assert_eq!(c.mode, Mode::Ieee8023ad);
        assert_eq!(c.members, ["vf0", "vf1"]);
        assert_eq!(c.xmit_hash_policy, XmitHashPolicy::Layer34);
        assert_eq!(c.lacp_rate, LacpRate::Fast);
        assert_eq!(c.miimon, Duration::from_millis(100));
    }

    #[test]
    fn accepts_linux_numbers_and_dpdk_spellings() {
        let c = BondConfig::from_args(&args(&[
            ("mode", "2"),
            ("slave", "a"),
            ("xmit_policy", "l34"),
            ("primary_reselect", "2"),
            ("fail_over_mac", "follow"),
        ]))
        .unwrap();
        assert_eq!(c.mode, Mode::BalanceXor);
        assert_eq!(c.members, ["a"]);
        assert_eq!(c.xmit_hash_policy, XmitHashPolicy::Layer34);
        assert_eq!(c.primary_reselect, PrimaryReselect::Failure);
        assert_eq!(c.fail_over_mac, FailOverMac::Follow);
    }

    #[test]
    fn rejects_unknown_duplicate_and_bad_values() {
        let e = BondConfig::from_args(&args(&[("mdoe", "1")])).unwrap_err();
        assert!(matches!(e, BondError::UnknownKey { .. }), "{e}");
        let e = BondConfig::from_args(&args(&[("mode", "1"), ("mode", "2")])).unwrap_err();
        assert!(matches!(e, BondError::Duplicate(_)), "{e}");
        for (k, v) in [
            ("mode", "7"),
            ("mode", "balance-tlb2"),
            ("lacp_rate", "medium"),
            ("tlb_dynamic_lb", "2"),
            ("lp_interval", "0"),
            ("ip", "224.0.0.1"),
            ("miimon", "-1"),
            ("mac", "01:00:5e:00:00:01"),
            ("ad_user_port_key", "1024"),
            ("announce_ip", "169.254.1"),
            ("member", ""),
        ] {
            let e = BondConfig::from_args(&args(&[(k, v)])).unwrap_err();
            assert!(matches!(e, BondError::InvalidValue { .. }), "{k}={v}: {e}");
        }
        let e = BondConfig::from_args(&args(&[("member", "a"), ("member", "a")])).unwrap_err();
        assert!(matches!(e, BondError::DuplicateMember(_)));
        let e = BondConfig::from_args(&args(&[("member", "a"), ("primary", "b")])).unwrap_err();
        assert!(matches!(e, BondError::UnknownPrimary(_)));
    }

    #[test]
    fn at_most_32_members() {
        let names: Vec<String> = (0..=MAX_MEMBERS).map(|i| format!("m{i}")).collect();
        let kv = |n: usize| -> Vec<(String, String)> {
            names[..n]
                .iter()
                .map(|m| ("member".to_string(), m.clone()))
                .collect()
        };
        assert_eq!(
            BondConfig::from_args(&kv(MAX_MEMBERS))
                .unwrap()
                .members
                .len(),
            32
        );
        let e = BondConfig::from_args(&kv(MAX_MEMBERS + 1)).unwrap_err();
        assert!(matches!(e, BondError::TooManyMembers(33)), "{e}");
        assert!(e.to_string().contains("at most 32 members"), "{e}");
    }

    #[test]
    fn delays_round_down_to_miimon_multiples() {
        let c = BondConfig::from_args(&args(&[
            ("miimon", "100"),
            ("updelay", "250"),
            ("downdelay", "200"),
        ]))
        .unwrap();
        assert_eq!(c.updelay, Duration::from_millis(200));
        assert_eq!(c.downdelay, Duration::from_millis(200));
    }
}
