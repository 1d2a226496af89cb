//! Which live replica owns a registration: rendezvous ("highest random weight") hashing.
//!
//! Every replica computes, for a registration id, one weight per live member and takes the
//! member with the highest weight as the owner: the replica that pings, observes and expires
//! that device. No coordination is needed beyond agreeing on the member list (leased keys in
//! etcd), and a change of that list moves only the registrations it must move: when a member
//! leaves, only its own registrations go, spread over the others; when one joins, it takes
//! about `1/(n+1)` from each. Consistent hashing with a ring does the same with more state;
//! with a few replicas the `O(members)` cost per registration is negligible.
//!
//! The weight must be the same on every replica and in every version of the gateway (a rolling
//! upgrade runs two versions side by side), so it is FNV-1a over the member and the key,
//! finished by the SplitMix64 mixer, written out here rather than taken from `std`, whose
//! hashers promise no stable output. A test pins known values.

/// The weight of `member` for `key`: FNV-1a 64 over the member id, a separator byte that no
/// UTF-8 text contains (so `("ab", "c")` and `("a", "bc")` differ), and the key, then the
/// SplitMix64 finaliser, whose avalanche makes nearby inputs' weights independent.
pub fn weight(member: &str, key: &str) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut h = OFFSET;
    for byte in member
        .as_bytes()
        .iter()
        .chain(&[0xff])
        .chain(key.as_bytes())
    {
        h ^= u64::from(*byte);
        h = h.wrapping_mul(PRIME);
    }
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// The owner of `key` among `members` (None when there is none). Ties, which need a 64-bit
/// collision, go to the smaller member id, so the answer never depends on the list's order.
pub fn owner<'a, S: AsRef<str>>(members: &'a [S], key: &str) -> Option<&'a str> {
    members
        .iter()
        .map(|m| m.as_ref())
        .max_by_key(|m| (weight(m, key), std::cmp::Reverse(*m)))
}

/// Whether `me` owns `key` among `members`.
pub fn owns<S: AsRef<str>>(me: &str, members: &[S], key: &str) -> bool {
    owner(members, key) == Some(me)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn keys(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("r{i:x}")).collect()
    }

    #[test]
    fn weights_are_pinned_across_versions() {
        // Replicas of different versions must agree on every owner: these values may never
        // change. They come from a separate Python transcription of FNV-1a + SplitMix64, not
        // from this code.
        assert_eq!(weight("", ""), PINNED[0]);
        assert_eq!(weight("gw-a", "r1"), PINNED[1]);
        assert_eq!(weight("gw-b", "r1"), PINNED[2]);
    }

    const PINNED: [u64; 3] = [
        0x4f2d_b50f_1240_40cd,
        0x2a0e_98a0_ee33_2cc1,
        0x4a1d_7b7e_5ec8_4fee,
    ];

    #[test]
    fn separator_keeps_member_and_key_apart() {
        assert_ne!(weight("ab", "c"), weight("a", "bc"));
    }

    #[test]
    fn no_members_no_owner() {
        let none: [&str; 0] = [];
        assert_eq!(owner(&none, "r1"), None);
    }

    #[test]
    fn the_owner_does_not_depend_on_the_order_of_the_member_list() {
        let a = ["gw-a", "gw-b", "gw-c"];
        let b = ["gw-c", "gw-a", "gw-b"];
        for key in keys(2_000) {
            assert_eq!(owner(&a, &key), owner(&b, &key));
        }
    }

    #[test]
    fn three_members_share_100k_registrations_evenly() {
        let members = ["gw-a", "gw-b", "gw-c"];
        let mut count: HashMap<&str, usize> = HashMap::new();
        let n = 100_000;
        for key in keys(n) {
            *count
                .entry(owner(&members, &key).unwrap_or("none"))
                .or_default() += 1;
        }
        for m in members {
            let share = count[m] as f64 / n as f64;
            assert!((share - 1.0 / 3.0).abs() < 0.01, "{m}: {share}");
        }
    }

    #[test]
    fn a_member_leaving_moves_only_its_own_registrations() {
        let before = ["gw-a", "gw-b", "gw-c"];
        let after = ["gw-a", "gw-c"];
        let mut moved_to = HashMap::new();
        for key in keys(30_000) {
            let old = owner(&before, &key);
            let new = owner(&after, &key);
            if old == Some("gw-b") {
                *moved_to.entry(new).or_insert(0usize) += 1;
            } else {
                assert_eq!(old, new, "{key} moved although its owner stayed");
            }
        }
        // gw-b's registrations are spread over both survivors, not dumped on one.
        let a = moved_to[&Some("gw-a")] as f64;
        let c = moved_to[&Some("gw-c")] as f64;
        assert!((a / (a + c) - 0.5).abs() < 0.03, "a {a} c {c}");
    }

    #[test]
    fn a_member_joining_takes_about_a_quarter_and_nothing_moves_elsewhere() {
        let before = ["gw-a", "gw-b", "gw-c"];
        let after = ["gw-a", "gw-b", "gw-c", "gw-d"];
        let n = 40_000;
        let mut taken = 0usize;
        for key in keys(n) {
            let old = owner(&before, &key);
            let new = owner(&after, &key);
            if new == Some("gw-d") {
                taken += 1;
            } else {
                assert_eq!(old, new, "{key} moved between old members");
            }
        }
        let share = taken as f64 / n as f64;
        assert!((share - 0.25).abs() < 0.015, "{share}");
    }

    #[test]
    fn owns_agrees_with_owner() {
        let members = vec!["gw-a".to_string(), "gw-b".to_string()];
        for key in keys(1_000) {
            let o = owner(&members, &key).map(str::to_owned);
            assert_eq!(owns("gw-a", &members, &key), o.as_deref() == Some("gw-a"));
            assert_eq!(owns("gw-b", &members, &key), o.as_deref() == Some("gw-b"));
        }
    }
}
