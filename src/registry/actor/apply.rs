//! The sled backend's write path: a decided change (`writes`) is written to sled (in memory
//! until the group commit flushes it, `commit`), applied to the index and the per-source
//! counts, and its events derived (`change::events_of`), all in the handler call that decided
//! it, so the next decision already sees it.

use std::sync::Arc;

use super::writes::Decision;
use super::{Backend, Registry};
use crate::registry::change::{events_of, After, Cause, Change};
use crate::registry::error::RegistryError;
use crate::registry::messages::RegistryEvent;

impl Registry {
    /// Apply a decision on sled: the reply and the events to publish once flushed.
    pub(super) fn apply_locally<T>(
        &mut self,
        decided: Result<Decision<T>, RegistryError>,
    ) -> Result<(T, Vec<RegistryEvent>), RegistryError> {
        let Decision { change, value } = decided?;
        let events = match change {
            Some(change) => self.apply_change(change)?,
            None => Vec::new(),
        };
        Ok((value, events))
    }

    fn apply_change(&mut self, change: Change) -> Result<Vec<RegistryEvent>, RegistryError> {
        let Backend::Sled(store) = &mut self.backend else {
            return Err(RegistryError::Unavailable);
        };
        match change {
            Change::Put { next, prior, cause } => {
                store.put(&next)?;
                self.reader.write().insert(Arc::clone(&next));
                match &prior {
                    Some(p) => self.counts.moved(p.reg.source.ip(), next.source.ip()),
                    None => self.counts.add(next.source.ip()),
                }
                Ok(events_of(prior.as_ref(), After::Live(&next), cause))
            }
            Change::Delete { prior } => {
                let id = prior.reg.id;
                store.remove(id)?;
                let removed = self
                    .reader
                    .write()
                    .remove(id)
                    .ok_or(RegistryError::NotFound(id))?;
                self.counts.remove(removed.source.ip());
                self.trim_link_sets();
                Ok(events_of(Some(&prior), After::Gone, Cause::Update))
            }
        }
    }
}
