//! Per-channel heartbeat bookkeeping, shared by client and server.
//!
//! There is no task or timer per channel: each side runs one periodic tick
//! (every half period) over its open channels and asks each [`Beat`] whether
//! a `_zpc_hb` is due and whether the remote is lost. The rules follow
//! zerorpc-python so mixed deployments agree:
//! - the first heartbeat goes out one period after the channel opens, never
//!   before (an early one would race the peer's channel registration), and
//!   later ones every period (a quarter early at most);
//! - a passive side sends nothing until it has heard the remote's first one;
//! - the remote is lost after more than two periods of silence, counted from
//!   one period after the channel opened if nothing was ever heard (so a
//!   passive peer, whose first heartbeat arrives at two periods, is not
//!   lost), whether this side is active or passive.

use std::time::Duration;
use tokio::time::Instant;

/// The shortest heartbeat period kept: sides tick every half period.
pub(crate) const MIN_PERIOD: Duration = Duration::from_millis(1);

/// A configured period as used: `None` or zero turn heartbeats off, and a
/// period under [`MIN_PERIOD`] is raised to it.
pub(crate) fn period(p: Option<Duration>) -> Option<Duration> {
    p.filter(|p| !p.is_zero()).map(|p| p.max(MIN_PERIOD))
}

/// Heartbeat state of one channel.
#[derive(Debug, Clone)]
pub(crate) struct Beat {
    opened: Instant,
    last_heard: Option<Instant>,
    last_sent: Option<Instant>,
    active: bool,
}

impl Beat {
    pub(crate) fn new(now: Instant, active: bool) -> Self {
        Beat {
            opened: now,
            last_heard: None,
            last_sent: None,
            active,
        }
    }

    /// The remote showed a sign of life on this channel.
    pub(crate) fn heard(&mut self, now: Instant) {
        self.last_heard = Some(now);
    }

    /// The remote sent `_zpc_hb`: a passive side becomes active.
    pub(crate) fn heard_heartbeat(&mut self, now: Instant) {
        self.heard(now);
        self.active = true;
    }

    /// Should a heartbeat go out now? Records it if so.
    pub(crate) fn due(&mut self, now: Instant, period: Duration) -> bool {
        if !self.active {
            return false;
        }
        // The first never before one period (a Python server registers a
        // channel late; the protocol says so). Later ones get a quarter
        // period of slack, so a tick landing a hair early still sends: the
        // peer tolerates anything under two periods.
        let (since, slack) = match self.last_sent {
            Some(t) => (t, period / 4),
            None => (self.opened, Duration::ZERO),
        };
        if now + slack >= since + period {
            self.last_sent = Some(now);
            true
        } else {
            false
        }
    }

    /// Has the remote been silent for too long? (A passive side too: a
    /// zerorpc server beats every call that lasts longer than a period, so
    /// one that never did in three has gone.)
    pub(crate) fn lost(&self, now: Instant, period: Duration) -> bool {
        let baseline = self.last_heard.unwrap_or(self.opened + period);
        now > baseline + 2 * period
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const F: Duration = Duration::from_secs(5);

    #[test]
    fn first_beat_after_one_period_then_every_period() {
        let t0 = Instant::now();
        let mut b = Beat::new(t0, true);
        assert!(!b.due(t0 + Duration::from_secs(2), F));
        assert!(!b.due(t0 + Duration::from_millis(4900), F), "never early");
        assert!(b.due(t0 + Duration::from_secs(5), F));
        assert!(!b.due(t0 + Duration::from_secs(7), F));
        // Later ones may be a quarter period early.
        assert!(b.due(t0 + Duration::from_millis(8800), F));
    }

    #[test]
    fn passive_waits_for_the_remote() {
        let t0 = Instant::now();
        let mut b = Beat::new(t0, false);
        assert!(!b.due(t0 + Duration::from_secs(14), F));
        b.heard_heartbeat(t0 + Duration::from_secs(5));
        assert!(b.due(t0 + Duration::from_secs(6), F));
    }

    /// A passive side whose remote never beats judges it lost as an
    /// active side does: three periods after opening.
    #[test]
    fn passive_loses_a_silent_remote_after_three_periods() {
        let t0 = Instant::now();
        let b = Beat::new(t0, false);
        assert!(!b.lost(t0 + Duration::from_secs(15), F));
        assert!(b.lost(t0 + Duration::from_millis(15_001), F));
    }

    #[test]
    fn a_tiny_period_is_raised_and_zero_is_off() {
        assert_eq!(period(Some(Duration::from_nanos(1))), Some(MIN_PERIOD));
        assert_eq!(period(Some(Duration::ZERO)), None);
        assert_eq!(period(None), None);
        assert_eq!(period(Some(F)), Some(F));
    }

    #[test]
    fn lost_after_two_periods_of_silence() {
        let t0 = Instant::now();
        let mut b = Beat::new(t0, true);
        // Never heard: baseline is one period after opening.
        assert!(!b.lost(t0 + Duration::from_secs(15), F));
        assert!(b.lost(t0 + Duration::from_millis(15_001), F));
        b.heard(t0 + Duration::from_secs(14));
        assert!(!b.lost(t0 + Duration::from_secs(24), F));
        assert!(b.lost(t0 + Duration::from_millis(24_001), F));
    }
}
