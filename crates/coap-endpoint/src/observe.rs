//! Observe (RFC 7641): the client's notification re-ordering rule (§3.4) and the server's
//! registry of observers (§4.1). Pure: time is passed in.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use super::message::{InboundRequest, ObserveKey};
use crate::admission::SourceGrouping;

const HALF: u32 = 1 << 23;
/// RFC 7641 §3.4: after 128 s any notification is fresher (the sequence may have wrapped).
const WRAP_TIME: Duration = Duration::from_secs(128);

/// Whether notification (v2, t2) is fresher than (v1, t1), RFC 7641 §3.4.
pub fn is_fresher(v1: u32, t1: Instant, v2: u32, t2: Instant) -> bool {
    (v1 < v2 && v2 - v1 < HALF) || (v1 > v2 && v1 - v2 > HALF) || t2 > t1 + WRAP_TIME
}

/// The client's view of one observation: accepts only fresher notifications.
#[derive(Debug, Default)]
pub struct Freshness {
    last: Option<(u32, Instant)>,
}

impl Freshness {
    /// True (and remembered) when `seq` received at `now` is newer than everything before.
    pub fn accept(&mut self, seq: u32, now: Instant) -> bool {
        let fresh = match self.last {
            None => true,
            Some((v1, t1)) => is_fresher(v1, t1, seq, now),
        };
        if fresh {
            self.last = Some((seq, now));
        }
        fresh
    }
}

/// Observations one source (an IPv4 address or an IPv6 /64, `limits/source_key.rs`) may hold at
/// once, over all its ports. Each costs a handler run per notification round and a datagram to
/// that address, so a host (or an attacker spoofing one: 50 ports x 16 observations sent a
/// victim 874 KB at once) must not multiply either; real clients observe a handful of
/// resources.
pub const MAX_OBSERVATIONS_PER_SOURCE: usize = 16;

/// Observers by resource key, and the reverse index by (peer, token) for deregistration.
#[derive(Default)]
pub struct ObserverRegistry {
    by_key: HashMap<ObserveKey, HashMap<(SocketAddr, Vec<u8>), InboundRequest>>,
    by_token: HashMap<(SocketAddr, Vec<u8>), ObserveKey>,
    /// Per observer: the generation of its newest notification (RFC 7641 §4.5.2: one
    /// notification in flight; a newer one replaces it).
    latest: HashMap<(SocketAddr, Vec<u8>), u64>,
    /// Per observer: the ETag of the last representation it was sent, so an unchanged
    /// representation is not sent again (RFC 7641 §4.2: notify when the state changes).
    sent_etag: HashMap<(SocketAddr, Vec<u8>), Vec<u8>>,
    /// Observations held per source (bounded by [`MAX_OBSERVATIONS_PER_SOURCE`]).
    per_source: HashMap<IpAddr, usize>,
    grouping: SourceGrouping,
    generation: u64,
    next_seq: u32,
    max: usize,
}

impl ObserverRegistry {
    pub fn new(max: usize, grouping: SourceGrouping) -> Self {
        ObserverRegistry {
            max,
            grouping,
            next_seq: 2,
            ..Default::default()
        }
    }

    pub fn len(&self) -> usize {
        self.by_token.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_token.is_empty()
    }

    /// Register (or re-register, §4.1: same token replaces) `req`'s sender as observer of `key`.
    /// False when full, overall or for that source (the request is then answered without
    /// registering, which RFC 7641 §4.1 allows).
    pub fn register(&mut self, key: ObserveKey, req: InboundRequest) -> bool {
        let id = (req.source, req.token.clone());
        self.remove(req.source, &req.token);
        let source = self.grouping.key(req.source.ip());
        if self.by_token.len() >= self.max
            || self.per_source.get(&source).copied().unwrap_or(0) >= MAX_OBSERVATIONS_PER_SOURCE
        {
            return false;
        }
        *self.per_source.entry(source).or_default() += 1;
        self.by_token.insert(id.clone(), key.clone());
        self.by_key.entry(key).or_default().insert(id, req);
        true
    }

    /// Remove the observation of (peer, token); true if there was one.
    pub fn remove(&mut self, peer: SocketAddr, token: &[u8]) -> bool {
        let id = (peer, token.to_vec());
        self.latest.remove(&id);
        self.sent_etag.remove(&id);
        let Some(key) = self.by_token.remove(&id) else {
            return false;
        };
        let source = self.grouping.key(peer.ip());
        if let Some(n) = self.per_source.get_mut(&source) {
            *n -= 1;
            if *n == 0 {
                self.per_source.remove(&source);
            }
        }
        if let Some(m) = self.by_key.get_mut(&key) {
            m.remove(&id);
            if m.is_empty() {
                self.by_key.remove(&key);
            }
        }
        true
    }

    pub fn count(&self, key: &ObserveKey) -> usize {
        self.by_key.get(key).map_or(0, HashMap::len)
    }

    /// The stored original requests of `key`'s observers.
    pub fn observers(&self, key: &ObserveKey) -> Vec<InboundRequest> {
        self.by_key
            .get(key)
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default()
    }

    pub fn is_observing(&self, peer: SocketAddr, token: &[u8]) -> bool {
        self.by_token.contains_key(&(peer, token.to_vec()))
    }

    /// Start a notification to (peer, token): returns its generation, which stays current
    /// until a newer notification to the same observer starts. None if not observing.
    pub fn begin_notification(&mut self, peer: SocketAddr, token: &[u8]) -> Option<u64> {
        let id = (peer, token.to_vec());
        if !self.by_token.contains_key(&id) {
            return None;
        }
        self.generation += 1;
        self.latest.insert(id, self.generation);
        Some(self.generation)
    }

    /// Whether `generation` is still the newest notification to (peer, token).
    pub fn is_current(&self, peer: SocketAddr, token: &[u8], generation: u64) -> bool {
        self.latest.get(&(peer, token.to_vec())) == Some(&generation)
    }

    /// Record that (peer, token) is being sent a representation with `etag`. Returns false when
    /// that observer was already sent this very ETag, so the notification can be skipped. A
    /// representation without an ETag always counts as changed.
    pub fn record_etag(&mut self, peer: SocketAddr, token: &[u8], etag: Option<&[u8]>) -> bool {
        let id = (peer, token.to_vec());
        match etag {
            None => {
                self.sent_etag.remove(&id);
                true
            }
            Some(etag) => {
                if !self.by_token.contains_key(&id) {
                    return true;
                }
                if self.sent_etag.get(&id).is_some_and(|e| e == etag) {
                    return false;
                }
                self.sent_etag.insert(id, etag.to_vec());
                true
            }
        }
    }

    /// The next Observe value (24 bits, wrapping; §4.4).
    pub fn next_seq(&mut self) -> u32 {
        let s = self.next_seq;
        self.next_seq = (self.next_seq + 1) & 0x00ff_ffff;
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::code::Method;

    #[test]
    fn freshness_follows_rfc_7641_3_4() {
        let t = Instant::now();
        assert!(is_fresher(1, t, 2, t));
        assert!(!is_fresher(2, t, 1, t));
        assert!(!is_fresher(5, t, 5, t));
        // Wrapped around 24 bits.
        assert!(is_fresher(0x00ff_fff0, t, 3, t));
        assert!(!is_fresher(3, t, 0x00ff_fff0, t));
        // Anything after 128 s.
        assert!(is_fresher(10, t, 2, t + Duration::from_secs(129)));

        let mut f = Freshness::default();
        assert!(f.accept(5, t));
        assert!(!f.accept(4, t), "reordered older notification dropped");
        assert!(f.accept(6, t));
        assert!(!f.accept(6, t), "duplicate dropped");
    }

    fn req(port: u16, token: u8) -> InboundRequest {
        req_from(SocketAddr::from(([127, 0, 0, 1], port)), token)
    }

    fn req_from(a: SocketAddr, token: u8) -> InboundRequest {
        InboundRequest {
            source: a,
            local: a,
            method: Method::Get,
            confirmable: true,
            path: vec!["x".into()],
            query: vec![],
            content_format: None,
            accept: None,
            observe: Some(0),
            etags: vec![],
            if_match: vec![],
            if_none_match: false,
            block2: None,
            payload: vec![],
            multicast: false,
            identity: None,
            token: vec![token],
        }
    }

    fn registry(max: usize) -> ObserverRegistry {
        ObserverRegistry::new(max, SourceGrouping::default())
    }

    #[test]
    fn one_source_holds_a_bounded_number_of_observations() {
        let mut r = registry(1000);
        let key = ObserveKey("k".into());
        for t in 0..MAX_OBSERVATIONS_PER_SOURCE as u8 {
            // Spread over ports: the bound is per address, not per socket.
            assert!(r.register(key.clone(), req(1000 + u16::from(t), t)));
        }
        assert!(
            !r.register(key.clone(), req(2000, 200)),
            "over the per-source cap, from a fresh port"
        );
        let other = SocketAddr::from(([127, 0, 0, 2], 1000));
        assert!(
            r.register(key.clone(), req_from(other, 200)),
            "another source is unaffected"
        );
        assert!(
            r.register(key.clone(), req(1000, 0)),
            "re-registering a token is no new slot"
        );
        let first = req(1001, 1);
        assert!(r.remove(first.source, &first.token));
        assert!(
            r.register(key, req(3000, 201)),
            "a freed slot can be reused"
        );
    }

    #[test]
    fn ipv6_observers_are_bounded_per_prefix() {
        let mut r = registry(1000);
        let key = ObserveKey("k".into());
        for n in 0..MAX_OBSERVATIONS_PER_SOURCE as u16 {
            let a: SocketAddr = format!("[fd99::{}]:5683", n + 1).parse().unwrap();
            assert!(r.register(key.clone(), req_from(a, 1)));
        }
        let same_64: SocketAddr = "[fd99::ffff]:5683".parse().unwrap();
        assert!(!r.register(key.clone(), req_from(same_64, 1)));
        let next_64: SocketAddr = "[fd99:0:0:1::1]:5683".parse().unwrap();
        assert!(r.register(key, req_from(next_64, 1)));
    }

    #[test]
    fn unchanged_etag_is_reported_once_per_observer() {
        let mut r = registry(10);
        let a = req(1000, 1);
        let b = req(1001, 2);
        let key = ObserveKey("k".into());
        assert!(r.register(key.clone(), a.clone()));
        assert!(r.register(key, b.clone()));
        assert!(r.record_etag(a.source, &a.token, Some(b"v1")));
        assert!(
            !r.record_etag(a.source, &a.token, Some(b"v1")),
            "same ETag: skip"
        );
        assert!(
            r.record_etag(b.source, &b.token, Some(b"v1")),
            "per observer"
        );
        assert!(r.record_etag(a.source, &a.token, Some(b"v2")));
        assert!(
            r.record_etag(a.source, &a.token, None),
            "no ETag: always send"
        );
        assert!(r.remove(a.source, &a.token));
        assert!(r.register(ObserveKey("k".into()), a.clone()));
        assert!(
            r.record_etag(a.source, &a.token, Some(b"v2")),
            "re-registration starts fresh"
        );
    }

    #[test]
    fn registry_registers_replaces_and_removes() {
        let mut r = registry(2);
        let k = ObserveKey("x".into());
        assert!(r.register(k.clone(), req(1, 1)));
        assert!(r.register(k.clone(), req(1, 1)), "same token replaces");
        assert_eq!(r.count(&k), 1);
        assert!(r.register(ObserveKey("y".into()), req(2, 1)));
        assert!(!r.register(k.clone(), req(3, 1)), "bounded");
        assert!(r.remove(req(1, 1).source, &[1]));
        assert!(!r.remove(req(1, 1).source, &[1]));
        assert_eq!(r.count(&k), 0);
        assert_eq!(r.len(), 1);
        let g1 = r.begin_notification(req(2, 1).source, &[1]).unwrap();
        assert!(r.is_current(req(2, 1).source, &[1], g1));
        let g2 = r.begin_notification(req(2, 1).source, &[1]).unwrap();
        assert!(
            !r.is_current(req(2, 1).source, &[1], g1),
            "replaced by the newer one"
        );
        assert!(r.is_current(req(2, 1).source, &[1], g2));
        assert_eq!(r.begin_notification(req(9, 1).source, &[1]), None);
        let a = r.next_seq();
        assert_eq!(r.next_seq(), a + 1);
    }
}
