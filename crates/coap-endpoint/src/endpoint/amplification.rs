//! The endpoint's side of the amplification defence (RFC 7252 §11.3, RFC 9175 Echo): whether
//! a source is proven, what may be sent to it, and paying the excess from the budget
//! (`limits::excess_budget`).

use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Instant;

use coap_lite::Packet;

use super::{lock, Shared};
use crate::admission::{LogThrottle, ProvenSources};

/// Answers cut to the amplification bound because the excess budget was spent.
pub(super) static EXCESS_SPENT_LOG: LogThrottle = LogThrottle::new();
/// RFC 9175 §2.2.1.
pub(super) const ECHO_OPTION: u16 = 252;

pub(super) fn unix_now_s() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Shared {
    /// A request that returns the Echo value of a bounded response proves its address.
    pub(super) fn check_echo(
        &self,
        proven: &Mutex<ProvenSources>,
        packet: &Packet,
        peer: SocketAddr,
    ) {
        let echo = packet
            .get_option(coap_lite::CoapOption::Unknown(ECHO_OPTION))
            .and_then(|values| values.front());
        if let Some(echo) = echo {
            if self.echo.verify(peer.ip(), echo, unix_now_s()) {
                lock(proven).mark(peer.ip());
            }
        }
    }

    /// The byte budget of a response to `peer` (RFC 7252 §11.3), `None` when unbounded: the
    /// bound is off, the source is proven, or it is an exempt loopback address.
    pub(super) fn amplification_budget(
        &self,
        peer: SocketAddr,
        request_len: usize,
    ) -> Option<usize> {
        let proven = self.proven.as_ref()?;
        let factor = self.params.admission.amplification_factor;
        if lock(proven).is_proven(peer.ip()) {
            return None;
        }
        Some(request_len.saturating_mul(factor))
    }

    /// Whether `len` bytes may go to `peer` in answer to a request of `request_len` bytes:
    /// always when the peer is proven (or the bound is off), within the factor, or when the
    /// excess over the factor can be paid from the gateway-wide budget (which is then spent).
    pub(super) fn may_send(&self, peer: SocketAddr, len: usize, request_len: usize) -> bool {
        let Some(budget) = self.amplification_budget(peer, request_len) else {
            return true;
        };
        len <= budget || self.spend_excess(peer, len - budget)
    }

    /// Whether `len` bytes that answer no request of the moment (a notification, a resent
    /// separate response) may go to `peer`: always when it is proven (or the bound is off or it
    /// is an exempt loopback address); otherwise all of them are paid from the excess budget.
    pub(super) fn may_send_unsolicited(&self, peer: SocketAddr, len: usize) -> bool {
        self.may_send(peer, len, 0)
    }

    /// Remember that `peer` was answered, so that it is familiar to the excess budget's
    /// reserve should a flood spend the open pool later (`ExcessBudget`).
    pub(super) fn note_answered(&self, peer: SocketAddr) {
        if let Some(budget) = &self.excess {
            let source = self.params.admission.source_grouping.key(peer.ip());
            lock(budget).note(source, Instant::now());
        }
    }

    /// Pay `bytes` over the factor from the excess budget; false when it cannot. A strict
    /// configuration (no budget) cuts without a warning: that is what it asked for.
    pub(super) fn spend_excess(&self, peer: SocketAddr, bytes: usize) -> bool {
        let Some(budget) = &self.excess else {
            return false;
        };
        let source = self.params.admission.source_grouping.key(peer.ip());
        let granted = lock(budget).try_spend(source, bytes, Instant::now());
        if !granted {
            if let Some(n) = EXCESS_SPENT_LOG.note() {
                log::warn!(
                    "coap: {n} answer(s) to unproven sources cut to the amplification bound in \
                     the last {}s: the excess budget (limits.unproven_excess_bytes_per_s) is \
                     spent, which a reflection attack or an unusually busy LAN does",
                    crate::admission::log_throttle::REPORT_EVERY_S
                );
            }
        }
        granted
    }
}
