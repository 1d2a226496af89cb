//! Simple registrations in progress. A simple registration (RFC 9176 §5.1)
//! makes the gateway GET the registrant's `/.well-known/core` and wait up to 10 s for it, holding
//! a handler slot and one of the CoAP client's outgoing-request slots meanwhile. Without a bound,
//! a host that sends `POST /.well-known/rd` from many ports and never answers the GET held
//! thousands of both: honest clients got 5.03 and the Pinger, Executer and Observer, which share
//! the client's slots, were starved.
//!
//! The gate admits at most `per_source` simple registrations in progress per source (an IPv4
//! address or IPv6 prefix, `source_key.rs`; loopback exempt when configured) and at most `total`
//! overall, which config validation keeps well below `coap.max_in_flight` so the gateway's own
//! requests always find slots. A refused registration is answered 5.03 with a Max-Age at once.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};

use super::source_key::SourceGrouping;

/// Why the gate refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum GateRefusal {
    /// This source already has `per_source` in progress.
    Source,
    /// `total` are in progress.
    Full,
}

#[derive(Debug)]
struct State {
    per_source: HashMap<IpAddr, usize>,
    total: usize,
}

/// The bound; cheap to share (`Clone`).
#[derive(Debug, Clone)]
pub(crate) struct FetchGate {
    state: Arc<Mutex<State>>,
    max_total: usize,
    max_per_source: usize,
    grouping: SourceGrouping,
    exempt_loopback: bool,
}

/// One admitted simple registration; leaving the gate when dropped.
#[derive(Debug)]
pub(crate) struct FetchTicket {
    state: Arc<Mutex<State>>,
    /// `None` for an exempt source (counted only in the total).
    source: Option<IpAddr>,
}

impl FetchGate {
    pub(crate) fn new(
        max_total: usize,
        max_per_source: usize,
        grouping: SourceGrouping,
        exempt_loopback: bool,
    ) -> Self {
        FetchGate {
            state: Arc::new(Mutex::new(State {
                per_source: HashMap::new(),
                total: 0,
            })),
            max_total,
            max_per_source,
            grouping,
            exempt_loopback,
        }
    }

    /// Admit a simple registration from `ip`, or say why not.
    pub(crate) fn try_enter(&self, ip: IpAddr) -> Result<FetchTicket, GateRefusal> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let source = (!(self.exempt_loopback && ip.is_loopback())).then(|| self.grouping.key(ip));
        if let Some(key) = source {
            if state.per_source.get(&key).copied().unwrap_or(0) >= self.max_per_source {
                return Err(GateRefusal::Source);
            }
        }
        if state.total >= self.max_total {
            return Err(GateRefusal::Full);
        }
        state.total += 1;
        if let Some(key) = source {
            *state.per_source.entry(key).or_insert(0) += 1;
        }
        Ok(FetchTicket {
            state: Arc::clone(&self.state),
            source,
        })
    }

    /// Simple registrations in progress now.
    #[cfg(test)]
    pub(crate) fn in_progress(&self) -> usize {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .total
    }
}

impl Drop for FetchTicket {
    fn drop(&mut self) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.total = state.total.saturating_sub(1);
        if let Some(key) = self.source {
            if let Some(n) = state.per_source.get_mut(&key) {
                *n -= 1;
                if *n == 0 {
                    state.per_source.remove(&key);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn one_source_holds_at_most_its_share_and_gets_it_back() {
        let gate = FetchGate::new(10, 2, SourceGrouping::default(), true);
        let a = gate.try_enter(ip("10.0.0.1")).unwrap();
        let _b = gate.try_enter(ip("10.0.0.1")).unwrap();
        assert_eq!(
            gate.try_enter(ip("10.0.0.1")).unwrap_err(),
            GateRefusal::Source
        );
        let _other = gate.try_enter(ip("10.0.0.2")).unwrap();
        drop(a);
        assert!(gate.try_enter(ip("10.0.0.1")).is_ok());
        assert_eq!(
            gate.in_progress(),
            2,
            "a dropped ticket leaves the gate at once"
        );
    }

    #[test]
    fn the_total_is_bounded_and_ipv6_counts_per_prefix() {
        let gate = FetchGate::new(3, 2, SourceGrouping::default(), true);
        let _a = gate.try_enter(ip("fd99::3")).unwrap();
        let _b = gate.try_enter(ip("fd99::4")).unwrap();
        assert_eq!(
            gate.try_enter(ip("fd99::5")).unwrap_err(),
            GateRefusal::Source
        );
        let _c = gate.try_enter(ip("10.0.0.1")).unwrap();
        assert_eq!(
            gate.try_enter(ip("10.0.0.2")).unwrap_err(),
            GateRefusal::Full
        );
    }

    #[test]
    fn exempt_loopback_skips_the_per_source_share_only() {
        let gate = FetchGate::new(3, 1, SourceGrouping::default(), true);
        let held: Vec<_> = (0..3)
            .map(|_| gate.try_enter(ip("127.0.0.1")).unwrap())
            .collect();
        assert_eq!(
            gate.try_enter(ip("127.0.0.1")).unwrap_err(),
            GateRefusal::Full
        );
        drop(held);
        let strict = FetchGate::new(3, 1, SourceGrouping::default(), false);
        let _one = strict.try_enter(ip("127.0.0.1")).unwrap();
        assert_eq!(
            strict.try_enter(ip("127.0.0.1")).unwrap_err(),
            GateRefusal::Source
        );
    }
}
