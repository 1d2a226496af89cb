//! When polled links are due: every link gets a fixed phase within
//! `observer.poll_interval_s`, derived from its registration id and path, so the polls of many
//! devices are spread evenly over the interval instead of all firing together, and a link keeps
//! its slot from one interval to the next. Pure: times are passed in as milliseconds.
//!
//! Called by `observer::actor` when a link starts being polled and by `observer::poll` after
//! every poll.

/// FNV-1a: a stable, well-spread hash (the std hasher is seeded per process).
fn fnv1a(id: u64, path: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in id.to_le_bytes().iter().chain(path.as_bytes()) {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// The first poll of link (`id`, `path`): within one interval from `now_ms`, at its phase.
pub(crate) fn first_due_ms(now_ms: u64, interval_ms: u64, id: u64, path: &str) -> u64 {
    let interval = interval_ms.max(1);
    now_ms + fnv1a(id, path) % interval
}

/// The poll after one due at `prev_due_ms`: one interval later, or, when polls fell behind
/// (`now_ms` already past that), the next slot of the same phase, so missed slots are skipped
/// rather than fired in a burst.
pub(crate) fn next_due_ms(prev_due_ms: u64, interval_ms: u64, now_ms: u64) -> u64 {
    let interval = interval_ms.max(1);
    let next = prev_due_ms.saturating_add(interval);
    if next > now_ms {
        return next;
    }
    let behind = now_ms - prev_due_ms;
    now_ms + (interval - behind % interval)
}

/// The poll after one due at `prev_due_ms` that got its `errors`-th error answer in a row:
/// `interval * 2^errors` later (so the link keeps its phase), at most `cap_ms` (but never less
/// than one interval) later; like [`next_due_ms`] when the actor fell behind. A success goes
/// back to [`next_due_ms`].
pub(crate) fn after_error_due_ms(
    prev_due_ms: u64,
    interval_ms: u64,
    errors: u32,
    cap_ms: u64,
    now_ms: u64,
) -> u64 {
    let interval = interval_ms.max(1);
    let factor = 1u64 << errors.min(20);
    let step = interval.saturating_mul(factor).min(cap_ms.max(interval));
    next_due_ms(prev_due_ms, step, now_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_answers_back_off_exponentially_up_to_the_cap() {
        let interval = 1_000;
        let cap = 60_000;
        assert_eq!(after_error_due_ms(0, interval, 1, cap, 0), 2_000);
        assert_eq!(after_error_due_ms(2_000, interval, 2, cap, 2_000), 6_000);
        assert_eq!(after_error_due_ms(6_000, interval, 3, cap, 6_000), 14_000);
        assert_eq!(after_error_due_ms(0, interval, 40, cap, 0), 60_000);
        // A cap below the interval never polls faster than the interval.
        assert_eq!(after_error_due_ms(0, 10_000, 5, 1_000, 0), 10_000);
    }

    #[test]
    fn first_polls_spread_over_the_interval() {
        let interval = 10_000;
        let mut buckets = [0usize; 10];
        for id in 0..10_000u64 {
            let due = first_due_ms(5_000, interval, id, "/sensors/temp");
            assert!((5_000..15_000).contains(&due));
            buckets[((due - 5_000) / 1_000) as usize] += 1;
        }
        for (i, n) in buckets.iter().enumerate() {
            assert!((800..1_200).contains(n), "second {i} holds {n} of 10,000");
        }
    }

    #[test]
    fn a_link_keeps_its_phase() {
        assert_eq!(
            first_due_ms(0, 1_000, 7, "/a"),
            first_due_ms(0, 1_000, 7, "/a")
        );
        assert_eq!(next_due_ms(1_300, 1_000, 1_350), 2_300);
    }

    #[test]
    fn missed_slots_are_skipped_not_bursted() {
        // Due at 1,300; the actor only got to it at 4,500: next slot of the phase is 5,300.
        assert_eq!(next_due_ms(1_300, 1_000, 4_500), 5_300);
        assert_eq!(next_due_ms(1_300, 1_000, 2_300), 3_300);
        assert_eq!(next_due_ms(0, 0, 0), 1);
    }
}
