//! What every software port's control side does the same way: the
//! configure/start/stop/take-queues state machine ([`Lifecycle`]) and the
//! per-queue counters with their reset baselines ([`Counters`]).
//!
//! A port keeps what is its own (its options, what its queues work on,
//! the extra work of its `start` and `stop`, its extended counters) and
//! asks these two for the rest, so every soft port refuses the same calls
//! with the same [`PortError`] and counts the same way.

use std::sync::Arc;

use pollux_core::port::{queue_stats_of, sum_queue_counters};
use pollux_core::{
    Capabilities, Lease, Leases, PortConf, PortError, PortStats, QueueCounters, QueueStats, Queues,
    RunFlag, StatsBase, Xstat,
};

/// The control state of a soft port, as [`Port`](pollux_core::Port) lays
/// it out: configured, started, queues handed out or not, and the
/// [`RunFlag`] and [`Leases`] its queue handles carry.
///
/// For a port with work of its own, `configure` and `start` come in two
/// halves (the checks, then the port's work, then a commit), so a port
/// whose work fails is left as it was; `stop` says whether there was
/// anything to stop.
#[derive(Debug)]
pub(crate) struct Lifecycle {
    name: String,
    /// A `configure` succeeded; never unset.
    configured: bool,
    started: bool,
    /// The queues of this start are handed out.
    taken: bool,
    run: RunFlag,
    leases: Leases,
}

impl Lifecycle {
    /// A port named `name`, not configured.
    pub(crate) fn new(name: impl Into<String>) -> Lifecycle {
        Lifecycle {
            name: name.into(),
            configured: false,
            started: false,
            taken: false,
            run: RunFlag::new(),
            leases: Leases::new(),
        }
    }

    /// The port's name.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// Started and not stopped since.
    pub(crate) fn is_started(&self) -> bool {
        self.started
    }

    /// How many queue handles are alive.
    pub(crate) fn handles(&self) -> usize {
        self.leases.outstanding()
    }

    /// `configure`'s checks: [`PortError::Started`] while started, else
    /// what [`PortConf::validate`] says of `conf` against `caps`. The port
    /// then checks and applies what is its own, and on success calls
    /// [`Lifecycle::set_configured`].
    pub(crate) fn check_configure(
        &self,
        conf: &PortConf,
        caps: &Capabilities,
    ) -> Result<(), PortError> {
        if self.started {
            return Err(PortError::Started);
        }
        conf.validate(caps)
    }

    /// Records a successful `configure`: from now on the port may start.
    pub(crate) fn set_configured(&mut self) {
        self.configured = true;
    }

    /// `start` for a port with nothing of its own to do.
    pub(crate) fn start(&mut self) -> Result<(), PortError> {
        self.begin_start()?;
        self.finish_start();
        Ok(())
    }

    /// `start`'s checks: [`PortError::NotConfigured`] before a successful
    /// `configure`; when not started yet, [`PortError::QueuesTaken`] while
    /// a handle of the last start is alive, else the queues may be taken
    /// again. Returns whether this is a fresh start (false: started
    /// already, nothing to do); the port then does its own starting work
    /// and calls [`Lifecycle::finish_start`].
    pub(crate) fn begin_start(&mut self) -> Result<bool, PortError> {
        if !self.configured {
            return Err(PortError::NotConfigured);
        }
        if self.started {
            return Ok(false);
        }
        self.leases.check_none(&self.name)?;
        self.taken = false;
        Ok(true)
    }

    /// Marks the port started and lets its handles run.
    pub(crate) fn finish_start(&mut self) {
        self.started = true;
        self.run.set(true);
    }

    /// Marks the port stopped: handles still out do nothing from their
    /// next burst on. Returns whether it was started, for a port with
    /// stopping work of its own.
    pub(crate) fn stop(&mut self) -> bool {
        let was = self.started;
        self.started = false;
        self.run.set(false);
        was
    }

    /// `take_queues`: [`PortError::NotStarted`] before a start,
    /// [`PortError::QueuesTaken`] when this start's queues are out, else
    /// what `hand_out` builds. The queues count as taken only when
    /// `hand_out` succeeds; it gets this lifecycle for the
    /// [`run flag`](Lifecycle::run) and a [`lease`](Lifecycle::lease) per
    /// handle.
    pub(crate) fn take_queues(
        &mut self,
        hand_out: impl FnOnce(&Lifecycle) -> Result<Queues, PortError>,
    ) -> Result<Queues, PortError> {
        if !self.started {
            return Err(PortError::NotStarted);
        }
        if self.taken {
            return Err(PortError::QueuesTaken(self.name.clone()));
        }
        let queues = hand_out(self)?;
        self.taken = true;
        Ok(queues)
    }

    /// The started flag, for a queue handle.
    pub(crate) fn run(&self) -> RunFlag {
        self.run.clone()
    }

    /// A lease for one queue handle: the port does not start again while
    /// it is alive.
    pub(crate) fn lease(&self) -> Lease {
        self.leases.lease()
    }
}

/// The counters of a soft port: one [`QueueCounters`] per queue and
/// direction, written by the handles, and the values at the last
/// `reset_stats`, which `stats`, `queue_stats` and `xstats` subtract
/// (wrapping, so a baseline above a restarted count never underflows).
/// The control side never writes a queue's counters.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    rx: Vec<Arc<QueueCounters>>,
    tx: Vec<Arc<QueueCounters>>,
    base: StatsBase,
    qbase: QueueStatsBase,
    /// The port's own extended counters at the last reset, in the order
    /// it reports them.
    xbase: Vec<u64>,
}

impl Counters {
    /// Zeroed counters for `rx` and `tx` queues, no baselines.
    pub(crate) fn new(rx: u16, tx: u16) -> Counters {
        let fresh = |n| (0..n).map(|_| QueueCounters::new_shared()).collect();
        Counters::with(fresh(rx), fresh(tx))
    }

    /// Counters made elsewhere (a ring port's tx counters are its peer's
    /// view of the wire too), no baselines.
    pub(crate) fn with(rx: Vec<Arc<QueueCounters>>, tx: Vec<Arc<QueueCounters>>) -> Counters {
        Counters {
            rx,
            tx,
            ..Counters::default()
        }
    }

    /// The rx counters, by queue.
    pub(crate) fn rx(&self) -> &[Arc<QueueCounters>] {
        &self.rx
    }

    /// The tx counters, by queue.
    pub(crate) fn tx(&self) -> &[Arc<QueueCounters>] {
        &self.tx
    }

    /// The queues' counters summed, not relative to the last reset: what
    /// a port with counts of its own adds them to before
    /// [`Counters::since`] and [`Counters::reset_to`].
    pub(crate) fn sum(&self) -> PortStats {
        sum_queue_counters(self.rx.iter().map(|c| &**c), self.tx.iter().map(|c| &**c))
    }

    /// `stats`: the queues' counters since the last reset.
    pub(crate) fn stats(&self) -> PortStats {
        self.since(self.sum())
    }

    /// `raw` (from [`Counters::sum`] and the port's own counts) since the
    /// last reset.
    pub(crate) fn since(&self, raw: PortStats) -> PortStats {
        self.base.since(raw)
    }

    /// `queue_stats`: per-queue counters since the last reset.
    pub(crate) fn queue_stats(&self) -> Vec<QueueStats> {
        self.qbase.since(queue_stats_of(&self.rx, &self.tx))
    }

    /// `xstats`: the basic counters of `stats` under their xstats names,
    /// then each of the port's own `(name, value)` since the last reset
    /// ([`Counters::reset_extra`]).
    pub(crate) fn xstats(&self, stats: PortStats, extra: &[(&str, u64)]) -> Vec<Xstat> {
        let mut x = stats.xstats();
        for (i, &(name, now)) in extra.iter().enumerate() {
            let base = self.xbase.get(i).copied().unwrap_or(0);
            x.push(Xstat::new(name, now.wrapping_sub(base)));
        }
        x
    }

    /// `reset_stats` for a port that counts nothing beyond its queues.
    pub(crate) fn reset(&mut self) {
        self.reset_to(self.sum());
    }

    /// `reset_stats`: `raw` (as given to [`Counters::since`]) and the
    /// per-queue counters become the new zero.
    pub(crate) fn reset_to(&mut self, raw: PortStats) {
        self.base.reset(raw);
        self.qbase.reset(queue_stats_of(&self.rx, &self.tx));
    }

    /// `reset_stats` of the port's own extended counters: `(name, value)`
    /// as [`Counters::xstats`] gets them.
    pub(crate) fn reset_extra(&mut self, now: &[(&str, u64)]) {
        self.xbase = now.iter().map(|&(_, v)| v).collect();
    }
}

/// Per-queue counters at the last `reset_stats`, subtracted from the live
/// ones: the per-queue counterpart of [`StatsBase`], so `queue_stats`
/// restarts from zero on a reset as `stats` does, without the control side
/// writing a queue's counters.
#[derive(Clone, Debug, Default)]
struct QueueStatsBase(Vec<QueueStats>);

impl QueueStatsBase {
    /// Records `now` as the new zero.
    fn reset(&mut self, now: Vec<QueueStats>) {
        self.0 = now;
    }

    /// `now` relative to the last reset.
    fn since(&self, mut now: Vec<QueueStats>) -> Vec<QueueStats> {
        for (q, b) in now.iter_mut().zip(&self.0) {
            q.rx_packets = q.rx_packets.wrapping_sub(b.rx_packets);
            q.rx_bytes = q.rx_bytes.wrapping_sub(b.rx_bytes);
            q.tx_packets = q.tx_packets.wrapping_sub(b.tx_packets);
            q.tx_bytes = q.tx_bytes.wrapping_sub(b.tx_bytes);
            q.rx_errors = q.rx_errors.wrapping_sub(b.rx_errors);
        }
        now
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pollux_core::{AnonMemory, Mempool, MempoolConfig};

    fn conf() -> PortConf {
        let pool = Mempool::new(
            MempoolConfig::new("control-test", 8),
            &AnonMemory::default(),
        )
        .unwrap();
        PortConf::new(pool)
    }

    fn caps() -> Capabilities {
        Capabilities {
            max_rx_queues: 1,
            max_tx_queues: 1,
            min_desc: 1,
            max_desc: u16::MAX,
            desc_align: 1,
            ..Capabilities::default()
        }
    }

    fn hand_out(life: &Lifecycle) -> Result<Queues, PortError> {
        let _ = (life.run(), life.lease());
        Ok(Queues::default())
    }

    #[test]
    fn the_state_machine_refuses_what_port_says() {
        let mut l = Lifecycle::new("soft0");
        assert!(matches!(l.start(), Err(PortError::NotConfigured)));
        assert!(matches!(
            l.take_queues(hand_out),
            Err(PortError::NotStarted)
        ));
        l.check_configure(&conf(), &caps()).unwrap();
        l.set_configured();
        l.start().unwrap();
        assert!(matches!(
            l.check_configure(&conf(), &caps()),
            Err(PortError::Started)
        ));
        let lease = l.lease();
        l.take_queues(hand_out).unwrap();
        assert!(matches!(
            l.take_queues(hand_out),
            Err(PortError::QueuesTaken(_))
        ));
        assert!(l.stop());
        assert!(!l.stop(), "stopped already");
        assert!(matches!(l.start(), Err(PortError::QueuesTaken(_))));
        drop(lease);
        assert!(l.begin_start().unwrap(), "a fresh start");
        l.finish_start();
        assert!(!l.begin_start().unwrap(), "started already");
        l.take_queues(hand_out).unwrap();
    }

    #[test]
    fn a_failed_hand_out_leaves_the_queues_untaken() {
        let mut l = Lifecycle::new("soft0");
        l.set_configured();
        l.start().unwrap();
        let refused = l.take_queues(|_| Err(PortError::Other("no".into())));
        assert!(matches!(refused, Err(PortError::Other(_))));
        l.take_queues(hand_out).unwrap();
    }

    #[test]
    fn resets_are_baselines_that_never_underflow() {
        let mut c = Counters::new(1, 1);
        c.rx()[0].add(3, 300);
        c.tx()[0].add_errors(2);
        c.reset();
        c.reset_extra(&[("extra", 5)]);
        assert_eq!(c.stats(), PortStats::default());
        assert_eq!(c.queue_stats(), vec![QueueStats::default()]);
        c.rx()[0].add(1, 100);
        assert_eq!((c.stats().ipackets, c.stats().ibytes), (1, 100));
        assert_eq!(c.queue_stats()[0].rx_bytes, 100);
        let x = c.xstats(c.stats(), &[("extra", 7)]);
        assert_eq!(x.last(), Some(&Xstat::new("extra", 2)));

        // An rx counter made anew restarts at zero, below the baseline of
        // 3 packets: the difference wraps, it does not panic.
        c.rx = vec![QueueCounters::new_shared()];
        let s = c.stats();
        assert_eq!(s.ipackets, 0u64.wrapping_sub(3));
        assert_eq!(s.oerrors, 0, "the tx counter is the same");
    }
}
