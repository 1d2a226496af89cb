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
//! Credentials come first: a registration made over DTLS remembers its identity, and only that
//! identity may replace, update or remove it, from any address (FCFR by identity, not by IP);
//! a plain request gets 4.01 (it could succeed with credentials), another identity 4.03. This
//! holds whatever `rd.endpoint_protection` says. An authenticated identity may take over a
//! name held by a plain registration: the identities file already said it may use that name,
//! and an address proves less than a key.
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
    /// The registration was made over DTLS; a plain request may not change it (4.01).
    #[error("endpoint name {ep} is bound to a DTLS identity: use coaps with its credentials")]
    CredentialRequired { ep: String },
    /// The registration belongs to another DTLS identity (4.03).
    #[error("endpoint name {ep} is registered by another identity")]
    OtherIdentity { ep: String },
}

impl Refusal {
    /// Whether credentials would change the answer (4.01 Unauthorized rather than 4.03).
    pub fn wants_credentials(&self) -> bool {
        matches!(self, Refusal::CredentialRequired { .. })
    }
}

/// What the policy needs to know about the registration already held under the name.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Holder<'a> {
    pub source: SocketAddr,
    /// The DTLS identity that made it; `None` for a plain registration.
    pub identity: Option<&'a str>,
    /// Still remembered for its owner: live, or expired and within its grace.
    pub remembered: bool,
}

/// Who asks for a write: its address and, over DTLS, its identity.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Requester<'a> {
    pub source: SocketAddr,
    pub identity: Option<&'a str>,
}

/// The credential rule: `Some(Ok)` when the requester's identity owns or may take the name,
/// `Some(Err)` when credentials forbid it, `None` when neither side has credentials (the
/// address rule decides).
fn by_credentials(ep: &str, holder: Option<Holder>, who: Requester) -> Option<Result<(), Refusal>> {
    let owner = holder.filter(|h| h.remembered).and_then(|h| h.identity);
    match (owner, who.identity) {
        (Some(owner), Some(id)) if owner == id => Some(Ok(())),
        (Some(_), Some(_)) => Some(Err(Refusal::OtherIdentity { ep: ep.to_string() })),
        (Some(_), None) => Some(Err(Refusal::CredentialRequired { ep: ep.to_string() })),
        (None, Some(_)) => Some(Ok(())),
        (None, None) => None,
    }
}

/// A registration (POST /rd, simple, group) of `ep` by `who`, where `holder` holds the
/// name now and `who`'s address already holds `held_by_source` registrations.
pub(crate) fn check_registration(
    policy: WritePolicy,
    ep: &str,
    holder: Option<Holder>,
    who: Requester,
    held_by_source: usize,
) -> Result<(), Refusal> {
    let source = who.source;
    match by_credentials(ep, holder, who) {
        Some(decided) => decided?,
        None => {
            let same_host = holder.is_some_and(|h| h.source.ip() == source.ip());
            if policy.endpoint_protection && holder.is_some_and(|h| h.remembered) && !same_host {
                return Err(Refusal::NameProtected { ep: ep.to_string() });
            }
        }
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

/// An update (POST /reg/N) or a removal (DELETE /reg/N) of the registration `holder` by
/// `who`.
pub(crate) fn check_update(
    policy: WritePolicy,
    ep: &str,
    holder: Holder,
    who: Requester,
) -> Result<(), Refusal> {
    if let Some(decided) = by_credentials(ep, Some(holder), who) {
        return decided;
    }
    let source = who.source;
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

    /// The address rule's tests ask as plain requesters.
    fn check_registration(
        p: WritePolicy,
        ep: &str,
        h: Option<Holder>,
        source: SocketAddr,
        n: usize,
    ) -> Result<(), Refusal> {
        super::check_registration(p, ep, h, plain(source), n)
    }

    fn check_update(
        p: WritePolicy,
        ep: &str,
        h: Holder,
        source: SocketAddr,
    ) -> Result<(), Refusal> {
        super::check_update(p, ep, h, plain(source))
    }

    fn plain(source: SocketAddr) -> Requester<'static> {
        Requester {
            source,
            identity: None,
        }
    }

    fn as_identity(source: SocketAddr, identity: &str) -> Requester<'_> {
        Requester {
            source,
            identity: Some(identity),
        }
    }

    #[test]
    fn a_dtls_registration_belongs_to_its_identity_from_any_address() {
        let held = Holder {
            source: addr("10.0.0.1:5684"),
            identity: Some("node1"),
            remembered: true,
        };
        let elsewhere = addr("10.9.9.9:40000");
        // The owner, from a new address, with protection on or off.
        for policy in [
            ON,
            WritePolicy {
                endpoint_protection: false,
                ..ON
            },
        ] {
            assert_eq!(
                super::check_update(policy, "n1", held, as_identity(elsewhere, "node1")),
                Ok(())
            );
            assert_eq!(
                super::check_registration(
                    policy,
                    "n1",
                    Some(held),
                    as_identity(elsewhere, "node1"),
                    0
                ),
                Ok(())
            );
            // Another identity: 4.03; a plain request, even from the owner's address: 4.01.
            assert_eq!(
                super::check_update(policy, "n1", held, as_identity(elsewhere, "node2")),
                Err(Refusal::OtherIdentity { ep: "n1".into() })
            );
            let plain_from_owner = super::check_update(policy, "n1", held, plain(held.source));
            assert_eq!(
                plain_from_owner,
                Err(Refusal::CredentialRequired { ep: "n1".into() })
            );
            assert!(plain_from_owner.unwrap_err().wants_credentials());
            assert_eq!(
                super::check_registration(policy, "n1", Some(held), plain(held.source), 0),
                Err(Refusal::CredentialRequired { ep: "n1".into() })
            );
        }
        // An authenticated identity may take over a plain registration's name.
        let plain_held = Holder {
            identity: None,
            ..held
        };
        assert_eq!(
            super::check_registration(
                ON,
                "n1",
                Some(plain_held),
                as_identity(elsewhere, "node1"),
                0
            ),
            Ok(())
        );
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
            identity: None,
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
            identity: None,
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
            identity: None,
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
            identity: None,
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
