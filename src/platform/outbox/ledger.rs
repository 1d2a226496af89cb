//! The outbox's bookkeeping, pure: each frame owed to the platform gets the next sequence
//! number and waits here, in seq order, until it is acknowledged (acked mode: a cumulative
//! `ack`, or `welcome.last_seq`) or, with a v1 platform, until it is written. After a
//! reconnect everything above the last acknowledgement is sent again, oldest first, before
//! anything newer. A durable entry is not handed out before the flush that stores it is done
//! (the durable watermark), and nothing behind it overtakes it.
//!
//! The bound (`platform.outbox_max_bytes` over the frames' text, `platform.queue_capacity`
//! frames) is kept on every push: the oldest `data` / `data_error` / `error` frame goes first
//! (counted); when only events and results are left, the oldest events are replaced by one
//! [`Class::Marker`] (counted as an overflow, and every event it stands for as lost): the link
//! then makes sure a fresh snapshot follows, so the registry view is restated and only the
//! events' history is gone. Results go last, counted as lost, when nothing else is left.
//! Snapshot parts are outside the bound and are never re-sent: each connection sends a fresh
//! snapshot, so the parts of a connection that died are forgotten with it.

use std::collections::VecDeque;

use crate::platform::protocol::OutboundFrame;

/// What kind of frame an entry is, which decides what is dropped first and what is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Class {
    /// `device_*`: stored; replaced by a marker when nothing cheaper is left to drop.
    Event,
    /// `command_result`: stored; the last thing dropped.
    Result,
    /// `data`, `data_error`: stored only with `platform.durable_data`; dropped first.
    Data,
    /// `error` replies to the platform: memory only; dropped with data.
    Reply,
    /// Stands for events dropped by the bound; never written, it forces a snapshot.
    Marker,
    /// A snapshot part: memory only, outside the bound, forgotten when its connection ends.
    Snapshot,
}

impl Class {
    pub(crate) fn of(frame: &OutboundFrame) -> Class {
        match frame {
            OutboundFrame::DeviceRegistered { .. }
            | OutboundFrame::DeviceUpdated { .. }
            | OutboundFrame::DeviceRemoved { .. }
            | OutboundFrame::DeviceStatus { .. } => Class::Event,
            OutboundFrame::CommandResult(_) => Class::Result,
            OutboundFrame::Data(_) | OutboundFrame::DataError(_) => Class::Data,
            OutboundFrame::Snapshot { .. } => Class::Snapshot,
            OutboundFrame::Hello { .. } | OutboundFrame::Error { .. } => Class::Reply,
        }
    }

    /// Counted against the bound.
    fn bounded(self) -> bool {
        !matches!(self, Class::Marker | Class::Snapshot)
    }

    fn dropped_first(self) -> bool {
        matches!(self, Class::Data | Class::Reply)
    }
}

/// One owed frame: its JSON text without `seq` (added when written in acked mode).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    pub seq: u64,
    pub class: Class,
    pub text: String,
    /// Stored in the outbox tree: not handed out before the durable watermark passes it.
    pub durable: bool,
    /// When the link learned of the frame (Unix ms), for the oldest-unacknowledged age.
    pub born_ms: u64,
}

/// The bound kept on every push.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Bound {
    pub max_bytes: usize,
    pub max_frames: usize,
}

/// The worst a push had to do to keep the bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Overflow {
    None,
    DroppedData,
    /// Events were replaced by the marker (or joined an existing one).
    EventsReplaced,
    ResultsLost,
}

/// What a push did, so the link can mirror it in the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Pushed {
    pub seq: u64,
    /// The pushed entry is still in the outbox (a `data` frame may be dropped at once).
    pub kept: bool,
    /// Durable entries dropped: their records are to be deleted.
    pub removed: Vec<u64>,
    /// A marker took the place of a durable event at this seq: its record is to be written.
    pub marker: Option<u64>,
    pub overflow: Overflow,
}

/// Counters since the start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Counters {
    pub dropped_data: u64,
    /// Events replaced by a marker.
    pub events_lost: u64,
    pub results_lost: u64,
    /// Markers created: each forces a snapshot.
    pub overflows: u64,
    /// Frames written again after a reconnect.
    pub resent: u64,
}

#[derive(Debug)]
pub(crate) struct Ledger {
    entries: VecDeque<Entry>,
    next_seq: u64,
    /// The platform has every frame up to here.
    acked: u64,
    /// Written on the current connection up to here.
    sent_upto: u64,
    /// The highest seq ever written: writing one at or below it again is a re-send.
    ever_sent_upto: u64,
    /// Every durable entry at or below this is on disk.
    durable_upto: u64,
    /// Protocol v1: an entry is done once written.
    ack_on_write: bool,
    bound: Bound,
    bytes: usize,
    frames: usize,
    droppable: usize,
    events: usize,
    results: usize,
    has_marker: bool,
    counters: Counters,
}

impl Ledger {
    /// An empty outbox whose first seq is `first_seq` (at least 1: `ack 0` means nothing).
    pub(crate) fn new(bound: Bound, first_seq: u64) -> Ledger {
        let first = first_seq.max(1);
        Ledger {
            entries: VecDeque::new(),
            next_seq: first,
            acked: first - 1,
            sent_upto: first - 1,
            ever_sent_upto: first - 1,
            durable_upto: first - 1,
            ack_on_write: true,
            bound: Bound {
                max_bytes: bound.max_bytes,
                max_frames: bound.max_frames.max(1),
            },
            bytes: 0,
            frames: 0,
            droppable: 0,
            events: 0,
            results: 0,
            has_marker: false,
            counters: Counters::default(),
        }
    }

    /// Put back entries read from the store (durable, in seq order) before any push. They
    /// are owed again; the next seq is above them. The bound is applied afterwards, so a
    /// smaller `outbox_max_bytes` after a restart takes effect at once.
    pub(crate) fn restore(&mut self, mut stored: Vec<Entry>) -> Pushed {
        stored.sort_by_key(|e| e.seq);
        stored.dedup_by_key(|e| e.seq);
        if let Some(first) = stored.first() {
            let below = first.seq.saturating_sub(1);
            self.acked = self.acked.min(below);
            self.sent_upto = self.acked;
            self.ever_sent_upto = self.ever_sent_upto.max(self.acked);
        }
        for mut entry in stored {
            entry.durable = true;
            self.next_seq = self.next_seq.max(entry.seq.saturating_add(1));
            self.durable_upto = self.durable_upto.max(entry.seq);
            self.account(&entry, true);
            self.entries.push_back(entry);
        }
        let mut pushed = Pushed {
            seq: self.next_seq.saturating_sub(1),
            kept: true,
            removed: Vec::new(),
            marker: None,
            overflow: Overflow::None,
        };
        self.enforce(&mut pushed);
        pushed
    }

    /// Owe a frame; it gets the next seq. `durable`: the caller stores it and reports the
    /// flush with [`Self::set_durable_upto`].
    pub(crate) fn push(
        &mut self,
        class: Class,
        text: String,
        durable: bool,
        now_ms: u64,
    ) -> Pushed {
        let seq = self.next_seq;
        self.next_seq = self.next_seq.saturating_add(1);
        let entry = Entry {
            seq,
            class,
            text,
            durable,
            born_ms: now_ms,
        };
        self.account(&entry, true);
        self.entries.push_back(entry);
        let mut pushed = Pushed {
            seq,
            kept: true,
            removed: Vec::new(),
            marker: None,
            overflow: Overflow::None,
        };
        self.enforce(&mut pushed);
        pushed.kept = self.position(seq).is_some();
        pushed
    }

    /// Number the next frame `seq` or later: seqs numbered elsewhere (a cluster's, derived
    /// from etcd revisions) leave holes, which the ledger keeps like any other. A `seq` at or
    /// below one already handed out changes nothing.
    pub(crate) fn skip_to(&mut self, seq: u64) {
        self.next_seq = self.next_seq.max(seq);
    }

    /// A connection is ready: `acked` when the platform answered `welcome` with `ack`, with
    /// the `last_seq` it already has. Everything above the acknowledgement is owed again.
    /// Returns the durable seqs the welcome acknowledged.
    pub(crate) fn connected(&mut self, acked: bool, last_seq: Option<u64>) -> Vec<u64> {
        self.ack_on_write = !acked;
        let done = match last_seq {
            Some(n) if acked => self.ack(n),
            _ => Vec::new(),
        };
        self.sent_upto = self.acked;
        done
    }

    /// The connection ended: unacknowledged snapshot parts are forgotten (the next connection
    /// sends a fresh snapshot); everything else is owed again.
    pub(crate) fn disconnected(&mut self) {
        let before = self.entries.len();
        self.entries.retain(|e| e.class != Class::Snapshot);
        if self.entries.len() != before {
            self.recount();
        }
        self.sent_upto = self.acked;
    }

    /// The next entry to write on this connection, when it may go (stored, if durable).
    pub(crate) fn next_ready(&self) -> Option<&Entry> {
        self.entries
            .get(self.first_above(self.sent_upto))
            .filter(|e| !e.durable || e.seq <= self.durable_upto)
    }

    /// `seq` (the entry [`Self::next_ready`] gave) was written, or skipped (a marker, a frame
    /// too big to write). With a v1 platform it is done now: returns the durable seqs done.
    pub(crate) fn mark_written(&mut self, seq: u64) -> Vec<u64> {
        if let Some(pos) = self.position(seq) {
            if seq <= self.ever_sent_upto && self.entries[pos].class != Class::Marker {
                self.counters.resent += 1;
            }
        }
        self.sent_upto = self.sent_upto.max(seq);
        self.ever_sent_upto = self.ever_sent_upto.max(seq);
        if self.ack_on_write {
            self.ack(seq)
        } else {
            Vec::new()
        }
    }

    /// The platform has everything up to `n` (cumulative). An `n` above the last seq handed
    /// out is clamped; one below the last acknowledgement changes nothing. Returns the durable
    /// seqs now done, whose records are to be deleted.
    pub(crate) fn ack(&mut self, n: u64) -> Vec<u64> {
        let n = n.min(self.next_seq.saturating_sub(1));
        if n <= self.acked {
            return Vec::new();
        }
        let mut done = Vec::new();
        while self.entries.front().is_some_and(|e| e.seq <= n) {
            if let Some(entry) = self.entries.pop_front() {
                self.account(&entry, false);
                if entry.durable {
                    done.push(entry.seq);
                }
            }
        }
        self.acked = n;
        self.sent_upto = self.sent_upto.max(n);
        done
    }

    /// Every durable entry up to `seq` is on disk.
    pub(crate) fn set_durable_upto(&mut self, seq: u64) {
        self.durable_upto = self.durable_upto.max(seq);
    }

    /// The entry numbered `seq`, while owed.
    pub(crate) fn get(&self, seq: u64) -> Option<&Entry> {
        self.position(seq).map(|pos| &self.entries[pos])
    }

    /// The text of the oldest `command_result` for command `id` still owed (unacknowledged,
    /// or unwritten with a v1 platform): a command that arrives again meanwhile is answered
    /// with it instead of running again. Scans only results (few: they go last under the
    /// bound, and the outbox is bounded).
    pub(crate) fn owed_result(&self, id: &str) -> Option<&str> {
        #[derive(serde::Deserialize)]
        struct IdOnly<'a> {
            #[serde(borrow)]
            id: std::borrow::Cow<'a, str>,
        }
        self.entries
            .iter()
            .filter(|e| e.class == Class::Result)
            .find(|e| serde_json::from_str::<IdOnly>(&e.text).is_ok_and(|r| r.id == id))
            .map(|e| e.text.as_str())
    }

    pub(crate) fn next_seq(&self) -> u64 {
        self.next_seq
    }

    pub(crate) fn acked(&self) -> u64 {
        self.acked
    }

    /// Entries held (written and unacknowledged ones included).
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Entries not yet written on this connection.
    pub(crate) fn unsent(&self) -> usize {
        self.entries.len() - self.first_above(self.sent_upto)
    }

    /// Bytes of frame text held under the bound.
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    /// When the oldest entry still owed was born (Unix ms).
    pub(crate) fn oldest_born_ms(&self) -> Option<u64> {
        self.entries.front().map(|e| e.born_ms)
    }

    #[cfg(test)]
    pub(crate) fn has_marker(&self) -> bool {
        self.has_marker
    }

    pub(crate) fn counters(&self) -> Counters {
        self.counters
    }

    pub(crate) fn capacity(&self) -> Bound {
        self.bound
    }

    /// Where `seq` would be if the seqs held had no holes: they usually have none (holes come
    /// only from the bound and from forgotten snapshot parts), so a look there, checked,
    /// spares the binary search on every write.
    fn guess(&self, seq: u64) -> Option<usize> {
        let front = self.entries.front()?.seq;
        usize::try_from(seq.checked_sub(front)?).ok()
    }

    fn position(&self, seq: u64) -> Option<usize> {
        if let Some(at) = self.guess(seq) {
            if self.entries.get(at).is_some_and(|e| e.seq == seq) {
                return Some(at);
            }
        }
        self.entries.binary_search_by_key(&seq, |e| e.seq).ok()
    }

    /// The index of the first entry numbered above `seq` (`len()` when there is none).
    fn first_above(&self, seq: u64) -> usize {
        // Everything written: the pump asks this after every batch.
        if self.entries.back().is_none_or(|e| e.seq <= seq) {
            return self.entries.len();
        }
        let next = seq.saturating_add(1);
        if let Some(at) = self.guess(next) {
            // Seqs strictly grow, so the entry numbered `seq + 1` is the first above `seq`.
            if self.entries.get(at).is_some_and(|e| e.seq == next) {
                return at;
            }
        }
        self.entries.partition_point(|e| e.seq <= seq)
    }

    fn account(&mut self, e: &Entry, add: bool) {
        let step = |n: &mut usize, by: usize| {
            *n = if add { *n + by } else { n.saturating_sub(by) };
        };
        if e.class.bounded() {
            step(&mut self.bytes, e.text.len());
            step(&mut self.frames, 1);
        }
        match e.class {
            Class::Data | Class::Reply => step(&mut self.droppable, 1),
            Class::Event => step(&mut self.events, 1),
            Class::Result => step(&mut self.results, 1),
            Class::Marker => self.has_marker = add,
            Class::Snapshot => {}
        }
    }

    fn recount(&mut self) {
        let entries = std::mem::take(&mut self.entries);
        self.bytes = 0;
        self.frames = 0;
        self.droppable = 0;
        self.events = 0;
        self.results = 0;
        self.has_marker = false;
        for e in &entries {
            self.account(e, true);
        }
        self.entries = entries;
    }

    fn over(&self) -> bool {
        self.bytes > self.bound.max_bytes || self.frames > self.bound.max_frames
    }

    fn take_first(&mut self, pred: impl Fn(&Entry) -> bool) -> Option<(usize, Entry)> {
        let pos = self.entries.iter().position(pred)?;
        let entry = self.entries.remove(pos)?;
        self.account(&entry, false);
        Some((pos, entry))
    }

    fn enforce(&mut self, pushed: &mut Pushed) {
        // Each turn removes one bounded entry, so this ends within `frames` turns.
        while self.over() {
            if self.droppable > 0 {
                if let Some((_, e)) = self.take_first(|e| e.class.dropped_first()) {
                    self.counters.dropped_data += 1;
                    pushed.overflow = pushed.overflow.max(Overflow::DroppedData);
                    if e.durable {
                        pushed.removed.push(e.seq);
                    }
                    continue;
                }
            }
            if self.events > 0 {
                if let Some((pos, e)) = self.take_first(|e| e.class == Class::Event) {
                    self.counters.events_lost += 1;
                    pushed.overflow = pushed.overflow.max(Overflow::EventsReplaced);
                    if self.has_marker {
                        if e.durable {
                            pushed.removed.push(e.seq);
                        }
                    } else {
                        self.counters.overflows += 1;
                        let marker = Entry {
                            seq: e.seq,
                            class: Class::Marker,
                            text: String::new(),
                            durable: e.durable,
                            born_ms: e.born_ms,
                        };
                        if e.durable {
                            pushed.marker = Some(e.seq);
                        }
                        self.account(&marker, true);
                        self.entries.insert(pos, marker);
                    }
                    continue;
                }
            }
            if self.results > 0 {
                if let Some((_, e)) = self.take_first(|e| e.class == Class::Result) {
                    self.counters.results_lost += 1;
                    pushed.overflow = pushed.overflow.max(Overflow::ResultsLost);
                    if e.durable {
                        pushed.removed.push(e.seq);
                    }
                    continue;
                }
            }
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn big() -> Bound {
        Bound {
            max_bytes: usize::MAX,
            max_frames: usize::MAX,
        }
    }

    fn text(i: u64) -> String {
        format!("{{\"type\":\"x\",\"i\":{i:04}}}")
    }

    /// Write everything ready, as the link's pump does; the seqs written.
    fn drain(l: &mut Ledger) -> Vec<u64> {
        let mut out = Vec::new();
        while let Some(e) = l.next_ready() {
            let seq = e.seq;
            out.push(seq);
            l.mark_written(seq);
        }
        out
    }

    #[test]
    fn an_owed_result_is_found_by_its_command_id_until_acknowledged() {
        let mut l = Ledger::new(big(), 1);
        l.connected(true, None);
        let result = |id: &str| {
            serde_json::json!({"type": "command_result", "id": id, "code": "2.05"}).to_string()
        };
        let event = serde_json::json!({"type": "device_status", "id": "a"}).to_string();
        l.push(Class::Event, event, false, 0);
        l.push(Class::Result, result("a"), false, 0);
        // An escaped id is compared unescaped.
        l.push(Class::Result, result("b\"q"), false, 0);
        assert_eq!(l.owed_result("a"), Some(result("a").as_str()));
        assert_eq!(l.owed_result("b\"q"), Some(result("b\"q").as_str()));
        assert_eq!(l.owed_result("c"), None);
        drain(&mut l);
        assert!(l.owed_result("a").is_some(), "written, not acknowledged");
        l.ack(2);
        assert_eq!(l.owed_result("a"), None);
        assert!(l.owed_result("b\"q").is_some());
    }

    #[test]
    fn seqs_numbered_elsewhere_leave_holes_that_acks_and_resends_cross() {
        let mut l = Ledger::new(big(), 1);
        l.connected(true, None);
        l.skip_to(100);
        assert_eq!(l.push(Class::Event, text(0), false, 0).seq, 100);
        l.skip_to(50);
        assert_eq!(
            l.push(Class::Event, text(1), false, 0).seq,
            101,
            "never back"
        );
        l.skip_to(200);
        assert_eq!(l.push(Class::Reply, text(2), false, 0).seq, 200);
        assert_eq!(drain(&mut l), vec![100, 101, 200]);
        // The connection dies: everything above the acknowledgement is written again.
        l.ack(101);
        l.disconnected();
        l.connected(true, None);
        assert_eq!(drain(&mut l), vec![200]);
        // A welcome naming a seq in a hole acknowledges everything up to it.
        l.skip_to(300);
        l.push(Class::Event, text(3), false, 0);
        l.disconnected();
        l.connected(true, Some(250));
        assert_eq!(l.acked(), 250);
        assert_eq!(drain(&mut l), vec![300]);
    }

    #[test]
    fn seqs_grow_by_one_and_v1_entries_are_done_once_written() {
        let mut l = Ledger::new(big(), 1);
        l.connected(false, None);
        for i in 0..3 {
            assert_eq!(l.push(Class::Event, text(i), false, 0).seq, i + 1);
        }
        assert_eq!(drain(&mut l), vec![1, 2, 3]);
        assert!(l.is_empty());
        assert_eq!(l.counters().resent, 0);
    }

    #[test]
    fn unacknowledged_frames_are_resent_in_order_before_newer_ones() {
        let mut l = Ledger::new(big(), 1);
        l.connected(true, None);
        for i in 0..1_000 {
            l.push(Class::Data, text(i), false, 0);
        }
        assert_eq!(drain(&mut l).len(), 1_000);
        l.ack(10);
        assert_eq!(l.len(), 990);
        l.disconnected();
        l.push(Class::Event, text(9_999), false, 0);
        l.connected(true, None);
        let again = drain(&mut l);
        assert_eq!(again, (11..=1_001).collect::<Vec<_>>());
        assert_eq!(
            l.counters().resent,
            990,
            "only the old ones count as re-sent"
        );
        l.ack(1_001);
        assert!(l.is_empty());
    }

    #[test]
    fn welcome_last_seq_skips_what_the_platform_has() {
        let mut l = Ledger::new(big(), 1);
        l.connected(true, None);
        for i in 0..5 {
            l.push(Class::Event, text(i), true, 0);
        }
        l.set_durable_upto(5);
        drain(&mut l);
        l.disconnected();
        assert_eq!(l.connected(true, Some(3)), vec![1, 2, 3]);
        assert_eq!(drain(&mut l), vec![4, 5]);
    }

    #[test]
    fn acks_are_cumulative_clamped_and_never_go_back() {
        let mut l = Ledger::new(big(), 1);
        l.connected(true, None);
        for i in 0..4 {
            l.push(Class::Result, text(i), true, 0);
        }
        assert_eq!(l.ack(2), vec![1, 2]);
        assert_eq!(l.ack(1), Vec::<u64>::new());
        assert_eq!(l.ack(u64::MAX), vec![3, 4]);
        assert_eq!(l.acked(), 4);
        l.push(Class::Event, text(9), false, 0);
        assert_eq!(
            l.ack(5),
            Vec::<u64>::new(),
            "not durable: nothing to delete"
        );
    }

    #[test]
    fn durable_entries_wait_for_their_flush_and_nothing_overtakes_them() {
        let mut l = Ledger::new(big(), 1);
        l.connected(true, None);
        l.push(Class::Event, text(1), true, 0);
        l.push(Class::Data, text(2), false, 0);
        assert_eq!(drain(&mut l), Vec::<u64>::new());
        l.set_durable_upto(1);
        assert_eq!(drain(&mut l), vec![1, 2]);
    }

    #[test]
    fn snapshot_parts_are_forgotten_with_their_connection() {
        let mut l = Ledger::new(big(), 1);
        l.connected(true, None);
        l.push(Class::Event, text(1), false, 0);
        l.push(Class::Snapshot, text(2), false, 0);
        l.push(Class::Event, text(3), false, 0);
        drain(&mut l);
        l.disconnected();
        l.connected(true, None);
        assert_eq!(drain(&mut l), vec![1, 3]);
    }

    #[test]
    fn the_bound_drops_data_first_and_counts_it() {
        let mut l = Ledger::new(
            Bound {
                max_bytes: text(0).len() * 3,
                max_frames: 100,
            },
            1,
        );
        l.push(Class::Data, text(0), false, 0);
        l.push(Class::Event, text(1), true, 0);
        l.push(Class::Data, text(2), true, 0);
        let p = l.push(Class::Event, text(3), true, 0);
        assert_eq!(p.overflow, Overflow::DroppedData);
        assert!(
            p.kept && p.removed.is_empty(),
            "the dropped data was not stored"
        );
        let p = l.push(Class::Result, text(4), true, 0);
        assert_eq!(
            (p.overflow, p.removed.clone()),
            (Overflow::DroppedData, vec![3])
        );
        assert_eq!(l.counters().dropped_data, 2);
        let p = l.push(Class::Data, text(5), false, 0);
        assert!(
            !p.kept,
            "new data goes when only events and results are held"
        );
        assert_eq!(l.bytes(), text(0).len() * 3);
    }

    #[test]
    fn events_over_the_bound_become_one_marker_and_results_are_kept_longest() {
        let one = text(0).len();
        let mut l = Ledger::new(
            Bound {
                max_bytes: one * 3,
                max_frames: 100,
            },
            1,
        );
        l.push(Class::Result, text(0), true, 0);
        for i in 1..=2 {
            l.push(Class::Event, text(i), true, 0);
        }
        let first = l.push(Class::Event, text(4), true, 0);
        assert_eq!(first.overflow, Overflow::EventsReplaced);
        assert_eq!(
            first.marker,
            Some(2),
            "the marker takes the oldest event's place"
        );
        let second = l.push(Class::Event, text(5), true, 0);
        assert_eq!((second.marker, second.removed.clone()), (None, vec![3]));
        assert!(l.has_marker());
        assert_eq!(l.counters().overflows, 1);
        assert_eq!(l.counters().events_lost, 2);
        l.set_durable_upto(5);
        l.connected(true, None);
        let order: Vec<(u64, Class)> = std::iter::from_fn(|| {
            let e = l.next_ready()?;
            let out = (e.seq, e.class);
            l.mark_written(out.0);
            Some(out)
        })
        .collect();
        assert_eq!(
            order,
            vec![
                (1, Class::Result),
                (2, Class::Marker),
                (4, Class::Event),
                (5, Class::Event)
            ]
        );
        // Only results left over the bound: the oldest goes, counted.
        let mut r = Ledger::new(
            Bound {
                max_bytes: one,
                max_frames: 100,
            },
            1,
        );
        r.push(Class::Result, text(0), true, 0);
        let p = r.push(Class::Result, text(1), true, 0);
        assert_eq!((p.overflow, p.removed), (Overflow::ResultsLost, vec![1]));
        assert_eq!(r.counters().results_lost, 1);
    }

    #[test]
    fn the_frame_count_bounds_too_and_memory_stays_bounded() {
        let mut l = Ledger::new(
            Bound {
                max_bytes: usize::MAX,
                max_frames: 100,
            },
            1,
        );
        for i in 0..10_000 {
            let class = if i % 3 == 0 {
                Class::Event
            } else {
                Class::Data
            };
            l.push(class, text(i), false, 0);
            assert!(l.len() <= 101, "100 frames and at most one marker");
        }
        let c = l.counters();
        assert_eq!(c.overflows, 1);
        assert!(c.dropped_data > 0 && c.events_lost > 0);
    }

    #[test]
    fn lookups_are_right_with_and_without_holes_in_the_seqs() {
        let mut l = Ledger::new(big(), 1);
        l.connected(true, None);
        for i in 0..10 {
            let class = if i % 3 == 1 {
                Class::Snapshot
            } else {
                Class::Data
            };
            l.push(class, text(i), false, 0);
        }
        let check = |l: &Ledger| {
            for seq in 0..=12 {
                let pos = l.entries.iter().position(|e| e.seq == seq);
                assert_eq!(l.position(seq), pos, "position({seq})");
                let above = l.entries.iter().take_while(|e| e.seq <= seq).count();
                assert_eq!(l.first_above(seq), above, "first_above({seq})");
            }
        };
        check(&l);
        assert_eq!(drain(&mut l)[..3], [1, 2, 3]);
        l.ack(3);
        l.disconnected(); // Snapshot parts 5 and 8 go: holes.
        check(&l);
        l.connected(true, None);
        assert_eq!(drain(&mut l), vec![4, 6, 7, 9, 10]);
        assert_eq!(l.unsent(), 0);
        check(&l);
        assert!(Ledger::new(big(), 1).next_ready().is_none());
    }

    #[test]
    fn restored_entries_are_owed_first_and_seqs_continue_above_them() {
        let mut l = Ledger::new(big(), 50);
        let stored = [7u64, 9, 8]
            .iter()
            .map(|&seq| Entry {
                seq,
                class: Class::Event,
                text: text(seq),
                durable: true,
                born_ms: 0,
            })
            .collect();
        l.restore(stored);
        assert_eq!(l.push(Class::Event, text(0), false, 0).seq, 50);
        l.connected(true, Some(7));
        assert_eq!(drain(&mut l), vec![8, 9, 50]);
    }
}
