//! The Registry's write decisions: each change (register, update, remove, status) checked
//! against the write policy and the registration limit, against the index as it is, and
//! turned into a [`Change`] and the reply it earns once stored. Nothing here writes: the sled
//! backend applies a decision at once (`apply`), the etcd backend sends it in a transaction
//! that re-checks what the decision read (`etcd_commit`). RFC 9176 §5 (registration) and §5.3
//! (update, removal).

use std::sync::Arc;

use super::Registry;
use crate::limits::{check_registration, check_update, Holder, Requester};
use crate::registry::change::{Cause, Change, Prior};
use crate::registry::error::RegistryError;
use crate::registry::messages::{Register, Registered, Remove, SetStatus, Update};
use crate::registry::model::{base_for, BaseOrigin, Registration, Status};
use crate::time::now_ms;

/// A decided write: the change to store (none when nothing changes) and the reply it earns.
pub(super) struct Decision<T> {
    pub(super) change: Option<Change>,
    pub(super) value: T,
}

impl Registry {
    pub(super) fn decide_register(
        &mut self,
        msg: Register,
    ) -> Result<Decision<Registered>, RegistryError> {
        let now = now_ms();
        let (base, base_origin) = match msg.base {
            Some(base) => (base, BaseOrigin::Explicit),
            None => (
                base_for(msg.source, msg.identity.is_some()),
                BaseOrigin::FromSource,
            ),
        };
        let existing = self.reader.with_index(|index| {
            let id = index.find_id_including_expired(&msg.ep, msg.d.as_ref())?;
            let reg = index.get_including_expired(id)?;
            Some((Arc::clone(reg), index.is_in_grace(id)))
        });
        // Held in the index, live or in grace: remembered for its owner.
        let holder = existing.as_ref().map(|(prev, _)| Holder {
            source: prev.source,
            identity: prev.identity.as_deref(),
            remembered: true,
        });
        check_registration(
            self.policy,
            msg.ep.as_str(),
            holder,
            Requester {
                source: msg.source,
                identity: msg.identity.as_deref(),
            },
            self.counts.held_by(msg.source.ip()),
        )?;
        let (id, registered_at_ms, previous) = match &existing {
            Some((prev, in_grace)) => (prev.id, prev.registered_at_ms, Some((prev, *in_grace))),
            None => {
                if let Some(limit) = self.max_registrations {
                    let held = self
                        .reader
                        .with_index(|index| index.len_live() + index.len_in_grace());
                    if held >= limit {
                        return Err(RegistryError::Full { limit });
                    }
                }
                (self.allocate_id()?, now, None)
            }
        };
        // A re-registration keeps the device's history; coming back from status 0 is a change.
        let (mut status_history, last_seen) = match &previous {
            Some((prev, _)) => (prev.status_history.clone(), prev.last_seen.clone()),
            None => Default::default(),
        };
        if previous.is_some_and(|(prev, _)| prev.status == Status::Disconnected) {
            status_history.record(now, Status::Connected);
        }
        let mut reg = Registration {
            status_history,
            last_seen,
            id,
            ep: msg.ep,
            d: msg.d,
            base: base.into(),
            base_origin,
            lifetime_s: msg.lifetime_s,
            attrs: msg.attrs,
            links: self.link_sets.share(msg.links.into()),
            status: Status::Connected,
            registered_at_ms,
            updated_at_ms: now,
            expires_at_ms: expiry(now, msg.lifetime_s),
            source: msg.source,
            identity: msg.identity.as_deref().map(Into::into),
        };
        shrink(&mut reg);
        let reg = Arc::new(reg);
        // A registration revived from grace is new again to everyone who saw it expire.
        let created = !matches!(previous, Some((_, false)));
        Ok(Decision {
            change: Some(Change::Put {
                next: Arc::clone(&reg),
                prior: previous.map(|(prev, in_grace)| Prior {
                    reg: Arc::clone(prev),
                    in_grace,
                }),
                cause: Cause::Register,
            }),
            value: Registered {
                registration: reg,
                created,
            },
        })
    }

    pub(super) fn decide_update(
        &mut self,
        msg: Update,
    ) -> Result<Decision<Arc<Registration>>, RegistryError> {
        let now = now_ms();
        let (prev, in_grace) = self
            .reader
            .with_index(|index| {
                let reg = index.get_including_expired(msg.id)?;
                Some((Arc::clone(reg), index.is_in_grace(msg.id)))
            })
            .ok_or(RegistryError::NotFound(msg.id))?;
        // In grace it is still the owner's: only the owner revives it.
        let holder = Holder {
            source: prev.source,
            identity: prev.identity.as_deref(),
            remembered: true,
        };
        let who = Requester {
            source: msg.source,
            identity: msg.identity.as_deref(),
        };
        check_update(self.policy, prev.ep.as_str(), holder, who)?;
        let mut next = (*prev).clone();
        if let Some(lifetime_s) = msg.lifetime_s {
            next.lifetime_s = lifetime_s;
        }
        match msg.base {
            Some(base) => {
                next.base = base.into();
                next.base_origin = BaseOrigin::Explicit;
            }
            // RFC 9176 §5.3.1: only a base the RD derived follows a changed source address.
            None if next.base_origin == BaseOrigin::FromSource
                && (next.source != msg.source
                    || next.identity.is_none() != msg.identity.is_none()) =>
            {
                next.base = base_for(msg.source, msg.identity.is_some()).into();
            }
            None => {}
        }
        next.source = msg.source;
        if msg.identity.is_some() {
            // A plain registration updated by an identity that may use its name: from now on
            // it is that identity's.
            next.identity = msg.identity.as_deref().map(Into::into);
        }
        override_attrs(&mut next.attrs, msg.attrs);
        shrink(&mut next);
        if next.status == Status::Disconnected {
            next.status_history.record(now, Status::Connected);
        }
        next.status = Status::Connected;
        next.updated_at_ms = now;
        next.expires_at_ms = expiry(now, next.lifetime_s);
        let next = Arc::new(next);
        Ok(Decision {
            change: Some(Change::Put {
                next: Arc::clone(&next),
                prior: Some(Prior {
                    reg: prev,
                    in_grace,
                }),
                cause: Cause::Update,
            }),
            value: next,
        })
    }

    pub(super) fn decide_remove(
        &mut self,
        msg: Remove,
    ) -> Result<Decision<Arc<Registration>>, RegistryError> {
        let (held, in_grace) = self
            .reader
            .with_index(|index| {
                let reg = index.get_including_expired(msg.id)?;
                Some((Arc::clone(reg), index.is_in_grace(msg.id)))
            })
            .ok_or(RegistryError::NotFound(msg.id))?;
        match msg.source {
            // A registration in grace is still remembered: another address gets 4.03, its
            // owner may delete it (and so free the name before the grace ends).
            Some(source) => {
                let holder = Holder {
                    source: held.source,
                    identity: held.identity.as_deref(),
                    remembered: true,
                };
                let who = Requester {
                    source,
                    identity: msg.identity.as_deref(),
                };
                check_update(self.policy, held.ep.as_str(), holder, who)?;
            }
            None if in_grace => return Err(RegistryError::NotFound(msg.id)),
            None => {}
        }
        Ok(Decision {
            change: Some(Change::Delete {
                prior: Prior {
                    reg: Arc::clone(&held),
                    in_grace,
                },
            }),
            value: held,
        })
    }

    pub(super) fn decide_set_status(
        &mut self,
        msg: SetStatus,
    ) -> Result<Decision<bool>, RegistryError> {
        let prev = self
            .reader
            .get(msg.id)
            .ok_or(RegistryError::NotFound(msg.id))?;
        if prev.status == msg.status {
            return Ok(Decision {
                change: None,
                value: false,
            });
        }
        let mut next = (*prev).clone();
        next.status = msg.status;
        next.status_history.record(now_ms(), msg.status);
        Ok(Decision {
            change: Some(Change::Put {
                next: Arc::new(next),
                prior: Some(Prior {
                    reg: prev,
                    in_grace: false,
                }),
                cause: Cause::Status,
            }),
            value: true,
        })
    }
}

/// Drop spare capacity before a registration is kept for good: at 100,000 registrations the
/// slack a parser or a growing `Vec` leaves behind is tens of megabytes (≤ 200 MB).
pub(super) fn shrink(reg: &mut Registration) {
    reg.base.shrink_to_fit();
    reg.attrs.shrink_to_fit();
    reg.attrs
        .iter_mut()
        .for_each(link_format::Param::shrink_to_fit);
}

fn expiry(now_ms: u64, lifetime_s: u32) -> u64 {
    now_ms.saturating_add(u64::from(lifetime_s) * 1000)
}

/// RFC 9176 §5.3.1: attributes in an update replace every attribute of the same name.
fn override_attrs(attrs: &mut Vec<link_format::Param>, updates: Vec<link_format::Param>) {
    for update in &updates {
        attrs.retain(|p| p.name != update.name);
    }
    attrs.extend(updates);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::WritePolicy;
    use crate::registry::actor::{start_with_policy, RegistryConfig};
    use link_format::Param;

    #[test]
    fn update_attributes_replace_same_named_ones() {
        let mut attrs = vec![
            Param::new("et", Some("a")),
            Param::new("x", Some("1")),
            Param::new("et", Some("b")),
        ];
        override_attrs(
            &mut attrs,
            vec![Param::new("et", Some("c")), Param::new("y", None::<String>)],
        );
        assert_eq!(
            attrs,
            vec![
                Param::new("x", Some("1")),
                Param::new("et", Some("c")),
                Param::new("y", None::<String>),
            ]
        );
    }

    #[actix_rt::test]
    async fn a_delete_from_another_address_is_refused_inside_the_actor() {
        let dir = tempfile::tempdir().unwrap();
        let policy = WritePolicy {
            endpoint_protection: true,
            max_per_source: None,
            exempt_loopback: true,
            grouping: crate::coap::admission::SourceGrouping::new(64),
        };
        let config = RegistryConfig::in_dir(dir.path().join("db"));
        let (registry, reader) = start_with_policy(config, policy).unwrap();
        let owner: std::net::SocketAddr = "10.0.0.1:5683".parse().unwrap();
        let register = Register {
            identity: None,
            ep: crate::registry::EndpointName::new("node").unwrap(),
            d: None,
            base: None,
            lifetime_s: 60,
            attrs: Vec::new(),
            links: vec![link_format::Link::new("/t")],
            source: owner,
        };
        let id = registry
            .send(register)
            .await
            .unwrap()
            .unwrap()
            .registration
            .id;
        let thief = "10.0.0.2:5683".parse().unwrap();
        assert!(matches!(
            registry
                .send(Remove::requested_by(id, thief, None))
                .await
                .unwrap(),
            Err(RegistryError::Refused(_))
        ));
        assert!(reader.get(id).is_some(), "still registered");
        // The same host from another port (a reboot, a NAT rebinding) may delete it.
        let rebooted = "10.0.0.1:40000".parse().unwrap();
        let removed = registry
            .send(Remove::requested_by(id, rebooted, None))
            .await
            .unwrap();
        assert_eq!(removed.unwrap().id, id);
        assert!(reader.get(id).is_none());
    }

    #[test]
    fn expiry_saturates() {
        assert_eq!(expiry(1_000, 2), 3_000);
        assert_eq!(expiry(u64::MAX - 1, u32::MAX), u64::MAX);
    }
}
