//! What the Observer watches and what it forwards, as pure decisions: which links
//! `observer.select` picks (RD lookup filters, RFC 9176 §6.2, matched by `rd::filter`), whether
//! a link is observed (RFC 7641, the link has `obs`) or polled, the per-device token bucket of
//! `observer.max_frames_per_s`, the `only_changes` comparison, and when an observation counts
//! as lost (no notification within Max-Age, RFC 7252 §5.10.5, plus a margin).
//!
//! Called by `observer::actor`, `observer::poll` and `observer::observation`. No actix, tokio or I/O here.

use std::time::Duration;

use thiserror::Error;

use crate::rd::filter::{link_matches, Filter, LookupQuery};
use crate::registry::Registration;
use link_format::Link;

/// RFC 7252 §5.10.5: Max-Age when a response carries none.
pub(crate) const DEFAULT_MAX_AGE_S: u32 = 60;
/// Slack on top of Max-Age before an observation without notifications is re-established.
pub(crate) const LOSS_MARGIN: Duration = Duration::from_secs(5);
/// First and last delay between attempts to (re-)establish one observation.
pub(crate) const BACKOFF_MIN: Duration = Duration::from_secs(1);
pub(crate) const BACKOFF_MAX: Duration = Duration::from_secs(60);

/// Why `observer.select` is unusable.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub(crate) enum SelectError {
    #[error("entry {0:?} is empty")]
    Empty(String),
    #[error("entry {entry:?}: {message}")]
    Invalid { entry: String, message: String },
}

/// `observer.select`: entries ORed, the filters inside one entry ANDed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Selection {
    entries: Vec<Vec<Filter>>,
}

impl Selection {
    /// Parse entries like `"obs"`, `"if=sensor"`, `"rt=temp*&if=sensor"` with the RD's own
    /// lookup-query parser, so the syntax is exactly that of a resource lookup.
    pub(crate) fn parse<S: AsRef<str>>(entries: &[S]) -> Result<Selection, SelectError> {
        let mut parsed = Vec::with_capacity(entries.len());
        for entry in entries {
            let entry = entry.as_ref().trim();
            if entry.is_empty() {
                return Err(SelectError::Empty(entry.to_string()));
            }
            let items: Vec<&str> = entry.split('&').collect();
            let invalid = |message: String| SelectError::Invalid {
                entry: entry.to_string(),
                message,
            };
            let query = LookupQuery::parse(&items).map_err(|e| invalid(e.to_string()))?;
            if query.page.is_some() || query.count.is_some() {
                return Err(invalid("page and count are not filters".into()));
            }
            if query.filters.is_empty() {
                return Err(SelectError::Empty(entry.to_string()));
            }
            parsed.push(query.filters);
        }
        Ok(Selection { entries: parsed })
    }

    pub(crate) fn selects(&self, reg: &Registration, link: &Link) -> bool {
        self.entries
            .iter()
            .any(|all| all.iter().all(|f| link_matches(reg, link, f, false)))
    }
}

/// How a selected link is watched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg(test)]
pub(crate) enum Watch {
    /// RFC 7641 observation: the link advertises `obs`.
    Observe,
    /// GET every `poll_interval_s`.
    Poll,
}

/// One link to watch: the Uri-Path to request at the device's base.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct Watched {
    pub path: String,
    pub observe: bool,
}

impl Watched {
    #[cfg(test)]
    pub(crate) fn watch(&self) -> Watch {
        if self.observe {
            Watch::Observe
        } else {
            Watch::Poll
        }
    }
}

/// The links of `reg` that `selection` picks, as paths on the device, sorted and deduplicated.
/// A link whose target lies outside the device's base (another host) is left out: the
/// Observer only talks to the registered device.
pub(crate) fn watched_links(selection: &Selection, reg: &Registration) -> Vec<Watched> {
    let mut out: Vec<Watched> = reg
        .links
        .iter()
        .filter(|l| selection.selects(reg, l))
        .filter_map(|l| {
            let path = path_on_device(&reg.base, &l.target)?;
            Some(Watched {
                path,
                observe: l.has("obs"),
            })
        })
        .collect();
    out.sort();
    out.dedup_by(|a, b| a.path == b.path);
    out
}

/// `/p` as is; `coap://base/p` when it starts with `base`; anything else (relative references,
/// foreign hosts) is not watched.
pub(crate) fn path_on_device(base: &str, target: &str) -> Option<String> {
    let path = if target.starts_with('/') {
        target
    } else {
        let rest = target.strip_prefix(base.trim_end_matches('/'))?;
        if !rest.starts_with('/') {
            return None;
        }
        rest
    };
    // A query or fragment in a link target is not a Uri-Path.
    let path = path.split(['?', '#']).next().unwrap_or_default();
    (!path.is_empty()).then(|| path.to_string())
}

/// How long an observation may stay quiet before it counts as lost.
pub(crate) fn loss_deadline(max_age_s: Option<u32>) -> Duration {
    Duration::from_secs(u64::from(max_age_s.unwrap_or(DEFAULT_MAX_AGE_S))) + LOSS_MARGIN
}

/// The delay before attempt `failures + 1` to establish an observation: doubling from
/// [`BACKOFF_MIN`], capped at [`BACKOFF_MAX`].
pub(crate) fn backoff(failures: u32) -> Duration {
    let factor = 1u32 << failures.min(16);
    BACKOFF_MIN.saturating_mul(factor).min(BACKOFF_MAX)
}

/// What `only_changes` compares: a poll result equals the previous one when code,
/// Content-Format and payload are all the same.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Reading {
    pub code: String,
    pub content_format: Option<u16>,
    pub payload: Vec<u8>,
}

/// Whether a poll result is forwarded.
pub(crate) fn forward_poll(only_changes: bool, previous: Option<&Reading>, new: &Reading) -> bool {
    !only_changes || previous != Some(new)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::{BaseOrigin, EndpointName, RegistrationId, Status};

    fn reg(links: &str) -> Registration {
        Registration {
            status_history: Default::default(),
            last_seen: Default::default(),
            identity: None,
            id: RegistrationId(1),
            ep: EndpointName::new("node1").unwrap(),
            d: None,
            base: "coap://127.0.0.1:5700".into(),
            base_origin: BaseOrigin::FromSource,
            lifetime_s: 90_000,
            attrs: Vec::new(),
            links: link_format::parse(links).unwrap().into(),
            status: Status::Connected,
            registered_at_ms: 0,
            updated_at_ms: 0,
            expires_at_ms: u64::MAX,
            source: "127.0.0.1:5700".parse().unwrap(),
        }
    }

    const LINKS: &str = "</sensors/temp>;rt=\"temperature\";if=\"sensor\";obs,\
        </actuators/led>;rt=\"light\";if=\"actuator\",</info>;rt=\"x\"";

    fn paths(sel: &[&str]) -> Vec<(String, Watch)> {
        let s = Selection::parse(sel).unwrap();
        watched_links(&s, &reg(LINKS))
            .into_iter()
            .map(|w| (w.path.clone(), w.watch()))
            .collect()
    }

    #[test]
    fn default_selection_picks_observable_and_sensor_links() {
        assert_eq!(
            paths(&["obs", "if=sensor"]),
            vec![("/sensors/temp".into(), Watch::Observe)]
        );
    }

    #[test]
    fn actuator_selected_by_interface_is_polled() {
        assert_eq!(
            paths(&["if=actuator"]),
            vec![("/actuators/led".into(), Watch::Poll)]
        );
        assert_eq!(
            paths(&["obs", "if=actuator"]),
            vec![
                ("/actuators/led".into(), Watch::Poll),
                ("/sensors/temp".into(), Watch::Observe)
            ]
        );
    }

    #[test]
    fn prefix_and_and_filters() {
        assert_eq!(
            paths(&["rt=temp*"]),
            vec![("/sensors/temp".into(), Watch::Observe)]
        );
        assert!(paths(&["rt=temp*&if=actuator"]).is_empty());
        assert_eq!(
            paths(&["href=coap://127.0.0.1:5700/info"]),
            vec![("/info".into(), Watch::Poll)]
        );
    }

    #[test]
    fn bad_selections_are_refused() {
        assert!(Selection::parse(&[""]).is_err());
        assert!(Selection::parse(&["count=2"]).is_err());
        assert!(Selection::parse(&["  "]).is_err());
    }

    #[test]
    fn targets_outside_the_base_are_not_watched() {
        let base = "coap://127.0.0.1:5700";
        assert_eq!(path_on_device(base, "/a/b").as_deref(), Some("/a/b"));
        assert_eq!(
            path_on_device(base, "coap://127.0.0.1:5700/a?x=1").as_deref(),
            Some("/a")
        );
        assert_eq!(path_on_device(base, "coap://10.0.0.1/a"), None);
        assert_eq!(path_on_device(base, "coap://127.0.0.1:57001/a"), None);
        assert_eq!(path_on_device(base, "rel"), None);
    }

    #[test]
    fn loss_deadline_is_max_age_plus_margin() {
        assert_eq!(loss_deadline(None), Duration::from_secs(65));
        assert_eq!(loss_deadline(Some(1)), Duration::from_secs(6));
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        assert_eq!(backoff(0), Duration::from_secs(1));
        assert_eq!(backoff(3), Duration::from_secs(8));
        assert_eq!(backoff(100), BACKOFF_MAX);
    }

    #[test]
    fn only_changes_drops_equal_readings() {
        let a = Reading {
            code: "2.05".into(),
            content_format: Some(0),
            payload: b"21.5".to_vec(),
        };
        let mut b = a.clone();
        assert!(forward_poll(true, None, &a));
        assert!(!forward_poll(true, Some(&a), &b));
        assert!(forward_poll(false, Some(&a), &b));
        b.payload = b"21.6".to_vec();
        assert!(forward_poll(true, Some(&a), &b));
        b.payload = a.payload.clone();
        b.content_format = Some(50);
        assert!(forward_poll(true, Some(&a), &b));
    }
}
