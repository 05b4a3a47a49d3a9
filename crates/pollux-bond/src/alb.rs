//! The load-balancing state of balance-tlb and balance-alb, I/O-free: the
//! transmit flow table (tlb) and the receive client table (rlb), after the
//! behaviour of Linux's drivers/net/bonding/bond_alb.c (and DPDK's
//! drivers/net/bonding/rte_eth_bond_alb.c for the client table). The
//! [`Bond`](crate::Bond) core owns them and turns what they decide into
//! [`Action`](crate::Action)s; nothing here reads a clock.
//!
//! # Transmit (tlb)
//!
//! A flow is a bucket of a 256-entry table (TLB_HASH_TABLE_SIZE in
//! bond_alb.h). balance-tlb takes the low byte of the frame's xmit hash
//! (bond_xmit_tlb_slave_get() with `bond_xmit_hash()`); balance-alb the XOR of the bytes of its
//! destination IP address (bond_xmit_alb_slave_get(): `_simple_hash()`
//! of `daddr`). Each bucket is assigned to a member. The transmit handles count the
//! bytes each bucket sent, each in its own single-writer counters; every
//! rebalance interval (BOND_TLB_REBALANCE_INTERVAL, 10 s) the control side
//! reads the counters and [`Tlb::rebalance`] turns them into each bucket's
//! load history (`1 + bytes / 10`, bytes per second plus one, as
//! tlb_init_table_entry() keeps it) and assigns every bucket again to the
//! member with the largest gap between its speed and the load it already
//! has (compute_gap(): `speed << 20` minus `load << 3`).
//!
//! Linux assigns a bucket lazily, at its first frame after a rebalance,
//! in the order frames come. Pollux's handles may not write shared state,
//! so the control side assigns all buckets at once, heaviest first (the
//! greedy order that bounds the imbalance best); idle buckets carry a
//! load of 1 and so spread evenly. When a member fails only its buckets
//! move; when one comes up the next rebalance is due at once (Linux sets
//! `tx_rebalance_counter` to the interval for the same effect).
//!
//! # Receive (rlb, balance-alb only)
//!
//! A client is a peer that asked for one of the bond's IPv4 addresses,
//! kept in a 256-entry table indexed by the XOR of its address bytes
//! (_simple_hash() of bond_alb.c; a new client whose hash collides replaces
//! the old one, as there). It gets a member by rlb_next_rx_slave()'s
//! rotation (the next usable member after the last one given, the fastest
//! when speeds differ), and the bond answers its ARP requests with that
//! member's MAC. When a member fails its clients move to others and are
//! sent ARP replies with the new MAC ([`RLB_ARP_BURST_SIZE`] at once, and
//! again at the next [`RLB_UPDATE_RETRY`] ticks); when a member comes up
//! every client is assigned again and those that moved are told.

use std::time::{Duration, Instant};

use pollux_core::MacAddr;

/// Buckets of the transmit table (TLB_HASH_TABLE_SIZE, bond_alb.h).
pub const TLB_HASH_TABLE_SIZE: usize = 256;
/// How often transmit flows are rebalanced (BOND_TLB_REBALANCE_INTERVAL,
/// bond_alb.h: 10 seconds).
pub const TLB_REBALANCE_INTERVAL: Duration = Duration::from_secs(10);
/// Entries of the client table (RLB_HASH_TABLE_SIZE, bond_alb.h).
pub const RLB_HASH_TABLE_SIZE: usize = 256;
/// ARP replies per client update (RLB_ARP_BURST_SIZE, bond_alb.h).
pub const RLB_ARP_BURST_SIZE: usize = 2;
/// Ticks a client update is repeated after a member was removed
/// (RLB_UPDATE_RETRY, bond_alb.h).
pub const RLB_UPDATE_RETRY: u8 = 3;
/// The period of bond_alb_monitor() (ALB_TIMER_TICKS_PER_SEC = 10).
pub const ALB_TICK: Duration = Duration::from_millis(100);
/// "No member" in the published transmit table.
pub const NO_MEMBER: u8 = 0xff;

/// bond_alb.c's _simple_hash(): the XOR of the bytes.
#[inline]
pub fn simple_hash(bytes: &[u8]) -> u8 {
    bytes.iter().fold(0, |h, b| h ^ b)
}

/// A member that can take load, and its speed (0 when unknown).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Usable {
    pub member: usize,
    pub speed_mbps: u32,
}

/// compute_gap() of bond_alb.c: the member's speed in bits per second
/// (Mb/s shifted by 20) minus its load in bits per second.
fn gap(speed_mbps: u32, load: u64) -> i128 {
    ((speed_mbps as i128) << 20) - ((load as i128) << 3)
}

/// The transmit flow table.
#[derive(Clone, Debug)]
pub struct Tlb {
    assign: [u8; TLB_HASH_TABLE_SIZE],
    /// Bytes per second of each bucket over the last interval, plus one.
    history: [u64; TLB_HASH_TABLE_SIZE],
    /// The handles' counters at the last rebalance.
    last: [u64; TLB_HASH_TABLE_SIZE],
    last_unbalanced: u64,
    /// Load of the traffic that is not balanced (multicast, non-IP), put
    /// on the active member as Linux does with `unbalanced_load`.
    unbalanced_history: u64,
    next_rebalance: Instant,
    rebalances: u64,
}

impl Tlb {
    pub fn new(now: Instant) -> Tlb {
        Tlb {
            assign: [NO_MEMBER; TLB_HASH_TABLE_SIZE],
            history: [1; TLB_HASH_TABLE_SIZE],
            last: [0; TLB_HASH_TABLE_SIZE],
            last_unbalanced: 0,
            unbalanced_history: 0,
            next_rebalance: now + TLB_REBALANCE_INTERVAL,
            rebalances: 0,
        }
    }

    /// The member of each bucket ([`NO_MEMBER`]: none usable).
    pub fn table(&self) -> &[u8; TLB_HASH_TABLE_SIZE] {
        &self.assign
    }

    /// When the next rebalance is due.
    pub fn next_rebalance(&self) -> Instant {
        self.next_rebalance
    }

    /// Makes the next rebalance due at once (a member came up).
    pub fn rebalance_soon(&mut self, now: Instant) {
        self.next_rebalance = now;
    }

    /// Rebalances done so far.
    pub fn rebalances(&self) -> u64 {
        self.rebalances
    }

    /// The load (bytes per second) each member carries by the current
    /// assignment, indexed by member, `n` members.
    pub fn loads(&self, n: usize, active: Option<usize>) -> Vec<u64> {
        let mut l = vec![0u64; n];
        for (b, &m) in self.assign.iter().enumerate() {
            if let Some(x) = l.get_mut(m as usize) {
                *x += self.history[b];
            }
        }
        if let Some(x) = active.and_then(|a| l.get_mut(a)) {
            *x += self.unbalanced_history;
        }
        l
    }

    /// Every rebalance interval: `totals` are the bytes each bucket has
    /// sent since start (the sum of the handles' counters), `unbalanced`
    /// the bytes sent outside the table. Turns the bytes of the interval
    /// into load histories and assigns every bucket again.
    pub fn rebalance(
        &mut self,
        now: Instant,
        totals: &[u64; TLB_HASH_TABLE_SIZE],
        unbalanced: u64,
        usable: &[Usable],
        active: Option<usize>,
    ) {
        let secs = TLB_REBALANCE_INTERVAL.as_secs();
        for ((h, last), &total) in self.history.iter_mut().zip(&mut self.last).zip(totals) {
            *h = 1 + total.wrapping_sub(*last) / secs;
            *last = total;
        }
        self.unbalanced_history = unbalanced.wrapping_sub(self.last_unbalanced) / secs;
        self.last_unbalanced = unbalanced;
        self.assign = [NO_MEMBER; TLB_HASH_TABLE_SIZE];
        let mut order: Vec<usize> = (0..TLB_HASH_TABLE_SIZE).collect();
        order.sort_by_key(|&b| std::cmp::Reverse(self.history[b]));
        let mut load: Vec<(Usable, u64)> = usable.iter().map(|&u| (u, 0)).collect();
        if let Some(x) = load.iter_mut().find(|(u, _)| Some(u.member) == active) {
            x.1 = self.unbalanced_history;
        }
        self.place(&order, &mut load);
        self.next_rebalance = now + TLB_REBALANCE_INTERVAL;
        self.rebalances += 1;
    }

    /// Buckets whose member is no longer usable move to the members that
    /// are, by the same rule; the others stay (tlb_clear_slave() of a
    /// failed member only).
    pub fn move_off(&mut self, usable: &[Usable], active: Option<usize>) {
        let ok = |m: u8| usable.iter().any(|u| u.member == m as usize);
        let mut load: Vec<(Usable, u64)> = usable.iter().map(|&u| (u, 0)).collect();
        for (b, &m) in self.assign.iter().enumerate() {
            if let Some(x) = load.iter_mut().find(|(u, _)| u.member == m as usize) {
                x.1 += self.history[b];
            }
        }
        if let Some(x) = load.iter_mut().find(|(u, _)| Some(u.member) == active) {
            x.1 += self.unbalanced_history;
        }
        let mut order: Vec<usize> = (0..TLB_HASH_TABLE_SIZE)
            .filter(|&b| !ok(self.assign[b]))
            .collect();
        order.sort_by_key(|&b| std::cmp::Reverse(self.history[b]));
        self.place(&order, &mut load);
    }

    /// Gives each bucket of `order`, in that order, to the member with the
    /// largest gap (tlb_get_least_loaded_slave(); the first such member
    /// on a tie, as Linux walks its list).
    fn place(&mut self, order: &[usize], load: &mut [(Usable, u64)]) {
        for &b in order {
            let best = load
                .iter_mut()
                .fold(None::<&mut (Usable, u64)>, |best, x| match best {
                    Some(bx) if gap(bx.0.speed_mbps, bx.1) >= gap(x.0.speed_mbps, x.1) => Some(bx),
                    _ => Some(x),
                });
            match best {
                Some(x) => {
                    x.1 += self.history[b];
                    self.assign[b] = x.0.member as u8;
                }
                None => self.assign[b] = NO_MEMBER,
            }
        }
    }
}

fn ser_ip<S: serde::Serializer>(ip: &[u8; 4], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&std::net::Ipv4Addr::from(*ip).to_string())
}

fn ser_mac<S: serde::Serializer>(m: &MacAddr, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&m.to_string())
}

/// A receive client: a peer that asked for one of the bond's addresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Client {
    /// The peer's IPv4 address.
    #[serde(serialize_with = "ser_ip")]
    pub ip: [u8; 4],
    /// The bond's address it asked for.
    #[serde(serialize_with = "ser_ip")]
    pub our_ip: [u8; 4],
    /// The peer's MAC.
    #[serde(serialize_with = "ser_mac")]
    pub mac: MacAddr,
    /// The member whose MAC the peer was given.
    pub member: usize,
    /// Update rounds still to send (Linux's `ntt` and retry counter).
    #[serde(skip)]
    pub(crate) ntt: u8,
}

/// The receive client table.
#[derive(Clone, Debug)]
pub struct Rlb {
    table: Vec<Option<Client>>,
    /// The member given last (bond_info->rx_slave).
    last: Option<usize>,
}

impl Default for Rlb {
    fn default() -> Rlb {
        Rlb::new()
    }
}

impl Rlb {
    pub fn new() -> Rlb {
        Rlb {
            table: vec![None; RLB_HASH_TABLE_SIZE],
            last: None,
        }
    }

    /// The clients, in table order.
    pub fn clients(&self) -> impl Iterator<Item = &Client> {
        self.table.iter().flatten()
    }

    /// rlb_next_rx_slave(): the fastest usable member after the last one
    /// given, or failing that the fastest from the start up to it.
    pub fn next_member(&mut self, usable: &[Usable]) -> Option<usize> {
        let mut before: Option<Usable> = None;
        let mut after: Option<Usable> = None;
        let mut found = false;
        for &u in usable {
            if !found {
                if before.map_or(true, |b| b.speed_mbps < u.speed_mbps) {
                    before = Some(u);
                }
            } else if after.map_or(true, |a| a.speed_mbps < u.speed_mbps) {
                after = Some(u);
            }
            if Some(u.member) == self.last {
                found = true;
            }
        }
        let pick = match (after, before) {
            (None, b) => b,
            (Some(a), Some(b)) if a.speed_mbps < b.speed_mbps => Some(b),
            (a, _) => a,
        }?;
        self.last = Some(pick.member);
        Some(pick.member)
    }

    /// An ARP request from `ip`/`mac` for our address `our_ip`: the member
    /// whose MAC answers it. A known client keeps its member (its MAC is
    /// refreshed); a new one gets the next member (rlb_choose_channel()).
    pub fn on_request(
        &mut self,
        ip: [u8; 4],
        mac: MacAddr,
        our_ip: [u8; 4],
        usable: &[Usable],
    ) -> Option<usize> {
        let h = simple_hash(&ip) as usize;
        if let Some(c) = &mut self.table[h] {
            if c.ip == ip && c.our_ip == our_ip && usable.iter().any(|u| u.member == c.member) {
                c.mac = mac;
                return Some(c.member);
            }
        }
        let member = self.next_member(usable)?;
        self.table[h] = Some(Client {
            ip,
            our_ip,
            mac,
            member,
            ntt: 0,
        });
        Some(member)
    }

    /// Members that are no longer usable lose their clients to the others
    /// (rlb_clear_slave()); those clients are to be told. Returns whether
    /// any moved.
    pub fn move_off(&mut self, usable: &[Usable]) -> bool {
        let mut moved = false;
        for i in 0..self.table.len() {
            let Some(c) = self.table[i] else { continue };
            if usable.iter().any(|u| u.member == c.member) {
                continue;
            }
            // With no member left there is nobody to tell; they are told
            // when one comes back (rebalance).
            if let Some(m) = self.next_member(usable) {
                let c = self.table[i].as_mut().expect("checked above");
                c.member = m;
                c.ntt = 1 + RLB_UPDATE_RETRY;
                moved = true;
            }
        }
        moved
    }

    /// Every client is assigned again (rlb_rebalance(), after a member
    /// came up); those that moved are to be told once.
    pub fn rebalance(&mut self, usable: &[Usable]) -> bool {
        let mut moved = false;
        for i in 0..self.table.len() {
            if self.table[i].is_none() {
                continue;
            }
            let Some(m) = self.next_member(usable) else {
                return moved;
            };
            let c = self.table[i].as_mut().expect("checked above");
            if c.member != m {
                c.member = m;
                c.ntt = c.ntt.max(1);
                moved = true;
            }
        }
        moved
    }

    /// The clients of `member` are to be told its (new) MAC once
    /// (rlb_req_update_slave_clients()).
    pub fn mark_member(&mut self, member: usize) {
        for c in self.table.iter_mut().flatten() {
            if c.member == member {
                c.ntt = c.ntt.max(1);
            }
        }
    }

    /// Takes one round of updates: every client still to be told, once.
    pub fn take_updates(&mut self) -> Vec<Client> {
        let mut v = Vec::new();
        for c in self.table.iter_mut().flatten() {
            if c.ntt > 0 {
                c.ntt -= 1;
                v.push(*c);
            }
        }
        v
    }

    /// Whether any client is still to be told.
    pub fn pending(&self) -> bool {
        self.clients().any(|c| c.ntt > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u(members: &[usize]) -> Vec<Usable> {
        members
            .iter()
            .map(|&m| Usable {
                member: m,
                speed_mbps: 1000,
            })
            .collect()
    }

    #[test]
    fn the_simple_hash_is_the_xor_of_the_bytes() {
        assert_eq!(simple_hash(&[169, 254, 0, 1]), 169 ^ 254 ^ 1);
        assert_eq!(simple_hash(&[]), 0);
    }

    #[test]
    fn idle_buckets_spread_evenly_and_heavy_ones_apart() {
        let t0 = Instant::now();
        let mut t = Tlb::new(t0);
        let zero = [0u64; TLB_HASH_TABLE_SIZE];
        t.rebalance(t0, &zero, 0, &u(&[0, 1]), Some(0));
        let on = |t: &Tlb, m: u8| t.table().iter().filter(|&&x| x == m).count();
        assert_eq!((on(&t, 0), on(&t, 1)), (128, 128));
        // Two heavy buckets (1 MB/s each over the interval) land on
        // different members; the rest balance around them.
        let mut totals = [0u64; TLB_HASH_TABLE_SIZE];
        totals[7] = 10_000_000;
        totals[9] = 10_000_000;
        t.rebalance(
            t0 + TLB_REBALANCE_INTERVAL,
            &totals,
            0,
            &u(&[0, 1]),
            Some(0),
        );
        assert_ne!(t.table()[7], t.table()[9]);
        let l = t.loads(2, Some(0));
        assert!(l[0].abs_diff(l[1]) <= 1, "{l:?}");
    }

    #[test]
    fn a_failed_members_buckets_move_and_only_those() {
        let t0 = Instant::now();
        let mut t = Tlb::new(t0);
        t.rebalance(t0, &[0; TLB_HASH_TABLE_SIZE], 0, &u(&[0, 1, 2]), Some(0));
        let before = *t.table();
        t.move_off(&u(&[0, 2]), Some(0));
        for (b, (&was, &now)) in before.iter().zip(t.table()).enumerate() {
            if was == 1 {
                assert!(now == 0 || now == 2);
            } else {
                assert_eq!(now, was, "bucket {b} moved");
            }
        }
        t.move_off(&[], None);
        assert!(t.table().iter().all(|&m| m == NO_MEMBER));
    }

    #[test]
    fn clients_rotate_over_members_and_move_when_one_fails() {
        let mut r = Rlb::new();
        let mac = |i: u8| MacAddr([2, 0, 0, 0, 1, i]);
        let us = [169, 254, 0, 1];
        let got: Vec<usize> = (10..14u8)
            .map(|i| {
                r.on_request([169, 254, 0, i], mac(i), us, &u(&[0, 1]))
                    .unwrap()
            })
            .collect();
        assert_eq!(got, [0, 1, 0, 1]);
        // Asking again keeps the member.
        assert_eq!(
            r.on_request([169, 254, 0, 11], mac(11), us, &u(&[0, 1])),
            Some(1)
        );
        assert!(r.move_off(&u(&[0])));
        assert!(r.clients().all(|c| c.member == 0));
        let first = r.take_updates();
        assert_eq!(first.len(), 2, "the two clients of member 1");
        for _ in 0..RLB_UPDATE_RETRY {
            assert_eq!(r.take_updates().len(), 2);
        }
        assert!(r.take_updates().is_empty());
        // Member 1 back: clients spread again, the movers are told once.
        assert!(r.rebalance(&u(&[0, 1])));
        let told = r.take_updates();
        assert!(!told.is_empty() && told.iter().all(|c| c.member == 1));
        assert!(!r.pending());
    }

    #[test]
    fn the_fastest_member_after_the_last_is_next() {
        let mut r = Rlb::new();
        let us = [
            Usable {
                member: 0,
                speed_mbps: 100,
            },
            Usable {
                member: 1,
                speed_mbps: 1000,
            },
            Usable {
                member: 2,
                speed_mbps: 1000,
            },
        ];
        let v: Vec<usize> = (0..4).map(|_| r.next_member(&us).unwrap()).collect();
        assert_eq!(v, [1, 2, 1, 2]);
    }
}
