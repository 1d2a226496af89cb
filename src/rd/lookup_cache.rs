//! A shared cache of rendered lookup results, so that many clients asking the same lookup (and
//! every Block2 follow-up, Observe re-check and revalidation) do not each re-filter and
//! re-render the registry: at 100,000 registrations a full `/rd-lookup/res?rt=temperature` is
//! 7 MB of link-format and costs a quarter of a second to build.
//!
//! An entry is valid only for the registry version it was rendered from (the index bumps its
//! version on every change), so a hit is always the current answer. Bounded by entry count and
//! bytes; stale versions are evicted first, then the least recently used. No actix, no I/O.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Mutex, MutexGuard};

use bytes::Bytes;

use super::resolve::is_link_local_ip;
use super::route::Route;

/// What a rendered lookup depends on besides the registry: the resource, the query as sent,
/// and which link-local registrations the requester may see (`lookup::visible_to`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct CacheKey {
    route: Route,
    query: Vec<String>,
    /// `None` for a requester outside any link-local scope (it sees no link-local bases);
    /// otherwise its IPv6 scope id (0 when it has none, e.g. IPv4 169.254/16).
    link_scope: Option<u32>,
}

impl CacheKey {
    pub(crate) fn new(route: Route, query: &[String], requester: SocketAddr) -> CacheKey {
        let link_scope = is_link_local_ip(requester.ip()).then(|| match requester {
            SocketAddr::V6(a) => a.scope_id(),
            SocketAddr::V4(_) => 0,
        });
        CacheKey {
            route,
            query: query.to_vec(),
            link_scope,
        }
    }
}

/// A rendered lookup: the payload and its ETag. Cloning shares the payload (a reference
/// count), so every request answered from one entry sends from the same allocation.
#[derive(Clone, Debug)]
pub(crate) struct Rendered {
    pub payload: Bytes,
    pub etag: Vec<u8>,
}

struct Entry {
    version: u64,
    rendered: Rendered,
    last_used: u64,
}

#[derive(Default)]
struct Inner {
    map: HashMap<CacheKey, Entry>,
    bytes: usize,
    clock: u64,
}

pub(crate) struct LookupCache {
    inner: Mutex<Inner>,
    max_entries: usize,
    max_bytes: usize,
}

impl LookupCache {
    pub(crate) fn new(max_entries: usize, max_bytes: usize) -> LookupCache {
        LookupCache {
            inner: Mutex::new(Inner::default()),
            max_entries: max_entries.max(1),
            max_bytes,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the map inconsistent in a way that
        // matters: at worst an entry is missing. Recover rather than propagate the poison.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The rendering of `key` at registry `version`, if cached.
    pub(crate) fn get(&self, key: &CacheKey, version: u64) -> Option<Rendered> {
        let mut inner = self.lock();
        inner.clock += 1;
        let now = inner.clock;
        let entry = inner.map.get_mut(key)?;
        if entry.version != version {
            return None;
        }
        entry.last_used = now;
        Some(entry.rendered.clone())
    }

    /// Remember a rendering made at `version`. Results larger than half the byte budget are not
    /// kept (they would evict everything else).
    pub(crate) fn put(&self, key: CacheKey, version: u64, rendered: Rendered) {
        let size = rendered.payload.len() + rendered.etag.len();
        if size > self.max_bytes / 2 {
            return;
        }
        let mut inner = self.lock();
        inner.clock += 1;
        let now = inner.clock;
        if let Some(old) = inner.map.remove(&key) {
            inner.bytes -= old.rendered.payload.len() + old.rendered.etag.len();
        }
        // Entries of older versions can never hit again.
        if inner.map.len() >= self.max_entries || inner.bytes + size > self.max_bytes {
            let stale: Vec<CacheKey> = inner
                .map
                .iter()
                .filter(|(_, e)| e.version != version)
                .map(|(k, _)| k.clone())
                .collect();
            for k in stale {
                if let Some(e) = inner.map.remove(&k) {
                    inner.bytes -= e.rendered.payload.len() + e.rendered.etag.len();
                }
            }
        }
        while inner.map.len() >= self.max_entries || inner.bytes + size > self.max_bytes {
            let Some(oldest) = inner
                .map
                .iter()
                .min_by_key(|(_, e)| e.last_used)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            if let Some(e) = inner.map.remove(&oldest) {
                inner.bytes -= e.rendered.payload.len() + e.rendered.etag.len();
            }
        }
        inner.bytes += size;
        inner.map.insert(
            key,
            Entry {
                version,
                rendered,
                last_used: now,
            },
        );
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.lock().map.len()
    }

    #[cfg(test)]
    pub(crate) fn bytes(&self) -> usize {
        self.lock().bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(q: &str) -> CacheKey {
        CacheKey::new(
            Route::LookupResources,
            &[q.to_string()],
            "192.0.2.1:5683".parse().unwrap(),
        )
    }

    fn rendered(n: usize) -> Rendered {
        Rendered {
            payload: Bytes::from(vec![b'x'; n]),
            etag: vec![1, 2],
        }
    }

    #[test]
    fn a_hit_needs_the_same_version() {
        let c = LookupCache::new(8, 1 << 20);
        c.put(key("rt=a"), 7, rendered(10));
        assert!(c.get(&key("rt=a"), 7).is_some());
        assert!(c.get(&key("rt=a"), 8).is_none(), "registry changed since");
        assert!(c.get(&key("rt=b"), 7).is_none());
    }

    #[test]
    fn hits_share_the_rendered_allocation() {
        let c = LookupCache::new(8, 1 << 20);
        let original = rendered(1000);
        c.put(key("rt=a"), 1, original.clone());
        let a = c.get(&key("rt=a"), 1).unwrap();
        let b = c.get(&key("rt=a"), 1).unwrap();
        assert_eq!(a.payload.as_ptr(), original.payload.as_ptr());
        assert_eq!(a.payload.as_ptr(), b.payload.as_ptr(), "no copy per hit");
    }

    #[test]
    fn requesters_on_a_link_are_keyed_apart_from_the_rest() {
        let q = ["rt=a".to_string()];
        let global = CacheKey::new(
            Route::LookupEndpoints,
            &q,
            "[2001:db8::1]:1".parse().unwrap(),
        );
        let other_global = CacheKey::new(
            Route::LookupEndpoints,
            &q,
            "198.51.100.7:9".parse().unwrap(),
        );
        let on_link = CacheKey::new(Route::LookupEndpoints, &q, "[fe80::1%2]:1".parse().unwrap());
        let other_link =
            CacheKey::new(Route::LookupEndpoints, &q, "[fe80::1%3]:1".parse().unwrap());
        assert_eq!(
            global, other_global,
            "non-link-local requesters share results"
        );
        assert_ne!(global, on_link);
        assert_ne!(on_link, other_link);
    }

    #[test]
    fn bounded_by_entries_and_bytes_evicting_stale_then_least_recent() {
        let c = LookupCache::new(3, 100);
        c.put(key("1"), 1, rendered(10));
        c.put(key("2"), 2, rendered(10));
        c.put(key("3"), 2, rendered(10));
        c.put(key("4"), 2, rendered(10));
        assert!(
            c.get(&key("1"), 1).is_none(),
            "the stale version went first"
        );
        assert_eq!(c.len(), 3);
        assert!(c.get(&key("2"), 2).is_some());
        c.put(key("5"), 2, rendered(10));
        assert!(c.get(&key("3"), 2).is_none(), "least recently used evicted");
        assert!(c.get(&key("2"), 2).is_some());
        c.put(key("big"), 2, rendered(60));
        assert!(
            c.get(&key("big"), 2).is_none(),
            "over half the budget: not kept"
        );
        c.put(key("6"), 2, rendered(40));
        assert!(c.bytes() <= 100, "{}", c.bytes());
    }
}
