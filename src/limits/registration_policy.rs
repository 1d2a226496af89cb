//! Who may write a registration: First Come First Remembered (RFC 9176 §7.5) and the quota of
//! registrations per source address. Decided by the Registry actor inside its single
//! writer path, so a check and the write it allows cannot be separated by another write.
//!
//! FCFR without credentials: the "subject" remembered is the source IP address the
//! registration was last written from. A registration of an `ep`+`d` may then be replaced,
//! updated or removed only from that address; anyone else gets 4.03 until it is removed or
//! its grace ends.
//!
//! The grace (`rd.expiry_grace_s`) counts as remembered: an expired registration in grace is
//! still held for its owner, who may revive it at the same `/reg/N` with an update or a
//! re-registration, and the RD will forget it only at the end of that grace. Forgetting it at
//! expiry let another address revive `/reg/N` in the owner's place (`POST /reg/4?lt=…`),
//! re-pointing its base and locking the owner out. The name is free once the
//! grace is over and the record purged; an owner whose address changed waits that long.
//! The port does not count: a device behind NAT gets a new port after a rebinding, and a device
//! that reboots picks a new ephemeral port, both normal; a port change on the same address
//! is the same host (or something on-path, which could hijack the address too).
//!
//! The per-source quota bounds how many registrations (live or in grace, as for
//! `rd.max_registrations`) one address may hold, so one host cannot fill the directory or squat
//! every name. Beyond it a new `ep`+`d` is refused with 4.03, not 5.03: the condition is about
//! the client and lasts until its own registrations go away, so "retry after Max-Age" would
//! only invite a retry loop (RFC 7252 §5.9.2.4 vs §5.9.3.4).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};

use super::source_key::SourceGrouping;

use thiserror::Error;

/// The Registry's write policy, from `rd.endpoint_protection` and
/// `limits.max_registrations_per_source`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct WritePolicy {
    pub endpoint_protection: bool,
    pub max_per_source: Option<usize>,
    /// Loopback sources (local processes) are exempt from the quota (`limits.exempt_loopback`).
    pub exempt_loopback: bool,
    /// What the quota counts as one source (an IPv6 /64 by default).
    pub grouping: SourceGrouping,
}

/// Why a write was refused; the RD answers 4.03 Forbidden with this as diagnostic.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Refusal {
    #[error(
        "endpoint name {ep} is registered from another address (first come, first remembered)"
    )]
    NameProtected { ep: String },
    #[error("this address already holds {limit} registrations")]
    SourceQuota { limit: usize },
}

/// What the policy needs to know about the registration already held under the name.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Holder {
    pub source: SocketAddr,
    /// Still remembered for its owner: live, or expired and within its grace.
    pub remembered: bool,
}

/// A registration (POST /rd, simple, group) of `ep` from `source`, where `holder` holds the
/// name now and `source` already holds `held_by_source` registrations.
pub(crate) fn check_registration(
    policy: WritePolicy,
    ep: &str,
    holder: Option<Holder>,
    source: SocketAddr,
    held_by_source: usize,
) -> Result<(), Refusal> {
    let same_host = holder.is_some_and(|h| h.source.ip() == source.ip());
    if policy.endpoint_protection && holder.is_some_and(|h| h.remembered) && !same_host {
        return Err(Refusal::NameProtected { ep: ep.to_string() });
    }
    let exempt = policy.exempt_loopback && source.ip().is_loopback();
    // Moving a name between addresses of one source (an IPv6 /64) takes no new quota.
    let key = |ip| policy.grouping.key(ip);
    let same_source = holder.is_some_and(|h| key(h.source.ip()) == key(source.ip()));
    if let Some(limit) = policy.max_per_source.filter(|_| !exempt) {
        if !same_source && held_by_source >= limit {
            return Err(Refusal::SourceQuota { limit });
        }
    }
    Ok(())
}

/// An update (POST /reg/N) or a removal (DELETE /reg/N) of the registration `holder` from
/// `source`.
pub(crate) fn check_update(
    policy: WritePolicy,
    ep: &str,
    holder: Holder,
    source: SocketAddr,
) -> Result<(), Refusal> {
    if policy.endpoint_protection && holder.remembered && holder.source.ip() != source.ip() {
        return Err(Refusal::NameProtected { ep: ep.to_string() });
    }
    Ok(())
}

/// Registrations held per source (live or in grace), kept by the Registry on every write,
/// expiry purge and load. One entry per distinct source (an IPv4 address, an IPv6 prefix; see
/// `source_key.rs`) that holds anything.
#[derive(Debug, Default)]
pub(crate) struct SourceCounts {
    counts: HashMap<IpAddr, usize>,
    grouping: SourceGrouping,
}

impl SourceCounts {
    pub(crate) fn new(grouping: SourceGrouping) -> Self {
        SourceCounts {
            counts: HashMap::new(),
            grouping,
        }
    }

    pub(crate) fn held_by(&self, ip: IpAddr) -> usize {
        let key = self.grouping.key(ip);
        self.counts.get(&key).copied().unwrap_or(0)
    }

    pub(crate) fn add(&mut self, ip: IpAddr) {
        *self.counts.entry(self.grouping.key(ip)).or_insert(0) += 1;
    }

    pub(crate) fn remove(&mut self, ip: IpAddr) {
        let ip = self.grouping.key(ip);
        if let Some(n) = self.counts.get_mut(&ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.counts.remove(&ip);
            }
        }
    }

    /// A held registration was rewritten from `to` (it was last written from `from`).
    pub(crate) fn moved(&mut self, from: IpAddr, to: IpAddr) {
        if self.grouping.key(from) != self.grouping.key(to) {
            self.remove(from);
            self.add(to);
        }
    }

    #[cfg(test)]
    pub(crate) fn sources(&self) -> usize {
        self.counts.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    const ON: WritePolicy = WritePolicy {
        endpoint_protection: true,
        max_per_source: None,
        exempt_loopback: false,
        grouping: SourceGrouping::new(64),
    };

    #[test]
    fn fcfr_refuses_another_address_while_live() {
        let holder = Holder {
            source: addr("10.0.0.1:5683"),
            remembered: true,
        };
        assert_eq!(
            check_registration(ON, "n1", Some(holder), addr("10.0.0.2:5683"), 0),
            Err(Refusal::NameProtected { ep: "n1".into() })
        );
        assert_eq!(
            check_update(ON, "n1", holder, addr("10.0.0.2:5683")),
            Err(Refusal::NameProtected { ep: "n1".into() })
        );
        // A new port on the same address is the same host (NAT rebinding, reboot).
        assert_eq!(
            check_registration(ON, "n1", Some(holder), addr("10.0.0.1:40000"), 0),
            Ok(())
        );
        assert_eq!(
            check_update(ON, "n1", holder, addr("10.0.0.1:40000")),
            Ok(())
        );
    }

    #[test]
    fn fcfr_forgets_a_purged_registration_and_can_be_off() {
        let expired = Holder {
            source: addr("10.0.0.1:5683"),
            remembered: false,
        };
        let other = addr("10.0.0.2:5683");
        assert_eq!(check_registration(ON, "n", Some(expired), other, 0), Ok(()));
        assert_eq!(check_update(ON, "n", expired, other), Ok(()));
        let live = Holder {
            remembered: true,
            ..expired
        };
        let off = WritePolicy::default();
        assert_eq!(check_registration(off, "n", Some(live), other, 0), Ok(()));
        assert_eq!(check_update(off, "n", live, other), Ok(()));
    }

    #[test]
    fn quota_counts_only_new_names_for_the_source() {
        let policy = WritePolicy {
            endpoint_protection: false,
            max_per_source: Some(2),
            exempt_loopback: true,
            grouping: SourceGrouping::new(64),
        };
        let me = addr("10.0.0.1:5683");
        assert_eq!(check_registration(policy, "a", None, me, 1), Ok(()));
        assert_eq!(
            check_registration(policy, "c", None, me, 2),
            Err(Refusal::SourceQuota { limit: 2 })
        );
        // Re-registering a name it holds is always fine.
        let mine = Holder {
            source: me,
            remembered: true,
        };
        assert_eq!(check_registration(policy, "a", Some(mine), me, 2), Ok(()));
        let local = addr("127.0.0.1:5683");
        assert_eq!(check_registration(policy, "c", None, local, 2), Ok(()));
    }

    #[test]
    fn counts_follow_writes() {
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let mut c = SourceCounts::default();
        c.add(a);
        c.add(a);
        c.moved(a, b);
        assert_eq!((c.held_by(a), c.held_by(b)), (1, 1));
        c.remove(a);
        c.remove(a);
        assert_eq!(c.held_by(a), 0);
        assert_eq!(c.sources(), 1);
    }

    #[test]
    fn ipv6_addresses_of_one_prefix_share_one_quota() {
        let mut c = SourceCounts::new(SourceGrouping::default());
        for n in 3..=8 {
            c.add(format!("fd99::{n}").parse().unwrap());
        }
        assert_eq!(c.held_by("fd99::1234".parse().unwrap()), 6);
        assert_eq!(c.held_by("fd99:0:0:1::3".parse().unwrap()), 0);
        c.moved("fd99::3".parse().unwrap(), "fd99::9".parse().unwrap());
        assert_eq!(c.held_by("fd99::1".parse().unwrap()), 6);
        assert_eq!(c.sources(), 1);

        let policy = WritePolicy {
            max_per_source: Some(6),
            ..WritePolicy::default()
        };
        let other_address = addr("[fd99::77]:5683");
        assert_eq!(
            check_registration(policy, "new", None, other_address, 6),
            Err(Refusal::SourceQuota { limit: 6 })
        );
        let held_from_the_prefix = Holder {
            source: addr("[fd99::3]:5683"),
            remembered: true,
        };
        assert_eq!(
            check_registration(policy, "mine", Some(held_from_the_prefix), other_address, 6),
            Ok(()),
            "re-registering a name the prefix holds takes no new quota"
        );
    }
}
