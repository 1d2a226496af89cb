//! Recent command ids and their first result, so a platform retry of a command (same `id`)
//! is answered from the first execution instead of being executed again (a retry
//! must not toggle an actuator twice).
//!
//! Called by the Executer actor on every command (`begin`) and when one finishes (`finish`).
//! Bounded in time (an id is remembered for `window_ms` after it finished) and in count
//! (at most `capacity` finished ids; running ones are bounded by the Executer's in-flight
//! limit). Pure: the caller passes the clock in.

use std::collections::{HashMap, VecDeque};

/// What the Executer should do with a command id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CommandSeen<R> {
    /// First sighting: execute it. The id is now recorded as running.
    New,
    /// The first command with this id is still running: wait for its result.
    Running,
    /// Already finished within the window: answer with this result again.
    Done(R),
}

#[derive(Debug)]
enum State<R> {
    Running,
    Done(R),
}

#[derive(Debug)]
struct Entry<R> {
    state: State<R>,
    /// When the entry was last stamped: at `begin`, then at `finish`.
    at_ms: u64,
}

/// Command id → first result.
#[derive(Debug)]
pub(crate) struct Dedup<R> {
    entries: HashMap<String, Entry<R>>,
    /// Ids in stamping order; an item whose stamp no longer matches its entry is stale.
    order: VecDeque<(String, u64)>,
    window_ms: u64,
    capacity: usize,
}

impl<R: Clone> Dedup<R> {
    pub(crate) fn new(window_ms: u64, capacity: usize) -> Self {
        Dedup {
            entries: HashMap::new(),
            order: VecDeque::new(),
            window_ms,
            capacity: capacity.max(1),
        }
    }

    /// Record a command id arriving at `now_ms`.
    pub(crate) fn begin(&mut self, id: &str, now_ms: u64) -> CommandSeen<R> {
        self.prune(now_ms);
        if let Some(entry) = self.entries.get(id) {
            return match &entry.state {
                State::Running => CommandSeen::Running,
                State::Done(r) => CommandSeen::Done(r.clone()),
            };
        }
        if self.window_ms == 0 {
            // Deduplication off: nothing is remembered.
            return CommandSeen::New;
        }
        self.entries.insert(
            id.to_string(),
            Entry {
                state: State::Running,
                at_ms: now_ms,
            },
        );
        self.order.push_back((id.to_string(), now_ms));
        CommandSeen::New
    }

    /// The command `id` finished with `result`; it is remembered for the window from now.
    pub(crate) fn finish(&mut self, id: &str, result: R, now_ms: u64) {
        if self.window_ms == 0 {
            return;
        }
        self.entries.insert(
            id.to_string(),
            Entry {
                state: State::Done(result),
                at_ms: now_ms,
            },
        );
        self.order.push_back((id.to_string(), now_ms));
        self.prune(now_ms);
    }

    /// Forget `id` at once (a command that never reached the device may be retried).
    pub(crate) fn forget(&mut self, id: &str) {
        self.entries.remove(id);
    }

    /// Number of ids remembered (running or finished).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn over_capacity(&self) -> bool {
        self.entries.len() > self.capacity
    }

    /// Forget finished ids older than the window, then the oldest finished ids over capacity.
    /// A running id is never forgotten: its waiters still need the result.
    fn prune(&mut self, now_ms: u64) {
        while let Some((id, at)) = self.order.front() {
            let expired = now_ms.saturating_sub(*at) >= self.window_ms;
            if !expired && !self.over_capacity() {
                break;
            }
            let (id, at) = (id.clone(), *at);
            self.order.pop_front();
            let remove = match self.entries.get(&id) {
                // Stale: the entry was re-stamped later and is queued again.
                Some(entry) if entry.at_ms != at => false,
                // `finish` queues it again.
                Some(Entry {
                    state: State::Running,
                    ..
                }) => false,
                Some(_) => true,
                None => false,
            };
            if remove {
                self.entries.remove(&id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_is_new_then_running_then_done() {
        let mut d = Dedup::new(1_000, 10);
        assert_eq!(d.begin("a", 0), CommandSeen::New);
        assert_eq!(d.begin("a", 10), CommandSeen::Running);
        d.finish("a", 7, 20);
        assert_eq!(d.begin("a", 30), CommandSeen::Done(7));
        assert_eq!(d.begin("b", 30), CommandSeen::New);
    }

    #[test]
    fn finished_ids_are_forgotten_after_the_window() {
        let mut d = Dedup::new(1_000, 10);
        d.begin("a", 0);
        d.finish("a", 1, 500);
        assert_eq!(d.begin("a", 1_499), CommandSeen::Done(1));
        assert_eq!(d.begin("a", 1_500), CommandSeen::New);
    }

    #[test]
    fn a_running_id_outlives_the_window() {
        let mut d = Dedup::new(100, 10);
        d.begin("slow", 0);
        d.begin("other", 5_000);
        assert_eq!(d.begin("slow", 5_000), CommandSeen::Running);
        d.finish("slow", 2, 6_000);
        assert_eq!(d.begin("slow", 6_050), CommandSeen::Done(2));
        assert_eq!(d.begin("slow", 6_100), CommandSeen::New);
    }

    #[test]
    fn count_is_bounded_by_forgetting_the_oldest_finished() {
        let mut d = Dedup::new(1_000_000, 3);
        for (i, id) in ["a", "b", "c", "d", "e"].iter().enumerate() {
            d.begin(id, i as u64);
            d.finish(id, i, i as u64);
        }
        assert!(d.len() <= 3, "{}", d.len());
        assert_eq!(d.begin("e", 10), CommandSeen::Done(4));
        assert_eq!(d.begin("a", 10), CommandSeen::New);
    }

    #[test]
    fn running_ids_are_kept_over_capacity() {
        let mut d: Dedup<u32> = Dedup::new(1_000_000, 2);
        for id in ["a", "b", "c", "d"] {
            assert_eq!(d.begin(id, 0), CommandSeen::New);
        }
        for id in ["a", "b", "c", "d"] {
            assert_eq!(d.begin(id, 1), CommandSeen::Running, "{id}");
        }
        d.finish("a", 1, 2);
        d.finish("b", 2, 2);
        d.finish("c", 3, 2);
        d.finish("d", 4, 2);
        assert!(d.len() <= 2, "{}", d.len());
    }

    #[test]
    fn forgotten_ids_run_again() {
        let mut d = Dedup::new(1_000, 10);
        d.begin("a", 0);
        d.forget("a");
        assert_eq!(d.begin("a", 1), CommandSeen::New);
        d.finish("a", 3, 2);
        assert_eq!(d.begin("a", 3), CommandSeen::Done(3));
    }

    #[test]
    fn zero_window_remembers_nothing() {
        let mut d = Dedup::new(0, 10);
        assert_eq!(d.begin("a", 0), CommandSeen::New);
        assert_eq!(d.begin("a", 0), CommandSeen::New);
        d.finish("a", 1, 0);
        assert!(d.is_empty());
    }
}
