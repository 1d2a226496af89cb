//! A decided write before any store has it: the record it puts or the registration it
//! deletes, what it replaces, and why. From a change and what it replaced every replica
//! derives the same events ([`events_of`]): the sled backend when it applies its own change,
//! the etcd backend when the watch delivers anyone's (`docs/ha-etcd.md` §4, §5).

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::messages::{RegistryEvent, RemovalReason};
use super::model::{Registration, RegistrationId};

/// Why a record was written; stored with it on etcd, so that a replica that only sees the
/// result derives the events the writer meant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Cause {
    /// A registration (RFC 9176 §5), new or repeated.
    Register,
    /// A registration update (§5.3.1).
    Update,
    /// A liveness change seen by the Pinger.
    Status,
    /// The lifetime ended: the record stays, expired, for the grace period.
    Expire,
}

/// What a change replaces: a registration, live or expired in its grace period.
#[derive(Debug, Clone)]
pub struct Prior {
    pub reg: Arc<Registration>,
    pub in_grace: bool,
}

/// A decided write.
#[derive(Debug, Clone)]
pub enum Change {
    /// Write `next` (live, or expired when `cause` is [`Cause::Expire`]).
    Put {
        next: Arc<Registration>,
        prior: Option<Prior>,
        cause: Cause,
    },
    /// Forget `prior` (a DELETE, a removal by the gateway, or a purge after the grace).
    Delete { prior: Prior },
}

impl Change {
    /// The registration id the change writes.
    pub fn id(&self) -> RegistrationId {
        match self {
            Change::Put { next, .. } => next.id,
            Change::Delete { prior } => prior.reg.id,
        }
    }
}

/// A registration after a change.
#[derive(Debug, Clone, Copy)]
pub(crate) enum After<'a> {
    Live(&'a Arc<Registration>),
    Expired(&'a Arc<Registration>),
    Gone,
}

/// The events of one change, in order. A registration in grace was announced as removed when
/// it expired, so reviving it announces it anew and deleting it announces nothing.
pub(crate) fn events_of(
    prior: Option<&Prior>,
    after: After<'_>,
    cause: Cause,
) -> Vec<RegistryEvent> {
    let live_prior = prior.filter(|p| !p.in_grace);
    match after {
        After::Gone => live_prior
            .map(|p| RegistryEvent::Removed {
                registration: Arc::clone(&p.reg),
                reason: RemovalReason::Deleted,
            })
            .into_iter()
            .collect(),
        After::Expired(reg) => live_prior
            .map(|_| RegistryEvent::Removed {
                registration: Arc::clone(reg),
                reason: RemovalReason::Expired,
            })
            .into_iter()
            .collect(),
        After::Live(reg) => match live_prior {
            None => vec![RegistryEvent::Registered(Arc::clone(reg))],
            Some(p) if cause == Cause::Status => {
                if p.reg.status == reg.status {
                    Vec::new()
                } else {
                    vec![RegistryEvent::StatusChanged(Arc::clone(reg))]
                }
            }
            Some(p) => {
                let mut events = vec![RegistryEvent::Updated(Arc::clone(reg))];
                if p.reg.status != reg.status {
                    events.push(RegistryEvent::StatusChanged(Arc::clone(reg)));
                }
                events
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::model::Status;

    fn reg(status: Status) -> Arc<Registration> {
        let mut r = crate::registry::store::tests::sample(7);
        r.status = status;
        Arc::new(r)
    }

    fn prior(status: Status, in_grace: bool) -> Prior {
        Prior {
            reg: reg(status),
            in_grace,
        }
    }

    fn names(events: &[RegistryEvent]) -> Vec<&'static str> {
        events
            .iter()
            .map(|e| match e {
                RegistryEvent::Registered(_) => "registered",
                RegistryEvent::Updated(_) => "updated",
                RegistryEvent::StatusChanged(_) => "status",
                RegistryEvent::Removed {
                    reason: RemovalReason::Deleted,
                    ..
                } => "deleted",
                RegistryEvent::Removed {
                    reason: RemovalReason::Expired,
                    ..
                } => "expired",
            })
            .collect()
    }

    #[test]
    fn each_change_announces_what_a_subscriber_must_learn() {
        let up = reg(Status::Connected);
        let down = reg(Status::Disconnected);
        let live_up = prior(Status::Connected, false);
        let live_down = prior(Status::Disconnected, false);
        let grave = prior(Status::Connected, true);
        let cases: [(Option<&Prior>, After<'_>, Cause, &[&str]); 10] = [
            (None, After::Live(&up), Cause::Register, &["registered"]),
            (
                Some(&grave),
                After::Live(&up),
                Cause::Register,
                &["registered"],
            ),
            (
                Some(&grave),
                After::Live(&up),
                Cause::Update,
                &["registered"],
            ),
            (
                Some(&live_up),
                After::Live(&up),
                Cause::Register,
                &["updated"],
            ),
            (
                Some(&live_down),
                After::Live(&up),
                Cause::Update,
                &["updated", "status"],
            ),
            (
                Some(&live_up),
                After::Live(&down),
                Cause::Status,
                &["status"],
            ),
            (Some(&live_up), After::Live(&up), Cause::Status, &[]),
            (
                Some(&live_up),
                After::Expired(&up),
                Cause::Expire,
                &["expired"],
            ),
            (Some(&live_up), After::Gone, Cause::Update, &["deleted"]),
            (Some(&grave), After::Gone, Cause::Update, &[]),
        ];
        for (i, (prior, after, cause, expected)) in cases.into_iter().enumerate() {
            assert_eq!(names(&events_of(prior, after, cause)), expected, "case {i}");
        }
    }
}
