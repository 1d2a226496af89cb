//! Device data and command results of a replica on etcd on their way to the platform
//! (`docs/ha-etcd.md` §8). Each replica observes the devices it owns, but only the elected
//! leader holds the platform link, so the Observer's `data` and `data_error` frames go to the
//! [`DataRelay`], which puts them in batches on `P/data/<member>` (one put per batch, on the
//! member's lease), and the leader's cluster feed, which reads every revision of every key
//! under the prefix, forwards each batch's frames with seqs derived from the batch's revision
//! (`cluster::feed::Numberer`).
//!
//! The leader's Executer hands its `command_result` frames ([`SendFrame`]) to a relay of its
//! own the same way: a result on etcd is re-sent by whichever replica leads next, so a leader
//! that dies before the platform acknowledged a result does not take it along. Results that
//! arrive while a put is running go together in the next put. A result etcd does not take
//! within [`RETRY_FOR`] goes to the link directly (the relay's `fallback`): delivered while
//! this leader lives, as before.
//!
//! Why through etcd rather than a direct link between replicas: no second listener, secret or
//! TLS set-up to run on a network its owner does not fully control (etcd's TLS and
//! credentials are already there), and the data takes the events' path, so it survives a
//! leader change (the next leader resumes at the stored acknowledgement) and needs no leader
//! at the moment it is written. The price is etcd's history: every batch is kept until
//! compaction, so a cluster with much data needs etcd's auto-compaction
//! (`docs/ha-etcd.md` §11 has the arithmetic).
//!
//! A batch is written before the next one (the handler holds the actor), so the Observer's
//! hand-off permits, released when the batch is written, hold it back while etcd is slow.
//! etcd unreachable for [`RETRY_FOR`], no membership (the replica is cut off and observes
//! nothing any more) or a frame over [`MAX_FRAME_BYTES`]: the frames are dropped and counted
//! (`data_frames_dropped_total{reason="not_relayed"}`).

use std::time::{Duration, Instant};

use actix::prelude::*;
use serde::Deserialize;

use crate::limits::LogThrottle;
use crate::platform::protocol::{CommandResult, DataErrorFrame, DataFrame};
use crate::platform::{DataFrames, OutboundFrame, SendFrame};
use crate::registry::etcd::{EtcdStore, Ownership};

/// A batch is cut once it holds this much JSON (etcd refuses requests over 1.5 MiB).
pub(crate) const BATCH_BYTES: usize = 512 * 1024;
/// A single frame larger than this is not relayed.
pub(crate) const MAX_FRAME_BYTES: usize = 1024 * 1024;
/// Frames per batch, at most: each takes a change slot of its revision (`revision_seq`).
pub(crate) const BATCH_FRAMES: usize = 2048;
/// How long a batch is tried again while etcd does not answer (an etcd leader election
/// takes about a second).
const RETRY_FOR: Duration = Duration::from_secs(3);
const RETRY_EVERY: Duration = Duration::from_millis(250);
/// Command results waiting for a put, at most; more go to the link directly.
const RESULTS_WAITING_MAX: usize = 4_096;

static DROP_LOG: LogThrottle = LogThrottle::new();
static RESULT_LOG: LogThrottle = LogThrottle::new();

/// A relayed frame as stored: the frame's own JSON (`"type":"data"`, `"data_error"` or
/// `"command_result"`).
#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Relayed {
    Data(DataFrame),
    DataError(DataErrorFrame),
    CommandResult(CommandResult),
}

/// One batch: a JSON array of frames.
#[derive(Debug)]
pub(crate) struct Batch {
    pub json: Vec<u8>,
    pub frames: usize,
}

/// The batches for `frames`, and how many frames were left out (over [`MAX_FRAME_BYTES`], or
/// neither data nor a command result).
pub(crate) fn encode_batches(frames: &[OutboundFrame]) -> (Vec<Batch>, usize) {
    let mut batches = Vec::new();
    let mut left_out = 0;
    let mut batch: Vec<u8> = Vec::new();
    let mut in_batch = 0;
    for frame in frames {
        if !matches!(
            frame,
            OutboundFrame::Data(_) | OutboundFrame::DataError(_) | OutboundFrame::CommandResult(_)
        ) {
            left_out += 1;
            continue;
        }
        let json = match serde_json::to_vec(frame) {
            Ok(json) if json.len() <= MAX_FRAME_BYTES => json,
            _ => {
                left_out += 1;
                continue;
            }
        };
        if in_batch > 0 && (batch.len() + json.len() >= BATCH_BYTES || in_batch == BATCH_FRAMES) {
            batch.push(b']');
            batches.push(Batch {
                json: std::mem::take(&mut batch),
                frames: in_batch,
            });
            in_batch = 0;
        }
        batch.push(if in_batch == 0 { b'[' } else { b',' });
        batch.extend_from_slice(&json);
        in_batch += 1;
    }
    if in_batch > 0 {
        batch.push(b']');
        batches.push(Batch {
            json: batch,
            frames: in_batch,
        });
    }
    (batches, left_out)
}

/// The frames of one stored batch, in order.
pub(crate) fn decode_batch(batch: &[u8]) -> Result<Vec<OutboundFrame>, serde_json::Error> {
    let relayed: Vec<Relayed> = serde_json::from_slice(batch)?;
    Ok(relayed
        .into_iter()
        .map(|r| match r {
            Relayed::Data(frame) => OutboundFrame::Data(frame),
            Relayed::DataError(frame) => OutboundFrame::DataError(frame),
            Relayed::CommandResult(result) => OutboundFrame::CommandResult(result),
        })
        .collect())
}

/// Puts this replica's device data, or the leader's command results, on etcd for the leader.
pub(crate) struct DataRelay {
    store: EtcdStore,
    ownership: Ownership,
    /// Command results waiting for the put that is running.
    results: Vec<OutboundFrame>,
    putting_results: bool,
    /// Where results go that etcd did not take (the leader's own link).
    fallback: Option<Recipient<SendFrame>>,
}

impl DataRelay {
    pub(crate) fn new(store: EtcdStore, ownership: Ownership) -> DataRelay {
        DataRelay {
            store,
            ownership,
            results: Vec::new(),
            putting_results: false,
            fallback: None,
        }
    }

    /// A relay of command results that hands what etcd refuses to `link`.
    pub(crate) fn for_results(
        store: EtcdStore,
        ownership: Ownership,
        link: Recipient<SendFrame>,
    ) -> DataRelay {
        DataRelay {
            fallback: Some(link),
            ..DataRelay::new(store, ownership)
        }
    }

    /// Put every waiting result (a batch or more), then look again.
    fn put_results(&mut self, ctx: &mut Context<Self>) {
        if self.putting_results || self.results.is_empty() {
            return;
        }
        self.putting_results = true;
        let frames = std::mem::take(&mut self.results);
        let (store, ownership) = (self.store.clone(), self.ownership.clone());
        let put_all = async move {
            // Over 1 MiB: not for etcd; the link's own frame rules answer for it.
            let (fits, mut refused): (Vec<OutboundFrame>, Vec<OutboundFrame>) =
                frames.into_iter().partition(|frame| {
                    serde_json::to_vec(frame).is_ok_and(|json| json.len() <= MAX_FRAME_BYTES)
                });
            let (batches, _) = encode_batches(&fits);
            let mut first = 0;
            for Batch { json, frames: n } in batches {
                if let Err(why) = put(&store, &ownership, json).await {
                    if let Some(times) = RESULT_LOG.note() {
                        log::warn!("result relay: command results not put on etcd ({why}; {times} time(s) in the last {} s): sent on this leader's link instead, not durable across a leader change", crate::limits::log_throttle::REPORT_EVERY_S);
                    }
                    refused.extend_from_slice(&fits[first..first + n]);
                }
                first += n;
            }
            refused
        };
        ctx.spawn(put_all.into_actor(self).map(|refused, relay, ctx| {
            relay.putting_results = false;
            if let Some(link) = &relay.fallback {
                for frame in refused {
                    link.do_send(SendFrame(frame));
                }
            }
            relay.put_results(ctx);
        }));
    }
}

impl Actor for DataRelay {
    type Context = Context<Self>;
}

fn not_relayed(frames: usize, why: &str) {
    if frames == 0 {
        return;
    }
    crate::metrics::global().record_data_not_relayed(frames as u64);
    if let Some(n) = DROP_LOG.note() {
        log::warn!("data relay: {n} batch(es) of device data dropped: {why}");
    }
}

/// Put one batch, trying again while etcd does not answer; why not, when it was dropped.
async fn put(store: &EtcdStore, ownership: &Ownership, batch: Vec<u8>) -> Result<(), String> {
    let started = Instant::now();
    loop {
        let Some(lease) = ownership.lease() else {
            return Err("this replica is not a member of the cluster".into());
        };
        match store.put_data(ownership.me(), batch.clone(), lease).await {
            Ok(()) => return Ok(()),
            Err(e) if started.elapsed() >= RETRY_FOR => return Err(e.to_string()),
            Err(_) => tokio::time::sleep(RETRY_EVERY).await,
        }
    }
}

impl Handler<DataFrames> for DataRelay {
    type Result = AtomicResponse<Self, ()>;

    fn handle(&mut self, msg: DataFrames, _: &mut Context<Self>) -> Self::Result {
        let DataFrames { frames, room } = msg;
        let (batches, left_out) = encode_batches(&frames);
        not_relayed(left_out, "a frame over 1 MiB");
        let (store, ownership) = (self.store.clone(), self.ownership.clone());
        AtomicResponse::new(Box::pin(
            async move {
                for Batch { json, frames } in batches {
                    if let Err(why) = put(&store, &ownership, json).await {
                        not_relayed(frames, &why);
                    }
                }
                // The Observer may hand over the next batch.
                drop(room);
            }
            .into_actor(self),
        ))
    }
}

impl Handler<SendFrame> for DataRelay {
    type Result = ();

    fn handle(&mut self, SendFrame(frame): SendFrame, ctx: &mut Context<Self>) {
        match &self.fallback {
            // etcd slower than the commands for long: memory stays bounded, the result is
            // still delivered by this leader.
            Some(link) if self.results.len() >= RESULTS_WAITING_MAX => {
                link.do_send(SendFrame(frame))
            }
            _ => self.results.push(frame),
        }
        self.put_results(ctx);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platform::protocol::WatchedBy;

    fn data(i: usize, payload: &[u8]) -> OutboundFrame {
        OutboundFrame::Data(DataFrame::new(
            format!("node{i}"),
            Some("site".into()),
            "/sensors/temp",
            "2.05",
            Some(0),
            payload,
            1_700_000_000_000 + i as u64,
        ))
    }

    #[test]
    fn frames_come_back_as_they_were_sent() {
        let frames = vec![
            data(1, b"21.5"),
            data(2, &[0xff, 0x00, 0x80]),
            OutboundFrame::DataError(DataErrorFrame {
                ep: "node3".into(),
                d: None,
                path: "/x".into(),
                code: "4.04".into(),
                content_format: None,
                payload: crate::platform::protocol::encode_payload(b"gone"),
                at: "2026-12-04T05:00:00.000Z".into(),
                via: WatchedBy::Poll,
                consecutive: 2,
                retry_in_ms: 4000,
            }),
        ];
        let (batches, left_out) = encode_batches(&frames);
        assert_eq!((batches.len(), left_out, batches[0].frames), (1, 0, 3));
        assert_eq!(decode_batch(&batches[0].json).unwrap(), frames);
    }

    #[test]
    fn large_batches_are_cut_and_oversized_frames_and_other_frames_left_out() {
        let big = vec![b'x'; 200 * 1024];
        let mut frames: Vec<OutboundFrame> = (0..5).map(|i| data(i, &big)).collect();
        frames.push(data(9, &vec![b'y'; MAX_FRAME_BYTES + 1]));
        frames.push(OutboundFrame::Error {
            message: "not data".into(),
            id: None,
        });
        let (batches, left_out) = encode_batches(&frames);
        assert_eq!(left_out, 2);
        assert!(batches.iter().all(|b| b.json.len() < BATCH_BYTES));
        let back: Vec<OutboundFrame> = batches
            .iter()
            .flat_map(|b| decode_batch(&b.json).unwrap())
            .collect();
        assert_eq!(back, frames[..5]);
        assert_eq!(batches.len(), 3, "two of 200 KiB fit under 512 KiB");
    }

    #[test]
    fn a_batch_holds_at_most_batch_frames() {
        let frames: Vec<OutboundFrame> = (0..BATCH_FRAMES + 1).map(|i| data(i, b"1")).collect();
        let (batches, _) = encode_batches(&frames);
        assert_eq!(batches.len(), 2);
        assert_eq!((batches[0].frames, batches[1].frames), (BATCH_FRAMES, 1));
        assert_eq!(decode_batch(&batches[1].json).unwrap().len(), 1);
    }

    #[test]
    fn command_results_come_back_as_they_were_sent() {
        use crate::platform::protocol::CommandErrorKind;
        let frames = vec![
            OutboundFrame::CommandResult(CommandResult::response(
                "c1",
                "2.05",
                Some(0),
                b"21.5",
                7,
            )),
            OutboundFrame::CommandResult(CommandResult::response("c2", "2.04", None, &[0xff], 3)),
            OutboundFrame::CommandResult(CommandResult::failed(
                "c3",
                CommandErrorKind::DeviceOffline,
                "no answer",
            )),
        ];
        let (batches, left_out) = encode_batches(&frames);
        assert_eq!((batches.len(), left_out), (1, 0));
        assert_eq!(decode_batch(&batches[0].json).unwrap(), frames);
    }

    #[test]
    fn a_broken_batch_is_an_error() {
        assert!(decode_batch(b"[{\"type\":\"data\"}]").is_err());
        assert!(decode_batch(b"not json").is_err());
        assert!(decode_batch(b"[{\"type\":\"hello\"}]").is_err());
    }
}
