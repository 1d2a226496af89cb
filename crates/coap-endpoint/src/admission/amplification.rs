//! Amplification limits (RFC 7252 §11.3; RFC 9175 §2.4): a UDP request's source address is
//! unauthenticated, so a response may land on a victim who never asked. Until a source has
//! proven that it receives at its address, a response to it may be at most `factor` times the
//! request's size; a larger representation goes out Block2 (RFC 7959) in blocks small enough
//! to fit, and each further block is asked for by a request of its own, which is bounded the
//! same way.
//!
//! "Proven" here means one thing only: the source completed an Echo round trip (RFC 9175
//! §2.4). Every bounded response carries an Echo option whose value is a keyed hash of the
//! source address and the current minute ([`EchoSecret`], stateless); a request that returns a
//! current value proves the address. A client that ignores Echo keeps getting small blocks.
//!
//! An answer to one of the gateway's own requests (carrying its random token) does not count,
//! although only a host at that address could know the token: it proves the address is
//! alive, not that the *requests* from it are genuine. A spoofed simple registration makes the
//! gateway ask a victim, and the victim's honest answer would then unlock full-size answers
//! and notifications to everything an attacker sends in its name.
//!
//! Loopback addresses cannot be spoofed from the network (the kernel drops such packets
//! arriving on other interfaces) and may be trusted by configuration. Called by the CoAP
//! endpoint.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::net::IpAddr;

use super::source_table::SourceTable;

/// Sources that proved they receive at their address, bounded like every per-source table.
#[derive(Debug)]
pub struct ProvenSources {
    table: SourceTable<()>,
    trust_loopback: bool,
}

impl ProvenSources {
    pub fn new(capacity: usize, trust_loopback: bool) -> Self {
        ProvenSources {
            table: SourceTable::new(capacity),
            trust_loopback,
        }
    }

    pub fn mark(&mut self, ip: IpAddr) {
        self.table.entry(ip, || ());
    }

    pub fn is_proven(&self, ip: IpAddr) -> bool {
        (self.trust_loopback && ip.is_loopback()) || self.table.get(&ip).is_some()
    }
}

/// Echo values are valid in the window (of this many seconds) they were made in and the next.
pub const ECHO_WINDOW_S: u64 = 60;

/// The per-process key behind Echo values (SipHash with random keys, from `RandomState`).
#[derive(Debug, Default)]
pub struct EchoSecret {
    key: RandomState,
}

impl EchoSecret {
    /// The Echo value for `ip` at `unix_s`: 8 bytes no other host can predict.
    pub fn value(&self, ip: IpAddr, unix_s: u64) -> [u8; 8] {
        self.key
            .hash_one((ip, unix_s / ECHO_WINDOW_S))
            .to_be_bytes()
    }

    /// `echo` was made for `ip` in this window or the previous one.
    pub fn verify(&self, ip: IpAddr, echo: &[u8], unix_s: u64) -> bool {
        let previous = unix_s.saturating_sub(ECHO_WINDOW_S);
        echo == self.value(ip, unix_s) || echo == self.value(ip, previous)
    }
}

/// The largest block size (a power of two in 16..=`max_block`) whose response fits `budget`
/// bytes given `overhead` bytes of header, token and options; 16 when even that does not fit
/// (the smallest block CoAP has: the response is then as small as it can be).
pub fn block_size_within(budget: usize, overhead: usize, max_block: usize) -> usize {
    let room = budget.saturating_sub(overhead);
    let mut size = max_block.clamp(16, 1024);
    while size > 16 && size > room {
        size /= 2;
    }
    size
}

/// A response of `response_len` bytes to a request of `request_len` bytes is within budget.
pub fn within_budget(response_len: usize, request_len: usize, factor: usize) -> bool {
    factor == 0 || response_len <= request_len.saturating_mul(factor)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[test]
    fn block_size_fits_the_budget() {
        // A 20-byte GET, factor 3: 60 bytes, ~25 of them header and options.
        assert_eq!(block_size_within(60, 25, 1024), 32);
        assert_eq!(block_size_within(3_000, 25, 1024), 1024);
        assert_eq!(block_size_within(3_000, 25, 256), 256);
        assert_eq!(block_size_within(10, 25, 1024), 16);
    }

    #[test]
    fn budget_is_a_factor_of_the_request() {
        assert!(within_budget(60, 20, 3));
        assert!(!within_budget(61, 20, 3));
        assert!(within_budget(1_000_000, 20, 0), "factor 0 is off");
    }

    #[test]
    fn echo_values_are_per_address_and_expire() {
        let secret = EchoSecret::default();
        let a = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
        let b = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2));
        let t = 1_000_000;
        let v = secret.value(a, t);
        assert!(secret.verify(a, &v, t));
        assert!(secret.verify(a, &v, t + ECHO_WINDOW_S));
        assert!(!secret.verify(a, &v, t + 3 * ECHO_WINDOW_S), "stale");
        assert!(!secret.verify(b, &v, t), "another address");
        assert!(!EchoSecret::default().verify(a, &v, t), "another process");
        assert!(!secret.verify(a, b"", t));
    }

    #[test]
    fn proven_sources() {
        let a = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
        let lo = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let mut p = ProvenSources::new(100, true);
        assert!(!p.is_proven(a));
        assert!(p.is_proven(lo));
        p.mark(a);
        assert!(p.is_proven(a));
        let strict = ProvenSources::new(100, false);
        assert!(!strict.is_proven(lo));
    }
}
