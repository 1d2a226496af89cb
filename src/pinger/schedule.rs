//! The Pinger's decisions, free of actors and sockets: how a sweep of N devices is spread over
//! the interval, how consecutive failed attempts add up to "disconnected", and which
//! status change, if any, a finished ping calls for.
//!
//! Called by `actor.rs`; unit-tested here.

use std::io::ErrorKind;
use std::time::Duration;

use crate::coap::ClientError;
use crate::registry::Status;

/// How often the actor releases a slice of a sweep.
pub(crate) const TICK: Duration = Duration::from_millis(100);

/// The steady rate at which a sweep starts pings. At this rate 10,000 devices take 2.5 s and
/// 100,000 would take 25 s; a short interval compresses it (see [`plan_sweep`]). The rate is
/// what keeps a large fleet from becoming one burst of datagrams.
pub(crate) const START_RATE_PER_S: u64 = 4_000;

/// A sweep spread in slices: `per_tick` devices are released every [`TICK`] for `ticks` ticks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SweepPlan {
    pub ticks: u64,
    pub per_tick: usize,
}

/// Spread `devices` over at most three quarters of `interval` (the last quarter leaves room
/// for the slow answers and retries of the sweep's tail before the next one begins), at
/// [`START_RATE_PER_S`] when that is fast enough.
pub(crate) fn plan_sweep(devices: usize, interval: Duration) -> SweepPlan {
    let tick_ms = TICK.as_millis() as u64;
    let at_rate_ms = (devices as u64).saturating_mul(1000) / START_RATE_PER_S;
    let cap_ms = (interval.as_millis() as u64).saturating_mul(3) / 4;
    let window_ms = at_rate_ms.min(cap_ms);
    let ticks = (window_ms / tick_ms).max(1);
    let per_tick = (devices as u64).div_ceil(ticks).max(1);
    SweepPlan {
        ticks,
        per_tick: usize::try_from(per_tick).unwrap_or(usize::MAX),
    }
}

/// What one ping attempt says about the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Attempt {
    /// It answered (RST or empty ACK — or anything at all, which still proves it is there).
    Answered,
    /// No answer within the attempt's budget, or the network refused the datagram.
    NoAnswer,
    /// The gateway could not try (shutting down, no socket of the peer's address family):
    /// says nothing about the device.
    NotTried,
}

/// Classify the result of `CoapClient::ping`.
pub(crate) fn classify(result: &Result<Duration, ClientError>) -> Attempt {
    match result {
        Ok(_) => Attempt::Answered,
        // A message came back, just not the expected empty one: the device is reachable.
        Err(ClientError::Protocol(_)) | Err(ClientError::Reset) => Attempt::Answered,
        Err(ClientError::Timeout) | Err(ClientError::Io(_)) => Attempt::NoAnswer,
        Err(ClientError::Unreachable(e)) if e.kind() == ErrorKind::AddrNotAvailable => {
            Attempt::NotTried
        }
        Err(ClientError::Unreachable(_)) => Attempt::NoAnswer,
        // Another exchange (an Observer poll, a command) held the device's NSTART slot for the
        // whole attempt, so the ping could not be sent. If the device answered that exchange
        // meanwhile it is alive; if it answered nothing for the whole attempt, that exchange
        // went unanswered too: the same evidence as an unanswered ping. Either way the attempt
        // counts, so the bound `interval + attempts * timeout` holds whatever else talks to
        // the device.
        Err(ClientError::PeerBusy {
            answered_meanwhile: true,
        }) => Attempt::Answered,
        Err(ClientError::PeerBusy {
            answered_meanwhile: false,
        }) => Attempt::NoAnswer,
        Err(ClientError::Overloaded) | Err(ClientError::Cancelled) => Attempt::NotTried,
    }
}

/// The verdict of one device's turn in a sweep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    Alive,
    /// `attempts` consecutive attempts went unanswered.
    Silent,
    Inconclusive,
}

/// Counts one device's attempts within a sweep. Failed attempts are retried at once, so a
/// device that stops answering is declared silent within `attempts * timeout` of its turn and
/// the bound `interval + attempts * timeout` holds.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Attempts {
    allowed: u32,
    failed: u32,
}

/// What to do after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Next {
    PingAgain,
    Done(Verdict),
}

impl Attempts {
    /// `allowed` is clamped to at least one attempt.
    pub(crate) fn new(allowed: u32) -> Self {
        Attempts {
            allowed: allowed.max(1),
            failed: 0,
        }
    }

    pub(crate) fn record(&mut self, attempt: Attempt) -> Next {
        match attempt {
            Attempt::Answered => Next::Done(Verdict::Alive),
            Attempt::NotTried => Next::Done(Verdict::Inconclusive),
            Attempt::NoAnswer => {
                self.failed += 1;
                if self.failed >= self.allowed {
                    Next::Done(Verdict::Silent)
                } else {
                    Next::PingAgain
                }
            }
        }
    }

    pub(crate) fn failed(&self) -> u32 {
        self.failed
    }
}

/// Attempts a device gets in a sweep. `configured` consecutive failures are what turns a
/// connected device to 0; a device already at 0 only needs one answer to come back, and a
/// missed ping changes nothing for it, so one attempt is enough — persistently silent devices
/// then hold a ping slot for one timeout per sweep instead of `attempts` of them.
pub(crate) fn attempts_for(current: Status, configured: u32) -> u32 {
    match current {
        Status::Connected => configured.max(1),
        Status::Disconnected => 1,
    }
}

/// The status to send to the Registry, if any. `current` is the registration's status when
/// the ping finished; `refreshed_during_ping` is true when the device updated or re-registered
/// after its first attempt was sent — fresher evidence of life than a missed ping.
pub(crate) fn status_change(
    current: Status,
    verdict: Verdict,
    refreshed_during_ping: bool,
) -> Option<Status> {
    match (verdict, current) {
        (Verdict::Alive, Status::Disconnected) => Some(Status::Connected),
        (Verdict::Silent, Status::Connected) if !refreshed_during_ping => {
            Some(Status::Disconnected)
        }
        _ => None,
    }
}

/// Counters of one sweep, logged when its last device is done.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct SweepTally {
    /// Devices the sweep will ping.
    pub planned: usize,
    /// Registrations left out: unparsable or multicast base, or still busy from an earlier sweep.
    pub skipped: usize,
    pub alive: usize,
    pub silent: usize,
    pub inconclusive: usize,
    /// Devices the sweep pinged that were removed before their ping finished.
    pub gone: usize,
}

impl SweepTally {
    pub(crate) fn record(&mut self, verdict: Verdict) {
        match verdict {
            Verdict::Alive => self.alive += 1,
            Verdict::Silent => self.silent += 1,
            Verdict::Inconclusive => self.inconclusive += 1,
        }
    }

    pub(crate) fn done(&self) -> usize {
        self.alive + self.silent + self.inconclusive
    }

    pub(crate) fn is_complete(&self) -> bool {
        self.done() >= self.planned
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_fleets_go_in_one_tick() {
        assert_eq!(
            plan_sweep(3, Duration::from_secs(1)),
            SweepPlan {
                ticks: 1,
                per_tick: 3
            }
        );
        assert_eq!(plan_sweep(0, Duration::from_secs(30)).per_tick, 1);
    }

    #[test]
    fn large_fleets_are_spread_at_the_start_rate() {
        let p = plan_sweep(10_000, Duration::from_secs(30));
        assert_eq!(p.ticks, 25); // 2.5 s
        assert_eq!(p.per_tick, 400);
        assert!(p.ticks as usize * p.per_tick >= 10_000);
    }

    #[test]
    fn huge_fleets_are_capped_at_three_quarters_of_the_interval() {
        let p = plan_sweep(100_000, Duration::from_secs(30));
        assert_eq!(p.ticks, 225); // 22.5 s
        assert!(p.ticks as usize * p.per_tick >= 100_000);
        assert!(p.per_tick <= 445);
        let short = plan_sweep(100_000, Duration::from_secs(1));
        assert_eq!(short.ticks, 7);
        assert!(short.ticks as usize * short.per_tick >= 100_000);
    }

    #[test]
    fn consecutive_failures_make_a_device_silent() {
        let mut a = Attempts::new(3);
        assert_eq!(a.record(Attempt::NoAnswer), Next::PingAgain);
        assert_eq!(a.record(Attempt::NoAnswer), Next::PingAgain);
        assert_eq!(a.record(Attempt::NoAnswer), Next::Done(Verdict::Silent));
        assert_eq!(a.failed(), 3);
    }

    #[test]
    fn one_answer_is_enough() {
        let mut a = Attempts::new(3);
        assert_eq!(a.record(Attempt::NoAnswer), Next::PingAgain);
        assert_eq!(a.record(Attempt::Answered), Next::Done(Verdict::Alive));
    }

    #[test]
    fn zero_attempts_means_one() {
        let mut a = Attempts::new(0);
        assert_eq!(a.record(Attempt::NoAnswer), Next::Done(Verdict::Silent));
    }

    #[test]
    fn not_tried_is_no_evidence() {
        let mut a = Attempts::new(2);
        assert_eq!(a.record(Attempt::NoAnswer), Next::PingAgain);
        assert_eq!(
            a.record(Attempt::NotTried),
            Next::Done(Verdict::Inconclusive)
        );
        assert_eq!(
            status_change(Status::Connected, Verdict::Inconclusive, false),
            None
        );
        assert_eq!(
            status_change(Status::Disconnected, Verdict::Inconclusive, false),
            None
        );
    }

    #[test]
    fn classification() {
        assert_eq!(classify(&Ok(Duration::from_millis(1))), Attempt::Answered);
        assert_eq!(classify(&Err(ClientError::Timeout)), Attempt::NoAnswer);
        assert_eq!(classify(&Err(ClientError::Cancelled)), Attempt::NotTried);
        assert_eq!(classify(&Err(ClientError::Overloaded)), Attempt::NotTried);
        let busy = |answered_meanwhile| Err(ClientError::PeerBusy { answered_meanwhile });
        assert_eq!(classify(&busy(true)), Attempt::Answered);
        assert_eq!(classify(&busy(false)), Attempt::NoAnswer);
        let no_family = std::io::Error::new(ErrorKind::AddrNotAvailable, "no v6 socket");
        assert_eq!(
            classify(&Err(ClientError::Unreachable(no_family))),
            Attempt::NotTried
        );
        let refused = std::io::Error::new(ErrorKind::ConnectionRefused, "icmp");
        assert_eq!(
            classify(&Err(ClientError::Unreachable(refused))),
            Attempt::NoAnswer
        );
    }

    #[test]
    fn status_changes_only_on_a_flip() {
        use Status::*;
        assert_eq!(
            status_change(Disconnected, Verdict::Alive, false),
            Some(Connected)
        );
        assert_eq!(status_change(Connected, Verdict::Alive, false), None);
        assert_eq!(
            status_change(Connected, Verdict::Silent, false),
            Some(Disconnected)
        );
        assert_eq!(status_change(Disconnected, Verdict::Silent, false), None);
        // A refresh during the ping outranks the missed ping.
        assert_eq!(status_change(Connected, Verdict::Silent, true), None);
    }

    #[test]
    fn disconnected_devices_get_one_attempt() {
        assert_eq!(attempts_for(Status::Connected, 3), 3);
        assert_eq!(attempts_for(Status::Connected, 0), 1);
        assert_eq!(attempts_for(Status::Disconnected, 3), 1);
    }

    #[test]
    fn tally_completes_when_every_planned_device_is_done() {
        let mut t = SweepTally {
            planned: 3,
            ..Default::default()
        };
        t.record(Verdict::Alive);
        t.record(Verdict::Silent);
        assert!(!t.is_complete());
        t.record(Verdict::Inconclusive);
        assert!(t.is_complete());
        assert_eq!((t.alive, t.silent, t.inconclusive), (1, 1, 1));
    }
}
