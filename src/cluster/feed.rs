//! The cluster feed of the leader's platform link (`docs/ha-etcd.md` §8): registry events read
//! from etcd's history, each numbered by the revision that wrote it, so that any leader gives
//! one event the same seq.
//!
//! A leader elected in term `L` (the create revision of its `P/leader` key) reads the
//! platform's acknowledgement `s` that the previous leaders stored in `P/platform/acked`, and
//! watches everything under the prefix, with what each change replaced, from `s`'s revision
//! (from `L` when nothing is stored: the snapshot covers the past). Change `i` of a revision
//! yields the events `change::events_of` derives from the record it replaced and the record
//! it wrote, the function every replica's index uses, numbered by `revision_seq`; a batch of
//! device data a replica put on `P/data/<member>` (`cluster::data_relay`) yields its frames,
//! numbered the same way, so data survives a leader change as events do. The feed has
//! caught up once it has applied revision `L` (the put of its own leader key); then the link
//! dials, and its other frames are numbered above every seq the previous leader used.
//! Progress notifications are not trusted for this: etcd 3.4 answers a progress request at
//! once, ahead of history still unsent. Every 500 ms it stores the platform's newest acknowledgement,
//! fenced on the term, so a replaced leader writes nothing. A history etcd has compacted is
//! given up (`FeedLost`): the link reconnects and its snapshot restates every device.
//!
//! [`Numberer`] is pure and unit-tested; [`run`] is the task around it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use etcd_client::EventType;
use futures::StreamExt;

use super::data_relay;
use crate::limits::LogThrottle;
use crate::platform::outbox::revision_seq;
use crate::platform::{FeedLost, FeedStarted, NumberedEvents, OutboundFrame, PlatformLink};
use crate::registry::change::{events_of, After, Cause, Prior};
use crate::registry::etcd::keys::Keys;
use crate::registry::etcd::record::{self, State};
use crate::registry::etcd::EtcdStore;
use crate::time::now_ms;

/// How often the acknowledgement and the link are looked at.
const TICK: Duration = Duration::from_millis(100);
/// The platform's acknowledgement is stored at most this often.
const STORE_ACKED_EVERY: Duration = Duration::from_millis(500);
/// Wait before re-opening a watch that failed.
const REWATCH_AFTER: Duration = Duration::from_secs(1);

static DECODE_LOG: LogThrottle = LogThrottle::new();

/// One change the watch delivered.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FeedChange<'a> {
    pub revision: i64,
    pub key: &'a str,
    /// The value written; None for a deletion.
    pub value: Option<&'a [u8]>,
    /// The value it replaced.
    pub prev: Option<&'a [u8]>,
}

/// Numbers the frames of changes in watch order: the events of registration changes and the
/// device data of `P/data/<member>` batches (`cluster::data_relay`). Only those keys take
/// change slots (a data frame one slot each), so every leader counts the same slots in a
/// revision.
#[derive(Debug, Default)]
pub(crate) struct Numberer {
    revision: i64,
    next_change: usize,
}

impl Numberer {
    fn next_slot(&mut self, revision: i64) -> usize {
        if revision != self.revision {
            self.revision = revision;
            self.next_change = 0;
        }
        let slot = self.next_change;
        self.next_change += 1;
        slot
    }

    /// The numbered frames of one change (none for a key that is neither a registration nor
    /// data); an error names a record or batch that cannot be decoded (a registration still
    /// takes its slot). `at_ms` is the time a `device_status` frame carries.
    pub(crate) fn number(
        &mut self,
        keys: &Keys,
        change: FeedChange<'_>,
        at_ms: u64,
    ) -> Result<Vec<(u64, OutboundFrame)>, String> {
        if keys.is_data(change.key) {
            return self.number_data(change);
        }
        if keys.registration_id(change.key).is_none() {
            return Ok(Vec::new());
        }
        let slot = self.next_slot(change.revision);
        let decode = |value: &[u8]| record::decode(change.key, value).map_err(|e| e.to_string());
        let prior = match change.prev.map(decode).transpose() {
            Ok(prior) => prior.map(|(reg, meta)| Prior {
                reg: Arc::new(reg),
                in_grace: meta.state == State::Expired,
            }),
            // Announced as new: the platform learns the device either way.
            Err(e) => {
                log_decode(&e);
                None
            }
        };
        let (after, cause) = match change.value.map(decode).transpose()? {
            None => (None, Cause::Update),
            Some((reg, meta)) => (Some((Arc::new(reg), meta.state)), meta.cause),
        };
        let after = match &after {
            None => After::Gone,
            Some((reg, State::Live)) => After::Live(reg),
            Some((reg, State::Expired)) => After::Expired(reg),
        };
        events_of(prior.as_ref(), after, cause)
            .into_iter()
            .enumerate()
            .map(|(frame, event)| {
                revision_seq::event_seq(change.revision, slot, frame)
                    .map(|seq| (seq, OutboundFrame::from_event(&event, at_ms)))
                    .ok_or_else(|| too_many(change.revision))
            })
            .collect()
    }

    /// A batch of device data: each frame in its own slot. A deletion (the member's lease
    /// lapsed) carries nothing.
    fn number_data(&mut self, change: FeedChange<'_>) -> Result<Vec<(u64, OutboundFrame)>, String> {
        let Some(batch) = change.value else {
            return Ok(Vec::new());
        };
        let frames = data_relay::decode_batch(batch).map_err(|e| {
            format!(
                "{}: a batch of device data that cannot be read: {e}",
                change.key
            )
        })?;
        frames
            .into_iter()
            .map(|frame| {
                let slot = self.next_slot(change.revision);
                revision_seq::event_seq(change.revision, slot, 0)
                    .map(|seq| (seq, frame))
                    .ok_or_else(|| too_many(change.revision))
            })
            .collect()
    }
}

fn too_many(revision: i64) -> String {
    format!("revision {revision} changes more than can be numbered")
}

fn log_decode(e: &str) {
    if let Some(n) = DECODE_LOG.note() {
        log::error!("cluster feed: {n} record(s) not announced: {e}");
    }
}

/// Run the feed of the link of term `term` until the link stops.
pub async fn run(store: EtcdStore, term: i64, link: Addr<PlatformLink>) {
    let resume = loop {
        match store.platform_acked().await {
            Ok(seq) => break seq,
            Err(e) => {
                log::warn!("cluster feed: {e}; trying again");
                tokio::time::sleep(REWATCH_AFTER).await;
                if !link.connected() {
                    return;
                }
            }
        }
    };
    let (from, resume_seq) = if resume > 0 {
        (revision_seq::revision_of(resume), resume)
    } else {
        (term, revision_seq::before_term(term))
    };
    log::info!(
        "cluster feed: term {term}, the platform has every frame up to seq {resume_seq}; reading events from revision {from}"
    );
    let acked = Arc::new(AtomicU64::new(resume_seq));
    link.do_send(FeedStarted {
        resume_seq,
        acked: Arc::clone(&acked),
    });
    let mut feed = Feed {
        store,
        term,
        link,
        acked,
        stored_acked: resume_seq,
        last_store: Instant::now(),
        numberer: Numberer::default(),
        position: from - 1,
        registrations_at: 0,
        fenced_out: false,
    };
    while feed.link.connected() {
        feed.follow().await;
        tokio::time::sleep(REWATCH_AFTER).await;
    }
}

struct Feed {
    store: EtcdStore,
    term: i64,
    link: Addr<PlatformLink>,
    acked: Arc<AtomicU64>,
    stored_acked: u64,
    last_store: Instant,
    numberer: Numberer,
    position: i64,
    registrations_at: i64,
    /// A newer term exists: this leader stores nothing more.
    fenced_out: bool,
}

impl Feed {
    /// Watch from the revision after the position until the watch or the link ends.
    async fn follow(&mut self) {
        let from = self.position + 1;
        let stream = match self.store.watch_cluster(from).await {
            Ok(stream) => stream,
            Err(e) => {
                log::warn!("cluster feed: {e}");
                return;
            }
        };
        // Kept: dropping the request side would end the watch.
        let (_requests, mut responses) = stream.split();
        let mut tick = tokio::time::interval(TICK);
        loop {
            tokio::select! {
                response = responses.next() => {
                    let response = match response {
                        Some(Ok(response)) => response,
                        Some(Err(e)) => {
                            log::warn!("cluster feed: the watch failed: {e}; re-opening it");
                            return;
                        }
                        None => {
                            log::warn!("cluster feed: the watch ended; re-opening it");
                            return;
                        }
                    };
                    if response.canceled() {
                        let compacted_at = response.compact_revision();
                        self.link.do_send(FeedLost {
                            from: self.position + 1,
                            compacted_at,
                        });
                        self.position = self.position.max(compacted_at - 1);
                        return;
                    }
                    self.apply(&response);
                }
                _ = tick.tick() => {
                    if !self.link.connected() {
                        return;
                    }
                    self.store_acked().await;
                }
            }
        }
    }

    fn apply(&mut self, response: &etcd_client::WatchResponse) {
        // The position moves only with changes delivered: a response without any (the
        // watch's creation) says nothing. Progress notifications are not used: etcd 3.4
        // answers a progress request at once, ahead of history still unsent.
        if response.events().is_empty() {
            return;
        }
        let mut frames = Vec::new();
        let now = now_ms();
        for event in response.events() {
            let Some(kv) = event.kv() else { continue };
            let Ok(key) = std::str::from_utf8(kv.key()) else {
                continue;
            };
            let revision = kv.mod_revision();
            let change = FeedChange {
                revision,
                key,
                value: (event.event_type() == EventType::Put).then(|| kv.value()),
                prev: event.prev_kv().map(|p| p.value()),
            };
            match self.numberer.number(self.store.keys(), change, now) {
                Ok(numbered) => frames.extend(numbered),
                Err(e) => log_decode(&e),
            }
            if self.store.keys().registration_id(key).is_some() {
                self.registrations_at = self.registrations_at.max(revision);
            }
            self.position = self.position.max(revision);
        }
        self.link.do_send(NumberedEvents {
            frames,
            position: self.position,
            registrations_at: self.registrations_at,
            caught_up: self.position >= self.term,
        });
    }

    /// Store the platform's newest acknowledgement, fenced on the term.
    async fn store_acked(&mut self) {
        let acked = self.acked.load(Ordering::Relaxed);
        if self.fenced_out
            || acked <= self.stored_acked
            || self.last_store.elapsed() < STORE_ACKED_EVERY
        {
            return;
        }
        self.last_store = Instant::now();
        match self.store.put_platform_acked(acked, self.term).await {
            Ok(true) => self.stored_acked = acked,
            Ok(false) => {
                log::warn!(
                    "cluster feed: term {} is over; the platform's acknowledgement is left to the new leader",
                    self.term
                );
                self.fenced_out = true;
            }
            Err(e) => log::warn!("cluster feed: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::change::Cause;
    use crate::registry::etcd::record::Meta;
    use crate::registry::model::Status;

    fn value(status: Status, state: State, cause: Cause) -> Vec<u8> {
        let mut reg = crate::registry::store::tests::sample(7);
        reg.status = status;
        record::encode(&reg, Meta { state, cause }).unwrap()
    }

    fn kinds(frames: &[(u64, OutboundFrame)]) -> Vec<(u64, &'static str)> {
        frames
            .iter()
            .map(|(seq, f)| {
                let kind = match f {
                    OutboundFrame::DeviceRegistered { .. } => "registered",
                    OutboundFrame::DeviceUpdated { .. } => "updated",
                    OutboundFrame::DeviceStatus { .. } => "status",
                    OutboundFrame::DeviceRemoved { .. } => "removed",
                    OutboundFrame::Data(_) => "data",
                    _ => "other",
                };
                (*seq, kind)
            })
            .collect()
    }

    #[test]
    fn every_leader_numbers_the_changes_of_a_revision_alike() {
        let keys = Keys::new("/p");
        let reg7 = keys.registration(7);
        let reg8 = keys.registration(8);
        let name = keys.name(None, "node7");
        let up = value(Status::Connected, State::Live, Cause::Register);
        let down_update = value(Status::Disconnected, State::Live, Cause::Update);
        let back_up = value(Status::Connected, State::Live, Cause::Update);
        let expired = value(Status::Disconnected, State::Expired, Cause::Expire);
        let changes = [
            // Revision 10: a name key (no slot), a new registration, another's update.
            FeedChange {
                revision: 10,
                key: &name,
                value: Some(b"7"),
                prev: None,
            },
            FeedChange {
                revision: 10,
                key: &reg7,
                value: Some(&up),
                prev: None,
            },
            FeedChange {
                revision: 10,
                key: &reg8,
                value: Some(&back_up),
                prev: Some(&down_update),
            },
            // Revision 11: expiry, then revision 12: the purge announces nothing.
            FeedChange {
                revision: 11,
                key: &reg7,
                value: Some(&expired),
                prev: Some(&up),
            },
            FeedChange {
                revision: 12,
                key: &reg7,
                value: None,
                prev: Some(&expired),
            },
        ];
        let number = |changes: &[FeedChange<'_>]| {
            let mut numberer = Numberer::default();
            changes
                .iter()
                .flat_map(|c| numberer.number(&keys, *c, 0).unwrap())
                .collect::<Vec<_>>()
        };
        let events = number(&changes);
        assert_eq!(
            kinds(&events),
            vec![
                (10 << 20, "registered"),
                ((10 << 20) + 2, "updated"),
                ((10 << 20) + 3, "status"),
                (11 << 20, "removed"),
            ]
        );
        // A leader that resumes in the middle of the history gives the same seqs.
        assert_eq!(kinds(&number(&changes[3..])), kinds(&events[3..]));
    }

    #[test]
    fn an_undecodable_record_is_an_error_and_keeps_its_slot() {
        let keys = Keys::new("/p");
        let (reg7, reg8) = (keys.registration(7), keys.registration(8));
        let up = value(Status::Connected, State::Live, Cause::Register);
        let mut numberer = Numberer::default();
        let broken = FeedChange {
            revision: 5,
            key: &reg7,
            value: Some(b"{not json"),
            prev: None,
        };
        assert!(numberer.number(&keys, broken, 0).is_err());
        let next = FeedChange {
            revision: 5,
            key: &reg8,
            value: Some(&up),
            prev: None,
        };
        let events = numberer.number(&keys, next, 0).unwrap();
        assert_eq!(kinds(&events), vec![((5 << 20) + 2, "registered")]);
    }

    #[test]
    fn each_frame_of_a_data_batch_takes_a_slot_after_the_changes_before_it() {
        let keys = Keys::new("/p");
        let reg7 = keys.registration(7);
        let data_b = keys.data("b");
        let up = value(Status::Connected, State::Live, Cause::Register);
        let frame = |ep: &str| {
            OutboundFrame::Data(crate::platform::protocol::DataFrame::new(
                ep, None, "/t", "2.05", None, b"1", 0,
            ))
        };
        let (batches, _) = data_relay::encode_batches(&[frame("x"), frame("y")]);
        let mut numberer = Numberer::default();
        let mut numbered = Vec::new();
        for change in [
            FeedChange {
                revision: 20,
                key: &reg7,
                value: Some(&up),
                prev: None,
            },
            FeedChange {
                revision: 21,
                key: &data_b,
                value: Some(&batches[0].json),
                prev: None,
            },
            // The member's lease lapsed: its key goes, and nothing is announced.
            FeedChange {
                revision: 22,
                key: &data_b,
                value: None,
                prev: Some(&batches[0].json),
            },
        ] {
            numbered.extend(numberer.number(&keys, change, 0).unwrap());
        }
        assert_eq!(
            kinds(&numbered),
            vec![
                (20 << 20, "registered"),
                (21 << 20, "data"),
                ((21 << 20) + 2, "data")
            ]
        );
        assert_eq!(numbered[1].1, frame("x"));
        assert_eq!(numbered[2].1, frame("y"));
        let broken = FeedChange {
            revision: 23,
            key: &data_b,
            value: Some(b"[{\"type\":\"data\"}]"),
            prev: None,
        };
        assert!(numberer.number(&keys, broken, 0).is_err());
    }
}
